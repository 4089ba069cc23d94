//! One match hosted on an edge, free of I/O: seats and their reconnect grace, inputs in,
//! ticks on the match's fixed clock, events and snapshots out to every seat, replay
//! recording, and the record of the match once it ends.
//!
//! It reads no clock and touches no socket or channel: the caller passes `now` and what
//! arrived (joins, leaves, input frames, links lost), and takes back what to send
//! ([`Transmit`]) — quinn-proto's shape. The sim worker thread (`worker.rs`) is a thin
//! loop around it; tests drive it on a virtual clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_protocol::replay::{ReplayHeader, ReplayWriter};
use outpost_protocol::replication::{self, InputLayout, Layout};
use outpost_protocol::{
    Control, Datagram, EntityId, GoodbyeReason, InputFrame, MatchConfig, MatchEndReason, MatchId,
    PlayerId, PlayerScore, RejectCode, Request, codec,
};
use outpost_sim::{Match, Modes, SimError, Standing};

use crate::metrics::EdgeMetrics;
use crate::snapshot::{self, ClientSnapshots, Frame, Interest, InterestGrid};

/// Ticks a late host runs back to back before it gives up on the rest and counts them
/// as missed.
pub const MAX_CATCH_UP_TICKS: u32 = 4;

/// How a host runs.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// How long a disconnected player's seat is kept for a reconnect.
    pub reconnect_grace: Duration,
    /// Area of interest.
    pub interest: Interest,
    /// Snapshot bandwidth per client, bits per second.
    pub bandwidth_bps: u32,
    /// Largest replay recorded, bytes; `None`: no recording.
    pub max_replay_bytes: Option<usize>,
    /// The modes it may run.
    pub modes: Modes,
}

/// Something for the network to send (or do) for a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// A snapshot datagram.
    Datagram {
        /// The session.
        session: u64,
        /// The encoded datagram.
        bytes: Bytes,
    },
    /// A reliable message on the control stream.
    Control {
        /// The session.
        session: u64,
        /// The message.
        message: Control,
    },
    /// The session holds no seat any more (replaced by a reconnect, or its match is
    /// over): let its connection go once what was queued for it is sent.
    Release {
        /// The session.
        session: u64,
    },
}

/// A seat granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The configuration the match runs.
    pub config: MatchConfig,
    /// Its mode's schema, encoded.
    pub schema: Vec<u8>,
    /// The player's entity.
    pub entity: EntityId,
    /// The match's tick.
    pub tick: u32,
    /// Everyone in it, with scores.
    pub players: Vec<PlayerScore>,
}

/// A match that ended, for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedMatch {
    /// The match.
    pub match_id: MatchId,
    /// How it ended.
    pub outcome: Option<MatchEndReason>,
    /// Ticks played.
    pub ticks: u32,
    /// Everyone who played, leavers included, best first, with the mode's stats.
    pub players: Vec<Standing>,
    /// The names of the mode's stats, in [`Standing::stats`] order.
    pub stat_names: &'static [&'static str],
    /// Its replay, if recorded.
    pub replay: Option<Vec<u8>>,
}

/// What a run of due ticks came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ran {
    /// Ticks run.
    pub ticks: u32,
    /// Ticks given up on (the host fell too far behind its clock).
    pub missed: u64,
}

struct Seat {
    /// The session holding the seat, and its datagram size limit.
    session: Option<(u64, usize)>,
    left_at: Option<Instant>,
    snapshots: ClientSnapshots,
}

/// One hosted match.
pub struct MatchHost {
    id: MatchId,
    game: Match,
    period: Duration,
    next_tick_at: Instant,
    seats: BTreeMap<PlayerId, Seat>,
    grid: InterestGrid,
    recorder: Option<ReplayWriter>,
    settings: HostSettings,
    metrics: Arc<EdgeMetrics>,
    /// Inputs the simulation had dropped at the last count.
    dropped_inputs: u64,
    /// Players who joined and left for good (their grace ran out), with their scores and
    /// stats then: the result lists everyone who played, leavers too.
    departed: Vec<Standing>,
    /// Ticks run in a row with no seat taken.
    empty_ticks: u32,
    out: VecDeque<Transmit>,
    /// Events and answers of the ticks since the last snapshot: they leave with the next
    /// snapshot, so a seat's reliable messages and its snapshot share a packet rather than
    /// taking one each (at most one tick later than their own tick).
    held: Vec<Transmit>,
    /// How the mode's components and inputs go on the wire; this tick's records (every
    /// component), their positions, and the records without owner-only components.
    layout: Layout,
    input_layout: InputLayout,
    records: replication::View,
    positions: Vec<[f32; 3]>,
    public: replication::View,
    scratch: Vec<u32>,
    /// The mode's schema, encoded, for Welcomes.
    schema: Vec<u8>,
}

