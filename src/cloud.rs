//! `outpost cloud`: run the cloud services' HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
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
    /// Redis URL (`redis://host:port/db`) for players and sessions; without it they live in
    /// memory and end with the process.
    #[arg(long, env = "OUTPOST_REDIS_URL")]
    redis_url: Option<String>,
    /// File holding the secret edges present to heartbeat (`Authorization: Edge …`);
    /// without it no edge can register.
    #[arg(long, env = "OUTPOST_EDGE_CREDENTIAL_FILE")]
    edge_credential_file: Option<PathBuf>,
    /// `iss` of access tokens.
    #[arg(long, env = "OUTPOST_ISSUER", default_value = "outpost-cloud")]
    issuer: String,
    /// `aud` of access tokens.
    #[arg(long, env = "OUTPOST_AUDIENCE", default_value = "outpost")]
    audience: String,
}

pub async fn run(args: CloudArgs) -> anyhow::Result<()> {
    crate::init_tracing("info");
    let edge_credential = match &args.edge_credential_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    anyhow::ensure!(
        edge_credential.as_ref().is_none_or(|c| c.len() >= 16),
        "the edge credential must be at least 16 characters"
    );
    let config = CloudConfig {
        issuer: args.issuer,
        audience: args.audience,
        edge_credential,
        ..CloudConfig::dev()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let keys = match &args.signing_key_file {
        Some(path) => KeyRing::from_seed(&config, crate::edge::read_hex_key(path)?),
        None => {
            tracing::warn!("no --signing-key-file: using a key generated for this run");
            KeyRing::generate(&config)
        }
    };
    let store: std::sync::Arc<dyn Store> = match &args.redis_url {
        Some(url) => std::sync::Arc::new(RedisStore::connect(url, "outpost").await?),
        None => std::sync::Arc::new(MemoryStore::default()),
    };
    let cloud = std::sync::Arc::new(Cloud {
        config,
        keys,
        store,
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "cloud listening: http://{} (JWKS at /.well-known/jwks.json)",
        listener.local_addr()?
    );
    axum::serve(listener, outpost_cloud::router(cloud))
        .with_graceful_shutdown(async {
            let signal = crate::stop_signal().await;
            tracing::info!(signal, "stopping");
        })
        .await?;
    Ok(())
}
