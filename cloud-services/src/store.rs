//! Storage behind a trait: the in-memory store for `outpost dev` and tests (a Redis store
//! for production comes with the rest of the cloud services).

use std::collections::HashMap;
use std::sync::Mutex;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Boxed future returned by store methods.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the cloud keeps.
pub trait Store: Send + Sync {
    /// The player of a device, created on first sight.
    fn player_for_device<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, u64>;
    /// Remembers a refresh token (by hash) for a player until `expires_at` (Unix seconds).
    fn put_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        player_id: u64,
        expires_at: u64,
    ) -> StoreFuture<'a, ()>;
    /// Takes a refresh token: returns its player once, if it exists and has not expired.
    fn take_refresh<'a>(&'a self, token_hash: &'a str, now: u64) -> StoreFuture<'a, Option<u64>>;
}

#[derive(Default)]
struct Memory {
    players: HashMap<String, u64>,
    refresh: HashMap<String, (u64, u64)>,
    next_player: u64,
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

impl Store for MemoryStore {
    fn player_for_device<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut memory = self.lock();
            if let Some(&id) = memory.players.get(device_id) {
                return Ok(id);
            }
            memory.next_player += 1;
            let id = memory.next_player;
            memory.players.insert(device_id.to_owned(), id);
            Ok(id)
        })
    }

    fn put_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        player_id: u64,
        expires_at: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.lock()
                .refresh
                .insert(token_hash.to_owned(), (player_id, expires_at));
            Ok(())
        })
    }

    fn take_refresh<'a>(&'a self, token_hash: &'a str, now: u64) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut memory = self.lock();
            memory.refresh.retain(|_, (_, expires)| *expires > now);
            Ok(memory.refresh.remove(token_hash).map(|(player, _)| player))
        })
    }
}
