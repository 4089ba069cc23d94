//! A scripted device: it uploads what it "scanned" (a patch of floor around where it
//! starts, a table and a seat, as a plane, a plane and a mesh), walks about the room, and
//! now and then goes to a free object, crouches, picks it up, stands, and throws it. Its head and hands move as a person's
//! do — smoothly, within the room's speed and acceleration bounds with a wide margin — so
//! an honest bot never has a pose clamped. Pure and deterministic: the same views and
//! seed give the same inputs.

use outpost_protocol::Answer;
use outpost_protocol::EntityId;
use outpost_protocol::replication::{Fields, InputRecord, View};
use outpost_protocol::rng::SplitMix64;
use outpost_protocol::schema::Value;
use outpost_sim::{Bot, BotRequest, IntoInput, Sight};

use crate::vec3::{add, length, limit, normalise, scale, sub};
use crate::{ArConfig, ArInput, OBJECT_SIZE, ObjectState, Pose};

/// A point that follows a target smoothly: its speed and acceleration capped.
#[derive(Debug, Clone, Copy)]
struct Mover {
    at: [f32; 3],
    velocity: [f32; 3],
}

impl Mover {
    fn new(at: [f32; 3]) -> Self {
        Self {
            at,
            velocity: [0.0; 3],
        }
    }

    /// One step of `dt` towards `target`, at most `speed` fast, accelerating at most
    /// `accel`; arriving slows it down.
    fn step(&mut self, target: [f32; 3], speed: f32, accel: f32, dt: f32) {
        let to = sub(target, self.at);
        let distance = length(to);
        // The speed from which it can still stop in the distance left.
        let stoppable = (2.0 * accel * distance).sqrt();
        let wanted = if distance > 1e-4 {
            scale(to, speed.min(stoppable) / distance)
        } else {
            [0.0; 3]
        };
        let dv = limit(sub(wanted, self.velocity), accel * dt);
        self.velocity = add(self.velocity, dv);
        self.at = add(self.at, scale(self.velocity, dt));
    }

    /// Pushed along `direction` (normalised) at up to `accel`, to `speed`.
    fn push(&mut self, direction: [f32; 3], speed: f32, accel: f32, dt: f32) {
        let wanted = scale(direction, speed);
        let dv = limit(sub(wanted, self.velocity), accel * dt);
        self.velocity = add(self.velocity, dv);
        self.at = add(self.at, scale(self.velocity, dt));
    }
}

/// What the bot is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Walking to a point of the room.
    Wander([f32; 3]),
    /// Going for an object, to pick it up.
    Fetch(EntityId),
    /// Holding it, standing up and turning to throw, for some ticks more.
    Lift(EntityId, u32),
    /// Swinging the arm forward; lets go at the top of the swing.
    Throw(EntityId, u32),
}

/// One bot's state between inputs.
#[derive(Debug, Clone)]
pub struct ArBot {
    settings: ArConfig,
    dt: f32,
    rng: SplitMix64,
    head: Mover,
    hand: [Mover; 2],
    /// Facing, radians about y (0 looks along +z).
    yaw: f32,
    plan: Plan,
    /// Ticks until it next goes for an object.
    until_fetch: u32,
    /// Ticks spent on the current plan (to give up on what it cannot reach).
    on_plan: u32,
    throws: u32,
    /// What it still has to upload, next first; and uploads refused so far.
    uploads: Vec<BotRequest>,
    refused: u32,
}

/// Speeds and accelerations the bot moves at: well within [`ArConfig`]'s defaults.
const WALK_SPEED: f32 = 1.2;
const HEAD_ACCEL: f32 = 8.0;
const HAND_SPEED: f32 = 2.5;
const HAND_ACCEL: f32 = 25.0;
const THROW_SPEED: f32 = 5.0;
const THROW_ACCEL: f32 = 60.0;

impl ArBot {
    /// A bot in a room with these settings, at `tick_hz`, its choices drawn from `seed`.
    pub fn new(settings: ArConfig, tick_hz: u16, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let start = random_point(&settings, &mut rng);
        let head = [start[0], 1.6, start[2]];
        let mut bot = Self {
            settings,
            dt: 1.0 / f32::from(tick_hz.max(1)),
            head: Mover::new(head),
            hand: [Mover::new(head); 2],
            yaw: 0.0,
            plan: Plan::Wander(random_point(&settings, &mut rng)),
            until_fetch: 60 + (rng.next_u64() % 120) as u32,
            on_plan: 0,
            uploads: scans(&settings, start, seed),
            rng,
            throws: 0,
            refused: 0,
        };
        bot.hand = [0, 1].map(|i| Mover::new(bot.rest(i)));
        bot
    }

