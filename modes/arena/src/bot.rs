//! The arena's scripted player ([`outpost_sim::Bot`]): it wanders, turns toward the
//! nearest opponent as the player sees them (interpolated, from the predicted own
//! character), shoots, keeps a few metres away, closes in now and then, and jumps now
//! and then. `outpost dev` and `outpost loadtest` play the arena with it.

use outpost_protocol::replication::InputRecord;
use outpost_protocol::{EntityId, MatchEvent};
use outpost_sim::{Bot, IntoInput, Sight, SplitMix64};

use crate::{Hit, PlayerInput};

/// One arena bot.
#[derive(Debug, Clone)]
pub struct ArenaBot {
    rng: SplitMix64,
    heading: f32,
    tick: u64,
    hits: u32,
}

impl ArenaBot {
    /// A bot whose choices are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let heading = rng.range(0.0, std::f32::consts::TAU);
        Self {
            rng,
            heading,
            tick: 0,
            hits: 0,
        }
    }
}

impl Bot for ArenaBot {
    fn next_input(&mut self, sight: &Sight<'_>) -> Option<InputRecord> {
        self.tick += 1;
        if self.tick.is_multiple_of(90) {
            self.heading = self.rng.range(0.0, std::f32::consts::TAU);
        }
        let mut input = PlayerInput::default();
        // Aim where the player sees others: interpolated remote characters, seen from the
        // predicted own one. The shot carries that view tick, and the edge rewinds to it.
        if let Some(mine) = sight.own_position {
            // The component looked up by name once, not once per entity.
            let character = sight
                .fields
                .schema()
                .component("character")
                .map_or(0, |(c, _)| 1u64 << c);
            let nearest = sight
                .view
                .iter()
                .filter(|r| r.id != sight.own && r.mask & character != 0)
                .filter_map(|r| (sight.drawn)(r.id))
                .map(|p| {
                    let d = [p[0] - mine[0], p[1] - mine[1], p[2] - mine[2]];
                    (d, d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((d, dist2)) = nearest {
                let yaw = d[0].atan2(d[2]);
                let pitch = d[1].atan2((d[0] * d[0] + d[2] * d[2]).sqrt());
                input.yaw = PlayerInput::yaw_from_radians(yaw);
                input.pitch = PlayerInput::pitch_from_radians(pitch);
                if dist2 < 60.0 * 60.0 {
                    input.buttons |= PlayerInput::FIRE;
                }
                if dist2 < 4.0 * 4.0 {
                    self.heading = yaw + std::f32::consts::PI; // keep a few metres away
                } else if self.tick % 300 < 60 {
                    self.heading = yaw; // close in now and then
                }
            } else {
                input.yaw = PlayerInput::yaw_from_radians(self.heading);
            }
        }
        // Move along the heading whatever the look direction: strafe-relative axes.
        let relative = self.heading - input.yaw_radians();
        input.move_z = (relative.cos() * 127.0) as i8;
        input.move_x = (-relative.sin() * 127.0) as i8;
        if self.rng.next_u64().is_multiple_of(100) {
            input.buttons |= PlayerInput::JUMP;
        }
        Some(input.into_input())
    }

    fn observe(&mut self, event: &MatchEvent, own: EntityId) {
        if Hit::from_event(event).is_some_and(|hit| hit.shooter == own) {
            self.hits += 1;
        }
    }

    fn points(&self) -> u32 {
        self.hits
    }
}
