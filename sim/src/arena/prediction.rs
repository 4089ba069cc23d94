//! Client-side prediction: the player's own character, moved by the same
//! [`move_character`] the edge runs, in a local copy of the level with the other entities
//! standing where the latest snapshot put them.

use crate::arena::types::{EntityKind, EntityState, PlayerInput};
use std::collections::HashMap;

use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{EntityId, MatchConfig};
use rapier3d::prelude::*;

use super::movement::move_character;
use super::{CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS, build_level};
use crate::components::Motion;
use crate::game::SimError;

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
        let dt = 1.0 / f32::from(config.tick_hz);
        let mut physics = PhysicsWorld::default();
        physics.integration_parameters.dt = dt;
        build_level(
            &mut physics,
            settings.half_extent,
            &mut SplitMix64::new(config.seed),
        );
        let body = physics.insert_body(RigidBodyBuilder::kinematic_position_based());
        physics.insert_collider(
            ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS),
            Some(body),
        );
        physics.step();
        Ok(Self {
            physics,
            body,
            motion: Motion::default(),
            dt,
            obstacles: HashMap::new(),
        })
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

    /// Places the other characters in `entities` (all but `own`) as obstacles.
    ///
    /// Props are left out on purpose: on the server a character running into a box
    /// knocks it aside within a tick and carries on, while a box frozen where the last
    /// snapshot showed it would block the prediction until the next reconciliation — a
    /// whole round trip of error. Passing through props is the closer guess.
    pub fn set_obstacles<'a>(
        &mut self,
        entities: impl IntoIterator<Item = &'a EntityState>,
        own: EntityId,
    ) {
        let mut seen = Vec::new();
        for entity in entities {
            if entity.id == own || entity.kind != EntityKind::Player {
                continue;
            }
            seen.push(entity.id);
            let pose = Pose::from_parts(
                Vector::new(entity.position[0], entity.position[1], entity.position[2]),
                Rotation::from_xyzw(
                    entity.rotation[0],
                    entity.rotation[1],
                    entity.rotation[2],
                    entity.rotation[3],
                ),
            );
            let handle = match self.obstacles.get(&entity.id) {
                Some(&handle) => handle,
                None => {
                    let handle = self
                        .physics
                        .insert_body(RigidBodyBuilder::kinematic_position_based().pose(pose));
                    let shape = ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS);
                    self.physics.insert_collider(shape, Some(handle));
                    self.obstacles.insert(entity.id, handle);
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

    /// Applies one input, as the edge does (once per tick it stands for), and returns
    /// the new position.
    pub fn apply(&mut self, input: &PlayerInput) -> [f32; 3] {
        for _ in 0..input.ticks {
            move_character(
                &mut self.physics,
                self.body,
                input,
                &mut self.motion,
                self.dt,
            );
            self.physics.step();
        }
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
