//! DAMON through its sysfs interface (`/sys/kernel/mm/damon/admin`): physical-address
//! monitoring with two schemes whose access pattern is "not accessed for at least `min_age`".
//! Scheme 0 counts (`stat`, no quota): its tried bytes are the idle regions' bytes right now
//! (free and anonymous memory included: the daemon caps them at `inactive_file`). Scheme 1, for
//! reclaim, pages out the file pages among them (anonymous pages filtered out) within a quota.
//!
//! Detection and reclaim are separate schemes because a quota limits what a scheme *tries*,
//! not only what it applies: kdamond skips the regions beyond the quota, so a pageout scheme's
//! tried bytes would be the quota, not the cold amount.
//!
//! Page cache is read at the pace of requests, not of CPU loads, so the monitoring intervals
//! follow the min age ([`Monitoring::for_min_age`]), and the pageout scheme is applied once
//! per min age and an aggregation ([`pageout_interval_us`]): the kernel's page-level recheck
//! before pageout then
//! looks back a whole min age, and a page is paged out only if nobody read it between two
//! passes that far apart.
//!
//! The quota: kdamond resets a quota every `reset_interval_ms`. The reset interval is half the
//! pageout scheme's apply interval, so each application gets a fresh window, and each window's
//! size is the period's quota's share of one apply interval ([`quota_window`]). The quota is in
//! region bytes ([`pageout_quota`]); the daemon holds the budget in file bytes itself. Kernels
//! before the fix "mm/damon/core: set effective quota on first charge window" (6.12 among them)
//! apply no quota in the first window, which holds the first application; that pass finds
//! next to nothing idle at page level (a page's accessed bit is first cleared by a pass or a
//! sample), and the age threshold is at least [`MIN_AGE_AGGRS`] aggregation intervals.
//!
//! Never pointed at the host's DAMON (DESIGN.md §10): the daemon runs inside the sandbox VM,
//! and tests use a fake tree.

use std::path::Path;

/// What kdamond does with the cold regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeAction {
    /// Count only (detection): the `stat` scheme alone.
    Stat,
    /// Count, and reclaim (page out) within the quota: the `stat` scheme and a `pageout` one.
    Pageout,
}

/// DAMON's monitoring attributes: how often it samples and aggregates, and how finely it may
/// split memory into regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Monitoring {
    /// Sampling interval, µs: a page counts as accessed in a sample if it was read within
    /// this long after kdamond cleared its accessed bit.
    pub sample_us: u64,
    /// Aggregation interval, µs: kdamond applies the schemes once per aggregation, and a
    /// region's age is counted in them.
    pub aggr_us: u64,
    /// The most regions kdamond splits the monitored range into.
    pub max_regions: u64,
}

/// Aggregation intervals per min age ([`Monitoring::for_min_age`]).
pub const AGGRS_PER_MIN_AGE: u64 = 4;
/// Samples per aggregation interval ([`Monitoring::for_min_age`]).
pub const SAMPLES_PER_AGGR: u64 = 2;
/// The shortest aggregation interval chosen, µs.
pub const MIN_AGGR_US: u64 = 100_000;
/// The longest aggregation interval chosen, µs.
pub const MAX_AGGR_US: u64 = 5_000_000;

impl Monitoring {
    /// The attributes for finding page cache idle for `min_age_us`: aggregations of a quarter
    /// of the min age (within [`MIN_AGGR_US`], [`MAX_AGGR_US`]) in two samples each.
    ///
    /// DAMON's usual intervals (5–20 ms samples) are made for CPU-speed access. Page cache is
    /// read at the pace of requests: a page read every second is caught by a 20 ms sample one
    /// time in fifty, so a region of such pages shows no access in a third of its aggregations
    /// and ages as if idle. And each sample clears the accessed bit of one page per region, the
    /// bit the kernel's page-level recheck before pageout reads, so a hot page sampled after
    /// its last read looks idle to it. Samples of an eighth of the min age see a page read
    /// more often than that in every sample, clear each page's bit a twenty-fifth as often as
    /// 20 ms samples do at a 4 s age, and cost kdamond a fraction of the CPU.
    pub fn for_min_age(min_age_us: u64) -> Self {
        let aggr_us = (min_age_us / AGGRS_PER_MIN_AGE).clamp(MIN_AGGR_US, MAX_AGGR_US);
        Self {
            sample_us: aggr_us / SAMPLES_PER_AGGR,
            aggr_us,
            max_regions: 1000,
        }
    }

