//! A match: one world, one schedule, one fixed tick.

use std::collections::{BTreeMap, VecDeque};

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use std::sync::Arc;

use outpost_protocol::replication::{InputLayout, InputRecord, Requests, View};

use outpost_protocol::{
    Answer, ConfigError, EntityId, MatchConfig, MatchEndReason, MatchEvent, MatchId, PlayerId,
    PlayerScore, Refusal, RefusalCode, Request, TickedEvent,
};

use crate::components::{Controls, Motion, NetId, PlayerSlot, RigidBodyRef};
use crate::mode::{GameMode, ModeError, Modes, Requester};
use crate::physics::{Collisions, Physics, step_physics};

/// The fixed order of work inside one tick. Every system of every mode belongs to one.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TickSet {
    /// The clock advances and each player's next input comes into force.
    ApplyInputs,
    /// Game rules before physics: character movement, forces.
    PrePhysics,
    /// One physics step.
    Physics,
    /// Reactions to the step's collision events.
    CollisionEvents,
    /// Game rules after physics: shots, scoring, respawns.
    PostPhysics,
    /// End-of-match checks and history for lag compensation and replays.
    Record,
}

/// The match clock.
#[derive(Resource, Debug, Clone)]
pub struct MatchClock {
    /// Ticks completed; the tick being simulated during a run of the schedule.
    pub tick: u32,
    /// Ticks per second.
    pub tick_hz: u16,
    /// Seconds per tick.
    pub dt: f32,
    /// Match length in ticks.
    pub duration_ticks: u32,
}

/// Events produced during ticks, waiting for the caller to take them.
#[derive(Resource, Debug, Default)]
pub struct MatchEvents {
    pending: Vec<TickedEvent>,
}

impl MatchEvents {
    /// Records an event at a tick.
    pub fn push(&mut self, tick: u32, event: MatchEvent) {
        self.pending.push(TickedEvent { tick, event });
    }
}

/// How the match ended, once it has.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MatchOutcome(pub Option<MatchEndReason>);

/// Why the simulation refused a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration is out of bounds.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// The configuration's mode is not registered, or its schema hash is another.
    #[error(transparent)]
    Mode(#[from] ModeError),
    /// The match already has `max_players` players.
    #[error("match is full ({0} players)")]
    MatchFull(u16),
    /// The match has ended.
    #[error("match is over")]
    MatchOver,
}

/// Most requests of one player waiting for the next tick; more are refused as busy.
pub const MAX_PENDING_REQUESTS: usize = 16;
/// Request bytes a player may send per second, on average...
pub const REQUEST_BYTES_PER_SECOND: u32 = 64 * 1024;
/// ...and at once (a device uploading what it scanned when it joins).
pub const REQUEST_BURST_BYTES: u32 = 256 * 1024;

/// One running match.
pub struct Match {
    id: MatchId,
    config: MatchConfig,
    world: World,
    schedule: Schedule,
    mode: Arc<dyn GameMode>,
    players: BTreeMap<PlayerId, Entity>,
    /// Slots of one input under the mode's schema.
    input_slots: usize,
    /// The mode's requests, and those waiting for the next tick, in arrival order.
    requests: Requests,
    pending: VecDeque<(PlayerId, Request)>,
    /// Request bytes each seated player may still send now.
    request_credit: BTreeMap<PlayerId, u32>,
    /// Answers not yet taken.
    answers: Vec<(PlayerId, Answer)>,
}

/// What [`Match::push_input`] takes: an input as the mode's schema lays it out, or a
/// mode's typed input that converts to one.
pub trait IntoInput {
    /// The input as a record.
    fn into_input(self) -> InputRecord;
}

impl IntoInput for InputRecord {
    fn into_input(self) -> InputRecord {
        self
    }
}

impl std::fmt::Debug for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Match")
            .field("id", &self.id)
            .field("mode", &self.mode.name())
            .field("tick", &self.tick())
            .field("players", &self.players.len())
            .finish()
    }
}

impl Match {
    /// Creates a match of the configured mode, one of `modes` (its settings and schema
    /// hash checked, see [`Modes::resolve`]).
    pub fn new(id: MatchId, config: &MatchConfig, modes: &Modes) -> Result<Self, SimError> {
        let (mode, _) = modes.resolve(config)?;
        Self::with_mode(id, config, mode)
    }

