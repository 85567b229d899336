//! What the agent publishes and when: the NodeEstimate status and the batch extended
//! resources on the Node. Pure; the caller sends the patches.
//!
//! Writes are delta-suppressed and rate-limited (`intervals` in the shared configuration): a
//! new value goes out when it moved by at least `publishDeltaPercent` of allocatable and
//! `publishMin` has passed since the last write, or when `publishMax` has passed anyway (so the
//! estimate's `observedTime` stays fresh for the extender). The Node's extended resources are
//! re-advertised whenever the Node object no longer shows them (a kubelet restart resets
//! extended resources it does not know).

use serde_json::{Value, json};
use tide_api::{Intervals, NodeEstimateStatus, Quantity, ResourceNames};

/// The last published state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// When it was published (Unix seconds).
    pub at: Option<u64>,
    /// Reclaimable CPU (millicores) and memory (bytes) then.
    pub reclaimable: (u64, u64),
}

/// Should the estimate be published now?
pub fn should_publish(
    last: &Published,
    now: u64,
    reclaimable: (u64, u64),
    allocatable: (u64, u64),
    i: &Intervals,
) -> bool {
    let Some(at) = last.at else {
        return true;
    };
    let since = now.saturating_sub(at);
    if since >= i.publish_max.as_secs() {
        return true;
    }
    if since < i.publish_min.as_secs() {
        return false;
    }
    let moved = |new: u64, old: u64, alloc: u64| {
        u128::from(new.abs_diff(old)) * 100
            >= u128::from(alloc) * u128::from(i.publish_delta_percent)
    };
    moved(reclaimable.0, last.reclaimable.0, allocatable.0)
        || moved(reclaimable.1, last.reclaimable.1, allocatable.1)
}

/// The merge patch for the NodeEstimate's status subresource. Fields the new status lacks
/// are sent as `null` so an earlier `degradedReason` or cold-memory credit does not linger.
pub fn estimate_patch(status: &NodeEstimateStatus) -> Value {
    status.merge_patch()
}

/// A new NodeEstimate object for `node` (created once, then its status is patched).
pub fn estimate_object(node: &str) -> Value {
    json!({
        "apiVersion": "tide.dev/v1alpha1",
        "kind": "NodeEstimate",
        "metadata": {"name": node, "labels": {"app.kubernetes.io/managed-by": "tide-agent"}},
        "spec": {"nodeName": node},
    })
}

/// The merge patch for the Node's status: the batch resources in capacity and allocatable.
pub fn node_resources_patch(names: &ResourceNames, cpu_milli: u64, memory: u64) -> Value {
    let res = json!({
        names.batch_cpu.clone(): cpu_milli.to_string(),
        names.batch_memory.clone(): memory.to_string(),
    });
    json!({"status": {"capacity": res, "allocatable": res}})
}

/// Whether the Node object (as JSON) advertises these batch amounts in allocatable. Compares
/// quantities, not text: the API server answers a published `6000` as `6k`.
pub fn node_shows(node: &Value, names: &ResourceNames, cpu_milli: u64, memory: u64) -> bool {
    let alloc = &node["status"]["allocatable"];
    let shows = |name: &str, want: u64| {
        alloc[name]
            .as_str()
            .and_then(|t| t.parse::<Quantity>().ok())
            .and_then(|q| q.value_ceil().ok())
            .is_some_and(|v| u64::try_from(v).ok() == Some(want))
    };
    shows(&names.batch_cpu, cpu_milli) && shows(&names.batch_memory, memory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide_api::TideConfig;

    #[test]
    fn delta_suppressed_and_rate_limited() {
        let i = TideConfig::default().intervals; // min 10 s, max 60 s, 5%
        let alloc = (16_000, 64 << 30);
        let never = Published::default();
        assert!(should_publish(&never, 0, (1, 1), alloc, &i));
        let last = Published {
            at: Some(100),
            reclaimable: (8_000, 32 << 30),
        };
        // A big move, but within publishMin: wait.
        assert!(!should_publish(&last, 105, (2_000, 32 << 30), alloc, &i));
        // After publishMin: a 6% CPU move goes out, a 4% one does not.
        assert!(should_publish(&last, 111, (8_960, 32 << 30), alloc, &i));
        assert!(!should_publish(&last, 111, (8_640, 32 << 30), alloc, &i));
        // After publishMax: always (keeps observedTime fresh).
        assert!(should_publish(&last, 160, (8_000, 32 << 30), alloc, &i));
    }

    #[test]
    fn node_patch_and_reset_detection() {
        let names = TideConfig::default().resources;
        let p = node_resources_patch(&names, 4_000, 1 << 30);
        assert_eq!(p["status"]["allocatable"]["tide.dev/batch-cpu"], "4000");
        assert_eq!(
            p["status"]["capacity"]["tide.dev/batch-memory"],
            "1073741824"
        );
        let mut node = json!({"status": {"allocatable": {"cpu": "16"}}});
        assert!(!node_shows(&node, &names, 4_000, 1 << 30));
        node["status"]["allocatable"] = p["status"]["allocatable"].clone();
        assert!(node_shows(&node, &names, 4_000, 1 << 30));
        // The API server's canonical forms of what was published (6000 reads back as 6k).
        node["status"]["allocatable"] =
            json!({"tide.dev/batch-cpu": "6k", "tide.dev/batch-memory": "1Gi"});
        assert!(node_shows(&node, &names, 6_000, 1 << 30));
        assert!(!node_shows(&node, &names, 6_001, 1 << 30));
        node["status"]["allocatable"]["tide.dev/batch-cpu"] = json!("not a quantity");
        assert!(!node_shows(&node, &names, 6_000, 1 << 30));
    }
}
