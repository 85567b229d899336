//! The reclaim loop the `tide-coldmem` daemon runs (inside a sandbox VM, or on a node for one
//! cgroup): probe what the kernel offers, find cold file bytes, reclaim up to the guard's
//! budget, measure refaults and pressure, adjust the budget, report.
//!
//! Every path is under configurable roots so tests run it against fake trees; the VM test runs
//! it against the guest kernel's real files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::guard::{Guard, GuardSettings, Verdict};
use crate::{damon, files, kernel_text, memcg, mglru};

/// Which detection/reclaim backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// DAMON (paddr, anon filtered out): `stat` to find, `pageout` with a quota to reclaim.
    Damon,
    /// MGLRU generations: ages to find, eviction of old generations to reclaim.
    Mglru,
    /// memcg `inactive_file` to find, `memory.reclaim` to reclaim.
    Memcg,
    /// Files under given directories: `cachestat(2)` and the atime rule to find,
    /// `posix_fadvise(DONTNEED)` to reclaim ([`files`]).
    Files,
}

impl Backend {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Damon => "damon",
            Backend::Mglru => "mglru",
            Backend::Memcg => "memcg",
            Backend::Files => "files",
        }
    }
}

/// Where the kernel's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// sysfs (`/sys`).
    pub sysfs: PathBuf,
    /// debugfs (`/sys/kernel/debug`).
    pub debugfs: PathBuf,
    /// The cgroup v2 directory managed (`/sys/fs/cgroup` for a whole VM).
    pub cgroup: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
}

impl Roots {
    fn damon_admin(&self) -> PathBuf {
        self.sysfs.join("kernel/mm/damon/admin")
    }
    fn lru_gen(&self) -> PathBuf {
        self.debugfs.join("lru_gen")
    }
}

/// What the kernel offers, in order of preference. With MGLRU enabled, MGLRU comes before
/// DAMON: MGLRU's `folio_mark_accessed` records page-cache reads in its own reference counts
/// and leaves the idle flag DAMON's physical-address check reads untouched, so DAMON would
/// take unmapped page cache read through `read(2)` for idle (seen in the VM test: the hot set
/// was paged out and refaulted). DAMON is preferred when MGLRU is off. The files backend comes
/// first when directories are given for it (the operator asked for it) and the kernel has
/// `cachestat(2)` (tried on `proc/self/exe`).
pub fn probe(roots: &Roots, file_dirs: &[PathBuf]) -> Vec<Backend> {
    let mut out = Vec::new();
    if !file_dirs.is_empty() && files::supported(&roots.proc.join("self/exe")) {
        out.push(Backend::Files);
    }
    let damon = roots.damon_admin().join("kdamonds/nr_kdamonds").exists();
    let mglru_on = std::fs::read_to_string(roots.sysfs.join("kernel/mm/lru_gen/enabled"))
        .ok()
        .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|v| v & 1 == 1);
    if mglru_on && std::fs::read_to_string(roots.lru_gen()).is_ok() {
        out.push(Backend::Mglru);
    }
    if damon {
        out.push(Backend::Damon);
    }
    if roots.cgroup.join("memory.stat").exists() {
        out.push(Backend::Memcg);
    }
    out
}

/// Cold file bytes of one child cgroup of the daemon's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CgroupCold {
    /// The child's path in the cgroup hierarchy (`/kubepods.slice`).
    pub path: String,
    /// Its cold file bytes, its subtree's included.
    pub cold_bytes: u64,
}

/// Most child cgroups listed in a status.
const MAX_CGROUPS: usize = 4096;

/// One period's outcome (the daemon's JSON status line).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Backend used.
    pub backend: Backend,
    /// Cold file bytes found in the daemon's cgroup (the node's, at the root; MGLRU always
    /// counts the whole node).
    pub cold_bytes: u64,
    /// Age threshold behind them, ms (0 for memcg: the inactive list has no ages).
    pub age_ms: u64,
    /// The same per child cgroup, by path (memcg: each child's `inactive_file`; MGLRU: the
    /// cold generations of its subtree's memcgs; DAMON, whose physical regions have no owner:
    /// what each child's file pages shrank by in the period, plus what is still cold split by
    /// its share of `inactive_file`; files: none, they go by directory, not cgroup).
    pub cgroups: Vec<CgroupCold>,
    /// Bytes asked to reclaim.
    pub requested_bytes: u64,
    /// Bytes the cgroup's file pages shrank by (measured, not claimed).
    pub reclaimed_bytes: u64,
    /// File refaults since the previous period, pages.
    pub refaults: u64,
    /// Memory PSI `some avg10`, if available.
    pub psi_some_avg10: Option<f64>,
    /// The guard's budget for the next period, bytes.
    pub next_budget: u64,
    /// What the guard decided.
    pub verdict: String,
    /// The most the guard may reclaim per period (the host's target sets it), bytes.
    pub max_bytes_per_period: u64,
    /// CPU time this process has used so far, seconds (the scan and reclaim cost).
    pub cpu_seconds: f64,
    /// CPU time the kernel's `kdamond` thread has used so far, seconds (DAMON only: its
    /// sampling runs there, not in this process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdamond_cpu_seconds: Option<f64>,
    /// Problems met (the period still completes).
    pub errors: Vec<String>,
}

/// CPU time (user + system) of a process, seconds, from its `stat` file.
#[allow(clippy::cast_precision_loss)]
fn stat_cpu_seconds(stat: &Path) -> Option<f64> {
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|s| kernel_text::proc_stat_cpu_ticks(&s))
        .map(|t| t as f64 / 100.0)
}

/// CPU time (user + system) this process has used, seconds, from `/proc/self/stat`.
pub fn own_cpu_seconds() -> f64 {
    stat_cpu_seconds(Path::new("/proc/self/stat")).unwrap_or(0.0)
}

