//! # outpost-ar
//!
//! The AR shared space, written on `outpost-sim`'s mode API alone. A match is a **room**:
//! a volume anchored to one shared frame (the room's `anchor`, an id the devices agree
//! on; colocalising against it stays on the device and its platform). Every position in
//! the room is in that frame, metres, y up, the floor at y = 0.
//!
//! - **Devices own their poses.** Each input carries the device's head pose and up to two
//!   hand (or controller) poses with their grip buttons ([`ArInput`]), sent at up to the
//!   tick rate. The edge never trusts them: a pose outside the room's volume, faster than
//!   [`ArConfig::max_head_speed`] / [`ArConfig::max_hand_speed`], accelerating harder
//!   than the acceleration bounds, or a hand farther than [`ARM_REACH`] from the head is
//!   clamped to the nearest allowed pose and counted (the `pose_violations` stat and
//!   [`ArStats`]). Peers see the accepted poses (`position`, `rotation` and `hands`).
//! - **The edge owns shared objects**: rapier bodies from a small catalogue
//!   ([`Shape`]), on the room's floor and walls. A hand closing its grip near a free
//!   object grabs it; of several grabs of one object in one tick the nearest hand (to
//!   the centimetre) wins, then the lower device id, then the left hand (the others count as
//!   `ownership_conflicts`). The holder's hand drives the object kinematically; opening
//!   the grip releases it with the hand's velocity (a throw above 1 m/s). A holder whose
//!   connection is lost keeps it for [`ArConfig::holder_timeout_s`], then it drops.
//!
//! - **Devices upload what they scanned** ([`geometry`]): planes and meshes become static
//!   colliders that every object collides with, the same for everyone, and `surface`
//!   entities every device receives. An object thrown that then touches one has *landed
//!   on uploaded geometry* (the `landings` stat).
//!
//! Replicated: each device (`device`, `position` and `rotation` of the head, `hands`),
//! each object (`object`: its shape and holder; `position`, `rotation`) and each surface
//! (`surface`, `position`, `rotation`). Events: `grab`, `release`. Requests: `plane`,
//! `mesh`, `remove`.

pub mod bot;
pub mod geometry;
mod vec3;

use bevy_ecs::prelude::*;
use outpost_protocol::replication::{Fields, InputRecord, Row, View};
use outpost_protocol::schema::{
    ComponentDef, EventDef, FieldDef, FieldKind, ModeSchema, Value, Visibility,
};
use outpost_protocol::{
    ConfigError, EntityId, MatchConfig, MatchEvent, PlayerId, encode_mode_config,
};
use outpost_sim::rapier3d::prelude::*;
use outpost_sim::{
    Controls, GameMode, IntoInput, Linger, MatchClock, MatchEvents, ModeSettings, Modes, NetId,
    NetIds, Physics, PlayerSlot, RigidBodyRef, SettingError, SimError, TickSet, parse_setting,
};
use wincode::{SchemaRead, SchemaWrite};

use crate::vec3::{Map2, add, length, limit, scale, sub};

/// The modes this crate brings: the AR shared space.
pub fn modes() -> Modes {
    Modes::new().with(Ar)
}

/// The AR shared space.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ar;

/// A room's settings, carried as [`MatchConfig::mode_config`].
#[derive(Debug, Clone, Copy, PartialEq, SchemaWrite, SchemaRead)]
pub struct ArConfig {
    /// The shared anchor every pose is relative to (the id the devices' platform gave
    /// the anchor they colocalised against).
    pub anchor: u64,
    /// Half the room's width along x, metres; 0.5..=30, default 4.
    pub half_x: f32,
    /// Half the room's depth along z, metres; 0.5..=30, default 4.
    pub half_z: f32,
    /// The room's height, metres; 1..=10, default 3.
    pub height: f32,
    /// Fastest a head moves, m/s; 0.5..=20, default 6.
    pub max_head_speed: f32,
    /// Fastest a hand moves, m/s; 1..=50, default 20.
    pub max_hand_speed: f32,
    /// Hardest a head accelerates, m/s²; 1..=1000, default 60.
    pub max_head_accel: f32,
    /// Hardest a hand accelerates, m/s²; 1..=5000, default 400.
    pub max_hand_accel: f32,
    /// Shared objects in the room; 0..=200, default 12.
    pub objects: u16,
    /// Seconds a disconnected device keeps what it holds; 0.1..=60, default 3.
    pub holder_timeout_s: f32,
    /// Seconds the room goes on after its last device left, its state kept for whoever
    /// joins next; 0..=3600, default 120.
    pub linger_s: u16,
    /// Planes one device may have in the room; 0..=256, default 32.
    pub device_planes: u16,
    /// Planes the room holds; 0..=1024, default 256.
    pub room_planes: u16,
    /// Mesh triangles one device may have in the room; 0..=262144, default 16384.
    pub device_triangles: u32,
    /// Mesh triangles the room holds; 0..=1048576, default 65536.
    pub room_triangles: u32,
}

impl Default for ArConfig {
    fn default() -> Self {
        Self {
            anchor: 0,
            half_x: 4.0,
            half_z: 4.0,
            height: 3.0,
            max_head_speed: 6.0,
            max_hand_speed: 20.0,
            max_head_accel: 60.0,
            max_hand_accel: 400.0,
            objects: 12,
            holder_timeout_s: 3.0,
            linger_s: 120,
            device_planes: 32,
            room_planes: 256,
            device_triangles: 16_384,
            room_triangles: 65_536,
        }
    }
}

