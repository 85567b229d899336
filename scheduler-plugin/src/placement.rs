//! Placement decisions, as pure functions: filter, water-level scoring and pre-eviction.
//! The HTTP extender and the replay call these same functions (DESIGN.md §6).

use std::collections::HashSet;

use tide_api::{
    BeAdmission, Classification, Resource, ResourceAmounts, TideConfig, VictimKey,
    batch_admit_limit, victim_order,
};

/// The node's estimate as the extender sees it (from its NodeEstimate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateView {
    /// When the agent computed it (seconds).
    pub observed_at: u64,
    /// What BE pods may use in total on this node.
    pub reclaimable: ResourceAmounts,
    /// Predicted HP peak plus margin and reserve: what HP may take.
    pub hp_reserved: ResourceAmounts,
}

/// A node as placement needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Node allocatable.
    pub allocatable: ResourceAmounts,
    /// The node's estimate, if one exists.
    pub estimate: Option<EstimateView>,
    /// BE requests bound to the node, including pods assumed but not yet visible in usage.
    pub be_requested: ResourceAmounts,
    /// HP requests bound to the node.
    pub hp_requested: ResourceAmounts,
}

/// The pod being placed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodView {
    /// BE pods request batch resources; HP pods request cpu/memory.
    pub request: ResourceAmounts,
    /// True for HP classes.
    pub high_priority: bool,
}

/// Why a node was refused. Its `Display` text goes into `FailedNodes`; [`Refusal::kind`]
/// is the metrics label. Built without allocating: `choose` refuses many nodes per pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// HP requests alone would exceed allocatable.
    HpDoesNotFit {
        /// Resource.
        resource: Resource,
        /// HP requests including the pod.
        need: u64,
        /// Allocatable.
        allocatable: u64,
    },
    /// No NodeEstimate for the node.
    NoEstimate,
    /// The NodeEstimate is older than `staleAfter`.
    StaleEstimate {
        /// Age in seconds.
        age_secs: u64,
    },
    /// Bound BE requests plus the pod exceed the reclaimable amount.
    OverReclaimable {
        /// Resource.
        resource: Resource,
        /// BE requests already bound.
        bound: u64,
        /// The pod's request.
        request: u64,
        /// Reclaimable.
        reclaimable: u64,
    },
    /// The predicted water level would pass the schedule level.
    OverWaterLevel {
        /// Resource.
        resource: Resource,
        /// Predicted level, percent.
        level_percent: f64,
        /// Schedule level, percent.
        limit_percent: f64,
    },
}

impl Refusal {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::HpDoesNotFit { .. } => "hp-does-not-fit",
            Refusal::NoEstimate => "no-estimate",
            Refusal::StaleEstimate { .. } => "stale-estimate",
            Refusal::OverReclaimable { .. } => "over-reclaimable",
            Refusal::OverWaterLevel { .. } => "over-water-level",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Refusal::HpDoesNotFit {
                resource,
                need,
                allocatable,
            } => write!(
                f,
                "{resource}: high-priority requests {need}{u} exceed allocatable {allocatable}{u} even after pre-eviction",
                u = unit(resource)
            ),
            Refusal::NoEstimate => {
                f.write_str("no NodeEstimate for this node: best-effort admission stopped")
            }
            Refusal::StaleEstimate { age_secs } => {
                write!(
                    f,
                    "NodeEstimate is stale ({age_secs}s old): best-effort admission stopped"
                )
            }
            Refusal::OverReclaimable {
                resource,
                bound,
                request,
                reclaimable,
            } => write!(
                f,
                "batch-{resource}: bound {bound}{u} + request {request}{u} exceed reclaimable {reclaimable}{u}",
                u = unit(resource)
            ),
            Refusal::OverWaterLevel {
                resource,
                level_percent,
                limit_percent,
            } => write!(
                f,
                "{resource}: predicted water level {level_percent:.1}% would pass the schedule level {limit_percent:.1}%"
            ),
        }
    }
}

fn pct(cfg: &TideConfig, r: Resource) -> f64 {
    match r {
        Resource::Cpu => cfg.cpu.schedule_percent,
        Resource::Memory => cfg.memory.schedule_percent,
    }
}

fn unit(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "m",
        Resource::Memory => " bytes",
    }
}

