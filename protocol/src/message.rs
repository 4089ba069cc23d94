//! Every message of the protocol.
//!
//! Two families travel on two QUIC channels:
//! - [`Control`] on the one bidirectional control stream per player: reliable and ordered
//!   (handshake, match events, clock pings, goodbye), framed by [`crate::codec`].
//! - [`Datagram`] as unreliable QUIC datagrams: inputs up, snapshots down, every tick.

use serde::{Deserialize, Serialize};
use wincode::containers;
use wincode::len::{BincodeLen, FixIntLen};
use wincode::{SchemaRead, SchemaWrite};

use crate::config::MatchConfig;
use crate::ids::{EntityId, MatchId, PlayerId};
use crate::token::SignedToken;

/// Most inputs one [`InputFrame`] may carry: the newest plus redundant copies of the
/// previous ones, so a lost datagram costs nothing.
pub const MAX_INPUTS_PER_FRAME: usize = 8;
/// Largest snapshot body, in bytes (a datagram never carries more).
pub const MAX_SNAPSHOT_BODY: usize = crate::codec::MAX_DATAGRAM;
/// Most players listed in a [`Welcome`] or a [`MatchEvent::MatchEnded`].
pub const MAX_LISTED_PLAYERS: usize = 128;
/// Longest human-readable detail string in a [`Reject`].
pub const MAX_DETAIL_LEN: usize = 256;

// Datagrams go out every tick: their lengths take two bytes, not bincode's eight.
type BatchLen = FixIntLen<u16, MAX_INPUT_BATCH_BYTES>;
type BodyLen = FixIntLen<u16, MAX_SNAPSHOT_BODY>;
type PlayersLen = BincodeLen<{ MAX_LISTED_PLAYERS * size_of::<PlayerScore>() }>;
type DetailLen = BincodeLen<MAX_DETAIL_LEN>;
type SchemaLen = BincodeLen<{ crate::schema::MAX_SCHEMA_BYTES }>;

/// A reliable message on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub enum Control {
    /// Client → edge, first message: who I am and which match I may join.
    Hello(Hello),
    /// Edge → client: you are in.
    Welcome(Welcome),
    /// Edge → client: you are not in; the connection closes after this.
    Reject(Reject),
    /// Edge → client: something happened in the match.
    Event(TickedEvent),
    /// Client → edge: clock probe.
    Ping(Ping),
    /// Edge → client: answer to a [`Control::Ping`].
    Pong(Pong),
    /// Either way: I am leaving, and why.
    Goodbye(GoodbyeReason),
    /// Client → edge: a request the mode's schema declares (a scanned plane, say).
    Request(Request),
    /// Edge → client: the answer to a [`Control::Request`], by its `seq`.
    Answer(Answer),
}

/// First message of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Hello {
    /// Must equal [`crate::PROTOCOL_VERSION`]. Kept first so that an edge can read it
    /// even from a Hello of another version (see [`crate::codec::peek_hello_version`]).
    pub protocol_version: u16,
    /// The signed token the cloud (or the dev tool) minted for this player and match.
    pub connect_token: SignedToken,
    /// Set when rejoining a match after a lost connection: the key from the earlier
    /// [`Welcome`]. It lets the same token be presented again, and only by its holder.
    pub reconnect_key: Option<[u8; 16]>,
}

/// The edge accepted the player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Welcome {
    /// The edge's protocol version.
    pub protocol_version: u16,
    /// The match joined.
    pub match_id: MatchId,
    /// The player, as named by the token.
    pub player_id: PlayerId,
    /// The entity this player controls.
    pub entity: EntityId,
    /// The match's current tick.
    pub tick: u32,
    /// The match configuration in force.
    pub config: MatchConfig,
    /// The mode's schema ([`crate::schema::ModeSchema::encode`]): what the snapshots'
    /// components and fields, the inputs and the events are. A client checks that it
    /// hashes to `config.schema_hash` before decoding anything with it.
    #[wincode(with = "containers::Vec<u8, SchemaLen>")]
    pub schema: Vec<u8>,
    /// Present this in [`Hello::reconnect_key`] to rejoin after a lost connection.
    pub reconnect_key: [u8; 16],
    /// Everyone in the match now, with their scores.
    #[wincode(with = "containers::Vec<PlayerScore, PlayersLen>")]
    pub players: Vec<PlayerScore>,
}

