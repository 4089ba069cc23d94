//! A player's connection to a match, free of I/O: the input protocol (numbering,
//! redundancy, acknowledgement of snapshots, the view tick for lag compensation), the
//! clock (server tick, render tick, jitter), prediction, interpolation, and what the edge
//! said on the control stream.
//!
//! It reads no clock and touches no socket: the caller passes `now` and what arrived (a
//! datagram, a control message) and takes back what to send (an input datagram, a ping).
//! [`crate::Session`] is the quinn shell around it; tests and tools drive it on a virtual
//! clock (`outpost::harness`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_protocol::replication::{self, Fields, InputLayout, InputRecord, Requests};
use outpost_protocol::schema::{ModeSchema, Value};
use outpost_protocol::{
    Answer, Control, Datagram, EntityId, GoodbyeReason, InputFrame, Ping, TickedEvent, Welcome,
    codec,
};
use outpost_sim::{GameMode, IntoInput};

use crate::ClientError;
use crate::netcode::{
    ClockSync, Decoder, PredictedSelf, Reconciler, Shown, SnapshotIssue, Timeline, WorldState,
};

/// Most inputs in one datagram: the newest and every earlier one the edge has not yet
/// acknowledged, up to this many (133 ms of inputs at 60 Hz), so a burst of lost
/// datagrams loses no input.
pub const REDUNDANT_INPUTS: usize = outpost_protocol::MAX_INPUTS_PER_FRAME;
/// Events kept for the game before new ones are dropped (and counted).
pub const EVENT_QUEUE: usize = 1024;
/// Answers to requests kept for the game before the oldest are dropped.
pub const ANSWER_QUEUE: usize = 256;
/// Inputs remembered for timing their acknowledgement (two seconds at 60 Hz).
const SENT_TIMES: usize = 128;

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Snapshots received and decoded.
    pub snapshots_received: u64,
    /// Datagram bytes received.
    pub bytes_received: u64,
    /// Inputs sent (each once, however many times repeated for redundancy).
    pub inputs_sent: u64,
    /// Events received.
    pub events_received: u64,
    /// Events dropped because the game did not read them.
    pub events_dropped: u64,
    /// Datagrams from the edge that could not be used: malformed, or their baseline gone.
    pub datagrams_rejected: u64,
}

/// How the netcode is doing for this session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetcodeStats {
    /// Distance between the predicted own position and the server's, for each input the
    /// server acknowledged (metres; the last few thousand).
    pub prediction_errors: Vec<f32>,
    /// Reconciliations that moved the prediction.
    pub corrections: u64,
    /// Furthest a remote entity was extrapolated, milliseconds.
    pub max_extrapolated_ms: f64,
    /// Current interpolation delay, milliseconds.
    pub interpolation_delay_ms: f64,
    /// Measured snapshot arrival jitter, milliseconds.
    pub jitter_ms: f64,
}

/// Whether the control stream goes on after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFlow {
    /// Keep reading.
    Continue,
    /// The edge said goodbye, or sent what a client never receives: stop reading.
    End,
}

/// One player's connection to a match, after the edge's [`Welcome`].
pub struct MatchConnection {
    welcome: Welcome,
    fields: Arc<Fields>,
    epoch: Instant,
    decoder: Decoder,
    clock: ClockSync,
    timeline: Timeline,
    prediction: Option<Reconciler>,
    /// The newest state, until the next input or prediction read reconciles with it.
    unreconciled: Option<Arc<WorldState>>,
    latest: Option<Arc<WorldState>>,
    acked_input: u32,
    /// When recent inputs were sent (sequence, seconds since `epoch`); bounded.
    sent_at: VecDeque<(u32, f64)>,
    interpolate: bool,
    next_seq: u32,
    /// Inputs the edge has not acknowledged, newest first; bounded.
    recent: VecDeque<InputRecord>,
    /// How the mode's input goes on the wire (the Welcome's schema).
    input_layout: InputLayout,
    events: VecDeque<TickedEvent>,
    /// How the mode's requests go on the wire, the next one's number, and answers.
    requests: Requests,
    next_request: u32,
    answers: VecDeque<Answer>,
    goodbye: Option<GoodbyeReason>,
    stats: SessionStats,
    ping_rtt: Option<Duration>,
    input_rtt: Option<Duration>,
}

impl std::fmt::Debug for MatchConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchConnection")
            .field("match_id", &self.welcome.match_id)
            .field("entity", &self.welcome.entity)
            .field("stats", &self.stats)
            .finish()
    }
}

