//! The seam between the simulation core and game rules.

use bevy_ecs::prelude::*;
use outpost_protocol::{EntityId, MatchConfig, PlayerId};

use crate::game::SimError;

/// A game mode: its world setup, its systems and its characters.
///
/// The core owns the clock, the input queues, the physics step and replication; a mode
/// adds what makes a game. Systems a mode installs go into the [`crate::TickSet`]s, which
/// run in a fixed order every tick.
pub trait GameMode: Send + Sync + 'static {
    /// Short stable name.
    fn name(&self) -> &'static str;

    /// Builds the level and installs the mode's systems and resources.
    fn setup(
        &self,
        config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError>;

    /// Spawns a character for a player who joins. The core has already reserved its
    /// network id and will add the shared player components to the returned entity.
    fn spawn_player(&self, world: &mut World, player: PlayerId, net_id: EntityId) -> Entity;
}
