//! The node agent's decisions, as one pure function: `plan(snapshot, config) -> actions`.
//! The live agent's executor applies the actions; the replay applies them to its model.

use tide_api::{
    Bytes, Classification, MilliCores, ResourceAmounts, TideConfig, VictimKey, victim_order,
};

/// A BE pod on the node.
#[derive(Debug, Clone, PartialEq)]
pub struct BePod {
    /// Pod UID.
    pub uid: String,
    /// Classification (for the victim order).
    pub class: Classification,
    /// Batch request.
    pub request: ResourceAmounts,
    /// Current usage.
    pub usage: ResourceAmounts,
}

/// What the agent knows about its node at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    /// Now, seconds.
    pub now: u64,
    /// Node allocatable.
    pub allocatable: ResourceAmounts,
    /// Usage of HP pods.
    pub hp_usage: ResourceAmounts,
    /// Usage outside pods (kubelet, runtime, daemons).
    pub system_usage: ResourceAmounts,
    /// BE pods and their usage.
    pub be_pods: Vec<BePod>,
    /// Cold page cache that can be dropped now (from the cold-memory reclaimer).
    pub cold_memory: Bytes,
    /// When the agent last evicted a pod, if ever.
    pub last_eviction: Option<u64>,
    /// The agent is inside an eviction episode (hysteresis: evict down to the release level).
    pub evicting: bool,
    /// The API server answered recently; otherwise evictions cannot be requested.
    pub api_reachable: bool,
}

/// Why an action was taken; becomes a metrics label and a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// CPU: BE limited to keep node usage at the suppress level.
    CpuSuppress,
    /// CPU: HP and system usage alone above the eviction level.
    CpuPressure,
    /// Memory above the reclaim level: cold page cache first.
    MemoryReclaim,
    /// Memory above the eviction level (or still above release during an episode).
    MemoryPressure,
    /// Memory above the critical level and the API server unreachable.
    MemoryCritical,
}

impl Reason {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CpuSuppress => "cpu-suppress",
            Reason::CpuPressure => "cpu-pressure",
            Reason::MemoryReclaim => "memory-reclaim",
            Reason::MemoryPressure => "memory-pressure",
            Reason::MemoryCritical => "memory-critical",
        }
    }
}

/// One thing to do on the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Limit all BE pods together to this much CPU (cpuset size or CFS quota).
    SetBeCpuLimit {
        /// The limit.
        limit: MilliCores,
        /// Why.
        reason: Reason,
    },
    /// Drop this much cold page cache.
    ReclaimColdMemory {
        /// Bytes to drop.
        bytes: Bytes,
    },
    /// Evict a BE pod through the Eviction API.
    EvictBe {
        /// Pod UID.
        uid: String,
        /// Why.
        reason: Reason,
    },
    /// Kill a BE pod's containers locally (API server unreachable, memory critical).
    KillBe {
        /// Pod UID.
        uid: String,
        /// Why.
        reason: Reason,
    },
}

/// The plan for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Actions in the order to apply them.
    pub actions: Vec<Action>,
    /// Whether an eviction episode continues after this tick.
    pub evicting: bool,
}

/// `pct` percent of `of`.
#[allow(clippy::cast_precision_loss)]
fn level(of: u64, pct: f64) -> u64 {
    tide_api::f64_to_u64_saturating(of as f64 * pct / 100.0)
}

/// Orders BE pods for eviction (the one victim order, by memory over request, then UID).
fn victims(pods: &[BePod]) -> Vec<&BePod> {
    let key = |p: &BePod| VictimKey {
        class: p.class,
        usage_over_request: i128::from(p.usage.memory.0) - i128::from(p.request.memory.0),
    };
    let mut v: Vec<&BePod> = pods.iter().collect();
    v.sort_by(|a, b| victim_order(&key(a), &key(b)).then_with(|| a.uid.cmp(&b.uid)));
    v
}

