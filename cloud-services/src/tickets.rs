//! Matchmaking tickets over HTTP: create, poll (or long-poll), cancel. The matcher
//! (`matcher.rs`) settles them.
#![allow(
    unused_qualifications,
    reason = "utoipa's `params(...)` expansion names the query type by path"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::bearer;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, PathId};
use crate::store::{TicketMember, TicketRecord, TicketStatus};
use crate::{Cloud, now_ms};

/// Most regions a ticket may list.
pub const MAX_REGIONS: usize = 32;
/// Longest a poll waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(8);

pub(crate) fn routes() -> OpenApiRouter<Arc<Cloud>> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(poll, cancel))
        .routes(routes!(consent))
}

/// Body of `POST /v1/matchmaking/tickets`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// Game mode: one of the cloud's (the document lists them).
    pub mode: String,
    /// The party, the caller (its leader) included; omitted: the caller alone. Kept
    /// together, on one team. A party without the caller, or larger than the mode's
    /// team, is refused (422).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 128)]
    pub party: Option<Vec<u64>>,
    /// One consent per other party member, each from `POST /v1/matchmaking/consents`
    /// by that member naming the caller as leader and this mode. A party is accepted
    /// only with every member's consent (403 otherwise).
    #[serde(default)]
    #[schema(max_items = 127)]
    pub party_consents: Vec<String>,
    /// Measured round-trip time per region, milliseconds (the worst of the party's):
    /// 1..=32 regions, each named by 1..=32 of `a-z`, `0-9`, `-`, at most 10000 ms.
    /// Regions with no live edge are dropped; a ticket naming none is refused (422).
    #[schema(schema_with = pings_schema)]
    pub pings_ms: BTreeMap<String, u32>,
}

/// The schema of `pings_ms`: the bounds `create` checks.
fn pings_schema() -> utoipa::openapi::schema::Object {
    crate::counts_schema(1, MAX_REGIONS, "^[a-z0-9-]{1,32}$", 10_000)
}

/// Where to play, for the player asking.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TicketAssignment {
    /// The match.
    pub match_id: u64,
    /// The edge.
    pub edge_id: String,
    /// Its region.
    pub region: String,
    /// Its QUIC address.
    pub quic_addr: String,
    /// SHA-256 of its certificate, hex: pin it.
    pub cert_sha256: String,
    /// This player's connect token.
    pub connect_token: String,
    /// This player's team (0-based).
    pub team: usize,
}

/// A ticket, as its players see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TicketView {
    /// Ticket id.
    pub id: u64,
    /// Game mode.
    pub mode: String,
    /// Where it is.
    pub status: TicketStatus,
    /// The party.
    pub players: Vec<u64>,
    /// Made at, Unix milliseconds.
    pub created_at_ms: u64,
    /// Stops searching at, Unix milliseconds.
    pub expires_at_ms: u64,
    /// Set once matched.
    pub assignment: Option<TicketAssignment>,
}

fn view(ticket: &TicketRecord, player: u64) -> TicketView {
    let assignment = ticket.placement.as_ref().and_then(|p| {
        Some(TicketAssignment {
            match_id: p.match_id,
            edge_id: p.edge_id.clone(),
            region: p.region.clone(),
            quic_addr: p.quic_addr.clone(),
            cert_sha256: p.cert_sha256.clone(),
            connect_token: p.tokens.get(&player)?.clone(),
            team: p.teams.iter().position(|t| t.contains(&player))?,
        })
    });
    TicketView {
        id: ticket.id,
        mode: ticket.mode.clone(),
        status: ticket.status,
        players: ticket.players.iter().map(|p| p.player_id).collect(),
        created_at_ms: ticket.created_at_ms,
        expires_at_ms: ticket.expires_at_ms,
        assignment,
    }
}

