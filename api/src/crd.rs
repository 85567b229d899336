//! The `NodeEstimate` custom resource: one per node, written by the agent, read by the extender.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of Tide's custom resources.
pub const GROUP: &str = "tide.dev";

/// Desired state of a node estimate: which node it describes.
///
/// The object is cluster-scoped and named after its node; the agent owns its status.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tide.dev",
    version = "v1alpha1",
    kind = "NodeEstimate",
    plural = "nodeestimates",
    singular = "nodeestimate",
    shortname = "ne",
    status = "NodeEstimateStatus",
    printcolumn = r#"{"name":"CPU reclaimable","type":"integer","jsonPath":".status.cpu.reclaimable","description":"millicores"}"#,
    printcolumn = r#"{"name":"Memory reclaimable","type":"integer","jsonPath":".status.memory.reclaimable","description":"bytes"}"#,
    printcolumn = r#"{"name":"Observed","type":"date","jsonPath":".status.observedTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeEstimateSpec {
    /// Name of the Node this estimate describes (equal to the object's name).
    pub node_name: String,
}

/// The agent's estimate for one resource on one node. CPU amounts are millicores, memory
/// amounts are bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceEstimate {
    /// Node allocatable.
    pub allocatable: u64,
    /// Predicted peak of high-priority usage over the horizon.
    pub predicted_peak: u64,
    /// Safety margin added on top of the predicted peak.
    pub margin: u64,
    /// Kept back for the system.
    pub system_reserve: u64,
    /// Credit from cold page cache that can be reclaimed on demand (memory only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cold_credit: u64,
    /// What BE pods may use: allocatable − peak − margin − reserve (+ cold credit), at least 0.
    pub reclaimable: u64,
    /// Current high-priority usage.
    pub hp_usage: u64,
    /// Current best-effort usage.
    pub be_usage: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// How far the estimate can be trusted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimateConfidence {
    /// Seconds of usage history behind the estimate.
    pub history_seconds: u64,
    /// Share of recent decisions whose realised peak exceeded the prediction.
    pub recent_violation_rate: f64,
    /// Why reclaimable capacity was forced to zero, if it was (e.g. `history too young`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
}

/// What the agent observed and predicted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeEstimateStatus {
    /// When the estimate was computed (RFC 3339). Consumers treat older than `staleAfter` as absent.
    pub observed_time: String,
    /// Prediction horizon of the memory estimate, seconds (the CPU estimate's is the configured
    /// `estimator.cpuHorizon`).
    pub horizon_seconds: u64,
    /// CPU estimate (millicores).
    pub cpu: ResourceEstimate,
    /// Memory estimate (bytes).
    pub memory: ResourceEstimate,
    /// Confidence of the model.
    pub confidence: EstimateConfidence,
}

impl NodeEstimateStatus {
    /// The body of a JSON merge patch (RFC 7386) of the status subresource that leaves the
    /// stored status equal to `self`: every field of the CRD's status schema that `self` does
    /// not serialize (an absent `degradedReason`, a zero `coldCredit`) is sent as `null`, so a
    /// value published earlier is removed rather than kept by the merge.
    pub fn merge_patch(&self) -> serde_json::Value {
        use std::sync::OnceLock;
        static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
        let schema = SCHEMA.get_or_init(|| {
            use kube::CustomResourceExt;
            serde_json::to_value(NodeEstimate::crd()).map_or(serde_json::Value::Null, |crd| {
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
                    .clone()
            })
        });
        let mut status = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        null_absent(&mut status, schema);
        serde_json::json!({ "status": status })
    }
}

/// Adds `null` for every property of `schema` (an OpenAPI object schema) that `value` lacks,
/// recursively through nested objects.
fn null_absent(value: &mut serde_json::Value, schema: &serde_json::Value) {
    let (Some(obj), Some(props)) = (value.as_object_mut(), schema["properties"].as_object()) else {
        return;
    };
    for (key, sub) in props {
        match obj.get_mut(key) {
            Some(v) => null_absent(v, sub),
            None => {
                obj.insert(key.clone(), serde_json::Value::Null);
            }
        }
    }
}

/// The CRD manifest for [`NodeEstimate`], as YAML; `deploy/base/crd-nodeestimate.yaml` holds its output.
pub fn node_estimate_crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = NodeEstimate::crd();
    let mut out = String::from(
        "# Generated from tide_api::NodeEstimate; do not edit by hand.\n\
         # Regenerate: TIDE_BLESS=1 cargo test -p tide-api --test crd\n",
    );
    out.push_str(&serde_saphyr::to_string(&crd).unwrap_or_default());
    out
}