/// One player's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct PlayerScore {
    /// The player.
    pub player: PlayerId,
    /// Their character.
    pub entity: EntityId,
    /// Their score.
    pub score: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Reject {
    /// Stable, machine-readable reason.
    pub code: RejectCode,
    /// Human-readable detail, for logs. At most [`MAX_DETAIL_LEN`] bytes.
    #[wincode(with = "containers::Vec<u8, DetailLen>")]
    pub detail: Vec<u8>,
}

impl Reject {
    /// A reject with a detail message, cut to [`MAX_DETAIL_LEN`] bytes.
    pub fn new(code: RejectCode, detail: &str) -> Self {
        Self {
            code,
            detail: cut(detail).to_vec(),
        }
    }

    /// The detail as text (lossy).
    pub fn detail_text(&self) -> String {
        String::from_utf8_lossy(&self.detail).into_owned()
    }
}

/// Stable reasons for refusing a connection. Never renumbered: new codes go at the end.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, SchemaWrite, SchemaRead,
)]
pub enum RejectCode {
    /// The client speaks another protocol version.
    VersionMismatch,
    /// The Hello could not be decoded, or was not the first message.
    MalformedHello,
    /// The token's signature does not verify with the edge's key.
    BadSignature,
    /// The token has expired.
    Expired,
    /// The token names another edge.
    WrongEdge,
    /// The token was already used (and no valid reconnect key came with it).
    TokenReused,
    /// The token's match configuration is out of bounds.
    InvalidConfig,
    /// The edge hosts as many matches or players as it may.
    EdgeFull,
    /// The match has as many players as its configuration allows.
    MatchFull,
    /// The match has ended.
    MatchOver,
    /// The edge is draining and takes no new players.
    Draining,
    /// No Hello arrived in time.
    Timeout,
    /// The client's QUIC connection does not take datagrams, which carry snapshots.
    DatagramsUnsupported,
    /// The token's match configuration differs from the one the match runs.
    ConfigMismatch,
    /// The token was issued before this edge started (it restarted since; the match
    /// the token was for ended with the old process): matchmake again.
    IssuedBeforeStart,
    /// The token was issued later than the edge's clock allows (clocks disagree by more
    /// than the edge's leeway).
    NotYetValid,
    /// The edge does not host the token's game mode.
    UnknownMode,
    /// The edge's build of the mode describes other state than the token's schema hash
    /// (the cloud, the edge or the client runs another version of the mode).
    SchemaMismatch,
}

impl RejectCode {
    /// Short stable name, used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VersionMismatch => "version_mismatch",
            Self::MalformedHello => "malformed_hello",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::WrongEdge => "wrong_edge",
            Self::TokenReused => "token_reused",
            Self::InvalidConfig => "invalid_config",
            Self::EdgeFull => "edge_full",
            Self::MatchFull => "match_full",
            Self::MatchOver => "match_over",
            Self::Draining => "draining",
            Self::Timeout => "timeout",
            Self::DatagramsUnsupported => "datagrams_unsupported",
            Self::ConfigMismatch => "config_mismatch",
            Self::IssuedBeforeStart => "issued_before_start",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownMode => "unknown_mode",
            Self::SchemaMismatch => "schema_mismatch",
        }
    }
}

/// A match event and the tick it happened on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct TickedEvent {
    /// Simulation tick of the event.
    pub tick: u32,
    /// What happened.
    pub event: MatchEvent,
}

