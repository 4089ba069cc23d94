//! Netcode on the deterministic harness: one match host and its clients on a virtual
//! clock, through seeded link conditioners. Matches over poor and bursty links,
//! lag-compensated shots, reconnects and an edge that skips ticks; no sockets, no
//! sleeps, the same run every time.

use outpost_arena::PlayerInput;
use std::time::Duration;

use outpost_arena::{self as arena, ArenaConfig};
use outpost_harness::{ClientId, Harness};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{EntityId, GoodbyeReason, MatchConfig, PlayerId};

/// Each client's view of the run.
#[derive(Debug, Default)]
struct Watch {
    last_ack: u32,
    acks_in_order: bool,
}

/// A wandering input: a new heading every 1.5 s, a jump now and then.
fn wander(rng: &mut SplitMix64, heading: &mut f32, tick: u32) -> PlayerInput {
    if tick.is_multiple_of(90) {
        *heading = rng.range(0.0, std::f32::consts::TAU);
    }
    PlayerInput {
        move_x: (heading.sin() * 127.0) as i8,
        move_z: (heading.cos() * 127.0) as i8,
        yaw: PlayerInput::yaw_from_radians(*heading),
        buttons: if rng.unit() < 0.01 {
            PlayerInput::JUMP
        } else {
            0
        },
        ..PlayerInput::default()
    }
}

/// A minute-long match for two, with no props.
fn two_player_match() -> MatchConfig {
    MatchConfig {
        max_players: 2,
        duration_s: 60,
        ..arena::config(&ArenaConfig {
            props: 0,
            ..ArenaConfig::default()
        })
    }
}

fn p99(values: &[f32]) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize]
}

/// Four wandering players for a whole 8-second match of the default arena, props and
/// all, each over `link`.
fn play_through(link: LinkConfig, seed: u64) -> (Harness, Vec<ClientId>, Vec<Watch>) {
    let config = MatchConfig {
        duration_s: 8,
        max_players: 4,
        seed,
        ..arena::config(&ArenaConfig::default())
    };
    let mut h = Harness::new(&config, seed, outpost_arena::modes());
    let clients: Vec<ClientId> = (1..=4).map(|p| h.join(p, link).expect("seated")).collect();
    let mut watch: Vec<Watch> = clients
        .iter()
        .map(|_| Watch {
            acks_in_order: true,
            ..Watch::default()
        })
        .collect();
    let mut rng = SplitMix64::new(seed);
    let mut headings = [0.0f32; 4];
    let mut tick = 0u32;
    // The match ends itself after 8 s; 12 s is the backstop.
    while h.finished().is_none() && tick < 60 * 12 {
        for (i, &c) in clients.iter().enumerate() {
            let input = wander(&mut rng, &mut headings[i], tick);
            h.send_input(c, input);
            let conn = h.client_mut(c);
            if let Some(world) = conn.latest().cloned() {
                let w = &mut watch[i];
                w.acks_in_order &= world.ack_input_seq >= w.last_ack;
                w.last_ack = world.ack_input_seq;
                // Draw everyone else, as a game would.
                let now = h.now();
                let conn = h.client_mut(c);
                if let Some(render) = conn.render_tick(now) {
                    let own = conn.welcome().entity;
                    for r in world.records.iter().filter(|r| r.id != own) {
                        conn.interpolated(r.id, render);
                    }
                }
            }
        }
        h.tick();
        tick += 1;
    }
    // The goodbyes arrive.
    h.advance(Duration::from_secs(1));
    (h, clients, watch)
}

