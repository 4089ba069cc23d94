//! A real SDK join during a handshake flood: its time to Welcome, beside the same joins
//! with no flood, measured side by side in one run.
//!
//! ```text
//! cargo run --release --example handshake_flood -- --json
//! ```
//!
//! The flood is `--initials` QUIC Initials that never answer the edge (each from its own
//! source port, over twelve loopback addresses, 200 at a time); while it runs, players
//! join one after another and their connect-to-Welcome times are recorded. The edge runs
//! in this process with its default handshake limits.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use outpost_arena::{self as arena, ArenaConfig};
use outpost_client::{Assignment, Client, Trust};
use outpost_edge::handshake::Refusal;
use outpost_edge::{Edge, EdgeConfig};
use outpost_loadtest::flood::handshake_flood;
use outpost_protocol::{ConnectToken, MatchConfig, MatchId, PlayerId, TokenSigner};

#[derive(Parser)]
struct Args {
    /// Initials in the flood.
    #[arg(long, default_value_t = 2000)]
    initials: usize,
    /// Joins timed with no flood.
    #[arg(long, default_value_t = 50)]
    joins: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

struct Joiner {
    client: Client,
    signer: TokenSigner,
    edge: std::net::SocketAddr,
    fingerprint: [u8; 32],
    next: u64,
}

impl Joiner {
    /// One join into a match of its own; milliseconds from connect to Welcome.
    async fn join(&mut self) -> anyhow::Result<f64> {
        self.next += 1;
        let config = MatchConfig {
            max_players: 1,
            ..arena::config(&ArenaConfig {
                props: 0,
                ..ArenaConfig::default()
            })
        };
        let token = ConnectToken {
            player_id: PlayerId(self.next),
            match_id: MatchId(self.next),
            team: 0,
            edge_id: "flood-edge".into(),
            config,
            issued_at_ms: now_ms(),
            expires_at_ms: now_ms() + 60_000,
            nonce: rand::random(),
        };
        let assignment = Assignment {
            edge_addr: self.edge,
            server_name: "localhost".into(),
            trust: Trust::Pinned(self.fingerprint),
            connect_token: self.signer.sign(&token)?,
        };
        let started = Instant::now();
        let session = self.client.connect(&assignment).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(session);
        Ok(ms)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signer = TokenSigner::from_seed(&rand::random());
    let mut config = EdgeConfig::new("flood-edge", signer.public_key());
    config.listen = "127.0.0.1:0".parse()?;
    config.http_listen = None;
    config.modes = outpost_arena::modes();
    config.max_matches = 10_000;
    config.reconnect_grace = Duration::from_secs(1);
    let edge = Edge::start(config).await?;
    let mut joiner = Joiner {
        client: Client::bind("127.0.0.1:0".parse()?)?,
        signer,
        edge: edge.quic_addr(),
        fingerprint: edge.cert_fingerprint(),
        next: 0,
    };

    let mut quiet = Vec::with_capacity(args.joins);
    for _ in 0..args.joins {
        quiet.push(joiner.join().await?);
    }

    let sources: Vec<IpAddr> = (2..14u8).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    let target = edge.quic_addr();
    let initials = args.initials;
    let flood = tokio::spawn(async move {
        handshake_flood(target, &sources, initials, 200, Duration::from_secs(5)).await
    });
    let mut flooded = Vec::new();
    let mut failed = 0u64;
    while !flood.is_finished() || flooded.len() < args.joins {
        match joiner.join().await {
            Ok(ms) => flooded.push(ms),
            Err(err) => {
                failed += 1;
                eprintln!("join failed during the flood: {err}");
            }
        }
    }
    let report = flood.await??;
    let metrics = edge.metrics();
    let summary = serde_json::json!({
        "initials_sent": report.sent,
        "initials_answered": report.answered,
        "retries_seen_by_flood": report.retries,
        "edge_retries": metrics.handshake_retries.get(),
        "edge_refused_per_address": metrics.handshakes_refused_of(Refusal::PerAddress),
        "edge_refused_pending_full": metrics.handshakes_refused_of(Refusal::PendingFull),
        "joins_quiet": quiet.len(),
        "joins_during_flood": flooded.len(),
        "joins_failed_during_flood": failed,
        "welcome_ms_quiet_p50": quantile(&mut quiet, 0.5),
        "welcome_ms_quiet_p99": quantile(&mut quiet, 0.99),
        "welcome_ms_flood_p50": quantile(&mut flooded, 0.5),
        "welcome_ms_flood_p99": quantile(&mut flooded, 0.99),
        "welcome_ms_flood_max": quantile(&mut flooded, 1.0),
    });
    let text = if args.json {
        summary.to_string()
    } else {
        serde_json::to_string_pretty(&summary)?
    };
    #[expect(clippy::print_stdout, reason = "the report is the example's output")]
    {
        println!("{text}");
    }
    edge.shutdown().await;
    Ok(())
}
