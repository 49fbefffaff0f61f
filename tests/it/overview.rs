//! The fleet overview routes the TonyPi UI's Overview, Jobs and Performance pages call
//! (system status, job totals, Pi performance, robot config, the banners), on data the
//! pipeline wrote from MQTT, field by field against TonyPi's shapes; time-series reads
//! oldest to newest; CORS headers on every answer, errors and unknown routes included.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fleetsink::config::MqttMode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Robots stay online for the whole test, however slow the machine.
fn no_sweep(cfg: &mut fleetsink::config::Config) {
    cfg.robots.offline_after = Duration::from_secs(3600);
}

/// The captured TonyPi messages of `prefix` topics in capture order, their times moved
/// to a millisecond apart, the last at `at`.
fn fixtures_at(prefix: &str, at: DateTime<Utc>) -> Vec<(String, Value)> {
    let picked: Vec<_> = fleetsink::testing::fixtures()
        .into_iter()
        .filter(|(topic, _)| topic.starts_with(prefix))
        .collect();
    let n = picked.len() as i64;
    picked
        .into_iter()
        .enumerate()
        .map(|(i, (topic, payload))| {
            let mut p: Value = serde_json::from_slice(&payload).unwrap();
            let ts = at - chrono::Duration::milliseconds(n - 1 - i as i64);
            p["timestamp"] = json!(ts.to_rfc3339());
            (topic, p)
        })
        .collect()
}

