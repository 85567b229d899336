//! Tide's predictor (max of per-pod histograms, node N-sigma and diurnal, then calibrated),
//! the live per-resource estimator built from the shared configuration, and the catalog of
//! every predictor and baseline the evaluation compares.

use serde::{Deserialize, Serialize};
use tide_api::{EstimatorSettings, PredictorKind, Resource};

use crate::calibration::{Calibrated, CalibrationOptions};
use crate::capacity::{Degraded, ReclaimInputs, ReclaimPolicy, reclaimable};
use crate::histogram::HistogramOptions;
use crate::history::HistoryOptions;
use crate::predictors::{
    BorgStyle, Diurnal, KoordinatorDefault, NoOvercommit, NodeNSigma, NodeObservation,
    PeakPredictor, PodHistogramSum, z_for_tail,
};
use crate::select::{SelectOptions, Selector};

/// Slot width of the time-of-day profile.
const DIURNAL_SLOT_SECS: u64 = 900;
/// Half-life of the time-of-day profile: a week, so weekdays and weekends blend slowly.
const DIURNAL_HALF_LIFE_SECS: f64 = 7.0 * 86_400.0;

/// The maximum of whichever of Tide's three base predictors are enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TideBase {
    /// Sum of per-pod decaying-histogram percentiles.
    pub pod_histogram: Option<PodHistogramSum>,
    /// N-sigma on the node aggregate.
    pub n_sigma: Option<NodeNSigma>,
    /// Time-of-day profile.
    pub diurnal: Option<Diurnal>,
}

/// Which base predictors a [`TideBase`] combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Components {
    /// Use the per-pod histogram sum.
    pub pod_histogram: bool,
    /// Use node N-sigma.
    pub n_sigma: bool,
    /// Use the diurnal profile.
    pub diurnal: bool,
}

impl Components {
    /// All three.
    pub const ALL: Components = Components {
        pod_histogram: true,
        n_sigma: true,
        diurnal: true,
    };
}

impl TideBase {
    /// Builds the enabled components for `resource` from the estimator settings.
    pub fn new(resource: Resource, s: &EstimatorSettings, which: Components) -> Self {
        let target = s.target_violation_rate;
        let half_life = s.half_life.as_secs_f64();
        let hist = |hl: f64| match resource {
            Resource::Cpu => HistogramOptions::cpu(hl),
            Resource::Memory => HistogramOptions::memory(hl),
        };
        let horizon = s.horizon.as_secs();
        let window = s.recent_window.as_secs().max(60);
        Self {
            pod_histogram: which.pod_histogram.then(|| {
                PodHistogramSum::new(
                    HistoryOptions::new(hist(half_life), window),
                    1.0 - target,
                    s.min_history.as_secs(),
                )
            }),
            n_sigma: which
                .n_sigma
                .then(|| NodeNSigma::new(window, z_for_tail(target))),
            diurnal: which.diurnal.then(|| {
                Diurnal::new(
                    DIURNAL_SLOT_SECS,
                    horizon,
                    1.0 - target,
                    hist(DIURNAL_HALF_LIFE_SECS),
                )
            }),
        }
    }
}

impl PeakPredictor for TideBase {
    fn name(&self) -> String {
        let mut parts = Vec::new();
        if self.pod_histogram.is_some() {
            parts.push("pod-histogram");
        }
        if self.n_sigma.is_some() {
            parts.push("n-sigma");
        }
        if self.diurnal.is_some() {
            parts.push("diurnal");
        }
        if parts.len() == 3 {
            "max".into()
        } else {
            parts.join("+")
        }
    }
    fn observe(&mut self, obs: &NodeObservation<'_>) {
        if let Some(p) = &mut self.pod_histogram {
            p.observe(obs);
        }
        if let Some(p) = &mut self.n_sigma {
            p.observe(obs);
        }
        if let Some(p) = &mut self.diurnal {
            p.observe(obs);
        }
    }
    fn predict(&self, obs: &NodeObservation<'_>) -> Option<f64> {
        [
            self.pod_histogram.as_ref().and_then(|p| p.predict(obs)),
            self.n_sigma.as_ref().and_then(|p| p.predict(obs)),
            self.diurnal.as_ref().and_then(|p| p.predict(obs)),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max)
    }
}

