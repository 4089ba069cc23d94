//! The edge's HTTP gateway against a scripted origin on loopback: every cache directive,
//! revalidation both ways, nothing private or authenticated shared, coalescing, serving
//! stale through an outage, auth at the edge (nothing refused reaches the origin), rate
//! limits with `Retry-After`, and bounded bodies and slow clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_cloud::{CloudConfig, KeyRing};
use outpost_edge::gateway::limits::Rate;
use outpost_edge::gateway::{Gateway, GatewayConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[path = "../../cloud-services/tests/common/forge.rs"]
mod forge;

use forge::{forge, now};

const SEED: [u8; 32] = [21; 32];

/// The scripted origin: counts requests per path; `/v1/cc/{name}?cc=…` answers with that
/// `Cache-Control`, an `ETag` per version, and honours `If-None-Match`.
#[derive(Clone)]
struct Origin {
    hits: Arc<Mutex<HashMap<String, u64>>>,
    version: Arc<AtomicU64>,
    keys: Arc<KeyRing>,
    seen_player: Arc<Mutex<Option<String>>>,
    /// `/v1/held` answers once the test adds a permit here.
    gate: Arc<tokio::sync::Semaphore>,
}

impl Origin {
    fn count(&self, path: &str) -> u64 {
        *self.hits.lock().expect("lock").get(path).unwrap_or(&0)
    }
    fn bump(&self, path: &str) {
        *self
            .hits
            .lock()
            .expect("lock")
            .entry(path.to_owned())
            .or_default() += 1;
    }
}

async fn directive(
    State(origin): State<Origin>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::response::Response {
    origin.bump(&format!("/v1/cc/{name}"));
    if name == "slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let version = origin.version.load(Ordering::SeqCst);
    let etag = format!("\"v{version}\"");
    let cc = query.get("cc").cloned().unwrap_or_default();
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.to_str().is_ok_and(|v| v == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cc)],
        )
            .into_response();
    }
    let lang = headers
        .get("accept-language")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = json!({ "name": name, "version": version, "lang": lang });
    let mut response = (
        [(header::ETAG, etag), (header::CACHE_CONTROL, cc)],
        axum::Json(body),
    )
        .into_response();
    if name == "vary" {
        response
            .headers_mut()
            .insert(header::VARY, "accept-language".parse().expect("value"));
    }
    response
}

async fn me(State(origin): State<Origin>, headers: HeaderMap) -> axum::Json<Value> {
    origin.bump("/v1/me");
    *origin.seen_player.lock().expect("lock") = headers
        .get("x-outpost-player")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    axum::Json(json!({"ok": true}))
}

async fn echo(State(origin): State<Origin>, body: String) -> String {
    origin.bump("/v1/echo");
    body
}

async fn held(State(origin): State<Origin>) -> &'static str {
    origin.bump("/v1/held");
    let _ = origin.gate.acquire().await.map(|p| p.forget());
    "released"
}

/// 3 MiB, cacheable by its headers.
async fn big(State(origin): State<Origin>) -> impl IntoResponse {
    origin.bump("/v1/big");
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        vec![7u8; 3 * 1024 * 1024],
    )
}

async fn fallback(State(origin): State<Origin>) -> StatusCode {
    origin.bump("fallback");
    StatusCode::NOT_FOUND
}

async fn jwks(State(origin): State<Origin>) -> axum::Json<outpost_cloud::auth::Jwks> {
    axum::Json(origin.keys.jwks())
}

fn start_origin(listener: tokio::net::TcpListener, origin: Origin, stop: CancellationToken) {
    let app = Router::new()
        .route("/v1/cc/{name}", axum::routing::get(directive))
        .route("/.well-known/jwks.json", axum::routing::get(jwks))
        .route("/v1/me", axum::routing::get(me))
        .route("/v1/echo", axum::routing::post(echo))
        .route("/v1/held", axum::routing::get(held))
        .route("/v1/big", axum::routing::get(big))
        .fallback(fallback)
        .with_state(origin);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
}

struct Setup {
    origin: Origin,
    origin_stop: CancellationToken,
    gateway: Gateway,
    url: String,
    http: reqwest::Client,
}

