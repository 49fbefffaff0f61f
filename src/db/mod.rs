//! PostgreSQL: the pool, embedded migrations, transient-error classification, and all
//! of fleetsink's SQL: the SQL of a batch (`writes/`, the ingest path), what the API
//! and the auth cache read (`reads/`), what operators change through the API or the
//! CLI (`edits/`), and upkeep — partitions, archives, the offline sweep, command expiry
//! and confirmations (`maintenance/`, run on timers by `crate::background`).

pub mod edits;
pub mod listen;
pub mod maintenance;
pub mod reads;
pub mod writes;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

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

/// Creates the pool lazily: the daemon starts (and reports not-ready) even while
/// PostgreSQL is still coming up.
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
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5));
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections.max(2))
        .acquire_timeout(cfg.connect_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(opts))
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
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) if is_transient(&e) => {
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

/// Whether an error may go away by itself (connection lost, server restarting,
/// overload), so the same work should be retried rather than split or rejected.
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
            // 08 connection exception, 53 insufficient resources, 57P0x shutdown/
            // cannot connect now, 40001/40P01 serialization failure/deadlock,
            // 55P03 lock not available, 58 system error.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code.starts_with("58")
                || code == "40001"
                || code == "40P01"
                || code == "55P03"
        }
        _ => false,
    }
}

/// One round trip to the database (`SELECT 1`): the readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
