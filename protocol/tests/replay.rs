//! Replays: what is written reads back frame for frame, seeks land on the right tick,
//! the schema travels in the header, and arbitrary or damaged bytes are refused without
//! a panic.

use outpost_protocol::replay::{FRAMES_PER_CHUNK, ReplayHeader, ReplayReader, ReplayWriter};
use outpost_protocol::replication::View;
use outpost_protocol::schema::{ComponentDef, FieldDef, FieldKind, ModeSchema, Visibility};
use outpost_protocol::{EntityId, MatchConfig, MatchId};
use proptest::prelude::*;

/// A mode no crate implements: replays need only its schema.
fn schema() -> ModeSchema {
    let component = |name: &str, fields| ComponentDef {
        name: name.into(),
        fields,
        visibility: Visibility::Everyone,
        priority: 0,
    };
    ModeSchema {
        mode: "marbles".into(),
        components: vec![
            component(
                "body",
                vec![FieldDef::new(
                    "at",
                    FieldKind::Position {
                        min: [-64.0, -8.0, -64.0],
                        max: [64.0, 32.0, 64.0],
                        step: 1.0 / 256.0,
                    },
                )],
            ),
            component(
                "colour",
                vec![FieldDef::new("hue", FieldKind::Int { min: 0, max: 11 })],
            ),
        ],
        input: Vec::new(),
        events: Vec::new(),
        requests: Vec::new(),
    }
}

fn config(schema: &ModeSchema) -> MatchConfig {
    MatchConfig {
        schema_hash: schema.hash(),
        ..MatchConfig::new("marbles")
    }
}

fn world(tick: u32) -> View {
    let mut view = View::new();
    for id in 1..=20u32 {
        let x = if id <= 4 { tick * 13 + id } else { id * 256 };
        let mask = if id % 3 == 0 { 3 } else { 1 };
        let mut slots = vec![x.min(32_000), 2_048, 5_000 + id];
        if mask == 3 {
            slots.push(id % 12);
        }
        view.push(EntityId(id), mask, &slots);
    }
    view
}

fn header(match_id: u64, schema: &ModeSchema) -> ReplayHeader {
    ReplayHeader {
        match_id: MatchId(match_id),
        config: config(schema),
        schema: schema.encode(),
        started_at_ms: 7,
    }
}

fn recorded(frames: u32) -> (Vec<u8>, Vec<(u32, View)>) {
    let schema = schema();
    let mut writer = ReplayWriter::new(&header(42, &schema), &schema, 1 << 24);
    let mut expected = Vec::new();
    for i in 0..frames {
        let tick = 2 + i * 2;
        let view = world(tick);
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
        reader.schema(),
        &schema(),
        "the schema travels in the header"
    );
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
fn a_replay_whose_schema_does_not_match_its_hash_is_refused() {
    let schema = schema();
    let mut header = header(3, &schema);
    header.config.schema_hash ^= 1;
    let mut writer = ReplayWriter::new(&header, &schema, 1 << 20);
    writer.push(2, &world(2));
    assert!(ReplayReader::parse(writer.finish()).is_err());
}

#[test]
fn a_size_limit_truncates_instead_of_growing() {
    let schema = schema();
    let mut writer = ReplayWriter::new(&header(1, &schema), &schema, 2_000);
    for tick in 1..2_000 {
        writer.push(tick, &world(tick));
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
