//! rapier3d inside the ECS: the physics world as a resource, and its collision events.

use std::sync::Mutex;

use bevy_ecs::prelude::*;
use rapier3d::prelude::*;

/// The physics world of a match.
#[derive(Resource, Default)]
pub struct Physics {
    /// Bodies, colliders, pipelines, broad and narrow phases.
    pub world: PhysicsWorld,
}

/// Collision starts and stops from the latest physics step, for modes to react to.
#[derive(Resource, Default)]
pub struct Collisions {
    /// Events of the latest step, in the order rapier reported them.
    pub events: Vec<CollisionEvent>,
}

/// Gathers rapier's events during a step (rapier calls it through `&self`).
#[derive(Default)]
struct Collector(Mutex<Vec<CollisionEvent>>);

impl EventHandler for Collector {
    fn handle_collision_event(
        &self,
        _bodies: &RigidBodySet,
        _colliders: &ColliderSet,
        event: CollisionEvent,
        _contact_pair: Option<&ContactPair>,
    ) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }

    fn handle_contact_force_event(
        &self,
        _dt: Real,
        _bodies: &RigidBodySet,
        _colliders: &ColliderSet,
        _contact_pair: &ContactPair,
        _total_force_magnitude: Real,
    ) {
    }

    fn handle_soft_body_tear_event(&self, _soft_bodies: &SoftBodySet, _event: &SoftBodyTearEvent) {}
}

/// Steps physics once and publishes the step's collision events.
pub(crate) fn step_physics(mut physics: ResMut<Physics>, mut collisions: ResMut<Collisions>) {
    let collector = Collector::default();
    physics.world.step_with_events(&(), &collector);
    collisions.events = collector.0.into_inner().unwrap_or_default();
}
