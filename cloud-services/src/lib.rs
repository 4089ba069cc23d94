//! # outpost-cloud
//!
//! The cloud half of Outpost: an axum HTTP API, JSON, versioned under `/v1`, with one
//! error shape. It does what needs global data:
//!
//! - **auth**: guest (device) login → a short-lived access token (JWT, EdDSA) and a
//!   rotating refresh token; keys at `/.well-known/jwks.json` with a `kid`;
//! - **edge registry**: edges heartbeat their region, address, capacity and load;
//! - **matchmaking**: tickets (parties kept whole, pings per region) matched by rating
//!   and ping with widening windows, placed on the least-loaded edge, one connect token
//!   per player;
//! - **results** applied exactly once per match (ratings, leaderboards, histories);
//! - **leaderboards** (top, around, rank; all-time, daily, weekly, season), cacheable;
//! - **replays**, stored through `object_store` and indexed by match and player.
//!
//! State lives behind the [`Store`] trait: [`RedisStore`] in production,
//! [`MemoryStore`] for one machine.
//!
//! ```no_run
//! use std::sync::Arc;
//! use outpost_cloud::{Cloud, CloudConfig, serve};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let cloud = Arc::new(Cloud::in_memory(CloudConfig::dev(), None)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, cloud, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod edges;
pub mod error;
pub mod leaderboards;
pub mod matcher;
pub mod matchmaking;
pub mod modes;
pub mod ratings;
pub mod replays;
pub mod results;
pub mod store;
pub mod tickets;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::timeout::TimeoutLayer;

pub use auth::{AccessClaims, KeyRing};
pub use error::ApiError;
pub use modes::ModeConfig;
use outpost_protocol::{MatchConfig, TokenSigner};
pub use store::{MemoryStore, RedisStore, Store};

/// How the cloud runs. Every field documents its default and bounds.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// `iss` of the tokens it issues and accepts. Default `outpost-cloud`.
    pub issuer: String,
    /// `aud` of the tokens it issues and accepts. Default `outpost`.
    pub audience: String,
    /// Access token lifetime. Default 15 minutes; 1 minute..=24 hours.
    pub access_ttl: Duration,
    /// Refresh token lifetime. Default 30 days.
    pub refresh_ttl: Duration,
    /// How long a rotated-out signing key is still published and accepted. Default: the
    /// access token lifetime, so every token issued before a rotation stays valid.
    pub key_overlap: Duration,
    /// Largest request body, bytes. Default 16 KiB.
    pub max_body: usize,
    /// Longest a request may take. Default 10 s.
    pub request_timeout: Duration,
    /// The fleet's edge secret: each edge proves its id with its own credential derived
    /// from it ([`edges::edge_credential_for`]), presented as `Authorization: Edge
    /// <edge_id>:<credential>`; one edge's credential speaks for that edge only. `None`
    /// refuses every edge. At least 16 characters.
    pub edge_secret: Option<String>,
    /// How long an edge stays registered after its last heartbeat. Default 15 s.
    pub edge_ttl: Duration,
    /// Game modes players can ask for. Default: `arena`, a free-for-all of 8.
    pub modes: Vec<ModeConfig>,
    /// The current season (the `season` leaderboard window). Default `1`.
    pub season: String,
    /// How often each mode's matcher runs. Default 100 ms; 10 ms..=10 s.
    pub matcher_interval: Duration,
    /// Largest replay upload, bytes. Default 64 MiB.
    pub max_replay_bytes: usize,
    /// How long a player's consent to join a party lasts. Default 5 minutes; 10 s..=1 h.
    pub party_consent_ttl: Duration,
    /// Bounds on client connections: header timeout (also ending idle keep-alive
    /// connections), caps in all and per address. Default 10 s, 8192, 1024 per address
    /// (an edge's gateway forwards many players from one address).
    pub connections: outpost_httpd::Limits,
}

