//! Snapshot bandwidth per client, measured through the real pipeline: the edge's interest,
//! priority and budget ([`outpost_edge::snapshot`]), the bit-packed delta codec, and the
//! client's decoder — with acknowledgements arriving a round trip late.
//!
//! ```text
//! cargo run --release --example bandwidth -- --scene cubes --json
//! cargo run --release --example bandwidth -- --scene arena --players 64 --props 1000 --json
//! ```
//!
//! `cubes` is the scene of Glenn Fiedler's "Snapshot Compression": 901 cubes, 60 snapshots
//! per second, a large cube ploughing through them and throwing them about. `arena` is
//! Outpost's own mode with scripted players. "Naive" is full uncompressed state for every
//! entity in every snapshot, at Fiedler's 321 bits per entity.

use outpost_arena::{EntityKind, EntityView, PlayerInput};
use outpost_sim::ModeSettings as _;
use std::collections::VecDeque;

use clap::{Parser, ValueEnum};
use outpost_arena::cubes::Cubes;
use outpost_arena::{self as arena, ArenaConfig};
use outpost_client::netcode::{Decoder, Timeline};
use outpost_edge::snapshot::{ClientSnapshots, Frame, Interest, InterestGrid, body_budget};
use outpost_protocol::replication::{self, Fields, Layout};
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::{EntityId, MatchConfig, MatchId, PlayerId, Snapshot};
use outpost_sim::{Match, Modes, SplitMix64};
use serde::Serialize;

/// Bits per entity of full, uncompressed state (Fiedler's figure: 17.37 Mbit/s for 901
/// cubes at 60 Hz).
const NAIVE_BITS_PER_ENTITY: f64 = 321.0;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scene {
    Cubes,
    Arena,
}

#[derive(Parser, Debug)]
struct Args {
    /// Which scene.
    #[arg(long, value_enum)]
    scene: Scene,
    /// Players (arena).
    #[arg(long, default_value_t = 64)]
    players: u16,
    /// Props (arena).
    #[arg(long, default_value_t = 1000)]
    props: u16,
    /// Seconds simulated.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Snapshot rate; default 60 for cubes, 30 for the arena.
    #[arg(long)]
    snapshot_hz: Option<u16>,
    /// Per-client snapshot budget, kbit/s; default 256 for cubes (Fiedler's target), the
    /// edge's default (96) for the arena. `0`: unbudgeted — every changed entity in every
    /// snapshot, with no datagram limit either (the report's largest body says whether
    /// that would fit a datagram).
    #[arg(long)]
    budget_kbps: Option<u32>,
    /// Round-trip time before an acknowledgement reaches the edge, milliseconds.
    #[arg(long, default_value_t = 100)]
    rtt_ms: u32,
    /// Clients measured in the arena (each a different player's view).
    #[arg(long, default_value_t = 64)]
    clients: u16,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    scene: &'static str,
    entities: usize,
    avg_moving_entities: f64,
    snapshot_hz: u16,
    naive_kbps: f64,
    kbps_per_client: f64,
    ratio: f64,
    budget_kbps: u32,
    clients: usize,
    avg_view_entities: f64,
    avg_deferred_per_snapshot: f64,
    position_error_m_mean: f64,
    /// Snapshot body bytes per snapshot.
    body_bytes_per_snapshot: f64,
    /// The largest snapshot body.
    body_bytes_max: usize,
    position_error_m_p99: f64,
}

// ---- Measuring ------------------------------------------------------------------------

