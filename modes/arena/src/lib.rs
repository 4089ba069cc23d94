//! # outpost-arena
//!
//! The arena game mode: a walled floor with pillars, boxes to push, and players with
//! hitscan weapons scoring a point per hit. It is written on `outpost-sim`'s mode API
//! alone ([`GameMode`]), as any studio's mode would be: its settings ([`ArenaConfig`]),
//! its schema ([`schema`]), its systems (movement, combat with lag compensation), its
//! client-side prediction ([`ArenaPrediction`]) and its typed input and components.
//!
//! ```
//! use outpost_arena::{ArenaConfig, PlayerInput};
//! use outpost_protocol::{MatchId, PlayerId};
//! use outpost_sim::Match;
//!
//! let config = outpost_arena::config(&ArenaConfig::default());
//! let mut game = Match::new(MatchId(1), &config, &outpost_arena::modes())?;
//! let me = game.add_player(PlayerId(7))?;
//! game.push_input(PlayerId(7), PlayerInput { seq: 1, move_z: 127, ..Default::default() });
//! for _ in 0..30 {
//!     game.step();
//! }
//! let state = outpost_arena::entity_states(&mut game);
//! assert!(state.iter().any(|e| e.id == me));
//! # Ok::<(), outpost_sim::SimError>(())
//! ```

pub mod bot;
pub mod combat;
pub mod cubes;
pub mod movement;
pub mod prediction;
pub mod quantize;
pub mod schema;
pub mod types;

use bevy_ecs::prelude::*;
use outpost_protocol::replication::View;
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::{ConfigError, EntityId, MatchConfig, PlayerId, encode_mode_config};
use rapier3d::prelude::*;
use wincode::{SchemaRead, SchemaWrite};

use outpost_protocol::rng::SplitMix64;
use outpost_sim::{GameMode, Match, Modes, Physics};
use outpost_sim::{
    ModeSettings, NetIds, ScoreLimit, SettingError, SimError, TickSet, parse_setting,
};
use outpost_sim::{Motion, NetId, RigidBodyRef};

pub use combat::HitboxHistory;
pub use movement::{Character, move_character};
pub use prediction::{ArenaPrediction, Predictor};
pub use quantize::Quantizer;
pub use schema::{CHARACTER, Hit, MOTION, MotionState, POSE, PROP, Position, Rotation};
pub use schema::{
    decode_inputs, encode_inputs, entities, entity_view, from_replicated, input_from_record,
    input_record, motion_slots, movement_input, pose_components, records, replicated,
    replicated_into, schema,
};
pub use types::{EntityKind, EntityState, EntityView, PlayerInput, QMotion};

/// Half-height of the cylindrical part of a character's capsule, metres.
pub const CAPSULE_HALF_HEIGHT: f32 = 0.5;
/// Radius of a character's capsule, metres.
pub const CAPSULE_RADIUS: f32 = 0.4;
/// Half the side of a prop box, metres.
pub const PROP_HALF_EXTENT: f32 = 0.5;
/// Height of the arena's walls, metres.
pub const WALL_HEIGHT: f32 = 4.0;
/// Fraction of the arena's half extent around the centre kept free of pillars.
pub const CLEAR_CENTRE_RADIUS: f32 = 0.35;
/// Anything below this height has fallen out of the arena and is put back.
pub const KILL_HEIGHT: f32 = -10.0;

/// The arena game mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct Arena;

/// A registry of the arena alone.
pub fn modes() -> Modes {
    Modes::new().with(Arena)
}

/// Marks an entity as replicated to clients, and as what.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicated(pub EntityKind);

/// Every replicated entity of an arena match as its typed state, by entity id: the
/// truth, before quantization (velocity from the character's motion, or the body's).
pub fn entity_states(game: &mut Match) -> Vec<EntityState> {
    let mut out = Vec::new();
    write_entity_states(game.world_mut(), &mut out);
    out
}

/// [`entity_states`] into `out` (cleared first), from a world.
pub fn write_entity_states(world: &mut World, out: &mut Vec<EntityState>) {
    out.clear();
    let mut query: ReplicatedQuery = world.query();
    for (id, kind, rb, motion) in replicated_bodies(world, &mut query) {
        let p = rb.translation();
        let r = rb.rotation();
        let v = motion.map_or_else(
            || {
                let v = rb.linvel();
                [v.x, v.y, v.z]
            },
            |m| m.velocity,
        );
        out.push(EntityState {
            id,
            kind,
            position: [p.x, p.y, p.z],
            rotation: [r.x, r.y, r.z, r.w],
            velocity: v,
        });
    }
    out.sort_unstable_by_key(|e| e.id);
}

