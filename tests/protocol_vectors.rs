//! The test vectors of `docs/protocol.md`, in `docs/protocol-vectors.json`: each vector's
//! hex decodes to exactly its value, and its value encodes to exactly its hex, so the
//! document cannot drift from the code. After a deliberate wire change, regenerate the
//! file with `OUTPOST_WRITE_VECTORS=1 cargo test --test protocol_vectors`, then update the
//! document beside it.

use outpost_arena::quantize::{self, QPosition, QVelocity};
use outpost_arena::{self as arena, ArenaConfig};
use outpost_arena::{EntityKind, EntityView, PlayerInput, QMotion};
use outpost_protocol::replication::{self, Layout};
use outpost_protocol::schema;
use outpost_protocol::token::seat_commitment;
use outpost_protocol::{
    Answer, ConnectToken, Control, Datagram, EntityId, GoodbyeReason, Hello, InputFrame,
    MatchConfig, MatchEndReason, MatchEvent, MatchId, PROTOCOL_VERSION, Ping, PlayerId,
    PlayerScore, Pong, Refusal, RefusalCode, Reject, RejectCode, SignedToken, Snapshot,
    TickedEvent, TokenSigner, TokenVerifier, Welcome, codec,
};
use outpost_sim::GameMode as _;
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol-vectors.json");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The signing key of every token vector: the seed 32 × 0x01. Never use it anywhere.
const SEED: [u8; 32] = [1; 32];
const SECRET: [u8; 16] = [0x5e; 16];

fn token() -> SignedToken {
    let terms = ConnectToken {
        player_id: PlayerId(7),
        match_id: MatchId(42),
        team: 0,
        edge_id: "eu-west-1a".into(),
        config: MatchConfig {
            max_players: 2,
            seed: 9,
            ..arena::config(&ArenaConfig {
                props: 0,
                ..ArenaConfig::default()
            })
        },
        issued_at_ms: 1_767_225_600_000,
        expires_at_ms: 1_767_225_660_000,
        nonce: SECRET,
    };
    TokenSigner::from_seed(&SEED)
        .sign_match(
            &terms,
            &[(PlayerId(7), 0, SECRET), (PlayerId(8), 1, [0x8e; 16])],
        )
        .expect("signs")
        .remove(0)
}

fn controls() -> Vec<(&'static str, Control)> {
    let token = token();
    let config = MatchConfig {
        max_players: 2,
        seed: 9,
        ..arena::config(&ArenaConfig {
            props: 0,
            ..ArenaConfig::default()
        })
    };
    vec![
        (
            "hello",
            Control::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                connect_token: token.clone(),
                reconnect_key: None,
            }),
        ),
        (
            "hello_reconnect",
            Control::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                connect_token: token,
                reconnect_key: Some([0xab; 16]),
            }),
        ),
        (
            "welcome",
            Control::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                match_id: MatchId(42),
                player_id: PlayerId(7),
                entity: EntityId(1),
                tick: 0,
                schema: arena::Arena
                    .schema(&config.mode_config)
                    .expect("arena settings")
                    .encode(),
                config,
                reconnect_key: [0xab; 16],
                players: vec![PlayerScore {
                    player: PlayerId(7),
                    entity: EntityId(1),
                    score: 0,
                }],
            }),
        ),
        (
            "reject",
            Control::Reject(Reject::new(RejectCode::MatchFull, "match is full")),
        ),
        (
            "event_hit",
            Control::Event(TickedEvent {
                tick: 600,
                event: arena::Hit {
                    shooter: EntityId(1),
                    target: EntityId(2),
                    shooter_score: 3,
                }
                .event(),
            }),
        ),
        (
            "event_match_ended",
            Control::Event(TickedEvent {
                tick: 18_000,
                event: MatchEvent::MatchEnded {
                    reason: MatchEndReason::TimeUp,
                    scores: vec![
                        PlayerScore {
                            player: PlayerId(7),
                            entity: EntityId(1),
                            score: 3,
                        },
                        PlayerScore {
                            player: PlayerId(8),
                            entity: EntityId(2),
                            score: 1,
                        },
                    ],
                },
            }),
        ),
        (
            "ping",
            Control::Ping(Ping {
                client_time_us: 1_000_000,
            }),
        ),
        (
            "pong",
            Control::Pong(Pong {
                client_time_us: 1_000_000,
                server_tick: 61,
            }),
        ),
        ("goodbye_quit", Control::Goodbye(GoodbyeReason::Quit)),
        ("request_plane", request_plane()),
        ("request_mesh", request_mesh()),
        (
            "answer_applied",
            Control::Answer(Answer {
                seq: 1,
                refused: None,
            }),
        ),
        (
            "answer_refused",
            Control::Answer(Answer {
                seq: 2,
                refused: Some(Refusal::new(
                    RefusalCode::OverLimit,
                    "planes of this device: this would make 33, at most 32 are allowed",
                )),
            }),
        ),
    ]
}

