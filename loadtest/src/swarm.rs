//! The load generator's own transport for players joined with tokens ([`Target::Edge`]):
//! one task per UDP socket drives every player on it, over `quinn-proto`'s connections
//! directly (quinn's design is sans-IO: the protocol is a state machine the caller feeds
//! datagrams and time).
//!
//! Through the SDK's [`outpost_client::Session`] each player costs four tasks — quinn's
//! connection driver, the session's reader and control writer, and the player's own
//! loop — and each datagram crosses the endpoint's driver, a channel, the connection's
//! driver and the reader, a wake-up at each step. Here a socket's readiness wakes one
//! task, which reads a batch of datagrams, hands each to its connection, decodes the
//! snapshots into the player's [`MatchConnection`] (the SDK's own netcode, unchanged), runs
//! the bots whose turn it is, and writes what the connections have to send. Each player
//! plays exactly as [`crate::player`]'s do: the same bot, offsets, input periods, samples,
//! goodbyes and error kinds. The full stack's players ([`Target::Stack`]) still play
//! through the SDK's sessions, since they join wherever matchmaking sends them.
//!
//! [`Target::Edge`]: crate::Target::Edge
//! [`Target::Stack`]: crate::Target::Stack

use std::cell::RefCell;
use std::io::IoSliceMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use outpost_client::{
    Assignment, ClientError, MatchConnection, PredictedSelf, WorldState, client_config,
};
use outpost_protocol::replication::Fields;
use outpost_protocol::schema::Value;
use outpost_protocol::{Answer, Control, EntityId, GoodbyeReason, Hello, PROTOCOL_VERSION, codec};
use quinn::udp::{RecvMeta, UdpSocketState};
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Dir, EcnCodepoint, Endpoint, EndpointConfig, Event,
    StreamEvent, StreamId, VarInt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::bot::{Requests, Seat};
use crate::player::{Figures, Last, brain, turn};
use crate::recorder::Recorder;
use crate::{CONNECT_TIMEOUT, ErrorKind, LoadConfig};

/// How long a connection may stay quiet before it counts as lost (the SDK's).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a leaving player waits for the edge to close after its goodbye (the SDK's
/// [`outpost_client::Session::close`] waits as long).
const GOODBYE_WAIT: Duration = Duration::from_secs(1);
/// Control bytes a player may have waiting to be written (its requests); more is refused
/// as the SDK's full control queue refuses it.
const MAX_CONTROL_OUT: usize = 256 * 1024;
/// Room for one received datagram (or a GRO batch's segment).
const SEGMENT: usize = 1500;
/// Datagrams one receive call may take.
const RECV_BATCH: usize = 16;

/// One player of a swarm: who, where, and when it starts.
pub(crate) struct Seated {
    pub n: u32,
    pub assignment: Assignment,
    pub start_at: Instant,
}

/// Where a player is in its match.
enum Phase {
    /// Not started yet.
    Waiting,
    /// Handshaking, then waiting for the edge's Welcome; failing at `deadline`.
    Joining { deadline: Instant },
    /// In the match.
    Playing(Box<Playing>),
    /// Said goodbye; the edge closes, or the player does at `deadline`.
    Leaving { deadline: Instant },
    /// Gone.
    Done,
}

/// A player in its match.
struct Playing {
    netcode: MatchConnection,
    entity: EntityId,
    brain: Box<dyn outpost_sim::Bot>,
    requests: Requests,
    period: Duration,
    next_input: Instant,
    step: u32,
    last: Last,
    joined_at: Instant,
}

struct Player {
    n: u32,
    assignment: Assignment,
    start_at: Instant,
    phase: Phase,
    conn: Option<(ConnectionHandle, quinn_proto::Connection)>,
    control: Option<StreamId>,
    /// Control bytes waiting to be written.
    out: Vec<u8>,
    /// Control bytes read and not yet whole frames.
    pending: Vec<u8>,
    /// The control stream is still read: not after it ended, nor after a frame that
    /// does not decode or the edge's goodbye.
    control_open: bool,
    /// When it next needs servicing if nothing arrives ([`Player::wake_at`]).
    wake: Option<Instant>,
    /// Its connection took something in since it was last serviced.
    touched: bool,
}

