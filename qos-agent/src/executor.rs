//! Applies the agent's node settings to cgroups and processes: CPU sets, the BE CFS quota and
//! `oom_score_adj`. Idempotent and cheap: every write is skipped when the file already holds
//! the value, so a converged node sees no writes at all.
//!
//! The live agent also remembers what it last read from or wrote to each file ([`Known`]):
//! nothing but the agent changes these values on a converged node, so a file whose remembered
//! value is the one wanted is not read again until [`Known::VERIFY_EVERY`] ticks have passed or
//! the set of pod and container cgroups changed. External changes are still found and
//! undone, within that many ticks. A write the kernel refused is not tried again before the
//! file is read again (without `CAP_SYS_RESOURCE` every negative `oom_score_adj` is refused,
//! on every tick); the refusal is reported each tick all the same. (On a real node with 100
//! containers these re-reads and retries were most of the agent's file operations per
//! tick.)
//!
//! Ordering: a cgroup v1 child's `cpuset.cpus` must stay within its parent's. CPU sets are
//! written in two passes — parents first, each widened to the union of its current and target
//! set; then children first, each narrowed to its target — so every intermediate state is
//! valid whether sets grow, shrink or move.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

use crate::cgroup::{CgroupError, Layout, PodCgroup, same_value};
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

/// What each settings file held when the agent last read or wrote it, and when it last read
/// it. See the module documentation.
#[derive(Debug)]
pub struct Known {
    /// By path (as bytes: hashing a `Path` walks its components).
    values: HashMap<OsString, Remembered>,
    /// The current tick (one per [`apply_known`]).
    tick: u64,
    /// Ticks a remembered value is trusted without reading the file: 1 trusts it only within
    /// one apply (the CPU set read in pass 1 is not read again in pass 2).
    verify_every: u64,
    /// Fingerprint of the cgroups found on the last tick.
    cgroups: u64,
    /// Each container's PIDs as listed from its `cgroup.procs`, listed again when the
    /// container's process count differs, and every `verify_every` ticks: a process that
    /// replaced another within one tick, leaving the count as it was, gets its
    /// `oom_score_adj` within that many ticks. (Opening every container's `cgroup.procs` every
    /// tick was a quarter of the agent's CPU time on a real node with 100 containers; cgroup v1
    /// serves a re-read of a kept `cgroup.procs` handle from a PID list cached for a second, so
    /// it is opened afresh each time.)
    procs: crate::cgroup::Counted<Vec<u32>>,
}

#[derive(Debug)]
struct Remembered {
    value: String,
    /// Tick it was last read from the file.
    read: u64,
    /// Tick it was last needed (entries not needed in a tick are dropped).
    used: u64,
    /// A write the kernel refused since the read, and why (`EACCES` for a negative
    /// `oom_score_adj` without `CAP_SYS_RESOURCE`): answered the same, without trying, until
    /// the file is read again.
    refused: Option<(String, Refusal)>,
}

#[derive(Debug, Clone)]
enum Refusal {
    Os(i32),
    Other(std::io::ErrorKind, String),
}

impl Refusal {
    fn of(e: &std::io::Error) -> Self {
        e.raw_os_error()
            .map_or_else(|| Self::Other(e.kind(), e.to_string()), Self::Os)
    }

    fn error(&self) -> std::io::Error {
        match self {
            Self::Os(code) => std::io::Error::from_raw_os_error(*code),
            Self::Other(kind, msg) => std::io::Error::new(*kind, msg.clone()),
        }
    }
}

impl Default for Known {
    fn default() -> Self {
        Self::new(Self::VERIFY_EVERY)
    }
}

impl Known {
    /// Ticks between re-reads of a value the agent knows (10 s at the 1 s cadence).
    pub const VERIFY_EVERY: u64 = 10;

    /// Remembers values for `verify_every` ticks (at least 1: within one apply).
    pub fn new(verify_every: u64) -> Self {
        Self {
            values: HashMap::new(),
            tick: 0,
            verify_every: verify_every.max(1),
            cgroups: 0,
            procs: crate::cgroup::Counted::default(),
        }
    }

    /// The PIDs in the cgroup at `rel`: as last listed while its process count is unchanged
    /// and the listing younger than `verify_every` ticks, else listed now.
    fn pids(&mut self, layout: &Layout, rel: &str) -> Result<Vec<u32>, CgroupError> {
        self.procs
            .get_or_list(layout, rel, self.tick, self.verify_every, || {
                layout.pids(rel)
            })
    }

