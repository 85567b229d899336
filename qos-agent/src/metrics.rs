//! The agent's Prometheus metrics, declared in one place.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tide_agent_actions_total` | counter | `action`, `reason`, `outcome` | every planner action and what came of it (`suppress-cpu`: `applied` only when every CPU set and quota write landed, else `failed`; `evict`: `evicted`, `pdb-refused`, `gone`, `error`; `kill`: `killed`, `error`) |
//! | `tide_agent_usage` | gauge | `class` (`hp`, `be`, `system`), `resource` | usage this tick (millicores, bytes) |
//! | `tide_agent_estimate` | gauge | `kind` (`predicted_peak`, `margin`, `cold_credit`, `reclaimable`), `resource` | the published estimate |
//! | `tide_agent_be_cpu_limit_millicores` | gauge | | current BE CPU limit (allocatable when unsuppressed) |
//! | `tide_agent_be_cpus` | gauge | | CPUs in the BE cpuset |
//! | `tide_agent_oom_score_adj` | gauge | `pod`, `qos` | the adjustment given to each pod's processes (the OOM order) |
//! | `tide_agent_cpu_throttled_seconds` | gauge | `class` (`hp`, `be`) | cumulative CFS throttled time of the class's pods now on the node |
//! | `tide_agent_pods_pressure_avg10` | gauge | `resource` | PSI `some avg10` (%) of all pods together, where the kernel offers it |
//! | `tide_agent_sandbox_cold_bytes` | gauge | `sandbox` | cold memory each sandbox VM's daemon reports it can give back (fresh reports only) |
//! | `tide_agent_sandboxes` | gauge | `state` (`linked`, `connected`, `fresh`) | sandbox VMs: linked, link up, report fresh enough to credit |
//! | `tide_agent_cgroup_writes_total` | counter | | files written (no-op writes are skipped) |
//! | `tide_agent_errors_total` | counter | `stage` | problems per stage (`collect`, `apply`, `evict`, `publish`, `checkpoint`, `watch`, `sandbox`) |
//! | `tide_agent_tick_duration_seconds` | histogram | | one tick, collect to apply |
//! | `tide_agent_process_cpu_seconds_total` | gauge | | the agent's own CPU time |
//! | `tide_agent_process_resident_bytes` | gauge | | the agent's own RSS |
//! | `tide_agent_runtime_tasks` | gauge | | live async tasks of the agent's runtime, read at each scrape (flat over time, or a task leaks: `make soak`) |

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The agent's metrics and their registry.
#[derive(Clone)]
pub struct AgentMetrics {
    registry: Registry,
    /// Planner actions.
    pub actions: IntCounterVec,
    /// Usage by class and resource.
    pub usage: GaugeVec,
    /// Estimate components.
    pub estimate: GaugeVec,
    /// BE CPU limit.
    pub be_cpu_limit: IntGauge,
    /// BE cpuset size.
    pub be_cpus: IntGauge,
    /// OOM order.
    pub oom_score_adj: GaugeVec,
    /// Throttled time per class.
    pub throttled: GaugeVec,
    /// Pods' PSI.
    pub pressure: GaugeVec,
    /// Cold memory per sandbox.
    pub sandbox_cold: GaugeVec,
    /// Sandbox links by state.
    pub sandboxes: IntGaugeVec,
    /// cgroup writes.
    pub cgroup_writes: IntCounter,
    /// Errors by stage.
    pub errors: IntCounterVec,
    /// Tick time.
    pub tick_duration: Histogram,
    /// Own CPU seconds.
    pub process_cpu: Gauge,
    /// Own RSS.
    pub process_rss: IntGauge,
    /// Live tokio tasks (set at each render).
    pub runtime_tasks: IntGauge,
}

