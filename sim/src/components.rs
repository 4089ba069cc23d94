//! Components every game mode shares.

use std::collections::VecDeque;

use bevy_ecs::prelude::*;
use outpost_protocol::replication::InputRecord;
use outpost_protocol::{EntityId, MAX_INPUT_TICKS, PlayerId};
use rapier3d::prelude::RigidBodyHandle;

/// The network identity of a replicated entity.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetId(pub EntityId);

/// The rapier body behind an entity.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RigidBodyRef(pub RigidBodyHandle);

/// A player's seat in the match.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct PlayerSlot {
    /// Who sits here.
    pub player: PlayerId,
    /// Their team, as matchmaking placed them (0 in a free-for-all).
    pub team: u8,
    /// Whether their connection is up (a disconnected player's character stays, idle).
    pub connected: bool,
    /// Their score.
    pub score: u32,
    /// The mode's own per-player counts, in the order of [`crate::GameMode::stats`] (a
    /// capture the flag player's returns, say): reported beside the score in the match's
    /// result, for the cloud's boards. Unused entries stay 0.
    pub stats: [u32; MAX_STATS],
}

pub use outpost_protocol::MAX_STATS;

impl PlayerSlot {
    /// Adds `n` to the mode's stat at `index` (in [`crate::GameMode::stats`] order),
    /// saturating; an index past [`MAX_STATS`] is ignored.
    pub fn count(&mut self, index: usize, n: u32) {
        if let Some(stat) = self.stats.get_mut(index) {
            *stat = stat.saturating_add(n);
        }
    }
}

/// Queued input ticks beyond which the edge works off two ticks of input in one tick,
/// when the player's time budget allows. One tick of slack absorbs arrival jitter;
/// anything deeper is latency every input would wait through (a client sending at the
/// tick rate never drains a standing queue by itself), so it is worked off at once.
pub const CATCH_UP_DEPTH: u32 = 1;
/// Queued input ticks kept while the player's time budget is spent: more means the
/// client sends more time than the clock gives it (a fast clock, or a speed hack), and
/// the oldest are dropped.
pub const OVER_BUDGET_SLACK: u32 = 2;
/// Most input ticks queued for one player; older inputs are dropped first. About a
/// second at 60 Hz, far more than a healthy client ever has in flight.
pub const MAX_QUEUED_TICKS: u32 = 64;

/// A character's motion: what the client needs, besides position, to predict it.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct Motion {
    /// Velocity, metres per second.
    pub velocity: [f32; 3],
    /// Standing on something.
    pub grounded: bool,
}

/// A player's inputs: queued ones waiting for their tick, and those applied this tick.
/// Inputs are the mode's, as the schema lays them out ([`InputRecord`]: the core's
/// sequence, span and view tick, then the mode's quantized fields); the mode reads them.
///
/// Movement runs once per input tick, not once per simulation tick: a tick with no
/// input moves the character not at all, and a tick after a late burst applies two.
/// The character's state is then a function of its input sequence alone, which is what
/// lets a client predict it exactly.
///
/// What a player's inputs may spend is bounded by the match clock, as Source's usercmd
/// tick accounting is: the budget grows by one tick per tick (banking at most the credit
/// the caller allows, so a backlog after packet loss is still worked off) and each
/// applied input spends the ticks it stands for. Inputs beyond the budget are dropped and
/// counted. A client sending 120 inputs a second moves as fast as one sending 60, and
/// one sending 30 that says each input stands for two ticks moves as fast as well.
#[derive(Component, Debug, Clone, Default)]
pub struct Controls {
    /// Inputs not applied yet, in sequence order.
    pub queue: VecDeque<InputRecord>,
    /// Ticks the queued inputs stand for.
    pub queued_ticks: u32,
    /// Inputs applied this tick, in order (usually one; none when none arrived or the
    /// budget is spent; two when catching up).
    pub this_tick: Vec<InputRecord>,
    /// The newest input applied (aim and held buttons); `None` before the first and
    /// after the connection is lost (the mode's neutral input).
    pub current: Option<InputRecord>,
    /// Sequence number of the newest input done with: applied, or dropped. Inputs at or
    /// below it are ignored (redundant copies).
    pub last_applied_seq: u32,
    /// Ticks of input the player may spend now; goes below zero when an input of several
    /// ticks is applied on a budget of one.
    pub budget: i32,
    /// Inputs applied so far.
    pub applied: u64,
    /// Inputs dropped: the queue full, beyond the time budget, or claiming 0 or more than
    /// [`MAX_INPUT_TICKS`] ticks.
    pub dropped: u64,
}

impl Controls {
    /// Queues an input unless it was already applied or queued, or claims an impossible
    /// span; keeps the queue in sequence order and bounded. Returns whether it was
    /// queued.
    pub fn push(&mut self, input: InputRecord) -> bool {
        if input.seq <= self.last_applied_seq {
            return false;
        }
        if input.ticks == 0 || input.ticks > MAX_INPUT_TICKS {
            self.dropped += 1;
            return false;
        }
        let at = self.queue.partition_point(|queued| queued.seq < input.seq);
        if self
            .queue
            .get(at)
            .is_some_and(|queued| queued.seq == input.seq)
        {
            return false;
        }
        let (seq, ticks) = (input.seq, input.ticks);
        self.queue.insert(at, input);
        self.queued_ticks += u32::from(ticks);
        while self.queued_ticks > MAX_QUEUED_TICKS {
            self.drop_oldest();
        }
        self.queue.iter().any(|queued| queued.seq == seq)
    }

    /// Takes this tick's inputs from the queue within the time budget: one tick of
    /// input, or two when more than [`CATCH_UP_DEPTH`] ticks wait, or none; then drops
    /// what waits beyond the spent budget. `credit` is the most ticks a player may bank.
    pub fn advance(&mut self, credit: i32) {
        self.budget = (self.budget + 1).min(credit);
        self.this_tick.clear();
        let most = if self.queued_ticks > CATCH_UP_DEPTH {
            2
        } else {
            1
        };
        let mut spent = 0;
        while spent < most && self.budget > 0 {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            let ticks = u32::from(next.ticks);
            self.queued_ticks -= ticks;
            spent += ticks;
            self.budget -= i32::from(next.ticks);
            self.last_applied_seq = next.seq;
            self.current = Some(next.clone());
            self.applied += 1;
            self.this_tick.push(next);
        }
        while self.budget <= 0 && self.queued_ticks > OVER_BUDGET_SLACK {
            self.drop_oldest();
        }
    }

    /// Forgets every queued input (the connection is gone).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.queued_ticks = 0;
        self.this_tick.clear();
    }

    fn drop_oldest(&mut self) {
        if let Some(oldest) = self.queue.pop_front() {
            self.queued_ticks -= u32::from(oldest.ticks);
            self.last_applied_seq = oldest.seq;
            self.dropped += 1;
        }
    }
}
