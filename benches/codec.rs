//! Wire codec: wincode (what Outpost uses) against bincode 1.3.3 (the format's reference
//! implementation) on the same values, side by side; plus the protocol's own entry points.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use outpost_arena::{self as arena, ArenaConfig};
use outpost_arena::{EntityKind, EntityState, PlayerInput};
use outpost_protocol::replication::{self, InputLayout, Layout};
use outpost_protocol::{Datagram, EntityId, Snapshot, codec};
use std::hint::black_box;

fn entities(n: u32) -> Vec<EntityState> {
    (1..=n)
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
    let datagram = Datagram::Snapshot(Snapshot {
        tick: 1,
        baseline_tick: 0,
        reference_gap: 0,
        ack_input_seq: 1,
        ticks_left: 9,
        body: vec![0x5a; 1100],
    });
    let bytes = codec::encode_datagram(&datagram).expect("encodes");
    c.bench_function("protocol/encode_snapshot_datagram", |b| {
        b.iter(|| codec::encode_datagram(black_box(&datagram)).expect("encodes"))
    });
    c.bench_function("protocol/decode_snapshot_datagram", |b| {
        b.iter(|| codec::decode_datagram(black_box(&bytes)).expect("decodes"))
    });
}

fn netcode(c: &mut Criterion) {
    let quantizer = ArenaConfig::default().quantizer();
    let state = entities(1000);
    c.bench_function("netcode/quantize_1000_entities", |b| {
        b.iter(|| {
            black_box(&state)
                .iter()
                .map(|e| e.quantize(&quantizer, None))
                .collect::<Vec<_>>()
        })
    });
    let baseline: Vec<_> = state.iter().map(|e| e.quantize(&quantizer, None)).collect();
    // A quarter of the entities moved a little and turned.
    let current: Vec<_> = state
        .iter()
        .map(|e| {
            let mut e = *e;
            if e.id.0 % 4 == 0 {
                e.position[0] += 0.1;
                e.position[1] += 0.02;
                e.rotation = [0.0, 0.1, 0.0, 0.995];
            }
            e.quantize(&quantizer, None)
        })
        .collect();
    // The views through the generic codec (the arena's schema).
    let layout = Layout::new(&arena::schema(&ArenaConfig::default()));
    let (g_baseline, g_current) = (arena::replicated(&baseline), arena::replicated(&current));
    let g_body = replication::encode(&layout, &g_baseline, &g_current);
    let g_keyframe = replication::encode(&layout, &replication::View::new(), &g_current);
    let empty = replication::View::new();
    c.bench_function("netcode/generic_delta_encode_1000_quarter_moving", |b| {
        b.iter(|| replication::encode(&layout, black_box(&g_baseline), black_box(&g_current)))
    });
    c.bench_function("netcode/generic_delta_decode_1000_quarter_moving", |b| {
        b.iter(|| {
            replication::decode(&layout, black_box(&g_baseline), black_box(&g_body))
                .expect("decodes")
        })
    });
    c.bench_function("netcode/generic_keyframe_encode_1000", |b| {
        b.iter(|| replication::encode(&layout, &empty, black_box(&g_current)))
    });
    c.bench_function("netcode/generic_keyframe_decode_1000", |b| {
        b.iter(|| replication::decode(&layout, &empty, black_box(&g_keyframe)).expect("decodes"))
    });
    // The same with a reference a snapshot before the baseline, the quarter moving as
    // steadily then (but not turning): what a snapshot with `reference_gap` costs to code.
    let older: Vec<_> = state
        .iter()
        .map(|e| {
            let mut e = *e;
            if e.id.0 % 4 == 0 {
                e.position[0] -= 0.1;
                e.position[1] -= 0.02;
            }
            e.quantize(&quantizer, None)
        })
        .collect();
    let g_older = arena::replicated(&older);
    let reference = Some(replication::Reference {
        view: &g_older,
        behind: 1,
        ahead: 1,
    });
    let g_predicted = replication::encode_predicted(&layout, &g_baseline, reference, &g_current);
    c.bench_function(
        "netcode/generic_delta_encode_1000_quarter_moving_predicted",
        |b| {
            b.iter(|| {
                replication::encode_predicted(
                    &layout,
                    black_box(&g_baseline),
                    reference,
                    black_box(&g_current),
                )
            })
        },
    );
    c.bench_function(
        "netcode/generic_delta_decode_1000_quarter_moving_predicted",
        |b| {
            b.iter(|| {
                replication::decode_predicted(
                    &layout,
                    black_box(&g_baseline),
                    reference,
                    black_box(&g_predicted),
                )
                .expect("decodes")
            })
        },
    );
    eprintln!(
        "bytes: delta {}; predicted {}; keyframe {}",
        g_body.len(),
        g_predicted.len(),
        g_keyframe.len()
    );
}

/// Input frames: protocol 3's (15 bytes per input) beside the generic batch (the arena's input
/// schema), for a steady link (the newest input and two unacknowledged) and a lossy one
/// (eight).
fn input_frames(c: &mut Criterion) {
    let layout = InputLayout::new(&arena::schema(&ArenaConfig::default()));
    for n in [3u32, 8] {
        // Running forward, turning slowly, jumping once; one snapshot every two ticks.
        let inputs: Vec<PlayerInput> = (0..n)
            .map(|i| PlayerInput {
                seq: 1000 - i,
                move_z: 127,
                move_x: if i > 4 { 40 } else { 0 },
                yaw: 16_000 - 90 * i as u16,
                pitch: -300,
                buttons: if i == 2 { PlayerInput::JUMP } else { 0 },
                view_tick: 1990 - i / 2,
                ..PlayerInput::default()
            })
            .collect();
        // Protocol 3's frame: the Datagram tag, the ack, a u64 count, 15 bytes per input.
        let today = 4 + 4 + 8 + 15 * inputs.len();
        let records: Vec<_> = inputs.iter().map(arena::input_record).collect();
        let body = replication::encode_inputs(
            &layout,
            records.iter().map(replication::InputRecord::as_ref),
        );
        // The generic frame: Datagram tag, ack, and the body as a byte vector.
        let generic = 4 + 4 + 8 + body.len();
        eprintln!(
            "input frame of {n}: {today} bytes in protocol 3, {generic} generic ({} body)",
            body.len()
        );
        c.bench_function(&format!("netcode/generic_input_encode_{n}"), |b| {
            b.iter(|| {
                replication::encode_inputs(
                    &layout,
                    black_box(&records)
                        .iter()
                        .map(replication::InputRecord::as_ref),
                )
            })
        });
        c.bench_function(&format!("netcode/generic_input_decode_{n}"), |b| {
            b.iter(|| replication::decode_inputs(&layout, black_box(&body)).expect("decodes"))
        });
    }
}

criterion_group!(
    benches,
    encode_1000_entities,
    snapshot_datagram,
    netcode,
    input_frames
);
criterion_main!(benches);