impl ModeSettings for ArConfig {
    const NAMES: &'static [&'static str] = &[
        "anchor",
        "half_x",
        "half_z",
        "height",
        "max_head_speed",
        "max_hand_speed",
        "max_head_accel",
        "max_hand_accel",
        "objects",
        "holder_timeout_s",
        "linger_s",
        "device_planes",
        "room_planes",
        "device_triangles",
        "room_triangles",
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        let within = |v: f32, lo: f32, hi: f32| v.is_finite() && (lo..=hi).contains(&v);
        let checks = [
            (
                within(self.half_x, 0.5, 30.0),
                "half_x",
                "must be 0.5..=30 metres",
            ),
            (
                within(self.half_z, 0.5, 30.0),
                "half_z",
                "must be 0.5..=30 metres",
            ),
            (
                within(self.height, 1.0, 10.0),
                "height",
                "must be 1..=10 metres",
            ),
            (
                within(self.max_head_speed, 0.5, 20.0),
                "max_head_speed",
                "must be 0.5..=20 m/s",
            ),
            (
                within(self.max_hand_speed, 1.0, 50.0),
                "max_hand_speed",
                "must be 1..=50 m/s",
            ),
            (
                within(self.max_head_accel, 1.0, 1000.0),
                "max_head_accel",
                "must be 1..=1000 m/s²",
            ),
            (
                within(self.max_hand_accel, 1.0, 5000.0),
                "max_hand_accel",
                "must be 1..=5000 m/s²",
            ),
            (
                self.objects <= MAX_OBJECTS,
                "objects",
                "must be at most 200",
            ),
            (
                within(self.holder_timeout_s, 0.1, 60.0),
                "holder_timeout_s",
                "must be 0.1..=60 seconds",
            ),
            (
                self.linger_s <= 3600,
                "linger_s",
                "must be at most 3600 seconds",
            ),
            (
                self.device_planes <= 256,
                "device_planes",
                "must be at most 256",
            ),
            (
                self.room_planes <= 1024,
                "room_planes",
                "must be at most 1024",
            ),
            (
                self.device_triangles <= 262_144,
                "device_triangles",
                "must be at most 262144",
            ),
            (
                self.room_triangles <= 1_048_576,
                "room_triangles",
                "must be at most 1048576",
            ),
        ];
        for (ok, field, reason) in checks {
            if !ok {
                return Err(ConfigError::new(field, reason));
            }
        }
        Ok(())
    }

    fn set_one(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        match name {
            "anchor" => self.anchor = parse_setting(name, value)?,
            "half_x" => self.half_x = parse_setting(name, value)?,
            "half_z" => self.half_z = parse_setting(name, value)?,
            "height" => self.height = parse_setting(name, value)?,
            "max_head_speed" => self.max_head_speed = parse_setting(name, value)?,
            "max_hand_speed" => self.max_hand_speed = parse_setting(name, value)?,
            "max_head_accel" => self.max_head_accel = parse_setting(name, value)?,
            "max_hand_accel" => self.max_hand_accel = parse_setting(name, value)?,
            "objects" => self.objects = parse_setting(name, value)?,
            "holder_timeout_s" => self.holder_timeout_s = parse_setting(name, value)?,
            "linger_s" => self.linger_s = parse_setting(name, value)?,
            "device_planes" => self.device_planes = parse_setting(name, value)?,
            "room_planes" => self.room_planes = parse_setting(name, value)?,
            "device_triangles" => self.device_triangles = parse_setting(name, value)?,
            "room_triangles" => self.room_triangles = parse_setting(name, value)?,
            _ => return Err(Self::unknown(name)),
        }
        Ok(())
    }
}

impl ArConfig {
    /// The room's volume: its lowest and highest corner.
    pub fn volume(&self) -> ([f32; 3], [f32; 3]) {
        (
            [-self.half_x, 0.0, -self.half_z],
            [self.half_x, self.height, self.half_z],
        )
    }
}

/// Most shared objects a room holds.
pub const MAX_OBJECTS: u16 = 200;
/// Farthest a hand may be from its head, metres.
pub const ARM_REACH: f32 = 1.2;
/// Resolution of every position, metres.
pub const POSITION_STEP: f32 = 0.002;
/// How far a hand's grip reaches beyond an object's surface, metres.
pub const GRAB_REACH: f32 = 0.08;
/// Speed above which a release counts as a throw, m/s.
pub const THROW_SPEED: f32 = 1.0;
/// Half the side of a box, and the radius of a sphere, of the catalogue, metres.
pub const OBJECT_SIZE: f32 = 0.1;
/// Input positions' bounds (any room fits; the edge clamps to the room's own volume).
const INPUT_MIN: [f32; 3] = [-32.0, -4.0, -32.0];
const INPUT_MAX: [f32; 3] = [32.0, 12.0, 32.0];

/// The room's per-player stats ([`GameMode::stats`]): poses clamped, grabs won, throws,
/// grabs lost to another hand in the same tick (ownership conflicts), and throws that
/// landed on uploaded geometry.
pub const STATS: [&str; 5] = [
    "pose_violations",
    "grabs",
    "throws",
    "grabs_lost",
    "landings",
];
const STAT_VIOLATIONS: usize = 0;
const STAT_GRABS: usize = 1;
const STAT_THROWS: usize = 2;
const STAT_GRABS_LOST: usize = 3;
const STAT_LANDINGS: usize = 4;

/// A room with these settings and the core's defaults (60 snapshots a second: poses
/// reach peers at the rate devices send them), its schema hash filled.
pub fn config(settings: &ArConfig) -> MatchConfig {
    let mut config = MatchConfig::new(Ar.name());
    config.snapshot_hz = Ar.snapshot_hz().unwrap_or(config.snapshot_hz);
    config.mode_config = encode_mode_config(settings);
    config.schema_hash = schema(settings).hash();
    config
}

