//! The replay format: a match's configuration and the stream of whole-world snapshots the
//! edge took, in chunks that each start from a keyframe so a player can seek without
//! decoding from the start.
//!
//! ```text
//! file   = "OPRP" version:u16 header_len:u32 header chunk*
//! header = ReplayHeader (bincode format)
//! chunk  = first_tick:u32 last_tick:u32 frames:u32 raw_len:u32 zstd_len:u32 zstd(frames)
//! frame  = tick:u32 body_len:u32 body      (body: a snapshot body, see `replication`,
//!                                            of every entity, against the previous
//!                                            frame of the chunk; the first frame is
//!                                            against nothing: a keyframe)
//! ```
//!
//! The header carries the mode's schema, so any mode's replay decodes with no code of
//! that mode. All integers little-endian. Every length is checked before it is trusted: a reader
//! never allocates more than [`MAX_CHUNK_RAW`] for one chunk and never panics on bytes
//! from the network.

use serde::{Deserialize, Serialize};
use wincode::config::Configuration;
use wincode::{SchemaRead, SchemaWrite};

use wincode::containers;
use wincode::len::BincodeLen;

use crate::config::MatchConfig;
use crate::ids::MatchId;
use crate::replication::{self, Layout, View};
use crate::schema::{MAX_SCHEMA_BYTES, ModeSchema};

/// First bytes of every replay.
pub const MAGIC: &[u8; 4] = b"OPRP";
/// Format version this build writes and reads.
pub const VERSION: u16 = 3;
/// Largest uncompressed chunk accepted, bytes.
pub const MAX_CHUNK_RAW: usize = 32 * 1024 * 1024;
/// Largest header accepted, bytes.
const MAX_HEADER: usize = MAX_SCHEMA_BYTES + 4096;
/// Frames per chunk the writer uses by default (5 s at 30 snapshots per second).
pub const FRAMES_PER_CHUNK: u32 = 150;
/// zstd level: fast, and snapshot deltas compress well at any level.
const ZSTD_LEVEL: i32 = 3;

type Wire = Configuration<true, MAX_HEADER>;
type SchemaLen = BincodeLen<MAX_SCHEMA_BYTES>;
const WIRE: Wire = Wire::new();

/// What a replay is of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct ReplayHeader {
    /// The match.
    pub match_id: MatchId,
    /// Its configuration.
    pub config: MatchConfig,
    /// The mode's schema ([`ModeSchema::encode`]); its hash is `config.schema_hash`.
    #[wincode(with = "containers::Vec<u8, SchemaLen>")]
    pub schema: Vec<u8>,
    /// When the match started, Unix milliseconds.
    pub started_at_ms: u64,
}

/// Why a replay did not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Not a replay, or a version this build does not read.
    #[error("not an Outpost replay (version {VERSION})")]
    NotAReplay,
    /// A length or count points past the end or over a limit.
    #[error("replay is truncated or malformed: {0}")]
    Malformed(&'static str),
    /// A chunk did not decompress or decode.
    #[error("replay chunk {0} is corrupt")]
    CorruptChunk(usize),
}

/// Records whole-world views as they are taken, compressing each finished chunk.
pub struct ReplayWriter {
    layout: Layout,
    out: Vec<u8>,
    chunk: Vec<u8>,
    frames: u32,
    first_tick: u32,
    last_tick: u32,
    previous: View,
    frames_per_chunk: u32,
    max_bytes: usize,
    truncated: bool,
}

impl ReplayWriter {
    /// Starts a replay of `header`'s match, whose entities `schema` describes (it must be
    /// the schema of `header.schema`). Frames past `max_bytes` of output are not
    /// recorded (the replay ends there and [`ReplayWriter::truncated`] says so).
    pub fn new(header: &ReplayHeader, schema: &ModeSchema, max_bytes: usize) -> Self {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let encoded = wincode::config::serialize(header, WIRE).unwrap_or_default();
        out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        out.extend_from_slice(&encoded);
        Self {
            layout: Layout::new(schema),
            out,
            chunk: Vec::new(),
            frames: 0,
            first_tick: 0,
            last_tick: 0,
            previous: View::new(),
            frames_per_chunk: FRAMES_PER_CHUNK,
            max_bytes,
            truncated: false,
        }
    }

    /// Records the world at `tick`: `view` holds every entity, sorted by id.
    pub fn push(&mut self, tick: u32, view: &View) {
        if self.truncated {
            return;
        }
        if self.out.len() + self.chunk.len() > self.max_bytes {
            self.truncated = true;
            return;
        }
        if self.frames == 0 {
            self.first_tick = tick;
            self.previous.clear();
        }
        let body = replication::encode(&self.layout, &self.previous, view);
        self.chunk.extend_from_slice(&tick.to_le_bytes());
        self.chunk
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(&body);
        self.previous.clone_from(view);
        self.frames += 1;
        self.last_tick = tick;
        if self.frames >= self.frames_per_chunk {
            self.flush();
        }
    }

