//! # outpost-loadtest
//!
//! The load-testing harness behind `outpost loadtest`: N simulated players, each a
//! client-SDK netcode connection playing like a bot (moving, turning toward the nearest opponent,
//! shooting, jumping), joining matches of a given size at a given ramp-up rate, for a
//! given time. Two ways in:
//!
//! - [`Target::Edge`]: straight to one edge, with connect tokens minted by the harness
//!   from a dev key the edge trusts (one signature per match, as the cloud does); these
//!   players play over the harness's own transport, a task per UDP socket driving
//!   quinn-proto connections (`swarm`);
//! - [`Target::Stack`]: the full stack, each player logging in and matchmaking through
//!   the cloud API (or an edge's gateway in front of it), then joining where it is sent.
//!
//! Every run is bounded: at most [`MAX_PLAYERS`] players and [`MAX_DURATION`], it stops
//! by itself, and it talks only to loopback unless a host is named
//! ([`LoadConfig::allowed_host`]). While it runs it records, every second, what players
//! see (input-to-acknowledgement round trip, snapshot jitter, bandwidth each way,
//! connects and errors by kind) and what the edge reports on its Prometheus `/metrics`
//! (tick time quantiles, missed ticks). [`run`] returns a [`Report`]; [`report`] writes it
//! as JSON and as a self-contained HTML page of plots.

pub mod bot;
pub mod flood;
mod player;
mod recorder;
pub mod report;
pub mod scrape;
mod swarm;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use outpost_client::link::LinkRelay;
use outpost_client::{Assignment, Client, Trust};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::{ConnectToken, MatchConfig, MatchId, PlayerId, SignedToken, TokenSigner};
use tokio_util::sync::CancellationToken;

pub use recorder::Second;
pub use report::Report;

/// Most players one run may simulate.
pub const MAX_PLAYERS: u32 = 10_000;
/// Longest a run may hold its players.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How long joining may take a player before it counts as a failed connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the run waits for players to say goodbye after the end.
const WIND_DOWN: Duration = Duration::from_secs(10);
/// Players sharing one client endpoint (UDP socket); more endpoints spread the
/// load generator's receive work over its threads.
const PLAYERS_PER_ENDPOINT: u32 = 32;

/// Where the players go.
#[derive(Clone)]
pub enum Target {
    /// One edge, joined with tokens signed by `signer` (the edge must trust its public
    /// key).
    Edge {
        /// The edge's QUIC address.
        addr: SocketAddr,
        /// The edge's certificate fingerprint (SHA-256 of its DER).
        fingerprint: [u8; 32],
        /// The edge's id, as tokens name it.
        edge_id: String,
        /// Dev key the edge trusts for connect tokens.
        signer: Arc<TokenSigner>,
    },
    /// The full stack: log in and matchmake through `api_url`, join where sent; a
    /// player whose match ends queues again, as a real one does.
    Stack {
        /// Base URL of the cloud API or of an edge's gateway in front of it.
        api_url: String,
        /// Game mode to matchmake in.
        mode: String,
        /// The gateway's load-test key (`X-Outpost-Load-Test`), which lets the run's
        /// players — all from one address — past its per-address limits.
        load_test_key: Option<String>,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Edge { addr, edge_id, .. } => f
                .debug_struct("Edge")
                .field("addr", addr)
                .field("edge_id", edge_id)
                .finish_non_exhaustive(),
            Self::Stack {
                api_url,
                mode,
                load_test_key,
            } => f
                .debug_struct("Stack")
                .field("api_url", api_url)
                .field("mode", mode)
                .field("load_test_key", &load_test_key.as_ref().map(|_| "…"))
                .finish(),
        }
    }
}

