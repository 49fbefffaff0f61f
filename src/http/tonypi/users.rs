//! TonyPi's `backend/routers/users.py` (with `utils/auth.py`): sign-in and the console
//! users, served from `console_users`.
//!
//! `POST /api/v1/auth/login` answers TonyPi's `LoginResponse` (`access_token`, `token_type`,
//! `user`), the token a JWT HS256 with `sub`, `role`, `exp` (`console.token_ttl`, 8 h).
//! A failed sign-in costs the same password-hash work whether or not the user exists,
//! and failures are throttled per client address (`console.login_failures_per_minute`,
//! then 429). The users routes are the admin's; an admin cannot delete their own
//! account, and the last active admin cannot be removed, demoted or deactivated.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::auth::console::{self, Role};
use crate::db::edits::console_users::{self as edits, Changes, EditError};
use crate::db::reads::console_users::{self as reads, ConsoleUserRow};
use crate::http::auth::Caller;
use crate::http::extract::{Json, Path};
use crate::http::{ApiError, Detail, HttpState};

/// A console user (TonyPi's `UserResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: String,
    pub username: String,
    pub email: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    pub is_active: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<ConsoleUserRow> for UserResponse {
    fn from(r: ConsoleUserRow) -> Self {
        Self {
            id: r.id,
            username: r.username,
            email: r.email,
            role: r.role,
            is_active: r.is_active,
            created_at: Some(r.created_at),
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// TonyPi's `LoginResponse`: the UI stores `access_token` and `user`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    /// `bearer`.
    pub token_type: &'static str,
    pub user: UserResponse,
}

/// Signs a console user in.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "users", security(()),
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
        (status = 400, body = Detail),
        (status = 401, description = "unknown user or wrong password", body = Detail),
        (status = 403, description = "the account is inactive", body = Detail),
        (status = 429, description = "too many failed sign-ins from this address", body = Detail),
        (status = 503, description = "sign-in is not configured (console.jwt_secret)", body = Detail)))]
pub async fn login(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let Some(secret) = &s.console.jwt_secret else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sign-in is off: set console.jwt_secret (FLEETSINK__CONSOLE__JWT_SECRET) and create a user with `fleetsink console-user add`",
        ));
    };
    let addr = peer.ip();
    if let Err(wait) = s.console.throttle.check(addr, Instant::now()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed sign-ins from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let user = s.console.users.get(&req.username);
    let hash = user.as_ref().map_or_else(
        || console::unknown_user_hash().to_string(),
        |u| u.password_hash.clone(),
    );
    let password = req.password;
    let matches = tokio::task::spawn_blocking(move || console::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(u) if matches => u,
        _ => {
            s.console.throttle.failed(addr, Instant::now());
            tracing::info!(username = %req.username, client = %addr, "console sign-in refused");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Invalid username or password",
            ));
        }
    };
    if !user.row.is_active {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "User account is inactive",
        ));
    }
    s.console.throttle.succeeded(addr);
    let token = console::issue_token(
        &user.row.username,
        user.role,
        secret.expose_secret().as_bytes(),
        Utc::now(),
        s.console.token_ttl,
    );
    tracing::info!(username = %user.row.username, role = %user.role, client = %addr, "console user signed in");
    Ok(Json(LoginResponse {
        access_token: token,
        token_type: "bearer",
        user: user.row.into(),
    }))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "users",
    responses((status = 200, body = UserResponse),
        (status = 401, body = Detail)))]
