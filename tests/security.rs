//! Attacks on an edge, each tried the way an attacker would and pinned by the test that
//! tried it: the attack must fail, and players must not notice it.

mod common;

use outpost_arena::{EntityKind, EntityState};
use outpost_sim::ModeSettings as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use outpost_edge::gateway::{Gateway, GatewayConfig};
use outpost_edge::handshake::Refusal;
use outpost_loadtest::flood::handshake_flood;
use outpost_protocol::MatchConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Loopback source addresses other than the players' 127.0.0.1.
fn flood_sources(n: u8) -> Vec<IpAddr> {
    (2..2 + n).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_does_not_block_joins() {
    let edge = TestEdge::start_with(|c| c.max_players = 8).await;
    // 1,200 Initials that are never followed up, each from its own source port, over
    // twelve addresses: once held a player slot each until they timed out.
    let flood = handshake_flood(
        edge.edge.quic_addr(),
        &flood_sources(12),
        1200,
        100,
        Duration::from_secs(5),
    )
    .await
    .expect("flood runs");
    assert_eq!(
        flood.answered, flood.sent,
        "the edge answered every Initial"
    );
    assert!(flood.retries > 0, "{flood:?}");
    let config = edge.edge.config();
    let metrics = edge.edge.metrics();
    assert!(metrics.handshakes_pending.get() as usize <= config.max_pending_handshakes);
    assert!(metrics.handshake_retries.get() > 0);

    // A real player joins while the flood's handshakes are still pending.
    let session = client()
        .connect(&edge.assignment(1, 1, &small_match()))
        .await
        .expect("a real join gets its Welcome during the flood");
    assert_eq!(session.welcome().player_id, outpost_protocol::PlayerId(1));
    assert_eq!(metrics.handshakes_refused_of(Refusal::PendingFull), 0);
    drop(session);
    edge.edge.shutdown().await;
}

/// Opens `count` connections to `addr` that send the start of a request and then nothing,
/// and waits (on the paused clock) until the server has closed every one, for at most
/// `limit`. Returns how many were closed at once (refused on accept: reset or closed
/// before the header deadline could pass).
async fn slow_clients_are_closed(addr: SocketAddr, count: usize, limit: Duration) -> usize {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        // Written before the server may have closed it: a refused one can reset.
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        streams.push(stream);
    }
    let started = tokio::time::Instant::now();
    let mut closing = tokio::task::JoinSet::new();
    for mut stream in streams {
        closing.spawn(async move {
            let mut buf = Vec::new();
            let closed =
                tokio::time::timeout_at(started + limit, stream.read_to_end(&mut buf)).await;
            closed.is_ok().then(|| started.elapsed())
        });
    }
    let mut at_once = 0;
    while let Some(closed) = closing.join_next().await {
        let after = closed
            .expect("joins")
            .unwrap_or_else(|| panic!("a slow client on {addr} was still open after {limit:?}"));
        if after < Duration::from_secs(1) {
            at_once += 1;
        }
    }
    at_once
}

