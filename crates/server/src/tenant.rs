//! [`Tenant`]: whose request this is, as far as the KV prefix cache is concerned.
//!
//! The engine keys cached prefix blocks by a hash chain that starts from a per-request salt
//! (`engine::runner::Request::salt`), so equal prompt prefixes of different tenants never share
//! blocks: `cached_tokens` and the time to the first token tell a client nothing about what
//! others sent. The salt is a keyed hash (SipHash with a random per-process key) of the tenant's
//! identity: an `--api-key`, a signed-in user (web UI or personal API key), or "anyone" on an
//! open server. `--shared-prefix-cache` makes every salt 0: one cache for all (a common system
//! prompt is computed once for everybody).

use std::hash::BuildHasher;
use std::sync::OnceLock;

use crate::config::ServeConfig;

/// The prefix-cache salt of a request's tenant (0: the shared cache). Put into the request's
/// extensions by the `/v1` key check; the web routes derive it from the signed-in user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenant(pub u64);

/// Who a tenant is.
#[derive(Clone, Copy, Debug, Hash)]
pub enum Identity<'a> {
    /// One of the server's `--api-key`s.
    ApiKey(&'a str),
    /// An account (its web sessions and its personal API keys).
    User(i64),
    /// Anyone, on a server without authentication.
    Anyone,
}

/// The process's secret key for the salts: random per run, never leaves the process.
fn key() -> &'static std::collections::hash_map::RandomState {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEY.get_or_init(std::collections::hash_map::RandomState::new)
}

impl Tenant {
    /// The salt of `who` under `config` (0 with `shared_prefix_cache`; never 0 otherwise).
    pub fn of(config: &ServeConfig, who: Identity<'_>) -> Tenant {
        if config.shared_prefix_cache {
            return Tenant(0);
        }
        if let Some(k) = PERSISTENT_KEY.get() {
            return Tenant(persistent_salt(k, who));
        }
        Tenant(key().hash_one(who).max(1))
    }
}

/// The salts' key when it must outlive the process (see [`use_persistent_key`]).
static PERSISTENT_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Feeds what `Hash` writes into SHA-256.
struct Sha256Hasher(sha2::Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }
    fn finish(&self) -> u64 {
        let d = sha2::Digest::finalize(self.0.clone());
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// SHA-256 of the key then the identity, its first 64 bits (never 0).
fn persistent_salt(key: &[u8; 32], who: Identity<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = Sha256Hasher(<sha2::Sha256 as sha2::Digest>::new());
    h.write(key);
    who.hash(&mut h);
    h.finish().max(1)
}

/// Makes the salts the same in every run that reads the key file at `path` (created with 32
/// random bytes, mode 0600, when missing): the KV disk tier's blocks are keyed by the salt, so
/// a restarted server must derive the same ones to find its tenants' prefixes. Call before the
/// first request; a later call changes nothing.
pub fn use_persistent_key(path: &std::path::Path) -> std::io::Result<()> {
    let key = match std::fs::read(path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) | Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::keyfile::create(path)?.to_vec()
        }
    };
    let mut k = [0u8; 32];
    k.copy_from_slice(&key);
    let _ = PERSISTENT_KEY.set(k);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_salts_depend_on_key_and_identity() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let s = persistent_salt(&a, Identity::ApiKey("k"));
        assert_eq!(s, persistent_salt(&a, Identity::ApiKey("k")), "the same in every run");
        assert_ne!(s, persistent_salt(&b, Identity::ApiKey("k")));
        assert_ne!(s, persistent_salt(&a, Identity::ApiKey("j")));
        assert_ne!(persistent_salt(&a, Identity::User(1)), persistent_salt(&a, Identity::User(2)));
        assert_ne!(persistent_salt(&a, Identity::Anyone), 0);
    }

    #[test]
    fn salts_differ_by_identity_and_vanish_when_shared() {
        let mut c = ServeConfig::new("m");
        let a = Tenant::of(&c, Identity::ApiKey("a"));
        assert_eq!(a, Tenant::of(&c, Identity::ApiKey("a")));
        assert_ne!(a, Tenant::of(&c, Identity::ApiKey("b")));
        assert_ne!(Tenant::of(&c, Identity::User(1)), Tenant::of(&c, Identity::User(2)));
        assert_ne!(a.0, 0);
        c.shared_prefix_cache = true;
        assert_eq!(Tenant::of(&c, Identity::ApiKey("a")), Tenant(0));
    }
}
