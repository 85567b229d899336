//! The agent's loop body. [`Agent::collect`] reads cgroups and procfs; [`Agent::decide`] is
//! pure given what was collected and what the API says: it observes, updates the estimators,
//! builds the NodeEstimate status, plans (the shared [`plan`]), pins cores and produces the
//! cgroup state the executor applies. The binary adds the API calls (evictions, status
//! patches) around it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tide_api::{
    Bytes, EstimateConfidence, NodeEstimateStatus, Resource, ResourceAmounts,
    ResourceEstimate as CrdEstimate, TideConfig, f64_to_u64_saturating,
};
use tide_estimator::{NodeObservation, ResourceEstimate, ResourceEstimator};

use crate::cgroup::{Discovery, Hierarchy, Layout, PodCgroup, UsageFiles};
use crate::cpuset::CpuSet;
use crate::executor::{Applied, Desired, Known, apply_known, quota_for};
use crate::observe::{NodeTotals, Observation, PodCounters, PodInfo, Previous, observe};
use crate::oom::oom_score_adj;
use crate::pinning::{PinRequest, Pinning, pin};
use crate::plan::{Action, Plan, plan};
use crate::publish::Published;
use crate::topology::Topology;

/// How BE CPU is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// Shrink the BE cpuset (whole CPUs).
    Cpuset,
    /// A CFS quota on the BE QoS cgroup (fractional CPUs; BE may run on every shared CPU).
    CfsQuota,
}

/// Facts about the node the agent runs on.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Node name.
    pub node_name: String,
    /// The kubelet's cgroup tree.
    pub layout: Layout,
    /// `/proc` (a fake tree in tests).
    pub proc_root: PathBuf,
    /// CPU topology.
    pub topology: Topology,
    /// CPUs kept for the system (never pinned, never BE).
    pub system_cpus: usize,
    /// Suppression mode.
    pub suppression: Suppression,
    /// Node allocatable (from the Node object; the machine's size until it is known).
    pub allocatable: ResourceAmounts,
}

/// The agent's state between ticks.
#[derive(Debug)]
pub struct Agent {
    /// Node facts.
    pub setup: NodeSetup,
    /// Shared configuration.
    pub config: TideConfig,
    /// CPU estimator.
    pub cpu: ResourceEstimator,
    /// Memory estimator.
    pub memory: ResourceEstimator,
    prev: Previous,
    pinning: Option<Pinning>,
    /// When the last eviction was requested (Unix seconds).
    pub last_eviction: Option<u64>,
    evicting: bool,
    /// What was last published.
    pub published: Published,
    /// Usage files kept open between ticks.
    files: UsageFiles,
    /// Pod directories as last listed.
    discovery: Discovery,
    /// What the settings files hold, as last read or written.
    known: Known,
}

/// What was collected in one tick.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Pod cgroups found.
    pub cgroups: Vec<PodCgroup>,
    /// Counters per pod UID.
    pub counters: BTreeMap<String, PodCounters>,
    /// Node totals.
    pub totals: NodeTotals,
    /// Raw usage per pod UID (throttling, PSI) for metrics.
    pub usage: BTreeMap<String, crate::cgroup::Usage>,
    /// PSI of all pods together (the kubepods cgroup), where the kernel offers it:
    /// (cpu some avg10, memory some avg10).
    pub pods_pressure: (Option<f64>, Option<f64>),
    /// Problems met (a vanished cgroup, an unreadable file); the tick goes on without them.
    pub errors: Vec<String>,
    /// Cold memory the sandbox VMs on this node report they can give back, bytes
    /// ([`crate::sandbox::fresh_cold`]; filled by the runtime, 0 without sandboxes).
    pub sandbox_cold: u64,
}

/// One tick's decisions.
#[derive(Debug, Clone)]
pub struct Tick {
    /// Usage observed.
    pub observation: Observation,
    /// The NodeEstimate status.
    pub status: NodeEstimateStatus,
    /// What the Node advertises as its batch resources ([`tide_api::batch_advertised`] of the
    /// status's admit limits, by the configured `beAdmission`).
    pub batch: ResourceAmounts,
    /// Planner actions (suppression, reclaim, evictions, kills).
    pub plan: Plan,
    /// Core pinning.
    pub pinning: Pinning,
    /// The cgroup state to apply.
    pub desired: Desired,
}

