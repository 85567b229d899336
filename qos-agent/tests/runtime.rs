//! The live agent against the fake API server: the real kube watch on this node's pods, the
//! NodeEstimate create + status patch, the Node's batch resources (re-advertised after a
//! kubelet reset), evictions under memory pressure (never an HP pod), an unreachable API, and
//! the checkpoint. Node state is a cgroup v2 tree (systemd layout) and a fake /proc.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tide_agent::agent::{Agent, NodeSetup, Suppression};
use tide_agent::cgroup::{Driver, Hierarchy, Layout};
use tide_agent::runtime::{Runtime, RuntimeOptions};
use tide_agent::topology::{Topology, write_fake_sysfs};
use tide_api::{KubeQosClass, ResourceAmounts, TideConfig};
use tide_testkit::node::{cgroup_v2, proc_files};
use tide_testkit::{FakeApi, Kind};

const HP: &str = "11111111-0000-4000-8000-000000000001";
const BE: &str = "22222222-0000-4000-8000-000000000002";
const GIB_KIB: u64 = 1 << 20;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pod(name: &str, ns: &str, uid: &str, node: &str, be: bool) -> Value {
    let resources = if be {
        json!({"requests": {"tide.dev/batch-cpu": "1000", "tide.dev/batch-memory": "4Gi"}})
    } else {
        json!({"requests": {"cpu": "2", "memory": "8Gi"}})
    };
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": resources}]},
        "status": {"phase": "Running"}});
    if be {
        p["metadata"]["labels"] = json!({"tide.dev/qos": "BE"});
    }
    p
}

fn layout(root: &Path) -> Layout {
    Layout {
        hierarchy: Hierarchy::V2(root.join("cgroup")),
        driver: Driver::Systemd,
        root: String::new(),
    }
}

/// Builds the node: two pods in cgroups, 32 GiB of memory with `used_gib` in use.
fn node_tree(root: &Path, used_gib: u64) {
    let l = layout(root);
    let cg = root.join("cgroup");
    for q in [
        KubeQosClass::Guaranteed,
        KubeQosClass::Burstable,
        KubeQosClass::BestEffort,
    ] {
        cgroup_v2(&cg.join(l.qos_dir(q)), 0, 1, 0).unwrap();
    }
    let hp = cg.join(l.pod_dir(KubeQosClass::Burstable, HP));
    let be = cg.join(l.pod_dir(KubeQosClass::BestEffort, BE));
    cgroup_v2(&hp, 0, 6 << 30, 0).unwrap();
    cgroup_v2(
        &hp.join(format!("cri-containerd-{}.scope", "a".repeat(64))),
        0,
        6 << 30,
        0,
    )
    .unwrap();
    cgroup_v2(&be, 0, 4 << 30, 0).unwrap();
    cgroup_v2(
        &be.join(format!("cri-containerd-{}.scope", "b".repeat(64))),
        0,
        4 << 30,
        0,
    )
    .unwrap();
    proc_files(&root.join("proc"), 0, 32 * GIB_KIB, used_gib * GIB_KIB).unwrap();
}

