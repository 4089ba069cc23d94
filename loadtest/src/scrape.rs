//! Reading an edge's Prometheus `/metrics`: tick-time histogram, missed ticks, players.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::recorder::Recorder;

const TICK_HISTOGRAM: &str = "outpost_edge_tick_duration_seconds_bucket";
const MISSED_TICKS: &str = "outpost_edge_missed_ticks_total";
const PLAYERS: &str = "outpost_edge_players";
const MATCHES: &str = "outpost_edge_matches";
const SNAPSHOTS_DROPPED: &str = "outpost_edge_snapshots_dropped_total";
const PROCESS_CPU: &str = "process_cpu_seconds_total";

/// What one scrape of an edge's metrics said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeScrape {
    /// The tick-duration histogram: (upper bound in seconds, cumulative count), in order;
    /// the last bound is infinity.
    pub tick_buckets: Vec<(f64, u64)>,
    /// Ticks skipped so far.
    pub missed_ticks: u64,
    /// Players connected now.
    pub players: u64,
    /// Matches hosted now.
    pub matches: u64,
    /// Snapshots dropped on full send queues so far.
    pub snapshots_dropped: u64,
    /// The edge process's CPU time so far (`process_cpu_seconds_total`), seconds; `None`
    /// if it does not export it.
    pub cpu_seconds: Option<f64>,
}

impl EdgeScrape {
    /// Ticks measured so far.
    pub fn ticks(&self) -> u64 {
        self.tick_buckets.last().map_or(0, |b| b.1)
    }
}

/// Parses the Prometheus/OpenMetrics text exposition of an edge. Lines it does not know
/// are skipped; a histogram with no buckets means the page was not an edge's.
pub fn parse(text: &str) -> Result<EdgeScrape, String> {
    let mut scrape = EdgeScrape::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        if let Some(labels) = key.strip_prefix(TICK_HISTOGRAM) {
            let bound = labels
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .ok_or_else(|| format!("bucket without a bound: {line}"))?;
            let bound = match bound {
                "+Inf" => f64::INFINITY,
                b => b.parse().map_err(|_| format!("bad bucket bound: {line}"))?,
            };
            scrape.tick_buckets.push((bound, value as u64));
        } else if key == MISSED_TICKS {
            scrape.missed_ticks = value as u64;
        } else if key == PLAYERS {
            scrape.players = value as u64;
        } else if key == MATCHES {
            scrape.matches = value as u64;
        } else if key == SNAPSHOTS_DROPPED {
            scrape.snapshots_dropped = value as u64;
        } else if key == PROCESS_CPU {
            scrape.cpu_seconds = Some(value);
        }
    }
    if scrape.tick_buckets.is_empty() {
        return Err("no outpost_edge_tick_duration_seconds histogram".into());
    }
    scrape.tick_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(scrape)
}

/// The `q` quantile, in milliseconds, of the ticks measured between two scrapes,
/// interpolated linearly inside the bucket it falls in (as Prometheus'
/// `histogram_quantile` does). `None` when no tick ran between them.
pub fn tick_quantile_ms(before: Option<&EdgeScrape>, after: &EdgeScrape, q: f64) -> Option<f64> {
    let counts: Vec<(f64, u64)> = after
        .tick_buckets
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .and_then(|b| b.tick_buckets.iter().find(|x| x.0 == bound))
                .map_or(0, |x| x.1);
            (bound, count.saturating_sub(earlier))
        })
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in &counts {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let within = (count - lower.1) as f64;
            let fraction = if within > 0.0 {
                (rank - lower.1 as f64) / within
            } else {
                1.0
            };
            return Some((lower.0 + (bound - lower.0) * fraction) * 1000.0);
        }
        lower = (bound, count);
    }
    Some(lower.0 * 1000.0)
}

