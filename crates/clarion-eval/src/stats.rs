//! The statistics of pass rates: a confidence interval for one rate, and a test of whether
//! two rates differ.
//!
//! Samples are few (5, 10, 20 per scenario) and rates often sit at 0% or 100%, where the
//! textbook normal interval collapses to a point and a z-test lies. So the interval is
//! Wilson's score interval, which stays inside [0, 1] and is honest at the edges, and the
//! comparison is Fisher's exact test on the 2×2 table, which needs no large-sample
//! approximation.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A rate's 95% confidence interval, as fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The lower bound.
    pub low: f64,
    /// The upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether `rate` lies inside the interval.
    #[must_use]
    pub fn contains(&self, rate: f64) -> bool {
        self.low <= rate && rate <= self.high
    }
}

/// The 95% Wilson score interval of `passed` successes in `total` trials; `[0, 1]` when
/// there were none.
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    reason = "sample counts are far below 2^52"
)]
pub fn wilson(passed: u32, total: u32) -> Interval {
    if total == 0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let n = f64::from(total);
    let p = f64::from(passed) / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

/// The two-sided p-value of Fisher's exact test: how likely pass counts at least this
/// different are when both runs have the same pass rate. `a` of `n` passed in one run, `b`
/// of `m` in the other.
#[must_use]
pub fn fisher_exact(a: u32, n: u32, b: u32, m: u32) -> f64 {
    let first = a.min(n);
    let passes = first + b.min(m);
    let total = n + m;
    if total == 0 {
        return 1.0;
    }
    let ln_fact = ln_factorials(total);
    // The probability of a table with `x` passes in the first run, margins fixed
    // (hypergeometric).
    let ln = |k: u32| ln_fact[k as usize];
    let ln_p = |x: u32| {
        ln(passes) + ln(total - passes) + ln(n) + ln(m)
            - ln(total)
            - ln(x)
            - ln(n - x)
            - ln(passes - x)
            - ln(m + x - passes)
    };
    let lowest = passes.saturating_sub(m);
    let highest = passes.min(n);
    let observed = ln_p(first);
    // Tables as or less likely than the observed one, with a relative tolerance for
    // floating-point ties.
    let sum: f64 = (lowest..=highest)
        .map(ln_p)
        .filter(|&l| l <= observed + 1e-7)
        .map(f64::exp)
        .sum();
    sum.min(1.0)
}

/// `ln(k!)` for `k` in `0..=n`.
fn ln_factorials(n: u32) -> Vec<f64> {
    let mut table = Vec::with_capacity(n as usize + 1);
    let mut sum = 0.0;
    table.push(0.0);
    for k in 1..=n {
        sum += f64::from(k).ln();
        table.push(sum);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_matches_published_values() {
        // 8 of 10: 0.4902–0.9433 (Newcombe 1998, method 3).
        let i = wilson(8, 10);
        assert!(close(i.low, 0.4902) && close(i.high, 0.9433), "{i:?}");
        // The edges stay honest: 0 of 10 is not "exactly 0%".
        let i = wilson(0, 10);
        assert!(close(i.low, 0.0) && close(i.high, 0.2775), "{i:?}");
        let i = wilson(10, 10);
        assert!(close(i.low, 0.7225) && close(i.high, 1.0), "{i:?}");
        assert_eq!(
            wilson(0, 0),
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
    }

    #[test]
    fn fisher_matches_published_values() {
        // The tea-tasting table 3/4 vs 1/4: p = 0.4857.
        assert!(close(fisher_exact(3, 4, 1, 4), 0.4857));
        // 10/10 vs 0/10: p = 1.0825e-5.
        assert!((fisher_exact(10, 10, 0, 10) - 1.0825e-5).abs() < 1e-8);
        // Identical runs do not differ.
        assert!(close(fisher_exact(5, 10, 5, 10), 1.0));
        assert!(close(fisher_exact(0, 0, 0, 0), 1.0));
    }
}
