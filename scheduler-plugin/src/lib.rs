//! `tide-scheduler`: the kube-scheduler extender (DESIGN.md §6).
//!
//! - placement decisions as pure functions ([`filter`], [`score`], [`pre_eviction`],
//!   [`choose`]), shared with the replay simulator;
//! - the exact extender wire format ([`wire`]) and the `filter` / `prioritize` verbs as
//!   functions from a decoded request and a [`ClusterSnapshot`] to a response ([`extender`]);
//! - the watch-fed [`snapshot::ClusterIndex`] and the live watchers that keep it current
//!   ([`live`]);
//! - `bind` with pre-eviction through a narrow API interface ([`cluster::ClusterApi`],
//!   implemented on the `kube` client);
//! - the mutating admission webhook that rewrites opted-in pods as BE ([`webhook`]);
//! - the HTTP(S) server with health, readiness and Prometheus metrics ([`server`]); the
//!   `tide-scheduler` binary wires it all together.
//!
//! ```
//! use tide_api::{ResourceAmounts, TideConfig};
//! use tide_scheduler::{EstimateView, NodeView, PodView, filter};
//! let node = NodeView {
//!     allocatable: ResourceAmounts::new(32_000, 128 << 30),
//!     estimate: Some(EstimateView {
//!         observed_at: 0,
//!         reclaimable: ResourceAmounts::new(8_000, 32 << 30),
//!         hp_reserved: ResourceAmounts::new(16_000, 64 << 30),
//!     }),
//!     be_requested: ResourceAmounts::ZERO,
//!     hp_requested: ResourceAmounts::new(24_000, 96 << 30),
//! };
//! let be = PodView { request: ResourceAmounts::new(2_000, 4 << 30), high_priority: false };
//! assert!(filter(&be, &node, &TideConfig::default(), 10).is_ok());
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )
)]

mod binder;
pub mod cluster;
pub mod extender;
pub mod live;
pub mod metrics;
mod placement;
pub mod serve;
pub mod server;
pub mod snapshot;
pub mod webhook;
pub mod wire;
pub mod wiring;

pub use extender::{BadRequest, ClusterSnapshot, Filtered};
pub use placement::{
    BePodView, EstimateView, MAX_SCORE, NodeView, PodView, PreEviction, Refusal, be_counted,
    be_room, choose, choose_by_room, filter, order_victims, plan_pre_eviction, pre_eviction,
    predicted_level, score,
};
