//! What each client is sent, tick by tick: interest, priority, budget, delta.
//!
//! For every client the edge keeps the views it sent, by tick. A new snapshot:
//!
//! 1. takes as baseline the newest view the client acknowledged (or nothing: a keyframe),
//!    and as reference the acknowledged view before it: changed positions and rotations
//!    are coded against their motion from the reference to the baseline, carried on to
//!    the new tick;
//! 2. finds what is relevant to the client: its own character always, everything else
//!    within the area of interest around it (a spatial grid makes that cheap);
//! 3. costs nothing for entities the client already has exactly; lists removals for
//!    entities that left its interest;
//! 4. ranks the changed and new entities by a priority accumulator — importance
//!    (kind, nearness) added every snapshot until the entity is sent — and takes them in
//!    that order while they fit the byte budget (a fair share of the client's bandwidth,
//!    never more than one datagram);
//! 5. encodes the new view against the baseline ([`outpost_protocol::replication`]: the
//!    mode's components, delta-coded per component and field).
//!
//! A client that cannot decode what it is sent (its baseline lost or spoiled) asks for a
//! keyframe by acking 0, and acks that stay behind the baseline in use bring one as well,
//! so no client is left with deltas it can never decode.
//!
//! An entity that did not fit keeps, in the new view, the value the client already has,
//! and its priority keeps growing, so it goes next time. (A value sent in a snapshot
//! not yet acknowledged may thus be absent from the next view; the client knows which
//! snapshot each value came from and never shows an older one over a newer one — see
//! `outpost_client::netcode`.) Pure: no clock, no I/O.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use outpost_protocol::replication::{self, Layout, View};
use outpost_protocol::{EntityId, Snapshot};

/// Views remembered per client: a second at 60 snapshots per second.
pub const SENT_HISTORY: usize = 64;
/// Acks in a row older than the baseline in use after which the edge sends a keyframe:
/// an honest client's acks only go back when input datagrams are reordered, never eight
/// times running.
pub const STALE_ACKS_FOR_KEYFRAME: u32 = 8;
/// Bits reserved for an entry's id gap while budgeting (the exact gap is known only
/// once the selection is sorted).
const GAP_ESTIMATE_BITS: u32 = 9;
/// How full of its budget the selection aims a body, by the learned ratio: a little
/// under, so that the ratio's error seldom makes the edge encode a body twice.
const FILL: f64 = 0.94;

/// Area-of-interest settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interest {
    /// Entities farther than this from a client's character are not sent, metres.
    pub radius: f32,
    /// Side of a grid cell, metres.
    pub cell: f32,
}

impl Default for Interest {
    fn default() -> Self {
        Self {
            radius: 48.0,
            cell: 16.0,
        }
    }
}

/// A uniform grid over the entities of one tick, for area-of-interest queries.
#[derive(Debug, Default)]
pub struct InterestGrid {
    cell: f32,
    cells: HashMap<(i32, i32), Vec<usize>>,
    /// Entities with no position (not finite): in every client's interest.
    everywhere: Vec<usize>,
    /// Entities bucketed.
    len: usize,
    /// The lowest and highest cell keys holding an entity: a walk never looks beyond them
    /// (a radius far larger than the world would otherwise look up cells by the billion).
    keys: Option<[(i32, i32); 2]>,
}

/// Up to this many entities, a query tests every entity rather than walking the cells:
/// a test is a few instructions and leaves the answer in order, where the walk looks up
/// each cell in reach and sorts what it found (measured: `cargo bench --bench edge --
/// interest`).
const SCAN_UP_TO: usize = 2048;

impl InterestGrid {
    /// Buckets entities by cell, by their positions.
    pub fn build(positions: &[[f32; 3]], cell: f32) -> Self {
        let mut grid = Self {
            cell,
            ..Self::default()
        };
        grid.rebuild(positions, cell);
        grid
    }

    /// Buckets entities again, reusing allocations. An entity whose position is not
    /// finite has none (a mode's entity without a position component: a team's score, a
    /// match timer) and is in every client's interest.
    pub fn rebuild(&mut self, positions: &[[f32; 3]], cell: f32) {
        self.cell = cell.max(1.0);
        for bucket in self.cells.values_mut() {
            bucket.clear();
        }
        self.everywhere.clear();
        self.len = positions.len();
        self.keys = None;
        if self.len <= SCAN_UP_TO {
            return; // queries scan
        }
        for (index, &position) in positions.iter().enumerate() {
            if !position.iter().all(|c| c.is_finite()) {
                self.everywhere.push(index);
                continue;
            }
            let (x, z) = self.key(position);
            let [low, high] = self.keys.get_or_insert([(x, z), (x, z)]);
            *low = (low.0.min(x), low.1.min(z));
            *high = (high.0.max(x), high.1.max(z));
            self.cells.entry((x, z)).or_default().push(index);
        }
    }

    fn key(&self, p: [f32; 3]) -> (i32, i32) {
        (
            (p[0] / self.cell).floor() as i32,
            (p[2] / self.cell).floor() as i32,
        )
    }

    /// Indices of entities within `radius` (horizontally) of `center`, in order.
    pub fn query(
        &self,
        positions: &[[f32; 3]],
        center: [f32; 3],
        radius: f32,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let r2 = radius * radius;
        let near = |p: [f32; 3]| {
            let (dx, dz) = (p[0] - center[0], p[2] - center[2]);
            dx * dx + dz * dz <= r2
        };
        if self.len <= SCAN_UP_TO || self.len != positions.len() {
            // Near first: most entities are, and a position that is not finite (none)
            // is near nothing.
            out.extend(
                positions
                    .iter()
                    .enumerate()
                    .filter(|&(_, &p)| near(p) || !p.iter().all(|c| c.is_finite()))
                    .map(|(i, _)| i),
            );
            return;
        }
        out.extend_from_slice(&self.everywhere);
        let Some([low, high]) = self.keys else {
            return;
        };
        let reach = (radius / self.cell).ceil() as i32;
        let (cx, cz) = self.key(center);
        for x in cx.saturating_sub(reach).max(low.0)..=cx.saturating_add(reach).min(high.0) {
            for z in cz.saturating_sub(reach).max(low.1)..=cz.saturating_add(reach).min(high.1) {
                let Some(bucket) = self.cells.get(&(x, z)) else {
                    continue;
                };
                out.extend(bucket.iter().copied().filter(|&i| near(positions[i])));
            }
        }
        out.sort_unstable();
    }
}

