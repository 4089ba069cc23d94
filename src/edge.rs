//! `outpost edge`: run an edge server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use outpost_edge::cloud_link::{CloudLink, CloudLinkConfig, fetch_connect_key, http_client};
use outpost_edge::gateway::{Gateway, GatewayConfig};
use outpost_edge::{Edge, EdgeConfig, TlsSource};

/// Edge server options. Each also reads an `OUTPOST_*` environment variable.
#[derive(Args, Debug)]
pub struct EdgeArgs {
    /// This edge's id, as connect tokens name it.
    #[arg(long, env = "OUTPOST_EDGE_ID")]
    edge_id: String,
    /// UDP address for QUIC.
    #[arg(long, env = "OUTPOST_LISTEN", default_value = "0.0.0.0:7777")]
    listen: SocketAddr,
    /// TCP address for /metrics, /healthz and /readyz. Loopback by default; bound
    /// elsewhere it needs `--admin-token-file`.
    #[arg(long, env = "OUTPOST_HTTP", default_value = "127.0.0.1:7780")]
    http: SocketAddr,
    /// File holding the bearer token /metrics and /readyz require (at least 16
    /// characters); required when `--http` is not a loopback address.
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the cloud's Ed25519 connect-token public key, as 64 hex digits;
    /// without it the key is taken from the cloud's JWKS (`--cloud-url`).
    #[arg(
        long,
        env = "OUTPOST_TOKEN_PUBLIC_KEY_FILE",
        required_unless_present = "cloud_url"
    )]
    token_public_key_file: Option<PathBuf>,
    /// Base URL of the cloud API: the edge registers and heartbeats there, takes the
    /// connect-token key from its JWKS, and delivers results and replays.
    #[arg(long, env = "OUTPOST_CLOUD_URL", requires_all = ["edge_credential_file", "outbox_dir"])]
    cloud_url: Option<String>,
    /// File holding the edge credential the cloud expects.
    #[arg(long, env = "OUTPOST_EDGE_CREDENTIAL_FILE")]
    edge_credential_file: Option<PathBuf>,
    /// This edge's region, as players' pings name it.
    #[arg(long, env = "OUTPOST_REGION", default_value = "local")]
    region: String,
    /// Folder of the outbox (results and replays waiting for the cloud) and the cached
    /// JWKS. Keep it across restarts: what is in it is delivered then.
    #[arg(long, env = "OUTPOST_OUTBOX_DIR")]
    outbox_dir: Option<PathBuf>,
    /// TCP address of the HTTP gateway in front of the cloud API (caching, auth, rate
    /// limits); needs `--cloud-url`. Without it, no gateway runs.
    #[arg(long, env = "OUTPOST_GATEWAY_LISTEN", requires = "cloud_url")]
    gateway_listen: Option<SocketAddr>,
    /// Address players reach the QUIC endpoint at, if not the bound one (NAT, 0.0.0.0).
    #[arg(long, env = "OUTPOST_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// PEM certificate chain; without it a self-signed certificate is generated.
    #[arg(long, env = "OUTPOST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "OUTPOST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Most matches hosted at once.
    #[arg(long, env = "OUTPOST_MAX_MATCHES", default_value_t = 64)]
    max_matches: usize,
    /// Most players connected at once.
    #[arg(long, env = "OUTPOST_MAX_PLAYERS", default_value_t = 1024)]
    max_players: usize,
    /// Simulation worker threads.
    #[arg(long, env = "OUTPOST_SIM_THREADS", default_value_t = 1)]
    sim_threads: usize,
    /// Network threads: the QUIC endpoint and its connections, the admin server, the
    /// gateway (the async runtime's workers). Default: the cores the simulation threads
    /// leave, at least one.
    #[arg(long, env = "OUTPOST_NET_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    net_threads: Option<u16>,
    /// Nice value added to the network threads, 0 to 19 (Linux): above 0 the kernel runs
    /// the simulation threads first when the two compete for a core, so ticks keep their
    /// time and datagrams wait in the socket buffers a moment instead
    /// (docs/PERFORMANCE.md, "The network threads below the simulation").
    #[arg(long, env = "OUTPOST_NET_NICE", default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=19))]
    net_nice: u8,
    /// Snapshot budget per player, kbit/s.
    #[arg(long, env = "OUTPOST_CLIENT_BANDWIDTH_KBPS", default_value_t = 96)]
    client_bandwidth_kbps: u32,
    /// Area-of-interest radius, metres.
    #[arg(long, env = "OUTPOST_INTEREST_RADIUS", default_value_t = 48.0)]
    interest_radius: f32,
    /// How long a new connection has to finish its QUIC handshake and send its Hello.
    #[arg(long, env = "OUTPOST_HELLO_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    hello_timeout: Duration,
    /// Most connections pending at once (handshaking, or without a valid Hello yet).
    #[arg(long, env = "OUTPOST_MAX_PENDING_HANDSHAKES", default_value_t = 1024)]
    max_pending_handshakes: usize,
    /// Most pending connections from one address (IPv6: one /64).
    #[arg(
        long,
        env = "OUTPOST_MAX_PENDING_HANDSHAKES_PER_ADDRESS",
        default_value_t = 16
    )]
    max_pending_handshakes_per_address: usize,
    /// Pending connections above which new addresses must answer a QUIC Retry first
    /// (0: always).
    #[arg(long, env = "OUTPOST_RETRY_ABOVE_PENDING", default_value_t = 64)]
    retry_above_pending: usize,
    /// Time an admin-server client has to send a request's headers (also ends idle
    /// keep-alive connections).
    #[arg(long, env = "OUTPOST_ADMIN_HEADER_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    admin_header_timeout: Duration,
    /// Most admin-server connections open at once.
    #[arg(long, env = "OUTPOST_ADMIN_MAX_CONNECTIONS", default_value_t = 64)]
    admin_max_connections: usize,
    /// Most admin-server connections from one address.
    #[arg(
        long,
        env = "OUTPOST_ADMIN_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 16
    )]
    admin_max_connections_per_address: usize,
    /// Time a gateway client has to send a request's headers (also ends idle keep-alive
    /// connections).
    #[arg(long, env = "OUTPOST_GATEWAY_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    gateway_header_timeout: Duration,
    /// Most gateway connections open at once.
    #[arg(long, env = "OUTPOST_GATEWAY_MAX_CONNECTIONS", default_value_t = 4096)]
    gateway_max_connections: usize,
    /// Most gateway connections from one address (IPv6: one /64).
    #[arg(
        long,
        env = "OUTPOST_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64
    )]
    gateway_max_connections_per_address: usize,
    /// File holding the gateway's load-test key (at least 16 characters): requests
    /// carrying it in `X-Outpost-Load-Test` skip the per-address rate limits, so a load
    /// generator's players, all from one address, are not refused at login (per-player
    /// limits still hold). Without it there is no allowance and the header is refused.
    #[arg(long, env = "OUTPOST_GATEWAY_LOAD_TEST_KEY_FILE")]
    gateway_load_test_key_file: Option<PathBuf>,
    /// Most requests the gateway has at the cloud at once.
    #[arg(
        long,
        env = "OUTPOST_GATEWAY_MAX_ORIGIN_REQUESTS",
        default_value_t = 256
    )]
    gateway_max_origin_requests: usize,
    /// How far this edge's clock and the cloud's may disagree when tokens are checked
    /// (expiry, issue time, issued before this edge started).
    #[arg(long, env = "OUTPOST_TOKEN_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    token_leeway: Duration,
    /// Run under Agones: advertise the GameServer's address and its `quic` port (unless
    /// --advertise says otherwise), mark it Ready once accepting, ping Health while the
    /// sim workers turn, keep the `players` and `matches` Counters, label it with the
    /// region and version, and call Shutdown after the drain. Talks to the SDK sidecar on
    /// 127.0.0.1, port `AGONES_SDK_GRPC_PORT` (default 9357).
    #[arg(long, env = "OUTPOST_AGONES")]
    agones: bool,
    /// How long SIGTERM waits for running matches to finish before ending them.
    #[arg(long, env = "OUTPOST_DRAIN_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
}

