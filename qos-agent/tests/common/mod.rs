//! Shared set-up for the agent's integration tests: a node tree (cgroup v2, systemd layout,
//! fake /proc and sysfs) and a live runtime against the fake API server.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tide_agent::agent::{Agent, NodeSetup, Suppression};
use tide_agent::cgroup::{Driver, Hierarchy, Layout};
use tide_agent::runtime::{Runtime, RuntimeOptions};
use tide_agent::topology::{Topology, write_fake_sysfs};
use tide_api::{KubeQosClass, ResourceAmounts, TideConfig};
use tide_testkit::FakeApi;
use tide_testkit::node::{cgroup_v2, proc_files};

pub const HP: &str = "11111111-0000-4000-8000-000000000001";
pub const BE: &str = "22222222-0000-4000-8000-000000000002";
pub const GIB_KIB: u64 = 1 << 20;

/// Removes the directory when dropped.
pub struct Dir(pub PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn pod(name: &str, ns: &str, uid: &str, node: &str, be: bool) -> Value {
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

pub fn layout(root: &Path) -> Layout {
    Layout {
        hierarchy: Hierarchy::V2(root.join("cgroup")),
        driver: Driver::Systemd,
        root: String::new(),
    }
}

/// Builds the node: two pods in cgroups, 32 GiB of memory with `used_gib` in use.
pub fn node_tree(root: &Path, used_gib: u64) {
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

pub async fn start(fake: &FakeApi, root: &Path) -> Arc<Runtime> {
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

/// The fake API with node n1 (8 CPUs, 32 GiB), an HP pod and a BE pod on it, and a pod
/// elsewhere.
pub async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await.unwrap();
    fake.apply(node_object());
    fake.apply(pod("api", "web", HP, "n1", false));
    fake.apply(pod("job", "batch", BE, "n1", true));
    fake.apply(pod(
        "elsewhere",
        "web",
        "33333333-0000-4000-8000-000000000003",
        "n2",
        false,
    ));
    fake
}

/// Node n1 as the kubelet reports it (no Tide resources).
pub fn node_object() -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
           "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}, "capacity": {"cpu": "8", "memory": "32Gi"}}})
}

/// A live agent on a fresh node tree (16 GiB of 32 in use) against a fresh fake cluster, its
/// tree under the temp dir named by `tag` (removed when the returned `Dir` drops).
pub async fn live_node(tag: &str) -> (PathBuf, Dir, FakeApi, Arc<Runtime>) {
    let root = std::env::temp_dir().join(format!("tide-agent-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = Dir(root.clone());
    node_tree(&root, 16);
    let fake = cluster().await;
    let rt = start(&fake, &root).await;
    (root, dir, fake, rt)
}
