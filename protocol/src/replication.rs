//! Generic snapshot bodies: entities as sets of a mode's components, delta-coded per
//! component and field against a view the client already has, bit-packed. Any mode's
//! state goes through here; a [`Layout`] built from the mode's [`ModeSchema`] says how
//! many slots each component takes and how each field is written.
//!
//! A [`View`] is what one client knows: entities sorted by id, each a component mask and
//! the quantized slots of its present components, in component order. The edge encodes
//! the next view against the newest the client acknowledged ([`encode`]); the client
//! decodes against the same baseline ([`decode`]). Against the empty view, a keyframe.
//! With a second, older view the client holds ([`Reference`]), changed positions and
//! rotations are coded against their motion carried on ([`encode_predicted`],
//! [`decode_predicted`]).
//!
//! Layout (counts and id gaps as in [`crate::bits`]; bits most significant first):
//!
//! ```text
//! removed count, then each removed id as a gap from the previous
//! entry count,   then each entry: id gap, new?(1)
//!   new:     same-components-as-the-previous-new-entry?(1) [mask: one bit per component]
//!            then every present component's fields, written whole
//!   changed: for each present component with fields, in order: changed?(1)
//!            [if it has more than one field: for each field changed?(1)] then each
//!            changed field as a delta against the baseline
//! ```
//!
//! An entity whose component set changed is sent as new. Field deltas: a vector (three
//! axes) in one of three size classes (prefix `0`: 6 bits per axis, `10`: 10, `110`: 14;
//! `111`: whole); a rotation `1` + three components of half its bits when the dropped
//! index is unchanged and each fits, else `0` + whole; anything else whole.

pub use crate::bits::{DeltaError, MAX_VIEW_ENTITIES};
use crate::bits::{
    Reader, Writer, count_bits, get, put, put_bit, read_count, read_gap, write_count, write_gap,
};
use crate::ids::EntityId;
use crate::range::{self, Coder, NUMBER_PROBS};
use crate::schema::{Coding, FieldDef, FieldKind, ModeSchema, Value, Visibility, bit_length};
use bitstream_io::{BitRead, BitWrite};

/// Vector delta size classes: bits per axis of a signed delta.
const VECTOR_CLASSES: [u32; 4] = [3, 6, 10, 14];

#[derive(Debug, Clone, Copy)]
struct FieldLayout {
    offset: u32,
    coding: Coding,
}

/// Where each field's slots start, and the slots of them all.
fn field_layouts(fields: &[FieldDef]) -> (Vec<FieldLayout>, u32) {
    let mut offset = 0u32;
    let layouts = fields
        .iter()
        .map(|f| {
            let field = FieldLayout {
                offset,
                coding: f.kind.coding(),
            };
            offset += f.kind.slots() as u32;
            field
        })
        .collect();
    (layouts, offset)
}

#[derive(Debug, Clone)]
struct ComponentLayout {
    slots: u32,
    fields: Vec<FieldLayout>,
    priority: u8,
}

/// How a mode's components sit in slots and go on the wire.
#[derive(Debug, Clone)]
pub struct Layout {
    components: Vec<ComponentLayout>,
    /// Bits of a component mask on the wire.
    mask_bits: u32,
    /// Components that are owner-only, and those for everyone but the owner, as masks.
    owner_mask: u64,
    others_mask: u64,
    position: Option<(usize, u32)>,
    /// The position field's grid: lowest corner and step.
    position_grid: ([f32; 3], f32),
    /// Slots and priority per component mask, for schemas of up to [`TABLED_COMPONENTS`]
    /// components.
    slots_by_mask: Vec<u32>,
    priority_by_mask: Vec<u8>,
    /// Per component, the most [`entry_bits`] can count for it: in a changed entry, and
    /// in a new one.
    bits_bound: Vec<[u32; 2]>,
    /// Where each decision of a body finds its probability.
    probs: ProbLayout,
}

/// Schemas with at most this many components have their masks' slot counts tabled.
const TABLED_COMPONENTS: usize = 10;

impl Layout {
    /// The layout of a (valid) schema.
    pub fn new(schema: &ModeSchema) -> Self {
        let components: Vec<ComponentLayout> = schema
            .components
            .iter()
            .map(|c| {
                let (fields, slots) = field_layouts(&c.fields);
                ComponentLayout {
                    slots,
                    fields,
                    priority: c.priority,
                }
            })
            .collect();
        let mask_of = |visibility: Visibility| {
            schema
                .components
                .iter()
                .enumerate()
                .filter(|(_, c)| c.visibility == visibility)
                .fold(0u64, |m, (i, _)| m | 1 << i)
        };
        let (owner_mask, others_mask) = (mask_of(Visibility::Owner), mask_of(Visibility::Others));
        let position = schema
            .position_field()
            .map(|(c, f)| (c, components[c].fields[f].offset));
        let position_grid = schema
            .position_field()
            .and_then(|(c, f)| match schema.components[c].fields[f].kind {
                FieldKind::Position { min, step, .. } => Some((min, step)),
                _ => None,
            })
            .unwrap_or(([0.0; 3], 1.0));
        let mut layout = Self {
            mask_bits: components.len() as u32,
            components,
            owner_mask,
            others_mask,
            position,
            position_grid,
            slots_by_mask: Vec::new(),
            priority_by_mask: Vec::new(),
            bits_bound: Vec::new(),
            probs: ProbLayout::default(),
        };
        layout.bits_bound = layout
            .components
            .iter()
            .map(|c| {
                if c.fields.is_empty() {
                    return [0, 0];
                }
                let flags = if c.fields.len() > 1 {
                    c.fields.len() as u32
                } else {
                    0
                };
                let delta: u32 = c.fields.iter().map(|f| most_delta_bits(f.coding)).sum();
                let whole: u32 = c.fields.iter().map(|f| most_whole_bits(f.coding)).sum();
                [1 + flags + delta, whole]
            })
            .collect();
        layout.probs = ProbLayout::new(&layout.components);
        if layout.components.len() <= TABLED_COMPONENTS {
            let masks = 0..1u64 << layout.components.len();
            layout.slots_by_mask = masks
                .clone()
                .map(|m| layout.count_slots(m) as u32)
                .collect();
            layout.priority_by_mask = masks.map(|m| layout.highest_priority(m)).collect();
        }
        layout
    }

    fn count_slots(&self, mask: u64) -> usize {
        self.components
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| c.slots as usize)
            .sum()
    }

    /// Components declared.
    pub fn component_count(&self) -> usize {
        self.components.len()
    }

    /// Slots component `c` takes.
    pub fn component_slots(&self, c: usize) -> usize {
        self.components.get(c).map_or(0, |c| c.slots as usize)
    }

    /// Slots an entity with components `mask` takes.
    pub fn entity_slots(&self, mask: u64) -> usize {
        match self.slots_by_mask.get(mask as usize) {
            Some(&n) if mask < self.slots_by_mask.len() as u64 => n as usize,
            _ => self.count_slots(mask),
        }
    }

    /// Where component `c` starts among the slots of an entity with components `mask`.
    pub fn offset(&self, mask: u64, c: usize) -> Option<usize> {
        if c >= self.components.len() || mask & (1 << c) == 0 {
            return None;
        }
        Some(self.entity_slots(mask & ((1u64 << c) - 1)))
    }

    /// The components only an entity's owner receives, as a mask.
    pub fn owner_mask(&self) -> u64 {
        self.owner_mask
    }

    /// The components everyone but an entity's owner receives, as a mask.
    pub fn others_mask(&self) -> u64 {
        self.others_mask
    }

    /// An entity's priority: the highest of its components'.
    pub fn priority(&self, mask: u64) -> u8 {
        match self.priority_by_mask.get(mask as usize) {
            Some(&p) if mask < self.priority_by_mask.len() as u64 => p,
            _ => self.highest_priority(mask),
        }
    }

    fn highest_priority(&self, mask: u64) -> u8 {
        self.components
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| c.priority)
            .max()
            .unwrap_or(0)
    }

    /// An entity's position slots, if it has the schema's position component.
    pub fn position<'a>(&self, record: &Record<'a>) -> Option<&'a [u32]> {
        let (c, field) = self.position?;
        let start = self.offset(record.mask, c)? + field as usize;
        record.slots.get(start..start + 3)
    }

    /// An entity's position in metres (the grid point its position slots stand for),
    /// if it has the schema's position component.
    pub fn position_value(&self, record: &Record<'_>) -> Option<[f32; 3]> {
        let q = self.position(record)?;
        let (min, step) = self.position_grid;
        Some(std::array::from_fn(|a| min[a] + q[a] as f32 * step))
    }

    /// `record` without the components of `mask`, its slots written into `out`; returns
    /// the remaining mask.
    pub fn without_components(&self, record: &Record<'_>, mask: u64, out: &mut Vec<u32>) -> u64 {
        out.clear();
        let mut at = 0usize;
        for (i, c) in self.components.iter().enumerate() {
            let bit = 1u64 << i;
            if record.mask & bit == 0 {
                continue;
            }
            let n = c.slots as usize;
            if mask & bit == 0 {
                out.extend_from_slice(record.slots.get(at..at + n).unwrap_or(&[]));
            }
            at += n;
        }
        record.mask & !mask
    }

    /// `record` with the components of `extra_mask` (whose slots are `extra`, in
    /// component order) added, written into `out`; returns the combined mask. Components
    /// the record has already keep its slots.
    pub fn with_components(
        &self,
        record: &Record<'_>,
        extra_mask: u64,
        extra: &[u32],
        out: &mut Vec<u32>,
    ) -> u64 {
        out.clear();
        let (mut at_record, mut at_extra) = (0usize, 0usize);
        for (i, c) in self.components.iter().enumerate() {
            let n = c.slots as usize;
            let bit = 1u64 << i;
            if record.mask & bit != 0 {
                out.extend_from_slice(record.slots.get(at_record..at_record + n).unwrap_or(&[]));
                at_record += n;
                if extra_mask & bit != 0 {
                    at_extra += n;
                }
            } else if extra_mask & bit != 0 {
                out.extend_from_slice(extra.get(at_extra..at_extra + n).unwrap_or(&[]));
                at_extra += n;
            }
        }
        record.mask | extra_mask
    }

    fn valid_mask(&self, mask: u64) -> bool {
        self.mask_bits >= 64 || mask >> self.mask_bits == 0
    }

    /// The most [`entry_bits`] counts for any entry of an entity with components
    /// `mask`, changed from any baseline or new: what a snapshot's budget can take
    /// without pricing each entry when every entry's bound fits.
    pub fn entry_bits_bound(&self, mask: u64) -> u32 {
        let (mut changed, mut new) = (1u32, 2 + self.mask_bits);
        let mut rest = mask;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let [c, n] = self.bits_bound.get(i).copied().unwrap_or([0, 0]);
            changed += c;
            new += n;
        }
        changed.max(new)
    }

    /// Whether a record's slots match its components.
    pub fn fits(&self, record: &Record<'_>) -> bool {
        self.valid_mask(record.mask) && record.slots.len() == self.entity_slots(record.mask)
    }
}

