//! Sim workers: dedicated threads that each own a set of matches and tick them on their
//! fixed clocks. They meet the network only through bounded channels: commands (joins,
//! inputs, leaves) in, encoded datagrams and control messages out. A slow client can
//! never stall a tick: a full queue drops and counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use outpost_protocol::replay::{ReplayHeader, ReplayWriter};
use outpost_protocol::{
    Control, Datagram, EntityId, EntityState, EntityView, GoodbyeReason, InputFrame, MatchConfig,
    MatchEndReason, MatchId, PlayerId, PlayerScore, QMotion, Quantizer, RejectCode, Snapshot,
    codec, quantize,
};
use outpost_sim::{Match, SimError};
use tokio::sync::{mpsc, oneshot};

use crate::directory::Directory;
use crate::metrics::EdgeMetrics;
use crate::snapshot::{self, ClientSnapshots, Frame, Interest, InterestGrid};

/// Ticks a late worker runs back to back before it gives up on the rest and counts them
/// as missed.
const MAX_CATCH_UP_TICKS: u32 = 4;
/// Capacity of a worker's command queue.
pub(crate) const COMMAND_QUEUE: usize = 16_384;
/// Snapshots queued per connection; more means the connection is not draining.
pub(crate) const DATAGRAM_QUEUE: usize = 4;
/// Control messages queued per connection; a client this far behind is dropped.
pub(crate) const CONTROL_QUEUE: usize = 256;

/// Input frames kept per seat until its match's next tick. Frames repeat the last eight
/// inputs, so an honest client loses nothing to this bound; a flooding one loses its
/// own oldest frames and nobody else's.
pub(crate) const MAILBOX_FRAMES: usize = 4;

/// A seat's inputs, from its connection to the sim worker: bounded per seat, so one
/// client sending too much can only crowd out itself (a queue shared by a worker's
/// matches let a few flooding clients make every other match lose inputs).
#[derive(Default)]
pub(crate) struct InputMailbox {
    frames: Mutex<VecDeque<InputFrame>>,
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
    fn take(&self, out: &mut Vec<InputFrame>) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(frames.drain(..));
    }
}

/// The sim side's end of one player's connection.
pub(crate) struct SessionLink {
    /// Unique per connection, so a stale connection's leave cannot unseat a newer one.
    pub id: u64,
    /// Encoded snapshot datagrams out.
    pub datagrams: mpsc::Sender<Bytes>,
    /// Reliable messages out.
    pub control: mpsc::Sender<Control>,
    /// The connection's current datagram size limit, kept fresh by the network side.
    pub max_datagram: Arc<AtomicUsize>,
    /// Input frames from the connection.
    pub inputs: Arc<InputMailbox>,
}

