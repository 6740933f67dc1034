//! Secrets: argon2id password hashes (PHC strings), and random tokens from the OS for session
//! cookies and personal API keys (stored only as [`store::token_hash`] digests).
//!
//! Hashing and verifying cost tens of milliseconds of CPU on purpose, so the async callers run
//! them on the blocking pool ([`hash_password`], [`verify_password`]).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Prefix of every personal API key (so a leaked key is recognisable in logs and scanners).
pub const API_KEY_PREFIX: &str = "dh-";
/// How much of a key the owner sees in listings (the prefix plus a few random characters).
pub const SHOWN_KEY_CHARS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Task(String),
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session token: 256 random bits as 64 hex digits.
pub fn session_token() -> Result<String, SecretError> {
    Ok(hex(&random_bytes::<32>()?))
}

/// A personal API key: `dh-` and 192 random bits as 48 hex digits.
pub fn api_key() -> Result<String, SecretError> {
    Ok(format!("{API_KEY_PREFIX}{}", hex(&random_bytes::<24>()?)))
}

/// The argon2id PHC string of `password` with a fresh random salt (argon2's default cost:
/// m = 19 MiB, t = 2, p = 1, OWASP's recommendation). Blocking: call from a blocking context.
pub fn hash_password_blocking(password: &str) -> Result<String, SecretError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?).map_err(|e| SecretError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`; a malformed hash never matches.
pub fn verify_password_blocking(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// [`hash_password_blocking`] on the blocking pool.
pub async fn hash_password(password: String) -> Result<String, SecretError> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|e| SecretError::Task(e.to_string()))?
}

/// Verifies `password` against `hash`, or against a fixed dummy hash when the user does not
/// exist, so both cases cost the same time and a response time does not tell which names exist.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, SecretError> {
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => Ok(verify_password_blocking(&password, &h)),
        None => {
            let dummy = dummy_hash()?;
            let _ = verify_password_blocking(&password, dummy);
            Ok(false)
        }
    })
    .await
    .map_err(|e| SecretError::Task(e.to_string()))?
}

/// Computes the dummy hash on a thread of its own, so that even the first sign-in with an
/// unknown name costs one verification, not a hash and a verification.
pub fn warm_up() {
    let _ = std::thread::Builder::new().name("daehwa-dummy-hash".into()).spawn(|| {
        let _ = dummy_hash();
    });
}

fn dummy_hash() -> Result<&'static str, SecretError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_password_blocking("daehwa: no such user")?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password_blocking("correct horse").expect("hash");
        let b = hash_password_blocking("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password_blocking("correct horse", &a));
        assert!(!verify_password_blocking("correct horsf", &a));
        assert!(!verify_password_blocking("correct horse", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_shaped() {
        let t = session_token().expect("token");
        assert_eq!(t.len(), 64);
        assert_ne!(t, session_token().expect("token"));
        let k = api_key().expect("key");
        assert!(k.starts_with(API_KEY_PREFIX) && k.len() == 3 + 48, "{k}");
    }
}
