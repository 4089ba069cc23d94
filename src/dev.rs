//! `outpost dev`: an edge and a match of bots on this machine, for trying Outpost out
//! and for smoke-testing a build.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use outpost_client::link::LinkRelay;
use outpost_client::{Assignment, Bot, BotReport, BotStyle, Client, Trust};
use outpost_edge::{Edge, EdgeConfig};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::{ConnectToken, MatchConfig, MatchId, PlayerId, TokenSigner};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

const EDGE_ID: &str = "dev-edge-1";
/// Connect tokens minted by `outpost dev` are valid this long.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Options of `outpost dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Bots to play the match.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=128))]
    bots: u16,
    /// Stop after this long (e.g. `10s`, `2m`); without it, run until Ctrl-C or the match ends.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Length of the match in seconds.
    #[arg(long, default_value_t = 300)]
    match_seconds: u32,
    /// Score that ends the match; 0 for none (the match runs its full length).
    #[arg(long, default_value_t = 0)]
    score_limit: u32,
    /// Simulation rate.
    #[arg(long, default_value_t = 60)]
    tick_hz: u16,
    /// Props in the arena.
    #[arg(long, default_value_t = 40)]
    props: u16,
    /// UDP address of the edge's QUIC endpoint (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7777")]
    listen: SocketAddr,
    /// TCP address of the edge's admin HTTP server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7780")]
    http: SocketAddr,
    /// Simulation worker threads.
    #[arg(long, default_value_t = 1)]
    sim_threads: usize,
    /// Put the bots behind a link conditioner: `good`, `average`, `poor` or `bursty`
    /// (latency, jitter and loss each way).
    #[arg(long, value_parser = parse_link)]
    link: Option<LinkConfig>,
    /// Print one JSON summary on stdout at exit.
    #[arg(long)]
    json: bool,
}

/// The summary `--json` prints.
#[derive(Serialize)]
struct Summary {
    bots: u16,
    duration_s: f64,
    players_joined: u64,
    ticks: u64,
    tick_ms_p50: f64,
    tick_ms_p99: f64,
    tick_ms_max: f64,
    missed_ticks: u64,
    min_snapshots_received_per_bot: u64,
    max_snapshots_received_per_bot: u64,
    bots_connected_throughout: usize,
    hits: u32,
    datagrams_rejected: u64,
    datagrams_out: u64,
    datagram_bytes_out: u64,
    datagrams_in: u64,
    snapshots_dropped: u64,
    match_ended: bool,
    prediction_error_m_p50: f64,
    prediction_error_m_p99: f64,
    max_extrapolated_ms: f64,
    acks_in_order: bool,
    snapshot_kbps_per_bot: f64,
}

