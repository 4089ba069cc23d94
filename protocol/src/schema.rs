//! A game mode's wire schema: what its replicated components, inputs and events are made
//! of, field by field, with the quantization each field is sent at.
//!
//! The schema describes itself: it travels to the client when it joins, so a client in
//! any language decodes any mode's snapshots, inputs and events from the schema alone,
//! with no code generated from the mode. Its [`ModeSchema::hash`] rides in the match
//! configuration inside the connect token, so a client and an edge that disagree on a
//! mode refuse each other cleanly instead of misreading bits.
//!
//! Every field quantizes to one or more unsigned integers ("slots") of a fixed bit width;
//! [`FieldKind`] gives the formulas. Encoding (see `docs/protocol.md`): bincode 1.x layout
//! — little-endian fixed-width integers, `f32` as IEEE 754 bits, `u64` lengths before
//! strings and lists, `u32` enum tags — read back with every count and length bounded.

use sha2::{Digest, Sha256};

use crate::ids::EntityId;

/// Most components one schema declares (a component set is a 64-bit mask).
pub const MAX_COMPONENTS: usize = 64;
/// Most fields one component, input or event has.
pub const MAX_FIELDS: usize = 16;
/// Most reliable event types one schema declares.
pub const MAX_EVENTS: usize = 64;
/// Most request types one schema declares.
pub const MAX_REQUESTS: usize = 64;
/// Most lists one request carries.
pub const MAX_LISTS: usize = 4;
/// Most items a request's list may be declared to hold.
pub const MAX_LIST_ITEMS: u16 = 4096;
/// Longest name (of a mode, component, field, event, enum variant or flag), bytes.
pub const MAX_NAME: usize = 32;
/// Most variants of an enum, or flags of a flag set.
pub const MAX_VARIANTS: usize = 32;
/// Longest text field, bytes of UTF-8.
pub const MAX_TEXT: usize = 64;
/// Most steps a ranged field (a position axis, a float) may have: 24 bits.
pub const MAX_STEPS: u32 = (1 << 24) - 1;
/// Largest encoded schema, bytes.
pub const MAX_SCHEMA_BYTES: usize = 12 * 1024;
/// The schema format this build writes and reads.
pub const SCHEMA_FORMAT: u16 = 2;

/// Who receives a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Every client that has the entity in view.
    Everyone,
    /// Only the client whose player owns the entity.
    Owner,
    /// Every client with the entity in view but its owner's: what the owner has better
    /// itself (an AR device's own pose, which it measured and sent).
    Others,
}

/// How one field is quantized and sent.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A position: three axes, each from `min` to `max` in steps of `step` metres.
    /// Slots: 3, each `round((v - min) / step)` clamped to `0..=steps`, where
    /// `steps = ceil((max - min) / step)`; bits per axis: the bit length of `steps`.
    /// The first position field of the schema is what interest measures distance by.
    Position {
        /// Lowest corner.
        min: [f32; 3],
        /// Highest corner.
        max: [f32; 3],
        /// Resolution.
        step: f32,
    },
    /// Any other 3-vector (a velocity, an extent): quantized as [`FieldKind::Position`].
    Vector {
        /// Lowest value per axis.
        min: [f32; 3],
        /// Highest value per axis.
        max: [f32; 3],
        /// Resolution.
        step: f32,
    },
    /// A rotation as a "smallest three" quaternion: slot 0 is the index (0..4) of the
    /// dropped largest component (2 bits), slots 1–3 the others, each
    /// `round((c·√2·s + 1) / 2 · (2^bits − 1))` where `s` makes the dropped one positive.
    Rotation {
        /// Bits per kept component, 4..=15.
        bits: u8,
    },
    /// An integer from `min` to `max`. Slot: `v − min`, bits: the bit length of
    /// `max − min`.
    Int {
        /// Smallest value.
        min: i32,
        /// Largest value.
        max: i32,
    },
    /// A number from `min` to `max` in steps of `step`: one slot, as a position axis.
    Float {
        /// Smallest value.
        min: f32,
        /// Largest value.
        max: f32,
        /// Resolution.
        step: f32,
    },
    /// One of named variants. Slot: the index; bits: the bit length of `count − 1`.
    Enum {
        /// Variant names, in index order.
        variants: Vec<String>,
    },
    /// A set of named flags. Slot: bit *i* set when flag *i* is; bits: the count.
    Flags {
        /// Flag names, in bit order.
        names: Vec<String>,
    },
    /// A yes/no: one 1-bit slot.
    Bool,
    /// A reference to an entity of the match: its id (0 for none). One 32-bit slot.
    Entity,
    /// Short UTF-8 text of at most `max_len` bytes. Slots: the length, then the bytes
    /// packed four to a slot, little end first; on the wire the length takes the bit
    /// length of `max_len` bits and each byte 8.
    Text {
        /// Longest, bytes, 1..=64.
        max_len: u8,
    },
}

