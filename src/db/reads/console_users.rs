//! `console_users` as the sign-in cache (`auth::console::users`, every user with its
//! hash) and the users routes read it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A console user as the API shows it (TonyPi's `UserResponse`): never the hash.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ConsoleUserRow {
    pub id: String,
    pub username: String,
    pub email: String,
    pub role: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, username, email, role, is_active, created_at, updated_at";

/// A user with its password hash (the sign-in cache only).
#[derive(Debug, sqlx::FromRow)]
pub struct WithHash {
    #[sqlx(flatten)]
    pub row: ConsoleUserRow,
    pub password_hash: String,
}

/// Every user with its password hash, for the sign-in cache.
pub async fn all_with_hashes(pool: &PgPool) -> Result<Vec<WithHash>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, password_hash FROM console_users"
    )))
    .fetch_all(pool)
    .await
}

/// Every user, newest first (TonyPi's order).
pub async fn list(pool: &PgPool) -> Result<Vec<ConsoleUserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM console_users ORDER BY created_at DESC, username"
    )))
    .fetch_all(pool)
    .await
}

/// One user by id.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<ConsoleUserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM console_users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Active admins other than `id`: the last admin cannot be removed or demoted.
pub async fn other_active_admins(pool: &PgPool, id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM console_users WHERE role = 'admin' AND is_active AND id <> $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}
