//! The AR shared space on the deterministic harness: poses validated by the edge, shared
//! objects it arbitrates and simulates, and what every device sees of them.

use outpost_ar::{ArConfig, ArInput, ArStats, Hands, OBJECT_SIZE, ObjectState, Pose};
use outpost_harness::{ClientId, Harness};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::replication::{Fields, Record};
use outpost_protocol::schema::Value;
use outpost_protocol::{Answer, EntityId, MatchConfig, RefusalCode};
use outpost_sim::ModeSettings as _;

fn room(players: u16) -> MatchConfig {
    MatchConfig {
        max_players: players,
        duration_s: 120,
        seed: 5,
        ..outpost_ar::config(&ArConfig::default())
    }
}

fn stats(h: &Harness) -> ArStats {
    *h.host().game().world().resource::<ArStats>()
}

/// A device standing at `at` (head 1.6 m up), hands in front of it at `hand`'s height
/// offset, gripping as told.
fn standing(at: [f32; 2], hand: [f32; 3], grip: [bool; 2]) -> ArInput {
    let head = Pose {
        position: [at[0], 1.6, at[1]],
        ..Pose::default()
    };
    let hand_at = |side: f32| Pose {
        position: [at[0] + hand[0] + side * 0.05, hand[1], at[1] + hand[2]],
        ..Pose::default()
    };
    ArInput {
        head,
        hands: [Some(hand_at(-1.0)), Some(hand_at(1.0))],
        grip,
    }
}

/// Uploads a level plane (`class` one of [`outpost_ar::geometry::CLASSES`]) from `c`
/// and returns the edge's answer, a tick later.
fn upload_plane(
    h: &mut Harness,
    c: ClientId,
    id: i64,
    centre: [f32; 3],
    half: [f32; 2],
    class: &str,
) -> Answer {
    let class = outpost_ar::geometry::CLASSES
        .iter()
        .position(|k| *k == class)
        .expect("a class") as u32;
    let values = [
        Value::Int(id),
        Value::Vec3(centre),
        Value::Quat([0.0, 0.0, 0.0, 1.0]),
        Value::Float(half[0]),
        Value::Float(half[1]),
        Value::Enum(class),
    ];
    let seq = h
        .send_request(c, "plane", &values, &[])
        .expect("fits the schema");
    answer(h, c, seq)
}

/// Ticks until `c` has the answer to its request `seq`, and returns it.
fn answer(h: &mut Harness, c: ClientId, seq: u32) -> Answer {
    for _ in 0..60 {
        h.tick();
        if let Some(answer) = h.client_mut(c).poll_answer() {
            assert_eq!(answer.seq, seq, "answers come in order");
            return answer;
        }
    }
    panic!("no answer to request {seq} within a second");
}

