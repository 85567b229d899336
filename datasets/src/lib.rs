//! Trace loaders, the synthetic cluster generator, estimator evaluation and the replay
//! simulator behind the `tide-replay` command (DESIGN.md §9).
//!
//! - [`rows`]: streaming, line-numbered reading of delimited files (gzip or plain), with
//!   malformed rows counted and reported by file and line ([`BadRows`]).
//! - [`formats`]: one row type and parser per official schema (Bitbrains GWA-T-12, Alibaba
//!   2018 and 2017, Alibaba GPU 2023, Google-derived series).
//! - [`trace`]: rows assembled into a [`UsageTrace`] (time × workload usage matrices).
//! - [`predict`]: every estimator predictor and baseline scored side by side.
//! - [`stats`]: what makes a trace risky to overcommit (peak-to-mean, bursts,
//!   autocorrelation, co-movement, daily cycle), measured alike on every trace.
//! - [`synthetic`]: the built-in seeded cluster; [`sim`]: the replay simulator, which runs the
//!   extender's placement, the agent's planner and the estimator — the live code, not copies;
//!   [`replay`] runs policies side by side and [`report`] renders the result.
//!
//! ```
//! use tide_datasets::SplitMix64;
//! let mut a = SplitMix64::new(7);
//! let mut b = SplitMix64::new(7);
//! assert_eq!(a.next_u64(), b.next_u64()); // seeded: the same cluster every run
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

pub mod bejobs;
pub mod churn;
pub mod formats;
pub mod pagecache;
pub mod placer;
mod plots;
pub mod predict;
pub mod replay;
pub mod report;
mod rng;
pub mod rows;
pub mod sim;
pub mod stats;
pub mod synthetic;
pub mod trace;

pub use predict::{Dominance, PredictOptions, PredictReport, SweepReport, evaluate, sweep, wilson};
pub use replay::{ReplayInput, run as run_replay};
pub use report::ReplayReport;
pub use rng::SplitMix64;
pub use rows::{BadRows, LoadError, RowError};
pub use sim::{BeJob, Policy, PolicyOutcome};
pub use synthetic::{SyntheticSpec, generate};
pub use trace::{
    TraceShape, UsageTrace, load_alibaba_machines, load_bitbrains, load_google, pack_nodes,
};

/// A trace named on the command line as `KIND:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceSpec {
    /// Bitbrains GWA-T-12 folder of per-VM files.
    Bitbrains(std::path::PathBuf),
    /// Alibaba 2018 folder with `machine_meta.csv` and `machine_usage*.csv`.
    Alibaba2018(std::path::PathBuf),
    /// Google-derived day series (`GCD_VMs.tar.gz` or a folder).
    Google(std::path::PathBuf),
}

impl std::str::FromStr for TraceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, path) = s
            .split_once(':')
            .ok_or_else(|| format!("trace {s:?}: expected KIND:PATH, e.g. bitbrains:../shared/datasets/bitbrains-rnd/2013-7"))?;
        let path = std::path::PathBuf::from(path);
        match kind {
            "bitbrains" => Ok(TraceSpec::Bitbrains(path)),
            "alibaba2018" | "alibaba-2018" => Ok(TraceSpec::Alibaba2018(path)),
            "google" => Ok(TraceSpec::Google(path)),
            _ => Err(format!(
                "trace {s:?}: unknown kind {kind:?} (bitbrains, alibaba2018, google)"
            )),
        }
    }
}

impl TraceSpec {
    /// Loads the trace.
    pub fn load(&self, strict: bool) -> Result<UsageTrace, LoadError> {
        match self {
            TraceSpec::Bitbrains(p) => load_bitbrains(p, strict),
            TraceSpec::Alibaba2018(p) => load_alibaba_machines(p, strict),
            TraceSpec::Google(p) => load_google(p, strict),
        }
    }
}
