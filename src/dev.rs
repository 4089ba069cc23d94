//! `outpost dev`: the whole platform on this machine — cloud (embedded store, replays in
//! a local folder), an edge linked to it, and bots that log in, matchmake, play matches
//! back to back, and whose results reach the leaderboards and replays.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use outpost_client::link::LinkRelay;
use outpost_client::{Client, CloudClient};
use outpost_cloud::{Cloud, CloudConfig};
use outpost_edge::cloud_link::{CloudLink, CloudLinkConfig, fetch_connect_key, http_client};
use outpost_edge::gateway::limits::Rate;
use outpost_edge::gateway::{Gateway, GatewayConfig};
use outpost_edge::{Edge, EdgeConfig};
use outpost_loadtest::bot::{Bot, BotReport, PoseProbe};
use outpost_protocol::MatchConfig;
use outpost_protocol::link::LinkConfig;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

const EDGE_ID: &str = "dev-edge-1";
const REGION: &str = "local";

/// Options of `outpost dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Bots to play; every match is all of them.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=128))]
    bots: u16,
    /// Stop after this long (e.g. `30s`, `2m`); without it, run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Length of each match in seconds (matches run back to back).
    #[arg(long, default_value_t = 20)]
    match_seconds: u32,
    /// Game mode the bots play (`arena`; any mode this binary registers).
    #[arg(long, default_value = "arena")]
    mode: String,
    #[command(flatten)]
    settings: crate::modes::ModeArgs,
    /// Simulation rate.
    #[arg(long, default_value_t = 60)]
    tick_hz: u16,
    /// UDP address of the edge's QUIC endpoint (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7777")]
    listen: SocketAddr,
    /// TCP address of the edge's admin HTTP server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7780")]
    http: SocketAddr,
    /// TCP address of the cloud API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    cloud_listen: SocketAddr,
    /// TCP address of the edge's HTTP gateway, which the bots' SDK calls go through
    /// (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8081")]
    gateway_listen: SocketAddr,
    /// Folder for replays, the edge's outbox and its cached JWKS; without it a temporary
    /// folder, removed at exit.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Simulation worker threads.
    #[arg(long, default_value_t = 1)]
    sim_threads: usize,
    /// Put the bots behind a link conditioner: `edge`, `good`, `average`, `poor` or `bursty`
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
    matches_placed: u64,
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
    results_applied: u64,
    leaderboard_entries: u64,
    replays_stored: u64,
    outbox_pending: usize,
    gateway_requests: u64,
    /// The mode's per-player stats (`GameMode::stats`), summed over every result applied.
    stats: std::collections::BTreeMap<String, u64>,
    /// The AR room's figures, with `--mode ar`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    ar: Option<ArSummary>,
}

/// What `outpost dev --mode ar` adds to the summary, from the rooms' results.
#[derive(Serialize)]
struct ArSummary {
    /// Devices connected throughout.
    peers: usize,
    /// Objects released faster than 1 m/s.
    objects_thrown: u64,
    /// Grabs lost to another hand in the same tick.
    ownership_conflicts: u64,
    /// Pose parts the edge clamped.
    pose_violations: u64,
    /// Snapshot bandwidth per device.
    kbps_down_per_peer: f64,
    /// A device's head pose until another device has it, over every pair of devices.
    pose_latency_ms_p50: f64,
    /// See `pose_latency_ms_p50`.
    pose_latency_ms_p99: f64,
    /// Poses timed.
    pose_samples: usize,
    /// Throws that then touched a surface a device uploaded.
    objects_landed_on_uploaded_geometry: u64,
    /// Planes and meshes the devices uploaded, and how many of those the room refused.
    surfaces_uploaded: u64,
    /// See `surfaces_uploaded`.
    uploads_refused: u64,
}

fn parse_link(name: &str) -> Result<LinkConfig, String> {
    LinkConfig::preset(name)
        .ok_or_else(|| format!("unknown link preset `{name}` (edge, good, average, poor, bursty)"))
}

/// What one bot did over all its matches.
#[derive(Default)]
struct BotTotals {
    reports: Vec<BotReport>,
    /// The matches it was placed in.
    matches: Vec<u64>,
}