/// One load test.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where the players go.
    pub target: Target,
    /// Players to simulate (1..=[`MAX_PLAYERS`]).
    pub players: u32,
    /// Players per match (with [`Target::Edge`]; the stack's mode decides otherwise).
    pub match_size: u16,
    /// How long every player stays once all have joined (at most [`MAX_DURATION`]).
    pub duration: Duration,
    /// New players per second during the ramp-up.
    pub ramp_per_s: u32,
    /// Match settings for [`Target::Edge`] (mode, tick and snapshot rates); its
    /// `max_players` and `duration_s` are set from the run.
    pub match_config: MatchConfig,
    /// Inputs each player sends per second (at most the tick rate).
    pub input_hz: u16,
    /// Link conditions between every player and the edge (through a relay per
    /// endpoint); `None` for the plain loopback.
    pub link: Option<LinkConfig>,
    /// Whether players predict their own character and interpolate the others, as a
    /// game client does (costs load-generator CPU; off, they aim from the newest snapshot).
    pub prediction: bool,
    /// The game modes the players link: a match of one of them is predicted with the
    /// mode's prediction (any other is played from its schema alone).
    pub modes: outpost_sim::Modes,
    /// The edge's Prometheus `/metrics` URL, scraped every second for tick times.
    pub metrics_url: Option<String>,
    /// A non-loopback host the run may target; without it only loopback is allowed.
    pub allowed_host: Option<IpAddr>,
    /// Draw a live progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// A run that is not allowed or makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Players outside 1..=MAX_PLAYERS.
    #[error("--players must be between 1 and {MAX_PLAYERS} (got {0})")]
    Players(u32),
    /// No time, or too long.
    #[error("--duration must be more than 0 and at most {limit}s (got {0:?})", limit = MAX_DURATION.as_secs())]
    Duration(Duration),
    /// A zero ramp never starts anybody.
    #[error("--ramp must be at least 1 player per second")]
    Ramp,
    /// Match size out of range.
    #[error("--match-size must be between 1 and 128 (got {0})")]
    MatchSize(u16),
    /// Input rate out of range.
    #[error(
        "--input-hz must be between an eighth of the tick rate and the tick rate {tick_hz} (got {input_hz})"
    )]
    InputRate {
        /// Asked.
        input_hz: u16,
        /// The match's tick rate.
        tick_hz: u16,
    },
    /// The mode has no bot among the players' modes.
    #[error("the players have no bot for the mode `{0}` (is it registered?)")]
    NoBot(String),
    /// Match settings the edge would refuse.
    #[error("match settings: {0}")]
    Match(String),
    /// A host that is not loopback and was not named.
    #[error(
        "refusing to load {0}: it is not a loopback address; name it with --host {0} to confirm"
    )]
    NotLoopback(String),
    /// A URL that cannot be understood.
    #[error("cannot understand URL {0}")]
    Url(String),
}

impl LoadConfig {
    /// A ten-second run of `players` at `target` in arena matches of 16 with the arena's
    /// default settings: 30 Hz inputs, 100 joins a second, a perfect link, no prediction,
    /// no metrics, no progress lines. Change the fields for other runs.
    pub fn arena(target: Target, players: u32) -> Self {
        Self {
            target,
            players,
            match_size: 16,
            duration: Duration::from_secs(10),
            ramp_per_s: 100,
            match_config: outpost_arena::config(&outpost_arena::ArenaConfig::default()),
            input_hz: 30,
            link: None,
            prediction: false,
            modes: outpost_arena::modes(),
            metrics_url: None,
            allowed_host: None,
            progress: false,
        }
    }

    /// Checks the run is bounded and aimed where allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.players == 0 || self.players > MAX_PLAYERS {
            return Err(ConfigError::Players(self.players));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(ConfigError::Duration(self.duration));
        }
        if self.ramp_per_s == 0 {
            return Err(ConfigError::Ramp);
        }
        if self.match_size == 0 || self.match_size > 128 {
            return Err(ConfigError::MatchSize(self.match_size));
        }
        let tick_hz = self.match_config.tick_hz;
        let slowest = tick_hz.div_ceil(u16::from(outpost_protocol::MAX_INPUT_TICKS));
        if self.input_hz < slowest.max(1) || self.input_hz > tick_hz {
            return Err(ConfigError::InputRate {
                input_hz: self.input_hz,
                tick_hz,
            });
        }
        self.edge_match_config()
            .validate()
            .map_err(|e| ConfigError::Match(e.to_string()))?;
        let mode = &self.match_config.mode;
        if self
            .modes
            .get(mode)
            .and_then(|m| m.bot(&self.match_config, 0))
            .is_none()
        {
            return Err(ConfigError::NoBot(mode.clone()));
        }
        match &self.target {
            Target::Edge { addr, .. } => self.check_host(addr.ip())?,
            Target::Stack { api_url, .. } => self.check_url(api_url)?,
        }
        if let Some(url) = &self.metrics_url {
            self.check_url(url)?;
        }
        Ok(())
    }

    /// Whether the run may send to `ip`.
    pub fn check_host(&self, ip: IpAddr) -> Result<(), ConfigError> {
        if ip.is_loopback() || self.allowed_host == Some(ip) {
            Ok(())
        } else {
            Err(ConfigError::NotLoopback(ip.to_string()))
        }
    }

    fn check_url(&self, url: &str) -> Result<(), ConfigError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ConfigError::Url(url.to_owned()))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| ConfigError::Url(url.to_owned()))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check_host(ip),
            Err(_) if bare == "localhost" => Ok(()),
            // A named host is checked once resolved, by address.
            Err(_) if self.allowed_host.is_some() => Ok(()),
            Err(_) => Err(ConfigError::NotLoopback(bare.to_owned())),
        }
    }

    /// Time from the first player to the last joining.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.players) / f64::from(self.ramp_per_s))
    }

    /// The longest a run can last: ramp, hold, connect time of the last player, wind-down.
    pub fn time_bound(&self) -> Duration {
        self.ramp_time() + self.duration + CONNECT_TIMEOUT + WIND_DOWN
    }

    /// The settings of the matches the harness asks an edge for: long enough to outlast
    /// the run (`match_config`'s mode settings should end them by time only).
    pub fn edge_match_config(&self) -> MatchConfig {
        MatchConfig {
            max_players: self.match_size,
            duration_s: (self.time_bound().as_secs() as u32 + 30).max(5),
            ..self.match_config.clone()
        }
    }

    /// Matches the harness opens on the edge.
    pub fn matches(&self) -> u32 {
        self.players.div_ceil(u32::from(self.match_size.max(1)))
    }
}