async fn setup(adjust: impl FnOnce(&mut GatewayConfig)) -> Setup {
    let keys = Arc::new(KeyRing::from_seed(&CloudConfig::dev(), SEED));
    let origin = Origin {
        hits: Arc::default(),
        version: Arc::new(AtomicU64::new(1)),
        keys,
        seen_player: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin_addr = listener.local_addr().expect("addr");
    let origin_stop = CancellationToken::new();
    start_origin(listener, origin.clone(), origin_stop.clone());
    let mut config = GatewayConfig::new(format!("http://{origin_addr}"), "edge-t", "test");
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.origin_timeout = Duration::from_secs(2);
    // Every client of these tests is 127.0.0.1.
    config.connections.max_connections_per_address = 1024;
    adjust(&mut config);
    let gateway = Gateway::start(config).await.expect("gateway starts");
    let url = format!("http://{}", gateway.addr());
    Setup {
        origin,
        origin_stop,
        gateway,
        url,
        http: reqwest::Client::builder()
            .pool_idle_timeout(outpost_protocol::HTTP_CLIENT_IDLE)
            .build()
            .expect("client"),
    }
}

impl Setup {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("answers")
    }
}

fn x_cache(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

#[tokio::test]
async fn cache_directives_are_honoured() {
    let s = setup(|_| {}).await;
    // max-age: the second read is a hit, the origin asked once.
    let path = "/v1/cc/fresh?cc=max-age=60";
    assert_eq!(x_cache(&s.get(path).await), "MISS");
    let second = s.get(path).await;
    assert_eq!(x_cache(&second), "HIT");
    assert!(second.headers().contains_key(header::AGE));
    assert_eq!(s.origin.count("/v1/cc/fresh"), 1);
    // no-store and private: never kept.
    for (name, cc) in [
        ("nostore", "no-store"),
        ("private", "private,%20max-age=60"),
    ] {
        for _ in 0..3 {
            s.get(&format!("/v1/cc/{name}?cc={cc}")).await;
        }
        assert_eq!(s.origin.count(&format!("/v1/cc/{name}")), 3, "{name}");
    }
    // no-cache: kept, but revalidated every time (304 from the origin, body from cache).
    let path = "/v1/cc/nocache?cc=no-cache";
    s.get(path).await;
    let again = s.get(path).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<Value>().await.expect("json")["name"],
        "nocache"
    );
    assert_eq!(s.origin.count("/v1/cc/nocache"), 2);
    assert_eq!(s.gateway.stats().revalidated.get(), 1);
    // s-maxage beats max-age for a shared cache.
    let path = "/v1/cc/smax?cc=max-age=0,%20s-maxage=60";
    s.get(path).await;
    assert_eq!(x_cache(&s.get(path).await), "HIT");
    // Vary: another Accept-Language is another answer.
    for lang in ["fr", "de", "de", "fr"] {
        let answer: Value = s
            .http
            .get(format!("{}/v1/cc/vary?cc=max-age=60", s.url))
            .header("accept-language", lang)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["lang"], lang);
    }
}

#[tokio::test]
async fn etags_revalidate_both_ways_and_stale_while_revalidate_serves_at_once() {
    let s = setup(|_| {}).await;
    let path = "/v1/cc/etag?cc=max-age=1,%20stale-while-revalidate=30";
    let first = s.get(path).await;
    let etag = first.headers()[header::ETAG].clone();
    // A client holding the current version gets 304 from the edge.
    let not_modified = s
        .http
        .get(format!("{}{path}", s.url))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("answers");
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(s.origin.count("/v1/cc/etag"), 1);
    // Past max-age but within stale-while-revalidate: served at once, refreshed behind.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.origin.version.store(2, Ordering::SeqCst);
    let stale = s.get(path).await;
    assert_eq!(x_cache(&stale), "STALE");
    assert_eq!(stale.json::<Value>().await.expect("json")["version"], 1);
    for _ in 0..200 {
        if s.origin.count("/v1/cc/etag") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        s.origin.count("/v1/cc/etag"),
        2,
        "revalidated behind the stale answer"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = s.get(path).await;
    assert_eq!(fresh.json::<Value>().await.expect("json")["version"], 2);
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_origin_request() {
    let s = Arc::new(
        setup(|c| {
            c.default_limits.0 = Rate {
                per_second: 10_000,
                burst: 10_000,
            }
        })
        .await,
    );
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get("/v1/cc/slow?cc=max-age=60").await.status() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("task"), StatusCode::OK);
    }
    assert_eq!(s.origin.count("/v1/cc/slow"), 1);
    assert!(s.gateway.stats().coalesced.get() >= 1);
}

