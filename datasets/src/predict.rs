//! Estimator evaluation: every predictor and baseline of [`Catalog`] side by side on one
//! trace, scored with the metrics of DESIGN.md §5.
//!
//! Nodes are formed by [`pack_nodes`] (seeded shuffle, first fit by request). For each node,
//! resource and predictor, the predictor observes the node every step and predicts the HP
//! peak over the horizon; once the horizon has passed, the realised peak is known and the
//! decision is scored. The first `warmup` of the trace is history only and is not scored, for
//! every predictor alike.

use std::time::Instant;

use serde::Serialize;
use std::sync::Arc;
use tide_api::{EstimatorSettings, Resource, ResourceAmounts};

use tide_estimator::{
    Catalog, Components, EvalAccumulator, EvalSummary, FleetRecord, METRICS_VERSION,
    NodeObservation, PeakPredictor, PodSample, SelectOptions, Selector, TideBase, forward_peaks,
};

use crate::trace::{UsageTrace, pack_nodes};

/// Evaluation settings.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Estimator settings (horizon, target violation rate, windows).
    pub settings: EstimatorSettings,
    /// Node size used to pack workload traces.
    pub node_capacity: ResourceAmounts,
    /// Packing seed.
    pub seed: u64,
    /// History-only period at the start, seconds.
    pub warmup_secs: u64,
    /// Tide's nodes share a fleet record (hierarchical shrinkage, measured and rejected as a
    /// default: docs/estimator.md); `false`, the default, runs each node on its own record,
    /// as the live agent does.
    pub fleet: bool,
    /// Extra Tide rows, `tide~SPEC`, each a selector built with
    /// [`SelectOptions::with_spec`]`(SPEC)` (experiments; never competitors of `tide`).
    pub variants: Vec<String>,
}

/// One predictor's score on one resource.
#[derive(Debug, Clone, Serialize)]
pub struct PredictRow {
    /// Predictor name.
    pub predictor: String,
    /// `cpu` or `memory`.
    pub resource: Resource,
    /// True for Tide's own predictors.
    pub tide: bool,
    /// Decisions scored.
    pub decisions: u64,
    /// Share of decisions with A > P.
    pub violation_rate: f64,
    /// Mean (A − P) / C over violations.
    pub severity: f64,
    /// Σ(C − P)⁺ / Σ(C − A)⁺.
    pub reclaim_ratio: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    /// Trace name.
    pub trace: String,
    /// Metric definitions version.
    pub metrics_version: u32,
    /// Horizon, seconds.
    pub horizon_secs: u64,
    /// Target violation rate.
    pub target_violation_rate: f64,
    /// Nodes formed.
    pub nodes: usize,
    /// Columns (workloads or machines).
    pub workloads: usize,
    /// Time steps and their width.
    pub steps: usize,
    /// Step width, seconds.
    pub step_secs: u64,
    /// Raw rows read and malformed rows skipped.
    pub rows_read: u64,
    /// Malformed rows skipped.
    pub bad_rows: u64,
    /// Scores, one per predictor and resource.
    pub results: Vec<PredictRow>,
    /// Wall time of the evaluation, seconds (loading excluded).
    pub elapsed_secs: f64,
}

type NodeResult = Vec<(String, Resource, bool, EvalAccumulator)>;