    /// Creates a match running the given mode.
    pub fn with_mode(
        id: MatchId,
        config: &MatchConfig,
        mode: Arc<dyn GameMode>,
    ) -> Result<Self, SimError> {
        config.validate()?;
        let dt = 1.0 / f32::from(config.tick_hz);
        let mut world = World::new();
        let mut physics = Physics::default();
        physics.world.integration_parameters.dt = dt;
        world.insert_resource(physics);
        world.insert_resource(Collisions::default());
        world.insert_resource(MatchClock {
            tick: 0,
            tick_hz: config.tick_hz,
            dt,
            duration_ticks: config.duration_ticks(),
        });
        world.insert_resource(MatchEvents::default());
        world.insert_resource(MatchOutcome::default());
        world.insert_resource(ScoreLimit(0));
        world.insert_resource(EndMatch::default());
        world.insert_resource(Linger::default());
        world.insert_resource(NetIds { next: 1 });

        let mut schedule = Schedule::default();
        // One thread, and systems in a fixed order: the same inputs give the same state.
        schedule.set_executor(SingleThreadedExecutor::new());
        schedule.configure_sets(
            (
                TickSet::ApplyInputs,
                TickSet::PrePhysics,
                TickSet::Physics,
                TickSet::CollisionEvents,
                TickSet::PostPhysics,
                TickSet::Record,
            )
                .chain(),
        );
        schedule.add_systems(
            (advance_clock, apply_inputs)
                .chain()
                .in_set(TickSet::ApplyInputs),
        );
        schedule.add_systems(step_physics.in_set(TickSet::Physics));
        schedule.add_systems(check_match_end.in_set(TickSet::Record));
        let schema = mode.schema(&config.mode_config)?;
        let input_slots = InputLayout::new(&schema).slots();
        mode.setup(config, &mut world, &mut schedule)?;

        Ok(Self {
            id,
            config: config.clone(),
            world,
            schedule,
            mode,
            players: BTreeMap::new(),
            input_slots,
            requests: Requests::new(&schema),
            pending: VecDeque::new(),
            request_credit: BTreeMap::new(),
            answers: Vec::new(),
        })
    }

    /// The match id.
    pub fn id(&self) -> MatchId {
        self.id
    }

    /// The configuration it runs.
    pub fn config(&self) -> &MatchConfig {
        &self.config
    }

    /// Ticks completed.
    pub fn tick(&self) -> u32 {
        self.world.resource::<MatchClock>().tick
    }

    /// Ticks until the timer ends the match.
    pub fn ticks_left(&self) -> u32 {
        let clock = self.world.resource::<MatchClock>();
        clock.duration_ticks.saturating_sub(clock.tick)
    }

    /// How the match ended, if it has.
    pub fn outcome(&self) -> Option<MatchEndReason> {
        self.world.resource::<MatchOutcome>().0
    }

    /// Whether the match has ended.
    pub fn is_over(&self) -> bool {
        self.outcome().is_some()
    }

    /// Seats a player on team 0, or reseats one who was already here (a reconnect).
    /// Returns the entity they control.
    pub fn add_player(&mut self, player: PlayerId) -> Result<EntityId, SimError> {
        self.add_player_on_team(player, 0)
    }

    /// Seats a player on a team (as matchmaking placed them), or reseats one who was
    /// already here on the team they had. Returns the entity they control.
    pub fn add_player_on_team(&mut self, player: PlayerId, team: u8) -> Result<EntityId, SimError> {
        if self.is_over() {
            return Err(SimError::MatchOver);
        }
        let tick = self.tick();
        if let Some(&entity) = self.players.get(&player) {
            let mut entity = self.world.entity_mut(entity);
            if let Some(mut slot) = entity.get_mut::<PlayerSlot>() {
                slot.connected = true;
            }
            let net_id = entity.get::<NetId>().map(|n| n.0).unwrap_or_default();
            self.world.resource_mut::<MatchEvents>().push(
                tick,
                MatchEvent::PlayerJoined {
                    player,
                    entity: net_id,
                },
            );
            return Ok(net_id);
        }
        if self.players.len() >= usize::from(self.config.max_players) {
            return Err(SimError::MatchFull(self.config.max_players));
        }
        let net_id = self.world.resource_mut::<NetIds>().allocate();
        let entity = self
            .mode
            .spawn_player(&mut self.world, player, team, net_id);
        self.world.entity_mut(entity).insert((
            NetId(net_id),
            PlayerSlot {
                player,
                team,
                connected: true,
                score: 0,
                stats: [0; crate::MAX_STATS],
            },
            Controls::default(),
        ));
        self.players.insert(player, entity);
        self.world.resource_mut::<MatchEvents>().push(
            tick,
            MatchEvent::PlayerJoined {
                player,
                entity: net_id,
            },
        );
        Ok(net_id)
    }

