//! The matcher: pure and synchronous. Given the waiting tickets, the live edges and the
//! time, one pass forms every match it can. The HTTP layer, ticket storage and the lease
//! that keeps one matcher per mode running sit around it.
//!
//! A pass takes tickets oldest first. Each (the anchor) looks for company in its best
//! region — the lowest-ping region where every member's ping is within the anchor's
//! current limit and an edge has room — among tickets whose rating is within the anchor's
//! current window and whose own ping limit allows that region, nearest rating first. Both the window and the
//! limit widen as a ticket waits (configurable steps, like GameLift FlexMatch's
//! expansions). Parties stay whole and on one team; teams are balanced by rating; the
//! match goes to the least-loaded live, non-draining edge in the region with room.
//!
//! Tickets are indexed per region and sorted by rating; an anchor walks outward from its
//! own rating and stops once its match is full.

use std::collections::{BTreeMap, HashSet};

/// A player in a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketPlayer {
    /// The player.
    pub player_id: u64,
    /// Their skill rating in the ticket's mode.
    pub rating: f64,
}

/// A request to play: one player or a party that must stay together.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// Ticket id.
    pub id: u64,
    /// The party (1..=team size players).
    pub players: Vec<TicketPlayer>,
    /// Measured round-trip time per region, milliseconds: the worst of the party's.
    pub pings_ms: BTreeMap<String, u32>,
    /// When the ticket was created, milliseconds.
    pub created_at_ms: u64,
}

impl Ticket {
    fn rating(&self) -> f64 {
        self.players.iter().map(|p| p.rating).sum::<f64>() / self.players.len().max(1) as f64
    }
}

/// One widening step: after waiting `after_ms`, a ticket accepts ratings within
/// `rating_window` of its own and regions up to `max_ping_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expansion {
    /// Wait after which this step applies.
    pub after_ms: u64,
    /// Largest rating difference accepted.
    pub rating_window: f64,
    /// Largest ping accepted.
    pub max_ping_ms: u32,
}

/// How matches of a mode are made.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRules {
    /// Teams per match.
    pub teams: usize,
    /// Players per team.
    pub team_size: usize,
    /// Widening steps, by increasing `after_ms`; the first applies from the start.
    pub steps: Vec<Expansion>,
}

impl MatchRules {
    /// Players per match.
    pub fn match_size(&self) -> usize {
        self.teams * self.team_size
    }

    fn step(&self, waited_ms: u64) -> Expansion {
        self.steps
            .iter()
            .rev()
            .find(|s| waited_ms >= s.after_ms)
            .or(self.steps.first())
            .copied()
            .unwrap_or(Expansion {
                after_ms: 0,
                rating_window: f64::INFINITY,
                max_ping_ms: u32::MAX,
            })
    }
}

/// An edge as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSlot {
    /// Edge id.
    pub edge_id: String,
    /// Region.
    pub region: String,
    /// Players it can still take.
    pub free: u32,
    /// Matches it can still take.
    pub free_matches: u32,
    /// Draining edges take no new matches.
    pub draining: bool,
}

impl EdgeSlot {
    /// Whether a match of `size` in `region` fits here.
    fn takes(&self, region: &str, size: usize) -> bool {
        self.region == region
            && !self.draining
            && self.free as usize >= size
            && self.free_matches > 0
    }
}

/// A match formed by a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct FormedMatch {
    /// Where it is played.
    pub region: String,
    /// On which edge.
    pub edge_id: String,
    /// The tickets it took.
    pub tickets: Vec<u64>,
    /// Players per team.
    pub teams: Vec<Vec<u64>>,
}

