//! A token bucket for `--upload-limit`: how many bytes may be written now, and when more
//! may be. Time comes in as an argument, so it is testable without a clock.

use std::time::{Duration, Instant};

/// Writes under a limit are at least this big (or all that is left): trickling out the
/// few bytes earned since the last write costs a syscall and a wakeup per trickle.
pub const MIN_LIMITED_WRITE: usize = 64 * 1024;

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
        // A tenth of a second of burst, but at least one minimum write.
        let burst = (bytes_per_sec / 10).max(MIN_LIMITED_WRITE as u64);
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

    /// How many of `wanted` bytes may be written now: 0 until a minimum write is earned.
    pub fn allowance(&mut self, wanted: usize, now: Instant) -> usize {
        self.refill(now);
        let n = (self.tokens.max(0.0) as usize).min(wanted);
        if n < wanted.min(MIN_LIMITED_WRITE) {
            0
        } else {
            n
        }
    }

    pub fn consume(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// How long until a write of `bytes` waiting may start (see `allowance`).
    pub fn wait(&mut self, bytes: usize, now: Instant) -> Duration {
        self.refill(now);
        let need = bytes.min(MIN_LIMITED_WRITE) as f64 - self.tokens;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            // Rounded up, so that waiting this long really earns the write.
            Duration::from_micros((need * 1e6 / self.bytes_per_sec as f64).ceil() as u64 + 1)
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

    #[test]
    fn never_trickles() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1_000_000, t0);
        let burst = r.allowance(usize::MAX, t0);
        r.consume(burst);
        // 1 ms earns 1 kB: too little to be worth a write...
        let later = t0 + Duration::from_millis(1);
        assert_eq!(r.allowance(usize::MAX, later), 0);
        // ...unless that is all there is to send.
        assert_eq!(r.allowance(500, later), 500);
        let wait = r.wait(usize::MAX, later);
        assert!(wait >= Duration::from_millis(60), "{wait:?}");
        let n = r.allowance(usize::MAX, later + wait);
        assert!(n >= MIN_LIMITED_WRITE, "{n}");
    }
}
