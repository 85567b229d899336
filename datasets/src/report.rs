//! The replay report: a table for the terminal, JSON for machines, HTML with SVG plots for people.

use std::fmt::Write as _;

use serde::Serialize;

use tide_api::{ResourceAmounts, TideConfig};

use crate::plots;
use crate::sim::{Policy, PolicyOutcome};

/// Everything a replay produced.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// What was replayed.
    pub source: String,
    /// Nodes simulated.
    pub nodes: usize,
    /// HP pods (trace columns).
    pub hp_pods: usize,
    /// BE jobs offered.
    pub be_jobs: usize,
    /// Steps and step width.
    pub steps: usize,
    /// Step width, seconds.
    pub step_secs: u64,
    /// Allocatable of every node.
    pub node_capacity: ResourceAmounts,
    /// The static policy's allocatable ratio.
    pub static_ratio: f64,
    /// Tide's configuration in this run.
    pub config: TideConfig,
    /// Results per policy.
    pub policies: Vec<PolicyOutcome>,
    /// Every run of a sweep (`tide-replay sweep`): each family over its knob; empty otherwise.
    pub frontier: Vec<PolicyOutcome>,
    /// Wall time of loading, seconds.
    pub load_secs: f64,
    /// Wall time of the simulation (all policies), seconds.
    pub simulate_secs: f64,
}

/// HP interference levels (share of node-time) at which the frontier is read.
pub const HARM_LEVELS: [f64; 6] = [0.0, 0.0001, 0.001, 0.0025, 0.005, 0.01];

/// Node-time saturated by BE (node CPU ≥ 95% busy) at which the frontier is also read.
pub const SATURATION_LEVELS: [f64; 6] = [0.0, 0.001, 0.01, 0.05, 0.1, 0.25];

/// The two harm measures the frontier is read against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Harm {
    /// Share of node-time HP CPU demand was not met.
    Interference,
    /// Share of node-time BE pushed node CPU to ≥ 95% busy.
    Saturation,
}

impl Harm {
    fn of(self, p: &PolicyOutcome) -> f64 {
        match self {
            Harm::Interference => p.hp_interference,
            Harm::Saturation => p.be_saturated_time,
        }
    }
    fn levels(self) -> [f64; 6] {
        match self {
            Harm::Interference => HARM_LEVELS,
            Harm::Saturation => SATURATION_LEVELS,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Harm::Interference => "HP interference",
            Harm::Saturation => "node-time saturated by BE",
        }
    }
}

/// The best reclaim ratio a family reaches at or below a harm level.
fn best_at(points: &[&PolicyOutcome], harm: Harm, level: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| harm.of(p) <= level + 1e-12)
        .map(|p| p.reclaim_ratio)
        .reduce(f64::max)
}