fn evaluate_node(trace: &UsageTrace, members: &[usize], opts: &PredictOptions) -> NodeResult {
    let steps = trace.steps();
    let step = trace.step_secs.max(1);
    let h = usize::try_from(opts.settings.horizon.as_secs().div_ceil(step)).unwrap_or(usize::MAX);
    let warm = usize::try_from(opts.warmup_secs / step).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if steps <= warm + h {
        return out;
    }
    for resource in Resource::ALL {
        let matrix = trace.usage(resource);
        let capacity = match trace.shape {
            crate::trace::TraceShape::Machines => trace.columns[members[0]].request.get(resource),
            crate::trace::TraceShape::Workloads => opts.node_capacity.get(resource),
        };
        #[allow(clippy::cast_precision_loss)]
        let capacity = capacity as f64;
        let hp: Vec<f64> = (0..steps)
            .map(|t| members.iter().map(|&c| f64::from(matrix[[t, c]])).sum())
            .collect();
        let peaks = forward_peaks(&hp, h);
        let last = steps - h; // decisions whose horizon lies inside the trace
        let mut pods: Vec<PodSample> = Vec::with_capacity(members.len());
        let mut scored: Vec<(String, bool, EvalAccumulator)> = Vec::new();
        // One predictor over the node's decisions: observe every step, score from the warm-up
        // on. No prediction yet means no reclaim: the whole node is held for HP.
        let score = |p: &mut dyn PeakPredictor, pods: &mut Vec<PodSample>| {
            let mut acc = EvalAccumulator::default();
            for (t, &peak) in peaks.iter().enumerate().take(last) {
                trace.fill_pods(resource, t, members, pods);
                let obs = NodeObservation {
                    time: t as u64 * step,
                    capacity,
                    pods,
                    system: 0.0,
                };
                p.observe(&obs);
                if t >= warm {
                    let pred = p.predict(&obs).unwrap_or(capacity);
                    acc.add(capacity, pred, peak);
                }
            }
            acc
        };
        // The oracle predicts the realised peak: the physical limit.
        let mut oracle = EvalAccumulator::default();
        for &a in &peaks[warm..last] {
            oracle.add(capacity, a, a);
        }
        scored.push(("oracle".into(), false, oracle));
        for entry in Catalog::ALL {
            if opts.fleet && entry == Catalog::Tide {
                continue; // run over the whole fleet in lockstep by `evaluate_fleet`
            }
            let mut p = entry.build(resource, &opts.settings);
            let acc = score(&mut *p, &mut pods);
            scored.push((entry.name().into(), entry.is_tide(), acc));
        }
        for spec in &opts.variants {
            let s = &opts.settings;
            let so = SelectOptions::new(s.horizon.as_secs(), s.target_violation_rate)
                .with_spec(spec)
                .expect("--variant specs are checked before the run (check_variants)");
            let mut p = Selector::new(TideBase::new(resource, s, Components::ALL), so);
            let acc = score(&mut p, &mut pods);
            scored.push((format!("tide~{spec}"), true, acc));
        }
        out.extend(
            scored
                .into_iter()
                .map(|(n, tide, acc)| (n, resource, tide, acc)),
        );
    }
    out
}

/// One node of the fleet pass: its Tide selector and the series it is scored on.
struct FleetNode {
    selector: Selector,
    members: Vec<usize>,
    capacity: f64,
    peaks: Vec<f64>,
    acc: EvalAccumulator,
}

/// Tide on every node at once, step by step, each node's record shrunk toward the pooled
/// record of all nodes as it stood at the previous step (no look-ahead: a decision is scored
/// only once its horizon has passed, on every node alike).
fn evaluate_fleet(
    trace: &UsageTrace,
    nodes: &[Vec<usize>],
    resource: Resource,
    opts: &PredictOptions,
) -> EvalAccumulator {
    let steps = trace.steps();
    let step = trace.step_secs.max(1);
    let h = usize::try_from(opts.settings.horizon.as_secs().div_ceil(step)).unwrap_or(usize::MAX);
    let warm = usize::try_from(opts.warmup_secs / step).unwrap_or(usize::MAX);
    let mut total = EvalAccumulator::default();
    if steps <= warm + h {
        return total;
    }
    let matrix = trace.usage(resource);
    let s = &opts.settings;
    let mut fleet: Vec<FleetNode> = nodes
        .iter()
        .map(|members| {
            let capacity = match trace.shape {
                crate::trace::TraceShape::Machines => {
                    trace.columns[members[0]].request.get(resource)
                }
                crate::trace::TraceShape::Workloads => opts.node_capacity.get(resource),
            };
            let hp: Vec<f64> = (0..steps)
                .map(|t| members.iter().map(|&c| f64::from(matrix[[t, c]])).sum())
                .collect();
            #[allow(clippy::cast_precision_loss)]
            FleetNode {
                selector: Selector::new(
                    TideBase::new(resource, s, Components::ALL),
                    SelectOptions::new(s.horizon.as_secs(), s.target_violation_rate),
                ),
                members: members.clone(),
                capacity: capacity as f64,
                peaks: forward_peaks(&hp, h),
                acc: EvalAccumulator::default(),
            }
        })
        .collect();
    let last = steps - h;
    let mut pods: Vec<PodSample> = Vec::new();
    for t in 0..last {
        for n in &mut fleet {
            trace.fill_pods(resource, t, &n.members, &mut pods);
            let obs = NodeObservation {
                time: t as u64 * step,
                capacity: n.capacity,
                pods: &pods,
                system: 0.0,
            };
            n.selector.observe(&obs);
            if t >= warm {
                let pred = n.selector.predict(&obs).unwrap_or(n.capacity);
                n.acc.add(n.capacity, pred, n.peaks[t]);
            }
        }
        let mut pooled = FleetRecord::new();
        for n in &fleet {
            pooled.add(&n.selector);
        }
        let pooled = Arc::new(pooled);
        for n in &mut fleet {
            n.selector.set_fleet(Some(Arc::clone(&pooled)));
        }
    }
    for n in &fleet {
        total.merge(&n.acc);
    }
    total
}

