//! A database that hangs or refuses writes: connections whose packets vanish (a proxy
//! that black-holes them while idle, mid-batch, and right after a batch's COMMIT went
//! out) and commits that fail while reads succeed (INSERT revoked). Each time /readyz
//! answers 503 with the reason within the deadlines, stays 503 while the fault lasts,
//! and fleetsink recovers by itself once it is gone, every message stored once.

use std::time::{Duration, Instant};

use fleetsink::config::{Config, MqttMode};
use rumqttc::QoS;
use serde_json::Value;

use crate::helpers::*;

/// Deadlines short enough for a test, long enough for a loaded machine's commits.
fn short_deadlines(cfg: &mut Config) {
    cfg.database.connect_timeout = Duration::from_secs(1);
    cfg.database.statement_timeout = Duration::from_secs(2);
    cfg.database.commit_timeout = Duration::from_secs(3);
    cfg.database.retry_backoff_max = Duration::from_millis(500);
}

/// A fleetsink whose database connections all go through `proxy`.
async fn spawn_behind(proxy: &BlackHoleProxy) -> TestApp {
    spawn_app(MqttMode::Embedded, |cfg| {
        short_deadlines(cfg);
        cfg.database.url = proxy.url_for(cfg.database.url.expose()).into();
    })
    .await
}

async fn readyz(t: &TestApp) -> (u16, Value) {
    let (code, body) = http_get(&reqwest::Client::new(), t.http, "/readyz").await;
    (code, serde_json::from_str(&body).unwrap())
}

/// Waits until /readyz answers 503 with `reason`; returns how long that took.
async fn wait_not_ready(t: &TestApp, reason: &str, within: Duration) -> Duration {
    let started = Instant::now();
    wait_until(within, &format!("/readyz answers 503 {reason}"), || async {
        let (code, body) = readyz(t).await;
        code == 503 && body["reason"] == reason
    })
    .await;
    started.elapsed()
}

/// Waits until /readyz answers 200 without a reason; returns how long that took.
async fn wait_ready(t: &TestApp, within: Duration) -> Duration {
    let started = Instant::now();
    wait_until(within, "/readyz answers 200", || async {
        let (code, body) = readyz(t).await;
        code == 200 && body["ready"] == true && body.get("reason").is_none()
    })
    .await;
    started.elapsed()
}

/// One reading named `name` per message, each with its own timestamp.
fn reading(name: &str, robot: u32, i: u32) -> String {
    format!(
        r#"{{"sensor_type":"{name}","value":{i},"timestamp":"2026-11-22T{:02}:{:02}:{:02}Z"}}"#,
        robot,
        i / 60,
        i % 60
    )
}

/// Publishes `n` readings from robot `robot` at QoS 1 without waiting for PUBACKs,
/// `pace` apart; then waits (up to 90 s) for all of them to be acknowledged and
/// returns how many were.
async fn publish_then_await_acks(
    addr: std::net::SocketAddr,
    name: &'static str,
    robot: u32,
    n: u32,
    pace: Duration,
) -> u32 {
    let id = format!("tonypi_{name}{robot}");
    let mut c = client(addr, &id).await;
    for i in 0..n {
        c.client
            .publish(
                format!("tonypi/sensors/{id}"),
                QoS::AtLeastOnce,
                false,
                reading(name, robot, i),
            )
            .await
            .unwrap();
        tokio::time::sleep(pace).await;
    }
    let mut acked = 0;
    while acked < n {
        match tokio::time::timeout(Duration::from_secs(90), c.acks.recv()).await {
            Ok(Some(_)) => acked += 1,
            _ => break,
        }
    }
    acked
}

fn stored(name: &str) -> String {
    format!("SELECT count(*) FROM metric_values WHERE name = '{name}'")
}

