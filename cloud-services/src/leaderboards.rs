//! Leaderboard reads: top N with a cursor, around a player, one player's rank. Writes
//! come from results (`results.rs`). Every read carries `Cache-Control` and a strong
//! `ETag` so edges and browsers can cache and revalidate (`If-None-Match` → 304).
#![allow(
    unused_qualifications,
    reason = "utoipa's `params(...)` expansion names the query type by path"
)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody, PathId};
use crate::modes::{BoardConfig, Period};
use crate::store::BoardEntry;
use crate::{Cloud, now_ms};

/// Seconds a board read may be cached.
pub const BOARD_MAX_AGE: u32 = 5;

pub(crate) fn routes() -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(top))
        .routes(routes!(around))
        .routes(routes!(player))
}

/// A page of the top of a board.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    /// The window: all time (default), today, this week or this season. A board keeps
    /// only the windows its mode configures (404 for another).
    pub period: Option<Period>,
    /// A past window's key (e.g. `d20418`) instead of the current one (404 if it is not
    /// one of this period's).
    #[param(pattern = "^[a-z][A-Za-z0-9-]{0,39}$")]
    pub key: Option<String>,
    /// Rows (1..=100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Where to continue, from a previous page's `next_cursor`.
    #[param(pattern = "^[0-9]{1,9}$")]
    pub cursor: Option<String>,
}

/// The rows around a player.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AroundQuery {
    /// The window, as for the top.
    pub period: Option<Period>,
    /// A past window's key, as for the top.
    #[param(pattern = "^[a-z][A-Za-z0-9-]{0,39}$")]
    pub key: Option<String>,
    /// Rows each side of the player (0..=50, default 5).
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<u64>,
}

/// One board window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    /// The window, as for the top.
    pub period: Option<Period>,
    /// A past window's key, as for the top.
    #[param(pattern = "^[a-z][A-Za-z0-9-]{0,39}$")]
    pub key: Option<String>,
}

/// A page of a board.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BoardPage {
    /// The board.
    pub board: String,
    /// The window read, e.g. `all` or `d20418`.
    pub period_key: String,
    /// Entries on the board.
    pub total: u64,
    /// Rows, best first.
    pub entries: Vec<BoardEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

fn board_key(
    cloud: &Cloud,
    name: &str,
    period: Option<Period>,
    key: Option<&String>,
) -> Result<(String, String), ApiError> {
    let config: &BoardConfig = cloud
        .config
        .modes
        .iter()
        .flat_map(|m| &m.boards)
        .find(|b| b.name == name)
        .ok_or_else(|| ApiError::not_found("no such leaderboard"))?;
    let period = period.unwrap_or(Period::AllTime);
    if !config.periods.contains(&period) {
        return Err(ApiError::not_found(format!(
            "board `{name}` keeps no {period:?} window"
        )));
    }
    let current = period.key(now_ms(), &cloud.config.season).0;
    let key = match key {
        None => current,
        Some(k) => {
            let prefix = &current[..1];
            let valid = k.len() <= 40
                && k.starts_with(prefix)
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return Err(ApiError::not_found("no window of this period has that key"));
            }
            k.clone()
        }
    };
    Ok((format!("{name}:{key}"), key))
}

/// Serialises `body` with caching headers, or answers 304 if the client has it.
pub(crate) fn cached_json<T: Serialize>(headers: &HeaderMap, body: &T, max_age: u32) -> Response {
    let Ok(bytes) = serde_json::to_vec(body) else {
        return ApiError::internal("serialising a response").into_response();
    };
    let etag = format!("\"{}\"", hex(&sha2::Sha256::digest(&bytes)[..16]));
    cached(
        headers,
        bytes,
        &etag,
        &format!("public, max-age={max_age}"),
        "application/json",
    )
}