/// A named field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// Its name: `[a-z][a-z0-9_]*`, at most [`MAX_NAME`] bytes.
    pub name: String,
    /// How it is sent.
    pub kind: FieldKind,
}

impl FieldDef {
    /// A field.
    pub fn new(name: &str, kind: FieldKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
        }
    }
}

/// A replicated component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDef {
    /// Its name.
    pub name: String,
    /// Its fields, in wire order (none: a tag, whose presence is the information).
    pub fields: Vec<FieldDef>,
    /// Who receives it.
    pub visibility: Visibility,
    /// Higher is sent first when a snapshot must be cut to the bandwidth budget; an
    /// entity's priority is the highest of its components'.
    pub priority: u8,
}

/// A reliable event type.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    /// Its name.
    pub name: String,
    /// Its fields.
    pub fields: Vec<FieldDef>,
}

/// A request type: what a client may ask of the mode, reliably, on its control stream
/// ([`crate::Request`]), and the edge answers ([`crate::Answer`]). Its fields, then each
/// list: a count, then that many items of the list's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestDef {
    /// Its name.
    pub name: String,
    /// Its fields.
    pub fields: Vec<FieldDef>,
    /// Its lists (at most [`MAX_LISTS`]), after the fields.
    pub lists: Vec<ListDef>,
}

/// A list in a request: up to `max_items` items, each of these fields (a mesh's
/// vertices, say).
#[derive(Debug, Clone, PartialEq)]
pub struct ListDef {
    /// Its name.
    pub name: String,
    /// The fields of one item.
    pub fields: Vec<FieldDef>,
    /// Most items, 1..=[`MAX_LIST_ITEMS`].
    pub max_items: u16,
}

/// A game mode's schema. Component *i*, event *i*, request *i* and field *i* are
/// numbered by their place in these lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModeSchema {
    /// The mode's name.
    pub mode: String,
    /// Replicated components.
    pub components: Vec<ComponentDef>,
    /// The fields of one input.
    pub input: Vec<FieldDef>,
    /// Reliable events.
    pub events: Vec<EventDef>,
    /// Requests clients may send.
    pub requests: Vec<RequestDef>,
}

/// Why a schema is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The bytes ended early.
    #[error("schema truncated")]
    Truncated,
    /// Bytes were left over after the schema.
    #[error("schema has {0} trailing bytes")]
    Trailing(usize),
    /// The format is not one this build reads.
    #[error("schema format {0} is not supported (this build reads {SCHEMA_FORMAT})")]
    Format(u16),
    /// A list is longer than the protocol allows.
    #[error("{what}: {len} is more than the {max} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The bound.
        max: usize,
    },
    /// A name is empty, too long, or not `[a-z][a-z0-9_]*`.
    #[error("bad name {0:?}: names are 1-32 bytes of [a-z][a-z0-9_]*")]
    BadName(String),
    /// Two components, fields, events, variants or flags share a name.
    #[error("name {0:?} is used twice")]
    DuplicateName(String),
    /// An unknown field kind tag.
    #[error("unknown field kind {0}")]
    UnknownKind(u32),
    /// A field's parameters make no grid: ranges empty or not finite, steps not
    /// positive, too many steps, bits out of range.
    #[error("field {field:?}: {reason}")]
    BadField {
        /// The field.
        field: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A visibility tag that does not exist.
    #[error("unknown visibility {0}")]
    UnknownVisibility(u32),
    /// The schema hashes otherwise than the match configuration says.
    #[error("schema hashes to {actual:016x}, the match configuration says {expected:016x}")]
    HashMismatch {
        /// The configuration's `schema_hash`.
        expected: u64,
        /// The schema's.
        actual: u64,
    },
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    // The schema's names follow the rule mode names do (the same 32-byte bound).
    const _: () = assert!(MAX_NAME == crate::config::MAX_MODE_NAME);
    if crate::is_name(name) {
        Ok(())
    } else {
        Err(SchemaError::BadName(name.to_owned()))
    }
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), SchemaError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        check_name(name)?;
        if seen.contains(&name) {
            return Err(SchemaError::DuplicateName(name.to_owned()));
        }
        seen.push(name);
    }
    Ok(())
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), SchemaError> {
    if len > max {
        Err(SchemaError::TooMany {
            what,
            len: len as u64,
            max,
        })
    } else {
        Ok(())
    }
}