/// Runs every predictor on every node of the trace (two threads) and scores them.
pub fn evaluate(trace: &UsageTrace, opts: &PredictOptions) -> PredictReport {
    let started = Instant::now();
    let nodes = pack_nodes(trace, opts.node_capacity, opts.seed);
    let (left, right) = nodes.split_at(nodes.len() / 2);
    let run = |part: &[Vec<usize>]| {
        part.iter()
            .map(|m| evaluate_node(trace, m, opts))
            .collect::<Vec<_>>()
    };
    let (mut a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| run(right));
        (run(left), h.join().unwrap_or_default())
    });
    a.extend(b);
    let fleet_rows = if opts.fleet {
        let (cpu, memory) = std::thread::scope(|s| {
            let h = s.spawn(|| evaluate_fleet(trace, &nodes, Resource::Memory, opts));
            (
                evaluate_fleet(trace, &nodes, Resource::Cpu, opts),
                h.join().unwrap_or_default(),
            )
        });
        vec![(Resource::Cpu, cpu), (Resource::Memory, memory)]
    } else {
        Vec::new()
    };
    let mut merged: Vec<(String, Resource, bool, EvalAccumulator)> = Vec::new();
    for node in a {
        for (name, res, tide, acc) in node {
            match merged.iter_mut().find(|m| m.0 == name && m.1 == res) {
                Some(m) => m.3.merge(&acc),
                None => merged.push((name, res, tide, acc)),
            }
        }
    }
    // Tide's fleet rows where the per-node pass would have put them: after the oracle.
    for (res, acc) in fleet_rows {
        let at = merged
            .iter()
            .position(|m| m.0 == "oracle" && m.1 == res)
            .map_or(merged.len(), |i| i + 1);
        merged.insert(at, ("tide".into(), res, true, acc));
    }
    let results = merged
        .into_iter()
        .map(|(predictor, resource, tide, acc)| {
            let EvalSummary {
                decisions,
                violation_rate,
                severity,
                reclaim_ratio,
            } = acc.summary();
            PredictRow {
                predictor,
                resource,
                tide,
                decisions,
                violation_rate,
                severity,
                reclaim_ratio,
            }
        })
        .collect();
    PredictReport {
        trace: trace.name.clone(),
        metrics_version: METRICS_VERSION,
        horizon_secs: opts.settings.horizon.as_secs(),
        target_violation_rate: opts.settings.target_violation_rate,
        nodes: nodes.len(),
        workloads: trace.columns.len(),
        steps: trace.steps(),
        step_secs: trace.step_secs,
        rows_read: trace.rows_read,
        bad_rows: trace.bad_rows.count,
        results,
        elapsed_secs: started.elapsed().as_secs_f64(),
    }
}

impl PredictReport {
    /// A plain-text table, one line per predictor and resource.
    pub fn table(&self) -> String {
        let mut s = format!(
            "trace {} — {} workloads on {} nodes, {} steps of {} s; horizon {} s, target violation rate {:.3}\n\n",
            self.trace,
            self.workloads,
            self.nodes,
            self.steps,
            self.step_secs,
            self.horizon_secs,
            self.target_violation_rate
        );
        s.push_str(&format!(
            "{:<20} {:<7} {:>10} {:>10} {:>9} {:>8}\n",
            "predictor", "res", "violation", "severity", "reclaim", "decisions"
        ));
        for r in &self.results {
            s.push_str(&format!(
                "{:<20} {:<7} {:>9.3}% {:>9.3}% {:>9.3} {:>8}\n",
                r.predictor,
                r.resource.name(),
                r.violation_rate * 100.0,
                r.severity * 100.0,
                r.reclaim_ratio,
                r.decisions
            ));
        }
        s.push_str(&format!(
            "\nrows read {}, bad rows skipped {}; evaluated in {:.1} s\n",
            self.rows_read, self.bad_rows, self.elapsed_secs
        ));
        s
    }

