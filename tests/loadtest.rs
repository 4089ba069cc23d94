//! `outpost loadtest` end to end: a small run against a spawned edge, its JSON and HTML
//! report checked for consistency; players the edge refuses; and the runs it must refuse.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use outpost_loadtest::{LoadConfig, Target};
use outpost_protocol::TokenSigner;

fn outpost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the outpost binary runs")
}

fn number(report: &serde_json::Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {report}"))
}

#[test]
fn small_load_test_holds_every_player_and_reports_consistent_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_dir = dir.path().join("report");
    let output = outpost(&[
        "loadtest",
        "--spawn-edge",
        "--players",
        "32",
        "--match-size",
        "16",
        "--duration",
        "10s",
        "--ramp",
        "32",
        "--threads",
        "1",
        "--json",
        "--report",
        report_dir.to_str().expect("utf-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadtest failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 JSON");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");

    // Everyone joined, stayed, and nothing failed.
    assert_eq!(number(&report, "players_target"), 32.0);
    assert_eq!(number(&report, "players_connected"), 32.0, "{stderr}");
    assert_eq!(number(&report, "players_joined"), 32.0);
    assert_eq!(number(&report, "connect_attempts"), 32.0);
    assert_eq!(number(&report, "connect_failures"), 0.0);
    assert_eq!(
        number(&report, "errors"),
        0.0,
        "{}",
        report["errors_by_kind"]
    );
    assert_eq!(number(&report, "matches"), 2.0);
    assert_eq!(number(&report, "scrape_failures"), 0.0);
    // CPU per player-second, the edge's from its process_cpu_seconds_total, the load
    // generator's from its own clock: both measured (their sizes are benchmarks').
    assert!(
        number(&report, "edge_cpu_ms_per_player_second") > 0.0,
        "{report}"
    );
    assert!(
        number(&report, "loadgen_cpu_ms_per_player_second") > 0.0,
        "{report}"
    );
    assert!(number(&report, "edge_cpu_cores") > 0.0, "{report}");
    // The hold is bounded by the run (how much of it the ramp took depends on the
    // machine, so only the bound is asserted; speed is measured in benchmarks).
    let held = number(&report, "duration_s");
    assert!(held > 0.0 && held <= 12.0, "held {held} s");
    // Figures are present, positive and ordered.
    for field in [
        "tick_ms_p50",
        "rtt_ms_p50",
        "quic_rtt_ms_p50",
        "kbps_down_per_player_p50",
        "kbps_up_per_player_p50",
        "packets_down_per_player_s_p50",
        "packets_up_per_player_s_p50",
        "snapshots_per_s",
        "ticks",
    ] {
        assert!(number(&report, field) > 0.0, "{field} in {report}");
    }
    assert!(number(&report, "tick_ms_p99") >= number(&report, "tick_ms_p50"));
    assert!(number(&report, "rtt_ms_p99") >= number(&report, "rtt_ms_p95"));
    assert!(number(&report, "rtt_ms_p95") >= number(&report, "rtt_ms_p50"));
    assert!(report["missed_ticks"].is_u64(), "missed_ticks scraped");
    // Never more snapshots than the edge sends: 32 players at 30 Hz.
    let per_second = number(&report, "snapshots_per_s");
    assert!(per_second <= 32.0 * 30.0 * 1.2, "{per_second} snapshots/s");
    assert_eq!(
        number(&report, "snapshots_received"),
        report["snapshots_received"].as_u64().expect("count") as f64
    );
    // The series covers the run, one entry a second.
    let series = report["series"].as_array().expect("series");
    let elapsed = number(&report, "elapsed_s");
    assert!(
        series.len() as f64 >= elapsed - 2.0,
        "{} seconds recorded of {elapsed}",
        series.len()
    );
    assert!(series.iter().any(|s| s["tick_ms_p99"].as_f64().is_some()));
    assert!(series.iter().any(|s| s["players_connected"] == 32));

    // The report folder: the same JSON, and a page with its six plots inline.
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report_dir.join("report.json")).expect("report.json"),
    )
    .expect("report.json parses");
    assert_eq!(saved, report);
    let page = std::fs::read_to_string(report_dir.join("index.html")).expect("index.html");
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(page.matches("<svg").count(), 6, "six plots");
    for title in [
        "Input-to-acknowledgement round trip",
        "Snapshot inter-arrival jitter",
        "Bandwidth per player",
        "Edge tick time",
        "Connects",
        "Errors by kind",
    ] {
        assert!(page.contains(title), "plot {title}");
    }
    assert!(!page.contains("src=\"http"), "self-contained");
    assert!(Path::new(&report_dir.join("index.html")).exists());
}