fn check(h: &Harness, clients: &[ClientId], watch: &[Watch], link: &str) {
    assert!(h.finished().is_some(), "{link}: the match ended");
    assert!(
        h.wire_stats().datagrams_lost > 0,
        "{link}: the link lost packets"
    );
    let mut errors = Vec::new();
    for (i, &c) in clients.iter().enumerate() {
        let conn = h.client(c);
        assert_eq!(
            conn.goodbye(),
            Some(GoodbyeReason::MatchOver),
            "{link}: client {i} was there to the end"
        );
        assert!(watch[i].acks_in_order, "{link}: client {i} acks went back");
        let stats = conn.stats();
        assert!(
            stats.snapshots_received > 100,
            "{link}: client {i} got {} snapshots",
            stats.snapshots_received
        );
        let netcode = conn.netcode_stats();
        assert!(
            netcode.max_extrapolated_ms <= 250.0,
            "{link}: client {i} extrapolated {} ms",
            netcode.max_extrapolated_ms
        );
        errors.extend(netcode.prediction_errors);
    }
    assert!(
        errors.len() > 200,
        "{link}: only {} acknowledged inputs measured",
        errors.len()
    );
    let p99 = p99(&errors);
    assert!(p99 <= 0.10, "{link}: prediction error p99 is {p99} m");
}

#[test]
fn a_match_over_a_poor_link_plays_to_the_end() {
    let (h, clients, watch) = play_through(LinkConfig::poor(), 11);
    check(&h, &clients, &watch, "poor");
}

#[test]
fn a_match_over_a_bursty_link_plays_to_the_end() {
    let (h, clients, watch) = play_through(LinkConfig::bursty(), 12);
    check(&h, &clients, &watch, "bursty");
}

#[test]
fn the_same_seed_plays_the_same_match() {
    let run = |seed| {
        let (h, clients, _) = play_through(LinkConfig::bursty(), seed);
        let finished = h.finished().cloned().expect("ended");
        let errors: Vec<Vec<u32>> = clients
            .iter()
            .map(|&c| {
                h.client(c)
                    .netcode_stats()
                    .prediction_errors
                    .iter()
                    .map(|e| e.to_bits())
                    .collect()
            })
            .collect();
        (finished, errors, h.wire_stats())
    };
    assert_eq!(run(5), run(5));
}

/// Over a 100 ms round trip, a shooter aims where its client shows a strafing target
/// (interpolated, some 150 ms behind the server) and fires; the edge rewinds to the tick
/// the shooter saw, and the shots land. Unrewound, the target would be 0.9 m further on:
/// more than twice its radius.
#[test]
fn lag_compensated_shots_hit_a_moving_target_over_100_ms() {
    let link = LinkConfig {
        latency: Duration::from_millis(50),
        ..LinkConfig::PERFECT
    };
    let config = MatchConfig {
        max_players: 2,
        seed: 5,
        duration_s: 60,
        ..arena::config(&ArenaConfig {
            props: 0,
            half_extent: 16.0,
            ..ArenaConfig::default()
        })
    };
    let mut h = Harness::new(&config, 5, outpost_arena::modes());
    let shooter = h.join(1, link).expect("shooter seated");
    let target = h.join(2, link).expect("target seated");
    let target_entity = h.client(target).welcome().entity;
    let shooter_entity = h.client(shooter).welcome().entity;
    let (mut shots, mut hits) = (0u32, 0u32);
    let count_hits = |h: &mut Harness| {
        let mut n = 0;
        while let Some(event) = h.client_mut(shooter).poll_event() {
            if arena::Hit::from_event(&event.event).is_some_and(|hit| hit.shooter == shooter_entity)
            {
                n += 1;
            }
        }
        n
    };
    let mut tick = 0u32;
    while shots < 24 {
        tick += 1;
        // The target strafes back and forth at full speed.
        let strafe = if (tick / 60).is_multiple_of(2) {
            127
        } else {
            -127
        };
        h.send_input(
            target,
            PlayerInput {
                move_x: strafe,
                ..PlayerInput::default()
            },
        );
        let now = h.now();
        let conn = h.client_mut(shooter);
        let mut input = PlayerInput::default();
        if let (Some(me), Some(render)) = (conn.predicted_self(), conn.render_tick(now))
            && let Some(them) = conn
                .interpolated(target_entity, render)
                .and_then(|e| e.position())
        {
            let d: Vec<f32> = (0..3).map(|a| them[a] - me.position[a]).collect();
            input.yaw = PlayerInput::yaw_from_radians(d[0].atan2(d[2]));
            input.pitch =
                PlayerInput::pitch_from_radians(d[1].atan2((d[0] * d[0] + d[2] * d[2]).sqrt()));
            // Four shots a second (the weapon's rate), once the target is moving.
            if tick > 120 && tick.is_multiple_of(15) {
                input.buttons = PlayerInput::FIRE;
                shots += 1;
            }
        }
        h.send_input(shooter, input);
        hits += count_hits(&mut h);
        h.tick();
        assert!(tick < 60 * 30, "the test stops by itself");
    }
    // The last shots' results arrive.
    h.advance(Duration::from_secs(1));
    hits += count_hits(&mut h);
    assert!(hits >= 20, "{hits} of {shots} lag-compensated shots hit");
}

