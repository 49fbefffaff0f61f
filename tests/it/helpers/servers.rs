//! The servers a test runs against: a fresh database on the shared PostgreSQL, a
//! PostgreSQL cluster of its own (for tests that stop the server), and Mosquitto
//! processes. Each test gets its own; processes are stopped on drop.
//!
//! Mosquitto logs at debug level into a file the test reads: its log is the test's view
//! of what the broker did (a SUBACK sent, a PUBACK received), so tests wait on those
//! events rather than for a guessed time.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use sqlx::PgPool;

use super::{free_port, unique, wait_for_port, wait_until};

/// A `FLEETSINK_TEST_*` variable that `scripts/test.sh` sets.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL and finds Mosquitto")
    })
}

/// Creates a fresh database on `server_url`'s server; returns its URL.
pub async fn fresh_database_on(server_url: &str) -> String {
    let admin = PgPool::connect(server_url).await.unwrap();
    let name = unique("fs");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = server_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// A fresh database on the shared server.
pub async fn fresh_database() -> String {
    fresh_database_on(&env("FLEETSINK_TEST_DATABASE_URL")).await
}

/// A Mosquitto of our own on a free port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub addr: std::net::SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Anonymous access, window 1000, no queue limit.
    pub async fn start() -> Mosquitto {
        Self::start_with("127.0.0.1", |_| "allow_anonymous true\n".into()).await
    }

    /// Listening on `host`; `prepare` may write files into the broker's directory (e.g.
    /// a password file) and returns extra config lines.
    pub async fn start_with(
        host: &'static str,
        prepare: impl FnOnce(&std::path::Path) -> String,
    ) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let extra = prepare(dir.path());
        // Mosquitto started as root drops to the `mosquitto` user before it opens its
        // files: the directory must be searchable and the log writable by that user
        // (created after `prepare`, which may set the modes of what it finds).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("mosquitto.log");
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} {host}\npersistence false\n\
                 max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n\
                 queue_qos0_messages true\n\
                 log_dest file {}\nlog_type all\n{extra}",
                log.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(env("FLEETSINK_TEST_MOSQUITTO"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = std::net::SocketAddr::new(host.parse().unwrap(), port);
        wait_for_port(addr).await;
        let broker = Mosquitto {
            child,
            addr,
            log,
            _dir: dir,
        };
        // It logs opening its listeners before it accepts connections.
        assert!(
            broker.logged(|_| true) > 0,
            "Mosquitto on {addr} does not write its log (the tests wait on it)"
        );
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// How many log lines (Mosquitto writes and flushes each one at once) satisfy `matches`.
    fn logged(&self, matches: impl Fn(&str) -> bool) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| matches(l))
            .count()
    }

    /// How many SUBACKs Mosquitto has sent to `client_id`: once one is sent, the
    /// subscriptions of that SUBSCRIBE are in place.
    pub fn subacks_sent_to(&self, client_id: &str) -> usize {
        let line = format!(": Sending SUBACK to {client_id}");
        self.logged(|l| l.ends_with(&line))
    }

    /// Waits until Mosquitto has sent `client_id` more than `before` SUBACKs.
    #[track_caller]
    pub fn subscribed(&self, client_id: &str, before: usize) -> impl Future<Output = ()> + '_ {
        let what = format!("Mosquitto sent SUBACK number {} to {client_id}", before + 1);
        let client_id = client_id.to_string();
        wait_until(Duration::from_secs(15), &what, move || {
            let n = self.subacks_sent_to(&client_id);
            async move { n > before }
        })
    }

    /// How many QoS 1 messages `client_id` has acknowledged to Mosquitto. For fleetsink
    /// that is how many it has committed (or kept as unusable).
    pub fn pubacks_from(&self, client_id: &str) -> usize {
        let line = format!(": Received PUBACK from {client_id} (");
        self.logged(|l| l.contains(&line))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of our own, for tests that stop and restart the server.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// `tool` of the PostgreSQL installation, run as the non-root PostgreSQL user.
fn pg_command(tool: &str) -> std::process::Command {
    let bin = PathBuf::from(env("FLEETSINK_TEST_PG_BIN")).join(tool);
    let user = env("FLEETSINK_TEST_PG_USER");
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let mut c = if String::from_utf8_lossy(&me.stdout).trim() == user {
        std::process::Command::new(bin)
    } else {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", &user, "--"]).arg(bin);
        // The test's directory may be one the user cannot enter (root's home); every
        // path given is absolute.
        c.current_dir("/");
        c
    };
    c.stdout(Stdio::null());
    c
}

impl PgCluster {
    fn pg(&self, tool: &str) -> tokio::process::Command {
        tokio::process::Command::from(pg_command(tool))
    }

    pub async fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        let user = env("FLEETSINK_TEST_PG_USER");
        let _ = std::process::Command::new("chown")
            .arg(&user)
            .arg(dir.path())
            .status();
        let c = PgCluster {
            dir,
            port: free_port(),
        };
        let data = c.dir.path().join("data");
        let ok = c
            .pg("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "initdb failed");
        c.resume().await;
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut); returns once it is down.
    pub async fn pause(&self) {
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "pg_ctl stop failed");
    }

    /// Starts the server again; returns once it accepts connections.
    pub async fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &opts, "start"])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "pg_ctl start failed");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stderr(Stdio::null())
            .status();
    }
}
