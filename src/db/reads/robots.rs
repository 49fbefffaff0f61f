//! `robots` as the API reads them: the registry (TonyPi's `robots-db` shape, with the
//! battery and temperature thresholds that decide for the robot, from
//! `alert_thresholds`), a robot's key, the robots a command may go to, those heard from
//! recently, the fleet counts, and the settings sent to a robot (`robot_config`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::alerts::{self, Watched};
use crate::config::ThresholdsConfig;
use crate::db::reads::alerts::ThresholdScopes;

/// The robots columns ([`RobotRow`]'s, thresholds apart).
const ROBOT_COLUMNS: &str = "id, robot_id, name, description, location, status, \
    settings, first_seen, last_seen, created_at, updated_at, is_active";

/// A registered robot; its thresholds are its own `alert_thresholds` rows, else the
/// fleet-wide rows, else the built-in defaults (enabled or not).
#[derive(Debug)]
pub struct RobotRow {
    pub id: i32,
    pub robot_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub status: String,
    pub battery_threshold_low: f64,
    pub battery_threshold_critical: f64,
    pub temp_threshold_warning: f64,
    pub temp_threshold_critical: f64,
    pub settings: Value,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub is_active: bool,
}

/// Read by column position ([`ROBOT_COLUMNS`]' order): a long robot list spends its
/// time per row, so no name lookups. The thresholds are filled in afterwards
/// (`with_thresholds`).
impl FromRow<'_, PgRow> for RobotRow {
    fn from_row(r: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(RobotRow {
            id: r.try_get(0)?,
            robot_id: r.try_get(1)?,
            name: r.try_get(2)?,
            description: r.try_get(3)?,
            location: r.try_get(4)?,
            status: r.try_get(5)?,
            battery_threshold_low: 0.0,
            battery_threshold_critical: 0.0,
            temp_threshold_warning: 0.0,
            temp_threshold_critical: 0.0,
            settings: r.try_get(6)?,
            first_seen: r.try_get(7)?,
            last_seen: r.try_get(8)?,
            created_at: r.try_get(9)?,
            updated_at: r.try_get(10)?,
            is_active: r.try_get(11)?,
        })
    }
}

/// Fills in the robots' thresholds (one query for all of them).
async fn with_thresholds(
    pool: &PgPool,
    builtin: &ThresholdsConfig,
    mut rows: Vec<RobotRow>,
) -> Result<Vec<RobotRow>, sqlx::Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.robot_id.as_str()).collect();
    let scopes = ThresholdScopes::read(pool, &ids).await?;
    let builtin = alerts::builtin(builtin);
    for r in &mut rows {
        let of = |w: Watched| scopes.deciding(&r.robot_id, w, builtin[w as usize]);
        let (battery, temperature) = (of(Watched::Battery), of(Watched::Temperature));
        r.battery_threshold_low = battery.warning;
        r.battery_threshold_critical = battery.critical;
        r.temp_threshold_warning = temperature.warning;
        r.temp_threshold_critical = temperature.critical;
    }
    Ok(rows)
}

/// The active robots, by robot id.
pub async fn active(
    pool: &PgPool,
    builtin: &ThresholdsConfig,
) -> Result<Vec<RobotRow>, sqlx::Error> {
    let rows = active_rows(pool).await?;
    with_thresholds(pool, builtin, rows).await
}

/// The active robots' rows without their thresholds (not read: zero), for pages that
/// show none (`management/robots`): one query instead of two.
pub async fn active_rows(pool: &PgPool) -> Result<Vec<RobotRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ROBOT_COLUMNS} FROM robots WHERE is_active ORDER BY robot_id"
    )))
    .fetch_all(pool)
    .await
}

