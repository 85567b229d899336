//! `oom_score_adj` from the one priority order (DESIGN.md §4).
//!
//! The kernel kills the process with the highest `oom_badness` = share of memory used (in
//! thousandths) + `oom_score_adj`. The kubelet sets the adjustment by QoS class only
//! (Guaranteed −997, BestEffort 1000, Burstable by request). Tide sets it from the same key as
//! the eviction order — band, then PriorityClass value, then QoS class — so the kernel's choice
//! follows Tide's order. One rule comes first: every BE process ranks above every HP process
//! (the agent only ever evicts BE pods, so BE always go before HP in practice too):
//!
//! | band | BE pods | HP pods |
//! |---|---|---|
//! | Free | 901 … 1000 | −550 … −501 |
//! | Batch | 801 … 900 | −600 … −551 |
//! | Mid | 701 … 800 | −700 … −601 |
//! | Prod | 601 … 700 | −900 … −701 |
//! | System | 501 … 600 | −999 … −901 |
//!
//! Within a band the PriorityClass value is placed on a logarithmic scale and coarsened into
//! buckets (a band has at most a few hundred adjustment values for 2³² priorities); the
//! QoS class breaks ties inside a bucket (BE highest, then LS, LSR, LSE, SYSTEM). Equal keys get
//! equal values, and a pod earlier in the order never gets a lower value than one after it.
//! −1000 (never kill) is not used: the kernel keeps a last resort.

use tide_api::{Classification, PriorityBand};

/// The adjustment range of a band: (highest, lowest) value.
fn band_range(high_priority: bool, band: PriorityBand) -> (i32, i32) {
    match (high_priority, band) {
        (false, PriorityBand::Free) => (1000, 901),
        (false, PriorityBand::Batch) => (900, 801),
        (false, PriorityBand::Mid) => (800, 701),
        (false, PriorityBand::Prod) => (700, 601),
        (false, PriorityBand::System) => (600, 501),
        (true, PriorityBand::Free) => (-501, -550),
        (true, PriorityBand::Batch) => (-551, -600),
        (true, PriorityBand::Mid) => (-601, -700),
        (true, PriorityBand::Prod) => (-701, -900),
        (true, PriorityBand::System) => (-901, -999),
    }
}

/// Position of a priority on a symmetric log scale, in `[0, 1]`; monotone non-decreasing.
fn priority_position(priority: i32) -> f64 {
    let p = f64::from(priority);
    let l = p.abs().ln_1p() / std::f64::consts::LN_2; // 0 … 31
    (p.signum() * l / 31.0 + 1.0) / 2.0
}

/// QoS classes per bucket (the tie-break inside a bucket).
const CLASSES: i32 = 5;

/// `oom_score_adj` for a process of a pod with this classification.
#[allow(clippy::cast_possible_truncation)]
pub fn oom_score_adj(class: &Classification) -> i32 {
    let (hi, lo) = band_range(class.qos.is_high_priority(), class.band);
    let width = hi - lo + 1;
    let buckets = width / CLASSES;
    // Higher priority → larger bucket → lower adjustment.
    let bucket = ((priority_position(class.priority) * f64::from(buckets - 1)).floor() as i32)
        .clamp(0, buckets - 1);
    let rank = i32::from(class.qos.protection_rank());
    (hi - (bucket * CLASSES + rank)).clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide_api::{ClassifyRules, PodFacts, VictimKey, classify, victim_order};

    fn class(qos: &str, priority: i32) -> Classification {
        let mut f = PodFacts::default();
        f.labels.insert("tide.dev/qos".into(), qos.into());
        f.priority = Some(priority);
        classify(&f, &ClassifyRules::default())
    }

    #[test]
    fn hp_is_far_below_be_and_never_unkillable() {
        for p in [i32::MIN, -1, 0, 1, 1000, 5000, 9999, 1_000_000, i32::MAX] {
            for q in ["LSE", "LSR", "LS", "SYSTEM"] {
                let hp = oom_score_adj(&class(q, p));
                assert!((-999..=-501).contains(&hp), "{q} {p}: {hp}");
                assert!(hp < 0);
            }
            let be = oom_score_adj(&class("BE", p));
            assert!((501..=1000).contains(&be), "BE {p}: {be}");
        }
    }

    #[test]
    fn the_order_follows_the_victim_order() {
        // Every pair of the same kind (BE or HP): earlier in the victim order ⇒ adjustment at
        // least as high. (Across kinds BE always ranks above HP: the test above.)
        let mut all = Vec::new();
        for q in ["BE", "LS", "LSR", "LSE", "SYSTEM"] {
            for p in [
                i32::MIN,
                -50,
                0,
                1,
                100,
                3500,
                5500,
                7500,
                9500,
                100_000,
                2_000_000_000,
                i32::MAX,
            ] {
                all.push(class(q, p));
            }
        }
        let key = |c: &Classification| VictimKey {
            class: *c,
            usage_over_request: 0,
        };
        for a in &all {
            for b in &all {
                let same_kind = a.qos.is_high_priority() == b.qos.is_high_priority();
                if same_kind && victim_order(&key(a), &key(b)) == std::cmp::Ordering::Less {
                    assert!(
                        oom_score_adj(a) >= oom_score_adj(b),
                        "{a:?} ({}) before {b:?} ({})",
                        oom_score_adj(a),
                        oom_score_adj(b)
                    );
                }
            }
        }
        // Lower priority, higher value, within BE.
        assert!(oom_score_adj(&class("BE", 0)) > oom_score_adj(&class("BE", 1_000_000)));
    }
}
