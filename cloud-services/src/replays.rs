//! Replays: the edge uploads each match's recording (see `outpost_protocol::replay`); the
//! cloud keeps the bytes through `object_store` (a local folder by default, S3/GCS/Azure
//! by configuration) and indexes them by match and by player. Downloads are immutable:
//! cached for a year, revalidated by `ETag`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::Response;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use outpost_protocol::replay::ReplayReader;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::edges::authenticated_edge;
use crate::error::{ApiBytes, ApiError, ApiPath, ApiQuery, ErrorBody, PathId};
use crate::leaderboards::{cached, etag_matches, hex};
use crate::results::{LimitQuery, checked_limit};
use crate::store::ReplayMeta;
use crate::{Cloud, now_ms};

pub(crate) fn routes(max_replay: usize) -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(upload, download))
        .layer(DefaultBodyLimit::max(max_replay))
        .routes(routes!(of_player))
}

/// Where the cloud keeps replay bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStorage {
    /// A local folder (the default: `object_store`'s local file system).
    Folder(std::path::PathBuf),
    /// An S3 bucket (AWS or any S3-compatible server), under `prefix` ("" for the
    /// bucket's root). The endpoint, region and credentials come from the usual `AWS_*`
    /// environment (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` for a plain-HTTP endpoint, …), as the
    /// AWS tools read them.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix inside it, without leading or trailing `/`.
        prefix: String,
    },
}

/// The object store for `storage`; `s3` builds an S3 store from a builder (the
/// environment's, [`object_store::aws::AmazonS3Builder::from_env`], in the binary; one
/// configured by hand in tests).
pub fn replay_store(
    storage: &ReplayStorage,
    s3: impl FnOnce() -> object_store::aws::AmazonS3Builder,
) -> anyhow::Result<Arc<dyn object_store::ObjectStore>> {
    match storage {
        ReplayStorage::Folder(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok(Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir)?,
            ))
        }
        ReplayStorage::S3 { bucket, prefix } => {
            anyhow::ensure!(!bucket.is_empty(), "the replay bucket's name is empty");
            let store = s3().with_bucket_name(bucket).build()?;
            let prefix = prefix.trim_matches('/');
            Ok(if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(
                    store,
                    ObjectPath::from(prefix),
                ))
            })
        }
    }
}

/// Where a match's replay is kept in the object store.
pub fn object_path(match_id: u64) -> ObjectPath {
    ObjectPath::from(format!("replays/{match_id}.opr"))
}

/// Answer to an upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayAck {
    /// The index entry.
    #[serde(flatten)]
    pub meta: ReplayMeta,
    /// False if the match already had this replay (the upload was a retry).
    pub stored: bool,
}

/// The edge uploads a match's replay. Idempotent: a retry of the same bytes answers
/// `stored: false`; different bytes for a stored match are refused (409).
#[utoipa::path(put, path = "/v1/replays/{match_id}", tag = "replays",
    params(("match_id" = u64, Path, description = "Match id", minimum = 0, maximum = 9_007_199_254_740_991_i64)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("edge_credential" = [])),
    responses((status = 200, body = ReplayAck), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath(PathId(match_id)): ApiPath<PathId>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ReplayAck>, ApiError> {
    let edge = authenticated_edge(&cloud, &headers)?;
    let reader = ReplayReader::parse(body.to_vec())
        .map_err(|e| ApiError::unprocessable(format!("not a replay: {e}")))?;
    if reader.header().match_id.0 != match_id {
        return Err(ApiError::unprocessable("the replay is of another match"));
    }
    let record = cloud
        .store
        .match_record(match_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such match"))?;
    if record.edge_id != edge {
        return Err(ApiError::forbidden("the match was placed on another edge"));
    }
    // A replay any client could decode, but of other state than its match was placed to
    // have (another mode's, another version's): not that match's replay.
    if record.schema_hash != 0 && reader.header().config.schema_hash != record.schema_hash {
        return Err(ApiError::unprocessable(
            "the replay's schema is not the one its match was placed with",
        ));
    }
    let sha256 = hex(&sha2::Sha256::digest(&body));
    if let Some(existing) = cloud
        .store
        .replay(match_id)
        .await
        .map_err(ApiError::internal)?
    {
        if existing.sha256 == sha256 {
            return Ok(Json(ReplayAck {
                meta: existing,
                stored: false,
            }));
        }
        return Err(ApiError::conflict(
            "replay_exists",
            "the match has a different replay",
        ));
    }
    // Bytes first, index second: an index entry always points at stored bytes.
    cloud
        .blobs
        .put(&object_path(match_id), body.clone().into())
        .await
        .map_err(ApiError::internal)?;
    let meta = ReplayMeta {
        match_id,
        players: record.teams.iter().flatten().copied().collect(),
        bytes: body.len() as u64,
        sha256,
        stored_at_ms: now_ms(),
    };
    let stored = cloud
        .store
        .put_replay(&meta)
        .await
        .map_err(ApiError::internal)?;
    if stored {
        cloud.stats.replays_stored.inc();
        tracing::info!(match_id, bytes = meta.bytes, "replay stored");
    }
    Ok(Json(ReplayAck { meta, stored }))
}

/// A match's replay bytes. Immutable: cache forever, revalidate by `ETag`.
#[utoipa::path(get, path = "/v1/replays/{match_id}", tag = "replays",
    params(("match_id" = u64, Path, description = "Match id", minimum = 0, maximum = 9_007_199_254_740_991_i64)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn download(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath(PathId(match_id)): ApiPath<PathId>,
) -> Result<Response, ApiError> {
    let meta = cloud
        .store
        .replay(match_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no replay for this match"))?;
    let etag = format!("\"{}\"", meta.sha256);
    let bytes = if etag_matches(&headers, &etag) {
        Vec::new()
    } else {
        cloud
            .blobs
            .get(&object_path(match_id))
            .await
            .map_err(ApiError::internal)?
            .bytes()
            .await
            .map_err(ApiError::internal)?
            .to_vec()
    };
    let response = cached(
        &headers,
        bytes,
        &etag,
        "public, max-age=31536000, immutable",
        "application/octet-stream",
    );
    Ok(response)
}

/// A player's replays.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayList {
    /// Newest first.
    pub replays: Vec<ReplayMeta>,
}

/// The replays of a player's matches, newest first.
#[utoipa::path(get, path = "/v1/players/{player_id}/replays", tag = "replays",
    params(("player_id" = u64, Path, description = "Player id", minimum = 0, maximum = 9_007_199_254_740_991_i64), LimitQuery),
    responses((status = 200, body = ReplayList), (status = 400, body = ErrorBody)))]
async fn of_player(
    State(cloud): State<Arc<Cloud>>,
    ApiPath(PathId(player_id)): ApiPath<PathId>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<ReplayList>, ApiError> {
    let limit = checked_limit(query.limit)?;
    let ids = cloud
        .store
        .player_replays(player_id, limit)
        .await
        .map_err(ApiError::internal)?;
    let mut replays = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(meta) = cloud.store.replay(id).await.map_err(ApiError::internal)? {
            replays.push(meta);
        }
    }
    Ok(Json(ReplayList { replays }))
}
