//! Sim workers: dedicated threads that each own a set of matches and tick them on their
//! fixed clocks. Each match is a [`MatchHost`] (pure: `host.rs`); the worker is the loop
//! around them: commands (joins, leaves) from a bounded queue and each seat's input
//! datagrams, taken from its connection at its match's tick, in; the hosts' transmits out
//! to each connection. A slow client can never stall a tick: a full queue drops and counts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use outpost_protocol::{
    Control, Datagram, InputFrame, MatchConfig, MatchEndReason, MatchId, PlayerId, RejectCode,
    Request, codec,
};
use tokio::sync::oneshot;

use crate::control_stream::{Routed, SeatControl};
use crate::directory::Directory;
pub(crate) use crate::host::{FinishedMatch, Joined};
use crate::host::{HostSettings, MatchHost, Transmit};
use crate::metrics::EdgeMetrics;
use crate::snapshot::Interest;

/// Capacity of a worker's command queue.
pub(crate) const COMMAND_QUEUE: usize = 16_384;
/// Control messages queued per connection; a client this far behind is dropped.
pub(crate) const CONTROL_QUEUE: usize = 256;

/// Input frames kept per seat until its match's next tick. Frames repeat the last eight
/// inputs, so an honest client loses nothing to this bound; a flooding one loses its
/// own oldest frames and nobody else's.
pub const MAILBOX_FRAMES: usize = 4;

/// Requests kept per seat until its match's next tick (the match itself holds at
/// most [`outpost_sim::MAX_PENDING_REQUESTS`] more).
pub const MAILBOX_REQUESTS: usize = outpost_sim::MAX_PENDING_REQUESTS;

/// A seat's inputs and requests, from its connection to the sim worker: bounded per
/// seat, so one client sending too much can only crowd out itself (a queue shared by a
/// worker's matches let a few flooding clients make every other match lose inputs).
#[derive(Debug, Default)]
pub struct InputMailbox {
    frames: Mutex<VecDeque<InputFrame>>,
    requests: Mutex<VecDeque<Request>>,
}

impl InputMailbox {
    /// Leaves a frame for the worker; returns whether an older one was dropped for it.
    pub fn put(&self, frame: InputFrame) -> bool {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        let full = frames.len() >= MAILBOX_FRAMES;
        if full {
            frames.pop_front();
        }
        frames.push_back(frame);
        full
    }

    /// Takes every frame waiting, oldest first, into `out`.
    pub fn take(&self, out: &mut Vec<InputFrame>) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(frames.drain(..));
    }

    /// Leaves a request for the worker, or hands it back when [`MAILBOX_REQUESTS`] are
    /// already waiting (the connection answers it as busy: requests are never dropped
    /// unanswered).
    pub fn put_request(&self, request: Request) -> Result<(), Request> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if requests.len() >= MAILBOX_REQUESTS {
            return Err(request);
        }
        requests.push_back(request);
        Ok(())
    }

    /// Takes every request waiting, oldest first.
    pub fn take_requests(&self) -> Vec<Request> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.drain(..).collect()
    }
}

/// Why a datagram was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// Larger than the connection takes now (its path MTU shrank): this snapshot is lost.
    TooLarge,
    /// The connection is closed, or never had datagrams.
    Gone,
}

/// How a datagram was handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// To the connection itself.
    Now,
    /// Into the worker pass's batch, for the network side ([`Outgoing`]).
    Later,
}

/// A seat's datagrams, both ways, as the sim worker sees them ([`QuicLink`] on the edge).
pub(crate) trait DatagramLink: Send {
    /// Hands a datagram to the connection: at once, or with `batch` into the worker
    /// pass's batch, which the worker hands to the network side at the pass's end.
    fn send(&self, bytes: Bytes, batch: Option<&mut SendBatch>) -> Result<Handed, Unsent>;
    /// The largest datagram the connection takes now, bytes.
    fn max_size(&self) -> usize;
    /// The oldest datagram received and not yet taken, if any.
    fn recv(&self) -> Option<Bytes>;
}

/// Input datagrams a seat's inbox holds for its match's tick; beyond them the oldest is
/// dropped (and counted rejected): what a flooding client can make the edge hold.
pub const INBOX_DATAGRAMS: usize = INPUT_DATAGRAMS_PER_TICK;

/// The edge's datagram link for one connection. Snapshots go from the sim thread straight
/// to the connection: quinn's `send_datagram` is synchronous and thread-safe, so a
/// snapshot crosses no channel and wakes no task of the session on its way out (the
/// connection's driver still sends it). Input datagrams come the other way through the
/// seat's inbox: the connection's reader ([`QuicLink::read`], a task on the network
/// threads) takes each from quinn as it arrives, and the match's tick takes the inbox's.
/// The sim thread never waits on quinn's lock to read: the network thread holds it
/// through each packet's processing and `sendmsg`, and a sim thread that asked a
/// connection for its datagrams while a preempted network thread held it stalled every
/// match of its worker (docs/PERFORMANCE.md, "Where the simulation threads wait"). The
/// size limit is read by the reader too, and left in an atomic.
#[derive(Clone)]
pub(crate) struct QuicLink(Arc<QuicLinkShared>);

struct QuicLinkShared {
    conn: quinn::Connection,
    inbox: Inbox,
    max_size: std::sync::atomic::AtomicUsize,
}

