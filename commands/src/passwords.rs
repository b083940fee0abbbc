//! Password secrets for the use cases: Argon2id hashing and verification off the async threads, generated
//! passwords, and the [`Secret`] type that never prints. Owns no storage: hashes go to the credential adapter as
//! companions of the events that need them. Never logs a password.

use std::fmt;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// A secret (password, token) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a password could not be hashed or generated (the system's randomness or a worker thread failed).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashingError(pub String);

/// Hashes a password with Argon2id (OWASP parameters: m=19456 KiB, t=2, p=1) on a blocking thread.
pub async fn hash_password(password: Secret) -> Result<String, HashingError> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(|e| HashingError(e.to_string()))?
}

fn hash_now(password: &Secret) -> Result<String, HashingError> {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashingError(e.to_string()))?;
    Argon2::default()
        .hash_password_with_salt(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashingError(e.to_string()))
}

/// Hashes many passwords on every core at once (Argon2id is the cost of a big import), in input order.
pub async fn hash_all(passwords: Vec<Secret>) -> Result<Vec<String>, HashingError> {
    use futures_util::StreamExt;
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    futures_util::stream::iter(passwords.into_iter().map(hash_password))
        .buffered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Verifies a password against a stored hash on a blocking thread. With no stored hash, a dummy hash with the
/// same parameters is verified instead, so an unknown operator ID takes as long to refuse as a wrong password.
pub async fn verify_password(password: Secret, stored: Option<String>) -> Result<bool, HashingError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let hash = match stored {
            Some(h) => h,
            None => dummy_hash()?.to_owned(),
        };
        let ok = Argon2::default().verify_password(password.expose().as_bytes(), hash.as_str()).is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(|e| HashingError(e.to_string()))?
}

/// Whether `password` matches any of `hashes` (the reuse check), on a blocking thread.
pub async fn matches_any(password: Secret, hashes: Vec<String>) -> Result<bool, HashingError> {
    tokio::task::spawn_blocking(move || {
        hashes.iter().any(|h| Argon2::default().verify_password(password.expose().as_bytes(), h.as_str()).is_ok())
    })
    .await
    .map_err(|e| HashingError(e.to_string()))
}

/// The hash of a random password nobody knows, made once per process with the real parameters.
fn dummy_hash() -> Result<&'static str, HashingError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let hash = hash_now(&generate_password(24)?)?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// A random password of `len` half-width alphanumerics (CSPRNG, no modulo bias, no look-alike characters).
pub fn generate_password(len: usize) -> Result<Secret, HashingError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0_u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| HashingError(e.to_string()))?;
        for b in buf {
            // 57 symbols: accept bytes below 4 × 57 = 228 to keep the distribution uniform.
            if b < 228 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(Secret(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password(Secret::new("Passw0rdOK")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Secret::new("Passw0rdOK"), Some(hash.clone())).await.unwrap());
        assert!(!verify_password(Secret::new("wrong"), Some(hash.clone())).await.unwrap());
        assert!(!verify_password(Secret::new("anything"), None).await.unwrap());
        assert!(matches_any(Secret::new("Passw0rdOK"), vec!["x".into(), hash]).await.unwrap());
    }

    #[test]
    fn generated_passwords_are_half_width_alphanumeric_and_differ() {
        let a = generate_password(16).unwrap();
        let b = generate_password(16).unwrap();
        assert_eq!(a.expose().len(), 16);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }
}
