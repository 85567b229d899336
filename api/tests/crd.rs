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
        .join("../deploy")
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
        "deploy/crd-nodeestimate.yaml is out of date: TIDE_BLESS=1 cargo test -p tide-api --test crd"
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
