//! The shipped KubeSchedulerConfiguration example passes kube-scheduler's own validation
//! rules for extenders and matches what tide-scheduler serves and the shared configuration.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn deploy(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
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
    assert!(
        extenders
            .iter()
            .filter(|e| e.get("bindVerb").is_some())
            .count()
            <= 1
    );
    for e in extenders {
        let url = e["urlPrefix"].as_str().unwrap();
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
        if e.get("prioritizeVerb").is_some() {
            assert!(e["weight"].as_i64().unwrap() > 0);
        }
        // tide-scheduler serves exactly these verbs.
        assert_eq!(e["filterVerb"], "filter");
        assert_eq!(e["prioritizeVerb"], "prioritize");
        assert_eq!(e["bindVerb"], "bind");
        let timeout = tide_api::duration_text::parse(e["httpTimeout"].as_str().unwrap()).unwrap();
        assert!(timeout.as_secs() >= 1 && timeout.as_secs() <= 10);
        // Bind with pre-eviction must be called for HP pods: no managedResources filter.
        assert!(
            e.get("managedResources").is_none(),
            "managedResources would hide HP pods from bind"
        );
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
