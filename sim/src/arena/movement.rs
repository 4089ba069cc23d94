//! Character movement: the code the edge runs authoritatively and the client runs again
//! to predict its own character. Both call [`move_character`] on the same state, so
//! prediction agrees with the server unless something the client cannot see intervenes.
//!
//! Velocity is snapped to the wire's grid after every move, so the velocity a client
//! receives is exactly the server's. Position is not: snapping it could nudge the
//! character inside the controller's skin distance from the floor or a wall, which stops
//! it sliding; the client starts from the quantized position instead (within 1 mm).

use bevy_ecs::prelude::*;
use outpost_protocol::{PlayerInput, quantize};
use rapier3d::control::{
    CharacterAutostep, CharacterCollision, CharacterLength, KinematicCharacterController,
};
use rapier3d::prelude::*;

use crate::components::{Controls, Motion, NetId, RigidBodyRef};
use crate::game::MatchClock;
use crate::physics::Physics;

/// Ground speed, metres per second.
pub const RUN_SPEED: f32 = 6.0;
/// Upward speed at the start of a jump, metres per second.
pub const JUMP_SPEED: f32 = 6.5;
/// Gravity on characters, metres per second squared.
pub const GRAVITY: f32 = 20.0;
/// Mass a character pushes props with, kilograms.
pub const CHARACTER_MASS: f32 = 80.0;

/// Arena-only character state (what is neither in the body nor in [`Motion`]).
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct Character {
    /// Ticks until it may fire again.
    pub fire_cooldown: u32,
}

/// Horizontal direction a yaw faces.
pub fn facing(yaw: f32) -> Vector {
    Vector::new(yaw.sin(), 0.0, yaw.cos())
}

/// Direction of aim for a yaw and pitch.
pub fn aim(yaw: f32, pitch: f32) -> Vector {
    Vector::new(
        pitch.cos() * yaw.sin(),
        pitch.sin(),
        pitch.cos() * yaw.cos(),
    )
}

fn controller() -> KinematicCharacterController {
    KinematicCharacterController {
        autostep: Some(CharacterAutostep {
            max_height: CharacterLength::Absolute(0.35),
            min_width: CharacterLength::Absolute(0.2),
            include_dynamic_bodies: false,
        }),
        snap_to_ground: Some(CharacterLength::Absolute(0.2)),
        ..KinematicCharacterController::default()
    }
}

/// Moves one character by one input: walk, jump, fall, slide along walls, push the props
/// it runs into; snaps its velocity to the wire's grid. Starts from the body's pending
/// (next) position, so several inputs can be applied within one physics step.
pub fn move_character(
    physics: &mut PhysicsWorld,
    body: RigidBodyHandle,
    input: &PlayerInput,
    motion: &mut Motion,
    dt: f32,
) {
    let yaw = input.yaw_radians();
    let forward = facing(yaw);
    // Facing +Z with Y up, the character's left is +X.
    let left = Vector::new(forward.z, 0.0, -forward.x);
    let mut wish =
        forward * (f32::from(input.move_z) / 127.0) - left * (f32::from(input.move_x) / 127.0);
    if wish.length_squared() > 1.0 {
        wish = wish.normalize();
    }
    let mut vertical = motion.velocity[1];
    if motion.grounded && input.buttons & PlayerInput::JUMP != 0 {
        vertical = JUMP_SPEED;
    } else if motion.grounded {
        vertical = -GRAVITY * dt;
    } else {
        vertical -= GRAVITY * dt;
    }
    let velocity = Vector::new(wish.x * RUN_SPEED, vertical, wish.z * RUN_SPEED);

    let Some(rb) = physics.bodies.get(body) else {
        return;
    };
    let start = *rb.next_position();
    let Some(&collider) = rb.colliders().first() else {
        return;
    };
    let Some(shape) = physics
        .colliders
        .get(collider)
        .map(|c| c.shared_shape().clone())
    else {
        return;
    };
    let controller = controller();
    let mut collisions: Vec<CharacterCollision> = Vec::new();
    let filter = QueryFilter::default()
        .exclude_rigid_body(body)
        .exclude_sensors();
    let movement = {
        let queries = physics.query_pipeline_with_filter(filter);
        controller.move_shape(dt, &queries, &*shape, &start, velocity * dt, |c| {
            collisions.push(c)
        })
    };
    let mut velocity = [velocity.x, velocity.y, velocity.z];
    if movement.grounded && velocity[1] < 0.0 {
        velocity[1] = 0.0;
    }
    motion.velocity = quantize::snap_velocity(velocity);
    motion.grounded = movement.grounded;
    let next = Pose::from_parts(
        start.translation + movement.translation,
        Rotation::from_rotation_y(yaw),
    );
    if let Some(rb) = physics.bodies.get_mut(body) {
        rb.set_next_kinematic_position(next);
    }
    if !collisions.is_empty() {
        let mut queries = physics.broad_phase.as_query_pipeline_mut(
            physics.narrow_phase.query_dispatcher(),
            &mut physics.bodies,
            &mut physics.colliders,
            filter,
        );
        controller.solve_character_collision_impulses(
            dt,
            &mut queries,
            &*shape,
            CHARACTER_MASS,
            &collisions,
        );
    }
}

/// Moves every character by this tick's inputs, in entity-id order.
pub(crate) fn move_characters(
    clock: Res<MatchClock>,
    mut physics: ResMut<Physics>,
    mut characters: Query<(&NetId, &RigidBodyRef, &Controls, &mut Motion)>,
) {
    let mut ordered: Vec<_> = characters.iter_mut().collect();
    ordered.sort_unstable_by_key(|(id, ..)| **id);
    for (_, body, controls, mut motion) in ordered {
        for input in &controls.this_tick {
            move_character(&mut physics.world, body.0, input, &mut motion, clock.dt);
        }
    }
}
