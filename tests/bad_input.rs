//! Bad input from the network: refused with a reason, counted, and never a crash; the
//! match goes on for everyone else.

mod common;

use outpost_arena::PlayerInput;
use std::time::Duration;

use common::*;
use outpost_client::Probe;
use outpost_edge::close_code;
use outpost_protocol::*;
use outpost_sim::SplitMix64;
use tokio::time::timeout;

fn hello(token: SignedToken) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        connect_token: token,
        reconnect_key: None,
    }
}

/// Presents a Hello and expects a Reject with `code`, then the connection closed.
async fn expect_reject(edge: &TestEdge, hello: &Hello, code: RejectCode) {
    let client = client();
    let assignment = edge.assignment(1, 1, &small_match());
    let Probe { conn, answer, .. } = client
        .probe(&assignment, hello)
        .await
        .expect("edge answers");
    match answer {
        Control::Reject(reject) => assert_eq!(reject.code, code, "{}", reject.detail_text()),
        other => panic!("expected a {code:?} reject, got {other:?}"),
    }
    let closed = timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("connection closes");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(close_code::REJECTED))
            || matches!(closed, quinn::ConnectionError::LocallyClosed),
        "{closed:?}"
    );
    assert!(edge.edge.metrics().rejects_of(code) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_versions_are_refused_with_a_reason() {
    let edge = TestEdge::start().await;
    let config = small_match();

    let forger = TokenSigner::from_seed(&[13; 32]);
    let forged = forger.sign(&edge.token(1, 1, &config)).expect("signs");
    expect_reject(&edge, &hello(forged), RejectCode::BadSignature).await;

    let mut expired = edge.token(1, 1, &config);
    // Past the edge's clock leeway (5 s).
    expired.expires_at_ms = now_ms() - 60_000;
    expect_reject(
        &edge,
        &hello(edge.signer.sign(&expired).expect("signs")),
        RejectCode::Expired,
    )
    .await;

    let mut elsewhere = edge.token(1, 1, &config);
    elsewhere.edge_id = "another-edge".into();
    expect_reject(
        &edge,
        &hello(edge.signer.sign(&elsewhere).expect("signs")),
        RejectCode::WrongEdge,
    )
    .await;

    let mut bad_config = edge.token(1, 1, &config);
    bad_config.config.tick_hz = 5000;
    expect_reject(
        &edge,
        &hello(edge.signer.sign(&bad_config).expect("signs")),
        RejectCode::InvalidConfig,
    )
    .await;

    let mut old = hello(edge.signer.sign(&edge.token(1, 1, &config)).expect("signs"));
    old.protocol_version = PROTOCOL_VERSION + 1;
    expect_reject(&edge, &old, RejectCode::VersionMismatch).await;

    // A token works once; presented again (without the reconnect key) it is a replay.
    let token = edge.signer.sign(&edge.token(1, 1, &config)).expect("signs");
    let client = client();
    let first = client
        .probe(&edge.assignment(1, 1, &config), &hello(token.clone()))
        .await
        .expect("answers");
    assert!(
        matches!(first.answer, Control::Welcome(_)),
        "{:?}",
        first.answer
    );
    expect_reject(&edge, &hello(token), RejectCode::TokenReused).await;
    first.conn.close(quinn::VarInt::from_u32(0), b"done");
    edge.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_missing_hellos_are_refused() {
    let edge = TestEdge::start_with(|c| c.hello_timeout = Duration::from_millis(300)).await;
    let client = client();
    let assignment = edge.assignment(1, 1, &small_match());

    // Not a Hello first.
    let ping = Control::Ping(Ping { client_time_us: 1 });
    let conn = client_conn(&client, &assignment).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&codec::encode_frame(&ping).expect("encodes"))
        .await
        .expect("writes");
    assert_eq!(read_reject(&mut recv).await, RejectCode::MalformedHello);

    // A frame header announcing 4 GiB.
    let conn = client_conn(&client, &assignment).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[0xff; 8]).await.expect("writes");
    assert_eq!(read_reject(&mut recv).await, RejectCode::MalformedHello);

    // A stream opened but silent.
    let conn = client_conn(&client, &assignment).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[]).await.expect("opens the stream");
    send.write_all(&[1])
        .await
        .expect("a first byte, then silence");
    assert_eq!(read_reject(&mut recv).await, RejectCode::Timeout);
    edge.edge.shutdown().await;
}

async fn client_conn(
    client: &outpost_client::Client,
    assignment: &outpost_client::Assignment,
) -> quinn::Connection {
    client.connect_raw(assignment).await.expect("QUIC connects")
}

