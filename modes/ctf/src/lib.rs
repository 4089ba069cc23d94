//! # outpost-ctf
//!
//! Capture the flag, written on `outpost-sim`'s mode API alone (nothing in `protocol`,
//! the edge or the SDK knows of it). Two teams, red (0) and blue (1), each with a base at
//! one end of the arena's level and a flag standing there. Run into the other team's flag
//! to pick it up; carry it to your own base while your own flag is home to capture it.
//! A carrier an enemy runs into drops the flag where they stand (the custom input bit
//! `drop` lets a carrier drop it too); a team touching its own dropped flag returns it
//! home, and a dropped flag goes home by itself after [`CtfConfig::return_s`]. The first
//! team to [`CtfConfig::captures_to_win`] captures wins, or the one ahead when the time
//! is up.
//!
//! Characters move exactly as the arena's do (its controller, level and prediction), so
//! the client predicts them with [`outpost_arena::ArenaPrediction`]. Replicated: each
//! character (`character`, `position`, `rotation`, the owner-only `motion`, `team`), each
//! flag (`flag`: its `team`, its `carrier` and whether it is `home`; `position`) and each
//! team's score (`team`, `score`: no position, so every client has it). The result: a
//! player's score is their captures, so a team's is the sum of its players' (the cloud
//! ranks teams by it), and a `capture` event names the carrier.

pub mod bot;

use bevy_ecs::prelude::*;
use outpost_arena::{
    PlayerInput, Predictor, build_level, movement_input, pose_components, spawn_character_body,
    spawn_height,
};
use outpost_protocol::replication::{self, Fields, InputRecord, Row, View};
use outpost_protocol::schema::{
    ComponentDef, EventDef, FieldDef, FieldKind, ModeSchema, Value, Visibility,
};
use outpost_protocol::{
    ConfigError, EntityId, MatchConfig, MatchEndReason, MatchEvent, PlayerId, encode_mode_config,
};
use outpost_sim::rapier3d::prelude::*;
use outpost_sim::{
    Controls, EndMatch, GameMode, IntoInput, MatchClock, MatchEvents, ModeSettings, Modes, Motion,
    NetId, NetIds, Physics, PlayerSlot, Prediction, RigidBodyRef, SettingError, SimError,
    SplitMix64, TickSet, parse_setting,
};
use wincode::{SchemaRead, SchemaWrite};

/// Teams, by index: red, blue.
pub const TEAMS: [&str; 2] = ["red", "blue"];
/// A character this close (horizontally, metres) to a flag touches it.
pub const TOUCH_RADIUS: f32 = 1.5;
/// A carrier this close to an enemy character is tagged and drops the flag.
pub const TAG_RADIUS: f32 = 1.2;
/// A carrier this close to its own base captures.
pub const CAPTURE_RADIUS: f32 = 2.5;
/// Bases stand this share of the half extent from the centre, on the x axis.
pub const BASE_SHARE: f32 = 0.7;

/// The capture-the-flag game mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ctf;

/// A registry of capture the flag alone.
pub fn modes() -> Modes {
    Modes::new().with(Ctf)
}

/// Capture the flag's own settings, carried as [`MatchConfig::mode_config`].
#[derive(Debug, Clone, Copy, PartialEq, SchemaWrite, SchemaRead)]
pub struct CtfConfig {
    /// Captures that win the match; 1..=20, default 3.
    pub captures_to_win: u8,
    /// Seconds a dropped flag lies before it goes home by itself; 1..=120, default 10.
    pub return_s: u16,
    /// Half the side of the level's square floor, metres; 16..=200, default 30.
    pub half_extent: f32,
}

impl Default for CtfConfig {
    fn default() -> Self {
        Self {
            captures_to_win: 3,
            return_s: 10,
            half_extent: 30.0,
        }
    }
}

impl ModeSettings for CtfConfig {
    const NAMES: &'static [&'static str] = &["captures_to_win", "return_s", "half_extent"];

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=20).contains(&self.captures_to_win) {
            return Err(ConfigError::new("captures_to_win", "must be 1..=20"));
        }
        if !(1..=120).contains(&self.return_s) {
            return Err(ConfigError::new("return_s", "must be 1..=120 seconds"));
        }
        if !(self.half_extent.is_finite() && (16.0..=200.0).contains(&self.half_extent)) {
            return Err(ConfigError::new("half_extent", "must be 16..=200 metres"));
        }
        Ok(())
    }

    fn set_one(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        match name {
            "captures_to_win" => self.captures_to_win = parse_setting(name, value)?,
            "return_s" => self.return_s = parse_setting(name, value)?,
            "half_extent" => self.half_extent = parse_setting(name, value)?,
            _ => return Err(Self::unknown(name)),
        }
        Ok(())
    }
}