/// What the network side asks of a worker.
pub(crate) enum Command {
    /// Seat a player (creating the match if it is new) and start sending to them.
    Join {
        match_id: MatchId,
        config: MatchConfig,
        player: PlayerId,
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

/// A seat granted.
pub(crate) struct Joined {
    /// The configuration the match runs.
    pub config: MatchConfig,
    pub entity: EntityId,
    pub tick: u32,
    pub players: Vec<PlayerScore>,
}

/// A match that ended, for the outbox.
pub(crate) struct FinishedMatch {
    pub match_id: MatchId,
    pub outcome: Option<MatchEndReason>,
    pub ticks: u32,
    pub scores: Vec<PlayerScore>,
    pub replay: Option<Vec<u8>>,
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
}

struct Seat {
    link: Option<SessionLink>,
    left_at: Option<Instant>,
    snapshots: ClientSnapshots,
}

struct Hosted {
    game: Match,
    tick: Arc<AtomicU32>,
    period: Duration,
    next_tick_at: Instant,
    seats: BTreeMap<PlayerId, Seat>,
    quantizer: Quantizer,
    grid: InterestGrid,
    recorder: Option<ReplayWriter>,
    /// Inputs the simulation had dropped at the last count.
    dropped_inputs: u64,
    /// Players who joined and left for good (their grace ran out), with their scores then:
    /// the result lists everyone who played, leavers too.
    departed: Vec<PlayerScore>,
}

struct Worker {
    ctx: WorkerContext,
    matches: HashMap<MatchId, Hosted>,
    state: Vec<EntityState>,
    quantized: Vec<EntityView>,
    frames: Vec<InputFrame>,
}

/// Runs a worker until the stop flag is set or every command sender is gone.
pub(crate) fn run(ctx: WorkerContext, commands: Receiver<Command>) {
    let mut worker = Worker {
        ctx,
        matches: HashMap::new(),
        state: Vec::new(),
        quantized: Vec::new(),
        frames: Vec::new(),
    };
    loop {
        if worker.ctx.stop.load(Ordering::Acquire) {
            break;
        }
        loop {
            match commands.try_recv() {
                Ok(command) => worker.handle(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    worker.shutdown();
                    return;
                }
            }
        }
        worker.run_due_ticks(Instant::now());
        match worker.matches.values().map(|m| m.next_tick_at).min() {
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                }
            }
            None => match commands.recv_timeout(Duration::from_millis(50)) {
                Ok(command) => worker.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            },
        }
    }
    worker.shutdown();
}

