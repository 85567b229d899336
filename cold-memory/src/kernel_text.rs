//! Parsers for the kernel's text files that both this crate and the node agent read: flat
//! `key value` files (`memory.stat`, `cpu.stat`), PSI files, `kB` fields (`/proc/meminfo`,
//! `/proc/<pid>/status`), a process's CPU time from `/proc/<pid>/stat`, and where a
//! directory sits in the cgroup v2 hierarchy (`/proc/self/mountinfo`).

/// A `key value` line's value from a flat-keyed file.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `some avg10=` (%) from a PSI file; `None` unless it is a share in [0, 100] (`nan`, `inf`
/// and out-of-range text are not pressure).
pub fn psi_some_avg10(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
        .filter(|v: &f64| (0.0..=100.0).contains(v))
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
    Some(utime.saturating_add(stime))
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    /// The mounted directory's path inside its filesystem (`/kubepods` for a bind mount).
    pub root: String,
    /// Where it is mounted.
    pub point: String,
    /// Per-mount options (`rw,relatime`).
    pub options: &'a str,
    /// Filesystem type (`cgroup2`, `ext4`).
    pub fstype: &'a str,
    /// Per-superblock options (`rw,nsdelegate`; cgroup v1 controllers are here).
    pub super_options: &'a str,
}

impl Mount<'_> {
    /// Whether `opt` is among the per-mount or per-superblock options.
    pub fn has_option(&self, opt: &str) -> bool {
        self.options
            .split(',')
            .chain(self.super_options.split(','))
            .any(|o| o == opt)
    }
}

/// The kernel's octal escapes in mountinfo paths (`\040` for a space) undone.
fn unescape(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts in `/proc/<pid>/mountinfo` text, in order; malformed lines are skipped.
pub fn mounts(mountinfo: &str) -> impl Iterator<Item = Mount<'_>> {
    mountinfo.lines().filter_map(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split(' ').skip(3);
        let (root, point, options) = (l.next()?, l.next()?, l.next()?);
        let mut r = right.split(' ');
        let fstype = r.next()?;
        let super_options = r.nth(1).unwrap_or("");
        Some(Mount {
            root: unescape(root),
            point: unescape(point),
            options,
            fstype,
            super_options,
        })
    })
}

/// The path of directory `dir` inside the cgroup v2 hierarchy, as the kernel prints cgroup
/// paths (`/kubepods/pod1`), from `/proc/self/mountinfo` text: the longest `cgroup2` mount
/// point that holds `dir`, its root joined with the rest. `None` when no cgroup2 mount holds it.
pub fn cgroup2_path(mountinfo: &str, dir: &std::path::Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for m in mounts(mountinfo).filter(|m| m.fstype == "cgroup2") {
        let Ok(rest) = dir.strip_prefix(&m.point) else {
            continue;
        };
        if best.as_ref().is_some_and(|(len, _)| m.point.len() < *len) {
            continue;
        }
        let mut path = m.root.trim_end_matches('/').to_string();
        for c in rest.components() {
            path.push('/');
            path.push_str(&c.as_os_str().to_string_lossy());
        }
        if path.is_empty() {
            path.push('/');
        }
        best = Some((m.point.len(), path));
    }
    best.map(|(_, p)| p)
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
        // Range-checked where parsed: not pressure, whatever the parser accepts.
        for bad in ["nan", "inf", "-1", "100.5"] {
            assert_eq!(psi_some_avg10(&format!("some avg10={bad} avg60=0")), None);
        }
        assert_eq!(
            kib_field_bytes("MemTotal:  16 kB\nVmRSS:\t 4 kB\n", "VmRSS"),
            Some(4096)
        );
        assert_eq!(kib_field_bytes("MemTotal:  16 kB\n", "Mem"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(proc_stat_cpu_ticks(stat), Some(10));
        assert_eq!(proc_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn cgroup2_paths_from_mountinfo() {
        use std::path::Path;
        let mi = "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n\
                  36 25 0:31 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n\
                  40 36 0:31 /kubepods /host/kubepods rw - cgroup2 cgroup2 rw\n";
        let p = |d: &str| cgroup2_path(mi, Path::new(d));
        assert_eq!(p("/sys/fs/cgroup").as_deref(), Some("/"));
        assert_eq!(p("/sys/fs/cgroup/hot").as_deref(), Some("/hot"));
        assert_eq!(p("/sys/fs/cgroup/a/b/").as_deref(), Some("/a/b"));
        assert_eq!(p("/host/kubepods/pod1").as_deref(), Some("/kubepods/pod1"));
        assert_eq!(p("/sys/kernel"), None, "sysfs is not cgroup2");
        assert_eq!(p("/tmp/x"), None);
        assert_eq!(
            cgroup2_path("garbage\n\n", Path::new("/sys/fs/cgroup")),
            None
        );
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let mi = "36 25 0:31 / /sys/fs/cgroup rw,nosuid shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate\n\
                  50 36 8:1 /data /mnt/my\\040disk ro,noatime - ext4 /dev/sda1 rw,lazytime\n\
                  no separator here\n";
        let m: Vec<Mount> = mounts(mi).collect();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].fstype, m[0].point.as_str(), m[0].root.as_str()),
            ("cgroup2", "/sys/fs/cgroup", "/")
        );
        assert_eq!(m[0].super_options, "rw,nsdelegate");
        assert!(m[0].has_option("nsdelegate") && m[0].has_option("nosuid"));
        assert_eq!(m[1].point, "/mnt/my disk");
        assert!(
            m[1].has_option("ro") && m[1].has_option("lazytime") && !m[1].has_option("relatime")
        );
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0", "a lone backslash stays");
    }
}