impl CtfConfig {
    /// Where a team's base (and flag) stands.
    pub fn base(&self, team: u8) -> [f32; 3] {
        let x = BASE_SHARE * self.half_extent;
        [if team == 0 { -x } else { x }, 0.0, 0.0]
    }
}

/// A capture-the-flag match with these settings and the core's defaults, its schema hash
/// filled, for up to `max_players` (two teams of half each).
pub fn config(settings: &CtfConfig) -> MatchConfig {
    let mut config = MatchConfig::new(Ctf.name());
    config.mode_config = encode_mode_config(settings);
    config.schema_hash = schema(settings).hash();
    config
}

/// Capture the flag's components, input and events: the arena's character components
/// and input fields, and its own.
pub fn schema(settings: &CtfConfig) -> ModeSchema {
    let component = |name: &str, fields: Vec<FieldDef>, priority| ComponentDef {
        name: name.into(),
        fields,
        visibility: Visibility::Everyone,
        priority,
    };
    let team = || {
        FieldDef::new(
            "team",
            FieldKind::Enum {
                variants: TEAMS.iter().map(|t| (*t).to_owned()).collect(),
            },
        )
    };
    let captures = || FieldDef::new("captures", FieldKind::Int { min: 0, max: 255 });
    let mut components = vec![component("character", Vec::new(), 3)];
    components.extend(pose_components(settings.half_extent));
    components.extend([
        component("team", vec![team()], 0),
        component(
            "flag",
            vec![
                FieldDef::new("carrier", FieldKind::Entity),
                FieldDef::new("home", FieldKind::Bool),
            ],
            5,
        ),
        component("score", vec![captures()], 1),
    ]);
    ModeSchema {
        mode: "ctf".into(),
        components,
        input: movement_input(&["jump", "drop"]),
        events: vec![EventDef {
            name: "capture".into(),
            fields: vec![
                FieldDef::new("carrier", FieldKind::Entity),
                team(),
                captures(),
            ],
        }],
        requests: Vec::new(),
    }
}

/// A player's input: the arena's movement and the `drop` button.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CtfInput {
    /// Movement, aim and jump, as the arena's (its `FIRE` bit is ignored).
    pub movement: PlayerInput,
    /// Drop the flag this character carries.
    pub drop: bool,
}

/// The `drop` button's bit in the input's `buttons`.
pub const DROP: u8 = 2;

impl IntoInput for CtfInput {
    fn into_input(self) -> InputRecord {
        let buttons =
            (self.movement.buttons & PlayerInput::JUMP) | if self.drop { DROP } else { 0 };
        PlayerInput {
            buttons,
            ..self.movement
        }
        .into_input()
    }
}

/// A flag: its team, who carries it, and where it rests.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Flag {
    /// Whose flag.
    pub team: u8,
    /// The character carrying it.
    pub carrier: Option<EntityId>,
    /// Where it is when not carried.
    pub at: [f32; 3],
    /// Whether it stands at its base.
    pub home: bool,
    /// Ticks until it goes home by itself, while dropped.
    pub return_in: u32,
    /// The tick before which nobody picks it up (just dropped: its carrier would take
    /// it straight back).
    pub pickup_after: u32,
}

/// A character's team.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Team(pub u8);

/// A team's captures, as a replicated entity of its own.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamScore {
    /// The team.
    pub team: u8,
    /// Its captures.
    pub captures: u32,
}

/// The match's settings, for its systems.
#[derive(Resource, Debug, Clone, Copy)]
struct Settings(CtfConfig);

/// The replicated `team` component, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamOf(pub u8);

impl replication::Component for TeamOf {
    const NAME: &'static str = "team";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Enum(t)] => u8::try_from(*t).ok().map(Self),
            _ => None,
        }
    }
}

/// The replicated `flag` component, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagState {
    /// Who carries it.
    pub carrier: Option<EntityId>,
    /// Whether it is at its base.
    pub home: bool,
}

impl replication::Component for FlagState {
    const NAME: &'static str = "flag";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Entity(carrier), Value::Bool(home)] => Some(Self {
                carrier: (carrier.0 != 0).then_some(*carrier),
                home: *home,
            }),
            _ => None,
        }
    }
}

/// The replicated `score` component, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captures(pub u32);

