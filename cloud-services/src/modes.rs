//! Game modes as the cloud knows them: how matches are made, what a match is configured
//! with, and which leaderboards its results feed.

use std::time::Duration;

use outpost_protocol::MatchConfig;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::matchmaking::{Expansion, MatchRules};
use crate::store::BoardOp;

/// What a board ranks, from each player's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    /// The player's score in the match.
    Score,
    /// 1 for a player on the winning team (or the winner of a free-for-all), else 0.
    Wins,
    /// One of the mode's own per-player stats, by name (0 for a player whose result
    /// does not list it).
    Named(String),
}

/// A board's time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Never resets.
    AllTime,
    /// Resets at 00:00 UTC; kept 7 days after.
    Daily,
    /// Resets Monday 00:00 UTC; kept 28 days after.
    Weekly,
    /// Resets when the configured season changes; kept.
    Season,
}

impl Period {
    /// The key of the period holding `now_ms` (e.g. `d20418`: day 20,418 since the Unix
    /// epoch; `w2917`: the 2,917th Monday-to-Sunday week) and when its board expires
    /// (Unix seconds, 0 for never).
    pub fn key(self, now_ms: u64, season: &str) -> (String, u64) {
        const DAY: u64 = 86_400;
        let day = now_ms / 1000 / DAY;
        match self {
            Self::AllTime => ("all".into(), 0),
            Self::Daily => (format!("d{day}"), (day + 1 + 7) * DAY),
            Self::Weekly => {
                // 1970-01-01 was a Thursday: weeks counted from Monday 1969-12-29.
                let week = (day + 3) / 7;
                (format!("w{week}"), ((week + 1) * 7 - 3 + 28) * DAY)
            }
            Self::Season => (format!("s{season}"), 0),
        }
    }
}

/// One leaderboard a mode's results feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BoardConfig {
    /// Name, unique across modes (`a-z`, `0-9`, `-`).
    pub name: String,
    /// What it ranks.
    pub stat: Stat,
    /// How a result combines with the standing entry.
    pub op: BoardOp,
    /// Windows kept.
    pub periods: Vec<Period>,
}

/// A game mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeConfig {
    /// Name players ask for, e.g. `arena`.
    pub name: String,
    /// How matches are made.
    pub rules: MatchRules,
    /// The match every placement starts (its seed is drawn per match and `max_players`
    /// is set to the match size).
    pub match_config: MatchConfig,
    /// How long a ticket searches before it expires.
    pub ticket_ttl: Duration,
    /// Boards the results feed.
    pub boards: Vec<BoardConfig>,
}

impl ModeConfig {
    /// A free-for-all of `players`, matches of `match_seconds`, of the game mode
    /// `match_config` names (the template every placement starts from: its mode
    /// settings and schema hash come from the mode, see `outpost_sim::Modes::config`).
    /// The queue is named after the mode; its boards are `MODE-best` (best score: all
    /// time, daily, weekly, season), `MODE-total` (score summed, all time) and
    /// `MODE-wins` (wins, all time and season).
    pub fn free_for_all(match_config: MatchConfig, players: usize, match_seconds: u32) -> Self {
        Self::teams(match_config, 1, players, match_seconds)
    }

    /// Matches of `teams` teams of `team_size` (parties kept whole on one team, teams
    /// balanced by rating), of `match_seconds`, of the mode `match_config` names. Each
    /// player's token carries their team. A team's score is the sum of its players'
    /// (ranked by it for ratings and wins); the boards are those of
    /// [`ModeConfig::free_for_all`]: `MODE-best`, `MODE-total`, `MODE-wins` (a player on
    /// the winning team wins).
    pub fn teams(
        match_config: MatchConfig,
        teams: usize,
        team_size: usize,
        match_seconds: u32,
    ) -> Self {
        let name = match_config.mode.clone();
        let players = teams.max(1) * team_size.max(1);
        Self {
            rules: MatchRules {
                teams: teams.max(1),
                team_size: team_size.max(1),
                steps: vec![
                    Expansion {
                        after_ms: 0,
                        rating_window: 4.0,
                        max_ping_ms: 80,
                    },
                    Expansion {
                        after_ms: 5_000,
                        rating_window: 8.0,
                        max_ping_ms: 120,
                    },
                    Expansion {
                        after_ms: 10_000,
                        rating_window: f64::INFINITY,
                        max_ping_ms: 200,
                    },
                ],
            },
            match_config: MatchConfig {
                duration_s: match_seconds,
                max_players: players.clamp(1, 128) as u16,
                ..match_config
            },
            ticket_ttl: Duration::from_secs(120),
            boards: vec![
                BoardConfig {
                    name: format!("{name}-best"),
                    stat: Stat::Score,
                    op: BoardOp::Best,
                    periods: vec![
                        Period::AllTime,
                        Period::Daily,
                        Period::Weekly,
                        Period::Season,
                    ],
                },
                BoardConfig {
                    name: format!("{name}-total"),
                    stat: Stat::Score,
                    op: BoardOp::Incr,
                    periods: vec![Period::AllTime],
                },
                BoardConfig {
                    name: format!("{name}-wins"),
                    stat: Stat::Wins,
                    op: BoardOp::Incr,
                    periods: vec![Period::AllTime, Period::Season],
                },
            ],
            name,
        }
    }
}
