//! A scripted player on a session, built only on the SDK's public API: each tick it
//! shows its mode's bot ([`outpost_sim::GameMode::bot`]) what a game client would draw
//! (the newest view, the predicted own entity, the others interpolated) and sends the
//! input it chooses. Used by `outpost dev` and tests, for any mode that has a bot.

use std::future::Future;
use std::time::Duration;

use outpost_client::{NetcodeStats, Session};
use outpost_protocol::MatchEvent;
use outpost_protocol::replication::View;
use outpost_sim::{Modes, Sight};
use tokio::time::MissedTickBehavior;

/// What a bot saw and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotReport {
    /// Snapshots received.
    pub snapshots_received: u64,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Match events received.
    pub events_received: u64,
    /// Points this bot scored as its mode counts them (the arena's hits, ctf's
    /// captures), from the edge's events.
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

/// The input a mode's bot chooses from what a game would draw: the own entity predicted
/// (or as last received), the others interpolated at the render tick (or, with
/// interpolation off, as last received).
pub(crate) fn choose(
    session: &Session,
    brain: &mut dyn outpost_sim::Bot,
) -> Option<outpost_protocol::replication::InputRecord> {
    let world = session.latest_snapshot();
    let fields = session.fields();
    let empty = View::new();
    let view = world.as_ref().map_or(&empty, |w| &*w.records);
    let me = session.entity();
    let received = |id| {
        view.find(id)
            .and_then(|r| fields.layout().position_value(&r))
    };
    let own_position = session
        .predicted_self()
        .map(|p| p.position)
        .or_else(|| received(me));
    let render_tick = session.render_tick();
    let drawn = |id| {
        render_tick
            .and_then(|t| session.interpolated(id, t))
            .and_then(|e| e.position())
            .or_else(|| received(id))
    };
    brain.next_input(&Sight {
        fields: &fields,
        view,
        own: me,
        own_position,
        drawn: &drawn,
    })
}

/// A scripted player on a session.
pub struct Bot {
    session: Session,
    brain: Box<dyn outpost_sim::Bot>,
}

impl Bot {
    /// A bot playing `session` with the scripted player of its match's mode (one of
    /// `modes`), its choices drawn from `seed`. Fails if the mode is not among `modes`
    /// or has no bot.
    pub fn new(session: Session, modes: &Modes, seed: u64) -> anyhow::Result<Self> {
        let config = &session.welcome().config;
        let brain = modes
            .get(&config.mode)
            .and_then(|mode| mode.bot(config, seed))
            .ok_or_else(|| anyhow::anyhow!("the mode `{}` has no bot here", config.mode))?;
        Ok(Self { session, brain })
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
            let me = self.session.entity();
            while let Some(event) = self.session.next_event().await {
                if matches!(event.event, MatchEvent::MatchEnded { .. }) {
                    report.match_ended = true;
                }
                self.brain.observe(&event.event, me);
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
                if matches!(event.event, MatchEvent::MatchEnded { .. }) {
                    report.match_ended = true;
                }
                self.brain.observe(&event.event, me);
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
            let input = choose(&self.session, self.brain.as_mut());
            let Some(input) = input else {
                continue;
            };
            if self.session.send_input(input).is_err() {
                report.stayed_connected = self.ended_by_the_match(&mut report).await;
                break;
            }
        }
        report.hits = self.brain.points();
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