/// Filter: may `pod` go to `node` at time `now`?
///
/// - BE: only with a fresh estimate, and only where the BE requests already bound plus this
///   pod fit in the reclaimable amount and keep the predicted level at or below the schedule
///   water level, for both resources.
/// - HP: never refused for a stale or missing estimate; refused only where even evicting
///   every BE pod could not make room (HP requests alone would not fit).
pub fn filter(pod: &PodView, node: &NodeView, cfg: &TideConfig, now: u64) -> Result<(), Refusal> {
    if pod.high_priority {
        for r in Resource::ALL {
            let need = node.hp_requested.get(r).saturating_add(pod.request.get(r));
            if need > node.allocatable.get(r) {
                return Err(Refusal::HpDoesNotFit {
                    resource: r,
                    need,
                    allocatable: node.allocatable.get(r),
                });
            }
        }
        return Ok(());
    }
    let Some(est) = node.estimate else {
        return Err(Refusal::NoEstimate);
    };
    let age_secs = now.saturating_sub(est.observed_at);
    if age_secs > cfg.estimator.stale_after.as_secs() {
        return Err(Refusal::StaleEstimate { age_secs });
    }
    for r in Resource::ALL {
        let want = node.be_requested.get(r).saturating_add(pod.request.get(r));
        let have = est.reclaimable.get(r);
        if want > have {
            return Err(Refusal::OverReclaimable {
                resource: r,
                bound: node.be_requested.get(r),
                request: pod.request.get(r),
                reclaimable: have,
            });
        }
        // The same limit the agent advertises as the node's batch resources.
        let limit = batch_admit_limit(
            node.allocatable.get(r),
            est.hp_reserved.get(r),
            have,
            pct(cfg, r),
        );
        if want > limit {
            let level = predicted_level(node, pod, r);
            return Err(Refusal::OverWaterLevel {
                resource: r,
                level_percent: level * 100.0,
                limit_percent: pct(cfg, r),
            });
        }
    }
    Ok(())
}

/// Predicted level of `r` after placing `pod`: (HP reservation + BE requests + pod) / allocatable.
/// Without an estimate the HP requests stand in for the HP reservation.
#[allow(clippy::cast_precision_loss)]
pub fn predicted_level(node: &NodeView, pod: &PodView, r: Resource) -> f64 {
    let alloc = node.allocatable.get(r);
    if alloc == 0 {
        return f64::INFINITY;
    }
    let hp = node
        .estimate
        .map_or(node.hp_requested.get(r), |e| e.hp_reserved.get(r));
    let total = hp
        .saturating_add(node.be_requested.get(r))
        .saturating_add(pod.request.get(r));
    total as f64 / alloc as f64
}

/// What the filter and the score count for the BE pods already on a node
/// ([`NodeView::be_requested`]), by the configured [`BeAdmission`] mode:
///
/// - `Request`: their requests (`requested`).
/// - `RealTime`: the BE usage the node's agent measured, plus the requests of the BE pods bound
///   since that measurement (`bound_since`: their usage is not in it yet). Without a
///   measurement, the requests (fail safe).
///
/// ```
/// use tide_api::{BeAdmission, ResourceAmounts};
/// use tide_scheduler::be_counted;
/// let req = ResourceAmounts::new(8_000, 16 << 30);
/// let used = ResourceAmounts::new(4_000, 10 << 30);
/// let new_pod = ResourceAmounts::new(1_000, 2 << 30);
/// assert_eq!(be_counted(BeAdmission::Request, req, Some(used), new_pod), req);
/// assert_eq!(
///     be_counted(BeAdmission::RealTime, req, Some(used), new_pod),
///     ResourceAmounts::new(5_000, 12 << 30)
/// );
/// assert_eq!(be_counted(BeAdmission::RealTime, req, None, new_pod), req);
/// ```
pub fn be_counted(
    mode: BeAdmission,
    requested: ResourceAmounts,
    measured: Option<ResourceAmounts>,
    bound_since: ResourceAmounts,
) -> ResourceAmounts {
    match (mode, measured) {
        (BeAdmission::RealTime, Some(used)) => used.saturating_add(bound_since),
        _ => requested,
    }
}

/// Kubernetes' `MaxExtenderPriority`.
pub const MAX_SCORE: i64 = 10;

/// Prioritize: water-level balancing. Prefers nodes whose predicted CPU and memory levels
/// after placement are low and close to each other:
/// `score = 10 × clamp(1 − mean(level) − ½·|level_cpu − level_mem|, 0, 1)`, rounded.
pub fn score(pod: &PodView, node: &NodeView) -> i64 {
    let c = predicted_level(node, pod, Resource::Cpu);
    let m = predicted_level(node, pod, Resource::Memory);
    if !(c.is_finite() && m.is_finite()) {
        return 0;
    }
    let raw = 1.0 - (c + m) / 2.0 - 0.5 * (c - m).abs();
    #[allow(clippy::cast_possible_truncation)]
    let s = (raw.clamp(0.0, 1.0) * MAX_SCORE as f64).round() as i64;
    s.clamp(0, MAX_SCORE)
}