async fn start(fake: &FakeApi, root: &Path) -> Arc<Runtime> {
    let topo = root.join("sys-cpu");
    write_fake_sysfs(&topo, 4, 2, 1).unwrap();
    let setup = NodeSetup {
        node_name: "n1".into(),
        layout: layout(root),
        proc_root: root.join("proc"),
        topology: Topology::read(&topo).unwrap(),
        system_cpus: 2,
        suppression: Suppression::Cpuset,
        allocatable: ResourceAmounts::new(1_000, 1 << 30), // corrected from the Node object
    };
    let client = tide_kube::connect_url(&fake.url()).unwrap();
    let opts = RuntimeOptions {
        api_timeout: Duration::from_secs(2),
        checkpoint: Some(root.join("estimator.json")),
        checkpoint_every: 1,
    };
    let rt =
        Arc::new(Runtime::new(Agent::new(setup, TideConfig::default()), client, opts).unwrap());
    tokio::spawn(Arc::clone(&rt).watch_pods());
    for _ in 0..1000 {
        if rt.pods.lock().unwrap().synced && rt.pods.lock().unwrap().infos.len() == 2 {
            return rt;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pod watch did not sync within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_evicts_and_survives_an_unreachable_api() {
    let root = std::env::temp_dir().join(format!("tide-agent-rt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _dir = Dir(root.clone());
    node_tree(&root, 16);
    let fake = FakeApi::start().await.unwrap();
    fake.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                      "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}, "capacity": {"cpu": "8", "memory": "32Gi"}}}));
    fake.apply(pod("api", "web", HP, "n1", false));
    fake.apply(pod("job", "batch", BE, "n1", true));
    fake.apply(pod(
        "elsewhere",
        "web",
        "33333333-0000-4000-8000-000000000003",
        "n2",
        false,
    ));
    let rt = start(&fake, &root).await;
    // The watch used the node's field selector and saw only this node's pods.
    assert!(
        fake.requests_to("GET", "/api/v1/pods")
            .iter()
            .all(|r| r.query.contains("fieldSelector=spec.nodeName%3Dn1"))
    );

    // First tick: NodeEstimate created and its status written; batch resources on the Node.
    let t0 = 1_800_000_000_000;
    let r = rt.tick(t0).await;
    assert!(r.published, "{r:?}");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let ne = fake.get(Kind::NodeEstimate, "", "n1").unwrap();
    assert_eq!(ne["spec"]["nodeName"], "n1");
    assert_eq!(
        ne["status"]["cpu"]["allocatable"], 8_000,
        "allocatable learned from the Node: {ne}"
    );
    assert_eq!(ne["status"]["observedTime"], "2027-01-15T08:00:00Z");
    assert_eq!(
        ne["status"]["confidence"]["degradedReason"],
        "history too young"
    );
    let node = fake.get(Kind::Node, "", "n1").unwrap();
    assert_eq!(node["status"]["allocatable"]["tide.dev/batch-cpu"], "0");
    assert_eq!(
        node["status"]["allocatable"]["cpu"], "8",
        "merge patch keeps the rest"
    );
    assert_eq!(fake.requests_to("POST", "/nodeestimates").len(), 1);

    // Within publishMin and unchanged: nothing written.
    let patches = fake.requests_to("PATCH", "/status").len();
    let r = rt.tick(t0 + 1_000).await;
    assert!(!r.published);
    assert_eq!(fake.requests_to("PATCH", "/status").len(), patches);

    // The kubelet restarted and dropped our extended resources: re-advertised at once.
    fake.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                      "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}, "capacity": {"cpu": "8", "memory": "32Gi"}}}));
    let r = rt.tick(t0 + 2_000).await;
    assert!(r.published, "{r:?}");
    assert_eq!(
        fake.get(Kind::Node, "", "n1").unwrap()["status"]["allocatable"]["tide.dev/batch-cpu"],
        "0"
    );

    // Memory pressure: 31 of 32 GiB in use. The BE pod is evicted through the API; the HP pod
    // never is.
    proc_files(&root.join("proc"), 0, 32 * GIB_KIB, 31 * GIB_KIB).unwrap();
    let r = rt.tick(t0 + 3_000).await;
    assert_eq!(
        r.evictions,
        vec![("batch/job".to_string(), "evicted".to_string())],
        "{r:?}"
    );
    let evictions = fake.requests_to("POST", "/eviction");
    assert_eq!(evictions.len(), 1);
    assert!(
        evictions[0]
            .path
            .ends_with("/namespaces/batch/pods/job/eviction")
    );
    assert_eq!(evictions[0].body["kind"], "Eviction");
    // Rate limit: the next tick does not evict again at once.
    let r = rt.tick(t0 + 4_000).await;
    assert!(r.evictions.is_empty(), "{r:?}");

    // The API goes away: node-local work goes on, errors are reported, no panic.
    fake.set_unavailable(true);
    let r = rt.tick(t0 + 70_000).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("503") || e.contains("ServiceUnavailable")),
        "{:?}",
        r.errors
    );
    fake.set_unavailable(false);

    // Metrics show the decisions and the OOM order.
    let m = rt.metrics.render();
    assert!(m.contains("tide_agent_actions_total{action=\"evict\",outcome=\"evicted\",reason=\"memory-pressure\"} 1"), "{m}");
    assert!(
        m.contains("tide_agent_oom_score_adj{pod=\"batch/job\",qos=\"BE\"}"),
        "{m}"
    );
    assert!(
        m.contains("tide_agent_usage{class=\"be\",resource=\"memory\"} 4294967296"),
        "{m}"
    );
    // The checkpoint was written (every tick here) and restores.
    let mut fresh = Agent::new(
        rt.agent.lock().unwrap().setup.clone(),
        TideConfig::default(),
    );
    assert!(fresh.restore(&root.join("estimator.json")).unwrap());
    assert_eq!(fresh.memory, rt.agent.lock().unwrap().memory);
}
