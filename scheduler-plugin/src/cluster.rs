//! The narrow interface to the Kubernetes API server the extender writes through (evict,
//! bind, read one pod), and its implementation on the `kube` client (client construction and
//! eviction shared with the agent in `tide-kube`). Tests run the same implementation against
//! the in-process fake API server (`tide-testkit`).

use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tide_kube::bounded;

pub use tide_kube::{ApiError, EvictOutcome, connect, connect_url};

/// The writes (and the one read) the extender makes. Object-safe so the server can hold any
/// implementation.
pub trait ClusterApi: Send + Sync {
    /// Evicts a pod through the Eviction API (policy/v1; policy/v1beta1 before Kubernetes 1.22).
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

    /// Reads one PriorityClass (the admission webhook's `webhook.priorityClassName`).
    fn get_priority_class<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<PriorityClass, ApiError>>;
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
}

impl ClusterApi for KubeApi {
    fn evict<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<EvictOutcome, ApiError>> {
        Box::pin(tide_kube::evict(
            &self.client,
            self.timeout,
            namespace,
            name,
        ))
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
            let _: kube::core::Status = bounded(
                self.timeout,
                pods.create_subresource("binding", name, &PostParams::default(), &binding),
            )
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
            bounded(self.timeout, pods.get(name)).await
        })
    }

    fn get_priority_class<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<PriorityClass, ApiError>> {
        Box::pin(async move {
            let classes: Api<PriorityClass> = Api::all(self.client.clone());
            bounded(self.timeout, classes.get(name)).await
        })
    }
}
