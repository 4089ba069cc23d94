//! The seam between the simulation core and game rules, and the registry of modes a
//! process hosts.

use std::collections::BTreeMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use outpost_protocol::config::ModeWire;
use outpost_protocol::replication::{Fields, InputRecord, RequestValues, View};
use outpost_protocol::schema::ModeSchema;
use outpost_protocol::{
    ConfigError, EntityId, MatchConfig, MatchEvent, PlayerId, Refusal, RefusalCode, RejectCode,
    decode_mode_config, encode_mode_config,
};

use crate::game::SimError;

/// A game mode: its settings, its schema, its world setup, its systems and its
/// characters.
///
/// The core owns the clock, the input queues, the physics step and replication; a mode
/// adds what makes a game. Systems a mode installs go into the [`crate::TickSet`]s, which
/// run in a fixed order every tick.
pub trait GameMode: Send + Sync + 'static {
    /// Short stable name, the one [`MatchConfig::mode`] carries (`[a-z][a-z0-9_]*`).
    fn name(&self) -> &'static str;

    /// The mode's default settings, encoded as [`MatchConfig::mode_config`] bytes.
    fn default_config(&self) -> Vec<u8>;

    /// Snapshots a second the mode's matches are made with by default ([`Modes::config`]),
    /// when not the core's 30: the AR room sends poses at the rate devices send them.
    fn snapshot_hz(&self) -> Option<u16> {
        None
    }

    /// Validates the mode's settings and returns the schema of a match played with them:
    /// its replicated components, its input and its events.
    fn schema(&self, mode_config: &[u8]) -> Result<ModeSchema, ConfigError>;

    /// Builds the level and installs the mode's systems and resources.
    fn setup(
        &self,
        config: &MatchConfig,
        world: &mut World,
        schedule: &mut Schedule,
    ) -> Result<(), SimError>;

    /// Spawns a character for a player who joins, on `team` (as matchmaking placed them:
    /// 0 in a free-for-all; a mode with fewer teams than the number given maps it onto
    /// its own). The core has already reserved its network id and will add the shared
    /// player components ([`crate::PlayerSlot`], [`crate::Controls`], [`crate::NetId`]) to
    /// the returned entity.
    fn spawn_player(
        &self,
        world: &mut World,
        player: PlayerId,
        team: u8,
        net_id: EntityId,
    ) -> Entity;

    /// Writes every replicated entity as a record of the mode's schema into `out`
    /// (empty), sorted by id: its components and their quantized fields, owner-only
    /// components included (the core keeps those from everyone but the owner).
    fn write_records(&self, world: &mut World, out: &mut View);

    /// The client's prediction of what a player owns in a match of `config`: the
    /// mode's own movement, rerun on the client for each input the player sends. `None`
    /// (the default) leaves the player's entity to interpolation like any other.
    fn prediction(&self, config: &MatchConfig, own: EntityId) -> Option<Box<dyn Prediction>> {
        let _ = (config, own);
        None
    }

    /// Changes one of the mode's settings by name, from text (what `outpost dev --set
    /// NAME=VALUE` passes): `mode_config` with it changed, validated. The default knows
    /// no settings. [`parse_setting`] reads a value.
    fn set(&self, mode_config: &[u8], name: &str, value: &str) -> Result<Vec<u8>, SettingError> {
        let _ = (mode_config, value);
        Err(SettingError::Unknown {
            name: name.into(),
            known: &[],
        })
    }

    /// Names of the per-player stats the mode counts in [`crate::PlayerSlot::stats`], in
    /// that order (at most [`crate::MAX_STATS`], each 1..=32 bytes of `[a-z][a-z0-9_]*`,
    /// unique: see [`outpost_protocol::stats_are_valid`]): reported beside each player's score in the
    /// match's result, by name, for the cloud's boards. None by default.
    fn stats(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies a request a player sent (one of the schema's [`ModeSchema::requests`],
    /// decoded by it): at the start of a tick, before the tick's systems, in the order
    /// the players sent them. A refusal is answered to the sender and must leave the
    /// world as it was. The default takes none.
    fn request(
        &self,
        world: &mut World,
        from: Requester,
        request: &RequestValues<'_>,
    ) -> Result<(), Refusal> {
        let _ = (world, from);
        Err(Refusal::new(
            RefusalCode::Unsupported,
            &format!(
                "mode `{}` takes no `{}` requests",
                self.name(),
                request.name
            ),
        ))
    }

    /// A scripted player for a match of `config`, its choices drawn from `seed`: what
    /// `outpost dev` and `outpost loadtest` play the mode with. `None` (the default): the
    /// mode has no bot, and those tools refuse it.
    fn bot(&self, config: &MatchConfig, seed: u64) -> Option<Box<dyn Bot>> {
        let _ = (config, seed);
        None
    }
}

/// Who sent a request ([`GameMode::request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    /// The player.
    pub player: PlayerId,
    /// Their entity in the world.
    pub entity: Entity,
    /// Its network id.
    pub net_id: EntityId,
}

