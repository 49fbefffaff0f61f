//! The TonyPi-compatible `robots-db` routes, on data the pipeline wrote from MQTT:
//! field names and shapes as the TonyPi backend's models give them, status codes and
//! `{"detail"}` errors, soft delete, job history and statistics.

use std::time::Duration;

use fleetsink::config::MqttMode;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_db_routes_answer_as_the_tonypi_backend() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_gateway").await;
    let now = chrono::Utc::now();
    for robot in ["tonypi_a", "tonypi_b"] {
        c.publish_acked(
            &format!("tonypi/status/{robot}"),
            json!({"status": "online", "ip_address": "10.0.0.7", "timestamp": now.to_rfc3339()})
                .to_string(),
        )
        .await;
    }
    for (i, status) in ["started", "working", "completed"].iter().enumerate() {
        c.publish_acked(
            "tonypi/job/tonypi_a",
            json!({"status": status, "task_name": "pick", "items_done": i, "items_total": 2,
                   "timestamp": (now + chrono::Duration::seconds(i as i64)).to_rfc3339()})
            .to_string(),
        )
        .await;
    }

    // Robots: TonyPi's fields, thresholds from the fleet defaults.
    let (code, list) = t.send(Method::GET, "/api/v1/robots-db/robots", None).await;
    assert_eq!(code, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let a = &list[0];
    for field in [
        "id",
        "robot_id",
        "name",
        "description",
        "location",
        "status",
        "battery_threshold_low",
        "battery_threshold_critical",
        "temp_threshold_warning",
        "temp_threshold_critical",
        "settings",
        "last_seen",
        "created_at",
        "updated_at",
        "is_active",
    ] {
        assert!(a.get(field).is_some(), "missing {field}: {a}");
    }
    assert_eq!(a["robot_id"], "tonypi_a");
    assert_eq!(a["status"], "online");
    assert_eq!(a["battery_threshold_low"], 30.0);
    assert!(a["last_seen"].as_str().unwrap().ends_with("+00:00"), "{a}");

    // Get, 404.
    let (code, one) = t
        .send(Method::GET, "/api/v1/robots-db/robots/tonypi_b", None)
        .await;
    assert_eq!((code, one["robot_id"].as_str()), (200, Some("tonypi_b")));
    let (code, err) = t
        .send(Method::GET, "/api/v1/robots-db/robots/nope", None)
        .await;
    assert_eq!(
        (code, err["detail"].as_str()),
        (404, Some("Robot not found"))
    );

    // Create, and 400 when it exists.
    let body = json!({"robot_id": "tonypi_new", "location": "bay 3"});
    let (code, created) = t
        .send(Method::POST, "/api/v1/robots-db/robots", Some(body.clone()))
        .await;
    assert_eq!(code, 200, "{created}");
    assert_eq!(
        (created["name"].as_str(), created["location"].as_str()),
        (Some("tonypi_new"), Some("bay 3"))
    );
    let (code, err) = t
        .send(Method::POST, "/api/v1/robots-db/robots", Some(body))
        .await;
    assert_eq!(
        (code, err["detail"].as_str()),
        (400, Some("Robot already exists"))
    );

    // Update: the fields given change; a robot's own threshold replaces the default.
    let (code, updated) = t
        .send(
            Method::PUT,
            "/api/v1/robots-db/robots/tonypi_a",
            Some(json!({"name": "Alpha", "battery_threshold_low": 25.0, "settings": {"speed": 2}})),
        )
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["name"], "Alpha");
    assert_eq!(updated["battery_threshold_low"], 25.0);
    assert_eq!(updated["settings"]["speed"], 2);
    assert_eq!(updated["location"], serde_json::Value::Null, "untouched");

    // Soft delete: gone from the list, still readable.
    let (code, msg) = t
        .send(Method::DELETE, "/api/v1/robots-db/robots/tonypi_b", None)
        .await;
    assert_eq!(
        (code, msg["message"].as_str()),
        (200, Some("Robot deleted successfully"))
    );
    let (_, list) = t.send(Method::GET, "/api/v1/robots-db/robots", None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["robot_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["tonypi_a", "tonypi_new"]);
    let (_, b) = t
        .send(Method::GET, "/api/v1/robots-db/robots/tonypi_b", None)
        .await;
    assert_eq!(b["is_active"], false);
    assert_eq!(
        t.count("SELECT count(*) FROM logs WHERE category = 'audit' AND message LIKE 'Robot %'")
            .await,
        3,
        "create, update and delete are logged (with who made them: the audit trail)"
    );

    // Job history and statistics.
    let (code, jobs) = t
        .send(
            Method::GET,
            "/api/v1/robots-db/jobs/history?robot_id=tonypi_a&limit=5",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let job = &jobs[0];
    assert_eq!(
        (job["status"].as_str(), job["items_done"].as_i64()),
        (Some("completed"), Some(2))
    );
    assert_eq!(job["percent_complete"], 100.0);
    for field in [
        "id",
        "robot_id",
        "start_time",
        "end_time",
        "items_total",
        "last_item",
        "created_at",
        "updated_at",
    ] {
        assert!(job.get(field).is_some(), "missing {field}: {job}");
    }
    let (code, stats) = t.send(Method::GET, "/api/v1/robots-db/stats", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        stats,
        json!({"total_robots": 2, "online_robots": 1, "offline_robots": 1,
               "total_jobs": 1, "active_jobs": 0, "completed_jobs_today": 1})
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_db_logs_filter_and_page() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_logger").await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(10);
    for i in 0..7 {
        let level = if i % 2 == 0 { "warning" } else { "info" };
        c.publish_acked(
            "tonypi/logs/tonypi_logger",
            json!({"level": level, "message": format!("step {i}"), "source": "arm",
                   "timestamp": (base + chrono::Duration::seconds(i)).to_rfc3339()})
            .to_string(),
        )
        .await;
    }
    // TonyPi's shape; its filters (level is case-insensitive) combine.
    let (code, logs) = t
        .send(
            Method::GET,
            "/api/v1/robots-db/logs?level=warning&category=robot_arm&robot_id=tonypi_logger",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let logs = logs.as_array().unwrap();
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["step 6", "step 4", "step 2", "step 0"]);
    for field in [
        "id",
        "level",
        "category",
        "message",
        "robot_id",
        "details",
        "timestamp",
    ] {
        assert!(logs[0].get(field).is_some(), "missing {field}");
    }
    assert_eq!(logs[0]["level"], "WARNING");

    // Pages of 3 over the 7 arm logs: 3 + 3 + 1, no row twice, newest first.
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!(
            "http://{}/api/v1/robots-db/logs?category=robot_arm&limit=3",
            t.http
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = client.get(url).send().await.unwrap();
        cursor = resp
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<serde_json::Value> = resp.json().await.unwrap();
        seen.extend(
            page.iter()
                .map(|l| l["message"].as_str().unwrap().to_string()),
        );
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("step {i}")).collect();
    assert_eq!(seen, expected);

    // from/to bound the time; bad input is a 400 with a detail.
    let from = (base + chrono::Duration::seconds(5))
        .to_rfc3339()
        .replace('+', "%2B");
    let (_, recent) = t
        .send(
            Method::GET,
            &format!("/api/v1/robots-db/logs?category=robot_arm&from={from}"),
            None,
        )
        .await;
    assert_eq!(recent.as_array().unwrap().len(), 2);
    for bad in [
        "limit=0",
        "limit=5000",
        "cursor=garbage",
        "from=yesterday",
        "limit=many",
    ] {
        let (code, err) = t
            .send(Method::GET, &format!("/api/v1/robots-db/logs?{bad}"), None)
            .await;
        assert_eq!(code, 400, "{bad}");
        assert!(err["detail"].is_string(), "{bad}: {err}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_values_names_health_and_rejected_messages() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_lv").await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(5);
    for (i, pct) in [80.0, 79.5].iter().enumerate() {
        c.publish_acked(
            "tonypi/battery",
            json!({"robot_id": "tonypi_lv", "percentage": pct, "voltage": 11.0, "charging": false,
                   "timestamp": (base + chrono::Duration::seconds(i as i64)).to_rfc3339()})
            .to_string(),
        )
        .await;
    }
    c.publish_acked(
        "tonypi/sensors/tonypi_lv",
        json!({"sensor_type": "cpu_temperature", "value": 48.5, "unit": "°C",
               "timestamp": base.to_rfc3339()})
        .to_string(),
    )
    .await;
    // A late message (older than the newest) does not move the latest value back.
    c.publish_acked(
        "tonypi/battery",
        json!({"robot_id": "tonypi_lv", "percentage": 12.0, "voltage": 11.0, "charging": false,
               "timestamp": (base - chrono::Duration::seconds(60)).to_rfc3339()})
        .to_string(),
    )
    .await;
    c.publish_acked("tonypi/status/tonypi_lv", "not json").await;

    let (code, latest) = t
        .send(Method::GET, "/api/v1/robots/tonypi_lv/latest", None)
        .await;
    assert_eq!(code, 200);
    let m: Vec<(String, f64)> = latest["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        m,
        vec![
            ("battery.charging".into(), 0.0),
            ("battery.percentage".into(), 79.5),
            ("battery.voltage".into(), 11.0),
            ("cpu_temperature".into(), 48.5)
        ]
    );
    assert_eq!(latest["metrics"][3]["unit"], "°C");
    let (code, _) = t
        .send(Method::GET, "/api/v1/robots/nobody/latest", None)
        .await;
    assert_eq!(code, 404);

    let (_, names) = t
        .send(
            Method::GET,
            "/api/v1/metrics/names?robot_id=tonypi_lv",
            None,
        )
        .await;
    assert_eq!(names.as_array().unwrap().len(), 4);

    let (code, health) = t.send(Method::GET, "/api/v1/health", None).await;
    assert_eq!((code, health["status"].as_str()), (200, Some("healthy")));
    assert_eq!(health["services"]["database"], "healthy");

    let (code, errors) = t
        .send(Method::GET, "/api/v1/ingest-errors?reason=not_json", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(errors[0]["topic"], "tonypi/status/tonypi_lv");
    assert_eq!(errors[0]["payload_preview"], "not json");
    assert!(errors[0]["detail"].as_str().unwrap().contains("not JSON"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_buckets_by_name_and_prefix_as_json_and_csv() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_mq").await;
    // 00:10:00 .. 00:12:40 today, every 20 s: battery 80, 79, ... and two servos.
    let day = chrono::Utc::now().date_naive();
    let start = day.and_hms_opt(0, 10, 0).unwrap().and_utc();
    for i in 0..9i64 {
        let at = (start + chrono::Duration::seconds(20 * i)).to_rfc3339();
        c.publish_acked(
            "tonypi/battery",
            json!({"robot_id": "tonypi_mq", "percentage": 80 - i, "voltage": 11.0, "charging": false, "timestamp": at})
                .to_string(),
        )
        .await;
        c.publish_acked(
            "tonypi/servos/tonypi_mq",
            json!({"servos": {"servo_1": {"temperature": 40 + i}, "servo_2": {"temperature": 30}}, "timestamp": at})
                .to_string(),
        )
        .await;
    }
    let q = |extra: &str| {
        format!(
            "/api/v1/robots/tonypi_mq/metrics?name=battery.percentage&name=servos.*&from={}&to={}&bucket=1m{extra}",
            start.to_rfc3339().replace('+', "%2B"),
            (start + chrono::Duration::minutes(3))
                .to_rfc3339()
                .replace('+', "%2B"),
        )
    };
    let (code, body) = t.send(Method::GET, &q(""), None).await;
    assert_eq!(code, 200, "{body}");
    let points = body["points"].as_array().unwrap();
    let battery: Vec<(f64, f64, f64, f64, i64)> = points
        .iter()
        .filter(|p| p["name"] == "battery.percentage")
        .map(|p| {
            (
                p["min"].as_f64().unwrap(),
                p["avg"].as_f64().unwrap(),
                p["max"].as_f64().unwrap(),
                p["last"].as_f64().unwrap(),
                p["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        battery,
        vec![
            (78.0, 79.0, 80.0, 78.0, 3),
            (75.0, 76.0, 77.0, 75.0, 3),
            (72.0, 73.0, 74.0, 72.0, 3)
        ]
    );
    let names: std::collections::BTreeSet<&str> =
        points.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec![
            "battery.percentage",
            "servos.servo_1.temperature",
            "servos.servo_2.temperature"
        ]
    );

    // CSV on request.
    let resp = reqwest::Client::new()
        .get(format!("http://{}{}", t.http, q("")))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("name,unit,bucket,min,avg,max,last,count")
    );
    assert_eq!(lines.count(), points.len());

    // Too many points: a 400 that says how to narrow it; other bad input too.
    let (code, err) = t
        .send(Method::GET, "/api/v1/robots/tonypi_mq/metrics?name=servos.*&bucket=1s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", None)
        .await;
    assert_eq!(code, 400);
    assert!(
        err["detail"].as_str().unwrap().contains("larger bucket"),
        "{err}"
    );
    for bad in [
        "bucket=2d&name=x",
        "bucket=soon&name=x",
        "",
        "name=x&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let (code, err) = t
            .send(
                Method::GET,
                &format!("/api/v1/robots/tonypi_mq/metrics?{bad}"),
                None,
            )
            .await;
        assert_eq!(code, 400, "{bad}: {err}");
    }
    let (code, _) = t
        .send(Method::GET, "/api/v1/robots/nobody/metrics?name=x", None)
        .await;
    assert_eq!(code, 404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_data_routes_answer_as_the_tonypi_backend() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_rd").await;
    let now = chrono::Utc::now().to_rfc3339();
    for (topic, payload) in [
        (
            "tonypi/status/tonypi_rd",
            json!({"status": "online", "ip_address": "10.0.0.7", "camera_url": "http://10.0.0.7:8080",
                   "system_info": {"cpu_percent": 12.5}}),
        ),
        (
            "tonypi/battery",
            json!({"robot_id": "tonypi_rd", "percentage": 66.0, "voltage": 11.1, "charging": true}),
        ),
        (
            "tonypi/location",
            json!({"robot_id": "tonypi_rd", "x": 1.5, "y": 2.0, "z": 0.0}),
        ),
        (
            "tonypi/sensors/tonypi_rd",
            json!({"sensor_type": "ultrasonic_distance", "value": 42.0, "unit": "cm"}),
        ),
        (
            "tonypi/job/tonypi_rd",
            json!({"status": "started", "task_name": "pick", "items_total": 4}),
        ),
        (
            "tonypi/servos/tonypi_rd",
            json!({"servos": {
                "servo_1": {"id": 1, "name": "Left Hip", "position": -1.0, "temperature": 47.3,
                            "voltage": 5.15, "torque_enabled": true, "alert_level": "normal"},
                "servo_2": {"id": 2, "name": "Left Knee", "position": 1.9, "temperature": 60.0,
                            "voltage": 4.97, "torque_enabled": false, "alert_level": "warning"}},
                   "servo_count": 2}),
        ),
    ] {
        let mut p = payload;
        p["timestamp"] = json!(now);
        c.publish_acked(topic, p.to_string()).await;
    }
    let (code, sensors) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/sensors?measurement=sensors&time_range=1h&robot_id=tonypi_rd",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(sensors.as_array().unwrap().len(), 1, "{sensors}");
    let r = &sensors[0];
    assert_eq!(
        (
            r["measurement"].as_str(),
            r["field"].as_str(),
            r["value"].as_f64(),
            r["sensor_type"].as_str()
        ),
        (
            Some("sensors"),
            Some("ultrasonic_distance"),
            Some(42.0),
            Some("ultrasonic_distance")
        )
    );
    for field in ["timestamp", "robot_id"] {
        assert!(r.get(field).is_some());
    }
    let (_, battery) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/sensors?measurement=battery",
            None,
        )
        .await;
    assert_eq!(battery.as_array().unwrap().len(), 3);
    // TonyPi's InfluxDB measurement names are accepted as aliases.
    let (_, battery_status) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/sensors?measurement=battery_status",
            None,
        )
        .await;
    assert_eq!(battery_status, battery);
    let (code, err) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/sensors?measurement=weather",
            None,
        )
        .await;
    assert_eq!((code, err["detail"].is_string()), (400, true));

    let (_, status) = t.send(Method::GET, "/api/v1/robot-data/status", None).await;
    assert_eq!(
        status,
        json!([{"robot_id": "tonypi_rd", "status": "online", "last_seen": status[0]["last_seen"],
                "battery_percentage": 66.0, "location": {"x": 1.5, "y": 2.0, "z": 0.0},
                "ip_address": "10.0.0.7", "camera_url": "http://10.0.0.7:8080"}])
    );
    let (_, latest) = t
        .send(Method::GET, "/api/v1/robot-data/latest/tonypi_rd", None)
        .await;
    assert_eq!(latest["battery"]["charging"], 1.0);
    assert_eq!(latest["status"]["cpu_percent"], 12.5);
    assert_eq!(latest["sensors"]["ultrasonic_distance"], 42.0);
    assert_eq!(latest["location"]["x"], 1.5);
    // An unknown robot gets TonyPi's empty answer, not a 404.
    let (code, nobody) = t
        .send(Method::GET, "/api/v1/robot-data/latest/nobody", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        nobody,
        json!({"robot_id": "nobody", "sensors": {}, "battery": {}, "location": {}, "status": {}})
    );

    let (code, servos) = t
        .send(Method::GET, "/api/v1/robot-data/servos/tonypi_rd", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (servos["robot_id"].as_str(), servos["servo_count"].as_u64()),
        (Some("tonypi_rd"), Some(2))
    );
    assert!(servos["timestamp"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        servos["servos"]["servo_1"],
        json!({"id": 1, "name": "servo_1", "robot_id": "tonypi_rd", "alert_level": "normal",
               "torque_enabled": true, "position": -1.0, "temperature": 47.3, "voltage": 5.15})
    );
    // 60 °C is over the servo warning threshold (50) and under critical (70).
    assert_eq!(servos["servos"]["servo_2"]["alert_level"], "warning");
    assert_eq!(servos["servos"]["servo_2"]["torque_enabled"], false);
    let (code, none) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/servos/nobody?time_range=1h",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (none["servo_count"].as_u64(), none["message"].as_str()),
        (Some(0), Some("No servo data found"))
    );
    let (code, _) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/servos/tonypi_rd?time_range=1y",
            None,
        )
        .await;
    assert_eq!(code, 400);

    let (_, job) = t
        .send(
            Method::GET,
            "/api/v1/robot-data/job-summary/tonypi_rd",
            None,
        )
        .await;
    assert_eq!(
        (job["task_name"].as_str(), job["status"].as_str()),
        (Some("pick"), Some("active"))
    );
    assert_eq!(job["items_total"], 4);
    t.stop().await;
}

/// The robot's battery and status on `robot-data/status`, and on `management/robots`.
async fn fleet_pages(t: &TestApp) -> [(Option<f64>, Option<String>); 2] {
    let (code, status) = t.send(Method::GET, "/api/v1/robot-data/status", None).await;
    assert_eq!(code, 200, "{status}");
    let (code, managed) = t.send(Method::GET, "/api/v1/management/robots", None).await;
    assert_eq!(code, 200, "{managed}");
    let status_of = |v: &serde_json::Value| v.as_str().map(str::to_string);
    [
        (
            status[0]["battery_percentage"].as_f64(),
            status_of(&status[0]["status"]),
        ),
        (
            managed[0]["battery_level"].as_f64(),
            status_of(&managed[0]["status"]),
        ),
    ]
}

/// Fleet pages listing at least `http.page_snapshot_robots` robots are answered from a
/// snapshot (here: from one robot on, kept up to a minute) and refreshed behind the
/// requests; a change made through the robots API shows on both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_pages_are_answered_from_a_snapshot_that_api_writes_drop() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.page_snapshot_robots = 1;
        cfg.http.page_max_stale = Duration::from_secs(60);
    })
    .await;
    let mut c = t.robot("tonypi_snap").await;
    let battery = |pct: f64| {
        json!({"robot_id": "tonypi_snap", "percentage": pct,
               "timestamp": chrono::Utc::now().to_rfc3339()})
        .to_string()
    };
    let online = json!({"status": "online"}).to_string();
    c.publish_acked("tonypi/status/tonypi_snap", online).await;
    c.publish_acked("tonypi/battery", battery(50.0)).await;
    let page = |pct: f64, status: &str| (Some(pct), Some(status.to_string()));
    let both = |pct: f64, status: &str| [page(pct, status), page(pct, status)];
    assert_eq!(fleet_pages(&t).await, both(50.0, "online"));

    // A new reading, committed: both pages answer their snapshot (computed before it)…
    c.publish_acked("tonypi/battery", battery(40.0)).await;
    assert_eq!(fleet_pages(&t).await, both(50.0, "online"), "the snapshots");
    // …and show it once a refresh behind the requests ran (due after a second).
    wait_for_eq(Duration::from_secs(15), both(40.0, "online"), || {
        fleet_pages(&t)
    })
    .await;

    // A change through the robots API shows on both pages at the next request.
    let (code, body) = t
        .send(
            Method::PUT,
            "/api/v1/robots-db/robots/tonypi_snap",
            Some(json!({"status": "maintenance"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(fleet_pages(&t).await, both(40.0, "maintenance"));
    t.stop().await;
}
