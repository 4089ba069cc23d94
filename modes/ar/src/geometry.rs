//! Device-scanned geometry: planes and meshes a device uploads (the mode's `plane`,
//! `mesh` and `remove` requests), turned into static colliders every shared object
//! collides with the same way, and replicated as `surface` entities so every device —
//! late joiners too — knows what the room holds.
//!
//! Each surface belongs to the device that uploaded it, under the device's own id for it
//! (0..=255, one numbering for planes and one for meshes): uploading the same id again
//! replaces it, `remove` takes it away. Surfaces outlive their device's connection; they
//! are the room's. Bounds: per mesh by the schema ([`MESH_VERTICES`], [`MESH_TRIANGLES`],
//! one request of at most [`outpost_protocol::MAX_REQUEST_BYTES`]); per device and per
//! room by [`crate::ArConfig`] (`device_planes`, `device_triangles`, `room_planes`,
//! `room_triangles`). A request over a bound is refused ([`RefusalCode::OverLimit`]) and
//! changes nothing.

use bevy_ecs::prelude::*;
use outpost_protocol::replication::{RequestValues, Row};
use outpost_protocol::schema::{FieldDef, FieldKind, ListDef, RequestDef, Value};
use outpost_protocol::{EntityId, Refusal, RefusalCode};
use outpost_sim::rapier3d::prelude::*;
use outpost_sim::{NetIds, Physics, Requester};

use crate::vec3::{Map2, sub};
use crate::{ArConfig, POSITION_STEP, Settings};

/// What a surface is, as the device's platform classified it (ARKit's and ARCore's
/// plane classes, and "other").
pub const CLASSES: [&str; 8] = [
    "floor", "table", "wall", "ceiling", "seat", "door", "window", "other",
];
/// Most vertices of one mesh.
pub const MESH_VERTICES: u16 = 1024;
/// Most triangles of one mesh.
pub const MESH_TRIANGLES: u16 = 2048;
/// Farthest a mesh vertex may be from the mesh's centre, metres, per axis.
pub const MESH_HALF_EXTENT: f32 = 4.0;
/// Resolution of mesh vertices and plane extents, metres.
pub const SURFACE_STEP: f32 = 0.005;
/// Largest half-extent of a plane, metres.
pub const PLANE_HALF_EXTENT: f32 = 16.0;
/// Half the thickness of a plane's collider, which lies under the plane (on the side
/// away from its normal, the local +y), so that what rests on it rests at the plane.
pub const PLANE_HALF_THICKNESS: f32 = 0.02;
/// Marks a collider as a surface's in its `user_data` (the low bits hold its id).
pub(crate) const SURFACE_TAG: u128 = 1 << 64;

/// A plane or a mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurfaceKind {
    /// A bounded plane: a rectangle of `extent` half-sizes along its local x and z.
    Plane,
    /// A triangle mesh.
    Mesh,
}

/// One uploaded surface.
#[derive(Component, Debug, Clone)]
pub struct Surface {
    /// Plane or mesh.
    pub kind: SurfaceKind,
    /// The device that uploaded it, and its id for it.
    pub owner: EntityId,
    /// The device's id for it.
    pub local: u8,
    /// Its class ([`CLASSES`] index).
    pub class: u32,
    /// Its centre and rotation in the room's frame.
    pub centre: [f32; 3],
    /// Rotation, quaternion `x, y, z, w`.
    pub rotation: [f32; 4],
    /// Half-extents in its own frame: a plane's along x and z (y 0); a mesh's box.
    pub extent: [f32; 3],
    /// Triangles (0 for a plane).
    pub triangles: u32,
    /// Its fixed body (the collider hangs on it).
    pub body: RigidBodyHandle,
}

fn class_field() -> FieldDef {
    FieldDef::new(
        "class",
        FieldKind::Enum {
            variants: CLASSES.map(str::to_owned).to_vec(),
        },
    )
}

fn id_field() -> FieldDef {
    FieldDef::new("id", FieldKind::Int { min: 0, max: 255 })
}