impl Worker {
    fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                match_id,
                config,
                player,
                tick,
                link,
                reply,
            } => {
                let result = self.join(match_id, &config, player, tick, link);
                // The connection may be gone already; the seat then times out as a leave.
                let _ = reply.send(result);
            }
            Command::Leave {
                match_id,
                player,
                session,
            } => {
                let Some(hosted) = self.matches.get_mut(&match_id) else {
                    return;
                };
                let Some(seat) = hosted.seats.get_mut(&player) else {
                    return;
                };
                if seat.link.as_ref().is_some_and(|l| l.id == session) {
                    seat.link = None;
                    seat.left_at = Some(Instant::now());
                    hosted.game.disconnect_player(player);
                    self.ctx.metrics.players.dec();
                }
            }
        }
    }

    fn join(
        &mut self,
        match_id: MatchId,
        config: &MatchConfig,
        player: PlayerId,
        tick: Arc<AtomicU32>,
        link: SessionLink,
    ) -> Result<Joined, RejectCode> {
        if !self.matches.contains_key(&match_id) {
            let game = Match::new(match_id, config).map_err(|err| {
                self.ctx.directory.remove(match_id);
                match err {
                    SimError::InvalidConfig(_) => RejectCode::InvalidConfig,
                    _ => RejectCode::MatchOver,
                }
            })?;
            let period = Duration::from_secs(1) / u32::from(config.tick_hz);
            let recorder = self.ctx.finished.is_some().then(|| {
                let header = ReplayHeader {
                    match_id,
                    config: config.clone(),
                    started_at_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                };
                ReplayWriter::new(&header, self.ctx.max_replay_bytes)
            });
            self.matches.insert(
                match_id,
                Hosted {
                    game,
                    tick,
                    period,
                    next_tick_at: Instant::now() + period,
                    seats: BTreeMap::new(),
                    quantizer: Quantizer::for_config(config),
                    grid: InterestGrid::default(),
                    recorder,
                    dropped_inputs: 0,
                    departed: Vec::new(),
                },
            );
            self.ctx.metrics.matches.inc();
            tracing::info!(match_id = %match_id, "match created");
        }
        let Some(hosted) = self.matches.get_mut(&match_id) else {
            return Err(RejectCode::MatchOver);
        };
        // Every grant for a match must carry the configuration it runs: a second grant
        // under the same id with another one is refused, not quietly half-honoured.
        if hosted.game.config() != config {
            return Err(RejectCode::ConfigMismatch);
        }
        let entity = match hosted.game.add_player(player) {
            Ok(entity) => entity,
            Err(err) => {
                if hosted.seats.is_empty() {
                    self.close_match(match_id);
                }
                return Err(match err {
                    SimError::MatchFull(_) => RejectCode::MatchFull,
                    _ => RejectCode::MatchOver,
                });
            }
        };
        let seat = hosted.seats.entry(player).or_insert_with(|| Seat {
            link: None,
            left_at: None,
            snapshots: ClientSnapshots::new(entity),
        });
        if seat.link.is_none() {
            self.ctx.metrics.players.inc();
        }
        // A reconnect takes the seat over; the old connection's queues close with it. Its
        // snapshots start again from a keyframe: the new connection holds no baseline.
        seat.link = Some(link);
        seat.snapshots = ClientSnapshots::new(entity);
        seat.left_at = None;
        self.ctx.metrics.joins.inc();
        Ok(Joined {
            config: hosted.game.config().clone(),
            entity,
            tick: hosted.game.tick(),
            players: hosted.game.scores(),
        })
    }

    fn run_due_ticks(&mut self, now: Instant) {
        let mut finished = Vec::new();
        let ids: Vec<MatchId> = self.matches.keys().copied().collect();
        for match_id in ids {
            let mut ran = 0;
            while let Some(hosted) = self.matches.get_mut(&match_id) {
                if hosted.next_tick_at > now {
                    break;
                }
                if ran == MAX_CATCH_UP_TICKS {
                    let behind = now.duration_since(hosted.next_tick_at).as_nanos()
                        / hosted.period.as_nanos().max(1);
                    self.ctx.metrics.missed_ticks.inc_by(behind as u64 + 1);
                    hosted.next_tick_at = now + hosted.period;
                    break;
                }
                hosted.next_tick_at += hosted.period;
                ran += 1;
                if self.tick(match_id) {
                    finished.push(match_id);
                    break;
                }
            }
        }
        for match_id in finished {
            self.close_match(match_id);
        }
    }

    /// Runs one tick of a match and sends its results. Returns whether the match is over.
    fn tick(&mut self, match_id: MatchId) -> bool {
        let started = Instant::now();
        let Some(hosted) = self.matches.get_mut(&match_id) else {
            return true;
        };
        // Each seat's inputs, from its own mailbox.
        for (player, seat) in &mut hosted.seats {
            let Some(link) = &seat.link else { continue };
            self.frames.clear();
            link.inputs.take(&mut self.frames);
            for frame in &self.frames {
                seat.snapshots.ack(frame.ack_snapshot_tick);
                for input in frame.inputs.iter().rev() {
                    hosted.game.push_input(*player, *input);
                }
            }
        }
        hosted.game.step();
        let tick = hosted.game.tick();
        hosted.tick.store(tick, Ordering::Release);

        let mut too_slow = Vec::new();
        for event in hosted.game.drain_events() {
            for (player, seat) in &hosted.seats {
                let Some(link) = &seat.link else { continue };
                if link
                    .control
                    .try_send(Control::Event(event.clone()))
                    .is_err()
                {
                    too_slow.push(*player);
                }
            }
        }

        let mut gone = Vec::new();
        if tick % hosted.game.config().ticks_per_snapshot() == 0 {
            let dropped = hosted.game.dropped_inputs();
            self.ctx
                .metrics
                .inputs_over_budget
                .inc_by(dropped.saturating_sub(hosted.dropped_inputs));
            hosted.dropped_inputs = dropped;
            hosted.game.write_replicated_state(&mut self.state);
            hosted.grid.rebuild(&self.state, self.ctx.interest.cell);
            self.quantized.clear();
            self.quantized.extend(
                self.state
                    .iter()
                    .map(|e| e.quantize(&hosted.quantizer, None)),
            );
            if let Some(recorder) = &mut hosted.recorder {
                if !self.quantized.is_sorted_by_key(|v| v.id) {
                    self.quantized.sort_by_key(|v| v.id);
                }
                recorder.push(tick, &self.quantized);
            }
            let frame = Frame {
                tick,
                quantizer: &hosted.quantizer,
                entities: &self.state,
                quantized: &self.quantized,
                grid: &hosted.grid,
                interest: self.ctx.interest,
            };
            let ticks_left = hosted.game.ticks_left();
            let snapshot_hz = hosted.game.config().snapshot_hz;
            for (player, seat) in &mut hosted.seats {
                let Some(link) = &seat.link else { continue };
                let motion = hosted.game.motion(*player).map(|m| QMotion {
                    velocity: quantize::velocity(m.velocity),
                    grounded: m.grounded,
                });
                let max_datagram = link.max_datagram.load(Ordering::Relaxed);
                let budget =
                    snapshot::body_budget(self.ctx.bandwidth_bps, snapshot_hz, max_datagram);
                let built = seat.snapshots.build(&frame, motion, budget);
                let datagram = Datagram::Snapshot(Snapshot {
                    tick,
                    baseline_tick: built.baseline_tick,
                    ack_input_seq: hosted.game.ack_input_seq(*player).unwrap_or(0),
                    ticks_left,
                    body: built.body,
                });
                let Ok(bytes) = codec::encode_datagram(&datagram) else {
                    continue;
                };
                match link.datagrams.try_send(Bytes::from(bytes)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.ctx.metrics.snapshots_dropped.inc();
                    }
                    // The connection is gone without a word: treat it as a leave.
                    Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*player),
                }
            }
        }

        // Seats whose connection fell behind on reliable traffic, or vanished, lose their
        // link (a dropped queue ends the connection) and wait out the grace period.
        for player in too_slow.into_iter().chain(gone) {
            if let Some(seat) = hosted.seats.get_mut(&player)
                && seat.link.take().is_some()
            {
                seat.left_at = Some(started);
                hosted.game.disconnect_player(player);
                self.ctx.metrics.players.dec();
                tracing::debug!(match_id = %match_id, player = %player, "connection gone or too slow; seat kept for the grace period");
            }
        }
        // Seats whose grace ran out are given up.
        let grace = self.ctx.reconnect_grace;
        let expired: Vec<PlayerId> = hosted
            .seats
            .iter()
            .filter(|(_, s)| {
                s.left_at
                    .is_some_and(|at| started.duration_since(at) >= grace)
            })
            .map(|(p, _)| *p)
            .collect();
        if !expired.is_empty() {
            let scores = hosted.game.scores();
            for player in expired {
                hosted.seats.remove(&player);
                hosted.game.remove_player(player);
                hosted.departed.retain(|d| d.player != player);
                hosted
                    .departed
                    .extend(scores.iter().find(|s| s.player == player));
            }
        }
        if hosted.seats.is_empty() && !hosted.game.is_over() {
            hosted.game.end(MatchEndReason::Abandoned);
        }

        let elapsed = started.elapsed();
        self.ctx
            .metrics
            .tick_duration
            .observe(elapsed.as_secs_f64());
        if let Ok(mut times) = self.ctx.tick_times_us.lock() {
            times.saturating_record(elapsed.as_micros() as u64);
        }
        hosted.game.is_over()
    }

    /// Says goodbye to everyone in a match and forgets it.
    fn close_match(&mut self, match_id: MatchId) {
        let Some(mut hosted) = self.matches.remove(&match_id) else {
            return;
        };
        let reason = match hosted.game.outcome() {
            Some(MatchEndReason::Shutdown) => GoodbyeReason::Shutdown,
            _ => GoodbyeReason::MatchOver,
        };
        let events = hosted.game.drain_events();
        for seat in hosted.seats.values_mut() {
            let Some(link) = seat.link.take() else {
                continue;
            };
            for event in &events {
                let _ = link.control.try_send(Control::Event(event.clone()));
            }
            let _ = link.control.try_send(Control::Goodbye(reason));
            self.ctx.metrics.players.dec();
        }
        self.ctx.directory.ended(match_id);
        self.ctx.metrics.matches.dec();
        let outcome = hosted.game.outcome();
        tracing::info!(match_id = %match_id, ?outcome, ticks = hosted.game.tick(), "match closed");
        if let Some(finished) = &self.ctx.finished {
            let record = FinishedMatch {
                match_id,
                outcome,
                ticks: hosted.game.tick(),
                scores: {
                    // A leaver who came back was seated again: listed once, as seated.
                    let mut scores = hosted.game.scores();
                    let seated: Vec<PlayerId> = scores.iter().map(|s| s.player).collect();
                    scores.extend(
                        hosted
                            .departed
                            .iter()
                            .filter(|d| !seated.contains(&d.player)),
                    );
                    scores
                },
                replay: hosted.recorder.take().map(ReplayWriter::finish),
            };
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
                hosted.game.end(MatchEndReason::Shutdown);
            }
            self.close_match(match_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::PlayerInput;

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
        }
    }

    /// Seats `player` in `match_id`; returns its mailbox (and the link's receivers, kept
    /// open).
    fn seat(
        worker: &mut Worker,
        match_id: u64,
        player: u64,
    ) -> (
        Arc<InputMailbox>,
        (mpsc::Receiver<Bytes>, mpsc::Receiver<Control>),
    ) {
        let (datagrams, datagrams_rx) = mpsc::channel(DATAGRAM_QUEUE);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let inputs = Arc::new(InputMailbox::default());
        let config = MatchConfig {
            props: 0,
            ..MatchConfig::default()
        };
        worker
            .join(
                MatchId(match_id),
                &config,
                PlayerId(player),
                Arc::new(AtomicU32::new(0)),
                SessionLink {
                    id: player,
                    datagrams,
                    control,
                    max_datagram: Arc::new(AtomicUsize::new(1200)),
                    inputs: inputs.clone(),
                },
            )
            .map_err(|code| code.as_str())
            .expect("seated");
        (inputs, (datagrams_rx, control_rx))
    }

    fn frame(seq: u32) -> InputFrame {
        InputFrame {
            ack_snapshot_tick: 0,
            inputs: vec![PlayerInput {
                seq,
                move_z: 127,
                ..PlayerInput::default()
            }],
        }
    }

    /// Regression test for unfair sim workers: one command queue served all of a
    /// worker's matches, so a few flooding clients made every other match lose inputs.
    /// Inputs now wait in a small mailbox per seat: a flood crowds out only its sender.
    #[test]
    fn a_flooding_seat_cannot_make_another_match_lose_inputs() {
        let mut worker = Worker {
            ctx: context(),
            matches: HashMap::new(),
            state: Vec::new(),
            quantized: Vec::new(),
            frames: Vec::new(),
        };
        let (flooder, _keep_flooder) = seat(&mut worker, 1, 1);
        let (honest, _keep_honest) = seat(&mut worker, 2, 2);
        // Far more frames than the shared queue (16,384) ever held, between two ticks.
        let dropped = (1..=50_000).filter(|&seq| flooder.put(frame(seq))).count();
        assert_eq!(dropped, 50_000 - MAILBOX_FRAMES);
        assert!(!honest.put(frame(1)));
        worker.tick(MatchId(2));
        worker.tick(MatchId(1));
        let game = |w: &Worker, m: u64| w.matches[&MatchId(m)].game.ack_input_seq(PlayerId(m));
        assert_eq!(
            game(&worker, 2),
            Some(1),
            "the honest player's input applied"
        );
        // The flooder kept only its newest frames, and one tick's worth of them applied.
        assert!(game(&worker, 1) >= Some(50_000 - MAILBOX_FRAMES as u32 + 1));
        let counts = worker.matches[&MatchId(1)].game.input_counts(PlayerId(1));
        assert_eq!(counts.map(|(applied, _)| applied), Some(1));
    }
}
