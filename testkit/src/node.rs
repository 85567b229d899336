//! Fake node trees for agent tests: a cgroup v2 directory tree whose files have the kernel's
//! formats (cpu.stat and the PSI lines as read from a 6.x host's unified hierarchy), and a
//! fake `/proc` with `stat` and `meminfo`.

use std::path::Path;

/// Writes (or rewrites) the files of one cgroup v2 directory: CPU time `cpu_usec`, memory
/// `current` bytes of which `inactive_file` are inactive page cache. Control files start at
/// the kernel's defaults (`cpu.max` unlimited, empty `cpuset.cpus`, no processes).
pub fn cgroup_v2(
    dir: &Path,
    cpu_usec: u64,
    current: u64,
    inactive_file: u64,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let w = |f: &str, v: String| std::fs::write(dir.join(f), v);
    w(
        "cpu.stat",
        format!(
            "usage_usec {cpu_usec}\nuser_usec {}\nsystem_usec {}\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
            cpu_usec / 2,
            cpu_usec - cpu_usec / 2
        ),
    )?;
    w("memory.current", format!("{current}\n"))?;
    w(
        "memory.stat",
        format!(
            "anon {}\nfile {inactive_file}\nactive_file 0\ninactive_file {inactive_file}\n",
            current.saturating_sub(inactive_file)
        ),
    )?;
    w("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n".into())?;
    w("cpu.pressure", "some avg10=4.56 avg60=8.47 avg300=5.75 total=381654692\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n".into())?;
    for (f, default) in [
        ("cpuset.cpus", "\n"),
        ("cpu.max", "max 100000\n"),
        ("cgroup.procs", ""),
    ] {
        if !dir.join(f).exists() {
            w(f, default.into())?;
        }
    }
    Ok(())
}

/// Writes `stat` (busy CPU in USER_HZ ticks) and `meminfo` (`used_kib` of `total_kib`) under
/// `proc_root`.
pub fn proc_files(
    proc_root: &Path,
    busy_ticks: u64,
    total_kib: u64,
    used_kib: u64,
) -> std::io::Result<()> {
    std::fs::create_dir_all(proc_root)?;
    std::fs::write(
        proc_root.join("stat"),
        format!("cpu  {busy_ticks} 0 0 100000 0 0 0 0 0 0\n"),
    )?;
    std::fs::write(
        proc_root.join("meminfo"),
        format!(
            "MemTotal:       {total_kib} kB\nMemFree:        {} kB\nMemAvailable:   {} kB\n",
            total_kib.saturating_sub(used_kib),
            total_kib.saturating_sub(used_kib)
        ),
    )
}
