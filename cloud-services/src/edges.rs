//! The edge registry: edges heartbeat what they are and how loaded; silent ones expire.
//! Matchmaking will place matches only on live, non-draining edges with room.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Cloud;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// What an edge says of itself, every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeHeartbeat {
    /// The edge's id, as connect tokens name it (1..=64 of `A-Z a-z 0-9 . _ -`).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub edge_id: String,
    /// Its region, e.g. `eu-west` (1..=32 of `a-z`, `0-9`, `-`).
    #[schema(pattern = "^[a-z0-9-]{1,32}$")]
    pub region: String,
    /// Its QUIC address: an IP address and a port (`192.0.2.1:7777`, `[2001:db8::1]:7777`;
    /// one that does not parse as such is refused, 422).
    #[schema(pattern = "^(\\[[0-9A-Fa-f:.]{2,45}\\]|[0-9.]{7,15}):[0-9]{1,5}$")]
    pub quic_addr: String,
    /// SHA-256 of its certificate, 64 hex digits (clients pin it).
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub cert_sha256: String,
    /// Most players it takes.
    pub capacity: u32,
    /// Players on it now.
    pub load: u32,
    /// Most matches it hosts at once.
    pub match_capacity: u32,
    /// Matches on it now.
    pub matches: u32,
    /// Draining: running matches finish, no new ones.
    pub draining: bool,
}

/// A registered edge, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// What it last said.
    #[serde(flatten)]
    pub heartbeat: EdgeHeartbeat,
    /// When it last spoke, Unix seconds.
    pub last_seen: u64,
    /// When it is forgotten unless it speaks again, Unix seconds.
    pub expires_at: u64,
}

/// Answer to a heartbeat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    /// Seconds before the edge must speak again.
    pub expires_in: u64,
}

/// A live edge, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    /// Its id.
    pub edge_id: String,
    /// Its region.
    pub region: String,
    /// Its QUIC address.
    pub quic_addr: String,
    /// SHA-256 of its certificate, hex (pin it).
    pub cert_sha256: String,
    /// Most players it takes.
    pub capacity: u32,
    /// Players on it.
    pub load: u32,
    /// Most matches it hosts.
    pub match_capacity: u32,
    /// Matches on it.
    pub matches: u32,
    /// Draining: no new matches.
    pub draining: bool,
    /// When it last spoke, Unix seconds.
    pub last_seen: u64,
    /// When it is forgotten unless it speaks again, Unix seconds.
    pub expires_at: u64,
}

impl From<EdgeRecord> for EdgeView {
    fn from(record: EdgeRecord) -> Self {
        let EdgeHeartbeat {
            edge_id,
            region,
            quic_addr,
            cert_sha256,
            capacity,
            load,
            match_capacity,
            matches,
            draining,
        } = record.heartbeat;
        Self {
            edge_id,
            region,
            quic_addr,
            cert_sha256,
            capacity,
            load,
            match_capacity,
            matches,
            draining,
            last_seen: record.last_seen,
            expires_at: record.expires_at,
        }
    }
}

/// The live edges.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EdgeList {
    /// Edges that spoke within their time, by id.
    pub edges: Vec<EdgeView>,
}

pub(crate) fn routes() -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(list))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An edge's own credential: HMAC-SHA256 of its id under the fleet's edge secret, as 64
/// hex digits. The operator hands each edge its own (`outpost edge-credential`); it proves
/// that id and no other, so one compromised edge cannot speak for the rest.
pub fn edge_credential_for(edge_secret: &str, edge_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, edge_secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(b"outpost-edge-credential\0");
    context.update(edge_id.as_bytes());
    context
        .sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The edge a request proves to be (`Authorization: Edge <edge_id>:<credential>`), or 401.
pub(crate) fn authenticated_edge(cloud: &Cloud, headers: &HeaderMap) -> Result<String, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Edge "))
        .ok_or_else(|| ApiError::unauthorized("missing edge credential"))?;
    let refused = || ApiError::unauthorized("edge credential refused");
    let (edge_id, credential) = presented.split_once(':').ok_or_else(refused)?;
    let secret = cloud.config.edge_secret.as_deref().ok_or_else(refused)?;
    let expected = edge_credential_for(secret, edge_id);
    if !outpost_protocol::token::valid_edge_id(edge_id)
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            credential.as_bytes(),
            expected.as_bytes(),
        ))
    {
        return Err(refused());
    }
    Ok(edge_id.to_owned())
}

fn validate(beat: &EdgeHeartbeat) -> Result<(), ApiError> {
    if !outpost_protocol::token::valid_edge_id(&beat.edge_id) {
        return Err(ApiError::invalid(
            "edge_id must be 1..=64 of A-Z a-z 0-9 . _ -",
        ));
    }
    if !crate::tickets::valid_region(&beat.region) {
        return Err(ApiError::invalid("region must be 1..=32 of a-z, 0-9, -"));
    }
    if beat.cert_sha256.len() != 64 || !beat.cert_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("cert_sha256 must be 64 hex digits"));
    }
    if beat.quic_addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(ApiError::unprocessable(
            "quic_addr must be an IP address and a port",
        ));
    }
    Ok(())
}

/// An edge reports itself; registering is the first heartbeat.
#[utoipa::path(post, path = "/v1/edges/heartbeat", tag = "edges", request_body = EdgeHeartbeat,
    security(("edge_credential" = [])),
    responses((status = 200, body = HeartbeatAck), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn heartbeat(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiJson(beat): ApiJson<EdgeHeartbeat>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    let edge = authenticated_edge(&cloud, &headers)?;
    if beat.edge_id != edge {
        return Err(ApiError::forbidden(
            "an edge heartbeats for itself only: edge_id is not the credential's",
        ));
    }
    validate(&beat)?;
    let now = now_secs();
    let ttl = cloud.config.edge_ttl.as_secs();
    let record = EdgeRecord {
        heartbeat: beat,
        last_seen: now,
        expires_at: now + ttl,
    };
    cloud
        .store
        .put_edge(&record, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(HeartbeatAck { expires_in: ttl }))
}

/// The edges alive now (for players measuring pings, and for placement).
#[utoipa::path(get, path = "/v1/edges", tag = "edges", responses((status = 200, body = EdgeList)))]
async fn list(State(cloud): State<Arc<Cloud>>) -> Result<Json<EdgeList>, ApiError> {
    let mut edges = cloud
        .store
        .live_edges(now_secs())
        .await
        .map_err(ApiError::internal)?;
    edges.sort_by(|a, b| a.heartbeat.edge_id.cmp(&b.heartbeat.edge_id));
    Ok(Json(EdgeList {
        edges: edges.into_iter().map(EdgeView::from).collect(),
    }))
}
