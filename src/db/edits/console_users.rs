//! `console_users`: created, changed and removed by admins (the users routes) and by
//! the `console-user` subcommand. A unique violation (username or email taken) is
//! reported as such, for the caller's 400.

use sqlx::PgPool;

use crate::db::reads::console_users::ConsoleUserRow;

/// Why a user could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("username or email already exists")]
    Taken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn taken(e: sqlx::Error) -> EditError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => EditError::Taken,
        _ => EditError::Db(e),
    }
}

const RETURNING: &str = "RETURNING id, username, email, role, is_active, created_at, updated_at";

/// A new user.
pub async fn create(
    pool: &PgPool,
    username: &str,
    email: &str,
    password_hash: &str,
    role: &str,
) -> Result<ConsoleUserRow, EditError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO console_users (username, email, password_hash, role) \
         VALUES ($1, $2, $3, $4) {RETURNING}"
    )))
    .bind(username)
    .bind(email)
    .bind(password_hash)
    .bind(role)
    .fetch_one(pool)
    .await
    .map_err(taken)
}

/// What an update changes; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub email: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub role: Option<&'a str>,
    pub is_active: Option<bool>,
}

/// Applies `changes` to user `id`; `None` when there is no such user.
pub async fn update(
    pool: &PgPool,
    id: &str,
    changes: &Changes<'_>,
) -> Result<Option<ConsoleUserRow>, EditError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE console_users SET email = COALESCE($2, email), \
             password_hash = COALESCE($3, password_hash), role = COALESCE($4, role), \
             is_active = COALESCE($5, is_active), updated_at = now() \
         WHERE id = $1 {RETURNING}"
    )))
    .bind(id)
    .bind(changes.email)
    .bind(changes.password_hash)
    .bind(changes.role)
    .bind(changes.is_active)
    .fetch_optional(pool)
    .await
    .map_err(taken)
}

/// Sets the password of `username` (the CLI's reset); whether the user exists.
pub async fn set_password(pool: &PgPool, username: &str, hash: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE console_users SET password_hash = $2, updated_at = now() WHERE username = $1",
    )
    .bind(username)
    .bind(hash)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Removes user `id`; whether there was one.
pub async fn delete(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM console_users WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1)
}

/// Removes user `username` (the CLI); whether there was one.
pub async fn delete_by_name(pool: &PgPool, username: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM console_users WHERE username = $1")
        .bind(username)
        .execute(pool)
        .await?
        .rows_affected()
        == 1)
}
