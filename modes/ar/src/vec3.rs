//! Small 3-vector arithmetic on `[f32; 3]`, for poses.

pub(crate) fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn add(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub(crate) fn scale(a: [f32; 3], s: f32) -> [f32; 3] {
    a.map(|v| v * s)
}

pub(crate) fn length(a: [f32; 3]) -> f32 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

/// `v` shortened to at most `max` long.
pub(crate) fn limit(v: [f32; 3], max: f32) -> [f32; 3] {
    let l = length(v);
    if l > max && l > 0.0 {
        scale(v, max / l)
    } else {
        v
    }
}

/// `v` at unit length (a tiny vector stays tiny rather than dividing by zero).
pub(crate) fn normalise(v: [f32; 3]) -> [f32; 3] {
    scale(v, 1.0 / length(v).max(1e-6))
}

/// Element-wise combination of two 3-vectors.
pub(crate) trait Map2 {
    fn map2(self, other: Self, f: impl Fn(f32, f32) -> f32) -> Self;
}

impl Map2 for [f32; 3] {
    fn map2(self, other: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        [
            f(self[0], other[0]),
            f(self[1], other[1]),
            f(self[2], other[2]),
        ]
    }
}
