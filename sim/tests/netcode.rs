//! What the netcode relies on in the simulation: movement per input command, prediction
//! that matches the server exactly, and lag-compensated shots.

use outpost_protocol::*;
use outpost_sim::arena::{Predictor, spawn_height};
use outpost_sim::rapier3d::prelude::Vector;
use outpost_sim::{Match, Motion, Physics, RigidBodyRef, SplitMix64};

fn config() -> MatchConfig {
    MatchConfig {
        props: 0,
        seed: 42,
        max_players: 4,
        ..MatchConfig::default()
    }
}

fn position(game: &mut Match, id: EntityId) -> [f32; 3] {
    game.replicated_state()
        .into_iter()
        .find(|e| e.id == id)
        .expect("replicated")
        .position
}

fn teleport(game: &mut Match, id: EntityId, at: Vector) {
    let world = game.world_mut();
    let mut query = world.query::<(&outpost_sim::NetId, &RigidBodyRef)>();
    let body = query
        .iter(world)
        .find(|(n, _)| n.0 == id)
        .map(|(_, b)| b.0)
        .expect("body");
    let mut physics = world.resource_mut::<Physics>();
    let rb = physics.world.bodies.get_mut(body).expect("rb");
    rb.set_translation(at, true);
    rb.set_next_kinematic_translation(at);
}

#[test]
fn a_tick_without_input_does_not_move_and_a_burst_catches_up() {
    let mut game = Match::new(MatchId(1), &config()).expect("match");
    let me = game.add_player(PlayerId(1)).expect("seat");
    let forward = |seq| PlayerInput {
        seq,
        move_z: 127,
        ..Default::default()
    };
    game.push_input(PlayerId(1), forward(1));
    game.step();
    let after_one = position(&mut game, me);
    game.step();
    assert_eq!(position(&mut game, me), after_one, "no input, no movement");
    for seq in 2..=7 {
        game.push_input(PlayerId(1), forward(seq));
    }
    game.step();
    assert_eq!(
        game.ack_input_seq(PlayerId(1)),
        Some(3),
        "two inputs applied to catch up"
    );
    game.step();
    game.step();
    assert_eq!(
        game.ack_input_seq(PlayerId(1)),
        Some(5),
        "then one per tick again"
    );
    assert_eq!(game.input_counts(PlayerId(1)), Some((5, 0)));
}

/// The client predicts its character with the same code on the same grid: with nothing
/// else moving nearby, prediction equals the server's state bit for bit.
#[test]
fn prediction_matches_the_server_exactly() {
    let cfg = config();
    let mut game = Match::new(MatchId(1), &cfg).expect("match");
    let me = game.add_player(PlayerId(1)).expect("seat");
    game.step();
    let start = game
        .replicated_state()
        .into_iter()
        .find(|e| e.id == me)
        .expect("me");
    let mut predictor = Predictor::new(&cfg).expect("predictor");
    predictor.reset(start.position, game.motion(PlayerId(1)).expect("motion"));
    let mut rng = SplitMix64::new(5);
    for seq in 1..=600u32 {
        let input = PlayerInput {
            seq,
            move_x: (rng.next_u64() % 255) as u8 as i8,
            move_z: (rng.next_u64() % 255) as u8 as i8,
            yaw: (rng.next_u64() % 65536) as u16,
            buttons: if rng.next_u64().is_multiple_of(20) {
                PlayerInput::JUMP
            } else {
                0
            },
            ..Default::default()
        };
        game.push_input(PlayerId(1), input);
        game.step();
        let predicted = predictor.apply(&input);
        let server = position(&mut game, me);
        assert_eq!(
            predicted.map(f32::to_bits),
            server.map(f32::to_bits),
            "input {seq}"
        );
        assert_eq!(
            predictor.motion(),
            game.motion(PlayerId(1)).expect("motion")
        );
    }
}

/// Snapshot → reset → replay equals an uninterrupted run (reconciliation's contract).
#[test]
fn reconciling_from_a_snapshot_replays_to_the_same_place() {
    let cfg = config();
    let mut predictor = Predictor::new(&cfg).expect("predictor");
    predictor.reset([0.0, spawn_height(), 0.0], Motion::default());
    let inputs: Vec<PlayerInput> = (1..=90)
        .map(|seq| PlayerInput {
            seq,
            move_z: 127,
            yaw: (seq * 500) as u16,
            buttons: if seq == 30 { PlayerInput::JUMP } else { 0 },
            ..Default::default()
        })
        .collect();
    let mut checkpoint = None;
    for input in &inputs {
        predictor.apply(input);
        if input.seq == 40 {
            checkpoint = Some((predictor.position(), predictor.motion()));
        }
    }
    let straight = predictor.position();
    let (at, motion) = checkpoint.expect("checkpoint");
    predictor.reset(at, motion);
    for input in &inputs[40..] {
        predictor.apply(input);
    }
    assert_eq!(
        predictor.position().map(f32::to_bits),
        straight.map(f32::to_bits)
    );
}

