//! An edge under Agones, against a recording SDK server generated from the `.proto`
//! files the `agones` crate ships (no Kubernetes here: what is tested is the calls the
//! edge makes and when, not what Agones does with them).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use bevy_ecs::prelude::*;
use common::TestEdge;
use outpost_agones_sdk_server::{Call, SdkServer};
use outpost_edge::agones::Agones;
use outpost_protocol::replication::View;
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::{ConfigError, EntityId, MatchConfig, PlayerId};
use outpost_sim::{GameMode, SimError, TickSet};

const WITHIN: Duration = Duration::from_secs(20);

fn counted(calls: &[Call], counter: &str, to: i64) -> bool {
    calls.iter().any(|c| {
        matches!(c, Call::UpdateCounter { name, count: Some(n), .. } if name == counter && *n == to)
    })
}

fn health_pings(calls: &[Call]) -> usize {
    calls.iter().filter(|c| **c == Call::Health).count()
}

/// Ready once accepting, labelled, its Counters' capacities its limits; a player's join
/// counts in both Counters and Allocates it; once the match is over it is Ready again;
/// Health pings all along; Shutdown at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_under_agones_is_ready_labelled_counted_allocated_and_shut_down() {
    let sdk = SdkServer::start("edge-gs-1", "203.0.113.7", 7654).await;
    let edge = TestEdge::start_with(|c| {
        c.max_players = 50;
        c.max_matches = 4;
    })
    .await;
    let mut agones = Agones::connect(Some(sdk.port)).await.expect("connects");
    assert_eq!(
        agones.public_addr("quic").await.expect("address"),
        "203.0.113.7:7654".parse().expect("addr"),
        "the GameServer's address and its quic host port"
    );
    let lifecycle = agones
        .start(
            edge.edge.status(),
            &[("region", "eu-west"), ("version", "1.2.3")],
        )
        .await
        .expect("starts");
    sdk.until("Ready", WITHIN, |calls| calls.contains(&Call::Ready))
        .await;
    let calls = sdk.calls();
    let ready_at = calls.iter().position(|c| *c == Call::Ready).expect("ready");
    for before_ready in [
        Call::SetLabel("region".into(), "eu-west".into()),
        Call::SetLabel("version".into(), "1.2.3".into()),
    ] {
        let at = calls.iter().position(|c| *c == before_ready);
        assert!(
            at.is_some_and(|at| at < ready_at),
            "{before_ready:?} before Ready: {calls:?}"
        );
    }
    assert_eq!(
        sdk.counter("players"),
        Some((0, 50)),
        "capacity: the player limit"
    );
    assert_eq!(
        sdk.counter("matches"),
        Some((0, 4)),
        "capacity: the match limit"
    );
    assert_eq!(sdk.game_server().status.expect("status").state, "Ready");
    sdk.until("a Health ping", WITHIN, |calls| health_pings(calls) >= 1)
        .await;

    // A player joins a match of 5 s: counted, and the edge is Allocated.
    let config = MatchConfig {
        duration_s: 5,
        ..common::small_match()
    };
    let client = common::client();
    let session = client
        .connect(&edge.assignment(1, 77, &config))
        .await
        .expect("joins");
    sdk.until("one player, one match, Allocated", WITHIN, |calls| {
        counted(calls, "players", 1)
            && counted(calls, "matches", 1)
            && calls.contains(&Call::Allocate)
    })
    .await;
    assert_eq!(sdk.game_server().status.expect("status").state, "Allocated");
    // The match ends: no players, no matches, Ready again.
    sdk.until("the match over and Ready again", WITHIN, |calls| {
        let allocated = calls
            .iter()
            .position(|c| *c == Call::Allocate)
            .unwrap_or(usize::MAX);
        counted(calls, "matches", 0) && calls.iter().skip(allocated).any(|c| *c == Call::Ready)
    })
    .await;
    drop(session);
    let pings = health_pings(&sdk.calls());
    sdk.until("Health pings going on", WITHIN, |calls| {
        health_pings(calls) > pings
    })
    .await;

    lifecycle.shutdown().await.expect("shuts down");
    assert_eq!(sdk.calls().last(), Some(&Call::Shutdown));
    assert_eq!(sdk.game_server().status.expect("status").state, "Shutdown");
}

/// A mode whose tick waits for `GATE` while the test holds it: a sim worker stuck in a
/// match.
struct Stall;

static GATE: Mutex<()> = Mutex::new(());

fn stall() {
    drop(GATE.lock().unwrap_or_else(|e| e.into_inner()));
}

