//! The character's sweep against a level: standing, walking, walls, slides, jumps,
//! steps, ledges, other characters; and inputs of several ticks moving as their ticks
//! one by one would.

use outpost_arena::movement::{GRAVITY, JUMP_SPEED, RUN_SPEED, SKIN, SNAP_DISTANCE, STEP_HEIGHT};
use outpost_arena::{CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS, PlayerInput, move_character};
use outpost_sim::Motion;
use outpost_sim::rapier3d::prelude::*;

const DT: f32 = 1.0 / 60.0;
/// A standing character's centre above what it stands on.
const STANDING: f32 = CAPSULE_HALF_HEIGHT + CAPSULE_RADIUS + SKIN;

/// A floor at y = 0 (40 m square), boxes added by the test, one character.
struct Scene {
    physics: PhysicsWorld,
    body: RigidBodyHandle,
    motion: Motion,
    seq: u32,
}

impl Scene {
    fn new(at: Vector) -> Self {
        let mut physics = PhysicsWorld::default();
        physics.integration_parameters.dt = DT;
        let floor =
            physics.insert_body(RigidBodyBuilder::fixed().translation(Vector::new(0.0, -0.5, 0.0)));
        physics.insert_collider(ColliderBuilder::cuboid(20.0, 0.5, 20.0), Some(floor));
        let body =
            physics.insert_body(RigidBodyBuilder::kinematic_position_based().translation(at));
        physics.insert_collider(
            ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS),
            Some(body),
        );
        physics.step();
        Self {
            physics,
            body,
            motion: Motion::default(),
            seq: 0,
        }
    }

    /// A fixed box from its centre and half extents.
    fn fixed_box(&mut self, centre: Vector, half: Vector) {
        let body = self
            .physics
            .insert_body(RigidBodyBuilder::fixed().translation(centre));
        self.physics
            .insert_collider(ColliderBuilder::cuboid(half.x, half.y, half.z), Some(body));
        self.physics.step();
    }

    /// Another character standing still at a point.
    fn other_character(&mut self, at: Vector) {
        let body = self
            .physics
            .insert_body(RigidBodyBuilder::kinematic_position_based().translation(at));
        self.physics.insert_collider(
            ColliderBuilder::capsule_y(CAPSULE_HALF_HEIGHT, CAPSULE_RADIUS),
            Some(body),
        );
        self.physics.step();
    }

    /// Applies one input of `ticks` ticks running at `yaw` (radians; 0 faces +Z), with
    /// `buttons`, then steps the world once, as the edge's tick does.
    fn input(&mut self, ticks: u8, yaw: f32, forward: i8, buttons: u8) {
        self.seq += 1;
        let input = PlayerInput {
            seq: self.seq,
            ticks,
            move_z: forward,
            yaw: PlayerInput::yaw_from_radians(yaw),
            buttons,
            ..PlayerInput::default()
        };
        move_character(&mut self.physics, self.body, &input, &mut self.motion, DT);
        self.physics.step();
    }

    fn run(&mut self, inputs: usize, yaw: f32) {
        for _ in 0..inputs {
            self.input(1, yaw, 127, 0);
        }
    }

    fn at(&self) -> Vector {
        self.physics.bodies[self.body].translation()
    }
}

fn near(a: f32, b: f32, tolerance: f32) -> bool {
    (a - b).abs() <= tolerance
}

#[test]
fn a_character_dropped_on_the_floor_lands_and_stands_still() {
    let mut scene = Scene::new(Vector::new(0.0, STANDING + 1.0, 0.0));
    for _ in 0..60 {
        scene.input(1, 0.0, 0, 0);
    }
    let at = scene.at();
    assert!(scene.motion.grounded, "landed: {:?}", scene.motion);
    assert_eq!(scene.motion.velocity, [0.0; 3]);
    assert!(near(at.y, STANDING, 1e-3), "stands at {at:?}");
    assert!(
        near(at.x, 0.0, 1e-6) && near(at.z, 0.0, 1e-6),
        "fell straight: {at:?}"
    );
    for _ in 0..30 {
        scene.input(1, 0.0, 0, 0);
    }
    assert_eq!(scene.at(), at, "standing still does not drift");
}

