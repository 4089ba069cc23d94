//! The in-memory store: one lock, lost at exit.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    BoardEntry, BoardOp, HISTORY_LEN, MatchRecord, Rating, RefreshUse, ReplayMeta, ResultWrite,
    Store, StoreFuture, TicketRecord, TicketStatus, board_member, member_player,
};
use crate::edges::EdgeRecord;

/// How long settled tickets stay readable, milliseconds.
const SETTLED_KEEP_MS: u64 = 10 * 60 * 1000;

/// A score ordered with `total_cmp`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Best first: higher score, then higher member (earlier time).
type RowKey = (Reverse<Score>, Reverse<String>);

#[derive(Default)]
struct Board {
    rows: BTreeSet<RowKey>,
    players: HashMap<u64, (f64, String)>,
    expire_at: u64,
}

#[derive(Default)]
struct Memory {
    players: HashMap<String, u64>,
    /// Refresh tokens by hash: family, player, expiry, used.
    refresh: HashMap<String, (String, u64, u64, bool)>,
    /// Revoked families, until when.
    revoked: HashMap<String, u64>,
    edges: HashMap<String, EdgeRecord>,
    sequences: HashMap<String, u64>,
    tickets: HashMap<u64, TicketRecord>,
    leases: HashMap<String, (String, u64)>,
    matches: HashMap<u64, MatchRecord>,
    ratings: HashMap<(String, u64), Rating>,
    results: HashMap<u64, String>,
    history: HashMap<u64, VecDeque<u64>>,
    boards: HashMap<String, Board>,
    replays: HashMap<u64, ReplayMeta>,
    player_replays: HashMap<u64, VecDeque<u64>>,
}

impl Memory {
    /// The next id of a sequence: one more than the last, and at least the clock's floor.
    fn next_id(&mut self, sequence: &str) -> u64 {
        let floor = super::id_floor(now_ms());
        let last = self.sequences.entry(sequence.to_owned()).or_insert(0);
        *last = (*last + 1).max(floor);
        *last
    }
}

/// Everything in memory, lost at exit.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn push_newest(list: &mut VecDeque<u64>, id: u64) {
    list.push_front(id);
    list.truncate(HISTORY_LEN);
}

impl Memory {
    fn board(&mut self, name: &str) -> Option<&Board> {
        let now = now_ms() / 1000;
        if self
            .boards
            .get(name)
            .is_some_and(|b| b.expire_at != 0 && b.expire_at <= now)
        {
            self.boards.remove(name);
        }
        self.boards.get(name)
    }
}

impl Board {
    fn write(&mut self, op: BoardOp, player: u64, value: f64, at_ms: u64) {
        let old = self.players.get(&player).cloned();
        let new = match (op, &old) {
            (BoardOp::Best, Some((score, _))) if *score >= value => return,
            (BoardOp::Incr, Some((score, _))) => score + value,
            _ => value,
        };
        if let Some((score, member)) = old {
            self.rows.remove(&(Reverse(Score(score)), Reverse(member)));
        }
        let member = board_member(at_ms, player);
        self.rows
            .insert((Reverse(Score(new)), Reverse(member.clone())));
        self.players.insert(player, (new, member));
    }
}

