//! An in-process fake Kubernetes API server for tests. It speaks the real REST paths and JSON
//! shapes the Tide components use, so the real `kube` client and its watch machinery run
//! against it unchanged:
//!
//! - list (`limit` / `continue` paging, `resourceVersion` in list metadata) and watch
//!   (newline-delimited `{"type", "object"}` events from a resource version, `timeoutSeconds`,
//!   `ADDED` for every object when watching from version `0`), with the field selectors
//!   `spec.nodeName=` and `metadata.name=`;
//! - `pods/eviction` (policy/v1 `Eviction`: `201` + `Status` Success, `429` `TooManyRequests`
//!   when a PodDisruptionBudget protects the pod, `404` when it is gone); graceful deletion
//!   marks `deletionTimestamp`;
//! - `pods/binding` (`Binding`: sets `spec.nodeName`; `409` when already bound or the UID
//!   precondition fails);
//! - `PATCH` on `nodes/{name}/status` and `nodeestimates/{name}/status` (JSON merge patch),
//!   `POST` to create a NodeEstimate, `GET` of one object.
//!
//! Errors are `Status` objects with the real `reason` and `code`. Every request is recorded
//! for assertions, and the server can be made unavailable (`503`) to test an unreachable API.
//! Not modelled: authentication, admission, label selectors (rejected with `400`), and
//! history compaction (`410 Gone`).

// Handlers return early with a ready `Response`; boxing it would only add noise to test code.
#![allow(clippy::result_large_err)]

pub mod k8s;
pub mod kubelet;
pub mod netns;
pub mod node;
pub mod soak;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The kinds of object the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Node (cluster-scoped).
    Node,
    /// core/v1 Pod (namespaced).
    Pod,
    /// tide.dev/v1alpha1 NodeEstimate (cluster-scoped).
    NodeEstimate,
}

impl Kind {
    fn of(obj: &Value) -> Option<Kind> {
        match (obj["apiVersion"].as_str()?, obj["kind"].as_str()?) {
            ("v1", "Node") => Some(Kind::Node),
            ("v1", "Pod") => Some(Kind::Pod),
            ("tide.dev/v1alpha1", "NodeEstimate") => Some(Kind::NodeEstimate),
            _ => None,
        }
    }

