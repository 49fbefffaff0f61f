//! Sign-in and roles for the operator console (TonyPi's `users.py` and `utils/auth.py`):
//! tokens the UI stores, every `/api/` route refused without a credential, each role
//! allowed what it may and refused (403) the rest, and changes to a user effective on
//! the next request.

use fleetsink::auth::console::{self, Role};
use fleetsink::config::MqttMode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "test-console-secret-0123456789abcdef";
const MACHINE_TOKEN: &str = "machine-token-for-scripts";
/// The only reads a viewer may not make: the console user accounts and the audit trail.
const ADMIN_READS: [&str; 3] = ["/api/v1/users", "/api/v1/users/{user_id}", "/api/v1/audit"];

async fn app() -> TestApp {
    spawn_app(MqttMode::Embedded, |cfg| {
        cfg.console.jwt_secret = Some(SECRET.into());
        cfg.console.login_failures_per_minute = 5;
        cfg.http.admin_token = Some(MACHINE_TOKEN.into());
    })
    .await
}

/// The first admin, as `fleetsink console-user add` makes one.
async fn first_admin(t: &TestApp, name: &str, password: &str) {
    let hash = console::hash_password(password).unwrap();
    fleetsink::db::edits::console_users::create(
        &t.pool,
        &fleetsink::audit::Actor::cli(),
        name,
        &format!("{name}@example.com"),
        &hash,
        "admin",
    )
    .await
    .unwrap();
}