    /// The same attributes with the operator's overrides (a sample never longer than an
    /// aggregation, at least 10 regions).
    #[must_use]
    pub fn with(
        self,
        sample_us: Option<u64>,
        aggr_us: Option<u64>,
        max_regions: Option<u64>,
    ) -> Self {
        let aggr_us = aggr_us.unwrap_or(self.aggr_us).max(1);
        Self {
            sample_us: sample_us.unwrap_or(self.sample_us).clamp(1, aggr_us),
            aggr_us,
            max_regions: max_regions.unwrap_or(self.max_regions).max(MIN_REGIONS),
        }
    }

    fn writes(&self) -> [(String, String); 4] {
        let attrs = "kdamonds/0/contexts/0/monitoring_attrs";
        [
            (
                format!("{attrs}/intervals/sample_us"),
                self.sample_us.to_string(),
            ),
            (
                format!("{attrs}/intervals/aggr_us"),
                self.aggr_us.to_string(),
            ),
            (
                format!("{attrs}/intervals/update_us"),
                self.aggr_us.saturating_mul(10).to_string(),
            ),
            (
                format!("{attrs}/nr_regions/max"),
                self.max_regions.to_string(),
            ),
        ]
    }
}

/// The fewest regions kdamond keeps.
const MIN_REGIONS: u64 = 10;

/// The configuration written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamonConfig {
    /// Sampling, aggregation, regions.
    pub monitoring: Monitoring,
    /// Regions idle at least this long are cold, µs (at least [`MIN_AGE_AGGRS`] aggregation
    /// intervals are written).
    pub min_age_us: u64,
    /// Action.
    pub action: SchemeAction,
    /// The pageout scheme's quota per period, region bytes ([`pageout_quota`]; `pageout`
    /// only).
    pub quota_bytes: u64,
    /// The period the budget is for, ms.
    pub period_ms: u64,
    /// Physical address range to monitor (start, end), bytes.
    pub region: (u64, u64),
}

impl Default for DamonConfig {
    /// Counting only (`stat`), 30 s age with its monitoring attributes, no region yet.
    fn default() -> Self {
        Self {
            monitoring: Monitoring::for_min_age(30_000_000),
            min_age_us: 30_000_000,
            action: SchemeAction::Stat,
            quota_bytes: 0,
            period_ms: 10_000,
            region: (0, 0),
        }
    }
}

/// The counting scheme (no quota): what is cold.
const DETECT: &str = "kdamonds/0/contexts/0/schemes/0";
/// The reclaiming scheme (quota, anonymous pages filtered out).
const PAGEOUT: &str = "kdamonds/0/contexts/0/schemes/1";

/// The fewest aggregation intervals a region must sit idle to be cold: a fresh kdamond's
/// regions are at most one interval old at its first scheme application.
pub const MIN_AGE_AGGRS: u64 = 2;

/// The counting scheme's index (for [`read_stats`]).
pub const DETECT_SCHEME: usize = 0;
/// The pageout scheme's index (for [`read_stats`]).
pub const PAGEOUT_SCHEME: usize = 1;

/// The fewest region bytes tried in a period for its yield to be measured.
pub const MIN_YIELD_SAMPLE: u64 = 1 << 20;

/// The region bytes the pageout quota grants per byte of budget before a yield is measured.
pub const UNMEASURED_QUOTA_PER_BUDGET: u64 = 4;

/// The most region bytes the pageout quota grants per byte of budget.
pub const MAX_QUOTA_PER_BUDGET: u64 = 16;

