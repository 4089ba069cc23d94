//! The arena mode: movement, pushing, shooting, scoring, match end, determinism.

mod common;

use common::{position, teleport, yaw_towards};
use outpost_arena::{EntityKind, PlayerInput};

use outpost_arena::{self as arena, ArenaConfig, spawn_height};
use outpost_protocol::*;
use outpost_sim::rapier3d::prelude::Vector;
use outpost_sim::{Match, SplitMix64};

fn config(props: u16) -> MatchConfig {
    config_with(ArenaConfig {
        props,
        ..ArenaConfig::default()
    })
}

fn config_with(settings: ArenaConfig) -> MatchConfig {
    MatchConfig {
        seed: 42,
        ..arena::config(&settings)
    }
}

/// Places a player's character at a point.
fn teleport_player(game: &mut Match, player: PlayerId, at: Vector) {
    let id = game.player_entity(player).expect("seated");
    teleport(game, id, at);
}

/// Player 1 at the origin and player 2 at `target_at`, one tick run; returns the match,
/// the shooter's entity, and the yaw from the shooter to the target.
fn facing_off(cfg: &MatchConfig, target_at: Vector) -> (Match, EntityId, u16) {
    let mut game = Match::new(MatchId(1), cfg, &arena::modes()).expect("valid config");
    let shooter = game.add_player(PlayerId(1)).expect("a free seat");
    let target = game.add_player(PlayerId(2)).expect("a free seat");
    teleport_player(
        &mut game,
        PlayerId(1),
        Vector::new(0.0, spawn_height(), 0.0),
    );
    teleport_player(&mut game, PlayerId(2), target_at);
    game.step();
    let yaw = yaw_towards(position(&mut game, shooter), position(&mut game, target));
    (game, shooter, yaw)
}

/// Feeds `ticks` copies of an input (with rising sequence numbers) and steps.
fn hold(game: &mut Match, player: PlayerId, mut input: PlayerInput, ticks: u32) {
    let start = game.ack_input_seq(player).unwrap_or(0);
    for i in 1..=ticks {
        input.seq = start + i;
        assert!(game.push_input(player, input));
        game.step();
    }
}

#[test]
fn a_player_walks_where_they_look() {
    let mut game = Match::new(MatchId(1), &config(0), &arena::modes()).unwrap();
    let me = game.add_player(PlayerId(1)).unwrap();
    teleport_player(
        &mut game,
        PlayerId(1),
        Vector::new(0.0, spawn_height(), 0.0),
    );
    game.step();
    let before = position(&mut game, me);
    // yaw 0 faces +Z; one second forward at 6 m/s.
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            move_z: 127,
            ..Default::default()
        },
        60,
    );
    let after = position(&mut game, me);
    let dz = after[2] - before[2];
    assert!((5.0..=6.5).contains(&dz), "moved {dz} m forward");
    assert!(
        (after[0] - before[0]).abs() < 0.1,
        "drifted sideways: {before:?} -> {after:?}"
    );
    assert!(
        (after[1] - before[1]).abs() < 0.2,
        "left the floor: {before:?} -> {after:?}"
    );

    // Turn a quarter (yaw π/2 faces +X) and walk again.
    let yaw = PlayerInput::yaw_from_radians(std::f32::consts::FRAC_PI_2);
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            move_z: 127,
            yaw,
            ..Default::default()
        },
        30,
    );
    let turned = position(&mut game, me);
    assert!(turned[0] - after[0] > 2.5, "{after:?} -> {turned:?}");
}

#[test]
fn a_player_jumps_and_lands() {
    let mut game = Match::new(MatchId(1), &config(0), &arena::modes()).unwrap();
    let me = game.add_player(PlayerId(1)).unwrap();
    hold(&mut game, PlayerId(1), PlayerInput::default(), 10);
    let ground = position(&mut game, me)[1];
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            buttons: PlayerInput::JUMP,
            ..Default::default()
        },
        1,
    );
    let mut peak = ground;
    for _ in 0..60 {
        hold(&mut game, PlayerId(1), PlayerInput::default(), 1);
        peak = peak.max(position(&mut game, me)[1]);
    }
    assert!(peak - ground > 0.8, "jumped only {} m", peak - ground);
    let landed = position(&mut game, me)[1];
    assert!(
        (landed - ground).abs() < 0.1,
        "ground {ground}, landed at {landed}"
    );
}

