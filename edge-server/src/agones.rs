//! An edge under Agones (`outpost edge --agones`): its lifecycle told to the Agones SDK
//! sidecar, over the `agones` crate's gRPC client.
//!
//! | Outpost | Agones |
//! |---|---|
//! | the GameServer's address and its `quic` port | what the edge advertises to the cloud |
//! | accepting players | `Ready` |
//! | hosting at least one match | `Allocated` (Agones never scales down an Allocated game server); back to `Ready` once empty |
//! | its sim workers turning (every tick, or every 50 ms idle) | a `Health` ping every 2 s; a worker stuck for 2 s stops them |
//! | players and matches now, and its limits | the `players` and `matches` Counters (count, capacity), every second |
//! | its region and version | the labels `agones.dev/sdk-region`, `agones.dev/sdk-version` |
//! | drained on SIGTERM (running matches finished, results delivered) | `Shutdown` |

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::EdgeStatus;

/// How often the edge pings Health (Agones' default health period is 5 s).
pub const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// A sim worker that has not turned its loop for this long stops the Health pings.
pub const STALLED_AFTER: Duration = Duration::from_secs(2);
/// How often the Counters are brought up to date.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// The Counter of players connected (capacity: the edge's player limit).
pub const PLAYERS_COUNTER: &str = "players";
/// The Counter of matches hosted (capacity: the edge's match limit).
pub const MATCHES_COUNTER: &str = "matches";

/// A connection to the Agones SDK sidecar.
pub struct Agones {
    sdk: agones::Sdk,
}

impl Agones {
    /// Connects to the sidecar on loopback, on `port` (else `AGONES_SDK_GRPC_PORT`, else
    /// 9357); waits up to 30 s for it to answer.
    pub async fn connect(port: Option<u16>) -> anyhow::Result<Self> {
        let sdk = agones::Sdk::new_with_host(Some("http://127.0.0.1".into()), port, None)
            .await
            .context("connecting to the Agones SDK sidecar")?;
        Ok(Self { sdk })
    }

    /// Where players reach this game server: the GameServer's address and the host port
    /// Agones gave its port named `port_name`.
    pub async fn public_addr(&mut self, port_name: &str) -> anyhow::Result<SocketAddr> {
        let game_server = self.sdk.get_gameserver().await.context("GetGameServer")?;
        let status = game_server
            .status
            .context("the GameServer has no status yet")?;
        let ip: IpAddr = status.address.parse().with_context(|| {
            format!(
                "the GameServer's address `{}` is not an IP address",
                status.address
            )
        })?;
        let port = status
            .ports
            .iter()
            .find(|p| p.name == port_name)
            .with_context(|| format!("the GameServer has no port named `{port_name}`"))?
            .port;
        let port = u16::try_from(port).context("the GameServer's port is out of range")?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Labels the GameServer, sets the Counters' capacities, marks it `Ready` and keeps
    /// Health and the Counters going until [`Lifecycle::shutdown`].
    pub async fn start(
        mut self,
        edge: EdgeStatus,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<Lifecycle> {
        for (key, value) in labels {
            self.sdk
                .set_label(*key, *value)
                .await
                .with_context(|| format!("SetLabel {key}"))?;
        }
        let mut beta = self.sdk.beta().clone();
        beta.set_counter_capacity(PLAYERS_COUNTER, i64::from(edge.capacity()))
            .await
            .context("the players Counter (is it declared in the Fleet?)")?;
        beta.set_counter_capacity(MATCHES_COUNTER, i64::from(edge.match_capacity()))
            .await
            .context("the matches Counter (is it declared in the Fleet?)")?;
        self.sdk.ready().await.context("Ready")?;
        tracing::info!("agones: Ready");
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(health(
                self.sdk.health_check(),
                edge.clone(),
                cancel.clone(),
            )),
            tokio::spawn(counters(self.sdk.clone(), beta, edge, cancel.clone())),
        ];
        Ok(Lifecycle {
            sdk: self.sdk,
            cancel,
            tasks,
        })
    }
}

/// The running lifecycle: Health and Counters until shut down.
pub struct Lifecycle {
    sdk: agones::Sdk,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Lifecycle {
    /// Stops the pings and the Counters, and tells Agones the game server is done
    /// (`Shutdown`): call it once the edge has drained.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.sdk.shutdown().await.context("Shutdown")?;
        tracing::info!("agones: Shutdown");
        Ok(())
    }
}

/// A Health ping every [`HEALTH_EVERY`] while every sim worker turns.
async fn health(pings: tokio::sync::mpsc::Sender<()>, edge: EdgeStatus, cancel: CancellationToken) {
    let mut every = tokio::time::interval(HEALTH_EVERY);
    let mut stalled = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let stall = edge.sim_stalled_for();
        if stall >= STALLED_AFTER {
            if !stalled {
                tracing::error!(?stall, "agones: a sim worker is stuck; Health pings stop");
            }
            stalled = true;
            continue;
        }
        if stalled {
            tracing::warn!("agones: the sim workers turn again; Health pings resume");
            stalled = false;
        }
        // A full channel means the stream is behind: a ping is as good as another.
        let _ = pings.try_send(());
    }
}

/// The Counters every [`COUNTERS_EVERY`], and Allocated while hosting a match.
async fn counters(
    mut sdk: agones::Sdk,
    mut beta: agones::beta::Beta,
    edge: EdgeStatus,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(COUNTERS_EVERY);
    let mut told: (Option<i64>, Option<i64>) = (None, None);
    let mut allocated = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let players = i64::try_from(edge.players()).unwrap_or(i64::MAX);
        let matches = i64::from(edge.matches());
        for (name, now, last) in [
            (PLAYERS_COUNTER, players, &mut told.0),
            (MATCHES_COUNTER, matches, &mut told.1),
        ] {
            if *last != Some(now) {
                match beta.set_counter_count(name, now).await {
                    Ok(()) => *last = Some(now),
                    Err(err) => tracing::warn!(counter = name, %err, "agones: Counter not updated"),
                }
            }
        }
        // An edge with a match is Allocated, so a scale-down never takes it; empty (and
        // not draining) it is Ready again.
        let busy = matches > 0;
        if busy != allocated && !edge.is_draining() {
            let done = if busy {
                sdk.allocate().await
            } else {
                sdk.ready().await
            };
            match done {
                Ok(()) => {
                    allocated = busy;
                    tracing::info!(state = if busy { "Allocated" } else { "Ready" }, "agones");
                }
                Err(err) => tracing::warn!(%err, "agones: state not changed"),
            }
        }
    }
}
