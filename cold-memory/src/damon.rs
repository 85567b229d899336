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
//! The quota: kdamond applies schemes once per aggregation interval and resets a quota every
//! `reset_interval_ms`. The reset interval is half an aggregation interval, so each application
//! gets a fresh window, and each window's size is the period's quota's share of one aggregation
//! interval ([`quota_window`]). The quota is in region bytes ([`pageout_quota`]); the daemon
//! holds the budget in file bytes itself. Kernels before the fix "mm/damon/core: set effective
//! quota on first charge window" (6.12 among them) apply no quota in the first window; that
//! window ends at the second application, and the age threshold is at least [`MIN_AGE_AGGRS`]
//! aggregation intervals, so nothing is old enough to be paged out in it.
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

/// The configuration written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamonConfig {
    /// Sampling interval, µs.
    pub sample_us: u64,
    /// Aggregation interval, µs.
    pub aggr_us: u64,
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
    /// 20 ms sampling and one-second aggregations: a page read every half second shows up as
    /// accessed in every window, so only what sat idle for whole windows ages. Counting only
    /// (`stat`), 30 s age, no region yet.
    fn default() -> Self {
        Self {
            sample_us: 20_000,
            aggr_us: 1_000_000,
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

/// The fewest aggregation intervals a region must sit idle to be cold. A fresh kdamond's
/// regions are at most one interval old at its first scheme application, the window in which
/// kernels without the first-window fix apply no quota.
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
/// holds free, anonymous and hot pages that are not paged out. `yield_` is the last measured
/// period's (region bytes tried, bytes paged out): the quota is twice the budget divided by
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

/// The pageout scheme's quota window for `quota` region bytes per `period_ms` with `aggr_us`
/// aggregation intervals: `(bytes per window, reset_interval_ms)`. The window is half an
/// aggregation interval (so every application of the scheme starts a new one) and its bytes
/// are the quota's share of one aggregation interval, rounded down, at least a page.
pub fn quota_window(quota: u64, period_ms: u64, aggr_us: u64) -> (u64, u64) {
    let reset_ms = (aggr_us / 2_000).max(1);
    let share = u128::from(quota) * u128::from(aggr_us)
        / u128::from(period_ms.max(1).saturating_mul(1_000));
    let bytes = u64::try_from(share).unwrap_or(u64::MAX).max(PAGE);
    (bytes, reset_ms)
}

fn quota_writes(quota: u64, period_ms: u64, aggr_us: u64) -> [(String, String); 2] {
    let (bytes, reset_ms) = quota_window(quota, period_ms, aggr_us);
    [
        (format!("{PAGEOUT}/quotas/bytes"), bytes.to_string()),
        (
            format!("{PAGEOUT}/quotas/reset_interval_ms"),
            reset_ms.to_string(),
        ),
    ]
}

/// The writes that move a running kdamond's schemes to a new age threshold and its pageout
/// scheme to a new quota per period (region bytes, [`pageout_quota`]), ending with `commit`
/// so kdamond takes them. The age and the quota window follow the running context's
/// aggregation interval, read from `admin`.
pub fn retune_writes(
    admin: &Path,
    min_age_us: u64,
    quota_per_period: u64,
    period_ms: u64,
) -> Result<Vec<(String, String)>, String> {
    let p = admin.join("kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us");
    let aggr_us: u64 = std::fs::read_to_string(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a number", p.display()))?;
    let age = age_aggrs(min_age_us, aggr_us).to_string();
    let mut w = vec![
        (format!("{DETECT}/access_pattern/age/min"), age.clone()),
        (format!("{PAGEOUT}/access_pattern/age/min"), age),
    ];
    w.extend(quota_writes(quota_per_period, period_ms, aggr_us));
    w.push(("kdamonds/0/state".into(), "commit".into()));
    Ok(w)
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
    let age = age_aggrs(c.min_age_us, c.aggr_us);
    let nr_schemes = match c.action {
        SchemeAction::Stat => "1",
        SchemeAction::Pageout => "2",
    };
    let mut w: Vec<(String, String)> = vec![
        ("kdamonds/nr_kdamonds".into(), "1".into()),
        ("kdamonds/0/contexts/nr_contexts".into(), "1".into()),
        (format!("{ctx}/operations"), "paddr".into()),
        (
            format!("{ctx}/monitoring_attrs/intervals/sample_us"),
            c.sample_us.to_string(),
        ),
        (
            format!("{ctx}/monitoring_attrs/intervals/aggr_us"),
            c.aggr_us.to_string(),
        ),
        (
            format!("{ctx}/monitoring_attrs/intervals/update_us"),
            (c.aggr_us * 10).to_string(),
        ),
        (
            format!("{ctx}/monitoring_attrs/nr_regions/min"),
            "10".into(),
        ),
        (
            format!("{ctx}/monitoring_attrs/nr_regions/max"),
            "1000".into(),
        ),
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
    ];
    w.extend(scheme_writes(DETECT, "stat", age));
    if c.action == SchemeAction::Pageout {
        w.extend(scheme_writes(PAGEOUT, "pageout", age));
        w.extend(quota_writes(c.quota_bytes, c.period_ms, c.aggr_us));
        // Filter out anonymous pages: only file pages are paged out.
        w.extend([
            (format!("{PAGEOUT}/filters/nr_filters"), "1".into()),
            (format!("{PAGEOUT}/filters/0/type"), "anon".into()),
            (format!("{PAGEOUT}/filters/0/matching"), "Y".into()),
        ]);
    }
    w.push(("kdamonds/0/state".into(), "on".into()));
    w
}

/// Applies writes under `admin` (a fake tree in tests; the guest's sysfs in the VM). Each
/// write is one `write(2)` of the value, as sysfs expects.
pub fn apply(admin: &Path, writes: &[(String, String)]) -> Result<(), String> {
    for (rel, value) in writes {
        let p = admin.join(rel);
        std::fs::write(&p, value).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
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
    let state = admin.join("kdamonds/0/state");
    std::fs::write(&state, "update_schemes_tried_bytes")
        .map_err(|e| format!("{}: {e}", state.display()))?;
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
    let state = admin.join("kdamonds/0/state");
    std::fs::write(&state, "update_schemes_stats")
        .map_err(|e| format!("{}: {e}", state.display()))?;
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
            sample_us: 5_000,
            aggr_us: 100_000,
            min_age_us: 10_000_000,
            action,
            quota_bytes: 640 << 20,
            period_ms: 10_000,
            region: (0x10_0000, 0x4000_0000),
        }
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
        let get = |k: &str| {
            w.iter()
                .find(|(p, _)| p.ends_with(k))
                .map(|(_, v)| v.as_str())
        };
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
        // 640 MiB per 10 s period in 100 ms aggregations: 6.4 MiB per window of 50 ms.
        assert_eq!(get("schemes/1/quotas/bytes"), Some("6710886"));
        assert_eq!(get("schemes/1/quotas/reset_interval_ms"), Some("50"));
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
        // 64 MiB per 15 s in 1 s aggregations: 1/15 of it per application, 500 ms windows.
        let (bytes, reset) = quota_window(64 << 20, 15_000, 1_000_000);
        assert_eq!((bytes, reset), (4_473_924, 500));
        assert!(bytes * 15 <= 64 << 20 && bytes * 15 > (64 << 20) - 15);
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
    fn retune_counts_age_in_the_running_aggregation_and_commits() {
        let dir = std::env::temp_dir().join(format!("tide-damon-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let attrs = dir.join("kdamonds/0/contexts/0/monitoring_attrs/intervals");
        std::fs::create_dir_all(&attrs).unwrap();
        assert!(retune_writes(&dir, 4_000_000, 1, 1).is_err(), "no aggr_us");
        std::fs::write(attrs.join("aggr_us"), "500000\n").unwrap();
        let w = retune_writes(&dir, 4_200_000, 256 << 20, 16_000).unwrap();
        let get = |k: &str| {
            w.iter()
                .find(|(p, _)| p.ends_with(k))
                .map(|(_, v)| v.as_str())
        };
        for s in ["0", "1"] {
            assert_eq!(
                get(&format!("schemes/{s}/access_pattern/age/min")),
                Some("9"),
                "4.2 s in 0.5 s aggregations, rounded up"
            );
        }
        // 256 MiB per 16 s: 8 MiB per 0.5 s aggregation, in 250 ms windows.
        assert_eq!(get("schemes/1/quotas/bytes"), Some("8388608"));
        assert_eq!(get("schemes/1/quotas/reset_interval_ms"), Some("250"));
        assert_eq!(w.last().unwrap().1, "commit");
        std::fs::write(attrs.join("aggr_us"), "soon").unwrap();
        assert!(
            retune_writes(&dir, 4_000_000, 1, 1)
                .unwrap_err()
                .contains("not a number")
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