/// The estimator state a checkpoint holds.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    node: String,
    cpu: ResourceEstimator,
    memory: ResourceEstimator,
}

const CHECKPOINT_VERSION: u32 = 1;

fn crd(
    est: &ResourceEstimate,
    allocatable: u64,
    reserve: u64,
    (hp, be): (u64, u64),
    cold_credit: u64,
) -> CrdEstimate {
    CrdEstimate {
        allocatable,
        predicted_peak: f64_to_u64_saturating(est.predicted_peak),
        margin: f64_to_u64_saturating(est.margin),
        system_reserve: reserve,
        cold_credit,
        reclaimable: f64_to_u64_saturating(est.reclaimable),
        hp_usage: hp,
        be_usage: be,
    }
}

/// The batch amounts to advertise: the status's admit limits, widened in the real-time mode by
/// what the BE pods whose usage this tick measured asked for but do not use.
fn advertised(
    status: &NodeEstimateStatus,
    obs: &Observation,
    now: u64,
    config: &TideConfig,
) -> ResourceAmounts {
    let limits = status.batch_admit_limits(config);
    let sample = config.intervals.sample.as_secs();
    let (mut requested, mut used) = (ResourceAmounts::ZERO, ResourceAmounts::ZERO);
    for p in &obs.pods {
        if let Some(i) = &p.info
            && !p.high_priority()
            && tide_api::usage_measured(i.running_since, now, sample)
        {
            requested = requested.saturating_add(i.requests.batch);
            used = used.saturating_add(ResourceAmounts {
                cpu: p.cpu,
                memory: p.memory,
            });
        }
    }
    let mode = config.be_admission;
    ResourceAmounts::new(
        tide_api::batch_advertised(mode, limits.cpu.0, requested.cpu.0, used.cpu.0),
        tide_api::batch_advertised(mode, limits.memory.0, requested.memory.0, used.memory.0),
    )
}

impl Agent {
    /// A fresh agent (no history).
    pub fn new(setup: NodeSetup, config: TideConfig) -> Self {
        Self {
            cpu: ResourceEstimator::new(Resource::Cpu, &config.estimator),
            memory: ResourceEstimator::new(Resource::Memory, &config.estimator),
            setup,
            config,
            prev: Previous::default(),
            pinning: None,
            last_eviction: None,
            evicting: false,
            published: Published::default(),
            files: UsageFiles::default(),
            discovery: Discovery::default(),
            known: Known::default(),
        }
    }

