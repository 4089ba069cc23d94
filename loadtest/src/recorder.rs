//! Collects what players and the edge report, second by second, and sums it up.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::report::Report;
use crate::scrape::{EdgeScrape, tick_quantile_ms};
use crate::{ErrorCounts, ErrorKind, LoadConfig};

/// What one player saw over the last second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlayerSample {
    pub input_rtt_ms: Option<f64>,
    pub quic_rtt_ms: f64,
    pub jitter_ms: f64,
    pub kbps_down: f64,
    pub kbps_up: f64,
    pub packets_down: f64,
    pub packets_up: f64,
    pub snapshots: u64,
}

/// One second of the run, as plotted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the run began (end of this second).
    pub t_s: f64,
    /// Players connected at the end of the second.
    pub players_connected: u64,
    /// Joins that succeeded so far.
    pub connects_ok: u64,
    /// Joins that failed so far.
    pub connects_failed: u64,
    /// Errors of this second, by kind.
    pub errors: ErrorCounts,
    /// Input-to-acknowledgement round trip across players, milliseconds.
    pub rtt_ms_p50: f64,
    /// 95th percentile of the same.
    pub rtt_ms_p95: f64,
    /// 99th percentile of the same.
    pub rtt_ms_p99: f64,
    /// Snapshot arrival jitter across players (median), milliseconds.
    pub jitter_ms_p50: f64,
    /// 99th percentile of the same.
    pub jitter_ms_p99: f64,
    /// Median per-player download, kbit/s (UDP payload, all QUIC overhead included).
    pub kbps_down_p50: f64,
    /// Median per-player upload, kbit/s.
    pub kbps_up_p50: f64,
    /// Snapshots received by all players in this second.
    pub snapshots_per_s: u64,
    /// Edge tick time, median over this second, milliseconds (from its metrics).
    pub tick_ms_p50: Option<f64>,
    /// Edge tick time, 99th percentile over this second.
    pub tick_ms_p99: Option<f64>,
    /// Ticks the edge missed in this second.
    pub missed_ticks: Option<u64>,
}

/// A histogram of microseconds (or bits per second) up to an hour's worth.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

fn quantile(h: &Histogram<u64>, q: f64, scale: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / scale
    }
}

#[derive(Default)]
struct Window {
    samples: Vec<PlayerSample>,
    errors: ErrorCounts,
}

/// Whole-run figures over the hold (after the ramp, until the end).
struct Totals {
    input_rtt_us: Histogram<u64>,
    quic_rtt_us: Histogram<u64>,
    jitter_us: Histogram<u64>,
    down_bps: Histogram<u64>,
    up_bps: Histogram<u64>,
    /// UDP datagrams each way per player per second, in thousandths.
    down_pps: Histogram<u64>,
    up_pps: Histogram<u64>,
    snapshots: u64,
    errors: ErrorCounts,
    series: Vec<Second>,
    scrapes: Vec<(Duration, EdgeScrape)>,
    /// The scrape taken as the ramp ended: where the hold's edge figures start.
    hold_start: Option<EdgeScrape>,
    scrape_failures: u64,
    ramp: Option<Duration>,
    hold_end: Option<Duration>,
    /// This process's CPU time when the hold began and ended.
    cpu_at_hold: (Option<Duration>, Option<Duration>),
    /// Time players spent in matches during the hold, summed over players, seconds.
    player_seconds: f64,
}

