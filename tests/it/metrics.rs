//! `/metrics` after real traffic: counters match what happened exactly, every known
//! series exists from the start, and Prometheus' own `promtool check metrics` accepts
//! the scrape. A daemon process of its own, so no other test's traffic is counted.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

/// `name{labels}` → value for every sample of the scrape.
fn samples(scrape: &str) -> HashMap<String, f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sum(s: &HashMap<String, f64>, name: &str) -> f64 {
    s.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

/// The scrape through `promtool check metrics`; `Err` is promtool's complaint.
pub fn promtool_check(scrape: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}); Debian/Ubuntu: apt-get install prometheus (scripts/test.sh does)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_reality_and_promtool_accepts_the_scrape() {
    let db = fresh_database().await;
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db),
        ("FLEETSINK__MQTT__EMBEDDED__LISTEN", mqtt.to_string()),
    ])
    .await;
    wait_for_port(mqtt).await;
    let http = daemon.http;
    let web = reqwest::Client::new();
    let scrape = || {
        let web = web.clone();
        async move {
            web.get(format!("http://{http}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };

    // Before any traffic, every known series is there, at zero.
    let before = samples(&scrape().await);
    for series in [
        "fleetsink_messages_received_total{route=\"tonypi/sensors/+\"}",
        "fleetsink_ingest_errors_total{reason=\"not_json\"}",
        "fleetsink_ingest_errors_total{reason=\"identity_mismatch\"}",
        "fleetsink_rows_written_total{table=\"metrics\"}",
        "fleetsink_batch_commit_failures_total{kind=\"transient\"}",
        "fleetsink_auth_checks_total{kind=\"acl\",result=\"deny\"}",
        "fleetsink_commands_total{result=\"sent\"}",
        "fleetsink_partition_maintenance_failures_total",
    ] {
        assert_eq!(before.get(series), Some(&0.0), "{series}");
    }

    const GOOD: usize = 20;
    const BAD: usize = 7;
    let mut c = client(mqtt, "tonypi_prom").await;
    for i in 0..GOOD {
        c.publish_acked(
            "tonypi/sensors/tonypi_prom",
            format!(r#"{{"sensor_type":"cpu_temperature","value":{i},"unit":"C"}}"#),
        )
        .await;
    }
    for _ in 0..BAD {
        c.publish_acked("tonypi/sensors/tonypi_prom", "not json")
            .await;
    }
    let text = scrape().await;
    let after = samples(&text);
    assert_eq!(
        sum(&after, "fleetsink_messages_received_total"),
        (GOOD + BAD) as f64
    );
    assert_eq!(
        after["fleetsink_messages_received_total{route=\"tonypi/sensors/+\"}"],
        (GOOD + BAD) as f64
    );
    assert_eq!(sum(&after, "fleetsink_ingest_errors_total"), BAD as f64);
    assert_eq!(
        after["fleetsink_ingest_errors_total{reason=\"not_json\"}"],
        BAD as f64
    );
    assert_eq!(
        after["fleetsink_rows_written_total{table=\"ingest_errors\"}"],
        BAD as f64
    );
    // One metric value per good message.
    assert_eq!(
        after["fleetsink_rows_written_total{table=\"metrics\"}"],
        GOOD as f64
    );
    assert!(after["fleetsink_batch_size_messages_count"] >= 1.0);
    // Histograms carry their explicit buckets.
    assert!(text.contains("fleetsink_batch_commit_duration_seconds_bucket{le=\"0.005\"}"));
    assert!(text.contains("fleetsink_end_to_end_lag_seconds_bucket{le=\"0.1\"}"));
    // Every metric has a description, and none is labelled by robot.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} lacks HELP"
        );
    }
    assert!(!text.contains("robot_id="));
    promtool_check(&text).unwrap();
    drop(daemon);
}