    /// Reads every pod cgroup and the node totals.
    pub fn collect(&mut self) -> Result<Collected, String> {
        let layout = &self.setup.layout;
        let cgroups = layout
            .discover_with(&mut self.discovery)
            .map_err(|e| e.to_string())?;
        let mut out = Collected {
            totals: crate::procfs::read_totals(&self.setup.proc_root)?,
            ..Collected::default()
        };
        self.files.round();
        for p in &cgroups {
            match layout.usage_with(&p.path, &mut self.files) {
                Ok(u) => {
                    out.usage.insert(p.uid.clone(), u);
                    out.counters.insert(
                        p.uid.clone(),
                        PodCounters {
                            cpu_ns: u.cpu_ns,
                            working_set: u.working_set(),
                        },
                    );
                }
                // The pod went away between listing and reading: skip it this tick.
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        self.known.track(&cgroups);
        out.cgroups = cgroups;
        // Pressure (PSI) exists on cgroup v2 only: on v1 the pod level is not read at all.
        if matches!(layout.hierarchy, Hierarchy::V2(_))
            && let Ok(u) = layout.usage_with(
                &layout.qos_dir(tide_api::KubeQosClass::Guaranteed),
                &mut self.files,
            )
        {
            out.pods_pressure = (u.cpu_psi_some_avg10, u.memory_psi_some_avg10);
        }
        Ok(out)
    }

    /// Applies a tick's cgroup state, reading only the files whose value the agent does not
    /// know ([`Known`]).
    pub fn apply(&mut self, desired: &Desired) -> Applied {
        apply_known(
            &self.setup.layout,
            desired,
            &self.setup.proc_root,
            &mut self.known,
        )
    }

    /// Decides one tick at `now_ms` (Unix ms) from what was collected and the pods the API
    /// reports on this node.
    pub fn decide(
        &mut self,
        now_ms: u64,
        collected: &Collected,
        infos: &HashMap<String, PodInfo>,
        api_reachable: bool,
    ) -> Tick {
        let now = now_ms / 1000;
        let with_fallback = cgroup_fallback(infos, &collected.cgroups, &self.config);
        let infos = with_fallback.as_ref();
        let mut obs = observe(
            now_ms,
            &collected.counters,
            infos,
            collected.totals,
            &mut self.prev,
        );
        let machine_milli = u64::try_from(self.setup.topology.all_cpus().len())
            .unwrap_or(u64::MAX / 1000)
            .saturating_mul(1000);
        obs.clamp_cpu(machine_milli);
        let alloc = self.setup.allocatable;
        let reserve = self.config.reserve.amounts();
        // Sandbox cold memory is credited up to the HP memory in use: a guest may report
        // anything, but it cannot give back more than the pods hold.
        let cold = collected.sandbox_cold.min(obs.hp.memory.0);
        #[allow(clippy::cast_precision_loss)]
        let (cpu_est, mem_est) = {
            let cpu_samples = obs.samples(false);
            let mem_samples = obs.samples(true);
            let cpu_obs = NodeObservation {
                time: now,
                capacity: alloc.cpu.0 as f64,
                pods: &cpu_samples,
                system: obs.system.cpu.0 as f64,
            };
            let mem_obs = NodeObservation {
                time: now,
                capacity: alloc.memory.0 as f64,
                pods: &mem_samples,
                system: obs.system.memory.0 as f64,
            };
            if obs.rates_valid {
                self.cpu.observe(&cpu_obs);
            }
            self.memory.observe(&mem_obs);
            let s = &self.config.estimator;
            (
                self.cpu
                    .estimate(&cpu_obs, now, s, reserve.cpu.0 as f64, 0.0),
                self.memory
                    .estimate(&mem_obs, now, s, reserve.memory.0 as f64, cold as f64),
            )
        };
        // The most fundamental reason first: a young history explains a missing CPU rate too.
        let rank = |d: &tide_estimator::Degraded| match d {
            tide_estimator::Degraded::HistoryTooYoung => 0,
            tide_estimator::Degraded::NoPrediction => 1,
            tide_estimator::Degraded::StaleData => 2,
        };
        let degraded = [cpu_est.degraded, mem_est.degraded]
            .into_iter()
            .flatten()
            .min_by_key(rank)
            .map(|d| d.reason().to_owned());
        let status = NodeEstimateStatus {
            observed_time: jiff::Timestamp::from_second(i64::try_from(now).unwrap_or(0))
                .map_or_else(|_| String::new(), |t| t.to_string()),
            horizon_seconds: self.config.estimator.horizon.as_secs(),
            cpu: crd(
                &cpu_est,
                alloc.cpu.0,
                reserve.cpu.0,
                (obs.hp.cpu.0, obs.be.cpu.0),
                0,
            ),
            memory: crd(
                &mem_est,
                alloc.memory.0,
                reserve.memory.0,
                (obs.hp.memory.0, obs.be.memory.0),
                cold,
            ),
            confidence: EstimateConfidence {
                history_seconds: cpu_est.history_secs.min(mem_est.history_secs),
                recent_violation_rate: cpu_est
                    .recent_violation_rate
                    .max(mem_est.recent_violation_rate),
                degraded_reason: degraded,
            },
        };
        let batch = advertised(&status, &obs, now, &self.config);
        let snapshot = obs.snapshot(
            now,
            alloc,
            Bytes(cold),
            self.last_eviction,
            self.evicting,
            api_reachable,
        );
        let plan = plan(&snapshot, &self.config);
        self.evicting = plan.evicting;
        let be_limit = plan.actions.iter().find_map(|a| match a {
            Action::SetBeCpuLimit { limit, .. } => Some(limit.0),
            _ => None,
        });
        let requests: Vec<PinRequest> = infos
            .values()
            .filter(|i| collected.counters.contains_key(&i.uid))
            .map(|i| PinRequest {
                uid: i.uid.clone(),
                qos: i.class.qos,
                milli: i.requests.regular.cpu.0,
            })
            .collect();
        let cpuset_limit = match self.setup.suppression {
            Suppression::Cpuset => be_limit,
            Suppression::CfsQuota => None,
        };
        let pinning = pin(
            &self.setup.topology,
            &requests,
            self.pinning.as_ref(),
            self.setup.system_cpus,
            cpuset_limit,
        );
        self.pinning = Some(pinning.clone());
        let quota = match self.setup.suppression {
            Suppression::CfsQuota => be_limit.map(quota_for),
            Suppression::Cpuset => None,
        };
        let desired = desired_state(&self.setup, &collected.cgroups, infos, &pinning, quota);
        Tick {
            observation: obs,
            status,
            batch,
            plan,
            pinning,
            desired,
        }
    }

    /// Notes that an eviction was requested at `now` (Unix seconds), for the rate limit.
    pub fn evicted_at(&mut self, now: u64) {
        self.last_eviction = Some(now);
    }

    /// Writes the estimator state atomically (temporary file, fsync, rename).
    pub fn checkpoint(&self, path: &Path) -> Result<(), String> {
        let cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            node: self.setup.node_name.clone(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
        };
        let text = serde_json::to_vec(&cp).map_err(|e| format!("encoding checkpoint: {e}"))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("writing checkpoint {}: {e}", path.display()))
    }

    /// Restores the estimator state from a checkpoint. A missing file is a fresh start (`Ok
    /// (false)`); an unreadable or foreign one is an error and leaves the state untouched.
    pub fn restore(&mut self, path: &Path) -> Result<bool, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("reading checkpoint {}: {e}", path.display())),
        };
        let cp: Checkpoint = serde_json::from_slice(&bytes)
            .map_err(|e| format!("checkpoint {} is not readable: {e}", path.display()))?;
        if cp.version != CHECKPOINT_VERSION {
            return Err(format!(
                "checkpoint {} has version {}, this agent reads {CHECKPOINT_VERSION}",
                path.display(),
                cp.version
            ));
        }
        if cp.node != self.setup.node_name {
            return Err(format!(
                "checkpoint {} belongs to node {:?}, not {:?}",
                path.display(),
                cp.node,
                self.setup.node_name
            ));
        }
        // Every value must survive the next checkpoint: a number too large for its field
        // (read as infinity) would be written as `null` and make the next restart lose the
        // history (found by the `checkpoint` fuzz target).
        for est in [&cp.cpu, &cp.memory] {
            let again = serde_json::to_vec(est)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<ResourceEstimator>(&b).map_err(|e| e.to_string())
                });
            if let Err(e) = again {
                return Err(format!(
                    "checkpoint {} holds values out of range: {e}",
                    path.display()
                ));
            }
        }
        // A history kept for another horizon (the configuration changed) would keep predicting
        // over that one: that resource starts afresh.
        let mut kept = false;
        for (restored, live) in [(cp.cpu, &mut self.cpu), (cp.memory, &mut self.memory)] {
            if restored.horizon_secs() == live.horizon_secs() && restored.resource == live.resource
            {
                *live = restored;
                kept = true;
            } else {
                tracing::warn!(
                    resource = ?live.resource,
                    checkpoint_horizon_secs = restored.horizon_secs(),
                    configured_horizon_secs = live.horizon_secs(),
                    "checkpoint predicts over another horizon: its history is not used"
                );
            }
        }
        Ok(kept)
    }
}