#[test]
fn a_character_runs_at_run_speed_across_open_ground_without_sinking() {
    let mut scene = Scene::new(Vector::new(0.0, STANDING, -5.0));
    scene.input(1, 0.0, 0, 0);
    let from = scene.at();
    scene.run(60, 0.0);
    let at = scene.at();
    assert!(
        near(at.z - from.z, RUN_SPEED, 1e-3),
        "one second's run: {from:?} → {at:?}"
    );
    assert!(near(at.y, from.y, 1e-4), "stays on the floor: {at:?}");
    assert!(scene.motion.grounded);
}

#[test]
fn inputs_of_two_ticks_move_as_far_as_two_inputs_of_one_on_the_ground_and_in_the_air() {
    let mut ones = Scene::new(Vector::new(0.0, STANDING, -5.0));
    let mut twos = Scene::new(Vector::new(0.0, STANDING, -5.0));
    ones.input(1, 0.0, 0, 0);
    twos.input(1, 0.0, 0, 0);
    // A run, a jump, its flight and landing, more run.
    for i in 0..40 {
        let buttons = if i == 10 { PlayerInput::JUMP } else { 0 };
        ones.input(1, 0.3, 127, buttons);
        ones.input(1, 0.3, 127, buttons);
        twos.input(2, 0.3, 127, buttons);
        if i == 12 {
            assert!(
                !twos.motion.grounded && twos.at().y > STANDING + 0.2,
                "in the air"
            );
        }
    }
    let (a, b) = (ones.at(), twos.at());
    assert!((a - b).length() < 1e-3, "60 Hz {a:?} vs 30 Hz {b:?}");
    assert!(twos.motion.grounded && ones.motion.grounded);
}

#[test]
fn a_wall_stops_a_character_a_skin_away_and_it_does_not_climb_it() {
    let mut scene = Scene::new(Vector::new(0.0, STANDING, 0.0));
    // A wall 4 m high whose face is at z = 3.
    scene.fixed_box(Vector::new(0.0, 2.0, 3.5), Vector::new(5.0, 2.0, 0.5));
    scene.run(90, 0.0);
    let at = scene.at();
    let gap = 3.0 - CAPSULE_RADIUS - at.z;
    assert!(
        gap > 0.0 && gap <= SKIN + 1e-3,
        "stopped {gap} m short of the wall: {at:?}"
    );
    assert!(near(at.y, STANDING, 1e-3), "on the floor: {at:?}");
    assert!(near(at.x, 0.0, 1e-3), "no sideways drift: {at:?}");
    assert!(scene.motion.grounded);
}

#[test]
fn running_into_a_wall_at_an_angle_slides_along_it() {
    let mut scene = Scene::new(Vector::new(0.0, STANDING, 2.0));
    scene.fixed_box(Vector::new(0.0, 2.0, 3.5), Vector::new(10.0, 2.0, 0.5));
    // 45° between +Z (into the wall) and +X (along it).
    scene.run(60, std::f32::consts::FRAC_PI_4);
    let at = scene.at();
    let along = RUN_SPEED * std::f32::consts::FRAC_1_SQRT_2;
    assert!(at.x > 0.9 * along, "kept the sliding part: {at:?}");
    assert!(at.z < 3.0 - CAPSULE_RADIUS, "never into the wall: {at:?}");
    assert!(near(at.y, STANDING, 1e-3), "did not climb: {at:?}");
}

#[test]
fn a_jump_reaches_the_height_its_speed_gives_and_lands_grounded() {
    let mut scene = Scene::new(Vector::new(0.0, STANDING, 0.0));
    scene.input(1, 0.0, 0, 0);
    scene.input(1, 0.0, 0, PlayerInput::JUMP);
    assert!(!scene.motion.grounded);
    let mut apex: f32 = 0.0;
    let mut ticks = 0;
    while !scene.motion.grounded && ticks < 120 {
        scene.input(1, 0.0, 0, 0);
        apex = apex.max(scene.at().y - STANDING);
        ticks += 1;
    }
    let expected = JUMP_SPEED * JUMP_SPEED / (2.0 * GRAVITY);
    assert!(
        near(apex, expected, 0.06),
        "apex {apex} m, ballistic {expected} m"
    );
    assert!(scene.motion.grounded, "landed after {ticks} ticks");
    assert!(
        near(scene.at().y, STANDING, 1e-3),
        "back on the floor: {:?}",
        scene.at()
    );
    let flight = 2.0 * JUMP_SPEED / GRAVITY / DT;
    assert!(
        (ticks as f32 - flight).abs() <= 3.0,
        "{ticks} ticks in the air, ballistic {flight}"
    );
}

