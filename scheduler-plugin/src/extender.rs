//! The extender verbs as functions from a decoded request and a cluster snapshot to a
//! response. The HTTP layer only decodes, calls these, and encodes.

use std::borrow::Cow;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use tide_api::{Classification, TideConfig, classify, node_allocatable, pod_facts, pod_requests};

use crate::placement::{NodeView, PodView, Refusal, filter as filter_node, score};
use crate::snapshot::{Pending, PendingNode};
use crate::wire::{ExtenderArgs, ExtenderFilterResult, HostPriority, NodeList};

/// Nodes by name, as the snapshot holds them.
pub type NodeMap = HashMap<String, NodeView>;

/// What the extender knows of the cluster at one instant (from its watch caches).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSnapshot {
    /// Nodes by name (hashed: a request looks up thousands of names).
    pub nodes: NodeMap,
    /// The index generation it was made at (see [`crate::snapshot::ClusterIndex::pending`]).
    pub generation: u64,
}

/// The client's mistake: answered with a 4xx and this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// The pod's resources cannot be read.
    #[error("pod {pod}: {source}")]
    Pod {
        /// `namespace/name`.
        pod: String,
        /// What is wrong.
        source: tide_api::RequestError,
    },
    /// Neither `NodeNames` nor `Nodes` was given.
    #[error("request has neither NodeNames nor Nodes")]
    NoNodes,
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("<unnamed>")
    )
}

/// The pod as placement sees it, and its class.
pub fn pod_view(pod: &Pod, cfg: &TideConfig) -> Result<(PodView, Classification), BadRequest> {
    let class = classify(&pod_facts(pod), &cfg.resources.classify_rules());
    let req = pod_requests(pod, &cfg.resources).map_err(|source| BadRequest::Pod {
        pod: pod_name(pod),
        source,
    })?;
    let high_priority = class.qos.is_high_priority();
    let request = if high_priority {
        req.regular
    } else {
        req.batch
    };
    Ok((
        PodView {
            request,
            high_priority,
        },
        class,
    ))
}

/// A candidate: its name, the node object when the scheduler sent one, and our view of it.
struct Candidate<'a> {
    name: Cow<'a, str>,
    object: Option<&'a Node>,
    view: Option<NodeView>,
}

/// Adds requests reserved on the node that the snapshot does not show yet.
fn with_pending(mut view: NodeView, pending: Option<&PendingNode>) -> NodeView {
    if let Some(p) = pending {
        view.hp_requested = view.hp_requested.saturating_add(p.hp);
        view.be_requested = view.be_requested.saturating_add(p.be);
    }
    view
}

fn candidates<'a>(
    args: &'a ExtenderArgs<'_>,
    snap: &ClusterSnapshot,
    pending: &Pending,
) -> Result<Vec<Candidate<'a>>, BadRequest> {
    if let Some(names) = &args.node_names {
        return Ok(names
            .iter()
            .map(|n| Candidate {
                name: Cow::Borrowed(n.as_ref()),
                object: None,
                view: snap
                    .nodes
                    .get(n.as_ref())
                    .cloned()
                    .map(|v| with_pending(v, pending.get(n.as_ref()))),
            })
            .collect());
    }
    let Some(list) = &args.nodes else {
        return Err(BadRequest::NoNodes);
    };
    Ok(list
        .items
        .iter()
        .map(|node| {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            // The object the scheduler sent is the freshest allocatable; the rest is ours.
            let mut view = snap.nodes.get(name).cloned().unwrap_or(NodeView {
                allocatable: node_allocatable(node),
                estimate: None,
                be_requested: tide_api::ResourceAmounts::ZERO,
                hp_requested: tide_api::ResourceAmounts::ZERO,
            });
            view.allocatable = node_allocatable(node);
            let view = with_pending(view, pending.get(name));
            Candidate {
                name: Cow::Borrowed(name),
                object: Some(node),
                view: Some(view),
            }
        })
        .collect())
}

