//! The reclaimable-capacity model: what BE pods may use on one node, for one resource.

use serde::{Deserialize, Serialize};

/// Everything the model needs for one node and resource (amounts in the resource's unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReclaimInputs {
    /// Node allocatable.
    pub allocatable: f64,
    /// Predicted HP peak over the horizon (system usage included).
    pub predicted_peak: f64,
    /// Safety margin on top of the prediction.
    pub margin: f64,
    /// Kept back for the system.
    pub system_reserve: f64,
    /// Cold page cache that can be dropped on demand (memory only; 0 for CPU).
    pub cold_credit: f64,
    /// Seconds of usage history behind the prediction.
    pub history_secs: u64,
    /// Seconds since the newest usage sample.
    pub data_age_secs: u64,
}

/// Limits under which the model trusts its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReclaimPolicy {
    /// History younger than this reclaims nothing.
    pub min_history_secs: u64,
    /// Data older than this reclaims nothing.
    pub stale_after_secs: u64,
}

/// Why reclaimable capacity was forced to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Degraded {
    /// Not enough history to trust a prediction.
    HistoryTooYoung,
    /// The newest usage sample is too old.
    StaleData,
    /// The prediction is not a finite number.
    NoPrediction,
}

impl Degraded {
    /// Human-readable reason, as published in the NodeEstimate.
    pub fn reason(self) -> &'static str {
        match self {
            Degraded::HistoryTooYoung => "history too young",
            Degraded::StaleData => "usage data stale",
            Degraded::NoPrediction => "no prediction",
        }
    }
}

/// The model's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReclaimDecision {
    /// What BE pods may use (≥ 0).
    pub reclaimable: f64,
    /// Set when the amount was forced to zero.
    pub degraded: Option<Degraded>,
}

/// `reclaimable = allocatable − peak − margin − reserve + cold credit`, at least zero and at
/// most `allocatable − reserve`; zero when history is too young, data is stale or the
/// prediction is not finite. Pure.
///
/// ```
/// use tide_estimator::{reclaimable, ReclaimInputs, ReclaimPolicy};
/// let policy = ReclaimPolicy { min_history_secs: 3600, stale_after_secs: 300 };
/// let inputs = ReclaimInputs { allocatable: 32_000.0, predicted_peak: 12_000.0, margin: 1_000.0,
///     system_reserve: 500.0, cold_credit: 0.0, history_secs: 7200, data_age_secs: 5 };
/// assert_eq!(reclaimable(&inputs, &policy).reclaimable, 18_500.0);
/// ```
pub fn reclaimable(i: &ReclaimInputs, policy: &ReclaimPolicy) -> ReclaimDecision {
    let degraded = if !(i.predicted_peak.is_finite() && i.margin.is_finite()) {
        Some(Degraded::NoPrediction)
    } else if i.data_age_secs > policy.stale_after_secs {
        Some(Degraded::StaleData)
    } else if i.history_secs < policy.min_history_secs {
        Some(Degraded::HistoryTooYoung)
    } else {
        None
    };
    if degraded.is_some() {
        return ReclaimDecision {
            reclaimable: 0.0,
            degraded,
        };
    }
    let ceiling = (i.allocatable - i.system_reserve).max(0.0);
    let raw = i.allocatable - i.predicted_peak - i.margin.max(0.0) - i.system_reserve
        + i.cold_credit.max(0.0);
    ReclaimDecision {
        reclaimable: raw.clamp(0.0, ceiling),
        degraded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ReclaimPolicy = ReclaimPolicy {
        min_history_secs: 3600,
        stale_after_secs: 300,
    };

    fn inputs() -> ReclaimInputs {
        ReclaimInputs {
            allocatable: 100.0,
            predicted_peak: 40.0,
            margin: 5.0,
            system_reserve: 10.0,
            cold_credit: 0.0,
            history_secs: 86_400,
            data_age_secs: 1,
        }
    }

    #[test]
    fn formula_and_clamps() {
        assert_eq!(reclaimable(&inputs(), &POLICY).reclaimable, 45.0);
        let cold = ReclaimInputs {
            cold_credit: 20.0,
            ..inputs()
        };
        assert_eq!(reclaimable(&cold, &POLICY).reclaimable, 65.0);
        let over = ReclaimInputs {
            predicted_peak: 150.0,
            ..inputs()
        };
        assert_eq!(reclaimable(&over, &POLICY).reclaimable, 0.0);
        let huge_cold = ReclaimInputs {
            cold_credit: 1e9,
            ..inputs()
        };
        assert_eq!(
            reclaimable(&huge_cold, &POLICY).reclaimable,
            90.0,
            "never above allocatable − reserve"
        );
    }

    #[test]
    fn degrades_to_zero() {
        let young = ReclaimInputs {
            history_secs: 10,
            ..inputs()
        };
        assert_eq!(
            reclaimable(&young, &POLICY),
            ReclaimDecision {
                reclaimable: 0.0,
                degraded: Some(Degraded::HistoryTooYoung)
            }
        );
        let stale = ReclaimInputs {
            data_age_secs: 301,
            ..inputs()
        };
        assert_eq!(
            reclaimable(&stale, &POLICY).degraded,
            Some(Degraded::StaleData)
        );
        let nan = ReclaimInputs {
            predicted_peak: f64::NAN,
            ..inputs()
        };
        assert_eq!(
            reclaimable(&nan, &POLICY).degraded,
            Some(Degraded::NoPrediction)
        );
    }
}
