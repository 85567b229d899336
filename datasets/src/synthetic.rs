//! The built-in synthetic cluster: seeded and deterministic. HP services whose usage is
//! diurnal and well below request, and a stream of BE jobs. The parameters are calibrated
//! against the shared real traces; docs/synthetic.md gives the figures.

use ndarray::Array2;
use tide_api::ResourceAmounts;

use crate::rng::SplitMix64;
use crate::rows::BadRows;
use crate::sim::BeJob;
use crate::trace::{Column, TraceShape, UsageTrace};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Length in seconds.
    pub duration_secs: u64,
    /// Step in seconds.
    pub step_secs: u64,
    /// Seed.
    pub seed: u64,
    /// Node allocatable.
    pub node_capacity: ResourceAmounts,
    /// Offered BE CPU load as a share of the cluster's expected idle CPU.
    pub be_load: f64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            nodes: 32,
            duration_secs: 3 * 86_400,
            step_secs: 60,
            seed: 42,
            node_capacity: ResourceAmounts::new(32_000, 128 << 30),
            be_load: 1.2,
        }
    }
}

/// A generated cluster: HP usage, the HP placement, and BE jobs.
#[derive(Debug, Clone)]
pub struct SyntheticCluster {
    /// HP services' usage (columns are services).
    pub trace: UsageTrace,
    /// Services per node (column indices).
    pub nodes: Vec<Vec<usize>>,
    /// BE jobs by arrival time.
    pub be_jobs: Vec<BeJob>,
}

/// CPU utilisation of request: log-normal, median 0.12, σ 0.8 (mean ≈ 0.17).
const CPU_UTIL_MEDIAN: f64 = 0.12;
const CPU_UTIL_SIGMA: f64 = 0.8;
/// Memory utilisation of request: log-normal, median 0.15, σ 0.7 (mean ≈ 0.19).
const MEM_UTIL_MEDIAN: f64 = 0.15;
const MEM_UTIL_SIGMA: f64 = 0.7;

/// Share of services whose bursts reach a share of their request (30–90%) instead of a
/// multiple of their usage: Bitbrains' long peak-to-mean tail (p99/mean p90 12.8).
const SPIKY_SHARE: f64 = 0.25;
/// Daily amplitude range (uniform): Bitbrains 0.30, Google-derived 0.16 (docs/synthetic.md).
const DIURNAL_AMP: (f64, f64) = (0.02, 0.35);
/// Spread of the services' peak hours around 14:00, hours: pods of a node move together
/// weakly (co-movement Bitbrains 0.02, Google-derived 0.08).
const PEAK_HOUR_SIGMA: f64 = 6.0;
/// A slow component of CPU (AR(1), stationary σ and time constant in minutes): load that
/// shifts over hours, which the traces show as an autocorrelation one hour apart of 0.41
/// (Bitbrains) to 0.47 (Google-derived).
const SLOW_SIGMA: f64 = 0.3;
const SLOW_MINUTES: f64 = 180.0;
/// Burst starts per minute and service (about one every 6 hours).
const SPIKE_RATE_PER_MIN: f64 = 0.003;
/// Burst length range, minutes (log-uniform): real bursts last 8 min at the traces' 5-minute
/// resolution.
const SPIKE_MINUTES: (f64, f64) = (3.0, 40.0);

