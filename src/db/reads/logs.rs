//! `logs` as the API pages through them: newest first, filtered, with keyset
//! pagination on `(ts, id)` so a page costs the same however deep it is.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

/// Which logs, and where the previous page ended.
#[derive(Debug, Default)]
pub struct LogFilter<'a> {
    /// Compared upper-cased: `warning` finds `WARNING`.
    pub level: Option<&'a str>,
    pub category: Option<&'a str>,
    pub robot_id: Option<&'a str>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before.
    pub to: Option<DateTime<Utc>>,
    /// The `(ts, id)` of the previous page's last row: only older rows.
    pub after: Option<(DateTime<Utc>, i64)>,
}

/// A `logs` row as the API shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredLog {
    pub id: i64,
    pub level: String,
    pub category: String,
    pub message: String,
    pub robot_id: Option<String>,
    pub details: Option<Value>,
    pub ts: DateTime<Utc>,
}

/// Up to `limit` rows matching `f`, newest first (ties by id).
pub async fn page(
    pool: &PgPool,
    f: &LogFilter<'_>,
    limit: i64,
) -> Result<Vec<StoredLog>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, level, category, message, robot_id, details, ts FROM logs \
         WHERE ($1::text IS NULL OR level = upper($1)) \
           AND ($2::text IS NULL OR category = $2) \
           AND ($3::text IS NULL OR robot_id = $3) \
           AND ($4::timestamptz IS NULL OR ts >= $4) \
           AND ($5::timestamptz IS NULL OR ts < $5) \
           AND ($6::timestamptz IS NULL OR (ts, id) < ($6, $7)) \
         ORDER BY ts DESC, id DESC LIMIT $8",
    )
    .bind(f.level)
    .bind(f.category)
    .bind(f.robot_id)
    .bind(f.from)
    .bind(f.to)
    .bind(f.after.map(|(t, _)| t))
    .bind(f.after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}
