//! Quantization error bounds: positions within half a step, rotations within a quarter
//! degree, velocities within half a step.

use outpost_arena::quantize::{self, POSITION_STEP, Quantizer, VELOCITY_STEP};
use proptest::prelude::*;

fn quantizer() -> Quantizer {
    Quantizer::for_floor(40.0)
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
}
