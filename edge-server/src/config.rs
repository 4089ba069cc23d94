//! Edge configuration, validated at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use outpost_sim::Modes;

/// Where the edge's TLS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// A self-signed certificate generated at start (development). Clients pin its
    /// SHA-256 fingerprint, which the edge reports.
    SelfSigned,
    /// A certificate chain and private key in PEM files (production).
    Files {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

/// How an edge runs. Every field documents its default and bounds; [`EdgeConfig::validate`]
/// enforces them.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// This edge's id; connect tokens must name it. 1..=64 bytes.
    pub edge_id: String,
    /// UDP address of the QUIC endpoint. Default `127.0.0.1:7777`.
    pub listen: SocketAddr,
    /// TCP address of the admin HTTP server (`/metrics`, `/healthz`, `/readyz`); `None`
    /// to run without one. Default `127.0.0.1:7780`.
    pub http_listen: Option<SocketAddr>,
    /// Bearer token `/metrics` and `/readyz` require (`/healthz` never does); required
    /// when `http_listen` is not a loopback address. At least 16 characters. Default
    /// `None`.
    pub admin_token: Option<String>,
    /// Bounds on the admin server's connections. Default: headers within 5 s (idle
    /// keep-alive closed after as long), 64 connections, 16 per address.
    pub admin_http: outpost_httpd::Limits,
    /// Ed25519 public key connect tokens must be signed with.
    pub token_public_key: [u8; 32],
    /// TLS certificate source. Default self-signed.
    pub tls: TlsSource,
    /// Most matches hosted at once. Default 64; 1..=10_000.
    pub max_matches: usize,
    /// Most players connected at once, across matches. Default 1024; 1..=100_000.
    pub max_players: usize,
    /// Simulation worker threads. Default 1; 1..=256.
    pub sim_threads: usize,
    /// How long a new connection has, from its first packet, to finish the QUIC
    /// handshake and send its Hello. Default 5 s.
    pub hello_timeout: Duration,
    /// Most connections pending at once: handshaking, or handshaken without a valid
    /// Hello yet. Default 1024; 1..=100_000.
    pub max_pending_handshakes: usize,
    /// Most pending connections from one address (an IPv6 /64). Default 16; 1..=1024.
    pub max_pending_handshakes_per_address: usize,
    /// Pending connections above which an address must be validated by a QUIC Retry
    /// (one more round trip) before its handshake goes on; 0 validates every address.
    /// Default 64; at most `max_pending_handshakes`.
    pub retry_above_pending: usize,
    /// How far the edge's clock and the token signer's may disagree: tokens are checked
    /// for expiry, issue time and issue before this edge started give or take this much.
    /// Default 5 s; at most 60 s.
    pub token_leeway: Duration,
    /// How long a disconnected player's seat is kept for a reconnect. Default 15 s.
    pub reconnect_grace: Duration,
    /// Connections idle this long are closed. Default 10 s; at least 1 s.
    pub idle_timeout: Duration,
    /// Snapshot bandwidth per client, bits per second: snapshots are cut to this share
    /// (and never exceed one datagram). Default 96 000; at least 8 000.
    pub client_bandwidth_bps: u32,
    /// Area-of-interest radius, metres: entities farther from a player's character are
    /// not sent to them. Default 48; at least 4.
    pub interest_radius: f32,
    /// Input datagrams one connection may send per second before the excess is dropped.
    /// Default 240 (four per tick at 60 Hz); at least 10.
    pub max_input_rate_hz: u32,
    /// Folder of the outbox: results and replays of ended matches wait there until the
    /// cloud link delivers them. `None`: ended matches are only logged, nothing is
    /// recorded. Default `None`.
    pub outbox_dir: Option<PathBuf>,
    /// Largest replay recorded per match, bytes. Default 32 MiB.
    pub max_replay_bytes: usize,
    /// Most replay bytes kept pending in the outbox (results are always kept). Default
    /// 2 GiB.
    pub max_outbox_replay_bytes: u64,
    /// The game modes this edge hosts: a token for another mode, or whose schema hash
    /// this build's mode does not have, is refused. None by default: at least one must be
    /// registered (the `outpost` binary registers every mode it links).
    pub modes: Modes,
}