/// Players whose tokens the edge does not trust (signed with another key) are each
/// counted once as a rejected join, none plays, and the run ends by itself: the load
/// generator's own transport (two sockets' worth of players here) reads the edge's
/// Reject as the SDK would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_the_edge_refuses_are_counted_as_rejected_joins() {
    let edge = common::TestEdge::start().await;
    let players = 40;
    let target = Target::Edge {
        addr: edge.edge.quic_addr(),
        fingerprint: edge.edge.cert_fingerprint(),
        edge_id: common::EDGE_ID.into(),
        signer: Arc::new(TokenSigner::from_seed(&[7; 32])),
    };
    let config = LoadConfig {
        match_size: 8,
        duration: Duration::from_secs(1),
        ramp_per_s: 400,
        ..LoadConfig::arena(target, players)
    };
    let report = outpost_loadtest::run(config).await.expect("the run ends");
    assert_eq!(report.connect_attempts, u64::from(players));
    assert_eq!(report.connect_failures, u64::from(players));
    assert_eq!(report.players_joined, 0);
    assert_eq!(report.players_connected, 0);
    assert_eq!(
        report.errors_by_kind.get("rejected"),
        Some(&u64::from(players)),
        "{:?}",
        report.errors_by_kind
    );
    assert_eq!(report.errors, u64::from(players));
    edge.edge.shutdown().await;
}

#[test]
fn unbounded_runs_and_non_loopback_targets_are_refused() {
    let seed = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(seed.path(), "11".repeat(32)).expect("seed written");
    let seed = seed.path().to_str().expect("utf-8 path");
    let fingerprint = "22".repeat(32);
    let refusals: [(&[&str], &str); 8] = [
        (&["--spawn-edge", "--players", "10"], "--duration"),
        (&["--spawn-edge", "--duration", "10s"], "--players"),
        (
            &["--spawn-edge", "--players", "0", "--duration", "10s"],
            "--players must be between 1 and 10000",
        ),
        (
            &["--spawn-edge", "--players", "20000", "--duration", "10s"],
            "--players must be between 1 and 10000",
        ),
        (
            &["--spawn-edge", "--players", "10", "--duration", "2h"],
            "--duration must be more than 0 and at most 3600s",
        ),
        (
            &[
                "--spawn-edge",
                "--players",
                "10",
                "--duration",
                "10s",
                "--threads",
                "0",
            ],
            "--threads",
        ),
        (
            &[
                "--edge",
                "10.1.2.3:7777",
                "--edge-fingerprint",
                &fingerprint,
                "--token-seed-file",
                seed,
                "--players",
                "10",
                "--duration",
                "10s",
            ],
            "not a loopback address; name it with --host 10.1.2.3",
        ),
        (
            &[
                "--api",
                "http://example.com:8080",
                "--players",
                "10",
                "--duration",
                "10s",
            ],
            "refusing to load example.com",
        ),
    ];
    for (args, expected) in refusals {
        let mut full = vec!["loadtest"];
        full.extend_from_slice(args);
        let output = outpost(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected `{expected}` in: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} printed a report");
    }
    // Asking for the dev key's public half needs no target and sends nothing.
    let output = outpost(&["loadtest", "--print-public-key", "--token-seed-file", seed]);
    assert!(output.status.success());
    let public = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(public.trim().len(), 64);
}

