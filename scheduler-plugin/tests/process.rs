//! The `tide-scheduler` binary as operators run it: against an API server (the fake), over
//! plain HTTP and over TLS, stopping cleanly on SIGTERM; and its refusal of bad start-up
//! input.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tide_testkit::FakeApi;
use tokio_rustls::rustls;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_tide-scheduler"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Sends SIGTERM and waits (up to 20 s) for a clean exit.
fn terminate(mut p: Proc) {
    let pid = p.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request over a fresh connection (optionally TLS), with a 10 s bound.
async fn call(
    port: u16,
    tls: Option<&rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let resp = match tls {
            None => {
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .ok()?;
                tokio::spawn(conn);
                send.send_request(req).await.ok()?
            }
            Some(cfg) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg.clone()));
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let stream = connector.connect(name, tcp).await.ok()?;
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .ok()?;
                tokio::spawn(conn);
                send.send_request(req).await.ok()?
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

async fn wait_ready(port: u16, tls: Option<&rustls::ClientConfig>) {
    for _ in 0..1000 {
        if let Some((200, _)) = call(port, tls, "GET", "/readyz", "").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tide-scheduler did not become ready within 20 s");
}

async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await.unwrap();
    fake.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                      "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}}),
    );
    fake
}

fn filter_body() -> String {
    json!({"Pod": {"metadata": {"name": "web", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}},
           "NodeNames": ["n1", "n2"]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_plain_http_from_the_api_server_and_stops_on_sigterm() {
    let fake = cluster().await;
    let port = free_port();
    let p = spawn(&[
        format!("--listen=127.0.0.1:{port}"),
        "--path-prefix=/extender".into(),
        format!("--api-server={}", fake.url()),
    ]);
    wait_ready(port, None).await;
    let (status, body) = call(port, None, "POST", "/extender/filter", &filter_body())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    // HP pod: n1 (from the watch) passes; n2 is unknown but HP is never refused for that.
    assert_eq!(out["NodeNames"], json!(["n1", "n2"]));
    // The watches really went to the API server.
    assert!(!fake.requests_to("GET", "/api/v1/nodes").is_empty());
    assert!(
        !fake
            .requests_to("GET", "/apis/tide.dev/v1alpha1/nodeestimates")
            .is_empty()
    );
    terminate(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("tide-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=tide-scheduler",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed by scripts/test.sh");
    assert!(ok.success());
    let fake = cluster().await;
    let port = free_port();
    let p = spawn(&[
        format!("--listen=127.0.0.1:{port}"),
        format!("--api-server={}", fake.url()),
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
    ]);
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    wait_ready(port, Some(&tls)).await;
    let (status, body) = call(port, Some(&tls), "POST", "/filter", &filter_body())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(call(port, None, "GET", "/healthz", "").await.is_none());
    terminate(p);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rustls client trusting `ca`, presenting `cert` (certificate and key files) if given.
fn tls_client(ca: &std::path::Path, cert: Option<&(PathBuf, PathBuf)>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match cert {
        None => builder.with_no_client_auth(),
        Some((crt, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(crt)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    }
}

/// Under mutual TLS the verbs need a client certificate of the configured CA, while the
/// kubelet's probes and Prometheus, which present none, still reach `/healthz`, `/readyz` and
/// `/metrics`; a certificate of another CA is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_guards_the_verbs_and_leaves_probes_and_metrics_open() {
    let dir = std::env::temp_dir().join(format!("tide-mtls-{}", std::process::id()));
    let pki = tide_testkit::k8s::Pki::new(&dir.join("ours")).unwrap();
    let other = tide_testkit::k8s::Pki::new(&dir.join("other")).unwrap();
    let (crt, key) = pki.server("tide-scheduler").unwrap();
    let scheduler = pki.client("kube-scheduler", "kube-scheduler", &[]).unwrap();
    let stranger = other.client("stranger", "stranger", &[]).unwrap();
    let fake = cluster().await;
    let port = free_port();
    let p = spawn(&[
        format!("--listen=127.0.0.1:{port}"),
        format!("--api-server={}", fake.url()),
        format!("--tls-cert={}", crt.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-client-ca={}", pki.ca().display()),
    ]);
    let anonymous = tls_client(&pki.ca(), None);
    let kube_scheduler = tls_client(&pki.ca(), Some(&scheduler));
    wait_ready(port, Some(&anonymous)).await;
    for path in ["/healthz", "/readyz"] {
        let (status, _) = call(port, Some(&anonymous), "GET", path, "").await.unwrap();
        assert_eq!(status, 200, "{path} without a client certificate");
    }
    for verb in ["/filter", "/prioritize", "/bind"] {
        let (status, body) = call(port, Some(&anonymous), "POST", verb, &filter_body())
            .await
            .unwrap();
        assert_eq!(status, 403, "{verb}: {body}");
        assert!(body.contains("client certificate"), "{body}");
    }
    let (status, body) = call(
        port,
        Some(&kube_scheduler),
        "POST",
        "/filter",
        &filter_body(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("NodeNames"), "{body}");
    // Prometheus, without a certificate, scrapes what that call counted.
    let (status, body) = call(port, Some(&anonymous), "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("tide_scheduler_"), "{body}");
    let refused = call(
        port,
        Some(&tls_client(&pki.ca(), Some(&stranger))),
        "GET",
        "/healthz",
        "",
    )
    .await;
    assert!(refused.is_none(), "another CA's certificate: {refused:?}");
    terminate(p);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_start_up_input_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("tide-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tide.yaml");
    std::fs::write(&cfg, "memory:\n  evictPercent: 97\n").unwrap();
    let run = |args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tide-scheduler"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Exit statuses (tide_api::exit): 3 for a bad file, 2 for a usage mistake.
    let (code, err) = run(&[format!("--config={}", cfg.display())]);
    assert_eq!(code, Some(3));
    assert!(err.contains("evictPercent"), "{err}");
    let (code, err) = run(&[
        "--tls-cert=/nonexistent/tls.crt".into(),
        "--tls-key=/nonexistent/tls.key".into(),
    ]);
    assert_eq!(code, Some(3));
    assert!(
        err.contains("TLS certificate /nonexistent/tls.crt"),
        "{err}"
    );
    let (code, err) = run(&["--tls-cert=/x".into()]);
    assert_eq!(code, Some(2), "clap usage error");
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = run(&["--tls-client-ca=/x".into()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
    // Plain HTTP off loopback is refused unless chosen explicitly, before any API access.
    let (code, err) = run(&["--listen=0.0.0.0:0".into()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--plain-http") && err.contains("--tls-cert"),
        "{err}"
    );
    let (code, err) = run(&[
        "--plain-http".into(),
        "--tls-cert=/x".into(),
        "--tls-key=/y".into(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    for (flag, value) in [
        ("--api-timeout-ms", "0"),
        ("--publish-interval-ms", "0"),
        ("--body-limit", "10"),
        ("--body-limit", "lots"),
        ("--listen", "nowhere"),
    ] {
        let (code, err) = run(&[format!("{flag}={value}")]);
        assert_eq!(code, Some(2), "{flag}={value}: {err}");
        assert!(err.contains(flag), "{flag}={value}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Logs are `tracing` events: text with a timestamp and level by default, one JSON object
/// per line with `--log-format json`; a bad `--log-level` is a usage error; `RUST_LOG`
/// overrides the level.
#[test]
fn logs_have_levels_timestamps_and_a_json_format() {
    let run = |args: &[&str], rust_log: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tide-scheduler"));
        cmd.args(args).env_remove("RUST_LOG");
        if let Some(v) = rust_log {
            cmd.env("RUST_LOG", v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--config=/nonexistent/tide.yaml"], None);
    assert_eq!(code, Some(3), "{err}");
    let line = err.lines().last().unwrap();
    assert!(
        line.contains("ERROR") && line.contains("/nonexistent/tide.yaml"),
        "{err}"
    );
    assert!(
        line.starts_with("20") && line.contains('T'),
        "an RFC 3339 timestamp: {line}"
    );

    let (code, err) = run(
        &["--log-format=json", "--config=/nonexistent/tide.yaml"],
        None,
    );
    assert_eq!(code, Some(3), "{err}");
    let event: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(event["level"], "ERROR", "{event}");
    assert_eq!(event["status"], 3, "{event}");
    assert!(event["timestamp"].is_string(), "{event}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/tide.yaml"),
        "{event}"
    );

    let (code, err) = run(&["--log-level=loud"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--log-level"), "{err}");
    // `off` silences even the fatal line; RUST_LOG wins over the flag.
    let (code, err) = run(&["--log-level=off", "--config=/nonexistent/x.yaml"], None);
    assert_eq!((code, err.trim()), (Some(3), ""));
    let (code, err) = run(
        &["--log-level=off", "--config=/nonexistent/x.yaml"],
        Some("error"),
    );
    assert_eq!(code, Some(3));
    assert!(err.contains("ERROR"), "{err}");
}

fn review(uid: &str, pod: &serde_json::Value) -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE", "object": pod}})
    .to_string()
}

/// The admission webhook on its own TLS listener, next to an extender on mutual TLS: the API
/// server's way of calling it (TLS, no client certificate) gets AdmissionReview answers with a
/// base64 JSONPatch; malformed and oversized reviews are 400/413; the webhook's port serves
/// nothing of the extender's and the extender's port not the webhook; SIGTERM stops both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_admission_webhook_on_its_own_tls_listener() {
    let dir = std::env::temp_dir().join(format!("tide-webhook-{}", std::process::id()));
    let pki = tide_testkit::k8s::Pki::new(&dir.join("extender")).unwrap();
    let webhook_pki = tide_testkit::k8s::Pki::new(&dir.join("webhook")).unwrap();
    let (crt, key) = pki.server("tide-scheduler").unwrap();
    let (wcrt, wkey) = webhook_pki.server("webhook").unwrap();
    let fake = cluster().await;
    let (port, wport) = (free_port(), free_port());
    let p = spawn(&[
        format!("--listen=127.0.0.1:{port}"),
        format!("--api-server={}", fake.url()),
        format!("--tls-cert={}", crt.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-client-ca={}", pki.ca().display()),
        format!("--webhook-listen=127.0.0.1:{wport}"),
        format!("--webhook-tls-cert={}", wcrt.display()),
        format!("--webhook-tls-key={}", wkey.display()),
    ]);
    let extender = tls_client(&pki.ca(), None);
    let api_server = tls_client(&webhook_pki.ca(), None);
    wait_ready(port, Some(&extender)).await;

    let be = json!({"metadata": {"name": "train", "labels": {"tide.dev/batch": "true"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]}});
    let (status, body) = call(
        wport,
        Some(&api_server),
        "POST",
        "/mutate-pods",
        &review("u-1", &be),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(out["response"]["uid"], "u-1");
    assert_eq!(out["response"]["allowed"], true);
    assert_eq!(out["response"]["patchType"], "JSONPatch");
    let patch: k8s_openapi::ByteString =
        serde_json::from_value(out["response"]["patch"].clone()).unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch.0).unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/containers/0/resources", "value": {
                "requests": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "1073741824"},
                "limits": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "1073741824"}}},
            {"op": "add", "path": "/metadata/labels/tide.dev~1qos", "value": "BE"}
        ])
    );

    // An HP pod: allowed, no patch.
    let hp = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c"}]}});
    let (status, body) = call(
        wport,
        Some(&api_server),
        "POST",
        "/mutate-pods",
        &review("u-2", &hp),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(out["response"], json!({"uid": "u-2", "allowed": true}));

    // Client mistakes: 400 with the decoder's message; a body past the limit: 413.
    for (bad, want) in [
        ("not json", "invalid AdmissionReview"),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "no request",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","kind":"Pod"},"resource":{"resource":"pods"},"operation":"CREATE"}}"#,
            "without request.object",
        ),
    ] {
        let (status, body) = call(wport, Some(&api_server), "POST", "/mutate-pods", bad)
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(want), "{bad}: {body}");
    }
    let huge = format!(
        "{{\"x\":\"{}\"}}",
        "a".repeat(tide_scheduler::webhook::BODY_LIMIT)
    );
    let (status, _) = call(wport, Some(&api_server), "POST", "/mutate-pods", &huge)
        .await
        .unwrap();
    assert_eq!(status, 413);

    // Each port serves its own: no verbs on the webhook's, no webhook on the extender's.
    let (status, _) = call(wport, Some(&api_server), "POST", "/filter", &filter_body())
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = call(
        port,
        Some(&extender),
        "POST",
        "/mutate-pods",
        &review("u-3", &be),
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "the extender's port under mutual TLS");
    // Counted by outcome.
    let (_, metrics) = call(port, Some(&extender), "GET", "/metrics", "")
        .await
        .unwrap();
    for outcome in ["mutated", "unchanged", "bad-request"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("tide_scheduler_requests_total")
                    && l.contains(r#"verb="mutate-pods""#)
                    && l.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome}: {metrics}"
        );
    }
    terminate(p);

    // The webhook's listener without its certificate is a usage mistake (exit status 2).
    let out = Command::new(env!("CARGO_BIN_EXE_tide-scheduler"))
        .args([
            "--webhook-listen=127.0.0.1:0",
            "--api-server=http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--webhook-tls-cert"));
    std::fs::remove_dir_all(&dir).unwrap();
}