/// The `filter` response and, for metrics, the kind of every refusal in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Filtered<'a> {
    /// The response body.
    pub result: ExtenderFilterResult<'a>,
    /// [`Refusal::kind`] of each refused node (`unknown-node` for cache gaps).
    pub refusal_kinds: Vec<&'static str>,
}

/// Refusals that preemption cannot fix go to `FailedAndUnresolvableNodes`.
fn unresolvable(r: &Refusal) -> bool {
    matches!(r, Refusal::NoEstimate | Refusal::StaleEstimate { .. })
}

/// `filter` at time `now` (seconds): passing nodes in the form they came in, and a reason for
/// every refused node. HP pods are never refused for gaps in the extender's own knowledge
/// (unknown node, missing or stale estimate). `pending` adds placements not yet in `snap`.
pub fn filter<'a>(
    args: &'a ExtenderArgs<'_>,
    snap: &ClusterSnapshot,
    pending: &Pending,
    cfg: &TideConfig,
    now: u64,
) -> Result<Filtered<'a>, BadRequest> {
    let (pod, _) = pod_view(&args.pod, cfg)?;
    let mut out = ExtenderFilterResult::default();
    let mut kinds = Vec::new();
    let mut passed_names = Vec::new();
    let mut passed_nodes = Vec::new();
    for c in candidates(args, snap, pending)? {
        let verdict = match &c.view {
            None if pod.high_priority => Ok(()),
            None => Err(None),
            Some(view) => filter_node(&pod, view, cfg, now).map_err(Some),
        };
        match verdict {
            Ok(()) => {
                if let Some(obj) = c.object {
                    passed_nodes.push(obj.clone());
                }
                passed_names.push(c.name);
            }
            Err(None) => {
                kinds.push("unknown-node");
                out.failed_and_unresolvable_nodes
                    .insert(c.name, "node is not in the extender's cache yet".into());
            }
            Err(Some(r)) if unresolvable(&r) => {
                kinds.push(r.kind());
                out.failed_and_unresolvable_nodes
                    .insert(c.name, r.to_string());
            }
            Err(Some(r)) => {
                kinds.push(r.kind());
                out.failed_nodes.insert(c.name, r.to_string());
            }
        }
    }
    if args.node_names.is_some() {
        out.node_names = Some(passed_names);
    } else {
        out.nodes = Some(NodeList {
            metadata: Default::default(),
            items: passed_nodes,
        });
    }
    Ok(Filtered {
        result: out,
        refusal_kinds: kinds,
    })
}

/// `prioritize`: a water-level score in `[0, 10]` for every candidate (0 for unknown nodes).
/// `pending` adds placements not yet in `snap`. The server sends it [`shifted`].
pub fn prioritize<'a>(
    args: &'a ExtenderArgs<'_>,
    snap: &ClusterSnapshot,
    pending: &Pending,
    cfg: &TideConfig,
) -> Result<Vec<HostPriority<'a>>, BadRequest> {
    let (pod, _) = pod_view(&args.pod, cfg)?;
    Ok(candidates(args, snap, pending)?
        .into_iter()
        .map(|c| HostPriority {
            score: c.view.as_ref().map_or(0, |v| score(&pod, v)),
            host: c.name,
        })
        .collect())
}