/// Why a player failed, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    /// Login or matchmaking through the API failed.
    Matchmaking,
    /// The edge refused the token or the seat.
    Rejected,
    /// No answer in time while joining.
    ConnectTimeout,
    /// Joining failed otherwise (TLS, transport, protocol).
    Connect,
    /// The connection dropped while playing.
    Disconnected,
    /// The edge ended the session while playing (a goodbye before the end).
    Kicked,
    /// The matchmaker sent a player somewhere the run may not go.
    RefusedTarget,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Matchmaking => "matchmaking",
            Self::Rejected => "rejected",
            Self::ConnectTimeout => "connect_timeout",
            Self::Connect => "connect",
            Self::Disconnected => "disconnected",
            Self::Kicked => "kicked",
            Self::RefusedTarget => "refused_target",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Connect tokens for every player of a [`Target::Edge`] run, one signature per match.
fn mint_tokens(
    config: &LoadConfig,
    edge_id: &str,
    signer: &TokenSigner,
) -> anyhow::Result<Vec<SignedToken>> {
    let match_config = config.edge_match_config();
    // Fresh ids each run, so runs against a long-lived edge never meet old matches.
    let base: u64 = rand::random::<u64>() >> 24;
    let player_base: u64 = rand::random::<u64>() >> 24;
    let issued = now_ms();
    let expires = issued + config.time_bound().as_millis() as u64 + 60_000;
    let size = u32::from(config.match_size);
    let mut tokens = Vec::with_capacity(config.players as usize);
    for m in 0..config.matches() {
        let first = m * size;
        // Seats alternate between two teams, as a two-team matchmaker balances them (a
        // free-for-all mode seats everyone alike whatever the team).
        let seats: Vec<(PlayerId, u8, [u8; 16])> = (first..(first + size).min(config.players))
            .map(|p| {
                let team = ((p - first) % 2) as u8;
                (PlayerId(player_base + u64::from(p)), team, rand::random())
            })
            .collect();
        let terms = ConnectToken {
            player_id: seats[0].0,
            match_id: MatchId(base + u64::from(m)),
            team: 0,
            edge_id: edge_id.to_owned(),
            config: match_config.clone(),
            issued_at_ms: issued,
            expires_at_ms: expires,
            nonce: [0; 16],
        };
        tokens.extend(
            signer
                .sign_match(&terms, &seats)
                .map_err(|e| anyhow::anyhow!("signing match {m}: {e}"))?,
        );
    }
    Ok(tokens)
}

