//! The run's report: one JSON object, and a self-contained HTML page with SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{ErrorCounts, Second};

/// What a load test measured. Player figures are over the hold (after the ramp, until
/// the end); edge figures come from its `/metrics` over the same span (`None` when it
/// was not scraped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Players asked for.
    pub players_target: u32,
    /// Players connected from their join to the end of the run (in their last match).
    pub players_connected: u64,
    /// Time players spent in matches during the hold, summed over players, seconds.
    pub player_seconds_held: f64,
    /// What that would be with every player in a match all the hold: players × hold.
    pub player_seconds_target: f64,
    /// Matches that ended under a player (the edge's goodbye `match_over`): counted here,
    /// not as errors; with the full stack those players queue again.
    pub match_ends: u64,
    /// Players still queueing again for their next match when the run ended (not errors).
    pub requeues_cut_short: u64,
    /// The edge process's CPU time over the hold (its `process_cpu_seconds_total`) per
    /// player-second held, milliseconds; `None` without the edge's metrics.
    pub edge_cpu_ms_per_player_second: Option<f64>,
    /// The load generator's own CPU time over the hold per player-second held,
    /// milliseconds.
    pub loadgen_cpu_ms_per_player_second: Option<f64>,
    /// The edge's CPU over the hold, in cores (CPU seconds per second).
    pub edge_cpu_cores: Option<f64>,
    /// Players that joined at some point.
    pub players_joined: u64,
    /// Joins tried.
    pub connect_attempts: u64,
    /// Joins that failed.
    pub connect_failures: u64,
    /// Matches the players joined.
    pub matches: u32,
    /// Players per match asked for (the mode decides with the full stack).
    pub match_size: u16,
    /// Simulation rate.
    pub tick_hz: u16,
    /// Snapshots per second per player.
    pub snapshot_hz: u16,
    /// Inputs per second per player.
    pub input_hz: u16,
    /// Time the ramp-up took, seconds.
    pub ramp_s: f64,
    /// Time every player was held after the ramp, seconds.
    pub duration_s: f64,
    /// Whole run, seconds.
    pub elapsed_s: f64,
    /// Match ticks the edge ran during the hold.
    pub ticks: u64,
    /// Edge tick time, median, milliseconds.
    pub tick_ms_p50: Option<f64>,
    /// Edge tick time, 99th percentile, milliseconds.
    pub tick_ms_p99: Option<f64>,
    /// Ticks the edge skipped because it fell behind.
    pub missed_ticks: Option<u64>,
    /// Snapshots the edge dropped on full send queues.
    pub edge_snapshots_dropped: Option<u64>,
    /// Input-to-acknowledgement round trip, median, milliseconds.
    pub rtt_ms_p50: f64,
    /// 95th percentile of the same.
    pub rtt_ms_p95: f64,
    /// 99th percentile of the same.
    pub rtt_ms_p99: f64,
    /// QUIC's smoothed transport RTT, median, milliseconds.
    pub quic_rtt_ms_p50: f64,
    /// 99th percentile of the same.
    pub quic_rtt_ms_p99: f64,
    /// Snapshot arrival jitter, median over players and seconds, milliseconds.
    pub jitter_ms_p50: f64,
    /// 99th percentile of the same.
    pub jitter_ms_p99: f64,
    /// Per-player download (UDP bytes), median, kbit/s.
    pub kbps_down_per_player_p50: f64,
    /// 99th percentile of the same.
    pub kbps_down_per_player_p99: f64,
    /// Per-player upload (UDP bytes), median, kbit/s.
    pub kbps_up_per_player_p50: f64,
    /// UDP datagrams per player per second from the edge (snapshots, acknowledgements,
    /// control stream), median.
    pub packets_down_per_player_s_p50: f64,
    /// The same to the edge (inputs, acknowledgements, control stream).
    pub packets_up_per_player_s_p50: f64,
    /// Snapshots all players received during the hold.
    pub snapshots_received: u64,
    /// The same per second.
    pub snapshots_per_s: f64,
    /// Errors of every kind.
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: ErrorCounts,
    /// Scrapes of the edge's metrics that failed.
    pub scrape_failures: u64,
    /// Second by second.
    pub series: Vec<Second>,
}

impl Report {
    /// One line for people.
    pub fn summary(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
        format!(
            "{}/{} players held {:.0}s ({:.0}/{:.0} player-seconds) in {} matches, {} match ends · tick p50 {} p99 {} · missed ticks {} · input RTT p50 {:.1} ms p99 {:.1} ms · {:.0} kbit/s down per player · CPU per player-second: edge {}, load generator {} · {} errors",
            self.players_connected,
            self.players_target,
            self.duration_s,
            self.player_seconds_held,
            self.player_seconds_target,
            self.matches,
            self.match_ends,
            ms(self.tick_ms_p50),
            ms(self.tick_ms_p99),
            self.missed_ticks
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
            self.rtt_ms_p50,
            self.rtt_ms_p99,
            self.kbps_down_per_player_p50,
            ms(self.edge_cpu_ms_per_player_second),
            ms(self.loadgen_cpu_ms_per_player_second),
            self.errors,
        )
    }

