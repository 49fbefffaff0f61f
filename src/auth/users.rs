//! Administration of MQTT users and ACL rules (the `user` and `acl` subcommands): the
//! checks an operator's input must pass (a usable username, a non-empty password, a
//! valid pattern, an existing user) and the hashing, around go-auth's tables
//! (`db::edits::auth`, `db::reads::auth`); the tables' triggers tell every running
//! daemon. Each change is recorded in the audit trail as `actor`'s.

use sqlx::PgPool;

use crate::audit::Actor;

use super::acl::AclPattern;
use super::hash;
use crate::db::{edits, reads};

/// What an administration command could not do, said so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} already exists (use `fleetsink user passwd {0}` to change its password)")]
    Exists(String),
    #[error("no user {0:?} (see `fleetsink user list`)")]
    NoSuchUser(String),
    #[error("no ACL rule with id {0} (see `fleetsink acl list`)")]
    NoSuchRule(i64),
    #[error(
        "username {0:?}: use 1-128 characters without spaces, control characters, '+', '#' or '/'"
    )]
    BadUsername(String),
    #[error("ACL pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("no random numbers from the operating system for the salt: {0}")]
    Random(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// go-auth's access bits for a rule (`read` implies subscribe: 1|4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuleAccess {
    /// Receive and subscribe (rw = 5).
    Read,
    /// Publish (rw = 2).
    Write,
    /// Read, subscribe and publish (rw = 7).
    Readwrite,
    /// Subscribe only (rw = 4).
    Subscribe,
}

impl RuleAccess {
    pub fn rw(self) -> i32 {
        match self {
            RuleAccess::Read => 1 | 4,
            RuleAccess::Write => 2,
            RuleAccess::Readwrite => 7,
            RuleAccess::Subscribe => 4,
        }
    }
}

fn check_username(name: &str) -> Result<(), UserError> {
    let ok = (1..=128).contains(&name.chars().count())
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '+' | '#' | '/'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadUsername(name.to_string()))
    }
}

fn new_hash(password: &str) -> Result<String, UserError> {
    if password.is_empty() {
        return Err(UserError::EmptyPassword);
    }
    hash::hash_password(password).map_err(|e| UserError::Random(e.to_string()))
}

pub async fn add_user(
    pool: &PgPool,
    actor: &Actor,
    name: &str,
    password: &str,
    superuser: bool,
) -> Result<(), UserError> {
    check_username(name)?;
    let hash = new_hash(password)?;
    if !edits::auth::add_user(pool, actor, name, &hash, superuser).await? {
        return Err(UserError::Exists(name.to_string()));
    }
    Ok(())
}

pub async fn set_password(
    pool: &PgPool,
    actor: &Actor,
    name: &str,
    password: &str,
) -> Result<(), UserError> {
    let hash = new_hash(password)?;
    if !edits::auth::set_password_hash(pool, actor, name, &hash).await? {
        return Err(UserError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

/// Removes the user and its ACL rules.
pub async fn remove_user(pool: &PgPool, actor: &Actor, name: &str) -> Result<(), UserError> {
    if !edits::auth::remove_user(pool, actor, name).await? {
        return Err(UserError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

/// (username, superuser, rule count), by username.
pub async fn list_users(pool: &PgPool) -> Result<Vec<(String, bool, i64)>, UserError> {
    Ok(reads::auth::user_summaries(pool).await?)
}

/// Adds a rule for `user` (`None`: every user); returns its id.
pub async fn add_rule(
    pool: &PgPool,
    actor: &Actor,
    user: Option<&str>,
    pattern: &str,
    access: RuleAccess,
) -> Result<i64, UserError> {
    AclPattern::parse(pattern).map_err(|e| UserError::BadPattern {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })?;
    if let Some(u) = user
        && !reads::auth::user_exists(pool, u).await?
    {
        return Err(UserError::NoSuchUser(u.to_string()));
    }
    Ok(edits::auth::add_rule(pool, actor, user, pattern, access.rw()).await?)
}

pub async fn remove_rule(pool: &PgPool, actor: &Actor, id: i64) -> Result<(), UserError> {
    if !edits::auth::remove_rule(pool, actor, id).await? {
        return Err(UserError::NoSuchRule(id));
    }
    Ok(())
}

/// (id, username or None for every user, pattern, rw), optionally one user's (and the
/// every-user rules that apply to it).
pub async fn list_rules(
    pool: &PgPool,
    user: Option<&str>,
) -> Result<Vec<reads::auth::RuleRow>, UserError> {
    Ok(reads::auth::rules(pool, user).await?)
}

/// `rw` as words: `read+write+subscribe`.
pub fn rw_words(rw: i32) -> String {
    let words: Vec<&str> = [(1, "read"), (2, "write"), (4, "subscribe")]
        .iter()
        .filter(|(bit, _)| rw & bit != 0)
        .map(|(_, w)| *w)
        .collect();
    words.join("+")
}
