//! Character movement: the code the edge runs authoritatively and the client runs again
//! to predict its own character. Both call [`move_character`] on the same state, so
//! prediction agrees with the server unless something the client cannot see intervenes.
//!
//! Velocity is snapped to the wire's grid after every move, so the velocity a client
//! receives is exactly the server's. Position is not: snapping it could nudge the
//! character inside the skin ([`SKIN`]) it keeps from the floor or a wall, where the next
//! sweep starts touching it; the client starts from the quantized position instead
//! (within 1 mm).

use crate::quantize;
use crate::types::PlayerInput;
use bevy_ecs::prelude::*;
use rapier3d::parry::query::ShapeCastOptions;
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

/// How far a character keeps from what it touches, metres: every sweep stops this short
/// of a surface, so the next one starts clear of it.
pub const SKIN: f32 = 0.02;
/// The steepest surface a character stands on: its normal's up component at least this
/// (45°). Anything steeper is a wall: slid along, never climbed.
const MIN_GROUND_NORMAL_Y: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// The highest ledge a walking character steps up onto, metres.
pub const STEP_HEIGHT: f32 = 0.35;
/// Room a ledge must leave on top to be stepped onto, metres.
const STEP_MIN_WIDTH: f32 = 0.2;
/// How far down a character that was standing follows the ground, metres: down slopes and
/// off steps without leaving it.
pub const SNAP_DISTANCE: f32 = 0.2;
/// How close below an airborne character the ground must be for it to land, metres.
const GROUND_PROBE: f32 = 0.05;
/// Sweeps per move: the first, then one slide along each surface met.
const MAX_SLIDES: usize = 4;

/// Moves one character by one input, for every tick the input stands for: walk, jump,
/// fall, slide along walls and other characters, step up ledges, follow the ground down,
/// shove the props it ends up in; snaps its velocity to the wire's grid. Starts from the
/// body's pending (next) position, so several inputs can be applied within one physics
/// step.
///
/// The ticks of one input are swept as one move: the vertical motion is summed tick by
/// tick (gravity as a per-tick integration applies it), the sweep and its queries run
/// once. On open ground, a client sending 60 inputs a second and one sending 30 for two
/// ticks each end in the same place.
pub fn move_character(
    physics: &mut PhysicsWorld,
    body: RigidBodyHandle,
    input: &PlayerInput,
    motion: &mut Motion,
    dt: f32,
) {
    if input.ticks == 0 {
        return;
    }
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
    let horizontal = Vector::new(wish.x * RUN_SPEED, 0.0, wish.z * RUN_SPEED);
    // Grounded, a character gets no downward push: the snap to ground keeps it on slopes
    // and steps, and pressing it into the floor would leave it inside the skin, where the
    // next sweep starts touching it.
    let jump = input.buttons & PlayerInput::JUMP != 0;
    let (mut vertical, mut rise, mut airborne) = (motion.velocity[1], 0.0, !motion.grounded);
    for _ in 0..input.ticks {
        vertical = if airborne {
            vertical - GRAVITY * dt
        } else if jump {
            JUMP_SPEED
        } else {
            0.0
        };
        airborne |= vertical != 0.0;
        rise += vertical * dt;
    }

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
    let desired = horizontal * (dt * f32::from(input.ticks)) + Vector::new(0.0, rise, 0.0);
    let moved = {
        let queries = physics.query_pipeline_with_filter(filter);
        sweep_character(&queries, &*shape, &start, desired, motion.grounded)
    };
    if moved.grounded && vertical < 0.0 {
        vertical = 0.0;
    }
    motion.velocity = quantize::snap_velocity([horizontal.x, vertical, horizontal.z]);
    motion.grounded = moved.grounded;
    let next = Pose::from_parts(
        start.translation + moved.translation,
        Rotation::from_rotation_y(yaw),
    );
    if let Some(rb) = physics.bodies.get_mut(body) {
        rb.set_next_kinematic_position(next);
    }
    shove_props(physics, &*shape, next, horizontal);
}

/// Where a sweep took a character.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moved {
    /// How far it went.
    pub translation: Vector,
    /// Whether it ends standing on something walkable.
    pub grounded: bool,
}

