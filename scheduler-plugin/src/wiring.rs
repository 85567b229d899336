//! The kube-scheduler configuration that wires Tide in, for the cluster's Kubernetes version.
//!
//! `deploy/base/scheduler/kube-scheduler-config.yaml` is written for current clusters (1.30+).
//! [`render`] derives what an older kube-scheduler needs from that one file, so no second
//! copy is kept by hand, and the end-to-end tests run exactly what an operator would:
//!
//! | kube-scheduler | change |
//! |---|---|
//! | 1.19–1.21 | `apiVersion: kubescheduler.config.k8s.io/v1beta1` |
//! | 1.22 | `…/v1beta2` |
//! | 1.23–1.24 | `…/v1beta3` |
//! | < 1.30 | `bindVerb` moves to the BE-only entry: before kubernetes/kubernetes#122503 a failing extender bind is retried even when the extender is ignorable, so an HP pod would wait for a down tide-scheduler. HP pods are then bound by the default binder, and tide-scheduler relieves a hot node right after such a bind instead of before it. |

use std::net::SocketAddr;

use serde_json::Value;

/// The shipped configuration (for kube-scheduler 1.30+).
pub const SHIPPED: &str = include_str!("../../deploy/base/scheduler/kube-scheduler-config.yaml");

/// The first minor version whose kube-scheduler skips a failing ignorable extender's bind.
pub const IGNORABLE_BIND_SINCE: u32 = 30;

/// What to substitute in the shipped configuration.
#[derive(Debug, Clone, Default)]
pub struct Render {
    /// The cluster's Kubernetes minor version (20 for v1.20.2).
    pub minor: u32,
    /// `clientConnection.kubeconfig`, when it differs from the shipped kubeadm path.
    pub kubeconfig: Option<String>,
    /// Every extender's `urlPrefix`, when it differs from the shipped Service address.
    pub extender_url: Option<String>,
    /// `healthzBindAddress` and `metricsBindAddress` (kube-scheduler ≤ 1.22 listens on
    /// `0.0.0.0:10251` otherwise).
    pub healthz: Option<SocketAddr>,
    /// See [`Render::healthz`].
    pub metrics: Option<SocketAddr>,
    /// `clientConnection.qps` and `burst` (kube-scheduler's defaults are 50 and 100).
    pub client_qps: Option<(f64, u32)>,
    /// Mutual TLS to the extender: every entry gets `enableHTTPS: true` and this `tlsConfig`.
    pub tls: Option<ExtenderTls>,
    /// A second scheduler for Tide instead of the default scheduler's configuration: see
    /// [`SecondScheduler`].
    pub second: Option<SecondScheduler>,
}

/// The second-scheduler profile (managed control planes, where the default kube-scheduler
/// cannot be reconfigured): a kube-scheduler of Tide's own, in the tide-scheduler pod next
/// to the extender (deploy/components/second-scheduler). Rendering for it changes the shipped
/// configuration in three places: the profile's `schedulerName` (pods opt in with it), the
/// API connection (in-cluster: no kubeconfig), and leader election on a Lease of its own (two
/// replicas, one schedules). The extenders default to the sidecar's `http://127.0.0.1:8888`.
#[derive(Debug, Clone)]
pub struct SecondScheduler {
    /// The profile's `schedulerName`.
    pub scheduler_name: String,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    pub lease_name: String,
}

impl Default for SecondScheduler {
    fn default() -> Self {
        Self {
            scheduler_name: "tide-scheduler".into(),
            lease_namespace: "tide-system".into(),
            lease_name: "tide-kube-scheduler".into(),
        }
    }
}

/// The extender's address from the kube-scheduler sidecar in the same pod.
pub const SIDECAR_EXTENDER_URL: &str = "http://127.0.0.1:8888/extender";

/// kube-scheduler's side of mutual TLS with tide-scheduler (the extender `tlsConfig`).
#[derive(Debug, Clone, Default)]
pub struct ExtenderTls {
    /// CA that tide-scheduler's serving certificate chains to (`caFile`).
    pub ca_file: String,
    /// kube-scheduler's client certificate (`certFile`), issued by tide-scheduler's
    /// `--tls-client-ca`.
    pub cert_file: String,
    /// Its key (`keyFile`).
    pub key_file: String,
}

/// The configuration API version kube-scheduler 1.`minor` reads.
pub fn api_version(minor: u32) -> &'static str {
    match minor {
        0..=21 => "kubescheduler.config.k8s.io/v1beta1",
        22 => "kubescheduler.config.k8s.io/v1beta2",
        23 | 24 => "kubescheduler.config.k8s.io/v1beta3",
        _ => "kubescheduler.config.k8s.io/v1",
    }
}

