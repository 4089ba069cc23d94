//! Starting an edge, and the handle that observes and stops it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::config::EdgeConfig;
use crate::directory::Directory;
use crate::handshake::{Decision, HandshakeGate, HandshakeLimits};
use crate::metrics::EdgeMetrics;
use crate::outbox::Outbox;
use crate::session::{self, Shared};
use crate::tls::Certificate;
use crate::worker::{self, COMMAND_QUEUE, WorkerContext};

/// Ended matches queued for the outbox writer.
const FINISHED_QUEUE: usize = 64;
/// How long shutdown waits for goodbyes to be delivered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Tick-time percentiles of an edge since it started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickStats {
    /// Ticks measured.
    pub ticks: u64,
    /// Median tick time, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile tick time, milliseconds.
    pub p99_ms: f64,
    /// Longest tick, milliseconds.
    pub max_ms: f64,
}

/// What an edge reports of itself, readable from other tasks.
#[derive(Clone)]
pub struct EdgeStatus {
    shared: Arc<Shared>,
    quic_addr: SocketAddr,
    fingerprint: [u8; 32],
}

impl EdgeStatus {
    /// Its id.
    pub fn edge_id(&self) -> String {
        self.shared.config.edge_id.clone()
    }

    /// Where its QUIC endpoint is bound.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Its certificate's SHA-256.
    pub fn cert_fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Most players it takes.
    pub fn capacity(&self) -> u32 {
        self.shared.config.max_players.min(u32::MAX as usize) as u32
    }

    /// Players connected now.
    pub fn players(&self) -> u64 {
        self.shared.metrics.players.get().max(0) as u64
    }

    /// Most matches it hosts.
    pub fn match_capacity(&self) -> u32 {
        self.shared.config.max_matches.min(u32::MAX as usize) as u32
    }

    /// Matches it hosts now (or has routed, about to be created).
    pub fn matches(&self) -> u32 {
        self.shared.directory.len().min(u32::MAX as usize) as u32
    }

    /// How long ago the least recent sim worker last turned its loop (each does at least
    /// every 50 ms, or every tick): a worker stuck in a tick shows here.
    pub fn sim_stalled_for(&self) -> Duration {
        self.shared.beats.oldest()
    }

    /// Whether it takes no new matches.
    pub fn is_draining(&self) -> bool {
        !self.shared.accepting.load(Ordering::Acquire)
    }

    /// Takes the connect-token keys the cloud publishes now (see
    /// [`Admission::trust`]). Returns whether anything changed.
    pub fn trust_keys(&self, published: &[[u8; 32]]) -> bool {
        let changed = self
            .shared
            .admission
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trust(published, session::now_ms());
        if changed {
            tracing::info!(keys = published.len(), "connect-token keys updated");
        }
        changed
    }

    /// Resolves when a token failed its signature check: the cloud may have rotated its
    /// key.
    pub async fn key_refresh_wanted(&self) {
        self.shared.key_refresh.notified().await;
    }
}

/// A running edge.
pub struct Edge {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    quic_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    fingerprint: [u8; 32],
    tick_times_us: Arc<Mutex<Histogram<u64>>>,
    stop_workers: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    connections: TaskTracker,
    cancel: CancellationToken,
    accept_task: JoinHandle<()>,
    http_task: Option<JoinHandle<()>>,
    outbox: Option<Arc<Outbox>>,
    outbox_writer: Option<std::thread::JoinHandle<()>>,
}

/// Socket buffer asked for the QUIC endpoint, each way. The kernel's default (about
/// 200 KB on Linux) holds a few milliseconds of a full edge's inputs: a network thread
/// that waited that long for a core lost datagrams, handshakes among them, whose
/// retransmission then waited out QUIC's probe timeouts. Linux caps it at
/// `net.core.rmem_max` / `wmem_max` (docs/operations.md).
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// The edge's UDP socket, bound to `addr`, with [`UDP_BUFFER_BYTES`] asked for each way
/// (what the kernel grants is logged).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    state.set_recv_buffer_size((&socket).into(), UDP_BUFFER_BYTES)?;
    state.set_send_buffer_size((&socket).into(), UDP_BUFFER_BYTES)?;
    tracing::info!(
        recv_buffer = state.recv_buffer_size((&socket).into())?,
        send_buffer = state.send_buffer_size((&socket).into())?,
        "QUIC socket buffers"
    );
    Ok(socket)
}

