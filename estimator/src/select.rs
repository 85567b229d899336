//! Tide v2: online selection among candidate predictors by their own realised record.
//!
//! Candidates are rungs of four ladders built from one shared history (so the state costs
//! what the bases cost, once):
//!
//! - `pod`: Σ over HP pods of the level-`q` percentile of each pod's decaying histogram, for
//!   levels from 0.5 to 1.0, then the top level plus 2%, 4%, … of capacity;
//! - `sigma`: mean + n·σ of the node aggregate over the recent window, n = 0, 0.5, …, 8, then
//!   extension rungs;
//! - `recent`: the node aggregate's recent peak × (1 + 2.5% · k) (Borg-like);
//! - `diurnal`: the time-of-day profile at the same levels as `pod` (after its first day);
//! - `max`: v1's base — the maximum of `pod` at `1 − α`, `sigma` at n = z(1 − α) and `diurnal`
//!   at `1 − α` — plus a margin from −8% to +16% of capacity in steps of 1% (v1's conformal
//!   margin, as candidates);
//! - `diurnal-margin`: `diurnal` at `1 − α` plus −8% … +4.5% of capacity in steps of 0.5% (a seasonal profile
//!   whose level is right but whose spread needs a smaller or larger margin).
//!
//! Every candidate's prediction is recorded at each decision; when the horizon has passed the
//! realised peak says, for every candidate at once, whether it would have been violated and
//! what it would have reclaimed (counterfactual scoring: no look-ahead, every candidate is
//! scored on exactly the decisions the node saw). Counts decay (half-life
//! [`SelectOptions::half_life_secs`]) and are weighted by decision spacing over the horizon, so
//! a horizon's worth of overlapping decisions counts as one independent window.
//!
//! The prediction is the current value of the candidate with the highest recent mean
//! reclaim among those whose recent violation rate, shrunk toward a prior, is at most
//! `(1 − δ)·α`. The prior is worth `β/α` windows, and at least
//! [`SelectOptions::min_prior_windows`] (10): rungs of `pod` at or above the nominal level
//! `1 − α` start at `α/2` (they are the uncalibrated VPA-like predictor, sound by
//! construction on stationary usage), every other rung at `2α`, so a node starts as the
//! nominal per-pod histogram and moves to something bolder only on its own evidence. When no
//! candidate qualifies, the most conservative `pod` rung is used.
//!
//! Hierarchical shrinkage: given a [`FleetRecord`] (the sum of every node's records, e.g. all
//! the nodes a replay or a cluster sees), each candidate's node record is shrunk toward the
//! fleet's record of the same candidate (itself shrunk toward the fixed prior above), worth
//! [`SelectOptions::fleet_beta`]`/α` windows, and so is its mean reclaim. A new node starts
//! from what worked across the fleet and moves on its own evidence. Without a fleet record the
//! per-node prior is used.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::predictors::{NodeObservation, PeakPredictor};
use crate::tide::TideBase;

/// Percentile levels of the `pod` and `diurnal` ladders (ascending, at most 24).
pub const LEVELS: [f64; 17] = [
    0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999,
    1.0,
];
/// Extension rungs above a ladder's top, each adding this share of capacity.
const EXT_STEP: f64 = 0.02;
/// Extension rungs per ladder.
const EXT_RUNGS: usize = 8;
/// Rungs per ladder.
pub const RUNGS: usize = LEVELS.len() + EXT_RUNGS;
/// Ladders: pod, sigma, recent, diurnal, max, diurnal-margin.
pub const LADDERS: usize = 6;
/// Rungs of the `max` ladder below its base (each 1% of capacity).
const MAX_BELOW: usize = 8;
/// Candidates in all.
pub const CANDIDATES: usize = LADDERS * RUNGS;
/// Ladder names, in candidate order.
pub const LADDER_NAMES: [&str; LADDERS] =
    ["pod", "sigma", "recent", "diurnal", "max", "diurnal-margin"];

/// Selection settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SelectOptions {
    /// Prediction horizon, seconds.
    pub horizon_secs: u64,
    /// Target violation rate α.
    pub target: f64,
    /// Half-life of the candidates' records, seconds.
    pub half_life_secs: f64,
    /// Prior weight, as β/α independent windows.
    pub prior_beta: f64,
    /// Safety margin δ: a candidate qualifies at a recent rate ≤ (1 − δ)·α.
    pub margin: f64,
    /// A decision is recorded at most this often.
    pub decision_interval_secs: u64,
    /// Weight of the fleet's record as the prior of a node's record, as β/α windows (used
    /// only when a [`FleetRecord`] is given).
    #[serde(default = "default_fleet_beta")]
    pub fleet_beta: f64,
    /// Count a candidate's violation as soon as the usage since a pending decision exceeds
    /// its prediction, instead of when that decision's horizon has passed (the count is the
    /// same, it arrives up to a horizon earlier).
    #[serde(default)]
    pub early_violations: bool,
    /// With no qualifying candidate, use the one with the lowest shrunk violation rate
    /// (the boldest of those), instead of the most cautious `pod` rung.
    #[serde(default)]
    pub fallback_safest: bool,
    /// The prior is worth at least this many windows, whatever α (default
    /// `DEFAULT_MIN_PRIOR_WINDOWS`, 10): at large α, β/α alone lets the best of 150 candidates be
    /// picked on a handful of windows.
    #[serde(default = "default_min_prior_windows")]
    pub min_prior_windows: f64,
    /// Burst guard: a candidate violated within the last horizon is floored, for one
    /// horizon, at the usage that violated it.
    #[serde(default)]
    pub guard: bool,
    /// Interpolate between the chosen rung and the next bolder rung of its ladder, so that
    /// the interpolated shrunk violation rate is this share of the limit (0: off).
    #[serde(default)]
    pub interpolate: f64,
    /// Half-life of a second, short record per candidate, seconds (0: off). A candidate uses
    /// its short record instead of the long one only where the two disagree beyond noise
    /// ([`SelectOptions::drift_z`]): the memory adapts per node and per candidate to how fast
    /// that node's own record drifts, and a rare burst seen once in the long record is not
    /// forgotten because the short record has let it decay.
    #[serde(default = "default_short_half_life_secs")]
    pub short_half_life_secs: f64,
    /// How far, in standard deviations, the short record's violation count must be from
    /// what the long record's rate predicts for it before the short record is used
    /// (default `DEFAULT_DRIFT_Z`).
    #[serde(default = "default_drift_z")]
    pub drift_z: f64,
    /// With short records kept: instead of the per-candidate drift test, pick per node the
    /// memory whose own choices have the better held-out record. Two selections run side by
    /// side (one on the long records, one on the short); each decision records both choices,
    /// and when its horizon has passed both are scored (long half-life). The short memory's
    /// choice is used once its record, shrunk toward 2α like any bold rung, meets the limit
    /// and reclaims more than the long memory's.
    #[serde(default = "default_true")]
    pub pick_memory: bool,
    /// With [`SelectOptions::pick_memory`]: the short memory's shrunk rate must be at most
    /// this share of the limit (default 1).
    #[serde(default = "default_pick_limit")]
    pub pick_limit: f64,
    /// With [`SelectOptions::pick_memory`]: the short memory's choices must also have violated
    /// no more often than the long memory's on the same decisions (they dominate it).
    #[serde(default = "default_true")]
    pub pick_no_worse: bool,
}

