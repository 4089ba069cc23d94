//! The whole platform against a real Redis: players log in, matchmake, play on an edge,
//! and their result reaches ratings, leaderboards and a replay; a cloud outage mid-match
//! loses and doubles nothing; an edge killed with a result in its outbox delivers it on
//! restart. Everything binds loopback and stops by itself.

#[path = "../cloud-services/tests/common/redis.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_client::{Client, CloudClient};
use outpost_cloud::{Cloud, CloudConfig, KeyRing, ModeConfig, RedisStore};
use outpost_edge::cloud_link::{CloudLink, CloudLinkConfig, fetch_connect_key, http_client};
use outpost_edge::{Edge, EdgeConfig};
use outpost_loadtest::bot::Bot;
use redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "edge-secret-for-e2e-tests";
const EDGE: &str = "e2e-edge";

/// The e2e edge's own credential.
fn credential() -> String {
    outpost_cloud::edges::edge_credential_for(SECRET, EDGE)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "outpost-e2e-{name}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A cloud process's worth: the API and matchers on `addr`, over Redis and a replay
/// folder; the same seeds each start, as a restarted replica would have.
struct CloudRun {
    cloud: Arc<Cloud>,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_cloud(
    redis_url: &str,
    replays: &Path,
    addr: SocketAddr,
    players: usize,
    seconds: u32,
) -> CloudRun {
    let template = outpost_arena::config(&outpost_arena::ArenaConfig {
        props: 8,
        score_limit: 0,
        ..Default::default()
    });
    let mode = ModeConfig::free_for_all(template, players, seconds);
    start_cloud_with(redis_url, replays, addr, mode).await
}

/// [`start_cloud`] for one mode of any kind.
async fn start_cloud_with(
    redis_url: &str,
    replays: &Path,
    addr: SocketAddr,
    mode: ModeConfig,
) -> CloudRun {
    let config = CloudConfig {
        edge_secret: Some(SECRET.into()),
        modes: vec![mode],
        ..CloudConfig::dev()
    };
    let keys = KeyRing::from_seed(&config, [9; 32]);
    let store = RedisStore::connect(redis_url, "e2e").await.expect("redis");
    let blobs =
        object_store::local::LocalFileSystem::new_with_prefix(replays).expect("replay folder");
    let cloud = Arc::new(Cloud::new(
        config,
        keys,
        [8; 32],
        Arc::new(store),
        Arc::new(blobs),
    ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind cloud");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(outpost_cloud::serve(
        listener,
        cloud.clone(),
        stop.clone().cancelled_owned(),
    ));
    CloudRun {
        cloud,
        url,
        stop,
        task,
    }
}

impl CloudRun {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    fn addr(&self) -> SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("addr")
    }
}

fn link_config(url: &str) -> CloudLinkConfig {
    let mut link = CloudLinkConfig::new(url, credential(), "local");
    link.heartbeat_every = Duration::from_millis(200);
    link.backoff_max = Duration::from_millis(400);
    link
}

async fn start_edge(cloud_url: &str, outbox: &Path) -> (Edge, CloudLink) {
    let key = fetch_connect_key(
        &http_client().expect("http"),
        cloud_url,
        Some(&outbox.join("jwks.json")),
    )
    .await
    .expect("connect key from the JWKS");
    let mut config = EdgeConfig::new("e2e-edge", key);
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http_listen = None;
    config.modes = modes();
    config.outbox_dir = Some(outbox.to_owned());
    let edge = Edge::start(config).await.expect("edge starts");
    let link = CloudLink::start(&edge, link_config(cloud_url)).expect("link");
    (edge, link)
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn eventually<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let until = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn edge_listed(cloud: &Arc<Cloud>) {
    let cloud = cloud.clone();
    eventually("the edge to register", Duration::from_secs(10), move || {
        let cloud = cloud.clone();
        async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            cloud
                .store
                .live_edges(now)
                .await
                .is_ok_and(|e| !e.is_empty())
        }
    })
    .await;
}

/// The modes the edge hosts and the players link.
fn modes() -> outpost_sim::Modes {
    outpost_arena::modes().with(outpost_ctf::Ctf)
}

/// `n` players log in and matchmake at once; each plays its match to the end with a bot.
async fn play_one_match(
    cloud_url: &str,
    devices: &[&str],
    mid_match: impl Future<Output = ()>,
) -> Vec<u64> {
    play_one_match_of("arena", cloud_url, devices, mid_match).await
}

/// [`play_one_match`] in a given mode.
async fn play_one_match_of(
    mode: &'static str,
    cloud_url: &str,
    devices: &[&str],
    mid_match: impl Future<Output = ()>,
) -> Vec<u64> {
    let client = Arc::new(
        Client::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("client")
            .with_modes(modes()),
    );
    let mut players = Vec::new();
    let mut games = Vec::new();
    for (n, device) in devices.iter().enumerate() {
        let api = CloudClient::new(cloud_url).expect("sdk");
        // A device id is a random credential of 22 characters or more.
        let device = format!("{device}-0123456789abcdef");
        players.push(api.login(&device).await.expect("login"));
        let client = client.clone();
        games.push(tokio::spawn(async move {
            let found = api
                .matchmake(&client, mode, None, Duration::from_secs(30))
                .await
                .expect("a match");
            let session = client.connect(&found.assignment).await.expect("joins");
            Bot::new(session, &modes(), n as u64)
                .expect("the mode has a bot")
                .run(std::future::pending())
                .await
        }));
    }
    mid_match.await;
    for game in games {
        let report = game.await.expect("bot");
        assert!(
            report.match_ended,
            "every player saw the match end: {report:?}"
        );
    }
    players
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_players_matchmake_play_and_are_rated_ranked_and_replayed() {
    let redis = RedisServer::start().await;
    let (replays, outbox) = (temp_dir("replays"), temp_dir("outbox"));
    let run = start_cloud(
        &redis.url,
        &replays,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        8,
        5,
    )
    .await;
    let (edge, link) = start_edge(&run.url, &outbox).await;
    edge_listed(&run.cloud).await;
    let devices: Vec<String> = (0..8).map(|n| format!("e2e-device-{n}")).collect();
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    let players = play_one_match(&run.url, &devices, async {}).await;

    let cloud = run.cloud.clone();
    eventually("the result and the replay", Duration::from_secs(15), || {
        let cloud = cloud.clone();
        async move { cloud.stats.results_applied.get() == 1 && cloud.stats.replays_stored.get() == 1 }
    })
    .await;
    // Ratings: every player rated, with less uncertainty than a newcomer.
    let ratings = run
        .cloud
        .store
        .ratings("arena", &players)
        .await
        .expect("redis");
    assert!(
        ratings
            .iter()
            .all(|r| r.is_some_and(|r| r.sigma < 25.0 / 3.0)),
        "{ratings:?}"
    );
    // The result lists the arena's own stats by name: everyone fired, and every hit
    // landed is a hit taken.
    let match_id = run.cloud.store.history(players[0], 1).await.expect("redis")[0];
    let result: serde_json::Value = serde_json::from_str(
        &run.cloud
            .store
            .result(match_id)
            .await
            .expect("redis")
            .expect("applied"),
    )
    .expect("json");
    let lines = result["players"].as_array().expect("players");
    assert_eq!(lines.len(), 8);
    let sum = |key: &dyn Fn(&serde_json::Value) -> &serde_json::Value| {
        lines
            .iter()
            .map(|l| key(l).as_u64().expect("a count"))
            .sum::<u64>()
    };
    assert!(
        lines.iter().all(|l| l["stats"]["shots"].as_u64() > Some(0)),
        "{result}"
    );
    assert_eq!(
        sum(&|l| &l["stats"]["hits_taken"]),
        sum(&|l| &l["score"]),
        "{result}"
    );
    // The leaderboard, through the SDK.
    let api = CloudClient::new(&run.url).expect("sdk");
    let board = api
        .leaderboard("arena-best", "all_time", 100, None)
        .await
        .expect("board");
    assert_eq!(board.total, 8);
    assert!(
        board
            .entries
            .windows(2)
            .all(|w| w[0].score >= w[1].score && w[0].rank < w[1].rank)
    );
    let weekly = api
        .leaderboard("arena-best", "weekly", 3, None)
        .await
        .expect("weekly board");
    assert_eq!((weekly.total, weekly.entries.len()), (8, 3));
    assert!(weekly.next_cursor.is_some());
    // The replay: listed for a player, downloads, plays back in time order, seeks.
    let listed = api.replays(players[3]).await.expect("replays");
    assert_eq!(listed.len(), 1);
    let mut player = api
        .download_replay(listed[0].match_id)
        .await
        .expect("download");
    let (first, last) = player.ticks().expect("frames");
    assert!(last > first + 100, "{first}..{last}");
    // The replay names its components: characters are the entities with one.
    let (character, _) = player
        .schema()
        .component("character")
        .expect("arena schema");
    let is_character = |mask: u64| mask & (1 << character) != 0;
    let mut frames = 0;
    let mut previous = 0;
    while let Some(frame) = player.next_frame().expect("decodes") {
        assert!(frame.tick > previous || frames == 0);
        previous = frame.tick;
        frames += 1;
        let characters = frame.world.iter().filter(|e| is_character(e.mask)).count();
        assert!(characters <= 8);
    }
    assert!(frames >= 100, "{frames} frames");
    let middle = first + (last - first) / 2;
    player.seek(middle);
    let frame = player
        .next_frame()
        .expect("decodes")
        .expect("a frame after the middle");
    assert!(frame.tick >= middle && frame.tick <= middle + 4);
    assert_eq!(
        frame.world.iter().filter(|e| is_character(e.mask)).count(),
        8,
        "mid-match, all eight are in the world"
    );

    link.stop().await;
    edge.shutdown().await;
    run.stop().await;
    let _ = std::fs::remove_dir_all(replays);
    let _ = std::fs::remove_dir_all(outbox);
}

/// Capture the flag through the whole platform: four players matchmade into two teams of
/// two, each seated on the edge on the team its token names (the replay shows two
/// characters a side), their result applied once, rated by team, and ranked on the
/// mode's own boards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_the_flag_is_matchmade_by_team_played_and_rated() {
    let redis = RedisServer::start().await;
    let (replays, outbox) = (temp_dir("replays"), temp_dir("outbox"));
    let template = outpost_ctf::config(&outpost_ctf::CtfConfig::default());
    let run = start_cloud_with(
        &redis.url,
        &replays,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ModeConfig::teams(template, 2, 2, 5),
    )
    .await;
    let (edge, link) = start_edge(&run.url, &outbox).await;
    edge_listed(&run.cloud).await;
    let devices = [
        "ctf-device-0",
        "ctf-device-1",
        "ctf-device-2",
        "ctf-device-3",
    ];
    let players = play_one_match_of("ctf", &run.url, &devices, async {}).await;

    let cloud = run.cloud.clone();
    eventually("the result and the replay", Duration::from_secs(15), || {
        let cloud = cloud.clone();
        async move { cloud.stats.results_applied.get() == 1 && cloud.stats.replays_stored.get() == 1 }
    })
    .await;
    let ratings = run
        .cloud
        .store
        .ratings("ctf", &players)
        .await
        .expect("redis");
    assert!(
        ratings.iter().all(Option::is_some),
        "every player rated: {ratings:?}"
    );
    let api = CloudClient::new(&run.url).expect("sdk");
    let board = api
        .leaderboard("ctf-best", "all_time", 100, None)
        .await
        .expect("the mode's own board");
    assert_eq!(board.total, 4);

    // The edge seated the players on their tokens' teams: two characters a side.
    let listed = api.replays(players[0]).await.expect("replays");
    let mut replay = api
        .download_replay(listed[0].match_id)
        .await
        .expect("download");
    let fields = outpost_protocol::replication::Fields::new(replay.schema().clone());
    let mut sides = None;
    while let Some(frame) = replay.next_frame().expect("decodes") {
        let teams: Vec<u8> = frame
            .world
            .iter()
            .filter(|r| fields.has(r, "character"))
            .filter_map(|r| fields.get::<outpost_ctf::TeamOf>(&r))
            .map(|t| t.0)
            .collect();
        if teams.len() == 4 {
            sides = Some((
                teams.iter().filter(|t| **t == 0).count(),
                teams.iter().filter(|t| **t == 1).count(),
            ));
        }
    }
    assert_eq!(sides, Some((2, 2)), "two players a side");

    link.stop().await;
    edge.shutdown().await;
    run.stop().await;
    let _ = std::fs::remove_dir_all(replays);
    let _ = std::fs::remove_dir_all(outbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_outage_mid_match_loses_and_doubles_nothing() {
    let redis = RedisServer::start().await;
    let (replays, outbox) = (temp_dir("replays"), temp_dir("outbox"));
    let run = start_cloud(
        &redis.url,
        &replays,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        2,
        5,
    )
    .await;
    let addr = run.addr();
    let (edge, link) = start_edge(&run.url, &outbox).await;
    edge_listed(&run.cloud).await;
    let url = run.url.clone();
    // Once both have joined, the cloud goes away.
    let outage = async {
        let edge = &edge;
        eventually(
            "both players on the edge",
            Duration::from_secs(15),
            || async move { edge.players() == 2 },
        )
        .await;
        run.stop().await;
    };
    play_one_match(&url, &["outage-1", "outage-2"], outage).await;
    // The match finished; what it owes waits in the outbox while the cloud is down.
    let pending = edge.outbox().expect("outbox").clone();
    eventually(
        "the result and replay in the outbox",
        Duration::from_secs(5),
        || {
            let pending = pending.clone();
            async move { pending.pending().is_ok_and(|p| p.len() == 2) }
        },
    )
    .await;
    let match_id = pending.pending().expect("outbox")[0].match_id.0;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        link.stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "it kept trying"
    );
    // The cloud comes back on the same address; the outbox drains.
    let back = start_cloud(&redis.url, &replays, addr, 2, 5).await;
    let cloud = back.cloud.clone();
    eventually("delivery after the outage", Duration::from_secs(15), || {
        let cloud = cloud.clone();
        async move { cloud.stats.results_applied.get() == 1 && cloud.stats.replays_stored.get() == 1 }
    })
    .await;
    eventually("an empty outbox", Duration::from_secs(5), || {
        let pending = pending.clone();
        async move { pending.pending().is_ok_and(|p| p.is_empty()) }
    })
    .await;
    // Applied once: the summed-score board holds exactly each player's score of the one
    // match (a doubled delivery would have added it twice).
    let result: serde_json::Value = serde_json::from_str(
        &back
            .cloud
            .store
            .result(match_id)
            .await
            .expect("redis")
            .expect("the result"),
    )
    .expect("json");
    let board = CloudClient::new(&back.url)
        .expect("sdk")
        .leaderboard("arena-total", "all_time", 10, None)
        .await
        .expect("board");
    for line in result["players"].as_array().expect("players") {
        let score = line["score"].as_f64().expect("score");
        let on_board = board
            .entries
            .iter()
            .find(|e| serde_json::json!(e.player_id) == line["player_id"])
            .map_or(0.0, |e| e.score);
        assert_eq!(on_board, score, "{result} vs {board:?}");
    }
    link.stop().await;
    edge.shutdown().await;
    back.stop().await;
    let _ = std::fs::remove_dir_all(replays);
    let _ = std::fs::remove_dir_all(outbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_with_a_result_in_its_outbox_delivers_it_on_restart() {
    let redis = RedisServer::start().await;
    let (replays, outbox) = (temp_dir("replays"), temp_dir("outbox"));
    let run = start_cloud(
        &redis.url,
        &replays,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        2,
        5,
    )
    .await;
    let addr = run.addr();
    let credential = outbox.join("credential");
    std::fs::write(&credential, self::credential()).expect("credential file");
    let cloud_url = run.url.clone();
    let spawn_edge = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args([
                "edge",
                "--edge-id",
                "e2e-edge",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .arg("--cloud-url")
            .arg(&cloud_url)
            .arg("--edge-credential-file")
            .arg(&credential)
            .arg("--outbox-dir")
            .arg(&outbox)
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(KillOnDrop)
            .expect("outpost edge starts")
    };
    let mut edge = spawn_edge();
    edge_listed(&run.cloud).await;
    let url = run.url.clone();
    let cloud = run.cloud.clone();
    // The cloud stops before the match ends, so the result stays in the outbox.
    let outage = async {
        let cloud = cloud.clone();
        eventually("a match placed", Duration::from_secs(15), move || {
            let cloud = cloud.clone();
            async move { cloud.stats.matches_placed.get() == 1 }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.stop().await;
    };
    play_one_match(&url, &["crash-1", "crash-2"], outage).await;
    // Match ids are the cloud's to choose: find the one result waiting.
    let pending = outbox.join("pending");
    let result_file = || {
        std::fs::read_dir(&pending).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".result.json"))
        })
    };
    eventually("the result in the outbox", Duration::from_secs(5), || {
        let exists = result_file().is_some();
        async move { exists }
    })
    .await;
    let result_file = result_file().expect("a result file");
    let match_id: u64 = result_file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .and_then(|id| id.parse().ok())
        .expect("named by its match id");
    // Killed outright: no shutdown, no last delivery.
    edge.0.kill().expect("kill");
    edge.0.wait().expect("reaped");
    assert!(
        result_file.exists(),
        "the result survived the crash on disk"
    );

    let back = start_cloud(&redis.url, &replays, addr, 2, 5).await;
    assert_eq!(back.cloud.stats.results_applied.get(), 0);
    let restarted = spawn_edge();
    let cloud = back.cloud.clone();
    eventually(
        "the restarted edge's delivery",
        Duration::from_secs(15),
        || {
            let cloud = cloud.clone();
            async move { cloud.stats.results_applied.get() == 1 }
        },
    )
    .await;
    assert!(
        back.cloud
            .store
            .result(match_id)
            .await
            .expect("redis")
            .is_some()
    );
    drop(restarted);
    back.stop().await;
    let _ = std::fs::remove_dir_all(replays);
    let _ = std::fs::remove_dir_all(outbox);
}

/// Two players, one logged in through each of `apis`, matchmake at once; the match id
/// both were placed in.
async fn matched_through(apis: [&str; 2], devices: [&str; 2]) -> u64 {
    let client = Arc::new(
        Client::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("client")
            .with_modes(modes()),
    );
    let mut searches = Vec::new();
    for (api, device) in apis.into_iter().zip(devices) {
        let api = CloudClient::new(api).expect("sdk");
        api.login(&format!("{device}-0123456789abcdef"))
            .await
            .expect("login");
        let client = client.clone();
        searches.push(tokio::spawn(async move {
            api.matchmake(&client, "arena", None, Duration::from_secs(30))
                .await
                .expect("a match")
                .match_id
        }));
    }
    let mut ids = Vec::new();
    for search in searches {
        ids.push(search.await.expect("search"));
    }
    assert_eq!(ids[0], ids[1], "placed together");
    ids[0]
}

/// Cloud replicas on one store: every replica serves the API (a token from one works at
/// the other), one at a time matches (the lease); a crashed holder's lease runs out and
/// another replica matches on; a replica stopped on purpose gives the lease up at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_matcher_replica_hands_its_lease_over_and_tickets_keep_matching() {
    let redis = RedisServer::start().await;
    let (replays, outbox) = (temp_dir("replays"), temp_dir("outbox"));
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let a = start_cloud(&redis.url, &replays, any, 2, 5).await;
    let lease = "matcher:arena";
    let ttl = a.cloud.config.matcher_interval.saturating_mul(5);
    // A holds the lease (as its first round would take it) before B starts.
    assert!(
        a.cloud
            .store
            .lease(lease, &a.cloud.instance, ttl.as_millis() as u64)
            .await
            .expect("redis")
    );
    let b = start_cloud(&redis.url, &replays, any, 2, 5).await;
    assert_ne!(a.cloud.instance, b.cloud.instance);
    let (_edge, _link) = start_edge(&b.url, &outbox).await;
    edge_listed(&b.cloud).await;

    // Logged in at either replica, matched by the lease holder.
    let first = matched_through([&a.url, &b.url], ["replica-a", "replica-b"]).await;
    assert_eq!(a.cloud.stats.matches_placed.get(), 1, "A holds the lease");
    assert_eq!(b.cloud.stats.matches_placed.get(), 0);

    // A crashes: its matcher stops where it is, its lease is not given up.
    a.task.abort();
    let crashed_at = std::time::Instant::now();
    let _ = a.task.await;
    assert!(
        !b.cloud
            .store
            .lease(lease, &b.cloud.instance, 1)
            .await
            .expect("redis")
            || crashed_at.elapsed() >= ttl,
        "the crashed replica's lease holds until its TTL"
    );
    let second = matched_through([&b.url, &b.url], ["after-crash-1", "after-crash-2"]).await;
    eprintln!(
        "lease handed over and a match placed {:?} after the holder crashed (TTL {ttl:?})",
        crashed_at.elapsed()
    );
    assert_ne!(first, second);
    assert_eq!(b.cloud.stats.matches_placed.get(), 1, "B matched on");

    // C joins; B stops on purpose and gives the lease up: C has it at once.
    let c = start_cloud(&redis.url, &replays, any, 2, 5).await;
    let c_instance = c.cloud.instance.clone();
    let store = c.cloud.store.clone();
    b.stop().await;
    assert!(
        store
            .lease(lease, &c_instance, ttl.as_millis() as u64)
            .await
            .expect("redis"),
        "a replica stopped on purpose releases its lease"
    );
    let third = matched_through([&c.url, &c.url], ["after-stop-1", "after-stop-2"]).await;
    assert_ne!(second, third);
    assert_eq!(c.cloud.stats.matches_placed.get(), 1, "C matched on");
    c.stop().await;
}
