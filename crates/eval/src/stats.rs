//! Per-cell statistics: n, mean, median and a seeded percentile-bootstrap 95% CI of the mean.
//!
//! The paper's bins hold 4–28 pages; a CI makes that visible. The bootstrap draws
//! [`BOOTSTRAP_RESAMPLES`] resamples with replacement from the cell's values using
//! [`crate::rng::SplitMix64`] seeded per cell, so reports are reproducible to the last digit.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Resamples of the percentile bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Summary of one cell's values of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellStats {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// 2.5th percentile of the bootstrap means (equal to the mean when n = 1).
    pub ci_low: f64,
    /// 97.5th percentile of the bootstrap means.
    pub ci_high: f64,
}

/// Mean of `values` (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Median (mean of the two middle values for even n; NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Linear-interpolation percentile (`q` in [0, 1]) of sorted values (numpy's default).
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean, median and bootstrap 95% CI of `values`, seeded by `seed`. Returns `n = 0` and NaNs
/// for an empty cell.
pub fn cell_stats(values: &[f64], seed: u64) -> CellStats {
    let n = values.len();
    let m = mean(values);
    let (ci_low, ci_high) = match n {
        0 => (f64::NAN, f64::NAN),
        1 => (m, m),
        _ => {
            let mut rng = SplitMix64::stream(seed, "bootstrap");
            let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
                .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
                .collect();
            means.sort_by(f64::total_cmp);
            (percentile_sorted(&means, 0.025), percentile_sorted(&means, 0.975))
        }
    };
    CellStats { n, mean: m, median: median(values), ci_low, ci_high }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_median_percentile_hand_computed() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(percentile_sorted(&[0.0, 10.0], 0.25), 2.5);
        assert_eq!(percentile_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
    }

    #[test]
    fn bootstrap_ci_brackets_the_mean_and_is_seeded() {
        let values: Vec<f64> = (0..30).map(|i| f64::from(i % 7) / 6.0).collect();
        let a = cell_stats(&values, 42);
        let b = cell_stats(&values, 42);
        assert_eq!(a, b, "same seed, same CI");
        assert!(a.ci_low < a.mean && a.mean < a.ci_high, "{a:?}");
        assert!(a.ci_low >= 0.0 && a.ci_high <= 1.0);
        // The CI of the mean shrinks roughly with sqrt(n): a 4x larger sample halves it.
        let big: Vec<f64> = values.iter().cycle().take(120).copied().collect();
        let wide = a.ci_high - a.ci_low;
        let narrow = cell_stats(&big, 42);
        let ratio = wide / (narrow.ci_high - narrow.ci_low);
        assert!((1.6..2.5).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn degenerate_cells() {
        let one = cell_stats(&[0.7], 1);
        assert_eq!((one.n, one.mean, one.ci_low, one.ci_high), (1, 0.7, 0.7, 0.7));
        let constant = cell_stats(&[0.5; 10], 1);
        assert_eq!((constant.ci_low, constant.ci_high), (0.5, 0.5));
        let empty = cell_stats(&[], 1);
        assert_eq!(empty.n, 0);
        assert!(empty.mean.is_nan() && empty.ci_low.is_nan());
    }
}
