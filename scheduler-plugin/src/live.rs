//! The live feed: `kube` watchers on Nodes, Pods and NodeEstimates fold their events into the
//! [`ClusterIndex`], and a publisher turns the index into a new
//! snapshot at most once per interval. The extender becomes ready once all three have listed.
//!
//! When the API server cannot be reached the watchers retry with backoff; the snapshot keeps
//! its last state, NodeEstimates age past `estimator.staleAfter`, and BE admission stops by
//! itself while HP pods are still placed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tide_api::NodeEstimate;

use crate::server::ExtenderState;
use crate::snapshot::{ClusterIndex, Watched};

/// Runs the three watchers and the publisher until the task is dropped.
pub async fn run(client: kube::Client, state: Arc<ExtenderState>, publish_every: Duration) {
    let nodes = watch::<Node>(
        Api::all(client.clone()),
        Arc::clone(&state),
        Watched::Nodes,
        ClusterIndex::apply_node,
        ClusterIndex::delete_node,
    );
    let pods = watch::<Pod>(
        Api::all(client.clone()),
        Arc::clone(&state),
        Watched::Pods,
        ClusterIndex::apply_pod,
        ClusterIndex::delete_pod,
    );
    let probe = probe_api(Api::all(client.clone()), Arc::clone(&state));
    let estimates = watch::<NodeEstimate>(
        Api::all(client),
        Arc::clone(&state),
        Watched::Estimates,
        ClusterIndex::apply_estimate,
        ClusterIndex::delete_estimate,
    );
    let relief = relieve(Arc::clone(&state), publish_every);
    let publisher = publish(state, publish_every);
    tokio::join!(nodes, pods, estimates, publisher, relief, probe);
}

/// How often the API server is probed, and how long one probe may take.
const PROBE_EVERY: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes the API server every [`PROBE_EVERY`] with the cheapest read of what the extender
/// watches (one Node), for `/readyz`: an idle watch says nothing about reachability.
async fn probe_api(nodes: Api<Node>, state: Arc<ExtenderState>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let params = kube::api::ListParams::default().limit(1);
    loop {
        tick.tick().await;
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, nodes.list(&params)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        let now = (state.clock)();
        let mut p = state
            .api_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.running = true;
        match outcome {
            Ok(()) => {
                p.ok_at = Some(now);
                p.error = None;
            }
            Err(e) => p.error = Some(e),
        }
    }
}

/// Relieves nodes where the watch showed an HP pod bound by someone else
/// ([`ClusterIndex::bound_elsewhere`]), one node at a time, checked every `every`.
async fn relieve(state: Arc<ExtenderState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !state.all_synced() {
            continue;
        }
        let work = std::mem::take(&mut state.lock_index().bound_elsewhere);
        for (uid, node) in work {
            let evicted = crate::binder::relieve(&state, &uid, &node).await;
            if !evicted.is_empty() {
                tracing::warn!(
                    node = %node,
                    evicted = %evicted.join(", "),
                    "node passed the eviction water level when an HP pod was bound there by another binder; BE pods evicted"
                );
            }
        }
    }
}

fn label(what: Watched) -> &'static str {
    match what {
        Watched::Nodes => "nodes",
        Watched::Pods => "pods",
        Watched::Estimates => "nodeestimates",
    }
}

async fn watch<K>(
    api: Api<K>,
    state: Arc<ExtenderState>,
    what: Watched,
    apply: fn(&mut ClusterIndex, &K),
    delete: fn(&mut ClusterIndex, &K),
) where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let mut done = false;
        match event {
            Ok(ev) => {
                let mut idx = state.lock_index();
                match ev {
                    Event::Apply(o) | Event::InitApply(o) => apply(&mut idx, &o),
                    Event::Delete(o) => delete(&mut idx, &o),
                    Event::Init => idx.begin_resync(what),
                    Event::InitDone => {
                        idx.end_resync(what);
                        done = true;
                    }
                }
            }
            Err(e) => {
                state
                    .metrics
                    .watch_errors
                    .with_label_values(&[label(what)])
                    .inc();
                state.log_error(&format!("watching {}: {e}", label(what)));
                continue;
            }
        }
        if done {
            state.mark_synced(what);
        }
        state.dirty.store(true, Ordering::Release);
    }
}

async fn publish(state: Arc<ExtenderState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.all_synced() && state.dirty.swap(false, Ordering::AcqRel) {
            let snapshot = {
                let mut idx = state.lock_index();
                let s = idx.snapshot();
                idx.prune_reservations(s.generation, (state.clock)());
                s
            };
            state.publish(snapshot);
        }
    }
}
