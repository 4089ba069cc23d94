//! A game mode no Outpost crate ships, written in this file against the public API alone,
//! hosted by the edge's match host and played by clients that know nothing of it but the
//! schema the Welcome carries.

use bevy_ecs::prelude::*;
use outpost_harness::Harness;
use outpost_protocol::link::LinkConfig;
use outpost_protocol::replication::{InputRecord, View};
use outpost_protocol::schema::{ComponentDef, FieldDef, FieldKind, ModeSchema, Value, Visibility};
use outpost_protocol::{ConfigError, EntityId, MatchConfig, PlayerId};
use outpost_sim::{Controls, GameMode, Modes, NetId, NetIds, SimError, TickSet};

/// Beacons: every player owns a beacon and climbs its level up or down with its input;
/// three unowned beacons stand at level 0.
struct Beacons;

#[derive(Component)]
struct Beacon {
    at: [f32; 3],
    level: i64,
}

fn schema() -> ModeSchema {
    ModeSchema {
        mode: "beacons".into(),
        components: vec![ComponentDef {
            name: "beacon".into(),
            fields: vec![
                FieldDef::new(
                    "at",
                    FieldKind::Position {
                        min: [-10.0, -1.0, -10.0],
                        max: [10.0, 1.0, 10.0],
                        step: 0.01,
                    },
                ),
                FieldDef::new("level", FieldKind::Int { min: 0, max: 9 }),
            ],
            visibility: Visibility::Everyone,
            priority: 0,
        }],
        input: vec![FieldDef::new("climb", FieldKind::Int { min: -1, max: 1 })],
        events: Vec::new(),
        requests: Vec::new(),
    }
}

fn climb(mut beacons: Query<(&Controls, &mut Beacon)>) {
    for (controls, mut beacon) in &mut beacons {
        for input in &controls.this_tick {
            // The input's one field, `climb`, is sent as its offset from -1.
            let step = i64::from(input.slots[0]) - 1;
            beacon.level = (beacon.level + step * i64::from(input.ticks)).clamp(0, 9);
        }
    }
}

impl GameMode for Beacons {
    fn name(&self) -> &'static str {
        "beacons"
    }

    fn default_config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
        if !mode_config.is_empty() {
            return Err(ConfigError::new("mode_config", "beacons take no settings"));
        }
        Ok(schema())
    }

    fn setup(
        &self,
        _config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError> {
        for x in [-6.0, -3.0, 3.0] {
            let id = world.resource_mut::<NetIds>().allocate();
            world.spawn((
                NetId(id),
                Beacon {
                    at: [x, 0.0, 5.0],
                    level: 0,
                },
            ));
        }
        schedule.add_systems(climb.in_set(TickSet::PrePhysics));
        Ok(())
    }

    fn spawn_player(
        &self,
        world: &mut World,
        _player: PlayerId,
        _team: u8,
        net_id: EntityId,
    ) -> Entity {
        world
            .spawn(Beacon {
                at: [net_id.0 as f32, 0.0, 0.0],
                level: 0,
            })
            .id()
    }

    fn write_records(&self, world: &mut World, out: &mut View) {
        let kinds = schema().components.remove(0).fields;
        let mut rows: Vec<(EntityId, Vec<u32>)> = world
            .query::<(&NetId, &Beacon)>()
            .iter(world)
            .map(|(id, beacon)| {
                let mut slots = vec![0; 4];
                kinds[0]
                    .kind
                    .quantize(&Value::Vec3(beacon.at), &mut slots[..3]);
                kinds[1]
                    .kind
                    .quantize(&Value::Int(beacon.level), &mut slots[3..]);
                (id.0, slots)
            })
            .collect();
        rows.sort_by_key(|row| row.0);
        for (id, slots) in rows {
            out.push(id, 1, &slots);
        }
    }
}

fn climb_input(step: u32) -> InputRecord {
    InputRecord {
        seq: 0,
        ticks: 1,
        view_tick: 0,
        slots: vec![step],
    }
}

