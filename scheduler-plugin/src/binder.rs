//! The `bind` verb: pre-evict BE pods when an HP pod would push its node past the eviction
//! water level, then create the Binding.
//!
//! Victims come from [`plan_pre_eviction`] in the one victim order. A `429` from the
//! Eviction API (a PodDisruptionBudget) leaves that pod in place and the plan moves down the
//! order; if the node still cannot get below the level because of such refusals, the bind fails
//! with a reason and kube-scheduler retries the pod. If the HP pods alone are above the level,
//! evicting every BE pod is all that can be done and the bind goes ahead: HP placement is never
//! blocked by BE accounting. HP pods are never victims.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use crate::cluster::{ClusterApi, EvictOutcome};
use crate::placement::{filter, plan_pre_eviction};
use crate::server::ExtenderState;
use crate::snapshot::ClusterIndex;
use crate::wire::ExtenderBindingArgs;

/// The next step of a bind.
enum Step {
    /// Evict these (UID, namespace, name), in order.
    Evict(Vec<(String, String, String)>),
    /// No (more) eviction needed or possible: bind.
    Bind,
    /// PodDisruptionBudgets keep the node above the level.
    Refuse(String),
}

fn next_step(
    state: &ExtenderState,
    args: &ExtenderBindingArgs,
    blocked: &HashSet<String>,
) -> Result<Step, String> {
    let idx = state.lock_index();
    let Some(pod) = idx.pod(&args.pod_uid) else {
        return Err(format!(
            "pod {}/{} (uid {}) is not known to the extender",
            args.pod_namespace, args.pod_name, args.pod_uid
        ));
    };
    if !pod.high_priority() {
        // Re-checked against every pod bound or assumed since the filter ran.
        if let Some(node) = idx.node_view(&args.node)
            && pod.node.as_deref() != Some(args.node.as_str())
            && let Err(r) = filter(&pod.view(), &node, &state.config, (state.clock)())
        {
            return Ok(Step::Refuse(format!(
                "node {} no longer admits best-effort pod {}/{}: {r}",
                args.node, args.pod_namespace, args.pod_name
            )));
        }
        return Ok(Step::Bind);
    }
    let Some(node) = idx.node_view(&args.node) else {
        // kube-scheduler knows a node the watch has not shown yet: nothing to evict from.
        return Ok(Step::Bind);
    };
    let be_pods = idx.be_pods_on(&args.node);
    let plan = plan_pre_eviction(&pod.view(), &node, &be_pods, blocked, &state.config);
    if !plan.victims.is_empty() {
        return Ok(Step::Evict(named(&idx, plan.victims)));
    }
    if plan.enough || blocked.is_empty() {
        return Ok(Step::Bind);
    }
    let mut names: Vec<String> = blocked
        .iter()
        .filter_map(|uid| idx.pod(uid).map(|p| format!("{}/{}", p.namespace, p.name)))
        .collect();
    names.sort();
    Ok(Step::Refuse(format!(
        "node {} would stay above the eviction water level: PodDisruptionBudgets refused evicting {}",
        args.node,
        names.join(", ")
    )))
}

/// Relieves `node` after HP pod `uid` was bound there without this extender (kube-scheduler's
/// default binder binds HP pods when the extender is not the binder for them, as before
/// Kubernetes 1.30): the same plan as a bind-time pre-eviction, made after the fact.
/// PodDisruptionBudget refusals move down the victim order; errors end the attempt (the node
/// agent's eviction remains the safety net). Returns the pods evicted.
pub async fn relieve(state: &ExtenderState, uid: &str, node: &str) -> Vec<String> {
    let mut evicted = Vec::new();
    let Some(api) = state.api.as_deref() else {
        return evicted;
    };
    let mut blocked = HashSet::new();
    // Each round evicts at least one pod or stops: bounded by the pods on the node.
    loop {
        let victims: Vec<(String, String, String)> = {
            let idx = state.lock_index();
            let (Some(view), Some(pod)) = (idx.node_view(node), idx.pod(uid)) else {
                return evicted;
            };
            let mut pod = pod.view();
            if view.estimate.is_none() {
                // Without an estimate the HP requests, this pod's included, stand for HP.
                pod.request = tide_api::ResourceAmounts::ZERO;
            }
            let be = idx.be_pods_on(node);
            named(
                &idx,
                plan_pre_eviction(&pod, &view, &be, &blocked, &state.config).victims,
            )
        };
        if victims.is_empty() {
            return evicted;
        }
        match evict_in_order(state, api, victims, &mut blocked).await {
            Ok(done) => evicted.extend(done),
            // Counted and logged (once per cause) where the call failed.
            Err(_) => return evicted,
        }
    }
}

