//! The OpenAPI document: served at `/v1/openapi.json`, and every route in it. Routes are
//! registered together with their documentation (`utoipa_axum::routes!`), so a route can
//! only be added documented; this test checks the other direction too: every documented
//! path and method is served (never the "no such route" fallback).

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::call;
use outpost_cloud::{Cloud, CloudConfig};

fn cloud() -> Arc<Cloud> {
    common::cloud_with(CloudConfig::dev(), [1; 32])
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let cloud = cloud();
    let (status, document) = call(
        &cloud,
        Request::get("/v1/openapi.json")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{document}"
    );
    let paths = document["paths"].as_object().expect("paths");
    for expected in [
        "/v1/auth/guest",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/me",
        "/.well-known/jwks.json",
        "/v1/edges/heartbeat",
        "/v1/edges",
        "/v1/matchmaking/tickets",
        "/v1/matchmaking/tickets/{id}",
        "/v1/matchmaking/consents",
        "/v1/matches/{match_id}/result",
        "/v1/players/{player_id}/matches",
        "/v1/leaderboards/{board}",
        "/v1/leaderboards/{board}/around/{player_id}",
        "/v1/leaderboards/{board}/players/{player_id}",
        "/v1/replays/{match_id}",
        "/v1/players/{player_id}/replays",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the document"
        );
    }
    let mut probed = 0;
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let method =
                Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
            let request = Request::builder()
                .method(method.clone())
                .uri(path.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let (status, body) = call(&cloud, request).await;
            let fallback =
                status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such route";
            assert!(!fallback, "{method} {path} is documented but not served");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            probed += 1;
        }
    }
    assert_eq!(probed, 20, "every method of every path");
    // Documented responses name the error shape.
    assert!(
        document["components"]["schemas"]["ErrorBody"].is_object(),
        "{document}"
    );
}