/// One entity of a view.
#[derive(Debug, Clone, Copy, Eq)]
pub struct Record<'a> {
    /// The entity.
    pub id: EntityId,
    /// Its components: bit *i* for component *i*.
    pub mask: u64,
    /// The slots of its present components, in component order.
    pub slots: &'a [u32],
}

impl PartialEq for Record<'_> {
    /// The same entity with the same components and values. Compared with [`same`]: a
    /// record's handful of slots compare faster in a loop than through `memcmp`, and
    /// snapshots compare every relevant entity with its baseline for every client.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.mask == other.mask && same(self.slots, other.slots)
    }
}

/// A client's view: entities sorted by id, unique, their slots in one buffer.
///
/// Every way of filling a view keeps its ids strictly increasing (copying relies on it),
/// and lays the entities' slots one after another in the buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct View {
    /// (id, mask, first slot, slot count)
    entries: Vec<(EntityId, u64, u32, u32)>,
    slots: Vec<u32>,
}

impl View {
    /// An empty view (a keyframe's baseline).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty view with room for `entities` entities of `slots` slots in all.
    pub fn with_capacity(entities: usize, slots: usize) -> Self {
        Self {
            entries: Vec::with_capacity(entities),
            slots: Vec::with_capacity(slots),
        }
    }

    /// Forgets every entity, keeping the buffers.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.slots.clear();
    }

    /// Entities in the view.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entity.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the last entity's slots end: the slots' length, between fillings.
    fn end(&self) -> usize {
        self.entries
            .last()
            .map_or(0, |&(_, _, at, len)| at as usize + len as usize)
    }

    /// Appends an entity; ids must come in increasing order (an entity out of order, or
    /// with id 0, which is reserved, is left out).
    pub fn push(&mut self, id: EntityId, mask: u64, slots: &[u32]) {
        if id.0 == 0 || self.entries.last().is_some_and(|&(last, ..)| last >= id) {
            return;
        }
        self.entries
            .push((id, mask, self.slots.len() as u32, slots.len() as u32));
        self.slots.extend_from_slice(slots);
    }

    /// Makes the slots from `start` on, written in place, an entity (the next one in id
    /// order: a decoder never gives another).
    fn seal(&mut self, id: EntityId, mask: u64, start: usize) -> Result<(), DeltaError> {
        if id.0 == 0 || self.entries.last().is_some_and(|&(last, ..)| last >= id) {
            self.slots.truncate(start);
            return Err(DeltaError::BadId);
        }
        debug_assert_eq!(start, self.end(), "an entity's slots follow the last one's");
        let len = self.slots.len() - start;
        self.entries.push((id, mask, start as u32, len as u32));
        Ok(())
    }

    /// Appends `other`'s entities `range` (see [`View::push`]): their slots in one copy.
    pub fn extend_from(&mut self, other: &View, range: std::ops::Range<usize>) {
        let Some(entries) = other.entries.get(range.clone()) else {
            return;
        };
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let (start, end) = (first.2 as usize, last.2 as usize + last.3 as usize);
        // Within `other` the ids increase, and its entities' slots lie in id order (a
        // view's invariants: not checked per copy, as every client's snapshot copies).
        debug_assert!(
            entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].2 + w[0].3 <= w[1].2)
        );
        let in_order = self.entries.last().is_none_or(|&(id, ..)| id < first.0);
        match other.slots.get(start..end) {
            Some(slots) if in_order => {
                // Copied as they are, then moved to where their slots now start.
                let shift = (self.slots.len() as u32).wrapping_sub(start as u32);
                self.slots.extend_from_slice(slots);
                let from = self.entries.len();
                self.entries.extend_from_slice(entries);
                for entry in &mut self.entries[from..] {
                    entry.2 = entry.2.wrapping_add(shift);
                }
            }
            _ => {
                for i in range {
                    if let Some(record) = other.get(i) {
                        self.push_record(record);
                    }
                }
            }
        }
    }

    /// Appends a record (see [`View::push`]).
    pub fn push_record(&mut self, record: Record<'_>) {
        self.push(record.id, record.mask, record.slots);
    }

    /// Entity `i`.
    pub fn get(&self, i: usize) -> Option<Record<'_>> {
        let &(id, mask, start, len) = self.entries.get(i)?;
        let (start, end) = (start as usize, start as usize + len as usize);
        Some(Record {
            id,
            mask,
            slots: self.slots.get(start..end)?,
        })
    }

    /// Entity `i`'s id (what a walk in id order reads of most entities it passes).
    pub fn id(&self, i: usize) -> Option<EntityId> {
        self.entries.get(i).map(|e| e.0)
    }

    /// The entity with id `id`.
    pub fn find(&self, id: EntityId) -> Option<Record<'_>> {
        self.get(self.find_index(id)?)
    }

    /// The index of an entity.
    pub fn find_index(&self, id: EntityId) -> Option<usize> {
        self.entries.binary_search_by_key(&id, |e| e.0).ok()
    }

    /// Every entity, by id.
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.entries.len()).filter_map(|i| self.get(i))
    }
}

/// Whether two short slot runs are equal: a branch-free loop, cheaper than a call to
/// `memcmp` for the handful of slots a field or an entity has.
fn same(a: &[u32], b: &[u32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn vector_class(base: &[u32], cur: &[u32]) -> Option<usize> {
    let worst = (0..3)
        .map(|a| (i64::from(cur[a]) - i64::from(base[a])).unsigned_abs())
        .max()?;
    VECTOR_CLASSES
        .iter()
        .position(|&bits| worst < (1u64 << (bits - 1)))
}

fn rotation_small(bits: u32, base: &[u32], cur: &[u32]) -> bool {
    let half = bits / 2;
    base[0] == cur[0]
        && (1..4).all(|i| (i64::from(cur[i]) - i64::from(base[i])).abs() < (1 << (half - 1)))
}

fn whole_bits(coding: Coding, slots: &[u32]) -> u32 {
    match coding {
        Coding::Vec3 { bits, .. } => bits.iter().sum(),
        Coding::Rotation { bits } => 2 + 3 * bits,
        Coding::Scalar { bits, .. } => bits,
        Coding::Text { len_bits, max_len } => len_bits + 8 * slots[0].min(max_len),
    }
}

/// The most [`whole_bits`] counts for a field.
fn most_whole_bits(coding: Coding) -> u32 {
    match coding {
        Coding::Text { len_bits, max_len } => len_bits + 8 * max_len,
        _ => whole_bits(coding, &[]),
    }
}

/// The most [`delta_bits`] counts for a field.
fn most_delta_bits(coding: Coding) -> u32 {
    match coding {
        Coding::Vec3 { .. } => {
            let largest_class =
                VECTOR_CLASSES.len() as u32 + 3 * VECTOR_CLASSES[VECTOR_CLASSES.len() - 1];
            largest_class.max(VECTOR_CLASSES.len() as u32 + most_whole_bits(coding))
        }
        Coding::Rotation { .. } => 1 + most_whole_bits(coding),
        _ => most_whole_bits(coding),
    }
}

fn delta_bits(coding: Coding, base: &[u32], cur: &[u32]) -> u32 {
    match coding {
        Coding::Vec3 { .. } => match vector_class(base, cur) {
            Some(class) => class as u32 + 1 + 3 * VECTOR_CLASSES[class],
            None => VECTOR_CLASSES.len() as u32 + whole_bits(coding, cur),
        },
        Coding::Rotation { bits } => {
            if rotation_small(bits, base, cur) {
                1 + 3 * (bits / 2)
            } else {
                1 + whole_bits(coding, cur)
            }
        }
        _ => whole_bits(coding, cur),
    }
}

/// Writes a field whole. A slot beyond its field's range is written as the range's end:
/// written as it is, it would not fit its bits and misalign everything after it.
fn write_whole(w: &mut Writer, coding: Coding, slots: &[u32]) {
    match coding {
        Coding::Vec3 { bits, max } => {
            for a in 0..3 {
                put(w, bits[a], slots[a].min(max[a]));
            }
        }
        Coding::Rotation { bits } => {
            put(w, 2, slots[0].min(3));
            for c in &slots[1..4] {
                put(w, bits, (*c).min((1 << bits) - 1));
            }
        }
        Coding::Scalar { bits, max } => put(w, bits, slots[0].min(max)),
        Coding::Text { max_len, len_bits } => {
            let len = slots[0].min(max_len);
            put(w, len_bits, len);
            for i in 0..len as usize {
                put(w, 8, (slots[1 + i / 4] >> (8 * (i % 4))) & 0xff);
            }
        }
    }
}

fn read_whole(r: &mut Reader<'_>, coding: Coding, out: &mut [u32]) -> Result<(), DeltaError> {
    match coding {
        Coding::Vec3 { bits, max } => {
            for a in 0..3 {
                out[a] = get(r, bits[a])?;
                if out[a] > max[a] {
                    return Err(DeltaError::OutOfRange);
                }
            }
        }
        Coding::Rotation { bits } => {
            out[0] = get(r, 2)?;
            for c in &mut out[1..4] {
                *c = get(r, bits)?;
            }
        }
        Coding::Scalar { bits, max } => {
            out[0] = get(r, bits)?;
            if out[0] > max {
                return Err(DeltaError::OutOfRange);
            }
        }
        Coding::Text { max_len, len_bits } => {
            let len = get(r, len_bits)?;
            if len > max_len {
                return Err(DeltaError::OutOfRange);
            }
            out.fill(0);
            out[0] = len;
            for i in 0..len as usize {
                out[1 + i / 4] |= get(r, 8)? << (8 * (i % 4));
            }
        }
    }
    Ok(())
}

/// Iterates the present components of `mask` with their slots in `slots`.
fn components<'a>(
    layout: &'a Layout,
    mask: u64,
    slots: &'a [u32],
) -> impl Iterator<Item = (&'a ComponentLayout, &'a [u32])> + 'a {
    let mut start = 0usize;
    let mut rest = mask;
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let c = layout.components.get(i)?;
        let end = (start + c.slots as usize).min(slots.len());
        let s = &slots[start.min(end)..end];
        start = end;
        Some((c, s))
    })
}

