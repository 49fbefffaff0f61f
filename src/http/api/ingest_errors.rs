//! What the pipeline rejected and why (`ingest_errors`), newest first: the first place
//! to look when a robot's data does not show up.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::reads::ingest_errors;
use crate::http::extract::{Json, Query};
use crate::http::{ApiError, Detail, HttpState, limit};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// 1-1000, default 100.
    pub limit: Option<i64>,
    /// `too_large`, `invalid_utf8`, `not_json`, `not_object`, `missing_robot_id`,
    /// `invalid_robot_id`, `invalid_value`, `no_route` or `rejected_by_database`.
    pub reason: Option<String>,
}

/// A rejected message.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestError {
    pub topic: String,
    pub reason: String,
    /// What was wrong, for a person.
    pub detail: String,
    pub client_id: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub payload_size: i32,
    /// The payload's first 200 bytes, invalid UTF-8 replaced.
    pub payload_preview: String,
}

/// What was rejected and why, newest first.
#[utoipa::path(get, path = "/api/v1/ingest-errors", tag = "fleet", params(ErrorsQuery),
    responses((status = 200, body = Vec<IngestError>), (status = 400, body = Detail)))]
pub async fn ingest_errors(
    State(s): State<HttpState>,
    Query(q): Query<ErrorsQuery>,
) -> Result<Json<Vec<IngestError>>, ApiError> {
    let limit = limit(q.limit, 100)?;
    let rows = ingest_errors::newest(&s.pool, q.reason.as_deref(), limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| IngestError {
                payload_preview: String::from_utf8_lossy(&r.preview).into_owned(),
                topic: r.topic,
                reason: r.reason,
                detail: r.detail,
                client_id: r.client_id,
                received_at: r.received_at.to_rfc3339(),
                payload_size: r.payload_size,
            })
            .collect(),
    ))
}