fn input_fields() -> Vec<FieldDef> {
    let position = |name: &str| {
        FieldDef::new(
            name,
            FieldKind::Position {
                min: INPUT_MIN,
                max: INPUT_MAX,
                step: POSITION_STEP,
            },
        )
    };
    vec![
        position("head_position"),
        FieldDef::new("head_rotation", FieldKind::Rotation { bits: 12 }),
        position("left_position"),
        FieldDef::new("left_rotation", FieldKind::Rotation { bits: 10 }),
        position("right_position"),
        FieldDef::new("right_rotation", FieldKind::Rotation { bits: 10 }),
        FieldDef::new("hands", hand_flags()),
    ]
}

fn hand_flags() -> FieldKind {
    FieldKind::Flags {
        names: ["left", "right", "left_grip", "right_grip"]
            .map(str::to_owned)
            .to_vec(),
    }
}

/// The room's components, input and events for these settings.
pub fn schema(settings: &ArConfig) -> ModeSchema {
    let (lo, hi) = settings.volume();
    let margin = 0.5;
    let room = FieldKind::Position {
        min: lo.map(|v| v - margin),
        max: hi.map(|v| v + margin),
        step: POSITION_STEP,
    };
    // Hands are replicated relative to the head: within arm's reach, fewer bits.
    let reach = FieldKind::Vector {
        min: [-ARM_REACH - 0.05; 3],
        max: [ARM_REACH + 0.05; 3],
        step: POSITION_STEP,
    };
    // A device's pose is its own: everyone else receives it, the device itself is not
    // sent back what it measured (objects and surfaces, owned by nobody, go to all).
    let component = |name: &str, fields: Vec<FieldDef>, priority| ComponentDef {
        name: name.into(),
        visibility: if matches!(name, "position" | "rotation" | "hands") {
            Visibility::Others
        } else {
            Visibility::Everyone
        },
        fields,
        priority,
    };
    ModeSchema {
        mode: "ar".into(),
        components: vec![
            component("position", vec![FieldDef::new("position", room.clone())], 0),
            component(
                "rotation",
                vec![FieldDef::new("rotation", FieldKind::Rotation { bits: 12 })],
                0,
            ),
            component("device", Vec::new(), 4),
            component(
                "hands",
                vec![
                    FieldDef::new("left_offset", reach.clone()),
                    FieldDef::new("left_rotation", FieldKind::Rotation { bits: 8 }),
                    FieldDef::new("right_offset", reach),
                    FieldDef::new("right_rotation", FieldKind::Rotation { bits: 8 }),
                    FieldDef::new("held", hand_flags()),
                ],
                4,
            ),
            component("surface", geometry::surface_fields(), 1),
            component(
                "object",
                vec![
                    FieldDef::new(
                        "shape",
                        FieldKind::Enum {
                            variants: Shape::ALL.iter().map(|s| s.name().into()).collect(),
                        },
                    ),
                    FieldDef::new("holder", FieldKind::Entity),
                ],
                2,
            ),
        ],
        input: input_fields(),
        events: vec![
            EventDef {
                name: "grab".into(),
                fields: vec![
                    FieldDef::new("object", FieldKind::Entity),
                    FieldDef::new("device", FieldKind::Entity),
                ],
            },
            EventDef {
                name: "release".into(),
                fields: vec![
                    FieldDef::new("object", FieldKind::Entity),
                    FieldDef::new("device", FieldKind::Entity),
                    FieldDef::new("thrown", FieldKind::Bool),
                ],
            },
        ],
        requests: geometry::requests(&room),
    }
}

/// A pose in the room's frame: position (metres) and rotation (quaternion `x, y, z, w`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Where.
    pub position: [f32; 3],
    /// Which way.
    pub rotation: [f32; 4],
}

impl Default for Pose {
    fn default() -> Self {
        Self {
            position: [0.0, 1.6, 0.0],
            rotation: [0.0, 0.0, 0.0, 1.0],
        }
    }
}

/// One input of a device: its head pose, its hands' (`None` while not tracked) and
/// their grip buttons.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArInput {
    /// The head (the device itself, for a phone).
    pub head: Pose,
    /// Left and right hand or controller.
    pub hands: [Option<Pose>; 2],
    /// Grip held, per hand.
    pub grip: [bool; 2],
}

static INPUT: std::sync::LazyLock<Vec<FieldDef>> = std::sync::LazyLock::new(input_fields);

impl IntoInput for ArInput {
    fn into_input(self) -> InputRecord {
        let absent = Pose::default();
        let [left, right] = self.hands.map(|h| h.unwrap_or(absent));
        let flags = u32::from(self.hands[0].is_some())
            | u32::from(self.hands[1].is_some()) << 1
            | u32::from(self.grip[0]) << 2
            | u32::from(self.grip[1]) << 3;
        let values = [
            Value::Vec3(self.head.position),
            Value::Quat(self.head.rotation),
            Value::Vec3(left.position),
            Value::Quat(left.rotation),
            Value::Vec3(right.position),
            Value::Quat(right.rotation),
            Value::Flags(flags),
        ];
        let mut slots = Vec::with_capacity(22);
        for (field, value) in INPUT.iter().zip(&values) {
            let start = slots.len();
            slots.resize(start + field.kind.slots(), 0);
            field.kind.quantize(value, &mut slots[start..]);
        }
        InputRecord {
            seq: 0,
            ticks: 1,
            view_tick: 0,
            slots,
        }
    }
}