impl std::fmt::Debug for MatchHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchHost")
            .field("id", &self.id)
            .field("tick", &self.game.tick())
            .field("seats", &self.seats.len())
            .finish()
    }
}

impl MatchHost {
    /// A new match, its first tick one period after `now`; `started_at_ms` (wall clock)
    /// goes into its replay's header.
    pub fn new(
        id: MatchId,
        config: &MatchConfig,
        now: Instant,
        started_at_ms: u64,
        settings: HostSettings,
        metrics: Arc<EdgeMetrics>,
    ) -> Result<Self, RejectCode> {
        let (mode, schema) = settings.modes.resolve(config).map_err(|err| {
            tracing::warn!(match_id = %id, %err, "match refused");
            err.reject_code()
        })?;
        let game = Match::with_mode(id, config, mode).map_err(|err| match err {
            SimError::InvalidConfig(_) => RejectCode::InvalidConfig,
            _ => RejectCode::MatchOver,
        })?;
        let period = Duration::from_secs(1) / u32::from(config.tick_hz);
        let schema_bytes = schema.encode();
        let recorder = settings.max_replay_bytes.map(|max| {
            let header = ReplayHeader {
                match_id: id,
                config: config.clone(),
                schema: schema_bytes.clone(),
                started_at_ms,
            };
            ReplayWriter::new(&header, &schema, max)
        });
        Ok(Self {
            id,
            game,
            period,
            next_tick_at: now + period,
            seats: BTreeMap::new(),
            grid: InterestGrid::default(),
            recorder,
            settings,
            metrics,
            dropped_inputs: 0,
            departed: Vec::new(),
            empty_ticks: 0,
            out: VecDeque::new(),
            held: Vec::new(),
            layout: Layout::new(&schema),
            input_layout: InputLayout::new(&schema),
            positions: Vec::new(),
            public: replication::View::new(),
            scratch: Vec::new(),
            schema: schema_bytes,
            records: replication::View::new(),
        })
    }

    /// The match.
    pub fn id(&self) -> MatchId {
        self.id
    }

    /// Its tick.
    pub fn tick(&self) -> u32 {
        self.game.tick()
    }

    /// When its next tick is due.
    pub fn next_tick_at(&self) -> Instant {
        self.next_tick_at
    }

    /// The simulation, for inspection.
    pub fn game(&self) -> &Match {
        &self.game
    }

    /// Whether it has ended (and should be closed).
    pub fn is_over(&self) -> bool {
        self.game.is_over()
    }

    /// Seats `player` on `team` (as matchmaking placed them) on `session` (whose datagrams
    /// hold `max_datagram` bytes), or gives their seat back on a reconnect: the old
    /// session is released, and the new one's snapshots start from a keyframe.
    pub fn join(
        &mut self,
        player: PlayerId,
        team: u8,
        config: &MatchConfig,
        session: u64,
        max_datagram: usize,
    ) -> Result<Joined, RejectCode> {
        // Every grant for a match must carry the configuration it runs: a second grant
        // under the same id with another one is refused, not quietly half-honoured.
        if self.game.config() != config {
            return Err(RejectCode::ConfigMismatch);
        }
        let entity = self
            .game
            .add_player_on_team(player, team)
            .map_err(|err| match err {
                SimError::MatchFull(_) => RejectCode::MatchFull,
                _ => RejectCode::MatchOver,
            })?;
        let seat = self.seats.entry(player).or_insert_with(|| Seat {
            session: None,
            left_at: None,
            snapshots: ClientSnapshots::new(entity),
        });
        match seat.session.replace((session, max_datagram)) {
            Some((old, _)) => {
                // What was held for the old session goes before its release.
                self.out.extend(self.held.drain(..));
                self.out.push_back(Transmit::Release { session: old });
            }
            None => {
                self.metrics.players.inc();
            }
        }
        seat.snapshots = ClientSnapshots::new(entity);
        seat.left_at = None;
        self.metrics.joins.inc();
        Ok(Joined {
            config: self.game.config().clone(),
            schema: self.schema.clone(),
            entity,
            tick: self.game.tick(),
            players: self.game.scores(),
        })
    }

