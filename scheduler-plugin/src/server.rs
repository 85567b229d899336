//! The HTTP face of the extender: decode, call the pure verbs, encode. Client mistakes get a
//! 4xx naming the problem; nothing the client sends can make it panic or answer 5xx.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tide_api::TideConfig;

use crate::binder;
use crate::cluster::ClusterApi;
use crate::extender::{self, ClusterSnapshot};
use crate::metrics::Metrics;
use crate::snapshot::{ClusterIndex, Watched};
use crate::wire::{ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult};

/// Default request body limit: a full NodeList of 5,000 nodes is about 50 MB.
pub const DEFAULT_BODY_LIMIT: usize = 128 << 20;

/// Everything a request handler reads.
pub struct ExtenderState {
    /// The shared configuration.
    pub config: TideConfig,
    /// The latest cluster snapshot, replaced whole by the watchers.
    pub snapshot: RwLock<Arc<ClusterSnapshot>>,
    /// Set once the caches have synced.
    pub ready: AtomicBool,
    /// Metrics.
    pub metrics: Metrics,
    /// Seconds now (Unix time live; a fixed clock in tests).
    pub clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The watch-fed index the snapshot is made from (and the binder reads).
    pub index: Mutex<ClusterIndex>,
    /// Set when the index changed since the last published snapshot.
    pub dirty: AtomicBool,
    /// The API the binder writes through; without it `bind` answers with an error.
    pub api: Option<Arc<dyn ClusterApi>>,
    synced: [AtomicBool; 3],
    errors: Mutex<tide_kube::ErrorLog>,
    /// The admission webhook's PriorityClass as last read, and when.
    pub(crate) priority_class: Mutex<Option<(Instant, crate::webhook::PriorityClassRef)>>,
    /// The latest API-server reachability probe ([`crate::live::run`] runs it).
    pub api_probe: Mutex<ApiProbe>,
}

/// What the API-server probe last saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiProbe {
    /// Whether a probe runs at all (an extender fed without watches has none).
    pub running: bool,
    /// When the API server last answered (seconds).
    pub ok_at: Option<u64>,
    /// The last failure, if the latest probe failed.
    pub error: Option<String>,
}

/// How long without an answer from the API server before the extender is not ready.
pub const API_PROBE_STALE_SECS: u64 = 30;

/// Why the extender cannot do its job (`Ok`: ready): its caches not synced, or the API server
/// not answering the probe for [`API_PROBE_STALE_SECS`] — its view of the cluster is then
/// going stale. Pure.
pub fn readiness(synced: bool, probe: &ApiProbe, now: u64) -> Result<(), String> {
    if !synced {
        return Err("caches not synced".to_owned());
    }
    if probe.running
        && probe
            .ok_at
            .is_none_or(|t| now.saturating_sub(t) > API_PROBE_STALE_SECS)
    {
        return Err(format!(
            "API server not reachable: {}",
            probe.error.as_deref().unwrap_or("no answer yet")
        ));
    }
    Ok(())
}

impl ExtenderState {
    /// State with an empty snapshot, not ready, on the system clock.
    pub fn new(config: TideConfig) -> Result<Self, prometheus::Error> {
        Ok(Self {
            snapshot: RwLock::new(Arc::new(ClusterSnapshot::default())),
            ready: AtomicBool::new(false),
            metrics: Metrics::new()?,
            clock: Box::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
            index: Mutex::new(ClusterIndex::new(&config)),
            api_probe: Mutex::new(ApiProbe::default()),
            dirty: AtomicBool::new(false),
            api: None,
            synced: Default::default(),
            errors: Mutex::new(tide_kube::ErrorLog::new(std::time::Duration::from_secs(
                600,
            ))),
            priority_class: Mutex::new(None),
            config,
        })
    }

    /// The same state writing through `api` (enables `bind`).
    #[must_use]
    pub fn with_api(mut self, api: Arc<dyn ClusterApi>) -> Self {
        self.api = Some(api);
        self
    }

    /// The index, even if a panicking holder poisoned the lock (its data stay consistent:
    /// every update is a single method call).
    pub fn lock_index(&self) -> MutexGuard<'_, ClusterIndex> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs `message` to stderr once per cause, then a count at most every ten minutes
    /// ([`tide_kube::ErrorLog`]): a throttling or failing API server meets every request with
    /// the same error.
    pub fn log_error(&self, message: &str) {
        self.log_as(&tide_kube::ErrorLog::cause(message), message);
    }