/// Regression test for slow HTTP clients: 200 connections that sent
/// `GET / HTTP/1.1\r\nHost: x\r\n` and then nothing stayed open for good on the cloud API,
/// an edge's gateway and its admin server (`axum::serve` has no header timeout); about
/// 1,000 exhausted the process's file descriptors. Now each server cuts a request whose
/// headers do not arrive in time, closes idle keep-alive connections as quickly, and caps
/// connections in all and per address.
#[tokio::test(start_paused = true)]
async fn slow_http_clients_are_cut_off_on_every_server() {
    let header_timeout = Duration::from_secs(10);
    let limit = header_timeout + Duration::from_secs(2);

    // The cloud API.
    let cloud = std::sync::Arc::new(
        outpost_cloud::Cloud::in_memory(outpost_cloud::CloudConfig::dev(), None).expect("cloud"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let cloud_addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(outpost_cloud::serve(
        listener,
        cloud.clone(),
        stop.clone().cancelled_owned(),
    ));
    let at_once = slow_clients_are_closed(cloud_addr, 200, limit).await;
    assert_eq!(at_once, 0, "200 from one address is within the cloud's cap");
    assert_eq!(cloud.stats.connections.header_timeouts.get(), 200);
    assert_eq!(
        get_status(cloud_addr, "/v1/me").await,
        401,
        "the API still answers"
    );

    // An edge's gateway (its origin need not answer for this).
    let mut config = GatewayConfig::new("http://127.0.0.1:9", "edge", "region");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let gateway = Gateway::start(config).await.expect("gateway");
    let at_once = slow_clients_are_closed(gateway.addr(), 200, limit).await;
    let stats = &gateway.stats().connections;
    assert_eq!(
        at_once,
        200 - 64,
        "beyond 64 per address, refused on accept"
    );
    assert_eq!(stats.refused_of("per_address"), 136);
    assert_eq!(stats.header_timeouts.get(), 64);
    assert_eq!(get_status(gateway.addr(), "/v1/ping").await, 200);

    // An edge's admin server.
    let edge = TestEdge::start().await;
    let admin = edge.edge.http_addr().expect("admin server");
    let at_once = slow_clients_are_closed(admin, 200, Duration::from_secs(7)).await;
    assert_eq!(
        at_once,
        200 - 16,
        "beyond 16 per address, refused on accept"
    );
    assert_eq!(edge.edge.metrics().admin_http.header_timeouts.get(), 16);
    assert_eq!(get_status(admin, "/healthz").await, 200);

    edge.edge.shutdown().await;
    gateway.stop().await;
    stop.cancel();
    served.await.expect("joins").expect("cloud served");
}

/// The status of a plain `GET path` with `Connection: close`.
async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("reads");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Regression test for a client wedged for good: once it acknowledged a snapshot it
/// could not decode (lost, or its body spoiled), every later snapshot was a delta against
/// a baseline it did not have, and no keyframe ever came. Now the client asks for one
/// (an ack of 0) after a few failures, and acks that stay behind bring one too: it
/// decodes again well within a second (30 snapshots).
#[test]
fn an_ack_of_an_undecodable_snapshot_heals_within_a_second() {
    use outpost_client::netcode::Decoder;
    use outpost_edge::snapshot::{ClientSnapshots, Frame, Interest, InterestGrid};
    use outpost_protocol::{EntityId, Snapshot};

    let config = small_match();
    let settings = ArenaConfig::of(&config).expect("arena settings");
    let quantizer = settings.quantizer();
    let schema = arena::schema(&settings);
    let layout = outpost_protocol::replication::Layout::new(&schema);
    let own = EntityId(1);
    let interest = Interest::default();
    let mut edge = ClientSnapshots::new(own);
    let mut client = Decoder::new(layout.clone());
    let world = |tick: u32| -> Vec<EntityState> {
        (1..=12)
            .map(|id| EntityState {
                id: EntityId(id),
                kind: if id == 1 {
                    EntityKind::Player
                } else {
                    EntityKind::Prop
                },
                position: [id as f32 - 6.0, 1.0, (tick as f32 * 0.05).sin() * 5.0],
                rotation: [0.0, 0.0, 0.0, 1.0],
                velocity: [0.0; 3],
            })
            .collect()
    };
    let spoiled = 20;
    let mut healed_at = None;
    for n in 1..=60u32 {
        let tick = n * 2;
        let entities = world(tick);
        let records = arena::records(&quantizer, &entities);
        let positions: Vec<[f32; 3]> = entities.iter().map(|e| e.position).collect();
        let grid = InterestGrid::build(&positions, interest.cell);
        let frame = Frame {
            tick,
            layout: &layout,
            positions: &positions,
            records: &records,
            grid: &grid,
            interest,
        };
        let built = edge.build(&frame, 1100);
        let snapshot = Snapshot {
            tick,
            baseline_tick: built.baseline_tick,
            reference_gap: built.reference_gap,
            ack_input_seq: 0,
            ticks_left: 1000,
            body: built.body,
        };
        if n == spoiled {
            // Lost on the way (or spoiled), yet acknowledged by the client.
            edge.ack(tick);
            continue;
        }
        let decoded = client.decode(&snapshot).is_ok();
        if n > spoiled && decoded && healed_at.is_none() {
            healed_at = Some(n - spoiled);
        }
        edge.ack(client.ack());
    }
    let healed_after = healed_at.expect("the client never decoded a snapshot again");
    assert!(
        healed_after <= 30,
        "decoded again after {healed_after} snapshots"
    );
}

/// Regression test: a connect token's nonce was spent before the edge checked its
/// capacity, so a player refused because the edge was full could never use the token
/// again. Now a token refused for want of room stays good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_for_a_full_edge_stays_good() {
    use outpost_client::ClientError;
    use outpost_protocol::RejectCode;

    let edge = TestEdge::start_with(|c| c.max_players = 1).await;
    let config = small_match();
    let player = client();
    let first = player
        .connect(&edge.assignment(1, 1, &config))
        .await
        .expect("the first player joins");
    let second = edge.assignment(2, 1, &config);
    let other = client();
    match other.connect(&second).await {
        Err(ClientError::Rejected {
            code: RejectCode::EdgeFull,
            ..
        }) => {}
        Err(err) => panic!("expected EdgeFull, got {err}"),
        Ok(_) => panic!("expected EdgeFull, got a Welcome"),
    }
    first.close().await;
    // The slot frees once the edge has the first player's goodbye; the same token then
    // gets in (each try is a real join: no clock involved).
    let mut tries = 0;
    let joined = loop {
        tries += 1;
        assert!(tries <= 1000, "the slot never freed");
        match other.connect(&second).await {
            Ok(session) => break session,
            Err(ClientError::Rejected {
                code: RejectCode::EdgeFull,
                ..
            }) => {}
            Err(err) => panic!("the refused token was spent: {err}"),
        }
    };
    assert_eq!(joined.welcome().player_id, outpost_protocol::PlayerId(2));
    drop(joined);
    edge.edge.shutdown().await;
}

/// Regression test: a reconnect after the match had ended raised the match again under
/// its old id (and its new result could replace the real one in the outbox). An ended
/// match is over for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_the_match_ended_is_refused() {
    use outpost_client::ClientError;
    use outpost_protocol::RejectCode;

    let edge = TestEdge::start_with(|c| c.reconnect_grace = Duration::from_millis(100)).await;
    let assignment = edge.assignment(1, 1, &small_match());
    let player = client();
    let session = player.connect(&assignment).await.expect("joins");
    let key = session.welcome().reconnect_key;
    session.close().await;
    // Everyone left and the grace passed: the match ends as abandoned.
    eventually("the match to end", Duration::from_secs(10), || {
        edge.edge.matches() == 0
    })
    .await;
    match player.reconnect(&assignment, key).await {
        Err(ClientError::Rejected {
            code: RejectCode::MatchOver,
            ..
        }) => {}
        Err(err) => panic!("expected MatchOver, got {err}"),
        Ok(_) => panic!("the ended match was raised again"),
    }
    assert_eq!(edge.edge.matches(), 0);
    edge.edge.shutdown().await;
}

