//! What makes a trace risky to overcommit, measured the same way on every trace and on the
//! synthetic generator (`tide-replay stats`, docs/synthetic.md): how far pods peak above their
//! mean, how long their bursts last, how slowly their usage changes, whether the pods of a
//! node move together, and how strong the daily cycle is. All figures are of CPU; a pod (a
//! column) with no usage at all is left out.

use serde::Serialize;

use crate::trace::UsageTrace;

/// The statistics of one trace. Per-pod figures are medians over pods unless named otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceStats {
    /// Name of the trace.
    pub name: String,
    /// Pods (columns) with some usage.
    pub pods: usize,
    /// Nodes the co-movement and node figures are over.
    pub nodes: usize,
    /// Length in hours.
    pub hours: f64,
    /// Mean CPU use over request, averaged over pods with a request.
    pub use_of_request: f64,
    /// p99 / mean of a pod's CPU: median over pods.
    pub peak_to_mean: f64,
    /// p99 / mean of a pod's CPU: 90th percentile over pods.
    pub peak_to_mean_p90: f64,
    /// Mean length of a pod's bursts (runs of steps above its own 95th percentile), minutes.
    pub burst_minutes: f64,
    /// Autocorrelation of a pod's CPU 5 minutes apart (at least one step).
    pub acf_5m: f64,
    /// Autocorrelation of a pod's CPU one hour apart.
    pub acf_1h: f64,
    /// Mean Pearson correlation of the CPU of two pods on the same node (co-movement); `None`
    /// when no node holds two pods (machine traces: a column is a whole node).
    pub co_movement: Option<f64>,
    /// Daily cycle: (highest − lowest hour-of-day mean) / (2 × mean), median over pods; 0 for
    /// traces shorter than a day.
    pub diurnal_amplitude: f64,
    /// p99 / mean of a node's summed pod CPU, median over nodes: what a node-level reservation
    /// has to cover.
    pub node_peak_to_mean: f64,
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile (nearest rank) of `v`, 0 when empty. Sorts `v`.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

#[allow(clippy::cast_precision_loss)]
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Autocorrelation of `x` at `lag` steps (`None` without variance or with too few steps).
#[allow(clippy::cast_precision_loss)]
fn autocorrelation(x: &[f64], lag: usize) -> Option<f64> {
    if lag == 0 || x.len() <= lag + 1 {
        return None;
    }
    let m = mean(x);
    let var: f64 = x.iter().map(|v| (v - m) * (v - m)).sum();
    if var <= 0.0 {
        return None;
    }
    let cov: f64 = x
        .iter()
        .zip(&x[lag..])
        .map(|(a, b)| (a - m) * (b - m))
        .sum();
    Some(cov / var)
}

/// Pearson correlation of `a` and `b` (`None` if either is constant).
fn correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Mean length, in steps, of the runs of `x` strictly above `threshold` (`None`: no run).
#[allow(clippy::cast_precision_loss)]
fn mean_run_above(x: &[f64], threshold: f64) -> Option<f64> {
    let (mut runs, mut steps, mut inside) = (0u64, 0u64, false);
    for &v in x {
        if v > threshold {
            steps += 1;
            if !inside {
                runs += 1;
                inside = true;
            }
        } else {
            inside = false;
        }
    }
    (runs > 0).then(|| steps as f64 / runs as f64)
}

/// (highest − lowest hour-of-day mean) / (2 × mean) of `x`, sampled every `step` seconds from
/// `start` (seconds of some clock whose day starts at 0); `None` for less than a day.
#[allow(clippy::cast_precision_loss)]
fn diurnal(x: &[f64], step: u64, start: i64) -> Option<f64> {
    if (x.len() as u64).saturating_mul(step) < 86_400 {
        return None;
    }
    let mut sum = [0.0f64; 24];
    let mut n = [0u64; 24];
    for (t, v) in x.iter().enumerate() {
        let secs = start.saturating_add(i64::try_from(t as u64 * step).unwrap_or(i64::MAX));
        let h = usize::try_from(secs.rem_euclid(86_400) / 3_600).unwrap_or(0);
        sum[h] += v;
        n[h] += 1;
    }
    let hourly: Vec<f64> = (0..24)
        .filter(|&h| n[h] > 0)
        .map(|h| sum[h] / n[h] as f64)
        .collect();
    let m = mean(x);
    if m <= 0.0 || hourly.len() < 24 {
        return None;
    }
    let hi = hourly.iter().copied().fold(f64::MIN, f64::max);
    let lo = hourly.iter().copied().fold(f64::MAX, f64::min);
    Some((hi - lo) / (2.0 * m))
}