/// Drives `players` over one socket until each has left, then returns. Players start
/// at their `start_at` and play until `until`.
pub(crate) async fn run(
    socket: std::net::UdpSocket,
    players: Vec<Seated>,
    config: Arc<LoadConfig>,
    recorder: Arc<Recorder>,
    until: tokio::time::Instant,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let state = UdpSocketState::new((&socket).into())?;
    state.set_recv_buffer_size((&socket).into(), outpost_client::CLIENT_UDP_BUFFER_BYTES)?;
    state.set_send_buffer_size((&socket).into(), outpost_client::CLIENT_UDP_BUFFER_BYTES)?;
    let socket = UdpSocket::from_std(socket)?;
    let mut swarm = Swarm {
        io: Io {
            recv_buf: vec![0; RECV_BATCH * SEGMENT * state.gro_segments()],
            send_buf: Vec::with_capacity(SEGMENT * state.max_gso_segments()),
            state,
            socket,
        },
        endpoint: Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None),
        players: players
            .into_iter()
            .map(|seated| Player {
                n: seated.n,
                assignment: seated.assignment,
                start_at: seated.start_at,
                phase: Phase::Waiting,
                conn: None,
                control: None,
                out: Vec::new(),
                pending: Vec::new(),
                control_open: true,
                wake: Some(seated.start_at),
                touched: false,
            })
            .collect(),
        config,
        recorder,
        until: until.into_std(),
        seats: Vec::new(),
    };
    swarm.drive().await
}

/// The socket, with quinn's batched and offloaded UDP calls.
struct Io {
    socket: UdpSocket,
    state: UdpSocketState,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
}

impl Io {
    /// Sends what `conn` has to send.
    async fn flush(&mut self, conn: &mut quinn_proto::Connection) -> std::io::Result<()> {
        let segments = self.state.max_gso_segments();
        loop {
            self.send_buf.clear();
            let Some(transmit) = conn.poll_transmit(Instant::now(), segments, &mut self.send_buf)
            else {
                return Ok(());
            };
            self.send(&transmit).await?;
        }
    }

    /// Sends one transmit (the first `size` bytes of the send buffer), waiting for room.
    async fn send(&self, transmit: &quinn_proto::Transmit) -> std::io::Result<()> {
        let udp = quinn::udp::Transmit {
            destination: transmit.destination,
            ecn: transmit
                .ecn
                .and_then(|ecn| quinn::udp::EcnCodepoint::from_bits(ecn as u8)),
            contents: &self.send_buf[..transmit.size],
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        };
        loop {
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &udp)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.socket.writable().await?;
                }
                // UDP loses datagrams anyway: QUIC resends what mattered.
                Err(e) => {
                    tracing::debug!(%e, "a datagram was not sent");
                    return Ok(());
                }
            }
        }
    }
}

struct Swarm {
    io: Io,
    endpoint: Endpoint,
    players: Vec<Player>,
    config: Arc<LoadConfig>,
    recorder: Arc<Recorder>,
    until: Instant,
    /// Which player holds each of the endpoint's connection handles.
    seats: Vec<Option<usize>>,
}

impl Swarm {
    async fn drive(&mut self) -> std::io::Result<()> {
        // One edge, one trust, for every player of the run.
        let Some(first) = self.players.first() else {
            return Ok(());
        };
        let client =
            client_config(&first.assignment.trust, IDLE_TIMEOUT).map_err(std::io::Error::other)?;
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            let mut wake: Option<Instant> = None;
            for i in 0..self.players.len() {
                let player = &self.players[i];
                if player.touched || player.wake.is_some_and(|due| due <= now) {
                    self.service(i, &client, now).await?;
                    let player = &mut self.players[i];
                    player.touched = false;
                    player.wake = player.wake_at();
                }
                if let Some(due) = self.players[i].wake {
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
            }
            let Some(wake) = wake else {
                return Ok(());
            };
            if sleep.deadline().into_std() != wake {
                sleep.as_mut().reset(tokio::time::Instant::from_std(wake));
            }
            tokio::select! {
                biased;
                ready = self.io.socket.readable() => {
                    ready?;
                    self.receive()?;
                }
                () = &mut sleep => {}
            }
        }
    }

