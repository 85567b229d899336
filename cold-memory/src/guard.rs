//! The guard that protects hot data: how much to reclaim next period, from what the last
//! period cost. Additive increase while refaults and memory pressure stay low; halve at once
//! when refaults rise above a share of what was reclaimed, or memory PSI passes a limit
//! (the TMO/Senpai idea: probe gently, back off fast).

/// Guard settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardSettings {
    /// Smallest budget per period, bytes (never zero: the guard keeps probing).
    pub min_bytes: u64,
    /// Largest budget per period, bytes.
    pub max_bytes: u64,
    /// Budget increase per calm period, bytes.
    pub step_bytes: u64,
    /// Refaulted bytes above this share of reclaimed bytes mean hot data was hit.
    pub max_refault_ratio: f64,
    /// Memory PSI `some avg10` (%) above this backs off.
    pub max_psi_some: f64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            min_bytes: 4 << 20,
            max_bytes: 1 << 30,
            step_bytes: 32 << 20,
            max_refault_ratio: 0.01,
            max_psi_some: 1.0,
        }
    }
}

/// The guard's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// Settings.
    pub settings: GuardSettings,
    /// Current budget per period, bytes.
    pub budget: u64,
}

/// Why the guard moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Calm: budget grows.
    Grow,
    /// Refaults rose: budget halves.
    BackOffRefaults,
    /// Memory pressure: budget halves.
    BackOffPressure,
}

impl Guard {
    /// A guard starting at the minimum budget.
    pub fn new(settings: GuardSettings) -> Self {
        Self::starting_at(settings, settings.min_bytes)
    }

    /// A guard starting at `initial` bytes (clamped to the settings' range): for cold-only
    /// backends (DAMON, MGLRU ages) a large first step is safe, and the guard still halves on
    /// the first sign of refaults.
    pub fn starting_at(settings: GuardSettings, initial: u64) -> Self {
        Self {
            budget: initial.clamp(settings.min_bytes, settings.max_bytes),
            settings,
        }
    }

    /// Updates the budget from the last period: bytes reclaimed, file refaults (bytes) and
    /// memory PSI.
    #[allow(clippy::cast_precision_loss)]
    pub fn update(&mut self, reclaimed: u64, refaulted: u64, psi_some: Option<f64>) -> Verdict {
        let s = self.settings;
        let refault_limit =
            (reclaimed as f64 * s.max_refault_ratio).max(s.min_bytes as f64 * s.max_refault_ratio);
        let verdict = if psi_some.is_some_and(|p| p > s.max_psi_some) {
            Verdict::BackOffPressure
        } else if refaulted as f64 > refault_limit {
            Verdict::BackOffRefaults
        } else {
            Verdict::Grow
        };
        self.budget = match verdict {
            Verdict::Grow => self.budget.saturating_add(s.step_bytes),
            _ => self.budget / 2,
        }
        .clamp(s.min_bytes, s.max_bytes);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_calm_and_halves_on_refaults_or_pressure() {
        let mut g = Guard::new(GuardSettings::default());
        for _ in 0..10 {
            assert_eq!(g.update(g.budget, 0, Some(0.0)), Verdict::Grow);
        }
        assert_eq!(g.budget, (4 << 20) + 10 * (32 << 20));
        let before = g.budget;
        // 5% of what was reclaimed came back: hot data was hit.
        assert_eq!(g.update(100 << 20, 5 << 20, None), Verdict::BackOffRefaults);
        assert_eq!(g.budget, before / 2);
        assert_eq!(g.update(0, 0, Some(5.0)), Verdict::BackOffPressure);
        assert_eq!(g.budget, before / 4);
        for _ in 0..20 {
            g.update(0, 1 << 30, None);
        }
        assert_eq!(g.budget, 4 << 20, "never below the minimum");
        for _ in 0..100 {
            g.update(g.budget, 0, None);
        }
        assert_eq!(g.budget, 1 << 30, "never above the maximum");
    }
}
