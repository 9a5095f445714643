//! A per-key rate limit: a token bucket per caller (per API key, or one bucket for an open
//! server), refilled at `rate` requests per second up to a burst of the same size. Over the
//! limit a request gets 429 with the API's `rate_limit_exceeded` body, which SDKs retry
//! with backoff, and a `Retry-After` header in whole seconds (at least 1).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::StatusCode;

use crate::error::ApiError;

/// Token buckets by caller.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second per caller (bursts of up to `rate`, at least 1).
    #[must_use]
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `caller`, or says how long to wait.
    pub fn check(&self, caller: &str) -> Result<(), ApiError> {
        self.check_at(caller, Instant::now())
    }

    fn check_at(&self, caller: &str, now: Instant) -> Result<(), ApiError> {
        let burst = self.rate.max(1.0);
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| ApiError::internal("the rate limiter's lock was poisoned"))?;
        let (tokens, last) = buckets.entry(caller.to_owned()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - *tokens) / self.rate * 1000.0).ceil();
        // Whole seconds, rounded up: HTTP has no finer unit, and 0 would invite a spin.
        #[allow(clippy::cast_sign_loss)] // positive: tokens < 1 and rate > 0
        let retry_after = ((wait_ms / 1000.0).ceil() as u64).max(1);
        Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "Rate limit reached: {} requests per second for this key. Try again in {wait_ms}ms.",
                self.rate
            ),
            kind: "requests",
            param: None,
            code: Some("rate_limit_exceeded"),
            retry_after: Some(retry_after),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_refill_per_caller() {
        let limiter = RateLimiter::new(2.0);
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0).is_ok());
        assert!(limiter.check_at("a", t0).is_ok());
        let refused = limiter
            .check_at("a", t0)
            .map_err(|e| (e.status.as_u16(), e.code, e.retry_after));
        assert_eq!(refused, Err((429, Some("rate_limit_exceeded"), Some(1))));
        let slow = RateLimiter::new(0.2);
        assert!(slow.check_at("c", t0).is_ok());
        assert_eq!(
            slow.check_at("c", t0).map_err(|e| e.retry_after),
            Err(Some(5)),
            "one request per 5 s: wait 5 s"
        );
        assert!(
            limiter.check_at("b", t0).is_ok(),
            "another key has its own bucket"
        );
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_millis(500))
                .is_ok()
        );
    }
}
