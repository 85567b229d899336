//! The mutating admission webhook for BE pods (issue 19), so BE pods need no hand edits.
//!
//! A pod opted in — every label of `webhook.podSelector` in one of `webhook.namespaces` (any
//! when empty), or with `resources.koordinatorCompat` Koordinator's `koordinator.sh/qosClass:
//! BE` — is rewritten ([`mutate`], a pure function of the pod and the configuration):
//!
//! - each container's and init container's `cpu` and `memory` requests and limits (in
//!   compatibility mode also Koordinator's `kubernetes.io/batch-cpu`/`batch-memory`) move to
//!   `resources.batchCpu` (millicores) and `resources.batchMemory` (bytes), with request equal
//!   to limit as extended resources require: the amount is the request, or the limit where
//!   there is no request (what the API server would default the request to); amounts already
//!   asked of the batch resources are added;
//! - the QoS label (`resources.qosLabel`) becomes `BE`;
//! - `priorityClassName` (with the class's `priority` and `preemptionPolicy`, which the
//!   built-in Priority admission plugin has already filled from the pod's former class and
//!   checks against the name) and `schedulerName`, when configured.
//!
//! Every other pod passes untouched, and a pod already rewritten yields no patch. The HTTP
//! side ([`router`]) takes an `admission.k8s.io/v1` `AdmissionReview` and answers with the
//! patch as base64 JSONPatch; it is served on its own TLS listener (`--webhook-listen`), apart
//! from the extender's port (docs/install.md, "Admission webhook", says why).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes as Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tide_api::{
    Bytes, KOORDINATOR_BATCH_RESOURCES, KOORDINATOR_QOS_LABEL, MilliCores, QosClass, Quantity,
    TideConfig,
};

use crate::server::ExtenderState;

/// The path the API server calls.
pub const PATH: &str = "/mutate-pods";

/// Largest AdmissionReview accepted: a pod is at most 1.5 MiB in etcd, and the review holds
/// it once on CREATE (twice on UPDATE).
pub const BODY_LIMIT: usize = 8 << 20;

/// One JSON Patch (RFC 6902) operation. The webhook only adds: `add` on an object member
/// replaces it when present, creates it when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum JsonPatchOp {
    /// Set the member at `path` (a JSON pointer) to `value`.
    Add {
        /// JSON pointer.
        path: String,
        /// The new value.
        value: Value,
    },
}

/// The PriorityClass set on rewritten pods, resolved: its name, value and preemption policy.
/// The three go together: the Priority admission plugin ran before the webhook, filled
/// `spec.priority` (and `spec.preemptionPolicy`) from the pod's former class, and refuses a pod
/// whose values disagree with its class name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityClassRef {
    /// `metadata.name`.
    pub name: String,
    /// `value`.
    pub value: i32,
    /// `preemptionPolicy`, when the class has one.
    pub preemption_policy: Option<String>,
}

/// Why a pod is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// It carries every label of `webhook.podSelector`.
    Selector,
    /// Compatibility mode: Koordinator's `koordinator.sh/qosClass: BE`.
    Koordinator,
}

fn labels(pod: &Value) -> Option<&Map<String, Value>> {
    pod.get("metadata")?.get("labels")?.as_object()
}

/// Whether the webhook rewrites this pod (in `namespace`), and why. Never for a pod outside
/// `webhook.namespaces` (when not empty).
pub fn opted_in(pod: &Value, namespace: &str, cfg: &TideConfig) -> Option<OptIn> {
    let w = &cfg.webhook;
    if !w.namespaces.is_empty() && !w.namespaces.iter().any(|n| n == namespace) {
        return None;
    }
    let labels = labels(pod)?;
    let has = |k: &str, v: &str| labels.get(k).and_then(Value::as_str) == Some(v);
    if !w.pod_selector.is_empty() && w.pod_selector.iter().all(|(k, v)| has(k, v)) {
        return Some(OptIn::Selector);
    }
    let koordinator_be = labels
        .get(KOORDINATOR_QOS_LABEL)
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("BE"));
    (cfg.resources.koordinator_compat && koordinator_be).then_some(OptIn::Koordinator)
}

/// A JSON pointer token (`/` → `~1`, `~` → `~0`).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn quantity(v: &Value, what: &str) -> Result<Quantity, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("{what}: {other} is not a quantity")),
    };
    text.parse::<Quantity>()
        .map_err(|e| format!("{what}: {text:?}: {e}"))
}

