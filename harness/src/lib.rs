//! # outpost-harness
//!
//! One match host and N clients in one process, on a virtual clock, through seeded link
//! conditioners: the edge's pure [`MatchHost`] and the SDK's pure [`MatchConnection`],
//! with the wire between them simulated — datagrams meet each client's
//! [`LinkConfig`] (latency, jitter, loss, bursts, duplication, reordering), reliable
//! control messages arrive in order after the link's latency. Nothing sleeps and nothing
//! reads the clock: a test advances time and the same seed gives the same run, bit for
//! bit.
//!
//! Modelled on quinn-proto's `Pair` and lightyear's stepper. What it is not: a test of
//! QUIC, TLS, admission or the tokio shells around host and connection — the end-to-end
//! tests over loopback cover those.
//!
//! ```
//! use std::time::Duration;
//! use outpost_harness::Harness;
//! use outpost_protocol::link::LinkConfig;
//! use outpost_arena::{ArenaConfig, PlayerInput};
//!
//! let config = outpost_arena::config(&ArenaConfig { props: 0, ..ArenaConfig::default() });
//! let mut h = Harness::new(&config, 7, outpost_arena::modes());
//! let me = h.join(1, LinkConfig::good()).expect("seated");
//! for _ in 0..60 {
//!     h.send_input(me, PlayerInput { move_z: 127, ..PlayerInput::default() });
//!     h.tick();
//! }
//! h.advance(Duration::from_millis(200));
//! assert!(h.client(me).stats().snapshots_received > 20);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_client::{ControlFlow, MatchConnection};
use outpost_edge::host::{FinishedMatch, HostSettings, MatchHost, Transmit};
use outpost_edge::snapshot::Interest;
use outpost_edge::{EdgeMetrics, InputMailbox};
use outpost_protocol::link::{Conditioner, LinkConfig};
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{
    Control, Datagram, GoodbyeReason, MatchConfig, MatchId, PROTOCOL_VERSION, PlayerId, Pong,
    RejectCode, Welcome, codec,
};
use outpost_sim::Modes;

/// A client's index in its harness.
pub type ClientId = usize;

/// The datagram size every simulated connection allows.
pub const MAX_DATAGRAM: usize = 1200;

/// What crossed the simulated wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Datagrams sent, either way.
    pub datagrams_sent: u64,
    /// Datagrams the links lost.
    pub datagrams_lost: u64,
    /// Datagram copies delivered (duplicates included).
    pub datagrams_delivered: u64,
    /// Snapshot bytes delivered to clients.
    pub snapshot_bytes: u64,
    /// Input frames the edge's per-seat mailbox dropped (more than it holds per tick).
    pub mailbox_dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToHost,
    ToClient,
}

#[derive(Debug)]
enum Payload {
    Datagram(Bytes),
    Control(Control),
}

#[derive(Debug)]
struct Packet {
    client: ClientId,
    session: u64,
    direction: Direction,
    payload: Payload,
}

struct Client {
    player: PlayerId,
    team: u8,
    /// The session the client's connection belongs to.
    session: u64,
    /// Whether the host still seats that session (not released, not disconnected).
    seated: bool,
    connection: MatchConnection,
    link: LinkConfig,
    up: Conditioner,
    down: Conditioner,
    mailbox: InputMailbox,
    /// When the newest reliable message each way arrives: the stream keeps order.
    control_up_at: Instant,
    control_down_at: Instant,
    /// Whether the control stream to the client has ended (goodbye or violation).
    control_ended: bool,
}

