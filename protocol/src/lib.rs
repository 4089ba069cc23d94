//! # outpost-protocol
//!
//! The Outpost wire protocol: every message a client and an edge exchange, how they are
//! encoded, and the signed connect token a client presents to join a match.
//!
//! This crate is pure. It never reads the clock (callers pass `now`), never touches a
//! socket and never spawns; it takes bytes and returns values, or values and returns bytes.
//! That keeps it usable from the edge, the client SDK, the cloud, tests and fuzzers alike.
//!
//! What it is not: a transport. QUIC streams and datagrams live in `outpost-edge` and
//! `outpost-client`; this crate only frames the bytes they carry.
//!
//! ## Wire format
//!
//! Messages use the bincode 1.x default format (little-endian fixed-width integers,
//! `u64` lengths, `u32` enum tags), written and read with the `wincode` crate. Any bincode
//! implementation in any language can speak Outpost; see
//! `docs/decisions/0001-wire-format.md` for why.
//!
//! ```
//! use outpost_protocol::{Datagram, InputFrame, codec};
//!
//! let frame = Datagram::Input(InputFrame {
//!     ack_snapshot_tick: 41,
//!     inputs: vec![0x0e, 0x00, 0x00, 0x00],
//! });
//! let bytes = codec::encode_datagram(&frame)?;
//! assert_eq!(codec::decode_datagram(&bytes)?, frame);
//! # Ok::<(), outpost_protocol::codec::CodecError>(())
//! ```

pub mod addr;
pub mod bits;
pub mod codec;
pub mod config;
pub mod ids;
pub mod link;
pub mod message;
pub mod range;
pub mod replay;
pub mod replication;
pub mod rng;
pub mod schema;
pub mod token;

pub use config::{
    ConfigError, MAX_STATS, MatchConfig, decode_mode_config, encode_mode_config, is_name,
    stats_are_valid,
};
pub use ids::{EntityId, MatchId, PlayerId};
pub use message::*;
pub use token::{
    ConnectToken, MatchGrant, Seat, SignedToken, TokenError, TokenSigner, TokenVerifier,
};

/// Version of the wire protocol spoken by this build. A peer with another version is
/// refused with [`RejectCode::VersionMismatch`].
pub const PROTOCOL_VERSION: u16 = 9;

/// Longest an HTTP client of Outpost's servers should keep a pooled connection idle.
/// The servers close keep-alive connections idle for their header timeout (10 s by
/// default); a client that reuses one just as it is closed sees its request fail, so
/// clients let theirs go well before that.
pub const HTTP_CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// The QUIC ALPN protocol identifier for this protocol version.
pub const ALPN: &[u8] = b"outpost/1";