fn distinct(name: &str) -> String {
    format!("SELECT count(DISTINCT (robot_id, ts)) FROM metric_values WHERE name = '{name}'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_idle_connections_when_the_network_black_holes_them_then_503_database_unreachable_and_recovery_stores_every_message_once()
 {
    let proxy = BlackHoleProxy::start(&env("FLEETSINK_TEST_DATABASE_URL")).await;
    let t = spawn_behind(&proxy).await;
    let mut warm = t.robot("tonypi_idle_warm").await;
    warm.publish_acked("tonypi/sensors/tonypi_idle_warm", reading("idle", 9, 0))
        .await;
    wait_ready(&t, Duration::from_secs(10)).await;

    // GIVEN an idle daemon WHEN its database connections go silent
    proxy.black_hole();
    // THEN /readyz says so within the probe's deadline (connect_timeout) and a tick
    let noticed = wait_not_ready(&t, "database_unreachable", Duration::from_secs(10)).await;
    eprintln!("idle black hole: 503 database_unreachable after {noticed:?}");
    // AND messages published meanwhile wait, unacknowledged, and it stays not ready
    let addr = t.mqtt;
    let publisher = tokio::spawn(publish_then_await_acks(
        addr,
        "idle",
        1,
        20,
        Duration::from_millis(20),
    ));
    assert_holds_for(Duration::from_secs(3), "/readyz stays 503", || async {
        readyz(&t).await.0 == 503
    })
    .await;
    assert_eq!(t.count(&stored("idle")).await, 1);

    // WHEN the network heals THEN every message lands once and it is ready again,
    // well within 60 s, without a restart
    proxy.heal();
    let healed = Instant::now();
    assert_eq!(publisher.await.unwrap(), 20, "every message acknowledged");
    let ready_after = wait_ready(&t, Duration::from_secs(60)).await;
    eprintln!(
        "idle black hole: all acked {:?} after healing, ready {ready_after:?} later",
        healed.elapsed() - ready_after
    );
    assert!(healed.elapsed() < Duration::from_secs(60));
    assert_eq!(t.count(&stored("idle")).await, 21);
    assert_eq!(t.count(&distinct("idle")).await, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_batches_in_flight_when_the_network_black_holes_them_then_503_and_recovery_stores_every_message_once()
 {
    let proxy = BlackHoleProxy::start(&env("FLEETSINK_TEST_DATABASE_URL")).await;
    let t = spawn_behind(&proxy).await;
    const ROBOTS: u32 = 4;
    const PER_ROBOT: u32 = 150;
    let publishers: Vec<_> = (0..ROBOTS)
        .map(|r| {
            tokio::spawn(publish_then_await_acks(
                t.mqtt,
                "midbatch",
                r,
                PER_ROBOT,
                Duration::from_millis(10),
            ))
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        "the stream is under way",
        || async { t.count(&stored("midbatch")).await >= 40 },
    )
    .await;

    // GIVEN messages being published and batches committing WHEN the network goes silent
    proxy.black_hole();
    // THEN /readyz answers 503 within the deadlines
    let noticed = wait_not_ready(&t, "database_unreachable", Duration::from_secs(10)).await;
    eprintln!("mid-batch black hole: 503 database_unreachable after {noticed:?}");
    // AND a sink holds its batch past commit_timeout: a batch was in flight
    wait_until(
        Duration::from_secs(15),
        "a batch is held past its deadline",
        || async { readyz(&t).await.1["pipeline_stalled"] == true },
    )
    .await;
    assert_holds_for(Duration::from_secs(2), "/readyz stays 503", || async {
        readyz(&t).await.0 == 503
    })
    .await;

    // WHEN the network heals THEN every message lands exactly once, ready again < 60 s
    proxy.heal();
    let healed = Instant::now();
    for p in publishers {
        assert_eq!(p.await.unwrap(), PER_ROBOT, "every message acknowledged");
    }
    wait_ready(&t, Duration::from_secs(60)).await;
    let recovered = healed.elapsed();
    eprintln!("mid-batch black hole: all acked and ready {recovered:?} after healing");
    assert!(recovered < Duration::from_secs(60));
    let total = i64::from(ROBOTS * PER_ROBOT);
    assert_eq!(t.count(&stored("midbatch")).await, total);
    assert_eq!(t.count(&distinct("midbatch")).await, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_batch_commit_whose_answer_is_lost_when_the_network_heals_then_the_retry_stores_each_row_once()
 {
    let proxy = BlackHoleProxy::start(&env("FLEETSINK_TEST_DATABASE_URL")).await;
    let t = spawn_behind(&proxy).await;
    wait_ready(&t, Duration::from_secs(10)).await;

    // GIVEN a batch whose COMMIT reaches PostgreSQL but whose answer never comes back
    proxy.lose_reply_to_next_batch_commit();
    // Many robots at once, so batches hold many messages (one robot's messages are
    // committed one at a time: each waits for its PUBACK).
    const ROBOTS: u32 = 20;
    const PER_ROBOT: u32 = 10;
    const N: u32 = ROBOTS * PER_ROBOT;
    let publishers: Vec<_> = (0..ROBOTS)
        .map(|r| {
            tokio::spawn(publish_then_await_acks(
                t.mqtt,
                "lostcommit",
                r,
                PER_ROBOT,
                Duration::ZERO,
            ))
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        "a batch's COMMIT went out",
        || async { proxy.is_black_hole() },
    )
    .await;
    // THEN the rows are committed but fleetsink cannot know it: not ready, not acked
    wait_not_ready(&t, "database_unreachable", Duration::from_secs(10)).await;
    let committed = t.count(&stored("lostcommit")).await;
    assert!(committed > 0, "the batch committed on the server");
    assert!(t.app().health().awaiting_ack() > 0);
    // AND once commit_timeout passes, fleetsink gives that connection up
    wait_until(
        Duration::from_secs(15),
        "the attempt is abandoned",
        || async { commit_failures(&t, "timeout").await > 0 },
    )
    .await;

    // WHEN the network heals THEN the batch is retried and its rows are not doubled
    proxy.heal();
    for p in publishers {
        assert_eq!(p.await.unwrap(), PER_ROBOT, "every message acknowledged");
    }
    wait_ready(&t, Duration::from_secs(60)).await;
    assert_eq!(t.count(&stored("lostcommit")).await, i64::from(N));
    assert_eq!(t.count(&distinct("lostcommit")).await, i64::from(N));
    assert!(
        commit_failures(&t, "redelivered").await > 0,
        "the retry met the committed rows and skipped them"
    );
}

/// `fleetsink_batch_commit_failures_total{kind}` from the scrape.
async fn commit_failures(t: &TestApp, kind: &str) -> u64 {
    let (_, scrape) = t.get("/metrics").await;
    let series = format!("fleetsink_batch_commit_failures_total{{kind=\"{kind}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_insert_revoked_while_reads_succeed_when_messages_arrive_then_503_commits_failing_42501_without_flapping_until_granted()
 {
    let role = unique("fs_writer");
    let server = env("FLEETSINK_TEST_DATABASE_URL");
    let t = spawn_app(MqttMode::Embedded, |cfg| {
        short_deadlines(cfg);
        // fleetsink runs as a role of its own that owns its database (not a superuser,
        // whom no REVOKE can stop).
        let mut url = url::Url::parse(cfg.database.url.expose()).unwrap();
        let db = url.path().trim_start_matches('/').to_string();
        let setup = [
            format!("CREATE ROLE {role} LOGIN"),
            format!("ALTER DATABASE {db} OWNER TO {role}"),
        ];
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                for sql in setup {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&admin)
                        .await
                        .unwrap();
                }
                admin.close().await;
            })
        });
        url.set_username(&role).unwrap();
        cfg.database.url = url.to_string().into();
    })
    .await;
    let mut warm = t.robot("tonypi_revoke_warm").await;
    warm.publish_acked("tonypi/sensors/tonypi_revoke_warm", reading("revoke", 9, 0))
        .await;
    wait_ready(&t, Duration::from_secs(10)).await;

    // GIVEN fleetsink may no longer insert metrics (reads still work)
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "REVOKE INSERT ON metrics FROM {role}"
    )))
    .execute(&t.pool)
    .await
    .unwrap();
    // WHEN messages arrive
    let publisher = tokio::spawn(publish_then_await_acks(
        t.mqtt,
        "revoke",
        1,
        30,
        Duration::from_millis(10),
    ));
    // THEN /readyz answers 503 commits_failing: 42501 and stays so while the probe
    // succeeds: sampled again and again, it never flips
    wait_not_ready(&t, "commits_failing: 42501", Duration::from_secs(10)).await;
    assert_holds_for(
        Duration::from_secs(4),
        "/readyz stays 503 commits_failing: 42501 with the database reachable",
        || async {
            let (code, body) = readyz(&t).await;
            code == 503
                && body["reason"] == "commits_failing: 42501"
                && body["database_reachable"] == true
        },
    )
    .await;
    assert_eq!(
        t.count(&stored("revoke")).await,
        1,
        "nothing stored meanwhile"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM ingest_errors").await,
        0,
        "a missing privilege is not the messages' fault"
    );

    // WHEN the privilege is granted back THEN ready again, every message once
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT INSERT ON metrics TO {role}"
    )))
    .execute(&t.pool)
    .await
    .unwrap();
    assert_eq!(publisher.await.unwrap(), 30, "every message acknowledged");
    wait_ready(&t, Duration::from_secs(30)).await;
    assert_eq!(t.count(&stored("revoke")).await, 31);
    assert_eq!(t.count(&distinct("revoke")).await, 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_openapi_document_then_readyz_answers_are_described_with_their_reason() {
    let t = spawn_app(MqttMode::Embedded, |_| {}).await;
    // GIVEN the document WHEN /readyz is looked up THEN both answers carry Readiness
    let (code, doc) = t
        .send(reqwest::Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(code, 200);
    let responses = &doc["paths"]["/readyz"]["get"]["responses"];
    for status in ["200", "503"] {
        assert_eq!(
            responses[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Readiness",
            "{status}: {responses}"
        );
    }
    let props = &doc["components"]["schemas"]["Readiness"]["properties"];
    for field in [
        "ready",
        "reason",
        "database_reachable",
        "commits_failing",
        "pipeline_stalled",
    ] {
        assert!(props[field].is_object(), "Readiness.{field}: {props}");
    }
}