/// Generates the cluster.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn generate(spec: &SyntheticSpec) -> SyntheticCluster {
    let mut rng = SplitMix64::new(spec.seed);
    let steps = usize::try_from(spec.duration_secs / spec.step_secs.max(1))
        .unwrap_or(0)
        .max(1);
    let cap = spec.node_capacity;

    // Services: fill each node's requests to 85–95% of allocatable.
    struct Service {
        request: ResourceAmounts,
        cpu_base: f64,
        cpu_amp: f64,
        peak_hour: f64,
        mem_base: f64,
        noise: f64,
        /// Bursts reach this share of request (spiky services), or 0: bursts multiply usage.
        spike_level: f64,
    }
    let mut services: Vec<Service> = Vec::new();
    let mut nodes: Vec<Vec<usize>> = Vec::new();
    for _ in 0..spec.nodes {
        let fill = rng.range(0.85, 0.95);
        let mut used = ResourceAmounts::ZERO;
        let mut members = Vec::new();
        loop {
            let cores = [1u64, 2, 2, 4, 4, 8][rng.below(6) as usize];
            let gib_per_core = rng.range(2.0, 6.0);
            let req = ResourceAmounts::new(
                cores * 1000,
                (cores as f64 * gib_per_core * (1u64 << 30) as f64) as u64,
            );
            let next = used.saturating_add(req);
            if next.cpu.as_f64() > cap.cpu.as_f64() * fill
                || next.memory.as_f64() > cap.memory.as_f64() * fill
            {
                break;
            }
            used = next;
            members.push(services.len());
            let spiky = rng.uniform() < SPIKY_SHARE;
            services.push(Service {
                request: req,
                cpu_base: rng.lognormal(CPU_UTIL_MEDIAN, CPU_UTIL_SIGMA).min(0.9),
                cpu_amp: rng.range(DIURNAL_AMP.0, DIURNAL_AMP.1),
                peak_hour: (14.0 + PEAK_HOUR_SIGMA * rng.normal()).rem_euclid(24.0),
                mem_base: rng.lognormal(MEM_UTIL_MEDIAN, MEM_UTIL_SIGMA).min(0.9),
                noise: rng.range(0.05, 0.25),
                spike_level: if spiky { rng.range(0.3, 0.9) } else { 0.0 },
            });
        }
        nodes.push(members);
    }

    let mut cpu = Array2::<f32>::zeros((steps, services.len()));
    let mut mem = Array2::<f32>::zeros((steps, services.len()));
    for (c, s) in services.iter().enumerate() {
        let mut ar = 0.0f64;
        let mut spike_left = 0u32;
        let mut spike = 1.0;
        let mut drift = 1.0f64;
        let mut slow = 0.0f64;
        // Per-step coefficient of the slow component (time constant SLOW_MINUTES).
        let slow_phi = (-(spec.step_secs as f64) / 60.0 / SLOW_MINUTES).exp();
        for t in 0..steps {
            let hour = (t as u64 * spec.step_secs % 86_400) as f64 / 3600.0;
            let phase = (hour - s.peak_hour) / 24.0 * std::f64::consts::TAU;
            let diurnal = 1.0 + s.cpu_amp * phase.cos();
            ar = 0.9 * ar + s.noise * rng.normal() * 0.436; // AR(1) with stationary σ = noise
            if spike_left == 0 && rng.uniform() < SPIKE_RATE_PER_MIN * spec.step_secs as f64 / 60.0
            {
                // Burst length log-uniform in minutes, at least one step.
                let minutes =
                    SPIKE_MINUTES.0 * (SPIKE_MINUTES.1 / SPIKE_MINUTES.0).powf(rng.uniform());
                spike_left = ((minutes * 60.0 / spec.step_secs as f64).round() as u32).max(1);
                spike = rng.range(1.5, 3.0);
            }
            let bursting = spike_left > 0;
            spike_left = spike_left.saturating_sub(1);
            slow = slow_phi * slow + SLOW_SIGMA * (1.0 - slow_phi * slow_phi).sqrt() * rng.normal();
            let mut u = s.cpu_base * diurnal * (1.0 + ar) * (1.0 + slow).max(0.1);
            if bursting {
                u = if s.spike_level > 0.0 {
                    u.max(s.spike_level * (1.0 + 0.5 * ar))
                } else {
                    u * spike
                };
            }
            let u = u.clamp(0.0, 1.0);
            cpu[[t, c]] = (u * s.request.cpu.as_f64()) as f32;
            drift = (drift + 0.002 * rng.normal()).clamp(0.8, 1.25);
            let m = (s.mem_base * drift * (1.0 + 0.1 * s.cpu_amp * phase.cos())).clamp(0.0, 1.0);
            mem[[t, c]] = (m * s.request.memory.as_f64()) as f32;
        }
    }

    // BE jobs: offered at `be_load` × the expected idle CPU.
    let expected_hp = services
        .iter()
        .map(|s| s.cpu_base * 1.3 * s.request.cpu.as_f64())
        .sum::<f64>();
    let idle = (spec.nodes as f64 * cap.cpu.as_f64() - expected_hp).max(0.0);
    let be_jobs = be_stream(rng.next_u64(), spec.be_load * idle, spec.duration_secs);

    let columns = services
        .iter()
        .enumerate()
        .map(|(i, s)| Column {
            name: format!("svc-{i}"),
            request: s.request,
        })
        .collect();
    SyntheticCluster {
        trace: UsageTrace {
            name: format!("synthetic(seed={})", spec.seed),
            shape: TraceShape::Workloads,
            step_secs: spec.step_secs,
            start_time: 0,
            columns,
            cpu,
            memory: mem,
            bad_rows: BadRows::default(),
            rows_read: 0,
        },
        nodes,
        be_jobs,
    }
}

