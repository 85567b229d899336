//! Evaluation metrics, exactly as DESIGN.md §5 defines them (version 1, see docs/metrics.md).
//!
//! For node `n`, decision time `t`, horizon `H`: `A` = max HP usage in `[t, t+H]`, `P` = the
//! prediction. Violation rate = share of `(n, t)` with `A > P`; severity = mean `(A − P) / C`
//! over violations; reclaim ratio = `Σ (C − P)⁺ / Σ (C − A)⁺`.

use serde::{Deserialize, Serialize};

/// Version of the metric definitions; bump on any change and record it in docs/metrics.md.
pub const METRICS_VERSION: u32 = 1;

/// Accumulates decisions of one predictor for one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalAccumulator {
    /// Decisions counted.
    pub decisions: u64,
    /// Decisions with `A > P`.
    pub violations: u64,
    /// Σ (A − P) / C over violations.
    pub severity_sum: f64,
    /// Σ (C − P)⁺.
    pub reclaimed: f64,
    /// Σ (C − A)⁺.
    pub oracle_reclaimable: f64,
}

/// Final figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// Decisions counted.
    pub decisions: u64,
    /// Share of decisions with `A > P`.
    pub violation_rate: f64,
    /// Mean `(A − P) / C` over violations (0 when there are none).
    pub severity: f64,
    /// `Σ (C − P)⁺ / Σ (C − A)⁺` (0 when the oracle could reclaim nothing).
    pub reclaim_ratio: f64,
}

impl EvalAccumulator {
    /// Counts one decision: capacity `c`, prediction `p`, realised peak `a`.
    pub fn add(&mut self, c: f64, p: f64, a: f64) {
        if !(c.is_finite() && p.is_finite() && a.is_finite()) || c <= 0.0 {
            return;
        }
        self.decisions += 1;
        if a > p {
            self.violations += 1;
            self.severity_sum += (a - p) / c;
        }
        self.reclaimed += (c - p).max(0.0);
        self.oracle_reclaimable += (c - a).max(0.0);
    }

    /// Adds another accumulator's counts.
    pub fn merge(&mut self, o: &EvalAccumulator) {
        self.decisions += o.decisions;
        self.violations += o.violations;
        self.severity_sum += o.severity_sum;
        self.reclaimed += o.reclaimed;
        self.oracle_reclaimable += o.oracle_reclaimable;
    }

    /// The three metrics.
    #[allow(clippy::cast_precision_loss)]
    pub fn summary(&self) -> EvalSummary {
        EvalSummary {
            decisions: self.decisions,
            violation_rate: if self.decisions == 0 {
                0.0
            } else {
                self.violations as f64 / self.decisions as f64
            },
            severity: if self.violations == 0 {
                0.0
            } else {
                self.severity_sum / self.violations as f64
            },
            reclaim_ratio: if self.oracle_reclaimable > 0.0 {
                self.reclaimed / self.oracle_reclaimable
            } else {
                0.0
            },
        }
    }
}

/// Realised peaks: for each index `i`, the max of `usage[i ..= i + h]` (clipped at the end).
/// A monotone deque makes it O(n).
pub fn forward_peaks(usage: &[f64], h: usize) -> Vec<f64> {
    let n = usage.len();
    let mut out = vec![0.0; n];
    let mut dq: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    // Walk backwards: window [i, i + h].
    for i in (0..n).rev() {
        while dq.back().is_some_and(|&j| usage[j] <= usage[i]) {
            dq.pop_back();
        }
        dq.push_back(i);
        while dq.front().is_some_and(|&j| j > i + h) {
            dq.pop_front();
        }
        out[i] = dq.front().map_or(usage[i], |&j| usage[j]);
    }
    out
}

/// [`forward_peaks`] as a stream, for runs too long to keep whole series: each step pushes
/// its usage and the prediction made at it, and gets back the decision made `h` steps earlier
/// — its prediction and the realised peak of `usage[t ..= t + h]` — once that window is
/// complete. Memory is O(h), not O(steps); decisions whose window runs past the end are never
/// returned (as the batch evaluation skips them).
#[derive(Debug, Clone, Default)]
pub struct PeakWindow {
    h: usize,
    /// Steps pushed so far.
    pushed: usize,
    /// Candidates for the window's max: (step, usage), usage strictly decreasing.
    maxima: std::collections::VecDeque<(usize, f64)>,
    /// Predictions of the decisions whose windows are still open, oldest first.
    open: std::collections::VecDeque<f64>,
}

