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
use crate::store::RefreshUse;

/// Longest device id accepted, bytes.
pub const MAX_DEVICE_ID: usize = 128;
/// Shortest device id accepted, bytes: a device id is the guest's only credential, so it
/// must carry about 128 random bits (e.g. 32 hex digits, or 22+ base64url characters of
/// 16 random bytes; `outpost_client::CloudClient::new_device_id` makes one).
pub const MIN_DEVICE_ID: usize = 22;

pub(crate) fn routes() -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(guest))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(jwks))
}

/// Body of `POST /v1/auth/guest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestLogin {
    /// A stable, random id of the device: the same device gets the same player. It is the
    /// guest's credential: 22..=128 characters of `A-Z a-z 0-9 - _` (generate 16 or more
    /// random bytes once, and keep them).
    #[schema(min_length = 22, max_length = 128, pattern = "^[A-Za-z0-9_-]{22,128}$")]
    pub device_id: String,
}

/// Body of `POST /v1/auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    #[schema(max_length = 256)]
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

/// A refresh token is `<family>.<secret>`: the family (one per login, kept through every
/// rotation) is not secret, and names what a reuse revokes.
fn family_of(token: &str) -> Option<&str> {
    let (family, secret) = token.split_once('.')?;
    (family.len() == 22 && !secret.is_empty()).then_some(family)
}

/// Whether a device id looks like the random credential it must be.
fn device_id_ok(id: &str) -> bool {
    (MIN_DEVICE_ID..=MAX_DEVICE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A session for `player_id`: a new token family for a login, or the same family for a
/// refresh.
async fn open_session(
    cloud: &Cloud,
    player_id: u64,
    family: Option<&str>,
) -> Result<Session, ApiError> {
    let (access_token, expires_in) = cloud.keys.issue(player_id).map_err(ApiError::internal)?;
    let family = family.map_or_else(
        || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        str::to_owned,
    );
    let refresh_token = format!(
        "{family}.{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let expires_at = now_secs() + cloud.config.refresh_ttl.as_secs();
    cloud
        .store
        .put_refresh(
            &hash(&refresh_token),
            &family,
            player_id,
            expires_at,
            now_secs(),
        )
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
    responses((status = 200, body = Session), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
async fn guest(
    State(cloud): State<Arc<Cloud>>,
    ApiJson(login): ApiJson<GuestLogin>,
) -> Result<Json<Session>, ApiError> {
    if !device_id_ok(&login.device_id) {
        return Err(ApiError::invalid(
            "device_id must be 22..=128 random characters of A-Z a-z 0-9 - _",
        ));
    }
    let player_id = cloud
        .store
        .player_for_device(&login.device_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(open_session(&cloud, player_id, None).await?))
}

/// Trades a refresh token (once) for a new session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn refresh(
    State(cloud): State<Arc<Cloud>>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<Session>, ApiError> {
    if request.refresh_token.len() > 256 {
        return Err(ApiError::invalid("refresh_token too long"));
    }
    let refused = || ApiError::unauthorized("refresh token unknown, used or expired");
    let family = family_of(&request.refresh_token).ok_or_else(refused)?;
    // Using a token consumes it (rotation). A token used twice means two holders: the
    // whole family is revoked, the thief's sessions and the player's alike (OAuth 2.0
    // Security BCP, refresh token reuse detection); the player logs in again.
    let used = cloud
        .store
        .take_refresh(&hash(&request.refresh_token), family, now_secs())
        .await
        .map_err(ApiError::internal)?;
    match used {
        RefreshUse::Fresh(player_id) => {
            Ok(Json(open_session(&cloud, player_id, Some(family)).await?))
        }
        RefreshUse::Reused(player_id) => {
            revoke(&cloud, family).await?;
            tracing::warn!(player_id, "refresh token reused: its family is revoked");
            Err(ApiError::unauthorized(
                "refresh token reused: every session of this login is revoked",
            ))
        }
        RefreshUse::Revoked | RefreshUse::Unknown => Err(refused()),
    }
}

async fn revoke(cloud: &Cloud, family: &str) -> Result<(), ApiError> {
    let until = now_secs() + cloud.config.refresh_ttl.as_secs();
    cloud
        .store
        .revoke_family(family, until)
        .await
        .map_err(ApiError::internal)
}

/// Ends a login: its refresh token, and every one rotated from the same login, stop
/// working (access tokens already issued run out within their lifetime). Answers 204
/// whatever the token was.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
async fn logout(
    State(cloud): State<Arc<Cloud>>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    if request.refresh_token.len() > 256 {
        return Err(ApiError::invalid("refresh_token too long"));
    }
    if let Some(family) = family_of(&request.refresh_token) {
        let used = cloud
            .store
            .take_refresh(&hash(&request.refresh_token), family, now_secs())
            .await
            .map_err(ApiError::internal)?;
        // Only a token of the family ends it: a family name alone is not a credential.
        if matches!(used, RefreshUse::Fresh(_) | RefreshUse::Reused(_)) {
            revoke(&cloud, family).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
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
