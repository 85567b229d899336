//! The kubelet's cgroup tree (INTERFACES.md §2.6): where pods and containers live for cgroup
//! v1 and v2, the `cgroupfs` and `systemd` drivers and a `cgroupRoot`; discovery by walking
//! it; reading usage; and writing CPU sets, CFS quotas and `oom_score_adj` only when the value
//! changes.
//!
//! Paths are relative to the hierarchy root (`kubepods/burstable/pod<uid>/<id>`); a
//! [`Layout`] turns them into absolute paths per controller (v1: one mount per controller,
//! found in `/proc/self/mountinfo`; v2: one mount).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tide_api::KubeQosClass;
use tide_coldmem::kernel_text::mounts;

/// cgroup driver of the kubelet and runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `kubepods/burstable/pod<uid>/<container id>`.
    Cgroupfs,
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/…scope`.
    Systemd,
}

/// Which hierarchy and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1: mount point per controller (`cpu`, `cpuacct`, `cpuset`, `memory`, …).
    V1(BTreeMap<String, PathBuf>),
    /// cgroup v2: the unified mount.
    V2(PathBuf),
}

/// Where the kubelet's pods are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// v1 or v2 and the mount points.
    pub hierarchy: Hierarchy,
    /// Driver.
    pub driver: Driver,
    /// The kubelet's `cgroupRoot`, relative to the hierarchy root (`""` for `/`).
    pub root: String,
}

/// A cgroup file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CgroupError {
    /// The file.
    pub path: String,
    /// Cause.
    pub source: io::Error,
}

fn err(path: &Path, source: io::Error) -> CgroupError {
    CgroupError {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, what: &str) -> CgroupError {
    err(
        path,
        io::Error::new(io::ErrorKind::InvalidData, what.to_owned()),
    )
}

/// cgroup v1 mounts from `/proc/self/mountinfo` text: controller name → mount point. Named
/// hierarchies (`name=systemd`) are skipped.
pub fn v1_mounts(mountinfo: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for m in mounts(mountinfo).filter(|m| m.fstype == "cgroup") {
        for opt in m.super_options.split(',') {
            if matches!(
                opt,
                "cpu" | "cpuacct" | "cpuset" | "memory" | "pids" | "blkio"
            ) {
                out.entry(opt.to_owned())
                    .or_insert_with(|| PathBuf::from(&m.point));
            }
        }
    }
    out
}

/// The cgroup v2 mount from `/proc/self/mountinfo` text, if any.
pub fn v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mounts(mountinfo)
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.point))
}

/// A pod found in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// Pod UID (with dashes).
    pub uid: String,
    /// Kubernetes QoS class, from where the pod sits.
    pub kube_qos: KubeQosClass,
    /// Path relative to the hierarchy root.
    pub path: String,
    /// Containers: (container id, relative path).
    pub containers: Vec<(String, String)>,
}

/// Parses a pod directory name: `pod<uid>` (cgroupfs) or `kubepods-…-pod<uid_>.slice`.
pub fn pod_uid(name: &str, driver: Driver) -> Option<String> {
    let uid = match driver {
        Driver::Cgroupfs => name.strip_prefix("pod")?.to_owned(),
        Driver::Systemd => {
            let stem = name.strip_suffix(".slice")?;
            let (_, uid) = stem.rsplit_once("-pod")?;
            uid.replace('_', "-")
        }
    };
    (!uid.is_empty() && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(uid)
}

/// Parses a container directory name: a 64-hex id or `crio-<id>` (cgroupfs);
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` (systemd).
/// `crio-conmon-…` (the monitor) is not a container.
pub fn container_id(name: &str, driver: Driver) -> Option<String> {
    let id = match driver {
        Driver::Cgroupfs => name.strip_prefix("crio-").unwrap_or(name),
        Driver::Systemd => {
            let stem = name.strip_suffix(".scope")?;
            ["cri-containerd-", "crio-", "docker-"]
                .iter()
                .find_map(|p| stem.strip_prefix(p))?
        }
    };
    (id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_owned())
}