#[test]
fn a_walking_character_steps_up_a_low_ledge_but_not_a_high_one() {
    let mut low = Scene::new(Vector::new(0.0, STANDING, 0.0));
    let step = STEP_HEIGHT - 0.1;
    low.fixed_box(
        Vector::new(0.0, step / 2.0, 5.0),
        Vector::new(5.0, step / 2.0, 3.0),
    );
    low.run(60, 0.0);
    let at = low.at();
    assert!(at.z > 2.5, "went on over the ledge: {at:?}");
    assert!(near(at.y, step + STANDING, 2e-3), "stands on it: {at:?}");
    assert!(low.motion.grounded);

    let mut high = Scene::new(Vector::new(0.0, STANDING, 0.0));
    let ledge = STEP_HEIGHT + 0.15;
    high.fixed_box(
        Vector::new(0.0, ledge / 2.0, 5.0),
        Vector::new(5.0, ledge / 2.0, 3.0),
    );
    high.run(60, 0.0);
    let at = high.at();
    assert!(
        at.z < 2.0 - CAPSULE_RADIUS + 0.05,
        "blocked at the ledge: {at:?}"
    );
    assert!(near(at.y, STANDING, 1e-3), "still on the floor: {at:?}");
}

#[test]
fn walking_off_a_low_drop_follows_the_ground_and_off_a_high_one_falls() {
    // A platform 0.1 m high: walking off it snaps down without leaving the ground.
    let mut low = Scene::new(Vector::new(0.0, 0.1 + STANDING, 0.0));
    low.fixed_box(Vector::new(0.0, 0.05, 0.0), Vector::new(2.0, 0.05, 2.0));
    low.input(1, 0.0, 0, 0);
    assert!(low.motion.grounded);
    let mut left_ground = false;
    for _ in 0..60 {
        low.input(1, 0.0, 127, 0);
        left_ground |= !low.motion.grounded;
    }
    const { assert!(0.1 < SNAP_DISTANCE) };
    assert!(!left_ground, "followed the drop down");
    assert!(
        near(low.at().y, STANDING, 1e-3),
        "on the floor below: {:?}",
        low.at()
    );

    // A pillar top 3 m up: walking off it falls, then lands.
    let mut high = Scene::new(Vector::new(0.0, 3.0 + STANDING, 0.0));
    high.fixed_box(Vector::new(0.0, 1.5, 0.0), Vector::new(1.0, 1.5, 1.0));
    high.input(1, 0.0, 0, 0);
    assert!(high.motion.grounded, "stands on the pillar");
    let mut fell = false;
    for _ in 0..120 {
        high.input(1, 0.0, 127, 0);
        fell |= !high.motion.grounded;
    }
    assert!(fell, "left the ground off the edge");
    assert!(
        high.motion.grounded && near(high.at().y, STANDING, 1e-3),
        "landed: {:?}",
        high.at()
    );
}

#[test]
fn another_character_blocks_and_is_slid_around() {
    let mut scene = Scene::new(Vector::new(0.0, STANDING, 0.0));
    scene.other_character(Vector::new(0.05, STANDING, 3.0));
    scene.run(120, 0.0);
    let at = scene.at();
    let apart = Vector::new(at.x - 0.05, 0.0, at.z - 3.0).length();
    assert!(apart >= 2.0 * CAPSULE_RADIUS, "never overlapped: {at:?}");
    assert!(at.z > 3.0, "slid around it and went on: {at:?}");
    assert!(near(at.y, STANDING, 1e-3), "did not climb it: {at:?}");
}