/// CPU time (user + system) of the running kdamond 0 under `admin`, seconds, read from
/// `proc/<pid>/stat`; `None` when none runs.
pub fn kdamond_cpu_seconds(admin: &Path, proc: &Path) -> Option<f64> {
    let pid: u32 = std::fs::read_to_string(admin.join("kdamonds/0/pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    stat_cpu_seconds(&proc.join(pid.to_string()).join("stat"))
}

/// The loop's state.
#[derive(Debug)]
pub struct Reclaimer {
    /// Roots.
    pub roots: Roots,
    /// Backend in use.
    pub backend: Backend,
    /// Pages idle this long are cold, ms.
    pub min_age_ms: u64,
    /// The period, ms (DAMON's pageout quota is spread over it).
    pub period_ms: u64,
    /// The guard.
    pub guard: Guard,
    page_size: u64,
    last_refaults: Option<u64>,
    damon_started: bool,
    /// How often DAMON's reclaim is measured against the budget during a period.
    budget_check: std::time::Duration,
    /// The pageout scheme's cumulative (tried, applied) bytes at the last retune.
    pageout_seen: Option<(u64, u64)>,
    /// The pageout yield measured between the last two retunes: (region bytes tried, bytes
    /// paged out).
    pageout_yield: Option<(u64, u64)>,
    /// The operator's DAMON monitoring overrides: sample µs, aggregation µs, most regions.
    damon_overrides: (Option<u64>, Option<u64>, Option<u64>),
    /// The last `commit` (or start) to kdamond: when, with which monitoring and min age (µs).
    damon_committed: Option<(std::time::Instant, damon::Monitoring, u64)>,
    /// The least time between commits; `None`: a pageout pass and an aggregation
    /// ([`Reclaimer::damon_commit_due`]).
    damon_commit_gap: Option<std::time::Duration>,
    /// The pageout quota is closed (the budget was reclaimed) until the next retune.
    damon_closed: bool,
    /// Directories the files backend scans.
    pub files: Vec<PathBuf>,
    scanned: Vec<files::CachedFile>,
    dropped: Option<u64>,
}

impl Reclaimer {
    /// A reclaimer on `backend`.
    pub fn new(roots: Roots, backend: Backend, min_age_ms: u64, guard: GuardSettings) -> Self {
        Self {
            roots,
            backend,
            min_age_ms,
            period_ms: 10_000,
            guard: Guard::new(guard),
            page_size: 4096,
            last_refaults: None,
            damon_started: false,
            // kdamond pages out in passes a min age and an aggregation apart; a check once a
            // second sees a pass's work soon after it.
            budget_check: std::time::Duration::from_secs(1),
            pageout_seen: None,
            pageout_yield: None,
            damon_overrides: (None, None, None),
            damon_committed: None,
            damon_commit_gap: None,
            damon_closed: false,
            files: Vec::new(),
            scanned: Vec::new(),
            dropped: None,
        }
    }

    /// The same reclaimer with a period of `ms` milliseconds (default 10 s).
    #[must_use]
    pub fn with_period_ms(mut self, ms: u64) -> Self {
        self.period_ms = ms.max(1);
        self
    }

    /// The same reclaimer with DAMON's sampling and aggregation intervals (µs) and most
    /// regions set by the operator; those not given follow the min age
    /// ([`damon::Monitoring::for_min_age`]).
    #[must_use]
    pub fn with_damon_monitoring(
        mut self,
        sample_us: Option<u64>,
        aggr_us: Option<u64>,
        max_regions: Option<u64>,
    ) -> Self {
        self.damon_overrides = (sample_us, aggr_us, max_regions);
        self
    }

    /// DAMON's monitoring attributes for the current min age and the operator's overrides.
    pub fn damon_monitoring(&self) -> damon::Monitoring {
        let (s, a, r) = self.damon_overrides;
        damon::Monitoring::for_min_age(self.min_age_ms.saturating_mul(1000)).with(s, a, r)
    }

    /// Whether the daemon may `commit` to kdamond now. Every commit restarts the pageout
    /// scheme's apply timer, and the daemon would retune every period; periods shorter than a
    /// pass would then never see one. So a commit waits for a pass and an aggregation since
    /// the last one, unless the monitoring or the min age changed (the host's new target).
    fn damon_commit_due(&self) -> bool {
        let m = self.damon_monitoring();
        let age_us = self.min_age_ms.saturating_mul(1000);
        match self.damon_committed {
            None => true,
            Some((at, cm, cage)) if cm == m && cage == age_us => {
                let gap = self.damon_commit_gap.unwrap_or_else(|| {
                    std::time::Duration::from_micros(
                        damon::pageout_interval_us(age_us, m.aggr_us).saturating_add(m.aggr_us),
                    )
                });
                at.elapsed() >= gap
            }
            Some(_) => true,
        }
    }

    fn damon_commit(&mut self, quota: u64) -> Result<(), String> {
        let m = self.damon_monitoring();
        let age_us = self.min_age_ms.saturating_mul(1000);
        let writes = damon::retune_writes(&m, age_us, quota, self.period_ms);
        damon::apply(&self.roots.damon_admin(), &writes)?;
        self.damon_committed = Some((std::time::Instant::now(), m, age_us));
        Ok(())
    }

    /// The same reclaimer with the directories the files backend scans.
    #[must_use]
    pub fn with_files(mut self, dirs: Vec<PathBuf>) -> Self {
        self.files = dirs;
        self
    }

    /// Applies the host's target from the next period on: the age threshold, the most bytes
    /// per period, and a one-time raise of the budget to what the host asks reclaimed.
    pub fn apply_target(&mut self, t: &crate::proto::Target) {
        let s = &mut self.guard.settings;
        s.max_bytes = t.max_bytes_per_period.max(s.min_bytes);
        self.min_age_ms = t.min_age_ms;
        self.guard.budget = self
            .guard
            .budget
            .max(t.reclaim_bytes)
            .clamp(s.min_bytes, s.max_bytes);
    }

    /// The same reclaimer with the guard's first budget at `bytes`.
    #[must_use]
    pub fn with_initial_budget(mut self, bytes: u64) -> Self {
        self.guard = Guard::starting_at(self.guard.settings, bytes);
        self
    }

    fn file_bytes(&self) -> Result<memcg::FileStats, String> {
        memcg::read(&self.roots.cgroup)
    }

    /// The child cgroups of the daemon's cgroup (directories with a `memory.stat`), by
    /// name, with their paths in the hierarchy.
    fn children(&self) -> Vec<(String, PathBuf)> {
        let mountinfo =
            std::fs::read_to_string(self.roots.proc.join("self/mountinfo")).unwrap_or_default();
        let base =
            kernel_text::cgroup2_path(&mountinfo, &self.roots.cgroup).unwrap_or_else(|| "/".into());
        let Ok(rd) = std::fs::read_dir(&self.roots.cgroup) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("memory.stat").is_file())
            .filter_map(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((format!("{}/{name}", base.trim_end_matches('/')), p))
            })
            .collect();
        out.sort();
        out.truncate(MAX_CGROUPS);
        out
    }

    /// `f(path, dir)` for each child cgroup that yields a figure.
    fn per_child(&self, f: impl Fn(&str, &Path) -> Option<u64>) -> Vec<CgroupCold> {
        self.children()
            .into_iter()
            .filter_map(|(path, dir)| {
                let cold_bytes = f(&path, &dir)?;
                Some(CgroupCold { path, cold_bytes })
            })
            .collect()
    }

    /// Each child's file bytes (`inactive_file + active_file`), by path.
    fn children_file_bytes(&self) -> BTreeMap<String, u64> {
        self.children()
            .into_iter()
            .filter_map(|(path, dir)| {
                let f = memcg::read(&dir).ok()?;
                Some((path, f.total()))
            })
            .collect()
    }

    /// DAMON's per-child split (its physical regions have no owner): what each child's file
    /// pages shrank by since `before` (kdamond paged it out), plus `still_cold` split by each
    /// child's share of the cgroup's `inactive_file` (`total_inactive`).
    fn damon_breakdown(
        &self,
        still_cold: u64,
        total_inactive: u64,
        before: &BTreeMap<String, u64>,
    ) -> Vec<CgroupCold> {
        self.per_child(|path, dir| {
            let f = memcg::read(dir).ok()?;
            let share = u128::from(f.inactive_file) * u128::from(still_cold)
                / u128::from(total_inactive.max(1));
            let share = u64::try_from(share).unwrap_or(u64::MAX).min(still_cold);
            let freed = before.get(path).map_or(0, |b| b.saturating_sub(f.total()));
            Some(share.saturating_add(freed))
        })
    }

    /// DAMON's cold file bytes now: the bytes of the regions its counting scheme matches,
    /// capped at the cgroup's `inactive_file`. The regions are physical memory never accessed
    /// for `min_age`, free and anonymous memory included, and idle page cache sits on the
    /// inactive list.
    fn damon_cold(&self, inactive_file: Option<u64>) -> Result<u64, String> {
        let admin = self.roots.damon_admin();
        let tried = damon::read_tried_bytes(&admin)
            .or_else(|_| damon::read_stats(&admin, damon::DETECT_SCHEME).map(|s| s.sz_tried))?;
        Ok(inactive_file.map_or(tried, |i| tried.min(i)))
    }

    fn read_generations(&self) -> Result<Vec<mglru::Generation>, String> {
        let path = self.roots.lru_gen();
        std::fs::read_to_string(&path)
            .map(|t| mglru::parse(&t))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// One command to `lru_gen`, in its own write (the kernel stops at the first failing
    /// command of a write). Opened for appending and never created: the real file ignores the
    /// offset, and a fake one in a test keeps every command.
    fn lru_gen_command(&self, cmd: &str) -> Result<(), String> {
        use std::io::Write;
        let path = self.roots.lru_gen();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{cmd}\n").as_bytes()))
            .map_err(|e| format!("{}: {cmd:?}: {e}", path.display()))
    }

    /// MGLRU: starts a new generation in every lruvec, so that by the next period the pages
    /// not accessed since now sit in evictable generations.
    fn age(&self) -> Result<(), String> {
        let gens = self.read_generations()?;
        let can_swap = std::fs::read_to_string(self.roots.proc.join("meminfo"))
            .ok()
            .and_then(|t| kernel_text::kib_field_bytes(&t, "SwapTotal"))
            .is_some_and(|b| b > 0);
        mglru::aging_commands(&gens, can_swap)
            .iter()
            .try_for_each(|cmd| self.lru_gen_command(cmd))
    }

    /// Cold bytes, their age threshold, and the per-child figures taken with them (DAMON's
    /// come at the period's end). `file` is the cgroup's `memory.stat`, read by the caller.
    fn detect(
        &mut self,
        file: &Result<memcg::FileStats, String>,
    ) -> Result<(u64, u64, Vec<CgroupCold>), String> {
        match self.backend {
            Backend::Files => {
                let mountinfo = std::fs::read_to_string(self.roots.proc.join("self/mountinfo"))
                    .unwrap_or_default();
                let (found, errors) = files::scan(
                    &self.files,
                    &mountinfo,
                    std::time::SystemTime::now(),
                    self.page_size,
                    100_000,
                );
                self.scanned = found;
                let cold = files::cold_bytes(
                    &self.scanned,
                    std::time::Duration::from_millis(self.min_age_ms),
                );
                match errors.first() {
                    // The cold files found still count; the first problem is reported.
                    Some(e) if cold == 0 => Err(format!("{e} ({} problems)", errors.len())),
                    _ => Ok((cold, self.min_age_ms, Vec::new())),
                }
            }
            Backend::Memcg => {
                let cold = file.clone()?.inactive_file;
                let children =
                    self.per_child(|_, dir| memcg::read(dir).ok().map(|f| f.inactive_file));
                Ok((cold, 0, children))
            }
            Backend::Mglru => {
                let gens = self.read_generations()?;
                let (age, page) = (self.min_age_ms, self.page_size);
                let children =
                    self.per_child(|path, _| Some(mglru::cold_file_bytes(&gens, path, age, page)));
                Ok((mglru::cold_file_bytes(&gens, "/", age, page), age, children))
            }
            Backend::Damon => {
                let admin = self.roots.damon_admin();
                // A kdamond this daemon (an earlier run) already started keeps running.
                let running = std::fs::read_to_string(admin.join("kdamonds/0/state"))
                    .is_ok_and(|s| s.trim() == "on");
                if !self.damon_started && !running {
                    let iomem =
                        std::fs::read_to_string(self.roots.proc.join("iomem")).unwrap_or_default();
                    let region = damon::system_ram(&iomem)
                        .into_iter()
                        .max_by_key(|(s, e)| e - s)
                        .ok_or("no System RAM range in /proc/iomem (needs root)")?;
                    // The guard's budget bounds what kdamond pages out per period, as it
                    // bounds the other backends (spread over the period's applications).
                    let cfg = damon::DamonConfig {
                        monitoring: self.damon_monitoring(),
                        min_age_us: self.min_age_ms.saturating_mul(1000),
                        action: damon::SchemeAction::Pageout,
                        quota_bytes: damon::pageout_quota(self.guard.budget, None),
                        period_ms: self.period_ms,
                        region,
                    };
                    damon::apply(&admin, &damon::setup_writes(&cfg))?;
                    self.damon_started = true;
                    // A new kdamond's scheme stats start at zero.
                    self.pageout_seen = Some((0, 0));
                    self.damon_committed =
                        Some((std::time::Instant::now(), cfg.monitoring, cfg.min_age_us));
                }
                let inactive = file.as_ref().ok().map(|f| f.inactive_file);
                Ok((self.damon_cold(inactive)?, self.min_age_ms, Vec::new()))
            }
        }
    }

    fn reclaim(&mut self, cold: u64, budget: u64) -> Result<u64, String> {
        let want = cold.min(budget);
        // DAMON is retuned whenever a commit is due, so a new budget or age reaches kdamond
        // even while nothing is cold.
        if want == 0 && self.backend != Backend::Damon {
            return Ok(0);
        }
        match self.backend {
            Backend::Files => {
                let chosen = files::select(
                    &self.scanned,
                    std::time::Duration::from_millis(self.min_age_ms),
                    want,
                );
                let asked = chosen
                    .iter()
                    .map(|f| f.cached_bytes)
                    .fold(0, u64::saturating_add);
                let (dropped, errors) = files::reclaim(&chosen, self.page_size);
                self.dropped = Some(dropped);
                match errors.first() {
                    Some(e) if dropped == 0 => Err(e.clone()),
                    _ => Ok(asked),
                }
            }
            Backend::Memcg => memcg::reclaim(&self.roots.cgroup, want).map(|()| want),
            Backend::Mglru => {
                let gens = self.read_generations()?;
                for cmd in mglru::evict_commands(&gens, self.min_age_ms, want / self.page_size) {
                    self.lru_gen_command(&cmd)?;
                }
                Ok(want)
            }
            Backend::Damon => {
                // The pageout scheme runs by itself: its quota (region bytes) follows the
                // budget and the last measured yield, and its age threshold and monitoring
                // follow the host's target. Retuned when a commit is due, not every period.
                if !self.damon_commit_due() {
                    return Ok(want);
                }
                let admin = self.roots.damon_admin();
                if let Ok(now) = damon::read_stats(&admin, damon::PAGEOUT_SCHEME) {
                    if let Some((tried, applied)) = self.pageout_seen {
                        let d = (
                            now.sz_tried.saturating_sub(tried),
                            now.sz_applied.saturating_sub(applied),
                        );
                        if d.0 >= damon::MIN_YIELD_SAMPLE {
                            self.pageout_yield = Some(d);
                        }
                    }
                    self.pageout_seen = Some((now.sz_tried, now.sz_applied));
                }
                self.damon_commit(damon::pageout_quota(budget, self.pageout_yield))?;
                self.damon_closed = false;
                Ok(want)
            }
        }
    }

    /// One period: detect, reclaim, measure, adjust. `settle` runs between the reclaim and the
    /// measurement (the daemon sleeps; tests change the fake files).
    pub fn period(&mut self, settle: impl FnOnce()) -> Status {
        let mut settle = Some(settle);
        self.period_in_steps(|| {
            if let Some(f) = settle.take() {
                f();
            }
            false
        })
    }

    /// DAMON pages out on its own during the period: once the file bytes reclaimed since
    /// `before` reach `budget`, its pageout quota closes (a page per window) until a later
    /// period's retune. Returns whether it is closed.
    fn hold_budget(&mut self, before: &memcg::FileStats, budget: u64) -> Result<bool, String> {
        if self.damon_closed {
            return Ok(true);
        }
        if before.total().saturating_sub(self.file_bytes()?.total()) < budget {
            return Ok(false);
        }
        self.damon_commit(0)?;
        self.damon_closed = true;
        Ok(true)
    }

    /// [`Reclaimer::period`] with the time between reclaim and measurement in steps: `step`
    /// sleeps a while and says whether the period goes on. Between steps, once a second, DAMON's
    /// pageout is held to the budget: once the file bytes reclaimed reach it, the pageout quota
    /// closes until the next period.
    pub fn period_in_steps(&mut self, mut step: impl FnMut() -> bool) -> Status {
        let mut errors = Vec::new();
        let file_before = self.file_bytes();
        let children_before = match self.backend {
            Backend::Damon => self.children_file_bytes(),
            _ => BTreeMap::new(),
        };
        let (cold_bytes, age_ms, mut cgroups) = self.detect(&file_before).unwrap_or_else(|e| {
            errors.push(e);
            (0, 0, Vec::new())
        });
        let before = file_before.ok();
        let budget = self.guard.budget;
        let requested = self.reclaim(cold_bytes, budget).unwrap_or_else(|e| {
            errors.push(e);
            0
        });
        if self.backend == Backend::Mglru
            && let Err(e) = self.age()
        {
            errors.push(e);
        }
        let mut held = self.backend != Backend::Damon || before.is_none();
        let mut checked = std::time::Instant::now();
        while step() {
            if let (false, Some(b)) = (held, &before)
                && checked.elapsed() >= self.budget_check
            {
                checked = std::time::Instant::now();
                held = self.hold_budget(b, budget).unwrap_or_else(|e| {
                    errors.push(e);
                    true
                });
            }
        }
        let after = self.file_bytes().ok();
        let reclaimed_bytes = match (self.dropped.take(), &before, &after) {
            // The files backend measured each file before and after.
            (Some(d), _, _) => d,
            (None, Some(b), Some(a)) => b.total().saturating_sub(a.total()),
            _ => 0,
        };
        // kdamond pages out on its own during the period: what it found cold is what it
        // reclaimed plus what is still cold at the end (the host credits the latter).
        let cold_bytes = match self.backend {
            Backend::Damon => {
                let inactive = after.map(|a| a.inactive_file);
                match self.damon_cold(inactive) {
                    Ok(now) => {
                        let total = inactive.unwrap_or(0);
                        cgroups = self.damon_breakdown(now, total, &children_before);
                        now.saturating_add(reclaimed_bytes)
                    }
                    // The estimate from the period's start stands; the error is reported.
                    Err(e) => {
                        errors.push(e);
                        cold_bytes
                    }
                }
            }
            _ => cold_bytes,
        };
        let refaults_total = after.map(|a| a.refaults);
        let refaults = match (self.last_refaults, refaults_total) {
            (Some(p), Some(n)) => n.saturating_sub(p),
            _ => 0,
        };
        self.last_refaults = refaults_total.or(self.last_refaults);
        let psi_some_avg10 = std::fs::read_to_string(self.roots.cgroup.join("memory.pressure"))
            .ok()
            .and_then(|t| kernel_text::psi_some_avg10(&t));
        let verdict = self.guard.update(
            reclaimed_bytes.max(requested),
            refaults.saturating_mul(self.page_size),
            psi_some_avg10,
        );
        Status {
            backend: self.backend,
            cold_bytes,
            age_ms,
            cgroups,
            requested_bytes: requested,
            reclaimed_bytes,
            refaults,
            psi_some_avg10,
            next_budget: self.guard.budget,
            verdict: match verdict {
                Verdict::Grow => "grow",
                Verdict::BackOffRefaults => "back-off-refaults",
                Verdict::BackOffPressure => "back-off-pressure",
            }
            .into(),
            max_bytes_per_period: self.guard.settings.max_bytes,
            cpu_seconds: own_cpu_seconds(),
            kdamond_cpu_seconds: (self.backend == Backend::Damon)
                .then(|| kdamond_cpu_seconds(&self.roots.damon_admin(), &self.roots.proc))
                .flatten(),
            errors,
        }
    }
}

/// Convenience for tests and the binary: the roots of a whole machine or VM.
pub fn system_roots() -> Roots {
    Roots {
        sysfs: Path::new("/sys").to_path_buf(),
        debugfs: Path::new("/sys/kernel/debug").to_path_buf(),
        cgroup: Path::new("/sys/fs/cgroup").to_path_buf(),
        proc: Path::new("/proc").to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> (PathBuf, Roots) {
        let dir = std::env::temp_dir().join(format!("tide-coldmem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let roots = Roots {
            sysfs: dir.join("sys"),
            debugfs: dir.join("debug"),
            cgroup: dir.join("cgroup"),
            proc: dir.join("proc"),
        };
        std::fs::create_dir_all(&roots.cgroup).unwrap();
        std::fs::create_dir_all(&roots.debugfs).unwrap();
        std::fs::create_dir_all(&roots.proc).unwrap();
        std::fs::create_dir_all(roots.sysfs.join("kernel/mm/lru_gen")).unwrap();
        (dir, roots)
    }

    fn stat(inactive: u64, active: u64, refaults: u64) -> String {
        format!(
            "anon 0\nfile {}\nactive_file {active}\ninactive_file {inactive}\nworkingset_refault_file {refaults}\n",
            inactive + active
        )
    }

    #[test]
    fn probes_in_order_of_preference() {
        let (dir, roots) = tree("probe");
        assert!(probe(&roots, &[]).is_empty());
        std::fs::write(roots.cgroup.join("memory.stat"), stat(1, 1, 0)).unwrap();
        assert_eq!(probe(&roots, &[]), vec![Backend::Memcg]);
        std::fs::write(roots.sysfs.join("kernel/mm/lru_gen/enabled"), "0x0007\n").unwrap();
        std::fs::write(roots.debugfs.join("lru_gen"), "").unwrap();
        assert_eq!(probe(&roots, &[]), vec![Backend::Mglru, Backend::Memcg]);
        std::fs::write(roots.sysfs.join("kernel/mm/lru_gen/enabled"), "0x0000\n").unwrap();
        assert_eq!(probe(&roots, &[]), vec![Backend::Memcg]);
        // Files are offered only where cachestat(2) can be tried (this fake /proc has no
        // self/exe); the real kernel's case is tests/files.rs.
        assert_eq!(
            probe(&roots, std::slice::from_ref(&dir)),
            vec![Backend::Memcg]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memcg_period_reclaims_within_budget_and_backs_off_on_refaults() {
        let (dir, roots) = tree("memcg");
        let cg = roots.cgroup.clone();
        std::fs::write(cg.join("memory.stat"), stat(500 << 20, 100 << 20, 0)).unwrap();
        std::fs::write(cg.join("memory.reclaim"), "").unwrap();
        let mut r = Reclaimer::new(roots, Backend::Memcg, 0, GuardSettings::default());
        let st = r.period(|| {
            std::fs::write(cg.join("memory.stat"), stat(496 << 20, 100 << 20, 0)).unwrap()
        });
        assert_eq!(st.cold_bytes, 500 << 20);
        assert_eq!(
            st.requested_bytes,
            4 << 20,
            "the guard starts at its minimum"
        );
        assert_eq!(
            std::fs::read_to_string(cg.join("memory.reclaim")).unwrap(),
            (4u64 << 20).to_string()
        );
        assert_eq!(st.reclaimed_bytes, 4 << 20);
        assert_eq!(st.verdict, "grow");
        assert_eq!(st.next_budget, (4 << 20) + (32 << 20));
        // Next period: reclaiming made 2,000 pages (8 MiB) come back — hot data: back off.
        let st = r.period(|| {
            std::fs::write(cg.join("memory.stat"), stat(460 << 20, 100 << 20, 2_000)).unwrap()
        });
        assert_eq!(st.refaults, 2_000);
        assert_eq!(st.verdict, "back-off-refaults");
        assert_eq!(st.next_budget, 18 << 20);
        let json = serde_json::to_string(&st).unwrap();
        assert!(json.contains("\"backend\":\"memcg\""), "{json}");
        // The host asks for 300 MiB within a 256 MiB cap: the next budget is the cap.
        r.apply_target(&crate::proto::Target {
            max_bytes_per_period: 256 << 20,
            min_age_ms: 5_000,
            reclaim_bytes: 300 << 20,
        });
        assert_eq!((r.guard.budget, r.min_age_ms), (256 << 20, 5_000));
        let st = r.period(|| {});
        assert_eq!(st.requested_bytes, 256 << 20);
        assert_eq!(st.max_bytes_per_period, 256 << 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mglru_period_evicts_cold_generations_then_ages() {
        let (dir, roots) = tree("mglru");
        std::fs::write(roots.cgroup.join("memory.stat"), stat(0, 0, 0)).unwrap();
        std::fs::write(roots.proc.join("meminfo"), "SwapTotal:  0 kB\n").unwrap();
        let lru = roots.debugfs.join("lru_gen");
        let gens = "memcg 1 /\n node 0\n  3 90000 0 20000\n  4 60000 0 100\n  5 500 0 9000\n";
        std::fs::write(&lru, gens).unwrap();
        let mut r = Reclaimer::new(
            roots.clone(),
            Backend::Mglru,
            30_000,
            GuardSettings {
                min_bytes: 1 << 30,
                max_bytes: 1 << 30,
                ..GuardSettings::default()
            },
        );
        let st = r.period(|| {});
        // Gen 3 is cold (gen 4 was made 60 s ago); gen 4 is among the two youngest.
        assert_eq!(st.cold_bytes, 20_000 * 4096);
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        // The eviction, then the aging for the next period, each in its own write.
        assert_eq!(
            std::fs::read_to_string(&lru).unwrap(),
            format!("{gens}- 1 0 3 0 20000\n+ 1 0 5 0 1\n")
        );
        // With swap, anon pages age too.
        std::fs::write(roots.proc.join("meminfo"), "SwapTotal:  1024 kB\n").unwrap();
        std::fs::write(&lru, gens).unwrap();
        r.period(|| {});
        assert!(
            std::fs::read_to_string(&lru)
                .unwrap()
                .ends_with("+ 1 0 5 1 1\n")
        );
        // A missing lru_gen is reported, never created.
        std::fs::remove_file(&lru).unwrap();
        let st = r.period(|| {});
        assert!(st.errors[0].contains("lru_gen"), "{:?}", st.errors);
        assert!(!lru.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_error_in_the_status_not_a_crash() {
        let (dir, roots) = tree("missing");
        let mut r = Reclaimer::new(roots, Backend::Memcg, 0, GuardSettings::default());
        let st = r.period(|| {});
        assert_eq!(st.cold_bytes, 0);
        assert!(st.errors[0].contains("memory.stat"), "{:?}", st.errors);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fake DAMON sysfs tree with the directories `cfg`'s setup writes to, /proc/iomem and
    /// the cgroup's memory.stat.
    fn damon_tree(name: &str, cfg: &damon::DamonConfig) -> (PathBuf, Roots) {
        let (dir, roots) = tree(name);
        let admin = roots.damon_admin();
        for (p, _) in damon::setup_writes(cfg) {
            std::fs::create_dir_all(admin.join(p).parent().unwrap()).unwrap();
        }
        std::fs::write(
            roots.proc.join("iomem"),
            "00001000-0009fbff : System RAM\n00100000-3ffdffff : System RAM\n",
        )
        .unwrap();
        std::fs::write(
            roots.cgroup.join("memory.stat"),
            stat(400 << 20, 64 << 20, 0),
        )
        .unwrap();
        (dir, roots)
    }

    fn set_pageout_stats(admin: &Path, tried: u64, applied: u64) {
        let d = admin.join("kdamonds/0/contexts/0/schemes/1/stats");
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in [
            ("sz_tried", tried),
            ("sz_applied", applied),
            ("qt_exceeds", 0),
        ] {
            std::fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
    }

    fn set_tried(admin: &Path, bytes: u64) {
        let d = admin.join("kdamonds/0/contexts/0/schemes/0/tried_regions");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("total_bytes"), format!("{bytes}\n")).unwrap();
    }

    /// A DAMON reclaimer on a fake tree with a pageout setup, 400 MiB tried: 4 s age, 64 MiB
    /// first budget, 15 s periods. (tree, DAMON admin dir, cgroup dir, reclaimer)
    fn damon_reclaimer(name: &str) -> (PathBuf, PathBuf, PathBuf, Reclaimer) {
        let pageout = damon::DamonConfig {
            action: damon::SchemeAction::Pageout,
            ..damon::DamonConfig::default()
        };
        let (dir, roots) = damon_tree(name, &pageout);
        let admin = roots.damon_admin();
        set_tried(&admin, 400 << 20);
        let cg = roots.cgroup.clone();
        let r = Reclaimer::new(roots, Backend::Damon, 4_000, GuardSettings::default())
            .with_initial_budget(64 << 20)
            .with_period_ms(15_000);
        (dir, admin, cg, r)
    }

    #[test]
    fn damon_quota_is_the_budget_per_period_and_follows_the_target() {
        let (dir, admin, cg, mut r) = damon_reclaimer("damon");
        let read = |rel: &str| {
            std::fs::read_to_string(admin.join("kdamonds/0/contexts/0/schemes").join(rel)).unwrap()
        };
        set_pageout_stats(&admin, 0, 0);
        // kdamond pages out 300 MiB during the period, trying 1200 MiB of regions; 100 MiB of
        // page cache stay cold, in 700 MiB of idle regions (the rest is free memory).
        let st = r.period(|| {
            std::fs::write(cg.join("memory.stat"), stat(100 << 20, 64 << 20, 0)).unwrap();
            set_tried(&admin, 700 << 20);
            set_pageout_stats(&admin, 1200 << 20, 300 << 20);
        });
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        assert_eq!(st.reclaimed_bytes, 300 << 20);
        assert_eq!(st.cold_bytes, 400 << 20, "paged out + still cold");
        // 64 MiB per 15 s period, no yield measured yet: four budgets of region bytes; pageout
        // every 5 s (the min age and an aggregation), so a third of it per application.
        assert_eq!(
            read("1/quotas/bytes"),
            ((4 * 5 * (64u64 << 20)) / 15).to_string()
        );
        assert_eq!(read("1/quotas/reset_interval_ms"), "2500");
        assert_eq!(read("1/apply_interval_us"), "5000000");
        for s in ["0", "1"] {
            assert_eq!(
                read(&format!("{s}/access_pattern/age/min")),
                "4",
                "4 s in 1 s aggregations"
            );
        }
        // The host's target: 10 s age, 256 MiB asked; it reaches kdamond though nothing is
        // cold right now.
        set_tried(&admin, 0);
        r.apply_target(&crate::proto::Target {
            max_bytes_per_period: 1 << 30,
            min_age_ms: 10_000,
            reclaim_bytes: 256 << 20,
        });
        r.period(|| {});
        // Monitoring follows the age: 2.5 s aggregations of two 1.25 s samples, four of them.
        let attr = |rel: &str| {
            std::fs::read_to_string(
                admin
                    .join("kdamonds/0/contexts/0/monitoring_attrs")
                    .join(rel),
            )
            .unwrap()
        };
        assert_eq!(attr("intervals/aggr_us"), "2500000");
        assert_eq!(attr("intervals/sample_us"), "1250000");
        assert_eq!(read("0/access_pattern/age/min"), "4");
        assert_eq!(read("1/access_pattern/age/min"), "4");
        // The quota, in region bytes, is twice the budget over the measured yield (a quarter),
        // five sixths of it per application every 12.5 s (at most 2.5 s before the period ends).
        assert_eq!(
            read("1/quotas/bytes"),
            ((5 * (2048u64 << 20)) / 6).to_string()
        );
        assert_eq!(read("1/quotas/reset_interval_ms"), "6250");
        assert_eq!(read("1/apply_interval_us"), "12500000");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damon_pageout_closes_once_the_budget_is_reclaimed_and_reopens_next_period() {
        let (dir, admin, cg, mut r) = damon_reclaimer("damon-hold");
        r.budget_check = std::time::Duration::ZERO;
        r.damon_commit_gap = Some(std::time::Duration::ZERO);
        let quota = || {
            std::fs::read_to_string(admin.join("kdamonds/0/contexts/0/schemes/1/quotas/bytes"))
                .unwrap()
        };
        let open = ((4 * 5 * (64u64 << 20)) / 15).to_string();
        // kdamond pages out 32 MiB, then 48 MiB more: the budget (64 MiB) is spent at the
        // second step, and the quota closes to a page per window.
        let mut steps = 0;
        let mut seen = Vec::new();
        let st = r.period_in_steps(|| {
            steps += 1;
            seen.push(quota());
            let inactive: u64 = match steps {
                1 => 368 << 20,
                _ => 320 << 20,
            };
            std::fs::write(cg.join("memory.stat"), stat(inactive, 64 << 20, 0)).unwrap();
            steps < 3
        });
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        assert_eq!(seen, vec![open.clone(), open.clone(), "4096".to_string()]);
        assert_eq!(st.reclaimed_bytes, 80 << 20);
        // The next period's retune opens it again (the budget grew by 32 MiB; nothing was
        // measured for a yield, so four budgets per period).
        r.period(|| {});
        assert_eq!(quota(), ((4 * 5 * (96u64 << 20)) / 15).to_string());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damon_commits_wait_for_a_pass_unless_the_target_changes() {
        let (dir, admin, _cg, mut r) = damon_reclaimer("damon-gap");
        let interval = admin.join("kdamonds/0/contexts/0/schemes/1/apply_interval_us");
        // Whether a period retuned kdamond: the files it writes come back.
        let retunes = |r: &mut Reclaimer| {
            let _ = std::fs::remove_file(&interval);
            r.period(|| {});
            std::fs::read_to_string(&interval).ok()
        };
        assert_eq!(retunes(&mut r).as_deref(), Some("5000000"));
        // The budget grew, but a commit now would restart the pass timer (a pass and an
        // aggregation, 6 s, have not gone by): nothing is written.
        assert_eq!(retunes(&mut r), None);
        // A new min age from the host is committed at once: 8 s in 2 s aggregations.
        r.apply_target(&crate::proto::Target {
            max_bytes_per_period: 1 << 30,
            min_age_ms: 8_000,
            reclaim_bytes: 0,
        });
        assert_eq!(retunes(&mut r).as_deref(), Some("10000000"));
        assert_eq!(retunes(&mut r), None);
        // Once the gap has gone by, the retune is due again.
        r.damon_commit_gap = Some(std::time::Duration::ZERO);
        assert_eq!(retunes(&mut r).as_deref(), Some("10000000"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_lists_cold_bytes_per_child_cgroup() {
        let (dir, roots) = tree("children");
        let cg = roots.cgroup.clone();
        // The daemon's cgroup is /kubepods in the hierarchy (a cgroup namespace's view).
        std::fs::create_dir_all(roots.proc.join("self")).unwrap();
        std::fs::write(
            roots.proc.join("self/mountinfo"),
            format!(
                "36 25 0:31 /kubepods {} rw,relatime - cgroup2 cgroup2 rw\n",
                cg.display()
            ),
        )
        .unwrap();
        std::fs::write(cg.join("memory.stat"), stat(300 << 20, 100 << 20, 0)).unwrap();
        for (child, inactive) in [("besteffort", 200u64 << 20), ("burstable", 100 << 20)] {
            std::fs::create_dir_all(cg.join(child)).unwrap();
            std::fs::write(cg.join(child).join("memory.stat"), stat(inactive, 0, 0)).unwrap();
        }
        std::fs::create_dir_all(cg.join("not-a-cgroup-file-dir")).unwrap();
        std::fs::write(cg.join("memory.reclaim"), "").unwrap();

        let mut r = Reclaimer::new(roots.clone(), Backend::Memcg, 0, GuardSettings::default());
        let st = r.period(|| {});
        fn got(st: &Status) -> Vec<(&str, u64)> {
            st.cgroups
                .iter()
                .map(|c| (c.path.as_str(), c.cold_bytes >> 20))
                .collect()
        }
        assert_eq!(
            got(&st),
            vec![("/kubepods/besteffort", 200), ("/kubepods/burstable", 100)]
        );
        let json = serde_json::to_string(&st).unwrap();
        assert!(
            json.contains(r#""cgroups":[{"path":"/kubepods/besteffort","coldBytes":209715200}"#),
            "{json}"
        );

        // MGLRU: a child's cold bytes are its subtree's memcgs'.
        std::fs::write(roots.proc.join("meminfo"), "SwapTotal:  0 kB\n").unwrap();
        std::fs::write(
            roots.debugfs.join("lru_gen"),
            "memcg 1 /kubepods\n node 0\n  3 90000 0 10\n  4 60000 0 1\n  5 500 0 1\n\
             memcg 2 /kubepods/besteffort\n node 0\n  3 90000 0 256\n  4 60000 0 1\n  5 500 0 1\n\
             memcg 3 /kubepods/besteffort/pod1\n node 0\n  3 90000 0 512\n  4 60000 0 1\n  5 500 0 1\n\
             memcg 4 /kubepods/burstable\n node 0\n  3 20000 0 1024\n  4 10000 0 1\n  5 500 0 1\n",
        )
        .unwrap();
        let mut r = Reclaimer::new(
            roots.clone(),
            Backend::Mglru,
            30_000,
            GuardSettings::default(),
        );
        let st = r.period(|| {});
        assert_eq!(st.cold_bytes, (10 + 256 + 512) * 4096);
        let pages: Vec<_> = st.cgroups.iter().map(|c| c.cold_bytes / 4096).collect();
        assert_eq!(
            pages,
            vec![256 + 512, 0],
            "burstable's gen 4 is only 10 s old"
        );

        // DAMON: the cold figure split by each child's share of inactive_file.
        let (ddir, droots) = damon_tree("children-damon", &damon::DamonConfig::default());
        std::fs::write(droots.cgroup.join("memory.stat"), stat(400 << 20, 0, 0)).unwrap();
        for (child, inactive) in [("a", 300u64 << 20), ("b", 100 << 20)] {
            std::fs::create_dir_all(droots.cgroup.join(child)).unwrap();
            std::fs::write(
                droots.cgroup.join(child).join("memory.stat"),
                stat(inactive, 0, 0),
            )
            .unwrap();
        }
        set_tried(&droots.damon_admin(), 200 << 20);
        let dcg = droots.cgroup.clone();
        let mut r = Reclaimer::new(droots, Backend::Damon, 4_000, GuardSettings::default());
        let st = r.period(|| {});
        assert_eq!(st.cold_bytes, 200 << 20);
        assert_eq!(got(&st), vec![("/a", 150), ("/b", 50)]);
        // kdamond pages out 100 MiB of a's during the next period; 200 MiB stay cold.
        let st = r.period(|| {
            std::fs::write(dcg.join("memory.stat"), stat(300 << 20, 0, 0)).unwrap();
            std::fs::write(dcg.join("a/memory.stat"), stat(200 << 20, 0, 0)).unwrap();
        });
        assert_eq!(st.cold_bytes, 300 << 20);
        assert_eq!(
            got(&st),
            vec![("/a", 100 + 133), ("/b", 66)],
            "a: paged out + 2/3 of what is still cold"
        );
        std::fs::remove_dir_all(&ddir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kdamond_cpu_time_is_read_through_its_pid() {
        let (dir, roots) = tree("kdamond");
        let admin = roots.damon_admin();
        std::fs::create_dir_all(admin.join("kdamonds/0")).unwrap();
        assert_eq!(kdamond_cpu_seconds(&admin, &roots.proc), None);
        std::fs::write(admin.join("kdamonds/0/pid"), "4242\n").unwrap();
        std::fs::create_dir_all(roots.proc.join("4242")).unwrap();
        // A kernel thread's stat line (6.12): utime 0, stime 4521 ticks.
        std::fs::write(
            roots.proc.join("4242/stat"),
            "4242 (kdamond.0) S 2 0 0 0 -1 2129984 0 0 0 0 0 4521 0 0 20 0 1 0 1234 0 0 \
             18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(kdamond_cpu_seconds(&admin, &roots.proc), Some(45.21));
        // A stopped kdamond shows pid -1.
        std::fs::write(admin.join("kdamonds/0/pid"), "-1\n").unwrap();
        assert_eq!(kdamond_cpu_seconds(&admin, &roots.proc), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
