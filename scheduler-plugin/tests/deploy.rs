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
