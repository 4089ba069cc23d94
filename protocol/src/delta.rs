//! Snapshot bodies: a client's view of the world, delta-compressed against a view it
//! already has, bit-packed.
//!
//! A [`View`] is what one client knows: quantized entities sorted by id. The edge keeps
//! the views it sent each client by tick and encodes the next one against the newest the
//! client acknowledged ([`encode`]); the client keeps the views it received and decodes
//! against the same baseline ([`decode`]). With no usable baseline the edge encodes
//! against the empty view: a keyframe.
//!
//! Layout (all counts and ids variable-length coded, see [`write_count`] and
//! [`write_gap`]):
//!
//! ```text
//! removed count, then each removed id as a gap from the previous
//! entry count,   then each entry: id gap, new?(1)
//!   new:     kind(1) position(full) rotation(2+30) motion?(1) [velocity(45) grounded(1)]
//!   changed: pos?(1) [delta, 4 size classes] rot?(1) [delta or full] motion?(1) [present?(1) …]
//! ```
//!
//! Entities present in both views with equal values are not mentioned at all.

use bitstream_io::{BigEndian, BitRead, BitReader, BitWrite, BitWriter};

use crate::ids::EntityId;
use crate::message::EntityKind;
use crate::quantize::{QPosition, QRotation, QVelocity, Quantizer, VELOCITY_BITS};

/// Most entities one view may hold.
pub const MAX_VIEW_ENTITIES: usize = 4096;

/// A character's motion, sent only for the client's own character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QMotion {
    /// Velocity.
    pub velocity: QVelocity,
    /// Standing on something.
    pub grounded: bool,
}

/// One entity as a client knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityView {
    /// Which entity.
    pub id: EntityId,
    /// What it is.
    pub kind: EntityKind,
    /// Where.
    pub position: QPosition,
    /// Which way it faces.
    pub rotation: QRotation,
    /// How it moves (own character only).
    pub motion: Option<QMotion>,
}

/// A client's view: entities sorted by id, unique.
pub type View = Vec<EntityView>;

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

