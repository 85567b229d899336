//! The install package on a real API server (v1.20.2 built from Debian's source by
//! `scripts/build-k8s.sh`, or `TIDE_K8S_BIN`): what `kubectl apply --server-side -k
//! deploy/overlays/<name>` does, checked object by object.
//!
//! - The package for the server's version (`deploy/overlays/kube-1.20` on 1.20, `deploy/base`
//!   from 1.21), rendered by kustomize, server-side applied whole; every object is served back
//!   with the API version it was written in, the generated configuration is a valid
//!   `TideConfig`, and the controllers admit the workloads' pods (a Node is created, so the
//!   DaemonSet makes one; the Deployment's ReplicaSet makes two).
//! - Every component at once (kube-1.20 where needed, mtls, monitoring, webhook) applied over it.
//! - An upgrade: a changed configuration re-applied rolls both workloads onto the new
//!   ConfigMap (its name carries a hash of the content).
//! - Uninstall: every object deleted, every one gone.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use tide_testkit::k8s::{self, ControlPlane, relative_path as relative, wait_for};

const NS: &str = "tide-system";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .canonicalize()
        .unwrap()
}

fn id(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["apiVersion"].as_str().unwrap_or_default(),
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The name of the rendered ConfigMap `tide-config-<hash>`.
fn config_map_name(objects: &[Value]) -> String {
    let names: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("tide-config-"))
        .collect();
    assert_eq!(
        names.len(),
        1,
        "one generated tide-config ConfigMap: {names:?}"
    );
    names[0].to_owned()
}

/// Applies `objects` server-side and reads each back: served, with the API version and name
/// it was written with, in the right namespace, and with the same `data` for ConfigMaps.
async fn apply_and_read_back(admin: &kube::Client, objects: &[Value]) {
    let applied = k8s::apply_objects(admin, objects)
        .await
        .unwrap_or_else(|e| panic!("the API server rejected the package: {e}"));
    assert_eq!(applied.len(), objects.len());
    for o in objects {
        let served = k8s::get_object(admin, o).await.unwrap();
        assert_eq!(served["apiVersion"], o["apiVersion"], "{}", id(o));
        assert_eq!(served["kind"], o["kind"], "{}", id(o));
        assert_eq!(
            served["metadata"]["name"],
            o["metadata"]["name"],
            "{}",
            id(o)
        );
        assert_eq!(
            served["metadata"]["namespace"],
            o["metadata"]["namespace"],
            "{}",
            id(o)
        );
        if o["kind"] == "ConfigMap" {
            assert_eq!(served["data"], o["data"], "{}", id(o));
        }
        if let Some(labels) = o["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                assert_eq!(&served["metadata"]["labels"][k], v, "{}: label {k}", id(o));
            }
        }
    }
}

/// The names of the ConfigMaps the Deployment's and the DaemonSet's pod templates mount, as
/// served.
async fn mounted_configs(admin: &kube::Client) -> (String, String) {
    let name = |volumes: Option<Vec<k8s_openapi::api::core::v1::Volume>>| {
        volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "config")
            .and_then(|v| v.config_map)
            .map(|c| c.name)
            .unwrap()
    };
    let d = Api::<Deployment>::namespaced(admin.clone(), NS)
        .get("tide-scheduler")
        .await
        .unwrap();
    let s = Api::<DaemonSet>::namespaced(admin.clone(), NS)
        .get("tide-agent")
        .await
        .unwrap();
    (
        name(d.spec.unwrap().template.spec.unwrap().volumes),
        name(s.spec.unwrap().template.spec.unwrap().volumes),
    )
}