/// Reads a 32-byte key written as 64 hex digits.
pub(crate) fn read_hex_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_hex_key(text.trim())
        .with_context(|| format!("{} must hold 64 hex digits", path.display()))
}

pub(crate) fn parse_hex_key(text: &str) -> anyhow::Result<[u8; 32]> {
    anyhow::ensure!(
        text.len() == 64 && text.is_ascii(),
        "expected 64 hex digits"
    );
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    crate::init_tracing("info");
    let token_key = match (&args.token_public_key_file, &args.cloud_url) {
        (Some(file), _) => read_hex_key(file)?,
        (None, Some(url)) => {
            let cache = args.outbox_dir.as_ref().map(|d| d.join("jwks.json"));
            if let Some(dir) = &args.outbox_dir {
                std::fs::create_dir_all(dir)?;
            }
            fetch_connect_key(&http_client()?, url, cache.as_deref()).await?
        }
        (None, None) => anyhow::bail!("--token-public-key-file or --cloud-url is needed"),
    };
    let mut config = EdgeConfig::new(args.edge_id, token_key);
    config.modes = crate::modes::registry();
    config.outbox_dir.clone_from(&args.outbox_dir);
    config.listen = args.listen;
    config.http_listen = Some(args.http);
    if let Some(path) = &args.admin_token_file {
        let token =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.admin_token = Some(token.trim().to_owned());
    }
    config.max_matches = args.max_matches;
    config.max_players = args.max_players;
    config.sim_threads = args.sim_threads;
    config.client_bandwidth_bps = args.client_bandwidth_kbps.saturating_mul(1000);
    config.interest_radius = args.interest_radius;
    config.hello_timeout = args.hello_timeout;
    config.token_leeway = args.token_leeway;
    config.max_pending_handshakes = args.max_pending_handshakes;
    config.max_pending_handshakes_per_address = args.max_pending_handshakes_per_address;
    config.retry_above_pending = args.retry_above_pending;
    config.admin_http.header_timeout = args.admin_header_timeout;
    config.admin_http.max_connections = args.admin_max_connections;
    config.admin_http.max_connections_per_address = args.admin_max_connections_per_address;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = TlsSource::Files { cert, key };
    }
    let edge = Edge::start(config).await?;
    let mut agones = if args.agones {
        Some(outpost_edge::agones::Agones::connect(None).await?)
    } else {
        None
    };
    let advertise = match (args.advertise, agones.as_mut()) {
        (Some(addr), _) => Some(addr),
        (None, Some(agones)) => {
            let addr = agones.public_addr("quic").await?;
            tracing::info!(%addr, "agones: advertising the GameServer's address");
            Some(addr)
        }
        (None, None) => None,
    };
    let link = match &args.cloud_url {
        Some(url) => {
            let credential_file = args
                .edge_credential_file
                .as_ref()
                .context("--edge-credential-file is needed with --cloud-url")?;
            let credential = std::fs::read_to_string(credential_file)
                .with_context(|| format!("reading {}", credential_file.display()))?;
            let mut link = CloudLinkConfig::new(url, credential.trim(), &args.region);
            link.advertise_addr = advertise;
            link.jwks_cache = args.outbox_dir.as_ref().map(|d| d.join("jwks.json"));
            Some(CloudLink::start(&edge, link)?)
        }
        None => None,
    };
    let gateway = match (&args.gateway_listen, &args.cloud_url) {
        (Some(listen), Some(url)) => {
            let mut config = GatewayConfig::new(url, edge.config().edge_id.clone(), &args.region);
            config.listen = *listen;
            config.connections.header_timeout = args.gateway_header_timeout;
            config.connections.max_connections = args.gateway_max_connections;
            config.connections.max_connections_per_address =
                args.gateway_max_connections_per_address;
            config.max_origin_requests = args.gateway_max_origin_requests;
            if let Some(path) = &args.gateway_load_test_key_file {
                config.load_test_key = Some(crate::read_secret(path, "the load-test key")?);
                tracing::warn!(
                    "gateway: load-test allowance on (requests with the key skip per-address limits)"
                );
            }
            let gateway = Gateway::start_with_stats(config, edge.metrics().gateway.clone()).await?;
            eprintln!("gateway: http://{}", gateway.addr());
            Some(gateway)
        }
        _ => None,
    };
    eprintln!(
        "edge listening: quic {} · admin http://{} · certificate sha256 {}",
        edge.quic_addr(),
        edge.http_addr().map(|a| a.to_string()).unwrap_or_default(),
        outpost_edge::hex(&edge.cert_fingerprint())
    );
    let lifecycle = match agones {
        Some(agones) => Some(
            agones
                .start(
                    edge.status(),
                    &[
                        ("region", &args.region),
                        ("version", env!("CARGO_PKG_VERSION")),
                    ],
                )
                .await?,
        ),
        None => None,
    };
    let signal = crate::stop_signal().await;
    if signal == "SIGTERM" {
        tracing::info!(timeout = ?args.drain_timeout, "draining: no new matches, running ones finish");
        edge.drain_and_wait(args.drain_timeout).await;
    }
    let outbox = edge.outbox().cloned();
    if let Some(gateway) = gateway {
        gateway.stop().await;
    }
    edge.shutdown().await;
    if let Some(link) = link {
        // Deliver what the shutdown wrote (bounded); the rest waits in the outbox.
        let drained = async {
            while outbox
                .as_ref()
                .is_some_and(|o| o.pending().is_ok_and(|p| !p.is_empty()))
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
        link.stop().await;
    }
    if let Some(lifecycle) = lifecycle {
        lifecycle.shutdown().await?;
    }
    Ok(())
}

