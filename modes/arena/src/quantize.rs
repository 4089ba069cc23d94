//! The arena's quantization: the exact integers its state is sent as (the grid its
//! schema's fields declare, see [`crate::schema`]).
//!
//! Positions snap to a grid of [`POSITION_STEP`] (about 2 mm) inside the match's bounds;
//! orientations are "smallest three" quaternions with 10 bits per component; velocities
//! (sent only where a client needs them: its own character) snap to 1/256 m/s. Client and
//! edge use these same functions, and the edge snaps its characters' authoritative state
//! to the same grid, so a client's prediction starts from exactly what the server has.

/// Position resolution, metres (1/512 m ≈ 2 mm).
pub const POSITION_STEP: f32 = 1.0 / 512.0;
/// Bits per "smallest three" quaternion component.
pub const ROTATION_COMPONENT_BITS: u32 = 10;
/// Velocity resolution, metres per second.
pub const VELOCITY_STEP: f32 = 1.0 / 256.0;
/// Speed bound, metres per second: components from -64 to 64 - 1/256 are represented;
/// beyond that they clamp.
pub const MAX_SPEED: f32 = 64.0;
/// Bits per velocity axis.
pub const VELOCITY_BITS: u32 = 15;
/// Lowest height represented, metres.
pub const MIN_HEIGHT: f32 = -16.0;
/// Highest height represented, metres.
pub const MAX_HEIGHT: f32 = 48.0;
/// Margin around the arena floor inside the bounds, metres.
pub const BOUNDS_MARGIN: f32 = 8.0;

/// A position on the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QPosition(pub [u32; 3]);

/// A "smallest three" orientation: which component was largest (and dropped), and the
/// other three on a 10-bit grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QRotation {
    /// Index (0..4) of the dropped, largest component.
    pub largest: u8,
    /// The other three, in order, each `0..1024`.
    pub components: [u16; 3],
}

/// A velocity on the grid (offset binary: 0 is `-MAX_SPEED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QVelocity(pub [u32; 3]);

/// The grid of one match: its bounds and the bits each axis needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    min: [f32; 3],
    steps: [u32; 3],
    bits: [u32; 3],
}

impl Quantizer {
    /// The grid over a square floor of half side `half_extent` plus a margin, heights
    /// from [`MIN_HEIGHT`] to [`MAX_HEIGHT`].
    pub fn for_floor(half_extent: f32) -> Self {
        let half = half_extent + BOUNDS_MARGIN;
        Self::new([-half, MIN_HEIGHT, -half], [half, MAX_HEIGHT, half])
    }

    /// A grid over explicit bounds.
    pub fn new(min: [f32; 3], max: [f32; 3]) -> Self {
        let mut steps = [0u32; 3];
        let mut bits = [0u32; 3];
        for axis in 0..3 {
            steps[axis] = ((max[axis] - min[axis]) / POSITION_STEP).ceil().max(1.0) as u32;
            bits[axis] = u32::BITS - steps[axis].leading_zeros();
        }
        Self { min, steps, bits }
    }

    /// Bits per position axis.
    pub fn position_bits(&self) -> [u32; 3] {
        self.bits
    }

    /// The nearest grid point (positions outside the bounds clamp to them).
    pub fn position(&self, p: [f32; 3]) -> QPosition {
        let mut q = [0u32; 3];
        for axis in 0..3 {
            let v = if p[axis].is_finite() {
                p[axis]
            } else {
                self.min[axis]
            };
            let steps = ((v - self.min[axis]) / POSITION_STEP).round();
            q[axis] = steps.clamp(0.0, self.steps[axis] as f32) as u32;
        }
        QPosition(q)
    }

    /// The point a grid position stands for.
    pub fn position_value(&self, q: QPosition) -> [f32; 3] {
        std::array::from_fn(|axis| {
            self.min[axis] + q.0[axis].min(self.steps[axis]) as f32 * POSITION_STEP
        })
    }

    /// Whether a grid position is inside the grid (decoders check what they read).
    pub fn contains(&self, q: QPosition) -> bool {
        (0..3).all(|axis| q.0[axis] <= self.steps[axis])
    }

    /// Snaps a position to the grid.
    pub fn snap_position(&self, p: [f32; 3]) -> [f32; 3] {
        self.position_value(self.position(p))
    }
}

/// Quantizes a quaternion `(x, y, z, w)`; it need not be exactly unit length. (The
/// smallest-three formula of [`outpost_protocol::schema::rotation`] at 10 bits.)
pub fn rotation(q: [f32; 4]) -> QRotation {
    let [largest, a, b, c] = outpost_protocol::schema::rotation(q, ROTATION_COMPONENT_BITS);
    QRotation {
        largest: largest as u8,
        components: [a as u16, b as u16, c as u16],
    }
}

/// The unit quaternion `(x, y, z, w)` a quantized rotation stands for.
pub fn rotation_value(r: QRotation) -> [f32; 4] {
    let [a, b, c] = r.components.map(u32::from);
    outpost_protocol::schema::rotation_value(
        &[u32::from(r.largest), a, b, c],
        ROTATION_COMPONENT_BITS,
    )
}

const VELOCITY_OFFSET: f32 = MAX_SPEED / VELOCITY_STEP;
const VELOCITY_MAX_Q: u32 = (1 << VELOCITY_BITS) - 1;

/// Quantizes a velocity (components beyond ±[`MAX_SPEED`] clamp).
pub fn velocity(v: [f32; 3]) -> QVelocity {
    QVelocity(v.map(|c| {
        let c = if c.is_finite() { c } else { 0.0 };
        (c / VELOCITY_STEP + VELOCITY_OFFSET)
            .round()
            .clamp(0.0, VELOCITY_MAX_Q as f32) as u32
    }))
}

/// The velocity a quantized one stands for.
pub fn velocity_value(v: QVelocity) -> [f32; 3] {
    v.0.map(|c| (c.min(VELOCITY_MAX_Q) as f32 - VELOCITY_OFFSET) * VELOCITY_STEP)
}

/// Snaps a velocity to the grid.
pub fn snap_velocity(v: [f32; 3]) -> [f32; 3] {
    velocity_value(velocity(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_sizes_follow_the_floor() {
        let q = Quantizer::for_floor(40.0);
        // 96 m at 1/512 m: 49 152 steps, 16 bits; 64 m of height: 15 bits... plus one.
        assert_eq!(q.position_bits(), [16, 16, 16]);
    }
}
