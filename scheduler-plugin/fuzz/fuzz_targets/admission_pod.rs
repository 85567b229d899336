//! Arbitrary bytes as the pod of an AdmissionReview: the webhook's decision must never panic,
//! whatever the API server (or anything else) sends, and what it returns must encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tide_api::TideConfig;
use tide_scheduler::webhook::{PriorityClassRef, mutate};

fuzz_target!(|data: &[u8]| {
    let Ok(pod) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut cfg = TideConfig::default();
    let _ = mutate(&pod, "default", &cfg, None).map(|ops| serde_json::to_vec(&ops));
    cfg.resources.koordinator_compat = true;
    cfg.webhook.priority_class_name = "tide-batch".into();
    cfg.webhook.scheduler_name = "tide".into();
    let pc = PriorityClassRef {
        name: "tide-batch".into(),
        value: 5500,
        preemption_policy: Some("Never".into()),
    };
    let _ = mutate(&pod, "default", &cfg, Some(&pc)).map(|ops| serde_json::to_vec(&ops));
});
