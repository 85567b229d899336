//! The extender over real HTTP on loopback, driven by a real HTTP client with request bodies
//! in kube-scheduler's exact shape (both node modes), and every kind of client mistake.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tide_api::{ResourceAmounts, TideConfig};
use tide_scheduler::server::{ExtenderState, router};
use tide_scheduler::{ClusterSnapshot, EstimateView, NodeView};

const NOW: u64 = 1_000_000;

struct Server {
    base: String,
    state: Arc<ExtenderState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(prefix: &str, body_limit: usize) -> Server {
        let mut state = ExtenderState::new(TideConfig::default()).unwrap();
        state.clock = Box::new(|| NOW);
        let state = Arc::new(state);
        let app = router(Arc::clone(&state), prefix, body_limit);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Server {
            base: format!("http://{addr}{prefix}"),
            state,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn call(method: Method, url: &str, body: Vec<u8>) -> (StatusCode, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn post(url: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let (s, text) = call(Method::POST, url, serde_json::to_vec(&body).unwrap()).await;
    (
        s,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

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
    let mut nodes = tide_scheduler::extender::NodeMap::default();
    nodes.insert("node-a".to_string(), view(16_000, NOW - 10));
    nodes.insert("node-b".to_string(), view(1_000, NOW - 10));
    nodes.insert("node-c".to_string(), view(16_000, NOW - 3_600));
    ClusterSnapshot {
        nodes,
        generation: 0,
    }
}

fn be_pod() -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": "job-1", "namespace": "batch", "uid": "0d7f2c1e-5a7b-4d0c-9b8e-2f1a3c4d5e6f"},
        "spec": {"containers": [{"name": "w", "image": "busybox",
            "resources": {"requests": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"},
                          "limits": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"}}}]},
        "status": {"phase": "Pending"}
    })
}

fn hp_pod() -> serde_json::Value {
    serde_json::json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}}]}})
}

#[tokio::test]
async fn filter_and_prioritize_with_node_names() {
    let s = Server::start("/extender", 1 << 20).await;
    s.state.publish(snapshot());
    let body = serde_json::json!({"Pod": be_pod(), "Nodes": null, "NodeNames": ["node-a", "node-b", "node-c"]});
    let (status, r) = post(&format!("{}/filter", s.base), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["NodeNames"], serde_json::json!(["node-a"]));
    assert!(r["Nodes"].is_null());
    assert!(
        r["FailedNodes"]["node-b"]
            .as_str()
            .unwrap()
            .contains("exceed reclaimable 1000m")
    );
    assert!(
        r["FailedAndUnresolvableNodes"]["node-c"]
            .as_str()
            .unwrap()
            .contains("stale")
    );
    assert_eq!(r["Error"], "");

    let (status, p) = post(&format!("{}/prioritize", s.base), body).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let scores: Vec<(String, i64)> = p
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["Host"].as_str().unwrap().to_string(),
                h["Score"].as_i64().unwrap(),
            )
        })
        .collect();
    // Sent shifted: the lowest score is taken from every host and hosts left at 0 are
    // omitted (kube-scheduler's choice is the same; `extender::shifted`). node-a, with more
    // room, is the one above the others.
    assert!(
        scores.iter().all(|(_, sc)| (1..=10).contains(sc)),
        "{scores:?}"
    );
    assert_eq!(
        scores.first().map(|(h, _)| h.as_str()),
        Some("node-a"),
        "{scores:?}"
    );
    assert!(scores.len() < 3, "the lowest host is left out: {scores:?}");
    s.stop().await;
}