/// Default [`SelectOptions::short_half_life_secs`]: half a day.
pub const DEFAULT_SHORT_HALF_LIFE_SECS: f64 = 43_200.0;

fn default_short_half_life_secs() -> f64 {
    DEFAULT_SHORT_HALF_LIFE_SECS
}

fn default_true() -> bool {
    true
}

fn default_pick_limit() -> f64 {
    1.0
}

/// Default [`SelectOptions::drift_z`].
pub const DEFAULT_DRIFT_Z: f64 = 2.0;

fn default_drift_z() -> f64 {
    DEFAULT_DRIFT_Z
}

/// Default [`SelectOptions::min_prior_windows`].
pub const DEFAULT_MIN_PRIOR_WINDOWS: f64 = 10.0;

fn default_min_prior_windows() -> f64 {
    DEFAULT_MIN_PRIOR_WINDOWS
}

/// Default [`SelectOptions::fleet_beta`].
pub const DEFAULT_FLEET_BETA: f64 = 0.25;

fn default_fleet_beta() -> f64 {
    DEFAULT_FLEET_BETA
}

impl SelectOptions {
    /// Defaults for a horizon and target.
    pub fn new(horizon_secs: u64, target: f64) -> Self {
        Self {
            horizon_secs,
            target,
            half_life_secs: 3.0 * 86_400.0,
            prior_beta: 0.25,
            margin: 0.0,
            decision_interval_secs: (horizon_secs / 30).max(60),
            fleet_beta: DEFAULT_FLEET_BETA,
            early_violations: false,
            fallback_safest: false,
            min_prior_windows: DEFAULT_MIN_PRIOR_WINDOWS,
            guard: false,
            interpolate: 0.0,
            short_half_life_secs: DEFAULT_SHORT_HALF_LIFE_SECS,
            drift_z: DEFAULT_DRIFT_Z,
            pick_memory: true,
            pick_limit: 1.0,
            pick_no_worse: true,
        }
    }

    /// Applies an experiment spec: `+`-separated tokens `early`, `safest`, `guard`,
    /// `interp[=F]`, `minprior=W`, `beta=B`, `delta=D`, `hl=DAYS`, `hlh=K` (half-life K
    /// horizons, clamped to `hlmin=DAYS` (default 1) … 3 days), `hls=DAYS` (a short record
    /// used where it drifts from the long one), `hlsh=K` (short half-life K horizons, clamped
    /// like `hlh`), `hlz=Z` (the drift test's threshold), `pick` (per node, the memory whose
    /// choices have the better record), `pickf=F` (`pick`, the short memory held to F × the
    /// limit), `pickdom` (`pick`, the short memory's choices also violated no more than the
    /// long one's: the default), `pickany` (`pick` without that), `nopick` (the per-candidate
    /// drift test instead); `hls=0` turns the short memory off (the selector before it)
    /// (used by `tide-replay predict --variant`).
    pub fn with_spec(mut self, spec: &str) -> Result<Self, String> {
        let mut per_horizon = None;
        let mut short_per_horizon = None;
        let mut hl_min = 86_400.0;
        for tok in spec.split('+').filter(|t| !t.is_empty() && *t != "default") {
            let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
            let num = || v.parse::<f64>().map_err(|e| format!("{tok}: {e}"));
            match k {
                "early" => self.early_violations = true,
                "safest" => self.fallback_safest = true,
                "guard" => self.guard = true,
                "interp" => self.interpolate = if v.is_empty() { 1.0 } else { num()? },
                "minprior" => self.min_prior_windows = num()?,
                "beta" => self.prior_beta = num()?,
                "delta" => self.margin = num()?,
                "hl" => self.half_life_secs = num()? * 86_400.0,
                // Half-life of K horizons, between `hlmin` (default one day) and three days.
                "hlh" => per_horizon = Some(num()?),
                "hlmin" => hl_min = num()? * 86_400.0,
                "hls" => self.short_half_life_secs = num()? * 86_400.0,
                "hlsh" => short_per_horizon = Some(num()?),
                "hlz" => self.drift_z = num()?,
                "pick" => self.pick_memory = true,
                "pickf" => {
                    self.pick_memory = true;
                    self.pick_limit = num()?;
                }
                "pickdom" => {
                    self.pick_memory = true;
                    self.pick_no_worse = true;
                }
                "pickany" => {
                    self.pick_memory = true;
                    self.pick_no_worse = false;
                }
                "nopick" => self.pick_memory = false,
                _ => return Err(format!("unknown selector option {tok}")),
            }
        }
        if let Some(k) = per_horizon {
            #[allow(clippy::cast_precision_loss)]
            let h = self.horizon_secs as f64;
            self.half_life_secs = (k * h).clamp(hl_min, (3.0 * 86_400.0f64).max(hl_min));
        }
        if let Some(k) = short_per_horizon {
            #[allow(clippy::cast_precision_loss)]
            let h = self.horizon_secs as f64;
            self.short_half_life_secs = (k * h).clamp(hl_min, (3.0 * 86_400.0f64).max(hl_min));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    time: u64,
    weight: f32,
    capacity: f64,
    peak: f64,
    preds: Vec<f32>,
    /// With [`SelectOptions::pick_memory`]: the choices of the long and the short memory.
    #[serde(default)]
    picks: Option<[u16; 2]>,
}

/// Decayed record of one candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Record {
    /// Weighted decisions (independent windows).
    n: f64,
    /// Weighted violations.
    v: f64,
    /// Weighted Σ (C − P)⁺ / C.
    r: f64,
}

/// The pooled record of every candidate over a fleet of nodes: the sum of their
/// [`Selector`] records, given back to each node ([`Selector::set_fleet`]) as the prior its
/// own record is shrunk toward.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRecord {
    records: Vec<Record>,
    nodes: usize,
}

