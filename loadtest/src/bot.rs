//! A scripted arena player built only on the SDK's public API: it wanders, turns toward
//! the nearest opponent, shoots, and now and then jumps. Used by `outpost dev` and tests.

use std::future::Future;
use std::time::Duration;

use outpost_arena::{PlayerInput, Position};
use outpost_client::{NetcodeStats, Session};
use outpost_protocol::MatchEvent;
use outpost_sim::SplitMix64;
use tokio::time::MissedTickBehavior;

/// How a bot moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotStyle {
    /// Runs in a new random direction every second or two, toward opponents now and then.
    Wander,
    /// Stands still (but still aims and shoots).
    Stand,
}

/// What a bot saw and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotReport {
    /// Snapshots received.
    pub snapshots_received: u64,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Match events received.
    pub events_received: u64,
    /// Hits this bot scored (as reported by the edge).
    pub hits: u32,
    /// Whether the match ended while the bot played.
    pub match_ended: bool,
    /// Whether the connection was up until the bot stopped.
    pub stayed_connected: bool,
    /// Whether every state received acknowledged inputs in order (never going back).
    pub acks_in_order: bool,
    /// Prediction, interpolation and clock figures at the end.
    pub netcode: NetcodeStats,
}

/// A scripted player on a session.
pub struct Bot {
    session: Session,
    rng: SplitMix64,
    style: BotStyle,
}

impl Bot {
    /// A bot playing `session`, its choices drawn from `seed`.
    pub fn new(session: Session, seed: u64, style: BotStyle) -> Self {
        Self {
            session,
            rng: SplitMix64::new(seed),
            style,
        }
    }

    /// The session the bot plays on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The connection closed under the bot: whether that was the match ending (the
    /// edge's goodbye). The close can be seen before the control stream's last messages
    /// are read, so those are read first (for at most a second).
    async fn ended_by_the_match(&mut self, report: &mut BotReport) -> bool {
        let drain = async {
            while let Some(event) = self.session.next_event().await {
                if matches!(event.event, MatchEvent::MatchEnded { .. }) {
                    report.match_ended = true;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        report.match_ended || self.session.goodbye().is_some()
    }

    /// Plays at the match's tick rate until `stop` completes, the match ends or the
    /// connection drops; then says goodbye and reports.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> BotReport {
        let tick_hz = u32::from(self.session.welcome().config.tick_hz.max(1));
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / tick_hz);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let me = self.session.entity();
        let mut report = BotReport {
            stayed_connected: true,
            acks_in_order: true,
            ..BotReport::default()
        };
        let mut last_ack = (0u32, 0u32);
        let mut heading = self.rng.range(0.0, std::f32::consts::TAU);
        let mut tick: u64 = 0;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticks.tick() => {}
            }
            // Read before the events: every event that came before the goodbye is then
            // queued already, so a match end followed at once by the goodbye is seen.
            let said_goodbye = self.session.goodbye().is_some();
            while let Some(event) = self.session.try_next_event() {
                match &event.event {
                    MatchEvent::MatchEnded { .. } => report.match_ended = true,
                    other => {
                        if outpost_arena::Hit::from_event(other)
                            .is_some_and(|hit| hit.shooter == me)
                        {
                            report.hits += 1;
                        }
                    }
                }
            }
            if let Some(world) = self.session.latest_snapshot()
                && world.tick > last_ack.0
            {
                if world.ack_input_seq < last_ack.1 {
                    report.acks_in_order = false;
                }
                last_ack = (world.tick, world.ack_input_seq);
            }
            if report.match_ended || said_goodbye {
                break;
            }
            if self.session.is_closed() {
                report.stayed_connected = self.ended_by_the_match(&mut report).await;
                break;
            }
            tick += 1;
            if tick.is_multiple_of(90) {
                heading = self.rng.range(0.0, std::f32::consts::TAU);
            }
            let mut input = PlayerInput::default();
            // Aim where the player sees others: interpolated remote characters, seen from
            // the predicted own one. The shot carries that view tick, and the edge rewinds
            // to it.
            let me_at = self.session.predicted_self().map(|p| p.position);
            let render_tick = self.session.render_tick();
            if let (Some(mine), Some(render_tick), Some(world)) =
                (me_at, render_tick, self.session.latest_snapshot())
            {
                let fields = self.session.fields();
                let nearest = world
                    .records
                    .iter()
                    .filter(|r| r.id != me && fields.has(r, "character"))
                    .filter_map(|r| self.session.interpolated(r.id, render_tick))
                    .filter_map(|e| e.get::<Position>())
                    .map(|Position(p)| {
                        let d = [p[0] - mine[0], p[1] - mine[1], p[2] - mine[2]];
                        (d, d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((d, dist2)) = nearest {
                    let yaw = d[0].atan2(d[2]);
                    let pitch = d[1].atan2((d[0] * d[0] + d[2] * d[2]).sqrt());
                    input.yaw = PlayerInput::yaw_from_radians(yaw);
                    input.pitch = PlayerInput::pitch_from_radians(pitch);
                    if dist2 < 60.0 * 60.0 {
                        input.buttons |= PlayerInput::FIRE;
                    }
                    if self.style == BotStyle::Wander {
                        if dist2 < 4.0 * 4.0 {
                            heading = yaw + std::f32::consts::PI; // keep a few metres away
                        } else if tick % 300 < 60 {
                            heading = yaw; // close in now and then
                        }
                    }
                } else {
                    input.yaw = PlayerInput::yaw_from_radians(heading);
                }
            }
            if self.style == BotStyle::Wander {
                // Move along `heading` whatever the look direction: strafe-relative axes.
                let relative = heading - input.yaw_radians();
                input.move_z = (relative.cos() * 127.0) as i8;
                input.move_x = (-relative.sin() * 127.0) as i8;
                if self.rng.next_u64().is_multiple_of(100) {
                    input.buttons |= PlayerInput::JUMP;
                }
            }
            if self.session.send_input(input).is_err() {
                report.stayed_connected = self.ended_by_the_match(&mut report).await;
                break;
            }
        }
        let stats = self.session.stats();
        report.snapshots_received = stats.snapshots_received;
        report.inputs_sent = stats.inputs_sent;
        report.events_received = stats.events_received;
        report.netcode = self.session.netcode_stats();
        if report.stayed_connected {
            self.session.close().await;
        }
        report
    }
}
