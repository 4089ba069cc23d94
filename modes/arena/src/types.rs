//! The arena's own types: its input, its entities as the simulation reports them, and
//! their quantized form.

use crate::quantize::{self, QPosition, QRotation, QVelocity, Quantizer};
use outpost_protocol::EntityId;
use serde::{Deserialize, Serialize};
use wincode::{SchemaRead, SchemaWrite};

/// A player's controls for one or more ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct PlayerInput {
    /// Sequence number, +1 per input; the edge applies each once, in order.
    pub seq: u32,
    /// Simulation ticks this input stands for, 1..=[`outpost_protocol::MAX_INPUT_TICKS`]: 1 for a client
    /// that sends every tick, 2 for one that sends every other tick. The edge spends
    /// each player's inputs against the match clock, so the ticks a client claims can
    /// never add up to more time than has passed: sending faster never moves faster.
    pub ticks: u8,
    /// Strafe axis, -127..=127 (right positive).
    pub move_x: i8,
    /// Forward axis, -127..=127 (forward positive).
    pub move_z: i8,
    /// Look yaw, a full turn in 65536 steps.
    pub yaw: u16,
    /// Look pitch, -16384..=16384 for -90..=90 degrees.
    pub pitch: i16,
    /// Button bits: [`PlayerInput::JUMP`], [`PlayerInput::FIRE`].
    pub buttons: u8,
    /// Snapshot tick the player was looking at when this input was made (for lag
    /// compensation of shots).
    pub view_tick: u32,
}

impl Default for PlayerInput {
    fn default() -> Self {
        Self {
            seq: 0,
            ticks: 1,
            move_x: 0,
            move_z: 0,
            yaw: 0,
            pitch: 0,
            buttons: 0,
            view_tick: 0,
        }
    }
}

impl PlayerInput {
    /// Jump button.
    pub const JUMP: u8 = 1;
    /// Fire button.
    pub const FIRE: u8 = 2;

    /// Yaw in radians, 0..2π.
    pub fn yaw_radians(&self) -> f32 {
        f32::from(self.yaw) * (std::f32::consts::TAU / 65536.0)
    }

    /// Pitch in radians, clamped to ±π/2.
    pub fn pitch_radians(&self) -> f32 {
        (f32::from(self.pitch) * (std::f32::consts::FRAC_PI_2 / 16384.0))
            .clamp(-std::f32::consts::FRAC_PI_2, std::f32::consts::FRAC_PI_2)
    }

    /// Encodes a yaw in radians.
    pub fn yaw_from_radians(yaw: f32) -> u16 {
        let turns = (yaw / std::f32::consts::TAU).rem_euclid(1.0);
        (turns * 65536.0) as u32 as u16
    }

    /// Encodes a pitch in radians.
    pub fn pitch_from_radians(pitch: f32) -> i16 {
        (pitch.clamp(-std::f32::consts::FRAC_PI_2, std::f32::consts::FRAC_PI_2)
            * (16384.0 / std::f32::consts::FRAC_PI_2)) as i16
    }
}

/// A character's motion, sent only for the client's own character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QMotion {
    /// Velocity.
    pub velocity: QVelocity,
    /// Standing on something.
    pub grounded: bool,
}

/// One entity as a client knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityView {
    /// Which entity.
    pub id: EntityId,
    /// What it is.
    pub kind: EntityKind,
    /// Where.
    pub position: QPosition,
    /// Which way it faces.
    pub rotation: QRotation,
    /// How it moves (own character only).
    pub motion: Option<QMotion>,
}

/// What kind of thing an entity is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    SchemaWrite,
    SchemaRead,
)]
pub enum EntityKind {
    /// A player's character.
    #[default]
    Player,
    /// A dynamic prop.
    Prop,
}

/// One replicated entity.
#[derive(
    Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, SchemaWrite, SchemaRead,
)]
pub struct EntityState {
    /// Which entity.
    pub id: EntityId,
    /// What it is.
    pub kind: EntityKind,
    /// Position, metres.
    pub position: [f32; 3],
    /// Orientation quaternion (x, y, z, w).
    pub rotation: [f32; 4],
    /// Linear velocity, metres per second.
    pub velocity: [f32; 3],
}

impl EntityState {
    /// This state as its quantized view (`motion` for a client's own character).
    pub fn quantize(&self, quantizer: &Quantizer, motion: Option<QMotion>) -> EntityView {
        EntityView {
            id: self.id,
            kind: self.kind,
            position: quantizer.position(self.position),
            rotation: quantize::rotation(self.rotation),
            motion,
        }
    }

    /// The state a quantized view stands for (velocity zero unless the view has motion).
    pub fn from_view(quantizer: &Quantizer, view: &EntityView) -> Self {
        Self {
            id: view.id,
            kind: view.kind,
            position: quantizer.position_value(view.position),
            rotation: quantize::rotation_value(view.rotation),
            velocity: view
                .motion
                .map_or([0.0; 3], |m| quantize::velocity_value(m.velocity)),
        }
    }
}
