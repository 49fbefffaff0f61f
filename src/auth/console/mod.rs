//! Console users: the people who sign in to TonyPi's web UI (table `console_users`;
//! not MQTT users). Their roles, their password hashes, and the signed session tokens
//! the UI carries — JWT HS256 bearer tokens with `sub` (username), `role` and `exp`, as
//! TonyPi's `backend/utils/auth.py` issues them, so a token from either backend has the
//! same shape.
//!
//! Pure: no I/O. The token is checked with the HMAC's constant-time comparison, only
//! `HS256` is accepted (a token naming `none` or another algorithm is refused, whatever
//! its signature), and an expired token is refused without leeway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use super::hash;

mod throttle;
mod users;

pub use throttle::LoginThrottle;
pub use users::{ConsoleUsers, Known};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a console user may do; each role may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also sends commands to robots, acknowledges and resolves alerts.
    Operator,
    /// Also manages users, thresholds and robots.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// The role when the token was issued (the role that counts is the user's current one).
    pub role: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: i64,
}

/// Why a token is refused (all are answered 401 alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT")]
    Malformed,
    #[error("only HS256 tokens are accepted")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// A session token for `username` with `role`, valid for `ttl` from `now`.
pub fn issue_token(
    username: &str,
    role: Role,
    secret: &[u8],
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> String {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(8));
    let claims = Claims {
        sub: username.to_string(),
        role: role.as_str().to_string(),
        exp: (now + ttl).timestamp(),
        iat: now.timestamp(),
    };
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Serializing a struct of strings and integers cannot fail.
    let payload = B64URL.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let signature = B64URL.encode(
        mac(secret, signing_input.as_bytes())
            .finalize()
            .into_bytes(),
    );
    format!("{signing_input}.{signature}")
}

/// The claims of `token` if it is an unexpired HS256 token signed with `secret`.
pub fn verify_token(token: &str, secret: &[u8], now: DateTime<Utc>) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decoded = |part: &str| B64URL.decode(part).map_err(|_| TokenError::Malformed);
    let header: Header =
        serde_json::from_slice(&decoded(header)?).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let signing_input = &token[..token.len() - signature.len() - 1];
    mac(secret, signing_input.as_bytes())
        .verify_slice(&decoded(signature)?)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims =
        serde_json::from_slice(&decoded(payload)?).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now.timestamp() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn mac(secret: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; the fallback is unreachable.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    m.update(data);
    m
}

/// A new argon2id hash of a console password.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    use argon2::password_hash::PasswordHasher;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| PasswordError::Randomness)?;
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Whether `password` matches `stored` (argon2id, or bcrypt as TonyPi stores them, so
/// its users can be copied over as they are).
pub fn verify_password(password: &str, stored: &str) -> bool {
    hash::verify(password, stored).unwrap_or(false)
}

/// An argon2id hash of a random password nobody knows, made once, verified for unknown
/// usernames so that a failed sign-in costs the same time whether or not the user exists.
pub fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut secret = [0u8; 24];
        let _ = getrandom::fill(&mut secret);
        hash_password(&B64URL.encode(secret)).unwrap_or_default()
    });
    &HASH
}

/// Why a password cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be 8-128 characters")]
    Length,
    #[error("no randomness for the salt")]
    Randomness,
    #[error("hashing failed")]
    Hashing,
}

/// A console password's rules: 8-128 characters.
pub fn check_password_rules(password: &str) -> Result<(), PasswordError> {
    if (8..=128).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(PasswordError::Length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let now = at("2026-12-06T10:00:00Z");
        let t = issue_token(
            "ada",
            Role::Operator,
            b"k",
            now,
            std::time::Duration::from_secs(3600),
        );
        let c = verify_token(&t, b"k", now).unwrap();
        assert_eq!((c.sub.as_str(), c.role.as_str()), ("ada", "operator"));
        assert_eq!(c.exp - c.iat, 3600);
        assert_eq!(verify_token(&t, b"other", now), Err(TokenError::Signature));
        assert_eq!(
            verify_token(&t, b"k", at("2026-12-06T11:00:00Z")),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_from_tonypis_backend_is_read() {
        // python-jose: jwt.encode({"sub": "admin", "role": "admin", "exp": 4102444800},
        //                         "tonypi-secret-key-change-in-production", algorithm="HS256")
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZG1pbiIsInJvbGUiOiJhZG1pbiIsImV4cCI6NDEwMjQ0NDgwMH0.Buq1z-VdV6z7vt1URP27NZi9RrukrP5hVxK97KgyZJY";
        let c = verify_token(
            t,
            b"tonypi-secret-key-change-in-production",
            at("2026-12-06T10:00:00Z"),
        );
        assert_eq!(c.map(|c| c.sub), Ok("admin".to_string()));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let now = at("2026-12-06T10:00:00Z");
        let t = issue_token(
            "ada",
            Role::Viewer,
            b"k",
            now,
            std::time::Duration::from_secs(60),
        );
        let parts: Vec<&str> = t.split('.').collect();
        // alg none, no signature
        let none = format!("{}.{}.", B64URL.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(verify_token(&none, b"k", now), Err(TokenError::Algorithm));
        // the payload changed to admin, signature kept
        let admin = B64URL.encode(br#"{"sub":"ada","role":"admin","exp":4102444800}"#);
        let forged = format!("{}.{admin}.{}", parts[0], parts[2]);
        assert_eq!(verify_token(&forged, b"k", now), Err(TokenError::Signature));
        assert_eq!(verify_token("a.b", b"k", now), Err(TokenError::Malformed));
        assert_eq!(verify_token("é.é.é", b"k", now), Err(TokenError::Malformed));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        // TonyPi's bcrypt hashes keep working.
        let b = bcrypt::hash("admin123", 4).unwrap();
        assert!(verify_password("admin123", &b));
        assert!(unknown_user_hash().starts_with("$argon2id$"));
        assert!(!verify_password("x", unknown_user_hash()));
        assert_eq!(check_password_rules("short"), Err(PasswordError::Length));
        assert!(check_password_rules("long enough").is_ok());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }
}
