//! Matchmaking, results, leaderboards and replays through the HTTP API, on the memory
//! store: placement by ping, tokens minted per player, results applied exactly once,
//! cacheable reads, and bad input refused without a trace.

mod common;
#[path = "common/s3.rs"]
mod s3_server;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{call, cloud_with_blobs};
use outpost_cloud::modes::{BoardConfig, Period, Stat};
use outpost_cloud::store::BoardOp;
use outpost_cloud::{Cloud, CloudConfig, ModeConfig, matcher};
use outpost_protocol::replay::{ReplayHeader, ReplayWriter};
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::{MatchConfig, MatchId, SignedToken, TokenVerifier};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const SECRET: &str = "edge-secret-for-the-play-tests";

/// The schema of the matches these tests place (the cloud reads only its hash, and a
/// replay's schema must hash to it).
fn schema() -> ModeSchema {
    ModeSchema {
        mode: "arena".into(),
        components: Vec::new(),
        input: Vec::new(),
        events: Vec::new(),
        requests: Vec::new(),
    }
}

fn cloud() -> Arc<Cloud> {
    cloud_on(Arc::new(object_store::memory::InMemory::new()))
}

/// The test cloud, its replays in `blobs`.
fn cloud_on(blobs: Arc<dyn object_store::ObjectStore>) -> Arc<Cloud> {
    let template = MatchConfig {
        schema_hash: schema().hash(),
        ..MatchConfig::new("arena")
    };
    let mut mode = ModeConfig::free_for_all(template, 2, 30);
    mode.rules.steps[0].max_ping_ms = 60;
    mode.boards.push(BoardConfig {
        name: "arena-shots".into(),
        stat: Stat::Named("shots".into()),
        op: BoardOp::Incr,
        periods: vec![Period::AllTime],
    });
    cloud_with_blobs(
        CloudConfig {
            edge_secret: Some(SECRET.into()),
            modes: vec![mode],
            ..CloudConfig::dev()
        },
        [3; 32],
        blobs,
    )
}

fn json_request(method: &str, uri: &str, auth: Option<String>, body: &Value) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth);
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

fn get(uri: &str, auth: Option<String>) -> Request<Body> {
    let mut builder = Request::builder().uri(uri);
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth);
    }
    builder.body(Body::empty()).expect("request")
}

/// `Authorization` of edge `id`, with its own credential.
fn edge_auth_for(id: &str) -> Option<String> {
    let credential = outpost_cloud::edges::edge_credential_for(SECRET, id);
    Some(format!("Edge {id}:{credential}"))
}

/// `Authorization` of edge `b-1`, where the tests' matches are placed.
fn edge_auth() -> Option<String> {
    edge_auth_for("b-1")
}

