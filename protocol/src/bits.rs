//! Bit-level building blocks of snapshot bodies and input batches: the writer and reader
//! (most significant bit first), the count and id-gap codes, and the decode error.

use bitstream_io::{BigEndian, BitRead, BitReader, BitWrite, BitWriter};

/// Most entities one view may hold.
pub const MAX_VIEW_ENTITIES: usize = 4096;

/// Why a snapshot body did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The body ended early.
    #[error("snapshot body truncated")]
    Truncated,
    /// A count is larger than the protocol allows.
    #[error("snapshot body lists too many entities")]
    TooMany,
    /// Ids are not strictly increasing, or overflow.
    #[error("snapshot body ids out of order")]
    BadId,
    /// A change or removal names an entity the baseline lacks, or a new entity one it has.
    #[error("snapshot body does not match its baseline")]
    BaselineMismatch,
    /// A value is outside the grid.
    #[error("snapshot body value out of range")]
    OutOfRange,
}

impl From<std::io::Error> for DeltaError {
    fn from(_: std::io::Error) -> Self {
        Self::Truncated
    }
}

pub(crate) type Writer = BitWriter<Vec<u8>, BigEndian>;
pub(crate) type Reader<'a> = BitReader<&'a [u8], BigEndian>;

// Writing into a Vec cannot fail; these helpers keep the encoder free of error plumbing.
pub(crate) fn put(w: &mut Writer, bits: u32, value: u32) {
    if bits > 0 {
        let _ = w.write_var::<u32>(bits, value);
    }
}

pub(crate) fn put_bit(w: &mut Writer, bit: bool) {
    let _ = w.write_bit(bit);
}

pub(crate) fn get(r: &mut Reader<'_>, bits: u32) -> Result<u32, DeltaError> {
    if bits == 0 {
        return Ok(0);
    }
    Ok(r.read_var::<u32>(bits)?)
}

/// Counts: `0`+4 bits (0..16), `10`+8 bits (16..272), `11`+16 bits.
pub fn write_count(w: &mut Writer, n: u32) {
    if n < 16 {
        put_bit(w, false);
        put(w, 4, n);
    } else if n < 272 {
        put(w, 2, 0b10);
        put(w, 8, n - 16);
    } else {
        put(w, 2, 0b11);
        put(w, 16, n.min(0xffff));
    }
}

pub(crate) fn count_bits(n: u32) -> u32 {
    if n < 16 {
        5
    } else if n < 272 {
        10
    } else {
        18
    }
}

pub(crate) fn read_count(r: &mut Reader<'_>) -> Result<u32, DeltaError> {
    if !r.read_bit()? {
        return get(r, 4);
    }
    if !r.read_bit()? {
        Ok(get(r, 8)? + 16)
    } else {
        get(r, 16)
    }
}

/// Id gaps (≥ 1): `1` for 1, `01`+3 bits (2..10), `001`+6 bits (10..74), `000`+32 bits.
pub fn write_gap(w: &mut Writer, gap: u32) {
    if gap == 1 {
        put_bit(w, true);
    } else if gap < 10 {
        put(w, 2, 0b01);
        put(w, 3, gap - 2);
    } else if gap < 74 {
        put(w, 3, 0b001);
        put(w, 6, gap - 10);
    } else {
        put(w, 3, 0b000);
        put(w, 32, gap);
    }
}

pub(crate) fn read_gap(r: &mut Reader<'_>) -> Result<u32, DeltaError> {
    if r.read_bit()? {
        return Ok(1);
    }
    if r.read_bit()? {
        return Ok(get(r, 3)? + 2);
    }
    if r.read_bit()? {
        return Ok(get(r, 6)? + 10);
    }
    let gap = get(r, 32)?;
    if gap == 0 {
        Err(DeltaError::BadId)
    } else {
        Ok(gap)
    }
}
