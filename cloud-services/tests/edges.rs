//! The edge registry over HTTP: only edges with the credential may heartbeat, what they
//! say is checked, and the live list shows them (draining ones marked).

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::call;
use outpost_cloud::{Cloud, CloudConfig};
use serde_json::{Value, json};

const CREDENTIAL: &str = "edge-secret-for-tests";

fn cloud(credential: Option<&str>) -> Arc<Cloud> {
    common::cloud_with(
        CloudConfig {
            edge_credential: credential.map(str::to_owned),
            ..CloudConfig::dev()
        },
        [3; 32],
    )
}

fn beat(body: &Value, credential: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/v1/edges/heartbeat").header(header::CONTENT_TYPE, "application/json");
    if let Some(credential) = credential {
        request = request.header(header::AUTHORIZATION, format!("Edge {credential}"));
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
    let cloud = cloud(Some(CREDENTIAL));
    for (what, credential) in [
        ("none", None),
        ("wrong", Some("guess")),
        ("almost", Some("edge-secret-for-test")),
    ] {
        let (status, body) = call(&cloud, beat(&heartbeat("edge-1", false), credential)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert!(
        live(&cloud).await.is_empty(),
        "refused heartbeats register nothing"
    );
    // A cloud with no credential configured takes no edge at all.
    let closed = self::cloud(None);
    let (status, _) = call(&closed, beat(&heartbeat("edge-1", false), Some(CREDENTIAL))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn heartbeats_register_refresh_and_mark_draining() {
    let cloud = cloud(Some(CREDENTIAL));
    let (status, ack) = call(&cloud, beat(&heartbeat("edge-1", false), Some(CREDENTIAL))).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["expires_in"], 15);
    call(&cloud, beat(&heartbeat("edge-2", false), Some(CREDENTIAL))).await;
    call(&cloud, beat(&heartbeat("edge-1", true), Some(CREDENTIAL))).await;
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
    let cloud = cloud(Some(CREDENTIAL));
    let bad = |field: &str, value: Value| {
        let mut body = heartbeat("edge-1", false);
        body[field] = value;
        body
    };
    for (what, body) in [
        ("empty id", bad("edge_id", json!(""))),
        ("long id", bad("edge_id", json!("x".repeat(65)))),
        ("region case", bad("region", json!("EU West"))),
        ("address", bad("quic_addr", json!("somewhere"))),
        ("fingerprint", bad("cert_sha256", json!("zz"))),
        ("load", bad("load", json!(1_000_000))),
        ("type", bad("capacity", json!("lots"))),
        ("unknown field", bad("admin", json!(true))),
    ] {
        let (status, response) = call(&cloud, beat(&body, Some(CREDENTIAL))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {response}");
        assert_eq!(response["error"]["code"], "invalid_request", "{what}");
    }
    assert!(live(&cloud).await.is_empty());
}
