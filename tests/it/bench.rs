//! `fleetsink bench`, the load generator, run as the real binary against fleetsink: a
//! small fleet at TonyPi's cadence must come out with every message acknowledged, timed
//! and stored once; and a fleet larger than the open-files limit is refused with the
//! limit named.

use std::time::Duration;

use fleetsink::config::MqttMode;
use serde_json::Value;

use crate::helpers::*;

/// Runs `fleetsink bench ARGS` (through `sh -c` when `shell_prefix` is given) without
/// blocking the runtime the in-process daemon shares; returns success, stdout, stderr.
async fn bench(shell_prefix: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let exe = env!("CARGO_BIN_EXE_fleetsink");
    let mut cmd = match shell_prefix {
        Some(prefix) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(format!("{prefix}; exec \"$0\" bench \"$@\""))
                .arg(exe)
                .args(args);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(exe);
            c.arg("bench").args(args);
            c
        }
    };
    // The bench bounds itself; this bounds the test should it not.
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.kill_on_drop(true).output())
        .await
        .expect("fleetsink bench did not end within 120 s")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_fleet_of_20_robots_when_benched_after_commit_then_every_message_is_acked_timed_and_stored_once()
 {
    // GIVEN fleetsink with its embedded broker acknowledging after commit (the default)
    let app = spawn_app(MqttMode::Embedded, |_| {}).await;
    let broker = format!("mqtt://{}", app.mqtt);

    // WHEN 20 robots publish at TonyPi's cadence for a 3 s window
    let (ok, stdout, stderr) = bench(
        None,
        &[
            "--broker",
            &broker,
            "--robots",
            "20",
            "--warmup",
            "0",
            "--duration",
            "3",
            "--drain-timeout",
            "10",
            "--database-url",
            &app.db_url,
            "--json",
        ],
    )
    .await;
    assert!(ok, "bench failed:\n{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // THEN every robot connected, every message was acknowledged and timed…
    assert_eq!(r["shape"], "fleet");
    assert_eq!(r["connections"]["connected"], 20, "{r:#}");
    assert_eq!(r["connections"]["failed"], 0);
    let published = r["published"]["total"].as_u64().unwrap();
    // 20 robots × 7/6 msg/s × 3 s ≈ 70, plus each robot's first messages: at least 40.
    assert!(published >= 40, "only {published} messages: {r:#}");
    assert_eq!(r["acked"]["total"].as_u64(), Some(published));
    assert_eq!(r["mqtt"]["lost"], 0);
    assert_eq!(r["mqtt"]["duplicated"], 0);
    assert_eq!(
        r["latency_ms"]["samples"], r["published"]["in_window"],
        "one latency sample per message of the window"
    );
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(r["latency_ms"]["max"].as_f64() >= r["latency_ms"]["p50"].as_f64());
    // …and each one is a row in PostgreSQL, once.
    let db = &r["database"];
    assert_eq!(db["published"].as_u64(), Some(published), "{db:#}");
    assert_eq!(db["stored"].as_u64(), Some(published), "{db:#}");
    assert_eq!(db["lost"], 0);
    assert_eq!(db["duplicated"], 0);
    let rows = app
        .count(
            "SELECT count(*) FROM metrics m JOIN robots r ON r.id = m.robot \
             WHERE r.robot_id LIKE 'bench-%'",
        )
        .await;
    assert_eq!(rows as u64, published, "the report's count is the table's");
    // The generator measured its own CPU from /proc.
    assert!(r["generator"]["cores"].as_f64().is_some(), "{r:#}");
}

#[tokio::test]
async fn given_more_robots_than_the_open_files_limit_when_benched_then_it_stops_naming_the_limit() {
    // GIVEN a shell whose hard limit on open files is 200
    // WHEN the bench is asked for 1,000 robots
    let (ok, stdout, stderr) = bench(
        Some("ulimit -n 200"),
        &["--broker", "mqtt://127.0.0.1:9", "--robots", "1000"],
    )
    .await;

    // THEN it refuses before connecting anything, naming the limit and how to raise it
    assert!(!ok, "bench should fail: {stdout}");
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    assert!(stderr.contains("may open only 200"), "{stderr}");
    assert!(stderr.contains("ulimit -n 1064"), "{stderr}");
    assert!(stderr.contains("LimitNOFILE"), "{stderr}");
}
