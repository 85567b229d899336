//! Kubernetes objects converted to Tide's vocabulary: a Pod's effective requests, its
//! Kubernetes QoS class and its classification facts; a Node's allocatable. Pure functions,
//! shared by the extender and the agent.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;

use crate::config::ResourceNames;
use crate::qos::{KubeQosClass, PodFacts};
use crate::quantity::{Quantity, QuantityError};
use crate::units::{Bytes, MilliCores, ResourceAmounts};

/// A pod's resource requests that Tide cares about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// `cpu` and `memory` requests.
    pub regular: ResourceAmounts,
    /// Batch requests (`tide.dev/batch-cpu` in millicores, `tide.dev/batch-memory` in bytes).
    pub batch: ResourceAmounts,
}

/// A request that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container {container:?} resource {resource:?}: {source}")]
pub struct RequestError {
    /// Container name.
    pub container: String,
    /// Resource name.
    pub resource: String,
    /// The quantity error.
    #[source]
    pub source: QuantityError,
}

fn quantity(container: &str, resource: &str, q: &KubeQuantity) -> Result<Quantity, RequestError> {
    q.0.parse::<Quantity>().map_err(|source| RequestError {
        container: container.to_owned(),
        resource: resource.to_owned(),
        source,
    })
}

/// One container's requests (limits stand in for missing requests, as the API server defaults them).
fn container_requests(c: &Container, names: &ResourceNames) -> Result<PodRequests, RequestError> {
    let res = c.resources.as_ref();
    let get = |name: &str| -> Option<&KubeQuantity> {
        res.and_then(|r| r.requests.as_ref().and_then(|m| m.get(name)))
            .or_else(|| res.and_then(|r| r.limits.as_ref().and_then(|m| m.get(name))))
    };
    let milli = |name: &str| -> Result<MilliCores, RequestError> {
        match get(name) {
            None => Ok(MilliCores::ZERO),
            Some(q) => MilliCores::from_quantity(&quantity(&c.name, name, q)?).map_err(|source| {
                RequestError {
                    container: c.name.clone(),
                    resource: name.to_owned(),
                    source,
                }
            }),
        }
    };
    let bytes = |name: &str| -> Result<Bytes, RequestError> {
        match get(name) {
            None => Ok(Bytes::ZERO),
            Some(q) => {
                Bytes::from_quantity(&quantity(&c.name, name, q)?).map_err(|source| RequestError {
                    container: c.name.clone(),
                    resource: name.to_owned(),
                    source,
                })
            }
        }
    };
    // Batch CPU is an integer count of millicores, as an extended resource must be.
    let batch_cpu = match get(&names.batch_cpu) {
        None => MilliCores::ZERO,
        Some(q) => {
            let q = quantity(&c.name, &names.batch_cpu, q)?;
            let v = q.value_ceil().map_err(|source| RequestError {
                container: c.name.clone(),
                resource: names.batch_cpu.clone(),
                source,
            })?;
            MilliCores(u64::try_from(v.max(0)).unwrap_or(0))
        }
    };
    Ok(PodRequests {
        regular: ResourceAmounts {
            cpu: milli("cpu")?,
            memory: bytes("memory")?,
        },
        batch: ResourceAmounts {
            cpu: batch_cpu,
            memory: bytes(&names.batch_memory)?,
        },
    })
}

fn max_amounts(a: ResourceAmounts, b: ResourceAmounts) -> ResourceAmounts {
    ResourceAmounts {
        cpu: a.cpu.max(b.cpu),
        memory: a.memory.max(b.memory),
    }
}