impl replication::Component for Captures {
    const NAME: &'static str = "score";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Int(n)] => u32::try_from(*n).ok().map(Self),
            _ => None,
        }
    }
}

/// A capture: the event capture the flag sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    /// The character who carried the flag home.
    pub carrier: EntityId,
    /// Their team.
    pub team: u8,
    /// The team's captures after it.
    pub captures: u32,
}

static EVENTS: std::sync::LazyLock<replication::Events> =
    std::sync::LazyLock::new(|| replication::Events::new(&schema(&CtfConfig::default())));

impl Capture {
    /// The capture as a match event.
    pub fn event(&self) -> Option<MatchEvent> {
        let values = [
            Value::Entity(self.carrier),
            Value::Enum(u32::from(self.team)),
            Value::Int(i64::from(self.captures)),
        ];
        EVENTS.encode("capture", &values).map(MatchEvent::Mode)
    }

    /// The capture a match event stands for, if it is one.
    pub fn from_event(event: &MatchEvent) -> Option<Self> {
        let MatchEvent::Mode(event) = event else {
            return None;
        };
        match EVENTS.decode(event)? {
            ("capture", values) => match values.as_slice() {
                [
                    Value::Entity(carrier),
                    Value::Enum(team),
                    Value::Int(captures),
                ] => Some(Self {
                    carrier: *carrier,
                    team: u8::try_from(*team).ok()?,
                    captures: u32::try_from(*captures).ok()?,
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The schema's fields for this match's settings, for writing records.
#[derive(Resource)]
struct Writer(Fields);

/// Capture the flag's per-player stats ([`GameMode::stats`]): enemy flags picked up,
/// own flags returned home by touch, enemy carriers tagged (the score counts captures).
pub const STATS: [&str; 3] = ["pickups", "returns", "tags"];
/// Index of `pickups` in [`STATS`].
pub const STAT_PICKUPS: usize = 0;
/// Index of `returns` in [`STATS`].
pub const STAT_RETURNS: usize = 1;
/// Index of `tags` in [`STATS`].
pub const STAT_TAGS: usize = 2;

impl GameMode for Ctf {
    fn name(&self) -> &'static str {
        "ctf"
    }

    fn stats(&self) -> &'static [&'static str] {
        &STATS
    }

    fn default_config(&self) -> Vec<u8> {
        CtfConfig::default().encode()
    }

    fn set(&self, mode_config: &[u8], name: &str, value: &str) -> Result<Vec<u8>, SettingError> {
        CtfConfig::set_encoded(mode_config, name, value)
    }

    fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
        Ok(schema(&CtfConfig::decode(mode_config)?))
    }

    fn setup(
        &self,
        config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError> {
        let settings = CtfConfig::of(config)?;
        // The arena's level, so the arena's prediction holds here too.
        build_level(
            &mut world.resource_mut::<Physics>().world,
            settings.half_extent,
            &mut SplitMix64::new(config.seed),
        );
        world.insert_resource(Settings(settings));
        world.insert_resource(Writer(Fields::new(schema(&settings))));
        for team in 0..2u8 {
            let id = world.resource_mut::<NetIds>().allocate();
            let at = settings.base(team);
            world.spawn((
                NetId(id),
                Flag {
                    team,
                    carrier: None,
                    at: [at[0], 1.0, at[2]],
                    home: true,
                    return_in: 0,
                    pickup_after: 0,
                },
            ));
        }
        for team in 0..2u8 {
            let id = world.resource_mut::<NetIds>().allocate();
            world.spawn((NetId(id), TeamScore { team, captures: 0 }));
        }
        schedule.add_systems(outpost_arena::movement::move_characters.in_set(TickSet::PrePhysics));
        schedule.add_systems(play_flags.in_set(TickSet::PostPhysics));
        Ok(())
    }

    fn spawn_player(
        &self,
        world: &mut World,
        _player: PlayerId,
        team: u8,
        net_id: EntityId,
    ) -> Entity {
        let team = team.min(1);
        let settings = world.resource::<Settings>().0;
        let base = settings.base(team);
        // Seats spread along the base's z axis, a few metres in from it.
        let inward = if team == 0 { 3.0 } else { -3.0 };
        let row = (net_id.0 % 8) as f32 - 3.5;
        let at = Vector::new(base[0] + inward, spawn_height(), row * 1.5);
        let body = spawn_character_body(world, at, net_id);
        world
            .spawn((RigidBodyRef(body), Motion::default(), Team(team)))
            .id()
    }

    fn write_records(&self, world: &mut World, out: &mut View) {
        let mut rows: Vec<(EntityId, Row)> = Vec::new();
        {
            let mut characters = world.query::<(&NetId, &RigidBodyRef, &Motion, &Team)>();
            let physics = world.resource::<Physics>();
            for (id, body, motion, team) in characters.iter(world) {
                let Some(rb) = physics.world.bodies.get(body.0) else {
                    continue;
                };
                let (p, r) = (rb.translation(), rb.rotation());
                rows.push((
                    id.0,
                    vec![
                        ("character", vec![]),
                        ("position", vec![Value::Vec3([p.x, p.y, p.z])]),
                        ("rotation", vec![Value::Quat([r.x, r.y, r.z, r.w])]),
                        (
                            "motion",
                            vec![Value::Vec3(motion.velocity), Value::Bool(motion.grounded)],
                        ),
                        ("team", vec![Value::Enum(u32::from(team.0))]),
                    ],
                ));
            }
        }
        let positions = character_positions(world);
        let mut flags = world.query::<(&NetId, &Flag)>();
        for (id, flag) in flags.iter(world) {
            let at = flag_position(flag, &positions);
            rows.push((
                id.0,
                vec![
                    ("position", vec![Value::Vec3(at)]),
                    ("team", vec![Value::Enum(u32::from(flag.team))]),
                    (
                        "flag",
                        vec![
                            Value::Entity(flag.carrier.unwrap_or(EntityId(0))),
                            Value::Bool(flag.home),
                        ],
                    ),
                ],
            ));
        }
        let mut scores = world.query::<(&NetId, &TeamScore)>();
        for (id, score) in scores.iter(world) {
            rows.push((
                id.0,
                vec![
                    ("team", vec![Value::Enum(u32::from(score.team))]),
                    ("score", vec![Value::Int(i64::from(score.captures))]),
                ],
            ));
        }
        world.resource::<Writer>().0.write_rows(out, &mut rows);
    }

    fn bot(&self, config: &MatchConfig, _seed: u64) -> Option<Box<dyn outpost_sim::Bot>> {
        Some(Box::new(bot::CtfBot::new(CtfConfig::of(config).ok()?)))
    }

    fn prediction(&self, config: &MatchConfig, _own: EntityId) -> Option<Box<dyn Prediction>> {
        let settings = CtfConfig::of(config).ok()?;
        let predictor = Predictor::for_level(settings.half_extent, config.seed, config.tick_hz);
        Some(Box::new(outpost_arena::ArenaPrediction(predictor)))
    }
}

/// Every character's position and team, by id.
fn character_positions(world: &mut World) -> Vec<(EntityId, [f32; 3], u8)> {
    let mut query = world.query::<(&NetId, &RigidBodyRef, &Team)>();
    let physics = world.resource::<Physics>();
    let mut out: Vec<(EntityId, [f32; 3], u8)> = query
        .iter(world)
        .filter_map(|(id, body, team)| {
            let p = physics.world.bodies.get(body.0)?.translation();
            Some((id.0, [p.x, p.y, p.z], team.0))
        })
        .collect();
    out.sort_by_key(|(id, ..)| *id);
    out
}

/// Where a flag is shown: above its carrier, or where it rests.
fn flag_position(flag: &Flag, characters: &[(EntityId, [f32; 3], u8)]) -> [f32; 3] {
    flag.carrier
        .and_then(|c| characters.iter().find(|(id, ..)| *id == c))
        .map_or(flag.at, |(_, p, _)| [p[0], p[1] + 1.2, p[2]])
}

fn horizontal(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// The rules, once a tick after physics, in a fixed order (entity ids break ties):
/// drops (asked for, or tagged), returns, pickups, captures; then the end of the match.
#[allow(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it reads"
)]
fn play_flags(
    clock: Res<MatchClock>,
    settings: Res<Settings>,
    physics: Res<Physics>,
    mut events: ResMut<MatchEvents>,
    mut end: ResMut<EndMatch>,
    mut flags: Query<&mut Flag>,
    mut scores: Query<&mut TeamScore>,
    mut players: Query<(&NetId, &RigidBodyRef, &Team, &Controls, &mut PlayerSlot)>,
) {
    let settings = settings.0;
    // Each character: id, position, team, and whether it asks to drop a flag.
    let mut characters: Vec<(EntityId, [f32; 3], u8, bool)> = players
        .iter()
        .filter_map(|(id, body, team, controls, _)| {
            let p = physics.world.bodies.get(body.0)?.translation();
            let dropping = controls
                .this_tick
                .iter()
                .any(|i| i.slots.get(4).is_some_and(|b| b & u32::from(DROP) != 0));
            Some((id.0, [p.x, p.y, p.z], team.0, dropping))
        })
        .collect();
    characters.sort_by_key(|c| c.0);
    let mut ordered: Vec<Mut<Flag>> = flags.iter_mut().collect();
    ordered.sort_by_key(|f| f.team);
    let mut carrying: Vec<EntityId> = ordered.iter().filter_map(|f| f.carrier).collect();
    // Each (character, stat) counted this tick, applied to the players' slots at the end.
    let mut counts: Vec<(EntityId, usize)> = Vec::new();
    for flag in ordered.iter_mut() {
        // A carrier who left the match (or the view of the world) drops it.
        if let Some(carrier) = flag.carrier {
            let Some(&(_, at, team, dropping)) = characters.iter().find(|c| c.0 == carrier) else {
                flag.carrier = None;
                flag.home = false;
                flag.return_in = u32::from(settings.return_s) * u32::from(clock.tick_hz);
                continue;
            };
            let tagger = characters.iter().find(|c| {
                c.2 != team && horizontal(c.1, at) < TAG_RADIUS && (c.1[1] - at[1]).abs() < 2.0
            });
            if let Some(tagger) = tagger.filter(|_| !dropping) {
                counts.push((tagger.0, STAT_TAGS));
            }
            if dropping || tagger.is_some() {
                flag.carrier = None;
                flag.at = [at[0], at[1].max(0.5), at[2]];
                flag.home = false;
                flag.return_in = u32::from(settings.return_s) * u32::from(clock.tick_hz);
                flag.pickup_after = clock.tick + u32::from(clock.tick_hz);
            }
            continue;
        }
        if !flag.home {
            flag.return_in = flag.return_in.saturating_sub(1);
            let touched_by_own = characters
                .iter()
                .find(|c| c.2 == flag.team && horizontal(c.1, flag.at) < TOUCH_RADIUS);
            if let Some(returner) = touched_by_own {
                counts.push((returner.0, STAT_RETURNS));
            }
            if flag.return_in == 0 || touched_by_own.is_some() {
                let base = settings.base(flag.team);
                flag.at = [base[0], 1.0, base[2]];
                flag.home = true;
                continue;
            }
        }
        // The first enemy (by id) touching it takes it, unless they carry one already.
        if clock.tick < flag.pickup_after {
            continue;
        }
        let taker = characters.iter().find(|c| {
            c.2 != flag.team
                && !carrying.contains(&c.0)
                && horizontal(c.1, flag.at) < TOUCH_RADIUS
                && (c.1[1] - flag.at[1]).abs() < 2.5
        });
        if let Some(&(id, ..)) = taker {
            flag.carrier = Some(id);
            flag.home = false;
            carrying.push(id);
            counts.push((id, STAT_PICKUPS));
        }
    }
    // Captures: a carrier at its own base while its own flag is home.
    let home: Vec<(u8, bool)> = ordered.iter().map(|f| (f.team, f.home)).collect();
    for flag in ordered.iter_mut() {
        let Some(carrier) = flag.carrier else {
            continue;
        };
        let Some(&(_, at, team, _)) = characters.iter().find(|c| c.0 == carrier) else {
            continue;
        };
        let own_home = home.iter().any(|&(t, h)| t == team && h);
        if !own_home || horizontal(at, settings.base(team)) > CAPTURE_RADIUS {
            continue;
        }
        let base = settings.base(flag.team);
        flag.carrier = None;
        flag.at = [base[0], 1.0, base[2]];
        flag.home = true;
        let mut captures = 0;
        for mut score in &mut scores {
            if score.team == team {
                score.captures += 1;
                captures = score.captures;
            }
        }
        for (id, .., mut slot) in &mut players {
            if id.0 == carrier {
                slot.score += 1;
            }
        }
        if let Some(event) = (Capture {
            carrier,
            team,
            captures,
        })
        .event()
        {
            events.push(clock.tick, event);
        }
        if captures >= u32::from(settings.captures_to_win) {
            end.0 = Some(MatchEndReason::ScoreLimit);
        }
    }
    if !counts.is_empty() {
        for (id, .., mut slot) in &mut players {
            for &(_, stat) in counts.iter().filter(|c| c.0 == id.0) {
                slot.count(stat, 1);
            }
        }
    }
}
