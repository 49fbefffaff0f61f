//! `logs` as the API reads them, newest first: the robots-db route's pages (keyset
//! pagination on `(ts, id)`, so a page costs the same however deep it is), and the
//! TonyPi `logs` router's filtered list (within a time window, with a message
//! search), export stream and counts. The window is always bound, so only the day
//! partitions it covers are read; a rare search word is found through the trigram index
//! on `message` (migration `20261207000003`, BENCHMARKS.md "Logs page").

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use sqlx::{Execute, PgPool, Postgres, QueryBuilder};

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

/// Which logs the TonyPi `logs` routes ask for: always a time window (their
/// `time_range`), so a query reads only the day partitions it covers.
#[derive(Debug)]
pub struct LogQuery<'a> {
    /// Exact levels (already upper-cased); empty: any.
    pub levels: &'a [String],
    pub category: Option<&'a str>,
    pub robot_id: Option<&'a str>,
    /// A case-insensitive substring of the message (`%` and `_` match themselves).
    pub search: Option<&'a str>,
    /// At or after.
    pub since: DateTime<Utc>,
}

impl LogQuery<'_> {
    /// `SELECT <columns> FROM logs WHERE <the filters>`; the caller adds the rest.
    fn select(&self, columns: &str) -> QueryBuilder<Postgres> {
        let mut q = QueryBuilder::new(format!("SELECT {columns} FROM logs WHERE ts >= "));
        q.push_bind(self.since);
        match self.levels {
            [] => {}
            [one] => {
                q.push(" AND level = ").push_bind(one.clone());
            }
            many => {
                q.push(" AND level = ANY(")
                    .push_bind(many.to_vec())
                    .push(")");
            }
        }
        if let Some(c) = self.category {
            q.push(" AND category = ").push_bind(c);
        }
        if let Some(r) = self.robot_id {
            q.push(" AND robot_id = ").push_bind(r);
        }
        if let Some(s) = self.search {
            q.push(" AND message ILIKE ").push_bind(like_pattern(s));
        }
        q
    }
}

/// `%s%` with `s`'s own `\`, `%` and `_` escaped (ILIKE's default escape is `\`).
fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

const COLUMNS: &str = "id, level, category, message, robot_id, details, ts";

/// Rows `offset..offset + limit` of those matching `q`, newest first (ties by id).
pub async fn list(
    pool: &PgPool,
    q: &LogQuery<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<StoredLog>, sqlx::Error> {
    let mut b = q.select(COLUMNS);
    b.push(" ORDER BY ts DESC, id DESC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    b.build_query_as().fetch_all(pool).await
}

/// Every row matching `q` up to `max_rows`, newest first, as a stream: rows arrive as
/// PostgreSQL sends them, so an export of a million rows never sits in memory. The
/// stream holds a pool connection until it ends or is dropped.
pub fn export<'a>(
    pool: &'a PgPool,
    q: &LogQuery<'_>,
    max_rows: i64,
) -> BoxStream<'a, Result<StoredLog, sqlx::Error>> {
    let mut b = q.select(COLUMNS);
    b.push(" ORDER BY ts DESC, id DESC LIMIT ")
        .push_bind(max_rows);
    // Owned SQL and arguments, so the stream borrows only the pool.
    let args = match b.build().take_arguments() {
        Ok(args) => args.unwrap_or_default(),
        Err(e) => return futures::stream::once(async { Err(sqlx::Error::Encode(e)) }).boxed(),
    };
    sqlx::query_as_with(b.into_sql(), args).fetch(pool)
}

/// How many rows since `since` (of one robot, or all) there are of each category and
/// level: one aggregate query, at most categories × levels rows.
pub async fn counts(
    pool: &PgPool,
    since: DateTime<Utc>,
    robot_id: Option<&str>,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let q = LogQuery {
        levels: &[],
        category: None,
        robot_id,
        search: None,
        since,
    };
    let mut b = q.select("category, level, count(*)");
    b.push(" GROUP BY category, level");
    b.build_query_as().fetch_all(pool).await
}
