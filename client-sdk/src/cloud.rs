//! The cloud half of the SDK: log in, find a match (measuring pings to each region
//! first), read leaderboards and download replays. [`CloudClient::matchmake`] returns an
//! [`Assignment`] for [`crate::Client::connect`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use outpost_protocol::SignedToken;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::replay::ReplayPlayer;
use crate::{Assignment, Client, Trust};

/// What can go wrong talking to the cloud.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// The request did not complete.
    #[error("cloud request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The cloud answered with an error.
    #[error("cloud refused ({status}): {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// Not logged in.
    #[error("log in first")]
    NotLoggedIn,
    /// No match within the time given.
    #[error("no match found in time (ticket {0})")]
    NoMatch(u64),
    /// The ticket ended without a match.
    #[error("ticket {0} ended: {1}")]
    TicketEnded(u64, String),
    /// The cloud sent something this SDK cannot use.
    #[error("unusable answer from the cloud: {0}")]
    Invalid(String),
}

/// A logged-in player.
#[derive(Debug, Clone, Deserialize)]
struct Session {
    player_id: u64,
    access_token: String,
    refresh_token: String,
}

/// A live edge, as the cloud lists it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EdgeInfo {
    /// Edge id.
    pub edge_id: String,
    /// Region.
    pub region: String,
    /// QUIC address.
    pub quic_addr: String,
    /// SHA-256 of its certificate, hex.
    pub cert_sha256: String,
    /// Capacity.
    pub capacity: u32,
    /// Load.
    pub load: u32,
    /// Draining.
    pub draining: bool,
}

#[derive(Deserialize)]
struct EdgeList {
    edges: Vec<EdgeInfo>,
}

#[derive(Debug, Clone, Deserialize)]
struct TicketAssignment {
    match_id: u64,
    quic_addr: String,
    cert_sha256: String,
    connect_token: String,
}

#[derive(Debug, Clone, Deserialize)]
struct TicketView {
    id: u64,
    status: String,
    assignment: Option<TicketAssignment>,
}

/// A party to matchmake together, led by the player who files the ticket.
#[derive(Debug, Clone, Default)]
pub struct Party {
    /// Everyone in it, the leader included.
    pub members: Vec<u64>,
    /// One consent per member other than the leader, from their
    /// [`CloudClient::party_consent`].
    pub consents: Vec<String>,
}

/// A found match.
#[derive(Debug, Clone)]
pub struct MatchFound {
    /// The match.
    pub match_id: u64,
    /// What to connect with.
    pub assignment: Assignment,
}

/// A leaderboard row.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BoardEntry {
    /// 1-based rank.
    pub rank: u64,
    /// The player.
    pub player_id: u64,
    /// Their score.
    pub score: f64,
}

/// A page of a leaderboard.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BoardPage {
    /// Board name.
    pub board: String,
    /// The window read.
    pub period_key: String,
    /// Entries on the board.
    pub total: u64,
    /// Rows, best first.
    pub entries: Vec<BoardEntry>,
    /// For the next page.
    pub next_cursor: Option<String>,
}

/// A stored replay.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReplayInfo {
    /// The match.
    pub match_id: u64,
    /// Its players.
    pub players: Vec<u64>,
    /// Size, bytes.
    pub bytes: u64,
}

#[derive(Deserialize)]
struct ReplayList {
    replays: Vec<ReplayInfo>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A client of the cloud API.
pub struct CloudClient {
    http: reqwest::Client,
    base: String,
    session: Mutex<Option<Session>>,
}

impl CloudClient {
    /// A client of the cloud at `base_url` (e.g. `https://cloud.example.com`).
    pub fn new(base_url: &str) -> Result<Self, CloudError> {
        Self::with_headers(base_url, &[])
    }

