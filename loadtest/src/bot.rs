//! A scripted player on a session, built only on the SDK's public API: each tick it
//! shows its mode's bot ([`outpost_sim::GameMode::bot`]) what a game client would draw
//! (the newest view, the predicted own entity, the others interpolated) and sends the
//! input it chooses. Used by `outpost dev` and tests, for any mode that has a bot.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_client::{ClientError, NetcodeStats, PredictedSelf, Session, WorldState};
use outpost_protocol::replication::{Fields, InputRecord, View};
use outpost_protocol::schema::{FieldKind, Value};
use outpost_protocol::{Answer, EntityId, MatchEvent};
use outpost_sim::{Modes, Sight};
use tokio::time::MissedTickBehavior;

/// What a bot saw and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotReport {
    /// Snapshots received.
    pub snapshots_received: u64,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Match events received.
    pub events_received: u64,
    /// Points this bot scored as its mode counts them (the arena's hits, ctf's
    /// captures), from the edge's events.
    pub hits: u32,
    /// Requests sent (a mode's bot uploading what it scanned, say), and how many of
    /// them the edge refused.
    pub requests_sent: u64,
    /// See `requests_sent`.
    pub requests_refused: u64,
    /// Whether the match ended while the bot played.
    pub match_ended: bool,
    /// Whether the connection was up until the bot stopped.
    pub stayed_connected: bool,
    /// Whether every state received acknowledged inputs in order (never going back).
    pub acks_in_order: bool,
    /// Prediction, interpolation and clock figures at the end.
    pub netcode: NetcodeStats,
}

/// A bot's requests so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Requests {
    pub sent: u64,
    pub refused: u64,
}

/// What a bot's turn reads of a player's match and the requests it sends: the SDK's
/// [`Session`], or a seat of the load generator's own transport (`crate::swarm`).
pub(crate) trait Seat {
    /// The next answer to a request, if one is waiting.
    fn next_answer(&self) -> Option<Answer>;
    /// The newest state received.
    fn latest(&self) -> Option<Arc<WorldState>>;
    /// The match's field layout.
    fn fields(&self) -> Arc<Fields>;
    /// The player's own entity.
    fn entity(&self) -> EntityId;
    /// The own entity as predicted, if prediction is on.
    fn predicted_self(&self) -> Option<PredictedSelf>;
    /// The tick remote entities are drawn at, if interpolation is on.
    fn render_tick(&self) -> Option<f64>;
    /// An entity's position interpolated at `render_tick`.
    fn interpolated_position(&self, entity: EntityId, render_tick: f64) -> Option<[f32; 3]>;
    /// Sends a request of the mode's schema on the control stream.
    fn send_request(
        &self,
        name: &str,
        values: &[Value],
        lists: &[&[Vec<Value>]],
    ) -> Result<u32, ClientError>;
}

impl Seat for Session {
    fn next_answer(&self) -> Option<Answer> {
        self.try_next_answer()
    }
    fn latest(&self) -> Option<Arc<WorldState>> {
        self.latest_snapshot()
    }
    fn fields(&self) -> Arc<Fields> {
        Session::fields(self)
    }
    fn entity(&self) -> EntityId {
        Session::entity(self)
    }
    fn predicted_self(&self) -> Option<PredictedSelf> {
        Session::predicted_self(self)
    }
    fn render_tick(&self) -> Option<f64> {
        Session::render_tick(self)
    }
    fn interpolated_position(&self, entity: EntityId, render_tick: f64) -> Option<[f32; 3]> {
        Session::interpolated_position(self, entity, render_tick)
    }
    fn send_request(
        &self,
        name: &str,
        values: &[Value],
        lists: &[&[Vec<Value>]],
    ) -> Result<u32, ClientError> {
        Session::send_request(self, name, values, lists)
    }
}

