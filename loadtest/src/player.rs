//! One simulated player: join, then play like a bot until the end of the run, sampling
//! what it sees once a second.

use std::sync::Arc;
use std::time::Duration;

use outpost_client::{Assignment, Client, ClientError, CloudClient, Session, input_ticks};
use outpost_protocol::replication::InputRecord;
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{GoodbyeReason, MatchConfig};
use tokio::time::{Instant, MissedTickBehavior};

use crate::recorder::{PlayerSample, Recorder};
use crate::{CONNECT_TIMEOUT, ErrorKind, LoadConfig};

/// How a full-stack player gets into a match: it logs in and matchmakes through the API
/// (again after each match). Players joined with tokens play through `crate::swarm`.
pub(crate) struct Join {
    pub api_url: String,
    pub mode: String,
    pub load_test_key: Option<String>,
}

/// Why a player's time in a match ended, when it did not break.
enum Ended {
    /// The run is over.
    RunOver,
    /// The match is over (the edge said so): a player of the full stack queues again.
    MatchOver,
}

/// Where a player joins next: its assignment, or why there is none. `api` keeps a
/// full-stack player's login from one match to the next.
async fn assignment(
    n: u32,
    join: &Join,
    api: &mut Option<CloudClient>,
    client: &Client,
    config: &LoadConfig,
    deadline: Instant,
) -> Result<Assignment, ErrorKind> {
    let Join {
        api_url,
        mode,
        load_test_key,
    } = join;
    let wait = deadline.saturating_duration_since(Instant::now());
    let found = tokio::time::timeout(wait, async {
        if api.is_none() {
            let headers: Vec<(&str, &str)> = load_test_key
                .as_deref()
                .map(|key| ("x-outpost-load-test", key))
                .into_iter()
                .collect();
            let fresh = CloudClient::with_headers(api_url, &headers)?;
            fresh.login(&CloudClient::new_device_id()).await?;
            *api = Some(fresh);
        }
        let api = api
            .as_ref()
            .ok_or(outpost_client::CloudError::NotLoggedIn)?;
        api.matchmake(client, mode, None, wait).await
    })
    .await
    .map_err(|_| ErrorKind::Matchmaking)?
    .map_err(|err| {
        tracing::debug!(player = n, %err, "matchmaking failed");
        ErrorKind::Matchmaking
    })?;
    config
        .check_host(found.assignment.edge_addr.ip())
        .map_err(|_| ErrorKind::RefusedTarget)?;
    Ok(found.assignment)
}

fn connect_error(err: &ClientError) -> ErrorKind {
    match err {
        ClientError::Rejected { .. } => ErrorKind::Rejected,
        ClientError::Timeout => ErrorKind::ConnectTimeout,
        _ => ErrorKind::Connect,
    }
}

/// Plays player `n` until `until`, match after match on the full stack; everything it
/// sees goes to `recorder`.
pub(crate) async fn play(
    n: u32,
    join: Join,
    client: Arc<Client>,
    config: Arc<LoadConfig>,
    recorder: Arc<Recorder>,
    until: Instant,
) {
    let mut api = None;
    let mut matches = 0u32;
    loop {
        recorder.connect_attempt();
        let session = async {
            let assignment = assignment(n, &join, &mut api, &client, &config, until).await?;
            match tokio::time::timeout(CONNECT_TIMEOUT, client.connect(&assignment)).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err(err)) => {
                    tracing::debug!(player = n, %err, "join failed");
                    Err(connect_error(&err))
                }
                Err(_) => Err(ErrorKind::ConnectTimeout),
            }
        };
        let session = match session.await {
            Ok(session) => session,
            // Still searching again when the run ended: not a failure.
            Err(ErrorKind::Matchmaking) if matches > 0 && Instant::now() >= until => {
                recorder.requeue_cut_short();
                return;
            }
            Err(kind) => {
                recorder.connect_failed(kind);
                return;
            }
        };
        if !config.prediction {
            session.disable_prediction();
            session.disable_interpolation();
        }
        recorder.connected(session.welcome().match_id.0);
        matches += 1;
        let joined_at = std::time::Instant::now();
        let outcome = drive(n, &session, &config, &recorder, until).await;
        recorder.left(joined_at);
        match outcome {
            Ok(Ended::RunOver) => {
                recorder.finished(true);
                session.close().await;
                return;
            }
            Ok(Ended::MatchOver) => {
                recorder.match_ended();
                recorder.finished(false);
                if Instant::now() >= until {
                    return;
                }
            }
            Err(kind) => {
                recorder.error(kind);
                recorder.finished(false);
                return;
            }
        }
    }
}

/// A player's counters at its last sample, to turn totals into rates.
pub(crate) struct Last {
    at: Instant,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_datagrams: u64,
    tx_datagrams: u64,
    snapshots: u64,
}

/// What a sample reads of a player's match: its transport's and its netcode's figures.
pub(crate) struct Figures {
    pub stats: quinn::ConnectionStats,
    pub quic_rtt: Duration,
    pub input_rtt: Option<Duration>,
    pub jitter_ms: f64,
    pub snapshots: u64,
}

