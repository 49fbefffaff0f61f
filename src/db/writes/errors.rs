//! `ingest_errors`: messages that cannot be used, with the reason and the first
//! `ingest.error_payload_cap` bytes of the payload. No natural key exists, so a
//! redelivered unusable message is stored again (the README says so).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clean;
use crate::model::Unusable;

/// A message that cannot be used, as stored in `ingest_errors`.
#[derive(Debug, Clone)]
pub struct ErrorRow<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub detail: &'a str,
    pub client_id: Option<&'a str>,
    pub received_at: DateTime<Utc>,
}

impl<'a> ErrorRow<'a> {
    pub fn new(
        topic: &'a str,
        payload: &'a [u8],
        unusable: &'a Unusable,
        client_id: Option<&'a str>,
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            topic,
            payload,
            reason: unusable.reason.label(),
            detail: &unusable.detail,
            client_id,
            received_at,
        }
    }
}

pub(super) async fn insert(
    conn: &mut PgConnection,
    errors: &[&ErrorRow<'_>],
    cap: usize,
) -> Result<u64, sqlx::Error> {
    let topic: Vec<String> = errors.iter().map(|e| clean(e.topic)).collect();
    let payload: Vec<Vec<u8>> = errors
        .iter()
        .map(|e| e.payload[..e.payload.len().min(cap)].to_vec())
        .collect();
    let size: Vec<i32> = errors
        .iter()
        .map(|e| i32::try_from(e.payload.len()).unwrap_or(i32::MAX))
        .collect();
    let reason: Vec<&str> = errors.iter().map(|e| e.reason).collect();
    let detail: Vec<String> = errors.iter().map(|e| clean(e.detail)).collect();
    let client: Vec<Option<String>> = errors.iter().map(|e| e.client_id.map(clean)).collect();
    let at: Vec<DateTime<Utc>> = errors.iter().map(|e| e.received_at).collect();
    Ok(sqlx::query(
        "INSERT INTO ingest_errors (topic, payload, payload_size, reason, detail, client_id, received_at) \
         SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])",
    )
    .bind(&topic)
    .bind(&payload)
    .bind(&size)
    .bind(&reason)
    .bind(&detail)
    .bind(&client)
    .bind(&at)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