    /// What it is doing now.
    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// The next of its scans to upload (a request of the room's schema), if any left.
    pub fn next_upload(&mut self) -> Option<BotRequest> {
        self.uploads.pop()
    }

    /// Its uploads the edge refused (an honest bot's never are, unless the room is full).
    pub fn refused(&self) -> u32 {
        self.refused
    }

    /// The edge answered one of its uploads.
    pub fn on_answer(&mut self, answer: &Answer) {
        // Refused (over a bound, say): the room does without that scan.
        if answer.refused.is_some() {
            self.refused += 1;
        }
    }

    /// Where hand `i` hangs when it holds nothing: in front, below the head, to its side.
    fn rest(&self, i: usize) -> [f32; 3] {
        let side = if i == 0 { -0.2 } else { 0.2 };
        let (s, c) = self.yaw.sin_cos();
        let h = self.head.at;
        [
            h[0] + s * 0.3 + c * side,
            (h[1] - 0.5).max(0.3),
            h[2] + c * 0.3 - s * side,
        ]
    }

    /// Turns towards a point, a little each tick.
    fn face(&mut self, point: [f32; 3]) {
        let d = sub(point, self.head.at);
        if d[0].abs() + d[2].abs() < 0.05 {
            return;
        }
        let wanted = d[0].atan2(d[2]);
        let mut turn = wanted - self.yaw;
        while turn > std::f32::consts::PI {
            turn -= std::f32::consts::TAU;
        }
        while turn < -std::f32::consts::PI {
            turn += std::f32::consts::TAU;
        }
        self.yaw += turn.clamp(-0.06, 0.06);
    }