fn parse_link(name: &str) -> Result<LinkConfig, String> {
    LinkConfig::preset(name)
        .ok_or_else(|| format!("unknown link preset `{name}` (good, average, poor, bursty)"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    crate::init_tracing("warn");
    let match_config = MatchConfig {
        duration_s: args.match_seconds,
        score_limit: args.score_limit,
        max_players: args.bots.max(2),
        tick_hz: args.tick_hz,
        props: args.props,
        seed: rand::random(),
        ..MatchConfig::default()
    };
    match_config.validate().context("match settings")?;
    // A fresh signing key per run: dev tokens are minted and checked in this process.
    let signer = TokenSigner::from_seed(&rand::random());
    let mut config = EdgeConfig::new(EDGE_ID, signer.public_key());
    config.listen = args.listen;
    config.http_listen = Some(args.http);
    config.sim_threads = args.sim_threads;
    config.max_players = usize::from(args.bots).max(16);
    let edge = Edge::start(config).await?;
    eprintln!(
        "outpost dev: edge {EDGE_ID} on quic {} · metrics http://{}/metrics · certificate sha256 {}",
        edge.quic_addr(),
        edge.http_addr().map(|a| a.to_string()).unwrap_or_default(),
        outpost_edge::hex(&edge.cert_fingerprint()),
    );

    let match_id = MatchId(rand::random());
    let client = Arc::new(Client::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?);
    // With --link the bots reach the edge through a conditioning relay.
    let relay = match args.link {
        Some(link) => Some(LinkRelay::symmetric(edge.quic_addr(), link, rand::random()).await?),
        None => None,
    };
    let edge_addr = relay.as_ref().map_or(edge.quic_addr(), LinkRelay::addr);
    // All bots join at once, as players do; then all play.
    let mut joins = Vec::with_capacity(usize::from(args.bots));
    for n in 0..args.bots {
        let token = ConnectToken {
            player_id: PlayerId(u64::from(n) + 1),
            match_id,
            edge_id: EDGE_ID.to_owned(),
            config: match_config.clone(),
            issued_at_ms: now_ms(),
            expires_at_ms: now_ms() + TOKEN_TTL.as_millis() as u64,
            nonce: rand::random(),
        };
        let assignment = Assignment {
            edge_addr,
            server_name: "localhost".into(),
            trust: Trust::Pinned(edge.cert_fingerprint()),
            connect_token: signer.sign(&token)?,
        };
        let client = client.clone();
        joins.push(tokio::spawn(
            async move { client.connect(&assignment).await },
        ));
    }
    let stop = CancellationToken::new();
    let mut bots = Vec::with_capacity(joins.len());
    for (n, join) in joins.into_iter().enumerate() {
        let session = join.await?.with_context(|| format!("bot {n} joining"))?;
        let bot = Bot::new(session, n as u64, BotStyle::Wander);
        let stop = stop.clone();
        bots.push(tokio::spawn(bot.run(async move { stop.cancelled().await })));
    }

    let started = Instant::now();
    let deadline = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let all_done = async {
        while bots.iter().any(|b| !b.is_finished()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let status = status_line(&edge, args.json);
    tokio::select! {
        () = deadline => {}
        () = all_done => {}
        signal = crate::stop_signal() => eprintln!("\n{signal}: stopping"),
        () = status => {}
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut reports: Vec<BotReport> = Vec::with_capacity(bots.len());
    for bot in bots {
        reports.push(bot.await?);
    }
    let tick = edge.tick_stats();
    let metrics = edge.metrics();
    let errors: Vec<f32> = reports
        .iter()
        .flat_map(|r| r.netcode.prediction_errors.iter().copied())
        .collect();
    let summary = Summary {
        bots: args.bots,
        duration_s: elapsed.as_secs_f64(),
        players_joined: metrics.joins.get(),
        ticks: tick.ticks,
        tick_ms_p50: tick.p50_ms,
        tick_ms_p99: tick.p99_ms,
        tick_ms_max: tick.max_ms,
        missed_ticks: metrics.missed_ticks.get(),
        min_snapshots_received_per_bot: reports
            .iter()
            .map(|r| r.snapshots_received)
            .min()
            .unwrap_or(0),
        max_snapshots_received_per_bot: reports
            .iter()
            .map(|r| r.snapshots_received)
            .max()
            .unwrap_or(0),
        bots_connected_throughout: reports.iter().filter(|r| r.stayed_connected).count(),
        hits: reports.iter().map(|r| r.hits).sum(),
        datagrams_rejected: metrics.datagrams_rejected.get(),
        datagrams_out: metrics.datagrams_out.get(),
        datagram_bytes_out: metrics.bytes_out.get(),
        datagrams_in: metrics.datagrams_in.get(),
        snapshots_dropped: metrics.snapshots_dropped.get(),
        match_ended: reports.iter().any(|r| r.match_ended),
        prediction_error_m_p50: percentile(&errors, 0.5),
        prediction_error_m_p99: percentile(&errors, 0.99),
        max_extrapolated_ms: reports
            .iter()
            .map(|r| r.netcode.max_extrapolated_ms)
            .fold(0.0, f64::max),
        acks_in_order: reports.iter().all(|r| r.acks_in_order),
        snapshot_kbps_per_bot: metrics.bytes_out.get() as f64 * 8.0
            / 1000.0
            / elapsed.as_secs_f64()
            / f64::from(args.bots),
    };
    edge.shutdown().await;
    if args.json {
        #[expect(clippy::print_stdout, reason = "the summary is the command's output")]
        {
            println!("{}", serde_json::to_string(&summary)?);
        }
    } else {
        eprintln!(
            "\n{} bots · {} ticks · tick p50 {:.3} ms p99 {:.3} ms · {} hits · fewest snapshots per bot {}",
            summary.bots,
            summary.ticks,
            summary.tick_ms_p50,
            summary.tick_ms_p99,
            summary.hits,
            summary.min_snapshots_received_per_bot
        );
    }
    Ok(())
}

/// Redraws a one-line status every second on stderr (only when it is a terminal, or
/// once every ten seconds otherwise so logs stay readable).
async fn status_line(edge: &Edge, quiet: bool) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last_out = 0;
    let mut last_in = 0;
    loop {
        ticker.tick().await;
        if quiet && !tty {
            continue;
        }
        let metrics = edge.metrics();
        let (out, inn) = (metrics.bytes_out.get(), metrics.bytes_in.get());
        let tick = edge.tick_stats();
        let line = format!(
            "tick p50 {:.2} ms p99 {:.2} ms · players {} · matches {} · out {:.0} kB/s · in {:.0} kB/s",
            tick.p50_ms,
            tick.p99_ms,
            metrics.players.get(),
            metrics.matches.get(),
            (out - last_out) as f64 / 1000.0 / every.as_secs_f64(),
            (inn - last_in) as f64 / 1000.0 / every.as_secs_f64(),
        );
        (last_out, last_in) = (out, inn);
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// The `q` quantile of `values` (0 when empty).
pub(crate) fn percentile(values: &[f32], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[index])
}
