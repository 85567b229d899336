//! The narrow interface to the Kubernetes API server the extender writes through (evict,
//! bind, read one pod), and its implementation on the `kube` client. Tests run the same
//! implementation against the in-process fake API server (`tide-testkit`).

use std::path::Path;
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

/// The writes (and the one read) the extender makes. Object-safe so the server can hold any
/// implementation.
pub trait ClusterApi: Send + Sync {
    /// Evicts a pod through the Eviction API (policy/v1).
    fn evict<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<EvictOutcome, ApiError>>;

    /// Binds a pod to a node (a `Binding` with the pod's UID as precondition).
    fn bind<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Reads one pod (for a pod the watch has not delivered yet).
    fn get_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Pod, ApiError>>;
}

/// [`ClusterApi`] on a `kube` client, each call bounded by a timeout.
#[derive(Clone)]
pub struct KubeApi {
    client: kube::Client,
    timeout: Duration,
}

impl KubeApi {
    /// Wraps a client; every call gives up after `timeout`.
    pub fn new(client: kube::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(ApiError::Timeout(self.timeout)),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(s))) => Err(ApiError::Refused {
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            }),
            Ok(Err(e)) => Err(ApiError::Transport(e.to_string())),
        }
    }
}

impl ClusterApi for KubeApi {
    fn evict<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<EvictOutcome, ApiError>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let eviction = Eviction {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    ..ObjectMeta::default()
                },
                delete_options: None,
            };
            let res: Result<kube::core::Status, _> = self
                .bounded(pods.create_subresource(
                    "eviction",
                    name,
                    &PostParams::default(),
                    &eviction,
                ))
                .await;
            match res {
                Ok(_) => Ok(EvictOutcome::Evicted),
                Err(ApiError::Refused {
                    code: 429, message, ..
                }) => Ok(EvictOutcome::Blocked(message)),
                Err(ApiError::Refused { code: 404, .. }) => Ok(EvictOutcome::Gone),
                Err(e) => Err(e),
            }
        })
    }

    fn bind<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    uid: Some(uid.to_owned()).filter(|u| !u.is_empty()),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.to_owned()),
                    ..ObjectReference::default()
                },
            };
            let _: kube::core::Status = self
                .bounded(pods.create_subresource("binding", name, &PostParams::default(), &binding))
                .await?;
            Ok(())
        })
    }

    fn get_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Pod, ApiError>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            self.bounded(pods.get(name)).await
        })
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

/// A client for a plain-HTTP API server URL (the test fake), with retries off.
pub fn connect_url(url: &str) -> Result<kube::Client, String> {
    let uri = url
        .parse()
        .map_err(|e| format!("API server URL {url:?}: {e}"))?;
    let mut config = kube::Config::new(uri);
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))
}
