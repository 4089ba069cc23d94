//! What the netcode relies on in the simulation: movement per input command, prediction
//! that matches the server exactly, and lag-compensated shots.

mod common;

use common::{position, teleport, yaw_towards};
use outpost_arena::PlayerInput;

use outpost_arena::{self as arena, ArenaConfig};
use outpost_arena::{Predictor, spawn_height};
use outpost_protocol::*;
use outpost_sim::rapier3d::prelude::Vector;
use outpost_sim::{Match, Motion, SplitMix64};

fn config() -> MatchConfig {
    MatchConfig {
        seed: 42,
        max_players: 4,
        ..arena::config(&ArenaConfig {
            props: 0,
            ..ArenaConfig::default()
        })
    }
}

#[test]
fn a_tick_without_input_does_not_move_and_a_backlog_after_loss_catches_up() {
    let mut game = Match::new(MatchId(1), &config(), &arena::modes()).expect("match");
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
    // Three more ticks of silence (lost datagrams), then the next datagram's redundant
    // copies: the ticks that passed pay for the backlog, worked off two per tick.
    game.step();
    game.step();
    game.step();
    for seq in 2..=6 {
        game.push_input(PlayerId(1), forward(seq));
    }
    game.step();
    assert_eq!(game.ack_input_seq(PlayerId(1)), Some(3), "two to catch up");
    game.step();
    assert_eq!(game.ack_input_seq(PlayerId(1)), Some(5), "two again");
    game.push_input(PlayerId(1), forward(7));
    game.step();
    assert_eq!(
        game.ack_input_seq(PlayerId(1)),
        Some(7),
        "two waiting is more than the slack"
    );
    game.push_input(PlayerId(1), forward(8));
    game.step();
    assert_eq!(
        game.ack_input_seq(PlayerId(1)),
        Some(8),
        "then one per tick"
    );
    assert_eq!(game.input_counts(PlayerId(1)), Some((8, 0)), "none dropped");
}

/// Regression test for the speed hack: a client sending inputs at 120 a second moved at
/// twice the speed of one sending 60, because every input was one movement step and a
/// backlog was worked off two per tick. Now inputs spend a per-player time budget that
/// never outruns the match clock, and an input stands for the ticks it covers, so one
/// sending 30 a second (each standing for two ticks) moves at full speed too.
#[test]
fn speed_hack_sending_faster_does_not_move_faster() {
    let distance = |inputs_per_s: u32| {
        let cfg = MatchConfig {
            seed: 42,
            max_players: 1,
            ..arena::config(&ArenaConfig {
                props: 0,
                half_extent: 200.0,
                ..ArenaConfig::default()
            })
        };
        let mut game = Match::new(MatchId(1), &cfg, &arena::modes()).expect("match");
        let me = game.add_player(PlayerId(1)).expect("seat");
        // The arena's centre is clear of pillars for 70 m: nothing in the way.
        teleport(&mut game, me, Vector::new(0.0, spawn_height(), 0.0));
        game.step();
        game.step();
        let start = position(&mut game, me);
        let tick_hz = u32::from(cfg.tick_hz);
        // An honest client below the tick rate says what each input covers; one above it
        // can only claim a tick each, which is more time than it has.
        let ticks = (tick_hz / inputs_per_s).max(1) as u8;
        let mut seq = 0;
        for tick in 0..5 * tick_hz {
            // Inputs sent during this tick: `inputs_per_s / tick_hz` of them, evenly.
            let due = (tick + 1) * inputs_per_s / tick_hz - tick * inputs_per_s / tick_hz;
            for _ in 0..due {
                seq += 1;
                let input = PlayerInput {
                    seq,
                    ticks,
                    move_z: 127,
                    ..Default::default()
                };
                game.push_input(PlayerId(1), input);
            }
            game.step();
        }
        let end = position(&mut game, me);
        let covered = ((end[0] - start[0]).powi(2) + (end[2] - start[2]).powi(2)).sqrt();
        let (_, dropped) = game.input_counts(PlayerId(1)).expect("counts");
        (covered, dropped)
    };
    let (honest, none) = distance(60);
    assert_eq!(none, 0);
    assert!(
        (29.0..=30.5).contains(&honest),
        "6 m/s for 5 s, got {honest} m"
    );
    for rate in [30, 120, 240] {
        let (covered, dropped) = distance(rate);
        assert!(
            (covered - honest).abs() <= 0.05 * honest,
            "{rate} inputs/s covered {covered} m, 60/s {honest} m"
        );
        if rate > 60 {
            // Everything beyond one tick of input per tick was dropped and counted.
            let sent = u64::from(rate) * 5;
            assert!(dropped >= sent - 5 * 60 - 40, "{rate}/s dropped {dropped}");
        } else {
            assert_eq!(dropped, 0, "an honest slow client loses nothing");
        }
    }
}

