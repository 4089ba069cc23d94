//! An AR room of scripted devices on the deterministic harness: the edge's match host and
//! every device's connection on one virtual clock, through the seeded link conditioner.
//! It reports what the room costs each device on the wire and what the devices did.
//!
//! ```text
//! cargo run --release --example ar_room -- --devices 8 --objects 50 --seconds 30 --json
//! ```
//!
//! Bandwidth is every snapshot byte delivered to the devices (datagrams whole), per
//! device, over the run after its first second. The pose latency here is over the
//! harness's link (virtual time: the link's delay plus the wait for the next snapshot),
//! from a device's input to a peer's first snapshot showing that head pose.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use clap::Parser;
use outpost_ar::bot::ArBot;
use outpost_ar::{ArConfig, ArStats};
use outpost_harness::{ClientId, Harness};
use outpost_protocol::link::LinkConfig;
use outpost_protocol::{EntityId, MatchConfig};
use outpost_sim::ModeSettings as _;

#[derive(Parser)]
struct Args {
    /// Devices in the room.
    #[arg(long, default_value_t = 8)]
    devices: u16,
    /// Shared objects.
    #[arg(long, default_value_t = 50)]
    objects: u16,
    /// Seconds of room time.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Link between each device and the edge: `edge`, `good`, `average`, `poor`, `bursty`.
    #[arg(long, default_value = "average")]
    link: String,
    /// The edge's snapshot budget per device, kbit/s.
    #[arg(long, default_value_t = 96)]
    budget_kbps: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

#[expect(clippy::print_stdout, reason = "the report is the example's output")]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let link = LinkConfig::preset(&args.link)
        .ok_or_else(|| anyhow::anyhow!("unknown link `{}`", args.link))?;
    let settings = ArConfig {
        objects: args.objects,
        ..ArConfig::default()
    };
    settings.validate()?;
    let config = MatchConfig {
        max_players: args.devices.max(1),
        duration_s: args.seconds + 10,
        seed: 1,
        ..outpost_ar::config(&settings)
    };
    let host = outpost_edge::host::HostSettings {
        bandwidth_bps: args.budget_kbps.saturating_mul(1000),
        ..Harness::default_settings(outpost_ar::modes())
    };
    let mut h = Harness::with_settings(&config, 7, host);
    let mut bots: Vec<(ClientId, EntityId, ArBot)> = Vec::new();
    for p in 0..u64::from(args.devices) {
        let c = h
            .join(p + 1, link)
            .map_err(|code| anyhow::anyhow!("join refused: {}", code.as_str()))?;
        let own = h.client(c).welcome().entity;
        bots.push((c, own, ArBot::new(settings, config.tick_hz, 1000 + p)));
    }
    let tick_s = 1.0 / f64::from(config.tick_hz);
    // Each device's recent head poses as sent, with the tick each was sent at.
    let mut sent: BTreeMap<EntityId, VecDeque<(u64, [f32; 3])>> = BTreeMap::new();
    // What each device last saw of each other's head.
    let mut seen: BTreeMap<(ClientId, EntityId), [f32; 3]> = BTreeMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    let ticks = u64::from(args.seconds) * u64::from(config.tick_hz);
    let warm = u64::from(config.tick_hz);
    let mut bytes_at_warm = 0;
    let started = Instant::now();
    for tick in 0..ticks {
        if tick == warm {
            bytes_at_warm = h.wire_stats().snapshot_bytes;
        }
        for (c, own, bot) in bots.iter_mut() {
            let conn = h.client(*c);
            let fields = conn.fields().clone();
            let Some(world) = conn.latest().cloned() else {
                continue;
            };
            let input = bot.next(&fields, &world.records, *own);
            let log = sent.entry(*own).or_default();
            log.push_back((tick, input.head.position));
            if log.len() > 120 {
                log.pop_front();
            }
            h.send_input(*c, input);
        }
        h.tick();
        for (c, _, _) in &bots {
            let conn = h.client(*c);
            let Some(world) = conn.latest() else { continue };
            let fields = conn.fields();
            for record in world.records.iter() {
                if !fields.has(&record, "device") || record.id == conn.welcome().entity {
                    continue;
                }
                let Some(head) = fields.layout().position_value(&record) else {
                    continue;
                };
                if seen.insert((*c, record.id), head) == Some(head) {
                    continue;
                }
                // The newest pose of that device within a millimetre of what is shown.
                let origin = sent.get(&record.id).and_then(|log| {
                    log.iter().rev().find(|(_, p)| {
                        (0..3).all(|a| (p[a] - head[a]).abs() <= outpost_ar::POSITION_STEP)
                    })
                });
                if let Some(&(at, _)) = origin
                    && tick >= warm
                {
                    latencies.push((tick + 1 - at) as f64 * tick_s * 1000.0);
                }
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let stats: ArStats = *h.host().game().world().resource::<ArStats>();
    let measured_s = (ticks - warm) as f64 * tick_s;
    let bytes = h.wire_stats().snapshot_bytes - bytes_at_warm;
    let kbps = bytes as f64 * 8.0 / 1000.0 / measured_s / f64::from(args.devices.max(1));
    let p50 = quantile(&mut latencies, 0.5);
    let p99 = quantile(&mut latencies, 0.99);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "devices": args.devices,
                "objects": args.objects,
                "seconds": args.seconds,
                "link": args.link,
                "snapshot_hz": config.snapshot_hz,
                "kbps_down_per_device": kbps,
                "pose_latency_ms_p50": p50,
                "pose_latency_ms_p99": p99,
                "pose_samples": latencies.len(),
                "grabs": stats.grabs,
                "objects_thrown": stats.objects_thrown,
                "ownership_conflicts": stats.ownership_conflicts,
                "pose_violations": stats.pose_violations,
                "wall_s": wall,
            })
        );
    } else {
        println!(
            "{} devices, {} objects, {} s over `{}`: {kbps:.1} kbit/s down per device, pose to peer p50 {p50:.1} ms p99 {p99:.1} ms, {} grabs, {} throws, {} conflicts, {} pose violations ({wall:.1} s of wall time)",
            args.devices,
            args.objects,
            args.seconds,
            args.link,
            stats.grabs,
            stats.objects_thrown,
            stats.ownership_conflicts,
            stats.pose_violations
        );
    }
    Ok(())
}