/// A seat's input datagrams between its connection's reader and its match's tick, at most
/// [`INBOX_DATAGRAMS`].
#[derive(Debug, Default)]
struct Inbox(Mutex<VecDeque<Bytes>>);

impl Inbox {
    /// Leaves a datagram for the tick; whether the oldest was dropped for it.
    fn put(&self, bytes: Bytes) -> bool {
        let mut inbox = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let full = inbox.len() >= INBOX_DATAGRAMS;
        if full {
            inbox.pop_front();
        }
        inbox.push_back(bytes);
        full
    }

    /// The oldest datagram waiting.
    fn take(&self) -> Option<Bytes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }
}

impl QuicLink {
    /// A link over `conn`; nothing arrives in its inbox until [`QuicLink::read`] runs.
    pub fn new(conn: quinn::Connection) -> Self {
        let max_size = conn.max_datagram_size().unwrap_or(0);
        Self(Arc::new(QuicLinkShared {
            conn,
            inbox: Inbox::default(),
            max_size: max_size.into(),
        }))
    }

    /// Reads the connection's datagrams into the inbox until the connection ends.
    pub async fn read(self, metrics: Arc<EdgeMetrics>) {
        let link = &self.0;
        while let Ok(bytes) = link.conn.read_datagram().await {
            if link.inbox.put(bytes) {
                metrics.datagrams_in.inc();
                metrics.datagrams_rejected.inc();
            }
            let max_size = link.conn.max_datagram_size().unwrap_or(0);
            link.max_size.store(max_size, Ordering::Relaxed);
        }
    }
}

impl DatagramLink for QuicLink {
    fn send(&self, bytes: Bytes, batch: Option<&mut SendBatch>) -> Result<Handed, Unsent> {
        let Some(batch) = batch else {
            return match self.0.conn.send_datagram(bytes) {
                Ok(()) => Ok(Handed::Now),
                Err(quinn::SendDatagramError::TooLarge) => Err(Unsent::TooLarge),
                Err(_) => Err(Unsent::Gone),
            };
        };
        // The checks quinn would make, on what the reader last saw; quinn makes them again
        // when the network side hands the datagram over.
        match self.max_size() {
            0 => Err(Unsent::Gone),
            max if bytes.len() > max => Err(Unsent::TooLarge),
            _ => {
                batch.push((self.0.conn.clone(), bytes));
                Ok(Handed::Later)
            }
        }
    }

    fn max_size(&self) -> usize {
        self.0.max_size.load(Ordering::Relaxed)
    }

    fn recv(&self) -> Option<Bytes> {
        self.0.inbox.take()
    }
}

/// A worker pass's snapshots for the network side: each with its connection.
pub(crate) type SendBatch = Vec<(quinn::Connection, Bytes)>;

/// Snapshots waiting for the network side, from all workers together; beyond them a
/// pass's batch is dropped and counted (`snapshots_dropped`): the network threads are
/// that far behind, and the next snapshot of each seat supersedes its dropped one.
pub const OUTGOING_DATAGRAMS: usize = 16_384;

/// Snapshot datagrams on their way from the sim workers to their connections. A worker
/// collects its pass's snapshots (every match whose tick was due) and hands them over in
/// one go at the pass's end; one task on the network threads ([`Outgoing::run`]) gives
/// each to its connection. Handed to quinn from the sim thread one by one, each snapshot
/// took its connection's lock (which the network thread holds through a packet's
/// processing and `sendmsg`: a preempted network thread stalled the sim thread) and woke
/// the connection's driver from outside the runtime, through the runtime's shared queue
/// and often an unpark of the network thread; now a pass costs one lock of this queue and
/// one wake, and the drivers are woken from inside the runtime (docs/PERFORMANCE.md, "One
/// hand-off per worker pass"). Snapshots that follow a tick's reliable messages still go
/// at once, behind them, so that both leave in one packet.
pub(crate) struct Outgoing<T = (quinn::Connection, Bytes)> {
    queue: Mutex<Vec<T>>,
    ready: tokio::sync::Notify,
    bound: usize,
}

impl<T> Outgoing<T> {
    /// An empty queue holding at most `bound` items.
    pub fn new(bound: usize) -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            ready: tokio::sync::Notify::new(),
            bound,
        }
    }

    /// Moves `batch` into the queue and wakes the network side; a batch that does not
    /// fit is dropped whole. How many items were dropped.
    pub fn hand_over(&self, batch: &mut Vec<T>) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() + batch.len() > self.bound {
            let dropped = batch.len();
            batch.clear();
            return dropped;
        }
        let was_empty = queue.is_empty();
        queue.append(batch);
        drop(queue);
        // The task takes the whole queue after each wake: a wake is owed only when the
        // queue was empty (a stored permit if the task is busy).
        if was_empty {
            self.ready.notify_one();
        }
        0
    }

    /// Waits for items, then swaps them into `taken` (empty on entry).
    async fn take(&self, taken: &mut Vec<T>) {
        self.ready.notified().await;
        std::mem::swap(
            &mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()),
            taken,
        );
    }
}

