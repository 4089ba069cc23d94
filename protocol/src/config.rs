//! Match configuration: what the cloud decides about a match and the edge obeys.

use serde::{Deserialize, Serialize};
use wincode::config::Configuration;
use wincode::containers;
use wincode::len::BincodeLen;
use wincode::{SchemaRead, SchemaWrite};

/// Longest mode name, bytes.
pub const MAX_MODE_NAME: usize = 32;
/// Most bytes of a mode's own settings ([`MatchConfig::mode_config`]).
pub const MAX_MODE_CONFIG: usize = 1024;

type ModeConfigLen = BincodeLen<MAX_MODE_CONFIG>;
/// The encoding of mode settings: the wire's, allocations capped at their bound.
pub type ModeWire = Configuration<true, MAX_MODE_CONFIG>;

/// How a match is played. Carried inside the signed connect token, so the edge can create
/// the match from the first token it sees without asking the cloud.
///
/// The core's settings are fields; the mode's own are `mode_config`, bytes the mode
/// encodes and validates (typed on its side, see [`encode_mode_config`]). `schema_hash`
/// is the hash of the mode's schema for those settings: an edge or a client whose build
/// of the mode describes other state refuses the match instead of misreading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The game mode's registered name: 1 to [`MAX_MODE_NAME`] bytes of
    /// `[a-z][a-z0-9_]*` (the schema's `mode`).
    pub mode: String,
    /// Simulation rate in ticks per second. Default 60; 10..=240.
    pub tick_hz: u16,
    /// Snapshots per second sent to each player. Default 30; must divide `tick_hz`.
    pub snapshot_hz: u16,
    /// Match length in seconds. Default 300; 5..=7200.
    pub duration_s: u32,
    /// Most players at once. Default 16; 1..=128.
    pub max_players: u16,
    /// Furthest back a shot is rewound for lag compensation, milliseconds. Default 200;
    /// at most 1000.
    pub max_rewind_ms: u16,
    /// Seed for the level layout. Same seed, same level.
    pub seed: u64,
    /// [`crate::schema::ModeSchema::hash`] of the mode's schema under `mode_config`.
    pub schema_hash: u64,
    /// The mode's own settings, as the mode encodes them; at most [`MAX_MODE_CONFIG`]
    /// bytes.
    #[serde(with = "serde_bytes_hex")]
    #[wincode(with = "containers::Vec<u8, ModeConfigLen>")]
    pub mode_config: Vec<u8>,
}

impl MatchConfig {
    /// A match of `mode` with the core's defaults, the mode's settings empty and no
    /// schema hash: a mode fills those (e.g. `outpost_sim::Modes::config`).
    pub fn new(mode: &str) -> Self {
        Self {
            mode: mode.into(),
            tick_hz: 60,
            snapshot_hz: 30,
            duration_s: 300,
            max_players: 16,
            max_rewind_ms: 200,
            seed: 0,
            schema_hash: 0,
            mode_config: Vec::new(),
        }
    }
}

/// A mode's typed settings as [`MatchConfig::mode_config`] bytes (bincode layout, like
/// every message).
pub fn encode_mode_config<T: SchemaWrite<ModeWire, Src = T>>(settings: &T) -> Vec<u8> {
    wincode::config::serialize(settings, ModeWire::new()).unwrap_or_default()
}

/// [`MatchConfig::mode_config`] bytes as a mode's typed settings; every byte must be
/// used.
pub fn decode_mode_config<T: for<'de> SchemaRead<'de, ModeWire, Dst = T>>(
    bytes: &[u8],
) -> Result<T, ConfigError> {
    if bytes.len() > MAX_MODE_CONFIG {
        return Err(ConfigError::new("mode_config", "longer than 1024 bytes"));
    }
    wincode::config::deserialize_exact(bytes, ModeWire::new())
        .map_err(|_| ConfigError::new("mode_config", "does not decode as the mode's settings"))
}

