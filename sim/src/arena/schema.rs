//! The arena's replicated state as a mode schema, and its specialised views converted to
//! generic ones: the bridge that measures the generic codec against the specialised one
//! on the same views (`examples/bandwidth.rs`, `benches/codec.rs`) until the arena is
//! rebuilt on the mode API.

use outpost_protocol::replication;
use outpost_protocol::schema::{ComponentDef, FieldDef, FieldKind, ModeSchema, Visibility};
use outpost_protocol::{EntityKind, EntityView, MatchConfig, quantize};

/// The arena's state as a mode schema: what the specialised codec sends, component by
/// component, at the same quantization.
pub fn schema(config: &MatchConfig) -> ModeSchema {
    let half = config.arena_half_extent + quantize::BOUNDS_MARGIN;
    let tag = |name: &str, priority| ComponentDef {
        name: name.into(),
        fields: Vec::new(),
        visibility: Visibility::Everyone,
        priority,
    };
    let one = |name: &str, kind| ComponentDef {
        name: name.into(),
        fields: vec![FieldDef::new(name, kind)],
        visibility: Visibility::Everyone,
        priority: 0,
    };
    let speed = quantize::MAX_SPEED;
    ModeSchema {
        mode: "arena".into(),
        components: vec![
            tag("character", 3),
            tag("prop", 0),
            one(
                "position",
                FieldKind::Position {
                    min: [-half, quantize::MIN_HEIGHT, -half],
                    max: [half, quantize::MAX_HEIGHT, half],
                    step: quantize::POSITION_STEP,
                },
            ),
            one("rotation", FieldKind::Rotation { bits: 10 }),
            ComponentDef {
                name: "motion".into(),
                fields: vec![
                    FieldDef::new(
                        "velocity",
                        FieldKind::Vector {
                            min: [-speed; 3],
                            max: [speed - quantize::VELOCITY_STEP; 3],
                            step: quantize::VELOCITY_STEP,
                        },
                    ),
                    FieldDef::new("grounded", FieldKind::Bool),
                ],
                visibility: Visibility::Owner,
                priority: 0,
            },
        ],
        input: Vec::new(),
        events: Vec::new(),
    }
}

/// A specialised view as a generic one under [`schema`].
pub fn replicated(view: &[EntityView]) -> replication::View {
    let mut out = replication::View::new();
    let mut slots = Vec::with_capacity(11);
    for e in view {
        slots.clear();
        let mut mask = if e.kind == EntityKind::Player { 1 } else { 2 };
        mask |= 4 | 8;
        slots.extend_from_slice(&e.position.0);
        slots.push(u32::from(e.rotation.largest));
        slots.extend(e.rotation.components.map(u32::from));
        if let Some(m) = e.motion {
            mask |= 16;
            slots.extend_from_slice(&m.velocity.0);
            slots.push(u32::from(m.grounded));
        }
        out.push(e.id, mask, &slots);
    }
    out
}