/// Shared by every player, the scraper and the collector.
pub(crate) struct Recorder {
    started: Instant,
    target: u32,
    match_size: u16,
    attempts: AtomicU64,
    connected: AtomicU64,
    joined: AtomicU64,
    failed: AtomicU64,
    stayed: AtomicU64,
    match_ends: AtomicU64,
    cut_short: AtomicU64,
    holding: AtomicBool,
    matches: Mutex<std::collections::BTreeSet<u64>>,
    window: Mutex<Window>,
    totals: Mutex<Totals>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    pub(crate) fn new(target: u32, match_size: u16) -> Self {
        Self {
            started: Instant::now(),
            target,
            match_size,
            attempts: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stayed: AtomicU64::new(0),
            match_ends: AtomicU64::new(0),
            cut_short: AtomicU64::new(0),
            holding: AtomicBool::new(false),
            matches: Mutex::new(std::collections::BTreeSet::new()),
            window: Mutex::new(Window::default()),
            totals: Mutex::new(Totals {
                input_rtt_us: histogram(),
                quic_rtt_us: histogram(),
                jitter_us: histogram(),
                down_bps: histogram(),
                up_bps: histogram(),
                down_pps: histogram(),
                up_pps: histogram(),
                snapshots: 0,
                errors: ErrorCounts::new(),
                series: Vec::new(),
                scrapes: Vec::new(),
                hold_start: None,
                scrape_failures: 0,
                ramp: None,
                hold_end: None,
                cpu_at_hold: (None, None),
                player_seconds: 0.0,
            }),
        }
    }

    pub(crate) fn connect_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// A player joined match `match_id`.
    pub(crate) fn connected(&self, match_id: u64) {
        lock(&self.matches).insert(match_id);
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.joined.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connect_failed(&self, kind: ErrorKind) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.error(kind);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        *lock(&self.window)
            .errors
            .entry(kind.as_str().to_owned())
            .or_default() += 1;
    }

    /// A player left a match it joined at `joined_at`: the part of its time there that
    /// fell in the hold counts as player-seconds held.
    pub(crate) fn left(&self, joined_at: Instant) {
        let (from, to) = (
            joined_at.saturating_duration_since(self.started),
            self.started.elapsed(),
        );
        let mut totals = lock(&self.totals);
        // Before the ramp ended there was no hold to count in.
        let Some(ramp) = totals.ramp else {
            return;
        };
        let end = totals.hold_end.map_or(to, |hold_end| to.min(hold_end));
        totals.player_seconds += end.saturating_sub(from.max(ramp)).as_secs_f64();
    }

    /// A player's match ended (the edge said so): counted, not an error.
    pub(crate) fn match_ended(&self) {
        self.match_ends.fetch_add(1, Ordering::Relaxed);
    }

    /// A player was still queueing again for its next match when the run ended.
    pub(crate) fn requeue_cut_short(&self) {
        self.cut_short.fetch_add(1, Ordering::Relaxed);
    }

