//! Round-trips, bincode byte-compatibility, and malformed input for every message.

mod strategies;

use outpost_protocol::codec::{self, CodecError};
use outpost_protocol::token::seat_commitment;
use outpost_protocol::*;
use proptest::prelude::*;
use strategies::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn control_round_trips(message in control()) {
        let bytes = codec::encode_control(&message).unwrap();
        prop_assert_eq!(codec::decode_control(&bytes).unwrap(), message.clone());
        let frame = codec::encode_frame(&message).unwrap();
        let (decoded, used) = codec::decode_frame(&frame).unwrap().unwrap();
        prop_assert_eq!(decoded, message);
        prop_assert_eq!(used, frame.len());
    }

    #[test]
    fn datagram_round_trips(datagram in datagram()) {
        let bytes = codec::encode_datagram(&datagram).unwrap();
        prop_assert_eq!(codec::decode_datagram(&bytes).unwrap(), datagram);
    }

    #[test]
    fn token_round_trips(config in match_config(), player in any::<u64>(), nonce in any::<[u8; 16]>(),
                         edge in "[a-z0-9-]{1,64}", seed in any::<[u8; 32]>()) {
        let signer = TokenSigner::from_seed(&seed);
        let token = ConnectToken {
            player_id: PlayerId(player),
            match_id: MatchId(player ^ 7),
            team: 0,
            edge_id: edge.clone(),
            config,
            issued_at_ms: 1,
            expires_at_ms: 2,
            nonce,
        };
        let signed = signer.sign(&token).unwrap();
        let verifier = TokenVerifier::new(&signer.public_key()).unwrap();
        prop_assert_eq!(verifier.verify_signature(&signed).unwrap(), token);
    }

    /// The wire format is bincode 1.3.3's default, byte for byte.
    #[test]
    fn control_bytes_equal_bincode(message in control()) {
        prop_assert_eq!(codec::encode_control(&message).unwrap(), bincode::serialize(&message).unwrap());
    }

    /// Datagrams are bincode's layout but for a one-byte tag and two-byte lengths
    /// (docs/protocol.md §4): built here by hand from that description.
    #[test]
    fn datagram_bytes_are_the_documented_layout(datagram in datagram()) {
        let ours = codec::encode_datagram(&datagram).unwrap();
        let mut expected = Vec::new();
        let u16_len = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match &datagram {
            Datagram::Input(frame) => {
                expected.push(0);
                expected.extend_from_slice(&frame.ack_snapshot_tick.to_le_bytes());
                u16_len(&mut expected, &frame.inputs);
            }
            Datagram::Snapshot(s) => {
                expected.push(1);
                for v in [s.tick, s.baseline_tick] {
                    expected.extend_from_slice(&v.to_le_bytes());
                }
                expected.push(s.reference_gap);
                for v in [s.ack_input_seq, s.ticks_left] {
                    expected.extend_from_slice(&v.to_le_bytes());
                }
                u16_len(&mut expected, &s.body);
            }
        }
        prop_assert_eq!(&ours, &expected);
        prop_assert_eq!(codec::decode_datagram(&ours).unwrap(), datagram);
    }

    #[test]
    fn token_bytes_equal_bincode(config in match_config(), nonce in any::<[u8; 16]>()) {
        let token = ConnectToken {
            player_id: PlayerId(1), match_id: MatchId(2), team: 1, edge_id: "edge-a".into(), config,
            issued_at_ms: 3, expires_at_ms: 4, nonce,
        };
        let signed = TokenSigner::from_seed(&[9; 32]).sign(&token).unwrap();
        let grant = MatchGrant {
            match_id: token.match_id, edge_id: token.edge_id.clone(), config: token.config.clone(),
            issued_at_ms: 3, expires_at_ms: 4,
            seats: vec![Seat { player_id: token.player_id, commitment: seat_commitment(&nonce), team: 1 }],
        };
        prop_assert_eq!(&signed.body, &bincode::serialize(&grant).unwrap());
    }

    /// Every strict prefix of a valid message is an error (datagram) or "need more"
    /// (frame), never a panic and never a wrong message.
    #[test]
    fn truncated_messages_are_refused(message in control(), datagram in datagram()) {
        let payload = codec::encode_control(&message).unwrap();
        for cut in 0..payload.len() {
            prop_assert!(codec::decode_control(&payload[..cut]).is_err());
        }
        let frame = codec::encode_frame(&message).unwrap();
        for cut in 0..frame.len() {
            prop_assert!(codec::decode_frame(&frame[..cut]).unwrap().is_none());
        }
        let bytes = codec::encode_datagram(&datagram).unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(codec::decode_datagram(&bytes[..cut]).is_err());
        }
    }

    /// Arbitrary bytes through every decoder: an answer, never a panic. (The CI
    /// counterpart of the fuzz targets under `fuzz/`.)
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode_datagram(&bytes);
        let _ = codec::decode_control(&bytes);
        let _ = codec::decode_frame(&bytes);
        let _ = codec::peek_hello_version(&bytes);
        let verifier = TokenVerifier::new(&TokenSigner::from_seed(&[1; 32]).public_key()).unwrap();
        let token = SignedToken { body: bytes.clone(), signature: bytes.iter().copied().take(64).collect(), seat: 0, secret: [0; 16] };
        prop_assert!(verifier.verify_signature(&token).is_err());
    }

    /// Bit flips in a valid message decode to an error or to some message, never a panic.
    #[test]
    fn corrupted_messages_never_panic(message in control(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut payload = codec::encode_control(&message).unwrap();
        for (at, bits) in flips {
            let len = payload.len();
            payload[at % len] ^= bits;
        }
        let _ = codec::decode_control(&payload);
    }
}