/// A mode's bot's turn: it learns the answers to its requests, sends the request it
/// wants to (if any), and chooses its input from what a game would draw — the own entity
/// predicted (or as last received), the others interpolated at the render tick (or, with
/// interpolation off, as last received). A request the seat could not send (it closed)
/// shows in the seat's state by the next turn.
pub(crate) fn choose(
    seat: &impl Seat,
    brain: &mut dyn outpost_sim::Bot,
    requests: &mut Requests,
) -> Option<InputRecord> {
    while let Some(answer) = seat.next_answer() {
        requests.refused += u64::from(answer.refused.is_some());
        brain.answered(&answer);
    }
    let world = seat.latest();
    let fields = seat.fields();
    let empty = View::new();
    let view = world.as_ref().map_or(&empty, |w| &*w.records);
    let me = seat.entity();
    let received = |id| {
        view.find(id)
            .and_then(|r| fields.layout().position_value(&r))
    };
    let own_position = seat
        .predicted_self()
        .map(|p| p.position)
        .or_else(|| received(me));
    let render_tick = seat.render_tick();
    let drawn = |id| {
        render_tick
            .and_then(|t| seat.interpolated_position(id, t))
            .or_else(|| received(id))
    };
    let sight = Sight {
        fields: &fields,
        view,
        own: me,
        own_position,
        drawn: &drawn,
    };
    if let Some(request) = brain.next_request(&sight) {
        let lists: Vec<&[Vec<Value>]> = request.lists.iter().map(Vec::as_slice).collect();
        match seat.send_request(request.name, &request.values, &lists) {
            Ok(_) => requests.sent += 1,
            // The bot's own request does not fit its schema: its mode's bug.
            Err(ClientError::Request(err)) => {
                tracing::warn!(%err, "a bot's request was not sent");
            }
            Err(_) => {}
        }
    }
    brain.next_input(&sight)
}

/// Positions one bot remembers having sent, for the probe to match.
const PROBE_SENDS: usize = 256;
/// Latencies a probe keeps.
const PROBE_SAMPLES: usize = 200_000;
/// How close a position shown must be to one sent to be that one, metres per axis (a
/// quantization step of 2 mm, with slack; bots move farther than this between ticks).
const PROBE_MATCH: f32 = 0.0015;

/// Times, across the bots of one process, how long a position a bot sends in its input
/// (the first position field of the mode's input: the AR room's head pose) takes to show
/// in *another* bot's view (its entity's first position field), from the send until the
/// snapshot that shows it arrives. A mode whose input has no position field is not timed.
#[derive(Debug, Clone, Default)]
pub struct PoseProbe(Arc<Mutex<ProbeState>>);

#[derive(Debug, Default)]
struct ProbeState {
    /// Per sending entity: the positions it sent, each when it first did, oldest first.
    sent: HashMap<EntityId, VecDeque<([f32; 3], Instant)>>,
    /// Per (observer, sender): the send time of the newest position seen.
    seen: HashMap<(EntityId, EntityId), Instant>,
    latencies_ms: Vec<f64>,
}

/// Where the first position field of a mode's input sits in its slots.
fn input_position(fields: &Fields) -> Option<(usize, FieldKind)> {
    let mut at = 0;
    for field in &fields.schema().input {
        if matches!(field.kind, FieldKind::Position { .. }) {
            return Some((at, field.kind.clone()));
        }
        at += field.kind.slots();
    }
    None
}

impl PoseProbe {
    /// A probe with no samples.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `own` sent `input` now.
    fn sent(&self, own: EntityId, fields: &Fields, input: &InputRecord, now: Instant) {
        let Some((at, kind)) = input_position(fields) else {
            return;
        };
        let Some(Value::Vec3(p)) = input.slots.get(at..at + 3).map(|s| kind.value(s)) else {
            return;
        };
        let mut state = self.state();
        let sends = state.sent.entry(own).or_default();
        let moved = sends
            .back()
            .is_none_or(|(q, _)| (0..3).any(|a| (p[a] - q[a]).abs() > PROBE_MATCH));
        if moved {
            if sends.len() == PROBE_SENDS {
                sends.pop_front();
            }
            sends.push_back((p, now));
        }
    }

