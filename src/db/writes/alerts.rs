//! `alerts`: threshold alerts evaluated on a batch's readings (rules in `crate::alerts`),
//! in set operations: one read of the robots' thresholds, one read (locking) of the
//! newest alert per robot and metric, then one insert and one update for the alerts the
//! batch opened or changed, and a log row (category `alert`) per open, escalation and
//! resolution.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::alerts::{Alert, AlertSettings, Event, EventAt, Level, Thresholds, Watched};
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
    metric: String,
    level: String,
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

/// A robot's own thresholds (NULL: the fleet default).
#[derive(sqlx::FromRow)]
struct RobotThresholds {
    robot_id: String,
    cpu_threshold_warning: Option<f64>,
    cpu_threshold_critical: Option<f64>,
    memory_threshold_warning: Option<f64>,
    memory_threshold_critical: Option<f64>,
    temp_threshold_warning: Option<f64>,
    temp_threshold_critical: Option<f64>,
    battery_threshold_low: Option<f64>,
    battery_threshold_critical: Option<f64>,
    servo_temp_threshold_warning: Option<f64>,
    servo_temp_threshold_critical: Option<f64>,
    servo_voltage_threshold_low: Option<f64>,
    servo_voltage_threshold_critical: Option<f64>,
}

impl RobotThresholds {
    fn of(&self, w: Watched, defaults: Thresholds) -> Thresholds {
        let (warning, critical) = match w {
            Watched::Cpu => (self.cpu_threshold_warning, self.cpu_threshold_critical),
            Watched::Memory => (
                self.memory_threshold_warning,
                self.memory_threshold_critical,
            ),
            Watched::Temperature => (self.temp_threshold_warning, self.temp_threshold_critical),
            Watched::Battery => (self.battery_threshold_low, self.battery_threshold_critical),
            Watched::ServoTemperature => (
                self.servo_temp_threshold_warning,
                self.servo_temp_threshold_critical,
            ),
            Watched::ServoVoltage => (
                self.servo_voltage_threshold_low,
                self.servo_voltage_threshold_critical,
            ),
        };
        Thresholds {
            warning: warning.unwrap_or(defaults.warning),
            critical: critical.unwrap_or(defaults.critical),
        }
    }
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
    let thresholds: HashMap<String, RobotThresholds> = sqlx::query_as::<_, RobotThresholds>(
        "SELECT robot_id, cpu_threshold_warning, cpu_threshold_critical, \
                memory_threshold_warning, memory_threshold_critical, \
                temp_threshold_warning, temp_threshold_critical, \
                battery_threshold_low, battery_threshold_critical, \
                servo_temp_threshold_warning, servo_temp_threshold_critical, \
                servo_voltage_threshold_low, servo_voltage_threshold_critical \
         FROM robots WHERE robot_id = ANY($1)",
    )
    .bind(&robots)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|t| (t.robot_id.clone(), t))
    .collect();

    let key_robots: Vec<&str> = readings.by_key.keys().map(|(r, _)| *r).collect();
    let key_metrics: Vec<&str> = readings.by_key.keys().map(|(_, w)| w.name()).collect();
    // The newest alert of each robot and metric, locked: instances sharing a broker's
    // traffic evaluate one robot's alerts one after the other.
    let stored: Vec<StoredAlert> = sqlx::query_as(
        "SELECT id, robot_id, metric, level, value, threshold, first_triggered, last_triggered, \
                count, resolved, resolved_at, resolution_logged, last_reading_at \
         FROM alerts WHERE id IN ( \
             SELECT max(a.id) FROM alerts a \
             JOIN UNNEST($1::text[], $2::text[]) AS k(robot_id, metric) USING (robot_id, metric) \
             GROUP BY a.robot_id, a.metric) \
         ORDER BY id FOR UPDATE",
    )
    .bind(&key_robots)
    .bind(&key_metrics)
    .fetch_all(&mut *conn)
    .await?;
    let mut stored: HashMap<(String, String), StoredAlert> = stored
        .into_iter()
        .map(|a| ((a.robot_id.clone(), a.metric.clone()), a))
        .collect();

    let mut inserts: Vec<(&str, Watched, Alert)> = Vec::new();
    let mut updates: Vec<(&str, Watched, Alert)> = Vec::new();
    for ((robot, w), values) in &readings.by_key {
        let t = thresholds
            .get(*robot)
            .map_or(settings.default_for(*w), |r| {
                r.of(*w, settings.default_for(*w))
            });
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
        level: Level::from_name(&a.level)?,
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
        source: Some("fleetsink".into()),
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

type Columns<'a> = (
    Vec<&'a str>,
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<f64>,
    Vec<f64>,
    Vec<DateTime<Utc>>,
    Vec<DateTime<Utc>>,
    Vec<i32>,
    Vec<bool>,
    Vec<Option<DateTime<Utc>>>,
    Vec<bool>,
    Vec<DateTime<Utc>>,
);

fn columns<'a>(rows: &[(&'a str, Watched, Alert)]) -> Columns<'a> {
    let mut c: Columns = Default::default();
    for (robot, w, a) in rows {
        c.0.push(robot);
        c.1.push(w.name());
        c.2.push(a.level.name());
        c.3.push(a.value);
        c.4.push(a.threshold);
        c.5.push(a.first_triggered);
        c.6.push(a.last_triggered);
        c.7.push(a.count);
        c.8.push(a.resolved);
        c.9.push(a.resolved_at);
        c.10.push(a.resolution_logged);
        c.11.push(a.last_reading_at);
    }
    c
}

async fn insert(
    conn: &mut PgConnection,
    rows: &[(&str, Watched, Alert)],
) -> Result<u64, sqlx::Error> {
    let c = columns(rows);
    // An open alert another instance inserted a moment ago wins (the unique index
    // allows one open alert per robot and metric).
    Ok(sqlx::query(
        "INSERT INTO alerts (robot_id, metric, level, value, threshold, first_triggered, \
             last_triggered, count, resolved, resolved_at, resolution_logged, last_reading_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], \
             $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::bool[], $10::timestamptz[], \
             $11::bool[], $12::timestamptz[]) \
         ON CONFLICT (robot_id, metric) WHERE NOT resolved DO NOTHING",
    )
    .bind(&c.0)
    .bind(&c.1)
    .bind(&c.2)
    .bind(&c.3)
    .bind(&c.4)
    .bind(&c.5)
    .bind(&c.6)
    .bind(&c.7)
    .bind(&c.8)
    .bind(&c.9)
    .bind(&c.10)
    .bind(&c.11)
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
        "UPDATE alerts a SET level = u.level, value = u.value, threshold = u.threshold, \
             last_triggered = u.last_triggered, count = u.count, resolved = u.resolved, \
             resolved_at = u.resolved_at, resolution_logged = u.resolution_logged, \
             last_reading_at = u.last_reading_at, updated_at = now() \
         FROM UNNEST($1::int8[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[], \
             $6::int4[], $7::bool[], $8::timestamptz[], $9::bool[], $10::timestamptz[]) \
           AS u(id, level, value, threshold, last_triggered, count, resolved, resolved_at, \
                resolution_logged, last_reading_at) \
         WHERE a.id = u.id",
    )
    .bind(&ids)
    .bind(&c.2)
    .bind(&c.3)
    .bind(&c.4)
    .bind(&c.6)
    .bind(&c.7)
    .bind(&c.8)
    .bind(&c.9)
    .bind(&c.10)
    .bind(&c.11)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
