//! Rate limits: a token bucket per key (a client address for failed authentication attempts,
//! a principal for authenticated requests).
//!
//! A key may burst up to the per-minute allowance and then continues at the per-minute rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Above this many tracked clients, buckets that have refilled completely are forgotten.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: AtomicU32,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: AtomicU32::new(per_minute),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the allowance for every client (SIGHUP).
    pub fn set_per_minute(&self, per_minute: u32) {
        self.per_minute.store(per_minute, Ordering::Relaxed);
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute.load(Ordering::Relaxed)
    }

    /// Takes one request from `client`'s allowance, or says how long until one is available.
    pub fn check(&self, client: K) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: K, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute().max(1));
        let per_second = capacity / 60.0;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| {
                refill(bucket, now, per_second, capacity);
                bucket.tokens < capacity
            });
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        refill(bucket, now, per_second, capacity);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

fn refill(bucket: &mut Bucket, now: Instant, per_second: f64, capacity: f64) {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
    bucket.updated = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_client_may_burst_its_allowance_then_waits_for_the_refill() {
        let limiter = RateLimiter::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            assert!(limiter.check_at(CLIENT, start).is_ok());
        }
        let wait = limiter.check_at(CLIENT, start).unwrap_err();
        assert_eq!(wait.as_secs_f64().round(), 1.0);
        // Another client has its own bucket.
        assert!(limiter.check_at(OTHER, start).is_ok());
        // One second later one more request is allowed, then none.
        let later = start + Duration::from_secs(1);
        assert!(limiter.check_at(CLIENT, later).is_ok());
        assert!(limiter.check_at(CLIENT, later).is_err());
    }

    #[test]
    fn a_new_allowance_applies_at_once() {
        let limiter = RateLimiter::new(1);
        let start = Instant::now();
        assert!(limiter.check_at(CLIENT, start).is_ok());
        let wait = limiter.check_at(CLIENT, start).unwrap_err();
        assert_eq!(wait.as_secs(), 60);
        limiter.set_per_minute(600);
        let later = start + Duration::from_millis(200);
        assert!(limiter.check_at(CLIENT, later).is_ok());
    }
}