/// Number of replicated entities of a kind in an arena match.
pub fn count_of(game: &mut Match, kind: EntityKind) -> usize {
    let world = game.world_mut();
    let mut query = world.query::<&Replicated>();
    query.iter(world).filter(|r| r.0 == kind).count()
}

/// Each replicated entity with its body (one whose body is gone is left out).
fn replicated_bodies<'w>(
    world: &'w World,
    query: &'w mut ReplicatedQuery,
) -> impl Iterator<Item = (EntityId, EntityKind, &'w RigidBody, Option<&'w Motion>)> {
    let physics = world.resource::<Physics>();
    query
        .iter(world)
        .filter_map(move |(net_id, replicated, body, motion)| {
            Some((
                net_id.0,
                replicated.0,
                physics.world.bodies.get(body.0)?,
                motion,
            ))
        })
}

/// The records of a match's replicated entities, sorted by id, into `out`.
fn write_rows(
    world: &World,
    quantizer: Quantizer,
    query: &mut ReplicatedQuery,
    rows: &mut Vec<(EntityId, u64, [u32; 11], usize)>,
    out: &mut View,
) {
    rows.clear();
    for (id, kind, rb, motion) in replicated_bodies(world, query) {
        let p = rb.translation();
        let r = rb.rotation();
        let mut slots = [0u32; 11];
        let [x, y, z] = quantizer.position([p.x, p.y, p.z]).0;
        let rotation = quantize::rotation([r.x, r.y, r.z, r.w]);
        slots[..7].copy_from_slice(&[
            x,
            y,
            z,
            u32::from(rotation.largest),
            u32::from(rotation.components[0]),
            u32::from(rotation.components[1]),
            u32::from(rotation.components[2]),
        ]);
        let mut mask = POSE
            | match kind {
                EntityKind::Player => CHARACTER,
                EntityKind::Prop => PROP,
            };
        let mut len = 7;
        if let Some(m) = motion {
            mask |= MOTION;
            slots[7..].copy_from_slice(&motion_slots(&QMotion {
                velocity: quantize::velocity(m.velocity),
                grounded: m.grounded,
            }));
            len = 11;
        }
        rows.push((id, mask, slots, len));
    }
    rows.sort_unstable_by_key(|row| row.0);
    for (id, mask, slots, len) in rows.iter() {
        out.push(*id, *mask, &slots[..*len]);
    }
}

/// The arena's own settings, carried as [`MatchConfig::mode_config`].
#[derive(Debug, Clone, Copy, PartialEq, SchemaWrite, SchemaRead)]
pub struct ArenaConfig {
    /// A player reaching this score ends the match; 0 means no limit. Default 25.
    pub score_limit: u32,
    /// Dynamic props (boxes). Default 40; at most 4096.
    pub props: u16,
    /// Half the side of the square floor, metres. Default 40; 8..=1000. Everything
    /// replicated stays inside these bounds.
    pub half_extent: f32,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        Self {
            score_limit: 25,
            props: 40,
            half_extent: 40.0,
        }
    }
}

impl ModeSettings for ArenaConfig {
    const NAMES: &'static [&'static str] = &["score_limit", "props", "half_extent"];

    fn validate(&self) -> Result<(), ConfigError> {
        if self.props > 4096 {
            return Err(ConfigError::new("props", "must be at most 4096"));
        }
        if !(self.half_extent.is_finite() && (8.0..=1000.0).contains(&self.half_extent)) {
            return Err(ConfigError::new("half_extent", "must be 8..=1000 metres"));
        }
        Ok(())
    }

    fn set_one(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        match name {
            "score_limit" => self.score_limit = parse_setting(name, value)?,
            "props" => self.props = parse_setting(name, value)?,
            "half_extent" => self.half_extent = parse_setting(name, value)?,
            _ => return Err(Self::unknown(name)),
        }
        Ok(())
    }
}

impl ArenaConfig {
    /// The position grid of a match with these settings.
    pub fn quantizer(&self) -> Quantizer {
        Quantizer::for_floor(self.half_extent)
    }
}

/// An arena match with these settings and the core's defaults, its schema hash filled.
/// (Not validated: [`outpost_sim::Match::new`] and the edge refuse what is out of bounds.)
pub fn config(settings: &ArenaConfig) -> MatchConfig {
    let mut config = MatchConfig::new(Arena.name());
    config.mode_config = encode_mode_config(settings);
    config.schema_hash = schema(settings).hash();
    config
}

