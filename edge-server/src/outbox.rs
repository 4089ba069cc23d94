//! The outbox: what the edge owes the cloud (match results, replays), on disk until the
//! cloud has it. Writes are atomic (temporary file, fsync, rename, fsync of the folder),
//! so a crash leaves either the whole item or none; on restart the cloud link delivers
//! what is there. Delivery is idempotent at the cloud, so an item delivered just before
//! a crash and delivered again is applied once.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use outpost_protocol::{MatchEndReason, MatchId};

use crate::metrics::EdgeMetrics;
use crate::worker::FinishedMatch;

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    /// A match result (JSON).
    Result,
    /// A replay (see `outpost_protocol::replay`).
    Replay,
}

impl ItemKind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Result => "result.json",
            Self::Replay => "replay.opr",
        }
    }
}

/// One pending item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    /// Its match.
    pub match_id: MatchId,
    /// What it is.
    pub kind: ItemKind,
    /// Where it lies.
    pub path: PathBuf,
}

/// The outbox folder.
pub struct Outbox {
    pending: PathBuf,
    dead: PathBuf,
    max_replay_bytes: u64,
    write_lock: Mutex<()>,
    notify: tokio::sync::Notify,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`. Replays beyond `max_replay_bytes` in total
    /// pending are not kept (results always are: they are small and what matters).
    pub fn open(dir: &Path, max_replay_bytes: u64) -> std::io::Result<Self> {
        let pending = dir.join("pending");
        let dead = dir.join("dead");
        fs::create_dir_all(&pending)?;
        fs::create_dir_all(&dead)?;
        // Leftovers of writes cut short by a crash.
        for entry in fs::read_dir(&pending)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            pending,
            dead,
            max_replay_bytes,
            write_lock: Mutex::new(()),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// Writes an item durably; a replay replaces one of the same match, a result never
    /// replaces a pending one (`AlreadyExists`).
    pub fn put(&self, match_id: MatchId, kind: ItemKind, bytes: &[u8]) -> std::io::Result<()> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if kind == ItemKind::Replay
            && self.pending_replay_bytes()? + bytes.len() as u64 > self.max_replay_bytes
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::QuotaExceeded,
                "outbox replay space is full; replay dropped",
            ));
        }
        let name = format!("{}.{}", match_id.0, kind.suffix());
        // A match has one result: one pending is never replaced (by a match raised again
        // under its id, say).
        if kind == ItemKind::Result && self.pending.join(&name).exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a result for this match is already pending",
            ));
        }
        let tmp = self.pending.join(format!("{name}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.pending.join(&name))?;
        File::open(&self.pending)?.sync_all()?;
        self.notify.notify_one();
        Ok(())
    }

    fn pending_replay_bytes(&self) -> std::io::Result<u64> {
        Ok(self
            .pending()?
            .iter()
            .filter(|i| i.kind == ItemKind::Replay)
            .filter_map(|i| fs::metadata(&i.path).ok())
            .map(|m| m.len())
            .sum())
    }

    /// The pending items: results first, then by match id.
    pub fn pending(&self) -> std::io::Result<Vec<Item>> {
        let mut items = Vec::new();
        for entry in fs::read_dir(&self.pending)?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((id, suffix)) = name.split_once('.') else {
                continue;
            };
            let kind = match suffix {
                "result.json" => ItemKind::Result,
                "replay.opr" => ItemKind::Replay,
                _ => continue,
            };
            let Ok(id) = id.parse() else { continue };
            items.push(Item {
                match_id: MatchId(id),
                kind,
                path: entry.path(),
            });
        }
        items.sort_by_key(|i| (i.kind, i.match_id));
        Ok(items)
    }

    /// Removes a delivered item.
    pub fn done(&self, item: &Item) -> std::io::Result<()> {
        fs::remove_file(&item.path)
    }

    /// Sets aside an item the cloud refused for good (kept for an operator to look at).
    pub fn dead(&self, item: &Item) -> std::io::Result<()> {
        let name = item.path.file_name().unwrap_or_default();
        fs::rename(&item.path, self.dead.join(name))
    }

    /// Resolves when an item is written (or at once if one was written since the last
    /// wait).
    pub async fn written(&self) {
        self.notify.notified().await;
    }
}

/// Longest between two attempts at an outbox write that failed.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long, once the edge is stopping, the writer keeps retrying what it could not write.
const RETRY_AT_STOP: Duration = Duration::from_secs(10);
/// Failed attempts after which a replay is given up (results never are).
const REPLAY_ATTEMPTS: u32 = 5;

/// An item waiting to be written.
struct Unwritten {
    match_id: MatchId,
    kind: ItemKind,
    bytes: Vec<u8>,
    attempts: u32,
}

/// The outbox writer thread: each ended match's result, then its replay, durably. A write
/// that fails (a full disk, no file descriptors left) never loses a result: it is kept
/// in memory and retried with backoff, counted (`outbox_write_failures_total`,
/// `outbox_unwritten`) and logged as an error each time. A replay is given up after a few
/// attempts (or at once when its space is full). When the edge stops, what is still
/// unwritten is retried for a few seconds, then each result is logged in full at error
/// level, the one place left to recover it from.
pub(crate) fn write_finished(
    outbox: &Outbox,
    edge_id: &str,
    finished: &Receiver<FinishedMatch>,
    metrics: &EdgeMetrics,
) {
    let mut unwritten: VecDeque<Unwritten> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);
    let mut stopping_at: Option<Instant> = None;
    loop {
        let next = if unwritten.is_empty() {
            match finished.recv() {
                Ok(done) => Some(done),
                Err(_) => return,
            }
        } else if stopping_at.is_some() {
            std::thread::sleep(backoff);
            None
        } else {
            match finished.recv_timeout(backoff) {
                Ok(done) => Some(done),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    stopping_at = Some(Instant::now());
                    None
                }
            }
        };
        if let Some(done) = next {
            metrics.matches_finished.inc();
            let result = result_json(edge_id, &done);
            unwritten.push_back(Unwritten {
                match_id: done.match_id,
                kind: ItemKind::Result,
                bytes: result.into_bytes(),
                attempts: 0,
            });
            if let Some(replay) = done.replay {
                unwritten.push_back(Unwritten {
                    match_id: done.match_id,
                    kind: ItemKind::Replay,
                    bytes: replay,
                    attempts: 0,
                });
            }
        }
        let mut failed = false;
        unwritten.retain_mut(|item| match outbox.put(item.match_id, item.kind, &item.bytes) {
            Ok(()) => {
                tracing::info!(match_id = %item.match_id, kind = ?item.kind, "written to the outbox");
                false
            }
            Err(err)
                if item.kind == ItemKind::Replay
                    && err.kind() == std::io::ErrorKind::QuotaExceeded =>
            {
                tracing::warn!(match_id = %item.match_id, %err, "replay not kept");
                false
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                tracing::error!(match_id = %item.match_id, %err, "a second result for a match; the first is kept");
                false
            }
            Err(err) => {
                failed = true;
                item.attempts += 1;
                metrics.outbox_write_failures.inc();
                let keep = item.kind == ItemKind::Result || item.attempts < REPLAY_ATTEMPTS;
                tracing::error!(match_id = %item.match_id, kind = ?item.kind, attempts = item.attempts,
                    %err, kept = keep, "writing to the outbox failed");
                keep
            }
        });
        let results = unwritten
            .iter()
            .filter(|i| i.kind == ItemKind::Result)
            .count();
        metrics.outbox_unwritten.set(results as i64);
        backoff = if failed {
            (backoff * 2).min(MAX_RETRY)
        } else {
            Duration::from_millis(100)
        };
        if let Some(at) = stopping_at
            && (unwritten.is_empty() || at.elapsed() >= RETRY_AT_STOP)
        {
            for item in unwritten.iter().filter(|i| i.kind == ItemKind::Result) {
                tracing::error!(match_id = %item.match_id, result = %String::from_utf8_lossy(&item.bytes),
                    "stopping with a result that could not be written to the outbox");
            }
            return;
        }
    }
}

/// The JSON result the cloud takes for an ended match.
fn result_json(edge_id: &str, done: &FinishedMatch) -> String {
    let outcome = match done.outcome {
        Some(MatchEndReason::TimeUp | MatchEndReason::ScoreLimit) => "completed",
        Some(MatchEndReason::Abandoned) => "abandoned",
        Some(MatchEndReason::Shutdown) | None => "shutdown",
    };
    serde_json::json!({
        "edge_id": edge_id,
        "outcome": outcome,
        "ticks": done.ticks,
        "players": done.players.iter().map(|s| serde_json::json!({
            "player_id": s.score.player.0,
            "score": s.score.score,
            "stats": done
                .stat_names
                .iter()
                .zip(s.stats)
                .map(|(name, n)| (name.to_string(), serde_json::Value::from(n)))
                .collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc::sync_channel;

    use outpost_protocol::{EntityId, PlayerId, PlayerScore};
    use outpost_sim::Standing;

    use super::*;

    #[test]
    fn a_pending_result_is_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("opens");
        outbox
            .put(MatchId(3), ItemKind::Result, b"first")
            .expect("writes");
        let again = outbox.put(MatchId(3), ItemKind::Result, b"second");
        assert_eq!(
            again.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::AlreadyExists)
        );
        let items = outbox.pending().expect("lists");
        assert_eq!(fs::read(&items[0].path).expect("reads"), b"first");
    }

    /// Regression test for an outbox write that failed (the process out of file
    /// descriptors, say): the result was logged as lost and dropped. Now it is kept,
    /// counted and retried until it is written.
    #[tokio::test]
    async fn outbox_write_failure_keeps_the_result_and_retries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Outbox::open(dir.path(), 1 << 20).expect("opens"));
        // Every write fails while the outbox's folder is a file (even for root).
        let pending = dir.path().join("pending");
        fs::remove_dir(&pending).expect("removes");
        fs::write(&pending, b"").expect("writes");
        let metrics = Arc::new(EdgeMetrics::new());
        let (tx, rx) = sync_channel(4);
        let writer = {
            let (outbox, metrics) = (outbox.clone(), metrics.clone());
            std::thread::spawn(move || write_finished(&outbox, "edge-1", &rx, &metrics))
        };
        tx.send(FinishedMatch {
            match_id: MatchId(9),
            outcome: Some(MatchEndReason::TimeUp),
            ticks: 600,
            players: vec![Standing {
                score: PlayerScore {
                    player: PlayerId(4),
                    entity: EntityId(1),
                    score: 3,
                },
                stats: [0, 2, 0, 0, 0, 0, 0, 0],
            }],
            stat_names: &["pickups", "returns"],
            replay: None,
        })
        .expect("sends");
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.outbox_unwritten.get() == 0 {
            assert!(Instant::now() < deadline, "the result was never held");
            std::thread::yield_now();
        }
        assert!(metrics.outbox_write_failures.get() >= 1);

        // The disk comes back: the result is written on a retry.
        fs::remove_file(&pending).expect("removes");
        fs::create_dir(&pending).expect("creates");
        tokio::time::timeout(Duration::from_secs(10), outbox.written())
            .await
            .expect("the retry writes the result");
        drop(tx);
        writer.join().expect("writer ends");
        let items = outbox.pending().expect("lists");
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].match_id, items[0].kind),
            (MatchId(9), ItemKind::Result)
        );
        let result = fs::read_to_string(&items[0].path).expect("reads");
        assert!(result.contains("\"player_id\":4"), "{result}");
        assert!(
            result.contains("\"stats\":{\"pickups\":0,\"returns\":2}"),
            "the mode's stats by name: {result}"
        );
        assert_eq!(metrics.outbox_unwritten.get(), 0);
    }
}
