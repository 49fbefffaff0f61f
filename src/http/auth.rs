//! The one auth layer of `/api/`: who is calling, and whether their role allows the
//! route.
//!
//! [`authenticate`] runs on every `/api/` route but sign-in and the OpenAPI document.
//! A request carries `Authorization: Bearer <credential>`: `http.admin_token` (a machine
//! credential, compared in constant time, acting as an admin) or a console session token
//! (`console.jwt_secret`; the user's *current* row in the console users cache decides:
//! a deactivated or removed user is refused, a demoted one has the new role). With
//! neither configured (allowed only on loopback or with `http.allow_unauthenticated`)
//! every request passes as an admin, as before sign-in existed. The caller becomes a
//! [`Caller`] request extension, which handlers may read (e.g. `/auth/me`); handlers
//! that change something take an [`Actor`] instead: the caller and the request's peer
//! address, for the audit trail.
//!
//! [`viewer`], [`operator`] and [`admin`] are applied per route group (`http::routes`): viewer reads; operator also
//! sends commands, acknowledges and resolves alerts; admin also manages users,
//! thresholds and robots. 401 without a valid credential, 403 with a role too low.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::{ApiError, HttpState};
use crate::audit::{Actor, ActorKind};
use crate::auth::console::{self, Role};

/// Declares the bearer scheme of `/api/`.
pub(super) struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in console user.
    User {
        id: String,
        username: String,
        role: Role,
    },
    /// `http.admin_token`.
    AdminToken,
    /// No credentials are configured: the API is open (loopback only).
    Open,
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::User { role, .. } => *role,
            Caller::AdminToken | Caller::Open => Role::Admin,
        }
    }

    /// A name for logs and audit rows.
    pub fn name(&self) -> &str {
        match self {
            Caller::User { username, .. } => username,
            Caller::AdminToken => "admin-token",
            Caller::Open => "unauthenticated",
        }
    }
}

impl Caller {
    /// The caller as the audit trail names them, calling from `address`.
    pub fn actor(&self, address: Option<std::net::IpAddr>) -> Actor {
        let kind = match self {
            Caller::User { .. } => ActorKind::User,
            Caller::AdminToken => ActorKind::Token,
            Caller::Open => ActorKind::Open,
        };
        Actor {
            name: self.name().to_string(),
            kind,
            address,
        }
    }
}

/// The caller of an `/api/` route (set by [`authenticate`]) and the request's TCP peer
/// address: never a forwarded header, which any client can forge.
impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<Caller>().ok_or_else(|| {
            tracing::error!("a change route without the auth layer");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        Ok(caller.actor(peer))
    }
}

/// Identifies the caller (401 if a credential is needed and none is valid).
pub(super) async fn authenticate(
    State(s): State<HttpState>,
    mut req: Request,
    next: Next,
) -> Response {
    match identify(&s, req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(detail) => unauthorized(detail),
    }
}

fn identify(s: &HttpState, headers: &axum::http::HeaderMap) -> Result<Caller, &'static str> {
    let secret = s.console.jwt_secret.as_ref();
    if s.admin_token.is_none() && secret.is_none() {
        return Ok(Caller::Open);
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("Not authenticated");
    };
    let value = value.to_str().map_err(|_| "Invalid authorization header")?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or("Invalid authorization header")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Invalid authentication scheme");
    }
    let credential = credential.trim();
    if let Some(token) = &s.admin_token
        && bool::from(
            credential
                .as_bytes()
                .ct_eq(token.expose_secret().as_bytes()),
        )
    {
        return Ok(Caller::AdminToken);
    }
    let secret = secret.ok_or("Invalid or expired token")?;
    let claims = console::verify_token(
        credential,
        secret.expose_secret().as_bytes(),
        chrono::Utc::now(),
    )
    .map_err(|_| "Invalid or expired token")?;
    match s.console.users.get(&claims.sub) {
        Some(u) if u.row.is_active => Ok(Caller::User {
            id: u.row.id,
            username: claims.sub,
            role: u.role,
        }),
        _ => Err("User not found or inactive"),
    }
}

fn unauthorized(detail: &'static str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

/// Route layers admitting callers whose role is at least the one named (403 otherwise);
/// `middleware::from_fn(auth::viewer)` and so on.
pub(super) async fn viewer(req: Request, next: Next) -> Response {
    admit(Role::Viewer, req, next).await
}

pub(super) async fn operator(req: Request, next: Next) -> Response {
    admit(Role::Operator, req, next).await
}

pub(super) async fn admin(req: Request, next: Next) -> Response {
    admit(Role::Admin, req, next).await
}

async fn admit(role: Role, req: Request, next: Next) -> Response {
    let allowed = req
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.role() >= role);
    if allowed {
        return next.run(req).await;
    }
    let who = match role {
        Role::Admin => "Admin",
        Role::Operator => "Operator",
        Role::Viewer => "Viewer",
    };
    ApiError::new(StatusCode::FORBIDDEN, format!("{who} access required")).into_response()
}

/// The console settings the API needs.
#[derive(Clone)]
pub struct ConsoleState {
    /// Signs session tokens; `None`: sign-in is off.
    pub jwt_secret: Option<secrecy::SecretString>,
    pub token_ttl: std::time::Duration,
    pub users: Arc<console::ConsoleUsers>,
    pub throttle: Arc<console::LoginThrottle>,
}

#[cfg(test)]
mod tests {
    use subtle::ConstantTimeEq;

    #[test]
    fn token_comparison() {
        let eq = |a: &[u8], b: &[u8]| bool::from(a.ct_eq(b));
        assert!(eq(b"secret", b"secret"));
        assert!(!eq(b"secret", b"secreT"));
        assert!(!eq(b"secret", b"secret2"));
    }
}
