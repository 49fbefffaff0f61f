//! What operators change in `alerts` and `alert_thresholds` through TonyPi's alerts
//! routes (and robots-db's threshold fields): manual alerts, acknowledging, resolving,
//! deleting; threshold rows created, updated, deleted. The evaluation reads the
//! thresholds in every batch, so a change applies from the next reading on. Each change
//! commits with its audit row (`db::edits::audit`); one that finds nothing to change
//! writes none.

use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use crate::alerts::{Thresholds, Watched};
use crate::audit::{Actor, Entry, action};
use crate::db::edits::audit;
use crate::db::reads::alerts::{ALERT_COLUMNS, AlertRow, THRESHOLD_COLUMNS, ThresholdRecord};

/// The name of the check that keeps warning before critical (`alert_thresholds_order`).
const ORDER_CHECK: &str = "alert_thresholds_order";

/// Whether `e` is a threshold row refused because its warning threshold is past its
/// critical one (the caller's 400).
pub fn is_order_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c == ORDER_CHECK)
}

/// A manual alert.
#[derive(Debug)]
pub struct NewAlert<'a> {
    pub robot_id: Option<&'a str>,
    pub alert_type: &'a str,
    pub severity: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub source: Option<&'a str>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub details: Option<&'a Value>,
}

/// Stores a manual alert (unacknowledged, unresolved) and returns it.
pub async fn create(
    pool: &PgPool,
    actor: &Actor,
    a: &NewAlert<'_>,
) -> Result<AlertRow, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: AlertRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO alerts (robot_id, alert_type, severity, title, message, source, value, \
             threshold, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {ALERT_COLUMNS}"
    )))
    .bind(a.robot_id)
    .bind(a.alert_type)
    .bind(a.severity)
    .bind(a.title)
    .bind(a.message)
    .bind(a.source)
    .bind(a.value)
    .bind(a.threshold)
    .bind(a.details)
    .fetch_one(&mut *tx)
    .await?;
    let mut e = Entry::new(
        action::ALERT_CREATE,
        row.id.to_string(),
        format!("alert {} created: {}", row.id, a.title),
    )
    .details(json!({"severity": a.severity, "alert_type": a.alert_type, "title": a.title}));
    e.robot_id = a.robot_id.map(str::to_string);
    audit::commit(tx, actor, &e).await?;
    Ok(row)
}

/// Marks alert `id` acknowledged by `by` (again, if it was); `false` when there is none.
pub async fn acknowledge(
    pool: &PgPool,
    actor: &Actor,
    id: i64,
    by: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let robot: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE alerts SET acknowledged = true, acknowledged_by = $2, acknowledged_at = now(), \
             updated_at = now() WHERE id = $1 RETURNING robot_id",
    )
    .bind(id)
    .bind(by)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(robot) = robot else {
        return Ok(false);
    };
    let mut e = Entry::new(
        action::ALERT_ACKNOWLEDGE,
        id.to_string(),
        format!("alert {id} acknowledged"),
    )
    .details(json!({ "acknowledged_by": by }));
    e.robot_id = robot;
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Marks alert `id` resolved (a resolved alert keeps its first resolution time); `false`
/// when there is none. A threshold alert whose metric is still past its threshold
/// re-opens at the next reading within `alerts.dedupe_window`.
pub async fn resolve(pool: &PgPool, actor: &Actor, id: i64) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let robot: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE alerts SET resolved = true, \
             resolved_at = CASE WHEN resolved THEN coalesce(resolved_at, now()) ELSE now() END, \
             updated_at = now() WHERE id = $1 RETURNING robot_id",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(robot) = robot else {
        return Ok(false);
    };
    let mut e = Entry::new(
        action::ALERT_RESOLVE,
        id.to_string(),
        format!("alert {id} resolved"),
    );
    e.robot_id = robot;
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Acknowledges every unacknowledged alert (of one robot, when given); how many. The
/// audit row lists their ids.
pub async fn acknowledge_all(
    pool: &PgPool,
    actor: &Actor,
    robot_id: Option<&str>,
    by: &str,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE alerts SET acknowledged = true, acknowledged_by = $2, acknowledged_at = now(), \
             updated_at = now() \
         WHERE NOT acknowledged AND ($1::text IS NULL OR robot_id = $1) RETURNING id",
    )
    .bind(robot_id)
    .bind(by)
    .fetch_all(&mut *tx)
    .await?;
    let n = ids.len() as u64;
    let scope = robot_id.map_or("every robot".to_string(), |r| format!("robot {r}"));
    let mut e = Entry::new(
        action::ALERT_ACKNOWLEDGE_ALL,
        robot_id.map(str::to_string),
        format!("{n} alerts of {scope} acknowledged"),
    )
    .details(json!({ "acknowledged_by": by, "alert_ids": ids }));
    e.robot_id = robot_id.map(str::to_string);
    audit::commit(tx, actor, &e).await?;
    Ok(n)
}

