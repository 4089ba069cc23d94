//! Leaderboard write and top-100 read through the Redis store, against `redis-benchmark`
//! doing the bare commands (ZADD; ZREVRANGE 0 99 WITHSCORES) on the same private Redis,
//! side by side in one run — on one server, then on a cluster of three primaries with a
//! replica each — and the matcher's placements per second on each. Prints operations per
//! second and the ratios.
//!
//! `cargo bench --bench leaderboard` (needs `redis-server`, `redis-cli` and
//! `redis-benchmark`).
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark binary that reports on stdout"
)]

#[path = "../cloud-services/tests/common/redis.rs"]
mod redis_server;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use outpost_cloud::store::{BoardOp, BoardWrite, ResultWrite};
use outpost_cloud::{RedisStore, Store};

const OPS: u64 = 400_000;
const CLIENTS: u64 = 32;
const ENTRIES: u64 = 10_000;

fn redis_benchmark(port: u16, args: &[&str]) -> f64 {
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            &OPS.to_string(),
            "-c",
            &CLIENTS.to_string(),
            "-r",
            "100000",
            "--csv",
        ])
        .args(args)
        .output()
        .expect("redis-benchmark runs (Debian: apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&output.stdout);
    // "test","rps",...  then  "ZADD ...","85034.01",...
    text.lines()
        .nth(1)
        .and_then(|line| line.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "unexpected redis-benchmark output: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

async fn concurrently<F, Fut>(op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..OPS / CLIENTS {
                    op(c * (OPS / CLIENTS) + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

fn write(match_id: u64, player: u64, value: f64) -> ResultWrite {
    ResultWrite {
        match_id,
        mode: "arena".into(),
        ratings: Vec::new(),
        boards: vec![BoardWrite {
            board: "bench:all".into(),
            op: BoardOp::Best,
            player_id: player,
            value,
            at_ms: match_id,
            expire_at: 0,
        }],
        players: Vec::new(),
        result_json: "{}".into(),
    }
}

/// Matches the matcher places per second through `store`: 4,000 searching players of
/// the arena (2 × 4) and one edge with room for them all, one round.
async fn placements(store: Arc<dyn Store>) -> f64 {
    use outpost_cloud::edges::{EdgeHeartbeat, EdgeRecord};
    use outpost_cloud::store::{TicketMember, TicketRecord, TicketStatus};
    use outpost_cloud::{Cloud, CloudConfig, KeyRing};

    const PLAYERS: u64 = 4_000;
    let config = CloudConfig::dev();
    let mode = config.modes[0].clone();
    let keys = KeyRing::from_seed(&config, [7; 32]);
    let blobs = Arc::new(object_store::memory::InMemory::new());
    let cloud = Cloud::new(config, keys, [8; 32], store.clone(), blobs);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let now = now_ms / 1000;
    let edge = EdgeRecord {
        heartbeat: EdgeHeartbeat {
            edge_id: "bench-edge".into(),
            region: "eu-west".into(),
            quic_addr: "127.0.0.1:7777".into(),
            cert_sha256: "ab".repeat(32),
            capacity: PLAYERS as u32,
            load: 0,
            match_capacity: PLAYERS as u32,
            matches: 0,
            draining: false,
        },
        last_seen: now,
        expires_at: now + 600,
    };
    store.put_edge(&edge, now).await.unwrap();
    for player in 1..=PLAYERS {
        let ticket = TicketRecord {
            id: store.next_id("ticket").await.unwrap(),
            mode: mode.name.clone(),
            owner: player,
            players: vec![TicketMember {
                player_id: player,
                rating: 25.0,
            }],
            pings_ms: [("eu-west".to_owned(), 20)].into_iter().collect(),
            created_at_ms: now_ms,
            expires_at_ms: now_ms + 600_000,
            status: TicketStatus::Searching,
            placement: None,
        };
        assert_eq!(store.put_ticket(&ticket).await.unwrap(), None);
    }
    let started = Instant::now();
    let placed = outpost_cloud::matcher::round(&cloud, &mode).await.unwrap();
    assert_eq!(placed as u64, PLAYERS / 8, "every player placed");
    placed as f64 / started.elapsed().as_secs_f64()
}

/// What one Redis (a server or a cluster) measures.
struct Figures {
    ours_write: f64,
    bare_write: f64,
    ours_read: f64,
    bare_read: f64,
    placements: f64,
}

/// `port`: the server that holds the store's `{play}` slot (on a cluster, its primary),
/// where `redis-benchmark` runs the bare commands on keys of that slot.
async fn measure(url: &str, port: u16) -> Figures {
    let store = Arc::new(RedisStore::connect(url, "bench").await.unwrap());
    for player in 1..=ENTRIES {
        store
            .apply_result(&write(10_000_000 + player, player, (player % 997) as f64))
            .await
            .unwrap();
    }

    // The bare board shares the store's slot: on a cluster, both go to one primary.
    let bare_write = redis_benchmark(
        port,
        &[
            "ZADD",
            "bare:{play}:board",
            "__rand_int__",
            "member:__rand_int__",
        ],
    );
    let ours_write = {
        let store = store.clone();
        concurrently(move |i| {
            let store = store.clone();
            async move {
                store
                    .apply_result(&write(20_000_000 + i, 1 + i % ENTRIES, (i % 1000) as f64))
                    .await
                    .unwrap();
            }
        })
        .await
    };
    let board_key = "bench:{play}:lb:bench:all";
    let bare_read = redis_benchmark(port, &["ZREVRANGE", board_key, "0", "99", "WITHSCORES"]);
    let ours_read = {
        let store = store.clone();
        concurrently(move |_| {
            let store = store.clone();
            async move {
                let (rows, _) = store.board_page("bench:all", 0, 100).await.unwrap();
                assert_eq!(rows.len(), 100);
            }
        })
        .await
    };
    let placements = placements(store).await;
    Figures {
        ours_write,
        bare_write,
        ours_read,
        bare_read,
        placements,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = redis_server::RedisServer::start().await;
    let single = measure(&server.url, server.port()).await;
    drop(server);
    let cluster = redis_server::RedisCluster::start().await;
    let (play, _) = cluster.primary_and_replica_of("bench:{play}:x").await;
    let clustered = measure(&cluster.url(), cluster.nodes[play].port()).await;
    println!(
        "leaderboard vs redis-benchmark, {OPS} ops, {CLIENTS} clients, {ENTRIES} entries, same Redis"
    );
    for (name, f) in [("one server", &single), ("cluster 3+3", &clustered)] {
        println!(
            "{name}: write: outpost {:.0}/s  redis-benchmark ZADD {:.0}/s  ratio {:.2}",
            f.ours_write,
            f.bare_write,
            f.ours_write / f.bare_write
        );
        println!(
            "{name}: top-100 read: outpost {:.0}/s  redis-benchmark ZREVRANGE {:.0}/s  ratio {:.2}",
            f.ours_read,
            f.bare_read,
            f.ours_read / f.bare_read
        );
        println!(
            "{name}: placements: {:.0} matches/s (2 x 4, one matcher round over 4,000 players)",
            f.placements
        );
    }
}
