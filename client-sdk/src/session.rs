//! A connection to an edge: the QUIC handshake and the Hello, then the quinn shell around
//! a pure [`MatchConnection`]: one task that feeds it what the edge sends (control
//! messages and snapshots, which arrive together) and one that writes the control stream,
//! while the game sends inputs through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_protocol::codec::{self, FRAME_HEADER_LEN};
use outpost_protocol::replication::Fields;
use outpost_protocol::schema::Value;
use outpost_protocol::{
    Control, EntityId, GoodbyeReason, Hello, PROTOCOL_VERSION, SignedToken, TickedEvent, Welcome,
};
use outpost_sim::{IntoInput, Modes};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::connection::{MatchConnection, NetcodeStats, SessionStats};
use crate::netcode::{PredictedSelf, Shown, WorldState};
use crate::tls::client_config;
use crate::{Assignment, ClientError, Trust};

/// Control messages queued for sending.
const CONTROL_QUEUE: usize = 64;

/// An endpoint for connecting to edges; one can serve many sessions.
pub struct Client {
    endpoint: quinn::Endpoint,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    modes: Modes,
}

/// Socket buffer a client asks for, each way.
pub const CLIENT_UDP_BUFFER_BYTES: usize = 1024 * 1024;

impl Client {
    /// A client bound to an ephemeral IPv4 UDP port.
    pub fn new() -> Result<Self, ClientError> {
        Self::bind(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// A client bound to a given local address (use `[::]:0` for IPv6 edges).
    pub fn bind(addr: SocketAddr) -> Result<Self, ClientError> {
        let socket = std::net::UdpSocket::bind(addr)?;
        // A megabyte each way where the kernel's default is about 200 KB: a game's frame
        // that stalls for a few snapshots' time, or a load generator's endpoint shared by
        // dozens of players, loses none to a full socket (capped by `net.core.rmem_max`).
        let state = quinn::udp::UdpSocketState::new((&socket).into())?;
        state.set_recv_buffer_size((&socket).into(), CLIENT_UDP_BUFFER_BYTES)?;
        state.set_send_buffer_size((&socket).into(), CLIENT_UDP_BUFFER_BYTES)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(Self {
            endpoint,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            modes: Modes::new(),
        })
    }

    /// The game modes this game links: a session in a match of one of them predicts the
    /// player's own entity with the mode's [`outpost_sim::GameMode::prediction`]. Matches
    /// of any other mode are still played, read from their schema alone.
    pub fn with_modes(mut self, modes: Modes) -> Self {
        self.modes = modes;
        self
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
        Session::start(conn, send, recv, welcome, &self.modes)
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

/// A player's live connection to a match.
pub struct Session {
    conn: Connection,
    welcome: Welcome,
    state: Arc<Shared>,
    snapshots: watch::Receiver<Option<Arc<WorldState>>>,
    control: mpsc::Sender<Control>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the session's tasks and the game's calls share.
struct Shared {
    connection: Mutex<MatchConnection>,
    /// Woken when an event arrives or the control stream ends.
    events: Notify,
    /// The control stream has ended: no more events.
    control_ended: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, MatchConnection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Now, on tokio's clock (so tests that pause it see a paused session).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Session {
    fn start(
        conn: Connection,
        send: SendStream,
        recv: RecvStream,
        welcome: Welcome,
        modes: &Modes,
    ) -> Result<Self, ClientError> {
        let connection = match MatchConnection::new(welcome.clone(), now()) {
            Ok(mut connection) => {
                if let Some(mode) = modes.get(&welcome.config.mode) {
                    connection.predict(mode.as_ref());
                }
                connection
            }
            Err(e) => {
                conn.close(VarInt::from_u32(0), b"schema");
                return Err(e);
            }
        };
        let (snapshot_tx, snapshots) = watch::channel(None);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let state = Arc::new(Shared {
            connection: Mutex::new(connection),
            events: Notify::new(),
            control_ended: AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(read_inbound(conn.clone(), recv, snapshot_tx, state.clone())),
            tokio::spawn(write_control(send, control_rx)),
        ];
        Ok(Self {
            conn,
            welcome,
            state,
            snapshots,
            control,
            tasks,
        })
    }

    /// The edge's welcome: match, player, entity, configuration, reconnect key.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Reads snapshots' records by component and field name, or typed (the mode's
    /// schema, as the edge sent it).
    pub fn fields(&self) -> Arc<Fields> {
        Arc::clone(self.state.lock().fields())
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
    pub fn send_input(&self, input: impl IntoInput) -> Result<u32, ClientError> {
        let (seq, bytes) = self.state.lock().send_input(input, now())?;
        match self.conn.send_datagram(bytes) {
            Ok(()) => Ok(seq),
            Err(quinn::SendDatagramError::ConnectionLost(err)) => Err(err.into()),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Sends raw bytes as a datagram, waiting for send-buffer room rather than dropping
    /// (for tools and tests that probe the edge).
    pub async fn send_raw_datagram(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.conn
            .send_datagram_wait(bytes.into())
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The player's own character as predicted from the inputs sent, reconciled with the
    /// newest server state, with corrections smoothed. `None` until the first snapshot.
    pub fn predicted_self(&self) -> Option<PredictedSelf> {
        self.state.lock().predicted_self()
    }

    /// A remote entity as it should be drawn at `render_tick` (see
    /// [`Session::render_tick`]): interpolated between the snapshots around that tick, or
    /// extrapolated at most 250 ms past the newest.
    pub fn interpolated(&self, entity: EntityId, render_tick: f64) -> Option<Shown> {
        self.state.lock().interpolated(entity, render_tick)
    }

    /// Where a remote entity is drawn at `render_tick`: the position
    /// [`Session::interpolated`] shows, read without its other fields (the cheap call
    /// for drawing every entity every frame).
    pub fn interpolated_position(&self, entity: EntityId, render_tick: f64) -> Option<[f32; 3]> {
        self.state.lock().interpolated_position(entity, render_tick)
    }

    /// The tick remote entities should be drawn at now: the newest state less an
    /// interpolation delay that adapts to the measured jitter.
    pub fn render_tick(&self) -> Option<f64> {
        self.state.lock().render_tick(now())
    }

    /// The estimated current server tick.
    pub fn server_tick(&self) -> Option<f64> {
        self.state.lock().server_tick(now(), self.conn.rtt())
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
        loop {
            let arrived = self.state.events.notified();
            if let Some(event) = self.state.lock().poll_event() {
                return Some(event);
            }
            if self.state.control_ended.load(Ordering::Acquire) {
                return None;
            }
            arrived.await;
        }
    }

    /// The next match event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<TickedEvent> {
        self.state.lock().poll_event()
    }

    /// The edge's goodbye, once it said one.
    pub fn goodbye(&self) -> Option<GoodbyeReason> {
        self.state.lock().goodbye()
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
        self.state.lock().ping_rtt()
    }

    /// Input-to-acknowledgement round trip of the newest acknowledged input: from
    /// [`Session::send_input`] until a snapshot saying the edge applied it arrived. This
    /// is what a player feels: transport, the wait for the next tick, and the wait for the
    /// next snapshot.
    pub fn input_rtt(&self) -> Option<Duration> {
        self.state.lock().input_rtt()
    }

    /// Turns off prediction of the own character for the rest of the session (it keeps a
    /// small physics world per session): for tools that play without drawing, such as
    /// load generators. [`Session::predicted_self`] then answers `None`.
    pub fn disable_prediction(&self) {
        self.state.lock().disable_prediction();
    }

    /// Stops keeping remote entities' past states for the rest of the session: for tools
    /// that play without drawing. [`Session::interpolated`] then answers `None`; the
    /// newest snapshot is still there.
    pub fn disable_interpolation(&self) {
        self.state.lock().disable_interpolation();
    }

    /// Sends a clock ping on the control stream; the answer updates [`Session::ping_rtt`].
    pub fn ping(&self) -> Result<(), ClientError> {
        let ping = self.state.lock().ping(now());
        self.control.try_send(ping).map_err(|_| ClientError::Closed)
    }

    /// Sends a request of the mode's schema (`name`, its field values, its lists' items)
    /// on the control stream; returns its number, which its [`outpost_protocol::Answer`]
    /// ([`Session::try_next_answer`]) echoes. Fails, sending nothing, if it does not fit
    /// the schema.
    pub fn send_request(
        &self,
        name: &str,
        values: &[Value],
        lists: &[&[Vec<Value>]],
    ) -> Result<u32, ClientError> {
        let (seq, message) = self.state.lock().request(name, values, lists)?;
        self.control
            .try_send(message)
            .map_err(|_| ClientError::Closed)?;
        Ok(seq)
    }

    /// The next answer to a request if one is waiting.
    pub fn try_next_answer(&self) -> Option<outpost_protocol::Answer> {
        self.state.lock().poll_answer()
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        self.state.lock().stats()
    }

    /// Prediction, interpolation and clock figures so far.
    pub fn netcode_stats(&self) -> NetcodeStats {
        self.state.lock().netcode_stats()
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

/// Most control stream bytes taken at once.
const CONTROL_CHUNK: usize = 16 * 1024;

/// Reads what the edge sends — control messages and snapshot datagrams — in one task: the
/// edge sends a tick's events and its snapshot in one packet, and one task wakes for
/// both. Control frames are cut from the stream's bytes by the codec's decoder (a frame
/// may arrive in pieces); one that does not decode ends the control stream. Runs until
/// the connection ends.
async fn read_inbound(
    conn: Connection,
    mut recv: RecvStream,
    snapshots: watch::Sender<Option<Arc<WorldState>>>,
    state: Arc<Shared>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut control_open = true;
    loop {
        tokio::select! {
            datagram = conn.read_datagram() => {
                let Ok(bytes) = datagram else { break };
                let world = state.lock().on_datagram(&bytes, now());
                if let Some(world) = world {
                    snapshots.send_replace(Some(world));
                }
            }
            chunk = recv.read_chunk(CONTROL_CHUNK, true), if control_open => {
                let more = match chunk {
                    Ok(Some(chunk)) => {
                        pending.extend_from_slice(&chunk.bytes);
                        take_frames(&mut pending, &state)
                    }
                    Ok(None) | Err(_) => false,
                };
                if !more {
                    control_open = false;
                    state.control_ended.store(true, Ordering::Release);
                    state.events.notify_one();
                }
            }
        }
    }
    if control_open {
        state.control_ended.store(true, Ordering::Release);
        state.events.notify_one();
    }
}

/// Hands every whole frame in `pending` to the connection
/// ([`MatchConnection::on_control_bytes`]) and wakes whoever waits for events; whether the
/// stream goes on.
fn take_frames(pending: &mut Vec<u8>, state: &Shared) -> bool {
    let more = state.lock().on_control_bytes(pending, now());
    state.events.notify_one();
    more
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

#[cfg(test)]
mod tests {
    use outpost_protocol::{EntityId, GoodbyeReason, MatchEvent, PlayerId, Pong, TickedEvent};

    use super::*;

    fn shared() -> Shared {
        let welcome = crate::connection::tests::welcome();
        Shared {
            connection: Mutex::new(MatchConnection::new(welcome, now()).expect("welcome")),
            events: Notify::new(),
            control_ended: AtomicBool::new(false),
        }
    }

    fn frame(message: &Control) -> Vec<u8> {
        codec::encode_frame(message).expect("encodes")
    }

    /// Frames arrive in pieces of any size: each is handed on whole, once, in order, and
    /// what is left of a frame waits for the rest.
    #[test]
    fn control_frames_cut_anywhere_are_read_whole_and_in_order() {
        let event = |tick| {
            Control::Event(TickedEvent {
                tick,
                event: MatchEvent::PlayerJoined {
                    player: PlayerId(7),
                    entity: EntityId(70),
                },
            })
        };
        let mut bytes = frame(&event(1));
        bytes.extend(frame(&Control::Pong(Pong {
            client_time_us: 5,
            server_tick: 9,
        })));
        bytes.extend(frame(&event(2)));
        for piece in 1..=bytes.len() {
            let state = shared();
            let mut pending = Vec::new();
            for chunk in bytes.chunks(piece) {
                pending.extend_from_slice(chunk);
                assert!(take_frames(&mut pending, &state));
            }
            assert!(pending.is_empty(), "nothing left over (pieces of {piece})");
            let mut connection = state.lock();
            let ticks: Vec<u32> = std::iter::from_fn(|| connection.poll_event())
                .map(|e| e.tick)
                .collect();
            assert_eq!(ticks, vec![1, 2], "pieces of {piece}");
        }
    }

    /// A frame that does not decode ends the control stream, and so does the edge's
    /// goodbye: what follows either is not read.
    #[test]
    fn a_frame_that_does_not_decode_or_a_goodbye_ends_the_stream() {
        let state = shared();
        let mut garbage = 3u32.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff, 0xff]);
        assert!(!take_frames(&mut garbage, &state));
        let state = shared();
        let mut bytes = frame(&Control::Goodbye(GoodbyeReason::MatchOver));
        bytes.extend(frame(&Control::Pong(Pong {
            client_time_us: 5,
            server_tick: 9,
        })));
        assert!(!take_frames(&mut bytes, &state));
        assert_eq!(state.lock().goodbye(), Some(GoodbyeReason::MatchOver));
    }
}