/// The pod's effective requests: per resource, the larger of the sum over containers and the
/// largest init container, plus the pod overhead — the scheduler's own rule.
pub fn pod_requests(pod: &Pod, names: &ResourceNames) -> Result<PodRequests, RequestError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(PodRequests::default());
    };
    let mut sum = PodRequests::default();
    for c in &spec.containers {
        let r = container_requests(c, names)?;
        sum.regular = sum.regular.saturating_add(r.regular);
        sum.batch = sum.batch.saturating_add(r.batch);
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, names)?;
        sum.regular = max_amounts(sum.regular, r.regular);
        sum.batch = max_amounts(sum.batch, r.batch);
    }
    if let Some(overhead) = &spec.overhead {
        let c = Container {
            name: "<overhead>".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(overhead.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = container_requests(&c, names)?;
        sum.regular = sum.regular.saturating_add(r.regular);
    }
    Ok(sum)
}

/// The pod's Kubernetes QoS class: `status.qosClass` when set, else derived from requests and
/// limits of cpu and memory as the API server does.
pub fn kube_qos(pod: &Pod) -> KubeQosClass {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => return KubeQosClass::Guaranteed,
        Some("Burstable") => return KubeQosClass::Burstable,
        Some("BestEffort") => return KubeQosClass::BestEffort,
        _ => {}
    }
    let Some(spec) = pod.spec.as_ref() else {
        return KubeQosClass::BestEffort;
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let req = requests.and_then(|m| m.get(name)).map(|q| q.0.as_str());
            let lim = limits.and_then(|m| m.get(name)).map(|q| q.0.as_str());
            if req.is_some() || lim.is_some() {
                any = true;
            }
            let equal = match (req, lim) {
                (_, None) => false,
                (None, Some(_)) => true, // the request defaults to the limit
                (Some(r), Some(l)) => match (r.parse::<Quantity>(), l.parse::<Quantity>()) {
                    (Ok(r), Ok(l)) => r.checked_sub(&l).is_ok_and(|d| d.is_zero()),
                    _ => r == l,
                },
            };
            guaranteed &= equal;
        }
    }
    if !any {
        KubeQosClass::BestEffort
    } else if guaranteed {
        KubeQosClass::Guaranteed
    } else {
        KubeQosClass::Burstable
    }
}

/// What classification needs, read from a Pod.
pub fn pod_facts(pod: &Pod) -> PodFacts {
    let labels: BTreeMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut resource_names: Vec<String> = Vec::new();
    if let Some(spec) = pod.spec.as_ref() {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            if let Some(r) = c.resources.as_ref() {
                for m in [r.requests.as_ref(), r.limits.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    resource_names.extend(m.keys().cloned());
                }
            }
        }
    }
    resource_names.sort();
    resource_names.dedup();
    PodFacts {
        labels,
        priority: pod.spec.as_ref().and_then(|s| s.priority),
        kube_qos: Some(kube_qos(pod)),
        resource_names,
    }
}

/// Since when (Unix seconds) every container of the pod has been running: the latest
/// `state.running.startedAt` of its containers, or `None` while any container is not running
/// (waiting for its image, crashed, not yet reported). Before that time, the node agent's
/// usage measurements cannot include the pod's whole usage.
pub fn pod_running_since(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let mut latest = 0i64;
    for c in &spec.containers {
        let s = statuses.iter().find(|s| s.name == c.name)?;
        let started = s.state.as_ref()?.running.as_ref()?.started_at.as_ref()?;
        latest = latest.max(started.0.as_second());
    }
    u64::try_from(latest).ok()
}

