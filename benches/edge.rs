//! The edge's hot paths on one busy arena (64 players driven by bots' inputs, 1,000
//! props): a whole arena tick against a bare rapier step of the same scene (the physics
//! floor; their ratio is what the ECS, character movement, combat and lag compensation
//! cost on top), snapshot building with delta encoding for all 64 clients, the
//! area-of-interest query, and a client's side: decoding (warm, and cold as in a load
//! generator holding 1,000 clients), and a game's turn with the SDK
//! (taking a snapshot, drawing every entity interpolated).
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use outpost_arena::PlayerInput;
use outpost_sim::ModeSettings as _;
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use outpost_arena::bot::ArenaBot;
use outpost_arena::move_character;
use outpost_arena::{self as arena, ArenaConfig};
use outpost_client::MatchConnection;
use outpost_edge::snapshot::{
    ClientSnapshots, Frame, Interest, InterestGrid, SENT_HISTORY, body_budget,
};
use outpost_protocol::replication;
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{
    Datagram, EntityId, MatchConfig, MatchId, PROTOCOL_VERSION, PlayerId, Snapshot, Welcome, codec,
};
use outpost_sim::rapier3d::prelude::{CollisionPipeline, PhysicsPipeline, PhysicsWorld};
use outpost_sim::{Bot as _, Match, Motion, Physics, PlayerSlot, RigidBodyRef, Sight};

const PLAYERS: u64 = 64;
const PROPS: u16 = 1000;

/// Bots' inputs: runs in changing directions, turning, shooting, jumping now and then.
struct Bots {
    rng: SplitMix64,
    seq: u32,
    headings: Vec<f32>,
}

impl Bots {
    fn new(players: u64) -> Self {
        let mut rng = SplitMix64::new(7);
        let headings = (0..players)
            .map(|_| rng.range(0.0, std::f32::consts::TAU))
            .collect();
        Self {
            rng,
            seq: 0,
            headings,
        }
    }

    fn push(&mut self, game: &mut Match) {
        for (player, input) in self.next(game.tick()) {
            game.push_input(player, input);
        }
    }

    /// Every player's next input.
    fn next(&mut self, tick: u32) -> Vec<(PlayerId, PlayerInput)> {
        self.seq += 1;
        let mut inputs = Vec::with_capacity(self.headings.len());
        for (p, heading) in self.headings.iter_mut().enumerate() {
            if self.rng.next_u64().is_multiple_of(90) {
                *heading = self.rng.range(0.0, std::f32::consts::TAU);
            }
            let fire = self.rng.next_u64().is_multiple_of(4);
            let jump = self.rng.next_u64().is_multiple_of(120);
            let input = PlayerInput {
                seq: self.seq,
                ticks: 1,
                move_x: 0,
                move_z: 127,
                yaw: PlayerInput::yaw_from_radians(*heading),
                pitch: 0,
                buttons: (u8::from(fire) * PlayerInput::FIRE)
                    | (u8::from(jump) * PlayerInput::JUMP),
                view_tick: tick.saturating_sub(6),
            };
            inputs.push((PlayerId(p as u64 + 1), input));
        }
        inputs
    }
}

/// Players as the load test's: each the arena's own bot ([`ArenaBot`], as `outpost
/// loadtest` plays it) choosing from the match as it is (a client sees it about 100 ms
/// late, interpolated): it turns toward the nearest opponent, strafes, keeps its
/// distance, closes in, shoots and jumps, so the characters move as they do under load.
struct Players {
    fields: replication::Fields,
    brains: Vec<ArenaBot>,
    view: replication::View,
    seq: u32,
}

impl Players {
    fn new(game: &Match, players: u64) -> Self {
        let settings = ArenaConfig::of(game.config()).expect("arena settings");
        Self {
            fields: replication::Fields::new(arena::schema(&settings)),
            brains: (0..players).map(|p| ArenaBot::new(1000 + p)).collect(),
            view: replication::View::new(),
            seq: 0,
        }
    }
}

/// What moves a bench's players each tick.
trait Drive {
    /// How a bench's name tells these players from the others.
    const NAME: &'static str;
    /// Pushes every player's next input.
    fn push(&mut self, game: &mut Match);
}

impl Drive for Bots {
    const NAME: &'static str = "";
    fn push(&mut self, game: &mut Match) {
        Bots::push(self, game);
    }
}