impl EdgeConfig {
    /// A configuration with every default, trusting `token_public_key`.
    pub fn new(edge_id: impl Into<String>, token_public_key: [u8; 32]) -> Self {
        Self {
            edge_id: edge_id.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7780))),
            admin_token: None,
            admin_http: outpost_httpd::Limits {
                header_timeout: Duration::from_secs(5),
                max_connections: 64,
                max_connections_per_address: 16,
                shutdown_grace: Duration::from_secs(2),
            },
            token_public_key,
            tls: TlsSource::SelfSigned,
            max_matches: 64,
            max_players: 1024,
            sim_threads: 1,
            hello_timeout: Duration::from_secs(5),
            max_pending_handshakes: 1024,
            max_pending_handshakes_per_address: 16,
            retry_above_pending: 64,
            token_leeway: Duration::from_secs(5),
            reconnect_grace: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(10),
            max_input_rate_hz: 240,
            client_bandwidth_bps: 96_000,
            interest_radius: 48.0,
            outbox_dir: None,
            max_replay_bytes: 32 * 1024 * 1024,
            max_outbox_replay_bytes: 2 * 1024 * 1024 * 1024,
            modes: Modes::new(),
        }
    }

    /// Checks every field against its bounds; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, field: &'static str, reason: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError { field, reason })
            }
        };
        check(
            outpost_protocol::token::valid_edge_id(&self.edge_id),
            "edge_id",
            "must be 1..=64 of A-Z a-z 0-9 . _ -",
        )?;
        check(
            self.http_listen.is_none_or(|a| a.ip().is_loopback()) || self.admin_token.is_some(),
            "admin_token",
            "is required when the admin HTTP server listens beyond loopback",
        )?;
        check(
            self.admin_token.as_ref().is_none_or(|t| t.len() >= 16),
            "admin_token",
            "must be at least 16 characters",
        )?;
        check(
            self.admin_http.validate().is_ok(),
            "admin_http",
            "needs a header timeout of 100 ms..=5 min, at least one connection, and 1..=max_connections per address",
        )?;
        check(
            (1..=10_000).contains(&self.max_matches),
            "max_matches",
            "must be 1..=10000",
        )?;
        check(
            (1..=100_000).contains(&self.max_players),
            "max_players",
            "must be 1..=100000",
        )?;
        check(
            (1..=256).contains(&self.sim_threads),
            "sim_threads",
            "must be 1..=256",
        )?;
        check(
            !self.hello_timeout.is_zero(),
            "hello_timeout",
            "must be positive",
        )?;
        check(
            (1..=100_000).contains(&self.max_pending_handshakes),
            "max_pending_handshakes",
            "must be 1..=100000",
        )?;
        check(
            (1..=1024).contains(&self.max_pending_handshakes_per_address),
            "max_pending_handshakes_per_address",
            "must be 1..=1024",
        )?;
        check(
            self.retry_above_pending <= self.max_pending_handshakes,
            "retry_above_pending",
            "must be at most max_pending_handshakes",
        )?;
        check(
            self.token_leeway <= Duration::from_secs(60),
            "token_leeway",
            "must be at most 60 s",
        )?;
        check(
            self.idle_timeout >= Duration::from_secs(1),
            "idle_timeout",
            "must be at least 1 s",
        )?;
        check(
            self.client_bandwidth_bps >= 8_000,
            "client_bandwidth_bps",
            "must be at least 8000",
        )?;
        check(
            self.interest_radius.is_finite() && self.interest_radius >= 4.0,
            "interest_radius",
            "must be at least 4 metres",
        )?;
        check(
            self.max_input_rate_hz >= 10,
            "max_input_rate_hz",
            "must be at least 10",
        )?;
        check(
            self.modes.names().next().is_some(),
            "modes",
            "register at least one game mode to host",
        )?;
        Ok(())
    }
}

/// A configuration value out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("edge config `{field}` {reason}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// Its bounds.
    pub reason: &'static str,
}
