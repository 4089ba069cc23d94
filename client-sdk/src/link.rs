//! A link conditioner as a UDP relay: point clients at the relay instead of the edge and
//! every datagram each way meets the latency, jitter, loss, reordering and duplication
//! of a [`LinkConfig`]. Usable from tests, `outpost dev --link`, and the load test.
//!
//! The fates come from [`outpost_protocol::link::Conditioner`] (pure, seeded); this is
//! the shell that holds packets and forwards them. Each client address gets its own
//! upstream socket, so the edge sees clients as distinct peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use outpost_protocol::link::{Conditioner, LinkConfig};
use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Most client addresses one relay serves.
pub const MAX_PEERS: usize = 4096;
/// Most packets held in flight at once; beyond it packets are dropped (and counted).
pub const MAX_IN_FLIGHT: usize = 65_536;
const MAX_UDP: usize = 65_536;

/// What the relay did.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Packets that entered the relay.
    pub received: AtomicU64,
    /// Packets (copies) delivered.
    pub delivered: AtomicU64,
    /// Packets lost on purpose.
    pub dropped: AtomicU64,
    /// Packets dropped because too many were in flight or peers were full.
    pub overflow: AtomicU64,
}

/// A running relay.
pub struct LinkRelay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    task: JoinHandle<()>,
}

impl Drop for LinkRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    target: SocketAddr,
    front: Arc<UdpSocket>,
    up: std::sync::Mutex<Conditioner>,
    down: std::sync::Mutex<Conditioner>,
    in_flight: AtomicUsize,
    stats: Arc<RelayStats>,
}

impl LinkRelay {
    /// Starts a relay on 127.0.0.1 forwarding to `target`, conditioning client→edge
    /// traffic with `up` and edge→client traffic with `down`, seeded by `seed`.
    pub async fn start(
        target: SocketAddr,
        up: LinkConfig,
        down: LinkConfig,
        seed: u64,
    ) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let shared = Arc::new(Shared {
            target,
            front: front.clone(),
            up: std::sync::Mutex::new(Conditioner::new(up, seed)),
            down: std::sync::Mutex::new(Conditioner::new(down, seed ^ 0x9e37_79b9_7f4a_7c15)),
            in_flight: AtomicUsize::new(0),
            stats: stats.clone(),
        });
        let task = tokio::spawn(run(shared));
        Ok(Self { addr, stats, task })
    }

    /// The same conditions both ways.
    pub async fn symmetric(
        target: SocketAddr,
        link: LinkConfig,
        seed: u64,
    ) -> std::io::Result<Self> {
        Self::start(target, link, link, seed).await
    }

    /// Where clients should send: the relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the relay did so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

/// Schedules `bytes` to be sent by `socket` to `to` after each of the delays of its fate.
fn forward(
    shared: &Arc<Shared>,
    conditioner: &std::sync::Mutex<Conditioner>,
    socket: &Arc<UdpSocket>,
    to: SocketAddr,
    bytes: &[u8],
) {
    shared.stats.received.fetch_add(1, Ordering::Relaxed);
    let fate = conditioner.lock().map(|mut c| c.fate()).unwrap_or_default();
    if fate.is_empty() {
        shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
    for delay in fate {
        if shared.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            shared.stats.overflow.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (shared, socket, bytes) = (shared.clone(), socket.clone(), bytes.to_vec());
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if socket.send_to(&bytes, to).await.is_ok() {
                shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn run(shared: Arc<Shared>) {
    let peers: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let Ok((len, client)) = shared.front.recv_from(&mut buf).await else {
            return;
        };
        let upstream = {
            let mut peers = peers.lock().await;
            match peers.get(&client) {
                Some(socket) => socket.clone(),
                None => {
                    if peers.len() >= MAX_PEERS {
                        shared.stats.overflow.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let Ok(socket) = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
                    else {
                        continue;
                    };
                    let socket = Arc::new(socket);
                    peers.insert(client, socket.clone());
                    tokio::spawn(run_downstream(shared.clone(), socket.clone(), client));
                    socket
                }
            }
        };
        forward(&shared, &shared.up, &upstream, shared.target, &buf[..len]);
    }
}

/// Carries the edge's packets for one client back through the relay's front socket.
async fn run_downstream(shared: Arc<Shared>, upstream: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; MAX_UDP];
    while let Ok((len, _)) = upstream.recv_from(&mut buf).await {
        let front = shared.front.clone();
        forward(&shared, &shared.down, &front, client, &buf[..len]);
    }
}