pub(crate) fn valid_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Asks for a match.
#[utoipa::path(post, path = "/v1/matchmaking/tickets", tag = "matchmaking",
    request_body = TicketRequest, security(("bearer" = [])),
    responses((status = 201, body = TicketView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<TicketRequest>,
) -> Result<(StatusCode, Json<TicketView>), ApiError> {
    let player = bearer(&cloud, &headers)?;
    let mode = cloud
        .mode(&request.mode)
        .ok_or_else(|| ApiError::invalid(format!("unknown mode `{}`", request.mode)))?;
    let party = request.party.unwrap_or_else(|| vec![player]);
    let unique: BTreeSet<u64> = party.iter().copied().collect();
    if unique.len() != party.len() {
        return Err(ApiError::unprocessable("party must list distinct players"));
    }
    if !unique.contains(&player) {
        return Err(ApiError::unprocessable(
            "the party must include the caller, its leader",
        ));
    }
    if party.len() > mode.rules.team_size {
        return Err(ApiError::unprocessable(format!(
            "party of {} does not fit a team of {}",
            party.len(),
            mode.rules.team_size
        )));
    }
    check_consents(&cloud, player, &mode.name, &party, &request.party_consents)?;
    if request.pings_ms.is_empty() || request.pings_ms.len() > MAX_REGIONS {
        return Err(ApiError::invalid("pings_ms must name 1..=32 regions"));
    }
    if let Some((region, _)) = request
        .pings_ms
        .iter()
        .find(|(r, ms)| !valid_region(r) || **ms > 10_000)
    {
        return Err(ApiError::invalid(format!(
            "pings_ms: `{region}` must be 1..=32 of a-z, 0-9, - with a ping of at most 10000 ms"
        )));
    }
    // Only regions with an edge: a ticket naming none would wait out its time to live,
    // parsed by the matcher every round, for a match that cannot be placed.
    let mut pings_ms = request.pings_ms;
    let live = cloud
        .store
        .live_edges(now_ms() / 1000)
        .await
        .map_err(ApiError::internal)?;
    pings_ms.retain(|region, _| live.iter().any(|e| &e.heartbeat.region == region));
    if pings_ms.is_empty() {
        return Err(ApiError::unprocessable(
            "pings_ms names no region with a live edge (see GET /v1/edges)",
        ));
    }
    let ratings = cloud
        .store
        .ratings(&mode.name, &party)
        .await
        .map_err(ApiError::internal)?;
    let id = cloud
        .store
        .next_id("ticket")
        .await
        .map_err(ApiError::internal)?;
    let now = now_ms();
    let ticket = TicketRecord {
        id,
        mode: mode.name.clone(),
        owner: player,
        players: party
            .iter()
            .zip(ratings)
            .map(|(p, r)| TicketMember {
                player_id: *p,
                rating: r.unwrap_or_default().mu,
            })
            .collect(),
        pings_ms,
        created_at_ms: now,
        expires_at_ms: now + mode.ticket_ttl.as_millis() as u64,
        status: TicketStatus::Searching,
        placement: None,
    };
    let held = cloud
        .store
        .put_ticket(&ticket)
        .await
        .map_err(ApiError::internal)?;
    if let Some(held) = held {
        return Err(ApiError::conflict(
            "ticket_exists",
            format!(
                "a player of this party is already searching in `{}` (ticket {held}); cancel it first",
                mode.name
            ),
        ));
    }
    Ok((StatusCode::CREATED, Json(view(&ticket, player))))
}

/// Every member of `party` but the leader consented, once each, to `leader`'s party in
/// `mode`; no consent is left over.
fn check_consents(
    cloud: &Cloud,
    leader: u64,
    mode: &str,
    party: &[u64],
    consents: &[String],
) -> Result<(), ApiError> {
    let refused = |why: String| ApiError::new(StatusCode::FORBIDDEN, "consent_required", why);
    let mut pending: BTreeSet<u64> = party.iter().copied().filter(|p| *p != leader).collect();
    if consents.len() != pending.len() {
        return Err(refused(format!(
            "a party of {} needs one consent from each of its {} other members (got {})",
            party.len(),
            pending.len(),
            consents.len()
        )));
    }
    for consent in consents {
        let claims = cloud
            .keys
            .verify_consent(consent)
            .map_err(|e| refused(format!("party consent refused: {}", e.0)))?;
        let member: u64 = claims
            .sub
            .parse()
            .map_err(|_| refused("party consent names no player".into()))?;
        if claims.leader != leader || claims.mode != mode || !pending.remove(&member) {
            return Err(refused(format!(
                "party consent of player {member} is for another leader, mode or party"
            )));
        }
    }
    Ok(())
}

/// Body of `POST /v1/matchmaking/consents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// The party leader the caller agrees to play with (who will file the ticket).
    pub leader: u64,
    /// The game mode.
    pub mode: String,
}

/// A member's consent, to hand to the party leader.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Consent {
    /// Put it in the leader's `party_consents`.
    pub consent: String,
    /// Seconds it stays good.
    pub expires_in: u64,
}

