//! The mosquitto-go-auth HTTP backend (README, "MQTT security"): `/mqtt/user`,
//! `/mqtt/superuser` and `/mqtt/acl`, exactly as go-auth 3.x calls them — JSON bodies
//! (`http_params_mode = json`) with its `http_method` (POST, PUT or GET) or form-encoded
//! ones (`form`, always POSTed), `acc` as a number or a string. 200
//! `{"ok":true,"error":""}` allows and 403 `{"ok":false,"error":"..."}` denies, which
//! works with go-auth's `status` and `json` response modes; a malformed request is a
//! 400 (go-auth treats any non-200 as a denial). Only clients from
//! `http.auth_allow` networks are answered; others get 403. Answers come from the
//! in-process cache (`auth::store`), so they need no database round trip.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::HttpState;
use crate::auth::{Access, Decision};
use crate::http::extract::Json;

/// The fields go-auth sends, whichever encoding.
#[derive(Debug, Default)]
pub struct Params {
    username: String,
    password: String,
    clientid: String,
    topic: String,
    acc: Option<String>,
}

/// Every answer of these routes: go-auth reads the status (`status` mode) or `ok`
/// (`json` mode); `error` says why, for the operator reading go-auth's log.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct GoAuthAnswer {
    ok: bool,
    error: String,
}

fn reply(status: StatusCode, error: impl Into<String>) -> Response {
    let ok = status == StatusCode::OK;
    let error = error.into();
    (status, Json(GoAuthAnswer { ok, error })).into_response()
}

fn answer(decision: Decision) -> Response {
    match decision {
        Decision::Allow => reply(StatusCode::OK, ""),
        Decision::Deny(why) => reply(StatusCode::FORBIDDEN, why),
    }
}

fn bad_request(why: String) -> Response {
    reply(StatusCode::BAD_REQUEST, why)
}

/// Reads a JSON or form body; `Err` says what is wrong with it (a 400).
fn params(headers: &HeaderMap, body: &Bytes) -> Result<Params, String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut p = Params::default();
    if json {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let Value::Object(o) = v else {
            return Err("body must be a JSON object".into());
        };
        let text = |k: &str| match o.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        p.username = text("username");
        p.password = text("password");
        p.clientid = text("clientid");
        p.topic = text("topic");
        p.acc = o.get("acc").map(|_| text("acc"));
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            match k.as_ref() {
                "username" => p.username = v.into_owned(),
                "password" => p.password = v.into_owned(),
                "clientid" => p.clientid = v.into_owned(),
                "topic" => p.topic = v.into_owned(),
                "acc" => p.acc = Some(v.into_owned()),
                _ => {}
            }
        }
    }
    Ok(p)
}

/// `Some(403)` when the caller is not on an `http.auth_allow` network; `Some(503)`
/// while users and rules have not been read yet (the database was down since start-up):
/// a 5xx, which go-auth does not cache, rather than a wrong denial.
fn refuse_outsiders(s: &HttpState, peer: SocketAddr) -> Option<Response> {
    if !s.auth.store().is_loaded() {
        return Some(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "users and ACL rules not loaded yet (database unreachable)",
        ));
    }
    let ip = peer.ip().to_canonical();
    if s.auth_allow.iter().any(|net| net.contains(&ip)) {
        None
    } else {
        tracing::warn!(peer = %peer, "go-auth endpoint called from outside http.auth_allow");
        Some(answer(Decision::Deny(
            "address not allowed (http.auth_allow)",
        )))
    }
}

/// A go-auth request: from an allowed network, users loaded, body parsed. Anything
/// else is answered before the handler runs.
pub struct GoAuthRequest(Params);

impl FromRequest<HttpState> for GoAuthRequest {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, s: &HttpState) -> Result<Self, Response> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(|| bad_request("no peer address".into()))?;
        if let Some(r) = refuse_outsiders(s, peer) {
            return Err(r);
        }
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, s)
            .await
            .map_err(IntoResponse::into_response)?;
        params(&headers, &body)
            .map(GoAuthRequest)
            .map_err(bad_request)
    }
}

/// go-auth's user check: username and password (JSON or form body).
#[utoipa::path(method(post, put, get), path = "/mqtt/user", tag = "go-auth", security(()),
    request_body(content = Object, description = "{username, password, clientid}", content_type = "application/json"),
    responses((status = 200, description = "allowed", body = GoAuthAnswer),
              (status = 403, description = "denied, or the caller is not in http.auth_allow", body = GoAuthAnswer),
              (status = 400, description = "a JSON body that does not parse, or not an object", body = GoAuthAnswer),
              (status = 413, description = "a body over http.max_body_bytes"),
              (status = 503, description = "users not loaded yet", body = GoAuthAnswer)))]
pub async fn user(State(s): State<HttpState>, GoAuthRequest(p): GoAuthRequest) -> Response {
    if p.username.is_empty() {
        return answer(Decision::Deny("no username"));
    }
    answer(s.auth.check_user(&p.username, &p.password).await)
}

/// go-auth's superuser check: username (JSON or form body).
#[utoipa::path(method(post, put, get), path = "/mqtt/superuser", tag = "go-auth", security(()),
    request_body(content = Object, description = "{username}", content_type = "application/json"),
    responses((status = 200, description = "a superuser", body = GoAuthAnswer),
              (status = 403, description = "not a superuser, or the caller is not in http.auth_allow", body = GoAuthAnswer),
              (status = 400, description = "a JSON body that does not parse, or not an object", body = GoAuthAnswer),
              (status = 413, description = "a body over http.max_body_bytes"),
              (status = 503, description = "users not loaded yet", body = GoAuthAnswer)))]
pub async fn superuser(State(s): State<HttpState>, GoAuthRequest(p): GoAuthRequest) -> Response {
    answer(s.auth.check_superuser(&p.username))
}

/// go-auth's ACL check: username, clientid, topic and acc (1 read, 2 write, 4
/// subscribe; a number or a string), JSON or form body.
#[utoipa::path(method(post, put, get), path = "/mqtt/acl", tag = "go-auth", security(()),
    request_body(content = Object, description = "{username, clientid, topic, acc}", content_type = "application/json"),
    responses((status = 200, description = "allowed", body = GoAuthAnswer),
              (status = 403, description = "denied, or the caller is not in http.auth_allow", body = GoAuthAnswer),
              (status = 400, description = "no topic, acc not 1, 2 or 4, or a JSON body that does not parse", body = GoAuthAnswer),
              (status = 413, description = "a body over http.max_body_bytes"),
              (status = 503, description = "users not loaded yet", body = GoAuthAnswer)))]
pub async fn acl(State(s): State<HttpState>, GoAuthRequest(p): GoAuthRequest) -> Response {
    let acc = p.acc.as_deref().and_then(|a| a.trim().parse::<i64>().ok());
    let Some(access) = acc.and_then(Access::from_acc) else {
        return bad_request(format!(
            "acc must be 1 (read), 2 (write) or 4 (subscribe), got {:?}",
            p.acc.unwrap_or_default()
        ));
    };
    if p.topic.is_empty() {
        return bad_request("no topic".into());
    }
    answer(s.auth.check_acl(&p.username, &p.clientid, &p.topic, access))
}