impl CloudConfig {
    /// The defaults, as `outpost dev` uses them.
    pub fn dev() -> Self {
        Self {
            issuer: "outpost-cloud".into(),
            audience: "outpost".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            key_overlap: Duration::from_secs(15 * 60),
            max_body: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            edge_secret: None,
            edge_ttl: Duration::from_secs(15),
            // The arena's queue; its template carries no mode settings or schema hash
            // (edges refuse it): `outpost cloud` and `outpost dev` fill them from the
            // modes they link.
            modes: vec![ModeConfig::free_for_all(MatchConfig::new("arena"), 8, 300)],
            season: "1".into(),
            matcher_interval: Duration::from_millis(100),
            max_replay_bytes: 64 * 1024 * 1024,
            party_consent_ttl: Duration::from_secs(300),
            connections: outpost_httpd::Limits {
                max_connections: 8192,
                max_connections_per_address: 1024,
                ..outpost_httpd::Limits::default()
            },
        }
    }

    /// Checks the bounds; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.access_ttl) {
            return Err("access_ttl must be 1 minute..=24 hours".into());
        }
        if self.refresh_ttl <= self.access_ttl {
            return Err("refresh_ttl must be longer than access_ttl".into());
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err("issuer and audience must be set".into());
        }
        self.connections
            .validate()
            .map_err(|e| format!("connections: {e}"))?;
        if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&self.party_consent_ttl)
        {
            return Err("party_consent_ttl must be 10 s..=1 hour".into());
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.matcher_interval) {
            return Err("matcher_interval must be 10 ms..=10 s".into());
        }
        if self.season.is_empty()
            || self.season.len() > 32
            || !self
                .season
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("season must be 1..=32 of a-z, A-Z, 0-9, -".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for mode in &self.modes {
            if !tickets::valid_region(&mode.name) || !names.insert(mode.name.clone()) {
                return Err(format!("mode name `{}` is invalid or repeated", mode.name));
            }
            if mode.rules.match_size() == 0 || mode.rules.match_size() > 128 {
                return Err(format!(
                    "mode `{}`: a match must hold 1..=128 players",
                    mode.name
                ));
            }
            mode.match_config
                .validate()
                .map_err(|e| format!("mode `{}`: {e}", mode.name))?;
            for board in &mode.boards {
                if !tickets::valid_region(&board.name) || !names.insert(board.name.clone()) {
                    return Err(format!(
                        "board name `{}` is invalid or repeated",
                        board.name
                    ));
                }
                if let modes::Stat::Named(stat) = &board.stat
                    && !outpost_protocol::is_name(stat)
                {
                    return Err(format!(
                        "board `{}`: stat `{stat}` is not a valid stat name",
                        board.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The OpenAPI schema of a map from names matching `key_pattern` to integers in
/// `0..=max_value`, with `min..=max` entries: the bounds its handler checks.
pub(crate) fn counts_schema(
    min: usize,
    max: usize,
    key_pattern: &str,
    max_value: u64,
) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .min_properties(Some(min))
        .max_properties(Some(max))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(key_pattern))
                .build(),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(max_value as f64))
                .build(),
        )))))
        .build()
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What this replica has done since it started.
#[derive(Debug, Default)]
pub struct CloudStats {
    /// Matches placed by this replica's matchers.
    pub matches_placed: Count,
    /// Results applied (not counting repeats).
    pub results_applied: Count,
    /// Replays stored (not counting repeats).
    pub replays_stored: Count,
    /// Client connections.
    pub connections: outpost_httpd::ConnStats,
}

/// Shared state of the API.
pub struct Cloud {
    /// Configuration.
    pub config: CloudConfig,
    /// Signing keys of access tokens.
    pub keys: KeyRing,
    /// Signing key of connect tokens (published in the JWKS with a `connect-` kid).
    pub connect: TokenSigner,
    /// Players, sessions, tickets, results, boards, indexes.
    pub store: Arc<dyn Store>,
    /// Replay bytes.
    pub blobs: Arc<dyn object_store::ObjectStore>,
    /// Counters.
    pub stats: CloudStats,
    /// This replica's id, as it holds matcher leases.
    pub instance: String,
    pub(crate) reservations: Mutex<matcher::Reservations>,
}