    /// Marks a player's connection lost; their character stays and stands still.
    pub fn disconnect_player(&mut self, player: PlayerId) {
        let Some(&entity) = self.players.get(&player) else {
            return;
        };
        if let Some(mut controls) = self.world.get_mut::<Controls>(entity) {
            controls.clear();
            controls.current = None;
        }
        if let Some(mut slot) = self.world.get_mut::<PlayerSlot>(entity) {
            if !slot.connected {
                return;
            }
            slot.connected = false;
        }
        let tick = self.tick();
        self.world
            .resource_mut::<MatchEvents>()
            .push(tick, MatchEvent::PlayerLeft { player });
    }

    /// Removes a player and their character for good.
    pub fn remove_player(&mut self, player: PlayerId) {
        self.disconnect_player(player);
        let Some(entity) = self.players.remove(&player) else {
            return;
        };
        if let Some(&RigidBodyRef(handle)) = self.world.get::<RigidBodyRef>(entity) {
            let mut physics = self.world.resource_mut::<Physics>();
            physics.world.remove_body_with_colliders(handle, true);
        }
        self.world.despawn(entity);
        self.request_credit.remove(&player);
        self.pending.retain(|(p, _)| *p != player);
    }

    /// Players seated (connected or within their grace period).
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// Players whose connection is up.
    pub fn connected_count(&self) -> usize {
        self.players
            .values()
            .filter(|&&e| self.world.get::<PlayerSlot>(e).is_some_and(|s| s.connected))
            .count()
    }

    /// The entity a player controls.
    pub fn player_entity(&self, player: PlayerId) -> Option<EntityId> {
        let entity = *self.players.get(&player)?;
        self.world.get::<NetId>(entity).map(|n| n.0)
    }

    /// Queues an input for a player. Inputs already applied or queued are ignored, so
    /// redundant copies are harmless; inputs whose fields do not fit the mode's input
    /// layout are dropped and counted. Returns whether it was queued.
    pub fn push_input(&mut self, player: PlayerId, input: impl IntoInput) -> bool {
        let Some(&entity) = self.players.get(&player) else {
            return false;
        };
        let input = input.into_input();
        let fits = input.slots.len() == self.input_slots;
        self.world.get_mut::<Controls>(entity).is_some_and(|mut c| {
            if !fits {
                c.dropped += 1;
                return false;
            }
            c.push(input)
        })
    }

    /// A player's character motion (velocity, grounded), for replicating to its owner.
    pub fn motion(&self, player: PlayerId) -> Option<Motion> {
        let entity = *self.players.get(&player)?;
        self.world.get::<Motion>(entity).copied()
    }

    /// How many inputs of a player were applied, and how many dropped on a full queue.
    pub fn input_counts(&self, player: PlayerId) -> Option<(u64, u64)> {
        let entity = *self.players.get(&player)?;
        self.world
            .get::<Controls>(entity)
            .map(|c| (c.applied, c.dropped))
    }

    /// Inputs dropped so far across the players seated now (queue full, over the time
    /// budget, impossible spans).
    pub fn dropped_inputs(&self) -> u64 {
        // The seated players' entities, looked up (a query made for this, every tick,
        // cost more than the sum).
        self.players
            .values()
            .filter_map(|&entity| self.world.get::<Controls>(entity))
            .map(|c| c.dropped)
            .sum()
    }

    /// Sequence number of the newest input applied for a player.
    pub fn ack_input_seq(&self, player: PlayerId) -> Option<u32> {
        let entity = *self.players.get(&player)?;
        self.world
            .get::<Controls>(entity)
            .map(|c| c.last_applied_seq)
    }

