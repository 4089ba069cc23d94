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

/// A player's inputs: queued ones waiting for their tick, and the one in force.
#[derive(Component, Debug, Clone, Default)]
pub struct Controls {
    /// Inputs not applied yet, in sequence order.
    pub queue: VecDeque<PlayerInput>,
    /// The input applied this tick.
    pub current: PlayerInput,
    /// Sequence number of the newest input applied.
    pub last_applied_seq: u32,
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

    /// Moves to the next queued input, or repeats the held controls (movement and look,
    /// never a one-shot button) when none arrived in time.
    pub fn advance(&mut self) {
        if let Some(next) = self.queue.pop_front() {
            self.last_applied_seq = next.seq;
            self.current = next;
        } else {
            self.current.buttons &= !(PlayerInput::FIRE | PlayerInput::JUMP);
        }
    }
}
