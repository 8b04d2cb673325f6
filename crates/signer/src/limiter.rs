//! The sidecar's own rate limit per key, in front of the account's: a token bucket that refills at the
//! configured rate and holds at most one period's worth, so a runaway strategy is stopped at the socket
//! before it spends the key's on-chain budget.

use std::time::{Duration, Instant};

use keyscope_core::scope::Rate;

/// A token bucket of `rate.count` tokens refilled over `rate.period`.
#[derive(Debug, Clone)]
pub struct Limiter {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    /// A full bucket for `rate`.
    pub fn new(rate: Rate) -> Self {
        let capacity = f64::from(rate.count);
        Self {
            capacity,
            per_sec: capacity / rate.period.as_secs_f64(),
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`; Err with the wait until the next one when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_then_one_per_refill() {
        let start = Instant::now();
        let mut l = Limiter::new("5/1s".parse().unwrap());
        for _ in 0..5 {
            l.take(start).unwrap();
        }
        let wait = l.take(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        l.take(start + Duration::from_millis(200)).unwrap();
        assert!(l.take(start + Duration::from_millis(200)).is_err());
        // Idle time refills at most one period's worth.
        let later = start + Duration::from_secs(60);
        for _ in 0..5 {
            l.take(later).unwrap();
        }
        assert!(l.take(later).is_err());
    }
}
