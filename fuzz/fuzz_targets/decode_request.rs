//! Any bytes as a request body, against a schema with a mesh-like request (fields and two
//! long lists): an error, or values that encode again and decode to as many items. (Not
//! to the same bytes: text need not be UTF-8 and a rotation's slots need not be the
//! canonical smallest three, so values read back are normalised.)
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use outpost_protocol::Request;
use outpost_protocol::replication::Requests;
use outpost_protocol::schema::{FieldDef, FieldKind, ListDef, ModeSchema, RequestDef};

static REQUESTS: LazyLock<Requests> = LazyLock::new(|| {
    let index = |name: &str| FieldDef::new(name, FieldKind::Int { min: 0, max: 1023 });
    let schema = ModeSchema {
        mode: "fuzz".into(),
        requests: vec![RequestDef {
            name: "mesh".into(),
            fields: vec![
                FieldDef::new("id", FieldKind::Int { min: 0, max: 255 }),
                FieldDef::new("rotation", FieldKind::Rotation { bits: 12 }),
                FieldDef::new("name", FieldKind::Text { max_len: 16 }),
            ],
            lists: vec![
                ListDef {
                    name: "vertices".into(),
                    fields: vec![FieldDef::new(
                        "at",
                        FieldKind::Vector {
                            min: [-4.0; 3],
                            max: [4.0; 3],
                            step: 0.005,
                        },
                    )],
                    max_items: 1024,
                },
                ListDef {
                    name: "triangles".into(),
                    fields: vec![index("a"), index("b"), index("c")],
                    max_items: 2048,
                },
            ],
        }],
        ..ModeSchema::default()
    };
    schema.validate().expect("a valid schema");
    Requests::new(&schema)
});

fuzz_target!(|data: &[u8]| {
    let request = Request {
        seq: 1,
        kind: 0,
        body: data.to_vec(),
    };
    if let Ok(values) = REQUESTS.decode(&request) {
        let lists: Vec<&[Vec<_>]> = values.lists.iter().map(Vec::as_slice).collect();
        let again = REQUESTS
            .encode(1, values.name, &values.values, &lists)
            .expect("decoded values encode");
        let twice = REQUESTS.decode(&again).expect("and decode again");
        let counts = |v: &outpost_protocol::replication::RequestValues<'_>| {
            v.lists.iter().map(Vec::len).collect::<Vec<_>>()
        };
        assert_eq!(counts(&twice), counts(&values), "as many items");
    }
});
