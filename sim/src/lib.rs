//! # outpost-sim
//!
//! The game simulation, shared by the edge (authoritative) and the client (prediction,
//! replay playback): a bevy_ecs `World` and `Schedule` with rapier3d physics as a
//! resource, ticked at a fixed rate.
//!
//! This crate is pure: no clock, no I/O, no threads. A caller creates a [`Match`] from a
//! [`MatchConfig`], feeds it inputs, calls [`Match::tick`], and reads back events and
//! replicated state. The same inputs in the same order give the same state, bit for bit,
//! on the same build.
//!
//! Game rules live in game modes ([`GameMode`]): a mode declares its schema, installs its
//! systems into the fixed tick order ([`TickSet`]), decides how a player's character is
//! spawned and driven, and writes its replicated entities as records. This crate ships
//! no mode: the arena is `outpost-arena`, and `docs/game-modes.md` writes one from
//! nothing.
//!
//! ```
//! # use outpost_protocol::replication::View;
//! # use outpost_protocol::schema::ModeSchema;
//! # use outpost_protocol::{ConfigError, EntityId, MatchConfig, MatchId, PlayerId};
//! # use bevy_ecs::prelude::*;
//! use outpost_sim::{GameMode, Match, Modes, SimError};
//!
//! /// A mode with nothing in it but its players.
//! struct Empty;
//!
//! impl GameMode for Empty {
//!     fn name(&self) -> &'static str { "empty" }
//!     fn default_config(&self) -> Vec<u8> { Vec::new() }
//!     fn schema(&self, _: &[u8]) -> Result<ModeSchema, ConfigError> {
//!         Ok(ModeSchema { mode: "empty".into(), components: vec![], input: vec![], events: vec![], requests: vec![] })
//!     }
//!     fn setup(&self, _: &MatchConfig, _: &mut World, _: &mut Schedule) -> Result<(), SimError> {
//!         Ok(())
//!     }
//!     fn spawn_player(&self, world: &mut World, _: PlayerId, _: u8, _: EntityId) -> Entity {
//!         world.spawn_empty().id()
//!     }
//!     fn write_records(&self, _: &mut World, _: &mut View) {}
//! }
//!
//! let modes = Modes::new().with(Empty);
//! let mut game = Match::new(MatchId(1), &modes.config("empty", None)?, &modes)?;
//! let me = game.add_player(PlayerId(7))?;
//! for _ in 0..30 {
//!     game.step();
//! }
//! assert_eq!(game.player_entity(PlayerId(7)), Some(me));
//! assert_eq!(game.tick(), 30);
//! # Ok::<(), SimError>(())
//! ```

mod components;
mod game;
mod mode;
mod physics;

pub use components::{
    CATCH_UP_DEPTH, Controls, MAX_QUEUED_TICKS, MAX_STATS, Motion, NetId, OVER_BUDGET_SLACK,
    PlayerSlot, RigidBodyRef,
};
pub use game::{
    EndMatch, IntoInput, Linger, MAX_PENDING_REQUESTS, Match, MatchClock, MatchEvents,
    MatchOutcome, NetIds, REQUEST_BURST_BYTES, REQUEST_BYTES_PER_SECOND, ScoreLimit, SimError,
    Standing, TickSet, input_credit_ticks,
};
pub use mode::{
    Bot, BotRequest, GameMode, ModeError, ModeSettings, Modes, Prediction, Requester, SettingError,
    Sight, parse_setting,
};
pub use outpost_protocol::MatchConfig;
pub use outpost_protocol::rng::SplitMix64;
pub use physics::{Collisions, Physics};

/// Re-export of the physics engine, so modes and tests name the same version.
pub use rapier3d;
