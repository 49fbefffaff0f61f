//! go-auth ACL checks over loopback HTTP at a fixed rate (BENCHMARKS.md, "go-auth ACL
//! checks"): starts fleetsink in-process on `FLEETSINK_BENCH_DATABASE_URL` (a database
//! it may migrate and fill with users and rules), creates the TonyPi policy for 1,000
//! robots, then sends `ACL_RATE` (default 10,000) `POST /mqtt/acl` per second for
//! `ACL_SECS` (default 10) seconds over `ACL_CONNECTIONS` (default 16) keep-alive
//! connections, as go-auth does (JSON, acc 2 and 4, allowed and denied), and reports
//! each request's latency from its send, and from its scheduled send time (so a stalled
//! server counts its queueing too; tokio's timer adds up to 1 ms there). Bounded: stops
//! after ACL_SECS.
//!
//! ```sh
//! FLEETSINK_BENCH_DATABASE_URL=postgres://…/acl_bench cargo bench --bench acl_http
//! ```

use std::time::{Duration, Instant};

use fleetsink::app::App;
use fleetsink::auth::users::{self, RuleAccess};
use fleetsink::config::Config;
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let Ok(db_url) = std::env::var("FLEETSINK_BENCH_DATABASE_URL") else {
        eprintln!("acl_http: set FLEETSINK_BENCH_DATABASE_URL to run this benchmark; skipped");
        return;
    };
    let rate = env_or("ACL_RATE", 10_000);
    let secs = env_or("ACL_SECS", 10);
    let connections = env_or("ACL_CONNECTIONS", 16);

    let mut cfg = Config::default();
    cfg.database.url = db_url.into();
    cfg.http.listen = "127.0.0.1:0".parse().expect("address");
    cfg.mqtt.embedded.listen = "127.0.0.1:0".parse().expect("address");
    let stop = CancellationToken::new();
    let app = App::start(cfg, stop.clone())
        .await
        .expect("fleetsink starts");
    let pool = app.pool().clone();
    sqlx::query("TRUNCATE mqtt_users CASCADE")
        .execute(&pool)
        .await
        .expect("truncate");
    // 1,000 robots with the TonyPi policy; hashes are not checked here, so one hash
    // is reused rather than computing 1,000.
    let hash = fleetsink::auth::hash::hash_password("pw").expect("hash");
    sqlx::query(
        "INSERT INTO mqtt_users (username, password_hash) \
         SELECT format('tonypi_%s', i), $1 FROM generate_series(0, 999) i",
    )
    .bind(&hash)
    .execute(&pool)
    .await
    .expect("users");
    for (pattern, access) in [
        ("tonypi/+/%u", RuleAccess::Write),
        ("tonypi/battery", RuleAccess::Write),
        ("tonypi/location", RuleAccess::Write),
        ("tonypi/commands/%u", RuleAccess::Read),
        ("tonypi/emergency_stop/%u", RuleAccess::Read),
        ("tonypi/commands/broadcast", RuleAccess::Read),
    ] {
        users::add_rule(
            &pool,
            &fleetsink::audit::Actor::cli(),
            None,
            pattern,
            access,
        )
        .await
        .expect("rule");
    }
    let url = format!("http://{}/mqtt/acl", app.http_addr());
    let client = reqwest::Client::new();
    // Wait until the cache has the users.
    for _ in 0..100 {
        let r = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(
                r#"{"username":"tonypi_1","clientid":"tonypi_1","topic":"tonypi/battery","acc":2}"#,
            )
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let per_conn_interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut allowed, mut denied) = (0u64, 0u64);
            let mut next = start + per_conn_interval.mul_f64(c as f64 / connections as f64);
            let mut i = c;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let robot = i % 1000;
                let (topic, acc) = match i % 4 {
                    0 => (format!("tonypi/status/tonypi_{robot}"), 2),
                    1 => (format!("tonypi/commands/tonypi_{robot}"), 4),
                    2 => ("tonypi/battery".to_string(), 2),
                    // Denied: another robot's status topic.
                    _ => (format!("tonypi/status/tonypi_{}", (robot + 1) % 1000), 2),
                };
                let body = format!(
                    r#"{{"username":"tonypi_{robot}","clientid":"tonypi_{robot}","topic":"{topic}","acc":{acc}}}"#
                );
                let sent = Instant::now();
                let resp = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", "mosquitto-2.0.18")
                    .body(body)
                    .send()
                    .await;
                match resp.map(|r| r.status().as_u16()) {
                    Ok(200) => allowed += 1,
                    Ok(403) => denied += 1,
                    other => panic!("unexpected answer {other:?}"),
                }
                latencies.push((sent.elapsed(), next.elapsed()));
                next += per_conn_interval;
                i += connections;
            }
            (latencies, allowed, denied)
        }));
    }
    let mut all = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for t in tasks {
        let (l, a, d) = t.await.expect("task");
        all.extend(l);
        allowed += a;
        denied += d;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut from_send: Vec<Duration> = all.iter().map(|l| l.0).collect();
    let mut from_schedule: Vec<Duration> = all.iter().map(|l| l.1).collect();
    from_send.sort();
    from_schedule.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "acl_http: {} checks in {elapsed:.1} s = {:.0}/s offered {rate}/s over {connections} connections; \
         {allowed} allowed, {denied} denied (expected 3:1)",
        all.len(),
        all.len() as f64 / elapsed
    );
    for (what, v) in [
        ("from send", &from_send),
        (
            "from scheduled send (includes the client timer's 1 ms granularity)",
            &from_schedule,
        ),
    ] {
        println!(
            "latency {what}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.999),
            pct(v, 1.0)
        );
    }
    stop.cancel();
    app.stopped().await;
}
