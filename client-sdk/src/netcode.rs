//! The client half of the netcode, free of I/O: decoding snapshots against the views
//! already received, estimating the server's clock, buffering remote entities for
//! interpolation, and predicting the player's own character with reconciliation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use outpost_protocol::replication::{self, Component, Fields, InputRecord, Layout, Origin, Record};
use outpost_protocol::schema::Value;
use outpost_protocol::{EntityId, MatchConfig, Snapshot};

/// Views kept as possible baselines (the edge only uses ticks it was told we have).
const VIEW_HISTORY: usize = 64;
/// Seconds of samples kept per remote entity.
const TIMELINE_SECONDS: f64 = 1.0;
/// Longest a remote entity is extrapolated past its newest sample, seconds.
pub const MAX_EXTRAPOLATION_S: f64 = 0.25;
/// Prediction errors remembered for statistics.
const ERROR_HISTORY: usize = 4096;
/// Fraction of a visual correction kept per input tick (the rest is smoothed away).
const SMOOTHING: f32 = 0.85;

/// A snapshot decoded into the full world the client sees.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorldState {
    /// Server tick.
    pub tick: u32,
    /// Newest own input the server applied.
    pub ack_input_seq: u32,
    /// Ticks left in the match.
    pub ticks_left: u32,
    /// Every entity in view, sorted by id: its components and their quantized fields,
    /// read by name or typed with [`replication::Fields`] (the connection's
    /// [`crate::MatchConnection::fields`]).
    pub records: Arc<replication::View>,
    /// For each entity of `records`, the tick of the snapshot its value was sent in:
    /// older than `tick` when the value was carried over from the baseline.
    pub value_ticks: Vec<u32>,
    /// Entities the server removed from this client's view (they left its interest or
    /// the match).
    pub removed: Vec<EntityId>,
}

/// Why a snapshot could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotIssue {
    /// Older than one already decoded.
    Stale,
    /// Its baseline, or its reference view, is no longer (or never was) held.
    NoBaseline,
    /// The body did not decode.
    Malformed,
}

/// How long the clock remembers snapshot arrivals: the fastest arrival in this window is
/// the link's floor, and lateness is measured against it.
pub const CLOCK_WINDOW_S: f64 = 1.0;
/// Most arrivals remembered (a second of snapshots at up to 128 Hz).
const CLOCK_SAMPLES: usize = 128;
/// Share of the way the clock moves toward a new floor per snapshot: smooth enough that a
/// floor change does not jolt what is drawn, quick enough to settle within a second.
const CLOCK_SLEW: f64 = 0.15;

/// Estimates of the server's clock from snapshot arrivals.
///
/// Each arrival gives a sample, the snapshot's tick less the local time in ticks. The
/// fastest sample in the last [`CLOCK_WINDOW_S`] is the link's floor; the clock slews
/// toward it, and jitter is the mean lateness against it. A window rather than an
/// all-time best lets the clock follow a lasting change: an edge that skipped ticks (its
/// ticks now lag the wall clock for good), a route that got slower, clock drift.
#[derive(Debug, Clone)]
pub struct ClockSync {
    tick_hz: f64,
    snapshot_ticks: f64,
    offset: Option<f64>,
    jitter: f64,
    /// Recent arrivals: (local time, sample), oldest first.
    samples: VecDeque<(f64, f64)>,
}

impl ClockSync {
    /// For a match's rates.
    pub fn new(config: &MatchConfig) -> Self {
        Self {
            tick_hz: f64::from(config.tick_hz),
            snapshot_ticks: f64::from(config.ticks_per_snapshot()),
            offset: None,
            jitter: 0.0,
            samples: VecDeque::with_capacity(CLOCK_SAMPLES),
        }
    }

