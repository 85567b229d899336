//! One collection tick as a pure function: cgroup counters of the pods found on the node, the
//! pods the API says run here, and node totals → per-pod usage (CPU rate from counter deltas,
//! memory working set), the HP/BE split, system usage, the estimator's samples and the
//! planner's [`NodeSnapshot`]. I/O lives in the caller; this is what the tests pin down.

use std::collections::{BTreeMap, HashMap};

use tide_api::{Bytes, Classification, MilliCores, PodRequests, ResourceAmounts};
use tide_estimator::PodSample;

use crate::plan::{BePod, NodeSnapshot};

/// What the API says about a pod on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// UID.
    pub uid: String,
    /// `namespace/name`.
    pub name: String,
    /// Classification.
    pub class: Classification,
    /// Requests.
    pub requests: PodRequests,
    /// Owner identity (for history shared by siblings), if any.
    pub workload: Option<u64>,
    /// Since when all its containers run (Unix seconds; [`tide_api::pod_running_since`]).
    pub running_since: Option<u64>,
}

/// Cumulative counters of one pod cgroup at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PodCounters {
    /// Cumulative CPU time, ns.
    pub cpu_ns: u64,
    /// Working set, bytes.
    pub working_set: u64,
}

/// Node-wide totals (from procfs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeTotals {
    /// Cumulative busy CPU time of the whole node, ns.
    pub cpu_busy_ns: u64,
    /// Memory in use (MemTotal − MemAvailable), bytes.
    pub memory_used: u64,
}

/// The previous tick's counters, to turn cumulative CPU time into a rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Previous {
    /// Time of the previous tick, ms.
    pub at_ms: u64,
    /// Node busy ns then.
    pub node_cpu_ns: u64,
    /// Per-pod CPU ns then.
    pub pod_cpu_ns: HashMap<String, u64>,
}

/// Usage of one pod this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    /// UID.
    pub uid: String,
    /// Known to the API (else: not classified, counted as HP to stay on the safe side).
    pub info: Option<PodInfo>,
    /// CPU, millicores (0 on the first tick).
    pub cpu: MilliCores,
    /// Working set.
    pub memory: Bytes,
}

impl PodUsage {
    /// HP unless the API says BE: an unknown pod is protected, not sold.
    pub fn high_priority(&self) -> bool {
        self.info
            .as_ref()
            .is_none_or(|i| i.class.qos.is_high_priority())
    }
}

/// Everything one tick produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Per pod.
    pub pods: Vec<PodUsage>,
    /// HP usage (sum over HP pods).
    pub hp: ResourceAmounts,
    /// BE usage.
    pub be: ResourceAmounts,
    /// Usage outside pods (node total − pods), never negative.
    pub system: ResourceAmounts,
    /// Whether CPU rates are real (false on the first tick: no previous counters).
    pub rates_valid: bool,
}

fn rate_milli(delta_ns: u64, dt_ms: u64) -> u64 {
    if dt_ms == 0 {
        return 0;
    }
    // ns per ms of wall time = millicores × 1000.
    delta_ns / dt_ms / 1_000
}

/// Folds one tick. `now_ms` is wall time in ms; `prev` is updated for the next tick.
pub fn observe(
    now_ms: u64,
    counters: &BTreeMap<String, PodCounters>,
    infos: &HashMap<String, PodInfo>,
    totals: NodeTotals,
    prev: &mut Previous,
) -> Observation {
    let dt = now_ms.saturating_sub(prev.at_ms);
    let rates_valid = prev.at_ms > 0 && dt > 0;
    let mut pods = Vec::with_capacity(counters.len());
    let (mut hp, mut be) = (ResourceAmounts::ZERO, ResourceAmounts::ZERO);
    let mut pods_cpu = 0u64;
    let mut pods_mem = 0u64;
    for (uid, c) in counters {
        let cpu = match (rates_valid, prev.pod_cpu_ns.get(uid)) {
            (true, Some(&p)) => rate_milli(c.cpu_ns.saturating_sub(p), dt),
            _ => 0,
        };
        let usage = PodUsage {
            uid: uid.clone(),
            info: infos.get(uid).cloned(),
            cpu: MilliCores(cpu),
            memory: Bytes(c.working_set),
        };
        let amounts = ResourceAmounts::new(cpu, c.working_set);
        if usage.high_priority() {
            hp = hp.saturating_add(amounts);
        } else {
            be = be.saturating_add(amounts);
        }
        pods_cpu = pods_cpu.saturating_add(cpu);
        pods_mem = pods_mem.saturating_add(c.working_set);
        pods.push(usage);
    }
    let node_cpu = if rates_valid {
        rate_milli(totals.cpu_busy_ns.saturating_sub(prev.node_cpu_ns), dt)
    } else {
        0
    };
    let system = ResourceAmounts::new(
        node_cpu.saturating_sub(pods_cpu),
        totals.memory_used.saturating_sub(pods_mem),
    );
    prev.at_ms = now_ms;
    prev.node_cpu_ns = totals.cpu_busy_ns;
    prev.pod_cpu_ns = counters
        .iter()
        .map(|(u, c)| (u.clone(), c.cpu_ns))
        .collect();
    Observation {
        pods,
        hp,
        be,
        system,
        rates_valid,
    }
}