    /// `session`'s connection ended (a leave, a lost link, a client too slow for its
    /// reliable traffic): the seat waits out the reconnect grace. A session that no
    /// longer holds the seat changes nothing.
    pub fn leave(&mut self, player: PlayerId, session: u64, now: Instant) {
        let Some(seat) = self.seats.get_mut(&player) else {
            return;
        };
        if seat.session.is_some_and(|(s, _)| s == session) {
            seat.session = None;
            seat.left_at = Some(now);
            self.game.disconnect_player(player);
            self.metrics.players.dec();
        }
    }

    /// An input frame from `session`: its ack and its inputs (ignored unless the session
    /// holds the player's seat).
    pub fn input(&mut self, player: PlayerId, session: u64, frame: &InputFrame) {
        let Some(seat) = self.seats.get_mut(&player) else {
            return;
        };
        if seat.session.is_none_or(|(s, _)| s != session) {
            return;
        }
        seat.snapshots.ack(frame.ack_snapshot_tick);
        let Ok(inputs) = replication::decode_inputs(&self.input_layout, &frame.inputs) else {
            self.metrics.datagrams_rejected.inc();
            return;
        };
        for input in inputs.into_iter().rev() {
            self.game.push_input(player, input);
        }
    }

    /// A request from `session` (ignored unless the session holds the player's seat):
    /// applied at the start of the next tick, or refused as busy at once; either way
    /// answered on the session's control stream.
    pub fn request(&mut self, player: PlayerId, session: u64, request: Request) {
        let Some(seat) = self.seats.get(&player) else {
            return;
        };
        if seat.session.is_none_or(|(s, _)| s != session) {
            return;
        }
        self.metrics.requests.inc();
        self.game.push_request(player, request);
    }

    /// The datagram size limit of `session`'s connection changed.
    pub fn set_max_datagram(&mut self, player: PlayerId, session: u64, max_datagram: usize) {
        if let Some(seat) = self.seats.get_mut(&player)
            && let Some((s, size)) = seat.session.as_mut()
            && *s == session
        {
            *size = max_datagram;
        }
    }

    /// Runs every tick due by `now` (at most [`MAX_CATCH_UP_TICKS`]; the rest are missed
    /// and counted), stopping when the match ends.
    pub fn run_due(&mut self, now: Instant) -> Ran {
        let mut ran = Ran::default();
        while self.next_tick_at <= now && !self.is_over() {
            if ran.ticks == MAX_CATCH_UP_TICKS {
                let behind = now.duration_since(self.next_tick_at).as_nanos()
                    / self.period.as_nanos().max(1);
                ran.missed = behind as u64 + 1;
                self.metrics.missed_ticks.inc_by(ran.missed);
                // On in the clock's own phase (see `worker::TICK_PHASES`).
                let skipped = u32::try_from(ran.missed).unwrap_or(u32::MAX);
                self.next_tick_at = self
                    .next_tick_at
                    .checked_add(self.period.saturating_mul(skipped))
                    .unwrap_or(now + self.period);
                break;
            }
            self.next_tick_at += self.period;
            ran.ticks += 1;
            self.step(now);
        }
        ran
    }

