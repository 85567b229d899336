//! Replay decisions on small hand-made clusters: behavioural checks and a golden file.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::sync::atomic::AtomicU64;

use ndarray::Array2;
use tide_api::{ResourceAmounts, TideConfig};
use tide_datasets::sim::{BeJob, Policy, PolicyOutcome, SimSetup, simulate};
use tide_datasets::trace::{Column, TraceShape, UsageTrace};
use tide_datasets::{BadRows, SyntheticSpec, generate};

const GIB: u64 = 1 << 30;

/// One node of 8 cores / 32 GiB with two HP pods (4 cores / 12 GiB requested each) whose
/// usage follows `cpu(t)` and `mem(t)` (per pod).
fn cluster(steps: usize, cpu: impl Fn(usize) -> f32, mem: impl Fn(usize) -> f32) -> UsageTrace {
    let mut c = Array2::<f32>::zeros((steps, 2));
    let mut m = Array2::<f32>::zeros((steps, 2));
    for t in 0..steps {
        for p in 0..2 {
            c[[t, p]] = cpu(t);
            m[[t, p]] = mem(t);
        }
    }
    UsageTrace {
        name: "hand-made".into(),
        shape: TraceShape::Workloads,
        step_secs: 60,
        start_time: 0,
        columns: (0..2)
            .map(|i| Column {
                name: format!("hp-{i}"),
                request: ResourceAmounts::new(4_000, 12 * GIB),
            })
            .collect(),
        cpu: c,
        memory: m,
        bad_rows: BadRows::default(),
        rows_read: 0,
    }
}

/// `n` BE jobs of 1 core / 2 GiB arriving at `at`, running for two hours at full demand.
fn jobs(n: u64, at: u64) -> Vec<BeJob> {
    (0..n)
        .map(|id| BeJob {
            id,
            arrival: at,
            request: ResourceAmounts::new(1_000, 2 * GIB),
            cpu_demand: 1_000,
            memory_usage: 2 * GIB,
            work: 1_000.0 * 7200.0,
            priority: 0,
        })
        .collect()
}

fn run(trace: &UsageTrace, be: &[BeJob], policy: Policy) -> PolicyOutcome {
    let nodes = vec![vec![0, 1]];
    let config = TideConfig::from_yaml("estimator:\n  minHistory: 10m\n  horizon: 10m\n").unwrap();
    let setup = SimSetup {
        trace,
        nodes: &nodes,
        capacity: vec![ResourceAmounts::new(8_000, 32 * GIB)],
        be_jobs: be,
        config,
        static_ratio: 1.5,
        koordinator_threshold: (0.6, 0.65),
        page_cache: None,
        churn: None,
        system: ResourceAmounts::ZERO,
        steps: trace.steps(),
    };
    simulate(&setup, policy, &AtomicU64::new(0))
}

#[test]
fn no_overcommit_sells_only_unrequested_capacity() {
    // HP requests fill the node: nothing may be sold.
    let trace = cluster(240, |_| 500.0, |_| 2.0 * GIB as f32);
    let out = run(&trace, &jobs(4, 0), Policy::NoOvercommit);
    assert_eq!(out.be_core_hours, 0.0);
    assert_eq!(out.be_jobs_waiting, 4);
}

#[test]
fn tide_sells_idle_capacity_once_history_is_old_enough() {
    let trace = cluster(240, |_| 500.0, |_| 2.0 * GIB as f32);
    let out = run(&trace, &jobs(4, 0), Policy::Tide);
    // Nothing is sold during the first 10 minutes (minHistory), then all four jobs run.
    assert!(
        out.timeline_be_cpu[..10].iter().all(|v| *v == 0.0),
        "{:?}",
        &out.timeline_be_cpu[..12]
    );
    assert_eq!(out.be_jobs_completed, 4);
    assert!(
        (out.be_core_hours - 8.0).abs() < 1e-6,
        "{}",
        out.be_core_hours
    );
    assert_eq!(out.hp_interference, 0.0);
    assert_eq!(out.be_evictions + out.be_kills, 0);
}

#[test]
fn suppression_reacts_within_one_tick() {
    // Calm for two hours, then HP CPU jumps from 0.5 to 3.5 cores per pod and stays there.
    let trace = cluster(
        240,
        |t| if t < 120 { 500.0 } else { 3_500.0 },
        |_| 2.0 * GIB as f32,
    );
    let tide = run(&trace, &jobs(4, 6_000), Policy::Tide);
    // Only the step of the jump can be short of CPU: the agent's limit from the previous tick
    // still applies. From the next tick on, BE is suppressed.
    let interfered_steps = (tide.hp_interference * 240.0).round();
    assert_eq!(
        interfered_steps, 1.0,
        "HP short of CPU for {interfered_steps} steps"
    );
    // Without an agent, CFS shares by request give BE its part for as long as it runs.
    let static_ratio = run(&trace, &jobs(4, 6_000), Policy::StaticRatio);
    assert!(
        static_ratio.hp_interference * 240.0 > 30.0,
        "{}",
        static_ratio.hp_interference
    );
}