impl ArInput {
    /// The input an input record of the room's layout stands for (`None` if it has
    /// another layout).
    pub fn from_record(record: &InputRecord) -> Option<Self> {
        let mut values = Vec::with_capacity(INPUT.len());
        let mut at = 0;
        for field in INPUT.iter() {
            let n = field.kind.slots();
            values.push(field.kind.value(record.slots.get(at..at + n)?));
            at += n;
        }
        if at != record.slots.len() {
            return None;
        }
        let pose = |p: &Value, q: &Value| match (p, q) {
            (Value::Vec3(position), Value::Quat(rotation)) => Some(Pose {
                position: *position,
                rotation: *rotation,
            }),
            _ => None,
        };
        let Value::Flags(flags) = values[6] else {
            return None;
        };
        let bit = |i: u32| flags & (1 << i) != 0;
        let (left, right) = (pose(&values[2], &values[3])?, pose(&values[4], &values[5])?);
        Some(Self {
            head: pose(&values[0], &values[1])?,
            hands: [bit(0).then_some(left), bit(1).then_some(right)],
            grip: [bit(2), bit(3)],
        })
    }
}

/// Shapes of the object catalogue: two primitives and two meshes (convex hulls), each
/// within [`OBJECT_SIZE`] of its centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A cube of side 2 × [`OBJECT_SIZE`].
    Box,
    /// A ball of radius [`OBJECT_SIZE`].
    Sphere,
    /// A square pyramid (a 5-vertex mesh): base 2 × [`OBJECT_SIZE`] wide, as high.
    Pyramid,
    /// A bottle (a 24-vertex mesh): 12 cm across, 20 cm high, narrowing to a 5 cm neck.
    Bottle,
}

impl Shape {
    /// The catalogue, in the order of the `object` component's `shape` enum.
    pub const ALL: [Shape; 4] = [Shape::Box, Shape::Sphere, Shape::Pyramid, Shape::Bottle];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Box => "box",
            Self::Sphere => "sphere",
            Self::Pyramid => "pyramid",
            Self::Bottle => "bottle",
        }
    }

    /// Its index in [`Shape::ALL`].
    pub fn index(self) -> u32 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as u32
    }

    /// The mesh's vertices, relative to its centre (none for the primitives).
    pub fn mesh(self) -> Vec<[f32; 3]> {
        let s = OBJECT_SIZE;
        match self {
            Self::Box | Self::Sphere => Vec::new(),
            // Base a quarter of the height below the centre: the centroid is the centre.
            Self::Pyramid => vec![
                [-s, -s / 2.0, -s],
                [s, -s / 2.0, -s],
                [s, -s / 2.0, s],
                [-s, -s / 2.0, s],
                [0.0, 1.5 * s, 0.0],
            ],
            Self::Bottle => {
                let ring = |radius: f32, y: f32| {
                    (0..8).map(move |k| {
                        let a = k as f32 * std::f32::consts::TAU / 8.0;
                        [radius * a.cos(), y, radius * a.sin()]
                    })
                };
                ring(0.06, -s)
                    .chain(ring(0.06, 0.4 * s))
                    .chain(ring(0.025, s))
                    .collect()
            }
        }
    }

    fn collider(self) -> ColliderBuilder {
        let s = OBJECT_SIZE;
        match self {
            Self::Box => ColliderBuilder::cuboid(s, s, s),
            Self::Sphere => ColliderBuilder::ball(s),
            Self::Pyramid | Self::Bottle => {
                let points: Vec<Vector> = self
                    .mesh()
                    .iter()
                    .map(|p| Vector::new(p[0], p[1], p[2]))
                    .collect();
                // A hull of these fixed points always exists; a ball is the fallback
                // should rapier ever refuse one.
                ColliderBuilder::convex_hull(&points).unwrap_or_else(|| ColliderBuilder::ball(s))
            }
        }
    }
}

/// A device's accepted pose, as the edge tracks it.
#[derive(Component, Debug, Clone, Default)]
pub struct Device {
    /// Head pose accepted last.
    pub head: Pose,
    /// Hands accepted last (`None` while not tracked).
    pub hands: [Option<Pose>; 2],
    /// Grip held, per hand, as of the last input.
    pub grip: [bool; 2],
    /// Velocity of the head and of each hand from the last two accepted poses, m/s.
    pub velocity: [[f32; 3]; 3],
    /// The object each hand holds.
    pub holding: [Option<Entity>; 2],
    /// The tick of the last pose accepted (`None` before the first).
    pub posed_at: Option<u32>,
    /// Ticks its connection has been lost.
    pub away_ticks: u32,
}

/// A shared object.
#[derive(Component, Debug, Clone, Copy)]
pub struct Object {
    /// Its shape.
    pub shape: Shape,
    /// The device (its entity and id) and hand holding it.
    pub held: Option<(Entity, EntityId, usize)>,
    /// Where it sits relative to the holding hand.
    pub offset: [f32; 3],
    /// Thrown and not yet landed or at rest: by which device.
    pub in_flight: Option<EntityId>,
}

/// Counts over the room's life, for tools and the dev summary.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ArStats {
    /// Poses clamped (each part of a pose counts once).
    pub pose_violations: u64,
    /// Grabs won.
    pub grabs: u64,
    /// Grabs that lost to another in the same tick.
    pub ownership_conflicts: u64,
    /// Releases faster than [`THROW_SPEED`].
    pub objects_thrown: u64,
    /// Objects dropped because their holder was gone too long.
    pub holder_timeouts: u64,
    /// Thrown objects that then touched an uploaded surface.
    pub objects_landed: u64,
}

#[derive(Resource, Debug, Clone, Copy)]
struct Settings(ArConfig);

#[derive(Resource)]
struct Writer(Fields, outpost_protocol::replication::Events);

