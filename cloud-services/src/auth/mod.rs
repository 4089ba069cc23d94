//! Auth routes: guest login, refresh, who-am-I, and the published keys.

mod keys;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use keys::{AccessClaims, ConsentClaims, Jwk, Jwks, KeyRing, TokenRejected};

use crate::Cloud;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// Longest device id accepted, bytes.
pub const MAX_DEVICE_ID: usize = 128;

pub(crate) fn routes() -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(guest))
        .routes(routes!(refresh))
        .routes(routes!(me))
        .routes(routes!(jwks))
}

/// Body of `POST /v1/auth/guest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestLogin {
    /// A stable id of the device (1..=128 bytes): the same device gets the same player.
    pub device_id: String,
}

/// Body of `POST /v1/auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// A session: what login and refresh return.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// The player.
    pub player_id: u64,
    /// Bearer token for the API and the edges (JWT, EdDSA).
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use token for the next refresh.
    pub refresh_token: String,
}

/// `GET /v1/me`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The player the bearer token names.
    pub player_id: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refresh tokens are random; the store keeps only their hash.
fn hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
}

async fn open_session(cloud: &Cloud, player_id: u64) -> Result<Session, ApiError> {
    let (access_token, expires_in) = cloud.keys.issue(player_id).map_err(ApiError::internal)?;
    let refresh_token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let expires_at = now_secs() + cloud.config.refresh_ttl.as_secs();
    cloud
        .store
        .put_refresh(&hash(&refresh_token), player_id, expires_at, now_secs())
        .await
        .map_err(ApiError::internal)?;
    Ok(Session {
        player_id,
        access_token,
        expires_in,
        refresh_token,
    })
}

/// Logs in as a guest: the same device id is the same player.
#[utoipa::path(post, path = "/v1/auth/guest", tag = "auth", request_body = GuestLogin,
    responses((status = 200, body = Session), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn guest(
    State(cloud): State<Arc<Cloud>>,
    ApiJson(login): ApiJson<GuestLogin>,
) -> Result<Json<Session>, ApiError> {
    if login.device_id.is_empty() || login.device_id.len() > MAX_DEVICE_ID {
        return Err(ApiError::invalid("device_id must be 1..=128 bytes"));
    }
    let player_id = cloud
        .store
        .player_for_device(&login.device_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(open_session(&cloud, player_id).await?))
}

/// Trades a refresh token (once) for a new session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(cloud): State<Arc<Cloud>>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<Session>, ApiError> {
    if request.refresh_token.len() > 256 {
        return Err(ApiError::invalid("refresh_token too long"));
    }
    // Taking the token consumes it: a refresh token works once (rotation).
    let player_id = cloud
        .store
        .take_refresh(&hash(&request.refresh_token), now_secs())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::unauthorized("refresh token unknown, used or expired"))?;
    Ok(Json(open_session(&cloud, player_id).await?))
}

/// The player a request's bearer token names, or 401.
pub fn bearer(cloud: &Cloud, headers: &HeaderMap) -> Result<u64, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::unauthorized("expected a Bearer token"))?;
    let claims = cloud
        .keys
        .verify(token)
        .map_err(|e| ApiError::unauthorized(e.0))?;
    claims
        .sub
        .parse()
        .map_err(|_| ApiError::unauthorized("token subject is not a player id"))
}

/// The player the bearer token names.
#[utoipa::path(get, path = "/v1/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(State(cloud): State<Arc<Cloud>>, headers: HeaderMap) -> Result<Json<Me>, ApiError> {
    Ok(Json(Me {
        player_id: bearer(&cloud, &headers)?,
    }))
}

/// Access-token keys and the connect-token key (its `kid` starts with `connect-`).
fn published_keys(cloud: &Cloud) -> Jwks {
    let mut jwks = cloud.keys.jwks();
    jwks.keys.push(Jwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: URL_SAFE_NO_PAD.encode(cloud.connect.public_key()),
        kid: cloud.connect_kid(),
        alg: "EdDSA".into(),
        use_: "sig".into(),
    });
    jwks
}

/// The public keys access tokens (and, under a `connect-` kid, connect tokens) are
/// signed with.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = Jwks)))]
async fn jwks(
    State(cloud): State<Arc<Cloud>>,
) -> (
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    Json<Jwks>,
) {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(published_keys(&cloud)),
    )
}