impl Drive for Players {
    const NAME: &'static str = "_as_played";
    fn push(&mut self, game: &mut Match) {
        self.seq += 1;
        game.write_records(&mut self.view);
        let tick = game.tick();
        let (fields, view) = (&self.fields, &self.view);
        let position = |id| {
            view.find(id)
                .and_then(|r| fields.layout().position_value(&r))
        };
        for (p, brain) in self.brains.iter_mut().enumerate() {
            let player = PlayerId(p as u64 + 1);
            let own = game.player_entity(player).expect("seated");
            let sight = Sight {
                fields,
                view,
                own,
                own_position: position(own),
                drawn: &position,
            };
            if let Some(mut input) = brain.next_input(&sight) {
                input.seq = self.seq;
                input.ticks = 1;
                input.view_tick = tick.saturating_sub(6);
                game.push_input(player, input);
            }
        }
    }
}

/// The busy arena, warmed up for two seconds of play.
fn arena() -> (Match, Bots) {
    arena_of(PLAYERS, PROPS)
}

/// An arena of `players` bots and `props` props, warmed up for two seconds of play.
fn arena_of(players: u64, props: u16) -> (Match, Bots) {
    let config = MatchConfig {
        max_players: players as u16,
        duration_s: 7200,
        seed: 11,
        ..arena::config(&ArenaConfig {
            score_limit: 0,
            props,
            ..ArenaConfig::default()
        })
    };
    let mut game = Match::new(MatchId(1), &config, &arena::modes()).expect("valid config");
    for p in 1..=players {
        game.add_player(PlayerId(p)).expect("seat");
    }
    let mut bots = Bots::new(players);
    for _ in 0..120 {
        bots.push(&mut game);
        game.step();
    }
    (game, bots)
}

/// A copy of a physics world to step on its own (rapier's world has no `Clone`; its
/// parts do). The pipelines are workspaces and start empty.
fn copy_world(w: &PhysicsWorld) -> PhysicsWorld {
    PhysicsWorld {
        gravity: w.gravity,
        integration_parameters: w.integration_parameters,
        physics_pipeline: PhysicsPipeline::new(),
        collision_pipeline: CollisionPipeline::new(),
        islands: w.islands.clone(),
        broad_phase: w.broad_phase.clone(),
        narrow_phase: w.narrow_phase.clone(),
        bodies: w.bodies.clone(),
        colliders: w.colliders.clone(),
        impulse_joints: w.impulse_joints.clone(),
        multibody_joints: w.multibody_joints.clone(),
        soft_bodies: w.soft_bodies.clone(),
        ccd_solver: w.ccd_solver.clone(),
    }
}

fn tick_vs_physics(c: &mut Criterion) {
    // The scene, and the load test's (a default 16-player match).
    for (players, props) in [(PLAYERS, PROPS), (16, 40)] {
        let mut group = c.benchmark_group(format!("arena_{players}_players_{props}_props"));
        let (mut game, mut bots) = arena_of(players, props);
        group.bench_function("arena_tick", |b| {
            b.iter(|| {
                bots.push(&mut game);
                game.step();
            });
        });
        if players == 16 {
            // The same tick as a loaded edge's worker runs it: one match of 32 in turn, the
            // other 31's worlds through the caches between two of its ticks (the single
            // match above stays warm in them).
            let mut matches: Vec<(Match, Bots)> =
                (0..32).map(|_| arena_of(players, props)).collect();
            let mut next = 0;
            group.bench_function("arena_tick_one_of_32_in_turn", |b| {
                b.iter(|| {
                    let (game, bots) = &mut matches[next];
                    next = (next + 1) % 32;
                    bots.push(game);
                    game.step();
                });
            });
        }
        // The physics floor of the same scene: rapier alone, as the match leaves it tick
        // after tick — each character moved by the arena's sweep (rapier shape casts) with its
        // next input (the same call the match makes), then one step. No ECS, combat, lag
        // compensation, events or replication. The pipeline (a workspace) is kept warm
        // across copies, as the match's is.
        let (mut game, mut bots) = arena_of(players, props);
        let mut pipeline = PhysicsPipeline::new();
        let dt = 1.0 / f32::from(game.config().tick_hz);
        group.bench_function("bare_rapier_step", |b| {
            b.iter_batched_ref(
                || {
                    bots.push(&mut game);
                    game.step();
                    let inputs = bots.next(game.tick());
                    let mut characters = Vec::with_capacity(inputs.len());
                    let mut query = game
                        .world_mut()
                        .query::<(&PlayerSlot, &RigidBodyRef, &Motion)>();
                    for (slot, body, motion) in query.iter(game.world()) {
                        if let Some((_, input)) = inputs.iter().find(|(p, _)| *p == slot.player) {
                            characters.push((body.0, *input, *motion));
                        }
                    }
                    let world = copy_world(&game.world().resource::<Physics>().world);
                    (world, characters)
                },
                |(world, characters)| {
                    std::mem::swap(&mut world.physics_pipeline, &mut pipeline);
                    for (body, input, motion) in characters.iter_mut() {
                        move_character(world, *body, input, motion, dt);
                    }
                    world.step();
                    std::mem::swap(&mut world.physics_pipeline, &mut pipeline);
                },
                BatchSize::LargeInput,
            );
        });
        group.finish();
    }
}

