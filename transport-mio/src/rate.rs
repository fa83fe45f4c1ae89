//! A token bucket for `--upload-limit`: how many bytes may be written now, and when more
//! may be. Time comes in as an argument, so it is testable without a clock.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    burst: u64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64, now: Instant) -> RateLimiter {
        let bytes_per_sec = bytes_per_sec.max(1);
        // A tenth of a second of burst, but at least one 64 KiB write.
        let burst = (bytes_per_sec / 10).max(64 * 1024);
        RateLimiter {
            bytes_per_sec,
            burst,
            tokens: burst as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.bytes_per_sec as f64).min(self.burst as f64);
    }

    /// How many of `wanted` bytes may be written now.
    pub fn allowance(&mut self, wanted: usize, now: Instant) -> usize {
        self.refill(now);
        (self.tokens.max(0.0) as usize).min(wanted)
    }

    pub fn consume(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// How long until at least `bytes` (capped at the burst) may be written.
    pub fn wait(&mut self, bytes: usize, now: Instant) -> Duration {
        self.refill(now);
        let need = (bytes as f64).min(self.burst as f64) - self.tokens;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(need / self.bytes_per_sec as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_to_the_rate_over_time() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1_000_000, t0);
        let mut sent = 0;
        for ms in 0..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            let n = r.allowance(usize::MAX, now);
            r.consume(n);
            sent += n;
        }
        // One second at 1 MB/s plus the initial burst.
        assert!(sent <= 1_000_000 + 100_000 + 1, "{sent}");
        assert!(sent >= 1_000_000, "{sent}");
    }
}