#[test]
fn walking_into_a_prop_pushes_it() {
    let mut game = Match::new(MatchId(1), &config(0), &arena::modes()).unwrap();
    game.add_player(PlayerId(1)).unwrap();
    teleport_player(
        &mut game,
        PlayerId(1),
        Vector::new(0.0, spawn_height(), -3.0),
    );
    let prop = arena::spawn_prop(game.world_mut(), Vector::new(0.0, 0.5, 0.0));
    hold(&mut game, PlayerId(1), PlayerInput::default(), 30); // let the box settle
    let before = position(&mut game, prop);
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            move_z: 127,
            ..Default::default()
        },
        90,
    );
    let after = position(&mut game, prop);
    assert!(
        after[2] - before[2] > 0.5,
        "prop moved from {before:?} to {after:?}"
    );
}

#[test]
fn a_hit_scores_and_is_reported() {
    let (mut game, shooter, yaw) = facing_off(&config(0), Vector::new(0.0, spawn_height(), 8.0));
    game.drain_events();
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            yaw,
            buttons: PlayerInput::FIRE,
            ..Default::default()
        },
        1,
    );
    let events = game.drain_events();
    assert!(
        events.iter().any(|e| arena::Hit::from_event(&e.event)
            == Some(arena::Hit {
                shooter: game.player_entity(PlayerId(1)).expect("seated"),
                target: game.player_entity(PlayerId(2)).expect("seated"),
                shooter_score: 1
            })),
        "{events:?}"
    );
    assert_eq!(
        game.scores()[0],
        PlayerScore {
            player: PlayerId(1),
            entity: shooter,
            score: 1
        }
    );

    // Firing away from the target scores nothing.
    let away = yaw.wrapping_add(32768);
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            yaw: away,
            buttons: PlayerInput::FIRE,
            ..Default::default()
        },
        30,
    );
    assert!(
        game.drain_events()
            .iter()
            .all(|e| arena::Hit::from_event(&e.event).is_none())
    );
}

#[test]
fn holding_fire_is_rate_limited() {
    let (mut game, _, yaw) = facing_off(&config(0), Vector::new(0.0, spawn_height(), 8.0));
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            yaw,
            buttons: PlayerInput::FIRE,
            ..Default::default()
        },
        60,
    );
    assert_eq!(game.scores()[0].score, 4, "4 shots per second");
}

#[test]
fn the_timer_ends_the_match() {
    let cfg = MatchConfig {
        duration_s: 5,
        ..config(4)
    };
    let mut game = Match::new(MatchId(1), &cfg, &arena::modes()).unwrap();
    game.add_player(PlayerId(1)).unwrap();
    for _ in 0..299 {
        game.step();
    }
    assert!(!game.is_over());
    game.step();
    assert_eq!(game.outcome(), Some(MatchEndReason::TimeUp));
    let ended = game
        .drain_events()
        .into_iter()
        .find(|e| matches!(e.event, MatchEvent::MatchEnded { .. }));
    assert_eq!(ended.map(|e| e.tick), Some(300));
    game.step();
    assert_eq!(game.tick(), 300, "an ended match does not tick");
    assert_eq!(
        game.add_player(PlayerId(9)),
        Err(outpost_sim::SimError::MatchOver)
    );
}

#[test]
fn the_score_limit_ends_the_match() {
    let cfg = config_with(ArenaConfig {
        score_limit: 1,
        props: 0,
        ..ArenaConfig::default()
    });
    let (mut game, _, yaw) = facing_off(&cfg, Vector::new(3.0, spawn_height(), 3.0));
    hold(
        &mut game,
        PlayerId(1),
        PlayerInput {
            yaw,
            buttons: PlayerInput::FIRE,
            ..Default::default()
        },
        1,
    );
    assert_eq!(game.outcome(), Some(MatchEndReason::ScoreLimit));
    let events = game.drain_events();
    let scores = events.iter().find_map(|e| match &e.event {
        MatchEvent::MatchEnded { scores, .. } => Some(scores.clone()),
        _ => None,
    });
    assert_eq!(scores.map(|s| s[0].player), Some(PlayerId(1)));
}

