//! The API's input rules (README, "API input rules"): a NUL character anywhere in a
//! path id, query parameter or JSON body is refused with 400 naming the field, before
//! PostgreSQL sees it; every extractor error is `{"detail"}` with its documented
//! status; and the OpenAPI document lists, per operation, the statuses the role
//! layers and extractors can answer.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use fleetsink::config::MqttMode;

async fn send_raw(
    t: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{}{path}", t.http))
        .body(body.to_string());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_nul_or_malformed_input_when_sent_to_the_api_then_a_documented_4xx_names_the_field() {
    // GIVEN fleetsink with a known robot
    let t = spawn_app(MqttMode::Embedded, |cfg| cfg.http.max_body_bytes = 4096).await;
    let (code, body) = t
        .send(
            Method::POST,
            "/api/v1/robots-db/robots",
            Some(json!({"robot_id": "tonypi_in"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // WHEN NUL arrives in a path id, a query parameter, a body string or a nested key
    let nul_cases: [(Method, &str, Option<Value>, &str); 7] = [
        (
            Method::PUT,
            "/api/v1/robots-db/robots/tonypi_in",
            Some(json!({"name": "a\u{0}b"})),
            "body field name",
        ),
        (
            Method::PUT,
            "/api/v1/robots-db/robots/tonypi_in",
            Some(json!({"settings": {"tags": ["ok", {"k\u{0}": 1}]}})),
            "body field settings.tags[1].k",
        ),
        (
            Method::GET,
            "/api/v1/robots-db/robots/tonypi%00in",
            None,
            "path parameter \"robot_id\"",
        ),
        (
            Method::GET,
            "/api/v1/ingest-errors?reason=a%00b",
            None,
            "query parameter \"reason\"",
        ),
        (
            Method::POST,
            "/api/v1/management/command",
            Some(json!({"command": "mo\u{0}ve", "robot_id": "tonypi_in"})),
            "body field command",
        ),
        (
            Method::GET,
            "/api/v1/logs?search=x%00",
            None,
            "query parameter \"search\"",
        ),
        (
            // A route that reads its (optional) body raw: found by schemathesis, whose
            // NUL reached PostgreSQL's jsonb and answered 500
            Method::POST,
            "/api/v1/management/robots/tonypi_in/emergency-stop",
            Some(json!({"reason": "sto\u{0}p", "broadcast": true})),
            "body field reason",
        ),
    ];
    for (method, path, body, field) in nul_cases {
        let (code, answer) = t.send(method.clone(), path, body).await;
        // THEN 400, naming the field, and nothing reached the database
        assert_eq!(code, 400, "{method} {path}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(field) && detail.contains("NUL"),
            "{method} {path}: {detail}"
        );
    }
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM robots WHERE robot_id = 'tonypi_in'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(name.as_deref(), Some("tonypi_in"));

    // WHEN bodies are malformed in each way THEN each has its one documented status
    let path = "/api/v1/robots-db/robots/tonypi_in";
    let json_ct = Some("application/json");
    let cases: [(Option<&str>, String, u16); 5] = [
        (None, r#"{"name": "x"}"#.into(), 415),
        (Some("text/plain"), r#"{"name": "x"}"#.into(), 415),
        (json_ct, r#"{"name": "#.into(), 400),
        (json_ct, r#"{"name": 5}"#.into(), 422),
        (
            json_ct,
            format!(r#"{{"name": "{}"}}"#, "x".repeat(5000)),
            413,
        ),
    ];
    for (ct, body, want) in cases {
        let (code, answer) = send_raw(&t, Method::PUT, path, ct, &body).await;
        assert_eq!(
            code,
            want,
            "{ct:?} {}: {answer}",
            &body[..body.len().min(40)]
        );
        assert!(answer["detail"].is_string(), "{want}: {answer}");
    }
    let (code, answer) = send_raw(&t, Method::PUT, path, json_ct, r#"{"name": 5}"#).await;
    assert_eq!(code, 422);
    assert!(
        answer["detail"].as_str().unwrap().contains("name"),
        "{answer}"
    );
    // A query parameter of the wrong type and a path id that is not a number: 400.
    for path in ["/api/v1/logs?limit=many", "/api/v1/alerts/abc/acknowledge"] {
        let method = if path.contains("acknowledge") {
            Method::POST
        } else {
            Method::GET
        };
        let (code, answer) = t.send(method, path, None).await;
        assert_eq!(code, 400, "{path}: {answer}");
        assert!(answer["detail"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_openapi_document_then_each_operation_lists_the_errors_its_group_and_extractors_answer()
 {
    let t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let (code, doc) = t.send(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(code, 200);
    let statuses = |method: &str, path: &str| -> Vec<String> {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not described"));
        for (status, r) in responses {
            if status.starts_with('4') && !path.starts_with("/mqtt/") {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Detail",
                    "{method} {path} {status}"
                );
            }
        }
        responses.keys().cloned().collect()
    };
    let has = |method: &str, path: &str, want: &[&str], not: &[&str]| {
        let got = statuses(method, path);
        for w in want {
            assert!(
                got.iter().any(|g| g == w),
                "{method} {path} lacks {w}: {got:?}"
            );
        }
        for n in not {
            assert!(
                !got.iter().any(|g| g == n),
                "{method} {path} lists {n}: {got:?}"
            );
        }
    };
    // A viewer route: 401 (never 403: every credential is at least a viewer), 503.
    has("get", "/api/v1/robots-db/stats", &["401", "503"], &["403"]);
    // With parameters: 400.
    has("get", "/api/v1/ingest-errors", &["400", "401", "503"], &[]);
    // An operator route with a body: 401, 403, 400, 413, 415, 422.
    has(
        "post",
        "/api/v1/management/command",
        &["400", "401", "403", "413", "415", "422", "503"],
        &[],
    );
    // An admin route with a path id and a body.
    has(
        "put",
        "/api/v1/robots-db/robots/{robot_id}",
        &["400", "401", "403", "404", "413", "415", "422", "503"],
        &[],
    );
    // Answered from memory: no 503.
    has("get", "/api/v1/logs/levels", &["401"], &["503"]);
    // Sign-in: no credential needed, throttled.
    has(
        "post",
        "/api/v1/auth/login",
        &["400", "401", "415", "422", "429"],
        &[],
    );
    assert_eq!(
        doc["paths"]["/api/v1/auth/login"]["post"]["security"],
        json!([{}])
    );
    assert_eq!(
        doc["paths"]["/api/v1/openapi.json"]["get"]["security"],
        json!([{}])
    );
    // go-auth's routes keep their own answer shape, and list 400 and 503.
    for path in ["/mqtt/user", "/mqtt/superuser", "/mqtt/acl"] {
        has("post", path, &["200", "400", "403", "503"], &["401", "415"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_extreme_numbers_in_stored_json_when_the_logs_are_read_then_they_come_back_exactly() {
    // GIVEN a robot edited with the largest finite numbers JSON can carry: the edit's
    // audit row keeps them in a jsonb `details`, which PostgreSQL writes back as a
    // 309-digit integer (found by schemathesis: the logs read answered 500)
    let t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let (code, body) = t
        .send(
            Method::POST,
            "/api/v1/robots-db/robots",
            Some(json!({"robot_id": "tonypi_num"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = t
        .send(
            Method::PUT,
            "/api/v1/robots-db/robots/tonypi_num",
            Some(json!({"battery_threshold_critical": f64::MIN,
                        "temp_threshold_critical": f64::MAX,
                        "temp_threshold_warning": 5e-324})),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // WHEN the logs (which hold the audit row) are listed and exported
    let (code, logs) = t
        .send(Method::GET, "/api/v1/logs?category=audit", None)
        .await;
    let (csv_code, _) = t
        .send(
            Method::GET,
            "/api/v1/logs/export/csv?robot_id=tonypi_num",
            None,
        )
        .await;

    // THEN both answer 200 and the numbers are the ones sent, bit for bit
    assert_eq!(code, 200, "{logs}");
    assert_eq!(csv_code, 200);
    let edit = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["details"]["action"] == "robot.update")
        .unwrap_or_else(|| panic!("no robot.update audit row in {logs}"));
    let d = &edit["details"]["details"];
    assert_eq!(d["battery_threshold_critical"].as_f64(), Some(f64::MIN));
    assert_eq!(d["temp_threshold_critical"].as_f64(), Some(f64::MAX));
    assert_eq!(d["temp_threshold_warning"].as_f64(), Some(5e-324));
}
