//! Components every game mode shares.

use std::collections::VecDeque;

use bevy_ecs::prelude::*;
use outpost_protocol::{EntityId, EntityKind, PlayerId, PlayerInput};
use rapier3d::prelude::RigidBodyHandle;

/// Most inputs queued for one player; older ones are dropped first. Two seconds at 60 Hz
/// is far more than a healthy client ever has in flight.
pub const MAX_QUEUED_INPUTS: usize = 120;

/// The network identity of a replicated entity.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetId(pub EntityId);

/// Marks an entity as replicated to clients, and as what.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicated(pub EntityKind);

/// The rapier body behind an entity.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RigidBodyRef(pub RigidBodyHandle);

/// A player's seat in the match.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct PlayerSlot {
    /// Who sits here.
    pub player: PlayerId,
    /// Whether their connection is up (a disconnected player's character stays, idle).
    pub connected: bool,
    /// Their score.
    pub score: u32,
}

/// Queued inputs beyond which the edge applies two per tick to catch up. One input of
/// slack absorbs arrival jitter; anything deeper is latency every input would wait
/// through (a client sending at the tick rate never drains a standing queue by itself),
/// so it is worked off at once.
pub const CATCH_UP_DEPTH: usize = 1;

/// A character's motion: what the client needs, besides position, to predict it.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct Motion {
    /// Velocity, metres per second.
    pub velocity: [f32; 3],
    /// Standing on something.
    pub grounded: bool,
}

/// A player's inputs: queued ones waiting for their tick, and those applied this tick.
///
/// Movement runs once per input, not once per tick: a tick with no input moves the
/// character not at all, and a tick after a late burst applies two. The character's
/// state is then a function of its input sequence alone, which is what lets a client
/// predict it exactly.
#[derive(Component, Debug, Clone, Default)]
pub struct Controls {
    /// Inputs not applied yet, in sequence order.
    pub queue: VecDeque<PlayerInput>,
    /// Inputs applied this tick, in order (usually one; none when none arrived; two
    /// when catching up).
    pub this_tick: Vec<PlayerInput>,
    /// The newest input applied (aim and held buttons).
    pub current: PlayerInput,
    /// Sequence number of the newest input applied.
    pub last_applied_seq: u32,
    /// Inputs applied so far.
    pub applied: u64,
    /// Inputs refused because the queue was full.
    pub dropped: u64,
}

impl Controls {
    /// Queues an input unless it was already applied or queued; keeps the queue in
    /// sequence order and bounded. Returns whether it was queued.
    pub fn push(&mut self, input: PlayerInput) -> bool {
        if input.seq <= self.last_applied_seq {
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
        if self.queue.len() == MAX_QUEUED_INPUTS {
            if at == 0 {
                self.dropped += 1;
                return false;
            }
            self.queue.pop_front();
            self.dropped += 1;
            self.queue.insert(at - 1, input);
            return true;
        }
        self.queue.insert(at, input);
        true
    }

    /// Takes this tick's inputs from the queue: one, or two when the queue is deeper
    /// than [`CATCH_UP_DEPTH`], or none.
    pub fn advance(&mut self) {
        self.this_tick.clear();
        let take = if self.queue.len() > CATCH_UP_DEPTH {
            2
        } else {
            1
        };
        for _ in 0..take {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            self.last_applied_seq = next.seq;
            self.current = next;
            self.applied += 1;
            self.this_tick.push(next);
        }
    }
}