impl Default for FleetRecord {
    fn default() -> Self {
        Self::new()
    }
}

impl FleetRecord {
    /// An empty fleet.
    pub fn new() -> Self {
        Self {
            records: vec![Record::default(); CANDIDATES],
            nodes: 0,
        }
    }

    /// Adds one node's record. Nodes should be at the same time (their records decay with
    /// time; a replay steps them in lockstep).
    pub fn add(&mut self, node: &Selector) {
        for (f, r) in self.records.iter_mut().zip(&node.records) {
            f.n += r.n;
            f.v += r.v;
            f.r += r.r;
        }
        self.nodes += 1;
    }

    /// Nodes added.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Independent windows behind candidate `k`'s pooled record.
    pub fn windows(&self, k: usize) -> f64 {
        self.records.get(k).map_or(0.0, |r| r.n)
    }
}

/// Tide v2's predictor: candidates from shared bases, chosen by their realised record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    base: TideBase,
    opts: SelectOptions,
    records: Vec<Record>,
    /// Short records ([`SelectOptions::short_half_life_secs`]); empty when off.
    #[serde(default)]
    short: Vec<Record>,
    /// Records of the long and the short memory's choices ([`SelectOptions::pick_memory`]).
    #[serde(default)]
    memories: Vec<Record>,
    /// Time the records were last decayed to.
    records_time: Option<u64>,
    pending: VecDeque<Pending>,
    last_decision: Option<u64>,
    /// The candidate in use and its predictions at the latest decision.
    chosen: usize,
    current: Option<(u64, f64)>,
    /// Prediction of the chosen candidate at the latest decision (re-used between decisions).
    held: Option<f64>,
    recent_violation_rate: f64,
    /// Burst guard per candidate: when it was last violated and by what usage.
    #[serde(default)]
    guards: Vec<(u64, f32)>,
    /// The fleet's pooled record, if one was given (not checkpointed: it comes from outside).
    #[serde(skip)]
    fleet: Option<Arc<FleetRecord>>,
}

impl Selector {
    /// The horizon its decisions are scored over, seconds.
    pub fn horizon_secs(&self) -> u64 {
        self.opts.horizon_secs
    }

    /// Wraps a base holding at least the per-pod histograms and N-sigma state.
    pub fn new(base: TideBase, opts: SelectOptions) -> Self {
        Self {
            base,
            opts,
            records: vec![Record::default(); CANDIDATES],
            short: if opts.short_half_life_secs > 0.0 {
                vec![Record::default(); CANDIDATES]
            } else {
                Vec::new()
            },
            memories: Vec::new(),
            records_time: None,
            pending: VecDeque::new(),
            last_decision: None,
            chosen: nominal_rung(opts.target),
            current: None,
            held: None,
            recent_violation_rate: 0.0,
            guards: Vec::new(),
            fleet: None,
        }
    }

    /// Sets (or clears) the fleet's pooled record that this node's record is shrunk toward
    /// from the next decision on.
    pub fn set_fleet(&mut self, fleet: Option<Arc<FleetRecord>>) {
        self.fleet = fleet;
    }

    /// The candidate in use, as `(ladder name, rung)`.
    pub fn chosen(&self) -> (&'static str, usize) {
        (LADDER_NAMES[self.chosen / RUNGS], self.chosen % RUNGS)
    }

    /// Recent share of violated decisions of the chosen predictions (EWMA over ~100).
    pub fn recent_violation_rate(&self) -> f64 {
        self.recent_violation_rate
    }

    /// The shared bases.
    pub fn base(&self) -> &TideBase {
        &self.base
    }

