//! Replays: what is written reads back frame for frame, seeks land on the right tick,
//! and arbitrary or damaged bytes are refused without a panic.

use outpost_protocol::replay::{FRAMES_PER_CHUNK, ReplayHeader, ReplayReader, ReplayWriter};
use outpost_protocol::{EntityId, EntityKind, EntityState, MatchConfig, MatchId, Quantizer};
use proptest::prelude::*;

fn world(tick: u32, config: &MatchConfig) -> Vec<outpost_protocol::EntityView> {
    let quantizer = Quantizer::for_config(config);
    (1..=20u32)
        .map(|id| {
            let moving = id <= 4;
            let x = if moving {
                tick as f32 * 0.05 + id as f32
            } else {
                id as f32
            };
            EntityState {
                id: EntityId(id),
                kind: if id <= 4 {
                    EntityKind::Player
                } else {
                    EntityKind::Prop
                },
                position: [x.min(30.0), 1.0, -(id as f32)],
                ..EntityState::default()
            }
            .quantize(&quantizer, None)
        })
        .collect()
}

fn recorded(frames: u32) -> (Vec<u8>, Vec<(u32, Vec<outpost_protocol::EntityView>)>) {
    let config = MatchConfig::default();
    let header = ReplayHeader {
        match_id: MatchId(42),
        config: config.clone(),
        started_at_ms: 7,
    };
    let mut writer = ReplayWriter::new(&header, 1 << 24);
    let mut expected = Vec::new();
    for i in 0..frames {
        let tick = 2 + i * 2;
        let view = world(tick, &config);
        writer.push(tick, &view);
        expected.push((tick, view));
    }
    assert!(!writer.truncated());
    (writer.finish(), expected)
}

#[test]
fn a_replay_reads_back_frame_for_frame_and_seeks() {
    let (bytes, expected) = recorded(FRAMES_PER_CHUNK * 2 + 17);
    let reader = ReplayReader::parse(bytes).expect("parses");
    assert_eq!(reader.header().match_id, MatchId(42));
    assert_eq!(
        reader.chunks().len(),
        3,
        "two full chunks and a partial one"
    );
    let decoded: Vec<_> = (0..reader.chunks().len())
        .flat_map(|i| reader.decode_chunk(i).expect("decodes"))
        .collect();
    assert_eq!(decoded, expected);
    let middle = expected[FRAMES_PER_CHUNK as usize + 5].0;
    let chunk = reader.chunk_at(middle).expect("a chunk");
    assert_eq!(chunk, 1);
    assert_eq!(
        reader.chunk_at(expected.last().expect("frames").0 + 1),
        None
    );
}

#[test]
fn a_size_limit_truncates_instead_of_growing() {
    let config = MatchConfig::default();
    let header = ReplayHeader {
        match_id: MatchId(1),
        config: config.clone(),
        started_at_ms: 0,
    };
    let mut writer = ReplayWriter::new(&header, 2_000);
    for tick in 1..2_000 {
        writer.push(tick, &world(tick, &config));
    }
    assert!(writer.truncated());
    let bytes = writer.finish();
    assert!(bytes.len() < 2_000 + 64 * 1024, "bounded: {}", bytes.len());
    ReplayReader::parse(bytes).expect("what was kept still reads");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(reader) = ReplayReader::parse(bytes) {
            for i in 0..reader.chunks().len() {
                let _ = reader.decode_chunk(i);
            }
        }
    }

    #[test]
    fn damaged_replays_are_refused_or_decode_without_panic(at in 0usize..4096, flip in 1u8..=255) {
        let (mut bytes, _) = recorded(40);
        let at = at % bytes.len();
        bytes[at] ^= flip;
        if let Ok(reader) = ReplayReader::parse(bytes) {
            for i in 0..reader.chunks().len() {
                let _ = reader.decode_chunk(i);
            }
        }
    }
}
