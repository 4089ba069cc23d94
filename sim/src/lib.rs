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
//! Game rules live in game modes ([`GameMode`]): a mode installs its systems into the
//! fixed tick order ([`TickSet`]) and decides how a player's character is spawned and
//! driven. Outpost ships the [`arena`] mode.
//!
//! ```
//! use outpost_protocol::{MatchId, PlayerId};
//! use outpost_sim::arena::PlayerInput;
//! use outpost_sim::{Match, arena};
//!
//! let mut game = Match::new(MatchId(1), &arena::config(&arena::ArenaConfig::default()))?;
//! let me = game.add_player(PlayerId(7))?;
//! game.push_input(PlayerId(7), PlayerInput { seq: 1, move_z: 127, ..Default::default() });
//! for _ in 0..30 {
//!     game.step();
//! }
//! let state = game.replicated_state();
//! assert!(state.iter().any(|e| e.id == me));
//! # Ok::<(), outpost_sim::SimError>(())
//! ```

pub mod arena;
mod components;
mod game;
mod mode;
mod physics;

pub use components::{
    CATCH_UP_DEPTH, Controls, MAX_QUEUED_TICKS, Motion, NetId, OVER_BUDGET_SLACK, PlayerSlot,
    Replicated, RigidBodyRef,
};
pub use game::{
    IntoInput, Match, MatchClock, MatchEvents, MatchOutcome, NetIds, ScoreLimit, SimError, TickSet,
    input_credit_ticks,
};
pub use mode::{GameMode, ModeError, Modes, Prediction};
pub use outpost_protocol::MatchConfig;
pub use outpost_protocol::rng::SplitMix64;
pub use physics::{Collisions, Physics};

/// Re-export of the physics engine, so modes and tests name the same version.
pub use rapier3d;