/// The room's requests: `plane`, `mesh` and `remove`. `room` is the room's position
/// field (centres are anywhere a position may be).
pub(crate) fn requests(room: &FieldKind) -> Vec<RequestDef> {
    let extent = || FieldKind::Float {
        min: SURFACE_STEP,
        max: PLANE_HALF_EXTENT,
        step: SURFACE_STEP,
    };
    let vertex = |name: &str| {
        FieldDef::new(
            name,
            FieldKind::Int {
                min: 0,
                max: i32::from(MESH_VERTICES) - 1,
            },
        )
    };
    vec![
        RequestDef {
            name: "plane".into(),
            fields: vec![
                id_field(),
                FieldDef::new("centre", room.clone()),
                FieldDef::new("rotation", FieldKind::Rotation { bits: 12 }),
                FieldDef::new("half_x", extent()),
                FieldDef::new("half_z", extent()),
                class_field(),
            ],
            lists: Vec::new(),
        },
        RequestDef {
            name: "mesh".into(),
            fields: vec![
                id_field(),
                FieldDef::new("centre", room.clone()),
                FieldDef::new("rotation", FieldKind::Rotation { bits: 12 }),
                class_field(),
            ],
            lists: vec![
                ListDef {
                    name: "vertices".into(),
                    fields: vec![FieldDef::new(
                        "at",
                        FieldKind::Vector {
                            min: [-MESH_HALF_EXTENT; 3],
                            max: [MESH_HALF_EXTENT; 3],
                            step: SURFACE_STEP,
                        },
                    )],
                    max_items: MESH_VERTICES,
                },
                ListDef {
                    name: "triangles".into(),
                    fields: vec![vertex("a"), vertex("b"), vertex("c")],
                    max_items: MESH_TRIANGLES,
                },
            ],
        },
        RequestDef {
            name: "remove".into(),
            fields: vec![
                id_field(),
                FieldDef::new(
                    "what",
                    FieldKind::Enum {
                        variants: vec!["plane".into(), "mesh".into()],
                    },
                ),
            ],
            lists: Vec::new(),
        },
    ]
}

/// The replicated `surface` component's fields.
pub(crate) fn surface_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new(
            "kind",
            FieldKind::Enum {
                variants: vec!["plane".into(), "mesh".into()],
            },
        ),
        class_field(),
        FieldDef::new(
            "extent",
            FieldKind::Vector {
                min: [0.0; 3],
                max: [PLANE_HALF_EXTENT; 3],
                step: SURFACE_STEP,
            },
        ),
        FieldDef::new("owner", FieldKind::Entity),
        FieldDef::new(
            "triangles",
            FieldKind::Int {
                min: 0,
                max: i32::from(MESH_TRIANGLES),
            },
        ),
    ]
}

/// A surface's replicated row.
pub(crate) fn row(surface: &Surface) -> Row {
    let kind = match surface.kind {
        SurfaceKind::Plane => 0,
        SurfaceKind::Mesh => 1,
    };
    vec![
        ("position", vec![Value::Vec3(surface.centre)]),
        ("rotation", vec![Value::Quat(surface.rotation)]),
        (
            "surface",
            vec![
                Value::Enum(kind),
                Value::Enum(surface.class),
                Value::Vec3(surface.extent),
                Value::Entity(surface.owner),
                Value::Int(i64::from(surface.triangles)),
            ],
        ),
    ]
}

fn refuse(code: RefusalCode, detail: impl AsRef<str>) -> Refusal {
    Refusal::new(code, detail.as_ref())
}

/// The shape to build, once a request has passed every check.
enum Build {
    Plane {
        half_x: f32,
        half_z: f32,
    },
    Mesh {
        vertices: Vec<Vector>,
        triangles: Vec<[u32; 3]>,
    },
}