impl ReplayReport {
    /// Plain-text table: the run's parameters, one row per policy, why each policy gets what
    /// it gets, the verdict, and the frontier when the run was a sweep.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let hours = self.steps as f64 * self.step_secs as f64 / 3600.0;
        let _ = writeln!(
            s,
            "replay of {}: {} nodes, {} HP pods, {} BE jobs offered, {:.1} h in {} s steps",
            self.source, self.nodes, self.hp_pods, self.be_jobs, hours, self.step_secs
        );
        let _ = writeln!(s, "{}\n", self.parameters());
        let _ = writeln!(
            s,
            "{:<13} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8} {:>6} {:>6} {:>7} {:>6} {:>6}",
            "policy",
            "cpu",
            "mem",
            "BE",
            "reclaim",
            "violat.",
            "HP",
            "BE",
            "BE",
            "BE work",
            "BE",
            "BE"
        );
        let _ = writeln!(
            s,
            "{:<13} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8} {:>6} {:>6} {:>7} {:>6} {:>6}",
            "",
            "util",
            "util",
            "core-h",
            "ratio",
            "rate",
            "interf.",
            "evict",
            "kills",
            "lost c-h",
            "slow",
            "done"
        );
        for p in &self.policies {
            let _ = writeln!(
                s,
                "{:<13} {:>5.1}% {:>5.1}% {:>8.0} {:>7.3} {:>6.2}% {:>7.3}% {:>6} {:>6} {:>7.1} {:>5.1}x {:>6}",
                p.policy.name(),
                p.cpu_utilisation * 100.0,
                p.memory_utilisation * 100.0,
                p.be_core_hours,
                p.reclaim_ratio,
                p.violation_rate * 100.0,
                p.hp_interference * 100.0,
                p.be_evictions,
                p.be_kills,
                p.be_work_lost_core_hours,
                p.be_slowdown_mean,
                p.be_jobs_completed
            );
        }
        let oracle = self.policies.first().map_or(0.0, |p| p.oracle_core_hours);
        let _ = writeln!(
            s,
            "\nreclaim = BE core-hours / idle HP core-hours ({oracle:.0} core-h, the oracle's limit); violation = share of\n\
             decisions whose HP peak over the horizon passed the HP reservation; HP interference = share of node-time\n\
             HP CPU demand was not met because of BE; BE work lost = progress thrown away by evictions and kills;\n\
             BE slow = mean completion time (queueing and restarts included) over the job's time alone."
        );
        let _ = writeln!(s, "\nwhy:");
        for line in self.why() {
            let _ = writeln!(s, "  {line}");
        }
        if let Some(v) = self.verdict() {
            let _ = writeln!(s, "\n{v}");
        }
        if !self.frontier.is_empty() {
            s.push('\n');
            s.push_str(&self.frontier_table());
        }
        let _ = writeln!(
            s,
            "\nLoaded in {:.2} s, simulated in {:.2} s ({} runs on 2 threads).",
            self.load_secs,
            self.simulate_secs,
            self.policies.len().max(self.frontier.len())
        );
        s
    }

    /// The run's parameters in one line.
    pub fn parameters(&self) -> String {
        format!(
            "parameters: node {} m CPU / {:.0} GiB; static ratio {:.2}; Koordinator reclaim 60% CPU / 65% memory, suppress 65%; \
             Tide schedule {:.0}% CPU / {:.0}% memory, suppress {:.0}%, evict {:.0}% memory, horizon {} s CPU / {} s memory, target violation {:.3}",
            self.node_capacity.cpu.0,
            self.node_capacity.memory.as_f64() / f64::from(1u32 << 30),
            self.static_ratio,
            self.config.cpu.schedule_percent,
            self.config.memory.schedule_percent,
            self.config.cpu.suppress_percent,
            self.config.memory.evict_percent,
            self.config.estimator.cpu_horizon.as_secs(),
            self.config.estimator.horizon.as_secs(),
            self.config.estimator.target_violation_rate
        )
    }

    /// One line per policy on where its BE CPU comes from and what it costs.
    pub fn why(&self) -> Vec<String> {
        self.policies
            .iter()
            .map(|p| {
                let how = match p.policy {
                    Policy::NoOvercommit => "sells only what no HP pod requested",
                    Policy::StaticRatio => {
                        "sells requests up to ratio × allocatable with no agent: BE and HP share CPU by CFS weight, \
                         so HP is hurt whenever its demand passes its share"
                    }
                    Policy::Koordinator => {
                        "sells threshold × allocatable − HP 5-min average by request; its agent caps node CPU at 65%"
                    }
                    Policy::TideRequest => {
                        "sells the predicted HP peak's headroom by BE request up to the schedule level; the agent suppresses BE"
                    }
                    Policy::Tide => {
                        "sells the predicted HP peak's headroom by BE's measured usage (real-time level); the agent suppresses BE"
                    }
                };
                format!(
                    "{}: {how}. Held {:.0}% of CPU for HP (HP used {:.0}%); BE requests bound {:.0}% of allocatable CPU, BE used {:.0}% of them; \
                     HP short {:.1} core-h; node CPU ≥ 95% busy because of BE {:.2}% of node-time; BE lost {:.1} core-h to {} evictions ({} at HP bind time, {} HP arrivals) + {} kills. \
                     Memory: {:.0}% of allocatable left to sell on average, BE used {:.0} GiB-h{}.",
                    p.policy.name(),
                    p.hp_reserved_share * 100.0,
                    p.hp_usage_share * 100.0,
                    p.be_request_share * 100.0,
                    p.be_usage_over_request * 100.0,
                    p.hp_shortfall_core_hours,
                    p.be_saturated_time * 100.0,
                    p.be_work_lost_core_hours,
                    p.be_evictions,
                    p.be_pre_evictions,
                    p.hp_arrivals,
                    p.be_kills,
                    p.sellable_memory_share * 100.0,
                    p.be_memory_gib_hours,
                    if p.cold_reclaimed_gib > 0.0 || p.refault_gib > 0.0 {
                        format!(
                            "; cold page cache dropped {:.0} GiB, {:.0} GiB of it refaulted",
                            p.cold_reclaimed_gib, p.refault_gib
                        )
                    } else {
                        String::new()
                    }
                )
            })
            .collect()
    }

    /// A one-line verdict: Tide against the best baseline that did no more harm.
    pub fn verdict(&self) -> Option<String> {
        let tide = self
            .policies
            .iter()
            .find(|p| p.policy == Policy::Tide)
            .or_else(|| {
                self.policies
                    .iter()
                    .find(|p| p.policy == Policy::TideRequest)
            })?;
        let others: Vec<&PolicyOutcome> = self
            .policies
            .iter()
            .filter(|p| !matches!(p.policy, Policy::Tide | Policy::TideRequest))
            .collect();
        let fair = others
            .iter()
            .filter(|p| p.hp_interference <= tide.hp_interference + 1e-12)
            .max_by(|a, b| a.reclaim_ratio.total_cmp(&b.reclaim_ratio));
        let mut v = format!(
            "verdict: {} reclaims {:.3} of the oracle's idle core-hours at {:.3}% HP interference",
            tide.policy.name(),
            tide.reclaim_ratio,
            tide.hp_interference * 100.0
        );
        match fair {
            Some(b) => {
                let d = (tide.reclaim_ratio - b.reclaim_ratio) * 100.0;
                let _ = write!(
                    v,
                    "; the best baseline with no more harm, {} ({:.3}% interference), reclaims {:.3}: tide {} by {:.1} points",
                    b.policy.name(),
                    b.hp_interference * 100.0,
                    b.reclaim_ratio,
                    if d >= 0.0 { "ahead" } else { "behind" },
                    d.abs()
                );
                if b.be_saturated_time > tide.be_saturated_time {
                    let _ = write!(
                        v,
                        ", but {} kept node CPU ≥ 95% busy with BE {:.2}% of node-time against tide's {:.2}%",
                        b.policy.name(),
                        b.be_saturated_time * 100.0,
                        tide.be_saturated_time * 100.0
                    );
                }
            }
            None => v.push_str("; every baseline here did more harm"),
        }
        for b in others.iter().filter(|p| {
            p.hp_interference > tide.hp_interference + 1e-12 && p.reclaim_ratio > tide.reclaim_ratio
        }) {
            let _ = write!(
                v,
                "; {} reclaims more ({:.3}) at {:.3}% interference",
                b.policy.name(),
                b.reclaim_ratio,
                b.hp_interference * 100.0
            );
        }
        v.push('.');
        Some(v)
    }

    /// The frontier: every point of the sweep, then each family's best reclaim at or below each
    /// HP interference level.
    pub fn frontier_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "frontier: every run of the sweep (knob: see the parameters; target = Tide's target violation rate; sat. = node CPU ≥ 95% busy because of BE)\n{:<13} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>8} {:>6}",
            "policy",
            "knob",
            "target",
            "reclaim",
            "HP int.",
            "sat.",
            "violat.",
            "evict",
            "kills",
            "lost c-h",
            "slow"
        );
        for p in &self.frontier {
            let _ = writeln!(
                s,
                "{:<13} {:>8.2} {:>7} {:>7.3} {:>7.3}% {:>6.2}% {:>6.2}% {:>6} {:>6} {:>8.1} {:>5.1}x",
                p.policy.name(),
                p.knob,
                p.target_violation
                    .map_or_else(|| "-".to_owned(), |t| format!("{:.1}%", t * 100.0)),
                p.reclaim_ratio,
                p.hp_interference * 100.0,
                p.be_saturated_time * 100.0,
                p.violation_rate * 100.0,
                p.be_evictions,
                p.be_kills,
                p.be_work_lost_core_hours,
                p.be_slowdown_mean
            );
        }
        let families = self.families();
        for harm in [Harm::Interference, Harm::Saturation] {
            let _ = write!(s, "\nbest reclaim at {} ≤\n{:<13}", harm.name(), "policy");
            for h in harm.levels() {
                let _ = write!(s, " {:>7}", format!("{}%", h * 100.0));
            }
            s.push('\n');
            for (policy, points) in &families {
                let _ = write!(s, "{:<13}", policy.name());
                for h in harm.levels() {
                    match best_at(points, harm, h) {
                        Some(r) => {
                            let _ = write!(s, " {r:>7.3}");
                        }
                        None => {
                            let _ = write!(s, " {:>7}", "-");
                        }
                    }
                }
                s.push('\n');
            }
            if let Some(line) = self.frontier_verdict_by(harm) {
                let _ = writeln!(s, "{line}");
            }
        }
        s
    }

    fn families(&self) -> Vec<(Policy, Vec<&PolicyOutcome>)> {
        let mut out: Vec<(Policy, Vec<&PolicyOutcome>)> = Vec::new();
        for p in &self.frontier {
            match out.iter_mut().find(|f| f.0 == p.policy) {
                Some(f) => f.1.push(p),
                None => out.push((p.policy, vec![p])),
            }
        }
        out
    }

    /// Whether Tide's frontier is above every baseline's at every HP interference level.
    pub fn frontier_verdict(&self) -> Option<String> {
        self.frontier_verdict_by(Harm::Interference)
    }

    fn frontier_verdict_by(&self, harm: Harm) -> Option<String> {
        let families = self.families();
        let tide = families.iter().find(|f| f.0 == Policy::Tide)?;
        let mut lost = Vec::new();
        for h in harm.levels() {
            let t = best_at(&tide.1, harm, h).unwrap_or(0.0);
            for (p, pts) in families
                .iter()
                .filter(|f| !matches!(f.0, Policy::Tide | Policy::TideRequest))
            {
                if let Some(b) = best_at(pts, harm, h).filter(|&b| b > t) {
                    lost.push(format!(
                        "{} {b:.3} > tide {t:.3} at ≤ {}%",
                        p.name(),
                        h * 100.0
                    ));
                }
            }
        }
        let last = harm.levels()[5] * 100.0;
        Some(if lost.is_empty() {
            format!(
                "frontier verdict ({}): tide delivers the most at every level from 0 to {last}%.",
                harm.name()
            )
        } else {
            format!(
                "frontier verdict ({}): tide is not ahead everywhere: {}.",
                harm.name(),
                lost.join("; ")
            )
        })
    }

    /// A self-contained HTML page with SVG plots.
    pub fn html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tide replay: {src}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse}}\
             td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
             .note{{color:#555;font-size:90%}}</style></head><body><h1>Tide replay</h1><p>{src}: {nodes} nodes, {hp} HP pods, {be} BE jobs offered, {steps} steps of {step} s.</p>",
            src = escape(&self.source),
            nodes = self.nodes,
            hp = self.hp_pods,
            be = self.be_jobs,
            steps = self.steps,
            step = self.step_secs
        );
        h.push_str("<table><tr><th>policy</th><th>CPU util</th><th>memory util</th><th>BE core-hours</th><th>reclaim ratio</th><th>violation rate</th><th>HP interference</th><th>BE evictions</th><th>BE kills</th></tr>");
        for p in &self.policies {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.0}</td><td>{:.3}</td><td>{:.2}%</td><td>{:.3}%</td><td>{}</td><td>{}</td></tr>",
                p.policy.name(),
                p.cpu_utilisation * 100.0,
                p.memory_utilisation * 100.0,
                p.be_core_hours,
                p.reclaim_ratio,
                p.violation_rate * 100.0,
                p.hp_interference * 100.0,
                p.be_evictions,
                p.be_kills
            );
        }
        h.push_str("</table>");
        let _ = write!(h, "<p class=\"note\">{}</p>", escape(&self.parameters()));
        if let Some(v) = self.verdict() {
            let _ = write!(h, "<p><b>{}</b></p>", escape(&v));
        }
        h.push_str("<h2>Why each policy gets what it gets</h2><ul>");
        for line in self.why() {
            let _ = write!(h, "<li>{}</li>", escape(&line));
        }
        h.push_str("</ul>");
        if !self.frontier.is_empty() {
            let _ = write!(
                h,
                "<h2>Frontier</h2><pre>{}</pre>",
                escape(&self.frontier_table())
            );
        }
        let hours = self.steps as f64 * self.step_secs as f64 / 3600.0;
        let series = |f: fn(&PolicyOutcome) -> &Vec<f32>| -> Vec<(&str, &[f32])> {
            self.policies
                .iter()
                .map(|p| (p.policy.name(), f(p).as_slice()))
                .collect()
        };
        h.push_str(&plots::over_time(
            "Cluster CPU used over time",
            "% of allocatable CPU",
            hours,
            &series(|p| &p.timeline_cpu),
        ));
        h.push_str(&plots::over_time(
            "Best-effort CPU over time",
            "% of allocatable CPU",
            hours,
            &series(|p| &p.timeline_be_cpu),
        ));
        h.push_str(&plots::over_time(
            "Memory in use over time (HP + BE)",
            "% of allocatable memory",
            hours,
            &series(|p| &p.timeline_memory),
        ));
        h.push_str(&plots::distribution(
            "Per-node mean CPU level (HP + BE), nodes sorted",
            "% of allocatable CPU",
            &series(|p| &p.node_cpu_level),
        ));
        h.push_str(&plots::distribution(
            "Per-node HP interference, nodes sorted",
            "% of the node's time",
            &series(|p| &p.node_interference),
        ));
        let points = if self.frontier.is_empty() {
            &self.policies
        } else {
            &self.frontier
        };
        // Per family: (harm, reclaim) points against interference and against saturation.
        type Curves<'a> = (&'a str, Vec<(f64, f64)>, Vec<(f64, f64)>);
        let mut families: Vec<Curves<'_>> = Vec::new();
        for p in points {
            let i = match families.iter().position(|f| f.0 == p.policy.name()) {
                Some(i) => i,
                None => {
                    families.push((p.policy.name(), Vec::new(), Vec::new()));
                    families.len() - 1
                }
            };
            families[i].1.push((p.hp_interference, p.reclaim_ratio));
            families[i].2.push((p.be_saturated_time, p.reclaim_ratio));
        }
        let by = |k: usize| -> Vec<(&str, Vec<(f64, f64)>)> {
            families
                .iter()
                .map(|f| (f.0, if k == 1 { f.1.clone() } else { f.2.clone() }))
                .collect()
        };
        h.push_str(&plots::frontier(
            "Reclaim against HP interference",
            "HP interference, % of node-time",
            &by(1),
        ));
        h.push_str(&plots::frontier(
            "Reclaim against BE saturation",
            "node CPU >= 95% busy because of BE, % of node-time",
            &by(2),
        ));
        h.push_str("<p class=\"note\">Reclaim ratio: BE core-hours delivered over the core-hours HP left idle. HP interference: share of node-time in which BE kept HP from CPU it demanded. Model and limits: docs/replay.md.</p></body></html>\n");
        h
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
