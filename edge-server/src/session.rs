//! One player's connection: the handshake, then two pumps (control in and out) until
//! either side ends it, and the connection's datagram reader beside them. Snapshots do not
//! pass through the session: the sim worker hands them to the connection itself; input
//! datagrams wait in the seat's inbox for its match's tick ([`crate::worker::QuicLink`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outpost_protocol::codec::{self, FRAME_HEADER_LEN};
use outpost_protocol::{
    Answer, Control, GoodbyeReason, Hello, MatchId, PROTOCOL_VERSION, PlayerId, Pong, Refusal,
    RefusalCode, Reject, RejectCode, Welcome,
};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::Instrument as _;

use crate::admission::{Admission, Admitted};
use crate::config::EdgeConfig;
use crate::control_stream::{ControlStream, SeatControl as _};
use crate::directory::{Directory, Route};
use crate::handshake::Pending;
use crate::metrics::EdgeMetrics;
use crate::worker::{CONTROL_QUEUE, Command, InputMailbox, Outbound, QuicLink, SessionLink};

/// QUIC application close codes the edge uses.
pub mod close_code {
    /// Normal end: the match ended, the player quit, or the edge shut down.
    pub const DONE: u32 = 0;
    /// The connection was refused; a `Reject` preceded it on the control stream.
    pub const REJECTED: u32 = 1;
    /// The peer broke the protocol.
    pub const PROTOCOL_VIOLATION: u32 = 2;
    /// The peer could not keep up with reliable traffic, or was replaced by a reconnect.
    pub const DROPPED: u32 = 3;
}

/// Longest the edge waits, after a last message (`Reject`, `Goodbye`), for the peer to
/// acknowledge it before closing: on a lossy, slow link the retransmissions take a few
/// round trips, and closing first would discard the message.
const FAREWELL_LINGER: Duration = Duration::from_secs(5);

/// State every connection task shares.
pub(crate) struct Shared {
    pub config: EdgeConfig,
    pub metrics: Arc<EdgeMetrics>,
    pub directory: Arc<Directory>,
    pub admission: Mutex<Admission>,
    /// One permit per player slot ([`EdgeConfig::max_players`]), taken after a valid
    /// Hello and held for the session.
    pub player_slots: Arc<tokio::sync::Semaphore>,
    /// Woken when a token fails its signature: the cloud link fetches the keys again.
    pub key_refresh: tokio::sync::Notify,
    pub workers: Vec<std::sync::mpsc::SyncSender<Command>>,
    pub accepting: AtomicBool,
    pub next_session: AtomicU64,
    /// Each sim worker's last turn of its loop (ticking, or idle at least every 50 ms).
    pub beats: crate::worker::Beats,
}

enum FrameError {
    Closed,
    Invalid,
}

async fn read_frame(recv: &mut RecvStream) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(|_| FrameError::Closed)?;
    let len = codec::frame_len(header).map_err(|_| FrameError::Invalid)?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload)
        .await
        .map_err(|_| FrameError::Closed)?;
    Ok(payload)
}

