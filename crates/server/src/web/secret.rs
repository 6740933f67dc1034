//! Secrets: argon2id password hashes (PHC strings), and random tokens from the OS for session
//! cookies and personal API keys (stored only as [`store::token_hash`] digests).
//!
//! Hashing and verifying cost tens of milliseconds of CPU and 19 MiB on purpose, so the async
//! callers run them on a pool of their own ([`hash_password`], [`verify_password`]): at most
//! [`HASH_SLOTS`] at once with at most [`HASH_QUEUE`] more waiting; beyond that a caller gets
//! [`SecretError::Busy`] at once (429 with `Retry-After` on the web), so a flood of sign-ins
//! costs neither unbounded memory nor a thread each.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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
    #[error("too many passwords are being checked at once")]
    Busy,
}

/// Password hashes computed at once (threads of the hashing pool).
pub const HASH_SLOTS: usize = 2;
/// Password hashes allowed to wait for a thread; more are refused ([`SecretError::Busy`]).
pub const HASH_QUEUE: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing pool: [`HASH_SLOTS`] threads of its own behind a queue of [`HASH_QUEUE`].
///
/// Its own threads rather than tokio's blocking pool: that pool starts a new thread whenever
/// none is idle at the instant of a call, and each new thread gets its own allocator arena
/// that keeps the 19 MiB of a hash, so a burst of sign-ins grew memory with every thread.
fn pool() -> Option<&'static std::sync::mpsc::SyncSender<Job>> {
    static POOL: OnceLock<Option<std::sync::mpsc::SyncSender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(HASH_QUEUE);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut started = 0;
        for i in 0..HASH_SLOTS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("daehwa-hash-{i}")).spawn(move || loop {
                // One job at a time; a poisoned lock still hands out jobs.
                let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => return,
                };
                job();
            });
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then_some(tx)
    })
    .as_ref()
}

/// Runs `f` on the hashing pool; [`SecretError::Busy`] at once when its queue is full.
async fn gated<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, SecretError> {
    let pool = pool().ok_or_else(|| SecretError::Task("could not start the password hashing threads".into()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    pool.try_send(job).map_err(|e| match e {
        std::sync::mpsc::TrySendError::Full(_) => SecretError::Busy,
        std::sync::mpsc::TrySendError::Disconnected(_) => SecretError::Task("the password hashing threads stopped".into()),
    })?;
    rx.await.map_err(|e| SecretError::Task(e.to_string()))
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

/// The most argon2 memory a hash may ask for before it gets a buffer of its own rather than the
/// thread's reusable one (4 times the default cost).
const MAX_REUSED_BLOCKS: usize = 4 * Params::DEFAULT_M_COST as usize;

thread_local! {
    /// The argon2 memory of this thread, kept between hashes. The allocator would keep the
    /// 19 MiB of each freed hash anyway, but not necessarily reuse it (glibc's threshold for
    /// giving large blocks back grows after the first one): a burst of sign-ins grew the
    /// process by about 10 MiB per hash checked. Reused, it is 19 MiB per hashing thread.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 of `password` with `salt` (raw bytes) into `out`, in this thread's reusable memory.
fn argon2_into(a: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), SecretError> {
    let n = a.params().block_count();
    let mut run = |blocks: &mut [Block]| a.hash_password_into_with_memory(password, salt, out, blocks);
    let done = if n <= MAX_REUSED_BLOCKS {
        BLOCKS.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < n {
                b.resize(n, Block::default());
            }
            run(&mut b[..n])
        })
    } else {
        run(&mut vec![Block::default(); n])
    };
    done.map_err(|e| SecretError::Hash(e.to_string()))
}

/// The argon2id PHC string of `password` with a fresh random salt (argon2's default cost:
/// m = 19 MiB, t = 2, p = 1, OWASP's recommendation). Blocking: call from a blocking context.
pub fn hash_password_blocking(password: &str) -> Result<String, SecretError> {
    let err = |e: argon2::password_hash::Error| SecretError::Hash(e.to_string());
    let raw = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&raw).map_err(err)?;
    let params = Params::default();
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&a, password.as_bytes(), &raw, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(err)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(err)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`; a malformed hash never matches.
pub fn verify_password_blocking(password: &str, hash: &str) -> bool {
    let check = || -> Option<bool> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
        let params = Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let a = Argon2::new(algorithm, version, params);
        let mut out = vec![0u8; expected.len()];
        argon2_into(&a, password.as_bytes(), salt, &mut out).ok()?;
        // Output's comparison takes the same time wherever the bytes differ.
        Some(Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

/// [`hash_password_blocking`] on the hashing pool.
pub async fn hash_password(password: String) -> Result<String, SecretError> {
    gated(move || hash_password_blocking(&password)).await?
}

/// Verifies `password` against `hash`, or against a fixed dummy hash when the user does not
/// exist, so both cases cost the same time and a response time does not tell which names exist.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, SecretError> {
    gated(move || match hash {
        Some(h) => Ok(verify_password_blocking(&password, &h)),
        None => {
            let dummy = dummy_hash()?;
            let _ = verify_password_blocking(&password, dummy);
            Ok(false)
        }
    })
    .await?
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
        // The same PHC strings as argon2's own hasher, both ways.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let parsed = PasswordHash::new(&a).expect("phc");
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"correct horsf", &parsed).is_err());
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let theirs = Argon2::default().hash_password(b"pass phrase", &salt).expect("hash").to_string();
        assert!(verify_password_blocking("pass phrase", &theirs));
        assert!(!verify_password_blocking("pass phrasf", &theirs));
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