    fn log_as(&self, cause: &str, message: &str) {
        let mut log = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(line) = log.line(cause, message, std::time::Instant::now()) {
            tracing::warn!(cause, "{line}");
        }
    }

    /// A failed API call of the binder (`call`: `get-pod`, `bind`, `evict`; `what`: the
    /// objects it was about): counted by HTTP status (`timeout`, `transport` when the server
    /// did not answer) and logged once per call and status, whichever pod met it.
    pub fn api_error(&self, call: &str, what: &str, e: &crate::cluster::ApiError) {
        let code = match e {
            tide_kube::ApiError::Refused { code, .. } => code.to_string(),
            tide_kube::ApiError::Timeout(_) => "timeout".to_owned(),
            tide_kube::ApiError::Transport(_) => "transport".to_owned(),
        };
        self.metrics
            .api_errors
            .with_label_values(&[call, code.as_str()])
            .inc();
        self.log_as(&format!("{call}: {code}"), &format!("{call} {what}: {e}"));
    }

    /// Records that the watcher of `what` has listed everything once.
    pub fn mark_synced(&self, what: Watched) {
        self.synced[what as usize].store(true, Ordering::Release);
    }

    /// Whether all three watchers have listed once.
    pub fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// Replaces the snapshot (watchers call this) and marks the extender ready.
    pub fn publish(&self, snapshot: ClusterSnapshot) {
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::new(snapshot);
        }
        self.ready.store(true, Ordering::Release);
    }

    fn current(&self) -> Arc<ClusterSnapshot> {
        self.snapshot
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |s| Arc::clone(&s))
    }
}

/// Checks a `--path-prefix`: empty, or `/` followed by path segments of unreserved URL
/// characters (`/extender`, `/tide/v1/`); a trailing `/` is dropped. Anything else (no
/// leading `/`, empty segments, `{`, `*`, spaces) is an error naming what is wrong, so the
/// router is never asked to mount a path it cannot.
pub fn parse_path_prefix(s: &str) -> Result<String, String> {
    let p = s.trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!(
            "{s:?} must start with '/' (the path part of the scheduler's urlPrefix, e.g. /{s})"
        ));
    };
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err(format!("{s:?} has an empty path segment"));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
        {
            return Err(format!(
                "{s:?} has {c:?}: path segments are letters, digits, '-', '.', '_' and '~'"
            ));
        }
    }
    Ok(p.to_owned())
}

/// The router, mounted under `prefix` (the path part of the scheduler's `urlPrefix`, e.g.
/// `/extender`, or empty; see [`parse_path_prefix`]).
pub fn router(state: Arc<ExtenderState>, prefix: &str, body_limit: usize) -> Router {
    let verbs = Router::new()
        .route("/filter", post(filter))
        .route("/prioritize", post(prioritize))
        .route("/bind", post(bind))
        .layer(DefaultBodyLimit::max(body_limit));
    let verbs = match prefix.trim_end_matches('/') {
        "" => verbs,
        p => Router::new().nest(p, verbs),
    };
    verbs
        .with_state(Arc::clone(&state))
        .merge(public_router(state))
}

/// The paths a client without a certificate may call under mutual TLS (the kubelet's probes,
/// Prometheus): `/healthz`, `/readyz`, `/metrics`. They change nothing and reveal no pod.
pub fn public_router(state: Arc<ExtenderState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn json(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(v) => ([(header::CONTENT_TYPE, "application/json")], v).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the response failed: {e}"),
        )
            .into_response(),
    }
}

fn bad_request(state: &ExtenderState, verb: &str, msg: String) -> Response {
    state
        .metrics
        .requests
        .with_label_values(&[verb, "bad-request"])
        .inc();
    (StatusCode::BAD_REQUEST, msg).into_response()
}

fn decode<'a>(body: &'a [u8], verb: &str) -> Result<ExtenderArgs<'a>, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid {verb} request: {e}"))
}

async fn filter(State(state): State<Arc<ExtenderState>>, body: Bytes) -> Response {
    let started = Instant::now();
    let args = match decode(&body, "filter") {
        Ok(a) => a,
        Err(msg) => return bad_request(&state, "filter", msg),
    };
    let snap = state.current();
    let pending = state.lock_index().pending(snap.generation);
    let out = match extender::filter(&args, &snap, &pending, &state.config, (state.clock)()) {
        Ok(o) => o,
        Err(e) => return bad_request(&state, "filter", e.to_string()),
    };
    for kind in &out.refusal_kinds {
        state.metrics.refusals.with_label_values(&[kind]).inc();
    }
    state
        .metrics
        .requests
        .with_label_values(&["filter", "ok"])
        .inc();
    state
        .metrics
        .duration
        .with_label_values(&["filter"])
        .observe(started.elapsed().as_secs_f64());
    json(&out.result)
}

