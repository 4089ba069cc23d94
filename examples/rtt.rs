//! Input-to-acknowledgement round trip through an edge, beside its anchor: the raw QUIC
//! datagram round trip on the same loopback, measured side by side in one run.
//!
//! ```text
//! cargo run --release --example rtt -- --json
//! ```
//!
//! The anchor is a quinn endpoint that echoes every datagram back (no game, no tick).
//! The measured path is the SDK's: `Session::send_input` until a snapshot says the edge
//! applied that input. On top of the transport it waits for the next tick (up to one
//! tick) and, with snapshots at the tick rate, goes out with that tick's snapshot. The
//! target is `p50(input) ≤ 2 × p50(raw) + one tick`.
//!
//! Beside them, in the same run, the AR room's pose-to-peer latency: a device's head
//! pose until another device's snapshot shows it, against the same bound.

use outpost_arena::PlayerInput;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use outpost_arena::{self as arena, ArenaConfig};
use outpost_client::{Assignment, Client, Trust};
use outpost_edge::tls::Certificate;
use outpost_edge::{Edge, EdgeConfig, TlsSource};
use outpost_protocol::{ConnectToken, MatchConfig, MatchId, PlayerId, TokenSigner};

#[derive(Parser)]
struct Args {
    /// Samples of each.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Simulation (and snapshot) rate of the match.
    #[arg(long, default_value_t = 60)]
    tick_hz: u16,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Round trips of single datagrams to an echoing quinn endpoint, milliseconds.
async fn raw_quinn(samples: usize) -> anyhow::Result<Vec<f64>> {
    let certificate = Certificate::load(&TlsSource::SelfSigned)?;
    let mut edge_config = EdgeConfig::new("echo", [0; 32]);
    edge_config.listen = "127.0.0.1:0".parse()?;
    let server =
        quinn::Endpoint::server(certificate.server_config(&edge_config)?, edge_config.listen)?;
    let addr = server.local_addr()?;
    let echo = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let Ok(conn) = incoming.await else { continue };
            while let Ok(datagram) = conn.read_datagram().await {
                if conn.send_datagram(datagram).is_err() {
                    break;
                }
            }
        }
    });
    let client = Client::bind("127.0.0.1:0".parse()?)?;
    let conn = client
        .connect_raw(&Assignment {
            edge_addr: addr,
            server_name: "localhost".into(),
            trust: Trust::Pinned(certificate.fingerprint),
            connect_token: placeholder_token(),
        })
        .await?;
    let payload = Bytes::from(vec![0u8; 32]);
    let mut rtts = Vec::with_capacity(samples);
    for _ in 0..samples + 100 {
        let sent = Instant::now();
        conn.send_datagram(payload.clone())?;
        conn.read_datagram().await?;
        rtts.push(sent.elapsed().as_secs_f64() * 1000.0);
        // Spaced like a game's inputs, not back to back.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    echo.abort();
    Ok(rtts.split_off(100))
}

fn placeholder_token() -> outpost_protocol::SignedToken {
    TokenSigner::from_seed(&[1; 32])
        .sign(&ConnectToken {
            player_id: PlayerId(1),
            match_id: MatchId(1),
            team: 0,
            edge_id: "echo".into(),
            config: arena::config(&ArenaConfig::default()),
            issued_at_ms: 0,
            expires_at_ms: 0,
            nonce: [0; 16],
        })
        .expect("signs")
}

/// An edge on loopback hosting `modes`, and a session for each of `players` in one match
/// of `match_config`, admitted with tokens the edge trusts.
async fn edge_with(
    modes: outpost_sim::Modes,
    match_config: MatchConfig,
    players: &[u64],
) -> anyhow::Result<(Edge, Vec<outpost_client::Session>)> {
    let signer = TokenSigner::from_seed(&rand::random());
    let mut config = EdgeConfig::new("rtt-edge", signer.public_key());
    config.listen = "127.0.0.1:0".parse()?;
    config.modes = modes;
    let edge = Edge::start(config).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let client = Client::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let mut sessions = Vec::new();
    for &player in players {
        let token = signer.sign(&ConnectToken {
            player_id: PlayerId(player),
            match_id: MatchId(1),
            team: 0,
            edge_id: "rtt-edge".into(),
            config: match_config.clone(),
            issued_at_ms: now,
            expires_at_ms: now + 120_000,
            nonce: rand::random(),
        })?;
        sessions.push(
            client
                .connect(&Assignment {
                    edge_addr: edge.quic_addr(),
                    server_name: "localhost".into(),
                    trust: Trust::Pinned(edge.cert_fingerprint()),
                    connect_token: token,
                })
                .await?,
        );
    }
    Ok((edge, sessions))
}

