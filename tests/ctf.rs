//! Capture the flag on the deterministic harness: the mode from its own crate, hosted by
//! the edge's match host, played by clients that read it from the schema.

use outpost_ctf::bot::{CtfBot, Goal};
use outpost_ctf::{Capture, Captures, CtfConfig, CtfInput, FlagState, TeamOf};
use outpost_harness::{ClientId, Harness};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::schema::Value;
use outpost_protocol::{MatchConfig, MatchEndReason, MatchEvent};
use outpost_sim::ModeSettings as _;

fn ctf(captures_to_win: u8, players: u16) -> MatchConfig {
    MatchConfig {
        max_players: players,
        duration_s: 120,
        seed: 11,
        ..outpost_ctf::config(&CtfConfig {
            captures_to_win,
            ..CtfConfig::default()
        })
    }
}

/// Every client's bot plays one tick; clients in `idle` stand still.
fn play(h: &mut Harness, bots: &mut [(ClientId, CtfBot)], idle: &[ClientId]) -> Vec<Goal> {
    let mut goals = Vec::new();
    for (c, bot) in bots.iter_mut() {
        let conn = h.client(*c);
        let own = conn.welcome().entity;
        let fields = conn.fields().clone();
        let next = conn
            .latest()
            .cloned()
            .and_then(|world| bot.next(&fields, &world.records, own));
        let input = match next {
            Some((input, goal)) if !idle.contains(c) => {
                goals.push(goal);
                input
            }
            _ => CtfInput::default(),
        };
        h.send_input(*c, input);
    }
    h.tick();
    goals
}

/// A red runner takes the blue flag, carries it home and captures: the team's score and
/// the runner's go up by one, a `capture` event names the runner, and at the capture
/// limit the match ends with the runner first in the standings.
#[test]
fn a_capture_scores_for_the_team_and_ends_the_match_at_the_limit() {
    let config = ctf(1, 2);
    let mut h = Harness::new(&config, 5, outpost_ctf::modes());
    let red = h.join_team(1, 0, LinkConfig::good()).expect("seated");
    let blue = h.join_team(2, 1, LinkConfig::good()).expect("seated");
    let settings = CtfConfig::of(&config).expect("settings");
    let mut bots = vec![(red, CtfBot::new(settings)), (blue, CtfBot::new(settings))];
    let mut seen = Vec::new();
    let mut captures = Vec::new();
    for _ in 0..60 * 60 {
        seen.extend(play(&mut h, &mut bots, &[blue]));
        if h.finished().is_some() {
            // What the host sent last is still on the way.
            h.advance(std::time::Duration::from_millis(500));
        }
        while let Some(event) = h.client_mut(blue).poll_event() {
            if let Some(capture) = Capture::from_event(&event.event) {
                captures.push(capture);
            }
            if let MatchEvent::MatchEnded { reason, scores } = &event.event {
                assert_eq!(*reason, MatchEndReason::ScoreLimit);
                assert_eq!(scores[0].player.0, 1, "the runner leads: {scores:?}");
                assert_eq!(scores[0].score, 1, "one capture");
            }
        }
        if h.finished().is_some() {
            break;
        }
    }
    assert!(
        seen.contains(&Goal::TakeFlag) && seen.contains(&Goal::CarryHome),
        "{seen:?}"
    );
    let runner = h.client(red).welcome().entity;
    assert_eq!(
        captures,
        [Capture {
            carrier: runner,
            team: 0,
            captures: 1
        }]
    );
    let finished = h.finished().expect("the capture limit ended the match");
    assert_eq!(finished.outcome, Some(MatchEndReason::ScoreLimit));
    let red = finished
        .players
        .iter()
        .find(|s| s.score.player.0 == 1)
        .expect("red");
    assert_eq!(red.score.score, 1);
    // The result names the mode's stats: the runner picked the flag up once to capture.
    assert_eq!(finished.stat_names, outpost_ctf::STATS);
    assert_eq!(red.stats[outpost_ctf::STAT_PICKUPS], 1, "{:?}", red.stats);
}

