//! The edge's HTTP gateway in front of the cloud API: players talk HTTP to the nearest
//! edge, which answers from its cache, checks access tokens and rate limits locally, and
//! forwards the rest to the cloud over pooled keep-alive connections.
//!
//! - **Cache** (bounded in bytes, `moka`): the origin's `Cache-Control` (`max-age`,
//!   `s-maxage`, `no-store`, `private`, `no-cache`, `stale-while-revalidate`,
//!   `stale-if-error`), `ETag` revalidation both ways, `Vary`, and request coalescing
//!   (concurrent misses for one key make one origin request). Requests that carry
//!   credentials are never answered from, nor stored in, the shared cache unless the
//!   origin marks the response `public`/`s-maxage`.
//! - **Auth**: routes under the configured prefixes need a valid access token, checked
//!   against the cloud's JWKS; a refused token never reaches the origin. The player id
//!   is passed on as `X-Outpost-Player`.
//! - **Rate limits**: GCRA per client address and per player, per route group; 429 with
//!   `Retry-After`.
//! - `GET /v1/ping` is answered by the edge itself, for clients measuring latency.

pub mod auth;
pub mod cache;
pub mod limits;
mod origin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::DefaultClock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::auth::KeyCache;
use self::cache::{Directives, Entry, Use};
use self::limits::{Limits, Rate};
use self::origin::{FetchError, Fetched, Forward, Origin, Payload, Shareable};

/// Limits for requests whose path starts with `prefix`.
#[derive(Debug, Clone)]
pub struct RouteGroup {
    /// Path prefix, e.g. `/v1/auth/`.
    pub prefix: String,
    /// Per client address.
    pub per_ip: Rate,
    /// Per authenticated player.
    pub per_player: Rate,
}

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Base URL of the cloud API.
    pub origin: String,
    /// This edge's id and region (answered by `/v1/ping`, passed on as
    /// `X-Outpost-Region`).
    pub edge_id: String,
    /// Region.
    pub region: String,
    /// `iss` and `aud` of access tokens. Default `outpost-cloud`, `outpost`.
    pub issuer: String,
    /// Audience.
    pub audience: String,
    /// Paths that need a player (a valid access token). Default: matchmaking and `/v1/me`.
    pub auth_prefixes: Vec<String>,
    /// Cache size, bytes. Default 64 MiB.
    pub cache_bytes: u64,
    /// Largest request body, bytes. Default 64 KiB.
    pub max_body: usize,
    /// Largest origin response relayed, bytes. Default 64 MiB.
    pub max_response: usize,
    /// Largest origin response read in full, and so cacheable and shared by coalesced
    /// requests, bytes; larger ones (and those of unknown length) are streamed through,
    /// uncached. Default 1 MiB; at most `max_response`.
    pub max_buffered_response: usize,
    /// Most origin requests at once (a streamed answer holds its place until done).
    /// Default 256; at least 1.
    pub max_origin_requests: usize,
    /// How long a request waits for a place among the origin requests before it is
    /// answered 503 `origin_busy`. Default 2 s.
    pub origin_queue_wait: Duration,
    /// Longest a client request may take, body included. Default 20 s.
    pub request_timeout: Duration,
    /// Longest the origin may take. Default 15 s (above the cloud's 8 s long polls).
    pub origin_timeout: Duration,
    /// Limits for paths no group names. Default 100/s burst 200 per address, 20/s burst
    /// 40 per player.
    pub default_limits: (Rate, Rate),
    /// Route groups with their own limits (first matching prefix wins). Default: login at
    /// 2/s burst 10 per address.
    pub groups: Vec<RouteGroup>,
    /// Most keys each limiter remembers. Default 100 000.
    pub max_limiter_keys: usize,
    /// An operator-granted load-test allowance: requests carrying this key in
    /// [`LOAD_TEST_HEADER`] skip the per-address limits (a load generator's simulated
    /// players all come from one address); per-player limits still hold, and a request
    /// with a wrong key is refused 401. Default `None`: off, and the header is refused.
    /// At least [`MIN_LOAD_TEST_KEY`] characters.
    pub load_test_key: Option<String>,
    /// Bounds on client connections: header timeout (also ending idle keep-alive
    /// connections), caps in all and per address. Default 10 s, 4096, 64.
    pub connections: outpost_httpd::Limits,
}