/// `mode_config` in JSON (and other human-readable formats) as a lowercase hex string;
/// in binary formats as the bytes, as on the wire.
mod serde_bytes_hex {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return bytes.serialize(s);
        }
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if !d.is_human_readable() {
            return Vec::<u8>::deserialize(d);
        }
        let text = String::deserialize(d)?;
        if !text.len().is_multiple_of(2) || text.len() > 2 * super::MAX_MODE_CONFIG {
            return Err(serde::de::Error::custom(
                "mode_config: even-length hex, at most 1024 bytes",
            ));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

/// A match configuration outside its documented bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("match config field `{field}` is out of bounds: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What the bounds are.
    pub reason: &'static str,
}

impl ConfigError {
    /// An error in `field`.
    pub fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}

/// Most per-player stats a mode counts and a match's result reports beside each score.
pub const MAX_STATS: usize = 8;

/// Whether `name` may name a mode or a mode's stat: 1..=32 bytes ([`MAX_MODE_NAME`]) of
/// `[a-z][a-z0-9_]*`.
pub fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_MODE_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether a mode's stat names are within bounds: at most [`MAX_STATS`], each a valid
/// [`is_name`], none twice.
pub fn stats_are_valid<S: AsRef<str>>(names: &[S]) -> bool {
    names.len() <= MAX_STATS
        && names.iter().enumerate().all(|(i, name)| {
            is_name(name.as_ref()) && !names[..i].iter().any(|n| n.as_ref() == name.as_ref())
        })
}

impl MatchConfig {
    /// Checks every core field against its documented bounds (the mode checks its own
    /// settings, see [`decode_mode_config`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, field, reason| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError { field, reason })
            }
        };
        check(
            (10..=240).contains(&self.tick_hz),
            "tick_hz",
            "must be 10..=240",
        )?;
        check(
            self.snapshot_hz >= 1
                && self.snapshot_hz <= self.tick_hz
                && self.tick_hz.is_multiple_of(self.snapshot_hz),
            "snapshot_hz",
            "must divide tick_hz",
        )?;
        check(
            (5..=7200).contains(&self.duration_s),
            "duration_s",
            "must be 5..=7200",
        )?;
        check(
            (1..=128).contains(&self.max_players),
            "max_players",
            "must be 1..=128",
        )?;
        check(
            self.max_rewind_ms <= 1000,
            "max_rewind_ms",
            "must be at most 1000",
        )?;
        check(
            is_name(&self.mode),
            "mode",
            "must be 1..=32 bytes of [a-z][a-z0-9_]*",
        )?;
        check(
            self.mode_config.len() <= MAX_MODE_CONFIG,
            "mode_config",
            "must be at most 1024 bytes",
        )?;
        Ok(())
    }

    /// Ticks between two snapshots.
    pub fn ticks_per_snapshot(&self) -> u32 {
        u32::from(self.tick_hz / self.snapshot_hz.max(1)).max(1)
    }

    /// Length of the match in ticks.
    pub fn duration_ticks(&self) -> u32 {
        self.duration_s.saturating_mul(u32::from(self.tick_hz))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression test: a snapshot rate that does not divide the tick rate was accepted,
    /// and the edge then sent snapshots at another rate than the one configured (every
    /// `tick_hz / snapshot_hz` ticks, rounded down).
    #[test]
    fn a_snapshot_rate_that_does_not_divide_the_tick_rate_is_refused() {
        let config = |tick_hz, snapshot_hz| MatchConfig {
            tick_hz,
            snapshot_hz,
            ..MatchConfig::new("test")
        };
        for (tick_hz, snapshot_hz) in [(60, 40), (60, 0), (30, 60), (64, 30)] {
            let err = config(tick_hz, snapshot_hz)
                .validate()
                .expect_err("refused");
            assert_eq!(err.field, "snapshot_hz", "{tick_hz}/{snapshot_hz}");
        }
        for (tick_hz, snapshot_hz) in [(60, 30), (60, 60), (60, 20), (240, 60), (30, 10)] {
            assert_eq!(config(tick_hz, snapshot_hz).validate(), Ok(()));
        }
    }
}