/// The request vectors' schema: the AR room's, default settings.
fn ar_schema() -> schema::ModeSchema {
    outpost_ar::schema(&outpost_ar::ArConfig::default())
}

fn ar_request(
    seq: u32,
    name: &str,
    values: &[schema::Value],
    lists: &[&[Vec<schema::Value>]],
) -> Control {
    let request = replication::Requests::new(&ar_schema())
        .encode(seq, name, values, lists)
        .expect("an AR request");
    Control::Request(request)
}

/// A table of 1.2 × 0.8 m, 75 cm up, a metre to +x of the anchor.
fn request_plane() -> Control {
    use schema::Value as V;
    ar_request(
        1,
        "plane",
        &[
            V::Int(0),
            V::Vec3([1.0, 0.75, 0.0]),
            V::Quat([0.0, 0.0, 0.0, 1.0]),
            V::Float(0.6),
            V::Float(0.4),
            V::Enum(1),
        ],
        &[],
    )
}

/// A 1 m square of floor as two triangles.
fn request_mesh() -> Control {
    use schema::Value as V;
    let vertices: Vec<Vec<V>> = [
        [-0.5, 0.0, -0.5],
        [0.5, 0.0, -0.5],
        [0.5, 0.0, 0.5],
        [-0.5, 0.0, 0.5],
    ]
    .iter()
    .map(|v| vec![V::Vec3(*v)])
    .collect();
    let triangles: Vec<Vec<V>> = [[0, 2, 1], [0, 3, 2]]
        .iter()
        .map(|t| t.iter().map(|&i| V::Int(i)).collect())
        .collect();
    ar_request(
        2,
        "mesh",
        &[
            V::Int(1),
            V::Vec3([-2.0, 0.0, 1.0]),
            V::Quat([0.0, 0.0, 0.0, 1.0]),
            V::Enum(0),
        ],
        &[&vertices, &triangles],
    )
}

/// One field's value as its slots read (what a decoder written from the document gets):
/// an integer's value, another one-slot field's slot, or the list of a field's slots.
fn slots_json(def: &schema::FieldDef, value: &schema::Value) -> Value {
    let mut slots = vec![0; def.kind.slots()];
    def.kind.quantize(value, &mut slots);
    match (&def.kind, slots.as_slice()) {
        (schema::FieldKind::Int { min, .. }, [slot]) => json!(i64::from(*slot) + i64::from(*min)),
        (_, [slot]) => json!(slot),
        (_, many) => json!(many),
    }
}

fn fields_json(
    defs: &[schema::FieldDef],
    values: &[schema::Value],
) -> serde_json::Map<String, Value> {
    defs.iter()
        .zip(values)
        .map(|(d, v)| (d.name.clone(), slots_json(d, v)))
        .collect()
}

/// A request's fields and lists by name, by the AR schema (`None` for other messages).
fn request_fields(message: &Control) -> Option<Value> {
    let Control::Request(request) = message else {
        return None;
    };
    let schema = ar_schema();
    let requests = replication::Requests::new(&schema);
    let decoded = requests
        .decode(request)
        .expect("one of the room's requests");
    let def = schema.requests.iter().find(|r| r.name == decoded.name)?;
    let mut out = fields_json(&def.fields, &decoded.values);
    out.insert("request".into(), json!(decoded.name));
    let lists: serde_json::Map<String, Value> = def
        .lists
        .iter()
        .zip(&decoded.lists)
        .map(|(l, items)| {
            let items: Vec<Value> = items
                .iter()
                .map(|item| Value::Object(fields_json(&l.fields, item)))
                .collect();
            (l.name.clone(), json!(items))
        })
        .collect();
    out.insert("lists".into(), Value::Object(lists));
    Some(Value::Object(out))
}

