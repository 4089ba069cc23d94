//! One conformance suite for every store: the in-memory one and Redis. The Redis half
//! starts its own `redis-server` on a free port in a temporary folder, and fails with a
//! clear message if the binary is missing.

#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::sync::Arc;

use redis_server::{RedisCluster, RedisServer};

use outpost_cloud::edges::{EdgeHeartbeat, EdgeRecord};
use outpost_cloud::store::{
    BoardOp, BoardWrite, Durability, MatchRecord, Rating, RefreshUse, ReplayMeta, ResultWrite,
    TicketMember, TicketRecord, TicketStatus,
};
use outpost_cloud::{MemoryStore, RedisStore, Store};

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

    // Refresh tokens: fresh once, reused after; revoked families refuse every token.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let take = |hash: &'static str, family: &'static str| {
        let store = store.clone();
        async move {
            store
                .take_refresh(hash, family, now)
                .await
                .expect("store works")
        }
    };
    store
        .put_refresh("hash-1", "fam-a", a, now + 3600, now)
        .await
        .expect("store works");
    assert_eq!(take("hash-1", "fam-a").await, RefreshUse::Fresh(a));
    assert_eq!(
        take("hash-1", "fam-a").await,
        RefreshUse::Reused(a),
        "a refresh token works once; a second use is seen as reuse"
    );
    assert_eq!(
        take("hash-1", "fam-b").await,
        RefreshUse::Unknown,
        "the family must match"
    );
    assert_eq!(take("never-stored", "fam-a").await, RefreshUse::Unknown);
    store
        .put_refresh("hash-4", "fam-a", a, now + 3600, now)
        .await
        .expect("store works");
    store
        .revoke_family("fam-a", now + 3600)
        .await
        .expect("store works");
    assert_eq!(take("hash-4", "fam-a").await, RefreshUse::Revoked);
    // Concurrent refreshes with one token: exactly one is fresh.
    store
        .put_refresh("hash-2", "fam-c", b, now + 3600, now)
        .await
        .expect("store works");
    let mut racers = Vec::new();
    for _ in 0..16 {
        racers.push(tokio::spawn(take("hash-2", "fam-c")));
    }
    let mut fresh = 0;
    for racer in racers {
        fresh += usize::from(racer.await.expect("task") == RefreshUse::Fresh(b));
    }
    assert_eq!(fresh, 1);
    // An already expired token is never stored.
    store
        .put_refresh("hash-3", "fam-d", a, now - 1, now)
        .await
        .expect("store works");
    assert_eq!(take("hash-3", "fam-d").await, RefreshUse::Unknown);

    // Edges: registered by heartbeat, refreshed in place, forgotten once expired.
    let edge = |id: &str, load: u32, expires_at: u64| EdgeRecord {
        heartbeat: EdgeHeartbeat {
            edge_id: id.into(),
            region: "eu-west".into(),
            quic_addr: "127.0.0.1:7777".into(),
            cert_sha256: "ab".repeat(32),
            capacity: 100,
            load,
            match_capacity: 10,
            matches: 1,
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

fn ticket(id: u64, mode: &str, players: &[u64]) -> TicketRecord {
    TicketRecord {
        id,
        mode: mode.into(),
        owner: players[0],
        players: players
            .iter()
            .map(|p| TicketMember {
                player_id: *p,
                rating: 25.0,
            })
            .collect(),
        pings_ms: BTreeMap::from([("eu".to_owned(), 20)]),
        created_at_ms: 1_000 + id,
        expires_at_ms: u64::MAX / 4,
        status: TicketStatus::Searching,
        placement: None,
    }
}

fn settled(mut t: TicketRecord, status: TicketStatus) -> TicketRecord {
    t.status = status;
    t
}

/// Delivers `writes` all at once, each from a task of its own: how many were applied.
async fn applied_at_once(
    store: &Arc<dyn Store>,
    writes: impl Iterator<Item = ResultWrite>,
) -> usize {
    let tasks: Vec<_> = writes
        .map(|write| {
            let store = store.clone();
            tokio::spawn(async move { store.apply_result(&write).await.expect("works") })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        applied += usize::from(task.await.expect("task"));
    }
    applied
}

/// Tickets, leases, matches, results, boards, histories, replays.
async fn play_conformance(store: Arc<dyn Store>) {
    // Sequences increase, per name, never below the clock's floor.
    let floor = outpost_cloud::store::id_floor(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64,
    );
    let first = store.next_id("ticket").await.expect("works");
    let second = store.next_id("ticket").await.expect("works");
    assert!(first >= floor && second > first, "{floor} {first} {second}");
    assert!(store.next_id("match").await.expect("works") >= floor);

    // Tickets: searching per mode; settling is all or nothing.
    for t in [
        ticket(1, "arena", &[1]),
        ticket(2, "arena", &[2, 3]),
        ticket(3, "duel", &[4]),
        // A player searches in another mode at the same time.
        ticket(4, "duel", &[1]),
    ] {
        assert_eq!(store.put_ticket(&t).await.expect("works"), None);
    }
    // One searching ticket per player per mode: a second for player 3 is refused whole.
    assert_eq!(
        store
            .put_ticket(&ticket(5, "arena", &[6, 3]))
            .await
            .expect("works"),
        Some(2)
    );
    assert!(store.ticket(5).await.expect("works").is_none());
    let mut ids: Vec<u64> = store
        .searching("arena")
        .await
        .expect("works")
        .iter()
        .map(|t| t.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    assert!(
        store
            .settle(&[settled(ticket(1, "arena", &[1]), TicketStatus::Cancelled)])
            .await
            .expect("works")
    );
    assert!(
        !store
            .settle(&[
                settled(ticket(1, "arena", &[1]), TicketStatus::Matched),
                settled(ticket(2, "arena", &[2, 3]), TicketStatus::Matched),
            ])
            .await
            .expect("works"),
        "ticket 1 was cancelled: the match must not take ticket 2 either"
    );
    assert_eq!(
        store.ticket(2).await.expect("works").expect("kept").status,
        TicketStatus::Searching
    );
    assert_eq!(
        store.ticket(1).await.expect("works").expect("kept").status,
        TicketStatus::Cancelled
    );
    assert_eq!(store.searching("arena").await.expect("works").len(), 1);
    assert!(store.ticket(99).await.expect("works").is_none());
    // Once player 1's ticket is settled, they may search again.
    assert_eq!(
        store
            .put_ticket(&ticket(6, "arena", &[1]))
            .await
            .expect("works"),
        None
    );
    assert!(
        store
            .settle(&[settled(ticket(6, "arena", &[1]), TicketStatus::Cancelled)])
            .await
            .expect("works")
    );

    // Leases: one holder at a time; the holder renews.
    assert!(
        store
            .lease("matcher:arena", "a", 60_000)
            .await
            .expect("works")
    );
    assert!(
        !store
            .lease("matcher:arena", "b", 60_000)
            .await
            .expect("works")
    );
    assert!(
        store
            .lease("matcher:arena", "a", 60_000)
            .await
            .expect("works")
    );
    assert!(
        !store.release("matcher:arena", "b").await.expect("works"),
        "only the holder releases"
    );
    assert!(store.release("matcher:arena", "a").await.expect("works"));
    assert!(
        store
            .lease("matcher:arena", "b", 60_000)
            .await
            .expect("works"),
        "a released lease is free at once"
    );
    assert!(
        !store.release("matcher:arena", "a").await.expect("works"),
        "nor released twice"
    );
    assert!(store.release("matcher:arena", "b").await.expect("works"));
    assert!(
        store
            .lease("matcher:arena", "a", 60_000)
            .await
            .expect("works")
    );
    assert!(store.lease("matcher:arena", "b-short", 1).await.is_ok());
    assert!(store.lease("matcher:duel", "b", 1).await.expect("works"));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        store
            .lease("matcher:duel", "c", 60_000)
            .await
            .expect("works"),
        "an expired lease is free"
    );

    // Matches.
    let record = MatchRecord {
        match_id: 7,
        mode: "arena".into(),
        edge_id: "edge-1".into(),
        region: "eu".into(),
        teams: vec![vec![1, 2, 3]],
        created_at_ms: 5,
        schema_hash: 0x1234,
    };
    store.put_match(&record).await.expect("works");
    assert_eq!(store.match_record(7).await.expect("works"), Some(record));
    assert_eq!(store.match_record(8).await.expect("works"), None);

    // Results: once per match, with ratings, boards and histories in one step.
    let board = |player, value, at_ms, op| BoardWrite {
        board: "best:all".into(),
        op,
        player_id: player,
        value,
        at_ms,
        expire_at: 0,
    };
    let write = ResultWrite {
        match_id: 7,
        mode: "arena".into(),
        ratings: vec![(
            1,
            Rating {
                mu: 27.5,
                sigma: 7.0,
            },
        )],
        boards: vec![
            board(1, 10.0, 100, BoardOp::Best),
            board(2, 10.0, 50, BoardOp::Best),
            board(3, 4.0, 10, BoardOp::Best),
        ],
        players: vec![1, 2, 3],
        result_json: "{\"m\":7}".into(),
    };
    // Five deliveries of one result at once: exactly one applies it.
    let applied = applied_at_once(&store, (0..5).map(|_| write.clone())).await;
    assert_eq!(applied, 1, "applied once of five concurrent deliveries");
    assert!(
        !store.apply_result(&write).await.expect("works"),
        "and never again"
    );
    assert_eq!(
        store.result(7).await.expect("works").as_deref(),
        Some("{\"m\":7}")
    );
    assert_eq!(
        store.ratings("arena", &[1, 2]).await.expect("works"),
        vec![
            Some(Rating {
                mu: 27.5,
                sigma: 7.0
            }),
            None
        ]
    );
    assert_eq!(store.history(2, 10).await.expect("works"), vec![7]);
    // Ties: who got there first (player 2, at 50 ms) ranks higher.
    let (rows, total) = store.board_page("best:all", 0, 10).await.expect("works");
    assert_eq!(total, 3);
    let order: Vec<(u64, u64, f64)> = rows
        .iter()
        .map(|e| (e.rank, e.player_id, e.score))
        .collect();
    assert_eq!(order, vec![(1, 2, 10.0), (2, 1, 10.0), (3, 3, 4.0)]);
    // best keeps the higher; set replaces; incr adds.
    let second = ResultWrite {
        match_id: 8,
        boards: vec![
            board(3, 2.0, 200, BoardOp::Best),
            board(1, 1.0, 200, BoardOp::Set),
            BoardWrite {
                board: "total:all".into(),
                ..board(2, 3.0, 200, BoardOp::Incr)
            },
            BoardWrite {
                board: "total:all".into(),
                ..board(2, 4.0, 300, BoardOp::Incr)
            },
        ],
        ..write.clone()
    };
    assert!(store.apply_result(&second).await.expect("works"));
    let entry = |b: &'static str, p| {
        let store = store.clone();
        async move { store.board_entry(b, p).await.expect("works") }
    };
    assert_eq!(
        entry("best:all", 3).await.map(|e| (e.rank, e.score)),
        Some((2, 4.0))
    );
    assert_eq!(
        entry("best:all", 1).await.map(|e| (e.rank, e.score)),
        Some((3, 1.0))
    );
    assert_eq!(entry("total:all", 2).await.map(|e| e.score), Some(7.0));
    // The top page read before the write is not served stale after it.
    let (rows, _) = store.board_page("best:all", 0, 10).await.expect("works");
    let order: Vec<(u64, u64, f64)> = rows
        .iter()
        .map(|e| (e.rank, e.player_id, e.score))
        .collect();
    assert_eq!(order, vec![(1, 2, 10.0), (2, 3, 4.0), (3, 1, 1.0)]);
    assert_eq!(entry("best:all", 42).await, None);
    assert_eq!(
        store.history(2, 10).await.expect("works"),
        vec![8, 7],
        "newest first"
    );
    let (page, _) = store.board_page("best:all", 1, 1).await.expect("works");
    assert_eq!(
        page.iter()
            .map(|e| (e.rank, e.player_id))
            .collect::<Vec<_>>(),
        vec![(2, 3)]
    );
    // A board past its expiry is gone.
    let expired = ResultWrite {
        match_id: 9,
        boards: vec![BoardWrite {
            board: "daily:d1".into(),
            expire_at: 1,
            ..board(1, 5.0, 1, BoardOp::Best)
        }],
        ..write.clone()
    };
    assert!(store.apply_result(&expired).await.expect("works"));
    assert_eq!(
        store.board_page("daily:d1", 0, 10).await.expect("works").1,
        0
    );

    // Many results at once (the Redis store applies them in batches of a script call
    // each): every one applied once, each player's write and history there, and
    // deliveries again all refused as applied before.
    let crowd = |m: u64| ResultWrite {
        match_id: 1_000 + m,
        boards: vec![BoardWrite {
            board: "crowd:all".into(),
            ..board(500 + m, m as f64, m, BoardOp::Best)
        }],
        players: vec![500 + m],
        result_json: format!("{{\"m\":{m}}}"),
        ..write.clone()
    };
    for round in [true, false] {
        let tasks: Vec<_> = (0..300)
            .map(|m| {
                let (store, write) = (store.clone(), crowd(m));
                tokio::spawn(async move { store.apply_result(&write).await.expect("works") })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                task.await.expect("task"),
                round,
                "first delivery applies, later ones not"
            );
        }
    }
    let (top, total) = store.board_page("crowd:all", 0, 3).await.expect("works");
    assert_eq!(total, 300);
    assert_eq!(
        top.iter()
            .map(|e| (e.player_id, e.score))
            .collect::<Vec<_>>(),
        vec![(799, 299.0), (798, 298.0), (797, 297.0)]
    );
    for m in [0, 150, 299] {
        assert_eq!(
            store.history(500 + m, 10).await.expect("works"),
            vec![1_000 + m]
        );
        let json = store.result(1_000 + m).await.expect("works");
        assert_eq!(json, Some(format!("{{\"m\":{m}}}")));
    }

    // Many results for one player at once, a quarter of them delivered twice (on Redis
    // most ride shared batches, which read each board once): each applies on what the
    // results before it left, once.
    let tally = |m: u64| ResultWrite {
        match_id: 2_000 + m,
        boards: vec![
            BoardWrite {
                board: "tally:all".into(),
                ..board(42, 1.0, m, BoardOp::Incr)
            },
            BoardWrite {
                board: "peak:all".into(),
                ..board(42, ((m * 37) % 200) as f64, m, BoardOp::Best)
            },
            // A board past its expiry is gone at once: the next write starts it anew.
            BoardWrite {
                board: "gone:d1".into(),
                expire_at: 1,
                ..board(42, 1.0, m, BoardOp::Incr)
            },
            BoardWrite {
                board: "gone:d1".into(),
                ..board(42, 1.0, m, BoardOp::Incr)
            },
            BoardWrite {
                board: "tally:all".into(),
                ..board(43, 2.0, m, BoardOp::Incr)
            },
        ],
        players: Vec::new(),
        result_json: "{}".into(),
        ..write.clone()
    };
    let deliveries = (0..50).flat_map(|m| [m, m]).chain(50..200).map(tally);
    let applied = applied_at_once(&store, deliveries).await;
    assert_eq!(applied, 200, "each result applied once");
    assert_eq!(entry("tally:all", 42).await.map(|e| e.score), Some(200.0));
    assert_eq!(
        entry("tally:all", 43).await.map(|e| (e.rank, e.score)),
        Some((1, 400.0))
    );
    assert_eq!(entry("peak:all", 42).await.map(|e| e.score), Some(199.0));
    assert_eq!(entry("gone:d1", 42).await.map(|e| e.score), Some(1.0));

    // Replays: indexed once, by match and player.
    let meta = ReplayMeta {
        match_id: 7,
        players: vec![1, 2],
        bytes: 10,
        sha256: "ab".repeat(32),
        stored_at_ms: 1,
    };
    assert!(store.put_replay(&meta).await.expect("works"));
    assert!(!store.put_replay(&meta).await.expect("works"));
    assert_eq!(store.replay(7).await.expect("works"), Some(meta));
    assert_eq!(store.player_replays(2, 10).await.expect("works"), vec![7]);
    assert!(store.player_replays(3, 10).await.expect("works").is_empty());
}

#[tokio::test]
async fn the_memory_store_conforms() {
    conformance(Arc::new(MemoryStore::default())).await;
    play_conformance(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_conforms() {
    let server = RedisServer::start().await;
    let store = RedisStore::connect(&server.url, "outpost-test")
        .await
        .expect("connects");
    conformance(Arc::new(store.clone())).await;
    let play = RedisStore::connect(&server.url, "outpost-play")
        .await
        .expect("connects");
    play_conformance(Arc::new(play.clone())).await;
    // Reading a board nobody wrote keeps nothing: made-up names cost the store no memory.
    let (rows, total) = play.board_page("made-up:all", 0, 10).await.expect("works");
    assert_eq!((rows.len(), total), (0, 0));
    let mut raw = redis::Client::open(server.url.as_str())
        .expect("a url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*made-up*")
        .query_async(&mut raw)
        .await
        .expect("works");
    assert!(keys.is_empty(), "{keys:?}");
    a_failing_result_in_a_batch_fails_alone(&play, &mut raw).await;
}

/// Results that reach Redis together share one script call; one that fails there (its
/// board's key holds something else) fails alone, with the store's error, and the others
/// of its batch are applied.
async fn a_failing_result_in_a_batch_fails_alone(
    store: &RedisStore,
    raw: &mut redis::aio::MultiplexedConnection,
) {
    redis::cmd("SET")
        .arg("outpost-play:{play}:lb:spoiled:all")
        .arg("not a board")
        .query_async::<()>(raw)
        .await
        .expect("works");
    let write = |m: u64, board: &str| ResultWrite {
        match_id: 5_000 + m,
        mode: "arena".into(),
        ratings: Vec::new(),
        boards: vec![BoardWrite {
            board: board.into(),
            op: BoardOp::Best,
            player_id: 900 + m,
            value: m as f64,
            at_ms: m,
            expire_at: 0,
        }],
        players: Vec::new(),
        result_json: "{}".into(),
    };
    let tasks: Vec<_> = (0..100)
        .map(|m| {
            let store = store.clone();
            let w = write(m, if m == 50 { "spoiled:all" } else { "fine:all" });
            tokio::spawn(async move { store.apply_result(&w).await })
        })
        .collect();
    for (m, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.expect("task");
        if m == 50 {
            let error = outcome.expect_err("its board is not a board");
            assert!(error.0.contains("WRONGTYPE"), "{error}");
        } else {
            assert_eq!(outcome.ok(), Some(true), "result {m}");
        }
    }
    assert_eq!(
        store.board_page("fine:all", 0, 1).await.expect("works").1,
        99
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cluster_store_conforms() {
    let cluster = RedisCluster::start().await;
    let store = RedisStore::connect(&cluster.url(), "outpost-test")
        .await
        .expect("connects");
    assert!(store.is_cluster());
    conformance(Arc::new(store)).await;
    let play = RedisStore::connect(&cluster.url(), "outpost-play")
        .await
        .expect("connects");
    play_conformance(Arc::new(play)).await;
    // The prefixes' hash-tagged keys are spread over the primaries, not all on one.
    let mut holders = std::collections::BTreeSet::new();
    for tag in ["auth", "edges", "mm", "play", "replays"] {
        holders.insert(
            cluster
                .primary_and_replica_of(&format!("outpost-test:{{{tag}}}:x"))
                .await
                .0,
        );
    }
    assert!(holders.len() > 1, "all keys on one primary: {holders:?}");
}

/// Results applied through a primary that is killed mid-stream: its replica is promoted,
/// every acknowledged result is there after, none is applied twice (an `incr` board
/// counts them), and matchmaking works again. Acknowledged means a replica has it (WAIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_survive_a_primary_failover_applied_exactly_once() {
    use std::time::{Duration, Instant};

    const RESULTS: u64 = 300;
    const KILL_AFTER: u64 = 100;
    let mut cluster = RedisCluster::start().await;
    let durable = Durability {
        wait_replicas: 1,
        wait_local_fsync: false,
        wait_timeout: Duration::from_millis(500),
    };
    let store = Arc::new(
        RedisStore::connect(&cluster.url(), "failover")
            .await
            .expect("connects")
            .with_durability(durable),
    );
    let (primary, replica) = cluster.primary_and_replica_of("failover:{play}:x").await;

    // The writer delivers each result until it is acknowledged, as an edge does.
    let (acked_tx, mut acked) = tokio::sync::watch::channel(0u64);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked_at = Vec::new();
            let (mut failures, mut applied_now) = (0u64, 0u64);
            for match_id in 1..=RESULTS {
                let write = ResultWrite {
                    match_id,
                    mode: "arena".into(),
                    ratings: vec![(1, Rating::default())],
                    boards: vec![BoardWrite {
                        board: "count".into(),
                        op: BoardOp::Incr,
                        player_id: 1,
                        value: 1.0,
                        at_ms: match_id,
                        expire_at: 0,
                    }],
                    players: vec![1],
                    result_json: format!("{{\"m\":{match_id}}}"),
                };
                loop {
                    match store.apply_result(&write).await {
                        Ok(applied) => {
                            applied_now += u64::from(applied);
                            break;
                        }
                        Err(_) => failures += 1,
                    }
                }
                acked_at.push(Instant::now());
                acked_tx.send_replace(match_id);
            }
            (acked_at, failures, applied_now)
        })
    };
    acked
        .wait_for(|&n| n >= KILL_AFTER)
        .await
        .expect("the writer runs");
    let killed_at = Instant::now();
    cluster.nodes[primary].kill();
    let acked_before_kill = *acked.borrow();
    // The replica wins the election once the primary has missed its node timeout; only
    // then may the old primary come back (it rejoins as a replica and resyncs).
    cluster.nodes[replica]
        .log
        .line("Failover election won", Duration::from_secs(30))
        .await;
    let promoted_after = killed_at.elapsed();
    cluster.nodes[primary].restart().await;
    cluster.nodes[primary]
        .log
        .line(
            "MASTER <-> REPLICA sync: Finished with success",
            Duration::from_secs(30),
        )
        .await;
    let resynced_after = killed_at.elapsed();
    let (acked_at, failures, applied_now) = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("every result acknowledged in time")
        .expect("writer");
    let pause = acked_at
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("results");
    eprintln!(
        "failover: replica promoted {promoted_after:?} after the kill, old primary resynced as \
         a replica after {resynced_after:?}; longest pause between acknowledged results \
         {pause:?}; {failures} deliveries failed and were retried"
    );
    assert!(
        acked_before_kill < RESULTS,
        "the kill happened while results were being applied"
    );

    // Nothing lost, nothing twice: the count board holds exactly one per result.
    let (rows, _) = store.board_page("count", 0, 1).await.expect("works");
    assert_eq!(rows.first().map(|r| r.score), Some(RESULTS as f64));
    assert!(applied_now <= RESULTS);
    for match_id in 1..=RESULTS {
        assert!(
            store.result(match_id).await.expect("works").is_some(),
            "result {match_id} lost"
        );
    }
    let described = cluster.describe().await;
    let port = |i: usize| cluster.nodes[i].port();
    assert!(
        described
            .iter()
            .any(|n| n.port == port(replica) && n.primary),
        "the replica was promoted"
    );
    assert!(
        described
            .iter()
            .any(|n| n.port == port(primary) && !n.primary),
        "the old primary came back as a replica"
    );

    // Matchmaking works again: a ticket is stored, found and settled.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ticket = TicketRecord {
        id: store.next_id("ticket").await.expect("works"),
        mode: "arena".into(),
        owner: 1,
        players: vec![TicketMember {
            player_id: 1,
            rating: 25.0,
        }],
        pings_ms: BTreeMap::new(),
        created_at_ms: 1,
        expires_at_ms: now_ms + 60_000,
        status: TicketStatus::Searching,
        placement: None,
    };
    assert_eq!(store.put_ticket(&ticket).await.expect("works"), None);
    assert_eq!(store.searching("arena").await.expect("works").len(), 1);
    let matched = TicketRecord {
        status: TicketStatus::Matched,
        ..ticket
    };
    assert!(store.settle(&[matched]).await.expect("works"));
}

/// Regression test for ids after a restore: match and player ids were Redis `INCR`
/// counters, so after a restart from an older snapshot they were handed out again while
/// tokens naming them were still valid. Ids now never fall below the clock's floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_never_repeat_after_a_restore_from_an_old_snapshot() {
    let server = RedisServer::start().await;
    let store = RedisStore::connect(&server.url, "restore")
        .await
        .expect("connects");
    let issued = [
        store.next_id("match").await.expect("works"),
        store.next_id("match").await.expect("works"),
    ];
    let player = store
        .player_for_device("device-of-some-length")
        .await
        .expect("works");
    // A restart takes time: at least the next millisecond (spun for, not slept).
    let ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    };
    let issued_at = ms();
    while ms() == issued_at {
        std::hint::spin_loop();
    }
    // The snapshot the server restarts from is older than those ids.
    let client = redis::Client::open(server.url.as_str()).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    for key in ["restore:{mm}:seq:match", "restore:{auth}:player_seq"] {
        redis::cmd("SET")
            .arg(key)
            .arg(1)
            .query_async::<()>(&mut con)
            .await
            .expect("set");
    }
    redis::cmd("HDEL")
        .arg("restore:{auth}:players")
        .arg("device-of-some-length")
        .query_async::<()>(&mut con)
        .await
        .expect("hdel");
    let next = store.next_id("match").await.expect("works");
    assert!(next > issued[1], "{next} repeats one of {issued:?}");
    let again = store
        .player_for_device("another-device-id")
        .await
        .expect("works");
    assert!(again > player, "player {again} repeats {player}");
    // Ids are exact as JSON numbers everywhere.
    assert!(next < 1 << 53);
}

