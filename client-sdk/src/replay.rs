//! Playing back a match replay (downloaded with [`crate::CloudClient::download_replay`]):
//! seek to any tick, then read world states in time order. Any mode's replay plays: the
//! replay carries the mode's schema, which says what each entity's components and
//! fields are.

use outpost_protocol::replay::{ReplayError, ReplayHeader, ReplayReader};
use outpost_protocol::replication::View;
use outpost_protocol::schema::ModeSchema;

/// The world at one recorded tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFrame {
    /// The tick.
    pub tick: u32,
    /// Every entity, by id: its components (bit `i` of a record's mask is the schema's
    /// component `i`) and their quantized fields.
    pub world: View,
}

/// Reads a replay forward from any point. Decodes one chunk (a few seconds) at a time.
pub struct ReplayPlayer {
    reader: ReplayReader,
    chunk: usize,
    frames: std::vec::IntoIter<(u32, View)>,
    from_tick: u32,
}

impl ReplayPlayer {
    /// Parses a replay; fails on bytes that are not one (never panics).
    pub fn new(bytes: Vec<u8>) -> Result<Self, ReplayError> {
        let reader = ReplayReader::parse(bytes)?;
        Ok(Self {
            reader,
            chunk: 0,
            frames: Vec::new().into_iter(),
            from_tick: 0,
        })
    }

    /// What the replay is of.
    pub fn header(&self) -> &ReplayHeader {
        self.reader.header()
    }

    /// The mode's schema.
    pub fn schema(&self) -> &ModeSchema {
        self.reader.schema()
    }

    /// First and last recorded ticks (`None` for an empty replay).
    pub fn ticks(&self) -> Option<(u32, u32)> {
        let chunks = self.reader.chunks();
        Some((chunks.first()?.first_tick, chunks.last()?.last_tick))
    }

    /// Moves so the next frame is the first at or after `tick`.
    pub fn seek(&mut self, tick: u32) {
        self.chunk = self
            .reader
            .chunk_at(tick)
            .unwrap_or(self.reader.chunks().len());
        self.frames = Vec::new().into_iter();
        self.from_tick = tick;
    }

    /// The next frame in time order; `Ok(None)` at the end.
    pub fn next_frame(&mut self) -> Result<Option<ReplayFrame>, ReplayError> {
        loop {
            if let Some((tick, view)) = self.frames.next() {
                if tick < self.from_tick {
                    continue;
                }
                return Ok(Some(ReplayFrame { tick, world: view }));
            }
            if self.chunk >= self.reader.chunks().len() {
                return Ok(None);
            }
            self.frames = self.reader.decode_chunk(self.chunk)?.into_iter();
            self.chunk += 1;
        }
    }
}

impl Iterator for ReplayPlayer {
    type Item = Result<ReplayFrame, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}