    /// Reads what the socket holds and hands each datagram to its connection.
    fn receive(&mut self) -> std::io::Result<()> {
        let Self {
            io,
            endpoint,
            players,
            seats,
            ..
        } = self;
        let now = Instant::now();
        let stride = io.recv_buf.len() / RECV_BATCH;
        // What a server endpoint would answer with; a client's never does.
        let mut response = Vec::new();
        loop {
            let mut metas = [RecvMeta::default(); RECV_BATCH];
            let mut chunks = io.recv_buf.chunks_mut(stride);
            let mut bufs: [IoSliceMut<'_>; RECV_BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            let count = match io.socket.try_io(Interest::READABLE, || {
                io.state.recv((&io.socket).into(), &mut bufs, &mut metas)
            }) {
                Ok(count) => count,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                // An ICMP error for one datagram (the edge gone): the next read goes on.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            for (meta, buf) in metas.iter().zip(bufs.iter()).take(count) {
                let data = &buf[..meta.len];
                for segment in data.chunks(meta.stride.max(1)) {
                    let event = endpoint.handle(
                        now,
                        meta.addr,
                        meta.dst_ip,
                        meta.ecn.and_then(|ecn| EcnCodepoint::from_bits(ecn as u8)),
                        BytesMut::from(segment),
                        &mut response,
                    );
                    match event {
                        Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                            if let Some(&Some(i)) = seats.get(handle.0)
                                && let Some((_, conn)) = players[i].conn.as_mut()
                            {
                                conn.handle_event(event);
                                players[i].touched = true;
                            }
                        }
                        // A stateless answer (a reset, a version negotiation): not ours
                        // to send as a client, and no connection to take it.
                        Some(DatagramEvent::Response(_) | DatagramEvent::NewConnection(_))
                        | None => {}
                    }
                }
            }
        }
    }

    /// Everything due for player `i` now: its start, its connection's timers and events,
    /// its bot's turn, its leaving; then what its connection has to send.
    async fn service(
        &mut self,
        i: usize,
        client: &quinn_proto::ClientConfig,
        now: Instant,
    ) -> std::io::Result<()> {
        let Self {
            io,
            endpoint,
            players,
            seats,
            config,
            recorder,
            until,
            ..
        } = self;
        let player = &mut players[i];
        if matches!(player.phase, Phase::Waiting) {
            if player.start_at > now {
                return Ok(());
            }
            recorder.connect_attempt();
            match endpoint.connect(
                now,
                client.clone(),
                player.assignment.edge_addr,
                &player.assignment.server_name,
            ) {
                Ok(conn) => {
                    if seats.len() <= conn.0.0 {
                        seats.resize(conn.0.0 + 1, None);
                    }
                    seats[conn.0.0] = Some(i);
                    player.conn = Some(conn);
                    player.phase = Phase::Joining {
                        deadline: now + CONNECT_TIMEOUT,
                    };
                }
                Err(err) => {
                    tracing::debug!(player = player.n, %err, "join failed");
                    recorder.connect_failed(ErrorKind::Connect);
                    player.phase = Phase::Done;
                    return Ok(());
                }
            }
        }
        let Some((handle, conn)) = player.conn.as_mut() else {
            return Ok(());
        };
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        while let Some(event) = conn.poll_endpoint_events() {
            if let Some(event) = endpoint.handle_event(*handle, event) {
                conn.handle_event(event);
            }
        }
        let (mut readable, mut datagrams, mut lost) = (false, false, false);
        while let Some(event) = conn.poll() {
            match event {
                Event::Connected => {
                    let hello = Control::Hello(Hello {
                        protocol_version: PROTOCOL_VERSION,
                        connect_token: player.assignment.connect_token.clone(),
                        reconnect_key: None,
                    });
                    player.control = conn.streams().open(Dir::Bi);
                    if let Ok(frame) = codec::encode_frame(&hello) {
                        player.out.extend_from_slice(&frame);
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => {
                    readable |= Some(id) == player.control;
                }
                Event::DatagramReceived => datagrams = true,
                Event::ConnectionLost { reason } => {
                    tracing::debug!(player = player.n, %reason, "connection lost");
                    lost = true;
                }
                _ => {}
            }
        }
        let mut control_ended = false;
        if readable
            && player.control_open
            && let Some(id) = player.control
        {
            control_ended = !read_control(conn, id, &mut player.pending);
        }
        let phase = std::mem::replace(&mut player.phase, Phase::Done);
        player.phase = match phase {
            Phase::Joining { deadline } => {
                match answer(&mut player.pending, control_ended || lost, now >= deadline) {
                    Some(Ok(welcome)) => {
                        let match_id = welcome.match_id.0;
                        match start(player.n, welcome, config, &conn.stats(), now) {
                            Ok(mut playing) => {
                                recorder.connected(match_id);
                                // What followed the Welcome in the same bytes.
                                take_control(
                                    &mut player.pending,
                                    &mut player.control_open,
                                    &mut playing.netcode,
                                    control_ended,
                                    now,
                                );
                                Phase::Playing(playing)
                            }
                            // A schema the SDK cannot read: the join failed, as the SDK's.
                            Err(ErrorKind::Connect) => {
                                recorder.connect_failed(ErrorKind::Connect);
                                conn.close(now, VarInt::from_u32(0), Bytes::from_static(b"schema"));
                                Phase::Done
                            }
                            // The mode has no bot (checked before the run, so not seen).
                            Err(kind) => {
                                recorder.connected(match_id);
                                recorder.left(now);
                                recorder.error(kind);
                                recorder.finished(false);
                                conn.close(now, VarInt::from_u32(0), Bytes::from_static(b"bot"));
                                Phase::Done
                            }
                        }
                    }
                    Some(Err(kind)) => {
                        recorder.connect_failed(kind);
                        conn.close(now, VarInt::from_u32(0), Bytes::from_static(b"join"));
                        Phase::Done
                    }
                    None => Phase::Joining { deadline },
                }
            }
            Phase::Playing(mut playing) => {
                if readable {
                    take_control(
                        &mut player.pending,
                        &mut player.control_open,
                        &mut playing.netcode,
                        control_ended,
                        now,
                    );
                }
                if datagrams {
                    while let Some(datagram) = conn.datagrams().recv() {
                        playing.netcode.on_datagram(&datagram, now);
                    }
                }
                match play(
                    &mut playing,
                    conn,
                    &mut player.out,
                    config,
                    recorder,
                    lost,
                    *until,
                    now,
                ) {
                    Some(left) => {
                        recorder.left(playing.joined_at);
                        left.record(recorder);
                        match left {
                            Left::RunOver => {
                                let goodbye = Control::Goodbye(GoodbyeReason::Quit);
                                if let Ok(frame) = codec::encode_frame(&goodbye) {
                                    player.out.extend_from_slice(&frame);
                                }
                                Phase::Leaving {
                                    deadline: now + GOODBYE_WAIT,
                                }
                            }
                            _ => {
                                conn.close(now, VarInt::from_u32(0), Bytes::from_static(b"left"));
                                Phase::Done
                            }
                        }
                    }
                    None => Phase::Playing(playing),
                }
            }
            Phase::Leaving { .. } if lost => Phase::Done,
            Phase::Leaving { deadline } if now >= deadline => {
                conn.close(now, VarInt::from_u32(0), Bytes::from_static(b"quit"));
                Phase::Done
            }
            other => other,
        };
        if datagrams {
            // Not (or no longer) playing: nothing reads them.
            while conn.datagrams().recv().is_some() {}
        }
        if let (Some(id), false) = (player.control, player.out.is_empty()) {
            match conn.send_stream(id).write(&player.out) {
                Ok(written) => {
                    player.out.drain(..written);
                }
                Err(quinn_proto::WriteError::Blocked) => {}
                Err(_) => player.out.clear(),
            }
        }
        io.flush(conn).await?;
        if conn.is_drained() {
            // Gone for good: the endpoint forgets it, and so does the swarm.
            while let Some(event) = conn.poll_endpoint_events() {
                let _ = endpoint.handle_event(*handle, event);
            }
            if let Some(seat) = seats.get_mut(handle.0) {
                *seat = None;
            }
            player.conn = None;
        }
        Ok(())
    }
}

impl Player {
    /// When the player next needs servicing without anything arriving: its start, its
    /// connection's next timer, its bot's next turn, the end of the run or of a wait.
    fn wake_at(&mut self) -> Option<Instant> {
        let timer = self.conn.as_mut().and_then(|(_, conn)| conn.poll_timeout());
        let own = match &self.phase {
            Phase::Waiting => Some(self.start_at),
            Phase::Joining { deadline } | Phase::Leaving { deadline } => Some(*deadline),
            Phase::Playing(playing) => Some(playing.next_input),
            Phase::Done => None,
        };
        timer.into_iter().chain(own).min()
    }
}

/// Hands the control bytes read to the player's netcode, whole frames at a time. After a
/// frame that does not decode, the match's last message or the stream's end
/// (`ended`), nothing more is read from the stream, nor kept.
fn take_control(
    pending: &mut Vec<u8>,
    open: &mut bool,
    netcode: &mut MatchConnection,
    ended: bool,
    now: Instant,
) {
    if *open {
        *open = netcode.on_control_bytes(pending, now) && !ended;
    }
    if !*open {
        *pending = Vec::new();
    }
}

/// Reads what the control stream holds onto `pending`; false once the stream has ended
/// (or failed).
fn read_control(conn: &mut quinn_proto::Connection, id: StreamId, pending: &mut Vec<u8>) -> bool {
    let mut stream = conn.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else {
        return false;
    };
    let open = loop {
        match chunks.next(usize::MAX) {
            Ok(Some(chunk)) => pending.extend_from_slice(&chunk.bytes),
            Ok(None) => break false,
            Err(quinn_proto::ReadError::Blocked) => break true,
            Err(_) => break false,
        }
    };
    let _ = chunks.finalize();
    open
}

/// The edge's answer to the Hello, once whole in `pending` (cut from it): the Welcome, or
/// why the join failed; `None` while it is still to come and neither `ended` nor
/// `timed_out`.
fn answer(
    pending: &mut Vec<u8>,
    ended: bool,
    timed_out: bool,
) -> Option<Result<outpost_protocol::Welcome, ErrorKind>> {
    match codec::decode_frame(pending) {
        Ok(Some((message, used))) => {
            pending.drain(..used);
            Some(match message {
                Control::Welcome(welcome) => Ok(welcome),
                Control::Reject(_) => Err(ErrorKind::Rejected),
                _ => Err(ErrorKind::Connect),
            })
        }
        Err(_) => Some(Err(ErrorKind::Connect)),
        Ok(None) if ended => Some(Err(ErrorKind::Connect)),
        Ok(None) if timed_out => Some(Err(ErrorKind::ConnectTimeout)),
        Ok(None) => None,
    }
}

/// A player's match begins: its netcode from the Welcome, its bot, its first turn. Fails
/// as the join did (`Connect`: a schema the SDK cannot read) or as the match did
/// (`Rejected`: the mode has no bot).
fn start(
    n: u32,
    welcome: outpost_protocol::Welcome,
    config: &LoadConfig,
    stats: &quinn_proto::ConnectionStats,
    now: Instant,
) -> Result<Box<Playing>, ErrorKind> {
    let (brain, offset, period) = brain(n, config, &welcome.config);
    let entity = welcome.entity;
    let mut netcode = MatchConnection::new(welcome, now).map_err(|_| ErrorKind::Connect)?;
    let brain = brain.ok_or(ErrorKind::Rejected)?;
    if let Some(mode) = config.modes.get(&netcode.welcome().config.mode) {
        netcode.predict(mode.as_ref());
    }
    if !config.prediction {
        netcode.disable_prediction();
        netcode.disable_interpolation();
    }
    Ok(Box::new(Playing {
        netcode,
        entity,
        brain,
        requests: Requests::default(),
        period,
        next_input: now + offset,
        step: 0,
        last: Last::new(stats),
        joined_at: now,
    }))
}

/// Why a player left its match.
enum Left {
    /// The run is over.
    RunOver,
    /// The edge ended the match.
    MatchOver,
    /// It broke.
    Error(ErrorKind),
}

impl Left {
    fn record(&self, recorder: &Recorder) {
        match self {
            Self::RunOver => recorder.finished(true),
            Self::MatchOver => {
                recorder.match_ended();
                recorder.finished(false);
            }
            Self::Error(kind) => {
                recorder.error(*kind);
                recorder.finished(false);
            }
        }
    }
}

/// The bot's turns due by `now` (one, however many periods went by: later ones are
/// skipped, as a game's frame would), and whether the player leaves.
#[allow(
    clippy::too_many_arguments,
    reason = "one player's parts, borrowed apart"
)]
fn play(
    playing: &mut Playing,
    conn: &mut quinn_proto::Connection,
    out: &mut Vec<u8>,
    config: &LoadConfig,
    recorder: &Recorder,
    lost: bool,
    until: Instant,
    now: Instant,
) -> Option<Left> {
    let gone = |netcode: &MatchConnection| match netcode.goodbye() {
        Some(GoodbyeReason::MatchOver) => Some(Left::MatchOver),
        Some(_) => Some(Left::Error(ErrorKind::Kicked)),
        None => None,
    };
    if now >= until {
        return Some(Left::RunOver);
    }
    if playing.next_input > now {
        return lost
            .then(|| gone(&playing.netcode).unwrap_or(Left::Error(ErrorKind::Disconnected)));
    }
    let behind =
        now.duration_since(playing.next_input).as_nanos() / playing.period.as_nanos().max(1);
    playing.next_input += playing.period * (behind as u32 + 1);
    if let Some(left) = gone(&playing.netcode) {
        return Some(left);
    }
    if lost || conn.is_closed() {
        return Some(Left::Error(ErrorKind::Disconnected));
    }
    playing.step += 1;
    if playing.step.is_multiple_of(u32::from(config.input_hz)) {
        let stats = playing.netcode.stats();
        let figures = Figures {
            stats: conn.stats(),
            quic_rtt: conn.rtt(),
            input_rtt: playing.netcode.input_rtt(),
            jitter_ms: playing.netcode.netcode_stats().jitter_ms,
            snapshots: stats.snapshots_received,
        };
        recorder.sample(playing.last.sample(&figures));
    }
    let seat = SeatOf {
        netcode: RefCell::new(&mut playing.netcode),
        out: RefCell::new(out),
        entity: playing.entity,
        now,
    };
    let input = turn(
        &seat,
        playing.brain.as_mut(),
        &mut playing.requests,
        config,
        playing.step,
    )?;
    let sent = playing.netcode.send_input(input, now);
    match sent {
        Ok((_, datagram)) => conn
            .datagrams()
            .send(datagram, true)
            .err()
            .map(|_| Left::Error(ErrorKind::Disconnected)),
        Err(_) => Some(Left::Error(ErrorKind::Disconnected)),
    }
}