impl GameMode for Ar {
    fn name(&self) -> &'static str {
        "ar"
    }

    fn default_config(&self) -> Vec<u8> {
        ArConfig::default().encode()
    }

    fn set(&self, mode_config: &[u8], name: &str, value: &str) -> Result<Vec<u8>, SettingError> {
        ArConfig::set_encoded(mode_config, name, value)
    }

    fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
        Ok(schema(&ArConfig::decode(mode_config)?))
    }

    fn snapshot_hz(&self) -> Option<u16> {
        Some(60)
    }

    fn stats(&self) -> &'static [&'static str] {
        &STATS
    }

    fn request(
        &self,
        world: &mut World,
        from: outpost_sim::Requester,
        request: &outpost_protocol::replication::RequestValues<'_>,
    ) -> Result<(), outpost_protocol::Refusal> {
        geometry::apply(world, from, request)
    }

    fn bot(&self, config: &MatchConfig, seed: u64) -> Option<Box<dyn outpost_sim::Bot>> {
        let settings = ArConfig::of(config).ok()?;
        Some(Box::new(bot::ArBot::new(settings, config.tick_hz, seed)))
    }

    fn setup(
        &self,
        config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError> {
        let settings = ArConfig::of(config)?;
        let room_schema = schema(&settings);
        let events = outpost_protocol::replication::Events::new(&room_schema);
        world.insert_resource(Writer(Fields::new(room_schema), events));
        world.insert_resource(Settings(settings));
        world.insert_resource(ArStats::default());
        world.insert_resource(Linger(
            u32::from(settings.linger_s) * u32::from(config.tick_hz),
        ));
        build_room(world, &settings);
        spawn_objects(world, &settings);
        schedule.add_systems(
            (apply_poses, arbitrate_grabs, drive_held)
                .chain()
                .in_set(TickSet::PrePhysics),
        );
        schedule.add_systems((detect_landings, roll_to_rest).in_set(TickSet::PostPhysics));
        Ok(())
    }

    fn spawn_player(
        &self,
        world: &mut World,
        _player: PlayerId,
        _team: u8,
        _net_id: EntityId,
    ) -> Entity {
        world.spawn(Device::default()).id()
    }

    fn write_records(&self, world: &mut World, out: &mut View) {
        let mut rows: Vec<(EntityId, Row)> = Vec::new();
        let mut devices = world.query::<(&NetId, &Device)>();
        for (id, device) in devices.iter(world) {
            let absent = device.head;
            let [left, right] = device.hands.map(|h| {
                let pose = h.unwrap_or(absent);
                Pose {
                    position: sub(pose.position, device.head.position),
                    ..pose
                }
            });
            let held = u32::from(device.hands[0].is_some())
                | u32::from(device.hands[1].is_some()) << 1
                | u32::from(device.holding[0].is_some()) << 2
                | u32::from(device.holding[1].is_some()) << 3;
            rows.push((
                id.0,
                vec![
                    ("position", vec![Value::Vec3(device.head.position)]),
                    ("rotation", vec![Value::Quat(device.head.rotation)]),
                    ("device", vec![]),
                    (
                        "hands",
                        vec![
                            Value::Vec3(left.position),
                            Value::Quat(left.rotation),
                            Value::Vec3(right.position),
                            Value::Quat(right.rotation),
                            Value::Flags(held),
                        ],
                    ),
                ],
            ));
        }
        let mut objects = world.query::<(&NetId, &RigidBodyRef, &Object)>();
        let physics = world.resource::<Physics>();
        for (id, body, object) in objects.iter(world) {
            let Some(rb) = physics.world.bodies.get(body.0) else {
                continue;
            };
            let (p, r) = (rb.translation(), rb.rotation());
            let shape = object.shape.index();
            let holder = object.held.map_or(EntityId(0), |(_, id, _)| id);
            rows.push((
                id.0,
                vec![
                    ("position", vec![Value::Vec3([p.x, p.y, p.z])]),
                    ("rotation", vec![Value::Quat([r.x, r.y, r.z, r.w])]),
                    ("object", vec![Value::Enum(shape), Value::Entity(holder)]),
                ],
            ));
        }
        let mut surfaces = world.query::<(&NetId, &geometry::Surface)>();
        for (id, surface) in surfaces.iter(world) {
            rows.push((id.0, geometry::row(surface)));
        }
        world.resource::<Writer>().0.write_rows(out, &mut rows);
    }
}

/// The room's floor and walls, static colliders.
fn build_room(world: &mut World, settings: &ArConfig) {
    let (hx, hz, h) = (settings.half_x, settings.half_z, settings.height);
    let t = 0.05;
    let slabs = [
        (Vector::new(0.0, -t, 0.0), Vector::new(hx + t, t, hz + t)),
        (
            Vector::new(-hx - t, h / 2.0, 0.0),
            Vector::new(t, h / 2.0, hz),
        ),
        (
            Vector::new(hx + t, h / 2.0, 0.0),
            Vector::new(t, h / 2.0, hz),
        ),
        (
            Vector::new(0.0, h / 2.0, -hz - t),
            Vector::new(hx, h / 2.0, t),
        ),
        (
            Vector::new(0.0, h / 2.0, hz + t),
            Vector::new(hx, h / 2.0, t),
        ),
    ];
    let physics = &mut world.resource_mut::<Physics>().world;
    for (at, half) in slabs {
        let body = physics.insert_body(RigidBodyBuilder::fixed().translation(at));
        physics.insert_collider(
            ColliderBuilder::cuboid(half.x, half.y, half.z)
                .friction(0.7)
                .restitution(0.2),
            Some(body),
        );
    }
}

