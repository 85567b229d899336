//! Tide installed from its package onto a real control plane and a real node, running its own
//! images — what an operator of a managed cluster does (docs/install.md), end to end:
//!
//! 1. Images: `scripts/build-images.sh` (tide-scheduler, tide-agent, and the locally built
//!    kube-scheduler packed as the second scheduler's image), imported into the node's
//!    containerd. `TIDE_IMAGES` names a directory that already holds them (`make test` builds
//!    them first); otherwise the test builds them.
//! 2. The package: `deploy/overlays/kube-1.20` (the server is v1.20.2) with the `webhook` and
//!    `second-scheduler` components, and an overlay of the kind docs/install.md tells an
//!    operator to write: the kube-scheduler image, its configuration rendered for 1.20
//!    (`render-scheduler-config --kube-minor 20 --second-scheduler`), the webhook's Secret and
//!    CA, and a configuration layer (history needed before reclaiming: 20 s instead of 1 h).
//!    Node-specific flags (the kubelet's cgroup driver and root) are set on the rendered
//!    DaemonSet, as the overlay of an operator with such kubelets would.
//! 3. What this harness provides instead of a cluster network: the default scheduler is a
//!    kube-scheduler process with no extender (a managed control plane's), the `kubernetes`
//!    Service's address reaches the API server through the node harness's relay in the node's
//!    network namespace (kube-proxy's part), and the API server reaches the webhook through a
//!    relay on the host's loopback (the MutatingWebhookConfiguration's `clientConfig.url` points at
//!    it instead of the Service).
//! 4. A BE Job written as a user would (plain cpu/memory requests, only the opt-in label) is
//!    rewritten by the webhook, scheduled by the Tide profile (its kube-scheduler calling the
//!    extender sidecar) onto the reclaimable capacity the agent advertises, and runs to
//!    completion; an HP pod is left untouched and scheduled by the default scheduler.
//! 5. Uninstall, in docs/install.md's order (the agents, then everything else): the Node
//!    advertises no batch resources, the BE cgroup's cpuset is the node's again, and the
//!    host's kernel settings are unchanged (checked by the node's shutdown).

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use tide_testkit::k8s::{self, ControlPlane, relative_path as relative, wait_for};
use tide_testkit::kubelet::{self, BURNER_IMAGE, NodeOptions, RealNode};
use tide_testkit::netns::{Forward, Target};

const NS: &str = "tide-system";
const NODE: &str = "tide-node";
const SCHEDULER_NAME: &str = "tide-scheduler";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Why this test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if !kubelet::v1_hierarchies().is_ok_and(|m| m.contains_key("memory") && m.contains_key("pids"))
    {
        return Some("the real-node harness needs cgroup v1 (memory and pids controllers)".into());
    }
    if std::env::var_os("TIDE_IMAGES").is_none() && !Path::new("/usr/bin/buildah").is_file() {
        return Some(
            "no TIDE_IMAGES and no buildah to build the images (apt-get install buildah)".into(),
        );
    }
    None
}

/// The image archives: name → path, from `images.tsv` in `TIDE_IMAGES` (or a directory this
/// test fills with `scripts/build-images.sh`).
fn images(cp: &ControlPlane) -> Vec<(String, String, PathBuf)> {
    let dir = match std::env::var_os("TIDE_IMAGES") {
        Some(d) => PathBuf::from(d),
        None => {
            let dir = workspace().join("target/images");
            let ks = cp.bins.dir.join("kube-scheduler");
            let out = std::process::Command::new("bash")
                .arg(workspace().join("scripts/build-images.sh"))
                .args(["--out", &dir.display().to_string()])
                .args(["--kube-scheduler", &ks.display().to_string()])
                .current_dir(workspace())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "scripts/build-images.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir
        }
    };
    let tsv = std::fs::read_to_string(dir.join("images.tsv"))
        .unwrap_or_else(|e| panic!("{}/images.tsv: {e}", dir.display()));
    let rows: Vec<(String, String, PathBuf)> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4 && f[1] != "-").then(|| (f[0].into(), f[1].into(), PathBuf::from(f[2])))
        })
        .collect();
    for want in ["tide-scheduler", "tide-agent", "kube-scheduler"] {
        assert!(
            rows.iter().any(|(n, _, _)| n == want),
            "{}/images.tsv has no {want} image (scripts/build-images.sh --kube-scheduler …)",
            dir.display()
        );
    }
    rows
}