/// The pods the API has not told about yet (the pod watch has not listed, the API server is
/// unreachable, a pod created since the last event) that sit in the kubelet's besteffort
/// level are classified from that alone — Kubernetes BestEffort, so Tide BE under the shared
/// rules, as a pod asking only batch resources is. On cgroup v1 they cannot be wider than the
/// BE set anyway (a child's `cpuset.cpus` stays within its parent's), and counting their usage
/// as HP would protect work that is being sold. Unknown pods elsewhere stay unknown: protected
/// as HP and left alone.
pub fn cgroup_fallback<'a>(
    infos: &'a HashMap<String, PodInfo>,
    cgroups: &[PodCgroup],
    config: &TideConfig,
) -> std::borrow::Cow<'a, HashMap<String, PodInfo>> {
    use tide_api::KubeQosClass as K;
    let unknown: Vec<&PodCgroup> = cgroups
        .iter()
        .filter(|c| c.kube_qos == K::BestEffort && !infos.contains_key(&c.uid))
        .collect();
    if unknown.is_empty() {
        return std::borrow::Cow::Borrowed(infos);
    }
    let facts = tide_api::PodFacts {
        kube_qos: Some(K::BestEffort),
        ..tide_api::PodFacts::default()
    };
    let class = tide_api::classify(&facts, &config.resources.classify_rules());
    let mut all = infos.clone();
    for c in unknown {
        all.insert(
            c.uid.clone(),
            PodInfo {
                uid: c.uid.clone(),
                name: format!("pod{} (not yet known to the API)", c.uid),
                class,
                requests: tide_api::PodRequests::default(),
                workload: None,
                running_since: None,
            },
        );
    }
    std::borrow::Cow::Owned(all)
}