/// One tick's world, shared by every client's snapshot.
pub struct Frame<'a> {
    /// The tick.
    pub tick: u32,
    /// How the mode's components are laid out and coded.
    pub layout: &'a Layout,
    /// The replicated entities as the mode's records, sorted by id, with every
    /// component (those only an entity's owner receives are kept from the others here):
    /// written once per tick, shared by every client's snapshot.
    pub records: &'a View,
    /// Their positions in metres, index for index (for interest and priority); not
    /// finite for an entity without a position, which every client has in view.
    pub positions: &'a [[f32; 3]],
    /// The same entities in an interest grid.
    pub grid: &'a InterestGrid,
    /// Interest settings.
    pub interest: Interest,
}

/// A snapshot body ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Tick of the baseline it is a delta against (0: keyframe).
    pub baseline_tick: u32,
    /// Ticks from the reference view back to the baseline (0: none); see
    /// [`outpost_protocol::Snapshot::reference_gap`].
    pub reference_gap: u8,
    /// The encoded body.
    pub body: Vec<u8>,
    /// Entities in the client's view after it.
    pub view_len: usize,
    /// Changed or new entities that did not fit this time.
    pub deferred: usize,
}

impl Built {
    /// The snapshot datagram carrying this body at `tick`.
    pub fn into_snapshot(self, tick: u32, ack_input_seq: u32, ticks_left: u32) -> Snapshot {
        Snapshot {
            tick,
            baseline_tick: self.baseline_tick,
            reference_gap: self.reference_gap,
            ack_input_seq,
            ticks_left,
            body: self.body,
        }
    }
}

/// A view sent to a client: its tick, whether the client said it decoded it, and
/// whether it was sent whole (no entity deferred, so every value in it is the entity's
/// state at that tick, the only kind a motion can be measured between).
#[derive(Debug)]
struct Sent {
    tick: u32,
    view: View,
    acked: bool,
    whole: bool,
}

/// One client's snapshot state.
#[derive(Debug)]
pub struct ClientSnapshots {
    own: EntityId,
    sent: VecDeque<Sent>,
    acked: u32,
    /// Acks in a row older than `acked`: the client says it holds less than the edge
    /// builds on.
    behind: u32,
    priority: HashMap<EntityId, f32>,
    /// The relevant entities as this client is to see them (the build's view buffer:
    /// sent whole, it becomes the history's, and `spare` takes its place).
    targets: View,
    /// The oldest view's buffers, taken back when it leaves the history.
    spare: View,
    /// Bits the coder spent per bit estimated ([`replication::entry_bits`] prices an
    /// entry as fixed-width codes; the range coder spends less, by how much depends on
    /// the scene), measured on the previous body: without a reference, and with one
    /// (predicted motion costs less than the estimate's delta from the baseline).
    coded_per_estimated: [f32; 2],
}

impl ClientSnapshots {
    /// State for a client controlling `own`.
    pub fn new(own: EntityId) -> Self {
        Self {
            own,
            sent: VecDeque::with_capacity(SENT_HISTORY),
            acked: 0,
            behind: 0,
            priority: HashMap::default(),
            targets: View::new(),
            spare: View::new(),
            coded_per_estimated: [1.0; 2],
        }
    }

    /// Records an acknowledgement: the client has the snapshot of `tick`. Acks for ticks
    /// never sent are ignored. The stream heals itself: an ack of 0 is the client asking
    /// for a keyframe (it holds no usable baseline), and acks that stay older than the
    /// baseline in use ([`STALE_ACKS_FOR_KEYFRAME`] in a row: the client cannot decode
    /// what it is sent) fall back to one as well.
    pub fn ack(&mut self, tick: u32) {
        if tick == 0 {
            self.forget_acks();
        } else if tick > self.acked {
            if let Some(sent) = sent_at(&self.sent, tick).and_then(|i| self.sent.get_mut(i)) {
                sent.acked = true;
                self.acked = tick;
                self.behind = 0;
            }
        } else if tick < self.acked {
            self.behind += 1;
            if self.behind >= STALE_ACKS_FOR_KEYFRAME {
                self.forget_acks();
            }
        } else {
            self.behind = 0;
        }
    }

    /// The client holds nothing the edge can build on: the next snapshot is a keyframe,
    /// and no view sent before it serves as a reference.
    fn forget_acks(&mut self) {
        self.acked = 0;
        self.behind = 0;
        for sent in &mut self.sent {
            sent.acked = false;
        }
    }

    /// The newest acknowledged tick.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// Builds the next snapshot body within `budget` bytes of body.
    pub fn build(&mut self, frame: &Frame<'_>, budget: usize) -> Built {
        let mut buffers = BUILD_BUFFERS.take();
        let built = self.build_with(frame, budget, &mut buffers);
        BUILD_BUFFERS.set(buffers);
        built
    }

