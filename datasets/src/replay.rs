//! Running a replay: build the cluster (synthetic or from a trace), run the policies side by
//! side on two threads, collect the report. Shows a progress bar on stderr when it is a terminal.
//! [`sweep`] runs each policy family over its own knob for the frontier.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tide_api::{ResourceAmounts, TideConfig};

use crate::churn::HpChurn;
use crate::pagecache::PageCacheModel;
use crate::report::ReplayReport;
use crate::sim::{BeJob, Policy, PolicyOutcome, SimSetup, simulate};
use crate::trace::UsageTrace;

/// One replay's inputs.
pub struct ReplayInput<'a> {
    /// Name of the source, for the report.
    pub source: String,
    /// HP usage.
    pub trace: &'a UsageTrace,
    /// HP columns per node.
    pub nodes: &'a [Vec<usize>],
    /// Allocatable of every node.
    pub node_capacity: ResourceAmounts,
    /// BE jobs.
    pub be_jobs: &'a [BeJob],
    /// Shared configuration.
    pub config: TideConfig,
    /// Policies to compare.
    pub policies: Vec<Policy>,
    /// Static overcommit ratio.
    pub static_ratio: f64,
    /// Steps to run (None: the whole trace).
    pub steps: Option<usize>,
    /// Seconds spent loading (reported).
    pub load_secs: f64,
    /// Show progress (only ever on a terminal).
    pub progress: bool,
    /// HP page cache and Tide's cold-memory reclaim (`None`: left out).
    pub page_cache: Option<PageCacheModel>,
    /// HP churn (`None`: HP pods stay where the packing put them).
    pub churn: Option<HpChurn>,
}

/// System usage assumed on every node: kubelet, runtime and daemons.
pub const SYSTEM_USAGE: ResourceAmounts = ResourceAmounts {
    cpu: tide_api::MilliCores(200),
    memory: tide_api::Bytes(1 << 30),
};

/// Koordinator's default reclaim thresholds (CPU, memory).
pub const KOORDINATOR_THRESHOLD: (f64, f64) = (0.60, 0.65);

/// One run: a policy at one value of its knob (see [`Policy::knob_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Variant {
    /// The policy.
    pub policy: Policy,
    /// The knob's value; `None` keeps the input's (static ratio, Koordinator's defaults,
    /// the configuration's schedule level).
    pub knob: Option<f64>,
    /// Tide's second knob, the estimator's target violation rate; `None` keeps the
    /// configuration's.
    pub target: Option<f64>,
}

/// Tide's sweep: the CPU schedule levels tried at the configured target violation rate.
pub const TIDE_LEVELS: [f64; 7] = [70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 100.0];

/// Tide's sweep: the bolder target violation rates tried at the top levels
/// ([`TIDE_BOLD_LEVELS`]) — what an operator trading HP safety for BE throughput would set.
pub const TIDE_BOLD_TARGETS: [f64; 2] = [0.05, 0.2];

/// The schedule levels at which [`TIDE_BOLD_TARGETS`] are tried.
pub const TIDE_BOLD_LEVELS: [f64; 2] = [95.0, 100.0];

/// Tide's configuration with the CPU schedule water level at `level` percent; the
/// suppression and eviction levels are raised with it where needed so the agent never
/// throttles what the extender admitted (validation keeps admission at or below eviction).
pub fn tide_at_level(base: &TideConfig, level: f64) -> TideConfig {
    let mut c = base.clone();
    c.cpu.schedule_percent = level;
    c.cpu.suppress_percent = c.cpu.suppress_percent.max(level + 5.0).min(100.0);
    c.cpu.evict_percent = c.cpu.evict_percent.max(c.cpu.suppress_percent).min(100.0);
    c.cpu.release_percent = c.cpu.release_percent.min(c.cpu.evict_percent);
    c
}

fn setup_for<'a>(base: &SimSetup<'a>, v: Variant) -> SimSetup<'a> {
    let mut s = base.clone();
    if let Some(t) = v.target
        && matches!(v.policy, Policy::Tide | Policy::TideRequest)
    {
        s.config.estimator.target_violation_rate = t;
    }
    if let Some(k) = v.knob {
        match v.policy {
            Policy::NoOvercommit => {}
            Policy::StaticRatio => s.static_ratio = k,
            Policy::Koordinator => s.koordinator_threshold = (k / 100.0, k / 100.0 + 0.05),
            Policy::Tide | Policy::TideRequest => s.config = tide_at_level(&s.config, k),
        }
    }
    s
}