/// Runs a load test to its end and reports. Errors only when the run cannot start
/// (bad settings, no socket); what goes wrong for players is counted in the report.
pub async fn run(config: LoadConfig) -> anyhow::Result<Report> {
    config.validate()?;
    let config = Arc::new(config);
    let endpoints = config.players.div_ceil(PLAYERS_PER_ENDPOINT) as usize;
    let bind: SocketAddr = match &config.target {
        Target::Edge { addr, .. } if addr.is_ipv6() => "[::]:0".parse()?,
        Target::Edge { addr, .. } if addr.ip().is_loopback() => "127.0.0.1:0".parse()?,
        _ => "0.0.0.0:0".parse()?,
    };
    // The full stack's players play through the SDK's sessions; players joined with
    // tokens through the load generator's own transport (`swarm`), a task per socket.
    let mut clients = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..endpoints {
        match config.target {
            Target::Stack { .. } => clients.push(Arc::new(
                Client::bind(bind)
                    .context("opening a client endpoint")?
                    .with_modes(config.modes.clone()),
            )),
            Target::Edge { .. } => {
                sockets.push(std::net::UdpSocket::bind(bind).context("opening a client socket")?)
            }
        }
    }
    // With a link preset, each endpoint's players reach the edge through its own relay.
    let mut relays = Vec::new();
    if let (Some(link), Target::Edge { addr, .. }) = (config.link, &config.target) {
        for _ in 0..endpoints {
            relays.push(LinkRelay::symmetric(*addr, link, rand::random()).await?);
        }
    }
    let tokens = match &config.target {
        Target::Edge {
            edge_id, signer, ..
        } => mint_tokens(&config, edge_id, signer)?,
        Target::Stack { .. } => Vec::new(),
    };

    let recorder = Arc::new(recorder::Recorder::new(config.players, config.match_size));
    let stop = CancellationToken::new();
    let hold_started = Arc::new(tokio::sync::Notify::new());
    let scraper = config.metrics_url.clone().map(|url| {
        tokio::spawn(scrape::watch(
            url,
            recorder.clone(),
            stop.clone(),
            Duration::from_secs(1),
            hold_started.clone(),
        ))
    });
    let collector = tokio::spawn(recorder::collect(recorder.clone(), stop.clone()));
    let progress = config
        .progress
        .then(|| tokio::spawn(recorder::progress(recorder.clone(), stop.clone())));

    let started = Instant::now();
    let hold_until = tokio::time::Instant::now() + config.ramp_time() + config.duration;
    let mut players = Vec::with_capacity(config.players as usize);
    let gap = Duration::from_secs(1) / config.ramp_per_s;
    let first = tokio::time::Instant::now();
    let start_at = |n: u32| first + gap * n;
    match &config.target {
        Target::Edge {
            addr, fingerprint, ..
        } => {
            let mut seated: Vec<Vec<swarm::Seated>> = (0..endpoints).map(|_| Vec::new()).collect();
            for n in 0..config.players {
                let endpoint = n as usize % endpoints;
                seated[endpoint].push(swarm::Seated {
                    n,
                    assignment: Assignment {
                        edge_addr: relays.get(endpoint).map_or(*addr, LinkRelay::addr),
                        server_name: "localhost".into(),
                        trust: Trust::Pinned(*fingerprint),
                        connect_token: tokens[n as usize].clone(),
                    },
                    start_at: start_at(n).into_std(),
                });
            }
            for (socket, seated) in sockets.into_iter().zip(seated) {
                let (config, recorder) = (config.clone(), recorder.clone());
                players.push(tokio::spawn(async move {
                    if let Err(err) = swarm::run(socket, seated, config, recorder, hold_until).await
                    {
                        tracing::warn!(%err, "a load generator socket failed");
                    }
                }));
            }
            tokio::time::sleep_until(start_at(config.players.saturating_sub(1))).await;
        }
        Target::Stack {
            api_url,
            mode,
            load_test_key,
        } => {
            for n in 0..config.players {
                tokio::time::sleep_until(start_at(n)).await;
                let join = player::Join {
                    api_url: api_url.clone(),
                    mode: mode.clone(),
                    load_test_key: load_test_key.clone(),
                };
                players.push(tokio::spawn(player::play(
                    n,
                    join,
                    clients[n as usize % endpoints].clone(),
                    config.clone(),
                    recorder.clone(),
                    hold_until,
                )));
            }
        }
    }
    recorder.ramp_done(started.elapsed());
    hold_started.notify_one();
    tokio::time::sleep_until(hold_until).await;
    recorder.hold_done();
    // Players stop at `hold_until` by themselves; wait (bounded) for their goodbyes.
    let _ = tokio::time::timeout(WIND_DOWN + CONNECT_TIMEOUT, async {
        for player in &mut players {
            let _ = player.await;
        }
    })
    .await;
    for player in &players {
        player.abort();
    }
    // One last scrape so the end of the run is in the figures.
    stop.cancel();
    if let Some(scraper) = scraper {
        let _ = scraper.await;
    }
    let _ = collector.await;
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    drop(relays);
    Ok(recorder.report(&config, started.elapsed()))
}