    /// A player stopped: at the end of the run (`stayed`) or because its session broke.
    pub(crate) fn finished(&self, stayed: bool) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
        if stayed {
            self.stayed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sample(&self, sample: PlayerSample) {
        lock(&self.window).samples.push(sample);
    }

    pub(crate) fn ramp_done(&self, at: Duration) {
        let mut totals = lock(&self.totals);
        totals.ramp = Some(at);
        totals.cpu_at_hold.0 = own_cpu();
        drop(totals);
        self.holding.store(true, Ordering::Release);
    }

    pub(crate) fn hold_done(&self) {
        self.holding.store(false, Ordering::Release);
        let mut totals = lock(&self.totals);
        totals.hold_end = Some(self.started.elapsed());
        totals.cpu_at_hold.1 = own_cpu();
    }

    pub(crate) fn edge_scrape(&self, scrape: EdgeScrape) {
        lock(&self.totals)
            .scrapes
            .push((self.started.elapsed(), scrape));
    }

    /// The scrape taken as the ramp ended.
    pub(crate) fn hold_start_scrape(&self, scrape: EdgeScrape) {
        let mut totals = lock(&self.totals);
        totals.hold_start = Some(scrape.clone());
        totals.scrapes.push((self.started.elapsed(), scrape));
    }

    pub(crate) fn scrape_failed(&self) {
        lock(&self.totals).scrape_failures += 1;
    }

    /// Closes the current second: its percentiles go to the series, and during the hold
    /// its samples go to the run's totals.
    fn close_second(&self) {
        let window = std::mem::take(&mut *lock(&self.window));
        let holding = self.holding.load(Ordering::Acquire);
        let mut rtt = histogram();
        let mut jitter = histogram();
        let mut down = histogram();
        let mut up = histogram();
        let mut packets_down = histogram();
        let mut packets_up = histogram();
        let mut quic = histogram();
        let mut snapshots = 0;
        for s in &window.samples {
            if let Some(ms) = s.input_rtt_ms {
                let _ = rtt.record((ms * 1000.0).max(1.0) as u64);
            }
            let _ = quic.record((s.quic_rtt_ms * 1000.0).max(1.0) as u64);
            let _ = jitter.record((s.jitter_ms * 1000.0).max(1.0) as u64);
            let _ = down.record((s.kbps_down * 1000.0).max(1.0) as u64);
            let _ = up.record((s.kbps_up * 1000.0).max(1.0) as u64);
            let _ = packets_down.record((s.packets_down * 1000.0).max(1.0) as u64);
            let _ = packets_up.record((s.packets_up * 1000.0).max(1.0) as u64);
            snapshots += s.snapshots;
        }
        let mut totals = lock(&self.totals);
        let t = self.started.elapsed();
        let (tick_ms_p50, tick_ms_p99, missed_ticks) = match totals.scrapes.as_slice() {
            [.., (_, before), (at, after)] if t.saturating_sub(*at) < Duration::from_secs(2) => (
                tick_quantile_ms(Some(before), after, 0.5),
                tick_quantile_ms(Some(before), after, 0.99),
                Some(after.missed_ticks.saturating_sub(before.missed_ticks)),
            ),
            _ => (None, None, None),
        };
        let second = Second {
            t_s: t.as_secs_f64(),
            players_connected: self.connected.load(Ordering::Relaxed),
            connects_ok: self.joined.load(Ordering::Relaxed),
            connects_failed: self.failed.load(Ordering::Relaxed),
            errors: window.errors.clone(),
            rtt_ms_p50: quantile(&rtt, 0.5, 1000.0),
            rtt_ms_p95: quantile(&rtt, 0.95, 1000.0),
            rtt_ms_p99: quantile(&rtt, 0.99, 1000.0),
            jitter_ms_p50: quantile(&jitter, 0.5, 1000.0),
            jitter_ms_p99: quantile(&jitter, 0.99, 1000.0),
            kbps_down_p50: quantile(&down, 0.5, 1000.0),
            kbps_up_p50: quantile(&up, 0.5, 1000.0),
            snapshots_per_s: snapshots,
            tick_ms_p50,
            tick_ms_p99,
            missed_ticks,
        };
        totals.series.push(second);
        for (kind, n) in window.errors {
            *totals.errors.entry(kind).or_default() += n;
        }
        if holding {
            let _ = totals.input_rtt_us.add(&rtt);
            let _ = totals.quic_rtt_us.add(&quic);
            let _ = totals.jitter_us.add(&jitter);
            let _ = totals.down_bps.add(&down);
            let _ = totals.up_bps.add(&up);
            let _ = totals.down_pps.add(&packets_down);
            let _ = totals.up_pps.add(&packets_up);
            totals.snapshots += snapshots;
        }
    }

    /// The newest second recorded.
    fn latest(&self) -> Option<Second> {
        lock(&self.totals).series.last().cloned()
    }

    /// The run's report.
    pub(crate) fn report(&self, config: &LoadConfig, elapsed: Duration) -> Report {
        let totals = lock(&self.totals);
        let ramp = totals.ramp.unwrap_or_default();
        let hold_end = totals.hold_end.unwrap_or(elapsed);
        let hold = hold_end.saturating_sub(ramp);
        let (before, after) =
            hold_scrapes(&totals.scrapes, totals.hold_start.as_ref(), ramp, hold_end);
        let (before, after) = (before.as_ref(), after.as_ref());
        // Without a starting point, no edge figure: the edge's lifetime counters would
        // count the ramp (and whatever ran before) as the hold.
        let after = after.filter(|_| before.is_some());
        let tick = |q| after.and_then(|a| tick_quantile_ms(before, a, q));
        let errors_total = totals.errors.values().sum();
        // CPU per player-second held: the edge's from its `process_cpu_seconds_total` over
        // the hold's scrapes, the load generator's from its own clock over the hold.
        let per_player_second = |cpu_s: f64| {
            (totals.player_seconds > 0.0).then(|| cpu_s * 1000.0 / totals.player_seconds)
        };
        let edge_cpu_s = after
            .and_then(|a| Some(a.cpu_seconds? - before?.cpu_seconds?))
            .filter(|s| *s >= 0.0);
        let loadgen_cpu_s = match totals.cpu_at_hold {
            (Some(from), Some(to)) => Some(to.saturating_sub(from).as_secs_f64()),
            _ => None,
        };
        Report {
            players_target: self.target,
            players_connected: self.stayed.load(Ordering::Relaxed),
            player_seconds_held: totals.player_seconds,
            player_seconds_target: f64::from(self.target) * hold.as_secs_f64(),
            match_ends: self.match_ends.load(Ordering::Relaxed),
            edge_cpu_ms_per_player_second: edge_cpu_s.and_then(per_player_second),
            loadgen_cpu_ms_per_player_second: loadgen_cpu_s.and_then(per_player_second),
            edge_cpu_cores: edge_cpu_s.map(|s| s / hold.as_secs_f64().max(1e-3)),
            requeues_cut_short: self.cut_short.load(Ordering::Relaxed),
            players_joined: self.joined.load(Ordering::Relaxed),
            connect_attempts: self.attempts.load(Ordering::Relaxed),
            connect_failures: self.failed.load(Ordering::Relaxed),
            matches: lock(&self.matches).len() as u32,
            match_size: config.match_size,
            tick_hz: config.match_config.tick_hz,
            snapshot_hz: config.match_config.snapshot_hz,
            input_hz: config.input_hz,
            ramp_s: ramp.as_secs_f64(),
            duration_s: hold.as_secs_f64(),
            elapsed_s: elapsed.as_secs_f64(),
            ticks: after
                .zip(before)
                .map_or(0, |(a, b)| a.ticks().saturating_sub(b.ticks())),
            tick_ms_p50: tick(0.5),
            tick_ms_p99: tick(0.99),
            missed_ticks: after.map(|a| {
                a.missed_ticks
                    .saturating_sub(before.map_or(0, |b| b.missed_ticks))
            }),
            edge_snapshots_dropped: after.map(|a| {
                a.snapshots_dropped
                    .saturating_sub(before.map_or(0, |b| b.snapshots_dropped))
            }),
            rtt_ms_p50: quantile(&totals.input_rtt_us, 0.5, 1000.0),
            rtt_ms_p95: quantile(&totals.input_rtt_us, 0.95, 1000.0),
            rtt_ms_p99: quantile(&totals.input_rtt_us, 0.99, 1000.0),
            quic_rtt_ms_p50: quantile(&totals.quic_rtt_us, 0.5, 1000.0),
            quic_rtt_ms_p99: quantile(&totals.quic_rtt_us, 0.99, 1000.0),
            jitter_ms_p50: quantile(&totals.jitter_us, 0.5, 1000.0),
            jitter_ms_p99: quantile(&totals.jitter_us, 0.99, 1000.0),
            kbps_down_per_player_p50: quantile(&totals.down_bps, 0.5, 1000.0),
            kbps_down_per_player_p99: quantile(&totals.down_bps, 0.99, 1000.0),
            kbps_up_per_player_p50: quantile(&totals.up_bps, 0.5, 1000.0),
            packets_down_per_player_s_p50: quantile(&totals.down_pps, 0.5, 1000.0),
            packets_up_per_player_s_p50: quantile(&totals.up_pps, 0.5, 1000.0),
            snapshots_received: totals.snapshots,
            snapshots_per_s: totals.snapshots as f64 / hold.as_secs_f64().max(1e-3),
            errors: errors_total,
            errors_by_kind: totals.errors.clone(),
            scrape_failures: totals.scrape_failures,
            series: totals.series.clone(),
        }
    }
}

/// Closes a second every second until `stop`, then the last (partial) one.
pub(crate) async fn collect(recorder: Arc<Recorder>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => recorder.close_second(),
            () = stop.cancelled() => {
                recorder.close_second();
                return;
            }
        }
    }
}