    /// Forgets everything when the pod and container cgroups differ from the last call's: a
    /// new cgroup, one gone, a QoS level removed and made again by a restarted kubelet.
    pub fn track(&mut self, cgroups: &[PodCgroup]) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for p in cgroups {
            p.path.hash(&mut h);
            for (_, rel) in &p.containers {
                rel.hash(&mut h);
            }
        }
        let fingerprint = h.finish();
        if fingerprint != self.cgroups {
            self.values.clear();
            self.procs.clear();
            self.cgroups = fingerprint;
        }
    }

    /// Number of values remembered.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The file's value: remembered if read within `verify_every` ticks, else read now.
    fn read(&mut self, path: &Path) -> Result<&str, CgroupError> {
        let tick = self.tick;
        let fresh = self
            .values
            .get(path.as_os_str())
            .is_some_and(|r| tick - r.read < self.verify_every);
        if !fresh {
            let value = crate::cgroup::read(path)?;
            self.values.insert(
                path.as_os_str().to_owned(),
                Remembered {
                    value,
                    read: tick,
                    used: tick,
                    refused: None,
                },
            );
        }
        let r = self
            .values
            .get_mut(path.as_os_str())
            .expect("just checked or inserted");
        r.used = tick;
        Ok(&r.value)
    }

    /// Writes `value` to `path` unless the file holds it (as read or remembered; compared
    /// after trimming, CPU lists as sets). Returns whether it wrote.
    fn write_if_changed(&mut self, path: &Path, value: &str) -> Result<bool, CgroupError> {
        let error = |source| CgroupError {
            path: path.display().to_string(),
            source,
        };
        if same_value(path, self.read(path)?, value) {
            return Ok(false);
        }
        let r = self.values.get_mut(path.as_os_str()).expect("read above");
        if let Some((v, why)) = &r.refused
            && v == value
        {
            return Err(error(why.error()));
        }
        match std::fs::write(path, value) {
            Ok(()) => {
                value.clone_into(&mut r.value);
                r.refused = None;
                Ok(true)
            }
            Err(e) => {
                r.refused = Some((value.to_owned(), Refusal::of(&e)));
                Err(error(e))
            }
        }
    }

    /// Forgets `path`: it is read again when next needed.
    fn forget(&mut self, path: &Path) {
        self.values.remove(path.as_os_str());
    }

    /// Drops what the last apply did not need (processes gone, cgroups removed).
    fn prune(&mut self) {
        let tick = self.tick;
        self.values.retain(|_, r| r.used == tick);
        self.procs.retain_used(tick);
    }
}

fn depth(rel: &str) -> usize {
    rel.split('/').filter(|s| !s.is_empty()).count()
}

fn cpuset_file(layout: &Layout, rel: &str) -> Option<std::path::PathBuf> {
    Some(layout.path("cpuset", rel)?.join("cpuset.cpus"))
}

fn current_cpus(known: &mut Known, path: &Path) -> Option<CpuSet> {
    known.read(path).ok()?.trim().parse().ok()
}

/// Applies `desired`, reading every file. `proc_root` is `/proc` (a fake tree in tests).
pub fn apply(layout: &Layout, desired: &Desired, proc_root: &Path) -> Applied {
    apply_known(layout, desired, proc_root, &mut Known::new(1))
}

/// Applies `desired` as one tick of `known`: files whose remembered value is the one wanted
/// are not read (see the module documentation).
pub fn apply_known(
    layout: &Layout,
    desired: &Desired,
    proc_root: &Path,
    known: &mut Known,
) -> Applied {
    known.tick += 1;
    known.procs.round();
    let out = apply_inner(layout, desired, proc_root, known);
    known.prune();
    out
}

