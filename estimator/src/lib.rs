//! Tide's estimator: predicts each node's high-priority (HP) usage peak over a horizon and
//! derives the capacity best-effort pods may use (DESIGN.md §1, §5). Pure library, no I/O.
//!
//! - History: [`DecayingHistogram`] (VPA-style, bounded memory) and [`HistoryStore`] per pod
//!   and per workload, so a new pod starts from its siblings' history.
//! - Predictors ([`PeakPredictor`]): [`PodHistogramSum`], [`NodeNSigma`], [`Diurnal`], their
//!   maximum [`TideBase`], and [`Calibrated`], which steers the realised violation rate to the
//!   target (v1). Tide v2 is [`Selector`]: candidates derived from the same bases, scored
//!   counterfactually on every resolved decision, the highest-reclaim one whose recent
//!   violation rate meets the target chosen. Baselines: [`NoOvercommit`],
//!   [`KoordinatorDefault`], [`BorgStyle`].
//! - [`reclaimable`]: the reclaimable-capacity model; [`ResourceEstimator`] ties predictor and
//!   model together for the agent and the replay.
//! - [`EvalAccumulator`]: the metrics of DESIGN.md §5; [`Catalog`] lists what evaluation compares.
//!
//! ```
//! use tide_api::{EstimatorSettings, Resource};
//! use tide_estimator::{NodeObservation, PodSample, ResourceEstimator};
//!
//! let settings = EstimatorSettings::default();
//! let mut cpu = ResourceEstimator::new(Resource::Cpu, &settings);
//! let pods = [PodSample { id: 1, workload: None, usage: 1_200.0, request: 4_000.0 }];
//! for t in (0..=7_200).step_by(60) {
//!     cpu.observe(&NodeObservation { time: t, capacity: 8_000.0, pods: &pods, system: 200.0 });
//! }
//! let obs = NodeObservation { time: 7_200, capacity: 8_000.0, pods: &pods, system: 200.0 };
//! let est = cpu.estimate(&obs, 7_200, &settings, 500.0, 0.0);
//! assert!(est.predicted_peak >= 1_400.0 && est.reclaimable > 5_000.0);
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap,
        clippy::cast_precision_loss
    )
)]

mod calibration;
mod capacity;
mod histogram;
mod history;
mod metrics;
mod predictors;
mod select;
mod tide;

pub use calibration::{Calibrated, CalibrationOptions};
pub use capacity::{Degraded, ReclaimDecision, ReclaimInputs, ReclaimPolicy, reclaimable};
pub use histogram::{DecayingHistogram, HistogramOptions};
pub use history::{HistoryOptions, HistoryStore, SeriesId, UsageSeries, WorkloadId};
pub use metrics::{EvalAccumulator, EvalSummary, METRICS_VERSION, PeakWindow, forward_peaks};
pub use predictors::{
    BorgStyle, Diurnal, KoordinatorDefault, NoOvercommit, NodeNSigma, NodeObservation,
    PeakPredictor, PodHistogramSum, PodSample, z_for_tail,
};
pub use select::{
    CANDIDATES, DEFAULT_FLEET_BETA, FleetRecord, LADDER_NAMES, LEVELS, RUNGS, SelectOptions,
    Selector,
};
pub use tide::{
    CHECKPOINT_VERSION, Catalog, Components, Model, ResourceEstimate, ResourceEstimator, TideBase,
};
