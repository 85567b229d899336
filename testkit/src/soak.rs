//! Soak runs (`make soak`): a process's resident memory, open files, threads and async tasks
//! sampled while a test keeps churning its inputs, and the verdict on whether they stayed flat.
//!
//! A leak shows as growth between the first sample taken after the warm-up and the last one:
//! memory that grows with every pod or container seen, a file descriptor or a task kept per
//! watch restart or per request. [`Soak::verdict`] allows a bounded slack (allocator and cache
//! noise: 25% + 8 MiB of RSS, 8 files, 8 threads, 16 tasks) and names every figure that grew
//! past it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One sample of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Time since the soak started.
    pub at: Duration,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors (`/proc/<pid>/fd`).
    pub fds: u64,
    /// Threads (`Threads` of `/proc/<pid>/status`).
    pub threads: u64,
    /// Live tokio tasks, from the process's own metrics (`None` if it does not export them).
    pub tasks: Option<u64>,
    /// Work done so far by the churn (objects created and deleted, requests answered, …).
    pub work: u64,
}

/// Reads `pid`'s figures now; `metrics` is its Prometheus text and `tasks_metric` the gauge of
/// live tokio tasks in it.
pub fn sample(
    pid: u32,
    at: Duration,
    metrics: &str,
    tasks_metric: &str,
    work: u64,
) -> Result<Sample, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or(format!("/proc/{pid}/status has no {key}"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count() as u64;
    Ok(Sample {
        at,
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
        tasks: gauge(metrics, tasks_metric),
        work,
    })
}

/// The value of an unlabelled gauge in Prometheus text.
pub fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse::<f64>().ok())?.map(|v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = v.max(0.0) as u64;
            v
        })
    })
}

/// The samples of one soak run.
#[derive(Debug, Clone)]
pub struct Soak {
    /// What ran, for the report.
    pub name: String,
    /// Samples taken before this are warm-up (caches filling) and not compared.
    pub warmup: Duration,
    started: Instant,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

/// What a soak found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Figures that grew past the slack, as `figure: first → last`.
    pub grew: Vec<String>,
}

impl Verdict {
    /// No figure grew past the slack.
    pub fn flat(&self) -> bool {
        self.grew.is_empty()
    }
}

impl Soak {
    /// A soak starting now.
    pub fn new(name: &str, warmup: Duration) -> Self {
        Self {
            name: name.into(),
            warmup,
            started: Instant::now(),
            samples: Vec::new(),
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The samples compared: the first after the warm-up and the last.
    fn ends(&self) -> Option<(&Sample, &Sample)> {
        let first = self.samples.iter().find(|s| s.at >= self.warmup)?;
        let last = self.samples.last()?;
        (last.at > first.at).then_some((first, last))
    }

    /// Samples `pid` now (see [`sample`]) and keeps the sample.
    pub fn record(
        &mut self,
        pid: u32,
        metrics: &str,
        tasks_metric: &str,
        work: u64,
    ) -> Result<(), String> {
        let s = sample(pid, self.elapsed(), metrics, tasks_metric, work)?;
        self.samples.push(s);
        Ok(())
    }

    /// Compares the first sample after the warm-up with the last one.
    pub fn verdict(&self) -> Verdict {
        let mut grew = Vec::new();
        let Some((a, b)) = self.ends() else {
            return Verdict {
                grew: vec!["no sample after the warm-up to compare".into()],
            };
        };
        if b.rss_kib > a.rss_kib + a.rss_kib / 4 + 8 * 1024 {
            grew.push(format!("RSS: {} → {} KiB", a.rss_kib, b.rss_kib));
        }
        if b.fds > a.fds + 8 {
            grew.push(format!("open files: {} → {}", a.fds, b.fds));
        }
        if b.threads > a.threads + 8 {
            grew.push(format!("threads: {} → {}", a.threads, b.threads));
        }
        if let (Some(x), Some(y)) = (a.tasks, b.tasks)
            && y > x + 16
        {
            grew.push(format!("tasks: {x} → {y}"));
        }
        Verdict { grew }
    }

    /// The samples as a table, with the verdict.
    pub fn report(&self, work_unit: &str) -> String {
        let mut out = format!(
            "soak: {} (warm-up {} s)\n{:>7} {:>10} {:>6} {:>8} {:>6} {:>10}\n",
            self.name,
            self.warmup.as_secs(),
            "t (s)",
            "RSS (MiB)",
            "files",
            "threads",
            "tasks",
            work_unit
        );
        for s in &self.samples {
            #[allow(clippy::cast_precision_loss)]
            let _ = writeln!(
                out,
                "{:>7} {:>10.1} {:>6} {:>8} {:>6} {:>10}",
                s.at.as_secs(),
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                s.tasks.map_or("-".into(), |t| t.to_string()),
                s.work
            );
        }
        let v = self.verdict();
        if v.flat() {
            out.push_str(
                "verdict: flat (RSS within 25% + 8 MiB, files/threads within 8, tasks within 16)\n",
            );
        } else {
            let _ = writeln!(out, "verdict: GREW — {}", v.grew.join("; "));
        }
        out
    }
}

/// Seconds a soak runs: `TIDE_SOAK_SECS`, default 600 (at least 2 minutes: one warm-up and one
/// to compare).
pub fn soak_secs() -> u64 {
    std::env::var("TIDE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
        .max(120)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, rss_mib: u64, fds: u64, tasks: u64) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            rss_kib: rss_mib * 1024,
            fds,
            threads: 4,
            tasks: Some(tasks),
            work: at,
        }
    }

    #[test]
    fn flat_within_the_slack_and_grown_past_it() {
        let mut soak = Soak::new("t", Duration::from_secs(60));
        // Warm-up growth does not count.
        soak.samples = vec![s(0, 10, 10, 5), s(60, 30, 20, 20), s(600, 40, 25, 30)];
        assert!(soak.verdict().flat(), "{:?}", soak.verdict());
        soak.samples.push(s(660, 60, 40, 60));
        let v = soak.verdict();
        assert_eq!(v.grew.len(), 3, "{v:?}");
        assert!(v.grew[0].starts_with("RSS"), "{v:?}");
        assert!(soak.report("pods").contains("GREW"));
    }

    #[test]
    fn no_sample_after_the_warm_up_is_not_flat() {
        let mut soak = Soak::new("t", Duration::from_secs(60));
        soak.samples = vec![s(0, 10, 10, 5), s(30, 10, 10, 5)];
        assert!(!soak.verdict().flat());
    }

    #[test]
    fn reads_an_unlabelled_gauge() {
        let m = "# HELP x y\nfoo_tasks 12\nfoo_tasks_total{a=\"b\"} 3\nbar 1.5e1\n";
        assert_eq!(gauge(m, "foo_tasks"), Some(12));
        assert_eq!(gauge(m, "bar"), Some(15));
        assert_eq!(gauge(m, "baz"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = sample(std::process::id(), Duration::ZERO, "", "x", 0).unwrap();
        assert!(me.rss_kib > 0 && me.fds > 0 && me.threads > 0, "{me:?}");
        assert_eq!(me.tasks, None);
    }
}