    /// Every candidate's prediction now (NaN where a ladder is not available yet).
    pub fn candidates(&self, obs: &NodeObservation<'_>) -> Vec<f64> {
        let mut out = vec![f64::NAN; CANDIDATES];
        let c = obs.capacity;
        let usage = obs.hp_usage();
        let mut fill_ladder = |ladder: usize, levels: &[f64; LEVELS.len()]| {
            let o = &mut out[ladder * RUNGS..(ladder + 1) * RUNGS];
            o[..LEVELS.len()].copy_from_slice(levels);
            let top = levels[LEVELS.len() - 1];
            #[allow(clippy::cast_precision_loss)]
            for k in 0..EXT_RUNGS {
                o[LEVELS.len() + k] = top + EXT_STEP * (k + 1) as f64 * c;
            }
        };
        // pod
        if let Some(p) = &self.base.pod_histogram {
            let mut v = [0.0f64; LEVELS.len()];
            if obs.pods.is_empty() {
                v.fill(0.0);
            }
            for pod in obs.pods {
                p.store.add_percentiles_or(
                    pod.id,
                    pod.workload,
                    &LEVELS,
                    p.min_age_secs,
                    pod.request,
                    &mut v,
                );
            }
            for x in &mut v {
                *x += obs.system;
            }
            fill_ladder(0, &v);
        }
        if let Some(s) = &self.base.n_sigma {
            // sigma
            if let Some((m, sd)) = s.mean_std() {
                let mut v = [0.0f64; LEVELS.len()];
                for (i, x) in v.iter_mut().enumerate() {
                    #[allow(clippy::cast_precision_loss)]
                    let n = 0.5 * i as f64;
                    *x = m + n * sd;
                }
                fill_ladder(1, &v);
            }
            // recent
            if let Some(mx) = s.recent_max() {
                let mut v = [0.0f64; LEVELS.len()];
                for (i, x) in v.iter_mut().enumerate() {
                    #[allow(clippy::cast_precision_loss)]
                    let f = 1.0 + 0.025 * i as f64;
                    *x = mx * f;
                }
                fill_ladder(2, &v);
            }
        }
        if let Some(d) = &self.base.diurnal {
            let mut v = [0.0f64; LEVELS.len()];
            if d.predict_levels(obs, &LEVELS, &mut v) {
                fill_ladder(3, &v);
            }
        }
        // max: v1's base with additive margins.
        let nominal = nominal_rung(self.opts.target);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let z_rung = ((2.0 * crate::predictors::z_for_tail(self.opts.target)).round() as usize)
            .min(LEVELS.len() - 1);
        let base = [out[nominal], out[RUNGS + z_rung], out[3 * RUNGS + nominal]]
            .into_iter()
            .filter(|x| x.is_finite())
            .reduce(f64::max);
        let d_nominal = out[3 * RUNGS + nominal];
        if d_nominal.is_finite() {
            for (k, o) in out[5 * RUNGS..].iter_mut().enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let m = (k as f64 - 2.0 * MAX_BELOW as f64) * 0.005;
                *o = d_nominal + m * c;
            }
        }
        if let Some(b) = base {
            for (k, o) in out[4 * RUNGS..5 * RUNGS].iter_mut().enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let m = (k as f64 - MAX_BELOW as f64) * 0.01;
                *o = b + m * c;
            }
        }
        // Never below what is in use now: that would be a certain violation.
        for x in &mut out {
            if x.is_finite() {
                *x = x.max(usage);
            }
        }
        out
    }

    fn decay_to(&mut self, now: u64) {
        let Some(t0) = self.records_time else {
            self.records_time = Some(now);
            return;
        };
        if now <= t0 {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let f = (-((now - t0) as f64) / self.opts.half_life_secs * std::f64::consts::LN_2).exp();
        for r in self.records.iter_mut().chain(&mut self.memories) {
            r.n *= f;
            r.v *= f;
            r.r *= f;
        }
        if self.opts.short_half_life_secs > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let f = (-((now - t0) as f64) / self.opts.short_half_life_secs
                * std::f64::consts::LN_2)
                .exp();
            for r in &mut self.short {
                r.n *= f;
                r.v *= f;
                r.r *= f;
            }
        }
        self.records_time = Some(now);
    }

    fn resolve(&mut self, now: u64, usage: f64) {
        let early = self.opts.early_violations;
        let guard = self.opts.guard;
        let short = self.opts.short_half_life_secs > 0.0;
        if short && self.short.len() != CANDIDATES {
            self.short = vec![Record::default(); CANDIDATES];
        }
        if guard && self.guards.len() != CANDIDATES {
            self.guards = vec![(0, -1.0); CANDIDATES];
        }
        for p in &mut self.pending {
            let old = p.peak;
            p.peak = p.peak.max(usage);
            if (early || guard) && p.peak > old && p.capacity > 0.0 {
                let w = f64::from(p.weight);
                for (k, &pred) in p.preds.iter().enumerate() {
                    let pred = f64::from(pred);
                    if pred >= 0.0 && old <= pred && p.peak > pred {
                        if early {
                            self.records[k].v += w;
                            if short {
                                self.short[k].v += w;
                            }
                        }
                        if guard {
                            let g = &mut self.guards[k];
                            #[allow(clippy::cast_possible_truncation)]
                            let level = p.peak as f32;
                            *g = if now < g.0 + self.opts.horizon_secs {
                                (now, g.1.max(level))
                            } else {
                                (now, level)
                            };
                        }
                    }
                }
            }
        }
        while self
            .pending
            .front()
            .is_some_and(|p| now >= p.time + self.opts.horizon_secs)
        {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let w = f64::from(p.weight);
            for (k, &pred) in p.preds.iter().enumerate() {
                if pred < 0.0 || p.capacity <= 0.0 {
                    continue;
                }
                let pred = f64::from(pred);
                let violated = p.peak > pred && !early;
                let reclaim = (p.capacity - pred).max(0.0) / p.capacity;
                let recs = std::iter::once(&mut self.records[k]);
                let recs = recs.chain(if short {
                    Some(&mut self.short[k])
                } else {
                    None
                });
                for rec in recs {
                    rec.n += w;
                    if violated {
                        rec.v += w;
                    }
                    rec.r += w * reclaim;
                }
            }
            if let Some(picks) = p.picks {
                if self.memories.len() != 2 {
                    self.memories = vec![Record::default(); 2];
                }
                for (m, &k) in picks.iter().enumerate() {
                    let pred = p.preds.get(usize::from(k)).copied().unwrap_or(-1.0);
                    if pred < 0.0 || p.capacity <= 0.0 {
                        continue;
                    }
                    let pred = f64::from(pred);
                    let rec = &mut self.memories[m];
                    rec.n += w;
                    if p.peak > pred {
                        rec.v += w;
                    }
                    rec.r += w * ((p.capacity - pred).max(0.0) / p.capacity);
                }
            }
            let chosen = p.preds.get(self.chosen).copied().unwrap_or(-1.0);
            let err = if chosen >= 0.0 && f64::from(chosen) < p.peak {
                1.0
            } else {
                0.0
            };
            self.recent_violation_rate += (err - self.recent_violation_rate) / 100.0;
        }
    }

    /// Recent violation rate and mean reclaim of a candidate, shrunk toward its prior: the
    /// fleet's record when one is given (itself shrunk toward the fixed prior), else the fixed
    /// prior alone.
    fn shrunk(&self, k: usize) -> (f64, f64) {
        self.shrunk_by(k, Memory::Auto)
    }

    /// [`Self::shrunk`] on the given memory's record.
    fn shrunk_by(&self, k: usize, memory: Memory) -> (f64, f64) {
        let a = self.opts.target.clamp(1e-6, 0.5);
        let prior_n = (self.opts.prior_beta / a).max(self.opts.min_prior_windows);
        let (ladder, rung) = (k / RUNGS, k % RUNGS);
        let fixed =
            if (ladder == 0 && rung >= nominal_rung(a)) || (ladder == 4 && rung >= MAX_BELOW) {
                0.5 * a
            } else {
                2.0 * a
            };
        let rec = match memory {
            Memory::Auto => self.record(k),
            Memory::Long => self.records[k],
            Memory::Short => self.short.get(k).copied().unwrap_or(self.records[k]),
        };
        let own_reclaim = if rec.n > 0.0 { rec.r / rec.n } else { 0.0 };
        match self.fleet.as_deref().and_then(|f| f.records.get(k)) {
            Some(f) if f.n > 0.0 => {
                let fleet_rate = (f.v + fixed * prior_n) / (f.n + prior_n);
                let m = self.opts.fleet_beta / a;
                (
                    (rec.v + fleet_rate * m) / (rec.n + m),
                    (rec.r + f.r / f.n * m) / (rec.n + m),
                )
            }
            _ => ((rec.v + fixed * prior_n) / (rec.n + prior_n), own_reclaim),
        }
    }

    /// Whether the short memory's choices have earned trust on this node
    /// ([`SelectOptions::pick_memory`]): their record, shrunk toward 2α over the prior's
    /// windows, meets the limit, and they reclaimed more than the long memory's choices.
    fn short_memory_earned(&self) -> bool {
        let (Some(long), Some(short)) = (self.memories.first(), self.memories.get(1)) else {
            return false;
        };
        if short.n <= 0.0 || long.n <= 0.0 {
            return false;
        }
        let a = self.opts.target.clamp(1e-6, 0.5);
        let prior_n = (self.opts.prior_beta / a).max(self.opts.min_prior_windows);
        let rate = (short.v + 2.0 * a * prior_n) / (short.n + prior_n);
        let limit = (1.0 - self.opts.margin) * self.opts.target * self.opts.pick_limit;
        let no_worse = !self.opts.pick_no_worse || short.v / short.n <= long.v / long.n;
        rate <= limit && no_worse && short.r / short.n > long.r / long.n
    }

    /// The record candidate `k` is judged by: the long one, or the short one where short
    /// records are kept and the short record's violations are more than
    /// [`SelectOptions::drift_z`] standard deviations from what the long record's rate
    /// predicts for its windows (the node's usage has drifted for this candidate).
    fn record(&self, k: usize) -> Record {
        let long = self.records[k];
        let Some(&short) = self.short.get(k) else {
            return long;
        };
        if self.opts.short_half_life_secs <= 0.0 || self.opts.pick_memory || long.n <= 0.0 {
            return long;
        }
        if drifted(long, short, self.opts.drift_z) {
            short
        } else {
            long
        }
    }

    /// Picks the candidate: highest recent mean reclaim among those that qualify. The
    /// nominal rung is tried first, so it wins ties (and every score is 0 before any record).
    fn select(&self, preds: &[f64]) -> Option<usize> {
        self.select_by(preds, Memory::Auto)
    }

    /// [`Self::select`] on the given memory's records.
    fn select_by(&self, preds: &[f64], memory: Memory) -> Option<usize> {
        let limit = (1.0 - self.opts.margin) * self.opts.target;
        let nominal = nominal_rung(self.opts.target);
        let mut best: Option<(usize, f64)> = None;
        let mut safest: Option<(usize, f64, f64)> = None;
        for k in std::iter::once(nominal).chain((0..preds.len()).filter(|&k| k != nominal)) {
            if !preds[k].is_finite() {
                continue;
            }
            let (rate, score) = self.shrunk_by(k, memory);
            if self.opts.fallback_safest
                && safest.is_none_or(|(_, r, s)| rate < r || (rate == r && score > s))
            {
                safest = Some((k, rate, score));
            }
            if rate > limit {
                continue;
            }
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((k, score));
            }
        }
        best.map(|b| b.0).or(safest.map(|b| b.0))
    }
}

