//! Shared objects under the room's physics alone.

use outpost_ar::{ArConfig, OBJECT_SIZE, object_positions};
use outpost_protocol::MatchId;
use outpost_sim::rapier3d::prelude::*;
use outpost_sim::{Match, Physics, RigidBodyRef};

/// A box and a ball pushed along the floor at 2 m/s slow down (the box by friction, the
/// ball by its damping: rapier has no rolling resistance) and come to rest before the
/// wall.
#[test]
fn objects_pushed_along_the_floor_come_to_rest() {
    let settings = ArConfig {
        objects: 2,
        ..ArConfig::default()
    };
    let mut game = Match::new(
        MatchId(1),
        &outpost_ar::config(&settings),
        &outpost_ar::modes(),
    )
    .expect("a room");
    let start = object_positions(game.world());
    {
        let world = game.world_mut();
        let bodies: Vec<RigidBodyHandle> = {
            let mut q = world.query::<&RigidBodyRef>();
            q.iter(world).map(|b| b.0).collect()
        };
        let mut physics = world.resource_mut::<Physics>();
        for b in bodies {
            if let Some(rb) = physics.world.bodies.get_mut(b) {
                rb.set_linvel(Vector::new(2.0, 0.0, 0.0), true);
            }
        }
    }
    for _ in 0..60 * 6 {
        game.step();
    }
    let end = object_positions(game.world());
    for ((_, a), (_, b)) in start.iter().zip(&end) {
        let moved = b[0] - a[0];
        assert!(moved > 0.05 && moved < 3.0, "slid {moved} m: {a:?} → {b:?}");
        assert!((b[1] - OBJECT_SIZE).abs() < 0.02, "on the floor: {b:?}");
    }
    let settled = object_positions(game.world());
    for _ in 0..30 {
        game.step();
    }
    assert_eq!(object_positions(game.world()), settled, "at rest");
}

/// The catalogue's meshes are solid: a pyramid and a bottle (convex hulls of their
/// vertices) dropped with the box and the ball settle on the floor at their own heights —
/// the pyramid on its base, the bottle standing — and stay there.
#[test]
fn the_catalogue_meshes_rest_on_the_floor_at_their_shapes_heights() {
    use outpost_ar::Shape;
    let settings = ArConfig {
        objects: 4,
        ..ArConfig::default()
    };
    let mut game = Match::new(
        MatchId(2),
        &outpost_ar::config(&settings),
        &outpost_ar::modes(),
    )
    .expect("a room");
    for _ in 0..60 * 3 {
        game.step();
    }
    let rest = object_positions(game.world());
    assert_eq!(rest.len(), 4);
    for ((_, at), shape) in rest.iter().zip(Shape::ALL) {
        // Each rests with its lowest vertex (or face) on the floor: its centre that far up.
        let height = shape
            .mesh()
            .iter()
            .map(|p| -p[1])
            .reduce(f32::max)
            .unwrap_or(OBJECT_SIZE);
        assert!(
            (at[1] - height).abs() < 0.01,
            "{shape:?} at {at:?}, its base {height} m below its centre"
        );
    }
    for _ in 0..30 {
        game.step();
    }
    assert_eq!(object_positions(game.world()), rest, "at rest");
}
