//! Load and memory runs for the extender, on loopback (`make load`).
//!
//! - `throughput`: an in-process extender holding a 5,000-node snapshot; `--connections`
//!   keep-alive clients run filter+prioritize cycles for `--seconds` with kube-scheduler's
//!   request shape (`nodeCacheCapable: true`, every node name). Prints cycles per second and
//!   client-side latency percentiles per verb. Client and server share the machine's cores.
//! - `memory`: the fake API server holds `--nodes` nodes (each with a NodeEstimate) and
//!   `--pods` pods; the real `tide-scheduler` binary is started against it, and its resident
//!   memory (VmRSS, VmHWM from /proc) is read once it is ready and the cache is complete.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tide_api::{ResourceAmounts, TideConfig};
use tide_benches::{Seq, arg};
use tide_scheduler::server::{ExtenderState, router};
use tide_scheduler::{ClusterSnapshot, EstimateView, NodeView, serve};
use tide_testkit::FakeApi;

fn snapshot(n: usize, now: u64) -> ClusterSnapshot {
    let mut seq = Seq::new(7);
    let mut snap = ClusterSnapshot::default();
    for i in 0..n {
        let hp = 0.3 + 0.4 * seq.next_f64();
        let alloc = ResourceAmounts::new(64_000, 256 << 30);
        let hp_amt =
            ResourceAmounts::new((64_000.0 * hp) as u64, ((256u64 << 30) as f64 * hp) as u64);
        snap.nodes.insert(
            format!("node-{i:05}"),
            NodeView {
                allocatable: alloc,
                estimate: Some(EstimateView {
                    observed_at: now,
                    reclaimable: alloc.saturating_sub(hp_amt),
                    hp_reserved: hp_amt,
                }),
                be_requested: ResourceAmounts::new((8_000.0 * seq.next_f64()) as u64, 16 << 30),
                hp_requested: hp_amt,
            },
        );
    }
    snap
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn post(send: &mut Sender, path: &str, body: Bytes) -> Bytes {
    let req = Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes()
}

async fn post_len(addr: std::net::SocketAddr, body: &Bytes) -> usize {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    post(&mut send, "/filter", body.clone()).await.len()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn throughput() {
    let nodes: usize = arg("--nodes", 5_000);
    let conns: usize = arg("--connections", 4);
    let seconds: u64 = arg("--seconds", 10);
    let now = 1_000_000;
    let mut state = ExtenderState::new(TideConfig::default()).unwrap();
    state.clock = Box::new(move || now);
    let state = Arc::new(state);
    state.publish(snapshot(nodes, now));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Arc::clone(&state), "", 128 << 20);
    tokio::spawn(serve::serve(listener, app, None, std::future::pending()));

    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    let pod = json!({"metadata": {"name": "job", "namespace": "batch", "labels": {"tide.dev/qos": "BE"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"}}}]}});
    let filter_body = Bytes::from(json!({"Pod": pod, "NodeNames": names}).to_string());
    println!(
        "extender-load throughput: {nodes} nodes, {conns} connections, {seconds} s, filter body {} KiB",
        filter_body.len() / 1024
    );
    // The scheduler sends prioritize the nodes filter passed; with a fixed snapshot that set is
    // fixed, so the client encodes it once and only checks each answer's size.
    let prioritize_body = {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let out = post(&mut send, "/filter", filter_body.clone()).await;
        let passed: Value = serde_json::from_slice(&out).unwrap();
        println!(
            "filter passes {} of {nodes} nodes",
            passed["NodeNames"].as_array().map_or(0, Vec::len)
        );
        Bytes::from(json!({"Pod": pod, "NodeNames": passed["NodeNames"]}).to_string())
    };
    let filter_len = post_len(addr, &filter_body).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let filter_body = filter_body.clone();
        let prioritize_body = prioritize_body.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let (mut f_lat, mut p_lat) = (Vec::new(), Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                let out = post(&mut send, "/filter", filter_body.clone()).await;
                f_lat.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(out.len(), filter_len, "the answer changed");
                let t = Instant::now();
                post(&mut send, "/prioritize", prioritize_body.clone()).await;
                p_lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            (f_lat, p_lat)
        }));
    }
    let (mut f, mut p) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, b) = t.await.unwrap();
        f.extend(a);
        p.extend(b);
    }
    let elapsed = started.elapsed().as_secs_f64();
    f.sort_by(f64::total_cmp);
    p.sort_by(f64::total_cmp);
    println!(
        "cycles: {} in {elapsed:.1} s = {:.0} filter+prioritize cycles/s",
        p.len(),
        p.len() as f64 / elapsed
    );
    for verb in ["filter", "prioritize"] {
        use prometheus::core::Metric;
        let m = state.metrics.duration.with_label_values(&[verb]).metric();
        let h = m.get_histogram();
        let total = h.get_sample_count().max(1);
        let within = |ms: f64| {
            h.get_bucket()
                .iter()
                .find(|b| (b.upper_bound() - ms / 1e3).abs() < 1e-12)
                .map_or(0, prometheus::proto::Bucket::cumulative_count)
        };
        println!(
            "{verb:>10}: server side {:.2}% of {total} requests within 0.5 ms, {:.2}% within 1 ms (mean {:.3} ms)",
            100.0 * within(0.5) as f64 / total as f64,
            100.0 * within(1.0) as f64 / total as f64,
            h.get_sample_sum() * 1e3 / total as f64
        );
    }
    for (verb, lat) in [("filter", &f), ("prioritize", &p)] {
        println!(
            "{verb:>10}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (client side, incl. HTTP)",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
}

fn pod(i: usize, nodes: usize, seq: &mut Seq) -> Value {
    let node = format!("node-{:05}", i % nodes);
    let be = seq.next_f64() < 0.3;
    let app = format!("app-{}", i / 20);
    let resources = if be {
        json!({"requests": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"},
               "limits": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"}})
    } else {
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
    };
    let mut labels = json!({"app": app, "pod-template-hash": "5d8f7c9b4"});
    if be {
        labels["tide.dev/qos"] = json!("BE");
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-{i}"), "namespace": format!("ns-{}", i % 50), "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d8f7c9b4"),
                                          "uid": "6f1c2d3e-0000-4000-8000-000000000000", "controller": true}]},
        "spec": {"nodeName": node, "priority": if be { 0 } else { 10_000 }, "serviceAccountName": "default",
                 "containers": [{"name": "main", "image": format!("registry.example/{app}:1.2.3"),
                                 "env": [{"name": "MODE", "value": "production"}, {"name": "LOG_LEVEL", "value": "info"}],
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                 "resources": resources}]},
        "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| tide_coldmem::kernel_text::kib_field_bytes(&s, field))
        .unwrap_or(0)
        / 1024
}

async fn memory() {
    let nodes: usize = arg("--nodes", 5_000);
    let pods: usize = arg("--pods", 150_000);
    let fake = FakeApi::start().await.unwrap();
    let mut seq = Seq::new(11);
    let ts = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    for i in 0..nodes {
        let name = format!("node-{i:05}");
        fake.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                          "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                                     "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"}}}));
        fake.apply(json!({"apiVersion": "tide.dev/v1alpha1", "kind": "NodeEstimate", "metadata": {"name": name},
            "spec": {"nodeName": name},
            "status": {"observedTime": ts, "horizonSeconds": 3600,
                "cpu": {"allocatable": 64000, "predictedPeak": 30000, "margin": 2000, "systemReserve": 2000, "reclaimable": 30000, "hpUsage": 25000, "beUsage": 5000},
                "memory": {"allocatable": 274_877_906_944_u64, "predictedPeak": 137_438_953_472_u64, "margin": 4_294_967_296_u64, "systemReserve": 4_294_967_296_u64, "reclaimable": 128_849_018_880_u64, "hpUsage": 120_000_000_000_u64, "beUsage": 20_000_000_000_u64},
                "confidence": {"historySeconds": 86400, "recentViolationRate": 0.0}}}));
    }
    for i in 0..pods {
        fake.apply(pod(i, nodes, &mut seq));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("tide-scheduler");
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args([
            format!("--listen=127.0.0.1:{port}"),
            format!("--api-server={}", fake.url()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it first: cargo build --release -p tide-scheduler)",
                exe.display()
            )
        });
    let pid = child.id();
    let mut ready = None;
    for _ in 0..6000 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
            && let Ok((mut send, conn)) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await
        {
            tokio::spawn(conn);
            let req = Request::get("/readyz")
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap();
            if send
                .send_request(req)
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                ready = Some(started.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("tide-scheduler did not become ready within 5 minutes");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = (proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM"));
    println!("extender-load memory: {nodes} nodes + {nodes} NodeEstimates + {pods} pods cached");
    println!(
        "ready (all three watches listed) after {:.1} s",
        ready.as_secs_f64()
    );
    println!(
        "tide-scheduler resident memory: {:.0} MiB (peak {:.0} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("memory") => memory().await,
        Some("throughput") | None => throughput().await,
        Some(other) => {
            eprintln!(
                "usage: extender-load [throughput|memory] [--nodes N] [--pods N] [--connections N] [--seconds N]; got {other:?}"
            );
            std::process::exit(2);
        }
    }
}