/// The live progress: a bar on a terminal, a line every five seconds otherwise.
pub(crate) async fn progress(recorder: Arc<Recorder>, stop: CancellationToken) {
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(u64::from(recorder.target));
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed:>4} [{bar:30}] {pos}/{len} players · {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        n += 1;
        let connected = recorder.connected.load(Ordering::Relaxed);
        let latest = recorder.latest().unwrap_or_default();
        let (errors, matches) = {
            let totals = lock(&recorder.totals);
            let matches = totals.scrapes.last().map_or_else(
                || connected.div_ceil(u64::from(recorder.match_size.max(1))),
                |(_, s)| s.matches,
            );
            (totals.errors.values().sum::<u64>(), matches)
        };
        let message = format!(
            "{} matches · {} snapshots/s · rtt p50 {:.1} ms p99 {:.1} ms · tick p99 {} · {} errors",
            matches,
            latest.snapshots_per_s,
            latest.rtt_ms_p50,
            latest.rtt_ms_p99,
            latest
                .tick_ms_p99
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.2} ms")),
            errors,
        );
        bar.set_position(connected);
        bar.set_message(message.clone());
        if !tty && n.is_multiple_of(5) {
            eprintln!(
                "{:>4}s {connected}/{} players · {message}",
                recorder.started.elapsed().as_secs(),
                recorder.target
            );
        }
    }
    bar.finish_and_clear();
}