impl GatewayConfig {
    /// Defaults in front of `origin`.
    pub fn new(
        origin: impl Into<String>,
        edge_id: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            origin: origin.into().trim_end_matches('/').to_owned(),
            edge_id: edge_id.into(),
            region: region.into(),
            issuer: "outpost-cloud".into(),
            audience: "outpost".into(),
            auth_prefixes: vec!["/v1/matchmaking/".into(), "/v1/me".into()],
            cache_bytes: 64 * 1024 * 1024,
            max_body: 64 * 1024,
            max_response: 64 * 1024 * 1024,
            max_buffered_response: 1024 * 1024,
            max_origin_requests: 256,
            origin_queue_wait: Duration::from_secs(2),
            request_timeout: Duration::from_secs(20),
            origin_timeout: Duration::from_secs(15),
            default_limits: (
                Rate {
                    per_second: 100,
                    burst: 200,
                },
                Rate {
                    per_second: 20,
                    burst: 40,
                },
            ),
            groups: vec![RouteGroup {
                prefix: "/v1/auth/".into(),
                per_ip: Rate {
                    per_second: 2,
                    burst: 10,
                },
                per_player: Rate {
                    per_second: 2,
                    burst: 10,
                },
            }],
            max_limiter_keys: 100_000,
            load_test_key: None,
            connections: outpost_httpd::Limits::default(),
        }
    }

    /// Checks the load-test key and the connection bounds.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(key) = &self.load_test_key
            && key.chars().count() < MIN_LOAD_TEST_KEY
        {
            return Err(format!(
                "the gateway's load-test key must be at least {MIN_LOAD_TEST_KEY} characters"
            ));
        }
        self.connections.validate()
    }
}

/// The request header that carries the load-test key ([`GatewayConfig::load_test_key`]);
/// never passed on to the cloud (no `x-outpost-*` header is).
pub const LOAD_TEST_HEADER: &str = "x-outpost-load-test";

/// Shortest load-test key accepted.
pub const MIN_LOAD_TEST_KEY: usize = 16;

/// What the gateway has done: Prometheus counters, exported with the edge's metrics
/// (`outpost_edge_gateway_*`). Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct GatewayStats {
    /// Answered from a fresh cache entry.
    pub hits: Counter,
    /// Fetched because nothing usable was cached.
    pub misses: Counter,
    /// Answered stale (while revalidating, or because the origin failed).
    pub stale: Counter,
    /// Entries revalidated with a 304 from the origin.
    pub revalidated: Counter,
    /// Requests that joined another request's origin fetch.
    pub coalesced: Counter,
    /// Requests passed straight through (not cacheable).
    pub bypassed: Counter,
    /// Requests sent to the origin.
    pub origin_requests: Counter,
    /// Origin requests that failed (unreachable, timed out, 5xx).
    pub origin_errors: Counter,
    /// Requests refused for a missing or bad token.
    pub unauthorized: Counter,
    /// Requests refused by a rate limit.
    pub rate_limited: Counter,
    /// Requests let past the per-address limits by the load-test key.
    pub load_test_requests: Counter,
    /// Bytes the cache holds (updated every few seconds).
    pub cache_bytes: Gauge,
    /// Client connections (`gateway_http_…`).
    pub connections: outpost_httpd::ConnStats,
}

impl GatewayStats {
    /// Registers every counter under `gateway_…`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let counters = [
            (
                "gateway_cache_hits",
                "Requests answered from a fresh cache entry",
                &self.hits,
            ),
            (
                "gateway_cache_misses",
                "Requests fetched because nothing usable was cached",
                &self.misses,
            ),
            (
                "gateway_cache_stale",
                "Requests answered stale",
                &self.stale,
            ),
            (
                "gateway_cache_revalidated",
                "Entries revalidated by a 304 from the origin",
                &self.revalidated,
            ),
            (
                "gateway_coalesced",
                "Requests that joined another's origin fetch",
                &self.coalesced,
            ),
            (
                "gateway_bypassed",
                "Requests passed through uncached",
                &self.bypassed,
            ),
            (
                "gateway_origin_requests",
                "Requests sent to the origin",
                &self.origin_requests,
            ),
            (
                "gateway_origin_errors",
                "Origin requests that failed",
                &self.origin_errors,
            ),
            (
                "gateway_unauthorized",
                "Requests refused for a missing or bad token",
                &self.unauthorized,
            ),
            (
                "gateway_rate_limited",
                "Requests refused by a rate limit",
                &self.rate_limited,
            ),
            (
                "gateway_load_test_requests",
                "Requests let past the per-address limits by the load-test key",
                &self.load_test_requests,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "gateway_cache_bytes",
            "Bytes the cache holds",
            self.cache_bytes.clone(),
        );
        self.connections.register(registry, "gateway_http");
    }

    /// Requests answered (hits, misses, stale and pass-through).
    pub fn answered(&self) -> u64 {
        self.hits.get() + self.misses.get() + self.stale.get() + self.bypassed.get()
    }
}

