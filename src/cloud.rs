//! `outpost cloud`: run the cloud services' HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use outpost_cloud::store::Durability;
use outpost_cloud::{Cloud, CloudConfig, KeyRing, MemoryStore, RedisStore, Store};

/// Cloud options. Each also reads an `OUTPOST_*` environment variable.
#[derive(Args, Debug)]
pub struct CloudArgs {
    /// TCP address of the HTTP API.
    #[arg(long, env = "OUTPOST_CLOUD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// File holding the access-token signing key's 32-byte Ed25519 seed, as 64 hex digits;
    /// without it a key is generated for this run (tokens die with the process).
    #[arg(long, env = "OUTPOST_SIGNING_KEY_FILE")]
    signing_key_file: Option<PathBuf>,
    /// Redis URL for everything the cloud keeps (players, tickets, ratings, results,
    /// leaderboards, indexes): one server (`redis://host:port/db`) or a Redis Cluster
    /// (`redis+cluster://host:port,host:port…`: any of its nodes, the client learns the
    /// rest); without it all of that lives in memory and ends with the process.
    #[arg(long, env = "OUTPOST_REDIS_URL")]
    redis_url: Option<String>,
    /// Replicas that must have a result (or replay index) before it is acknowledged to
    /// the edge, which then deletes its copy (Redis `WAIT`).
    #[arg(long, env = "OUTPOST_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    redis_wait_replicas: u32,
    /// Also wait for the primary's AOF fsync before acknowledging (`WAITAOF`, Redis 7.2
    /// or newer).
    #[arg(long, env = "OUTPOST_REDIS_WAIT_AOF")]
    redis_wait_aof: bool,
    /// Refuse to start unless acknowledged results survive a Redis crash: AOF on with
    /// `appendfsync always`, or `--redis-wait-aof`, or `--redis-wait-replicas` ≥ 1. Set it
    /// to false only for a store you can lose.
    #[arg(long, env = "OUTPOST_REDIS_REQUIRE_DURABLE", default_value_t = true, action = clap::ArgAction::Set)]
    redis_require_durable: bool,
    /// File holding the fleet's edge secret (at least 16 characters): each edge proves its
    /// id with its own credential derived from it (`outpost edge-credential`); without it
    /// no edge can register.
    #[arg(long, env = "OUTPOST_EDGE_SECRET_FILE")]
    edge_secret_file: Option<PathBuf>,
    /// Folder replays are stored in (through `object_store`'s local file system), unless
    /// `--replay-bucket` is given.
    #[arg(
        long,
        env = "OUTPOST_REPLAY_DIR",
        default_value = "outpost-data/replays"
    )]
    replay_dir: PathBuf,
    /// Keep replays in this S3 bucket instead (AWS, or any S3-compatible server): its
    /// endpoint, region and credentials from the usual `AWS_*` environment
    /// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP`).
    #[arg(long, env = "OUTPOST_REPLAY_BUCKET")]
    replay_bucket: Option<String>,
    /// Key prefix for replays inside `--replay-bucket`.
    #[arg(
        long,
        env = "OUTPOST_REPLAY_PREFIX",
        default_value = "",
        requires = "replay_bucket"
    )]
    replay_prefix: String,
    /// The current leaderboard season.
    #[arg(long, env = "OUTPOST_SEASON", default_value = "1")]
    season: String,
    /// Players per arena match (a free-for-all).
    #[arg(long, env = "OUTPOST_ARENA_PLAYERS", default_value_t = 8)]
    arena_players: usize,
    /// Players per capture-the-flag match (two teams of half each).
    #[arg(long, env = "OUTPOST_CTF_PLAYERS", default_value_t = 8)]
    ctf_players: usize,
    /// The game modes the cloud matchmakes, comma-separated, each one the binary
    /// registers (`arena`, `ctf`).
    #[arg(
        long,
        env = "OUTPOST_MODES",
        value_delimiter = ',',
        default_value = "arena,ctf"
    )]
    modes: Vec<String>,
    /// A setting of one of those modes' matches, `MODE.NAME=VALUE` (`NAME=VALUE` when
    /// one mode runs), repeatable: e.g. `ctf.captures_to_win=5`, `arena.props=80`.
    #[arg(long = "set", value_name = "[MODE.]NAME=VALUE")]
    set: Vec<crate::modes::Setting>,
    /// Length of an arena match, seconds.
    #[arg(long, env = "OUTPOST_MATCH_SECONDS", default_value_t = 300)]
    match_seconds: u32,
    /// `iss` of access tokens.
    #[arg(long, env = "OUTPOST_ISSUER", default_value = "outpost-cloud")]
    issuer: String,
    /// `aud` of access tokens.
    #[arg(long, env = "OUTPOST_AUDIENCE", default_value = "outpost")]
    audience: String,
    /// Time a client has to send a request's headers (also ends idle keep-alive
    /// connections).
    #[arg(long, env = "OUTPOST_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    http_header_timeout: std::time::Duration,
    /// Most HTTP connections open at once.
    #[arg(long, env = "OUTPOST_HTTP_MAX_CONNECTIONS", default_value_t = 8192)]
    http_max_connections: usize,
    /// Most HTTP connections open at once from one address (IPv6: one /64). Edges'
    /// gateways forward many players each.
    #[arg(
        long,
        env = "OUTPOST_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1024
    )]
    http_max_connections_per_address: usize,
}

