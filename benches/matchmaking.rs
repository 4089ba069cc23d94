//! One matcher pass over 10,000 waiting tickets (target: under 100 ms), and a pass plus
//! placement with one Ed25519-signed connect token per player (target: at least 10,000
//! matches per second).
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;

use outpost_cloud::ModeConfig;
use outpost_cloud::edges::{EdgeHeartbeat, EdgeRecord};
use outpost_cloud::matcher::place;
use outpost_cloud::matchmaking::{EdgeSlot, Expansion, MatchRules, Ticket, TicketPlayer, pass};
use outpost_cloud::store::{TicketMember, TicketRecord, TicketStatus};
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::{MatchConfig, TokenSigner};
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
            free_matches: 10_000,
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

fn placement(c: &mut Criterion) {
    for (teams, team_size) in [(2, 4), (2, 1)] {
        placement_of(c, teams, team_size);
    }
}

fn placement_of(c: &mut Criterion, teams: usize, team_size: usize) {
    let tickets = pool(10_000);
    let rules = MatchRules {
        teams,
        team_size,
        steps: vec![Expansion {
            after_ms: 0,
            rating_window: f64::INFINITY,
            max_ping_ms: 300,
        }],
    };
    let slots: Vec<EdgeSlot> = ["eu", "us", "ap"]
        .iter()
        .map(|r| EdgeSlot {
            edge_id: format!("{r}-1"),
            region: (*r).to_owned(),
            free: 100_000,
            free_matches: 100_000,
            draining: false,
        })
        .collect();
    let records: Vec<TicketRecord> = tickets
        .iter()
        .map(|t| TicketRecord {
            id: t.id,
            mode: "arena".into(),
            owner: t.players[0].player_id,
            players: t
                .players
                .iter()
                .map(|p| TicketMember {
                    player_id: p.player_id,
                    rating: p.rating,
                })
                .collect(),
            pings_ms: t.pings_ms.clone(),
            created_at_ms: t.created_at_ms,
            expires_at_ms: u64::MAX,
            status: TicketStatus::Searching,
            placement: None,
        })
        .collect();
    let by_id: HashMap<u64, &TicketRecord> = records.iter().map(|t| (t.id, t)).collect();
    let edges: HashMap<String, EdgeRecord> = slots
        .iter()
        .map(|s| {
            let record = EdgeRecord {
                heartbeat: EdgeHeartbeat {
                    edge_id: s.edge_id.clone(),
                    region: s.region.clone(),
                    quic_addr: "127.0.0.1:7777".into(),
                    cert_sha256: "ab".repeat(32),
                    capacity: 100_000,
                    load: 0,
                    match_capacity: 100_000,
                    matches: 0,
                    draining: false,
                },
                last_seen: 0,
                expires_at: u64::MAX,
            };
            (s.edge_id.clone(), record)
        })
        .collect();
    let mode = ModeConfig {
        rules: rules.clone(),
        ..ModeConfig::free_for_all(MatchConfig::new("arena"), 8, 300)
    };
    let signer = TokenSigner::from_seed(&[5; 32]);
    let formed = pass(&tickets, &mut slots.clone(), &rules, 60_000).len();
    let size = teams * team_size;
    eprintln!("placement: {formed} matches of {size} per pass over 10,000 tickets");
    let mut group = c.benchmark_group("matchmaking");
    group.sample_size(10);
    group.bench_function(
        format!("pass_place_and_mint_10000_tickets_{size}_per_match"),
        |b| {
            b.iter(|| {
                let mut free = slots.clone();
                let formed = pass(black_box(&tickets), &mut free, &rules, 60_000);
                let mut tokens = 0;
                for (i, m) in formed.iter().enumerate() {
                    let (_, updates) = place(
                        m,
                        &by_id,
                        &edges[&m.edge_id],
                        &mode,
                        i as u64 + 1,
                        &signer,
                        1,
                    )
                    .expect("mints");
                    tokens += updates.len();
                }
                tokens
            })
        },
    );
    group.finish();
}

criterion_group!(benches, matcher, placement);
criterion_main!(benches);
