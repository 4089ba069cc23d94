//! Encoding and decoding, with every length bounded before allocation.
//!
//! Control messages travel on a QUIC stream as frames: a little-endian `u32` payload
//! length, then the payload. Datagrams carry one [`Datagram`] each, unframed.
//!
//! Decoders never panic and distinguish "need more bytes" (`Ok(None)` from
//! [`decode_frame`]) from "invalid" (`Err`).

use wincode::config::Configuration;

use crate::message::{Control, Datagram};

/// Largest control frame payload accepted, in bytes.
pub const MAX_CONTROL_FRAME: usize = 16 * 1024;
/// Largest datagram accepted, in bytes. QUIC datagrams are far smaller in practice (the
/// path MTU); anything bigger is not ours.
pub const MAX_DATAGRAM: usize = 4 * 1024;
/// Bytes of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// The wire configuration: bincode 1.x defaults, with allocations from a length prefix
/// capped at [`MAX_CONTROL_FRAME`] bytes.
type Wire = Configuration<true, MAX_CONTROL_FRAME>;
const WIRE: Wire = Wire::new();

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input is longer than the protocol allows.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] wincode::ReadError),
    /// A value could not be encoded (a field over its bound).
    #[error("cannot encode message: {0}")]
    Encode(#[from] wincode::WriteError),
}

fn encode<T: wincode::SchemaWrite<Wire, Src = T>>(
    value: &T,
    max: usize,
) -> Result<Vec<u8>, CodecError> {
    let bytes = wincode::config::serialize(value, WIRE)?;
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

fn decode<T: for<'de> wincode::SchemaRead<'de, Wire, Dst = T>>(
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(wincode::config::deserialize_exact(bytes, WIRE)?)
}

/// Encodes a datagram.
pub fn encode_datagram(datagram: &Datagram) -> Result<Vec<u8>, CodecError> {
    encode(datagram, MAX_DATAGRAM)
}

/// Decodes a datagram; trailing bytes are an error.
pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram, CodecError> {
    decode(bytes, MAX_DATAGRAM)
}

/// Encodes a control message's payload (without the frame header).
pub fn encode_control(message: &Control) -> Result<Vec<u8>, CodecError> {
    encode(message, MAX_CONTROL_FRAME)
}

/// Decodes a control message's payload (without the frame header).
pub fn decode_control(payload: &[u8]) -> Result<Control, CodecError> {
    decode(payload, MAX_CONTROL_FRAME)
}

/// Encodes a control message as a frame: length prefix, then payload.
pub fn encode_frame(message: &Control) -> Result<Vec<u8>, CodecError> {
    let payload = encode_control(message)?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Reads a frame header: the payload length, checked against [`MAX_CONTROL_FRAME`].
pub fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_CONTROL_FRAME {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_CONTROL_FRAME,
        });
    }
    Ok(len)
}

/// Decodes the first frame in `buf`. Returns `Ok(None)` when `buf` holds only part of a
/// frame, or the message and how many bytes it used.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Control, usize)>, CodecError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let len = frame_len(*header)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_control(payload)?, FRAME_HEADER_LEN + len)))
}

/// The protocol version of a control payload that starts like a [`Control::Hello`] of any
/// version (tag 0, then a `u16` version), even one this build cannot decode. Lets an edge
/// answer an old or new client with [`crate::RejectCode::VersionMismatch`] instead of
/// "malformed".
pub fn peek_hello_version(payload: &[u8]) -> Option<u16> {
    let tag = u32::from_le_bytes(*payload.first_chunk::<4>()?);
    let version = payload.get(4..6)?;
    (tag == 0).then(|| u16::from_le_bytes([version[0], version[1]]))
}
