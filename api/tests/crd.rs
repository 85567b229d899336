//! The checked-in CRD and example configuration match the code.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::path::PathBuf;

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/base")
        .join(name)
}

#[test]
fn checked_in_crd_matches_the_generator() {
    let generated = tide_api::node_estimate_crd_yaml();
    let path = deploy("crd-nodeestimate.yaml");
    if std::env::var_os("TIDE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with TIDE_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        on_disk, generated,
        "deploy/base/crd-nodeestimate.yaml is out of date: TIDE_BLESS=1 cargo test -p tide-api --test crd"
    );
    assert!(generated.contains("kind: CustomResourceDefinition"));
    assert!(generated.contains("scope: Cluster"));
    assert!(
        generated.contains("status: {}"),
        "status subresource enabled"
    );
}

#[test]
fn example_config_loads_and_validates() {
    let path = deploy("tide-config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = tide_api::TideConfig::from_yaml(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The example spells out the defaults; a drift between docs and code shows here.
    assert_eq!(cfg, tide_api::TideConfig::default());
}

#[test]
fn status_merge_patch_removes_fields_the_new_status_lacks() {
    use tide_api::{EstimateConfidence, NodeEstimateStatus, ResourceEstimate};
    let degraded = NodeEstimateStatus {
        observed_time: "2026-12-02T10:00:00Z".into(),
        horizon_seconds: 300,
        cpu: ResourceEstimate {
            allocatable: 8_000,
            ..ResourceEstimate::default()
        },
        memory: ResourceEstimate {
            allocatable: 32 << 30,
            cold_credit: 1 << 30,
            ..ResourceEstimate::default()
        },
        confidence: EstimateConfidence {
            history_seconds: 10,
            recent_violation_rate: 0.0,
            degraded_reason: Some("history too young".into()),
        },
    };
    let mut recovered = degraded.clone();
    recovered.observed_time = "2026-12-02T11:00:00Z".into();
    recovered.memory.cold_credit = 0;
    recovered.cpu.reclaimable = 2_000;
    recovered.confidence.degraded_reason = None;
    recovered.confidence.history_seconds = 3_600;

    let mut stored = serde_json::json!({"metadata": {"name": "n1"}});
    tide_testkit::merge_patch(&mut stored, &degraded.merge_patch());
    assert_eq!(
        stored["status"]["confidence"]["degradedReason"],
        "history too young"
    );
    tide_testkit::merge_patch(&mut stored, &recovered.merge_patch());
    // Exactly the new status: the old reason and the zeroed credit are gone.
    assert_eq!(stored["status"], serde_json::to_value(&recovered).unwrap());
    let back: NodeEstimateStatus = serde_json::from_value(stored["status"].clone()).unwrap();
    assert_eq!(back, recovered);
    // Every field the schema knows is in the patch, set or null.
    let patch = recovered.merge_patch();
    assert!(patch["status"]["confidence"]["degradedReason"].is_null());
    assert!(
        patch["status"]["confidence"]
            .as_object()
            .unwrap()
            .contains_key("degradedReason")
    );
    assert!(
        patch["status"]["memory"]
            .as_object()
            .unwrap()
            .contains_key("coldCredit")
    );
}