/// At most this many pod pairs per node enter the co-movement figure.
const PAIRS_PER_NODE: usize = 45;

/// Measures `trace`, with pods placed on `nodes` (column indices per node, as the replay packs
/// them). Pure: the same input gives the same figures.
#[allow(clippy::cast_precision_loss)]
pub fn trace_stats(trace: &UsageTrace, nodes: &[Vec<usize>]) -> TraceStats {
    let step = trace.step_secs.max(1);
    let lag = |secs: u64| usize::try_from(secs.div_ceil(step)).unwrap_or(usize::MAX);
    let series: Vec<Vec<f64>> = (0..trace.columns.len())
        .map(|c| trace.cpu.column(c).iter().map(|&v| f64::from(v)).collect())
        .collect();
    let active = |c: usize| series[c].iter().any(|&v| v > 0.0);
    let (mut ptm, mut bursts, mut a5, mut a60, mut diu, mut uor) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut pods = 0;
    for (c, x) in series.iter().enumerate() {
        if !active(c) {
            continue;
        }
        pods += 1;
        let m = mean(x);
        let mut sorted = x.clone();
        let p99 = quantile(&mut sorted, 0.99);
        let p95 = quantile(&mut sorted, 0.95);
        ptm.push(p99 / m);
        if let Some(run) = mean_run_above(x, p95) {
            bursts.push(run * step as f64 / 60.0);
        }
        a5.extend(autocorrelation(x, lag(300)));
        a60.extend(autocorrelation(x, lag(3_600)));
        diu.extend(diurnal(x, step, trace.start_time));
        let req = trace.columns[c].request.cpu.as_f64();
        if req > 0.0 {
            uor.push(m / req);
        }
    }
    let mut comove = Vec::new();
    let mut node_ptm = Vec::new();
    for members in nodes {
        let live: Vec<usize> = members.iter().copied().filter(|&c| active(c)).collect();
        let mut pairs = 0;
        'node: for (i, &a) in live.iter().enumerate() {
            for &b in &live[i + 1..] {
                if pairs == PAIRS_PER_NODE {
                    break 'node;
                }
                comove.extend(correlation(&series[a], &series[b]));
                pairs += 1;
            }
        }
        if live.is_empty() {
            continue;
        }
        let total: Vec<f64> = (0..trace.steps())
            .map(|t| live.iter().map(|&c| series[c][t]).sum())
            .collect();
        let m = mean(&total);
        if m > 0.0 {
            let mut sorted = total;
            node_ptm.push(quantile(&mut sorted, 0.99) / m);
        }
    }
    TraceStats {
        name: trace.name.clone(),
        pods,
        nodes: nodes.len(),
        hours: trace.steps() as f64 * step as f64 / 3_600.0,
        use_of_request: mean(&uor),
        peak_to_mean: median(&mut ptm.clone()),
        peak_to_mean_p90: quantile(&mut ptm, 0.9),
        burst_minutes: median(&mut bursts),
        acf_5m: median(&mut a5),
        acf_1h: median(&mut a60),
        co_movement: (!comove.is_empty()).then(|| mean(&comove)),
        diurnal_amplitude: median(&mut diu),
        node_peak_to_mean: median(&mut node_ptm),
    }
}