/// Applies a `plane`, `mesh` or `remove` request of `from`'s device, or refuses it
/// leaving the room as it was.
pub(crate) fn apply(
    world: &mut World,
    from: Requester,
    request: &RequestValues<'_>,
) -> Result<(), Refusal> {
    let settings = world.resource::<Settings>().0;
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    };
    let malformed = || refuse(RefusalCode::Malformed, "fields not as the schema declares");
    let id = int(request.values.first())
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(malformed)?;
    match request.name {
        "remove" => {
            let kind = match request.values.get(1) {
                Some(Value::Enum(0)) => SurfaceKind::Plane,
                Some(Value::Enum(1)) => SurfaceKind::Mesh,
                _ => return Err(malformed()),
            };
            let Some((entity, body)) = find(world, from.net_id, kind, id).map(|(e, s)| (e, s.body))
            else {
                return Err(refuse(
                    RefusalCode::Invalid,
                    format!("this device has no {} {id}", kind_name(kind)),
                ));
            };
            world
                .resource_mut::<Physics>()
                .world
                .remove_body_with_colliders(body, true);
            world.despawn(entity);
            Ok(())
        }
        "plane" | "mesh" => {
            let (Some(Value::Vec3(centre)), Some(Value::Quat(rotation))) =
                (request.values.get(1), request.values.get(2))
            else {
                return Err(malformed());
            };
            let (centre, rotation) = (*centre, crate::normalised(*rotation));
            let (lo, hi) = settings.volume();
            let slack = POSITION_STEP;
            let inside = (0..3).all(|a| centre[a] >= lo[a] - slack && centre[a] <= hi[a] + slack);
            if !inside {
                return Err(refuse(
                    RefusalCode::Invalid,
                    format!("centre {centre:?} is outside the room's volume {lo:?}..{hi:?}"),
                ));
            }
            let (kind, class, build, extent, triangles) = if request.name == "plane" {
                let floats: Vec<f32> = request.values[3..5]
                    .iter()
                    .filter_map(|v| match v {
                        Value::Float(f) => Some(*f),
                        _ => None,
                    })
                    .collect();
                let (&[half_x, half_z], Some(Value::Enum(class))) =
                    (floats.as_slice(), request.values.get(5))
                else {
                    return Err(malformed());
                };
                (
                    SurfaceKind::Plane,
                    *class,
                    Build::Plane { half_x, half_z },
                    [half_x, 0.0, half_z],
                    0,
                )
            } else {
                let Some(Value::Enum(class)) = request.values.get(3) else {
                    return Err(malformed());
                };
                let (vertices, triangles) = mesh(request)?;
                let extent = half_box(&vertices);
                let n = triangles.len() as u32;
                (
                    SurfaceKind::Mesh,
                    *class,
                    Build::Mesh {
                        vertices,
                        triangles,
                    },
                    extent,
                    n,
                )
            };
            check_limits(world, &settings, from.net_id, kind, id, triangles)?;
            let shape = match build {
                Build::Plane { half_x, half_z } => {
                    // The slab hangs under the plane: its top face is the plane.
                    ColliderBuilder::cuboid(half_x, PLANE_HALF_THICKNESS, half_z)
                        .translation(Vector::new(0.0, -PLANE_HALF_THICKNESS, 0.0))
                }
                Build::Mesh {
                    vertices,
                    triangles,
                } => ColliderBuilder::trimesh(vertices, triangles)
                    .map_err(|e| refuse(RefusalCode::Invalid, format!("not a usable mesh: {e}")))?,
            };
            // Every check passed: now, and only now, the room changes.
            let existing = find(world, from.net_id, kind, id).map(|(e, s)| (e, s.body));
            let net_id = match existing {
                Some((entity, body)) => {
                    world
                        .resource_mut::<Physics>()
                        .world
                        .remove_body_with_colliders(body, true);
                    let net = world.get::<outpost_sim::NetId>(entity).map(|n| n.0);
                    world.despawn(entity);
                    net
                }
                None => None,
            };
            let net_id = net_id.unwrap_or_else(|| world.resource_mut::<NetIds>().allocate());
            let pose = Pose::from_parts(
                Vector::new(centre[0], centre[1], centre[2]),
                Rotation::from_xyzw(rotation[0], rotation[1], rotation[2], rotation[3]),
            );
            let physics = &mut world.resource_mut::<Physics>().world;
            let body = physics.insert_body(RigidBodyBuilder::fixed().pose(pose));
            physics.insert_collider(
                shape
                    .user_data(SURFACE_TAG | u128::from(net_id.0))
                    .friction(0.7)
                    .restitution(0.2),
                Some(body),
            );
            world.spawn((
                outpost_sim::NetId(net_id),
                Surface {
                    kind,
                    owner: from.net_id,
                    local: id,
                    class,
                    centre,
                    rotation,
                    extent,
                    triangles,
                    body,
                },
            ));
            Ok(())
        }
        other => Err(refuse(
            RefusalCode::Unsupported,
            format!("the room takes no `{other}` requests"),
        )),
    }
}

fn kind_name(kind: SurfaceKind) -> &'static str {
    match kind {
        SurfaceKind::Plane => "plane",
        SurfaceKind::Mesh => "mesh",
    }
}

/// The surface `owner` uploaded as (`kind`, `id`), if any.
fn find(
    world: &mut World,
    owner: EntityId,
    kind: SurfaceKind,
    id: u8,
) -> Option<(Entity, Surface)> {
    let mut query = world.query::<(Entity, &Surface)>();
    query
        .iter(world)
        .find(|(_, s)| s.owner == owner && s.kind == kind && s.local == id)
        .map(|(e, s)| (e, s.clone()))
}

