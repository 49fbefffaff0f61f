//! The one error shape of the API: `{"detail": "..."}` (what the TonyPi UI reads) with a
//! fitting status, also for what axum's extractors reject, an unknown path and a
//! handler that panicked. A database error is logged and answered 500, or 503 when
//! retrying may help; its text never reaches the client.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::db::is_transient;
use crate::http::extract::Json;

/// The body of every API error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Detail {
    /// What went wrong and, where it helps, what to do.
    pub detail: String,
}

/// An API error: status and a message for the client, never database text.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "admin API database error");
        if is_transient(&e) {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable, retry later",
            )
        } else {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Detail {
                detail: self.detail,
            }),
        )
            .into_response()
    }
}

/// The router answers a method a path does not take with an empty 405, and axum's own
/// extractors (the API's are `extract.rs`'s, which answer `{"detail"}` themselves)
/// with a plain-text 4xx; the API's contract is `{"detail": "..."}`.
pub(super) async fn detail_for_rejections(resp: Response) -> Response {
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let plain = content_type.is_none_or(|v| v.starts_with("text/plain"));
    if !resp.status().is_client_error() || !plain {
        return resp;
    }
    let status = resp.status();
    let allow = resp.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_string()
    } else {
        text
    };
    let mut resp = ApiError::new(status, text).into_response();
    if let Some(allow) = allow {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    resp
}

/// A handler that panicked (a bug, never expected) answers 500 `{"detail"}` and is
/// logged, instead of the client seeing its connection dropped.
pub(super) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("admin API handler panicked; answered 500");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Any path no route takes.
pub(super) async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not found").into_response()
}