/// How a resource's quantity converts to the batch resource's integer unit.
#[derive(Clone, Copy)]
enum Unit {
    /// `cpu`: cores → millicores.
    Milli,
    /// Already an integer count (bytes, or the batch resources' millicores).
    Whole,
}

fn amount(q: &Quantity, unit: Unit, what: &str) -> Result<u64, String> {
    match unit {
        Unit::Milli => MilliCores::from_quantity(q).map(|m| m.0),
        Unit::Whole => Bytes::from_quantity(q).map(|b| b.0),
    }
    .map_err(|e| format!("{what}: {e}"))
}

fn object<'a>(v: Option<&'a Value>, what: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(format!("{what} is not an object: {other}")),
    }
}

/// The container's new `resources`, or `None` when it asks none of the moved resources.
fn rewrite_resources(c: &Value, what: &str, cfg: &TideConfig) -> Result<Option<Value>, String> {
    let names = &cfg.resources;
    let res = object(c.get("resources"), &format!("{what}.resources"))?;
    let req = object(
        res.and_then(|r| r.get("requests")),
        &format!("{what}.resources.requests"),
    )?;
    let lim = object(
        res.and_then(|r| r.get("limits")),
        &format!("{what}.resources.limits"),
    )?;
    let compat = names.koordinator_compat;
    let [koord_cpu, koord_memory] = KOORDINATOR_BATCH_RESOURCES;
    let mut cpu_sources = vec![
        ("cpu", Unit::Milli),
        (names.batch_cpu.as_str(), Unit::Whole),
    ];
    let mut memory_sources = vec![
        ("memory", Unit::Whole),
        (names.batch_memory.as_str(), Unit::Whole),
    ];
    let mut moved = vec!["cpu", "memory"];
    if compat {
        cpu_sources.push((koord_cpu, Unit::Whole));
        memory_sources.push((koord_memory, Unit::Whole));
        moved.extend([koord_cpu, koord_memory]);
    }
    let present =
        |n: &str| req.is_some_and(|m| m.contains_key(n)) || lim.is_some_and(|m| m.contains_key(n));
    if !moved.iter().any(|n| present(n)) {
        return Ok(None);
    }
    // Per resource: the request, else the limit (the API server's default for the request).
    let total = |sources: &[(&str, Unit)]| -> Result<u64, String> {
        let mut sum: u64 = 0;
        for (n, unit) in sources {
            let Some(v) = req
                .and_then(|m| m.get(*n))
                .or_else(|| lim.and_then(|m| m.get(*n)))
            else {
                continue;
            };
            let what = format!("{what} resource {n}");
            let a = amount(&quantity(v, &what)?, *unit, &what)?;
            sum = sum
                .checked_add(a)
                .ok_or_else(|| format!("{what}: the batch amount overflows"))?;
        }
        Ok(sum)
    };
    let (cpu, memory) = (total(&cpu_sources)?, total(&memory_sources)?);
    let mut dropped = moved.clone();
    dropped.extend([names.batch_cpu.as_str(), names.batch_memory.as_str()]);
    let strip = |m: Option<&Map<String, Value>>| {
        let mut m = m.cloned().unwrap_or_default();
        for n in &dropped {
            m.remove(*n);
        }
        for (n, v) in [(&names.batch_cpu, cpu), (&names.batch_memory, memory)] {
            if v > 0 {
                m.insert(n.clone(), Value::String(v.to_string()));
            }
        }
        m
    };
    let mut out = res.cloned().unwrap_or_default();
    for (key, m) in [("requests", strip(req)), ("limits", strip(lim))] {
        if m.is_empty() {
            out.remove(key);
        } else {
            out.insert(key.to_owned(), Value::Object(m));
        }
    }
    Ok(Some(Value::Object(out)))
}