    fn build_with(
        &mut self,
        frame: &Frame<'_>,
        budget: usize,
        buffers: &mut BuildBuffers,
    ) -> Built {
        let Self {
            own,
            sent,
            acked,
            behind: _,
            priority,
            targets,
            spare,
            coded_per_estimated,
        } = self;
        let BuildBuffers {
            scratch,
            target_of,
            stripped,
            pending,
            send,
            chosen,
        } = buffers;
        let own = *own;
        let layout = frame.layout;
        let (owner_mask, others_mask) = (layout.owner_mask(), layout.others_mask());
        let empty = View::new();
        let base = sent_at(sent, *acked).and_then(|i| sent.get(i));
        let (baseline_tick, baseline) = base.map_or((0, &empty), |s| (s.tick, &s.view));
        let reference = base.and_then(|base| reference_for(sent, base, frame.tick));
        let own_index = frame.records.find_index(own);
        let center = own_index
            .and_then(|i| frame.positions.get(i).copied())
            .filter(|p| p.iter().all(|c| c.is_finite()))
            .unwrap_or([0.0; 3]);
        frame
            .grid
            .query(frame.positions, center, frame.interest.radius, scratch);
        if let Some(i) = own_index
            && scratch.binary_search(&i).is_err()
        {
            scratch.push(i);
            scratch.sort_unstable();
        }

        // Relevant entities as this client sees them, each with its baseline entry.
        targets.clear();
        target_of.clear();
        let mut b = 0usize;
        // Records taken as they are and not yet copied: a run of the frame's is copied at
        // once. (The frame's records are in id order, and so are the relevant indices:
        // every one is taken, and targets and target_of stay index for index.)
        let mut run = 0..0;
        for &i in scratch.iter() {
            let Some(record) = frame.records.get(i) else {
                continue;
            };
            // Owner-only components go to the owner alone; others-only to all but it.
            let hidden = if record.id == own {
                others_mask
            } else {
                owner_mask
            };
            if record.mask & hidden != 0 {
                targets.extend_from(frame.records, run.clone());
                run = i + 1..i + 1;
                let mask = layout.without_components(&record, hidden, stripped);
                targets.push(record.id, mask, stripped);
            } else {
                if run.end != i {
                    targets.extend_from(frame.records, run.clone());
                    run = i..i;
                }
                run.end = i + 1;
            }
            while baseline.id(b).is_some_and(|id| id < record.id) {
                b += 1;
            }
            let base = (baseline.id(b) == Some(record.id)).then_some(b);
            target_of.push((i, base));
        }
        targets.extend_from(frame.records, run);
        if targets.len() != target_of.len() {
            // Records out of id order (never a frame's): nothing is sent rather than
            // entities under each other's ids.
            targets.clear();
            target_of.clear();
        }
        let removed = baseline.len() - target_of.iter().filter(|(_, b)| b.is_some()).count();

        // What is unchanged, and what competes for the budget.
        pending.clear(); // (priority, cost, target index)
        send.clear();
        let mut bounds = 0u32;
        for (t, &(i, base)) in target_of.iter().enumerate() {
            let Some(target) = targets.get(t) else {
                send.push(false);
                continue;
            };
            let base = base.and_then(|b| baseline.get(b));
            if base == Some(target) {
                if !priority.is_empty() {
                    priority.remove(&target.id);
                }
                send.push(true);
                continue;
            }
            send.push(false);
            let importance = if target.id == own {
                f32::INFINITY
            } else {
                let p = frame
                    .positions
                    .get(i)
                    .copied()
                    .filter(|p| p.iter().all(|c| c.is_finite()))
                    .unwrap_or(center);
                let (dx, dz) = (p[0] - center[0], p[2] - center[2]);
                let near = 1.0 + 16.0 / (4.0 + (dx * dx + dz * dz).sqrt());
                let weight = 1.0 + f32::from(layout.priority(target.mask));
                // A new entity matters more than a refresh of one already shown.
                let fresh = if base.is_none() { 2.0 } else { 1.0 };
                weight * near * fresh
            };
            // Its accumulated priority; kept in the map only if it is deferred (below),
            // since one that is sent starts over.
            let held = if priority.is_empty() {
                None
            } else {
                priority.get(&target.id).copied()
            };
            let acc = held.unwrap_or(0.0) + importance;
            let bound = layout.entry_bits_bound(target.mask) + GAP_ESTIMATE_BITS;
            bounds = bounds.saturating_add(bound);
            pending.push((acc, bound, t));
        }

        let fixed_bits = replication::header_bits(removed as u32, pending.len() as u32)
            + removed as u32 * GAP_ESTIMATE_BITS;
        // The budget in estimated bits: what the coder is expected to turn into it.
        let learned = usize::from(reference.is_some());
        let ratio = coded_per_estimated[learned];
        let estimated_room =
            ((budget * 8) as f64 * FILL / f64::from(ratio)).min(f64::from(u32::MAX));
        let mut room = (estimated_room as u32).saturating_sub(fixed_bits);
        // When every entry fits at its bound (the usual case), the budget cannot cut any:
        // they are all chosen unpriced. Otherwise each is priced, and they compete by
        // priority.
        let priced = bounds > room;
        if priced {
            for (_, cost, t) in pending.iter_mut() {
                let target = targets.get(*t);
                let base = target_of[*t].1.and_then(|b| baseline.get(b));
                *cost = target.map_or(0, |target| {
                    replication::entry_bits(layout, base.as_ref(), &target, false)
                }) + GAP_ESTIMATE_BITS;
            }
        }
        // Most important first. Unpriced, every entry is chosen, and the order matters
        // only if the body comes out over budget after all (sorted then, below).
        let by_priority = |a: &(f32, u32, usize), b: &(f32, u32, usize)| b.0.total_cmp(&a.0);
        let mut sorted = priced;
        if sorted {
            pending.sort_by(by_priority);
        }
        let mut estimated = fixed_bits;
        chosen.clear();
        for &(_, cost, t) in pending.iter() {
            if cost <= room {
                room -= cost;
                estimated += cost;
                chosen.push((t, cost));
                send[t] = true;
            }
        }
        let mut view = std::mem::take(spare);
        loop {
            // Everything sent (the usual case under the budget): the view is the targets,
            // taken whole rather than copied entity by entity (and given back for a retry).
            let whole = targets.len() == target_of.len() && send.iter().all(|&s| s);
            if whole {
                std::mem::swap(&mut view, targets);
            } else {
                // The client keeps what it has of what is not sent this time.
                view.clear();
                for (t, &(_, base)) in target_of.iter().enumerate() {
                    let record = if send[t] {
                        targets.get(t)
                    } else {
                        base.and_then(|b| baseline.get(b))
                    };
                    if let Some(record) = record {
                        view.push_record(record);
                    }
                }
            }
            let body =
                replication::encode_predicted(layout, baseline, reference.map(|(_, r)| r), &view);
            // Learned on bodies priced and large enough to say something.
            if priced && estimated >= 512 {
                coded_per_estimated[learned] =
                    ((body.len() * 8) as f32 / estimated as f32).clamp(0.05, 2.0);
            }
            if body.len() <= budget || chosen.is_empty() {
                // What was sent starts over; what was deferred keeps its accumulated
                // priority. Taken whole, the targets are in `view` now.
                let sent_from = if whole { &view } else { &*targets };
                for &(acc, _, t) in pending.iter() {
                    let Some(target) = sent_from.get(t) else {
                        continue;
                    };
                    if !send[t] {
                        priority.insert(target.id, acc);
                    } else if !priority.is_empty() {
                        priority.remove(&target.id);
                    }
                }
                let built = Built {
                    baseline_tick,
                    reference_gap: reference.map_or(0, |(gap, _)| gap),
                    body,
                    view_len: view.len(),
                    deferred: pending.len() - chosen.len(),
                };
                if sent.len() == SENT_HISTORY
                    && let Some(oldest) = sent.pop_front()
                {
                    *spare = oldest.view;
                }
                debug_assert!(sent.back().is_none_or(|s| s.tick < frame.tick));
                sent.push_back(Sent {
                    tick: frame.tick,
                    view,
                    acked: false,
                    whole: built.deferred == 0,
                });
                // Baselines older than the oldest remembered view can no longer be used
                // (an acknowledged tick is one of the history's until it leaves it).
                if sent.front().is_none_or(|oldest| oldest.tick > *acked) {
                    *acked = 0;
                }
                return built;
            }
            if whole {
                std::mem::swap(&mut view, targets);
            }
            if !sorted {
                // Unpriced, all were chosen: in order of importance now.
                pending.sort_by(by_priority);
                chosen.clear();
                chosen.extend(pending.iter().map(|&(_, cost, t)| (t, cost)));
                sorted = true;
            }
            // Over budget: drop the least important choices, about as many estimated bits
            // as the excess comes to (and at least one), and retry.
            // Each choice is counted at what this body coded per estimated bit: the
            // ratio learned on earlier bodies can be far off for this one (a scene that
            // coded to little, then changes all at once), and by it the edge dropped
            // many times the excess, down to the client's own character.
            let excess = (body.len() - budget) * 8;
            let coded_now = (body.len() * 8) as f32 / estimated.max(1) as f32;
            let mut dropped = 0usize;
            while let Some((t, cost)) = chosen.pop() {
                send[t] = false;
                estimated = estimated.saturating_sub(cost);
                dropped += (cost as f32 * coded_now) as usize;
                if dropped >= excess {
                    break;
                }
            }
        }
    }
}