/// What a client reads by name from the schema is what the mode's typed components say:
/// every flag has a team and a carrier (or none), both teams' scores reach everyone
/// though they have no position, and a carried flag is drawn above its carrier.
#[test]
fn a_client_reads_flags_teams_and_scores_from_the_schema() {
    let config = ctf(3, 2);
    let mut h = Harness::new(&config, 8, outpost_ctf::modes());
    let red = h.join_team(1, 0, LinkConfig::average()).expect("seated");
    let blue = h.join_team(2, 1, LinkConfig::average()).expect("seated");
    let settings = CtfConfig::of(&config).expect("settings");
    let mut bots = vec![(red, CtfBot::new(settings)), (blue, CtfBot::new(settings))];
    let (mut flags_read, mut carried_seen) = (0, 0);
    for _ in 0..60 * 20 {
        play(&mut h, &mut bots, &[blue]);
        let conn = h.client(blue);
        let Some(world) = conn.latest() else { continue };
        let fields = conn.fields();
        let mut scores = 0;
        for record in world.records.iter() {
            if let Some(flag) = fields.get::<FlagState>(&record) {
                let by_name = fields.value(&record, "flag", "home");
                assert_eq!(by_name, Some(Value::Bool(flag.home)));
                assert!(fields.get::<TeamOf>(&record).is_some_and(|t| t.0 < 2));
                if let Some(carrier) = flag.carrier {
                    let above = fields
                        .layout()
                        .position_value(&record)
                        .expect("flag position");
                    let under = world
                        .records
                        .find(carrier)
                        .and_then(|r| fields.layout().position_value(&r))
                        .expect("the carrier is in view");
                    assert!(
                        (above[1] - under[1] - 1.2).abs() < 0.01,
                        "{above:?} over {under:?}"
                    );
                    carried_seen += 1;
                }
                flags_read += 1;
            }
            if fields.get::<Captures>(&record).is_some() {
                assert!(fields.layout().position_value(&record).is_none());
                scores += 1;
            }
        }
        assert_eq!(scores, 2, "both teams' scores reach every client");
    }
    assert!(
        flags_read > 1000 && carried_seen > 10,
        "{flags_read} {carried_seen}"
    );
}

/// Four bots, two a side, over a lossy link, twice on the same seed: the same match, to
/// the tick and the bit (every view every client received, every event).
#[test]
fn ctf_is_deterministic() {
    let run = || {
        let config = ctf(3, 4);
        let mut h = Harness::new(&config, 21, outpost_ctf::modes());
        let settings = CtfConfig::of(&config).expect("settings");
        let mut bots: Vec<(ClientId, CtfBot)> = (0..4)
            .map(|p| {
                let c = h
                    .join_team(p + 1, (p % 2) as u8, LinkConfig::poor())
                    .expect("seated");
                (c, CtfBot::new(settings))
            })
            .collect();
        let mut trace = Vec::new();
        for _ in 0..60 * 30 {
            play(&mut h, &mut bots, &[]);
            for (c, _) in &bots {
                if let Some(world) = h.client(*c).latest() {
                    trace.push(format!("{:?}", world.records));
                }
                while let Some(event) = h.client_mut(*c).poll_event() {
                    trace.push(format!("{event:?}"));
                }
            }
        }
        trace
    };
    let (a, b) = (run(), run());
    assert!(a.len() > 4 * 60 * 25, "{} entries", a.len());
    assert!(a == b, "two runs on one seed differ");
}

/// Four bots a side, attackers and defenders, over an average link, teams seated
/// interleaved or in blocks: within a 30 s match flags are taken and carried home — the
/// bots `outpost dev --mode ctf` plays with do score.
#[test]
fn four_bots_a_side_capture_flags_within_a_match() {
    // Teams interleaved by join order, and in blocks (as matchmaking may seat them).
    for blocks in [false, true] {
        bots_capture(blocks);
    }
}

fn bots_capture(blocks: bool) {
    let config = ctf(20, 8);
    let mut h = Harness::new(&config, 13, outpost_ctf::modes());
    let settings = CtfConfig::of(&config).expect("settings");
    let mut bots: Vec<(ClientId, CtfBot)> = (0..8)
        .map(|p| {
            let team = if blocks { p / 4 } else { p % 2 } as u8;
            let c = h
                .join_team(p + 1, team, LinkConfig::average())
                .expect("seated");
            (c, CtfBot::new(settings))
        })
        .collect();
    let mut goals = std::collections::BTreeMap::new();
    let mut captures = 0;
    for _ in 0..60 * 30 {
        for goal in play(&mut h, &mut bots, &[]) {
            *goals.entry(format!("{goal:?}")).or_insert(0u32) += 1;
        }
        while let Some(event) = h.client_mut(bots[0].0).poll_event() {
            if Capture::from_event(&event.event).is_some() {
                captures += 1;
            }
        }
    }
    assert!(
        captures >= 1,
        "no capture in 30 s (teams in blocks: {blocks}): goals {goals:?}"
    );
    // The mode's stats as the result will report them: every capture was a flag its
    // carrier picked up, and the defenders tagged carriers and returned flags.
    let standings = h.host().game().standings();
    let stat = |i: usize| standings.iter().map(|s| s.stats[i]).sum::<u32>();
    assert!(
        standings
            .iter()
            .all(|s| s.stats[outpost_ctf::STAT_PICKUPS] >= s.score.score),
        "{standings:?}"
    );
    assert_eq!(
        standings.iter().map(|s| s.score.score).sum::<u32>(),
        captures
    );
    assert!(
        stat(outpost_ctf::STAT_TAGS) >= 1 && stat(outpost_ctf::STAT_RETURNS) >= 1,
        "{standings:?}"
    );
}