fn field_slots(
    field: &FieldLayout,
    next: Option<&FieldLayout>,
    component: &[u32],
) -> (usize, usize) {
    let start = field.offset as usize;
    let end = next.map_or(component.len(), |n| n.offset as usize);
    (start, end)
}

/// Bits an entry would cost bit-packed, not counting its id gap: the budget's estimate.
/// The range coder spends less, by a ratio the edge learns per client from what it sent. `base` is the entity in the baseline,
/// `None` if it is new to it; `same_mask_as_previous_new` whether a new entry can say
/// "the same components as the last new one" in one bit.
pub fn entry_bits(
    layout: &Layout,
    base: Option<&Record<'_>>,
    cur: &Record<'_>,
    same_mask_as_previous_new: bool,
) -> u32 {
    if !layout.fits(cur) || base.is_some_and(|b| !layout.fits(b)) {
        return 0;
    }
    match base {
        Some(base) if base.mask == cur.mask => {
            let mut bits = 1;
            for ((c, b), (_, s)) in components(layout, base.mask, base.slots)
                .zip(components(layout, cur.mask, cur.slots))
            {
                if c.fields.is_empty() {
                    continue;
                }
                bits += 1;
                if same(b, s) {
                    continue;
                }
                if c.fields.len() > 1 {
                    bits += c.fields.len() as u32;
                }
                for (i, f) in c.fields.iter().enumerate() {
                    let (start, end) = field_slots(f, c.fields.get(i + 1), s);
                    if !same(&b[start..end], &s[start..end]) {
                        bits += delta_bits(f.coding, &b[start..end], &s[start..end]);
                    }
                }
            }
            bits
        }
        _ => {
            let mut bits = 2;
            if !same_mask_as_previous_new {
                bits += layout.mask_bits;
            }
            for (c, s) in components(layout, cur.mask, cur.slots) {
                for (i, f) in c.fields.iter().enumerate() {
                    let (start, end) = field_slots(f, c.fields.get(i + 1), s);
                    bits += whole_bits(f.coding, &s[start..end]);
                }
            }
            bits
        }
    }
}

/// Bits of the two counts, for budgeting.
pub fn header_bits(removed: u32, entries: u32) -> u32 {
    count_bits(removed) + count_bits(entries)
}

// ---- Bodies on the range coder ----------------------------------------------------------

/// Buckets of the bit length of the previous axes' deltas that pick an axis's
/// probabilities: 0, 1–3, 4–7, 8 and more.
const LENGTH_BUCKETS: usize = 4;

fn length_bucket(bits: u32) -> usize {
    match bits {
        0 => 0,
        1..=3 => 1,
        4..=7 => 2,
        _ => 3,
    }
}

/// Probabilities of a ranged field's delta (per axis and length bucket).
fn axes_probs(axes: usize) -> usize {
    axes * LENGTH_BUCKETS * NUMBER_PROBS
}

/// Probabilities a field's deltas take, and a new entity's whole value.
fn field_probs(coding: Coding) -> (usize, usize) {
    match coding {
        Coding::Vec3 { .. } => (axes_probs(3), axes_probs(3)),
        Coding::Rotation { .. } => (1 + axes_probs(3), 0),
        Coding::Scalar { .. } => (NUMBER_PROBS, 0),
        Coding::Text { .. } => (0, 0),
    }
}

/// Fields get probabilities of their own, in schema order, while they total at most
/// this many; fields after that share one set per kind of coding.
const OWN_PROBS: usize = 1 << 15;

// Probabilities every body has, first.
const P_TOUCHED: usize = 0; // 2: after an untouched / a touched baseline entity
const P_REMOVED: usize = 2;
const P_SAME_MASK: usize = 3;
const P_NEW_COUNT: usize = 4;
const P_NEW_GAP: usize = P_NEW_COUNT + NUMBER_PROBS;
const P_MASK: usize = P_NEW_GAP + NUMBER_PROBS; // one per component

/// Codes the axes of a ranged field (a vector, a rotation's three components, a
/// scalar): each a signed difference from `base` (zeros for a new entity's first value),
/// against the probabilities of its axis and the bucket of the bit length of the largest
/// difference before it in this field. `out` holds the values to code on encoding and
/// receives the decoded ones; each must be at most `max`.
fn code_axes<C: Coder>(
    c: &mut C,
    probs: &mut Probs,
    first: usize,
    base: &[u32],
    out: &mut [u32],
    max: &[u32],
) -> Result<(), DeltaError> {
    let mut longest = 0u32;
    for a in 0..out.len() {
        let at = first + (a * LENGTH_BUCKETS + length_bucket(longest)) * NUMBER_PROBS;
        let b = i64::from(base.get(a).copied().unwrap_or(0));
        let (d, bits) = range::signed(c, probs.number(at), i64::from(out[a].min(max[a])) - b);
        longest = longest.max(bits);
        out[a] = u32::try_from(b + d)
            .ok()
            .filter(|v| *v <= max[a])
            .ok_or(DeltaError::OutOfRange)?;
    }
    Ok(())
}

/// Codes a field of a new entity: vectors as differences from `previous` (the same field
/// of the previous new entity of the body, if it had the same components), everything
/// else, and a vector with nothing before it, whole at even odds.
fn code_whole<C: Coder>(
    c: &mut C,
    probs: &mut Probs,
    first: usize,
    coding: Coding,
    previous: Option<&[u32]>,
    out: &mut [u32],
) -> Result<(), DeltaError> {
    let check = |v: u32, max: u32| {
        if v > max {
            Err(DeltaError::OutOfRange)
        } else {
            Ok(v)
        }
    };
    match coding {
        Coding::Vec3 { max, bits } => match previous {
            Some(previous) => code_axes(c, probs, first, previous, out, &max),
            None => {
                for a in 0..3 {
                    out[a] = check(c.direct(bits[a], out[a].min(max[a])), max[a])?;
                }
                Ok(())
            }
        },
        Coding::Rotation { bits } => {
            out[0] = c.direct(2, out[0].min(3));
            let top = (1u32 << bits) - 1;
            for v in &mut out[1..4] {
                *v = c.direct(bits, (*v).min(top));
            }
            Ok(())
        }
        Coding::Scalar { bits, max } => {
            out[0] = check(c.direct(bits, out[0].min(max)), max)?;
            Ok(())
        }
        Coding::Text { max_len, len_bits } => {
            let len = check(c.direct(len_bits, out[0].min(max_len)), max_len)?;
            let mut words = [0u32; 64];
            let n = out.len().saturating_sub(1).min(words.len());
            words[..n].copy_from_slice(&out[1..1 + n]);
            out[1..].fill(0);
            for i in 0..len as usize {
                let byte = c.direct(
                    8,
                    (words.get(i / 4).copied().unwrap_or(0) >> (8 * (i % 4))) & 0xff,
                );
                if let Some(w) = out.get_mut(1 + i / 4) {
                    *w |= byte << (8 * (i % 4));
                }
            }
            out[0] = len;
            Ok(())
        }
    }
}

/// Codes a changed field against its baseline value.
fn code_delta<C: Coder>(
    c: &mut C,
    probs: &mut Probs,
    first: usize,
    coding: Coding,
    base: &[u32],
    out: &mut [u32],
) -> Result<(), DeltaError> {
    match coding {
        Coding::Vec3 { max, .. } => code_axes(c, probs, first, base, out, &max),
        Coding::Rotation { bits } => {
            let top = (1u32 << bits) - 1;
            if c.bit(probs.flag(first), out[0] != base[0]) {
                out[0] = c.direct(2, out[0].min(3));
                for v in &mut out[1..4] {
                    *v = c.direct(bits, (*v).min(top));
                }
                return Ok(());
            }
            out[0] = base[0];
            code_axes(c, probs, first + 1, &base[1..4], &mut out[1..4], &[top; 3])
        }
        Coding::Scalar { max, .. } => code_axes(c, probs, first, base, out, &[max]),
        Coding::Text { .. } => code_whole(c, probs, first, coding, None, out),
    }
}