/// Two entities as an edge quantizes them for the default arena: the client's own
/// character (with its motion) and a prop.
fn views() -> (Vec<EntityView>, Vec<EntityView>) {
    let q = ArenaConfig::default().quantizer();
    let character = EntityView {
        id: EntityId(1),
        kind: EntityKind::Player,
        position: q.position([1.0, 0.9, -2.0]),
        rotation: quantize::rotation([0.0, 0.0, 0.0, 1.0]),
        motion: Some(QMotion {
            velocity: quantize::velocity([0.0, 0.0, 6.0]),
            grounded: true,
        }),
    };
    let prop = EntityView {
        id: EntityId(3),
        kind: EntityKind::Prop,
        position: q.position([4.0, 0.5, 4.0]),
        rotation: quantize::rotation([0.0, 0.38268343, 0.0, 0.9238795]),
        motion: None,
    };
    let keyframe = vec![character, prop];
    // A tick later: the character moved 0.1 m forward; the prop is gone.
    let mut moved = character;
    moved.position = q.position([1.0, 0.9, -1.9]);
    (keyframe, vec![moved])
}

/// A crowd of props, and a tick later: most moved by a little (one by 10 m), one turned
/// a little and one by a quarter turn, one gone, two new ones, a second character. Its
/// body exercises what the two-entity vectors cannot: probabilities adapting over many
/// decisions, the same-components bit, a new entity's position against the one before.
fn crowd() -> (Vec<EntityView>, Vec<EntityView>) {
    let q = ArenaConfig::default().quantizer();
    let prop = |id: u32, x: f32, z: f32, yaw: f32| {
        let (s, c) = (yaw / 2.0).sin_cos();
        EntityView {
            id: EntityId(id),
            kind: EntityKind::Prop,
            position: q.position([x, 0.5, z]),
            rotation: quantize::rotation([0.0, s, 0.0, c]),
            motion: None,
        }
    };
    let keyframe: Vec<EntityView> = (1..=12)
        .map(|i| {
            prop(
                i,
                i as f32 * 1.5 - 9.0,
                (i % 4) as f32 * 2.0,
                i as f32 * 0.2,
            )
        })
        .collect();
    let mut next = Vec::new();
    for e in &keyframe {
        let i = e.id.0;
        let mut e = *e;
        match i {
            8 => continue,
            5 => e.position = q.position([-1.5 + 10.0, 0.5, 2.0]),
            4 => e.rotation = quantize::rotation([0.0, 0.40, 0.0, 0.9165]),
            6 => e = prop(6, 0.0, 4.0, 1.2 + std::f32::consts::FRAC_PI_2),
            _ if i % 3 != 0 => {
                e.position.0[0] += i * 3;
                e.position.0[2] -= i;
            }
            _ => {}
        }
        next.push(e);
    }
    next.push(prop(14, 3.0, -3.0, 0.0));
    next.push(prop(15, 3.25, -3.5, 0.0));
    next.push(EntityView {
        id: EntityId(20),
        kind: EntityKind::Player,
        position: q.position([-6.0, 0.9, 6.0]),
        rotation: quantize::rotation([0.0, 0.0, 0.0, 1.0]),
        motion: None,
    });
    (keyframe, next)
}

/// Six props at three snapshots a tick apart: the reference, the baseline and the view
/// coded against both. Four glide and turn steadily (their motion from the reference to
/// the baseline predicts the view but for one that speeds up), one stops, one's rotation
/// drops another component between the reference and the baseline (not extrapolated).
fn glide() -> [Vec<EntityView>; 3] {
    let q = ArenaConfig::default().quantizer();
    let at = |k: u32| -> Vec<EntityView> {
        (1..=6u32)
            .map(|i| {
                let moving = if i == 5 { k.min(1) } else { k };
                let speed = if i == 4 && k == 2 { 2 * i + 3 } else { 2 * i };
                let yaw = if i == 6 {
                    // Past a quarter turn: y takes over from w as the largest component.
                    [1.5f32, 1.6, 1.7][k as usize]
                } else {
                    0.1 * i as f32 + 0.02 * (i * moving) as f32
                };
                let (sin, cos) = (yaw / 2.0).sin_cos();
                let mut position = q.position([i as f32 * 2.0 - 7.0, 0.5, 3.0]);
                position.0[0] += speed * moving;
                position.0[2] += i * moving;
                EntityView {
                    id: EntityId(i),
                    kind: EntityKind::Prop,
                    position,
                    rotation: quantize::rotation([0.0, sin, 0.0, cos]),
                    motion: None,
                }
            })
            .collect()
    };
    [at(0), at(1), at(2)]
}