impl Outgoing {
    /// The network side: gives each handed-over snapshot to its connection, until
    /// `cancel`.
    pub async fn run(
        self: Arc<Self>,
        metrics: Arc<EdgeMetrics>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut taken = Vec::new();
        loop {
            tokio::select! {
                () = self.take(&mut taken) => {}
                () = cancel.cancelled() => break,
            }
            for (conn, bytes) in taken.drain(..) {
                let len = bytes.len() as u64;
                match conn.send_datagram(bytes) {
                    Ok(()) => {
                        metrics.datagrams_out.inc();
                        metrics.bytes_out.inc_by(len);
                    }
                    // Its path shrank since the sim thread looked.
                    Err(quinn::SendDatagramError::TooLarge) => {
                        metrics.snapshots_dropped.inc();
                    }
                    // Gone: its session sees the connection end and leaves the seat.
                    Err(_) => {}
                }
            }
        }
    }
}

/// Input datagrams a seat may have taken at one tick, whatever its rate allows: what a
/// flooding client can cost its match's tick (quinn holds the rest, dropping its oldest).
pub const INPUT_DATAGRAMS_PER_TICK: usize = 64;
/// Input datagrams a seat may send in a burst above its steady rate
/// ([`crate::EdgeConfig::max_input_rate_hz`]).
pub const INPUT_BURST: f64 = 32.0;

/// A seat's input rate limit: a token bucket of [`INPUT_BURST`] filled at the configured
/// rate, on the worker's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputGate {
    tokens: f64,
    last: Option<Instant>,
}

impl Default for InputGate {
    fn default() -> Self {
        Self {
            tokens: INPUT_BURST,
            last: None,
        }
    }
}

impl SessionLink {
    /// Takes the input datagrams the connection received since the last tick into the
    /// seat's mailbox (at most [`INPUT_DATAGRAMS_PER_TICK`]): each over the rate, of the
    /// wrong kind or not decoding is dropped and counted.
    fn take_datagrams(&mut self, now: Instant, rate_hz: u32, metrics: &EdgeMetrics) {
        let gate = &mut self.gate;
        if let Some(last) = gate.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * f64::from(rate_hz);
            gate.tokens = (gate.tokens + refill).min(INPUT_BURST);
        }
        gate.last = Some(now);
        for _ in 0..INPUT_DATAGRAMS_PER_TICK {
            let Some(bytes) = self.datagrams.recv() else {
                break;
            };
            metrics.datagrams_in.inc();
            metrics.bytes_in.inc_by(bytes.len() as u64);
            if gate.tokens < 1.0 {
                metrics.datagrams_rejected.inc();
                continue;
            }
            gate.tokens -= 1.0;
            match codec::decode_datagram(&bytes) {
                Ok(Datagram::Input(frame)) => {
                    if self.inputs.put(frame) {
                        metrics.inputs_dropped.inc();
                    }
                }
                Ok(Datagram::Snapshot(_)) | Err(_) => {
                    metrics.datagrams_rejected.inc();
                }
            }
        }
    }
}

/// The sim side's end of one player's connection.
pub(crate) struct SessionLink {
    /// Unique per connection, so a stale connection's leave cannot unseat a newer one.
    pub id: u64,
    /// Snapshot datagrams out, input datagrams in.
    pub datagrams: Box<dyn DatagramLink>,
    /// Reliable messages out, and the snapshots that follow them in the same tick.
    pub control: Arc<dyn SeatControl>,
    /// Input frames taken from the connection, and requests from its control stream.
    pub inputs: Arc<InputMailbox>,
    /// The input rate limit.
    pub gate: InputGate,
}

impl Drop for SessionLink {
    /// The worker lets the seat go: its session closes the connection.
    fn drop(&mut self) {
        self.control.release();
    }
}

/// What a session's writer sends, in order: reliable messages on the control stream, and
/// a snapshot that follows reliable messages of the same tick, handed to the connection
/// right after them so that the two leave in one packet rather than two.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A message on the control stream.
    Control(Control),
    /// Messages already encoded as frames (what a direct write left).
    Frames(Vec<u8>),
    /// A snapshot datagram.
    Datagram(Bytes),
}

/// What the network side asks of a worker.
pub(crate) enum Command {
    /// Seat a player (creating the match if it is new) and start sending to them.
    Join {
        match_id: MatchId,
        config: MatchConfig,
        player: PlayerId,
        /// Their team, from the token.
        team: u8,
        tick: Arc<AtomicU32>,
        link: SessionLink,
        reply: oneshot::Sender<Result<Joined, RejectCode>>,
    },
    /// A player's connection ended.
    Leave {
        match_id: MatchId,
        player: PlayerId,
        session: u64,
    },
}

/// What workers share with the rest of the edge.
pub(crate) struct WorkerContext {
    /// Where ended matches go (the outbox writer); `None`: nowhere, and no recording.
    pub finished: Option<std::sync::mpsc::SyncSender<FinishedMatch>>,
    /// Largest replay recorded per match, bytes.
    pub max_replay_bytes: usize,
    pub metrics: Arc<EdgeMetrics>,
    pub directory: Arc<Directory>,
    pub tick_times_us: Arc<Mutex<Histogram<u64>>>,
    pub stop: Arc<AtomicBool>,
    pub reconnect_grace: Duration,
    pub interest: Interest,
    pub bandwidth_bps: u32,
    /// Input datagrams a seat may send per second ([`crate::EdgeConfig::max_input_rate_hz`]).
    pub max_input_rate_hz: u32,
    pub modes: outpost_sim::Modes,
    /// Where this worker says it is alive, each turn of its loop.
    pub beat: Arc<AtomicU64>,
    pub beats_since: Instant,
    /// This worker's index and the number of workers: its tick phases are shifted by
    /// `index / count` of a phase from the others' (see [`TICK_PHASES`]).
    pub phase: (u32, u32),
    /// Where a pass's snapshots go to the network side.
    pub outgoing: Arc<Outgoing>,
}