    /// Queues a request of a seated player for the start of the next tick. One over
    /// the player's budget ([`MAX_PENDING_REQUESTS`] waiting, [`REQUEST_BYTES_PER_SECOND`]
    /// with bursts of [`REQUEST_BURST_BYTES`]) is refused as [`RefusalCode::Busy`] at once;
    /// every request gets exactly one answer ([`Match::drain_answers`]). Returns whether
    /// it was queued (false too for a player not in the match, who gets no answer).
    pub fn push_request(&mut self, player: PlayerId, request: Request) -> bool {
        if !self.players.contains_key(&player) {
            return false;
        }
        let waiting = self.pending.iter().filter(|(p, _)| *p == player).count();
        let credit = self
            .request_credit
            .entry(player)
            .or_insert(REQUEST_BURST_BYTES);
        let cost = request.body.len().max(1) as u32;
        let refusal = if waiting >= MAX_PENDING_REQUESTS {
            Some(format!(
                "{waiting} requests are waiting for the next tick; at most {MAX_PENDING_REQUESTS}"
            ))
        } else if *credit < cost {
            Some(format!(
                "over the request budget of {REQUEST_BYTES_PER_SECOND} bytes per second"
            ))
        } else {
            None
        };
        if let Some(detail) = refusal {
            self.answers.push((
                player,
                Answer {
                    seq: request.seq,
                    refused: Some(Refusal::new(RefusalCode::Busy, &detail)),
                },
            ));
            return false;
        }
        *credit -= cost;
        self.pending.push_back((player, request));
        true
    }

    /// The answers to requests since the last call, in order: to whom, and what.
    pub fn drain_answers(&mut self) -> Vec<(PlayerId, Answer)> {
        std::mem::take(&mut self.answers)
    }

    /// Advances the match by one tick. Does nothing once it has ended.
    pub fn step(&mut self) {
        if !self.is_over() {
            self.apply_requests();
            self.schedule.run(&mut self.world);
        }
    }

    /// Refills the players' request budgets and applies the requests that arrived
    /// since the last tick, in order.
    fn apply_requests(&mut self) {
        let refill = REQUEST_BYTES_PER_SECOND / u32::from(self.config.tick_hz);
        for credit in self.request_credit.values_mut() {
            *credit = credit.saturating_add(refill).min(REQUEST_BURST_BYTES);
        }
        while let Some((player, request)) = self.pending.pop_front() {
            let seq = request.seq;
            let from = self.players.get(&player).and_then(|&entity| {
                let net_id = self.world.get::<NetId>(entity)?.0;
                Some(Requester {
                    player,
                    entity,
                    net_id,
                })
            });
            let Some(from) = from else { continue };
            let result = match self.requests.decode(&request) {
                Ok(values) => self.mode.request(&mut self.world, from, &values),
                Err(err) => Err(Refusal::new(RefusalCode::Malformed, &err.to_string())),
            };
            self.answers.push((
                player,
                Answer {
                    seq,
                    refused: result.err(),
                },
            ));
        }
    }

    /// Ends the match now (the edge shutting down, everyone gone).
    pub fn end(&mut self, reason: MatchEndReason) {
        if self.is_over() {
            return;
        }
        let tick = self.tick();
        let scores = self.scores();
        self.world.resource_mut::<MatchOutcome>().0 = Some(reason);
        self.world
            .resource_mut::<MatchEvents>()
            .push(tick, MatchEvent::MatchEnded { reason, scores });
    }

    /// Takes the events produced since the last call, in order.
    pub fn drain_events(&mut self) -> Vec<TickedEvent> {
        std::mem::take(&mut self.world.resource_mut::<MatchEvents>().pending)
    }

    /// Standings, best first (ties: lower player id first).
    pub fn scores(&self) -> Vec<PlayerScore> {
        self.standings().into_iter().map(|s| s.score).collect()
    }

    /// Standings with the mode's stats, best first (ties: lower player id first): what
    /// a match's result reports.
    pub fn standings(&self) -> Vec<Standing> {
        let mut lines: Vec<Standing> = self
            .players
            .values()
            .filter_map(|&e| {
                let slot = self.world.get::<PlayerSlot>(e)?;
                let net_id = self.world.get::<NetId>(e)?;
                Some(Standing {
                    score: PlayerScore {
                        player: slot.player,
                        entity: net_id.0,
                        score: slot.score,
                    },
                    stats: slot.stats,
                })
            })
            .collect();
        lines.sort_by(|a, b| best_first(&a.score, &b.score));
        lines
    }