/// Where each field's probabilities start in a body's, and how many there are.
#[derive(Debug, Clone, Default)]
struct ProbLayout {
    /// Per component: the offset of its changed? probability, then per field the offset
    /// of its changed? probability, its delta's and its whole value's.
    components: Vec<ComponentProbs>,
    len: usize,
    /// The probabilities of single decisions (the rest are number codes' runs).
    flags: Vec<usize>,
}

impl ProbLayout {
    fn new(components: &[ComponentLayout]) -> Self {
        let mut at = P_MASK + components.len();
        let mut components_at = Vec::with_capacity(components.len());
        // Shared sets for the fields past the budget, per kind: allocated after it.
        let shared_kinds = [
            Coding::Vec3 {
                max: [0; 3],
                bits: [0; 3],
            },
            Coding::Rotation { bits: 0 },
            Coding::Scalar { max: 0, bits: 0 },
        ];
        let mut own = 0usize;
        let mut pending_shared = Vec::new();
        for c in components {
            let changed = at;
            at += 1;
            let mut fields = Vec::with_capacity(c.fields.len());
            for f in &c.fields {
                let flag = at;
                at += 1;
                let (delta, whole) = field_probs(f.coding);
                if own + delta + whole <= OWN_PROBS {
                    own += delta + whole;
                    fields.push([flag, at, at + delta]);
                    at += delta + whole;
                } else {
                    let kind = shared_kinds
                        .iter()
                        .position(|k| {
                            std::mem::discriminant(k) == std::mem::discriminant(&f.coding)
                        })
                        .unwrap_or(0);
                    pending_shared.push((components_at.len(), fields.len(), kind));
                    fields.push([flag, 0, 0]);
                }
            }
            components_at.push((changed, fields));
        }
        let mut shared = [[0usize; 2]; 3];
        for (k, kind) in shared_kinds.iter().enumerate() {
            let (delta, whole) = field_probs(*kind);
            shared[k] = [at, at + delta];
            at += delta + whole;
        }
        for (c, f, kind) in pending_shared {
            let slot = &mut components_at[c].1[f];
            slot[1] = shared[kind][0];
            slot[2] = shared[kind][1];
        }
        // Everything outside the number codes' runs is a single decision's.
        let mut in_run = vec![false; at];
        let mut runs = |start: usize, count: usize| {
            for r in 0..count {
                let first = start + r * NUMBER_PROBS;
                in_run[first..first + NUMBER_PROBS].fill(true);
            }
        };
        runs(P_NEW_COUNT, 2);
        let run_counts = |coding: Coding| match coding {
            // (first run of the delta, runs of the delta, runs of the whole value)
            Coding::Vec3 { .. } => (0, 3 * LENGTH_BUCKETS, 3 * LENGTH_BUCKETS),
            Coding::Rotation { .. } => (1, 3 * LENGTH_BUCKETS, 0),
            Coding::Scalar { .. } => (0, 1, 0),
            Coding::Text { .. } => (0, 0, 0),
        };
        for (c, (_, fields)) in components.iter().zip(&components_at) {
            for (f, &[_, delta, whole]) in c.fields.iter().zip(fields) {
                let (skip, deltas, wholes) = run_counts(f.coding);
                runs(delta + skip, deltas);
                runs(whole, wholes);
            }
        }
        for (k, kind) in shared_kinds.iter().enumerate() {
            let (skip, deltas, wholes) = run_counts(*kind);
            runs(shared[k][0] + skip, deltas);
            runs(shared[k][1], wholes);
        }
        let flags = (0..at).filter(|&i| !in_run[i]).collect();
        Self {
            components: components_at,
            len: at,
            flags,
        }
    }
}

/// The probabilities of a component: its changed? decision's, then per field its
/// changed? decision's, its deltas' and its whole value's.
type ComponentProbs = (usize, Vec<[usize; 3]>);

/// The components of `mask`, in order, each with its probabilities and its slots' range
/// in an entity of that mask; a component the schema lacks is a mismatch.
fn coded_components(
    layout: &Layout,
    mask: u64,
) -> impl Iterator<Item = Result<(&ComponentLayout, &ComponentProbs, std::ops::Range<usize>), DeltaError>>
{
    let (mut start, mut rest) = (0usize, mask);
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let (Some(comp), Some(probs)) = (layout.components.get(i), layout.probs.components.get(i))
        else {
            rest = 0;
            return Some(Err(DeltaError::BaselineMismatch));
        };
        let range = start..start + comp.slots as usize;
        start = range.end;
        Some(Ok((comp, probs, range)))
    })
}

/// Codes a changed entry's components (the encoder gives `out` the current slots; the
/// decoder the baseline's, overwritten as it reads). What changed is decided against
/// `base`, the baseline's slots; a changed field is coded as a difference from its
/// baseline value, or with `motion` (the entity's slots in the reference, and the spans)
/// from its prediction ([`predicted`]).
#[allow(
    clippy::too_many_arguments,
    reason = "one call per side of the coder: the tables, the mask, the baseline's, current and output slots and the motion"
)]
fn code_changed<C: Coder>(
    c: &mut C,
    layout: &Layout,
    probs: &mut Probs,
    mask: u64,
    base: &[u32],
    motion: Option<Motion<'_>>,
    cur: Option<&[u32]>,
    out: &mut [u32],
) -> Result<(), DeltaError> {
    let mut guess = [0u32; 4];
    for coded in coded_components(layout, mask) {
        let (comp, (changed_at, fields_at), range) = coded?;
        if comp.fields.is_empty() {
            continue;
        }
        let b = &base[range.clone()];
        let differs = cur.is_some_and(|s| !same(b, &s[range.clone()]));
        if !c.bit(probs.flag(*changed_at), differs) {
            continue;
        }
        let o = &mut out[range.clone()];
        for (k, f) in comp.fields.iter().enumerate() {
            let (lo, hi) = field_slots(f, comp.fields.get(k + 1), b);
            let [flag, delta, _] = fields_at[k];
            if comp.fields.len() > 1 {
                let differs =
                    cur.is_some_and(|s| !same(&b[lo..hi], &s[range.start + lo..range.start + hi]));
                if !c.bit(probs.flag(flag), differs) {
                    continue;
                }
            }
            let at = range.start + lo..range.start + hi;
            let p = match motion {
                Some(m) => predicted(f.coding, &b[lo..hi], &m.reference[at], m, &mut guess),
                None => &b[lo..hi],
            };
            code_delta(c, probs, delta, f.coding, p, &mut o[lo..hi])?;
        }
    }
    Ok(())
}

/// Codes a new entry's components, each field whole (`out` holds the slots to code on
/// encoding and receives them on decoding).
fn code_new<C: Coder>(
    c: &mut C,
    layout: &Layout,
    probs: &mut Probs,
    mask: u64,
    previous: Option<&[u32]>,
    out: &mut [u32],
) -> Result<(), DeltaError> {
    for coded in coded_components(layout, mask) {
        let (comp, (_, fields_at), range) = coded?;
        for (k, f) in comp.fields.iter().enumerate() {
            let (lo, hi) = field_slots(f, comp.fields.get(k + 1), &out[range.clone()]);
            let (lo, hi) = (range.start + lo, range.start + hi);
            let [_, _, whole] = fields_at[k];
            code_whole(
                c,
                probs,
                whole,
                f.coding,
                previous.map(|p| &p[lo..hi]),
                &mut out[lo..hi],
            )?;
        }
    }
    Ok(())
}

/// Codes a new entry's component mask: one bit, "the same as the previous new entry's",
/// or the mask, a bit per component.
fn code_mask<C: Coder>(
    c: &mut C,
    layout: &Layout,
    probs: &mut Probs,
    previous: Option<u64>,
    mask: u64,
) -> Result<u64, DeltaError> {
    if let Some(p) = previous
        && c.bit(probs.flag(P_SAME_MASK), p == mask)
    {
        return Ok(p);
    }
    let mut out = 0u64;
    for i in 0..layout.mask_bits as usize {
        if c.bit(probs.flag(P_MASK + i), mask & (1 << i) != 0) {
            out |= 1 << i;
        }
    }
    if layout.valid_mask(out) {
        Ok(out)
    } else {
        Err(DeltaError::OutOfRange)
    }
}

/// A second view the client holds, older than the baseline: the edge extrapolates each
/// entity's motion from it through the baseline to the snapshot's tick and codes the
/// changed motion fields (vectors, rotations) as differences from that prediction.
#[derive(Debug, Clone, Copy)]
pub struct Reference<'a> {
    /// The older view.
    pub view: &'a View,
    /// Ticks from it to the baseline (at least 1).
    pub behind: u32,
    /// Ticks from the baseline to the snapshot being coded (at least 1).
    pub ahead: u32,
}

/// `b` carried on by its motion since `r`: `b + round((b - r) * ahead / behind)`,
/// rounding halves up, clamped to `0..=max` (exact integers: the client computes the
/// same).
fn extrapolate(b: u32, r: u32, ahead: u32, behind: u32, max: u32) -> u32 {
    let d = i64::from(b) - i64::from(r);
    let (ahead, behind) = (i64::from(ahead), i64::from(behind.max(1)));
    let step = if behind == 1 {
        // The usual reference, a snapshot before the baseline: (2·d·ahead + 1) / 2 rounds
        // down to d·ahead. Saturating only where the sum is far outside the grid anyway.
        d.saturating_mul(ahead)
    } else if ahead < 1 << 20 && behind.count_ones() == 1 {
        // |2·d·ahead| < 2^53: exact in 64 bits; and a span of a power of two ticks (30
        // snapshots a second at 60 ticks: 2) divides by a shift, which floors as
        // `div_euclid` does.
        (2 * d * ahead + behind) >> (behind.trailing_zeros() + 1)
    } else if ahead < 1 << 20 {
        (2 * d * ahead + behind).div_euclid(2 * behind)
    } else {
        let (d, ahead, behind) = (i128::from(d), i128::from(ahead), i128::from(behind));
        let step = (2 * d * ahead + behind).div_euclid(2 * behind);
        i64::try_from(step).unwrap_or(if step < 0 { i64::MIN } else { i64::MAX })
    };
    i64::from(b).saturating_add(step).clamp(0, i64::from(max)) as u32
}