/// Which records a candidate is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// The long records, or the short one where it drifted ([`Selector::record`]).
    Auto,
    /// The long records.
    Long,
    /// The short records.
    Short,
}

/// Whether a short record's violations are beyond noise of what the long record's rate
/// predicts for the short record's windows: `|v_s − n_s·p| > z·√(n_s·p·(1 − p))`, with
/// `p = v_l / n_l`. The short record re-weights the same decisions, so under a steady rate the
/// two agree; a rare violation weighs less in the short record but not beyond noise.
fn drifted(long: Record, short: Record, z: f64) -> bool {
    if long.n <= 0.0 || short.n <= 0.0 {
        return false;
    }
    let p = (long.v / long.n).clamp(0.0, 1.0);
    let expected = short.n * p;
    let sd = (expected * (1.0 - p)).sqrt();
    (short.v - expected).abs() > z * sd.max(1e-9)
}

/// The `pod` rung of the nominal level `1 − α` (the first level at or above it).
fn nominal_rung(target: f64) -> usize {
    let want = 1.0 - target;
    LEVELS
        .iter()
        .position(|&l| l >= want - 1e-9)
        .unwrap_or(LEVELS.len() - 1)
}

impl PeakPredictor for Selector {
    fn name(&self) -> String {
        "select".into()
    }

