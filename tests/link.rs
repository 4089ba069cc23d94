//! End to end through the link conditioner's UDP relay: a match played over a poor link,
//! real QUIC on loopback. Every player stays connected to the end, sees the match end,
//! and never sees acknowledged inputs go backwards.
//!
//! Only what cannot depend on the machine's speed is asserted here; the figures
//! (prediction error, extrapolation, lag-compensated hits) are asserted on the
//! deterministic harness in `tests/netcode.rs`, where the same seed gives the same run.

mod common;

use std::time::Duration;

use common::*;
use outpost_arena::{self as arena, ArenaConfig};
use outpost_client::link::LinkRelay;
use outpost_loadtest::bot::{Bot, BotReport};
use outpost_protocol::MatchConfig;
use outpost_protocol::link::LinkConfig;

async fn play_through(link: LinkConfig, seed: u64) -> Vec<BotReport> {
    let edge = TestEdge::start().await;
    let relay = LinkRelay::symmetric(edge.edge.quic_addr(), link, seed)
        .await
        .expect("relay starts");
    let client = std::sync::Arc::new(client());
    // The default arena, props and all, for eight seconds.
    let config = MatchConfig {
        duration_s: 8,
        max_players: 4,
        seed,
        ..arena::config(&ArenaConfig::default())
    };
    let mut bots = Vec::new();
    for player in 1..=4 {
        let mut assignment = edge.assignment(player, 42, &config);
        assignment.edge_addr = relay.addr();
        let client = client.clone();
        // Players join together; the match ends itself after 8 s, 30 s is the backstop.
        bots.push(tokio::spawn(async move {
            let session = client
                .connect(&assignment)
                .await
                .expect("joins through the link");
            Bot::new(session, &outpost_arena::modes(), seed + player)
                .expect("the arena has a bot")
                .run(tokio::time::sleep(Duration::from_secs(30)))
                .await
        }));
    }
    let mut reports = Vec::new();
    for bot in bots {
        reports.push(bot.await.expect("bot task"));
    }
    assert!(
        relay
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the link lost packets"
    );
    edge.edge.shutdown().await;
    reports
}

fn check(reports: &[BotReport], link: &str) {
    for (i, report) in reports.iter().enumerate() {
        assert!(
            report.stayed_connected,
            "{link}: bot {i} lost its connection"
        );
        assert!(
            report.match_ended,
            "{link}: bot {i} never saw the match end"
        );
        assert!(
            report.acks_in_order,
            "{link}: bot {i} saw acknowledged inputs go backwards"
        );
        assert!(
            report.snapshots_received > 0,
            "{link}: bot {i} got no snapshot"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_over_a_poor_link_plays_to_the_end() {
    let reports = play_through(LinkConfig::poor(), 11).await;
    check(&reports, "poor");
}