/// One match host and its clients on a virtual clock.
pub struct Harness {
    now: Instant,
    config: MatchConfig,
    host: MatchHost,
    clients: Vec<Client>,
    /// Packets in flight by arrival time (and send order, for ties).
    wire: BTreeMap<(Instant, u64), Packet>,
    sent: u64,
    next_session: u64,
    seeds: SplitMix64,
    /// The host runs no tick before this (an overloaded moment).
    stalled_until: Instant,
    finished: Option<FinishedMatch>,
    stats: WireStats,
    metrics: Arc<EdgeMetrics>,
    /// The modes the clients link, to predict with (the host's).
    modes: Modes,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("host", &self.host)
            .field("clients", &self.clients.len())
            .field("in_flight", &self.wire.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Harness {
    /// The settings an edge runs with by default, but with a 5 s reconnect grace, hosting
    /// `modes` (which the clients also link, to predict with).
    pub fn default_settings(modes: Modes) -> HostSettings {
        HostSettings {
            reconnect_grace: Duration::from_secs(5),
            interest: Interest::default(),
            bandwidth_bps: 96_000,
            max_replay_bytes: Some(8 << 20),
            modes,
        }
    }

    /// A match on `config`, one of `modes`; `seed` seeds every link.
    pub fn new(config: &MatchConfig, seed: u64, modes: Modes) -> Self {
        Self::with_settings(config, seed, Self::default_settings(modes))
    }

    /// A match on `config`, hosted with `settings`.
    pub fn with_settings(config: &MatchConfig, seed: u64, settings: HostSettings) -> Self {
        // Any instant serves as the origin: time moves only when the test moves it.
        let now = Instant::now();
        let metrics = Arc::new(EdgeMetrics::new());
        let modes = settings.modes.clone();
        let host = MatchHost::new(MatchId(1), config, now, 0, settings, metrics.clone())
            .map_err(|code| code.as_str())
            .expect("a valid match config");
        Self {
            now,
            config: config.clone(),
            host,
            clients: Vec::new(),
            wire: BTreeMap::new(),
            sent: 0,
            next_session: 1,
            seeds: SplitMix64::new(seed),
            stalled_until: now,
            finished: None,
            stats: WireStats::default(),
            metrics,
            modes,
        }
    }

    /// A client's connection from the host's Welcome, predicting with the mode the
    /// clients link (the host's).
    fn connection(&self, welcome: Welcome) -> MatchConnection {
        let mut connection =
            MatchConnection::new(welcome, self.now).expect("the host's Welcome verifies");
        if let Some(mode) = self.modes.get(&self.config.mode) {
            connection.predict(mode.as_ref());
        }
        connection
    }

    /// Now, on the virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The host.
    pub fn host(&self) -> &MatchHost {
        &self.host
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }

    /// A client's connection.
    pub fn client(&self, id: ClientId) -> &MatchConnection {
        &self.clients[id].connection
    }

    /// A client's connection, to read what needs `&mut` (prediction, interpolation,
    /// events).
    pub fn client_mut(&mut self, id: ClientId) -> &mut MatchConnection {
        &mut self.clients[id].connection
    }

    /// Whether the host still seats the client's session.
    pub fn is_seated(&self, id: ClientId) -> bool {
        self.clients[id].seated
    }

    /// Whether the client's control stream has ended (it got a goodbye).
    pub fn control_ended(&self, id: ClientId) -> bool {
        self.clients[id].control_ended
    }

    /// The match's record, once it has ended.
    pub fn finished(&self) -> Option<&FinishedMatch> {
        self.finished.as_ref()
    }

    /// What crossed the wire so far.
    pub fn wire_stats(&self) -> WireStats {
        self.stats
    }

    /// Seats `player` (on team 0), whose link to the edge behaves as `link` both ways.
    pub fn join(&mut self, player: u64, link: LinkConfig) -> Result<ClientId, RejectCode> {
        self.join_team(player, 0, link)
    }

    /// Seats `player` on `team` (as matchmaking would), whose link to the edge behaves
    /// as `link` both ways.
    pub fn join_team(
        &mut self,
        player: u64,
        team: u8,
        link: LinkConfig,
    ) -> Result<ClientId, RejectCode> {
        let session = self.next_session;
        let player = PlayerId(player);
        let welcome = self.seat(player, team, session)?;
        let up = Conditioner::new(link, self.seeds.next_u64());
        let down = Conditioner::new(link, self.seeds.next_u64());
        self.next_session += 1;
        let connection = self.connection(welcome);
        self.clients.push(Client {
            player,
            team,
            session,
            seated: true,
            connection,
            link,
            up,
            down,
            mailbox: InputMailbox::default(),
            control_up_at: self.now,
            control_down_at: self.now,
            control_ended: false,
        });
        Ok(self.clients.len() - 1)
    }

    fn seat(&mut self, player: PlayerId, team: u8, session: u64) -> Result<Welcome, RejectCode> {
        let joined = self
            .host
            .join(player, team, &self.config, session, MAX_DATAGRAM)?;
        self.route();
        Ok(Welcome {
            protocol_version: PROTOCOL_VERSION,
            match_id: self.host.id(),
            player_id: player,
            entity: joined.entity,
            tick: joined.tick,
            config: joined.config,
            schema: joined.schema,
            reconnect_key: [0; 16],
            players: joined.players,
        })
    }

    /// The client's link drops (no goodbye): the host keeps its seat for the grace.
    pub fn disconnect(&mut self, id: ClientId) {
        let client = &mut self.clients[id];
        if client.seated {
            client.seated = false;
            let (player, session) = (client.player, client.session);
            self.host.leave(player, session, self.now);
        }
    }

    /// The client comes back on a new connection (a reconnect within the grace gets its
    /// seat back); its connection state starts afresh.
    pub fn reconnect(&mut self, id: ClientId) -> Result<(), RejectCode> {
        let session = self.next_session;
        self.next_session += 1;
        let client = &self.clients[id];
        let welcome = self.seat(client.player, client.team, session)?;
        let connection = self.connection(welcome);
        let client = &mut self.clients[id];
        client.session = session;
        client.seated = true;
        client.control_ended = false;
        client.connection = connection;
        client.mailbox = InputMailbox::default();
        Ok(())
    }

    /// Sends an input from a client; returns its sequence number.
    pub fn send_input(&mut self, id: ClientId, input: impl outpost_sim::IntoInput) -> u32 {
        let now = self.now;
        let (seq, bytes) = self.clients[id]
            .connection
            .send_input(input, now)
            .expect("an input frame encodes");
        self.datagram(id, Direction::ToHost, bytes);
        seq
    }

    /// Sends a request of the mode's schema from a client (see
    /// [`MatchConnection::request`]); returns its number, which its answer echoes
    /// ([`MatchConnection::poll_answer`] on [`Harness::client_mut`]).
    pub fn send_request(
        &mut self,
        id: ClientId,
        name: &str,
        values: &[outpost_protocol::schema::Value],
        lists: &[&[Vec<outpost_protocol::schema::Value>]],
    ) -> Result<u32, outpost_client::ClientError> {
        let (seq, message) = self.clients[id].connection.request(name, values, lists)?;
        self.control(id, Direction::ToHost, message);
        Ok(seq)
    }

    /// Sends a control message as a client, unchecked (a hand-made request, say).
    pub fn send_raw_control(&mut self, id: ClientId, message: Control) {
        self.control(id, Direction::ToHost, message);
    }

    /// Sends a datagram of raw bytes from a client to the edge.
    pub fn send_raw_datagram(&mut self, id: ClientId, bytes: Vec<u8>) {
        self.datagram(id, Direction::ToHost, Bytes::from(bytes));
    }

    /// Sends a clock ping from a client; the edge answers it as an edge does.
    pub fn ping(&mut self, id: ClientId) {
        let ping = self.clients[id].connection.ping(self.now);
        self.control(id, Direction::ToHost, ping);
    }

    /// Makes the host run no tick for `by` (an overloaded edge): ticks due meanwhile are
    /// caught up a few at a time or missed, as on a real edge.
    pub fn stall(&mut self, by: Duration) {
        self.stalled_until = self.now + by;
    }

    /// Advances the clock by `by`, delivering packets and running ticks as they fall due.
    pub fn advance(&mut self, by: Duration) {
        self.advance_to(self.now + by);
    }

    /// Advances to the host's next tick, and runs it. Does nothing once the match is over.
    pub fn tick(&mut self) {
        if self.finished.is_none() {
            let at = self.next_tick_at();
            self.advance_to(at);
        }
    }

    /// Runs `ticks` ticks, calling `before_each` before each (to send inputs).
    pub fn run_ticks(&mut self, ticks: u32, mut before_each: impl FnMut(&mut Self)) {
        for _ in 0..ticks {
            before_each(self);
            self.tick();
        }
    }

    fn next_tick_at(&self) -> Instant {
        self.host.next_tick_at().max(self.stalled_until)
    }

    /// Advances the clock to `t`.
    pub fn advance_to(&mut self, t: Instant) {
        loop {
            let packet_at = self.wire.first_key_value().map(|(key, _)| key.0);
            let tick_at = self.finished.is_none().then(|| self.next_tick_at());
            match (packet_at, tick_at) {
                (Some(p), tick) if p <= t && tick.is_none_or(|k| p <= k) => {
                    self.now = self.now.max(p);
                    if let Some((_, packet)) = self.wire.pop_first() {
                        self.deliver(packet);
                    }
                }
                (_, Some(k)) if k <= t => {
                    self.now = self.now.max(k);
                    self.run_host();
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
    }

    fn run_host(&mut self) {
        let mut frames = Vec::new();
        for client in &self.clients {
            if !client.seated {
                continue;
            }
            frames.clear();
            client.mailbox.take(&mut frames);
            for frame in &frames {
                self.host.input(client.player, client.session, frame);
            }
            for request in client.mailbox.take_requests() {
                self.host.request(client.player, client.session, request);
            }
        }
        self.host.run_due(self.now);
        if self.host.is_over() {
            self.finished = Some(self.host.close());
        }
        self.route();
    }

    fn route(&mut self) {
        while let Some(transmit) = self.host.poll_transmit() {
            match transmit {
                Transmit::Datagram { session, bytes } => {
                    if let Some(id) = self.by_session(session) {
                        self.datagram(id, Direction::ToClient, bytes);
                    }
                }
                Transmit::Control { session, message } => {
                    if let Some(id) = self.by_session(session) {
                        self.control(id, Direction::ToClient, message);
                    }
                }
                Transmit::Release { session } => {
                    if let Some(id) = self.by_session(session) {
                        self.clients[id].seated = false;
                    }
                }
            }
        }
    }

    fn by_session(&self, session: u64) -> Option<ClientId> {
        self.clients.iter().position(|c| c.session == session)
    }

    fn datagram(&mut self, id: ClientId, direction: Direction, bytes: Bytes) {
        self.stats.datagrams_sent += 1;
        let client = &mut self.clients[id];
        let fates = match direction {
            Direction::ToHost => client.up.fate(),
            Direction::ToClient => client.down.fate(),
        };
        if fates.is_empty() {
            self.stats.datagrams_lost += 1;
        }
        for delay in fates {
            self.put(
                self.now + delay,
                id,
                direction,
                Payload::Datagram(bytes.clone()),
            );
        }
    }

    fn control(&mut self, id: ClientId, direction: Direction, message: Control) {
        let client = &mut self.clients[id];
        // A stream never reorders and never loses: each message arrives after the
        // link's latency, and no sooner than the one before it.
        let at = self.now + client.link.latency;
        let slot = match direction {
            Direction::ToHost => &mut client.control_up_at,
            Direction::ToClient => &mut client.control_down_at,
        };
        *slot = (*slot).max(at);
        let at = *slot;
        self.put(at, id, direction, Payload::Control(message));
    }

    /// Puts a packet on the wire from or to client `id`'s current connection.
    fn put(&mut self, at: Instant, id: ClientId, direction: Direction, payload: Payload) {
        self.sent += 1;
        let packet = Packet {
            client: id,
            session: self.clients[id].session,
            direction,
            payload,
        };
        self.wire.insert((at, self.sent), packet);
    }

    fn deliver(&mut self, packet: Packet) {
        let now = self.now;
        let client = &mut self.clients[packet.client];
        // What was in flight for an earlier connection of this client is gone with it.
        if packet.session != client.session {
            return;
        }
        match (packet.direction, packet.payload) {
            (Direction::ToHost, Payload::Datagram(bytes)) => {
                self.stats.datagrams_delivered += 1;
                if let Ok(Datagram::Input(frame)) = codec::decode_datagram(&bytes)
                    && client.seated
                    && client.mailbox.put(frame)
                {
                    self.stats.mailbox_dropped += 1;
                }
            }
            (Direction::ToHost, Payload::Control(message)) => match message {
                Control::Ping(ping) => {
                    let pong = Control::Pong(Pong {
                        client_time_us: ping.client_time_us,
                        server_tick: self.host.tick(),
                    });
                    self.control(packet.client, Direction::ToClient, pong);
                }
                Control::Goodbye(GoodbyeReason::Quit) => self.disconnect(packet.client),
                Control::Request(request) if client.seated => {
                    // As an edge's connection does: a full mailbox answers busy at once.
                    if let Err(request) = client.mailbox.put_request(request) {
                        let busy = Control::Answer(outpost_protocol::Answer {
                            seq: request.seq,
                            refused: Some(outpost_protocol::Refusal::new(
                                outpost_protocol::RefusalCode::Busy,
                                "too many requests waiting for the next tick",
                            )),
                        });
                        self.control(packet.client, Direction::ToClient, busy);
                    }
                }
                _ => {}
            },
            (Direction::ToClient, Payload::Datagram(bytes)) => {
                self.stats.datagrams_delivered += 1;
                self.stats.snapshot_bytes += bytes.len() as u64;
                client.connection.on_datagram(&bytes, now);
            }
            (Direction::ToClient, Payload::Control(message)) => {
                if !client.control_ended
                    && client.connection.on_control(message, now) == ControlFlow::End
                {
                    client.control_ended = true;
                }
            }
        }
    }
}
