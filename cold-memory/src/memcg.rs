//! The universal fallback: memcg statistics. Cold file bytes = `inactive_file` (pages the
//! kernel's LRU already judged not recently used; no age threshold); file refaults from
//! `workingset_refault_file` (v2, and v1 since 5.9) or `workingset_refault` (older v1);
//! reclaim through cgroup v2 `memory.reclaim`.

use std::path::Path;

use crate::kernel_text::keyed;

/// What `memory.stat` says about file pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStats {
    /// Inactive file bytes.
    pub inactive_file: u64,
    /// Active file bytes.
    pub active_file: u64,
    /// Cumulative file refaults (pages).
    pub refaults: u64,
}

impl FileStats {
    /// All file bytes, active and inactive: what reclaim shrinks.
    pub fn total(&self) -> u64 {
        self.inactive_file.saturating_add(self.active_file)
    }
}

/// Parses `memory.stat` (v2 keys, or v1 `total_*` keys).
pub fn file_stats(stat: &str) -> Option<FileStats> {
    let get = |k: &str| keyed(stat, k).or_else(|| keyed(stat, &format!("total_{k}")));
    Some(FileStats {
        inactive_file: get("inactive_file")?,
        active_file: get("active_file").unwrap_or(0),
        refaults: get("workingset_refault_file")
            .or_else(|| get("workingset_refault"))
            .unwrap_or(0),
    })
}

/// Reads `memory.stat` of the cgroup at `dir`.
pub fn read(dir: &Path) -> Result<FileStats, String> {
    let p = dir.join("memory.stat");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    file_stats(&text).ok_or_else(|| format!("{}: no inactive_file", p.display()))
}

/// Asks the kernel to reclaim `bytes` from the cgroup at `dir` (cgroup v2 `memory.reclaim`).
/// The kernel answers `EAGAIN` when it could not reclaim that much; that is reported, not
/// retried.
pub fn reclaim(dir: &Path, bytes: u64) -> Result<(), String> {
    let p = dir.join("memory.reclaim");
    std::fs::write(&p, bytes.to_string()).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_keys() {
        let v2 = "anon 100\nfile 900\nactive_file 300\ninactive_file 600\nworkingset_refault_anon 1\nworkingset_refault_file 42\n";
        assert_eq!(
            file_stats(v2),
            Some(FileStats {
                inactive_file: 600,
                active_file: 300,
                refaults: 42
            })
        );
        let v1 = "cache 10\ninactive_file 5\ntotal_inactive_file 700\ntotal_active_file 20\nworkingset_refault 7\n";
        // The hierarchical total wins where both exist.
        assert_eq!(file_stats(v1).unwrap().inactive_file, 5);
        assert_eq!(
            file_stats("total_inactive_file 9\n").unwrap().inactive_file,
            9
        );
        assert_eq!(file_stats(v1).unwrap().refaults, 7);
        assert_eq!(file_stats("anon 1\n"), None);
    }
}
