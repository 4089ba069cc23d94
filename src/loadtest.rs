//! `outpost loadtest`: simulated players against an edge (or the full stack), with live
//! progress and a report. See `outpost_loadtest` for what is measured.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use outpost_loadtest::{LoadConfig, Target};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::{MatchConfig, TokenSigner};

/// Options of `outpost loadtest`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["spawn_edge", "edge", "api", "print_public_key"])))]
pub struct LoadtestArgs {
    /// Players to simulate (1 to 10,000).
    #[arg(long, required_unless_present = "print_public_key")]
    players: Option<u32>,
    /// How long to hold every player once all have joined (e.g. `30s`; at most 1h).
    #[arg(long, value_parser = humantime::parse_duration, required_unless_present = "print_public_key")]
    duration: Option<Duration>,
    /// Players per match.
    #[arg(long, default_value_t = 16)]
    match_size: u16,
    /// New players per second while ramping up.
    #[arg(long, default_value_t = 100)]
    ramp: u32,
    /// Simulation rate of the matches (with --spawn-edge or --edge).
    #[arg(long, default_value_t = 60)]
    tick_hz: u16,
    /// Snapshots per second to each player (must divide the tick rate); default: the
    /// mode's rate (30; the AR room's 60), at most the tick rate.
    #[arg(long)]
    snapshot_hz: Option<u16>,
    /// Inputs per second from each player (at most the tick rate); default: the
    /// snapshot rate.
    #[arg(long)]
    input_hz: Option<u16>,
    #[command(flatten)]
    settings: crate::modes::ModeArgs,
    /// Link conditions between players and the edge: `edge`, `good`, `average`, `poor`, `bursty`.
    #[arg(long, value_parser = parse_link)]
    link: Option<LinkConfig>,
    /// Players predict their own character and interpolate the others, as a game would
    /// (costs load-generator CPU).
    #[arg(long)]
    prediction: bool,
    /// Start an edge as a child process on loopback, with a fresh dev key, and test it.
    #[arg(long)]
    spawn_edge: bool,
    /// Simulation threads of the spawned edge.
    #[arg(long, default_value_t = 2, requires = "spawn_edge")]
    edge_sim_threads: usize,
    /// The load generator's network threads (its tokio runtime). Default: one per core,
    /// or with `--spawn-edge` the cores the edge's simulation threads leave (at least one).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Nice value added to the load generator's network threads, 0 to 19 (Linux): it
    /// stands for players on other machines, so where it shares cores with the edge it
    /// measures, the edge's simulation threads go first (a spawned edge keeps the
    /// priority the load generator started with). Docs/PERFORMANCE.md, "The load
    /// generator below the edge".
    #[arg(long, env = "OUTPOST_LOADTEST_NICE", default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=19))]
    nice: u8,
    /// QUIC address of a running edge to test; it must trust the public key of
    /// `--token-seed-file` (see `--print-public-key`).
    #[arg(long, requires_all = ["edge_fingerprint", "token_seed_file"])]
    edge: Option<SocketAddr>,
    /// The edge's certificate SHA-256 fingerprint, 64 hex digits (it logs it at start).
    #[arg(long)]
    edge_fingerprint: Option<String>,
    /// The edge's id, as connect tokens must name it.
    #[arg(long, default_value = "loadtest-edge")]
    edge_id: String,
    /// File holding the 32-byte Ed25519 seed of the dev token key, as 64 hex digits.
    #[arg(long)]
    token_seed_file: Option<PathBuf>,
    /// Print the public key of `--token-seed-file` (for the edge's
    /// `--token-public-key-file`) and exit.
    #[arg(long, requires = "token_seed_file")]
    print_public_key: bool,
    /// The edge's Prometheus metrics URL (e.g. `http://127.0.0.1:7780/metrics`), scraped
    /// for tick times.
    #[arg(long)]
    metrics: Option<String>,
    /// Full stack: base URL of the cloud API or an edge's gateway; players log in and
    /// matchmake there.
    #[arg(long)]
    api: Option<String>,
    /// With --api through an edge's gateway: file holding the gateway's load-test key
    /// (its `--gateway-load-test-key-file`), sent as `X-Outpost-Load-Test` so the
    /// players, all from this one address, are not held to per-address limits.
    #[arg(long, env = "OUTPOST_LOAD_TEST_KEY_FILE", requires = "api")]
    load_test_key_file: Option<PathBuf>,
    /// Game mode: the one matchmade in (with --api), or the one the edge's matches run
    /// (with --spawn-edge or --edge).
    #[arg(long, default_value = "arena")]
    mode: String,
    /// A non-loopback host the run may target. Without it, only loopback is tested.
    #[arg(long)]
    host: Option<IpAddr>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Write report.json and index.html (with plots) into this folder.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn parse_link(name: &str) -> Result<LinkConfig, String> {
    LinkConfig::preset(name)
        .ok_or_else(|| format!("unknown link preset `{name}` (edge, good, average, poor, bursty)"))
}

/// A child process, killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The spawned edge; killed when dropped.
struct ChildEdge {
    _process: KillOnDrop,
    addr: SocketAddr,
    metrics_url: String,
    fingerprint: [u8; 32],
}

impl LoadtestArgs {
    /// `--nice`.
    pub(crate) fn nice(&self) -> u8 {
        self.nice
    }

