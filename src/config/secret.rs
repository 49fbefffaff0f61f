//! Secrets in configuration: how they are held, masked and printed.
//!
//! Passwords and tokens are `secrecy::SecretString` (zeroised on drop, `Debug` prints
//! `[REDACTED]`, no `Display`). URLs that may carry a password (`database.url`,
//! `mqtt.external.url`) are [`SensitiveUrl`]: its `Debug`, `Display` and `Serialize`
//! show the URL with the password replaced by `********`, so neither a log line, a
//! panic message nor `check-config` can leak it. Code that needs the real value calls
//! `expose()` / `expose_secret()` at the one place it hands it to a driver.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serializer};

/// What a masked secret prints as.
pub const MASK: &str = "********";

/// A URL whose password must never be printed.
#[derive(Clone, Default)]
pub struct SensitiveUrl {
    value: Option<SecretString>,
}

impl SensitiveUrl {
    pub fn new(url: impl Into<String>) -> Self {
        let url: String = url.into();
        Self {
            value: (!url.is_empty()).then(|| SecretString::from(url)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_none()
    }

    /// The URL with its password: only for the driver that connects with it.
    pub fn expose(&self) -> &str {
        self.value.as_ref().map_or("", |v| v.expose_secret())
    }

    /// The URL with its password replaced by [`MASK`].
    pub fn masked(&self) -> String {
        mask_url_password(self.expose())
    }
}

impl From<&str> for SensitiveUrl {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for SensitiveUrl {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl PartialEq for SensitiveUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Display for SensitiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for SensitiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl serde::Serialize for SensitiveUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for SensitiveUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SensitiveUrl::new)
    }
}

/// `serialize_with` for an optional secret: present secrets print as [`MASK`].
pub fn serialize_masked<S: Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str(MASK),
        None => s.serialize_none(),
    }
}

/// Replaces the password of `scheme://user:password@host…`, and the value of a
/// `password=` query parameter (libpq and sqlx accept both), with [`MASK`]. Works on
/// text that is not a valid URL too (the masking must not depend on the rest being right).
pub fn mask_url_password(url: &str) -> String {
    mask_query_password(&mask_userinfo_password(url))
}

fn mask_query_password(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let (head, query) = url.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={MASK}"),
            _ => p.to_string(),
        })
        .collect();
    format!("{head}{}", params.join("&"))
}

fn mask_userinfo_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    // The authority ends at the first '/', '?' or '#'; the credentials at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}{}:{MASK}{}",
            &url[..scheme_end + 3],
            &creds[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_masked_everywhere() {
        let u = SensitiveUrl::new("postgres://fleet:s3cret@db:5432/fleet");
        assert_eq!(u.to_string(), "postgres://fleet:********@db:5432/fleet");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.expose(), "postgres://fleet:s3cret@db:5432/fleet");
        assert_eq!(
            mask_url_password("mqtt://u:p@ss@[::1]:99"),
            "mqtt://u:********@[::1]:99"
        );
        assert_eq!(
            mask_url_password("postgres://h/db?sslmode=disable&password=x@y"),
            "postgres://h/db?sslmode=disable&password=********",
            "a password in the query is masked; an '@' there is not a credential separator"
        );
        assert_eq!(mask_url_password("mqtt://host:1883"), "mqtt://host:1883");
        assert!(SensitiveUrl::new("").is_empty());
    }
}
