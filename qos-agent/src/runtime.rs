//! The live agent: a watch on this node's pods, the tick loop (collect → decide → apply →
//! evict → publish → checkpoint), and the `/metrics` + `/healthz` server. API calls go through
//! `tide-kube` (bounded, retries off) so a slow or unreachable API server never stalls the
//! node-local work: suppression and `oom_score_adj` keep being applied, and the planner may
//! fall back to local kills above the critical level.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tide_api::{TideConfig, classify, node_allocatable, pod_facts, pod_requests};
use tide_kube::{ApiError, EvictOutcome, bounded};

use crate::agent::{Agent, Tick};
use crate::executor::apply;
use crate::metrics::AgentMetrics;
use crate::observe::{PodInfo, series_id};
use crate::plan::Action;
use crate::publish::{
    Published, estimate_object, estimate_patch, node_resources_patch, node_shows, should_publish,
};
use crate::sandbox::{SandboxView, Sandboxes, fresh_cold};

/// Pods on this node as the API reports them.
#[derive(Debug, Default)]
pub struct PodIndex {
    /// By UID.
    pub infos: HashMap<String, PodInfo>,
    /// UID → (namespace, name), for evictions.
    pub names: HashMap<String, (String, String)>,
    resync: Option<Vec<String>>,
    /// Whether the watch has listed once.
    pub synced: bool,
}

impl PodIndex {
    fn apply(&mut self, pod: &Pod, cfg: &TideConfig) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(r) = &mut self.resync {
            r.push(uid.clone());
        }
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let Ok(requests) = pod_requests(pod, &cfg.resources) else {
            return;
        };
        if finished {
            self.delete(&uid);
            return;
        }
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let workload = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.iter().find(|r| r.controller == Some(true)))
            .map(|r| series_id(&r.uid));
        self.infos.insert(
            uid.clone(),
            PodInfo {
                uid: uid.clone(),
                name: format!("{ns}/{name}"),
                class: classify(&pod_facts(pod), &cfg.resources.classify_rules()),
                requests,
                workload,
                running_since: tide_api::pod_running_since(pod),
            },
        );
        self.names.insert(uid, (ns, name));
    }

    fn delete(&mut self, uid: &str) {
        self.infos.remove(uid);
        self.names.remove(uid);
    }
}

/// Settings of the live agent.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Each API call's timeout.
    pub api_timeout: Duration,
    /// Where to checkpoint the estimator (`None`: no checkpoint).
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint every this many ticks.
    pub checkpoint_every: u32,
}