    /// The best Tide predictor for a resource: the highest reclaim ratio among those at or
    /// below the target violation rate (or the lowest violation rate if none is).
    pub fn best_tide(&self, resource: Resource) -> Option<&PredictRow> {
        let tide: Vec<&PredictRow> = self
            .results
            .iter()
            .filter(|r| r.tide && r.resource == resource)
            .collect();
        let ok = tide
            .iter()
            .filter(|r| r.violation_rate <= self.target_violation_rate)
            .max_by(|a, b| a.reclaim_ratio.total_cmp(&b.reclaim_ratio));
        ok.or_else(|| {
            tide.iter()
                .min_by(|a, b| a.violation_rate.total_cmp(&b.violation_rate))
        })
        .copied()
    }
}

/// Tide against its best competitor at one target, horizon and resource.
#[derive(Debug, Clone, Serialize)]
pub struct Dominance {
    /// Horizon, seconds.
    pub horizon_secs: u64,
    /// Target violation rate α.
    pub target: f64,
    /// `cpu` or `memory`.
    pub resource: Resource,
    /// Tide's realised violation rate.
    pub tide_violation: f64,
    /// 95% Wilson interval of Tide's violation rate over independent node-windows
    /// (decisions × step / horizon: decisions within one horizon share their window).
    pub tide_violation_ci: (f64, f64),
    /// Independent node-windows behind the interval.
    pub windows: f64,
    /// Tide's reclaim ratio.
    pub tide_reclaim: f64,
    /// The highest-reclaim other predictor whose violation rate is ≤ α, if any.
    pub best_competitor: Option<String>,
    /// Its reclaim ratio (0 when none).
    pub best_reclaim: f64,
    /// Tide's reclaim minus the best competitor's.
    pub lead: f64,
    /// Tide's violation rate is ≤ α, or α lies inside its interval (within noise).
    pub meets_target: bool,
    /// Meets the target and reclaims at least as much as every competitor that does.
    pub dominates: bool,
}

/// A sweep over targets and horizons: one [`PredictReport`] each, and the dominance summary.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Trace name.
    pub trace: String,
    /// Every run.
    pub runs: Vec<PredictReport>,
    /// Tide against the best competitor, per run and resource.
    pub dominance: Vec<Dominance>,
}

/// 95% Wilson score interval for `k` successes in `n` trials.
pub fn wilson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z = 1.96f64;
    let p = (k / n).clamp(0.0, 1.0);
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

impl PredictReport {
    /// Tide against the best competitor that meets the target, per resource.
    pub fn dominance(&self) -> Vec<Dominance> {
        let a = self.target_violation_rate;
        let mut out = Vec::new();
        for resource in Resource::ALL {
            let Some(tide) = self
                .results
                .iter()
                .find(|r| r.predictor == "tide" && r.resource == resource)
            else {
                continue;
            };
            let best = self
                .results
                .iter()
                .filter(|r| {
                    r.resource == resource
                        && r.predictor != "tide"
                        && !r.predictor.starts_with("tide~")
                        && r.predictor != "oracle"
                        && r.violation_rate <= a
                })
                .max_by(|x, y| x.reclaim_ratio.total_cmp(&y.reclaim_ratio));
            #[allow(clippy::cast_precision_loss)]
            let windows = tide.decisions as f64 * self.step_secs as f64
                / self.horizon_secs.max(self.step_secs).max(1) as f64;
            let ci = wilson(tide.violation_rate * windows, windows);
            let meets_target = tide.violation_rate <= a || ci.0 <= a;
            let best_reclaim = best.map_or(0.0, |b| b.reclaim_ratio);
            out.push(Dominance {
                horizon_secs: self.horizon_secs,
                target: a,
                resource,
                tide_violation: tide.violation_rate,
                tide_violation_ci: ci,
                windows,
                tide_reclaim: tide.reclaim_ratio,
                best_competitor: best.map(|b| b.predictor.clone()),
                best_reclaim,
                lead: tide.reclaim_ratio - best_reclaim,
                meets_target,
                dominates: meets_target && tide.reclaim_ratio >= best_reclaim,
            });
        }
        out
    }
}