/// Runs every variant on two threads (largest first is not known, so in order), in the
/// variants' order. `done` counts steps across all runs.
pub fn run_variants(
    base: &SimSetup<'_>,
    variants: &[Variant],
    done: &AtomicU64,
    progress: bool,
) -> Vec<PolicyOutcome> {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let total = (base.steps * variants.len()) as u64;
    let finished = AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, PolicyOutcome)> = std::thread::scope(|s| {
        let worker = || {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&v) = variants.get(i) else {
                    break;
                };
                out.push((i, simulate(&setup_for(base, v), v.policy, done)));
            }
            finished.fetch_add(1, Ordering::Relaxed);
            out
        };
        let a = s.spawn(worker);
        let b = s.spawn(worker);
        if progress && std::io::stderr().is_terminal() {
            while finished.load(Ordering::Relaxed) < 2 {
                let d = done.load(Ordering::Relaxed);
                let pct = (d * 100).checked_div(total).unwrap_or(100);
                let bar = "#".repeat(usize::try_from(pct / 2).unwrap_or(0));
                eprint!(
                    "\r[{bar:<50}] {pct:>3}%  {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            eprint!("\r{:<80}\r", "");
        }
        let mut v = a.join().unwrap_or_default();
        v.extend(b.join().unwrap_or_default());
        v
    });
    outcomes.sort_by_key(|o| o.0);
    outcomes.into_iter().map(|o| o.1).collect()
}

fn base_setup<'a>(input: &ReplayInput<'a>) -> SimSetup<'a> {
    let steps = input.steps.unwrap_or(usize::MAX).min(input.trace.steps());
    SimSetup {
        trace: input.trace,
        nodes: input.nodes,
        capacity: vec![input.node_capacity; input.nodes.len()],
        be_jobs: input.be_jobs,
        config: input.config.clone(),
        static_ratio: input.static_ratio,
        koordinator_threshold: KOORDINATOR_THRESHOLD,
        system: SYSTEM_USAGE,
        page_cache: input.page_cache,
        churn: input.churn,
        steps,
    }
}

fn report(input: &ReplayInput<'_>, policies: Vec<PolicyOutcome>, secs: f64) -> ReplayReport {
    ReplayReport {
        source: input.source.clone(),
        nodes: input.nodes.len(),
        hp_pods: input.nodes.iter().map(Vec::len).sum(),
        be_jobs: input.be_jobs.len(),
        steps: input.steps.unwrap_or(usize::MAX).min(input.trace.steps()),
        step_secs: input.trace.step_secs,
        node_capacity: input.node_capacity,
        static_ratio: input.static_ratio,
        config: input.config.clone(),
        policies,
        frontier: Vec::new(),
        load_secs: input.load_secs,
        simulate_secs: secs,
    }
}

/// Runs the replay: each policy once, at its configured knob.
pub fn run(input: &ReplayInput<'_>) -> ReplayReport {
    let started = Instant::now();
    let setup = base_setup(input);
    let variants: Vec<Variant> = input
        .policies
        .iter()
        .map(|&policy| Variant {
            policy,
            knob: None,
            target: None,
        })
        .collect();
    let outcomes = run_variants(&setup, &variants, &AtomicU64::new(0), input.progress);
    report(input, outcomes, started.elapsed().as_secs_f64())
}

/// The knob value a policy runs at by default in `input`.
fn default_knob(input: &ReplayInput<'_>, p: Policy) -> f64 {
    match p {
        Policy::NoOvercommit => 1.0,
        Policy::StaticRatio => input.static_ratio,
        Policy::Koordinator => KOORDINATOR_THRESHOLD.0 * 100.0,
        Policy::Tide | Policy::TideRequest => input.config.cpu.schedule_percent,
    }
}

