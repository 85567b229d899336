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
pub mod exit;
mod kube_pod;
mod qos;
mod quantity;
mod units;

pub use config::{
    BeAdmission, ConfigError, CpuLevels, EstimatorSettings, Intervals, MemoryLevels, PredictorKind,
    ResourceNames, SystemReserve, TideConfig, WebhookSettings, duration_text,
};
pub use crd::{
    EstimateConfidence, GROUP, NodeEstimate, NodeEstimateSpec, NodeEstimateStatus,
    ResourceEstimate, node_estimate_crd_yaml,
};
pub use kube_pod::{
    PodRequests, RequestError, kube_qos, node_allocatable, pod_facts, pod_requests,
    pod_running_since,
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

/// The most BE *requests* a node admits in total of one resource: the reclaimable amount,
/// capped so that the predicted level — HP reservation (`hp_reserved`: predicted peak, margin
/// and system reserve) plus BE requests — stays at or below `schedule_percent` of
/// `allocatable`.
///
/// One function for both sides: the extender's filter admits a BE pod exactly when the BE
/// requests bound to the node plus the pod's fit under it, and the agent advertises it as the
/// node's `tide.dev/batch-*` allocatable, so kube-scheduler's own fit check (which counts pods
/// it has assumed but not yet bound) enforces the same cap during a burst.
///
/// ```
/// // 32 cores, HP holds 20, 10 reclaimable, 85% level: 27.2 − 20 = 7.2 cores.
/// assert_eq!(tide_api::batch_admit_limit(32_000, 20_000, 10_000, 85.0), 7_200);
/// ```
#[allow(clippy::cast_precision_loss)]
pub fn batch_admit_limit(
    allocatable: u64,
    hp_reserved: u64,
    reclaimable: u64,
    schedule_percent: f64,
) -> u64 {
    let level = f64_to_u64_saturating((allocatable as f64 * schedule_percent / 100.0).floor());
    reclaimable.min(level.saturating_sub(hp_reserved))
}

/// Whether a BE pod's usage is in a node measurement taken at `observed_at` (Unix seconds):
/// all its containers were running (`running_since`, from [`pod_running_since`]) for at least
/// two agent sampling periods (`sample_secs`) by then. A pod for which this is false counts at
/// its request in the real-time water level ([`BeAdmission::RealTime`]): its usage may not
/// show yet. The agent (what it advertises) and the extender (what it admits) use this one
/// rule.
///
/// ```
/// assert!(tide_api::usage_measured(Some(100), 102, 1));
/// assert!(!tide_api::usage_measured(Some(100), 101, 1));
/// assert!(!tide_api::usage_measured(None, 1_000, 1));
/// ```
pub fn usage_measured(running_since: Option<u64>, observed_at: u64, sample_secs: u64) -> bool {
    running_since.is_some_and(|s| s.saturating_add(2 * sample_secs.max(1)) <= observed_at)
}

/// What the agent advertises as the node's `tide.dev/batch-*` allocatable, of one resource.
///
/// kube-scheduler's own fit check counts every BE pod on the node at its request against this
/// amount. In [`BeAdmission::Request`] mode it is the [`batch_admit_limit`]. In
/// [`BeAdmission::RealTime`] mode BE pods whose usage the agent measured
/// ([`usage_measured`]) count by that usage instead, so the headroom they leave
/// (`measured_requested − measured_usage`) is added: the fit check then admits a pod exactly
/// when `measured usage + requests of the other BE pods + the pod ≤ limit`, the extender's
/// real-time water level.
///
/// ```
/// use tide_api::{BeAdmission, batch_advertised};
/// // Limit 8 cores; BE pods measured asked 6 cores and use 2.
/// assert_eq!(batch_advertised(BeAdmission::Request, 8_000, 6_000, 2_000), 8_000);
/// assert_eq!(batch_advertised(BeAdmission::RealTime, 8_000, 6_000, 2_000), 12_000);
/// // BE using more than it asked leaves less.
/// assert_eq!(batch_advertised(BeAdmission::RealTime, 8_000, 1_000, 3_000), 6_000);
/// ```
pub fn batch_advertised(
    mode: BeAdmission,
    limit: u64,
    measured_requested: u64,
    measured_usage: u64,
) -> u64 {
    match mode {
        BeAdmission::Request => limit,
        BeAdmission::RealTime => limit
            .saturating_add(measured_requested)
            .saturating_sub(measured_usage),
    }
}

impl NodeEstimateStatus {
    /// [`batch_admit_limit`] of CPU (millicores) and memory (bytes) under `cfg`: what the agent
    /// advertises as the node's batch resources.
    pub fn batch_admit_limits(&self, cfg: &TideConfig) -> ResourceAmounts {
        let limit = |r: &ResourceEstimate, pct: f64| {
            let held = r
                .predicted_peak
                .saturating_add(r.margin)
                .saturating_add(r.system_reserve);
            batch_admit_limit(r.allocatable, held, r.reclaimable, pct)
        };
        ResourceAmounts::new(
            limit(&self.cpu, cfg.cpu.schedule_percent),
            limit(&self.memory, cfg.memory.schedule_percent),
        )
    }
}