fn bump(counter: &Counter) {
    counter.inc();
}

/// What a coalesced origin request hands the requests that waited for it.
#[derive(Debug, Clone)]
enum Outcome {
    /// The answer, read in full (or why there was none).
    Shared(Result<Shareable, FetchError>),
    /// The answer was streamed to the request that made it: the others ask themselves.
    Streamed,
}

/// The requests waiting on one origin request for a key.
type Flight = watch::Receiver<Option<Outcome>>;

struct Group {
    prefix: String,
    limits: Limits<DefaultClock>,
}

struct Shared {
    config: GatewayConfig,
    origin: Origin,
    cache: moka::future::Cache<String, Arc<Entry>>,
    inflight: Mutex<HashMap<String, Flight>>,
    keys: KeyCache,
    groups: Vec<Group>,
    default_group: Limits<DefaultClock>,
    stats: GatewayStats,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds and starts serving, counting into fresh stats. The JWKS is fetched now if
    /// the origin answers (and on the first token naming an unknown key otherwise).
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Self> {
        Self::start_with_stats(config, GatewayStats::default()).await
    }

    /// Starts, counting into `stats` (e.g. the edge's, so `/metrics` shows them).
    pub async fn start_with_stats(
        config: GatewayConfig,
        stats: GatewayStats,
    ) -> anyhow::Result<Self> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("gateway: {e}"))?;
        anyhow::ensure!(
            config.max_origin_requests >= 1,
            "gateway max_origin_requests must be at least 1"
        );
        anyhow::ensure!(
            config.max_buffered_response <= config.max_response,
            "gateway max_buffered_response must be at most max_response"
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(outpost_protocol::HTTP_CLIENT_IDLE)
            .connect_timeout(Duration::from_secs(2))
            .timeout(config.origin_timeout)
            .build()
            .context("building the origin client")?;
        let keys = KeyCache::new(
            http.clone(),
            &config.origin,
            &config.issuer,
            &config.audience,
            Duration::from_secs(10),
        );
        if let Err(err) = keys.refresh().await {
            tracing::warn!(%err, "gateway: JWKS not fetched yet; will retry on demand");
        }
        let cache = moka::future::Cache::builder()
            .max_capacity(config.cache_bytes)
            .weigher(|_key: &String, entry: &Arc<Entry>| entry.weight())
            .build();
        let clock = DefaultClock::default();
        let groups = config
            .groups
            .iter()
            .map(|g| Group {
                prefix: g.prefix.clone(),
                limits: Limits::new(
                    g.per_ip,
                    g.per_player,
                    clock.clone(),
                    config.max_limiter_keys,
                ),
            })
            .collect();
        let default_group = Limits::new(
            config.default_limits.0,
            config.default_limits.1,
            clock,
            config.max_limiter_keys,
        );
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the gateway on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let timeout = config.request_timeout;
        let origin = Origin {
            http,
            base: config.origin.clone(),
            region: config.region.clone(),
            max_response: config.max_response,
            max_buffered: config.max_buffered_response,
            permits: Arc::new(tokio::sync::Semaphore::new(config.max_origin_requests)),
            queue_wait: config.origin_queue_wait,
        };
        let shared = Arc::new(Shared {
            config,
            origin,
            cache,
            inflight: Mutex::new(HashMap::new()),
            keys,
            groups,
            default_group,
            stats,
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(shared.clone())
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                timeout,
            ));
        let cancel = CancellationToken::new();
        let serve = {
            let cancel = cancel.clone();
            let limits = shared.config.connections;
            let connections = shared.stats.connections.clone();
            tokio::spawn(async move {
                let served = outpost_httpd::serve(
                    listener,
                    router,
                    limits,
                    connections,
                    cancel.cancelled_owned(),
                )
                .await;
                if let Err(err) = served {
                    tracing::error!(%err, "gateway stopped");
                }
            })
        };
        let sweeper = {
            let shared = shared.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        () = cancel.cancelled() => return,
                    }
                    for limits in shared
                        .groups
                        .iter()
                        .map(|g| &g.limits)
                        .chain([&shared.default_group])
                    {
                        limits.per_ip.sweep();
                        limits.per_player.sweep();
                    }
                }
            })
        };
        tracing::info!(%addr, origin = %shared.config.origin, "gateway listening");
        Ok(Self {
            shared,
            addr,
            cancel,
            tasks: vec![serve, sweeper],
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has done.
    pub fn stats(&self) -> &GatewayStats {
        &self.shared.stats
    }

    /// Bytes the cache holds now.
    pub async fn cached_bytes(&self) -> u64 {
        self.shared.cache.run_pending_tasks().await;
        self.shared.cache.weighted_size()
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// An error in the cloud's shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn limited(wait: Duration) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    // Routing, limits, auth and the cache key all read the path as the cloud will: one
    // the origin's URL handling would rewrite (`/v1/x/../auth/guest` becomes the login
    // route) is refused rather than judged by its raw form.
    if let Some(why) = refused_path(&path) {
        return error(StatusCode::BAD_REQUEST, "bad_path", why);
    }
    if path == "/v1/ping" {
        return (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({
                "edge_id": shared.config.edge_id,
                "region": shared.config.region,
            })),
        )
            .into_response();
    }
    if !(path.starts_with("/v1/") || path.starts_with("/.well-known/")) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such route");
    }
    let limits = shared
        .groups
        .iter()
        .find(|g| path.starts_with(&g.prefix))
        .map_or(&shared.default_group, |g| &g.limits);
    // The load-test allowance: a right key skips the per-address limit; a wrong one (or
    // any, when none is configured) is refused — after that limit, so guessing is slow.
    let load_test = request.headers().get(LOAD_TEST_HEADER).map(|offered| {
        shared.config.load_test_key.as_ref().is_some_and(|key| {
            use subtle::ConstantTimeEq as _;
            bool::from(offered.as_bytes().ct_eq(key.as_bytes()))
        })
    });
    if load_test == Some(true) {
        bump(&shared.stats.load_test_requests);
    } else if let Err(wait) = limits.check_address(peer.ip()) {
        bump(&shared.stats.rate_limited);
        return limited(wait);
    }
    if load_test == Some(false) {
        bump(&shared.stats.unauthorized);
        return error(
            StatusCode::UNAUTHORIZED,
            "load_test_refused",
            "this gateway grants no load-test allowance for that key",
        );
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut player = None;
    // Credentials are checked wherever they come: only a valid one may go past the shared
    // cache (junk in `Authorization` once sent every request straight to the cloud).
    let needs_player = shared
        .config
        .auth_prefixes
        .iter()
        .any(|p| path.starts_with(p.as_str()));
    if needs_player || authorization.is_some() {
        match shared.keys.player(authorization.as_deref()).await {
            Ok(id) => player = Some(id),
            Err(refused) => {
                bump(&shared.stats.unauthorized);
                return error(StatusCode::UNAUTHORIZED, "unauthorized", refused.0);
            }
        }
        if let Some(id) = player
            && let Err(wait) = limits.per_player.check(&id)
        {
            bump(&shared.stats.rate_limited);
            return limited(wait);
        }
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, shared.config.max_body).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body too large",
        );
    };
    let forward = Forward {
        method: parts.method.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.as_str().to_owned()),
        headers: parts.headers,
        body,
        peer: peer.ip(),
        player,
    };
    if forward.method == Method::GET && player.is_none() {
        return cached(&shared, forward).await;
    }
    bump(&shared.stats.bypassed);
    bump(&shared.stats.origin_requests);
    match shared.origin.fetch(&forward).await {
        Ok(fetched) => relay(fetched, "BYPASS"),
        Err(err) => origin_failed(err),
    }
}

