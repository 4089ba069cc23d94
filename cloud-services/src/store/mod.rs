//! Storage behind a trait: [`MemoryStore`] for `outpost dev` and unit tests,
//! [`RedisStore`] for production. One conformance suite (`tests/store.rs`) runs against
//! both.
//!
//! Every method that must be atomic says so; the Redis store keeps those promises with
//! one Lua script or one `MULTI` each, the memory store with one lock.

mod memory;
mod redis;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use self::memory::MemoryStore;
pub use self::redis::{Durability, Persistence, RedisStore};
use crate::edges::EdgeRecord;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Boxed future returned by store methods.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A skill rating (Weng-Lin): mean and uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rating {
    /// Mean skill. New players start at 25.
    pub mu: f64,
    /// Uncertainty (standard deviation). New players start at 25/3.
    pub sigma: f64,
}

impl Default for Rating {
    fn default() -> Self {
        Self {
            mu: 25.0,
            sigma: 25.0 / 3.0,
        }
    }
}

/// Where a ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// Waiting for a match.
    Searching,
    /// Placed: the assignment says where.
    Matched,
    /// Cancelled by a player.
    Cancelled,
    /// Waited its whole time to live without a match.
    Expired,
}

/// A player in a ticket, with their rating when the ticket was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketMember {
    /// The player.
    pub player_id: u64,
    /// Their rating's mean in the ticket's mode.
    pub rating: f64,
}

/// Where a matched ticket's players play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The match.
    pub match_id: u64,
    /// The edge.
    pub edge_id: String,
    /// Its region.
    pub region: String,
    /// Its QUIC address.
    pub quic_addr: String,
    /// SHA-256 of its certificate, hex.
    pub cert_sha256: String,
    /// Connect token of each of the ticket's players (player id → token text).
    pub tokens: BTreeMap<u64, String>,
    /// Players per team, the whole match.
    pub teams: Vec<Vec<u64>>,
}

/// A ticket as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// Ticket id.
    pub id: u64,
    /// Game mode.
    pub mode: String,
    /// Who made it.
    pub owner: u64,
    /// The party.
    pub players: Vec<TicketMember>,
    /// Worst round-trip time of the party per region, milliseconds.
    pub pings_ms: BTreeMap<String, u32>,
    /// Made at, Unix milliseconds.
    pub created_at_ms: u64,
    /// Expires (if still searching) at, Unix milliseconds.
    pub expires_at_ms: u64,
    /// Where it is.
    pub status: TicketStatus,
    /// Set once matched.
    pub placement: Option<Placement>,
}

/// A match the matcher placed: what a result is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchRecord {
    /// The match.
    pub match_id: u64,
    /// Its mode.
    pub mode: String,
    /// The edge it was placed on.
    pub edge_id: String,
    /// Its region.
    pub region: String,
    /// Players per team.
    pub teams: Vec<Vec<u64>>,
    /// Placed at, Unix milliseconds.
    pub created_at_ms: u64,
    /// The schema hash of the configuration it was placed with (its replay must carry
    /// that schema); 0 in records written before it was kept, which are not checked.
    #[serde(default)]
    pub schema_hash: u64,
}

/// How a leaderboard write combines with what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BoardOp {
    /// Keep the higher of old and new.
    Best,
    /// Replace.
    Set,
    /// Add.
    Incr,
}

/// One leaderboard write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardWrite {
    /// The board and period, e.g. `arena-best:d20418`.
    pub board: String,
    /// How it combines.
    pub op: BoardOp,
    /// Whose entry.
    pub player_id: u64,
    /// The value.
    pub value: f64,
    /// When, Unix milliseconds: among equal scores, who got there first ranks higher.
    pub at_ms: u64,
    /// When the board expires, Unix seconds (0: never).
    pub expire_at: u64,
}

/// Everything one match result changes, applied at most once per match id.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultWrite {
    /// The match.
    pub match_id: u64,
    /// Its mode (ratings are per mode).
    pub mode: String,
    /// New ratings.
    pub ratings: Vec<(u64, Rating)>,
    /// Leaderboard writes.
    pub boards: Vec<BoardWrite>,
    /// Players whose history gets the match.
    pub players: Vec<u64>,
    /// The result as received (JSON), kept with the match.
    pub result_json: String,
}

/// A leaderboard row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BoardEntry {
    /// 1-based rank.
    pub rank: u64,
    /// The player.
    pub player_id: u64,
    /// Their score.
    pub score: f64,
}

/// A stored replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayMeta {
    /// The match.
    pub match_id: u64,
    /// Its players.
    pub players: Vec<u64>,
    /// Size, bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, hex (also the download's `ETag`).
    pub sha256: String,
    /// Stored at, Unix milliseconds.
    pub stored_at_ms: u64,
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshUse {
    /// Never seen, or expired.
    Unknown,
    /// Its first use: the player it was issued to.
    Fresh(u64),
    /// Used before: whoever presents it now, or presented it then, is not the only holder.
    Reused(u64),
    /// Its family was revoked (reuse seen, or logout).
    Revoked,
}

/// Ids given out per millisecond before a sequence runs ahead of the clock.
pub const IDS_PER_MS: u64 = 1024;

/// The least id a sequence may give at `now_ms`: the time in milliseconds × 1024. Ids
/// stay below 2^53 (exact as JSON numbers everywhere) until the year 2248.
pub fn id_floor(now_ms: u64) -> u64 {
    now_ms.saturating_mul(IDS_PER_MS)
}