/// Steps of a ranged axis, if its parameters make a grid.
fn steps(min: f32, max: f32, step: f32) -> Option<u32> {
    if !(min.is_finite() && max.is_finite() && step.is_finite()) || step <= 0.0 || max < min {
        return None;
    }
    let steps = (f64::from(max - min) / f64::from(step)).ceil();
    (steps <= f64::from(MAX_STEPS)).then_some(steps.max(1.0) as u32)
}

/// Bits needed to write every value from 0 to `max`.
pub fn bit_length(max: u32) -> u32 {
    u32::BITS - max.leading_zeros()
}

impl FieldKind {
    fn check(&self, field: &str) -> Result<(), SchemaError> {
        let bad = |reason| SchemaError::BadField {
            field: field.to_owned(),
            reason,
        };
        match self {
            Self::Position { min, max, step } | Self::Vector { min, max, step } => {
                for axis in 0..3 {
                    steps(min[axis], max[axis], *step).ok_or_else(|| bad("no grid"))?;
                }
            }
            Self::Float { min, max, step } => {
                steps(*min, *max, *step).ok_or_else(|| bad("no grid"))?;
            }
            Self::Rotation { bits } => {
                if !(4..=15).contains(bits) {
                    return Err(bad("rotation bits must be 4-15"));
                }
            }
            Self::Int { min, max } => {
                if max < min {
                    return Err(bad("max below min"));
                }
            }
            Self::Enum { variants: names } | Self::Flags { names } => {
                if names.is_empty() {
                    return Err(bad("no variants"));
                }
                check_len("variants", names.len(), MAX_VARIANTS)?;
                check_unique(names.iter().map(String::as_str))?;
            }
            Self::Bool | Self::Entity => {}
            Self::Text { max_len } => {
                if *max_len == 0 || usize::from(*max_len) > MAX_TEXT {
                    return Err(bad("text length must be 1-64"));
                }
            }
        }
        Ok(())
    }

    /// Slots a value of this kind takes.
    pub fn slots(&self) -> usize {
        match self {
            Self::Position { .. } | Self::Vector { .. } => 3,
            Self::Rotation { .. } => 4,
            Self::Text { max_len } => 1 + usize::from(*max_len).div_ceil(4),
            _ => 1,
        }
    }
}

fn check_fields(what: &'static str, fields: &[FieldDef]) -> Result<(), SchemaError> {
    check_len(what, fields.len(), MAX_FIELDS)?;
    check_unique(fields.iter().map(|f| f.name.as_str()))?;
    for field in fields {
        field.kind.check(&field.name)?;
    }
    Ok(())
}