/// An entity's slots in the reference view, and the spans its motion is carried over.
#[derive(Debug, Clone, Copy)]
struct Motion<'a> {
    reference: &'a [u32],
    ahead: u32,
    behind: u32,
}

/// What a changed field is coded against: a vector extrapolated from its reference
/// value `r`, a rotation too if its dropped component is the same in both; anything else,
/// the baseline value `b`. `guess` holds an extrapolated value.
fn predicted<'g>(
    coding: Coding,
    b: &'g [u32],
    r: &[u32],
    m: Motion<'_>,
    guess: &'g mut [u32; 4],
) -> &'g [u32] {
    match coding {
        Coding::Vec3 { max, .. } if b.len() == 3 && r.len() == 3 => {
            for a in 0..3 {
                guess[a] = extrapolate(b[a], r[a], m.ahead, m.behind, max[a]);
            }
            &guess[..3]
        }
        Coding::Rotation { bits } if b.len() == 4 && r.len() == 4 && b[0] == r[0] => {
            let top = (1u32 << bits) - 1;
            guess[0] = b[0];
            for a in 1..4 {
                guess[a] = extrapolate(b[a], r[a], m.ahead, m.behind, top);
            }
            &guess[..4]
        }
        _ => b,
    }
}

/// Walks the reference view alongside the baseline (entities asked for in id order):
/// each changed baseline entity's record there, if it has one with the same components,
/// as the [`Motion`] its changed fields are predicted from.
struct Predictor<'a> {
    reference: Option<Reference<'a>>,
    at: usize,
}

impl<'a> Predictor<'a> {
    fn new(reference: Option<Reference<'a>>) -> Self {
        Self { reference, at: 0 }
    }

    fn motion(&mut self, layout: &Layout, old: Record<'_>) -> Option<Motion<'a>> {
        let how = self.reference?;
        while how.view.get(self.at).is_some_and(|r| r.id < old.id) {
            self.at += 1;
        }
        let r = how
            .view
            .get(self.at)
            .filter(|r| r.id == old.id && r.mask == old.mask && layout.fits(r))?;
        Some(Motion {
            reference: r.slots,
            ahead: how.ahead,
            behind: how.behind,
        })
    }
}

/// A body's probability table, every probability at even odds when the body starts. The
/// single decisions' are set so at the start; a number code's run of [`NUMBER_PROBS`]
/// only when the body first reaches it: a body reaches few of its runs (most fields do
/// not change), and setting the whole table — 12 KB for the arena — was a fifth of an
/// encode's time.
#[derive(Debug, Default)]
struct Probs {
    table: Vec<u16>,
    /// Per run, by its first probability's index over 16 (runs are more than 16 apart),
    /// the body that set it last.
    stamps: Vec<u32>,
    body: u32,
}

impl Probs {
    /// The table for a new body: the thread's own, kept from its last body (a busy edge
    /// codes tens of thousands a second).
    fn begin(layout: &ProbLayout) -> Self {
        let mut probs = PROBS.take();
        probs.table.resize(layout.len, range::PROB_INIT);
        probs.stamps.resize(layout.len / 16 + 1, 0);
        probs.body = probs.body.wrapping_add(1);
        if probs.body == 0 {
            probs.stamps.fill(0);
            probs.body = 1;
        }
        for &f in &layout.flags {
            probs.table[f] = range::PROB_INIT;
        }
        probs
    }

    /// Gives the table back for the thread's next body.
    fn keep(self) {
        PROBS.set(self);
    }

    /// A single decision's probability.
    fn flag(&mut self, i: usize) -> &mut u16 {
        &mut self.table[i]
    }

    /// The run of a number code starting at `start`, at even odds if this body has not
    /// reached it before.
    fn number(&mut self, start: usize) -> &mut [u16] {
        let run = &mut self.table[start..start + NUMBER_PROBS];
        let stamp = &mut self.stamps[start / 16];
        if *stamp != self.body {
            *stamp = self.body;
            run.fill(range::PROB_INIT);
        }
        run
    }
}

thread_local! {
    static PROBS: std::cell::Cell<Probs> = const {
        std::cell::Cell::new(Probs {
            table: Vec::new(),
            stamps: Vec::new(),
            body: 0,
        })
    };
}

/// `view` without the entities whose slots do not match their mask's layout: itself
/// when all do (the edge's views always do), without copying it.
fn fitting<'v>(layout: &Layout, view: &'v View) -> std::borrow::Cow<'v, View> {
    // Read off the entries alone (a record's slot count is its entry's), each mask
    // looked up once in a row: a view's entities share a few masks, and both views of
    // every client's body pass here.
    let mut fits = None;
    let all_fit = view.entries.iter().all(|&(_, mask, _, len)| {
        if fits == Some((mask, len)) {
            return true;
        }
        let ok = layout.valid_mask(mask) && len as usize == layout.entity_slots(mask);
        if ok {
            fits = Some((mask, len));
        }
        ok
    });
    if all_fit {
        return std::borrow::Cow::Borrowed(view);
    }
    let mut fit = View::with_capacity(view.len(), view.slots.len());
    for r in view.iter().filter(|r| layout.fits(r)) {
        fit.push_record(r);
    }
    std::borrow::Cow::Owned(fit)
}

/// Encodes `current` against `baseline`. Returns the body bytes. Entities whose slots
/// do not match their mask's layout are left out rather than corrupting the body.
pub fn encode(layout: &Layout, baseline: &View, current: &View) -> Vec<u8> {
    encode_predicted(layout, baseline, None, current)
}

/// Encodes `current` against `baseline`, changed motion fields against their
/// extrapolation from `reference` when one is given (see [`Reference`]).
pub fn encode_predicted(
    layout: &Layout,
    baseline: &View,
    reference: Option<Reference<'_>>,
    current: &View,
) -> Vec<u8> {
    let (base, cur) = (fitting(layout, baseline), fitting(layout, current));
    let (base, cur): (&View, &View) = (&base, &cur);
    let EncodeBuffers {
        mut new,
        mut scratch,
    } = ENCODE_BUFFERS.take();
    // New entries: absent from the baseline, or there with other components.
    new.clear();
    let mut b = 0usize;
    for (i, &(id, mask, ..)) in cur.entries.iter().enumerate() {
        while base.entries.get(b).is_some_and(|x| x.0 < id) {
            b += 1;
        }
        if base.entries.get(b).is_none_or(|x| x.0 != id || x.1 != mask) {
            new.push(i);
        }
    }
    let mut e = range::Encoder::with_capacity(64 + 4 * new.len() + cur.len());
    let mut probs = Probs::begin(&layout.probs);
    range::unsigned(&mut e, probs.number(P_NEW_COUNT), new.len() as u64);
    let mut previous = 0u32;
    for &i in &new {
        let id = cur.get(i).map_or(0, |r| r.id.0);
        range::unsigned(
            &mut e,
            probs.number(P_NEW_GAP),
            u64::from(id - previous - 1),
        );
        previous = id;
    }
    let mut predictor = Predictor::new(reference);
    let mut previous_new: Option<Record<'_>> = None;
    let (mut b, mut n, mut touched) = (0usize, 0usize, false);
    let mut c_i = 0usize;
    loop {
        let next_new = new.get(n).and_then(|&i| cur.id(i));
        match (base.get(b), next_new) {
            (Some(old), next) if next.is_none_or(|id| old.id <= id) => {
                // Advance through the current view to this baseline entity.
                while cur.id(c_i).is_some_and(|id| id < old.id) {
                    c_i += 1;
                }
                let now = cur
                    .get(c_i)
                    .filter(|r| r.id == old.id && r.mask == old.mask);
                let changed = now.is_none_or(|r| !same(r.slots, old.slots));
                e.bit(probs.flag(P_TOUCHED + usize::from(touched)), changed);
                touched = changed;
                b += 1;
                if !changed {
                    continue;
                }
                e.bit(probs.flag(P_REMOVED), now.is_none());
                if let Some(now) = now {
                    scratch.clear();
                    scratch.extend_from_slice(now.slots);
                    let motion = predictor.motion(layout, old);
                    let _ = code_changed(
                        &mut e,
                        layout,
                        &mut probs,
                        old.mask,
                        old.slots,
                        motion,
                        Some(now.slots),
                        &mut scratch,
                    );
                }
            }
            (_, Some(_)) => {
                let Some(r) = cur.get(new[n]) else { break };
                n += 1;
                let mask = code_mask(
                    &mut e,
                    layout,
                    &mut probs,
                    previous_new.map(|p| p.mask),
                    r.mask,
                )
                .unwrap_or(r.mask);
                let before = previous_new.filter(|p| p.mask == mask).map(|p| p.slots);
                scratch.clear();
                scratch.extend_from_slice(r.slots);
                let _ = code_new(&mut e, layout, &mut probs, mask, before, &mut scratch);
                previous_new = Some(r);
            }
            _ => break,
        }
    }
    probs.keep();
    ENCODE_BUFFERS.set(EncodeBuffers { new, scratch });
    e.finish()
}