/// Something every player in a match must learn reliably.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub enum MatchEvent {
    /// A player joined (or rejoined) and controls `entity`.
    PlayerJoined {
        /// Who.
        player: PlayerId,
        /// Their character.
        entity: EntityId,
    },
    /// A player left; their character stays for the reconnect grace period.
    PlayerLeft {
        /// Who.
        player: PlayerId,
    },
    /// An event of the game mode: which of the schema's events, and its fields.
    Mode(ModeEvent),
    /// The match is over; final scores, best first.
    MatchEnded {
        /// Why it ended.
        reason: MatchEndReason,
        /// Final standings.
        #[wincode(with = "containers::Vec<PlayerScore, PlayersLen>")]
        scores: Vec<PlayerScore>,
    },
}

/// Most bytes of a [`ModeEvent`]'s fields.
pub const MAX_EVENT_BYTES: usize = 256;

type EventLen = BincodeLen<MAX_EVENT_BYTES>;

/// An event the game mode declared in its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct ModeEvent {
    /// Index of the event in the schema's events.
    pub kind: u16,
    /// Its fields, bit-packed in schema order as whole values, most significant bit
    /// first, zero-padded to a byte ([`crate::replication::Events`]); at most
    /// [`MAX_EVENT_BYTES`].
    #[wincode(with = "containers::Vec<u8, EventLen>")]
    pub fields: Vec<u8>,
}

/// Most bytes of a [`Request`]'s body: what fits one control frame with its header.
pub const MAX_REQUEST_BYTES: usize = crate::codec::MAX_CONTROL_FRAME - 64;

type RequestLen = BincodeLen<MAX_REQUEST_BYTES>;

/// A request the game mode declared in its schema, from a client. Requests are applied
/// in the order sent, at the start of the match's next tick, and each is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Request {
    /// The client's number for it, echoed in the [`Answer`] (+1 per request is usual;
    /// the edge only echoes it).
    pub seq: u32,
    /// Index of the request in the schema's requests.
    pub kind: u16,
    /// Its fields, then each list's count and items, bit-packed in schema order
    /// ([`crate::replication::Requests`]); at most [`MAX_REQUEST_BYTES`].
    #[wincode(with = "containers::Vec<u8, RequestLen>")]
    pub body: Vec<u8>,
}

/// The edge's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Answer {
    /// The request's `seq`.
    pub seq: u32,
    /// Why it was refused; `None`: it was applied.
    pub refused: Option<Refusal>,
}

/// Why a request was refused. A refused request changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Refusal {
    /// Stable, machine-readable reason.
    pub code: RefusalCode,
    /// Human-readable detail. At most [`MAX_DETAIL_LEN`] bytes.
    #[wincode(with = "containers::Vec<u8, DetailLen>")]
    pub detail: Vec<u8>,
}

impl Refusal {
    /// A refusal with a detail message, cut to [`MAX_DETAIL_LEN`] bytes.
    pub fn new(code: RefusalCode, detail: &str) -> Self {
        Self {
            code,
            detail: cut(detail).to_vec(),
        }
    }

    /// The detail as text (lossy).
    pub fn detail_text(&self) -> String {
        String::from_utf8_lossy(&self.detail).into_owned()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail_text())
    }
}

/// Stable reasons for refusing a request. Never renumbered: new codes go at the end.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, SchemaWrite, SchemaRead,
)]
pub enum RefusalCode {
    /// The kind is not one of the schema's requests, or the body does not decode
    /// exactly by its definition.
    Malformed,
    /// The sender has too many requests in flight, or sent more bytes of requests than
    /// the edge takes per second: send it again later.
    Busy,
    /// The request is well formed but over one of the mode's limits (too many vertices,
    /// too many planes for this device or room, …).
    OverLimit,
    /// The mode does not accept it (an id it does not know, a degenerate shape, …).
    Invalid,
    /// The mode takes no requests of this kind, or none at all.
    Unsupported,
}

impl RefusalCode {
    /// Short stable name, used as a metrics label and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Busy => "busy",
            Self::OverLimit => "over_limit",
            Self::Invalid => "invalid",
            Self::Unsupported => "unsupported",
        }
    }
}

