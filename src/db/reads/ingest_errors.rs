//! `ingest_errors`: the messages the pipeline could not use (written by
//! `db::writes::errors`), read newest first for the API.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A rejected message, with at most the first 200 bytes of its payload.
#[derive(Debug, sqlx::FromRow)]
pub struct IngestErrorRow {
    pub topic: String,
    pub reason: String,
    pub detail: String,
    pub client_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub payload_size: i32,
    /// The payload's first 200 bytes (raw: it may not be UTF-8).
    pub preview: Vec<u8>,
}

/// The newest `limit` rejected messages, optionally of one `reason` only.
pub async fn newest(
    pool: &PgPool,
    reason: Option<&str>,
    limit: i64,
) -> Result<Vec<IngestErrorRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT topic, reason, detail, client_id, received_at, payload_size, \
                substring(payload FROM 1 FOR 200) AS preview \
         FROM ingest_errors WHERE ($1::text IS NULL OR reason = $1) \
         ORDER BY received_at DESC LIMIT $2",
    )
    .bind(reason)
    .bind(limit)
    .fetch_all(pool)
    .await
}
