//! The audit trail as `GET /api/v1/audit` reads it: newest first, filtered by time,
//! actor, action and target. Written by `db::edits::audit`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// One recorded change.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub ts: DateTime<Utc>,
    /// A console user's name, `admin-token`, `unauthenticated` (an open API), or the
    /// operating-system user of a CLI subcommand.
    pub actor: String,
    /// `user`, `token`, `open` or `cli`.
    pub actor_kind: String,
    /// The HTTP request's peer address (a reverse proxy's, behind one); `null` for the
    /// CLI.
    pub address: Option<String>,
    /// e.g. `emergency_stop`, `resume`, `command`, `alert.acknowledge`,
    /// `threshold.update`, `robot.update`, `console_user.create` (README, "Audit trail").
    pub action: String,
    /// A robot id, `broadcast`, an alert or threshold id, a user name.
    pub target: Option<String>,
    /// What changed (a JSON object).
    #[schema(value_type = Object)]
    pub details: Value,
    /// The command's id, for commands.
    pub command_id: Option<String>,
}

/// Which rows; `None` does not filter.
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<&'a str>,
    pub action: Option<&'a str>,
    pub target: Option<&'a str>,
}

/// The newest `limit` rows that match `f`.
pub async fn list(
    pool: &PgPool,
    f: &AuditFilter<'_>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, ts, actor, actor_kind, host(address) AS address, action, target, details, \
                command_id \
         FROM audit \
         WHERE ($1::timestamptz IS NULL OR ts >= $1) AND ($2::timestamptz IS NULL OR ts < $2) \
           AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR action = $4) \
           AND ($5::text IS NULL OR target = $5) \
         ORDER BY ts DESC, id DESC LIMIT $6",
    )
    .bind(f.since)
    .bind(f.until)
    .bind(f.actor)
    .bind(f.action)
    .bind(f.target)
    .bind(limit)
    .fetch_all(pool)
    .await
}