impl Layout {
    fn join(&self, parts: &[&str]) -> String {
        let mut p = self.root.trim_matches('/').to_owned();
        for part in parts {
            if !p.is_empty() {
                p.push('/');
            }
            p.push_str(part);
        }
        p
    }

    /// The QoS-level directory of a Kubernetes QoS class, relative.
    pub fn qos_dir(&self, qos: KubeQosClass) -> String {
        match (self.driver, qos) {
            (Driver::Cgroupfs, KubeQosClass::Guaranteed) => self.join(&["kubepods"]),
            (Driver::Cgroupfs, KubeQosClass::Burstable) => self.join(&["kubepods", "burstable"]),
            (Driver::Cgroupfs, KubeQosClass::BestEffort) => self.join(&["kubepods", "besteffort"]),
            (Driver::Systemd, KubeQosClass::Guaranteed) => self.join(&["kubepods.slice"]),
            (Driver::Systemd, KubeQosClass::Burstable) => {
                self.join(&["kubepods.slice", "kubepods-burstable.slice"])
            }
            (Driver::Systemd, KubeQosClass::BestEffort) => {
                self.join(&["kubepods.slice", "kubepods-besteffort.slice"])
            }
        }
    }

    /// The directory of a pod, relative.
    pub fn pod_dir(&self, qos: KubeQosClass, uid: &str) -> String {
        let name = match (self.driver, qos) {
            (Driver::Cgroupfs, _) => format!("pod{uid}"),
            (Driver::Systemd, KubeQosClass::Guaranteed) => {
                format!("kubepods-pod{}.slice", uid.replace('-', "_"))
            }
            (Driver::Systemd, KubeQosClass::Burstable) => {
                format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_"))
            }
            (Driver::Systemd, KubeQosClass::BestEffort) => {
                format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"))
            }
        };
        format!("{}/{name}", self.qos_dir(qos))
    }

    /// Absolute path of `rel` in `controller`'s hierarchy (v2 ignores the controller).
    pub fn path(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        let base = match &self.hierarchy {
            Hierarchy::V1(m) => m.get(controller)?,
            Hierarchy::V2(m) => m,
        };
        Some(if rel.is_empty() {
            base.clone()
        } else {
            base.join(rel)
        })
    }

