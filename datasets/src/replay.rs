//! Running a replay: build the cluster (synthetic or from a trace), run the policies side by
//! side on two threads, collect the report. Shows a progress bar on stderr when it is a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tide_api::{ResourceAmounts, TideConfig};

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
}

/// System usage assumed on every node: kubelet, runtime and daemons.
pub const SYSTEM_USAGE: ResourceAmounts = ResourceAmounts {
    cpu: tide_api::MilliCores(200),
    memory: tide_api::Bytes(1 << 30),
};

/// Runs the replay.
pub fn run(input: &ReplayInput<'_>) -> ReplayReport {
    let started = Instant::now();
    let steps = input.steps.unwrap_or(usize::MAX).min(input.trace.steps());
    let setup = SimSetup {
        trace: input.trace,
        nodes: input.nodes,
        capacity: vec![input.node_capacity; input.nodes.len()],
        be_jobs: input.be_jobs,
        config: input.config.clone(),
        static_ratio: input.static_ratio,
        system: SYSTEM_USAGE,
        steps,
    };
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let total = (steps * input.policies.len()) as u64;
    let finished = AtomicUsize::new(0);
    let mut outcomes: Vec<PolicyOutcome> = std::thread::scope(|s| {
        let worker = || {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&p) = input.policies.get(i) else {
                    break;
                };
                out.push(simulate(&setup, p, &done));
            }
            finished.fetch_add(1, Ordering::Relaxed);
            out
        };
        let a = s.spawn(worker);
        let b = s.spawn(worker);
        if input.progress && std::io::stderr().is_terminal() {
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
    outcomes.sort_by_key(|o| input.policies.iter().position(|p| *p == o.policy));
    ReplayReport {
        source: input.source.clone(),
        nodes: input.nodes.len(),
        hp_pods: input.nodes.iter().map(Vec::len).sum(),
        be_jobs: input.be_jobs.len(),
        steps,
        step_secs: input.trace.step_secs,
        policies: outcomes,
        load_secs: input.load_secs,
        simulate_secs: started.elapsed().as_secs_f64(),
    }
}
