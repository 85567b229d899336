//! Tide's shared vocabulary: the types that cross component boundaries, and no I/O.
//!
//! - [`Quantity`]: Kubernetes resource quantities, parsed and formatted exactly;
//!   [`MilliCores`], [`Bytes`] and [`ResourceAmounts`] are the unit-typed amounts Tide computes with.
//! - [`QosClass`], [`PriorityBand`], [`classify`]: the QoS model of DESIGN.md §4, and
//!   [`victim_order`], the one order used for eviction, OOM kills and suppression.
//! - [`TideConfig`]: the one configuration shared by extender, agent and replay.
//! - [`NodeEstimate`]: the per-node custom resource the agent publishes.
//! - [`pod_requests`], [`pod_facts`], [`node_allocatable`]: Kubernetes objects converted to
//!   Tide's vocabulary at the edge (pure).
//!
//! ```
//! use tide_api::{Bytes, MilliCores, Quantity, TideConfig};
//! let cpu = MilliCores::from_quantity(&"1.5".parse::<Quantity>()?)?;
//! assert_eq!(cpu, MilliCores(1500));
//! let mem = Bytes::from_quantity(&"2Gi".parse::<Quantity>()?)?;
//! assert_eq!(mem.to_quantity().to_string(), "2Gi");
//! let cfg = TideConfig::default();
//! assert!(cfg.memory.schedule_percent <= cfg.memory.evict_percent);
//! # Ok::<(), tide_api::QuantityError>(())
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap,
        clippy::cast_precision_loss
    )
)]

mod config;
mod crd;
mod kube_pod;
mod qos;
mod quantity;
mod units;

pub use config::{
    BeAdmission, ConfigError, CpuLevels, EstimatorSettings, Intervals, MemoryLevels, PredictorKind,
    ResourceNames, SystemReserve, TideConfig, duration_text,
};
pub use crd::{
    EstimateConfidence, GROUP, NodeEstimate, NodeEstimateSpec, NodeEstimateStatus,
    ResourceEstimate, node_estimate_crd_yaml,
};
pub use kube_pod::{
    PodRequests, RequestError, kube_qos, node_allocatable, pod_facts, pod_requests,
};
pub use qos::{
    ClassSource, Classification, ClassifyRules, KOORDINATOR_BATCH_RESOURCES, KOORDINATOR_QOS_LABEL,
    KubeQosClass, PodFacts, PriorityBand, QosClass, SYSTEM_CRITICAL_PRIORITY, UnknownQosClass,
    VictimKey, classify, koordinator_band, victim_order,
};
pub use quantity::{Quantity, QuantityError, QuantityFormat};
pub use units::{Bytes, MilliCores, Resource, ResourceAmounts};

/// Converts a float to `u64`: NaN and negatives give 0, values past the range saturate.
///
/// Rust's `as` already saturates; this names the intent once so numeric code needs no casts.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn f64_to_u64_saturating(v: f64) -> u64 {
    if v.is_nan() || v <= 0.0 { 0 } else { v as u64 }
}
