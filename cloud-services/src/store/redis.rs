//! The Redis store: one server through a connection manager (reconnects by itself), or
//! a Redis Cluster through the cluster client (follows slot moves and failovers by
//! itself). Keys carry hash tags so that what one script touches shares a cluster slot:
//! `{auth}`, `{edges}`, `{mm}` (tickets, leases, placed matches), `{play}` (results,
//! ratings, leaderboards, histories) and `{replays}`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    BoardEntry, BoardOp, HISTORY_LEN, MatchRecord, Rating, RefreshUse, ReplayMeta, ResultWrite,
    Store, StoreError, StoreFuture, TicketRecord, TicketStatus, member_player,
};
use crate::edges::EdgeRecord;

/// How long settled tickets stay readable, milliseconds.
const SETTLED_KEEP_MS: u64 = 10 * 60 * 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn json_error(err: serde_json::Error) -> StoreError {
    StoreError(err.to_string())
}

/// Moves tickets out of searching, all or none. KEYS: n ticket keys, then the n
/// searching sets; ARGV: n new bodies, then the n ids.
const SETTLE: &str = r"
local n = #KEYS / 2
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if not v then return 0 end
  if cjson.decode(v).status ~= 'searching' then return 0 end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i], 'KEEPTTL')
  redis.call('ZREM', KEYS[n + i], ARGV[n + i])
end
return 1
";

/// Stores a ticket unless one of its players holds a searching ticket in the mode.
/// KEYS: the ticket, the mode's searching set, then each player's active-ticket key.
/// ARGV: the body, the id, its score, the body's lifetime (ms), the active keys'
/// lifetime (ms), then for each active key the value known to be stale ('' for none).
/// Returns '' when stored, or `index:ticket` of an active key that names another ticket.
const PUT_TICKET: &str = r"
for i = 3, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and v ~= ARGV[i + 3] then return (i - 2) .. ':' .. v end
end
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[5]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return ''
";

/// Uses a refresh token. KEYS[1]: the token, KEYS[2]: its family's revocation mark.
/// ARGV[1]: the family. Returns `revoked`, `unknown`, `fresh:<player>` or
/// `reused:<player>`; a fresh token is marked used (kept until it expires).
const TAKE_REFRESH: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 'revoked' end
local v = redis.call('GET', KEYS[1])
if not v then return 'unknown' end
local r = cjson.decode(v)
if r.f ~= ARGV[1] then return 'unknown' end
if r.u then return 'reused:' .. r.p end
r.u = true
redis.call('SET', KEYS[1], cjson.encode(r), 'KEEPTTL')
return 'fresh:' .. r.p
";

/// The next id of a sequence: one more than the last, and at least the clock's floor
/// (ARGV[1]), so a counter restored from an old snapshot never repeats an id.
const NEXT_ID: &str = r"
local floor = tonumber(ARGV[1])
local v = redis.call('INCR', KEYS[1])
if v < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return v
";

const LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Deletes a lease if ARGV[1] holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Applies a batch of results, each once. ARGV[1]: how many; ARGV[2]: how long a
/// player's history is kept; then per result the number of its keys, the number of its
/// arguments, and those: the result, the ratings (a count, then player and rating for
/// each), the board writes (a count, then for each its operation, player, value, member
/// and expiry), the histories (a count, then the match). Each result's keys follow the
/// previous one's in KEYS, in the order its arguments use them: its marker, the mode's
/// ratings, each board write's board, members and top page, then each history list.
/// The script keeps no closure or table per result: two cursors walk KEYS and ARGV
/// (measured: a result costs the server a tenth less than with key indices passed and
/// closures made per result). A board write that changes its top page drops the page
/// [`TOP_PAGE_READ`] keeps. Answers per result: 1 applied, 0 applied before, or the error
/// that stopped it (one result's error does not stop the others').
const APPLY_RESULTS: &str = r"
local TOP_PAGE = 100
local keep = tonumber(ARGV[2])
local k, a = 0, 0
local function key() k = k + 1; return KEYS[k] end
local function arg() a = a + 1; return ARGV[a] end
local function apply()
  if not redis.call('SET', key(), arg(), 'NX') then return 0 end
  local ratings = key()
  for _ = 1, tonumber(arg()) do redis.call('HSET', ratings, arg(), arg()) end
  for _ = 1, tonumber(arg()) do
    local z, h, top = key(), key(), key()
    local op, player, value, member = arg(), arg(), tonumber(arg()), arg()
    local expire = tonumber(arg())
    local m = redis.call('HGET', h, player)
    local old = nil
    if m then old = tonumber(redis.call('ZSCORE', z, m)) end
    local new = nil
    if op == 'best' then
      if (not old) or value > old then new = value end
    elseif op == 'set' then new = value
    else new = (old or 0) + value end
    if new then
      -- The kept top page goes if the entry was or is in it.
      local stale = false
      if m then
        local r = redis.call('ZREVRANK', z, m)
        stale = r and r < TOP_PAGE
        redis.call('ZREM', z, m)
      end
      redis.call('ZADD', z, new, member)
      redis.call('HSET', h, player, member)
      if stale or redis.call('ZREVRANK', z, member) < TOP_PAGE then redis.call('DEL', top) end
    end
    if expire > 0 then
      redis.call('EXPIREAT', z, expire)
      redis.call('EXPIREAT', h, expire)
      redis.call('EXPIREAT', top, expire)
    end
  end
  local histories = tonumber(arg())
  if histories > 0 then
    local match = arg()
    for _ = 1, histories do
      local list = key()
      redis.call('LPUSH', list, match)
      redis.call('LTRIM', list, 0, keep - 1)
    end
  end
  return 1