#[tokio::test]
async fn authenticated_and_private_answers_are_never_shared() {
    let s = setup(|c| c.auth_prefixes = vec!["/v1/me".into()]).await;
    let token = s.origin.keys.issue(7).expect("issues").0;
    // A cacheable path asked with credentials: not served from, nor stored in, the cache.
    let path = "/v1/cc/shared?cc=max-age=60";
    for _ in 0..2 {
        let r = s
            .http
            .get(format!("{}{path}", s.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answers");
        assert_eq!(x_cache(&r), "BYPASS");
    }
    assert_eq!(
        x_cache(&s.get(path).await),
        "MISS",
        "nothing stored for anyone"
    );
    // The validated player is passed on.
    let me = s
        .http
        .get(format!("{}/v1/me", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        s.origin.seen_player.lock().expect("lock").as_deref(),
        Some("7")
    );
}

#[tokio::test]
async fn bad_tokens_get_401_the_origin_sees_nothing_and_rotation_is_followed() {
    let s = setup(|c| c.auth_prefixes = vec!["/v1/me".into()]).await;
    let kid = s.origin.keys.current_kid();
    let good = json!({"sub": "5", "iss": "outpost-cloud", "aud": "outpost", "exp": now() + 600, "iat": now()});
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 60);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("elsewhere");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#)),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let cases = [
        None,
        Some("Bearer not-a-token".to_owned()),
        Some(format!("Bearer {}", forge(&kid, &good, [99; 32]))),
        Some(format!("Bearer {}", forge(&kid, &expired, SEED))),
        Some(format!("Bearer {}", forge(&kid, &wrong_aud, SEED))),
        Some(format!("Bearer {none}")),
        Some(format!("Bearer {}", forge("made-up-kid", &good, SEED))),
    ];
    for auth in cases {
        let mut request = s.http.get(format!("{}/v1/me", s.url));
        if let Some(auth) = &auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let r = request.send().await.expect("answers");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert_eq!(
        s.origin.count("/v1/me"),
        0,
        "nothing refused reached the origin"
    );
    let control = forge(&kid, &good, SEED);
    let r = s
        .http
        .get(format!("{}/v1/me", s.url))
        .bearer_auth(&control)
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), StatusCode::OK);
    // The cloud rotates; the edge learns the new kid on first sight (once its refresh
    // interval has passed) and still takes the old one during the overlap.
    tokio::time::sleep(Duration::from_secs(10)).await;
    s.origin.keys.rotate([22; 32]);
    let fresh = s.origin.keys.issue(9).expect("issues").0;
    for token in [&fresh, &control] {
        let r = s
            .http
            .get(format!("{}/v1/me", s.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn an_origin_outage_serves_stale_within_stale_if_error_and_clean_errors_otherwise() {
    let s = setup(|_| {}).await;
    let kept = "/v1/cc/kept?cc=max-age=1,%20stale-if-error=60";
    let lost = "/v1/cc/lost?cc=max-age=1";
    assert_eq!(s.get(kept).await.status(), StatusCode::OK);
    assert_eq!(s.get(lost).await.status(), StatusCode::OK);
    s.origin_stop.cancel();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = s.get(kept).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(x_cache(&stale), "STALE");
    let gone = s.get(lost).await;
    assert!(
        matches!(
            gone.status(),
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        ),
        "{}",
        gone.status()
    );
    let body: Value = gone.json().await.expect("error shape");
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("origin_"))
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let s = setup(|c| {
        c.default_limits.0 = Rate {
            per_second: 1,
            burst: 3,
        }
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            s.get("/v1/cc/limited?cc=max-age=60").await.status(),
            StatusCode::OK
        );
    }
    let limited = s.get("/v1/cc/limited?cc=max-age=60").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
    let body: Value = limited.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // /v1/ping is the edge's own, before any limit.
    assert_eq!(s.get("/v1/ping").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_slow_clients_time_out_while_others_are_served() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = setup(|c| {
        c.max_body = 1024;
        c.request_timeout = Duration::from_millis(500);
    })
    .await;
    let big = s
        .http
        .post(format!("{}/v1/echo", s.url))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("answers");
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.origin.count("/v1/echo"), 0);
    // A client that promises a body and stalls.
    let mut slow = tokio::net::TcpStream::connect(s.gateway.addr())
        .await
        .expect("connects");
    slow.write_all(b"POST /v1/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .expect("writes");
    // Meanwhile others are served.
    assert_eq!(s.get("/v1/ping").await.status(), StatusCode::OK);
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer)).await;
    let n = read.expect("the slow client is answered").expect("reads");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.contains("408"), "{text}");
}

/// Regression test for the cache bypass: `Authorization: x` on a public GET skipped the
/// cache and request coalescing and went to the cloud — cheap amplification onto the
/// origin. Only a credential that validates may go past the cache; others get 401 at
/// the edge.
#[tokio::test]
async fn junk_credentials_do_not_bypass_the_cache() {
    let s = setup(|_| {}).await;
    let path = "/v1/cc/board?cc=public,max-age=60";
    assert_eq!(x_cache(&s.get(path).await), "MISS");
    for junk in [
        "x",
        "Bearer junk",
        "Basic dXNlcjpwYXNz",
        "Edge some-credential",
    ] {
        for _ in 0..3 {
            let r = s
                .http
                .get(format!("{}{path}", s.url))
                .header(header::AUTHORIZATION, junk)
                .send()
                .await
                .expect("answers");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{junk}");
        }
    }
    assert_eq!(x_cache(&s.get(path).await), "HIT");
    assert_eq!(
        s.origin.count("/v1/cc/board"),
        1,
        "junk never reached the cloud"
    );
    let token = s.origin.keys.issue(3).expect("issues").0;
    let r = s
        .http
        .get(format!("{}{path}", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(x_cache(&r), "BYPASS", "a valid credential still may");
}

/// Origin requests are capped: with two allowed, two requests wait at the origin and the
/// others are told 503 `origin_busy` with `Retry-After` instead of piling onto it.
#[tokio::test]
async fn origin_requests_are_capped() {
    let s = setup(|c| {
        c.max_origin_requests = 2;
        c.origin_queue_wait = Duration::from_millis(100);
    })
    .await;
    let token = s.origin.keys.issue(5).expect("issues").0;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..8 {
        // Each its own key and credentialed: nothing to coalesce or cache.
        let request = s
            .http
            .get(format!("{}/v1/held?i={i}", s.url))
            .bearer_auth(&token);
        requests.spawn(async move { request.send().await.expect("answers") });
    }
    // The origin holds the two it took until released: the first six answers are the
    // refused ones.
    for _ in 0..6 {
        let r = requests
            .join_next()
            .await
            .expect("an answer")
            .expect("joins");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "origin_busy");
    }
    assert_eq!(s.origin.count("/v1/held"), 2);
    s.origin.gate.add_permits(2);
    while let Some(r) = requests.join_next().await {
        assert_eq!(r.expect("joins").status(), StatusCode::OK);
    }
}

/// Answers too large to cache stream through instead of being buffered (up to 64 MiB a
/// request, once), and are not cached; beyond the relay limit they are refused.
#[tokio::test]
async fn large_answers_stream_through_uncached() {
    let s = setup(|c| c.max_buffered_response = 1024 * 1024).await;
    for _ in 0..2 {
        let r = s.get("/v1/big").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(x_cache(&r), "MISS");
        let body = r.bytes().await.expect("body");
        assert_eq!(body.len(), 3 * 1024 * 1024);
        assert!(body.iter().all(|b| *b == 7));
    }
    assert_eq!(s.origin.count("/v1/big"), 2, "streamed, not cached");
    let small = setup(|c| {
        c.max_response = 2 * 1024 * 1024;
        c.max_buffered_response = 1024 * 1024;
    })
    .await;
    let r = small.get("/v1/big").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
}

/// Regression test for path tricks: the route group, rate limit and auth were chosen by
/// the raw path while the normalised URL was forwarded, so `/v1/x/../auth/guest` reached
/// the login route under the default limit (and `/v1/x/../me` skipped its auth). Such
/// paths are refused before routing, limiting and caching, and never reach the cloud.
#[tokio::test]
async fn path_tricks_cannot_dodge_the_login_limit_or_auth() {
    let s = setup(|c| c.auth_prefixes = vec!["/v1/me".into()]).await;
    for path in [
        "/v1/x/../auth/guest",
        "/v1/x/%2e%2e/auth/guest",
        "/v1//auth/guest",
        "/v1/%61uth/guest",
        "/v1/x/../me",
        "/v1/auth%2Fguest",
    ] {
        for _ in 0..20 {
            // Sent as written: an HTTP client library would resolve the dot segments.
            let answer = raw_get(s.gateway.addr(), path).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
            assert!(answer.contains("bad_path"), "{path}: {answer}");
        }
    }
    assert_eq!(s.origin.count("/v1/me"), 0, "nothing reached the cloud");
    assert_eq!(s.origin.count("fallback"), 0, "nothing reached the cloud");
}

/// A `GET` of `path` exactly as written, over a fresh connection; the whole answer.
async fn raw_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("reads");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The load-test allowance: with the operator's key, a load generator's players — all
/// from one address — log in past the per-address limit, each still limited as a player;
/// a wrong key, or any key where none is configured, is refused, and the key never
/// reaches the cloud.
#[tokio::test]
async fn a_load_test_key_lifts_the_per_address_limit_and_nothing_else() {
    const KEY: &str = "load-test-key-of-the-operator";
    let login = |s: &Setup, key: Option<&str>| {
        let mut request = s.http.post(format!("{}/v1/auth/guest", s.url)).body("{}");
        if let Some(key) = key {
            request = request.header(outpost_edge::gateway::LOAD_TEST_HEADER, key);
        }
        request.send()
    };
    let s = setup(|c| c.load_test_key = Some(KEY.into())).await;
    // Twice the login burst of one address, all let through with the key.
    for n in 0..20 {
        let status = login(&s, Some(KEY)).await.expect("answers").status();
        assert_ne!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "login {n} with the key"
        );
    }
    assert_eq!(s.gateway.stats().load_test_requests.get(), 20);
    // Without it the address's burst (10) holds, as for everyone else.
    let mut limited = 0;
    for _ in 0..11 {
        if login(&s, None).await.expect("answers").status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(
        limited >= 1,
        "the per-address limit still applies without the key"
    );
    // A wrong key is refused (once the address's limit allows a try at all).
    let s = setup(|c| c.load_test_key = Some(KEY.into())).await;
    let wrong = login(&s, Some("load-test-key-of-the-operatoR"))
        .await
        .expect("answers");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(body["error"]["code"], "load_test_refused");
    // Off by default: the header is refused, not ignored.
    let off = setup(|_| {}).await;
    assert_eq!(
        login(&off, Some(KEY)).await.expect("answers").status(),
        StatusCode::UNAUTHORIZED
    );
    // Per-player limits still hold with the key.
    let s = setup(|c| {
        c.load_test_key = Some(KEY.into());
        c.default_limits.1 = Rate {
            per_second: 1,
            burst: 2,
        };
    })
    .await;
    let token = s.origin.keys.issue(7).expect("issues").0;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            s.http
                .get(format!("{}/v1/me", s.url))
                .bearer_auth(&token)
                .header(outpost_edge::gateway::LOAD_TEST_HEADER, KEY)
                .send()
                .await
                .expect("answers")
                .status(),
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // A short key is refused at start.
    let mut config = GatewayConfig::new("http://127.0.0.1:9", "e", "r");
    config.load_test_key = Some("short".into());
    assert!(config.validate().is_err());
}
