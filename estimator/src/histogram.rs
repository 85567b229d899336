//! Decaying exponential-bucket histograms (the VPA recommender's idea), compact and serialisable.
//!
//! Bucket `i` covers `[start(i), start(i+1))` with `start(i) = first · (ratioⁱ − 1) / (ratio − 1)`:
//! bucket widths grow geometrically, so relative precision is constant from a few millicores
//! to a thousand cores. A sample taken at time `t` weighs `2^((t − t_ref) / half_life)`;
//! newer samples weigh more, which is the same as decaying all older weights, without
//! touching them. When the weights grow large the reference time moves forward and every
//! weight is scaled down once.
//!
//! Only the span of buckets between the lowest and highest non-empty one is stored, so a
//! series that lives in a narrow band costs a few hundred bytes.

use serde::{Deserialize, Serialize};

/// Bucket layout of a histogram; the same for every series of one resource. Read back (a
/// checkpoint) only when the layout is usable: a finite positive first bucket and half-life, a
/// ratio in (1, 10] and buckets whose bounds stay finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawHistogramOptions")]
pub struct HistogramOptions {
    /// Width of the first bucket, in the resource's unit (millicores or bytes).
    pub first_bucket: f64,
    /// Each bucket is this much wider than the previous one (> 1).
    pub ratio: f64,
    /// Number of buckets; values past the last bucket land in it.
    pub num_buckets: u16,
    /// Half-life of sample weights, in seconds.
    pub half_life_secs: f64,
}

/// [`HistogramOptions`] as stored, before its checks.
#[derive(Deserialize)]
struct RawHistogramOptions {
    first_bucket: f64,
    ratio: f64,
    num_buckets: u16,
    half_life_secs: f64,
}

impl TryFrom<RawHistogramOptions> for HistogramOptions {
    type Error = String;
    fn try_from(r: RawHistogramOptions) -> Result<Self, String> {
        let o = Self {
            first_bucket: r.first_bucket,
            ratio: r.ratio,
            num_buckets: r.num_buckets,
            half_life_secs: r.half_life_secs,
        };
        if !(o.first_bucket.is_finite() && o.first_bucket > 0.0) {
            return Err(format!(
                "histogram first_bucket {} is not a positive width",
                o.first_bucket
            ));
        }
        if !(o.ratio > 1.0 && o.ratio <= 10.0) {
            return Err(format!("histogram ratio {} is not in (1, 10]", o.ratio));
        }
        if o.num_buckets == 0 || !o.bucket_start(usize::from(o.num_buckets)).is_finite() {
            return Err(format!(
                "histogram of {} buckets growing by {} has no finite bounds",
                o.num_buckets, o.ratio
            ));
        }
        if !(o.half_life_secs.is_finite() && o.half_life_secs > 0.0) {
            return Err(format!(
                "histogram half_life_secs {} is not positive",
                o.half_life_secs
            ));
        }
        Ok(o)
    }
}

impl HistogramOptions {
    /// CPU: 10 m first bucket, 5% growth, up to ~1,000 cores.
    pub fn cpu(half_life_secs: f64) -> Self {
        Self::spanning(10.0, 1.05, 1_000_000.0, half_life_secs)
    }

    /// Memory: 10 MB first bucket, 5% growth, up to ~1 TB.
    pub fn memory(half_life_secs: f64) -> Self {
        Self::spanning(1e7, 1.05, 1e12, half_life_secs)
    }

    /// A layout whose buckets reach `max_value`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn spanning(first_bucket: f64, ratio: f64, max_value: f64, half_life_secs: f64) -> Self {
        let n = ((1.0 + max_value * (ratio - 1.0) / first_bucket).ln() / ratio.ln()).ceil() + 1.0;
        Self {
            first_bucket,
            ratio,
            num_buckets: n.clamp(1.0, f64::from(u16::MAX)) as u16,
            half_life_secs,
        }
    }

    /// Lower bound of bucket `i`.
    pub fn bucket_start(&self, i: usize) -> f64 {
        let exp = i32::try_from(i).unwrap_or(i32::MAX);
        self.first_bucket * (self.ratio.powi(exp) - 1.0) / (self.ratio - 1.0)
    }

    /// Bucket holding `value` (values below zero go to bucket 0, huge ones to the last).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn bucket_of(&self, value: f64) -> usize {
        if value.is_nan() || value <= 0.0 {
            return 0;
        }
        let i =
            ((1.0 + value * (self.ratio - 1.0) / self.first_bucket).ln() / self.ratio.ln()).floor();
        let last = usize::from(self.num_buckets.saturating_sub(1));
        if i >= last as f64 {
            last
        } else {
            i.max(0.0) as usize
        }
    }
}

