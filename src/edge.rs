//! `outpost edge`: run an edge server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
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
    /// TCP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "OUTPOST_HTTP", default_value = "0.0.0.0:7780")]
    http: SocketAddr,
    /// File holding the cloud's Ed25519 token-signing public key, as 64 hex digits.
    #[arg(long, env = "OUTPOST_TOKEN_PUBLIC_KEY_FILE")]
    token_public_key_file: PathBuf,
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
    /// Snapshot budget per player, kbit/s.
    #[arg(long, env = "OUTPOST_CLIENT_BANDWIDTH_KBPS", default_value_t = 96)]
    client_bandwidth_kbps: u32,
    /// Area-of-interest radius, metres.
    #[arg(long, env = "OUTPOST_INTEREST_RADIUS", default_value_t = 48.0)]
    interest_radius: f32,
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

fn parse_hex_key(text: &str) -> anyhow::Result<[u8; 32]> {
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
    let mut config = EdgeConfig::new(args.edge_id, read_hex_key(&args.token_public_key_file)?);
    config.listen = args.listen;
    config.http_listen = Some(args.http);
    config.max_matches = args.max_matches;
    config.max_players = args.max_players;
    config.sim_threads = args.sim_threads;
    config.client_bandwidth_bps = args.client_bandwidth_kbps.saturating_mul(1000);
    config.interest_radius = args.interest_radius;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = TlsSource::Files { cert, key };
    }
    let edge = Edge::start(config).await?;
    eprintln!(
        "edge listening: quic {} · admin http://{} · certificate sha256 {}",
        edge.quic_addr(),
        edge.http_addr().map(|a| a.to_string()).unwrap_or_default(),
        outpost_edge::hex(&edge.cert_fingerprint())
    );
    let signal = crate::stop_signal().await;
    if signal == "SIGTERM" {
        tracing::info!(timeout = ?args.drain_timeout, "draining: no new matches, running ones finish");
        edge.drain_and_wait(args.drain_timeout).await;
    }
    edge.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_keys_parse_and_bad_ones_are_refused() {
        let key = super::parse_hex_key(&"0a".repeat(32)).expect("valid");
        assert_eq!(key, [10; 32]);
        assert!(super::parse_hex_key("0a").is_err());
        assert!(super::parse_hex_key(&"zz".repeat(32)).is_err());
    }
}
