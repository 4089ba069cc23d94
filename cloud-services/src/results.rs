//! Match results: the edge posts one when a match ends; the cloud applies it exactly once
//! per match id (ratings, leaderboards, histories), however often it is retried.
#![allow(
    unused_qualifications,
    reason = "utoipa's `params(...)` expansion names the query type by path"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::edges::authenticated_edge;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, PathId};
use crate::modes::{ModeConfig, Stat};
use crate::ratings::{ranks_from_scores, rate};
use crate::store::{BoardWrite, MatchRecord, ResultWrite};
use crate::{Cloud, now_ms};

/// Most players a result may list.
pub const MAX_RESULT_PLAYERS: usize = 256;

pub(crate) fn routes() -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(post_result, get_result))
        .routes(routes!(history))
}

/// How a match ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Played to its end (time or score limit): ratings and leaderboards change.
    Completed,
    /// Everyone left: recorded, nothing rated.
    Abandoned,
    /// The edge shut down mid-match: recorded, nothing rated.
    Shutdown,
}

/// One player's line in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayerResult {
    /// The player.
    pub player_id: u64,
    /// Their score.
    pub score: i64,
    /// The mode's own per-player counts by name (a capture the flag player's `returns`,
    /// say): at most 8, each name 1..=32 bytes of `[a-z][a-z0-9_]*`. Boards rank them by
    /// name; absent, none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = stats_schema)]
    pub stats: BTreeMap<String, u32>,
}

/// The schema of a result line's `stats`: the bounds `post_result` checks.
fn stats_schema() -> utoipa::openapi::schema::Object {
    crate::counts_schema(
        0,
        outpost_protocol::MAX_STATS,
        "^[a-z][a-z0-9_]{0,31}$",
        u64::from(u32::MAX),
    )
}

/// Body of `POST /v1/matches/{match_id}/result`: what the edge saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchResult {
    /// The edge that hosted it (the one presenting the credential).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub edge_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Ticks played.
    pub ticks: u32,
    /// Every player who took part (connected at some point), leavers included, each once
    /// and each placed in the match (422 otherwise). Players placed in the match but
    /// missing here never joined it and are not rated.
    #[schema(max_items = 256)]
    pub players: Vec<PlayerResult>,
}

/// Answer to a posted result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultAck {
    /// The match.
    pub match_id: u64,
    /// True if this request applied it; false if it had been applied before (the edge
    /// stops retrying either way).
    pub applied: bool,
}

/// The changes a result makes, computed from the current ratings.
pub fn result_write(
    cloud_season: &str,
    mode: &ModeConfig,
    record: &MatchRecord,
    result: &MatchResult,
    current: &dyn Fn(u64) -> crate::store::Rating,
    now_ms: u64,
) -> ResultWrite {
    let line_of = |p: u64| result.players.iter().find(|r| r.player_id == p);
    let score_of = |p: u64| line_of(p).map_or(0, |r| r.score);
    // Only who played counts: the edge lists the players who connected. A player placed
    // in the match who never joined it is neither rated nor ranked by it (so a party
    // that names them cannot cost them rating).
    let played = |team: &Vec<u64>| -> Vec<u64> {
        team.iter()
            .copied()
            .filter(|p| result.players.iter().any(|r| r.player_id == *p))
            .collect()
    };
    // A one-team mode is a free-for-all: each player is their own team for rating.
    let teams: Vec<Vec<u64>> = if record.teams.len() == 1 {
        played(&record.teams[0])
            .into_iter()
            .map(|p| vec![p])
            .collect()
    } else {
        record
            .teams
            .iter()
            .map(played)
            .filter(|t| !t.is_empty())
            .collect()
    };
    let team_scores: Vec<i64> = teams
        .iter()
        .map(|t| t.iter().map(|p| score_of(*p)).sum())
        .collect();
    let ranks = ranks_from_scores(&team_scores);
    let mut ratings = Vec::new();
    let mut boards = Vec::new();
    // Ratings compare teams: a match that one team (or nobody) played rates nobody.
    if result.outcome == Outcome::Completed && teams.len() >= 2 {
        let before: Vec<Vec<_>> = teams
            .iter()
            .map(|t| t.iter().map(|p| current(*p)).collect())
            .collect();
        let after = rate(&before, &ranks);
        for (team, new) in teams.iter().zip(after) {
            ratings.extend(team.iter().copied().zip(new));
        }
        for (team, rank) in teams.iter().zip(&ranks) {
            for player in team {
                for board in &mode.boards {
                    let value = match &board.stat {
                        Stat::Score => score_of(*player) as f64,
                        Stat::Wins => f64::from(u8::from(*rank == 1)),
                        Stat::Named(name) => line_of(*player)
                            .and_then(|r| r.stats.get(name))
                            .map_or(0.0, |n| f64::from(*n)),
                    };
                    if board.op == crate::store::BoardOp::Incr && value == 0.0 {
                        continue;
                    }
                    for period in &board.periods {
                        let (key, expire_at) = period.key(now_ms, cloud_season);
                        boards.push(BoardWrite {
                            board: format!("{}:{key}", board.name),
                            op: board.op,
                            player_id: *player,
                            value,
                            at_ms: now_ms,
                            expire_at,
                        });
                    }
                }
            }
        }
    }
    ResultWrite {
        match_id: record.match_id,
        mode: record.mode.clone(),
        ratings,
        boards,
        players: teams.iter().flatten().copied().collect(),
        result_json: serde_json::to_string(result).unwrap_or_default(),
    }
}