/// The predictor behind a [`ResourceEstimator`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// Tide v2: selection among candidates by their realised record (the default).
    Select(Box<Selector>),
    /// One base under conformal calibration (`predictor: pod-histogram` / `n-sigma`, and v1).
    Calibrated(Box<Calibrated<TideBase>>),
}

impl Model {
    fn as_predictor(&self) -> &dyn PeakPredictor {
        match self {
            Model::Select(p) => p.as_ref(),
            Model::Calibrated(p) => p.as_ref(),
        }
    }
    fn as_predictor_mut(&mut self) -> &mut dyn PeakPredictor {
        match self {
            Model::Select(p) => p.as_mut(),
            Model::Calibrated(p) => p.as_mut(),
        }
    }
}

/// Checkpoint format version written by this build.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The live estimator for one node and one resource: Tide's predictor plus the
/// reclaimable model. Serialisable, so the agent can checkpoint it; version-1 checkpoints
/// (calibrated max of the three bases) load and migrate to v2 keeping all history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Checkpoint")]
pub struct ResourceEstimator {
    /// Which resource this estimates.
    pub resource: Resource,
    /// Checkpoint format version.
    pub version: u32,
    model: Model,
    first_time: Option<u64>,
    last_time: Option<u64>,
}

/// Every checkpoint format ever written, as one struct (v1 has `predictor`, v2 `version` and
/// `model`), so that no untagged buffering loses the integer map keys of the histories.
#[derive(Deserialize)]
struct Checkpoint {
    resource: Resource,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    model: Option<Model>,
    /// Version 1: Tide's calibrated max of the bases.
    #[serde(default)]
    predictor: Option<Box<Calibrated<TideBase>>>,
    first_time: Option<u64>,
    last_time: Option<u64>,
}

impl TryFrom<Checkpoint> for ResourceEstimator {
    type Error = String;
    fn try_from(c: Checkpoint) -> Result<Self, String> {
        let model = match (c.model, c.predictor) {
            (Some(m), _) => m,
            (None, Some(predictor)) => {
                let all = {
                    let b = predictor.base();
                    b.pod_histogram.is_some() && b.n_sigma.is_some() && b.diurnal.is_some()
                };
                // v1 Tide (all three bases) becomes v2's selector over the same history; a
                // single calibrated base stays what it was.
                if all {
                    let o = *predictor.options();
                    Model::Select(Box::new(Selector::new(
                        (*predictor).into_base(),
                        SelectOptions::new(o.horizon_secs, o.target),
                    )))
                } else {
                    Model::Calibrated(predictor)
                }
            }
            (None, None) => {
                return Err(format!(
                    "estimator checkpoint version {} has neither model nor predictor",
                    c.version.unwrap_or(1)
                ));
            }
        };
        Ok(Self {
            resource: c.resource,
            version: CHECKPOINT_VERSION,
            model,
            first_time: c.first_time,
            last_time: c.last_time,
        })
    }
}

/// The live estimate for one node and one resource (amounts in the resource's unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceEstimate {
    /// Calibrated prediction of the HP peak over the horizon (system usage included).
    pub predicted_peak: f64,
    /// Operator-configured extra margin.
    pub margin: f64,
    /// What BE pods may use.
    pub reclaimable: f64,
    /// Why reclaimable was forced to zero, if it was.
    pub degraded: Option<Degraded>,
    /// Seconds of history behind the estimate.
    pub history_secs: u64,
    /// Recent share of decisions whose realised peak exceeded the prediction.
    pub recent_violation_rate: f64,
}

