//! The extender's Prometheus metrics, declared in one place.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tide_scheduler_request_duration_seconds` | histogram | `verb` | server-side handling time |
//! | `tide_scheduler_requests_total` | counter | `verb`, `outcome` (`ok`, `bad-request`; `failed` for a bind answered with an error; for `verb="mutate-pods"`, the admission webhook: `mutated`, `unchanged`, `denied`, `bad-request`) | requests answered |
//! | `tide_scheduler_node_refusals_total` | counter | `reason` | nodes refused by `filter`, by refusal kind |
//! | `tide_scheduler_pre_evictions_total` | counter | `outcome` (`evicted`, `pdb-refused`, `gone`, `error`) | bind-time evictions of BE pods |
//! | `tide_scheduler_watch_errors_total` | counter | `resource` | watch stream errors (the watcher retries with backoff) |
//! | `tide_scheduler_runtime_tasks` | gauge | | live async tasks of the extender's runtime, read at each scrape (flat over time, or a task leaks: `make soak`) |
//! | `tide_scheduler_api_errors_total` | counter | `call` (`get-pod`, `bind`, `evict`), `code` (HTTP status, `timeout`, `transport`) | failed API calls of the binder (a 429 from a throttling API server counts here; kube-scheduler retries the pod) |

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The extender's metrics and their registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Handling time per verb.
    pub duration: HistogramVec,
    /// Requests per verb and outcome.
    pub requests: IntCounterVec,
    /// Refused nodes per reason.
    pub refusals: IntCounterVec,
    /// Bind-time evictions per outcome.
    pub pre_evictions: IntCounterVec,
    /// Watch errors per resource.
    pub watch_errors: IntCounterVec,
    /// Failed API calls of the binder, per call and status.
    pub api_errors: IntCounterVec,
    /// Live tokio tasks (set at each render).
    pub runtime_tasks: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tide_scheduler_request_duration_seconds",
                "Server-side handling time of extender requests",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["verb"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "tide_scheduler_requests_total",
                "Extender requests answered",
            ),
            &["verb", "outcome"],
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "tide_scheduler_node_refusals_total",
                "Nodes refused by filter, by reason",
            ),
            &["reason"],
        )?;
        let pre_evictions = IntCounterVec::new(
            Opts::new(
                "tide_scheduler_pre_evictions_total",
                "Bind-time evictions of BE pods, by outcome",
            ),
            &["outcome"],
        )?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "tide_scheduler_watch_errors_total",
                "Watch stream errors, by resource",
            ),
            &["resource"],
        )?;
        let api_errors = IntCounterVec::new(
            Opts::new(
                "tide_scheduler_api_errors_total",
                "Failed API calls of the binder, by call and HTTP status",
            ),
            &["call", "code"],
        )?;
        let runtime_tasks = IntGauge::new(
            "tide_scheduler_runtime_tasks",
            "Live async tasks of the extender's runtime",
        )?;
        registry.register(Box::new(runtime_tasks.clone()))?;
        registry.register(Box::new(api_errors.clone()))?;
        registry.register(Box::new(pre_evictions.clone()))?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        Ok(Self {
            registry,
            duration,
            requests,
            refusals,
            pre_evictions,
            watch_errors,
            api_errors,
            runtime_tasks,
        })
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
