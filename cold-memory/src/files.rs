//! Per-file detection and reclaim: the backend for when the kernel offers neither DAMON nor
//! MGLRU and `memory.reclaim` cannot be used (cgroup v1, or no write access to the cgroup), and
//! for directories an operator knows hold bulk data (logs, build caches, dataset shards).
//!
//! - How much of a file is cached: `cachestat(2)` (Linux 6.5+); without it the backend is not
//!   offered.
//! - Whether a file is cold: its access time proves it idle, read with the mount's atime
//!   rule. `strictatime` (and `lazytime`, whose in-memory atime `stat` returns) record every
//!   read: idle for `now − atime`. `relatime`, the default, updates atime only when it is a day
//!   old (or older than mtime/ctime), so a read within the day may not show: a file is provably
//!   idle only for `now − atime − 24 h`. `noatime` and read-only mounts record nothing: never
//!   cold. A file written recently (mtime) is not cold either. Mapping a file (`mmap`) counts
//!   as an access too.
//! - Reclaim: `posix_fadvise(POSIX_FADV_DONTNEED)` on the coldest-and-largest files until the
//!   budget is spent. Clean pages go at once; dirty ones are written back first and stay cached
//!   this period (`cachestat` after the call measures what really went).
//!
//! The two system calls are the crate's only `unsafe` code, each on a file descriptor owned by
//! a `File` for the whole call, with stack structs the kernel fills.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `cachestat(2)`'s syscall number (the same on every architecture since it was added, 6.5).
const SYS_CACHESTAT: libc::c_long = 451;
/// relatime updates atime once a day at most (unless atime ≤ mtime/ctime).
const RELATIME_SLACK: Duration = Duration::from_secs(24 * 3600);

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// A file's page-cache state from `cachestat(2)`, in pages.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStat {
    /// Pages cached.
    pub nr_cache: u64,
    /// Dirty pages.
    pub nr_dirty: u64,
    /// Pages under writeback.
    pub nr_writeback: u64,
    /// Pages evicted.
    pub nr_evicted: u64,
    /// Pages evicted recently enough that reading them again would count as a refault.
    pub nr_recently_evicted: u64,
}

/// The whole file's page-cache state.
pub fn cachestat(file: &File) -> io::Result<CacheStat> {
    let range = CachestatRange { off: 0, len: 0 };
    let mut cs = CacheStat::default();
    // SAFETY: the fd is open for the duration (borrowed from `file`); `range` and `cs` are
    // live, properly aligned `repr(C)` structs matching the kernel's `cachestat_range` and
    // `cachestat`; flags must be 0.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &raw const range,
            &raw mut cs,
            0u32,
        )
    };
    if rc == 0 {
        Ok(cs)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Drops the file's clean cached pages (`POSIX_FADV_DONTNEED` over the whole file).
pub fn drop_cache(file: &File) -> io::Result<()> {
    // SAFETY: plain integer arguments on an fd kept open by `file`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Whether this kernel has `cachestat(2)` (tried on `probe_file`).
pub fn supported(probe_file: &Path) -> bool {
    File::open(probe_file).is_ok_and(|f| cachestat(&f).is_ok())
}

/// How a mount records reads in atime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtimeRule {
    /// Every read (`strictatime`, `lazytime`).
    Strict,
    /// At most once a day (`relatime`, the default).
    Relative,
    /// Never (`noatime`).
    Never,
}

/// The atime rule of the mount holding `path`, from `/proc/self/mountinfo` text (the longest
/// mount point that is a prefix of `path`; the last one mounted there wins). Pure.
pub fn atime_rule(mountinfo: &str, path: &Path) -> AtimeRule {
    let mut best: Option<(usize, AtimeRule)> = None;
    for m in crate::kernel_text::mounts(mountinfo) {
        if !path.starts_with(&m.point) {
            continue;
        }
        // A read-only mount never updates atime: its atimes say nothing about reads.
        let rule = if m.has_option("noatime") || m.options.split(',').any(|x| x == "ro") {
            AtimeRule::Never
        } else if m.has_option("lazytime")
            || m.has_option("strictatime")
            || !m.has_option("relatime")
        {
            AtimeRule::Strict
        } else {
            AtimeRule::Relative
        };
        if best.is_none_or(|(len, _)| m.point.len() >= len) {
            best = Some((m.point.len(), rule));
        }
    }
    best.map_or(AtimeRule::Relative, |(_, r)| r)
}

/// How long a file is provably untouched at `now` (not read, not written), given its atime,
/// mtime and the mount's rule; `None` when nothing can be proven. Pure.
pub fn idle_for(
    rule: AtimeRule,
    atime: SystemTime,
    mtime: SystemTime,
    now: SystemTime,
) -> Option<Duration> {
    let since = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
    let read_idle = match rule {
        AtimeRule::Never => return None,
        AtimeRule::Strict => since(atime),
        AtimeRule::Relative => since(atime).saturating_sub(RELATIME_SLACK),
    };
    Some(read_idle.min(since(mtime)))
}

/// One cached file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// The file.
    pub path: PathBuf,
    /// Bytes cached.
    pub cached_bytes: u64,
    /// How long it is provably idle (`None`: unknown, never cold).
    pub idle: Option<Duration>,
}