/// The default scheduler of this "managed" control plane: kube-scheduler with no extender.
fn start_default_scheduler(cp: &mut ControlPlane) {
    let slots = cp.scheduler_slots().unwrap();
    let mut cfg = json!({
        "apiVersion": tide_scheduler::wiring::api_version(slots.minor),
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": slots.kubeconfig},
        "leaderElection": {"leaderElect": false},
    });
    if slots.minor <= 22 {
        cfg["healthzBindAddress"] = slots.healthz.to_string().into();
        cfg["metricsBindAddress"] = slots.metrics.to_string().into();
    }
    cp.start_scheduler(&cfg.to_string()).unwrap();
}

/// Writes the operator's overlay (see the module documentation) and renders it.
fn render_install(cp: &ControlPlane, webhook_port: u16, ks_image: &str) -> Vec<Value> {
    let dir = cp.path("e2e-overlay");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let deploy = workspace().join("deploy");
    // The second scheduler's configuration for this server's version.
    let ks_cfg = tide_scheduler::wiring::render(
        tide_scheduler::wiring::SHIPPED,
        &tide_scheduler::wiring::Render {
            minor: cp.minor,
            second: Some(tide_scheduler::wiring::SecondScheduler::default()),
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::write(dir.join("kube-scheduler-config.yaml"), ks_cfg).unwrap();
    // A configuration layer: reclaim after 20 s of history. The control plane, the test and
    // whatever else runs on these two shared cores count as the node's system CPU, which the
    // agent predicts as HP use: CPU levels at 100% (as in the real-node tests), no reserve on
    // top, and a 5% violation target, so that a node that is mostly idle sells CPU within
    // minutes even after a busy start.
    std::fs::write(
        dir.join("tide-config-e2e.yaml"),
        "estimator:\n  minHistory: 20s\n  targetViolationRate: 0.05\nreserve:\n  cpu: 0\ncpu:\n  suppressPercent: 100\n  evictPercent: 100\n",
    )
    .unwrap();
    // The webhook's serving certificate (for the relay's address) and its Secret.
    let (crt, key) = cp
        .pki
        .server_for(
            "tide-webhook",
            &["DNS:tide-scheduler.tide-system.svc", "IP:127.0.0.1"],
        )
        .unwrap();
    std::fs::copy(&crt, dir.join("tls.crt")).unwrap();
    std::fs::copy(&key, dir.join("tls.key")).unwrap();
    // caBundle is base64, as k8s-openapi serialises bytes.
    let ca =
        serde_json::to_value(k8s_openapi::ByteString(std::fs::read(cp.pki.ca()).unwrap())).unwrap();
    let ca = ca.as_str().unwrap();
    let (ks_name, ks_tag) = ks_image.rsplit_once(':').unwrap();
    // The package for this server with both components (kustomize merges an overlay's
    // generators into its resources, before its components: hence a level of its own).
    let package = cp.path("e2e-package");
    std::fs::create_dir_all(&package).unwrap();
    let package = package.canonicalize().unwrap();
    std::fs::write(
        package.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n  - {}\n",
            relative(&package, &cp.package_dir().canonicalize().unwrap()),
            relative(&package, &deploy.join("components/webhook")),
            relative(&package, &deploy.join("components/second-scheduler")),
        ),
    )
    .unwrap();
    let kustomization = format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {package}
images:
  - name: registry.k8s.io/kube-scheduler
    newName: {ks_name}
    newTag: {ks_tag}
configMapGenerator:
  - name: tide-kube-scheduler-config
    namespace: tide-system
    behavior: replace
    files:
      - kube-scheduler-config.yaml
  - name: tide-config
    namespace: tide-system
    behavior: merge
    files:
      - tide-config-e2e.yaml
secretGenerator:
  - name: tide-scheduler-webhook-tls
    namespace: tide-system
    type: kubernetes.io/tls
    options:
      disableNameSuffixHash: true
    files:
      - tls.crt
      - tls.key
patches:
  - target:
      kind: MutatingWebhookConfiguration
      name: tide-be-pods
    patch: |-
      - op: replace
        path: /webhooks/0/clientConfig
        value:
          url: https://127.0.0.1:{webhook_port}/mutate-pods
          caBundle: {ca}
  - target:
      group: apps
      kind: Deployment
      name: tide-scheduler
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --config=/etc/tide/tide-config-e2e.yaml{old_probe}
"#,
        package = relative(&dir, &package),
        // kube-scheduler ≤ 1.22 serves /healthz on its plain port 10251 (the secure port
        // answers 404 there); the component probes 10259 over HTTPS, as 1.23+ needs.
        old_probe = if cp.minor <= 22 {
            "\n      - op: replace\n        path: /spec/template/spec/containers/1/livenessProbe\n        value: {httpGet: {path: /healthz, port: 10251, scheme: HTTP}, periodSeconds: 10}"
        } else {
            ""
        },
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
    k8s::kustomize_build(&dir).unwrap()
}

/// The DaemonSet's flags for this node's kubelet (cgroupfs, its cgroup root, two CPUs), and
/// the configuration layer.
fn adapt_agent(objects: &mut [Value], node: &RealNode) {
    let ds = objects
        .iter_mut()
        .find(|o| o["kind"] == "DaemonSet")
        .unwrap();
    let c = &mut ds["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"].as_array_mut().unwrap();
    for a in args.iter_mut() {
        let s = a.as_str().unwrap();
        let (flag, _) = s.split_once('=').unwrap_or((s, ""));
        match flag {
            "--cgroup-driver" => *a = "--cgroup-driver=cgroupfs".into(),
            "--cgroup-root" => *a = format!("--cgroup-root=/{}", node.cgroup_root).into(),
            // Two logical CPUs here: none kept for the system, so BE's cpuset can shrink.
            "--system-cpus" => *a = "--system-cpus=0".into(),
            _ => {}
        }
    }
    args.push("--config=/etc/tide/tide-config-e2e.yaml".into());
    // This sandbox lacks CAP_SYS_RESOURCE (bounding set), and runc refuses to grant a
    // capability it does not have ("unable to apply caps"). In this test node only: the agent
    // then cannot lower an oom_score_adj, which it reports once per process and goes on.
    let add = c["securityContext"]["capabilities"]["add"]
        .as_array_mut()
        .unwrap();
    let before = add.len();
    add.retain(|cap| cap != "SYS_RESOURCE");
    assert_eq!(add.len() + 1, before, "the DaemonSet adds SYS_RESOURCE");
}

fn pod_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn ready_pods(admin: &kube::Client, name: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={name}"));
    pods.list(&lp)
        .await
        .map(|l| l.items.into_iter().filter(pod_ready).collect())
        .unwrap_or_default()
}

fn batch_cpu(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .allocatable
        .as_ref()?
        .get("tide.dev/batch-cpu")
        .map(|q| q.0.clone())
}

/// `GET /metrics` of a pod's port, through a relay into the node's namespace.
fn pod_metrics(netns: &Path, addr: SocketAddr) -> String {
    let fwd = Forward::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Target::InNetns(netns.to_path_buf(), addr),
    )
    .unwrap();
    k8s::http_get_body(fwd.local_addr(), "/metrics").unwrap_or_else(|e| panic!("{addr}: {e}"))
}

fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tide_installs_from_its_package_and_images_and_a_users_be_job_runs_on_reclaimed_capacity() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t0 = Instant::now();
    let mut cp = tokio::task::spawn_blocking(|| ControlPlane::start(k8s::Options::default()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    if let Some(why) = kubelet::unavailable(&cp) {
        eprintln!("skipped: {why}");
        return;
    }
    let admin = tide_kube::connect(Some(&cp.admin_kubeconfig))
        .await
        .unwrap();
    let (cp, images) = tokio::task::spawn_blocking(move || {
        let images = images(&cp);
        start_default_scheduler(&mut cp);
        (cp, images)
    })
    .await
    .unwrap();
    let (cp, node) = tokio::task::spawn_blocking(move || {
        let node = RealNode::start(&cp, &NodeOptions::default());
        (cp, node)
    })
    .await
    .unwrap();
    let node = node.unwrap_or_else(|e| panic!("real node: {e}"));
    let t_node = t0.elapsed();
    for (name, reference, archive) in &images {
        node.import_archive(archive)
            .unwrap_or_else(|e| panic!("importing {name} ({reference}): {e}"));
    }
    let listed = node.ctr(&["images", "ls", "-q"]).unwrap();
    for (_, reference, _) in &images {
        assert!(
            listed.contains(reference.as_str()),
            "{reference} not in containerd: {listed}"
        );
    }
    let netns = node.netns().unwrap();
    // The API server's way to the webhook: bound now (its port goes into the package), relayed
    // once a tide-scheduler pod has an address.
    let webhook_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let webhook_port = webhook_listener.local_addr().unwrap().port();
    let ks_image = images
        .iter()
        .find(|(n, _, _)| n == "kube-scheduler")
        .map(|(_, r, _)| r.clone())
        .unwrap();

    // Install.
    let mut objects = render_install(&cp, webhook_port, &ks_image);
    adapt_agent(&mut objects, &node);
    let t_apply = Instant::now();
    k8s::apply_objects(&admin, &objects)
        .await
        .unwrap_or_else(|e| panic!("the API server rejected the install: {e}"));
    let nodes: Api<Node> = Api::all(admin.clone());
    wait_for(
        "tide-agent's pod Ready and tide-scheduler's two pods Ready (both containers)",
        Duration::from_secs(180),
        || async {
            ready_pods(&admin, "tide-agent").await.len() == 1
                && ready_pods(&admin, "tide-scheduler").await.len() == 2
        },
    )
    .await;
    let t_ready = t_apply.elapsed();
    let scheduler_pods = ready_pods(&admin, "tide-scheduler").await;
    for p in &scheduler_pods {
        let images: Vec<String> = p
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .filter_map(|c| c.image.clone())
            .collect();
        assert_eq!(
            images,
            ["tide/tide-scheduler:0.1.0".to_string(), ks_image.clone()],
            "the extender and the second scheduler run the built images"
        );
    }
    let pod_ip: std::net::IpAddr = scheduler_pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap()
        .parse()
        .unwrap();
    let _webhook_relay = Forward::start(
        webhook_listener,
        Target::InNetns(netns.clone(), SocketAddr::new(pod_ip, 8443)),
    )
    .unwrap();

    // The agent publishes reclaimable capacity once it has 20 s of history (and its
    // prediction of the node's HP use, which includes this machine's other processes, leaves
    // room): the estimate's progress is printed as it changes.
    let estimates: Api<tide_api::NodeEstimate> = Api::all(admin.clone());
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let cpu = nodes.get(NODE).await.ok().and_then(|n| batch_cpu(&n));
        let est = estimates
            .get(NODE)
            .await
            .ok()
            .and_then(|e| e.status)
            .map(|s| serde_json::to_string(&(s.cpu, s.confidence)).unwrap_or_default())
            .unwrap_or_default();
        let now = format!("batch-cpu {cpu:?}; estimate {est}");
        if now != last {
            eprintln!("{:>6.1} s {now}", t_apply.elapsed().as_secs_f64());
            last = now;
        }
        if cpu
            .and_then(|q| q.parse::<f64>().ok())
            .is_some_and(|v| v >= 100.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for tide.dev/batch-cpu advertised on the Node"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let t_reclaim = t_apply.elapsed();

    // A user's BE Job: ordinary requests and the opt-in label, nothing else of Tide's.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(admin.clone(), "default");
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "be-job"},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"tide.dev/batch": "true", "app": "be-job"}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "work", "image": BURNER_IMAGE,
                "args": ["run", "--cpu", "100", "--mem", "16", "--secs", "3"],
                "resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "64Mi"}}}]}}}
    });
    let t_job = Instant::now();
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job).unwrap(),
    )
    .await
    .unwrap();
    // And an HP pod, which Tide must leave alone.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let hp = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hp", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": BURNER_IMAGE, "args": ["run", "--cpu", "50"],
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}}]}
    });
    pods.create(&PostParams::default(), &serde_json::from_value(hp).unwrap())
        .await
        .unwrap();

    let lp = ListParams::default().labels("app=be-job");
    wait_for(
        "the BE Job's pod to succeed",
        Duration::from_secs(120),
        || async {
            pods.list(&lp).await.is_ok_and(|l| {
                l.items.iter().any(|p| {
                    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
                })
            })
        },
    )
    .await;
    let t_job = t_job.elapsed();
    let be = pods.list(&lp).await.unwrap().items.remove(0);
    let spec = be.spec.clone().unwrap();
    assert_eq!(spec.scheduler_name.as_deref(), Some(SCHEDULER_NAME));
    assert_eq!(spec.node_name.as_deref(), Some(NODE));
    let res = spec.containers[0].resources.clone().unwrap();
    let requests = res.requests.unwrap();
    assert!(
        requests.contains_key("tide.dev/batch-cpu") && !requests.contains_key("cpu"),
        "the webhook moved the requests: {requests:?}"
    );
    assert_eq!(
        be.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("tide.dev/qos")
            .map(String::as_str),
        Some("BE")
    );
    // Scheduled by the Tide profile (the event's source), through the extender sidecar.
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let be_name = be.metadata.name.clone().unwrap();
    let scheduled_by = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Scheduled")
                && e.involved_object.name.as_deref() == Some(&be_name)
        })
        .filter_map(|e| e.source.and_then(|s| s.component).or(e.reporting_component))
        .collect::<Vec<_>>();
    assert_eq!(scheduled_by, [SCHEDULER_NAME], "who scheduled {be_name}");
    let calls: f64 = scheduler_pods
        .iter()
        .map(|p| {
            let ip: std::net::IpAddr = p
                .status
                .as_ref()
                .unwrap()
                .pod_ip
                .as_deref()
                .unwrap()
                .parse()
                .unwrap();
            let m = pod_metrics(&netns, SocketAddr::new(ip, 8888));
            counter(&m, "tide_scheduler_requests_total", &["verb=\"filter\""])
        })
        .sum();
    assert!(
        calls >= 1.0,
        "the second scheduler called its extender sidecar"
    );

    let hp = pods.get("hp").await.unwrap();
    let hp_spec = hp.spec.unwrap();
    assert_eq!(hp_spec.scheduler_name.as_deref(), Some("default-scheduler"));
    let hp_req = hp_spec.containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert!(hp_req.contains_key("cpu") && !hp_req.contains_key("tide.dev/batch-cpu"));
    assert!(!hp.metadata.labels.unwrap().contains_key("tide.dev/qos"));

    // Uninstall as docs/install.md says: the agents first (they withdraw the batch resources
    // and restore cgroups when stopped, which needs their RBAC), then every other object.
    let t_uninstall = Instant::now();
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    k8s::delete_object(&admin, ds).await.unwrap();
    let ns_pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let agent_lp = ListParams::default().labels("app.kubernetes.io/name=tide-agent");
    wait_for(
        "tide-agent's pod gone",
        Duration::from_secs(120),
        || async {
            ns_pods
                .list(&agent_lp)
                .await
                .is_ok_and(|l| l.items.is_empty())
        },
    )
    .await;
    for o in objects.iter().rev().filter(|o| o["kind"] != "DaemonSet") {
        k8s::delete_object(&admin, o).await.unwrap();
    }
    wait_for(
        "every pod of tide-system gone",
        Duration::from_secs(120),
        || async {
            ns_pods
                .list(&ListParams::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
        },
    )
    .await;
    let n = nodes.get(NODE).await.unwrap();
    assert_eq!(
        batch_cpu(&n),
        None,
        "batch resources withdrawn from the Node"
    );
    let root = std::fs::read_to_string(node.cgroup_path("cpuset", "kubepods/cpuset.cpus").unwrap())
        .unwrap();
    let be_cpus = std::fs::read_to_string(
        node.cgroup_path("cpuset", "kubepods/besteffort/cpuset.cpus")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(be_cpus.trim(), root.trim(), "BE cpuset restored");
    let t_uninstall = t_uninstall.elapsed();
    eprintln!(
        "e2e: node up {:.1} s; install to pods Ready {:.1} s; to batch-cpu advertised {:.1} s; \
         BE Job created to Succeeded {:.1} s; uninstall {:.1} s; total {:.1} s",
        t_node.as_secs_f64(),
        t_ready.as_secs_f64(),
        t_reclaim.as_secs_f64(),
        t_job.as_secs_f64(),
        t_uninstall.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    drop(_webhook_relay);
    tokio::task::spawn_blocking(move || node.shutdown())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("node shutdown: {e}"));
    drop(cp);
}
