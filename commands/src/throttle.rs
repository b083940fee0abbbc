//! Throttling of failed logins (issue 9): per client address and per login name, each failure beyond a few free
//! ones makes the next attempt from there, or for him, wait twice as long as the last (1 s, 2 s, 4 s … up to
//! 15 minutes). An attempt that comes too early is answered at once with how long to wait, before any password
//! work; so guessing costs the guesser time, not the server, and no operator can be locked by someone else's
//! guesses faster than the policy allows.
//!
//! Owns the counters, which live in this node's memory (bounded: the least recent entries go first): a restart
//! forgets them, and several nodes count separately — the lockout on the operator's login stream is the limit
//! that holds across nodes. Reads the time from the injected [`Clock`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// How failures are throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures for one login name that cost no waiting.
    pub free_per_login: u32,
    /// Failures from one client address that cost no waiting (several clerks may share an address).
    pub free_per_address: u32,
    /// The wait after the first failure beyond the free ones; each further one doubles it.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// A counter with no failure for this long is forgotten.
    pub forget_after: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_per_login: 3,
            free_per_address: 10,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
        }
    }
}

/// Whose failures are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attempter {
    /// A client address.
    Address(IpAddr),
    /// A login name as typed: municipality and operator ID (whether or not such an operator exists, so guessing
    /// names is throttled as guessing passwords is).
    Login(String),
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    last_failure: DateTime<Utc>,
    not_before: DateTime<Utc>,
}

/// Entries kept at most; beyond, the least recent go.
const MAX_ENTRIES: usize = 100_000;

/// The failure counters of this node.
#[derive(Debug, Clone)]
pub struct Throttle {
    counters: Arc<Mutex<HashMap<Attempter, Counter>>>,
    policy: ThrottlePolicy,
    clock: Arc<dyn Clock>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy, clock: Arc<dyn Clock>) -> Self {
        Throttle { counters: Arc::new(Mutex::new(HashMap::new())), policy, clock }
    }

    /// `Err(wait)` when any of `who` must wait before trying again.
    pub fn check(&self, who: &[Attempter]) -> Result<(), Duration> {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        // The time is read under the lock: a failure counted meanwhile by a concurrent login cannot be "later".
        let now = self.clock.now();
        let wait = who
            .iter()
            .filter_map(|w| counters.get(w))
            .filter(|c| c.not_before > now)
            .map(|c| (c.not_before - now).to_std().unwrap_or(Duration::ZERO))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a failure against each of `who`.
    pub fn failed(&self, who: &[Attempter]) {
        let now = self.clock.now();
        let forget = chrono::Duration::from_std(self.policy.forget_after).unwrap_or(chrono::Duration::MAX);
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        if counters.len() >= MAX_ENTRIES {
            counters.retain(|_, c| now - c.last_failure < forget);
            if counters.len() >= MAX_ENTRIES {
                // Still full of recent entries: the oldest tenth goes.
                let mut ages: Vec<DateTime<Utc>> = counters.values().map(|c| c.last_failure).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 10];
                counters.retain(|_, c| c.last_failure > cut);
            }
        }
        for w in who {
            let free = match w {
                Attempter::Address(_) => self.policy.free_per_address,
                Attempter::Login(_) => self.policy.free_per_login,
            };
            // A new counter holds nobody back until it is past its free failures.
            let counter = counters.entry(w.clone()).or_insert(Counter {
                failures: 0,
                last_failure: now,
                not_before: DateTime::<Utc>::MIN_UTC,
            });
            if now - counter.last_failure >= forget {
                counter.failures = 0;
            }
            counter.failures = counter.failures.saturating_add(1);
            counter.last_failure = now;
            if counter.failures > free {
                let doublings = (counter.failures - free - 1).min(30);
                let delay = self.policy.first_delay.saturating_mul(1 << doublings).min(self.policy.max_delay);
                counter.not_before = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            }
        }
    }

    /// A successful login: the login name's failures are forgotten (the address's stay).
    pub fn succeeded(&self, login: &Attempter) {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner).remove(login);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::clock::ManualClock;

    fn throttle() -> (Throttle, ManualClock) {
        let clock = ManualClock::at(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        (Throttle::new(ThrottlePolicy::default(), Arc::new(clock.clone())), clock)
    }

    #[test]
    fn given_three_free_failures_when_more_come_then_each_doubles_the_wait() {
        let (t, clock) = throttle();
        let who = [Attempter::Login("131016/OP0501".into())];
        for _ in 0..3 {
            t.failed(&who);
            assert_eq!(t.check(&who), Ok(()), "the first three failures are free");
        }
        for expected in [1, 2, 4, 8] {
            t.failed(&who);
            assert_eq!(t.check(&who), Err(Duration::from_secs(expected)));
            clock.advance(chrono::Duration::seconds(expected as i64));
            assert_eq!(t.check(&who), Ok(()), "after {expected} s he may try again");
        }
    }

    #[test]
    fn given_failures_within_the_free_ones_then_nobody_waits_even_when_checked_a_moment_earlier() {
        // A concurrent login read the time just before this failure was counted: it must not be held back.
        let (t, clock) = throttle();
        let who = [Attempter::Address("192.0.2.7".parse().unwrap()), Attempter::Login("131016/OP0501".into())];
        t.failed(&who);
        clock.advance(chrono::Duration::milliseconds(-5));
        assert_eq!(t.check(&who), Ok(()));
    }

    #[test]
    fn given_many_failures_then_the_wait_stops_growing_and_a_success_forgets_them() {
        let (t, clock) = throttle();
        let login = Attempter::Login("131016/OP0501".into());
        for _ in 0..40 {
            t.failed(std::slice::from_ref(&login));
        }
        assert_eq!(t.check(std::slice::from_ref(&login)), Err(Duration::from_secs(15 * 60)));
        t.succeeded(&login);
        assert_eq!(t.check(std::slice::from_ref(&login)), Ok(()));
        drop(clock);
    }

    #[test]
    fn given_an_address_with_many_names_then_the_address_waits_and_a_fresh_name_from_it_too() {
        let (t, clock) = throttle();
        let address = Attempter::Address("192.0.2.7".parse().unwrap());
        for i in 0..11 {
            t.failed(&[address.clone(), Attempter::Login(format!("131016/OP{i:04}"))]);
        }
        let fresh = [address.clone(), Attempter::Login("131016/OP9999".into())];
        assert_eq!(t.check(&fresh), Err(Duration::from_secs(1)), "the 11th failure from one address");
        let elsewhere = [Attempter::Address("192.0.2.8".parse().unwrap()), Attempter::Login("131016/OP9999".into())];
        assert_eq!(t.check(&elsewhere), Ok(()), "another address is not held back");
        clock.advance(chrono::Duration::hours(2));
        t.failed(std::slice::from_ref(&address));
        assert_eq!(t.check(&[address]), Ok(()), "an hour without failures: the count starts again");
    }
}
