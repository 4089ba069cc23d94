//! Client-side prediction: the player's own character, moved by the same
//! [`move_character`] the edge runs, in a local copy of the level with the other entities
//! standing where the latest snapshot put them.

use crate::types::PlayerInput;
use outpost_sim::ModeSettings as _;
use std::collections::HashMap;

use crate::quantize;
use outpost_protocol::replication::{Fields, InputRecord, View};
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{EntityId, MatchConfig};
use rapier3d::prelude::*;

use super::movement::move_character;
use super::schema::{MotionState, Position, Rotation, input_from_record};
use super::{CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS, build_level};
use outpost_sim::Motion;
use outpost_sim::SimError;

/// Other characters closer than this to the predicted one are placed in its world.
const OBSTACLE_RADIUS: f32 = 8.0;

/// One character's predicted movement.
pub struct Predictor {
    physics: PhysicsWorld,
    body: RigidBodyHandle,
    motion: Motion,
    dt: f32,
    obstacles: HashMap<EntityId, RigidBodyHandle>,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("position", &self.position())
            .field("motion", &self.motion)
            .finish()
    }
}

impl Predictor {
    /// A predictor for a match: its level, and a character at the origin.
    pub fn new(config: &MatchConfig) -> Result<Self, SimError> {
        config.validate()?;
        let settings = super::ArenaConfig::of(config)?;
        Ok(Self::for_level(
            settings.half_extent,
            config.seed,
            config.tick_hz,
        ))
    }

    /// A predictor in the arena's level of this size and seed ([`build_level`]), at a tick
    /// rate: for modes played on the arena's level.
    pub fn for_level(half_extent: f32, seed: u64, tick_hz: u16) -> Self {
        let dt = 1.0 / f32::from(tick_hz.max(1));
        let mut physics = PhysicsWorld::default();
        physics.integration_parameters.dt = dt;
        build_level(&mut physics, half_extent, &mut SplitMix64::new(seed));
        let body = physics.insert_body(RigidBodyBuilder::kinematic_position_based());
        physics.insert_collider(
            ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS),
            Some(body),
        );
        physics.step();
        Self {
            physics,
            body,
            motion: Motion::default(),
            dt,
            obstacles: HashMap::new(),
        }
    }

    /// Puts the character where the server says it is.
    pub fn reset(&mut self, position: [f32; 3], motion: Motion) {
        let at = Vector::new(position[0], position[1], position[2]);
        if let Some(rb) = self.physics.bodies.get_mut(self.body) {
            rb.set_translation(at, true);
            rb.set_next_kinematic_translation(at);
        }
        // Rapier treats a set position as a teleport on the next step, overriding any
        // kinematic target set before it: take that step now, so the next input moves.
        self.physics.step();
        self.motion = motion;
    }

    /// Places other characters as obstacles: each with its id, position and rotation
    /// (`x, y, z, w`); those of an earlier call not named again are taken away.
    pub fn set_obstacles(
        &mut self,
        characters: impl IntoIterator<Item = (EntityId, [f32; 3], [f32; 4])>,
    ) {
        let mut seen = Vec::new();
        for (id, position, rotation) in characters {
            seen.push(id);
            let pose = Pose::from_parts(
                Vector::new(position[0], position[1], position[2]),
                rapier3d::math::Rotation::from_xyzw(
                    rotation[0],
                    rotation[1],
                    rotation[2],
                    rotation[3],
                ),
            );
            let handle = match self.obstacles.get(&id) {
                Some(&handle) => handle,
                None => {
                    let handle = self
                        .physics
                        .insert_body(RigidBodyBuilder::kinematic_position_based().pose(pose));
                    let shape = ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS);
                    self.physics.insert_collider(shape, Some(handle));
                    self.obstacles.insert(id, handle);
                    handle
                }
            };
            if let Some(rb) = self.physics.bodies.get_mut(handle) {
                rb.set_next_kinematic_position(pose);
            }
        }
        let stale: Vec<EntityId> = self
            .obstacles
            .keys()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        for id in stale {
            if let Some(handle) = self.obstacles.remove(&id) {
                self.physics.remove_body_with_colliders(handle, true);
            }
        }
        // Bring the obstacles' new places into the scene queries, as a tick would.
        self.physics.step();
    }

    /// Applies one input, as the edge does (for the ticks it stands for), and returns
    /// the new position.
    pub fn apply(&mut self, input: &PlayerInput) -> [f32; 3] {
        move_character(
            &mut self.physics,
            self.body,
            input,
            &mut self.motion,
            self.dt,
        );
        self.physics.step();
        self.position()
    }

    /// The character's position.
    pub fn position(&self) -> [f32; 3] {
        self.physics.bodies.get(self.body).map_or([0.0; 3], |rb| {
            let p = rb.translation();
            [p.x, p.y, p.z]
        })
    }

    /// The character's motion.
    pub fn motion(&self) -> Motion {
        self.motion
    }
}

/// The arena's [`outpost_sim::Prediction`]: the own character moved by [`move_character`] in a
/// copy of the level, with the other characters near it standing where the server's view
/// put them.
///
/// Props are left out on purpose: on the server a character running into a box knocks
/// it aside within a tick and carries on, while a box frozen where the last snapshot
/// showed it would block the prediction until the next reconciliation — a whole round
/// trip of error. Passing through props is the closer guess.
#[derive(Debug)]
pub struct ArenaPrediction(pub Predictor);

impl outpost_sim::Prediction for ArenaPrediction {
    fn reset(&mut self, fields: &Fields, view: &View, own: EntityId) -> bool {
        let Some(Position(at)) = view.find(own).and_then(|r| fields.get::<Position>(&r)) else {
            return false;
        };
        let motion = view
            .find(own)
            .and_then(|r| fields.get::<MotionState>(&r))
            .map_or_else(Motion::default, |m| Motion {
                velocity: m.velocity,
                grounded: m.grounded,
            });
        let near = view.iter().filter_map(|r| {
            if r.id == own || !fields.has(&r, "character") {
                return None;
            }
            let Position(p) = fields.get::<Position>(&r)?;
            let Rotation(q) = fields.get::<Rotation>(&r)?;
            let d = (0..3).map(|i| (p[i] - at[i]).powi(2)).sum::<f32>().sqrt();
            (d < OBSTACLE_RADIUS).then_some((r.id, p, q))
        });
        self.0.set_obstacles(near.collect::<Vec<_>>());
        // The server's position arrives rounded to the 2 mm grid; rounded down, it can sit
        // inside the movement's skin above the floor. Start one grid step higher: the
        // sweep's ground probe settles it back to a skin above the floor.
        self.0
            .reset([at[0], at[1] + quantize::POSITION_STEP, at[2]], motion);
        true
    }

    fn apply(&mut self, input: &InputRecord) {
        if let Some(input) = input_from_record(input) {
            self.0.apply(&input);
        }
    }

    fn position(&self) -> [f32; 3] {
        self.0.position()
    }

    fn velocity(&self) -> [f32; 3] {
        self.0.motion().velocity
    }
}