end
local out, base, at = {}, 0, 2
for i = 1, tonumber(ARGV[1]) do
  local keys, args = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  k, a = base, at + 2
  local ok, applied = pcall(apply)
  if ok then
    out[i] = applied
  elseif type(applied) == 'table' and applied.err then
    out[i] = applied.err
  else
    out[i] = tostring(applied)
  end
  base, at = base + keys, at + 2 + args
end
return out
";

/// Entries of a board's top page, kept as one string beside the board.
const TOP_PAGE: u64 = 100;

/// A board's top page and its size. KEYS[1]: the board, KEYS[2]: its kept top page (the
/// top [`TOP_PAGE`] members and scores, space-separated, as `ZRANGE … WITHSCORES` gives
/// them): read, or built and kept until a write to the top page drops it (the board's
/// expiry too). A board that does not exist keeps nothing, so reads of made-up boards
/// store nothing.
const TOP_PAGE_READ: &str = r"
local n = redis.call('ZCARD', KEYS[1])
if n == 0 then return {'', 0} end
local page = redis.call('GET', KEYS[2])
if page then return {page, n} end
page = table.concat(redis.call('ZRANGE', KEYS[1], 0, 99, 'REV', 'WITHSCORES'), ' ')
local at = redis.call('PEXPIRETIME', KEYS[1])
if at > 0 then
  redis.call('SET', KEYS[2], page, 'PXAT', at)
else
  redis.call('SET', KEYS[2], page)
end
return {page, n}
";

/// Indexes a replay once. KEYS[1]: the replay, then the players' lists.
const PUT_REPLAY: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
for i = 2, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[2])
  redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[3]) - 1)
end
return 1
";

/// When a write the cloud acknowledges to an edge (a result, a replay's index) counts as
/// durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must have the write (`WAIT`) before it is acknowledged; 0: the
    /// primary alone (then only its own AOF fsync keeps it). Default 0.
    pub wait_replicas: u32,
    /// Also wait for the primary's AOF fsync (`WAITAOF`, Redis 7.2 or newer). Default
    /// off: with `appendfsync always` the write is on disk before Redis answers anyway.
    pub wait_local_fsync: bool,
    /// Longest to wait; a write not made durable in time is answered 500, and the edge
    /// retries it (results apply once). Default 1 s.
    pub wait_timeout: std::time::Duration,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            wait_replicas: 0,
            wait_local_fsync: false,
            wait_timeout: std::time::Duration::from_secs(1),
        }
    }
}

/// What a Redis server keeps on disk, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `appendonly` (`yes`: the AOF is on).
    pub appendonly: String,
    /// `appendfsync` (`always`, `everysec` or `no`).
    pub appendfsync: String,
}

impl Persistence {
    /// Whether an acknowledged write survives a crash of the primary: AOF on with fsync
    /// on every write, or a replica that has it (`wait_replicas`).
    pub fn durable(&self, durability: &Durability) -> bool {
        durability.wait_replicas > 0
            || (self.appendonly == "yes"
                && (self.appendfsync == "always" || durability.wait_local_fsync))
    }
}