/// Regression test: a second grant for a running match id with another configuration was
/// accepted, and its Welcome reported the token's configuration rather than the match's
/// (the client then could not decode a single snapshot). Now it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_with_another_configuration_for_a_running_match_is_refused() {
    use outpost_client::ClientError;
    use outpost_protocol::RejectCode;

    let edge = TestEdge::start().await;
    let config = small_match();
    let first = client()
        .connect(&edge.assignment(1, 1, &config))
        .await
        .expect("joins");
    let other = MatchConfig {
        seed: config.seed + 1,
        ..config.clone()
    };
    match client().connect(&edge.assignment(2, 1, &other)).await {
        Err(ClientError::Rejected {
            code: RejectCode::ConfigMismatch,
            ..
        }) => {}
        Err(err) => panic!("expected ConfigMismatch, got {err}"),
        Ok(session) => panic!(
            "admitted; its Welcome says seed {}",
            session.welcome().config.seed
        ),
    }
    // The same configuration is welcome, and the Welcome carries the match's.
    let second = client()
        .connect(&edge.assignment(2, 1, &config))
        .await
        .expect("joins");
    assert_eq!(second.welcome().config, config);
    drop((first, second));
    edge.edge.shutdown().await;
}

/// A token whose schema hash is not the one this edge's build of the mode has (another
/// version of the mode made it, or a field of the mode's settings was changed without
/// the hash following) is refused with `SchemaMismatch` before any match exists, and a
/// mode the edge does not host with `UnknownMode`; neither creates a match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_schema_or_an_unknown_mode_is_refused_cleanly() {
    use outpost_client::ClientError;
    use outpost_protocol::RejectCode;

    let edge = TestEdge::start().await;
    let config = small_match();
    let refused = |config: MatchConfig, match_id: u64| {
        let assignment = edge.assignment(1, match_id, &config);
        async move {
            match client().connect(&assignment).await {
                Err(ClientError::Rejected { code, detail }) => (code, detail),
                Err(err) => panic!("expected a Reject, got {err}"),
                Ok(_) => panic!("admitted"),
            }
        }
    };
    let stale_hash = MatchConfig {
        schema_hash: config.schema_hash ^ 1,
        ..config.clone()
    };
    assert_eq!(refused(stale_hash, 1).await.0, RejectCode::SchemaMismatch);
    // The arena's settings changed (a bigger floor: other position bounds) but the hash
    // kept from the old ones.
    let mut resized = config.clone();
    resized.mode_config = outpost_protocol::encode_mode_config(&ArenaConfig {
        half_extent: 30.0,
        ..ArenaConfig::of(&config).expect("arena settings")
    });
    assert_eq!(refused(resized, 2).await.0, RejectCode::SchemaMismatch);
    let unknown = MatchConfig {
        mode: "tetris".into(),
        ..config.clone()
    };
    assert_eq!(refused(unknown, 3).await.0, RejectCode::UnknownMode);
    let garbage = MatchConfig {
        mode_config: vec![0xff; 3],
        ..config.clone()
    };
    assert_eq!(refused(garbage, 4).await.0, RejectCode::InvalidConfig);
    assert_eq!(edge.edge.matches(), 0, "no refused token made a match");
    // The right hash is welcome, and the Welcome's schema is the one it hashes to.
    let session = client()
        .connect(&edge.assignment(1, 5, &config))
        .await
        .expect("joins");
    let schema = outpost_protocol::schema::ModeSchema::decode(&session.welcome().schema)
        .expect("the Welcome carries the schema");
    assert_eq!(schema.hash(), config.schema_hash);
    assert_eq!(
        schema,
        arena::schema(&ArenaConfig::of(&config).expect("settings"))
    );
    drop(session);
    edge.edge.shutdown().await;
}

