//! Character movement: the code the edge runs authoritatively and the client runs again
//! to predict its own character. Both call [`move_character`] on the same state, so
//! prediction agrees with the server unless something the client cannot see intervenes.
//!
//! Velocity is snapped to the wire's grid after every move, so the velocity a client
//! receives is exactly the server's. Position is not: snapping it could nudge the
//! character inside the controller's skin distance from the floor or a wall, which stops
//! it sliding; the client starts from the quantized position instead (within 1 mm).

use crate::quantize;
use crate::types::PlayerInput;
use bevy_ecs::prelude::*;
use rapier3d::control::{CharacterAutostep, CharacterLength, KinematicCharacterController};
use rapier3d::prelude::*;

use outpost_sim::MatchClock;
use outpost_sim::Physics;
use outpost_sim::{Controls, Motion, NetId, RigidBodyRef};

/// Ground speed, metres per second.
pub const RUN_SPEED: f32 = 6.0;
/// Upward speed at the start of a jump, metres per second.
pub const JUMP_SPEED: f32 = 6.5;
/// Gravity on characters, metres per second squared.
pub const GRAVITY: f32 = 20.0;

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

/// Moves one character by one input: walk, jump, fall, slide along walls and other
/// characters, shove the props it runs into; snaps its velocity to the wire's grid. Starts from the body's pending
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
        // -128 is what -127 is (the wire carries -127..=127).
        forward * (f32::from(input.move_z.max(-127)) / 127.0)
            - left * (f32::from(input.move_x.max(-127)) / 127.0);
    if wish.length_squared() > 1.0 {
        wish = wish.normalize();
    }
    // Grounded, a character gets no downward push: the controller's snap to ground keeps
    // it on slopes and steps, and pressing it into the floor would leave it inside the
    // controller's skin distance, where rapier blocks the next horizontal move.
    let vertical = if motion.grounded && input.buttons & PlayerInput::JUMP != 0 {
        JUMP_SPEED
    } else if motion.grounded {
        0.0
    } else {
        motion.velocity[1] - GRAVITY * dt
    };
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
    // Only the level (fixed bodies) and other characters block a character. Props do
    // not: a character shoves them aside instead. Movement then depends on inputs and
    // the static level alone, which is what lets a client predict it exactly; a box
    // that blocked for a few ticks while being pushed would be a round trip of error.
    let filter = QueryFilter::exclude_dynamic()
        .exclude_rigid_body(body)
        .exclude_sensors();
    let movement = {
        let queries = physics.query_pipeline_with_filter(filter);
        controller().move_shape(dt, &queries, &*shape, &start, velocity * dt, |_| {})
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
    shove_props(
        physics,
        &*shape,
        next,
        Vector::new(velocity[0], 0.0, velocity[2]),
    );
}

/// Gives every prop the character overlaps at `pose` at least the character's horizontal
/// velocity, away from the character.
fn shove_props(physics: &mut PhysicsWorld, shape: &dyn Shape, pose: Pose, velocity: Vector) {
    let speed = velocity.length();
    if speed < 1e-3 {
        return;
    }
    let props = QueryFilter::only_dynamic().exclude_sensors();
    let touched: Vec<RigidBodyHandle> = physics
        .intersect_shape(pose, shape, props)
        .filter_map(|(_, collider)| collider.parent())
        .collect();
    for handle in touched {
        let Some(prop) = physics.bodies.get_mut(handle) else {
            continue;
        };
        let mut away = prop.translation() - pose.translation;
        away.y = 0.0;
        let away = if away.length_squared() > 1e-6 {
            away.normalize()
        } else {
            velocity / speed
        };
        let closing = speed - prop.linvel().dot(away);
        if closing > 0.0 {
            let impulse =
                away * (closing * prop.mass()) + Vector::new(0.0, 0.1 * closing * prop.mass(), 0.0);
            prop.apply_impulse(impulse, true);
        }
    }
}

/// Moves every character by this tick's inputs, in entity-id order: each input once per
/// tick it stands for. A mode whose inputs are laid out as the arena's (its movement
/// fields first, then its buttons, jump in bit 0) installs it in
/// [`outpost_sim::TickSet::PrePhysics`] to move its characters as the arena does.
pub fn move_characters(
    clock: Res<MatchClock>,
    mut physics: ResMut<Physics>,
    mut characters: Query<(&NetId, &RigidBodyRef, &Controls, &mut Motion)>,
) {
    let mut ordered: Vec<_> = characters.iter_mut().collect();
    ordered.sort_unstable_by_key(|(id, ..)| **id);
    for (_, body, controls, mut motion) in ordered {
        for record in &controls.this_tick {
            let Some(input) = super::input_from_record(record) else {
                continue;
            };
            for _ in 0..input.ticks {
                move_character(&mut physics.world, body.0, &input, &mut motion, clock.dt);
            }
        }
    }
}
