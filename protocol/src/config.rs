//! Match configuration: what the cloud decides about a match and the edge obeys.

use serde::{Deserialize, Serialize};
use wincode::{SchemaRead, SchemaWrite};

/// The game mode a match runs.
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
#[serde(rename_all = "snake_case")]
pub enum GameModeId {
    /// Free-for-all arena: characters, pushable props, hitscan weapons, score on hits.
    #[default]
    Arena,
}

/// How a match is played. Carried inside the signed connect token, so the edge can create
/// the match from the first token it sees without asking the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// Game mode.
    pub mode: GameModeId,
    /// Simulation rate in ticks per second. Default 60; 10..=240.
    pub tick_hz: u16,
    /// Snapshots per second sent to each player. Default 30; must divide `tick_hz`.
    pub snapshot_hz: u16,
    /// Match length in seconds. Default 300; 5..=7200.
    pub duration_s: u32,
    /// Most players at once. Default 16; 1..=128.
    pub max_players: u16,
    /// A player reaching this score ends the match; 0 means no limit. Default 25.
    pub score_limit: u32,
    /// Dynamic props (boxes) in the arena. Default 40; at most 4096.
    pub props: u16,
    /// Half the side of the square arena floor, in metres. Default 40; 8..=1000.
    /// Everything replicated stays inside these bounds.
    pub arena_half_extent: f32,
    /// Furthest back a shot is rewound for lag compensation, milliseconds. Default 200;
    /// at most 1000.
    pub max_rewind_ms: u16,
    /// Seed for the level layout. Same seed, same level.
    pub seed: u64,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            mode: GameModeId::Arena,
            tick_hz: 60,
            snapshot_hz: 30,
            duration_s: 300,
            max_players: 16,
            score_limit: 25,
            props: 40,
            arena_half_extent: 40.0,
            max_rewind_ms: 200,
            seed: 0,
        }
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

impl MatchConfig {
    /// Checks every field against its documented bounds.
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
        check(self.props <= 4096, "props", "must be at most 4096")?;
        check(
            self.arena_half_extent.is_finite() && (8.0..=1000.0).contains(&self.arena_half_extent),
            "arena_half_extent",
            "must be 8..=1000 metres",
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
            ..MatchConfig::default()
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