/// A BE pod on the node, as pre-eviction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BePodView {
    /// Pod UID.
    pub uid: String,
    /// Classification (for the victim order).
    pub class: Classification,
    /// Batch request.
    pub request: ResourceAmounts,
    /// Current usage.
    pub usage: ResourceAmounts,
}

/// Orders BE pods for eviction with the one victim order, by memory usage over request,
/// ties broken by UID.
pub fn order_victims(pods: &mut [BePodView]) {
    let key = |p: &BePodView| VictimKey {
        class: p.class,
        usage_over_request: i128::from(p.usage.memory.0) - i128::from(p.request.memory.0),
    };
    pods.sort_by(|a, b| victim_order(&key(a), &key(b)).then_with(|| a.uid.cmp(&b.uid)));
}

/// A pre-eviction plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreEviction {
    /// UIDs to evict, in the victim order.
    pub victims: Vec<String>,
    /// Whether evicting them brings the node to or below the eviction water level.
    pub enough: bool,
}

/// Bind-time pre-eviction: the BE pods to evict, in order, so that the node's predicted usage
/// after the HP pod lands stays at or below the eviction water levels the agent enforces —
/// the evictions the agent would otherwise make once the pod runs, made before it starts.
/// Empty when no eviction is needed.
///
/// The HP side is the node's HP reservation plus the pod's request. BE memory counts at its
/// usage: memory cannot be taken back without evicting. BE CPU counts at what the agent's
/// suppression leaves it (`tide_agent::plan`): at most `suppress level − HP`, at least
/// `cpu.beFloorMilli` while BE pods run — so CPU alone evicts only when HP would pass the
/// eviction level with BE at a non-zero floor. Where BE can be suppressed to nothing, evicting
/// it gives HP no CPU (the agent moves starved BE later, one pod at a time).
pub fn pre_eviction(
    pod: &PodView,
    node: &NodeView,
    be_pods: &[BePodView],
    cfg: &TideConfig,
) -> Vec<String> {
    plan_pre_eviction(pod, node, be_pods, &HashSet::new(), cfg).victims
}

/// [`pre_eviction`] when some BE pods cannot be evicted (a PodDisruptionBudget refused them):
/// those stay and keep their usage, and the plan goes further down the victim order.
#[allow(clippy::cast_precision_loss)]
pub fn plan_pre_eviction(
    pod: &PodView,
    node: &NodeView,
    be_pods: &[BePodView],
    blocked: &HashSet<String>,
    cfg: &TideConfig,
) -> PreEviction {
    let mut pods = be_pods.to_vec();
    order_victims(&mut pods);
    let limit = |r: Resource| {
        let p = match r {
            Resource::Cpu => cfg.cpu.evict_percent,
            Resource::Memory => cfg.memory.evict_percent,
        };
        node.allocatable.get(r) as f64 * p / 100.0
    };
    let hp = |r: Resource| {
        let reserved = node
            .estimate
            .map_or(node.hp_requested.get(r), |e| e.hp_reserved.get(r));
        reserved as f64 + pod.request.get(r) as f64
    };
    let suppress_at = node.allocatable.cpu.0 as f64 * cfg.cpu.suppress_percent / 100.0;
    let mut be: ResourceAmounts = pods.iter().map(|p| p.usage).sum();
    let mut running = pods.len();
    let over = |be: &ResourceAmounts, running: usize| {
        let be_cpu = if running == 0 {
            0.0
        } else {
            let room = (suppress_at - hp(Resource::Cpu)).max(cfg.cpu.be_floor_milli as f64);
            (be.cpu.0 as f64).min(room)
        };
        // Evicting BE helps HP's CPU only where BE keeps some CPU past the eviction level.
        (be_cpu > 0.0 && hp(Resource::Cpu) + be_cpu > limit(Resource::Cpu))
            || hp(Resource::Memory) + be.memory.0 as f64 > limit(Resource::Memory)
    };
    let mut victims = Vec::new();
    for p in pods.into_iter().filter(|p| !blocked.contains(&p.uid)) {
        if !over(&be, running) {
            break;
        }
        be = be.saturating_sub(p.usage);
        running -= 1;
        victims.push(p.uid);
    }
    PreEviction {
        victims,
        enough: !over(&be, running),
    }
}