/// The pageout scheme's quota per period, in region bytes, for `budget` bytes of file pages.
/// DAMON charges a quota with the size of the regions it tries, and a physical region also
/// holds free, anonymous and hot pages that are not paged out. `yield_` is the (region bytes
/// tried, bytes paged out) measured between the last two retunes: the quota is twice the budget divided by
/// that yield, between one and [`MAX_QUOTA_PER_BUDGET`] budgets. Unmeasured (a new kdamond,
/// or under [`MIN_YIELD_SAMPLE`] tried), it is [`UNMEASURED_QUOTA_PER_BUDGET`] budgets. The
/// quota paces kdamond; the daemon holds the budget itself, by measuring what was reclaimed
/// during the period and closing the quota once the budget is spent.
pub fn pageout_quota(budget: u64, yield_: Option<(u64, u64)>) -> u64 {
    let max = budget.saturating_mul(MAX_QUOTA_PER_BUDGET);
    match yield_ {
        Some((tried, applied)) if tried >= MIN_YIELD_SAMPLE => {
            let q = (u128::from(budget) * u128::from(tried) / u128::from(applied.max(1)))
                .saturating_mul(2);
            u64::try_from(q).unwrap_or(u64::MAX).clamp(budget, max)
        }
        _ => budget.saturating_mul(UNMEASURED_QUOTA_PER_BUDGET),
    }
}

/// A page: the smallest quota (0 would mean none).
const PAGE: u64 = 4096;

/// The age threshold in aggregation intervals, rounded up, at least [`MIN_AGE_AGGRS`].
pub fn age_aggrs(min_age_us: u64, aggr_us: u64) -> u64 {
    min_age_us.div_ceil(aggr_us.max(1)).max(MIN_AGE_AGGRS)
}

/// How often the pageout scheme is applied, µs: once per min age plus an aggregation interval
/// (a region a pass has gone over, its age reset, is old enough again at the next pass).
///
/// Before paging a page out, the kernel rechecks it (the default `young` filter, 6.10 and
/// later): a page accessed since its accessed bit was last cleared is kept, and its bit is
/// cleared. Applied every aggregation, that recheck looks back one aggregation at most:
/// merging averages ages, so a region paged over can be old enough again at the next
/// aggregation, and a page read every two seconds was paged out a second after the pass that
/// cleared its bit. Applied once per min age, a page is paged out only if nobody touched it
/// between two passes that far apart: page by page what the region's age says in bulk.
///
/// Every `commit` restarts the scheme's apply timer, so the daemon commits at most once per
/// pass and an aggregation (`Reclaimer`'s retune).
pub fn pageout_interval_us(min_age_us: u64, aggr_us: u64) -> u64 {
    age_aggrs(min_age_us, aggr_us)
        .saturating_add(1)
        .saturating_mul(aggr_us)
        .max(1)
}

/// The pageout scheme's quota window for `quota` region bytes per `period_ms`, applied every
/// `apply_us`: `(bytes per window, reset_interval_ms)`. The window is half the apply interval
/// (so every application starts a new one) and its bytes are the quota's share of one apply
/// interval (at most the whole quota), rounded down, at least a page.
pub fn quota_window(quota: u64, period_ms: u64, apply_us: u64) -> (u64, u64) {
    let reset_ms = (apply_us / 2_000).max(1);
    let period_us = period_ms.max(1).saturating_mul(1_000);
    let share = u128::from(quota) * u128::from(apply_us.min(period_us)) / u128::from(period_us);
    let bytes = u64::try_from(share).unwrap_or(u64::MAX).max(PAGE);
    (bytes, reset_ms)
}

/// The pageout scheme's apply interval and quota window.
fn pageout_writes(
    quota: u64,
    period_ms: u64,
    min_age_us: u64,
    aggr_us: u64,
) -> [(String, String); 3] {
    let apply_us = pageout_interval_us(min_age_us, aggr_us);
    let (bytes, reset_ms) = quota_window(quota, period_ms, apply_us);
    [
        (format!("{PAGEOUT}/apply_interval_us"), apply_us.to_string()),
        (format!("{PAGEOUT}/quotas/bytes"), bytes.to_string()),
        (
            format!("{PAGEOUT}/quotas/reset_interval_ms"),
            reset_ms.to_string(),
        ),
    ]
}

/// The writes that move a running kdamond to new monitoring attributes, its schemes to a new
/// age threshold and its pageout scheme to a new quota per period (region bytes,
/// [`pageout_quota`]), ending with `commit` so kdamond takes them (it rescales its regions'
/// ages to new intervals).
pub fn retune_writes(
    monitoring: &Monitoring,
    min_age_us: u64,
    quota_per_period: u64,
    period_ms: u64,
) -> Vec<(String, String)> {
    let age = age_aggrs(min_age_us, monitoring.aggr_us).to_string();
    let mut w = monitoring.writes().to_vec();
    w.extend([
        (format!("{DETECT}/access_pattern/age/min"), age.clone()),
        (format!("{PAGEOUT}/access_pattern/age/min"), age),
    ]);
    w.extend(pageout_writes(
        quota_per_period,
        period_ms,
        min_age_us,
        monitoring.aggr_us,
    ));
    w.push((STATE.into(), "commit".into()));
    w
}