/// Gives a world the arena's position grid for these settings, which
/// [`GameMode::write_records`] quantizes with (for scenes that reuse the arena's records).
pub fn use_grid(world: &mut World, settings: &ArenaConfig) {
    let replicated = world.query();
    world.insert_resource(ArenaGrid {
        quantizer: settings.quantizer(),
        rows: Vec::new(),
        replicated,
    });
}

/// What a replicated entity's record is written from.
type ReplicatedQuery = QueryState<(
    &'static NetId,
    &'static Replicated,
    &'static RigidBodyRef,
    Option<&'static Motion>,
)>;

/// The match's position grid, and what [`GameMode::write_records`] reuses from snapshot
/// to snapshot: its rows, and its query (made once: a query's making, its access sets
/// and archetype matching, cost more than its walk over a match's few dozen entities).
#[derive(Resource)]
struct ArenaGrid {
    quantizer: Quantizer,
    rows: Vec<(EntityId, u64, [u32; 11], usize)>,
    replicated: ReplicatedQuery,
}

/// Where players appear, by seat.
#[derive(Resource, Debug, Clone)]
pub struct SpawnPoints(pub Vec<Vector>);

/// The arena's per-player stats ([`GameMode::stats`]): shots fired and hits taken (the
/// score counts hits landed).
pub const STATS: [&str; 2] = ["shots", "hits_taken"];
/// Index of `shots` in [`STATS`].
pub const STAT_SHOTS: usize = 0;
/// Index of `hits_taken` in [`STATS`].
pub const STAT_HITS_TAKEN: usize = 1;

impl GameMode for Arena {
    fn name(&self) -> &'static str {
        "arena"
    }

    fn stats(&self) -> &'static [&'static str] {
        &STATS
    }

    fn default_config(&self) -> Vec<u8> {
        ArenaConfig::default().encode()
    }

    fn set(&self, mode_config: &[u8], name: &str, value: &str) -> Result<Vec<u8>, SettingError> {
        ArenaConfig::set_encoded(mode_config, name, value)
    }

    fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
        Ok(schema(&ArenaConfig::decode(mode_config)?))
    }

    fn setup(
        &self,
        config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError> {
        let settings = ArenaConfig::of(config)?;
        let half = settings.half_extent;
        let mut rng = SplitMix64::new(config.seed);
        build_level(&mut world.resource_mut::<Physics>().world, half, &mut rng);
        world.insert_resource(ScoreLimit(settings.score_limit));
        use_grid(world, &settings);
        for _ in 0..settings.props {
            let at = Vector::new(
                rng.range(-0.8 * half, 0.8 * half),
                rng.range(PROP_HALF_EXTENT, 4.0),
                rng.range(-0.8 * half, 0.8 * half),
            );
            spawn_prop(world, at);
        }
        let ring = 0.6 * half;
        let spawns = (0..config.max_players)
            .map(|i| {
                let angle = f32::from(i) * std::f32::consts::TAU / f32::from(config.max_players);
                Vector::new(ring * angle.cos(), spawn_height(), ring * angle.sin())
            })
            .collect();
        world.insert_resource(SpawnPoints(spawns));

        let history_ticks = usize::from(config.tick_hz);
        let max_rewind = u32::from(config.max_rewind_ms) * u32::from(config.tick_hz) / 1000;
        world.insert_resource(HitboxHistory::new(history_ticks, max_rewind));
        schedule.add_systems(movement::move_characters.in_set(TickSet::PrePhysics));
        schedule.add_systems(combat::record_hitboxes.in_set(TickSet::Record));
        schedule.add_systems(
            (combat::fire_weapons, keep_in_bounds)
                .chain()
                .in_set(TickSet::PostPhysics),
        );
        Ok(())
    }

    fn write_records(&self, world: &mut World, out: &mut View) {
        world.resource_scope(|world, mut grid: Mut<ArenaGrid>| {
            let ArenaGrid {
                quantizer,
                rows,
                replicated,
            } = &mut *grid;
            write_rows(world, *quantizer, replicated, rows, out);
        });
    }

    fn prediction(
        &self,
        config: &MatchConfig,
        _own: EntityId,
    ) -> Option<Box<dyn outpost_sim::Prediction>> {
        let predictor = Predictor::new(config).ok()?;
        Some(Box::new(ArenaPrediction(predictor)))
    }

    fn bot(&self, _config: &MatchConfig, seed: u64) -> Option<Box<dyn outpost_sim::Bot>> {
        Some(Box::new(bot::ArenaBot::new(seed)))
    }

    fn spawn_player(
        &self,
        world: &mut World,
        _player: PlayerId,
        _team: u8,
        net_id: EntityId,
    ) -> Entity {
        let spawns = world.resource::<SpawnPoints>();
        let seat = (net_id.0 as usize) % spawns.0.len().max(1);
        let at = spawns
            .0
            .get(seat)
            .copied()
            .unwrap_or(Vector::new(0.0, spawn_height(), 0.0));
        let body = spawn_character_body(world, at, net_id);
        world
            .spawn((
                Replicated(EntityKind::Player),
                RigidBodyRef(body),
                Character::default(),
                Motion::default(),
            ))
            .id()
    }
}