impl PredictReport {
    /// This run with the `tide~SPEC` row in place of `tide` (and no other variant rows).
    pub fn as_variant(&self, spec: &str) -> PredictReport {
        let mut r = self.clone();
        let name = format!("tide~{spec}");
        r.results.retain(|x| x.predictor != "tide");
        r.results
            .retain(|x| !x.predictor.starts_with("tide~") || x.predictor == name);
        for x in &mut r.results {
            if x.predictor == name {
                x.predictor = "tide".into();
            }
        }
        r
    }
}

impl SweepReport {
    /// The sweep as if `tide~SPEC` were Tide.
    pub fn as_variant(&self, spec: &str) -> SweepReport {
        let runs: Vec<PredictReport> = self.runs.iter().map(|r| r.as_variant(spec)).collect();
        let dominance = runs.iter().flat_map(PredictReport::dominance).collect();
        SweepReport {
            trace: format!("{} [variant {spec}]", self.trace),
            runs,
            dominance,
        }
    }
}

/// Runs [`evaluate`] at every target and horizon.
pub fn sweep(
    trace: &UsageTrace,
    opts: &PredictOptions,
    targets: &[f64],
    horizons: &[std::time::Duration],
    mut progress: impl FnMut(&PredictReport),
) -> SweepReport {
    let mut runs = Vec::new();
    for &h in horizons {
        for &a in targets {
            let mut o = opts.clone();
            o.settings.horizon = h;
            o.settings.target_violation_rate = a;
            let r = evaluate(trace, &o);
            progress(&r);
            runs.push(r);
        }
    }
    let dominance = runs.iter().flat_map(PredictReport::dominance).collect();
    SweepReport {
        trace: trace.name.clone(),
        runs,
        dominance,
    }
}

