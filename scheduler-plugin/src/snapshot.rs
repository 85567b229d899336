//! The extender's view of the cluster, kept up to date from watch events: [`ClusterIndex`]
//! folds Node, Pod and NodeEstimate events into per-node aggregates (allocatable, estimate,
//! HP and BE requests) and compact pod records, and produces the [`ClusterSnapshot`] the verbs
//! read. Pure: the same events give the same index. It keeps only what placement and
//! pre-eviction need (a few hundred bytes per pod), not whole objects.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use tide_api::{
    BeAdmission, Classification, ClassifyRules, NodeEstimate, ResourceAmounts, TideConfig,
    classify, node_allocatable, pod_facts, pod_requests, pod_running_since, usage_measured,
};

use crate::extender::{ClusterSnapshot, NodeMap};
use crate::placement::{BePodView, EstimateView, NodeView, PodView};

/// What the index keeps of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node it is bound (or assumed bound) to.
    pub node: Option<String>,
    /// Classification.
    pub class: Classification,
    /// The request placement counts: regular resources for HP, batch resources for BE.
    pub request: ResourceAmounts,
    /// Being deleted (deletionTimestamp set) or evicted by this extender.
    pub leaving: bool,
    /// Since when all its containers run (Unix seconds; [`tide_api::pod_running_since`]): a
    /// BE pod's usage is in the node's measured BE usage only some time after this.
    pub running_since: Option<u64>,
}

impl PodRecord {
    /// Is the pod high-priority?
    pub fn high_priority(&self) -> bool {
        self.class.qos.is_high_priority()
    }

    /// The pod as placement sees it.
    pub fn view(&self) -> PodView {
        PodView {
            request: self.request,
            high_priority: self.high_priority(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct NodePods {
    hp_requested: ResourceAmounts,
    be_requested: ResourceAmounts,
    uids: HashSet<String>,
}

/// A placement kube-scheduler is about to make (the extender's top-scored node for a pod it
/// scored) that no snapshot shows yet. kube-scheduler filters and scores the next pods while
/// earlier ones are still being bound; without these, a burst would see the same levels and
/// pile onto one node.
#[derive(Debug, Clone, PartialEq)]
struct Reservation {
    node: String,
    pod: PodView,
    /// Dropped at this time (seconds) if kube-scheduler never binds the pod.
    expires_at: u64,
    /// The generation at which the pod's binding entered the index; the reservation ends once
    /// a published snapshot includes that generation.
    settled_gen: Option<u64>,
}

/// Requests reserved on one node that the current snapshot does not show yet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PendingNode {
    /// HP requests.
    pub hp: ResourceAmounts,
    /// BE requests.
    pub be: ResourceAmounts,
}

/// Pending requests by node name (see [`ClusterIndex::pending`]).
pub type Pending = HashMap<String, PendingNode>;

/// How long a reservation waits for its bind, in seconds.
pub const RESERVATION_TTL_SECS: u64 = 15;

/// Which watched resource an event or resync belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watched {
    /// Nodes.
    Nodes,
    /// Pods.
    Pods,
    /// NodeEstimates.
    Estimates,
}

/// The watch-fed index. Apply events with the `apply_*`/`delete_*` methods; bracket a relist
/// with [`ClusterIndex::begin_resync`] / [`ClusterIndex::end_resync`] so objects deleted while
/// the watch was down disappear.
#[derive(Debug, Clone, Default)]
pub struct ClusterIndex {
    rules: ClassifyRules,
    resources: tide_api::ResourceNames,
    be_admission: BeAdmission,
    sample_secs: u64,
    allocatable: HashMap<String, ResourceAmounts>,
    estimates: HashMap<String, EstimateView>,
    be_usage: HashMap<String, ResourceAmounts>,
    per_node: HashMap<String, NodePods>,
    pods: HashMap<String, PodRecord>,
    resync: HashMap<Watched, HashSet<String>>,
    /// Bumped by every change to a node's bound requests; a snapshot records the value.
    generation: u64,
    reservations: HashMap<String, Reservation>,
    /// HP pods the watch showed bound by someone else (kube-scheduler's default binder), as
    /// (UID, node): the node may need relief now that the pod is there.
    pub bound_elsewhere: Vec<(String, String)>,
    /// Pods whose requests could not be read (`namespace/name: reason`), latest per pod.
    pub bad_pods: HashMap<String, String>,
    /// NodeEstimates without a usable status (`node` → reason).
    pub bad_estimates: HashMap<String, String>,
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

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("?")
    )
}

impl ClusterIndex {
    /// An empty index classifying pods with `cfg`.
    pub fn new(cfg: &TideConfig) -> Self {
        Self {
            rules: cfg.resources.classify_rules(),
            resources: cfg.resources.clone(),
            be_admission: cfg.be_admission,
            sample_secs: cfg.intervals.sample.as_secs(),
            ..Self::default()
        }
    }

