//! Core pinning as a pure function of the topology, the pinned pods and the BE CPU limit.
//!
//! - A floor of `system_cpus` logical CPUs (whole cores, from the first core) stays with the
//!   system: never pinned to a pod, never given to BE.
//! - LSE pods get exclusive whole physical cores (hyperthread siblings together), on one NUMA
//!   node when one has room: `ceil(request / (1000 × threads per core))` cores.
//! - LSR pods get reserved logical CPUs, `ceil(request / 1000)`, taken whole cores at a time;
//!   no other pod is pinned there and BE never runs on them or their siblings.
//! - LS pods and the system share the rest (`shared`). BE runs on `shared` minus the system
//!   floor and minus siblings of reserved CPUs, shrunk to its CPU limit (CPU suppression),
//!   taken from the highest CPU ids so it stays away from the system's cores.
//! - Assignments are sticky: a pod keeps its CPUs from the previous plan while they are still
//!   free and still the right size, so repeated runs converge and do not move workloads.
//! - A pod that cannot be placed runs in `shared` and is reported in `unplaced`.

use std::collections::BTreeMap;

use tide_api::QosClass;

use crate::cpuset::CpuSet;
use crate::topology::{Core, Topology};

/// A pod that wants pinned CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest {
    /// Pod UID.
    pub uid: String,
    /// `Lse` or `Lsr` (others are ignored).
    pub qos: QosClass,
    /// CPU request, millicores.
    pub milli: u64,
}

/// The CPU assignment for the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pinning {
    /// CPUs of each LSE / LSR pod.
    pub pinned: BTreeMap<String, CpuSet>,
    /// CPUs LS pods and the system run on (everything not pinned).
    pub shared: CpuSet,
    /// The system floor.
    pub system: CpuSet,
    /// CPUs BE pods may run on (never empty while the node has a free CPU).
    pub be: CpuSet,
    /// Pods that did not fit and run in `shared`.
    pub unplaced: Vec<String>,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// Picks `n` whole cores from `free` (indices into `cores`): the NUMA node with the most free
/// cores that can hold all of them, else the fullest nodes in turn.
fn pick_cores(cores: &[Core], free: &[usize], n: usize) -> Option<Vec<usize>> {
    if n == 0 || free.len() < n {
        return None;
    }
    let mut by_node: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &i in free {
        by_node.entry(cores[i].numa).or_default().push(i);
    }
    // One node that fits, preferring the one with the fewest free cores that still fits
    // (keeps large nodes whole for large pods).
    if let Some((_, idx)) = by_node
        .iter()
        .filter(|(_, v)| v.len() >= n)
        .min_by_key(|(node, v)| (v.len(), **node))
    {
        return Some(idx[..n].to_vec());
    }
    let mut nodes: Vec<&Vec<usize>> = by_node.values().collect();
    nodes.sort_by_key(|v| std::cmp::Reverse(v.len()));
    Some(nodes.into_iter().flatten().copied().take(n).collect())
}

