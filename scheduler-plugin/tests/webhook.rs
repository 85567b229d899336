//! The admission webhook on a real API server (v1.20.2 built by `scripts/build-k8s.sh`, or
//! `TIDE_K8S_BIN`): tide-scheduler, with a token of its shipped ServiceAccount, serves
//! `/mutate-pods` over TLS on loopback with a certificate of its own CA; the shipped
//! MutatingWebhookConfiguration (`deploy/components/webhook`) is registered with its
//! clientConfig pointed there and the CA as caBundle. The API server then calls it for real:
//! a BE pod as a user writes it is stored rewritten, an HP pod untouched, a pod the webhook
//! refuses is refused with its reason, and with the webhook down or hanging pods are still
//! created (failurePolicy Ignore), HP pods without the API server even calling it.

#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use tide_api::NodeEstimate;
use tide_testkit::k8s::{self, ControlPlane, Pki, Proc};

fn shipped_webhook() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/components/webhook/mutatingwebhookconfiguration.yaml");
    let docs = k8s::yaml_documents(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap()
}

struct Webhook {
    // Dropped first: tide-scheduler stops before the API server.
    extender: Option<Proc>,
    cp: ControlPlane,
    admin: kube::Client,
    port: u16,
    webhook_port: u16,
    args: Vec<String>,
    timeout: Duration,
}

impl Webhook {
    fn start_extender(&mut self) {
        let log = self.cp.path("tide-scheduler.log");
        let mut p = Proc::start(
            "tide-scheduler",
            Path::new(env!("CARGO_BIN_EXE_tide-scheduler")),
            &self.args,
            &log,
        )
        .unwrap();
        let addr = ([127, 0, 0, 1], self.port).into();
        k8s::wait_until(
            "tide-scheduler",
            Duration::from_secs(30),
            Some(&mut p),
            &log,
            || k8s::http_get_status(addr, "/readyz") == Some(200),
        )
        .unwrap();
        self.extender = Some(p);
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }

    /// Creates `pod` and returns the pod as stored, and how long the create took.
    async fn create(&self, pod: Value) -> (Value, Duration) {
        let p: Pod = serde_json::from_value(pod).unwrap();
        let started = Instant::now();
        let created = self.pods().create(&PostParams::default(), &p).await;
        let took = started.elapsed();
        let created = created.unwrap_or_else(|e| panic!("creating a pod: {e}"));
        (serde_json::to_value(created).unwrap(), took)
    }

    fn metrics(&self) -> String {
        k8s::http_get_body(([127, 0, 0, 1], self.port).into(), "/metrics").unwrap()
    }
}

/// A BE pod as a user writes it: plain cpu/memory requests and limits, only the opt-in label.
fn be_pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"tide.dev/batch": "true", "job": "train"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox",
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                          "limits": {"cpu": "1", "memory": "512Mi"}}}]}})
}

fn hp_pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx",
            "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]}})
}

