//! [`LoginLimiter`]: failed sign-ins counted per client address and per username over a sliding
//! window, in memory. Past the limit a sign-in is refused with 429 and `Retry-After` before the
//! password is even checked, so guessing is slow however the guesses are spread.
//!
//! A success clears the username's failures (not the address's: one valid account must not
//! reset the counter for guessing others). Memory is bounded: old entries are swept when the
//! table grows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits: `max_failures` within `window`, separately per key kind.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_user: usize,
    pub per_address: usize,
    pub window: Duration,
}

impl Default for Limits {
    /// 5 failures per username and 20 per address in 5 minutes.
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

fn user_key(username: &str) -> String {
    format!("u:{}", username.to_lowercase())
}

fn address_key(address: &str) -> String {
    format!("a:{address}")
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

    /// `Err(wait)` when either key is over its limit: how long until a failure expires.
    pub fn check(&self, address: &str, username: &str, now: Instant) -> Result<(), Duration> {
        let mut t = self.table();
        let mut wait = Duration::ZERO;
        for (key, max) in [(user_key(username), self.limits.per_user), (address_key(address), self.limits.per_address)] {
            if let Some(q) = t.get_mut(&key) {
                expire(q, now, self.limits.window);
                if q.len() >= max {
                    let oldest = q.front().copied().unwrap_or(now);
                    wait = wait.max(self.limits.window.saturating_sub(now - oldest));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait.max(Duration::from_secs(1)))
        }
    }

    pub fn record_failure(&self, address: &str, username: &str, now: Instant) {
        let mut t = self.table();
        if t.len() >= SWEEP_AT {
            let window = self.limits.window;
            t.retain(|_, q| {
                expire(q, now, window);
                !q.is_empty()
            });
        }
        for key in [user_key(username), address_key(address)] {
            t.entry(key).or_default().push_back(now);
        }
    }

    pub fn record_success(&self, username: &str) {
        self.table().remove(&user_key(username));
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
    fn per_user_and_per_address_limits_with_retry_after() {
        let l = LoginLimiter::new(Limits { per_user: 3, per_address: 5, window: Duration::from_secs(60) });
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check("1.2.3.4", "Alice", t0).is_ok());
            l.record_failure("1.2.3.4", "Alice", t0 + Duration::from_secs(i));
        }
        let wait = l.check("9.9.9.9", "alice", t0 + Duration::from_secs(10)).expect_err("user over its limit");
        assert_eq!(wait, Duration::from_secs(50));
        // Another name from the same address still may, until the address limit.
        assert!(l.check("1.2.3.4", "bob", t0).is_ok());
        l.record_failure("1.2.3.4", "bob", t0);
        l.record_failure("1.2.3.4", "carol", t0);
        assert!(l.check("1.2.3.4", "dave", t0).is_err(), "five failures from the address");
        assert!(l.check("5.6.7.8", "dave", t0).is_ok());
        // The window slides.
        assert!(l.check("9.9.9.9", "alice", t0 + Duration::from_secs(61)).is_ok());
        // A success clears the user, not the address.
        l.record_success("bob");
        assert!(l.check("1.2.3.4", "bob", t0).is_err());
    }
}