/// The catalogue's objects, box, sphere, pyramid, bottle in turn, on a grid on the floor.
fn spawn_objects(world: &mut World, settings: &ArConfig) {
    let n = usize::from(settings.objects);
    let side = (n as f32).sqrt().ceil().max(1.0) as usize;
    let spacing = 0.5f32.min(1.6 * settings.half_x.min(settings.half_z) / side as f32);
    for i in 0..n {
        let (row, col) = (i / side, i % side);
        let offset = (side as f32 - 1.0) / 2.0;
        let at = Vector::new(
            (col as f32 - offset) * spacing,
            OBJECT_SIZE,
            (row as f32 - offset) * spacing,
        );
        let shape = Shape::ALL[i % Shape::ALL.len()];
        let id = world.resource_mut::<NetIds>().allocate();
        let physics = &mut world.resource_mut::<Physics>().world;
        // Damped, as rapier models no rolling resistance: a ball would roll for ever.
        let body = physics.insert_body(
            RigidBodyBuilder::dynamic()
                .translation(at)
                .linear_damping(0.3)
                .angular_damping(4.0),
        );
        let collider = shape.collider();
        physics.insert_collider(
            collider
                .user_data(u128::from(id.0))
                .friction(0.6)
                .restitution(0.3),
            Some(body),
        );
        world.spawn((
            NetId(id),
            RigidBodyRef(body),
            Object {
                shape,
                held: None,
                offset: [0.0; 3],
                in_flight: None,
            },
        ));
    }
}

/// A normalised quaternion (identity for one that is not a rotation).
fn normalised(q: [f32; 4]) -> [f32; 4] {
    let l = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    if l.is_finite() && l > 1e-3 {
        q.map(|c| c / l)
    } else {
        [0.0, 0.0, 0.0, 1.0]
    }
}

/// Bounds a pose part moves within.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    lo: [f32; 3],
    hi: [f32; 3],
    speed: f32,
    accel: f32,
}

/// The position accepted for a part moving from `from` (at `velocity`) towards
/// `wanted` over `dt` seconds, and whether it had to be clamped.
fn accept(
    wanted: [f32; 3],
    from: Option<([f32; 3], [f32; 3])>,
    dt: f32,
    b: Bounds,
) -> ([f32; 3], [f32; 3], bool) {
    let p = [0, 1, 2].map(|axis| wanted[axis].clamp(b.lo[axis], b.hi[axis]));
    let mut clamped = length(sub(p, wanted)) > POSITION_STEP;
    let Some((prev, velocity)) = from else {
        return (p, [0.0; 3], clamped);
    };
    // Speed, then acceleration, with a quantization step of slack each.
    let mut step = sub(p, prev);
    let most = b.speed * dt + 2.0 * POSITION_STEP;
    if length(step) > most {
        step = limit(step, most);
        clamped = true;
    }
    let v = scale(step, 1.0 / dt);
    let dv = sub(v, velocity);
    let most_dv = b.accel * dt + 4.0 * POSITION_STEP / dt;
    let v = if length(dv) > most_dv {
        clamped = true;
        add(velocity, limit(dv, most_dv))
    } else {
        v
    };
    let p = add(prev, scale(v, dt));
    (p, v, clamped)
}

fn apply_poses(
    clock: Res<MatchClock>,
    settings: Res<Settings>,
    mut stats: ResMut<ArStats>,
    mut devices: Query<(&Controls, &mut Device, &mut PlayerSlot)>,
) {
    let s = settings.0;
    let (lo, hi) = s.volume();
    let head_bounds = Bounds {
        lo,
        hi,
        speed: s.max_head_speed,
        accel: s.max_head_accel,
    };
    for (controls, mut device, mut slot) in &mut devices {
        if !slot.connected {
            device.away_ticks += 1;
            continue;
        }
        device.away_ticks = 0;
        let mut since = device
            .posed_at
            .map_or(1, |t| clock.tick.saturating_sub(t).max(1));
        for record in &controls.this_tick {
            let Some(input) = ArInput::from_record(record) else {
                continue;
            };
            let ticks = since.max(u32::from(record.ticks));
            since = 1;
            let dt = ticks as f32 * clock.dt;
            let first = device.posed_at.is_none();
            let mut violations = 0u32;
            let prev = (!first).then(|| (device.head.position, device.velocity[0]));
            let (head, v, clamped) = accept(input.head.position, prev, dt, head_bounds);
            violations += u32::from(clamped);
            device.head = Pose {
                position: head,
                rotation: normalised(input.head.rotation),
            };
            device.velocity[0] = v;
            for hand in 0..2 {
                let Some(wanted) = input.hands[hand] else {
                    device.hands[hand] = None;
                    device.velocity[hand + 1] = [0.0; 3];
                    continue;
                };
                // Within arm's reach of the head, inside the room.
                let reach_lo = add(head, [-ARM_REACH; 3]).map2(lo, f32::max);
                let reach_hi = add(head, [ARM_REACH; 3]).map2(hi, f32::min);
                let bounds = Bounds {
                    lo: reach_lo,
                    hi: reach_hi,
                    speed: s.max_hand_speed,
                    accel: s.max_hand_accel,
                };
                let prev = device.hands[hand]
                    .filter(|_| !first)
                    .map(|p| (p.position, device.velocity[hand + 1]));
                let (mut p, v, mut clamped) = accept(wanted.position, prev, dt, bounds);
                let from_head = sub(p, head);
                if length(from_head) > ARM_REACH + POSITION_STEP {
                    p = add(head, limit(from_head, ARM_REACH));
                    clamped = true;
                }
                violations += u32::from(clamped);
                device.hands[hand] = Some(Pose {
                    position: p,
                    rotation: normalised(wanted.rotation),
                });
                device.velocity[hand + 1] = v;
            }
            device.grip = input.grip;
            device.posed_at = Some(clock.tick);
            if violations > 0 {
                stats.pose_violations += u64::from(violations);
                slot.count(STAT_VIOLATIONS, violations);
            }
        }
    }
}

/// One hand asking for an object this tick.
struct Grab {
    object: Entity,
    device: Entity,
    device_id: EntityId,
    hand: usize,
    distance: f32,
}

