//! `/metrics` after real traffic: counters match what happened exactly, every known
//! series exists from the start, and Prometheus' own `promtool check metrics` accepts
//! the scrape. A daemon process of its own, so no other test's traffic is counted.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

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
async fn counters_match_reality_promtool_accepts_the_scrape_and_the_dashboard_fits() {
    let db_url = fresh_database().await;
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db_url.clone()),
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
    // One status over the critical CPU threshold (90 %): one alert opened.
    c.publish_acked(
        "tonypi/status/tonypi_prom",
        r#"{"status":"online","system_info":{"cpu_percent":95.0}}"#,
    )
    .await;
    // Derived gauges are refreshed every second.
    wait_until(
        Duration::from_secs(5),
        "the derived gauges are refreshed",
        || async {
            scrape()
                .await
                .contains("fleetsink_last_message_age_seconds ")
        },
    )
    .await;
    let text = scrape().await;
    let after = samples(&text);
    assert_eq!(
        sum(&after, "fleetsink_messages_received_total"),
        (GOOD + BAD + 1) as f64
    );
    assert_eq!(after["fleetsink_alert_events_total{event=\"opened\"}"], 1.0);
    assert_eq!(
        after["fleetsink_alert_events_total{event=\"resolved\"}"],
        0.0
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
    // One metric value per good message, and the status's one.
    assert_eq!(
        after["fleetsink_rows_written_total{table=\"metrics\"}"],
        (GOOD + 1) as f64
    );
    // The robot's row is written when it registers, when its status changes and when
    // its last_seen is due (robots.last_seen_every), not once per message: the other
    // messages only check the cached row.
    let robots = after["fleetsink_rows_written_total{table=\"robots\"}"];
    assert!(
        (1.0..=4.0).contains(&robots),
        "robots rows written for {} messages of one robot: {robots}",
        GOOD + BAD + 1
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
    dashboard_queries_exist(&text, &db_url).await;
    drop(daemon);
}

/// Every metric `grafana/fleetsink.json` queries is in a real scrape, and its SQL
/// panels run against the schema (Grafana's macros expanded as Grafana would).
async fn dashboard_queries_exist(scrape: &str, db_url: &str) {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/grafana/fleetsink.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let scraped: std::collections::HashSet<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split(' ').nth(2))
        .collect();
    let pool = sqlx::PgPool::connect(db_url).await.unwrap();
    let mut exprs = 0;
    let mut sqls = 0;
    let mut panel_titles = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        panel_titles.push(panel["title"].as_str().unwrap().to_string());
        for target in panel["targets"].as_array().unwrap() {
            if let Some(expr) = target["expr"].as_str() {
                exprs += 1;
                let mut rest = expr;
                while let Some(at) = rest.find("fleetsink_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let family = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .filter(|f| scraped.contains(f))
                        .unwrap_or(&name);
                    assert!(
                        scraped.contains(family),
                        "the dashboard queries {name}, not in the scrape"
                    );
                    rest = &rest[at + name.len()..];
                }
            }
            if let Some(sql) = target["rawSql"].as_str() {
                sqls += 1;
                let sql = sql
                    .replace(
                        "$__timeFilter(last_triggered)",
                        "last_triggered BETWEEN now() - interval '1 hour' AND now()",
                    )
                    .replace(
                        "$__timeFilter(received_at)",
                        "received_at BETWEEN now() - interval '1 hour' AND now()",
                    );
                assert!(!sql.contains("$__"), "unexpanded macro in {sql}");
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("dashboard SQL fails: {e}: {sql}"));
            }
        }
    }
    assert!(
        exprs >= 15 && sqls == 3,
        "{exprs} PromQL, {sqls} SQL targets"
    );
    for wanted in [
        "Ingest rate by route",
        "Batch commit duration",
        "End-to-end lag (receive to commit)",
        "Queue depth and messages awaiting ack",
        "Ingest errors by reason",
        "Robots online",
        "Robots",
        "Recent alerts",
        "Recent ingest errors",
    ] {
        assert!(
            panel_titles.iter().any(|t| t == wanted),
            "no panel {wanted:?}"
        );
    }
}

/// The start-up line names the mode, ports, database (password masked) and config
/// source; no secret and no payload reaches the log, even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_a_start_up_line_and_no_secrets_or_payloads() {
    let db = fresh_database().await;
    // Trust authentication ignores the password; it is there to be masked.
    let db_with_password = db.replacen(
        "postgres://postgres@",
        "postgres://postgres:Db-S3cret-pw@",
        1,
    );
    assert_ne!(db, db_with_password);
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db_with_password),
        ("FLEETSINK__MQTT__EMBEDDED__LISTEN", mqtt.to_string()),
        ("FLEETSINK__HTTP__ADMIN_TOKEN", "Tok-S3cret-value".into()),
        ("RUST_LOG", "debug".into()),
    ])
    .await;
    wait_for_port(mqtt).await;
    let mut c = client(mqtt, "tonypi_logs").await;
    c.publish_acked("tonypi/sensors/tonypi_logs", "PAYLOAD-MARKER-not-json")
        .await;
    c.publish_acked(
        "tonypi/logs/tonypi_logs",
        r#"{"level":"ERROR","message":"PAYLOAD-MARKER-in-a-log"}"#,
    )
    .await;
    // A request with a wrong token.
    reqwest::Client::new()
        .get(format!("http://{}/api/v1/robots-db/stats", daemon.http))
        .header("Authorization", "Bearer Wrong-Tok-value")
        .send()
        .await
        .unwrap();
    // Everything it logs, to its last line: stopped, not killed, so nothing is cut off.
    let (_, log) = daemon.terminate_and_read_log().await;
    let start = log
        .lines()
        .find(|l| l.contains("fleetsink started"))
        .unwrap_or_else(|| panic!("no start-up line in {log}"));
    for part in [
        "mode=embedded",
        &mqtt.to_string(),
        "********",
        "defaults + environment",
    ] {
        assert!(start.contains(part), "start-up line lacks {part}: {start}");
    }
    for secret in [
        "Db-S3cret-pw",
        "Tok-S3cret-value",
        "Wrong-Tok-value",
        "PAYLOAD-MARKER",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
}
