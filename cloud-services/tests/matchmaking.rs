//! The matcher: placement by ping, parties kept whole, expansion with wait time, edges
//! that are draining or full get nothing, teams balanced, and large pools stay valid.

use std::collections::{BTreeMap, HashSet};

use outpost_cloud::matchmaking::{EdgeSlot, Expansion, MatchRules, Ticket, TicketPlayer, pass};
use outpost_protocol::rng::SplitMix64;

fn rules() -> MatchRules {
    MatchRules {
        teams: 2,
        team_size: 2,
        steps: vec![
            Expansion {
                after_ms: 0,
                rating_window: 100.0,
                max_ping_ms: 80,
            },
            Expansion {
                after_ms: 10_000,
                rating_window: 300.0,
                max_ping_ms: 150,
            },
            Expansion {
                after_ms: 30_000,
                rating_window: f64::INFINITY,
                max_ping_ms: 300,
            },
        ],
    }
}

fn ticket(id: u64, ratings: &[f64], pings: &[(&str, u32)], created_at_ms: u64) -> Ticket {
    Ticket {
        id,
        players: ratings
            .iter()
            .enumerate()
            .map(|(k, r)| TicketPlayer {
                player_id: id * 10 + k as u64,
                rating: *r,
            })
            .collect(),
        pings_ms: pings.iter().map(|(r, p)| ((*r).to_owned(), *p)).collect(),
        created_at_ms,
    }
}

fn edge(id: &str, region: &str, free: u32) -> EdgeSlot {
    EdgeSlot {
        edge_id: id.into(),
        region: region.into(),
        free,
        free_matches: 10_000,
        draining: false,
    }
}

/// Regression test: edges reported players, not their match limit, so the cloud placed
/// matches on an edge with seats left but no match room, which refused them (`EdgeFull`).
#[test]
fn an_edge_without_match_room_gets_no_match() {
    let tickets: Vec<Ticket> = (1..=8)
        .map(|i| ticket(i, &[1500.0], &[("eu", 20)], 0))
        .collect();
    let mut edges = vec![EdgeSlot {
        free_matches: 1,
        ..edge("eu-1", "eu", 100)
    }];
    let formed = pass(&tickets, &mut edges, &rules(), 0);
    assert_eq!(
        formed.len(),
        1,
        "one match fits, though seats for two are free"
    );
    assert_eq!(edges[0].free_matches, 0);
    assert_eq!(edges[0].free, 96);
}

#[test]
fn pings_choose_the_region() {
    let tickets: Vec<Ticket> = (1..=4)
        .map(|i| ticket(i, &[1500.0], &[("eu", 70), ("us", 20)], 0))
        .collect();
    let mut edges = vec![
        edge("eu-1", "eu", 100),
        edge("us-1", "us", 100),
        edge("us-2", "us", 50),
    ];
    let formed = pass(&tickets, &mut edges, &rules(), 0);
    assert_eq!(formed.len(), 1);
    assert_eq!(formed[0].region, "us");
    assert_eq!(formed[0].edge_id, "us-1", "the least-loaded edge with room");
    assert_eq!(edges[1].free, 96, "the match took its room");
}

#[test]
fn a_party_stays_together_on_one_team() {
    let tickets = vec![
        ticket(1, &[1500.0, 1510.0], &[("eu", 30)], 0),
        ticket(2, &[1490.0], &[("eu", 30)], 1),
        ticket(3, &[1520.0], &[("eu", 30)], 2),
    ];
    let mut edges = vec![edge("eu-1", "eu", 100)];
    let formed = pass(&tickets, &mut edges, &rules(), 0);
    assert_eq!(formed.len(), 1);
    let party: HashSet<u64> = [10, 11].into();
    assert!(
        formed[0]
            .teams
            .iter()
            .any(|team| party.is_subset(&team.iter().copied().collect())),
        "{:?}",
        formed[0].teams
    );
}

#[test]
fn a_full_region_overflows_to_the_next_only_within_the_widened_ping_limit() {
    let tickets: Vec<Ticket> = (1..=4)
        .map(|i| ticket(i, &[1500.0], &[("us", 20), ("eu", 120)], 0))
        .collect();
    let mut edges = vec![edge("us-1", "us", 3), edge("eu-1", "eu", 100)];
    assert!(
        pass(&tickets, &mut edges, &rules(), 0).is_empty(),
        "us is full and eu is over 80 ms"
    );
    let formed = pass(&tickets, &mut edges, &rules(), 10_000);
    assert_eq!(formed.len(), 1, "after 10 s the limit is 150 ms");
    assert_eq!(formed[0].region, "eu");
}