/// A scheme's action and access pattern: regions of any size never accessed in `age`
/// aggregation intervals.
fn scheme_writes(sch: &str, action: &str, age: u64) -> Vec<(String, String)> {
    vec![
        (format!("{sch}/action"), action.into()),
        (format!("{sch}/access_pattern/sz/min"), PAGE.to_string()),
        (format!("{sch}/access_pattern/sz/max"), u64::MAX.to_string()),
        (format!("{sch}/access_pattern/nr_accesses/min"), "0".into()),
        (format!("{sch}/access_pattern/nr_accesses/max"), "0".into()),
        (format!("{sch}/access_pattern/age/min"), age.to_string()),
        (
            format!("{sch}/access_pattern/age/max"),
            u64::from(u32::MAX).to_string(),
        ),
    ]
}

/// The writes (relative path under `admin/`, value) that set up kdamond 0, in order, ending
/// with turning it on.
pub fn setup_writes(c: &DamonConfig) -> Vec<(String, String)> {
    let ctx = "kdamonds/0/contexts/0";
    let age = age_aggrs(c.min_age_us, c.monitoring.aggr_us);
    let nr_schemes = match c.action {
        SchemeAction::Stat => "1",
        SchemeAction::Pageout => "2",
    };
    let mut w: Vec<(String, String)> = vec![
        ("kdamonds/nr_kdamonds".into(), "1".into()),
        ("kdamonds/0/contexts/nr_contexts".into(), "1".into()),
        (format!("{ctx}/operations"), "paddr".into()),
        (
            format!("{ctx}/monitoring_attrs/nr_regions/min"),
            MIN_REGIONS.to_string(),
        ),
    ];
    w.extend(c.monitoring.writes());
    w.extend([
        (format!("{ctx}/targets/nr_targets"), "1".into()),
        (format!("{ctx}/targets/0/regions/nr_regions"), "1".into()),
        (
            format!("{ctx}/targets/0/regions/0/start"),
            c.region.0.to_string(),
        ),
        (
            format!("{ctx}/targets/0/regions/0/end"),
            c.region.1.to_string(),
        ),
        (format!("{ctx}/schemes/nr_schemes"), nr_schemes.into()),
    ]);
    w.extend(scheme_writes(DETECT, "stat", age));
    if c.action == SchemeAction::Pageout {
        w.extend(scheme_writes(PAGEOUT, "pageout", age));
        w.extend(pageout_writes(
            c.quota_bytes,
            c.period_ms,
            c.min_age_us,
            c.monitoring.aggr_us,
        ));
        // Filter out anonymous pages: only file pages are paged out.
        w.extend([
            (format!("{PAGEOUT}/filters/nr_filters"), "1".into()),
            (format!("{PAGEOUT}/filters/0/type"), "anon".into()),
            (format!("{PAGEOUT}/filters/0/matching"), "Y".into()),
        ]);
    }
    w.push((STATE.into(), "on".into()));
    w
}

/// Applies writes under `admin` (a fake tree in tests; the guest's sysfs in the VM). Each
/// write is one `write(2)` of the value, as sysfs expects; commands to the kdamond's `state`
/// go through [`command`].
pub fn apply(admin: &Path, writes: &[(String, String)]) -> Result<(), String> {
    for (rel, value) in writes {
        if rel == STATE {
            command(admin, value)?;
            continue;
        }
        let p = admin.join(rel);
        std::fs::write(&p, value).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// The kdamond's command file.
const STATE: &str = "kdamonds/0/state";

/// How many times a command is tried while the kernel answers `EBUSY`.
const COMMAND_TRIES: u32 = 20;

/// Writes `cmd` to the kdamond's `state`. DAMON's sysfs takes one command at a time for all
/// kdamonds and answers `EBUSY` while another writer's (an operator's `damo`, say) is pending;
/// kdamond serves commands once per aggregation, so this waits up to `COMMAND_TRIES` × 100 ms
/// for the slot.
pub fn command(admin: &Path, cmd: &str) -> Result<(), String> {
    let p = admin.join(STATE);
    let mut tries = 0;
    loop {
        match std::fs::write(&p, cmd) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries + 1 < COMMAND_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(format!("{} ({cmd}): {e}", p.display())),
        }
    }
}

/// Scheme statistics (after writing `update_schemes_stats` to the kdamond's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemeStats {
    /// Bytes the scheme matched (cold file bytes for `stat`).
    pub sz_tried: u64,
    /// Bytes the action was applied to (paged out for `pageout`).
    pub sz_applied: u64,
    /// Times the quota was exceeded.
    pub qt_exceeds: u64,
}

