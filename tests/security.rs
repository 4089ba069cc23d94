//! Attacks on an edge, each tried the way an attacker would and pinned by the test that
//! tried it: the attack must fail, and players must not notice it.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use outpost_edge::handshake::Refusal;
use outpost_loadtest::flood::handshake_flood;

/// Loopback source addresses other than the players' 127.0.0.1.
fn flood_sources(n: u8) -> Vec<IpAddr> {
    (2..2 + n).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_does_not_block_joins() {
    let edge = TestEdge::start_with(|c| c.max_players = 8).await;
    // 1,200 Initials that are never followed up, each from its own source port, over
    // twelve addresses: once held a player slot each until they timed out.
    let flood = handshake_flood(
        edge.edge.quic_addr(),
        &flood_sources(12),
        1200,
        100,
        Duration::from_secs(5),
    )
    .await
    .expect("flood runs");
    assert_eq!(
        flood.answered, flood.sent,
        "the edge answered every Initial"
    );
    assert!(flood.retries > 0, "{flood:?}");
    let config = edge.edge.config();
    let metrics = edge.edge.metrics();
    assert!(metrics.handshakes_pending.get() as usize <= config.max_pending_handshakes);
    assert!(metrics.handshake_retries.get() > 0);

    // A real player joins while the flood's handshakes are still pending.
    let session = client()
        .connect(&edge.assignment(1, 1, &small_match()))
        .await
        .expect("a real join gets its Welcome during the flood");
    assert_eq!(session.welcome().player_id, outpost_protocol::PlayerId(1));
    assert_eq!(metrics.handshakes_refused_of(Refusal::PendingFull), 0);
    drop(session);
    edge.edge.shutdown().await;
}