/// A player whose link drops comes back within the grace: the same character, snapshots
/// from a keyframe on the new connection, and its inputs move it again.
#[test]
fn a_player_reconnecting_within_the_grace_gets_their_character_back() {
    let config = two_player_match();
    let mut h = Harness::new(&config, 3, outpost_arena::modes());
    let me = h.join(1, LinkConfig::good()).expect("seated");
    let other = h.join(2, LinkConfig::good()).expect("seated");
    let forward = PlayerInput {
        move_z: 127,
        ..PlayerInput::default()
    };
    h.run_ticks(60, |h| {
        h.send_input(me, forward);
        h.send_input(other, PlayerInput::default());
    });
    let entity = h.client(me).welcome().entity;
    h.disconnect(me);
    h.run_ticks(120, |h| {
        h.send_input(other, PlayerInput::default());
    });
    assert!(h.host().game().tick() > 170, "the match went on");
    h.reconnect(me).expect("seat given back");
    assert_eq!(h.client(me).welcome().entity, entity);
    let before = h.client(me).stats().snapshots_received;
    assert_eq!(before, 0, "a new connection starts afresh");
    let mut seqs = Vec::new();
    h.run_ticks(60, |h| {
        seqs.push(h.send_input(me, forward));
        h.send_input(other, PlayerInput::default());
    });
    h.advance(Duration::from_millis(200));
    let conn = h.client(me);
    assert!(conn.stats().snapshots_received > 20);
    assert_eq!(
        conn.stats().datagrams_rejected,
        0,
        "the first was a keyframe"
    );
    let world = conn.latest().expect("a snapshot");
    assert!(
        world.ack_input_seq >= seqs[40],
        "the new connection's inputs apply: acked {}",
        world.ack_input_seq
    );
}

/// Regression test for a clock that never recovered from an edge skipping ticks: the
/// match's tick fell behind the wall clock for good, every later snapshot looked late,
/// and the jitter estimate (and with it the interpolation delay) stayed near the length
/// of the stall for the rest of the session.
#[test]
fn the_client_clock_recovers_within_two_seconds_after_the_edge_skips_ticks() {
    let config = two_player_match();
    let mut h = Harness::new(&config, 9, outpost_arena::modes());
    let me = h.join(1, LinkConfig::good()).expect("seated");
    h.run_ticks(180, |h| {
        h.send_input(me, PlayerInput::default());
    });
    let calm = h.client(me).netcode_stats();
    assert!(calm.jitter_ms < 10.0, "{calm:?}");
    // An overloaded moment: the edge runs nothing for 600 ms, then skips what it missed.
    h.stall(Duration::from_millis(600));
    h.advance(Duration::from_millis(600));
    assert!(h.metrics().missed_ticks.get() > 20, "ticks were skipped");
    h.run_ticks(120, |h| {
        h.send_input(me, PlayerInput::default());
    });
    let after = h.client(me).netcode_stats();
    assert!(
        after.jitter_ms < 10.0,
        "jitter back to {} ms (was {} ms)",
        after.jitter_ms,
        calm.jitter_ms
    );
    assert!(
        after.interpolation_delay_ms <= calm.interpolation_delay_ms + 10.0,
        "interpolation delay back to {} ms (was {} ms)",
        after.interpolation_delay_ms,
        calm.interpolation_delay_ms
    );
    // And the clock is right again: the newest state is at most a little older than
    // what the clock says should be arriving now.
    let now = h.now();
    let conn = h.client(me);
    let newest = f64::from(conn.latest().expect("state").tick);
    let render = conn.render_tick(now).expect("clock");
    let behind_ms = (newest - render) / 60.0 * 1000.0;
    assert!(
        (0.0..=100.0).contains(&behind_ms),
        "drawn {behind_ms} ms behind the newest state"
    );
}