/// A mode's setting that could not be set from text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// The mode has no setting of that name.
    #[error("no setting `{name}` (settings: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    Unknown {
        /// The name asked for.
        name: String,
        /// The mode's settings.
        known: &'static [&'static str],
    },
    /// The value does not read as the setting's type.
    #[error("`{name}`: cannot read `{value}`: {reason}")]
    Value {
        /// The setting.
        name: String,
        /// The text given.
        value: String,
        /// Why.
        reason: String,
    },
    /// The value reads, but is out of the setting's bounds.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// A mode's typed settings, carried as [`MatchConfig::mode_config`]: their bounds, and
/// setting one by name from text. A mode's [`GameMode::default_config`] and
/// [`GameMode::set`] are then `T::default().encode()` and `T::set_encoded(..)`.
pub trait ModeSettings:
    Sized
    + Default
    + wincode::SchemaWrite<ModeWire, Src = Self>
    + for<'de> wincode::SchemaRead<'de, ModeWire, Dst = Self>
{
    /// The settings' names, as [`ModeSettings::set_one`] takes them.
    const NAMES: &'static [&'static str];

    /// Checks every field against its documented bounds.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Changes the setting `name` from text ([`parse_setting`] reads a value;
    /// [`ModeSettings::unknown`] answers a name it does not have). Bounds are checked
    /// after, by [`ModeSettings::validate`].
    fn set_one(&mut self, name: &str, value: &str) -> Result<(), SettingError>;

    /// The error for a setting these do not have.
    fn unknown(name: &str) -> SettingError {
        SettingError::Unknown {
            name: name.into(),
            known: Self::NAMES,
        }
    }

    /// Settings from their bytes, validated.
    fn decode(bytes: &[u8]) -> Result<Self, ConfigError> {
        let settings: Self = decode_mode_config(bytes)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings of a match, validated.
    fn of(config: &MatchConfig) -> Result<Self, ConfigError> {
        Self::decode(&config.mode_config)
    }

    /// The settings as [`MatchConfig::mode_config`] bytes.
    fn encode(&self) -> Vec<u8> {
        encode_mode_config(self)
    }

    /// `mode_config` with the setting `name` changed from text, validated.
    fn set_encoded(mode_config: &[u8], name: &str, value: &str) -> Result<Vec<u8>, SettingError> {
        let mut settings = Self::decode(mode_config)?;
        settings.set_one(name, value)?;
        settings.validate()?;
        Ok(settings.encode())
    }
}

/// Reads a setting's value from text, for [`GameMode::set`].
pub fn parse_setting<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, SettingError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| SettingError::Value {
            name: name.into(),
            value: value.into(),
            reason: e.to_string(),
        })
}

