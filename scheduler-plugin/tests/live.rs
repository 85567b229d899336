//! The extender end to end against the in-process fake API server: the real `kube` watchers
//! fill the cache, a real HTTP client sends kube-scheduler's requests, and binds go through
//! the real Eviction and Binding APIs of the fake.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tide_api::TideConfig;
use tide_scheduler::cluster::{KubeApi, connect_url};
use tide_scheduler::server::{ExtenderState, router};
use tide_scheduler::{live, serve};
use tide_testkit::{FakeApi, Kind};

const GIB: u64 = 1 << 30;

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"}}})
}

/// A NodeEstimate observed `age` seconds ago: HP holds `hp_mem` GiB (peak + margin + system),
/// BE uses `be_mem` GiB, `reclaim_mem` GiB reclaimable.
fn estimate(name: &str, age: i64, hp_mem: u64, be_mem: u64, reclaim_mem: u64) -> Value {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age);
    let t = t.round(jiff::Unit::Second).unwrap();
    json!({"apiVersion": "tide.dev/v1alpha1", "kind": "NodeEstimate",
    "metadata": {"name": name}, "spec": {"nodeName": name},
    "status": {
        "observedTime": t.to_string(), "horizonSeconds": 3600,
        "cpu": {"allocatable": 16000, "predictedPeak": 3000, "margin": 500, "systemReserve": 500,
                "reclaimable": 8000, "hpUsage": 2500, "beUsage": 1000},
        "memory": {"allocatable": 64 * GIB, "predictedPeak": (hp_mem - 4) * GIB, "margin": 2 * GIB,
                   "systemReserve": 2 * GIB, "reclaimable": reclaim_mem * GIB, "hpUsage": (hp_mem - 6) * GIB,
                   "beUsage": be_mem * GIB},
        "confidence": {"historySeconds": 86400, "recentViolationRate": 0.0}
    }})
}

fn hp_pod(name: &str, node: &str, mem_gib: u64) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "web", "uid": format!("uid-{name}")},
        "spec": {"nodeName": node, "priority": 10000, "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1", "memory": format!("{mem_gib}Gi")}}}]},
        "status": {"phase": if node.is_empty() { "Pending" } else { "Running" }}})
}

fn be_pod(name: &str, node: &str, priority: i32, mem_gib: u64) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "batch", "uid": format!("uid-{name}"),
                     "labels": {"tide.dev/qos": "BE"}},
        "spec": {"nodeName": node, "priority": priority, "containers": [{"name": "c",
            "resources": {"requests": {"tide.dev/batch-cpu": "1000", "tide.dev/batch-memory": format!("{mem_gib}Gi")},
                          "limits": {"tide.dev/batch-cpu": "1000", "tide.dev/batch-memory": format!("{mem_gib}Gi")}}}]},
        "status": {"phase": if node.is_empty() { "Pending" } else { "Running" }}})
}