    /// The v1 hierarchy listed to find pods and containers: `cpuset`, which the agent writes
    /// anyway and whose directories hold about half the files of `memory`'s (18 against 33
    /// on a 6.x kernel; listing them is most of the cost of discovery, every tick).
    fn walk_controller(&self) -> &'static str {
        "cpuset"
    }

    /// The kubelet's cgroup root in the hierarchy the agent walks, or why it cannot be used
    /// (controller not mounted, missing, not a directory): what `/healthz` and the start-up
    /// check report.
    pub fn root_dir(&self) -> Result<PathBuf, CgroupError> {
        let controller = self.walk_controller();
        let dir = self
            .path(controller, self.root.trim_matches('/'))
            .ok_or_else(|| invalid(Path::new(controller), "controller not mounted"))?;
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => Err(invalid(&dir, "not a directory")),
            Err(e) => Err(err(&dir, e)),
        }
    }

    /// The kubelet's pod level (`kubepods`, `kubepods.slice`) under the cgroup root, or why
    /// the agent cannot work on this node: the root is unusable ([`Layout::root_dir`]), or
    /// the root holds no pod level — the kubelet runs with `cgroupsPerQOS: false` (flat
    /// per-container cgroups with no pod or QoS level, which Tide cannot suppress as a
    /// class), or with another `--cgroup-root`/`--cgroup-driver` than the agent was given.
    pub fn pods_dir(&self) -> Result<PathBuf, String> {
        let root = self.root_dir().map_err(|e| format!("cgroup root: {e}"))?;
        let rel = self.qos_dir(KubeQosClass::Guaranteed);
        let dir = self
            .path(self.walk_controller(), &rel)
            .ok_or_else(|| format!("{}: controller not mounted", self.walk_controller()))?;
        if dir.is_dir() {
            return Ok(dir);
        }
        Err(format!(
            "no pod cgroup level {} under {}: the kubelet must run with cgroupsPerQOS: true \
             (its default) and the agent with the kubelet's cgroupRoot and cgroupDriver \
             (supported layouts: docs/kubernetes.md)",
            dir.display(),
            root.display()
        ))
    }

    /// Every pod and container under the kubelet's tree, every directory listed.
    pub fn discover(&self) -> Result<Vec<PodCgroup>, CgroupError> {
        self.discover_with(&mut Discovery::new(1))
    }

    /// The `pids.current` file of the cgroup at `rel` (v1: in the `pids` hierarchy), if the
    /// pids controller is mounted there. Its value — the cgroup's process count — is what
    /// tells the agent a cgroup's processes or children changed ([`Discovery`],
    /// `executor::Known`).
    pub fn pids_current(&self, rel: &str) -> Option<PathBuf> {
        let controller = match self.hierarchy {
            Hierarchy::V1(_) => "pids",
            Hierarchy::V2(_) => "",
        };
        Some(self.path(controller, rel)?.join("pids.current"))
    }

    /// [`Layout::discover`], listing a pod's directory again only when `cache` says its
    /// containers may have changed.
    pub fn discover_with(&self, cache: &mut Discovery) -> Result<Vec<PodCgroup>, CgroupError> {
        cache.tick += 1;
        cache.pods.round();
        let tick = cache.tick;
        let mut pods = Vec::new();
        for qos in [
            KubeQosClass::Guaranteed,
            KubeQosClass::Burstable,
            KubeQosClass::BestEffort,
        ] {
            let qdir = self.qos_dir(qos);
            let Some(abs) = self.path(self.walk_controller(), &qdir) else {
                return Err(invalid(
                    Path::new(self.walk_controller()),
                    "controller not mounted",
                ));
            };
            let entries = match fs::read_dir(&abs) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(&abs, e)),
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(uid) = name.to_str().and_then(|n| pod_uid(n, self.driver)) else {
                    continue;
                };
                let path = format!("{qdir}/{}", name.to_string_lossy());
                // The pod's process count is read before the listing: a container made after
                // it was read changes it, so the next tick lists again.
                let list = || {
                    let mut containers = Vec::new();
                    for c in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                        let cname = c.file_name();
                        // The entry's type from the directory listing itself: no path walk and
                        // stat per container per tick (a profile on a real node with 100
                        // containers had path lookups as the agent's largest cost).
                        if let Some(id) = cname.to_str().and_then(|n| container_id(n, self.driver))
                            && c.file_type().is_ok_and(|t| t.is_dir())
                        {
                            containers.push((id, format!("{path}/{}", cname.to_string_lossy())));
                        }
                    }
                    containers.sort();
                    Ok::<_, std::convert::Infallible>(containers)
                };
                let Ok(containers) =
                    cache
                        .pods
                        .get_or_list(self, &path, tick, cache.verify_every, list);
                pods.push(PodCgroup {
                    uid,
                    kube_qos: qos,
                    path,
                    containers,
                });
            }
        }
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        cache.pods.retain_used(tick);
        Ok(pods)
    }
}

/// What [`Layout::discover_with`] listed in each pod's directory on earlier ticks. A pod's
/// directory is listed again when its process count (`pids.current`, read through a kept
/// handle) differs from the count when it was last listed — a container started or stopped —
/// and at least every `verify_every` ticks; on every tick where the count cannot be read (no
/// pids controller). A container that replaces another within one tick, leaving the count
/// as it was, is found by the periodic listing. (On a real node with 100 containers, listing
/// every pod's directory every tick was a seventh of the agent's CPU time.)
#[derive(Debug)]
pub struct Discovery {
    /// Each pod directory's containers (id, relative path), by the pod's path.
    pods: Counted<Vec<(String, String)>>,
    tick: u64,
    verify_every: u64,
}

