//! One conformance suite for every store: the in-memory one and Redis. The Redis half
//! starts its own `redis-server` on a free port in a temporary folder, and fails with a
//! clear message if the binary is missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use outpost_cloud::edges::{EdgeHeartbeat, EdgeRecord};
use outpost_cloud::{MemoryStore, RedisStore, Store};

/// A private Redis server, stopped and deleted on drop.
struct RedisServer {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl RedisServer {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir =
            std::env::temp_dir().join(format!("outpost-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server ({err}): install it (Debian: apt-get install redis-server)")
            });
        let url = format!("redis://127.0.0.1:{port}/0");
        let server = Self { child, dir, url };
        // Wait, bounded, until it answers.
        let client = redis::Client::open(server.url.as_str()).expect("url");
        for _ in 0..100 {
            if let Ok(mut con) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} did not answer within 5 s");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn conformance(store: Arc<dyn Store>) {
    // Players: one per device, stable.
    let a = store
        .player_for_device("device-a")
        .await
        .expect("store works");
    let b = store
        .player_for_device("device-b")
        .await
        .expect("store works");
    assert_ne!(a, b);
    assert_eq!(
        store
            .player_for_device("device-a")
            .await
            .expect("store works"),
        a
    );

    // Concurrent first logins of one device agree on one player.
    let mut racers = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .player_for_device("device-race")
                .await
                .expect("store works")
        }));
    }
    let mut ids = Vec::new();
    for racer in racers {
        ids.push(racer.await.expect("task"));
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");

    // Refresh tokens: taken once.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    store
        .put_refresh("hash-1", a, now + 3600, now)
        .await
        .expect("store works");
    assert_eq!(
        store
            .take_refresh("hash-1", now)
            .await
            .expect("store works"),
        Some(a)
    );
    assert_eq!(
        store
            .take_refresh("hash-1", now)
            .await
            .expect("store works"),
        None,
        "a refresh token works once"
    );
    assert_eq!(
        store
            .take_refresh("never-stored", now)
            .await
            .expect("store works"),
        None
    );
    // Concurrent refreshes with one token: exactly one wins.
    store
        .put_refresh("hash-2", b, now + 3600, now)
        .await
        .expect("store works");
    let mut racers = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .take_refresh("hash-2", now)
                .await
                .expect("store works")
        }));
    }
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.expect("task").is_some());
    }
    assert_eq!(winners, 1);
    // An already expired token is never stored.
    store
        .put_refresh("hash-3", a, now - 1, now)
        .await
        .expect("store works");
    assert_eq!(
        store
            .take_refresh("hash-3", now)
            .await
            .expect("store works"),
        None
    );

    // Edges: registered by heartbeat, refreshed in place, forgotten once expired.
    let edge = |id: &str, load: u32, expires_at: u64| EdgeRecord {
        heartbeat: EdgeHeartbeat {
            edge_id: id.into(),
            region: "eu-west".into(),
            quic_addr: "127.0.0.1:7777".into(),
            cert_sha256: "ab".repeat(32),
            capacity: 100,
            load,
            draining: false,
        },
        last_seen: now,
        expires_at,
    };
    store
        .put_edge(&edge("edge-1", 5, now + 15), now)
        .await
        .expect("store works");
    store
        .put_edge(&edge("edge-2", 0, now + 15), now)
        .await
        .expect("store works");
    store
        .put_edge(&edge("edge-1", 9, now + 20), now)
        .await
        .expect("store works");
    let mut live = store.live_edges(now).await.expect("store works");
    live.sort_by(|a, b| a.heartbeat.edge_id.cmp(&b.heartbeat.edge_id));
    assert_eq!(
        live,
        vec![edge("edge-1", 9, now + 20), edge("edge-2", 0, now + 15)]
    );
    let later = store.live_edges(now + 16).await.expect("store works");
    assert_eq!(
        later,
        vec![edge("edge-1", 9, now + 20)],
        "edge-2 went silent"
    );
    store
        .put_edge(&edge("edge-3", 0, now - 1), now)
        .await
        .expect("store works");
    assert!(
        store
            .live_edges(now)
            .await
            .expect("store works")
            .iter()
            .all(|e| e.heartbeat.edge_id != "edge-3")
    );
}

#[tokio::test]
async fn the_memory_store_conforms() {
    conformance(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_conforms() {
    let server = RedisServer::start().await;
    let store = RedisStore::connect(&server.url, "outpost-test")
        .await
        .expect("connects");
    conformance(Arc::new(store)).await;
}
