//! proptest strategies for every protocol type (shared by the protocol's test files).

use outpost_protocol::*;
use proptest::collection::vec;
use proptest::prelude::*;

pub fn match_config() -> impl Strategy<Value = MatchConfig> {
    (
        (any::<u16>(), any::<u16>(), any::<u16>()),
        any::<u32>(),
        any::<u16>(),
        "[a-z][a-z0-9_]{0,31}",
        any::<u64>(),
        any::<u64>(),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(
                (tick_hz, snapshot_hz, max_rewind_ms),
                duration_s,
                max_players,
                mode,
                seed,
                schema_hash,
                mode_config,
            )| MatchConfig {
                mode,
                tick_hz,
                snapshot_hz,
                duration_s,
                max_players,
                max_rewind_ms,
                seed,
                schema_hash,
                mode_config,
            },
        )
}

pub fn signed_token() -> impl Strategy<Value = SignedToken> {
    (
        vec(any::<u8>(), 0..300),
        vec(any::<u8>(), 64),
        any::<u16>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(body, signature, seat, secret)| SignedToken {
            body,
            signature,
            seat,
            secret,
        })
}

pub fn player_score() -> impl Strategy<Value = PlayerScore> {
    (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(p, e, score)| PlayerScore {
        player: PlayerId(p),
        entity: EntityId(e),
        score,
    })
}

pub fn reject_code() -> impl Strategy<Value = RejectCode> {
    prop_oneof![
        Just(RejectCode::VersionMismatch),
        Just(RejectCode::MalformedHello),
        Just(RejectCode::BadSignature),
        Just(RejectCode::Expired),
        Just(RejectCode::WrongEdge),
        Just(RejectCode::TokenReused),
        Just(RejectCode::InvalidConfig),
        Just(RejectCode::EdgeFull),
        Just(RejectCode::MatchFull),
        Just(RejectCode::MatchOver),
        Just(RejectCode::Draining),
        Just(RejectCode::Timeout),
        Just(RejectCode::DatagramsUnsupported),
        Just(RejectCode::ConfigMismatch),
        Just(RejectCode::IssuedBeforeStart),
        Just(RejectCode::NotYetValid),
    ]
}

pub fn match_event() -> impl Strategy<Value = MatchEvent> {
    prop_oneof![
        (any::<u64>(), any::<u32>()).prop_map(|(p, e)| MatchEvent::PlayerJoined {
            player: PlayerId(p),
            entity: EntityId(e)
        }),
        any::<u64>().prop_map(|p| MatchEvent::PlayerLeft {
            player: PlayerId(p)
        }),
        (any::<u16>(), vec(any::<u8>(), 0..=MAX_EVENT_BYTES))
            .prop_map(|(kind, fields)| { MatchEvent::Mode(ModeEvent { kind, fields }) }),
        (
            prop_oneof![
                Just(MatchEndReason::TimeUp),
                Just(MatchEndReason::ScoreLimit),
                Just(MatchEndReason::Abandoned),
                Just(MatchEndReason::Shutdown)
            ],
            vec(player_score(), 0..MAX_LISTED_PLAYERS)
        )
            .prop_map(|(reason, scores)| MatchEvent::MatchEnded { reason, scores }),
    ]
}

pub fn goodbye() -> impl Strategy<Value = GoodbyeReason> {
    prop_oneof![
        Just(GoodbyeReason::Quit),
        Just(GoodbyeReason::MatchOver),
        Just(GoodbyeReason::Shutdown),
        Just(GoodbyeReason::ProtocolViolation),
        Just(GoodbyeReason::TooSlow),
        Just(GoodbyeReason::Replaced),
    ]
}

pub fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), signed_token(), any::<Option<[u8; 16]>>()).prop_map(
        |(protocol_version, connect_token, reconnect_key)| Hello {
            protocol_version,
            connect_token,
            reconnect_key,
        },
    )
}

pub fn welcome() -> impl Strategy<Value = Welcome> {
    (
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        match_config(),
        vec(any::<u8>(), 0..256),
        any::<[u8; 16]>(),
        vec(player_score(), 0..MAX_LISTED_PLAYERS),
    )
        .prop_map(
            |(v, m, p, e, tick, config, schema, reconnect_key, players)| Welcome {
                protocol_version: v,
                match_id: MatchId(m),
                player_id: PlayerId(p),
                entity: EntityId(e),
                tick,
                config,
                schema,
                reconnect_key,
                players,
            },
        )
}

pub fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        hello().prop_map(Control::Hello),
        welcome().prop_map(Control::Welcome),
        (reject_code(), ".{0,80}").prop_map(|(code, d)| Control::Reject(Reject::new(code, &d))),
        (any::<u32>(), match_event())
            .prop_map(|(tick, event)| Control::Event(TickedEvent { tick, event })),
        any::<u64>().prop_map(|t| Control::Ping(Ping { client_time_us: t })),
        (any::<u64>(), any::<u32>()).prop_map(|(t, s)| Control::Pong(Pong {
            client_time_us: t,
            server_tick: s
        })),
        goodbye().prop_map(Control::Goodbye),
    ]
}

pub fn datagram() -> impl Strategy<Value = Datagram> {
    prop_oneof![
        (any::<u32>(), vec(any::<u8>(), 0..=MAX_INPUT_BATCH_BYTES)).prop_map(
            |(ack_snapshot_tick, inputs)| Datagram::Input(InputFrame {
                ack_snapshot_tick,
                inputs
            })
        ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            vec(any::<u8>(), 0..1200)
        )
            .prop_map(
                |(tick, baseline_tick, reference_gap, ack_input_seq, ticks_left, body)| {
                    Datagram::Snapshot(Snapshot {
                        tick,
                        baseline_tick,
                        reference_gap,
                        ack_input_seq,
                        ticks_left,
                        body,
                    })
                },
            ),
    ]
}