impl Last {
    /// The counters as a player starts playing.
    pub(crate) fn new(stats: &quinn::ConnectionStats) -> Self {
        Self {
            at: Instant::now(),
            rx_bytes: stats.udp_rx.bytes,
            tx_bytes: stats.udp_tx.bytes,
            rx_datagrams: stats.udp_rx.datagrams,
            tx_datagrams: stats.udp_tx.datagrams,
            snapshots: 0,
        }
    }

    /// What the player saw since the last sample; the counters move on to now.
    pub(crate) fn sample(&mut self, figures: &Figures) -> PlayerSample {
        let now = Instant::now();
        let stats = &figures.stats;
        let seconds = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let sample = PlayerSample {
            input_rtt_ms: figures.input_rtt.map(|d| d.as_secs_f64() * 1000.0),
            quic_rtt_ms: figures.quic_rtt.as_secs_f64() * 1000.0,
            jitter_ms: figures.jitter_ms,
            kbps_down: (stats.udp_rx.bytes - self.rx_bytes) as f64 * 8.0 / 1000.0 / seconds,
            kbps_up: (stats.udp_tx.bytes - self.tx_bytes) as f64 * 8.0 / 1000.0 / seconds,
            packets_down: (stats.udp_rx.datagrams - self.rx_datagrams) as f64 / seconds,
            packets_up: (stats.udp_tx.datagrams - self.tx_datagrams) as f64 / seconds,
            snapshots: figures.snapshots - self.snapshots,
        };
        *self = Self {
            at: now,
            rx_bytes: stats.udp_rx.bytes,
            tx_bytes: stats.udp_tx.bytes,
            rx_datagrams: stats.udp_rx.datagrams,
            tx_datagrams: stats.udp_tx.datagrams,
            snapshots: figures.snapshots,
        };
        sample
    }
}

fn figures(session: &Session) -> Figures {
    Figures {
        stats: session.connection().stats(),
        quic_rtt: session.rtt(),
        input_rtt: session.input_rtt(),
        jitter_ms: session.netcode_stats().jitter_ms,
        snapshots: session.stats().snapshots_received,
    }
}

/// A player's bot as it starts a match: the mode's scripted player (`None` if the mode
/// has none), the offset of its sends within the input period (spread so players do not
/// all send on the same instant), and the period.
pub(crate) fn brain(
    n: u32,
    config: &LoadConfig,
    match_config: &MatchConfig,
) -> (Option<Box<dyn outpost_sim::Bot>>, Duration, Duration) {
    let mut rng = SplitMix64::new(u64::from(n) ^ 0x5eed_0000_0000);
    let period = Duration::from_secs(1) / u32::from(config.input_hz);
    let offset = period.mul_f32(rng.range(0.0, 1.0));
    let brain = config
        .modes
        .get(&match_config.mode)
        .and_then(|mode| mode.bot(match_config, rng.next_u64()));
    (brain, offset, period)
}

/// A bot's input for turn `step` of a match: chosen by the mode's bot from what the seat
/// shows, standing for the ticks one input period covers.
pub(crate) fn turn(
    seat: &impl crate::bot::Seat,
    brain: &mut dyn outpost_sim::Bot,
    requests: &mut crate::bot::Requests,
    config: &LoadConfig,
    step: u32,
) -> Option<InputRecord> {
    let mut input = crate::bot::choose(seat, brain, requests)?;
    input.ticks = input_ticks(
        config.match_config.tick_hz,
        config.input_hz,
        u64::from(step),
    );
    Some(input)
}

/// The bot: wanders in straight runs, turns toward the nearest player it sees and shoots
/// when close, jumps now and then. Aims from the newest snapshot (no interpolation: a
/// load generator spends its CPU on sessions, not rendering).
async fn drive(
    n: u32,
    session: &Session,
    config: &LoadConfig,
    recorder: &Recorder,
    until: Instant,
) -> Result<Ended, ErrorKind> {
    // The mode's scripted player chooses the inputs (checked to exist before the run).
    let (brain, offset, period) = brain(n, config, &session.welcome().config);
    let Some(mut brain) = brain else {
        return Err(ErrorKind::Rejected);
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let sample_every = u32::from(config.input_hz);
    let mut last = Last::new(&session.connection().stats());
    let mut step = 0u32;
    let mut requests = crate::bot::Requests::default();
    // One timer for the end, not a new one every tick.
    let end = tokio::time::sleep_until(until);
    tokio::pin!(end);
    loop {
        tokio::select! {
            () = &mut end => return Ok(Ended::RunOver),
            _ = ticks.tick() => {}
        }
        match session.goodbye() {
            Some(GoodbyeReason::MatchOver) => return Ok(Ended::MatchOver),
            Some(_) => return Err(ErrorKind::Kicked),
            None => {}
        }
        if session.is_closed() {
            return Err(ErrorKind::Disconnected);
        }
        step += 1;
        if step.is_multiple_of(sample_every) {
            recorder.sample(last.sample(&figures(session)));
        }
        let Some(input) = turn(session, brain.as_mut(), &mut requests, config, step) else {
            continue;
        };
        if session.send_input(input).is_err() {
            return Err(ErrorKind::Disconnected);
        }
    }
}