fn fmt_horizon(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

impl SweepReport {
    /// The dominance table and one summary line per horizon.
    pub fn table(&self) -> String {
        let mut s = format!(
            "trace {} — Tide against the best competitor meeting α\n\n",
            self.trace
        );
        s.push_str(&format!(
            "{:<7} {:>6} {:<7} {:>9} {:>19} {:>8} {:<20} {:>8} {:>8} {}\n",
            "horizon",
            "α",
            "res",
            "tide viol",
            "95% CI (windows)",
            "reclaim",
            "best competitor",
            "reclaim",
            "lead",
            "verdict"
        ));
        for d in &self.dominance {
            s.push_str(&format!(
                "{:<7} {:>5.1}% {:<7} {:>8.3}% {:>6.3}–{:<6.3}% ({:>5.0}) {:>8.3} {:<20} {:>8.3} {:>+8.3} {}\n",
                fmt_horizon(d.horizon_secs),
                d.target * 100.0,
                d.resource.name(),
                d.tide_violation * 100.0,
                d.tide_violation_ci.0 * 100.0,
                d.tide_violation_ci.1 * 100.0,
                d.windows,
                d.tide_reclaim,
                d.best_competitor.as_deref().unwrap_or("-"),
                d.best_reclaim,
                d.lead,
                if d.dominates {
                    "dominates"
                } else if !d.meets_target {
                    "OVER TARGET"
                } else {
                    "TRAILS"
                }
            ));
        }
        let mut horizons: Vec<u64> = self.dominance.iter().map(|d| d.horizon_secs).collect();
        horizons.dedup();
        for h in horizons {
            let parts: Vec<String> = self
                .dominance
                .iter()
                .filter(|d| d.horizon_secs == h)
                .map(|d| {
                    format!(
                        "{:.1}% {} {:+.3}{}",
                        d.target * 100.0,
                        d.resource.name(),
                        d.lead,
                        if d.meets_target { "" } else { " (over α)" }
                    )
                })
                .collect();
            s.push_str(&format!(
                "\nsummary {}: {}",
                fmt_horizon(h),
                parts.join(", ")
            ));
        }
        let n = self.dominance.len();
        let ok = self.dominance.iter().filter(|d| d.dominates).count();
        s.push_str(&format!(
            "\n\nTide dominates in {ok} of {n} (target, horizon, resource) cells\n"
        ));
        s
    }

    /// A self-contained HTML page: the dominance table and, per run and resource, reclaim
    /// against violation for every predictor (the frontier), target marked.
    pub fn html(&self) -> String {
        let mut h = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tide predict: {t}</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}.note{{color:#555}}\
             .bad{{color:#b00}}.good{{color:#070}}svg{{margin:4px}}</style></head><body>\
             <h1>Estimator frontier: {t}</h1>",
            t = escape(&self.trace)
        );
        h.push_str("<table><tr><th>horizon</th><th>α</th><th>resource</th><th>Tide violation (95% CI)</th><th>Tide reclaim</th><th>best competitor ≤ α</th><th>its reclaim</th><th>lead</th></tr>");
        for d in &self.dominance {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{:.1}%</td><td>{}</td><td>{:.3}% ({:.3}–{:.3})</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td class=\"{}\">{:+.3}</td></tr>",
                fmt_horizon(d.horizon_secs),
                d.target * 100.0,
                d.resource.name(),
                d.tide_violation * 100.0,
                d.tide_violation_ci.0 * 100.0,
                d.tide_violation_ci.1 * 100.0,
                d.tide_reclaim,
                escape(d.best_competitor.as_deref().unwrap_or("-")),
                d.best_reclaim,
                if d.dominates { "good" } else { "bad" },
                d.lead
            ));
        }
        h.push_str("</table>");
        for r in &self.runs {
            h.push_str(&format!(
                "<h3>horizon {}, α = {:.1}%</h3>",
                fmt_horizon(r.horizon_secs),
                r.target_violation_rate * 100.0
            ));
            for resource in Resource::ALL {
                h.push_str(&frontier_svg(r, resource));
            }
        }
        h.push_str("<p class=\"note\">Each point is one predictor: x = violation rate (share of node-decisions whose realised HP peak over the horizon exceeded the prediction), y = reclaim ratio (share of what a perfect oracle could reclaim). The dashed line is the target α; Tide is red. Metrics: docs/metrics.md; estimator: docs/estimator.md.</p></body></html>\n");
        h
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Reclaim against violation for every predictor of one run and resource (x on a
/// square-root scale from 0 to 4α, points beyond drawn at the edge).
fn frontier_svg(r: &PredictReport, resource: Resource) -> String {
    let (w, ht, pad) = (520.0f64, 320.0f64, 44.0f64);
    let a = r.target_violation_rate;
    let max_x = 4.0 * a;
    let x = |v: f64| pad + (v.min(max_x) / max_x).sqrt() * (w - 2.0 * pad);
    let y = |v: f64| ht - pad - v.clamp(0.0, 1.05) / 1.05 * (ht - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"{} reclaim against violation\">\
         <rect x=\"{pad}\" y=\"{pad}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        resource.name(),
        w - 2.0 * pad,
        ht - 2.0 * pad
    );
    s.push_str(&format!(
        "<line x1=\"{0:.1}\" y1=\"{pad}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#444\" stroke-dasharray=\"4 3\"/>",
        x(a),
        ht - pad
    ));
    for p in r.results.iter().filter(|p| p.resource == resource) {
        let tide = p.predictor == "tide";
        let (cx, cy) = (x(p.violation_rate), y(p.reclaim_ratio));
        s.push_str(&format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{}\" fill=\"{}\"><title>{}: {:.3}% / {:.3}</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#333\">{}</text>",
            if tide { 5 } else { 3 },
            if tide { "#d22" } else if p.tide { "#e90" } else { "#36c" },
            escape(&p.predictor),
            p.violation_rate * 100.0,
            p.reclaim_ratio,
            cx + 5.0,
            cy - 3.0,
            escape(&p.predictor)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{pad}\" y=\"{:.0}\" font-size=\"11\">{} violation rate, √ scale 0 … {:.2}% (dashed: α)</text>\
         <text x=\"4\" y=\"{:.0}\" font-size=\"11\">1.0</text><text x=\"4\" y=\"{:.0}\" font-size=\"11\">0</text></svg>",
        ht - 10.0,
        resource.name(),
        max_x * 100.0,
        y(1.0) + 4.0,
        y(0.0)
    ));
    s
}

/// Checks every `--variant` spec ([`SelectOptions::with_spec`]) before a run, so a bad one is
/// a clear error, not a failure halfway through the sweep.
pub fn check_variants(settings: &EstimatorSettings, specs: &[String]) -> Result<(), String> {
    for spec in specs {
        SelectOptions::new(settings.horizon.as_secs(), settings.target_violation_rate)
            .with_spec(spec)
            .map_err(|e| format!("--variant {spec}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::BadRows;
    use crate::trace::{Column, TraceShape};
    use ndarray::Array2;
    use std::time::Duration;

    #[test]
    fn scores_every_predictor_and_the_oracle_is_perfect() {
        // Two workloads, three days at 5 minutes, a daily bump.
        let steps = 3 * 288;
        let mut cpu = Array2::<f32>::zeros((steps, 2));
        let mut mem = Array2::<f32>::zeros((steps, 2));
        for t in 0..steps {
            let bump = if (t % 288) > 200 && (t % 288) < 230 {
                1500.0
            } else {
                0.0
            };
            cpu[[t, 0]] = 1000.0 + bump;
            cpu[[t, 1]] = 500.0 + (t % 7) as f32 * 10.0;
            mem[[t, 0]] = 4e9;
            mem[[t, 1]] = 2e9;
        }
        let trace = UsageTrace {
            name: "unit".into(),
            shape: TraceShape::Workloads,
            step_secs: 300,
            start_time: 0,
            columns: vec![
                Column {
                    name: "a".into(),
                    request: ResourceAmounts::new(4000, 8 << 30),
                },
                Column {
                    name: "b".into(),
                    request: ResourceAmounts::new(4000, 8 << 30),
                },
            ],
            cpu,
            memory: mem,
            bad_rows: BadRows::default(),
            rows_read: 0,
        };
        let settings = EstimatorSettings {
            horizon: Duration::from_secs(3600),
            ..EstimatorSettings::default()
        };
        let opts = PredictOptions {
            settings,
            node_capacity: ResourceAmounts::new(8000, 16 << 30),
            seed: 1,
            warmup_secs: 86_400,
            fleet: false,
            variants: Vec::new(),
        };
        let report = evaluate(&trace, &opts);
        assert_eq!(report.nodes, 1);
        assert_eq!(report.results.len(), 2 * (Catalog::ALL.len() + 1));
        let get = |name: &str, r: Resource| {
            report
                .results
                .iter()
                .find(|x| x.predictor == name && x.resource == r)
                .unwrap()
        };
        let oracle = get("oracle", Resource::Cpu);
        assert_eq!((oracle.violation_rate, oracle.reclaim_ratio), (0.0, 1.0));
        assert_eq!(oracle.decisions, (steps - 12 - 288) as u64);
        // No overcommit holds the requests (the whole node): nothing reclaimed, never violated.
        let none = get("no-overcommit", Resource::Cpu);
        assert_eq!((none.violation_rate, none.reclaim_ratio), (0.0, 0.0));
        // Tide foresees the daily bump from the first day and reclaims a real share, though with
        // under 1/α residuals its conformal margin is still the largest residual seen.
        let tide = get("tide", Resource::Cpu);
        assert!(tide.reclaim_ratio > 0.35, "{tide:?}");
        assert!(tide.violation_rate < 0.05, "{tide:?}");
        assert!(report.table().contains("tide-n-sigma"));
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["results"][0]["violation_rate"].is_number());
        // The fleet pass scores Tide on the same decisions, in the same place of the table,
        // and leaves every other predictor alone.
        let fleet = evaluate(
            &trace,
            &PredictOptions {
                fleet: true,
                ..opts
            },
        );
        let order = |r: &PredictReport| {
            r.results
                .iter()
                .map(|x| (x.predictor.clone(), x.resource, x.decisions))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&fleet), order(&report));
        for (a, b) in fleet.results.iter().zip(&report.results) {
            if a.predictor != "tide" {
                assert_eq!(
                    (a.violation_rate, a.reclaim_ratio),
                    (b.violation_rate, b.reclaim_ratio)
                );
            }
        }
        let tide = fleet
            .results
            .iter()
            .find(|x| x.predictor == "tide" && x.resource == Resource::Cpu)
            .unwrap();
        assert!(tide.reclaim_ratio > 0.35, "{tide:?}");
        assert!(tide.violation_rate < 0.05, "{tide:?}");
    }
}
