//! The mosquitto-go-auth backends: the HTTP endpoints as go-auth 3.x calls them, and
//! go-auth's Postgres queries run verbatim, over users and rules made with the CLI.

use std::time::Duration;

use fleetsink::auth::Access;
use fleetsink::auth::acl::AclPattern;
use fleetsink::auth::hash;
use fleetsink::config::MqttMode;

use crate::helpers::*;

#[track_caller]
fn ok(db_url: &str, args: &[&str], stdin: &str) -> String {
    let (success, out, err) = cli(db_url, args, stdin);
    assert!(success, "fleetsink {args:?} failed: {err}");
    out
}

/// A go-auth 3.x HTTP backend request: JSON or form body, its User-Agent.
struct GoAuth {
    client: reqwest::Client,
    base: String,
}

/// How go-auth sends a check (`backends/http.go`): a JSON body with the method of
/// `auth_opt_http_method` (POST, the default, PUT or GET), or a form body, which it
/// always POSTs (`http.Client.PostForm`, for POST and PUT alike; GET is refused).
#[derive(Debug, Clone)]
enum Sent {
    Json(reqwest::Method),
    Form,
}

impl GoAuth {
    async fn send(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        sent: Sent,
    ) -> (u16, serde_json::Value) {
        let method = match &sent {
            Sent::Json(m) => m.clone(),
            Sent::Form => reqwest::Method::POST,
        };
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("User-Agent", "mosquitto-2.0.18");
        let req = if let Sent::Json(_) = sent {
            let mut o = serde_json::Map::new();
            for (k, v) in fields {
                // go-auth sends acc as a number in JSON mode.
                let v = match (*k, v.parse::<i64>()) {
                    ("acc", Ok(n)) => serde_json::json!(n),
                    _ => serde_json::json!(v),
                };
                o.insert(k.to_string(), v);
            }
            req.header("Content-Type", "application/json")
                .body(serde_json::Value::Object(o).to_string())
        } else {
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            req.header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
        };
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Every way go-auth sends a check must give the same answer; returns whether it
    /// allowed.
    async fn allowed(&self, path: &str, fields: &[(&str, &str)]) -> bool {
        let (jc, jb) = self
            .send(path, fields, Sent::Json(reqwest::Method::POST))
            .await;
        for sent in [
            Sent::Form,
            Sent::Json(reqwest::Method::PUT),
            Sent::Json(reqwest::Method::GET),
        ] {
            let (c, b) = self.send(path, fields, sent.clone()).await;
            assert_eq!(
                (jc, &jb),
                (c, &b),
                "{path} {fields:?}: JSON POST and {sent:?} differ"
            );
        }
        match jc {
            200 => {
                assert_eq!(jb, serde_json::json!({"ok": true, "error": ""}));
                true
            }
            403 => {
                assert_eq!(jb["ok"], false);
                assert!(!jb["error"].as_str().unwrap().is_empty());
                false
            }
            other => panic!("{path} {fields:?}: status {other} {jb}"),
        }
    }

    /// One JSON request (while the cache changes, two requests may see two states).
    async fn once(&self, path: &str, fields: &[(&str, &str)]) -> bool {
        self.send(path, fields, Sent::Json(reqwest::Method::POST))
            .await
            .0
            == 200
    }

    async fn user(&self, user: &str, password: &str) -> bool {
        self.allowed(
            "/mqtt/user",
            &[
                ("username", user),
                ("password", password),
                ("clientid", "c1"),
            ],
        )
        .await
    }

    async fn superuser(&self, user: &str) -> bool {
        self.allowed("/mqtt/superuser", &[("username", user)]).await
    }

    async fn acl(&self, user: &str, client: &str, topic: &str, acc: &str) -> bool {
        self.allowed(
            "/mqtt/acl",
            &[
                ("username", user),
                ("clientid", client),
                ("topic", topic),
                ("acc", acc),
            ],
        )
        .await
    }
}

/// The TonyPi policy (README) through the CLI.
fn tonypi_policy(db: &str) {
    ok(db, &["user", "add", "robot7", "--password-stdin"], "pw7\n");
    ok(db, &["user", "add", "robot8", "--password-stdin"], "pw8\n");
    ok(
        db,
        &[
            "user",
            "add",
            "fleetsink",
            "--superuser",
            "--password-stdin",
        ],
        "root-pw\n",
    );
    for (pattern, access) in [
        ("tonypi/+/%u", "write"),
        ("tonypi/battery", "write"),
        ("tonypi/location", "write"),
        ("tonypi/commands/%u", "read"),
        ("tonypi/emergency_stop/%u", "read"),
        ("tonypi/commands/broadcast", "read"),
    ] {
        ok(
            db,
            &["acl", "add", "--all", pattern, "--access", access],
            "",
        );
    }
    ok(
        db,
        &["acl", "add", "robot7", "lab/%c/#", "--access", "readwrite"],
        "",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_auth_http_backend_decides_as_go_auth_expects() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let db = t.db_url.clone();
    tonypi_policy(&db);
    // Hash formats the CLI does not write, stored as go-auth users may have them.
    let bcrypt_hash = bcrypt::hash("bpw", 4).unwrap();
    for (user, h) in [
        ("bc", bcrypt_hash.as_str()),
        // hashlib.pbkdf2_hmac('sha256', b'password', b64decode('c2FsdHNhbHQ='), 1000, 32)
        (
            "p256",
            "PBKDF2$sha256$1000$c2FsdHNhbHQ=$E196ZhRPzw+wA84EjzHwJO1cv/MFJdO6C/sxmUeTYqY=",
        ),
        // argon2-cffi, m=512 t=2 p=2, salt b"somesaltsomesalt", password "pw"
        (
            "a2",
            "$argon2id$v=19$m=512,t=2,p=2$c29tZXNhbHRzb21lc2FsdA$ySGVw+g6+RsSyNY1XW7R/sVXY0aNRBg5pBSt1vhNE70",
        ),
        ("broken", "md5:abc"),
    ] {
        sqlx::query("INSERT INTO mqtt_users (username, password_hash) VALUES ($1, $2)")
            .bind(user)
            .bind(h)
            .execute(&t.pool)
            .await
            .unwrap();
    }
    let g = GoAuth {
        client: reqwest::Client::new(),
        base: format!("http://{}", t.http),
    };
    // The cache follows the inserts (NOTIFY) within a second.
    wait_until(Duration::from_secs(2), "user a2 is known", || {
        let g = &g;
        async move {
            g.once("/mqtt/user", &[("username", "a2"), ("password", "pw")])
                .await
        }
    })
    .await;

    // Passwords, each hash format, unknown users.
    assert!(g.user("robot7", "pw7").await);
    assert!(!g.user("robot7", "pw8").await);
    assert!(!g.user("robot7", "").await);
    assert!(g.user("bc", "bpw").await && !g.user("bc", "bpx").await);
    assert!(g.user("p256", "password").await && !g.user("p256", "passwore").await);
    assert!(!g.user("a2", "px").await);
    assert!(!g.user("broken", "abc").await);
    assert!(!g.user("nobody", "pw7").await);
    // Superusers pass every ACL check; others are not superusers.
    assert!(g.superuser("fleetsink").await);
    assert!(!g.superuser("robot7").await && !g.superuser("nobody").await);
    assert!(g.acl("fleetsink", "x", "tonypi/commands/robot8", "2").await);
    // Every-user rules with %u: a robot writes its own topics, not another's.
    assert!(g.acl("robot7", "c7", "tonypi/status/robot7", "2").await);
    assert!(g.acl("robot7", "c7", "tonypi/sensors/robot7", "2").await);
    assert!(!g.acl("robot7", "c7", "tonypi/status/robot8", "2").await);
    assert!(
        !g.acl("robot7", "c7", "tonypi/status/robot7/extra", "2")
            .await
    );
    assert!(g.acl("robot7", "c7", "tonypi/battery", "2").await);
    assert!(!g.acl("robot7", "c7", "tonypi/battery", "1").await);
    // Read implies subscribe; a write rule does not allow reading.
    assert!(g.acl("robot7", "c7", "tonypi/commands/robot7", "1").await);
    assert!(g.acl("robot7", "c7", "tonypi/commands/robot7", "4").await);
    assert!(!g.acl("robot7", "c7", "tonypi/commands/robot8", "4").await);
    assert!(!g.acl("robot7", "c7", "tonypi/commands/+", "4").await);
    assert!(
        !g.acl("robot7", "c7", "tonypi/commands/broadcast", "2")
            .await
    );
    assert!(
        g.acl("robot8", "c8", "tonypi/commands/broadcast", "4")
            .await
    );
    // A per-user rule with %c and #: this user only, this client id only.
    assert!(g.acl("robot7", "c7", "lab/c7", "2").await);
    assert!(g.acl("robot7", "c7", "lab/c7/a/b", "1").await);
    assert!(g.acl("robot7", "c7", "lab/c7/#", "4").await);
    assert!(!g.acl("robot7", "c8", "lab/c7/a", "2").await);
    assert!(!g.acl("robot8", "c7", "lab/c7/a", "2").await);
    // acc as a string, as some go-auth versions send it.
    let (code, _) = g
        .send(
            "/mqtt/acl",
            &[
                ("username", "robot7"),
                ("clientid", "c7"),
                ("topic", "tonypi/status/robot7"),
                ("acc", "2"),
            ],
            Sent::Form,
        )
        .await;
    assert_eq!(code, 200);
    let resp = g
        .client
        .post(format!("{}/mqtt/acl", g.base))
        .header("Content-Type", "application/json")
        .body(r#"{"username":"robot7","clientid":"c7","topic":"tonypi/status/robot7","acc":"2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Malformed: a 400 naming the problem, never a 5xx.
    let (code, body) = g
        .send(
            "/mqtt/acl",
            &[("username", "robot7"), ("topic", "a"), ("acc", "3")],
            Sent::Json(reqwest::Method::POST),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("acc"));

    // A change made by hand in SQL reaches the answers within a second.
    sqlx::query("DELETE FROM mqtt_acls WHERE topic = 'tonypi/battery'")
        .execute(&t.pool)
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(1),
        "the removed rule stops allowing",
        || {
            let g = &g;
            async move {
                let f = [
                    ("username", "robot7"),
                    ("clientid", "c7"),
                    ("topic", "tonypi/battery"),
                    ("acc", "2"),
                ];
                !g.once("/mqtt/acl", &f).await
            }
        },
    )
    .await;
    // Password change and user removal through the CLI.
    ok(
        &db,
        &["user", "passwd", "robot8", "--password-stdin"],
        "new8\n",
    );
    // The reload itself takes milliseconds (NOTIFY); each probe also runs a PBKDF2
    // check, which on a loaded 2-core CI machine alone can take a second.
    wait_until(Duration::from_secs(10), "the new password works", || {
        let g = &g;
        async move {
            g.once(
                "/mqtt/user",
                &[("username", "robot8"), ("password", "new8")],
            )
            .await
        }
    })
    .await;
    assert!(!g.user("robot8", "pw8").await);
    ok(&db, &["user", "remove", "robot8"], "");
    // As above: each probe pays a PBKDF2 check (an unknown user costs the same).
    wait_until(
        Duration::from_secs(10),
        "the removed user is refused",
        || {
            let g = &g;
            async move {
                !g.once(
                    "/mqtt/user",
                    &[("username", "robot8"), ("password", "new8")],
                )
                .await
            }
        },
    )
    .await;

    // Every check counted.
    let metrics = reqwest::get(format!("{}/metrics", g.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "fleetsink_auth_checks_total{kind=\"acl\",result=\"allow\"}",
        "fleetsink_auth_checks_total{kind=\"acl\",result=\"deny\"}",
        "fleetsink_auth_checks_total{kind=\"user\",result=\"deny\"}",
        "fleetsink_auth_checks_total{kind=\"superuser\",result=\"allow\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_auth_endpoints_refuse_networks_not_allowed() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.auth_allow = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    ok(
        &t.db_url,
        &[
            "user",
            "add",
            "fleetsink",
            "--superuser",
            "--password-stdin",
        ],
        "pw\n",
    );
    let g = GoAuth {
        client: reqwest::Client::new(),
        base: format!("http://{}", t.http),
    };
    for path in ["/mqtt/user", "/mqtt/superuser", "/mqtt/acl"] {
        let (code, body) = g
            .send(
                path,
                &[
                    ("username", "fleetsink"),
                    ("password", "pw"),
                    ("topic", "a"),
                    ("acc", "1"),
                ],
                Sent::Json(reqwest::Method::POST),
            )
            .await;
        assert_eq!(code, 403, "{path}");
        assert!(body["error"].as_str().unwrap().contains("auth_allow"));
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_say_what_to_fix() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let db = t.db_url.clone();
    ok(&db, &["user", "add", "robot7", "--password-stdin"], "pw\n");
    for (args, stdin, says) in [
        (
            vec!["user", "add", "robot7", "--password-stdin"],
            "pw\n",
            "already exists",
        ),
        (
            vec!["user", "add", "a/b", "--password-stdin"],
            "pw\n",
            "username",
        ),
        (
            vec!["user", "add", "robot9", "--password-stdin"],
            "\n",
            "empty",
        ),
        (
            vec!["user", "passwd", "nobody", "--password-stdin"],
            "pw\n",
            "no user",
        ),
        (vec!["user", "remove", "nobody"], "", "no user"),
        (
            vec!["acl", "add", "nobody", "a/b", "--access", "read"],
            "",
            "no user",
        ),
        (
            vec!["acl", "add", "robot7", "a/#/b", "--access", "read"],
            "",
            "pattern",
        ),
        (
            vec!["acl", "add", "--all", "a/b+", "--access", "write"],
            "",
            "pattern",
        ),
        (
            vec!["acl", "add", "--all", "robot7", "a/b", "--access", "write"],
            "",
            "only the PATTERN",
        ),
        (vec!["acl", "remove", "999"], "", "no ACL rule"),
    ] {
        let (success, _, err) = cli(&db, &args, stdin);
        assert!(!success, "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = ok(
        &db,
        &[
            "acl",
            "add",
            "--all",
            "tonypi/commands/%u",
            "--access",
            "read",
        ],
        "",
    );
    assert!(
        out.contains("every user may read+subscribe tonypi/commands/%u"),
        "{out}"
    );
    let list = ok(&db, &["acl", "list", "robot7"], "");
    assert!(
        list.contains("*\tread+subscribe\ttonypi/commands/%u"),
        "{list}"
    );
    let users = ok(&db, &["user", "list"], "");
    assert_eq!(users, "robot7\tuser\t0 rules\n");
    // The stored hash is go-auth's PBKDF2 format, and no secret reached the output.
    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM mqtt_users WHERE username = 'robot7'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(stored.starts_with("PBKDF2$sha512$100000$"));
    assert!(!users.contains("PBKDF2") && !list.contains("PBKDF2"));
    t.stop().await;
}

/// go-auth's Postgres backend runs the README's three queries with its parameters sent
/// as text of unspecified type (lib/pq); `PREPARE … EXECUTE` with quoted literals binds
/// them the same way. Its decisions must equal the HTTP backend's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_auth_postgres_queries_decide_like_the_http_backend() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let db = t.db_url.clone();
    tonypi_policy(&db);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let query = |opt: &str| -> String {
        let line = readme
            .lines()
            .find(|l| l.starts_with(&format!("auth_opt_pg_{opt} ")))
            .unwrap_or_else(|| panic!("README lacks auth_opt_pg_{opt}"));
        line[format!("auth_opt_pg_{opt} ").len()..].to_string()
    };
    let mut conn = t.pool.acquire().await.unwrap();
    for (name, opt) in [
        ("userq", "userquery"),
        ("superq", "superquery"),
        ("aclq", "aclquery"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PREPARE {name} AS {}",
            query(opt)
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let g = GoAuth {
        client: reqwest::Client::new(),
        base: format!("http://{}", t.http),
    };
    wait_until(Duration::from_secs(2), "the cache has the policy", || {
        let g = &g;
        async move {
            g.once("/mqtt/superuser", &[("username", "fleetsink")])
                .await
        }
    })
    .await;
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    for (user, password) in [
        ("robot7", "pw7"),
        ("robot7", "bad"),
        ("nobody", "pw7"),
        ("fleetsink", "root-pw"),
    ] {
        let rows: Vec<String> =
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("EXECUTE userq({})", lit(user))))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| sqlx::Row::get(r, 0))
                .collect();
        let pg = rows
            .first()
            .is_some_and(|h| hash::verify(password, h) == Ok(true));
        assert_eq!(pg, g.user(user, password).await, "user {user}");
    }
    for user in ["robot7", "fleetsink", "nobody"] {
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "EXECUTE superq({})",
            lit(user)
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let pg = sqlx::Row::get::<i64, _>(&row, 0) > 0;
        assert_eq!(pg, g.superuser(user).await, "superuser {user}");
    }
    for (user, client, topic, acc) in [
        ("robot7", "c7", "tonypi/status/robot7", 2),
        ("robot7", "c7", "tonypi/status/robot8", 2),
        ("robot7", "c7", "tonypi/battery", 2),
        ("robot7", "c7", "tonypi/battery", 1),
        ("robot7", "c7", "tonypi/commands/robot7", 1),
        ("robot7", "c7", "tonypi/commands/robot7", 4),
        ("robot7", "c7", "tonypi/commands/robot8", 4),
        ("robot7", "c7", "tonypi/commands/broadcast", 4),
        ("robot7", "c7", "lab/c7/x", 2),
        ("robot7", "c8", "lab/c7/x", 2),
        ("robot8", "c8", "lab/c8/x", 2),
        ("robot8", "c8", "tonypi/location", 2),
    ] {
        // go-auth: superusers pass; otherwise the ACL query's topics, matched with %u/%c.
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "EXECUTE aclq({}, '{acc}')",
            lit(user)
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let access = Access::from_acc(acc).unwrap();
        let pg = rows.iter().any(|r| {
            AclPattern::parse(&sqlx::Row::get::<String, _>(r, 0))
                .unwrap()
                .allows(topic, user, client, access)
        });
        let http = g.acl(user, client, topic, &acc.to_string()).await;
        assert_eq!(pg, http, "acl {user} {client} {topic} {acc}");
    }
    drop(conn);
    t.stop().await;
}
