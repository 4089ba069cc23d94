//! The edge's link to the cloud: it registers and heartbeats (region, address,
//! certificate fingerprint, capacity, load, draining), fetches the connect-token key from
//! the cloud's JWKS (and caches it, so an edge can restart while the cloud is away), and
//! delivers the outbox — results, then replays — with retries and capped, jittered
//! exponential backoff. During a cloud outage matches go on and the outbox fills; when
//! the cloud is back it drains. Nothing is lost (the outbox is on disk) and nothing is
//! doubled (the cloud applies a match's result and replay once).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::outbox::{Item, ItemKind, Outbox};
use crate::server::EdgeStatus;

/// How the link runs.
#[derive(Debug, Clone)]
pub struct CloudLinkConfig {
    /// Base URL of the cloud API, e.g. `https://cloud.example.com`.
    pub cloud_url: String,
    /// This edge's own credential (derived for its id from the fleet's edge secret by the
    /// operator: `outpost edge-credential`), sent as `Authorization: Edge <id>:<credential>`.
    pub credential: String,
    /// This edge's region, e.g. `eu-west`.
    pub region: String,
    /// Address players reach the QUIC endpoint at. Default: the bound address.
    pub advertise_addr: Option<std::net::SocketAddr>,
    /// Heartbeat period. Default 2 s (the cloud forgets an edge after 15 s of silence).
    pub heartbeat_every: Duration,
    /// First retry delay after a failed delivery. Default 250 ms.
    pub backoff_min: Duration,
    /// Longest retry delay. Default 30 s.
    pub backoff_max: Duration,
    /// An item the cloud keeps failing (5xx) while it takes others is set aside in
    /// `outbox/dead` after this many tries… Default 10.
    pub dead_letter_tries: u32,
    /// …over at least this long. Default 10 minutes.
    pub dead_letter_after: Duration,
    /// How often the connect-token keys are fetched again from the cloud's JWKS, so a
    /// rotation reaches the edge while it runs. Default 60 s.
    pub key_refresh_every: Duration,
    /// Soonest the keys are fetched again after a token failed its signature check (what
    /// a token signed with a key the edge has not seen yet does). Default 10 s, so forged
    /// tokens cannot make the edge hammer the cloud.
    pub key_refresh_spacing: Duration,
    /// Where the fetched JWKS is cached (read when the cloud cannot be reached at start).
    pub jwks_cache: Option<std::path::PathBuf>,
}

impl CloudLinkConfig {
    /// Defaults for a cloud at `cloud_url`.
    pub fn new(
        cloud_url: impl Into<String>,
        credential: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            cloud_url: cloud_url.into().trim_end_matches('/').to_owned(),
            credential: credential.into(),
            region: region.into(),
            advertise_addr: None,
            heartbeat_every: Duration::from_secs(2),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            dead_letter_tries: 10,
            dead_letter_after: Duration::from_secs(600),
            key_refresh_every: Duration::from_secs(60),
            key_refresh_spacing: Duration::from_secs(10),
            jwks_cache: None,
        }
    }
}

/// What the link has done.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Results the cloud acknowledged.
    pub results_delivered: AtomicU64,
    /// Replays the cloud acknowledged.
    pub replays_delivered: AtomicU64,
    /// Delivery attempts that failed and will be retried.
    pub retries: AtomicU64,
    /// Items the cloud refused for good, or kept failing while it took others (set aside
    /// in `outbox/dead`).
    pub refused: AtomicU64,
    /// Heartbeats acknowledged.
    pub heartbeats: AtomicU64,
    /// Connect-token key fetches that succeeded.
    pub key_fetches: AtomicU64,
}

/// An HTTP client for the cloud (rustls with the ring provider, timeouts set).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(outpost_protocol::HTTP_CLIENT_IDLE)
        .build()
        .context("building the HTTP client")
}

#[derive(Deserialize, Serialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize, Serialize)]
struct Jwk {
    kid: String,
    x: String,
}

/// Every connect-token key (`connect-` kid) a JWKS publishes, in its order.
fn connect_keys_of(jwks: &Jwks) -> Vec<[u8; 32]> {
    jwks.keys
        .iter()
        .filter(|k| k.kid.starts_with("connect-"))
        .filter_map(|k| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&k.x)
                .ok()?
                .try_into()
                .ok()
        })
        .collect()
}

