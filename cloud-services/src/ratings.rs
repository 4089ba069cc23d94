//! Skill ratings: Weng-Lin (the OpenSkill family) from the `skillratings` crate, per
//! player and mode, updated from results.

use skillratings::MultiTeamOutcome;
use skillratings::weng_lin::{WengLinConfig, WengLinRating, weng_lin_multi_team};

use crate::store::Rating;

/// New ratings after a match. `teams[i]` holds each member's current rating; `ranks[i]`
/// is the team's place (1 = best, equal ranks draw). Returns new ratings in the same
/// shape.
pub fn rate(teams: &[Vec<Rating>], ranks: &[usize]) -> Vec<Vec<Rating>> {
    let converted: Vec<Vec<WengLinRating>> = teams
        .iter()
        .map(|team| {
            team.iter()
                .map(|r| WengLinRating {
                    rating: r.mu,
                    uncertainty: r.sigma,
                })
                .collect()
        })
        .collect();
    let input: Vec<(&[WengLinRating], MultiTeamOutcome)> = converted
        .iter()
        .zip(ranks)
        .map(|(team, rank)| (team.as_slice(), MultiTeamOutcome::new(*rank)))
        .collect();
    weng_lin_multi_team(&input, &WengLinConfig::new())
        .into_iter()
        .map(|team| {
            team.into_iter()
                .map(|r| Rating {
                    mu: r.rating,
                    sigma: r.uncertainty,
                })
                .collect()
        })
        .collect()
}

/// Ranks (1 = best, ties share) from team scores, highest first.
pub fn ranks_from_scores(scores: &[i64]) -> Vec<usize> {
    scores
        .iter()
        .map(|s| 1 + scores.iter().filter(|o| *o > s).count())
        .collect()
}