async fn get(t: &TestApp, path: &str) -> (u16, Value) {
    t.send(Method::GET, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_status_and_job_totals_from_the_pipeline() {
    let mut t = spawn_app(MqttMode::Embedded, no_sweep).await;
    let mut c = t.robot("tonypi_gateway").await;
    let now = Utc::now();
    // Five robots report their status (TonyPi's simulator capture, now); the capture
    // ends with each going offline: four stay online here, tonypi_high_load goes. One
    // runs the captured job (8 of 15 items, active).
    for (topic, p) in fixtures_at("tonypi/status/", now) {
        if p["status"] == "offline" && topic != "tonypi/status/tonypi_high_load" {
            continue;
        }
        c.publish_acked(&topic, p.to_string()).await;
    }
    for (topic, payload) in fleetsink::testing::fixtures() {
        if topic.starts_with("tonypi/job/") {
            c.publish_acked(&topic, payload.to_vec()).await;
        }
    }
    // tonypi_ov: one job completed in 60 s (10 of 10), one cancelled after 30 s (3 of 5).
    let t0 = now - chrono::Duration::seconds(600);
    let at = |s: i64| (t0 + chrono::Duration::seconds(s)).to_rfc3339();
    c.publish_acked(
        "tonypi/status/tonypi_ov",
        json!({"status": "online", "timestamp": at(0)}).to_string(),
    )
    .await;
    for (status, s, start, done, total) in [
        ("started", 0, 0, 0, 10),
        ("completed", 60, 0, 10, 10),
        ("started", 100, 100, 0, 5),
        ("cancelled", 130, 100, 3, 5),
    ] {
        c.publish_acked(
            "tonypi/job/tonypi_ov",
            json!({"status": status, "task_name": "pick", "start_time": at(start),
                   "items_done": done, "items_total": total, "timestamp": at(s)})
            .to_string(),
        )
        .await;
    }
    // A robot registered through the API but never heard from is not connected.
    let (code, _) = t
        .send(
            Method::POST,
            "/api/v1/robots-db/robots",
            Some(json!({"robot_id": "tonypi_never"})),
        )
        .await;
    assert_eq!(code, 200);

    // Jobs page cards: TonyPi's overall-stats fields.
    let (code, overall) = get(&t, "/api/v1/robots-db/jobs/overall-stats").await;
    assert_eq!(code, 200);
    assert_eq!(
        overall,
        json!({"total_robots_with_jobs": 2, "total_jobs": 3, "active_jobs": 1,
               "completed_jobs": 1, "total_items_done": 21, "total_items_target": 30,
               "total_duration_seconds": 90.0,
               // (100 + 60 + 53.33) / 3
               "average_completion_percent": 71.11})
    );

    let (code, ov) = get(
        &t,
        "/api/v1/robots-db/jobs/cumulative-stats?robot_id=tonypi_ov",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        ov,
        json!({"robot_id": "tonypi_ov", "current_job": null,
               "cumulative": {"total_jobs": 2, "completed_jobs": 1, "cancelled_jobs": 1,
                              "failed_jobs": 0, "active_jobs": 0, "total_items_done": 13,
                              "total_items_target": 15, "total_duration_seconds": 90.0,
                              "average_duration_seconds": 45.0}})
    );
    let (_, demo) = get(
        &t,
        "/api/v1/robots-db/jobs/cumulative-stats?robot_id=tonypi_job_demo",
    )
    .await;
    let job = &demo["current_job"];
    assert_eq!(
        (
            job["status"].as_str(),
            job["task_name"].as_str(),
            job["items_done"].as_i64(),
            job["items_total"].as_i64(),
            job["percent_complete"].as_f64()
        ),
        (
            Some("active"),
            Some("inventory_scan"),
            Some(8),
            Some(15),
            Some(53.33)
        ),
        "{demo}"
    );
    for field in ["id", "robot_id", "start_time", "end_time", "last_item"] {
        assert!(job.get(field).is_some(), "current_job lacks {field}");
    }
    let (_, all) = get(&t, "/api/v1/robots-db/jobs/cumulative-stats").await;
    assert_eq!(
        (all["robot_id"].clone(), all["current_job"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(all["cumulative"]["total_jobs"], 3);
    let (_, nobody) = get(
        &t,
        "/api/v1/robots-db/jobs/cumulative-stats?robot_id=nobody",
    )
    .await;
    assert_eq!(nobody["cumulative"]["total_jobs"], 0);
    let (code, err) = get(&t, "/api/v1/robots-db/jobs/cumulative-stats?robot_id=a%00b").await;
    assert_eq!((code, err["detail"].is_string()), (400, true), "{err}");

    // Commands today: one to a robot, one settings update, one broadcast stop (one
    // command, however many robots it went to).
    let (code, _) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "robot_id": "tonypi_ov"}),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = t
        .send(
            Method::PUT,
            "/api/v1/management/robots/tonypi_ov/config",
            Some(json!({"config_type": "navigation", "config_data": {"max_speed": 2.0}})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = t
        .post(
            "/api/v1/management/emergency-stop/broadcast",
            json!({}),
            None,
        )
        .await;
    assert_eq!(code, 200);

    let (code, status) = get(&t, "/api/v1/management/system/status").await;
    assert_eq!(code, 200, "{status}");
    // Four of the captured robots and tonypi_ov; not the offline one nor the one
    // never heard from.
    assert_eq!(status["active_robots"], 5, "{status}");
    assert_eq!(status["total_robots"], 7, "{status}");
    assert_eq!(status["total_commands_today"], 3, "{status}");
    assert_eq!(status["system_health"], "healthy");
    assert_eq!(
        status["services"],
        json!({"mqtt_broker": "running", "postgres": "running",
               "influxdb": "not_used", "grafana": "not_used"})
    );
    let uptime = status["system_uptime"].as_str().unwrap();
    assert!(
        // "1 second" on a machine loaded enough that start-up took a second.
        uptime.ends_with("second") || uptime.ends_with("seconds") || uptime.contains("minute"),
        "{uptime}"
    );
    assert!(status["uptime_seconds"].as_u64().is_some());
    for key in ["cpu_percent", "memory_percent", "disk_usage_percent"] {
        assert!(status["resource_usage"].get(key).is_some(), "{status}");
    }
    if let Some(m) = status["resource_usage"]["memory_percent"].as_f64() {
        assert!((0.0..=100.0).contains(&m), "{status}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_perf_and_sensors_run_oldest_to_newest() {
    let mut t = spawn_app(MqttMode::Embedded, no_sweep).await;
    let mut c = t.robot("tonypi_pi").await;
    let now = Utc::now();
    // 100 status messages a second apart, each with the simulator's system_info
    // (8 numeric keys, booleans as 0/1): 800 points, of which the newest 500 answer.
    let (_, template) = fixtures_at("tonypi/status/tonypi_normal", now)
        .into_iter()
        .next()
        .unwrap();
    for i in 0..100 {
        let mut p = template.clone();
        p["robot_id"] = json!("tonypi_pi");
        p["system_info"]["cpu_percent"] = json!(i as f64);
        p["timestamp"] = json!((now - chrono::Duration::seconds(100 - i)).to_rfc3339());
        c.publish_acked("tonypi/status/tonypi_pi", p.to_string())
            .await;
    }
    let (code, points) = get(&t, "/api/v1/pi/perf/tonypi_pi?time_range=10m").await;
    assert_eq!(code, 200);
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 500);
    let p = &points[0];
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys.len(),
        5,
        "TonyPi's record keys: time, measurement, field, value, robot_id: {p}"
    );
    assert_eq!(
        (p["measurement"].as_str(), p["robot_id"].as_str()),
        (Some("robot_status"), Some("tonypi_pi"))
    );
    let times: Vec<DateTime<Utc>> = points
        .iter()
        .map(|p| p["time"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest to newest");
    let cpu: Vec<f64> = points
        .iter()
        .filter(|p| p["field"] == "system_cpu_percent")
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    // The newest 500 of 800 points: the last 62.5 messages, ending with the latest.
    assert_eq!(cpu.last(), Some(&99.0));
    assert_eq!(cpu.len(), 63, "{cpu:?}");
    assert!(cpu.windows(2).all(|w| w[0] < w[1]), "{cpu:?}");
    let mut fields: Vec<&str> = points
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    fields.dedup();
    assert_eq!(
        fields,
        [
            "system_cpu_percent",
            "system_cpu_temperature",
            "system_disk_usage",
            "system_hardware_mode",
            "system_hardware_sdk",
            "system_memory_percent",
            "system_temperature",
            "system_uptime"
        ]
    );
    // Default range 5m; TonyPi's empty answer for a robot never heard of.
    let (code, five) = get(&t, "/api/v1/pi/perf/tonypi_pi").await;
    assert_eq!((code, five.as_array().unwrap().len()), (200, 500));
    let (code, none) = get(&t, "/api/v1/pi/perf/nobody?time_range=5m").await;
    assert_eq!((code, none), (200, json!([])));
    for bad in [
        "/api/v1/pi/perf/tonypi_pi?time_range=garbage",
        "/api/v1/pi/perf/tonypi_pi?time_range=5%C3%A9",
        "/api/v1/pi/perf/tonypi_pi?time_range=99999999999999999m",
        "/api/v1/pi/perf/tonypi_pi?time_range=31d",
        "/api/v1/pi/perf/tonypi%00pi",
    ] {
        let (code, err) = get(&t, bad).await;
        assert_eq!(
            (code, err["detail"].is_string()),
            (400, true),
            "{bad}: {err}"
        );
    }

    // Sensor readings too: the UI takes the last items as the latest.
    for (i, v) in [1.0, 2.0, 3.0].into_iter().enumerate() {
        c.publish_acked(
            "tonypi/sensors/tonypi_pi",
            json!({"sensor_type": "light_level", "value": v, "unit": "lux",
                   "timestamp": (now - chrono::Duration::seconds(3 - i as i64)).to_rfc3339()})
            .to_string(),
        )
        .await;
    }
    let (code, sensors) = get(
        &t,
        "/api/v1/robot-data/sensors?measurement=sensors&time_range=5m&robot_id=tonypi_pi",
    )
    .await;
    assert_eq!(code, 200);
    let values: Vec<f64> = sensors
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [1.0, 2.0, 3.0]);
    let (_, status) = get(
        &t,
        "/api/v1/robot-data/sensors?measurement=robot_status&time_range=5m",
    )
    .await;
    let last = status.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["timestamp"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        times.last().copied().unwrap(),
        "the last reading is the latest: {last}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_config_is_stored_and_published_on_the_config_topic() {
    let mut t = spawn_app(MqttMode::Embedded, no_sweep).await;
    let mut robot = t.robot("tonypi_cfg").await;
    robot
        .publish_acked(
            "tonypi/status/tonypi_cfg",
            json!({"status": "online"}).to_string(),
        )
        .await;
    robot
        .client
        .subscribe("tonypi/config/tonypi_cfg", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = "/api/v1/management/robots/tonypi_cfg/config";

    // TonyPi's defaults until something is set.
    let defaults = json!({"robot_id": "tonypi_cfg",
        "navigation": {"max_speed": 1.5, "obstacle_avoidance": true, "path_planning": "A*"},
        "sensors": {"camera_fps": 30, "lidar_frequency": 10, "imu_rate": 100},
        "behavior": {"auto_charging": true, "patrol_mode": false, "voice_response": true}});
    let (code, config) = get(&t, path).await;
    assert_eq!((code, &config), (200, &defaults));

    let (code, answer) = t
        .send(
            Method::PUT,
            path,
            Some(json!({"config_type": "navigation", "config_data": {"max_speed": 2.0}})),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["message"], "Configuration updated successfully");
    assert_eq!(answer["topic"], "tonypi/config/tonypi_cfg");
    let command_id = answer["command_id"].as_str().unwrap().to_string();
    let msg = tokio::time::timeout(Duration::from_secs(10), robot.messages.recv())
        .await
        .expect("no config message within 10 s")
        .unwrap();
    assert_eq!(msg.topic, "tonypi/config/tonypi_cfg");
    assert_eq!(msg.qos, rumqttc::QoS::AtLeastOnce);
    let sent: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(
        (
            &sent["config_type"],
            &sent["config_data"],
            &sent["type"],
            &sent["id"],
            &sent["command_id"]
        ),
        (
            &json!("navigation"),
            &json!({"max_speed": 2.0}),
            &json!("config"),
            &json!(command_id),
            &json!(command_id)
        )
    );
    assert!(
        sent["timestamp"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .is_ok()
    );
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM commands WHERE command_id = '{command_id}' \
             AND command = 'config' AND robot_id = 'tonypi_cfg' AND topic = 'tonypi/config/tonypi_cfg'"
        ))
        .await,
        1
    );

    // Later keys add to those set; another config type becomes its own section.
    for body in [
        json!({"config_type": "navigation", "config_data": {"obstacle_avoidance": false}}),
        json!({"config_type": "arm", "config_data": {"speed": 3, "grip": "soft"}}),
    ] {
        let (code, answer) = t.send(Method::PUT, path, Some(body)).await;
        assert_eq!(code, 200, "{answer}");
    }
    let (_, config) = get(&t, path).await;
    let mut want = defaults.clone();
    want["navigation"]["max_speed"] = json!(2.0);
    want["navigation"]["obstacle_avoidance"] = json!(false);
    want["arm"] = json!({"speed": 3, "grip": "soft"});
    assert_eq!(config, want);

    // Unknown robots, bad input.
    let (code, err) = get(&t, "/api/v1/management/robots/nobody/config").await;
    assert_eq!((code, err["detail"].is_string()), (404, true));
    let (code, _) = t
        .send(
            Method::PUT,
            "/api/v1/management/robots/nobody/config",
            Some(json!({"config_type": "navigation", "config_data": {}})),
        )
        .await;
    assert_eq!(code, 404);
    for body in [
        json!({"config_type": "robot_id", "config_data": {}}),
        json!({"config_type": "", "config_data": {}}),
        json!({"config_type": "nav\u{0}", "config_data": {}}),
        json!({"config_type": "navigation", "config_data": {"name": "a\u{0}b"}}),
    ] {
        let (code, err) = t.send(Method::PUT, path, Some(body.clone())).await;
        assert_eq!((code, err["detail"].is_string()), (400, true), "{body}");
    }
    let (code, err) = t
        .send(
            Method::PUT,
            path,
            Some(json!({"config_type": "navigation", "config_data": [1]})),
        )
        .await;
    assert!(
        (400..500).contains(&code) && err["detail"].is_string(),
        "{code} {err}"
    );
    let (_, unchanged) = get(&t, path).await;
    assert_eq!(unchanged, want, "refused updates change nothing");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_config_is_refused_and_status_says_so() {
    let mut t = spawn_app(MqttMode::External, no_sweep).await;
    let mut c = t.robot("tonypi_down").await;
    c.publish_acked(
        "tonypi/status/tonypi_down",
        json!({"status": "online"}).to_string(),
    )
    .await;
    // Mosquitto's PUBACK comes before fleetsink stores the robot.
    t.wait_count(
        "SELECT count(*) FROM robots WHERE robot_id = 'tonypi_down'",
        1,
    )
    .await;
    drop(t.broker.take()); // Mosquitto is killed
    let health = t.app().health();
    wait_until(Duration::from_secs(10), "the broker is gone", || {
        let h = health.clone();
        async move { !h.readiness().broker_connected }
    })
    .await;
    let path = "/api/v1/management/robots/tonypi_down/config";
    let (code, err) = t
        .send(
            Method::PUT,
            path,
            Some(json!({"config_type": "navigation", "config_data": {"max_speed": 9}})),
        )
        .await;
    assert_eq!((code, err["detail"].is_string()), (503, true), "{err}");
    let (_, config) = get(&t, path).await;
    assert_eq!(config["navigation"]["max_speed"], 1.5, "nothing stored");
    let (code, status) = get(&t, "/api/v1/management/system/status").await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            status["system_health"].as_str(),
            status["services"]["mqtt_broker"].as_str(),
            status["services"]["postgres"].as_str()
        ),
        (Some("degraded"), Some("disconnected"), Some("running"))
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banners_and_cors_on_every_answer() {
    let origin = "http://localhost:3000";
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.cors_origins = vec![origin.into()];
        cfg.http.max_body_bytes = 1024;
    })
    .await;
    let (code, root) = get(&t, "/").await;
    assert_eq!(code, 200);
    let message = root["message"].as_str().unwrap();
    assert!(
        message.contains("TonyPi") && message.contains("fleetsink"),
        "{root}"
    );
    assert_eq!(
        (root["api_version"].as_str(), root["health"].as_str()),
        (Some("v1"), Some("/api/v1/health"))
    );
    let (code, api) = get(&t, "/api").await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            &api["current_version"],
            &api["supported_versions"],
            &api["base_url"]
        ),
        (&json!("v1"), &json!(["v1"]), &json!("/api/v1"))
    );
    assert!(api["server"].as_str().unwrap().starts_with("fleetsink"));

    // A browser on the UI's origin sees each status, with its {detail}.
    let client = reqwest::Client::new();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut req = client
            .request(method, format!("http://{}{path}", t.http))
            .header("Origin", origin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let cases = [
        (Method::GET, "/api/v1/reports", None, 404),
        (Method::GET, "/api/v1/no/such/route", None, 404),
        (
            Method::DELETE,
            "/api/v1/management/system/status",
            None,
            405,
        ),
        (
            Method::POST,
            "/api/v1/management/command",
            Some(json!({"command": "x".repeat(4096), "robot_id": "tonypi_x"})),
            413,
        ),
        (
            Method::GET,
            "/api/v1/pi/perf/tonypi_x?time_range=nope",
            None,
            400,
        ),
        (Method::GET, "/api/v1/management/system/status", None, 200),
        (Method::GET, "/", None, 200),
    ];
    for (method, path, body, want) in cases {
        let resp = call(method.clone(), path, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some(origin),
            "{method} {path}: no CORS header"
        );
        if want != 200 {
            let body: Value = resp.json().await.unwrap();
            assert!(body["detail"].is_string(), "{method} {path}: {body}");
        }
    }
    t.stop().await;
}