    /// The replicated entities as the mode's records (every component, owner-only ones
    /// included), sorted by id, into `out` (cleared first).
    pub fn write_records(&mut self, out: &mut View) {
        out.clear();
        self.mode.write_records(&mut self.world, out);
    }

    /// Ticks it goes on with nobody seated (the mode's [`Linger`]).
    pub fn linger_ticks(&self) -> u32 {
        self.world.get_resource::<Linger>().map_or(0, |l| l.0)
    }

    /// The mode this match runs.
    pub fn mode(&self) -> &Arc<dyn GameMode> {
        &self.mode
    }

    /// The ECS world, for modes, tools and tests.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The ECS world, mutably.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

/// One player's line in a match's result: their standing and the mode's stats for
/// them (in [`crate::GameMode::stats`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Player, character and score.
    pub score: PlayerScore,
    /// The mode's per-player counts.
    pub stats: [u32; crate::MAX_STATS],
}

/// Hands out network ids, unique within a match, in spawn order.
#[derive(Resource, Debug)]
pub struct NetIds {
    next: u32,
}

impl NetIds {
    /// The next free id.
    pub fn allocate(&mut self) -> EntityId {
        let id = EntityId(self.next);
        self.next += 1;
        id
    }
}

/// Standings, best first; ties go to the lower player id.
fn standings(scores: impl Iterator<Item = PlayerScore>) -> Vec<PlayerScore> {
    let mut scores: Vec<PlayerScore> = scores.collect();
    scores.sort_by(best_first);
    scores
}

/// The order of standings: higher score first, then lower player id.
fn best_first(a: &PlayerScore, b: &PlayerScore) -> std::cmp::Ordering {
    b.score.cmp(&a.score).then(a.player.cmp(&b.player))
}

/// A player reaching this score ends the match (0: none, the core's default). A mode
/// that wants one inserts it at setup.
#[derive(Resource, Debug, Clone, Copy)]
pub struct ScoreLimit(pub u32);

/// Ticks a match goes on with no player seated before it ends as abandoned (0, the
/// core's default: at once). A mode whose world should outlive its players for a while —
/// an AR room between visits — inserts it at setup; the host keeps ticking it, and a player
/// who joins in that time finds it as it was left.
#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct Linger(pub u32);

/// A mode's own reason to end the match (a team reaching its capture limit, say): set
/// it from a system, and the match ends at the end of the tick, with the standings, as
/// the score limit and the timer end it.
#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct EndMatch(pub Option<MatchEndReason>);

fn advance_clock(mut clock: ResMut<MatchClock>) {
    clock.tick += 1;
}

fn apply_inputs(clock: Res<MatchClock>, mut players: Query<&mut Controls>) {
    let credit = input_credit_ticks(clock.tick_hz);
    for mut controls in &mut players {
        controls.advance(credit);
    }
}

/// Most input ticks a player may bank beyond the clock: a quarter of a second, and at
/// least two of the longest inputs, so a backlog after a burst of loss is worked off.
pub fn input_credit_ticks(tick_hz: u16) -> i32 {
    (i32::from(tick_hz) / 4).max(2 * i32::from(outpost_protocol::MAX_INPUT_TICKS))
}

fn check_match_end(
    clock: Res<MatchClock>,
    limit: Res<ScoreLimit>,
    asked: Res<EndMatch>,
    players: Query<(&PlayerSlot, &NetId)>,
    mut outcome: ResMut<MatchOutcome>,
    mut events: ResMut<MatchEvents>,
) {
    if outcome.0.is_some() {
        return;
    }
    let reason = if let Some(reason) = asked.0 {
        reason
    } else if limit.0 > 0 && players.iter().any(|(slot, _)| slot.score >= limit.0) {
        MatchEndReason::ScoreLimit
    } else if clock.tick >= clock.duration_ticks {
        MatchEndReason::TimeUp
    } else {
        return;
    };
    let scores = standings(players.iter().map(|(slot, id)| PlayerScore {
        player: slot.player,
        entity: id.0,
        score: slot.score,
    }));
    outcome.0 = Some(reason);
    events.push(clock.tick, MatchEvent::MatchEnded { reason, scores });
}
