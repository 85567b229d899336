//! The replay report: a table for the terminal, JSON for machines, HTML with SVG plots for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::sim::PolicyOutcome;

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
    /// Results per policy.
    pub policies: Vec<PolicyOutcome>,
    /// Wall time of loading, seconds.
    pub load_secs: f64,
    /// Wall time of the simulation (all policies), seconds.
    pub simulate_secs: f64,
}

const COLORS: [&str; 6] = [
    "#7f7f7f", "#bcbd22", "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
];

impl ReplayReport {
    /// Plain-text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let hours = self.steps as f64 * self.step_secs as f64 / 3600.0;
        let _ = writeln!(
            s,
            "replay of {}: {} nodes, {} HP pods, {} BE jobs offered, {:.1} h in {} s steps\n",
            self.source, self.nodes, self.hp_pods, self.be_jobs, hours, self.step_secs
        );
        let _ = writeln!(
            s,
            "{:<14} {:>8} {:>8} {:>11} {:>8} {:>10} {:>13} {:>10} {:>9} {:>8}",
            "policy",
            "cpu util",
            "mem util",
            "BE core-h",
            "reclaim",
            "violation",
            "HP interfer.",
            "BE evict",
            "BE kills",
            "BE done"
        );
        for p in &self.policies {
            let _ = writeln!(
                s,
                "{:<14} {:>7.1}% {:>7.1}% {:>11.0} {:>8.3} {:>9.2}% {:>12.3}% {:>10} {:>9} {:>8}",
                p.policy.name(),
                p.cpu_utilisation * 100.0,
                p.memory_utilisation * 100.0,
                p.be_core_hours,
                p.reclaim_ratio,
                p.violation_rate * 100.0,
                p.hp_interference * 100.0,
                p.be_evictions,
                p.be_kills,
                p.be_jobs_completed
            );
        }
        let oracle = self.policies.first().map_or(0.0, |p| p.oracle_core_hours);
        let _ = writeln!(
            s,
            "\nreclaim = BE core-hours / idle HP core-hours ({oracle:.0} core-h, the oracle's limit); violation = share of\n\
             decisions whose HP peak over the horizon passed the HP reservation; HP interference = share of node-time\n\
             HP CPU demand was not met because of BE. Loaded in {:.2} s, simulated in {:.2} s.",
            self.load_secs, self.simulate_secs
        );
        s
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
        h.push_str("<h2>CPU utilisation over time</h2>");
        h.push_str(&self.line_plot(|p| &p.timeline_cpu, "cluster CPU used / allocatable"));
        h.push_str("<h2>Best-effort CPU over time</h2>");
        h.push_str(&self.line_plot(|p| &p.timeline_be_cpu, "BE CPU / allocatable"));
        h.push_str("<h2>Reclaim against harm</h2>");
        h.push_str(&self.scatter());
        h.push_str("<p class=\"note\">Reclaim ratio: BE core-hours delivered over the core-hours HP left idle. HP interference: share of node-time in which BE kept HP from CPU it demanded. Model and limits: docs/replay.md.</p></body></html>\n");
        h
    }

    fn line_plot(&self, series: impl Fn(&PolicyOutcome) -> &Vec<f32>, label: &str) -> String {
        let (w, ht, pad, top) = (900.0, 300.0, 40.0, 12.0);
        let plot_h = ht - pad - top;
        let y_of = |v: f64| top + plot_h * (1.0 - v.clamp(0.0, 1.0));
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"{label}\">",
            ht + 30.0
        );
        let _ = write!(
            s,
            "<rect x=\"{pad}\" y=\"{top}\" width=\"{}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>",
            w - pad
        );
        for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let y = y_of(tick);
            let _ = write!(
                s,
                "<text x=\"2\" y=\"{:.1}\" font-size=\"11\">{:.0}%</text><line x1=\"{pad}\" x2=\"{w}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>",
                y + 4.0,
                tick * 100.0
            );
        }
        // Time ticks in hours, about eight of them.
        let hours = self.steps as f64 * self.step_secs as f64 / 3600.0;
        let every = [1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 168.0]
            .into_iter()
            .find(|e| hours / e <= 8.0)
            .unwrap_or(168.0);
        let mut h = 0.0;
        while h <= hours + 1e-9 && hours > 0.0 {
            let x = pad + (w - pad) * h / hours;
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{h:.0} h</text>",
                top + plot_h,
                (x - 8.0).min(w - 32.0),
                top + plot_h + 14.0
            );
            h += every;
        }
        for (i, p) in self.policies.iter().enumerate() {
            let v = series(p);
            if v.is_empty() {
                continue;
            }
            let dx = (w - pad) / (v.len().max(2) - 1) as f64;
            let pts: Vec<String> = v
                .iter()
                .enumerate()
                .map(|(k, y)| format!("{:.1},{:.1}", pad + k as f64 * dx, y_of(f64::from(*y))))
                .collect();
            let c = COLORS[i % COLORS.len()];
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>",
                pts.join(" ")
            );
            let _ = write!(
                s,
                "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\" fill=\"{c}\">&#9644; {}</text>",
                pad + 10.0 + 140.0 * i as f64,
                ht + 8.0,
                p.policy.name()
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#555\">{label}</text></svg>",
            w / 2.0 - 80.0,
            ht + 26.0
        );
        s
    }

    fn scatter(&self) -> String {
        let (w, ht, pad) = (600.0, 360.0, 50.0);
        let max_x = self
            .policies
            .iter()
            .map(|p| p.hp_interference * 100.0)
            .fold(0.1, f64::max)
            * 1.2;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"reclaim ratio against HP interference\">"
        );
        let _ = write!(
            s,
            "<rect x=\"{pad}\" y=\"10\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
            w - pad - 10.0,
            ht - pad - 10.0
        );
        let px = |x: f64| pad + (x / max_x).clamp(0.0, 1.0) * (w - pad - 10.0);
        let py = |y: f64| 10.0 + (1.0 - y.clamp(0.0, 1.0)) * (ht - pad - 10.0);
        for (i, p) in self.policies.iter().enumerate() {
            let (x, y) = (px(p.hp_interference * 100.0), py(p.reclaim_ratio));
            let c = COLORS[i % COLORS.len()];
            let _ = write!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
                x + 8.0,
                y + 4.0,
                p.policy.name()
            );
        }
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{:.0}\" font-size=\"11\">HP interference, % of node-time (0 … {max_x:.2}%)</text><text x=\"4\" y=\"20\" font-size=\"11\">reclaim 1.0</text><text x=\"4\" y=\"{:.0}\" font-size=\"11\">0</text></svg>",
            ht - 15.0,
            ht - pad
        );
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