/// A connection to one server or to a cluster; every command of the store goes through
/// it unchanged (the cluster client routes each by its key's slot).
#[derive(Clone)]
enum Connection {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The nodes named by a cluster URL, `redis+cluster://[user:password@]host:port[,host:port…]`
/// (`rediss+cluster://` for TLS), as `redis://` URLs the cluster client starts from; `None`
/// for a single-server URL.
pub fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, StoreError>> {
    let (scheme, rest) = url.split_once("://")?;
    let base = scheme.strip_suffix("+cluster")?;
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{base}://{auth}{h}"))
        .collect();
    if nodes.is_empty() || !matches!(base, "redis" | "rediss") {
        return Some(Err(StoreError(format!(
            "a cluster URL is redis+cluster://host:port[,host:port…], not `{url}`"
        ))));
    }
    Some(Ok(nodes))
}

/// Connections kept (to one server, or cluster clients each with a connection per node):
/// concurrent requests spread over them, so decoding answers is not all on the one task
/// that drives a multiplexed connection.
const CONNECTIONS: usize = 4;

/// Redis: one server or a cluster.
#[derive(Clone)]
pub struct RedisStore {
    /// Several connections (one server) or cluster clients, taken in turn.
    pool: std::sync::Arc<[Connection]>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    prefix: String,
    durability: Durability,
    /// Results waiting to be applied, and the batch senders running.
    results: std::sync::Arc<std::sync::Mutex<ResultBatches>>,
}

/// A result ready for [`APPLY_RESULTS`].
struct PreparedResult {
    keys: Vec<String>,
    args: Vec<String>,
}

/// Where a result's outcome goes.
type ResultAnswer = tokio::sync::oneshot::Sender<Result<bool, StoreError>>;

/// Results queued for the store: applied in batches, one script call each, so that many
/// concurrent results cost the server one call and the link one round trip.
#[derive(Default)]
struct ResultBatches {
    queue: Vec<(PreparedResult, ResultAnswer)>,
    in_flight: usize,
}

/// Batches of results on their way at once (one per connection).
const RESULT_BATCHES_IN_FLIGHT: usize = CONNECTIONS;
/// Most results in one batch.
const MAX_RESULT_BATCH: usize = 64;
/// Most results waiting for a batch; more are refused (the edges' outboxes retry).
const MAX_QUEUED_RESULTS: usize = 4096;

/// The store's scripts, each with its SHA-1 (what `EVALSHA` names it by) computed once
/// per process rather than on every call.
struct Scripts {
    next_id: redis::Script,
    take_refresh: redis::Script,
    put_ticket: redis::Script,
    settle: redis::Script,
    lease: redis::Script,
    release: redis::Script,
    apply_results: redis::Script,
    top_page_read: redis::Script,
    put_replay: redis::Script,
}

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    next_id: redis::Script::new(NEXT_ID),
    take_refresh: redis::Script::new(TAKE_REFRESH),
    put_ticket: redis::Script::new(PUT_TICKET),
    settle: redis::Script::new(SETTLE),
    lease: redis::Script::new(LEASE),
    release: redis::Script::new(RELEASE),
    apply_results: redis::Script::new(APPLY_RESULTS),
    top_page_read: redis::Script::new(TOP_PAGE_READ),
    put_replay: redis::Script::new(PUT_REPLAY),
});