/// What a bot sees before each input: the newest view and the player's own entity, as a
/// game client would draw them.
pub struct Sight<'a> {
    /// Reads the view's records by name or typed.
    pub fields: &'a Fields,
    /// The newest view received (owner-only components included for the own entity).
    pub view: &'a View,
    /// The player's entity.
    pub own: EntityId,
    /// Where the own entity is predicted to be, when the mode predicts it.
    pub own_position: Option<[f32; 3]>,
    /// Where another entity is drawn now (interpolated at the render tick), when known.
    pub drawn: &'a dyn Fn(EntityId) -> Option<[f32; 3]>,
}

/// A request a bot sends ([`Bot::next_request`]): the request's name, its field values
/// and its lists' items, as [`outpost_protocol::replication::Requests::encode`] takes
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct BotRequest {
    /// The request.
    pub name: &'static str,
    /// Its fields' values.
    pub values: Vec<outpost_protocol::schema::Value>,
    /// Its lists, each a list of items.
    pub lists: Vec<Vec<Vec<outpost_protocol::schema::Value>>>,
}

/// A mode's scripted player ([`GameMode::bot`]): one input per tick from what it sees.
pub trait Bot: Send + 'static {
    /// The next input (laid out by the mode's schema), or `None` to stand still (its
    /// own entity not in view yet, say).
    fn next_input(&mut self, sight: &Sight<'_>) -> Option<InputRecord>;

    /// A request to send before the next input, if any (laid out by the mode's
    /// schema): `(name, field values, lists)`. Asked once per tick, before
    /// [`Bot::next_input`]. None by default.
    fn next_request(&mut self, sight: &Sight<'_>) -> Option<BotRequest> {
        let _ = sight;
        None
    }

    /// The edge answered one of this bot's requests.
    fn answered(&mut self, answer: &outpost_protocol::Answer) {
        let _ = answer;
    }

    /// A match event arrived.
    fn observe(&mut self, event: &MatchEvent, own: EntityId) {
        let _ = (event, own);
    }

    /// Points this bot scored as its mode counts them (the arena's hits, ctf's captures),
    /// from the events it observed.
    fn points(&self) -> u32 {
        0
    }
}

/// A mode's client-side prediction: the systems of the mode that move what the player
/// owns, run on the client ahead of the server.
///
/// The SDK drives it: after each snapshot that acknowledges new inputs it calls
/// [`Prediction::reset`] with the server's view and replays the inputs the server has not
/// applied yet through [`Prediction::apply`]; it measures the prediction's error and
/// smooths corrections itself. The prediction only has to move the player's entity the
/// way the edge will, given the same inputs.
pub trait Prediction: Send + 'static {
    /// Starts again from the server's state: `view` is what the player sees (owner-only
    /// components included), `own` the player's entity. Returns false if the view does
    /// not hold what the prediction needs (the own entity out of view, say); the SDK
    /// then tries again with the next snapshot.
    fn reset(&mut self, fields: &Fields, view: &View, own: EntityId) -> bool;

    /// Applies one input the player sent, as the edge will apply it (once per tick the
    /// input stands for).
    fn apply(&mut self, input: &InputRecord);

    /// The own entity's predicted position, metres.
    fn position(&self) -> [f32; 3];

    /// Its predicted velocity, metres per second.
    fn velocity(&self) -> [f32; 3];
}

/// Why a match configuration cannot be hosted by a registry's modes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModeError {
    /// No mode of that name is registered.
    #[error("no game mode `{0}` is registered here")]
    Unknown(String),
    /// The core's or the mode's settings are out of bounds.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// The mode's schema under these settings hashes otherwise than the configuration
    /// says: another build of the mode made it.
    #[error("schema hash {expected:016x} was asked for; this build of `{mode}` has {actual:016x}")]
    SchemaMismatch {
        /// The mode.
        mode: String,
        /// The configuration's hash.
        expected: u64,
        /// This build's.
        actual: u64,
    },
    /// A setting given as text could not be set (see [`Modes::configure`]).
    #[error("`{mode}`: {error}")]
    Setting {
        /// The mode.
        mode: String,
        /// What was wrong.
        error: SettingError,
    },
}