/// Shared state of the live agent.
pub struct Runtime {
    /// The agent.
    pub agent: Mutex<Agent>,
    /// Pods of this node.
    pub pods: Mutex<PodIndex>,
    /// Metrics.
    pub metrics: AgentMetrics,
    /// Links to the sandbox VMs' cold-memory daemons.
    pub sandboxes: Mutex<Sandboxes>,
    client: kube::Client,
    opts: RuntimeOptions,
    ticks: Mutex<u64>,
    api_ok: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one live tick did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickReport {
    /// cgroup/proc files written.
    pub writes: usize,
    /// Evictions requested: `namespace/name` and the outcome.
    pub evictions: Vec<(String, String)>,
    /// Whether the estimate and node resources were published.
    pub published: bool,
    /// Errors, by stage.
    pub errors: Vec<String>,
}

impl Runtime {
    /// The live agent around `agent`.
    pub fn new(
        agent: Agent,
        client: kube::Client,
        opts: RuntimeOptions,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            agent: Mutex::new(agent),
            pods: Mutex::new(PodIndex::default()),
            metrics: AgentMetrics::new()?,
            sandboxes: Mutex::new(Sandboxes::new(crate::sandbox::SandboxOptions::default())),
            client,
            opts,
            ticks: Mutex::new(0),
            api_ok: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// The same runtime linked to sandbox VMs.
    #[must_use]
    pub fn with_sandboxes(mut self, sandboxes: Sandboxes) -> Self {
        self.sandboxes = Mutex::new(sandboxes);
        self
    }

    /// Watches this node's pods into [`Runtime::pods`] until dropped.
    pub async fn watch_pods(self: Arc<Self>) {
        let (node, cfg) = {
            let a = lock(&self.agent);
            (a.setup.node_name.clone(), a.config.clone())
        };
        let api: Api<Pod> = Api::all(self.client.clone());
        let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let mut stream = watcher::watcher(api, wc).default_backoff().boxed();
        let mut log = tide_kube::ErrorLog::new(Duration::from_secs(600));
        while let Some(ev) = stream.next().await {
            let mut idx = lock(&self.pods);
            match ev {
                Ok(Event::Apply(p) | Event::InitApply(p)) => idx.apply(&p, &cfg),
                Ok(Event::Delete(p)) => {
                    if let Some(uid) = p.metadata.uid.as_deref() {
                        idx.delete(uid);
                    }
                }
                Ok(Event::Init) => idx.resync = Some(Vec::new()),
                Ok(Event::InitDone) => {
                    if let Some(seen) = idx.resync.take() {
                        let seen: std::collections::HashSet<String> = seen.into_iter().collect();
                        idx.infos.retain(|k, _| seen.contains(k));
                        idx.names.retain(|k, _| seen.contains(k));
                    }
                    idx.synced = true;
                }
                Err(e) => {
                    self.metrics.errors.with_label_values(&["watch"]).inc();
                    let message = format!("watching pods: {e}");
                    if let Some(line) = log.line(
                        &tide_kube::ErrorLog::cause(&message),
                        &message,
                        Instant::now(),
                    ) {
                        tracing::warn!("{line}");
                    }
                }
            }
        }
    }

    /// Reads this node's Node object: allocatable (for the estimate) and whether the API
    /// answers. Returns the object as JSON.
    async fn refresh_node(&self, report: &mut TickReport) -> Option<Value> {
        let node = lock(&self.agent).setup.node_name.clone();
        let nodes: Api<Node> = Api::all(self.client.clone());
        match bounded(self.opts.api_timeout, nodes.get(&node)).await {
            Ok(n) => {
                self.api_ok
                    .store(true, std::sync::atomic::Ordering::Release);
                let alloc = node_allocatable(&n);
                if alloc.cpu.0 > 0 && alloc.memory.0 > 0 {
                    lock(&self.agent).setup.allocatable = alloc;
                }
                Some(serde_json::to_value(&n).unwrap_or(Value::Null))
            }
            Err(e) => {
                self.api_ok
                    .store(false, std::sync::atomic::Ordering::Release);
                self.metrics.errors.with_label_values(&["publish"]).inc();
                report.errors.push(format!("reading node {node}: {e}"));
                None
            }
        }
    }

    /// One tick at `now_ms` (Unix ms, the tick's start).
    pub async fn tick(&self, now_ms: u64) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport::default();
        let node_json = self.refresh_node(&mut report).await;
        // CPU rates are counter deltas over time deltas: time them where the counters are
        // read, not where the tick began, or a Node read that is slow on one tick and fast
        // on the next inflates or deflates every rate (seen on a real node: HP + system
        // measured above the node's capacity, and a BE pod evicted for it).
        let now_ms =
            now_ms.saturating_add(u64::try_from(started.elapsed().as_millis()).unwrap_or(0));
        let infos = lock(&self.pods).infos.clone();
        // The API counts as reachable once the pod watch has listed and while the last call
        // (the Node read each tick) answered.
        let api_reachable =
            lock(&self.pods).synced && self.api_ok.load(std::sync::atomic::Ordering::Acquire);
        let sandbox_cold = self.sandbox_cold(&mut report);
        // Whether this tick's CPU sets and quota all landed (metrics say "applied" only then).
        let cpu_applied;
        let tick = {
            let mut agent = lock(&self.agent);
            let mut collected = match agent.collect() {
                Ok(c) => c,
                Err(e) => {
                    self.metrics.errors.with_label_values(&["collect"]).inc();
                    report.errors.push(format!("collect: {e}"));
                    return report;
                }
            };
            for e in &collected.errors {
                self.metrics.errors.with_label_values(&["collect"]).inc();
                report.errors.push(format!("collect: {e}"));
            }
            collected.sandbox_cold = sandbox_cold;
            self.record_collected(&collected, &infos);
            let tick = agent.decide(now_ms, &collected, &infos, api_reachable);
            let applied = agent.apply(&tick.desired);
            self.metrics.cgroup_writes.inc_by(applied.writes as u64);
            report.writes = applied.writes;
            cpu_applied = applied.cpu_errors == 0;
            for e in applied.errors {
                self.metrics.errors.with_label_values(&["apply"]).inc();
                report.errors.push(format!("apply: {e}"));
            }
            tick
        };
        self.record(&tick, &infos);
        self.act(&tick, now_ms / 1000, cpu_applied, &mut report)
            .await;
        if let Some(node_json) = &node_json {
            self.publish(&tick, node_json, now_ms / 1000, &mut report)
                .await;
        }
        let n = {
            let mut t = lock(&self.ticks);
            *t += 1;
            *t
        };
        if let Some(path) = &self.opts.checkpoint
            && n % u64::from(self.opts.checkpoint_every.max(1)) == 0
            && let Err(e) = lock(&self.agent).checkpoint(path)
        {
            self.metrics.errors.with_label_values(&["checkpoint"]).inc();
            report.errors.push(e);
        }
        self.metrics.refresh_process();
        self.metrics
            .tick_duration
            .observe(started.elapsed().as_secs_f64());
        report
    }