/// The prioritize answer as sent: every score less the lowest, and only the hosts above it.
///
/// kube-scheduler adds `weight × score` to each host's total and picks the highest total;
/// hosts missing from the answer get nothing (INTERFACES.md, `HostPriorityList`). Taking the
/// same amount from every host therefore changes no choice, and the answer — which
/// kube-scheduler decodes with `encoding/json` for every pod, the largest part of what the
/// extender costs it (docs/kubernetes.md, "Profile of kube-scheduler itself") — loses every
/// host at the lowest score: on a balanced cluster, most of them.
///
/// ```
/// use std::borrow::Cow;
/// use tide_scheduler::{extender::shifted, wire::HostPriority};
/// let h = |host: &'static str, score| HostPriority { host: Cow::Borrowed(host), score };
/// let sent = shifted(vec![h("a", 7), h("b", 4), h("c", 4), h("d", 9)]);
/// assert_eq!(sent, vec![h("a", 3), h("d", 5)]);
/// assert!(shifted(vec![h("a", 6), h("b", 6)]).is_empty()); // all equal: nothing to add
/// ```
pub fn shifted(scores: Vec<HostPriority<'_>>) -> Vec<HostPriority<'_>> {
    let low = scores.iter().map(|h| h.score).min().unwrap_or(0);
    scores
        .into_iter()
        .filter(|h| h.score > low)
        .map(|h| HostPriority {
            score: h.score - low,
            host: h.host,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::EstimateView;
    use tide_api::ResourceAmounts;

    const NOW: u64 = 1_000;

    fn snapshot() -> ClusterSnapshot {
        let view = |reclaim_cpu: u64, observed_at: u64| NodeView {
            allocatable: ResourceAmounts::new(32_000, 128 << 30),
            estimate: Some(EstimateView {
                observed_at,
                reclaimable: ResourceAmounts::new(reclaim_cpu, 64 << 30),
                hp_reserved: ResourceAmounts::new(32_000 - reclaim_cpu - 2_000, 40 << 30),
            }),
            be_requested: ResourceAmounts::ZERO,
            hp_requested: ResourceAmounts::new(24_000, 96 << 30),
        };
        let mut nodes = NodeMap::default();
        nodes.insert("node-a".into(), view(16_000, 990));
        nodes.insert("node-b".into(), view(1_000, 990));
        nodes.insert("node-c".into(), view(16_000, 100)); // stale
        ClusterSnapshot {
            nodes,
            generation: 0,
        }
    }

    /// Parses a request as the server does, from text the arguments borrow. Test-only: the
    /// text is leaked so the borrowed arguments live as long as the test.
    fn parse(v: serde_json::Value) -> ExtenderArgs<'static> {
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        serde_json::from_str(text).unwrap()
    }

    fn args(pod: serde_json::Value, names: &[&str]) -> ExtenderArgs<'static> {
        parse(serde_json::json!({"Pod": pod, "Nodes": null, "NodeNames": names}))
    }

    fn be_pod(cpu: &str) -> serde_json::Value {
        serde_json::json!({"metadata": {"name": "job-1", "namespace": "batch"}, "spec": {"containers": [{"name": "w", "resources": {"requests": {"tide.dev/batch-cpu": cpu, "tide.dev/batch-memory": "2Gi"}, "limits": {"tide.dev/batch-cpu": cpu, "tide.dev/batch-memory": "2Gi"}}}]}})
    }

    #[test]
    fn be_pod_filtered_with_a_reason_for_every_refusal() {
        let cfg = TideConfig::default();
        let a = args(be_pod("2000"), &["node-a", "node-b", "node-c", "node-x"]);
        let r = filter(&a, &snapshot(), &Pending::new(), &cfg, NOW).unwrap();
        assert_eq!(
            r.refusal_kinds,
            ["over-reclaimable", "stale-estimate", "unknown-node"]
        );
        let r = r.result;
        assert_eq!(r.node_names.unwrap(), ["node-a"]);
        assert!(r.nodes.is_none());
        assert!(
            r.failed_nodes["node-b"]
                .starts_with("batch-cpu: bound 0m + request 2000m exceed reclaimable 1000m"),
            "{:?}",
            r.failed_nodes
        );
        assert!(r.failed_and_unresolvable_nodes["node-c"].contains("stale (900s old)"));
        assert!(r.failed_and_unresolvable_nodes["node-x"].contains("not in the extender's cache"));
        assert_eq!(r.error, "");
    }

    #[test]
    fn hp_pod_is_never_blocked_by_stale_estimates_or_cache_gaps() {
        let cfg = TideConfig::default();
        let hp = serde_json::json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}});
        let a = args(hp, &["node-a", "node-b", "node-c", "node-x"]);
        let r = filter(&a, &snapshot(), &Pending::new(), &cfg, NOW)
            .unwrap()
            .result;
        assert_eq!(
            r.node_names.unwrap(),
            ["node-a", "node-b", "node-c", "node-x"]
        );
        assert!(r.failed_nodes.is_empty() && r.failed_and_unresolvable_nodes.is_empty());
    }

    #[test]
    fn full_node_objects_come_back_as_objects() {
        let cfg = TideConfig::default();
        let body = serde_json::json!({
            "Pod": be_pod("2000"),
            "Nodes": {"metadata": {}, "items": [
                {"metadata": {"name": "node-a"}, "status": {"allocatable": {"cpu": "32", "memory": "128Gi"}}},
                {"metadata": {"name": "node-b"}, "status": {"allocatable": {"cpu": "32", "memory": "128Gi"}}}
            ]},
            "NodeNames": null
        });
        let a = parse(body);
        let r = filter(&a, &snapshot(), &Pending::new(), &cfg, NOW)
            .unwrap()
            .result;
        assert_eq!(r.node_names, None);
        let items = r.nodes.unwrap().items;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].metadata.name.as_deref(), Some("node-a"));
        assert!(r.failed_nodes.contains_key("node-b"));
    }

    #[test]
    fn the_shifted_answer_leaves_kube_schedulers_choice_unchanged() {
        // kube-scheduler's arithmetic (INTERFACES.md): total = its plugins' score + weight × 10
        // × the extender's score, 0 for a host missing from the answer; the highest total wins.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut omitted = 0;
        for case in 0..2_000 {
            let n = 1 + next(12) as usize;
            let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let plugins: Vec<i64> = (0..n).map(|_| next(1_200).cast_signed()).collect();
            let full: Vec<HostPriority> = names
                .iter()
                .map(|h| HostPriority {
                    host: h.as_str().into(),
                    score: 3 + next(5).cast_signed(),
                })
                .collect();
            let sent = shifted(full.clone());
            omitted += n - sent.len();
            let best = |answer: &[HostPriority]| {
                let total = |i: usize| {
                    let ext = answer
                        .iter()
                        .find(|h| h.host == names[i])
                        .map_or(0, |h| h.score);
                    plugins[i] + 5 * 10 * ext
                };
                let top = (0..n).map(total).max();
                (0..n)
                    .filter(|&i| Some(total(i)) == top)
                    .collect::<Vec<_>>()
            };
            assert_eq!(best(&full), best(&sent), "case {case}: {full:?} → {sent:?}");
        }
        assert!(omitted > 2_000, "{omitted} hosts left out");
    }

    #[test]
    fn prioritize_scores_every_candidate_in_range() {
        let cfg = TideConfig::default();
        let a = args(be_pod("2000"), &["node-a", "node-b", "node-x"]);
        let p = prioritize(&a, &snapshot(), &Pending::new(), &cfg).unwrap();
        assert_eq!(
            p.iter().map(|h| h.host.as_ref()).collect::<Vec<&str>>(),
            ["node-a", "node-b", "node-x"]
        );
        assert!(p.iter().all(|h| (0..=10).contains(&h.score)));
        assert!(
            p[0].score > p[1].score,
            "more reclaimable, lower level: {p:?}"
        );
        assert_eq!(p[2].score, 0);
    }

    #[test]
    fn client_mistakes_are_bad_requests() {
        let cfg = TideConfig::default();
        let bad = args(be_pod("two"), &["node-a"]);
        let e = filter(&bad, &snapshot(), &Pending::new(), &cfg, NOW).unwrap_err();
        assert!(e.to_string().starts_with("pod batch/job-1: container \"w\" resource \"tide.dev/batch-cpu\": invalid quantity \"two\""), "{e}");
        let none = parse(serde_json::json!({"Pod": be_pod("1")}));
        assert_eq!(
            filter(&none, &snapshot(), &Pending::new(), &cfg, NOW).unwrap_err(),
            BadRequest::NoNodes
        );
    }
}
