//! The TonyPi backend's `pi_perf` router (`backend/routers/pi_perf.py`): a robot's
//! Raspberry Pi performance over a time range, as the UI's Performance page reads it —
//! an array of InfluxDB-style points `{time, measurement, field, value, robot_id}`.
//! TonyPi stores a status message's `system_info` as `robot_status` fields named
//! `system_<key>`; fleetsink stores them as metrics `system_info.<key>`, so
//! `system_info.cpu_percent` is answered as field `system_cpu_percent`.

use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::reads::robot_data::{self, ReadingFilter};
use crate::http::extract::{Json, Path, Query};
use crate::http::tonypi::robot_data::time_range;
use crate::http::{ApiError, Detail, HttpState, check_robot_id};

/// The most points answered (TonyPi's `filtered[-500:]`).
const MAX_POINTS: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PerfQuery {
    /// How far back: `5m`, `10m`, `1h`, … (at most 30d); default 5m.
    pub time_range: Option<String>,
}

/// One stored value, as TonyPi's InfluxDB record.
#[derive(Debug, Serialize, ToSchema)]
pub struct PerfPoint {
    #[schema(format = DateTime)]
    pub time: String,
    /// Always `robot_status`.
    pub measurement: &'static str,
    /// `system_cpu_percent`, `system_memory_percent`, `system_disk_usage`,
    /// `system_temperature`, `system_uptime`, … (each numeric `system_info` key).
    pub field: String,
    pub value: f64,
    pub robot_id: String,
}

/// The robot's `system_info` values within `time_range`, oldest first: the newest 500
/// points. An unknown robot gets an empty array, as TonyPi answers.
#[utoipa::path(get, path = "/api/v1/pi/perf/{robot_id}", tag = "robot-data",
    params(("robot_id" = String, Path, description = "The robot's id"), PerfQuery),
    responses((status = 200, body = Vec<PerfPoint>), (status = 400, body = Detail)))]
pub async fn perf(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
    Query(q): Query<PerfQuery>,
) -> Result<Json<Vec<PerfPoint>>, ApiError> {
    let since = Utc::now() - time_range(q.time_range.as_deref().unwrap_or("5m"))?;
    check_robot_id(&robot_id)?;
    let filter = ReadingFilter {
        since,
        robot_id: Some(&robot_id),
        name_like: "system\\_info.%",
        sensors_only: false,
        limit: MAX_POINTS,
    };
    let rows = robot_data::readings(&s.pool, &filter).await?;
    Ok(Json(
        rows.into_iter()
            .filter_map(|r| {
                let key = r.name.strip_prefix("system_info.")?;
                Some(PerfPoint {
                    time: r.ts.to_rfc3339(),
                    measurement: "robot_status",
                    field: format!("system_{key}"),
                    value: r.value,
                    robot_id: r.robot_id,
                })
            })
            .collect(),
    ))
}