/// The JSON Patch that rewrites `pod` (created in `namespace`) as BE under `cfg`; empty for a
/// pod not opted in ([`opted_in`]) or already rewritten. `priority` is the resolved
/// `webhook.priorityClassName` (required when that is set).
///
/// An error (a pod opted in that cannot be rewritten: a quantity that does not parse, an
/// explicit HP QoS label, no `spec`) names what is wrong; the server denies that pod with it.
/// Never panics, whatever the JSON.
///
/// ```
/// use serde_json::json;
/// use tide_api::TideConfig;
/// let pod = json!({"metadata": {"labels": {"tide.dev/batch": "true"}},
///     "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}]}});
/// let ops = tide_scheduler::webhook::mutate(&pod, "default", &TideConfig::default(), None).unwrap();
/// let text = serde_json::to_string(&ops).unwrap();
/// assert!(text.contains(r#""tide.dev/batch-cpu":"1500""#), "{text}");
/// assert!(text.contains(r#""path":"/metadata/labels/tide.dev~1qos","value":"BE""#), "{text}");
/// ```
pub fn mutate(
    pod: &Value,
    namespace: &str,
    cfg: &TideConfig,
    priority: Option<&PriorityClassRef>,
) -> Result<Vec<JsonPatchOp>, String> {
    let Some(why) = opted_in(pod, namespace, cfg) else {
        return Ok(Vec::new());
    };
    let qos_label = &cfg.resources.qos_label;
    if let Some(q) = labels(pod)
        .and_then(|l| l.get(qos_label))
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<QosClass>().ok())
        .filter(|q| *q != QosClass::Be)
    {
        let by = match why {
            OptIn::Selector => "webhook.podSelector".to_owned(),
            OptIn::Koordinator => format!("{KOORDINATOR_QOS_LABEL}: BE"),
        };
        return Err(format!(
            "the pod is opted in as BE ({by}) but labelled {qos_label}: {q}; remove one of the two"
        ));
    }
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Err("the pod has no spec".into());
    };
    let mut ops = Vec::new();
    for kind in ["containers", "initContainers"] {
        let containers = match spec.get(kind) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(other) => return Err(format!("spec.{kind} is not a list: {other}")),
        };
        for (i, c) in containers.iter().enumerate() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let what = format!("{kind}[{i}] ({name})");
            if let Some(value) = rewrite_resources(c, &what, cfg)? {
                ops.push(JsonPatchOp::Add {
                    path: format!("/spec/{kind}/{i}/resources"),
                    value,
                });
            }
        }
    }
    match pod.get("metadata").and_then(Value::as_object) {
        None => ops.push(JsonPatchOp::Add {
            path: "/metadata".into(),
            value: json!({"labels": {qos_label.as_str(): "BE"}}),
        }),
        Some(meta) => match meta.get("labels").and_then(Value::as_object) {
            None => ops.push(JsonPatchOp::Add {
                path: "/metadata/labels".into(),
                value: json!({qos_label.as_str(): "BE"}),
            }),
            Some(l) if l.get(qos_label).and_then(Value::as_str) == Some("BE") => {}
            Some(_) => ops.push(JsonPatchOp::Add {
                path: format!("/metadata/labels/{}", token(qos_label)),
                value: json!("BE"),
            }),
        },
    }
    let w = &cfg.webhook;
    let mut set = |field: &str, value: Value| {
        if spec.get(field) != Some(&value) {
            ops.push(JsonPatchOp::Add {
                path: format!("/spec/{field}"),
                value,
            });
        }
    };
    if !w.priority_class_name.is_empty() {
        let pc = priority
            .filter(|p| p.name == w.priority_class_name)
            .ok_or_else(|| {
                format!(
                    "PriorityClass {:?} (webhook.priorityClassName) is not resolved",
                    w.priority_class_name
                )
            })?;
        set("priorityClassName", json!(pc.name));
        set("priority", json!(pc.value));
        if let Some(p) = &pc.preemption_policy {
            set("preemptionPolicy", json!(p));
        }
    }
    if !w.scheduler_name.is_empty() {
        set("schedulerName", json!(w.scheduler_name));
    }
    Ok(ops)
}

// ---- AdmissionReview (admission.k8s.io/v1) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: String,
    kind: String,
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    #[serde(default)]
    kind: Gvk,
    #[serde(default)]
    resource: Gvr,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize, Default)]
struct Gvr {
    #[serde(default)]
    resource: String,
}

