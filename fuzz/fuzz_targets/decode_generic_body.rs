//! Any bytes as a schema, and any bytes as a generic snapshot body against the arena's
//! schema and a baseline made from fuzz bytes: an error or a value, never a panic; a
//! decoded schema re-encodes to the same bytes, a decoded view re-encodes to an
//! equivalent body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::replication::{self, Layout, View};
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::EntityId;
use outpost_arena::{self as arena, ArenaConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(schema) = ModeSchema::decode(data) {
        assert_eq!(schema.encode(), data);
    }
    let layout = Layout::new(&arena::schema(&ArenaConfig::default()));
    let (head, body) = data.split_at(data.len().min(64));
    // Up to 16 baseline props from the head: ids from its bytes, sorted and unique.
    let mut ids: Vec<u32> = head.chunks(4).map(|c| c.iter().fold(1u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(*b))) % 5000 + 1).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut baseline = View::new();
    for id in ids {
        // prop, position, rotation
        let slots = [id % 40_000, id % 30_000, id % 20_000, 3, 511, 511, 511];
        baseline.push(EntityId(id), 0b1110, &slots);
    }
    if let Ok(view) = replication::decode(&layout, &baseline, body) {
        let again = replication::encode(&layout, &baseline, &view);
        assert_eq!(replication::decode(&layout, &baseline, &again).as_ref(), Ok(&view));
    }
    // The same body against a reference: the baseline moved back, extrapolated over
    // spans from the head's first byte (up to far past the grid's edges).
    let mut older = View::new();
    for r in baseline.iter() {
        let slots: Vec<u32> = r.slots.iter().map(|s| s.wrapping_sub(u32::from(head.first().copied().unwrap_or(0)))).collect();
        older.push(r.id, r.mask, &slots);
    }
    let reference = replication::Reference {
        view: &older,
        behind: 1 + u32::from(head.get(1).copied().unwrap_or(0)),
        ahead: u32::from(head.get(2).copied().unwrap_or(0)) << 24 | 1,
    };
    if let Ok(view) = replication::decode_predicted(&layout, &baseline, Some(reference), body) {
        let again = replication::encode_predicted(&layout, &baseline, Some(reference), &view);
        assert_eq!(
            replication::decode_predicted(&layout, &baseline, Some(reference), &again).as_ref(),
            Ok(&view)
        );
    }
});