/// A snapshot body: the arena's views, generically coded.
fn body(layout: &Layout, baseline: &[EntityView], view: &[EntityView]) -> Vec<u8> {
    predicted_body(layout, baseline, None, view)
}

/// A snapshot body coded against a baseline and, if given, a reference view a tick
/// before it, for a view a tick after it.
fn predicted_body(
    layout: &Layout,
    baseline: &[EntityView],
    reference: Option<&[EntityView]>,
    view: &[EntityView],
) -> Vec<u8> {
    let reference = reference.map(arena::replicated);
    replication::encode_predicted(
        layout,
        &arena::replicated(baseline),
        reference.as_ref().map(|view| replication::Reference {
            view,
            behind: 1,
            ahead: 1,
        }),
        &arena::replicated(view),
    )
}

fn view_json(views: &[EntityView]) -> Value {
    Value::Array(
        views
            .iter()
            .map(|v| {
                json!({
                    "id": v.id.0,
                    "kind": format!("{:?}", v.kind),
                    "position": v.position.0,
                    "rotation": {"largest": v.rotation.largest, "components": v.rotation.components},
                    "motion": v.motion.map(|m| json!({"velocity": m.velocity.0, "grounded": m.grounded})),
                })
            })
            .collect(),
    )
}

/// A mode event's fields by name, as the arena's schema reads them (`None` for other
/// messages).
fn mode_event_fields(message: &Control) -> Option<Value> {
    let Control::Event(TickedEvent {
        event: MatchEvent::Mode(event),
        ..
    }) = message
    else {
        return None;
    };
    let schema = arena::schema(&ArenaConfig::default());
    let events = replication::Events::new(&schema);
    let (name, values) = events.decode(event).expect("one of the arena's events");
    let def = schema.events.iter().find(|e| e.name == name)?;
    let mut out = serde_json::Map::new();
    out.insert("event".into(), json!(name));
    for (field, value) in def.fields.iter().zip(values) {
        let value = match value {
            schema::Value::Entity(id) => json!(id.0),
            schema::Value::Int(i) => json!(i),
            other => json!(format!("{other:?}")),
        };
        out.insert(field.name.clone(), value);
    }
    Some(Value::Object(out))
}