/// The cloud's connect-token public key, from its JWKS (the first if it publishes
/// several). A fetched JWKS is cached in `cache`; when the cloud cannot be reached the
/// cached one is used.
pub async fn fetch_connect_key(
    http: &reqwest::Client,
    cloud_url: &str,
    cache: Option<&Path>,
) -> anyhow::Result<[u8; 32]> {
    fetch_connect_keys(http, cloud_url, cache)
        .await?
        .first()
        .copied()
        .context("the cloud's JWKS has no connect- key")
}

/// Every connect-token key the cloud publishes, as [`fetch_connect_key`] fetches one.
pub async fn fetch_connect_keys(
    http: &reqwest::Client,
    cloud_url: &str,
    cache: Option<&Path>,
) -> anyhow::Result<Vec<[u8; 32]>> {
    let url = format!("{}/.well-known/jwks.json", cloud_url.trim_end_matches('/'));
    let fetched = async {
        let response = http.get(&url).send().await?.error_for_status()?;
        response.json::<Jwks>().await
    }
    .await;
    match fetched {
        Ok(jwks) => {
            let keys = connect_keys_of(&jwks);
            anyhow::ensure!(!keys.is_empty(), "the cloud's JWKS has no connect- key");
            if let Some(cache) = cache {
                let json = serde_json::to_vec(&jwks)?;
                let tmp = cache.with_extension("tmp");
                std::fs::write(&tmp, json)?;
                std::fs::rename(&tmp, cache)?;
            }
            Ok(keys)
        }
        Err(err) => {
            let cache = cache.with_context(|| format!("fetching {url}: {err}"))?;
            let text = std::fs::read(cache)
                .with_context(|| format!("fetching {url}: {err}; and no cached JWKS"))?;
            let jwks: Jwks = serde_json::from_slice(&text).context("cached JWKS")?;
            tracing::warn!(%err, "cloud unreachable: using the cached JWKS");
            let keys = connect_keys_of(&jwks);
            anyhow::ensure!(!keys.is_empty(), "cached JWKS has no connect- key");
            Ok(keys)
        }
    }
}

/// A link's settings, and the `Authorization` header it sends.
struct Link {
    config: CloudLinkConfig,
    authorization: String,
}

impl std::ops::Deref for Link {
    type Target = CloudLinkConfig;

    fn deref(&self) -> &CloudLinkConfig {
        &self.config
    }
}

/// A running link. Dropping it does not stop it; call [`CloudLink::stop`].
pub struct CloudLink {
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<LinkStats>,
}

impl CloudLink {
    /// Starts heartbeating `edge` and delivering its outbox (if it keeps one).
    pub fn start(edge: &crate::Edge, config: CloudLinkConfig) -> anyhow::Result<Self> {
        let http = http_client()?;
        let cancel = CancellationToken::new();
        let stats = Arc::new(LinkStats::default());
        let config = Arc::new(Link {
            authorization: format!("Edge {}:{}", edge.config().edge_id, config.credential),
            config,
        });
        let mut tasks = vec![
            tokio::spawn(heartbeats(
                http.clone(),
                config.clone(),
                edge.status(),
                stats.clone(),
                cancel.clone(),
            )),
            tokio::spawn(refresh_keys(
                http.clone(),
                config.clone(),
                edge.status(),
                stats.clone(),
                cancel.clone(),
            )),
        ];
        if let Some(outbox) = edge.outbox() {
            let delivered = (
                edge.metrics().results_delivered.clone(),
                edge.metrics().replays_delivered.clone(),
            );
            tasks.push(tokio::spawn(deliver_outbox(
                http,
                config,
                outbox.clone(),
                (stats.clone(), delivered),
                cancel.clone(),
            )));
        }
        Ok(Self {
            cancel,
            tasks,
            stats,
        })
    }

    /// What it has done.
    pub fn stats(&self) -> &Arc<LinkStats> {
        &self.stats
    }

    /// Stops heartbeating and delivering (what is undelivered stays in the outbox).
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[derive(Serialize)]
struct Heartbeat<'a> {
    edge_id: &'a str,
    region: &'a str,
    quic_addr: String,
    cert_sha256: String,
    capacity: u32,
    load: u32,
    match_capacity: u32,
    matches: u32,
    draining: bool,
}

