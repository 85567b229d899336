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
        ("cgroup.kill", ""),
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

/// The cgroup v1 controllers a kubelet-like test subtree is made in.
pub const V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "cpuset", "memory"];

/// A subtree of the machine's real cgroup v1 hierarchies that a test made and owns: created
/// under `<mount>/<name>` in every controller of [`V1_CONTROLLERS`], holding only processes the
/// test started. Dropping it kills those processes and removes every directory it created,
/// deepest first. Nothing outside it is touched.
pub struct V1Subtree {
    mounts: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// Name of the subtree root, relative to the hierarchy roots (`tide-test-<pid>`).
    pub root: String,
    dirs: Vec<String>,
    children: Vec<std::process::Child>,
}

impl V1Subtree {
    /// A new subtree named `root` (created on first [`V1Subtree::mkdir`]). `mounts` maps each
    /// controller to its mount point.
    pub fn new(
        mounts: std::collections::BTreeMap<String, std::path::PathBuf>,
        root: &str,
    ) -> std::io::Result<Self> {
        for c in V1_CONTROLLERS {
            if !mounts.contains_key(c) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("cgroup v1 controller {c} is not mounted"),
                ));
            }
        }
        let mut t = Self {
            mounts,
            root: root.to_owned(),
            dirs: Vec::new(),
            children: Vec::new(),
        };
        t.mkdir("")?;
        Ok(t)
    }

    /// Absolute path of `rel` (relative to the subtree root) in `controller`.
    pub fn abs(&self, controller: &str, rel: &str) -> std::path::PathBuf {
        let base = self.mounts[controller].join(&self.root);
        if rel.is_empty() { base } else { base.join(rel) }
    }

    /// Creates `rel` (relative to the subtree root) and its parents in every controller; cpuset
    /// directories inherit the parent's CPUs and memory nodes, as the kubelet's do.
    pub fn mkdir(&mut self, rel: &str) -> std::io::Result<()> {
        let mut path = String::new();
        let parts: Vec<&str> = std::iter::once("")
            .chain(rel.split('/').filter(|p| !p.is_empty()))
            .collect();
        for part in parts {
            if !part.is_empty() {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(part);
            }
            if self.dirs.contains(&path) {
                continue;
            }
            for c in V1_CONTROLLERS {
                let dir = self.abs(c, &path);
                std::fs::create_dir(&dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
                })?;
                if c == "cpuset" {
                    let parent = dir.parent().unwrap_or(&dir).to_path_buf();
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(parent.join(f))?;
                        std::fs::write(dir.join(f), v.trim())?;
                    }
                }
            }
            self.dirs.push(path.clone());
        }
        Ok(())
    }

    /// Starts a process and moves it into `rel` in every controller. It spins briefly once
    /// inside (so the cgroup is charged CPU time), then becomes `sleep` (same PID); returns
    /// after that.
    pub fn spawn_in(&mut self, rel: &str) -> std::io::Result<u32> {
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "sleep 0.2; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 600",
            ])
            .spawn()?;
        let pid = child.id();
        self.children.push(child);
        for c in V1_CONTROLLERS {
            std::fs::write(self.abs(c, rel).join("cgroup.procs"), pid.to_string())?;
        }
        // Return once it has become `sleep`: while a process execs, its /proc files briefly
        // belong to the kernel's root and writes to them (oom_score_adj) are refused.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() != "sleep")
        {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("process {pid} did not start sleeping within 20 s"),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(pid)
    }
}

impl Drop for V1Subtree {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for rel in self.dirs.iter().rev() {
            for c in V1_CONTROLLERS {
                let _ = std::fs::remove_dir(self.abs(c, rel));
            }
        }
    }
}
