//! `console_users`: created, changed and removed by admins (the users routes) and by
//! the `console-user` subcommand. A unique violation (username or email taken) is
//! reported as such, for the caller's 400. Each change commits with its audit row
//! (`db::edits::audit`; never the password or its hash).

use serde_json::json;
use sqlx::PgPool;

use crate::audit::{Actor, Entry, action};
use crate::db::edits::audit;
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
    actor: &Actor,
    username: &str,
    email: &str,
    password_hash: &str,
    role: &str,
) -> Result<ConsoleUserRow, EditError> {
    let mut tx = pool.begin().await?;
    let row: ConsoleUserRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO console_users (username, email, password_hash, role) \
         VALUES ($1, $2, $3, $4) {RETURNING}"
    )))
    .bind(username)
    .bind(email)
    .bind(password_hash)
    .bind(role)
    .fetch_one(&mut *tx)
    .await
    .map_err(taken)?;
    let e = Entry::new(
        action::CONSOLE_USER_CREATE,
        username.to_string(),
        format!("console user {username} created ({role})"),
    )
    .details(json!({ "id": row.id, "email": email, "role": role }));
    audit::commit(tx, actor, &e).await?;
    Ok(row)
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
    actor: &Actor,
    id: &str,
    changes: &Changes<'_>,
) -> Result<Option<ConsoleUserRow>, EditError> {
    let mut tx = pool.begin().await?;
    let row: Option<ConsoleUserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
    .fetch_optional(&mut *tx)
    .await
    .map_err(taken)?;
    if let Some(u) = &row {
        let e = Entry::new(
            action::CONSOLE_USER_UPDATE,
            u.username.clone(),
            format!("console user {} changed", u.username),
        )
        .details(json!({
            "id": u.id,
            "email": changes.email,
            "role": changes.role,
            "is_active": changes.is_active,
            "password_changed": changes.password_hash.is_some(),
        }));
        audit::commit(tx, actor, &e).await?;
    }
    Ok(row)
}

/// Sets the password of `username` (the CLI's reset); whether the user exists.
pub async fn set_password(
    pool: &PgPool,
    actor: &Actor,
    username: &str,
    hash: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE console_users SET password_hash = $2, updated_at = now() WHERE username = $1",
    )
    .bind(username)
    .bind(hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let e = Entry::new(
        action::CONSOLE_USER_PASSWORD,
        username.to_string(),
        format!("password of console user {username} changed"),
    );
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Removes user `id`; whether there was one.
pub async fn delete(pool: &PgPool, actor: &Actor, id: &str) -> Result<bool, sqlx::Error> {
    delete_where(pool, actor, "id", id).await
}

/// Removes user `username` (the CLI); whether there was one.
pub async fn delete_by_name(
    pool: &PgPool,
    actor: &Actor,
    username: &str,
) -> Result<bool, sqlx::Error> {
    delete_where(pool, actor, "username", username).await
}

/// Removes the user whose `column` (`id` or `username`) is `value`.
async fn delete_where(
    pool: &PgPool,
    actor: &Actor,
    column: &'static str,
    value: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone: Option<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM console_users WHERE {column} = $1 RETURNING id, username"
    )))
    .bind(value)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, username)) = gone else {
        return Ok(false);
    };
    let e = Entry::new(
        action::CONSOLE_USER_DELETE,
        username.clone(),
        format!("console user {username} removed"),
    )
    .details(json!({ "id": id }));
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}