/// A seated player sends input frames whose batches are garbage, truncated or claim
/// far-future sequence numbers: each is dropped or spent against the time budget, the
/// match goes on, and the other player's inputs apply as before.
#[test]
fn garbage_input_batches_are_dropped_and_harm_no_one() {
    use outpost_protocol::{Datagram, InputFrame, codec};

    let config = two_player_match();
    let mut h = Harness::new(&config, 21, outpost_arena::modes());
    let attacker = h.join(1, LinkConfig::PERFECT).expect("seated");
    let honest = h.join(2, LinkConfig::PERFECT).expect("seated");
    let mut rng = SplitMix64::new(21);
    let mut last = 0;
    for tick in 0..120u32 {
        let mut batch: Vec<u8> = (0..(rng.next_u64() % 40) as usize)
            .map(|_| rng.next_u64() as u8)
            .collect();
        if tick % 3 == 0 {
            // A well-formed batch claiming a sequence far ahead and the longest span.
            batch = arena::encode_inputs(&[PlayerInput {
                seq: u32::MAX - tick,
                ticks: 8,
                move_z: 127,
                ..PlayerInput::default()
            }]);
        }
        let frame = Datagram::Input(InputFrame {
            ack_snapshot_tick: rng.next_u64() as u32,
            inputs: batch,
        });
        h.send_raw_datagram(attacker, codec::encode_datagram(&frame).expect("encodes"));
        last = h.send_input(
            honest,
            PlayerInput {
                move_z: 127,
                ..PlayerInput::default()
            },
        );
        h.tick();
    }
    h.advance(Duration::from_millis(100));
    assert!(
        h.metrics().datagrams_rejected.get() > 0,
        "garbage was counted"
    );
    assert!(!h.host().is_over());
    let applied = h.host().game().ack_input_seq(PlayerId(2)).expect("seated");
    assert!(
        applied + 2 >= last,
        "the honest player's inputs apply: {applied} of {last}"
    );
    // The attacker's claimed spans are spent against the clock: it moved no faster
    // than a player holding forward for the same time would.
    let (moved, _) = h.host().game().input_counts(PlayerId(1)).expect("seated");
    assert!(moved <= 120 / 8 + 16, "{moved} attacker inputs applied");
}

/// Three wandering players for four seconds of a small arena over `link`; `check` runs
/// after every tick, for every client.
fn three_wanderers(seed: u64, link: LinkConfig, mut check: impl FnMut(&mut Harness, ClientId)) {
    let config = MatchConfig {
        duration_s: 5,
        max_players: 3,
        ..arena::config(&ArenaConfig {
            props: 12,
            ..ArenaConfig::default()
        })
    };
    let mut h = Harness::new(&config, seed, outpost_arena::modes());
    let clients: Vec<ClientId> = (1..=3).map(|p| h.join(p, link).expect("seated")).collect();
    let mut rng = SplitMix64::new(seed);
    let mut headings = [0.0f32; 3];
    for tick in 0..240 {
        for (i, &c) in clients.iter().enumerate() {
            h.send_input(c, wander(&mut rng, &mut headings[i], tick));
        }
        h.tick();
        for &c in &clients {
            check(&mut h, c);
        }
    }
}