/// A bot's view of its player, for one turn.
struct SeatOf<'a> {
    netcode: RefCell<&'a mut MatchConnection>,
    out: RefCell<&'a mut Vec<u8>>,
    entity: EntityId,
    now: Instant,
}

impl Seat for SeatOf<'_> {
    fn next_answer(&self) -> Option<Answer> {
        self.netcode.borrow_mut().poll_answer()
    }
    fn latest(&self) -> Option<Arc<WorldState>> {
        self.netcode.borrow().latest().cloned()
    }
    fn fields(&self) -> Arc<Fields> {
        Arc::clone(self.netcode.borrow().fields())
    }
    fn entity(&self) -> EntityId {
        self.entity
    }
    fn predicted_self(&self) -> Option<PredictedSelf> {
        self.netcode.borrow_mut().predicted_self()
    }
    fn render_tick(&self) -> Option<f64> {
        self.netcode.borrow().render_tick(self.now)
    }
    fn interpolated_position(&self, entity: EntityId, render_tick: f64) -> Option<[f32; 3]> {
        self.netcode
            .borrow_mut()
            .interpolated_position(entity, render_tick)
    }
    fn send_request(
        &self,
        name: &str,
        values: &[Value],
        lists: &[&[Vec<Value>]],
    ) -> Result<u32, ClientError> {
        let (seq, message) = self.netcode.borrow_mut().request(name, values, lists)?;
        let frame = codec::encode_frame(&message)
            .map_err(|_| ClientError::Protocol("message too large"))?;
        let mut out = self.out.borrow_mut();
        if out.len() + frame.len() > MAX_CONTROL_OUT {
            return Err(ClientError::Closed);
        }
        out.extend_from_slice(&frame);
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::{Pong, Reject, RejectCode};

    use super::*;

    fn frame(message: &Control) -> Vec<u8> {
        codec::encode_frame(message).expect("encodes")
    }

    /// The edge's answer arrives in pieces of any size: nothing is decided until it is
    /// whole, then it is cut from the bytes read, and what follows it stays.
    #[test]
    fn an_answer_cut_anywhere_is_read_whole() {
        let reject = frame(&Control::Reject(Reject::new(
            RejectCode::BadSignature,
            "no",
        )));
        let mut bytes = reject.clone();
        bytes.extend(frame(&Control::Pong(Pong {
            client_time_us: 1,
            server_tick: 2,
        })));
        for cut in 0..reject.len() {
            let mut pending = bytes[..cut].to_vec();
            assert!(answer(&mut pending, false, false).is_none(), "cut at {cut}");
            pending.extend_from_slice(&bytes[cut..]);
            assert!(matches!(
                answer(&mut pending, false, false),
                Some(Err(ErrorKind::Rejected))
            ));
            assert_eq!(pending.len(), bytes.len() - reject.len(), "cut at {cut}");
        }
    }

    /// A join fails with the kind the SDK's would: anything but a Welcome or a Reject
    /// first, bytes that do not decode, or a stream that ended before the answer, is a
    /// failed connect; no answer by the deadline is a timeout.
    #[test]
    fn a_join_without_a_welcome_fails_with_its_kind() {
        let pong = frame(&Control::Pong(Pong {
            client_time_us: 1,
            server_tick: 2,
        }));
        let mut garbage = 3u32.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff, 0xff]);
        let cases: [(Vec<u8>, bool, bool, ErrorKind); 4] = [
            (pong, false, false, ErrorKind::Connect),
            (garbage, false, false, ErrorKind::Connect),
            (Vec::new(), true, false, ErrorKind::Connect),
            (Vec::new(), false, true, ErrorKind::ConnectTimeout),
        ];
        for (mut pending, ended, timed_out, kind) in cases {
            match answer(&mut pending, ended, timed_out) {
                Some(Err(got)) => assert_eq!(got, kind),
                other => panic!("expected {kind:?}, got {:?}", other.map(|a| a.is_ok())),
            }
        }
    }
}