/// A response with `ETag` and `Cache-Control`, or 304 when `If-None-Match` names it.
pub(crate) fn cached(
    headers: &HeaderMap,
    bytes: Vec<u8>,
    etag: &str,
    cache_control: &str,
    content_type: &'static str,
) -> Response {
    let matches = etag_matches(headers, etag);
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        bytes.into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(cache_control) {
        out.insert(header::CACHE_CONTROL, value);
    }
    if !matches {
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Whether `If-None-Match` names `etag` (or `*`).
pub(crate) fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The top of a board, a page at a time.
#[utoipa::path(get, path = "/v1/leaderboards/{board}", tag = "leaderboards",
    params(("board" = String, Path, description = "Board name"), BoardQuery),
    responses((status = 200, body = BoardPage), (status = 304), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn top(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath(board): ApiPath<String>,
    ApiQuery(query): ApiQuery<BoardQuery>,
) -> Result<Response, ApiError> {
    let (key, period_key) = board_key(&cloud, &board, query.period, query.key.as_ref())?;
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1..=100"));
    }
    let offset = match &query.cursor {
        None => 0,
        Some(c) => c
            .parse::<u64>()
            .ok()
            .filter(|o| *o <= 1_000_000_000)
            .ok_or_else(|| ApiError::invalid("cursor is not one this API gave"))?,
    };
    let (entries, total) = cloud
        .store
        .board_page(&key, offset, limit)
        .await
        .map_err(ApiError::internal)?;
    let next = offset + entries.len() as u64;
    let page = BoardPage {
        board,
        period_key,
        total,
        next_cursor: (next < total && !entries.is_empty()).then(|| next.to_string()),
        entries,
    };
    Ok(cached_json(&headers, &page, BOARD_MAX_AGE))
}

async fn entry_of(cloud: &Cloud, key: &str, player_id: u64) -> Result<BoardEntry, ApiError> {
    cloud
        .store
        .board_entry(key, player_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("the player is not on this board"))
}

/// The rows around a player: `limit` above and below.
#[utoipa::path(get, path = "/v1/leaderboards/{board}/around/{player_id}", tag = "leaderboards",
    params(("board" = String, Path, description = "Board name"),
        ("player_id" = u64, Path, description = "Player id", minimum = 0, maximum = 9_007_199_254_740_991_i64), AroundQuery),
    responses((status = 200, body = BoardPage), (status = 304), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn around(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath((board, PathId(player_id))): ApiPath<(String, PathId)>,
    ApiQuery(query): ApiQuery<AroundQuery>,
) -> Result<Response, ApiError> {
    let (key, period_key) = board_key(&cloud, &board, query.period, query.key.as_ref())?;
    let each_side = query.limit.unwrap_or(5);
    if each_side > 50 {
        return Err(ApiError::invalid("limit must be 0..=50"));
    }
    let entry = entry_of(&cloud, &key, player_id).await?;
    let offset = (entry.rank - 1).saturating_sub(each_side);
    let (entries, total) = cloud
        .store
        .board_page(&key, offset, (entry.rank - 1 - offset) + each_side + 1)
        .await
        .map_err(ApiError::internal)?;
    let page = BoardPage {
        board,
        period_key,
        total,
        entries,
        next_cursor: None,
    };
    Ok(cached_json(&headers, &page, BOARD_MAX_AGE))
}

/// A player's rank and score.
#[utoipa::path(get, path = "/v1/leaderboards/{board}/players/{player_id}", tag = "leaderboards",
    params(("board" = String, Path, description = "Board name"),
        ("player_id" = u64, Path, description = "Player id", minimum = 0, maximum = 9_007_199_254_740_991_i64), WindowQuery),
    responses((status = 200, body = BoardEntry), (status = 304), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn player(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath((board, PathId(player_id))): ApiPath<(String, PathId)>,
    ApiQuery(query): ApiQuery<WindowQuery>,
) -> Result<Response, ApiError> {
    let (key, _) = board_key(&cloud, &board, query.period, query.key.as_ref())?;
    let entry = entry_of(&cloud, &key, player_id).await?;
    Ok(cached_json(&headers, &entry, BOARD_MAX_AGE))
}