fn apply_inner(layout: &Layout, desired: &Desired, proc_root: &Path, known: &mut Known) -> Applied {
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
        let Some(current) = current_cpus(known, &path) else {
            out.errors.push(format!("{}: unreadable", path.display()));
            continue;
        };
        let union = current.union(target);
        if union != current {
            match known.write_if_changed(&path, &union.to_string()) {
                Ok(_) => out.writes += 1,
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        widened.push((path, target));
    }
    // Pass 2: children first, narrow to the target.
    for (path, target) in widened.into_iter().rev() {
        match known.write_if_changed(&path, &target.to_string()) {
            // cgroup v1 refuses (EBUSY) to narrow a cpuset below a child's: a cgroup this
            // plan does not name (a pod the API has not reported yet, a container made since
            // the walk). Narrow the children to fit, then retry once.
            Err(e) if e.source.raw_os_error() == Some(EBUSY) => {
                if let Some(dir) = path.parent() {
                    narrow_descendants(dir, target, known, &mut out);
                }
                known.forget(&path);
                out.record(known.write_if_changed(&path, &target.to_string()));
            }
            r => out.record(r),
        }
    }
    // CFS quotas.
    for (rel, quota) in &desired.quotas {
        out.record(write_quota(layout, rel, *quota, known));
    }
    out.cpu_errors = out.errors.len();
    // oom_score_adj for every process.
    for (rel, adj) in &desired.oom {
        let pids = match known.pids(layout, rel) {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(e.to_string());
                continue;
            }
        };
        for pid in pids {
            let path = proc_root.join(pid.to_string()).join("oom_score_adj");
            match known.write_if_changed(&path, &adj.to_string()) {
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
fn narrow_descendants(dir: &Path, target: &CpuSet, known: &mut Known, out: &mut Applied) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let child = e.path();
        narrow_descendants(&child, target, known, out);
        let file = child.join("cpuset.cpus");
        // Read afresh: a cgroup this plan does not name may have changed on its own.
        known.forget(&file);
        let Some(current) = current_cpus(known, &file) else {
            continue;
        };
        if current.iter().all(|c| target.contains(c)) {
            continue;
        }
        let overlap = current.intersection(target);
        let fit = if overlap.is_empty() { target } else { &overlap };
        out.record(known.write_if_changed(&file, &fit.to_string()));
    }
}

fn write_quota(
    layout: &Layout,
    rel: &str,
    quota: Option<u64>,
    known: &mut Known,
) -> Result<bool, CgroupError> {
    let missing = || CgroupError {
        path: rel.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "cpu controller not mounted"),
    };
    match &layout.hierarchy {
        crate::cgroup::Hierarchy::V1(_) => {
            let dir = layout.path("cpu", rel).ok_or_else(missing)?;
            let period = known
                .write_if_changed(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
            let q = quota.map_or_else(|| "-1".to_owned(), |q| q.max(1000).to_string());
            Ok(known.write_if_changed(&dir.join("cpu.cfs_quota_us"), &q)? || period)
        }
        crate::cgroup::Hierarchy::V2(_) => {
            let dir = layout.path("cpu", rel).ok_or_else(missing)?;
            let v = quota.map_or_else(
                || format!("max {CFS_PERIOD_US}"),
                |q| format!("{} {CFS_PERIOD_US}", q.max(1000)),
            );
            known.write_if_changed(&dir.join("cpu.max"), &v)
        }
    }
}

/// The CFS quota for a BE CPU limit in millicores: `limit × period / 1000`, at least 1 ms.
pub fn quota_for(limit_milli: u64) -> u64 {
    (limit_milli.saturating_mul(CFS_PERIOD_US) / 1000).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Driver, Hierarchy};

    struct Tree(std::path::PathBuf);
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cgroup(tag: &str) -> (Tree, Layout, Vec<PodCgroup>, Desired) {
        let dir = std::env::temp_dir().join(format!("tide-known-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pod = dir.join("kubepods/podab");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("cpuset.cpus"), "0-3").unwrap();
        std::fs::write(pod.join("cgroup.procs"), "").unwrap();
        let layout = Layout {
            hierarchy: Hierarchy::V2(dir.clone()),
            driver: Driver::Cgroupfs,
            root: String::new(),
        };
        let pods = vec![PodCgroup {
            uid: "ab".into(),
            kube_qos: tide_api::KubeQosClass::Guaranteed,
            path: "kubepods/podab".into(),
            containers: Vec::new(),
        }];
        let desired = Desired {
            cpusets: vec![("kubepods/podab".into(), "1-2".parse().unwrap())],
            ..Desired::default()
        };
        (Tree(dir), layout, pods, desired)
    }

    fn cpus(tree: &Tree) -> String {
        std::fs::read_to_string(tree.0.join("kubepods/podab/cpuset.cpus")).unwrap()
    }

    #[test]
    fn a_known_value_is_read_again_after_verify_every_ticks() {
        let (tree, layout, pods, desired) = cgroup("verify");
        let mut known = Known::new(3);
        known.track(&pods);
        let first = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        assert_eq!((first.writes, first.errors.len()), (1, 0), "{first:?}");
        assert_eq!(cpus(&tree), "1-2");
        assert_eq!(known.len(), 1);
        // Changed behind the agent's back: not seen while the written value is trusted…
        std::fs::write(tree.0.join("kubepods/podab/cpuset.cpus"), "0-3").unwrap();
        for _ in 0..2 {
            known.track(&pods);
            let a = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
            assert_eq!((a.writes, a.unchanged), (0, 1));
        }
        assert_eq!(cpus(&tree), "0-3");
        // …and undone on the tick that reads it again.
        known.track(&pods);
        let a = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        assert_eq!(a.writes, 1, "{a:?}");
        assert_eq!(cpus(&tree), "1-2");
    }

    #[test]
    fn a_changed_set_of_cgroups_forgets_what_was_known() {
        let (tree, layout, mut pods, desired) = cgroup("forget");
        let mut known = Known::default();
        known.track(&pods);
        apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        std::fs::write(tree.0.join("kubepods/podab/cpuset.cpus"), "0-3").unwrap();
        // A container appeared: everything is read again at once.
        pods[0]
            .containers
            .push(("c1".into(), "kubepods/podab/c1".into()));
        known.track(&pods);
        assert!(known.is_empty());
        let a = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        assert_eq!(a.writes, 1, "{a:?}");
        assert_eq!(cpus(&tree), "1-2");
    }

    #[test]
    fn a_refused_write_is_tried_again_only_when_the_file_is_read_again() {
        let (tree, layout, pods, desired) = cgroup("refused");
        let file = tree.0.join("kubepods/podab/cpuset.cpus");
        let mut known = Known::new(3);
        known.track(&pods);
        // Tick 1 reads the file; then a directory takes its place, so writes fail (EISDIR).
        let mut wanted = desired.clone();
        wanted.cpusets[0].1 = "0-3".parse().unwrap();
        apply_known(&layout, &wanted, Path::new("/proc"), &mut known);
        assert_eq!(known.len(), 1);
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let refused = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        assert_eq!(refused.errors.len(), 1, "{refused:?}");
        // Writable again, but the refusal stands until the file is read again (tick 4).
        std::fs::remove_dir(&file).unwrap();
        std::fs::write(&file, "0-3").unwrap();
        let again = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        assert_eq!(again.errors, refused.errors, "reported the same");
        assert_eq!(cpus(&tree), "0-3", "not tried");
        let a = apply_known(&layout, &desired, Path::new("/proc"), &mut known);
        assert_eq!((a.writes, a.errors.len()), (1, 0), "{a:?}");
        assert_eq!(cpus(&tree), "1-2");
    }

    /// A fake `/proc` with one directory per PID holding `oom_score_adj`.
    fn procs(tree: &Tree, pids: &[u32]) -> std::path::PathBuf {
        let proc_root = tree.0.join("proc");
        for pid in pids {
            std::fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
            std::fs::write(proc_root.join(format!("{pid}/oom_score_adj")), "0").unwrap();
        }
        proc_root
    }

    fn adj(proc_root: &Path, pid: u32) -> String {
        std::fs::read_to_string(proc_root.join(format!("{pid}/oom_score_adj"))).unwrap()
    }

    #[test]
    fn pids_are_listed_again_when_the_process_count_changes_and_every_verify_every_ticks() {
        let (tree, layout, pods, _) = cgroup("pids");
        let pod = tree.0.join("kubepods/podab");
        let proc_root = procs(&tree, &[10, 11, 12]);
        std::fs::write(pod.join("cgroup.procs"), "10\n").unwrap();
        std::fs::write(pod.join("pids.current"), "1\n").unwrap();
        let desired = Desired {
            oom: vec![("kubepods/podab".into(), 900)],
            ..Desired::default()
        };
        let mut known = Known::new(4);
        let mut tick = || {
            known.track(&pods);
            apply_known(&layout, &desired, &proc_root, &mut known)
        };
        assert_eq!(tick().writes, 1);
        assert_eq!(adj(&proc_root, 10), "900");
        // A process replaced another (same count): not seen until the listing is 4 ticks old.
        std::fs::write(pod.join("cgroup.procs"), "11\n").unwrap();
        for _ in 0..3 {
            assert_eq!(tick().writes, 0);
        }
        assert_eq!(adj(&proc_root, 11), "0");
        assert_eq!(tick().writes, 1, "tick 5 lists again");
        assert_eq!(adj(&proc_root, 11), "900");
        // A process started (count changed): listed on the next tick.
        std::fs::write(pod.join("cgroup.procs"), "11\n12\n").unwrap();
        std::fs::write(pod.join("pids.current"), "2\n").unwrap();
        assert_eq!(tick().writes, 1);
        assert_eq!(adj(&proc_root, 12), "900");
        // Without a counter, every tick lists.
        std::fs::remove_file(pod.join("pids.current")).unwrap();
        let mut known = Known::new(4);
        known.track(&pods);
        apply_known(&layout, &desired, &proc_root, &mut known);
        std::fs::write(pod.join("cgroup.procs"), "10\n12\n").unwrap();
        std::fs::write(proc_root.join("10/oom_score_adj"), "0").unwrap();
        known.track(&pods);
        let a = apply_known(&layout, &desired, &proc_root, &mut known);
        assert_eq!(a.writes, 1, "{a:?}");
        assert_eq!(adj(&proc_root, 10), "900");
    }
}