/// An encode's work buffers (the new entries' indices, an entry's slots being coded):
/// the thread's own, kept from its last body.
#[derive(Debug, Default)]
struct EncodeBuffers {
    new: Vec<usize>,
    scratch: Vec<u32>,
}

thread_local! {
    static ENCODE_BUFFERS: std::cell::Cell<EncodeBuffers> = const {
        std::cell::Cell::new(EncodeBuffers {
            new: Vec::new(),
            scratch: Vec::new(),
        })
    };
}

/// Decodes a body against `baseline`, giving the new view.
pub fn decode(layout: &Layout, baseline: &View, body: &[u8]) -> Result<View, DeltaError> {
    decode_predicted(layout, baseline, None, body)
}

/// Decodes a body coded with [`encode_predicted`] against `baseline` and `reference`.
pub fn decode_predicted(
    layout: &Layout,
    baseline: &View,
    reference: Option<Reference<'_>>,
    body: &[u8],
) -> Result<View, DeltaError> {
    let mut view = View::new();
    decode_predicted_into(layout, baseline, reference, body, &mut view, None)?;
    Ok(view)
}

/// Where a decoded entity's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Unchanged from the baseline's entity at this index.
    Carried(u32),
    /// Changed from the baseline's entity at this index: sent in this body.
    Changed(u32),
    /// New to the baseline: sent whole in this body.
    New,
}

/// [`decode_predicted`] into `view`, whose buffers it reuses (a client decodes every
/// snapshot; the view it no longer needs is the next one's room), and, when asked, each
/// entity's [`Origin`] into `origins`, index for index. On an error `view` holds what was
/// decoded before it.
pub fn decode_predicted_into(
    layout: &Layout,
    baseline: &View,
    reference: Option<Reference<'_>>,
    body: &[u8],
    view: &mut View,
    origins: Option<&mut Vec<Origin>>,
) -> Result<(), DeltaError> {
    let decoded = decode_into(layout, baseline, reference, body, view, origins);
    if decoded.is_err() {
        // The slots of an entity the error cut short go with it.
        view.slots.truncate(view.end());
    }
    decoded
}

fn decode_into(
    layout: &Layout,
    baseline: &View,
    reference: Option<Reference<'_>>,
    body: &[u8],
    view: &mut View,
    mut origins: Option<&mut Vec<Origin>>,
) -> Result<(), DeltaError> {
    view.clear();
    if let Some(origins) = origins.as_deref_mut() {
        origins.clear();
    }
    let mut d = range::Decoder::new(body);
    let mut probs = Probs::begin(&layout.probs);
    let (new_count, _) = range::unsigned(&mut d, probs.number(P_NEW_COUNT), 0);
    if new_count > MAX_VIEW_ENTITIES as u64 {
        return Err(DeltaError::TooMany);
    }
    let mut new_ids = Vec::with_capacity(new_count as usize);
    let mut previous = 0u32;
    for _ in 0..new_count {
        let (gap, _) = range::unsigned(&mut d, probs.number(P_NEW_GAP), 0);
        let id = u32::try_from(u64::from(previous) + gap + 1).map_err(|_| DeltaError::BadId)?;
        new_ids.push(EntityId(id));
        previous = id;
        if !d.within() {
            return Err(DeltaError::Truncated);
        }
    }
    // Sized up front: growing a view entity by entity costs more than decoding it.
    view.entries
        .reserve((baseline.len() + new_ids.len()).min(MAX_VIEW_ENTITIES));
    view.slots
        .reserve(baseline.slots.len() + 16 * new_ids.len());
    let mut predictor = Predictor::new(reference);
    // The previous new entity: its mask and where its slots are in `view`.
    let mut previous_new: Option<(u64, std::ops::Range<usize>)> = None;
    // Baseline entities carried over and not yet copied: a run is copied at once.
    let mut carried = 0..0;
    let (mut b, mut n, mut touched) = (0usize, 0usize, false);
    loop {
        let old = baseline.get(b);
        match (old, new_ids.get(n)) {
            (Some(old), next) if next.is_none_or(|id| old.id <= *id) => {
                b += 1;
                if !layout.fits(&old) {
                    return Err(DeltaError::BaselineMismatch);
                }
                let changed = d.bit(probs.flag(P_TOUCHED + usize::from(touched)), false);
                touched = changed;
                if !changed {
                    if next == Some(&old.id) {
                        return Err(DeltaError::BaselineMismatch);
                    }
                    if carried.end != b - 1 {
                        view.extend_from(baseline, carried.clone());
                        carried.start = b - 1;
                    }
                    carried.end = b;
                    if let Some(origins) = origins.as_deref_mut() {
                        origins.push(Origin::Carried((b - 1) as u32));
                    }
                    continue;
                }
                view.extend_from(baseline, carried.clone());
                carried = b..b;
                if d.bit(probs.flag(P_REMOVED), false) {
                    continue;
                }
                if next == Some(&old.id) {
                    return Err(DeltaError::BaselineMismatch);
                }
                if let Some(origins) = origins.as_deref_mut() {
                    origins.push(Origin::Changed((b - 1) as u32));
                }
                // Decoded in place: the baseline's slots, overwritten as the body says.
                let start = view.slots.len();
                view.slots.extend_from_slice(old.slots);
                let motion = predictor.motion(layout, old);
                code_changed(
                    &mut d,
                    layout,
                    &mut probs,
                    old.mask,
                    old.slots,
                    motion,
                    None,
                    &mut view.slots[start..],
                )?;
                view.seal(old.id, old.mask, start)?;
            }
            (_, Some(&id)) => {
                n += 1;
                view.extend_from(baseline, carried.clone());
                carried = b..b;
                if let Some(origins) = origins.as_deref_mut() {
                    origins.push(Origin::New);
                }
                let mask = code_mask(
                    &mut d,
                    layout,
                    &mut probs,
                    previous_new.as_ref().map(|p| p.0),
                    0,
                )?;
                let start = view.slots.len();
                view.slots.resize(start + layout.entity_slots(mask), 0);
                let (done, slots) = view.slots.split_at_mut(start);
                let before = previous_new
                    .as_ref()
                    .filter(|p| p.0 == mask)
                    .map(|p| &done[p.1.clone()]);
                code_new(&mut d, layout, &mut probs, mask, before, slots)?;
                view.seal(id, mask, start)?;
                previous_new = Some((mask, start..view.slots.len()));
            }
            _ => break,
        }
        if view.len() + carried.len() > MAX_VIEW_ENTITIES {
            return Err(DeltaError::TooMany);
        }
        if !d.within() {
            return Err(DeltaError::Truncated);
        }
    }
    view.extend_from(baseline, carried);
    probs.keep();
    d.finish()
}

// ---- Inputs ----------------------------------------------------------------------------

/// Most inputs one input batch carries (the newest and the earlier ones not yet
/// acknowledged).
pub const MAX_BATCH_INPUTS: usize = 8;
/// Most ticks one input stands for.
pub const MAX_TICKS_PER_INPUT: u8 = 8;

/// How a mode's input fields sit in slots and go on the wire.
#[derive(Debug, Clone)]
pub struct InputLayout {
    fields: Vec<FieldLayout>,
    slots: usize,
}

impl InputLayout {
    /// The input layout of a (valid) schema.
    pub fn new(schema: &ModeSchema) -> Self {
        let (fields, slots) = field_layouts(&schema.input);
        Self {
            fields,
            slots: slots as usize,
        }
    }

    /// Slots one input's fields take.
    pub fn slots(&self) -> usize {
        self.slots
    }
}

/// One input: what the core owns (sequence, span, view tick) and the mode's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// +1 per input; the edge applies each once, in order.
    pub seq: u32,
    /// Ticks it stands for, 1..=[`MAX_TICKS_PER_INPUT`].
    pub ticks: u8,
    /// The tick the player saw remote entities at (lag compensation rewinds to it).
    pub view_tick: u32,
    /// The mode's input fields, quantized ([`InputLayout::slots`] of them).
    pub slots: Vec<u32>,
}

/// One input to encode, borrowing its fields' slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputRef<'a> {
    /// See [`InputRecord::seq`].
    pub seq: u32,
    /// See [`InputRecord::ticks`].
    pub ticks: u8,
    /// See [`InputRecord::view_tick`].
    pub view_tick: u32,
    /// See [`InputRecord::slots`].
    pub slots: &'a [u32],
}

impl InputRecord {
    /// The record, borrowed for [`encode_inputs`].
    pub fn as_ref(&self) -> InputRef<'_> {
        InputRef {
            seq: self.seq,
            ticks: self.ticks,
            view_tick: self.view_tick,
            slots: &self.slots,
        }
    }
}