    fn observe(&mut self, obs: &NodeObservation<'_>) {
        let usage = obs.hp_usage();
        self.resolve(obs.time, usage);
        self.base.observe(obs);
        let due = self
            .last_decision
            .is_none_or(|t| obs.time >= t + self.opts.decision_interval_secs);
        if !due {
            if let Some(h) = self.held {
                self.current = Some((obs.time, h.max(usage)));
            }
            return;
        }
        self.decay_to(obs.time);
        let mut preds = self.candidates(obs);
        if self.opts.guard && self.guards.len() == CANDIDATES {
            for (x, &(t, level)) in preds.iter_mut().zip(&self.guards) {
                if x.is_finite() && level >= 0.0 && obs.time < t + self.opts.horizon_secs {
                    *x = x.max(f64::from(level));
                }
            }
        }
        // With no qualifying candidate, the most conservative `pod` rung.
        let mut picks = None;
        let mut k = if self.opts.pick_memory && self.opts.short_half_life_secs > 0.0 {
            let long = self.select_by(&preds, Memory::Long).unwrap_or(RUNGS - 1);
            let short = self.select_by(&preds, Memory::Short).unwrap_or(RUNGS - 1);
            #[allow(clippy::cast_possible_truncation)]
            {
                picks = Some([long as u16, short as u16]);
            }
            if self.short_memory_earned() {
                short
            } else {
                long
            }
        } else {
            self.select(&preds).unwrap_or(RUNGS - 1)
        };
        let mut pred = preds[k];
        if !pred.is_finite() {
            k = RUNGS - 1;
            pred = preds[k];
        }
        if self.opts.interpolate > 0.0 && !k.is_multiple_of(RUNGS) && preds[k - 1].is_finite() {
            let limit = (1.0 - self.opts.margin) * self.opts.target * self.opts.interpolate;
            let (r, rb) = (self.shrunk(k).0, self.shrunk(k - 1).0);
            if rb > r && limit > r {
                let theta = ((limit - r) / (rb - r)).clamp(0.0, 1.0);
                pred -= theta * (pred - preds[k - 1]).max(0.0);
            }
        }
        self.chosen = k;
        let spacing = self
            .last_decision
            .map_or(self.opts.horizon_secs, |t| obs.time - t);
        self.last_decision = Some(obs.time);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let weight = (spacing as f64 / self.opts.horizon_secs.max(1) as f64).min(1.0) as f32;
        // −1 marks a candidate not available (JSON has no NaN).
        #[allow(clippy::cast_possible_truncation)]
        let stored: Vec<f32> = preds
            .iter()
            .map(|&x| if x.is_finite() { x as f32 } else { -1.0 })
            .collect();
        if self.opts.early_violations && obs.capacity > 0.0 {
            // A prediction rounded below the usage it was floored at is violated already.
            let short = self.opts.short_half_life_secs > 0.0 && self.short.len() == CANDIDATES;
            for (k, &x) in stored.iter().enumerate() {
                if x >= 0.0 && usage > f64::from(x) {
                    self.records[k].v += f64::from(weight);
                    if short {
                        self.short[k].v += f64::from(weight);
                    }
                }
            }
        }
        self.pending.push_back(Pending {
            time: obs.time,
            weight,
            capacity: obs.capacity,
            peak: usage,
            preds: stored,
            picks,
        });
        if pred.is_finite() {
            self.held = Some(pred);
            self.current = Some((obs.time, pred));
        } else {
            self.held = None;
            self.current = None;
        }
    }

