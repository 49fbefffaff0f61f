//! go-auth's tables (`mqtt_users`, `mqtt_acls`) as read by the auth cache
//! (`auth::store`, the whole of both) and by the `user`/`acl` subcommands (listings).
//! Patterns come back as stored text: parsing them is `auth`'s business.

use sqlx::PgPool;

/// Every user: (username, password hash, superuser).
pub async fn users(pool: &PgPool) -> Result<Vec<(String, String, bool)>, sqlx::Error> {
    sqlx::query_as("SELECT username, password_hash, is_superuser FROM mqtt_users")
        .fetch_all(pool)
        .await
}

/// Whether user `name` exists.
pub async fn user_exists(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM mqtt_users WHERE username = $1)")
        .bind(name)
        .fetch_one(pool)
        .await
}

/// (username, superuser, rule count), by username.
pub async fn user_summaries(pool: &PgPool) -> Result<Vec<(String, bool, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.username, u.is_superuser, count(a.id) FROM mqtt_users u \
         LEFT JOIN mqtt_acls a ON a.username = u.username \
         GROUP BY u.username, u.is_superuser ORDER BY u.username",
    )
    .fetch_all(pool)
    .await
}

/// An ACL rule: (id, username or `None` for every user, pattern, rw).
pub type RuleRow = (i64, Option<String>, String, i32);

/// The rules by id: all of them, or with `user` only that user's and the every-user
/// ones that apply to it.
pub async fn rules(pool: &PgPool, user: Option<&str>) -> Result<Vec<RuleRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, topic, rw FROM mqtt_acls \
         WHERE $1::text IS NULL OR username = $1 OR username IS NULL ORDER BY id",
    )
    .bind(user)
    .fetch_all(pool)
    .await
}