/// Encodes a batch of inputs, newest first (sequence numbers strictly decreasing):
///
/// ```text
/// count − 1 (3 bits)
/// newest:  seq(32) ticks − 1 (3) view_tick(32) fields, whole
/// each earlier one: seq gap from the one before (a gap code)  ticks − 1 (3)
///          view tick: back?(1) [count code: how far it moved back] or forward [count code]
///          same fields as the one before?(1) [fields, whole]
/// ```
///
/// Inputs out of order, beyond [`MAX_BATCH_INPUTS`], with a span outside
/// 1..=[`MAX_TICKS_PER_INPUT`] or with slots not matching the layout are left out; view
/// ticks of neighbouring inputs further apart than 65,535 ticks are brought within that.
pub fn encode_inputs<'a>(
    layout: &InputLayout,
    inputs: impl IntoIterator<Item = InputRef<'a>>,
) -> Vec<u8> {
    let mut kept = [InputRef::default(); MAX_BATCH_INPUTS];
    let mut n = 0;
    for input in inputs {
        let fits = input.slots.len() == layout.slots
            && (1..=MAX_TICKS_PER_INPUT).contains(&input.ticks)
            && (n == 0 || input.seq < kept[n - 1].seq)
            && n < MAX_BATCH_INPUTS;
        if fits {
            kept[n] = input;
            n += 1;
        }
    }
    if n == 0 {
        return Vec::new();
    }
    let kept = &kept[..n];
    let mut w = Writer::new(Vec::with_capacity(8 + 8 * n));
    put(&mut w, 3, n as u32 - 1);
    let mut previous: Option<&InputRef<'_>> = None;
    for input in kept {
        match previous {
            None => {
                put(&mut w, 32, input.seq);
                put(&mut w, 3, u32::from(input.ticks - 1));
                put(&mut w, 32, input.view_tick);
                write_fields(&mut w, layout, input.slots);
            }
            Some(prev) => {
                write_gap(&mut w, prev.seq - input.seq);
                put(&mut w, 3, u32::from(input.ticks - 1));
                let back = input.view_tick <= prev.view_tick;
                put_bit(&mut w, back);
                let moved = input.view_tick.abs_diff(prev.view_tick);
                write_count(&mut w, moved.min(0xffff));
                let same = same(input.slots, prev.slots);
                put_bit(&mut w, same);
                if !same {
                    write_fields(&mut w, layout, input.slots);
                }
            }
        }
        previous = Some(input);
    }
    let _ = w.byte_align();
    w.into_writer()
}

fn write_fields(w: &mut Writer, layout: &InputLayout, slots: &[u32]) {
    for (i, f) in layout.fields.iter().enumerate() {
        let (start, end) = field_slots(f, layout.fields.get(i + 1), slots);
        write_whole(w, f.coding, &slots[start..end]);
    }
}

fn read_fields(r: &mut Reader<'_>, layout: &InputLayout) -> Result<Vec<u32>, DeltaError> {
    let mut slots = vec![0u32; layout.slots];
    for (i, f) in layout.fields.iter().enumerate() {
        let (start, end) = field_slots(f, layout.fields.get(i + 1), &slots);
        read_whole(r, f.coding, &mut slots[start..end])?;
    }
    Ok(slots)
}

/// Decodes [`encode_inputs`]' bytes, newest first. An empty body is an empty batch.
pub fn decode_inputs(layout: &InputLayout, body: &[u8]) -> Result<Vec<InputRecord>, DeltaError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(body);
    let count = get(&mut r, 3)? as usize + 1;
    let mut inputs: Vec<InputRecord> = Vec::with_capacity(count);
    for _ in 0..count {
        let input = match inputs.last() {
            None => InputRecord {
                seq: get(&mut r, 32)?,
                ticks: get(&mut r, 3)? as u8 + 1,
                view_tick: get(&mut r, 32)?,
                slots: read_fields(&mut r, layout)?,
            },
            Some(prev) => {
                let seq = prev
                    .seq
                    .checked_sub(read_gap(&mut r)?)
                    .ok_or(DeltaError::BadId)?;
                let ticks = get(&mut r, 3)? as u8 + 1;
                let back = r.read_bit()?;
                let moved = read_count(&mut r)?;
                let view_tick = if back {
                    prev.view_tick.checked_sub(moved)
                } else {
                    prev.view_tick.checked_add(moved)
                }
                .ok_or(DeltaError::OutOfRange)?;
                let slots = if r.read_bit()? {
                    prev.slots.clone()
                } else {
                    read_fields(&mut r, layout)?
                };
                InputRecord {
                    seq,
                    ticks,
                    view_tick,
                    slots,
                }
            }
        };
        inputs.push(input);
    }
    Ok(inputs)
}

/// Reads entities' components and fields by name, from a mode's schema alone: what a
/// tool, a foreign binding or a game that links no mode code needs to make sense of a
/// view. (Rust games that link a mode read its components typed, with [`Fields::get`].)
///
/// ```
/// use outpost_protocol::EntityId;
/// use outpost_protocol::replication::{Fields, View};
/// use outpost_protocol::schema::{ComponentDef, FieldDef, FieldKind, ModeSchema, Value, Visibility};
///
/// let schema = ModeSchema {
///     mode: "tiny".into(),
///     components: vec![ComponentDef {
///         name: "health".into(),
///         fields: vec![FieldDef::new("hp", FieldKind::Int { min: 0, max: 100 })],
///         visibility: Visibility::Everyone,
///         priority: 0,
///     }],
///     input: Vec::new(),
///     events: Vec::new(),
///  requests: Vec::new() };
/// let fields = Fields::new(schema);
/// let mut view = View::new();
/// view.push(EntityId(7), 1, &[42]);
/// let record = view.find(EntityId(7)).expect("in view");
/// assert_eq!(fields.value(&record, "health", "hp"), Some(Value::Int(42)));
/// ```
#[derive(Debug, Clone)]
pub struct Fields {
    schema: ModeSchema,
    layout: Layout,
}

/// A component of a mode, read typed from an entity's record ([`Fields::get`]).
pub trait Component: Sized {
    /// Its name in the schema.
    const NAME: &'static str;
    /// The component from its fields' values, in the schema's field order (`None` if
    /// they are not what this type expects: another build of the mode).
    fn from_values(values: &[Value]) -> Option<Self>;
}

impl Fields {
    /// Access by the names of `schema` (a valid one, e.g. from [`ModeSchema::verified`]).
    pub fn new(schema: ModeSchema) -> Self {
        Self {
            layout: Layout::new(&schema),
            schema,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &ModeSchema {
        &self.schema
    }

    /// Its layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether an entity has a component.
    pub fn has(&self, record: &Record<'_>, component: &str) -> bool {
        self.schema
            .component(component)
            .is_some_and(|(c, _)| record.mask & (1 << c) != 0)
    }

    /// The value of one field of one of an entity's components (`None` if the entity
    /// lacks the component or the schema has no such field).
    pub fn value(&self, record: &Record<'_>, component: &str, field: &str) -> Option<Value> {
        let (c, def) = self.schema.component(component)?;
        let f = def.fields.iter().position(|f| f.name == field)?;
        self.field(record, c, f)
    }

    /// Every field of one of an entity's components, in schema order.
    pub fn values(&self, record: &Record<'_>, component: &str) -> Option<Vec<Value>> {
        let (c, def) = self.schema.component(component)?;
        (0..def.fields.len())
            .map(|f| self.field(record, c, f))
            .collect()
    }

    /// A component, typed.
    pub fn get<C: Component>(&self, record: &Record<'_>) -> Option<C> {
        C::from_values(&self.values(record, C::NAME)?)
    }

    /// Appends an entity to `view` (after every entity of a lower id) from its
    /// components' values by name, each field quantized by its kind: how a mode's
    /// `write_records` writes an entity without laying out slots by hand. A tag component takes no values. Returns false, appending nothing,
    /// if a component is not in the schema or is given the wrong number of values.
    pub fn write(&self, view: &mut View, id: EntityId, components: &[(&str, &[Value])]) -> bool {
        let mut mask = 0u64;
        for (name, values) in components {
            match self.schema.component(name) {
                Some((c, def)) if def.fields.len() == values.len() => mask |= 1 << c,
                _ => return false,
            }
        }
        let mut slots = Vec::with_capacity(self.layout.entity_slots(mask));
        for (c, def) in self.schema.components.iter().enumerate() {
            if mask & (1 << c) == 0 {
                continue;
            }
            let Some((_, values)) = components.iter().find(|(name, _)| *name == def.name) else {
                continue;
            };
            for (field, value) in def.fields.iter().zip(values.iter()) {
                let at = slots.len();
                slots.resize(at + field.kind.slots(), 0);
                field.kind.quantize(value, &mut slots[at..]);
            }
        }
        view.push(id, mask, &slots);
        true
    }

    /// [`Fields::write`] for many entities at once, in any order: sorts `rows` by id and
    /// appends each (how a mode that gathers its entities from several queries writes
    /// them). Returns how many were written.
    pub fn write_rows(&self, view: &mut View, rows: &mut [(EntityId, Row)]) -> usize {
        rows.sort_by_key(|(id, _)| *id);
        let mut components: Vec<(&str, &[Value])> = Vec::new();
        let mut written = 0;
        for (id, row) in rows.iter() {
            components.clear();
            components.extend(row.iter().map(|(name, values)| (*name, values.as_slice())));
            written += usize::from(self.write(view, *id, &components));
        }
        written
    }

    /// The value of field `f` of the schema's component `c` of an entity, by index: what
    /// [`Fields::value`] reads once the names are looked up (`None` if the entity lacks
    /// the component or there is no such field).
    pub fn field(&self, record: &Record<'_>, c: usize, f: usize) -> Option<Value> {
        let start = self.layout.offset(record.mask, c)?;
        let layout = self.layout.components.get(c)?.fields.get(f)?;
        let kind = &self.schema.components.get(c)?.fields.get(f)?.kind;
        let at = start + layout.offset as usize;
        let slots = record.slots.get(at..at + kind.slots())?;
        Some(kind.value(slots))
    }
}

/// One entity's components and their values, by name, for [`Fields::write_rows`].
pub type Row = Vec<(&'static str, Vec<Value>)>;

/// One message type's fields: their definitions and how they sit in slots.
#[derive(Debug, Clone)]
struct MessageFields {
    name: String,
    fields: Vec<FieldDef>,
    layout: InputLayout,
}

impl MessageFields {
    fn new(name: &str, fields: &[FieldDef]) -> Self {
        let (layouts, slots) = field_layouts(fields);
        Self {
            name: name.to_owned(),
            fields: fields.to_vec(),
            layout: InputLayout {
                fields: layouts,
                slots: slots as usize,
            },
        }
    }

    /// Writes `values` (one per field, quantized as the fields declare; a value of
    /// another kind than its field's as the field's lowest); false if they are not as
    /// many as the fields.
    fn write(&self, w: &mut Writer, values: &[Value]) -> bool {
        if values.len() != self.fields.len() {
            return false;
        }
        let mut slots = vec![0u32; self.layout.slots];
        let mut at = 0;
        for (field, value) in self.fields.iter().zip(values) {
            let n = field.kind.slots();
            field.kind.quantize(value, &mut slots[at..at + n]);
            at += n;
        }
        write_fields(w, &self.layout, &slots);
        true
    }

    fn read(&self, r: &mut Reader<'_>) -> Result<Vec<Value>, DeltaError> {
        let slots = read_fields(r, &self.layout)?;
        let mut at = 0;
        Ok(self
            .fields
            .iter()
            .map(|f| {
                let n = f.kind.slots();
                let value = f.kind.value(&slots[at..at + n]);
                at += n;
                value
            })
            .collect())
    }
}

/// Zero padding to the byte, then nothing: what ends an event's or a request's bits.
fn at_clean_end(r: &mut Reader<'_>) -> bool {
    while !r.byte_aligned() {
        if r.read_bit().unwrap_or(true) {
            return false;
        }
    }
    r.read_bit().is_err()
}

/// Encodes and decodes a mode's events ([`crate::ModeEvent`]) from its schema.
#[derive(Debug, Clone)]
pub struct Events {
    schema: Vec<MessageFields>,
}

impl Events {
    /// The events of a (valid) schema.
    pub fn new(schema: &ModeSchema) -> Self {
        Self {
            schema: schema
                .events
                .iter()
                .map(|e| MessageFields::new(&e.name, &e.fields))
                .collect(),
        }
    }

    /// The event `name` with these field values, in schema order (`None` if the schema
    /// has no such event or the values are not as many as its fields). Values are
    /// quantized as the fields declare; a value of another kind than its field's is sent
    /// as the field's lowest.
    pub fn encode(&self, name: &str, values: &[Value]) -> Option<crate::ModeEvent> {
        let kind = self.schema.iter().position(|m| m.name == name)?;
        let mut w = Writer::new(Vec::with_capacity(8));
        if !self.schema[kind].write(&mut w, values) {
            return None;
        }
        let _ = w.byte_align();
        Some(crate::ModeEvent {
            kind: kind as u16,
            fields: w.into_writer(),
        })
    }

    /// An event's name and field values, in schema order (`None` if its kind is not
    /// the schema's or its fields do not decode exactly).
    pub fn decode(&self, event: &crate::ModeEvent) -> Option<(&str, Vec<Value>)> {
        let message = self.schema.get(usize::from(event.kind))?;
        let mut r = Reader::new(&event.fields);
        let values = message.read(&mut r).ok()?;
        at_clean_end(&mut r).then_some((message.name.as_str(), values))
    }
}

/// A request's values, decoded by its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestValues<'a> {
    /// The request's name.
    pub name: &'a str,
    /// Its field values, in schema order.
    pub values: Vec<Value>,
    /// Each list's items, in schema order: each item its field values.
    pub lists: Vec<Vec<Vec<Value>>>,
}

/// Why a request could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The schema declares no request of that name.
    #[error("the schema has no request `{0}`")]
    Unknown(String),
    /// The request's kind is not one of the schema's.
    #[error("request kind {kind} is not one of the schema's {count}")]
    UnknownKind {
        /// The kind.
        kind: u16,
        /// How many the schema declares.
        count: usize,
    },
    /// Not as many values (or lists) as the request declares.
    #[error("`{name}` takes {expected} {what}; {given} were given")]
    Count {
        /// The request or list.
        name: String,
        /// Fields or lists.
        what: &'static str,
        /// Declared.
        expected: usize,
        /// Given.
        given: usize,
    },
    /// A list holds more items than declared, or an item has the wrong number of
    /// values.
    #[error("list `{list}`: {given} items, at most {max} allowed")]
    TooManyItems {
        /// The list.
        list: String,
        /// Items given.
        given: usize,
        /// Declared bound.
        max: u16,
    },
    /// The encoded request is larger than a request may be.
    #[error("the request is {bytes} bytes encoded; at most {max} fit a request")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// [`crate::MAX_REQUEST_BYTES`].
        max: usize,
    },
    /// The body does not decode exactly by the request's definition.
    #[error("the body of `{0}` does not decode by its definition")]
    Undecodable(String),
}