/// Scrapes `url` every `every` until `stop`, then once more; each scrape goes to the
/// recorder (failures are counted, not fatal). A notification on `hold_started` scrapes
/// at once, as the hold's starting point: the summary then covers the hold exactly, even
/// when the ramp ended before the first periodic scrape came back.
pub(crate) async fn watch(
    url: String,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    every: Duration,
    hold_started: Arc<tokio::sync::Notify>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_idle_timeout(outpost_protocol::HTTP_CLIENT_IDLE)
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            tracing::warn!(%err, "no HTTP client: the edge's metrics are not scraped");
            return;
        }
    };
    let fetch = async |http: &reqwest::Client| -> Result<EdgeScrape, String> {
        let text = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        parse(&text)
    };
    let mut ticker = tokio::time::interval(every);
    loop {
        let (stopping, marks_hold) = tokio::select! {
            _ = ticker.tick() => (false, false),
            () = hold_started.notified() => (false, true),
            () = stop.cancelled() => (true, false),
        };
        match fetch(&http).await {
            Ok(scrape) if marks_hold => recorder.hold_start_scrape(scrape),
            Ok(scrape) => recorder.edge_scrape(scrape),
            Err(err) => {
                tracing::debug!(%err, "scraping the edge's metrics failed");
                recorder.scrape_failed();
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# TYPE outpost_edge_tick_duration_seconds histogram
outpost_edge_tick_duration_seconds_sum 0.5
outpost_edge_tick_duration_seconds_count 100
outpost_edge_tick_duration_seconds_bucket{le=\"0.001\"} 50
outpost_edge_tick_duration_seconds_bucket{le=\"0.002\"} 90
outpost_edge_tick_duration_seconds_bucket{le=\"0.004\"} 100
outpost_edge_tick_duration_seconds_bucket{le=\"+Inf\"} 100
# TYPE outpost_edge_missed_ticks counter
outpost_edge_missed_ticks_total 3
outpost_edge_players 16
outpost_edge_matches 1
outpost_edge_snapshots_dropped_total 7
# EOF
";

    #[test]
    fn parses_an_edge_page() {
        let scrape = parse(PAGE).expect("parses");
        assert_eq!(scrape.ticks(), 100);
        assert_eq!(scrape.missed_ticks, 3);
        assert_eq!(scrape.players, 16);
        assert_eq!(scrape.matches, 1);
        assert_eq!(scrape.snapshots_dropped, 7);
        assert_eq!(scrape.tick_buckets.len(), 4);
    }

    #[test]
    fn quantiles_interpolate_within_buckets_and_between_scrapes() {
        let after = parse(PAGE).expect("parses");
        // 50 of 100 at or under 1 ms: the median is the top of the first bucket.
        let p50 = tick_quantile_ms(None, &after, 0.5).expect("ticks ran");
        assert!((p50 - 1.0).abs() < 1e-9, "{p50}");
        // The 95th is halfway through the 2..4 ms bucket (90 → 100).
        let p95 = tick_quantile_ms(None, &after, 0.95).expect("ticks ran");
        assert!((p95 - 3.0).abs() < 1e-9, "{p95}");
        // Between two scrapes only the difference counts.
        let mut before = after.clone();
        before.tick_buckets = vec![(0.001, 50), (0.002, 50), (0.004, 50), (f64::INFINITY, 50)];
        // 50 new ticks, 40 of them in the 1..2 ms bucket: the 25th is 25/40 through it.
        let p50 = tick_quantile_ms(Some(&before), &after, 0.5).expect("ticks ran");
        assert!((p50 - 1.625).abs() < 1e-9, "{p50}");
        assert_eq!(tick_quantile_ms(Some(&after), &after, 0.5), None);
    }

    #[test]
    fn pages_that_are_not_an_edges_are_refused() {
        assert!(parse("hello\n").is_err());
        assert!(parse("outpost_edge_tick_duration_seconds_bucket{le=\"x\"} 1\n").is_err());
    }
}
