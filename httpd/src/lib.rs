//! # outpost-httpd
//!
//! Serving an axum [`Router`] over HTTP/1.1 with what a server facing the internet needs
//! and `axum::serve` leaves out: a deadline for every request's headers (which also ends
//! idle keep-alive connections), a cap on open connections in all and per address (an
//! IPv6 /64 counts as one address, see [`outpost_protocol::addr`]), and a bounded
//! graceful shutdown. Every Outpost HTTP server — the cloud API, an edge's gateway and
//! its admin server — is served through [`serve`].
//!
//! What it is not: a router, or a request timeout. Each server keeps its own routes,
//! body limits and per-request timeouts (tower layers); this crate bounds connections.
//!
//! ```no_run
//! use outpost_httpd::{ConnStats, Limits, serve};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
//! serve(listener, router, Limits::default(), ConnStats::default(), std::future::pending()).await
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use outpost_protocol::addr::limit_key;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// What a connection refused on accept is told before it is closed (best effort: one
/// non-blocking write).
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How long `accept` backs off after an error (out of file descriptors, say), so a
/// full process does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Bounds on a server's connections. [`Limits::validate`] checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a request's headers, counted from the connection's
    /// start or from the end of the previous response: it cuts off a client that sends
    /// its headers slowly or not at all, and closes keep-alive connections idle this
    /// long. Default 10 s; 100 ms..=5 min.
    pub header_timeout: Duration,
    /// Most connections open at once; more are closed as soon as accepted. Default
    /// 4096; at least 1.
    pub max_connections: usize,
    /// Most connections open at once from one address (IPv4 address or IPv6 /64).
    /// Default 64; 1..=`max_connections`.
    pub max_connections_per_address: usize,
    /// How long a shutdown waits for requests in flight. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_address: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Checks the bounds; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.header_timeout) {
            return Err("header_timeout must be 100 ms..=5 min".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_address) {
            return Err("max_connections_per_address must be 1..=max_connections".into());
        }
        Ok(())
    }
}

/// Label of the refusals counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `full` (the server's cap) or `per_address`.
    pub reason: &'static str,
}

/// A server's connection counters, for its metrics.
#[derive(Clone, Debug, Default)]
pub struct ConnStats {
    /// Connections open now.
    pub open: Gauge,
    /// Connections accepted and served.
    pub accepted: Counter,
    /// Connections closed on accept, by reason.
    pub refused: Family<RefusalLabels, Counter>,
    /// Connections closed because a request's headers did not arrive in time (or the
    /// connection sat idle past the header timeout).
    pub header_timeouts: Counter,
}

impl ConnStats {
    /// Registers the counters under `prefix` (e.g. `gateway_http`).
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_connections_open"),
            "HTTP connections open",
            self.open.clone(),
        );
        registry.register(
            format!("{prefix}_connections_accepted"),
            "HTTP connections accepted",
            self.accepted.clone(),
        );
        registry.register(
            format!("{prefix}_connections_refused"),
            "HTTP connections closed on accept, by reason",
            self.refused.clone(),
        );
        registry.register(
            format!("{prefix}_header_timeouts"),
            "HTTP connections closed for headers not sent in time, or idle",
            self.header_timeouts.clone(),
        );
    }

    /// Connections refused for `reason` (`full` or `per_address`).
    pub fn refused_of(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&RefusalLabels { reason }).get()
    }
}

/// Open connections per address key.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, most: usize) -> Option<AddressSlot> {
        let key = limit_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            owner: self.clone(),
            key,
        })
    }
}

struct AddressSlot {
    owner: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting, lets requests in flight finish (up to [`Limits::shutdown_grace`]) and
/// returns. Handlers can extract [`ConnectInfo`]`<std::net::SocketAddr>` of the peer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: ConnStats,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    limits.validate().map_err(std::io::Error::other)?;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accepting an HTTP connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(&stream, &stats, "full");
            continue;
        };
        let Some(slot) = per_address.take(peer.ip(), limits.max_connections_per_address) else {
            refuse(&stream, &stats, "per_address");
            continue;
        };
        stats.accepted.inc();
        stats.open.inc();
        let router = router.clone();
        let stop = stop.clone();
        let stats = stats.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(request)
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = served {
                if err.is_timeout() {
                    stats.header_timeouts.inc();
                } else {
                    tracing::debug!(%peer, %err, "HTTP connection ended with an error");
                }
            }
            stats.open.dec();
            drop((permit, slot));
        });
    }
    stop.cancel();
    connections.close();
    let _ = tokio::time::timeout(limits.shutdown_grace, connections.wait()).await;
    Ok(())
}

/// Counts a refused connection and tells it so; the caller drops it.
fn refuse(stream: &tokio::net::TcpStream, stats: &ConnStats, reason: &'static str) {
    stats.refused.get_or_create(&RefusalLabels { reason }).inc();
    let _ = stream.try_write(REFUSED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert!(Limits::default().validate().is_ok());
        let bad = [
            Limits {
                header_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
            Limits {
                max_connections_per_address: 5000,
                ..Limits::default()
            },
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }
}