struct Extender {
    base: String,
    state: Arc<ExtenderState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Extender {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

async fn start(fake: &FakeApi) -> Extender {
    start_with_clock(fake, None).await
}

/// [`start`], on the test's clock (seconds) when given.
async fn start_with_clock(
    fake: &FakeApi,
    clock: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> Extender {
    let client = connect_url(&fake.url()).unwrap();
    let api = KubeApi::new(client.clone(), Duration::from_secs(5));
    let mut state = ExtenderState::new(TideConfig::default())
        .unwrap()
        .with_api(Arc::new(api));
    if let Some(c) = clock {
        state.clock = Box::new(move || c.load(std::sync::atomic::Ordering::Relaxed));
    }
    let state = Arc::new(state);
    let watch = tokio::spawn(live::run(
        client,
        Arc::clone(&state),
        Duration::from_millis(10),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::clone(&state), "", 1 << 20);
    let server = tokio::spawn(serve::serve(listener, app, None, std::future::pending()));
    let ext = Extender {
        base,
        state,
        tasks: vec![watch, server],
    };
    ext.wait(|e| async move { e.get("/readyz").await.0 == 200 })
        .await;
    ext
}

impl Extender {
    async fn request(&self, method: Method, path: &str, body: String) -> (u16, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.request(Method::GET, path, String::new()).await
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let (status, text) = self.request(Method::POST, path, body.to_string()).await;
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Polls `cond` every 10 ms for up to 10 s (the watch is asynchronous).
    async fn wait<'a, F, Fut>(&'a self, cond: F)
    where
        F: Fn(&'a Extender) -> Fut,
        Fut: Future<Output = bool>,
    {
        for _ in 0..1000 {
            if cond(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 10 s");
    }

    fn snapshot_has(&self, f: impl Fn(&tide_scheduler::ClusterSnapshot) -> bool) -> bool {
        f(&self.state.snapshot.read().unwrap())
    }
}

fn args(pod: &Value, nodes: &[&str]) -> Value {
    json!({"Pod": pod, "Nodes": null, "NodeNames": nodes})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn be_goes_to_fresh_reclaimable_capacity_and_stale_estimates_never_block_hp() {
    let fake = FakeApi::start().await.unwrap();
    for n in ["fresh", "stale", "none"] {
        fake.apply(node(n));
    }
    fake.apply(estimate("fresh", 5, 30, 0, 20));
    fake.apply(estimate("stale", 3600, 30, 0, 20));
    let ext = start(&fake).await;
    ext.wait(|e| async move { e.snapshot_has(|s| s.nodes.len() == 3) })
        .await;

    let be = be_pod("job", "", 0, 4);
    let out = ext
        .post("/filter", &args(&be, &["fresh", "stale", "none"]))
        .await;
    assert_eq!(out["NodeNames"], json!(["fresh"]), "{out}");
    assert!(
        out["FailedAndUnresolvableNodes"]["stale"]
            .as_str()
            .unwrap()
            .contains("stale"),
        "{out}"
    );
    assert!(
        out["FailedAndUnresolvableNodes"]["none"]
            .as_str()
            .unwrap()
            .contains("no NodeEstimate"),
        "{out}"
    );
    let hp = hp_pod("api", "", 4);
    let out = ext
        .post("/filter", &args(&hp, &["fresh", "stale", "none"]))
        .await;
    assert_eq!(out["NodeNames"], json!(["fresh", "stale", "none"]), "{out}");

    // The same in the full-Node mode (nodeCacheCapable: false).
    let nodes: Vec<Value> = ["fresh", "stale", "none"].iter().map(|n| node(n)).collect();
    let out = ext
        .post(
            "/filter",
            &json!({"Pod": be, "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": null}),
        )
        .await;
    let passed: Vec<&str> = out["Nodes"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(passed, ["fresh"], "{out}");

    // Bind the BE pod: the Binding reaches the API, and its request counts at once.
    fake.apply(be.clone());
    let bound = ext
        .post(
            "/bind",
            &json!({"PodName": "job", "PodNamespace": "batch", "PodUID": "uid-job", "Node": "fresh"}),
        )
        .await;
    assert_eq!(bound, json!({"Error": ""}));
    let stored = fake.get(Kind::Pod, "batch", "job").unwrap();
    assert_eq!(stored["spec"]["nodeName"], "fresh");
    assert!(fake.requests_to("POST", "/eviction").is_empty());
    ext.wait(
        |e| async move { e.snapshot_has(|s| s.nodes["fresh"].be_requested.memory.0 == 4 * GIB) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prioritize_prefers_the_lower_and_more_balanced_node_as_the_watch_changes() {
    let fake = FakeApi::start().await.unwrap();
    fake.apply(node("busy"));
    fake.apply(node("calm"));
    fake.apply(estimate("busy", 5, 50, 0, 10));
    fake.apply(estimate("calm", 5, 20, 0, 40));
    let ext = start(&fake).await;
    ext.wait(|e| async move { e.snapshot_has(|s| s.nodes.values().all(|n| n.estimate.is_some())) })
        .await;
    let be = be_pod("job", "", 0, 2);
    let scores = ext.post("/prioritize", &args(&be, &["busy", "calm"])).await;
    // Scores are sent less the lowest, hosts at 0 left out (`extender::shifted`): a host
    // missing from the answer scored lowest.
    let score = |scores: &Value, host: &str| {
        scores
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["Host"] == host)
            .map_or(0, |h| h["Score"].as_i64().unwrap())
    };
    assert!(score(&scores, "calm") > score(&scores, "busy"), "{scores}");
    assert!((0..=10).contains(&score(&scores, "busy")));

    // The calm node fills up with HP work; the watch delivers it and the ranking turns.
    fake.apply(estimate("calm", 1, 58, 0, 2));
    ext.wait(|e| async move {
        let s = e
            .post(
                "/prioritize",
                &args(&be_pod("job", "", 0, 2), &["busy", "calm"]),
            )
            .await;
        score(&s, "busy") > score(&s, "calm")
    })
    .await;
    // A deleted node disappears from the cache: the extender refuses it by name.
    fake.delete(Kind::Node, "", "calm");
    ext.wait(|e| async move {
        let out = e
            .post("/filter", &args(&be_pod("job", "", 0, 2), &["calm"]))
            .await;
        out["FailedAndUnresolvableNodes"]["calm"]
            .as_str()
            .is_some_and(|r| r.contains("not in the extender's cache"))
    })
    .await;
}

/// Node: 64 GiB, memory eviction level 90% = 57.6 GiB. HP holds 44 GiB; BE pods a (priority
/// 100, 4 GiB request), b (priority 0, 4 GiB) and c (priority 0, 8 GiB) use 24 GiB together,
/// shared by request: 6, 6 and 12 GiB.
async fn hot_node(fake: &FakeApi) {
    fake.apply(node("hot"));
    fake.apply(estimate("hot", 5, 44, 24, 10));
    fake.apply(hp_pod("resident", "hot", 30));
    fake.apply(be_pod("a", "hot", 100, 4));
    fake.apply(be_pod("b", "hot", 0, 4));
    fake.apply(be_pod("c", "hot", 0, 8));
}

fn evicted(fake: &FakeApi) -> Vec<String> {
    fake.requests_to("POST", "/eviction")
        .iter()
        .map(|r| r.body["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn bind_args(name: &str, node: &str) -> Value {
    json!({"PodName": name, "PodNamespace": "web", "PodUID": format!("uid-{name}"), "Node": node})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_pre_evicts_just_enough_be_pods_in_victim_order() {
    let fake = FakeApi::start().await.unwrap();
    hot_node(&fake).await;
    fake.apply(hp_pod("new", "", 4));
    let ext = start(&fake).await;
    ext.wait(|e| async move { e.state.lock_index().pod_count() == 5 })
        .await;
    // 44 + 4 + 24 = 72 GiB: 14.4 over. c (12 GiB, priority 0, most over its request), then b.
    let out = ext.post("/bind", &bind_args("new", "hot")).await;
    assert_eq!(out, json!({"Error": ""}));
    assert_eq!(evicted(&fake), ["c", "b"]);
    for r in fake.requests_to("POST", "/eviction") {
        assert_eq!(r.body["apiVersion"], "policy/v1");
        assert_eq!(r.body["kind"], "Eviction");
    }
    assert!(
        fake.get(Kind::Pod, "batch", "c").unwrap()["metadata"]["deletionTimestamp"].is_string()
    );
    assert!(fake.get(Kind::Pod, "batch", "a").unwrap()["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(
        fake.get(Kind::Pod, "web", "new").unwrap()["spec"]["nodeName"],
        "hot"
    );
    let binding = &fake.requests_to("POST", "/binding")[0].body;
    assert_eq!(
        binding["target"],
        json!({"apiVersion": "v1", "kind": "Node", "name": "hot"})
    );
    assert_eq!(binding["metadata"]["uid"], "uid-new");
    let metrics = ext.get("/metrics").await.1;
    assert!(
        metrics.contains("tide_scheduler_pre_evictions_total{outcome=\"evicted\"} 2"),
        "{metrics}"
    );
    // The resident HP pod was never a candidate.
    assert!(!evicted(&fake).contains(&"resident".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_refusal_moves_to_the_next_victim_or_fails_the_bind_with_a_reason() {
    let fake = FakeApi::start().await.unwrap();
    hot_node(&fake).await;
    fake.protect_with_pdb("batch", "c");
    fake.apply(hp_pod("small", "", 1));
    fake.apply(hp_pod("big", "", 4));
    let ext = start(&fake).await;
    ext.wait(|e| async move { e.state.lock_index().pod_count() == 6 })
        .await;
    // Small: 44 + 1 + 24 = 69 GiB, 11.4 over. c refuses (429); b and a free 12 GiB: bound.
    let out = ext.post("/bind", &bind_args("small", "hot")).await;
    assert_eq!(out, json!({"Error": ""}));
    assert_eq!(evicted(&fake), ["c", "b", "a"]);
    assert_eq!(
        fake.get(Kind::Pod, "web", "small").unwrap()["spec"]["nodeName"],
        "hot"
    );

    // Big, on a fresh copy of the node: c refuses and b + a cannot free enough: no binding.
    let fake = FakeApi::start().await.unwrap();
    hot_node(&fake).await;
    fake.protect_with_pdb("batch", "c");
    fake.apply(hp_pod("big", "", 4));
    let ext = start(&fake).await;
    ext.wait(|e| async move { e.state.lock_index().pod_count() == 5 })
        .await;
    let out = ext.post("/bind", &bind_args("big", "hot")).await;
    let err = out["Error"].as_str().unwrap();
    assert!(
        err.contains("PodDisruptionBudgets refused evicting batch/c"),
        "{err}"
    );
    assert!(fake.requests_to("POST", "/binding").is_empty());
    assert!(
        fake.get(Kind::Pod, "web", "big").unwrap()["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let metrics = ext.get("/metrics").await.1;
    assert!(metrics.contains("tide_scheduler_pre_evictions_total{outcome=\"pdb-refused\"} 1"));
    assert!(metrics.contains("tide_scheduler_requests_total{outcome=\"failed\",verb=\"bind\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_reads_a_pod_the_watch_has_not_delivered_and_reports_api_failures() {
    let fake = FakeApi::start().await.unwrap();
    fake.apply(node("n1"));
    let ext = start(&fake).await;
    // Stop the watch from seeing it: apply after pausing is not possible, so bind at once —
    // the binder falls back to a GET when its cache does not know the pod.
    fake.apply(hp_pod("quick", "", 1));
    let out = ext.post("/bind", &bind_args("quick", "n1")).await;
    assert_eq!(out, json!({"Error": ""}));
    assert_eq!(
        fake.get(Kind::Pod, "web", "quick").unwrap()["spec"]["nodeName"],
        "n1"
    );

    // Binding an already-bound pod: the API's 409 comes back as the reason.
    let out = ext.post("/bind", &bind_args("quick", "n1")).await;
    assert!(
        out["Error"].as_str().unwrap().contains("already assigned"),
        "{out}"
    );

    // An unreachable API server: a clear error, no panic, and the server stays up.
    fake.apply(hp_pod("later", "", 1));
    ext.wait(|e| async move { e.state.lock_index().pod("uid-later").is_some() })
        .await;
    fake.set_unavailable(true);
    let out = ext.post("/bind", &bind_args("later", "n1")).await;
    let err = out["Error"].as_str().unwrap();
    assert!(
        err.contains("503") || err.contains("ServiceUnavailable"),
        "{err}"
    );
    assert_eq!(ext.get("/healthz").await.0, 200);
    // Unknown pod while the API is down: named in the error.
    let out = ext
        .post("/bind", &json!({"PodName": "ghost", "PodNamespace": "web", "PodUID": "uid-ghost", "Node": "n1"}))
        .await;
    assert!(
        out["Error"]
            .as_str()
            .unwrap()
            .contains("reading pod web/ghost"),
        "{out}"
    );
    fake.set_unavailable(false);

    // A malformed bind request is the client's mistake: 400 naming the problem.
    let (status, text) = ext
        .request(Method::POST, "/bind", r#"{"PodName": 5}"#.into())
        .await;
    assert_eq!(status, 400);
    assert!(text.contains("invalid bind request"), "{text}");
}

/// Issue 18: readiness tells whether the extender's view can be trusted — with the API server
/// not answering its probe for 30 s, `/readyz` turns 503 with the error (kube-scheduler's BE
/// entry then finds no ready extender and BE waits; HP never needs it), and 200 again once the
/// API server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_while_the_api_server_does_not_answer() {
    let fake = FakeApi::start().await.unwrap();
    fake.apply(node("a"));
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(1_000));
    let ext = start_with_clock(&fake, Some(Arc::clone(&clock))).await;
    ext.wait(|e| async move { e.state.api_probe.lock().unwrap().ok_at == Some(1_000) })
        .await;
    assert_eq!(ext.get("/readyz").await.0, 200);
    fake.set_unavailable(true);
    // The probe runs every 10 s; wait for one that fails.
    for _ in 0..1500 {
        if ext.state.api_probe.lock().unwrap().error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let error = ext.state.api_probe.lock().unwrap().error.clone();
    assert!(error.is_some(), "no failed probe within 15 s");
    assert_eq!(
        ext.get("/readyz").await.0,
        200,
        "within 30 s of the last answer"
    );
    clock.store(1_031, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = ext.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        format!("API server not reachable: {}", error.unwrap())
    );
    fake.set_unavailable(false);
    for _ in 0..1500 {
        if ext.get("/readyz").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not ready again within 15 s of the API server answering");
}