impl AgentMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Self {
            actions: IntCounterVec::new(
                Opts::new(
                    "tide_agent_actions_total",
                    "Planner actions and their outcome",
                ),
                &["action", "reason", "outcome"],
            )?,
            usage: GaugeVec::new(
                Opts::new(
                    "tide_agent_usage",
                    "Usage this tick (millicores for cpu, bytes for memory)",
                ),
                &["class", "resource"],
            )?,
            estimate: GaugeVec::new(
                Opts::new(
                    "tide_agent_estimate",
                    "The node estimate (millicores, bytes)",
                ),
                &["kind", "resource"],
            )?,
            be_cpu_limit: IntGauge::new(
                "tide_agent_be_cpu_limit_millicores",
                "Current BE CPU limit",
            )?,
            be_cpus: IntGauge::new("tide_agent_be_cpus", "CPUs in the BE cpuset")?,
            oom_score_adj: GaugeVec::new(
                Opts::new(
                    "tide_agent_oom_score_adj",
                    "oom_score_adj given to each pod's processes",
                ),
                &["pod", "qos"],
            )?,
            throttled: GaugeVec::new(
                Opts::new(
                    "tide_agent_cpu_throttled_seconds",
                    "Cumulative CFS throttled time of the class's pods",
                ),
                &["class"],
            )?,
            pressure: GaugeVec::new(
                Opts::new(
                    "tide_agent_pods_pressure_avg10",
                    "PSI some avg10 (%) of all pods together",
                ),
                &["resource"],
            )?,
            sandbox_cold: GaugeVec::new(
                Opts::new(
                    "tide_agent_sandbox_cold_bytes",
                    "Cold memory a sandbox VM reports it can give back",
                ),
                &["sandbox"],
            )?,
            sandboxes: IntGaugeVec::new(
                Opts::new("tide_agent_sandboxes", "Sandbox VMs by link state"),
                &["state"],
            )?,
            cgroup_writes: IntCounter::new(
                "tide_agent_cgroup_writes_total",
                "cgroup and proc files written",
            )?,
            errors: IntCounterVec::new(
                Opts::new("tide_agent_errors_total", "Problems per stage"),
                &["stage"],
            )?,
            tick_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tide_agent_tick_duration_seconds",
                    "One tick, collect to apply",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
            )?,
            process_cpu: Gauge::new(
                "tide_agent_process_cpu_seconds_total",
                "The agent's own CPU time",
            )?,
            process_rss: IntGauge::new("tide_agent_process_resident_bytes", "The agent's own RSS")?,
            runtime_tasks: IntGauge::new(
                "tide_agent_runtime_tasks",
                "Live async tasks of the agent's runtime",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.actions.clone()))?;
        m.registry.register(Box::new(m.usage.clone()))?;
        m.registry.register(Box::new(m.estimate.clone()))?;
        m.registry.register(Box::new(m.be_cpu_limit.clone()))?;
        m.registry.register(Box::new(m.be_cpus.clone()))?;
        m.registry.register(Box::new(m.oom_score_adj.clone()))?;
        m.registry.register(Box::new(m.throttled.clone()))?;
        m.registry.register(Box::new(m.pressure.clone()))?;
        m.registry.register(Box::new(m.sandbox_cold.clone()))?;
        m.registry.register(Box::new(m.sandboxes.clone()))?;
        m.registry.register(Box::new(m.cgroup_writes.clone()))?;
        m.registry.register(Box::new(m.errors.clone()))?;
        m.registry.register(Box::new(m.tick_duration.clone()))?;
        m.registry.register(Box::new(m.process_cpu.clone()))?;
        m.registry.register(Box::new(m.process_rss.clone()))?;
        m.registry.register(Box::new(m.runtime_tasks.clone()))?;
        Ok(m)
    }

    /// Refreshes the agent's own CPU and RSS from `/proc/self`.
    #[allow(clippy::cast_precision_loss)]
    pub fn refresh_process(&self) {
        if let Some(ticks) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| tide_coldmem::kernel_text::proc_stat_cpu_ticks(&s))
        {
            self.process_cpu.set(ticks as f64 / 100.0);
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = tide_coldmem::kernel_text::kib_field_bytes(&status, "VmRSS")
        {
            self.process_rss.set(i64::try_from(kb).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(i64::try_from(rt.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
