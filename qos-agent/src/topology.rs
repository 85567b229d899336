//! The node's CPU topology from sysfs (`/sys/devices/system/cpu`): physical cores (hyperthread
//! siblings), NUMA nodes and last-level caches. Missing files degrade to the plainest reading
//! (each CPU its own core, one NUMA node, one cache) instead of failing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::cpuset::CpuSet;

/// One physical core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    /// Its logical CPUs (hyperthread siblings).
    pub cpus: CpuSet,
    /// NUMA node.
    pub numa: u32,
    /// Last-level cache id (the lowest CPU sharing it).
    pub llc: u32,
}

/// The node's cores, ordered by NUMA node, cache, then first CPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// Physical cores.
    pub cores: Vec<Core>,
}

/// The topology cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("reading CPU topology under {path}: {source}")]
pub struct TopologyError {
    /// The sysfs directory.
    pub path: String,
    /// Cause.
    pub source: std::io::Error,
}

fn read_set(path: &Path) -> Option<CpuSet> {
    fs::read_to_string(path).ok()?.parse().ok()
}

fn numa_of(cpu_dir: &Path) -> u32 {
    fs::read_dir(cpu_dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .unwrap_or(0)
}

fn llc_of(cpu_dir: &Path, cpu: u32) -> u32 {
    // The highest cache level present is the last-level cache.
    let mut best: Option<(u32, u32)> = None;
    for e in fs::read_dir(cpu_dir.join("cache"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = e.path();
        let level: Option<u32> = fs::read_to_string(dir.join("level"))
            .ok()
            .and_then(|l| l.trim().parse().ok());
        let shared = read_set(&dir.join("shared_cpu_list"));
        if let (Some(level), Some(shared)) = (level, shared)
            && best.is_none_or(|(l, _)| level > l)
        {
            best = Some((level, shared.iter().next().unwrap_or(cpu)));
        }
    }
    best.map_or(0, |(_, id)| id)
}

impl Topology {
    /// Reads the topology under `root` (normally `/sys/devices/system/cpu`).
    pub fn read(root: &Path) -> Result<Topology, TopologyError> {
        let online = fs::read_to_string(root.join("online")).map_err(|source| TopologyError {
            path: root.display().to_string(),
            source,
        })?;
        let online: CpuSet = online.parse().map_err(|e| TopologyError {
            path: root.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let mut cores: BTreeMap<u32, Core> = BTreeMap::new();
        for cpu in online.iter() {
            let dir = root.join(format!("cpu{cpu}"));
            let siblings = read_set(&dir.join("topology/thread_siblings_list"))
                .or_else(|| read_set(&dir.join("topology/core_cpus_list")))
                .map_or_else(|| [cpu].into_iter().collect(), |s| s.intersection(&online));
            let first = siblings.iter().next().unwrap_or(cpu);
            cores.entry(first).or_insert_with(|| Core {
                cpus: siblings,
                numa: numa_of(&dir),
                llc: llc_of(&dir, cpu),
            });
        }
        let mut cores: Vec<Core> = cores.into_values().collect();
        cores.sort_by_key(|c| (c.numa, c.llc, c.cpus.iter().next()));
        Ok(Topology { cores })
    }

    /// Every logical CPU.
    pub fn all_cpus(&self) -> CpuSet {
        self.cores.iter().flat_map(|c| c.cpus.iter()).collect()
    }

    /// Logical CPUs per core (the largest seen).
    pub fn threads_per_core(&self) -> usize {
        self.cores.iter().map(|c| c.cpus.len()).max().unwrap_or(1)
    }
}

/// Writes a fake sysfs CPU tree (for tests): `cores` physical cores × `threads` siblings,
/// numbered like Linux on x86 (sibling of CPU `i` is `i + cores`), split evenly over `numa`
/// nodes, one LLC per NUMA node.
#[doc(hidden)]
pub fn write_fake_sysfs(root: &Path, cores: u32, threads: u32, numa: u32) -> std::io::Result<()> {
    let total = cores * threads;
    fs::create_dir_all(root)?;
    fs::write(root.join("online"), format!("0-{}\n", total - 1))?;
    let per_node = cores / numa.max(1);
    for cpu in 0..total {
        let core = cpu % cores;
        let node = (core / per_node.max(1)).min(numa.max(1) - 1);
        let dir = root.join(format!("cpu{cpu}"));
        fs::create_dir_all(dir.join("topology"))?;
        let sibs: CpuSet = (0..threads).map(|t| core + t * cores).collect();
        fs::write(
            dir.join("topology/thread_siblings_list"),
            format!("{sibs}\n"),
        )?;
        fs::create_dir_all(dir.join(format!("node{node}")))?;
        let llc_dir = dir.join("cache/index3");
        fs::create_dir_all(&llc_dir)?;
        fs::write(llc_dir.join("level"), "3\n")?;
        let llc: CpuSet = (0..total)
            .filter(|c| ((c % cores) / per_node.max(1)).min(numa.max(1) - 1) == node)
            .collect();
        fs::write(llc_dir.join("shared_cpu_list"), format!("{llc}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_siblings_numa_and_llc_from_a_fake_tree() {
        let dir = std::env::temp_dir().join(format!("tide-topo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_fake_sysfs(&dir, 8, 2, 2).unwrap();
        let t = Topology::read(&dir).unwrap();
        assert_eq!(t.cores.len(), 8);
        assert_eq!(t.threads_per_core(), 2);
        assert_eq!(t.cores[0].cpus.to_string(), "0,8");
        assert_eq!(t.cores[0].numa, 0);
        assert_eq!(t.cores[4].cpus.to_string(), "4,12");
        assert_eq!(t.cores[4].numa, 1);
        assert_eq!(t.cores[4].llc, 4);
        assert_eq!(t.all_cpus().to_string(), "0-15");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn degrades_without_topology_files_and_fails_clearly_without_online() {
        let dir = std::env::temp_dir().join(format!("tide-topo-bare-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let err = Topology::read(&dir).unwrap_err().to_string();
        assert!(err.contains("reading CPU topology"), "{err}");
        fs::write(dir.join("online"), "0-3\n").unwrap();
        let t = Topology::read(&dir).unwrap();
        assert_eq!(t.cores.len(), 4);
        assert_eq!(t.threads_per_core(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_this_machine() {
        // The real sysfs of whatever machine runs the tests: at least one core, every online
        // CPU in exactly one core.
        let t = Topology::read(Path::new("/sys/devices/system/cpu")).unwrap();
        let n: usize = t.cores.iter().map(|c| c.cpus.len()).sum();
        assert_eq!(n, t.all_cpus().len());
        assert!(n >= 1);
    }
}