pub async fn me(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<UserResponse>, ApiError> {
    match caller {
        Caller::User { username, .. } => s
            .console
            .users
            .get(&username)
            .map(|u| Json(u.row.into()))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "User not found or inactive")),
        // A machine credential is not a person; answer as an admin without an account.
        other => Ok(Json(UserResponse {
            id: other.name().to_string(),
            username: other.name().to_string(),
            email: String::new(),
            role: Role::Admin.to_string(),
            is_active: true,
            created_at: None,
            updated_at: None,
        })),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UserCreate {
    pub username: String,
    pub email: String,
    /// 8-128 characters.
    pub password: String,
    /// `admin`, `operator` or `viewer` (default).
    #[serde(default = "viewer")]
    pub role: String,
}

fn viewer() -> String {
    Role::Viewer.to_string()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub password: Option<String>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

/// Every console user, newest first.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserResponse>),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn list(State(s): State<HttpState>) -> Result<Json<Vec<UserResponse>>, ApiError> {
    let rows = reads::list(&s.pool).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates a console user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = UserCreate,
    responses((status = 201, body = UserResponse),
        (status = 400, description = "invalid field, or username or email taken", body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn create(
    State(s): State<HttpState>,
    actor: Actor,
    Json(req): Json<UserCreate>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    check_username(&req.username)?;
    check_email(&req.email)?;
    let role = role(&req.role)?;
    let hash = password_hash(req.password).await?;
    let row = edits::create(
        &s.pool,
        &actor,
        &req.username,
        &req.email,
        &hash,
        role.as_str(),
    )
    .await
    .map_err(edit_error)?;
    reload(&s).await;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// One console user.
#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 200, body = UserResponse), (status = 404, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn get(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<UserResponse>, ApiError> {
    let row = reads::get(&s.pool, clean_id(&id)?)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(row.into()))
}

/// Changes a console user's email, password, role or active flag.
#[utoipa::path(put, path = "/api/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The user's id")),
    request_body = UserUpdate,
    responses((status = 200, body = UserResponse),
        (status = 400, description = "no fields, an invalid one, the email taken, or the last admin", body = Detail),
        (status = 404, body = Detail), (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn update(
    State(s): State<HttpState>,
    actor: Actor,
    Path(id): Path<String>,
    Json(req): Json<UserUpdate>,
) -> Result<Json<UserResponse>, ApiError> {
    let id = clean_id(&id)?;
    if req.email.is_none()
        && req.password.is_none()
        && req.role.is_none()
        && req.is_active.is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "No fields to update",
        ));
    }
    if let Some(email) = &req.email {
        check_email(email)?;
    }
    let new_role = req.role.as_deref().map(role).transpose()?;
    let current = reads::get(&s.pool, id).await?.ok_or_else(not_found)?;
    let loses_admin = current.role == "admin"
        && (new_role.is_some_and(|r| r != Role::Admin) || req.is_active == Some(false));
    if loses_admin && reads::other_active_admins(&s.pool, id).await? == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "this is the last active admin: make another user admin first",
        ));
    }
    let hash = match req.password {
        Some(p) => Some(password_hash(p).await?),
        None => None,
    };
    let changes = Changes {
        email: req.email.as_deref(),
        password_hash: hash.as_deref(),
        role: new_role.map(Role::as_str),
        is_active: req.is_active,
    };
    let row = edits::update(&s.pool, &actor, id, &changes)
        .await
        .map_err(|e| match e {
            EditError::Taken => ApiError::new(StatusCode::BAD_REQUEST, "Email already in use"),
            EditError::Db(e) => e.into(),
        })?
        .ok_or_else(not_found)?;
    reload(&s).await;
    Ok(Json(row.into()))
}

/// Removes a console user (not yourself, not the last active admin).
#[utoipa::path(delete, path = "/api/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 204, description = "removed"),
        (status = 400, body = Detail), (status = 404, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn delete(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = clean_id(&id)?;
    if matches!(&caller, Caller::User { id: own, .. } if own == id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot delete your own account",
        ));
    }
    let current = reads::get(&s.pool, id).await?.ok_or_else(not_found)?;
    if current.role == "admin"
        && current.is_active
        && reads::other_active_admins(&s.pool, id).await? == 0
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "this is the last active admin: make another user admin first",
        ));
    }
    if !edits::delete(&s.pool, &actor, id).await? {
        return Err(not_found());
    }
    reload(&s).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The change is visible to the next request on this instance at once (others follow
/// the table's notification).
async fn reload(s: &HttpState) {
    if let Err(e) = s.console.users.reload(&s.pool).await {
        tracing::warn!(error = %e, "console users cache not reloaded; the notification will");
    }
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "User not found")
}

fn edit_error(e: EditError) -> ApiError {
    match e {
        EditError::Taken => {
            ApiError::new(StatusCode::BAD_REQUEST, "Username or email already exists")
        }
        EditError::Db(e) => e.into(),
    }
}

fn role(given: &str) -> Result<Role, ApiError> {
    Role::parse(given).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid role. Must be admin, operator, or viewer",
        )
    })
}

fn clean_id(id: &str) -> Result<&str, ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(not_found());
    }
    Ok(id)
}

fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = (1..=50).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "username must be 1-50 characters of A-Z a-z 0-9 _ . - @",
        ))
    }
}

fn check_email(email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 100
        && !email.contains(['\0', ' '])
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "email must be an address like name@example.com",
        ))
    }
}

/// A hash of a new password that keeps the rules (400 otherwise), off the async threads.
async fn password_hash(password: String) -> Result<String, ApiError> {
    console::check_password_rules(&password)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    tokio::task::spawn_blocking(move || console::hash_password(&password))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(|e| {
            tracing::error!(error = %e, "console password not hashed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })
}