/// The client predicts its character with the same code on the same grid: with nothing
/// else moving nearby, prediction equals the server's state bit for bit, for a client
/// sending every tick and for one sending every other tick (each input standing for two).
#[test]
fn prediction_matches_the_server_exactly() {
    for ticks in [1u8, 2] {
        let cfg = config();
        let mut game = Match::new(MatchId(1), &cfg, &arena::modes()).expect("match");
        let me = game.add_player(PlayerId(1)).expect("seat");
        game.step();
        let start = arena::entity_states(&mut game)
            .into_iter()
            .find(|e| e.id == me)
            .expect("me");
        let mut predictor = Predictor::new(&cfg).expect("predictor");
        predictor.reset(start.position, game.motion(PlayerId(1)).expect("motion"));
        let mut rng = SplitMix64::new(5);
        for seq in 1..=600 / u32::from(ticks) {
            let input = PlayerInput {
                seq,
                ticks,
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
            for _ in 0..ticks {
                game.step();
            }
            let predicted = predictor.apply(&input);
            let server = position(&mut game, me);
            assert_eq!(
                predicted.map(f32::to_bits),
                server.map(f32::to_bits),
                "input {seq} of {ticks} ticks"
            );
            assert_eq!(
                predictor.motion(),
                game.motion(PlayerId(1)).expect("motion")
            );
        }
        assert_eq!(game.input_counts(PlayerId(1)).map(|c| c.1), Some(0));
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

/// A shooter, a strafing target, and where the target was at each tick.
struct Duel {
    game: Match,
    shooter: EntityId,
    target: EntityId,
    seq: u32,
    seen: Vec<(u32, [f32; 3])>,
}

/// A shooter at the origin and a target 10 m ahead strafing for `ticks`.
fn strafing_duel(ticks: u32) -> Duel {
    let mut game = Match::new(MatchId(1), &config(), &arena::modes()).expect("match");
    let shooter = game.add_player(PlayerId(1)).expect("seat");
    let target = game.add_player(PlayerId(2)).expect("seat");
    teleport(&mut game, shooter, Vector::new(0.0, spawn_height(), 0.0));
    teleport(&mut game, target, Vector::new(-3.0, spawn_height(), 10.0));
    let mut seen = Vec::new();
    for seq in 1..=ticks {
        game.push_input(
            PlayerId(2),
            PlayerInput {
                seq,
                move_x: 127,
                ..Default::default()
            },
        );
        game.push_input(
            PlayerId(1),
            PlayerInput {
                seq,
                ..Default::default()
            },
        );
        game.step();
        seen.push((game.tick(), position(&mut game, target)));
    }
    Duel {
        game,
        shooter,
        target,
        seq: ticks,
        seen,
    }
}

/// Fires one shot at `at`, claiming to have seen it at `view_tick`; whether it hit.
fn fire(game: &mut Match, shooter: EntityId, seq: u32, at: [f32; 3], view_tick: u32) -> bool {
    let me = position(game, shooter);
    let shot = PlayerInput {
        seq,
        yaw: yaw_towards(me, at),
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
    game.drain_events()
        .iter()
        .any(|e| arena::Hit::from_event(&e.event).is_some())
}

#[test]
fn a_shot_at_where_the_shooter_saw_a_moving_target_hits() {
    let Duel {
        mut game,
        shooter,
        target,
        seq,
        seen,
    } = strafing_duel(30);
    // At 100 ms round trip plus interpolation, the shooter sees the target 6 ticks late.
    let (view_tick, old) = seen[seen.len() - 7];
    let now = position(&mut game, target);
    assert!(
        (now[0] - old[0]).abs() > 0.5,
        "the target moved on: {old:?} -> {now:?}"
    );
    assert!(
        fire(&mut game, shooter, seq + 1, old, view_tick + 1),
        "rewound to tick {view_tick}, the shot hits"
    );

    // Without rewinding (claiming the current tick), the same aim misses.
    let Duel {
        mut game,
        shooter,
        seq,
        seen,
        ..
    } = strafing_duel(30);
    let (_, old) = seen[seen.len() - 7];
    let now_tick = game.tick() + 1;
    assert!(
        !fire(&mut game, shooter, seq + 1, old, now_tick),
        "unrewound, the shot misses"
    );
}

#[test]
fn a_shot_older_than_the_clamp_is_not_rewound_past_it() {
    let Duel {
        mut game,
        shooter,
        seq,
        seen,
        ..
    } = strafing_duel(50);
    // Claim to have seen the target 40 ticks (667 ms) ago; the clamp is 200 ms = 12 ticks.
    let (view_tick, old) = seen[seen.len() - 41];
    assert!(
        !fire(&mut game, shooter, seq + 1, old, view_tick),
        "a shot at where the target was 667 ms ago must not land"
    );
}