    /// Writes `report.json` and `index.html` into `dir` (created if missing); returns
    /// the page's path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        let page = dir.join("index.html");
        std::fs::write(&page, self.html()?)?;
        Ok(page)
    }

    /// The HTML page: a table of the figures and the plots, all inline.
    pub fn html(&self) -> anyhow::Result<String> {
        let t = |s: &Second| s.t_s;
        let line = |name: &'static str, color: RGBColor, f: &dyn Fn(&Second) -> Option<f64>| Line {
            name,
            color,
            points: self
                .series
                .iter()
                .filter_map(|s| f(s).map(|v| (t(s), v)))
                .collect(),
        };
        let mut plots = vec![
            chart(
                "Input-to-acknowledgement round trip",
                "ms",
                &[
                    line("p50", BLUE, &|s| Some(s.rtt_ms_p50)),
                    line("p95", GREEN, &|s| Some(s.rtt_ms_p95)),
                    line("p99", RED, &|s| Some(s.rtt_ms_p99)),
                ],
            )?,
            chart(
                "Snapshot inter-arrival jitter",
                "ms",
                &[
                    line("p50", BLUE, &|s| Some(s.jitter_ms_p50)),
                    line("p99", RED, &|s| Some(s.jitter_ms_p99)),
                ],
            )?,
            chart(
                "Bandwidth per player (median)",
                "kbit/s",
                &[
                    line("down", BLUE, &|s| Some(s.kbps_down_p50)),
                    line("up", RED, &|s| Some(s.kbps_up_p50)),
                ],
            )?,
            chart(
                "Edge tick time (from /metrics)",
                "ms",
                &[
                    line("p50", BLUE, &|s| s.tick_ms_p50),
                    line("p99", RED, &|s| s.tick_ms_p99),
                ],
            )?,
            chart(
                "Connects",
                "players",
                &[
                    line("connected now", BLUE, &|s| Some(s.players_connected as f64)),
                    line("joins ok", GREEN, &|s| Some(s.connects_ok as f64)),
                    line("joins failed", RED, &|s| Some(s.connects_failed as f64)),
                ],
            )?,
        ];
        // Errors by kind, cumulative; a flat line at zero when there were none.
        let palette = [RED, MAGENTA, CYAN, BLACK, GREEN, BLUE, YELLOW];
        let mut error_lines = Vec::new();
        for (i, kind) in self.errors_by_kind.keys().enumerate() {
            let mut sum = 0.0;
            error_lines.push(Line {
                name: kind.as_str(),
                color: palette[i % palette.len()],
                points: self
                    .series
                    .iter()
                    .map(|s| {
                        sum += s.errors.get(kind).copied().unwrap_or(0) as f64;
                        (s.t_s, sum)
                    })
                    .collect(),
            });
        }
        if error_lines.is_empty() {
            error_lines.push(Line {
                name: "none",
                color: GREEN,
                points: self.series.iter().map(|s| (s.t_s, 0.0)).collect(),
            });
        }
        plots.push(chart(
            "Errors by kind (cumulative)",
            "errors",
            &error_lines,
        )?);

        let mut rows = String::new();
        let json = serde_json::to_value(self)?;
        if let Some(fields) = json.as_object() {
            for (key, value) in fields {
                if key == "series" {
                    continue;
                }
                let _ = writeln!(
                    rows,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    escape(key),
                    escape(&value.to_string())
                );
            }
        }
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Outpost load test</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:1500px}}\
             table{{border-collapse:collapse;margin-bottom:2em}}th,td{{border:1px solid #ccc;padding:2px 8px;text-align:left}}\
             .plots{{display:flex;flex-wrap:wrap;gap:1em}}</style></head><body>\n\
             <h1>Outpost load test</h1>\n<p>{}</p>\n<table>\n{rows}</table>\n<div class=\"plots\">\n",
            escape(&self.summary())
        );
        for plot in plots {
            html.push_str("<figure>");
            html.push_str(&plot);
            html.push_str("</figure>\n");
        }
        html.push_str("</div></body></html>\n");
        Ok(html)
    }
}

struct Line<'a> {
    name: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line chart over the run's time, as an SVG element.
fn chart(title: &str, unit: &str, lines: &[Line<'_>]) -> anyhow::Result<String> {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 320)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {title}: {e}");
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()
            .map_err(|e| fail(&e))?;
        for line in lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), color))
                .map_err(|e| fail(&e))?
                .label(line.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}