/// Regression test for connect tokens after an edge restart: the nonces an edge has seen
/// live in its memory, so an unexpired token worked again on the restarted edge. Now an
/// edge takes only tokens issued after it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_used_before_a_restart_is_refused_after_it() {
    use outpost_client::ClientError;
    use outpost_edge::{Edge, EdgeConfig};
    use outpost_protocol::{RejectCode, TokenSigner};

    let signer = TokenSigner::from_seed(&rand::random());
    let start = || async {
        let mut config = EdgeConfig::new(EDGE_ID, signer.public_key());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.http_listen = None;
        config.token_leeway = Duration::ZERO;
        config.modes = outpost_arena::modes();
        TestEdge {
            edge: Edge::start(config).await.expect("edge starts"),
            signer: TokenSigner::from_seed(&[0; 32]),
        }
    };
    let before = start().await;
    let token = before.token(1, 1, &small_match());
    let session = client()
        .connect(&before.assignment_for(&token, &signer))
        .await
        .expect("joins");
    drop(session);
    before.edge.shutdown().await;

    let after = start().await;
    match client()
        .connect(&after.assignment_for(&token, &signer))
        .await
    {
        Err(ClientError::Rejected {
            code: RejectCode::IssuedBeforeStart,
            ..
        }) => {}
        Err(err) => panic!("expected IssuedBeforeStart, got {err}"),
        Ok(_) => panic!("the token worked again after the restart"),
    }
    after.edge.shutdown().await;
}

/// Regression test for a rotated connect-token key: the edge fetched it from the cloud's
/// JWKS once, at start, so after the cloud rotated it every new player was refused until
/// the edge restarted. Now a token that fails its signature check makes the edge fetch
/// the keys again (and it does every minute anyway); the old key overlaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_connect_key_is_picked_up_while_the_edge_runs() {
    use std::sync::{Arc, Mutex};

    use base64::Engine as _;
    use outpost_client::ClientError;
    use outpost_edge::cloud_link::{CloudLink, CloudLinkConfig};
    use outpost_protocol::{RejectCode, TokenSigner};

    let jwk = |n: usize, signer: &TokenSigner| {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": format!("connect-{n}"),
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.public_key()),
        })
    };
    let old = TokenSigner::from_seed(&[31; 32]);
    let new = TokenSigner::from_seed(&[32; 32]);
    let published = Arc::new(Mutex::new(vec![jwk(1, &old)]));
    let jwks = {
        let published = published.clone();
        axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let keys = published.lock().expect("lock").clone();
                async move { axum::Json(serde_json::json!({ "keys": keys })) }
            }),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let cloud_url = format!("http://{}", listener.local_addr().expect("addr"));
    let origin = tokio::spawn(async move { axum::serve(listener, jwks).await });

    let edge = TestEdge::start_with(|c| c.token_public_key = old.public_key()).await;
    let mut link = CloudLinkConfig::new(&cloud_url, "credential", "region");
    link.key_refresh_spacing = Duration::ZERO;
    link.key_refresh_every = Duration::from_secs(3600);
    let link = CloudLink::start(&edge.edge, link).expect("link");
    let with = |signer: &TokenSigner, player| {
        edge.assignment_for(&edge.token(player, 1, &small_match()), signer)
    };

    match client().connect(&with(&new, 1)).await {
        Err(ClientError::Rejected {
            code: RejectCode::BadSignature,
            ..
        }) => {}
        Err(err) => panic!("expected BadSignature, got {err}"),
        Ok(_) => panic!("a key nobody published was trusted"),
    }
    // The cloud rotates: it publishes the new key beside the old one.
    published.lock().expect("lock").insert(0, jwk(2, &new));
    let mut tries = 0;
    let joined = loop {
        tries += 1;
        assert!(tries <= 1000, "the rotated key was never picked up");
        match client().connect(&with(&new, 2)).await {
            Ok(session) => break session,
            Err(ClientError::Rejected {
                code: RejectCode::BadSignature,
                ..
            }) => {}
            Err(err) => panic!("{err}"),
        }
    };
    let old_still = client()
        .connect(&with(&old, 3))
        .await
        .expect("the old key overlaps");
    drop((joined, old_still));
    link.stop().await;
    edge.edge.shutdown().await;
    origin.abort();
}

