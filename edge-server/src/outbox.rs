//! The outbox: what the edge owes the cloud (match results, replays), on disk until the
//! cloud has it. Writes are atomic (temporary file, fsync, rename, fsync of the folder),
//! so a crash leaves either the whole item or none; on restart the cloud link delivers
//! what is there. Delivery is idempotent at the cloud, so an item delivered just before
//! a crash and delivered again is applied once.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use outpost_protocol::MatchId;

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

    /// Writes an item durably; replaces one of the same match and kind.
    pub fn put(&self, match_id: MatchId, kind: ItemKind, bytes: &[u8]) -> std::io::Result<()> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if kind == ItemKind::Replay
            && self.pending_replay_bytes()? + bytes.len() as u64 > self.max_replay_bytes
        {
            return Err(std::io::Error::other(
                "outbox replay space is full; replay dropped",
            ));
        }
        let name = format!("{}.{}", match_id.0, kind.suffix());
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
