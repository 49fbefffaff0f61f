//! `GET /api/v1/audit`: who changed what, from which address (the `audit` table,
//! written with each change by `db::edits::audit`). Admin only: it names every user,
//! the addresses they work from, and the user administration itself; operators see
//! who sent a robot's commands in its command list.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::db::reads::audit::{self, AuditFilter, AuditRow};
use crate::http::extract::{Json, Query};
use crate::http::{ApiError, Detail, HttpState, limit};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only changes at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only changes before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Only this actor's (a console user's name, `admin-token`, a CLI user).
    pub actor: Option<String>,
    /// Only this action, e.g. `emergency_stop`, `alert.acknowledge`, `robot.update`.
    pub action: Option<String>,
    /// Only changes to this target (a robot id, `broadcast`, an alert or threshold id,
    /// a user name).
    pub target: Option<String>,
    /// 1-1000, default 100.
    pub limit: Option<i64>,
}

/// A filter value: 1-200 characters without NUL (400 otherwise).
fn filter<'a>(name: &str, value: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > 200 || v.contains('\0') => {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{name} must be 1-200 characters without NUL"),
            ))
        }
        v => Ok(v),
    }
}

/// The audit trail, newest first: every command, emergency stop and resume, alert
/// acknowledgement and resolution, and robot, threshold and user change, with who made
/// it (`actor`, `actor_kind`) and from which address. Admin.
#[utoipa::path(get, path = "/api/v1/audit", tag = "fleet", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRow>), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn list(
    State(s): State<HttpState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let limit = limit(q.limit, 100)?;
    let f = AuditFilter {
        since: q.since,
        until: q.until,
        actor: filter("actor", q.actor.as_deref())?,
        action: filter("action", q.action.as_deref())?,
        target: filter("target", q.target.as_deref())?,
    };
    Ok(Json(audit::list(&s.pool, &f, limit).await?))
}