async fn call(
    t: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", t.http));
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Signs in; returns the token. The login route must see the user the cache holds, so
/// it is retried briefly after a change made behind the API's back.
async fn login(t: &TestApp, user: &str, password: &str) -> String {
    let body = json!({"username": user, "password": password});
    for _ in 0..50 {
        let (code, resp) = call(
            t,
            Method::POST,
            "/api/v1/auth/login",
            Some(body.clone()),
            None,
        )
        .await;
        if code == 200 {
            assert_eq!(resp["token_type"], "bearer");
            assert_eq!(resp["user"]["username"], user);
            return resp["access_token"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{user} could not sign in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_gives_the_token_and_user_the_ui_stores() {
    // GIVEN a first admin
    let mut t = app().await;
    first_admin(&t, "ada", "correct horse battery").await;
    // WHEN they sign in
    let token = login(&t, "ada", "correct horse battery").await;
    // THEN the token is a JWT HS256 with TonyPi's claims, and /auth/me answers the user
    let claims = console::verify_token(&token, SECRET.as_bytes(), chrono::Utc::now()).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.role.as_str()),
        ("ada", "admin")
    );
    assert!(claims.exp - claims.iat == 8 * 3600, "TonyPi's 8 hours");
    let (code, me) = call(&t, Method::GET, "/api/v1/auth/me", None, Some(&token)).await;
    assert_eq!(code, 200, "{me}");
    for field in ["id", "username", "email", "role", "is_active"] {
        assert!(!me[field].is_null(), "{field} missing: {me}");
    }
    assert_eq!(
        (me["role"].as_str(), me["is_active"].as_bool()),
        (Some("admin"), Some(true))
    );

    // Wrong password and unknown user: the same 401, TonyPi's words.
    for (user, pw) in [("ada", "wrong password"), ("nobody", "whatever it is")] {
        let (code, body) = call(
            &t,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": user, "password": pw})),
            None,
        )
        .await;
        assert_eq!(code, 401);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("Invalid username or password")
        );
    }
    // No token, a bad one, another scheme: 401 (the UI signs out on any 401).
    let (code, _) = call(&t, Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(code, 401);
    let (code, _) = call(
        &t,
        Method::GET,
        "/api/v1/auth/me",
        None,
        Some("invalid_token"),
    )
    .await;
    assert_eq!(code, 401);
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/auth/me", t.http))
        .header("Authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A token signed with another secret is refused.
    let forged = console::issue_token(
        "ada",
        Role::Admin,
        b"another secret entirely........",
        chrono::Utc::now(),
        std::time::Duration::from_secs(600),
    );
    let (code, _) = call(&t, Method::GET, "/api/v1/auth/me", None, Some(&forged)).await;
    assert_eq!(code, 401);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_needs_a_credential_and_viewers_only_read() {
    // GIVEN an admin, and a viewer they created
    let mut t = app().await;
    first_admin(&t, "root", "root password 1").await;
    let admin = login(&t, "root", "root password 1").await;
    let (code, viewer) = call(
        &t,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": "vic", "email": "vic@example.com", "password": "viewer pass", "role": "viewer"})),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 201, "{viewer}");
    let vic = login(&t, "vic", "viewer pass").await;
    // WHEN every operation of the OpenAPI document is called
    let (_, doc) = call(&t, Method::GET, "/api/v1/openapi.json", None, None).await;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/")
            || path == "/api/v1/auth/login"
            || path == "/api/v1/openapi.json"
        {
            continue;
        }
        let concrete = path.replace(['{', '}'], "");
        for method in ops.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            // THEN without a credential: 401
            let (code, body) = call(&t, m.clone(), &concrete, Some(json!({})), None).await;
            assert_eq!(code, 401, "{method} {path} without a token: {body}");
            // AND a viewer may read (but not the user accounts) and change nothing: 403
            // on every other method
            let (code, body) = call(&t, m.clone(), &concrete, Some(json!({})), Some(&vic)).await;
            if m == Method::GET && !ADMIN_READS.contains(&path.as_str()) {
                assert!(
                    code != 401 && code != 403,
                    "viewer refused {method} {path}: {code} {body}"
                );
            } else {
                assert_eq!(code, 403, "viewer allowed {method} {path}: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} operations checked");
    // The machine credential still works as an admin.
    let (code, _) = call(&t, Method::GET, "/api/v1/users", None, Some(MACHINE_TOKEN)).await;
    assert_eq!(code, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_command_admins_manage_and_changes_apply_at_once() {
    let mut t = app().await;
    first_admin(&t, "root", "root password 1").await;
    let admin = login(&t, "root", "root password 1").await;
    let mut robot = t.robot("tonypi_c1").await;
    robot
        .publish_acked(
            "tonypi/status/tonypi_c1",
            json!({"status": "online", "timestamp": chrono::Utc::now().to_rfc3339()}).to_string(),
        )
        .await;
    t.wait_count(
        "SELECT count(*) FROM robots WHERE robot_id = 'tonypi_c1'",
        1,
    )
    .await;
    let (code, op) = call(
        &t,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": "otto", "email": "otto@example.com", "password": "operator pass", "role": "operator"})),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 201);
    let otto = login(&t, "otto", "operator pass").await;

    // An operator sends commands...
    let cmd = json!({"command": "move", "robot_id": "tonypi_c1"});
    let (code, body) = call(
        &t,
        Method::POST,
        "/api/v1/management/command",
        Some(cmd.clone()),
        Some(&otto),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // ...reads the fleet (TonyPi's management robot list, from the registry)...
    let (code, robots) = call(
        &t,
        Method::GET,
        "/api/v1/management/robots",
        None,
        Some(&otto),
    )
    .await;
    assert_eq!(code, 200, "{robots}");
    assert_eq!(robots[0]["robot_id"], "tonypi_c1");
    assert_eq!(robots[0]["name"], "tonypi_c1");
    assert_eq!(robots[0]["status"], "online");
    // ...acknowledges alerts, recorded under their own name (the UI sends `user`)...
    let (code, alert) = call(
        &t,
        Method::POST,
        "/api/v1/alerts",
        Some(json!({"alert_type": "manual", "severity": "warning", "title": "Door open", "message": "bay 2"})),
        Some(&otto),
    )
    .await;
    assert_eq!(code, 200, "{alert}");
    let path = format!(
        "/api/v1/alerts/{}/acknowledge?acknowledged_by=user",
        alert["id"]
    );
    let (code, ack) = call(&t, Method::POST, &path, None, Some(&otto)).await;
    assert_eq!(
        (code, ack["acknowledged_by"].as_str()),
        (200, Some("otto")),
        "{ack}"
    );
    // ...but does not manage users or robots.
    let (code, body) = call(&t, Method::GET, "/api/v1/users", None, Some(&otto)).await;
    assert_eq!(code, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Admin access required")
    );
    let (code, _) = call(
        &t,
        Method::DELETE,
        "/api/v1/robots-db/robots/tonypi_c1",
        None,
        Some(&otto),
    )
    .await;
    assert_eq!(code, 403);

    // Users CRUD, TonyPi's answers.
    let id = op["id"].as_str().unwrap();
    let (code, got) = call(
        &t,
        Method::GET,
        &format!("/api/v1/users/{id}"),
        None,
        Some(&admin),
    )
    .await;
    assert_eq!((code, got["username"].as_str()), (200, Some("otto")));
    let (code, list) = call(&t, Method::GET, "/api/v1/users", None, Some(&admin)).await;
    assert_eq!((code, list.as_array().unwrap().len()), (200, 2));
    let bad = [
        (
            json!({"username": "otto", "email": "x@example.com", "password": "long enough"}),
            "already exists",
        ),
        (
            json!({"username": "z", "email": "z@example.com", "password": "long enough", "role": "root"}),
            "Invalid role",
        ),
        (
            json!({"username": "z", "email": "not-an-email", "password": "long enough"}),
            "email",
        ),
        (
            json!({"username": "z", "email": "z@example.com", "password": "short"}),
            "8-128",
        ),
        (
            json!({"username": "z\u{0}", "email": "z@example.com", "password": "long enough"}),
            "username",
        ),
    ];
    for (body, says) in bad {
        let (code, resp) = call(
            &t,
            Method::POST,
            "/api/v1/users",
            Some(body.clone()),
            Some(&admin),
        )
        .await;
        assert_eq!(code, 400, "{body}: {resp}");
        assert!(resp["detail"].as_str().unwrap().contains(says), "{resp}");
    }
    let (code, resp) = call(
        &t,
        Method::PUT,
        &format!("/api/v1/users/{id}"),
        Some(json!({})),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        resp["detail"]
            .as_str()
            .unwrap()
            .contains("No fields to update")
    );
    let (code, _) = call(
        &t,
        Method::GET,
        "/api/v1/users/no-such-id",
        None,
        Some(&admin),
    )
    .await;
    assert_eq!(code, 404);

    // WHEN the operator is demoted THEN their next command is refused, token unchanged
    let (code, _) = call(
        &t,
        Method::PUT,
        &format!("/api/v1/users/{id}"),
        Some(json!({"role": "viewer"})),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = call(
        &t,
        Method::POST,
        "/api/v1/management/command",
        Some(cmd.clone()),
        Some(&otto),
    )
    .await;
    assert_eq!(code, 403);
    // WHEN deactivated THEN the token stops working and sign-in says inactive
    let (code, _) = call(
        &t,
        Method::PUT,
        &format!("/api/v1/users/{id}"),
        Some(json!({"is_active": false})),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = call(&t, Method::GET, "/api/v1/auth/me", None, Some(&otto)).await;
    assert_eq!(code, 401);
    let (code, body) = call(
        &t,
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"username": "otto", "password": "operator pass"})),
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("inactive")
    );

    // An admin cannot delete themself, nor demote the last admin.
    let (_, me) = call(&t, Method::GET, "/api/v1/auth/me", None, Some(&admin)).await;
    let own = me["id"].as_str().unwrap();
    let (code, body) = call(
        &t,
        Method::DELETE,
        &format!("/api/v1/users/{own}"),
        None,
        Some(&admin),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Cannot delete your own account")
    );
    let (code, body) = call(
        &t,
        Method::PUT,
        &format!("/api/v1/users/{own}"),
        Some(json!({"role": "operator"})),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    // Deleting another user: 204, then 404.
    let (code, _) = call(
        &t,
        Method::DELETE,
        &format!("/api/v1/users/{id}"),
        None,
        Some(&admin),
    )
    .await;
    assert_eq!(code, 204);
    let (code, _) = call(
        &t,
        Method::DELETE,
        &format!("/api/v1/users/{id}"),
        None,
        Some(&admin),
    )
    .await;
    assert_eq!(code, 404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_throttled_per_address() {
    let mut t = app().await;
    first_admin(&t, "root", "root password 1").await;
    let wrong = json!({"username": "root", "password": "not the password"});
    for _ in 0..5 {
        let (code, _) = call(
            &t,
            Method::POST,
            "/api/v1/auth/login",
            Some(wrong.clone()),
            None,
        )
        .await;
        assert_eq!(code, 401);
    }
    // THEN the sixth attempt is refused without checking, even with the right password
    let right = json!({"username": "root", "password": "root password 1"});
    let (code, body) = call(&t, Method::POST, "/api/v1/auth/login", Some(right), None).await;
    assert_eq!(code, 429, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("try again"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_made_with_the_cli() {
    // GIVEN a daemon with sign-in on and no console users
    let mut t = app().await;
    let db = t.db_url.clone();
    // WHEN the operator creates the first admin with the CLI
    let run = |args: Vec<&'static str>, stdin: &'static str| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || cli(&db, &args, stdin))
    };
    let (ok, out, err) = run(
        vec![
            "console-user",
            "add",
            "boss",
            "--email",
            "boss@example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "boss password\n",
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("console user boss added (admin)"), "{out}");
    // THEN they can sign in (the daemon follows the table) and manage users
    let token = login(&t, "boss", "boss password").await;
    let (code, _) = call(&t, Method::GET, "/api/v1/users", None, Some(&token)).await;
    assert_eq!(code, 200);
    // AND errors say what to do
    let (ok, _, err) = run(
        vec![
            "console-user",
            "add",
            "boss",
            "--email",
            "other@example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "another password\n",
    )
    .await
    .unwrap();
    assert!(!ok && err.contains("console-user passwd boss"), "{err}");
    let (ok, _, err) = run(
        vec![
            "console-user",
            "add",
            "x",
            "--email",
            "x@example.com",
            "--role",
            "root",
            "--password-stdin",
        ],
        "long enough\n",
    )
    .await
    .unwrap();
    assert!(!ok && err.contains("admin, operator or viewer"), "{err}");
    let (ok, _, err) = run(
        vec!["console-user", "passwd", "nobody", "--password-stdin"],
        "long enough\n",
    )
    .await
    .unwrap();
    assert!(!ok && err.contains("console-user list"), "{err}");
    // AND a forgotten password is reset with passwd
    let (ok, _, err) = run(
        vec!["console-user", "passwd", "boss", "--password-stdin"],
        "new boss password\n",
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    login(&t, "boss", "new boss password").await;
    let (ok, out, _) = run(vec!["console-user", "list"], "").await.unwrap();
    assert!(
        ok && out.contains("boss\tadmin\tboss@example.com\tactive"),
        "{out}"
    );
    t.stop().await;
}