/// A build's work buffers: the relevant entities' indices in the frame, each target's
/// index in the frame and in the baseline, a record's slots stripped of what the client
/// may not see, the entries competing for the budget (priority, cost, target), per
/// target whether it is sent (unchanged from the baseline, or chosen), and the choices.
/// The thread's own, kept from its last build: a loaded edge's worker builds for
/// hundreds of clients in turn, and buffers of each client's own were cold at every
/// build.
#[derive(Debug, Default)]
struct BuildBuffers {
    scratch: Vec<usize>,
    target_of: Vec<(usize, Option<usize>)>,
    stripped: Vec<u32>,
    pending: Vec<(f32, u32, usize)>,
    send: Vec<bool>,
    chosen: Vec<(usize, u32)>,
}

thread_local! {
    static BUILD_BUFFERS: std::cell::Cell<BuildBuffers> = const {
        std::cell::Cell::new(BuildBuffers {
            scratch: Vec::new(),
            target_of: Vec::new(),
            stripped: Vec::new(),
            pending: Vec::new(),
            send: Vec::new(),
            chosen: Vec::new(),
        })
    };
}

/// Where the view sent at `tick` is in the history. The history is in tick order (one
/// build per snapshot tick, pushed at the back), and its ticks are usually a stride apart
/// (the match's ticks per snapshot): first where the stride between the two newest puts
/// it, then a binary search. Under load a client's history is cold; the guess reads the
/// two newest entries and the one it names, where the search read six lines (and a scan
/// from the oldest nearly all 64).
fn sent_at(sent: &VecDeque<Sent>, tick: u32) -> Option<usize> {
    let newest = sent.len().checked_sub(1)?;
    let back = sent.get(newest)?.tick.checked_sub(tick)?;
    let guess = newest
        .checked_sub(1)
        .and_then(|before| sent.get(before))
        .and_then(|before| {
            let stride = sent.get(newest)?.tick - before.tick;
            (stride > 0 && back % stride == 0).then_some(())?;
            newest.checked_sub(usize::try_from(back / stride).ok()?)
        });
    match guess {
        Some(i) if sent.get(i).is_some_and(|s| s.tick == tick) => Some(i),
        _ => sent.binary_search_by_key(&tick, |s| s.tick).ok(),
    }
}

