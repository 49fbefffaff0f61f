//! The in-process cache every MQTT user and ACL check reads: a snapshot of
//! `mqtt_users` and `mqtt_acls` (go-auth's Postgres backend tables, read by
//! `db::reads::auth`), reloaded whenever a trigger notifies `fleetsink_auth` (any
//! change, by any instance or by hand) and, as a backstop, every
//! `db::listen::RELOAD_EVERY`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::acl::{Access, AclPattern};
use crate::db::reads;

#[derive(Debug, Clone)]
pub struct User {
    pub password_hash: String,
    pub superuser: bool,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: i64,
    /// `None`: every user.
    pub username: Option<String>,
    pub pattern: AclPattern,
    /// go-auth's bit mask: 1 read, 2 write, 4 subscribe.
    pub rw: i32,
}

/// Both tables at one moment; rules indexed by user, so a check reads only the rules
/// of that user and of every user, however many robots have rules of their own.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: HashMap<String, User>,
    /// `username IS NULL` rules.
    every_user: Vec<Rule>,
    by_user: HashMap<String, Vec<Rule>>,
}

impl Snapshot {
    pub fn is_superuser(&self, username: &str) -> bool {
        self.users.get(username).is_some_and(|u| u.superuser)
    }

    /// go-auth's ACL decision: superusers pass; otherwise a rule of this user or of
    /// every user (`username IS NULL`, as go-auth's Postgres ACL query reads them) with
    /// the access bit set whose pattern allows the topic.
    pub fn acl(&self, username: &str, client_id: &str, topic: &str, access: Access) -> bool {
        self.any_rule(username, client_id, topic, access, access)
    }

    /// Whether a rule granting `bit` covers every topic the filter could match
    /// (subscription semantics, whatever the bit).
    pub fn covers(&self, username: &str, client_id: &str, filter: &str, bit: Access) -> bool {
        self.any_rule(username, client_id, filter, bit, Access::Subscribe)
    }

    /// A superuser, or a rule of the user (or every user) granting `bit` whose pattern
    /// allows `topic` when matched as `matching` does.
    fn any_rule(
        &self,
        username: &str,
        client_id: &str,
        topic: &str,
        bit: Access,
        matching: Access,
    ) -> bool {
        let own = self.by_user.get(username).map_or(&[][..], Vec::as_slice);
        self.is_superuser(username)
            || self.every_user.iter().chain(own).any(|r| {
                r.rw & bit.bit() != 0 && r.pattern.allows(topic, username, client_id, matching)
            })
    }

    /// A snapshot of these users and rules.
    pub fn new(users: HashMap<String, User>, rules: Vec<Rule>) -> Snapshot {
        let mut every_user = Vec::new();
        let mut by_user: HashMap<String, Vec<Rule>> = HashMap::new();
        for r in rules {
            match &r.username {
                None => every_user.push(r),
                Some(u) => by_user.entry(u.clone()).or_default().push(r),
            }
        }
        Snapshot {
            users,
            every_user,
            by_user,
        }
    }
}

/// The cache of users and rules.
#[derive(Debug, Default)]
pub struct AuthStore {
    snapshot: RwLock<Arc<Snapshot>>,
    loaded: AtomicBool,
}

impl AuthStore {
    /// The current snapshot (cheap: an `Arc` clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Whether the tables have been read at least once (before that, every answer
    /// would be a denial the caller might cache).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Reads both tables into a new snapshot.
    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let users = reads::auth::users(pool).await?;
        let rows = reads::auth::rules(pool, None).await?;
        let mut rules = Vec::with_capacity(rows.len());
        for (id, username, topic, rw) in rows {
            match AclPattern::parse(&topic) {
                Ok(pattern) => rules.push(Rule {
                    id,
                    username,
                    pattern,
                    rw,
                }),
                // Only a manual edit can store one: skip it (it allows nothing).
                Err(e) => {
                    tracing::warn!(id, topic = %topic, error = %e, "ignoring an invalid mqtt_acls pattern")
                }
            }
        }
        let users = users
            .into_iter()
            .map(|(name, password_hash, superuser)| {
                (
                    name,
                    User {
                        password_hash,
                        superuser,
                    },
                )
            })
            .collect();
        let snapshot = Snapshot::new(users, rules);
        let mut slot = self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Arc::new(snapshot);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Keeps the cache current until `stop` (LISTEN `fleetsink_auth`; `db::listen`).
    pub async fn follow(self: Arc<Self>, pool: PgPool, stop: CancellationToken) {
        let reload_pool = pool.clone();
        crate::db::listen::follow(
            pool,
            "fleetsink_auth",
            "auth",
            || self.reload(&reload_pool),
            stop,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i64, user: Option<&str>, pattern: &str, rw: i32) -> Rule {
        Rule {
            id,
            username: user.map(str::to_string),
            pattern: AclPattern::parse(pattern).unwrap(),
            rw,
        }
    }

    #[test]
    fn a_users_rules_and_every_users_rules_apply_no_one_elses() {
        let users = HashMap::from([
            (
                "root".to_string(),
                User {
                    password_hash: String::new(),
                    superuser: true,
                },
            ),
            (
                "r7".to_string(),
                User {
                    password_hash: String::new(),
                    superuser: false,
                },
            ),
        ]);
        let s = Snapshot::new(
            users,
            vec![
                rule(1, None, "tonypi/+/%u", 2),
                rule(2, Some("r7"), "lab/#", 7),
                rule(3, Some("r8"), "secret/#", 7),
            ],
        );
        assert!(s.acl("r7", "c", "tonypi/status/r7", Access::Write));
        assert!(s.acl("r7", "c", "lab/x", Access::Read));
        assert!(!s.acl("r7", "c", "secret/x", Access::Read));
        assert!(s.acl("r8", "c", "secret/x", Access::Read));
        assert!(!s.acl("r8", "c", "lab/x", Access::Read));
        assert!(!s.acl("r7", "c", "tonypi/status/r7", Access::Read));
        assert!(s.acl("root", "c", "anything", Access::Subscribe));
        assert!(s.covers("r7", "c", "lab/#", Access::Read));
        assert!(!s.covers("r7", "c", "#", Access::Read));
    }
}