    /// The next input, from the newest view; `own` is the bot's device.
    pub fn next(&mut self, fields: &Fields, view: &View, own: EntityId) -> ArInput {
        let objects: Vec<(EntityId, [f32; 3], ObjectState)> = view
            .iter()
            .filter_map(|r| {
                let state = fields.get::<ObjectState>(&r)?;
                Some((r.id, fields.layout().position_value(&r)?, state))
            })
            .collect();
        let object = |id: EntityId| objects.iter().find(|o| o.0 == id);
        self.on_plan += 1;
        let dt = self.dt;
        let mut grip = [false, false];
        let mut hand_target = [self.rest(0), self.rest(1)];
        let mut head_target = self.head.at;
        match self.plan {
            Plan::Wander(point) => {
                head_target = [point[0], 1.6, point[2]];
                self.face(point);
                if length(sub(head_target, self.head.at)) < 0.2 {
                    self.plan = Plan::Wander(random_point(&self.settings, &mut self.rng));
                }
                self.until_fetch = self.until_fetch.saturating_sub(1);
                if self.until_fetch == 0 {
                    // The nearest object nobody holds.
                    let free = objects
                        .iter()
                        .filter(|o| o.2.holder.is_none())
                        .min_by(|a, b| {
                            length(sub(a.1, self.head.at))
                                .total_cmp(&length(sub(b.1, self.head.at)))
                        });
                    if let Some(&(id, ..)) = free {
                        self.plan = Plan::Fetch(id);
                        self.on_plan = 0;
                    } else {
                        self.until_fetch = 60;
                    }
                }
            }
            Plan::Fetch(id) => match object(id) {
                Some(&(_, at, state)) if state.holder.is_none() && self.on_plan < 60 * 15 => {
                    // Stand 45 cm short of it, crouch, reach with the right hand.
                    let d = sub(at, self.head.at);
                    let flat = length([d[0], 0.0, d[2]]).max(1e-3);
                    let stand = [at[0] - d[0] / flat * 0.45, 0.0, at[2] - d[2] / flat * 0.45];
                    self.face(at);
                    let near = flat < 0.7;
                    head_target = [
                        stand[0],
                        if near { (at[1] + 0.7).max(0.9) } else { 1.6 },
                        stand[2],
                    ];
                    if near {
                        hand_target[1] = at;
                        let reach = length(sub(self.hand[1].at, at));
                        grip[1] = reach < OBJECT_SIZE * 0.5;
                    }
                }
                Some(&(_, _, state)) if state.holder == Some(own) => {
                    self.plan = Plan::Lift(id, 60);
                    grip[1] = true;
                }
                _ => self.give_up(),
            },
            Plan::Lift(id, left) => {
                grip[1] = true;
                if object(id).is_some_and(|o| o.2.holder != Some(own)) {
                    self.give_up();
                } else {
                    head_target = [self.head.at[0], 1.6, self.head.at[2]];
                    // Turn to throw towards the middle of the room, not into a wall.
                    self.face([0.0, 0.0, 0.0]);
                    // Wind up: the hand back and up beside the shoulder.
                    let (s, c) = self.yaw.sin_cos();
                    let h = self.head.at;
                    hand_target[1] = [
                        h[0] - s * 0.1 + c * 0.25,
                        h[1] - 0.1,
                        h[2] - c * 0.1 - s * 0.25,
                    ];
                    self.plan = if left == 0 {
                        Plan::Throw(id, 0)
                    } else {
                        Plan::Lift(id, left - 1)
                    };
                }
            }
            Plan::Throw(id, ticks) => {
                // Forward and a little up; let go once the hand is fast.
                let (s, c) = self.yaw.sin_cos();
                let direction = normalise([s, 0.35, c]);
                self.hand[1].push(direction, THROW_SPEED, THROW_ACCEL, dt);
                let fast = length(self.hand[1].velocity) > THROW_SPEED * 0.9;
                grip[1] = !fast && ticks < 30;
                if !grip[1] {
                    if object(id).is_some_and(|o| o.2.holder == Some(own)) || ticks < 30 {
                        self.throws += 1;
                    }
                    self.give_up();
                } else {
                    self.plan = Plan::Throw(id, ticks + 1);
                }
                self.head.step(self.head.at, WALK_SPEED, HEAD_ACCEL, dt);
                self.hand[0].step(hand_target[0], HAND_SPEED, HAND_ACCEL, dt);
                return self.input(grip);
            }
        }
        self.head.step(head_target, WALK_SPEED, HEAD_ACCEL, dt);
        for (hand, target) in self.hand.iter_mut().zip(hand_target) {
            hand.step(target, HAND_SPEED, HAND_ACCEL, dt);
        }
        self.input(grip)
    }

    /// Back to walking about, and fetching again in a few seconds.
    fn give_up(&mut self) {
        self.plan = Plan::Wander(random_point(&self.settings, &mut self.rng));
        self.until_fetch = 120 + (self.rng.next_u64() % 180) as u32;
        self.on_plan = 0;
    }

    fn input(&mut self, grip: [bool; 2]) -> ArInput {
        // Hands stop at the room's walls and floor, as a real hand does.
        let (lo, hi) = self.settings.volume();
        for hand in &mut self.hand {
            for axis in 0..3 {
                let (a, b) = (lo[axis] + 0.02, hi[axis] - 0.02);
                if !(a..=b).contains(&hand.at[axis]) {
                    hand.at[axis] = hand.at[axis].clamp(a, b);
                    hand.velocity[axis] = 0.0;
                }
            }
        }
        let half = self.yaw / 2.0;
        let rotation = [0.0, half.sin(), 0.0, half.cos()];
        let pose = |position| Pose { position, rotation };
        ArInput {
            head: pose(self.head.at),
            hands: [Some(pose(self.hand[0].at)), Some(pose(self.hand[1].at))],
            grip,
        }
    }
}

impl Bot for ArBot {
    fn next_input(&mut self, sight: &Sight<'_>) -> Option<InputRecord> {
        Some(self.next(sight.fields, sight.view, sight.own).into_input())
    }

    fn next_request(&mut self, sight: &Sight<'_>) -> Option<BotRequest> {
        // Once it sees the room: as a device scans once it has tracking.
        if sight.view.is_empty() {
            return None;
        }
        self.next_upload()
    }

    fn answered(&mut self, answer: &Answer) {
        self.on_answer(answer);
    }

    fn points(&self) -> u32 {
        self.throws
    }
}