/// A client that knows no mode — only the schema the Welcome carried — reads every
/// entity of every snapshot exactly as the arena's own typed decoding does (its quantized
/// views on its grid): by component and field name (what a foreign binding does) and
/// typed (what a Rust game linking the mode does), positions, rotations, the character
/// tag and the owner-only motion alike.
#[test]
fn a_client_from_the_schema_alone_reads_the_arena_as_the_typed_client_does() {
    use outpost_arena::quantize;
    use outpost_protocol::schema::Value;
    let (mut compared, mut with_motion) = (0usize, 0usize);
    let quantizer = ArenaConfig::default().quantizer();
    three_wanderers(21, LinkConfig::good(), |h, c| {
        let conn = h.client(c);
        let Some(world) = conn.latest() else {
            return;
        };
        let fields = conn.fields();
        for record in world.records.iter() {
            let view = arena::entity_view(&record).expect("an arena entity");
            let typed = arena::EntityState::from_view(&quantizer, &view);
            assert_eq!(record.id, typed.id);
            let by_name = fields.value(&record, "position", "position");
            assert_eq!(by_name, Some(Value::Vec3(typed.position)), "{:?}", typed.id);
            let position = fields.get::<arena::Position>(&record).expect("position");
            assert_eq!(position.0, typed.position);
            let rotation = fields.get::<arena::Rotation>(&record).expect("rotation");
            assert_eq!(rotation.0, typed.rotation);
            assert_eq!(
                fields.has(&record, "character"),
                typed.kind == arena::EntityKind::Player
            );
            if let Some(motion) = fields.get::<arena::MotionState>(&record) {
                assert_eq!(
                    typed.id,
                    conn.welcome().entity,
                    "motion is the owner's alone"
                );
                let own = view.motion.expect("own motion");
                assert_eq!(
                    (motion.velocity, motion.grounded),
                    (quantize::velocity_value(own.velocity), own.grounded)
                );
                with_motion += 1;
            }
            compared += 1;
        }
    });
    assert!(compared > 3 * 100 * 12, "compared {compared} entities");
    assert!(with_motion > 3 * 100, "own motion read {with_motion} times");
}

/// Interpolation follows each field's kind: whenever the render tick lies between two
/// values a client received, a remote entity is drawn on the straight line between the
/// two positions (at the render tick's share of the way), and its character tag is the
/// newer value's. The values are logged by the test from the snapshots as they came.
#[test]
fn remote_entities_are_drawn_between_the_two_values_around_the_render_tick() {
    use std::collections::BTreeMap;
    /// Each entity's positions as received, with the tick each was sent at.
    type Received = BTreeMap<EntityId, Vec<(u32, [f32; 3])>>;
    let mut log: Vec<Received> = vec![BTreeMap::new(); 3];
    let mut compared = 0usize;
    three_wanderers(33, LinkConfig::average(), |h, c| {
        let now = h.now();
        let conn = h.client_mut(c);
        let (Some(render), Some(world)) = (conn.render_tick(now), conn.latest().cloned()) else {
            return;
        };
        let fields = conn.fields().clone();
        let own = conn.welcome().entity;
        for (record, &value_tick) in world.records.iter().zip(&world.value_ticks) {
            let values = log[c].entry(record.id).or_default();
            if values.last().is_none_or(|(t, _)| *t < value_tick) {
                let at = fields.layout().position_value(&record).expect("a pose");
                values.push((value_tick, at));
            }
            let Some(after) = values.iter().position(|(t, _)| f64::from(*t) >= render) else {
                continue; // past the newest value: held or extrapolated
            };
            if record.id == own || after == 0 {
                continue;
            }
            let ((t0, a), (t1, b)) = (values[after - 1], values[after]);
            let shown = conn.interpolated(record.id, render).expect("in view");
            let f = ((render - f64::from(t0)) / f64::from(t1 - t0)) as f32;
            let want: Vec<f32> = (0..3).map(|i| a[i] + (b[i] - a[i]) * f).collect();
            let got = shown.position().expect("a position");
            for i in 0..3 {
                assert!(
                    (got[i] - want[i]).abs() < 1e-4,
                    "{:?}: {got:?} vs {want:?}",
                    record.id
                );
            }
            assert_eq!(shown.has("character"), fields.has(&record, "character"));
            assert_eq!(shown.get::<arena::Position>().map(|p| p.0), Some(got));
            compared += 1;
        }
    });
    assert!(compared > 500, "compared {compared} interpolations");
}
