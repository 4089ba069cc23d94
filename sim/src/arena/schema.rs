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
        input: vec![
            FieldDef::new(
                "move_x",
                FieldKind::Int {
                    min: -127,
                    max: 127,
                },
            ),
            FieldDef::new(
                "move_z",
                FieldKind::Int {
                    min: -127,
                    max: 127,
                },
            ),
            FieldDef::new("yaw", FieldKind::Int { min: 0, max: 65535 }),
            FieldDef::new(
                "pitch",
                FieldKind::Int {
                    min: -16384,
                    max: 16384,
                },
            ),
            FieldDef::new(
                "buttons",
                FieldKind::Flags {
                    names: vec!["jump".into(), "fire".into()],
                },
            ),
        ],
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

/// An arena input as a generic one under [`schema`].
pub fn input_record(input: &outpost_protocol::PlayerInput) -> replication::InputRecord {
    replication::InputRecord {
        seq: input.seq,
        ticks: input.ticks,
        view_tick: input.view_tick,
        slots: vec![
            (i32::from(input.move_x) + 127) as u32,
            (i32::from(input.move_z) + 127) as u32,
            u32::from(input.yaw),
            (i32::from(input.pitch) + 16384) as u32,
            u32::from(input.buttons & 3),
        ],
    }
}
