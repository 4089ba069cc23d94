//! A connection to an edge: the handshake, then tasks that read snapshots and events
//! while the game sends inputs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use outpost_protocol::codec::{self, FRAME_HEADER_LEN};
use outpost_protocol::{
    Control, Datagram, EntityId, EntityState, GoodbyeReason, Hello, InputFrame, PROTOCOL_VERSION,
    Ping, PlayerInput, SignedToken, TickedEvent, Welcome,
};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::netcode::{ClockSync, Decoder, PredictedSelf, Prediction, Timeline, WorldState};
use crate::tls::client_config;
use crate::{Assignment, ClientError, Trust};

/// Most inputs in one datagram: the newest and every earlier one the edge has not yet
/// acknowledged, up to this many (133 ms of inputs at 60 Hz), so a burst of lost
/// datagrams loses no input.
pub const REDUNDANT_INPUTS: usize = outpost_protocol::MAX_INPUTS_PER_FRAME;
/// Events buffered for the game before the oldest unread ones are dropped.
const EVENT_QUEUE: usize = 1024;
/// Control messages queued for sending.
const CONTROL_QUEUE: usize = 64;

/// An endpoint for connecting to edges; one can serve many sessions.
pub struct Client {
    endpoint: quinn::Endpoint,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

impl Client {
    /// A client bound to an ephemeral IPv4 UDP port.
    pub fn new() -> Result<Self, ClientError> {
        Self::bind(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// A client bound to a given local address (use `[::]:0` for IPv6 edges).
    pub fn bind(addr: SocketAddr) -> Result<Self, ClientError> {
        let endpoint = quinn::Endpoint::client(addr)?;
        Ok(Self {
            endpoint,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
        })
    }

    /// Joins the match an assignment names.
    pub async fn connect(&self, assignment: &Assignment) -> Result<Session, ClientError> {
        self.open(assignment, None).await
    }

    /// Rejoins a match after a lost connection, within the edge's grace period, with the
    /// same assignment and the key from the first [`Welcome`].
    pub async fn reconnect(
        &self,
        assignment: &Assignment,
        reconnect_key: [u8; 16],
    ) -> Result<Session, ClientError> {
        self.open(assignment, Some(reconnect_key)).await
    }

    /// Sends a raw Hello and returns the bare connection, its control stream and the
    /// edge's first answer: for tests and tools that probe an edge's admission rules and
    /// its handling of bad input.
    pub async fn probe(
        &self,
        assignment: &Assignment,
        hello: &Hello,
    ) -> Result<Probe, ClientError> {
        let conn = self.connect_raw(assignment).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, &Control::Hello(hello.clone())).await?;
        let answer = timeout(self.handshake_timeout, read_frame(&mut recv))
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(Probe {
            conn,
            send,
            recv,
            answer,
        })
    }

    /// Round-trip time to an edge: a QUIC handshake, then the connection is closed.
    pub async fn measure_rtt(
        &self,
        addr: SocketAddr,
        fingerprint: [u8; 32],
    ) -> Result<Duration, ClientError> {
        let probe = Assignment {
            edge_addr: addr,
            server_name: "localhost".into(),
            trust: Trust::Pinned(fingerprint),
            connect_token: SignedToken {
                body: Vec::new(),
                signature: Vec::new(),
                seat: 0,
                secret: [0; 16],
            },
        };
        let conn = timeout(self.handshake_timeout, self.connect_raw(&probe))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let rtt = conn.rtt();
        conn.close(VarInt::from_u32(0), b"ping");
        Ok(rtt)
    }

    /// Opens a bare QUIC connection to the assignment's edge, with no Hello sent: for
    /// tools and tests that speak the protocol themselves.
    pub async fn connect_raw(&self, assignment: &Assignment) -> Result<Connection, ClientError> {
        let config = client_config(&assignment.trust, self.idle_timeout)?;
        let connecting =
            self.endpoint
                .connect_with(config, assignment.edge_addr, &assignment.server_name)?;
        Ok(timeout(self.handshake_timeout, connecting)
            .await
            .map_err(|_| ClientError::Timeout)??)
    }

    async fn open(
        &self,
        assignment: &Assignment,
        reconnect_key: Option<[u8; 16]>,
    ) -> Result<Session, ClientError> {
        let conn = self.connect_raw(assignment).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            connect_token: assignment.connect_token.clone(),
            reconnect_key,
        };
        write_frame(&mut send, &Control::Hello(hello)).await?;
        let answer = timeout(self.handshake_timeout, read_frame(&mut recv))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let welcome = match answer {
            Control::Welcome(welcome) => welcome,
            Control::Reject(reject) => {
                conn.close(VarInt::from_u32(0), b"rejected");
                return Err(ClientError::Rejected {
                    code: reject.code,
                    detail: reject.detail_text(),
                });
            }
            _ => return Err(ClientError::Protocol("expected Welcome or Reject")),
        };
        Ok(Session::start(conn, send, recv, welcome))
    }