/// Regression test for acknowledged results that Redis had not made durable: a result
/// was acknowledged to the edge (which deletes it) before it was persisted. With a replica
/// required, nothing is acknowledged until a replica has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_acknowledged_only_once_a_replica_has_them() {
    let primary = RedisServer::start().await;
    let durable = Durability {
        wait_replicas: 1,
        wait_local_fsync: false,
        wait_timeout: std::time::Duration::from_millis(200),
    };
    let store = RedisStore::connect(&primary.url, "wait")
        .await
        .expect("connects")
        .with_durability(durable);
    let write = ResultWrite {
        match_id: 7,
        mode: "arena".into(),
        ratings: vec![(1, Rating::default())],
        boards: Vec::new(),
        players: vec![1],
        result_json: "{}".into(),
    };
    assert!(
        store.apply_result(&write).await.is_err(),
        "no replica has it: not acknowledged"
    );
    assert!(
        !store
            .persistence()
            .await
            .expect("config")
            .durable(&Durability::default()),
        "the test server keeps nothing on disk"
    );
    let _replica = RedisServer::replica_of(&primary).await;
    // Once the replica has synced, the same (idempotent) write is acknowledged; each try
    // is bounded by the wait timeout.
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(tries <= 100, "the replica never acknowledged");
        if let Ok(applied) = store.apply_result(&write).await {
            assert!(!applied, "applied once, by the first try");
            break;
        }
    }
}

