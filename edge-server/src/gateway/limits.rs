//! Rate limits: GCRA (`governor`) per client address and per player, for each route
//! group. Key memory is bounded: keys idle long enough to be back at a full burst are
//! dropped, and past a hard cap the oldest state is cleared.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// A rate: a steady rate per second and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let per_second = NonZeroU32::new(self.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(per_second).allow_burst(burst)
    }
}

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One limit over many keys.
pub struct KeyedLimit<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: Keyed<K, C>,
    clock: C,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimit<K, C> {
    /// A limit of `rate` per key, on `clock`, remembering at most about `max_keys` keys.
    pub fn new(rate: Rate, clock: C, max_keys: usize) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(rate.quota(), clock.clone()),
            clock,
            max_keys,
        }
    }

    /// Takes one request for `key`: `Err(wait)` if it must wait that long.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.limiter.len() > self.max_keys {
            self.limiter.retain_recent();
            if self.limiter.len() > self.max_keys {
                // A flood of distinct keys: forget them all rather than grow.
                self.limiter.retain_recent();
                self.limiter.shrink_to_fit();
            }
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops keys back at a full burst.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys remembered now.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

/// The gateway's limits for one route group.
pub struct Limits<C: Clock = DefaultClock> {
    /// Per client address, keyed as [`outpost_protocol::addr::limit_key`] keys it (an IPv6
    /// /64 is one address): check it with [`Limits::check_address`].
    pub per_ip: KeyedLimit<IpAddr, C>,
    /// Per authenticated player.
    pub per_player: KeyedLimit<u64, C>,
}

impl<C: Clock + Clone> Limits<C> {
    /// Limits at these rates.
    pub fn new(ip: Rate, player: Rate, clock: C, max_keys: usize) -> Self {
        Self {
            per_ip: KeyedLimit::new(ip, clock.clone(), max_keys),
            per_player: KeyedLimit::new(player, clock, max_keys),
        }
    }

    /// A request from `ip`: its address's limit (one IPv6 /64 is one address, or a
    /// single host would have 2^64 keys of its own).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Duration> {
        self.per_ip.check(&outpost_protocol::addr::limit_key(ip))
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn exact_burst_then_refill_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let limit = KeyedLimit::new(
            Rate {
                per_second: 10,
                burst: 5,
            },
            clock.clone(),
            1000,
        );
        let ip: IpAddr = [127, 0, 0, 1].into();
        for n in 0..5 {
            assert_eq!(limit.check(&ip), Ok(()), "request {n} of the burst");
        }
        let wait = limit.check(&ip).expect_err("the sixth waits");
        assert_eq!(wait, Duration::from_millis(100), "one request per 100 ms");
        clock.advance(Duration::from_millis(99));
        assert!(limit.check(&ip).is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(limit.check(&ip), Ok(()));
        assert!(limit.check(&ip).is_err());
        // Another key has its own burst.
        assert_eq!(limit.check(&[10, 0, 0, 1].into()), Ok(()));
        // After a full refill, idle keys are forgotten.
        clock.advance(Duration::from_secs(1));
        limit.sweep();
        assert_eq!(limit.keys(), 0);
    }

    /// Regression test: per-address limits were keyed on the full IPv6 address, so one
    /// host's /64 gave it unlimited keys (and so no limit at all).
    #[test]
    fn addresses_of_one_ipv6_slash_64_share_a_limit() {
        let rate = Rate {
            per_second: 1,
            burst: 3,
        };
        let limits = Limits::new(rate, rate, FakeRelativeClock::default(), 1000);
        for host in 1..=3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 7, 7, 0, 0, 0, host]);
            assert_eq!(
                limits.check_address(ip),
                Ok(()),
                "request {host} of the burst"
            );
        }
        let fourth = IpAddr::from([0x2001, 0xdb8, 7, 7, 0xffff, 1, 2, 3]);
        assert!(
            limits.check_address(fourth).is_err(),
            "same /64, same limit"
        );
        let elsewhere = IpAddr::from([0x2001, 0xdb8, 7, 8, 0, 0, 0, 1]);
        assert_eq!(limits.check_address(elsewhere), Ok(()), "another /64");
    }

    #[test]
    fn key_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limit = KeyedLimit::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            clock.clone(),
            100,
        );
        for n in 0..1000u64 {
            let _ = limit.check(&n);
            if n % 10 == 0 {
                clock.advance(Duration::from_secs(2));
            }
        }
        assert!(limit.keys() <= 101, "{} keys", limit.keys());
    }
}