#[test]
fn memory_pressure_evicts_be_with_an_agent_and_oom_kills_without() {
    // After two hours HP memory ramps over an hour from 4 to 14 GiB per pod: 28 of 32 GiB.
    let ramp = |t: usize| {
        if t < 120 {
            4.0
        } else {
            (4.0 + (t - 120) as f32 / 6.0).min(14.0)
        }
    };
    let trace = cluster(240, |_| 500.0, |t| ramp(t) * GIB as f32);
    let tide = run(&trace, &jobs(6, 6_000), Policy::Tide);
    assert!(
        tide.be_evictions > 0,
        "{:?}",
        (tide.be_evictions, tide.be_kills, tide.be_jobs_completed)
    );
    assert_eq!(tide.be_kills, 0, "the agent acts before the kernel has to");
    let static_ratio = run(&trace, &jobs(6, 6_000), Policy::StaticRatio);
    assert!(
        static_ratio.be_kills > 0,
        "{:?}",
        (static_ratio.be_evictions, static_ratio.be_kills)
    );
    assert_eq!(static_ratio.be_evictions, 0);
}

#[test]
fn synthetic_cluster_is_deterministic() {
    let spec = SyntheticSpec {
        nodes: 3,
        duration_secs: 6 * 3600,
        ..SyntheticSpec::default()
    };
    let (a, b) = (generate(&spec), generate(&spec));
    assert_eq!(a.nodes, b.nodes);
    assert_eq!(a.be_jobs, b.be_jobs);
    assert_eq!(a.trace.cpu, b.trace.cpu);
    let other = generate(&SyntheticSpec { seed: 7, ..spec });
    assert_ne!(a.trace.cpu, other.trace.cpu);
}

/// The generator stays calibrated to the shared real traces in what matters for overcommit
/// risk (docs/synthetic.md, measured with `tide-replay stats`): every figure between or near
/// Bitbrains' and the Google-derived series'. A change to the generator that leaves this band
/// needs a new calibration, not a wider band.
#[test]
fn synthetic_cluster_behaves_like_the_real_traces() {
    let spec = SyntheticSpec {
        duration_secs: 14 * 86_400,
        ..SyntheticSpec::default()
    };
    let c = generate(&spec);
    let s = tide_datasets::stats::trace_stats(&c.trace, &c.nodes);
    let within = |name: &str, v: f64, lo: f64, hi: f64| {
        assert!(
            (lo..=hi).contains(&v),
            "{name} {v} not in [{lo}, {hi}]: {s:?}"
        );
    };
    // Bitbrains | Google-derived: use of request 0.050 | 0.218.
    within("use of request", s.use_of_request, 0.05, 0.22);
    // p99/mean median 2.63 | 1.27, its 90th percentile 12.75 | 1.69.
    within("peak-to-mean", s.peak_to_mean, 1.3, 3.0);
    within("peak-to-mean p90", s.peak_to_mean_p90, 3.0, 13.0);
    // Burst length 8.1 | 7.8 min (at 5-minute resolution; the generator runs at 1 minute).
    within("burst minutes", s.burst_minutes, 4.0, 12.0);
    // Autocorrelation 0.62 | 0.75 at 5 min, 0.41 | 0.47 at 1 h.
    within("acf 5 min", s.acf_5m, 0.6, 0.85);
    within("acf 1 h", s.acf_1h, 0.3, 0.5);
    // Co-movement of pods on a node 0.02 | 0.08.
    within("co-movement", s.co_movement.unwrap(), -0.02, 0.1);
    // Daily amplitude 0.30 | 0.16.
    within("diurnal amplitude", s.diurnal_amplitude, 0.15, 0.32);
}

/// Golden file: the decisions of every policy on a small synthetic cluster. Regenerate on
/// purpose with `TIDE_BLESS=1 cargo test -p tide-datasets --test replay`.
#[test]
fn golden_small_synthetic_cluster() {
    let spec = SyntheticSpec {
        nodes: 4,
        duration_secs: 12 * 3600,
        seed: 11,
        ..SyntheticSpec::default()
    };
    let c = generate(&spec);
    let config = TideConfig::default();
    let setup = SimSetup {
        trace: &c.trace,
        nodes: &c.nodes,
        capacity: vec![spec.node_capacity; c.nodes.len()],
        be_jobs: &c.be_jobs,
        config,
        static_ratio: 1.5,
        koordinator_threshold: (0.6, 0.65),
        page_cache: None,
        churn: None,
        system: tide_datasets::replay::SYSTEM_USAGE,
        steps: c.trace.steps(),
    };
    let mut lines = Vec::new();
    for p in Policy::ALL {
        let o = simulate(&setup, p, &AtomicU64::new(0));
        lines.push(format!(
            "{:<14} be_core_hours={:.3} reclaim={:.4} violation={:.4} interference={:.5} evictions={} kills={} completed={} waiting={} be_request_share={:.4} lost={:.3}",
            p.name(),
            o.be_core_hours,
            o.reclaim_ratio,
            o.violation_rate,
            o.hp_interference,
            o.be_evictions,
            o.be_kills,
            o.be_jobs_completed,
            o.be_jobs_waiting,
            o.be_request_share,
            o.be_work_lost_core_hours
        ));
    }
    let got = lines.join("\n") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden/small-synthetic.txt");
    if std::env::var_os("TIDE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TIDE_BLESS=1 to create)", path.display()));
    assert_eq!(
        got, want,
        "replay decisions changed; if on purpose: TIDE_BLESS=1 cargo test -p tide-datasets --test replay"
    );
}