    fn list_meta(self) -> (&'static str, &'static str) {
        match self {
            Kind::Node => ("v1", "NodeList"),
            Kind::Pod => ("v1", "PodList"),
            Kind::NodeEstimate => ("tide.dev/v1alpha1", "NodeEstimateList"),
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::NodeEstimate => "nodeestimates",
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string (may be empty).
    pub query: String,
    /// Decoded JSON body (`Null` when none).
    pub body: Value,
}

type Key = (Kind, String, String);

struct WatchEvent {
    rv: u64,
    kind: Kind,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    events: Vec<WatchEvent>,
    protected: HashSet<(String, String)>,
    unavailable: bool,
    log: Vec<Recorded>,
}

struct Inner {
    store: Mutex<Store>,
    changed: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn key_of(kind: Kind, obj: &Value) -> Key {
    let ns = match kind {
        Kind::Pod => obj["metadata"]["namespace"].as_str().unwrap_or("default"),
        _ => "",
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    (kind, ns.to_owned(), name.to_owned())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| String::new(), |t| t.to_string())
}

impl Store {
    /// Stores `obj` (create or replace), stamping resourceVersion, uid and creationTimestamp,
    /// and records the watch event.
    fn put(&mut self, kind: Kind, mut obj: Value) -> Value {
        self.rv += 1;
        let key = key_of(kind, &obj);
        let old = self.objects.get(&key).cloned();
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(self.rv.to_string());
        if meta["uid"].is_null() {
            meta["uid"] = match &old {
                Some(o) => o["metadata"]["uid"].clone(),
                None => {
                    self.uid += 1;
                    json!(format!("00000000-0000-4000-8000-{:012}", self.uid))
                }
            };
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        if kind == Kind::Pod && meta["namespace"].is_null() {
            meta["namespace"] = json!("default");
        }
        self.objects.insert(key, obj.clone());
        self.events.push(WatchEvent {
            rv: self.rv,
            kind,
            old,
            new: Some(obj.clone()),
        });
        obj
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let old = self.objects.remove(key)?;
        self.rv += 1;
        let mut last = old.clone();
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.events.push(WatchEvent {
            rv: self.rv,
            kind: key.0,
            old: Some(old.clone()),
            new: None,
        });
        Some(old)
    }
}

/// A running fake API server on a loopback port. Stops when dropped.
pub struct FakeApi {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A field selector the fake understands.
#[derive(Debug, Clone, Default)]
struct Selector {
    node_name: Option<String>,
    name: Option<String>,
}

impl Selector {
    fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut sel = Selector::default();
        for term in raw.unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            match term.split_once('=') {
                Some(("spec.nodeName", v)) => sel.node_name = Some(v.to_owned()),
                Some(("metadata.name", v)) => sel.name = Some(v.to_owned()),
                _ => return Err(format!("field selector {term:?} is not supported")),
            }
        }
        Ok(sel)
    }

    fn matches(&self, obj: &Value) -> bool {
        let node_ok = self
            .node_name
            .as_ref()
            .is_none_or(|n| obj["spec"]["nodeName"].as_str().unwrap_or_default() == n);
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|n| obj["metadata"]["name"].as_str() == Some(n));
        node_ok && name_ok
    }
}

#[derive(Debug, Default)]
struct Query {
    watch: bool,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
    limit: Option<usize>,
    continue_token: Option<String>,
    field_selector: Option<String>,
    label_selector: Option<String>,
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(raw: Option<&str>) -> Query {
    let mut q = Query::default();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode_component(v);
        match k {
            "watch" => q.watch = v == "true" || v == "1",
            "resourceVersion" => q.resource_version = Some(v),
            "timeoutSeconds" => q.timeout_seconds = v.parse().ok(),
            "limit" => q.limit = v.parse().ok().filter(|&l| l > 0),
            "continue" => q.continue_token = Some(v).filter(|c| !c.is_empty()),
            "fieldSelector" => q.field_selector = Some(v).filter(|c| !c.is_empty()),
            "labelSelector" => q.label_selector = Some(v).filter(|c| !c.is_empty()),
            _ => {}
        }
    }
    q
}

/// A Kubernetes `Status` failure response.
fn status(code: StatusCode, reason: &str, message: &str, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
        "details": details, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn success(code: StatusCode) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()});
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn object(code: StatusCode, obj: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        obj.to_string(),
    )
        .into_response()
}

fn not_found(kind: Kind, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", kind.plural()),
        json!({"name": name, "kind": kind.plural()}),
    )
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
}

/// RFC 7386 JSON merge patch.
/// Applies a JSON merge patch (RFC 7386) to `target`, as the API server does for
/// `application/merge-patch+json`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl FakeApi {
    /// Starts the fake on `127.0.0.1` on a free port.
    pub async fn start() -> std::io::Result<FakeApi> {
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::default()),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = routes(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeApi { inner, addr, task })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces an object (its `apiVersion`/`kind` say which). Returns it as stored.
    ///
    /// # Panics
    /// On an object of a kind the fake does not serve (a test bug).
    pub fn apply(&self, obj: Value) -> Value {
        let kind = Kind::of(&obj).unwrap_or_else(|| panic!("fake API does not serve {obj}"));
        let stored = self.inner.lock().put(kind, obj);
        self.inner.changed.notify_waiters();
        stored
    }

    /// Deletes an object at once (as the kubelet finishing a graceful deletion would).
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let ns = if kind == Kind::Pod { namespace } else { "" };
        let old = self
            .inner
            .lock()
            .remove(&(kind, ns.to_owned(), name.to_owned()));
        self.inner.changed.notify_waiters();
        old
    }

    /// The stored object, if any.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let ns = if kind == Kind::Pod { namespace } else { "" };
        self.inner
            .lock()
            .objects
            .get(&(kind, ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Makes evictions of this pod fail with `429` as a PodDisruptionBudget would.
    pub fn protect_with_pdb(&self, namespace: &str, name: &str) {
        self.inner
            .lock()
            .protected
            .insert((namespace.to_owned(), name.to_owned()));
    }

    /// While set, every request is answered `503 ServiceUnavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.lock().unavailable = unavailable;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().log.clone()
    }

    /// The recorded requests with this method whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }
}