    /// One tick: step, events out, snapshots out (on snapshot ticks), seats whose grace
    /// ran out given up; a match nobody is left in is abandoned.
    pub fn step(&mut self, now: Instant) {
        self.game.step();
        let tick = self.game.tick();
        for (player, answer) in self.game.drain_answers() {
            if let Some(refusal) = &answer.refused {
                self.metrics.refuse_request(refusal.code);
            }
            if let Some((session, _)) = self.seats.get(&player).and_then(|s| s.session) {
                self.held.push(Transmit::Control {
                    session,
                    message: Control::Answer(answer),
                });
            }
        }
        for event in self.game.drain_events() {
            for seat in self.seats.values() {
                if let Some((session, _)) = seat.session {
                    self.held.push(Transmit::Control {
                        session,
                        message: Control::Event(event.clone()),
                    });
                }
            }
        }
        if tick.is_multiple_of(self.game.config().ticks_per_snapshot()) {
            self.release_held();
            self.snapshots(tick);
        }
        let grace = self.settings.reconnect_grace;
        let expired: Vec<PlayerId> = self
            .seats
            .iter()
            .filter(|(_, s)| s.left_at.is_some_and(|at| now.duration_since(at) >= grace))
            .map(|(p, _)| *p)
            .collect();
        if !expired.is_empty() {
            let standings = self.game.standings();
            for player in expired {
                self.seats.remove(&player);
                self.game.remove_player(player);
                self.departed.retain(|d| d.score.player != player);
                self.departed
                    .extend(standings.iter().find(|s| s.score.player == player));
            }
        }
        // With nobody seated the match ends — at once, or after the mode's linger.
        if self.seats.is_empty() {
            self.empty_ticks += 1;
            if self.empty_ticks > self.game.linger_ticks() && !self.game.is_over() {
                self.game.end(MatchEndReason::Abandoned);
            }
        } else {
            self.empty_ticks = 0;
        }
    }

    fn snapshots(&mut self, tick: u32) {
        let dropped = self.game.dropped_inputs();
        self.metrics
            .inputs_over_budget
            .inc_by(dropped.saturating_sub(self.dropped_inputs));
        self.dropped_inputs = dropped;
        self.game.write_records(&mut self.records);
        self.positions.clear();
        self.positions.extend(
            self.records
                .iter()
                .map(|r| self.layout.position_value(&r).unwrap_or([f32::NAN; 3])),
        );
        self.grid
            .rebuild(&self.positions, self.settings.interest.cell);
        if let Some(recorder) = &mut self.recorder {
            // A replay is the world as a spectator sees it: no owner-only components.
            let owner = self.layout.owner_mask();
            self.public.clear();
            for record in self.records.iter() {
                let mask = self
                    .layout
                    .without_components(&record, owner, &mut self.scratch);
                self.public.push(record.id, mask, &self.scratch);
            }
            recorder.push(tick, &self.public);
        }
        let frame = Frame {
            tick,
            layout: &self.layout,
            positions: &self.positions,
            records: &self.records,
            grid: &self.grid,
            interest: self.settings.interest,
        };
        let ticks_left = self.game.ticks_left();
        let snapshot_hz = self.game.config().snapshot_hz;
        for (player, seat) in &mut self.seats {
            let Some((session, max_datagram)) = seat.session else {
                continue;
            };
            let budget =
                snapshot::body_budget(self.settings.bandwidth_bps, snapshot_hz, max_datagram);
            let built = seat.snapshots.build(&frame, budget);
            let ack_input_seq = self.game.ack_input_seq(*player).unwrap_or(0);
            let datagram = Datagram::Snapshot(built.into_snapshot(tick, ack_input_seq, ticks_left));
            let Ok(bytes) = codec::encode_datagram(&datagram) else {
                continue;
            };
            self.out.push_back(Transmit::Datagram {
                session,
                bytes: Bytes::from(bytes),
            });
        }
    }

    /// Ends the match now (the edge shutting down).
    pub fn end(&mut self, reason: MatchEndReason) {
        self.game.end(reason);
    }

    /// The next thing to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Queues the held events and answers, ahead of what comes next.
    fn release_held(&mut self) {
        self.out.extend(self.held.drain(..));
    }