/// Decides this tick's actions. Pure: the same snapshot and config give the same plan.
///
/// - CPU: the BE pool is limited to `suppress% × allocatable − HP − system` (never below
///   `cpu.beFloorMilli` while BE pods run); when HP and system alone pass `cpu.evictPercent`,
///   the lowest BE pod in the victim order is evicted so it can run elsewhere.
/// - Memory: above `reclaimPercent`, cold page cache is dropped first; above `evictPercent`
///   (or above `releasePercent` while an episode lasts), BE pods are evicted in the victim order
///   until the projected level is at or below `releasePercent`, at most one round per
///   `intervals.evictionMin`; above `criticalPercent` with the API server unreachable, BE pods
///   are killed locally instead.
/// - HP pods are never touched.
pub fn plan(s: &NodeSnapshot, cfg: &TideConfig) -> Plan {
    let mut actions = Vec::new();
    let cpu_alloc = s.allocatable.cpu.0;
    let mem_alloc = s.allocatable.memory.0;
    let hp_cpu = s.hp_usage.cpu.0.saturating_add(s.system_usage.cpu.0);
    let hp_mem = s.hp_usage.memory.0.saturating_add(s.system_usage.memory.0);

    // CPU suppression.
    let suppress_at = level(cpu_alloc, cfg.cpu.suppress_percent);
    let mut be_cpu = suppress_at.saturating_sub(hp_cpu);
    if !s.be_pods.is_empty() {
        be_cpu = be_cpu.max(cfg.cpu.be_floor_milli);
    }
    actions.push(Action::SetBeCpuLimit {
        limit: MilliCores(be_cpu),
        reason: Reason::CpuSuppress,
    });

    let may_evict = s
        .last_eviction
        .is_none_or(|t| s.now >= t + cfg.intervals.eviction_min.as_secs());
    let mut evicted: Vec<String> = Vec::new();

    // CPU pressure from HP alone: BE here is starved; move the lowest one.
    if hp_cpu > level(cpu_alloc, cfg.cpu.evict_percent)
        && may_evict
        && s.api_reachable
        && let Some(v) = victims(&s.be_pods).first()
    {
        evicted.push(v.uid.clone());
        actions.push(Action::EvictBe {
            uid: v.uid.clone(),
            reason: Reason::CpuPressure,
        });
    }

    // Memory.
    let be_mem: u64 = s.be_pods.iter().map(|p| p.usage.memory.0).sum();
    let mut total = hp_mem.saturating_add(be_mem);
    let reclaim_at = level(mem_alloc, cfg.memory.reclaim_percent);
    if total > reclaim_at && s.cold_memory.0 > 0 {
        let bytes = s.cold_memory.0.min(total - reclaim_at);
        actions.push(Action::ReclaimColdMemory {
            bytes: Bytes(bytes),
        });
        total -= bytes;
    }
    let evict_at = level(mem_alloc, cfg.memory.evict_percent);
    let release_at = level(mem_alloc, cfg.memory.release_percent);
    let critical_at = level(mem_alloc, cfg.memory.critical_percent);
    let mut evicting = s.evicting && total > release_at;
    if total > evict_at {
        evicting = true;
    }
    if evicting {
        let local = !s.api_reachable && total > critical_at;
        if local || (may_evict && s.api_reachable) {
            for v in victims(&s.be_pods) {
                if total <= release_at {
                    break;
                }
                if evicted.contains(&v.uid) {
                    total = total.saturating_sub(v.usage.memory.0);
                    continue;
                }
                total = total.saturating_sub(v.usage.memory.0);
                actions.push(if local {
                    Action::KillBe {
                        uid: v.uid.clone(),
                        reason: Reason::MemoryCritical,
                    }
                } else {
                    Action::EvictBe {
                        uid: v.uid.clone(),
                        reason: Reason::MemoryPressure,
                    }
                });
            }
        }
    }
    Plan {
        actions,
        evicting: evicting && total > release_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide_api::{ClassifyRules, PodFacts, classify};

    const GIB: u64 = 1 << 30;

    fn be(uid: &str, prio: i32, cpu: u64, mem_gib: u64, req_gib: u64) -> BePod {
        let mut f = PodFacts::default();
        f.labels.insert("tide.dev/qos".into(), "BE".into());
        f.priority = Some(prio);
        BePod {
            uid: uid.into(),
            class: classify(&f, &ClassifyRules::default()),
            request: ResourceAmounts::new(cpu, req_gib * GIB),
            usage: ResourceAmounts::new(cpu, mem_gib * GIB),
        }
    }

    fn snap(hp_cpu: u64, hp_mem_gib: u64, pods: Vec<BePod>) -> NodeSnapshot {
        NodeSnapshot {
            now: 1_000,
            allocatable: ResourceAmounts::new(10_000, 100 * GIB),
            hp_usage: ResourceAmounts::new(hp_cpu, hp_mem_gib * GIB),
            system_usage: ResourceAmounts::new(0, 0),
            be_pods: pods,
            cold_memory: Bytes(0),
            last_eviction: None,
            evicting: false,
            api_reachable: true,
        }
    }

    fn limit(p: &Plan) -> u64 {
        p.actions
            .iter()
            .find_map(|a| match a {
                Action::SetBeCpuLimit { limit, .. } => Some(limit.0),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn cpu_suppression_follows_hp_usage() {
        let cfg = TideConfig::default(); // suppress at 90%
        assert_eq!(
            limit(&plan(&snap(3_000, 10, vec![be("a", 0, 1000, 1, 1)]), &cfg)),
            6_000
        );
        assert_eq!(
            limit(&plan(&snap(8_500, 10, vec![be("a", 0, 1000, 1, 1)]), &cfg)),
            500
        );
        assert_eq!(limit(&plan(&snap(9_800, 10, vec![]), &cfg)), 0);
        let floor = TideConfig {
            cpu: tide_api::CpuLevels {
                be_floor_milli: 200,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            limit(&plan(
                &snap(9_800, 10, vec![be("a", 0, 1000, 1, 1)]),
                &floor
            )),
            200
        );
    }

    #[test]
    fn memory_pressure_evicts_in_victim_order_down_to_release() {
        let cfg = TideConfig::default(); // evict 90%, release 85%
        let pods = vec![
            be("hi", 100, 500, 6, 4),
            be("lo-small", 0, 500, 2, 4),
            be("lo-big", 0, 500, 6, 4),
        ];
        // HP 80 + BE 14 = 94 GiB > 90: evict lo-big (88 > 85), then lo-small (86 > 85), then hi.
        let p = plan(&snap(1_000, 80, pods.clone()), &cfg);
        let evicted: Vec<&str> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::EvictBe { uid, .. } => Some(uid.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(evicted, ["lo-big", "lo-small", "hi"]);
        assert!(!p.evicting);
        // Below the eviction level and not in an episode: nothing.
        let p = plan(&snap(1_000, 74, pods.clone()), &cfg);
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::EvictBe { .. }))
        );
        // In an episode, still above release (74 + 14 = 88 > 85): evict until at or below 85.
        let mut s = snap(1_000, 74, pods);
        s.evicting = true;
        let p = plan(&s, &cfg);
        let n = p
            .actions
            .iter()
            .filter(|a| matches!(a, Action::EvictBe { .. }))
            .count();
        assert_eq!(n, 1, "{:?}", p.actions);
    }

    #[test]
    fn cold_memory_goes_first_and_can_avoid_eviction() {
        let cfg = TideConfig::default();
        let mut s = snap(1_000, 85, vec![be("a", 0, 500, 8, 8)]);
        s.cold_memory = Bytes(20 * GIB);
        let p = plan(&s, &cfg);
        // 93 GiB: reclaim down to 80 (13 GiB of cold cache), no eviction.
        assert!(p.actions.contains(&Action::ReclaimColdMemory {
            bytes: Bytes(13 * GIB)
        }));
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::EvictBe { .. }))
        );
    }

    #[test]
    fn rate_limit_and_local_kill() {
        let cfg = TideConfig::default(); // eviction min 5 s, critical 95%
        let mut s = snap(1_000, 90, vec![be("a", 0, 500, 8, 8)]);
        s.last_eviction = Some(998);
        assert!(
            !plan(&s, &cfg)
                .actions
                .iter()
                .any(|a| matches!(a, Action::EvictBe { .. }))
        );
        s.last_eviction = Some(990);
        assert!(
            plan(&s, &cfg)
                .actions
                .iter()
                .any(|a| matches!(a, Action::EvictBe { .. }))
        );
        // API down: above critical (98 > 95) kill locally, even inside the rate limit.
        s.api_reachable = false;
        s.last_eviction = Some(999);
        assert!(
            plan(&s, &cfg)
                .actions
                .iter()
                .any(|a| matches!(a, Action::KillBe { .. }))
        );
        // API down, below critical: nothing can be done yet.
        let mut s = snap(1_000, 84, vec![be("a", 0, 500, 8, 8)]);
        s.api_reachable = false;
        let p = plan(&s, &cfg);
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::KillBe { .. } | Action::EvictBe { .. }))
        );
        assert!(
            p.evicting,
            "the episode continues until the level is back to release"
        );
    }

    #[test]
    fn cpu_pressure_moves_the_lowest_be_pod() {
        let cfg = TideConfig::default(); // cpu evict 95%
        let p = plan(
            &snap(
                9_600,
                10,
                vec![be("hi", 100, 500, 1, 1), be("lo", 0, 500, 1, 1)],
            ),
            &cfg,
        );
        assert!(p.actions.contains(&Action::EvictBe {
            uid: "lo".into(),
            reason: Reason::CpuPressure
        }));
    }
}
