//! The shipped KubeSchedulerConfiguration example passes kube-scheduler's own validation
//! rules for extenders and matches what tide-scheduler serves and the shared configuration.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

fn deploy(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/base")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn kube_scheduler_configuration_is_valid_and_consistent() {
    let cfg: serde_json::Value =
        serde_saphyr::from_str(&deploy("scheduler/kube-scheduler-config.yaml")).unwrap();
    assert_eq!(cfg["apiVersion"], "kubescheduler.config.k8s.io/v1");
    assert_eq!(cfg["kind"], "KubeSchedulerConfiguration");
    assert_eq!(
        cfg["percentageOfNodesToScore"], 100,
        "the extender must see every feasible node"
    );
    let extenders = cfg["extenders"].as_array().unwrap();
    // kube-scheduler's validateExtenders: at most one binder; weight > 0 with prioritizeVerb.
    assert_eq!(
        extenders
            .iter()
            .filter(|e| e.get("bindVerb").is_some())
            .count(),
        1
    );
    // The BE gate: filter for pods that request batch resources, not ignorable, with
    // kube-scheduler's own fit check kept on the (capped) advertised amounts.
    let gate: Vec<&serde_json::Value> = extenders
        .iter()
        .filter(|e| e.get("managedResources").is_some())
        .collect();
    assert_eq!(gate.len(), 1);
    assert_eq!(gate[0]["filterVerb"], "filter");
    assert_eq!(
        gate[0]["ignorable"], false,
        "BE pods must wait when Tide is down"
    );
    let managed: Vec<(&str, bool)> = gate[0]["managedResources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["ignoredByScheduler"].as_bool().unwrap(),
            )
        })
        .collect();
    let names = tide_api::TideConfig::default().resources;
    assert_eq!(
        managed,
        [
            (names.batch_cpu.as_str(), false),
            (names.batch_memory.as_str(), false)
        ]
    );
    // Scoring and bind with pre-eviction see every pod and never block HP pods.
    let all: Vec<&serde_json::Value> = extenders
        .iter()
        .filter(|e| e.get("managedResources").is_none())
        .collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["prioritizeVerb"], "prioritize");
    assert_eq!(all[0]["bindVerb"], "bind");
    assert_eq!(all[0]["ignorable"], true, "HP pods must not wait for Tide");
    assert!(all[0].get("filterVerb").is_none());
    for e in extenders {
        let url = e["urlPrefix"].as_str().unwrap();
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
        if e.get("prioritizeVerb").is_some() {
            assert!(e["weight"].as_i64().unwrap() > 0);
        }
        assert_eq!(e["nodeCacheCapable"], true);
        let timeout = tide_api::duration_text::parse(e["httpTimeout"].as_str().unwrap()).unwrap();
        assert!(timeout.as_secs() >= 1 && timeout.as_secs() <= 10);
        // The binder's own API timeout fits inside the scheduler's HTTP timeout.
        let deployment = deploy("scheduler/deployment.yaml");
        let api_timeout_ms: u64 = deployment
            .lines()
            .find_map(|l| l.trim().strip_prefix("- --api-timeout-ms="))
            .map_or(1_000, |v| v.parse().unwrap());
        assert!(u128::from(api_timeout_ms) * 3 <= timeout.as_millis());
        // The path in urlPrefix is the prefix the Deployment passes to the server.
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        assert!(
            deploy("scheduler/deployment.yaml").contains(&format!("--path-prefix={path}")),
            "{path}"
        );
    }
}

/// Metric name → the label names of its series, from a Prometheus text exposition.
fn exported(text: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = l.split_at(l.find(['{', ' ']).unwrap());
        let labels = out.entry(name.to_owned()).or_default();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for pair in inner.0.split(',').filter(|p| !p.is_empty()) {
                labels.insert(pair.split('=').next().unwrap().to_owned());
            }
        }
    }
    out
}

/// Every metric both binaries export, with its labels (every labelled family touched so it
/// renders).
fn all_exported() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let s = tide_scheduler::metrics::Metrics::new().unwrap();
    s.duration.with_label_values(&["filter"]).observe(0.001);
    s.requests.with_label_values(&["filter", "ok"]).inc();
    s.refusals.with_label_values(&["stale-estimate"]).inc();
    s.pre_evictions.with_label_values(&["evicted"]).inc();
    s.watch_errors.with_label_values(&["pods"]).inc();
    s.api_errors.with_label_values(&["bind", "429"]).inc();
    let a = tide_agent::metrics::AgentMetrics::new().unwrap();
    a.actions
        .with_label_values(&["evict", "memory-pressure", "evicted"])
        .inc();
    a.usage.with_label_values(&["hp", "cpu"]).set(1.0);
    a.estimate
        .with_label_values(&["reclaimable", "cpu"])
        .set(1.0);
    a.oom_score_adj.with_label_values(&["ns/p", "BE"]).set(1.0);
    a.errors.with_label_values(&["publish"]).inc();
    a.throttled.with_label_values(&["be"]).set(1.0);
    a.pressure.with_label_values(&["cpu"]).set(1.0);
    a.sandbox_cold.with_label_values(&["unix:///s"]).set(1.0);
    a.sandboxes.with_label_values(&["fresh"]).set(1);
    let mut metrics = exported(&s.render());
    metrics.extend(exported(&a.render()));
    metrics
}

