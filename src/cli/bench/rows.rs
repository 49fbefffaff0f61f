//! The database check: every message the robots sent is compared with the `metrics` rows
//! stored, one by one. A message is identified by its robot and payload timestamp (each
//! robot stamps its messages with strictly increasing microseconds, and each becomes one
//! row, `traffic.rs`), so the check is exact, not a count: lost = acknowledged with no
//! row, duplicated = a row beyond one per message, or a row of these robots inside the
//! run's time range that no message explains.
//!
//! It runs after the robots disconnected, so its queries never compete with the load.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;

use super::report::Database;
use super::robot::RobotResult;

/// What the rows say about the messages.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub stored: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub stored_unacked: u64,
}

/// Compares rows `(robot index, timestamp µs)` with what each robot sent.
pub fn compare(
    results: &[RobotResult],
    rows: impl IntoIterator<Item = (usize, i64)>,
) -> Comparison {
    let mut seen: Vec<Vec<bool>> = results
        .iter()
        .map(|r| vec![false; r.sent_ts.len()])
        .collect();
    let mut c = Comparison::default();
    for (robot, ts) in rows {
        let hit = results
            .get(robot)
            .and_then(|r| r.sent_ts.binary_search(&ts).ok());
        match hit {
            Some(i) if !seen[robot][i] => seen[robot][i] = true,
            _ => c.duplicated += 1,
        }
    }
    for (r, seen) in results.iter().zip(&seen) {
        for (&acked, &seen) in r.acked.iter().zip(seen) {
            match (acked, seen) {
                (true, true) => c.stored += 1,
                (true, false) => c.lost += 1,
                (false, true) => {
                    c.stored += 1;
                    c.stored_unacked += 1;
                }
                (false, false) => {}
            }
        }
    }
    c
}

/// Waits until every acknowledged message has a row (at most `wait_timeout`), then
/// compares. `ids[i]` is the robot of `results[i]`; `first_publish` is when the run's
/// first message went out.
pub async fn check(
    pool: &PgPool,
    ids: &[String],
    results: &[RobotResult],
    wait_timeout: Duration,
    first_publish: Option<Instant>,
) -> Result<Database, sqlx::Error> {
    let published: u64 = results.iter().map(|r| r.sent_ts.len() as u64).sum();
    let acked: u64 = results
        .iter()
        .map(|r| r.acked.iter().filter(|a| **a).count() as u64)
        .sum();
    let mut db = Database {
        published,
        acked,
        ..Database::default()
    };
    let (Some(first), Some(last)) = (
        results.iter().filter_map(|r| r.sent_ts.first()).min(),
        results.iter().filter_map(|r| r.sent_ts.last()).max(),
    ) else {
        return Ok(db);
    };
    let since = DateTime::<Utc>::from_timestamp_micros(*first).unwrap_or_default();
    let until = DateTime::<Utc>::from_timestamp_micros(*last).unwrap_or_default();

    let keys: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, robot_id FROM robots WHERE robot_id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    let by_id: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let robot_index: HashMap<i32, usize> = keys
        .iter()
        .filter_map(|(key, id)| Some((*key, *by_id.get(id.as_str())?)))
        .collect();
    let keys: Vec<i32> = robot_index.keys().copied().collect();

    // In after-commit mode every acknowledged message is committed already; behind an
    // external broker (which acknowledges on receipt) the daemon may still be writing.
    let until_wait = Instant::now() + wait_timeout;
    loop {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM metrics WHERE robot = ANY($1) AND ts BETWEEN $2 AND $3",
        )
        .bind(&keys)
        .bind(since)
        .bind(until)
        .fetch_one(pool)
        .await?;
        if count as u64 >= acked {
            db.committed_secs = first_publish.map(|t| t.elapsed().as_secs_f64());
            db.committed_per_sec = db.committed_secs.map(|s| acked as f64 / s.max(1e-9));
            break;
        }
        if Instant::now() >= until_wait {
            tracing::warn!(
                rows = count,
                acked,
                "not every acknowledged message is in PostgreSQL after --wait-timeout; comparing what is there"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let rows: Vec<(usize, i64)> = sqlx::query_as::<_, (i32, DateTime<Utc>)>(
        "SELECT robot, ts FROM metrics WHERE robot = ANY($1) AND ts BETWEEN $2 AND $3",
    )
    .bind(&keys)
    .bind(since)
    .bind(until)
    .fetch(pool)
    .map_ok(|(key, ts)| {
        (
            robot_index.get(&key).copied().unwrap_or(usize::MAX),
            ts.timestamp_micros(),
        )
    })
    .try_collect()
    .await?;
    let c = compare(results, rows);
    db.stored = c.stored;
    db.lost = c.lost;
    db.duplicated = c.duplicated;
    db.stored_unacked = c.stored_unacked;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot(sent: &[i64], acked: &[bool]) -> RobotResult {
        RobotResult {
            sent_ts: sent.to_vec(),
            acked: acked.to_vec(),
            latencies_us: Vec::new(),
            sample_seconds: Vec::new(),
        }
    }

    #[test]
    fn every_message_stored_once_is_zero_lost_zero_duplicated() {
        let results = [robot(&[10, 20, 30], &[true; 3]), robot(&[15], &[true])];
        let c = compare(&results, [(0, 30), (1, 15), (0, 10), (0, 20)]);
        assert_eq!(
            c,
            Comparison {
                stored: 4,
                ..Comparison::default()
            }
        );
    }

    #[test]
    fn a_missing_acked_row_is_lost_and_an_extra_or_unknown_row_is_duplicated() {
        let results = [robot(&[10, 20, 30], &[true, true, false])];
        // 20 missing (acked: lost); 10 twice; 25 was never sent; robot 7 is not ours;
        // 30 stored though never acknowledged.
        let c = compare(&results, [(0, 10), (0, 10), (0, 25), (7, 10), (0, 30)]);
        assert_eq!(
            c,
            Comparison {
                stored: 2,
                lost: 1,
                duplicated: 3,
                stored_unacked: 1
            }
        );
    }

    #[test]
    fn an_unacknowledged_message_without_a_row_is_not_a_database_loss() {
        let results = [robot(&[10, 20], &[true, false])];
        let c = compare(&results, [(0, 10)]);
        assert_eq!(c.lost, 0);
        assert_eq!(c.stored, 1);
    }
}