    /// The same, sending these headers with every request (e.g. a gateway's
    /// `X-Outpost-Load-Test` key for a load generator).
    pub fn with_headers(base_url: &str, headers: &[(&str, &str)]) -> Result<Self, CloudError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut defaults = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CloudError::Invalid(format!("header name {name}: {e}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| CloudError::Invalid(format!("header {name}: {e}")))?;
            value.set_sensitive(true);
            defaults.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(outpost_protocol::HTTP_CLIENT_IDLE)
            .default_headers(defaults)
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            session: Mutex::new(None),
        })
    }

    fn token(&self) -> Result<String, CloudError> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.access_token.clone())
            .ok_or(CloudError::NotLoggedIn)
    }

    /// The logged-in player.
    pub fn player_id(&self) -> Option<u64> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.player_id)
    }

    async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, CloudError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response.json().await?);
        }
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = serde_json::from_slice::<ErrorBody>(&body).map_or_else(
            |_| {
                (
                    "http".to_owned(),
                    String::from_utf8_lossy(&body).into_owned(),
                )
            },
            |e| (e.error.code, e.error.message),
        );
        Err(CloudError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// A new device id: 128 random bits as 32 hex digits. Make one the first time the game
    /// runs on a device and keep it (it is the guest's credential: the same id is the same
    /// player, and whoever has it is that player).
    pub fn new_device_id() -> String {
        rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Logs in as a guest: the same `device_id` is the same player (see
    /// [`CloudClient::new_device_id`]). Returns the player id.
    pub async fn login(&self, device_id: &str) -> Result<u64, CloudError> {
        let response = self
            .http
            .post(format!("{}/v1/auth/guest", self.base))
            .json(&serde_json::json!({ "device_id": device_id }))
            .send()
            .await?;
        let session: Session = Self::read(response).await?;
        let player = session.player_id;
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
        Ok(player)
    }

    /// Trades the refresh token for a fresh access token.
    pub async fn refresh(&self) -> Result<(), CloudError> {
        let refresh = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.refresh_token.clone())
            .ok_or(CloudError::NotLoggedIn)?;
        let response = self
            .http
            .post(format!("{}/v1/auth/refresh", self.base))
            .json(&serde_json::json!({ "refresh_token": refresh }))
            .send()
            .await?;
        let session: Session = Self::read(response).await?;
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
        Ok(())
    }

    /// The live edges.
    pub async fn edges(&self) -> Result<Vec<EdgeInfo>, CloudError> {
        let response = self
            .http
            .get(format!("{}/v1/edges", self.base))
            .send()
            .await?;
        Ok(Self::read::<EdgeList>(response).await?.edges)
    }

    /// Round-trip time to each region: the best QUIC handshake RTT to its edges.
    pub async fn measure_pings(
        &self,
        client: &Client,
        edges: &[EdgeInfo],
    ) -> BTreeMap<String, u32> {
        let mut pings: BTreeMap<String, u32> = BTreeMap::new();
        for edge in edges.iter().filter(|e| !e.draining) {
            let (Ok(addr), Some(fingerprint)) = (
                edge.quic_addr.parse::<SocketAddr>(),
                parse_hex32(&edge.cert_sha256),
            ) else {
                continue;
            };
            if let Ok(rtt) = client.measure_rtt(addr, fingerprint).await {
                let ms = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX).max(1);
                let best = pings.entry(edge.region.clone()).or_insert(ms);
                *best = (*best).min(ms);
            }
        }
        pings
    }

    /// This player's consent to play in `leader`'s party in `mode`: hand it to the
    /// leader (through the game's own social features), who lists it in
    /// [`Party::consents`]. The cloud refuses a party without every member's consent.
    pub async fn party_consent(&self, leader: u64, mode: &str) -> Result<String, CloudError> {
        #[derive(Deserialize)]
        struct Consent {
            consent: String,
        }
        let response = self
            .http
            .post(format!("{}/v1/matchmaking/consents", self.base))
            .bearer_auth(self.token()?)
            .json(&serde_json::json!({ "leader": leader, "mode": mode }))
            .send()
            .await?;
        let consent: Consent = Self::read(response).await?;
        Ok(consent.consent)
    }

    /// Finds a match in `mode` for the logged-in player (or their `party`, which they
    /// lead): measures pings to every region, files a ticket, long-polls it until
    /// matched or `within` passes (then cancels it). Returns the assignment to connect
    /// with.
    pub async fn matchmake(
        &self,
        client: &Client,
        mode: &str,
        party: Option<Party>,
        within: Duration,
    ) -> Result<MatchFound, CloudError> {
        let edges = self.edges().await?;
        let pings = self.measure_pings(client, &edges).await;
        if pings.is_empty() {
            return Err(CloudError::Invalid("no edge could be reached".into()));
        }
        let mut body = serde_json::json!({ "mode": mode, "pings_ms": pings });
        if let Some(party) = party {
            body["party"] = serde_json::json!(party.members);
            body["party_consents"] = serde_json::json!(party.consents);
        }
        let response = self
            .http
            .post(format!("{}/v1/matchmaking/tickets", self.base))
            .bearer_auth(self.token()?)
            .json(&body)
            .send()
            .await?;
        let ticket: TicketView = Self::read(response).await?;
        let until = tokio::time::Instant::now() + within;
        loop {
            let response = self
                .http
                .get(format!(
                    "{}/v1/matchmaking/tickets/{}",
                    self.base, ticket.id
                ))
                .query(&[("wait_ms", "5000")])
                .bearer_auth(self.token()?)
                .send()
                .await?;
            let view: TicketView = Self::read(response).await?;
            match (view.status.as_str(), view.assignment) {
                ("matched", Some(a)) => return Self::found(&a),
                ("searching", _) if tokio::time::Instant::now() < until => {}
                ("searching", _) => {
                    let _ = self
                        .http
                        .delete(format!(
                            "{}/v1/matchmaking/tickets/{}",
                            self.base, ticket.id
                        ))
                        .bearer_auth(self.token()?)
                        .send()
                        .await;
                    return Err(CloudError::NoMatch(ticket.id));
                }
                (status, _) => return Err(CloudError::TicketEnded(ticket.id, status.to_owned())),
            }
        }
    }

    fn found(a: &TicketAssignment) -> Result<MatchFound, CloudError> {
        let edge_addr = a
            .quic_addr
            .parse()
            .map_err(|_| CloudError::Invalid("edge address".into()))?;
        let fingerprint = parse_hex32(&a.cert_sha256)
            .ok_or_else(|| CloudError::Invalid("certificate fingerprint".into()))?;
        let connect_token = SignedToken::from_text(&a.connect_token)
            .ok_or_else(|| CloudError::Invalid("connect token".into()))?;
        Ok(MatchFound {
            match_id: a.match_id,
            assignment: Assignment {
                edge_addr,
                server_name: "localhost".into(),
                trust: Trust::Pinned(fingerprint),
                connect_token,
            },
        })
    }

    /// A page of a leaderboard: `period` is `all_time`, `daily`, `weekly` or `season`.
    pub async fn leaderboard(
        &self,
        board: &str,
        period: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<BoardPage, CloudError> {
        let mut query = vec![("period", period.to_owned()), ("limit", limit.to_string())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/v1/leaderboards/{board}", self.base))
            .query(&query)
            .send()
            .await?;
        Self::read(response).await
    }

    /// A player's replays, newest first.
    pub async fn replays(&self, player_id: u64) -> Result<Vec<ReplayInfo>, CloudError> {
        let response = self
            .http
            .get(format!("{}/v1/players/{player_id}/replays", self.base))
            .send()
            .await?;
        Ok(Self::read::<ReplayList>(response).await?.replays)
    }

    /// Downloads a match's replay, ready to play.
    pub async fn download_replay(&self, match_id: u64) -> Result<ReplayPlayer, CloudError> {
        let response = self
            .http
            .get(format!("{}/v1/replays/{match_id}", self.base))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(Self::read::<serde_json::Value>(response)
                .await
                .err()
                .unwrap_or(CloudError::Invalid("replay".into())));
        }
        let bytes = response.bytes().await?;
        ReplayPlayer::new(bytes.to_vec()).map_err(|e| CloudError::Invalid(e.to_string()))
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
