//! A `logs` row for something done through the API (a robot created, an emergency
//! stop sent), written with the ingest path's insert so both dedup the same way.

use sqlx::PgPool;

use crate::db::writes::insert_logs;
use crate::model::LogRow;

/// Writes one `logs` row; returns once it is committed.
pub async fn insert(pool: &PgPool, row: LogRow) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert_logs(&mut conn, &[row]).await?;
    Ok(())
}