/// Bytes in the regions the scheme matches right now (`tried_regions/total_bytes`, after
/// writing `update_schemes_tried_bytes` to the kdamond's state): the current cold amount,
/// where `sz_tried` is cumulative.
pub fn read_tried_bytes(admin: &Path) -> Result<u64, String> {
    command(admin, "update_schemes_tried_bytes")?;
    let p = admin.join(DETECT).join("tried_regions/total_bytes");
    std::fs::read_to_string(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a number", p.display()))
}

/// Asks the kdamond to refresh scheme stats and reads scheme `index`'s
/// ([`DETECT_SCHEME`] or [`PAGEOUT_SCHEME`]).
pub fn read_stats(admin: &Path, index: usize) -> Result<SchemeStats, String> {
    command(admin, "update_schemes_stats")?;
    let dir = admin.join(format!("kdamonds/0/contexts/0/schemes/{index}/stats"));
    let read = |f: &str| -> Result<u64, String> {
        let p = dir.join(f);
        std::fs::read_to_string(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .trim()
            .parse()
            .map_err(|_| format!("{}: not a number", p.display()))
    };
    Ok(SchemeStats {
        sz_tried: read("sz_tried")?,
        sz_applied: read("sz_applied")?,
        qt_exceeds: read("qt_exceeds")?,
    })
}

/// The System RAM ranges from `/proc/iomem` text (root sees real addresses; others see zeros,
/// which yields nothing). DAMON's paddr target is the largest one.
pub fn system_ram(iomem: &str) -> Vec<(u64, u64)> {
    iomem
        .lines()
        .filter(|l| !l.starts_with(' ') && l.trim_end().ends_with(": System RAM"))
        .filter_map(|l| {
            let (range, _) = l.split_once(" : ")?;
            let (a, b) = range.trim().split_once('-')?;
            let start = u64::from_str_radix(a, 16).ok()?;
            let end = u64::from_str_radix(b, 16).ok()?.checked_add(1)?;
            (end > start && start + end > 0).then_some((start, end))
        })
        .filter(|&(s, e)| !(s == 0 && e == 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(action: SchemeAction) -> DamonConfig {
        DamonConfig {
            monitoring: Monitoring {
                sample_us: 5_000,
                aggr_us: 100_000,
                max_regions: 1000,
            },
            min_age_us: 10_000_000,
            action,
            quota_bytes: 640 << 20,
            period_ms: 10_000,
            region: (0x10_0000, 0x4000_0000),
        }
    }

    /// The value written to the path ending in `k`.
    fn value<'a>(w: &'a [(String, String)], k: &str) -> Option<&'a str> {
        w.iter()
            .find(|(p, _)| p.ends_with(k))
            .map(|(_, v)| v.as_str())
    }

    fn fake_tree(name: &str, writes: &[(String, String)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tide-damon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (p, _) in writes {
            std::fs::create_dir_all(dir.join(p).parent().unwrap()).unwrap();
        }
        dir
    }

    #[test]
    fn setup_counts_in_one_scheme_and_pages_out_cold_file_pages_in_another() {
        let w = setup_writes(&cfg(SchemeAction::Pageout));
        let get = |k: &str| value(&w, k);
        assert_eq!(get("/operations"), Some("paddr"));
        assert_eq!(get("schemes/nr_schemes"), Some("2"));
        assert_eq!(get("schemes/0/action"), Some("stat"));
        assert_eq!(get("schemes/1/action"), Some("pageout"));
        for s in ["0", "1"] {
            assert_eq!(
                get(&format!("{s}/access_pattern/nr_accesses/max")),
                Some("0")
            );
            assert_eq!(
                get(&format!("{s}/access_pattern/age/min")),
                Some("100"),
                "10 s in 100 ms aggregations"
            );
        }
        // Only the pageout scheme has a quota and the anon filter: the counting scheme tries
        // every idle region.
        assert_eq!(get("schemes/0/quotas/bytes"), None);
        assert_eq!(get("schemes/0/filters/nr_filters"), None);
        assert_eq!(get("schemes/1/filters/0/type"), Some("anon"));
        assert_eq!(get("schemes/1/filters/0/matching"), Some("Y"));
        // A pass every 10.1 s (the min age and an aggregation), longer than the 10 s period:
        // the period's whole 640 MiB per pass, in 5.05 s windows. The counting scheme applies
        // every aggregation.
        assert_eq!(get("schemes/1/apply_interval_us"), Some("10100000"));
        assert_eq!(get("schemes/0/apply_interval_us"), None);
        assert_eq!(get("schemes/1/quotas/bytes"), Some("671088640"));
        assert_eq!(get("schemes/1/quotas/reset_interval_ms"), Some("5050"));
        assert_eq!(
            w.last().unwrap(),
            &("kdamonds/0/state".to_string(), "on".to_string())
        );
        let stat = setup_writes(&cfg(SchemeAction::Stat));
        assert!(stat.contains(&(
            "kdamonds/0/contexts/0/schemes/nr_schemes".into(),
            "1".into()
        )));
        assert!(!stat.iter().any(|(p, _)| p.contains("schemes/1/")));
    }

    #[test]
    fn quota_window_spreads_the_budget_over_the_period() {
        // 64 MiB per 15 s, a pass every 4 s: 4/15 of it per application, 2 s windows.
        let (bytes, reset) = quota_window(64 << 20, 15_000, 4_000_000);
        assert_eq!((bytes, reset), (17_895_697, 2_000));
        // Applied less often than once a period: one period's quota per application.
        assert_eq!(quota_window(64 << 20, 1_000, 4_000_000).0, 64 << 20);
        // A pass every min age and an aggregation.
        assert_eq!(pageout_interval_us(4_000_000, 1_000_000), 5_000_000);
        assert_eq!(pageout_interval_us(30_000_000, 5_000_000), 35_000_000);
        assert_eq!(pageout_interval_us(100_000, 1_000_000), 3_000_000);
        assert_eq!(pageout_interval_us(0, 0), 1);
        // The pageout quota: twice the budget over the measured yield, within [1, 16] budgets.
        assert_eq!(pageout_quota(100, None), 400);
        assert_eq!(pageout_quota(64 << 20, Some((512 << 10, 0))), 256 << 20);
        assert_eq!(pageout_quota(1 << 30, Some((40 << 20, 10 << 20))), 8 << 30);
        assert_eq!(pageout_quota(1 << 30, Some((40 << 20, 20 << 20))), 4 << 30);
        assert_eq!(pageout_quota(1 << 30, Some((40 << 20, 0))), 16 << 30);
        assert_eq!(pageout_quota(1 << 30, Some((40 << 20, 80 << 20))), 1 << 30);
        assert_eq!(pageout_quota(u64::MAX, Some((u64::MAX, 1))), u64::MAX);
        // Never 0, which DAMON reads as "no quota".
        assert_eq!(quota_window(0, 10_000, 1_000_000).0, 4096);
        assert_eq!(quota_window(1, 0, 1).1, 1);
        assert_eq!(quota_window(u64::MAX, 1, u64::MAX).0, u64::MAX);
        // The age is at least two aggregation intervals (the first window has no quota on
        // kernels without the fix).
        assert_eq!(age_aggrs(0, 1_000_000), MIN_AGE_AGGRS);
        assert_eq!(age_aggrs(4_000_000, 1_000_000), 4);
        assert_eq!(age_aggrs(1, 0), 2);
    }

    #[test]
    fn applies_to_and_reads_stats_from_a_fake_tree() {
        let w = setup_writes(&cfg(SchemeAction::Stat));
        let dir = fake_tree("stat", &w);
        apply(&dir, &w).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("kdamonds/0/state")).unwrap(),
            "on"
        );
        let stats = dir.join("kdamonds/0/contexts/0/schemes/0/stats");
        std::fs::create_dir_all(&stats).unwrap();
        for (f, v) in [
            ("sz_tried", "1048576\n"),
            ("sz_applied", "0\n"),
            ("qt_exceeds", "2\n"),
        ] {
            std::fs::write(stats.join(f), v).unwrap();
        }
        assert!(
            read_stats(&dir, PAGEOUT_SCHEME).is_err(),
            "no pageout scheme"
        );
        let s = read_stats(&dir, DETECT_SCHEME).unwrap();
        assert_eq!((s.sz_tried, s.sz_applied, s.qt_exceeds), (1 << 20, 0, 2));
        assert_eq!(
            std::fs::read_to_string(dir.join("kdamonds/0/state")).unwrap(),
            "update_schemes_stats"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retune_moves_intervals_age_and_quota_and_commits() {
        let m = Monitoring::for_min_age(4_200_000).with(None, Some(500_000), None);
        let w = retune_writes(&m, 4_200_000, 256 << 20, 16_000);
        let get = |k: &str| value(&w, k);
        assert_eq!(get("intervals/aggr_us"), Some("500000"));
        // The derived 525 ms sample is longer than the 500 ms aggregation set: clamped.
        assert_eq!(get("intervals/sample_us"), Some("500000"));
        assert_eq!(get("intervals/update_us"), Some("5000000"));
        assert_eq!(get("nr_regions/max"), Some("1000"));
        for s in ["0", "1"] {
            assert_eq!(
                get(&format!("schemes/{s}/access_pattern/age/min")),
                Some("9"),
                "4.2 s in 0.5 s aggregations, rounded up"
            );
        }
        // 256 MiB per 16 s, pageout every 5 s (nine aggregations and one): 5/16 of it per
        // application, 2.5 s windows.
        assert_eq!(get("schemes/1/apply_interval_us"), Some("5000000"));
        assert_eq!(get("schemes/1/quotas/bytes"), Some("83886080"));
        assert_eq!(get("schemes/1/quotas/reset_interval_ms"), Some("2500"));
        assert_eq!(w.last().unwrap().1, "commit");
    }

    #[test]
    fn monitoring_follows_the_min_age_in_page_cache_time() {
        // 4 s: 1 s aggregations of two 500 ms samples; four aggregations make the age.
        let m = Monitoring::for_min_age(4_000_000);
        assert_eq!(
            (m.sample_us, m.aggr_us, m.max_regions),
            (500_000, 1_000_000, 1000)
        );
        assert_eq!(age_aggrs(4_000_000, m.aggr_us), AGGRS_PER_MIN_AGE);
        // Bounded both ways: 2 min ages in 5 s aggregations, 100 ms ages in 100 ms ones.
        assert_eq!(Monitoring::for_min_age(120_000_000).aggr_us, MAX_AGGR_US);
        let short = Monitoring::for_min_age(100_000);
        assert_eq!((short.sample_us, short.aggr_us), (50_000, MIN_AGGR_US));
        assert_eq!(age_aggrs(100_000, short.aggr_us), MIN_AGE_AGGRS);
        // Overrides: a sample is never longer than an aggregation, nor 0; at least 10 regions.
        let o = m.with(Some(3_000_000), Some(2_000_000), Some(3));
        assert_eq!(
            (o.sample_us, o.aggr_us, o.max_regions),
            (2_000_000, 2_000_000, 10)
        );
        let z = m.with(Some(0), Some(0), None);
        assert_eq!((z.sample_us, z.aggr_us), (1, 1));
        assert_eq!(m.with(None, None, None), m);
    }

    #[test]
    fn a_command_names_itself_when_it_fails() {
        let dir = std::env::temp_dir().join(format!("tide-damon-cmd-{}", std::process::id()));
        let e = command(&dir, "commit").unwrap_err();
        assert!(e.contains("kdamonds/0/state (commit)"), "{e}");
        assert!(
            apply(&dir, &[(STATE.into(), "on".into())])
                .unwrap_err()
                .contains("(on)")
        );
    }

    #[test]
    fn system_ram_from_iomem() {
        let iomem = "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n00100000-3ffdffff : System RAM\n  01000000-01e00fff : Kernel code\n";
        assert_eq!(
            system_ram(iomem),
            vec![(0x1000, 0x9fc00), (0x10_0000, 0x3ffe_0000)]
        );
        // Unprivileged readers see zeros.
        assert!(system_ram("00000000-00000000 : System RAM\n").is_empty());
    }
}