/// A character's body at a point: a kinematic capsule the arena's movement drives, its
/// collider tagged with the entity's network id (what hitscan reports).
pub fn spawn_character_body(world: &mut World, at: Vector, net_id: EntityId) -> RigidBodyHandle {
    let mut physics = world.resource_mut::<Physics>();
    let body = physics
        .world
        .insert_body(RigidBodyBuilder::kinematic_position_based().translation(at));
    physics.world.insert_collider(
        ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS)
            .user_data(u128::from(net_id.0)),
        Some(body),
    );
    body
}

/// Spawns a dynamic prop box at a point; returns its network id.
pub fn spawn_prop(world: &mut World, at: Vector) -> EntityId {
    let net_id = world.resource_mut::<NetIds>().allocate();
    let mut physics = world.resource_mut::<Physics>();
    let body = physics
        .world
        .insert_body(RigidBodyBuilder::dynamic().translation(at));
    physics.world.insert_collider(
        ColliderBuilder::cuboid(PROP_HALF_EXTENT, PROP_HALF_EXTENT, PROP_HALF_EXTENT)
            .user_data(u128::from(net_id.0))
            .friction(0.6),
        Some(body),
    );
    world.spawn((
        NetId(net_id),
        Replicated(EntityKind::Prop),
        RigidBodyRef(body),
    ));
    net_id
}

/// Height of a character's centre standing on the floor.
pub fn spawn_height() -> f32 {
    CAPSULE_HALF_HEIGHT + CAPSULE_RADIUS + 0.05
}

/// The static level: floor, four walls, a few pillars placed by the seed.
pub fn build_level(physics: &mut PhysicsWorld, half: f32, rng: &mut SplitMix64) {
    let fixed = |physics: &mut PhysicsWorld, at: Vector, half_extents: Vector| {
        let body = physics.insert_body(RigidBodyBuilder::fixed().translation(at));
        physics.insert_collider(
            ColliderBuilder::cuboid(half_extents.x, half_extents.y, half_extents.z)
                .user_data(0)
                .friction(0.8),
            Some(body),
        );
    };
    fixed(
        physics,
        Vector::new(0.0, -0.5, 0.0),
        Vector::new(half + 1.0, 0.5, half + 1.0),
    );
    let wall_y = WALL_HEIGHT / 2.0;
    for (x, z, hx, hz) in [
        (half + 0.5, 0.0, 0.5, half + 1.0),
        (-half - 0.5, 0.0, 0.5, half + 1.0),
        (0.0, half + 0.5, half + 1.0, 0.5),
        (0.0, -half - 0.5, half + 1.0, 0.5),
    ] {
        fixed(
            physics,
            Vector::new(x, wall_y, z),
            Vector::new(hx, wall_y, hz),
        );
    }
    // Pillars stand in a ring, leaving the middle open: a clear centre for fights.
    let pillars = (half / 5.0) as usize;
    for _ in 0..pillars {
        let angle = rng.range(0.0, std::f32::consts::TAU);
        let radius = rng.range(CLEAR_CENTRE_RADIUS * half, 0.9 * half);
        let at = Vector::new(radius * angle.cos(), 1.5, radius * angle.sin());
        fixed(physics, at, Vector::new(0.75, 1.5, 0.75));
    }
}

/// Puts back whatever fell out of the arena.
fn keep_in_bounds(
    mut physics: ResMut<Physics>,
    entities: Query<(&RigidBodyRef, &Replicated)>,
    spawns: Res<SpawnPoints>,
) {
    for (body, replicated) in &entities {
        let Some(rb) = physics.world.bodies.get_mut(body.0) else {
            continue;
        };
        if rb.translation().y >= KILL_HEIGHT {
            continue;
        }
        match replicated.0 {
            EntityKind::Player => {
                let at = spawns
                    .0
                    .first()
                    .copied()
                    .unwrap_or(Vector::new(0.0, spawn_height(), 0.0));
                rb.set_translation(at, true);
                rb.set_next_kinematic_translation(at);
            }
            EntityKind::Prop => {
                rb.set_translation(Vector::new(0.0, 2.0, 0.0), true);
                rb.set_linvel(Vector::ZERO, true);
                rb.set_angvel(Vector::ZERO, true);
            }
        }
    }
}