/// Evicts `victims` (UID, namespace, name) in order until a PodDisruptionBudget refuses one
/// (its UID goes into `blocked`). Evicted pods stop counting as victims at once. Returns the
/// evicted pods as `namespace/name`, or the pod whose eviction failed and why.
async fn evict_in_order(
    state: &ExtenderState,
    api: &dyn ClusterApi,
    victims: Vec<(String, String, String)>,
    blocked: &mut HashSet<String>,
) -> Result<Vec<String>, (String, crate::cluster::ApiError)> {
    let mut evicted = Vec::new();
    for (uid, ns, name) in victims {
        let outcome = api.evict(&ns, &name).await;
        state
            .metrics
            .pre_evictions
            .with_label_values(&[outcome_label(&outcome)])
            .inc();
        match outcome {
            Ok(EvictOutcome::Evicted | EvictOutcome::Gone) => {
                state.lock_index().mark_leaving(&uid);
                state.dirty.store(true, Ordering::Release);
                evicted.push(format!("{ns}/{name}"));
            }
            Ok(EvictOutcome::Blocked(_)) => {
                blocked.insert(uid);
                break;
            }
            Err(e) => {
                state.api_error("evict", &format!("{ns}/{name}"), &e);
                return Err((format!("{ns}/{name}"), e));
            }
        }
    }
    Ok(evicted)
}

/// UIDs with the namespace and name the index knows them by.
fn named(idx: &ClusterIndex, uids: Vec<String>) -> Vec<(String, String, String)> {
    uids.into_iter()
        .filter_map(|uid| {
            let p = idx.pod(&uid)?;
            Some((uid, p.namespace.clone(), p.name.clone()))
        })
        .collect()
}

fn outcome_label(outcome: &Result<EvictOutcome, crate::cluster::ApiError>) -> &'static str {
    match outcome {
        Ok(EvictOutcome::Evicted) => "evicted",
        Ok(EvictOutcome::Gone) => "gone",
        Ok(EvictOutcome::Blocked(_)) => "pdb-refused",
        Err(_) => "error",
    }
}

/// Binds `args`' pod to its node, pre-evicting BE pods first when needed. `Err` carries the
/// reason kube-scheduler gets in `ExtenderBindingResult.Error`.
pub async fn bind(state: &ExtenderState, args: &ExtenderBindingArgs) -> Result<(), String> {
    let api: &dyn ClusterApi = state
        .api
        .as_deref()
        .ok_or("this extender has no API client; bind is not available")?;
    if state.lock_index().pod(&args.pod_uid).is_none() {
        // Created moments ago and not delivered by the watch yet: read it.
        let pod = api
            .get_pod(&args.pod_namespace, &args.pod_name)
            .await
            .map_err(|e| {
                state.api_error(
                    "get-pod",
                    &format!("{}/{}", args.pod_namespace, args.pod_name),
                    &e,
                );
                format!("reading pod {}/{}: {e}", args.pod_namespace, args.pod_name)
            })?;
        state.lock_index().apply_pod(&pod);
    }
    let mut blocked = HashSet::new();
    loop {
        match next_step(state, args, &blocked)? {
            Step::Bind => break,
            Step::Refuse(reason) => return Err(reason),
            Step::Evict(victims) => {
                if let Err((pod, e)) = evict_in_order(state, api, victims, &mut blocked).await {
                    return Err(format!(
                        "pre-evicting {pod} for {}/{} failed, not binding: {e}",
                        args.pod_namespace, args.pod_name
                    ));
                }
            }
        }
    }
    api.bind(
        &args.pod_namespace,
        &args.pod_name,
        &args.pod_uid,
        &args.node,
    )
    .await
    .map_err(|e| {
        state.api_error(
            "bind",
            &format!("{}/{} to {}", args.pod_namespace, args.pod_name, args.node),
            &e,
        );
        format!(
            "binding {}/{} to {}: {e}",
            args.pod_namespace, args.pod_name, args.node
        )
    })?;
    state.lock_index().assume_bound(&args.pod_uid, &args.node);
    state.dirty.store(true, Ordering::Release);
    Ok(())
}
