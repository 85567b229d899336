//! Applies the agent's node settings to cgroups and processes: CPU sets, the BE CFS quota and
//! `oom_score_adj`. Idempotent and cheap: every write is skipped when the file already holds
//! the value, so a converged node sees no writes at all.
//!
//! Ordering: a cgroup v1 child's `cpuset.cpus` must stay within its parent's. CPU sets are
//! written in two passes — parents first, each widened to the union of its current and target
//! set; then children first, each narrowed to its target — so every intermediate state is
//! valid whether sets grow, shrink or move.

use std::path::Path;

use crate::cgroup::{CgroupError, Layout, write_if_changed};
use crate::cpuset::CpuSet;

/// What the node should look like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// `cpuset.cpus` per cgroup (relative path).
    pub cpusets: Vec<(String, CpuSet)>,
    /// CFS quota per cgroup: `Some(quota µs)` per `period` µs, or `None` for no limit.
    pub quotas: Vec<(String, Option<u64>)>,
    /// `oom_score_adj` for every process of each cgroup.
    pub oom: Vec<(String, i32)>,
}

/// CFS period used with quotas, µs (the kubelet's).
pub const CFS_PERIOD_US: u64 = 100_000;

/// What applying did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Files written.
    pub writes: usize,
    /// Files already right.
    pub unchanged: usize,
    /// Failures (`path: error`); the rest was still applied.
    pub errors: Vec<String>,
    /// How many of `errors` were CPU set or CFS quota writes (what CPU suppression needs),
    /// as opposed to `oom_score_adj` writes.
    pub cpu_errors: usize,
}

impl Applied {
    fn record(&mut self, r: Result<bool, CgroupError>) {
        match r {
            Ok(true) => self.writes += 1,
            Ok(false) => self.unchanged += 1,
            Err(e) => self.errors.push(e.to_string()),
        }
    }
}

fn depth(rel: &str) -> usize {
    rel.split('/').filter(|s| !s.is_empty()).count()
}

fn cpuset_file(layout: &Layout, rel: &str) -> Option<std::path::PathBuf> {
    Some(layout.path("cpuset", rel)?.join("cpuset.cpus"))
}

fn current_cpus(path: &Path) -> Option<CpuSet> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Applies `desired`. `proc_root` is `/proc` (a fake tree in tests).
pub fn apply(layout: &Layout, desired: &Desired, proc_root: &Path) -> Applied {
    let mut out = Applied::default();
    // CPU sets, pass 1: parents first, widen.
    let mut sets: Vec<&(String, CpuSet)> = desired.cpusets.iter().collect();
    sets.sort_by_key(|(rel, _)| depth(rel));
    let mut widened = Vec::new();
    for (rel, target) in &sets {
        let Some(path) = cpuset_file(layout, rel) else {
            out.errors
                .push(format!("{rel}: cpuset controller not mounted"));
            continue;
        };
        let Some(current) = current_cpus(&path) else {
            out.errors.push(format!("{}: unreadable", path.display()));
            continue;
        };
        let union = current.union(target);
        if union != current {
            match write_if_changed(&path, &union.to_string()) {
                Ok(_) => out.writes += 1,
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        widened.push((path, target));
    }
    // Pass 2: children first, narrow to the target.
    for (path, target) in widened.into_iter().rev() {
        match write_if_changed(&path, &target.to_string()) {
            // cgroup v1 refuses (EBUSY) to narrow a cpuset below a child's: a cgroup this
            // plan does not name (a pod the API has not reported yet, a container made since
            // the walk). Narrow the children to fit, then retry once.
            Err(e) if e.source.raw_os_error() == Some(EBUSY) => {
                if let Some(dir) = path.parent() {
                    narrow_descendants(dir, target, &mut out);
                }
                out.record(write_if_changed(&path, &target.to_string()));
            }
            r => out.record(r),
        }
    }
    // CFS quotas.
    for (rel, quota) in &desired.quotas {
        out.record(write_quota(layout, rel, *quota));
    }
    out.cpu_errors = out.errors.len();
    // oom_score_adj for every process.
    for (rel, adj) in &desired.oom {
        let pids = match layout.pids(rel) {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(e.to_string());
                continue;
            }
        };
        for pid in pids {
            let path = proc_root.join(pid.to_string()).join("oom_score_adj");
            match write_if_changed(&path, &adj.to_string()) {
                Ok(true) => out.writes += 1,
                Ok(false) => out.unchanged += 1,
                // The process exited between listing and writing: nothing to do.
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.source.raw_os_error() == Some(3) => {}
                Err(e) => out.errors.push(e.to_string()),
            }
        }
    }
    out
}

/// `EBUSY`: the kernel's answer to a cpuset write that would leave a child outside its parent.
const EBUSY: i32 = 16;

/// Narrows every cgroup below `dir` whose `cpuset.cpus` is not within `target` to its overlap
/// with `target` (or to `target` when they do not overlap), deepest first.
fn narrow_descendants(dir: &Path, target: &CpuSet, out: &mut Applied) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let child = e.path();
        narrow_descendants(&child, target, out);
        let file = child.join("cpuset.cpus");
        let Some(current) = current_cpus(&file) else {
            continue;
        };
        if current.iter().all(|c| target.contains(c)) {
            continue;
        }
        let overlap = current.intersection(target);
        let fit = if overlap.is_empty() { target } else { &overlap };
        out.record(write_if_changed(&file, &fit.to_string()));
    }
}

fn write_quota(layout: &Layout, rel: &str, quota: Option<u64>) -> Result<bool, CgroupError> {
    let missing = || CgroupError {
        path: rel.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "cpu controller not mounted"),
    };
    match &layout.hierarchy {
        crate::cgroup::Hierarchy::V1(_) => {
            let dir = layout.path("cpu", rel).ok_or_else(missing)?;
            let period =
                write_if_changed(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
            let q = quota.map_or_else(|| "-1".to_owned(), |q| q.max(1000).to_string());
            Ok(write_if_changed(&dir.join("cpu.cfs_quota_us"), &q)? || period)
        }
        crate::cgroup::Hierarchy::V2(_) => {
            let dir = layout.path("cpu", rel).ok_or_else(missing)?;
            let v = quota.map_or_else(
                || format!("max {CFS_PERIOD_US}"),
                |q| format!("{} {CFS_PERIOD_US}", q.max(1000)),
            );
            write_if_changed(&dir.join("cpu.max"), &v)
        }
    }
}

/// The CFS quota for a BE CPU limit in millicores: `limit × period / 1000`, at least 1 ms.
pub fn quota_for(limit_milli: u64) -> u64 {
    (limit_milli.saturating_mul(CFS_PERIOD_US) / 1000).max(1000)
}
