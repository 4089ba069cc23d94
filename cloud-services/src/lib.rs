//! # outpost-cloud
//!
//! The cloud half of Outpost: an axum HTTP API, JSON, versioned under `/v1`, with one
//! error shape. This first part is **auth**: guest (device) login that returns a
//! short-lived access token — a JWT signed with EdDSA (Ed25519) — and a rotating refresh
//! token; the public keys at `/.well-known/jwks.json` with a `kid`, rotated with an
//! overlap window, so edges can check tokens offline.
//!
//! What it is not (yet): matchmaking, the edge registry, results, leaderboards and
//! replays come next, on the same router and store traits.
//!
//! ```no_run
//! use outpost_cloud::{CloudConfig, serve};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, CloudConfig::dev(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod edges;
pub mod error;
pub mod matchmaking;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::timeout::TimeoutLayer;

pub use auth::{AccessClaims, KeyRing};
pub use error::ApiError;
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
    /// Secret edges present (`Authorization: Edge …`) to heartbeat; `None` refuses every
    /// edge. `serve` and `outpost dev` generate one.
    pub edge_credential: Option<String>,
    /// How long an edge stays registered after its last heartbeat. Default 15 s.
    pub edge_ttl: Duration,
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
            edge_credential: None,
            edge_ttl: Duration::from_secs(15),
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
        Ok(())
    }
}

/// Shared state of the API.
pub struct Cloud {
    /// Configuration.
    pub config: CloudConfig,
    /// Signing keys.
    pub keys: KeyRing,
    /// Players, sessions.
    pub store: Arc<dyn Store>,
}

/// The OpenAPI description of every route (each is registered together with its
/// documentation, so the two cannot drift apart).
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Outpost cloud API",
    description = "Auth, and next matchmaking, leaderboards and replays."
))]
struct ApiDoc;

/// The API's routes and their OpenAPI document.
pub fn routes_and_document() -> (Router<Arc<Cloud>>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(edges::routes())
        .split_for_parts()
}

/// The whole API as a router, with its OpenAPI document at `/v1/openapi.json`.
pub fn router(cloud: Arc<Cloud>) -> Router {
    let max_body = cloud.config.max_body;
    let timeout = cloud.config.request_timeout;
    let (routes, document) = routes_and_document();
    let document = Arc::new(document);
    routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { axum::Json((*document).clone()) }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(cloud)
}

/// Serves the API on `listener` with an in-memory store and fresh keys until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: CloudConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let keys = KeyRing::generate(&config);
    let cloud = Arc::new(Cloud {
        config,
        keys,
        store: Arc::new(MemoryStore::default()),
    });
    axum::serve(listener, router(cloud))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
