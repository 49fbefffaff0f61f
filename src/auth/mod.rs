//! MQTT authentication and authorisation, shared by the mosquitto-go-auth HTTP backend
//! endpoints (`http/goauth.rs`) and the embedded broker: users and ACL rules from
//! `mqtt_users` / `mqtt_acls` (go-auth's Postgres backend tables; cached in `store.rs`,
//! administered by `users.rs`, their SQL in `db::reads::auth` and `db::edits::auth`),
//! password hashes in go-auth's formats (`hash.rs`), topic patterns with go-auth's
//! semantics (`acl.rs`), and the embedded broker's access policy (`access.rs`: CONNECT,
//! Last Will, PUBLISH/SUBSCRIBE ACLs, payload identity) with its per-address throttling
//! of failed CONNECTs (`throttle.rs`).
//!
//! Password checks are CPU-bound by design (PBKDF2 100,000 rounds): they run on the
//! blocking pool, at most one per core at a time, so a flood of bad passwords cannot
//! take the runtime; a password already verified against the same stored hash is
//! remembered (keyed by an HMAC under a per-process random key, never the password) so
//! a robot that reconnects, or go-auth asking again, costs a lookup.

pub mod access;
pub mod acl;
pub mod console;
pub mod hash;
pub mod store;
pub mod throttle;
pub mod users;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hmac::{KeyInit, Mac};
use tokio::sync::Semaphore;

pub use access::AccessPolicy;
pub use acl::Access;
pub use store::AuthStore;

use crate::telemetry;

/// Checked against when the username is unknown (the default-cost PBKDF2 of the phrase
/// "fleetsink unknown user", nobody's password), so unknown and known users take the
/// same time.
const UNKNOWN_USER_HASH: &str = "PBKDF2$sha512$100000$ZmxlZXRzaW5rLXVua25vd24=$TRQCuNHZF65aDrnuoHbrusLLA7z5++up/Shao1u23bp07u3dBRrmKROcuRjuGSO7ezynW2RI+W1zVtDIa+Zttw==";

/// Verified (username, password, stored hash) triples remembered at most.
const VERIFIED_MAX: usize = 100_000;

/// A decision and, for a denial, why (told to go-auth; never the password or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(&'static str),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// The checks, over the cached users and rules.
pub struct Authenticator {
    store: Arc<AuthStore>,
    hash_slots: Semaphore,
    verified: Mutex<HashSet<[u8; 32]>>,
    key: [u8; 32],
}

impl Authenticator {
    pub fn new(store: Arc<AuthStore>) -> Self {
        let mut key = [0u8; 32];
        // Without OS randomness the remembered-verification cache stays keyed by zeros:
        // still not the password itself, and only ever in this process's memory.
        let _ = getrandom::fill(&mut key);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            store,
            hash_slots: Semaphore::new(cores),
            verified: Mutex::new(HashSet::new()),
            key,
        }
    }

    pub fn store(&self) -> &Arc<AuthStore> {
        &self.store
    }

    /// CONNECT: does `password` match `username`'s stored hash?
    pub async fn check_user(&self, username: &str, password: &str) -> Decision {
        let decision = self.verify_user(username, password).await;
        telemetry::auth_check("user", if decision.allowed() { "allow" } else { "deny" });
        decision
    }

    async fn verify_user(&self, username: &str, password: &str) -> Decision {
        let user = self.store.snapshot().users.get(username).cloned();
        let Some(user) = user else {
            // The same hash work as for a known user, so answer times do not tell an
            // attacker which usernames exist.
            let _ = self.run_hash(password, UNKNOWN_USER_HASH).await;
            return Decision::Deny("unknown user or wrong password");
        };
        let tag = self.tag(username, password, &user.password_hash);
        if self.remembered(&tag) {
            return Decision::Allow;
        }
        let verified = self.run_hash(password, &user.password_hash).await;
        match verified {
            Ok(Ok(true)) => {
                self.remember(tag);
                Decision::Allow
            }
            Ok(Ok(false)) => Decision::Deny("unknown user or wrong password"),
            Ok(Err(e)) => {
                tracing::warn!(username = %username, error = %e, "stored MQTT password hash cannot be checked");
                Decision::Deny("unknown user or wrong password")
            }
            Err(_) => Decision::Deny("password check failed"),
        }
    }

    /// One hash verification on the blocking pool, at most one per core at a time.
    async fn run_hash(
        &self,
        password: &str,
        stored: &str,
    ) -> Result<Result<bool, hash::HashError>, tokio::task::JoinError> {
        let Ok(_slot) = self.hash_slots.acquire().await else {
            return Ok(Ok(false));
        };
        let (hash, pw) = (stored.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || hash::verify(&pw, &hash)).await
    }

    pub fn check_superuser(&self, username: &str) -> Decision {
        let d = if self.store.snapshot().is_superuser(username) {
            Decision::Allow
        } else {
            Decision::Deny("not a superuser")
        };
        telemetry::auth_check("superuser", if d.allowed() { "allow" } else { "deny" });
        d
    }

    pub fn check_acl(
        &self,
        username: &str,
        client_id: &str,
        topic: &str,
        access: Access,
    ) -> Decision {
        let d = if self
            .store
            .snapshot()
            .acl(username, client_id, topic, access)
        {
            Decision::Allow
        } else {
            Decision::Deny("no rule allows this topic")
        };
        telemetry::auth_check("acl", if d.allowed() { "allow" } else { "deny" });
        d
    }

    /// For a broker that cannot check each delivery (the embedded one): whether rules
    /// granting *read* cover every topic the subscription `filter` could match.
    pub fn check_subscription_reads(&self, username: &str, client_id: &str, filter: &str) -> bool {
        self.store
            .snapshot()
            .covers(username, client_id, filter, Access::Read)
    }

    fn tag(&self, username: &str, password: &str, stored: &str) -> [u8; 32] {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&Default::default()));
        for part in [username, password, stored] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn remembered(&self, tag: &[u8; 32]) -> bool {
        self.verified.lock().is_ok_and(|v| v.contains(tag))
    }

    fn remember(&self, tag: [u8; 32]) {
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= VERIFIED_MAX {
                v.clear();
            }
            v.insert(tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unknown_user_hash_is_a_full_cost_hash() {
        assert_eq!(
            hash::verify("fleetsink unknown user", UNKNOWN_USER_HASH),
            Ok(true)
        );
        assert!(UNKNOWN_USER_HASH.starts_with(&format!("PBKDF2$sha512${}$", hash::ITERATIONS)));
    }
}