/// One tick's shared frame inputs, as the worker prepares them.
struct Prepared {
    records: replication::View,
    positions: Vec<[f32; 3]>,
    grid: InterestGrid,
}

impl Prepared {
    /// What a client's snapshot build at `tick` reads.
    fn frame<'a>(
        &'a self,
        tick: u32,
        layout: &'a replication::Layout,
        interest: Interest,
    ) -> Frame<'a> {
        Frame {
            tick,
            layout,
            positions: &self.positions,
            records: &self.records,
            grid: &self.grid,
            interest,
        }
    }
}

fn prepare(game: &mut Match, layout: &replication::Layout, interest: Interest) -> Prepared {
    let mut records = replication::View::new();
    game.write_records(&mut records);
    let positions: Vec<[f32; 3]> = records
        .iter()
        .map(|r| layout.position_value(&r).unwrap_or([0.0; 3]))
        .collect();
    let grid = InterestGrid::build(&positions, interest.cell);
    Prepared {
        records,
        positions,
        grid,
    }
}

/// Every client's snapshot of one match, built and encoded: the busy arena's 64 clients,
/// and the load test's match (16 players, 40 props).
fn snapshot_builds(c: &mut Criterion) {
    for (players, props) in [(PLAYERS, PROPS), (16, 40)] {
        let (game, bots) = arena_of(players, props);
        snapshot_build(c, game, bots, players, 1);
    }
    // As a loaded edge's clients acknowledge: three snapshots back (an input round trip
    // of about 35 ms at 1,000 players; docs/PERFORMANCE.md).
    let (game, bots) = arena_of(16, 40);
    snapshot_build(c, game, bots, 16, 3);
    // The load test's match played as the load test's bots play it, acknowledging as
    // its clients do: the bodies of the load test's size (docs/PERFORMANCE.md).
    let (game, _) = arena_of(16, 40);
    let players = Players::new(&game, 16);
    snapshot_build(c, game, players, 16, 3);
    // The same, with as many clients' states as a loaded edge holds: each of the match's
    // 16 stands for 63 (1,008 histories, the load test's 1,000 players in matches of 16),
    // so a build finds its client's views as cold as under load.
    let (game, _) = arena_of(16, 40);
    let players = Players::new(&game, 16);
    snapshot_build_for(c, game, players, 16, 3, LOADED_EDGE_MATCHES);
}

/// Matches of 16 on an edge of 1,000 players.
const LOADED_EDGE_MATCHES: usize = 63;

/// Builds every client's snapshot, each client acknowledging the one `acks_back`
/// snapshots before.
fn snapshot_build<D: Drive>(
    c: &mut Criterion,
    game: Match,
    bots: D,
    players: u64,
    acks_back: usize,
) {
    snapshot_build_for(c, game, bots, players, acks_back, 1);
}