/// Picks the best node for a pod among candidates: highest score, ties by lowest index.
pub fn choose<'a>(
    pod: &PodView,
    nodes: impl IntoIterator<Item = (usize, &'a NodeView)>,
    cfg: &TideConfig,
    now: u64,
) -> Option<usize> {
    best_scored(
        pod,
        nodes
            .into_iter()
            .filter(|(_, n)| filter(pod, n, cfg, now).is_ok()),
    )
}

/// The largest BE request [`filter`] admits on `node` at `now`, per resource: a BE pod passes
/// the filter exactly when its request is at most this in both resources. `None` when no BE
/// pod passes at all (no estimate, a stale one, or BE already bound past the limit).
///
/// It changes only when the node's view does, so a caller placing many pods in a row (the
/// replay) computes it once per node and again only for the node it bound to, and tests a
/// pod with two comparisons per node instead of the whole filter ([`choose_by_room`]).
pub fn be_room(node: &NodeView, cfg: &TideConfig, now: u64) -> Option<ResourceAmounts> {
    let est = node.estimate?;
    if now.saturating_sub(est.observed_at) > cfg.estimator.stale_after.as_secs() {
        return None;
    }
    let mut room = ResourceAmounts::ZERO;
    for r in Resource::ALL {
        // The filter's two checks, bound + request ≤ reclaimable and ≤ the admit limit; the
        // limit is never above reclaimable.
        let limit = batch_admit_limit(
            node.allocatable.get(r),
            est.hp_reserved.get(r),
            est.reclaimable.get(r),
            pct(cfg, r),
        );
        let bound = node.be_requested.get(r);
        if limit == u64::MAX {
            // The filter's sum saturates at u64::MAX, which is never over this limit.
            room.set(r, u64::MAX);
        } else {
            room.set(r, limit.checked_sub(bound)?);
        }
    }
    Some(room)
}

/// [`choose`] for a BE pod, with each candidate's [`be_room`] computed beforehand: the same
/// answer, without running the filter on every node for every pod.
pub fn choose_by_room<'a>(
    pod: &PodView,
    nodes: impl IntoIterator<Item = (usize, &'a NodeView, Option<ResourceAmounts>)>,
) -> Option<usize> {
    let fits = |room: Option<ResourceAmounts>| {
        room.is_some_and(|r| pod.request.cpu <= r.cpu && pod.request.memory <= r.memory)
    };
    best_scored(
        pod,
        nodes
            .into_iter()
            .filter(|&(_, _, room)| fits(room))
            .map(|(i, n, _)| (i, n)),
    )
}

