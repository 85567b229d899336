//! `tide-agent`: the node QoS agent (DESIGN.md §7).
//!
//! Decisions are pure functions: [`plan`] from a [`NodeSnapshot`] to [`Action`]s (CPU
//! suppression, cold-memory reclaim, BE eviction and local kill; shared with the replay),
//! [`observe::observe`], [`pinning::pin`], [`oom::oom_score_adj`], the publish rules in
//! [`publish`], and [`agent::Agent::decide`] tying them together. I/O is in [`cgroup`] (the
//! kubelet's tree, v1 and v2), [`procfs`], [`executor`] (idempotent, safely ordered writes) and
//! [`runtime`] (pod watch, evictions, NodeEstimate and Node status, `/metrics`) and
//! [`sandbox`] (the links to the cold-memory daemons in sandbox VMs); the
//! `tide-agent` binary runs it as a DaemonSet.
//!
//! ```
//! use tide_api::{Bytes, ResourceAmounts, TideConfig};
//! use tide_agent::{Action, NodeSnapshot, plan};
//! let snapshot = NodeSnapshot {
//!     now: 0,
//!     allocatable: ResourceAmounts::new(16_000, 64 << 30),
//!     hp_usage: ResourceAmounts::new(10_000, 20 << 30),
//!     system_usage: ResourceAmounts::new(400, 2 << 30),
//!     be_pods: vec![],
//!     cold_memory: Bytes(0),
//!     last_eviction: None,
//!     evicting: false,
//!     api_reachable: true,
//! };
//! let p = plan(&snapshot, &TideConfig::default());
//! // BE may use up to 90% of 16 cores minus HP and system usage.
//! assert!(matches!(p.actions[0], Action::SetBeCpuLimit { limit, .. } if limit.0 == 4_000));
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )
)]

pub mod agent;
pub mod cgroup;
pub mod cpuset;
pub mod executor;
pub mod metrics;
pub mod observe;
pub mod oom;
pub mod pinning;
mod plan;
pub mod procfs;
pub mod publish;
pub mod runtime;
pub mod sandbox;
pub mod topology;

pub use plan::{Action, BePod, NodeSnapshot, Plan, Reason, plan};
