//! The replay simulator: time-stepped over N nodes, HP pods from a trace, BE jobs placed by
//! the policy under test, per-node CPU contention and memory pressure.
//!
//! Each policy differs only in how it computes a node's sellable batch capacity and whether a
//! node agent protects HP pods. Placement is always the extender's own [`tide_scheduler::choose`];
//! the agent is always [`tide_agent::plan`] (Koordinator's policy runs it with Koordinator's
//! thresholds); Tide's capacity is always [`tide_estimator::ResourceEstimator`]. See
//! docs/replay.md for the model and its limits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tide_agent::{Action, BePod, NodeSnapshot};
use tide_api::{
    BeAdmission, Bytes, ClassifyRules, CpuLevels, MemoryLevels, MilliCores, PodFacts, Resource,
    ResourceAmounts, TideConfig, classify,
};
use tide_estimator::{
    EvalAccumulator, KoordinatorDefault, NodeObservation, PeakPredictor, PeakWindow, PodSample,
    ResourceEstimator,
};
use tide_scheduler::{BePodView, EstimateView, NodeView, PodView};

use crate::churn::HpChurn;
use crate::pagecache::{NodeCache, PageCacheModel};
use crate::placer::BePlacer;
use crate::trace::UsageTrace;

/// A best-effort job: one pod that runs until its CPU work is done.
#[derive(Debug, Clone, PartialEq)]
pub struct BeJob {
    /// Identity.
    pub id: u64,
    /// Arrival time, seconds from the start.
    pub arrival: u64,
    /// Batch request (`tide.dev/batch-cpu`, `tide.dev/batch-memory`).
    pub request: ResourceAmounts,
    /// CPU it would use if unthrottled, millicores.
    pub cpu_demand: u64,
    /// Memory it uses while running, bytes.
    pub memory_usage: u64,
    /// CPU work to finish, millicore-seconds.
    pub work: f64,
    /// PriorityClass value (for the victim order).
    pub priority: i32,
}

/// The policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// BE only on capacity no HP pod requested.
    NoOvercommit,
    /// Allocatable inflated by a fixed ratio; no node agent.
    StaticRatio,
    /// Koordinator's default batch formula and its agent thresholds.
    Koordinator,
    /// Tide: estimator, extender placement, node agent; BE admitted by the real-time water
    /// level (predicted HP peak + BE's measured usage).
    Tide,
    /// Tide with BE admitted by request (the operator option that honours BE requests).
    TideRequest,
}

impl Policy {
    /// All, in report order.
    pub const ALL: [Policy; 5] = [
        Policy::NoOvercommit,
        Policy::StaticRatio,
        Policy::Koordinator,
        Policy::TideRequest,
        Policy::Tide,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoOvercommit => "no-overcommit",
            Policy::StaticRatio => "static-ratio",
            Policy::Koordinator => "koordinator",
            Policy::Tide => "tide",
            Policy::TideRequest => "tide-request",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == s)
    }

    /// What the policy's knob is, for reports.
    pub fn knob_name(self) -> &'static str {
        match self {
            Policy::NoOvercommit => "-",
            Policy::StaticRatio => "allocatable ratio",
            Policy::Koordinator => "CPU reclaim threshold %",
            Policy::Tide | Policy::TideRequest => "CPU schedule level %",
        }
    }

    fn is_tide(self) -> bool {
        matches!(self, Policy::Tide | Policy::TideRequest)
    }

    fn has_agent(self) -> bool {
        matches!(
            self,
            Policy::Koordinator | Policy::Tide | Policy::TideRequest
        )
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct SimSetup<'a> {
    /// HP usage.
    pub trace: &'a UsageTrace,
    /// HP columns per node.
    pub nodes: &'a [Vec<usize>],
    /// Allocatable per node.
    pub capacity: Vec<ResourceAmounts>,
    /// BE jobs by arrival.
    pub be_jobs: &'a [BeJob],
    /// Tide's configuration (water levels, estimator settings).
    pub config: TideConfig,
    /// Overcommit ratio of the static policy.
    pub static_ratio: f64,
    /// Koordinator's reclaim thresholds (CPU, memory) as fractions of allocatable; its
    /// defaults are 0.60 and 0.65.
    pub koordinator_threshold: (f64, f64),
    /// Usage outside pods on every node.
    pub system: ResourceAmounts,
    /// HP page cache and Tide's cold-memory reclaim: `Some` puts the agent's cold-memory
    /// credit and reclaim asks in the loop (Tide only; the other policies do not reclaim cold
    /// cache); `None` leaves cold memory out.
    pub page_cache: Option<PageCacheModel>,
    /// HP pods leaving and coming back, placed by the extender with pre-eviction (`None`:
    /// HP pods stay where the packing put them).
    pub churn: Option<HpChurn>,
    /// Steps to run (at most the trace length).
    pub steps: usize,
}

