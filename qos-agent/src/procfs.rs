//! Node totals from procfs: busy CPU time (`/proc/stat`) and memory in use
//! (`/proc/meminfo`: MemTotal − MemAvailable). Read by hand from a configurable root (a fake
//! tree in tests); see docs/dependencies.md for why not the `procfs` crate.

use std::path::Path;

use crate::observe::NodeTotals;

/// `USER_HZ`: the unit of `/proc/stat` times on every Linux architecture Kubernetes runs on.
const USER_HZ: u64 = 100;

/// Busy CPU time in ns from `/proc/stat` text (all but idle and iowait; guest time is already
/// inside user time).
pub fn cpu_busy_ns(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy = [
        v.first()?,
        v.get(1)?,
        v.get(2)?,
        v.get(5)?,
        v.get(6)?,
        v.get(7).unwrap_or(&0),
    ]
    .into_iter()
    .fold(0u64, |a, &b| a.saturating_add(b));
    Some(busy.saturating_mul(1_000_000_000 / USER_HZ))
}

/// A `/proc/meminfo` field in bytes.
pub use tide_coldmem::kernel_text::kib_field_bytes as meminfo_bytes;

/// Reads the node totals under `proc_root`.
pub fn read_totals(proc_root: &Path) -> Result<NodeTotals, String> {
    let stat_path = proc_root.join("stat");
    let stat =
        std::fs::read_to_string(&stat_path).map_err(|e| format!("{}: {e}", stat_path.display()))?;
    let mem_path = proc_root.join("meminfo");
    let mem =
        std::fs::read_to_string(&mem_path).map_err(|e| format!("{}: {e}", mem_path.display()))?;
    let cpu_busy_ns = cpu_busy_ns(&stat)
        .ok_or_else(|| format!("{}: no readable cpu line", stat_path.display()))?;
    let total = meminfo_bytes(&mem, "MemTotal")
        .ok_or_else(|| format!("{}: no MemTotal", mem_path.display()))?;
    let available = meminfo_bytes(&mem, "MemAvailable")
        .ok_or_else(|| format!("{}: no MemAvailable", mem_path.display()))?;
    Ok(NodeTotals {
        cpu_busy_ns,
        memory_used: total.saturating_sub(available),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_meminfo() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(cpu_busy_ns(stat), Some(161 * 10_000_000));
        assert_eq!(cpu_busy_ns("cpu  x\n"), None);
        // Counters at their limit saturate rather than overflow.
        let max = format!("cpu  {m} {m} {m} 0 0 {m} {m} {m}\n", m = u64::MAX);
        assert_eq!(cpu_busy_ns(&max), Some(u64::MAX));
        let mem = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(meminfo_bytes(mem, "MemTotal"), Some(16_000_000 * 1024));
        assert_eq!(meminfo_bytes(mem, "MemAvailable"), Some(4_000_000 * 1024));
        assert_eq!(meminfo_bytes(mem, "Mem"), None);
    }

    #[test]
    fn reads_this_machine_and_names_missing_files() {
        let t = read_totals(Path::new("/proc")).unwrap();
        assert!(t.cpu_busy_ns > 0 && t.memory_used > 0);
        let err = read_totals(Path::new("/nonexistent-proc")).unwrap_err();
        assert!(err.contains("/nonexistent-proc/stat"), "{err}");
    }
}
