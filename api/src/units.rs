//! Unit-typed amounts: CPU in millicores, memory in bytes, and the pair of them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::quantity::{Quantity, QuantityError, QuantityFormat};

/// The two resources Tide reclaims and sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU time, measured in millicores.
    Cpu,
    /// Memory working set, measured in bytes.
    Memory,
}

impl Resource {
    /// Both resources, CPU first.
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    /// Lower-case name used in metrics labels, reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! unit_type {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Zero.
            pub const ZERO: $name = $name(0);

            /// Sum, or `None` on overflow.
            pub fn checked_add(self, other: $name) -> Option<$name> {
                self.0.checked_add(other.0).map($name)
            }

            /// Difference, clamped at zero.
            pub fn saturating_sub(self, other: $name) -> $name {
                $name(self.0.saturating_sub(other.0))
            }

            /// Sum, clamped at the maximum.
            pub fn saturating_add(self, other: $name) -> $name {
                $name(self.0.saturating_add(other.0))
            }

            /// The amount as a float, for statistics only.
            #[allow(clippy::cast_precision_loss)]
            pub fn as_f64(self) -> f64 {
                self.0 as f64
            }

            /// From a float (statistics output); negatives and NaN become zero, huge values saturate.
            pub fn from_f64_saturating(v: f64) -> $name {
                $name(crate::f64_to_u64_saturating(v))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", self.0, $unit)
            }
        }

        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = $name>>(iter: I) -> $name {
                iter.fold($name::ZERO, $name::saturating_add)
            }
        }
    };
}

unit_type!(
    /// An amount of CPU in thousandths of a core.
    MilliCores,
    "m"
);
unit_type!(
    /// An amount of memory in bytes.
    Bytes,
    "B"
);

impl MilliCores {
    /// Converts a Kubernetes quantity (`"500m"`, `"2"`), rounding up as Kubernetes does.
    pub fn from_quantity(q: &Quantity) -> Result<MilliCores, QuantityError> {
        non_negative(q)?;
        let m = q.milli_value_ceil()?;
        Ok(MilliCores(u64::try_from(m).unwrap_or(0)))
    }

    /// The quantity Kubernetes would write for this amount (`"1500m"`, `"2"`).
    pub fn to_quantity(self) -> Quantity {
        Quantity::from_milli(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

impl Bytes {
    /// Converts a Kubernetes quantity (`"1Gi"`, `"500M"`), rounding up as Kubernetes does.
    pub fn from_quantity(q: &Quantity) -> Result<Bytes, QuantityError> {
        non_negative(q)?;
        let v = q.value_ceil()?;
        Ok(Bytes(u64::try_from(v).unwrap_or(0)))
    }

    /// The quantity Kubernetes would write for this amount (`"1Gi"`, `"1536Mi"`).
    pub fn to_quantity(self) -> Quantity {
        Quantity::from_units(
            i64::try_from(self.0).unwrap_or(i64::MAX),
            QuantityFormat::BinarySI,
        )
    }

    /// One gibibyte.
    pub const GIB: Bytes = Bytes(1 << 30);
    /// One mebibyte.
    pub const MIB: Bytes = Bytes(1 << 20);
}

fn non_negative(q: &Quantity) -> Result<(), QuantityError> {
    if q.is_negative() {
        Err(QuantityError::Negative {
            input: q.to_string(),
        })
    } else {
        Ok(())
    }
}

/// A CPU and memory amount together: a request, a usage sample, a capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceAmounts {
    /// CPU in millicores.
    pub cpu: MilliCores,
    /// Memory in bytes.
    pub memory: Bytes,
}

impl ResourceAmounts {
    /// Nothing of either.
    pub const ZERO: ResourceAmounts = ResourceAmounts {
        cpu: MilliCores::ZERO,
        memory: Bytes::ZERO,
    };

    /// A pair from raw numbers.
    pub fn new(cpu_milli: u64, memory_bytes: u64) -> Self {
        Self {
            cpu: MilliCores(cpu_milli),
            memory: Bytes(memory_bytes),
        }
    }

    /// The raw amount of one resource (millicores or bytes).
    pub fn get(&self, r: Resource) -> u64 {
        match r {
            Resource::Cpu => self.cpu.0,
            Resource::Memory => self.memory.0,
        }
    }

    /// Sets the raw amount of one resource.
    pub fn set(&mut self, r: Resource, v: u64) {
        match r {
            Resource::Cpu => self.cpu = MilliCores(v),
            Resource::Memory => self.memory = Bytes(v),
        }
    }

    /// Component-wise saturating sum.
    pub fn saturating_add(self, o: ResourceAmounts) -> ResourceAmounts {
        ResourceAmounts {
            cpu: self.cpu.saturating_add(o.cpu),
            memory: self.memory.saturating_add(o.memory),
        }
    }

    /// Component-wise difference clamped at zero.
    pub fn saturating_sub(self, o: ResourceAmounts) -> ResourceAmounts {
        ResourceAmounts {
            cpu: self.cpu.saturating_sub(o.cpu),
            memory: self.memory.saturating_sub(o.memory),
        }
    }

    /// True when both components fit within `other`.
    pub fn fits_in(&self, other: &ResourceAmounts) -> bool {
        self.cpu <= other.cpu && self.memory <= other.memory
    }
}

impl std::iter::Sum for ResourceAmounts {
    fn sum<I: Iterator<Item = ResourceAmounts>>(iter: I) -> Self {
        iter.fold(ResourceAmounts::ZERO, ResourceAmounts::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_from_quantities() {
        let q = |s: &str| s.parse::<Quantity>().unwrap();
        assert_eq!(
            MilliCores::from_quantity(&q("1.5")).unwrap(),
            MilliCores(1500)
        );
        assert_eq!(
            MilliCores::from_quantity(&q("0.0001")).unwrap(),
            MilliCores(1)
        );
        assert_eq!(Bytes::from_quantity(&q("1Gi")).unwrap(), Bytes::GIB);
        assert!(matches!(
            Bytes::from_quantity(&q("-1Gi")),
            Err(QuantityError::Negative { .. })
        ));
        assert_eq!(Bytes(3 << 29).to_quantity().to_string(), "1536Mi");
        assert_eq!(MilliCores(2500).to_quantity().to_string(), "2500m");
    }

    #[test]
    fn arithmetic_is_checked_or_saturating() {
        assert_eq!(MilliCores(u64::MAX).checked_add(MilliCores(1)), None);
        assert_eq!(Bytes(1).saturating_sub(Bytes(5)), Bytes::ZERO);
        let total: ResourceAmounts = [ResourceAmounts::new(1, 2), ResourceAmounts::new(3, 4)]
            .into_iter()
            .sum();
        assert_eq!(total, ResourceAmounts::new(4, 6));
        assert!(ResourceAmounts::new(1, 1).fits_in(&total));
        assert!(!ResourceAmounts::new(5, 1).fits_in(&total));
    }
}
