//! Generic replication over random schemas: every body decodes to exactly the view it
//! encoded, against whichever earlier view the client acknowledged (lost and reordered
//! snapshots leave gaps in what it has); schemas round trip through their bytes; bytes
//! from nowhere never panic a decoder.

use outpost_protocol::EntityId;
use outpost_protocol::replication::{
    self, InputLayout, InputRecord, Layout, MAX_BATCH_INPUTS, View,
};
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::schema::{
    Coding, ComponentDef, EventDef, FieldDef, FieldKind, ListDef, ModeSchema, RequestDef, Value,
    Visibility,
};
use proptest::prelude::*;

fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

fn field_kind(rng: &mut SplitMix64) -> FieldKind {
    let range = |rng: &mut SplitMix64| {
        let lo = rng.range(-500.0, 0.0);
        (lo, lo + rng.range(0.5, 1000.0))
    };
    match below(rng, 10) {
        0 | 1 => {
            let axes: [(f32, f32); 3] = std::array::from_fn(|_| range(rng));
            let min = axes.map(|a| a.0);
            let max = axes.map(|a| a.1);
            let step = [1.0 / 512.0, 1.0 / 64.0, 0.25][below(rng, 3) as usize];
            if below(rng, 2) == 0 {
                FieldKind::Position { min, max, step }
            } else {
                FieldKind::Vector { min, max, step }
            }
        }
        2 => FieldKind::Rotation {
            bits: 4 + below(rng, 12) as u8,
        },
        3 => {
            let min = below(rng, 2000) as i32 - 1000;
            FieldKind::Int {
                min,
                max: min + below(rng, 1 << 20) as i32,
            }
        }
        4 => {
            let (min, max) = range(rng);
            FieldKind::Float {
                min,
                max,
                step: 0.01,
            }
        }
        5 => FieldKind::Enum {
            variants: (0..1 + below(rng, 12) as usize)
                .map(|i| name("v", i))
                .collect(),
        },
        6 => FieldKind::Flags {
            names: (0..1 + below(rng, 32) as usize)
                .map(|i| name("f", i))
                .collect(),
        },
        7 => FieldKind::Bool,
        8 => FieldKind::Entity,
        _ => FieldKind::Text {
            max_len: 1 + below(rng, 64) as u8,
        },
    }
}

fn fields(rng: &mut SplitMix64, most: u64) -> Vec<FieldDef> {
    (0..below(rng, most + 1) as usize)
        .map(|i| FieldDef::new(&name("field", i), field_kind(rng)))
        .collect()
}

