//! Parsers for the kernel's text files that both this crate and the node agent read: flat
//! `key value` files (`memory.stat`, `cpu.stat`), PSI files, `kB` fields (`/proc/meminfo`,
//! `/proc/<pid>/status`) and a process's CPU time from `/proc/<pid>/stat`.

/// A `key value` line's value from a flat-keyed file.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `some avg10=` (%) from a PSI file.
pub fn psi_some_avg10(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// A `Key:   123 kB` field in bytes (`/proc/meminfo`, `/proc/<pid>/status`).
pub fn kib_field_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb.saturating_mul(1024))
    })
}

/// User + system CPU time in clock ticks (USER_HZ, 100 per second) from `/proc/<pid>/stat`
/// text; the command name may contain spaces and parentheses.
pub fn proc_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_formats() {
        assert_eq!(
            keyed("cache 10\ninactive_file 4096\n", "inactive_file"),
            Some(4096)
        );
        assert_eq!(keyed("total_inactive_file 1\n", "inactive_file"), None);
        let psi = "some avg10=1.50 avg60=0.20 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(psi_some_avg10(psi), Some(1.5));
        assert_eq!(psi_some_avg10("garbage"), None);
        assert_eq!(
            kib_field_bytes("MemTotal:  16 kB\nVmRSS:\t 4 kB\n", "VmRSS"),
            Some(4096)
        );
        assert_eq!(kib_field_bytes("MemTotal:  16 kB\n", "Mem"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(proc_stat_cpu_ticks(stat), Some(10));
        assert_eq!(proc_stat_cpu_ticks("garbage"), None);
    }
}
