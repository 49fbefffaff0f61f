//! `alerts`: threshold alerts evaluated on a batch's readings (rules in `crate::alerts`),
//! in set operations: one read of the thresholds that concern the batch's robots
//! (`alert_thresholds`, through its unique index, so an edit counts from the next
//! batch on), one read (locking) of the newest threshold alert per robot and metric,
//! then one insert and one update for the alerts the batch opened or changed, and a log
//! row (category `alert`) per open, escalation and resolution.
//!
//! fleetsink's own alerts are the rows with `source = 'fleetsink'`; manual alerts of the
//! same robot and type are neither read nor changed here.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::alerts::{self, Alert, AlertSettings, Event, EventAt, Level, Watched};
use crate::db::reads::alerts::{SOURCE, ThresholdScopes};
use crate::model::{Decoded, LogRow, message_fingerprint};

/// One reading: value and time.
type Reading = (f64, DateTime<Utc>);

/// A batch's readings of watched metrics, by robot and metric: the worst of each
/// message's values (the hottest servo, the lowest voltage).
#[derive(Default)]
pub(super) struct Readings<'a> {
    by_key: BTreeMap<(&'a str, Watched), Vec<Reading>>,
}

impl<'a> Readings<'a> {
    pub fn add(&mut self, d: &'a Decoded) {
        let mut worst: BTreeMap<Watched, f64> = BTreeMap::new();
        for m in &d.metrics {
            if let Some(w) = Watched::of_metric(&m.name) {
                let v = worst.entry(w).or_insert(m.value);
                *v = w.worse(*v, m.value);
            }
        }
        for (w, v) in worst {
            self.by_key
                .entry((d.robot_id.as_str(), w))
                .or_default()
                .push((v, d.ts));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[derive(sqlx::FromRow)]
struct StoredAlert {
    id: i64,
    robot_id: String,
    alert_type: String,
    severity: String,
    value: f64,
    threshold: f64,
    first_triggered: DateTime<Utc>,
    last_triggered: DateTime<Utc>,
    count: i32,
    resolved: bool,
    resolved_at: Option<DateTime<Utc>>,
    resolution_logged: bool,
    last_reading_at: DateTime<Utc>,
}

/// Evaluates the batch's readings; pushes the alert log rows onto `logs`. Returns the
/// alert rows written.
pub(super) async fn evaluate(
    conn: &mut PgConnection,
    readings: &Readings<'_>,
    settings: &AlertSettings,
    logs: &mut Vec<LogRow>,
    events: &mut super::AlertEvents,
) -> Result<u64, sqlx::Error> {
    let robots: Vec<&str> = {
        let mut r: Vec<&str> = readings.by_key.keys().map(|(r, _)| *r).collect();
        r.dedup();
        r
    };
    let scopes = ThresholdScopes::read(&mut *conn, &robots).await?;
    let key_robots: Vec<&str> = readings.by_key.keys().map(|(r, _)| *r).collect();
    let key_metrics: Vec<&str> = readings.by_key.keys().map(|(_, w)| w.name()).collect();
    // The newest alert of each robot and metric, locked: instances sharing a broker's
    // traffic evaluate one robot's alerts one after the other.
    let stored: Vec<StoredAlert> = sqlx::query_as(
        "SELECT id, robot_id, alert_type, severity, value, threshold, first_triggered, \
                last_triggered, count, resolved, resolved_at, resolution_logged, last_reading_at \
         FROM alerts WHERE id IN ( \
             SELECT max(a.id) FROM alerts a \
             JOIN UNNEST($1::text[], $2::text[]) AS k(robot_id, alert_type) \
               USING (robot_id, alert_type) \
             WHERE a.source = $3 \
             GROUP BY a.robot_id, a.alert_type) \
         ORDER BY id FOR UPDATE",
    )
    .bind(&key_robots)
    .bind(&key_metrics)
    .bind(SOURCE)
    .fetch_all(&mut *conn)
    .await?;
    let mut stored: HashMap<(String, String), StoredAlert> = stored
        .into_iter()
        .map(|a| ((a.robot_id.clone(), a.alert_type.clone()), a))
        .collect();

    let mut inserts: Vec<(&str, Watched, Alert)> = Vec::new();
    let mut updates: Vec<(&str, Watched, Alert)> = Vec::new();
    for ((robot, w), values) in &readings.by_key {
        let Some(t) = scopes.effective(robot, *w, settings.default_for(*w)) else {
            continue; // disabled at the deciding scope: no alerts for this metric
        };
        let before = stored
            .remove(&(robot.to_string(), w.name().to_string()))
            .and_then(to_alert);
        let mut values = values.clone();
        values.sort_by_key(|(_, ts)| *ts);
        let observed = Alert::observe(before, *w, &t, &settings.policy, &values);
        for e in &observed.events {
            events.count(e.event);
            logs.push(alert_log(robot, *w, e));
        }
        let changed = observed
            .replaced
            .into_iter()
            .chain(observed.alert.filter(|_| observed.changed));
        for a in changed {
            if a.id.is_some() {
                updates.push((robot, *w, a));
            } else {
                inserts.push((robot, *w, a));
            }
        }
    }
    let mut written = 0;
    if !updates.is_empty() {
        written += update(conn, &updates).await?;
    }
    if !inserts.is_empty() {
        written += insert(conn, &inserts).await?;
    }
    Ok(written)
}

fn to_alert(a: StoredAlert) -> Option<Alert> {
    Some(Alert {
        id: Some(a.id),
        level: Level::from_name(&a.severity)?,
        value: a.value,
        threshold: a.threshold,
        first_triggered: a.first_triggered,
        last_triggered: a.last_triggered,
        count: a.count,
        resolved: a.resolved,
        resolved_at: a.resolved_at,
        resolution_logged: a.resolution_logged,
        last_reading_at: a.last_reading_at,
    })
}

/// The log row of one alert event; keyed by the alert's start and the event, so a
/// rewritten batch does not log it twice.
fn alert_log(robot: &str, w: Watched, e: &EventAt) -> LogRow {
    let (value, threshold) = (e.value, e.threshold);
    let (level, what) = match e.event {
        Event::Opened(Level::Warning) => ("WARNING", "warning"),
        Event::Opened(Level::Critical) => ("CRITICAL", "critical"),
        Event::Escalated => ("CRITICAL", "escalated to critical"),
        Event::Resolved => ("INFO", "resolved"),
    };
    let relation = if w.low_is_bad() { "below" } else { "above" };
    let message = match e.event {
        Event::Resolved => format!("{} alert resolved: {value}", w.name()),
        _ => format!(
            "{} {what}: {value} {relation} threshold {threshold}",
            w.name()
        ),
    };
    LogRow {
        robot_id: Some(robot.to_string()),
        ts: e.ts,
        level: level.into(),
        category: "alert".into(),
        source: Some(SOURCE.into()),
        message,
        details: Some(serde_json::json!({
            "metric": w.name(), "level": e.level.name(), "event": what,
            "value": value, "threshold": threshold,
        })),
        dedup_key: message_fingerprint(
            &format!(
                "{robot}/alert/{}/{}",
                w.name(),
                e.first_triggered.to_rfc3339()
            ),
            what.as_bytes(),
        ),
    }
}

/// The alerts to write, column by column (for `UNNEST`).
#[derive(Default)]
struct Columns<'a> {
    robot: Vec<&'a str>,
    alert_type: Vec<&'static str>,
    severity: Vec<&'static str>,
    value: Vec<f64>,
    threshold: Vec<f64>,
    first_triggered: Vec<DateTime<Utc>>,
    last_triggered: Vec<DateTime<Utc>>,
    count: Vec<i32>,
    resolved: Vec<bool>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    resolution_logged: Vec<bool>,
    last_reading_at: Vec<DateTime<Utc>>,
    title: Vec<String>,
    message: Vec<String>,
}

fn columns<'a>(rows: &[(&'a str, Watched, Alert)]) -> Columns<'a> {
    let mut c = Columns::default();
    for (robot, w, a) in rows {
        c.robot.push(robot);
        c.alert_type.push(w.name());
        c.severity.push(a.level.name());
        c.value.push(a.value);
        c.threshold.push(a.threshold);
        c.first_triggered.push(a.first_triggered);
        c.last_triggered.push(a.last_triggered);
        c.count.push(a.count);
        c.resolved.push(a.resolved);
        c.resolved_at.push(a.resolved_at);
        c.resolution_logged.push(a.resolution_logged);
        c.last_reading_at.push(a.last_reading_at);
        c.title.push(alerts::title(*w, robot));
        c.message.push(alerts::message(*w, a.value, a.threshold));
    }
    c
}

