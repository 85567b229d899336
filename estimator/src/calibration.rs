//! Online calibration of the margin so that the realised violation rate tracks the target.
//!
//! Split-conformal prediction over a sliding window plus a quantile-tracking integrator
//! (the P and I terms of Conformal PID control, Angelopoulos, Candès & Tibshirani 2023):
//!
//! - every decision records the base prediction `B`; once its horizon has passed, the realised
//!   peak `A` gives a residual `(A − B) / capacity`;
//! - the prediction is `B + (q + iₜ) · capacity`, where `q` is the conformal `(1 − α)` quantile
//!   of the last `window` residuals (the margin shrinks when the base is too cautious and grows
//!   when it is too bold) and `iₜ` is the integrator;
//! - after each resolved decision `iₜ ← iₜ + η (errₜ − α)`, where `errₜ` is 1 if that decision
//!   was violated. Whatever the drift, the long-run violation rate is then held at `α`, and
//!   unlike adapting the quantile level (ACI) the margin can grow past the largest residual
//!   seen, which heavy-tailed usage needs at small targets.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::predictors::{NodeObservation, PeakPredictor};

/// Calibration settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationOptions {
    /// When false the base prediction is used unchanged (residuals are still tracked).
    pub enabled: bool,
    /// Prediction horizon in seconds.
    pub horizon_secs: u64,
    /// Target violation rate α.
    pub target: f64,
    /// Integrator step η, as a share of capacity per violation of a decision spaced a whole
    /// horizon from the previous one (closer decisions weigh proportionally less).
    pub eta: f64,
    /// Number of residuals kept.
    pub window: usize,
    /// A new decision is recorded at most this often (bounds the pending list).
    pub decision_interval_secs: u64,
}

impl CalibrationOptions {
    /// Defaults for a horizon and target: η = 0.05, 2,000 residuals, a decision a minute.
    pub fn new(horizon_secs: u64, target: f64) -> Self {
        Self {
            enabled: true,
            horizon_secs,
            target,
            eta: 0.05,
            window: 2000,
            decision_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Pending {
    time: u64,
    base: f64,
    predicted: f64,
    peak: f64,
    capacity: f64,
    /// Seconds since the previous decision: how much new information this one carries.
    spacing: u64,
}

/// A base predictor wrapped in online conformal calibration. Serialisable for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrated<P> {
    base: P,
    opts: CalibrationOptions,
    integral: f64,
    ring: VecDeque<f32>,
    sorted: Vec<f32>,
    pending: VecDeque<Pending>,
    last_decision: Option<u64>,
    current: Option<(u64, f64, f64)>,
    /// Exponentially weighted recent violation rate (for confidence reporting).
    recent_violation_rate: f64,
    resolved: u64,
}

impl<P: PeakPredictor> Calibrated<P> {
    /// The horizon its decisions are scored over, seconds.
    pub fn horizon_secs(&self) -> u64 {
        self.opts.horizon_secs
    }

    /// Wraps `base`.
    pub fn new(base: P, opts: CalibrationOptions) -> Self {
        Self {
            base,
            opts,
            integral: 0.0,
            ring: VecDeque::with_capacity(opts.window),
            sorted: Vec::with_capacity(opts.window),
            pending: VecDeque::new(),
            last_decision: None,
            current: None,
            recent_violation_rate: 0.0,
            resolved: 0,
        }
    }

    /// The wrapped predictor.
    pub fn base(&self) -> &P {
        &self.base
    }

    /// The wrapped predictor, by value (checkpoint migration keeps its history).
    pub fn into_base(self) -> P {
        self.base
    }

    /// The calibration settings.
    pub fn options(&self) -> &CalibrationOptions {
        &self.opts
    }

    /// The integrator term iₜ, as a share of capacity.
    pub fn integral(&self) -> f64 {
        self.integral
    }

    /// Recent violation rate (EWMA over about a hundred resolved decisions).
    pub fn recent_violation_rate(&self) -> f64 {
        self.recent_violation_rate
    }

    /// Number of resolved decisions so far.
    pub fn resolved(&self) -> u64 {
        self.resolved
    }

    /// The margin (final − base) of the latest prediction, in the resource's unit.
    pub fn margin(&self) -> Option<f64> {
        self.current.map(|(_, base, fin)| fin - base)
    }

    /// Conformal residual quantile at level `1 − α`, as a share of capacity.
    fn quantile(&self) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 || !self.opts.enabled {
            return None;
        }
        let level = 1.0 - self.opts.target;
        // Conformal index: ceil((n + 1) · level), 1-based.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let k = ((n as f64 + 1.0) * level.max(0.0)).ceil() as usize;
        Some(f64::from(self.sorted[k.clamp(1, n) - 1]))
    }

    /// The calibrated margin as a share of capacity: quantile plus integrator (0 when disabled).
    fn margin_share(&self) -> f64 {
        match self.quantile() {
            Some(q) => q + self.integral,
            None if self.opts.enabled => self.integral,
            None => 0.0,
        }
    }

    fn push_residual(&mut self, r: f32) {
        if self.ring.len() == self.opts.window
            && let Some(old) = self.ring.pop_front()
            && let Ok(i) = self.sorted.binary_search_by(|x| x.total_cmp(&old))
        {
            self.sorted.remove(i);
        }
        self.ring.push_back(r);
        let i = self
            .sorted
            .binary_search_by(|x| x.total_cmp(&r))
            .unwrap_or_else(|e| e);
        self.sorted.insert(i, r);
    }

    fn resolve(&mut self, now: u64, usage: f64) {
        for p in &mut self.pending {
            p.peak = p.peak.max(usage);
        }
        while let Some(p) = self.pending.front().copied() {
            if now < p.time + self.opts.horizon_secs {
                break;
            }
            self.pending.pop_front();
            let err = if p.peak > p.predicted { 1.0 } else { 0.0 };
            if p.capacity > 0.0 {
                #[allow(clippy::cast_possible_truncation)]
                self.push_residual(((p.peak - p.base) / p.capacity) as f32);
            }
            // Decisions closer together than the horizon share most of their window, so their
            // errors are correlated: weigh each by its spacing over the horizon, so that one
            // horizon's worth of decisions moves the integrator as one independent decision
            // would. The fixed point (violation rate = α) does not depend on the weight.
            #[allow(clippy::cast_precision_loss)]
            let weight = (p.spacing as f64 / self.opts.horizon_secs.max(1) as f64).min(1.0);
            self.integral = (self.integral + self.opts.eta * weight * (err - self.opts.target))
                .clamp(-1.0, 1.0);
            self.recent_violation_rate += (err - self.recent_violation_rate) / 100.0;
            self.resolved += 1;
        }
    }
}

impl<P: PeakPredictor> PeakPredictor for Calibrated<P> {
    fn name(&self) -> String {
        format!("{}+cal", self.base.name())
    }

