//! `alerts` and `alert_thresholds` as the API (TonyPi's `alerts.py`) and the alert
//! evaluation read them: the Alerts page's list and counts, and the thresholds that
//! apply to a robot (its own row, else the fleet-wide row, else the built-in default).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};

use crate::alerts::{self, ThresholdRow, Thresholds, Watched};

/// The `source` of the alerts fleetsink's threshold evaluation raises (a manual alert
/// may not claim it): only they are deduplicated per robot and metric.
pub const SOURCE: &str = "fleetsink";

/// The columns of an alert as TonyPi answers it. A threshold alert's `details` carry
/// its episode (how often it triggered, first and last time) over any stored details.
pub(crate) const ALERT_COLUMNS: &str = "id, robot_id, alert_type, severity, title, message, \
    source, value, threshold, acknowledged, acknowledged_by, acknowledged_at, resolved, \
    resolved_at, CASE WHEN source = 'fleetsink' THEN jsonb_build_object('count', count, \
        'first_triggered', first_triggered, 'last_triggered', last_triggered) \
        || coalesce(details, '{}') ELSE details END AS details, created_at";

/// One alert, TonyPi's `AlertResponse` fields.
#[derive(Debug, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub robot_id: Option<String>,
    pub alert_type: String,
    pub severity: String,
    pub title: String,
    pub message: String,
    pub source: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved: bool,
    pub resolved_at: Option<DateTime<Utc>>,
    pub details: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// Which alerts to list; `None` does not filter.
#[derive(Debug)]
pub struct AlertFilter<'a> {
    /// Created at or after this.
    pub since: DateTime<Utc>,
    pub robot_id: Option<&'a str>,
    pub alert_type: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub acknowledged: Option<bool>,
    pub resolved: Option<bool>,
}

/// Alerts created since `f.since` that match the filter, newest first. Only the filters
/// given are in the statement, so each combination gets its own plan (the time range
/// through `alerts_created`, the open ones through `alerts_unresolved_created`, one
/// robot's through `alerts_robot_created`).
pub async fn list(
    pool: &PgPool,
    f: &AlertFilter<'_>,
    limit: i64,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE created_at >= "
    ));
    q.push_bind(f.since);
    if let Some(r) = f.robot_id {
        q.push(" AND robot_id = ").push_bind(r);
    }
    if let Some(t) = f.alert_type {
        q.push(" AND alert_type = ").push_bind(t);
    }
    if let Some(s) = f.severity {
        q.push(" AND severity = ").push_bind(s);
    }
    if let Some(a) = f.acknowledged {
        q.push(if a {
            " AND acknowledged"
        } else {
            " AND NOT acknowledged"
        });
    }
    if let Some(r) = f.resolved {
        q.push(if r {
            " AND resolved"
        } else {
            " AND NOT resolved"
        });
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(pool).await
}

/// TonyPi's alert counts.
#[derive(Debug, sqlx::FromRow)]
pub struct AlertCounts {
    pub total: i64,
    pub critical: i64,
    pub warning: i64,
    pub info: i64,
    pub unacknowledged: i64,
    pub unresolved: i64,
}

/// The counts of the alerts created since `since` (of one robot, when given), in one
/// aggregate (an index-only scan of `alerts_created`, or `alerts_robot_created`).
pub async fn counts(
    pool: &PgPool,
    since: DateTime<Utc>,
    robot_id: Option<&str>,
) -> Result<AlertCounts, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT count(*) AS total, \
                count(*) FILTER (WHERE severity = 'critical') AS critical, \
                count(*) FILTER (WHERE severity = 'warning') AS warning, \
                count(*) FILTER (WHERE severity = 'info') AS info, \
                count(*) FILTER (WHERE NOT acknowledged) AS unacknowledged, \
                count(*) FILTER (WHERE NOT resolved) AS unresolved \
         FROM alerts WHERE created_at >= ",
    );
    q.push_bind(since);
    if let Some(r) = robot_id {
        q.push(" AND robot_id = ").push_bind(r);
    }
    q.build_query_as().fetch_one(pool).await
}

/// One `alert_thresholds` row, TonyPi's `ThresholdResponse` fields.
#[derive(Debug, sqlx::FromRow)]
pub struct ThresholdRecord {
    pub id: i32,
    pub robot_id: Option<String>,
    pub metric_type: String,
    pub warning_threshold: f64,
    pub critical_threshold: f64,
    pub enabled: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub(crate) const THRESHOLD_COLUMNS: &str = "id, robot_id, metric_type, warning_threshold, \
    critical_threshold, enabled, created_at, updated_at";

/// Every threshold row or, for a robot, its rows and the fleet-wide ones; by id.
pub async fn thresholds(
    pool: &PgPool,
    robot_id: Option<&str>,
) -> Result<Vec<ThresholdRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {THRESHOLD_COLUMNS} FROM alert_thresholds \
         WHERE $1::text IS NULL OR robot_id = $1 OR robot_id IS NULL ORDER BY id"
    )))
    .bind(robot_id)
    .fetch_all(pool)
    .await
}

/// The threshold rows that concern some robots: theirs and the fleet-wide ones.
#[derive(Debug, Default)]
pub struct ThresholdScopes {
    /// By robot (`None`: fleet-wide) and metric.
    rows: HashMap<(Option<String>, Watched), ThresholdRow>,
}

#[derive(sqlx::FromRow)]
struct ScopeRow {
    robot_id: Option<String>,
    metric_type: String,
    warning_threshold: f64,
    critical_threshold: f64,
    enabled: bool,
}

impl ThresholdScopes {
    /// Reads the rows of `robots` and the fleet-wide ones, in one query through the
    /// table's unique index.
    pub async fn read<'c>(
        conn: impl PgExecutor<'c>,
        robots: &[&str],
    ) -> Result<ThresholdScopes, sqlx::Error> {
        let mut scopes: Vec<&str> = Vec::with_capacity(robots.len() + 1);
        scopes.push("");
        scopes.extend_from_slice(robots);
        let rows: Vec<ScopeRow> = sqlx::query_as(
            "SELECT robot_id, metric_type, warning_threshold, critical_threshold, enabled \
             FROM alert_thresholds WHERE coalesce(robot_id, '') = ANY($1)",
        )
        .bind(&scopes)
        .fetch_all(conn)
        .await?;
        Ok(ThresholdScopes {
            rows: rows
                .into_iter()
                .filter_map(|r| {
                    let w = Watched::of_name(&r.metric_type)?;
                    let row = ThresholdRow {
                        thresholds: Thresholds {
                            warning: r.warning_threshold,
                            critical: r.critical_threshold,
                        },
                        enabled: r.enabled,
                    };
                    Some(((r.robot_id, w), row))
                })
                .collect(),
        })
    }

    fn row(&self, robot: Option<&str>, w: Watched) -> Option<ThresholdRow> {
        self.rows.get(&(robot.map(str::to_string), w)).copied()
    }

    /// The thresholds alerts use for `robot`'s metric `w` (`None`: disabled there).
    pub fn effective(&self, robot: &str, w: Watched, builtin: Thresholds) -> Option<Thresholds> {
        alerts::effective(self.row(Some(robot), w), self.row(None, w), builtin)
    }

    /// The deciding values for `robot`'s metric `w`, enabled or not (what robots-db
    /// reports).
    pub fn deciding(&self, robot: &str, w: Watched, builtin: Thresholds) -> Thresholds {
        self.row(Some(robot), w)
            .or(self.row(None, w))
            .map_or(builtin, |r| r.thresholds)
    }
}