async fn setup() -> Webhook {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(k8s::Options::default()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let admin = tide_kube::connect(Some(&cp.admin_kubeconfig))
        .await
        .unwrap();
    let shipped = cp
        .package_objects(&[
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
        ])
        .unwrap();
    k8s::apply_objects(&admin, &shipped).await.unwrap();
    for _ in 0..300 {
        let api: Api<NodeEstimate> = Api::all(admin.clone());
        if api.list(&ListParams::default()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The PriorityClass the configuration names; tide-scheduler reads it with its own role.
    k8s::apply_objects(
        &admin,
        &[
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "tide-batch"}, "value": 5500, "preemptionPolicy": "Never",
            "description": "BE pods rewritten by Tide's webhook"}),
        ],
    )
    .await
    .unwrap();
    let token = k8s::service_account_token(&admin, "tide-system", "tide-scheduler")
        .await
        .unwrap();
    let kubeconfig = cp.token_kubeconfig("tide-scheduler", &token).unwrap();
    // The webhook's own CA, not the cluster's: what the API server trusts is the caBundle.
    let pki = Pki::new(&cp.path("webhook-pki")).unwrap();
    let (crt, key) = pki.server("webhook").unwrap();
    let config: PathBuf = cp.path("tide-config.yaml");
    std::fs::write(
        &config,
        "webhook:\n  priorityClassName: tide-batch\n  schedulerName: tide-profile\n",
    )
    .unwrap();
    let (port, webhook_port) = (k8s::free_port(), k8s::free_port());
    let args = vec![
        format!("--listen=127.0.0.1:{port}"),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--config={}", config.display()),
        format!("--webhook-listen=127.0.0.1:{webhook_port}"),
        format!("--webhook-tls-cert={}", crt.display()),
        format!("--webhook-tls-key={}", key.display()),
    ];
    // The shipped configuration, called at the test's loopback address.
    let mut mwc = shipped_webhook();
    let hook = &mut mwc["webhooks"][0];
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap());
    let ca = std::fs::read(pki.ca()).unwrap();
    hook["clientConfig"] = json!({
        "url": format!("https://127.0.0.1:{webhook_port}{}", tide_scheduler::webhook::PATH),
        "caBundle": k8s_openapi::ByteString(ca),
    });
    let mut w = Webhook {
        extender: None,
        cp,
        admin,
        port,
        webhook_port,
        args,
        timeout,
    };
    w.start_extender();
    k8s::apply_objects(&w.admin, &[mwc]).await.unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rewrites_be_pods_through_the_webhook_and_never_waits_for_it_with_hp_pods() {
    let mut w = setup().await;

    // (a) A BE pod as a user writes it is stored rewritten. The configuration was registered
    // a moment ago: the API server's webhook informer may not have it yet, so retry with new
    // names until a pod comes back rewritten (at most 30 s), then check that one in full.
    let mut stored = Value::Null;
    for i in 0..300 {
        let (pod, _) = w.create(be_pod(&format!("train-{i}"))).await;
        if pod["metadata"]["labels"].get("tide.dev/qos").is_some() {
            eprintln!("first pod rewritten: attempt {}", i + 1);
            stored = pod;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!stored.is_null(), "no pod was rewritten within 30 s");
    let c = &stored["spec"]["containers"][0]["resources"];
    // Millicores and bytes, kept as written (a decimal integer stays one).
    assert_eq!(
        *c,
        json!({"requests": {"tide.dev/batch-cpu": "500", "tide.dev/batch-memory": "268435456"},
               "limits": {"tide.dev/batch-cpu": "500", "tide.dev/batch-memory": "268435456"}}),
        "{stored:#}"
    );
    assert_eq!(stored["metadata"]["labels"]["tide.dev/qos"], "BE");
    assert_eq!(stored["metadata"]["labels"]["job"], "train");
    assert_eq!(stored["spec"]["priorityClassName"], "tide-batch");
    assert_eq!(stored["spec"]["priority"], 5500);
    assert_eq!(stored["spec"]["preemptionPolicy"], "Never");
    assert_eq!(stored["spec"]["schedulerName"], "tide-profile");
    // Kubernetes' own view: no cpu/memory asked at all.
    assert_eq!(stored["status"]["qosClass"], "BestEffort");
    // Tide's view of the stored pod: BE, batch resources only.
    let pod: Pod = serde_json::from_value(stored.clone()).unwrap();
    let cfg = tide_api::TideConfig::default();
    let req = tide_api::pod_requests(&pod, &cfg.resources).unwrap();
    assert_eq!(
        (req.regular, req.batch),
        (
            tide_api::ResourceAmounts::ZERO,
            tide_api::ResourceAmounts::new(500, 256 << 20)
        )
    );

    // (b) An HP pod is stored as written.
    let (hp, _) = w.create(hp_pod("web-0")).await;
    assert_eq!(
        hp["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})
    );
    assert_eq!(hp["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(hp["spec"]["schedulerName"], "default-scheduler");
    assert!(hp["spec"].get("priorityClassName").is_none());
    assert_eq!(hp["status"]["qosClass"], "Burstable");

    // A pod opted in as BE but labelled HP is refused with the webhook's reason.
    let mut both = be_pod("confused");
    both["metadata"]["labels"]["tide.dev/qos"] = json!("LS");
    let p: Pod = serde_json::from_value(both).unwrap();
    let e = w
        .pods()
        .create(&PostParams::default(), &p)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tide.dev/qos: LS"), "{e}");

    let metrics = w.metrics();
    for outcome in ["mutated", "denied"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.contains(r#"verb="mutate-pods""#) && l.contains(outcome)),
            "{outcome}: {metrics}"
        );
    }

    // (c) tide-scheduler stopped: the port refuses connections. Both pods are created; the
    // BE pod as written (failurePolicy Ignore).
    if let Some(mut p) = w.extender.take() {
        p.stop();
    }
    let (hp, took_hp) = w.create(hp_pod("web-down")).await;
    assert_eq!(
        hp["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "2"
    );
    let (be, took_be) = w.create(be_pod("train-down")).await;
    assert_eq!(
        be["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "256Mi"})
    );
    assert!(be["metadata"]["labels"].get("tide.dev/qos").is_none());
    eprintln!("webhook down (refused): HP pod created in {took_hp:?}, BE pod in {took_be:?}");

    // Hanging: something holds the port and never answers (the TCP handshake completes in
    // the kernel's backlog, TLS never does). An HP pod is never sent to it (objectSelector):
    // no connection arrives. A BE pod waits timeoutSeconds, then is created as written.
    let hang = std::net::TcpListener::bind(("127.0.0.1", w.webhook_port)).unwrap();
    hang.set_nonblocking(true).unwrap();
    let (hp, took_hp) = w.create(hp_pod("web-hang")).await;
    assert_eq!(
        hp["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "2"
    );
    assert_eq!(
        hang.accept().err().map(|e| e.kind()),
        Some(ErrorKind::WouldBlock),
        "the API server called the webhook for an HP pod"
    );
    let (be, took_be) = w.create(be_pod("train-hang")).await;
    assert!(be["metadata"]["labels"].get("tide.dev/qos").is_none());
    assert!(
        hang.accept().is_ok(),
        "the API server did not call the webhook for the BE pod"
    );
    assert!(
        took_be >= w.timeout.saturating_sub(Duration::from_millis(500))
            && took_be < w.timeout + Duration::from_secs(10),
        "BE pod creation took {took_be:?} with the webhook hanging (timeoutSeconds {:?})",
        w.timeout
    );
    eprintln!("webhook hanging: HP pod created in {took_hp:?}, BE pod in {took_be:?}");
    drop(hang);

    // Back up: BE pods are rewritten again.
    w.start_extender();
    let (be, _) = w.create(be_pod("train-back")).await;
    assert_eq!(be["metadata"]["labels"]["tide.dev/qos"], "BE");
}