/// Highest score, ties by lowest index.
fn best_scored<'a>(
    pod: &PodView,
    nodes: impl Iterator<Item = (usize, &'a NodeView)>,
) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, n) in nodes {
        let s = score(pod, n);
        let better = match best {
            None => true,
            Some((bi, bs)) => s > bs || (s == bs && i < bi),
        };
        if better {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide_api::{ClassifyRules, PodFacts, classify};

    fn node(reclaim: (u64, u64), hp: (u64, u64), be: (u64, u64), observed_at: u64) -> NodeView {
        NodeView {
            allocatable: ResourceAmounts::new(32_000, 128 << 30),
            estimate: Some(EstimateView {
                observed_at,
                reclaimable: ResourceAmounts::new(reclaim.0, reclaim.1),
                hp_reserved: ResourceAmounts::new(hp.0, hp.1),
            }),
            be_requested: ResourceAmounts::new(be.0, be.1),
            hp_requested: ResourceAmounts::new(24_000, 96 << 30),
        }
    }

    fn be(cpu: u64, mem: u64) -> PodView {
        PodView {
            request: ResourceAmounts::new(cpu, mem),
            high_priority: false,
        }
    }

    #[test]
    fn be_room_admits_exactly_what_the_filter_admits() {
        // A small xorshift: the same cases every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut cfg = TideConfig::default();
        let (mut admitted, mut refused) = (0, 0);
        for case in 0..20_000 {
            cfg.cpu.schedule_percent = [85.0, 100.0, 60.0][case % 3];
            cfg.memory.schedule_percent = [90.0, 70.0, 100.0][case % 3];
            let alloc = ResourceAmounts::new(1 + next(64_000), 1 + next(256 << 30));
            // HP reservations up to a little over allocatable; BE bound up to about half of
            // what is reclaimable (and sometimes past it).
            let reclaim = ResourceAmounts::new(next(alloc.cpu.0), next(alloc.memory.0));
            let estimate = (case % 11 != 0).then(|| EstimateView {
                observed_at: next(400),
                reclaimable: reclaim,
                hp_reserved: ResourceAmounts::new(
                    next(alloc.cpu.0 * 11 / 10),
                    next(alloc.memory.0 / 10 * 11),
                ),
            });
            let node = NodeView {
                allocatable: alloc,
                estimate,
                be_requested: ResourceAmounts::new(
                    next(reclaim.cpu.0 * 3 / 5 + 1),
                    next(reclaim.memory.0 / 5 * 3 + 1),
                ),
                hp_requested: ResourceAmounts::new(next(64_000), next(256 << 30)),
            };
            // Requests near the room's edge as well as anywhere.
            let now = 200 + next(200);
            let room = be_room(&node, &cfg, now);
            let mut near = |r: u64, m: u64| r.saturating_add(next(3)).saturating_sub(1).min(m);
            let request = match room {
                Some(r) if case % 2 == 0 => {
                    ResourceAmounts::new(near(r.cpu.0, 80_000), near(r.memory.0, 300 << 30))
                }
                _ => ResourceAmounts::new(next(8_000), next(32 << 30)),
            };
            let pod = be(request.cpu.0, request.memory.0);
            let by_filter = filter(&pod, &node, &cfg, now).is_ok();
            let by_room = room.is_some_and(|r| request.cpu <= r.cpu && request.memory <= r.memory);
            assert_eq!(
                by_filter, by_room,
                "case {case}: {node:?} {pod:?} room {room:?}"
            );
            if by_filter {
                admitted += 1;
            } else {
                refused += 1;
            }
        }
        // Both answers are common, so the comparison means something.
        assert!(
            admitted > 1_000 && refused > 1_000,
            "{admitted} admitted, {refused} refused"
        );
    }

    #[test]
    fn choose_by_room_picks_what_choose_picks() {
        let cfg = TideConfig::default();
        let nodes: Vec<NodeView> = (0..40u64)
            .map(|i| {
                node(
                    (4_000 + i * 700 % 9_000, (8 + i * 5 % 40) << 30),
                    (8_000 + i * 300 % 6_000, (30 + i % 9) << 30),
                    (i * 500 % 7_000, (i * 3 % 20) << 30),
                    if i % 13 == 5 { 0 } else { 100 },
                )
            })
            .collect();
        let mut picked = 0;
        for cpu in (0..9_000).step_by(250) {
            for mem in [0u64, 1 << 30, 4 << 30, 16 << 30, 40 << 30] {
                let pod = be(cpu, mem);
                let rooms: Vec<_> = nodes.iter().map(|n| be_room(n, &cfg, 110)).collect();
                let want = choose(&pod, nodes.iter().enumerate(), &cfg, 110);
                let got = choose_by_room(
                    &pod,
                    nodes
                        .iter()
                        .zip(&rooms)
                        .enumerate()
                        .map(|(i, (n, &r))| (i, n, r)),
                );
                assert_eq!(got, want, "{pod:?}");
                picked += usize::from(want.is_some());
            }
        }
        assert!(picked > 20, "{picked}");
    }

    #[test]
    fn be_goes_only_where_reclaimable_fits() {
        let cfg = TideConfig::default();
        let n = node(
            (10_000, 40 << 30),
            (12_000, 40 << 30),
            (6_000, 8 << 30),
            100,
        );
        assert!(filter(&be(4_000, 8 << 30), &n, &cfg, 110).is_ok());
        let err = filter(&be(4_001, 8 << 30), &n, &cfg, 110).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("batch-cpu: bound 6000m + request 4001m exceed reclaimable 10000m"),
            "{err}"
        );
        let err = filter(&be(1_000, 33 << 30), &n, &cfg, 110).unwrap_err();
        assert!(err.to_string().contains("batch-memory"), "{err}");
    }

    #[test]
    fn water_level_caps_be_even_with_reclaimable_left() {
        let cfg = TideConfig::default(); // cpu schedule level 85%
        // Reclaimable says 20 cores, but HP reserved 20 + BE 6 + 2 = 28 of 32 = 87.5%.
        let n = node((20_000, 60 << 30), (20_000, 20 << 30), (6_000, 0), 0);
        let err = filter(&be(2_000, 1 << 30), &n, &cfg, 0).unwrap_err();
        assert!(err.to_string().contains("water level 87.5%"), "{err}");
    }

    #[test]
    fn real_time_level_counts_be_usage_not_requests() {
        // HP reserved 12 of 32 cores; BE pods bound with 14 cores of requests use 7. A 2-core
        // BE pod: by request the level would be (12 + 14 + 2) / 32 = 87.5%, over the 85%
        // schedule level; by the real-time level it is (12 + 7 + 2) / 32 = 65.6%.
        let cfg = TideConfig::default();
        let requested = ResourceAmounts::new(14_000, 20 << 30);
        let used = ResourceAmounts::new(7_000, 12 << 30);
        let mut n = node((20_000, 80 << 30), (12_000, 40 << 30), (0, 0), 0);
        n.be_requested = be_counted(
            BeAdmission::Request,
            requested,
            Some(used),
            ResourceAmounts::ZERO,
        );
        let err = filter(&be(2_000, 1 << 30), &n, &cfg, 0).unwrap_err();
        assert!(err.to_string().contains("water level 87.5%"), "{err}");
        n.be_requested = be_counted(
            BeAdmission::RealTime,
            requested,
            Some(used),
            ResourceAmounts::ZERO,
        );
        assert!(filter(&be(2_000, 1 << 30), &n, &cfg, 0).is_ok());
        // A pod bound since the measurement counts at its request until its usage shows.
        n.be_requested = be_counted(
            BeAdmission::RealTime,
            requested,
            Some(used),
            ResourceAmounts::new(7_000, 0),
        );
        assert!(filter(&be(2_000, 1 << 30), &n, &cfg, 0).is_err());
        // No measurement: the requests (fail safe).
        n.be_requested = be_counted(
            BeAdmission::RealTime,
            requested,
            None,
            ResourceAmounts::ZERO,
        );
        assert!(filter(&be(2_000, 1 << 30), &n, &cfg, 0).is_err());
    }

    #[test]
    fn stale_or_missing_estimate_stops_be_never_hp() {
        let cfg = TideConfig::default(); // stale after 5 min
        let mut n = node((20_000, 60 << 30), (4_000, 8 << 30), (0, 0), 0);
        assert!(filter(&be(1_000, 1 << 30), &n, &cfg, 300).is_ok());
        assert!(
            filter(&be(1_000, 1 << 30), &n, &cfg, 301)
                .unwrap_err()
                .to_string()
                .contains("stale (301s old)")
        );
        let hp = PodView {
            request: ResourceAmounts::new(4_000, 8 << 30),
            high_priority: true,
        };
        assert!(filter(&hp, &n, &cfg, 10_000).is_ok());
        n.estimate = None;
        assert!(
            filter(&be(1, 1), &n, &cfg, 0)
                .unwrap_err()
                .to_string()
                .contains("no NodeEstimate")
        );
        assert!(filter(&hp, &n, &cfg, 0).is_ok());
        let too_big = PodView {
            request: ResourceAmounts::new(9_000, 1),
            high_priority: true,
        };
        assert!(
            filter(&too_big, &n, &cfg, 0)
                .unwrap_err()
                .to_string()
                .contains("even after pre-eviction")
        );
    }

    #[test]
    fn scores_prefer_low_and_balanced_levels() {
        let p = be(2_000, 8 << 30);
        let low = node((20_000, 60 << 30), (4_000, 16 << 30), (0, 0), 0);
        let high = node((20_000, 60 << 30), (20_000, 80 << 30), (0, 0), 0);
        let skewed = node((20_000, 60 << 30), (24_000, 8 << 30), (0, 0), 0);
        let (s_low, s_high, s_skew) = (score(&p, &low), score(&p, &high), score(&p, &skewed));
        assert!(
            s_low > s_high && s_low > s_skew,
            "{s_low} {s_high} {s_skew}"
        );
        assert!((0..=MAX_SCORE).contains(&s_high));
        let cfg = TideConfig::default();
        let nodes = [high.clone(), low.clone(), skewed];
        assert_eq!(choose(&p, nodes.iter().enumerate(), &cfg, 0), Some(1));
    }

    #[test]
    fn pre_eviction_takes_just_enough_in_victim_order() {
        let cfg = TideConfig::default(); // memory evict level 90%
        let rules = ClassifyRules::default();
        let class = |prio: i32| {
            let mut f = PodFacts::default();
            f.labels.insert("tide.dev/qos".into(), "BE".into());
            f.priority = Some(prio);
            classify(&f, &rules)
        };
        let gib = 1u64 << 30;
        let pods = vec![
            BePodView {
                uid: "a".into(),
                class: class(10),
                request: ResourceAmounts::new(1_000, 8 * gib),
                usage: ResourceAmounts::new(1_000, 10 * gib),
            },
            BePodView {
                uid: "b".into(),
                class: class(0),
                request: ResourceAmounts::new(1_000, 8 * gib),
                usage: ResourceAmounts::new(1_000, 4 * gib),
            },
            BePodView {
                uid: "c".into(),
                class: class(0),
                request: ResourceAmounts::new(1_000, 8 * gib),
                usage: ResourceAmounts::new(1_000, 12 * gib),
            },
        ];
        // 128 GiB node, evict level 115.2 GiB. HP reserved 90 GiB + new HP pod 8 GiB = 98 GiB;
        // BE uses 26 GiB → 124 GiB: 8.8 GiB over. Priority 0 goes first, most over request first: c (12 GiB).
        let n = node((0, 0), (8_000, 90 * gib), (0, 0), 0);
        let hp = PodView {
            request: ResourceAmounts::new(1_000, 8 * gib),
            high_priority: true,
        };
        assert_eq!(pre_eviction(&hp, &n, &pods, &cfg), vec!["c".to_string()]);
        // A bigger HP pod needs two victims: c, then b (same priority), not a.
        let hp = PodView {
            request: ResourceAmounts::new(1_000, 14 * gib),
            high_priority: true,
        };
        assert_eq!(
            pre_eviction(&hp, &n, &pods, &cfg),
            vec!["c".to_string(), "b".to_string()]
        );
        // No pressure, no victims.
        let calm = node((0, 0), (8_000, 20 * gib), (0, 0), 0);
        assert!(pre_eviction(&hp, &calm, &pods, &cfg).is_empty());
        // CPU is taken back by suppression, not eviction: HP 24 + 4 cores with BE using 12 is
        // 40 of 32 cores, but the agent caps BE at 90% − HP = 0.8 core: 28.8 ≤ 30.4 (95%).
        let cpu_heavy: Vec<BePodView> = pods
            .iter()
            .map(|p| BePodView {
                usage: ResourceAmounts::new(4_000, gib),
                ..p.clone()
            })
            .collect();
        let hot = node((0, 0), (24_000, 20 * gib), (0, 0), 0);
        let hp_cpu = PodView {
            request: ResourceAmounts::new(4_000, gib),
            high_priority: true,
        };
        assert!(pre_eviction(&hp_cpu, &hot, &cpu_heavy, &cfg).is_empty());
        // HP alone past the eviction level (36 of 32 cores): BE is suppressed to nothing,
        // evicting it gives HP nothing.
        let past = node((0, 0), (32_000, 20 * gib), (0, 0), 0);
        assert!(pre_eviction(&hp_cpu, &past, &cpu_heavy, &cfg).is_empty());
        // With a BE floor of 3 cores the agent cannot go below it: 28 + 3 > 30.4, and every BE
        // pod would be starved at the floor, so all move (as the agent would move them).
        let mut floor = cfg.clone();
        floor.cpu.be_floor_milli = 3_000;
        let plan = plan_pre_eviction(&hp_cpu, &hot, &cpu_heavy, &HashSet::new(), &floor);
        assert_eq!(plan.victims.len(), 3);
        assert!(plan.enough);
        // A PodDisruptionBudget protects c: it stays (with its usage); the plan goes on to b
        // and a. 124 + 6 - 4 - 10 = 116 GiB is still over 115.2: not enough.
        let blocked: HashSet<String> = ["c".to_string()].into();
        let plan = plan_pre_eviction(&hp, &n, &pods, &blocked, &cfg);
        assert_eq!(plan.victims, vec!["b".to_string(), "a".to_string()]);
        assert!(!plan.enough);
        let small = PodView {
            request: ResourceAmounts::new(1_000, 2 * gib),
            high_priority: true,
        };
        // 92 + 26 = 118 GiB; without c, b (4 GiB) is enough: 114 GiB.
        let plan = plan_pre_eviction(&small, &n, &pods, &blocked, &cfg);
        assert_eq!(plan.victims, vec!["b".to_string()]);
        assert!(plan.enough);
    }

    proptest::proptest! {
        /// The extender admits a BE pod exactly when the BE requests bound plus the pod fit in
        /// what the agent advertises ([`tide_api::NodeEstimateStatus::batch_admit_limits`]), so
        /// kube-scheduler's own fit check on the advertised amounts enforces the same cap.
        #[test]
        fn filter_admits_exactly_what_the_node_advertises(
            alloc_cpu in 1_000u64..256_000,
            alloc_mem in (1u64 << 30)..(1u64 << 40),
            hp_share in 0.0f64..1.2,
            reclaim_share in 0.0f64..1.0,
            be_share in 0.0f64..1.0,
            req_cpu in 0u64..64_000,
            req_mem in 0u64..(64u64 << 30),
            schedule_cpu in 1.0f64..100.0,
            schedule_mem in 1.0f64..100.0,
        ) {
            let mut cfg = TideConfig::default();
            cfg.cpu.schedule_percent = schedule_cpu;
            cfg.memory.schedule_percent = schedule_mem;
            let part = |v: u64, f: f64| tide_api::f64_to_u64_saturating(v as f64 * f);
            let alloc = ResourceAmounts::new(alloc_cpu, alloc_mem);
            let hp = ResourceAmounts::new(part(alloc_cpu, hp_share), part(alloc_mem, hp_share));
            let reclaim = ResourceAmounts::new(
                part(alloc_cpu.saturating_sub(hp.cpu.0), reclaim_share),
                part(alloc_mem.saturating_sub(hp.memory.0), reclaim_share),
            );
            let status: tide_api::NodeEstimateStatus = serde_json::from_value(serde_json::json!({
                "observedTime": "2026-01-01T00:00:00Z", "horizonSeconds": 3600,
                "cpu": {"allocatable": alloc_cpu, "predictedPeak": hp.cpu.0, "margin": 0, "systemReserve": 0,
                        "reclaimable": reclaim.cpu.0, "hpUsage": 0, "beUsage": 0},
                "memory": {"allocatable": alloc_mem, "predictedPeak": hp.memory.0, "margin": 0, "systemReserve": 0,
                        "reclaimable": reclaim.memory.0, "hpUsage": 0, "beUsage": 0},
                "confidence": {"historySeconds": 86400, "recentViolationRate": 0.0}
            })).unwrap();
            let advertised = status.batch_admit_limits(&cfg);
            let bound = ResourceAmounts::new(part(advertised.cpu.0, be_share), part(advertised.memory.0, be_share));
            let n = NodeView {
                allocatable: alloc,
                estimate: Some(EstimateView { observed_at: 0, reclaimable: reclaim, hp_reserved: hp }),
                be_requested: bound,
                hp_requested: ResourceAmounts::ZERO,
            };
            let pod = PodView { request: ResourceAmounts::new(req_cpu, req_mem), high_priority: false };
            let fits = bound.cpu.0 + req_cpu <= advertised.cpu.0
                && bound.memory.0 + req_mem <= advertised.memory.0;
            proptest::prop_assert_eq!(filter(&pod, &n, &cfg, 0).is_ok(), fits);
        }

        /// Real-time mode: the agent advertises the admit limit plus what the BE pods it
        /// measured asked for and do not use ([`tide_api::batch_advertised`]); kube-scheduler
        /// counts every BE pod at its request against that. Whatever the extender admits by
        /// the real-time level (measured BE usage, including pods not yet measured, plus their
        /// requests) then passes kube-scheduler's fit check, and the two agree exactly when the
        /// pods not yet measured use nothing.
        #[test]
        fn real_time_admission_passes_the_advertised_fit_check(
            limit in 0u64..64_000,
            req_measured in 0u64..64_000,
            used_share in 0.0f64..1.5,
            req_new in 0u64..16_000,
            used_new_share in 0.0f64..1.0,
            req_pod in 0u64..16_000,
        ) {
            let mut cfg = TideConfig::default();
            cfg.cpu.schedule_percent = 100.0;
            cfg.memory.schedule_percent = 100.0;
            let part = |v: u64, f: f64| tide_api::f64_to_u64_saturating(v as f64 * f);
            let used_measured = part(req_measured, used_share);
            let used_new = part(req_new, used_new_share);
            let advertised = tide_api::batch_advertised(
                BeAdmission::RealTime, limit, req_measured, used_measured);
            let fits = req_measured + req_new + req_pod <= advertised;
            // One resource under test; memory has room to spare.
            let big = 1u64 << 50;
            let counted = be_counted(
                BeAdmission::RealTime,
                ResourceAmounts::new(req_measured + req_new, 0),
                Some(ResourceAmounts::new(used_measured + used_new, 0)),
                ResourceAmounts::new(req_new, 0),
            );
            let n = NodeView {
                allocatable: ResourceAmounts::new(big, big),
                estimate: Some(EstimateView {
                    observed_at: 0,
                    reclaimable: ResourceAmounts::new(limit, big),
                    hp_reserved: ResourceAmounts::ZERO,
                }),
                be_requested: counted,
                hp_requested: ResourceAmounts::ZERO,
            };
            let pod = PodView { request: ResourceAmounts::new(req_pod, 0), high_priority: false };
            let admitted = filter(&pod, &n, &cfg, 0).is_ok();
            proptest::prop_assert!(!admitted || fits, "admitted {counted:?} + {req_pod} over {advertised}");
            if used_new == 0 {
                proptest::prop_assert_eq!(admitted, fits);
            }
        }
    }
}
