//! The matcher loop: one per mode, and across cloud replicas one per mode at a time (a
//! lease in the store). Each round it expires stale tickets, runs a pass of the pure
//! matcher over the searching tickets and the live edges, mints one connect token per
//! player and settles the tickets — all of a match's tickets or none.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use outpost_protocol::{ConnectToken, MatchId, PlayerId, TokenError, TokenSigner};

use crate::edges::EdgeRecord;
use crate::matchmaking::{EdgeSlot, FormedMatch, Ticket, TicketPlayer, pass};
use crate::modes::ModeConfig;
use crate::store::{MatchRecord, Placement, StoreError, TicketRecord, TicketStatus};
use crate::{Cloud, now_ms};

/// How long placements count against an edge's room before its heartbeats show them.
const RESERVATION: Duration = Duration::from_secs(5);

/// Seats promised on edges but perhaps not yet in their heartbeats.
#[derive(Default)]
pub struct Reservations {
    /// Per edge: when, and how many players (each entry is one match).
    by_edge: HashMap<String, VecDeque<(u64, u32)>>,
}

impl Reservations {
    /// Players and matches placed on an edge within the window.
    fn held(&mut self, edge_id: &str, now_ms: u64) -> (u32, u32) {
        let Some(list) = self.by_edge.get_mut(edge_id) else {
            return (0, 0);
        };
        while list
            .front()
            .is_some_and(|(at, _)| at + RESERVATION.as_millis() as u64 <= now_ms)
        {
            list.pop_front();
        }
        (list.iter().map(|(_, n)| n).sum(), list.len() as u32)
    }

    fn add(&mut self, edge_id: &str, players: u32, now_ms: u64) {
        let list = self.by_edge.entry(edge_id.to_owned()).or_default();
        list.push_back((now_ms, players));
        // Bounded: more than this many placements on one edge in the window is
        // impossible with sane capacities; the oldest are forgotten first.
        if list.len() > 4096 {
            list.pop_front();
        }
    }
}

/// Matches a round places at once.
const PLACING_AT_ONCE: usize = 32;

/// A placement's connect tokens are valid this long.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Everything one formed match becomes: its record and its settled tickets.
pub fn place(
    formed: &FormedMatch,
    tickets: &HashMap<u64, &TicketRecord>,
    edge: &EdgeRecord,
    mode: &ModeConfig,
    match_id: u64,
    signer: &TokenSigner,
    now_ms: u64,
) -> Result<(MatchRecord, Vec<TicketRecord>), TokenError> {
    let players: usize = formed.teams.iter().map(Vec::len).sum();
    let mut config = mode.match_config.clone();
    config.max_players = players.clamp(1, 128) as u16;
    config.seed = match_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_ms;
    // One signature for the whole match: each player's token is the signed grant plus
    // their seat and its secret.
    let terms = ConnectToken {
        player_id: PlayerId(0),
        match_id: MatchId(match_id),
        team: 0,
        edge_id: edge.heartbeat.edge_id.clone(),
        config,
        issued_at_ms: now_ms,
        expires_at_ms: now_ms + TOKEN_TTL.as_millis() as u64,
        nonce: [0; 16],
    };
    // Each seat carries the team the matchmaker put its player on: the edge seats them
    // there, and the result is rated by the same teams.
    let team_of = |player: u64| {
        formed
            .teams
            .iter()
            .position(|team| team.contains(&player))
            .map_or(0, |t| t.min(usize::from(u8::MAX)) as u8)
    };
    let seats: Vec<(PlayerId, u8, [u8; 16])> = formed
        .tickets
        .iter()
        .filter_map(|id| tickets.get(id))
        .flat_map(|t| t.players.iter())
        .map(|p| (PlayerId(p.player_id), team_of(p.player_id), rand::random()))
        .collect();
    let mut signed = signer.sign_match(&terms, &seats)?.into_iter();
    let mut updates = Vec::with_capacity(formed.tickets.len());
    for id in &formed.tickets {
        let Some(ticket) = tickets.get(id) else {
            continue;
        };
        let mut tokens = BTreeMap::new();
        for member in &ticket.players {
            let token = signed.next().ok_or(TokenError::TooLong)?;
            tokens.insert(member.player_id, token.to_text());
        }
        let mut update = (*ticket).clone();
        update.status = TicketStatus::Matched;
        update.placement = Some(Placement {
            match_id,
            edge_id: edge.heartbeat.edge_id.clone(),
            region: formed.region.clone(),
            quic_addr: edge.heartbeat.quic_addr.clone(),
            cert_sha256: edge.heartbeat.cert_sha256.clone(),
            tokens,
            teams: formed.teams.clone(),
        });
        updates.push(update);
    }
    let record = MatchRecord {
        match_id,
        mode: mode.name.clone(),
        edge_id: edge.heartbeat.edge_id.clone(),
        region: formed.region.clone(),
        teams: formed.teams.clone(),
        created_at_ms: now_ms,
        schema_hash: mode.match_config.schema_hash,
    };
    Ok((record, updates))
}

/// The matcher's view of a stored ticket.
pub fn as_ticket(record: &TicketRecord) -> Ticket {
    Ticket {
        id: record.id,
        players: record
            .players
            .iter()
            .map(|p| TicketPlayer {
                player_id: p.player_id,
                rating: p.rating,
            })
            .collect(),
        pings_ms: record.pings_ms.clone(),
        created_at_ms: record.created_at_ms,
    }
}