/// Runs one pass: forms every match it can and returns them. `edges` is updated as
/// matches take room on them.
pub fn pass(
    tickets: &[Ticket],
    edges: &mut [EdgeSlot],
    rules: &MatchRules,
    now_ms: u64,
) -> Vec<FormedMatch> {
    let size = rules.match_size();
    if size == 0 {
        return Vec::new();
    }
    // Tickets oldest first; per region, the tickets that could play there, by rating.
    let mut order: Vec<usize> = (0..tickets.len())
        .filter(|&i| (1..=rules.team_size).contains(&tickets[i].players.len()))
        .collect();
    order.sort_by_key(|&i| (tickets[i].created_at_ms, tickets[i].id));
    let mut by_region: BTreeMap<&str, Vec<(f64, usize)>> = BTreeMap::new();
    for &i in &order {
        for region in tickets[i].pings_ms.keys() {
            by_region
                .entry(region.as_str())
                .or_default()
                .push((tickets[i].rating(), i));
        }
    }
    for list in by_region.values_mut() {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut taken: HashSet<usize> = HashSet::with_capacity(tickets.len());
    let mut formed = Vec::new();
    for &anchor in &order {
        if taken.contains(&anchor) {
            continue;
        }
        let ticket = &tickets[anchor];
        let step = rules.step(now_ms.saturating_sub(ticket.created_at_ms));
        let mut regions: Vec<(&String, &u32)> = ticket
            .pings_ms
            .iter()
            .filter(|(_, ping)| **ping <= step.max_ping_ms)
            .collect();
        regions.sort_by_key(|(region, ping)| (**ping, region.as_str()));
        for (region, _) in regions {
            let has_room = edges.iter().any(|e| e.takes(region, size));
            if !has_room {
                continue;
            }
            let Some(group) = gather(
                tickets,
                &by_region[region.as_str()],
                anchor,
                region,
                step,
                rules,
                now_ms,
                &taken,
            ) else {
                continue;
            };
            let Some(teams) = balance(tickets, &group, rules) else {
                continue;
            };
            let Some(edge) = edges
                .iter_mut()
                .filter(|e| e.takes(region, size))
                .max_by_key(|e| (e.free, std::cmp::Reverse(e.edge_id.clone())))
            else {
                continue;
            };
            edge.free -= size as u32;
            edge.free_matches -= 1;
            taken.extend(group.iter().copied());
            formed.push(FormedMatch {
                region: region.clone(),
                edge_id: edge.edge_id.clone(),
                tickets: group.iter().map(|&i| tickets[i].id).collect(),
                teams,
            });
            break;
        }
    }
    formed
}

/// Picks tickets for the anchor's match in a region: walking outward from the anchor's
/// rating, nearest first, those in its window who accept the region, until exactly a
/// match is full. Stops as soon as it is, so a pass costs about the match size per
/// anchor, not the pool.
#[expect(
    clippy::too_many_arguments,
    reason = "one pass's working state, passed down once"
)]
fn gather(
    tickets: &[Ticket],
    by_rating: &[(f64, usize)],
    anchor: usize,
    region: &str,
    step: Expansion,
    rules: &MatchRules,
    now_ms: u64,
    taken: &HashSet<usize>,
) -> Option<Vec<usize>> {
    let size = rules.match_size();
    let rating = tickets[anchor].rating();
    let accepts = |i: usize| {
        let own = rules.step(now_ms.saturating_sub(tickets[i].created_at_ms));
        i != anchor
            && !taken.contains(&i)
            && tickets[i]
                .pings_ms
                .get(region)
                .is_some_and(|p| *p <= own.max_ping_ms)
            && (tickets[i].rating() - rating).abs() <= own.rating_window.max(step.rating_window)
    };
    let start = by_rating.partition_point(|(r, _)| *r < rating);
    let (mut down, mut up) = (start, start);
    let mut group = vec![anchor];
    let mut count = tickets[anchor].players.len();
    while count < size {
        // The nearer of the next candidates below and above, within the window.
        let below = down
            .checked_sub(1)
            .filter(|&d| rating - by_rating[d].0 <= step.rating_window);
        let above =
            (up < by_rating.len() && by_rating[up].0 - rating <= step.rating_window).then_some(up);
        let next = match (below, above) {
            (Some(d), Some(u)) if rating - by_rating[d].0 <= by_rating[u].0 - rating => {
                down = d;
                d
            }
            (_, Some(u)) => {
                up += 1;
                u
            }
            (Some(d), None) => {
                down = d;
                d
            }
            (None, None) => break,
        };
        let i = by_rating[next].1;
        let n = tickets[i].players.len();
        if accepts(i) && count + n <= size {
            group.push(i);
            count += n;
        }
    }
    (count == size).then_some(group)
}

/// Splits a group's parties into teams, each party whole, balancing total rating:
/// largest parties first, each to the team with the lowest total that has room.
fn balance(tickets: &[Ticket], group: &[usize], rules: &MatchRules) -> Option<Vec<Vec<u64>>> {
    let mut parties: Vec<usize> = group.to_vec();
    parties.sort_by(|&a, &b| {
        tickets[b]
            .players
            .len()
            .cmp(&tickets[a].players.len())
            .then(tickets[b].rating().total_cmp(&tickets[a].rating()))
    });
    let mut teams: Vec<(f64, Vec<u64>)> = vec![(0.0, Vec::new()); rules.teams];
    for party in parties {
        let members = &tickets[party].players;
        let team = teams
            .iter_mut()
            .filter(|(_, players)| players.len() + members.len() <= rules.team_size)
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        team.0 += members.iter().map(|p| p.rating).sum::<f64>();
        team.1.extend(members.iter().map(|p| p.player_id));
    }
    Some(teams.into_iter().map(|(_, players)| players).collect())
}
