//! A scripted capture-the-flag player, from what a client sees: it reads its team, the
//! flags and their carriers from the snapshot's records (through the schema). Half of each
//! team attack (every other character of the team in id order): they run for the enemy
//! flag and home with it; the others defend, guarding the way to their base. Anyone chases whoever carries
//! their own flag; a defender (or an attacker nearer it than the enemy flag) runs to its
//! own dropped flag to return it. Pure and deterministic: the same views give the same
//! inputs.

use outpost_arena::{PlayerInput, Position};
use outpost_protocol::replication::{Fields, InputRecord, View};
use outpost_protocol::{EntityId, MatchEvent};
use outpost_sim::{Bot, IntoInput, Sight};

use crate::{Capture, CtfConfig, CtfInput, FlagState, TeamOf};

/// Ticks without moving half a metre after which the bot steps sideways.
const STUCK_TICKS: u32 = 30;

/// One bot's memory between inputs.
#[derive(Debug, Clone)]
pub struct CtfBot {
    settings: CtfConfig,
    /// Where it was when it last made progress, and ticks since.
    anchor: Option<([f32; 3], u32)>,
    /// Ticks left of a sideways step around an obstacle, and its side.
    sidestep: (u32, f32),
    /// Captures it made.
    captures: u32,
}

/// What the bot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Running for the enemy flag.
    TakeFlag,
    /// Carrying it home.
    CarryHome,
    /// Chasing the enemy who carries its own flag.
    Chase,
    /// Running to its own dropped flag to return it.
    Return,
    /// Guarding the way to its own base (a defender with nothing to chase).
    Guard,
}

impl CtfBot {
    /// A bot for a match with these settings.
    pub fn new(settings: CtfConfig) -> Self {
        Self {
            settings,
            anchor: None,
            sidestep: (0, 1.0),
            captures: 0,
        }
    }

    /// The next input of the player owning `own`, from the newest view, and what it is
    /// after. `None` while the own character is not in view.
    pub fn next(
        &mut self,
        fields: &Fields,
        view: &View,
        own: EntityId,
    ) -> Option<(CtfInput, Goal)> {
        let me = view.find(own)?;
        let Position(at) = fields.get(&me)?;
        let TeamOf(team) = fields.get(&me)?;
        let mut own_flag = None;
        let mut enemy_flag = None;
        for record in view.iter() {
            let (Some(flag), Some(TeamOf(flag_team)), Some(Position(p))) = (
                fields.get::<FlagState>(&record),
                fields.get::<TeamOf>(&record),
                fields.get::<Position>(&record),
            ) else {
                continue;
            };
            if flag_team == team {
                own_flag = Some((flag, p));
            } else {
                enemy_flag = Some((flag, p));
            }
        }
        let base = self.settings.base(team);
        // Roles alternate along the team's characters in id order, so each side has as
        // many attackers as defenders whatever ids matchmaking gave it.
        let rank = view
            .iter()
            .filter(|r| {
                r.id < own
                    && fields.has(r, "character")
                    && fields.get::<TeamOf>(r).is_some_and(|t| t.0 == team)
            })
            .count();
        let defender = rank % 2 == 1;
        // Off the straight lane between the bases, so the post itself does not block
        // carriers; a guard moves only to chase a carrier of its flag or return it.
        let side = if team == 0 { -6.0 } else { 6.0 };
        let guard = [base[0] * 0.6, 0.0, base[2] + side];
        let (goal, target) = match (own_flag, enemy_flag) {
            (_, Some((flag, _))) if flag.carrier == Some(own) => (Goal::CarryHome, base),
            (Some((flag, p)), _) if flag.carrier.is_some() => (Goal::Chase, p),
            (Some((flag, p)), Some((_, enemy)))
                if !flag.home && (defender || distance(at, p) < distance(at, enemy)) =>
            {
                (Goal::Return, p)
            }
            _ if defender => (Goal::Guard, guard),
            (_, Some((_, p))) => (Goal::TakeFlag, p),
            _ => (Goal::TakeFlag, self.settings.base(1 - team.min(1))),
        };
        if goal == Goal::Guard && distance(at, target) < 1.0 {
            // At its post: stand, facing the enemy's side.
            let facing = if team == 0 { 1.0 } else { -1.0 } * std::f32::consts::FRAC_PI_2;
            let input = CtfInput {
                movement: PlayerInput {
                    yaw: PlayerInput::yaw_from_radians(facing),
                    ..PlayerInput::default()
                },
                drop: false,
            };
            self.anchor = None;
            return Some((input, goal));
        }
        // Attackers and carriers go round by a flank while far from where they are going,
        // not down the lane between the bases where everyone else runs.
        let mut target = target;
        if matches!(goal, Goal::TakeFlag | Goal::CarryHome) && (target[0] - at[0]).abs() > 8.0 {
            // Each team keeps to its own flank (its guards' side), so attackers do not meet
            // head on, nor run through the other team's guards.
            target[2] = if team == 0 { -10.0 } else { 10.0 };
        }
        let (dx, dz) = (target[0] - at[0], target[2] - at[2]);
        let mut yaw = dx.atan2(dz);
        // Stuck against a pillar or a wall: step sideways for a while.
        match self.anchor {
            Some((from, ticks)) if distance(from, at) < 0.5 => {
                self.anchor = Some((from, ticks + 1));
                if ticks + 1 >= STUCK_TICKS && self.sidestep.0 == 0 {
                    self.sidestep = (20, -self.sidestep.1);
                    self.anchor = Some((at, 0));
                }
            }
            _ => self.anchor = Some((at, 0)),
        }
        if self.sidestep.0 > 0 {
            self.sidestep.0 -= 1;
            yaw += self.sidestep.1 * std::f32::consts::FRAC_PI_2;
        }
        let input = CtfInput {
            movement: PlayerInput {
                move_z: 127,
                yaw: PlayerInput::yaw_from_radians(yaw),
                ..PlayerInput::default()
            },
            drop: false,
        };
        Some((input, goal))
    }
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

impl Bot for CtfBot {
    fn next_input(&mut self, sight: &Sight<'_>) -> Option<InputRecord> {
        let (input, _) = self.next(sight.fields, sight.view, sight.own)?;
        Some(input.into_input())
    }

    fn observe(&mut self, event: &MatchEvent, own: EntityId) {
        if Capture::from_event(event).is_some_and(|c| c.carrier == own) {
            self.captures += 1;
        }
    }

    fn points(&self) -> u32 {
        self.captures
    }
}