/// One round for `mode`, if this replica holds the mode's lease. Returns the matches
/// placed.
pub async fn round(cloud: &Cloud, mode: &ModeConfig) -> Result<usize, StoreError> {
    let lease_ttl = cloud.config.matcher_interval.saturating_mul(5).as_millis() as u64;
    if !cloud
        .store
        .lease(&lease_name(mode), &cloud.instance, lease_ttl)
        .await?
    {
        return Ok(0);
    }
    let now = now_ms();
    let mut searching = cloud.store.searching(&mode.name).await?;
    let (expired, live): (Vec<TicketRecord>, Vec<TicketRecord>) =
        searching.drain(..).partition(|t| t.expires_at_ms <= now);
    for mut ticket in expired {
        ticket.status = TicketStatus::Expired;
        cloud.store.settle(std::slice::from_ref(&ticket)).await?;
    }
    if live.is_empty() {
        return Ok(0);
    }
    let edges = cloud.store.live_edges(now / 1000).await?;
    let mut slots: Vec<EdgeSlot> = {
        let mut reservations = cloud.reservations.lock().unwrap_or_else(|e| e.into_inner());
        edges
            .iter()
            .map(|e| {
                let beat = &e.heartbeat;
                let (players, matches) = reservations.held(&beat.edge_id, now);
                EdgeSlot {
                    edge_id: beat.edge_id.clone(),
                    region: beat.region.clone(),
                    free: beat
                        .capacity
                        .saturating_sub(beat.load)
                        .saturating_sub(players),
                    free_matches: beat
                        .match_capacity
                        .saturating_sub(beat.matches)
                        .saturating_sub(matches),
                    draining: beat.draining,
                }
            })
            .collect()
    };
    let tickets: Vec<Ticket> = live.iter().map(as_ticket).collect();
    let formed = pass(&tickets, &mut slots, &mode.rules, now);
    let by_id: HashMap<u64, &TicketRecord> = live.iter().map(|t| (t.id, t)).collect();
    // Matches hold disjoint tickets: they are placed concurrently, a bounded number at a
    // time (each is a few store round trips).
    let placing: Vec<_> = formed
        .iter()
        .map(|m| place_formed(cloud, mode, m, &by_id, &edges, now))
        .collect();
    let mut outcomes = futures_util::stream::iter(placing).buffer_unordered(PLACING_AT_ONCE);
    let mut placed = 0;
    let mut failed = None;
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(settled) => placed += usize::from(settled),
            // The others still finish: their tickets are settled or still searching.
            Err(err) => failed = Some(err),
        }
    }
    match failed {
        Some(err) if placed == 0 => Err(err),
        Some(err) => {
            tracing::warn!(%err, placed, "some placements failed; their tickets search on");
            Ok(placed)
        }
        None => Ok(placed),
    }
}

/// Places one formed match: its id, record and settled tickets; false if a ticket was
/// cancelled meanwhile (the match is void, the rest search on).
async fn place_formed(
    cloud: &Cloud,
    mode: &ModeConfig,
    m: &FormedMatch,
    by_id: &HashMap<u64, &TicketRecord>,
    edges: &[EdgeRecord],
    now: u64,
) -> Result<bool, StoreError> {
    let Some(edge) = edges.iter().find(|e| e.heartbeat.edge_id == m.edge_id) else {
        return Ok(false);
    };
    let match_id = cloud.store.next_id("match").await?;
    let (record, updates) = place(m, by_id, edge, mode, match_id, &cloud.connect, now_ms())
        .map_err(|e| StoreError(e.to_string()))?;
    cloud.store.put_match(&record).await?;
    let settled = cloud.store.settle(&updates).await?;
    if settled {
        let players: u32 = m.teams.iter().map(|t| t.len() as u32).sum();
        cloud
            .reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&m.edge_id, players, now);
        cloud.stats.matches_placed.inc();
        tracing::info!(match_id, edge = %m.edge_id, region = %m.region, players, "match placed");
    }
    Ok(settled)
}

/// The lease of `mode`'s matcher.
fn lease_name(mode: &ModeConfig) -> String {
    format!("matcher:{}", mode.name)
}

/// This replica's matchers, one per mode. Dropped, they stop where they are (as a crash
/// would: their leases run out in their TTL); [`Matchers::stop`] also gives the leases
/// up, so another replica takes over at its next round.
pub struct Matchers {
    cloud: Arc<Cloud>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Matchers {
    /// Stops every matcher and releases the leases this replica holds.
    pub async fn stop(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            // Wait for it to be gone (a round in flight may still renew the lease).
            let _ = task.await;
        }
        for mode in &self.cloud.config.modes {
            match self
                .cloud
                .store
                .release(&lease_name(mode), &self.cloud.instance)
                .await
            {
                Ok(true) => tracing::info!(mode = %mode.name, "matcher lease released"),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(mode = %mode.name, %err, "matcher lease not released; it runs out by itself")
                }
            }
        }
    }
}

impl Drop for Matchers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs a matcher per mode until [`Matchers`] is stopped or dropped.
pub fn spawn(cloud: Arc<Cloud>) -> Matchers {
    let tasks = cloud
        .config
        .modes
        .iter()
        .cloned()
        .map(|mode| {
            let cloud = cloud.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(cloud.config.matcher_interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    if let Err(err) = round(&cloud, &mode).await {
                        tracing::warn!(mode = %mode.name, %err, "matcher round failed; retrying");
                    }
                }
            })
        })
        .collect();
    Matchers { cloud, tasks }
}