impl ModeError {
    /// The code an edge refuses a connection with for this error.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Self::Unknown(_) => RejectCode::UnknownMode,
            Self::InvalidConfig(_) | Self::Setting { .. } => RejectCode::InvalidConfig,
            Self::SchemaMismatch { .. } => RejectCode::SchemaMismatch,
        }
    }
}

/// The game modes a process hosts, by name.
#[derive(Clone, Default)]
pub struct Modes {
    modes: BTreeMap<&'static str, Arc<dyn GameMode>>,
}

impl std::fmt::Debug for Modes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.modes.keys()).finish()
    }
}

impl Modes {
    /// No modes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a mode (replacing one of the same name).
    pub fn with(mut self, mode: impl GameMode) -> Self {
        self.modes.insert(mode.name(), Arc::new(mode));
        self
    }

    /// The mode of a name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn GameMode>> {
        self.modes.get(name)
    }

    /// Names registered, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.modes.keys().copied()
    }

    /// A configuration for `mode` with the core's defaults (the mode's snapshot rate, if
    /// it has one), the given mode settings
    /// (its defaults if `None`) and their schema's hash.
    pub fn config(
        &self,
        mode: &str,
        mode_config: Option<Vec<u8>>,
    ) -> Result<MatchConfig, ModeError> {
        let found = self
            .get(mode)
            .ok_or_else(|| ModeError::Unknown(mode.into()))?;
        let mut config = MatchConfig::new(mode);
        if let Some(hz) = found.snapshot_hz() {
            config.snapshot_hz = hz;
        }
        config.mode_config = mode_config.unwrap_or_else(|| found.default_config());
        config.schema_hash = found.schema(&config.mode_config)?.hash();
        config.validate()?;
        Ok(config)
    }

    /// [`Modes::config`] with the mode's defaults changed by `settings` (name, value as
    /// text), in order, through [`GameMode::set`].
    pub fn configure(
        &self,
        mode: &str,
        settings: &[(&str, &str)],
    ) -> Result<MatchConfig, ModeError> {
        let found = self
            .get(mode)
            .ok_or_else(|| ModeError::Unknown(mode.into()))?;
        let mut mode_config = found.default_config();
        for (name, value) in settings {
            mode_config =
                found
                    .set(&mode_config, name, value)
                    .map_err(|error| ModeError::Setting {
                        mode: mode.into(),
                        error,
                    })?;
        }
        self.config(mode, Some(mode_config))
    }

    /// The mode and schema a configuration asks for, after checking that the mode is
    /// registered, that the core's and the mode's settings are in bounds and that this
    /// build's schema hashes as the configuration says.
    pub fn resolve(
        &self,
        config: &MatchConfig,
    ) -> Result<(Arc<dyn GameMode>, ModeSchema), ModeError> {
        let mode = self
            .get(&config.mode)
            .ok_or_else(|| ModeError::Unknown(config.mode.clone()))?;
        config.validate()?;
        let schema = mode.schema(&config.mode_config)?;
        // A mode's own schema out of bounds is the mode's bug; refuse its matches rather
        // than lay out records from it.
        schema
            .validate()
            .map_err(|_| ConfigError::new("mode", "the mode's schema is not valid"))?;
        if !outpost_protocol::stats_are_valid(mode.stats()) {
            return Err(ConfigError::new("mode", "the mode's stat names are not valid").into());
        }
        let actual = schema.hash();
        if actual != config.schema_hash {
            return Err(ModeError::SchemaMismatch {
                mode: config.mode.clone(),
                expected: config.schema_hash,
                actual,
            });
        }
        Ok((Arc::clone(mode), schema))
    }
}