/// Counts by kind, for the report.
pub(crate) type ErrorCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(target: Target) -> LoadConfig {
        LoadConfig::arena(target, 32)
    }

    fn edge(addr: &str) -> Target {
        Target::Edge {
            addr: addr.parse().expect("addr"),
            fingerprint: [0; 32],
            edge_id: "e".into(),
            signer: Arc::new(TokenSigner::from_seed(&[3; 32])),
        }
    }

    fn stack(url: &str) -> Target {
        Target::Stack {
            api_url: url.into(),
            mode: "arena".into(),
            load_test_key: None,
        }
    }

    #[test]
    fn loopback_is_allowed_and_other_hosts_only_when_named() {
        assert_eq!(config(edge("127.0.0.1:7777")).validate(), Ok(()));
        assert_eq!(config(edge("127.8.9.1:7777")).validate(), Ok(()));
        assert_eq!(config(edge("[::1]:7777")).validate(), Ok(()));
        assert_eq!(config(stack("http://localhost:8080")).validate(), Ok(()));
        assert_eq!(config(stack("http://[::1]:8080")).validate(), Ok(()));
        assert_eq!(
            config(edge("192.0.2.7:7777")).validate(),
            Err(ConfigError::NotLoopback("192.0.2.7".into()))
        );
        assert_eq!(
            config(stack("https://play.example.com")).validate(),
            Err(ConfigError::NotLoopback("play.example.com".into()))
        );
        let mut named = config(edge("192.0.2.7:7777"));
        named.allowed_host = Some("192.0.2.7".parse().expect("ip"));
        assert_eq!(named.validate(), Ok(()));
        // Naming one host does not open another.
        named.target = edge("192.0.2.8:7777");
        assert!(named.validate().is_err());
        // The metrics URL is held to the same rule.
        let mut metrics = config(edge("127.0.0.1:7777"));
        metrics.metrics_url = Some("http://198.51.100.1:7780/metrics".into());
        assert!(metrics.validate().is_err());
    }

    #[test]
    fn runs_are_bounded() {
        let ok = config(edge("127.0.0.1:7777"));
        type Spoil = fn(&mut LoadConfig);
        let cases: [(Spoil, ConfigError); 5] = [
            (|c| c.players = 0, ConfigError::Players(0)),
            (
                |c| c.players = MAX_PLAYERS + 1,
                ConfigError::Players(MAX_PLAYERS + 1),
            ),
            (
                |c| c.duration = Duration::ZERO,
                ConfigError::Duration(Duration::ZERO),
            ),
            (
                |c| c.duration = MAX_DURATION + Duration::from_secs(1),
                ConfigError::Duration(MAX_DURATION + Duration::from_secs(1)),
            ),
            (|c| c.ramp_per_s = 0, ConfigError::Ramp),
        ];
        for (spoil, expected) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            assert_eq!(c.validate(), Err(expected));
        }
        let mut fast_inputs = ok.clone();
        fast_inputs.input_hz = 61;
        assert!(matches!(
            fast_inputs.validate(),
            Err(ConfigError::InputRate { .. })
        ));
        // The whole run has a ceiling: ramp, hold, the last join and the wind-down.
        assert_eq!(ok.ramp_time(), Duration::from_millis(320));
        assert_eq!(
            ok.time_bound(),
            Duration::from_millis(320) + Duration::from_secs(10) + CONNECT_TIMEOUT + WIND_DOWN
        );
        // Matches outlast the run.
        let matches = ok.edge_match_config();
        assert!(u64::from(matches.duration_s) > ok.time_bound().as_secs());
        assert_eq!(matches.max_players, 16);
        assert_eq!(ok.matches(), 2);
    }

    #[test]
    fn tokens_seat_every_player_once_in_matches_of_the_asked_size() {
        let signer = TokenSigner::from_seed(&[5; 32]);
        let verifier = outpost_protocol::TokenVerifier::new(&signer.public_key()).expect("key");
        let mut c = config(edge("127.0.0.1:7777"));
        c.players = 40;
        let tokens = mint_tokens(&c, "e", &signer).expect("mints");
        assert_eq!(tokens.len(), 40);
        let mut per_match = BTreeMap::<u64, u32>::new();
        let mut players = std::collections::BTreeSet::new();
        for token in &tokens {
            let t = verifier.verify_signature(token).expect("valid token");
            *per_match.entry(t.match_id.0).or_default() += 1;
            assert!(players.insert(t.player_id), "one seat per player");
            assert_eq!(t.edge_id, "e");
        }
        assert_eq!(per_match.values().copied().collect::<Vec<_>>(), [16, 16, 8]);
    }
}