/// A level quaternion turned `yaw` radians about y.
fn yawed(yaw: f32) -> Value {
    let half = yaw / 2.0;
    Value::Quat([0.0, half.sin(), 0.0, half.cos()])
}

fn class(name: &str) -> Value {
    Value::Enum(
        crate::geometry::CLASSES
            .iter()
            .position(|c| *c == name)
            .unwrap_or(crate::geometry::CLASSES.len() - 1) as u32,
    )
}

/// A bot's scans, last to upload first: a floor patch of up to 4 × 4 m around where it
/// starts (inside the room), a table 75 cm up and a seat (a 50 × 45 × 50 cm box mesh),
/// both placed from `seed` between 1.2 m and 2.5 m from the room's middle.
fn scans(settings: &ArConfig, start: [f32; 3], seed: u64) -> Vec<BotRequest> {
    let mut rng = SplitMix64::new(seed ^ 0x5ca9_5ca9);
    let mut unit = || (rng.next_u64() % 10_000) as f32 / 10_000.0;
    let mut placed = |height: f32| {
        let (angle, distance) = (unit() * std::f32::consts::TAU, 1.2 + unit() * 1.3);
        let (s, c) = angle.sin_cos();
        let x = (s * distance).clamp(-settings.half_x + 0.6, settings.half_x - 0.6);
        let z = (c * distance).clamp(-settings.half_z + 0.6, settings.half_z - 0.6);
        ([x, height, z], angle)
    };
    let (table, table_yaw) = placed(0.75);
    let (seat, seat_yaw) = placed(0.0);
    let floor_half = |half: f32, at: f32| {
        let (lo, hi) = ((at - 2.0).max(-half), (at + 2.0).min(half));
        ((lo + hi) / 2.0, ((hi - lo) / 2.0).max(0.1))
    };
    let (fx, fhx) = floor_half(settings.half_x, start[0]);
    let (fz, fhz) = floor_half(settings.half_z, start[2]);
    let plane =
        |id: i64, centre: [f32; 3], rotation: Value, half: [f32; 2], kind: &str| BotRequest {
            name: "plane",
            values: vec![
                Value::Int(id),
                Value::Vec3(centre),
                rotation,
                Value::Float(half[0]),
                Value::Float(half[1]),
                class(kind),
            ],
            lists: Vec::new(),
        };
    // A closed box, 12 triangles facing out, standing on the floor.
    let (hx, hy, hz) = (0.25f32, 0.45f32, 0.25f32);
    let vertices: Vec<Vec<Value>> = (0..8)
        .map(|i| {
            let x = if i & 1 == 0 { -hx } else { hx };
            let y = if i & 2 == 0 { 0.0 } else { hy };
            let z = if i & 4 == 0 { -hz } else { hz };
            vec![Value::Vec3([x, y, z])]
        })
        .collect();
    let faces: [[i64; 3]; 12] = [
        [0, 2, 1],
        [1, 2, 3],
        [4, 5, 6],
        [5, 7, 6],
        [0, 1, 4],
        [1, 5, 4],
        [2, 6, 3],
        [3, 6, 7],
        [0, 4, 2],
        [2, 4, 6],
        [1, 3, 5],
        [3, 7, 5],
    ];
    let triangles = faces
        .iter()
        .map(|t| t.iter().map(|&i| Value::Int(i)).collect())
        .collect();
    vec![
        BotRequest {
            name: "mesh",
            values: vec![
                Value::Int(0),
                Value::Vec3(seat),
                yawed(seat_yaw),
                class("seat"),
            ],
            lists: vec![vertices, triangles],
        },
        plane(1, table, yawed(table_yaw), [0.6, 0.4], "table"),
        plane(0, [fx, 0.0, fz], yawed(0.0), [fhx, fhz], "floor"),
    ]
}

/// A point on the room's floor, a metre in from its walls.
fn random_point(settings: &ArConfig, rng: &mut SplitMix64) -> [f32; 3] {
    let mut coordinate = |half: f32| {
        let inner = (half - 1.0).max(0.2);
        ((rng.next_u64() % 10_000) as f32 / 10_000.0 * 2.0 - 1.0) * inner
    };
    [
        coordinate(settings.half_x),
        0.0,
        coordinate(settings.half_z),
    ]
}