async fn prioritize(State(state): State<Arc<ExtenderState>>, body: Bytes) -> Response {
    let started = Instant::now();
    let args = match decode(&body, "prioritize") {
        Ok(a) => a,
        Err(msg) => return bad_request(&state, "prioritize", msg),
    };
    let snap = state.current();
    let pending = state.lock_index().pending(snap.generation);
    let out = match extender::prioritize(&args, &snap, &pending, &state.config) {
        Ok(o) => o,
        Err(e) => return bad_request(&state, "prioritize", e.to_string()),
    };
    // kube-scheduler will most likely take the top-scored node: hold the pod's requests there
    // so the next pods of a burst see them before the bind does.
    if let (Some(best), Some(uid), Ok((pod, _))) = (
        out.iter().max_by_key(|h| h.score),
        args.pod.metadata.uid.as_deref(),
        extender::pod_view(&args.pod, &state.config),
    ) {
        state
            .lock_index()
            .reserve(uid, &best.host, pod, (state.clock)());
    }
    state
        .metrics
        .requests
        .with_label_values(&["prioritize", "ok"])
        .inc();
    state
        .metrics
        .duration
        .with_label_values(&["prioritize"])
        .observe(started.elapsed().as_secs_f64());
    json(&extender::shifted(out))
}

async fn bind(State(state): State<Arc<ExtenderState>>, body: Bytes) -> Response {
    let started = Instant::now();
    let args: ExtenderBindingArgs = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(&state, "bind", format!("invalid bind request: {e}")),
    };
    let outcome = binder::bind(&state, &args).await;
    let (label, error) = match outcome {
        Ok(()) => ("ok", String::new()),
        Err(e) => ("failed", e),
    };
    state
        .metrics
        .requests
        .with_label_values(&["bind", label])
        .inc();
    state
        .metrics
        .duration
        .with_label_values(&["bind"])
        .observe(started.elapsed().as_secs_f64());
    json(&ExtenderBindingResult { error })
}

async fn readyz(State(state): State<Arc<ExtenderState>>) -> Response {
    let probe = state
        .api_probe
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match readiness(state.ready.load(Ordering::Acquire), &probe, (state.clock)()) {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State(state): State<Arc<ExtenderState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{ApiProbe, parse_path_prefix, readiness};

    #[test]
    fn readiness_needs_synced_caches_and_a_recent_api_answer() {
        let answered = ApiProbe {
            running: true,
            ok_at: Some(100),
            error: None,
        };
        assert_eq!(readiness(true, &answered, 120), Ok(()));
        assert_eq!(
            readiness(false, &answered, 120),
            Err("caches not synced".to_owned())
        );
        let failing = ApiProbe {
            error: Some("connection refused".into()),
            ..answered.clone()
        };
        assert_eq!(readiness(true, &failing, 125), Ok(()), "within 30 s");
        let err = readiness(true, &failing, 131).unwrap_err();
        assert!(err.contains("connection refused"), "{err}");
        let never = ApiProbe {
            running: true,
            ..ApiProbe::default()
        };
        assert!(readiness(true, &never, 0).is_err());
        // No probe (an extender fed without watches): caches decide.
        assert_eq!(readiness(true, &ApiProbe::default(), 10_000), Ok(()));
    }

    #[test]
    fn path_prefix_is_checked_not_left_to_the_router() {
        for (ok, want) in [
            ("", ""),
            ("/", ""),
            ("/extender", "/extender"),
            ("/tide/v1/", "/tide/v1"),
        ] {
            assert_eq!(parse_path_prefix(ok).as_deref(), Ok(want));
        }
        // `extender` without its slash made the router panic (issue 18).
        let e = parse_path_prefix("extender").unwrap_err();
        assert!(e.contains("must start with '/'"), "{e}");
        for bad in ["//x", "/a//b", "/{id}", "/*rest", "/a b", "/ä"] {
            assert!(parse_path_prefix(bad).is_err(), "{bad}");
        }
        // Whatever the check lets through, the router mounts.
        for ok in ["/extender", "/a.b/c-d/e_f~"] {
            let state = std::sync::Arc::new(
                super::ExtenderState::new(tide_api::TideConfig::default()).unwrap(),
            );
            let _ = super::router(state, &parse_path_prefix(ok).unwrap(), 1024);
        }
    }
}