    /// Worker threads for the runtime the load generator runs on (see `--threads`;
    /// `docs/PERFORMANCE.md`, "The load generator's threads").
    pub(crate) fn runtime_threads(&self) -> usize {
        self.threads.map_or_else(
            || {
                let cores =
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
                default_threads(cores, self.spawn_edge.then_some(self.edge_sim_threads))
            },
            usize::from,
        )
    }
}

/// The load generator's runtime threads when not set: one per core, less the simulation
/// threads of an edge spawned on the same machine, and at least one. On two cores beside
/// a spawned edge's two simulation threads that is one: measured at 1,000 players it
/// spends 5–10 % less CPU per player-second than two, and joins as reliably
/// (`docs/PERFORMANCE.md`, "The load generator's threads").
fn default_threads(cores: usize, spawned_edge_sim_threads: Option<usize>) -> usize {
    cores
        .saturating_sub(spawned_edge_sim_threads.unwrap_or(0))
        .max(1)
}

/// Starts `outpost edge` on loopback trusting `public_key`; waits for its address line.
fn spawn_edge(
    args: &LoadtestArgs,
    public_key: [u8; 32],
    players: u32,
    matches: u32,
    dir: &std::path::Path,
) -> anyhow::Result<ChildEdge> {
    let key_file = dir.join("token-public-key");
    std::fs::write(&key_file, outpost_edge::hex(&public_key))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["edge", "--edge-id", &args.edge_id])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--token-public-key-file")
        .arg(&key_file)
        .args(["--max-players", &players.to_string()])
        .args(["--max-matches", &matches.to_string()])
        .args(["--sim-threads", &args.edge_sim_threads.to_string()])
        // Every simulated player comes from 127.0.0.1: the per-address cap on pending
        // handshakes would otherwise refuse a fast ramp.
        .args(["--max-pending-handshakes-per-address", "1024"])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the edge")?;
    let stderr = child.stderr.take().context("the edge's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the edge's log: its address line comes back here, everything goes on to ours.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("edge listening: ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.to_owned());
                }
            } else {
                eprintln!("edge: {line}");
            }
        }
    });
    let process = KillOnDrop(child);
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| anyhow::anyhow!("the spawned edge did not start (see its log above)"))?;
    // "quic ADDR · admin http://ADDR · certificate sha256 HEX"
    let part = |prefix: &str| {
        line.split(" · ")
            .find_map(|part| part.strip_prefix(prefix))
            .with_context(|| format!("no `{prefix}` in the spawned edge's line: {line}"))
    };
    Ok(ChildEdge {
        addr: part("quic ")?.parse().context("the edge's QUIC address")?,
        metrics_url: format!("{}/metrics", part("admin ")?),
        fingerprint: crate::edge::parse_hex_key(part("certificate sha256 ")?)
            .context("the edge's fingerprint")?,
        _process: process,
    })
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    crate::init_tracing("warn");
    let seed = match &args.token_seed_file {
        Some(file) => Some(crate::edge::read_hex_key(file)?),
        None => None,
    };
    if args.print_public_key {
        let seed = seed.context("--token-seed-file is needed")?;
        #[expect(clippy::print_stdout, reason = "the key is the command's output")]
        {
            println!(
                "{}",
                outpost_edge::hex(&TokenSigner::from_seed(&seed).public_key())
            );
        }
        return Ok(());
    }
    let (Some(players), Some(duration)) = (args.players, args.duration) else {
        anyhow::bail!("--players and --duration are needed: every run is bounded");
    };
    let template = crate::modes::template(
        &crate::modes::registry(),
        &args.mode,
        &args.settings,
        &[args.mode.as_str()],
    )?;
    let snapshot_hz = args
        .snapshot_hz
        .unwrap_or(template.snapshot_hz.min(args.tick_hz));
    let input_hz = args.input_hz.unwrap_or(snapshot_hz);
    let match_config = MatchConfig {
        tick_hz: args.tick_hz,
        snapshot_hz,
        ..template
    };
    let placeholder = Target::Stack {
        api_url: String::new(),
        mode: String::new(),
        load_test_key: None,
    };
    let mut config = LoadConfig {
        target: placeholder,
        players,
        match_size: args.match_size,
        duration,
        ramp_per_s: args.ramp,
        match_config,
        input_hz,
        link: args.link,
        prediction: args.prediction,
        modes: crate::modes::registry(),
        metrics_url: args.metrics.clone(),
        allowed_host: args.host,
        progress: true,
    };
    let temp = std::env::temp_dir().join(format!("outpost-loadtest-{}", std::process::id()));
    let mut spawned = None;
    config.target = if args.spawn_edge {
        let signer = Arc::new(TokenSigner::from_seed(&rand::random()));
        // Check the run before starting anything.
        config.target = Target::Edge {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            fingerprint: [0; 32],
            edge_id: args.edge_id.clone(),
            signer: signer.clone(),
        };
        config.validate()?;
        std::fs::create_dir_all(&temp)?;
        let edge = spawn_edge(&args, signer.public_key(), players, config.matches(), &temp);
        let _ = std::fs::remove_dir_all(&temp);
        let edge = edge?;
        eprintln!(
            "outpost loadtest: spawned edge on quic {} · metrics {}",
            edge.addr, edge.metrics_url
        );
        config.metrics_url = Some(edge.metrics_url.clone());
        let target = Target::Edge {
            addr: edge.addr,
            fingerprint: edge.fingerprint,
            edge_id: args.edge_id.clone(),
            signer,
        };
        spawned = Some(edge);
        target
    } else if let Some(addr) = args.edge {
        let fingerprint = args
            .edge_fingerprint
            .as_deref()
            .context("--edge-fingerprint is needed with --edge")?;
        Target::Edge {
            addr,
            fingerprint: crate::edge::parse_hex_key(fingerprint)
                .context("--edge-fingerprint must be 64 hex digits")?,
            edge_id: args.edge_id.clone(),
            signer: Arc::new(TokenSigner::from_seed(
                &seed.context("--token-seed-file is needed with --edge")?,
            )),
        }
    } else if let Some(api) = &args.api {
        Target::Stack {
            api_url: api.trim_end_matches('/').to_owned(),
            mode: args.mode.clone(),
            load_test_key: args
                .load_test_key_file
                .as_deref()
                .map(|path| crate::read_secret(path, "the load-test key"))
                .transpose()?,
        }
    } else {
        anyhow::bail!("say where to send players: --spawn-edge, --edge or --api");
    };
    eprintln!(
        "outpost loadtest: {} players in matches of {} · ramp {}/s · hold {} · {} Hz ticks, {} Hz snapshots, {} Hz inputs",
        players,
        args.match_size,
        args.ramp,
        humantime::format_duration(duration),
        args.tick_hz,
        snapshot_hz,
        input_hz,
    );
    // Asked to stop (Ctrl-C, SIGTERM), the run ends at once and the spawned edge with it.
    let report = tokio::select! {
        report = outpost_loadtest::run(config) => report?,
        signal = crate::stop_signal() => {
            drop(spawned);
            anyhow::bail!("{signal}: load test stopped before its end; no report");
        }
    };
    drop(spawned);
    eprintln!("{}", report.summary());
    if let Some(dir) = &args.report {
        let page = report.write(dir)?;
        eprintln!("report: {}", page.display());
    }
    if args.json {
        #[expect(clippy::print_stdout, reason = "the report is the command's output")]
        {
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn load_generator_threads_leave_a_spawned_edge_its_simulation_cores() {
        assert_eq!(super::default_threads(2, Some(2)), 1);
        assert_eq!(super::default_threads(8, Some(2)), 6);
        assert_eq!(super::default_threads(1, Some(4)), 1);
        assert_eq!(super::default_threads(2, None), 2);
        assert_eq!(super::default_threads(16, None), 16);
    }
}