async fn read_reject(recv: &mut quinn::RecvStream) -> RejectCode {
    let mut header = [0u8; 4];
    timeout(Duration::from_secs(5), recv.read_exact(&mut header))
        .await
        .expect("answer in time")
        .expect("header");
    let mut payload = vec![0u8; codec::frame_len(header).expect("sane frame")];
    recv.read_exact(&mut payload).await.expect("payload");
    match codec::decode_control(&payload).expect("decodes") {
        Control::Reject(reject) => reject.code,
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_are_dropped_and_counted_and_the_match_goes_on() {
    let edge = TestEdge::start().await;
    let client = client();
    let config = small_match();
    let mut bystander = client
        .connect(&edge.assignment(1, 6, &config))
        .await
        .expect("joins");
    let attacker = client
        .connect(&edge.assignment(2, 6, &config))
        .await
        .expect("joins");
    bystander.next_snapshot().await.expect("snapshots flow");
    let limit = attacker
        .connection()
        .max_datagram_size()
        .expect("datagrams enabled");

    let mut rng = SplitMix64::new(99);
    let metrics = edge.edge.metrics();
    let before = metrics.datagrams_rejected.get();
    let mut sent = 0u64;
    // In batches the edge can take in before the next, so none is lost in transit and
    // every one must show up in the count.
    while sent < 10_000 {
        for _ in 0..20 {
            let len = (rng.next_u64() as usize % limit) + 1;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            attacker.send_raw_datagram(bytes).await.expect("sends");
            sent += 1;
        }
        let expected = before + sent;
        eventually("garbage to be counted", Duration::from_secs(10), || {
            metrics.datagrams_rejected.get() >= expected
        })
        .await;
    }
    assert_eq!(metrics.datagrams_rejected.get() - before, 10_000);

    // Both players are still in the match, and it still ticks for both.
    let tick = bystander.latest_tick();
    for _ in 0..10 {
        bystander.send_input(PlayerInput::default()).expect("input");
        attacker.send_input(PlayerInput::default()).expect("input");
        bystander.next_snapshot().await.expect("snapshots flow");
    }
    assert!(bystander.latest_tick() > tick);
    assert!(!attacker.is_closed());
    assert_eq!(metrics.players.get(), 2);
    bystander.close().await;
    attacker.close().await;
    edge.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_control_bytes_close_only_that_connection() {
    let edge = TestEdge::start().await;
    let client = client();
    let config = MatchConfig {
        max_players: 32,
        ..small_match()
    };
    let mut rng = SplitMix64::new(7);
    let mut bystander = client
        .connect(&edge.assignment(1, 6, &config))
        .await
        .expect("joins");
    let metrics = edge.edge.metrics();
    for round in 1..=20u64 {
        let token = edge
            .signer
            .sign(&edge.token(100 + round, 6, &config))
            .expect("signs");
        let mut probe = client
            .probe(&edge.assignment(1, 6, &config), &hello(token))
            .await
            .expect("answers");
        assert!(matches!(probe.answer, Control::Welcome(_)));
        let garbage: Vec<u8> = (0..(rng.next_u64() % 4096 + 1))
            .map(|_| rng.next_u64() as u8)
            .collect();
        // A frame of random bytes (a random length prefix is usually just too large).
        let framed = round % 2 == 0;
        if framed {
            probe
                .send
                .write_all(&(garbage.len() as u32).to_le_bytes())
                .await
                .expect("writes");
        }
        probe.send.write_all(&garbage).await.expect("writes");
        let closed = timeout(Duration::from_secs(5), probe.conn.closed())
            .await
            .expect("edge closes it");
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(close_code::PROTOCOL_VIOLATION)),
            "round {round}: {closed:?}"
        );
        assert_eq!(metrics.control_rejected.get(), round);
    }
    // The match never noticed.
    let tick = bystander.latest_tick();
    for _ in 0..5 {
        bystander.send_input(PlayerInput::default()).expect("input");
        bystander.next_snapshot().await.expect("snapshots flow");
    }
    assert!(bystander.latest_tick() > tick);
    assert!(!bystander.is_closed());
    bystander.close().await;
    edge.edge.shutdown().await;
}

/// Regression test: a client whose QUIC connection takes no datagrams was admitted, then
/// closed with code 0 ("closed") at its first snapshot. Now it is refused at its Hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_datagrams_is_refused_at_hello() {
    let edge = TestEdge::start().await;
    let assignment = edge.assignment(1, 1, &small_match());
    let mut config =
        outpost_client::client_config(&assignment.trust, Duration::from_secs(10)).expect("config");
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(None);
    config.transport_config(std::sync::Arc::new(transport));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let conn = endpoint
        .connect_with(config, assignment.edge_addr, "localhost")
        .expect("connects")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let hello = Control::Hello(hello(assignment.connect_token.clone()));
    send.write_all(&codec::encode_frame(&hello).expect("encodes"))
        .await
        .expect("writes");
    assert_eq!(
        read_reject(&mut recv).await,
        RejectCode::DatagramsUnsupported
    );
    assert_eq!(
        edge.edge
            .metrics()
            .rejects_of(RejectCode::DatagramsUnsupported),
        1
    );
    // The token was not spent: with datagrams on, it joins.
    let session = client().connect(&assignment).await.expect("joins");
    drop(session);
    edge.edge.shutdown().await;
}
