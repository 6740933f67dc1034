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
        Tenant(key().hash_one(who).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
