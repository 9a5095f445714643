//! How long to wait before retrying a request to a model or an HTTP tool: one backoff and
//! one reading of a server's `Retry-After`, shared by `clarion-providers` and
//! `clarion-tools` so both clients spread their retries the same way.

use std::time::Duration;

/// Exponential backoff with full jitter: retry `n` waits a random time in
/// `[0, min(cap, base·2ⁿ)]`, so many clients failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// No ceiling is higher than this.
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling of retry `attempt`'s wait (0 for the first retry).
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2_u32.saturating_pow(attempt.min(31)))
            .min(self.cap)
    }

    /// A random wait for retry `attempt`, at most [`ceiling`](Self::ceiling).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=ceiling))
    }
}

/// The wait a server asked for: OpenAI's `retry-after-ms`, else `Retry-After` in seconds
/// (the HTTP-date form is not used by the APIs Clarion calls and is ignored). Negative,
/// non-finite or unparsable values are ignored; a wait too long for a `Duration` is the
/// longest one, so the caller gives up rather than retrying at once.
#[must_use]
pub fn retry_after(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Option<Duration> {
    let seconds = |text: &str, scale: f64| {
        let value = text.trim().parse::<f64>().ok()? / scale;
        (value.is_finite() && value >= 0.0)
            .then(|| Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX))
    };
    retry_after_ms
        .and_then(|ms| seconds(ms, 1000.0))
        .or_else(|| retry_after.and_then(|s| seconds(s, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_and_is_capped_and_the_delay_stays_under_it() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(400));
        assert_eq!(backoff.ceiling(4), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        for attempt in 0..40 {
            assert!(backoff.delay(attempt) <= backoff.ceiling(attempt));
        }
    }

    #[test]
    fn a_servers_wait_is_read_in_milliseconds_first_then_seconds() {
        assert_eq!(
            retry_after(Some("250"), Some("9")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(None, Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(Some("x"), Some("1.5")),
            Some(Duration::from_millis(1500))
        );
        for bad in ["-1", "NaN", "inf", "Wed, 21 Oct 2026 07:28:00 GMT"] {
            assert_eq!(retry_after(None, Some(bad)), None, "{bad}");
        }
        assert_eq!(
            retry_after(None, Some("18446744073709551615")),
            Some(Duration::MAX)
        );
    }
}