    /// The local address the client's UDP socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, ClientError> {
        Ok(self.endpoint.local_addr()?)
    }
}

/// A bare connection after a Hello, from [`Client::probe`].
pub struct Probe {
    /// The connection.
    pub conn: Connection,
    /// The control stream, client to edge.
    pub send: SendStream,
    /// The control stream, edge to client.
    pub recv: RecvStream,
    /// The edge's answer to the Hello.
    pub answer: Control,
}

async fn write_frame(send: &mut SendStream, message: &Control) -> Result<(), ClientError> {
    let frame =
        codec::encode_frame(message).map_err(|_| ClientError::Protocol("message too large"))?;
    send.write_all(&frame)
        .await
        .map_err(|_| ClientError::Closed)
}

async fn read_frame(recv: &mut RecvStream) -> Result<Control, ClientError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(|_| ClientError::Closed)?;
    let len =
        codec::frame_len(header).map_err(|_| ClientError::Protocol("control frame too large"))?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload)
        .await
        .map_err(|_| ClientError::Closed)?;
    codec::decode_control(&payload).map_err(|_| ClientError::Protocol("malformed control message"))
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Snapshots received and decoded.
    pub snapshots_received: u64,
    /// Datagram bytes received.
    pub bytes_received: u64,
    /// Inputs sent (each once, however many times repeated for redundancy).
    pub inputs_sent: u64,
    /// Events received.
    pub events_received: u64,
    /// Events dropped because the game did not read them.
    pub events_dropped: u64,
    /// Datagrams from the edge that could not be used: malformed, or their baseline gone.
    pub datagrams_rejected: u64,
}

/// How the netcode is doing for this session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetcodeStats {
    /// Distance between the predicted own position and the server's, for each input the
    /// server acknowledged (metres; the last few thousand).
    pub prediction_errors: Vec<f32>,
    /// Reconciliations that moved the prediction.
    pub corrections: u64,
    /// Furthest a remote entity was extrapolated, milliseconds.
    pub max_extrapolated_ms: f64,
    /// Current interpolation delay, milliseconds.
    pub interpolation_delay_ms: f64,
    /// Measured snapshot arrival jitter, milliseconds.
    pub jitter_ms: f64,
}

#[derive(Default)]
struct Counters {
    snapshots_received: AtomicU64,
    bytes_received: AtomicU64,
    inputs_sent: AtomicU64,
    events_received: AtomicU64,
    events_dropped: AtomicU64,
    datagrams_rejected: AtomicU64,
    ping_rtt_us: AtomicU64,
    input_rtt_us: AtomicU64,
}

#[derive(Default)]
struct InputHistory {
    next_seq: u32,
    recent: VecDeque<PlayerInput>,
}

/// The session's netcode state, shared by the datagram task and the game's calls.
struct Net {
    decoder: Decoder,
    clock: ClockSync,
    timeline: Timeline,
    prediction: Option<Prediction>,
    unreconciled: Option<Arc<WorldState>>,
    acked_input: u32,
    /// When recent inputs were sent (sequence, seconds since the session began), to time
    /// their acknowledgement; bounded.
    sent_at: VecDeque<(u32, f64)>,
    /// Whether remote entities are kept for interpolation.
    interpolate: bool,
}

/// Inputs remembered for timing their acknowledgement (two seconds at 60 Hz).
const SENT_TIMES: usize = 128;

impl Net {
    /// Time from sending input `acked` to now, if it was remembered; forgets it and every
    /// earlier one.
    fn input_acked(&mut self, acked: u32, now_s: f64) -> Option<f64> {
        let mut rtt = None;
        while let Some(&(seq, sent)) = self.sent_at.front() {
            if seq > acked {
                break;
            }
            if seq == acked {
                rtt = Some(now_s - sent);
            }
            self.sent_at.pop_front();
        }
        rtt
    }

