//! The game modes the `outpost` command hosts, and match templates built from their
//! command-line settings.

use clap::Args;
use outpost_arena::{self as arena, ArenaConfig};
use outpost_cloud::modes::{BoardConfig, ModeConfig, Period, Stat};
use outpost_cloud::store::BoardOp;
use outpost_protocol::MatchConfig;
use outpost_sim::Modes;

/// Every mode this binary links: what its edges host and its cloud matchmakes.
pub fn registry() -> Modes {
    outpost_arena::modes().with(outpost_ctf::Ctf)
}

/// How the cloud matchmakes a mode of this binary, for matches of `players` lasting
/// `match_seconds`: capture the flag in two teams of half each (parties whole, teams
/// balanced by rating, each token naming its team), every other mode as a free-for-all.
/// Besides the boards every mode has (`MODE-best`, `-total`, `-wins`), capture the flag
/// ranks the flags each player returned home (`ctf-returns`, all time and season).
pub fn cloud_mode(template: MatchConfig, players: usize, match_seconds: u32) -> ModeConfig {
    match template.mode.as_str() {
        "ctf" => {
            let mut mode =
                ModeConfig::teams(template, 2, players.div_ceil(2).max(1), match_seconds);
            mode.boards.push(BoardConfig {
                name: "ctf-returns".into(),
                stat: Stat::Named("returns".into()),
                op: BoardOp::Incr,
                periods: vec![Period::AllTime, Period::Season],
            });
            mode
        }
        _ => ModeConfig::free_for_all(template, players, match_seconds),
    }
}

/// The arena's own settings, as flags (they apply with `--mode arena` only).
#[derive(Args, Debug, Clone, Default)]
pub struct ArenaArgs {
    /// Arena: a player reaching this score ends the match; 0 for none (the match runs its
    /// full length). Default 0.
    #[arg(long)]
    pub score_limit: Option<u32>,
    /// Arena: dynamic props. Default 40.
    #[arg(long)]
    pub props: Option<u16>,
}

/// The match template of `mode` with the core's defaults: its settings from the flags
/// (the arena's) or its defaults, validated, its schema hash filled.
pub fn template(modes: &Modes, mode: &str, flags: &ArenaArgs) -> anyhow::Result<MatchConfig> {
    if mode == "arena" {
        let settings = ArenaConfig {
            score_limit: flags.score_limit.unwrap_or(0),
            props: flags.props.unwrap_or(ArenaConfig::default().props),
            ..ArenaConfig::default()
        };
        settings.validate()?;
        return Ok(arena::config(&settings));
    }
    if flags.score_limit.is_some() || flags.props.is_some() {
        anyhow::bail!("--score-limit and --props are the arena's settings, not `{mode}`'s");
    }
    modes.config(mode, None).map_err(|err| {
        let known: Vec<&str> = modes.names().collect();
        anyhow::anyhow!("{err} (modes: {})", known.join(", "))
    })
}