    fn observe(&mut self, obs: &NodeObservation<'_>) {
        let usage = obs.hp_usage();
        self.resolve(obs.time, usage);
        self.base.observe(obs);
        let Some(base) = self.base.predict(obs) else {
            self.current = None;
            return;
        };
        let q = self.margin_share();
        // Never predict below what is in use right now: that would be a certain violation.
        let predicted = (base + q * obs.capacity).max(usage);
        self.current = Some((obs.time, base, predicted));
        let due = self
            .last_decision
            .is_none_or(|t| obs.time >= t.saturating_add(self.opts.decision_interval_secs));
        if due {
            let spacing = self
                .last_decision
                .map_or(self.opts.horizon_secs, |t| obs.time.saturating_sub(t));
            self.last_decision = Some(obs.time);
            self.pending.push_back(Pending {
                time: obs.time,
                base,
                predicted,
                peak: usage,
                capacity: obs.capacity,
                spacing,
            });
        }
    }

    fn predict(&self, obs: &NodeObservation<'_>) -> Option<f64> {
        match self.current {
            Some((t, _, p)) if t == obs.time => Some(p),
            _ => {
                let base = self.base.predict(obs)?;
                Some((base + self.margin_share() * obs.capacity).max(obs.hp_usage()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictors::{NodeNSigma, PodSample};

    /// A deterministic pseudo-random stream (SplitMix64) for a stationary series.
    fn splitmix(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn run(target: f64, steps: u64) -> (f64, f64) {
        // A stationary series: 300 ± uniform noise with rare bursts, one sample a minute.
        let mut cal = Calibrated::new(NodeNSigma::new(3600, 0.0), {
            let mut o = CalibrationOptions::new(600, target);
            o.decision_interval_secs = 60;
            o
        });
        let mut rng = 7u64;
        let mut series = Vec::new();
        for _ in 0..steps {
            let burst = if splitmix(&mut rng) < 0.02 {
                300.0
            } else {
                0.0
            };
            series.push(300.0 + 100.0 * splitmix(&mut rng) + burst);
        }
        let mut preds = Vec::new();
        for (i, v) in series.iter().enumerate() {
            let pods = [PodSample {
                id: 1,
                workload: None,
                usage: *v,
                request: 1000.0,
            }];
            let o = NodeObservation {
                time: i as u64 * 60,
                capacity: 1000.0,
                pods: &pods,
                system: 0.0,
            };
            cal.observe(&o);
            preds.push(cal.predict(&o).unwrap());
        }
        // Realised violation rate over the second half, horizon 10 samples.
        let (mut viol, mut n) = (0u32, 0u32);
        for i in (steps as usize / 2)..(steps as usize - 11) {
            let peak = series[i..=i + 10].iter().cloned().fold(f64::MIN, f64::max);
            n += 1;
            if peak > preds[i] {
                viol += 1;
            }
        }
        (f64::from(viol) / f64::from(n), cal.margin().unwrap())
    }

    #[test]
    fn converges_to_the_target_on_a_stationary_series() {
        for target in [0.01, 0.05, 0.2] {
            let (rate, _) = run(target, 40_000);
            assert!(
                (rate - target).abs() <= target * 0.5 + 0.003,
                "target {target}: realised {rate}"
            );
        }
    }

    #[test]
    fn a_looser_target_gives_a_smaller_margin() {
        let (_, tight) = run(0.01, 20_000);
        let (_, loose) = run(0.2, 20_000);
        assert!(loose < tight, "{loose} < {tight}");
    }

    #[test]
    fn conformal_quantile_index() {
        let mut c = Calibrated::new(NodeNSigma::new(60, 0.0), CalibrationOptions::new(60, 0.1));
        for r in 1..=9 {
            c.push_residual(r as f32);
        }
        // n = 9, level 0.9: ceil(10 · 0.9) = 9th smallest.
        assert_eq!(c.quantile(), Some(9.0));
        c.opts.target = 0.5;
        assert_eq!(c.quantile(), Some(5.0));
        c.integral = 0.25;
        assert_eq!(c.margin_share(), 5.25);
        // The window slides: the oldest residuals leave the sorted set too.
        c.opts.window = 9;
        c.push_residual(0.5);
        assert_eq!(c.sorted.len(), 9);
        assert_eq!(c.sorted[0], 0.5);
        assert!(!c.sorted.contains(&1.0));
    }
}