/// `/healthz` answers while the process lives; `/readyz` only while the store answers
/// (on a cluster, every primary), so an orchestrator stops sending traffic to a replica
/// that cannot reach Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store_and_healthz_the_process() {
    use tower::ServiceExt as _;

    let mut server = RedisServer::start().await;
    let store = RedisStore::connect(&server.url, "ready")
        .await
        .expect("connects");
    let config = outpost_cloud::CloudConfig::dev();
    let keys = outpost_cloud::KeyRing::from_seed(&config, [1; 32]);
    let cloud = Arc::new(outpost_cloud::Cloud::new(
        config,
        keys,
        [2; 32],
        Arc::new(store),
        Arc::new(object_store::memory::InMemory::new()),
    ));
    let status = |path: &'static str| {
        let cloud = cloud.clone();
        async move {
            outpost_cloud::router(cloud)
                .oneshot(
                    axum::http::Request::builder()
                        .uri(path)
                        .body(axum::body::Body::empty())
                        .expect("request"),
                )
                .await
                .expect("answers")
                .status()
        }
    };
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(status("/readyz").await, 200);
    server.kill();
    assert_eq!(status("/readyz").await, 503, "Redis is gone");
    assert_eq!(status("/healthz").await, 200, "the process still lives");
    server.restart().await;
    // The connection manager reconnects by itself (with its own backoff); each try is
    // one request.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while status("/readyz").await != 200 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("ready again once Redis is back");
}