impl MatchConnection {
    /// The connection the edge's `welcome` opened, at `now`. Fails if the Welcome's
    /// schema does not decode or does not hash as its configuration says (the edge
    /// runs another build of the mode). Any mode is read from the schema alone; the own
    /// entity is predicted only once [`MatchConnection::predict`] is given the mode.
    pub fn new(welcome: Welcome, now: Instant) -> Result<Self, ClientError> {
        let schema = ModeSchema::verified(&welcome.schema, welcome.config.schema_hash)
            .map_err(|e| ClientError::Schema(e.to_string()))?;
        let fields = Arc::new(Fields::new(schema));
        Ok(Self {
            decoder: Decoder::new(fields.layout().clone()),
            clock: ClockSync::new(&welcome.config),
            timeline: Timeline::new(Arc::clone(&fields)),
            prediction: None,
            unreconciled: None,
            latest: None,
            acked_input: 0,
            sent_at: VecDeque::with_capacity(SENT_TIMES),
            interpolate: true,
            next_seq: 0,
            recent: VecDeque::with_capacity(REDUNDANT_INPUTS),
            input_layout: InputLayout::new(fields.schema()),
            events: VecDeque::new(),
            requests: Requests::new(fields.schema()),
            next_request: 1,
            answers: VecDeque::new(),
            goodbye: None,
            stats: SessionStats::default(),
            ping_rtt: None,
            input_rtt: None,
            fields,
            welcome,
            epoch: now,
        })
    }

    /// Predicts the own entity with the mode's [`GameMode::prediction`], for a game that
    /// links the mode the Welcome names. Returns whether it predicts: false if `mode` is
    /// another mode or predicts nothing.
    pub fn predict(&mut self, mode: &dyn GameMode) -> bool {
        if mode.name() != self.welcome.config.mode {
            return false;
        }
        self.prediction = mode
            .prediction(&self.welcome.config, self.welcome.entity)
            .map(|p| Reconciler::new(p, Arc::clone(&self.fields), self.welcome.entity));
        self.prediction.is_some()
    }

    /// The mode's schema, as the edge sent it.
    pub fn schema(&self) -> &ModeSchema {
        self.fields.schema()
    }

    /// Reads the records of a [`WorldState`] by component and field name, or typed.
    pub fn fields(&self) -> &Arc<Fields> {
        &self.fields
    }