/// The statistics as a Markdown table, one row per trace.
pub fn markdown(rows: &[TraceStats]) -> String {
    let mut out = String::from(
        "| trace | pods | hours | use/request | p99/mean (p90) | burst min | acf 5 min | acf 1 h | co-movement | diurnal amp. | node p99/mean |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.3} | {:.2} ({:.2}) | {:.1} | {:.2} | {:.2} | {} | {:.2} | {:.2} |\n",
            s.name,
            s.pods,
            s.hours,
            s.use_of_request,
            s.peak_to_mean,
            s.peak_to_mean_p90,
            s.burst_minutes,
            s.acf_5m,
            s.acf_1h,
            s.co_movement.map_or_else(|| "–".to_owned(), |c| format!("{c:.2}")),
            s.diurnal_amplitude,
            s.node_peak_to_mean
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::BadRows;
    use crate::trace::{Column, TraceShape};
    use ndarray::Array2;
    use tide_api::ResourceAmounts;

    /// Two pods on one node over two days at 5-minute steps: `a` a pure daily sine, `b` its
    /// mirror image, plus a flat pod `c` with one 30-minute burst.
    fn trace() -> UsageTrace {
        let steps = 2 * 288;
        let mut cpu = Array2::<f32>::zeros((steps, 3));
        for t in 0..steps {
            let phase = t as f64 / 288.0 * std::f64::consts::TAU;
            cpu[[t, 0]] = (1_000.0 + 500.0 * phase.sin()) as f32;
            cpu[[t, 1]] = (1_000.0 - 500.0 * phase.sin()) as f32;
            cpu[[t, 2]] = if (100..106).contains(&t) {
                900.0
            } else {
                100.0
            };
        }
        UsageTrace {
            name: "hand-made".into(),
            shape: TraceShape::Workloads,
            step_secs: 300,
            start_time: 0,
            columns: (0..3)
                .map(|i| Column {
                    name: format!("p{i}"),
                    request: ResourceAmounts::new(4_000, 1 << 30),
                })
                .collect(),
            cpu,
            memory: Array2::zeros((steps, 3)),
            bad_rows: BadRows::default(),
            rows_read: 0,
        }
    }

    #[test]
    fn hand_made_trace_gives_the_figures_worked_out_by_hand() {
        let t = trace();
        let s = trace_stats(&t, &[vec![0, 1]]);
        assert_eq!(s.pods, 3);
        assert!((s.hours - 48.0).abs() < 1e-9);
        // The sines: amplitude 500 over a mean of 1000.
        assert!((s.diurnal_amplitude - 0.5).abs() < 0.02, "{s:?}");
        // Mirror images move exactly against each other.
        assert!((s.co_movement.unwrap() + 1.0).abs() < 1e-6, "{s:?}");
        // A sine of a day changes little in 5 minutes and is at cos(2π/24) an hour later.
        assert!(s.acf_5m > 0.99, "{s:?}");
        assert!(
            (s.acf_1h - (std::f64::consts::TAU / 24.0).cos()).abs() < 0.02,
            "{s:?}"
        );
        // The node's two pods sum to a flat 2000: no peak over its mean.
        assert!((s.node_peak_to_mean - 1.0).abs() < 1e-6, "{s:?}");
        // Bursts: pod c once for 6 steps (30 min); each sine stays above its p95 for 5% of a
        // day, once a day (~72 min). Median over the three pods: 72 min.
        assert!((s.burst_minutes - 72.0).abs() <= 10.0, "{s:?}");
        // Use of request: the sines 1000 of 4000, pod c (100 × 570 + 900 × 6) / 576 of 4000.
        let c_mean = (100.0 * 570.0 + 900.0 * 6.0) / 576.0;
        let want = (0.25 + 0.25 + c_mean / 4_000.0) / 3.0;
        assert!((s.use_of_request - want).abs() < 1e-4, "{s:?} want {want}");
    }

    #[test]
    fn helpers_handle_degenerate_input() {
        assert_eq!(autocorrelation(&[1.0; 10], 1), None);
        assert_eq!(autocorrelation(&[1.0, 2.0], 5), None);
        assert_eq!(correlation(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(mean_run_above(&[0.0, 0.0], 1.0), None);
        assert_eq!(mean_run_above(&[2.0, 2.0, 0.0, 2.0], 1.0), Some(1.5));
        assert_eq!(diurnal(&[1.0; 10], 60, 0), None);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
        let empty = UsageTrace {
            cpu: Array2::zeros((0, 0)),
            memory: Array2::zeros((0, 0)),
            columns: vec![],
            ..trace()
        };
        let s = trace_stats(&empty, &[]);
        assert_eq!(s.pods, 0);
        assert_eq!(s.peak_to_mean, 0.0);
        assert_eq!(s.co_movement, None);
    }
}