/// Bits [`write_gap`] spends on a gap.
pub fn gap_bits(gap: u32) -> u32 {
    if gap == 1 {
        1
    } else if gap < 10 {
        5
    } else if gap < 74 {
        9
    } else {
        35
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

/// Position delta size classes: bits per axis of a signed delta.
const POSITION_CLASSES: [u32; 3] = [6, 10, 14];

fn position_delta_class(base: QPosition, cur: QPosition) -> Option<usize> {
    let worst = (0..3)
        .map(|a| (i64::from(cur.0[a]) - i64::from(base.0[a])).unsigned_abs())
        .max()?;
    POSITION_CLASSES
        .iter()
        .position(|&bits| worst < (1u64 << (bits - 1)))
}

fn rotation_delta_fits(base: QRotation, cur: QRotation) -> bool {
    base.largest == cur.largest
        && (0..3).all(|i| (i32::from(cur.components[i]) - i32::from(base.components[i])).abs() < 16)
}

/// Bits an entry costs, not counting its id gap. `base` is the entity in the baseline,
/// `None` if it is new to it.
pub fn entry_bits(quantizer: &Quantizer, base: Option<&EntityView>, cur: &EntityView) -> u32 {
    let motion_bits = |m: &Option<QMotion>| {
        if m.is_some() {
            1 + 3 * VELOCITY_BITS + 1
        } else {
            1
        }
    };
    match base {
        None => {
            1 + 1 + quantizer.position_bits().iter().sum::<u32>() + 32 + motion_bits(&cur.motion)
        }
        Some(base) => {
            let mut bits = 1 + 3;
            if base.position != cur.position {
                bits += match position_delta_class(base.position, cur.position) {
                    Some(class) => (class as u32 + 1).min(3) + 3 * POSITION_CLASSES[class],
                    None => 3 + quantizer.position_bits().iter().sum::<u32>(),
                };
            }
            if base.rotation != cur.rotation {
                bits += if rotation_delta_fits(base.rotation, cur.rotation) {
                    1 + 15
                } else {
                    1 + 32
                };
            }
            if base.motion != cur.motion {
                bits += motion_bits(&cur.motion);
            }
            bits
        }
    }
}

fn write_position_full(w: &mut Writer, quantizer: &Quantizer, p: QPosition) {
    for (axis, bits) in quantizer.position_bits().into_iter().enumerate() {
        put(w, bits, p.0[axis]);
    }
}

fn write_rotation_full(w: &mut Writer, r: QRotation) {
    put(w, 2, u32::from(r.largest));
    for c in r.components {
        put(w, 10, u32::from(c));
    }
}

fn write_motion(w: &mut Writer, m: &Option<QMotion>) {
    put_bit(w, m.is_some());
    if let Some(m) = m {
        for c in m.velocity.0 {
            put(w, VELOCITY_BITS, c);
        }
        put_bit(w, m.grounded);
    }
}

fn write_entry(w: &mut Writer, quantizer: &Quantizer, base: Option<&EntityView>, cur: &EntityView) {
    put_bit(w, base.is_none());
    let Some(base) = base else {
        put_bit(w, cur.kind == EntityKind::Prop);
        write_position_full(w, quantizer, cur.position);
        write_rotation_full(w, cur.rotation);
        write_motion(w, &cur.motion);
        return;
    };
    put_bit(w, base.position != cur.position);
    if base.position != cur.position {
        match position_delta_class(base.position, cur.position) {
            Some(class) => {
                // Class prefixes: 0, 10, 110; 111 is a full position.
                match class {
                    0 => put_bit(w, false),
                    1 => put(w, 2, 0b10),
                    _ => put(w, 3, 0b110),
                }
                let bits = POSITION_CLASSES[class];
                for axis in 0..3 {
                    let d = i64::from(cur.position.0[axis]) - i64::from(base.position.0[axis]);
                    put(w, bits, (d as u32) & ((1u32 << bits) - 1));
                }
            }
            None => {
                put(w, 3, 0b111);
                write_position_full(w, quantizer, cur.position);
            }
        }
    }
    put_bit(w, base.rotation != cur.rotation);
    if base.rotation != cur.rotation {
        let small = rotation_delta_fits(base.rotation, cur.rotation);
        put_bit(w, small);
        if small {
            for i in 0..3 {
                let d =
                    i32::from(cur.rotation.components[i]) - i32::from(base.rotation.components[i]);
                put(w, 5, (d as u32) & 0x1f);
            }
        } else {
            write_rotation_full(w, cur.rotation);
        }
    }
    put_bit(w, base.motion != cur.motion);
    if base.motion != cur.motion {
        write_motion(w, &cur.motion);
    }
}

/// Encodes `current` against `baseline` (both sorted by id). Returns the body bytes.
///
/// An entity's kind is sent only when it is new to the baseline: network ids are never
/// reused within a match, so an id keeps its kind. Id 0 is reserved (ids are coded as
/// gaps from 0): an entity with id 0 is left out rather than corrupting the body.
pub fn encode(quantizer: &Quantizer, baseline: &[EntityView], current: &[EntityView]) -> Vec<u8> {
    let baseline: Vec<&EntityView> = baseline.iter().filter(|e| e.id.0 != 0).collect();
    let current: Vec<&EntityView> = current.iter().filter(|e| e.id.0 != 0).collect();
    let mut removed = Vec::new();
    let mut entries: Vec<(Option<&EntityView>, &EntityView)> = Vec::new();
    let (mut b, mut c) = (0, 0);
    while b < baseline.len() || c < current.len() {
        match (baseline.get(b).copied(), current.get(c).copied()) {
            (Some(base), Some(cur)) if base.id == cur.id => {
                if base != cur {
                    entries.push((Some(base), cur));
                }
                b += 1;
                c += 1;
            }
            (Some(base), Some(cur)) if base.id < cur.id => {
                removed.push(base.id);
                b += 1;
            }
            (Some(base), None) => {
                removed.push(base.id);
                b += 1;
            }
            (_, Some(cur)) => {
                entries.push((None, cur));
                c += 1;
            }
            (None, None) => break,
        }
    }
    // Sized for a typical body up front: growing it byte by byte costs more than the
    // encoding.
    let mut w = Writer::new(Vec::with_capacity(
        8 + 2 * removed.len() + 16 * entries.len(),
    ));
    write_count(&mut w, removed.len() as u32);
    let mut previous = 0u32;
    for id in removed {
        write_gap(&mut w, id.0 - previous);
        previous = id.0;
    }
    write_count(&mut w, entries.len() as u32);
    let mut previous = 0u32;
    for (base, cur) in entries {
        write_gap(&mut w, cur.id.0 - previous);
        previous = cur.id.0;
        write_entry(&mut w, quantizer, base, cur);
    }
    let _ = w.byte_align();
    w.into_writer()
}

/// Bits of the two counts, for budgeting.
pub fn header_bits(removed: u32, entries: u32) -> u32 {
    count_bits(removed) + count_bits(entries)
}

fn read_position_full(r: &mut Reader<'_>, quantizer: &Quantizer) -> Result<QPosition, DeltaError> {
    let bits = quantizer.position_bits();
    let p = QPosition([get(r, bits[0])?, get(r, bits[1])?, get(r, bits[2])?]);
    if quantizer.contains(p) {
        Ok(p)
    } else {
        Err(DeltaError::OutOfRange)
    }
}

fn read_rotation_full(r: &mut Reader<'_>) -> Result<QRotation, DeltaError> {
    let largest = get(r, 2)? as u8;
    let mut components = [0u16; 3];
    for c in &mut components {
        *c = get(r, 10)? as u16;
    }
    Ok(QRotation {
        largest,
        components,
    })
}

fn read_motion(r: &mut Reader<'_>) -> Result<Option<QMotion>, DeltaError> {
    if !r.read_bit()? {
        return Ok(None);
    }
    let velocity = QVelocity([
        get(r, VELOCITY_BITS)?,
        get(r, VELOCITY_BITS)?,
        get(r, VELOCITY_BITS)?,
    ]);
    Ok(Some(QMotion {
        velocity,
        grounded: r.read_bit()?,
    }))
}

pub(crate) fn sign_extend(value: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    (i64::from(value) << shift) >> shift
}

fn read_changed(
    r: &mut Reader<'_>,
    quantizer: &Quantizer,
    base: &EntityView,
) -> Result<EntityView, DeltaError> {
    let mut cur = *base;
    if r.read_bit()? {
        let class = if !r.read_bit()? {
            Some(0)
        } else if !r.read_bit()? {
            Some(1)
        } else if !r.read_bit()? {
            Some(2)
        } else {
            None
        };
        cur.position = match class {
            Some(class) => {
                let bits = POSITION_CLASSES[class];
                let mut p = [0u32; 3];
                for (axis, slot) in p.iter_mut().enumerate() {
                    let d = sign_extend(get(r, bits)?, bits);
                    let v = i64::from(base.position.0[axis]) + d;
                    *slot = u32::try_from(v).map_err(|_| DeltaError::OutOfRange)?;
                }
                let p = QPosition(p);
                if !quantizer.contains(p) {
                    return Err(DeltaError::OutOfRange);
                }
                p
            }
            None => read_position_full(r, quantizer)?,
        };
    }
    if r.read_bit()? {
        cur.rotation = if r.read_bit()? {
            let mut components = base.rotation.components;
            for c in &mut components {
                let v = i32::from(*c) + sign_extend(get(r, 5)?, 5) as i32;
                *c = u16::try_from(v)
                    .ok()
                    .filter(|&v| v < 1024)
                    .ok_or(DeltaError::OutOfRange)?;
            }
            QRotation {
                largest: base.rotation.largest,
                components,
            }
        } else {
            read_rotation_full(r)?
        };
    }
    if r.read_bit()? {
        cur.motion = read_motion(r)?;
    }
    Ok(cur)
}

/// Decodes a body against `baseline` (sorted by id), giving the new view.
pub fn decode(
    quantizer: &Quantizer,
    baseline: &[EntityView],
    body: &[u8],
) -> Result<View, DeltaError> {
    let mut r = Reader::new(body);
    let removed_count = read_count(&mut r)? as usize;
    if removed_count > baseline.len() {
        return Err(DeltaError::TooMany);
    }
    let mut removed = Vec::with_capacity(removed_count);
    let mut previous = 0u32;
    for _ in 0..removed_count {
        let id = previous
            .checked_add(read_gap(&mut r)?)
            .ok_or(DeltaError::BadId)?;
        removed.push(EntityId(id));
        previous = id;
    }
    let entry_count = read_count(&mut r)? as usize;
    if entry_count > MAX_VIEW_ENTITIES || entry_count * 2 > body.len() * 8 {
        return Err(DeltaError::TooMany);
    }
    let mut view: View = Vec::with_capacity((baseline.len() + entry_count).min(MAX_VIEW_ENTITIES));
    let mut b = 0;
    let mut gone = removed.iter().peekable();
    let mut previous = 0u32;
    // Copies baseline entities below `id` (minus removed ones) into the view.
    let mut carry =
        |view: &mut View, upto: Option<EntityId>, b: &mut usize| -> Result<(), DeltaError> {
            while let Some(base) = baseline.get(*b) {
                if upto.is_some_and(|id| base.id >= id) {
                    break;
                }
                if gone.peek().is_some_and(|&&id| id == base.id) {
                    gone.next();
                } else {
                    view.push(*base);
                }
                *b += 1;
            }
            Ok(())
        };
    for _ in 0..entry_count {
        let id = EntityId(
            previous
                .checked_add(read_gap(&mut r)?)
                .ok_or(DeltaError::BadId)?,
        );
        previous = id.0;
        carry(&mut view, Some(id), &mut b)?;
        let is_new = r.read_bit()?;
        let base = baseline.get(b).filter(|base| base.id == id);
        let entry = match (is_new, base) {
            (true, None) => {
                let kind = if r.read_bit()? {
                    EntityKind::Prop
                } else {
                    EntityKind::Player
                };
                let position = read_position_full(&mut r, quantizer)?;
                let rotation = read_rotation_full(&mut r)?;
                let motion = read_motion(&mut r)?;
                EntityView {
                    id,
                    kind,
                    position,
                    rotation,
                    motion,
                }
            }
            (false, Some(base)) => {
                if removed.binary_search(&id).is_ok() {
                    return Err(DeltaError::BaselineMismatch);
                }
                b += 1;
                read_changed(&mut r, quantizer, base)?
            }
            _ => return Err(DeltaError::BaselineMismatch),
        };
        view.push(entry);
        if view.len() > MAX_VIEW_ENTITIES {
            return Err(DeltaError::TooMany);
        }
    }
    carry(&mut view, None, &mut b)?;
    if gone.next().is_some() {
        // A removal named an entity the baseline does not have.
        return Err(DeltaError::BaselineMismatch);
    }
    Ok(view)
}