/// What a client sees of every entity `read` makes something of: id, position, that.
fn seen<T>(
    h: &Harness,
    c: ClientId,
    read: impl Fn(&Fields, &Record<'_>) -> Option<T>,
) -> Vec<(EntityId, [f32; 3], T)> {
    let conn = h.client(c);
    let Some(world) = conn.latest() else {
        return Vec::new();
    };
    let fields = conn.fields();
    world
        .records
        .iter()
        .filter_map(|r| Some((r.id, fields.layout().position_value(&r)?, read(fields, &r)?)))
        .collect()
}

/// The surfaces a client sees: id, centre, the `surface` component's values.
fn surfaces(h: &Harness, c: ClientId) -> Vec<(EntityId, [f32; 3], Vec<Value>)> {
    seen(h, c, |fields, r| fields.values(r, "surface"))
}

/// Where every client sees entity `id` (its position field), if in view.
fn seen_at(h: &Harness, c: ClientId, id: EntityId) -> Option<[f32; 3]> {
    let conn = h.client(c);
    let world = conn.latest()?;
    let record = world.records.find(id)?;
    conn.fields().layout().position_value(&record)
}

/// The objects a client sees: id, position, state.
fn objects(h: &Harness, c: ClientId) -> Vec<(EntityId, [f32; 3], ObjectState)> {
    seen(h, c, |fields, r| fields.get::<ObjectState>(r))
}

/// `count` scripted devices (their seeds from `seed`) join over `link` and play a room of
/// `settings` for `seconds`, one input a tick each from its newest view, uploading their
/// scans once they see the room. Returns the uploads the room refused.
fn bots_play(
    h: &mut Harness,
    settings: ArConfig,
    count: u64,
    seed: u64,
    link: LinkConfig,
    seconds: u32,
) -> u32 {
    use outpost_ar::bot::ArBot;
    let mut bots: Vec<(ClientId, ArBot)> = (0..count)
        .map(|p| {
            let c = h.join(p + 1, link).expect("seated");
            let tick_hz = h.client(c).welcome().config.tick_hz;
            (c, ArBot::new(settings, tick_hz, seed + p))
        })
        .collect();
    for _ in 0..60 * seconds {
        for (c, bot) in bots.iter_mut() {
            let conn = h.client(*c);
            let own = conn.welcome().entity;
            let fields = conn.fields().clone();
            let Some(world) = conn.latest().cloned() else {
                continue;
            };
            while let Some(answer) = h.client_mut(*c).poll_answer() {
                bot.on_answer(&answer);
            }
            if let Some(upload) = bot.next_upload() {
                let lists: Vec<&[Vec<Value>]> = upload.lists.iter().map(Vec::as_slice).collect();
                h.send_request(*c, upload.name, &upload.values, &lists)
                    .expect("a bot's scan fits the schema");
            }
            let input = bot.next(&fields, &world.records, own);
            h.send_input(*c, input);
        }
        h.tick();
    }
    bots.iter().map(|(_, bot)| bot.refused()).sum()
}

/// A device walking a circle of 2 m at 1.4 m/s with its hands swinging never has a pose
/// clamped; one that jumps 3 m in a tick is clamped to its speed bound and counted, and
/// its peer sees the clamped pose, not the jump.
#[test]
fn a_teleporting_pose_is_clamped_and_counted_and_an_honest_walk_never_is() {
    let mut h = Harness::new(&room(2), 3, outpost_ar::modes());
    let walker = h.join(1, LinkConfig::average()).expect("seated");
    let peer = h.join(2, LinkConfig::average()).expect("seated");
    let own = h.client(walker).welcome().entity;
    let walk = |tick: u32| {
        let t = tick as f32 / 60.0;
        let angle = t * 1.4 / 2.0;
        let swing = (t * 6.0).sin() * 0.25;
        standing(
            [2.0 * angle.cos(), 2.0 * angle.sin()],
            [0.3, 1.1 + swing, swing],
            [false, false],
        )
    };
    for tick in 0..60 * 10 {
        h.send_input(walker, walk(tick));
        h.send_input(peer, standing([-3.0, -3.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    assert_eq!(
        stats(&h).pose_violations,
        0,
        "an honest walk is never clamped"
    );
    let before = seen_at(&h, peer, own).expect("the walker is in view");
    // Now from where it stands to 3 m away in one tick, and stay there.
    let mut jump = walk(60 * 10);
    jump.head.position[0] += 3.0;
    for _ in 0..3 {
        h.send_input(walker, jump);
        h.send_input(peer, standing([-3.0, -3.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    for _ in 0..30 {
        h.tick();
    }
    let violations = stats(&h).pose_violations;
    assert!(violations >= 1, "the jump is counted");
    let standings = h.host().game().standings();
    let line = standings
        .iter()
        .find(|s| s.score.player.0 == 1)
        .expect("the walker");
    assert_eq!(
        u64::from(line.stats[0]),
        violations,
        "and reported as its stat"
    );
    let after = seen_at(&h, peer, own).expect("in view");
    let moved = ((after[0] - before[0]).powi(2) + (after[2] - before[2]).powi(2)).sqrt();
    // At most 6 m/s over the handful of ticks between the two views.
    assert!(
        moved < 1.0,
        "the peer sees a clamped pose: moved {moved} m from {before:?} to {after:?}"
    );
}

/// Both devices close a hand on the same object in the same tick, their hands equally
/// near: exactly one holds it — the lower device id — and the other's grab counts as a
/// conflict; the same on every run.
#[test]
fn two_grabs_in_one_tick_give_exactly_one_holder_the_same_on_every_run() {
    let run = || {
        let mut h = Harness::new(&room(2), 7, outpost_ar::modes());
        let a = h.join(1, LinkConfig::PERFECT).expect("seated");
        let b = h.join(2, LinkConfig::PERFECT).expect("seated");
        for _ in 0..30 {
            h.tick();
        }
        let (target, at, _) = objects(&h, a)[0];
        // Hands on either side of it, the same distance away.
        let side = |dx: f32, grip| ArInput {
            head: Pose {
                position: [at[0] + dx * 4.0, 0.8, at[2]],
                ..Pose::default()
            },
            hands: [
                Some(Pose {
                    position: [at[0] + dx, at[1], at[2]],
                    ..Pose::default()
                }),
                None,
            ],
            grip: [grip, false],
        };
        for tick in 0..90 {
            let grip = tick >= 60;
            h.send_input(a, side(-0.12, grip));
            h.send_input(b, side(0.12, grip));
            h.tick();
        }
        let seen = objects(&h, b)
            .into_iter()
            .find(|o| o.0 == target)
            .expect("in view");
        // Each player's stats as the result reports them: grabs won, grabs lost.
        let lines: Vec<[u32; 2]> = h
            .host()
            .game()
            .standings()
            .iter()
            .map(|l| [l.stats[1], l.stats[3]])
            .collect();
        (
            seen.2.holder,
            h.client(a).welcome().entity,
            stats(&h).grabs,
            stats(&h).ownership_conflicts,
            lines,
        )
    };
    let first = run();
    let (holder, a, grabs, conflicts, ref lines) = first;
    assert_eq!(holder, Some(a), "the lower device id wins a tie");
    assert_eq!((grabs, conflicts), (1, 1));
    assert_eq!(
        lines,
        &[[1, 0], [0, 1]],
        "the winner's grab, the loser's conflict"
    );
    assert_eq!(run(), first, "the same on every run");
}

/// A device grabs an object, then its connection drops: the object stays in its hand for
/// the holder timeout (3 s), then falls to the floor, and its peer sees it free.
#[test]
fn a_holder_that_disconnects_drops_the_object_after_the_timeout() {
    let mut h = Harness::new(&room(2), 9, outpost_ar::modes());
    let holder = h.join(1, LinkConfig::good()).expect("seated");
    let peer = h.join(2, LinkConfig::good()).expect("seated");
    for _ in 0..30 {
        h.tick();
    }
    let (target, at, _) = objects(&h, peer)[0];
    let reach = |grip, lift: f32| ArInput {
        head: Pose {
            position: [at[0] - 0.4, 0.8 + lift, at[2]],
            ..Pose::default()
        },
        hands: [
            Some(Pose {
                position: [at[0], at[1] + lift, at[2]],
                ..Pose::default()
            }),
            None,
        ],
        grip: [grip, false],
    };
    for tick in 0..120u32 {
        let lift = (tick.saturating_sub(40) as f32 * 0.01).min(0.8);
        h.send_input(holder, reach(tick >= 30, lift));
        h.send_input(peer, standing([3.0, 3.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    let own = h.client(holder).welcome().entity;
    let state = |h: &Harness| objects(h, peer).into_iter().find(|o| o.0 == target);
    let (_, lifted, held) = state(&h).expect("in view");
    assert_eq!(held.holder, Some(own), "grabbed");
    assert!(lifted[1] > 0.7, "and lifted: {lifted:?}");
    h.disconnect(holder);
    for _ in 0..60 * 2 {
        h.send_input(peer, standing([3.0, 3.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    assert_eq!(
        state(&h).expect("in view").2.holder,
        Some(own),
        "kept within the timeout"
    );
    for _ in 0..60 * 3 {
        h.send_input(peer, standing([3.0, 3.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    let (_, rest, free) = state(&h).expect("in view");
    assert_eq!(free.holder, None, "dropped after the timeout");
    assert!(rest[1] < OBJECT_SIZE + 0.02, "on the floor: {rest:?}");
    assert_eq!(stats(&h).holder_timeouts, 1);
}

/// A device picks an object up and throws it: it flies, lands and comes to rest on the
/// floor, and two peers see it at the same place, within a quantization step of where
/// the edge has it.
/// `thrower` picks up `target`, which it saw at `at`, lifts it to 1.2 m and throws it forward
/// (+x) at 4 m/s, its hand 1.7 m on from the pick-up when it lets go; then the room runs
/// 6 s more for the object to come to rest, `peers` standing by. Returns the object and
/// where it started.
fn throw_object(
    h: &mut Harness,
    thrower: ClientId,
    peers: &[ClientId],
    (target, at): (EntityId, [f32; 3]),
) -> (EntityId, [f32; 3]) {
    let mut hand = at;
    let head = [at[0] - 0.5, 1.6, at[2]];
    let mut last = ArInput::default();
    for tick in 0..200u32 {
        // Grab, lift to 1.2 m, then swing forward (+x) at 4 m/s and let go.
        // Let go mid-swing: the hand keeps moving through the release.
        let grip = (30..150).contains(&tick);
        if (40..100).contains(&tick) {
            hand[1] = (hand[1] + 0.02).min(1.2);
        } else if (120..160).contains(&tick) {
            hand[0] += 4.0 / 60.0 * ((tick - 119) as f32 / 10.0).min(1.0);
        }
        // Crouched to pick it up, standing as the hand rises.
        let head_at = [
            head[0] + (hand[0] - at[0]),
            (hand[1] + 0.5).min(head[1]),
            head[2],
        ];
        last = ArInput {
            head: Pose {
                position: head_at,
                ..Pose::default()
            },
            hands: [
                Some(Pose {
                    position: hand,
                    ..Pose::default()
                }),
                None,
            ],
            grip: [grip, false],
        };
        h.send_input(thrower, last);
        for &p in peers {
            h.send_input(p, standing([-3.0, 3.0], [0.3, 1.0, 0.0], [false; 2]));
        }
        h.tick();
    }
    assert_eq!(stats(h).objects_thrown, 1, "{:?}", stats(h));
    // The thrower stands where it let go, its hand still.
    let still = ArInput {
        hands: [
            last.hands[0].map(|p| Pose {
                position: [p.position[0], 1.2, p.position[2]],
                ..p
            }),
            None,
        ],
        ..last
    };
    for _ in 0..60 * 6 {
        h.send_input(thrower, still);
        for &p in peers {
            h.send_input(p, standing([-3.0, 3.0], [0.3, 1.0, 0.0], [false; 2]));
        }
        h.tick();
    }
    (target, at)
}

/// Where every peer sees `target`, checked against the edge's own position within one
/// quantization step.
fn seen_by_all(h: &Harness, peers: &[ClientId], target: EntityId) -> [f32; 3] {
    let truth = outpost_ar::object_positions(h.host().game().world())
        .into_iter()
        .find(|(id, _)| *id == target)
        .expect("the object")
        .1;
    let seen: Vec<[f32; 3]> = peers
        .iter()
        .map(|&p| seen_at(h, p, target).expect("in view"))
        .collect();
    for s in &seen {
        for axis in 0..3 {
            assert!(
                (s[axis] - truth[axis]).abs() <= outpost_ar::POSITION_STEP,
                "every peer sees it where the edge has it: {seen:?} against {truth:?}"
            );
        }
    }
    seen[0]
}

/// A room of three: a thrower over an average link, peers over an average and a poor one,
/// half a second in.
fn thrower_and_peers() -> (Harness, ClientId, [ClientId; 2]) {
    let mut h = Harness::new(&room(3), 11, outpost_ar::modes());
    let thrower = h.join(1, LinkConfig::average()).expect("seated");
    let peers = [
        h.join(2, LinkConfig::average()).expect("seated"),
        h.join(3, LinkConfig::poor()).expect("seated"),
    ];
    for _ in 0..30 {
        h.tick();
    }
    (h, thrower, peers)
}

#[test]
fn a_thrown_object_lands_and_every_peer_sees_it_at_the_same_place() {
    let (mut h, thrower, peers) = thrower_and_peers();
    let (first, at, _) = objects(&h, thrower)[0];
    let (target, at) = throw_object(&mut h, thrower, &peers, (first, at));
    let seen = seen_by_all(&h, &peers, target);
    assert!(
        seen[0] > at[0] + 0.5,
        "it flew forward: {seen:?} from {at:?}"
    );
    assert!(
        (seen[1] - OBJECT_SIZE).abs() < 0.03,
        "at rest on the floor: {seen:?}"
    );
    assert_eq!(
        stats(&h).objects_landed,
        0,
        "the room's own floor is not uploaded"
    );
}

/// A device uploads a table plane where the throw comes down: the object lands on the
/// table (not the floor under it), is counted as landed on uploaded geometry, and every
/// peer sees the table and the object on it at the same place.
#[test]
fn a_thrown_object_lands_on_an_uploaded_table_and_every_peer_sees_it_there() {
    let (mut h, thrower, peers) = thrower_and_peers();
    let (first, at, _) = objects(&h, thrower)[0];
    let table_top = 0.75;
    let table = [at[0] + 2.6, table_top, at[2]];
    let answer = upload_plane(&mut h, peers[0], 0, table, [1.0, 0.6], "table");
    assert_eq!(answer.refused, None, "the table is taken");
    // The object the table is placed for, where the thrower saw it (a keyframe cut to the
    // budget may leave it out of the thrower's view for a snapshot meanwhile).
    let (target, _) = throw_object(&mut h, thrower, &peers, (first, at));
    let seen = seen_by_all(&h, &peers, target);
    assert!(
        (seen[1] - (table_top + OBJECT_SIZE)).abs() < 0.03,
        "at rest on the table, not the floor: {seen:?}"
    );
    assert!(
        (seen[0] - table[0]).abs() <= 1.0,
        "on it: {seen:?} against {table:?}"
    );
    assert_eq!(stats(&h).objects_landed, 1, "{:?}", stats(&h));
    for &p in std::iter::once(&thrower).chain(&peers) {
        let tables = surfaces(&h, p);
        assert_eq!(tables.len(), 1, "every device sees the table");
        let (_, centre, values) = &tables[0];
        for axis in 0..3 {
            assert!((centre[axis] - table[axis]).abs() <= outpost_ar::POSITION_STEP);
        }
        assert_eq!(values[1], Value::Enum(1), "classified a table");
    }
    let landings = h
        .host()
        .game()
        .standings()
        .into_iter()
        .find(|s| s.score.player == outpost_protocol::PlayerId(1))
        .expect("the thrower")
        .stats[4];
    assert_eq!(landings, 1, "the landing is the thrower's");
}

/// A mesh over the device's triangle bound, one naming a vertex it lacks, and one with
/// more vertices than a mesh may have (hand-made: the SDK will not encode it) are each
/// refused with a reason, and the room — its surfaces, its objects — is as it was.
#[test]
fn an_oversized_mesh_is_refused_with_a_clear_error_and_nothing_in_the_room_changes() {
    let settings = ArConfig {
        device_triangles: 100,
        ..ArConfig::default()
    };
    let config = MatchConfig {
        max_players: 2,
        seed: 5,
        ..outpost_ar::config(&settings)
    };
    let mut h = Harness::new(&config, 3, outpost_ar::modes());
    let device = h.join(1, LinkConfig::average()).expect("seated");
    let peer = h.join(2, LinkConfig::average()).expect("seated");
    // Both stand still, acknowledging what they receive.
    let stand = |h: &mut Harness| {
        h.send_input(device, standing([-2.0, -2.0], [0.3, 1.0, 0.0], [false; 2]));
        h.send_input(peer, standing([2.0, 2.0], [0.3, 1.0, 0.0], [false; 2]));
    };
    assert_eq!(
        upload_plane(&mut h, device, 3, [0.0, 0.0, 0.0], [2.0, 2.0], "floor").refused,
        None
    );
    h.run_ticks(120, stand);
    let before = h.client(peer).latest().expect("a view").records.clone();
    // A strip of 200 triangles over 202 vertices.
    let vertices: Vec<Vec<Value>> = (0..202)
        .map(|i| {
            vec![Value::Vec3([
                (i / 2) as f32 * 0.02,
                0.0,
                (i % 2) as f32 * 0.1,
            ])]
        })
        .collect();
    let strip = |n: usize| -> Vec<Vec<Value>> {
        (0..n as i64)
            .map(|i| vec![Value::Int(i), Value::Int(i + 1), Value::Int(i + 2)])
            .collect()
    };
    let mesh = |h: &mut Harness, vertices: &[Vec<Value>], triangles: &[Vec<Value>]| {
        let values = [
            Value::Int(0),
            Value::Vec3([1.0, 0.5, 1.0]),
            Value::Quat([0.0, 0.0, 0.0, 1.0]),
            Value::Enum(4),
        ];
        let seq = h
            .send_request(device, "mesh", &values, &[vertices, triangles])
            .expect("fits the schema");
        answer(h, device, seq)
    };
    let over = mesh(&mut h, &vertices, &strip(200))
        .refused
        .expect("refused");
    assert_eq!(over.code, RefusalCode::OverLimit);
    assert!(
        over.detail_text().contains("at most 100"),
        "says which bound: {over}"
    );
    let bad_index = mesh(&mut h, &vertices[..10], &strip(12))
        .refused
        .expect("refused");
    assert_eq!(bad_index.code, RefusalCode::Invalid, "{bad_index}");
    assert!(bad_index.detail_text().contains("vertex 10"), "{bad_index}");
    // More vertices than the schema's bound, written by a client whose schema says
    // 2047 may come (the count takes the same 11 bits): the edge refuses the count.
    let mut loose = h.client(device).schema().clone();
    let mesh_def = loose
        .requests
        .iter_mut()
        .find(|r| r.name == "mesh")
        .expect("a mesh request");
    mesh_def.lists[0].max_items = 2047;
    let many: Vec<Vec<Value>> = (0..1100)
        .map(|i| {
            vec![Value::Vec3([
                (i % 100) as f32 * 0.01,
                (i / 100) as f32 * 0.01,
                0.0,
            ])]
        })
        .collect();
    let crafted = outpost_protocol::replication::Requests::new(&loose)
        .encode(
            99,
            "mesh",
            &[
                Value::Int(0),
                Value::Vec3([1.0, 0.5, 1.0]),
                Value::Quat([0.0, 0.0, 0.0, 1.0]),
                Value::Enum(4),
            ],
            &[&many, &strip(1)],
        )
        .expect("encodes under the loose schema");
    h.send_raw_control(device, outpost_protocol::Control::Request(crafted));
    let malformed = answer(&mut h, device, 99).refused.expect("refused");
    assert_eq!(malformed.code, RefusalCode::Malformed, "{malformed}");
    h.run_ticks(30, stand);
    let after = h.client(peer).latest().expect("a view").records.clone();
    assert_eq!(before, after, "the room is as it was");
    assert_eq!(surfaces(&h, peer).len(), 1, "the floor alone");
    // Within the bound, the same device's mesh is taken.
    assert_eq!(mesh(&mut h, &vertices[..52], &strip(50)).refused, None);
    h.run_ticks(10, stand);
    assert_eq!(surfaces(&h, peer).len(), 2, "floor and mesh");
}

/// A device joining a room in use receives every object, device (with its hands) and
/// uploaded surface within a second.
#[test]
fn a_late_joiner_receives_the_full_room_within_a_second() {
    let mut h = Harness::new(&room(4), 13, outpost_ar::modes());
    let early: Vec<ClientId> = (1..=3)
        .map(|p| h.join(p, LinkConfig::average()).expect("seated"))
        .collect();
    let floor = upload_plane(&mut h, early[0], 0, [0.0, 0.0, 0.0], [3.0, 3.0], "floor");
    assert_eq!(floor.refused, None);
    for tick in 0..60 * 3 {
        for (i, &c) in early.iter().enumerate() {
            let x = -2.0 + i as f32 * 2.0 + (tick as f32 / 60.0).sin() * 0.3;
            h.send_input(c, standing([x, -2.0], [0.3, 1.2, 0.2], [false; 2]));
        }
        h.tick();
    }
    let late = h.join(4, LinkConfig::average()).expect("seated");
    for _ in 0..60 {
        for (i, &c) in early.iter().enumerate() {
            h.send_input(
                c,
                standing([-2.0 + i as f32 * 2.0, -2.0], [0.3, 1.2, 0.2], [false; 2]),
            );
        }
        h.send_input(late, standing([0.0, 3.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    let conn = h.client(late);
    let world = conn.latest().expect("a snapshot within a second");
    let fields = conn.fields();
    let devices: Vec<_> = world
        .records
        .iter()
        .filter(|r| fields.has(r, "device"))
        .collect();
    assert_eq!(devices.len(), 4, "every device");
    let own = conn.welcome().entity;
    assert!(
        devices.iter().filter(|r| r.id != own).all(|r| fields
            .get::<Hands>(r)
            .is_some_and(|h| h.tracked == [true, true])),
        "with their hands"
    );
    // The device's own pose is not echoed to it: it measured it.
    let mine = devices
        .iter()
        .find(|r| r.id == own)
        .expect("its own device");
    assert!(!fields.has(mine, "hands") && !fields.has(mine, "position"));
    // Hands travel relative to the head: the early devices hold theirs 30 cm in front
    // (±5 cm to each side), 40 cm below the head, 20 cm to +z.
    for record in devices.iter().filter(|r| r.id != conn.welcome().entity) {
        let hands = fields.get::<Hands>(record).expect("hands");
        for (pose, side) in hands.poses.iter().zip([-0.05, 0.05]) {
            let want = [0.3 + side, -0.4, 0.2];
            for axis in 0..3 {
                assert!(
                    (pose.position[axis] - want[axis]).abs() <= 0.003,
                    "{:?} against {want:?}",
                    pose.position
                );
            }
        }
    }
    assert_eq!(
        objects(&h, late).len(),
        usize::from(ArConfig::default().objects),
        "every object"
    );
    assert_eq!(surfaces(&h, late).len(), 1, "the uploaded floor");
}

/// Six scripted devices in a room for 40 s over average links: they walk, fetch, pick up
/// and throw objects, and not one of their poses is clamped.
#[test]
fn six_bots_walk_grab_and_throw_without_a_pose_violation() {
    let config = room(6);
    let settings = ArConfig::of(&config).expect("settings");
    let mut h = Harness::new(&config, 17, outpost_ar::modes());
    let refused = bots_play(&mut h, settings, 6, 100, LinkConfig::average(), 40);
    let stats = stats(&h);
    assert_eq!(stats.pose_violations, 0, "{stats:?}");
    assert!(stats.grabs >= 3 && stats.objects_thrown >= 2, "{stats:?}");
    // Each uploaded a floor patch, a table and a seat, every one taken.
    assert_eq!(refused, 0);
    assert_eq!(
        outpost_ar::geometry::surfaces(h.host().game().world()).len(),
        18
    );
    assert!(stats.objects_landed >= 1, "{stats:?}");
}

/// Every device leaves a room (their reconnect grace runs out); it goes on without them
/// for its linger time, so a device joining 20 s later finds the objects where they were
/// left; once it too has gone and the linger has passed, the room ends.
#[test]
fn a_room_outlives_its_last_device_for_its_linger_time_and_keeps_its_state() {
    let config = MatchConfig {
        max_players: 4,
        duration_s: 600,
        seed: 5,
        ..outpost_ar::config(&ArConfig {
            linger_s: 30,
            ..ArConfig::default()
        })
    };
    let mut h = Harness::new(&config, 19, outpost_ar::modes());
    let first = h.join(1, LinkConfig::good()).expect("seated");
    for _ in 0..60 {
        h.send_input(first, standing([0.0, 2.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    // Move one object away from where it started: pick it up and put it down elsewhere.
    let (target, at, _) = objects(&h, first)[0];
    let mut hand = at;
    for tick in 0..240u32 {
        if (40..200).contains(&tick) {
            hand[0] = (hand[0] + 0.01).min(at[0] + 1.0);
        }
        h.send_input(
            first,
            ArInput {
                head: Pose {
                    position: [hand[0] - 0.4, 0.8, hand[2]],
                    ..Pose::default()
                },
                hands: [
                    Some(Pose {
                        position: hand,
                        ..Pose::default()
                    }),
                    None,
                ],
                grip: [(20..210).contains(&tick), false],
            },
        );
        h.tick();
    }
    let left = objects(&h, first)
        .into_iter()
        .find(|o| o.0 == target)
        .expect("in view")
        .1;
    assert!(left[0] > at[0] + 0.8, "moved: {at:?} → {left:?}");
    h.disconnect(first);
    for _ in 0..60 * 20 {
        h.tick();
    }
    assert!(h.finished().is_none(), "the empty room goes on");
    let next = h
        .join(2, LinkConfig::good())
        .expect("seated in the same room");
    for _ in 0..60 {
        h.send_input(next, standing([2.0, 2.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
    }
    let found = objects(&h, next)
        .into_iter()
        .find(|o| o.0 == target)
        .expect("the object is there")
        .1;
    for axis in 0..3 {
        assert!(
            (found[axis] - left[axis]).abs() < 0.01,
            "where it was left: {left:?}, found {found:?}"
        );
    }
    h.disconnect(next);
    for _ in 0..60 * 34 {
        h.tick();
    }
    assert!(h.finished().is_none(), "within grace and linger");
    for _ in 0..60 * 2 {
        h.tick();
    }
    let finished = h.finished().expect("ended after the linger");
    assert_eq!(
        finished.outcome,
        Some(outpost_protocol::MatchEndReason::Abandoned)
    );
}

/// Regression: a bot near a wall threw towards it and pushed its hand through the wall,
/// and the edge (rightly) clamped the pose. Bots now throw towards the room's middle and
/// their hands stop at the walls: eight of them with fifty objects, unbudgeted, for 30 s,
/// never have a pose clamped.
#[test]
fn bots_throwing_near_a_wall_keep_their_hands_inside_the_room() {
    let settings = ArConfig {
        objects: 50,
        ..ArConfig::default()
    };
    let config = MatchConfig {
        max_players: 8,
        duration_s: 40,
        seed: 1,
        ..outpost_ar::config(&settings)
    };
    let host = outpost_edge::host::HostSettings {
        bandwidth_bps: 1_000_000,
        ..Harness::default_settings(outpost_ar::modes())
    };
    let mut h = Harness::with_settings(&config, 7, host);
    bots_play(&mut h, settings, 8, 1000, LinkConfig::good(), 30);
    let stats = stats(&h);
    assert_eq!(stats.pose_violations, 0, "{stats:?}");
    assert!(stats.objects_thrown >= 20, "{stats:?}");
}

/// What a logged-in device can try with requests: taking away or replacing another
/// device's surface (it only ever touches its own: the same id makes a second surface of
/// its own), and flooding requests (the excess is answered busy at once; every request
/// gets exactly one answer, and the flooder's peer is not slowed).
#[test]
fn a_device_cannot_touch_another_devices_surfaces_and_a_request_flood_is_answered_busy() {
    let mut h = Harness::new(&room(2), 7, outpost_ar::modes());
    let owner = h.join(1, LinkConfig::average()).expect("seated");
    let other = h.join(2, LinkConfig::average()).expect("seated");
    let table = upload_plane(&mut h, owner, 0, [1.0, 0.75, 1.0], [0.5, 0.5], "table");
    assert_eq!(table.refused, None);
    let seq = h
        .send_request(other, "remove", &[Value::Int(0), Value::Enum(0)], &[])
        .expect("fits");
    let removal = answer(&mut h, other, seq).refused.expect("refused");
    assert_eq!(removal.code, RefusalCode::Invalid, "{removal}");
    let mine = upload_plane(&mut h, other, 0, [-1.0, 0.0, -1.0], [1.0, 1.0], "floor");
    assert_eq!(mine.refused, None);
    let world = h.host().game().world();
    let surfaces = outpost_ar::geometry::surfaces(world);
    assert_eq!(
        surfaces.len(),
        2,
        "the owner's table stays, beside the other's floor"
    );
    assert!(
        surfaces
            .iter()
            .any(|(_, s)| s.class == 1 && (s.centre[1] - 0.75).abs() < 0.01),
        "the table is where its owner put it"
    );
    // 48 requests in one go: the edge takes 16 a tick, answers the rest busy.
    let mut seqs = Vec::new();
    for i in 0..48 {
        let values = [
            Value::Int(10 + i),
            Value::Vec3([0.0, 1.0, 0.0]),
            Value::Quat([0.0, 0.0, 0.0, 1.0]),
            Value::Float(0.1),
            Value::Float(0.1),
            Value::Enum(7),
        ];
        seqs.push(h.send_request(other, "plane", &values, &[]).expect("fits"));
    }
    let mut answers = Vec::new();
    for _ in 0..30 {
        h.send_input(owner, standing([1.0, 1.0], [0.3, 1.0, 0.0], [false; 2]));
        h.tick();
        while let Some(a) = h.client_mut(other).poll_answer() {
            answers.push(a);
        }
    }
    let mut answered: Vec<u32> = answers.iter().map(|a| a.seq).collect();
    answered.sort_unstable();
    assert_eq!(answered, seqs, "every request answered exactly once");
    let busy = answers
        .iter()
        .filter(|a| {
            a.refused
                .as_ref()
                .is_some_and(|r| r.code == RefusalCode::Busy)
        })
        .count();
    let taken = answers.iter().filter(|a| a.refused.is_none()).count();
    assert_eq!(taken, 16, "one tick's worth taken");
    assert_eq!(busy, 32, "the rest busy, not dropped");
    assert_eq!(
        outpost_ar::geometry::surfaces(h.host().game().world()).len(),
        18
    );
    // The owner's snapshots kept coming meanwhile.
    let newest = h.client(owner).latest().map_or(0, |w| w.tick);
    assert!(
        newest + 10 >= h.host().tick(),
        "{newest} at {}",
        h.host().tick()
    );
}

/// A request to a mode that declares none (the arena), hand-made since the SDK will not
/// encode it, is answered `Malformed`, counted, and the match plays on.
#[test]
fn a_request_to_a_mode_without_requests_is_refused_as_malformed_and_the_match_plays_on() {
    let modes = outpost_arena::modes();
    let config = MatchConfig {
        max_players: 2,
        ..modes.config("arena", None).expect("the arena")
    };
    let mut h = Harness::new(&config, 3, modes);
    let c = h.join(1, LinkConfig::good()).expect("seated");
    let refused = h.send_request(c, "plane", &[], &[]);
    assert!(refused.is_err(), "the SDK refuses it first: {refused:?}");
    h.send_raw_control(
        c,
        outpost_protocol::Control::Request(outpost_protocol::Request {
            seq: 5,
            kind: 0,
            body: vec![0xff; 64],
        }),
    );
    let answer = answer(&mut h, c, 5).refused.expect("refused");
    assert_eq!(answer.code, RefusalCode::Malformed, "{answer}");
    let counted = h
        .metrics()
        .requests_refused
        .get_or_create(&outpost_edge::metrics::RejectLabels {
            reason: RefusalCode::Malformed.as_str(),
        })
        .get();
    assert_eq!(counted, 1, "counted by reason");
    let before = h.host().tick();
    h.run_ticks(30, |_| {});
    assert_eq!(h.host().tick(), before + 30, "the match plays on");
    assert!(h.is_seated(c));
}

/// The request byte budget: a device sending large meshes faster than 64 KiB a second
/// gets its burst (256 KiB) taken, then `Busy` answers until its credit refills — each
/// request answered, and nothing of the refused ones in the room.
#[test]
fn a_device_over_its_request_byte_budget_is_answered_busy_until_its_credit_refills() {
    let settings = ArConfig {
        device_triangles: 262_144,
        room_triangles: 1_048_576,
        ..ArConfig::default()
    };
    let config = MatchConfig {
        max_players: 1,
        ..outpost_ar::config(&settings)
    };
    let mut h = Harness::new(&config, 9, outpost_ar::modes());
    let device = h.join(1, LinkConfig::good()).expect("seated");
    // A grid mesh of 1,024 vertices and 1,922 triangles: about 11 KB a request.
    let vertices: Vec<Vec<Value>> = (0..1024)
        .map(|i| {
            vec![Value::Vec3([
                (i % 32) as f32 * 0.1 - 1.6,
                0.0,
                (i / 32) as f32 * 0.1 - 1.6,
            ])]
        })
        .collect();
    let triangles: Vec<Vec<Value>> = (0..31i64)
        .flat_map(|row| (0..31i64).map(move |col| (row, col)))
        .flat_map(|(row, col)| {
            let at = row * 32 + col;
            [[at, at + 32, at + 1], [at + 1, at + 32, at + 33]]
        })
        .map(|t| t.iter().map(|&i| Value::Int(i)).collect())
        .collect();
    let mut sent = 0u32;
    let mut answers = Vec::new();
    for round in 0..3 {
        for i in 0..16 {
            let values = [
                Value::Int(round * 16 + i),
                Value::Vec3([0.0, 0.5, 0.0]),
                Value::Quat([0.0, 0.0, 0.0, 1.0]),
                Value::Enum(7),
            ];
            h.send_request(device, "mesh", &values, &[&vertices, &triangles])
                .expect("fits the schema");
            sent += 1;
        }
        for _ in 0..3 {
            h.send_input(device, standing([2.0, 2.0], [0.3, 1.0, 0.0], [false; 2]));
            h.tick();
            while let Some(a) = h.client_mut(device).poll_answer() {
                answers.push(a);
            }
        }
    }
    h.run_ticks(30, |_| {});
    while let Some(a) = h.client_mut(device).poll_answer() {
        answers.push(a);
    }
    assert_eq!(answers.len() as u32, sent, "every request answered");
    let taken = answers.iter().filter(|a| a.refused.is_none()).count();
    let over_budget = answers
        .iter()
        .filter(|a| {
            a.refused
                .as_ref()
                .is_some_and(|r| r.code == RefusalCode::Busy && r.detail_text().contains("budget"))
        })
        .count();
    // Each request is 11,447 bytes: the 256 KiB burst takes the first 16 and 7 of the
    // second round; 3 ticks of refill (about 3.3 KB) take none of the third.
    assert_eq!(taken, 23);
    assert_eq!(
        taken + over_budget,
        answers.len(),
        "the rest over the budget"
    );
    assert_eq!(
        outpost_ar::geometry::surfaces(h.host().game().world()).len(),
        taken,
        "only what was taken is in the room"
    );
}