/// Weights above this trigger a rescale so f32 keeps its precision.
const RESCALE_ABOVE: f64 = 1e12;

/// A decaying histogram of one usage series. Read back only with finite, non-negative weights
/// and a finite reference time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawDecayingHistogram")]
pub struct DecayingHistogram {
    /// Index of the first stored bucket.
    lo: u16,
    /// Weights of buckets `lo .. lo + weights.len()`.
    weights: Vec<f32>,
    /// Sum of all weights (kept in f64 to avoid drift).
    total: f64,
    /// Reference time of weight 1, in seconds (`None` until the first sample).
    ref_time: Option<f64>,
}

/// [`DecayingHistogram`] as stored, before its checks.
#[derive(Deserialize)]
struct RawDecayingHistogram {
    lo: u16,
    weights: Vec<f32>,
    total: f64,
    ref_time: Option<f64>,
}

impl TryFrom<RawDecayingHistogram> for DecayingHistogram {
    type Error = String;
    fn try_from(r: RawDecayingHistogram) -> Result<Self, String> {
        if !r.weights.iter().all(|w| w.is_finite() && *w >= 0.0) {
            return Err("histogram weights must be finite and non-negative".into());
        }
        if !(r.total.is_finite() && r.total >= 0.0) {
            return Err(format!(
                "histogram total {} is not a finite weight",
                r.total
            ));
        }
        if r.ref_time.is_some_and(|t| !t.is_finite()) {
            return Err("histogram reference time is not finite".into());
        }
        Ok(Self {
            lo: r.lo,
            weights: r.weights,
            total: r.total,
            ref_time: r.ref_time,
        })
    }
}

impl Default for DecayingHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl DecayingHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            lo: 0,
            weights: Vec::new(),
            total: 0.0,
            ref_time: None,
        }
    }

    /// True when no sample has been added (or all weight decayed to nothing).
    pub fn is_empty(&self) -> bool {
        self.total <= 0.0
    }

    /// Adds a sample of `value` taken at `time_secs` with base weight `weight`.
    pub fn add(&mut self, opts: &HistogramOptions, value: f64, weight: f64, time_secs: f64) {
        if !(value.is_finite() && weight > 0.0 && time_secs.is_finite()) {
            return;
        }
        let ref_time = *self.ref_time.get_or_insert(time_secs);
        let mut w = weight * decay_factor(opts, time_secs - ref_time);
        if w > RESCALE_ABOVE {
            self.rescale(opts, time_secs);
            w = weight;
        }
        let b = u16::try_from(opts.bucket_of(value)).unwrap_or(u16::MAX);
        self.ensure_bucket(b);
        let idx = usize::from(b - self.lo);
        #[allow(clippy::cast_possible_truncation)]
        {
            self.weights[idx] += w as f32;
        }
        self.total += w;
    }

    /// Moves the reference time to `time_secs`, scaling every weight accordingly.
    fn rescale(&mut self, opts: &HistogramOptions, time_secs: f64) {
        let f = decay_factor(opts, self.ref_time.unwrap_or(time_secs) - time_secs);
        #[allow(clippy::cast_possible_truncation)]
        let f32f = f as f32;
        for w in &mut self.weights {
            *w *= f32f;
        }
        self.total *= f;
        self.ref_time = Some(time_secs);
        self.trim();
    }

    fn ensure_bucket(&mut self, b: u16) {
        if self.weights.is_empty() {
            self.lo = b;
            self.weights.push(0.0);
        } else if b < self.lo {
            let grow = usize::from(self.lo - b);
            self.weights.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.lo = b;
        } else {
            let need = usize::from(b - self.lo) + 1;
            if need > self.weights.len() {
                self.weights.resize(need, 0.0);
            }
        }
    }

    /// Drops leading and trailing buckets whose weight decayed to (near) nothing.
    fn trim(&mut self) {
        let negligible = |w: &f32| f64::from(*w) <= self.total * 1e-9;
        let start = self
            .weights
            .iter()
            .position(|w| !negligible(w))
            .unwrap_or(self.weights.len());
        let end = self
            .weights
            .iter()
            .rposition(|w| !negligible(w))
            .map_or(start, |e| e + 1);
        if start > 0 || end < self.weights.len() {
            self.weights = self.weights[start..end].to_vec();
            self.lo += u16::try_from(start).unwrap_or(0);
            self.weights.shrink_to_fit();
        }
        if self.weights.is_empty() {
            self.total = 0.0;
        }
    }

    /// The value below which a share `p` (0..=1) of the weight lies: the upper end of the
    /// bucket where the cumulative weight reaches `p`. `None` when empty.
    pub fn percentile(&self, opts: &HistogramOptions, p: f64) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let target = p.clamp(0.0, 1.0) * self.total;
        let mut acc = 0.0;
        let mut chosen = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += f64::from(*w);
            if acc >= target && *w > 0.0 {
                chosen = i;
                break;
            }
        }
        Some(opts.bucket_start(usize::from(self.lo) + chosen + 1))
    }

    /// Several percentiles in one pass: `levels` must be ascending; `out[i]` receives the
    /// percentile at `levels[i]` (same rule as [`percentile`](Self::percentile)). Returns
    /// false, leaving `out` untouched, when empty.
    pub fn percentiles(&self, opts: &HistogramOptions, levels: &[f64], out: &mut [f64]) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut acc = 0.0;
        let mut k = 0;
        let last = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += f64::from(*w);
            while k < levels.len() && k < out.len() {
                let target = levels[k].clamp(0.0, 1.0) * self.total;
                if (acc >= target && *w > 0.0) || i == last {
                    out[k] = opts.bucket_start(usize::from(self.lo) + i + 1);
                    k += 1;
                } else {
                    break;
                }
            }
            if k == levels.len().min(out.len()) {
                break;
            }
        }
        true
    }

    /// Weighted mean, using bucket midpoints.
    pub fn mean(&self, opts: &HistogramOptions) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let sum: f64 = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let b = usize::from(self.lo) + i;
                f64::from(*w) * 0.5 * (opts.bucket_start(b) + opts.bucket_start(b + 1))
            })
            .sum();
        Some(sum / self.total)
    }

    /// Adds every sample of `other` (e.g. to build a workload's histogram from its pods).
    pub fn merge(&mut self, opts: &HistogramOptions, other: &DecayingHistogram) {
        if other.is_empty() {
            return;
        }
        let (Some(other_ref), Some(own_ref)) = (other.ref_time, self.ref_time.or(other.ref_time))
        else {
            return;
        };
        self.ref_time = Some(own_ref);
        // Express other's weights relative to our reference time.
        let f = decay_factor(opts, other_ref - own_ref);
        for (i, w) in other.weights.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            let b = other.lo + u16::try_from(i).unwrap_or(0);
            self.ensure_bucket(b);
            let add = f64::from(*w) * f;
            #[allow(clippy::cast_possible_truncation)]
            {
                self.weights[usize::from(b - self.lo)] += add as f32;
            }
            self.total += add;
        }
    }

    /// Bytes this histogram occupies in memory, heap included.
    pub fn heap_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.weights.capacity() * std::mem::size_of::<f32>()
    }
}

