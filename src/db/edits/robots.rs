//! The robot registry as operators change it through TonyPi's `robots-db` routes:
//! register, update the given fields, deactivate (a soft delete: the robot's data and
//! key stay), and store the settings sent to a robot (`robot_config`). Robots the
//! ingest path first hears of are added by `db::writes::robots`. The threshold fields
//! are the robot's own `alert_thresholds` rows (battery and temperature), written in the
//! same transaction, as is the change's audit row (`db::edits::audit`).

use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use crate::alerts::{self, Watched};
use crate::audit::{Actor, Entry, action};
use crate::config::ThresholdsConfig;
use crate::db::edits::alerts::set_robot_threshold;
use crate::db::edits::audit;

/// A robot to register; fields left `None` stay unset (a threshold unset follows the
/// fleet-wide row or the built-in default, the name defaults to the robot id).
#[derive(Debug, Default)]
pub struct NewRobot<'a> {
    pub robot_id: &'a str,
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub location: Option<&'a str>,
    pub battery_threshold_low: Option<f64>,
    pub battery_threshold_critical: Option<f64>,
    pub temp_threshold_warning: Option<f64>,
    pub temp_threshold_critical: Option<f64>,
}

/// Registers a robot as `offline` with its thresholds; `false` when one with that id
/// exists already.
pub async fn create(
    pool: &PgPool,
    actor: &Actor,
    builtin: &ThresholdsConfig,
    r: &NewRobot<'_>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO robots (robot_id, name, description, location, status) \
         VALUES ($1, COALESCE($2, $1), $3, $4, 'offline') \
         ON CONFLICT (robot_id) DO NOTHING",
    )
    .bind(r.robot_id)
    .bind(r.name)
    .bind(r.description)
    .bind(r.location)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if inserted {
        let given = [
            (
                Watched::Battery,
                r.battery_threshold_low,
                r.battery_threshold_critical,
            ),
            (
                Watched::Temperature,
                r.temp_threshold_warning,
                r.temp_threshold_critical,
            ),
        ];
        set_thresholds(&mut tx, r.robot_id, builtin, given).await?;
    }
    if !inserted {
        return Ok(false);
    }
    let e = Entry::new(
        action::ROBOT_CREATE,
        r.robot_id.to_string(),
        format!("Robot created: {}", r.robot_id),
    )
    .robot(r.robot_id)
    .details(json!({
        "name": r.name, "description": r.description, "location": r.location,
        "battery_threshold_low": r.battery_threshold_low,
        "battery_threshold_critical": r.battery_threshold_critical,
        "temp_threshold_warning": r.temp_threshold_warning,
        "temp_threshold_critical": r.temp_threshold_critical,
    }));
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Writes the robot's own rows for the (metric, warning, critical) given.
async fn set_thresholds(
    conn: &mut PgConnection,
    robot_id: &str,
    builtin: &ThresholdsConfig,
    given: [(Watched, Option<f64>, Option<f64>); 2],
) -> Result<(), sqlx::Error> {
    let builtin = alerts::builtin(builtin);
    for (w, warning, critical) in given {
        if warning.is_some() || critical.is_some() {
            set_robot_threshold(conn, robot_id, w, warning, critical, builtin[w as usize]).await?;
        }
    }
    Ok(())
}

/// The fields to change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct RobotChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub location: Option<&'a str>,
    pub status: Option<&'a str>,
    pub battery_threshold_low: Option<f64>,
    pub battery_threshold_critical: Option<f64>,
    pub temp_threshold_warning: Option<f64>,
    pub temp_threshold_critical: Option<f64>,
    /// Replaces the settings object as a whole.
    pub settings: Option<Value>,
    pub is_active: Option<bool>,
}

/// Changes the given fields of robot `robot_id` (thresholds in its own
/// `alert_thresholds` rows); `false` when there is no such robot.
pub async fn update(
    pool: &PgPool,
    actor: &Actor,
    builtin: &ThresholdsConfig,
    robot_id: &str,
    u: &RobotChanges<'_>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE robots SET name = COALESCE($2, name), description = COALESCE($3, description), \
             location = COALESCE($4, location), status = COALESCE($5, status), \
             settings = COALESCE($6, settings), is_active = COALESCE($7, is_active), \
             updated_at = now() \
         WHERE robot_id = $1",
    )
    .bind(robot_id)
    .bind(u.name)
    .bind(u.description)
    .bind(u.location)
    .bind(u.status)
    .bind(&u.settings)
    .bind(u.is_active)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if changed {
        let given = [
            (
                Watched::Battery,
                u.battery_threshold_low,
                u.battery_threshold_critical,
            ),
            (
                Watched::Temperature,
                u.temp_threshold_warning,
                u.temp_threshold_critical,
            ),
        ];
        set_thresholds(&mut tx, robot_id, builtin, given).await?;
    }
    if !changed {
        return Ok(false);
    }
    let e = Entry::new(
        action::ROBOT_UPDATE,
        robot_id.to_string(),
        format!("Robot updated: {robot_id}"),
    )
    .robot(robot_id)
    .details(json!({
        "name": u.name, "description": u.description, "location": u.location,
        "status": u.status, "is_active": u.is_active, "settings": u.settings,
        "battery_threshold_low": u.battery_threshold_low,
        "battery_threshold_critical": u.battery_threshold_critical,
        "temp_threshold_warning": u.temp_threshold_warning,
        "temp_threshold_critical": u.temp_threshold_critical,
    }));
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Soft-deletes robot `robot_id` (`is_active = false`); `false` when there is no such
/// robot.
pub async fn deactivate(pool: &PgPool, actor: &Actor, robot_id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let changed =
        sqlx::query("UPDATE robots SET is_active = false, updated_at = now() WHERE robot_id = $1")
            .bind(robot_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    let e = Entry::new(
        action::ROBOT_DELETE,
        robot_id.to_string(),
        format!("Robot deleted: {robot_id}"),
    )
    .robot(robot_id);
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Stores settings sent to `robot_id` under `config_type`: the keys of `data` are added
/// to those stored (a key sent again takes its new value); `command_id` is the command
/// that published them. `false` when there is no such robot.
pub async fn store_config(
    pool: &PgPool,
    robot_id: &str,
    config_type: &str,
    data: &Value,
    command_id: &str,
) -> Result<bool, sqlx::Error> {
    let stored = sqlx::query(
        "INSERT INTO robot_config (robot, config_type, config_data, command_id) \
         SELECT id, $2, $3, $4 FROM robots WHERE robot_id = $1 \
         ON CONFLICT (robot, config_type) DO UPDATE \
         SET config_data = robot_config.config_data || EXCLUDED.config_data, \
             command_id = EXCLUDED.command_id, updated_at = now()",
    )
    .bind(robot_id)
    .bind(config_type)
    .bind(data)
    .bind(command_id)
    .execute(pool)
    .await?;
    Ok(stored.rows_affected() > 0)
}