/// Sweeps a character's shape from `start` by `desired` through what `queries` sees:
/// stops [`SKIN`] short of what it meets and slides along it, steps up ledges up to
/// [`STEP_HEIGHT`] when it was standing, then, unless it is rising, looks for ground below:
/// follows it down by up to [`SNAP_DISTANCE`] when it was standing, lands on it within a
/// few centimetres otherwise, and settles a skin above it.
///
/// Two shape casts for a step across open ground, one more per surface slid along: the
/// queries rapier's character controller made, without its contact-manifold ground
/// tests, which cost as much as its casts and ran twice per move. The casts sweep the
/// bare shape and keep the skin by arithmetic: a cast that starts within a margin of a
/// surface, as rapier's do, gets an unreliable answer exactly where a standing character
/// is.
pub fn sweep_character(
    queries: &QueryPipeline,
    shape: &dyn Shape,
    start: &Pose,
    desired: Vector,
    was_grounded: bool,
) -> Moved {
    let mut pose = *start;
    let mut remaining = desired;
    for _ in 0..MAX_SLIDES {
        let Some((dir, len)) = direction(remaining) else {
            break;
        };
        let hit = cast(queries, shape, &pose, dir, len + SKIN)
            .map(|(toi, normal)| (short_of(toi, dir, normal), normal))
            .filter(|&(allowed, _)| allowed < len);
        let Some((allowed, normal)) = hit else {
            pose.translation += remaining;
            break;
        };
        pose.translation += dir * allowed;
        remaining -= dir * allowed;
        let wall = (0.0..MIN_GROUND_NORMAL_Y).contains(&normal.y);
        if wall
            && was_grounded
            && let Some(lift) = step_up(queries, shape, &pose, remaining)
        {
            pose.translation.y += lift;
            continue;
        }
        remaining = along_surface(remaining, normal);
    }
    let mut grounded = false;
    if desired.y <= 0.0 {
        let reach = if was_grounded {
            SNAP_DISTANCE
        } else {
            GROUND_PROBE
        };
        if let Some((toi, normal)) = cast(queries, shape, &pose, Vector::NEG_Y, reach + SKIN)
            && normal.y >= MIN_GROUND_NORMAL_Y
        {
            // Down to a skin above it; up to it, if the sweep ended closer.
            pose.translation.y -= toi - SKIN / normal.y;
            grounded = true;
        }
    }
    Moved {
        translation: pose.translation - start.translation,
        grounded,
    }
}

/// A motion's direction and length, unless it is too short to sweep.
fn direction(motion: Vector) -> Option<(Vector, f32)> {
    let len = motion.length();
    (len > 1.0e-5).then(|| (motion / len, len))
}

/// The first surface `shape` touches when swept from `pose` along the unit `dir` for
/// `len`: how far it got, and the surface's normal.
fn cast(
    queries: &QueryPipeline,
    shape: &dyn Shape,
    pose: &Pose,
    dir: Vector,
    len: f32,
) -> Option<(f32, Vector)> {
    let options = ShapeCastOptions {
        target_distance: 0.0,
        // Starting in contact with a surface it moves along or away from, the sweep goes
        // on; towards it, it stops at once.
        stop_at_penetration: false,
        max_time_of_impact: len,
        compute_impact_geometry_on_penetration: true,
    };
    queries
        .cast_shape(pose, dir, shape, options)
        .map(|(_, hit)| (hit.time_of_impact, hit.normal1))
}

/// How far along `dir` a sweep that touches a surface of `normal` after `toi` may go
/// and stay a [`SKIN`] away from it.
fn short_of(toi: f32, dir: Vector, normal: Vector) -> f32 {
    let approach = (-dir.dot(normal)).max(1.0e-3);
    (toi - SKIN / approach).max(0.0)
}

/// What is left of a motion after meeting a surface: the part into it taken away. On a
/// floor or a ceiling the rest slides along it; on a wall or a slope too steep to stand
/// on, sideways motion slides along it but never up it, and a fall slides down it.
fn along_surface(remaining: Vector, normal: Vector) -> Vector {
    if normal.y >= MIN_GROUND_NORMAL_Y || normal.y < 0.0 {
        return remaining - normal * remaining.dot(normal).min(0.0);
    }
    let flat = Vector::new(normal.x, 0.0, normal.z).normalize_or_zero();
    let across = Vector::new(remaining.x, 0.0, remaining.z);
    let across = across - flat * across.dot(flat).min(0.0);
    let fall = Vector::new(0.0, remaining.y.min(0.0), 0.0);
    let fall = fall - normal * fall.dot(normal).min(0.0);
    across + fall + Vector::new(0.0, remaining.y.max(0.0), 0.0)
}

/// How far up a walking character that ran into a wall at `pose` steps to go on over it:
/// only if there is headroom, and the ledge on top is walkable and leaves room to stand.
fn step_up(
    queries: &QueryPipeline,
    shape: &dyn Shape,
    pose: &Pose,
    remaining: Vector,
) -> Option<f32> {
    let (ahead, _) = direction(Vector::new(remaining.x, 0.0, remaining.z))?;
    if cast(queries, shape, pose, Vector::Y, STEP_HEIGHT + SKIN).is_some() {
        return None;
    }
    let mut raised = *pose;
    raised.translation.y += STEP_HEIGHT;
    if cast(queries, shape, &raised, ahead, STEP_MIN_WIDTH + SKIN).is_some() {
        return None;
    }
    raised.translation += ahead * STEP_MIN_WIDTH;
    let (toi, normal) = cast(queries, shape, &raised, Vector::NEG_Y, STEP_HEIGHT + SKIN)?;
    let lift = STEP_HEIGHT - (toi - SKIN / normal.y.max(1.0e-3));
    (normal.y >= MIN_GROUND_NORMAL_Y && lift > 1.0e-3).then_some(lift)
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

/// Moves every character by this tick's inputs, in entity-id order: each input for the
/// ticks it stands for. A mode whose inputs are laid out as the arena's (its movement
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
            move_character(&mut physics.world, body.0, &input, &mut motion, clock.dt);
        }
    }
}