    /// A snapshot of `tick` arrived at local time `now_s`.
    pub fn on_snapshot(&mut self, tick: u32, now_s: f64) {
        let sample = f64::from(tick) - now_s * self.tick_hz;
        if self.samples.len() == CLOCK_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now_s, sample));
        while self
            .samples
            .front()
            .is_some_and(|&(at, _)| now_s - at > CLOCK_WINDOW_S)
        {
            self.samples.pop_front();
        }
        let floor = self
            .samples
            .iter()
            .map(|&(_, s)| s)
            .fold(f64::NEG_INFINITY, f64::max);
        let lateness: f64 = self.samples.iter().map(|&(_, s)| floor - s).sum();
        self.jitter = lateness / self.samples.len() as f64;
        self.offset = Some(match self.offset {
            None => floor,
            Some(offset) => offset + (floor - offset) * CLOCK_SLEW,
        });
    }

    /// The server tick whose snapshot would arrive now on the fastest path seen.
    pub fn arrival_tick(&self, now_s: f64) -> Option<f64> {
        self.offset.map(|offset| now_s * self.tick_hz + offset)
    }

    /// The server tick now, given the round-trip time.
    pub fn server_tick(&self, now_s: f64, rtt_s: f64) -> Option<f64> {
        self.arrival_tick(now_s)
            .map(|t| t + rtt_s / 2.0 * self.tick_hz)
    }

    /// Arrival jitter, in ticks.
    pub fn jitter_ticks(&self) -> f64 {
        self.jitter
    }

    /// How far behind the newest state remote entities are drawn, in ticks: one
    /// snapshot interval, plus room for the measured jitter, plus one tick; at most
    /// 250 ms.
    pub fn interpolation_delay_ticks(&self) -> f64 {
        let wanted = self.snapshot_ticks + 2.5 * self.jitter + 1.0;
        wanted.clamp(self.snapshot_ticks, MAX_EXTRAPOLATION_S * self.tick_hz)
    }

    /// The tick remote entities should be drawn at now.
    pub fn render_tick(&self, now_s: f64) -> Option<f64> {
        self.arrival_tick(now_s)
            .map(|t| t - self.interpolation_delay_ticks())
    }

    /// Ticks per second.
    pub fn tick_hz(&self) -> f64 {
        self.tick_hz
    }
}

/// One entity as drawn at a render tick ([`crate::MatchConnection::interpolated`]): each
/// of its components' fields blended between the snapshots around that tick as the
/// field's kind says, read by name or typed.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The entity.
    pub id: EntityId,
    /// Its components (bit `c` for the schema's component `c`), as of the newer
    /// snapshot.
    pub mask: u64,
    /// The values of its components' fields, component by component in schema order.
    values: Vec<Value>,
    fields: Arc<Fields>,
}

impl Shown {
    /// Whether the entity has a component.
    pub fn has(&self, component: &str) -> bool {
        self.fields
            .schema()
            .component(component)
            .is_some_and(|(c, _)| self.mask & (1 << c) != 0)
    }

    /// Every field of one of its components, in schema order.
    pub fn values(&self, component: &str) -> Option<&[Value]> {
        let schema = self.fields.schema();
        let (c, def) = schema.component(component)?;
        if self.mask & (1 << c) == 0 {
            return None;
        }
        let start: usize = schema.components[..c]
            .iter()
            .enumerate()
            .filter(|(i, _)| self.mask & (1 << i) != 0)
            .map(|(_, d)| d.fields.len())
            .sum();
        self.values.get(start..start + def.fields.len())
    }

    /// One field of one of its components.
    pub fn value(&self, component: &str, field: &str) -> Option<Value> {
        let (_, def) = self.fields.schema().component(component)?;
        let f = def.fields.iter().position(|f| f.name == field)?;
        self.values(component)?.get(f).cloned()
    }

    /// One of its components, typed.
    pub fn get<C: Component>(&self) -> Option<C> {
        C::from_values(self.values(C::NAME)?)
    }

    /// The entity's position, if its mode marks one (see [`Layout::position_value`]).
    pub fn position(&self) -> Option<[f32; 3]> {
        let (c, f) = self.fields.schema().position_field()?;
        let def = self.fields.schema().components.get(c)?;
        match self.values(&def.name)?.get(f)? {
            Value::Vec3(p) => Some(*p),
            _ => None,
        }
    }
}

/// One value an entity took: the tick of the snapshot that sent it, and the view holding
/// it (shared with the decoder's history) at an index.
type Sample = (u32, Arc<replication::View>, usize);

/// Past values of the entities in view, for interpolation: any mode's, read through its
/// schema.
#[derive(Debug)]
pub struct Timeline {
    fields: Arc<Fields>,
    samples: BTreeMap<EntityId, VecDeque<Sample>>,
    max_extrapolated_s: f64,
    newest_world: u32,
}

impl Timeline {
    /// An empty timeline for a mode's fields.
    pub fn new(fields: Arc<Fields>) -> Self {
        Self {
            fields,
            samples: BTreeMap::new(),
            max_extrapolated_s: 0.0,
            newest_world: 0,
        }
    }

