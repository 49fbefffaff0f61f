//! TonyPi's alerts routes (`backend/routers/alerts.py`) over data the pipeline wrote
//! from MQTT: the alerts fleetsink raises with TonyPi's fields, manual alerts beside
//! them, acknowledge / resolve / acknowledge-all / delete, the counts; thresholds edited
//! through the API (and robots-db) driving the evaluation from the next reading, without
//! a restart; the migration of the earlier alerts and robot thresholds.

use std::borrow::Cow;

use chrono::{DateTime, Timelike, Utc};
use fleetsink::config::MqttMode;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

/// A reading time `s` seconds after the test began (readings must be newer each time).
fn at(start: DateTime<Utc>, s: i64) -> String {
    (start + chrono::Duration::seconds(s)).to_rfc3339()
}

fn status(robot: &str, info: &str, ts: &str) -> (String, String) {
    (
        format!("tonypi/status/{robot}"),
        format!(r#"{{"status":"online","system_info":{{{info}}},"timestamp":"{ts}"}}"#),
    )
}

async fn publish(c: &mut Client, (topic, payload): (String, String)) {
    c.publish_acked(&topic, payload).await;
}

async fn get(t: &TestApp, path: &str) -> (u16, Value) {
    t.send(Method::GET, path, None).await
}

async fn post(t: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    t.send(Method::POST, path, body).await
}

/// Waits until tonypi_hot's raised CPU alert has `count` in its row (a re-trigger
/// reaches the row within alerts.flush_interval).
async fn wait_for_cpu_count(t: &TestApp, count: i32) {
    wait_for_eq(std::time::Duration::from_secs(5), Some(count), || {
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT count FROM alerts WHERE robot_id = 'tonypi_hot' AND alert_type = 'cpu' \
                 AND source = 'fleetsink'",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    })
    .await;
}

fn detail(v: &Value) -> &str {
    v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_raised_and_manual_answer_as_tonypi() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let start = Utc::now().with_nanosecond(0).unwrap();
    let mut c = t.robot("tonypi_hot").await;
    // GIVEN a robot whose CPU goes past critical twice (one alert, count 2) and whose
    // battery falls past its warning threshold
    publish(
        &mut c,
        status("tonypi_hot", r#""cpu_percent":95.04"#, &at(start, 0)),
    )
    .await;
    publish(
        &mut c,
        status("tonypi_hot", r#""cpu_percent":96"#, &at(start, 1)),
    )
    .await;
    c.publish_acked(
        "tonypi/battery",
        format!(
            r#"{{"robot_id":"tonypi_hot","percentage":25,"voltage":11.1,"charging":false,"timestamp":"{}"}}"#,
            at(start, 2)
        ),
    )
    .await;

    // (the second CPU reading only re-triggers the open alert: its count and value
    // reach the row within alerts.flush_interval)
    wait_for_cpu_count(&t, 2).await;

    // THEN the list has them with TonyPi's fields, newest first
    let (code, list) = get(&t, "/api/v1/alerts").await;
    assert_eq!(code, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let battery = &list[0];
    let cpu = &list[1];
    let keys: Vec<&str> = cpu
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "id",
        "robot_id",
        "alert_type",
        "severity",
        "title",
        "message",
        "source",
        "value",
        "threshold",
        "acknowledged",
        "acknowledged_by",
        "acknowledged_at",
        "resolved",
        "resolved_at",
        "details",
        "created_at",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    assert_eq!(cpu["robot_id"], "tonypi_hot");
    assert_eq!(cpu["alert_type"], "cpu");
    assert_eq!(cpu["severity"], "critical");
    assert_eq!(cpu["title"], "High CPU Usage on tonypi_hot");
    assert_eq!(cpu["message"], "CPU usage is at 96.0% (threshold: 90%)");
    assert_eq!(cpu["source"], "fleetsink");
    assert_eq!(cpu["value"], 96.0);
    assert_eq!(cpu["threshold"], 90.0);
    assert_eq!(cpu["acknowledged"], false);
    assert_eq!(cpu["acknowledged_by"], Value::Null);
    assert_eq!(cpu["acknowledged_at"], Value::Null);
    assert_eq!(cpu["resolved"], false);
    assert_eq!(cpu["resolved_at"], Value::Null);
    assert_eq!(cpu["details"]["count"], 2);
    let first: DateTime<Utc> = cpu["details"]["first_triggered"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first.to_rfc3339(), at(start, 0));
    let created: DateTime<Utc> = cpu["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created >= start - chrono::Duration::seconds(5));
    assert_eq!(battery["alert_type"], "battery");
    assert_eq!(battery["severity"], "warning");
    assert_eq!(battery["title"], "Low Battery on tonypi_hot");
    assert_eq!(
        battery["message"],
        "Battery level is at 25.0% (threshold: 30%)"
    );
    assert_eq!(battery["threshold"], 30.0);

    // WHEN operators add manual alerts of the same robot and kind, twice
    let manual = json!({
        "robot_id": "tonypi_hot", "alert_type": "cpu", "severity": "info",
        "title": "CPU fan noisy", "message": "Heard at bay 3", "source": "operator",
        "value": 1.5, "threshold": 1.0, "details": {"bay": 3, "note": "ölig"}
    });
    let (code, m1) = post(&t, "/api/v1/alerts", Some(manual.clone())).await;
    assert_eq!(code, 200, "{m1}");
    for (k, v) in manual.as_object().unwrap() {
        assert_eq!(&m1[k], v, "{k}");
    }
    assert_eq!(m1["acknowledged"], false);
    assert_eq!(m1["resolved"], false);
    let (code, m2) = post(
        &t,
        "/api/v1/alerts",
        Some(
            json!({"alert_type": "cpu", "severity": "warning", "title": "Fleet CPU",
                    "message": "all robots busy"}),
        ),
    )
    .await;
    assert_eq!(code, 200, "{m2}");
    assert_eq!(m2["robot_id"], Value::Null);
    assert_eq!(m2["source"], Value::Null);
    assert_eq!(m2["value"], Value::Null);
    assert_eq!(m2["details"], Value::Null);
    let (_, m3) = post(&t, "/api/v1/alerts", Some(manual.clone())).await;
    // THEN they coexist with the raised one; the raised one stays one alert
    publish(
        &mut c,
        status("tonypi_hot", r#""cpu_percent":97"#, &at(start, 3)),
    )
    .await;
    wait_for_cpu_count(&t, 3).await;
    let (_, open_cpu) = get(&t, "/api/v1/alerts?alert_type=cpu&resolved=false").await;
    let ids: Vec<i64> = open_cpu
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    let cpu_id = cpu["id"].as_i64().unwrap();
    assert_eq!(
        ids,
        vec![
            m3["id"].as_i64().unwrap(),
            m2["id"].as_i64().unwrap(),
            m1["id"].as_i64().unwrap(),
            cpu_id
        ],
        "newest first"
    );
    assert_eq!(open_cpu[3]["details"]["count"], 3);

    // Filters.
    let ids_of = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect()
    };
    let (_, v) = get(&t, "/api/v1/alerts?severity=info").await;
    assert_eq!(ids_of(&v).len(), 2);
    let (_, v) = get(&t, "/api/v1/alerts?robot_id=tonypi_hot&severity=critical").await;
    assert_eq!(ids_of(&v), vec![cpu_id]);
    let (_, v) = get(&t, "/api/v1/alerts?limit=2&time_range=1h").await;
    assert_eq!(ids_of(&v).len(), 2);
    let (_, v) = get(&t, "/api/v1/alerts?robot_id=tonypi_other").await;
    assert_eq!(v, json!([]));

    // Stats: one aggregate.
    let (code, s) = get(&t, "/api/v1/alerts/stats?time_range=24h").await;
    assert_eq!(code, 200);
    assert_eq!(
        s,
        json!({"total": 5, "critical": 1, "warning": 2, "info": 2,
               "unacknowledged": 5, "unresolved": 5})
    );
    let (_, s) = get(&t, "/api/v1/alerts/stats?robot_id=tonypi_hot").await;
    assert_eq!(s["total"], 4);

    // Acknowledge one, resolve one.
    let (code, a) = post(
        &t,
        &format!("/api/v1/alerts/{cpu_id}/acknowledge?acknowledged_by=ops_anna"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        a,
        json!({"message": format!("Alert {cpu_id} acknowledged"), "acknowledged_by": "ops_anna"})
    );
    let (code, r) = post(&t, &format!("/api/v1/alerts/{cpu_id}/resolve"), None).await;
    assert_eq!(code, 200);
    assert_eq!(r, json!({"message": format!("Alert {cpu_id} resolved")}));
    let (_, v) = get(
        &t,
        "/api/v1/alerts?robot_id=tonypi_hot&alert_type=cpu&acknowledged=true",
    )
    .await;
    let acked = &v[0];
    assert_eq!(acked["id"], cpu_id);
    assert_eq!(acked["acknowledged_by"], "ops_anna");
    assert!(
        acked["acknowledged_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .is_ok()
    );
    assert_eq!(acked["resolved"], true);
    assert!(
        acked["resolved_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .is_ok()
    );
    let (_, s) = get(&t, "/api/v1/alerts/stats").await;
    assert_eq!(
        (&s["unacknowledged"], &s["unresolved"]),
        (&json!(4), &json!(4))
    );

    // Acknowledge-all counts what it acknowledged, per robot or all.
    let (code, v) = post(
        &t,
        "/api/v1/alerts/acknowledge-all?robot_id=tonypi_hot&acknowledged_by=ops_bo",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v, json!({"message": "Acknowledged 3 alerts"}));
    let (_, v) = post(&t, "/api/v1/alerts/acknowledge-all", None).await;
    assert_eq!(v, json!({"message": "Acknowledged 1 alerts"}));
    let (_, v) = get(
        &t,
        "/api/v1/alerts?alert_type=cpu&robot_id=tonypi_hot&severity=info",
    )
    .await;
    assert_eq!(v[0]["acknowledged_by"], "ops_bo");
    let (_, v) = post(&t, "/api/v1/alerts/acknowledge-all", None).await;
    assert_eq!(v, json!({"message": "Acknowledged 0 alerts"}));

    // Delete, then 404s.
    let m1_id = m1["id"].as_i64().unwrap();
    let (code, v) = t
        .send(Method::DELETE, &format!("/api/v1/alerts/{m1_id}"), None)
        .await;
    assert_eq!(
        (code, v),
        (200, json!({"message": format!("Alert {m1_id} deleted")}))
    );
    for (method, path) in [
        (Method::DELETE, format!("/api/v1/alerts/{m1_id}")),
        (Method::POST, format!("/api/v1/alerts/{m1_id}/acknowledge")),
        (Method::POST, format!("/api/v1/alerts/{m1_id}/resolve")),
    ] {
        let (code, v) = t.send(method, &path, None).await;
        assert_eq!(code, 404, "{path}");
        assert_eq!(v, json!({"detail": format!("Alert {m1_id} not found")}));
    }

    // Bad input: 400 {detail}, never a 500.
    for path in [
        "/api/v1/alerts?severity=urgent",
        "/api/v1/alerts?time_range=2h",
        "/api/v1/alerts?limit=0",
        "/api/v1/alerts?limit=501",
        "/api/v1/alerts?robot_id=bad%20id",
        "/api/v1/alerts?acknowledged=maybe",
        "/api/v1/alerts/stats?time_range=1y",
    ] {
        let (code, v) = get(&t, path).await;
        assert_eq!(code, 400, "{path}: {v}");
        assert!(!detail(&v).is_empty());
    }
    let base = json!({"alert_type": "x", "severity": "info", "title": "t", "message": "m"});
    for (field, value) in [
        ("severity", json!("urgent")),
        ("title", json!("nul\u{0}here")),
        ("title", json!("")),
        ("message", json!("x".repeat(4001))),
        ("source", json!("fleetsink")),
        ("robot_id", json!("no/slashes")),
        ("details", json!({"k": "nul\u{0}"})),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (code, v) = post(&t, "/api/v1/alerts", Some(body)).await;
        assert_eq!(code, 400, "{field}: {v}");
        assert!(!detail(&v).is_empty());
    }
    let (code, v) = post(&t, "/api/v1/alerts/abc/acknowledge", None).await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = post(
        &t,
        &format!("/api/v1/alerts/{cpu_id}/acknowledge?acknowledged_by="),
        None,
    )
    .await;
    assert_eq!(code, 400);
    t.stop().await;
}

async fn thresholds_of(t: &TestApp, query: &str) -> Vec<(Value, String, f64, f64, bool)> {
    let (code, v) = get(t, &format!("/api/v1/alerts/thresholds{query}")).await;
    assert_eq!(code, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["robot_id"].clone(),
                r["metric_type"].as_str().unwrap().to_string(),
                r["warning_threshold"].as_f64().unwrap(),
                r["critical_threshold"].as_f64().unwrap(),
                r["enabled"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn open_alerts(pool: &PgPool, robot: &str) -> Vec<(String, String, f64)> {
    sqlx::query_as(
        "SELECT alert_type, severity, threshold FROM alerts \
         WHERE robot_id = $1 AND NOT resolved ORDER BY alert_type",
    )
    .bind(robot)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_edited_through_the_api_apply_to_the_next_reading() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let start = Utc::now().with_nanosecond(0).unwrap();
    let mut c = t.robot("tonypi_tt").await;
    let robot = "tonypi_tt";

    // The built-in defaults, TonyPi's shape.
    let (code, d) = get(&t, "/api/v1/alerts/thresholds/defaults").await;
    assert_eq!(code, 200);
    assert_eq!(
        d,
        json!({"cpu": {"warning": 70.0, "critical": 90.0},
               "memory": {"warning": 75.0, "critical": 90.0},
               "temperature": {"warning": 60.0, "critical": 75.0},
               "battery": {"warning": 30.0, "critical": 15.0},
               "servo_temp": {"warning": 50.0, "critical": 70.0},
               "servo_voltage": {"warning": 5.5, "critical": 5.0}})
    );
    assert!(thresholds_of(&t, "").await.is_empty());

    // GIVEN CPU at 50 %: below the built-in 70 %, no alert
    publish(&mut c, status(robot, r#""cpu_percent":50"#, &at(start, 0))).await;
    assert!(open_alerts(&t.pool, robot).await.is_empty());

    // WHEN an admin sets the robot's CPU warning to 40 %
    let (code, row) = post(
        &t,
        "/api/v1/alerts/thresholds",
        Some(json!({"robot_id": robot, "metric_type": "cpu",
                    "warning_threshold": 40, "critical_threshold": 95})),
    )
    .await;
    assert_eq!(code, 200, "{row}");
    assert_eq!(row["robot_id"], robot);
    assert_eq!(row["metric_type"], "cpu");
    assert_eq!(row["warning_threshold"], 40.0);
    assert_eq!(row["critical_threshold"], 95.0);
    assert_eq!(row["enabled"], true);
    assert!(
        row["created_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .is_ok()
    );
    let cpu_row = row["id"].as_i64().unwrap();

    // THEN the next reading over it, over MQTT, opens an alert (no restart)
    publish(&mut c, status(robot, r#""cpu_percent":50"#, &at(start, 1))).await;
    assert_eq!(
        open_alerts(&t.pool, robot).await,
        vec![("cpu".to_string(), "warning".to_string(), 40.0)]
    );

    // Posting the same robot and metric updates the row in place.
    let (_, again) = post(
        &t,
        "/api/v1/alerts/thresholds",
        Some(json!({"robot_id": robot, "metric_type": "cpu",
                    "warning_threshold": 45, "critical_threshold": 95})),
    )
    .await;
    assert_eq!(again["id"], cpu_row);
    assert_eq!(again["warning_threshold"], 45.0);

    // init-defaults creates the fleet-wide rows once.
    let (code, v) = post(&t, "/api/v1/alerts/thresholds/init-defaults", None).await;
    assert_eq!(
        (code, v),
        (200, json!({"message": "Initialized 6 default thresholds"}))
    );
    let (_, v) = post(&t, "/api/v1/alerts/thresholds/init-defaults", None).await;
    assert_eq!(v, json!({"message": "Initialized 0 default thresholds"}));
    let all = thresholds_of(&t, "").await;
    assert_eq!(all.len(), 7);
    assert_eq!(
        all.iter().filter(|r| r.0 == Value::Null).count(),
        6,
        "six fleet-wide rows"
    );

    // A disabled fleet-wide row: no memory alerts for robots without their own row.
    let memory_row = {
        let (_, v) = get(&t, "/api/v1/alerts/thresholds").await;
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric_type"] == "memory" && r["robot_id"].is_null())
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (code, v) = t
        .send(
            Method::PUT,
            &format!("/api/v1/alerts/thresholds/{memory_row}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["enabled"], false);
    assert_eq!(v["warning_threshold"], 75.0, "fields not given stay");
    publish(
        &mut c,
        status(robot, r#""memory_percent":99"#, &at(start, 2)),
    )
    .await;
    assert_eq!(
        open_alerts(&t.pool, robot).await.len(),
        1,
        "no memory alert"
    );

    // robots-db's threshold fields are the same store: a temperature warning set there
    // is the robot's row, and drives the evaluation.
    let (code, v) = post(
        &t,
        "/api/v1/robots-db/robots",
        Some(json!({"robot_id": "tonypi_other", "battery_threshold_low": 35})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["battery_threshold_low"], 35.0);
    assert_eq!(
        v["battery_threshold_critical"], 15.0,
        "from the fleet-wide row"
    );
    let (code, v) = t
        .send(
            Method::PUT,
            &format!("/api/v1/robots-db/robots/{robot}"),
            Some(json!({"temp_threshold_warning": 45})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["temp_threshold_warning"], 45.0);
    assert_eq!(v["temp_threshold_critical"], 75.0);
    assert_eq!(v["battery_threshold_low"], 30.0);
    let mine = thresholds_of(&t, &format!("?robot_id={robot}")).await;
    assert!(mine.contains(&(json!(robot), "temperature".into(), 45.0, 75.0, true)));
    assert_eq!(
        mine.len(),
        8,
        "the robot's two rows and the six fleet-wide ones"
    );
    assert!(!mine.iter().any(|r| r.0 == json!("tonypi_other")));
    publish(&mut c, status(robot, r#""temperature":50"#, &at(start, 3))).await;
    assert_eq!(
        open_alerts(&t.pool, robot).await,
        vec![
            ("cpu".to_string(), "warning".to_string(), 40.0),
            ("temperature".to_string(), "warning".to_string(), 45.0)
        ]
    );
    // An alert set through the alerts API reads back through robots-db.
    post(
        &t,
        "/api/v1/alerts/thresholds",
        Some(json!({"robot_id": robot, "metric_type": "battery",
                    "warning_threshold": 20, "critical_threshold": 10})),
    )
    .await;
    let (_, v) = get(&t, &format!("/api/v1/robots-db/robots/{robot}")).await;
    assert_eq!(v["battery_threshold_low"], 20.0);
    assert_eq!(v["battery_threshold_critical"], 10.0);

    // A disabled robot row: no alerts for that metric on that robot.
    let temp_row = {
        let (_, v) = get(&t, &format!("/api/v1/alerts/thresholds?robot_id={robot}")).await;
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric_type"] == "temperature" && r["robot_id"] == robot)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    t.send(
        Method::PUT,
        &format!("/api/v1/alerts/thresholds/{temp_row}"),
        Some(json!({"enabled": false})),
    )
    .await;
    // The operator resolves the robot's open alerts.
    let open: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM alerts WHERE robot_id = $1 AND NOT resolved")
            .bind(robot)
            .fetch_all(&t.pool)
            .await
            .unwrap();
    for id in open {
        let (code, body) = post(&t, &format!("/api/v1/alerts/{id}/resolve"), None).await;
        assert_eq!(code, 200, "{body}");
    }
    publish(
        &mut c,
        status(
            robot,
            r#""temperature":80,"cpu_percent":50"#,
            &at(start, 400),
        ),
    )
    .await;
    assert_eq!(
        open_alerts(&t.pool, robot).await,
        vec![("cpu".to_string(), "warning".to_string(), 45.0)]
    );

    // Deleting the robot's row falls back to the fleet-wide row.
    let (code, v) = t
        .send(
            Method::DELETE,
            &format!("/api/v1/alerts/thresholds/{cpu_row}"),
            None,
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": format!("Threshold {cpu_row} deleted")})
        )
    );
    publish(
        &mut c,
        status(robot, r#""cpu_percent":60"#, &at(start, 401)),
    )
    .await;
    let (resolved,): (bool,) = sqlx::query_as(
        "SELECT resolved FROM alerts WHERE robot_id = $1 AND alert_type = 'cpu' ORDER BY id DESC LIMIT 1",
    )
    .bind(robot)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert!(
        resolved,
        "60 % is below the fleet-wide 70 % less the hysteresis band"
    );

    // 404s and bad input.
    let (code, v) = t
        .send(
            Method::DELETE,
            &format!("/api/v1/alerts/thresholds/{cpu_row}"),
            None,
        )
        .await;
    assert_eq!(
        (code, v),
        (
            404,
            json!({"detail": format!("Threshold {cpu_row} not found")})
        )
    );
    let (code, v) = t
        .send(
            Method::PUT,
            "/api/v1/alerts/thresholds/99999",
            Some(json!({"warning_threshold": 65})),
        )
        .await;
    assert_eq!(
        (code, v),
        (404, json!({"detail": "Threshold 99999 not found"}))
    );
    for body in [
        json!({"metric_type": "gpu", "warning_threshold": 1, "critical_threshold": 2}),
        json!({"metric_type": "cpu", "warning_threshold": 90, "critical_threshold": 70}),
        json!({"metric_type": "battery", "warning_threshold": 10, "critical_threshold": 20}),
        json!({"robot_id": "bad id", "metric_type": "cpu", "warning_threshold": 1, "critical_threshold": 2}),
    ] {
        let (code, v) = post(&t, "/api/v1/alerts/thresholds", Some(body.clone())).await;
        assert_eq!(code, 400, "{body}: {v}");
        assert!(!detail(&v).is_empty());
    }
    let (code, v) = t
        .send(
            Method::PUT,
            &format!("/api/v1/alerts/thresholds/{memory_row}"),
            Some(json!({"warning_threshold": 95})),
        )
        .await;
    assert_eq!(code, 400, "warning past critical: {v}");
    let (code, v) = t
        .send(
            Method::PUT,
            &format!("/api/v1/robots-db/robots/{robot}"),
            Some(json!({"battery_threshold_critical": 50})),
        )
        .await;
    assert_eq!(code, 400, "robots-db checks the same order: {v}");
    let (code, _) = get(&t, "/api/v1/alerts/thresholds?robot_id=a%20b").await;
    assert_eq!(code, 400);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_gives_earlier_alerts_and_thresholds_tonypis_shape() {
    // GIVEN a database before this migration, with a threshold alert and robots with
    // their own thresholds in columns
    let db = fresh_database().await;
    let pool = PgPool::connect(&db).await.unwrap();
    let all = &fleetsink::db::MIGRATOR;
    let before = sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            all.migrations
                .iter()
                .filter(|m| m.version < 20261207000002)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO robots (robot_id, battery_threshold_low, cpu_threshold_warning, \
             cpu_threshold_critical) VALUES ('r1', 25, 60, 80), ('r2', NULL, NULL, NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO alerts (robot_id, metric, level, value, threshold, first_triggered, \
             last_triggered, count, last_reading_at) VALUES \
         ('r1', 'servo_voltage', 'warning', 5.333, 5.5, now(), now(), 3, now()), \
         ('r1', 'cpu', 'critical', 91.26, 80, now(), now(), 1, now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    // WHEN the remaining migrations run
    all.run(&pool).await.unwrap();
    // THEN the alerts have TonyPi's fields, worded as the evaluator words them
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT alert_type, severity, title, message, source FROM alerts ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    use fleetsink::alerts::{Watched, message, title};
    assert_eq!(
        rows,
        vec![
            (
                "servo_voltage".into(),
                "warning".into(),
                title(Watched::ServoVoltage, "r1"),
                message(Watched::ServoVoltage, 5.333, 5.5),
                "fleetsink".into()
            ),
            (
                "cpu".into(),
                "critical".into(),
                title(Watched::Cpu, "r1"),
                message(Watched::Cpu, 91.26, 80.0),
                "fleetsink".into()
            ),
        ]
    );
    // AND the robots' own thresholds are rows (the missing half from the defaults)
    let rows: Vec<(String, String, f64, f64, bool)> = sqlx::query_as(
        "SELECT robot_id, metric_type, warning_threshold, critical_threshold, enabled \
         FROM alert_thresholds ORDER BY robot_id, metric_type",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("r1".into(), "battery".into(), 25.0, 15.0, true),
            ("r1".into(), "cpu".into(), 60.0, 80.0, true),
        ]
    );
}