/// Why a path is refused: dot segments, empty segments, percent-encoding (an encoded
/// slash or dot, or any other: the API's paths need none) and backslashes, which URL
/// handling downstream could resolve into another route.
fn refused_path(path: &str) -> Option<&'static str> {
    if path.contains('%') {
        return Some("percent-encoded paths are not accepted");
    }
    if path.contains('\\') {
        return Some("backslashes are not accepted in paths");
    }
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "." | ".." => return Some("dot segments are not accepted in paths"),
            "" if segments.peek().is_some() => return Some("empty path segments are not accepted"),
            _ => {}
        }
    }
    None
}

fn origin_failed(err: FetchError) -> Response {
    match err {
        FetchError::Timeout => error(
            StatusCode::GATEWAY_TIMEOUT,
            "origin_timeout",
            "the cloud did not answer in time",
        ),
        FetchError::Unreachable => error(
            StatusCode::BAD_GATEWAY,
            "origin_unreachable",
            "the cloud cannot be reached",
        ),
        FetchError::TooLarge => error(
            StatusCode::BAD_GATEWAY,
            "origin_too_large",
            "the cloud's answer is too large",
        ),
        FetchError::Busy => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "origin_busy",
                "too many requests to the cloud at once; try again",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

fn relay(fetched: Fetched, how: &'static str) -> Response {
    let body = match fetched.body {
        Payload::Full(bytes) => Body::from(bytes),
        Payload::Stream(body) => body,
    };
    let mut response = Response::new(body);
    *response.status_mut() = fetched.status;
    *response.headers_mut() = fetched.headers;
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(how));
    response
}

/// Serves a stored entry (304 if the client has it).
fn serve(entry: &Entry, request: &HeaderMap, how: &'static str) -> Response {
    let mut response = if cache::not_modified(request, entry.etag()) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
            for value in entry.headers.get_all(&name) {
                r.headers_mut().append(name.clone(), value.clone());
            }
        }
        r
    } else {
        let mut r = Response::new(Body::from(entry.body.clone()));
        *r.status_mut() = entry.status;
        *r.headers_mut() = entry.headers.clone();
        r
    };
    let headers = response.headers_mut();
    headers.insert(
        header::AGE,
        HeaderValue::from(entry.age(Instant::now()).as_secs()),
    );
    headers.insert("x-cache", HeaderValue::from_static(how));
    response
}

