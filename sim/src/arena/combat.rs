//! Hitscan weapons: a shot is a ray from the eye along the aim; hitting another player
//! scores a point.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use outpost_protocol::{EntityId, MatchEvent, PlayerInput};
use rapier3d::prelude::*;

use super::movement::{Character, aim};
use crate::components::{Controls, NetId, PlayerSlot, RigidBodyRef};
use crate::game::{MatchClock, MatchEvents};
use crate::physics::Physics;

/// Eye height above a character's centre, metres.
pub const EYE_HEIGHT: f32 = 0.6;
/// Range of a shot, metres.
pub const WEAPON_RANGE: f32 = 200.0;
/// Shots per second at most.
pub const FIRE_RATE_HZ: u32 = 4;

/// Fires the weapons of players pressing fire, in entity-id order; scores hits.
pub(crate) fn fire_weapons(
    clock: Res<MatchClock>,
    physics: Res<Physics>,
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
    let mut shots: Vec<(EntityId, EntityId)> = Vec::new();
    for (id, body, controls, mut character, _) in &mut players {
        character.fire_cooldown = character.fire_cooldown.saturating_sub(1);
        if controls.current.buttons & PlayerInput::FIRE == 0 || character.fire_cooldown > 0 {
            continue;
        }
        character.fire_cooldown = cooldown;
        let Some(rb) = physics.world.bodies.get(body.0) else {
            continue;
        };
        let origin = rb.translation() + Vector::new(0.0, EYE_HEIGHT, 0.0);
        let direction = aim(
            controls.current.yaw_radians(),
            controls.current.pitch_radians(),
        );
        let ray = Ray::new(origin, direction);
        let filter = QueryFilter::default()
            .exclude_rigid_body(body.0)
            .exclude_sensors();
        let Some((collider, _)) = physics.world.cast_ray(&ray, WEAPON_RANGE, true, filter) else {
            continue;
        };
        let Some(hit) = physics.world.colliders.get(collider) else {
            continue;
        };
        if hit.user_data != 0 {
            shots.push((id.0, EntityId(hit.user_data as u32)));
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
        let Some(target_player) = by_id.get(&target).map(|slot| slot.player) else {
            continue; // a prop
        };
        let Some(slot) = by_id.get_mut(&shooter) else {
            continue;
        };
        slot.score += 1;
        events.push(
            clock.tick,
            MatchEvent::Hit {
                shooter: slot.player,
                target: target_player,
                shooter_score: slot.score,
            },
        );
    }
}