#[test]
fn full_stack_players_log_in_and_matchmake_through_the_gateway() {
    // The whole platform on loopback, free ports; its matches are of two players.
    let mut dev = Process::start(&[
        "dev",
        "--bots",
        "2",
        "--duration",
        "60s",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--cloud-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
    ]);
    // "outpost dev: cloud URL · gateway URL · edge ID on quic ADDR · metrics URL · …"
    let banner = dev.line("outpost dev:");
    let field = |prefix: &str| {
        banner
            .split(" · ")
            .find_map(|part| part.strip_prefix(prefix))
            .map(|rest| rest.split(' ').next().unwrap_or(rest).to_owned())
            .unwrap_or_else(|| panic!("no `{prefix}` in {banner}"))
    };
    let gateway = field("gateway ");
    let metrics = field("metrics ");
    let output = outpost(&[
        "loadtest",
        "--api",
        &gateway,
        "--metrics",
        &metrics,
        "--players",
        "4",
        "--duration",
        "5s",
        "--json",
    ]);
    drop(dev);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadtest failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(number(&report, "players_connected"), 4.0, "{stderr}");
    assert_eq!(
        number(&report, "errors"),
        0.0,
        "{}",
        report["errors_by_kind"]
    );
    // Matched by the cloud two by two (the dev mode's size); a loadtest player may be
    // paired with one of the dev bots, which matchmake too.
    let matches = number(&report, "matches");
    assert!((2.0..=4.0).contains(&matches), "{matches} matches");
    assert!(number(&report, "rtt_ms_p50") > 0.0);
    assert!(number(&report, "tick_ms_p99") > 0.0);
}

/// A nice value from a `/proc` stat: field 19 (those after the name's closing parenthesis
/// start at field 3).
#[cfg(target_os = "linux")]
fn nice_in(stat: &str) -> i64 {
    stat[stat.rfind(')').expect("stat names the thread") + 2..]
        .split(' ')
        .nth(19 - 3)
        .and_then(|n| n.parse().ok())
        .expect("a nice value")
}

#[cfg(target_os = "linux")]
fn read_proc(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).expect("readable")
}

/// A process's own (its first thread's) nice value.
#[cfg(target_os = "linux")]
fn process_nice(pid: u32) -> i64 {
    nice_in(&read_proc(format!("/proc/{pid}/stat")))
}

/// A process's threads: name and nice value.
#[cfg(target_os = "linux")]
fn thread_nices(pid: u32) -> Vec<(String, i64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .map(|task| {
            let path = task.expect("a thread").path();
            let name = read_proc(path.join("comm")).trim().to_owned();
            (name, nice_in(&read_proc(path.join("stat"))))
        })
        .collect()
}

/// The nice values of the threads whose names start with `prefix`.
#[cfg(target_os = "linux")]
fn named(threads: &[(String, i64)], prefix: &str) -> Vec<i64> {
    threads
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|&(_, nice)| nice)
        .collect()
}

/// The load generator with `--nice`: its network threads (the async runtime's) run that
/// much nicer, and the edge it spawns keeps the priority the load generator started with
/// (its simulation threads must not inherit the load generator's network threads').
#[cfg(target_os = "linux")]
#[test]
fn the_load_generators_threads_run_nicer_than_the_edge_it_spawned() {
    let mut run = Process::start(&[
        "loadtest",
        "--spawn-edge",
        "--players",
        "2",
        "--match-size",
        "2",
        "--duration",
        "2s",
        "--threads",
        "2",
        "--nice",
        "3",
    ]);
    run.line("outpost loadtest: spawned edge on quic");
    let pid = run.child.id();
    let base = process_nice(pid);
    let edge = std::fs::read_dir("/proc")
        .expect("processes")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat[stat.rfind(')').map_or(0, |at| at + 2)..]
                    .split(' ')
                    .nth(1)
                    .is_some_and(|parent| parent == pid.to_string())
            })
        })
        .expect("the spawned edge");
    let load_generator = thread_nices(pid);
    let network = named(&load_generator, "tokio-rt-worker");
    assert_eq!(network.len(), 2, "{load_generator:?}");
    assert!(
        network.iter().all(|&n| n == (base + 3).min(19)),
        "{load_generator:?}"
    );
    let edge_threads = thread_nices(edge);
    let simulation = named(&edge_threads, "outpost-sim-");
    assert!(!simulation.is_empty(), "{edge_threads:?}");
    assert!(simulation.iter().all(|&n| n == base), "{edge_threads:?}");
    // The run ends by itself (its stderr read to the end, so it never blocks on it).
    for _ in run.lines.by_ref() {}
    assert!(run.child.wait().expect("the run ends").success());
}

/// A child process killed (and reaped) when dropped, and the lines of its stderr.
struct Process {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

impl Process {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("outpost starts");
        let lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        Self { child, lines }
    }