/// Regression test for open admin endpoints: `/metrics` and `/readyz` listened on
/// 0.0.0.0 by default with no auth. Now the admin server defaults to loopback, refuses
/// to start beyond it without a token, and with one asks every caller for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_beyond_loopback_need_a_token() {
    let mut open = outpost_edge::EdgeConfig::new(EDGE_ID, [7; 32]);
    assert!(
        open.http_listen.is_some_and(|a| a.ip().is_loopback()),
        "loopback by default"
    );
    open.http_listen = Some("0.0.0.0:0".parse().expect("addr"));
    let refused = open.validate().expect_err("no token beyond loopback");
    assert_eq!(refused.field, "admin_token");

    let token = "an-admin-token-of-some-length";
    let edge = TestEdge::start_with(|c| c.admin_token = Some(token.to_owned())).await;
    let admin = edge.edge.http_addr().expect("admin server");
    let http = outpost_edge::cloud_link::http_client().expect("client");
    for path in ["/metrics", "/readyz"] {
        let url = format!("http://{admin}{path}");
        let bare = http.get(&url).send().await.expect("answers");
        assert_eq!(bare.status(), 401, "{path}");
        let wrong = http.get(&url).bearer_auth("not-the-token-at-all").send();
        assert_eq!(wrong.await.expect("answers").status(), 401, "{path}");
        let right = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        assert_eq!(right.status(), 200, "{path}");
    }
    let health = http.get(format!("http://{admin}/healthz")).send().await;
    assert_eq!(health.expect("answers").status(), 200);
    edge.edge.shutdown().await;
}

/// Regression test for outbox head-of-line blocking: one item the cloud never accepted
/// (a 5xx forever) stopped every later item from being delivered. Items now go
/// independently, and a poisoned one is set aside once the cloud has taken others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_undeliverable_result_does_not_hold_up_the_outbox() {
    use std::sync::atomic::Ordering;

    use axum::extract::Path;
    use axum::http::StatusCode;
    use outpost_edge::cloud_link::{CloudLink, CloudLinkConfig};
    use outpost_edge::outbox::ItemKind;
    use outpost_protocol::MatchId;

    // A cloud that fails match 1's result forever and takes the rest.
    let cloud = axum::Router::new().route(
        "/v1/matches/{id}/result",
        axum::routing::post(|Path(id): Path<u64>| async move {
            if id == 1 {
                (StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned())
            } else {
                (
                    StatusCode::OK,
                    format!(r#"{{"match_id":{id},"applied":true}}"#),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let cloud_url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = tokio::spawn(async move { axum::serve(listener, cloud).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let edge = TestEdge::start_with(|c| c.outbox_dir = Some(dir.path().to_owned())).await;
    let outbox = edge.edge.outbox().expect("outbox").clone();
    for id in [1, 2, 3] {
        outbox
            .put(MatchId(id), ItemKind::Result, br#"{"edge_id":"test-edge"}"#)
            .expect("written");
    }
    let mut config = CloudLinkConfig::new(&cloud_url, "credential", "region");
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(50);
    config.dead_letter_tries = 3;
    config.dead_letter_after = Duration::ZERO;
    let link = CloudLink::start(&edge.edge, config).expect("link");
    let stats = link.stats().clone();
    eventually(
        "matches 2 and 3 delivered past match 1",
        Duration::from_secs(20),
        || stats.results_delivered.load(Ordering::Relaxed) == 2,
    )
    .await;
    eventually("match 1 set aside", Duration::from_secs(20), || {
        stats.refused.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(outbox.pending().expect("lists").is_empty());
    assert!(
        dir.path().join("dead/1.result.json").exists(),
        "kept for an operator"
    );
    link.stop().await;
    edge.edge.shutdown().await;
    served.abort();
}
