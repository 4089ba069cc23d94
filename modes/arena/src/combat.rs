//! Hitscan weapons with lag compensation: a shot is a ray from the eye along the aim,
//! tested against the other characters where the shooter saw them — rewound to the tick
//! the shooter was viewing, at most the configured maximum back — and against the level
//! and props as they are now.

use crate::types::PlayerInput;
use std::collections::{BTreeMap, VecDeque};

use bevy_ecs::prelude::*;
use outpost_protocol::EntityId;
use rapier3d::parry::query::RayCast;
use rapier3d::parry::shape::Capsule;
use rapier3d::prelude::*;

use super::movement::{Character, aim};
use super::{CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS, Hit};
use outpost_sim::Physics;
use outpost_sim::{Controls, NetId, PlayerSlot, RigidBodyRef};
use outpost_sim::{MatchClock, MatchEvents};

/// Eye height above a character's centre, metres.
pub const EYE_HEIGHT: f32 = 0.6;
/// Range of a shot, metres.
pub const WEAPON_RANGE: f32 = 200.0;
/// Shots per second at most.
pub const FIRE_RATE_HZ: u32 = 4;

/// Where every character was at each recent tick: about a second of hitbox history.
#[derive(Resource, Debug, Default)]
pub struct HitboxHistory {
    ticks: VecDeque<(u32, Vec<(EntityId, Vector)>)>,
    capacity: usize,
    /// Most ticks a shot may be rewound.
    pub max_rewind_ticks: u32,
}

impl HitboxHistory {
    /// History of `capacity` ticks, rewinding at most `max_rewind_ticks`.
    pub fn new(capacity: usize, max_rewind_ticks: u32) -> Self {
        Self {
            ticks: VecDeque::with_capacity(capacity),
            capacity,
            max_rewind_ticks,
        }
    }

    /// Positions at a tick, if still remembered.
    pub fn at(&self, tick: u32) -> Option<&[(EntityId, Vector)]> {
        let newest = self.ticks.back()?.0;
        let back = newest.checked_sub(tick)? as usize;
        let index = self.ticks.len().checked_sub(back + 1)?;
        self.ticks
            .get(index)
            .filter(|(t, _)| *t == tick)
            .map(|(_, p)| p.as_slice())
    }

    /// The tick a shot claiming `view_tick` is tested at, during tick `now`.
    pub fn rewind_target(&self, now: u32, view_tick: u32) -> u32 {
        view_tick.clamp(now.saturating_sub(self.max_rewind_ticks), now)
    }
}

/// Records every character's position at the end of the tick.
pub(crate) fn record_hitboxes(
    clock: Res<MatchClock>,
    physics: Res<Physics>,
    mut history: ResMut<HitboxHistory>,
    players: Query<(&NetId, &RigidBodyRef), With<PlayerSlot>>,
) {
    let mut positions: Vec<(EntityId, Vector)> = players
        .iter()
        .filter_map(|(id, body)| Some((id.0, physics.world.bodies.get(body.0)?.translation())))
        .collect();
    positions.sort_unstable_by_key(|(id, _)| *id);
    if history.ticks.len() == history.capacity {
        history.ticks.pop_front();
    }
    history.ticks.push_back((clock.tick, positions));
}

/// Fires the weapons of players pressing fire this tick, in entity-id order; scores hits.
pub(crate) fn fire_weapons(
    clock: Res<MatchClock>,
    physics: Res<Physics>,
    history: Res<HitboxHistory>,
    mut events: ResMut<MatchEvents>,
    mut players: Query<(
        &NetId,
        &RigidBodyRef,
        &Controls,
        &mut Character,
        &mut PlayerSlot,
    )>,
) {
    let cooldown = (u32::from(clock.tick_hz) / FIRE_RATE_HZ).max(1);
    let now: Vec<(EntityId, Vector)> = players
        .iter()
        .filter_map(|(id, body, ..)| Some((id.0, physics.world.bodies.get(body.0)?.translation())))
        .collect();
    let mut shots: Vec<(EntityId, EntityId)> = Vec::new();
    for (id, body, controls, mut character, mut slot) in &mut players {
        character.fire_cooldown = character.fire_cooldown.saturating_sub(1);
        if character.fire_cooldown > 0 {
            continue;
        }
        let Some(shot) = controls
            .this_tick
            .iter()
            .rev()
            .filter_map(super::input_from_record)
            .find(|i| i.buttons & PlayerInput::FIRE != 0)
        else {
            continue;
        };
        character.fire_cooldown = cooldown;
        slot.count(crate::STAT_SHOTS, 1);
        let Some(rb) = physics.world.bodies.get(body.0) else {
            continue;
        };
        let ray = Ray::new(
            rb.translation() + Vector::new(0.0, EYE_HEIGHT, 0.0),
            aim(shot.yaw_radians(), shot.pitch_radians()),
        );
        // The level and props as they are now stop the shot...
        let solid = QueryFilter::exclude_kinematic().exclude_sensors();
        let wall = physics
            .world
            .cast_ray(&ray, WEAPON_RANGE, true, solid)
            .map_or(WEAPON_RANGE, |(_, t)| t);
        // ...characters are where the shooter saw them.
        let target_tick = history.rewind_target(clock.tick, shot.view_tick);
        let targets = if target_tick == clock.tick {
            Some(now.as_slice())
        } else {
            history.at(target_tick)
        };
        let capsule = Capsule::new_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS);
        let hit = targets
            .unwrap_or(now.as_slice())
            .iter()
            .filter(|(target, _)| *target != id.0)
            .filter_map(|(target, at)| {
                capsule
                    .cast_ray(&Pose::from_translation(*at), &ray, wall, true)
                    .map(|t| (t, *target))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, target)) = hit {
            shots.push((id.0, target));
        }
    }
    if shots.is_empty() {
        return;
    }
    shots.sort_unstable();
    let mut by_id: BTreeMap<EntityId, Mut<PlayerSlot>> = players
        .iter_mut()
        .map(|(id, .., slot)| (id.0, slot))
        .collect();
    for (shooter, target) in shots {
        let Some(hit) = by_id.get_mut(&target) else {
            continue;
        };
        hit.count(crate::STAT_HITS_TAKEN, 1);
        let Some(slot) = by_id.get_mut(&shooter) else {
            continue;
        };
        slot.score += 1;
        let hit = Hit {
            shooter,
            target,
            shooter_score: slot.score,
        };
        events.push(clock.tick, hit.event());
    }
}