fn build() -> Value {
    let mut vectors = Vec::new();
    for (name, message) in controls() {
        let mut vector = json!({
            "name": name,
            "kind": "frame",
            "value": serde_json::to_value(&message).expect("serde"),
            "hex": hex(&codec::encode_frame(&message).expect("encodes")),
        });
        if let Some(fields) = mode_event_fields(&message).or_else(|| request_fields(&message)) {
            vector["fields"] = fields;
        }
        vectors.push(vector);
    }
    let ar = ar_schema();
    vectors.push(json!({
        "name": "schema_ar",
        "kind": "schema",
        "about": "the AR room's schema, default settings: the request vectors' schema",
        "hash": ar.hash(),
        "hex": hex(&ar.encode()),
    }));
    let arena_inputs = vec![
        PlayerInput {
            seq: 12,
            move_z: 127,
            yaw: 16384,
            view_tick: 36,
            ..PlayerInput::default()
        },
        PlayerInput {
            seq: 11,
            move_z: 127,
            buttons: PlayerInput::JUMP,
            view_tick: 35,
            ..PlayerInput::default()
        },
    ];
    let batch = arena::encode_inputs(&arena_inputs);
    vectors.push(json!({
        "name": "input_batch_arena",
        "kind": "input_batch",
        "value": serde_json::to_value(&arena_inputs).expect("serde"),
        "hex": hex(&batch),
    }));
    let input = Datagram::Input(InputFrame {
        ack_snapshot_tick: 40,
        inputs: batch,
    });
    let (keyframe, next) = views();
    let layout = Layout::new(&arena::schema(&ArenaConfig::default()));
    let snapshot = Datagram::Snapshot(Snapshot {
        tick: 42,
        baseline_tick: 0,
        reference_gap: 0,
        ack_input_seq: 12,
        ticks_left: 17_958,
        body: body(&layout, &[], &keyframe),
    });
    for (name, datagram) in [("input", input), ("snapshot", snapshot)] {
        vectors.push(json!({
            "name": name,
            "kind": "datagram",
            "value": serde_json::to_value(&datagram).expect("serde"),
            "hex": hex(&codec::encode_datagram(&datagram).expect("encodes")),
        }));
    }
    let (crowd_keyframe, crowd_next) = crowd();
    let bodies: [(&str, &str, &[EntityView], &[EntityView]); 3] = [
        (
            "snapshot_body_keyframe",
            "the arena's default settings (half_extent 40: 16 bits per position axis)",
            &[],
            &keyframe,
        ),
        (
            "snapshot_body_delta",
            "the arena's default settings",
            &keyframe,
            &next,
        ),
        (
            "snapshot_body_crowd",
            "the arena's default settings",
            &crowd_keyframe,
            &crowd_next,
        ),
    ];
    for (name, config, baseline, view) in bodies {
        vectors.push(json!({
            "name": name,
            "kind": "snapshot_body",
            "config": config,
            "baseline": view_json(baseline),
            "value": view_json(view),
            "hex": hex(&body(&layout, baseline, view)),
        }));
    }
    let [reference, baseline, view] = glide();
    vectors.push(json!({
        "name": "snapshot_body_predicted",
        "kind": "snapshot_body",
        "config": "the arena's default settings; reference_gap 1, the view a tick after the baseline",
        "reference": view_json(&reference),
        "behind": 1,
        "ahead": 1,
        "baseline": view_json(&baseline),
        "value": view_json(&view),
        "hex": hex(&predicted_body(&layout, &baseline, Some(&reference), &view)),
    }));
    let token = token();
    vectors.push(json!({
        "name": "token",
        "kind": "token",
        "signing_seed": hex(&SEED),
        "public_key": hex(&TokenSigner::from_seed(&SEED).public_key()),
        "grant_hex": hex(&token.body),
        "signature": hex(&token.signature),
        "seat": token.seat,
        "secret": hex(&token.secret),
        "commitment": hex(&seat_commitment(&token.secret)),
        "text": token.to_text(),
    }));
    json!({
        "about": "Test vectors of docs/protocol.md; checked by tests/protocol_vectors.rs.",
        "protocol_version": PROTOCOL_VERSION,
        "vectors": vectors,
    })
}

fn from_view_json(value: &Value) -> Vec<EntityView> {
    let u32s = |v: &Value| -> Vec<u32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("number") as u32)
            .collect()
    };
    value
        .as_array()
        .expect("views")
        .iter()
        .map(|e| {
            let p = u32s(&e["position"]);
            let c = u32s(&e["rotation"]["components"]);
            EntityView {
                id: EntityId(e["id"].as_u64().expect("id") as u32),
                kind: if e["kind"] == "Player" {
                    EntityKind::Player
                } else {
                    EntityKind::Prop
                },
                position: QPosition([p[0], p[1], p[2]]),
                rotation: quantize::QRotation {
                    largest: e["rotation"]["largest"].as_u64().expect("largest") as u8,
                    components: [c[0] as u16, c[1] as u16, c[2] as u16],
                },
                motion: e["motion"].as_object().map(|m| {
                    let v = u32s(&m["velocity"]);
                    QMotion {
                        velocity: QVelocity([v[0], v[1], v[2]]),
                        grounded: m["grounded"].as_bool().expect("bool"),
                    }
                }),
            }
        })
        .collect()
}