    /// Closes the match: the last events and a goodbye to every seated session (then
    /// their release) are queued, and the match's record returned.
    pub fn close(&mut self) -> FinishedMatch {
        let reason = match self.game.outcome() {
            Some(MatchEndReason::Shutdown) => GoodbyeReason::Shutdown,
            _ => GoodbyeReason::MatchOver,
        };
        self.release_held();
        let events = self.game.drain_events();
        for seat in self.seats.values_mut() {
            let Some((session, _)) = seat.session.take() else {
                continue;
            };
            for event in &events {
                self.out.push_back(Transmit::Control {
                    session,
                    message: Control::Event(event.clone()),
                });
            }
            self.out.push_back(Transmit::Control {
                session,
                message: Control::Goodbye(reason),
            });
            self.out.push_back(Transmit::Release { session });
            self.metrics.players.dec();
        }
        // A leaver who came back was seated again: listed once, as seated.
        let mut players = self.game.standings();
        let seated: Vec<PlayerId> = players.iter().map(|s| s.score.player).collect();
        players.extend(
            self.departed
                .iter()
                .filter(|d| !seated.contains(&d.score.player)),
        );
        FinishedMatch {
            match_id: self.id,
            outcome: self.game.outcome(),
            ticks: self.game.tick(),
            players,
            stat_names: self.game.mode().stats(),
            replay: self.recorder.take().map(ReplayWriter::finish),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use outpost_arena::{self as arena, ArenaConfig};
    use outpost_protocol::schema::Value;

    use super::*;

    const PERIOD: Duration = Duration::from_nanos(1_000_000_000 / 60);

    fn config() -> MatchConfig {
        arena::config(&ArenaConfig {
            props: 0,
            ..ArenaConfig::default()
        })
    }

    fn host(now: Instant) -> MatchHost {
        let settings = HostSettings {
            reconnect_grace: Duration::from_secs(5),
            interest: Interest::default(),
            bandwidth_bps: 96_000,
            max_replay_bytes: Some(1 << 20),
            modes: outpost_arena::modes(),
        };
        MatchHost::new(
            MatchId(1),
            &config(),
            now,
            0,
            settings,
            Arc::new(EdgeMetrics::new()),
        )
        .expect("a valid config")
    }

    fn drain(host: &mut MatchHost) -> Vec<Transmit> {
        std::iter::from_fn(|| host.poll_transmit()).collect()
    }

    /// An input frame holding one input of the arena's schema: running forward
    /// (`move_z` at its top, the other fields at zero).
    pub(crate) fn input(seq: u32) -> InputFrame {
        let schema = arena::schema(&ArenaConfig::default());
        let slots: Vec<u32> = schema
            .input
            .iter()
            .flat_map(|field| {
                let value = if field.name == "move_z" { 127 } else { 0 };
                let mut slots = vec![0; field.kind.slots()];
                field.kind.quantize(&Value::Int(value), &mut slots);
                slots
            })
            .collect();
        let one = replication::InputRef {
            seq,
            ticks: 1,
            view_tick: 0,
            slots: &slots,
        };
        InputFrame {
            ack_snapshot_tick: 0,
            inputs: replication::encode_inputs(&InputLayout::new(&schema), [one]),
        }
    }

    #[test]
    fn ticks_follow_the_clock_passed_in() {
        let t0 = Instant::now();
        let mut host = host(t0);
        host.join(PlayerId(1), 0, &config(), 10, 1200)
            .expect("seated");
        assert_eq!(host.run_due(t0 + PERIOD / 2), Ran::default());
        let ran = host.run_due(t0 + PERIOD * 3);
        assert_eq!((ran.ticks, ran.missed, host.tick()), (3, 0, 3));
        // Snapshots go out every other tick at 60/30 Hz: ticks 2 here.
        let datagrams = drain(&mut host)
            .into_iter()
            .filter(|t| matches!(t, Transmit::Datagram { session: 10, .. }))
            .count();
        assert_eq!(datagrams, 1);
    }

    #[test]
    fn events_of_a_tick_between_snapshots_leave_just_before_the_next_snapshot() {
        let t0 = Instant::now();
        let mut host = host(t0);
        host.join(PlayerId(1), 0, &config(), 10, 1200)
            .expect("seated");
        drain(&mut host);
        // Tick 1 (no snapshot at 60/30 Hz) has the join's event: it is held.
        host.run_due(t0 + PERIOD);
        let tick_1 = drain(&mut host);
        assert!(
            !tick_1.iter().any(|t| matches!(t, Transmit::Control { .. })),
            "{tick_1:?}"
        );
        // Tick 2 sends it, then the snapshot: the session's writer puts both in one packet.
        host.run_due(t0 + PERIOD * 2);
        let tick_2 = drain(&mut host);
        let event = tick_2.iter().position(|t| {
            matches!(t, Transmit::Control { session: 10, message: Control::Event(e) }
                if matches!(e.event, outpost_protocol::MatchEvent::PlayerJoined { .. }))
        });
        let snapshot = tick_2
            .iter()
            .position(|t| matches!(t, Transmit::Datagram { session: 10, .. }));
        assert!(
            matches!((event, snapshot), (Some(e), Some(s)) if e < s),
            "{tick_2:?}"
        );
    }

    #[test]
    fn a_host_far_behind_its_clock_catches_up_a_little_and_counts_the_rest_missed() {
        let t0 = Instant::now();
        let mut host = host(t0);
        host.join(PlayerId(1), 0, &config(), 10, 1200)
            .expect("seated");
        let ran = host.run_due(t0 + PERIOD * 20);
        assert_eq!(ran.ticks, MAX_CATCH_UP_TICKS);
        assert_eq!(ran.missed, 16, "ticks 5..=20 given up");
        assert_eq!(host.next_tick_at(), t0 + PERIOD * 21);
        // Woken between two ticks' times, it goes on in its clock's phase.
        let ran = host.run_due(t0 + PERIOD * 40 + PERIOD / 2);
        assert_eq!(ran.missed, 16, "ticks 25..=40 given up");
        assert_eq!(host.next_tick_at(), t0 + PERIOD * 41);
    }

    #[test]
    fn a_reconnect_releases_the_old_session_and_ignores_its_inputs() {
        let t0 = Instant::now();
        let mut host = host(t0);
        host.join(PlayerId(1), 0, &config(), 10, 1200)
            .expect("seated");
        host.join(PlayerId(1), 0, &config(), 11, 1200)
            .expect("seated again");
        assert!(drain(&mut host).contains(&Transmit::Release { session: 10 }));
        host.input(PlayerId(1), 10, &input(1));
        host.run_due(t0 + PERIOD);
        assert_eq!(host.game().ack_input_seq(PlayerId(1)), Some(0));
        host.input(PlayerId(1), 11, &input(2));
        host.run_due(t0 + PERIOD * 2);
        assert_eq!(host.game().ack_input_seq(PlayerId(1)), Some(2));
        // The old session's leave does not empty the new one's seat.
        host.leave(PlayerId(1), 10, t0 + PERIOD * 2);
        host.run_due(t0 + PERIOD * 4);
        assert!(
            drain(&mut host)
                .iter()
                .any(|t| matches!(t, Transmit::Datagram { session: 11, .. }))
        );
    }

    #[test]
    fn a_grant_with_another_config_is_refused() {
        let t0 = Instant::now();
        let mut host = host(t0);
        let other = MatchConfig {
            duration_s: config().duration_s + 1,
            ..config()
        };
        assert_eq!(
            host.join(PlayerId(1), 0, &other, 10, 1200),
            Err(RejectCode::ConfigMismatch)
        );
    }

    #[test]
    fn a_leaver_past_the_grace_is_in_the_result_and_an_empty_match_is_abandoned() {
        let t0 = Instant::now();
        let mut host = host(t0);
        host.join(PlayerId(1), 0, &config(), 10, 1200)
            .expect("seated");
        host.join(PlayerId(2), 0, &config(), 20, 1200)
            .expect("seated");
        host.leave(PlayerId(1), 10, t0);
        // Within the grace the seat is kept and the match goes on.
        host.run_due(t0 + Duration::from_secs(4));
        assert!(!host.is_over());
        host.leave(PlayerId(2), 20, t0 + Duration::from_secs(4));
        host.run_due(t0 + Duration::from_secs(10));
        assert!(host.is_over());
        drain(&mut host);
        let finished = host.close();
        assert_eq!(finished.outcome, Some(MatchEndReason::Abandoned));
        let mut players: Vec<u64> = finished.players.iter().map(|s| s.score.player.0).collect();
        players.sort_unstable();
        assert_eq!(players, [1, 2], "leavers are listed");
        assert!(finished.replay.is_some_and(|r| !r.is_empty()));
    }

    #[test]
    fn closing_says_goodbye_then_releases_every_seated_session() {
        let t0 = Instant::now();
        let mut host = host(t0);
        host.join(PlayerId(1), 0, &config(), 10, 1200)
            .expect("seated");
        host.run_due(t0 + PERIOD);
        drain(&mut host);
        host.end(MatchEndReason::Shutdown);
        let finished = host.close();
        assert_eq!(finished.outcome, Some(MatchEndReason::Shutdown));
        let sent = drain(&mut host);
        let goodbye = sent.iter().position(|t| {
            *t == Transmit::Control {
                session: 10,
                message: Control::Goodbye(GoodbyeReason::Shutdown),
            }
        });
        let release = sent
            .iter()
            .position(|t| *t == Transmit::Release { session: 10 });
        assert!(goodbye.is_some() && goodbye < release, "{sent:?}");
    }
}
