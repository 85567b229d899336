//! Usage history per pod and per workload: a recent ring of slot maxima plus a decaying histogram.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::histogram::{DecayingHistogram, HistogramOptions};

/// Identity of a usage series (a pod, a container, or a trace workload).
pub type SeriesId = u64;
/// Identity of a workload (owner: Deployment, StatefulSet, job…); siblings share it.
pub type WorkloadId = u64;

/// History settings shared by every series of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryOptions {
    /// Bucket layout and half-life.
    pub histogram: HistogramOptions,
    /// Width of one recent slot, in seconds (each slot keeps its maximum).
    pub slot_secs: u32,
    /// Number of recent slots kept.
    pub recent_slots: u16,
}

impl HistoryOptions {
    /// Recent ring of `recent_secs` at one-minute slots (at least one slot).
    pub fn new(histogram: HistogramOptions, recent_secs: u64) -> Self {
        let slots = (recent_secs / 60).clamp(1, 1024);
        Self {
            histogram,
            slot_secs: 60,
            recent_slots: u16::try_from(slots).unwrap_or(1024),
        }
    }
}

/// History of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSeries {
    /// Long history.
    pub hist: DecayingHistogram,
    /// Maxima of the most recent slots, oldest first; the last entry is the open slot.
    recent: VecDeque<f32>,
    /// Start of the open slot, seconds.
    slot_start: u64,
    /// First and last sample times, seconds.
    first_seen: u64,
    last_seen: u64,
    /// Owning workload, if known.
    pub workload: Option<WorkloadId>,
}

impl UsageSeries {
    fn new(time: u64, workload: Option<WorkloadId>) -> Self {
        Self {
            hist: DecayingHistogram::new(),
            recent: VecDeque::new(),
            slot_start: time,
            first_seen: time,
            last_seen: time,
            workload,
        }
    }

    /// Records a sample. Samples older than the last one are ignored (clock went back).
    pub fn add(&mut self, opts: &HistoryOptions, time: u64, value: f64) {
        if !value.is_finite() || time < self.last_seen && !self.recent.is_empty() {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        self.hist
            .add(&opts.histogram, value.max(0.0), 1.0, time as f64);
        let slot = u64::from(opts.slot_secs.max(1));
        #[allow(clippy::cast_possible_truncation)]
        let v = value.max(0.0) as f32;
        if self.recent.is_empty() {
            self.slot_start = time - time % slot;
            self.recent.push_back(v);
        } else if time >= self.slot_start.saturating_add(slot) {
            // Close slots; gaps become empty (zero) slots, capped at the ring length.
            let skipped =
                (time.saturating_sub(self.slot_start) / slot).min(u64::from(opts.recent_slots));
            for _ in 1..skipped {
                self.recent.push_back(0.0);
            }
            self.recent.push_back(v);
            self.slot_start = time - time % slot;
        } else if let Some(last) = self.recent.back_mut() {
            *last = last.max(v);
        }
        while self.recent.len() > usize::from(opts.recent_slots) {
            self.recent.pop_front();
        }
        self.last_seen = time;
    }

    /// Maximum over the recent slots.
    pub fn recent_max(&self) -> Option<f64> {
        self.recent.iter().copied().reduce(f32::max).map(f64::from)
    }

    /// The most recent value recorded (maximum of the open slot).
    pub fn latest(&self) -> Option<f64> {
        self.recent.back().copied().map(f64::from)
    }

    /// Seconds between the first and last sample.
    pub fn age_secs(&self) -> u64 {
        // Saturating: a restored checkpoint may hold any pair (the agent's fuzzing found it).
        self.last_seen.saturating_sub(self.first_seen)
    }

    /// Time of the last sample.
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// Bytes in memory, heap included.
    pub fn heap_size(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<DecayingHistogram>()
            + self.hist.heap_size()
            + self.recent.capacity() * std::mem::size_of::<f32>()
    }
}

/// Histories of many series of one resource, and their workloads' merged histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStore {
    /// Settings.
    pub opts: HistoryOptions,
    series: BTreeMap<SeriesId, UsageSeries>,
    workloads: BTreeMap<WorkloadId, DecayingHistogram>,
}

impl HistoryStore {
    /// An empty store.
    pub fn new(opts: HistoryOptions) -> Self {
        Self {
            opts,
            series: BTreeMap::new(),
            workloads: BTreeMap::new(),
        }
    }

    /// Records one sample of one series; a new series is created on first sight.
    pub fn add(&mut self, id: SeriesId, workload: Option<WorkloadId>, time: u64, value: f64) {
        let opts = self.opts;
        let s = self
            .series
            .entry(id)
            .or_insert_with(|| UsageSeries::new(time, workload));
        s.add(&opts, time, value);
        if let Some(w) = workload.or(s.workload) {
            #[allow(clippy::cast_precision_loss)]
            self.workloads.entry(w).or_default().add(
                &opts.histogram,
                value.max(0.0),
                1.0,
                time as f64,
            );
        }
    }