/// `detail` cut to at most [`MAX_DETAIL_LEN`] bytes, on a character boundary.
fn cut(detail: &str) -> &[u8] {
    let mut end = detail.len().min(MAX_DETAIL_LEN);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail.as_bytes()[..end]
}

/// Why a match ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub enum MatchEndReason {
    /// The match timer ran out.
    TimeUp,
    /// A player reached the score limit.
    ScoreLimit,
    /// Everyone left and the grace period passed.
    Abandoned,
    /// The edge shut down.
    Shutdown,
}

/// Clock probe from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Ping {
    /// Client's own clock, microseconds, echoed back untouched.
    pub client_time_us: u64,
}

/// Clock answer from the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Pong {
    /// The ping's `client_time_us`.
    pub client_time_us: u64,
    /// The match tick when the edge answered.
    pub server_tick: u32,
}

/// Why a peer is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub enum GoodbyeReason {
    /// The player quit.
    Quit,
    /// The match ended.
    MatchOver,
    /// The edge is shutting down.
    Shutdown,
    /// The peer broke the protocol.
    ProtocolViolation,
    /// The peer could not keep up with reliable traffic.
    TooSlow,
    /// The same player connected again elsewhere.
    Replaced,
}

/// An unreliable message, one per QUIC datagram. Its tag is one byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
#[wincode(tag_encoding = "u8")]
pub enum Datagram {
    /// Client → edge: inputs.
    Input(InputFrame),
    /// Edge → client: state.
    Snapshot(Snapshot),
}

/// Most bytes of an [`InputFrame`]'s input batch.
pub const MAX_INPUT_BATCH_BYTES: usize = 512;

/// Inputs from a client: the newest first, then up to [`MAX_INPUTS_PER_FRAME`]` - 1` earlier
/// ones again, so that losing a datagram loses no input.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct InputFrame {
    /// Newest snapshot tick the client has decoded (its ack): the edge encodes the next
    /// snapshots against it. 0 asks for a keyframe: the client holds no snapshot it can
    /// decode against (none yet, or its baseline was lost or spoiled). Never ack a
    /// snapshot that was not decoded.
    pub ack_snapshot_tick: u32,
    /// The inputs, newest first, bit-packed by the mode's input schema
    /// ([`crate::replication::encode_inputs`]); at most [`MAX_INPUT_BATCH_BYTES`].
    #[wincode(with = "containers::Vec<u8, BatchLen>")]
    pub inputs: Vec<u8>,
}

/// Most simulation ticks one input may stand for.
pub const MAX_INPUT_TICKS: u8 = 8;

/// Replicated state for one client at one tick: a bit-packed body (see [`crate::replication`])
/// holding the client's view of the world, delta-compressed against the view it had at
/// `baseline_tick`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Snapshot {
    /// Simulation tick this state is from.
    pub tick: u32,
    /// Tick of the snapshot this one is a delta against; 0 for a keyframe.
    pub baseline_tick: u32,
    /// Ticks from the reference view back to the baseline: the changed motion fields are
    /// coded against their extrapolation from the view of tick `baseline_tick -
    /// reference_gap` through the baseline ([`crate::replication::Reference`]); 0 for
    /// none (always 0 in a keyframe).
    pub reference_gap: u8,
    /// Newest input sequence of this client the edge has applied.
    pub ack_input_seq: u32,
    /// Ticks left in the match.
    pub ticks_left: u32,
    /// The encoded view, at most [`MAX_SNAPSHOT_BODY`] bytes.
    #[wincode(with = "containers::Vec<u8, BodyLen>")]
    pub body: Vec<u8>,
}

impl Snapshot {
    /// Encoded size of a snapshot datagram without its body: the `Datagram` tag (one
    /// byte), four `u32` fields, the `u8` reference gap and the body's `u16` length.
    pub const HEADER_LEN: usize = 1 + 4 * 4 + 1 + 2;
}
