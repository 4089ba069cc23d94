//! Leaderboard write and top-100 read through the Redis store, against `redis-benchmark`
//! doing the bare commands (ZADD; ZREVRANGE 0 99 WITHSCORES) on the same private server,
//! side by side in one run. Prints operations per second and the ratio.
//!
//! `cargo bench --bench leaderboard` (needs `redis-server` and `redis-benchmark`).
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

const OPS: u64 = 40_000;
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = redis_server::RedisServer::start().await;
    let port: u16 = server
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/0")
        .parse()
        .unwrap();
    let store = Arc::new(RedisStore::connect(&server.url, "bench").await.unwrap());
    for player in 1..=ENTRIES {
        store
            .apply_result(&write(10_000_000 + player, player, (player % 997) as f64))
            .await
            .unwrap();
    }

    let bare_write = redis_benchmark(
        port,
        &["ZADD", "bare-board", "__rand_int__", "member:__rand_int__"],
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
    println!(
        "leaderboard vs redis-benchmark, {OPS} ops, {CLIENTS} clients, {ENTRIES} entries, same redis-server"
    );
    println!(
        "write: outpost {ours_write:.0}/s  redis-benchmark ZADD {bare_write:.0}/s  ratio {:.2}",
        ours_write / bare_write
    );
    println!(
        "top-100 read: outpost {ours_read:.0}/s  redis-benchmark ZREVRANGE {bare_read:.0}/s  ratio {:.2}",
        ours_read / bare_read
    );
}