async fn heartbeat(cloud: &Arc<Cloud>, id: &str, region: &str, port: u16, draining: bool) {
    let beat = json!({
        "edge_id": id, "region": region, "quic_addr": format!("127.0.0.1:{port}"),
        "cert_sha256": "ab".repeat(32), "capacity": 64, "load": 0, "match_capacity": 16, "matches": 0, "draining": draining,
    });
    let (status, body) = call(
        cloud,
        json_request("POST", "/v1/edges/heartbeat", edge_auth_for(id), &beat),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn login(cloud: &Arc<Cloud>, device: &str) -> (u64, String) {
    let (status, body) = call(
        cloud,
        json_request(
            "POST",
            "/v1/auth/guest",
            None,
            &json!({"device_id": common::device(device)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["player_id"].as_u64().expect("id"),
        format!("Bearer {}", body["access_token"].as_str().expect("token")),
    )
}

async fn ticket(cloud: &Arc<Cloud>, bearer: &str, body: &Value) -> (StatusCode, Value) {
    call(
        cloud,
        json_request(
            "POST",
            "/v1/matchmaking/tickets",
            Some(bearer.to_owned()),
            body,
        ),
    )
    .await
}

/// Two players matched on edge `b-1`; returns their ids, bearers and the match id.
async fn matched_pair(cloud: &Arc<Cloud>) -> (Vec<(u64, String)>, u64) {
    let (players, match_id, _) = matched_pair_with_tickets(cloud).await;
    (players, match_id)
}

/// [`matched_pair`], and the players' ticket ids.
async fn matched_pair_with_tickets(cloud: &Arc<Cloud>) -> (Vec<(u64, String)>, u64, Vec<u64>) {
    heartbeat(cloud, "a-1", "region-a", 7001, false).await;
    heartbeat(cloud, "b-1", "region-b", 7002, false).await;
    let mut players = Vec::new();
    let mut tickets = Vec::new();
    for device in ["dev-1", "dev-2"] {
        let (id, bearer) = login(cloud, device).await;
        let (status, body) = ticket(
            cloud,
            &bearer,
            &json!({"mode": "arena", "pings_ms": {"region-a": 50, "region-b": 12}}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "searching");
        tickets.push(body["id"].as_u64().expect("ticket id"));
        players.push((id, bearer));
    }
    let mode = cloud.config.modes[0].clone();
    assert_eq!(matcher::round(cloud, &mode).await.expect("round"), 1);
    let mut match_id = 0;
    for ((player, bearer), ticket) in players.iter().zip(&tickets) {
        let (status, body) = call(
            cloud,
            get(
                &format!("/v1/matchmaking/tickets/{ticket}?wait_ms=100"),
                Some(bearer.clone()),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "matched", "{body}");
        let assignment = &body["assignment"];
        assert_eq!(assignment["edge_id"], "b-1", "the pings favour region B");
        assert_eq!(assignment["quic_addr"], "127.0.0.1:7002");
        // The token is this player's, for that edge, signed with the published key.
        let token = SignedToken::from_text(assignment["connect_token"].as_str().expect("token"))
            .expect("token text");
        let verifier = TokenVerifier::new(&cloud.connect.public_key()).expect("key");
        let claims = verifier
            .verify(&token, common_now_ms(), "b-1")
            .expect("the edge would admit it");
        assert_eq!(claims.player_id.0, *player);
        match_id = assignment["match_id"].as_u64().expect("match id");
        assert_eq!(claims.match_id.0, match_id);
    }
    (players, match_id, tickets)
}

fn common_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn result_body(players: &[(u64, String)], scores: &[i64]) -> Value {
    json!({
        "edge_id": "b-1", "outcome": "completed", "ticks": 1800,
        "players": players.iter().zip(scores).map(|((p, _), s)| json!({"player_id": p, "score": s})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn tickets_are_placed_by_ping_with_tokens_and_cannot_be_cancelled_once_matched() {
    let cloud = cloud();
    let (players, _, tickets) = matched_pair_with_tickets(&cloud).await;
    // The JWKS publishes the connect-token key next to the access-token keys.
    let (_, jwks) = call(&cloud, get("/.well-known/jwks.json", None)).await;
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == cloud.connect_kid().as_str())
    );
    let (status, body) = call(
        &cloud,
        Request::builder()
            .method("DELETE")
            .uri(format!("/v1/matchmaking/tickets/{}", tickets[0]))
            .header(header::AUTHORIZATION, players[0].1.clone())
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "ticket_settled");
    // Someone else's ticket is not found.
    let (_, stranger) = login(&cloud, "dev-3").await;
    let uri = format!("/v1/matchmaking/tickets/{}", tickets[0]);
    let (status, _) = call(&cloud, get(&uri, Some(stranger))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_searching_ticket_cancels_and_a_draining_or_far_edge_gets_nothing() {
    let cloud = cloud();
    heartbeat(&cloud, "b-1", "region-b", 7002, true).await;
    heartbeat(&cloud, "a-1", "region-a", 7001, false).await;
    let mut tickets = Vec::new();
    for device in ["x-1", "x-2"] {
        let (_, bearer) = login(&cloud, device).await;
        // Region A is beyond the 60 ms first-step limit; B drains.
        let (_, body) = ticket(
            &cloud,
            &bearer,
            &json!({"mode": "arena", "pings_ms": {"region-a": 90, "region-b": 10}}),
        )
        .await;
        tickets.push((body["id"].as_u64().expect("id"), bearer));
    }
    let mode = cloud.config.modes[0].clone();
    assert_eq!(matcher::round(&cloud, &mode).await.expect("round"), 0);
    let (id, bearer) = &tickets[0];
    let delete = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/matchmaking/tickets/{id}"))
        .header(header::AUTHORIZATION, bearer.clone())
        .body(Body::empty())
        .expect("request");
    let (status, body) = call(&cloud, delete).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(
        cloud.store.searching("arena").await.expect("store").len(),
        1
    );
}

#[tokio::test]
async fn bad_tickets_are_refused_and_leave_nothing() {
    let cloud = cloud();
    let (_, bearer) = login(&cloud, "p").await;
    let cases = [
        (
            json!({"mode": "nope", "pings_ms": {"eu": 10}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mode": "arena", "pings_ms": {}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mode": "arena", "pings_ms": {"EU WEST": 10}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mode": "arena", "pings_ms": {"eu": "fast"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mode": "arena", "pings_ms": {"eu": 10}, "extra": true}),
            StatusCode::BAD_REQUEST,
        ),
        // Valid by the schema, refused by a rule it cannot state.
        (
            json!({"mode": "arena", "pings_ms": {"eu": 10}, "party": [999]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"mode": "arena", "pings_ms": {"eu": 10}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (case, want) in cases {
        let (status, body) = ticket(&cloud, &bearer, &case).await;
        assert_eq!(status, want, "{case} → {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    for forged in [
        "Bearer not.a.jwt",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        "Basic x",
    ] {
        let (status, _) = ticket(
            &cloud,
            forged,
            &json!({"mode": "arena", "pings_ms": {"eu": 10}}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = call(
        &cloud,
        json_request(
            "POST",
            "/v1/matchmaking/tickets",
            Some(bearer.clone()),
            &json!("x".repeat(20_000)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        cloud
            .store
            .searching("arena")
            .await
            .expect("store")
            .is_empty()
    );
}

#[tokio::test]
async fn a_result_posted_ten_times_at_once_and_in_turn_is_applied_once() {
    let cloud = cloud();
    let (players, match_id) = matched_pair(&cloud).await;
    let uri = format!("/v1/matches/{match_id}/result");
    let body = result_body(&players, &[7, 3]);
    let concurrent: Vec<_> = (0..5)
        .map(|_| {
            let (cloud, uri, body) = (cloud.clone(), uri.clone(), body.clone());
            tokio::spawn(async move {
                call(&cloud, json_request("POST", &uri, edge_auth(), &body)).await
            })
        })
        .collect();
    let mut applied = 0;
    for task in concurrent {
        let (status, answer) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{answer}");
        applied += usize::from(answer["applied"] == true);
    }
    for _ in 0..5 {
        let (status, answer) = call(&cloud, json_request("POST", &uri, edge_auth(), &body)).await;
        assert_eq!(status, StatusCode::OK);
        applied += usize::from(answer["applied"] == true);
    }
    assert_eq!(applied, 1);
    assert_eq!(cloud.stats.results_applied.get(), 1);
    // Ratings moved once: the winner up, the loser down.
    let ids = [players[0].0, players[1].0];
    let ratings = cloud.store.ratings("arena", &ids).await.expect("store");
    let (winner, loser) = (ratings[0].expect("rated"), ratings[1].expect("rated"));
    assert!(winner.mu > 25.0 && loser.mu < 25.0, "{winner:?} {loser:?}");
    assert_eq!(
        cloud.store.history(ids[0], 10).await.expect("store"),
        vec![match_id]
    );
    // The board: winner first; every read cacheable, and revalidates to 304.
    let (status, page) = call(&cloud, get("/v1/leaderboards/arena-best?limit=1", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 2);
    assert_eq!(page["entries"][0]["player_id"], ids[0]);
    assert_eq!(page["next_cursor"], "1");
    let (_, next) = call(
        &cloud,
        get("/v1/leaderboards/arena-best?limit=1&cursor=1", None),
    )
    .await;
    assert_eq!(next["entries"][0]["player_id"], ids[1]);
    assert_eq!(next["entries"][0]["rank"], 2);
    let response = outpost_cloud::router(cloud.clone())
        .oneshot(get("/v1/leaderboards/arena-best?period=daily", None))
        .await
        .expect("answers");
    let etag = response.headers()[header::ETAG].clone();
    assert!(
        response.headers()[header::CACHE_CONTROL]
            .to_str()
            .expect("ascii")
            .contains("max-age")
    );
    let revalidate = Request::builder()
        .uri("/v1/leaderboards/arena-best?period=daily")
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .expect("request");
    let response = outpost_cloud::router(cloud.clone())
        .oneshot(revalidate)
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let (status, me) = call(
        &cloud,
        get(
            &format!("/v1/leaderboards/arena-wins/players/{}", ids[0]),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["rank"].as_u64(), me["score"].as_f64()),
        (Some(1), Some(1.0))
    );
    let (status, around) = call(
        &cloud,
        get(
            &format!("/v1/leaderboards/arena-total/around/{}?limit=1", ids[1]),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(around["entries"].as_array().expect("rows").len(), 2);
    for (uri, want) in [
        (
            "/v1/leaderboards/arena-best?period=hourly",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/leaderboards/arena-total?period=daily",
            StatusCode::NOT_FOUND,
        ),
        ("/v1/leaderboards/no-such-board", StatusCode::NOT_FOUND),
        (
            "/v1/leaderboards/arena-best?cursor=zz",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/leaderboards/arena-best?limit=1000",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(call(&cloud, get(uri, None)).await.0, want, "{uri}");
    }
}

async fn consent_of(cloud: &Arc<Cloud>, bearer: &str, leader: u64) -> String {
    let (status, body) = call(
        cloud,
        json_request(
            "POST",
            "/v1/matchmaking/consents",
            Some(bearer.to_owned()),
            &json!({"leader": leader, "mode": "arena"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["consent"].as_str().expect("consent").to_owned()
}

/// Regression test for the party hijack: a ticket's owner could name any players as its
/// party (three strangers were accepted, 201), dragging them into matches they never
/// joined. Now a party needs every other member's consent, for this leader and mode.
#[tokio::test]
async fn party_hijack_needs_every_members_consent() {
    let cloud = cloud();
    heartbeat(&cloud, "b-1", "region-b", 7002, false).await;
    let (leader, leader_bearer) = login(&cloud, "leader").await;
    let (victim, victim_bearer) = login(&cloud, "victim").await;
    let body = |consents: Vec<String>| {
        json!({"mode": "arena", "pings_ms": {"region-b": 12}, "party": [leader, victim],
            "party_consents": consents})
    };
    let (status, answer) = ticket(&cloud, &leader_bearer, &body(vec![])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "consent_required");

    // Nothing but the victim's own consent to this leader will do.
    let leaders_own = consent_of(&cloud, &leader_bearer, leader).await;
    let for_another = consent_of(&cloud, &victim_bearer, 424_242).await;
    let access_token = victim_bearer
        .strip_prefix("Bearer ")
        .expect("bearer")
        .to_owned();
    for bad in [leaders_own, for_another, access_token, "x.y.z".to_owned()] {
        let (status, answer) = ticket(&cloud, &leader_bearer, &body(vec![bad])).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    assert!(
        cloud
            .store
            .searching("arena")
            .await
            .expect("store")
            .is_empty()
    );

    // A consent is not its signer's access token.
    let consent = consent_of(&cloud, &victim_bearer, leader).await;
    let (status, _) = call(&cloud, get("/v1/me", Some(format!("Bearer {consent}")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, answer) = ticket(&cloud, &leader_bearer, &body(vec![consent])).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["players"], json!([leader, victim]));
}

/// The other half of the party hijack: a player placed in a match who never connected
/// to it scored 0 and lost rating. The edge lists who played; only they are rated.
#[tokio::test]
async fn a_player_placed_but_never_connected_is_not_rated() {
    let cloud = cloud();
    let (players, match_id) = matched_pair(&cloud).await;
    let (played, absent) = (players[0].0, players[1].0);
    let body = result_body(&players[..1], &[5]);
    let (status, answer) = call(
        &cloud,
        json_request(
            "POST",
            &format!("/v1/matches/{match_id}/result"),
            edge_auth(),
            &body,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["applied"], true);
    let ratings = cloud
        .store
        .ratings("arena", &[played, absent])
        .await
        .expect("store");
    assert_eq!(ratings[1], None, "the absent player's rating is untouched");
    assert!(
        cloud
            .store
            .history(absent, 10)
            .await
            .expect("store")
            .is_empty()
    );
    assert_eq!(
        cloud.store.history(played, 10).await.expect("store"),
        vec![match_id]
    );
}

/// Regression test: a player could file any number of tickets, and a ticket naming only
/// regions without an edge waited out its time to live, parsed by the matcher every
/// round. Now one searching ticket per player per mode, and only regions with an edge.
#[tokio::test]
async fn one_ticket_per_player_per_mode_and_only_regions_with_edges() {
    let cloud = cloud();
    heartbeat(&cloud, "b-1", "region-b", 7002, false).await;
    let (player, bearer) = login(&cloud, "solo").await;
    let body = json!({"mode": "arena", "pings_ms": {"region-b": 12}});
    let (status, first) = ticket(&cloud, &bearer, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    for _ in 0..3 {
        let (status, again) = ticket(&cloud, &bearer, &body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
        assert_eq!(again["error"]["code"], "ticket_exists");
    }
    // Nor as a member of someone's party.
    let (leader, leader_bearer) = login(&cloud, "leader").await;
    let consent = consent_of(&cloud, &bearer, leader).await;
    let (status, party) = ticket(
        &cloud,
        &leader_bearer,
        &json!({"mode": "arena", "pings_ms": {"region-b": 12}, "party": [leader, player],
            "party_consents": [consent]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{party}");
    assert_eq!(
        cloud.store.searching("arena").await.expect("store").len(),
        1
    );
    // Cancelled, it may search again.
    let id = first["id"].as_u64().expect("id");
    let cancel = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/matchmaking/tickets/{id}"))
        .header(header::AUTHORIZATION, bearer.clone())
        .body(Body::empty())
        .expect("request");
    assert_eq!(call(&cloud, cancel).await.0, StatusCode::OK);
    assert_eq!(ticket(&cloud, &bearer, &body).await.0, StatusCode::CREATED);

    // Regions without an edge are dropped; a ticket naming only those is refused.
    let (_, other) = login(&cloud, "far").await;
    let (status, nowhere) = ticket(
        &cloud,
        &other,
        &json!({"mode": "arena", "pings_ms": {"nowhere": 5}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{nowhere}");
    let (status, kept) = ticket(
        &cloud,
        &other,
        &json!({"mode": "arena", "pings_ms": {"nowhere": 5, "region-b": 30}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    let stored = cloud
        .store
        .ticket(kept["id"].as_u64().expect("id"))
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(stored.pings_ms.keys().collect::<Vec<_>>(), ["region-b"]);
}

/// Regression test for results and replays from the wrong edge: any holder of the one
/// fleet credential posted results as any edge and could upload a match's replay first.
/// Now only the edge the match was placed on may, with its own credential.
#[tokio::test]
async fn only_the_edge_a_match_was_placed_on_may_report_it() {
    let cloud = cloud();
    let (players, match_id) = matched_pair(&cloud).await;
    // Edge a-1 is a registered edge with a good credential — of its own, not b-1's.
    let body = result_body(&players, &[9, 0]);
    let uri = format!("/v1/matches/{match_id}/result");
    let (status, answer) = call(
        &cloud,
        json_request("POST", &uri, edge_auth_for("a-1"), &body),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let upload = Request::builder()
        .method("PUT")
        .uri(format!("/v1/replays/{match_id}"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::AUTHORIZATION, edge_auth_for("a-1").expect("auth"))
        .body(Body::from(replay_of(match_id, &cloud)))
        .expect("request");
    let (status, answer) = call(&cloud, upload).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(cloud.store.result(match_id).await.expect("store").is_none());
    assert!(cloud.store.replay(match_id).await.expect("store").is_none());
    // The edge it was placed on may.
    let (status, answer) = call(&cloud, json_request("POST", &uri, edge_auth(), &body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// A board that ranks one of the mode's own stats reads it by name from each player's
/// line; a player whose line lacks it scores nothing there; the stored result keeps the
/// stats as posted.
#[tokio::test]
async fn a_board_ranks_a_stat_of_the_mode_by_name() {
    let cloud = cloud();
    let (players, match_id) = matched_pair(&cloud).await;
    let uri = format!("/v1/matches/{match_id}/result");
    let mut body = result_body(&players, &[1, 4]);
    body["players"][0]["stats"] = json!({"shots": 12, "hits_taken": 4});
    body["players"][1]["stats"] = json!({"hits_taken": 1});
    let (status, answer) = call(&cloud, json_request("POST", &uri, edge_auth(), &body)).await;
    assert_eq!((status, &answer["applied"]), (StatusCode::OK, &json!(true)));
    let (status, page) = call(&cloud, get("/v1/leaderboards/arena-shots", None)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "no shots, no entry: {page}");
    assert_eq!(page["entries"][0]["player_id"], players[0].0);
    assert_eq!(page["entries"][0]["score"].as_f64(), Some(12.0));
    let (_, best) = call(&cloud, get("/v1/leaderboards/arena-best", None)).await;
    assert_eq!(best["entries"][0]["player_id"], players[1].0, "{best}");
    let (status, stored) = call(&cloud, get(&uri, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["players"][0]["stats"]["shots"], 12, "{stored}");
}

#[tokio::test]
async fn bad_results_are_refused_and_change_nothing() {
    let cloud = cloud();
    let (players, match_id) = matched_pair(&cloud).await;
    let uri = format!("/v1/matches/{match_id}/result");
    let good = result_body(&players, &[1, 2]);
    let mut unknown_player = good.clone();
    unknown_player["players"][0]["player_id"] = json!(424_242);
    let mut wrong_edge = good.clone();
    wrong_edge["edge_id"] = json!("a-1");
    let mut extra = good.clone();
    extra["bonus"] = json!(1);
    let mut wrong_type = good.clone();
    wrong_type["ticks"] = json!("many");
    let mut bad_stat_name = good.clone();
    bad_stat_name["players"][0]["stats"] = json!({"Shots!": 1});
    let mut too_many_stats = good.clone();
    too_many_stats["players"][0]["stats"] =
        Value::Object((0..9).map(|i| (format!("s{i}"), json!(1))).collect());
    let mut negative_stat = good.clone();
    negative_stat["players"][0]["stats"] = json!({"shots": -1});
    let raw = |text: &str| {
        Request::builder()
            .method("POST")
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, edge_auth().expect("auth"))
            .body(Body::from(text.to_owned()))
            .expect("request")
    };
    let cases = [
        (
            json_request("POST", &uri, edge_auth(), &unknown_player),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, edge_auth(), &wrong_edge),
            StatusCode::FORBIDDEN,
        ),
        (
            json_request("POST", &uri, edge_auth(), &extra),
            StatusCode::BAD_REQUEST,
        ),
        (
            json_request("POST", &uri, edge_auth(), &wrong_type),
            StatusCode::BAD_REQUEST,
        ),
        (
            json_request("POST", &uri, edge_auth(), &bad_stat_name),
            StatusCode::BAD_REQUEST,
        ),
        (
            json_request("POST", &uri, edge_auth(), &too_many_stats),
            StatusCode::BAD_REQUEST,
        ),
        (
            json_request("POST", &uri, edge_auth(), &negative_stat),
            StatusCode::BAD_REQUEST,
        ),
        (raw("{\"edge_id\": "), StatusCode::BAD_REQUEST),
        (raw(&"x".repeat(40_000)), StatusCode::PAYLOAD_TOO_LARGE),
        (
            json_request("POST", &uri, None, &good),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json_request(
                "POST",
                &uri,
                Some("Edge wrong-credential-000000".into()),
                &good,
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json_request("POST", "/v1/matches/999/result", edge_auth(), &good),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (request, want) in cases {
        let (status, body) = call(&cloud, request).await;
        assert_eq!(status, want, "{body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    assert_eq!(cloud.stats.results_applied.get(), 0);
    assert_eq!(cloud.store.result(match_id).await.expect("store"), None);
    assert_eq!(
        cloud
            .store
            .board_page("arena-best:all", 0, 10)
            .await
            .expect("store")
            .1,
        0
    );
}

fn replay_of(match_id: u64, cloud: &Cloud) -> Vec<u8> {
    let header = ReplayHeader {
        match_id: MatchId(match_id),
        config: cloud.config.modes[0].match_config.clone(),
        schema: schema().encode(),
        started_at_ms: 1,
    };
    ReplayWriter::new(&header, &schema(), 1 << 20).finish()
}

#[tokio::test]
async fn replays_upload_once_index_by_player_and_download_immutable() {
    replays_round_trip(&cloud()).await;
}

/// The same through object storage's S3 backend, against a local S3-compatible server
/// (moto): the replay lands in the bucket under the configured prefix.
#[tokio::test]
async fn replays_go_to_an_s3_bucket_under_its_prefix() {
    use object_store::{ObjectStore as _, ObjectStoreExt as _};
    let s3 = s3_server::S3Server::start().await;
    s3.create_bucket("outpost-replays").await;
    let storage = outpost_cloud::replays::ReplayStorage::S3 {
        bucket: "outpost-replays".into(),
        prefix: "eu-west/".into(),
    };
    let blobs = outpost_cloud::replays::replay_store(&storage, || s3.builder()).expect("a store");
    let cloud = cloud_on(blobs);
    let match_id = replays_round_trip(&cloud).await;
    // Seen from the bucket's root: under the prefix, and nowhere else.
    let raw = s3
        .builder()
        .with_bucket_name("outpost-replays")
        .build()
        .expect("a raw store");
    let key = format!("eu-west/replays/{match_id}.opr");
    let stored = raw
        .get(&object_store::path::Path::from(key.as_str()))
        .await
        .expect("the object is there")
        .bytes()
        .await
        .expect("its bytes");
    assert_eq!(stored.as_ref(), replay_of(match_id, &cloud).as_slice());
    let root = raw.list_with_delimiter(None).await.expect("lists");
    assert!(root.objects.is_empty(), "{root:?}");
    assert_eq!(
        root.common_prefixes,
        vec![object_store::path::Path::from("eu-west")]
    );
}

/// Uploads, refusals, the player index and immutable downloads of one match's replay;
/// returns the match.
async fn replays_round_trip(cloud: &Arc<Cloud>) -> u64 {
    let cloud = cloud.clone();
    let (players, match_id) = matched_pair(&cloud).await;
    let bytes = replay_of(match_id, &cloud);
    let put = |body: Vec<u8>, auth: Option<String>| {
        let mut builder = Request::builder()
            .method("PUT")
            .uri(format!("/v1/replays/{match_id}"))
            .header(header::CONTENT_TYPE, "application/octet-stream");
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder.body(Body::from(body)).expect("request")
    };
    assert_eq!(
        call(&cloud, put(bytes.clone(), None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&cloud, put(b"not a replay".to_vec(), edge_auth()))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        call(&cloud, put(replay_of(match_id + 1, &cloud), edge_auth()))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a replay of another match"
    );
    // The edge that hosted the match uploads a replay of another schema (another mode,
    // or another version of it) under its id: refused.
    let other = ModeSchema {
        mode: "marbles".into(),
        ..schema()
    };
    let header = ReplayHeader {
        match_id: MatchId(match_id),
        config: MatchConfig {
            schema_hash: other.hash(),
            ..cloud.config.modes[0].match_config.clone()
        },
        schema: other.encode(),
        started_at_ms: 1,
    };
    assert_eq!(
        call(
            &cloud,
            put(
                ReplayWriter::new(&header, &other, 1 << 20).finish(),
                edge_auth()
            )
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a replay of another schema"
    );
    let (status, first) = call(&cloud, put(bytes.clone(), edge_auth())).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["stored"], true);
    let (status, again) = call(&cloud, put(bytes.clone(), edge_auth())).await;
    assert_eq!((status, &again["stored"]), (StatusCode::OK, &json!(false)));
    assert_eq!(cloud.stats.replays_stored.get(), 1);
    let (_, list) = call(
        &cloud,
        get(&format!("/v1/players/{}/replays", players[1].0), None),
    )
    .await;
    assert_eq!(list["replays"][0]["match_id"], match_id);
    let response = outpost_cloud::router(cloud.clone())
        .oneshot(get(&format!("/v1/replays/{match_id}"), None))
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CACHE_CONTROL]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );
    let etag = response.headers()[header::ETAG].clone();
    let downloaded = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    assert_eq!(downloaded.as_ref(), bytes.as_slice());
    let revalidate = Request::builder()
        .uri(format!("/v1/replays/{match_id}"))
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .expect("request");
    let response = outpost_cloud::router(cloud.clone())
        .oneshot(revalidate)
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        call(&cloud, get("/v1/replays/4242", None)).await.0,
        StatusCode::NOT_FOUND
    );
    match_id
}