/// Listings of cgroups (a pod's container directories, a container's PIDs), each kept with
/// the cgroup's process count (`pids.current`) read just before it was made: a new container
/// or process changes the count. A listing is used again while the count is unchanged and the
/// listing is younger than `verify_every` ticks; listed afresh otherwise, and on every tick
/// where the count cannot be read (no pids controller). [`Discovery`] and the executor's PID
/// lists share it.
#[derive(Debug)]
pub struct Counted<T> {
    entries: std::collections::HashMap<String, Listing<T>>,
    /// `pids.current` handles, kept open.
    counts: UsageFiles,
}

#[derive(Debug)]
struct Listing<T> {
    value: T,
    /// The cgroup's process count read just before the listing; `None`: no counter.
    count: Option<u64>,
    /// Tick of the listing.
    listed: u64,
    /// Last tick it was asked for.
    used: u64,
}

impl<T> Default for Counted<T> {
    fn default() -> Self {
        Self {
            entries: std::collections::HashMap::new(),
            counts: UsageFiles::default(),
        }
    }
}

impl<T: Clone> Counted<T> {
    /// Starts a tick: closes the count handles the last one did not read.
    pub fn round(&mut self) {
        self.counts.round();
    }

    /// The listing of the cgroup at `rel` at tick `tick`: the kept one if its process count is
    /// unchanged and it is younger than `verify_every` ticks, else `list()`'s (kept for next
    /// time; an error keeps nothing).
    pub fn get_or_list<E>(
        &mut self,
        layout: &Layout,
        rel: &str,
        tick: u64,
        verify_every: u64,
        list: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let lacked = self.entries.get(rel).is_some_and(|l| l.count.is_none());
        let count = self
            .counts
            .process_count(layout, rel, lacked, tick, verify_every);
        if let Some(l) = self.entries.get_mut(rel)
            && count.is_some()
            && l.count == count
            && tick.saturating_sub(l.listed) < verify_every
        {
            l.used = tick;
            return Ok(l.value.clone());
        }
        let value = list()?;
        self.entries.insert(
            rel.to_owned(),
            Listing {
                value: value.clone(),
                count,
                listed: tick,
                used: tick,
            },
        );
        Ok(value)
    }

    /// Drops the listings not asked for at `tick` (cgroups gone).
    pub fn retain_used(&mut self, tick: u64) {
        self.entries.retain(|_, l| l.used == tick);
    }

    /// Drops every listing.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl Default for Discovery {
    fn default() -> Self {
        Self::new(crate::executor::Known::VERIFY_EVERY)
    }
}

impl Discovery {
    /// Lists a pod directory at least every `verify_every` ticks (1: every tick).
    pub fn new(verify_every: u64) -> Self {
        Self {
            pods: Counted::default(),
            tick: 0,
            verify_every: verify_every.max(1),
        }
    }
}

/// Usage counters of one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, bytes (`memory.usage_in_bytes` / `memory.current`).
    pub memory: u64,
    /// Inactive file pages, bytes (working set = memory − inactive_file).
    pub inactive_file: u64,
    /// Throttled periods.
    pub nr_throttled: u64,
    /// Throttled time, nanoseconds.
    pub throttled_ns: u64,
    /// Memory pressure `some avg10` (%), where PSI is available.
    pub memory_psi_some_avg10: Option<f64>,
    /// CPU pressure `some avg10` (%), where PSI is available.
    pub cpu_psi_some_avg10: Option<f64>,
}