fn routes(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/nodes/{name}", get(get_node))
        .route(
            "/api/v1/nodes/{name}/status",
            get(get_node).patch(patch_node_status),
        )
        .route("/api/v1/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods_ns))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/eviction",
            axum::routing::post(evict),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/binding",
            axum::routing::post(bind),
        )
        .route(
            "/apis/tide.dev/v1alpha1/nodeestimates",
            get(list_estimates).post(create_estimate),
        )
        .route(
            "/apis/tide.dev/v1alpha1/nodeestimates/{name}",
            get(get_estimate),
        )
        .route(
            "/apis/tide.dev/v1alpha1/nodeestimates/{name}/status",
            get(get_estimate).patch(patch_estimate_status),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&inner),
            record,
        ))
        .with_state(inner)
}

async fn record(
    State(inner): State<Arc<Inner>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return bad_request("request body too large");
    };
    {
        let mut store = inner.lock();
        store.log.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
        if store.unavailable {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
                json!({}),
            );
        }
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn list_nodes(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Response {
    list_or_watch(inner, Kind::Node, None, q.as_deref()).await
}

async fn list_pods(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Response {
    list_or_watch(inner, Kind::Pod, None, q.as_deref()).await
}

async fn list_pods_ns(
    State(inner): State<Arc<Inner>>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    list_or_watch(inner, Kind::Pod, Some(ns), q.as_deref()).await
}

async fn list_estimates(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Response {
    list_or_watch(inner, Kind::NodeEstimate, None, q.as_deref()).await
}

fn get_one(inner: &Inner, kind: Kind, ns: &str, name: &str) -> Response {
    match inner
        .lock()
        .objects
        .get(&(kind, ns.to_owned(), name.to_owned()))
    {
        Some(obj) => object(StatusCode::OK, obj),
        None => not_found(kind, name),
    }
}

async fn get_node(State(inner): State<Arc<Inner>>, Path(name): Path<String>) -> Response {
    get_one(&inner, Kind::Node, "", &name)
}

async fn get_pod(
    State(inner): State<Arc<Inner>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    get_one(&inner, Kind::Pod, &ns, &name)
}

async fn get_estimate(State(inner): State<Arc<Inner>>, Path(name): Path<String>) -> Response {
    get_one(&inner, Kind::NodeEstimate, "", &name)
}

async fn list_or_watch(
    inner: Arc<Inner>,
    kind: Kind,
    ns: Option<String>,
    raw: Option<&str>,
) -> Response {
    let q = parse_query(raw);
    if let Some(l) = &q.label_selector {
        return bad_request(&format!("fake API: labelSelector {l:?} is not supported"));
    }
    let sel = match Selector::parse(q.field_selector.as_deref()) {
        Ok(s) => s,
        Err(e) => return bad_request(&format!("fake API: {e}")),
    };
    let in_scope = move |obj: &Value| {
        ns.as_ref()
            .is_none_or(|n| obj["metadata"]["namespace"].as_str() == Some(n))
            && sel.matches(obj)
    };
    if q.watch {
        return watch(inner, kind, q, in_scope);
    }
    let store = inner.lock();
    let items: Vec<&Value> = store
        .objects
        .range((kind, String::new(), String::new())..)
        .take_while(|(k, _)| k.0 == kind)
        .map(|(_, v)| v)
        .filter(|v| in_scope(v))
        .collect();
    let (list_rv, offset) = match q.continue_token.as_deref().map(|c| c.split_once(':')) {
        None => (store.rv, 0),
        Some(Some((rv, off))) => match (rv.parse::<u64>(), off.parse::<usize>()) {
            (Ok(rv), Ok(off)) => (rv, off),
            _ => return bad_request("invalid continue token"),
        },
        Some(None) => return bad_request("invalid continue token"),
    };
    let end = q
        .limit
        .map_or(items.len(), |l| (offset + l).min(items.len()));
    let page: Vec<&Value> = items.get(offset..end).unwrap_or_default().to_vec();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if end < items.len() {
        metadata["continue"] = json!(format!("{list_rv}:{end}"));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    let (api_version, list_kind) = kind.list_meta();
    object(
        StatusCode::OK,
        &json!({"apiVersion": api_version, "kind": list_kind, "metadata": metadata, "items": page}),
    )
}

fn event_line(kind_str: &str, obj: &Value) -> Bytes {
    let mut line = json!({"type": kind_str, "object": obj}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The watch events for one change as a watcher with `in_scope` sees it: a change into scope
/// is `ADDED`/`MODIFIED`, out of scope `DELETED`.
fn translate(ev: &WatchEvent, in_scope: &impl Fn(&Value) -> bool) -> Option<Bytes> {
    let was = ev.old.as_ref().filter(|o| in_scope(o));
    let is = ev.new.as_ref().filter(|n| in_scope(n));
    match (was, is) {
        (None, Some(n)) => Some(event_line("ADDED", n)),
        (Some(_), Some(n)) => Some(event_line("MODIFIED", n)),
        (Some(o), None) => {
            let mut last = ev.new.clone().unwrap_or_else(|| o.clone());
            last["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
            Some(event_line("DELETED", &last))
        }
        (None, None) => None,
    }
}

fn watch(
    inner: Arc<Inner>,
    kind: Kind,
    q: Query,
    in_scope: impl Fn(&Value) -> bool + Send + Sync + 'static,
) -> Response {
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.timeout_seconds.unwrap_or(1800));
    let from = q
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse::<u64>().ok())
        .filter(|&rv| rv > 0);
    // Watching from "0" or nothing: every current object as ADDED first.
    let (initial, cursor) = {
        let store = inner.lock();
        match from {
            Some(rv) => (Vec::new(), rv),
            None => {
                let objs = store
                    .objects
                    .iter()
                    .filter(|(k, v)| k.0 == kind && in_scope(v))
                    .map(|(_, v)| event_line("ADDED", v))
                    .collect();
                (objs, store.rv)
            }
        }
    };
    let state = (inner, cursor, initial, in_scope);
    let stream = futures_util::stream::unfold(
        state,
        move |(inner, mut cursor, mut pending, in_scope)| async move {
            loop {
                if !pending.is_empty() {
                    let chunk: Vec<u8> =
                        pending.drain(..).flat_map(|b: Bytes| b.to_vec()).collect();
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                        (inner, cursor, pending, in_scope),
                    ));
                }
                let notified = inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let store = inner.lock();
                    let start = store.events.partition_point(|e| e.rv <= cursor);
                    for ev in &store.events[start..] {
                        cursor = ev.rv;
                        if ev.kind == kind
                            && let Some(line) = translate(ev, &in_scope)
                        {
                            pending.push(line);
                        }
                    }
                }
                if !pending.is_empty() {
                    continue;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return None;
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("invalid JSON body: {e}")))
}

fn check_kind(body: &Value, api_version: &str, kind: &str) -> Result<(), Response> {
    let ok = |field: &str, want: &str| body[field].as_str().is_none_or(|v| v == want);
    if ok("apiVersion", api_version) && ok("kind", kind) {
        Ok(())
    } else {
        Err(bad_request(&format!(
            "expected {api_version} {kind}, got {} {}",
            body["apiVersion"], body["kind"]
        )))
    }
}

async fn evict(
    State(inner): State<Arc<Inner>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_kind(&body, "policy/v1", "Eviction") {
        return r;
    }
    if body["metadata"]["name"].as_str() != Some(name.as_str()) {
        return bad_request(&format!(
            "name in URL does not match name in Eviction object: {name} vs {}",
            body["metadata"]["name"]
        ));
    }
    let response = {
        let mut store = inner.lock();
        let key = (Kind::Pod, ns.clone(), name.clone());
        let Some(pod) = store.objects.get(&key).cloned() else {
            return not_found(Kind::Pod, &name);
        };
        if store.protected.contains(&(ns.clone(), name.clone())) {
            return status(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {name}-pdb needs 1 healthy pods and has 1 currently")}]}),
            );
        }
        if pod["metadata"]["deletionTimestamp"].is_null() {
            let mut pod = pod;
            pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            pod["metadata"]["deletionGracePeriodSeconds"] = json!(30);
            store.put(Kind::Pod, pod);
        }
        success(StatusCode::CREATED)
    };
    inner.changed.notify_waiters();
    response
}

async fn bind(
    State(inner): State<Arc<Inner>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_kind(&body, "v1", "Binding") {
        return r;
    }
    let Some(node) = body["target"]["name"].as_str().filter(|n| !n.is_empty()) else {
        return bad_request("Binding target.name is required");
    };
    if body["target"]["kind"].as_str().is_some_and(|k| k != "Node") {
        return bad_request("Binding target.kind must be Node");
    }
    let response = {
        let mut store = inner.lock();
        let Some(mut pod) = store
            .objects
            .get(&(Kind::Pod, ns.clone(), name.clone()))
            .cloned()
        else {
            return not_found(Kind::Pod, &name);
        };
        if let Some(uid) = body["metadata"]["uid"].as_str()
            && pod["metadata"]["uid"].as_str() != Some(uid)
        {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    pod["metadata"]["uid"].as_str().unwrap_or_default()
                ),
                json!({"name": name, "kind": "pods/binding"}),
            );
        }
        if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
                ),
                json!({"name": name, "kind": "pods/binding"}),
            );
        }
        pod["spec"]["nodeName"] = json!(node);
        let condition =
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()});
        match pod["status"]["conditions"].as_array_mut() {
            Some(c) => c.push(condition),
            None => pod["status"]["conditions"] = json!([condition]),
        }
        store.put(Kind::Pod, pod);
        success(StatusCode::CREATED)
    };
    inner.changed.notify_waiters();
    response
}