    /// `observer` received `view` now: every other bot's position in it that is one they
    /// sent, and newer than the last seen of theirs, is timed.
    fn observe(&self, observer: EntityId, fields: &Fields, view: &View, now: Instant) {
        let mut state = self.state();
        let ProbeState {
            sent,
            seen,
            latencies_ms,
        } = &mut *state;
        for (&sender, sends) in sent.iter() {
            if sender == observer {
                continue;
            }
            let Some(p) = view
                .find(sender)
                .and_then(|r| fields.layout().position_value(&r))
            else {
                continue;
            };
            let after = seen.get(&(observer, sender)).copied();
            let found = sends.iter().find(|(q, t)| {
                after.is_none_or(|a| *t > a) && (0..3).all(|i| (p[i] - q[i]).abs() <= PROBE_MATCH)
            });
            if let Some(&(_, t)) = found {
                seen.insert((observer, sender), t);
                if latencies_ms.len() < PROBE_SAMPLES {
                    latencies_ms.push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
            }
        }
    }

    /// Latencies measured so far, milliseconds, in the order measured.
    pub fn latencies_ms(&self) -> Vec<f64> {
        self.state().latencies_ms.clone()
    }
}

/// A scripted player on a session.
pub struct Bot {
    session: Session,
    brain: Box<dyn outpost_sim::Bot>,
    probe: Option<PoseProbe>,
}

impl Bot {
    /// A bot playing `session` with the scripted player of its match's mode (one of
    /// `modes`), its choices drawn from `seed`. Fails if the mode is not among `modes`
    /// or has no bot.
    pub fn new(session: Session, modes: &Modes, seed: u64) -> anyhow::Result<Self> {
        let config = &session.welcome().config;
        let brain = modes
            .get(&config.mode)
            .and_then(|mode| mode.bot(config, seed))
            .ok_or_else(|| anyhow::anyhow!("the mode `{}` has no bot here", config.mode))?;
        Ok(Self {
            session,
            brain,
            probe: None,
        })
    }

    /// Times this bot's positions to the other bots on `probe`, and theirs to it; the
    /// bot then wakes on every snapshot, not only at its tick.
    pub fn with_probe(mut self, probe: PoseProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The session the bot plays on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The connection closed under the bot: whether that was the match ending (the
    /// edge's goodbye). The close can be seen before the control stream's last messages
    /// are read, so those are read first (for at most a second).
    async fn ended_by_the_match(&mut self, report: &mut BotReport) -> bool {
        let drain = async {
            let me = self.session.entity();
            while let Some(event) = self.session.next_event().await {
                if matches!(event.event, MatchEvent::MatchEnded { .. }) {
                    report.match_ended = true;
                }
                self.brain.observe(&event.event, me);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        report.match_ended || self.session.goodbye().is_some()
    }

    /// Plays at the match's tick rate until `stop` completes, the match ends or the
    /// connection drops; then says goodbye and reports.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> BotReport {
        let tick_hz = u32::from(self.session.welcome().config.tick_hz.max(1));
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / tick_hz);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let me = self.session.entity();
        let mut report = BotReport {
            stayed_connected: true,
            acks_in_order: true,
            ..BotReport::default()
        };
        let mut last_ack = (0u32, 0u32);
        let mut requests = Requests::default();
        let fields = self.session.fields();
        let probe = self.probe.clone();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticks.tick() => {}
                world = self.session.next_snapshot(), if probe.is_some() => {
                    if let (Some(world), Some(probe)) = (world, &probe) {
                        probe.observe(me, &fields, &world.records, Instant::now());
                    }
                    continue;
                }
            }
            // Read before the events: every event that came before the goodbye is then
            // queued already, so a match end followed at once by the goodbye is seen.
            let said_goodbye = self.session.goodbye().is_some();
            while let Some(event) = self.session.try_next_event() {
                if matches!(event.event, MatchEvent::MatchEnded { .. }) {
                    report.match_ended = true;
                }
                self.brain.observe(&event.event, me);
            }
            if let Some(world) = self.session.latest_snapshot()
                && world.tick > last_ack.0
            {
                if world.ack_input_seq < last_ack.1 {
                    report.acks_in_order = false;
                }
                last_ack = (world.tick, world.ack_input_seq);
            }
            if report.match_ended || said_goodbye {
                break;
            }
            if self.session.is_closed() {
                report.stayed_connected = self.ended_by_the_match(&mut report).await;
                break;
            }
            let input = choose(&self.session, self.brain.as_mut(), &mut requests);
            report.requests_sent = requests.sent;
            report.requests_refused = requests.refused;
            let Some(input) = input else {
                continue;
            };
            if let Some(probe) = &probe {
                probe.sent(me, &fields, &input, Instant::now());
            }
            if self.session.send_input(input).is_err() {
                report.stayed_connected = self.ended_by_the_match(&mut report).await;
                break;
            }
        }
        report.hits = self.brain.points();
        let stats = self.session.stats();
        report.snapshots_received = stats.snapshots_received;
        report.inputs_sent = stats.inputs_sent;
        report.events_received = stats.events_received;
        report.netcode = self.session.netcode_stats();
        if report.stayed_connected {
            self.session.close().await;
        }
        report
    }
}