/// Most matches kept in a player's history and replay index.
pub const HISTORY_LEN: usize = 100;

/// What the cloud keeps.
pub trait Store: Send + Sync {
    /// Whether the store answers (Redis: `PING`, on a cluster every primary); the cloud's
    /// `/readyz`.
    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// The player of a device, created on first sight.
    fn player_for_device<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, u64>;
    /// Remembers a refresh token (by hash) of a login's token `family` for a player until
    /// `expires_at` (Unix seconds); one already expired at `now` is not stored.
    fn put_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        family: &'a str,
        player_id: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()>;
    /// Uses a refresh token of `family`, atomically: the first use is
    /// [`RefreshUse::Fresh`]; a later one [`RefreshUse::Reused`] (the token is kept, used,
    /// until it expires, so reuse is seen); a token of a revoked family
    /// [`RefreshUse::Revoked`].
    fn take_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, RefreshUse>;
    /// Revokes a token family until `until` (Unix seconds): none of its tokens works again.
    fn revoke_family<'a>(&'a self, family: &'a str, until: u64) -> StoreFuture<'a, ()>;
    /// Registers or refreshes an edge until its `expires_at`.
    fn put_edge<'a>(&'a self, edge: &'a EdgeRecord, now: u64) -> StoreFuture<'a, ()>;
    /// The edges not expired at `now`.
    fn live_edges(&self, now: u64) -> StoreFuture<'_, Vec<EdgeRecord>>;

    /// A new id from the named sequence: increasing, and never below [`id_floor`] of
    /// now, so ids never repeat — not even after Redis restarts from a snapshot older than
    /// the last id (a plain counter would hand out again ids that tokens still name).
    fn next_id<'a>(&'a self, sequence: &'a str) -> StoreFuture<'a, u64>;
    /// Stores a new, searching ticket and queues it in its mode — atomically, unless one
    /// of its players already has a searching ticket in that mode: then nothing is stored
    /// and that ticket's id is returned.
    fn put_ticket<'a>(&'a self, ticket: &'a TicketRecord) -> StoreFuture<'a, Option<u64>>;
    /// A ticket, while it is kept (settled ones for a while after they settle).
    fn ticket(&self, id: u64) -> StoreFuture<'_, Option<TicketRecord>>;
    /// The searching tickets of a mode.
    fn searching<'a>(&'a self, mode: &'a str) -> StoreFuture<'a, Vec<TicketRecord>>;
    /// Atomically moves every ticket in `updates` (same ids, new status) out of
    /// searching — all of them, or none if any is no longer searching. Returns whether
    /// it did.
    fn settle<'a>(&'a self, updates: &'a [TicketRecord]) -> StoreFuture<'a, bool>;
    /// Takes or renews the lease `name` for `holder` for `ttl_ms`; false if another
    /// holder has it.
    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, ttl_ms: u64) -> StoreFuture<'a, bool>;
    /// Gives up the lease `name` if `holder` has it (another may take it at once); true
    /// if it did.
    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> StoreFuture<'a, bool>;
    /// Records a placed match.
    fn put_match<'a>(&'a self, record: &'a MatchRecord) -> StoreFuture<'a, ()>;
    /// A placed match.
    fn match_record(&self, match_id: u64) -> StoreFuture<'_, Option<MatchRecord>>;
    /// Ratings of players in a mode (`None`: never rated).
    fn ratings<'a>(
        &'a self,
        mode: &'a str,
        players: &'a [u64],
    ) -> StoreFuture<'a, Vec<Option<Rating>>>;
    /// Applies a result atomically, once per match id: true if this call applied it,
    /// false if it had been applied before.
    fn apply_result<'a>(&'a self, write: &'a ResultWrite) -> StoreFuture<'a, bool>;
    /// The result of a match, as applied (JSON).
    fn result(&self, match_id: u64) -> StoreFuture<'_, Option<String>>;
    /// Matches a player played, newest first.
    fn history(&self, player_id: u64, limit: usize) -> StoreFuture<'_, Vec<u64>>;
    /// Rows `offset..offset + limit` of a board, best first, and how many it has.
    fn board_page<'a>(
        &'a self,
        board: &'a str,
        offset: u64,
        limit: u64,
    ) -> StoreFuture<'a, (Vec<BoardEntry>, u64)>;
    /// A player's row on a board.
    fn board_entry<'a>(
        &'a self,
        board: &'a str,
        player_id: u64,
    ) -> StoreFuture<'a, Option<BoardEntry>>;
    /// Indexes a stored replay by match and by player; false if the match had one.
    fn put_replay<'a>(&'a self, meta: &'a ReplayMeta) -> StoreFuture<'a, bool>;
    /// A replay's index entry.
    fn replay(&self, match_id: u64) -> StoreFuture<'_, Option<ReplayMeta>>;
    /// A player's replays, newest first.
    fn player_replays(&self, player_id: u64, limit: usize) -> StoreFuture<'_, Vec<u64>>;
}

/// Sort member of a board entry: equal scores rank by who got there first. Redis orders
/// equal scores by member bytes, and a board is read highest first, so the member starts
/// with the time counted down.
pub(crate) fn board_member(at_ms: u64, player_id: u64) -> String {
    format!(
        "{:013}:{player_id}",
        9_999_999_999_999u64.saturating_sub(at_ms)
    )
}

/// The player in a board member.
pub(crate) fn member_player(member: &str) -> Option<u64> {
    member.split_once(':').and_then(|(_, p)| p.parse().ok())
}
