//! End to end through a link conditioner: a match played over a poor link and over one
//! that loses packets in bursts. Every player stays connected to the end, prediction
//! stays within 10 cm of the server at p99, remote entities are never extrapolated more
//! than 250 ms, and the server's acknowledged inputs never go backwards.

mod common;

use std::time::Duration;

use common::*;
use outpost_client::link::LinkRelay;
use outpost_client::{Bot, BotReport, BotStyle};
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
        ..MatchConfig::default()
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
            Bot::new(session, seed + player, BotStyle::Wander)
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

fn p99(values: &[f32]) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize]
}

fn check(reports: &[BotReport], link: &str) {
    let errors: Vec<f32> = reports
        .iter()
        .flat_map(|r| r.netcode.prediction_errors.iter().copied())
        .collect();
    assert!(
        errors.len() > 200,
        "{link}: only {} acknowledged inputs measured",
        errors.len()
    );
    let p99 = p99(&errors);
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
            report.snapshots_received > 100,
            "{link}: bot {i} got {} snapshots",
            report.snapshots_received
        );
        assert!(
            report.netcode.max_extrapolated_ms <= 250.0,
            "{link}: bot {i} extrapolated {} ms",
            report.netcode.max_extrapolated_ms
        );
    }
    assert!(p99 <= 0.10, "{link}: prediction error p99 is {p99} m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_over_a_poor_link_plays_to_the_end() {
    let reports = play_through(LinkConfig::poor(), 11).await;
    check(&reports, "poor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_over_a_bursty_link_plays_to_the_end() {
    let reports = play_through(LinkConfig::bursty(), 12).await;
    check(&reports, "bursty");
}