/// The cgroup state for the pods found: CPU sets (QoS levels, pods, containers), the BE quota
/// and every known container's `oom_score_adj`. Pods the API does not know are left alone.
pub fn desired_state(
    setup: &NodeSetup,
    cgroups: &[PodCgroup],
    infos: &HashMap<String, PodInfo>,
    pinning: &Pinning,
    be_quota: Option<u64>,
) -> Desired {
    use tide_api::KubeQosClass as K;
    let layout = &setup.layout;
    let all: CpuSet = setup.topology.all_cpus();
    let mut d = Desired::default();
    // QoS levels hold the union of what their pods get.
    d.cpusets.push((layout.qos_dir(K::Guaranteed), all.clone()));
    d.cpusets.push((layout.qos_dir(K::Burstable), all.clone()));
    d.cpusets
        .push((layout.qos_dir(K::BestEffort), pinning.be.clone()));
    for pod in cgroups {
        let Some(info) = infos.get(&pod.uid) else {
            continue;
        };
        let high = info.class.qos.is_high_priority();
        let cpus = match pinning.pinned.get(&pod.uid) {
            Some(c) => c.clone(),
            None if high => pinning.shared.clone(),
            None => pinning.be.clone(),
        };
        // A BE pod the kubelet put outside the besteffort level (it has batch requests only,
        // so it normally is BestEffort) still gets the BE set.
        d.cpusets.push((pod.path.clone(), cpus.clone()));
        let adj = oom_score_adj(&info.class);
        for (_, rel) in &pod.containers {
            d.cpusets.push((rel.clone(), cpus.clone()));
            d.oom.push((rel.clone(), adj));
        }
    }
    d.quotas.push((layout.qos_dir(K::BestEffort), be_quota));
    d
}