/// Renders `shipped` (YAML) for `r`, as JSON text (which kube-scheduler reads as YAML).
pub fn render(shipped: &str, r: &Render) -> Result<String, String> {
    let mut cfg: Value = serde_saphyr::from_str(shipped)
        .map_err(|e| format!("kube-scheduler configuration: {e}"))?;
    if r.minor < 19 {
        return Err(format!(
            "kube-scheduler 1.{} predates KubeSchedulerConfiguration v1beta1 (1.19)",
            r.minor
        ));
    }
    cfg["apiVersion"] = api_version(r.minor).into();
    if let Some(second) = &r.second {
        let obj = cfg
            .as_object_mut()
            .ok_or("the configuration is not a mapping")?;
        if let Some(Value::Object(conn)) = obj.get_mut("clientConnection") {
            conn.remove("kubeconfig");
        }
        obj.insert(
            "profiles".into(),
            serde_json::json!([{"schedulerName": second.scheduler_name}]),
        );
        obj.insert(
            "leaderElection".into(),
            serde_json::json!({
                "leaderElect": true,
                "resourceLock": "leases",
                "resourceNamespace": second.lease_namespace,
                "resourceName": second.lease_name,
            }),
        );
        if let Some(Value::Array(extenders)) = obj.get_mut("extenders") {
            for e in extenders {
                e["urlPrefix"] = SIDECAR_EXTENDER_URL.into();
            }
        }
    }
    if let Some(k) = &r.kubeconfig {
        cfg["clientConnection"]["kubeconfig"] = k.as_str().into();
    }
    if let Some((qps, burst)) = r.client_qps {
        cfg["clientConnection"]["qps"] = qps.into();
        cfg["clientConnection"]["burst"] = burst.into();
    }
    if r.minor <= 22 {
        if let Some(a) = r.healthz {
            cfg["healthzBindAddress"] = a.to_string().into();
        }
        if let Some(a) = r.metrics {
            cfg["metricsBindAddress"] = a.to_string().into();
        }
    }
    let extenders = cfg["extenders"]
        .as_array_mut()
        .ok_or("the configuration has no extenders")?;
    if let Some(url) = &r.extender_url {
        for e in extenders.iter_mut() {
            e["urlPrefix"] = url.as_str().into();
        }
    }
    if let Some(t) = &r.tls {
        for e in extenders.iter_mut() {
            e["enableHTTPS"] = true.into();
            e["tlsConfig"] = serde_json::json!({
                "caFile": t.ca_file, "certFile": t.cert_file, "keyFile": t.key_file,
            });
        }
    }
    if r.minor < IGNORABLE_BIND_SINCE {
        let gate = extenders
            .iter()
            .position(|e| {
                e.get("managedResources").is_some()
                    && e.get("ignorable") == Some(&Value::Bool(false))
            })
            .ok_or("no non-ignorable BE entry (with managedResources) to move bind to")?;
        let mut bind = None;
        for e in extenders.iter_mut() {
            if let Some(obj) = e.as_object_mut()
                && let Some(v) = obj.remove("bindVerb")
            {
                bind = Some(v);
            }
        }
        let bind = bind.ok_or("no extender binds")?;
        extenders[gate]["bindVerb"] = bind;
    }
    serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_default()
    }

    fn binders(cfg: &Value) -> Vec<&Value> {
        cfg["extenders"]
            .as_array()
            .map(|a| a.iter().filter(|e| e.get("bindVerb").is_some()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn current_clusters_get_the_shipped_file_with_addresses_substituted() {
        let r = Render {
            minor: 33,
            extender_url: Some("http://127.0.0.1:9/x".into()),
            kubeconfig: Some("/k".into()),
            healthz: Some(([127, 0, 0, 1], 1).into()),
            ..Render::default()
        };
        let cfg = parse(&render(SHIPPED, &r).unwrap_or_default());
        let shipped: Value = serde_saphyr::from_str(SHIPPED).unwrap_or_default();
        assert_eq!(cfg["apiVersion"], "kubescheduler.config.k8s.io/v1");
        assert_eq!(cfg["clientConnection"]["kubeconfig"], "/k");
        assert!(
            cfg.get("healthzBindAddress").is_none(),
            "removed after 1.22"
        );
        let (a, b) = (&cfg["extenders"][0], &cfg["extenders"][1]);
        assert_eq!(a["urlPrefix"], "http://127.0.0.1:9/x");
        // Only addresses changed.
        let mut unchanged = cfg.clone();
        unchanged["clientConnection"] = shipped["clientConnection"].clone();
        for (i, e) in shipped["extenders"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            unchanged["extenders"][i]["urlPrefix"] = e["urlPrefix"].clone();
        }
        assert_eq!(unchanged, shipped);
        assert_eq!(binders(&cfg), [b]);
        assert_eq!(b["ignorable"], true);
        assert_eq!(a["ignorable"], false);
    }

    #[test]
    fn the_second_scheduler_profile_changes_name_connection_and_leader_election_only() {
        let shipped: Value = serde_saphyr::from_str(SHIPPED).unwrap_or_default();
        let r = Render {
            minor: 33,
            second: Some(SecondScheduler::default()),
            ..Render::default()
        };
        let cfg = parse(&render(SHIPPED, &r).unwrap_or_default());
        assert_eq!(cfg["profiles"][0]["schedulerName"], "tide-scheduler");
        assert_eq!(cfg["profiles"].as_array().map(Vec::len), Some(1));
        assert!(
            cfg["clientConnection"].get("kubeconfig").is_none(),
            "in-cluster"
        );
        assert_eq!(cfg["leaderElection"]["resourceName"], "tide-kube-scheduler");
        assert_eq!(cfg["leaderElection"]["resourceNamespace"], "tide-system");
        assert_eq!(cfg["leaderElection"]["leaderElect"], true);
        let mut unchanged = cfg.clone();
        unchanged["profiles"] = shipped["profiles"].clone();
        unchanged["clientConnection"] = shipped["clientConnection"].clone();
        unchanged
            .as_object_mut()
            .map(|o| o.remove("leaderElection"));
        for (i, e) in shipped["extenders"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            assert_eq!(cfg["extenders"][i]["urlPrefix"], SIDECAR_EXTENDER_URL);
            unchanged["extenders"][i]["urlPrefix"] = e["urlPrefix"].clone();
        }
        assert_eq!(unchanged, shipped);
        // An explicit URL still wins (e.g. mutual TLS on the sidecar's port).
        let r = Render {
            extender_url: Some("https://127.0.0.1:8888/extender".into()),
            ..r
        };
        let cfg = parse(&render(SHIPPED, &r).unwrap_or_default());
        assert_eq!(
            cfg["extenders"][1]["urlPrefix"],
            "https://127.0.0.1:8888/extender"
        );
    }

    /// deploy/components/second-scheduler carries the rendering for current clusters; it
    /// must stay what `render-scheduler-config --kube-minor 30 --second-scheduler` prints.
    #[test]
    fn the_second_scheduler_component_holds_the_rendered_configuration() {
        let file =
            include_str!("../../deploy/components/second-scheduler/kube-scheduler-config.yaml");
        let shipped: Value = serde_saphyr::from_str(file).unwrap_or_default();
        let r = Render {
            minor: IGNORABLE_BIND_SINCE,
            second: Some(SecondScheduler::default()),
            ..Render::default()
        };
        assert_eq!(
            shipped,
            parse(&render(SHIPPED, &r).unwrap_or_default()),
            "deploy/components/second-scheduler/kube-scheduler-config.yaml differs from \
             `tide-scheduler render-scheduler-config --kube-minor 30 --second-scheduler`"
        );
    }

    #[test]
    fn old_schedulers_get_their_api_version_and_bind_in_the_be_entry() {
        let r = Render {
            minor: 20,
            healthz: Some(([127, 0, 0, 1], 1).into()),
            metrics: Some(([127, 0, 0, 1], 2).into()),
            client_qps: Some((500.0, 1000)),
            ..Render::default()
        };
        let cfg = parse(&render(SHIPPED, &r).unwrap_or_default());
        assert_eq!(cfg["apiVersion"], "kubescheduler.config.k8s.io/v1beta1");
        assert_eq!(cfg["healthzBindAddress"], "127.0.0.1:1");
        assert_eq!(cfg["metricsBindAddress"], "127.0.0.1:2");
        assert_eq!(cfg["clientConnection"]["burst"], 1000);
        let b = binders(&cfg);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["ignorable"], false);
        assert!(b[0].get("managedResources").is_some());
        assert_eq!(api_version(22), "kubescheduler.config.k8s.io/v1beta2");
        assert_eq!(api_version(24), "kubescheduler.config.k8s.io/v1beta3");
        assert!(
            render(
                SHIPPED,
                &Render {
                    minor: 18,
                    ..Render::default()
                }
            )
            .is_err()
        );
    }
}
