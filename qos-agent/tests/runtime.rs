//! The live agent against the fake API server: the real kube watch on this node's pods, the
//! NodeEstimate create + status patch, the Node's batch resources (re-advertised after a
//! kubelet reset), evictions under memory pressure (never an HP pod), an unreachable API, and
//! the checkpoint. Node state is a cgroup v2 tree (systemd layout) and a fake /proc.

#![allow(clippy::unwrap_used)]

mod common;

use common::{GIB_KIB, live_node, node_object};
use tide_agent::agent::Agent;
use tide_api::TideConfig;
use tide_testkit::Kind;
use tide_testkit::node::proc_files;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_evicts_and_survives_an_unreachable_api() {
    let (root, _dir, fake, rt) = live_node("rt").await;
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
    fake.apply(node_object());
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

    // The API goes away while memory stays above the critical level (31 of 32 GiB > 95%):
    // node-local work goes on, errors are reported, and the BE pod is killed locally through
    // cgroup.kill — the HP pod is not touched.
    fake.set_unavailable(true);
    let r = rt.tick(t0 + 70_000).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("503") || e.contains("ServiceUnavailable")),
        "{:?}",
        r.errors
    );
    let l = common::layout(&root);
    let kill = |uid: &str, q: tide_api::KubeQosClass| {
        std::fs::read_to_string(
            root.join("cgroup")
                .join(l.pod_dir(q, uid))
                .join("cgroup.kill"),
        )
        .unwrap()
    };
    assert_eq!(kill(common::BE, tide_api::KubeQosClass::BestEffort), "1");
    assert_eq!(kill(common::HP, tide_api::KubeQosClass::Burstable), "");
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
    // PSI of the pods, from the kubepods cgroup's cpu.pressure in the tree.
    assert!(
        m.contains("tide_agent_pods_pressure_avg10{resource=\"cpu\"} 4.56"),
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

/// Issue 15: an agent that is removed puts back what it changed — BE back on every CPU, no
/// quota — and withdraws the batch resources it advertised, so no BE work lands on a node no
/// agent vouches for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_puts_cpusets_back_and_withdraws_batch_resources() {
    let (root, _dir, fake, rt) = live_node("release").await;
    let r = rt.tick(1_800_000_000_000).await;
    assert!(r.published && r.errors.is_empty(), "{r:?}");
    let l = common::layout(&root);
    let be_ctr = root
        .join("cgroup")
        .join(l.pod_dir(tide_api::KubeQosClass::BestEffort, common::BE))
        .join(format!("cri-containerd-{}.scope", "b".repeat(64)));
    let cpus = || {
        std::fs::read_to_string(be_ctr.join("cpuset.cpus"))
            .unwrap()
            .trim()
            .to_owned()
    };
    // Eight CPUs (four cores, two threads each), core 0 kept for the system.
    assert_eq!(cpus(), "1-3,5-7");
    let node = fake.get(Kind::Node, "", "n1").unwrap();
    assert!(node["status"]["allocatable"]["tide.dev/batch-cpu"].is_string());

    let r = rt.release().await;
    assert!(r.errors.is_empty() && r.published, "{r:?}");
    assert_eq!(cpus(), "0-7");
    let node = fake.get(Kind::Node, "", "n1").unwrap();
    for field in ["allocatable", "capacity"] {
        let res = node["status"][field].as_object().unwrap();
        assert!(
            !res.contains_key("tide.dev/batch-cpu") && !res.contains_key("tide.dev/batch-memory"),
            "{node}"
        );
        assert_eq!(res["cpu"], "8", "the kubelet's resources stay");
    }
    // Without the API the cgroups are still put back, and the failure is reported.
    fake.set_unavailable(true);
    rt.tick(1_800_000_001_000).await;
    let r = rt.release().await;
    assert!(r.errors.iter().any(|e| e.contains("withdrawing")), "{r:?}");
    assert_eq!(cpus(), "0-7");
}

/// Issue 18: a suppression counts as `applied` only when its cgroup writes landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppression_counts_as_applied_only_when_written() {
    let (root, _dir, _fake, rt) = live_node("applied").await;
    let r = rt.tick(1_800_000_000_000).await;
    assert!(r.errors.is_empty(), "{r:?}");
    let count = |outcome: &str| {
        rt.metrics
            .render()
            .lines()
            .filter(|l| {
                l.starts_with("tide_agent_actions_total")
                    && l.contains("action=\"suppress-cpu\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    assert_eq!((count("applied"), count("failed")), (1.0, 0.0));
    // The besteffort level vanishes (a kubelet restart, a wrong root): nothing can be written.
    let l = common::layout(&root);
    std::fs::remove_dir_all(
        root.join("cgroup")
            .join(l.qos_dir(tide_api::KubeQosClass::BestEffort)),
    )
    .unwrap();
    let r = rt.tick(1_800_000_001_000).await;
    assert!(!r.errors.is_empty());
    assert_eq!((count("applied"), count("failed")), (1.0, 1.0));
}
