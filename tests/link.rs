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

/// Over a 100 ms round trip, a shooter aims where its client shows a strafing target
/// (interpolated, some 150 ms behind the server) and fires; the edge rewinds to the tick
/// the shooter saw, and the shots land. Unrewound, the target would be 0.9 m further on:
/// more than twice its radius.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_compensated_shots_hit_a_moving_target_over_100_ms() {
    use outpost_protocol::{MatchEvent, PlayerId, PlayerInput};

    let edge = TestEdge::start().await;
    let link = LinkConfig {
        latency: Duration::from_millis(50),
        ..LinkConfig::PERFECT
    };
    let relay = LinkRelay::symmetric(edge.edge.quic_addr(), link, 5)
        .await
        .expect("relay");
    let client = client();
    let config = MatchConfig {
        props: 0,
        arena_half_extent: 16.0,
        max_players: 2,
        seed: 5,
        duration_s: 60,
        ..MatchConfig::default()
    };
    let mut shooter_assignment = edge.assignment(1, 77, &config);
    shooter_assignment.edge_addr = relay.addr();
    let mut target_assignment = edge.assignment(2, 77, &config);
    target_assignment.edge_addr = relay.addr();
    let mut shooter = client
        .connect(&shooter_assignment)
        .await
        .expect("shooter joins");
    let target = client
        .connect(&target_assignment)
        .await
        .expect("target joins");
    let target_id = target.entity();

    let mut ticks = tokio::time::interval(Duration::from_secs(1) / 60);
    let (mut shots, mut hits) = (0u32, 0u32);
    let mut tick = 0u32;
    while shots < 24 {
        ticks.tick().await;
        tick += 1;
        // The target strafes back and forth at full speed.
        let strafe = if (tick / 60).is_multiple_of(2) {
            127
        } else {
            -127
        };
        target
            .send_input(PlayerInput {
                move_x: strafe,
                ..Default::default()
            })
            .expect("target input");
        let mut input = PlayerInput::default();
        if let (Some(me), Some(render_tick)) = (shooter.predicted_self(), shooter.render_tick())
            && let Some(them) = shooter.interpolated(target_id, render_tick)
        {
            let d = [
                them.position[0] - me.position[0],
                them.position[1] - me.position[1],
                them.position[2] - me.position[2],
            ];
            input.yaw = PlayerInput::yaw_from_radians(d[0].atan2(d[2]));
            input.pitch =
                PlayerInput::pitch_from_radians(d[1].atan2((d[0] * d[0] + d[2] * d[2]).sqrt()));
            // Four shots a second (the weapon's rate), once the target is moving.
            if tick > 120 && tick.is_multiple_of(15) {
                input.buttons = PlayerInput::FIRE;
                shots += 1;
            }
        }
        shooter.send_input(input).expect("shooter input");
        while let Some(event) = shooter.try_next_event() {
            if let MatchEvent::Hit {
                shooter: PlayerId(1),
                ..
            } = event.event
            {
                hits += 1;
            }
        }
        assert!(tick < 60 * 30, "the test stops by itself");
    }
    // Let the last shots' results arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), shooter.next_event()).await
            && let MatchEvent::Hit {
                shooter: PlayerId(1),
                ..
            } = event.event
        {
            hits += 1;
        }
    }
    assert!(hits >= 20, "{hits} of {shots} lag-compensated shots hit");
    shooter.close().await;
    target.close().await;
    edge.edge.shutdown().await;
}
