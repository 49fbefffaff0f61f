//! The audit trail: every command, emergency stop, alert acknowledgement and resolution
//! and every robot, threshold and user change names who made it and from which
//! address — in `audit`, on the command's row, as a `logs` row TonyPi's Logs page
//! shows, and in the daemon's log — and `GET /api/v1/audit` shows it to admins.

use fleetsink::audit::Actor;
use fleetsink::auth::console;
use fleetsink::config::MqttMode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "test-console-secret-0123456789abcdef";
const MACHINE_TOKEN: &str = "machine-token-for-scripts";
const PASSWORD: &str = "correct horse battery";

/// fleetsink with sign-in and the admin token, a robot `tonypi_a1` registered (by the
/// admin token), and the console users `ada` (admin), `olga` (operator) and `vic`
/// (viewer) created by the CLI's path.
async fn app() -> TestApp {
    let t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.console.jwt_secret = Some(SECRET.into());
        cfg.http.admin_token = Some(MACHINE_TOKEN.into());
    })
    .await;
    let cli = Actor::cli();
    for (name, role) in [("ada", "admin"), ("olga", "operator"), ("vic", "viewer")] {
        let hash = console::hash_password(PASSWORD).unwrap();
        let email = format!("{name}@example.com");
        fleetsink::db::edits::console_users::create(&t.pool, &cli, name, &email, &hash, role)
            .await
            .unwrap();
    }
    let (code, body) = call(
        &t,
        Method::POST,
        "/api/v1/robots-db/robots",
        Some(json!({"robot_id": "tonypi_a1", "name": "Aisle one"})),
        Some(MACHINE_TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    t
}

async fn call(
    t: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    http_send(&reqwest::Client::new(), t.http, method, path, body, token).await
}

/// Signs `user` in (once the console users cache has them); returns the token.
async fn login(t: &TestApp, user: &str) -> String {
    let body = json!({"username": user, "password": PASSWORD});
    let token = std::sync::Mutex::new(None);
    wait_until(
        std::time::Duration::from_secs(10),
        &format!("{user} can sign in"),
        || async {
            let (code, resp) = call(
                t,
                Method::POST,
                "/api/v1/auth/login",
                Some(body.clone()),
                None,
            )
            .await;
            if code == 200 {
                *token.lock().unwrap() = resp["access_token"].as_str().map(str::to_string);
            }
            code == 200
        },
    )
    .await;
    token.into_inner().unwrap().unwrap()
}

/// `GET /api/v1/audit?query` with the admin token: the rows.
async fn audit(t: &TestApp, query: &str) -> Vec<Value> {
    let (code, body) = call(
        t,
        Method::GET,
        &format!("/api/v1/audit?{query}"),
        None,
        Some(MACHINE_TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_signed_in_operator_when_they_stop_a_robot_then_the_audit_trail_names_them_and_their_address()
 {
    // GIVEN a signed-in operator
    let t = app().await;
    let olga = login(&t, "olga").await;

    // WHEN they stop tonypi_a1 through the API
    let (code, sent) = call(
        &t,
        Method::POST,
        "/api/v1/management/robots/tonypi_a1/emergency-stop",
        Some(json!({"reason": "person in the aisle"})),
        Some(&olga),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let command_id = sent["command_id"].as_str().unwrap();

    // THEN the audit trail has one row: olga, a console user, from 127.0.0.1
    let rows = audit(&t, "action=emergency_stop").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["actor"], "olga");
    assert_eq!(row["actor_kind"], "user");
    assert_eq!(row["address"], "127.0.0.1");
    assert_eq!(row["target"], "tonypi_a1");
    assert_eq!(row["command_id"], command_id);
    assert_eq!(row["details"]["payload"]["reason"], "person in the aisle");
    // AND the command's row shows who sent it
    let (code, commands) = call(
        &t,
        Method::GET,
        "/api/v1/robots/tonypi_a1/commands",
        None,
        Some(&olga),
    )
    .await;
    assert_eq!(code, 200, "{commands}");
    let cmd = commands
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command_id"] == command_id)
        .unwrap();
    assert_eq!(cmd["requested_by"], "olga");
    assert_eq!(cmd["requested_from"], "127.0.0.1");
    // AND the robot's log (TonyPi's Logs page) has the audit line, and the CRITICAL
    // emergency line names olga too
    let (code, logs) = call(
        &t,
        Method::GET,
        "/api/v1/logs?category=audit&robot_id=tonypi_a1",
        None,
        Some(&olga),
    )
    .await;
    assert_eq!(code, 200, "{logs}");
    let messages: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"emergency stop sent to tonypi_a1 by olga from 127.0.0.1"),
        "{messages:?}"
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM logs WHERE category = 'emergency' AND level = 'CRITICAL' \
             AND message = 'emergency stop sent to tonypi_a1 by olga from 127.0.0.1'"
        )
        .await,
        1
    );

    // AND the robot registered with the admin token is the machine credential's doing
    let rows = audit(&t, "action=robot.create").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            &rows[0]["actor"],
            &rows[0]["actor_kind"],
            &rows[0]["target"]
        ),
        (&json!("admin-token"), &json!("token"), &json!("tonypi_a1"))
    );
    assert_eq!(rows[0]["address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_admin_when_they_change_thresholds_robots_users_and_alerts_then_each_change_is_recorded()
 {
    // GIVEN a signed-in admin and operator, and a manual alert
    let t = app().await;
    let ada = login(&t, "ada").await;
    let olga = login(&t, "olga").await;
    let (code, alert) = call(
        &t,
        Method::POST,
        "/api/v1/alerts",
        Some(
            json!({"robot_id": "tonypi_a1", "alert_type": "manual", "severity": "warning",
                    "title": "door open", "message": "the bay door is open"}),
        ),
        Some(&olga),
    )
    .await;
    assert_eq!(code, 200, "{alert}");
    let alert_id = alert["id"].as_i64().unwrap();

    // WHEN the admin sets and changes a threshold, renames the robot and promotes the
    // viewer, and the operator acknowledges and resolves the alert
    let (code, threshold) = call(
        &t,
        Method::POST,
        "/api/v1/alerts/thresholds",
        Some(json!({"metric_type": "cpu", "warning_threshold": 70.0, "critical_threshold": 90.0})),
        Some(&ada),
    )
    .await;
    assert_eq!(code, 200, "{threshold}");
    let threshold_id = threshold["id"].as_i64().unwrap();
    let steps = [
        (
            Method::PUT,
            format!("/api/v1/alerts/thresholds/{threshold_id}"),
            Some(json!({"warning_threshold": 75.0})),
            &ada,
        ),
        (
            Method::PUT,
            "/api/v1/robots-db/robots/tonypi_a1".to_string(),
            Some(json!({"name": "Aisle two"})),
            &ada,
        ),
        (
            Method::POST,
            format!("/api/v1/alerts/{alert_id}/acknowledge?acknowledged_by=user"),
            None,
            &olga,
        ),
        (
            Method::POST,
            format!("/api/v1/alerts/{alert_id}/resolve"),
            None,
            &olga,
        ),
    ];
    for (method, path, body, token) in steps {
        let (code, resp) = call(&t, method, &path, body, Some(token)).await;
        assert_eq!(code, 200, "{path}: {resp}");
    }
    let (_, users) = call(&t, Method::GET, "/api/v1/users", None, Some(&ada)).await;
    let vic = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "vic")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, resp) = call(
        &t,
        Method::PUT,
        &format!("/api/v1/users/{vic}"),
        Some(json!({"role": "operator", "password": "a new passphrase"})),
        Some(&ada),
    )
    .await;
    assert_eq!(code, 200, "{resp}");

    // THEN each change has its row, by whom and on what
    let threshold_target = threshold_id.to_string();
    let alert_target = alert_id.to_string();
    for (action, actor, target) in [
        ("threshold.set", "ada", threshold_target.as_str()),
        ("threshold.update", "ada", &threshold_target),
        ("robot.update", "ada", "tonypi_a1"),
        ("console_user.update", "ada", "vic"),
        ("alert.create", "olga", &alert_target),
        ("alert.acknowledge", "olga", &alert_target),
        ("alert.resolve", "olga", &alert_target),
    ] {
        let rows = audit(&t, &format!("action={action}")).await;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert_eq!(
            (rows[0]["actor"].as_str(), rows[0]["target"].as_str()),
            (Some(actor), Some(target)),
            "{action}: {rows:?}"
        );
        assert_eq!(rows[0]["address"], "127.0.0.1", "{action}");
    }
    // AND the details say what changed, without the password
    let update = &audit(&t, "action=threshold.update").await[0];
    assert_eq!(update["details"]["warning_threshold"], 75.0);
    let user = &audit(&t, "action=console_user.update").await[0];
    assert_eq!(user["details"]["role"], "operator");
    assert_eq!(user["details"]["password_changed"], true);
    assert!(!user.to_string().contains("a new passphrase"));
    // AND the acknowledgement keeps the console user's name on the alert (not the UI's
    // placeholder), as before
    let (_, alerts) = call(&t, Method::GET, "/api/v1/alerts", None, Some(&olga)).await;
    assert_eq!(alerts[0]["acknowledged_by"], "olga", "{alerts}");
    // AND the users made with the CLI's path are the CLI's doing
    let created = audit(&t, "action=console_user.create").await;
    assert_eq!(created.len(), 3);
    assert!(
        created
            .iter()
            .all(|r| r["actor_kind"] == "cli" && r["address"].is_null()),
        "{created:?}"
    );
    // AND every row has its log line, in the robot's log where there is a robot
    assert_eq!(
        t.count("SELECT count(*) FROM logs WHERE category = 'audit'")
            .await,
        t.count("SELECT count(*) FROM audit").await
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM logs WHERE category = 'audit' AND robot_id = 'tonypi_a1' \
             AND message = 'Robot updated: tonypi_a1 by ada from 127.0.0.1'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_viewer_when_their_writes_are_refused_then_no_audit_row_is_written() {
    // GIVEN a signed-in viewer
    let t = app().await;
    let vic = login(&t, "vic").await;
    let before = t.count("SELECT count(*) FROM audit").await;

    // WHEN they try to stop a robot, change a threshold and read the audit trail
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/management/robots/tonypi_a1/emergency-stop",
            None,
        ),
        (
            Method::POST,
            "/api/v1/alerts/thresholds",
            Some(
                json!({"metric_type": "cpu", "warning_threshold": 1.0, "critical_threshold": 2.0}),
            ),
        ),
        (Method::GET, "/api/v1/audit", None),
    ] {
        let (code, resp) = call(&t, method, path, body, Some(&vic)).await;
        // THEN each is refused
        assert_eq!(code, 403, "{path}: {resp}");
    }
    // AND nothing was recorded, nor sent
    assert_eq!(t.count("SELECT count(*) FROM audit").await, before);
    assert_eq!(t.count("SELECT count(*) FROM commands").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_edit_whose_audit_row_cannot_be_written_when_it_is_made_then_the_edit_does_not_commit()
 {
    // GIVEN the audit table refuses rows
    let t = app().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&t.pool)
    .await
    .unwrap();

    // WHEN the admin token renames the robot and stops it
    let (code, _) = call(
        &t,
        Method::PUT,
        "/api/v1/robots-db/robots/tonypi_a1",
        Some(json!({"name": "renamed"})),
        Some(MACHINE_TOKEN),
    )
    .await;
    assert_eq!(code, 500);
    let (code, _) = call(
        &t,
        Method::POST,
        "/api/v1/management/robots/tonypi_a1/emergency-stop",
        None,
        Some(MACHINE_TOKEN),
    )
    .await;
    assert_eq!(code, 500);

    // THEN neither happened: the name is unchanged and no command was recorded
    assert_eq!(
        t.count("SELECT count(*) FROM robots WHERE robot_id = 'tonypi_a1' AND name = 'Aisle one'")
            .await,
        1
    );
    assert_eq!(t.count("SELECT count(*) FROM commands").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_recorded_changes_when_the_audit_api_is_filtered_then_it_answers_the_matching_rows_newest_first()
 {
    // GIVEN the robot created (admin token), resumed by olga, then renamed by ada
    let t = app().await;
    let olga = login(&t, "olga").await;
    let ada = login(&t, "ada").await;
    let (code, _) = call(
        &t,
        Method::POST,
        "/api/v1/management/robots/tonypi_a1/resume",
        None,
        Some(&olga),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = call(
        &t,
        Method::PUT,
        "/api/v1/robots-db/robots/tonypi_a1",
        Some(json!({"location": "bay 3"})),
        Some(&ada),
    )
    .await;
    assert_eq!(code, 200);

    // WHEN the audit trail is read with each filter, THEN it answers the matching rows
    let actions = |rows: Vec<Value>| -> Vec<String> {
        rows.iter()
            .map(|r| r["action"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        actions(audit(&t, "target=tonypi_a1").await),
        ["robot.update", "resume", "robot.create"],
        "newest first"
    );
    assert_eq!(actions(audit(&t, "actor=olga").await), ["resume"]);
    assert_eq!(
        actions(audit(&t, "actor=admin-token").await),
        ["robot.create"]
    );
    assert_eq!(
        actions(audit(&t, "action=resume&actor=ada").await),
        [] as [&str; 0]
    );
    assert_eq!(
        actions(audit(&t, "target=tonypi_a1&limit=1").await),
        ["robot.update"]
    );
    let resume = &audit(&t, "action=resume").await[0];
    let at = resume["ts"].as_str().unwrap();
    let at = urlencode(at);
    assert_eq!(
        actions(audit(&t, &format!("target=tonypi_a1&since={at}")).await),
        ["robot.update", "resume"]
    );
    assert_eq!(
        actions(audit(&t, &format!("target=tonypi_a1&until={at}")).await),
        ["robot.create"]
    );
    // AND a console admin may read it, bad filters are refused with 400
    let (code, _) = call(&t, Method::GET, "/api/v1/audit", None, Some(&ada)).await;
    assert_eq!(code, 200);
    for bad in ["limit=0", "limit=1001", "since=yesterday", "actor=a%00b"] {
        let (code, resp) = call(
            &t,
            Method::GET,
            &format!("/api/v1/audit?{bad}"),
            None,
            Some(MACHINE_TOKEN),
        )
        .await;
        assert_eq!(code, 400, "{bad}: {resp}");
    }
    // AND an operator may not
    let (code, _) = call(&t, Method::GET, "/api/v1/audit", None, Some(&olga)).await;
    assert_eq!(code, 403);
}

/// `+` and `:` of an RFC 3339 time, escaped for a query string.
fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_cli_when_it_adds_users_then_the_os_user_is_recorded() {
    // GIVEN a database
    let db = fresh_database().await;
    let run = |args: &'static [&'static str], stdin: &'static str| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || cli_with_env(&db, args, stdin, &[("USER", "root")]))
    };
    // WHEN `console-user add`, `user add` and `acl add` run as root
    for (args, stdin) in [
        (
            &[
                "console-user",
                "add",
                "ada",
                "--email",
                "ada@example.com",
                "--role",
                "admin",
                "--password-stdin",
            ][..],
            "correct horse battery\n",
        ),
        (
            &["user", "add", "robot7", "--password-stdin"][..],
            "Sup3r-S3cret-pw\n",
        ),
        (
            &[
                "acl",
                "add",
                "robot7",
                "tonypi/+/robot7",
                "--access",
                "write",
            ][..],
            "",
        ),
    ] {
        let (ok, out, err) = run(args, stdin).await.unwrap();
        assert!(ok, "{args:?}: {out} {err}");
    }
    // THEN each is recorded as root's, from no address, with its log line
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let rows: Vec<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT actor, actor_kind, action, host(address) FROM audit ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let who = |a: &str| ("root".to_string(), "cli".to_string(), a.to_string(), None);
    assert_eq!(
        rows,
        [
            who("console_user.create"),
            who("mqtt_user.create"),
            who("mqtt_acl.create")
        ]
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM logs WHERE category = 'audit' \
             AND message = 'MQTT user robot7 added by root (cli)'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_daemon_when_a_change_is_made_then_it_logs_an_audit_line() {
    // GIVEN fleetsink as a process with the admin token, logging the audit target
    let db = fresh_database().await;
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db.clone()),
        ("FLEETSINK__MQTT__EMBEDDED__LISTEN", mqtt.to_string()),
        ("FLEETSINK__HTTP__ADMIN_TOKEN", MACHINE_TOKEN.into()),
        ("RUST_LOG", "warn,fleetsink::audit=info".into()),
    ])
    .await;
    daemon.ready().await;
    // WHEN the admin token registers a robot
    let (code, body) = http_send(
        &reqwest::Client::new(),
        daemon.http,
        Method::POST,
        "/api/v1/robots-db/robots",
        Some(json!({"robot_id": "tonypi_d1"})),
        Some(MACHINE_TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // THEN its log has the audit line, with who, from where and what
    let (_, log) = daemon.terminate_and_read_log().await;
    let line = log
        .lines()
        .find(|l| l.contains("fleetsink::audit"))
        .unwrap_or_else(|| panic!("no audit line in:\n{log}"));
    assert!(
        line.contains("Robot created: tonypi_d1 by admin-token from 127.0.0.1")
            && line.contains("action=\"robot.create\"")
            && line.contains("INFO"),
        "{line}"
    );
}
