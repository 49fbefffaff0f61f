//! schemathesis (PyPI) against `/api/v1/openapi.json`: every operation of the document,
//! fed generated input (valid and invalid, NUL characters, wrong types, missing
//! Content-Type) by an admin, never answers a 5xx, nor a status, content type or body
//! the document does not list. fleetsink runs on a fresh database with a little real
//! traffic (robots over MQTT, an alert, a command), so the routes have rows to find.
//!
//! `scripts/test.sh` installs schemathesis into a cached virtualenv and names it in
//! `FLEETSINK_TEST_SCHEMATHESIS`; `FLEETSINK_SCHEMATHESIS_EXAMPLES` raises the number of
//! generated cases per operation for a longer run by hand, and
//! `FLEETSINK_SCHEMATHESIS_SEED` replays a run (schemathesis prints its seed).

use std::time::Duration;

use fleetsink::config::MqttMode;
use serde_json::json;

use crate::helpers::*;

const TOKEN: &str = "schemathesis-admin-token";

/// Cases per operation and phase in the suite: the whole test stays well under two
/// minutes on two busy cores.
const EXAMPLES: &str = "8";

fn schemathesis() -> String {
    std::env::var("FLEETSINK_TEST_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_fleet_with_traffic_when_schemathesis_fuzzes_the_api_then_every_answer_is_documented_and_none_is_a_5xx()
 {
    // GIVEN fleetsink with an admin token and sign-in, robots that reported, an alert and a command
    let t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.admin_token = Some(TOKEN.into());
        // Sign-in on, so the login route is fuzzed rather than answering "not configured".
        cfg.console.jwt_secret = Some("schemathesis-session-secret-0123456789".into());
    })
    .await;
    let mut robot = t.robot("tonypi_fuzz").await;
    let sent = robot.publish_fixtures().await;
    robot
        .publish_acked(
            "tonypi/status/tonypi_fuzz",
            format!(
                r#"{{"status":"online","timestamp":"{}"}}"#,
                chrono::Utc::now().to_rfc3339()
            ),
        )
        .await;
    assert!(sent > 0);
    t.wait_count(
        "SELECT count(*) FROM robots WHERE robot_id = 'tonypi_fuzz'",
        1,
    )
    .await;
    let (code, body) = t
        .post(
            "/api/v1/alerts",
            json!({"robot_id": "tonypi_fuzz", "alert_type": "cpu", "severity": "warning",
                   "title": "CPU hot", "message": "seeded for schemathesis"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "parameters": {"direction": "forward"}, "robot_id": "tonypi_fuzz"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // WHEN schemathesis runs every operation of the document with the admin token
    let examples =
        std::env::var("FLEETSINK_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let dir = tempfile::tempdir().unwrap();
    let program = schemathesis();
    let mut command = tokio::process::Command::new(&program);
    command.arg("run");
    if let Ok(seed) = std::env::var("FLEETSINK_SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    let run = command
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args([
            &format!("http://{}/api/v1/openapi.json", t.http),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--max-examples",
            &examples,
            // One at a time: the log exports answer 503 to a second concurrent export.
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .kill_on_drop(true)
        .output();
    // Ten minutes for the suite's run; a longer run by hand gets ten seconds per case.
    let limit = examples
        .parse::<u64>()
        .unwrap_or(0)
        .saturating_mul(10)
        .max(600);
    let out = tokio::time::timeout(Duration::from_secs(limit), run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish in {limit} s"))
        .unwrap_or_else(|e| {
            panic!(
                "cannot run schemathesis ({program}: {e}). Run the tests with ./scripts/test.sh, \
                 which installs it into ~/.cache/fleetsink-test/venv, or install it yourself \
                 (python3 -m venv ~/.cache/fleetsink-test/venv && \
                 ~/.cache/fleetsink-test/venv/bin/pip install schemathesis) and set \
                 FLEETSINK_TEST_SCHEMATHESIS to its bin/schemathesis"
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // THEN every check passed, on every operation of the document
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{report}",
        out.status
    );
    let generated = report
        .lines()
        .find_map(|l| l.trim().split_once(" generated")?.0.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(generated > 0, "schemathesis ran no test cases:\n{report}");
}
