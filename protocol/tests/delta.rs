//! Quantization error bounds and delta-compressed views: round trips against arbitrary
//! baselines, and a channel that loses and reorders snapshots and acks.

use outpost_protocol::delta::{self, DeltaError, EntityView, QMotion, View};
use outpost_protocol::quantize::{self, POSITION_STEP, Quantizer, VELOCITY_STEP};
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::*;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn quantizer() -> Quantizer {
    Quantizer::for_floor(40.0)
}

fn q_view() -> impl Strategy<Value = EntityView> {
    let q = quantizer();
    let pos = q.position_bits();
    (
        prop_oneof![Just(EntityKind::Player), Just(EntityKind::Prop)],
        (
            0..(1u32 << (pos[0] - 1)),
            0..(1u32 << (pos[1] - 1)),
            0..(1u32 << (pos[2] - 1)),
        ),
        (0u8..4, 0u16..1024, 0u16..1024, 0u16..1024),
        proptest::option::of((0u32..32768, 0u32..32768, 0u32..32768, any::<bool>())),
    )
        .prop_map(|(kind, (x, y, z), (largest, a, b, c), motion)| EntityView {
            id: EntityId(0),
            kind,
            position: quantize::QPosition([x, y, z]),
            rotation: quantize::QRotation {
                largest,
                components: [a, b, c],
            },
            motion: motion.map(|(vx, vy, vz, grounded)| QMotion {
                velocity: quantize::QVelocity([vx, vy, vz]),
                grounded,
            }),
        })
}

/// A view: up to 300 entities with ids spread so that gaps of every size occur.
fn view() -> impl Strategy<Value = View> {
    btree_map(
        prop_oneof![1u32..400, 1u32..100_000, Just(u32::MAX)],
        q_view(),
        0..300,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(id, mut e)| {
                e.id = EntityId(id);
                e.kind = kind_of(id);
                e
            })
            .collect()
    })
}

/// Network ids are never reused within a match, so an id's kind never changes.
fn kind_of(id: u32) -> EntityKind {
    if id.is_multiple_of(3) {
        EntityKind::Player
    } else {
        EntityKind::Prop
    }
}