impl ResourceEstimator {
    /// An estimator with no history, configured from the shared settings; it predicts over the
    /// resource's horizon ([`EstimatorSettings::horizon_for`]).
    pub fn new(resource: Resource, s: &EstimatorSettings) -> Self {
        let s = &s.for_resource(resource);
        let which = match s.predictor {
            PredictorKind::Tide => Components::ALL,
            PredictorKind::PodHistogram => Components {
                pod_histogram: true,
                n_sigma: false,
                diurnal: false,
            },
            PredictorKind::NSigma => Components {
                pod_histogram: false,
                n_sigma: true,
                diurnal: false,
            },
        };
        let mut cal = CalibrationOptions::new(s.horizon.as_secs(), s.target_violation_rate);
        cal.enabled = s.calibrate;
        let base = TideBase::new(resource, s, which);
        let model = if s.predictor == PredictorKind::Tide && s.calibrate {
            Model::Select(Box::new(Selector::new(
                base,
                SelectOptions::new(s.horizon.as_secs(), s.target_violation_rate),
            )))
        } else {
            Model::Calibrated(Box::new(Calibrated::new(base, cal)))
        };
        Self {
            resource,
            version: CHECKPOINT_VERSION,
            model,
            first_time: None,
            last_time: None,
        }
    }

    /// The horizon this estimator predicts over, seconds (fixed when it was built; a checkpoint
    /// keeps it).
    pub fn horizon_secs(&self) -> u64 {
        match &self.model {
            Model::Select(p) => p.horizon_secs(),
            Model::Calibrated(p) => p.horizon_secs(),
        }
    }

    /// Takes in one observation of the node.
    pub fn observe(&mut self, obs: &NodeObservation<'_>) {
        self.first_time.get_or_insert(obs.time);
        self.last_time = Some(obs.time);
        self.model.as_predictor_mut().observe(obs);
    }

    /// The estimate at `now` for the node last observed as `obs`. Pure given the state.
    pub fn estimate(
        &self,
        obs: &NodeObservation<'_>,
        now: u64,
        settings: &EstimatorSettings,
        system_reserve: f64,
        cold_credit: f64,
    ) -> ResourceEstimate {
        let predicted_peak = self.model.as_predictor().predict(obs).unwrap_or(f64::NAN);
        let margin_pct = match self.resource {
            Resource::Cpu => settings.cpu_margin_percent,
            Resource::Memory => settings.memory_margin_percent,
        };
        let margin = obs.capacity * margin_pct / 100.0;
        let history_secs = match (self.first_time, self.last_time) {
            (Some(f), Some(l)) => l.saturating_sub(f),
            _ => 0,
        };
        let data_age_secs = self.last_time.map_or(u64::MAX, |l| now.saturating_sub(l));
        let decision = reclaimable(
            &ReclaimInputs {
                allocatable: obs.capacity,
                predicted_peak,
                margin,
                system_reserve,
                cold_credit,
                history_secs,
                data_age_secs,
            },
            &ReclaimPolicy {
                min_history_secs: settings.min_history.as_secs(),
                stale_after_secs: settings.stale_after.as_secs(),
            },
        );
        ResourceEstimate {
            predicted_peak,
            margin,
            reclaimable: decision.reclaimable,
            degraded: decision.degraded,
            history_secs,
            recent_violation_rate: match &self.model {
                Model::Select(p) => p.recent_violation_rate(),
                Model::Calibrated(p) => p.recent_violation_rate(),
            },
        }
    }
}

/// Every predictor and baseline the evaluation runs side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Catalog {
    /// Tide v2: online selection among candidates by their realised record.
    Tide,
    /// Tide v1: max of the three bases, calibrated.
    TideV1,
    /// Tide's calibration over the per-pod histogram sum alone.
    TidePodHistogram,
    /// Tide's calibration over node N-sigma alone.
    TideNSigma,
    /// Tide's calibration over the diurnal profile alone.
    TideDiurnal,
    /// Uncalibrated sum of per-pod p(1−α) (VPA-like).
    PodHistogram,
    /// Baseline: plain N-sigma on the node aggregate, n = z(1−α).
    NSigma,
    /// Baseline: N-sigma with a fixed n (the "n that would have met α" is the best of these).
    NSigmaN(u8),
    /// Baseline: Koordinator's default.
    Koordinator,
    /// Baseline: Borg-style decaying reservations.
    Borg,
    /// Baseline: no overcommit (HP reservation = HP requests).
    NoOvercommit,
}