    fn reconcile(&mut self) {
        let Some(world) = self.unreconciled.take() else {
            return;
        };
        self.acked_input = self.acked_input.max(world.ack_input_seq);
        if let Some(prediction) = self.prediction.as_mut() {
            prediction.reconcile(&world);
        }
    }
}

/// A player's live connection to a match.
pub struct Session {
    conn: Connection,
    welcome: Welcome,
    counters: Arc<Counters>,
    net: Arc<Mutex<Net>>,
    snapshots: watch::Receiver<Option<Arc<WorldState>>>,
    events: mpsc::Receiver<TickedEvent>,
    goodbye: Arc<Mutex<Option<GoodbyeReason>>>,
    control: mpsc::Sender<Control>,
    inputs: Mutex<InputHistory>,
    epoch: Instant,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    fn start(conn: Connection, send: SendStream, recv: RecvStream, welcome: Welcome) -> Self {
        let counters = Arc::new(Counters::default());
        let (snapshot_tx, snapshots) = watch::channel(None);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let goodbye = Arc::new(Mutex::new(None));
        let epoch = Instant::now();
        let net = Arc::new(Mutex::new(Net {
            decoder: Decoder::new(&welcome.config, welcome.entity),
            clock: ClockSync::new(&welcome.config),
            timeline: Timeline::default(),
            prediction: Prediction::new(&welcome.config, welcome.entity),
            unreconciled: None,
            acked_input: 0,
            sent_at: VecDeque::with_capacity(SENT_TIMES),
            interpolate: true,
        }));
        let tasks = vec![
            tokio::spawn(read_control(
                recv,
                events_tx,
                counters.clone(),
                goodbye.clone(),
                epoch,
            )),
            tokio::spawn(read_datagrams(
                conn.clone(),
                snapshot_tx,
                counters.clone(),
                net.clone(),
                epoch,
            )),
            tokio::spawn(write_control(send, control_rx)),
        ];
        Self {
            conn,
            welcome,
            counters,
            net,
            snapshots,
            events,
            goodbye,
            control,
            inputs: Mutex::new(InputHistory::default()),
            epoch,
            tasks,
        }
    }

    /// The edge's welcome: match, player, entity, configuration, reconnect key.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The entity this player controls.
    pub fn entity(&self) -> EntityId {
        self.welcome.entity
    }

    /// Sends an input and predicts its effect on the own character. The input stands for
    /// `input.ticks` ticks (1 by default: call once per tick; a game sending at another
    /// fixed rate sets it with [`crate::input_ticks`]); the edge never lets a player's
    /// inputs claim more time than its clock gives them. The SDK
    /// numbers it, stamps it with the tick the player is viewing remote entities at
    /// (unless `view_tick` is set: it is what lag compensation rewinds to), acknowledges
    /// the newest snapshot, and repeats with it the earlier inputs the edge has not yet
    /// acknowledged. Returns the input's sequence number.
    pub fn send_input(&self, mut input: PlayerInput) -> Result<u32, ClientError> {
        let now = self.epoch.elapsed().as_secs_f64();
        let ack = {
            let mut net = lock(&self.net);
            net.reconcile();
            if input.view_tick == 0 {
                input.view_tick = net
                    .clock
                    .render_tick(now)
                    .map_or(0, |t| t.max(0.0).round() as u32);
            }
            let applied = net.unreconciled.as_ref().map_or(0, |w| w.ack_input_seq);
            (net.decoder.ack(), applied.max(net.acked_input))
        };
        let (ack, acked_input) = ack;
        let frame = {
            let mut history = lock(&self.inputs);
            history.next_seq += 1;
            input.seq = history.next_seq;
            history.recent.push_front(input);
            history.recent.truncate(REDUNDANT_INPUTS);
            // What the edge already applied needs no repeating.
            while history.recent.len() > 1
                && history.recent.back().is_some_and(|i| i.seq <= acked_input)
            {
                history.recent.pop_back();
            }
            InputFrame {
                ack_snapshot_tick: ack,
                inputs: history.recent.iter().copied().collect(),
            }
        };
        let bytes = codec::encode_datagram(&Datagram::Input(frame))
            .map_err(|_| ClientError::Protocol("input frame too large"))?;
        match self.conn.send_datagram(Bytes::from(bytes)) {
            Ok(()) => {}
            Err(quinn::SendDatagramError::ConnectionLost(err)) => return Err(err.into()),
            Err(_) => return Err(ClientError::Closed),
        }
        {
            let mut net = lock(&self.net);
            if net.sent_at.len() == SENT_TIMES {
                net.sent_at.pop_front();
            }
            net.sent_at.push_back((input.seq, now));
            if let Some(prediction) = net.prediction.as_mut() {
                prediction.apply(&input);
            }
        }
        self.counters.inputs_sent.fetch_add(1, Ordering::Relaxed);
        Ok(input.seq)
    }