/// What one policy achieved.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyOutcome {
    /// Policy name.
    pub policy: Policy,
    /// The policy's knob in this run: the static ratio, Koordinator's CPU reclaim threshold
    /// (percent), or Tide's CPU schedule water level (percent). [`Policy::knob_name`] names it.
    pub knob: f64,
    /// Tide's target violation rate in this run (`tide`, `tide-request`); `None` for the
    /// baselines.
    pub target_violation: Option<f64>,
    /// Mean CPU utilisation of allocatable (HP + BE received).
    pub cpu_utilisation: f64,
    /// Mean memory utilisation of allocatable.
    pub memory_utilisation: f64,
    /// BE CPU delivered, core-hours.
    pub be_core_hours: f64,
    /// CPU left idle by HP (allocatable − HP demand)⁺, core-hours: what a perfect oracle could sell.
    pub oracle_core_hours: f64,
    /// `be_core_hours / oracle_core_hours`.
    pub reclaim_ratio: f64,
    /// Share of decisions whose realised HP peak over the horizon exceeded the HP reservation.
    pub violation_rate: f64,
    /// Share of node-time in which HP CPU demand was not met because of BE.
    pub hp_interference: f64,
    /// Share of node-time in which BE pushed the node's CPU to 95% busy or more while HP alone
    /// was below that: HP got the CPU it asked for, but waits in the run queue behind BE
    /// (latency the CPU-share model does not see).
    pub be_saturated_time: f64,
    /// HP CPU demand not met, core-hours.
    pub hp_shortfall_core_hours: f64,
    /// Node-steps in which HP memory alone exceeded allocatable (an OOM kill would hit HP;
    /// no policy can prevent it, but a policy must not cause it).
    pub hp_memory_overflow_steps: u64,
    /// BE pods evicted by the agent.
    pub be_evictions: u64,
    /// BE pods killed by the kernel OOM killer or locally by the agent.
    pub be_kills: u64,
    /// BE jobs finished.
    pub be_jobs_completed: u64,
    /// BE jobs still waiting at the end.
    pub be_jobs_waiting: u64,
    /// CPU work of the BE jobs that finished, core-hours.
    pub be_work_done_core_hours: f64,
    /// CPU work BE had done and lost when its pods were evicted or killed (a restarted job
    /// starts over), core-hours.
    pub be_work_lost_core_hours: f64,
    /// CPU work done by BE jobs still running at the end, core-hours.
    pub be_work_in_flight_core_hours: f64,
    /// Mean BE slowdown: completion time (from first arrival, queueing and restarts included)
    /// over the job's time alone (its work at its full CPU demand).
    pub be_slowdown_mean: f64,
    /// 95th percentile of the BE slowdown.
    pub be_slowdown_p95: f64,
    /// Mean BE CPU requests bound per node, as a share of allocatable CPU: how far the policy
    /// overcommits BE requests.
    pub be_request_share: f64,
    /// Mean BE CPU received over BE CPU requests bound.
    pub be_usage_over_request: f64,
    /// Mean CPU the scheduler held for HP (the policy's reservation: requests, or predicted
    /// peak + margin + reserve), as a share of allocatable.
    pub hp_reserved_share: f64,
    /// Mean HP + system CPU demand, as a share of allocatable.
    pub hp_usage_share: f64,
    /// Mean BE memory the scheduler may place (its reclaimable memory less BE already
    /// counted, at least 0, capped by the memory schedule level), as a share of allocatable.
    pub sellable_memory_share: f64,
    /// BE memory in use, GiB-hours.
    pub be_memory_gib_hours: f64,
    /// HP cold page cache dropped by the agent's reclaim asks, GiB in all.
    pub cold_reclaimed_gib: f64,
    /// Dropped page cache read back (refaults), GiB in all.
    pub refault_gib: f64,
    /// HP pods that arrived during the run (churn) and were placed.
    pub hp_arrivals: u64,
    /// BE pods evicted at bind time to make room for an arriving HP pod (Tide's pre-eviction;
    /// also counted in `be_evictions`).
    pub be_pre_evictions: u64,
    /// Pod-steps an arriving HP pod waited because no node could take its requests.
    pub hp_pending_steps: u64,
    /// Node-steps whose accounting put more on the node than it has (CPU given out above
    /// allocatable, or memory above allocatable with BE still running). Always 0; a test
    /// invariant.
    pub capacity_breaches: u64,
    /// Cluster CPU utilisation over time (down-sampled), for plots.
    pub timeline_cpu: Vec<f32>,
    /// BE share of allocatable CPU over time (down-sampled).
    pub timeline_be_cpu: Vec<f32>,
    /// Cluster memory in use (HP + BE) over allocatable, over time (down-sampled).
    pub timeline_memory: Vec<f32>,
    /// Per node, mean CPU used (HP + BE) over allocatable, sorted ascending: the distribution
    /// of the water level across nodes.
    pub node_cpu_level: Vec<f32>,
    /// Per node, share of its time HP was interfered with, sorted ascending.
    pub node_interference: Vec<f32>,
    /// Wall time of this policy's run, seconds.
    pub elapsed_secs: f64,
}

struct Running {
    job: usize,
    remaining: f64,
    /// CPU the pod received in its last step, millicores: its measured usage.
    cpu_got: f64,
}

enum Capacity {
    Fixed,
    Koordinator(Box<dyn PeakPredictor>, Box<dyn PeakPredictor>),
    Tide(Box<ResourceEstimator>, Box<ResourceEstimator>),
}

struct NodeState {
    cache: NodeCache,
    cap: ResourceAmounts,
    hp_requests: ResourceAmounts,
    running: Vec<Running>,
    be_cpu_limit: u64,
    last_eviction: Option<u64>,
    evicting: bool,
    capacity: Capacity,
    view: NodeView,
}

/// Koordinator's defaults (slo-controller `resource-threshold`): BE CPU suppressed above 65%
/// node usage, BE evicted above 70% memory usage down to 68%; batch allocatable from the
/// usage formula (no extra water level at admission).
pub fn koordinator_config(base: &TideConfig) -> TideConfig {
    TideConfig {
        cpu: CpuLevels {
            schedule_percent: 100.0,
            suppress_percent: 65.0,
            evict_percent: 100.0,
            release_percent: 99.0,
            be_floor_milli: 0,
        },
        memory: MemoryLevels {
            schedule_percent: 100.0,
            reclaim_percent: 70.0,
            evict_percent: 70.0,
            release_percent: 68.0,
            critical_percent: 95.0,
        },
        be_admission: BeAdmission::Request,
        ..base.clone()
    }
}

fn admission_config(policy: Policy, base: &TideConfig) -> TideConfig {
    match policy {
        Policy::Tide => TideConfig {
            be_admission: BeAdmission::RealTime,
            ..base.clone()
        },
        Policy::TideRequest => TideConfig {
            be_admission: BeAdmission::Request,
            ..base.clone()
        },
        Policy::Koordinator => koordinator_config(base),
        Policy::NoOvercommit | Policy::StaticRatio => TideConfig {
            cpu: CpuLevels {
                schedule_percent: 100.0,
                ..base.cpu.clone()
            },
            memory: MemoryLevels {
                schedule_percent: 100.0,
                ..base.memory.clone()
            },
            be_admission: BeAdmission::Request,
            ..base.clone()
        },
    }
}

/// Water-filling of `cap` between demands by weight (CFS shares).
fn share(cap: f64, demands: &[(f64, f64)]) -> Vec<f64> {
    let mut got = vec![0.0; demands.len()];
    let mut left = cap;
    let mut open: Vec<usize> = (0..demands.len()).filter(|&i| demands[i].0 > 0.0).collect();
    while left > 1e-9 && !open.is_empty() {
        let w: f64 = open.iter().map(|&i| demands[i].1.max(1e-9)).sum();
        let mut next = Vec::new();
        let mut used = 0.0;
        for &i in &open {
            let offer = left * demands[i].1.max(1e-9) / w;
            let want = demands[i].0 - got[i];
            if want <= offer {
                got[i] += want;
                used += want;
            } else {
                got[i] += offer;
                used += offer;
                next.push(i);
            }
        }
        left -= used;
        if next.len() == open.len() {
            break;
        }
        open = next;
    }
    got
}

