//! The API's request extractors — `Json`, `Query` and `Path` in place of axum's (a
//! `clippy.toml` rule keeps axum's out of handlers) — so that every malformed request
//! is refused here, once, in the `{"detail": "..."}` shape and with the status the
//! OpenAPI document lists for it ([`document`]):
//!
//! - **400**: the body is not JSON, a path or query parameter does not parse, or any of
//!   them holds text PostgreSQL cannot store;
//! - **422**: a JSON body that does not fit (a field missing or of the wrong type), as
//!   TonyPi's FastAPI backend answers it;
//! - **415**: a body without `Content-Type: application/json` (or `+json`);
//! - **413**: a body over `http.max_body_bytes`.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the NUL character (U+0000; a UTF-8
//! database stores every other Unicode scalar value, and JSON's lone surrogates never
//! reach here: the JSON parser refuses them). The API *refuses* it, naming the field,
//! in path segments, query parameters and anywhere in a JSON body (string values and
//! object keys, at any depth), before a handler runs: an operator can correct the
//! request. Ingestion instead *strips* it (`db::writes`), since a robot's message
//! cannot be sent back. The answer `Json` is axum's, unchanged.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::openapi::{OpenApi, RefOr, ResponseBuilder, content::ContentBuilder};

use super::ApiError;

const NUL: &str = "must not contain the NUL character (U+0000), which PostgreSQL cannot store";

fn bad_request(detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, detail)
}

/// A JSON request body (and, as axum's, a JSON answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        from_json(&body).map(Json)
    }
}

/// Reads a JSON body by the API's rules: 400 for what is not JSON or holds NUL (naming
/// the field), 422 for JSON of the wrong shape. [`Json`] uses it; so does a route that
/// takes its body raw (one whose body may be empty).
pub(crate) fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the body is not valid JSON: {e}")))?;
    if let Some(field) = nul_in(&value) {
        return Err(bad_request(format!("{field} {NUL}")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let detail = match e.path().to_string().as_str() {
            "." => format!("the body does not fit: {}", e.inner()),
            path => format!("body field {path}: {}", e.inner()),
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    })
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        #[allow(clippy::disallowed_types)] // the one place axum's Json is used
        axum::Json(self.0).into_response()
    }
}

/// `application/json` or any `application/*+json`, parameters (charset) aside.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = mime.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let sub = sub.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application")
        && (sub == "json" || sub.len() > 5 && sub.ends_with("+json"))
}

/// Where in `v` a string or key holds NUL, as a field path (`body field settings.a[2]`),
/// or `None`.
fn nul_in(v: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(o) => o.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                // A key with NUL is named up to the NUL, so the message stays printable.
                path.push_str(k.split('\0').next().unwrap_or_default());
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    let mut path = String::new();
    walk(v, &mut path).then(|| {
        if path.is_empty() {
            "the body".to_string()
        } else {
            format!("body field {path}")
        }
    })
}

/// Query parameters, deserialized into `T` (400 naming the parameter otherwise).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            if name.contains('\0') || value.contains('\0') {
                let name = name.split('\0').next().unwrap_or_default();
                return Err(bad_request(format!("query parameter {name:?} {NUL}")));
            }
        }
        #[allow(clippy::disallowed_types)] // wrapped here, once
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e: QueryRejection| bad_request(e.body_text()))
    }
}

/// Path parameters, percent-decoded and deserialized into `T` (400 naming the
/// parameter otherwise).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(bad_request(format!("path parameter {name:?} {NUL}")));
        }
        #[allow(clippy::disallowed_types)] // wrapped here, once
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| Path(p))
            .map_err(|e: PathRejection| ApiError::new(e.status(), e.body_text()))
    }
}

/// Which credential an operation needs, for [`document`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Guard {
    /// Sign-in, this document, probes and go-auth: no bearer credential.
    Public,
    /// Any valid credential (viewer routes): 401 without one.
    Credential,
    /// A role above viewer: 401 without a credential, 403 with too low a role.
    Role,
}

/// Routes under `/api/` that never touch the database (they answer from memory), so
/// `document` does not list a 503 for them.
const WITHOUT_DATABASE: &[&str] = &[
    "/api/v1/auth/me",
    "/api/v1/alerts/thresholds/defaults",
    "/api/v1/logs/categories",
    "/api/v1/logs/levels",
    "/api/v1/openapi.json",
];

/// Adds to every operation of `doc` the error answers these extractors, the auth
/// layer and the database error mapping can give it, each a `{"detail"}` body: 400
/// for an operation with parameters or a body, 413, 415 and 422 for one with a body, 401
/// (and 403) by `guard`, 503 for `/api/` routes that query the database. A status an
/// operation already lists keeps its own description.
pub(super) fn document(doc: &mut OpenApi, guard: Guard) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_body = op.request_body.is_some();
            let mut add = |status: &str, description: &str| {
                let entry = op.responses.responses.entry(status.to_string());
                entry.or_insert_with(|| RefOr::T(detail_response(description)));
            };
            if has_params || has_body {
                add(
                    "400",
                    "a malformed request: a body that is not JSON, a parameter that does not \
                     parse, or a NUL character in either",
                );
            }
            if has_body {
                add("413", "the body is larger than http.max_body_bytes");
                add(
                    "415",
                    "the body is not sent as Content-Type: application/json",
                );
                add(
                    "422",
                    "a JSON body that does not fit: a field missing or of the wrong type",
                );
            }
            if guard != Guard::Public {
                add("401", "no valid bearer credential");
                if path.starts_with("/api/") && !WITHOUT_DATABASE.contains(&path.as_str()) {
                    add("503", "the database is unreachable; retry later");
                }
            }
            if guard == Guard::Role {
                add("403", "the caller's role may not do this");
            }
        }
    }
}

fn detail_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Detail")))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_found_and_named_at_any_depth() {
        assert_eq!(nul_in(&json!({"name": "ab"})), None);
        assert_eq!(nul_in(&json!({"name": "a\\u0000b"})), None);
        assert_eq!(
            nul_in(&json!({"name": "a\u{0}b"})).as_deref(),
            Some("body field name")
        );
        assert_eq!(
            nul_in(&json!({"ok": 1, "settings": {"tags": ["x", "\u{0}"]}})).as_deref(),
            Some("body field settings.tags[1]")
        );
        assert_eq!(
            nul_in(&json!({"details": {"k\u{0}ey": 1}})).as_deref(),
            Some("body field details.k")
        );
        assert_eq!(nul_in(&json!("\u{0}")).as_deref(), Some("the body"));
    }

    #[test]
    fn json_content_types() {
        let with = |v: &'static str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(v));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("application/+json"));
        assert!(!is_json(&axum::http::HeaderMap::new()));
    }
}
