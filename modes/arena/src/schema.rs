//! The arena's replicated state as a mode schema, and its specialised views converted to
//! generic ones: the bridge that measures the generic codec against the specialised one
//! on the same views (`examples/bandwidth.rs`, `benches/codec.rs`) until the arena is
//! rebuilt on the mode API.

use crate::quantize;
use crate::types::{EntityKind, EntityView};
use outpost_protocol::replication;
use outpost_protocol::schema::{
    ComponentDef, EventDef, FieldDef, FieldKind, ModeSchema, Value, Visibility,
};
use outpost_protocol::{EntityId, MatchEvent};

use super::ArenaConfig;

/// The arena's state, input and events as a mode schema.
pub fn schema(settings: &ArenaConfig) -> ModeSchema {
    let tag = |name: &str, priority| ComponentDef {
        name: name.into(),
        fields: Vec::new(),
        visibility: Visibility::Everyone,
        priority,
    };
    let mut components = vec![tag("character", 3), tag("prop", 0)];
    components.extend(pose_components(settings.half_extent));
    ModeSchema {
        mode: "arena".into(),
        components,
        input: movement_input(&["jump", "fire"]),
        events: vec![EventDef {
            name: "hit".into(),
            fields: vec![
                FieldDef::new("shooter", FieldKind::Entity),
                FieldDef::new("target", FieldKind::Entity),
                FieldDef::new(
                    "shooter_score",
                    FieldKind::Int {
                        min: 0,
                        max: i32::MAX,
                    },
                ),
            ],
        }],
        requests: Vec::new(),
    }
}

/// The components a character of the arena's movement replicates, on a level of this
/// half extent: `position` (the arena's grid), `rotation` and the owner-only `motion`.
/// A mode that moves its characters as the arena does declares them, so that
/// [`crate::ArenaPrediction`] reads its records.
pub fn pose_components(half_extent: f32) -> [ComponentDef; 3] {
    let half = half_extent + quantize::BOUNDS_MARGIN;
    let one = |name: &str, kind| ComponentDef {
        name: name.into(),
        fields: vec![FieldDef::new(name, kind)],
        visibility: Visibility::Everyone,
        priority: 0,
    };
    let speed = quantize::MAX_SPEED;
    [
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
    ]
}

/// The arena's input fields — `move_x`, `move_z`, `yaw`, `pitch`, then `buttons` with
/// these names (jump first: the arena's movement reads bit 0 as jump).
pub fn movement_input(buttons: &[&str]) -> Vec<FieldDef> {
    let int = |name: &str, min, max| FieldDef::new(name, FieldKind::Int { min, max });
    vec![
        int("move_x", -127, 127),
        int("move_z", -127, 127),
        int("yaw", 0, 65535),
        int("pitch", -16384, 16384),
        FieldDef::new(
            "buttons",
            FieldKind::Flags {
                names: buttons.iter().map(|b| (*b).to_owned()).collect(),
            },
        ),
    ]
}

/// A hitscan shot hit another character: the arena's one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The shooter's character.
    pub shooter: EntityId,
    /// The character hit.
    pub target: EntityId,
    /// The shooter's score after the hit.
    pub shooter_score: u32,
}

static EVENTS: std::sync::LazyLock<replication::Events> =
    std::sync::LazyLock::new(|| replication::Events::new(&schema(&ArenaConfig::default())));

impl Hit {
    /// The hit as a match event.
    pub fn event(&self) -> MatchEvent {
        let values = [
            Value::Entity(self.shooter),
            Value::Entity(self.target),
            Value::Int(i64::from(self.shooter_score)),
        ];
        match EVENTS.encode("hit", &values) {
            Some(event) => MatchEvent::Mode(event),
            None => unreachable!("the arena's schema declares `hit`"),
        }
    }