#[allow(
    clippy::too_many_arguments,
    reason = "a system's parameters are what it reads and writes"
)]
fn arbitrate_grabs(
    clock: Res<MatchClock>,
    settings: Res<Settings>,
    writer: Res<Writer>,
    mut physics: ResMut<Physics>,
    mut stats: ResMut<ArStats>,
    mut events: ResMut<MatchEvents>,
    mut devices: Query<(Entity, &NetId, &mut Device, &mut PlayerSlot)>,
    mut objects: Query<(Entity, &NetId, &RigidBodyRef, &mut Object)>,
) {
    let timeout = (settings.0.holder_timeout_s / clock.dt).ceil() as u32;
    let mut releases: Vec<(Entity, [f32; 3])> = Vec::new();
    let mut requests: Vec<Grab> = Vec::new();
    // Positions of the free objects, in id order.
    let mut free: Vec<(Entity, EntityId, [f32; 3])> = objects
        .iter()
        .filter(|(.., object)| object.held.is_none())
        .filter_map(|(e, id, body, _)| {
            let p = physics.world.bodies.get(body.0)?.translation();
            Some((e, id.0, [p.x, p.y, p.z]))
        })
        .collect();
    free.sort_by_key(|(_, id, _)| *id);
    for (entity, id, mut device, _) in &mut devices {
        for hand in 0..2 {
            let pose = device.hands[hand];
            let gripping = device.grip[hand] && pose.is_some();
            if let Some(object) = device.holding[hand] {
                // Opened the hand, lost its tracking, or gone too long: let go.
                if !gripping || device.away_ticks >= timeout {
                    let velocity = if device.away_ticks > 0 {
                        [0.0; 3]
                    } else {
                        device.velocity[hand + 1]
                    };
                    device.holding[hand] = None;
                    releases.push((object, velocity));
                    if device.away_ticks >= timeout {
                        stats.holder_timeouts += 1;
                    }
                }
                continue;
            }
            // A device whose connection is lost holds on, but takes nothing new.
            let (Some(pose), true, 0) = (pose, gripping, device.away_ticks) else {
                continue;
            };
            let nearest = free
                .iter()
                .map(|(e, _, p)| (*e, length(sub(*p, pose.position))))
                .filter(|(_, d)| *d <= OBJECT_SIZE * 1.8 + GRAB_REACH)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((object, distance)) = nearest {
                requests.push(Grab {
                    object,
                    device: entity,
                    device_id: id.0,
                    hand,
                    distance,
                });
            }
        }
    }
    // Releases first: an object let go this tick may not be grabbed again until the next.
    for (object, velocity) in releases {
        let Ok((_, id, body, mut state)) = objects.get_mut(object) else {
            continue;
        };
        let Some((_, holder_id, _)) = state.held.take() else {
            continue;
        };
        if let Some(rb) = physics.world.bodies.get_mut(body.0) {
            rb.set_body_type(RigidBodyType::Dynamic, true);
            rb.set_linvel(Vector::new(velocity[0], velocity[1], velocity[2]), true);
        }
        let thrown = length(velocity) > THROW_SPEED;
        state.in_flight = thrown.then_some(holder_id);
        if thrown {
            stats.objects_thrown += 1;
            if let Some((.., mut slot)) = devices.iter_mut().find(|(_, n, ..)| n.0 == holder_id) {
                slot.count(STAT_THROWS, 1);
            }
        }
        let values = [
            Value::Entity(id.0),
            Value::Entity(holder_id),
            Value::Bool(thrown),
        ];
        if let Some(event) = writer.1.encode("release", &values) {
            events.push(clock.tick, MatchEvent::Mode(event));
        }
    }
    // Of several hands asking for one object, the nearest wins (to the centimetre: poses
    // are no finer than that), then the lower device id, then the left hand.
    let centimetres = |d: f32| (d * 100.0).round() as u32;
    requests.sort_by(|a, b| {
        centimetres(a.distance)
            .cmp(&centimetres(b.distance))
            .then(a.device_id.cmp(&b.device_id))
            .then(a.hand.cmp(&b.hand))
    });
    let mut taken: Vec<Entity> = Vec::new();
    for grab in requests {
        if taken.contains(&grab.object) {
            stats.ownership_conflicts += 1;
            if let Ok((.., mut slot)) = devices.get_mut(grab.device) {
                slot.count(STAT_GRABS_LOST, 1);
            }
            continue;
        }
        let Ok((_, id, body, mut state)) = objects.get_mut(grab.object) else {
            continue;
        };
        let Ok((_, _, mut device, mut slot)) = devices.get_mut(grab.device) else {
            continue;
        };
        let Some(hand) = device.hands[grab.hand] else {
            continue;
        };
        taken.push(grab.object);
        if let Some(rb) = physics.world.bodies.get_mut(body.0) {
            let p = rb.translation();
            state.offset = sub([p.x, p.y, p.z], hand.position);
            rb.set_body_type(RigidBodyType::KinematicPositionBased, true);
        }
        state.held = Some((grab.device, grab.device_id, grab.hand));
        state.in_flight = None;
        device.holding[grab.hand] = Some(grab.object);
        slot.count(STAT_GRABS, 1);
        stats.grabs += 1;
        let values = [Value::Entity(id.0), Value::Entity(grab.device_id)];
        if let Some(event) = writer.1.encode("grab", &values) {
            events.push(clock.tick, MatchEvent::Mode(event));
        }
    }
}