impl GameMode for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }

    fn default_config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn schema(&self, _mode_config: &[u8]) -> Result<ModeSchema, ConfigError> {
        Ok(ModeSchema {
            mode: "stall".into(),
            components: Vec::new(),
            input: Vec::new(),
            events: Vec::new(),
            requests: Vec::new(),
        })
    }

    fn setup(
        &self,
        _config: &MatchConfig,
        _world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError> {
        schedule.add_systems(stall.in_set(TickSet::PrePhysics));
        Ok(())
    }

    fn spawn_player(
        &self,
        world: &mut World,
        _player: PlayerId,
        _team: u8,
        _net_id: EntityId,
    ) -> Entity {
        world.spawn_empty().id()
    }

    fn write_records(&self, _world: &mut World, _out: &mut View) {}
}

/// Health is pinged from the tick loop's liveness: a sim worker stuck in a tick stops
/// the pings (so Agones marks the game server Unhealthy), and they resume once it turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::await_holding_lock,
    reason = "the lock is the stuck worker's gate: holding it while the test waits is the point"
)]
async fn a_stuck_sim_worker_stops_the_health_pings() {
    let sdk = SdkServer::start("edge-gs-2", "203.0.113.8", 7655).await;
    let edge = TestEdge::start_with(|c| {
        c.modes = outpost_sim::Modes::new().with(Stall);
        c.sim_threads = 1;
    })
    .await;
    let lifecycle = Agones::connect(Some(sdk.port))
        .await
        .expect("connects")
        .start(edge.edge.status(), &[])
        .await
        .expect("starts");
    sdk.until("a Health ping", WITHIN, |calls| health_pings(calls) >= 1)
        .await;

    let config = outpost_sim::Modes::new()
        .with(Stall)
        .config("stall", None)
        .expect("config");
    let client =
        outpost_client::Client::bind("127.0.0.1:0".parse().expect("addr")).expect("client binds");
    let stuck_here = GATE.lock().expect("gate");
    let _session = client
        .connect(&edge.assignment(1, 5, &config))
        .await
        .expect("joins");
    // The worker is stuck in the match's tick: once the stall is past the threshold no
    // ping comes. Wait for it to be seen as stuck, then for a Health period with none.
    let stuck = edge.edge.status();
    tokio::time::timeout(WITHIN, async {
        while stuck.sim_stalled_for() < outpost_edge::agones::STALLED_AFTER {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the worker is seen as stuck");
    let pings = health_pings(&sdk.calls());
    let quiet = tokio::time::timeout(
        outpost_edge::agones::HEALTH_EVERY * 2,
        sdk.until("no ping while stuck", WITHIN, |calls| {
            health_pings(calls) > pings
        }),
    )
    .await;
    assert!(
        quiet.is_err(),
        "a ping came from a stuck sim worker: {:?}",
        sdk.calls()
    );
    drop(stuck_here);
    sdk.until("pings again once it turns", WITHIN, |calls| {
        health_pings(calls) > pings
    })
    .await;
    lifecycle.shutdown().await.expect("shuts down");
}

/// `outpost edge --agones`, the process: it advertises the GameServer's address, is
/// Ready once listening, and after SIGTERM drains and calls Shutdown before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outpost_edge_with_agones_is_ready_then_shuts_down_after_the_drain_on_sigterm() {
    let sdk = SdkServer::start("edge-gs-3", "203.0.113.9", 7656).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("token.pub");
    let signer = outpost_protocol::TokenSigner::from_seed(&[4; 32]);
    let hex: String = signer
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&key, hex).expect("write");
    let log = std::fs::File::create(dir.path().join("edge.log")).expect("log file");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "edge",
            "--agones",
            "--edge-id",
            "edge-gs-3",
            "--region",
            "us-east",
        ])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--token-public-key-file")
        .arg(&key)
        .env("AGONES_SDK_GRPC_PORT", sdk.port.to_string())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("outpost edge starts");
    sdk.until("Ready", WITHIN, |calls| calls.contains(&Call::Ready))
        .await;
    assert!(
        sdk.calls()
            .contains(&Call::SetLabel("region".into(), "us-east".into()))
    );
    let pid = child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    sdk.until("Shutdown", WITHIN, |calls| calls.contains(&Call::Shutdown))
        .await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("task")
        .expect("exits");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("edge.log")).expect("log");
    assert!(
        log.contains("advertising the GameServer's address") && log.contains("203.0.113.9:7656"),
        "{log}"
    );
}
