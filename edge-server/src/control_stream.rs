//! A seat's control stream, shared by its session and the sim worker.
//!
//! Reliable messages go on the stream in order. Most come from the sim worker: a tick's
//! events, held to the snapshot tick, then the snapshot datagram behind them. When
//! nothing waits in the seat's queue, the worker writes the events to the stream itself,
//! from the sim thread, and hands the snapshot to the connection: quinn's stream write
//! is synchronous when the stream has room, so a snapshot with events wakes no task of
//! the session. Otherwise — the stream has no room, or other messages wait — they join
//! the queue, in order, for the session's writer, which waits for room; while anything
//! waits there, nothing is written past it. Nothing here reads a clock or a socket: the
//! stream is whatever the session attached (tests attach one in memory).

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::worker::Outbound;

/// A stream the control messages are written to.
pub(crate) trait ControlSink: Send {
    /// Writes what the stream takes of `bytes` now: how many it took, `Pending` (with
    /// `cx` woken when it has room) when none, an error when it is gone.
    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<Result<usize, ()>>;
}

impl ControlSink for quinn::SendStream {
    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<Result<usize, ()>> {
        std::pin::Pin::new(self)
            .poll_write(cx, bytes)
            .map(|written| written.map_err(|_| ()))
    }
}

/// The seat is gone: its queue is full (a client too slow for its reliable messages) or
/// its session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

/// Where a tick's snapshot went.
#[derive(Debug)]
pub(crate) enum Routed {
    /// The events before it are on the stream: the caller hands it to the connection.
    Direct(Bytes),
    /// It waits behind the events in the queue (or there was none).
    Queued,
    /// The queue had no room for it: dropped (the next one supersedes it).
    Dropped,
}

/// What the sim worker asks of a seat's control stream.
pub(crate) trait SeatControl: Send + Sync {
    /// A tick's control messages, encoded as frames (possibly none), then its snapshot
    /// (if any): written now when nothing waits and the stream takes them all, queued in
    /// order otherwise. `Gone` when the queue has no room for the frames.
    fn send(&self, frames: &[u8], snapshot: Option<Bytes>) -> Result<Routed, Gone>;
    /// A message for the session's writer itself (a goodbye: the session ends with it),
    /// behind everything before it.
    fn enqueue(&self, item: Outbound) -> Result<(), Gone>;
    /// The worker lets the seat go (too slow, replaced by a reconnect, or its match
    /// ended): the session closes the connection.
    fn release(&self);
}

struct State<S> {
    /// The stream, once the session has written its welcome and until it takes it back
    /// for its farewell.
    stream: Option<S>,
    /// Something waits in the queue (or is being written by the session): nothing is
    /// written directly until the session has caught up.
    queued: bool,
    released: bool,
}

/// A seat's control stream and its queue.
pub(crate) struct ControlStream<S> {
    state: Mutex<State<S>>,
    queue: mpsc::Sender<Outbound>,
    /// Wakes the session when the worker lets the seat go.
    released: Notify,
}

impl<S: ControlSink> ControlStream<S> {
    /// A stream not yet attached (everything queues until it is), with a queue of
    /// `capacity` items; the receiver is the session writer's.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<Outbound>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let control = Self {
            state: Mutex::new(State {
                stream: None,
                queued: true,
                released: false,
            }),
            queue,
            released: Notify::new(),
        };
        (control, receiver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the stream to the queue's writer and to direct writes (after the welcome).
    pub(crate) fn attach(&self, stream: S) {
        self.lock().stream = Some(stream);
    }

    /// Takes the stream back (for the farewell): everything queues from now on.
    pub(crate) fn detach(&self) -> Option<S> {
        let mut state = self.lock();
        state.queued = true;
        state.stream.take()
    }

    /// Writes `bytes` as the queue's writer, waiting for room.
    pub(crate) async fn write_all(&self, bytes: &[u8]) -> Result<(), Gone> {
        let mut written = 0;
        while written < bytes.len() {
            written += std::future::poll_fn(|cx| {
                let mut state = self.lock();
                match state.stream.as_mut() {
                    Some(stream) => stream.poll_write(cx, &bytes[written..]).map_err(|()| Gone),
                    None => Poll::Ready(Err(Gone)),
                }
            })
            .await?;
        }
        Ok(())
    }

    /// The queue's writer has written what it took: the next item waiting, or `None` —
    /// and direct writes may go again — when none does.
    pub(crate) fn settle(&self, queue: &mut mpsc::Receiver<Outbound>) -> Option<Outbound> {
        let mut state = self.lock();
        match queue.try_recv() {
            Ok(item) => Some(item),
            Err(_) => {
                state.queued = false;
                None
            }
        }
    }

    /// Resolves once the worker has let the seat go.
    pub(crate) async fn released(&self) {
        loop {
            let notified = self.released.notified();
            if self.lock().released {
                return;
            }
            notified.await;
        }
    }
}

