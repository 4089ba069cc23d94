//! Helpers shared by the simulation tests.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use outpost_arena::PlayerInput;
use outpost_protocol::EntityId;
use outpost_sim::rapier3d::prelude::Vector;
use outpost_sim::{Match, NetId, Physics, RigidBodyRef};

/// An entity's replicated position.
pub fn position(game: &mut Match, id: EntityId) -> [f32; 3] {
    outpost_arena::entity_states(game)
        .into_iter()
        .find(|e| e.id == id)
        .expect("entity replicated")
        .position
}

/// Places an entity's body at a point, as if it had moved there.
pub fn teleport(game: &mut Match, id: EntityId, at: Vector) {
    let world = game.world_mut();
    let mut query = world.query::<(&NetId, &RigidBodyRef)>();
    let body = query
        .iter(world)
        .find(|(n, _)| n.0 == id)
        .map(|(_, b)| b.0)
        .expect("body");
    let mut physics = world.resource_mut::<Physics>();
    let rb = physics.world.bodies.get_mut(body).expect("rb");
    rb.set_translation(at, true);
    rb.set_next_kinematic_translation(at);
}

/// The encoded yaw that looks from one point toward another.
pub fn yaw_towards(from: [f32; 3], to: [f32; 3]) -> u16 {
    PlayerInput::yaw_from_radians((to[0] - from[0]).atan2(to[2] - from[2]))
}
