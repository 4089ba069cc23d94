//! Prometheus metrics of one edge, in its own registry (several edges can share a
//! process, as they do in tests).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of the rejects counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// A [`outpost_protocol::RejectCode::as_str`].
    pub reason: &'static str,
}

/// Every metric an edge exports.
pub struct EdgeMetrics {
    registry: Registry,
    /// Time to run one match tick (inputs, physics, rules, snapshots), seconds.
    pub tick_duration: Histogram,
    /// Ticks skipped because a worker fell too far behind its clock.
    pub missed_ticks: Counter,
    /// Players connected now.
    pub players: Gauge,
    /// Matches hosted now.
    pub matches: Gauge,
    /// Players admitted (joins and rejoins).
    pub joins: Counter,
    /// Datagrams received.
    pub datagrams_in: Counter,
    /// Datagrams sent.
    pub datagrams_out: Counter,
    /// Datagram bytes received.
    pub bytes_in: Counter,
    /// Datagram bytes sent.
    pub bytes_out: Counter,
    /// Datagrams dropped as malformed, unexpected or over the rate limit.
    pub datagrams_rejected: Counter,
    /// Control-stream frames refused as malformed or unexpected.
    pub control_rejected: Counter,
    /// Input frames dropped because their seat's mailbox was full (the client sent
    /// faster than its match ticks; the frames' redundancy covers an honest client).
    pub inputs_dropped: Counter,
    /// Inputs the simulation dropped: beyond the player's time budget (sent faster than
    /// the clock), its input queue full, or claiming an impossible span.
    pub inputs_over_budget: Counter,
    /// Snapshots dropped because a connection's queue was full.
    pub snapshots_dropped: Counter,
    /// Connections refused, by reason.
    pub rejects: Family<RejectLabels, Counter>,
    /// Mode requests received from seated players.
    pub requests: Counter,
    /// Mode requests refused, by reason ([`outpost_protocol::RefusalCode::as_str`]).
    pub requests_refused: Family<RejectLabels, Counter>,
    /// Connections pending now: handshaking, or without a valid Hello yet.
    pub handshakes_pending: Gauge,
    /// Initials answered with a Retry (address validation).
    pub handshake_retries: Counter,
    /// Initials refused before any handshake, by reason
    /// ([`crate::handshake::Refusal::as_str`]).
    pub handshakes_refused: Family<RejectLabels, Counter>,
    /// Outbox writes that failed (each retried; results are never dropped).
    pub outbox_write_failures: Counter,
    /// Results held in memory because the outbox could not be written.
    pub outbox_unwritten: Gauge,
    /// Matches that ended with their result handed to the outbox.
    pub matches_finished: Counter,
    /// Results the cloud acknowledged (the cloud link).
    pub results_delivered: Counter,
    /// Replays the cloud acknowledged (the cloud link).
    pub replays_delivered: Counter,
    /// The admin server's connections (`admin_http_…`).
    pub admin_http: outpost_httpd::ConnStats,
    /// The HTTP gateway's counters (zero when it does not run).
    pub gateway: crate::gateway::GatewayStats,
}

