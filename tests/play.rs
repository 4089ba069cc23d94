//! End to end over real loopback QUIC: players join an edge, move, see each other, shoot,
//! score, leave, rejoin; a match ends; the edge shuts down cleanly.

mod common;

use outpost_arena::{EntityState, PlayerInput};
use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use outpost_client::Session;
use outpost_protocol::*;
use tokio::time::timeout;

fn entity_in(session: &Session, id: EntityId) -> Option<EntityState> {
    let world = session.latest_snapshot()?;
    EntityState::from_record(&session.fields(), &world.records.find(id)?)
}

/// Sends idle inputs until a snapshot shows every entity in `ids`.
async fn until_visible(session: &mut Session, ids: &[EntityId]) {
    timeout(Duration::from_secs(10), async {
        loop {
            session
                .send_input(PlayerInput::default())
                .expect("input sent");
            let snapshot = session.next_snapshot().await.expect("snapshots flow");
            if ids.iter().all(|id| snapshot.records.find(*id).is_some()) {
                return;
            }
        }
    })
    .await
    .expect("every entity becomes visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_players_join_move_see_each_other_and_score() {
    let edge = TestEdge::start().await;
    let client = client();
    let config = small_match();
    let mut sessions = Vec::new();
    for player in 1..=4 {
        let session = client
            .connect(&edge.assignment(player, 77, &config))
            .await
            .expect("joins");
        assert_eq!(session.welcome().player_id, PlayerId(player));
        assert_eq!(session.welcome().match_id, MatchId(77));
        sessions.push(session);
    }
    let entities: Vec<EntityId> = sessions.iter().map(Session::entity).collect();
    assert_eq!(
        entities.iter().collect::<BTreeSet<_>>().len(),
        4,
        "one entity each"
    );
    for session in &mut sessions {
        until_visible(session, &entities).await;
    }
    assert_eq!(edge.edge.matches(), 1);
    assert_eq!(edge.edge.metrics().players.get(), 4);

    // Player 1 walks forward for half a second; player 2 watches it move.
    let (mover, watcher) = (entities[0], 1);
    let start = entity_in(&sessions[watcher], mover)
        .expect("watcher sees the mover")
        .position;
    let mut walked = false;
    for _ in 0..120 {
        sessions[0]
            .send_input(PlayerInput {
                move_z: 127,
                ..Default::default()
            })
            .expect("input");
        for other in &sessions[1..] {
            other.send_input(PlayerInput::default()).expect("input");
        }
        sessions[watcher]
            .next_snapshot()
            .await
            .expect("snapshots flow");
        let now = entity_in(&sessions[watcher], mover)
            .expect("still visible")
            .position;
        let moved = ((now[0] - start[0]).powi(2) + (now[2] - start[2]).powi(2)).sqrt();
        if moved > 1.0 {
            walked = true;
            break;
        }
    }
    assert!(walked, "player 2 saw player 1 walk a metre");

    // Player 1 hunts player 2: walk toward them, aim, fire, until the edge reports a hit.
    let target = entities[1];
    let hit = timeout(Duration::from_secs(15), async {
        loop {
            let snapshot = sessions[0].next_snapshot().await.expect("snapshots flow");
            let fields = sessions[0].fields();
            let typed = |id| EntityState::from_record(&fields, &snapshot.records.find(id)?);
            let (me, them) = (typed(entities[0]), typed(target));
            if let (Some(me), Some(them)) = (me, them) {
                let d = [
                    them.position[0] - me.position[0],
                    them.position[1] - me.position[1],
                    them.position[2] - me.position[2],
                ];
                let input = PlayerInput {
                    yaw: PlayerInput::yaw_from_radians(d[0].atan2(d[2])),
                    pitch: PlayerInput::pitch_from_radians(
                        d[1].atan2((d[0] * d[0] + d[2] * d[2]).sqrt()),
                    ),
                    move_z: 127,
                    buttons: PlayerInput::FIRE,
                    ..Default::default()
                };
                sessions[0].send_input(input).expect("input");
            }
            for other in &sessions[1..] {
                other.send_input(PlayerInput::default()).expect("input");
            }
            while let Some(event) = sessions[1].try_next_event() {
                if let Some(hit) = arena::Hit::from_event(&event.event) {
                    return (hit.shooter, hit.target, hit.shooter_score);
                }
            }
        }
    })
    .await
    .expect("a hit within 15 s");
    let entity = |i: usize| sessions[i].entity();
    assert_eq!(hit, (entity(0), entity(1), 1));
    let shooter = entity(0);
    // The shooter and a bystander learn of it too, reliably.
    for index in [0, 3] {
        let session = &mut sessions[index];
        let seen = timeout(Duration::from_secs(5), async {
            while let Some(event) = session.next_event().await {
                if arena::Hit::from_event(&event.event).is_some_and(|hit| hit.shooter == shooter) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true));
    }

    for session in sessions {
        session.close().await;
    }
    eventually("players to leave", Duration::from_secs(5), || {
        edge.edge.metrics().players.get() == 0
    })
    .await;
    edge.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_player_rejoins_their_seat_within_the_grace_period() {
    let edge = TestEdge::start().await;
    let client = client();
    let config = small_match();
    let assignment = edge.assignment(1, 5, &config);
    let mut first = client.connect(&assignment).await.expect("joins");
    let keep = client
        .connect(&edge.assignment(2, 5, &config))
        .await
        .expect("joins");
    first.next_snapshot().await.expect("snapshots flow");
    let (entity, key) = (first.entity(), first.welcome().reconnect_key);
    first.abort();
    eventually("the edge to see the drop", Duration::from_secs(10), || {
        edge.edge.metrics().players.get() == 1
    })
    .await;

    // The same token without the key is a replay; with it, a rejoin into the same seat.
    match client.connect(&assignment).await {
        Err(outpost_client::ClientError::Rejected { code, .. }) => {
            assert_eq!(code, RejectCode::TokenReused)
        }
        other => panic!("replay admitted: {:?}", other.map(|s| s.entity())),
    }
    let mut again = client.reconnect(&assignment, key).await.expect("rejoins");
    assert_eq!(again.entity(), entity);
    assert!(again.next_snapshot().await.is_some());
    assert_eq!(edge.edge.metrics().players.get(), 2);
    assert_eq!(edge.edge.matches(), 1);
    again.close().await;
    keep.close().await;
    edge.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_match_ends_on_time_and_everyone_gets_the_result() {
    let edge = TestEdge::start().await;
    let client = client();
    let config = MatchConfig {
        duration_s: 5,
        tick_hz: 30,
        ..small_match()
    };
    let mut players = Vec::new();
    for player in 1..=2 {
        players.push(
            client
                .connect(&edge.assignment(player, 9, &config))
                .await
                .expect("joins"),
        );
    }
    for session in &mut players {
        let ended = timeout(Duration::from_secs(15), async {
            while let Some(event) = session.next_event().await {
                if let MatchEvent::MatchEnded { reason, scores } = event.event {
                    return Some((reason, event.tick, scores.len()));
                }
            }
            None
        })
        .await
        .expect("the match ends within 15 s");
        assert_eq!(ended, Some((MatchEndReason::TimeUp, 150, 2)));
    }
    eventually("goodbyes", Duration::from_secs(5), || {
        players
            .iter()
            .all(|p| p.goodbye() == Some(GoodbyeReason::MatchOver))
    })
    .await;
    eventually("the match to close", Duration::from_secs(5), || {
        edge.edge.matches() == 0
    })
    .await;
    // A token for the ended match creates a new one: ids are the cloud's to keep unique.
    edge.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_keep_to_the_budget_and_fill_the_view_in_over_time() {
    let edge = TestEdge::start_with(|c| c.client_bandwidth_bps = 64_000).await;
    let client = client();
    let config = arena_match(ArenaConfig {
        props: 1000,
        half_extent: 60.0,
        ..ArenaConfig::default()
    });
    let mut session = client
        .connect(&edge.assignment(1, 3, &config))
        .await
        .expect("joins");
    let mut sizes = Vec::new();
    for _ in 0..60 {
        session.send_input(PlayerInput::default()).expect("input");
        let world = session.next_snapshot().await.expect("snapshots flow");
        assert!(
            world.records.find(session.entity()).is_some(),
            "own character always sent"
        );
        sizes.push(world.records.len());
    }
    // 64 kbit/s at 30 snapshots/s is 266 bytes a snapshot: the hundreds of props around
    // the player arrive over several snapshots, most important first.
    assert!(sizes[0] < 100, "first snapshot holds {} entities", sizes[0]);
    assert!(sizes[59] > 2 * sizes[0], "the view fills in: {sizes:?}");
    let stats = session.stats();
    let per_snapshot = stats.bytes_received / stats.snapshots_received;
    assert!(per_snapshot <= 266, "{per_snapshot} bytes per snapshot");
    assert_eq!(edge.edge.metrics().snapshots_dropped.get(), 0);
    session.close().await;
    edge.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_matches_and_says_goodbye() {
    let edge = TestEdge::start().await;
    let client = client();
    let mut session = client
        .connect(&edge.assignment(1, 4, &small_match()))
        .await
        .expect("joins");
    session.next_snapshot().await.expect("snapshots flow");
    edge.edge.shutdown().await;
    let ended = timeout(Duration::from_secs(5), async {
        while let Some(event) = session.next_event().await {
            if let MatchEvent::MatchEnded { reason, .. } = event.event {
                return Some(reason);
            }
        }
        None
    })
    .await
    .expect("the end arrives");
    assert_eq!(ended, Some(MatchEndReason::Shutdown));
    assert_eq!(session.goodbye(), Some(GoodbyeReason::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served() {
    let edge = TestEdge::start().await;
    let client = client();
    let mut session = client
        .connect(&edge.assignment(1, 8, &small_match()))
        .await
        .expect("joins");
    session.next_snapshot().await.expect("snapshots flow");
    let http = edge.edge.http_addr().expect("admin http");
    let metrics = http_get(http, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for name in [
        "outpost_edge_tick_duration_seconds_bucket",
        "outpost_edge_players 1",
        "outpost_edge_matches 1",
        "outpost_edge_datagrams_out_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    assert!(http_get(http, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/readyz").await.starts_with("HTTP/1.1 200"));
    edge.edge.drain();
    assert!(http_get(http, "/readyz").await.starts_with("HTTP/1.1 503"));
    // Draining: the running match still takes players, new matches are refused.
    let late = client
        .connect(&edge.assignment(2, 8, &small_match()))
        .await
        .expect("joins a running match");
    match client
        .connect(&edge.assignment(3, 99, &small_match()))
        .await
    {
        Err(outpost_client::ClientError::Rejected { code, .. }) => {
            assert_eq!(code, RejectCode::Draining)
        }
        other => panic!("new match while draining: {:?}", other.map(|s| s.entity())),
    }
    late.close().await;
    session.close().await;
    edge.edge.shutdown().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    response
}