    /// Adds a decoded world. Each entity takes a value only if it is newer than the newest
    /// it has (a view may carry an older value over from its baseline); entities the
    /// server removed, or not updated for a second, are forgotten; samples older than a
    /// second are dropped.
    pub fn push(&mut self, world: &WorldState, tick_hz: f64) {
        let keep = (TIMELINE_SECONDS * tick_hz) as u32;
        self.newest_world = self.newest_world.max(world.tick);
        for id in &world.removed {
            self.samples.remove(id);
        }
        for (i, (record, &value_tick)) in world.records.iter().zip(&world.value_ticks).enumerate() {
            // A value over a second old (an entity at rest, carried over since then)
            // would be forgotten below as soon as taken: not taken at all.
            if world.tick.saturating_sub(value_tick) > keep {
                continue;
            }
            let samples = self.samples.entry(record.id).or_default();
            if samples.back().is_some_and(|(t, ..)| *t >= value_tick) {
                continue;
            }
            samples.push_back((value_tick, Arc::clone(&world.records), i));
        }
        self.samples.retain(|_, samples| {
            while samples.len() > 2
                && samples
                    .front()
                    .is_some_and(|(t, ..)| world.tick.saturating_sub(*t) > keep)
            {
                samples.pop_front();
            }
            samples
                .back()
                .is_some_and(|(t, ..)| world.tick.saturating_sub(*t) <= keep)
        });
    }

    /// The newest value held of every entity, by id.
    pub fn newest(&self) -> impl Iterator<Item = Record<'_>> {
        self.samples
            .values()
            .filter_map(|s| s.back().and_then(|(_, view, i)| view.get(*i)))
    }

    /// An entity at a (fractional) tick: interpolated between the samples around it;
    /// past the newest sample, held there if newer snapshots carried the same value (it
    /// came to rest, or waits its turn in the budget: either way, nothing says it moves
    /// on), or else — snapshots themselves are late — extrapolated from the newest two
    /// for at most [`MAX_EXTRAPOLATION_S`]. Positions and vectors move linearly,
    /// rotations by normalised blend (never past the newer one); enums, integers, flags
    /// and text snap to the newer value at its tick.
    pub fn at(&mut self, id: EntityId, tick: f64, tick_hz: f64) -> Option<Shown> {
        let (newer, older, share) = self.pick(id, tick, tick_hz)?;
        let (newer, older) = self.records(id, newer, older)?;
        self.blend(&newer, older.as_ref(), share)
    }

    /// Where an entity is drawn at a (fractional) tick: its position as [`Timeline::at`]
    /// shows it, without reading its other fields (a game drawing every entity every
    /// frame needs no more).
    pub fn position_at(&mut self, id: EntityId, tick: f64, tick_hz: f64) -> Option<[f32; 3]> {
        let (newer, older, share) = self.pick(id, tick, tick_hz)?;
        let (newer, older) = self.records(id, newer, older)?;
        let layout = self.fields.layout();
        let new = layout.position_value(&newer)?;
        let old = older.and_then(|o| layout.position_value(&o));
        Some(old.map_or(new, |old| lerp(old, new, share)))
    }

    /// The records of an entity's samples [`Timeline::pick`] chose (`None` if either is
    /// gone).
    fn records(
        &self,
        id: EntityId,
        newer: usize,
        older: Option<usize>,
    ) -> Option<(Record<'_>, Option<Record<'_>>)> {
        let samples = self.samples.get(&id)?;
        let record = |i: usize| samples.get(i).and_then(|s| s.1.get(s.2));
        let older = match older {
            Some(i) => Some(record(i)?),
            None => None,
        };
        Some((record(newer)?, older))
    }

    /// The samples an entity is shown from at `tick`: the newer one's index, the older
    /// one to blend from (if any) and the share of the way from it to the newer.
    fn pick(
        &mut self,
        id: EntityId,
        tick: f64,
        tick_hz: f64,
    ) -> Option<(usize, Option<usize>, f32)> {
        let samples = self.samples.get(&id)?;
        let newest = samples.len().checked_sub(1)?;
        let newest_tick = samples.get(newest)?.0;
        if tick >= f64::from(newest_tick) {
            let older = newest
                .checked_sub(1)
                .filter(|_| newest_tick >= self.newest_world);
            let Some(older) = older else {
                return Some((newest, None, 1.0));
            };
            let older_tick = samples.get(older)?.0;
            let ahead = (tick - f64::from(newest_tick)).min(MAX_EXTRAPOLATION_S * tick_hz);
            self.max_extrapolated_s = self.max_extrapolated_s.max(ahead / tick_hz);
            let span = f64::from(newest_tick - older_tick).max(1.0);
            return Some((newest, Some(older), (1.0 + ahead / span) as f32));
        }
        let after = samples.iter().position(|(t, ..)| f64::from(*t) >= tick)?;
        if after == 0 {
            return Some((0, None, 1.0));
        }
        let (a, b) = (samples.get(after - 1)?.0, samples.get(after)?.0);
        let share = ((tick - f64::from(a)) / f64::from(b - a).max(1.0)) as f32;
        Some((after, Some(after - 1), share))
    }

    /// The entity as `newer`, each field a share `f` of the way from `older`'s value
    /// (where `older` has the component) to `newer`'s.
    fn blend(&self, newer: &Record<'_>, older: Option<&Record<'_>>, f: f32) -> Option<Shown> {
        let schema = self.fields.schema();
        let mut values = Vec::new();
        for (c, def) in schema.components.iter().enumerate() {
            if newer.mask & (1 << c) == 0 {
                continue;
            }
            let old = older.filter(|o| o.mask & (1 << c) != 0);
            for field in 0..def.fields.len() {
                let new = self.fields.field(newer, c, field)?;
                values.push(match old.and_then(|o| self.fields.field(o, c, field)) {
                    Some(old) => blend_value(old, new, f),
                    None => new,
                });
            }
        }
        Some(Shown {
            id: newer.id,
            mask: newer.mask,
            values,
            fields: Arc::clone(&self.fields),
        })
    }

    /// The furthest any entity has been extrapolated, seconds.
    pub fn max_extrapolated_s(&self) -> f64 {
        self.max_extrapolated_s
    }
}