    /// The first line (from here on) that starts with `prefix`.
    fn line(&mut self, prefix: &str) -> String {
        self.lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("the process exited before printing `{prefix}`"))
    }

    /// The first word after `prefix` on the first line that starts with it.
    fn announced(&mut self, prefix: &str) -> String {
        let line = self.line(prefix);
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Regression test for load-testing a production-configured stack: through an edge's
/// gateway, 6 of 16 players were refused at login by its per-address limit (they all
/// come from one address), and players whose match ended were counted as errors
/// (`kicked`) and never played again. With the operator's load-test key every player
/// gets in; a match's end is counted apart from errors and the player queues again.
#[test]
fn a_load_test_through_a_production_gateway_holds_every_player_and_requeues_after_match_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    std::fs::write(path("edge-secret"), "edge-secret-of-this-test-fleet").expect("write");
    std::fs::write(path("load-test-key"), "load-test-key-of-the-operator").expect("write");
    let credential = outpost(&[
        "edge-credential",
        "--edge-secret-file",
        &path("edge-secret"),
        "--edge-id",
        "lt-edge",
    ]);
    assert!(credential.status.success());
    std::fs::write(path("credential"), &credential.stdout).expect("write");
    // Matches of 4 that last 5 s: each player sees at least one end in a 12 s hold.
    let mut cloud = Process::start(&[
        "cloud",
        "--listen",
        "127.0.0.1:0",
        "--edge-secret-file",
        &path("edge-secret"),
        "--replay-dir",
        &path("replays"),
        "--modes",
        "arena",
        "--arena-players",
        "4",
        "--match-seconds",
        "5",
    ]);
    let cloud_url = cloud.announced("cloud listening: ");
    let mut edge = Process::start(&[
        "edge",
        "--edge-id",
        "lt-edge",
        "--region",
        "local",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--cloud-url",
        &cloud_url,
        "--edge-credential-file",
        &path("credential"),
        "--outbox-dir",
        &path("outbox"),
        "--gateway-listen",
        "127.0.0.1:0",
        "--gateway-load-test-key-file",
        &path("load-test-key"),
    ]);
    let gateway = edge.announced("gateway: ");
    edge.announced("edge listening: ");
    let output = outpost(&[
        "loadtest",
        "--api",
        &gateway,
        "--load-test-key-file",
        &path("load-test-key"),
        "--players",
        "16",
        "--ramp",
        "16",
        "--duration",
        "12s",
        "--json",
    ]);
    drop((edge, cloud));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadtest failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(
        number(&report, "errors"),
        0.0,
        "nobody refused, no match end counted as an error: {}",
        report["errors_by_kind"]
    );
    assert_eq!(number(&report, "connect_failures"), 0.0);
    assert!(
        number(&report, "match_ends") >= 16.0,
        "every player's first match ended: {report}"
    );
    assert!(
        number(&report, "players_joined") >= 32.0,
        "and each played again: {report}"
    );
    let held = number(&report, "player_seconds_held");
    assert!(
        held > 0.0 && held <= number(&report, "player_seconds_target"),
        "{held} player-seconds held"
    );
}

/// The edge as the load test spawns it, with `--net-nice`: the network threads (the async
/// runtime's) run that much nicer, the simulation threads at the process's own priority
/// (they must not inherit the network threads').
#[cfg(target_os = "linux")]
#[test]
fn the_edges_network_threads_run_nicer_than_its_simulation_threads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("token.pub");
    let public = TokenSigner::from_seed(&[7; 32]).public_key();
    let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key, hex).expect("write");
    let mut edge = Process::start(&[
        "edge",
        "--edge-id",
        "nice-edge",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--token-public-key-file",
        key.to_str().expect("utf-8"),
        "--sim-threads",
        "2",
        "--net-threads",
        "2",
        "--net-nice",
        "4",
    ]);
    edge.announced("edge listening: ");
    let pid = edge.child.id();
    let base = process_nice(pid);
    let threads = thread_nices(pid);
    let of = |prefix: &str| named(&threads, prefix);
    let (network, simulation) = (of("tokio-rt-worker"), of("outpost-sim-"));
    assert_eq!(network.len(), 2, "{threads:?}");
    assert_eq!(simulation.len(), 2, "{threads:?}");
    assert!(
        network.iter().all(|&n| n == (base + 4).min(19)),
        "{threads:?}"
    );
    assert!(simulation.iter().all(|&n| n == base), "{threads:?}");
}
