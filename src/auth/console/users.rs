//! The console users every request is checked against: an in-process copy of
//! `console_users` (with hashes), reloaded whenever the table's trigger notifies
//! `fleetsink_console` (`db::listen`). A session token names a user; the user's
//! *current* row decides — a deactivated, removed or demoted user loses access on the
//! next request, on every instance, without waiting for the token to expire — and the
//! check costs a map lookup, not a query.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Role;
use crate::db::reads::console_users::{self, ConsoleUserRow};

/// A user as the cache holds it.
#[derive(Debug, Clone)]
pub struct Known {
    pub row: ConsoleUserRow,
    pub role: Role,
    pub password_hash: String,
}

/// The cache, by username.
#[derive(Debug, Default)]
pub struct ConsoleUsers {
    by_name: RwLock<Arc<HashMap<String, Known>>>,
}

impl ConsoleUsers {
    /// The user named `username`, as last loaded.
    pub fn get(&self, username: &str) -> Option<Known> {
        self.snapshot().get(username).cloned()
    }

    /// Whether any user exists (sign-in needs a first admin: `console-user add`).
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<HashMap<String, Known>> {
        self.by_name
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Reads the table into a new copy. A row with a role fleetsink does not know (a
    /// manual edit) is left out: it signs nobody in.
    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows = console_users::all_with_hashes(pool).await?;
        let by_name = rows
            .into_iter()
            .filter_map(|console_users::WithHash { row, password_hash }| {
                let role = Role::parse(&row.role)?;
                Some((
                    row.username.clone(),
                    Known {
                        row,
                        role,
                        password_hash,
                    },
                ))
            })
            .collect();
        let mut slot = self
            .by_name
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Arc::new(by_name);
        Ok(())
    }

    /// Keeps the copy current until `stop`.
    pub async fn follow(self: Arc<Self>, pool: PgPool, stop: CancellationToken) {
        let reload_pool = pool.clone();
        crate::db::listen::follow(
            pool,
            "fleetsink_console",
            "console users",
            || self.reload(&reload_pool),
            stop,
        )
        .await;
    }
}