fn lerp(a: [f32; 3], b: [f32; 3], f: f32) -> [f32; 3] {
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * f)
}

/// Normalised blend of two quaternions along the shorter arc (`f` capped at 1).
fn nlerp(a: [f32; 4], b: [f32; 4], f: f32) -> [f32; 4] {
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let sign = if dot < 0.0 { -1.0 } else { 1.0 };
    let f = f.min(1.0);
    let r: [f32; 4] = std::array::from_fn(|i| a[i] * (1.0 - f) + sign * b[i] * f);
    let n = r.iter().map(|c| c * c).sum::<f32>().sqrt().max(1e-6);
    r.map(|c| c / n)
}

/// A field's value a share `f` of the way from `a` to `b`, as its kind interpolates:
/// positions and vectors linearly (`f` past 1 extrapolates), rotations by normalised
/// blend (never past `b`), every other kind snapping to `b` once `f` reaches 1 (an enum,
/// an integer or a flag has no value between two).
pub fn blend_value(a: Value, b: Value, f: f32) -> Value {
    match (a, b) {
        (Value::Vec3(a), Value::Vec3(b)) => Value::Vec3(lerp(a, b, f)),
        (Value::Quat(a), Value::Quat(b)) => Value::Quat(nlerp(a, b, f)),
        (a, b) => {
            if f >= 1.0 {
                b
            } else {
                a
            }
        }
    }
}

/// One view received: its tick, the view as decoded (the baseline of later snapshots)
/// and the tick each value was sent at.
type Received = (u32, Arc<replication::View>, Vec<u32>);

/// Decodes snapshots against the views received before.
#[derive(Debug)]
pub struct Decoder {
    layout: Layout,
    /// Recent views, oldest first.
    views: VecDeque<Received>,
    /// Where each entity of the last view decoded came from (reused).
    origins: Vec<Origin>,
    /// Snapshots in a row that could not be decoded (baseline missing, or malformed).
    failing: u32,
}

/// Snapshots in a row that fail to decode after which the client asks for a keyframe.
pub const KEYFRAME_AFTER_FAILURES: u32 = 3;

