//! The edge registry over HTTP: only edges with the credential may heartbeat, what they
//! say is checked, and the live list shows them (draining ones marked).

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::call;
use outpost_cloud::edges::edge_credential_for;
use outpost_cloud::{Cloud, CloudConfig};
use serde_json::{Value, json};

const SECRET: &str = "edge-secret-for-tests";

fn cloud(secret: Option<&str>) -> Arc<Cloud> {
    common::cloud_with(
        CloudConfig {
            edge_secret: secret.map(str::to_owned),
            ..CloudConfig::dev()
        },
        [3; 32],
    )
}

/// `Authorization` of edge `id`, with its own credential.
fn as_edge(id: &str) -> Option<String> {
    Some(format!("Edge {id}:{}", edge_credential_for(SECRET, id)))
}

fn beat(body: &Value, authorization: Option<String>) -> Request<Body> {
    let mut request =
        Request::post("/v1/edges/heartbeat").header(header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    request.body(Body::from(body.to_string())).expect("request")
}

fn heartbeat(id: &str, draining: bool) -> Value {
    json!({
        "edge_id": id, "region": "eu-west", "quic_addr": "127.0.0.1:7777",
        "cert_sha256": "0f".repeat(32), "capacity": 1000, "load": 12, "match_capacity": 64, "matches": 2, "draining": draining
    })
}

async fn live(cloud: &Arc<Cloud>) -> Vec<Value> {
    let (status, body) = call(
        cloud,
        Request::get("/v1/edges")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    body["edges"].as_array().expect("edges").clone()
}

#[tokio::test]
async fn only_edges_with_the_credential_register() {
    let cloud = cloud(Some(SECRET));
    let almost = edge_credential_for("edge-secret-for-test", "edge-1");
    for (what, authorization) in [
        ("none", None),
        ("wrong", Some("Edge edge-1:guess".to_owned())),
        ("almost", Some(format!("Edge edge-1:{almost}"))),
        ("the fleet secret itself", Some(format!("Edge {SECRET}"))),
        (
            "no id",
            Some(format!("Edge {}", edge_credential_for(SECRET, "edge-1"))),
        ),
    ] {
        let (status, body) = call(&cloud, beat(&heartbeat("edge-1", false), authorization)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert!(
        live(&cloud).await.is_empty(),
        "refused heartbeats register nothing"
    );
    // A cloud with no credential configured takes no edge at all.
    let closed = self::cloud(None);
    let (status, _) = call(
        &closed,
        beat(&heartbeat("edge-1", false), as_edge("edge-1")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn heartbeats_register_refresh_and_mark_draining() {
    let cloud = cloud(Some(SECRET));
    let (status, ack) = call(&cloud, beat(&heartbeat("edge-1", false), as_edge("edge-1"))).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["expires_in"], 15);
    call(&cloud, beat(&heartbeat("edge-2", false), as_edge("edge-2"))).await;
    call(&cloud, beat(&heartbeat("edge-1", true), as_edge("edge-1"))).await;
    let edges = live(&cloud).await;
    assert_eq!(edges.len(), 2);
    assert_eq!(
        (edges[0]["edge_id"].as_str(), edges[0]["draining"].as_bool()),
        (Some("edge-1"), Some(true))
    );
    assert_eq!(edges[1]["edge_id"], "edge-2");
    assert_eq!(edges[0]["cert_sha256"], "0f".repeat(32));
}

#[tokio::test]
async fn what_edges_say_is_checked() {
    let cloud = cloud(Some(SECRET));
    let bad = |field: &str, value: Value| {
        let mut body = heartbeat("edge-1", false);
        body[field] = value;
        body
    };
    let (invalid, unprocessable) = (StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY);
    for (what, body, want) in [
        ("region case", bad("region", json!("EU West")), invalid),
        ("fingerprint", bad("cert_sha256", json!("zz")), invalid),
        ("type", bad("capacity", json!("lots")), invalid),
        ("unknown field", bad("admin", json!(true)), invalid),
        // An address is checked by parsing it: 422 whatever its shape.
        (
            "address",
            bad("quic_addr", json!("somewhere")),
            unprocessable,
        ),
        (
            "address that is not an IP",
            bad("quic_addr", json!("999.1.2.3:80")),
            unprocessable,
        ),
    ] {
        let (status, response) = call(&cloud, beat(&body, as_edge("edge-1"))).await;
        assert_eq!(status, want, "{what}: {response}");
        assert!(response["error"]["code"].is_string(), "{what}");
    }
    assert!(live(&cloud).await.is_empty());
}

/// Regression test for edges speaking for each other: one credential served the whole
/// fleet and edges named themselves, so any holder re-registered another edge's id at its
/// own address and certificate (players then pinned the impostor). Now each edge's
/// credential proves its own id, and only that one.
#[tokio::test]
async fn an_edge_cannot_register_as_another() {
    let cloud = cloud(Some(SECRET));
    let (status, _) = call(&cloud, beat(&heartbeat("edge-1", false), as_edge("edge-1"))).await;
    assert_eq!(status, StatusCode::OK);
    let mut impostor = heartbeat("edge-1", false);
    impostor["quic_addr"] = json!("203.0.113.9:7777");
    impostor["cert_sha256"] = json!("ee".repeat(32));
    let (status, body) = call(&cloud, beat(&impostor, as_edge("edge-2"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for id in ["", &"x".repeat(65)] {
        let (status, _) = call(&cloud, beat(&heartbeat(id, false), as_edge("edge-1"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{id:?}");
    }
    let edges = live(&cloud).await;
    assert_eq!(edges.len(), 1);
    assert_eq!(
        edges[0]["quic_addr"], "127.0.0.1:7777",
        "the real edge's address stands"
    );
}