/// Files under `roots` (recursively, not following symlinks, at most `max_files`) that have
/// pages cached. Unreadable entries are reported in the second value and skipped.
pub fn scan(
    roots: &[PathBuf],
    mountinfo: &str,
    now: SystemTime,
    page_size: u64,
    max_files: usize,
) -> (Vec<CachedFile>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        if meta.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(d) => stack.extend(d.flatten().map(|e| e.path())),
                Err(e) => errors.push(format!("{}: {e}", p.display())),
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        seen += 1;
        if seen > max_files {
            errors.push(format!(
                "more than {max_files} files under the roots: scan cut short"
            ));
            break;
        }
        let cs = match File::open(&p).and_then(|f| cachestat(&f)) {
            Ok(cs) => cs,
            Err(e) => {
                errors.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        if cs.nr_cache == 0 {
            continue;
        }
        let idle = match (meta.accessed(), meta.modified()) {
            (Ok(a), Ok(m)) => idle_for(atime_rule(mountinfo, &p), a, m, now),
            _ => None,
        };
        out.push(CachedFile {
            path: p,
            cached_bytes: cs.nr_cache.saturating_mul(page_size),
            idle,
        });
    }
    (out, errors)
}

/// The files idle at least `min_age`, largest cache first, until their cache covers `budget`
/// (the last one may overshoot: files are dropped whole). Pure.
pub fn select(files: &[CachedFile], min_age: Duration, budget: u64) -> Vec<&CachedFile> {
    let mut cold: Vec<&CachedFile> = files
        .iter()
        .filter(|f| f.idle.is_some_and(|i| i >= min_age))
        .collect();
    cold.sort_by(|a, b| {
        b.cached_bytes
            .cmp(&a.cached_bytes)
            .then(a.path.cmp(&b.path))
    });
    let mut total = 0u64;
    cold.into_iter()
        .take_while(|f| {
            let take = total < budget;
            total = total.saturating_add(f.cached_bytes);
            take
        })
        .collect()
}

/// Cold bytes among `files` (idle at least `min_age`). Pure.
pub fn cold_bytes(files: &[CachedFile], min_age: Duration) -> u64 {
    files
        .iter()
        .filter(|f| f.idle.is_some_and(|i| i >= min_age))
        .map(|f| f.cached_bytes)
        .fold(0, u64::saturating_add)
}

/// Drops the cache of each file; returns the bytes that really left the cache (measured with
/// `cachestat` before and after) and the problems met.
pub fn reclaim(files: &[&CachedFile], page_size: u64) -> (u64, Vec<String>) {
    let mut dropped = 0u64;
    let mut errors = Vec::new();
    for f in files {
        let r = File::open(&f.path).and_then(|file| {
            let before = cachestat(&file)?.nr_cache;
            drop_cache(&file)?;
            let after = cachestat(&file)?.nr_cache;
            Ok(before.saturating_sub(after).saturating_mul(page_size))
        });
        match r {
            Ok(b) => dropped = dropped.saturating_add(b),
            Err(e) => errors.push(format!("{}: {e}", f.path.display())),
        }
    }
    (dropped, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a Debian 12 host (ext4 root with relatime, a noatime data disk, a
    /// strictatime scratch mount, tmpfs).
    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 254:17 / /data rw,noatime shared:20 - ext4 /dev/vdb rw
31 22 254:33 / /scratch rw shared:21 - xfs /dev/vdc rw,attr2,inode64
32 22 0:40 / /run/lazy\\040dir rw,relatime shared:22 - ext4 /dev/vdd rw,lazytime
33 22 254:49 / /images ro,relatime shared:23 - ext4 /dev/vde ro
";

    #[test]
    fn the_mounts_atime_rule_is_found() {
        let r = |p: &str| atime_rule(MOUNTINFO, Path::new(p));
        assert_eq!(r("/var/log/syslog"), AtimeRule::Relative);
        assert_eq!(r("/data/shard-1"), AtimeRule::Never);
        assert_eq!(r("/scratch/x"), AtimeRule::Strict);
        assert_eq!(r("/run/lazy dir/x"), AtimeRule::Strict);
        assert_eq!(r("/images/base.qcow2"), AtimeRule::Never);
        // A prefix of a name is not a mount: /database is on /.
        assert_eq!(r("/database/x"), AtimeRule::Relative);
    }

    #[test]
    fn idleness_is_what_the_atime_rule_can_prove() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 24 * 3600);
        let ago = |s: u64| now - Duration::from_secs(s);
        let day = 24 * 3600;
        // Read 2 h ago on a strictatime mount, written 3 days ago: idle 2 h.
        assert_eq!(
            idle_for(AtimeRule::Strict, ago(7200), ago(3 * day), now),
            Some(Duration::from_secs(7200))
        );
        // relatime: an atime 2 h old proves nothing; 30 h old proves 6 h.
        assert_eq!(
            idle_for(AtimeRule::Relative, ago(7200), ago(3 * day), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            idle_for(AtimeRule::Relative, ago(30 * 3600), ago(3 * day), now),
            Some(Duration::from_secs(6 * 3600))
        );
        // Written a minute ago: idle a minute at most.
        assert_eq!(
            idle_for(AtimeRule::Strict, ago(7200), ago(60), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            idle_for(AtimeRule::Never, ago(99 * day), ago(99 * day), now),
            None
        );
        // Times in the future (clock steps) count as just now.
        assert_eq!(
            idle_for(
                AtimeRule::Strict,
                now + Duration::from_secs(5),
                ago(60),
                now
            ),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn the_largest_cold_files_are_chosen_until_the_budget() {
        let f = |name: &str, mib: u64, idle_s: Option<u64>| CachedFile {
            path: name.into(),
            cached_bytes: mib << 20,
            idle: idle_s.map(Duration::from_secs),
        };
        let files = [
            f("/a", 10, Some(600)),
            f("/b", 300, Some(600)),
            f("/c", 50, Some(10)),
            f("/d", 40, Some(600)),
            f("/e", 999, None),
        ];
        let min = Duration::from_secs(300);
        assert_eq!(cold_bytes(&files, min), 350 << 20);
        let names = |v: Vec<&CachedFile>| v.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        assert_eq!(names(select(&files, min, 100 << 20)), [PathBuf::from("/b")]);
        assert_eq!(
            names(select(&files, min, 320 << 20)),
            [PathBuf::from("/b"), PathBuf::from("/d")]
        );
        assert_eq!(names(select(&files, min, 1 << 40)).len(), 3);
        assert!(select(&files, min, 0).is_empty());
    }
}