impl Decoder {
    /// A decoder for a mode's layout (from a schema checked against the configuration's
    /// hash, see [`outpost_protocol::schema::ModeSchema::verified`]).
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            views: VecDeque::with_capacity(VIEW_HISTORY),
            origins: Vec::new(),
            failing: 0,
        }
    }

    /// Newest tick decoded, 0 before the first.
    pub fn newest(&self) -> u32 {
        self.views.back().map_or(0, |(t, ..)| *t)
    }

    /// The ack to send: the newest tick decoded, or 0 — "send a keyframe" — once
    /// [`KEYFRAME_AFTER_FAILURES`] snapshots in a row could not be decoded.
    pub fn ack(&self) -> u32 {
        if self.failing >= KEYFRAME_AFTER_FAILURES {
            0
        } else {
            self.newest()
        }
    }

    /// Decodes a snapshot into the world it describes.
    pub fn decode(&mut self, snapshot: &Snapshot) -> Result<WorldState, SnapshotIssue> {
        if snapshot.tick <= self.newest() {
            return Err(SnapshotIssue::Stale);
        }
        let decoded = self.decode_newer(snapshot);
        match decoded {
            Ok(_) => self.failing = 0,
            Err(_) => self.failing = self.failing.saturating_add(1),
        }
        decoded
    }

    fn decode_newer(&mut self, snapshot: &Snapshot) -> Result<WorldState, SnapshotIssue> {
        let reference_tick = match snapshot.reference_gap {
            0 => None,
            _ if snapshot.baseline_tick == 0 => return Err(SnapshotIssue::Malformed),
            gap => Some(snapshot.baseline_tick.saturating_sub(u32::from(gap))),
        };
        // A full history's oldest view gives its buffers to the new one, unless this
        // snapshot builds on it or something else still holds it.
        let (mut room, mut room_ticks) = (replication::View::new(), Vec::new());
        if self.views.len() == VIEW_HISTORY
            && let Some((oldest, view, _)) = self.views.front()
            && *oldest != snapshot.baseline_tick
            && Some(*oldest) != reference_tick
            && Arc::strong_count(view) == 1
            && let Some((_, view, ticks)) = self.views.pop_front()
        {
            room = Arc::try_unwrap(view).unwrap_or_default();
            room_ticks = ticks;
        }
        let (empty, no_ticks) = (Arc::default(), Vec::new());
        let (baseline, baseline_ticks) = if snapshot.baseline_tick == 0 {
            (&empty, &no_ticks)
        } else {
            // From the newest: the edge builds on a recent view.
            self.views
                .iter()
                .rev()
                .find(|(t, ..)| *t == snapshot.baseline_tick)
                .map(|(_, v, ticks)| (v, ticks))
                .ok_or(SnapshotIssue::NoBaseline)?
        };
        let reference = match reference_tick {
            None => None,
            Some(tick) => {
                let view = self
                    .views
                    .iter()
                    .rev()
                    .find(|(t, ..)| *t == tick && tick != 0)
                    .map(|(_, v, _)| v)
                    .ok_or(SnapshotIssue::NoBaseline)?;
                Some(replication::Reference {
                    view,
                    behind: snapshot.baseline_tick - tick,
                    ahead: snapshot.tick.saturating_sub(snapshot.baseline_tick),
                })
            }
        };
        replication::decode_predicted_into(
            &self.layout,
            baseline,
            reference,
            &snapshot.body,
            &mut room,
            Some(&mut self.origins),
        )
        .map_err(|_| SnapshotIssue::Malformed)?;
        let view = Arc::new(room);
        // A value carried over keeps the tick it was sent in; a changed or new one was
        // sent now. Baseline entities neither carried nor changed were removed.
        let mut value_ticks = Vec::with_capacity(view.len());
        let mut removed = Vec::new();
        let mut next = 0usize;
        let gone = |from: usize, upto: usize, removed: &mut Vec<EntityId>| {
            removed.extend((from..upto).filter_map(|i| baseline.get(i)).map(|r| r.id));
        };
        for origin in &self.origins {
            let (tick, from) = match *origin {
                Origin::Carried(b) => (
                    baseline_ticks
                        .get(b as usize)
                        .copied()
                        .unwrap_or(snapshot.tick),
                    Some(b as usize),
                ),
                Origin::Changed(b) => (snapshot.tick, Some(b as usize)),
                Origin::New => (snapshot.tick, None),
            };
            if let Some(b) = from {
                gone(next, b, &mut removed);
                next = b + 1;
            }
            value_ticks.push(tick);
        }
        gone(next, baseline.len(), &mut removed);
        if self.views.len() == VIEW_HISTORY {
            self.views.pop_front();
        }
        room_ticks.clear();
        room_ticks.extend_from_slice(&value_ticks);
        self.views
            .push_back((snapshot.tick, Arc::clone(&view), room_ticks));
        Ok(WorldState {
            tick: snapshot.tick,
            ack_input_seq: snapshot.ack_input_seq,
            ticks_left: snapshot.ticks_left,
            records: view,
            value_ticks,
            removed,
        })
    }
}