impl RedisStore {
    /// Connects to `url`: one server (`redis://host:port/db`) or a Redis Cluster
    /// (`redis+cluster://host:port,host:port…`, any of its nodes; the client learns the
    /// rest); `prefix` namespaces every key.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let pool: Vec<Connection> = match cluster_nodes(url) {
            Some(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes?)
                    .connection_timeout(std::time::Duration::from_secs(2))
                    .response_timeout(std::time::Duration::from_secs(5))
                    .build()
                    .map_err(redis_error)?;
                let mut pool = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    pool.push(Connection::Cluster(
                        client.get_async_connection().await.map_err(redis_error)?,
                    ));
                }
                pool
            }
            None => {
                let client = redis::Client::open(url).map_err(redis_error)?;
                let mut pool = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    pool.push(Connection::Single(
                        client.get_connection_manager().await.map_err(redis_error)?,
                    ));
                }
                pool
            }
        };
        Ok(Self {
            pool: pool.into(),
            next: std::sync::Arc::default(),
            prefix: prefix.to_owned(),
            durability: Durability::default(),
            results: std::sync::Arc::default(),
        })
    }

    /// Whether this store is on a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.pool.first(), Some(Connection::Cluster(_)))
    }

    /// The same store, acknowledging results and replays only once `durability` holds.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// What the server keeps on disk (`CONFIG GET appendonly`, `appendfsync`); on a
    /// cluster, that of the least durable primary.
    pub async fn persistence(&self) -> Result<Persistence, StoreError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("append*");
        let nodes: Vec<std::collections::HashMap<String, String>> = match &self.conn() {
            Connection::Single(_) => vec![self.query(&cmd).await?],
            Connection::Cluster(cluster) => {
                use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                let answer = cluster
                    .clone()
                    .route_command(
                        cmd,
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                    )
                    .await
                    .map_err(redis_error)?;
                let by_node: std::collections::HashMap<
                    String,
                    std::collections::HashMap<String, String>,
                > = redis::FromRedisValue::from_redis_value(answer)
                    .map_err(|e| StoreError(e.to_string()))?;
                by_node.into_values().collect()
            }
        };
        let all: Vec<Persistence> = nodes
            .into_iter()
            .map(|config| Persistence {
                appendonly: config.get("appendonly").cloned().unwrap_or_default(),
                appendfsync: config.get("appendfsync").cloned().unwrap_or_default(),
            })
            .collect();
        let alone = Durability::default();
        all.iter()
            .find(|p| !p.durable(&alone))
            .or(all.first())
            .cloned()
            .ok_or_else(|| StoreError("no primary answered CONFIG GET".into()))
    }

    /// A result's keys (its marker first) and arguments for [`APPLY_RESULTS`], its key
    /// indices counted from its own first key.
    fn prepare_result(&self, write: &ResultWrite) -> PreparedResult {
        let mut keys = vec![
            self.play_key(&format!("result:{}", write.match_id)),
            self.play_key(&format!("ratings:{}", write.mode)),
        ];
        let mut args = Vec::with_capacity(4 + 2 * write.ratings.len() + 8 * write.boards.len());
        args.push(write.result_json.clone());
        args.push(write.ratings.len().to_string());
        for (player, rating) in &write.ratings {
            args.push(player.to_string());
            args.push(format!("{}:{}", rating.mu, rating.sigma));
        }
        args.push(write.boards.len().to_string());
        for w in &write.boards {
            keys.push(self.play_key(&format!("lb:{}", w.board)));
            keys.push(self.play_key(&format!("lb:{}:members", w.board)));
            keys.push(self.play_key(&format!("lb:{}:top", w.board)));
            args.push(
                match w.op {
                    BoardOp::Best => "best",
                    BoardOp::Set => "set",
                    BoardOp::Incr => "incr",
                }
                .to_owned(),
            );
            args.push(w.player_id.to_string());
            args.push(w.value.to_string());
            args.push(super::board_member(w.at_ms, w.player_id));
            args.push(w.expire_at.to_string());
        }
        args.push(write.players.len().to_string());
        if !write.players.is_empty() {
            args.push(write.match_id.to_string());
            for player in &write.players {
                keys.push(self.play_key(&format!("history:{player}")));
            }
        }
        PreparedResult { keys, args }
    }

    /// Queues a result for the next batch, and starts a batch sender if fewer than
    /// [`RESULT_BATCHES_IN_FLIGHT`] run. Refused when [`MAX_QUEUED_RESULTS`] wait already.
    fn enqueue_result(
        &self,
        result: PreparedResult,
        answer: ResultAnswer,
    ) -> Result<(), StoreError> {
        let mut batches = self.results.lock().unwrap_or_else(|e| e.into_inner());
        if batches.queue.len() >= MAX_QUEUED_RESULTS {
            return Err(StoreError("too many results waiting for the store".into()));
        }
        batches.queue.push((result, answer));
        if batches.in_flight < RESULT_BATCHES_IN_FLIGHT {
            batches.in_flight += 1;
            drop(batches);
            // A task of its own: the batch carries other callers' results, and must not
            // be cancelled with the caller that started it.
            tokio::spawn(self.clone().send_result_batches());
        }
        Ok(())
    }

    /// Sends the queued results in batches until none is left.
    async fn send_result_batches(self) {
        loop {
            // The callers answered by the last batch are woken now; let them queue their
            // next results first, so that this batch carries them too rather than going
            // with the one or two that were already waiting.
            tokio::task::yield_now().await;
            let batch: Vec<(PreparedResult, ResultAnswer)> = {
                let mut batches = self.results.lock().unwrap_or_else(|e| e.into_inner());
                if batches.queue.is_empty() {
                    batches.in_flight -= 1;
                    return;
                }
                let n = batches.queue.len().min(MAX_RESULT_BATCH);
                batches.queue.drain(..n).collect()
            };
            let (results, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            match self.apply_results(&results).await {
                Ok(outcomes) => {
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(outcome);
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(StoreError(e.0.clone())));
                    }
                }
            }
        }
    }

    /// One [`APPLY_RESULTS`] call for a batch, then the wait for durability: what each
    /// result came to.
    async fn apply_results(
        &self,
        results: &[PreparedResult],
    ) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
        let first = results
            .first()
            .and_then(|r| r.keys.first())
            .ok_or_else(|| StoreError("an empty batch".into()))?;
        let mut invocation = SCRIPTS.apply_results.prepare_invoke();
        invocation.arg(results.len()).arg(HISTORY_LEN);
        for r in results {
            for key in &r.keys {
                invocation.key(key);
            }
            invocation.arg(r.keys.len()).arg(r.args.len());
            for arg in &r.args {
                invocation.arg(arg);
            }
        }
        let mut redis = self.conn();
        let outcomes: Vec<redis::Value> = invocation
            .invoke_async(&mut redis)
            .await
            .map_err(redis_error)?;
        // Acknowledged to the edges (which then delete their copies) only once durable.
        self.made_durable(&redis, first).await?;
        Ok((0..results.len())
            .map(|i| match outcomes.get(i) {
                Some(redis::Value::Int(applied)) => Ok(*applied == 1),
                Some(redis::Value::BulkString(error)) => Err(StoreError(format!(
                    "result not applied: {}",
                    String::from_utf8_lossy(error)
                ))),
                Some(other) => Err(StoreError(format!("result not applied: {other:?}"))),
                None => Err(StoreError("no answer for the result".into())),
            })
            .collect())
    }

    /// One of the connections, in turn (for what must go over one connection, such as a
    /// write and the `WAIT` for it).
    fn conn(&self) -> Connection {
        let at = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pool[at % self.pool.len()].clone()
    }

    /// Sends `cmd` over `conn` to the server that holds `key` (on a cluster, its slot's
    /// primary: the node connection that just wrote it).
    async fn query_at<T: redis::FromRedisValue>(
        &self,
        conn: &Connection,
        key: &str,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        match conn {
            Connection::Single(single) => cmd
                .query_async(&mut single.clone())
                .await
                .map_err(redis_error),
            Connection::Cluster(cluster) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(key, SlotAddr::Master);
                let value = cluster
                    .clone()
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
                    .map_err(redis_error)?;
                redis::FromRedisValue::from_redis_value(value)
                    .map_err(|e| StoreError(e.to_string()))
            }
        }
    }

    /// Waits until the writes made so far on `conn` to the server holding `key` are as
    /// durable as configured; an error if they are not in time. (`WAIT` counts the writes
    /// of the connection it is sent on: it must be the one that wrote.)
    async fn made_durable(&self, conn: &Connection, key: &str) -> Result<(), StoreError> {
        let Durability {
            wait_replicas,
            wait_local_fsync,
            wait_timeout,
        } = self.durability;
        let timeout = wait_timeout.as_millis() as u64;
        if wait_local_fsync {
            let mut cmd = redis::cmd("WAITAOF");
            cmd.arg(1).arg(wait_replicas).arg(timeout);
            let (local, replicas): (u64, u64) = self.query_at(conn, key, cmd).await?;
            if local < 1 || replicas < u64::from(wait_replicas) {
                return Err(StoreError(format!(
                    "write not fsynced here ({local}) and on {wait_replicas} replicas ({replicas}) in time"
                )));
            }
        } else if wait_replicas > 0 {
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(wait_replicas).arg(timeout);
            let replicas: u64 = self.query_at(conn, key, cmd).await?;
            if replicas < u64::from(wait_replicas) {
                return Err(StoreError(format!(
                    "write reached {replicas} of {wait_replicas} replicas in time"
                )));
            }
        }
        Ok(())
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{{auth}}:{name}", self.prefix)
    }

    fn edge_key(&self, name: &str) -> String {
        format!("{}:{{edges}}:{name}", self.prefix)
    }

    /// Tickets, leases, placed matches: the matchmaker's slot.
    fn mm_key(&self, name: &str) -> String {
        format!("{}:{{mm}}:{name}", self.prefix)
    }

    /// Results, ratings, leaderboards, histories: one slot, so a result applies in one
    /// script (atomically, exactly once).
    fn play_key(&self, name: &str) -> String {
        format!("{}:{{play}}:{name}", self.prefix)
    }

    fn replay_key(&self, name: &str) -> String {
        format!("{}:{{replays}}:{name}", self.prefix)
    }

    /// The next id of the sequence kept at `key` (see [`super::id_floor`]).
    async fn next_in(&self, key: String) -> Result<u64, StoreError> {
        let mut redis = self.conn();
        SCRIPTS
            .next_id
            .key(key)
            .arg(super::id_floor(now_ms()))
            .invoke_async(&mut redis)
            .await
            .map_err(redis_error)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut redis = self.conn();
        cmd.query_async(&mut redis).await.map_err(redis_error)
    }
}

