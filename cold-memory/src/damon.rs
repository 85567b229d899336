//! DAMON through its sysfs interface (`/sys/kernel/mm/damon/admin`): physical-address
//! monitoring with one scheme whose access pattern is "not accessed for at least `min_age`",
//! anonymous pages filtered out of what it pages out. Its tried bytes are the idle regions'
//! bytes (free and anonymous memory included: the daemon caps them at `inactive_file`); with
//! `pageout` and a quota per period it reclaims the file pages among them.
//!
//! Never pointed at the host's DAMON (DESIGN.md §10): the daemon runs inside the sandbox VM,
//! and tests use a fake tree.

use std::path::Path;

/// What the scheme does with the cold regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeAction {
    /// Count only (detection).
    Stat,
    /// Reclaim (page out) within the quota.
    Pageout,
}

/// The configuration written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamonConfig {
    /// Sampling interval, µs.
    pub sample_us: u64,
    /// Aggregation interval, µs.
    pub aggr_us: u64,
    /// Regions idle at least this long are cold, µs.
    pub min_age_us: u64,
    /// Action.
    pub action: SchemeAction,
    /// Pageout quota per `quota_reset_ms`, bytes (0 = none, for `stat`).
    pub quota_bytes: u64,
    /// Quota reset interval, ms.
    pub quota_reset_ms: u64,
    /// Physical address range to monitor (start, end), bytes.
    pub region: (u64, u64),
}

impl Default for DamonConfig {
    /// 20 ms sampling and one-second aggregations: a page read every half second shows up as
    /// accessed in every window, so only what sat idle for whole windows ages. Counting only
    /// (`stat`), 30 s age, no quota, no region yet.
    fn default() -> Self {
        Self {
            sample_us: 20_000,
            aggr_us: 1_000_000,
            min_age_us: 30_000_000,
            action: SchemeAction::Stat,
            quota_bytes: 0,
            quota_reset_ms: 1_000,
            region: (0, 0),
        }
    }
}

const SCHEME: &str = "kdamonds/0/contexts/0/schemes/0";

/// The writes that move a running kdamond's scheme to a new age threshold and quota (bytes
/// per `quota_reset_ms`), ending with `commit` so kdamond takes them.
/// The age is counted in the running context's aggregation intervals, read from `admin`.
pub fn retune_writes(
    admin: &Path,
    min_age_us: u64,
    quota_bytes: u64,
    quota_reset_ms: u64,
) -> Result<Vec<(String, String)>, String> {
    let p = admin.join("kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us");
    let aggr_us: u64 = std::fs::read_to_string(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a number", p.display()))?;
    Ok(vec![
        (
            format!("{SCHEME}/access_pattern/age/min"),
            min_age_us.div_ceil(aggr_us.max(1)).to_string(),
        ),
        (format!("{SCHEME}/quotas/bytes"), quota_bytes.to_string()),
        (
            format!("{SCHEME}/quotas/reset_interval_ms"),
            quota_reset_ms.to_string(),
        ),
        ("kdamonds/0/state".into(), "commit".into()),
    ])
}

/// The writes (relative path under `admin/`, value) that set up kdamond 0, in order, ending
/// with turning it on.
pub fn setup_writes(c: &DamonConfig) -> Vec<(String, String)> {
    let ctx = "kdamonds/0/contexts/0";
    let sch = SCHEME;
    let age_aggrs = c.min_age_us.div_ceil(c.aggr_us.max(1));
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
        (format!("{ctx}/schemes/nr_schemes"), "1".into()),
        (
            format!("{sch}/action"),
            match c.action {
                SchemeAction::Stat => "stat",
                SchemeAction::Pageout => "pageout",
            }
            .into(),
        ),
        (format!("{sch}/access_pattern/sz/min"), "4096".into()),
        (format!("{sch}/access_pattern/sz/max"), u64::MAX.to_string()),
        (format!("{sch}/access_pattern/nr_accesses/min"), "0".into()),
        (format!("{sch}/access_pattern/nr_accesses/max"), "0".into()),
        (
            format!("{sch}/access_pattern/age/min"),
            age_aggrs.to_string(),
        ),
        (
            format!("{sch}/access_pattern/age/max"),
            u64::from(u32::MAX).to_string(),
        ),
        (format!("{sch}/quotas/bytes"), c.quota_bytes.to_string()),
        (
            format!("{sch}/quotas/reset_interval_ms"),
            c.quota_reset_ms.to_string(),
        ),
        // Filter out anonymous pages: only file pages are paged out.
        (format!("{sch}/filters/nr_filters"), "1".into()),
        (format!("{sch}/filters/0/type"), "anon".into()),
        (format!("{sch}/filters/0/matching"), "Y".into()),
    ];
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
    let p = admin.join(SCHEME).join("tried_regions/total_bytes");
    std::fs::read_to_string(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a number", p.display()))
}

/// Asks the kdamond to refresh scheme stats and reads them.
pub fn read_stats(admin: &Path) -> Result<SchemeStats, String> {
    let state = admin.join("kdamonds/0/state");
    std::fs::write(&state, "update_schemes_stats")
        .map_err(|e| format!("{}: {e}", state.display()))?;
    let dir = admin.join(SCHEME).join("stats");
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
            quota_bytes: 64 << 20,
            quota_reset_ms: 1_000,
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
    fn setup_is_paddr_cold_file_only_and_ends_by_turning_on() {
        let w = setup_writes(&cfg(SchemeAction::Pageout));
        let get = |k: &str| {
            w.iter()
                .find(|(p, _)| p.ends_with(k))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("/operations"), Some("paddr"));
        assert_eq!(get("/action"), Some("pageout"));
        assert_eq!(get("nr_accesses/max"), Some("0"));
        assert_eq!(get("age/min"), Some("100"), "10 s in 100 ms aggregations");
        assert_eq!(get("filters/0/type"), Some("anon"));
        assert_eq!(get("filters/0/matching"), Some("Y"));
        assert_eq!(get("quotas/bytes"), Some("67108864"));
        assert_eq!(
            w.last().unwrap(),
            &("kdamonds/0/state".to_string(), "on".to_string())
        );
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
        let s = read_stats(&dir).unwrap();
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
        let w = retune_writes(&dir, 4_200_000, 256 << 20, 15_000).unwrap();
        let get = |k: &str| {
            w.iter()
                .find(|(p, _)| p.ends_with(k))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("age/min"),
            Some("9"),
            "4.2 s in 0.5 s aggregations, rounded up"
        );
        assert_eq!(get("quotas/bytes"), Some("268435456"));
        assert_eq!(get("quotas/reset_interval_ms"), Some("15000"));
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