/// The cgroup state that undoes the agent's CPU work, for when it is removed: every QoS
/// level, pod and container back on all CPUs (the kubelet's own setting without a static CPU
/// manager) and no BE quota. `oom_score_adj` values stay: the kubelet's originals are not
/// known, and the order they give still holds.
pub fn released_state(setup: &NodeSetup, cgroups: &[PodCgroup]) -> Desired {
    use tide_api::KubeQosClass as K;
    let layout = &setup.layout;
    let all: CpuSet = setup.topology.all_cpus();
    let mut d = Desired::default();
    for q in [K::Guaranteed, K::Burstable, K::BestEffort] {
        d.cpusets.push((layout.qos_dir(q), all.clone()));
    }
    for pod in cgroups {
        d.cpusets.push((pod.path.clone(), all.clone()));
        for (_, rel) in &pod.containers {
            d.cpusets.push((rel.clone(), all.clone()));
        }
    }
    d.quotas.push((layout.qos_dir(K::BestEffort), None));
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Driver, Hierarchy};
    use crate::executor::apply;
    use crate::observe::PodUsage;
    use tide_api::{ClassifyRules, KubeQosClass, MilliCores, PodFacts, PodRequests, classify};

    /// A cgroup v2 tree with the kubelet's systemd layout, files in the kernel's formats
    /// (cpu.stat and the PSI lines as read from a 6.x host's unified hierarchy).
    struct FakeV2 {
        dir: PathBuf,
    }

    impl Drop for FakeV2 {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn cgroup_files(dir: &Path, cpu_usec: u64, current: u64, inactive_file: u64) {
        tide_testkit::node::cgroup_v2(dir, cpu_usec, current, inactive_file).unwrap();
    }

    fn class(qos: &str) -> tide_api::Classification {
        let mut f = PodFacts::default();
        f.labels.insert("tide.dev/qos".into(), qos.into());
        classify(&f, &ClassifyRules::default())
    }

    fn setup(root: &Path, suppression: Suppression) -> NodeSetup {
        let topo_dir = root.join("sys-cpu");
        crate::topology::write_fake_sysfs(&topo_dir, 4, 2, 1).unwrap();
        let proc_root = root.join("proc");
        std::fs::create_dir_all(&proc_root).unwrap();
        NodeSetup {
            node_name: "n1".into(),
            layout: Layout {
                hierarchy: Hierarchy::V2(root.join("cgroup")),
                driver: Driver::Systemd,
                root: String::new(),
            },
            proc_root,
            topology: Topology::read(&topo_dir).unwrap(),
            system_cpus: 2,
            suppression,
            allocatable: ResourceAmounts::new(8_000, 32 << 30),
        }
    }

    /// A fresh fake node under the temp dir named by `tag`: the setup, the three QoS levels
    /// in a cgroup v2 tree (returned as its root), removed when the guard drops.
    fn fake_node(tag: &str, suppression: Suppression) -> (PathBuf, FakeV2, NodeSetup, PathBuf) {
        let dir = std::env::temp_dir().join(format!("tide-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let guard = FakeV2 { dir: dir.clone() };
        let s = setup(&dir, suppression);
        let cg = dir.join("cgroup");
        for q in [
            KubeQosClass::Guaranteed,
            KubeQosClass::Burstable,
            KubeQosClass::BestEffort,
        ] {
            cgroup_files(&cg.join(s.layout.qos_dir(q)), 0, 1, 0);
        }
        (dir, guard, s, cg)
    }

    fn write_proc(root: &Path, busy_ticks: u64, used_kib: u64) {
        tide_testkit::node::proc_files(&root.join("proc"), busy_ticks, 33_554_432, used_kib)
            .unwrap();
    }

    #[test]
    fn real_time_mode_advertises_the_headroom_measured_be_pods_leave() {
        // 16 cores, HP holds 8 (peak 6 + margin 1 + reserve 1), 85% level: limit 13.6 − 8.
        let status = NodeEstimateStatus {
            cpu: CrdEstimate {
                allocatable: 16_000,
                predicted_peak: 6_000,
                margin: 1_000,
                system_reserve: 1_000,
                reclaimable: 8_000,
                ..CrdEstimate::default()
            },
            memory: CrdEstimate {
                allocatable: 64 << 30,
                predicted_peak: 16 << 30,
                system_reserve: 1 << 30,
                reclaimable: 40 << 30,
                ..CrdEstimate::default()
            },
            ..NodeEstimateStatus::default()
        };
        let be = |uid: &str, since: Option<u64>, cpu: u64, mem: u64| PodUsage {
            uid: uid.into(),
            info: Some(PodInfo {
                uid: uid.into(),
                name: format!("batch/{uid}"),
                class: class("BE"),
                requests: PodRequests {
                    regular: ResourceAmounts::ZERO,
                    batch: ResourceAmounts::new(2_000, 4 << 30),
                },
                workload: None,
                running_since: since,
            }),
            cpu: MilliCores(cpu),
            memory: Bytes(mem),
        };
        let obs = Observation {
            pods: vec![
                // Running for a minute: measured, uses 500 m and 1 GiB of 2 cores and 4 GiB.
                be("old", Some(940), 500, 1 << 30),
                // Started a second ago: its usage is not measured yet, it counts at request.
                be("new", Some(999), 100, 0),
                be("pulling", None, 0, 0),
            ],
            hp: ResourceAmounts::ZERO,
            be: ResourceAmounts::new(600, 1 << 30),
            system: ResourceAmounts::ZERO,
            rates_valid: true,
        };
        let mut cfg = TideConfig::default();
        let limits = status.batch_admit_limits(&cfg);
        assert_eq!(limits.cpu.0, 5_600);
        let batch = advertised(&status, &obs, 1_000, &cfg);
        assert_eq!(batch.cpu.0, 5_600 + 2_000 - 500);
        assert_eq!(batch.memory.0, limits.memory.0 + (4 << 30) - (1 << 30));
        cfg.be_admission = tide_api::BeAdmission::Request;
        assert_eq!(advertised(&status, &obs, 1_000, &cfg), limits);
    }

    #[test]
    fn a_tick_on_a_v2_systemd_tree_suppresses_be_and_checkpoints() {
        let (dir, _guard, s, cg) = fake_node("v2", Suppression::CfsQuota);
        let hp_uid = "11111111-0000-4000-8000-000000000001";
        let be_uid = "22222222-0000-4000-8000-000000000002";
        let hp_pod = cg.join(s.layout.pod_dir(KubeQosClass::Burstable, hp_uid));
        let be_pod = cg.join(s.layout.pod_dir(KubeQosClass::BestEffort, be_uid));
        let ctr = |pod: &Path, c: char| {
            pod.join(format!("cri-containerd-{}.scope", c.to_string().repeat(64)))
        };
        cgroup_files(&hp_pod, 0, 4 << 30, 1 << 30);
        cgroup_files(&ctr(&hp_pod, 'a'), 0, 4 << 30, 1 << 30);
        cgroup_files(&be_pod, 0, 2 << 30, 0);
        cgroup_files(&ctr(&be_pod, 'b'), 0, 2 << 30, 0);
        write_proc(&dir, 0, 7 << 20);
        let infos: HashMap<String, PodInfo> = [
            (
                hp_uid.to_string(),
                PodInfo {
                    uid: hp_uid.into(),
                    name: "web/api".into(),
                    class: class("LS"),
                    requests: PodRequests {
                        regular: ResourceAmounts::new(4_000, 8 << 30),
                        batch: ResourceAmounts::ZERO,
                    },
                    workload: None,
                    running_since: None,
                },
            ),
            (
                be_uid.to_string(),
                PodInfo {
                    uid: be_uid.into(),
                    name: "batch/job".into(),
                    class: class("BE"),
                    requests: PodRequests {
                        regular: ResourceAmounts::ZERO,
                        batch: ResourceAmounts::new(2_000, 2 << 30),
                    },
                    workload: None,
                    running_since: None,
                },
            ),
        ]
        .into();
        let mut agent = Agent::new(s, TideConfig::default());
        let c = agent.collect().unwrap();
        assert_eq!(c.cgroups.len(), 2);
        assert_eq!(c.counters[hp_uid].working_set, 3 << 30);
        let t1 = agent.decide(1_000_000, &c, &infos, true);
        assert!(!t1.observation.rates_valid);
        // One second later HP uses 6.5 cores of 8: BE is squeezed to what is left below the
        // suppression level, as a CFS quota on the besteffort level.
        cgroup_files(&hp_pod, 6_500_000, 4 << 30, 1 << 30);
        cgroup_files(&be_pod, 1_000_000, 2 << 30, 0);
        write_proc(&dir, 800, 7 << 20);
        let c = agent.collect().unwrap();
        let t2 = agent.decide(1_001_000, &c, &infos, true);
        assert_eq!(t2.observation.hp.cpu.0, 6_500);
        assert_eq!(t2.observation.be.cpu.0, 1_000);
        let limit = t2
            .plan
            .actions
            .iter()
            .find_map(|a| match a {
                Action::SetBeCpuLimit { limit, .. } => Some(limit.0),
                _ => None,
            })
            .unwrap();
        assert!(limit < 1_000, "{limit}");
        let applied = apply(&agent.setup.layout, &t2.desired, &agent.setup.proc_root);
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        let be_qos = cg.join(agent.setup.layout.qos_dir(KubeQosClass::BestEffort));
        let cpu_max = std::fs::read_to_string(be_qos.join("cpu.max")).unwrap();
        assert_eq!(cpu_max, format!("{} 100000", quota_for(limit)));
        // Cpusets: BE off the system floor (core 0 = CPUs 0,4), HP on every CPU.
        assert_eq!(
            std::fs::read_to_string(ctr(&be_pod, 'b').join("cpuset.cpus")).unwrap(),
            "1-3,5-7"
        );
        assert_eq!(
            std::fs::read_to_string(ctr(&hp_pod, 'a').join("cpuset.cpus")).unwrap(),
            "0-7"
        );
        // The status carries the usage split and the degraded reason (history too young).
        assert_eq!(t2.status.cpu.hp_usage, 6_500);
        assert_eq!(t2.status.cpu.reclaimable, 0);
        assert_eq!(
            t2.status.confidence.degraded_reason.as_deref(),
            Some("history too young")
        );
        // Applying the same tick again writes nothing.
        let again = apply(&agent.setup.layout, &t2.desired, &agent.setup.proc_root);
        assert_eq!(again.writes, 0);

        // Checkpoint and restore keep the history.
        let cp = dir.join("estimator.json");
        agent.checkpoint(&cp).unwrap();
        let mut fresh = Agent::new(setup(&dir, Suppression::CfsQuota), TideConfig::default());
        assert!(fresh.restore(&cp).unwrap());
        assert_eq!(fresh.cpu, agent.cpu);
        assert_eq!(fresh.memory, agent.memory);
        // The CPU horizon changed since: CPU starts afresh, memory keeps its history.
        let mut longer = TideConfig::default();
        longer.estimator.cpu_horizon = std::time::Duration::from_secs(600);
        let mut moved = Agent::new(setup(&dir, Suppression::CfsQuota), longer.clone());
        assert!(moved.restore(&cp).unwrap());
        assert_eq!(moved.memory, agent.memory);
        assert_eq!(
            moved.cpu,
            ResourceEstimator::new(Resource::Cpu, &longer.estimator)
        );
        assert_eq!(moved.cpu.horizon_secs(), 600);
        assert!(!fresh.restore(&dir.join("missing.json")).unwrap());
        std::fs::write(&cp, "{not json").unwrap();
        let err = fresh.restore(&cp).unwrap_err();
        assert!(err.contains("not readable"), "{err}");
        let mut other = Agent::new(
            NodeSetup {
                node_name: "n2".into(),
                ..setup(&dir, Suppression::CfsQuota)
            },
            TideConfig::default(),
        );
        agent.checkpoint(&cp).unwrap();
        assert!(other.restore(&cp).unwrap_err().contains("belongs to node"));
    }
    #[test]
    fn before_the_api_reports_pods_besteffort_cgroups_count_and_are_set_as_be() {
        let (dir, _guard, s, cg) = fake_node("unknown", Suppression::Cpuset);
        let be_uid = "33333333-0000-4000-8000-000000000003";
        let hp_uid = "44444444-0000-4000-8000-000000000004";
        let be_pod = s.layout.pod_dir(KubeQosClass::BestEffort, be_uid);
        let hp_pod = s.layout.pod_dir(KubeQosClass::Burstable, hp_uid);
        cgroup_files(&cg.join(&be_pod), 0, 1 << 30, 0);
        cgroup_files(&cg.join(&hp_pod), 0, 1 << 30, 0);
        write_proc(&dir, 0, 7 << 20);
        let none = HashMap::new();
        let mut agent = Agent::new(s, TideConfig::default());
        let c = agent.collect().unwrap();
        agent.decide(1_000_000, &c, &none, false);
        cgroup_files(&cg.join(&be_pod), 2_000_000, 1 << 30, 0);
        cgroup_files(&cg.join(&hp_pod), 1_000_000, 1 << 30, 0);
        write_proc(&dir, 300, 7 << 20);
        let c = agent.collect().unwrap();
        let t = agent.decide(1_001_000, &c, &none, false);
        // The besteffort pod is BE (its usage is not protected as HP); the burstable one,
        // unknown too, stays HP.
        assert_eq!(t.observation.be.cpu.0, 2_000);
        assert_eq!(t.observation.hp.cpu.0, 1_000);
        let set = |rel: &str| {
            t.desired
                .cpusets
                .iter()
                .find(|(r, _)| r == rel)
                .map(|(_, c)| c)
        };
        assert_eq!(set(&be_pod), Some(&t.pinning.be));
        // The unknown HP pod is left alone.
        assert_eq!(set(&hp_pod), None);
        assert!(t.desired.oom.iter().all(|(r, _)| !r.starts_with(&hp_pod)));
    }
}