impl BotTotals {
    fn snapshots(&self) -> u64 {
        self.reports.iter().map(|r| r.snapshots_received).sum()
    }
}

/// One bot: log in, then matchmake and play until stopped.
async fn bot_loop(
    n: u16,
    mode: String,
    cloud_url: String,
    client: Arc<Client>,
    relay: Option<SocketAddr>,
    probe: PoseProbe,
    stop: CancellationToken,
) -> anyhow::Result<BotTotals> {
    let api = CloudClient::new(&cloud_url)?;
    api.login(&CloudClient::new_device_id()).await?;
    let mut totals = BotTotals::default();
    let mut round = 0u64;
    while !stop.is_cancelled() {
        let found = tokio::select! {
            found = api.matchmake(&client, &mode, None, Duration::from_secs(120)) => found?,
            () = stop.cancelled() => break,
        };
        totals.matches.push(found.match_id);
        let mut assignment = found.assignment;
        if let Some(relay) = relay {
            assignment.edge_addr = relay;
        }
        let session = client
            .connect(&assignment)
            .await
            .with_context(|| format!("bot {n} joining match {}", found.match_id))?;
        let bot = Bot::new(
            session,
            &crate::modes::registry(),
            u64::from(n) << 32 | round,
        )?
        .with_probe(probe.clone());
        totals.reports.push(bot.run(stop.cancelled()).await);
        round += 1;
    }
    Ok(totals)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    crate::init_tracing("warn");
    let modes = crate::modes::registry();
    let template =
        crate::modes::template(&modes, &args.mode, &args.settings, &[args.mode.as_str()])?;
    let match_config = MatchConfig {
        duration_s: args.match_seconds,
        max_players: args.bots.max(2),
        tick_hz: args.tick_hz,
        // The mode's snapshot rate, never above the tick rate asked for.
        snapshot_hz: template.snapshot_hz.min(args.tick_hz),
        ..template
    };
    match_config.validate().context("match settings")?;
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("outpost-dev-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;

    // The cloud, in this process, on the embedded store.
    let edge_secret = format!("{:032x}", rand::random::<u128>());
    let credential = outpost_cloud::edges::edge_credential_for(&edge_secret, EDGE_ID);
    let mut mode =
        crate::modes::cloud_mode(match_config, usize::from(args.bots), args.match_seconds);
    // Few players: widen fast, so back-to-back matches start within seconds whatever the
    // ratings became.
    for (step, after_ms) in mode.rules.steps.iter_mut().zip([0, 1_000, 2_000]) {
        step.after_ms = after_ms;
    }
    let cloud_config = CloudConfig {
        edge_secret: Some(edge_secret),
        modes: vec![mode],
        ..CloudConfig::dev()
    };
    let cloud = Arc::new(Cloud::in_memory(
        cloud_config,
        Some(&data_dir.join("replays")),
    )?);
    let cloud_listener = tokio::net::TcpListener::bind(args.cloud_listen)
        .await
        .with_context(|| format!("binding the cloud API on {}", args.cloud_listen))?;
    let cloud_url = format!("http://{}", cloud_listener.local_addr()?);
    let cloud_stop = CancellationToken::new();
    let cloud_task = tokio::spawn(outpost_cloud::serve(
        cloud_listener,
        cloud.clone(),
        cloud_stop.clone().cancelled_owned(),
    ));

    // The edge, trusting the cloud's connect-token key from its JWKS.
    let http = http_client()?;
    let token_key = fetch_connect_key(&http, &cloud_url, Some(&data_dir.join("jwks.json"))).await?;
    let mut config = EdgeConfig::new(EDGE_ID, token_key);
    config.modes = modes;
    config.listen = args.listen;
    config.http_listen = Some(args.http);
    config.sim_threads = args.sim_threads;
    config.max_players = usize::from(args.bots).max(16);
    config.outbox_dir = Some(data_dir.join("outbox"));
    let edge = Edge::start(config).await?;
    let link = CloudLink::start(&edge, CloudLinkConfig::new(&cloud_url, credential, REGION))?;
    // Players reach the cloud through the edge's gateway, as they would at a PoP. Every
    // bot comes from 127.0.0.1, so the per-address limits are raised to fit them all.
    let mut gateway_config = GatewayConfig::new(&cloud_url, EDGE_ID, REGION);
    gateway_config.listen = args.gateway_listen;
    let everyone = Rate {
        per_second: 100 * u32::from(args.bots),
        burst: 100 * u32::from(args.bots),
    };
    gateway_config.default_limits.0 = everyone;
    for group in &mut gateway_config.groups {
        group.per_ip = everyone;
    }
    // So are its connection caps: bots, and load tests aimed at this gateway, all come
    // from loopback.
    gateway_config.connections.max_connections_per_address =
        gateway_config.connections.max_connections;
    let gateway = Gateway::start_with_stats(gateway_config, edge.metrics().gateway.clone()).await?;
    let api_url = format!("http://{}", gateway.addr());
    eprintln!(
        "outpost dev: cloud {cloud_url} · gateway {api_url} · edge {EDGE_ID} on quic {} · metrics http://{}/metrics · certificate sha256 {}",
        edge.quic_addr(),
        edge.http_addr().map(|a| a.to_string()).unwrap_or_default(),
        outpost_edge::hex(&edge.cert_fingerprint()),
    );
    // Players find edges through the cloud: wait for the first heartbeat.
    let registered = async {
        while cloud
            .store
            .live_edges(unix_secs())
            .await
            .map_or(true, |e| e.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), registered)
        .await
        .context("the edge did not register with the cloud")?;

    let client = Arc::new(
        Client::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?.with_modes(crate::modes::registry()),
    );
    // With --link the bots reach the edge through a conditioning relay.
    let relay = match args.link {
        Some(link) => Some(LinkRelay::symmetric(edge.quic_addr(), link, rand::random()).await?),
        None => None,
    };
    let stop = CancellationToken::new();
    let probe = PoseProbe::new();
    let bots: Vec<_> = (0..args.bots)
        .map(|n| {
            tokio::spawn(bot_loop(
                n,
                args.mode.clone(),
                api_url.clone(),
                client.clone(),
                relay.as_ref().map(LinkRelay::addr),
                probe.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let deadline = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let any_failed = async {
        while !bots.iter().any(|b| b.is_finished()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let status = status_line(&edge, args.json);
    tokio::select! {
        () = deadline => {}
        () = any_failed => {}
        signal = crate::stop_signal() => eprintln!("\n{signal}: stopping"),
        () = status => {}
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut totals = Vec::with_capacity(bots.len());
    for (n, bot) in bots.into_iter().enumerate() {
        totals.push(bot.await?.with_context(|| format!("bot {n}"))?);
    }
    let tick = edge.tick_stats();
    let metrics = edge.metrics();
    let (players_joined, missed_ticks) = (metrics.joins.get(), metrics.missed_ticks.get());
    let (datagrams_rejected, datagrams_out, bytes_out, datagrams_in, snapshots_dropped) = (
        metrics.datagrams_rejected.get(),
        metrics.datagrams_out.get(),
        metrics.bytes_out.get(),
        metrics.datagrams_in.get(),
        metrics.snapshots_dropped.get(),
    );
    // Ending the edge ends the running match: its result goes to the outbox too. Give
    // the link a moment to deliver everything.
    let outbox = edge.outbox().cloned();
    edge.shutdown().await;
    let drained = async {
        while outbox
            .as_ref()
            .is_some_and(|o| o.pending().is_ok_and(|p| !p.is_empty()))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
    link.stop().await;
    let outbox_pending = outbox
        .as_ref()
        .and_then(|o| o.pending().ok())
        .map_or(0, |p| p.len());
    // Read the way a game would: through the SDK and the gateway.
    let leaderboard_entries = CloudClient::new(&api_url)?
        .leaderboard(&format!("{}-best", args.mode), "all_time", 100, None)
        .await?
        .total;
    // The mode's own stats, summed over every player of every result applied.
    let mut match_ids: Vec<u64> = totals
        .iter()
        .flat_map(|t| t.matches.iter().copied())
        .collect();
    match_ids.sort_unstable();
    match_ids.dedup();
    let mut stats = std::collections::BTreeMap::<String, u64>::new();
    for id in match_ids {
        let Some(result) = cloud.store.result(id).await? else {
            continue;
        };
        let result: serde_json::Value = serde_json::from_str(&result)?;
        for line in result["players"].as_array().into_iter().flatten() {
            for (name, n) in line["stats"].as_object().into_iter().flatten() {
                *stats.entry(name.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    let gateway_requests = gateway.stats().answered();
    gateway.stop().await;
    cloud_stop.cancel();
    let _ = cloud_task.await;

    let reports: Vec<&BotReport> = totals.iter().flat_map(|t| &t.reports).collect();
    let errors: Vec<f32> = reports
        .iter()
        .flat_map(|r| r.netcode.prediction_errors.iter().copied())
        .collect();
    let bots_connected_throughout = totals
        .iter()
        .filter(|t| !t.reports.is_empty() && t.reports.iter().all(|r| r.stayed_connected))
        .count();
    let snapshot_kbps_per_bot =
        bytes_out as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64() / f64::from(args.bots);
    let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
    let poses: Vec<f32> = probe.latencies_ms().iter().map(|&ms| ms as f32).collect();
    let sent: u64 = reports.iter().map(|r| r.requests_sent).sum();
    let refused: u64 = reports.iter().map(|r| r.requests_refused).sum();
    let ar = (args.mode == "ar").then(|| ArSummary {
        peers: bots_connected_throughout,
        objects_thrown: stat("throws"),
        ownership_conflicts: stat("grabs_lost"),
        pose_violations: stat("pose_violations"),
        kbps_down_per_peer: snapshot_kbps_per_bot,
        pose_latency_ms_p50: percentile(&poses, 0.5),
        pose_latency_ms_p99: percentile(&poses, 0.99),
        pose_samples: poses.len(),
        objects_landed_on_uploaded_geometry: stat("landings"),
        surfaces_uploaded: sent - refused.min(sent),
        uploads_refused: refused,
    });
    let summary = Summary {
        bots: args.bots,
        duration_s: elapsed.as_secs_f64(),
        players_joined,
        matches_placed: cloud.stats.matches_placed.get(),
        ticks: tick.ticks,
        tick_ms_p50: tick.p50_ms,
        tick_ms_p99: tick.p99_ms,
        tick_ms_max: tick.max_ms,
        missed_ticks,
        min_snapshots_received_per_bot: totals.iter().map(BotTotals::snapshots).min().unwrap_or(0),
        max_snapshots_received_per_bot: totals.iter().map(BotTotals::snapshots).max().unwrap_or(0),
        bots_connected_throughout,
        hits: reports.iter().map(|r| r.hits).sum(),
        datagrams_rejected,
        datagrams_out,
        datagram_bytes_out: bytes_out,
        datagrams_in,
        snapshots_dropped,
        match_ended: reports.iter().any(|r| r.match_ended),
        prediction_error_m_p50: percentile(&errors, 0.5),
        prediction_error_m_p99: percentile(&errors, 0.99),
        max_extrapolated_ms: reports
            .iter()
            .map(|r| r.netcode.max_extrapolated_ms)
            .fold(0.0, f64::max),
        acks_in_order: reports.iter().all(|r| r.acks_in_order),
        snapshot_kbps_per_bot,
        results_applied: cloud.stats.results_applied.get(),
        leaderboard_entries,
        replays_stored: cloud.stats.replays_stored.get(),
        outbox_pending,
        gateway_requests,
        stats,
        ar,
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    if args.json {
        #[expect(clippy::print_stdout, reason = "the summary is the command's output")]
        {
            println!("{}", serde_json::to_string(&summary)?);
        }
    } else {
        eprintln!(
            "\n{} bots · {} matches · {} ticks · tick p50 {:.3} ms p99 {:.3} ms · {} hits · {} results applied · {} on the leaderboard · {} replays stored",
            summary.bots,
            summary.matches_placed,
            summary.ticks,
            summary.tick_ms_p50,
            summary.tick_ms_p99,
            summary.hits,
            summary.results_applied,
            summary.leaderboard_entries,
            summary.replays_stored,
        );
    }
    Ok(())
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