/// The knob values a sweep tries per policy family, plus each policy's own default knob
/// (`defaults`) where the grid does not have it, in increasing order. Tide (`tide`) also
/// runs [`TIDE_BOLD_TARGETS`] at [`TIDE_BOLD_LEVELS`], after its levels; `tide-request`
/// runs the levels only.
pub fn sweep_variants(policies: &[Policy], defaults: impl Fn(Policy) -> f64) -> Vec<Variant> {
    let mut out = Vec::new();
    for &policy in policies {
        let mut knobs: Vec<f64> = match policy {
            Policy::NoOvercommit => vec![1.0],
            Policy::StaticRatio => vec![1.1, 1.25, 1.5, 1.75, 2.0, 2.5],
            Policy::Koordinator => vec![40.0, 50.0, 60.0, 70.0, 80.0, 90.0],
            Policy::Tide | Policy::TideRequest => TIDE_LEVELS.to_vec(),
        };
        let own = defaults(policy);
        if !knobs.iter().any(|k| (k - own).abs() < 1e-9) {
            knobs.push(own);
            knobs.sort_by(f64::total_cmp);
        }
        out.extend(knobs.iter().map(|&k| Variant {
            policy,
            knob: (policy != Policy::NoOvercommit).then_some(k),
            target: None,
        }));
        if policy == Policy::Tide {
            for &level in &TIDE_BOLD_LEVELS {
                out.extend(TIDE_BOLD_TARGETS.iter().map(|&t| Variant {
                    policy,
                    knob: Some(level),
                    target: Some(t),
                }));
            }
        }
    }
    out
}

/// Runs each policy family over its own knob ([`sweep_variants`]); the report's frontier holds
/// every point and its `policies` the runs at the default knobs (for the table).
pub fn sweep(input: &ReplayInput<'_>) -> ReplayReport {
    let started = Instant::now();
    let setup = base_setup(input);
    let variants = sweep_variants(&input.policies, |p| default_knob(input, p));
    let points = run_variants(&setup, &variants, &AtomicU64::new(0), input.progress);
    let defaults: Vec<PolicyOutcome> = input
        .policies
        .iter()
        .filter_map(|&p| {
            let want = default_knob(input, p);
            let target = matches!(p, Policy::Tide | Policy::TideRequest)
                .then_some(input.config.estimator.target_violation_rate);
            points
                .iter()
                .find(|o| {
                    o.policy == p && (o.knob - want).abs() < 1e-9 && o.target_violation == target
                })
                .cloned()
        })
        .collect();
    let mut r = report(input, defaults, started.elapsed().as_secs_f64());
    r.frontier = points;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_grid_holds_each_policys_default_knob() {
        let v = sweep_variants(&Policy::ALL, |p| match p {
            Policy::StaticRatio => 1.3,
            Policy::Tide | Policy::TideRequest => 85.0,
            Policy::Koordinator => 60.0,
            Policy::NoOvercommit => 1.0,
        });
        let knobs = |p: Policy| -> Vec<f64> {
            v.iter()
                .filter(|x| x.policy == p)
                .filter_map(|x| x.knob)
                .collect()
        };
        assert_eq!(
            knobs(Policy::StaticRatio),
            vec![1.1, 1.25, 1.3, 1.5, 1.75, 2.0, 2.5]
        );
        assert_eq!(
            knobs(Policy::TideRequest),
            TIDE_LEVELS.to_vec(),
            "85 is already in the grid"
        );
        // Tide: the levels at the configured target, then the bold targets at the top levels.
        let tide: Vec<(Option<f64>, Option<f64>)> = v
            .iter()
            .filter(|x| x.policy == Policy::Tide)
            .map(|x| (x.knob, x.target))
            .collect();
        assert_eq!(tide.len(), TIDE_LEVELS.len() + 4);
        assert!(tide[..TIDE_LEVELS.len()].iter().all(|t| t.1.is_none()));
        assert_eq!(tide[TIDE_LEVELS.len()], (Some(95.0), Some(0.05)));
        assert_eq!(tide.last(), Some(&(Some(100.0), Some(0.2))));
        assert_eq!(knobs(Policy::NoOvercommit), Vec::<f64>::new());
        // The schedule level's agent levels follow it up, never down.
        let c = tide_at_level(&TideConfig::default(), 95.0);
        assert_eq!(c.cpu.suppress_percent, 100.0);
        assert!(c.cpu.evict_percent >= c.cpu.suppress_percent);
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        let c = tide_at_level(&TideConfig::default(), 70.0);
        assert_eq!(
            c.cpu.suppress_percent,
            TideConfig::default().cpu.suppress_percent
        );
    }
}