#[test]
fn seats_are_limited_and_rejoining_keeps_the_character() {
    let cfg = MatchConfig {
        max_players: 2,
        ..config(0)
    };
    let mut game = Match::new(MatchId(1), &cfg, &arena::modes()).unwrap();
    let first = game.add_player(PlayerId(1)).unwrap();
    game.add_player(PlayerId(2)).unwrap();
    assert_eq!(
        game.add_player(PlayerId(3)),
        Err(outpost_sim::SimError::MatchFull(2))
    );
    game.disconnect_player(PlayerId(1));
    assert_eq!(game.connected_count(), 1);
    assert_eq!(game.add_player(PlayerId(1)), Ok(first));
    assert_eq!(game.connected_count(), 2);
    game.remove_player(PlayerId(2));
    assert_eq!(game.player_count(), 1);
    assert_eq!(arena::count_of(&mut game, EntityKind::Player), 1);
}

#[test]
fn inputs_apply_once_and_in_order() {
    let mut game = Match::new(MatchId(1), &config(0), &arena::modes()).unwrap();
    game.add_player(PlayerId(1)).unwrap();
    let input = |seq| PlayerInput {
        seq,
        move_z: 127,
        ..Default::default()
    };
    // Arrive out of order and duplicated, as redundant datagrams do.
    for seq in [3, 1, 2, 2, 1, 3] {
        game.push_input(PlayerId(1), input(seq));
    }
    // One tick of time has passed: one input of a tick is applied, whatever waits.
    game.step();
    assert_eq!(game.ack_input_seq(PlayerId(1)), Some(1));
    assert!(!game.push_input(PlayerId(1), input(1)), "already applied");
    game.step();
    assert_eq!(game.ack_input_seq(PlayerId(1)), Some(2));
    game.step();
    assert_eq!(game.ack_input_seq(PlayerId(1)), Some(3));
    game.step();
    assert_eq!(
        game.ack_input_seq(PlayerId(1)),
        Some(3),
        "no input: the last one holds"
    );
}

/// Runs a busy match from fixed inputs and returns every entity's state as raw bits,
/// plus all events.
fn scripted_run() -> (Vec<u32>, Vec<TickedEvent>) {
    let mut game = Match::new(
        MatchId(7),
        &MatchConfig {
            seed: 9,
            ..arena::config(&ArenaConfig {
                props: 60,
                ..ArenaConfig::default()
            })
        },
        &arena::modes(),
    )
    .expect("valid config");
    for p in 1..=6 {
        game.add_player(PlayerId(p)).expect("a free seat");
    }
    let mut rng = SplitMix64::new(1234);
    let mut events = Vec::new();
    for tick in 1..=600u32 {
        for p in 1..=6 {
            let input = PlayerInput {
                seq: tick,
                ticks: 1,
                move_x: (rng.next_u64() % 255) as u8 as i8,
                move_z: (rng.next_u64() % 255) as u8 as i8,
                yaw: rng.next_u64() as u16,
                pitch: ((rng.next_u64() % 4000) as i16) - 2000,
                buttons: (rng.next_u64() % 4) as u8,
                view_tick: tick,
            };
            game.push_input(PlayerId(p), input);
        }
        game.step();
        events.extend(game.drain_events());
    }
    let bits = arena::entity_states(&mut game)
        .iter()
        .flat_map(|e| {
            let mut v = vec![e.id.0];
            v.extend(
                e.position
                    .iter()
                    .chain(&e.rotation)
                    .chain(&e.velocity)
                    .map(|f| f.to_bits()),
            );
            v
        })
        .collect();
    (bits, events)
}

#[test]
fn same_inputs_give_the_same_match_bit_for_bit() {
    let (first_state, first_events) = scripted_run();
    let (second_state, second_events) = scripted_run();
    assert!(first_state.len() > 60 * 11);
    assert_eq!(first_state, second_state);
    assert_eq!(first_events, second_events);
}

#[test]
fn the_same_seed_builds_the_same_level() {
    let mut a = Match::new(MatchId(1), &config(30), &arena::modes()).unwrap();
    let mut b = Match::new(MatchId(2), &config(30), &arena::modes()).unwrap();
    assert_eq!(arena::entity_states(&mut a), arena::entity_states(&mut b));
    let mut c = Match::new(
        MatchId(3),
        &MatchConfig {
            seed: 43,
            ..config(30)
        },
        &arena::modes(),
    )
    .unwrap();
    assert_ne!(arena::entity_states(&mut a), arena::entity_states(&mut c));
    assert_eq!(arena::count_of(&mut a, EntityKind::Prop), 30);
}