#[test]
fn draining_or_full_edges_get_nothing() {
    let tickets: Vec<Ticket> = (1..=4)
        .map(|i| ticket(i, &[1500.0], &[("eu", 20)], 0))
        .collect();
    let mut edges = vec![
        EdgeSlot {
            draining: true,
            ..edge("eu-1", "eu", 100)
        },
        edge("eu-2", "eu", 3),
    ];
    assert!(pass(&tickets, &mut edges, &rules(), 60_000).is_empty());
    assert_eq!((edges[0].free, edges[1].free), (100, 3));
}

#[test]
fn rating_windows_widen_with_waiting() {
    let tickets = vec![
        ticket(1, &[1000.0], &[("eu", 20)], 0),
        ticket(2, &[1050.0], &[("eu", 20)], 0),
        ticket(3, &[1250.0], &[("eu", 20)], 0),
        ticket(4, &[1290.0], &[("eu", 20)], 0),
    ];
    let mut edges = vec![edge("eu-1", "eu", 100)];
    assert!(
        pass(&tickets, &mut edges, &rules(), 5_000).is_empty(),
        "290 apart, window 100"
    );
    assert_eq!(
        pass(&tickets, &mut edges, &rules(), 10_000).len(),
        1,
        "window 300 after 10 s"
    );
}

#[test]
fn teams_are_balanced_by_rating() {
    let ratings = [2000.0, 1900.0, 1100.0, 1000.0];
    let tickets: Vec<Ticket> = ratings
        .iter()
        .enumerate()
        .map(|(i, r)| ticket(i as u64 + 1, &[*r], &[("eu", 20)], 0))
        .collect();
    let mut edges = vec![edge("eu-1", "eu", 100)];
    let formed = pass(&tickets, &mut edges, &rules(), 60_000);
    let rating_of = |player: &u64| ratings[(player / 10 - 1) as usize];
    let sums: Vec<f64> = formed[0]
        .teams
        .iter()
        .map(|t| t.iter().map(rating_of).sum())
        .collect();
    assert!((sums[0] - sums[1]).abs() <= 200.0, "{sums:?}");
}

/// A large, varied pool: every match is exactly full, no ticket is used twice, every
/// member is within the ping limit, and edges never go below zero.
#[test]
fn a_large_pool_forms_only_valid_matches() {
    let mut rng = SplitMix64::new(3);
    let regions = ["eu", "us", "ap"];
    let tickets: Vec<Ticket> = (1..=10_000u64)
        .map(|id| {
            let party = if rng.next_u64().is_multiple_of(5) {
                2
            } else {
                1
            };
            let ratings: Vec<f64> = (0..party)
                .map(|_| 1500.0 + rng.range(-400.0, 400.0) as f64)
                .collect();
            let pings: Vec<(&str, u32)> = regions
                .iter()
                .map(|r| (*r, (rng.next_u64() % 200) as u32 + 10))
                .collect();
            ticket(id, &ratings, &pings, rng.next_u64() % 60_000)
        })
        .collect();
    let mut edges: Vec<EdgeSlot> = regions
        .iter()
        .map(|r| edge(&format!("{r}-1"), r, 3000))
        .collect();
    let formed = pass(&tickets, &mut edges, &rules(), 60_000);
    let by_id: BTreeMap<u64, &Ticket> = tickets.iter().map(|t| (t.id, t)).collect();
    let mut used = HashSet::new();
    for m in &formed {
        let players: usize = m.tickets.iter().map(|id| by_id[id].players.len()).sum();
        assert_eq!(players, 4);
        assert_eq!(m.teams.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        for id in &m.tickets {
            assert!(used.insert(*id), "ticket {id} used twice");
            assert!(by_id[id].pings_ms[&m.region] <= 300);
        }
    }
    assert!(
        formed.len() > 1500,
        "most of the pool is matched: {} matches",
        formed.len()
    );
    assert!(edges.iter().all(|e| e.free <= 3000));
}