/// docs/monitoring.md documents exactly the metrics the two binaries export (histograms by
/// their family name).
#[test]
fn the_monitoring_page_documents_every_exported_metric_and_no_other() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring.md"),
    )
    .unwrap();
    let family = |n: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n)
            .to_owned()
    };
    let exported: BTreeSet<String> = all_exported().keys().map(|n| family(n)).collect();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `tide_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("tide_{n}"))
        .collect();
    assert!(exported.len() >= 20, "{exported:?}");
    assert_eq!(
        documented, exported,
        "docs/monitoring.md's tables against what tide-agent and tide-scheduler export"
    );
}

/// Every metric the shipped alert rules name is one tide-scheduler or tide-agent exports, with
/// the labels the rule matches on; every alert has a severity, a summary and a `for`.
#[test]
fn alert_rules_name_only_exported_metrics_and_labels() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/components/monitoring/tide-alerts.rules.yaml");
    let rules: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let metrics = all_exported();

    let mut alerts = 0;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            alerts += 1;
            assert!(rule["for"].is_string(), "{alert}: no `for`");
            assert!(
                rule["labels"]["severity"].is_string(),
                "{alert}: no severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: no summary"
            );
            let expr = rule["expr"].as_str().unwrap();
            let mut named = 0;
            let mut rest = expr;
            while let Some(i) = rest.find("tide_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                let labels = metrics
                    .get(name)
                    .unwrap_or_else(|| panic!("{alert} names {name}, which nothing exports"));
                named += 1;
                if let Some(sel) = tail[end..].strip_prefix('{') {
                    let sel = &sel[..sel.find('}').unwrap()];
                    for m in sel.split(',') {
                        let label = m.split(['=', '!']).next().unwrap().trim();
                        assert!(
                            labels.contains(label),
                            "{alert}: {name} has no label {label} ({labels:?})"
                        );
                    }
                }
                rest = &tail[end..];
            }
            assert!(named > 0, "{alert}: names no Tide metric");
        }
    }
    assert!(alerts >= 5, "{alerts} alerts");
}

/// The shipped MutatingWebhookConfiguration never blocks a pod, sends only opted-in pods (the
/// same selector as the shared configuration's default), and calls the path and port that
/// tide-scheduler serves and the component opens.
#[test]
fn webhook_configuration_fails_open_and_matches_what_is_served() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/components/webhook");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let mwc: serde_json::Value =
        serde_saphyr::from_str(&read("mutatingwebhookconfiguration.yaml")).unwrap();
    assert_eq!(mwc["apiVersion"], "admissionregistration.k8s.io/v1");
    let hooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    let h = &hooks[0];
    assert_eq!(
        h["failurePolicy"], "Ignore",
        "a down webhook must never block a pod"
    );
    assert_eq!(h["sideEffects"], "None");
    assert!(
        h["admissionReviewVersions"]
            .as_array()
            .unwrap()
            .contains(&"v1".into())
    );
    let timeout = h["timeoutSeconds"].as_u64().unwrap();
    assert!((1..=10).contains(&timeout), "{timeout}");
    assert_eq!(
        h["rules"],
        serde_json::json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
            "resources": ["pods"], "scope": "Namespaced"}])
    );
    // Only opted-in pods are sent, with exactly the labels the webhook looks for.
    let selector: std::collections::BTreeMap<String, String> =
        serde_json::from_value(h["objectSelector"]["matchLabels"].clone()).unwrap();
    assert_eq!(
        selector,
        tide_api::TideConfig::default().webhook.pod_selector
    );
    assert!(h["objectSelector"].get("matchExpressions").is_none());
    let excluded = &h["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["operator"], "NotIn");
    for ns in ["kube-system", "tide-system"] {
        assert!(excluded["values"].as_array().unwrap().contains(&ns.into()));
    }
    let svc = &h["clientConfig"]["service"];
    assert_eq!(svc["name"], "tide-scheduler");
    assert_eq!(svc["namespace"], "tide-system");
    assert_eq!(svc["path"], tide_scheduler::webhook::PATH);
    assert_eq!(svc["port"], 443);
    // The component: the listener, the Service port to it, the NetworkPolicy opening it.
    let kustomization = read("kustomization.yaml");
    for want in [
        "value: --webhook-listen=0.0.0.0:8443",
        "value: {name: webhook, containerPort: 8443, protocol: TCP}",
        "value: {name: webhook, port: 443, targetPort: webhook, protocol: TCP}",
        "secretName: tide-scheduler-webhook-tls",
    ] {
        assert!(kustomization.contains(want), "{want}");
    }
    let netpol: serde_json::Value = serde_saphyr::from_str(&read("networkpolicy.yaml")).unwrap();
    assert_eq!(netpol["spec"]["ingress"][0]["ports"][0]["port"], 8443);
}