/// Deletes alert `id`; `false` when there is none.
pub async fn delete(pool: &PgPool, actor: &Actor, id: i64) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone: Option<(Option<String>, String)> =
        sqlx::query_as("DELETE FROM alerts WHERE id = $1 RETURNING robot_id, title")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((robot, title)) = gone else {
        return Ok(false);
    };
    let mut e = Entry::new(
        action::ALERT_DELETE,
        id.to_string(),
        format!("alert {id} deleted: {title}"),
    );
    e.robot_id = robot;
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// The audit entry of a threshold row set or changed.
fn threshold_entry(action: &'static str, verb: &str, t: &ThresholdRecord) -> Entry {
    let scope = t.robot_id.as_deref().unwrap_or("the fleet");
    let mut e = Entry::new(
        action,
        t.id.to_string(),
        format!(
            "{} threshold of {scope} {verb}: warning {}, critical {}{}",
            t.metric_type,
            t.warning_threshold,
            t.critical_threshold,
            if t.enabled { "" } else { " (disabled)" }
        ),
    )
    .details(json!({
        "robot_id": t.robot_id,
        "metric_type": t.metric_type,
        "warning_threshold": t.warning_threshold,
        "critical_threshold": t.critical_threshold,
        "enabled": t.enabled,
    }));
    e.robot_id = t.robot_id.clone();
    e
}

/// Sets the thresholds of `robot_id` (`None`: fleet-wide) for `metric`, creating the row
/// or replacing its values; returns it.
pub async fn upsert_threshold(
    pool: &PgPool,
    actor: &Actor,
    robot_id: Option<&str>,
    metric: Watched,
    t: Thresholds,
    enabled: bool,
) -> Result<ThresholdRecord, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: ThresholdRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO alert_thresholds (robot_id, metric_type, warning_threshold, \
             critical_threshold, enabled) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT ((coalesce(robot_id, '')), metric_type) DO UPDATE SET \
             warning_threshold = EXCLUDED.warning_threshold, \
             critical_threshold = EXCLUDED.critical_threshold, \
             enabled = EXCLUDED.enabled, updated_at = now() \
         RETURNING {THRESHOLD_COLUMNS}"
    )))
    .bind(robot_id)
    .bind(metric.name())
    .bind(t.warning)
    .bind(t.critical)
    .bind(enabled)
    .fetch_one(&mut *tx)
    .await?;
    audit::commit(
        tx,
        actor,
        &threshold_entry(action::THRESHOLD_SET, "set", &row),
    )
    .await?;
    Ok(row)
}

/// The fields of a threshold row to change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct ThresholdChanges {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub enabled: Option<bool>,
}

/// Changes threshold row `id`; `None` when there is none.
pub async fn update_threshold(
    pool: &PgPool,
    actor: &Actor,
    id: i32,
    c: &ThresholdChanges,
) -> Result<Option<ThresholdRecord>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<ThresholdRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE alert_thresholds SET warning_threshold = coalesce($2, warning_threshold), \
             critical_threshold = coalesce($3, critical_threshold), \
             enabled = coalesce($4, enabled), updated_at = now() \
         WHERE id = $1 RETURNING {THRESHOLD_COLUMNS}"
    )))
    .bind(id)
    .bind(c.warning)
    .bind(c.critical)
    .bind(c.enabled)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(t) = &row {
        let e = threshold_entry(action::THRESHOLD_UPDATE, "changed", t);
        audit::commit(tx, actor, &e).await?;
    }
    Ok(row)
}

