//! `logs`: one `UNNEST` insert per batch, idempotent on (dedup_key, ts).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{clean, clean_json};
use crate::model::LogRow;

pub(crate) async fn insert(conn: &mut PgConnection, logs: &[LogRow]) -> Result<u64, sqlx::Error> {
    let robot: Vec<Option<&str>> = logs.iter().map(|l| l.robot_id.as_deref()).collect();
    let ts: Vec<DateTime<Utc>> = logs.iter().map(|l| l.ts).collect();
    let level: Vec<String> = logs.iter().map(|l| clean(&l.level)).collect();
    let category: Vec<String> = logs.iter().map(|l| clean(&l.category)).collect();
    let source: Vec<Option<String>> = logs
        .iter()
        .map(|l| l.source.as_deref().map(clean))
        .collect();
    let message: Vec<String> = logs.iter().map(|l| clean(&l.message)).collect();
    let details: Vec<Option<String>> = logs
        .iter()
        .map(|l| l.details.as_ref().map(|d| clean_json(d).to_string()))
        .collect();
    let key: Vec<i64> = logs.iter().map(|l| l.dedup_key).collect();
    Ok(sqlx::query(
        "INSERT INTO logs (robot_id, ts, level, category, source, message, details, dedup_key) \
         SELECT r, t, l, c, s, m, d::jsonb, k FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], \
                $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[]) AS x(r, t, l, c, s, m, d, k) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&robot)
    .bind(&ts)
    .bind(&level)
    .bind(&category)
    .bind(&source)
    .bind(&message)
    .bind(&details)
    .bind(&key)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
