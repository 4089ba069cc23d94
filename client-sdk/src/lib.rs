//! # outpost-client
//!
//! The client SDK: what a game links to play on Outpost. Given an assignment (an edge's
//! address, its certificate fingerprint and a connect token), [`Client::connect`] opens a
//! QUIC connection, presents the token and returns a [`Session`]: send inputs every tick,
//! read the newest snapshot, receive reliable match events, measure round-trip time.
//!
//! What it is not: a renderer or an input system. The game reads state from the session
//! and draws it; it turns its own controls into its mode's inputs. Any mode is read from
//! the schema the edge sends ([`Session::fields`]: components and fields by name, or
//! typed); a game that links its mode's crate also predicts its own entity with it
//! ([`Client::with_modes`]).
//!
//! ```no_run
//! use outpost_client::{Assignment, Client, Trust};
//! use outpost_protocol::replication::InputRecord;
//!
//! # async fn play(assignment: Assignment) -> Result<(), outpost_client::ClientError> {
//! let client = Client::new()?;
//! let session = client.connect(&assignment).await?;
//! // An input laid out by the mode's schema; a mode's crate offers it typed.
//! let fields = session.fields();
//! let slots = vec![0; outpost_protocol::replication::InputLayout::new(fields.schema()).slots()];
//! session.send_input(InputRecord { seq: 0, ticks: 1, view_tick: 0, slots })?;
//! if let Some(snapshot) = session.latest_snapshot() {
//!     for record in snapshot.records.iter() {
//!         println!("{:?} at {:?}", record.id, fields.layout().position_value(&record));
//!     }
//! }
//! session.close().await;
//! # Ok(()) }
//! ```

pub mod cloud;
pub mod connection;
pub mod link;
pub mod netcode;
pub mod replay;
mod session;
mod tls;

use std::net::SocketAddr;

pub use cloud::{CloudClient, CloudError, MatchFound, Party};
pub use connection::{ControlFlow, MatchConnection, NetcodeStats, SessionStats};
pub use netcode::{PredictedSelf, Shown, WorldState, input_ticks};
pub use outpost_protocol::SignedToken;
pub use replay::{ReplayFrame, ReplayPlayer};
pub use session::{CLIENT_UDP_BUFFER_BYTES, Client, Probe, Session};
pub use tls::{Trust, client_config};

/// Where and how to join a match: what the cloud's matchmaker (or the dev tool) hands a
/// player.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The edge's QUIC address.
    pub edge_addr: SocketAddr,
    /// Name the edge's certificate is checked against (with [`Trust::Roots`]).
    pub server_name: String,
    /// How to trust the edge.
    pub trust: Trust,
    /// The signed token admitting this player to this match.
    pub connect_token: SignedToken,
}

/// What can go wrong talking to an edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The edge refused the player.
    #[error("edge refused the connection: {code:?} ({detail})")]
    Rejected {
        /// The reason code.
        code: outpost_protocol::RejectCode,
        /// The edge's explanation.
        detail: String,
    },
    /// TLS could not be set up.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The local UDP socket could not be opened.
    #[error("cannot open a UDP socket: {0}")]
    Io(#[from] std::io::Error),
    /// The connection could not start.
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The edge's mode schema does not decode, does not match its configuration's hash,
    /// or describes a mode this SDK cannot play.
    #[error("mode schema refused: {0}")]
    Schema(String),
    /// The edge broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A request does not fit the mode's schema (see
    /// [`outpost_protocol::replication::RequestError`]); nothing was sent.
    #[error("request not sent: {0}")]
    Request(#[from] outpost_protocol::replication::RequestError),
    /// The edge did not answer in time.
    #[error("timed out waiting for the edge")]
    Timeout,
    /// The session has ended.
    #[error("session closed")]
    Closed,
}
