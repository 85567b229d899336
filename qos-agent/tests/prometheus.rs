//! A real Prometheus (the Debian package, installed by `scripts/test.sh`) scrapes the agent's
//! `/metrics` on loopback, and the test reads series back through Prometheus's HTTP API.
//! Prometheus is started by the test on a free loopback port with its own data directory, and
//! stopped by its PID at the end (bounded: 60 s).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::live_node;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(port: u16, path: &str) -> Option<String> {
    get_with_status(port, path).await.map(|(_, body)| body)
}

async fn get_with_status(port: u16, path: &str) -> Option<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Issue 18: an agent whose cgroup root is missing wrote nothing yet answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_when_the_cgroup_root_is_gone() {
    let (root, _dir, _fake, rt) = live_node("health").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = tide_agent::runtime::router(Arc::clone(&rt));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    assert_eq!(
        get_with_status(port, "/healthz").await,
        Some((200, "ok".to_owned()))
    );
    std::fs::remove_dir_all(root.join("cgroup")).unwrap();
    let (status, body) = get_with_status(port, "/healthz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cgroup root") && body.contains("cgroup"),
        "{body}"
    );
    server.abort();
}

/// Issue 18: readiness tells whether the agent can do its whole job — estimate published,
/// API server answering — separately from liveness (`/healthz` stays 200 without the API: the
/// agent still protects HP locally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_estimate_and_the_api_server() {
    let (_root, _dir, fake, rt) = live_node("ready").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = tide_agent::runtime::router(Arc::clone(&rt));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let (status, body) = get_with_status(port, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no estimate published yet"), "{body}");
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    rt.tick(now_ms).await;
    rt.tick(now_ms + 1_000).await;
    assert_eq!(
        get_with_status(port, "/readyz").await,
        Some((200, "ready".to_owned()))
    );
    fake.set_unavailable(true);
    rt.tick(now_ms + 2_000).await;
    let (status, body) = get_with_status(port, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("API server not reachable"), "{body}");
    assert_eq!(
        get_with_status(port, "/healthz").await,
        Some((200, "ok".to_owned()))
    );
    fake.set_unavailable(false);
    rt.tick(now_ms + 3_000).await;
    assert_eq!(
        get_with_status(port, "/readyz").await.map(|r| r.0),
        Some(200)
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_agent() {
    let (root, _dir, _fake, rt) = live_node("prom").await;
    rt.tick(1_800_000_000_000).await;
    rt.tick(1_800_000_001_000).await;

    // The agent's metrics server on a loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_port = listener.local_addr().unwrap().port();
    let app = tide_agent::runtime::router(Arc::clone(&rt));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    assert!(get(agent_port, "/healthz").await.is_some_and(|b| b == "ok"));

    let prom_port = free_port();
    let config = root.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tide-agent\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n"
        ),
    )
    .unwrap();
    let binary = ["/usr/bin/prometheus", "prometheus"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("prometheus is not installed (make test installs the Debian package)");
    let _prom = Prometheus(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Read a series back: the BE memory usage the agent measured (4 GiB).
    let query =
        "/api/v1/query?query=tide_agent_usage%7Bclass%3D%22be%22%2Cresource%3D%22memory%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(body) = get(prom_port, query).await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(sample) = v["data"]["result"].as_array().and_then(|r| r.first()) {
                assert_eq!(sample["metric"]["job"], "tide-agent");
                assert_eq!(sample["value"][1], "4294967296", "{body}");
                // And the scrape target is healthy.
                let targets = get(prom_port, "/api/v1/targets").await.unwrap();
                assert!(targets.contains("\"health\":\"up\""), "{targets}");
                server.abort();
                return;
            }
            last = Some(body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.abort();
    panic!("Prometheus did not return the series within 60 s; last answer: {last:?}");
}