#[test]
fn a_mode_from_outside_is_hosted_and_read_from_its_schema_alone() {
    let modes = Modes::new().with(Beacons);
    let config = MatchConfig {
        max_players: 2,
        duration_s: 10,
        ..modes.config("beacons", None).expect("the mode's defaults")
    };
    let settings = Harness::default_settings(modes);
    let mut h = Harness::with_settings(&config, 3, settings);
    let climber = h.join(1, LinkConfig::good()).expect("seated");
    let watcher = h.join(2, LinkConfig::good()).expect("seated");
    // Up seven ticks, then down two: level 5 (clamped to 0..=9 all along).
    for tick in 0..90 {
        let step = match tick {
            0..7 => 2,
            7..9 => 0,
            _ => 1,
        };
        h.send_input(climber, climb_input(step));
        h.send_input(watcher, climb_input(1));
        h.tick();
    }
    let climber_entity = h.client(climber).welcome().entity;
    for client in [climber, watcher] {
        let conn = h.client(client);
        assert_eq!(
            conn.schema(),
            &schema(),
            "the Welcome carried the mode's schema"
        );
        let world = conn.latest().expect("snapshots arrived");
        let fields = conn.fields();
        let levels: Vec<(EntityId, Option<Value>)> = world
            .records
            .iter()
            .map(|r| (r.id, fields.value(&r, "beacon", "level")))
            .collect();
        assert_eq!(levels.len(), 5, "three beacons and two players' {levels:?}");
        for (id, level) in levels {
            let expected = if id == climber_entity { 5 } else { 0 };
            assert_eq!(level, Some(Value::Int(expected)), "{id:?}");
        }
        let at = world
            .records
            .find(climber_entity)
            .and_then(|r| fields.value(&r, "beacon", "at"));
        assert_eq!(
            at,
            Some(Value::Vec3([climber_entity.0 as f32, 0.0, 0.0])),
            "positions read from the schema's grid"
        );
    }
}

#[test]
fn an_input_of_another_mode_is_refused_before_it_is_sent() {
    let modes = Modes::new().with(Beacons);
    let config = modes.config("beacons", None).expect("the mode's defaults");
    let settings = Harness::default_settings(modes);
    let mut h = Harness::with_settings(&config, 4, settings);
    let client = h.join(1, LinkConfig::good()).expect("seated");
    let arena_input = outpost_arena::PlayerInput::default();
    let now = h.now();
    assert!(matches!(
        h.client_mut(client).send_input(arena_input, now),
        Err(outpost_client::ClientError::Schema(_))
    ));
}

/// A mode that declares no settings refuses any given as text, saying it has none; one
/// that names stats badly is refused before a match of it is hosted.
#[test]
fn settings_a_mode_lacks_and_stats_badly_named_are_refused() {
    let modes = Modes::new().with(Beacons);
    let err = modes
        .configure("beacons", &[("height", "3")])
        .expect_err("no settings");
    assert_eq!(
        err.reject_code(),
        outpost_protocol::RejectCode::InvalidConfig
    );
    assert!(
        err.to_string()
            .contains("no setting `height` (settings: none)"),
        "{err}"
    );
    assert!(modes.configure("beacons", &[]).is_ok());

    struct BadStats;
    impl GameMode for BadStats {
        fn name(&self) -> &'static str {
            "bad_stats"
        }
        fn default_config(&self) -> Vec<u8> {
            Vec::new()
        }
        fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
            Beacons.schema(mode_config)
        }
        fn setup(
            &self,
            config: &MatchConfig,
            world: &mut World,
            schedule: &mut Schedule,
        ) -> Result<(), SimError> {
            Beacons.setup(config, world, schedule)
        }
        fn spawn_player(
            &self,
            world: &mut World,
            player: PlayerId,
            team: u8,
            net_id: EntityId,
        ) -> Entity {
            Beacons.spawn_player(world, player, team, net_id)
        }
        fn write_records(&self, world: &mut World, out: &mut View) {
            Beacons.write_records(world, out);
        }
        fn stats(&self) -> &'static [&'static str] {
            &["returns", "Returns!"]
        }
    }
    let modes = Modes::new().with(BadStats);
    let config = modes
        .config("bad_stats", None)
        .expect("the settings are fine");
    let Err(refused) = outpost_sim::Match::new(outpost_protocol::MatchId(1), &config, &modes)
    else {
        panic!("a mode with bad stat names was hosted");
    };
    assert!(refused.to_string().contains("stat names"), "{refused}");
}
