//! `outpost dev` as a user runs it: an edge and bots, a JSON summary at exit.

use std::process::Command;

/// `outpost dev` with three bots for 7 s of 5 s matches, every port picked free, JSON
/// out, with `extra` arguments.
fn dev_on_free_ports(extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "dev",
            "--bots",
            "3",
            "--duration",
            "7s",
            "--match-seconds",
            "5",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--cloud-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .output()
        .expect("outpost runs")
}

#[test]
fn dev_runs_a_match_of_bots_and_reports_json() {
    let output = dev_on_free_ports(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "outpost dev failed:\n{stderr}");
    assert!(
        stderr.contains("certificate sha256"),
        "prints where it listens:\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    // Every match is all three bots; matches run back to back.
    let matches = summary["matches_placed"].as_u64().expect("count");
    assert_eq!(
        summary["players_joined"].as_u64(),
        Some(3 * matches),
        "{summary}"
    );
    assert_eq!(summary["bots_connected_throughout"], 3);
    assert!(
        summary["ticks"].as_u64().expect("ticks") >= 150,
        "{summary}"
    );
    assert!(
        summary["min_snapshots_received_per_bot"]
            .as_u64()
            .expect("count")
            > 0,
        "{summary}"
    );
    assert!(
        summary["tick_ms_p99"].as_f64().expect("p99")
            >= summary["tick_ms_p50"].as_f64().expect("p50")
    );
    assert_eq!(summary["datagrams_rejected"], 0);
    // The whole flow: login, ticket, match, result, leaderboard, replay.
    assert!(
        summary["matches_placed"].as_u64().expect("count") >= 1,
        "{summary}"
    );
    assert!(
        summary["results_applied"].as_u64().expect("count") >= 1,
        "{summary}"
    );
    assert_eq!(summary["leaderboard_entries"], 3, "{summary}");
    assert!(
        summary["replays_stored"].as_u64().expect("count") >= 1,
        "{summary}"
    );
    assert_eq!(summary["outbox_pending"], 0, "{summary}");
    // The bots' cloud calls went through the edge's gateway.
    assert!(
        summary["gateway_requests"].as_u64().expect("count") >= 3 * 3,
        "{summary}"
    );
    // The arena's own stats, summed over the results: the bots fired, and every hit
    // landed is a hit taken.
    assert!(summary["stats"]["shots"].as_u64() > Some(0), "{summary}");
    assert!(summary["stats"]["hits_taken"].is_u64(), "{summary}");
}

#[test]
fn dev_refuses_bad_settings_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "dev",
            "--tick-hz",
            "5",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .expect("outpost runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tick_hz"), "names the field:\n{stderr}");
}

/// `outpost dev --mode ar`: devices join a room over real QUIC, play it, and the summary
/// names the AR figures (the honest bots' poses are never clamped).
#[test]
fn dev_plays_an_ar_room_and_reports_its_figures() {
    let output = dev_on_free_ports(&["--mode", "ar"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "outpost dev failed:\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    assert_eq!(summary["peers"], 3, "{summary}");
    assert_eq!(summary["pose_violations"], 0, "{summary}");
    assert!(summary["objects_thrown"].is_u64(), "{summary}");
    assert!(summary["ownership_conflicts"].is_u64(), "{summary}");
    assert!(
        summary["kbps_down_per_peer"].as_f64() > Some(0.0),
        "{summary}"
    );
    assert!(summary["results_applied"].as_u64() >= Some(1), "{summary}");
    // Each bot uploads its scans (a floor, a table, a seat mesh) into each room it joins
    // (once it sees it), and none is refused.
    let uploaded = summary["surfaces_uploaded"].as_u64().unwrap_or(0);
    let joined = summary["players_joined"].as_u64().unwrap_or(0);
    assert!(uploaded >= 9 && uploaded <= 3 * joined, "{summary}");
    assert_eq!(summary["uploads_refused"], 0, "{summary}");
    assert!(
        summary["objects_landed_on_uploaded_geometry"].is_u64(),
        "{summary}"
    );
    // Poses are timed from one bot to another (the figures are measured in benchmarks).
    assert!(summary["pose_samples"].as_u64() > Some(0), "{summary}");
    assert!(
        summary["pose_latency_ms_p99"].as_f64() >= summary["pose_latency_ms_p50"].as_f64(),
        "{summary}"
    );
}