/// Phases per tick period that a worker's matches start their clocks on. A match created
/// at any moment starts on the next of its worker's phase boundaries (at most a quarter
/// tick later), so the matches of a phase tick in one pass of the worker: the worker
/// wakes at most this many times per tick period, and the network side receives their
/// snapshots together, where matches created at random moments each woke both on their
/// own. Workers' boundaries are spread over a phase, so their passes do not all fall on
/// the same moment.
pub const TICK_PHASES: u32 = 4;

/// When a match created at `now` with tick `period` starts its clock: the first phase
/// boundary at or after `now`, for the worker whose boundaries fall at `epoch` plus
/// `index / count` of a phase plus whole phases.
pub(crate) fn phase_start(
    epoch: Instant,
    (index, count): (u32, u32),
    now: Instant,
    period: Duration,
) -> Instant {
    let step = (period / TICK_PHASES).as_nanos().max(1);
    let shift = step * u128::from(index) / u128::from(count.max(1));
    let since = now.saturating_duration_since(epoch).as_nanos() + step - shift;
    let wait = (step - since % step) % step;
    now + Duration::from_nanos(wait as u64)
}

/// The sim workers' last turns of their loops, as milliseconds since `since`: a worker
/// stuck in a tick stops beating.
#[derive(Clone)]
pub(crate) struct Beats {
    pub since: Instant,
    pub workers: Vec<Arc<AtomicU64>>,
}

impl Beats {
    /// How long ago the least recent worker last turned its loop.
    pub fn oldest(&self) -> Duration {
        let now = self.since.elapsed().as_millis() as u64;
        let oldest = self
            .workers
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .min()
            .unwrap_or(now);
        Duration::from_millis(now.saturating_sub(oldest))
    }
}

/// A hosted match and the connections of its seats.
struct Hosted {
    host: MatchHost,
    /// Its tick, published for clock pings.
    tick: Arc<AtomicU32>,
    /// Each seated session's player and link.
    links: HashMap<u64, (PlayerId, SessionLink)>,
}

struct Worker {
    ctx: WorkerContext,
    matches: HashMap<MatchId, Hosted>,
    frames: Vec<InputFrame>,
    /// This pass's snapshots, until [`Worker::hand_over`].
    batch: SendBatch,
}

/// Runs a worker until the stop flag is set or every command sender is gone.
pub(crate) fn run(ctx: WorkerContext, commands: Receiver<Command>) {
    let mut worker = Worker::new(ctx);
    loop {
        worker.ctx.beat.store(
            worker.ctx.beats_since.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        if worker.ctx.stop.load(Ordering::Acquire) {
            break;
        }
        loop {
            match commands.try_recv() {
                Ok(command) => worker.handle(command, Instant::now()),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    worker.shutdown();
                    return;
                }
            }
        }
        worker.run_due_ticks(Instant::now());
        match worker.matches.values().map(|m| m.host.next_tick_at()).min() {
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                }
            }
            None => match commands.recv_timeout(Duration::from_millis(50)) {
                Ok(command) => worker.handle(command, Instant::now()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            },
        }
    }
    worker.shutdown();
}

impl Worker {
    fn new(ctx: WorkerContext) -> Self {
        Self {
            ctx,
            matches: HashMap::new(),
            frames: Vec::new(),
            batch: Vec::new(),
        }
    }

    /// Hands the pass's snapshots to the network side.
    fn hand_over(&mut self) {
        let dropped = self.ctx.outgoing.hand_over(&mut self.batch);
        self.ctx.metrics.snapshots_dropped.inc_by(dropped as u64);
    }

    fn handle(&mut self, command: Command, now: Instant) {
        match command {
            Command::Join {
                match_id,
                config,
                player,
                team,
                tick,
                link,
                reply,
            } => {
                let result = self.join(match_id, &config, (player, team), tick, link, now);
                self.hand_over();
                // The connection may be gone already; the seat then times out as a leave.
                let _ = reply.send(result);
            }
            Command::Leave {
                match_id,
                player,
                session,
            } => {
                if let Some(hosted) = self.matches.get_mut(&match_id) {
                    hosted.host.leave(player, session, now);
                    hosted.links.remove(&session);
                }
            }
        }
    }

    fn settings(&self) -> HostSettings {
        HostSettings {
            reconnect_grace: self.ctx.reconnect_grace,
            interest: self.ctx.interest,
            bandwidth_bps: self.ctx.bandwidth_bps,
            max_replay_bytes: self
                .ctx
                .finished
                .is_some()
                .then_some(self.ctx.max_replay_bytes),
            modes: self.ctx.modes.clone(),
        }
    }