/// [`snapshot_build`], each client's state held `copies` times over (every copy built
/// in turn against the same frame, as the clients of that many matches would be).
fn snapshot_build_for<D: Drive>(
    c: &mut Criterion,
    mut game: Match,
    mut bots: D,
    players: u64,
    acks_back: usize,
    copies: usize,
) {
    let settings = ArenaConfig::of(game.config()).expect("arena settings");
    let layout = replication::Layout::new(&arena::schema(&settings));
    let interest = Interest::default();
    let snapshot_hz = game.config().snapshot_hz;
    let budget = body_budget(96_000, snapshot_hz, 1200);
    let mut clients: Vec<(PlayerId, ClientSnapshots)> = (0..copies)
        .flat_map(|_| 1..=players)
        .map(|p| {
            let entity = game.player_entity(PlayerId(p)).expect("seated");
            (PlayerId(p), ClientSnapshots::new(entity))
        })
        .collect();
    // The ticks of the snapshots sent, newest last.
    let mut sent_ticks: VecDeque<u32> = VecDeque::new();
    let played = D::NAME;
    let copied = match copies {
        1 => String::new(),
        n => format!("_{}_histories", n * players as usize),
    };
    let name = match acks_back {
        1 => format!("snapshot/build_and_delta_encode_{players}_clients{played}{copied}"),
        n => format!(
            "snapshot/build_and_delta_encode_{players}_clients_acks_{n}_back{played}{copied}"
        ),
    };
    // Snapshots encoded and their bytes.
    let mut datagrams = (0u64, 0u64);
    // A round: the world moves on two ticks (a 30 Hz snapshot at 60 Hz, untimed), then
    // every client's snapshot is built against its newest acknowledged one and encoded
    // as a datagram (timed).
    let mut round = || {
        for _ in 0..2 {
            bots.push(&mut game);
            game.step();
        }
        // Writing the records is the host's per-tick work, timed with the rest.
        let started = Instant::now();
        let prepared = prepare(&mut game, &layout, interest);
        let tick = game.tick();
        let frame = prepared.frame(tick, &layout, interest);
        let acked = sent_ticks
            .len()
            .checked_sub(acks_back)
            .map_or(0, |i| sent_ticks[i]);
        for (player, client) in &mut clients {
            // Clients acknowledge the snapshot `acks_back` before this one.
            if acked != 0 {
                client.ack(acked);
            }
            let built = client.build(&frame, budget);
            let ack_input_seq = game.ack_input_seq(*player).unwrap_or(0);
            let datagram = Datagram::Snapshot(built.into_snapshot(tick, ack_input_seq, 0));
            let bytes = codec::encode_datagram(&datagram).expect("fits");
            datagrams.0 += 1;
            datagrams.1 += bytes.len() as u64;
            black_box(bytes);
        }
        let spent = started.elapsed();
        sent_ticks.push_back(tick);
        if sent_ticks.len() > acks_back {
            sent_ticks.pop_front();
        }
        spent
    };
    let mut warm = false;
    c.bench_function(&name, |b| {
        // Clients as a match's are after its first seconds: each with its history of
        // views sent full, their buffers grown (untimed).
        if !warm {
            for _ in 0..SENT_HISTORY {
                round();
            }
            warm = true;
        }
        b.iter_custom(|iters| (0..iters).map(|_| round()).sum());
    });
    // What the figure stands for: the datagrams' size, as the load test reports its
    // bandwidth (docs/PERFORMANCE.md compares the two).
    let (count, bytes) = datagrams;
    if count == 0 {
        return; // left out by a filter
    }
    eprintln!(
        "{name}: {count} snapshots, {:.1} bytes each",
        bytes as f64 / count as f64
    );
}

/// The load test's match (16 players, 40 props) as its clients receive it: 600 rounds
/// of every client's snapshot, 30 a second, each client acknowledging the one before.
struct ClientRounds {
    game: Match,
    layout: replication::Layout,
    clients: Vec<EntityId>,
    rounds: Vec<Vec<Snapshot>>,
}

fn client_rounds() -> ClientRounds {
    const ROUNDS: usize = 600;
    let (mut game, mut bots) = arena_of(16, 40);
    let settings = ArenaConfig::of(game.config()).expect("arena settings");
    let layout = replication::Layout::new(&arena::schema(&settings));
    let interest = Interest::default();
    let budget = body_budget(96_000, game.config().snapshot_hz, 1200);
    let entities: Vec<EntityId> = (1..=16)
        .map(|p| game.player_entity(PlayerId(p)).expect("seated"))
        .collect();
    let mut clients: Vec<ClientSnapshots> =
        entities.iter().map(|&e| ClientSnapshots::new(e)).collect();
    let mut rounds: Vec<Vec<Snapshot>> = Vec::with_capacity(ROUNDS);
    let mut last_tick = 0;
    for _ in 0..ROUNDS {
        for _ in 0..2 {
            bots.push(&mut game);
            game.step();
        }
        let prepared = prepare(&mut game, &layout, interest);
        let tick = game.tick();
        let frame = prepared.frame(tick, &layout, interest);
        rounds.push(
            clients
                .iter_mut()
                .map(|client| {
                    client.ack(last_tick);
                    client.build(&frame, budget).into_snapshot(tick, 0, 0)
                })
                .collect(),
        );
        last_tick = tick;
    }
    ClientRounds {
        game,
        layout,
        clients: entities,
        rounds,
    }
}

