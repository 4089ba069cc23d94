//! A handshake flood: QUIC Initials that are never followed up, each from its own UDP
//! socket (its own source port), the way an attacker holds an edge's handshake state.
//!
//! Each Initial is a real one, built by `quinn-proto`'s client with its own connection
//! ids, so the edge cannot tell it from a player's until the player would answer. The
//! flood reads the edge's first answer to each (handshake packets, a Retry or a refusal)
//! and never replies: that answer is the signal the edge has taken the Initial in, so a
//! caller knows the flood is in force without waiting on a clock. Loopback only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use quinn_proto::crypto::rustls::QuicClientConfig;
use tokio::net::UdpSocket;

/// Most Initials one flood sends.
pub const MAX_FLOOD: usize = 10_000;

/// What the edge answered to the flood's Initials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// Initials sent.
    pub sent: usize,
    /// Initials the edge answered (with anything) within the wait.
    pub answered: usize,
    /// Answers that were a Retry (address validation asked for).
    pub retries: usize,
}

/// A flood of `count` Initials to `target`, from sockets bound to the given loopback
/// source addresses in turn, `batch` at a time; waits up to `wait` for each answer.
pub async fn handshake_flood(
    target: SocketAddr,
    sources: &[IpAddr],
    count: usize,
    batch: usize,
    wait: Duration,
) -> anyhow::Result<FloodReport> {
    anyhow::ensure!(
        target.ip().is_loopback() && sources.iter().all(IpAddr::is_loopback),
        "a flood targets loopback only"
    );
    anyhow::ensure!(count <= MAX_FLOOD, "at most {MAX_FLOOD} Initials");
    anyhow::ensure!(!sources.is_empty() && batch > 0, "sources and batch needed");
    let config = client_config()?;
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let mut report = FloodReport::default();
    let mut sent = 0;
    while sent < count {
        let mut pending = tokio::task::JoinSet::new();
        for _ in 0..batch.min(count - sent) {
            let source = sources[sent % sources.len()];
            let socket = UdpSocket::bind(SocketAddr::new(source, 0))
                .await
                .with_context(|| format!("binding a flood socket on {source}"))?;
            let initial = initial(&mut endpoint, &config, target)?;
            socket.send_to(&initial, target).await?;
            sent += 1;
            pending.spawn(async move {
                let mut buf = [0u8; 2048];
                match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
                    // Long header, type 3 (Retry): 0b11xx_xxxx with bits 4-5 = 11.
                    Ok(Ok(len)) => Some(len > 0 && buf[0] & 0xf0 == 0xf0),
                    _ => None,
                }
            });
        }
        report.sent = sent;
        while let Some(answer) = pending.join_next().await {
            if let Ok(Some(retry)) = answer {
                report.answered += 1;
                report.retries += usize::from(retry);
            }
        }
    }
    Ok(report)
}

/// One client Initial, padded as QUIC requires.
fn initial(
    endpoint: &mut quinn_proto::Endpoint,
    config: &quinn_proto::ClientConfig,
    target: SocketAddr,
) -> anyhow::Result<Vec<u8>> {
    let now = Instant::now();
    let (_, mut conn) = endpoint
        .connect(now, config.clone(), target, "localhost")
        .context("building an Initial")?;
    let mut buf = Vec::with_capacity(1500);
    let transmit = conn
        .poll_transmit(now, 1, &mut buf)
        .context("the client produced no Initial")?;
    buf.truncate(transmit.size);
    Ok(buf)
}

/// A client configuration good for producing Initials: the handshake never gets as far
/// as checking the edge's certificate, so no roots are needed.
fn client_config() -> anyhow::Result<quinn_proto::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.alpn_protocols = vec![outpost_protocol::ALPN.to_vec()];
    Ok(quinn_proto::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls)?,
    )))
}