/// The first `limit` entries of a kept top page (see [`TOP_PAGE_READ`]).
fn top_page_entries(page: &str, limit: u64) -> Result<Vec<BoardEntry>, StoreError> {
    let mut words = page.split_ascii_whitespace();
    let mut entries = Vec::new();
    let mut rank = 0u64;
    while let (Some(member), Some(score)) = (words.next(), words.next()) {
        rank += 1;
        if rank > limit {
            break;
        }
        let score: f64 = score
            .parse()
            .map_err(|_| StoreError(format!("a board score that is not a number: {score:?}")))?;
        if let Some(player_id) = member_player(member) {
            entries.push(BoardEntry {
                rank,
                player_id,
                score,
            });
        }
    }
    Ok(entries)
}

fn redis_error(err: redis::RedisError) -> StoreError {
    StoreError(err.to_string())
}

impl Store for RedisStore {
    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let pong: String = self.query(&redis::cmd("PING")).await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(StoreError(format!("PING answered `{pong}`")))
            }
        })
    }

    fn player_for_device<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut redis = self.conn();
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
            let id = self.next_in(self.key("player_seq")).await?;
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
        family: &'a str,
        player_id: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if expires_at <= now {
                return Ok(());
            }
            // The player as a string: Lua's cjson would round a large number.
            let body = serde_json::json!({ "p": player_id.to_string(), "f": family, "u": false });
            let mut redis = self.conn();
            redis::cmd("SET")
                .arg(self.key(&format!("refresh:{token_hash}")))
                .arg(body.to_string())
                .arg("EXAT")
                .arg(expires_at)
                .query_async::<()>(&mut redis)
                .await
                .map_err(redis_error)
        })
    }

    fn take_refresh<'a>(
        &'a self,
        token_hash: &'a str,
        family: &'a str,
        _now: u64,
    ) -> StoreFuture<'a, RefreshUse> {
        Box::pin(async move {
            let mut redis = self.conn();
            // One script: of two concurrent uses of one token, one is fresh.
            let answer: String = SCRIPTS
                .take_refresh
                .key(self.key(&format!("refresh:{token_hash}")))
                .key(self.key(&format!("revoked:{family}")))
                .arg(family)
                .invoke_async(&mut redis)
                .await
                .map_err(redis_error)?;
            let player = |text: &str| {
                text.parse::<u64>()
                    .map_err(|_| StoreError(format!("unexpected answer `{answer}`")))
            };
            Ok(match answer.split_once(':') {
                Some(("fresh", p)) => RefreshUse::Fresh(player(p)?),
                Some(("reused", p)) => RefreshUse::Reused(player(p)?),
                _ if answer == "revoked" => RefreshUse::Revoked,
                _ => RefreshUse::Unknown,
            })
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut redis = self.conn();
            redis::cmd("SET")
                .arg(self.key(&format!("revoked:{family}")))
                .arg(1)
                .arg("EXAT")
                .arg(until.max(1))
                .query_async::<()>(&mut redis)
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
            let mut redis = self.conn();
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
            let mut redis = self.conn();
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

    fn next_id<'a>(&'a self, sequence: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move { self.next_in(self.mm_key(&format!("seq:{sequence}"))).await })
    }

    fn put_ticket<'a>(&'a self, ticket: &'a TicketRecord) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let json = serde_json::to_string(ticket).map_err(json_error)?;
            let until_expiry = ticket.expires_at_ms.saturating_sub(now_ms()).max(1);
            let keep = until_expiry.saturating_add(SETTLED_KEEP_MS);
            let active: Vec<String> = ticket
                .players
                .iter()
                .map(|p| self.mm_key(&format!("active:{}:{}", ticket.mode, p.player_id)))
                .collect();
            // An active key outlives its ticket's search when the ticket settles early:
            // such a stale one is named in the next attempt, and overwritten.
            let mut stale = vec![String::new(); active.len()];
            let script = &SCRIPTS.put_ticket;
            for _ in 0..=active.len() {
                let mut invocation = script.prepare_invoke();
                invocation
                    .key(self.mm_key(&format!("ticket:{}", ticket.id)))
                    .key(self.mm_key(&format!("searching:{}", ticket.mode)));
                for key in &active {
                    invocation.key(key);
                }
                invocation
                    .arg(&json)
                    .arg(ticket.id)
                    .arg(ticket.created_at_ms)
                    .arg(keep)
                    .arg(until_expiry);
                for value in &stale {
                    invocation.arg(value);
                }
                let mut redis = self.conn();
                let answer: String = invocation
                    .invoke_async(&mut redis)
                    .await
                    .map_err(redis_error)?;
                let Some((index, held)) = answer.split_once(':') else {
                    return Ok(None);
                };
                let (Ok(index), Ok(held)) = (index.parse::<usize>(), held.parse::<u64>()) else {
                    return Err(StoreError(format!("unexpected answer `{answer}`")));
                };
                let searching = self.ticket(held).await?.is_some_and(|t| {
                    t.status == TicketStatus::Searching && t.expires_at_ms > now_ms()
                });
                if searching {
                    return Ok(Some(held));
                }
                if let Some(slot) = stale.get_mut(index.wrapping_sub(1)) {
                    *slot = held.to_string();
                }
            }
            Err(StoreError("active tickets kept changing".into()))
        })
    }

    fn ticket(&self, id: u64) -> StoreFuture<'_, Option<TicketRecord>> {
        Box::pin(async move {
            let json: Option<String> = self
                .query(redis::cmd("GET").arg(self.mm_key(&format!("ticket:{id}"))))
                .await?;
            json.map(|j| serde_json::from_str(&j).map_err(json_error))
                .transpose()
        })
    }

    fn searching<'a>(&'a self, mode: &'a str) -> StoreFuture<'a, Vec<TicketRecord>> {
        Box::pin(async move {
            let set = self.mm_key(&format!("searching:{mode}"));
            let ids: Vec<u64> = self
                .query(redis::cmd("ZRANGE").arg(&set).arg(0).arg(-1))
                .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids
                .iter()
                .map(|id| self.mm_key(&format!("ticket:{id}")))
                .collect();
            let mut tickets = Vec::with_capacity(ids.len());
            let mut gone = Vec::new();
            for (chunk_ids, chunk_keys) in ids.chunks(1000).zip(keys.chunks(1000)) {
                let values: Vec<Option<String>> =
                    self.query(redis::cmd("MGET").arg(chunk_keys)).await?;
                for (id, value) in chunk_ids.iter().zip(values) {
                    match value.and_then(|v| serde_json::from_str::<TicketRecord>(&v).ok()) {
                        Some(t) if t.status == TicketStatus::Searching => tickets.push(t),
                        _ => gone.push(*id),
                    }
                }
            }
            if !gone.is_empty() {
                self.query::<()>(redis::cmd("ZREM").arg(&set).arg(&gone))
                    .await?;
            }
            Ok(tickets)
        })
    }

    fn settle<'a>(&'a self, updates: &'a [TicketRecord]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if updates.is_empty() {
                return Ok(true);
            }
            let script = &SCRIPTS.settle;
            let mut invocation = script.prepare_invoke();
            for update in updates {
                invocation.key(self.mm_key(&format!("ticket:{}", update.id)));
            }
            for update in updates {
                invocation.key(self.mm_key(&format!("searching:{}", update.mode)));
            }
            for update in updates {
                invocation.arg(serde_json::to_string(update).map_err(json_error)?);
            }
            for update in updates {
                invocation.arg(update.id);
            }
            let mut redis = self.conn();
            let done: i64 = invocation
                .invoke_async(&mut redis)
                .await
                .map_err(redis_error)?;
            Ok(done == 1)
        })
    }

    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, ttl_ms: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut redis = self.conn();
            let held: i64 = SCRIPTS
                .lease
                .key(self.mm_key(&format!("lease:{name}")))
                .arg(holder)
                .arg(ttl_ms)
                .invoke_async(&mut redis)
                .await
                .map_err(redis_error)?;
            Ok(held == 1)
        })
    }

    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut redis = self.conn();
            let released: i64 = SCRIPTS
                .release
                .key(self.mm_key(&format!("lease:{name}")))
                .arg(holder)
                .invoke_async(&mut redis)
                .await
                .map_err(redis_error)?;
            Ok(released == 1)
        })
    }

    fn put_match<'a>(&'a self, record: &'a MatchRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(record).map_err(json_error)?;
            // Kept a week: results may arrive late, after an outage.
            self.query(
                redis::cmd("SET")
                    .arg(self.mm_key(&format!("match:{}", record.match_id)))
                    .arg(json)
                    .arg("EX")
                    .arg(7 * 86_400),
            )
            .await
        })
    }

    fn match_record(&self, match_id: u64) -> StoreFuture<'_, Option<MatchRecord>> {
        Box::pin(async move {
            let json: Option<String> = self
                .query(redis::cmd("GET").arg(self.mm_key(&format!("match:{match_id}"))))
                .await?;
            json.map(|j| serde_json::from_str(&j).map_err(json_error))
                .transpose()
        })
    }

    fn ratings<'a>(
        &'a self,
        mode: &'a str,
        players: &'a [u64],
    ) -> StoreFuture<'a, Vec<Option<Rating>>> {
        Box::pin(async move {
            if players.is_empty() {
                return Ok(Vec::new());
            }
            let values: Vec<Option<String>> = self
                .query(
                    redis::cmd("HMGET")
                        .arg(self.play_key(&format!("ratings:{mode}")))
                        .arg(players),
                )
                .await?;
            Ok(values
                .into_iter()
                .map(|v| {
                    let (mu, sigma) = v.as_deref()?.split_once(':')?;
                    Some(Rating {
                        mu: mu.parse().ok()?,
                        sigma: sigma.parse().ok()?,
                    })
                })
                .collect())
        })
    }

    fn apply_result<'a>(&'a self, write: &'a ResultWrite) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.enqueue_result(self.prepare_result(write), tx)?;
            rx.await
                .map_err(|_| StoreError("the result's batch was dropped".into()))?
        })
    }

    fn result(&self, match_id: u64) -> StoreFuture<'_, Option<String>> {
        Box::pin(async move {
            self.query(redis::cmd("GET").arg(self.play_key(&format!("result:{match_id}"))))
                .await
        })
    }

    fn history(&self, player_id: u64, limit: usize) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(async move {
            self.query(
                redis::cmd("LRANGE")
                    .arg(self.play_key(&format!("history:{player_id}")))
                    .arg(0)
                    .arg(limit as i64 - 1),
            )
            .await
        })
    }

    fn board_page<'a>(
        &'a self,
        board: &'a str,
        offset: u64,
        limit: u64,
    ) -> StoreFuture<'a, (Vec<BoardEntry>, u64)> {
        Box::pin(async move {
            let key = self.play_key(&format!("lb:{board}"));
            if limit == 0 {
                let total: u64 = self.query(redis::cmd("ZCARD").arg(&key)).await?;
                return Ok((Vec::new(), total));
            }
            if offset == 0 && limit <= TOP_PAGE {
                let (page, total): (String, u64) = SCRIPTS
                    .top_page_read
                    .key(&key)
                    .key(self.play_key(&format!("lb:{board}:top")))
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(redis_error)?;
                return Ok((top_page_entries(&page, limit)?, total));
            }
            let mut redis = self.conn();
            let (rows, total): (Vec<(String, f64)>, u64) = redis::pipe()
                .cmd("ZRANGE")
                .arg(&key)
                .arg(offset)
                .arg(offset + limit - 1)
                .arg("REV")
                .arg("WITHSCORES")
                .cmd("ZCARD")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            let entries = rows
                .into_iter()
                .enumerate()
                .filter_map(|(i, (member, score))| {
                    Some(BoardEntry {
                        rank: offset + i as u64 + 1,
                        player_id: member_player(&member)?,
                        score,
                    })
                })
                .collect();
            Ok((entries, total))
        })
    }

    fn board_entry<'a>(
        &'a self,
        board: &'a str,
        player_id: u64,
    ) -> StoreFuture<'a, Option<BoardEntry>> {
        Box::pin(async move {
            let key = self.play_key(&format!("lb:{board}"));
            let member: Option<String> = self
                .query(
                    redis::cmd("HGET")
                        .arg(self.play_key(&format!("lb:{board}:members")))
                        .arg(player_id),
                )
                .await?;
            let Some(member) = member else {
                return Ok(None);
            };
            let mut redis = self.conn();
            let (rank, score): (Option<u64>, Option<f64>) = redis::pipe()
                .cmd("ZREVRANK")
                .arg(&key)
                .arg(&member)
                .cmd("ZSCORE")
                .arg(&key)
                .arg(&member)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            Ok(rank.zip(score).map(|(rank, score)| BoardEntry {
                rank: rank + 1,
                player_id,
                score,
            }))
        })
    }

    fn put_replay<'a>(&'a self, meta: &'a ReplayMeta) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let json = serde_json::to_string(meta).map_err(json_error)?;
            let script = &SCRIPTS.put_replay;
            let mut invocation = script.prepare_invoke();
            let replay = self.replay_key(&format!("replay:{}", meta.match_id));
            invocation.key(&replay);
            for player in &meta.players {
                invocation.key(self.replay_key(&format!("player:{player}")));
            }
            invocation.arg(json).arg(meta.match_id).arg(HISTORY_LEN);
            let mut redis = self.conn();
            let stored: i64 = invocation
                .invoke_async(&mut redis)
                .await
                .map_err(redis_error)?;
            self.made_durable(&redis, &replay).await?;
            Ok(stored == 1)
        })
    }

    fn replay(&self, match_id: u64) -> StoreFuture<'_, Option<ReplayMeta>> {
        Box::pin(async move {
            let json: Option<String> = self
                .query(redis::cmd("GET").arg(self.replay_key(&format!("replay:{match_id}"))))
                .await?;
            json.map(|j| serde_json::from_str(&j).map_err(json_error))
                .transpose()
        })
    }

    fn player_replays(&self, player_id: u64, limit: usize) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(async move {
            self.query(
                redis::cmd("LRANGE")
                    .arg(self.replay_key(&format!("player:{player_id}")))
                    .arg(0)
                    .arg(limit as i64 - 1),
            )
            .await
        })
    }
}
