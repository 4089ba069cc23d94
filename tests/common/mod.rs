//! Shared set-up for the end-to-end tests: an edge on loopback and tokens for it.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use outpost_arena::{self as arena, ArenaConfig};
use outpost_client::{Assignment, Client, Trust};
use outpost_edge::{Edge, EdgeConfig};
use outpost_protocol::{ConnectToken, MatchConfig, MatchId, PlayerId, TokenSigner};

pub const EDGE_ID: &str = "test-edge";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// An edge on 127.0.0.1 (QUIC and admin HTTP on free ports) and the key its tokens need.
pub struct TestEdge {
    pub edge: Edge,
    pub signer: TokenSigner,
}

impl TestEdge {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut EdgeConfig)) -> Self {
        let signer = TokenSigner::from_seed(&rand::random());
        let mut config = EdgeConfig::new(EDGE_ID, signer.public_key());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.http_listen = Some("127.0.0.1:0".parse().expect("addr"));
        config.modes = outpost_arena::modes();
        config.reconnect_grace = Duration::from_secs(5);
        adjust(&mut config);
        let edge = Edge::start(config).await.expect("edge starts");
        Self { edge, signer }
    }

    pub fn token(&self, player: u64, match_id: u64, config: &MatchConfig) -> ConnectToken {
        ConnectToken {
            player_id: PlayerId(player),
            match_id: MatchId(match_id),
            team: 0,
            edge_id: EDGE_ID.to_owned(),
            config: config.clone(),
            issued_at_ms: now_ms(),
            expires_at_ms: now_ms() + 60_000,
            nonce: rand::random(),
        }
    }

    pub fn assignment_for(&self, token: &ConnectToken, signer: &TokenSigner) -> Assignment {
        Assignment {
            edge_addr: self.edge.quic_addr(),
            server_name: "localhost".into(),
            trust: Trust::Pinned(self.edge.cert_fingerprint()),
            connect_token: signer.sign(token).expect("token signs"),
        }
    }

    pub fn assignment(&self, player: u64, match_id: u64, config: &MatchConfig) -> Assignment {
        self.assignment_for(&self.token(player, match_id, config), &self.signer)
    }
}

pub fn client() -> Client {
    Client::bind("127.0.0.1:0".parse().expect("addr"))
        .expect("client binds")
        .with_modes(outpost_arena::modes())
}

/// A small arena with no props: quick to simulate, nothing in the way.
pub fn small_match() -> MatchConfig {
    arena_match(ArenaConfig {
        props: 0,
        half_extent: 12.0,
        ..ArenaConfig::default()
    })
}

/// An arena match of up to 8 players with these settings, seed 5.
pub fn arena_match(settings: ArenaConfig) -> MatchConfig {
    MatchConfig {
        seed: 5,
        max_players: 8,
        ..arena::config(&settings)
    }
}

/// Waits (bounded) until `check` holds, re-checking as time passes.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
