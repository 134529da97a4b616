//! End-to-end processing latency (`--e2e-processing-latency-percentile`): per channel, the time
//! from publish (the message timestamp) to FIN, over a sliding window.
//!
//! Each channel keeps two HDR histograms, each covering half of
//! `--e2e-processing-latency-window-time`; when the current half is older than that it becomes the
//! previous one and the other is cleared, so figures cover between one half and one whole window
//! (upstream's two rotating quantile streams, with an HDR histogram as the sketch). A topic's
//! figures merge its channels' histograms. Recording is one histogram increment under the channel
//! lock that FIN already holds; the histograms are allocated on the first FIN only when
//! percentiles are configured, so an unconfigured node pays one branch per FIN batch.

use hdrhistogram::Histogram;
use nsq_protocol::api::{E2eLatency, Percentile};
use std::fmt;
use tokio::time::{Duration, Instant};

/// Smallest latency told apart from zero (1 µs); smaller ones count as 1 µs.
const LOWEST_NS: u64 = 1_000;
/// Largest latency recorded (30 days); longer ones are clamped.
const HIGHEST_NS: u64 = 30 * 24 * 3600 * 1_000_000_000;
/// Two significant digits: values are within 1 %, the accuracy of upstream's sketch.
const SIGNIFICANT_DIGITS: u8 = 2;

/// A latency distribution (one channel's window, or several merged).
#[derive(Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.0.len())
            .finish()
    }
}

impl LatencyHistogram {
    fn new() -> Self {
        // The bounds are valid constants (low >= 1, high >= 2 * low, sigfig <= 5).
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self(histogram)
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The value (ns) at `quantile` (0..=1).
    pub fn value_at(&self, quantile: f64) -> u64 {
        self.0.value_at_quantile(quantile)
    }

    /// The `/stats` shape for these percentiles (already sorted descending).
    pub fn to_api(&self, percentiles: &[f64]) -> E2eLatency {
        E2eLatency {
            count: self.count(),
            percentiles: Some(
                percentiles
                    .iter()
                    .map(|&quantile| Percentile {
                        quantile,
                        value: self.value_at(quantile) as f64,
                    })
                    .collect(),
            ),
        }
    }
}

/// `{"count":0,"percentiles":null}`: what `/stats` shows without `--e2e-processing-latency-percentile`.
pub fn not_configured() -> E2eLatency {
    E2eLatency {
        count: 0,
        percentiles: None,
    }
}

/// One channel's two rotating windows.
#[derive(Debug)]
pub(crate) struct E2eWindows {
    windows: [LatencyHistogram; 2],
    current: usize,
    /// When the current window started.
    moved_at: Instant,
    /// Half of the configured window.
    half: Duration,
}

impl E2eWindows {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            windows: [LatencyHistogram::new(), LatencyHistogram::new()],
            current: 0,
            moved_at: now,
            half: (window / 2).max(Duration::from_millis(1)),
        }
    }

    /// Rotates as upstream does: every elapsed half-window clears the older half.
    pub(crate) fn rotate(&mut self, now: Instant) {
        let mut steps = 0;
        while now > self.moved_at + self.half {
            self.current ^= 1;
            self.windows[self.current].0.reset();
            self.moved_at += self.half;
            steps += 1;
            if steps >= 2 {
                // Both halves are stale: start afresh instead of stepping through a long idle gap.
                self.moved_at = now;
                self.windows[self.current ^ 1].0.reset();
                break;
            }
        }
    }

    /// Records one latency; call [`E2eWindows::rotate`] first (once per batch).
    pub(crate) fn record(&mut self, latency_ns: i64) {
        let value = u64::try_from(latency_ns).unwrap_or(0).max(LOWEST_NS);
        self.windows[self.current].0.saturating_record(value);
    }

    /// Both halves merged.
    pub(crate) fn merged(&mut self, now: Instant) -> LatencyHistogram {
        self.rotate(now);
        let mut merged = self.windows[0].clone();
        merged.merge(&self.windows[1]);
        merged
    }
}

/// Merges snapshots (a topic over its channels); `None` if there is nothing to merge.
pub fn merge_all<'a>(
    histograms: impl IntoIterator<Item = &'a LatencyHistogram>,
) -> Option<LatencyHistogram> {
    let mut merged: Option<LatencyHistogram> = None;
    for histogram in histograms {
        match &mut merged {
            Some(total) => total.merge(histogram),
            None => merged = Some(histogram.clone()),
        }
    }
    merged
}

/// The API shape for an optional histogram when percentiles are configured.
pub fn latency_api(histogram: Option<&LatencyHistogram>, percentiles: &[f64]) -> E2eLatency {
    if percentiles.is_empty() {
        return not_configured();
    }
    match histogram {
        Some(histogram) => histogram.to_api(percentiles),
        None => LatencyHistogram::new().to_api(percentiles),
    }
}

/// Sorts percentiles descending (the order `/stats` and statsd use).
pub fn sorted_descending(percentiles: &[f64]) -> Vec<f64> {
    let mut sorted = percentiles.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.dedup();
    sorted
}

/// Upstream's human form of a latency in the text `/stats` (`505.3ms`).
pub fn nanos_to_human(value: f64) -> String {
    let (scaled, suffix) = if value > 1e9 {
        (value / 1e9, "s")
    } else if value > 1e6 {
        (value / 1e6, "ms")
    } else if value > 1e3 {
        (value / 1e3, "us")
    } else {
        (value, "ns")
    };
    format!("{scaled:.1}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reports_percentiles_descending() {
        let now = Instant::now();
        let mut windows = E2eWindows::new(Duration::from_secs(600), now);
        for ms in 1..=100 {
            windows.record(ms * 1_000_000);
        }
        let merged = windows.merged(now);
        assert_eq!(merged.count(), 100);
        let api = merged.to_api(&sorted_descending(&[0.5, 0.99]));
        let percentiles = api.percentiles.unwrap();
        assert_eq!(percentiles[0].quantile, 0.99);
        assert_eq!(percentiles[1].quantile, 0.5);
        let p99 = percentiles[0].value;
        assert!((98e6..=101e6).contains(&p99), "{p99}");
        let p50 = percentiles[1].value;
        assert!((49e6..=51e6).contains(&p50), "{p50}");
    }

    #[test]
    fn windows_rotate_out_old_samples() {
        let start = Instant::now();
        let mut windows = E2eWindows::new(Duration::from_secs(10), start);
        windows.record(5_000_000);
        // Half a window later the sample is in the previous half: still counted.
        let later = start + Duration::from_secs(6);
        windows.rotate(later);
        windows.record(7_000_000);
        assert_eq!(windows.merged(later).count(), 2);
        // A whole window later the first sample is gone.
        let much_later = later + Duration::from_secs(5);
        assert_eq!(windows.merged(much_later).count(), 1);
        // After a long idle period nothing is left.
        assert_eq!(
            windows.merged(much_later + Duration::from_secs(60)).count(),
            0
        );
    }

    #[test]
    fn human_units_match_upstream() {
        assert_eq!(nanos_to_human(505_296_548.0), "505.3ms");
        assert_eq!(nanos_to_human(2_500_000_000.0), "2.5s");
        assert_eq!(nanos_to_human(1_500.0), "1.5us");
        assert_eq!(nanos_to_human(999.0), "999.0ns");
    }

    #[test]
    fn unconfigured_is_null() {
        let api = latency_api(None, &[]);
        assert_eq!(api.count, 0);
        assert!(api.percentiles.is_none());
    }
}