/// Every client's decode of its snapshots (built beforehand, untimed), as the SDK decodes
/// them: each client's decoder takes its datagrams in order (timed, per round). Then the
/// same by 63 copies of each client (1,008 decoders, as one load generator process holds
/// them): each decoder's views are cold by its next snapshot, as they are where 1,000
/// clients share the machine's caches.
fn client_decodes(c: &mut Criterion) {
    // Made when a bench that reads them runs, not when a filter leaves both out.
    let made = std::cell::OnceCell::new();
    for copies in [1, 63] {
        let name = format!("snapshot/client_decode_{}_clients", 16 * copies);
        c.bench_function(&name, |b| {
            let ClientRounds { layout, rounds, .. } = made.get_or_init(client_rounds);
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let mut decoders: Vec<outpost_client::netcode::Decoder> = (0..16 * copies)
                        .map(|_| outpost_client::netcode::Decoder::new(layout.clone()))
                        .collect();
                    let started = Instant::now();
                    for round in rounds.iter().take((iters - done) as usize) {
                        for (decoder, snapshot) in decoders.iter_mut().zip(round.iter().cycle()) {
                            black_box(decoder.decode(snapshot).expect("decodes"));
                        }
                        done += 1;
                    }
                    spent += started.elapsed();
                }
                spent
            });
        });
    }
}

/// A game client's work per snapshot in the load test's match, for all 16: the SDK
/// takes the datagram (decode, clock, interpolation timeline), then the game draws every
/// entity in view where it is shown now (interpolated at the render tick; the arena's
/// bot does the same for the other characters before each input). Timed per round of 16.
fn client_turns(c: &mut Criterion) {
    // Made when the bench runs, not when a filter leaves it out.
    let made = std::cell::OnceCell::new();
    c.bench_function("client/snapshot_and_draw_16_clients", |b| {
        let (game, clients, schema, datagrams) = made.get_or_init(|| {
            let ClientRounds {
                game,
                clients,
                rounds,
                ..
            } = client_rounds();
            let settings = ArenaConfig::of(game.config()).expect("arena settings");
            let schema = arena::schema(&settings).encode();
            let datagrams: Vec<Vec<Vec<u8>>> = rounds
                .iter()
                .map(|round| {
                    round
                        .iter()
                        .map(|s| {
                            codec::encode_datagram(&Datagram::Snapshot(s.clone())).expect("fits")
                        })
                        .collect()
                })
                .collect();
            (game, clients, schema, datagrams)
        });
        let welcome = |entity: EntityId| Welcome {
            protocol_version: PROTOCOL_VERSION,
            match_id: MatchId(1),
            player_id: PlayerId(1),
            entity,
            tick: 0,
            config: game.config().clone(),
            schema: schema.clone(),
            reconnect_key: [0; 16],
            players: Vec::new(),
        };
        let period = Duration::from_secs(1) / u32::from(game.config().snapshot_hz);
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let start = Instant::now();
                let mut conns: Vec<MatchConnection> = clients
                    .iter()
                    .map(|&e| MatchConnection::new(welcome(e), start).expect("verifies"))
                    .collect();
                let mut at = start;
                let started = Instant::now();
                for round in datagrams.iter().take((iters - done) as usize) {
                    at += period;
                    for (conn, datagram) in conns.iter_mut().zip(round) {
                        let Some(world) = conn.on_datagram(datagram, at) else {
                            continue;
                        };
                        let Some(render) = conn.render_tick(at) else {
                            continue;
                        };
                        for record in world.records.iter() {
                            black_box(conn.interpolated_position(record.id, render));
                        }
                    }
                    done += 1;
                }
                spent += started.elapsed();
            }
            spent
        });
    });
}

fn snapshots(c: &mut Criterion) {
    let (mut game, _) = arena();
    let settings = ArenaConfig::of(game.config()).expect("arena settings");
    let layout = replication::Layout::new(&arena::schema(&settings));
    let interest = Interest::default();
    let clients: Vec<PlayerId> = (1..=PLAYERS).map(PlayerId).collect();
    let prepared = prepare(&mut game, &layout, interest);
    let centers: Vec<[f32; 3]> = clients
        .iter()
        .filter_map(|p| {
            let entity = game.player_entity(*p)?;
            Some(prepared.positions[prepared.records.find_index(entity)?])
        })
        .collect();
    let mut out = Vec::new();
    c.bench_function("interest/query_64_clients_1064_entities", |b| {
        b.iter(|| {
            for center in &centers {
                prepared
                    .grid
                    .query(&prepared.positions, *center, interest.radius, &mut out);
                black_box(out.len());
            }
        });
    });
    c.bench_function("interest/grid_build_1064_entities", |b| {
        b.iter(|| black_box(InterestGrid::build(&prepared.positions, interest.cell)));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(6));
    targets = tick_vs_physics, snapshot_builds, client_decodes, client_turns, snapshots
}
criterion_main!(benches);