fn cache_key(forward: &Forward) -> String {
    format!("GET {}", forward.path_and_query)
}

async fn cached(shared: &Arc<Shared>, forward: Forward) -> Response {
    let key = cache_key(&forward);
    let mut stale = None;
    if let Some(entry) = shared.cache.get(&key).await
        && entry.matches(&forward.headers)
    {
        match entry.usable(Instant::now()) {
            Use::Fresh => {
                bump(&shared.stats.hits);
                return serve(&entry, &forward.headers, "HIT");
            }
            Use::StaleWhileRevalidate => {
                bump(&shared.stats.stale);
                let (behind, again, stored) = (shared.clone(), forward.clone(), entry.clone());
                tokio::spawn(async move {
                    let _ = coalesced(&behind, &again, Some(stored)).await;
                });
                return serve(&entry, &forward.headers, "STALE");
            }
            Use::Revalidate => stale = Some(entry),
        }
    }
    match coalesced(shared, &forward, stale.clone()).await {
        Ok(fetched) if fetched.status.is_server_error() => {
            bump(&shared.stats.origin_errors);
            match stale.filter(|e| e.usable_on_error(Instant::now())) {
                Some(entry) => {
                    bump(&shared.stats.stale);
                    serve(&entry, &forward.headers, "STALE")
                }
                None => relay(fetched, "MISS"),
            }
        }
        Ok(fetched) => {
            // The client may hold what the origin (or the cache) says is current.
            let etag = fetched.headers.get(header::ETAG).cloned();
            if fetched.status == StatusCode::OK
                && cache::not_modified(&forward.headers, etag.as_ref())
            {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                if let Some(etag) = etag {
                    r.headers_mut().insert(header::ETAG, etag);
                }
                return r;
            }
            relay(fetched, "MISS")
        }
        Err(err) => {
            bump(&shared.stats.origin_errors);
            match stale.filter(|e| e.usable_on_error(Instant::now())) {
                Some(entry) => {
                    bump(&shared.stats.stale);
                    serve(&entry, &forward.headers, "STALE")
                }
                None => origin_failed(err),
            }
        }
    }
}

/// One origin fetch per key at a time: later requests for the key wait for the first's
/// answer instead of asking the origin again. An answer too large to share (streamed to
/// the first request), or a first request that went away, leaves the others to ask for
/// themselves.
async fn coalesced(
    shared: &Arc<Shared>,
    forward: &Forward,
    stale: Option<Arc<Entry>>,
) -> Result<Fetched, FetchError> {
    let key = cache_key(forward);
    let waiting = {
        let mut inflight = shared.inflight.lock().unwrap_or_else(|e| e.into_inner());
        match inflight.get(&key) {
            Some(flight) => Err(flight.clone()),
            None => {
                let (tx, rx) = watch::channel(None);
                inflight.insert(key.clone(), rx.clone());
                Ok((tx, rx))
            }
        }
    };
    match waiting {
        Ok((tx, rx)) => {
            let _leave = LeaveFlight {
                shared,
                key: &key,
                flight: rx,
            };
            let result = fill(shared, forward, &key, stale).await;
            let outcome = match &result {
                Ok(fetched) => fetched
                    .shareable()
                    .map_or(Outcome::Streamed, |s| Outcome::Shared(Ok(s))),
                Err(err) => Outcome::Shared(Err(*err)),
            };
            let _ = tx.send(Some(outcome));
            result
        }
        Err(mut flight) => {
            bump(&shared.stats.coalesced);
            let outcome = flight
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|o| o.clone());
            match outcome {
                Some(Outcome::Shared(result)) => result.map(Fetched::from),
                Some(Outcome::Streamed) | None => fill(shared, forward, &key, stale).await,
            }
        }
    }
}

