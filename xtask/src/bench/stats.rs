//! Order statistics of samples.

use std::time::Duration;

use serde_json::{Value, json};

/// Summary of a set of samples, in the unit they were given in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        Some(Stats {
            n,
            min: sorted[0],
            mean: sorted.iter().sum::<f64>() / n as f64,
            median: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[n - 1],
        })
    }

    /// Durations in milliseconds.
    pub fn of_durations(samples: &[Duration]) -> Option<Stats> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Stats::of(&ms)
    }

    pub fn to_json(self) -> Value {
        json!({
            "n": self.n, "min": self.min, "mean": self.mean, "median": self.median,
            "p95": self.p95, "p99": self.p99, "max": self.max,
        })
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let stats = Stats::of(&samples).unwrap();
        assert_eq!((stats.median, stats.p95, stats.p99), (50.0, 95.0, 99.0));
        assert_eq!((stats.min, stats.max, stats.n), (1.0, 100.0, 100));
        let one = Stats::of(&[3.0]).unwrap();
        assert_eq!((one.median, one.p99), (3.0, 3.0));
        assert!(Stats::of(&[]).is_none());
    }
}
