//! Storage behind a trait: [`MemoryStore`] for `outpost dev` and unit tests,
//! [`RedisStore`] for production. One conformance suite (`tests/store.rs`) runs against
//! both.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::edges::EdgeRecord;

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
    /// Remembers a refresh token (by hash) for a player until `expires_at` (Unix seconds);
    /// one already expired at `now` is not stored.
    fn put_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        player_id: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()>;
    /// Takes a refresh token: returns its player once, if it exists and has not expired.
    fn take_refresh<'a>(&'a self, token_hash: &'a str, now: u64) -> StoreFuture<'a, Option<u64>>;
    /// Registers or refreshes an edge until its `expires_at`.
    fn put_edge<'a>(&'a self, edge: &'a EdgeRecord, now: u64) -> StoreFuture<'a, ()>;
    /// The edges not expired at `now`.
    fn live_edges(&self, now: u64) -> StoreFuture<'_, Vec<EdgeRecord>>;
}

#[derive(Default)]
struct Memory {
    players: HashMap<String, u64>,
    refresh: HashMap<String, (u64, u64)>,
    next_player: u64,
    edges: HashMap<String, EdgeRecord>,
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
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if expires_at > now {
                self.lock()
                    .refresh
                    .insert(token_hash.to_owned(), (player_id, expires_at));
            }
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
}

/// Redis, through a connection manager (reconnects by itself). Key names carry a hash tag
/// (`{auth}`) so they stay in one slot under Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    redis: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`); `prefix` namespaces every key.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let redis = client.get_connection_manager().await.map_err(redis_error)?;
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{{auth}}:{name}", self.prefix)
    }

    fn edge_key(&self, name: &str) -> String {
        format!("{}:{{edges}}:{name}", self.prefix)
    }
}

fn redis_error(err: redis::RedisError) -> StoreError {
    StoreError(err.to_string())
}

impl Store for RedisStore {
    fn player_for_device<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let players = self.key("players");
            let known: Option<u64> = redis::cmd("HGET")
                .arg(&players)
                .arg(device_id)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            if let Some(id) = known {
                return Ok(id);
            }
            let id: u64 = redis::cmd("INCR")
                .arg(self.key("player_seq"))
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            let created: bool = redis::cmd("HSETNX")
                .arg(&players)
                .arg(device_id)
                .arg(id)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            if created {
                return Ok(id);
            }
            // Another request created it first: theirs stands (our id goes unused).
            let id: Option<u64> = redis::cmd("HGET")
                .arg(&players)
                .arg(device_id)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            id.ok_or_else(|| StoreError("player vanished while being created".into()))
        })
    }

    fn put_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        player_id: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if expires_at <= now {
                return Ok(());
            }
            let mut redis = self.redis.clone();
            redis::cmd("SET")
                .arg(self.key(&format!("refresh:{token_hash}")))
                .arg(player_id)
                .arg("EXAT")
                .arg(expires_at)
                .query_async::<()>(&mut redis)
                .await
                .map_err(redis_error)
        })
    }

    fn take_refresh<'a>(&'a self, token_hash: &'a str, _now: u64) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            // GETDEL is atomic: of two concurrent refreshes with one token, one wins.
            redis::cmd("GETDEL")
                .arg(self.key(&format!("refresh:{token_hash}")))
                .query_async(&mut redis)
                .await
                .map_err(redis_error)
        })
    }

    fn put_edge<'a>(&'a self, edge: &'a EdgeRecord, now: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if edge.expires_at <= now {
                return Ok(());
            }
            let json = serde_json::to_string(edge).map_err(|e| StoreError(e.to_string()))?;
            let mut redis = self.redis.clone();
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(self.edge_key(&edge.heartbeat.edge_id))
                .arg(json)
                .arg("EXAT")
                .arg(edge.expires_at)
                .ignore()
                .cmd("SADD")
                .arg(self.edge_key("index"))
                .arg(&edge.heartbeat.edge_id)
                .ignore()
                .query_async::<()>(&mut redis)
                .await
                .map_err(redis_error)
        })
    }

    fn live_edges(&self, now: u64) -> StoreFuture<'_, Vec<EdgeRecord>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let ids: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.edge_key("index"))
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| self.edge_key(id)).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            let mut live = Vec::new();
            let mut gone = Vec::new();
            for (id, value) in ids.iter().zip(values) {
                match value.and_then(|v| serde_json::from_str::<EdgeRecord>(&v).ok()) {
                    Some(edge) if edge.expires_at > now => live.push(edge),
                    Some(_) => {}
                    None => gone.push(id.clone()),
                }
            }
            if !gone.is_empty() {
                redis::cmd("SREM")
                    .arg(self.edge_key("index"))
                    .arg(&gone)
                    .query_async::<()>(&mut redis)
                    .await
                    .map_err(redis_error)?;
            }
            Ok(live)
        })
    }
}