/// Deletes threshold row `id` (its scope falls back to the next one); `false` when there
/// is none.
pub async fn delete_threshold(pool: &PgPool, actor: &Actor, id: i32) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone: Option<(Option<String>, String)> = sqlx::query_as(
        "DELETE FROM alert_thresholds WHERE id = $1 RETURNING robot_id, metric_type",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((robot, metric)) = gone else {
        return Ok(false);
    };
    let scope = robot.as_deref().unwrap_or("the fleet");
    let mut e = Entry::new(
        action::THRESHOLD_DELETE,
        id.to_string(),
        format!("{metric} threshold of {scope} deleted"),
    )
    .details(json!({ "robot_id": robot, "metric_type": metric }));
    e.robot_id = robot;
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Creates the fleet-wide rows missing among `defaults` (metric, thresholds); how many.
pub async fn init_default_thresholds(
    pool: &PgPool,
    actor: &Actor,
    defaults: &[(Watched, Thresholds)],
) -> Result<u64, sqlx::Error> {
    let metrics: Vec<&str> = defaults.iter().map(|(w, _)| w.name()).collect();
    let warning: Vec<f64> = defaults.iter().map(|(_, t)| t.warning).collect();
    let critical: Vec<f64> = defaults.iter().map(|(_, t)| t.critical).collect();
    let mut tx = pool.begin().await?;
    let created: Vec<String> = sqlx::query_scalar(
        "INSERT INTO alert_thresholds (metric_type, warning_threshold, critical_threshold) \
         SELECT * FROM UNNEST($1::text[], $2::float8[], $3::float8[]) \
         ON CONFLICT ((coalesce(robot_id, '')), metric_type) DO NOTHING RETURNING metric_type",
    )
    .bind(&metrics)
    .bind(&warning)
    .bind(&critical)
    .fetch_all(&mut *tx)
    .await?;
    let e = Entry::new(
        action::THRESHOLD_INIT_DEFAULTS,
        None,
        format!("{} default thresholds initialized", created.len()),
    )
    .details(json!({ "created": created }));
    audit::commit(tx, actor, &e).await?;
    Ok(created.len() as u64)
}

/// Sets one or both thresholds of robot `robot_id`'s own row for `metric` (robots-db's
/// threshold fields); the one not given keeps the value that decides for the robot now
/// (its row, else the fleet-wide row, else `builtin`). A new row is enabled.
pub async fn set_robot_threshold(
    conn: &mut PgConnection,
    robot_id: &str,
    metric: Watched,
    warning: Option<f64>,
    critical: Option<f64>,
    builtin: Thresholds,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_thresholds (robot_id, metric_type, warning_threshold, \
             critical_threshold) \
         SELECT $1, $2, coalesce($3, cur.warning_threshold, $5), \
                coalesce($4, cur.critical_threshold, $6) \
         FROM (SELECT 1) AS one LEFT JOIN LATERAL ( \
             SELECT warning_threshold, critical_threshold FROM alert_thresholds \
             WHERE metric_type = $2 AND coalesce(robot_id, '') IN ($1, '') \
             ORDER BY robot_id NULLS LAST LIMIT 1) AS cur ON true \
         ON CONFLICT ((coalesce(robot_id, '')), metric_type) DO UPDATE SET \
             warning_threshold = EXCLUDED.warning_threshold, \
             critical_threshold = EXCLUDED.critical_threshold, updated_at = now()",
    )
    .bind(robot_id)
    .bind(metric.name())
    .bind(warning)
    .bind(critical)
    .bind(builtin.warning)
    .bind(builtin.critical)
    .execute(conn)
    .await?;
    Ok(())
}