fn schema(rng: &mut SplitMix64) -> ModeSchema {
    ModeSchema {
        mode: "random".into(),
        components: (0..1 + below(rng, 8) as usize)
            .map(|i| ComponentDef {
                name: name("component", i),
                fields: fields(rng, 5),
                visibility: match below(rng, 6) {
                    0 => Visibility::Owner,
                    1 => Visibility::Others,
                    _ => Visibility::Everyone,
                },
                priority: below(rng, 4) as u8,
            })
            .collect(),
        input: fields(rng, 6),
        events: (0..below(rng, 4) as usize)
            .map(|i| EventDef {
                name: name("event", i),
                fields: fields(rng, 3),
            })
            .collect(),
        requests: (0..below(rng, 4) as usize)
            .map(|i| RequestDef {
                name: name("request", i),
                fields: fields(rng, 3),
                lists: (0..below(rng, 3) as usize)
                    .map(|l| ListDef {
                        name: name("list", l),
                        fields: {
                            let mut f = fields(rng, 3);
                            if f.is_empty() {
                                f.push(FieldDef::new("only", FieldKind::Bool));
                            }
                            f
                        },
                        max_items: 1 + below(rng, 40) as u16,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Random values on a field list's grids (what a value is sent as, see `quantize`).
fn values(rng: &mut SplitMix64, fields: &[FieldDef]) -> Vec<Value> {
    fields
        .iter()
        .map(|f| {
            let mut slots = Vec::new();
            field_slots(rng, &f.kind, None, &mut slots);
            f.kind.value(&slots)
        })
        .collect()
}

/// What `values` of `fields` decode as at the other end: each quantized, then read.
fn as_sent(fields: &[FieldDef], values: &[Value]) -> Vec<Value> {
    fields
        .iter()
        .zip(values)
        .map(|(f, v)| {
            let mut slots = vec![0; f.kind.slots()];
            f.kind.quantize(v, &mut slots);
            f.kind.value(&slots)
        })
        .collect()
}

/// Random valid slots for one field, or a small change to `base`'s.
fn field_slots(rng: &mut SplitMix64, kind: &FieldKind, base: Option<&[u32]>, out: &mut Vec<u32>) {
    let start = out.len();
    match kind.coding() {
        Coding::Vec3 { max, .. } => {
            for a in 0..3 {
                let v = match base {
                    // Mostly small moves (the size classes), sometimes a jump.
                    Some(b) if below(rng, 8) != 0 => {
                        let spread = [30i64, 500, 8000][below(rng, 3) as usize];
                        let d = below(rng, 2 * spread as u64 + 1) as i64 - spread;
                        (i64::from(b[a]) + d).clamp(0, i64::from(max[a])) as u32
                    }
                    _ => below(rng, u64::from(max[a]) + 1) as u32,
                };
                out.push(v);
            }
        }
        Coding::Rotation { bits } => {
            let top = (1u64 << bits) - 1;
            match base {
                Some(b) if below(rng, 4) != 0 => {
                    out.push(b[0]);
                    for c in &b[1..4] {
                        let d = below(rng, 9) as i64 - 4;
                        out.push((i64::from(*c) + d).clamp(0, top as i64) as u32);
                    }
                }
                _ => {
                    out.push(below(rng, 4) as u32);
                    for _ in 0..3 {
                        out.push(below(rng, top + 1) as u32);
                    }
                }
            }
        }
        Coding::Scalar { max, .. } => out.push(below(rng, u64::from(max) + 1) as u32),
        Coding::Text { max_len, .. } => {
            let len = below(rng, u64::from(max_len) + 1) as usize;
            out.push(len as u32);
            let mut words = vec![0u32; (max_len as usize).div_ceil(4)];
            for i in 0..len {
                words[i / 4] |= (below(rng, 256) as u32) << (8 * (i % 4));
            }
            out.extend(words);
        }
    }
    debug_assert_eq!(out.len() - start, kind.slots());
}

/// A view evolved from `base`: some entities kept as they were, some changed, some
/// removed, some with other components, some new.
fn evolve(rng: &mut SplitMix64, schema: &ModeSchema, layout: &Layout, base: &View) -> View {
    let components = schema.components.len() as u64;
    let mut next = View::new();
    let mut ids: Vec<u32> = base.iter().map(|r| r.id.0).collect();
    for _ in 0..below(rng, 12) {
        ids.push(1 + below(rng, 300) as u32);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut slots = Vec::new();
    for id in ids {
        let old = base.find(EntityId(id));
        if old.is_some() && below(rng, 10) == 0 {
            continue; // removed
        }
        let mask = match old {
            Some(r) if below(rng, 12) != 0 => r.mask,
            _ => below(rng, 1 << components),
        };
        slots.clear();
        let keep = old.filter(|r| r.mask == mask);
        if let Some(r) = keep.filter(|_| below(rng, 3) == 0) {
            next.push(r.id, r.mask, r.slots);
            continue;
        }
        for (c, def) in schema.components.iter().enumerate() {
            if mask & (1 << c) == 0 {
                continue;
            }
            let start = keep.and_then(|_| layout.offset(mask, c));
            let mut offset = 0;
            for f in &def.fields {
                let n = f.kind.slots();
                let b = start.map(|s| &keep.expect("kept").slots[s + offset..s + offset + n]);
                field_slots(rng, &f.kind, b, &mut slots);
                offset += n;
            }
        }
        next.push(EntityId(id), mask, &slots);
    }
    next
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_schemas_round_trip_through_their_bytes(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        prop_assert_eq!(schema.validate(), Ok(()));
        let bytes = schema.encode();
        prop_assert_eq!(ModeSchema::decode(&bytes), Ok(schema.clone()));
        prop_assert_eq!(ModeSchema::decode(&bytes).map(|s| s.hash()), Ok(schema.hash()));
    }

    /// The edge sends a view each snapshot, against the newest one the client acked; the
    /// link loses and reorders, so that is any earlier view the client happens to have,
    /// or none (a keyframe). Every body the client receives decodes to exactly what was
    /// encoded.
    #[test]
    fn generic_deltas_round_trip_under_loss_and_reordering(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let layout = Layout::new(&schema);
        let mut sent: Vec<View> = vec![View::new()];
        let mut received: Vec<usize> = vec![0];
        for _ in 0..24 {
            let previous = sent.last().expect("a view").clone();
            let current = evolve(&mut rng, &schema, &layout, &previous);
            let baseline = received[below(&mut rng, received.len() as u64) as usize];
            let body = replication::encode(&layout, &sent[baseline], &current);
            sent.push(current.clone());
            if below(&mut rng, 4) == 0 {
                continue; // lost
            }
            let decoded = replication::decode(&layout, &sent[baseline], &body);
            prop_assert_eq!(decoded.as_ref(), Ok(&current));
            received.push(sent.len() - 1);
        }
    }

    /// The bound a budget takes without pricing each entry is a bound: no entry of any
    /// schema, changed from any earlier view or new, is priced above it.
    #[test]
    fn no_entry_is_priced_above_its_bound(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let layout = Layout::new(&schema);
        let mut sent: Vec<View> = vec![View::new()];
        for _ in 0..12 {
            let previous = sent.last().expect("a view").clone();
            let current = evolve(&mut rng, &schema, &layout, &previous);
            let baseline = &sent[below(&mut rng, sent.len() as u64) as usize];
            for record in current.iter() {
                let base = baseline.find(record.id);
                let bound = layout.entry_bits_bound(record.mask);
                for same_mask in [false, true] {
                    let bits = replication::entry_bits(&layout, base.as_ref(), &record, same_mask);
                    prop_assert!(bits <= bound, "{bits} > {bound} for mask {:b}", record.mask);
                }
            }
            sent.push(current);
        }
    }

    /// The same with a reference: any view older than the baseline, any spans (motion
    /// extrapolated over up to a thousand times the span it was measured on, clamped at
    /// the grid's edges), any schema. What decodes is exactly what was encoded.
    #[test]
    fn predicted_deltas_round_trip_against_any_older_view(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let layout = Layout::new(&schema);
        let mut sent: Vec<View> = vec![View::new()];
        for _ in 0..24 {
            let previous = sent.last().expect("a view").clone();
            let current = evolve(&mut rng, &schema, &layout, &previous);
            let baseline = below(&mut rng, sent.len() as u64) as usize;
            let older = below(&mut rng, baseline as u64 + 1) as usize;
            let reference = replication::Reference {
                view: &sent[older],
                behind: 1 + below(&mut rng, 255) as u32,
                ahead: 1 + below(&mut rng, 1000) as u32,
            };
            let body = replication::encode_predicted(&layout, &sent[baseline], Some(reference), &current);
            let decoded = replication::decode_predicted(&layout, &sent[baseline], Some(reference), &body);
            prop_assert_eq!(decoded.as_ref(), Ok(&current));
            sent.push(current);
        }
    }

    #[test]
    fn bytes_from_nowhere_never_panic_the_decoder(seed in any::<u64>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let layout = Layout::new(&schema);
        let baseline = evolve(&mut rng, &schema, &layout, &View::new());
        let _ = replication::decode(&layout, &baseline, &body);
        let reference = evolve(&mut rng, &schema, &layout, &baseline);
        let far = replication::Reference { view: &reference, behind: 1, ahead: u32::MAX };
        let _ = replication::decode_predicted(&layout, &baseline, Some(far), &body);
        let _ = ModeSchema::decode(&body);
    }

    #[test]
    fn a_view_left_by_a_failed_decode_copies_entity_for_entity(seed in any::<u64>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let layout = Layout::new(&schema);
        let baseline = evolve(&mut rng, &schema, &layout, &View::new());
        let mut view = evolve(&mut rng, &schema, &layout, &baseline);
        let _ = replication::decode_predicted_into(&layout, &baseline, None, &body, &mut view, None);
        // An entity pushed after whatever the decode left, then the view copied whole.
        let next = view.iter().last().map_or(1, |r| r.id.0 + 1);
        view.push(EntityId(next), 0, &[7, 8, 9]);
        let mut copy = View::new();
        copy.extend_from(&view, 0..view.len());
        prop_assert!(copy.iter().eq(view.iter()));
        prop_assert_eq!(copy.find(EntityId(next)).map(|r| r.slots.to_vec()), Some(vec![7, 8, 9]));
    }
}

/// A batch as a client sends it: newest first, sequence numbers falling by one (or more,
/// when some were acknowledged between), view ticks falling with them, fields often the
/// same as the input before.
fn batch(rng: &mut SplitMix64, schema: &ModeSchema) -> Vec<InputRecord> {
    let mut seq = 1000 + below(rng, 1 << 30) as u32;
    let mut view_tick = 500 + below(rng, 1 << 20) as u32;
    let mut previous: Option<Vec<u32>> = None;
    (0..1 + below(rng, MAX_BATCH_INPUTS as u64))
        .map(|_| {
            let slots = match &previous {
                Some(p) if below(rng, 2) == 0 => p.clone(),
                _ => {
                    let mut slots = Vec::new();
                    for f in &schema.input {
                        field_slots(rng, &f.kind, None, &mut slots);
                    }
                    slots
                }
            };
            previous = Some(slots.clone());
            let input = InputRecord {
                seq,
                ticks: 1 + below(rng, 8) as u8,
                view_tick,
                slots,
            };
            seq -= 1 + below(rng, 3) as u32;
            view_tick = (i64::from(view_tick) - below(rng, 5) as i64 + 1).max(0) as u32;
            input
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn input_batches_round_trip_over_random_schemas(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let layout = InputLayout::new(&schema);
        let inputs = batch(&mut rng, &schema);
        let body = replication::encode_inputs(&layout, inputs.iter().map(InputRecord::as_ref));
        prop_assert_eq!(replication::decode_inputs(&layout, &body), Ok(inputs));
    }

    #[test]
    fn bytes_from_nowhere_never_panic_the_input_decoder(seed in any::<u64>(), body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut rng = SplitMix64::new(seed);
        let layout = InputLayout::new(&schema(&mut rng));
        let _ = replication::decode_inputs(&layout, &body);
    }

    #[test]
    fn mode_events_round_trip_over_random_schemas(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let events = replication::Events::new(&schema);
        for event in &schema.events {
            let values = values(&mut rng, &event.fields);
            let encoded = events.encode(&event.name, &values).expect("a declared event");
            prop_assert!(encoded.fields.len() <= outpost_protocol::MAX_EVENT_BYTES);
            let expected = as_sent(&event.fields, &values);
            prop_assert_eq!(events.decode(&encoded), Some((event.name.as_str(), expected)));
            // One byte more, or a kind the schema lacks, is refused.
            let mut longer = encoded.clone();
            longer.fields.push(0);
            prop_assert_eq!(events.decode(&longer), None);
            let other = outpost_protocol::ModeEvent { kind: schema.events.len() as u16, ..encoded };
            prop_assert_eq!(events.decode(&other), None);
        }
        prop_assert!(events.encode("no_such_event", &[]).is_none());
    }

    #[test]
    fn mode_requests_round_trip_over_random_schemas(seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let schema = schema(&mut rng);
        let requests = replication::Requests::new(&schema);
        for (seq, request) in schema.requests.iter().enumerate() {
            let fields = values(&mut rng, &request.fields);
            let lists: Vec<Vec<Vec<Value>>> = request
                .lists
                .iter()
                .map(|l| {
                    (0..below(&mut rng, u64::from(l.max_items) + 1))
                        .map(|_| values(&mut rng, &l.fields))
                        .collect()
                })
                .collect();
            let borrowed: Vec<&[Vec<Value>]> = lists.iter().map(Vec::as_slice).collect();
            let encoded = requests
                .encode(seq as u32, &request.name, &fields, &borrowed)
                .expect("a declared request within its bounds");
            prop_assert_eq!(encoded.seq, seq as u32);
            let decoded = requests.decode(&encoded).expect("decodes");
            prop_assert_eq!(decoded.name, request.name.as_str());
            prop_assert_eq!(&decoded.values, &as_sent(&request.fields, &fields));
            for ((def, sent), got) in request.lists.iter().zip(&lists).zip(&decoded.lists) {
                let expected: Vec<Vec<Value>> =
                    sent.iter().map(|item| as_sent(&def.fields, item)).collect();
                prop_assert_eq!(got, &expected);
            }
            prop_assert_eq!(decoded.lists.len(), lists.len());
            // A byte more, a kind the schema lacks, a list over its bound: refused.
            let mut longer = encoded.clone();
            longer.body.push(0);
            prop_assert!(requests.decode(&longer).is_err());
            let other = outpost_protocol::Request { kind: schema.requests.len() as u16, ..encoded };
            prop_assert!(requests.decode(&other).is_err());
            if let Some(list) = request.lists.first() {
                let mut over = lists.clone();
                over[0] = vec![values(&mut rng, &list.fields); usize::from(list.max_items) + 1];
                let borrowed: Vec<&[Vec<Value>]> = over.iter().map(Vec::as_slice).collect();
                let too_many = matches!(
                    requests.encode(0, &request.name, &fields, &borrowed),
                    Err(replication::RequestError::TooManyItems { .. })
                );
                prop_assert!(too_many);
            }
        }
        let unknown = matches!(
            requests.encode(0, "no_such_request", &[], &[]),
            Err(replication::RequestError::Unknown(_))
        );
        prop_assert!(unknown);
    }

    #[test]
    fn bytes_from_nowhere_never_panic_the_request_decoder(seed in any::<u64>(), kind in 0u16..4, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut rng = SplitMix64::new(seed);
        let requests = replication::Requests::new(&schema(&mut rng));
        let _ = requests.decode(&outpost_protocol::Request { seq: 1, kind, body });
    }

    #[test]
    fn bytes_from_nowhere_never_panic_the_event_decoder(seed in any::<u64>(), kind in 0u16..4, fields in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut rng = SplitMix64::new(seed);
        let events = replication::Events::new(&schema(&mut rng));
        let _ = events.decode(&outpost_protocol::ModeEvent { kind, fields });
    }
}
