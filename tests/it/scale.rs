//! Scale-out: two fleetsink instances on one Mosquitto split its traffic through a
//! shared subscription; every message lands once, also when one instance is killed
//! with SIGKILL mid-stream and restarted.

use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::*;

/// The sum of `fleetsink_messages_received_total` over its routes, from `/metrics`.
async fn received(http: &reqwest::Client, daemon: &Daemon) -> u64 {
    let (_, text) = http_get(http, daemon.http, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("fleetsink_messages_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_traffic_and_survive_a_kill() {
    let broker = Mosquitto::start().await;
    let db = fresh_database().await;
    let instance = |client_id: &str| {
        vec![
            ("FLEETSINK__DATABASE__URL", db.clone()),
            ("FLEETSINK__MQTT__MODE", "external".to_string()),
            ("FLEETSINK__MQTT__EXTERNAL__URL", broker.url()),
            (
                "FLEETSINK__MQTT__EXTERNAL__CLIENT_ID",
                client_id.to_string(),
            ),
            (
                "FLEETSINK__MQTT__EXTERNAL__SHARE_GROUP",
                "fleet".to_string(),
            ),
            (
                "FLEETSINK__MQTT__EXTERNAL__BROKER_INFLIGHT",
                "1000".to_string(),
            ),
        ]
    };
    let (id_a, id_b) = (unique("fleetsink-a"), unique("fleetsink-b"));
    let env_a = instance(&id_a);
    let env_b = instance(&id_b);
    let http = reqwest::Client::new();
    let mut a = Daemon::start(&env_a).await;
    let b = Daemon::start(&env_b).await;
    for (d, id) in [(&a, &id_a), (&b, &id_b)] {
        d.ready().await;
        broker.subscribed(id, 0).await;
    }

    // GIVEN robots publishing through Mosquitto
    let publish = |from: usize, to: usize| {
        let addr = broker.addr;
        tokio::spawn(async move {
            let mut c = client(addr, &format!("tonypi_share_{from}")).await;
            for i in from..to {
                c.publish_acked(
                    &format!("tonypi/sensors/tonypi_s{}", i % 10),
                    format!(
                        r#"{{"sensor_type":"share","value":{i},"timestamp":"2026-11-22T11:{:02}:{:02}.{:03}Z"}}"#,
                        (i / 1000) % 60,
                        (i / 10) % 60,
                        i % 1000
                    ),
                )
                .await;
            }
        })
    };
    publish(0, 1000).await.unwrap();
    let pool = PgPool::connect(&db).await.unwrap();
    let q = "SELECT count(*) FROM metric_values WHERE name = 'share'";
    wait_until(Duration::from_secs(30), "the first 1000 land", || async {
        count(&pool, q).await >= 1000
    })
    .await;
    // THEN both instances took part
    let (ra, rb) = (received(&http, &a).await, received(&http, &b).await);
    assert!(ra > 0 && rb > 0, "one instance got nothing: a={ra} b={rb}");
    assert_eq!(ra + rb, 1000, "each message went to exactly one instance");

    // WHEN one instance is killed mid-stream and restarted with the same client id
    let more = publish(1000, 3000);
    wait_until(
        Duration::from_secs(30),
        "a takes part in the stream",
        || async { received(&http, &a).await > ra },
    )
    .await;
    a.kill();
    let at_kill = count(&pool, q).await;
    wait_until(
        Duration::from_secs(30),
        "the stream goes on while a is down",
        || async { more.is_finished() || count(&pool, q).await > at_kill },
    )
    .await;
    let _a = Daemon::start(&env_a).await;
    more.await.unwrap();
    // THEN every message acknowledged by Mosquitto lands, once
    wait_until(Duration::from_secs(60), "all 3000 land", || async {
        count(&pool, q).await >= 3000
    })
    .await;
    assert_holds_for(
        Duration::from_millis(500),
        "no message lands twice",
        || async { count(&pool, q).await == 3000 },
    )
    .await;
    let distinct = count(
        &pool,
        "SELECT count(DISTINCT value) FROM metric_values WHERE name = 'share'",
    )
    .await;
    assert_eq!(distinct, 3000);
    drop(b);
}
