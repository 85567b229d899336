//! Building the extender's [`ClusterSnapshot`] from the objects its watch caches hold. Pure:
//! the same objects give the same snapshot.

use k8s_openapi::api::core::v1::{Node, Pod};
use tide_api::{
    NodeEstimate, ResourceAmounts, TideConfig, classify, node_allocatable, pod_facts, pod_requests,
};

use crate::extender::{ClusterSnapshot, NodeMap};
use crate::placement::{EstimateView, NodeView};

/// What building the snapshot skipped, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotIssues {
    /// Pods whose requests could not be read (`namespace/name: reason`).
    pub bad_pods: Vec<String>,
    /// NodeEstimates without a usable status or time (`name: reason`).
    pub bad_estimates: Vec<String>,
}

/// The estimate the extender uses from a NodeEstimate: observed time, reclaimable amounts, and
/// what HP holds (predicted peak + margin + system reserve).
pub fn estimate_view(ne: &NodeEstimate) -> Result<EstimateView, String> {
    let status = ne.status.as_ref().ok_or("no status yet")?;
    let observed_at = status
        .observed_time
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("observedTime {:?}: {e}", status.observed_time))?
        .as_second();
    let observed_at = u64::try_from(observed_at)
        .map_err(|_| format!("observedTime {:?} is before 1970", status.observed_time))?;
    let held = |r: &tide_api::ResourceEstimate| {
        r.predicted_peak
            .saturating_add(r.margin)
            .saturating_add(r.system_reserve)
    };
    Ok(EstimateView {
        observed_at,
        reclaimable: ResourceAmounts::new(status.cpu.reclaimable, status.memory.reclaimable),
        hp_reserved: ResourceAmounts::new(held(&status.cpu), held(&status.memory)),
    })
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The snapshot: every node's allocatable, its estimate (matched by node name), and the
/// requests of the HP and BE pods bound to it (finished pods excluded).
pub fn build_snapshot(
    nodes: &[Node],
    pods: &[Pod],
    estimates: &[NodeEstimate],
    cfg: &TideConfig,
) -> (ClusterSnapshot, SnapshotIssues) {
    let mut issues = SnapshotIssues::default();
    let mut map = NodeMap::default();
    for node in nodes {
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        map.insert(
            name,
            NodeView {
                allocatable: node_allocatable(node),
                estimate: None,
                be_requested: ResourceAmounts::ZERO,
                hp_requested: ResourceAmounts::ZERO,
            },
        );
    }
    for ne in estimates {
        let node = ne.spec.node_name.as_str();
        let Some(view) = map.get_mut(node) else {
            continue;
        };
        match estimate_view(ne) {
            Ok(e) => view.estimate = Some(e),
            Err(reason) => issues.bad_estimates.push(format!("{node}: {reason}")),
        }
    }
    let rules = cfg.resources.classify_rules();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if finished(pod) {
            continue;
        }
        let Some(view) = map.get_mut(node) else {
            continue;
        };
        let requests = match pod_requests(pod, &cfg.resources) {
            Ok(r) => r,
            Err(e) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                let name = pod.metadata.name.as_deref().unwrap_or("?");
                issues.bad_pods.push(format!("{ns}/{name}: {e}"));
                continue;
            }
        };
        if classify(&pod_facts(pod), &rules).qos.is_high_priority() {
            view.hp_requested = view.hp_requested.saturating_add(requests.regular);
        } else {
            view.be_requested = view.be_requested.saturating_add(requests.batch);
        }
    }
    (ClusterSnapshot { nodes: map }, issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, mem: &str) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": mem}}})).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, requests: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": requests}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn estimate(node: &str, time: &str) -> NodeEstimate {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tide.dev/v1alpha1", "kind": "NodeEstimate",
            "metadata": {"name": node},
            "spec": {"nodeName": node},
            "status": {
                "observedTime": time, "horizonSeconds": 3600,
                "cpu": {"allocatable": 8000, "predictedPeak": 3000, "margin": 200, "systemReserve": 500, "reclaimable": 4300, "hpUsage": 2500, "beUsage": 0},
                "memory": {"allocatable": 34359738368u64, "predictedPeak": 8589934592u64, "margin": 1073741824, "systemReserve": 1073741824, "reclaimable": 21474836480u64, "hpUsage": 8000000000u64, "beUsage": 0},
                "confidence": {"historySeconds": 86400, "recentViolationRate": 0.01}
            }
        }))
        .unwrap()
    }

    #[test]
    fn nodes_estimates_and_bound_pods_make_the_snapshot() {
        let nodes = [node("a", "8", "32Gi"), node("b", "4", "16Gi")];
        let pods = [
            pod(
                "web",
                "a",
                "Running",
                serde_json::json!({"cpu": "2", "memory": "4Gi"}),
            ),
            pod(
                "job",
                "a",
                "Running",
                serde_json::json!({"tide.dev/batch-cpu": "1500", "tide.dev/batch-memory": "2Gi"}),
            ),
            pod("done", "a", "Succeeded", serde_json::json!({"cpu": "4"})),
            pod("broken", "a", "Running", serde_json::json!({"cpu": "x"})),
            pod("elsewhere", "z", "Running", serde_json::json!({"cpu": "1"})),
        ];
        let estimates = [
            estimate("a", "2026-11-23T00:00:00Z"),
            estimate("b", "not a time"),
            estimate("gone", "2026-11-23T00:00:00Z"),
        ];
        let (snap, issues) = build_snapshot(&nodes, &pods, &estimates, &TideConfig::default());
        let a = &snap.nodes["a"];
        assert_eq!(a.allocatable, ResourceAmounts::new(8_000, 32 << 30));
        assert_eq!(a.hp_requested, ResourceAmounts::new(2_000, 4 << 30));
        assert_eq!(a.be_requested, ResourceAmounts::new(1_500, 2 << 30));
        let e = a.estimate.unwrap();
        assert_eq!(e.observed_at, 1_795_392_000);
        assert_eq!(e.reclaimable, ResourceAmounts::new(4_300, 20 << 30));
        assert_eq!(e.hp_reserved, ResourceAmounts::new(3_700, 10 << 30));
        assert!(snap.nodes["b"].estimate.is_none());
        assert_eq!(issues.bad_estimates.len(), 1);
        assert!(
            issues.bad_estimates[0].starts_with("b: observedTime \"not a time\""),
            "{:?}",
            issues.bad_estimates
        );
        assert_eq!(issues.bad_pods.len(), 1);
        assert!(
            issues.bad_pods[0].starts_with("ns/broken: container \"c\" resource \"cpu\""),
            "{:?}",
            issues.bad_pods
        );
        assert_eq!(snap.nodes.len(), 2);
    }
}