impl ModeSchema {
    /// Checks every bound and name. Decoding checks this too; a mode's own schema is
    /// checked when the mode is registered.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_name(&self.mode)?;
        check_len("components", self.components.len(), MAX_COMPONENTS)?;
        check_unique(self.components.iter().map(|c| c.name.as_str()))?;
        for component in &self.components {
            check_fields("component fields", &component.fields)?;
        }
        check_fields("input fields", &self.input)?;
        check_len("events", self.events.len(), MAX_EVENTS)?;
        check_unique(self.events.iter().map(|e| e.name.as_str()))?;
        for event in &self.events {
            check_fields("event fields", &event.fields)?;
        }
        check_len("requests", self.requests.len(), MAX_REQUESTS)?;
        check_unique(self.requests.iter().map(|r| r.name.as_str()))?;
        for request in &self.requests {
            check_fields("request fields", &request.fields)?;
            check_len("lists", request.lists.len(), MAX_LISTS)?;
            check_unique(
                request
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .chain(request.lists.iter().map(|l| l.name.as_str())),
            )?;
            for list in &request.lists {
                check_fields("list fields", &list.fields)?;
                if list.fields.is_empty() || !(1..=MAX_LIST_ITEMS).contains(&list.max_items) {
                    return Err(SchemaError::BadField {
                        field: list.name.clone(),
                        reason: "a list needs fields and 1-4096 items",
                    });
                }
            }
        }
        Ok(())
    }

    /// The component called `name`, and its number.
    pub fn component(&self, name: &str) -> Option<(usize, &ComponentDef)> {
        self.components
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The first position field (component, field): what interest measures by.
    pub fn position_field(&self) -> Option<(usize, usize)> {
        self.components.iter().enumerate().find_map(|(c, def)| {
            def.fields
                .iter()
                .position(|f| matches!(f.kind, FieldKind::Position { .. }))
                .map(|f| (c, f))
        })
    }

    /// The schema's canonical bytes (what travels to clients, and what is hashed).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(512);
        w.extend_from_slice(&SCHEMA_FORMAT.to_le_bytes());
        put_str(&mut w, &self.mode);
        put_len(&mut w, self.components.len());
        for component in &self.components {
            put_str(&mut w, &component.name);
            put_fields(&mut w, &component.fields);
            let visibility: u32 = match component.visibility {
                Visibility::Everyone => 0,
                Visibility::Owner => 1,
                Visibility::Others => 2,
            };
            w.extend_from_slice(&visibility.to_le_bytes());
            w.push(component.priority);
        }
        put_fields(&mut w, &self.input);
        put_len(&mut w, self.events.len());
        for event in &self.events {
            put_str(&mut w, &event.name);
            put_fields(&mut w, &event.fields);
        }
        put_len(&mut w, self.requests.len());
        for request in &self.requests {
            put_str(&mut w, &request.name);
            put_fields(&mut w, &request.fields);
            put_len(&mut w, request.lists.len());
            for list in &request.lists {
                put_str(&mut w, &list.name);
                put_fields(&mut w, &list.fields);
                w.extend_from_slice(&list.max_items.to_le_bytes());
            }
        }
        w
    }

    /// Reads a schema, checking every bound and name.
    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        if bytes.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooMany {
                what: "schema bytes",
                len: bytes.len() as u64,
                max: MAX_SCHEMA_BYTES,
            });
        }
        let mut r = Reader(bytes);
        let format = r.u16()?;
        if format != SCHEMA_FORMAT {
            return Err(SchemaError::Format(format));
        }
        let mode = r.str()?;
        let count = r.len("components", MAX_COMPONENTS)?;
        let mut components = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.str()?;
            let fields = r.fields()?;
            let visibility = match r.u32()? {
                0 => Visibility::Everyone,
                1 => Visibility::Owner,
                2 => Visibility::Others,
                tag => return Err(SchemaError::UnknownVisibility(tag)),
            };
            let priority = r.u8()?;
            components.push(ComponentDef {
                name,
                fields,
                visibility,
                priority,
            });
        }
        let input = r.fields()?;
        let count = r.len("events", MAX_EVENTS)?;
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.str()?;
            let fields = r.fields()?;
            events.push(EventDef { name, fields });
        }
        let count = r.len("requests", MAX_REQUESTS)?;
        let mut requests = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.str()?;
            let fields = r.fields()?;
            let count = r.len("lists", MAX_LISTS)?;
            let mut lists = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.str()?;
                let fields = r.fields()?;
                let max_items = r.u16()?;
                lists.push(ListDef {
                    name,
                    fields,
                    max_items,
                });
            }
            requests.push(RequestDef {
                name,
                fields,
                lists,
            });
        }
        if !r.0.is_empty() {
            return Err(SchemaError::Trailing(r.0.len()));
        }
        let schema = Self {
            mode,
            components,
            input,
            events,
            requests,
        };
        schema.validate()?;
        Ok(schema)
    }

    /// A schema a peer sent (a Welcome's, a replay's), decoded and checked against the
    /// hash the match configuration promised.
    pub fn verified(bytes: &[u8], hash: u64) -> Result<Self, SchemaError> {
        let schema = Self::decode(bytes)?;
        let actual = schema.hash();
        if actual != hash {
            return Err(SchemaError::HashMismatch {
                expected: hash,
                actual,
            });
        }
        Ok(schema)
    }

    /// The schema's identity: the first 8 bytes of the SHA-256 of its canonical bytes,
    /// little-endian. Two schemas with the same hash are the same schema.
    pub fn hash(&self) -> u64 {
        let digest = Sha256::digest(self.encode());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

fn put_len(w: &mut Vec<u8>, len: usize) {
    w.extend_from_slice(&(len as u64).to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

fn put_f32s(w: &mut Vec<u8>, values: &[f32]) {
    for v in values {
        w.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_fields(w: &mut Vec<u8>, fields: &[FieldDef]) {
    put_len(w, fields.len());
    for field in fields {
        put_str(w, &field.name);
        let tag: u32 = match &field.kind {
            FieldKind::Position { .. } => 0,
            FieldKind::Vector { .. } => 1,
            FieldKind::Rotation { .. } => 2,
            FieldKind::Int { .. } => 3,
            FieldKind::Float { .. } => 4,
            FieldKind::Enum { .. } => 5,
            FieldKind::Flags { .. } => 6,
            FieldKind::Bool => 7,
            FieldKind::Entity => 9,
            FieldKind::Text { .. } => 8,
        };
        w.extend_from_slice(&tag.to_le_bytes());
        match &field.kind {
            FieldKind::Position { min, max, step } | FieldKind::Vector { min, max, step } => {
                put_f32s(w, min);
                put_f32s(w, max);
                put_f32s(w, &[*step]);
            }
            FieldKind::Rotation { bits } => w.push(*bits),
            FieldKind::Int { min, max } => {
                w.extend_from_slice(&min.to_le_bytes());
                w.extend_from_slice(&max.to_le_bytes());
            }
            FieldKind::Float { min, max, step } => put_f32s(w, &[*min, *max, *step]),
            FieldKind::Enum { variants: names } | FieldKind::Flags { names } => {
                put_len(w, names.len());
                for name in names {
                    put_str(w, name);
                }
            }
            FieldKind::Bool | FieldKind::Entity => {}
            FieldKind::Text { max_len } => w.push(*max_len),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SchemaError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(SchemaError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, SchemaError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, SchemaError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, SchemaError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn i32(&mut self) -> Result<i32, SchemaError> {
        Ok(i32::from_le_bytes(self.take()?))
    }

    fn f32(&mut self) -> Result<f32, SchemaError> {
        Ok(f32::from_le_bytes(self.take()?))
    }

    fn f32x3(&mut self) -> Result<[f32; 3], SchemaError> {
        Ok([self.f32()?, self.f32()?, self.f32()?])
    }

    fn len(&mut self, what: &'static str, max: usize) -> Result<usize, SchemaError> {
        let len = u64::from_le_bytes(self.take()?);
        if len > max as u64 {
            return Err(SchemaError::TooMany { what, len, max });
        }
        Ok(len as usize)
    }

    fn str(&mut self) -> Result<String, SchemaError> {
        let len = self.len("name bytes", MAX_NAME)?;
        if self.0.len() < len {
            return Err(SchemaError::Truncated);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        let name = String::from_utf8_lossy(head).into_owned();
        check_name(&name)?;
        Ok(name)
    }

    fn fields(&mut self) -> Result<Vec<FieldDef>, SchemaError> {
        let count = self.len("fields", MAX_FIELDS)?;
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.str()?;
            let kind = match self.u32()? {
                0 => FieldKind::Position {
                    min: self.f32x3()?,
                    max: self.f32x3()?,
                    step: self.f32()?,
                },
                1 => FieldKind::Vector {
                    min: self.f32x3()?,
                    max: self.f32x3()?,
                    step: self.f32()?,
                },
                2 => FieldKind::Rotation { bits: self.u8()? },
                3 => FieldKind::Int {
                    min: self.i32()?,
                    max: self.i32()?,
                },
                4 => FieldKind::Float {
                    min: self.f32()?,
                    max: self.f32()?,
                    step: self.f32()?,
                },
                tag @ (5 | 6) => {
                    let count = self.len("variants", MAX_VARIANTS)?;
                    let mut names = Vec::with_capacity(count);
                    for _ in 0..count {
                        names.push(self.str()?);
                    }
                    if tag == 5 {
                        FieldKind::Enum { variants: names }
                    } else {
                        FieldKind::Flags { names }
                    }
                }
                7 => FieldKind::Bool,
                9 => FieldKind::Entity,
                8 => FieldKind::Text {
                    max_len: self.u8()?,
                },
                tag => return Err(SchemaError::UnknownKind(tag)),
            };
            fields.push(FieldDef { name, kind });
        }
        Ok(fields)
    }
}

/// A field's value, as a game reads or writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A [`FieldKind::Position`] or [`FieldKind::Vector`].
    Vec3([f32; 3]),
    /// A [`FieldKind::Rotation`]: a quaternion `(x, y, z, w)`.
    Quat([f32; 4]),
    /// A [`FieldKind::Int`].
    Int(i64),
    /// A [`FieldKind::Float`].
    Float(f32),
    /// A [`FieldKind::Enum`]: the variant's index.
    Enum(u32),
    /// A [`FieldKind::Flags`]: bit *i* for flag *i*.
    Flags(u32),
    /// A [`FieldKind::Entity`].
    Entity(EntityId),
    /// A [`FieldKind::Bool`].
    Bool(bool),
    /// A [`FieldKind::Text`].
    Text(String),
}

/// How one field's slots are written: the bits of each and the largest valid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Three ranged axes (positions and vectors).
    Vec3 {
        /// Largest valid slot value per axis.
        max: [u32; 3],
        /// Bits per axis.
        bits: [u32; 3],
    },
    /// Smallest three: the dropped index, then three components of `bits` bits.
    Rotation {
        /// Bits per component.
        bits: u32,
    },
    /// One slot from 0 to `max`, `bits` wide.
    Scalar {
        /// Largest valid value.
        max: u32,
        /// Bits.
        bits: u32,
    },
    /// A length up to `max_len` (`len_bits` wide), then that many bytes.
    Text {
        /// Longest, bytes.
        max_len: u32,
        /// Bits of the length.
        len_bits: u32,
    },
}

impl FieldKind {
    /// How this kind's slots are written.
    pub fn coding(&self) -> Coding {
        match self {
            Self::Position { min, max, step } | Self::Vector { min, max, step } => {
                let steps: [u32; 3] =
                    std::array::from_fn(|a| steps(min[a], max[a], *step).unwrap_or(1));
                Coding::Vec3 {
                    max: steps,
                    bits: steps.map(bit_length),
                }
            }
            Self::Rotation { bits } => Coding::Rotation {
                bits: u32::from(*bits),
            },
            Self::Int { min, max } => {
                let range = (i64::from(*max) - i64::from(*min)).max(0) as u32;
                Coding::Scalar {
                    max: range,
                    bits: bit_length(range),
                }
            }
            Self::Float { min, max, step } => {
                let steps = steps(*min, *max, *step).unwrap_or(1);
                Coding::Scalar {
                    max: steps,
                    bits: bit_length(steps),
                }
            }
            Self::Enum { variants } => {
                let max = variants.len().saturating_sub(1) as u32;
                Coding::Scalar {
                    max,
                    bits: bit_length(max).max(1),
                }
            }
            Self::Flags { names } => {
                let bits = names.len() as u32;
                Coding::Scalar {
                    max: if bits >= 32 {
                        u32::MAX
                    } else {
                        (1 << bits) - 1
                    },
                    bits,
                }
            }
            Self::Bool => Coding::Scalar { max: 1, bits: 1 },
            Self::Entity => Coding::Scalar {
                max: u32::MAX,
                bits: 32,
            },
            Self::Text { max_len } => Coding::Text {
                max_len: u32::from(*max_len),
                len_bits: bit_length(u32::from(*max_len)),
            },
        }
    }

    /// Quantizes a value into `out` (which has [`FieldKind::slots`] slots). A value of
    /// the wrong shape writes zeros; values beyond the field's range clamp to it.
    pub fn quantize(&self, value: &Value, out: &mut [u32]) {
        out.fill(0);
        match (self, value) {
            (
                Self::Position { min, max, step } | Self::Vector { min, max, step },
                Value::Vec3(v),
            ) => {
                for a in 0..3 {
                    out[a] = ranged(v[a], min[a], max[a], *step);
                }
            }
            (Self::Rotation { bits }, Value::Quat(q)) => {
                let r = rotation(*q, u32::from(*bits));
                out.copy_from_slice(&r);
            }
            (Self::Int { min, max }, Value::Int(v)) => {
                let v = (*v).clamp(i64::from(*min), i64::from(*max));
                out[0] = (v - i64::from(*min)) as u32;
            }
            (Self::Float { min, max, step }, Value::Float(v)) => {
                out[0] = ranged(*v, *min, *max, *step);
            }
            (Self::Enum { variants }, Value::Enum(i)) => {
                out[0] = (*i).min(variants.len().saturating_sub(1) as u32);
            }
            (Self::Flags { .. }, Value::Flags(f)) => {
                if let Coding::Scalar { max, .. } = self.coding() {
                    out[0] = f & max;
                }
            }
            (Self::Bool, Value::Bool(b)) => out[0] = u32::from(*b),
            (Self::Entity, Value::Entity(id)) => out[0] = id.0,
            (Self::Text { max_len }, Value::Text(s)) => {
                // Cut at a character boundary within the bound.
                let mut end = s.len().min(usize::from(*max_len));
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                out[0] = end as u32;
                for (i, b) in s.as_bytes()[..end].iter().enumerate() {
                    out[1 + i / 4] |= u32::from(*b) << (8 * (i % 4));
                }
            }
            _ => {}
        }
    }

    /// The value quantized slots stand for.
    pub fn value(&self, slots: &[u32]) -> Value {
        match self {
            Self::Position { min, step, .. } | Self::Vector { min, step, .. } => {
                Value::Vec3(std::array::from_fn(|a| min[a] + slots[a] as f32 * step))
            }
            Self::Rotation { bits } => Value::Quat(rotation_value(slots, u32::from(*bits))),
            Self::Int { min, .. } => Value::Int(i64::from(*min) + i64::from(slots[0])),
            Self::Float { min, step, .. } => Value::Float(min + slots[0] as f32 * step),
            Self::Enum { .. } => Value::Enum(slots[0]),
            Self::Flags { .. } => Value::Flags(slots[0]),
            Self::Bool => Value::Bool(slots[0] != 0),
            Self::Entity => Value::Entity(EntityId(slots[0])),
            Self::Text { max_len } => {
                let len = (slots[0] as usize).min(usize::from(*max_len));
                let bytes: Vec<u8> = (0..len)
                    .map(|i| (slots[1 + i / 4] >> (8 * (i % 4))) as u8)
                    .collect();
                Value::Text(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }
}

fn ranged(v: f32, min: f32, max: f32, step: f32) -> u32 {
    let steps = steps(min, max, step).unwrap_or(1);
    let v = if v.is_finite() { v } else { min };
    ((v - min) / step).round().clamp(0.0, steps as f32) as u32
}

/// Smallest-three quantization of `(x, y, z, w)` at `bits` per kept component: the
/// dropped index, then the three kept components.
pub fn rotation(q: [f32; 4], bits: u32) -> [u32; 4] {
    let top = ((1u32 << bits) - 1) as f32;
    let length = q.iter().map(|c| c * c).sum::<f32>().sqrt();
    let q = if length.is_finite() && length > 1e-6 {
        q.map(|c| c / length)
    } else {
        [0.0, 0.0, 0.0, 1.0]
    };
    let largest = (0..4)
        .max_by(|&a, &b| q[a].abs().total_cmp(&q[b].abs()))
        .unwrap_or(3);
    // q and -q are the same rotation: make the dropped component positive.
    let sign = if q[largest] < 0.0 { -1.0 } else { 1.0 };
    let mut out = [largest as u32, 0, 0, 0];
    let mut k = 1;
    for (i, c) in q.iter().enumerate() {
        if i == largest {
            continue;
        }
        let unit = (sign * c * std::f32::consts::SQRT_2).clamp(-1.0, 1.0);
        out[k] = (((unit + 1.0) / 2.0) * top).round() as u32;
        k += 1;
    }
    out
}

/// The unit quaternion smallest-three slots stand for.
pub fn rotation_value(slots: &[u32], bits: u32) -> [f32; 4] {
    let top = (1u32 << bits) - 1;
    let mut q = [0f32; 4];
    let largest = (slots[0] as usize).min(3);
    let mut sum = 0.0;
    let mut k = 1;
    for (i, slot) in q.iter_mut().enumerate() {
        if i == largest {
            continue;
        }
        let c = (slots[k].min(top) as f32 / top as f32 * 2.0 - 1.0) / std::f32::consts::SQRT_2;
        *slot = c;
        sum += c * c;
        k += 1;
    }
    q[largest] = (1.0 - sum).max(0.0).sqrt();
    let length = q.iter().map(|c| c * c).sum::<f32>().sqrt();
    q.map(|c| c / length)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ModeSchema {
        ModeSchema {
            mode: "sample".into(),
            components: vec![
                ComponentDef {
                    name: "transform".into(),
                    fields: vec![
                        FieldDef::new(
                            "position",
                            FieldKind::Position {
                                min: [-48.0, -16.0, -48.0],
                                max: [48.0, 48.0, 48.0],
                                step: 1.0 / 512.0,
                            },
                        ),
                        FieldDef::new("rotation", FieldKind::Rotation { bits: 10 }),
                    ],
                    visibility: Visibility::Everyone,
                    priority: 1,
                },
                ComponentDef {
                    name: "health".into(),
                    fields: vec![
                        FieldDef::new("hp", FieldKind::Int { min: 0, max: 100 }),
                        FieldDef::new("name", FieldKind::Text { max_len: 16 }),
                    ],
                    visibility: Visibility::Owner,
                    priority: 0,
                },
            ],
            input: vec![
                FieldDef::new(
                    "buttons",
                    FieldKind::Flags {
                        names: vec!["fire".into(), "jump".into()],
                    },
                ),
                FieldDef::new(
                    "aim",
                    FieldKind::Float {
                        min: -1.0,
                        max: 1.0,
                        step: 1.0 / 127.0,
                    },
                ),
            ],
            events: vec![EventDef {
                name: "scored".into(),
                fields: vec![FieldDef::new(
                    "team",
                    FieldKind::Enum {
                        variants: vec!["red".into(), "blue".into()],
                    },
                )],
            }],
            requests: vec![RequestDef {
                name: "shape".into(),
                fields: vec![FieldDef::new("id", FieldKind::Int { min: 0, max: 15 })],
                lists: vec![ListDef {
                    name: "points".into(),
                    fields: vec![FieldDef::new(
                        "at",
                        FieldKind::Vector {
                            min: [-4.0; 3],
                            max: [4.0; 3],
                            step: 0.01,
                        },
                    )],
                    max_items: 64,
                }],
            }],
        }
    }

    #[test]
    fn a_schema_round_trips_and_its_hash_follows_its_content() {
        let schema = sample();
        schema.validate().expect("valid");
        let bytes = schema.encode();
        assert_eq!(ModeSchema::decode(&bytes), Ok(schema.clone()));
        let mut other = schema.clone();
        other.components[1].fields[0].kind = FieldKind::Int { min: 0, max: 200 };
        assert_ne!(schema.hash(), other.hash());
        assert_eq!(schema.hash(), sample().hash());
    }

    #[test]
    fn every_truncation_and_bad_name_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(ModeSchema::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(ModeSchema::decode(&long), Err(SchemaError::Trailing(1)));
        let mut schema = sample();
        schema.components[0].name = "Transform".into();
        assert!(matches!(schema.validate(), Err(SchemaError::BadName(_))));
        let mut schema = sample();
        schema.components[1].name = "transform".into();
        assert!(matches!(
            schema.validate(),
            Err(SchemaError::DuplicateName(_))
        ));
        let mut schema = sample();
        schema.input[1].kind = FieldKind::Float {
            min: 0.0,
            max: 1.0,
            step: 0.0,
        };
        assert!(matches!(
            schema.validate(),
            Err(SchemaError::BadField { .. })
        ));
    }

    #[test]
    fn values_quantize_within_their_step() {
        let schema = sample();
        let position = &schema.components[0].fields[0].kind;
        let mut slots = [0u32; 3];
        position.quantize(&Value::Vec3([1.2345, -3.0, 47.9]), &mut slots);
        let Value::Vec3(back) = position.value(&slots) else {
            panic!("a vector");
        };
        for (a, b) in back.iter().zip([1.2345, -3.0, 47.9]) {
            assert!((a - b).abs() <= 1.0 / 1024.0 + 1e-5, "{a} vs {b}");
        }
        let text = &schema.components[1].fields[1].kind;
        let mut slots = vec![0u32; text.slots()];
        text.quantize(&Value::Text("héllo wörld, and more".into()), &mut slots);
        assert_eq!(text.value(&slots), Value::Text("héllo wörld, a".into()));
        let mut q = [0u32; 4];
        let rotation = FieldKind::Rotation { bits: 10 };
        let turn = [0.0, (0.6f32).sin(), 0.0, (0.6f32).cos()];
        rotation.quantize(&Value::Quat(turn), &mut q);
        let Value::Quat(back) = rotation.value(&q) else {
            panic!("a quaternion");
        };
        let dot: f32 = back.iter().zip(turn).map(|(a, b)| a * b).sum();
        assert!(dot.abs() > 0.9999, "{back:?}");
    }
}