    fn join(
        &mut self,
        match_id: MatchId,
        config: &MatchConfig,
        (player, team): (PlayerId, u8),
        tick: Arc<AtomicU32>,
        link: SessionLink,
        now: Instant,
    ) -> Result<Joined, RejectCode> {
        if !self.matches.contains_key(&match_id) {
            let started_at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let period = Duration::from_secs(1) / u32::from(config.tick_hz.max(1));
            let host = MatchHost::new(
                match_id,
                config,
                phase_start(self.ctx.beats_since, self.ctx.phase, now, period),
                started_at_ms,
                self.settings(),
                self.ctx.metrics.clone(),
            )
            .inspect_err(|_| self.ctx.directory.remove(match_id))?;
            self.matches.insert(
                match_id,
                Hosted {
                    host,
                    tick,
                    links: HashMap::new(),
                },
            );
            self.ctx.metrics.matches.inc();
            tracing::info!(match_id = %match_id, "match created");
        }
        let Some(hosted) = self.matches.get_mut(&match_id) else {
            return Err(RejectCode::MatchOver);
        };
        let session = link.id;
        let max_datagram = link.datagrams.max_size();
        match hosted
            .host
            .join(player, team, config, session, max_datagram)
        {
            Ok(joined) => {
                hosted.links.insert(session, (player, link));
                route(hosted, &self.ctx.metrics, now, &mut self.batch);
                Ok(joined)
            }
            Err(code) => {
                if hosted.links.is_empty() && hosted.host.tick() == 0 {
                    // Refused by the match it was about to create: no match at all.
                    self.close_match(match_id);
                }
                Err(code)
            }
        }
    }

    fn run_due_ticks(&mut self, now: Instant) {
        let mut finished = Vec::new();
        for (match_id, hosted) in &mut self.matches {
            if hosted.host.next_tick_at() > now {
                continue;
            }
            // Each seat's input frames, from its connection through its own mailbox; its
            // datagram size limit.
            for (session, (player, link)) in &mut hosted.links {
                link.take_datagrams(now, self.ctx.max_input_rate_hz, &self.ctx.metrics);
                self.frames.clear();
                link.inputs.take(&mut self.frames);
                for frame in &self.frames {
                    hosted.host.input(*player, *session, frame);
                }
                for request in link.inputs.take_requests() {
                    hosted.host.request(*player, *session, request);
                }
                let max_datagram = link.datagrams.max_size();
                hosted
                    .host
                    .set_max_datagram(*player, *session, max_datagram);
            }
            let started = Instant::now();
            let ran = hosted.host.run_due(now);
            hosted.tick.store(hosted.host.tick(), Ordering::Release);
            route(hosted, &self.ctx.metrics, now, &mut self.batch);
            if ran.ticks > 0 {
                let each = started.elapsed() / ran.ticks;
                for _ in 0..ran.ticks {
                    self.ctx.metrics.tick_duration.observe(each.as_secs_f64());
                    if let Ok(mut times) = self.ctx.tick_times_us.lock() {
                        times.saturating_record(each.as_micros() as u64);
                    }
                }
            }
            if hosted.host.is_over() {
                finished.push(*match_id);
            }
        }
        for match_id in finished {
            self.close_match(match_id);
        }
        self.hand_over();
    }

    /// Says goodbye to everyone in a match and forgets it.
    fn close_match(&mut self, match_id: MatchId) {
        let Some(mut hosted) = self.matches.remove(&match_id) else {
            return;
        };
        let record = hosted.host.close();
        route(
            &mut hosted,
            &self.ctx.metrics,
            Instant::now(),
            &mut self.batch,
        );
        self.hand_over();
        self.ctx.directory.ended(match_id);
        self.ctx.metrics.matches.dec();
        tracing::info!(match_id = %match_id, outcome = ?record.outcome, ticks = record.ticks, "match closed");
        if let Some(finished) = &self.ctx.finished {
            // Blocks only if the outbox writer is 64 matches behind: rare, and losing a
            // result is worse than a late tick.
            if finished.send(record).is_err() {
                tracing::error!(match_id = %match_id, "outbox writer gone; result lost");
            }
        }
    }

    fn shutdown(&mut self) {
        let ids: Vec<MatchId> = self.matches.keys().copied().collect();
        for match_id in ids {
            if let Some(hosted) = self.matches.get_mut(&match_id) {
                hosted.host.end(MatchEndReason::Shutdown);
            }
            self.close_match(match_id);
        }
    }
}