/// Input-to-acknowledgement round trips through an edge, milliseconds.
async fn through_edge(samples: usize, tick_hz: u16) -> anyhow::Result<Vec<f64>> {
    let match_config = MatchConfig {
        tick_hz,
        snapshot_hz: tick_hz,
        ..arena::config(&ArenaConfig {
            props: 0,
            score_limit: 0,
            ..ArenaConfig::default()
        })
    };
    let (edge, mut sessions) = edge_with(outpost_arena::modes(), match_config, &[1]).await?;
    let mut session = sessions.pop().expect("one session");
    session.disable_prediction();
    let mut rtts = Vec::with_capacity(samples);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / u32::from(tick_hz));
    let mut last = None;
    while rtts.len() < samples + 60 {
        tokio::select! {
            _ = ticker.tick() => {
                session.send_input(PlayerInput { move_z: 127, ..PlayerInput::default() })?;
            }
            world = session.next_snapshot() => {
                anyhow::ensure!(world.is_some(), "the session ended");
                let rtt = session.input_rtt();
                if rtt.is_some() && rtt != last {
                    rtts.push(rtt.unwrap_or_default().as_secs_f64() * 1000.0);
                    last = rtt;
                }
            }
        }
    }
    session.close().await;
    edge.shutdown().await;
    Ok(rtts.split_off(60))
}

/// Pose-to-peer latency in an AR room, milliseconds: device A sends its head pose every
/// tick (one step of 2 mm further along x each time, so each pose is known by where it
/// is), device B wakes on every snapshot and times the first that shows each of A's
/// poses. On top of the transport (A to the edge, the edge to B) it waits for the next
/// tick and that tick's snapshot.
async fn pose_to_peer(samples: usize, tick_hz: u16) -> anyhow::Result<Vec<f64>> {
    use outpost_ar::{ArConfig, ArInput, POSITION_STEP, Pose};
    let match_config = MatchConfig {
        tick_hz,
        snapshot_hz: tick_hz,
        ..outpost_ar::config(&ArConfig {
            objects: 0,
            ..ArConfig::default()
        })
    };
    let (edge, mut sessions) = edge_with(outpost_ar::modes(), match_config, &[1, 2]).await?;
    for session in &sessions {
        session.disable_interpolation();
    }
    let mut b = sessions.pop().expect("two sessions");
    let a = sessions.pop().expect("two sessions");
    let a_entity = a.entity();
    let fields = b.fields();
    // Poses along x from -3 m, one 2 mm step a tick (0.12 m/s), within the room.
    let start = -3.0f32;
    let total = samples + 60;
    anyhow::ensure!(
        total as f32 * POSITION_STEP < 6.5,
        "at most {} samples fit in the room",
        (6.5 / POSITION_STEP) as usize - 60
    );
    let mut sent: Vec<Option<Instant>> = vec![None; total];
    let mut shown = vec![false; total];
    let mut latencies = Vec::with_capacity(samples);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / u32::from(tick_hz));
    let mut k = 0usize;
    while latencies.len() < total - 60 && k < total + 120 {
        tokio::select! {
            _ = ticker.tick() => {
                if k < total {
                    a.send_input(ArInput {
                        head: Pose {
                            position: [start + k as f32 * POSITION_STEP, 1.6, 0.0],
                            ..Pose::default()
                        },
                        hands: [None, None],
                        grip: [false, false],
                    })?;
                    sent[k] = Some(Instant::now());
                }
                k += 1;
            }
            world = b.next_snapshot() => {
                let Some(world) = world else {
                    anyhow::bail!("the session ended");
                };
                let Some(head) = world
                    .records
                    .find(a_entity)
                    .and_then(|r| fields.layout().position_value(&r))
                else {
                    continue;
                };
                let i = ((head[0] - start) / POSITION_STEP).round();
                if !(0.0..total as f32).contains(&i) {
                    continue;
                }
                let i = i as usize;
                if let (false, Some(at)) = (shown[i], sent[i]) {
                    shown[i] = true;
                    if i >= 60 {
                        latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        }
    }
    a.close().await;
    b.close().await;
    edge.shutdown().await;
    Ok(latencies)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut raw = raw_quinn(args.samples).await?;
    let mut input = through_edge(args.samples, args.tick_hz).await?;
    let mut pose = pose_to_peer(args.samples.min(3000), args.tick_hz).await?;
    let tick_ms = 1000.0 / f64::from(args.tick_hz);
    let raw_p50 = quantile(&mut raw, 0.5);
    let raw_p99 = quantile(&mut raw, 0.99);
    let input_p50 = quantile(&mut input, 0.5);
    let input_p99 = quantile(&mut input, 0.99);
    let pose_p50 = quantile(&mut pose, 0.5);
    let pose_p99 = quantile(&mut pose, 0.99);
    let bound = 2.0 * raw_p50 + tick_ms;
    let report = serde_json::json!({
        "samples": args.samples,
        "tick_ms": tick_ms,
        "raw_quinn_rtt_ms_p50": raw_p50,
        "raw_quinn_rtt_ms_p99": raw_p99,
        "input_ack_rtt_ms_p50": input_p50,
        "input_ack_rtt_ms_p99": input_p99,
        "target_ms": bound,
        "input_p50_within_target": input_p50 <= bound,
        "input_p50_over_raw_minus_tick": (input_p50 - tick_ms) / raw_p50,
        "pose_samples": pose.len(),
        "pose_to_peer_ms_p50": pose_p50,
        "pose_to_peer_ms_p99": pose_p99,
        "pose_p50_within_target": pose_p50 <= bound,
    });
    if args.json {
        #[expect(clippy::print_stdout, reason = "the report is the example's output")]
        {
            println!("{report}");
        }
    } else {
        eprintln!("{report:#}");
    }
    Ok(())
}