/// The scrapes that bound the hold: where it starts (the scrape taken as the ramp ended,
/// else the last one before the ramp ended) and where it ends (the first one after it
/// ended, else the last one).
fn hold_scrapes(
    scrapes: &[(Duration, EdgeScrape)],
    hold_start: Option<&EdgeScrape>,
    ramp: Duration,
    hold_end: Duration,
) -> (Option<EdgeScrape>, Option<EdgeScrape>) {
    let before = hold_start.cloned().or_else(|| {
        scrapes
            .iter()
            .rev()
            .find(|(at, _)| *at <= ramp)
            .map(|(_, s)| s.clone())
    });
    let after = scrapes
        .iter()
        .find(|(at, _)| *at >= hold_end)
        .or(scrapes.last())
        .map(|(_, s)| s.clone());
    (before, after)
}

/// This process's CPU time so far (user and system, every thread).
fn own_cpu() -> Option<Duration> {
    cpu_time::ProcessTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(ticks: u64, missed: u64) -> EdgeScrape {
        EdgeScrape {
            tick_buckets: vec![(0.001, ticks), (f64::INFINITY, ticks)],
            missed_ticks: missed,
            ..EdgeScrape::default()
        }
    }

    /// Regression test for a summary that fell back to the edge's lifetime counters when
    /// the ramp ended before the first scrape came back: the hold then counted every
    /// tick (and missed tick) since the edge started.
    #[test]
    fn the_hold_starts_at_the_scrape_taken_as_the_ramp_ended() {
        let ms = Duration::from_millis;
        // The first periodic scrape came back after the ramp (40 ms) had ended.
        let scrapes = vec![(ms(60), scrape(900, 50)), (ms(10_100), scrape(2100, 55))];
        let (before, after) = hold_scrapes(&scrapes, None, ms(40), ms(10_040));
        assert!(before.is_none(), "no starting point without the mark");
        assert_eq!(after.as_ref().map(|a| a.missed_ticks), Some(55));
        // With the scrape taken as the ramp ended, the hold is bounded on both sides.
        let mark = scrape(880, 50);
        let (before, after) = hold_scrapes(&scrapes, Some(&mark), ms(40), ms(10_040));
        let (before, after) = (before.expect("start"), after.expect("end"));
        assert_eq!(after.ticks() - before.ticks(), 1220);
        assert_eq!(after.missed_ticks - before.missed_ticks, 5);
    }
}