fn yaw_towards(from: [f32; 3], to: [f32; 3]) -> u16 {
    PlayerInput::yaw_from_radians((to[0] - from[0]).atan2(to[2] - from[2]))
}

/// Runs a target strafing across the shooter's view for `ticks`, returning its positions.
fn strafe(game: &mut Match, target: EntityId, seq: &mut u32, ticks: u32) -> Vec<(u32, [f32; 3])> {
    let mut seen = Vec::new();
    for _ in 0..ticks {
        *seq += 1;
        game.push_input(
            PlayerId(2),
            PlayerInput {
                seq: *seq,
                move_x: 127,
                ..Default::default()
            },
        );
        game.push_input(
            PlayerId(1),
            PlayerInput {
                seq: *seq,
                ..Default::default()
            },
        );
        game.step();
        seen.push((game.tick(), position(game, target)));
    }
    seen
}

#[test]
fn a_shot_at_where_the_shooter_saw_a_moving_target_hits() {
    let mut game = Match::new(MatchId(1), &config()).expect("match");
    let shooter = game.add_player(PlayerId(1)).expect("seat");
    let target = game.add_player(PlayerId(2)).expect("seat");
    teleport(&mut game, shooter, Vector::new(0.0, spawn_height(), 0.0));
    teleport(&mut game, target, Vector::new(-3.0, spawn_height(), 10.0));
    let mut seq = 0;
    let seen = strafe(&mut game, target, &mut seq, 30);
    // At 100 ms round trip plus interpolation, the shooter sees the target 6 ticks late.
    let (view_tick, old) = seen[seen.len() - 7];
    let me = position(&mut game, shooter);
    let now = position(&mut game, target);
    assert!(
        (now[0] - old[0]).abs() > 0.5,
        "the target moved on: {old:?} -> {now:?}"
    );
    seq += 1;
    let shot = PlayerInput {
        seq,
        yaw: yaw_towards(me, old),
        buttons: PlayerInput::FIRE,
        view_tick: view_tick + 1,
        ..Default::default()
    };
    game.push_input(PlayerId(1), shot);
    game.push_input(
        PlayerId(2),
        PlayerInput {
            seq,
            move_x: 127,
            ..Default::default()
        },
    );
    game.step();
    let hits: Vec<_> = game
        .drain_events()
        .into_iter()
        .filter(|e| matches!(e.event, MatchEvent::Hit { .. }))
        .collect();
    assert_eq!(hits.len(), 1, "rewound to tick {view_tick}, the shot hits");

    // Without rewinding (claiming the current tick), the same aim misses.
    let mut game2 = Match::new(MatchId(1), &config()).expect("match");
    let shooter2 = game2.add_player(PlayerId(1)).expect("seat");
    let target2 = game2.add_player(PlayerId(2)).expect("seat");
    teleport(&mut game2, shooter2, Vector::new(0.0, spawn_height(), 0.0));
    teleport(&mut game2, target2, Vector::new(-3.0, spawn_height(), 10.0));
    let mut seq2 = 0;
    let seen2 = strafe(&mut game2, target2, &mut seq2, 30);
    let (_, old2) = seen2[seen2.len() - 7];
    seq2 += 1;
    let unrewound = PlayerInput {
        seq: seq2,
        yaw: yaw_towards(me, old2),
        buttons: PlayerInput::FIRE,
        view_tick: game2.tick() + 1,
        ..Default::default()
    };
    game2.push_input(PlayerId(1), unrewound);
    game2.push_input(
        PlayerId(2),
        PlayerInput {
            seq: seq2,
            move_x: 127,
            ..Default::default()
        },
    );
    game2.step();
    assert!(
        game2
            .drain_events()
            .iter()
            .all(|e| !matches!(e.event, MatchEvent::Hit { .. }))
    );
}

#[test]
fn a_shot_older_than_the_clamp_is_not_rewound_past_it() {
    let mut game = Match::new(MatchId(1), &config()).expect("match");
    let shooter = game.add_player(PlayerId(1)).expect("seat");
    let target = game.add_player(PlayerId(2)).expect("seat");
    teleport(&mut game, shooter, Vector::new(0.0, spawn_height(), 0.0));
    teleport(&mut game, target, Vector::new(-3.0, spawn_height(), 10.0));
    let mut seq = 0;
    let seen = strafe(&mut game, target, &mut seq, 50);
    // Claim to have seen the target 40 ticks (667 ms) ago; the clamp is 200 ms = 12 ticks.
    let (view_tick, old) = seen[seen.len() - 41];
    let me = position(&mut game, shooter);
    seq += 1;
    let shot = PlayerInput {
        seq,
        yaw: yaw_towards(me, old),
        buttons: PlayerInput::FIRE,
        view_tick,
        ..Default::default()
    };
    game.push_input(PlayerId(1), shot);
    game.push_input(
        PlayerId(2),
        PlayerInput {
            seq,
            move_x: 127,
            ..Default::default()
        },
    );
    game.step();
    assert!(
        game.drain_events()
            .iter()
            .all(|e| !matches!(e.event, MatchEvent::Hit { .. })),
        "a shot at where the target was 667 ms ago must not land"
    );
}