impl Edge {
    /// Validates the config, binds the QUIC endpoint and the admin HTTP server, and starts
    /// the sim workers. Must be called inside a tokio runtime.
    pub async fn start(config: EdgeConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let certificate = Certificate::load(&config.tls)?;
        let socket = bind_udp(config.listen)
            .with_context(|| format!("binding QUIC endpoint on {}", config.listen))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(certificate.server_config(&config)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .with_context(|| format!("binding QUIC endpoint on {}", config.listen))?;
        let quic_addr = endpoint.local_addr()?;

        let metrics = Arc::new(EdgeMetrics::new());
        let directory = Arc::new(Directory::new(config.sim_threads, config.max_matches));
        let tick_times_us = Arc::new(Mutex::new(
            Histogram::new_with_bounds(1, 10_000_000, 3).context("tick histogram bounds")?,
        ));
        let stop_workers = Arc::new(AtomicBool::new(false));
        let outbox = match &config.outbox_dir {
            Some(dir) => Some(Arc::new(
                Outbox::open(dir, config.max_outbox_replay_bytes)
                    .with_context(|| format!("opening the outbox in {}", dir.display()))?,
            )),
            None => None,
        };
        let (finished_tx, outbox_writer) = match &outbox {
            Some(outbox) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(FINISHED_QUEUE);
                let outbox = outbox.clone();
                let edge_id = config.edge_id.clone();
                let metrics = metrics.clone();
                let writer = std::thread::Builder::new()
                    .name("outpost-outbox".into())
                    .spawn(move || crate::outbox::write_finished(&outbox, &edge_id, &rx, &metrics))
                    .context("spawning the outbox writer")?;
                (Some(tx), Some(writer))
            }
            None => (None, None),
        };
        let mut senders = Vec::with_capacity(config.sim_threads);
        let mut workers = Vec::with_capacity(config.sim_threads);
        let beats = worker::Beats {
            since: std::time::Instant::now(),
            workers: (0..config.sim_threads)
                .map(|_| Arc::new(AtomicU64::new(0)))
                .collect(),
        };
        let outgoing = Arc::new(worker::Outgoing::new(worker::OUTGOING_DATAGRAMS));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        for index in 0..config.sim_threads {
            let (tx, rx) = std::sync::mpsc::sync_channel(COMMAND_QUEUE);
            senders.push(tx);
            let ctx = WorkerContext {
                finished: finished_tx.clone(),
                max_replay_bytes: config.max_replay_bytes,
                metrics: metrics.clone(),
                directory: directory.clone(),
                tick_times_us: tick_times_us.clone(),
                stop: stop_workers.clone(),
                reconnect_grace: config.reconnect_grace,
                interest: crate::snapshot::Interest {
                    radius: config.interest_radius,
                    ..Default::default()
                },
                bandwidth_bps: config.client_bandwidth_bps,
                max_input_rate_hz: config.max_input_rate_hz,
                modes: config.modes.clone(),
                beat: beats.workers[index].clone(),
                beats_since: beats.since,
                phase: (index as u32, config.sim_threads as u32),
                outgoing: outgoing.clone(),
            };
            let started = started_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("outpost-sim-{index}"))
                .spawn(move || {
                    let _ = started.send(());
                    worker::run(ctx, rx)
                })
                .context("spawning a sim worker thread")?;
            workers.push(handle);
        }
        // Every sim thread runs (named, at the process's priority) before the edge says
        // it listens: a thread just spawned still carried its parent's name for a moment.
        drop(started_tx);
        for _ in 0..config.sim_threads {
            if started_rx.recv().is_err() {
                break;
            }
        }

        let shared = Arc::new(Shared {
            admission: Mutex::new(
                Admission::new(
                    config.token_public_key,
                    config.edge_id.clone(),
                    session::now_ms(),
                    config.token_leeway.as_millis() as u64,
                )
                .context("token_public_key is not a valid Ed25519 public key")?,
            ),
            key_refresh: tokio::sync::Notify::new(),
            player_slots: Arc::new(tokio::sync::Semaphore::new(config.max_players)),
            config: config.clone(),
            metrics,
            directory,
            workers: senders,
            accepting: AtomicBool::new(true),
            next_session: AtomicU64::new(1),
            beats,
        });
        let cancel = CancellationToken::new();
        let connections = TaskTracker::new();
        tokio::spawn(outgoing.run(shared.metrics.clone(), cancel.clone()));