/// Encodes and decodes a mode's requests ([`crate::Request`]) from its schema:
///
/// ```text
/// fields, whole (as an event's)
/// each list: count (bit length of max_items bits), then each item's fields, whole
/// zero padding to the byte
/// ```
#[derive(Debug, Clone)]
pub struct Requests {
    schema: Vec<(MessageFields, Vec<(MessageFields, u16)>)>,
}

impl Requests {
    /// The requests of a (valid) schema.
    pub fn new(schema: &ModeSchema) -> Self {
        Self {
            schema: schema
                .requests
                .iter()
                .map(|r| {
                    let lists = r
                        .lists
                        .iter()
                        .map(|l| (MessageFields::new(&l.name, &l.fields), l.max_items))
                        .collect();
                    (MessageFields::new(&r.name, &r.fields), lists)
                })
                .collect(),
        }
    }

    /// The request `name` with these field values and lists (each a list of items,
    /// each item its field values), numbered `seq`.
    pub fn encode(
        &self,
        seq: u32,
        name: &str,
        values: &[Value],
        lists: &[&[Vec<Value>]],
    ) -> Result<crate::Request, RequestError> {
        let kind = self
            .schema
            .iter()
            .position(|(m, _)| m.name == name)
            .ok_or_else(|| RequestError::Unknown(name.to_owned()))?;
        let (message, list_defs) = &self.schema[kind];
        let count = |what, expected: usize, given: usize, name: &str| RequestError::Count {
            name: name.to_owned(),
            what,
            expected,
            given,
        };
        if lists.len() != list_defs.len() {
            return Err(count("lists", list_defs.len(), lists.len(), name));
        }
        let mut w = Writer::new(Vec::with_capacity(64));
        if !message.write(&mut w, values) {
            return Err(count("fields", message.fields.len(), values.len(), name));
        }
        for ((list, max), items) in list_defs.iter().zip(lists) {
            if items.len() > usize::from(*max) {
                return Err(RequestError::TooManyItems {
                    list: list.name.clone(),
                    given: items.len(),
                    max: *max,
                });
            }
            put(&mut w, bit_length(u32::from(*max)), items.len() as u32);
            for item in *items {
                if !list.write(&mut w, item) {
                    return Err(count("fields", list.fields.len(), item.len(), &list.name));
                }
            }
        }
        let _ = w.byte_align();
        let body = w.into_writer();
        if body.len() > crate::MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge {
                bytes: body.len(),
                max: crate::MAX_REQUEST_BYTES,
            });
        }
        Ok(crate::Request {
            seq,
            kind: kind as u16,
            body,
        })
    }

    /// A request's values, if its kind is the schema's and its body decodes exactly.
    pub fn decode<'a>(
        &'a self,
        request: &crate::Request,
    ) -> Result<RequestValues<'a>, RequestError> {
        let (message, list_defs) =
            self.schema
                .get(usize::from(request.kind))
                .ok_or(RequestError::UnknownKind {
                    kind: request.kind,
                    count: self.schema.len(),
                })?;
        let undecodable = || RequestError::Undecodable(message.name.clone());
        let mut r = Reader::new(&request.body);
        let values = message.read(&mut r).map_err(|_| undecodable())?;
        let mut lists = Vec::with_capacity(list_defs.len());
        for (list, max) in list_defs {
            let n = get(&mut r, bit_length(u32::from(*max))).map_err(|_| undecodable())?;
            if n > u32::from(*max) {
                return Err(undecodable());
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(list.read(&mut r).map_err(|_| undecodable())?);
            }
            lists.push(items);
        }
        if !at_clean_end(&mut r) {
            return Err(undecodable());
        }
        Ok(RequestValues {
            name: &message.name,
            values,
            lists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::extrapolate;

    /// protocol.md's formula, in integers that cannot overflow.
    fn by_the_document(b: u32, r: u32, ahead: u32, behind: u32, max: u32) -> u32 {
        let (b128, d) = (i128::from(b), i128::from(b) - i128::from(r));
        let (ahead, behind) = (i128::from(ahead), i128::from(behind));
        let step = (2 * d * ahead + behind).div_euclid(2 * behind);
        (b128 + step).clamp(0, i128::from(max)) as u32
    }

    #[test]
    fn extrapolation_is_the_documented_formula_on_every_path() {
        let values = [
            0,
            1,
            2,
            511,
            512,
            1023,
            40_000,
            65_535,
            u32::MAX - 1,
            u32::MAX,
        ];
        let aheads = [1, 2, 3, 6, (1 << 20) - 1, 1 << 20, u32::MAX];
        let behinds = [1, 2, 3, 4, 7, 128, 255];
        for &b in &values {
            for &r in &values {
                for &ahead in &aheads {
                    for &behind in &behinds {
                        for max in [1023, 65_535, u32::MAX] {
                            assert_eq!(
                                extrapolate(b, r, ahead, behind, max),
                                by_the_document(b, r, ahead, behind, max),
                                "b {b} r {r} ahead {ahead} behind {behind} max {max}"
                            );
                        }
                    }
                }
            }
        }
        // Halves round up: a motion of 1 over 2 ticks, carried 1 tick on, is +1; -1, 0.
        assert_eq!(extrapolate(10, 9, 1, 2, 100), 11);
        assert_eq!(extrapolate(10, 11, 1, 2, 100), 10);
    }
}