/// The caller consents to play in `leader`'s party in `mode`: without every member's
/// consent, a ticket naming a party is refused.
#[utoipa::path(post, path = "/v1/matchmaking/consents", tag = "matchmaking",
    request_body = ConsentRequest, security(("bearer" = [])),
    responses((status = 200, body = Consent), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
async fn consent(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ConsentRequest>,
) -> Result<Json<Consent>, ApiError> {
    let player = bearer(&cloud, &headers)?;
    let mode = cloud
        .mode(&request.mode)
        .ok_or_else(|| ApiError::invalid(format!("unknown mode `{}`", request.mode)))?;
    let ttl = cloud.config.party_consent_ttl;
    let consent = cloud
        .keys
        .issue_consent(player, request.leader, &mode.name, ttl)
        .map_err(ApiError::internal)?;
    Ok(Json(Consent {
        consent,
        expires_in: ttl.as_secs(),
    }))
}

/// Query of `GET /v1/matchmaking/tickets/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    /// Wait up to this long (ms, at most 8000) for the ticket to leave `searching`.
    #[param(minimum = 0, maximum = 8000)]
    pub wait_ms: Option<u64>,
}

async fn ticket_of(cloud: &Cloud, id: u64, player: u64) -> Result<TicketRecord, ApiError> {
    cloud
        .store
        .ticket(id)
        .await
        .map_err(ApiError::internal)?
        .filter(|t| t.players.iter().any(|p| p.player_id == player))
        .ok_or_else(|| ApiError::not_found("no such ticket"))
}

/// A ticket; with `wait_ms`, answers as soon as it is matched, cancelled or expired
/// (long poll).
#[utoipa::path(get, path = "/v1/matchmaking/tickets/{id}", tag = "matchmaking",
    params(("id" = u64, Path, description = "Ticket id", minimum = 0, maximum = 9_007_199_254_740_991_i64), PollQuery), security(("bearer" = [])),
    responses((status = 200, body = TicketView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn poll(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath(PathId(id)): ApiPath<PathId>,
    ApiQuery(query): ApiQuery<PollQuery>,
) -> Result<Json<TicketView>, ApiError> {
    let player = bearer(&cloud, &headers)?;
    if query
        .wait_ms
        .is_some_and(|ms| ms > MAX_WAIT.as_millis() as u64)
    {
        return Err(ApiError::invalid("wait_ms must be at most 8000"));
    }
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0))
        .min(MAX_WAIT)
        .min(
            cloud
                .config
                .request_timeout
                .saturating_sub(Duration::from_secs(1)),
        );
    let until = tokio::time::Instant::now() + wait;
    loop {
        let ticket = ticket_of(&cloud, id, player).await?;
        if ticket.status != TicketStatus::Searching || tokio::time::Instant::now() >= until {
            return Ok(Json(view(&ticket, player)));
        }
        // The store is the truth across replicas; a settled ticket shows at the next look.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cancels a searching ticket. A matched ticket cannot be cancelled (409).
#[utoipa::path(delete, path = "/v1/matchmaking/tickets/{id}", tag = "matchmaking",
    params(("id" = u64, Path, description = "Ticket id", minimum = 0, maximum = 9_007_199_254_740_991_i64)), security(("bearer" = [])),
    responses((status = 200, body = TicketView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn cancel(
    State(cloud): State<Arc<Cloud>>,
    headers: HeaderMap,
    ApiPath(PathId(id)): ApiPath<PathId>,
) -> Result<Json<TicketView>, ApiError> {
    let player = bearer(&cloud, &headers)?;
    let mut ticket = ticket_of(&cloud, id, player).await?;
    match ticket.status {
        TicketStatus::Cancelled => return Ok(Json(view(&ticket, player))),
        TicketStatus::Searching => {}
        other => {
            return Err(ApiError::conflict(
                "ticket_settled",
                format!("ticket is {other:?}, no longer searching"),
            ));
        }
    }
    ticket.status = TicketStatus::Cancelled;
    if cloud
        .store
        .settle(std::slice::from_ref(&ticket))
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(Json(view(&ticket, player)));
    }
    // The matcher settled it first.
    let ticket = ticket_of(&cloud, id, player).await?;
    Err(ApiError::conflict(
        "ticket_settled",
        format!("ticket is {:?}, no longer searching", ticket.status),
    ))
}