impl Observation {
    /// Scales every CPU rate down so that pods plus system fit in `capacity_milli` (the
    /// machine's CPUs): counters read a few milliseconds apart over windows of slightly
    /// different length can add up to more than the machine has, which would read as HP
    /// pressure that is not there. A physically possible observation is unchanged.
    pub fn clamp_cpu(&mut self, capacity_milli: u64) {
        let total = self
            .hp
            .cpu
            .0
            .saturating_add(self.be.cpu.0)
            .saturating_add(self.system.cpu.0);
        if total <= capacity_milli || total == 0 {
            return;
        }
        let scale = |v: u64| {
            u64::try_from(u128::from(v) * u128::from(capacity_milli) / u128::from(total))
                .unwrap_or(v)
        };
        for p in &mut self.pods {
            p.cpu = MilliCores(scale(p.cpu.0));
        }
        self.hp.cpu = MilliCores(scale(self.hp.cpu.0));
        self.be.cpu = MilliCores(scale(self.be.cpu.0));
        self.system.cpu = MilliCores(scale(self.system.cpu.0));
    }
}

/// A stable series id for a pod UID (FNV-1a).
pub fn series_id(uid: &str) -> u64 {
    uid.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Observation {
    /// The estimator's HP samples for one resource (`memory`: false = CPU).
    #[allow(clippy::cast_precision_loss)]
    pub fn samples(&self, memory: bool) -> Vec<PodSample> {
        self.pods
            .iter()
            .filter(|p| p.high_priority())
            .map(|p| {
                let req = p
                    .info
                    .as_ref()
                    .map_or(ResourceAmounts::ZERO, |i| i.requests.regular);
                let (usage, request) = if memory {
                    (p.memory.0 as f64, req.memory.0 as f64)
                } else {
                    (p.cpu.0 as f64, req.cpu.0 as f64)
                };
                PodSample {
                    id: series_id(&p.uid),
                    workload: p.info.as_ref().and_then(|i| i.workload),
                    usage,
                    request,
                }
            })
            .collect()
    }

    /// The planner's view of the node.
    pub fn snapshot(
        &self,
        now: u64,
        allocatable: ResourceAmounts,
        cold_memory: Bytes,
        last_eviction: Option<u64>,
        evicting: bool,
        api_reachable: bool,
    ) -> NodeSnapshot {
        NodeSnapshot {
            now,
            allocatable,
            hp_usage: self.hp,
            system_usage: self.system,
            be_pods: self
                .pods
                .iter()
                .filter(|p| !p.high_priority())
                .filter_map(|p| {
                    let i = p.info.as_ref()?;
                    Some(BePod {
                        uid: p.uid.clone(),
                        class: i.class,
                        request: i.requests.batch,
                        usage: ResourceAmounts::new(p.cpu.0, p.memory.0),
                    })
                })
                .collect(),
            cold_memory,
            last_eviction,
            evicting,
            api_reachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide_api::{ClassifyRules, PodFacts, classify};

    fn info(uid: &str, qos: &str) -> PodInfo {
        let mut f = PodFacts::default();
        f.labels.insert("tide.dev/qos".into(), qos.into());
        PodInfo {
            uid: uid.into(),
            name: format!("ns/{uid}"),
            class: classify(&f, &ClassifyRules::default()),
            requests: PodRequests {
                regular: ResourceAmounts::new(1_000, 1 << 30),
                batch: ResourceAmounts::new(500, 1 << 29),
            },
            workload: None,
            running_since: None,
        }
    }

    #[test]
    fn rates_from_deltas_and_the_hp_be_system_split() {
        let infos: HashMap<String, PodInfo> = [
            ("hp".to_string(), info("hp", "LS")),
            ("be".to_string(), info("be", "BE")),
        ]
        .into();
        let mut prev = Previous::default();
        let c = |cpu_ns, ws| PodCounters {
            cpu_ns,
            working_set: ws,
        };
        let first: BTreeMap<String, PodCounters> = [
            ("hp".to_string(), c(1_000_000_000, 100)),
            ("be".to_string(), c(0, 50)),
            ("ghost".to_string(), c(0, 10)),
        ]
        .into();
        let o = observe(
            1_000,
            &first,
            &infos,
            NodeTotals {
                cpu_busy_ns: 10_000_000_000,
                memory_used: 1_000,
            },
            &mut prev,
        );
        assert!(!o.rates_valid);
        assert_eq!(o.hp.cpu.0, 0);
        // Unknown pods count as HP (never sold).
        assert_eq!(o.hp.memory.0, 110);
        assert_eq!(o.system.memory.0, 1_000 - 160);
        // One second later: hp used 1.5 s of CPU (1,500 m), be 0.25 s (250 m), node 2.0 s.
        let second: BTreeMap<String, PodCounters> = [
            ("hp".to_string(), c(2_500_000_000, 120)),
            ("be".to_string(), c(250_000_000, 60)),
            ("ghost".to_string(), c(0, 10)),
        ]
        .into();
        let o = observe(
            2_000,
            &second,
            &infos,
            NodeTotals {
                cpu_busy_ns: 12_000_000_000,
                memory_used: 1_000,
            },
            &mut prev,
        );
        assert!(o.rates_valid);
        assert_eq!(o.hp.cpu.0, 1_500);
        assert_eq!(o.be.cpu.0, 250);
        assert_eq!(o.system.cpu.0, 250);
        let snap = o.snapshot(
            2,
            ResourceAmounts::new(4_000, 4_000),
            Bytes(0),
            None,
            false,
            true,
        );
        assert_eq!(snap.be_pods.len(), 1);
        assert_eq!(snap.be_pods[0].usage, ResourceAmounts::new(250, 60));
        assert_eq!(snap.be_pods[0].request, ResourceAmounts::new(500, 1 << 29));
        let samples = o.samples(false);
        assert_eq!(samples.len(), 2); // hp and the unknown pod
        assert!(
            samples
                .iter()
                .any(|s| (s.usage - 1_500.0).abs() < 1e-9 && (s.request - 1_000.0).abs() < 1e-9)
        );
    }

    #[test]
    fn counters_that_go_backwards_do_not_underflow() {
        let infos = HashMap::new();
        let mut prev = Previous::default();
        let c: BTreeMap<String, PodCounters> = [(
            "p".to_string(),
            PodCounters {
                cpu_ns: 5_000_000_000,
                working_set: 1,
            },
        )]
        .into();
        observe(1_000, &c, &infos, NodeTotals::default(), &mut prev);
        // The pod restarted: its counter reset.
        let c: BTreeMap<String, PodCounters> = [(
            "p".to_string(),
            PodCounters {
                cpu_ns: 1,
                working_set: 1,
            },
        )]
        .into();
        let o = observe(2_000, &c, &infos, NodeTotals::default(), &mut prev);
        assert_eq!(o.hp.cpu.0, 0);
        assert_eq!(series_id("a"), series_id("a"));
        assert_ne!(series_id("a"), series_id("b"));
    }

    #[test]
    fn cpu_rates_past_the_machine_are_scaled_into_it() {
        let mut o = Observation {
            pods: vec![],
            hp: ResourceAmounts::new(1_500, 10),
            be: ResourceAmounts::new(900, 20),
            system: ResourceAmounts::new(600, 30),
            rates_valid: true,
        };
        o.clamp_cpu(2_000);
        assert_eq!((o.hp.cpu.0, o.be.cpu.0, o.system.cpu.0), (1_000, 600, 400));
        assert_eq!(o.hp.memory.0, 10, "memory untouched");
        let before = o.clone();
        o.clamp_cpu(4_000);
        assert_eq!(o, before, "a possible observation is unchanged");
    }
}