async fn write_frame(send: &mut SendStream, message: &Control) -> bool {
    match codec::encode_frame(message) {
        Ok(frame) => send.write_all(&frame).await.is_ok(),
        Err(err) => {
            tracing::error!(?err, "could not encode a control message");
            false
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Finishes the control stream and waits (bounded) until the peer has acknowledged all
/// of it, or has closed the connection itself, so the last message is not lost.
async fn farewell(send: &mut SendStream, conn: &Connection) {
    let _ = send.finish();
    let acknowledged = async {
        let _ = send.stopped().await;
    };
    let _ = timeout(FAREWELL_LINGER, async {
        tokio::select! {
            () = acknowledged => {}
            _ = conn.closed() => {}
        }
    })
    .await;
}

/// Serves one incoming connection to its end. `pending` holds its place among pending
/// handshakes until it has sent a valid Hello (or been refused).
pub(crate) async fn serve(shared: Arc<Shared>, incoming: quinn::Incoming, pending: Pending) {
    let remote = incoming.remote_address();
    // The handshake and the Hello share one deadline from the first packet.
    let deadline = Instant::now() + shared.config.hello_timeout;
    let conn = match timeout_at(deadline, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(%remote, ?err, "handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.reject(RejectCode::Timeout);
            tracing::debug!(%remote, "handshake timed out");
            return;
        }
    };
    let span = tracing::info_span!("conn", %remote);
    async move {
        let Ok(Ok((mut send, mut recv))) = timeout_at(deadline, conn.accept_bi()).await else {
            drop(pending);
            shared.metrics.reject(RejectCode::Timeout);
            conn.close(VarInt::from_u32(close_code::REJECTED), b"no control stream");
            return;
        };
        let admitted = admit(&shared, &conn, &mut send, &mut recv, deadline).await;
        drop(pending);
        match admitted {
            Ok(session) => session.run(&shared, conn, send, recv).await,
            Err(reject) => {
                shared.metrics.reject(reject.code);
                tracing::info!(code = reject.code.as_str(), detail = %reject.detail_text(), "refused");
                let _ = write_frame(&mut send, &Control::Reject(reject)).await;
                farewell(&mut send, &conn).await;
                conn.close(VarInt::from_u32(close_code::REJECTED), b"rejected");
            }
        }
    }
    .instrument(span)
    .await;
}

/// Which seat a connection holds.
struct SeatKey {
    id: u64,
    match_id: MatchId,
    player: PlayerId,
    route: Route,
    /// Where this connection's input frames go.
    inputs: Arc<InputMailbox>,
}

impl SeatKey {
    fn leave(&self, shared: &Shared) {
        let leave = Command::Leave {
            match_id: self.match_id,
            player: self.player,
            session: self.id,
        };
        // If the worker's queue is full the leave is lost, but the worker notices the
        // closed link on its next snapshot and treats it as a leave all the same.
        let _ = shared.workers[self.route.worker].try_send(leave);
    }
}

/// A player admitted and seated, with the channels the sim worker feeds.
struct Session {
    /// The player slot, held while the session lives (`None` for a reconnect that found
    /// none free).
    _slot: Option<OwnedSemaphorePermit>,
    seat: SeatKey,
    /// The control stream, shared with the sim worker, and its queue.
    writer: Arc<ControlStream<SendStream>>,
    queue: mpsc::Receiver<Outbound>,
    /// The seat's datagrams: its reader runs while the session does.
    link: QuicLink,
}

/// Reads the Hello (by `deadline`) and seats its player.
async fn admit(
    shared: &Arc<Shared>,
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    deadline: Instant,
) -> Result<Session, Reject> {
    let hello = read_hello(recv, deadline).await?;
    if conn.max_datagram_size().is_none() {
        return Err(Reject::new(
            RejectCode::DatagramsUnsupported,
            "snapshots travel as QUIC datagrams: enable them (max_datagram_frame_size)",
        ));
    }
    let admitted = {
        let mut admission = shared.admission.lock().unwrap_or_else(|e| e.into_inner());
        admission.admit(&hello, now_ms(), rand::random())
    }
    .map_err(|code| {
        if code == RejectCode::BadSignature {
            shared.key_refresh.notify_one();
        }
        Reject::new(code, "connect token refused")
    })?;
    let nonce = admitted.token.nonce;
    let reconnect = admitted.reconnect;
    let seated = seat(shared, conn, send, admitted).await;
    if seated.is_err() && !reconnect {
        // Refused after the token checked out (no room, the match refused): the token was
        // not used, so it stays good for another try.
        let mut admission = shared.admission.lock().unwrap_or_else(|e| e.into_inner());
        admission.release(&nonce);
    }
    seated
}

/// The first frame, which must be a Hello of this protocol version.
async fn read_hello(recv: &mut RecvStream, deadline: Instant) -> Result<Hello, Reject> {
    let payload = match timeout_at(deadline, read_frame(recv)).await {
        Err(_) => return Err(Reject::new(RejectCode::Timeout, "no hello in time")),
        Ok(Err(FrameError::Closed)) => {
            return Err(Reject::new(RejectCode::MalformedHello, "stream ended"));
        }
        Ok(Err(FrameError::Invalid)) => {
            return Err(Reject::new(RejectCode::MalformedHello, "frame too large"));
        }
        Ok(Ok(payload)) => payload,
    };
    let hello: Hello = match codec::decode_control(&payload) {
        Ok(Control::Hello(hello)) => hello,
        Ok(_) => {
            return Err(Reject::new(
                RejectCode::MalformedHello,
                "first message must be Hello",
            ));
        }
        Err(_) => {
            return Err(match codec::peek_hello_version(&payload) {
                Some(v) if v != PROTOCOL_VERSION => Reject::new(
                    RejectCode::VersionMismatch,
                    &format!("edge speaks protocol {PROTOCOL_VERSION}, client {v}"),
                ),
                _ => Reject::new(RejectCode::MalformedHello, "hello does not decode"),
            });
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Reject::new(
            RejectCode::VersionMismatch,
            &format!(
                "edge speaks protocol {PROTOCOL_VERSION}, client {}",
                hello.protocol_version
            ),
        ));
    }
    Ok(hello)
}

/// Takes a player slot, routes the match and seats the admitted player in it.
async fn seat(
    shared: &Arc<Shared>,
    conn: &Connection,
    send: &mut SendStream,
    admitted: Admitted,
) -> Result<Session, Reject> {
    // A reconnect takes over a seat whose old connection may still hold its slot until
    // it times out; it goes on without one rather than be refused by its own ghost.
    let slot = match shared.player_slots.clone().try_acquire_owned() {
        Ok(slot) => Some(slot),
        Err(_) if admitted.reconnect => None,
        Err(_) => {
            return Err(Reject::new(
                RejectCode::EdgeFull,
                "edge has no free player slot",
            ));
        }
    };
    let token = admitted.token;
    let accepting = shared.accepting.load(Ordering::Acquire);
    let (route, created) = shared
        .directory
        .route(token.match_id, accepting)
        .map_err(|code| Reject::new(code, "match cannot be hosted here"))?;

    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let (writer, queue) = ControlStream::new(CONTROL_QUEUE);
    let writer = Arc::new(writer);
    let inputs = Arc::new(InputMailbox::default());
    let link = QuicLink::new(conn.clone());
    let (reply_tx, reply) = oneshot::channel();
    let join = Command::Join {
        match_id: token.match_id,
        config: token.config.clone(),
        player: token.player_id,
        team: token.team,
        tick: route.tick.clone(),
        link: SessionLink {
            id,
            datagrams: Box::new(link.clone()),
            control: writer.clone(),
            inputs: inputs.clone(),
            gate: crate::worker::InputGate::default(),
        },
        reply: reply_tx,
    };
    if shared.workers[route.worker].try_send(join).is_err() {
        if created {
            shared.directory.remove(token.match_id);
        }
        return Err(Reject::new(RejectCode::EdgeFull, "simulation queue full"));
    }
    let joined = reply
        .await
        .map_err(|_| Reject::new(RejectCode::Draining, "edge is shutting down"))?
        .map_err(|code| Reject::new(code, "match refused the player"))?;
    let welcome = Control::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        match_id: token.match_id,
        player_id: token.player_id,
        entity: joined.entity,
        tick: joined.tick,
        config: joined.config,
        schema: joined.schema,
        reconnect_key: admitted.reconnect_key,
        players: joined.players,
    });
    let session = Session {
        _slot: slot,
        seat: SeatKey {
            id,
            match_id: token.match_id,
            player: token.player_id,
            route,
            inputs,
        },
        writer,
        queue,
        link,
    };
    if !write_frame(send, &welcome).await {
        session.seat.leave(shared);
        return Err(Reject::new(
            RejectCode::MalformedHello,
            "could not send welcome",
        ));
    }
    tracing::info!(match_id = %token.match_id, player = %token.player_id, reconnect = admitted.reconnect, "joined");
    Ok(session)
}

/// Why a session ended, and how to close the connection.
enum End {
    Closed,
    Quit,
    Violation,
    Goodbye,
    Dropped,
}

impl Session {
    async fn run(
        self,
        shared: &Arc<Shared>,
        conn: Connection,
        send: SendStream,
        mut recv: RecvStream,
    ) {
        let Session {
            _slot,
            seat,
            writer,
            mut queue,
            link,
        } = self;
        // The welcome is written: the stream is the writer's, and the sim worker's.
        writer.attach(send);
        // Ends with the connection, or here with the session.
        let reader = AbortOnDrop(tokio::spawn(link.read(shared.metrics.clone())));
        let control_in = control_in(shared, &mut recv, &writer, &seat);
        let control_out = control_out(shared, &conn, &writer, &mut queue);
        let end = tokio::select! {
            end = control_in => end,
            end = control_out => end,
            // Datagrams are the sim worker's; their end is the connection's.
            _ = conn.closed() => End::Closed,
        };
        seat.leave(shared);
        drop(reader);
        let Some(mut send) = writer.detach() else {
            conn.close(VarInt::from_u32(close_code::DONE), b"closed");
            return;
        };
        let (code, reason): (u32, &[u8]) = match end {
            End::Closed => (close_code::DONE, b"closed"),
            End::Quit => (close_code::DONE, b"goodbye"),
            End::Goodbye => {
                farewell(&mut send, &conn).await;
                (close_code::DONE, b"goodbye")
            }
            End::Violation => {
                let _ = write_frame(
                    &mut send,
                    &Control::Goodbye(GoodbyeReason::ProtocolViolation),
                )
                .await;
                let _ = send.finish();
                (close_code::PROTOCOL_VIOLATION, b"protocol violation")
            }
            End::Dropped => (close_code::DROPPED, b"dropped"),
        };
        conn.close(VarInt::from_u32(code), reason);
        tracing::info!(match_id = %seat.match_id, player = %seat.player, "left");
    }
}

async fn control_in(
    shared: &Shared,
    recv: &mut RecvStream,
    writer: &ControlStream<SendStream>,
    seat: &SeatKey,
) -> End {
    loop {
        let payload = match read_frame(recv).await {
            Ok(payload) => payload,
            Err(FrameError::Closed) => return End::Closed,
            Err(FrameError::Invalid) => {
                shared.metrics.control_rejected.inc();
                return End::Violation;
            }
        };
        match codec::decode_control(&payload) {
            Ok(Control::Ping(ping)) => {
                let pong = Pong {
                    client_time_us: ping.client_time_us,
                    server_tick: seat.route.tick.load(Ordering::Acquire),
                };
                // A client flooding pings without reading answers loses the answers.
                let _ = writer.enqueue(Outbound::Control(Control::Pong(pong)));
            }
            Ok(Control::Goodbye(_)) => return End::Quit,
            Ok(Control::Request(request)) => {
                if let Err(request) = seat.inputs.put_request(request) {
                    let busy = Answer {
                        seq: request.seq,
                        refused: Some(Refusal::new(
                            RefusalCode::Busy,
                            "too many requests waiting for the next tick",
                        )),
                    };
                    shared.metrics.refuse_request(RefusalCode::Busy);
                    // A client flooding requests without reading answers loses them.
                    let _ = writer.enqueue(Outbound::Control(Control::Answer(busy)));
                }
            }
            Ok(_) | Err(_) => {
                shared.metrics.control_rejected.inc();
                return End::Violation;
            }
        }
    }
}

/// Most control bytes gathered into one stream write.
const CONTROL_BATCH_BYTES: usize = 16 * 1024;

async fn control_out(
    shared: &Shared,
    conn: &Connection,
    writer: &ControlStream<SendStream>,
    queue: &mut mpsc::Receiver<Outbound>,
) -> End {
    let mut batch = Vec::new();
    // What the sim worker could not write itself waits here, in order.
    let mut next = writer.settle(queue);
    loop {
        let first = match next.take() {
            Some(first) => first,
            // What the worker queued before it let the seat go (a match's goodbye) is
            // still written.
            None => tokio::select! {
                biased;
                first = queue.recv() => match first {
                    Some(first) => first,
                    None => return End::Dropped,
                },
                // The worker let the seat go: too slow, or replaced by a reconnect.
                () = writer.released() => return End::Dropped,
            },
        };
        // A tick's events reach a seat together: one stream write for all of them, then
        // the snapshot that follows them, so that both are queued before the connection's
        // driver builds the next packet.
        batch.clear();
        let mut item = Some(first);
        let mut goodbye = false;
        let mut snapshot = None;
        while let Some(waiting) = item.take() {
            match waiting {
                Outbound::Control(message) => {
                    goodbye = matches!(message, Control::Goodbye(_));
                    match codec::encode_frame(&message) {
                        Ok(frame) => batch.extend_from_slice(&frame),
                        Err(err) => {
                            tracing::error!(?err, "could not encode a control message");
                            return End::Closed;
                        }
                    }
                }
                Outbound::Frames(frames) => batch.extend_from_slice(&frames),
                Outbound::Datagram(bytes) => {
                    snapshot = Some(bytes);
                    break;
                }
            }
            if !goodbye && batch.len() < CONTROL_BATCH_BYTES {
                item = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            tokio::select! {
                biased;
                written = writer.write_all(&batch) => if written.is_err() {
                    return End::Closed;
                },
                // A client that does not read its stream is let go by the worker once its
                // queue is full.
                () = writer.released() => return End::Dropped,
            }
        }
        if let Some(bytes) = snapshot {
            let len = bytes.len() as u64;
            match conn.send_datagram(bytes) {
                Ok(()) => {
                    shared.metrics.datagrams_out.inc();
                    shared.metrics.bytes_out.inc_by(len);
                }
                Err(quinn::SendDatagramError::TooLarge) => {
                    shared.metrics.snapshots_dropped.inc();
                }
                // The connection is gone: the other pumps see it too.
                Err(_) => return End::Closed,
            }
        }
        if goodbye {
            return End::Goodbye;
        }
        next = writer.settle(queue);
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