    /// The hit a match event stands for, if it is one.
    pub fn from_event(event: &MatchEvent) -> Option<Self> {
        let MatchEvent::Mode(event) = event else {
            return None;
        };
        match EVENTS.decode(event)? {
            ("hit", values) => match values.as_slice() {
                [
                    Value::Entity(shooter),
                    Value::Entity(target),
                    Value::Int(score),
                ] => Some(Self {
                    shooter: *shooter,
                    target: *target,
                    shooter_score: u32::try_from(*score).ok()?,
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Replicated state as the records of [`schema`], quantized on `quantizer`'s grid
/// (without the owner-only motion).
pub fn records(quantizer: &crate::Quantizer, entities: &[crate::EntityState]) -> replication::View {
    let views: Vec<EntityView> = entities
        .iter()
        .map(|e| e.quantize(quantizer, None))
        .collect();
    replicated(&views)
}

/// A specialised view as a generic one under [`schema`].
pub fn replicated(view: &[EntityView]) -> replication::View {
    let mut out = replication::View::new();
    replicated_into(view, &mut out);
    out
}

/// [`replicated`] into `out`, reusing its buffers.
pub fn replicated_into(view: &[EntityView], out: &mut replication::View) {
    out.clear();
    let mut slots = Vec::with_capacity(11);
    for e in view {
        slots.clear();
        let mut mask = if e.kind == EntityKind::Player {
            CHARACTER
        } else {
            PROP
        };
        mask |= POSE;
        slots.extend_from_slice(&e.position.0);
        slots.push(u32::from(e.rotation.largest));
        slots.extend(e.rotation.components.map(u32::from));
        if let Some(m) = e.motion {
            mask |= MOTION;
            slots.extend_from_slice(&motion_slots(&m));
        }
        out.push(e.id, mask, &slots);
    }
}

/// The `position` component, typed (see [`replication::Fields::get`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position(pub [f32; 3]);

/// The `rotation` component, typed: a quaternion `(x, y, z, w)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation(pub [f32; 4]);

/// The owner-only `motion` component, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionState {
    /// Velocity, metres per second.
    pub velocity: [f32; 3],
    /// Standing on something.
    pub grounded: bool,
}

impl replication::Component for Position {
    const NAME: &'static str = "position";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Vec3(p)] => Some(Self(*p)),
            _ => None,
        }
    }
}

impl replication::Component for Rotation {
    const NAME: &'static str = "rotation";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Quat(q)] => Some(Self(*q)),
            _ => None,
        }
    }
}

impl replication::Component for MotionState {
    const NAME: &'static str = "motion";
    fn from_values(values: &[Value]) -> Option<Self> {
        match values {
            [Value::Vec3(velocity), Value::Bool(grounded)] => Some(Self {
                velocity: *velocity,
                grounded: *grounded,
            }),
            _ => None,
        }
    }
}

impl crate::EntityState {
    /// An entity of an arena view as the arena's typed state, read through the schema
    /// (`None` if it has no pose). Velocity is zero unless the record carries the
    /// owner-only motion.
    pub fn from_record(
        fields: &replication::Fields,
        record: &replication::Record<'_>,
    ) -> Option<Self> {
        let Position(position) = fields.get(record)?;
        let Rotation(rotation) = fields.get(record)?;
        Some(Self {
            id: record.id,
            kind: if fields.has(record, "character") {
                EntityKind::Player
            } else {
                EntityKind::Prop
            },
            position,
            rotation,
            velocity: fields
                .get::<MotionState>(record)
                .map_or([0.0; 3], |m| m.velocity),
        })
    }
}

/// Every entity of an arena view with a pose, typed, sorted by id.
pub fn entities(fields: &replication::Fields, view: &replication::View) -> Vec<crate::EntityState> {
    view.iter()
        .filter_map(|r| crate::EntityState::from_record(fields, &r))
        .collect()
}

/// Component bits of [`schema`].
pub const CHARACTER: u64 = 1;
/// The prop tag.
pub const PROP: u64 = 2;
/// Position and rotation.
pub const POSE: u64 = 4 | 8;
/// The owner-only motion component.
pub const MOTION: u64 = 16;

/// A character's motion as the slots of the motion component.
pub fn motion_slots(motion: &crate::QMotion) -> [u32; 4] {
    let [x, y, z] = motion.velocity.0;
    [x, y, z, u32::from(motion.grounded)]
}

/// A generic view under [`schema`] as the specialised one (entities whose components are
/// not the arena's are left out).
pub fn from_replicated(view: &replication::View) -> Vec<EntityView> {
    let mut out = Vec::with_capacity(view.len());
    out.extend(view.iter().filter_map(|r| entity_view(&r)));
    out
}

/// One generic record under [`schema`] as the specialised entity (`None` if its
/// components are not the arena's).
pub fn entity_view(r: &replication::Record<'_>) -> Option<EntityView> {
    use crate::quantize::{QPosition, QRotation, QVelocity};
    let s = r.slots;
    if r.mask & POSE != POSE || s.len() < 7 {
        return None;
    }
    let motion = (r.mask & MOTION != 0 && s.len() >= 11).then(|| crate::QMotion {
        velocity: QVelocity([s[7], s[8], s[9]]),
        grounded: s[10] != 0,
    });
    Some(EntityView {
        id: r.id,
        kind: if r.mask & CHARACTER != 0 {
            EntityKind::Player
        } else {
            EntityKind::Prop
        },
        position: QPosition([s[0], s[1], s[2]]),
        rotation: QRotation {
            largest: s[3].min(3) as u8,
            components: [s[4], s[5], s[6]].map(|c| c.min(1023) as u16),
        },
        motion,
    })
}

impl outpost_sim::IntoInput for crate::PlayerInput {
    fn into_input(self) -> replication::InputRecord {
        input_record(&self)
    }
}

/// An arena input as a generic one under [`schema`].
pub fn input_record(input: &crate::PlayerInput) -> replication::InputRecord {
    replication::InputRecord {
        seq: input.seq,
        ticks: input.ticks,
        view_tick: input.view_tick,
        slots: input_slots(input).to_vec(),
    }
}

/// An arena input's fields as slots of [`schema`]'s input.
fn input_slots(input: &crate::PlayerInput) -> [u32; 5] {
    // Every field within its range: -128 moves as -127, pitch beyond ±90° as ±90°.
    [
        (i32::from(input.move_x).max(-127) + 127) as u32,
        (i32::from(input.move_z).max(-127) + 127) as u32,
        u32::from(input.yaw),
        (i32::from(input.pitch).clamp(-16384, 16384) + 16384) as u32,
        u32::from(input.buttons & 3),
    ]
}

/// The arena input a generic one stands for (`None` if its slots are not the arena's).
pub fn input_from_record(record: &replication::InputRecord) -> Option<crate::PlayerInput> {
    let [move_x, move_z, yaw, pitch, buttons] = record.slots.as_slice() else {
        return None;
    };
    Some(crate::PlayerInput {
        seq: record.seq,
        ticks: record.ticks,
        move_x: (*move_x as i32 - 127).clamp(-127, 127) as i8,
        move_z: (*move_z as i32 - 127).clamp(-127, 127) as i8,
        yaw: (*yaw).min(65535) as u16,
        pitch: (*pitch as i32 - 16384).clamp(-16384, 16384) as i16,
        buttons: (*buttons & 3) as u8,
        view_tick: record.view_tick,
    })
}

static INPUT_LAYOUT: std::sync::LazyLock<replication::InputLayout> =
    std::sync::LazyLock::new(|| replication::InputLayout::new(&schema(&ArenaConfig::default())));

/// Arena inputs, newest first, as an input frame's batch.
pub fn encode_inputs(inputs: &[crate::PlayerInput]) -> Vec<u8> {
    let mut slots = [[0u32; 5]; replication::MAX_BATCH_INPUTS];
    for (s, input) in slots.iter_mut().zip(inputs) {
        *s = input_slots(input);
    }
    let refs = inputs
        .iter()
        .zip(&slots)
        .map(|(input, slots)| replication::InputRef {
            seq: input.seq,
            ticks: input.ticks,
            view_tick: input.view_tick,
            slots,
        });
    replication::encode_inputs(&INPUT_LAYOUT, refs)
}

/// An input frame's batch as arena inputs, newest first.
pub fn decode_inputs(batch: &[u8]) -> Result<Vec<crate::PlayerInput>, replication::DeltaError> {
    Ok(replication::decode_inputs(&INPUT_LAYOUT, batch)?
        .iter()
        .filter_map(input_from_record)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::PlayerInput;
    use outpost_protocol::rng::SplitMix64;

    use super::*;

    /// Regression test: an `i8` axis of -128 (which `PlayerInput` allows but the schema's
    /// -127..=127 does not) made a slot too wide for the field's bits, which the batch
    /// writer then left out, misaligning every field after it: the edge misread the
    /// player's inputs. Now it is sent as -127, which is also how the edge and the
    /// predictor move it.
    #[test]
    fn an_axis_of_minus_128_is_sent_as_minus_127_not_lost() {
        let input = PlayerInput {
            seq: 9,
            move_x: -128,
            move_z: -128,
            pitch: i16::MIN,
            ..PlayerInput::default()
        };
        let decoded = decode_inputs(&encode_inputs(&[input])).expect("decodes");
        assert_eq!(
            decoded,
            [PlayerInput {
                move_x: -127,
                move_z: -127,
                pitch: -16384,
                ..input
            }]
        );
    }

    #[test]
    fn arena_inputs_round_trip_through_a_batch() {
        let mut rng = SplitMix64::new(4);
        for _ in 0..500 {
            let n = 1 + (rng.next_u64() % 8) as u32;
            let seq = 100 + (rng.next_u64() % 10_000) as u32;
            let inputs: Vec<PlayerInput> = (0..n)
                .map(|i| PlayerInput {
                    seq: seq - i,
                    ticks: 1 + (rng.next_u64() % 8) as u8,
                    move_x: ((rng.next_u64() % 255) as i32 - 127) as i8,
                    move_z: ((rng.next_u64() % 255) as i32 - 127) as i8,
                    yaw: rng.next_u64() as u16,
                    pitch: ((rng.next_u64() % 32_769) as i32 - 16_384) as i16,
                    buttons: (rng.next_u64() % 4) as u8,
                    view_tick: 5_000 - i,
                })
                .collect();
            assert_eq!(decode_inputs(&encode_inputs(&inputs)), Ok(inputs));
        }
    }
}
