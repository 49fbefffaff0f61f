//! The TonyPi backend's `health` router (`backend/routers/health.py`): its health
//! shape, but with each service's real state (TonyPi always says healthy) and a 503
//! when one is down, so the UI's status light means something.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::HttpState;
use crate::http::extract::Json;

/// TonyPi's health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiHealth {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    pub message: &'static str,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub services: Services,
}

/// Each service's state: `healthy` or `unhealthy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Services {
    pub api: &'static str,
    pub database: &'static str,
    pub mqtt: &'static str,
}

/// TonyPi's health shape with each service's real state; 503 when one is down.
#[utoipa::path(get, path = "/api/v1/health", tag = "fleet",
    responses((status = 200, body = ApiHealth), (status = 503, description = "degraded", body = ApiHealth)))]
pub async fn health(State(s): State<HttpState>) -> (StatusCode, Json<ApiHealth>) {
    let r = s.health.readiness();
    let state = |up: bool| if up { "healthy" } else { "unhealthy" };
    let healthy = r.database_reachable && r.broker_connected;
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(ApiHealth {
            status: state(healthy),
            message: if healthy {
                "fleetsink is running"
            } else {
                "fleetsink is degraded"
            },
            timestamp: Utc::now().to_rfc3339(),
            services: Services {
                api: "healthy",
                database: state(r.database_reachable),
                mqtt: state(r.broker_connected),
            },
        }),
    )
}