/// The edge reports a finished match. Applied once per match id; repeats answer
/// `applied: false`.
#[utoipa::path(post, path = "/v1/matches/{match_id}/result", tag = "results",
    params(("match_id" = u64, Path, description = "Match id", minimum = 0, maximum = 9_007_199_254_740_991_i64)), request_body = MatchResult,
    security(("edge_credential" = [])),
    responses((status = 200, body = ResultAck), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_result(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath(PathId(match_id)): ApiPath<PathId>,
    ApiJson(result): ApiJson<MatchResult>,
) -> Result<Json<ResultAck>, ApiError> {
    let edge = authenticated_edge(&cloud, &headers)?;
    if result.players.len() > MAX_RESULT_PLAYERS {
        return Err(ApiError::invalid("too many players"));
    }
    let record = cloud
        .store
        .match_record(match_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such match"))?;
    // Only the edge the match was placed on speaks for it.
    if record.edge_id != edge || result.edge_id != edge {
        return Err(ApiError::forbidden("the match was placed on another edge"));
    }
    let placed: BTreeSet<u64> = record.teams.iter().flatten().copied().collect();
    let mut seen = BTreeSet::new();
    for line in &result.players {
        if !placed.contains(&line.player_id) || !seen.insert(line.player_id) {
            return Err(ApiError::unprocessable(format!(
                "player {} is not in the match, or listed twice",
                line.player_id
            )));
        }
        let names: Vec<&str> = line.stats.keys().map(String::as_str).collect();
        if !outpost_protocol::stats_are_valid(&names) {
            return Err(ApiError::invalid(
                "stats: at most 8, named 1..=32 bytes of [a-z][a-z0-9_]*",
            ));
        }
    }
    let mode = cloud
        .mode(&record.mode)
        .ok_or_else(|| ApiError::internal(format!("mode {} no longer configured", record.mode)))?;
    let players: Vec<u64> = placed.iter().copied().collect();
    let current = cloud
        .store
        .ratings(&record.mode, &players)
        .await
        .map_err(ApiError::internal)?;
    let lookup = |p: u64| {
        players
            .iter()
            .position(|x| *x == p)
            .and_then(|i| current[i])
            .unwrap_or_default()
    };
    let write = result_write(
        &cloud.config.season,
        mode,
        &record,
        &result,
        &lookup,
        now_ms(),
    );
    let applied = cloud
        .store
        .apply_result(&write)
        .await
        .map_err(ApiError::internal)?;
    if applied {
        cloud.stats.results_applied.inc();
        tracing::info!(match_id, outcome = ?result.outcome, "result applied");
    }
    Ok(Json(ResultAck { match_id, applied }))
}

/// A match's result, as applied. Final, so cacheable.
#[utoipa::path(get, path = "/v1/matches/{match_id}/result", tag = "results",
    params(("match_id" = u64, Path, description = "Match id", minimum = 0, maximum = 9_007_199_254_740_991_i64)),
    responses((status = 200, body = MatchResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_result(
    State(cloud): State<Arc<Cloud>>,
    ApiPath(PathId(match_id)): ApiPath<PathId>,
) -> Result<Response, ApiError> {
    let json = cloud
        .store
        .result(match_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no result for this match"))?;
    let mut response = json.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

/// Query with a limit.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    /// How many (1..=100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// A player's matches, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct History {
    /// Match ids.
    pub matches: Vec<u64>,
}

/// The matches a player's results were recorded in, newest first.
#[utoipa::path(get, path = "/v1/players/{player_id}/matches", tag = "results",
    params(("player_id" = u64, Path, description = "Player id", minimum = 0, maximum = 9_007_199_254_740_991_i64), LimitQuery),
    responses((status = 200, body = History), (status = 400, body = ErrorBody)))]
async fn history(
    State(cloud): State<Arc<Cloud>>,
    ApiPath(PathId(player_id)): ApiPath<PathId>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<History>, ApiError> {
    let limit = checked_limit(query.limit)?;
    let matches = cloud
        .store
        .history(player_id, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(History { matches }))
}

/// A `limit` parameter: 1..=100, default 20.
pub(crate) fn checked_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(20);
    if (1..=100).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("limit must be 1..=100"))
    }
}