    /// Starts a relist of `what`: objects not applied before [`ClusterIndex::end_resync`] are
    /// dropped.
    pub fn begin_resync(&mut self, what: Watched) {
        self.resync.insert(what, HashSet::new());
    }

    /// Ends a relist of `what`, dropping what it did not list.
    pub fn end_resync(&mut self, what: Watched) {
        let Some(seen) = self.resync.remove(&what) else {
            return;
        };
        match what {
            Watched::Nodes => self.allocatable.retain(|k, _| seen.contains(k)),
            Watched::Estimates => {
                self.estimates.retain(|k, _| seen.contains(k));
                self.be_usage.retain(|k, _| seen.contains(k));
                self.bad_estimates.retain(|k, _| seen.contains(k));
            }
            Watched::Pods => {
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.remove_pod(&uid);
                }
            }
        }
    }

    fn seen(&mut self, what: Watched, key: &str) {
        if let Some(s) = self.resync.get_mut(&what) {
            s.insert(key.to_owned());
        }
    }

    /// A node was added or changed.
    pub fn apply_node(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            return;
        };
        self.seen(Watched::Nodes, name);
        self.allocatable
            .insert(name.to_owned(), node_allocatable(node));
    }

    /// A node was deleted.
    pub fn delete_node(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.allocatable.remove(name);
        }
    }

    /// A NodeEstimate was added or changed (keyed by `spec.nodeName`).
    pub fn apply_estimate(&mut self, ne: &NodeEstimate) {
        let node = ne.spec.node_name.clone();
        self.seen(Watched::Estimates, &node);
        match estimate_view(ne) {
            Ok(e) => {
                if let Some(st) = &ne.status {
                    let usage = ResourceAmounts::new(st.cpu.be_usage, st.memory.be_usage);
                    self.be_usage.insert(node.clone(), usage);
                }
                self.bad_estimates.remove(&node);
                self.estimates.insert(node, e);
            }
            Err(reason) => {
                self.estimates.remove(&node);
                self.be_usage.remove(&node);
                self.bad_estimates.insert(node, reason);
            }
        }
    }

    /// A NodeEstimate was deleted.
    pub fn delete_estimate(&mut self, ne: &NodeEstimate) {
        self.estimates.remove(&ne.spec.node_name);
        self.be_usage.remove(&ne.spec.node_name);
        self.bad_estimates.remove(&ne.spec.node_name);
    }

    fn record(&self, pod: &Pod) -> Result<PodRecord, String> {
        let class = classify(&pod_facts(pod), &self.rules);
        let req = pod_requests(pod, &self.resources).map_err(|e| e.to_string())?;
        Ok(PodRecord {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            class,
            request: if class.qos.is_high_priority() {
                req.regular
            } else {
                req.batch
            },
            leaving: pod.metadata.deletion_timestamp.is_some(),
            running_since: pod_running_since(pod),
        })
    }

    /// A pod was added or changed. Finished pods leave the index; a pod whose requests cannot
    /// be read is dropped and reported in [`ClusterIndex::bad_pods`].
    pub fn apply_pod(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.seen(Watched::Pods, &uid);
        if finished(pod) {
            self.remove_pod(&uid);
            return;
        }
        match self.record(pod) {
            Ok(mut rec) => {
                self.bad_pods.remove(&pod_key(pod));
                if let Some(old) = self.remove_pod(&uid) {
                    if old.node.is_none()
                        && let Some(node) = &rec.node
                        && rec.high_priority()
                        && !rec.leaving
                    {
                        self.bound_elsewhere.push((uid.clone(), node.clone()));
                    }
                    // An eviction this extender started stays known until the watch shows it;
                    // a binding it made stays until the watch shows the node.
                    rec.leaving |= old.leaving;
                    if rec.node.is_none() {
                        rec.node = old.node;
                    }
                }
                self.insert_pod(uid, rec);
            }
            Err(reason) => {
                self.remove_pod(&uid);
                self.bad_pods.insert(pod_key(pod), reason);
            }
        }
    }

    /// A pod was deleted.
    pub fn delete_pod(&mut self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.remove_pod(uid);
            self.reservations.remove(uid);
        }
        self.bad_pods.remove(&pod_key(pod));
    }

    fn insert_pod(&mut self, uid: String, rec: PodRecord) {
        if let Some(node) = &rec.node {
            self.generation += 1;
            if let Some(r) = self.reservations.get_mut(&uid)
                && r.settled_gen.is_none()
            {
                r.settled_gen = Some(self.generation);
            }
            let np = self.per_node.entry(node.clone()).or_default();
            if rec.high_priority() {
                np.hp_requested = np.hp_requested.saturating_add(rec.request);
            } else {
                np.be_requested = np.be_requested.saturating_add(rec.request);
            }
            np.uids.insert(uid.clone());
        }
        self.pods.insert(uid, rec);
    }

    fn remove_pod(&mut self, uid: &str) -> Option<PodRecord> {
        let rec = self.pods.remove(uid)?;
        if let Some(node) = &rec.node
            && let Some(np) = self.per_node.get_mut(node)
        {
            self.generation += 1;
            if rec.high_priority() {
                np.hp_requested = np.hp_requested.saturating_sub(rec.request);
            } else {
                np.be_requested = np.be_requested.saturating_sub(rec.request);
            }
            np.uids.remove(uid);
            if np.uids.is_empty() {
                self.per_node.remove(node);
            }
        }
        Some(rec)
    }

    /// The pod with this UID, if known.
    pub fn pod(&self, uid: &str) -> Option<&PodRecord> {
        self.pods.get(uid)
    }

    /// Number of pods indexed.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Counts a pod this extender just bound on `node` before the watch shows it.
    pub fn assume_bound(&mut self, uid: &str, node: &str) {
        if let Some(mut rec) = self.remove_pod(uid) {
            rec.node = Some(node.to_owned());
            self.insert_pod(uid.to_owned(), rec);
        }
    }

    /// Marks a pod this extender evicted, so it is neither counted as evictable again nor
    /// as usage that stays.
    pub fn mark_leaving(&mut self, uid: &str) {
        if let Some(rec) = self.pods.get_mut(uid) {
            rec.leaving = true;
        }
    }

    /// One node as placement sees it, if the node is known. BE already on the node counts by
    /// [`crate::be_counted`] in the configured mode: in the real-time mode, the BE usage the
    /// node's last estimate measured plus the requests of BE pods whose usage it could not
    /// include yet ([`tide_api::usage_measured`] at the estimate's observation time).
    pub fn node_view(&self, name: &str) -> Option<NodeView> {
        let allocatable = *self.allocatable.get(name)?;
        let np = self.per_node.get(name);
        let estimate = self.estimates.get(name).copied();
        let requested = np.map_or(ResourceAmounts::ZERO, |p| p.be_requested);
        let be_requested = match (self.be_admission, np, estimate) {
            (BeAdmission::RealTime, Some(np), Some(e)) => {
                let not_measured: ResourceAmounts = np
                    .uids
                    .iter()
                    .filter_map(|uid| self.pods.get(uid))
                    .filter(|r| {
                        !r.high_priority()
                            && !usage_measured(r.running_since, e.observed_at, self.sample_secs)
                    })
                    .map(|r| r.request)
                    .sum();
                crate::be_counted(
                    self.be_admission,
                    requested,
                    self.be_usage.get(name).copied(),
                    not_measured,
                )
            }
            _ => requested,
        };
        Some(NodeView {
            allocatable,
            estimate,
            be_requested,
            hp_requested: np.map_or(ResourceAmounts::ZERO, |p| p.hp_requested),
        })
    }

    /// The BE pods on `node` that pre-eviction may choose from (not already leaving), with
    /// their usage. Per-pod usage is not in the API: the node's measured BE usage (from its
    /// NodeEstimate) is shared out in proportion to request; without an estimate the request
    /// stands in for usage.
    pub fn be_pods_on(&self, node: &str) -> Vec<BePodView> {
        let be_usage = self.be_usage.get(node).copied();
        let Some(np) = self.per_node.get(node) else {
            return Vec::new();
        };
        let mut out: Vec<BePodView> = np
            .uids
            .iter()
            .filter_map(|uid| {
                let rec = self.pods.get(uid)?;
                (!rec.high_priority() && !rec.leaving).then(|| BePodView {
                    uid: uid.clone(),
                    class: rec.class,
                    request: rec.request,
                    usage: rec.request,
                })
            })
            .collect();
        if let Some(usage) = be_usage {
            let total = np.be_requested;
            for p in &mut out {
                p.usage = ResourceAmounts::new(
                    share(usage.cpu.0, p.request.cpu.0, total.cpu.0),
                    share(usage.memory.0, p.request.memory.0, total.memory.0),
                );
            }
        }
        out
    }

    /// The snapshot the verbs read: every known node with its estimate and requests.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let mut nodes = NodeMap::with_capacity(self.allocatable.len());
        for name in self.allocatable.keys() {
            if let Some(view) = self.node_view(name) {
                nodes.insert(name.clone(), view);
            }
        }
        ClusterSnapshot {
            nodes,
            generation: self.generation,
        }
    }

    /// Reserves `pod` (UID `uid`) on `node` until kube-scheduler binds it, for at most
    /// [`RESERVATION_TTL_SECS`] from `now`. A pod already bound, or reserved again, moves.
    pub fn reserve(&mut self, uid: &str, node: &str, pod: PodView, now: u64) {
        if self.pods.get(uid).is_some_and(|r| r.node.is_some()) {
            return;
        }
        self.reservations.insert(
            uid.to_owned(),
            Reservation {
                node: node.to_owned(),
                pod,
                expires_at: now.saturating_add(RESERVATION_TTL_SECS),
                settled_gen: None,
            },
        );
    }

    /// Reservations the snapshot of generation `snapshot_gen` does not show, by node.
    pub fn pending(&self, snapshot_gen: u64) -> Pending {
        let mut out = Pending::new();
        for r in self.reservations.values() {
            if r.settled_gen.is_some_and(|g| g <= snapshot_gen) {
                continue;
            }
            let p = out.entry(r.node.clone()).or_default();
            if r.pod.high_priority {
                p.hp = p.hp.saturating_add(r.pod.request);
            } else {
                p.be = p.be.saturating_add(r.pod.request);
            }
        }
        out
    }

    /// Ends reservations that the snapshot of generation `published_gen` shows, and those
    /// whose pod was not bound in time.
    pub fn prune_reservations(&mut self, published_gen: u64, now: u64) {
        self.reservations.retain(|_, r| match r.settled_gen {
            Some(g) => g > published_gen,
            None => r.expires_at > now,
        });
    }

    /// Number of live reservations.
    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }
}

