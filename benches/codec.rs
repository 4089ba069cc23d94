//! Wire codec: wincode (what Outpost uses) against bincode 1.3.3 (the format's reference
//! implementation) on the same values, side by side; plus the protocol's own entry points.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use outpost_protocol::{Datagram, EntityId, EntityKind, EntityState, Snapshot, codec};
use std::hint::black_box;

fn entities(n: u32) -> Vec<EntityState> {
    (0..n)
        .map(|i| {
            let f = i as f32;
            EntityState {
                id: EntityId(i),
                kind: if i % 16 == 0 {
                    EntityKind::Player
                } else {
                    EntityKind::Prop
                },
                position: [f * 0.25, 1.0 + f * 0.001, -f * 0.5],
                rotation: [0.0, (f * 0.01).sin(), 0.0, (f * 0.01).cos()],
                velocity: [f * 0.01, 0.0, -0.3],
            }
        })
        .collect()
}

fn encode_1000_entities(c: &mut Criterion) {
    let state = entities(1000);
    let mut group = c.benchmark_group("encode_1000_entities");
    group.bench_function("wincode", |b| {
        b.iter(|| wincode::serialize(black_box(&state)).expect("encodes"))
    });
    group.bench_function("bincode_1_3_3", |b| {
        b.iter(|| bincode::serialize(black_box(&state)).expect("encodes"))
    });
    group.finish();

    let bytes = wincode::serialize(&state).expect("encodes");
    let mut group = c.benchmark_group("decode_1000_entities");
    group.bench_function("wincode", |b| {
        b.iter(|| wincode::deserialize::<Vec<EntityState>>(black_box(&bytes)).expect("decodes"))
    });
    group.bench_function("bincode_1_3_3", |b| {
        b.iter(|| bincode::deserialize::<Vec<EntityState>>(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

fn snapshot_datagram(c: &mut Criterion) {
    let entities = entities(Snapshot::entities_fitting(1200) as u32);
    let datagram = Datagram::Snapshot(Snapshot {
        tick: 1,
        ack_input_seq: 1,
        ticks_left: 9,
        entities,
    });
    let bytes = codec::encode_datagram(&datagram).expect("encodes");
    c.bench_function("protocol/encode_snapshot_datagram", |b| {
        b.iter(|| codec::encode_datagram(black_box(&datagram)).expect("encodes"))
    });
    c.bench_function("protocol/decode_snapshot_datagram", |b| {
        b.iter(|| codec::decode_datagram(black_box(&bytes)).expect("decodes"))
    });
}

criterion_group!(benches, encode_1000_entities, snapshot_datagram);
criterion_main!(benches);