/// One robot, active or not.
pub async fn get(
    pool: &PgPool,
    builtin: &ThresholdsConfig,
    robot_id: &str,
) -> Result<Option<RobotRow>, sqlx::Error> {
    let row: Option<RobotRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ROBOT_COLUMNS} FROM robots WHERE robot_id = $1"
    )))
    .bind(robot_id)
    .fetch_optional(pool)
    .await?;
    Ok(with_thresholds(pool, builtin, row.into_iter().collect())
        .await?
        .pop())
}

/// The robot's key (`robots.id`, what `metrics` and `metric_latest` store), active or
/// not; `None` for a robot never heard of.
pub async fn key(pool: &PgPool, robot_id: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM robots WHERE robot_id = $1")
        .bind(robot_id)
        .fetch_optional(pool)
        .await
}

/// Whether `robot_id` is a registered, active robot (commands go to known robots only).
pub async fn is_known_robot(pool: &PgPool, robot_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM robots WHERE robot_id = $1 AND is_active)")
        .bind(robot_id)
        .fetch_one(pool)
        .await
}

/// The active robots not marked offline: those a broadcast expects answers from.
pub async fn online_robots(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT robot_id FROM robots WHERE is_active AND status <> 'offline' ORDER BY robot_id",
    )
    .fetch_all(pool)
    .await
}

/// An active robot heard from recently.
#[derive(Debug, sqlx::FromRow)]
pub struct SeenRobot {
    pub id: i32,
    pub robot_id: String,
    pub status: String,
    pub last_seen: Option<DateTime<Utc>>,
    pub ip_address: Option<String>,
    pub camera_url: Option<String>,
}

/// The active robots seen at or after `since`, by robot id (at most 10,000).
pub async fn seen_since(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<SeenRobot>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, robot_id, status, last_seen, ip_address, camera_url FROM robots \
         WHERE is_active AND last_seen >= $1 ORDER BY robot_id LIMIT 10000",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Counts over the fleet, in one round trip.
#[derive(Debug, sqlx::FromRow)]
pub struct FleetCounts {
    /// Active robots.
    pub total_robots: i64,
    /// Active robots with status `online`.
    pub online_robots: i64,
    pub total_jobs: i64,
    pub active_jobs: i64,
    /// Completed since midnight UTC.
    pub completed_jobs_today: i64,
}

/// The fleet's robot and job counts.
pub async fn counts(pool: &PgPool) -> Result<FleetCounts, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM robots WHERE is_active) AS total_robots, \
                (SELECT count(*) FROM robots WHERE is_active AND status = 'online') AS online_robots, \
                (SELECT count(*) FROM jobs) AS total_jobs, \
                (SELECT count(*) FROM jobs WHERE status = 'active') AS active_jobs, \
                (SELECT count(*) FROM jobs WHERE status = 'completed' \
                    AND end_time >= date_trunc('day', now())) AS completed_jobs_today",
    )
    .fetch_one(pool)
    .await
}

/// What the system overview counts, in one round trip.
#[derive(Debug, sqlx::FromRow)]
pub struct SystemCounts {
    /// Active robots neither `offline` nor `unknown` (never heard from).
    pub active_robots: i64,
    /// Active robots.
    pub total_robots: i64,
    /// Commands sent since midnight UTC (a broadcast counts once).
    pub commands_today: i64,
}

/// The robots connected and the commands sent today.
pub async fn system_counts(pool: &PgPool) -> Result<SystemCounts, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM robots WHERE is_active \
                    AND status NOT IN ('offline', 'unknown')) AS active_robots, \
                (SELECT count(*) FROM robots WHERE is_active) AS total_robots, \
                (SELECT count(DISTINCT command_id) FROM commands \
                    WHERE sent_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
                    AS commands_today",
    )
    .fetch_one(pool)
    .await
}

/// The settings stored for robot key `robot`: (config type, the keys sent so far), by
/// config type.
pub async fn config(pool: &PgPool, robot: i32) -> Result<Vec<(String, Value)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT config_type, config_data FROM robot_config WHERE robot = $1 ORDER BY config_type",
    )
    .bind(robot)
    .fetch_all(pool)
    .await
}