/// `total_usage × part / whole`, in 128-bit arithmetic; zero when `whole` is zero.
fn share(total_usage: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let v = u128::from(total_usage) * u128::from(part) / u128::from(whole);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The snapshot for a set of objects, and what was skipped (`namespace/name: reason` for pods,
/// `node: reason` for estimates). Same as applying each object to a fresh [`ClusterIndex`].
pub fn build_snapshot(
    nodes: &[Node],
    pods: &[Pod],
    estimates: &[NodeEstimate],
    cfg: &TideConfig,
) -> (ClusterSnapshot, Vec<String>, Vec<String>) {
    let mut index = ClusterIndex::new(cfg);
    nodes.iter().for_each(|n| index.apply_node(n));
    estimates.iter().for_each(|e| index.apply_estimate(e));
    pods.iter().for_each(|p| index.apply_pod(p));
    let fmt = |m: &HashMap<String, String>| {
        let mut v: Vec<String> = m.iter().map(|(k, r)| format!("{k}: {r}")).collect();
        v.sort();
        v
    };
    (
        index.snapshot(),
        fmt(&index.bad_pods),
        fmt(&index.bad_estimates),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, mem: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": mem}}})).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, requests: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": requests}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn estimate(node: &str, time: &str) -> NodeEstimate {
        serde_json::from_value(json!({
            "apiVersion": "tide.dev/v1alpha1", "kind": "NodeEstimate",
            "metadata": {"name": node},
            "spec": {"nodeName": node},
            "status": {
                "observedTime": time, "horizonSeconds": 3600,
                "cpu": {"allocatable": 8000, "predictedPeak": 3000, "margin": 200, "systemReserve": 500, "reclaimable": 4300, "hpUsage": 2500, "beUsage": 0},
                "memory": {"allocatable": 34_359_738_368_u64, "predictedPeak": 8_589_934_592_u64, "margin": 1_073_741_824, "systemReserve": 1_073_741_824, "reclaimable": 21_474_836_480_u64, "hpUsage": 8_000_000_000_u64, "beUsage": 0},
                "confidence": {"historySeconds": 86400, "recentViolationRate": 0.01}
            }
        }))
        .unwrap()
    }

    fn be(name: &str, node: &str, cpu: &str, mem: &str) -> Pod {
        pod(
            name,
            node,
            "Running",
            json!({"tide.dev/batch-cpu": cpu, "tide.dev/batch-memory": mem}),
        )
    }

    /// A BE pod whose containers run since `started` (RFC 3339), or are not running yet.
    fn be_running(name: &str, cpu: &str, mem: &str, started: Option<&str>) -> Pod {
        let mut p = be(name, "a", cpu, mem);
        let state = started.map_or_else(
            || json!({"waiting": {"reason": "ContainerCreating"}}),
            |t| json!({"running": {"startedAt": t}}),
        );
        p.status = serde_json::from_value(json!({"phase": "Running", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": state}
        ]}))
        .unwrap();
        p
    }

    #[test]
    fn real_time_mode_counts_measured_be_by_usage_and_the_rest_by_request() {
        let nodes = [node("a", "8", "32Gi")];
        // Observed at 00:10:00 with BE using 500 m and 1 GiB.
        let mut ne = estimate("a", "2026-11-23T00:10:00Z");
        let st = ne.status.as_mut().unwrap();
        st.cpu.be_usage = 500;
        st.memory.be_usage = 1 << 30;
        let pods = [
            // Running long before the observation: in the measured usage.
            be_running("old", "2000", "4Gi", Some("2026-11-23T00:00:00Z")),
            // Started one second before it: its usage may not show yet.
            be_running("new", "1000", "2Gi", Some("2026-11-23T00:09:59Z")),
            // Still pulling its image.
            be_running("pulling", "300", "1Gi", None),
            pod("web", "a", "Running", json!({"cpu": "2", "memory": "4Gi"})),
        ];
        let real_time = TideConfig::default();
        assert_eq!(real_time.be_admission, BeAdmission::RealTime);
        let (snap, _, _) = build_snapshot(&nodes, &pods, std::slice::from_ref(&ne), &real_time);
        assert_eq!(
            snap.nodes["a"].be_requested,
            ResourceAmounts::new(500 + 1_000 + 300, (1 << 30) + (2 << 30) + (1 << 30))
        );
        assert_eq!(
            snap.nodes["a"].hp_requested,
            ResourceAmounts::new(2_000, 4 << 30)
        );
        let request = TideConfig {
            be_admission: BeAdmission::Request,
            ..TideConfig::default()
        };
        let (snap, _, _) = build_snapshot(&nodes, &pods, std::slice::from_ref(&ne), &request);
        assert_eq!(
            snap.nodes["a"].be_requested,
            ResourceAmounts::new(3_300, 7 << 30)
        );
        // Without an estimate there is no measurement: requests count in either mode.
        let (snap, _, _) = build_snapshot(&nodes, &pods, &[], &real_time);
        assert_eq!(
            snap.nodes["a"].be_requested,
            ResourceAmounts::new(3_300, 7 << 30)
        );
    }

    #[test]
    fn nodes_estimates_and_bound_pods_make_the_snapshot() {
        let nodes = [node("a", "8", "32Gi"), node("b", "4", "16Gi")];
        let pods = [
            pod("web", "a", "Running", json!({"cpu": "2", "memory": "4Gi"})),
            be("job", "a", "1500", "2Gi"),
            pod("done", "a", "Succeeded", json!({"cpu": "4"})),
            pod("broken", "a", "Running", json!({"cpu": "x"})),
            pod("elsewhere", "z", "Running", json!({"cpu": "1"})),
        ];
        let estimates = [
            estimate("a", "2026-11-23T00:00:00Z"),
            estimate("b", "not a time"),
            estimate("gone", "2026-11-23T00:00:00Z"),
        ];
        let (snap, bad_pods, bad_estimates) =
            build_snapshot(&nodes, &pods, &estimates, &TideConfig::default());
        let a = &snap.nodes["a"];
        assert_eq!(a.allocatable, ResourceAmounts::new(8_000, 32 << 30));
        assert_eq!(a.hp_requested, ResourceAmounts::new(2_000, 4 << 30));
        assert_eq!(a.be_requested, ResourceAmounts::new(1_500, 2 << 30));
        let e = a.estimate.unwrap();
        assert_eq!(e.observed_at, 1_795_392_000);
        assert_eq!(e.reclaimable, ResourceAmounts::new(4_300, 20 << 30));
        assert_eq!(e.hp_reserved, ResourceAmounts::new(3_700, 10 << 30));
        assert!(snap.nodes["b"].estimate.is_none());
        assert_eq!(bad_estimates.len(), 1);
        assert!(
            bad_estimates[0].starts_with("b: observedTime \"not a time\""),
            "{bad_estimates:?}"
        );
        assert_eq!(bad_pods.len(), 1);
        assert!(
            bad_pods[0].starts_with("ns/broken: container \"c\" resource \"cpu\""),
            "{bad_pods:?}"
        );
        assert_eq!(snap.nodes.len(), 2);
    }

    #[test]
    fn events_update_the_aggregates_incrementally() {
        let mut idx = ClusterIndex::new(&TideConfig::default());
        idx.apply_node(&node("a", "8", "32Gi"));
        idx.apply_pod(&be("j1", "a", "1000", "1Gi"));
        idx.apply_pod(&be("j2", "a", "2000", "2Gi"));
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::new(3_000, 3 << 30)
        );
        // Modified: request unchanged but pod now finished.
        idx.apply_pod(&pod(
            "j1",
            "a",
            "Succeeded",
            json!({"tide.dev/batch-cpu": "1000"}),
        ));
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::new(2_000, 2 << 30)
        );
        idx.delete_pod(&be("j2", "a", "2000", "2Gi"));
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::ZERO
        );
        assert_eq!(idx.pod_count(), 0);
    }

    #[test]
    fn a_resync_drops_what_it_did_not_list() {
        let mut idx = ClusterIndex::new(&TideConfig::default());
        idx.apply_node(&node("a", "8", "32Gi"));
        idx.apply_node(&node("b", "8", "32Gi"));
        idx.apply_pod(&be("j1", "a", "1000", "1Gi"));
        idx.apply_pod(&be("j2", "a", "1000", "1Gi"));
        idx.begin_resync(Watched::Nodes);
        idx.apply_node(&node("a", "8", "32Gi"));
        idx.end_resync(Watched::Nodes);
        idx.begin_resync(Watched::Pods);
        idx.apply_pod(&be("j2", "a", "1000", "1Gi"));
        idx.end_resync(Watched::Pods);
        assert!(idx.node_view("b").is_none());
        assert_eq!(idx.pod_count(), 1);
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::new(1_000, 1 << 30)
        );
    }

    #[test]
    fn assumed_binding_counts_until_the_watch_catches_up() {
        let mut idx = ClusterIndex::new(&TideConfig::default());
        idx.apply_node(&node("a", "8", "32Gi"));
        idx.apply_pod(&be("j1", "", "1000", "1Gi"));
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::ZERO
        );
        idx.assume_bound("uid-j1", "a");
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::new(1_000, 1 << 30)
        );
        // A stale event without the node does not undo the assumption.
        idx.apply_pod(&be("j1", "", "1000", "1Gi"));
        assert_eq!(
            idx.node_view("a").unwrap().be_requested,
            ResourceAmounts::new(1_000, 1 << 30)
        );
    }

    #[test]
    fn be_usage_is_shared_by_request_and_leaving_pods_are_not_victims() {
        let mut idx = ClusterIndex::new(&TideConfig::default());
        idx.apply_node(&node("a", "8", "32Gi"));
        idx.apply_pod(&be("j1", "a", "1000", "1Gi"));
        idx.apply_pod(&be("j2", "a", "3000", "3Gi"));
        idx.be_usage
            .insert("a".into(), ResourceAmounts::new(2_000, 2 << 30));
        let mut pods = idx.be_pods_on("a");
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        assert_eq!(pods[0].usage, ResourceAmounts::new(500, 512 << 20));
        assert_eq!(pods[1].usage, ResourceAmounts::new(1_500, 1536 << 20));
        idx.mark_leaving("uid-j2");
        idx.be_usage.clear();
        let pods = idx.be_pods_on("a");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].usage, pods[0].request);
    }

    #[test]
    fn reservations_count_until_a_published_snapshot_shows_the_binding() {
        let mut idx = ClusterIndex::new(&TideConfig::default());
        idx.apply_node(&node("a", "8", "32Gi"));
        idx.apply_node(&node("b", "8", "32Gi"));
        idx.apply_pod(&be("j1", "", "1000", "1Gi"));
        let be_view = idx.pod("uid-j1").unwrap().view();
        let snap = idx.snapshot();
        idx.reserve("uid-j1", "a", be_view, 100);
        // Not in the snapshot, but pending on a.
        assert_eq!(snap.nodes["a"].be_requested, ResourceAmounts::ZERO);
        let p = idx.pending(snap.generation);
        assert_eq!(p["a"].be, ResourceAmounts::new(1_000, 1 << 30));
        assert!(!p.contains_key("b"));
        // kube-scheduler bound it to b after all: the reservation still counts on a until a
        // snapshot with the binding is published (conservative for a moment), then ends.
        idx.assume_bound("uid-j1", "b");
        assert!(idx.pending(snap.generation).contains_key("a"));
        let snap2 = idx.snapshot();
        assert_eq!(
            snap2.nodes["b"].be_requested,
            ResourceAmounts::new(1_000, 1 << 30)
        );
        assert!(idx.pending(snap2.generation).is_empty());
        idx.prune_reservations(snap2.generation, 101);
        assert_eq!(idx.reservation_count(), 0);
        // A reservation kube-scheduler never binds expires; a deleted pod's ends at once.
        idx.apply_pod(&be("j2", "", "1000", "1Gi"));
        let v = idx.pod("uid-j2").unwrap().view();
        idx.reserve("uid-j2", "a", v, 200);
        idx.prune_reservations(snap2.generation, 200 + RESERVATION_TTL_SECS - 1);
        assert_eq!(idx.reservation_count(), 1);
        idx.prune_reservations(snap2.generation, 200 + RESERVATION_TTL_SECS);
        assert_eq!(idx.reservation_count(), 0);
        idx.reserve("uid-j2", "a", v, 300);
        idx.delete_pod(&be("j2", "", "1000", "1Gi"));
        assert_eq!(idx.reservation_count(), 0);
        // A pod already bound is not reserved again.
        idx.reserve("uid-j1", "a", be_view, 400);
        assert_eq!(idx.reservation_count(), 0);
    }

    #[test]
    fn hp_pods_bound_by_another_binder_are_reported_once() {
        let mut idx = ClusterIndex::new(&TideConfig::default());
        idx.apply_node(&node("a", "8", "32Gi"));
        let web = |n: &str| pod("web", n, "Pending", json!({"cpu": "2", "memory": "1Gi"}));
        // Listed already bound (e.g. at start): not this extender's concern.
        idx.apply_pod(&pod("old", "a", "Running", json!({"cpu": "1"})));
        idx.apply_pod(&web(""));
        assert!(idx.bound_elsewhere.is_empty());
        idx.apply_pod(&web("a"));
        assert_eq!(
            idx.bound_elsewhere,
            [("uid-web".to_owned(), "a".to_owned())]
        );
        idx.apply_pod(&web("a"));
        assert_eq!(idx.bound_elsewhere.len(), 1);
        // A BE pod, or one this extender bound itself, is not reported.
        idx.bound_elsewhere.clear();
        idx.apply_pod(&be("j", "", "1000", "1Gi"));
        idx.apply_pod(&be("j", "a", "1000", "1Gi"));
        idx.apply_pod(&pod("web2", "", "Pending", json!({"cpu": "1"})));
        idx.assume_bound("uid-web2", "a");
        idx.apply_pod(&pod("web2", "a", "Pending", json!({"cpu": "1"})));
        assert!(idx.bound_elsewhere.is_empty());
    }
}