/// One client: the edge's per-client state, the client's decoder, acks in flight.
struct Viewer {
    edge: ClientSnapshots,
    decoder: Decoder,
    shown: Timeline,
    acks: VecDeque<(u32, u32)>, // (arrives at tick, acknowledges tick)
    body_bytes: u64,
    body_bytes_max: usize,
    bytes: u64,
    snapshots: u64,
    view_entities: u64,
    deferred: u64,
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut game, snapshot_hz, budget_kbps, interest) = match args.scene {
        Scene::Cubes => {
            let hz = args.snapshot_hz.unwrap_or(60);
            let modes = Modes::new().with(Cubes);
            let config = MatchConfig {
                tick_hz: 60,
                snapshot_hz: hz,
                duration_s: 7200,
                max_players: 1,
                ..modes.config("cubes", None)?
            };
            let (mode, _) = modes.resolve(&config)?;
            let game = Match::with_mode(MatchId(1), &config, mode)?;
            // Fiedler's client sees every cube.
            (
                game,
                hz,
                args.budget_kbps.unwrap_or(256),
                Interest {
                    radius: 1000.0,
                    cell: 16.0,
                },
            )
        }
        Scene::Arena => {
            let hz = args.snapshot_hz.unwrap_or(30);
            let config = MatchConfig {
                max_players: args.players.max(1),
                snapshot_hz: hz,
                duration_s: 7200,
                seed: 3,
                ..arena::config(&ArenaConfig {
                    props: args.props,
                    score_limit: 0,
                    ..ArenaConfig::default()
                })
            };
            let mut game = Match::new(MatchId(1), &config, &arena::modes())?;
            for p in 1..=args.players {
                game.add_player(PlayerId(u64::from(p)))?;
            }
            (
                game,
                hz,
                args.budget_kbps.unwrap_or(
                    outpost_edge::EdgeConfig::new("bench", [0; 32]).client_bandwidth_bps / 1000,
                ),
                Interest::default(),
            )
        }
    };
    let config = game.config().clone();
    let settings = ArenaConfig::of(&config)?;
    let quantizer = settings.quantizer();
    let schema = ModeSchema {
        mode: config.mode.clone(),
        ..arena::schema(&settings)
    };
    let ticks_per_snapshot = config.ticks_per_snapshot();
    let rtt_ticks = (args.rtt_ms * u32::from(config.tick_hz)).div_ceil(1000);
    let budget = match budget_kbps {
        0 => usize::MAX / 8,
        kbps => body_budget(kbps * 1000, snapshot_hz, 1200),
    };
    let layout = Layout::new(&schema);

    let mut state = Vec::new();
    arena::write_entity_states(game.world_mut(), &mut state);
    let mut viewers: Vec<Viewer> = match args.scene {
        Scene::Cubes => {
            let own = state
                .iter()
                .find(|e| e.kind == EntityKind::Player)
                .map_or(EntityId(1), |e| e.id);
            vec![viewer(own, &schema)]
        }
        Scene::Arena => (1..=args.players.min(args.clients))
            .filter_map(|p| {
                let player = PlayerId(u64::from(p));
                Some(viewer(game.player_entity(player)?, &schema))
            })
            .collect(),
    };

    let mut rng = SplitMix64::new(11);
    let mut headings: Vec<f32> = (0..args.players)
        .map(|_| rng.range(0.0, std::f32::consts::TAU))
        .collect();
    let mut grid = InterestGrid::default();
    let mut records = replication::View::new();
    let mut positions: Vec<[f32; 3]> = Vec::new();
    let mut previous: Vec<(EntityId, EntityView)> = Vec::new();
    let (mut moving_total, mut frames) = (0u64, 0u64);
    let mut errors: Vec<f64> = Vec::new();
    let total_ticks = args.seconds * u32::from(config.tick_hz);
    let warmup = u32::from(config.tick_hz); // the first second fills views; not measured
    for tick_index in 0..total_ticks {
        if matches!(args.scene, Scene::Arena) {
            for p in 0..args.players {
                if rng.next_u64().is_multiple_of(90) {
                    headings[usize::from(p)] = rng.range(0.0, std::f32::consts::TAU);
                }
                let input = PlayerInput {
                    seq: tick_index + 1,
                    move_z: 127,
                    yaw: PlayerInput::yaw_from_radians(headings[usize::from(p)]),
                    buttons: if rng.next_u64().is_multiple_of(15) {
                        PlayerInput::FIRE
                    } else {
                        0
                    },
                    ..PlayerInput::default()
                };
                game.push_input(PlayerId(u64::from(p) + 1), input);
            }
        }
        game.step();
        game.drain_events();
        let tick = game.tick();
        if tick % ticks_per_snapshot != 0 {
            continue;
        }
        arena::write_entity_states(game.world_mut(), &mut state);
        game.write_records(&mut records);
        positions.clear();
        positions.extend(
            records
                .iter()
                .map(|r| layout.position_value(&r).unwrap_or([0.0; 3])),
        );
        grid.rebuild(&positions, interest.cell);
        let quantized: Vec<EntityView> =
            state.iter().map(|e| e.quantize(&quantizer, None)).collect();
        let frame = Frame {
            tick,
            layout: &layout,
            positions: &positions,
            records: &records,
            grid: &grid,
            interest,
        };
        let measured = tick_index >= warmup;
        // Moving: quantized state changed since the previous snapshot.
        let now: Vec<(EntityId, EntityView)> = quantized.iter().map(|e| (e.id, *e)).collect();
        if measured && !previous.is_empty() {
            moving_total += now
                .iter()
                .zip(&previous)
                .filter(|(a, b)| a.1 != b.1)
                .count() as u64;
            frames += 1;
        }
        previous = now;
        for v in &mut viewers {
            while v.acks.front().is_some_and(|(at, _)| *at <= tick) {
                if let Some((_, acked)) = v.acks.pop_front() {
                    v.edge.ack(acked);
                }
            }
            let built = v.edge.build(&frame, budget);
            let deferred = built.deferred;
            let snapshot = built.into_snapshot(tick, 0, 0);
            let world = v
                .decoder
                .decode(&snapshot)
                .map_err(|e| anyhow::anyhow!("decode failed: {e:?}"))?;
            if measured {
                v.body_bytes += snapshot.body.len() as u64;
                v.body_bytes_max = v.body_bytes_max.max(snapshot.body.len());
            }
            v.acks.push_back((tick + rtt_ticks, tick));
            if measured {
                v.bytes += (Snapshot::HEADER_LEN + snapshot.body.len()) as u64;
                v.snapshots += 1;
                v.view_entities += world.records.len() as u64;
                v.deferred += deferred as u64;
                // What the client shows (its newest value of each entity) against the truth.
                v.shown.push(&world, f64::from(config.tick_hz));
                for shown in v.shown.newest().step_by(4) {
                    if let Ok(i) = state.binary_search_by_key(&shown.id, |e| e.id)
                        && let Some(at) = layout.position_value(&shown)
                    {
                        let truth = state[i].position;
                        let d = (0..3)
                            .map(|a| (truth[a] - at[a]).powi(2))
                            .sum::<f32>()
                            .sqrt();
                        errors.push(f64::from(d));
                    }
                }
            }
        }
    }

    let seconds = f64::from(total_ticks - warmup) / f64::from(config.tick_hz);
    let clients = viewers.len().max(1);
    let kbps = viewers
        .iter()
        .map(|v| v.bytes as f64 * 8.0 / 1000.0 / seconds)
        .sum::<f64>()
        / clients as f64;
    let snapshots: u64 = viewers.iter().map(|v| v.snapshots).sum::<u64>().max(1);
    let entities = state.len();
    let naive = entities as f64 * NAIVE_BITS_PER_ENTITY * f64::from(snapshot_hz) / 1000.0;
    let mean = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    let report = Report {
        scene: match args.scene {
            Scene::Cubes => "cubes",
            Scene::Arena => "arena",
        },
        entities,
        avg_moving_entities: moving_total as f64 / frames.max(1) as f64,
        snapshot_hz,
        naive_kbps: naive,
        kbps_per_client: kbps,
        ratio: kbps / naive,
        budget_kbps,
        clients,
        avg_view_entities: viewers.iter().map(|v| v.view_entities).sum::<u64>() as f64
            / snapshots as f64,
        avg_deferred_per_snapshot: viewers.iter().map(|v| v.deferred).sum::<u64>() as f64
            / snapshots as f64,
        position_error_m_mean: mean,
        body_bytes_per_snapshot: viewers.iter().map(|v| v.body_bytes).sum::<u64>() as f64
            / snapshots as f64,
        body_bytes_max: viewers.iter().map(|v| v.body_bytes_max).max().unwrap_or(0),
        position_error_m_p99: percentile(&mut errors, 0.99),
    };
    if args.json {
        #[expect(clippy::print_stdout, reason = "the report is the example's output")]
        {
            println!("{}", serde_json::to_string(&report)?);
        }
    } else {
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn viewer(own: EntityId, schema: &ModeSchema) -> Viewer {
    let fields = std::sync::Arc::new(Fields::new(schema.clone()));
    Viewer {
        edge: ClientSnapshots::new(own),
        decoder: Decoder::new(fields.layout().clone()),
        shown: Timeline::new(fields),
        acks: VecDeque::new(),
        body_bytes: 0,
        body_bytes_max: 0,
        bytes: 0,
        snapshots: 0,
        view_entities: 0,
        deferred: 0,
    }
}
