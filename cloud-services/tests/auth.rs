//! Auth: guest login, refresh rotation, the published keys, key rotation, and every kind
//! of bad token and bad body answered with a clean 4xx in the API's error shape.

mod common;
#[path = "common/forge.rs"]
mod forge_helper;

use forge_helper::{forge, now};

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::call;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use outpost_cloud::auth::Jwks;
use outpost_cloud::{AccessClaims, Cloud, CloudConfig};
use serde_json::{Value, json};

const SEED: [u8; 32] = [42; 32];

fn cloud_with(config: CloudConfig) -> Arc<Cloud> {
    common::cloud_with(config, SEED)
}

fn cloud() -> Arc<Cloud> {
    cloud_with(CloudConfig::dev())
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

fn me(token: &str) -> Request<Body> {
    Request::get("/v1/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

async fn login(cloud: &Arc<Cloud>, device: &str) -> Value {
    let (status, body) = call(
        cloud,
        post(
            "/v1/auth/guest",
            &json!({ "device_id": common::device(device) }).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn a_guest_logs_in_and_is_recognised() {
    let cloud = cloud();
    let first = login(&cloud, "device-a").await;
    let again = login(&cloud, "device-a").await;
    let other = login(&cloud, "device-b").await;
    assert_eq!(
        first["player_id"], again["player_id"],
        "the same device is the same player"
    );
    assert_ne!(first["player_id"], other["player_id"]);
    assert_eq!(first["expires_in"], 900);
    let (status, body) = call(&cloud, me(first["access_token"].as_str().expect("token"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["player_id"], first["player_id"]);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_work_once() {
    let cloud = cloud();
    let session = login(&cloud, "device-a").await;
    let refresh = json!({ "refresh_token": session["refresh_token"] }).to_string();
    let (status, renewed) = call(&cloud, post("/v1/auth/refresh", &refresh)).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["player_id"], session["player_id"]);
    assert_ne!(renewed["refresh_token"], session["refresh_token"]);
    let (status, body) = call(&cloud, post("/v1/auth/refresh", &refresh)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = call(
        &cloud,
        post("/v1/auth/refresh", r#"{"refresh_token":"made-up"}"#),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Regression test for refresh-token reuse: a used refresh token was merely refused, so a
/// thief who refreshed first kept the login. Reuse now revokes the whole token family
/// (OAuth 2.0 Security BCP): the thief's tokens and the player's alike.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_whole_family() {
    let cloud = cloud();
    let session = login(&cloud, "device-a").await;
    let stolen = json!({ "refresh_token": session["refresh_token"] }).to_string();
    // The thief refreshes first, and keeps rotating.
    let (_, thief) = call(&cloud, post("/v1/auth/refresh", &stolen)).await;
    let thief_next = json!({ "refresh_token": thief["refresh_token"] }).to_string();
    let (status, thief) = call(&cloud, post("/v1/auth/refresh", &thief_next)).await;
    assert_eq!(status, StatusCode::OK);
    // The player presents the token the thief already used: reuse.
    let (status, body) = call(&cloud, post("/v1/auth/refresh", &stolen)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    // Every token of the family is dead now, the thief's newest too.
    let thief_now = json!({ "refresh_token": thief["refresh_token"] }).to_string();
    let (status, body) = call(&cloud, post("/v1/auth/refresh", &thief_now)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    // Another login of the same player is another family, untouched.
    let fresh = login(&cloud, "device-a").await;
    let again = json!({ "refresh_token": fresh["refresh_token"] }).to_string();
    assert_eq!(
        call(&cloud, post("/v1/auth/refresh", &again)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_ends_every_token_of_the_login() {
    let cloud = cloud();
    let session = login(&cloud, "device-a").await;
    let first = json!({ "refresh_token": session["refresh_token"] }).to_string();
    let (_, renewed) = call(&cloud, post("/v1/auth/refresh", &first)).await;
    let current = json!({ "refresh_token": renewed["refresh_token"] }).to_string();
    let (status, _) = call(&cloud, post("/v1/auth/logout", &current)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&cloud, post("/v1/auth/refresh", &current)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    // Unknown tokens log out quietly too: nothing to learn from the answer.
    let (status, _) = call(
        &cloud,
        post("/v1/auth/logout", r#"{"refresh_token":"abc.def"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn tokens_verify_with_only_the_published_keys() {
    let cloud = cloud();
    let session = login(&cloud, "device-a").await;
    let token = session["access_token"].as_str().expect("token");
    let (status, jwks) = call(
        &cloud,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let jwks: Jwks = serde_json::from_value(jwks).expect("a JWKS");
    let kid = jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid");
    let key = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .expect("the token's key is published");
    assert_eq!(
        (key.kty.as_str(), key.crv.as_str(), key.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    // An independent verifier (as an edge would be) with just the JWK.
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["outpost"]);
    validation.set_issuer(&["outpost-cloud"]);
    let claims = jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_ed_components(&key.x).expect("key"),
        &validation,
    )
    .expect("verifies")
    .claims;
    assert_eq!(claims.sub, session["player_id"].to_string());
}

#[tokio::test]
async fn a_rotated_key_is_accepted_during_the_overlap_and_not_after() {
    let cloud = cloud();
    let before = login(&cloud, "device-a").await;
    let old_kid = cloud.keys.current_kid();
    cloud.keys.rotate([7; 32]);
    assert_ne!(cloud.keys.current_kid(), old_kid);
    let jwks = cloud.keys.jwks();
    assert_eq!(jwks.keys.len(), 2, "old and new keys are both published");
    let (status, _) = call(&cloud, me(before["access_token"].as_str().expect("token"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a token signed before rotation still works"
    );
    let after = login(&cloud, "device-a").await;
    let kid = jsonwebtoken::decode_header(after["access_token"].as_str().expect("token"))
        .expect("header")
        .kid;
    assert_eq!(kid, Some(cloud.keys.current_kid()));

    // With no overlap, a rotation retires the old key at once.
    let strict = cloud_with(CloudConfig {
        key_overlap: Duration::ZERO,
        ..CloudConfig::dev()
    });
    let before = login(&strict, "device-a").await;
    strict.keys.rotate([8; 32]);
    let (status, body) = call(&strict, me(before["access_token"].as_str().expect("token"))).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(strict.keys.jwks().keys.len(), 1);
}

#[tokio::test]
async fn bad_tokens_are_refused_without_a_hint_of_success() {
    let cloud = cloud();
    let good = json!({ "sub": "1", "iss": "outpost-cloud", "aud": "outpost", "exp": now() + 600, "iat": now() });
    // Control: the same claims signed with the real key pass.
    let (status, _) = call(&cloud, me(&forge(&cloud.keys.current_kid(), &good, SEED))).await;
    assert_eq!(status, StatusCode::OK);

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "forged (another key, same kid)",
        forge(&cloud.keys.current_kid(), &good, [9; 32]),
    ));
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 60);
    cases.push(("expired", forge(&cloud.keys.current_kid(), &expired, SEED)));
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    cases.push((
        "wrong aud",
        forge(&cloud.keys.current_kid(), &wrong_aud, SEED),
    ));
    let mut no_aud = good.clone();
    no_aud.as_object_mut().expect("object").remove("aud");
    cases.push(("no aud", forge(&cloud.keys.current_kid(), &no_aud, SEED)));
    let mut no_exp = good.clone();
    no_exp.as_object_mut().expect("object").remove("exp");
    cases.push(("no exp", forge(&cloud.keys.current_kid(), &no_exp, SEED)));
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("evil");
    cases.push((
        "wrong iss",
        forge(&cloud.keys.current_kid(), &wrong_iss, SEED),
    ));
    let none_header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
        cloud.keys.current_kid()
    ));
    let payload = URL_SAFE_NO_PAD.encode(good.to_string());
    cases.push(("alg=none", format!("{none_header}.{payload}.")));
    // Algorithm confusion: HMAC keyed with the public key.
    let public = cloud.keys.jwks().keys[0].x.clone();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(cloud.keys.current_kid());
    cases.push((
        "HS256 with the public key",
        jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(public.as_bytes()))
            .expect("signs"),
    ));
    cases.push(("garbage", "not.a.token".to_owned()));

    for (what, token) in cases {
        let (status, body) = call(&cloud, me(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    let (status, body) = call(
        &cloud,
        Request::get("/v1/me").body(Body::empty()).expect("request"),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn bad_bodies_get_clean_errors_and_change_nothing() {
    let cloud = cloud();
    for (what, body) in [
        ("malformed JSON", "{\"device_id\": "),
        ("wrong type", r#"{"device_id": 5}"#),
        ("unknown field", r#"{"device_id": "a", "admin": true}"#),
        ("missing field", r#"{}"#),
        ("empty device id", r#"{"device_id": ""}"#),
        // A device id is the guest's only credential: a short or patterned one is
        // guessable, and once was a permanent login for anyone who guessed it.
        ("short device id", r#"{"device_id": "a1b2c3d4e5f6"}"#),
        (
            "device id with odd characters",
            r#"{"device_id": "0123456789abcdef 0123456789abcdef"}"#,
        ),
    ] {
        let (status, response) = call(&cloud, post("/v1/auth/guest", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {response}");
        assert_eq!(response["error"]["code"], "invalid_request", "{what}");
    }
    let huge = json!({ "device_id": "x".repeat(20_000) }).to_string();
    let (status, response) = call(&cloud, post("/v1/auth/guest", &huge)).await;
    assert_error(
        status,
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    let plain = Request::post("/v1/auth/guest")
        .body(Body::from(r#"{"device_id":"a"}"#))
        .expect("request");
    let (status, response) = call(&cloud, plain).await;
    assert_error(
        status,
        &response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, response) = call(
        &cloud,
        Request::get("/v1/nowhere")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_error(status, &response, StatusCode::NOT_FOUND, "not_found");
}
