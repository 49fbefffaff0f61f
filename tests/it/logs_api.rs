//! The TonyPi `logs` router on rows the pipeline wrote from MQTT (robots' log topics,
//! lifecycle rows, command answers): TonyPi's fields, filters combined, search, time
//! ranges, create, stats, command and error views, clearing, and exports streamed with
//! their row cap; bad input is a 400 `{"detail"}`.

use chrono::{Duration, Utc};
use fleetsink::config::MqttMode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const LOG_FIELDS: [&str; 7] = [
    "id",
    "level",
    "category",
    "message",
    "robot_id",
    "details",
    "timestamp",
];

fn messages(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_routes_answer_as_the_tonypi_backend() {
    // Retention longer than the oldest row, so no maintenance round drops its day.
    let mut t = spawn_app(MqttMode::Embedded, |cfg| cfg.retention.logs_days = 90).await;
    let now = Utc::now();
    // A day partition wholly older than 30 days, so clearing can empty it at once.
    let old_day = (now - Duration::days(40)).date_naive();
    {
        let mut conn = t.pool.acquire().await.unwrap();
        fleetsink::db::maintenance::days::ensure_day(&mut conn, "logs", old_day)
            .await
            .unwrap();
    }
    let mut c = t.robot("tonypi_gateway").await;
    for robot in ["tonypi_l1", "tonypi_l2"] {
        c.publish_acked(
            &format!("tonypi/status/{robot}"),
            json!({"status": "online", "timestamp": (now - Duration::minutes(30)).to_rfc3339()})
                .to_string(),
        )
        .await;
    }
    // (robot, level, source, message, age)
    let lines = [
        (
            "tonypi_l1",
            "info",
            "main",
            "Robot client started",
            Duration::minutes(20),
        ),
        (
            "tonypi_l1",
            "warning",
            "battery",
            "Battery low: 18%",
            Duration::minutes(15),
        ),
        (
            "tonypi_l1",
            "error",
            "main",
            "Servo 3 timeout",
            Duration::minutes(10),
        ),
        (
            "tonypi_l1",
            "CRITICAL",
            "main",
            "Servo 3 overheated",
            Duration::minutes(9),
        ),
        (
            "tonypi_l2",
            "error",
            "main",
            "Camera timeout, retrying",
            Duration::minutes(8),
        ),
        (
            "tonypi_l2",
            "info",
            "telemetry",
            "100% of items done_ok",
            Duration::minutes(7),
        ),
        (
            "tonypi_l1",
            "info",
            "main",
            "Three hours ago",
            Duration::hours(3),
        ),
        (
            "tonypi_l1",
            "error",
            "main",
            "Two days ago timeout",
            Duration::days(2),
        ),
        (
            "tonypi_l1",
            "info",
            "main",
            "Forty days ago",
            Duration::days(40),
        ),
        (
            "tonypi_l2",
            "info",
            "main",
            "Thirty-five days ago",
            Duration::days(35),
        ),
    ];
    for (robot, level, source, message, age) in lines {
        c.publish_acked(
            &format!("tonypi/logs/{robot}"),
            json!({"level": level, "message": message, "source": source, "cycle": 3,
                   "timestamp": (now - age).to_rfc3339()})
            .to_string(),
        )
        .await;
    }
    c.publish_acked(
        "tonypi/commands/response",
        json!({"robot_id": "tonypi_l1", "type": "move", "success": true,
               "message": "move succeeded", "timestamp": (now - Duration::minutes(5)).to_rfc3339()})
        .to_string(),
    )
    .await;
    c.publish_acked(
        "tonypi/commands/response",
        json!({"robot_id": "tonypi_l2", "type": "head", "success": false,
               "message": "head failed", "timestamp": (now - Duration::minutes(4)).to_rfc3339()})
        .to_string(),
    )
    .await;
    // 2 first-seen rows, 10 log lines, 2 command answers.
    assert_eq!(t.wait_count("SELECT count(*) FROM logs", 14).await, 14);

    // The list: TonyPi's fields, newest first, the last 24 h by default.
    let (code, all) = t.send(Method::GET, "/api/v1/logs", None).await;
    assert_eq!(code, 200);
    let all_msgs = messages(&all);
    assert_eq!(
        all_msgs,
        [
            "head failed",
            "move succeeded",
            "100% of items done_ok",
            "Camera timeout, retrying",
            "Servo 3 overheated",
            "Servo 3 timeout",
            "Battery low: 18%",
            "Robot client started",
            "robot first seen (status online)",
            "robot first seen (status online)",
            "Three hours ago",
        ]
    );
    let first = &all[0];
    for f in LOG_FIELDS {
        assert!(first.get(f).is_some(), "missing {f}: {first}");
    }
    assert_eq!(first["level"], "ERROR");
    assert_eq!(first["category"], "command");
    assert_eq!(first["robot_id"], "tonypi_l2");
    assert!(first["id"].is_i64());
    assert!(
        chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap()).is_ok(),
        "{first}"
    );
    let battery = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["message"] == "Battery low: 18%")
        .unwrap();
    assert_eq!(battery["category"], "robot_battery");
    assert_eq!(battery["level"], "WARNING");
    assert_eq!(battery["details"], json!({"cycle": 3}));
    let lifecycle = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["category"] == "robot")
        .unwrap();
    assert!(lifecycle["details"].is_object());

    // Filters, alone and combined; level upper-cased, category lower-cased, search
    // case-insensitive and literal.
    for (query, want) in [
        (
            "level=error",
            vec!["head failed", "Camera timeout, retrying", "Servo 3 timeout"],
        ),
        ("category=ROBOT_BATTERY", vec!["Battery low: 18%"]),
        (
            "search=TIMEOUT",
            vec!["Camera timeout, retrying", "Servo 3 timeout"],
        ),
        (
            "level=ERROR&search=timeout&robot_id=tonypi_l1",
            vec!["Servo 3 timeout"],
        ),
        (
            "level=error&category=robot_main&robot_id=tonypi_l2",
            vec!["Camera timeout, retrying"],
        ),
        ("search=100%25", vec!["100% of items done_ok"]),
        ("search=s_d", vec![]),
        ("search=done_ok", vec!["100% of items done_ok"]),
        ("search=servo%203&limit=1", vec!["Servo 3 overheated"]),
        ("search=servo%203&limit=1&offset=1", vec!["Servo 3 timeout"]),
        (
            "time_range=1h&category=robot_main&robot_id=tonypi_l1",
            vec![
                "Servo 3 overheated",
                "Servo 3 timeout",
                "Robot client started",
            ],
        ),
        ("time_range=6h&search=hours", vec!["Three hours ago"]),
        (
            "search=timeout&time_range=7d",
            vec![
                "Camera timeout, retrying",
                "Servo 3 timeout",
                "Two days ago timeout",
            ],
        ),
        (
            "time_range=30d&search=days%20ago",
            vec!["Two days ago timeout"],
        ),
        (
            "level=&category=&robot_id=&search=&limit=3",
            vec!["head failed", "move succeeded", "100% of items done_ok"],
        ),
        ("robot_id=nobody", vec![]),
    ] {
        let (code, got) = t
            .send(Method::GET, &format!("/api/v1/logs?{query}"), None)
            .await;
        assert_eq!(code, 200, "{query}: {got}");
        assert_eq!(messages(&got), want, "{query}");
    }

    // Create: TonyPi's LogCreate, answered as stored; source `api`.
    let (code, created) = t
        .send(
            Method::POST,
            "/api/v1/logs",
            Some(
                json!({"level": "warning", "category": "System", "message": "Maintenance window",
                        "robot_id": "tonypi_l1", "details": {"by": "ops"}}),
            ),
        )
        .await;
    assert_eq!(code, 200, "{created}");
    assert_eq!(created["level"], "WARNING");
    assert_eq!(created["category"], "system");
    assert_eq!(created["message"], "Maintenance window");
    assert_eq!(created["robot_id"], "tonypi_l1");
    assert_eq!(created["details"], json!({"by": "ops"}));
    let (_, listed) = t
        .send(Method::GET, "/api/v1/logs?category=system", None)
        .await;
    assert_eq!(listed, json!([created]));
    assert_eq!(
        t.count("SELECT count(*) FROM logs WHERE source = 'api' AND category = 'system'")
            .await,
        1
    );
    let (code, bare) = t
        .send(
            Method::POST,
            "/api/v1/logs",
            Some(json!({"level": "INFO", "category": "api", "message": "no robot"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(bare["robot_id"], Value::Null);
    assert_eq!(bare["details"], Value::Null);

    // Categories and levels.
    let (_, cats) = t.send(Method::GET, "/api/v1/logs/categories", None).await;
    let cats: Vec<&str> = cats
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "mqtt",
        "api",
        "system",
        "command",
        "robot",
        "alert",
        "emergency",
        "scan",
    ] {
        assert!(cats.contains(&c), "{c}");
    }
    let (_, levels) = t.send(Method::GET, "/api/v1/logs/levels", None).await;
    assert_eq!(
        levels,
        json!({"INFO": {"color": "blue", "priority": 1}, "WARNING": {"color": "yellow", "priority": 2},
               "ERROR": {"color": "red", "priority": 3}, "CRITICAL": {"color": "purple", "priority": 4}})
    );

    // Stats of the last 24 h: 11 + the two created.
    let (code, stats) = t.send(Method::GET, "/api/v1/logs/stats", None).await;
    assert_eq!(code, 200);
    assert_eq!(stats["total"], 13);
    assert_eq!(stats["info"], 7);
    assert_eq!(stats["warning"], 2);
    assert_eq!(stats["error"], 3);
    assert_eq!(stats["critical"], 1);
    let by = &stats["by_category"];
    assert_eq!(by["command"], 2);
    assert_eq!(by["robot"], 2);
    assert_eq!(by["robot_main"], 5);
    assert_eq!(by["system"], 1);
    assert_eq!(by["mqtt"], 0);
    assert_eq!(by["movement"], 0);
    let (_, one) = t
        .send(
            Method::GET,
            "/api/v1/logs/stats?robot_id=tonypi_l2&time_range=1h",
            None,
        )
        .await;
    assert_eq!(one["total"], 4);
    assert_eq!(one["error"], 2);

    // Commands and errors.
    let (code, cmds) = t.send(Method::GET, "/api/v1/logs/commands", None).await;
    assert_eq!(code, 200);
    assert_eq!(messages(&cmds), ["head failed", "move succeeded"]);
    assert_eq!(cmds[1]["details"]["type"], "move");
    let (_, cmds) = t
        .send(
            Method::GET,
            "/api/v1/logs/commands?robot_id=tonypi_l1&limit=50&time_range=24h",
            None,
        )
        .await;
    assert_eq!(messages(&cmds), ["move succeeded"]);
    let (_, errs) = t
        .send(Method::GET, "/api/v1/logs/errors?limit=50", None)
        .await;
    assert_eq!(
        messages(&errs),
        [
            "head failed",
            "Camera timeout, retrying",
            "Servo 3 overheated",
            "Servo 3 timeout"
        ]
    );
    let (_, errs) = t
        .send(
            Method::GET,
            "/api/v1/logs/errors?time_range=7d&robot_id=tonypi_l1",
            None,
        )
        .await;
    assert_eq!(
        messages(&errs),
        [
            "Servo 3 overheated",
            "Servo 3 timeout",
            "Two days ago timeout"
        ]
    );

    // Exports: TonyPi's headers, the list's rows.
    let client = reqwest::Client::new();
    let resp = client
        .get(format!(
            "http://{}/api/v1/logs/export/json?level=error&time_range=7d",
            t.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let disposition = resp.headers()["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=system_logs_")
            && disposition.ends_with(".json"),
        "{disposition}"
    );
    let exported: Value = resp.json().await.unwrap();
    let (_, listed) = t
        .send(Method::GET, "/api/v1/logs?level=error&time_range=7d", None)
        .await;
    assert_eq!(exported, listed);
    let resp = client
        .get(format!(
            "http://{}/api/v1/logs/export/csv?robot_id=tonypi_l1&category=robot_battery",
            t.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with(".csv")
    );
    let csv = resp.text().await.unwrap();
    let rows: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        rows[0],
        "ID,Timestamp,Level,Category,Robot ID,Message,Details"
    );
    assert_eq!(
        rows[1],
        format!(
            "{},{},WARNING,robot_battery,tonypi_l1,Battery low: 18%,\"{{\"\"cycle\"\":3}}\"",
            battery["id"],
            battery["timestamp"].as_str().unwrap()
        )
    );
    assert_eq!(rows[2], "");
    let (code, csv) = t
        .get("/api/v1/logs/export/csv?robot_id=tonypi_l1&level=error&search=x&category=command")
        .await;
    assert_eq!(code, 404, "{csv}");
    assert_eq!(
        serde_json::from_str::<Value>(&csv).unwrap(),
        json!({"detail": "No logs found"})
    );
    let (code, empty) = t
        .send(
            Method::GET,
            "/api/v1/logs/export/json?robot_id=nobody",
            None,
        )
        .await;
    assert_eq!((code, empty), (200, json!([])));
    let (code, quoted) = t
        .get("/api/v1/logs/export/csv?robot_id=tonypi_l2&level=error&category=robot_main")
        .await;
    assert_eq!(code, 200);
    assert!(
        quoted.contains(",\"Camera timeout, retrying\","),
        "{quoted}"
    );

    // Bad input: 400 {detail}.
    for bad in [
        "/api/v1/logs?time_range=2h",
        "/api/v1/logs?time_range=%C3%A9",
        "/api/v1/logs?limit=0",
        "/api/v1/logs?limit=1001",
        "/api/v1/logs?limit=many",
        "/api/v1/logs?offset=-1",
        "/api/v1/logs?search=a%00b",
        "/api/v1/logs?level=%00",
        "/api/v1/logs?robot_id=bad%20id",
        "/api/v1/logs/commands?limit=201",
        "/api/v1/logs/errors?limit=0",
        "/api/v1/logs/errors?time_range=1y",
        "/api/v1/logs/stats?time_range=48h",
        "/api/v1/logs/export/json?time_range=90d",
        "/api/v1/logs/export/csv?category=a%00",
    ] {
        let (code, err) = t.send(Method::GET, bad, None).await;
        assert_eq!(code, 400, "{bad}: {err}");
        assert!(err["detail"].is_string(), "{bad}: {err}");
    }
    for body in [
        json!({"level": "INFO", "category": "api", "message": "a\u{0}b"}),
        json!({"level": "LOUD", "category": "api", "message": "m"}),
        json!({"level": "INFO", "category": "", "message": "m"}),
        json!({"level": "INFO", "category": "api", "message": "m", "details": [1]}),
        json!({"level": "INFO", "category": "api", "message": "m", "details": {"k": "\u{0}"}}),
        json!({"level": "INFO", "category": "api", "message": "m", "robot_id": "no/slash"}),
    ] {
        let (code, err) = t
            .send(Method::POST, "/api/v1/logs", Some(body.clone()))
            .await;
        assert_eq!(code, 400, "{body}: {err}");
        assert!(err["detail"].is_string(), "{body}: {err}");
    }
    // A field missing: 422, as TonyPi (FastAPI) answers it.
    let (code, err) = t
        .send(
            Method::POST,
            "/api/v1/logs",
            Some(json!({"level": "INFO", "message": "m"})),
        )
        .await;
    assert_eq!(code, 422, "{err}");
    assert!(err["detail"].is_string(), "{err}");
    for days in ["0", "366", "x"] {
        let (code, err) = t
            .send(
                Method::DELETE,
                &format!("/api/v1/logs/clear?days={days}"),
                None,
            )
            .await;
        assert_eq!(code, 400, "{days}: {err}");
        assert!(err["detail"].is_string());
    }

    // Clear: the 40-day-old row's partition is emptied, the 35-day-old row (in the
    // default partition) deleted; younger rows stay.
    let before = t.count("SELECT count(*) FROM logs").await;
    let (code, cleared) = t
        .send(Method::DELETE, "/api/v1/logs/clear?days=30", None)
        .await;
    assert_eq!(code, 200, "{cleared}");
    assert_eq!(
        cleared,
        json!({"message": "Deleted 2 logs older than 30 days"})
    );
    // (and the clearing's own audit row is added)
    assert_eq!(t.count("SELECT count(*) FROM logs").await, before - 2 + 1);
    assert_eq!(
        t.count("SELECT count(*) FROM audit WHERE action = 'logs.clear'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM logs WHERE message LIKE '%days ago' AND message <> 'Two days ago timeout'")
            .await,
        0
    );
    let (_, again) = t.send(Method::DELETE, "/api/v1/logs/clear", None).await;
    assert_eq!(
        again,
        json!({"message": "Deleted 0 logs older than 30 days"})
    );
    let (_, cleared) = t
        .send(Method::DELETE, "/api/v1/logs/clear?days=1", None)
        .await;
    assert_eq!(
        cleared,
        json!({"message": "Deleted 1 logs older than 1 days"})
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_exports_stream_many_rows_and_say_when_cut() {
    const ROWS: usize = 20_000;
    const PER_MESSAGE: usize = 500;
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.logs_export_max_rows = ROWS as u64;
    })
    .await;
    let mut c = t.robot("bulk_gw").await;
    let base = Utc::now() - Duration::hours(1);
    for m in 0..ROWS / PER_MESSAGE {
        let items: Vec<Value> = (0..PER_MESSAGE)
            .map(|i| {
                let n = m * PER_MESSAGE + i;
                json!({"level": if n.is_multiple_of(10) { "ERROR" } else { "INFO" },
                       "message": format!("bulk line {n}"), "source": "bulk",
                       "timestamp": (base + Duration::milliseconds(n as i64)).to_rfc3339()})
            })
            .collect();
        c.publish_acked("devices/bulk_1/logs", Value::Array(items).to_string())
            .await;
    }
    assert_eq!(
        t.wait_count(
            "SELECT count(*) FROM logs WHERE category = 'robot_bulk'",
            ROWS as i64
        )
        .await,
        ROWS as i64
    );
    // And the robot's lifecycle row(s): more rows than the cap in all.
    assert!(t.count("SELECT count(*) FROM logs").await > ROWS as i64);
    let client = reqwest::Client::new();
    let url = |q: &str| format!("http://{}/api/v1/logs/export/{q}", t.http);

    // Exactly the cap: every row, newest first, no marker; streamed (chunked, no
    // Content-Length).
    let resp = client
        .get(url("json?category=robot_bulk"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let all: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(all.len(), ROWS);
    assert_eq!(all[0]["message"], format!("bulk line {}", ROWS - 1));
    assert_eq!(all[ROWS - 1]["message"], "bulk line 0");
    assert!(all.iter().all(|l| l.get("truncated").is_none()));

    // One row more than the cap: the cap's rows, then the marker.
    let all: Vec<Value> = client
        .get(url("json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), ROWS + 1);
    assert_eq!(all[ROWS]["truncated"], true);
    assert_eq!(all[ROWS]["max_rows"], ROWS);
    assert!(
        all[ROWS]["message"]
            .as_str()
            .unwrap()
            .contains("http.logs_export_max_rows")
    );
    let csv = client
        .get(url("csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 1 + ROWS + 1);
    assert!(lines[ROWS + 1].starts_with("TRUNCATED,,,,,export truncated at 20000 rows"));

    // Filters apply to the export as to the list.
    let csv = client
        .get(url("csv?level=error&robot_id=bulk_1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 1 + ROWS / 10);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",ERROR,robot_bulk,bulk_1,bulk line "))
    );
    t.stop().await;
}
