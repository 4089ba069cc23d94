//! Any bytes as a snapshot body, against a baseline view also made from fuzz bytes: an
//! error or a view, never a panic; a decoded view re-encodes to an equivalent body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::delta::{self, EntityView};
use outpost_protocol::quantize::{self, QPosition};
use outpost_protocol::{EntityId, EntityKind};
use outpost_sim::arena::ArenaConfig;

fuzz_target!(|data: &[u8]| {
    let quantizer = ArenaConfig::default().quantizer();
    let (head, body) = data.split_at(data.len().min(64));
    // Up to 16 baseline entities from the head: ids from its bytes, sorted and unique.
    let mut ids: Vec<u32> = head.chunks(4).map(|c| c.iter().fold(1u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(*b))) % 5000 + 1).collect();
    ids.sort_unstable();
    ids.dedup();
    let baseline: Vec<EntityView> = ids
        .into_iter()
        .map(|id| EntityView {
            id: EntityId(id),
            kind: if id % 3 == 0 { EntityKind::Player } else { EntityKind::Prop },
            position: QPosition([id % 40_000, id % 30_000, id % 20_000]),
            rotation: quantize::rotation([0.0, 0.0, 0.0, 1.0]),
            motion: None,
        })
        .collect();
    if let Ok(view) = delta::decode(&quantizer, &baseline, body) {
        let again = delta::encode(&quantizer, &baseline, &view);
        assert_eq!(delta::decode(&quantizer, &baseline, &again).as_ref(), Ok(&view));
    }
});