    /// Links new sandboxes, records each one's state; returns the cold memory the fresh ones
    /// report.
    fn sandbox_cold(&self, report: &mut TickReport) -> u64 {
        let mut sb = lock(&self.sandboxes);
        if !sb.is_enabled() {
            return 0;
        }
        for e in sb.refresh() {
            self.metrics.errors.with_label_values(&["sandbox"]).inc();
            report.errors.push(e);
        }
        let views = sb.views(Instant::now());
        drop(sb);
        self.record_sandboxes(&views);
        fresh_cold(&views)
    }

    #[allow(clippy::cast_precision_loss)]
    fn record_sandboxes(&self, views: &[SandboxView]) {
        let m = &self.metrics;
        m.sandbox_cold.reset();
        for v in views.iter().filter(|v| v.fresh) {
            m.sandbox_cold
                .with_label_values(&[v.endpoint.as_str()])
                .set(v.remaining_cold as f64);
        }
        let count = |f: fn(&SandboxView) -> bool| {
            i64::try_from(views.iter().filter(|v| f(v)).count()).unwrap_or(i64::MAX)
        };
        m.sandboxes
            .with_label_values(&["linked"])
            .set(count(|_| true));
        m.sandboxes
            .with_label_values(&["connected"])
            .set(count(|v| v.connected));
        m.sandboxes
            .with_label_values(&["fresh"])
            .set(count(|v| v.fresh));
    }