/// Pods of the workload `name` (label `app.kubernetes.io/name`) whose config volume is
/// `config`, once the controllers made `n` of them.
async fn wait_for_pods(admin: &kube::Client, name: &str, config: &str, n: usize) {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={name}"));
    wait_for(
        &format!("{n} {name} pods mounting {config}"),
        Duration::from_secs(60),
        || async {
            let list = pods.list(&lp).await.unwrap();
            list.items
                .iter()
                .filter(|p| {
                    p.spec.as_ref().is_some_and(|s| {
                        s.volumes
                            .iter()
                            .flatten()
                            .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == config))
                    })
                })
                .count()
                >= n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_package_applies_to_the_real_api_server_and_upgrades_and_uninstalls() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(k8s::Options::default()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let admin = tide_kube::connect(Some(&cp.admin_kubeconfig))
        .await
        .unwrap();
    let t0 = Instant::now();

    // 1. The package for this server, whole.
    let package = cp.package_dir();
    let objects = k8s::kustomize_build(&package).unwrap();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(k), "{} renders no {k}", package.display());
    }
    for o in &objects {
        if o["kind"] != "Namespace"
            && o["kind"] != "CustomResourceDefinition"
            && !o["kind"].as_str().unwrap().starts_with("ClusterRole")
        {
            assert_eq!(o["metadata"]["namespace"], NS, "{}", id(o));
        }
    }
    if cp.minor <= 20 {
        let pdb = objects
            .iter()
            .find(|o| o["kind"] == "PodDisruptionBudget")
            .unwrap();
        assert_eq!(
            pdb["apiVersion"], "policy/v1beta1",
            "1.20 serves no policy/v1"
        );
    }
    let config = config_map_name(&objects);
    let cm = objects
        .iter()
        .find(|o| o["metadata"]["name"] == config.as_str())
        .unwrap();
    let cfg =
        tide_api::TideConfig::from_yaml(cm["data"]["tide-config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg, tide_api::TideConfig::default());
    apply_and_read_back(&admin, &objects).await;
    eprintln!(
        "{}: {} objects applied and served in {:.1} s",
        package.display(),
        objects.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        mounted_configs(&admin).await,
        (config.clone(), config.clone())
    );
    // The NetworkPolicy selects kube-scheduler's and Prometheus' namespaces by the
    // kubernetes.io/metadata.name label, which API servers set by themselves only from 1.21:
    // on 1.20 those namespaces must be labelled by hand (deploy/components/kube-1.20).
    let ns = k8s::get_object(&admin, &objects[0]).await.unwrap();
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"].is_null(),
        cp.minor <= 20,
        "namespace labels on 1.{}: {}",
        cp.minor,
        ns["metadata"]["labels"]
    );

    // The controllers admit the pods (priority classes, host paths, security contexts): the
    // ReplicaSet makes both replicas, the DaemonSet one pod for the Node (no kube-scheduler
    // or kubelet runs here, so they stay Pending).
    k8s::create_ready_node(
        &admin,
        "install-node",
        &json!({"cpu": "8", "memory": "32Gi", "pods": "110"}),
    )
    .await
    .unwrap();
    wait_for_pods(&admin, "tide-scheduler", &config, 2).await;
    wait_for_pods(&admin, "tide-agent", &config, 1).await;

    // 2. Every component at once, over the installed package.
    let all = cp.path("all-components");
    std::fs::create_dir_all(&all).unwrap();
    let all = all.canonicalize().unwrap();
    let d = deploy_dir();
    let mut components = vec!["mtls", "monitoring", "webhook"];
    if cp.minor <= 20 {
        components.insert(0, "kube-1.20");
    }
    let mut k = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n",
        relative(&all, &d.join("base"))
    );
    for c in &components {
        k.push_str(&format!(
            "  - {}\n",
            relative(&all, &d.join("components").join(c))
        ));
    }
    std::fs::write(all.join("kustomization.yaml"), k).unwrap();
    let everything = k8s::kustomize_build(&all).unwrap();
    assert!(everything.len() > objects.len(), "monitoring adds objects");
    // Switching a running install to mutual TLS: the probes stay httpGet, on the https port
    // with scheme HTTPS (no client certificate needed there), so server-side apply takes the
    // change in place.
    apply_and_read_back(&admin, &everything).await;
    let d_served = Api::<Deployment>::namespaced(admin.clone(), NS)
        .get("tide-scheduler")
        .await
        .unwrap();
    let container = d_served.spec.unwrap().template.spec.unwrap().containers[0].clone();
    let probe = container.readiness_probe.and_then(|p| p.http_get).unwrap();
    assert_eq!(probe.scheme.as_deref(), Some("HTTPS"), "{probe:?}");
    let args = container.args.clone().unwrap();
    assert!(
        args.iter().any(|a| a.starts_with("--tls-client-ca="))
            && !args.iter().any(|a| a == "--plain-http"),
        "mtls served: {args:?}"
    );
    // The webhook component next to mtls: its own listener, and the API server's
    // MutatingWebhookConfiguration read back above.
    assert!(
        args.iter().any(|a| a == "--webhook-listen=0.0.0.0:8443"),
        "webhook served: {args:?}"
    );

    // 3. Upgrade: the configuration changed in an overlay of the operator's own, re-applied.
    let up = cp.path("upgrade");
    std::fs::create_dir_all(&up).unwrap();
    let up = up.canonicalize().unwrap();
    let shipped_cfg = std::fs::read_to_string(d.join("base/tide-config.yaml")).unwrap();
    let changed = shipped_cfg.replacen("  schedulePercent: 85 ", "  schedulePercent: 80 ", 1);
    assert_ne!(
        changed, shipped_cfg,
        "cpu.schedulePercent: 85 in the shipped config"
    );
    std::fs::write(up.join("tide-config.yaml"), changed).unwrap();
    std::fs::write(
        up.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\nconfigMapGenerator:\n  - name: tide-config\n    behavior: replace\n    files:\n      - tide-config.yaml\n",
            relative(&up, &package.canonicalize().unwrap())
        ),
    )
    .unwrap();
    let upgraded = k8s::kustomize_build(&up).unwrap();
    let new_config = config_map_name(&upgraded);
    assert_ne!(
        new_config, config,
        "a changed configuration gets a new name"
    );
    apply_and_read_back(&admin, &upgraded).await;
    assert_eq!(
        mounted_configs(&admin).await,
        (new_config.clone(), new_config.clone())
    );
    // Rolled: a new ReplicaSet's pods and the DaemonSet's new pod mount the new ConfigMap.
    wait_for_pods(&admin, "tide-scheduler", &new_config, 1).await;
    wait_for_pods(&admin, "tide-agent", &new_config, 1).await;
    let rs = Api::<ReplicaSet>::namespaced(admin.clone(), NS)
        .list(&ListParams::default().labels("app.kubernetes.io/name=tide-scheduler"))
        .await
        .unwrap();
    assert!(rs.items.len() >= 2, "a new ReplicaSet per configuration");

    // 4. Uninstall: every object of what is installed deleted (what `kubectl delete -k` does),
    // every one gone. The old ConfigMap the upgrade left behind goes with the namespace.
    let mut installed = everything.clone();
    installed.extend(upgraded.iter().cloned());
    for o in installed.iter().rev() {
        k8s::delete_object(&admin, o).await.unwrap();
    }
    for o in &installed {
        wait_for(
            &format!("{} to be gone", id(o)),
            Duration::from_secs(90),
            || async { !k8s::object_exists(&admin, o).await.unwrap() },
        )
        .await;
    }
    eprintln!(
        "installed, upgraded and removed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