#[test]
fn oversized_length_prefix_is_refused_before_allocation() {
    // A frame header announcing 4 GiB.
    let err = codec::decode_frame(&[0xff, 0xff, 0xff, 0xff, 0]).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { .. }), "{err:?}");
    // An input frame claiming u64::MAX inputs in a tiny datagram.
    let mut bytes = vec![0, 0, 0, 0, 1, 0, 0, 0];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(codec::decode_datagram(&bytes).is_err());
    // An input frame with a batch one byte longer than allowed, every byte present.
    let frame = InputFrame {
        ack_snapshot_tick: 0,
        inputs: vec![0; MAX_INPUT_BATCH_BYTES + 1],
    };
    let bytes = bincode::serialize(&Datagram::Input(frame)).unwrap();
    assert!(codec::decode_datagram(&bytes).is_err());
}

#[test]
fn oversized_datagram_is_refused() {
    let err = codec::decode_datagram(&vec![0; codec::MAX_DATAGRAM + 1]).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { .. }));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = codec::encode_control(&Control::Ping(Ping { client_time_us: 5 })).unwrap();
    bytes.push(0);
    assert!(codec::decode_control(&bytes).is_err());
}

#[test]
fn unknown_enum_tags_are_refused() {
    let bytes = 99u32.to_le_bytes();
    assert!(codec::decode_control(&bytes).is_err());
    assert!(codec::decode_datagram(&bytes).is_err());
}

#[test]
fn hello_version_is_readable_from_any_version() {
    let hello = Control::Hello(Hello {
        protocol_version: 7,
        connect_token: SignedToken {
            body: vec![1, 2],
            signature: vec![0; 64],
            seat: 0,
            secret: [0; 16],
        },
        reconnect_key: None,
    });
    let payload = codec::encode_control(&hello).unwrap();
    assert_eq!(codec::peek_hello_version(&payload), Some(7));
    // A future Hello whose body this build cannot decode still reveals its version.
    let future = [0, 0, 0, 0, 2, 0, 0xde, 0xad];
    assert!(codec::decode_control(&future).is_err());
    assert_eq!(codec::peek_hello_version(&future), Some(2));
    let ping = codec::encode_control(&Control::Ping(Ping { client_time_us: 1 })).unwrap();
    assert_eq!(codec::peek_hello_version(&ping), None);
}

fn sample_token(expires_at_ms: u64) -> ConnectToken {
    ConnectToken {
        player_id: PlayerId(11),
        match_id: MatchId(22),
        team: 0,
        edge_id: "edge-a".into(),
        config: MatchConfig::new("arena"),
        issued_at_ms: 1_000,
        expires_at_ms,
        nonce: [3; 16],
    }
}

