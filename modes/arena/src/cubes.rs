//! The cubes scene of Glenn Fiedler's "Snapshot Compression" as a game mode: 901 cubes,
//! one large cube ploughing through the other 900 and throwing them about. It reuses the
//! arena's settings, records and grid (its cubes are the arena's props), so the bandwidth
//! example measures the same codec on Fiedler's scene as on the arena
//! (`examples/bandwidth.rs --scene cubes`).

use bevy_ecs::prelude::*;
use outpost_protocol::replication;
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::{ConfigError, EntityId, MatchConfig, PlayerId};
use outpost_sim::ModeSettings as _;
use outpost_sim::rapier3d::prelude::*;
use outpost_sim::{
    GameMode, MatchClock, NetId, NetIds, Physics, RigidBodyRef, SimError, SplitMix64, TickSet,
};

use crate::{ArenaConfig, EntityKind, Replicated};

/// Fiedler's cubes: a 30×30 grid of small cubes and one large cube driven through them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cubes;

#[derive(Component)]
struct Plough;

#[derive(Resource)]
struct Kicks(SplitMix64);

impl GameMode for Cubes {
    fn name(&self) -> &'static str {
        "cubes"
    }

    /// The cubes are the arena's props on the arena's grid: its settings and schema.
    fn default_config(&self) -> Vec<u8> {
        crate::Arena.default_config()
    }

    fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
        Ok(ModeSchema {
            mode: self.name().into(),
            ..crate::Arena.schema(mode_config)?
        })
    }

    fn setup(
        &self,
        config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError> {
        crate::use_grid(world, &ArenaConfig::of(config)?);
        let spawn = |world: &mut World, at: Vector, half: f32, kind: EntityKind| {
            let id = world.resource_mut::<NetIds>().allocate();
            let mut physics = world.resource_mut::<Physics>();
            let body = physics
                .world
                .insert_body(RigidBodyBuilder::dynamic().translation(at));
            physics.world.insert_collider(
                ColliderBuilder::cuboid(half, half, half).density(1.0),
                Some(body),
            );
            world
                .spawn((NetId(id), Replicated(kind), RigidBodyRef(body)))
                .id()
        };
        {
            let mut physics = world.resource_mut::<Physics>();
            let floor = physics
                .world
                .insert_body(RigidBodyBuilder::fixed().translation(Vector::new(0.0, -0.5, 0.0)));
            physics
                .world
                .insert_collider(ColliderBuilder::cuboid(60.0, 0.5, 60.0), Some(floor));
        }
        let plough = spawn(world, Vector::new(-20.0, 1.0, 0.0), 1.0, EntityKind::Player);
        world.entity_mut(plough).insert(Plough);
        for i in 0..900 {
            let (x, z) = ((i % 30) as f32 - 14.5, (i / 30) as f32 - 14.5);
            spawn(world, Vector::new(x, 0.5, z), 0.45, EntityKind::Prop);
        }
        world.insert_resource(Kicks(SplitMix64::new(7)));
        schedule.add_systems(drive.in_set(TickSet::PrePhysics));
        Ok(())
    }

    fn write_records(&self, world: &mut World, out: &mut replication::View) {
        crate::Arena.write_records(world, out);
    }

    fn spawn_player(
        &self,
        world: &mut World,
        _player: PlayerId,
        _team: u8,
        _net_id: EntityId,
    ) -> Entity {
        world.spawn_empty().id()
    }
}

/// Drives the big cube around a loop through the grid and throws the cubes near it about.
fn drive(
    clock: Res<MatchClock>,
    mut physics: ResMut<Physics>,
    mut kicks: ResMut<Kicks>,
    plough: Query<&RigidBodyRef, With<Plough>>,
) {
    let t = clock.tick as f32 * clock.dt;
    let target = Vector::new(14.0 * (t * 0.4).cos(), 1.0, 14.0 * (t * 0.8).sin());
    let Ok(body) = plough.single() else { return };
    let Some(rb) = physics.world.bodies.get_mut(body.0) else {
        return;
    };
    let at = rb.translation();
    let pull = (target - at) * 4.0 - rb.linvel();
    rb.set_linvel(rb.linvel() + pull * clock.dt * 4.0, true);
    // Cubes near the plough are thrown up and away, as in Fiedler's demo.
    let near: Vec<RigidBodyHandle> = physics
        .world
        .intersect_shape(
            Pose::from_translation(at),
            &Ball::new(4.5),
            QueryFilter::only_dynamic(),
        )
        .filter_map(|(_, c)| c.parent())
        .filter(|h| *h != body.0)
        .collect();
    // Cubes thrown off the floor come back down on it.
    let fallen: Vec<RigidBodyHandle> = physics
        .world
        .rigid_bodies()
        .filter(|(_, rb)| rb.is_dynamic() && rb.translation().y < -2.0)
        .map(|(h, _)| h)
        .collect();
    for handle in fallen {
        let at = Vector::new(kicks.0.range(-14.0, 14.0), 3.0, kicks.0.range(-14.0, 14.0));
        if let Some(cube) = physics.world.bodies.get_mut(handle) {
            cube.set_translation(at, true);
            cube.set_linvel(Vector::ZERO, true);
        }
    }
    for handle in near {
        if !kicks.0.next_u64().is_multiple_of(2) {
            continue;
        }
        if let Some(cube) = physics.world.bodies.get_mut(handle) {
            if cube.linvel().length() > 2.0 {
                continue; // already flying
            }
            let mut away = cube.translation() - at;
            away.y = 0.0;
            let away = away.normalize_or_zero();
            let up = kicks.0.range(0.5, 2.0);
            cube.apply_impulse((away * 2.0 + Vector::new(0.0, up, 0.0)) * cube.mass(), true);
            cube.apply_torque_impulse(
                Vector::new(kicks.0.range(-0.3, 0.3), kicks.0.range(-0.3, 0.3), 0.0),
                true,
            );
        }
    }
}