    /// The series, if known.
    pub fn get(&self, id: SeriesId) -> Option<&UsageSeries> {
        self.series.get(&id)
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is stored.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Forgets series not seen since `cutoff` (pods that went away). Workload history stays:
    /// it is what a replacement pod starts from.
    pub fn forget_older_than(&mut self, cutoff: u64) {
        self.series.retain(|_, s| s.last_seen >= cutoff);
    }

    /// Percentile `p` of a series' history, falling back to its workload's history for a
    /// series too young to have its own (younger than `min_age_secs`), and to `fallback`
    /// (its request) when neither exists.
    pub fn percentile_or(
        &self,
        id: SeriesId,
        workload: Option<WorkloadId>,
        p: f64,
        min_age_secs: u64,
        fallback: f64,
    ) -> f64 {
        let h = &self.opts.histogram;
        let own = self.series.get(&id);
        if let Some(s) = own.filter(|s| s.age_secs() >= min_age_secs)
            && let Some(v) = s.hist.percentile(h, p)
        {
            return v;
        }
        let wl = workload.or_else(|| own.and_then(|s| s.workload));
        if let Some(v) = wl
            .and_then(|w| self.workloads.get(&w))
            .and_then(|wh| wh.percentile(h, p))
        {
            return v;
        }
        fallback
    }

    /// Adds to `out[i]` the percentile at `levels[i]` (ascending) of a series, with the
    /// same fallbacks as [`percentile_or`](Self::percentile_or): its workload's history for a
    /// series younger than `min_age_secs`, then `fallback` at every level.
    pub fn add_percentiles_or(
        &self,
        id: SeriesId,
        workload: Option<WorkloadId>,
        levels: &[f64],
        min_age_secs: u64,
        fallback: f64,
        out: &mut [f64],
    ) {
        let h = &self.opts.histogram;
        let mut tmp = [0.0f64; 24];
        let n = levels.len().min(out.len()).min(tmp.len());
        let own = self.series.get(&id);
        let found = own
            .filter(|s| s.age_secs() >= min_age_secs)
            .is_some_and(|s| s.hist.percentiles(h, &levels[..n], &mut tmp[..n]))
            || workload
                .or_else(|| own.and_then(|s| s.workload))
                .and_then(|w| self.workloads.get(&w))
                .is_some_and(|wh| wh.percentiles(h, &levels[..n], &mut tmp[..n]));
        if !found {
            tmp[..n].fill(fallback);
        }
        for (o, v) in out.iter_mut().zip(&tmp[..n]) {
            *o += v;
        }
    }

    /// Bytes in memory for all series and workloads.
    pub fn heap_size(&self) -> usize {
        let per_entry = std::mem::size_of::<SeriesId>() + 3 * std::mem::size_of::<usize>();
        self.series
            .values()
            .map(|s| s.heap_size() + per_entry)
            .sum::<usize>()
            + self
                .workloads
                .values()
                .map(|h| h.heap_size() + per_entry)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> HistoryStore {
        HistoryStore::new(HistoryOptions::new(HistogramOptions::cpu(86_400.0), 3600))
    }

    #[test]
    fn recent_ring_keeps_slot_maxima() {
        let mut s = store();
        for t in 0..600u64 {
            // A spike of 900 at t = 125 and otherwise 100.
            s.add(1, None, t, if t == 125 { 900.0 } else { 100.0 });
        }
        let series = s.get(1).unwrap();
        assert_eq!(series.recent.len(), 10);
        assert_eq!(series.recent[2], 900.0);
        assert_eq!(series.recent_max(), Some(900.0));
        assert_eq!(series.latest(), Some(100.0));
        assert_eq!(series.age_secs(), 599);
    }

    #[test]
    fn ring_is_bounded_and_gaps_are_empty_slots() {
        let mut s = store();
        s.add(1, None, 0, 5.0);
        s.add(1, None, 600, 7.0); // ten minutes later: nine empty slots between
        assert_eq!(s.get(1).unwrap().recent.len(), 11);
        for t in (0..10 * 3600u64).step_by(60) {
            s.add(2, None, t, 1.0);
        }
        assert_eq!(s.get(2).unwrap().recent.len(), 60);
    }

    #[test]
    fn new_pod_starts_from_its_siblings() {
        let mut s = store();
        for t in 0..7200u64 {
            s.add(1, Some(42), t, 300.0);
            s.add(2, Some(42), t, 310.0);
        }
        // Pod 3 of the same workload has one sample; it is too young for its own history.
        s.add(3, Some(42), 7200, 5.0);
        let p = s.percentile_or(3, Some(42), 0.99, 3600, 4000.0);
        assert!((300.0..=340.0).contains(&p), "{p}");
        // Unknown workload and no history: the request.
        assert_eq!(s.percentile_or(9, Some(7), 0.99, 3600, 4000.0), 4000.0);
        // An old enough pod uses its own history.
        let own = s.percentile_or(1, Some(42), 0.99, 3600, 4000.0);
        assert!((300.0..=320.0).contains(&own), "{own}");
    }

    #[test]
    fn state_per_series_stays_under_one_kib() {
        // A day of 10 s samples spread over a wide band, 100 series in 10 workloads.
        let mut s = store();
        let mut x = 1u64;
        for t in (0..86_400u64).step_by(10) {
            for id in 0..100u64 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let v = 100.0 + (x >> 40) as f64 % 2_000.0;
                s.add(id, Some(id / 10), t, v);
            }
        }
        let per_series = s.heap_size() / s.len();
        assert!(per_series <= 1024, "{per_series} bytes per series");
    }

    #[test]
    fn forgetting_keeps_workload_history() {
        let mut s = store();
        s.add(1, Some(3), 0, 50.0);
        s.add(2, Some(3), 1000, 60.0);
        s.forget_older_than(500);
        assert_eq!(s.len(), 1);
        assert!(s.percentile_or(1, Some(3), 0.5, 0, 0.0) > 0.0);
    }
}