impl Usage {
    /// Working set: usage minus inactive file pages.
    pub fn working_set(&self) -> u64 {
        self.memory.saturating_sub(self.inactive_file)
    }
}

/// The whole file. Not `fs::read_to_string`: its size probe (`statx`) is a wasted system
/// call on cgroup and proc files, which report size 0 or 4096 whatever they hold.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    use std::io::Read;
    let read = |mut f: fs::File| -> io::Result<String> {
        let (mut bytes, mut buf) = (Vec::new(), [0u8; 4096]);
        loop {
            match f.read(&mut buf)? {
                0 => break,
                n => bytes.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    fs::File::open(path)
        .and_then(read)
        .map_err(|e| err(path, e))
}

pub use tide_coldmem::kernel_text::{keyed, psi_some_avg10};

/// Usage files kept open between ticks and read again from offset 0 (`pread`): the kernel
/// renders a cgroup file afresh on every read from the start, and a kept handle saves the
/// path lookup of an open through 8–10 directories of cgroupfs (on a real node with 100
/// containers, the largest share of the agent's CPU time). A cgroup removed since makes its
/// handle fail (`ENODEV`); the file is then opened again by path, once. Only files that are
/// plain counters are kept: `cgroup.procs` is not (cgroup v1 serves a re-read of an open
/// `cgroup.procs` from a PID list it caches for a second).
#[derive(Debug, Default)]
pub struct UsageFiles {
    /// By path (as bytes: hashing a `Path` walks its components).
    files: std::collections::HashMap<std::ffi::OsString, (fs::File, u64)>,
    /// The current round (one per [`UsageFiles::round`]); handles unused in a round are
    /// closed at the next.
    round: u64,
}

impl UsageFiles {
    /// Starts a round of reads: closes the handles the last round did not read (cgroups
    /// gone).
    pub fn round(&mut self) {
        let last = self.round;
        self.files.retain(|_, (_, used)| *used == last);
        self.round += 1;
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn read(&mut self, path: &Path) -> Result<String, CgroupError> {
        let round = self.round;
        if let Some((file, used)) = self.files.get_mut(path.as_os_str()) {
            *used = round;
            if let Ok(text) = read_from_start(file) {
                return Ok(text);
            }
            self.files.remove(path.as_os_str());
        }
        let file = fs::File::open(path).map_err(|e| err(path, e))?;
        let text = read_from_start(&file).map_err(|e| err(path, e))?;
        self.files
            .insert(path.as_os_str().to_owned(), (file, round));
        Ok(text)
    }

    /// The process count (`pids.current`) of the cgroup at `rel` at `tick`, or `None`: no
    /// counter, or counts not wanted (`verify_every` 1: everything is listed every tick). A
    /// cgroup that `lacked` a counter when last asked is asked again only every
    /// `verify_every` ticks (a failed open costs as much as a listing).
    pub(crate) fn process_count(
        &mut self,
        layout: &Layout,
        rel: &str,
        lacked: bool,
        tick: u64,
        verify_every: u64,
    ) -> Option<u64> {
        if verify_every <= 1 || (lacked && !tick.is_multiple_of(verify_every)) {
            return None;
        }
        self.read_u64(&layout.pids_current(rel)?).ok()
    }

    pub(crate) fn read_u64(&mut self, path: &Path) -> Result<u64, CgroupError> {
        self.read(path)?
            .trim()
            .parse()
            .map_err(|_| invalid(path, "not an unsigned integer"))
    }
}

/// The whole file from offset 0, whatever its position. A read shorter than asked is the
/// end: true of regular files and of these cgroup files, which the kernel renders as one
/// record (a seq file returns a record whole when the buffer holds it), so a file is one
/// `pread`, not two.
fn read_from_start(file: &fs::File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = file.read_at(&mut buf[len..], len as u64)?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl Layout {
    /// Reads the usage of the cgroup at `rel`. A missing PSI file is `None`; a missing
    /// accounting file is an error naming it.
    pub fn usage(&self, rel: &str) -> Result<Usage, CgroupError> {
        self.usage_with(rel, &mut UsageFiles::default())
    }

    /// [`Layout::usage`] through handles kept in `files`.
    pub fn usage_with(&self, rel: &str, files: &mut UsageFiles) -> Result<Usage, CgroupError> {
        let p = |c: &str, f: &str| {
            self.path(c, rel)
                .map(|d| d.join(f))
                .ok_or_else(|| invalid(Path::new(c), "controller not mounted"))
        };
        match &self.hierarchy {
            Hierarchy::V1(_) => {
                let stat_path = p("memory", "memory.stat")?;
                let stat = files.read(&stat_path)?;
                let cpu_stat = files.read(&p("cpu", "cpu.stat")?)?;
                Ok(Usage {
                    cpu_ns: files.read_u64(&p("cpuacct", "cpuacct.usage")?)?,
                    memory: files.read_u64(&p("memory", "memory.usage_in_bytes")?)?,
                    inactive_file: keyed(&stat, "total_inactive_file")
                        .or_else(|| keyed(&stat, "inactive_file"))
                        .ok_or_else(|| invalid(&stat_path, "no inactive_file"))?,
                    nr_throttled: keyed(&cpu_stat, "nr_throttled").unwrap_or(0),
                    throttled_ns: keyed(&cpu_stat, "throttled_time").unwrap_or(0),
                    memory_psi_some_avg10: None,
                    cpu_psi_some_avg10: None,
                })
            }
            Hierarchy::V2(_) => {
                let stat_path = p("", "memory.stat")?;
                let stat = files.read(&stat_path)?;
                let cpu_stat_path = p("", "cpu.stat")?;
                let cpu_stat = files.read(&cpu_stat_path)?;
                let memory = files.read_u64(&p("", "memory.current")?)?;
                let mut psi = |f: &str| {
                    p("", f)
                        .ok()
                        .and_then(|path| files.read(&path).ok())
                        .and_then(|t| psi_some_avg10(&t))
                };
                Ok(Usage {
                    cpu_ns: keyed(&cpu_stat, "usage_usec")
                        .ok_or_else(|| invalid(&cpu_stat_path, "no usage_usec"))?
                        .saturating_mul(1000),
                    memory,
                    inactive_file: keyed(&stat, "inactive_file")
                        .ok_or_else(|| invalid(&stat_path, "no inactive_file"))?,
                    nr_throttled: keyed(&cpu_stat, "nr_throttled").unwrap_or(0),
                    throttled_ns: keyed(&cpu_stat, "throttled_usec")
                        .unwrap_or(0)
                        .saturating_mul(1000),
                    memory_psi_some_avg10: psi("memory.pressure"),
                    cpu_psi_some_avg10: psi("cpu.pressure"),
                })
            }
        }
    }

    /// PIDs in the cgroup at `rel` (v1: read from the `memory` hierarchy).
    pub fn pids(&self, rel: &str) -> Result<Vec<u32>, CgroupError> {
        let path = self
            .path("memory", rel)
            .ok_or_else(|| invalid(Path::new("memory"), "controller not mounted"))?
            .join("cgroup.procs");
        Ok(read(&path)?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }
}

/// Writes `value` to `path` unless the file already holds it (compared after trimming; CPU
/// lists compared as sets). Returns whether it wrote.
pub fn write_if_changed(path: &Path, value: &str) -> Result<bool, CgroupError> {
    if same_value(path, &read(path)?, value) {
        return Ok(false);
    }
    fs::write(path, value).map_err(|e| err(path, e))?;
    Ok(true)
}

/// Whether `current` (the content of `path`) already is `value`: equal after trimming, or the
/// same set of CPUs for a `cpuset.cpus` file.
pub(crate) fn same_value(path: &Path, current: &str, value: &str) -> bool {
    current.trim() == value.trim()
        || (path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cpuset.cpus"))
            && current
                .trim()
                .parse::<crate::cpuset::CpuSet>()
                .ok()
                .zip(value.trim().parse().ok())
                .is_some_and(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid shared:16 - cgroup cgroup rw,cpuset
";

    #[test]
    fn root_dir_is_found_or_the_reason_is_named() {
        let dir = std::env::temp_dir().join(format!("tide-cg-root-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kubelet")).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        let layout = |root: &str| Layout {
            hierarchy: Hierarchy::V2(dir.clone()),
            driver: Driver::Systemd,
            root: root.into(),
        };
        assert_eq!(layout("").root_dir().unwrap(), dir);
        assert_eq!(layout("/kubelet/").root_dir().unwrap(), dir.join("kubelet"));
        let e = layout("/nope").root_dir().unwrap_err();
        assert!(e.to_string().contains("nope") && e.source.kind() == io::ErrorKind::NotFound);
        assert!(
            layout("file")
                .root_dir()
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        let v1 = Layout {
            hierarchy: Hierarchy::V1(BTreeMap::new()),
            ..layout("")
        };
        assert!(
            v1.root_dir()
                .unwrap_err()
                .to_string()
                .contains("not mounted")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pod_directory_is_listed_again_when_its_process_count_changes() {
        let dir = std::env::temp_dir().join(format!("tide-discovery-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let pod = dir.join("kubepods/burstable/podab");
        fs::create_dir_all(pod.join("000000000001")).unwrap();
        fs::create_dir_all(dir.join("kubepods/besteffort")).unwrap();
        fs::write(pod.join("pids.current"), "1\n").unwrap();
        let layout = Layout {
            hierarchy: Hierarchy::V2(dir.clone()),
            driver: Driver::Cgroupfs,
            root: String::new(),
        };
        let mut cache = Discovery::new(3);
        let containers = |cache: &mut Discovery| -> Vec<String> {
            let pods = layout.discover_with(cache).unwrap();
            assert_eq!(pods.len(), 1);
            pods[0].containers.iter().map(|c| c.0.clone()).collect()
        };
        assert_eq!(containers(&mut cache), ["000000000001"]);
        // A container replaced another, same count: found when the listing is 3 ticks old.
        fs::remove_dir(pod.join("000000000001")).unwrap();
        fs::create_dir(pod.join("000000000002")).unwrap();
        assert_eq!(containers(&mut cache), ["000000000001"]);
        assert_eq!(containers(&mut cache), ["000000000001"]);
        assert_eq!(containers(&mut cache), ["000000000002"]);
        // A container started: found on the next tick.
        fs::create_dir(pod.join("000000000003")).unwrap();
        fs::write(pod.join("pids.current"), "2\n").unwrap();
        assert_eq!(containers(&mut cache), ["000000000002", "000000000003"]);
        // A new pod is listed at once; a pod without a counter on every tick.
        let other = dir.join("kubepods/besteffort/podcd");
        fs::create_dir_all(other.join("000000000004")).unwrap();
        let pods = layout.discover_with(&mut cache).unwrap();
        assert_eq!(pods.len(), 2);
        fs::create_dir(other.join("000000000005")).unwrap();
        let pods = layout.discover_with(&mut cache).unwrap();
        let cd = pods.iter().find(|p| p.uid == "cd").unwrap();
        assert_eq!(cd.containers.len(), 2, "{cd:?}");
        // And plain discover() lists everything.
        fs::create_dir(pod.join("000000000006")).unwrap();
        let pods = layout.discover().unwrap();
        let ab = pods.iter().find(|p| p.uid == "ab").unwrap();
        assert_eq!(ab.containers.len(), 3, "{ab:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mounts_from_mountinfo() {
        let m = v1_mounts(MOUNTINFO);
        assert_eq!(m["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(!m.contains_key("systemd"));
        assert_eq!(
            v2_mount(MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn names_of_both_drivers() {
        assert_eq!(
            pod_uid("pod1234abcd-0000-4000-8000-00000000beef", Driver::Cgroupfs).as_deref(),
            Some("1234abcd-0000-4000-8000-00000000beef")
        );
        assert_eq!(
            pod_uid(
                "kubepods-burstable-pod1234abcd_0000_4000_8000_00000000beef.slice",
                Driver::Systemd
            )
            .as_deref(),
            Some("1234abcd-0000-4000-8000-00000000beef")
        );
        assert_eq!(pod_uid("kubepods-burstable.slice", Driver::Systemd), None);
        assert_eq!(pod_uid("burstable", Driver::Cgroupfs), None);
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&id, Driver::Cgroupfs).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            container_id(&format!("crio-{id}"), Driver::Cgroupfs).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            container_id(&format!("cri-containerd-{id}.scope"), Driver::Systemd).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            container_id(&format!("crio-conmon-{id}.scope"), Driver::Systemd),
            None
        );
        assert_eq!(container_id("cgroup.procs", Driver::Cgroupfs), None);
    }

    #[test]
    fn pod_paths_of_both_drivers_with_a_cgroup_root() {
        let l = Layout {
            hierarchy: Hierarchy::V2("/sys/fs/cgroup".into()),
            driver: Driver::Systemd,
            root: "/".into(),
        };
        assert_eq!(
            l.pod_dir(KubeQosClass::BestEffort, "ab-cd"),
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podab_cd.slice"
        );
        let l = Layout {
            hierarchy: Hierarchy::V2("/sys/fs/cgroup".into()),
            driver: Driver::Cgroupfs,
            root: "/tide-test-1/".into(),
        };
        assert_eq!(
            l.pod_dir(KubeQosClass::Guaranteed, "ab"),
            "tide-test-1/kubepods/podab"
        );
        assert_eq!(
            l.path("memory", "tide-test-1/kubepods").unwrap(),
            PathBuf::from("/sys/fs/cgroup/tide-test-1/kubepods")
        );
    }
    #[test]
    fn a_flat_tree_without_a_pod_level_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("tide-cgroup-flat-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // cgroupsPerQOS: false with containerd: k8s.io/<container id>, no kubepods.
        fs::create_dir_all(dir.join("k8s.io").join("e".repeat(64))).unwrap();
        let layout = Layout {
            hierarchy: Hierarchy::V2(dir.clone()),
            driver: Driver::Cgroupfs,
            root: String::new(),
        };
        assert!(layout.root_dir().is_ok());
        let why = layout.pods_dir().unwrap_err();
        assert!(why.contains("cgroupsPerQOS: true"), "{why}");
        assert!(layout.discover().unwrap().is_empty());
        fs::create_dir_all(dir.join("kubepods")).unwrap();
        assert_eq!(layout.pods_dir().unwrap(), dir.join("kubepods"));
        let systemd = Layout {
            driver: Driver::Systemd,
            ..layout
        };
        assert!(systemd.pods_dir().unwrap_err().contains("kubepods.slice"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn kept_usage_files_read_the_current_content_and_close_when_unused() {
        let dir = std::env::temp_dir().join(format!("tide-usage-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "5\n").unwrap();
        std::fs::write(&b, "x".repeat(10_000)).unwrap();
        let mut files = UsageFiles::default();
        files.round();
        assert_eq!(files.read_u64(&a).unwrap(), 5);
        assert_eq!(
            files.read(&b).unwrap().len(),
            10_000,
            "longer than one read"
        );
        files.round();
        std::fs::write(&a, "7\n").unwrap();
        assert_eq!(
            files.read_u64(&a).unwrap(),
            7,
            "read again through the kept handle"
        );
        assert_eq!(files.len(), 2);
        // `b` was not read in the last round: its handle is closed.
        files.round();
        assert_eq!(files.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