impl EdgeMetrics {
    /// Fresh metrics in a fresh registry.
    pub fn new() -> Self {
        // The process's own figures by Prometheus' names (`process_…`), the edge's under
        // `outpost_edge_…`.
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCpu));
        // Fine below a 60 Hz frame (16.7 ms), where the budget is decided.
        let buckets = [
            0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.004, 0.006,
            0.008, 0.012, 0.016, 0.033, 0.066, 0.1,
        ];
        let metrics = Self {
            registry: Registry::default(),
            tick_duration: Histogram::new(buckets),
            missed_ticks: Counter::default(),
            players: Gauge::default(),
            matches: Gauge::default(),
            joins: Counter::default(),
            datagrams_in: Counter::default(),
            datagrams_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            datagrams_rejected: Counter::default(),
            control_rejected: Counter::default(),
            inputs_dropped: Counter::default(),
            inputs_over_budget: Counter::default(),
            snapshots_dropped: Counter::default(),
            rejects: Family::default(),
            requests: Counter::default(),
            requests_refused: Family::default(),
            handshakes_pending: Gauge::default(),
            handshake_retries: Counter::default(),
            handshakes_refused: Family::default(),
            outbox_write_failures: Counter::default(),
            outbox_unwritten: Gauge::default(),
            matches_finished: Counter::default(),
            results_delivered: Counter::default(),
            replays_delivered: Counter::default(),
            admin_http: outpost_httpd::ConnStats::default(),
            gateway: crate::gateway::GatewayStats::default(),
        };
        let r = registry.sub_registry_with_prefix("outpost_edge");
        r.register(
            "tick_duration_seconds",
            "Time to run one match tick",
            metrics.tick_duration.clone(),
        );
        r.register(
            "missed_ticks",
            "Ticks skipped by a late sim worker",
            metrics.missed_ticks.clone(),
        );
        r.register("players", "Players connected", metrics.players.clone());
        r.register("matches", "Matches hosted", metrics.matches.clone());
        r.register("joins", "Players admitted", metrics.joins.clone());
        r.register(
            "datagrams_in",
            "Datagrams received",
            metrics.datagrams_in.clone(),
        );
        r.register(
            "datagrams_out",
            "Datagrams sent",
            metrics.datagrams_out.clone(),
        );
        r.register(
            "datagram_bytes_in",
            "Datagram bytes received",
            metrics.bytes_in.clone(),
        );
        r.register(
            "datagram_bytes_out",
            "Datagram bytes sent",
            metrics.bytes_out.clone(),
        );
        r.register(
            "datagrams_rejected",
            "Datagrams dropped as invalid",
            metrics.datagrams_rejected.clone(),
        );
        r.register(
            "control_rejected",
            "Control frames refused",
            metrics.control_rejected.clone(),
        );
        r.register(
            "inputs_dropped",
            "Input frames dropped on a full seat mailbox",
            metrics.inputs_dropped.clone(),
        );
        r.register(
            "inputs_over_budget",
            "Inputs the simulation dropped: over the time budget, queue full or invalid",
            metrics.inputs_over_budget.clone(),
        );
        r.register(
            "snapshots_dropped",
            "Snapshots dropped on a full send queue",
            metrics.snapshots_dropped.clone(),
        );
        r.register(
            "rejects",
            "Connections refused, by reason",
            metrics.rejects.clone(),
        );
        r.register(
            "requests",
            "Mode requests received from seated players",
            metrics.requests.clone(),
        );
        r.register(
            "requests_refused",
            "Mode requests refused, by reason",
            metrics.requests_refused.clone(),
        );
        r.register(
            "handshakes_pending",
            "Connections handshaking or without a valid Hello yet",
            metrics.handshakes_pending.clone(),
        );
        r.register(
            "handshake_retries",
            "Initials answered with a Retry",
            metrics.handshake_retries.clone(),
        );
        r.register(
            "handshakes_refused",
            "Initials refused before a handshake, by reason",
            metrics.handshakes_refused.clone(),
        );
        r.register(
            "outbox_write_failures",
            "Outbox writes that failed (retried)",
            metrics.outbox_write_failures.clone(),
        );
        r.register(
            "outbox_unwritten",
            "Results held in memory, not yet written to the outbox",
            metrics.outbox_unwritten.clone(),
        );
        r.register(
            "matches_finished",
            "Matches ended with their result handed to the outbox",
            metrics.matches_finished.clone(),
        );
        r.register(
            "results_delivered",
            "Results the cloud acknowledged",
            metrics.results_delivered.clone(),
        );
        r.register(
            "replays_delivered",
            "Replays the cloud acknowledged",
            metrics.replays_delivered.clone(),
        );
        metrics.admin_http.register(r, "admin_http");
        metrics.gateway.register(r);
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a refused request.
    pub fn refuse_request(&self, code: outpost_protocol::RefusalCode) {
        self.requests_refused
            .get_or_create(&RejectLabels {
                reason: code.as_str(),
            })
            .inc();
    }

    /// Counts a refused connection.
    pub fn reject(&self, code: outpost_protocol::RejectCode) {
        self.rejects
            .get_or_create(&RejectLabels {
                reason: code.as_str(),
            })
            .inc();
    }

    /// Refused connections of one reason so far.
    pub fn rejects_of(&self, code: outpost_protocol::RejectCode) -> u64 {
        self.rejects
            .get_or_create(&RejectLabels {
                reason: code.as_str(),
            })
            .get()
    }

    /// Counts an Initial refused before its handshake.
    pub fn refuse_handshake(&self, refusal: crate::handshake::Refusal) {
        self.handshakes_refused
            .get_or_create(&RejectLabels {
                reason: refusal.as_str(),
            })
            .inc();
    }

    /// Initials refused for one reason so far.
    pub fn handshakes_refused_of(&self, refusal: crate::handshake::Refusal) -> u64 {
        self.handshakes_refused
            .get_or_create(&RejectLabels {
                reason: refusal.as_str(),
            })
            .get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `process_cpu_seconds_total`: the CPU time (user and system) this process has used, as
/// Prometheus' own client libraries export it; read at each scrape.
#[derive(Debug)]
struct ProcessCpu;

impl prometheus_client::collector::Collector for ProcessCpu {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        let Ok(used) = cpu_time::ProcessTime::try_now() else {
            return Ok(());
        };
        let counter = prometheus_client::metrics::counter::ConstCounter::new(
            used.as_duration().as_secs_f64(),
        );
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's CPU time is exported under Prometheus' own name, and grows with work;
    /// the edge's metrics keep their prefix.
    #[test]
    fn process_cpu_seconds_is_exported_unprefixed_and_grows() {
        let metrics = EdgeMetrics::new();
        let cpu = |page: &str| -> f64 {
            page.lines()
                .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no process_cpu_seconds_total in {page}"))
        };
        let before = cpu(&metrics.render());
        // Spend CPU: 50 ms of hashing at the least.
        let started = cpu_time::ProcessTime::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let page = metrics.render();
        assert!(cpu(&page) >= before + 0.05, "{before} → {}", cpu(&page));
        assert!(page.contains("outpost_edge_missed_ticks_total"), "{page}");
    }
}