    /// Whether frames were left out for size.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn flush(&mut self) {
        if self.frames == 0 {
            return;
        }
        let compressed = zstd::bulk::compress(&self.chunk, ZSTD_LEVEL).unwrap_or_default();
        for value in [
            self.first_tick,
            self.last_tick,
            self.frames,
            self.chunk.len() as u32,
            compressed.len() as u32,
        ] {
            self.out.extend_from_slice(&value.to_le_bytes());
        }
        self.out.extend_from_slice(&compressed);
        self.chunk.clear();
        self.frames = 0;
    }

    /// Ends the replay and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out
    }
}

/// A chunk's place in a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Tick of its first frame.
    pub first_tick: u32,
    /// Tick of its last frame.
    pub last_tick: u32,
    /// Frames in it.
    pub frames: u32,
    raw_len: usize,
    start: usize,
    len: usize,
}

/// A parsed replay: header and chunk table; chunks are decoded on demand.
#[derive(Debug, Clone)]
pub struct ReplayReader {
    header: ReplayHeader,
    schema: ModeSchema,
    layout: Layout,
    chunks: Vec<ChunkInfo>,
    bytes: Vec<u8>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    bytes
        .get(at..end)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

impl ReplayReader {
    /// Checks the header and the chunk table.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, ReplayError> {
        if bytes.get(..4) != Some(MAGIC.as_slice())
            || bytes.get(4..6) != Some(VERSION.to_le_bytes().as_slice())
        {
            return Err(ReplayError::NotAReplay);
        }
        let header_len =
            read_u32(&bytes, 6).ok_or(ReplayError::Malformed("header length"))? as usize;
        if header_len > MAX_HEADER {
            return Err(ReplayError::Malformed("header too long"));
        }
        let header_bytes = bytes
            .get(10..10 + header_len)
            .ok_or(ReplayError::Malformed("header"))?;
        let header: ReplayHeader = wincode::config::deserialize_exact(header_bytes, WIRE)
            .map_err(|_| ReplayError::Malformed("header"))?;
        header
            .config
            .validate()
            .map_err(|_| ReplayError::Malformed("match config"))?;
        let schema = ModeSchema::verified(&header.schema, header.config.schema_hash)
            .map_err(|_| ReplayError::Malformed("schema"))?;
        let mut chunks = Vec::new();
        let mut at = 10 + header_len;
        let mut previous_last: Option<u32> = None;
        while at < bytes.len() {
            let field = |i: usize| read_u32(&bytes, at + 4 * i);
            let (Some(first_tick), Some(last_tick), Some(frames), Some(raw_len), Some(len)) =
                (field(0), field(1), field(2), field(3), field(4))
            else {
                return Err(ReplayError::Malformed("chunk header"));
            };
            let start = at + 20;
            let end = start
                .checked_add(len as usize)
                .filter(|&end| end <= bytes.len())
                .ok_or(ReplayError::Malformed("chunk length"))?;
            if raw_len as usize > MAX_CHUNK_RAW
                || frames == 0
                || last_tick < first_tick
                || previous_last.is_some_and(|p| first_tick <= p)
            {
                return Err(ReplayError::Malformed("chunk table"));
            }
            previous_last = Some(last_tick);
            chunks.push(ChunkInfo {
                first_tick,
                last_tick,
                frames,
                raw_len: raw_len as usize,
                start,
                len: len as usize,
            });
            at = end;
        }
        Ok(Self {
            layout: Layout::new(&schema),
            schema,
            header,
            chunks,
            bytes,
        })
    }

    /// What the replay is of.
    pub fn header(&self) -> &ReplayHeader {
        &self.header
    }

    /// The mode's schema: what the frames' components and fields are.
    pub fn schema(&self) -> &ModeSchema {
        &self.schema
    }

    /// The schema's layout, for reading the frames' records.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Its chunks, in tick order.
    pub fn chunks(&self) -> &[ChunkInfo] {
        &self.chunks
    }

    /// The chunk holding `tick` (or the first after it).
    pub fn chunk_at(&self, tick: u32) -> Option<usize> {
        let i = self.chunks.partition_point(|c| c.last_tick < tick);
        (i < self.chunks.len()).then_some(i)
    }

    /// Decodes chunk `index`: its frames in tick order.
    pub fn decode_chunk(&self, index: usize) -> Result<Vec<(u32, View)>, ReplayError> {
        let corrupt = || ReplayError::CorruptChunk(index);
        let info = self.chunks.get(index).ok_or_else(corrupt)?;
        let compressed = &self.bytes[info.start..info.start + info.len];
        let raw = zstd::bulk::decompress(compressed, info.raw_len).map_err(|_| corrupt())?;
        let mut frames = Vec::with_capacity(info.frames.min(10_000) as usize);
        let mut at = 0;
        let mut previous = View::new();
        let mut last_tick = None;
        while at < raw.len() {
            let tick = read_u32(&raw, at).ok_or_else(corrupt)?;
            let len = read_u32(&raw, at + 4).ok_or_else(corrupt)? as usize;
            let body = raw.get(at + 8..at + 8 + len).ok_or_else(corrupt)?;
            if last_tick.is_some_and(|t| tick <= t) {
                return Err(corrupt());
            }
            let view = replication::decode(&self.layout, &previous, body).map_err(|_| corrupt())?;
            previous.clone_from(&view);
            frames.push((tick, view));
            last_tick = Some(tick);
            at += 8 + len;
        }
        if frames.len() != info.frames as usize {
            return Err(corrupt());
        }
        Ok(frames)
    }
}