async fn heartbeats(
    http: reqwest::Client,
    config: Arc<Link>,
    edge: EdgeStatus,
    stats: Arc<LinkStats>,
    cancel: CancellationToken,
) {
    let url = format!("{}/v1/edges/heartbeat", config.cloud_url);
    let mut ticker = tokio::time::interval(config.heartbeat_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = cancel.cancelled() => return,
        }
        let beat = Heartbeat {
            edge_id: &edge.edge_id(),
            region: &config.region,
            quic_addr: config
                .advertise_addr
                .unwrap_or(edge.quic_addr())
                .to_string(),
            cert_sha256: crate::hex(&edge.cert_fingerprint()),
            capacity: edge.capacity(),
            load: edge.players().min(u64::from(u32::MAX)) as u32,
            match_capacity: edge.match_capacity(),
            matches: edge.matches(),
            draining: edge.is_draining(),
        };
        let sent = http
            .post(&url)
            .header("authorization", &config.authorization)
            .json(&beat)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                if failing {
                    tracing::info!("cloud reachable again");
                    failing = false;
                }
            }
            Err(err) if !failing => {
                tracing::warn!(%err, "heartbeat failed; matches go on, retrying");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Keeps the edge's connect-token keys in step with the cloud's JWKS: every
/// `key_refresh_every`, and soon after a token fails its signature check (at most every
/// `key_refresh_spacing`).
async fn refresh_keys(
    http: reqwest::Client,
    config: Arc<Link>,
    edge: EdgeStatus,
    stats: Arc<LinkStats>,
    cancel: CancellationToken,
) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(last + config.key_refresh_every) => {}
            () = edge.key_refresh_wanted() => {
                // Not before the spacing has passed since the last fetch.
                tokio::select! {
                    () = tokio::time::sleep_until(last + config.key_refresh_spacing) => {}
                    () = cancel.cancelled() => return,
                }
            }
            () = cancel.cancelled() => return,
        }
        last = tokio::time::Instant::now();
        match fetch_connect_keys(&http, &config.cloud_url, config.jwks_cache.as_deref()).await {
            Ok(keys) => {
                stats.key_fetches.fetch_add(1, Ordering::Relaxed);
                edge.trust_keys(&keys);
            }
            Err(err) => {
                tracing::warn!(%err, "fetching the connect-token keys failed; keeping those held")
            }
        }
    }
}

/// What the cloud said of a delivery.
enum Delivery {
    Done,
    /// Refused for good (a 4xx other than 401, 408, 429).
    Refused(String),
    /// Failed this time (a 5xx, 408, 429, 401): this item retries.
    Retry(String),
    /// No answer at all: the cloud is down or unreachable, nothing else goes now either.
    Unreachable(String),
}

async fn deliver(http: &reqwest::Client, config: &Link, item: &Item) -> Delivery {
    let bytes = match tokio::fs::read(&item.path).await {
        Ok(bytes) => bytes,
        Err(err) => return Delivery::Retry(format!("reading {}: {err}", item.path.display())),
    };
    let request = match item.kind {
        ItemKind::Result => http
            .post(format!(
                "{}/v1/matches/{}/result",
                config.cloud_url, item.match_id
            ))
            .header("content-type", "application/json"),
        ItemKind::Replay => http
            .put(format!("{}/v1/replays/{}", config.cloud_url, item.match_id))
            .header("content-type", "application/octet-stream"),
    };
    let response = request
        .header("authorization", &config.authorization)
        .body(bytes)
        .send()
        .await;
    match response {
        Err(err) => Delivery::Unreachable(err.to_string()),
        Ok(r) if r.status().is_success() => Delivery::Done,
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            let transient = status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
                // A credential problem is the operator's to fix; keep the item meanwhile.
                || status == StatusCode::UNAUTHORIZED;
            if transient {
                Delivery::Retry(format!("{status}: {body}"))
            } else {
                Delivery::Refused(format!("{status}: {body}"))
            }
        }
    }
}

/// Where one item stands between attempts.
struct Attempts {
    tries: u32,
    backoff: Duration,
    next_at: tokio::time::Instant,
    failing_since: tokio::time::Instant,
}