/// A node's allocatable cpu and memory (capacity when allocatable is absent); unreadable
/// quantities count as zero, so such a node takes nothing.
pub fn node_allocatable(node: &Node) -> ResourceAmounts {
    let status = node.status.as_ref();
    let map = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    let get = |name: &str| {
        map.and_then(|m| m.get(name))
            .and_then(|q| q.0.parse::<Quantity>().ok())
    };
    ResourceAmounts {
        cpu: get("cpu")
            .and_then(|q| MilliCores::from_quantity(&q).ok())
            .unwrap_or(MilliCores::ZERO),
        memory: get("memory")
            .and_then(|q| Bytes::from_quantity(&q).ok())
            .unwrap_or(Bytes::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClassifyRules, QosClass, classify};

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn running_since_is_the_last_container_start_and_none_until_all_run() {
        let mut p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"containerStatuses": [
                {"name": "a", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2026-12-07T10:00:00Z"}}},
                {"name": "b", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]}
        }));
        assert_eq!(pod_running_since(&p), None, "b is still waiting");
        let b = &mut p
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[1];
        b.state = serde_json::from_value(
            serde_json::json!({"running": {"startedAt": "2026-12-07T10:00:05Z"}}),
        )
        .unwrap();
        assert_eq!(pod_running_since(&p), Some(1_796_637_605));
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()
            .pop();
        assert_eq!(pod_running_since(&p), None, "b has no status yet");
        assert_eq!(
            pod_running_since(&pod(serde_json::json!({"metadata": {"name": "q"}}))),
            None
        );
    }

    #[test]
    fn effective_requests_follow_the_scheduler_rule() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "tide.dev/batch-cpu": "1500", "tide.dev/batch-memory": "2Gi"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}
                ],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "100Mi"}}}],
                "overhead": {"cpu": "100m", "memory": "64Mi"}
            }
        }));
        let r = pod_requests(&p, &ResourceNames::default()).unwrap();
        // cpu: max(0.5 + 1, 2) + 0.1 = 2.1 cores; memory: max(1.5Gi, 100Mi) + 64Mi.
        assert_eq!(
            r.regular,
            ResourceAmounts::new(2_100, (3u64 << 29) + (64 << 20))
        );
        assert_eq!(r.batch, ResourceAmounts::new(1_500, 2 << 30));
    }

    #[test]
    fn bad_quantity_names_container_and_resource() {
        let p = pod(
            serde_json::json!({"metadata": {}, "spec": {"containers": [{"name": "web", "resources": {"requests": {"cpu": "lots"}}}]}}),
        );
        let e = pod_requests(&p, &ResourceNames::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("container \"web\" resource \"cpu\": invalid quantity \"lots\""),
            "{e}"
        );
    }

    #[test]
    fn kube_qos_derivation() {
        let q = |res: serde_json::Value| {
            kube_qos(&pod(
                serde_json::json!({"metadata": {}, "spec": {"containers": [{"name": "c", "resources": res}]}}),
            ))
        };
        assert_eq!(q(serde_json::json!({})), KubeQosClass::BestEffort);
        assert_eq!(
            q(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
            KubeQosClass::Guaranteed
        );
        assert_eq!(
            q(
                serde_json::json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}})
            ),
            KubeQosClass::Guaranteed
        );
        assert_eq!(
            q(serde_json::json!({"requests": {"cpu": "1"}})),
            KubeQosClass::Burstable
        );
        assert_eq!(
            q(serde_json::json!({"requests": {"tide.dev/batch-cpu": "1"}})),
            KubeQosClass::BestEffort
        );
        let with_status = pod(
            serde_json::json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}, "status": {"qosClass": "Guaranteed"}}),
        );
        assert_eq!(kube_qos(&with_status), KubeQosClass::Guaranteed);
    }

    #[test]
    fn facts_classify_a_batch_pod_as_be() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "job", "labels": {"app": "x"}},
            "spec": {"priority": 10, "containers": [{"name": "w", "resources": {"requests": {"tide.dev/batch-cpu": "2000"}, "limits": {"tide.dev/batch-cpu": "2000"}}}]}
        }));
        let facts = pod_facts(&p);
        assert_eq!(facts.resource_names, ["tide.dev/batch-cpu"]);
        assert_eq!(
            classify(&facts, &ClassifyRules::default()).qos,
            QosClass::Be
        );
    }

    #[test]
    fn node_allocatable_falls_back_to_capacity() {
        let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "7910m", "memory": "31Gi"}, "capacity": {"cpu": "8", "memory": "32Gi"}}})).unwrap();
        assert_eq!(node_allocatable(&n), ResourceAmounts::new(7_910, 31 << 30));
        let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "8", "memory": "bad"}}})).unwrap();
        assert_eq!(node_allocatable(&n), ResourceAmounts::new(8_000, 0));
    }
}
