//! `tide-kube`: the Kubernetes API access the extender and the agent share — building a
//! client the standard way, bounding every call by a timeout, mapping API errors, and the
//! Eviction API (policy/v1, falling back to policy/v1beta1 on servers before 1.22). Tests run it against `tide-testkit`'s fake API server.

pub mod errlog;
pub mod logging;
pub use errlog::ErrorLog;

use std::path::Path;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

/// What an eviction request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictOutcome {
    /// Accepted: the pod is being deleted.
    Evicted,
    /// Refused with `429` (a PodDisruptionBudget does not allow it now); the server's message.
    Blocked(String),
    /// The pod no longer exists (`404`).
    Gone,
}

/// An API call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No answer in time.
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error status.
    #[error("the API server refused ({code} {reason}): {message}")]
    Refused {
        /// HTTP status.
        code: u16,
        /// Kubernetes `Status.reason`.
        reason: String,
        /// Kubernetes `Status.message`.
        message: String,
    },
    /// The request could not be made or its answer read.
    #[error("API request failed: {0}")]
    Transport(String),
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Runs `fut` for at most `timeout`, mapping kube's errors to [`ApiError`].
pub async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ApiError::Timeout(timeout)),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(ApiError::Refused {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        }),
        Ok(Err(e)) => Err(ApiError::Transport(e.to_string())),
    }
}

/// Set once a server refused a policy/v1 `Eviction` body (Kubernetes before 1.22 serves only
/// policy/v1beta1), so later evictions start with the version that worked.
static EVICTION_V1BETA1: AtomicBool = AtomicBool::new(false);

/// The `Eviction` body in `policy/{version}`.
fn eviction_body(version: &str, namespace: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": format!("policy/{version}"),
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    })
}

/// Whether the server refused the body's version (not the eviction itself).
fn version_refused(e: &ApiError) -> bool {
    matches!(e, ApiError::Refused { code: 400, message, .. }
        if message.contains("no kind \"Eviction\" is registered"))
}

/// Evicts a pod with an `Eviction` (policy/v1, or policy/v1beta1 where the server has no v1,
/// as `kubectl drain` falls back): `429` is [`EvictOutcome::Blocked`], `404`
/// [`EvictOutcome::Gone`].
pub async fn evict(
    client: &kube::Client,
    timeout: Duration,
    namespace: &str,
    name: &str,
) -> Result<EvictOutcome, ApiError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let post = |version: &'static str| {
        let pods = pods.clone();
        async move {
            let body = eviction_body(version, namespace, name);
            let r: Result<kube::core::Status, _> = bounded(
                timeout,
                pods.create_subresource("eviction", name, &PostParams::default(), &body),
            )
            .await;
            r
        }
    };
    let beta_first = EVICTION_V1BETA1.load(Ordering::Relaxed);
    let (first, second) = if beta_first {
        ("v1beta1", "v1")
    } else {
        ("v1", "v1beta1")
    };
    let mut res = post(first).await;
    if res.as_ref().is_err_and(version_refused) {
        res = post(second).await;
        if !res.as_ref().is_err_and(version_refused) {
            EVICTION_V1BETA1.store(!beta_first, Ordering::Relaxed);
        }
    }
    match res {
        Ok(_) => Ok(EvictOutcome::Evicted),
        Err(ApiError::Refused {
            code: 429, message, ..
        }) => Ok(EvictOutcome::Blocked(message)),
        Err(ApiError::Refused { code: 404, .. }) => Ok(EvictOutcome::Gone),
        Err(e) => Err(e),
    }
}

/// A `kube` client reached the standard way: `kubeconfig` when given, else `KUBECONFIG` /
/// `~/.kube/config`, else the in-cluster service account. Client-side retries are off: a `429`
/// from an eviction is an answer (a PodDisruptionBudget), not something to wait out.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("finding the API server (in-cluster or KUBECONFIG): {e}"))?,
    };
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))
}

/// A client for a plain-HTTP API server URL without credentials (the test fake, or
/// `kubectl proxy`), with retries off.
pub fn connect_url(url: &str) -> Result<kube::Client, String> {
    let uri = url
        .parse()
        .map_err(|e| format!("API server URL {url:?}: {e}"))?;
    let mut config = kube::Config::new(uri);
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))
}