fn decay_factor(opts: &HistogramOptions, dt_secs: f64) -> f64 {
    (dt_secs / opts.half_life_secs).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_stored_layout_or_histogram_is_read_back_only_when_usable() {
        let o = HistogramOptions::cpu(86_400.0);
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<HistogramOptions>(&text).unwrap(), o);
        // One flipped byte of a checkpoint (found by the fuzzer): ratio 1.05 → 1E05, whose
        // bucket bounds overflow to infinity.
        let bad = text.replace("1.05", "1E05");
        let err = serde_json::from_str::<HistogramOptions>(&bad).unwrap_err();
        assert!(err.to_string().contains("ratio"), "{err}");
        for bad in [
            text.replace("\"first_bucket\":10.0", "\"first_bucket\":-1.0"),
            text.replace("\"half_life_secs\":86400.0", "\"half_life_secs\":0.0"),
            text.replace("\"num_buckets\":176", "\"num_buckets\":65535"),
        ] {
            assert_ne!(bad, text);
            assert!(
                serde_json::from_str::<HistogramOptions>(&bad).is_err(),
                "{bad}"
            );
        }
        let mut h = DecayingHistogram::new();
        h.add(&o, 500.0, 1.0, 0.0);
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<DecayingHistogram>(&text).unwrap(), h);
        // A weight too large for f32 reads as infinity: refused.
        let bad = text.replacen("1.0", "1E45", 1);
        assert_ne!(bad, text);
        assert!(
            serde_json::from_str::<DecayingHistogram>(&bad).is_err(),
            "{bad}"
        );
    }

    fn opts() -> HistogramOptions {
        HistogramOptions::cpu(3600.0)
    }

    #[test]
    fn buckets_are_geometric_and_cover_the_range() {
        let o = opts();
        assert_eq!(o.bucket_start(0), 0.0);
        assert!((o.bucket_start(1) - 10.0).abs() < 1e-9);
        assert!((o.bucket_start(2) - 20.5).abs() < 1e-9);
        assert!(o.bucket_start(usize::from(o.num_buckets)) >= 1_000_000.0);
        for v in [0.0, 5.0, 10.0, 999.0, 12_345.0, 1e9] {
            let b = o.bucket_of(v);
            assert!(
                o.bucket_start(b) <= v.min(o.bucket_start(usize::from(o.num_buckets) - 1)) + 1e-9,
                "{v}"
            );
            if v < 1e6 {
                assert!(v < o.bucket_start(b + 1), "{v}");
            }
        }
    }

    #[test]
    fn percentile_of_a_uniform_series() {
        let o = opts();
        let mut h = DecayingHistogram::new();
        for v in 1..=1000 {
            h.add(&o, f64::from(v), 1.0, 0.0);
        }
        let p50 = h.percentile(&o, 0.5).unwrap();
        let p99 = h.percentile(&o, 0.99).unwrap();
        // Upper bucket ends, within one 5% bucket of the exact value.
        assert!((500.0..=500.0 * 1.06).contains(&p50), "{p50}");
        assert!((990.0..=990.0 * 1.06).contains(&p99), "{p99}");
        let mean = h.mean(&o).unwrap();
        assert!((mean - 500.5).abs() < 500.5 * 0.03, "{mean}");
    }

    #[test]
    fn half_life_halves_the_weight_of_old_samples() {
        // 100 samples of 100 at t=0 and 50 samples of 1000 one half-life later: weights
        // are then equal (100·½ vs 50·1), so the median sits on the boundary.
        let o = opts();
        let mut h = DecayingHistogram::new();
        for _ in 0..100 {
            h.add(&o, 100.0, 1.0, 0.0);
        }
        for _ in 0..49 {
            h.add(&o, 1000.0, 1.0, 3600.0);
        }
        // Slightly less new weight: the median stays in the old bucket...
        assert!(h.percentile(&o, 0.5).unwrap() < 200.0);
        h.add(&o, 1000.0, 1.0, 3600.0);
        h.add(&o, 1000.0, 1.0, 3600.0);
        // ...slightly more and it moves to the new one.
        assert!(h.percentile(&o, 0.5).unwrap() > 900.0);
    }

    #[test]
    fn rescaling_keeps_percentiles() {
        let o = HistogramOptions::cpu(60.0);
        let mut h = DecayingHistogram::new();
        // 30 days at one sample a minute with a one-minute half-life forces many rescales.
        for i in 0..43_200u32 {
            let v = if i % 2 == 0 { 100.0 } else { 300.0 };
            h.add(&o, v, 1.0, f64::from(i) * 60.0);
        }
        assert!(h.total.is_finite() && h.total > 0.0);
        let p = h.percentile(&o, 0.9).unwrap();
        assert!((300.0..330.0).contains(&p), "{p}");
        assert!(
            h.weights.len() < 40,
            "trimmed to the live span: {}",
            h.weights.len()
        );
    }

    #[test]
    fn merge_equals_adding_the_samples() {
        let o = opts();
        let (mut a, mut b, mut both) = (
            DecayingHistogram::new(),
            DecayingHistogram::new(),
            DecayingHistogram::new(),
        );
        for i in 0..200u32 {
            let t = f64::from(i) * 30.0;
            a.add(&o, f64::from(i % 17) * 10.0, 1.0, t);
            b.add(&o, 500.0 + f64::from(i % 5), 1.0, t + 7.0);
            both.add(&o, f64::from(i % 17) * 10.0, 1.0, t);
            both.add(&o, 500.0 + f64::from(i % 5), 1.0, t + 7.0);
        }
        a.merge(&o, &b);
        for p in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(a.percentile(&o, p), both.percentile(&o, p), "p{p}");
        }
    }

    #[test]
    fn garbage_samples_are_ignored() {
        let o = opts();
        let mut h = DecayingHistogram::new();
        h.add(&o, f64::NAN, 1.0, 0.0);
        h.add(&o, 5.0, 0.0, 0.0);
        h.add(&o, 5.0, 1.0, f64::INFINITY);
        assert!(h.is_empty());
        assert_eq!(h.percentile(&o, 0.5), None);
    }

    proptest! {
        #[test]
        fn percentiles_are_monotone_and_bound_the_data(values in prop::collection::vec(0.0f64..100_000.0, 1..200)) {
            let o = opts();
            let mut h = DecayingHistogram::new();
            for (i, v) in values.iter().enumerate() {
                h.add(&o, *v, 1.0, i as f64);
            }
            let max = values.iter().cloned().fold(0.0, f64::max);
            let mut last = 0.0;
            for p in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
                let q = h.percentile(&o, p).unwrap();
                prop_assert!(q >= last);
                last = q;
            }
            // The 100th percentile is the upper end of the max's bucket: at least the max, at most 5% + one bucket above.
            prop_assert!(last >= max);
            prop_assert!(last <= max * 1.06 + 10.0);
        }
    }
}