pub async fn run(args: CloudArgs) -> anyhow::Result<()> {
    crate::init_tracing("info");
    let edge_secret = args
        .edge_secret_file
        .as_deref()
        .map(|path| crate::read_secret(path, "the edge secret"))
        .transpose()?;
    let config = CloudConfig {
        issuer: args.issuer,
        audience: args.audience,
        edge_secret,
        season: args.season,
        modes: {
            let registry = crate::modes::registry();
            let running: Vec<&str> = args.modes.iter().map(String::as_str).collect();
            let flags = crate::modes::ModeArgs {
                set: args.set.clone(),
                ..crate::modes::ModeArgs::default()
            };
            let mut modes = Vec::new();
            for mode in &args.modes {
                let template = crate::modes::template(&registry, mode, &flags, &running)?;
                let players = if mode == "ctf" {
                    args.ctf_players
                } else {
                    args.arena_players
                };
                modes.push(crate::modes::cloud_mode(
                    template,
                    players,
                    args.match_seconds,
                ));
            }
            modes
        },
        connections: outpost_httpd::Limits {
            header_timeout: args.http_header_timeout,
            max_connections: args.http_max_connections,
            max_connections_per_address: args.http_max_connections_per_address,
            ..outpost_httpd::Limits::default()
        },
        ..CloudConfig::dev()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let seed = match &args.signing_key_file {
        Some(path) => crate::edge::read_hex_key(path)?,
        None => {
            tracing::warn!("no --signing-key-file: using keys generated for this run");
            rand::random()
        }
    };
    let keys = KeyRing::from_seed(&config, seed);
    let store: std::sync::Arc<dyn Store> = match &args.redis_url {
        Some(url) => {
            let durability = Durability {
                wait_replicas: args.redis_wait_replicas,
                wait_local_fsync: args.redis_wait_aof,
                ..Durability::default()
            };
            let store = RedisStore::connect(url, "outpost")
                .await?
                .with_durability(durability);
            let persistence = store.persistence().await?;
            if !persistence.durable(&durability) {
                let why = format!(
                    "Redis keeps acknowledged results only in memory (appendonly {}, appendfsync {}): \
                     set appendonly yes and appendfsync always, or pass --redis-wait-aof (Redis 7.2+) \
                     or --redis-wait-replicas N (see docs/operations.md)",
                    persistence.appendonly, persistence.appendfsync
                );
                anyhow::ensure!(
                    !args.redis_require_durable,
                    "{why}; --redis-require-durable=false runs anyway"
                );
                tracing::warn!("{why}");
            }
            std::sync::Arc::new(store)
        }
        None => std::sync::Arc::new(MemoryStore::default()),
    };
    let storage = match &args.replay_bucket {
        Some(bucket) => outpost_cloud::replays::ReplayStorage::S3 {
            bucket: bucket.clone(),
            prefix: args.replay_prefix.clone(),
        },
        None => outpost_cloud::replays::ReplayStorage::Folder(args.replay_dir.clone()),
    };
    let blobs = outpost_cloud::replays::replay_store(
        &storage,
        object_store::aws::AmazonS3Builder::from_env,
    )?;
    let cloud = std::sync::Arc::new(Cloud::new(config, keys, connect_seed(&seed), store, blobs));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "cloud listening: http://{} (JWKS at /.well-known/jwks.json) · instance {}",
        listener.local_addr()?,
        cloud.instance
    );
    outpost_cloud::serve(listener, cloud, async {
        let signal = crate::stop_signal().await;
        tracing::info!(signal, "stopping");
    })
    .await
}

/// Reads the fleet's edge secret from a file (at least 16 characters).
/// `outpost edge-credential`: the credential an edge presents, for its id.
#[derive(clap::Args, Debug)]
pub struct EdgeCredentialArgs {
    /// File holding the fleet's edge secret (as given to `outpost cloud`).
    #[arg(long, env = "OUTPOST_EDGE_SECRET_FILE")]
    edge_secret_file: PathBuf,
    /// The edge's id.
    #[arg(long)]
    edge_id: String,
}

/// Prints the edge's credential, for its `--edge-credential-file`.
pub fn edge_credential(args: &EdgeCredentialArgs) -> anyhow::Result<()> {
    let secret = crate::read_secret(&args.edge_secret_file, "the edge secret")?;
    let credential = outpost_cloud::edges::edge_credential_for(&secret, &args.edge_id);
    #[expect(
        clippy::print_stdout,
        reason = "the credential is the command's output"
    )]
    {
        println!("{credential}");
    }
    Ok(())
}

/// The connect-token key, derived from the signing key file's seed so one secret serves
/// both (a different key per purpose).
fn connect_seed(seed: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"outpost-connect-token-key\0");
    hasher.update(seed);
    hasher.finalize().into()
}
