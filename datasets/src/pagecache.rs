//! The replay's HP page-cache model: a share of each HP pod's memory is file cache, part of it
//! cold; the agent's cold-memory reclaim drops cold cache, and dropped cache refaults over time.
//!
//! Parameters and where they come from (docs/replay.md):
//! - `file_share` 0.5: the seed's production report puts page cache at about half of the
//!   memory in use;
//! - `cold_share` 0.3: of that page cache, the share untouched for the reclaimer's minimum age.
//!   0.5 × 0.3 = 15% of memory in use is cold, the middle of the seed's 10–20% claim (our VM
//!   test found 37.5% cold, but that workload is cold by construction: docs/cold-memory.md);
//! - `refault_per_hour` 0.1: a tenth of the dropped cold cache is read back per hour (the cold
//!   set is touched rarely, not never); every byte read back is a refault, and it is memory
//!   in use again.

use serde::Serialize;

/// The model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PageCacheModel {
    /// Share of HP memory in use that is page cache.
    pub file_share: f64,
    /// Share of that page cache that is cold.
    pub cold_share: f64,
    /// Share of dropped cold cache read back (refaulted) per hour.
    pub refault_per_hour: f64,
}

impl Default for PageCacheModel {
    fn default() -> Self {
        Self {
            file_share: 0.5,
            cold_share: 0.3,
            refault_per_hour: 0.1,
        }
    }
}

impl PageCacheModel {
    /// Cold page cache in `hp_memory` bytes of HP memory in use (before any drop).
    pub fn cold_bytes(&self, hp_memory: f64) -> f64 {
        (hp_memory * self.file_share * self.cold_share).max(0.0)
    }
}

/// One node's page-cache state: how much of its HP cold cache is dropped right now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeCache {
    /// Bytes of HP cold page cache currently dropped.
    pub dropped: f64,
}

impl NodeCache {
    /// Advances one step of `step_secs` with `hp_memory` bytes of HP memory in use (before
    /// drops): cache of pods that shrank is gone, and part of what was dropped is read back.
    /// Returns the bytes refaulted in the step.
    #[allow(clippy::cast_precision_loss)]
    pub fn step(&mut self, m: &PageCacheModel, hp_memory: f64, step_secs: u64) -> f64 {
        self.dropped = self.dropped.min(m.cold_bytes(hp_memory));
        let back = self.dropped * (1.0 - (-m.refault_per_hour * step_secs as f64 / 3600.0).exp());
        self.dropped -= back;
        back
    }

    /// Cold cache still resident, which the agent could drop.
    pub fn cold_available(&self, m: &PageCacheModel, hp_memory: f64) -> f64 {
        (m.cold_bytes(hp_memory) - self.dropped).max(0.0)
    }

    /// Drops up to `bytes` of cold cache; returns what was dropped.
    pub fn reclaim(&mut self, m: &PageCacheModel, hp_memory: f64, bytes: f64) -> f64 {
        let b = bytes.min(self.cold_available(m, hp_memory)).max(0.0);
        self.dropped += b;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_cold_cache_and_it_comes_back() {
        let m = PageCacheModel::default();
        let gib = f64::from(1u32 << 30);
        let mut c = NodeCache::default();
        // 100 GiB in use: 50 GiB cache, 15 GiB cold.
        assert!((c.cold_available(&m, 100.0 * gib) - 15.0 * gib).abs() < 1.0);
        assert!((c.reclaim(&m, 100.0 * gib, 40.0 * gib) - 15.0 * gib).abs() < 1.0);
        assert_eq!(c.reclaim(&m, 100.0 * gib, gib), 0.0);
        // An hour later a tenth-ish has been read back (1 − e^−0.1 ≈ 9.5%).
        let back = c.step(&m, 100.0 * gib, 3600);
        assert!((back / (15.0 * gib) - 0.0952).abs() < 1e-3, "{back}");
        // HP memory halves: the cache that went with it is no longer dropped, it is gone.
        c.step(&m, 50.0 * gib, 0);
        assert!(c.dropped <= 7.5 * gib + 1.0);
    }
}