/// The reference for a snapshot of `tick` against `baseline`: the newest view sent whole
/// that the client acknowledged before the baseline (within a gap's reach), with its gap.
/// None for a baseline that deferred entities (its values for them are older than its
/// tick: a motion measured to them would be wrong). Measured on the cube scene: the motion over the last step predicts
/// the next ones better than over a longer span ending at the baseline, even when the
/// baseline is a round trip old.
fn reference_for<'s>(
    sent: &'s VecDeque<Sent>,
    baseline: &Sent,
    tick: u32,
) -> Option<(u8, replication::Reference<'s>)> {
    let baseline_tick = baseline.tick;
    if !baseline.whole || tick <= baseline_tick {
        return None;
    }
    let s = sent
        .iter()
        .rev()
        .find(|s| s.acked && s.whole && s.tick < baseline_tick)?;
    let gap = u8::try_from(baseline_tick - s.tick).ok()?;
    Some((
        gap,
        replication::Reference {
            view: &s.view,
            behind: u32::from(gap),
            ahead: tick - baseline_tick,
        },
    ))
}

/// The body budget for a client: its share of `bandwidth_bps` at `snapshot_hz`, and never
/// more than fits in a datagram of `max_datagram` bytes.
pub fn body_budget(bandwidth_bps: u32, snapshot_hz: u16, max_datagram: usize) -> usize {
    let share = (bandwidth_bps / 8 / u32::from(snapshot_hz.max(1))) as usize;
    share.min(max_datagram).saturating_sub(Snapshot::HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use outpost_arena::{self as arena, ArenaConfig};
    use outpost_protocol::schema::Value;

    use super::*;

    /// A scene of the arena's schema (the snapshot builder knows only its layout): 400
    /// props on a grid and two characters.
    struct Thing {
        id: EntityId,
        character: bool,
        position: [f32; 3],
    }

    fn entity(id: u32, character: bool, x: f32, z: f32) -> Thing {
        Thing {
            id: EntityId(id),
            character,
            position: [x, 0.5, z],
        }
    }

    fn world(offset: f32) -> Vec<Thing> {
        let mut all: Vec<Thing> = (1..=400)
            .map(|i| {
                entity(
                    i,
                    false,
                    (i % 20) as f32 * 3.0 - 30.0 + offset,
                    (i / 20) as f32 * 3.0 - 30.0,
                )
            })
            .collect();
        all.push(entity(500, true, 0.0, 0.0));
        all.push(entity(501, true, 5.0, 5.0));
        all
    }

    /// The scene as records: a tag, the position and an unturned rotation each.
    fn quantized(things: &[Thing]) -> View {
        let schema = arena::schema(&ArenaConfig::default());
        let field = |c: usize| &schema.components[c].fields[0].kind;
        let mut view = View::new();
        let mut slots = [0u32; 7];
        for thing in things {
            field(2).quantize(&Value::Vec3(thing.position), &mut slots[..3]);
            field(3).quantize(&Value::Quat([0.0, 0.0, 0.0, 1.0]), &mut slots[3..]);
            let tag = if thing.character {
                arena::CHARACTER
            } else {
                arena::PROP
            };
            view.push(thing.id, tag | arena::POSE, &slots);
        }
        view
    }

    fn positions_of(things: &[Thing]) -> Vec<[f32; 3]> {
        things.iter().map(|e| e.position).collect()
    }

    fn layout() -> Layout {
        Layout::new(&arena::schema(&ArenaConfig::default()))
    }

    fn frame<'a>(
        tick: u32,
        layout: &'a Layout,
        positions: &'a [[f32; 3]],
        records: &'a View,
        grid: &'a InterestGrid,
    ) -> Frame<'a> {
        Frame {
            tick,
            layout,
            positions,
            records,
            grid,
            interest: Interest {
                radius: 20.0,
                cell: 8.0,
            },
        }
    }

    #[test]
    fn interest_keeps_what_is_near() {
        let entities = world(0.0);
        let positions = positions_of(&entities);
        let grid = InterestGrid::build(&positions, 8.0);
        let mut near = Vec::new();
        grid.query(&positions, [0.0, 0.0, 0.0], 10.0, &mut near);
        assert!(!near.is_empty());
        assert!(
            near.iter()
                .all(|&i| entities[i].position[0].hypot(entities[i].position[2]) <= 10.0)
        );
        let brute = entities
            .iter()
            .filter(|e| e.position[0].hypot(e.position[2]) <= 10.0)
            .count();
        assert_eq!(near.len(), brute);
    }

    /// Around centres near, on and far from the scene, with radii that take all of it,
    /// part of it or none of it, and with an entity that has no position: the query is the
    /// brute-force set, in order, for a scene small enough to scan and for one large
    /// enough to walk the grid's cells.
    #[test]
    fn interest_is_the_brute_force_set_scanned_or_walked() {
        for n in [400u32, SCAN_UP_TO as u32 + 500] {
            let side = f64::from(n).sqrt().ceil() as u32;
            let mut entities: Vec<Thing> = (1..=n)
                .map(|i| {
                    let (x, z) = ((i % side) as f32, (i / side) as f32);
                    entity(i, false, x * 1.7 - 30.0, z * 1.3 - 30.0)
                })
                .collect();
            entities.push(entity(n + 1, false, f32::NAN, 0.0));
            let positions = positions_of(&entities);
            let grid = InterestGrid::build(&positions, 8.0);
            let mut near = Vec::new();
            for center in [[0.0, 0.0, 0.0], [-30.0, 3.0, 27.0], [200.0, 0.0, -90.0]] {
                for radius in [0.0, 3.0, 10.0, 42.4, 80.0, 1e6] {
                    grid.query(&positions, center, radius, &mut near);
                    let brute: Vec<usize> = (0..positions.len())
                        .filter(|&i| {
                            let p = positions[i];
                            let (dx, dz) = (p[0] - center[0], p[2] - center[2]);
                            !p.iter().all(|c| c.is_finite()) || dx * dx + dz * dz <= radius * radius
                        })
                        .collect();
                    assert_eq!(
                        near, brute,
                        "{n} entities, centre {center:?}, radius {radius}"
                    );
                }
            }
        }
    }

    #[test]
    fn budgets_hold_and_deferred_entities_catch_up() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        let mut decoded = View::new();
        // Views decoded, by tick from 1: the references the edge may name.
        let mut held: Vec<View> = Vec::new();
        let mut last_tick = 0;
        for tick in 1..=40u32 {
            // Everything moves every tick.
            let entities = world(tick as f32 * 0.05);
            let positions = positions_of(&entities);
            let grid = InterestGrid::build(&positions, 8.0);
            let built = client.build(
                &frame(tick, &layout, &positions, &quantized(&entities), &grid),
                200,
            );
            assert!(
                built.body.len() <= 200,
                "tick {tick}: {} bytes",
                built.body.len()
            );
            let base = if built.baseline_tick == 0 {
                View::new()
            } else {
                assert_eq!(built.baseline_tick, last_tick);
                decoded.clone()
            };
            let reference = (built.reference_gap > 0).then(|| {
                let at = built.baseline_tick - u32::from(built.reference_gap);
                replication::Reference {
                    view: &held[at as usize - 1],
                    behind: u32::from(built.reference_gap),
                    ahead: tick - built.baseline_tick,
                }
            });
            decoded = replication::decode_predicted(&layout, &base, reference, &built.body)
                .expect("decodes");
            held.push(decoded.clone());
            assert!(
                decoded.iter().any(|e| e.id == EntityId(500)),
                "own character always in view"
            );
            client.ack(tick);
            last_tick = tick;
        }
        // With everything moving and 200 bytes, not all fits each time, but rotation means
        // every relevant entity was refreshed recently: none is more than 1.5 m stale.
        let entities = world(40.0 * 0.05);
        for e in decoded.iter() {
            let truth = entities.iter().find(|t| t.id == e.id).expect("exists");
            let shown = layout.position_value(&e).expect("a position");
            assert!(
                (shown[0] - truth.position[0]).abs() < 1.5,
                "entity {:?} stale",
                e.id
            );
        }
    }

    /// Regression: a body the budget was expected to hold unpriced (a ratio learned on
    /// bodies that coded far below their estimate) came out over it, and the retry,
    /// counting each dropped entity at that stale ratio, dropped everything down to the
    /// client's own character. The least important go first, about the excess of them,
    /// and the retry fits the budget.
    #[test]
    fn an_unpriced_body_over_budget_keeps_the_own_character() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        client.coded_per_estimated = [0.05; 2];
        let entities = world(0.0);
        let positions = positions_of(&entities);
        let grid = InterestGrid::build(&positions, 8.0);
        let records = quantized(&entities);
        let built = client.build(&frame(1, &layout, &positions, &records, &grid), 120);
        assert!(built.body.len() <= 120, "{} bytes", built.body.len());
        assert!(built.deferred > 0, "the budget cut some");
        let decoded = replication::decode(&layout, &View::new(), &built.body).expect("decodes");
        assert!(decoded.find(EntityId(500)).is_some(), "own character sent");
        // What was sent is nearer the character than what was deferred (importance
        // falls with distance; every prop weighs the same).
        let distance = |id: EntityId| {
            let p = entities
                .iter()
                .find(|t| t.id == id)
                .expect("exists")
                .position;
            (p[0] * p[0] + p[2] * p[2]).sqrt()
        };
        let farthest_sent = decoded
            .iter()
            .filter(|r| r.id != EntityId(500) && r.id != EntityId(501))
            .map(|r| distance(r.id))
            .fold(0.0f32, f32::max);
        let nearest_deferred = client
            .priority
            .keys()
            .filter(|&&id| id != EntityId(501))
            .map(|&id| distance(id))
            .fold(f32::INFINITY, f32::min);
        assert!(
            farthest_sent <= nearest_deferred,
            "sent up to {farthest_sent} m, deferred from {nearest_deferred} m"
        );
    }

    /// Regression: a snapshot that sent everything took the ids of its chosen entities
    /// from a stale buffer when it started their priorities over, so an entity sent in
    /// every snapshot kept piling up priority, and once the budget bit it went before a
    /// nearer one that mattered more.
    #[test]
    fn an_entity_sent_whole_starts_its_priority_over() {
        let layout = layout();
        // Own character at the origin; a far prop (1) that moves every tick and a near one
        // (2) that stands still, until both move at tick 11.
        let scene = |tick: u32| {
            let far_x = 12.0 + tick as f32 * 0.3;
            let near_x = if tick > 10 { 3.0 + 0.5 } else { 3.0 };
            vec![
                entity(1, false, far_x, 0.0),
                entity(2, false, near_x, 0.0),
                entity(500, true, 0.0, 0.0),
            ]
        };
        let run = |budget: usize| {
            let mut client = ClientSnapshots::new(EntityId(500));
            for tick in 1..=11u32 {
                let entities = scene(tick);
                let positions = positions_of(&entities);
                let grid = InterestGrid::build(&positions, 8.0);
                let budget = if tick == 11 { budget } else { 100_000 };
                let built = client.build(
                    &frame(tick, &layout, &positions, &quantized(&entities), &grid),
                    budget,
                );
                client.ack(tick);
                if tick == 11 {
                    let view = &client.sent.back().expect("sent").view;
                    let sent_now =
                        |id| view.find(EntityId(id)) == quantized(&entities).find(EntityId(id));
                    return (built.deferred, sent_now(1), sent_now(2));
                }
            }
            unreachable!()
        };
        // The smallest budget that takes one of the two: the nearer one.
        let (deferred, far, near) = (1..400)
            .map(run)
            .find(|(deferred, ..)| *deferred == 1)
            .expect("some budget takes one of two");
        assert_eq!((deferred, far, near), (1, false, true));
    }

    /// Decodes a built body as the client does: against the baseline and, when one is
    /// named, the reference among the views decoded so far (`held`, by tick from 1).
    fn decode_built(layout: &Layout, held: &[View], tick: u32, built: &Built) -> View {
        let view_at = |t: u32| held[t as usize - 1].clone();
        let baseline = if built.baseline_tick == 0 {
            View::new()
        } else {
            view_at(built.baseline_tick)
        };
        let reference_view = (built.reference_gap > 0)
            .then(|| view_at(built.baseline_tick - u32::from(built.reference_gap)));
        let reference = reference_view.as_ref().map(|view| replication::Reference {
            view,
            behind: u32::from(built.reference_gap),
            ahead: tick - built.baseline_tick,
        });
        replication::decode_predicted(layout, &baseline, reference, &built.body).expect("decodes")
    }

    #[test]
    fn moving_entities_are_coded_against_their_motion_since_the_acked_view_before() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        let mut held: Vec<View> = Vec::new();
        let mut acks: VecDeque<u32> = VecDeque::new();
        for tick in 1..=30u32 {
            // Every prop glides along x at 3 cm a tick; acks come back 3 ticks late.
            let entities = world(tick as f32 * 0.03);
            let positions = positions_of(&entities);
            let grid = InterestGrid::build(&positions, 8.0);
            let truth = quantized(&entities);
            let built = client.build(&frame(tick, &layout, &positions, &truth, &grid), 100_000);
            let decoded = decode_built(&layout, &held, tick, &built);
            assert_eq!(built.deferred, 0);
            let expected = client.sent.back().map(|s| s.view.clone());
            assert_eq!(Some(&decoded), expected.as_ref(), "tick {tick}");
            if tick > 8 {
                // The reference is the acked view just before the baseline.
                assert_eq!(
                    (built.baseline_tick, built.reference_gap),
                    (tick - 4, 1),
                    "tick {tick}"
                );
                let baseline = &held[built.baseline_tick as usize - 1];
                let plain = replication::encode(&layout, baseline, &decoded);
                assert!(
                    built.body.len() * 2 < plain.len(),
                    "tick {tick}: {} bytes predicted, {} not",
                    built.body.len(),
                    plain.len()
                );
            }
            held.push(decoded);
            acks.push_back(tick);
            if acks.len() > 3 {
                client.ack(acks.pop_front().expect("an ack"));
            }
        }
    }

    #[test]
    fn a_keyframe_request_leaves_no_reference_to_views_sent_before_it() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        let build = |client: &mut ClientSnapshots, tick: u32| {
            let entities = world(tick as f32 * 0.03);
            let positions = positions_of(&entities);
            let grid = InterestGrid::build(&positions, 8.0);
            client.build(
                &frame(tick, &layout, &positions, &quantized(&entities), &grid),
                100_000,
            )
        };
        for tick in 1..=5 {
            build(&mut client, tick);
            client.ack(tick);
        }
        assert_eq!(build(&mut client, 6).reference_gap, 1);
        // The client lost what it held: a keyframe, then deltas against views acked
        // after it only.
        client.ack(0);
        let keyframe = build(&mut client, 7);
        assert_eq!((keyframe.baseline_tick, keyframe.reference_gap), (0, 0));
        client.ack(7);
        let first = build(&mut client, 8);
        assert_eq!((first.baseline_tick, first.reference_gap), (7, 0));
        client.ack(8);
        let second = build(&mut client, 9);
        assert_eq!((second.baseline_tick, second.reference_gap), (8, 1));
    }

    #[test]
    fn a_baseline_that_deferred_entities_is_not_extrapolated_from() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        let mut held: Vec<View> = Vec::new();
        for tick in 1..=12u32 {
            let entities = world(tick as f32 * 0.03);
            let positions = positions_of(&entities);
            let grid = InterestGrid::build(&positions, 8.0);
            // Ticks 6 and 7 have room for a few entities only.
            let budget = if (6..=7).contains(&tick) { 12 } else { 100_000 };
            let built = client.build(
                &frame(tick, &layout, &positions, &quantized(&entities), &grid),
                budget,
            );
            assert_eq!(built.deferred > 0, (6..=7).contains(&tick), "tick {tick}");
            let baseline_deferred = (6..=7).contains(&built.baseline_tick);
            let reference_deferred = built.reference_gap > 0
                && (6..=7).contains(&(built.baseline_tick - u32::from(built.reference_gap)));
            assert!(
                !baseline_deferred || built.reference_gap == 0,
                "tick {tick}: extrapolated from a baseline with stale values"
            );
            assert!(
                !reference_deferred,
                "tick {tick}: a reference with stale values"
            );
            held.push(decode_built(&layout, &held, tick, &built));
            client.ack(tick);
        }
    }

    #[test]
    fn an_unchanged_world_costs_almost_nothing_once_acked() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        let entities = world(0.0);
        let views = quantized(&entities);
        let positions = positions_of(&entities);
        let grid = InterestGrid::build(&positions, 8.0);
        let mut tick = 0;
        let mut last = Built {
            baseline_tick: 0,
            reference_gap: 0,
            body: Vec::new(),
            view_len: 0,
            deferred: 1,
        };
        while last.deferred > 0 || last.baseline_tick == 0 {
            tick += 1;
            last = client.build(&frame(tick, &layout, &positions, &views, &grid), 1000);
            client.ack(tick);
            assert!(tick < 50);
        }
        tick += 1;
        let steady = client.build(&frame(tick, &layout, &positions, &views, &grid), 1000);
        // No new entity, and an "untouched" decision per entity in view: a hundredth of a
        // bit each once its probability has adapted.
        assert_eq!(steady.body.len(), 1, "nothing changed: {:?}", steady.body);
    }

    #[test]
    fn an_ack_of_zero_or_acks_left_behind_bring_a_keyframe() {
        let layout = layout();
        let mut client = ClientSnapshots::new(EntityId(500));
        let entities = world(0.0);
        let views = quantized(&entities);
        let positions = positions_of(&entities);
        let grid = InterestGrid::build(&positions, 8.0);
        for tick in 1..=3 {
            client.build(&frame(tick, &layout, &positions, &views, &grid), 1000);
        }
        client.ack(3);
        // The client asks for a keyframe.
        client.ack(0);
        let built = client.build(&frame(4, &layout, &positions, &views, &grid), 1000);
        assert_eq!(built.baseline_tick, 0);
        client.ack(4);
        // The client keeps saying it has only tick 2: after a few, a keyframe.
        for n in 1..=STALE_ACKS_FOR_KEYFRAME {
            let built = client.build(&frame(4 + n, &layout, &positions, &views, &grid), 1000);
            assert_eq!(built.baseline_tick, 4, "ack {n} behind");
            client.ack(2);
        }
        let built = client.build(&frame(20, &layout, &positions, &views, &grid), 1000);
        assert_eq!(built.baseline_tick, 0);
    }

    /// A component only its owner receives (the arena's motion) reaches the owner of
    /// its entity and no one else, though every record of the frame carries it.
    #[test]
    fn owner_only_components_reach_their_owner_alone() {
        let layout = layout();
        let entities = world(0.0);
        let positions = positions_of(&entities);
        let grid = InterestGrid::build(&positions, 8.0);
        let plain = quantized(&entities);
        let mut records = View::new();
        let mut slots = Vec::new();
        for record in plain.iter() {
            if record.mask & arena::CHARACTER != 0 {
                let motion = [16_384, 16_384, 16_384 + record.id.0, 1];
                let mask = layout.with_components(&record, arena::MOTION, &motion, &mut slots);
                records.push(record.id, mask, &slots);
            } else {
                records.push_record(record);
            }
        }
        for (own, other) in [(500, 501), (501, 500)] {
            let mut client = ClientSnapshots::new(EntityId(own));
            let built = client.build(&frame(1, &layout, &positions, &records, &grid), 1100);
            let view = replication::decode(&layout, &View::new(), &built.body).expect("decodes");
            let mine = view.find(EntityId(own)).expect("own character");
            assert_eq!(
                mine.mask & arena::MOTION,
                arena::MOTION,
                "{own} gets its motion"
            );
            assert_eq!(mine.slots[9], 16_384 + own, "its own, not another's");
            let theirs = view
                .find(EntityId(other))
                .expect("the other character, nearby");
            assert_eq!(
                theirs.mask & arena::MOTION,
                0,
                "{own} never gets {other}'s motion"
            );
            assert_eq!(theirs.slots.len(), layout.entity_slots(theirs.mask));
        }
    }

    /// An entity with no position component (a team's score, a match timer) is in every
    /// client's interest, however far the client is from the origin.
    #[test]
    fn entities_without_a_position_reach_everyone() {
        let layout = layout();
        let mut things = world(0.0);
        things.retain(|t| t.character);
        let mut records = quantized(&things);
        records.push(EntityId(900), arena::PROP, &[]);
        let mut positions = positions_of(&things);
        positions.push([f32::NAN; 3]);
        // Both characters are far from the origin and from each other's reach.
        positions[0] = [-400.0, 0.5, -400.0];
        positions[1] = [400.0, 0.5, 400.0];
        let grid = InterestGrid::build(&positions, 8.0);
        for own in [500, 501] {
            let mut client = ClientSnapshots::new(EntityId(own));
            let built = client.build(&frame(1, &layout, &positions, &records, &grid), 1100);
            let view = replication::decode(&layout, &View::new(), &built.body).expect("decodes");
            let ids: Vec<u32> = view.iter().map(|r| r.id.0).collect();
            assert_eq!(
                ids,
                [own, 900],
                "its own character and the positionless entity"
            );
        }
    }

    #[test]
    fn the_history_finds_every_view_whatever_the_gaps_between_them() {
        // Strides of 2 (60 Hz ticks, 30 Hz snapshots), a stall, a burst one tick apart.
        let ticks: Vec<u32> = (1..=20)
            .map(|i| 2 * i)
            .chain([47, 48, 49, 55, 57, 59, 61])
            .collect();
        for len in 0..=ticks.len() {
            for first in 0..=len {
                let sent: VecDeque<Sent> = ticks[first..len]
                    .iter()
                    .map(|&tick| Sent {
                        tick,
                        view: View::new(),
                        acked: false,
                        whole: true,
                    })
                    .collect();
                for tick in 0..70 {
                    let expected = sent.iter().position(|s| s.tick == tick);
                    assert_eq!(
                        sent_at(&sent, tick),
                        expected,
                        "tick {tick} in {:?}",
                        &ticks[first..len]
                    );
                }
            }
        }
    }

    #[test]
    fn acks_for_unknown_ticks_are_ignored() {
        let mut client = ClientSnapshots::new(EntityId(1));
        client.ack(99);
        assert_eq!(client.acked(), 0);
    }

    #[test]
    fn budget_is_a_share_of_bandwidth_capped_by_the_datagram() {
        assert_eq!(body_budget(96_000, 30, 1200), 400 - Snapshot::HEADER_LEN);
        assert_eq!(
            body_budget(10_000_000, 30, 1200),
            1200 - Snapshot::HEADER_LEN
        );
    }
}