    fn predict(&self, obs: &NodeObservation<'_>) -> Option<f64> {
        match self.current {
            Some((t, p)) if t == obs.time => Some(p),
            _ => self.held.map(|h| h.max(obs.hp_usage())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tide_api::{EstimatorSettings, Resource};

    use super::*;
    use crate::predictors::PodSample;
    use crate::tide::Components;

    const STEP: u64 = 300;
    const CAPACITY: f64 = 16_000.0;

    fn selector() -> Selector {
        let s = EstimatorSettings {
            horizon: Duration::from_secs(3600),
            target_violation_rate: 0.01,
            ..EstimatorSettings::default()
        };
        Selector::new(
            TideBase::new(Resource::Cpu, &s, Components::ALL),
            SelectOptions::new(3600, 0.01),
        )
    }

    /// Steady usage of four pods with a small deterministic wobble.
    fn pods(t: u64) -> Vec<PodSample> {
        (0..4u64)
            .map(|i| PodSample {
                id: i,
                workload: None,
                usage: 1_000.0 + 50.0 * ((t / STEP + 3 * i) as f64 * 0.7).sin(),
                request: 2_000.0,
            })
            .collect()
    }

    /// Observes steps `from..to` and returns the prediction at the last one.
    fn run(s: &mut Selector, from: u64, to: u64) -> f64 {
        let mut last = f64::NAN;
        for k in from..to {
            let t = k * STEP;
            let p = pods(t);
            let obs = NodeObservation {
                time: t,
                capacity: CAPACITY,
                pods: &p,
                system: 0.0,
            };
            s.observe(&obs);
            last = s.predict(&obs).unwrap_or(f64::NAN);
        }
        last
    }

    #[test]
    fn an_empty_fleet_record_changes_nothing() {
        let (mut alone, mut pooled) = (selector(), selector());
        pooled.set_fleet(Some(Arc::new(FleetRecord::new())));
        for k in 0..(2 * 288) {
            assert_eq!(run(&mut alone, k, k + 1), run(&mut pooled, k, k + 1));
        }
        assert_eq!(alone.chosen(), pooled.chosen());
    }

    #[test]
    fn a_new_node_starts_from_what_worked_across_the_fleet() {
        // An old node has four days of evidence that bolder candidates than the nominal
        // per-pod histogram meet α on this usage.
        let mut old = selector();
        run(&mut old, 0, 4 * 288);
        let mut fleet = FleetRecord::new();
        fleet.add(&old);
        assert_eq!(fleet.nodes(), 1);
        assert!(fleet.windows(nominal_rung(0.01)) > 50.0);
        // Two new nodes, six hours old: alone, a node has too few windows to leave its prior;
        // given the fleet's record, it moves to what the fleet found safe.
        let (mut alone, mut pooled) = (selector(), selector());
        pooled.set_fleet(Some(Arc::new(fleet)));
        let a = run(&mut alone, 0, 72);
        let p = run(&mut pooled, 0, 72);
        assert!(
            p < a,
            "with the fleet {p} ({:?}), alone {a} ({:?})",
            pooled.chosen(),
            alone.chosen()
        );
        assert!(p >= 1_000.0, "{p} is below the steady usage");
    }

    #[test]
    fn spec_sets_the_options_and_rejects_unknown_tokens() {
        let o = SelectOptions::new(3600, 0.01)
            .with_spec("early+safest+guard+minprior=12+beta=0.2+hl=1.5")
            .unwrap();
        assert!(o.early_violations && o.fallback_safest && o.guard);
        assert_eq!(o.min_prior_windows, 12.0);
        assert_eq!(o.prior_beta, 0.2);
        assert_eq!(o.half_life_secs, 1.5 * 86_400.0);
        assert_eq!(
            SelectOptions::new(3600, 0.01).with_spec("default").unwrap(),
            SelectOptions::new(3600, 0.01)
        );
        assert!(SelectOptions::new(3600, 0.01).with_spec("bold").is_err());
        let h = SelectOptions::new(3600, 0.01).with_spec("hlh=50").unwrap();
        assert_eq!(h.half_life_secs, 50.0 * 3600.0);
        let h = SelectOptions::new(300, 0.01).with_spec("hlh=50").unwrap();
        assert_eq!(h.half_life_secs, 86_400.0);
        let h = SelectOptions::new(300, 0.01)
            .with_spec("hlh=50+hlmin=1.5")
            .unwrap();
        assert_eq!(h.half_life_secs, 1.5 * 86_400.0);
    }

    #[test]
    fn early_violations_arrive_before_the_horizon_and_count_the_same() {
        let mk = |early: bool| {
            let mut o = SelectOptions::new(3600, 0.01);
            o.early_violations = early;
            Selector::new(selector().base, o)
        };
        let (mut late, mut early) = (mk(false), mk(true));
        run(&mut late, 0, 288);
        run(&mut early, 0, 288);
        // One step of a burst far above every bold rung.
        let burst = |s: &mut Selector, t: u64| {
            let mut p = pods(t);
            p[0].usage = 6_000.0;
            s.observe(&NodeObservation {
                time: t,
                capacity: CAPACITY,
                pods: &p,
                system: 0.0,
            });
        };
        burst(&mut late, 288 * STEP);
        burst(&mut early, 288 * STEP);
        let nominal = nominal_rung(0.01);
        let v = |s: &Selector| s.records[nominal].v;
        assert!(v(&early) > 0.5, "{}", v(&early));
        assert!(v(&late) < v(&early));
        // Once every pending decision has resolved, the counts agree (up to decay timing).
        run(&mut late, 289, 289 + 13);
        run(&mut early, 289, 289 + 13);
        assert!(
            (v(&late) - v(&early)).abs() < 0.05 * v(&early),
            "{} {}",
            v(&late),
            v(&early)
        );
    }

    #[test]
    fn the_prior_floor_keeps_a_bold_rung_out_on_a_handful_of_windows() {
        // At α = 5% the prior alone is worth β/α = 5 windows: six clean windows would let a
        // bold rung qualify. With the floor (10 windows) they do not.
        let mk = |floor: f64| {
            let mut o = SelectOptions::new(3600, 0.05);
            o.min_prior_windows = floor;
            let mut s = Selector::new(selector().base, o);
            s.records[RUNGS].n = 6.0; // `sigma` rung 0 (node mean): bold, prior 2α
            s
        };
        let limit = 0.05;
        assert!(mk(0.0).shrunk(RUNGS).0 <= limit);
        assert!(mk(DEFAULT_MIN_PRIOR_WINDOWS).shrunk(RUNGS).0 > limit);
        assert_eq!(SelectOptions::new(3600, 0.05).min_prior_windows, 10.0);
        // At α ≤ 2.5% β/α is at least 10 windows already: the floor changes nothing.
        let o = SelectOptions::new(3600, 0.02);
        assert!(o.prior_beta / o.target >= o.min_prior_windows);
    }

    #[test]
    fn the_drift_test_ignores_a_rare_burst_and_sees_a_regime_change() {
        let rec = |n: f64, v: f64| Record { n, v, r: 0.0 };
        // Same rate in both: no drift.
        assert!(!drifted(rec(100.0, 5.0), rec(35.0, 1.75), 2.0));
        // One burst two days ago: it weighs less in the short record, but not beyond noise.
        assert!(!drifted(rec(100.0, 1.0), rec(35.0, 0.25), 2.0));
        // Ten violations, none recent: the node has calmed down.
        assert!(drifted(rec(100.0, 12.0), rec(35.0, 0.0), 2.0));
        // Recent violations far above the long rate: the node got burstier.
        assert!(drifted(rec(100.0, 4.0), rec(35.0, 4.0), 2.0));
        // A stricter threshold needs more evidence.
        assert!(!drifted(rec(100.0, 12.0), rec(35.0, 0.0), 3.0));
        // Nothing seen: no drift.
        assert!(!drifted(rec(0.0, 0.0), rec(0.0, 0.0), 2.0));
        assert!(!drifted(rec(100.0, 0.0), rec(35.0, 0.0), 2.0));
    }

    /// Short records judged by the per-candidate drift test (`nopick`).
    fn with_short(hls_days: f64) -> Selector {
        let mut o = SelectOptions::new(3600, 0.01);
        o.short_half_life_secs = hls_days * 86_400.0;
        o.pick_memory = false;
        Selector::new(selector().base, o)
    }

    /// The selector before short memory (`hls=0`).
    fn without_short() -> Selector {
        let o = SelectOptions::new(3600, 0.01).with_spec("hls=0").unwrap();
        Selector::new(selector().base, o)
    }

    #[test]
    fn a_short_record_is_used_only_where_it_drifted() {
        let bold = RUNGS; // `sigma` rung 0: prior 2α
        let limit = 0.01;
        // Calmed down: ten old violations, none in the short record.
        let mut s = with_short(1.0);
        s.records[bold] = Record {
            n: 100.0,
            v: 12.0,
            r: 80.0,
        };
        s.short[bold] = Record {
            n: 35.0,
            v: 0.0,
            r: 28.0,
        };
        assert!(s.shrunk(bold).0 <= limit, "{:?}", s.shrunk(bold));
        assert!(s.shrunk_by(bold, Memory::Long).0 > limit);
        // The same records without short memory (`hls=0`): the long record decides.
        let mut d = without_short();
        d.records[bold] = s.records[bold];
        assert!(d.short.is_empty());
        assert_eq!(d.shrunk(bold), s.shrunk_by(bold, Memory::Long));
        // One rare burst, mostly decayed from the short record: the long record still decides.
        let mut r = with_short(1.0);
        r.records[bold] = Record {
            n: 100.0,
            v: 1.0,
            r: 80.0,
        };
        r.short[bold] = Record {
            n: 35.0,
            v: 0.25,
            r: 28.0,
        };
        assert_eq!(r.shrunk(bold), r.shrunk_by(bold, Memory::Long));
        assert!(r.shrunk(bold).0 > limit);
        // Worse lately: the short record's higher rate is used.
        let mut w = with_short(1.0);
        w.records[bold] = Record {
            n: 100.0,
            v: 4.0,
            r: 80.0,
        };
        w.short[bold] = Record {
            n: 35.0,
            v: 4.0,
            r: 28.0,
        };
        assert!(w.shrunk(bold).0 > w.shrunk_by(bold, Memory::Long).0);
    }

    #[test]
    fn short_records_decay_faster_and_see_the_same_decisions() {
        let mut s = with_short(0.5);
        run(&mut s, 0, 3 * 288);
        let nominal = nominal_rung(0.01);
        let (l, sh) = (s.records[nominal], s.short[nominal]);
        assert!(sh.n > 0.0 && sh.n < l.n, "{sh:?} {l:?}");
        // Steady usage: both records say the same, so the choice is the one without them.
        let mut d = without_short();
        let a = run(&mut d, 0, 3 * 288);
        let mut s2 = with_short(0.5);
        let b = run(&mut s2, 0, 3 * 288);
        assert_eq!(a, b);
    }

    #[test]
    fn the_short_memory_must_earn_its_place_on_the_node() {
        let mut o = SelectOptions::new(3600, 0.01);
        o.short_half_life_secs = 86_400.0;
        o.pick_memory = true;
        o.pick_no_worse = false;
        let mut s = Selector::new(selector().base, o);
        // No record of either memory's choices: the long memory.
        assert!(!s.short_memory_earned());
        // A few clean windows are not enough (prior 2α over 25 windows).
        s.memories = vec![
            Record {
                n: 10.0,
                v: 0.0,
                r: 7.0,
            },
            Record {
                n: 10.0,
                v: 0.0,
                r: 8.0,
            },
        ];
        assert!(!s.short_memory_earned());
        // Many clean windows and more reclaim: the short memory.
        s.memories = vec![
            Record {
                n: 100.0,
                v: 0.0,
                r: 70.0,
            },
            Record {
                n: 100.0,
                v: 0.0,
                r: 80.0,
            },
        ];
        assert!(s.short_memory_earned());
        // Less reclaim, or over the limit: the long memory.
        s.memories[1].r = 60.0;
        assert!(!s.short_memory_earned());
        s.memories[1] = Record {
            n: 100.0,
            v: 2.0,
            r: 80.0,
        };
        assert!(!s.short_memory_earned());
        // Under the limit but violating more than the long memory: only `pickdom` refuses it.
        s.memories[0] = Record {
            n: 100.0,
            v: 0.0,
            r: 70.0,
        };
        s.memories[1] = Record {
            n: 100.0,
            v: 0.4,
            r: 80.0,
        };
        assert!(s.short_memory_earned());
        s.opts.pick_no_worse = true;
        assert!(!s.short_memory_earned());
        s.memories[0].v = 0.4;
        assert!(s.short_memory_earned());
        // A stricter bar: 0.4 + 0.02·25 over 125 windows is 0.72% > 0.6 × 1%.
        s.opts.pick_limit = 0.6;
        assert!(!s.short_memory_earned());
        s.opts.pick_limit = 1.0;
        // A run scores both memories' choices on the same decisions.
        let mut r = Selector::new(selector().base, o);
        run(&mut r, 0, 3 * 288);
        assert_eq!(r.memories.len(), 2);
        assert!(r.memories[0].n > 30.0 && (r.memories[0].n - r.memories[1].n).abs() < 1e-6);
    }

    #[test]
    fn a_checkpoint_without_short_records_loads() {
        // Written before short memory: no short records, no memory picks, no options for them.
        let mut s = without_short();
        run(&mut s, 0, 288);
        let mut v: serde_json::Value = serde_json::to_value(&s).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("short");
        obj.remove("memories");
        let o = obj.get_mut("opts").unwrap().as_object_mut().unwrap();
        o.remove("short_half_life_secs");
        o.remove("drift_z");
        o.remove("pick_memory");
        o.remove("pick_limit");
        o.remove("pick_no_worse");
        for p in obj.get_mut("pending").unwrap().as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("picks");
        }
        let mut back: Selector = serde_json::from_value(v).unwrap();
        // It loads with today's defaults and keeps its records; the short ones start empty.
        assert_eq!(back.opts, SelectOptions::new(3600, 0.01));
        assert_eq!(back.records, s.records);
        assert_eq!(back.pending.len(), s.pending.len());
        assert!(back.short.is_empty() && back.memories.is_empty());
        let p = run(&mut back, 288, 2 * 288);
        assert!(p.is_finite() && p >= 1_000.0, "{p}");
        assert_eq!(back.short.len(), CANDIDATES);
        assert_eq!(back.memories.len(), 2);
        // The default: a half-day short memory, picked per node where it dominates.
        let d = SelectOptions::new(3600, 0.01);
        assert!(d.pick_memory && d.pick_no_worse);
        assert_eq!(d.short_half_life_secs, DEFAULT_SHORT_HALF_LIFE_SECS);
        assert_eq!(selector().short.len(), CANDIDATES);
        let off = SelectOptions::new(3600, 0.01).with_spec("hls=0").unwrap();
        assert_eq!(off.short_half_life_secs, 0.0);
        assert!(Selector::new(selector().base, off).short.is_empty());
        let o = SelectOptions::new(3600, 0.01)
            .with_spec("hls=1+hlz=3+pick")
            .unwrap();
        assert_eq!(o.short_half_life_secs, 86_400.0);
        assert_eq!(o.drift_z, 3.0);
        assert!(o.pick_memory);
        let o = SelectOptions::new(3600, 0.01)
            .with_spec("pickf=0.8+pickany")
            .unwrap();
        assert!(o.pick_memory && !o.pick_no_worse);
        assert_eq!(o.pick_limit, 0.8);
        let o = SelectOptions::new(3600, 0.01).with_spec("pickdom").unwrap();
        assert!(o.pick_memory && o.pick_no_worse);
        let o = SelectOptions::new(300, 0.01).with_spec("hlsh=50").unwrap();
        assert_eq!(o.short_half_life_secs, 86_400.0);
    }
}