    /// Sends raw bytes as a datagram, waiting for send-buffer room rather than dropping
    /// (for tools and tests that probe the edge).
    pub async fn send_raw_datagram(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.conn
            .send_datagram_wait(Bytes::from(bytes))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The player's own character as predicted from the inputs sent, reconciled with the
    /// newest server state, with corrections smoothed. `None` until the first snapshot.
    pub fn predicted_self(&self) -> Option<PredictedSelf> {
        let mut net = lock(&self.net);
        net.reconcile();
        net.prediction.as_ref().and_then(Prediction::current)
    }

    /// A remote entity as it should be drawn at `render_tick` (see
    /// [`Session::render_tick`]): interpolated between the snapshots around that tick, or
    /// extrapolated at most 250 ms past the newest.
    pub fn interpolated(&self, entity: EntityId, render_tick: f64) -> Option<EntityState> {
        let mut net = lock(&self.net);
        let tick_hz = net.clock.tick_hz();
        net.timeline.at(entity, render_tick, tick_hz)
    }

    /// The tick remote entities should be drawn at now: the newest state less an
    /// interpolation delay that adapts to the measured jitter.
    pub fn render_tick(&self) -> Option<f64> {
        lock(&self.net)
            .clock
            .render_tick(self.epoch.elapsed().as_secs_f64())
    }

    /// The estimated current server tick.
    pub fn server_tick(&self) -> Option<f64> {
        let rtt = self.conn.rtt().as_secs_f64();
        lock(&self.net)
            .clock
            .server_tick(self.epoch.elapsed().as_secs_f64(), rtt)
    }

    /// The newest state received.
    pub fn latest_snapshot(&self) -> Option<Arc<WorldState>> {
        self.snapshots.borrow().clone()
    }

    /// Tick of the newest state received (0 before the first).
    pub fn latest_tick(&self) -> u32 {
        self.snapshots.borrow().as_ref().map_or(0, |s| s.tick)
    }

    /// Waits for a state newer than the last one seen through this call.
    pub async fn next_snapshot(&mut self) -> Option<Arc<WorldState>> {
        self.snapshots.changed().await.ok()?;
        self.snapshots.borrow_and_update().clone()
    }

    /// The next match event, waiting for it; `None` once the session has ended.
    pub async fn next_event(&mut self) -> Option<TickedEvent> {
        self.events.recv().await
    }

    /// The next match event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<TickedEvent> {
        self.events.try_recv().ok()
    }

    /// The edge's goodbye, once it said one.
    pub fn goodbye(&self) -> Option<GoodbyeReason> {
        *lock(&self.goodbye)
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }

    /// The transport's smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Round-trip time of the newest answered [`Session::ping`], if any.
    pub fn ping_rtt(&self) -> Option<Duration> {
        match self.counters.ping_rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Input-to-acknowledgement round trip of the newest acknowledged input: from
    /// [`Session::send_input`] until a snapshot saying the edge applied it arrived. This
    /// is what a player feels: transport, the wait for the next tick, and the wait for the
    /// next snapshot.
    pub fn input_rtt(&self) -> Option<Duration> {
        match self.counters.input_rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Turns off prediction of the own character for the rest of the session (it keeps a
    /// small physics world per session): for tools that play without drawing, such as
    /// load generators. [`Session::predicted_self`] then answers `None`.
    pub fn disable_prediction(&self) {
        lock(&self.net).prediction = None;
    }

    /// Stops keeping remote entities' past states for the rest of the session: for tools
    /// that play without drawing. [`Session::interpolated`] then answers `None`; the
    /// newest snapshot is still there.
    pub fn disable_interpolation(&self) {
        let mut net = lock(&self.net);
        net.interpolate = false;
        net.timeline = Timeline::default();
    }

    /// Sends a clock ping on the control stream; the answer updates [`Session::ping_rtt`].
    pub fn ping(&self) -> Result<(), ClientError> {
        let client_time_us = self.epoch.elapsed().as_micros() as u64;
        self.control
            .try_send(Control::Ping(Ping { client_time_us }))
            .map_err(|_| ClientError::Closed)
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        let c = &self.counters;
        SessionStats {
            snapshots_received: c.snapshots_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            inputs_sent: c.inputs_sent.load(Ordering::Relaxed),
            events_received: c.events_received.load(Ordering::Relaxed),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            datagrams_rejected: c.datagrams_rejected.load(Ordering::Relaxed),
        }
    }

    /// Prediction, interpolation and clock figures so far.
    pub fn netcode_stats(&self) -> NetcodeStats {
        let net = lock(&self.net);
        let hz = net.clock.tick_hz();
        NetcodeStats {
            prediction_errors: net
                .prediction
                .as_ref()
                .map(Prediction::errors)
                .unwrap_or_default(),
            corrections: net.prediction.as_ref().map_or(0, Prediction::corrections),
            max_extrapolated_ms: net.timeline.max_extrapolated_s() * 1000.0,
            interpolation_delay_ms: net.clock.interpolation_delay_ticks() / hz * 1000.0,
            jitter_ms: net.clock.jitter_ticks() / hz * 1000.0,
        }
    }

    /// Says goodbye and closes the connection (waiting briefly for the edge to close).
    pub async fn close(self) {
        let _ = self
            .control
            .send(Control::Goodbye(GoodbyeReason::Quit))
            .await;
        let _ = timeout(Duration::from_secs(1), self.conn.closed()).await;
        self.conn.close(VarInt::from_u32(0), b"quit");
    }

    /// Drops the connection without a goodbye, as a crash or a lost network would.
    pub fn abort(self) {
        self.conn.close(VarInt::from_u32(0), b"abort");
    }

    /// The underlying QUIC connection (for tools and tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

async fn read_control(
    mut recv: RecvStream,
    events: mpsc::Sender<TickedEvent>,
    counters: Arc<Counters>,
    goodbye: Arc<Mutex<Option<GoodbyeReason>>>,
    epoch: Instant,
) {
    while let Ok(message) = read_frame(&mut recv).await {
        match message {
            Control::Event(event) => {
                counters.events_received.fetch_add(1, Ordering::Relaxed);
                if events.try_send(event).is_err() {
                    counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Control::Pong(pong) => {
                let now = epoch.elapsed().as_micros() as u64;
                let rtt = now.saturating_sub(pong.client_time_us).max(1);
                counters.ping_rtt_us.store(rtt, Ordering::Relaxed);
            }
            Control::Goodbye(reason) => {
                *lock(&goodbye) = Some(reason);
                return;
            }
            _ => return,
        }
    }
}

async fn read_datagrams(
    conn: Connection,
    snapshots: watch::Sender<Option<Arc<WorldState>>>,
    counters: Arc<Counters>,
    net: Arc<Mutex<Net>>,
    epoch: Instant,
) {
    while let Ok(bytes) = conn.read_datagram().await {
        counters
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let Ok(Datagram::Snapshot(snapshot)) = codec::decode_datagram(&bytes) else {
            counters.datagrams_rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let world = {
            let mut net = lock(&net);
            match net.decoder.decode(&snapshot) {
                Ok(world) => {
                    let world = Arc::new(world);
                    let now = epoch.elapsed().as_secs_f64();
                    if let Some(rtt) = net.input_acked(world.ack_input_seq, now) {
                        let us = (rtt * 1e6).max(1.0) as u64;
                        counters.input_rtt_us.store(us, Ordering::Relaxed);
                    }
                    net.clock.on_snapshot(world.tick, now);
                    if net.interpolate {
                        let hz = net.clock.tick_hz();
                        net.timeline.push(&world, hz);
                    }
                    net.unreconciled = Some(world.clone());
                    world
                }
                // Datagrams may arrive out of order: an older one is simply superseded.
                Err(crate::netcode::SnapshotIssue::Stale) => continue,
                Err(_) => {
                    counters.datagrams_rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        };
        counters.snapshots_received.fetch_add(1, Ordering::Relaxed);
        snapshots.send_replace(Some(world));
    }
}

async fn write_control(mut send: SendStream, mut control: mpsc::Receiver<Control>) {
    while let Some(message) = control.recv().await {
        let goodbye = matches!(message, Control::Goodbye(_));
        if write_frame(&mut send, &message).await.is_err() {
            return;
        }
        if goodbye {
            let _ = send.finish();
            return;
        }
    }
}