impl Store for MemoryStore {
    fn player_for_device<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut memory = self.lock();
            if let Some(&id) = memory.players.get(device_id) {
                return Ok(id);
            }
            let id = memory.next_id("player");
            memory.players.insert(device_id.to_owned(), id);
            Ok(id)
        })
    }

    fn put_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        family: &'a str,
        player_id: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if expires_at > now {
                self.lock().refresh.insert(
                    token_hash.to_owned(),
                    (family.to_owned(), player_id, expires_at, false),
                );
            }
            Ok(())
        })
    }

    fn take_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, RefreshUse> {
        Box::pin(async move {
            let mut memory = self.lock();
            memory
                .refresh
                .retain(|_, (_, _, expires, _)| *expires > now);
            memory.revoked.retain(|_, until| *until > now);
            if memory.revoked.contains_key(family) {
                return Ok(RefreshUse::Revoked);
            }
            let Some((of, player, _, used)) = memory.refresh.get_mut(token_hash) else {
                return Ok(RefreshUse::Unknown);
            };
            if of != family {
                return Ok(RefreshUse::Unknown);
            }
            if *used {
                return Ok(RefreshUse::Reused(*player));
            }
            *used = true;
            Ok(RefreshUse::Fresh(*player))
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.lock().revoked.insert(family.to_owned(), until);
            Ok(())
        })
    }

    fn put_edge<'a>(&'a self, edge: &'a EdgeRecord, now: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if edge.expires_at > now {
                self.lock()
                    .edges
                    .insert(edge.heartbeat.edge_id.clone(), edge.clone());
            }
            Ok(())
        })
    }

    fn live_edges(&self, now: u64) -> StoreFuture<'_, Vec<EdgeRecord>> {
        Box::pin(async move {
            let mut memory = self.lock();
            memory.edges.retain(|_, e| e.expires_at > now);
            Ok(memory.edges.values().cloned().collect())
        })
    }

    fn next_id<'a>(&'a self, sequence: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move { Ok(self.lock().next_id(sequence)) })
    }

    fn put_ticket<'a>(&'a self, ticket: &'a TicketRecord) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut memory = self.lock();
            let now = now_ms();
            let held = memory.tickets.values().find(|t| {
                t.mode == ticket.mode
                    && t.status == TicketStatus::Searching
                    && t.expires_at_ms > now
                    && t.players
                        .iter()
                        .any(|m| ticket.players.iter().any(|p| p.player_id == m.player_id))
            });
            if let Some(held) = held {
                return Ok(Some(held.id));
            }
            memory.tickets.insert(ticket.id, ticket.clone());
            Ok(None)
        })
    }

    fn ticket(&self, id: u64) -> StoreFuture<'_, Option<TicketRecord>> {
        Box::pin(async move { Ok(self.lock().tickets.get(&id).cloned()) })
    }

    fn searching<'a>(&'a self, mode: &'a str) -> StoreFuture<'a, Vec<TicketRecord>> {
        Box::pin(async move {
            let mut memory = self.lock();
            let now = now_ms();
            memory.tickets.retain(|_, t| {
                t.status == TicketStatus::Searching
                    || t.expires_at_ms.saturating_add(SETTLED_KEEP_MS) > now
            });
            Ok(memory
                .tickets
                .values()
                .filter(|t| t.status == TicketStatus::Searching && t.mode == mode)
                .cloned()
                .collect())
        })
    }

    fn settle<'a>(&'a self, updates: &'a [TicketRecord]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut memory = self.lock();
            let all_searching = updates.iter().all(|u| {
                memory
                    .tickets
                    .get(&u.id)
                    .is_some_and(|t| t.status == TicketStatus::Searching)
            });
            if !all_searching {
                return Ok(false);
            }
            for update in updates {
                memory.tickets.insert(update.id, update.clone());
            }
            Ok(true)
        })
    }

    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, ttl_ms: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut memory = self.lock();
            let now = now_ms();
            let free = memory
                .leases
                .get(name)
                .is_none_or(|(who, until)| who == holder || *until <= now);
            if free {
                memory
                    .leases
                    .insert(name.to_owned(), (holder.to_owned(), now + ttl_ms));
            }
            Ok(free)
        })
    }

    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut memory = self.lock();
            let held = memory
                .leases
                .get(name)
                .is_some_and(|(who, until)| who == holder && *until > now_ms());
            if held {
                memory.leases.remove(name);
            }
            Ok(held)
        })
    }

    fn put_match<'a>(&'a self, record: &'a MatchRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.lock().matches.insert(record.match_id, record.clone());
            Ok(())
        })
    }

    fn match_record(&self, match_id: u64) -> StoreFuture<'_, Option<MatchRecord>> {
        Box::pin(async move { Ok(self.lock().matches.get(&match_id).cloned()) })
    }

    fn ratings<'a>(
        &'a self,
        mode: &'a str,
        players: &'a [u64],
    ) -> StoreFuture<'a, Vec<Option<Rating>>> {
        Box::pin(async move {
            let memory = self.lock();
            Ok(players
                .iter()
                .map(|p| memory.ratings.get(&(mode.to_owned(), *p)).copied())
                .collect())
        })
    }

    fn apply_result<'a>(&'a self, write: &'a ResultWrite) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut memory = self.lock();
            if memory.results.contains_key(&write.match_id) {
                return Ok(false);
            }
            memory
                .results
                .insert(write.match_id, write.result_json.clone());
            for (player, rating) in &write.ratings {
                memory
                    .ratings
                    .insert((write.mode.clone(), *player), *rating);
            }
            for w in &write.boards {
                memory.board(&w.board);
                let board = memory.boards.entry(w.board.clone()).or_default();
                board.write(w.op, w.player_id, w.value, w.at_ms);
                board.expire_at = w.expire_at;
            }
            for player in &write.players {
                push_newest(memory.history.entry(*player).or_default(), write.match_id);
            }
            Ok(true)
        })
    }

    fn result(&self, match_id: u64) -> StoreFuture<'_, Option<String>> {
        Box::pin(async move { Ok(self.lock().results.get(&match_id).cloned()) })
    }

    fn history(&self, player_id: u64, limit: usize) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .history
                .get(&player_id)
                .map(|h| h.iter().take(limit).copied().collect())
                .unwrap_or_default())
        })
    }

    fn board_page<'a>(
        &'a self,
        board: &'a str,
        offset: u64,
        limit: u64,
    ) -> StoreFuture<'a, (Vec<BoardEntry>, u64)> {
        Box::pin(async move {
            let mut memory = self.lock();
            let Some(board) = memory.board(board) else {
                return Ok((Vec::new(), 0));
            };
            let rows = board
                .rows
                .iter()
                .enumerate()
                .skip(offset as usize)
                .take(limit as usize)
                .filter_map(|(i, (Reverse(score), Reverse(member)))| {
                    Some(BoardEntry {
                        rank: i as u64 + 1,
                        player_id: member_player(member)?,
                        score: score.0,
                    })
                })
                .collect();
            Ok((rows, board.rows.len() as u64))
        })
    }

    fn board_entry<'a>(
        &'a self,
        board: &'a str,
        player_id: u64,
    ) -> StoreFuture<'a, Option<BoardEntry>> {
        Box::pin(async move {
            let mut memory = self.lock();
            let Some(board) = memory.board(board) else {
                return Ok(None);
            };
            let Some((score, member)) = board.players.get(&player_id) else {
                return Ok(None);
            };
            let key = (Reverse(Score(*score)), Reverse(member.clone()));
            let rank = board.rows.range(..key).count() as u64 + 1;
            Ok(Some(BoardEntry {
                rank,
                player_id,
                score: *score,
            }))
        })
    }

    fn put_replay<'a>(&'a self, meta: &'a ReplayMeta) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut memory = self.lock();
            if memory.replays.contains_key(&meta.match_id) {
                return Ok(false);
            }
            memory.replays.insert(meta.match_id, meta.clone());
            for player in &meta.players {
                push_newest(
                    memory.player_replays.entry(*player).or_default(),
                    meta.match_id,
                );
            }
            Ok(true)
        })
    }

    fn replay(&self, match_id: u64) -> StoreFuture<'_, Option<ReplayMeta>> {
        Box::pin(async move { Ok(self.lock().replays.get(&match_id).cloned()) })
    }

    fn player_replays(&self, player_id: u64, limit: usize) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .player_replays
                .get(&player_id)
                .map(|h| h.iter().take(limit).copied().collect())
                .unwrap_or_default())
        })
    }
}