/// Hands a match's transmits to its connections: snapshots to the connection itself,
/// reliable messages to its control queue — and a snapshot that follows reliable messages
/// to the same queue behind them, so the session's writer sends both in one packet. A
/// connection that cannot take its reliable traffic (queue full), or is gone, loses its
/// seat's link (dropping its control queue ends the session) and the seat waits out the
/// grace period; a snapshot too large for the connection's current path, or behind a
/// full queue, is dropped and counted.
fn route(hosted: &mut Hosted, metrics: &EdgeMetrics, now: Instant, batch: &mut SendBatch) {
    // A tick's reliable messages per seat, encoded, until its snapshot (or the pass's end)
    // takes them to the stream (at most the match's seats).
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut gone: Vec<u64> = Vec::new();
    while let Some(transmit) = hosted.host.poll_transmit() {
        match transmit {
            Transmit::Datagram { session, bytes } => {
                let Some((_, link)) = hosted.links.get(&session) else {
                    continue;
                };
                // A snapshot behind the tick's messages goes to the connection at once,
                // right after them; the others with the pass's batch.
                let (snapshot, batch) = match pending.iter().position(|(s, _)| *s == session) {
                    // Behind the tick's messages: on the stream at once, or queued.
                    Some(at) => {
                        let (_, frames) = pending.swap_remove(at);
                        match link.control.send(&frames, Some(bytes)) {
                            Ok(Routed::Direct(bytes)) => (bytes, None),
                            Ok(Routed::Queued) => continue,
                            Ok(Routed::Dropped) => {
                                metrics.snapshots_dropped.inc();
                                continue;
                            }
                            Err(_) => {
                                gone.push(session);
                                continue;
                            }
                        }
                    }
                    None => (bytes, Some(&mut *batch)),
                };
                let len = snapshot.len() as u64;
                match link.datagrams.send(snapshot, batch) {
                    // Counted by the network side when it hands the datagram over.
                    Ok(Handed::Later) => {}
                    Ok(Handed::Now) => {
                        metrics.datagrams_out.inc();
                        metrics.bytes_out.inc_by(len);
                    }
                    Err(Unsent::TooLarge) => {
                        metrics.snapshots_dropped.inc();
                    }
                    // The connection is gone without a word: treat it as a leave.
                    Err(Unsent::Gone) => gone.push(session),
                }
            }
            Transmit::Control { session, message } => {
                let Some((_, link)) = hosted.links.get(&session) else {
                    continue;
                };
                if matches!(message, Control::Goodbye(_)) {
                    // The session ends with it: behind the tick's messages, through its
                    // writer.
                    let frames = pending
                        .iter()
                        .position(|(s, _)| *s == session)
                        .map(|at| pending.swap_remove(at).1);
                    let sent = frames
                        .map_or(Ok(Routed::Queued), |frames| {
                            link.control.send(&frames, None)
                        })
                        .and_then(|_| link.control.enqueue(Outbound::Control(message)));
                    if sent.is_err() {
                        gone.push(session);
                    }
                    continue;
                }
                let at = match pending.iter().position(|(s, _)| *s == session) {
                    Some(at) => at,
                    None => {
                        pending.push((session, Vec::new()));
                        pending.len() - 1
                    }
                };
                match codec::encode_frame(&message) {
                    Ok(frame) => pending[at].1.extend_from_slice(&frame),
                    Err(err) => tracing::error!(?err, "could not encode a control message"),
                }
            }
            Transmit::Release { session } => {
                hosted.links.remove(&session);
            }
        }
    }
    // Messages of a tick without a snapshot for the seat.
    for (session, frames) in pending {
        if let Some((_, link)) = hosted.links.get(&session)
            && link.control.send(&frames, None).is_err()
        {
            gone.push(session);
        }
    }
    for session in gone {
        if let Some((player, _)) = hosted.links.remove(&session) {
            tracing::debug!(match_id = %hosted.host.id(), player = %player, "connection gone or too slow; seat kept for the grace period");
            hosted.host.leave(player, session, now);
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn context() -> WorkerContext {
        WorkerContext {
            finished: None,
            max_replay_bytes: 0,
            metrics: Arc::new(EdgeMetrics::new()),
            directory: Arc::new(Directory::new(1, 8)),
            tick_times_us: Arc::new(Mutex::new(
                Histogram::new_with_bounds(1, 10_000_000, 3).expect("bounds"),
            )),
            stop: Arc::new(AtomicBool::new(false)),
            reconnect_grace: Duration::from_secs(5),
            interest: Interest::default(),
            bandwidth_bps: 96_000,
            max_input_rate_hz: 240,
            modes: outpost_arena::modes(),
            beat: Arc::new(AtomicU64::new(0)),
            beats_since: Instant::now(),
            phase: (0, 1),
            outgoing: Arc::new(Outgoing::new(OUTGOING_DATAGRAMS)),
        }
    }

    /// A seat's control stream in memory, and its queue.
    type SeatStream = (
        Arc<ControlStream<Memory>>,
        tokio::sync::mpsc::Receiver<Outbound>,
    );

    /// Seats `player` in `match_id`; returns its connection (datagrams both ways) and
    /// its control stream, not yet attached (everything queues).
    fn seat(
        worker: &mut Worker,
        match_id: u64,
        player: u64,
        start: Instant,
    ) -> (Received, SeatStream) {
        let (control, queue) = ControlStream::<Memory>::new(CONTROL_QUEUE);
        let control = Arc::new(control);
        let received = Received::default();
        let config = outpost_arena::config(&outpost_arena::ArenaConfig {
            props: 0,
            ..Default::default()
        });
        worker
            .join(
                MatchId(match_id),
                &config,
                (PlayerId(player), 0),
                Arc::new(AtomicU32::new(0)),
                SessionLink {
                    id: player,
                    datagrams: Box::new(received.clone()),
                    control: control.clone(),
                    inputs: Arc::new(InputMailbox::default()),
                    gate: InputGate::default(),
                },
                start,
            )
            .map_err(|code| code.as_str())
            .expect("seated");
        (received, (control, queue))
    }

    /// A connection that takes every datagram (and counts them), and holds those it
    /// received (like quinn's buffer, up to a bound, dropping the oldest) until they are
    /// taken.
    #[derive(Clone, Default)]
    struct Received(Arc<Mutex<VecDeque<Bytes>>>, Arc<AtomicU64>);

    /// Datagrams a test connection holds.
    const RECEIVED: usize = 1_000;

    impl Received {
        /// The client sends an input frame.
        fn put(&self, frame: InputFrame) {
            let bytes = codec::encode_datagram(&Datagram::Input(frame)).expect("encodes");
            let mut held = self.0.lock().expect("lock");
            if held.len() == RECEIVED {
                held.pop_front();
            }
            held.push_back(Bytes::from(bytes));
        }

        fn len(&self) -> usize {
            self.0.lock().expect("lock").len()
        }
    }

    impl DatagramLink for Received {
        fn send(&self, _: Bytes, _: Option<&mut SendBatch>) -> Result<Handed, Unsent> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(Handed::Now)
        }

        fn max_size(&self) -> usize {
            1200
        }

        fn recv(&self) -> Option<Bytes> {
            self.0.lock().expect("lock").pop_front()
        }
    }

    use crate::control_stream::ControlStream;
    use crate::control_stream::tests::Memory;
    use crate::host::tests::input as frame;

    #[test]
    fn a_snapshot_behind_its_ticks_events_follows_them_through_the_control_queue() {
        let mut worker = Worker::new(context());
        // A phase boundary: the match's first tick is one period on.
        let start = worker.ctx.beats_since;
        // The stream is not attached yet (the session has not written its welcome).
        let (link, (_control, mut queue)) = seat(&mut worker, 1, 1, start);
        // Tick 1 has the join's event, held; tick 2 sends it and then the snapshot.
        worker.run_due_ticks(start + Duration::from_millis(17));
        assert!(queue.try_recv().is_err(), "held until the snapshot tick");
        worker.run_due_ticks(start + Duration::from_millis(34));
        let queued: Vec<Outbound> = std::iter::from_fn(|| queue.try_recv().ok()).collect();
        assert!(
            matches!(
                queued.as_slice(),
                [Outbound::Frames(frames), Outbound::Datagram(_)]
                    if matches!(codec::decode_frame(frames), Ok(Some((Control::Event(_), _))))
            ),
            "{queued:?}"
        );
        assert_eq!(
            link.1.load(Ordering::Relaxed),
            0,
            "nothing went around the queue"
        );
    }

    /// With the stream attached and nothing waiting, the sim thread writes a tick's
    /// events to the stream itself and hands the snapshot behind them to the connection:
    /// nothing goes through the session's queue, and no task of it wakes.
    #[test]
    fn a_tick_with_room_writes_its_events_and_sends_its_snapshot_from_the_sim_thread() {
        let mut worker = Worker::new(context());
        // A phase boundary: the match's first tick is one period on.
        let start = worker.ctx.beats_since;
        let (link, (control, mut queue)) = seat(&mut worker, 1, 1, start);
        control.attach(Memory {
            written: Vec::new(),
            room: 1 << 20,
        });
        assert!(control.settle(&mut queue).is_none());
        worker.run_due_ticks(start + Duration::from_millis(17));
        worker.run_due_ticks(start + Duration::from_millis(34));
        assert!(queue.try_recv().is_err(), "nothing queued");
        let written = control.detach().expect("attached").written;
        assert!(
            matches!(
                codec::decode_frame(&written),
                Ok(Some((Control::Event(_), _)))
            ),
            "the join's event on the stream"
        );
        assert_eq!(link.1.load(Ordering::Relaxed), 1, "the snapshot sent");
    }

    /// A seat whose queue is full when its match has reliable messages for it (a client
    /// that does not read its stream) is let go: its session is told, and closes the
    /// connection; the match goes on.
    #[tokio::test]
    async fn a_seat_whose_queue_is_full_is_let_go_and_its_session_told() {
        let mut worker = Worker::new(context());
        // A phase boundary: the match's first tick is one period on.
        let start = worker.ctx.beats_since;
        let (_link, (slow, _slow_queue)) = seat(&mut worker, 1, 1, start);
        for _ in 0..CONTROL_QUEUE {
            slow.enqueue(Outbound::Frames(vec![0])).expect("room");
        }
        // A second player joins: an event for the first, whose queue has no room.
        let (_other, _other_control) = seat(&mut worker, 1, 2, start);
        worker.run_due_ticks(start + Duration::from_millis(17));
        worker.run_due_ticks(start + Duration::from_millis(34));
        tokio::time::timeout(Duration::from_secs(5), slow.released())
            .await
            .expect("the session is told");
        let hosted = &worker.matches[&MatchId(1)];
        assert_eq!(hosted.links.len(), 1, "the other seat plays on");
    }

    /// Matches created at different moments within one phase tick together: one pass of
    /// the worker; a match created past the boundary ticks a phase later; and a second
    /// worker's boundaries fall between the first's.
    #[test]
    fn matches_created_within_a_phase_tick_in_one_pass() {
        let mut worker = Worker::new(context());
        let epoch = worker.ctx.beats_since;
        let period = Duration::from_secs(1) / 60;
        let step = period / TICK_PHASES;
        let ms = Duration::from_millis;
        for (id, after) in [(1, ms(1)), (2, ms(2)), (3, ms(4)), (4, ms(5))] {
            let _ = seat(&mut worker, id, id, epoch + after);
        }
        let due = |worker: &Worker, id: u64| worker.matches[&MatchId(id)].host.next_tick_at();
        for id in 1..=3 {
            assert_eq!(due(&worker, id), epoch + step + period, "match {id}");
        }
        assert_eq!(due(&worker, 4), epoch + step * 2 + period);
        // On a boundary: no wait.
        assert_eq!(
            phase_start(epoch, (0, 1), epoch + step, period),
            epoch + step
        );
        let second = phase_start(epoch, (1, 2), epoch + ms(1), period);
        assert_eq!(second, epoch + step / 2);
        assert_eq!(
            phase_start(epoch, (1, 2), epoch + ms(3), period),
            second + step
        );
    }

    /// The queue between the workers and the network side holds at most its bound: a
    /// batch that does not fit is dropped whole (and counted by the worker), and every
    /// batch that fits wakes the network side once.
    #[tokio::test(start_paused = true)]
    async fn the_network_sides_queue_is_bounded_and_drops_a_batch_that_does_not_fit() {
        let outgoing = Outgoing::<u32>::new(4);
        let take = async |outgoing: &Outgoing<u32>| {
            let mut taken = Vec::new();
            tokio::time::timeout(Duration::from_secs(1), outgoing.take(&mut taken))
                .await
                .expect("woken");
            taken
        };
        let mut batch = vec![1, 2, 3];
        assert_eq!(outgoing.hand_over(&mut batch), 0);
        assert!(batch.is_empty(), "moved into the queue");
        let mut batch = vec![4, 5];
        assert_eq!(outgoing.hand_over(&mut batch), 2, "five do not fit in four");
        assert!(batch.is_empty());
        assert_eq!(take(&outgoing).await, [1, 2, 3]);
        let mut batch = vec![6, 7, 8, 9];
        assert_eq!(outgoing.hand_over(&mut batch), 0, "room again once taken");
        assert_eq!(take(&outgoing).await, [6, 7, 8, 9]);
    }

    /// A seat's inbox holds at most [`INBOX_DATAGRAMS`] between two ticks, keeping the
    /// newest, and hands them over oldest first.
    #[test]
    fn a_seats_inbox_is_bounded_and_keeps_the_newest() {
        let inbox = Inbox::default();
        let dropped = (0..INBOX_DATAGRAMS + 10)
            .filter(|&i| inbox.put(Bytes::from(vec![i as u8])))
            .count();
        assert_eq!(dropped, 10);
        let kept: Vec<u8> = std::iter::from_fn(|| inbox.take()).map(|b| b[0]).collect();
        let newest: Vec<u8> = (10..INBOX_DATAGRAMS + 10).map(|i| i as u8).collect();
        assert_eq!(kept, newest);
    }

    /// Regression test for unfair sim workers: one command queue served all of a
    /// worker's matches, so a few flooding clients made every other match lose inputs.
    /// Inputs now wait with each seat's connection until its match's tick, which takes a
    /// bounded number of them: a flood crowds out only its sender.
    #[test]
    fn a_flooding_seat_cannot_make_another_match_lose_inputs() {
        let mut worker = Worker::new(context());
        // A phase boundary: the match's first tick is one period on.
        let start = worker.ctx.beats_since;
        let (flooder, _keep_flooder) = seat(&mut worker, 1, 1, start);
        let (honest, _keep_honest) = seat(&mut worker, 2, 2, start);
        // Far more frames than the shared queue (16,384) ever held, between two ticks:
        // the connection keeps its newest.
        for seq in 1..=50_000 {
            flooder.put(frame(seq));
        }
        honest.put(frame(1));
        // One tick of each match.
        worker.run_due_ticks(start + Duration::from_millis(17));
        assert_eq!(
            flooder.len(),
            RECEIVED - INPUT_DATAGRAMS_PER_TICK,
            "the tick took a bounded number of the flood"
        );
        let game = |w: &Worker, m: u64| {
            w.matches[&MatchId(m)]
                .host
                .game()
                .ack_input_seq(PlayerId(m))
        };
        assert_eq!(
            game(&worker, 2),
            Some(1),
            "the honest player's input applied"
        );
        // Of the flood, the frames within the burst reached the mailbox, which kept its
        // newest; one tick's worth of them applied.
        let newest_taken = (50_000 - RECEIVED + INPUT_BURST as usize) as u32;
        let acked = game(&worker, 1).expect("seated");
        assert!(
            (newest_taken - MAILBOX_FRAMES as u32 + 1..=newest_taken).contains(&acked),
            "{acked}"
        );
        let counts = worker.matches[&MatchId(1)]
            .host
            .game()
            .input_counts(PlayerId(1));
        assert_eq!(counts.map(|(applied, _)| applied), Some(1));
        let metrics = &worker.ctx.metrics;
        assert_eq!(
            metrics.datagrams_rejected.get(),
            (INPUT_DATAGRAMS_PER_TICK - INPUT_BURST as usize) as u64,
            "over the rate"
        );
        assert_eq!(
            metrics.inputs_dropped.get(),
            (INPUT_BURST as usize - MAILBOX_FRAMES) as u64,
            "beyond the mailbox"
        );
    }
}