/// Mean CPU the HP trace leaves idle on the given packing, in millicores.
#[allow(clippy::cast_precision_loss)]
pub fn idle_cpu_milli(trace: &UsageTrace, nodes: &[Vec<usize>], capacity: ResourceAmounts) -> f64 {
    let hp_mean: f64 =
        trace.cpu.iter().map(|v| f64::from(*v)).sum::<f64>() / trace.steps().max(1) as f64;
    (nodes.len() as f64 * capacity.cpu.as_f64() - hp_mean).max(0.0)
}

/// BE jobs for a real HP trace: the synthetic job mix, offered at `be_load` × the trace's mean
/// idle CPU on the given packing.
pub fn be_jobs_for(
    trace: &UsageTrace,
    nodes: &[Vec<usize>],
    capacity: ResourceAmounts,
    be_load: f64,
    seed: u64,
) -> Vec<BeJob> {
    be_stream(
        seed,
        be_load * idle_cpu_milli(trace, nodes, capacity),
        trace.steps() as u64 * trace.step_secs,
    )
}

/// BE CPU request mix, millicores (per-pod sizes from the Alibaba 2017 batch trace: instances
/// of 0.5–1 core, bundled a few per pod).
const BE_CPU_MIX: [u64; 6] = [500, 500, 1000, 1000, 2000, 2500];
/// Median BE pod lifetime, seconds (log-normal, σ 1, clamped to 1 min–6 h).
const BE_MEDIAN_SECS: f64 = 600.0;

/// A Poisson stream of BE jobs offering `offered_milli` millicores of CPU demand on average.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn be_stream(seed: u64, offered_milli: f64, duration_secs: u64) -> Vec<BeJob> {
    let mut rng = SplitMix64::new(seed);
    let mean_cpu = BE_CPU_MIX.iter().sum::<u64>() as f64 / BE_CPU_MIX.len() as f64;
    // Expected CPU work of one job (millicore-seconds): size × utilisation × lifetime.
    let mean_work = mean_cpu * 0.8 * BE_MEDIAN_SECS * 0.5f64.exp();
    let rate = offered_milli / mean_work; // jobs per second
    let mut jobs = Vec::new();
    if !(rate.is_finite() && rate > 0.0) {
        return jobs;
    }
    let mut t = 0.0;
    let mut id = 0;
    loop {
        t += rng.exponential(1.0 / rate);
        if t >= duration_secs as f64 {
            break;
        }
        let cpu_req = BE_CPU_MIX[rng.below(BE_CPU_MIX.len() as u64) as usize];
        let mem_req = (cpu_req as f64 / 1000.0 * rng.range(1.0, 4.0) * (1u64 << 30) as f64) as u64;
        let util = rng.range(0.6, 1.0);
        let secs = rng.lognormal(BE_MEDIAN_SECS, 1.0).clamp(60.0, 6.0 * 3600.0);
        jobs.push(BeJob {
            id,
            arrival: t as u64,
            request: ResourceAmounts::new(cpu_req, mem_req),
            cpu_demand: (cpu_req as f64 * util) as u64,
            memory_usage: (mem_req as f64 * rng.range(0.5, 0.9)) as u64,
            work: cpu_req as f64 * util * secs,
            priority: if rng.uniform() < 0.2 { 100 } else { 0 },
        });
        id += 1;
    }
    jobs
}