/// Delivers the outbox. Items go independently: one the cloud keeps failing (a 5xx
/// forever: a mode removed, a bug) backs off on its own and never holds up the others,
/// and once the cloud has accepted other items since it began failing, it is set aside in
/// `outbox/dead` after `dead_letter_tries` tries over `dead_letter_after`. A cloud that
/// cannot be reached at all backs the whole round off instead.
async fn deliver_outbox(
    http: reqwest::Client,
    config: Arc<Link>,
    outbox: Arc<Outbox>,
    (stats, (results_metric, replays_metric)): (
        Arc<LinkStats>,
        (
            prometheus_client::metrics::counter::Counter,
            prometheus_client::metrics::counter::Counter,
        ),
    ),
    cancel: CancellationToken,
) {
    let mut state: std::collections::HashMap<std::path::PathBuf, Attempts> =
        std::collections::HashMap::new();
    let mut backoff = config.backoff_min;
    let mut last_success: Option<tokio::time::Instant> = None;
    let jitter = |d: Duration| d.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    loop {
        let items = outbox.pending().unwrap_or_else(|err| {
            tracing::error!(%err, "reading the outbox");
            Vec::new()
        });
        state.retain(|path, _| items.iter().any(|i| &i.path == path));
        let mut unreachable = false;
        for item in &items {
            if cancel.is_cancelled() {
                return;
            }
            let now = tokio::time::Instant::now();
            if state.get(&item.path).is_some_and(|a| a.next_at > now) {
                continue;
            }
            match deliver(&http, &config, item).await {
                Delivery::Done => {
                    state.remove(&item.path);
                    last_success = Some(tokio::time::Instant::now());
                    let (counter, metric) = match item.kind {
                        ItemKind::Result => (&stats.results_delivered, &results_metric),
                        ItemKind::Replay => (&stats.replays_delivered, &replays_metric),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    metric.inc();
                    if let Err(err) = outbox.done(item) {
                        tracing::error!(%err, "removing a delivered outbox item");
                    }
                    tracing::info!(match_id = %item.match_id, kind = ?item.kind, "delivered to the cloud");
                }
                Delivery::Refused(why) => {
                    state.remove(&item.path);
                    set_aside(&outbox, &stats, item, &why);
                }
                Delivery::Unreachable(why) => {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%why, ?backoff, "the cloud cannot be reached; will retry");
                    unreachable = true;
                    break;
                }
                Delivery::Retry(why) => {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    let now = tokio::time::Instant::now();
                    let attempts = state.entry(item.path.clone()).or_insert(Attempts {
                        tries: 0,
                        backoff: config.backoff_min,
                        next_at: now,
                        failing_since: now,
                    });
                    attempts.tries += 1;
                    // Poison, not an outage: the cloud takes other items meanwhile.
                    let poison = last_success.is_some_and(|at| at > attempts.failing_since)
                        && attempts.tries >= config.dead_letter_tries
                        && now.duration_since(attempts.failing_since) >= config.dead_letter_after;
                    if poison {
                        let tries = attempts.tries;
                        state.remove(&item.path);
                        set_aside(&outbox, &stats, item, &format!("{why} ({tries} tries)"));
                        continue;
                    }
                    attempts.next_at = now + jitter(attempts.backoff);
                    attempts.backoff = (attempts.backoff * 2).min(config.backoff_max);
                    tracing::debug!(match_id = %item.match_id, kind = ?item.kind, %why,
                        tries = attempts.tries, "delivery failed; this item will retry");
                }
            }
        }
        let wait = if unreachable {
            // Full jitter: a fleet of edges coming back does not stampede the cloud.
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(config.backoff_max);
            wait
        } else {
            backoff = config.backoff_min;
            let now = tokio::time::Instant::now();
            state
                .values()
                .map(|a| a.next_at.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(5))
                .min(Duration::from_secs(5))
        };
        tokio::select! {
            () = outbox.written(), if !unreachable => {}
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Moves an item the cloud will not take into `outbox/dead`, for an operator.
fn set_aside(outbox: &Outbox, stats: &LinkStats, item: &Item, why: &str) {
    stats.refused.fetch_add(1, Ordering::Relaxed);
    tracing::error!(match_id = %item.match_id, kind = ?item.kind, %why,
        "the cloud will not take an outbox item; set aside in outbox/dead");
    if let Err(err) = outbox.dead(item) {
        tracing::error!(%err, "setting aside an outbox item");
    }
}