#[test]
fn token_checks() {
    let signer = TokenSigner::from_seed(&[5; 32]);
    let verifier = TokenVerifier::new(&signer.public_key()).unwrap();
    let signed = signer.sign(&sample_token(10_000)).unwrap();
    assert_eq!(
        verifier.verify(&signed, 5_000, "edge-a").unwrap(),
        sample_token(10_000)
    );
    assert!(matches!(
        verifier.verify(&signed, 10_000, "edge-a"),
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        verifier.verify(&signed, 5_000, "edge-b"),
        Err(TokenError::WrongEdge(_))
    ));

    let forger = TokenSigner::from_seed(&[6; 32]);
    let forged = forger.sign(&sample_token(10_000)).unwrap();
    assert_eq!(
        verifier.verify(&forged, 5_000, "edge-a"),
        Err(TokenError::BadSignature)
    );

    let mut tampered = signed.clone();
    tampered.body[0] ^= 1;
    assert_eq!(
        verifier.verify(&tampered, 5_000, "edge-a"),
        Err(TokenError::BadSignature)
    );

    let mut bad_config = sample_token(10_000);
    bad_config.config.tick_hz = 0;
    let signed = signer.sign(&bad_config).unwrap();
    assert!(matches!(
        verifier.verify(&signed, 5_000, "edge-a"),
        Err(TokenError::InvalidConfig(_))
    ));

    let mut long_edge = sample_token(10_000);
    long_edge.edge_id = "x".repeat(65);
    assert_eq!(signer.sign(&long_edge), Err(TokenError::TooLong));
}

#[test]
fn reject_detail_is_cut_on_a_char_boundary() {
    let long = "é".repeat(200);
    let reject = Reject::new(RejectCode::Expired, &long);
    assert!(reject.detail.len() <= MAX_DETAIL_LEN);
    assert!(reject.detail_text().chars().all(|c| c == 'é'));
}

#[test]
fn snapshot_header_is_what_the_edge_budgets() {
    let snapshot = Datagram::Snapshot(Snapshot {
        tick: 1,
        baseline_tick: 0,
        reference_gap: 0,
        ack_input_seq: 2,
        ticks_left: 3,
        body: vec![7; 100],
    });
    let len = codec::encode_datagram(&snapshot).unwrap().len();
    assert_eq!(len, Snapshot::HEADER_LEN + 100);
}

#[test]
fn config_bounds() {
    assert!(MatchConfig::new("arena").validate().is_ok());
    let bad = MatchConfig {
        max_players: 0,
        ..MatchConfig::new("arena")
    };
    assert_eq!(bad.validate().unwrap_err().field, "max_players");
    for name in ["", "Arena", "9lives", "cap-the-flag", &"x".repeat(33)] {
        let bad = MatchConfig::new(name);
        assert_eq!(bad.validate().unwrap_err().field, "mode", "{name:?}");
    }
    let bad = MatchConfig {
        mode_config: vec![0; 1025],
        ..MatchConfig::new("arena")
    };
    assert_eq!(bad.validate().unwrap_err().field, "mode_config");
}

#[test]
fn one_signature_seats_a_whole_match_and_no_token_admits_another_player() {
    let signer = TokenSigner::from_seed(&[4; 32]);
    let verifier = TokenVerifier::new(&signer.public_key()).unwrap();
    let seats: Vec<(PlayerId, u8, [u8; 16])> = (1..=8)
        .map(|p| (PlayerId(p), (p % 2) as u8, [p as u8; 16]))
        .collect();
    let tokens = signer.sign_match(&sample_token(10_000), &seats).unwrap();
    assert_eq!(tokens.len(), 8);
    assert!(
        tokens.windows(2).all(|w| w[0].signature == w[1].signature),
        "one signature"
    );
    for (token, (player, team, secret)) in tokens.iter().zip(&seats) {
        let claims = verifier.verify(token, 0, "edge-a").unwrap();
        assert_eq!(
            (claims.player_id, claims.team, claims.nonce),
            (*player, *team, *secret),
            "each seat carries its player's team"
        );
        // The text form round-trips.
        assert_eq!(
            SignedToken::from_text(&token.to_text()).as_ref(),
            Some(token)
        );
    }
    // Player 1 pointing at player 2's seat, with their own secret: refused.
    let mut stolen = tokens[0].clone();
    stolen.seat = 1;
    assert_eq!(
        verifier.verify_signature(&stolen),
        Err(TokenError::BadSignature)
    );
    // A guessed secret: refused. A seat past the grant: refused.
    let mut guessed = tokens[2].clone();
    guessed.secret[0] ^= 1;
    assert_eq!(
        verifier.verify_signature(&guessed),
        Err(TokenError::BadSignature)
    );
    let mut beyond = tokens[0].clone();
    beyond.seat = 8;
    assert!(verifier.verify_signature(&beyond).is_err());
    assert!(SignedToken::from_text("a.b").is_none());
    assert!(signer.sign_match(&sample_token(10_000), &[]).is_err());
}