impl EdgeArgs {
    /// The runtime's worker threads: `--net-threads`, or [`default_net_threads`] for
    /// this machine.
    pub(crate) fn net_threads(&self) -> usize {
        self.net_threads.map_or_else(
            || {
                let cores =
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
                default_net_threads(cores, self.sim_threads)
            },
            usize::from,
        )
    }

    /// `--net-nice`.
    pub(crate) fn net_nice(&self) -> u8 {
        self.net_nice
    }
}

/// Lowers the calling thread's priority by `nice` (adds it to the thread's nice value;
/// Linux keeps one per thread). Any process may lower its own threads' priority; the
/// threads it goes on to create inherit it, so the simulation threads are spawned from
/// a thread this is never called on (the one running `main`).
#[cfg(target_os = "linux")]
pub(crate) fn lower_thread_priority(nice: u8) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    let me = Some(rustix::thread::gettid());
    let now = rustix::process::getpriority_process(me)?;
    rustix::process::setpriority_process(me, now.saturating_add(i32::from(nice)).min(19))?;
    Ok(())
}

/// Elsewhere threads keep their priority.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_thread_priority(_nice: u8) -> std::io::Result<()> {
    Ok(())
}

/// The cores `sim_threads` leave, at least one. A second network thread on a machine the
/// simulation already fills costs more in cross-thread wake-ups and task steals than it
/// adds (docs/PERFORMANCE.md, "The edge's network threads").
fn default_net_threads(cores: usize, sim_threads: usize) -> usize {
    cores.saturating_sub(sim_threads).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn network_threads_take_the_cores_the_simulation_leaves_and_at_least_one() {
        assert_eq!(super::default_net_threads(2, 1), 1);
        assert_eq!(super::default_net_threads(2, 2), 1);
        assert_eq!(super::default_net_threads(1, 4), 1);
        assert_eq!(super::default_net_threads(8, 4), 4);
        assert_eq!(super::default_net_threads(16, 2), 14);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lowered_thread_priority_is_that_threads_alone() {
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let here = nice().expect("own priority");
        let there = std::thread::spawn(move || {
            let before = nice().expect("own priority");
            super::lower_thread_priority(3).expect("lowered");
            (before, nice().expect("own priority"))
        })
        .join()
        .expect("thread");
        assert_eq!(there, (here, (here + 3).min(19)));
        assert_eq!(nice().expect("own priority"), here);
    }

    #[test]
    fn hex_keys_parse_and_bad_ones_are_refused() {
        let key = super::parse_hex_key(&"0a".repeat(32)).expect("valid");
        assert_eq!(key, [10; 32]);
        assert!(super::parse_hex_key("0a").is_err());
        assert!(super::parse_hex_key(&"zz".repeat(32)).is_err());
    }
}