impl Catalog {
    /// All entries, in report order.
    pub const ALL: [Catalog; 14] = [
        Catalog::Tide,
        Catalog::TideV1,
        Catalog::TidePodHistogram,
        Catalog::TideNSigma,
        Catalog::TideDiurnal,
        Catalog::PodHistogram,
        Catalog::NSigma,
        Catalog::NSigmaN(1),
        Catalog::NSigmaN(2),
        Catalog::NSigmaN(3),
        Catalog::NSigmaN(4),
        Catalog::Koordinator,
        Catalog::Borg,
        Catalog::NoOvercommit,
    ];

    /// Stable name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Catalog::Tide => "tide",
            Catalog::TideV1 => "tide-v1",
            Catalog::TidePodHistogram => "tide-pod-histogram",
            Catalog::TideNSigma => "tide-n-sigma",
            Catalog::TideDiurnal => "tide-diurnal",
            Catalog::PodHistogram => "pod-histogram",
            Catalog::NSigma => "n-sigma",
            Catalog::NSigmaN(1) => "n-sigma-1",
            Catalog::NSigmaN(2) => "n-sigma-2",
            Catalog::NSigmaN(3) => "n-sigma-3",
            Catalog::NSigmaN(_) => "n-sigma-4",
            Catalog::Koordinator => "koordinator",
            Catalog::Borg => "borg",
            Catalog::NoOvercommit => "no-overcommit",
        }
    }

    /// True for Tide's own predictors (as opposed to baselines).
    pub fn is_tide(self) -> bool {
        matches!(
            self,
            Catalog::Tide
                | Catalog::TideV1
                | Catalog::TidePodHistogram
                | Catalog::TideNSigma
                | Catalog::TideDiurnal
        )
    }

    /// A fresh instance for one node and resource.
    pub fn build(self, resource: Resource, s: &EstimatorSettings) -> Box<dyn PeakPredictor> {
        let cal = CalibrationOptions::new(s.horizon.as_secs(), s.target_violation_rate);
        let tide = |which: Components| -> Box<dyn PeakPredictor> {
            Box::new(Calibrated::new(TideBase::new(resource, s, which), cal))
        };
        let none = Components {
            pod_histogram: false,
            n_sigma: false,
            diurnal: false,
        };
        match self {
            Catalog::Tide => Box::new(Selector::new(
                TideBase::new(resource, s, Components::ALL),
                SelectOptions::new(s.horizon.as_secs(), s.target_violation_rate),
            )),
            Catalog::TideV1 => tide(Components::ALL),
            Catalog::TidePodHistogram => tide(Components {
                pod_histogram: true,
                ..none
            }),
            Catalog::TideNSigma => tide(Components {
                n_sigma: true,
                ..none
            }),
            Catalog::TideDiurnal => tide(Components {
                diurnal: true,
                ..none
            }),
            Catalog::PodHistogram => Box::new(TideBase::new(
                resource,
                s,
                Components {
                    pod_histogram: true,
                    ..none
                },
            )),
            Catalog::NSigma => Box::new(NodeNSigma::new(
                s.recent_window.as_secs().max(60),
                z_for_tail(s.target_violation_rate),
            )),
            Catalog::NSigmaN(n) => Box::new(NodeNSigma::new(
                s.recent_window.as_secs().max(60),
                f64::from(n),
            )),
            Catalog::Koordinator => Box::new(KoordinatorDefault::new(match resource {
                Resource::Cpu => 0.60,
                Resource::Memory => 0.65,
            })),
            // Borg: 10% safety margin over usage, reservations decay with a 5-minute time constant.
            Catalog::Borg => Box::new(BorgStyle::new(0.10, 300.0)),
            Catalog::NoOvercommit => Box::new(NoOvercommit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictors::PodSample;

    #[test]
    fn live_estimator_degrades_then_reclaims() {
        let s = EstimatorSettings::default();
        let mut e = ResourceEstimator::new(Resource::Cpu, &s);
        let mut last = None;
        for t in (0..7200u64).step_by(10) {
            let pods = [PodSample {
                id: 1,
                workload: Some(1),
                usage: 2000.0 + (t % 600) as f64,
                request: 8000.0,
            }];
            let obs = NodeObservation {
                time: t,
                capacity: 16_000.0,
                pods: &pods,
                system: 300.0,
            };
            e.observe(&obs);
            let est = e.estimate(&obs, t, &s, 500.0, 0.0);
            if t < 3600 {
                assert_eq!(est.degraded, Some(Degraded::HistoryTooYoung), "t={t}");
            }
            last = Some(est);
        }
        let est = last.unwrap();
        assert_eq!(est.degraded, None);
        assert!(
            est.predicted_peak >= 2899.0,
            "covers the observed peak: {}",
            est.predicted_peak
        );
        assert!(
            est.reclaimable > 8_000.0 && est.reclaimable < 16_000.0 - 500.0 - 2899.0,
            "{}",
            est.reclaimable
        );
        // Stale: an hour without samples.
        let pods = [PodSample {
            id: 1,
            workload: Some(1),
            usage: 2000.0,
            request: 8000.0,
        }];
        let obs = NodeObservation {
            time: 7190,
            capacity: 16_000.0,
            pods: &pods,
            system: 300.0,
        };
        assert_eq!(
            e.estimate(&obs, 7190 + 3600, &s, 500.0, 0.0).degraded,
            Some(Degraded::StaleData)
        );
    }

    #[test]
    fn checkpoint_round_trips_through_json() {
        let s = EstimatorSettings::default();
        let mut e = ResourceEstimator::new(Resource::Memory, &s);
        for t in (0..4000u64).step_by(30) {
            let pods = [PodSample {
                id: 9,
                workload: None,
                usage: 1e9 + t as f64 * 1e4,
                request: 4e9,
            }];
            e.observe(&NodeObservation {
                time: t,
                capacity: 8e9,
                pods: &pods,
                system: 0.0,
            });
        }
        let json = serde_json::to_string(&e).unwrap();
        let back: ResourceEstimator = serde_json::from_str(&json).unwrap();
        assert!(
            back == e,
            "restored state differs from the checkpointed one"
        );
    }

    #[test]
    fn version_1_checkpoint_migrates_keeping_history() {
        // A v1 checkpoint: Tide's calibrated max of the three bases, as v1 wrote it.
        let s = EstimatorSettings::default();
        let mut v1 = Calibrated::new(
            TideBase::new(Resource::Cpu, &s, Components::ALL),
            CalibrationOptions::new(3600, 0.01),
        );
        let pods = [PodSample {
            id: 4,
            workload: Some(2),
            usage: 1500.0,
            request: 4000.0,
        }];
        for t in (0..7200u64).step_by(60) {
            v1.observe(&NodeObservation {
                time: t,
                capacity: 8000.0,
                pods: &pods,
                system: 0.0,
            });
        }
        let old = serde_json::json!({
            "resource": "cpu",
            "predictor": v1,
            "first_time": 0,
            "last_time": 7140,
        });
        let e: ResourceEstimator = serde_json::from_value(old).unwrap();
        assert_eq!(e.version, CHECKPOINT_VERSION);
        let Model::Select(sel) = &e.model else {
            panic!("v1 Tide must migrate to the selector");
        };
        // The per-pod history came along: the prediction is the pod's level, not its request.
        let obs = NodeObservation {
            time: 7200,
            capacity: 8000.0,
            pods: &pods,
            system: 0.0,
        };
        let mut e2 = e.clone();
        e2.observe(&obs);
        let est = e2.estimate(&obs, 7200, &s, 0.0, 0.0);
        assert!(est.degraded.is_none(), "{est:?}");
        assert!(est.predicted_peak < 2000.0, "{est:?}");
        assert!(sel.base().pod_histogram.as_ref().unwrap().store.len() == 1);
        // And a v2 checkpoint round-trips as itself.
        let json = serde_json::to_string(&e2).unwrap();
        assert!(json.contains("\"version\":2"));
        let back: ResourceEstimator = serde_json::from_str(&json).unwrap();
        assert!(back == e2);
    }

    #[test]
    fn catalog_names_are_unique() {
        let names: std::collections::BTreeSet<_> = Catalog::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Catalog::ALL.len());
        let s = EstimatorSettings::default();
        for c in Catalog::ALL {
            let p = c.build(Resource::Cpu, &s);
            assert!(!p.name().is_empty());
        }
    }
}