/// The player's own entity, predicted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictedSelf {
    /// Where to draw it: the prediction plus a decaying share of the last correction.
    pub position: [f32; 3],
    /// The prediction itself.
    pub predicted: [f32; 3],
    /// Its velocity.
    pub velocity: [f32; 3],
    /// Sequence of the newest input it includes.
    pub seq: u32,
}

/// Prediction and reconciliation of the own entity, by the mode's
/// [`outpost_sim::Prediction`]: the SDK keeps the inputs the edge has not applied, replays
/// them after each new server state, measures the error and smooths corrections.
pub struct Reconciler {
    prediction: Box<dyn outpost_sim::Prediction>,
    fields: Arc<Fields>,
    own: EntityId,
    started: bool,
    pending: VecDeque<(InputRecord, [f32; 3])>,
    correction: [f32; 3],
    errors: VecDeque<f32>,
    corrections: u64,
    last_reconciled: u32,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("started", &self.started)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Inputs kept for replay; beyond this the oldest are dropped (the server is far behind
/// or gone, and the next reconciliation snaps).
const MAX_PENDING: usize = 256;

impl Reconciler {
    /// Reconciliation of `own`'s prediction in a mode of these fields.
    pub fn new(
        prediction: Box<dyn outpost_sim::Prediction>,
        fields: Arc<Fields>,
        own: EntityId,
    ) -> Self {
        Self {
            prediction,
            fields,
            own,
            started: false,
            pending: VecDeque::new(),
            correction: [0.0; 3],
            errors: VecDeque::new(),
            corrections: 0,
            last_reconciled: 0,
        }
    }

    /// Applies an input the player just sent.
    pub fn apply(&mut self, input: &InputRecord) {
        let position = if self.started {
            self.prediction.apply(input);
            self.prediction.position()
        } else {
            [f32::NAN; 3]
        };
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((input.clone(), position));
        self.correction = self.correction.map(|c| c * SMOOTHING);
    }

    /// Reconciles with the server's state after input `ack`: measures the prediction
    /// error, rewinds to the server's state and replays the inputs it has not applied.
    pub fn reconcile(&mut self, world: &WorldState) {
        if world.ack_input_seq <= self.last_reconciled && self.started {
            return;
        }
        let Some(server) = world
            .records
            .find(self.own)
            .and_then(|r| self.fields.layout().position_value(&r))
        else {
            return;
        };
        let before = self.prediction.position();
        if !self
            .prediction
            .reset(&self.fields, &world.records, self.own)
        {
            return;
        }
        if let Some((_, predicted)) = self
            .pending
            .iter()
            .find(|(i, _)| i.seq == world.ack_input_seq)
            && predicted[0].is_finite()
        {
            if self.errors.len() == ERROR_HISTORY {
                self.errors.pop_front();
            }
            self.errors.push_back(distance(*predicted, server));
        }
        while self
            .pending
            .front()
            .is_some_and(|(i, _)| i.seq <= world.ack_input_seq)
        {
            self.pending.pop_front();
        }
        for (input, predicted) in self.pending.iter_mut() {
            self.prediction.apply(input);
            *predicted = self.prediction.position();
        }
        let after = self.prediction.position();
        if self.started {
            let jump = [
                before[0] - after[0],
                before[1] - after[1],
                before[2] - after[2],
            ];
            if distance(before, after) > 1e-4 {
                self.corrections += 1;
                // Large jumps (a teleport) are not smoothed.
                if distance(before, after) < 2.0 {
                    for (c, j) in self.correction.iter_mut().zip(jump) {
                        *c += j;
                    }
                }
            }
        }
        self.started = true;
        self.last_reconciled = world.ack_input_seq;
    }

    /// The predicted entity, once the first server state arrived.
    pub fn current(&self) -> Option<PredictedSelf> {
        if !self.started {
            return None;
        }
        let predicted = self.prediction.position();
        Some(PredictedSelf {
            position: [0, 1, 2].map(|i| predicted[i] + self.correction[i]),
            predicted,
            velocity: self.prediction.velocity(),
            seq: self
                .pending
                .back()
                .map_or(self.last_reconciled, |(i, _)| i.seq),
        })
    }

    /// Prediction errors measured so far (metres), newest last.
    pub fn errors(&self) -> Vec<f32> {
        self.errors.iter().copied().collect()
    }

    /// Reconciliations that moved the prediction.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }
}

/// Ticks the `n`-th input (from 0) of a client sending `input_hz` inputs a second
/// stands for in a match of `tick_hz`: the whole ticks between it and the next, so the
/// inputs add up to the clock (60 Hz ticks, 40 inputs a second: 1, 2, 1, 2, …). Set it
/// as the input's `ticks`. Clamped to 1..=[`outpost_protocol::MAX_INPUT_TICKS`]; a
/// client sending faster than the tick rate cannot move faster than one sending at it.
pub fn input_ticks(tick_hz: u16, input_hz: u16, n: u64) -> u8 {
    let (tick_hz, input_hz) = (u64::from(tick_hz), u64::from(input_hz.max(1)));
    let due = |k: u64| k.saturating_mul(tick_hz) / input_hz;
    let ticks = due(n + 1) - due(n);
    ticks.clamp(1, u64::from(outpost_protocol::MAX_INPUT_TICKS)) as u8
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use outpost_arena::{self as arena, ArenaConfig};
    use outpost_protocol::replication::{self, Layout, View};
    use outpost_protocol::{EntityId, Snapshot};

    use super::{Decoder, SnapshotIssue, input_ticks};

    /// A prop at `x` along the arena's first axis (grid steps), untilted.
    fn view(x: u32) -> View {
        let mut view = View::new();
        view.push(
            EntityId(7),
            arena::PROP | arena::POSE,
            &[x, 9000, 9000, 3, 511, 511, 511],
        );
        view
    }

    fn snapshot(tick: u32, baseline_tick: u32, reference_gap: u8, body: Vec<u8>) -> Snapshot {
        Snapshot {
            tick,
            baseline_tick,
            reference_gap,
            body,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_reference_view_the_client_does_not_hold_is_refused() {
        let layout = Layout::new(&arena::schema(&ArenaConfig::default()));
        let mut decoder = Decoder::new(layout.clone());
        let empty = View::new();
        for (tick, x) in [(1, 1000), (2, 1010)] {
            let body = replication::encode(&layout, &empty, &view(x));
            assert!(decoder.decode(&snapshot(tick, 0, 0, body)).is_ok());
        }
        // Against tick 2 with the motion since tick 1: the prop at 1020 costs nothing
        // more than "as predicted".
        let (baseline, older) = (view(1010), view(1000));
        let reference = replication::Reference {
            view: &older,
            behind: 1,
            ahead: 1,
        };
        let body = replication::encode_predicted(&layout, &baseline, Some(reference), &view(1020));
        // A reference before anything received, and one in a keyframe.
        assert_eq!(
            decoder.decode(&snapshot(3, 2, 2, body.clone())).err(),
            Some(SnapshotIssue::NoBaseline)
        );
        assert_eq!(
            decoder.decode(&snapshot(3, 0, 1, body.clone())).err(),
            Some(SnapshotIssue::Malformed)
        );
        let world = decoder.decode(&snapshot(3, 2, 1, body)).expect("decodes");
        assert_eq!(*world.records, view(1020));
    }

    /// A full history hands its oldest view's buffers to the next snapshot's, but never
    /// the view that snapshot builds on: a delta against the oldest view held, and one
    /// with the oldest as its reference, decode; and every view decoded in reused buffers
    /// is the one sent.
    #[test]
    fn the_oldest_view_is_reused_only_when_nothing_builds_on_it() {
        let layout = Layout::new(&arena::schema(&ArenaConfig::default()));
        let mut decoder = Decoder::new(layout.clone());
        let empty = View::new();
        let history = super::VIEW_HISTORY as u32;
        for tick in 1..=history {
            let body = replication::encode(&layout, &empty, &view(1000 + tick));
            assert!(decoder.decode(&snapshot(tick, 0, 0, body)).is_ok());
        }
        // Against the oldest held (tick 1).
        let body = replication::encode(&layout, &view(1001), &view(2000));
        let world = decoder
            .decode(&snapshot(history + 1, 1, 0, body))
            .expect("the oldest view is still there to build on");
        assert_eq!(*world.records, view(2000));
        // Tick 2 is the oldest now: the reference of a delta against tick 3.
        let (baseline, older) = (view(1003), view(1002));
        let reference = replication::Reference {
            view: &older,
            behind: 1,
            ahead: history - 1,
        };
        let body = replication::encode_predicted(&layout, &baseline, Some(reference), &view(3000));
        let world = decoder
            .decode(&snapshot(history + 2, 3, 1, body))
            .expect("the oldest view is still there as the reference");
        assert_eq!(*world.records, view(3000));
        // Then deltas against the newest, each decoded in reused buffers.
        let mut previous = view(3000);
        for tick in history + 3..history + 80 {
            let body = replication::encode(&layout, &previous, &view(tick));
            let world = decoder.decode(&snapshot(tick, tick - 1, 0, body));
            assert_eq!(world.map(|w| (*w.records).clone()), Ok(view(tick)));
            previous = view(tick);
        }
    }

    /// The cheap position read draws every entity exactly where the full one shows it:
    /// between samples, before the first, held at rest, and extrapolated past the newest.
    #[test]
    fn an_interpolated_position_is_where_the_interpolated_entity_is_shown() {
        use std::sync::Arc;

        use outpost_protocol::replication::Fields;

        use super::{Timeline, WorldState};

        let fields = Arc::new(Fields::new(arena::schema(&ArenaConfig::default())));
        // The same samples twice: each read notes how far it extrapolated.
        let mut timeline = Timeline::new(Arc::clone(&fields));
        let mut full = Timeline::new(Arc::clone(&fields));
        // Entity 7 moves every snapshot (faster after tick 8); entity 9 stops at tick 6
        // and its value is carried over from then on.
        for tick in (2..=14u32).step_by(2) {
            let x = if tick <= 8 {
                1000 + tick * 10
            } else {
                1080 + tick * 40
            };
            let rest = tick.min(6);
            let mut records = View::new();
            records.push(
                EntityId(7),
                arena::PROP | arena::POSE,
                &[x, 9000, 9000, 3, 511, 511, 511],
            );
            records.push(
                EntityId(9),
                arena::PROP | arena::POSE,
                &[2000 + rest * 25, 9100, 8900, 3, 500, 520, 511],
            );
            let world = WorldState {
                tick,
                records: Arc::new(records),
                value_ticks: vec![tick, rest],
                ..WorldState::default()
            };
            timeline.push(&world, 60.0);
            full.push(&world, 60.0);
        }
        let mut checked = 0;
        for step in 0..=80 {
            let tick = f64::from(step) * 0.25;
            for id in [EntityId(7), EntityId(9), EntityId(11)] {
                let shown = full.at(id, tick, 60.0).and_then(|s| s.position());
                assert_eq!(
                    timeline.position_at(id, tick, 60.0),
                    shown,
                    "{id:?} at {tick}"
                );
                checked += usize::from(shown.is_some());
            }
        }
        assert_eq!(checked, 2 * 81);
        assert!(timeline.max_extrapolated_s() > 0.0);
        assert_eq!(timeline.max_extrapolated_s(), full.max_extrapolated_s());
    }

    #[test]
    fn input_ticks_add_up_to_the_clock() {
        let sum = |tick_hz, input_hz| {
            (0..u64::from(input_hz))
                .map(|n| u32::from(input_ticks(tick_hz, input_hz, n)))
                .sum::<u32>()
        };
        // A second of inputs stands for a second of ticks.
        assert_eq!(sum(60, 60), 60);
        assert_eq!(sum(60, 30), 60);
        assert_eq!(sum(60, 40), 60);
        assert_eq!(sum(240, 30), 240);
        assert_eq!(input_ticks(60, 30, 7), 2);
        assert_eq!(
            (0..4).map(|n| input_ticks(60, 40, n)).collect::<Vec<_>>(),
            [1, 2, 1, 2]
        );
        // Faster than the clock claims a tick each (the edge drops the excess); slower
        // than an eighth of it is capped.
        assert_eq!(input_ticks(60, 120, 3), 1);
        assert_eq!(input_ticks(60, 5, 0), 8);
    }
}
