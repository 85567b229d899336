//! Deterministic fixtures shared by the criterion benchmarks in this folder.
//!
//! Run them with `make bench` (or `cargo bench -p tide-benches`). Every fixture is seeded, so
//! two runs measure the same work.

/// A tiny deterministic generator (SplitMix64) so fixtures need no RNG crate.
#[derive(Debug, Clone)]
pub struct Seq(u64);

impl Seq {
    /// A sequence from a seed.
    pub fn new(seed: u64) -> Self {
        Seq(seed)
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)]
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The value after `--name` on the command line, parsed, or `default` (for the load binaries).
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequence_is_seeded() {
        let (mut a, mut b) = (super::Seq::new(3), super::Seq::new(3));
        assert_eq!(a.next_f64().to_bits(), b.next_f64().to_bits());
        assert!((0.0..1.0).contains(&a.next_f64()));
    }
}