    /// The edge's welcome.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    fn seconds(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.epoch).as_secs_f64()
    }

    fn reconcile(&mut self) {
        let Some(world) = self.unreconciled.take() else {
            return;
        };
        self.acked_input = self.acked_input.max(world.ack_input_seq);
        if let Some(prediction) = self.prediction.as_mut() {
            prediction.reconcile(&world);
        }
    }

    /// Numbers an input, stamps it with the tick the player views remote entities at
    /// (unless `view_tick` is set), predicts its effect on the own character, and returns
    /// its sequence number and the datagram to send: it acknowledges the newest snapshot
    /// and repeats the earlier inputs the edge has not acknowledged. The input is the
    /// mode's: an [`InputRecord`] laid out by the Welcome's schema, or a mode's typed
    /// input that converts to one ([`IntoInput`]).
    pub fn send_input(
        &mut self,
        input: impl IntoInput,
        now: Instant,
    ) -> Result<(u32, Bytes), ClientError> {
        let mut input = input.into_input();
        if input.slots.len() != self.input_layout.slots() {
            return Err(ClientError::Schema(format!(
                "the input has {} slots; the mode's input has {}",
                input.slots.len(),
                self.input_layout.slots()
            )));
        }
        let now_s = self.seconds(now);
        self.reconcile();
        if input.view_tick == 0 {
            input.view_tick = self
                .clock
                .render_tick(now_s)
                .map_or(0, |t| t.max(0.0).round() as u32);
        }
        self.next_seq += 1;
        input.seq = self.next_seq;
        if let Some(prediction) = self.prediction.as_mut() {
            prediction.apply(&input);
        }
        let seq = input.seq;
        self.recent.push_front(input);
        self.recent.truncate(REDUNDANT_INPUTS);
        // What the edge already applied needs no repeating.
        while self.recent.len() > 1
            && self
                .recent
                .back()
                .is_some_and(|i| i.seq <= self.acked_input)
        {
            self.recent.pop_back();
        }
        let frame = InputFrame {
            ack_snapshot_tick: self.decoder.ack(),
            inputs: replication::encode_inputs(
                &self.input_layout,
                self.recent.iter().map(InputRecord::as_ref),
            ),
        };
        let bytes = codec::encode_datagram(&Datagram::Input(frame))
            .map_err(|_| ClientError::Protocol("input frame too large"))?;
        if self.sent_at.len() == SENT_TIMES {
            self.sent_at.pop_front();
        }
        self.sent_at.push_back((seq, now_s));
        self.stats.inputs_sent += 1;
        Ok((seq, Bytes::from(bytes)))
    }

    /// A datagram from the edge: the newest state, if it decoded into one. Malformed
    /// datagrams and snapshots whose baseline is gone are counted; a late one is dropped.
    pub fn on_datagram(&mut self, bytes: &[u8], now: Instant) -> Option<Arc<WorldState>> {
        self.stats.bytes_received += bytes.len() as u64;
        let Ok(Datagram::Snapshot(snapshot)) = codec::decode_datagram(bytes) else {
            self.stats.datagrams_rejected += 1;
            return None;
        };
        let world = match self.decoder.decode(&snapshot) {
            Ok(world) => Arc::new(world),
            // Datagrams may arrive out of order: an older one is simply superseded.
            Err(SnapshotIssue::Stale) => return None,
            Err(_) => {
                self.stats.datagrams_rejected += 1;
                return None;
            }
        };
        let now_s = self.seconds(now);
        if let Some(rtt) = self.input_acked(world.ack_input_seq, now_s) {
            self.input_rtt = Some(Duration::from_secs_f64(rtt).max(Duration::from_micros(1)));
        }
        self.clock.on_snapshot(world.tick, now_s);
        if self.interpolate {
            self.timeline.push(&world, self.clock.tick_hz());
        }
        self.unreconciled = Some(world.clone());
        self.latest = Some(world.clone());
        self.stats.snapshots_received += 1;
        Some(world)
    }

    /// Time from sending input `acked` to now, if it was remembered; forgets it and every
    /// earlier one.
    fn input_acked(&mut self, acked: u32, now_s: f64) -> Option<f64> {
        let mut rtt = None;
        while let Some(&(seq, sent)) = self.sent_at.front() {
            if seq > acked {
                break;
            }
            if seq == acked {
                rtt = Some(now_s - sent);
            }
            self.sent_at.pop_front();
        }
        rtt
    }

    /// A message from the edge's control stream.
    pub fn on_control(&mut self, message: Control, now: Instant) -> ControlFlow {
        match message {
            Control::Event(event) => {
                self.stats.events_received += 1;
                if self.events.len() < EVENT_QUEUE {
                    self.events.push_back(event);
                } else {
                    self.stats.events_dropped += 1;
                }
                ControlFlow::Continue
            }
            Control::Answer(answer) => {
                if self.answers.len() == ANSWER_QUEUE {
                    self.answers.pop_front();
                }
                self.answers.push_back(answer);
                ControlFlow::Continue
            }
            Control::Pong(pong) => {
                let now_us = self.seconds(now) * 1e6;
                let rtt_us = (now_us as u64).saturating_sub(pong.client_time_us).max(1);
                self.ping_rtt = Some(Duration::from_micros(rtt_us));
                ControlFlow::Continue
            }
            Control::Goodbye(reason) => {
                self.goodbye = Some(reason);
                ControlFlow::End
            }
            _ => ControlFlow::End,
        }
    }

    /// Bytes read from the edge's control stream: every whole frame in `pending` is
    /// handed to [`MatchConnection::on_control`] and cut from it, and what is left of a
    /// frame waits for the rest (a frame may arrive in pieces). Whether the stream goes
    /// on: not after a frame that does not decode, or one that ends the match's messages.
    pub fn on_control_bytes(&mut self, pending: &mut Vec<u8>, now: Instant) -> bool {
        let mut at = 0;
        let mut more = true;
        while more {
            match codec::decode_frame(&pending[at..]) {
                Ok(Some((message, used))) => {
                    at += used;
                    more = self.on_control(message, now) != ControlFlow::End;
                }
                Ok(None) => break,
                Err(_) => more = false,
            }
        }
        pending.drain(..at);
        more
    }

    /// A clock ping to send on the control stream; its answer sets
    /// [`MatchConnection::ping_rtt`].
    pub fn ping(&self, now: Instant) -> Control {
        Control::Ping(Ping {
            client_time_us: now.saturating_duration_since(self.epoch).as_micros() as u64,
        })
    }

    /// Numbers a request of the mode's schema (`name`, its field values, its lists'
    /// items) and returns its number and the message to send on the control stream.
    /// Refused here, with nothing sent, when it does not fit the schema.
    pub fn request(
        &mut self,
        name: &str,
        values: &[Value],
        lists: &[&[Vec<Value>]],
    ) -> Result<(u32, Control), ClientError> {
        let seq = self.next_request;
        let request = self.requests.encode(seq, name, values, lists)?;
        self.next_request = self.next_request.wrapping_add(1);
        Ok((seq, Control::Request(request)))
    }

    /// The next answer to a request, oldest first.
    pub fn poll_answer(&mut self) -> Option<Answer> {
        self.answers.pop_front()
    }

    /// The next match event, oldest first.
    pub fn poll_event(&mut self) -> Option<TickedEvent> {
        self.events.pop_front()
    }

    /// The edge's goodbye, once it said one.
    pub fn goodbye(&self) -> Option<GoodbyeReason> {
        self.goodbye
    }

    /// The newest state received.
    pub fn latest(&self) -> Option<&Arc<WorldState>> {
        self.latest.as_ref()
    }

    /// The own character as predicted from the inputs sent, reconciled with the newest
    /// server state, with corrections smoothed. `None` until the first snapshot.
    pub fn predicted_self(&mut self) -> Option<PredictedSelf> {
        self.reconcile();
        self.prediction.as_ref().and_then(Reconciler::current)
    }

    /// An entity as drawn at `render_tick`: each field of its components between the
    /// snapshots around that tick as its kind says (positions and vectors linearly,
    /// rotations by normalised blend; enums, integers, flags, booleans and text snap to
    /// the newer value at its tick), or extrapolated at most 250 ms past the newest
    /// while snapshots are late. `None` if the entity is not in the views held (or
    /// interpolation is off).
    pub fn interpolated(&mut self, entity: EntityId, render_tick: f64) -> Option<Shown> {
        let tick_hz = self.clock.tick_hz();
        self.timeline.at(entity, render_tick, tick_hz)
    }

    /// Where a remote entity is drawn at `render_tick`: the position
    /// [`MatchConnection::interpolated`] shows, without reading its other fields.
    pub fn interpolated_position(
        &mut self,
        entity: EntityId,
        render_tick: f64,
    ) -> Option<[f32; 3]> {
        let tick_hz = self.clock.tick_hz();
        self.timeline.position_at(entity, render_tick, tick_hz)
    }

    /// One field of an entity as drawn at `render_tick` (see
    /// [`MatchConnection::interpolated`]).
    pub fn interpolated_value(
        &mut self,
        entity: EntityId,
        component: &str,
        field: &str,
        render_tick: f64,
    ) -> Option<Value> {
        self.interpolated(entity, render_tick)?
            .value(component, field)
    }

    /// The tick remote entities should be drawn at: the newest state less an
    /// interpolation delay that adapts to the measured jitter.
    pub fn render_tick(&self, now: Instant) -> Option<f64> {
        self.clock.render_tick(self.seconds(now))
    }

    /// The estimated current server tick, given the round-trip time.
    pub fn server_tick(&self, now: Instant, rtt: Duration) -> Option<f64> {
        self.clock.server_tick(self.seconds(now), rtt.as_secs_f64())
    }

    /// Round-trip time of the newest answered ping.
    pub fn ping_rtt(&self) -> Option<Duration> {
        self.ping_rtt
    }

    /// Input-to-acknowledgement round trip of the newest acknowledged input: from
    /// sending it until a snapshot saying the edge applied it arrived.
    pub fn input_rtt(&self) -> Option<Duration> {
        self.input_rtt
    }

    /// Stops predicting the own entity (the mode's prediction may keep a world of its
    /// own, a physics copy of the level in the arena's).
    pub fn disable_prediction(&mut self) {
        self.prediction = None;
    }

    /// Stops keeping remote entities' past states; the newest snapshot is still kept.
    pub fn disable_interpolation(&mut self) {
        self.interpolate = false;
        self.timeline = Timeline::new(Arc::clone(&self.fields));
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Prediction, interpolation and clock figures so far.
    pub fn netcode_stats(&self) -> NetcodeStats {
        let hz = self.clock.tick_hz();
        NetcodeStats {
            prediction_errors: self
                .prediction
                .as_ref()
                .map(Reconciler::errors)
                .unwrap_or_default(),
            corrections: self.prediction.as_ref().map_or(0, Reconciler::corrections),
            max_extrapolated_ms: self.timeline.max_extrapolated_s() * 1000.0,
            interpolation_delay_ms: self.clock.interpolation_delay_ticks() / hz * 1000.0,
            jitter_ms: self.clock.jitter_ticks() / hz * 1000.0,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use outpost_arena::{self as arena, ArenaConfig};
    use outpost_protocol::{MatchId, PROTOCOL_VERSION, PlayerId};
    use outpost_sim::GameMode as _;

    use super::*;
    use crate::netcode::blend_value;

    pub(crate) fn welcome() -> Welcome {
        let config = arena::config(&ArenaConfig::default());
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            match_id: MatchId(1),
            player_id: PlayerId(1),
            entity: EntityId(1),
            tick: 0,
            schema: arena::Arena
                .schema(&config.mode_config)
                .expect("arena settings")
                .encode(),
            config,
            reconnect_key: [0; 16],
            players: Vec::new(),
        }
    }

    #[test]
    fn fields_interpolate_by_their_kind() {
        use outpost_protocol::schema::Value;
        // Integers, enums, flags, booleans and text have no value between two: they snap
        // to the newer one when its tick is reached.
        assert_eq!(
            blend_value(Value::Int(3), Value::Int(4), 0.5),
            Value::Int(3)
        );
        assert_eq!(
            blend_value(Value::Int(3), Value::Int(4), 1.0),
            Value::Int(4)
        );
        assert_eq!(
            blend_value(Value::Bool(false), Value::Bool(true), 0.99),
            Value::Bool(false)
        );
        assert_eq!(
            blend_value(
                Value::Vec3([0.0, 2.0, 4.0]),
                Value::Vec3([2.0, 2.0, 0.0]),
                0.5
            ),
            Value::Vec3([1.0, 2.0, 2.0])
        );
        let half = std::f32::consts::FRAC_1_SQRT_2;
        let Value::Quat(q) = blend_value(
            Value::Quat([0.0, 0.0, 0.0, 1.0]),
            Value::Quat([0.0, 1.0, 0.0, 0.0]),
            0.5,
        ) else {
            panic!("a rotation blends to a rotation");
        };
        for (got, want) in q.iter().zip([0.0, half, 0.0, half]) {
            assert!((got - want).abs() < 1e-6, "{q:?}");
        }
    }

    fn refused(welcome: Welcome) -> String {
        match MatchConnection::new(welcome, Instant::now()) {
            Err(ClientError::Schema(reason)) => reason,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    /// A client decodes nothing with a schema its match configuration did not commit
    /// to: an edge running another build of the mode (or a spoiled Welcome) is refused
    /// before the first snapshot, with the reason.
    #[test]
    fn a_welcome_whose_schema_does_not_match_the_configuration_is_refused() {
        let schema = MatchConnection::new(welcome(), Instant::now())
            .expect("the edge's own Welcome verifies")
            .schema()
            .clone();
        assert_eq!(schema.mode, "arena");

        let mut other_hash = welcome();
        other_hash.config.schema_hash ^= 1 << 40;
        assert!(refused(other_hash).contains("hashes to"));

        // A schema for other settings (a bigger floor: other position bounds), sent
        // under the configuration's hash.
        let mut other_schema = welcome();
        other_schema.schema = arena::schema(&ArenaConfig {
            half_extent: 80.0,
            ..ArenaConfig::default()
        })
        .encode();
        assert!(refused(other_schema).contains("hashes to"));

        let mut connection =
            MatchConnection::new(welcome(), Instant::now()).expect("the edge's own Welcome");
        let wrong = InputRecord {
            seq: 0,
            ticks: 1,
            view_tick: 0,
            slots: vec![0; 3],
        };
        match connection.send_input(wrong, Instant::now()) {
            Err(ClientError::Schema(reason)) => assert!(reason.contains("has 3 slots"), "{reason}"),
            other => panic!("an input of another shape was sent: {other:?}"),
        }
        assert_eq!(
            connection.stats().inputs_sent,
            0,
            "nothing numbered or sent"
        );

        let mut truncated = welcome();
        truncated.schema.truncate(40);
        assert!(refused(truncated).contains("truncated"));
    }
}