impl PeakWindow {
    /// A window over the `h` steps after each decision (`h + 1` values, the decision's own step
    /// included, as in [`forward_peaks`]).
    pub fn new(h: usize) -> Self {
        Self {
            h,
            ..Self::default()
        }
    }

    /// Pushes one step: its usage and the prediction held at it. Returns
    /// `(prediction, realised peak)` of the decision `h` steps earlier, when there is one.
    pub fn push(&mut self, usage: f64, prediction: f64) -> Option<(f64, f64)> {
        let i = self.pushed;
        self.pushed += 1;
        while self.maxima.back().is_some_and(|&(_, u)| u <= usage) {
            self.maxima.pop_back();
        }
        self.maxima.push_back((i, usage));
        self.open.push_back(prediction);
        let start = i.checked_sub(self.h)?;
        while self.maxima.front().is_some_and(|&(j, _)| j < start) {
            self.maxima.pop_front();
        }
        let prediction = self.open.pop_front()?;
        let peak = self.maxima.front().map_or(usage, |&(_, u)| u);
        Some((prediction, peak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // C = 100. Decisions (P, A): (50, 40) ok; (50, 60) violation of 0.10; (90, 95) violation
        // of 0.05; (120, 10) over-prediction beyond capacity.
        let mut acc = EvalAccumulator::default();
        for (p, a) in [(50.0, 40.0), (50.0, 60.0), (90.0, 95.0), (120.0, 10.0)] {
            acc.add(100.0, p, a);
        }
        let s = acc.summary();
        assert_eq!(s.decisions, 4);
        assert!((s.violation_rate - 0.5).abs() < 1e-12);
        assert!((s.severity - 0.075).abs() < 1e-12);
        // Σ(C−P)+ = 50 + 50 + 10 + 0 = 110; Σ(C−A)+ = 60 + 40 + 5 + 90 = 195.
        assert!((s.reclaim_ratio - 110.0 / 195.0).abs() < 1e-12);
    }

    #[test]
    fn oracle_has_ratio_one_and_no_violations() {
        let mut acc = EvalAccumulator::default();
        for a in [10.0, 20.0, 99.0] {
            acc.add(100.0, a, a);
        }
        let s = acc.summary();
        assert_eq!((s.violation_rate, s.reclaim_ratio), (0.0, 1.0));
    }

    #[test]
    fn empty_and_bad_input() {
        let mut acc = EvalAccumulator::default();
        acc.add(0.0, 1.0, 1.0);
        acc.add(100.0, f64::NAN, 1.0);
        assert_eq!(
            acc.summary(),
            EvalSummary {
                decisions: 0,
                violation_rate: 0.0,
                severity: 0.0,
                reclaim_ratio: 0.0
            }
        );
    }

    #[test]
    fn forward_peaks_match_brute_force() {
        let u = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0];
        for h in 0..5 {
            let fast = forward_peaks(&u, h);
            for i in 0..u.len() {
                let brute = u[i..(i + h + 1).min(u.len())]
                    .iter()
                    .cloned()
                    .fold(f64::MIN, f64::max);
                assert_eq!(fast[i], brute, "i={i} h={h}");
            }
        }
    }

    #[test]
    fn peak_window_streams_what_forward_peaks_computes() {
        let u = [
            3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0, 9.0, 7.0, 9.0,
        ];
        for h in 0..6 {
            let batch = forward_peaks(&u, h);
            let mut w = PeakWindow::new(h);
            let mut got = Vec::new();
            for (i, &x) in u.iter().enumerate() {
                // The prediction carries the step it was made at, to check the pairing.
                if let Some((p, peak)) = w.push(x, i as f64) {
                    got.push((p, peak));
                }
            }
            let want: Vec<(f64, f64)> = (0..u.len().saturating_sub(h))
                .map(|t| (t as f64, batch[t]))
                .collect();
            assert_eq!(got, want, "h={h}");
            // Memory stays bounded by the window, not by the series.
            assert!(w.open.len() <= h + 1 && w.maxima.len() <= h + 1, "h={h}");
        }
        // A window longer than the run returns nothing.
        let mut w = PeakWindow::new(usize::MAX);
        assert!(u.iter().all(|&x| w.push(x, 0.0).is_none()));
    }
}
