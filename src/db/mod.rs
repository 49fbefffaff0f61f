//! PostgreSQL: the pool, embedded migrations, transient-error classification, and all
//! of fleetsink's SQL: the SQL of a batch (`writes/`, the ingest path), what the API
//! and the auth cache read (`reads/`), what operators change through the API or the
//! CLI (`edits/`), and upkeep — partitions, archives, the offline sweep, command expiry
//! and confirmations (`maintenance/`, run on timers by `crate::background`).
//!
//! Every database attempt has a deadline, because a connection whose packets vanish
//! (firewall or NAT state lost, no RST) otherwise waits for ever:
//! - getting a connection — opening one or taking one from the pool, its liveness
//!   ping included — within `database.connect_timeout` (the pool's acquire timeout);
//! - each statement within `database.statement_timeout`, enforced by the server;
//! - the server drops a session idle inside a transaction
//!   (`idle_in_transaction_session_timeout`) and a peer that stopped answering
//!   (`tcp_keepalives_*`, `tcp_user_timeout`), so a lost client leaves no lock behind;
//! - on this side, the sink bounds each batch transaction (`database.commit_timeout`)
//!   and closes a connection that missed it (`detach`, never back into the pool), and a
//!   connection handed back to the pool is checked under a deadline before reuse
//!   (sqlx's own check has none, and would hold the pool slot for as long as the kernel
//!   keeps retransmitting).
//!
//! sqlx 0.9.1 offers no socket options but `TCP_NODELAY`, so this side has no TCP
//! keepalive: the client deadlines above are what end a wait on a dead peer.

pub mod edits;
pub mod listen;
pub mod maintenance;
pub mod reads;
pub mod writes;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::backoff::Backoff;
use crate::config::DatabaseConfig;

/// Migrations compiled into the binary; run at start-up and by `fleetsink migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database.url is empty: set it in the config file, FLEETSINK__DATABASE__URL or DATABASE_URL"
    )]
    NoUrl,
    #[error("database.url is not a valid PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// TCP keepalive of the server's end of each connection (seconds): first probe after
/// this much silence, then one every interval, the peer given up after `count` misses.
const SERVER_KEEPALIVE_IDLE_S: u32 = 10;
const SERVER_KEEPALIVE_INTERVAL_S: u32 = 5;
const SERVER_KEEPALIVE_COUNT: u32 = 3;

/// Creates the pool lazily: the daemon starts (and reports not-ready) even while
/// PostgreSQL is still coming up. Each session carries the server-side deadlines of
/// [`session_settings`]; a connection handed back is pinged within
/// `connect_timeout` or closed.
pub fn pool(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    if cfg.url.is_empty() {
        return Err(DbError::NoUrl);
    }
    let opts: PgConnectOptions = cfg
        .url
        .expose()
        .parse::<PgConnectOptions>()
        .map_err(DbError::BadUrl)?
        .application_name("fleetsink")
        .options(session_settings(cfg))
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5));
    let release_check = cfg.connect_timeout;
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections.max(2))
        .acquire_timeout(cfg.connect_timeout)
        .test_before_acquire(true)
        .after_release(move |conn, _| {
            Box::pin(async move {
                match tokio::time::timeout(release_check, conn.ping()).await {
                    Ok(answered) => answered.map(|()| true),
                    // An error (not `Ok(false)`) makes sqlx drop the socket without the
                    // graceful goodbye, which could wait on the same silent peer.
                    Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "connection handed back did not answer a ping within database.connect_timeout ({release_check:?}); closed"
                        ),
                    ))),
                }
            })
        })
        .connect_lazy_with(opts))
}

/// The server-side deadlines every session of the pool starts with.
fn session_settings(cfg: &DatabaseConfig) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| d.as_millis().to_string();
    vec![
        ("statement_timeout", ms(cfg.statement_timeout)),
        (
            "idle_in_transaction_session_timeout",
            ms(cfg.commit_timeout),
        ),
        ("tcp_keepalives_idle", SERVER_KEEPALIVE_IDLE_S.to_string()),
        (
            "tcp_keepalives_interval",
            SERVER_KEEPALIVE_INTERVAL_S.to_string(),
        ),
        ("tcp_keepalives_count", SERVER_KEEPALIVE_COUNT.to_string()),
        ("tcp_user_timeout", ms(cfg.commit_timeout)),
    ]
}

/// Applies the embedded migrations on a connection of their own without the
/// statement deadline (a migration may rewrite a large table); the connection is
/// closed afterwards rather than returned with that setting.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    MIGRATOR.run(&mut *conn).await
}

/// Waits until PostgreSQL answers and the schema is migrated, retrying with capped
/// backoff. Returns early only on errors that retrying cannot fix.
pub async fn connect_and_migrate(
    pool: &PgPool,
    backoff_max: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), DbError> {
    let mut backoff = Backoff::new(backoff_max);
    loop {
        let delay = backoff.next_delay();
        match migrate(pool).await {
            Ok(()) => return Ok(()),
            // A missing privilege here is the schema owner's to fix, not a wait.
            Err(sqlx::migrate::MigrateError::Execute(e))
                if is_transient(&e) && sqlstate(&e).as_deref() != Some("42501") =>
            {
                tracing::warn!(error = %e, retry_in = ?delay, "PostgreSQL not reachable yet");
            }
            Err(e) => return Err(DbError::Migrate(e)),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(DbError::Connect(sqlx::Error::PoolClosed)),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Whether an error may go away without changing the work: the connection was lost
/// or timed out, the server is restarting, overloaded, out of disk, read-only (a
/// failover in progress) or refuses fleetsink's role a privilege — so the same work
/// should be retried (and readiness says why) rather than split or rejected. Errors
/// about the data itself (types, constraints, encodings) are not transient.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08 connection exception, 53 insufficient resources (53100 disk full),
            // 57014 statement timeout, 57P0x shutdown/cannot connect now/idle session,
            // 58 system error, 40001/40P01 serialization failure/deadlock, 55P03 lock
            // not available, 25006 read-only transaction, 25P03 idle-in-transaction
            // timeout, 42501 insufficient privilege (an operator's grant away).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code.starts_with("58")
                || matches!(
                    code.as_ref(),
                    "57014" | "40001" | "40P01" | "55P03" | "25006" | "25P03" | "42501"
                )
        }
        _ => false,
    }
}

/// The SQLSTATE PostgreSQL answered with, if the error came from the server.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The error of a database call that missed its deadline: an I/O time-out, transient.
pub fn timed_out(what: &str, deadline: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what}: no answer from PostgreSQL within {deadline:?}"),
    ))
}

/// One round trip to the database (`SELECT 1`): the readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