/// Removes a finished (or abandoned) flight from the in-flight map, if it is still the
/// one there.
struct LeaveFlight<'a> {
    shared: &'a Shared,
    key: &'a str,
    flight: Flight,
}

impl Drop for LeaveFlight<'_> {
    fn drop(&mut self) {
        let mut inflight = self
            .shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if inflight
            .get(self.key)
            .is_some_and(|f| f.same_channel(&self.flight))
        {
            inflight.remove(self.key);
        }
    }
}

/// Fetches for the cache: revalidates a stale entry by its `ETag`, stores what may be
/// stored.
async fn fill(
    shared: &Arc<Shared>,
    forward: &Forward,
    key: &str,
    stale: Option<Arc<Entry>>,
) -> Result<Fetched, FetchError> {
    // Filled by a flight that just ended?
    if let Some(entry) = shared.cache.get(key).await
        && entry.matches(&forward.headers)
        && entry.usable(Instant::now()) == Use::Fresh
    {
        return Ok(as_fetched(&entry));
    }
    let mut origin_request = forward.clone();
    origin_request.headers.remove(header::IF_NONE_MATCH);
    origin_request.headers.remove(header::IF_MODIFIED_SINCE);
    if let Some(etag) = stale.as_ref().and_then(|e| e.etag()) {
        origin_request
            .headers
            .insert(header::IF_NONE_MATCH, etag.clone());
    }
    bump(&shared.stats.origin_requests);
    let fetched = shared.origin.fetch(&origin_request).await?;
    if fetched.status == StatusCode::NOT_MODIFIED
        && let Some(stale) = stale
    {
        bump(&shared.stats.revalidated);
        let mut entry = (*stale).clone();
        entry.stored_at = Instant::now();
        if fetched.headers.contains_key(header::CACHE_CONTROL) {
            entry.directives = Directives::parse(&fetched.headers);
            for value in fetched.headers.get_all(header::CACHE_CONTROL) {
                entry.headers.insert(header::CACHE_CONTROL, value.clone());
            }
        }
        let entry = Arc::new(entry);
        shared.cache.insert(key.to_owned(), entry.clone()).await;
        return Ok(as_fetched(&entry));
    }
    bump(&shared.stats.misses);
    let directives = Directives::parse(&fetched.headers);
    if let Payload::Full(body) = &fetched.body
        && directives.storable(fetched.status, false, &fetched.headers)
    {
        let entry = Entry {
            status: fetched.status,
            headers: fetched.headers.clone(),
            body: body.clone(),
            stored_at: Instant::now(),
            directives,
            vary: cache::vary_of(&fetched.headers, &forward.headers),
        };
        shared.cache.insert(key.to_owned(), Arc::new(entry)).await;
    }
    Ok(fetched)
}

fn as_fetched(entry: &Entry) -> Fetched {
    Fetched {
        status: entry.status,
        headers: entry.headers.clone(),
        body: Payload::Full(entry.body.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::refused_path;

    #[test]
    fn paths_the_origin_would_rewrite_are_refused() {
        for path in [
            "/v1/x/../auth/guest",
            "/v1/./auth/guest",
            "/v1/auth/guest/..",
            "/v1//auth/guest",
            "/v1/%61uth/guest",
            "/v1/auth%2fguest",
            "/v1/auth%2Fguest",
            "/v1/%2e%2e/auth/guest",
            "/v1\\auth\\guest",
        ] {
            assert!(refused_path(path).is_some(), "{path}");
        }
        for path in [
            "/v1/leaderboards/arena-best",
            "/v1/me",
            "/v1/matchmaking/tickets/",
            "/",
        ] {
            assert_eq!(refused_path(path), None, "{path}");
        }
    }
}