impl Cloud {
    /// A cloud over `store` and `blobs`. `connect_seed` is the connect-token signing key.
    pub fn new(
        config: CloudConfig,
        keys: KeyRing,
        connect_seed: [u8; 32],
        store: Arc<dyn Store>,
        blobs: Arc<dyn object_store::ObjectStore>,
    ) -> Self {
        Self {
            config,
            keys,
            connect: TokenSigner::from_seed(&connect_seed),
            store,
            blobs,
            stats: CloudStats::default(),
            instance: format!("{:016x}", rand::random::<u64>()),
            reservations: Mutex::new(matcher::Reservations::default()),
        }
    }

    /// A cloud with fresh keys, the memory store, and replays in `replay_dir` (in memory
    /// without one).
    pub fn in_memory(
        config: CloudConfig,
        replay_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let keys = KeyRing::generate(&config);
        let blobs: Arc<dyn object_store::ObjectStore> = match replay_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
            }
            None => Arc::new(object_store::memory::InMemory::new()),
        };
        Ok(Self::new(
            config,
            keys,
            rand::random(),
            Arc::new(MemoryStore::default()),
            blobs,
        ))
    }

    /// A configured mode.
    pub fn mode(&self, name: &str) -> Option<&ModeConfig> {
        self.config.modes.iter().find(|m| m.name == name)
    }

    /// The `kid` of the connect-token key in the JWKS.
    pub fn connect_kid(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let public = self.connect.public_key();
        format!(
            "connect-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&sha2::Sha256::digest(public)[..8])
        )
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The OpenAPI description of every route (each is registered together with its
/// documentation, so the two cannot drift apart).
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Outpost cloud API",
    description = "Auth, edge registry, matchmaking, results, leaderboards and replays."
))]
struct ApiDoc;

/// The API's routes and their OpenAPI document; uploads of replays take up to
/// `max_replay` bytes.
pub fn routes_and_document(max_replay: usize) -> (Router<Arc<Cloud>>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(edges::routes())
        .merge(tickets::routes())
        .merge(results::routes())
        .merge(leaderboards::routes())
        .merge(replays::routes(max_replay))
        .split_for_parts()
}

/// Writes the modes this cloud runs into the document, as the one set of values of every
/// request's `mode` (they are configuration, not code).
fn name_the_modes(document: &mut utoipa::openapi::OpenApi, modes: &[&str]) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let Some(components) = document.components.as_mut() else {
        return;
    };
    for name in ["TicketRequest", "ConsentRequest"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
            let description = match object.properties.get("mode") {
                Some(RefOr::T(Schema::Object(mode))) => mode.description.clone(),
                _ => None,
            };
            let mode = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(modes.iter().copied()))
                .description(description)
                .build();
            object.properties.insert("mode".into(), mode.into());
        }
    }
}

/// The whole API as a router, with its OpenAPI document at `/v1/openapi.json`.
pub fn router(cloud: Arc<Cloud>) -> Router {
    let max_body = cloud.config.max_body;
    let timeout = cloud.config.request_timeout;
    let (routes, mut document) = routes_and_document(cloud.config.max_replay_bytes);
    let modes: Vec<&str> = cloud.config.modes.iter().map(|m| m.name.as_str()).collect();
    name_the_modes(&mut document, &modes);
    let document = Arc::new(document);
    routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { axum::Json((*document).clone()) }),
        )
        // For orchestrators: alive, and ready (the store answers) to take traffic.
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(cloud)
}

/// `/readyz`: 200 once the store answers, 503 with the reason while it does not.
async fn readyz(
    axum::extract::State(cloud): axum::extract::State<Arc<Cloud>>,
) -> (axum::http::StatusCode, String) {
    match cloud.store.ready().await {
        Ok(()) => (axum::http::StatusCode::OK, "ready".into()),
        Err(err) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {err}"),
        ),
    }
}

/// Serves the API on `listener`, with a matcher per mode, until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cloud: Arc<Cloud>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cloud.config.validate().map_err(anyhow::Error::msg)?;
    let matchers = matcher::spawn(cloud.clone());
    let limits = cloud.config.connections;
    let served = outpost_httpd::serve(
        listener,
        router(cloud.clone()),
        limits,
        cloud.stats.connections.clone(),
        shutdown,
    )
    .await;
    // Stopping on purpose: the next replica need not wait out the leases.
    matchers.stop().await;
    served?;
    Ok(())
}