const TIMELINE_POINTS: usize = 600;
/// Node CPU busy share from which BE is counted as saturating the node.
const SATURATED: f64 = 0.95;
/// Placement attempts per step, and refusals after which the step's scheduling stops, for a
/// cluster of up to 32 nodes (larger clusters get proportionally more).
const MAX_ATTEMPTS_PER_STEP: usize = 400;
const MAX_MISSES_PER_STEP: usize = 40;

/// Runs one policy over the whole setup. `progress` is incremented once per step.
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
pub fn simulate(setup: &SimSetup<'_>, policy: Policy, progress: &AtomicU64) -> PolicyOutcome {
    let started = std::time::Instant::now();
    let trace = setup.trace;
    let step = trace.step_secs.max(1);
    let steps = setup.steps.min(trace.steps());
    let cfg = admission_config(policy, &setup.config);
    let agent_cfg = cfg.clone();
    let settings = &setup.config.estimator;
    let rules = ClassifyRules::default();
    let class_of = |priority: i32| {
        let mut f = PodFacts::default();
        f.labels.insert("tide.dev/qos".into(), "BE".into());
        f.priority = Some(priority);
        classify(&f, &rules)
    };
    let classes = [class_of(0), class_of(100)];

    let mut nodes: Vec<NodeState> = setup
        .nodes
        .iter()
        .zip(&setup.capacity)
        .map(|(members, &cap)| {
            let hp_requests: ResourceAmounts =
                members.iter().map(|&c| trace.columns[c].request).sum();
            let capacity = match policy {
                Policy::Tide | Policy::TideRequest => Capacity::Tide(
                    Box::new(ResourceEstimator::new(Resource::Cpu, settings)),
                    Box::new(ResourceEstimator::new(Resource::Memory, settings)),
                ),
                Policy::Koordinator => Capacity::Koordinator(
                    Box::new(KoordinatorDefault::new(setup.koordinator_threshold.0)),
                    Box::new(KoordinatorDefault::new(setup.koordinator_threshold.1)),
                ),
                _ => Capacity::Fixed,
            };
            let allocatable = if policy == Policy::StaticRatio {
                ResourceAmounts::new(
                    tide_api::f64_to_u64_saturating(cap.cpu.as_f64() * setup.static_ratio),
                    tide_api::f64_to_u64_saturating(cap.memory.as_f64() * setup.static_ratio),
                )
            } else {
                cap
            };
            NodeState {
                cache: NodeCache::default(),
                cap,
                hp_requests,
                running: Vec::new(),
                be_cpu_limit: 0,
                last_eviction: None,
                evicting: false,
                capacity,
                view: NodeView {
                    allocatable,
                    estimate: None,
                    be_requested: ResourceAmounts::ZERO,
                    hp_requested: hp_requests,
                },
            }
        })
        .collect();

    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut next_job = 0;
    let (mut cpu_used, mut cpu_cap, mut mem_used, mut mem_cap) = (0.0, 0.0, 0.0, 0.0);
    let (mut be_core_secs, mut oracle_core_secs, mut shortfall_secs) = (0.0, 0.0, 0.0);
    let (mut interfered, mut node_steps, mut overflow) = (0u64, 0u64, 0u64);
    let (mut evictions, mut kills, mut completed) = (0u64, 0u64, 0u64);
    let (mut work_done, mut work_lost, mut breaches) = (0.0, 0.0, 0u64);
    let (mut be_req_share, mut be_req_bound, mut be_req_used) = (0.0, 0.0, 0.0);
    let mut slowdowns: Vec<f64> = Vec::new();
    let (mut reserved_share, mut hp_share, mut saturated) = (0.0, 0.0, 0u64);
    let (mut sellable_mem, mut be_mem_secs, mut cold_dropped, mut refaulted) = (0.0, 0.0, 0.0, 0.0);
    let cache_model = setup.page_cache.filter(|_| policy.is_tide());
    // HP pods per node change with churn; arrivals are placed through the extender.
    let mut members: Vec<Vec<usize>> = setup.nodes.to_vec();
    // The node each HP column runs on, so a departure finds it without searching every node.
    let mut node_of: Vec<Option<usize>> = vec![None; trace.columns.len()];
    for (n, m) in members.iter().enumerate() {
        for &c in m {
            if let Some(slot) = node_of.get_mut(c) {
                *slot = Some(n);
            }
        }
    }
    let churn_events = setup.churn.map_or_else(Vec::new, |c| {
        c.events(trace.columns.len(), steps as u64 * step)
    });
    let mut next_event = 0;
    let mut hp_pending: VecDeque<usize> = VecDeque::new();
    let (mut hp_arrivals, mut pre_evictions, mut hp_pending_steps) = (0u64, 0u64, 0u64);
    // Per node: BE CPU-time (millicore-seconds) left idle in the step by jobs that finished
    // mid-step. A pod placed at the end of the step starts with that much done: live, the
    // scheduler fills a freed slot at once, not at the next step boundary.
    let mut carry: Vec<f64> = vec![0.0; nodes.len()];
    let mut node_level: Vec<f64> = vec![0.0; nodes.len()];
    let mut node_interfered: Vec<u64> = vec![0; nodes.len()];
    let mut timeline: Vec<(f64, f64, f64)> = Vec::with_capacity(steps);
    // Prediction quality: per node and resource, the realised HP peak over the horizon against
    // the reservation held, each resource over its own horizon (`estimator.cpuHorizon` for
    // CPU). Streamed: memory grows with the horizon, not with the run.
    let horizon = |r: Resource| {
        usize::try_from(
            setup
                .config
                .estimator
                .horizon_for(r)
                .as_secs()
                .div_ceil(step),
        )
        .unwrap_or(usize::MAX)
    };
    let mut peak_windows: Vec<[PeakWindow; 2]> = (0..nodes.len())
        .map(|_| {
            [
                PeakWindow::new(horizon(Resource::Cpu)),
                PeakWindow::new(horizon(Resource::Memory)),
            ]
        })
        .collect();
    let mut acc = EvalAccumulator::default();
    // What the filter admits on each node (`be_room`) and the best score it could give, kept
    // current as the views change: a BE pod's node is found without scoring every node.
    let mut placer = BePlacer::new(nodes.len());
    // The per-step placement bounds are per 32 nodes (12.5 attempts and 1.25 misses per node),
    // so a larger cluster is not throttled by them.
    let per = |bound: usize| bound * nodes.len().max(32) / 32;
    let (max_attempts, max_misses) = (per(MAX_ATTEMPTS_PER_STEP), per(MAX_MISSES_PER_STEP));
    let mut pods: Vec<PodSample> = Vec::new();

    for t in 0..steps {
        let now = t as u64 * step;
        while next_job < setup.be_jobs.len() && setup.be_jobs[next_job].arrival <= now {
            queue.push_back(next_job);
            next_job += 1;
        }
        // HP churn: departures free their requests; arrivals go through the extender's filter
        // and score, then bind-time pre-eviction (Tide) before they start.
        while next_event < churn_events.len() && churn_events[next_event].at <= now {
            let e = churn_events[next_event];
            next_event += 1;
            let req = trace.columns[e.column].request;
            if e.arrive {
                hp_pending.push_back(e.column);
            } else if let Some(n) = node_of.get_mut(e.column).and_then(Option::take) {
                members[n].retain(|&c| c != e.column);
                let node = &mut nodes[n];
                node.hp_requests = node.hp_requests.saturating_sub(req);
                node.view.hp_requested = node.hp_requests;
            } else {
                hp_pending.retain(|&c| c != e.column);
            }
        }
        for _ in 0..hp_pending.len() {
            let Some(c) = hp_pending.pop_front() else {
                break;
            };
            let pod = PodView {
                request: trace.columns[c].request,
                high_priority: true,
            };
            let Some(n) =
                tide_scheduler::choose(&pod, nodes.iter().map(|n| &n.view).enumerate(), &cfg, now)
            else {
                hp_pending_steps += 1;
                hp_pending.push_back(c);
                continue;
            };
            hp_arrivals += 1;
            let node = &mut nodes[n];
            if policy.is_tide() {
                let be: Vec<BePodView> = node
                    .running
                    .iter()
                    .map(|r| {
                        let job = &setup.be_jobs[r.job];
                        BePodView {
                            uid: job.id.to_string(),
                            class: classes[usize::from(job.priority > 0)],
                            request: job.request,
                            usage: ResourceAmounts::new(
                                tide_api::f64_to_u64_saturating(r.cpu_got),
                                job.memory_usage,
                            ),
                        }
                    })
                    .collect();
                let plan = tide_scheduler::plan_pre_eviction(
                    &pod,
                    &node.view,
                    &be,
                    &std::collections::HashSet::new(),
                    &cfg,
                );
                for uid in plan.victims {
                    let id: Option<u64> = uid.parse().ok();
                    if let Some(i) = node
                        .running
                        .iter()
                        .position(|r| Some(setup.be_jobs[r.job].id) == id)
                    {
                        let r = node.running.swap_remove(i);
                        work_lost += setup.be_jobs[r.job].work - r.remaining;
                        node.view.be_requested = node
                            .view
                            .be_requested
                            .saturating_sub(setup.be_jobs[r.job].request);
                        queue.push_back(r.job);
                        evictions += 1;
                        pre_evictions += 1;
                    }
                }
            }
            members[n].push(c);
            if let Some(slot) = node_of.get_mut(c) {
                *slot = Some(n);
            }
            node.hp_requests = node.hp_requests.saturating_add(pod.request);
            node.view.hp_requested = node.hp_requests;
        }

        let (mut step_used, mut step_cap, mut step_be) = (0.0, 0.0, 0.0);
        let (mut step_mem, mut step_mem_cap) = (0.0, 0.0);
        for (n, node) in nodes.iter_mut().enumerate() {
            let members = &members[n];
            let hp_cpu: f64 = members
                .iter()
                .map(|&c| f64::from(trace.cpu[[t, c]]))
                .sum::<f64>()
                + setup.system.cpu.as_f64();
            // HP memory in use, less the cold page cache the agent has dropped.
            let hp_pods_mem: f64 = members
                .iter()
                .map(|&c| f64::from(trace.memory[[t, c]]))
                .sum::<f64>();
            let (cold_free, dropped) = match &cache_model {
                Some(m) => {
                    refaulted += node.cache.step(m, hp_pods_mem, step);
                    (
                        node.cache.cold_available(m, hp_pods_mem),
                        node.cache.dropped,
                    )
                }
                None => (0.0, 0.0),
            };
            let hp_mem = hp_pods_mem - dropped + setup.system.memory.as_f64();
            let cap_cpu = node.cap.cpu.as_f64();
            let cap_mem = node.cap.memory.as_f64();

            // CPU: HP first when an agent limits BE (with the limit it set last tick); CFS
            // shares by request otherwise.
            let be_demand: f64 = node
                .running
                .iter()
                .map(|r| setup.be_jobs[r.job].cpu_demand as f64)
                .sum();
            let (hp_got, be_got) = if policy.has_agent() {
                let be = be_demand.min(node.be_cpu_limit as f64).min(cap_cpu);
                (hp_cpu.min(cap_cpu - be), be)
            } else {
                let be_weight: f64 = node
                    .running
                    .iter()
                    .map(|r| setup.be_jobs[r.job].request.cpu.as_f64())
                    .sum();
                let got = share(
                    cap_cpu,
                    &[
                        (hp_cpu, node.hp_requests.cpu.as_f64().max(1.0)),
                        (be_demand, be_weight),
                    ],
                );
                (got[0], got[1])
            };
            if hp_got + be_got > cap_cpu + 1e-6 {
                breaches += 1;
            }
            let hp_fair = hp_cpu.min(cap_cpu);
            if hp_got + 1e-6 < hp_fair {
                interfered += 1;
                node_interfered[n] += 1;
                shortfall_secs += (hp_fair - hp_got) / 1000.0 * step as f64;
            }
            node_steps += 1;
            oracle_core_secs += (cap_cpu - hp_cpu).max(0.0) / 1000.0 * step as f64;
            let be_req_cpu: f64 = node
                .running
                .iter()
                .map(|r| setup.be_jobs[r.job].request.cpu.as_f64())
                .sum();
            be_req_share += be_req_cpu / cap_cpu.max(1.0);
            be_req_bound += be_req_cpu;
            be_req_used += be_got;

            // BE progress: each job gets its demand scaled by what BE received; a job that
            // finishes mid-step uses only the work it had left (the rest of the step is idle).
            let scale = if be_demand > 0.0 {
                be_got / be_demand
            } else {
                0.0
            };
            let mut delivered = 0.0;
            // CPU each surviving job received, in `running` order.
            let mut cpu_of: Vec<u64> = Vec::with_capacity(node.running.len());
            node.running.retain_mut(|r| {
                let job = &setup.be_jobs[r.job];
                let got = job.cpu_demand as f64 * scale;
                r.cpu_got = got;
                let progress = got * step as f64;
                if progress >= r.remaining {
                    carry[n] += progress - r.remaining;
                    delivered += r.remaining;
                    work_done += job.work;
                    completed += 1;
                    let finish = now as f64 + r.remaining / got.max(1e-9);
                    let alone = job.work / (job.cpu_demand as f64).max(1.0);
                    slowdowns.push((finish - job.arrival as f64) / alone.max(1.0));
                    false
                } else {
                    delivered += progress;
                    r.remaining -= progress;
                    cpu_of.push(tide_api::f64_to_u64_saturating(got));
                    true
                }
            });
            let be_used = delivered / step as f64;
            if hp_cpu < SATURATED * cap_cpu && hp_got + be_used >= SATURATED * cap_cpu {
                saturated += 1;
            }
            be_core_secs += delivered / 1000.0;
            step_used += hp_got + be_used;
            node_level[n] += (hp_got + be_used) / cap_cpu.max(1.0);
            step_cap += cap_cpu;
            step_be += be_used;
            cpu_used += hp_got + be_used;
            cpu_cap += cap_cpu;

            // Memory: over allocatable, the kernel OOM-kills BE (largest first; HP is never
            // chosen while BE exists: oom_score_adj of BE is far above HP's).
            let mut be_mem: f64 = node
                .running
                .iter()
                .map(|r| setup.be_jobs[r.job].memory_usage as f64)
                .sum();
            while hp_mem + be_mem > cap_mem && !node.running.is_empty() {
                let (i, _) = node
                    .running
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, r)| setup.be_jobs[r.job].memory_usage)
                    .unwrap_or((0, &node.running[0]));
                let r = node.running.swap_remove(i);
                cpu_of.swap_remove(i);
                be_mem -= setup.be_jobs[r.job].memory_usage as f64;
                kills += 1;
                work_lost += setup.be_jobs[r.job].work - r.remaining;
                queue.push_back(r.job);
            }
            if hp_mem + be_mem > cap_mem && !node.running.is_empty() {
                breaches += 1;
            }
            if hp_mem > cap_mem {
                overflow += 1;
            }
            mem_used += (hp_mem + be_mem).min(cap_mem);
            step_mem += (hp_mem + be_mem).min(cap_mem);
            step_mem_cap += cap_mem;
            be_mem_secs += be_mem * step as f64;
            mem_cap += cap_mem;

            // Node agent.
            if policy.has_agent() {
                let snapshot = NodeSnapshot {
                    now,
                    allocatable: node.cap,
                    hp_usage: ResourceAmounts::new(
                        tide_api::f64_to_u64_saturating(hp_cpu - setup.system.cpu.as_f64()),
                        tide_api::f64_to_u64_saturating(hp_mem - setup.system.memory.as_f64()),
                    ),
                    system_usage: setup.system,
                    be_pods: node
                        .running
                        .iter()
                        .zip(&cpu_of)
                        .map(|(r, &cpu)| {
                            let job = &setup.be_jobs[r.job];
                            BePod {
                                uid: job.id.to_string(),
                                class: classes[usize::from(job.priority > 0)],
                                request: job.request,
                                usage: ResourceAmounts {
                                    cpu: MilliCores(cpu),
                                    memory: Bytes(job.memory_usage),
                                },
                            }
                        })
                        .collect(),
                    cold_memory: Bytes(tide_api::f64_to_u64_saturating(cold_free)),
                    last_eviction: node.last_eviction,
                    evicting: node.evicting,
                    api_reachable: true,
                };
                let plan = tide_agent::plan(&snapshot, &agent_cfg);
                node.evicting = plan.evicting;
                for action in plan.actions {
                    match action {
                        Action::SetBeCpuLimit { limit, .. } => node.be_cpu_limit = limit.0,
                        Action::EvictBe { uid, .. } | Action::KillBe { uid, .. } => {
                            let id: Option<u64> = uid.parse().ok();
                            if let Some(i) = node
                                .running
                                .iter()
                                .position(|r| Some(setup.be_jobs[r.job].id) == id)
                            {
                                let r = node.running.swap_remove(i);
                                work_lost += setup.be_jobs[r.job].work - r.remaining;
                                queue.push_back(r.job);
                                evictions += 1;
                                node.last_eviction = Some(now);
                            }
                        }
                        Action::ReclaimColdMemory { bytes } => {
                            if let Some(m) = &cache_model {
                                cold_dropped += node.cache.reclaim(m, hp_pods_mem, bytes.0 as f64);
                            }
                        }
                    }
                }
            }

            // Capacity the scheduler sees, from the policy.
            let reserved = match &mut node.capacity {
                Capacity::Fixed => node.hp_requests,
                Capacity::Koordinator(pc, pm) => {
                    let mut out = ResourceAmounts::ZERO;
                    for (r, p, sys) in [
                        (Resource::Cpu, pc, setup.system.cpu.as_f64()),
                        (Resource::Memory, pm, setup.system.memory.as_f64()),
                    ] {
                        trace.fill_pods(r, t, members, &mut pods);
                        let obs = NodeObservation {
                            time: now,
                            capacity: node.cap.get(r) as f64,
                            pods: &pods,
                            system: sys,
                        };
                        p.observe(&obs);
                        out.set(
                            r,
                            tide_api::f64_to_u64_saturating(
                                p.predict(&obs).unwrap_or(node.cap.get(r) as f64),
                            ),
                        );
                    }
                    out
                }
                Capacity::Tide(ec, em) => {
                    let mut reserved = ResourceAmounts::ZERO;
                    let mut reclaim = ResourceAmounts::ZERO;
                    for (r, e, sys) in [
                        (Resource::Cpu, ec, setup.system.cpu.as_f64()),
                        (Resource::Memory, em, setup.system.memory.as_f64()),
                    ] {
                        trace.fill_pods(r, t, members, &mut pods);
                        // The agent observes memory after its drops, and credits the cold
                        // cache still resident (reclaimable on demand).
                        let credit = if r == Resource::Memory && hp_pods_mem > 0.0 {
                            let keep = 1.0 - dropped / hp_pods_mem;
                            pods.iter_mut().for_each(|p| p.usage *= keep);
                            cold_free
                        } else {
                            0.0
                        };
                        let obs = NodeObservation {
                            time: now,
                            capacity: node.cap.get(r) as f64,
                            pods: &pods,
                            system: sys,
                        };
                        e.observe(&obs);
                        let reserve = setup.config.reserve.amounts().get(r) as f64;
                        let est = e.estimate(&obs, now, settings, reserve, credit);
                        let hold = if est.degraded.is_some() {
                            node.cap.get(r) as f64
                        } else {
                            (est.predicted_peak + est.margin + reserve - credit).max(0.0)
                        };
                        reserved.set(r, tide_api::f64_to_u64_saturating(hold));
                        reclaim.set(r, tide_api::f64_to_u64_saturating(est.reclaimable));
                    }
                    node.view.estimate = Some(EstimateView {
                        observed_at: now,
                        reclaimable: reclaim,
                        hp_reserved: reserved,
                    });
                    reserved
                }
            };
            if !matches!(node.capacity, Capacity::Tide(..)) {
                let reclaim = node.view.allocatable.saturating_sub(reserved);
                node.view.estimate = Some(EstimateView {
                    observed_at: now,
                    reclaimable: reclaim,
                    hp_reserved: reserved,
                });
            }
            // What the extender counts for the BE pods on the node: their requests, or in the
            // real-time mode their measured usage (pods bound this step count at request until
            // their usage shows up, below).
            let measured: ResourceAmounts = node
                .running
                .iter()
                .map(|r| {
                    ResourceAmounts::new(
                        tide_api::f64_to_u64_saturating(r.cpu_got),
                        setup.be_jobs[r.job].memory_usage,
                    )
                })
                .sum();
            let requested: ResourceAmounts = node
                .running
                .iter()
                .map(|r| setup.be_jobs[r.job].request)
                .sum();
            node.view.be_requested = tide_scheduler::be_counted(
                cfg.be_admission,
                requested,
                Some(measured),
                ResourceAmounts::ZERO,
            );
            placer.set_leaf(
                n,
                tide_scheduler::be_room(&node.view, &cfg, now),
                &node.view,
            );
            for (w, (cap, demand, held)) in peak_windows[n].iter_mut().zip([
                (cap_cpu, hp_cpu, reserved.cpu.as_f64()),
                (cap_mem, hp_mem, reserved.memory.as_f64()),
            ]) {
                if let Some((held, peak)) = w.push(demand, held) {
                    acc.add(cap, held, peak);
                }
            }
            reserved_share += reserved.cpu.as_f64() / cap_cpu.max(1.0);
            hp_share += hp_cpu / cap_cpu.max(1.0);
            if let Some(e) = &node.view.estimate {
                let by_level = cap_mem * cfg.memory.schedule_percent / 100.0
                    - e.hp_reserved.memory.as_f64()
                    - node.view.be_requested.memory.as_f64();
                let by_reclaim =
                    e.reclaimable.memory.as_f64() - node.view.be_requested.memory.as_f64();
                sellable_mem += by_level.min(by_reclaim).max(0.0) / cap_mem.max(1.0);
            }
        }

        // Scheduling: FIFO from the head of the queue, through the extender's own filter and
        // score. A bounded number of attempts per step keeps a long backlog cheap.
        placer.rebuild();
        let mut misses: Vec<usize> = Vec::new();
        // Requests that fit nowhere this step. Nodes only fill while pods are placed, so a
        // request at least as large in both resources fits nowhere either: it misses without
        // a scan (the answer the scan would give).
        let mut no_fit: Vec<ResourceAmounts> = Vec::new();
        let mut attempts = 0;
        while attempts < max_attempts && misses.len() < max_misses {
            let Some(j) = queue.pop_front() else { break };
            attempts += 1;
            let job = &setup.be_jobs[j];
            let covers = |small: &ResourceAmounts, big: &ResourceAmounts| {
                small.cpu <= big.cpu && small.memory <= big.memory
            };
            if no_fit.iter().any(|f| covers(f, &job.request)) {
                misses.push(j);
                continue;
            }
            let pod = PodView {
                request: job.request,
                high_priority: false,
            };
            match placer.choose(job.request, |i| tide_scheduler::score(&pod, &nodes[i].view)) {
                Some(n) => {
                    let node = &mut nodes[n];
                    node.view.be_requested = node.view.be_requested.saturating_add(job.request);
                    let room = tide_scheduler::be_room(&node.view, &cfg, now);
                    placer.update(n, room, &node.view);
                    let head = carry[n]
                        .min(job.cpu_demand as f64 * step as f64)
                        .min(job.work * 0.999);
                    carry[n] -= head;
                    be_core_secs += head / 1000.0;
                    cpu_used += head / step as f64;
                    node.running.push(Running {
                        job: j,
                        remaining: job.work - head,
                        cpu_got: 0.0,
                    });
                }
                None => {
                    no_fit.retain(|f| !covers(&job.request, f));
                    no_fit.push(job.request);
                    misses.push(j);
                }
            }
        }
        for j in misses.into_iter().rev() {
            queue.push_front(j);
        }
        carry.iter_mut().for_each(|c| *c = 0.0);
        timeline.push((
            step_used / step_cap.max(1.0),
            step_be / step_cap.max(1.0),
            step_mem / step_mem_cap.max(1.0),
        ));
        progress.fetch_add(1, Ordering::Relaxed);
    }

    let chunk = timeline.len().div_ceil(TIMELINE_POINTS).max(1);
    let down = |f: fn(&(f64, f64, f64)) -> f64| -> Vec<f32> {
        #[allow(clippy::cast_possible_truncation)]
        timeline
            .chunks(chunk)
            .map(|c| (c.iter().map(f).sum::<f64>() / c.len() as f64) as f32)
            .collect()
    };
    slowdowns.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation)]
    let per_node = |v: Vec<f64>| -> Vec<f32> {
        let mut v: Vec<f32> = v
            .into_iter()
            .map(|x| (x / steps.max(1) as f64) as f32)
            .collect();
        v.sort_by(f32::total_cmp);
        v
    };
    let in_flight: f64 = nodes
        .iter()
        .flat_map(|n| &n.running)
        .map(|r| setup.be_jobs[r.job].work - r.remaining)
        .sum();
    PolicyOutcome {
        policy,
        knob: match policy {
            Policy::NoOvercommit => 1.0,
            Policy::StaticRatio => setup.static_ratio,
            Policy::Koordinator => setup.koordinator_threshold.0 * 100.0,
            Policy::Tide | Policy::TideRequest => setup.config.cpu.schedule_percent,
        },
        target_violation: matches!(policy, Policy::Tide | Policy::TideRequest)
            .then_some(setup.config.estimator.target_violation_rate),
        cpu_utilisation: cpu_used / cpu_cap.max(1.0),
        memory_utilisation: mem_used / mem_cap.max(1.0),
        be_core_hours: be_core_secs / 3600.0,
        oracle_core_hours: oracle_core_secs / 3600.0,
        reclaim_ratio: if oracle_core_secs > 0.0 {
            be_core_secs / oracle_core_secs
        } else {
            0.0
        },
        violation_rate: acc.summary().violation_rate,
        hp_interference: interfered as f64 / node_steps.max(1) as f64,
        hp_shortfall_core_hours: shortfall_secs / 3600.0,
        be_saturated_time: saturated as f64 / node_steps.max(1) as f64,
        hp_memory_overflow_steps: overflow,
        be_evictions: evictions,
        be_kills: kills,
        be_jobs_completed: completed,
        be_jobs_waiting: queue.len() as u64,
        be_work_done_core_hours: work_done / 3.6e6,
        be_work_lost_core_hours: work_lost / 3.6e6,
        be_work_in_flight_core_hours: in_flight / 3.6e6,
        be_slowdown_mean: if slowdowns.is_empty() {
            0.0
        } else {
            slowdowns.iter().sum::<f64>() / slowdowns.len() as f64
        },
        be_slowdown_p95: slowdowns
            .get((slowdowns.len() * 95 / 100).min(slowdowns.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0),
        be_request_share: be_req_share / node_steps.max(1) as f64,
        be_usage_over_request: if be_req_bound > 0.0 {
            be_req_used / be_req_bound
        } else {
            0.0
        },
        capacity_breaches: breaches,
        hp_reserved_share: reserved_share / node_steps.max(1) as f64,
        hp_usage_share: hp_share / node_steps.max(1) as f64,
        sellable_memory_share: sellable_mem / node_steps.max(1) as f64,
        be_memory_gib_hours: be_mem_secs / 3600.0 / f64::from(1u32 << 30),
        cold_reclaimed_gib: cold_dropped / f64::from(1u32 << 30),
        refault_gib: refaulted / f64::from(1u32 << 30),
        hp_arrivals,
        be_pre_evictions: pre_evictions,
        hp_pending_steps,
        timeline_cpu: down(|x| x.0),
        timeline_be_cpu: down(|x| x.1),
        timeline_memory: down(|x| x.2),
        node_cpu_level: per_node(node_level),
        node_interference: per_node(node_interfered.iter().map(|&x| x as f64).collect()),
        elapsed_secs: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::churn::HpChurn;
    use crate::rows::BadRows;
    use crate::trace::{Column, TraceShape};
    use ndarray::Array2;

    /// One node of 10 cores and 64 GiB with one HP pod requesting 8 cores that uses a steady
    /// `hp_cpu` millicores, for `hours`; BE jobs of 1 core request that use `be_use` of it.
    fn one_node(hp_cpu: f32, hours: u64, be_use: f64, jobs: usize) -> (UsageTrace, Vec<BeJob>) {
        let steps = usize::try_from(hours * 60).unwrap();
        let trace = UsageTrace {
            name: "hand-made".into(),
            shape: TraceShape::Workloads,
            step_secs: 60,
            start_time: 0,
            columns: vec![Column {
                name: "hp".into(),
                request: ResourceAmounts::new(8_000, 32 << 30),
            }],
            cpu: Array2::from_elem((steps, 1), hp_cpu),
            memory: Array2::from_elem((steps, 1), (8u64 << 30) as f32),
            bad_rows: BadRows::default(),
            rows_read: 0,
        };
        let be = (0..jobs)
            .map(|i| BeJob {
                id: i as u64,
                arrival: 0,
                request: ResourceAmounts::new(1_000, 1 << 30),
                cpu_demand: (1_000.0 * be_use) as u64,
                memory_usage: 1 << 29,
                work: 1e12,
                priority: 0,
            })
            .collect();
        (trace, be)
    }

    fn setup<'a>(
        trace: &'a UsageTrace,
        nodes: &'a [Vec<usize>],
        jobs: &'a [BeJob],
        cap: ResourceAmounts,
    ) -> SimSetup<'a> {
        SimSetup {
            trace,
            nodes,
            capacity: vec![cap; nodes.len()],
            be_jobs: jobs,
            config: TideConfig::default(),
            static_ratio: 1.5,
            koordinator_threshold: (0.6, 0.65),
            system: ResourceAmounts::new(200, 1 << 30),
            page_cache: None,
            churn: None,
            steps: trace.steps(),
        }
    }

    fn running_at_end(o: &PolicyOutcome) -> f64 {
        // Jobs never finish here: the ones running at the end are all that was placed and kept.
        o.be_work_in_flight_core_hours
    }

    #[test]
    fn real_time_level_admits_be_by_measured_usage() {
        // HP uses 1 core of its 8; BE pods use half of their 1-core request. By request, Tide
        // admits BE requests up to the 85% schedule level above the predicted HP peak (about
        // 1.2 cores + 0.5 reserve): 6 pods using 3 cores. By the real-time level it counts what
        // the pods use, so twice as many fit, and the agent still keeps HP whole.
        let (trace, jobs) = one_node(800.0, 4, 0.5, 40);
        let nodes = vec![vec![0]];
        let s = setup(
            &trace,
            &nodes,
            &jobs,
            ResourceAmounts::new(10_000, 64 << 30),
        );
        let by_request = simulate(&s, Policy::TideRequest, &AtomicU64::new(0));
        let real_time = simulate(&s, Policy::Tide, &AtomicU64::new(0));
        assert!(by_request.be_request_share > 0.5 && by_request.be_request_share <= 0.7);
        assert!(
            real_time.be_request_share >= 1.6 * by_request.be_request_share,
            "{} vs {}",
            real_time.be_request_share,
            by_request.be_request_share
        );
        assert!(real_time.be_core_hours > 1.6 * by_request.be_core_hours);
        assert!(running_at_end(&real_time) > 0.0);
        assert_eq!(real_time.hp_interference, 0.0);
        assert_eq!(real_time.be_evictions + real_time.be_kills, 0);
        // The BE CPU bound by usage stays under the schedule level: ~85% of 10 cores minus the
        // HP reservation, in usage terms (0.5 per pod).
        assert!(real_time.be_usage_over_request <= 0.5 + 1e-9);
    }

    #[test]
    fn accounting_never_exceeds_capacity_and_conserves_work() {
        let spec = crate::SyntheticSpec {
            nodes: 4,
            duration_secs: 12 * 3600,
            be_load: 2.0,
            ..crate::SyntheticSpec::default()
        };
        let c = crate::generate(&spec);
        let mut s = setup(&c.trace, &c.nodes, &c.be_jobs, spec.node_capacity);
        s.churn = Some(HpChurn::default());
        s.page_cache = Some(PageCacheModel::default());
        for policy in Policy::ALL {
            let o = simulate(&s, policy, &AtomicU64::new(0));
            assert_eq!(o.capacity_breaches, 0, "{policy:?}");
            // Every core-hour BE received is in a finished job, lost to an eviction or kill,
            // or in a job still running.
            let accounted = o.be_work_done_core_hours
                + o.be_work_lost_core_hours
                + o.be_work_in_flight_core_hours;
            assert!(
                (o.be_core_hours - accounted).abs() <= 1e-6 * o.be_core_hours.max(1.0),
                "{policy:?}: delivered {} vs accounted {accounted}",
                o.be_core_hours
            );
            assert!(o.reclaim_ratio <= 1.0 + 1e-9, "{policy:?}");
            assert!(
                o.be_slowdown_mean >= 1.0 || o.be_jobs_completed == 0,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn cold_memory_credit_sells_memory_and_reclaim_pays_for_it() {
        // Memory-bound: HP holds 44 GiB of 64, BE pods need 4 GiB each and little CPU. Without
        // cold memory, Tide's memory schedule level (80%) over the held HP peak leaves room for
        // no pod; with 15% of HP memory cold (6.6 GiB), the credit lowers what HP holds, pods
        // fit, and when HP grows the agent drops cold cache before it would evict.
        let (mut trace, mut jobs) = one_node(800.0, 6, 0.2, 20);
        trace.memory.fill((44u64 << 30) as f32);
        // After three hours HP memory grows by 4 GiB: the node passes its reclaim level (80%).
        for t in 180..trace.steps() {
            trace.memory[[t, 0]] = (48u64 << 30) as f32;
        }
        for j in &mut jobs {
            j.request = ResourceAmounts::new(500, 4 << 30);
            j.memory_usage = 4 << 30;
        }
        let nodes = vec![vec![0]];
        let mut s = setup(
            &trace,
            &nodes,
            &jobs,
            ResourceAmounts::new(10_000, 64 << 30),
        );
        let off = simulate(&s, Policy::Tide, &AtomicU64::new(0));
        s.page_cache = Some(PageCacheModel::default());
        let on = simulate(&s, Policy::Tide, &AtomicU64::new(0));
        assert!(
            on.be_memory_gib_hours > 1.5 * off.be_memory_gib_hours,
            "{} vs {}",
            on.be_memory_gib_hours,
            off.be_memory_gib_hours
        );
        assert!(on.cold_reclaimed_gib > 0.0, "the agent drops cold cache");
        assert!(on.refault_gib > 0.0, "and some of it comes back");
        assert_eq!(on.capacity_breaches, 0);
        assert_eq!(on.be_kills, 0);
        // Only Tide reclaims cold page cache.
        let koord = simulate(&s, Policy::Koordinator, &AtomicU64::new(0));
        assert_eq!(koord.cold_reclaimed_gib, 0.0);
    }

    #[test]
    fn arriving_hp_pod_pre_evicts_be_through_the_extender() {
        // Two nodes of 10 cores and 24 GiB; HP pod 0 (8-core request, 1 core used) on node 0,
        // HP pod 1 (4 cores and 8 GiB requested) arrives with churn. BE pods of 3 GiB fill
        // node 1's memory up to the schedule level; when pod 1 is bound there, its 8 GiB would
        // take the node past the 90% memory eviction level, so Tide evicts just enough BE
        // first (pre-eviction). (CPU alone would not: suppression takes BE's CPU back.)
        // Static-ratio has no pre-eviction.
        let steps = 8 * 60;
        let mut trace = one_node(1_000.0, 8, 0.9, 30).0;
        trace.columns[0].request = ResourceAmounts::new(8_000, 16 << 30);
        trace.columns.push(Column {
            name: "hp-2".into(),
            request: ResourceAmounts::new(4_000, 8 << 30),
        });
        trace.cpu = Array2::from_shape_fn((steps, 2), |(_, c)| [1_000.0, 3_500.0][c]);
        trace.memory = Array2::from_elem((steps, 2), (4u64 << 30) as f32);
        let mut jobs = one_node(1_000.0, 8, 0.9, 30).1;
        for j in &mut jobs {
            j.request.memory = Bytes(3 << 30);
            j.memory_usage = 3 << 30;
        }
        let nodes = vec![vec![0], vec![1]];
        let mut s = setup(
            &trace,
            &nodes,
            &jobs,
            ResourceAmounts::new(10_000, 24 << 30),
        );
        s.churn = Some(HpChurn {
            share: 1.0,
            mean_life_secs: 3.0 * 3600.0,
            mean_gap_secs: 600.0,
            seed: 3,
        });
        let tide = simulate(&s, Policy::Tide, &AtomicU64::new(0));
        assert!(tide.hp_arrivals > 0);
        assert!(tide.be_pre_evictions > 0, "{:?}", tide.be_pre_evictions);
        assert!(tide.be_evictions >= tide.be_pre_evictions);
        assert!(tide.be_work_lost_core_hours > 0.0);
        assert_eq!(tide.capacity_breaches, 0);
        let st = simulate(&s, Policy::StaticRatio, &AtomicU64::new(0));
        assert_eq!(st.be_pre_evictions, 0);
        assert_eq!(
            st.hp_arrivals, tide.hp_arrivals,
            "same events for every policy"
        );
    }

    #[test]
    fn evicted_work_is_counted_as_lost() {
        // HP jumps from 1 to 9.5 cores of 10 after two hours: the agent evicts BE under CPU
        // pressure (HP alone above 95%), and what the evicted pods had done is lost.
        let (mut trace, jobs) = one_node(1_000.0, 4, 0.9, 12);
        for t in 120..trace.steps() {
            trace.cpu[[t, 0]] = 9_500.0;
        }
        let nodes = vec![vec![0]];
        let s = setup(
            &trace,
            &nodes,
            &jobs,
            ResourceAmounts::new(10_000, 64 << 30),
        );
        let o = simulate(&s, Policy::Tide, &AtomicU64::new(0));
        assert!(o.be_evictions > 0);
        assert!(o.be_work_lost_core_hours > 0.0);
        let accounted =
            o.be_work_done_core_hours + o.be_work_lost_core_hours + o.be_work_in_flight_core_hours;
        assert!((o.be_core_hours - accounted).abs() < 1e-6);
    }

    #[test]
    fn cfs_share_water_fills() {
        let got = share(10.0, &[(8.0, 1.0), (8.0, 1.0)]);
        assert_eq!(got, vec![5.0, 5.0]);
        let got = share(10.0, &[(2.0, 1.0), (20.0, 1.0)]);
        assert_eq!(got, vec![2.0, 8.0]);
        let got = share(10.0, &[(20.0, 3.0), (20.0, 1.0)]);
        assert!((got[0] - 7.5).abs() < 1e-9 && (got[1] - 2.5).abs() < 1e-9);
        assert_eq!(share(10.0, &[(0.0, 1.0), (3.0, 1.0)]), vec![0.0, 3.0]);
    }
}
