//! go-auth's tables (`mqtt_users`, `mqtt_acls`) as the `user` and `acl` subcommands
//! change them. Names, passwords and patterns are checked (and passwords hashed) by
//! `auth::users` before they get here; the tables' triggers notify every running
//! daemon, whose cache reloads (`auth::store`).

use sqlx::PgPool;

/// Adds a user; `false` when one with that name exists already.
pub async fn add_user(
    pool: &PgPool,
    name: &str,
    password_hash: &str,
    superuser: bool,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO mqtt_users (username, password_hash, is_superuser) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(name)
    .bind(password_hash)
    .bind(superuser)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(added > 0)
}

/// Replaces a user's password hash; `false` when there is no such user.
pub async fn set_password_hash(
    pool: &PgPool,
    name: &str,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE mqtt_users SET password_hash = $2, updated_at = now() WHERE username = $1",
    )
    .bind(name)
    .bind(password_hash)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Removes a user (its ACL rules go with it); `false` when there is no such user.
pub async fn remove_user(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query("DELETE FROM mqtt_users WHERE username = $1")
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(removed > 0)
}

/// Adds a rule for `user` (`None`: every user) with go-auth's access bits `rw`;
/// returns its id.
pub async fn add_rule(
    pool: &PgPool,
    user: Option<&str>,
    pattern: &str,
    rw: i32,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO mqtt_acls (username, topic, rw) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user)
    .bind(pattern)
    .bind(rw)
    .fetch_one(pool)
    .await
}

/// Removes rule `id`; `false` when there is no such rule.
pub async fn remove_rule(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query("DELETE FROM mqtt_acls WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(removed > 0)
}