/// Golden file: the replay v2 decisions — real-time level admission (`tide` against
/// `tide-request`), HP churn with bind-time pre-eviction, and the cold-memory credit and reclaim
/// — on a hand-made four-node cluster whose HP memory steps up half-way. Regenerate on purpose
/// with `TIDE_BLESS=1 cargo test -p tide-datasets --test replay`.
#[test]
fn golden_real_time_pre_eviction_and_cold_memory() {
    // Four nodes of two HP pods each (4 cores / 12 GiB requested per pod); CPU per pod swings
    // 0.5–2.5 cores with a 3-hour period, memory 4 GiB for 4 h then 13 GiB per pod (81% of
    // the node with no BE: Tide drops cold page cache, the others cannot).
    let steps = 8 * 60;
    let mut c = Array2::<f32>::zeros((steps, 8));
    let mut m = Array2::<f32>::zeros((steps, 8));
    for t in 0..steps {
        for p in 0..8 {
            let phase = (t as f32 / 180.0 + p as f32 / 8.0) * std::f32::consts::TAU;
            c[[t, p]] = 1_500.0 + 1_000.0 * phase.sin();
            m[[t, p]] = if t < 240 { 4.0 } else { 13.0 } * GIB as f32;
        }
    }
    let trace = UsageTrace {
        name: "hand-made".into(),
        shape: TraceShape::Workloads,
        step_secs: 60,
        start_time: 0,
        columns: (0..8)
            .map(|i| Column {
                name: format!("hp-{i}"),
                request: ResourceAmounts::new(4_000, 12 * GIB),
            })
            .collect(),
        cpu: c,
        memory: m,
        bad_rows: BadRows::default(),
        rows_read: 0,
    };
    let nodes: Vec<Vec<usize>> = (0..4).map(|n| vec![2 * n, 2 * n + 1]).collect();
    // BE: 1 core / 2 GiB requested, using 60% of the CPU and 1.5 GiB, 40 minutes of work each.
    let be: Vec<BeJob> = (0..400)
        .map(|id| BeJob {
            id,
            arrival: id * 60,
            request: ResourceAmounts::new(1_000, 2 * GIB),
            cpu_demand: 600,
            memory_usage: 3 * GIB / 2,
            work: 600.0 * 2400.0,
            priority: i32::from(id % 5 == 0) * 100,
        })
        .collect();
    let config = TideConfig::from_yaml("estimator:\n  minHistory: 10m\n  horizon: 10m\n").unwrap();
    let setup = SimSetup {
        trace: &trace,
        nodes: &nodes,
        capacity: vec![ResourceAmounts::new(8_000, 32 * GIB); 4],
        be_jobs: &be,
        config,
        static_ratio: 1.5,
        koordinator_threshold: (0.6, 0.65),
        system: ResourceAmounts::ZERO,
        page_cache: Some(tide_datasets::pagecache::PageCacheModel::default()),
        churn: Some(tide_datasets::churn::HpChurn {
            share: 0.5,
            mean_life_secs: 2.0 * 3600.0,
            mean_gap_secs: 1200.0,
            seed: 5,
        }),
        steps,
    };
    let mut lines = Vec::new();
    for p in Policy::ALL {
        let o = simulate(&setup, p, &AtomicU64::new(0));
        assert_eq!(o.capacity_breaches, 0, "{p:?}");
        lines.push(format!(
            "{:<14} be_core_hours={:.3} interference={:.5} be_request_share={:.4} evictions={} pre_evictions={} kills={} lost={:.3} hp_arrivals={} cold_dropped_gib={:.3} refault_gib={:.3} be_mem_gib_h={:.1}",
            p.name(),
            o.be_core_hours,
            o.hp_interference,
            o.be_request_share,
            o.be_evictions,
            o.be_pre_evictions,
            o.be_kills,
            o.be_work_lost_core_hours,
            o.hp_arrivals,
            o.cold_reclaimed_gib,
            o.refault_gib,
            o.be_memory_gib_hours
        ));
    }
    let got = lines.join("\n") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden/replay-v2-hand-made.txt");
    if std::env::var_os("TIDE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TIDE_BLESS=1 to create)", path.display()));
    assert_eq!(
        got, want,
        "replay decisions changed; if on purpose: TIDE_BLESS=1 cargo test -p tide-datasets --test replay"
    );
}
