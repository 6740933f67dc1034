//! [`LoginLimiter`]: failed sign-ins counted per account *at* a client address, and per client
//! address, over a sliding window, in memory. Past either limit a sign-in is refused with 429
//! and `Retry-After` before the password is even checked.
//!
//! A failure is counted *before* the password hash is checked: [`LoginLimiter::reserve`] takes
//! a slot on both counters (or refuses), the hash is verified, and only a success gives the
//! slots back ([`LoginLimiter::release`]). So 100 guesses sent at once cost at most the limit's
//! worth of hash checks, not 100.
//!
//! The account's counter is kept per address: guesses from elsewhere cannot lock the owner out
//! (the owner's own address has its own count). A success clears that account-at-address
//! counter and returns its own address slot (not the address's other failures: one valid
//! account must not reset the counter for guessing others). Memory is bounded: old entries are
//! swept when the table grows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits: failures within `window`, per account at one address and per address.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_user: usize,
    pub per_address: usize,
    pub window: Duration,
}

impl Default for Limits {
    /// 5 failures per account at an address and 20 per address in 5 minutes.
    fn default() -> Self {
        Limits { per_user: 5, per_address: 20, window: Duration::from_secs(300) }
    }
}

/// Sweep expired entries once the table has this many keys.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Default)]
pub struct LoginLimiter {
    limits: Limits,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn user_key(username: &str, address: &str) -> String {
    // A username has no control characters (input parsing refuses them), so the NUL cannot be
    // forged into another pair; a name that was never valid just gets its own key.
    format!("u:{}\0{address}", username.to_lowercase())
}

fn address_key(address: &str) -> String {
    format!("a:{address}")
}

/// A failure counted in advance; give it back with [`LoginLimiter::release`] on success.
#[must_use = "a reservation counts as a failure unless released"]
#[derive(Debug)]
pub struct Reservation {
    user: String,
    address: String,
    at: Instant,
}

impl LoginLimiter {
    pub fn new(limits: Limits) -> Self {
        LoginLimiter { limits, failures: Mutex::default() }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        // A panic while holding the lock cannot leave the table inconsistent (each operation
        // is a push or a pop), so a poisoned lock is still usable.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failure of `username` from `address` now, before the password is checked.
    /// `Err(wait)` (nothing counted) when either counter is at its limit: how long until a
    /// failure expires.
    pub fn reserve(&self, address: &str, username: &str, now: Instant) -> Result<Reservation, Duration> {
        let (user, addr) = (user_key(username, address), address_key(address));
        let mut t = self.table();
        if t.len() >= SWEEP_AT {
            let window = self.limits.window;
            t.retain(|_, q| {
                expire(q, now, window);
                !q.is_empty()
            });
        }
        let mut wait = Duration::ZERO;
        for (key, max) in [(&user, self.limits.per_user), (&addr, self.limits.per_address)] {
            if let Some(q) = t.get_mut(key) {
                expire(q, now, self.limits.window);
                if q.len() >= max {
                    let oldest = q.front().copied().unwrap_or(now);
                    wait = wait.max(self.limits.window.saturating_sub(now - oldest));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait.max(Duration::from_secs(1)));
        }
        for key in [&user, &addr] {
            t.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Reservation { user, address: addr, at: now })
    }

    /// The password was right: the account's failures at this address are cleared, and the
    /// address gets back the slot this attempt took.
    pub fn release(&self, r: Reservation) {
        let mut t = self.table();
        t.remove(&r.user);
        if let Some(q) = t.get_mut(&r.address) {
            if let Some(i) = q.iter().rposition(|&at| at == r.at) {
                q.remove(i);
            }
        }
    }
}

fn expire(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|&t| now.duration_since(t) >= window) {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_before_the_check_per_account_at_address_and_per_address() {
        let l = LoginLimiter::new(Limits { per_user: 3, per_address: 5, window: Duration::from_secs(60) });
        let t0 = Instant::now();
        for i in 0..3 {
            let _failed = l.reserve("1.2.3.4", "Alice", t0 + Duration::from_secs(i)).expect("under the limit");
        }
        let wait = l.reserve("1.2.3.4", "alice", t0 + Duration::from_secs(10)).expect_err("alice at 1.2.3.4 is over");
        assert_eq!(wait, Duration::from_secs(50));
        // The owner elsewhere is not locked out by failures at 1.2.3.4, and signs in.
        let owner = l.reserve("9.9.9.9", "alice", t0).expect("another address");
        l.release(owner);
        // Another name from the same address still may, until the address limit.
        let _ = l.reserve("1.2.3.4", "bob", t0).expect("bob");
        let carol = l.reserve("1.2.3.4", "carol", t0).expect("carol");
        assert!(l.reserve("1.2.3.4", "dave", t0).is_err(), "five failures from the address");
        // A success gives its own slot back, not the address's other failures.
        l.release(carol);
        let _ = l.reserve("1.2.3.4", "dave", t0).expect("carol's slot came back");
        assert!(l.reserve("1.2.3.4", "erin", t0).is_err());
        assert!(l.reserve("5.6.7.8", "dave", t0).is_ok());
        // The window slides.
        assert!(l.reserve("1.2.3.4", "alice", t0 + Duration::from_secs(61)).is_ok());
    }
}