fn patch_status(
    inner: &Inner,
    kind: Kind,
    name: &str,
    content_type: Option<&str>,
    body: &Bytes,
) -> Response {
    if content_type != Some("application/merge-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "fake API: only application/merge-patch+json is supported, got {content_type:?}"
            ),
            json!({}),
        );
    }
    let patch = match parse_body(body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let stored = {
        let mut store = inner.lock();
        let Some(mut obj) = store
            .objects
            .get(&(kind, String::new(), name.to_owned()))
            .cloned()
        else {
            return not_found(kind, name);
        };
        // The status subresource ignores everything but status.
        if let Some(st) = patch.get("status") {
            merge_patch(&mut obj["status"], st);
        }
        store.put(kind, obj)
    };
    inner.changed.notify_waiters();
    object(StatusCode::OK, &stored)
}

async fn patch_node_status(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    patch_status(&inner, Kind::Node, &name, ct, &body)
}

async fn patch_estimate_status(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    patch_status(&inner, Kind::NodeEstimate, &name, ct, &body)
}

async fn create_estimate(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let obj = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if Kind::of(&obj) != Some(Kind::NodeEstimate) {
        return bad_request("expected tide.dev/v1alpha1 NodeEstimate");
    }
    let Some(name) = obj["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
    else {
        return bad_request("metadata.name: Required value");
    };
    let stored = {
        let mut store = inner.lock();
        if store
            .objects
            .contains_key(&(Kind::NodeEstimate, String::new(), name.clone()))
        {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("nodeestimates.tide.dev \"{name}\" already exists"),
                json!({"name": name, "group": "tide.dev", "kind": "nodeestimates"}),
            );
        }
        store.put(Kind::NodeEstimate, obj)
    };
    inner.changed.notify_waiters();
    object(StatusCode::CREATED, &stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some(
            "watch=true&resourceVersion=12&fieldSelector=spec.nodeName%3Dn-1&timeoutSeconds=5&limit=500",
        ));
        assert!(q.watch);
        assert_eq!(q.resource_version.as_deref(), Some("12"));
        assert_eq!(q.field_selector.as_deref(), Some("spec.nodeName=n-1"));
        assert_eq!(q.timeout_seconds, Some(5));
        assert_eq!(q.limit, Some(500));
    }
}