/// The assignment. `be_limit_milli` is the BE CPU limit from the planner (`None`: no
/// suppression); `previous` is the last assignment, for stickiness.
pub fn pin(
    topo: &Topology,
    requests: &[PinRequest],
    previous: Option<&Pinning>,
    system_cpus: usize,
    be_limit_milli: Option<u64>,
) -> Pinning {
    let cores = &topo.cores;
    let tpc = topo.threads_per_core() as u64;
    // The system floor: whole cores from the front.
    let mut system = CpuSet::new();
    let mut free: Vec<usize> = Vec::new();
    for (i, c) in cores.iter().enumerate() {
        if system.len() < system_cpus {
            system = system.union(&c.cpus);
        } else {
            free.push(i);
        }
    }
    let mut reqs: Vec<&PinRequest> = requests
        .iter()
        .filter(|r| matches!(r.qos, QosClass::Lse | QosClass::Lsr))
        .collect();
    reqs.sort_by(|a, b| (a.qos != QosClass::Lse, &a.uid).cmp(&(b.qos != QosClass::Lse, &b.uid)));
    let cores_needed = |r: &PinRequest| -> usize {
        let n = match r.qos {
            QosClass::Lse => ceil_div(r.milli, 1000 * tpc),
            _ => ceil_div(ceil_div(r.milli, 1000), tpc),
        };
        usize::try_from(n.max(1)).unwrap_or(usize::MAX)
    };
    let mut out = Pinning {
        system: system.clone(),
        ..Pinning::default()
    };
    let mut reserved_cpus = CpuSet::new();
    let mut taken: Vec<(usize, &PinRequest)> = Vec::new();
    // Keep previous assignments that are still valid.
    let mut pending = Vec::new();
    for r in reqs {
        let want = cores_needed(r);
        let kept = previous
            .and_then(|p| p.pinned.get(&r.uid))
            .and_then(|cpus| {
                let idx: Vec<usize> = free
                    .iter()
                    .copied()
                    .filter(|&i| !cores[i].cpus.intersection(cpus).is_empty())
                    .collect();
                let whole = idx
                    .iter()
                    .all(|&i| cores[i].cpus.difference(cpus).is_empty() || r.qos == QosClass::Lsr);
                (idx.len() == want && whole).then_some(idx)
            });
        match kept {
            Some(idx) => {
                free.retain(|i| !idx.contains(i));
                idx.into_iter().for_each(|i| taken.push((i, r)));
            }
            None => pending.push((r, want)),
        }
    }
    for (r, want) in pending {
        match pick_cores(cores, &free, want) {
            Some(idx) => {
                free.retain(|i| !idx.contains(i));
                idx.into_iter().for_each(|i| taken.push((i, r)));
            }
            None => out.unplaced.push(r.uid.clone()),
        }
    }
    let mut pinned_all = CpuSet::new();
    for (i, r) in taken {
        let cpus = match r.qos {
            QosClass::Lsr => {
                // Reserved CPUs: as many logical CPUs as requested, the rest of the core
                // stays shared (but not with BE).
                let want = usize::try_from(ceil_div(r.milli, 1000).max(1)).unwrap_or(usize::MAX);
                let have = out.pinned.get(&r.uid).map_or(0, CpuSet::len);
                let c: CpuSet = cores[i]
                    .cpus
                    .iter()
                    .take(want.saturating_sub(have))
                    .collect();
                reserved_cpus = reserved_cpus.union(&cores[i].cpus);
                c
            }
            _ => cores[i].cpus.clone(),
        };
        pinned_all = pinned_all.union(&cpus);
        let entry = out.pinned.entry(r.uid.clone()).or_default();
        *entry = entry.union(&cpus);
    }
    let all = topo.all_cpus();
    out.shared = all.difference(&pinned_all);
    let mut be: Vec<u32> = out
        .shared
        .difference(&system)
        .difference(&reserved_cpus)
        .iter()
        .collect();
    if let Some(limit) = be_limit_milli {
        let n = usize::try_from(ceil_div(limit, 1000).max(1)).unwrap_or(usize::MAX);
        let skip = be.len().saturating_sub(n);
        be.drain(..skip);
    }
    out.be = be.into_iter().collect();
    if out.be.is_empty() {
        // Never an empty cpuset (the kernel refuses it for a cgroup with tasks): the last
        // shared CPU, or the last CPU of the node.
        out.be = out
            .shared
            .iter()
            .last()
            .or_else(|| all.iter().last())
            .into_iter()
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::write_fake_sysfs;

    fn topo(cores: u32, threads: u32, numa: u32) -> Topology {
        // Tests run in parallel: every call gets its own tree.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "tide-pin-{}-{n}-{cores}-{threads}-{numa}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        write_fake_sysfs(&dir, cores, threads, numa).unwrap();
        let t = Topology::read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        t
    }

    fn req(uid: &str, qos: QosClass, milli: u64) -> PinRequest {
        PinRequest {
            uid: uid.into(),
            qos,
            milli,
        }
    }

    #[test]
    fn lse_gets_whole_numa_local_cores_and_be_stays_off_them() {
        // 8 cores × 2 threads, 2 NUMA nodes: node 0 = cores 0-3 (CPUs 0-3, 8-11).
        let t = topo(8, 2, 2);
        let p = pin(&t, &[req("db", QosClass::Lse, 3_000)], None, 2, None);
        // 3 CPUs → 2 whole cores, both on one NUMA node, siblings together.
        let db = &p.pinned["db"];
        assert_eq!(db.len(), 4);
        for cpu in db.iter() {
            let core = t.cores.iter().find(|c| c.cpus.contains(cpu)).unwrap();
            assert!(core.cpus.difference(db).is_empty(), "whole cores: {db}");
        }
        let nodes: std::collections::BTreeSet<u32> = t
            .cores
            .iter()
            .filter(|c| !c.cpus.intersection(db).is_empty())
            .map(|c| c.numa)
            .collect();
        assert_eq!(nodes.len(), 1, "NUMA-local: {db}");
        // The system floor (core 0 = CPUs 0, 8) is never pinned nor BE.
        assert_eq!(p.system.to_string(), "0,8");
        assert!(p.be.intersection(&p.system).is_empty());
        assert!(p.be.intersection(db).is_empty());
        assert_eq!(p.shared, t.all_cpus().difference(db));
    }

    #[test]
    fn lsr_reserves_cpus_and_keeps_be_off_their_siblings() {
        let t = topo(4, 2, 1);
        let p = pin(&t, &[req("api", QosClass::Lsr, 1_000)], None, 2, None);
        let api = &p.pinned["api"];
        assert_eq!(api.len(), 1);
        let core = t
            .cores
            .iter()
            .find(|c| c.cpus.contains(api.iter().next().unwrap()))
            .unwrap();
        assert!(p.be.intersection(&core.cpus).is_empty());
        // The sibling stays shared (LS pods may use it).
        assert_eq!(p.shared.len(), 7);
    }

    #[test]
    fn suppression_shrinks_be_from_the_top_and_never_to_nothing() {
        let t = topo(4, 2, 1); // CPUs 0-7, system floor core 0 = 0,4
        let p = pin(&t, &[], None, 2, None);
        assert_eq!(p.be.to_string(), "1-3,5-7");
        let p = pin(&t, &[], None, 2, Some(2_500));
        assert_eq!(p.be.to_string(), "5-7");
        let p = pin(&t, &[], None, 2, Some(0));
        assert_eq!(p.be.to_string(), "7");
    }

    #[test]
    fn assignments_are_sticky_and_misfits_are_reported() {
        let t = topo(4, 2, 1);
        let first = pin(&t, &[req("b", QosClass::Lse, 2_000)], None, 2, None);
        // A new pod sorting before "b" must not move "b".
        let second = pin(
            &t,
            &[
                req("a", QosClass::Lse, 2_000),
                req("b", QosClass::Lse, 2_000),
            ],
            Some(&first),
            2,
            None,
        );
        assert_eq!(first.pinned["b"], second.pinned["b"]);
        assert_eq!(second.pinned["a"].len(), 2);
        // Same input again: same output (convergence).
        let third = pin(
            &t,
            &[
                req("a", QosClass::Lse, 2_000),
                req("b", QosClass::Lse, 2_000),
            ],
            Some(&second),
            2,
            None,
        );
        assert_eq!(second, third);
        // No room for a third 2-core pod (1 core left).
        let p = pin(
            &t,
            &[
                req("a", QosClass::Lse, 2_000),
                req("b", QosClass::Lse, 2_000),
                req("c", QosClass::Lse, 3_000),
            ],
            Some(&second),
            2,
            None,
        );
        assert_eq!(p.unplaced, vec!["c".to_string()]);
    }
}