#[test]
fn the_documented_vectors_decode_to_their_values_and_back() {
    if std::env::var_os("OUTPOST_WRITE_VECTORS").is_some() {
        // One vector per line: the values' byte lists stay readable.
        let all = build();
        let lines: Vec<String> = all["vectors"]
            .as_array()
            .expect("vectors")
            .iter()
            .map(|v| format!("    {v}"))
            .collect();
        let text = format!(
            "{{\n  \"about\": {},\n  \"protocol_version\": {},\n  \"vectors\": [\n{}\n  ]\n}}\n",
            all["about"],
            all["protocol_version"],
            lines.join(",\n")
        );
        std::fs::write(FILE, text).expect("vectors written");
    }
    let text = std::fs::read_to_string(FILE).expect("docs/protocol-vectors.json");
    let file: Value = serde_json::from_str(&text).expect("vectors parse");
    assert_eq!(file["protocol_version"], PROTOCOL_VERSION);
    let layout = Layout::new(&arena::schema(&ArenaConfig::default()));
    let mut checked = 0;
    for vector in file["vectors"].as_array().expect("vectors") {
        let name = vector["name"].as_str().expect("name");
        let bytes = unhex(vector["hex"].as_str().unwrap_or_default());
        match vector["kind"].as_str().expect("kind") {
            "frame" => {
                let value: Control =
                    serde_json::from_value(vector["value"].clone()).expect("a control value");
                let (decoded, used) = codec::decode_frame(&bytes)
                    .expect("decodes")
                    .expect("whole frame");
                assert_eq!((decoded, used), (value.clone(), bytes.len()), "{name}");
                assert_eq!(
                    codec::encode_frame(&value).expect("encodes"),
                    bytes,
                    "{name}"
                );
                assert_eq!(
                    mode_event_fields(&value)
                        .or_else(|| request_fields(&value))
                        .as_ref(),
                    vector.get("fields"),
                    "{name}: the event's or request's fields"
                );
            }
            "datagram" => {
                let value: Datagram =
                    serde_json::from_value(vector["value"].clone()).expect("a datagram value");
                assert_eq!(
                    codec::decode_datagram(&bytes).expect("decodes"),
                    value,
                    "{name}"
                );
                assert_eq!(
                    codec::encode_datagram(&value).expect("encodes"),
                    bytes,
                    "{name}"
                );
            }
            "snapshot_body" => {
                let baseline = from_view_json(&vector["baseline"]);
                let value = from_view_json(&vector["value"]);
                let reference = vector.get("reference").map(from_view_json);
                let replicated = reference.as_deref().map(arena::replicated);
                let decoded = replication::decode_predicted(
                    &layout,
                    &arena::replicated(&baseline),
                    replicated.as_ref().map(|view| replication::Reference {
                        view,
                        behind: 1,
                        ahead: 1,
                    }),
                    &bytes,
                )
                .expect("decodes");
                assert_eq!(arena::from_replicated(&decoded), value, "{name}");
                assert_eq!(
                    predicted_body(&layout, &baseline, reference.as_deref(), &value),
                    bytes,
                    "{name}"
                );
                if reference.is_some() {
                    // The prediction pays: half the bytes of the same view against the
                    // baseline alone (10 against 20, protocol.md says).
                    let plain = body(&layout, &baseline, &value).len();
                    assert!(
                        bytes.len() * 2 <= plain,
                        "{name}: {} and {plain}",
                        bytes.len()
                    );
                }
            }
            "input_batch" => {
                let value: Vec<PlayerInput> =
                    serde_json::from_value(vector["value"].clone()).expect("arena inputs");
                assert_eq!(arena::decode_inputs(&bytes), Ok(value.clone()), "{name}");
                assert_eq!(arena::encode_inputs(&value), bytes, "{name}");
            }
            "schema" => {
                let decoded = schema::ModeSchema::decode(&bytes).expect("decodes");
                assert_eq!(decoded, ar_schema(), "{name}");
                assert_eq!(json!(decoded.hash()), vector["hash"], "{name}");
                assert_eq!(decoded.encode(), bytes, "{name}");
            }
            "token" => {
                let seed: [u8; 32] = unhex(vector["signing_seed"].as_str().expect("seed"))
                    .try_into()
                    .expect("32 bytes");
                let public: [u8; 32] = unhex(vector["public_key"].as_str().expect("key"))
                    .try_into()
                    .expect("32 bytes");
                assert_eq!(TokenSigner::from_seed(&seed).public_key(), public);
                let token = SignedToken::from_text(vector["text"].as_str().expect("text"))
                    .expect("the text form parses");
                assert_eq!(hex(&token.body), vector["grant_hex"]);
                assert_eq!(hex(&token.signature), vector["signature"]);
                assert_eq!(hex(&token.secret), vector["secret"]);
                assert_eq!(hex(&seat_commitment(&token.secret)), vector["commitment"]);
                let verifier = TokenVerifier::new(&public).expect("a key");
                let claims = verifier.verify_signature(&token).expect("verifies");
                assert_eq!(
                    (claims.player_id, claims.match_id),
                    (PlayerId(7), MatchId(42))
                );
                // Ed25519 is deterministic: the same grant signs to the same bytes.
                assert_eq!(self::token(), token);
            }
            other => panic!("{name}: unknown kind {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 22, "every vector checked");
}