impl<S: ControlSink> SeatControl for ControlStream<S> {
    fn send(&self, frames: &[u8], snapshot: Option<Bytes>) -> Result<Routed, Gone> {
        let mut state = self.lock();
        let mut written = 0;
        if !state.queued
            && let Some(stream) = state.stream.as_mut()
        {
            let mut cx = Context::from_waker(Waker::noop());
            while written < frames.len() {
                match stream.poll_write(&mut cx, &frames[written..]) {
                    Poll::Ready(Ok(n)) if n > 0 => written += n,
                    Poll::Ready(Err(())) => return Err(Gone),
                    Poll::Ready(Ok(_)) | Poll::Pending => break,
                }
            }
            if written == frames.len() {
                return Ok(match snapshot {
                    Some(bytes) => Routed::Direct(bytes),
                    None => Routed::Queued,
                });
            }
        }
        // Behind whatever waits: the rest of the frames, then the snapshot.
        state.queued = true;
        if written < frames.len() {
            self.queue
                .try_send(Outbound::Frames(frames[written..].to_vec()))
                .map_err(|_| Gone)?;
        }
        Ok(match snapshot {
            Some(bytes) => match self.queue.try_send(Outbound::Datagram(bytes)) {
                Ok(()) => Routed::Queued,
                Err(mpsc::error::TrySendError::Full(_)) => Routed::Dropped,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Gone),
            },
            None => Routed::Queued,
        })
    }

    fn enqueue(&self, item: Outbound) -> Result<(), Gone> {
        let mut state = self.lock();
        state.queued = true;
        self.queue.try_send(item).map_err(|_| Gone)
    }

    fn release(&self) {
        self.lock().released = true;
        self.released.notify_waiters();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stream in memory that takes up to `room` bytes, then none until given more.
    #[derive(Default)]
    pub(crate) struct Memory {
        pub written: Vec<u8>,
        pub room: usize,
    }

    impl ControlSink for Memory {
        fn poll_write(&mut self, _: &mut Context<'_>, bytes: &[u8]) -> Poll<Result<usize, ()>> {
            let n = bytes.len().min(self.room);
            if n == 0 {
                return Poll::Pending;
            }
            self.room -= n;
            self.written.extend_from_slice(&bytes[..n]);
            Poll::Ready(Ok(n))
        }
    }

    fn drain(queue: &mut mpsc::Receiver<Outbound>) -> Vec<Outbound> {
        std::iter::from_fn(|| queue.try_recv().ok()).collect()
    }

    /// Until the welcome is written everything queues; then a tick with room goes
    /// straight to the stream, its snapshot back to the caller; one without room queues
    /// its rest and its snapshot, and so does every tick after it, until the writer has
    /// caught up: the stream gets the bytes in order.
    #[test]
    fn direct_writes_never_overtake_what_waits() {
        let (control, mut queue) = ControlStream::<Memory>::new(16);
        assert!(matches!(
            control.send(b"ab", Some(Bytes::from_static(b"s1"))),
            Ok(Routed::Queued)
        ));
        assert_eq!(drain(&mut queue).len(), 2, "frames and snapshot wait");
        // The session has written the welcome and what waited, and caught up.
        control.attach(Memory {
            written: Vec::new(),
            room: 3,
        });
        assert!(control.settle(&mut queue).is_none());
        match control.send(b"cd", Some(Bytes::from_static(b"s2"))) {
            Ok(Routed::Direct(snapshot)) => assert_eq!(&snapshot[..], b"s2"),
            other => panic!("{other:?}"),
        }
        // Room for one byte of "efgh": the rest and the snapshot wait...
        assert!(matches!(
            control.send(b"efgh", Some(Bytes::from_static(b"s3"))),
            Ok(Routed::Queued)
        ));
        // ...and so does the next tick, though the stream has room again.
        control.lock().stream.as_mut().expect("attached").room = 100;
        assert!(matches!(control.send(b"ij", None), Ok(Routed::Queued)));
        let waiting = drain(&mut queue);
        assert!(
            matches!(
                waiting.as_slice(),
                [
                    Outbound::Frames(rest),
                    Outbound::Datagram(_),
                    Outbound::Frames(next)
                ] if rest == b"fgh" && next == b"ij"
            ),
            "{waiting:?}"
        );
        assert_eq!(
            control.lock().stream.as_ref().expect("attached").written,
            b"cde"
        );
        // The writer caught up: direct again.
        assert!(control.settle(&mut queue).is_none());
        assert!(matches!(control.send(b"kl", None), Ok(Routed::Queued)));
        assert_eq!(
            control.lock().stream.as_ref().expect("attached").written,
            b"cdekl"
        );
        assert!(drain(&mut queue).is_empty());
    }

    /// A queue with no room: the frames' seat is gone, a lone snapshot is dropped.
    #[test]
    fn a_full_queue_drops_the_snapshot_and_loses_the_seat_for_frames() {
        let (control, _queue) = ControlStream::<Memory>::new(1);
        assert!(matches!(
            control.send(b"", Some(Bytes::from_static(b"s1"))),
            Ok(Routed::Queued)
        ));
        assert!(matches!(
            control.send(b"", Some(Bytes::from_static(b"s2"))),
            Ok(Routed::Dropped)
        ));
        assert_eq!(control.send(b"ab", None).err(), Some(Gone));
    }
}
