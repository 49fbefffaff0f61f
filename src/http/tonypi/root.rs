//! The banners of the TonyPi backend's app (`backend/main.py`): `GET /` (what answers
//! here) and `GET /api` (the API versions), naming fleetsink as the server. Open to
//! every caller, like the probes: they reveal nothing but the version.

use crate::http::extract::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /`, as TonyPi's `root()` answers, plus the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Root {
    pub message: &'static str,
    pub version: &'static str,
    pub api_version: &'static str,
    /// The API's description (OpenAPI 3).
    pub docs: &'static str,
    pub health: &'static str,
    pub server: &'static str,
}

/// `GET /api`, as TonyPi's `api_info()` answers, plus the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiInfo {
    pub current_version: &'static str,
    pub supported_versions: [&'static str; 1],
    pub base_url: &'static str,
    pub server: &'static str,
}

/// What answers: the TonyPi API, served by fleetsink.
#[utoipa::path(get, path = "/", tag = "fleet", security(()),
    responses((status = 200, body = Root)))]
pub async fn root() -> Json<Root> {
    Json(Root {
        message: "TonyPi Robot Monitoring System API, served by fleetsink",
        version: env!("CARGO_PKG_VERSION"),
        api_version: "v1",
        docs: "/api/v1/openapi.json",
        health: "/api/v1/health",
        server: concat!("fleetsink ", env!("CARGO_PKG_VERSION")),
    })
}

/// The API versions served.
#[utoipa::path(get, path = "/api", tag = "fleet", security(()),
    responses((status = 200, body = ApiInfo)))]
pub async fn api_info() -> Json<ApiInfo> {
    Json(ApiInfo {
        current_version: "v1",
        supported_versions: ["v1"],
        base_url: "/api/v1",
        server: concat!("fleetsink ", env!("CARGO_PKG_VERSION")),
    })
}