/// Decodes an AdmissionReview; the error is the 400 answer's text.
fn decode(body: &[u8]) -> Result<(String, Request), String> {
    let review: Review =
        serde_json::from_slice(body).map_err(|e| format!("invalid AdmissionReview: {e}"))?;
    if review.kind != "AdmissionReview" {
        return Err(format!(
            "invalid AdmissionReview: kind {:?}, expected AdmissionReview",
            review.kind
        ));
    }
    if !matches!(
        review.api_version.as_str(),
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    ) {
        return Err(format!(
            "invalid AdmissionReview: apiVersion {:?}, expected admission.k8s.io/v1",
            review.api_version
        ));
    }
    let request = review
        .request
        .ok_or("invalid AdmissionReview: no request")?;
    if request.uid.is_empty() {
        return Err("invalid AdmissionReview: request.uid is empty".into());
    }
    Ok((review.api_version, request))
}

/// The webhook's router: `POST /mutate-pods` and `GET /healthz`, bodies up to [`BODY_LIMIT`].
pub fn router(state: Arc<ExtenderState>) -> Router {
    Router::new()
        .route(PATH, post(review))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn count(state: &ExtenderState, outcome: &str, started: Instant) {
    state
        .metrics
        .requests
        .with_label_values(&["mutate-pods", outcome])
        .inc();
    state
        .metrics
        .duration
        .with_label_values(&["mutate-pods"])
        .observe(started.elapsed().as_secs_f64());
}

/// How long a PriorityClass read stays in use: a burst of BE pods reads it once. (A class's
/// value and preemption policy cannot change; a class deleted and made again with another
/// value is picked up after this long, pods refused by the API server meanwhile.)
pub const PRIORITY_CLASS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

fn lock_cache(
    state: &ExtenderState,
) -> std::sync::MutexGuard<'_, Option<(Instant, PriorityClassRef)>> {
    state
        .priority_class
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn resolve_priority(state: &ExtenderState) -> Result<Option<PriorityClassRef>, String> {
    let name = &state.config.webhook.priority_class_name;
    if name.is_empty() {
        return Ok(None);
    }
    if let Some((at, pc)) = lock_cache(state).as_ref()
        && at.elapsed() < PRIORITY_CLASS_TTL
        && &pc.name == name
    {
        return Ok(Some(pc.clone()));
    }
    let api = state
        .api
        .as_ref()
        .ok_or("no API client to read the PriorityClass")?;
    let pc = api
        .get_priority_class(name)
        .await
        .map_err(|e| format!("reading PriorityClass {name:?} (webhook.priorityClassName): {e}"))?;
    let pc = PriorityClassRef {
        name: name.clone(),
        value: pc.value,
        preemption_policy: pc.preemption_policy,
    };
    *lock_cache(state) = Some((Instant::now(), pc.clone()));
    Ok(Some(pc))
}

async fn review(State(state): State<Arc<ExtenderState>>, body: Body) -> Response {
    let started = Instant::now();
    let (api_version, req) = match decode(&body) {
        Ok(r) => r,
        Err(msg) => {
            count(&state, "bad-request", started);
            return (StatusCode::BAD_REQUEST, msg).into_response();
        }
    };
    let is_pod_create = req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.resource.resource == "pods"
        && req.sub_resource.as_deref().unwrap_or("").is_empty()
        && req.operation == "CREATE";
    let mut response = json!({"uid": req.uid, "allowed": true});
    let outcome = match (is_pod_create, &req.object) {
        (false, _) => "unchanged",
        (true, None) => {
            count(&state, "bad-request", started);
            return (
                StatusCode::BAD_REQUEST,
                "invalid AdmissionReview: a pod CREATE without request.object",
            )
                .into_response();
        }
        (true, Some(pod)) => {
            let namespace = req
                .namespace
                .as_deref()
                .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
                .unwrap_or("");
            let decided = if opted_in(pod, namespace, &state.config).is_some() {
                match resolve_priority(&state).await {
                    Ok(pc) => mutate(pod, namespace, &state.config, pc.as_ref()),
                    Err(e) => Err(e),
                }
            } else {
                Ok(Vec::new())
            };
            match decided {
                Ok(ops) if ops.is_empty() => "unchanged",
                Ok(ops) => match serde_json::to_vec(&ops) {
                    Ok(patch) => {
                        // ByteString serialises as base64, as the API wants `patch`.
                        response["patchType"] = json!("JSONPatch");
                        response["patch"] = json!(k8s_openapi::ByteString(patch));
                        "mutated"
                    }
                    Err(e) => {
                        count(&state, "error", started);
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("encoding the patch: {e}"),
                        )
                            .into_response();
                    }
                },
                Err(msg) => {
                    state.log_error(&format!("webhook denied a pod in {namespace}: {msg}"));
                    response["allowed"] = json!(false);
                    response["status"] = json!({"code": 400, "reason": "BadRequest",
                        "message": format!("tide: {msg}")});
                    "denied"
                }
            }
        }
    };
    count(&state, outcome, started);
    let out = json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response});
    (
        [(header::CONTENT_TYPE, "application/json")],
        out.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use serde_json::{Value, json};
    use tide_api::TideConfig;

    use super::{JsonPatchOp, PriorityClassRef, decode, mutate};

    fn apply(pod: &Value, ops: &[JsonPatchOp]) -> Result<Value, String> {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::to_value(ops).unwrap())
            .map_err(|e| e.to_string())?;
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Mutates, applies the patch with an independent JSON Patch implementation, and checks
    /// that a second pass changes nothing.
    fn rewritten(pod: &Value, ns: &str, cfg: &TideConfig, pc: Option<&PriorityClassRef>) -> Value {
        let ops = mutate(pod, ns, cfg, pc).unwrap();
        let out = apply(pod, &ops).unwrap();
        assert_eq!(
            mutate(&out, ns, cfg, pc).unwrap(),
            [],
            "not idempotent: {out}"
        );
        out
    }

    fn user_pod() -> Value {
        json!({"metadata": {"name": "train", "labels": {"tide.dev/batch": "true", "app": "x"}},
        "spec": {
            "initContainers": [{"name": "fetch", "resources": {"requests": {"cpu": "100m"}}}],
            "containers": [
                {"name": "main", "resources": {
                    "requests": {"cpu": "1500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                    "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"}}},
                {"name": "limit-only", "resources": {"limits": {"memory": "512Mi"}}},
                {"name": "none"}
            ]}})
    }

    #[test]
    fn a_be_pod_as_users_write_it_is_rewritten_once() {
        let cfg = TideConfig::default();
        let out = rewritten(&user_pod(), "default", &cfg, None);
        let c = &out["spec"]["containers"];
        assert_eq!(
            c[0]["resources"],
            json!({"requests": {"tide.dev/batch-cpu": "1500", "tide.dev/batch-memory": "1073741824", "ephemeral-storage": "1Gi"},
                   "limits": {"tide.dev/batch-cpu": "1500", "tide.dev/batch-memory": "1073741824", "nvidia.com/gpu": "1"}})
        );
        // No request: the limit is what the API server would have defaulted the request to.
        assert_eq!(
            c[1]["resources"],
            json!({"requests": {"tide.dev/batch-memory": "536870912"}, "limits": {"tide.dev/batch-memory": "536870912"}})
        );
        assert_eq!(c[2], json!({"name": "none"}));
        assert_eq!(
            out["spec"]["initContainers"][0]["resources"],
            json!({"requests": {"tide.dev/batch-cpu": "100"}, "limits": {"tide.dev/batch-cpu": "100"}})
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"tide.dev/batch": "true", "app": "x", "tide.dev/qos": "BE"})
        );
        // What Tide's own reading of the pod makes of it: BE, asking batch resources only.
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(out).unwrap();
        let req = tide_api::pod_requests(&pod, &cfg.resources).unwrap();
        assert_eq!(req.regular, tide_api::ResourceAmounts::ZERO);
        assert_eq!(req.batch.cpu.0, 1500);
        assert_eq!(req.batch.memory.0, (1 << 30) + (512 << 20));
        let class = tide_api::classify(&tide_api::pod_facts(&pod), &cfg.resources.classify_rules());
        assert_eq!(class.qos, tide_api::QosClass::Be);
    }

    #[test]
    fn other_pods_pass_untouched() {
        let cfg = TideConfig::default();
        let mut hp = user_pod();
        hp["metadata"]["labels"] = json!({"app": "x"});
        assert_eq!(mutate(&hp, "default", &cfg, None).unwrap(), []);
        // The opt-in value must match exactly.
        hp["metadata"]["labels"] = json!({"tide.dev/batch": "yes"});
        assert_eq!(mutate(&hp, "default", &cfg, None).unwrap(), []);
        // Outside the configured namespaces.
        let mut only = cfg.clone();
        only.webhook.namespaces = vec!["batch".into()];
        assert_eq!(mutate(&user_pod(), "default", &only, None).unwrap(), []);
        assert!(
            !mutate(&user_pod(), "batch", &only, None)
                .unwrap()
                .is_empty()
        );
        // Koordinator's label counts only in compatibility mode.
        let koord = json!({"metadata": {"labels": {"koordinator.sh/qosClass": "BE"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "kubernetes.io/batch-cpu": "500"}}}]}});
        assert_eq!(mutate(&koord, "default", &cfg, None).unwrap(), []);
        let mut compat = cfg;
        compat.resources.koordinator_compat = true;
        let out = rewritten(&koord, "default", &compat, None);
        assert_eq!(
            out["spec"]["containers"][0]["resources"],
            json!({"requests": {"tide.dev/batch-cpu": "1500"}, "limits": {"tide.dev/batch-cpu": "1500"}})
        );
        assert_eq!(out["metadata"]["labels"]["tide.dev/qos"], "BE");
    }

    #[test]
    fn priority_class_and_scheduler_are_set_with_the_class_values() {
        let mut cfg = TideConfig::default();
        cfg.webhook.priority_class_name = "tide-batch".into();
        cfg.webhook.scheduler_name = "tide-scheduler".into();
        let mut pod = user_pod();
        // As the API server hands it over: defaulted and with the Priority plugin's values.
        pod["spec"]["schedulerName"] = json!("default-scheduler");
        pod["spec"]["priority"] = json!(0);
        pod["spec"]["preemptionPolicy"] = json!("PreemptLowerPriority");
        let pc = PriorityClassRef {
            name: "tide-batch".into(),
            value: 5500,
            preemption_policy: Some("Never".into()),
        };
        let out = rewritten(&pod, "default", &cfg, Some(&pc));
        assert_eq!(out["spec"]["priorityClassName"], "tide-batch");
        assert_eq!(out["spec"]["priority"], 5500);
        assert_eq!(out["spec"]["preemptionPolicy"], "Never");
        assert_eq!(out["spec"]["schedulerName"], "tide-scheduler");
        // Without the resolved class the pod is refused, not half rewritten.
        let e = mutate(&pod, "default", &cfg, None).unwrap_err();
        assert!(e.contains("tide-batch"), "{e}");
    }

    #[test]
    fn pods_that_cannot_be_rewritten_are_refused_with_the_reason() {
        let cfg = TideConfig::default();
        let mut pod = user_pod();
        pod["metadata"]["labels"]["tide.dev/qos"] = json!("LS");
        let e = mutate(&pod, "default", &cfg, None).unwrap_err();
        assert!(e.contains("tide.dev/qos: LS"), "{e}");
        let mut pod = user_pod();
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("lots");
        let e = mutate(&pod, "default", &cfg, None).unwrap_err();
        assert!(
            e.contains("containers[0] (main) resource cpu") && e.contains("lots"),
            "{e}"
        );
        let mut pod = user_pod();
        pod["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("-1Gi");
        pod["spec"]["containers"][0]["resources"]["requests"] = json!({});
        assert!(mutate(&pod, "default", &cfg, None).is_err());
        let no_spec = json!({"metadata": {"labels": {"tide.dev/batch": "true"}}});
        assert!(mutate(&no_spec, "default", &cfg, None).is_err());
    }

    #[test]
    fn labels_are_created_and_escaped() {
        let mut cfg = TideConfig::default();
        cfg.resources.qos_label = "example.com/q~os".into();
        cfg.webhook.pod_selector = [("batch".to_owned(), String::new())].into();
        // A pod whose only label is the opt-in, with an empty value.
        let pod = json!({"metadata": {"labels": {"batch": ""}}, "spec": {"containers": []}});
        let out = rewritten(&pod, "default", &cfg, None);
        assert_eq!(out["metadata"]["labels"]["example.com/q~os"], "BE");
    }

    #[test]
    fn admission_reviews_are_checked() {
        for (body, want) in [
            ("", "invalid AdmissionReview"),
            ("{}", "missing field"),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
                "kind \"Pod\"",
            ),
            (
                r#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"u"}}"#,
                "apiVersion \"v1\"",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "no request",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#,
                "uid is empty",
            ),
        ] {
            let e = decode(body.as_bytes()).err().unwrap();
            assert!(e.contains(want), "{body}: {e}");
        }
        assert!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE"}}"#)
                .is_ok()
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9./~-]{0,8}".prop_map(Value::String),
            prop::sample::select(vec![
                "cpu", "memory", "1", "500m", "2Gi", "-1", "1e3", "BE", "true"
            ])
            .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "metadata",
                        "labels",
                        "spec",
                        "containers",
                        "initContainers",
                        "resources",
                        "requests",
                        "limits",
                        "cpu",
                        "memory",
                        "tide.dev/batch",
                        "tide.dev/qos",
                        "tide.dev/batch-cpu",
                        "name",
                        "x",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn quantity() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..64_000).prop_map(|m| format!("{m}m")),
            (0u32..64).prop_map(|c| c.to_string()),
            (0u32..4096).prop_map(|m| format!("{m}Mi")),
            (0u32..64).prop_map(|g| format!("{g}Gi")),
            (0u32..2000).prop_map(|k| format!("{k}k")),
        ]
    }

    fn resources() -> impl Strategy<Value = std::collections::BTreeMap<&'static str, String>> {
        let names = prop::sample::select(vec![
            "cpu",
            "memory",
            "tide.dev/batch-cpu",
            "kubernetes.io/batch-cpu",
            "kubernetes.io/batch-memory",
            "ephemeral-storage",
        ]);
        prop::collection::btree_map(names, quantity(), 0..4)
    }

    fn container() -> impl Strategy<Value = Value> {
        (resources(), resources(), any::<bool>()).prop_map(|(req, lim, has_res)| {
            let mut c = json!({"name": "c"});
            if has_res {
                c["resources"] = json!({"requests": req, "limits": lim});
            }
            c
        })
    }

    fn pod() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(container(), 0..4),
            prop::collection::vec(container(), 0..2),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["BE", "be", "bogus"])),
        )
            .prop_map(|(cs, inits, opted, koord, qos)| {
                let mut labels = json!({"app": "x"});
                if opted {
                    labels["tide.dev/batch"] = json!("true");
                }
                if koord {
                    labels["koordinator.sh/qosClass"] = json!("BE");
                }
                if let Some(q) = qos {
                    labels["tide.dev/qos"] = json!(q);
                }
                json!({"metadata": {"labels": labels}, "spec": {"containers": cs, "initContainers": inits}})
            })
    }

    fn millis(pod: &Value, kind: &str, names: &[&str]) -> u64 {
        let Some(cs) = pod["spec"][kind].as_array() else {
            return 0;
        };
        cs.iter()
            .map(|c| {
                names
                    .iter()
                    .filter_map(|n| {
                        let r = &c["resources"];
                        let v = r["requests"].get(*n).or_else(|| r["limits"].get(*n))?;
                        let q: tide_api::Quantity = v.as_str()?.parse().ok()?;
                        Some(if *n == "cpu" {
                            tide_api::MilliCores::from_quantity(&q).ok()?.0
                        } else {
                            tide_api::Bytes::from_quantity(&q).ok()?.0
                        })
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    /// A [`ClusterApi`] that only serves PriorityClasses, counting the reads.
    struct Classes(std::sync::atomic::AtomicUsize);

    impl crate::cluster::ClusterApi for Classes {
        fn evict<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<tide_kube::EvictOutcome, tide_kube::ApiError>>
        {
            Box::pin(async { Err(tide_kube::ApiError::Transport("not here".into())) })
        }
        fn bind<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<(), tide_kube::ApiError>> {
            Box::pin(async { Err(tide_kube::ApiError::Transport("not here".into())) })
        }
        fn get_pod<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<k8s_openapi::api::core::v1::Pod, tide_kube::ApiError>,
        > {
            Box::pin(async { Err(tide_kube::ApiError::Transport("not here".into())) })
        }
        fn get_priority_class<'a>(
            &'a self,
            name: &'a str,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<k8s_openapi::api::scheduling::v1::PriorityClass, tide_kube::ApiError>,
        > {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if name == "missing" {
                    return Err(tide_kube::ApiError::Refused {
                        code: 404,
                        reason: "NotFound".into(),
                        message: format!("priorityclasses.scheduling.k8s.io \"{name}\" not found"),
                    });
                }
                Ok(k8s_openapi::api::scheduling::v1::PriorityClass {
                    value: 5000 + i32::try_from(n).unwrap(),
                    ..Default::default()
                })
            })
        }
    }

    #[test]
    fn the_priority_class_is_read_once_per_ttl_and_a_missing_one_refuses() {
        use std::sync::Arc;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut cfg = TideConfig::default();
        cfg.webhook.priority_class_name = "tide-batch".into();
        let api = Arc::new(Classes(std::sync::atomic::AtomicUsize::new(0)));
        let state = crate::server::ExtenderState::new(cfg.clone())
            .unwrap()
            .with_api(api.clone());
        for _ in 0..3 {
            let pc = rt
                .block_on(super::resolve_priority(&state))
                .unwrap()
                .unwrap();
            assert_eq!((pc.name.as_str(), pc.value), ("tide-batch", 5000));
        }
        assert_eq!(api.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Past the TTL it is read again.
        super::lock_cache(&state).as_mut().unwrap().0 -= super::PRIORITY_CLASS_TTL;
        let pc = rt
            .block_on(super::resolve_priority(&state))
            .unwrap()
            .unwrap();
        assert_eq!(pc.value, 5001);
        // A class that does not exist: the error names it (the pod is refused with it).
        cfg.webhook.priority_class_name = "missing".into();
        let state = crate::server::ExtenderState::new(cfg)
            .unwrap()
            .with_api(api);
        let e = rt.block_on(super::resolve_priority(&state)).unwrap_err();
        assert!(e.contains("missing") && e.contains("404"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any JSON at all: an answer, never a panic; a patch that applies and is idempotent.
        #[test]
        fn never_panics_on_any_json(v in json_value(), compat in any::<bool>()) {
            let mut cfg = TideConfig::default();
            cfg.resources.koordinator_compat = compat;
            if let Ok(ops) = mutate(&v, "default", &cfg, None) {
                let out = apply(&v, &ops).unwrap();
                prop_assert_eq!(mutate(&out, "default", &cfg, None), Ok(Vec::new()));
            }
        }

        /// Pods: the patch applies, a second pass changes nothing, unmatched pods get no
        /// patch, every container's CPU and memory asks are conserved in the batch resources,
        /// and none of cpu/memory is left.
        #[test]
        fn patches_apply_conserve_amounts_and_are_idempotent(p in pod(), compat in any::<bool>()) {
            let mut cfg = TideConfig::default();
            cfg.resources.koordinator_compat = compat;
            let opted = p["metadata"]["labels"].get("tide.dev/batch").is_some()
                || (compat && p["metadata"]["labels"].get("koordinator.sh/qosClass").is_some());
            let ops = mutate(&p, "default", &cfg, None).unwrap();
            if !opted {
                prop_assert!(ops.is_empty());
                return Ok(());
            }
            let out = apply(&p, &ops).unwrap();
            prop_assert_eq!(mutate(&out, "default", &cfg, None), Ok(Vec::new()));
            prop_assert_eq!(&out["metadata"]["labels"]["tide.dev/qos"], "BE");
            let koord_cpu: &[&str] = if compat { &["kubernetes.io/batch-cpu"] } else { &[] };
            for kind in ["containers", "initContainers"] {
                for (i, c) in out["spec"][kind].as_array().unwrap().iter().enumerate() {
                    let before = &p["spec"][kind][i];
                    let one = json!({"spec": {"containers": [before]}});
                    let after = json!({"spec": {"containers": [c]}});
                    let cpu_before = millis(&one, "containers", &["cpu"])
                        + millis(&one, "containers", koord_cpu);
                    let touched = ["cpu", "memory"].iter().chain(if compat {
                        ["kubernetes.io/batch-cpu", "kubernetes.io/batch-memory"].iter()
                    } else {
                        [].iter()
                    }).any(|n| {
                        before["resources"]["requests"].get(*n).is_some()
                            || before["resources"]["limits"].get(*n).is_some()
                    });
                    if touched {
                        prop_assert_eq!(
                            millis(&after, "containers", &["tide.dev/batch-cpu"]),
                            cpu_before + millis(&one, "containers", &["tide.dev/batch-cpu"])
                        );
                        for side in ["requests", "limits"] {
                            prop_assert!(c["resources"][side].get("cpu").is_none());
                            prop_assert!(c["resources"][side].get("memory").is_none());
                        }
                        prop_assert_eq!(
                            &c["resources"]["requests"].get("tide.dev/batch-memory"),
                            &c["resources"]["limits"].get("tide.dev/batch-memory")
                        );
                    } else {
                        prop_assert_eq!(c, before);
                    }
                }
            }
        }
    }
}
