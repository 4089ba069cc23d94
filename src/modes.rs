//! The game modes the `outpost` command hosts, and match templates built from their
//! command-line settings.

use clap::Args;
use outpost_cloud::modes::{BoardConfig, ModeConfig, Period, Stat};
use outpost_cloud::store::BoardOp;
use outpost_protocol::MatchConfig;
use outpost_sim::Modes;

/// Every mode this binary links: what its edges host, what `outpost dev` and `outpost
/// loadtest` can play, and what its cloud can matchmake (`outpost cloud --modes`).
pub fn registry() -> Modes {
    outpost_arena::modes()
        .with(outpost_ctf::Ctf)
        .with(outpost_ar::Ar)
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

/// A mode setting from the command line: `NAME=VALUE` for the mode being run, or
/// `MODE.NAME=VALUE` to name the mode (needed where several run, as in `outpost cloud`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The mode it is for, if named.
    pub mode: Option<String>,
    /// The setting.
    pub name: String,
    /// Its value, as text.
    pub value: String,
}

impl std::str::FromStr for Setting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected NAME=VALUE or MODE.NAME=VALUE"))?;
        let (mode, name) = match key.split_once('.') {
            Some((mode, name)) => (Some(mode.to_owned()), name),
            None => (None, key),
        };
        if name.is_empty() || mode.as_deref().is_some_and(str::is_empty) {
            return Err(format!("`{text}`: expected NAME=VALUE or MODE.NAME=VALUE"));
        }
        Ok(Self {
            mode,
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// A mode's settings, as flags: `--set` for any mode, and the arena's own two.
#[derive(Args, Debug, Clone, Default)]
pub struct ModeArgs {
    /// Arena: a player reaching this score ends the match; 0 for none (the match runs its
    /// full length). Default 0. (`--set score_limit=N`.)
    #[arg(long)]
    pub score_limit: Option<u32>,
    /// Arena: dynamic props. Default 40. (`--set props=N`.)
    #[arg(long)]
    pub props: Option<u16>,
    /// A setting of the mode, `NAME=VALUE` (or `MODE.NAME=VALUE`), repeatable: the
    /// arena's `score_limit`, `props`, `half_extent`; ctf's `captures_to_win`,
    /// `return_s`, `half_extent`; ar's `anchor`, `half_x`, `half_z`, `height`,
    /// `objects`, `holder_timeout_s` and the pose bounds (docs/ar.md). Checked against
    /// the mode's bounds.
    #[arg(long = "set", value_name = "[MODE.]NAME=VALUE")]
    pub set: Vec<Setting>,
}

/// The match template of `mode` with the core's defaults and its settings from the
/// flags (the arena's score limit is off unless given), validated, its schema hash
/// filled. `running` lists every mode the command runs: a `--set` naming one of them
/// applies to it alone; one naming none, or a bare `NAME=VALUE` where several run, is
/// refused.
pub fn template(
    modes: &Modes,
    mode: &str,
    flags: &ModeArgs,
    running: &[&str],
) -> anyhow::Result<MatchConfig> {
    let mut settings: Vec<(String, String)> = Vec::new();
    if mode == "arena" {
        settings.push((
            "score_limit".into(),
            flags.score_limit.unwrap_or(0).to_string(),
        ));
        if let Some(props) = flags.props {
            settings.push(("props".into(), props.to_string()));
        }
    } else if flags.score_limit.is_some() || flags.props.is_some() {
        anyhow::bail!("--score-limit and --props are the arena's settings, not `{mode}`'s");
    }
    for set in &flags.set {
        match set.mode.as_deref() {
            Some(named) if !running.contains(&named) => anyhow::bail!(
                "--set {named}.{}: `{named}` is not a mode this runs ({})",
                set.name,
                running.join(", ")
            ),
            Some(named) if named != mode => continue,
            None if running.len() > 1 => anyhow::bail!(
                "--set {}: name the mode (MODE.{}=VALUE), as several run ({})",
                set.name,
                set.name,
                running.join(", ")
            ),
            _ => settings.push((set.name.clone(), set.value.clone())),
        }
    }
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    modes.configure(mode, &pairs).map_err(|err| {
        let known: Vec<&str> = modes.names().collect();
        anyhow::anyhow!("{err} (modes: {})", known.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use outpost_arena::{self as arena, ArenaConfig};
    use outpost_sim::ModeSettings as _;

    use super::*;

    fn flags(sets: &[&str]) -> ModeArgs {
        ModeArgs {
            set: sets.iter().map(|s| s.parse().expect("a setting")).collect(),
            ..ModeArgs::default()
        }
    }

    #[test]
    fn settings_from_the_command_line_reach_the_mode_and_its_schema_hash() {
        let modes = registry();
        let config = template(
            &modes,
            "ctf",
            &flags(&["captures_to_win=5", "ctf.half_extent=50"]),
            &["ctf"],
        )
        .expect("valid");
        let settings = outpost_ctf::CtfConfig::of(&config).expect("decodes");
        assert_eq!((settings.captures_to_win, settings.half_extent), (5, 50.0));
        assert_eq!(
            config.schema_hash,
            outpost_ctf::config(&settings).schema_hash
        );
        // The arena's flags and its `--set` settings, later ones winning.
        let mut arena_flags = flags(&["props=12"]);
        arena_flags.score_limit = Some(9);
        let config = template(&modes, "arena", &arena_flags, &["arena"]).expect("valid");
        let settings = ArenaConfig::of(&config).expect("decodes");
        assert_eq!((settings.score_limit, settings.props), (9, 12));
        // Where several modes run, a named setting applies to its mode alone.
        let both = flags(&["ctf.captures_to_win=7"]);
        let arena = template(&modes, "arena", &both, &["arena", "ctf"]).expect("valid");
        assert_eq!(
            arena.mode_config,
            arena::config(&ArenaConfig {
                score_limit: 0,
                ..ArenaConfig::default()
            })
            .mode_config
        );
        let ctf = template(&modes, "ctf", &both, &["arena", "ctf"]).expect("valid");
        assert_eq!(
            outpost_ctf::CtfConfig::of(&ctf)
                .expect("decodes")
                .captures_to_win,
            7
        );
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let modes = registry();
        let refused = |mode: &str, sets: &[&str], running: &[&str]| {
            template(&modes, mode, &flags(sets), running)
                .expect_err("refused")
                .to_string()
        };
        let unknown = refused("ctf", &["props=3"], &["ctf"]);
        assert!(
            unknown.contains("no setting `props`") && unknown.contains("captures_to_win"),
            "{unknown}"
        );
        let unreadable = refused("ctf", &["captures_to_win=many"], &["ctf"]);
        assert!(unreadable.contains("cannot read `many`"), "{unreadable}");
        let out_of_bounds = refused("ctf", &["captures_to_win=99"], &["ctf"]);
        assert!(out_of_bounds.contains("1..=20"), "{out_of_bounds}");
        let other_mode = refused("ctf", &["arena.props=3"], &["ctf"]);
        assert!(other_mode.contains("not a mode this runs"), "{other_mode}");
        let ambiguous = refused("ctf", &["return_s=3"], &["arena", "ctf"]);
        assert!(ambiguous.contains("name the mode"), "{ambiguous}");
        assert!("captures_to_win".parse::<Setting>().is_err());
        assert!(".x=1".parse::<Setting>().is_err());
        let arena_only = ModeArgs {
            props: Some(3),
            ..ModeArgs::default()
        };
        assert!(template(&modes, "ctf", &arena_only, &["ctf"]).is_err());
    }
}