#[tokio::test]
async fn filter_with_full_node_objects_and_hp_never_blocked() {
    let s = Server::start("", 1 << 20).await;
    s.state.publish(snapshot());
    let nodes = serde_json::json!({"metadata": {}, "items": [
        {"metadata": {"name": "node-a"}, "status": {"allocatable": {"cpu": "32", "memory": "128Gi"}}},
        {"metadata": {"name": "node-c"}, "status": {"allocatable": {"cpu": "32", "memory": "128Gi"}}},
        {"metadata": {"name": "node-new"}, "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}}}
    ]});
    let (status, r) = post(
        &format!("{}/filter", s.base),
        serde_json::json!({"Pod": be_pod(), "Nodes": nodes, "NodeNames": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let names: Vec<&str> = r["Nodes"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-a"]);
    assert!(r["NodeNames"].is_null());
    // The HP pod passes everywhere, stale estimate and unknown node included.
    let (status, r) = post(
        &format!("{}/filter", s.base),
        serde_json::json!({"Pod": hp_pod(), "Nodes": nodes, "NodeNames": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["Nodes"]["items"].as_array().unwrap().len(), 3);
    assert_eq!(r["FailedNodes"], serde_json::json!({}));
    s.stop().await;
}

#[tokio::test]
async fn client_mistakes_get_4xx_that_name_the_problem() {
    let s = Server::start("", 4096).await;
    s.state.publish(snapshot());
    let url = format!("{}/filter", s.base);
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid filter request: key must be a string at line 1 column 2"),
        (br#"{"NodeNames": ["a"]}"#.to_vec(), StatusCode::BAD_REQUEST, "missing field `Pod`"),
        (br#"{"Pod": {"metadata": {}}, "NodeNames": 7}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid type: integer `7`"),
        (br#"{"Pod": {"metadata": {}}}"#.to_vec(), StatusCode::BAD_REQUEST, "neither NodeNames nor Nodes"),
        (
            serde_json::to_vec(&serde_json::json!({"Pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "w", "resources": {"requests": {"tide.dev/batch-cpu": "two"}}}]}}, "NodeNames": ["node-a"]})).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid quantity \"two\"",
        ),
        (vec![b' '; 8192], StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded"),
    ];
    for (body, want, text) in cases {
        let (status, msg) = call(Method::POST, &url, body).await;
        assert_eq!(status, want, "{msg}");
        assert!(msg.contains(text), "{msg:?} should contain {text:?}");
    }
    let (status, _) = call(Method::GET, &url, Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(Method::POST, &format!("{}/preempt", s.base), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, metrics) = call(Method::GET, &format!("{}/metrics", s.base), Vec::new()).await;
    assert!(
        metrics
            .contains("tide_scheduler_requests_total{outcome=\"bad-request\",verb=\"filter\"} 5"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = Server::start("/extender", 1 << 20).await;
    let root = s.base.trim_end_matches("/extender").to_string();
    assert_eq!(
        call(Method::GET, &format!("{root}/healthz"), Vec::new())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(Method::GET, &format!("{root}/readyz"), Vec::new())
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Before the caches sync a BE pod is refused everywhere, an HP pod nowhere.
    let (_, r) = post(
        &format!("{}/filter", s.base),
        serde_json::json!({"Pod": be_pod(), "NodeNames": ["node-a"]}),
    )
    .await;
    assert_eq!(r["NodeNames"], serde_json::json!([]));
    let (_, r) = post(
        &format!("{}/filter", s.base),
        serde_json::json!({"Pod": hp_pod(), "NodeNames": ["node-a"]}),
    )
    .await;
    assert_eq!(r["NodeNames"], serde_json::json!(["node-a"]));
    s.state.publish(snapshot());
    assert_eq!(
        call(Method::GET, &format!("{root}/readyz"), Vec::new())
            .await
            .0,
        StatusCode::OK
    );
    post(
        &format!("{}/filter", s.base),
        serde_json::json!({"Pod": be_pod(), "NodeNames": ["node-a", "node-b"]}),
    )
    .await;
    let (status, m) = call(Method::GET, &format!("{root}/metrics"), Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        m.contains("tide_scheduler_request_duration_seconds_bucket{verb=\"filter\""),
        "{m}"
    );
    assert!(
        m.contains("tide_scheduler_node_refusals_total{reason=\"over-reclaimable\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tide_scheduler_node_refusals_total{reason=\"unknown-node\"} 1"),
        "{m}"
    );
    s.stop().await;
}
