//! HP churn in the replay: a share of HP pods leave and come back (redeploys, scale-in and
//! scale-out) over the run. Each return is a new pod the extender places with its own filter,
//! score and bind-time pre-eviction. The traces we have give each workload one series and no
//! placement history, so churn is modelled: seeded, the same events for every policy.

use serde::Serialize;

use crate::rng::SplitMix64;

/// The churn model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HpChurn {
    /// Share of HP pods that churn.
    pub share: f64,
    /// Mean time a churning pod stays before it leaves, seconds (exponential).
    pub mean_life_secs: f64,
    /// Mean time before it comes back as a new pod, seconds (exponential).
    pub mean_gap_secs: f64,
    /// Seed of the events.
    pub seed: u64,
}

impl Default for HpChurn {
    fn default() -> Self {
        Self {
            share: 0.2,
            mean_life_secs: 12.0 * 3600.0,
            mean_gap_secs: 3600.0,
            seed: 17,
        }
    }
}

/// One churn event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChurnEvent {
    /// When, seconds from the start.
    pub at: u64,
    /// The HP pod (trace column).
    pub column: usize,
    /// True when the pod arrives, false when it leaves.
    pub arrive: bool,
}

impl HpChurn {
    /// Events for `columns` HP pods over `duration_secs`, by time: every churning pod starts
    /// where the packing put it, leaves after its life, comes back after a gap, and so on.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn events(&self, columns: usize, duration_secs: u64) -> Vec<ChurnEvent> {
        let mut rng = SplitMix64::new(self.seed);
        let mut out = Vec::new();
        for column in 0..columns {
            if rng.uniform() >= self.share {
                continue;
            }
            let mut t = 0.0;
            loop {
                t += rng.exponential(self.mean_life_secs).max(60.0);
                if t >= duration_secs as f64 {
                    break;
                }
                out.push(ChurnEvent {
                    at: t as u64,
                    column,
                    arrive: false,
                });
                t += rng.exponential(self.mean_gap_secs).max(60.0);
                if t >= duration_secs as f64 {
                    break;
                }
                out.push(ChurnEvent {
                    at: t as u64,
                    column,
                    arrive: true,
                });
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_alternate_per_pod_and_are_seeded() {
        let c = HpChurn::default();
        let ev = c.events(200, 7 * 86_400);
        assert_eq!(ev, c.events(200, 7 * 86_400));
        assert!(ev.windows(2).all(|w| w[0].at <= w[1].at));
        let churning: std::collections::HashSet<usize> = ev.iter().map(|e| e.column).collect();
        assert!((20..=60).contains(&churning.len()), "{}", churning.len());
        for col in churning {
            let mine: Vec<bool> = ev
                .iter()
                .filter(|e| e.column == col)
                .map(|e| e.arrive)
                .collect();
            // Leave first, then alternate.
            assert!(!mine[0]);
            assert!(mine.windows(2).all(|w| w[0] != w[1]));
        }
    }
}