    #[allow(clippy::cast_precision_loss)]
    fn record_collected(&self, c: &crate::agent::Collected, infos: &HashMap<String, PodInfo>) {
        let (mut hp, mut be) = (0u64, 0u64);
        for (uid, u) in &c.usage {
            let is_be = infos
                .get(uid)
                .is_some_and(|i| !i.class.qos.is_high_priority());
            if is_be {
                be = be.saturating_add(u.throttled_ns);
            } else {
                hp = hp.saturating_add(u.throttled_ns);
            }
        }
        self.metrics
            .throttled
            .with_label_values(&["hp"])
            .set(hp as f64 / 1e9);
        self.metrics
            .throttled
            .with_label_values(&["be"])
            .set(be as f64 / 1e9);
        if let Some(v) = c.pods_pressure.0 {
            self.metrics.pressure.with_label_values(&["cpu"]).set(v);
        }
        if let Some(v) = c.pods_pressure.1 {
            self.metrics.pressure.with_label_values(&["memory"]).set(v);
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn record(&self, tick: &Tick, infos: &HashMap<String, PodInfo>) {
        let m = &self.metrics;
        let o = &tick.observation;
        for (class, a) in [("hp", o.hp), ("be", o.be), ("system", o.system)] {
            m.usage
                .with_label_values(&[class, "cpu"])
                .set(a.cpu.0 as f64);
            m.usage
                .with_label_values(&[class, "memory"])
                .set(a.memory.0 as f64);
        }
        for (r, e) in [("cpu", &tick.status.cpu), ("memory", &tick.status.memory)] {
            m.estimate
                .with_label_values(&["predicted_peak", r])
                .set(e.predicted_peak as f64);
            m.estimate
                .with_label_values(&["margin", r])
                .set(e.margin as f64);
            m.estimate
                .with_label_values(&["cold_credit", r])
                .set(e.cold_credit as f64);
            m.estimate
                .with_label_values(&["reclaimable", r])
                .set(e.reclaimable as f64);
        }
        let limit = tick.plan.actions.iter().find_map(|a| match a {
            Action::SetBeCpuLimit { limit, .. } => Some(limit.0),
            _ => None,
        });
        m.be_cpu_limit
            .set(i64::try_from(limit.unwrap_or(tick.status.cpu.allocatable)).unwrap_or(i64::MAX));
        m.be_cpus
            .set(i64::try_from(tick.pinning.be.len()).unwrap_or(0));
        m.oom_score_adj.reset();
        for i in infos.values() {
            m.oom_score_adj
                .with_label_values(&[i.name.as_str(), i.class.qos.as_str()])
                .set(f64::from(crate::oom::oom_score_adj(&i.class)));
        }
    }

    async fn act(&self, tick: &Tick, now: u64, cpu_applied: bool, report: &mut TickReport) {
        // Every tick: the sandboxes get this tick's reclaim ask, or the standing target.
        let reclaim = tick.plan.actions.iter().find_map(|a| match a {
            Action::ReclaimColdMemory { bytes } => Some(bytes.0),
            _ => None,
        });
        let asked = lock(&self.sandboxes).request_reclaim(reclaim.unwrap_or(0), Instant::now());
        for a in &tick.plan.actions {
            match a {
                Action::SetBeCpuLimit { reason, .. } => {
                    // "applied" only when every CPU set and quota write landed (issue 18).
                    let outcome = if cpu_applied { "applied" } else { "failed" };
                    self.metrics
                        .actions
                        .with_label_values(&["suppress-cpu", reason.as_str(), outcome])
                        .inc();
                }
                Action::ReclaimColdMemory { .. } => {
                    // The credit came from fresh sandbox reports; "unavailable" means they all
                    // went stale or disconnected since the tick began.
                    let outcome = if asked > 0 {
                        "requested"
                    } else {
                        "unavailable"
                    };
                    self.metrics
                        .actions
                        .with_label_values(&["reclaim-cold-memory", "memory-reclaim", outcome])
                        .inc();
                }
                Action::EvictBe { uid, reason } => {
                    let name = lock(&self.pods).names.get(uid).cloned();
                    let Some((ns, name)) = name else { continue };
                    let outcome =
                        tide_kube::evict(&self.client, self.opts.api_timeout, &ns, &name).await;
                    let label = match &outcome {
                        Ok(EvictOutcome::Evicted) => "evicted",
                        Ok(EvictOutcome::Blocked(_)) => "pdb-refused",
                        Ok(EvictOutcome::Gone) => "gone",
                        Err(_) => "error",
                    };
                    if let Err(e) = &outcome {
                        self.metrics.errors.with_label_values(&["evict"]).inc();
                        report.errors.push(format!("evict {ns}/{name}: {e}"));
                    }
                    self.metrics
                        .actions
                        .with_label_values(&["evict", reason.as_str(), label])
                        .inc();
                    lock(&self.agent).evicted_at(now);
                    report
                        .evictions
                        .push((format!("{ns}/{name}"), label.to_owned()));
                }
                Action::KillBe { uid, reason } => {
                    let outcome = self.kill_local(uid);
                    let label = if outcome.is_ok() { "killed" } else { "error" };
                    if let Err(e) = outcome {
                        report.errors.push(format!("kill {uid}: {e}"));
                    }
                    self.metrics
                        .actions
                        .with_label_values(&["kill", reason.as_str(), label])
                        .inc();
                }
            }
        }
    }

    /// Last resort when the API server cannot be reached: kill every process of a BE pod.
    fn kill_local(&self, uid: &str) -> Result<(), String> {
        let agent = lock(&self.agent);
        let layout = &agent.setup.layout;
        let pods = layout.discover().map_err(|e| e.to_string())?;
        let pod = pods
            .iter()
            .find(|p| p.uid == uid)
            .ok_or("pod cgroup gone")?;
        if let crate::cgroup::Hierarchy::V2(_) = layout.hierarchy
            && let Some(dir) = layout.path("", &pod.path)
            && dir.join("cgroup.kill").exists()
        {
            return std::fs::write(dir.join("cgroup.kill"), "1").map_err(|e| e.to_string());
        }
        for (_, rel) in &pod.containers {
            for pid in layout.pids(rel).map_err(|e| e.to_string())? {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        Ok(())
    }

    async fn publish(&self, tick: &Tick, node_json: &Value, now: u64, report: &mut TickReport) {
        let (node, names, intervals, published, batch) = {
            let a = lock(&self.agent);
            (
                a.setup.node_name.clone(),
                a.config.resources.clone(),
                a.config.intervals.clone(),
                a.published.clone(),
                {
                    // What the Node advertises (`tide_api::batch_advertised`).
                    (tick.batch.cpu.0, tick.batch.memory.0)
                },
            )
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        let t = self.opts.api_timeout;
        // Re-advertise at once if the kubelet reset our extended resources.
        let reset = published.at.is_some()
            && !node_shows(
                node_json,
                &names,
                published.reclaimable.0,
                published.reclaimable.1,
            );
        let alloc = (tick.status.cpu.allocatable, tick.status.memory.allocatable);
        if !(reset || should_publish(&published, now, batch, alloc, &intervals)) {
            return;
        }
        let pp = PatchParams::default();
        let estimates: Api<tide_api::NodeEstimate> = Api::all(self.client.clone());
        let patch = estimate_patch(&tick.status);
        let mut res = bounded(t, estimates.patch_status(&node, &pp, &Patch::Merge(&patch))).await;
        if matches!(res, Err(ApiError::Refused { code: 404, .. })) {
            let obj: tide_api::NodeEstimate = match serde_json::from_value(estimate_object(&node)) {
                Ok(o) => o,
                Err(e) => {
                    report.errors.push(format!("building NodeEstimate: {e}"));
                    return;
                }
            };
            res = match bounded(t, estimates.create(&PostParams::default(), &obj)).await {
                Ok(_) => {
                    bounded(t, estimates.patch_status(&node, &pp, &Patch::Merge(&patch))).await
                }
                Err(e) => Err(e),
            };
        }
        let node_patch = node_resources_patch(&names, batch.0, batch.1);
        let node_res = bounded(
            t,
            nodes.patch_status(&node, &pp, &Patch::Merge(&node_patch)),
        )
        .await;
        match (res, node_res) {
            (Ok(_), Ok(_)) => {
                lock(&self.agent).published = Published {
                    at: Some(now),
                    reclaimable: batch,
                };
                report.published = true;
            }
            (r1, r2) => {
                for e in [r1.err(), r2.err()].into_iter().flatten() {
                    self.metrics.errors.with_label_values(&["publish"]).inc();
                    report.errors.push(format!("publish: {e}"));
                }
            }
        }
    }
}

impl Runtime {
    /// Undoes what the agent changed, for its removal: CPU sets and the BE quota put back
    /// ([`crate::agent::released_state`]) and the batch resources withdrawn from the Node (a
    /// node no agent vouches for must not take BE work on stale amounts). The NodeEstimate
    /// stays and goes stale, which the extender treats as absent.
    pub async fn release(&self) -> TickReport {
        let mut report = TickReport::default();
        {
            let agent = lock(&self.agent);
            match agent.setup.layout.discover() {
                Ok(cgroups) => {
                    let d = crate::agent::released_state(&agent.setup, &cgroups);
                    let applied = apply(&agent.setup.layout, &d, &agent.setup.proc_root);
                    report.writes = applied.writes;
                    report
                        .errors
                        .extend(applied.errors.into_iter().map(|e| format!("release: {e}")));
                }
                Err(e) => report.errors.push(format!("release: {e}")),
            }
        }
        let (node, names) = {
            let a = lock(&self.agent);
            (a.setup.node_name.clone(), a.config.resources.clone())
        };
        let gone = serde_json::json!({
            names.batch_cpu.clone(): null,
            names.batch_memory.clone(): null,
        });
        let patch = serde_json::json!({"status": {"capacity": gone, "allocatable": gone}});
        let nodes: Api<Node> = Api::all(self.client.clone());
        match bounded(
            self.opts.api_timeout,
            nodes.patch_status(&node, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => report.published = true,
            Err(e) => report.errors.push(format!(
                "release: withdrawing the batch resources of {node}: {e}"
            )),
        }
        report
    }
}

/// Runs ticks every `interval` until `stop` resolves.
pub async fn run(rt: Arc<Runtime>, interval: Duration, stop: impl Future<Output = ()>) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut log = tide_kube::ErrorLog::new(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = timer.tick() => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let report = rt.tick(now_ms).await;
                for line in log.lines(&report.errors, Instant::now()) {
                    tracing::warn!("{line}");
                }
            }
            () = &mut stop => break,
        }
    }
}

/// `/healthz`: 200 `ok` while the kubelet's pod cgroup level is there to act on; 503 with the
/// reason when it is not (a wrong `--cgroup-root` or `--cgroup-driver`, an unmounted
/// controller, a kubelet with `cgroupsPerQOS: false`), since then no suppression, pinning or
/// OOM ordering can land.
async fn healthz(
    axum::extract::State(rt): axum::extract::State<Arc<Runtime>>,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let checked = match rt.agent.lock() {
        Ok(a) => a.setup.layout.pods_dir(),
        Err(_) => Err("agent state poisoned by a panic".to_owned()),
    };
    match checked {
        Ok(_) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Why the agent is not ready to do its whole job, from what it knows (empty: ready). Pure:
/// `cgroups` is the check of the kubelet's pod cgroup level, `api` whether the pod watch has
/// listed and the last API call answered, `published_at` when the estimate last went out
/// (Unix seconds) and `stale_after` the age at which the extender stops trusting it.
pub fn readiness(
    cgroups: Result<(), String>,
    api: bool,
    published_at: Option<u64>,
    now: u64,
    stale_after: u64,
) -> Vec<String> {
    let mut why = Vec::new();
    if let Err(e) = cgroups {
        why.push(format!("cgroups: {e}"));
    }
    if !api {
        why.push("API server not reachable (or the pod list not loaded yet)".to_owned());
    }
    match published_at {
        None => why.push("no estimate published yet".to_owned()),
        Some(t) if now.saturating_sub(t) > stale_after => why.push(format!(
            "estimate last published {} s ago (stale after {stale_after} s)",
            now.saturating_sub(t)
        )),
        Some(_) => {}
    }
    why
}

/// `/readyz`: 200 `ready` when the agent can do its whole job — its cgroup level is there,
/// the API server answers, and its estimate is fresh (published within `staleAfter`); 503 with
/// every reason otherwise. Not a liveness check: without the API the agent still protects HP
/// locally, and a restart would not bring the API back.
async fn readyz(
    axum::extract::State(rt): axum::extract::State<Arc<Runtime>>,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let api = lock(&rt.pods).synced && rt.api_ok.load(std::sync::atomic::Ordering::Acquire);
    let why = match rt.agent.lock() {
        Ok(a) => readiness(
            a.setup.layout.pods_dir().map(|_| ()),
            api,
            a.published.at,
            now,
            a.config.estimator.stale_after.as_secs(),
        ),
        Err(_) => vec!["agent state poisoned by a panic".to_owned()],
    };
    if why.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, why.join("; "))
    }
}

/// The `/metrics`, `/healthz` and `/readyz` router.
pub fn router(rt: Arc<Runtime>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(rt): axum::extract::State<Arc<Runtime>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        rt.metrics.render(),
                    )
                },
            ),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(rt)
}

#[cfg(test)]
mod tests {
    use super::readiness;

    #[test]
    fn readiness_names_every_reason() {
        assert!(readiness(Ok(()), true, Some(100), 150, 300).is_empty());
        let why = readiness(Err("no kubepods".into()), false, Some(100), 500, 300);
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].contains("no kubepods"));
        assert!(why[1].contains("API server"));
        assert!(why[2].contains("400 s ago"), "{why:?}");
        assert_eq!(
            readiness(Ok(()), true, None, 0, 300),
            ["no estimate published yet"]
        );
    }
}