/// A mesh request's vertices and triangles, checked: at least one triangle, every index
/// a vertex, no triangle without area.
fn mesh(request: &RequestValues<'_>) -> Result<(Vec<Vector>, Vec<[u32; 3]>), Refusal> {
    let malformed = || {
        refuse(
            RefusalCode::Malformed,
            "mesh lists not as the schema declares",
        )
    };
    let [vertices, triangles] = request.lists.as_slice() else {
        return Err(malformed());
    };
    let vertices: Vec<[f32; 3]> = vertices
        .iter()
        .map(|item| match item.as_slice() {
            [Value::Vec3(v)] => Ok(*v),
            _ => Err(malformed()),
        })
        .collect::<Result<_, _>>()?;
    let triangles: Vec<[u32; 3]> = triangles
        .iter()
        .map(|item| match item.as_slice() {
            [Value::Int(a), Value::Int(b), Value::Int(c)] => Ok([*a, *b, *c].map(|i| i as u32)),
            _ => Err(malformed()),
        })
        .collect::<Result<_, _>>()?;
    if triangles.is_empty() {
        return Err(refuse(
            RefusalCode::Invalid,
            "a mesh needs at least one triangle",
        ));
    }
    for (t, triangle) in triangles.iter().enumerate() {
        if let Some(&i) = triangle.iter().find(|&&i| i as usize >= vertices.len()) {
            return Err(refuse(
                RefusalCode::Invalid,
                format!(
                    "triangle {t} names vertex {i}; the mesh has {} vertices",
                    vertices.len()
                ),
            ));
        }
        let [a, b, c] = triangle.map(|i| vertices[i as usize]);
        let (u, v) = (sub(b, a), sub(c, a));
        let cross = [
            u[1] * v[2] - u[2] * v[1],
            u[2] * v[0] - u[0] * v[2],
            u[0] * v[1] - u[1] * v[0],
        ];
        if crate::vec3::length(cross) < SURFACE_STEP * SURFACE_STEP {
            return Err(refuse(
                RefusalCode::Invalid,
                format!("triangle {t} has no area"),
            ));
        }
    }
    Ok((
        vertices
            .iter()
            .map(|v| Vector::new(v[0], v[1], v[2]))
            .collect(),
        triangles,
    ))
}

/// Half the size of the box around vertices centred on the mesh's origin.
fn half_box(vertices: &[Vector]) -> [f32; 3] {
    vertices.iter().fold([0.0f32; 3], |most, v| {
        most.map2([v.x.abs(), v.y.abs(), v.z.abs()], f32::max)
    })
}

/// Refuses an upload that would take the device or the room over its bounds (the
/// surface it replaces, if any, not counted).
fn check_limits(
    world: &mut World,
    settings: &ArConfig,
    owner: EntityId,
    kind: SurfaceKind,
    id: u8,
    triangles: u32,
) -> Result<(), Refusal> {
    let mut query = world.query::<&Surface>();
    let (mut device_planes, mut room_planes) = (0u32, 0u32);
    let (mut device_triangles, mut room_triangles) = (0u32, 0u32);
    for s in query.iter(world) {
        if s.owner == owner && s.kind == kind && s.local == id {
            continue;
        }
        let mine = s.owner == owner;
        match s.kind {
            SurfaceKind::Plane => {
                room_planes += 1;
                device_planes += u32::from(mine);
            }
            SurfaceKind::Mesh => {
                room_triangles += s.triangles;
                if mine {
                    device_triangles += s.triangles;
                }
            }
        }
    }
    let over = |what: &str, have: u32, most: u32| {
        refuse(
            RefusalCode::OverLimit,
            format!("{what}: this would make {have}, at most {most} are allowed"),
        )
    };
    match kind {
        SurfaceKind::Plane => {
            if device_planes + 1 > u32::from(settings.device_planes) {
                return Err(over(
                    "planes of this device",
                    device_planes + 1,
                    u32::from(settings.device_planes),
                ));
            }
            if room_planes + 1 > u32::from(settings.room_planes) {
                return Err(over(
                    "planes in the room",
                    room_planes + 1,
                    u32::from(settings.room_planes),
                ));
            }
        }
        SurfaceKind::Mesh => {
            if device_triangles + triangles > settings.device_triangles {
                return Err(over(
                    "mesh triangles of this device",
                    device_triangles + triangles,
                    settings.device_triangles,
                ));
            }
            if room_triangles + triangles > settings.room_triangles {
                return Err(over(
                    "mesh triangles in the room",
                    room_triangles + triangles,
                    settings.room_triangles,
                ));
            }
        }
    }
    Ok(())
}

/// Every surface of the room, by id: for tools and tests.
pub fn surfaces(world: &World) -> Vec<(EntityId, Surface)> {
    let Some(query) = world.try_query::<(&outpost_sim::NetId, &Surface)>() else {
        return Vec::new();
    };
    let mut out: Vec<(EntityId, Surface)> = query
        .iter_manual(world)
        .map(|(id, s)| (id.0, s.clone()))
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}