async fn insert(
    conn: &mut PgConnection,
    rows: &[(&str, Watched, Alert)],
) -> Result<u64, sqlx::Error> {
    let c = columns(rows);
    // An open alert another instance inserted a moment ago wins (the unique index
    // allows one open threshold alert per robot and metric).
    Ok(sqlx::query(
        "INSERT INTO alerts (robot_id, alert_type, severity, value, threshold, first_triggered, \
             last_triggered, count, resolved, resolved_at, resolution_logged, last_reading_at, \
             title, message, source) \
         SELECT *, $13 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], \
             $5::float8[], $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::bool[], \
             $10::timestamptz[], $11::bool[], $12::timestamptz[], $14::text[], $15::text[]) \
         ON CONFLICT (robot_id, alert_type) WHERE NOT resolved AND source = 'fleetsink' \
         DO NOTHING",
    )
    .bind(&c.robot)
    .bind(&c.alert_type)
    .bind(&c.severity)
    .bind(&c.value)
    .bind(&c.threshold)
    .bind(&c.first_triggered)
    .bind(&c.last_triggered)
    .bind(&c.count)
    .bind(&c.resolved)
    .bind(&c.resolved_at)
    .bind(&c.resolution_logged)
    .bind(&c.last_reading_at)
    .bind(SOURCE)
    .bind(&c.title)
    .bind(&c.message)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

async fn update(
    conn: &mut PgConnection,
    rows: &[(&str, Watched, Alert)],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<i64> = rows.iter().filter_map(|(_, _, a)| a.id).collect();
    let c = columns(rows);
    Ok(sqlx::query(
        "UPDATE alerts a SET severity = u.severity, value = u.value, threshold = u.threshold, \
             last_triggered = u.last_triggered, count = u.count, resolved = u.resolved, \
             resolved_at = u.resolved_at, resolution_logged = u.resolution_logged, \
             last_reading_at = u.last_reading_at, message = u.message, updated_at = now() \
         FROM UNNEST($1::int8[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[], \
             $6::int4[], $7::bool[], $8::timestamptz[], $9::bool[], $10::timestamptz[], \
             $11::text[]) \
           AS u(id, severity, value, threshold, last_triggered, count, resolved, resolved_at, \
                resolution_logged, last_reading_at, message) \
         WHERE a.id = u.id",
    )
    .bind(&ids)
    .bind(&c.severity)
    .bind(&c.value)
    .bind(&c.threshold)
    .bind(&c.last_triggered)
    .bind(&c.count)
    .bind(&c.resolved)
    .bind(&c.resolved_at)
    .bind(&c.resolution_logged)
    .bind(&c.last_reading_at)
    .bind(&c.message)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