/// Held objects follow their holder's hand.
fn drive_held(
    mut physics: ResMut<Physics>,
    devices: Query<&Device>,
    mut objects: Query<(&RigidBodyRef, &mut Object)>,
) {
    for (body, mut object) in &mut objects {
        let Some((device, _, hand)) = object.held else {
            continue;
        };
        let Some(pose) = devices.get(device).ok().and_then(|d| d.hands[hand]) else {
            // The holder is gone: the object falls.
            object.held = None;
            if let Some(rb) = physics.world.bodies.get_mut(body.0) {
                rb.set_body_type(RigidBodyType::Dynamic, true);
            }
            continue;
        };
        let at = add(pose.position, object.offset);
        if let Some(rb) = physics.world.bodies.get_mut(body.0) {
            rb.set_next_kinematic_translation(Vector::new(at[0], at[1], at[2]));
        }
    }
}

/// Speed below which a thrown object counts as at rest (its flight over), m/s.
const REST_SPEED: f32 = 0.05;

/// A thrown object touching an uploaded surface has landed on it: counted once per
/// throw, for the thrower. One that comes to rest on something else (the room's own
/// floor, another object) just stops flying.
fn detect_landings(
    physics: Res<Physics>,
    mut stats: ResMut<ArStats>,
    mut objects: Query<(&RigidBodyRef, &mut Object)>,
    mut devices: Query<(&NetId, &mut PlayerSlot)>,
) {
    for (body, mut object) in &mut objects {
        let Some(thrower) = object.in_flight else {
            continue;
        };
        let Some(rb) = physics.world.bodies.get(body.0) else {
            continue;
        };
        // What it touches now: anything, and an uploaded surface.
        let (mut touching, mut on_surface) = (false, false);
        for &collider in rb.colliders() {
            for pair in physics.world.contact_pairs_with(collider) {
                if !pair.has_any_active_contact() {
                    continue;
                }
                let other = if pair.collider1 == collider {
                    pair.collider2
                } else {
                    pair.collider1
                };
                touching = true;
                on_surface |= physics
                    .world
                    .colliders
                    .get(other)
                    .is_some_and(|c| c.user_data & geometry::SURFACE_TAG != 0);
            }
        }
        if on_surface {
            object.in_flight = None;
            stats.objects_landed += 1;
            if let Some((_, mut slot)) = devices.iter_mut().find(|(n, _)| n.0 == thrower) {
                slot.count(STAT_LANDINGS, 1);
            }
        } else if touching && rb.linvel().length() < REST_SPEED {
            object.in_flight = None;
        }
    }
}

/// How fast an object resting on something loses its speed, per second: rapier models
/// no rolling resistance, so without this a ball rolls across the room for many seconds
/// (and costs every device a snapshot entry each tick while it does).
pub const ROLLING_DRAG: f32 = 2.5;

/// Objects touching something and not flying fast roll and slide to a stop as on a real
/// floor or table.
fn roll_to_rest(
    clock: Res<MatchClock>,
    mut physics: ResMut<Physics>,
    objects: Query<(&RigidBodyRef, &Object)>,
) {
    let keep = (1.0 - ROLLING_DRAG * clock.dt).max(0.0);
    let physics = &mut physics.world;
    for (body, object) in &objects {
        if object.held.is_some() {
            continue;
        }
        let Some(rb) = physics.bodies.get(body.0) else {
            continue;
        };
        if rb.linvel().length() > THROW_SPEED * 3.0 {
            continue;
        }
        let touching = rb.colliders().iter().any(|&c| {
            physics
                .narrow_phase
                .contact_pairs_with(c)
                .any(|pair| pair.has_any_active_contact())
        });
        if !touching {
            continue;
        }
        if let Some(rb) = physics.bodies.get_mut(body.0) {
            let (v, w) = (rb.linvel(), rb.angvel());
            rb.set_linvel(v * keep, false);
            rb.set_angvel(w * keep, false);
        }
    }
}

/// The replicated `hands` component, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hands {
    /// Left and right poses, their positions relative to the head's (zero while not
    /// tracked).
    pub poses: [Pose; 2],
    /// Tracked, per hand.
    pub tracked: [bool; 2],
    /// Holding an object, per hand.
    pub holding: [bool; 2],
}

impl outpost_protocol::replication::Component for Hands {
    const NAME: &'static str = "hands";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [
                Value::Vec3(lp),
                Value::Quat(lq),
                Value::Vec3(rp),
                Value::Quat(rq),
                Value::Flags(f),
            ] => Some(Self {
                poses: [
                    Pose {
                        position: *lp,
                        rotation: *lq,
                    },
                    Pose {
                        position: *rp,
                        rotation: *rq,
                    },
                ],
                tracked: [f & 1 != 0, f & 2 != 0],
                holding: [f & 4 != 0, f & 8 != 0],
            }),
            _ => None,
        }
    }
}

/// The replicated `object` component, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectState {
    /// Its shape.
    pub shape: Shape,
    /// The device holding it.
    pub holder: Option<EntityId>,
}

impl outpost_protocol::replication::Component for ObjectState {
    const NAME: &'static str = "object";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Enum(shape), Value::Entity(holder)] => Some(Self {
                shape: *Shape::ALL.get(*shape as usize)?,
                holder: (holder.0 != 0).then_some(*holder),
            }),
            _ => None,
        }
    }
}

/// Every shared object's id and where the edge has it now, by id: for tools and tests.
pub fn object_positions(world: &World) -> Vec<(EntityId, [f32; 3])> {
    let Some(query) = world.try_query::<(&NetId, &RigidBodyRef, &Object)>() else {
        return Vec::new();
    };
    let physics = world.resource::<Physics>();
    let mut out: Vec<(EntityId, [f32; 3])> = query
        .iter_manual(world)
        .filter_map(|(id, body, _)| {
            let p = physics.world.bodies.get(body.0)?.translation();
            Some((id.0, [p.x, p.y, p.z]))
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}
