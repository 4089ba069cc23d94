//! One matcher pass over 10,000 waiting tickets (target: under 100 ms).
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use outpost_cloud::matchmaking::{EdgeSlot, Expansion, MatchRules, Ticket, TicketPlayer, pass};
use outpost_protocol::rng::SplitMix64;
use std::hint::black_box;

fn pool(n: u64) -> Vec<Ticket> {
    let mut rng = SplitMix64::new(3);
    (1..=n)
        .map(|id| {
            let party = if rng.next_u64().is_multiple_of(5) {
                2
            } else {
                1
            };
            Ticket {
                id,
                players: (0..party)
                    .map(|k| TicketPlayer {
                        player_id: id * 10 + k,
                        rating: 1500.0 + f64::from(rng.range(-400.0, 400.0)),
                    })
                    .collect(),
                pings_ms: ["eu", "us", "ap"]
                    .iter()
                    .map(|r| ((*r).to_owned(), (rng.next_u64() % 200) as u32 + 10))
                    .collect(),
                created_at_ms: rng.next_u64() % 60_000,
            }
        })
        .collect()
}

fn matcher(c: &mut Criterion) {
    let tickets = pool(10_000);
    let rules = MatchRules {
        teams: 2,
        team_size: 4,
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
    };
    let edges: Vec<EdgeSlot> = ["eu", "us", "ap"]
        .iter()
        .map(|r| EdgeSlot {
            edge_id: format!("{r}-1"),
            region: (*r).to_owned(),
            free: 10_000,
            draining: false,
        })
        .collect();
    c.bench_function("matchmaking/pass_10000_tickets", |b| {
        b.iter(|| {
            let mut edges = edges.clone();
            pass(black_box(&tickets), &mut edges, &rules, 60_000)
        })
    });
}

criterion_group!(benches, matcher);
criterion_main!(benches);