        let (http_addr, http_task) = match config.http_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding admin HTTP on {addr}"))?;
                let bound = listener.local_addr()?;
                let router = crate::http::router(shared.clone());
                let cancel = cancel.clone();
                let limits = config.admin_http;
                let stats = shared.metrics.admin_http.clone();
                let task = tokio::spawn(async move {
                    let served = outpost_httpd::serve(
                        listener,
                        router,
                        limits,
                        stats,
                        cancel.cancelled_owned(),
                    )
                    .await;
                    if let Err(err) = served {
                        tracing::error!(?err, "admin HTTP server failed");
                    }
                });
                (Some(bound), Some(task))
            }
            None => (None, None),
        };

        let accept_task = {
            let endpoint = endpoint.clone();
            let shared = shared.clone();
            let connections = connections.clone();
            let cancel = cancel.clone();
            let gate = HandshakeGate::new(
                HandshakeLimits {
                    max_pending: config.max_pending_handshakes,
                    max_pending_per_address: config.max_pending_handshakes_per_address,
                    retry_above: config.retry_above_pending,
                },
                shared.metrics.handshakes_pending.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let incoming = tokio::select! {
                        incoming = endpoint.accept() => incoming,
                        () = cancel.cancelled() => break,
                    };
                    let Some(incoming) = incoming else { break };
                    let decision = gate.decide(
                        incoming.remote_address().ip(),
                        incoming.remote_address_validated(),
                        incoming.may_retry(),
                    );
                    let pending = match decision {
                        Decision::Accept(pending) => pending,
                        Decision::Retry => {
                            shared.metrics.handshake_retries.inc();
                            if let Err(err) = incoming.retry() {
                                err.into_incoming().refuse();
                            }
                            continue;
                        }
                        Decision::Refuse(refusal) => {
                            shared.metrics.refuse_handshake(refusal);
                            incoming.refuse();
                            continue;
                        }
                    };
                    let shared = shared.clone();
                    connections.spawn(session::serve(shared, incoming, pending));
                }
            })
        };

        tracing::info!(
            edge_id = %config.edge_id,
            quic = %quic_addr,
            http = ?http_addr,
            fingerprint = %hex(&certificate.fingerprint),
            "edge listening"
        );
        Ok(Self {
            shared,
            endpoint,
            quic_addr,
            http_addr,
            fingerprint: certificate.fingerprint,
            tick_times_us,
            stop_workers,
            workers,
            connections,
            cancel,
            accept_task,
            http_task,
            outbox,
            outbox_writer,
        })
    }

    /// Where the QUIC endpoint listens.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Where the admin HTTP server listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// SHA-256 fingerprint of the edge's certificate, for clients to pin.
    pub fn cert_fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// A handle on what the edge reports of itself (for heartbeats).
    pub fn status(&self) -> EdgeStatus {
        EdgeStatus {
            shared: self.shared.clone(),
            quic_addr: self.quic_addr,
            fingerprint: self.fingerprint,
        }
    }

    /// The outbox, if the edge keeps one.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EdgeConfig {
        &self.shared.config
    }

    /// Players connected now.
    pub fn players(&self) -> u64 {
        self.shared.metrics.players.get().max(0) as u64
    }

    /// Whether it is draining (taking no new matches).
    pub fn is_draining(&self) -> bool {
        !self.shared.accepting.load(Ordering::Acquire)
    }

    /// The edge's metrics.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.shared.metrics
    }

    /// Matches hosted now.
    pub fn matches(&self) -> usize {
        self.shared.directory.len()
    }

    /// Tick-time percentiles since start.
    pub fn tick_stats(&self) -> TickStats {
        let times = self.tick_times_us.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |us: u64| us as f64 / 1000.0;
        TickStats {
            ticks: times.len(),
            p50_ms: ms(times.value_at_quantile(0.5)),
            p99_ms: ms(times.value_at_quantile(0.99)),
            max_ms: ms(times.max()),
        }
    }

    /// Stops taking new matches (players may still join running ones); `/readyz` turns 503.
    pub fn drain(&self) {
        self.shared.accepting.store(false, Ordering::Release);
    }

    /// Drains, then waits until every match has ended or `deadline` passes.
    pub async fn drain_and_wait(&self, deadline: Duration) {
        self.drain();
        let until = tokio::time::Instant::now() + deadline;
        while !self.shared.directory.is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends every match (players get `MatchEnded` and a goodbye), closes every
    /// connection, stops the sim workers and the admin server.
    pub async fn shutdown(self) {
        self.drain();
        self.cancel.cancel();
        self.stop_workers.store(true, Ordering::Release);
        let workers = self.workers;
        let outbox_writer = self.outbox_writer;
        // Workers end their matches (results go to the outbox), then the writer drains.
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
            if let Some(writer) = outbox_writer {
                let _ = writer.join();
            }
        })
        .await;
        self.connections.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.connections.wait()).await;
        self.endpoint.close(
            quinn::VarInt::from_u32(session::close_code::DONE),
            b"shutdown",
        );
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle()).await;
        let _ = self.accept_task.await;
        if let Some(task) = self.http_task {
            let _ = task.await;
        }
        tracing::info!("edge stopped");
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    /// What Linux lets a process ask for (`net.core.rmem_max`); elsewhere nothing known.
    fn rmem_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    #[test]
    fn a_full_edges_inputs_are_not_dropped_by_a_default_sized_socket() {
        let socket = super::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("binds");
        let state = quinn::udp::UdpSocketState::new((&socket).into()).expect("state");
        let granted = state.recv_buffer_size((&socket).into()).expect("reads");
        // Linux reports twice what it grants (its bookkeeping share); grants up to the cap.
        let wanted = rmem_max().map_or(super::UDP_BUFFER_BYTES, |max| {
            max.min(super::UDP_BUFFER_BYTES)
        });
        assert!(
            granted >= wanted,
            "receive buffer {granted} bytes, asked {wanted}"
        );
    }
}