/// A view derived from another: some entities removed, some moved a little or a lot,
/// some new.
fn evolve(base: &View, rng: &mut SplitMix64) -> View {
    let mut out: View = Vec::new();
    for e in base {
        match rng.next_u64() % 10 {
            0 => continue,
            1..=4 => {
                let mut e = *e;
                let reach = [4u64, 200, 5000, 60_000][(rng.next_u64() % 4) as usize];
                for axis in 0..3 {
                    let d = (rng.next_u64() % (2 * reach + 1)) as i64 - reach as i64;
                    e.position.0[axis] = (i64::from(e.position.0[axis]) + d).clamp(0, 32767) as u32;
                }
                if rng.next_u64().is_multiple_of(2) {
                    e.rotation.components[0] = (rng.next_u64() % 1024) as u16;
                }
                if rng.next_u64().is_multiple_of(3) {
                    e.motion = None;
                }
                out.push(e);
            }
            _ => out.push(*e),
        }
    }
    for _ in 0..(rng.next_u64() % 5) {
        let id = (rng.next_u64() % 500 + 1) as u32;
        if out.iter().all(|e| e.id.0 != id) {
            let mut e = base.first().copied().unwrap_or(EntityView {
                id: EntityId(id),
                kind: EntityKind::Prop,
                position: quantize::QPosition([1, 2, 3]),
                rotation: quantize::QRotation::default(),
                motion: None,
            });
            e.id = EntityId(id);
            e.kind = kind_of(id);
            out.push(e);
        }
    }
    out.sort_by_key(|e| e.id);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn position_error_is_under_half_a_step(x in -48.0f32..48.0, y in -16.0f32..48.0, z in -48.0f32..48.0) {
        let q = quantizer();
        let back = q.position_value(q.position([x, y, z]));
        for (a, b) in [x, y, z].iter().zip(back) {
            prop_assert!((a - b).abs() <= POSITION_STEP / 2.0 + 1e-5, "{a} -> {b}");
        }
        prop_assert_eq!(q.snap_position(back), back, "snapping is idempotent");
    }

    #[test]
    fn rotation_error_is_under_a_quarter_degree(x in -1.0f32..1.0, y in -1.0f32..1.0, z in -1.0f32..1.0, w in -1.0f32..1.0) {
        prop_assume!(x * x + y * y + z * z + w * w > 0.01);
        let n = (x * x + y * y + z * z + w * w).sqrt();
        let q = [x / n, y / n, z / n, w / n];
        let back = quantize::rotation_value(quantize::rotation(q));
        let dot: f32 = q.iter().zip(back).map(|(a, b)| a * b).sum::<f32>().abs().min(1.0);
        let angle = 2.0 * dot.acos().to_degrees();
        prop_assert!(angle < 0.25, "{q:?} -> {back:?}: {angle}°");
    }

    #[test]
    // The grid spans -64 ..= 64 - 1/256 m/s (an even count of steps around zero);
    // beyond it components clamp.
    fn velocity_error_is_under_half_a_step(x in -64.0f32..63.996, y in -64.0f32..63.996, z in -64.0f32..63.996) {
        let back = quantize::velocity_value(quantize::velocity([x, y, z]));
        for (a, b) in [x, y, z].iter().zip(back) {
            prop_assert!((a - b).abs() <= VELOCITY_STEP / 2.0 + 1e-4);
        }
    }

    #[test]
    fn delta_round_trips_against_any_baseline(baseline in view(), current in view()) {
        let q = quantizer();
        let body = delta::encode(&q, &baseline, &current);
        prop_assert_eq!(delta::decode(&q, &baseline, &body).unwrap(), current.clone());
        // And as a keyframe.
        let key = delta::encode(&q, &[], &current);
        prop_assert_eq!(delta::decode(&q, &[], &key).unwrap(), current);
    }

    #[test]
    fn entry_bits_predict_the_encoded_size(baseline in view(), seed in any::<u64>()) {
        let q = quantizer();
        let current = evolve(&baseline, &mut SplitMix64::new(seed));
        let body = delta::encode(&q, &baseline, &current);
        // Recount: header + gaps + entries must match the encoder to the bit (rounded up).
        let removed: Vec<_> = baseline.iter().filter(|b| current.iter().all(|c| c.id != b.id)).collect();
        let entries: Vec<(Option<&EntityView>, &EntityView)> = current
            .iter()
            .map(|c| (baseline.iter().find(|b| b.id == c.id), c))
            .filter(|(b, c)| b.is_none_or(|b| b != *c))
            .collect();
        let mut bits = delta::header_bits(removed.len() as u32, entries.len() as u32);
        let mut previous = 0;
        for r in &removed {
            bits += delta::gap_bits(r.id.0 - previous);
            previous = r.id.0;
        }
        previous = 0;
        for (b, c) in &entries {
            bits += delta::gap_bits(c.id.0 - previous) + delta::entry_bits(&q, *b, c);
            previous = c.id.0;
        }
        prop_assert_eq!(body.len(), bits.div_ceil(8) as usize);
    }

    /// The edge encodes each view against the newest one the client acknowledged; the
    /// channel loses, delays and reorders snapshots and acks. Every view the client
    /// decodes is exactly the one sent.
    #[test]
    fn lossy_reordered_channel_decodes_exactly(start in view(), seed in any::<u64>()) {
        let q = quantizer();
        let mut rng = SplitMix64::new(seed);
        let mut sent: Vec<(u32, View)> = Vec::new(); // edge's ring of sent views by tick
        let mut received: Vec<(u32, View)> = Vec::new(); // client's ring of decoded views
        let mut in_flight: Vec<(u32, u32, Vec<u8>)> = Vec::new(); // (tick, baseline tick, body)
        let mut acked = 0u32; // newest ack the edge has
        let mut truth = start;
        for tick in 1..=120u32 {
            truth = evolve(&truth, &mut rng);
            let baseline = sent.iter().find(|(t, _)| *t == acked).map(|(_, v)| v.clone());
            let base_tick = if baseline.is_some() { acked } else { 0 };
            let body = delta::encode(&q, baseline.as_deref().unwrap_or(&[]), &truth);
            sent.push((tick, truth.clone()));
            sent.retain(|(t, _)| tick - t < 32);
            if !rng.next_u64().is_multiple_of(4) { // 25 % loss
                in_flight.push((tick, base_tick, body));
            }
            // Deliver a random subset, in random order.
            let mut i = 0;
            while i < in_flight.len() {
                if rng.next_u64().is_multiple_of(3) {
                    let (t, base_tick, body) = in_flight.swap_remove(i);
                    let baseline = if base_tick == 0 { Some(Vec::new()) } else {
                        received.iter().find(|(r, _)| *r == base_tick).map(|(_, v)| v.clone())
                    };
                    // The client may have dropped a baseline older than its ring.
                    if let Some(baseline) = baseline {
                        let view = delta::decode(&q, &baseline, &body).unwrap();
                        let expected = &sent_view(&sent, t, &view);
                        prop_assert_eq!(&view, expected);
                        received.push((t, view));
                        received.retain(|(r, _)| t.saturating_sub(*r) < 64);
                        // Acks are lost too (30 %), and arrive whenever.
                        if rng.next_u64() % 10 >= 3 {
                            acked = acked.max(t);
                        }
                    }
                } else {
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(baseline in view(), body in vec(any::<u8>(), 0..600)) {
        let _ = delta::decode(&quantizer(), &baseline, &body);
    }
}

/// The view the edge sent at `tick` (still in its ring when the test checks it, or else
/// the decoded view is accepted as is: it was checked when it was fresh).
fn sent_view(sent: &[(u32, View)], tick: u32, decoded: &View) -> View {
    sent.iter()
        .find(|(t, _)| *t == tick)
        .map_or_else(|| decoded.clone(), |(_, v)| v.clone())
}

#[test]
fn unchanged_views_cost_two_bytes() {
    let q = quantizer();
    let view: View = (1..=900)
        .map(|i| EntityView {
            id: EntityId(i),
            kind: EntityKind::Prop,
            position: q.position([i as f32 * 0.01, 0.5, 0.0]),
            rotation: quantize::rotation([0.0, 0.0, 0.0, 1.0]),
            motion: None,
        })
        .collect();
    assert_eq!(delta::encode(&q, &view, &view).len(), 2);
    let keyframe = delta::encode(&q, &[], &view);
    assert!(
        keyframe.len() < 900 * 12,
        "a keyframe of 900 props is {} bytes",
        keyframe.len()
    );
}

#[test]
fn bodies_that_contradict_their_baseline_are_refused() {
    let q = quantizer();
    let one = vec![EntityView {
        id: EntityId(5),
        kind: EntityKind::Prop,
        position: q.position([0.0, 1.0, 0.0]),
        rotation: quantize::rotation([0.0, 0.0, 0.0, 1.0]),
        motion: None,
    }];
    // "New entity 5" against a baseline that has it; "changed 5" against one that lacks it.
    let new_five = delta::encode(&q, &[], &one);
    assert_eq!(
        delta::decode(&q, &one, &new_five),
        Err(DeltaError::BaselineMismatch)
    );
    let mut moved = one.clone();
    moved[0].position.0[0] += 3;
    let changed_five = delta::encode(&q, &one, &moved);
    assert_eq!(
        delta::decode(&q, &[], &changed_five),
        Err(DeltaError::BaselineMismatch)
    );
    // "Remove 5" against an empty baseline.
    let removal = delta::encode(&q, &one, &[]);
    assert!(delta::decode(&q, &[], &removal).is_err());
    assert_eq!(delta::decode(&q, &one, &[]), Err(DeltaError::Truncated));
}

/// Regression test: an entity with the reserved id 0 once made the encoder write a
/// corrupt id gap; it is now left out and the rest of the body decodes.
#[test]
fn entity_id_zero_is_left_out_not_corrupting() {
    let q = quantizer();
    let entity = |id| EntityView {
        id: EntityId(id),
        kind: EntityKind::Prop,
        position: q.position([1.0, 1.0, 1.0]),
        rotation: quantize::rotation([0.0, 0.0, 0.0, 1.0]),
        motion: None,
    };
    let body = delta::encode(&q, &[], &[entity(0), entity(1), entity(7)]);
    assert_eq!(
        delta::decode(&q, &[], &body).unwrap(),
        vec![entity(1), entity(7)]
    );
}
