//! MQTT password hashes in the formats mosquitto-go-auth reads: its own PBKDF2 string
//! (`PBKDF2$sha512$100000$<base64 salt>$<base64 key>`, sha256 or sha512, any iteration
//! count and key length), bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2id
//! (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`). RustCrypto does the hashing; PBKDF2
//! keys are compared in constant time (bcrypt and argon2 compare in constant time
//! themselves). New hashes are go-auth's PBKDF2 with sha512, 100,000 iterations, a
//! 16-byte random salt and a 64-byte key.
//!
//! go-auth's salt is the base64 *string* in the hash, decoded to bytes before hashing
//! (its `salt_encoding = base64`, the default).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq;

/// PBKDF2 iterations of new hashes (go-auth's default).
pub const ITERATIONS: u32 = 100_000;
const SALT_BYTES: usize = 16;
const KEY_BYTES: usize = 64;
/// More iterations than this in a stored hash is refused: checking it would let one
/// CONNECT burn seconds of CPU.
const MAX_ITERATIONS: u32 = 10_000_000;

/// Why a stored hash cannot be checked (an operator's data problem, not a wrong password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("not a PBKDF2, bcrypt or argon2id hash")]
    UnknownFormat,
    #[error("malformed {0} hash")]
    Malformed(&'static str),
    #[error("PBKDF2 digest {0:?} is not sha256 or sha512")]
    UnsupportedDigest(String),
}

/// A new go-auth PBKDF2-sha512 hash of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt)?;
    let salt = B64.encode(salt);
    let mut key = [0u8; KEY_BYTES];
    pbkdf2_key("sha512", password, &salt, ITERATIONS, &mut key)
        .map_err(|_| getrandom::Error::UNSUPPORTED)?;
    Ok(format!(
        "PBKDF2$sha512${ITERATIONS}${salt}${}",
        B64.encode(key)
    ))
}

/// Whether `password` matches the stored `hash`.
pub fn verify(password: &str, hash: &str) -> Result<bool, HashError> {
    if let Some(rest) = hash.strip_prefix("PBKDF2$") {
        return verify_pbkdf2(password, rest);
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return bcrypt::verify(password, hash).map_err(|_| HashError::Malformed("bcrypt"));
    }
    if hash.starts_with("$argon2id$") {
        use argon2::password_hash::PasswordVerifier;
        use argon2::password_hash::phc::PasswordHash;
        let parsed = PasswordHash::new(hash).map_err(|_| HashError::Malformed("argon2id"))?;
        return Ok(argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok());
    }
    Err(HashError::UnknownFormat)
}

/// `digest$iterations$salt$key` after `PBKDF2$`.
fn verify_pbkdf2(password: &str, rest: &str) -> Result<bool, HashError> {
    let bad = || HashError::Malformed("PBKDF2");
    let mut parts = rest.split('$');
    let (Some(digest), Some(iterations), Some(salt), Some(key), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let iterations: u32 = iterations.parse().map_err(|_| bad())?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(bad());
    }
    let expected = B64.decode(key).map_err(|_| bad())?;
    if expected.is_empty() || expected.len() > 1024 {
        return Err(bad());
    }
    let mut got = vec![0u8; expected.len()];
    pbkdf2_key(digest, password, salt, iterations, &mut got)?;
    Ok(bool::from(got.ct_eq(&expected)))
}

/// The PBKDF2 key of `password` with the base64 `salt` string decoded to bytes.
fn pbkdf2_key(
    digest: &str,
    password: &str,
    salt: &str,
    iterations: u32,
    out: &mut [u8],
) -> Result<(), HashError> {
    let salt = B64
        .decode(salt)
        .map_err(|_| HashError::Malformed("PBKDF2"))?;
    match digest {
        "sha512" => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, iterations, out)
        }
        "sha256" => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, iterations, out)
        }
        other => return Err(HashError::UnsupportedDigest(other.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_are_go_auth_pbkdf2_and_verify() {
        let h = hash_password("s3cret").unwrap();
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(&parts[..3], ["PBKDF2", "sha512", "100000"]);
        assert_eq!(B64.decode(parts[3]).unwrap().len(), 16);
        assert_eq!(B64.decode(parts[4]).unwrap().len(), 64);
        assert_eq!(verify("s3cret", &h), Ok(true));
        assert_eq!(verify("s3creT", &h), Ok(false));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash_password("s3cret").unwrap());
    }

    /// Vectors computed independently (Python's hashlib.pbkdf2_hmac), with the salt
    /// string base64-decoded before hashing as go-auth does.
    #[test]
    fn pbkdf2_vectors_sha256_and_sha512_any_length() {
        // hashlib.pbkdf2_hmac('sha256', b'password', base64.b64decode('c2FsdHNhbHQ='), 1000, 32)
        let sha256 = "PBKDF2$sha256$1000$c2FsdHNhbHQ=$E196ZhRPzw+wA84EjzHwJO1cv/MFJdO6C/sxmUeTYqY=";
        // hashlib.pbkdf2_hmac('sha512', b'password', base64.b64decode('c2FsdHNhbHQ='), 1000, 16)
        let sha512 = "PBKDF2$sha512$1000$c2FsdHNhbHQ=$Q6v4xwJ8a9nWPp2BeEoAYQ==";
        for h in [sha256, sha512] {
            assert_eq!(verify("password", h), Ok(true), "{h}");
            assert_eq!(verify("Password", h), Ok(false), "{h}");
        }
    }

    #[test]
    fn bcrypt_and_argon2id() {
        let b = bcrypt::hash("pw", 4).unwrap();
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let h = format!("{prefix}{}", &b[4..]);
            assert_eq!(verify("pw", &h), Ok(true), "{h}");
            assert_eq!(verify("px", &h), Ok(false), "{h}");
        }
        // argon2-cffi: PasswordHasher(time_cost=2, memory_cost=512, parallelism=2)
        //     .hash("pw", salt=b"somesaltsomesalt")
        let a = "$argon2id$v=19$m=512,t=2,p=2$c29tZXNhbHRzb21lc2FsdA$ySGVw+g6+RsSyNY1XW7R/sVXY0aNRBg5pBSt1vhNE70";
        assert_eq!(verify("pw", a), Ok(true));
        assert_eq!(verify("px", a), Ok(false));
    }

    #[test]
    fn malformed_hashes_are_errors_not_matches() {
        for h in [
            "",
            "plain",
            "PBKDF2$sha512$abc$c2FsdA==$a2V5",
            "PBKDF2$sha512$1000$c2FsdA==",
            "PBKDF2$sha512$0$c2FsdA==$a2V5",
            "PBKDF2$sha512$99999999999$c2FsdA==$a2V5",
            "PBKDF2$sha512$1000$!!!$a2V5",
            "$2b$04$short",
            "$argon2id$v=19$broken",
        ] {
            assert!(verify("pw", h).is_err(), "{h:?}");
        }
        assert_eq!(
            verify("pw", "PBKDF2$md5$1000$c2FsdA==$a2V5"),
            Err(HashError::UnsupportedDigest("md5".into()))
        );
    }
}
