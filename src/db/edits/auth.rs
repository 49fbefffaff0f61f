//! go-auth's tables (`mqtt_users`, `mqtt_acls`) as the `user` and `acl` subcommands
//! change them. Names, passwords and patterns are checked (and passwords hashed) by
//! `auth::users` before they get here; the tables' triggers notify every running
//! daemon, whose cache reloads (`auth::store`). Each change commits with its audit row
//! (`db::edits::audit`; never the password hash).

use serde_json::json;
use sqlx::PgPool;

use crate::audit::{Actor, Entry, action};
use crate::db::edits::audit;

/// Adds a user; `false` when one with that name exists already.
pub async fn add_user(
    pool: &PgPool,
    actor: &Actor,
    name: &str,
    password_hash: &str,
    superuser: bool,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let added = sqlx::query(
        "INSERT INTO mqtt_users (username, password_hash, is_superuser) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(name)
    .bind(password_hash)
    .bind(superuser)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if added == 0 {
        return Ok(false);
    }
    let e = Entry::new(
        action::MQTT_USER_CREATE,
        name.to_string(),
        format!("MQTT user {name} added"),
    )
    .details(json!({ "superuser": superuser }));
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Replaces a user's password hash; `false` when there is no such user.
pub async fn set_password_hash(
    pool: &PgPool,
    actor: &Actor,
    name: &str,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE mqtt_users SET password_hash = $2, updated_at = now() WHERE username = $1",
    )
    .bind(name)
    .bind(password_hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    let e = Entry::new(
        action::MQTT_USER_PASSWORD,
        name.to_string(),
        format!("password of MQTT user {name} changed"),
    );
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Removes a user (its ACL rules go with it); `false` when there is no such user.
pub async fn remove_user(pool: &PgPool, actor: &Actor, name: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let removed = sqlx::query("DELETE FROM mqtt_users WHERE username = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Ok(false);
    }
    let e = Entry::new(
        action::MQTT_USER_DELETE,
        name.to_string(),
        format!("MQTT user {name} and its rules removed"),
    );
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}

/// Adds a rule for `user` (`None`: every user) with go-auth's access bits `rw`;
/// returns its id.
pub async fn add_rule(
    pool: &PgPool,
    actor: &Actor,
    user: Option<&str>,
    pattern: &str,
    rw: i32,
) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO mqtt_acls (username, topic, rw) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user)
    .bind(pattern)
    .bind(rw)
    .fetch_one(&mut *tx)
    .await?;
    let who = user.unwrap_or("every user");
    let e = Entry::new(
        action::MQTT_ACL_CREATE,
        id.to_string(),
        format!("MQTT rule {id} added: {who} on {pattern} (rw {rw})"),
    )
    .details(json!({ "username": user, "topic": pattern, "rw": rw }));
    audit::commit(tx, actor, &e).await?;
    Ok(id)
}

/// Removes rule `id`; `false` when there is no such rule.
pub async fn remove_rule(pool: &PgPool, actor: &Actor, id: i64) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone: Option<(Option<String>, String, i32)> =
        sqlx::query_as("DELETE FROM mqtt_acls WHERE id = $1 RETURNING username, topic, rw")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((user, pattern, rw)) = gone else {
        return Ok(false);
    };
    let e = Entry::new(
        action::MQTT_ACL_DELETE,
        id.to_string(),
        format!("MQTT rule {id} removed"),
    )
    .details(json!({ "username": user, "topic": pattern, "rw": rw }));
    audit::commit(tx, actor, &e).await?;
    Ok(true)
}
