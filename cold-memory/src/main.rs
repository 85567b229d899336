//! `tide-coldmem`: the cold page cache reclaimer daemon (built statically to run inside a
//! sandbox VM; also usable on a node for one cgroup).
//!
//! `--once` runs one period and prints its status as JSON; otherwise it loops, printing a JSON
//! status line per period (`--json`) and, with `--channel`, serving the host: a report frame
//! ([`tide_coldmem::proto`]) per period, targets taken between periods
//! ([`tide_coldmem::channel`]).
//!
//! `--connect ENDPOINT` runs the host's end instead (what the agent does for each sandbox): it
//! prints each report as a JSON line and holds the daemon to the target given.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tide_coldmem::channel::{Endpoint, GuestChannel, HostLink, Listen};
use tide_coldmem::daemon::{Backend, Reclaimer, Roots, Status, probe};
use tide_coldmem::guard::GuardSettings;
use tide_coldmem::proto::{Report, Target};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Choice {
    /// The best the kernel offers: DAMON, then MGLRU, then memcg.
    Auto,
    Damon,
    Mglru,
    Memcg,
    /// Files under `--files` directories (cachestat + atime, fadvise).
    Files,
}

/// Finds and reclaims cold page cache.
#[derive(Debug, Parser)]
#[command(name = "tide-coldmem", version, about)]
struct Args {
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Choice,
    /// A directory whose files' cold page cache the files backend drops (repeatable; with
    /// it, `auto` picks the files backend).
    #[arg(long = "files")]
    files: Vec<PathBuf>,
    /// The cgroup v2 directory to manage.
    #[arg(long, default_value = "/sys/fs/cgroup")]
    cgroup: PathBuf,
    /// sysfs root.
    #[arg(long, default_value = "/sys")]
    sysfs: PathBuf,
    /// debugfs root.
    #[arg(long, default_value = "/sys/kernel/debug")]
    debugfs: PathBuf,
    /// Period, ms.
    #[arg(long, default_value_t = 10_000)]
    period_ms: u64,
    /// Pages idle at least this long are cold, ms (DAMON and MGLRU).
    #[arg(long, default_value_t = 30_000)]
    min_age_ms: u64,
    /// DAMON's sampling interval, ms (default: a fifth of the aggregation interval).
    #[arg(long)]
    damon_sample_ms: Option<u64>,
    /// DAMON's aggregation interval, ms (default: a quarter of the min age, 0.1–5 s).
    #[arg(long)]
    damon_aggr_ms: Option<u64>,
    /// The most regions DAMON splits memory into (default 1000).
    #[arg(long)]
    damon_max_regions: Option<u64>,
    /// Most bytes to reclaim per period.
    #[arg(long, default_value_t = 1 << 30)]
    max_bytes_per_period: u64,
    /// The first period's budget (the guard starts here, then adapts).
    #[arg(long, default_value_t = 64 << 20)]
    initial_bytes: u64,
    /// One period, then print the status and exit.
    #[arg(long)]
    once: bool,
    /// Stop after this many periods (0: run until killed); exits non-zero if the last period
    /// met errors.
    #[arg(long, default_value_t = 0)]
    periods: u64,
    /// Print a JSON status line per period.
    #[arg(long)]
    json: bool,
    /// Serve the host here: `vsock:PORT` or `unix:PATH` (listen; the host connects),
    /// `virtio-port:NAME` (a virtio-serial port by name) or the path of a character device.
    #[arg(long)]
    channel: Option<Listen>,
    /// Run the host's end instead: connect to a daemon at `vsock://CID:PORT`,
    /// `hvsock://PATH:PORT` or `unix://PATH`, print its reports as JSON lines.
    #[arg(long)]
    connect: Option<Endpoint>,
    /// With --connect: the target to send — most bytes per period.
    #[arg(long, requires = "connect")]
    target_max_bytes: Option<u64>,
    /// With --connect: bytes to ask reclaimed next period.
    #[arg(long, default_value_t = 0)]
    target_reclaim_bytes: u64,
    /// With --connect: stop after this many reports (0: run until killed).
    #[arg(long, default_value_t = 0)]
    reports: u64,
    /// With --connect: give up (exit 1) if the reports asked for have not all come within
    /// this many seconds (0: wait for ever).
    #[arg(long, default_value_t = 0)]
    deadline_s: u64,
}

/// The host's end: print reports as they come, hold the daemon to the target.
fn host(a: &Args, endpoint: Endpoint) -> ExitCode {
    let target = a.target_max_bytes.map(|max| Target {
        max_bytes_per_period: max,
        min_age_ms: a.min_age_ms,
        reclaim_bytes: a.target_reclaim_bytes,
    });
    let link = match HostLink::spawn(endpoint.clone(), target) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tide-coldmem: {endpoint}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut printed, mut errors) = (0u64, 0u64);
    let deadline = (a.deadline_s > 0).then(|| Instant::now() + Duration::from_secs(a.deadline_s));
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let st = link.state();
        if st.errors > errors {
            errors = st.errors;
            if let Some(e) = &st.last_error {
                eprintln!("tide-coldmem: {e} (retrying)");
            }
        }
        if st.reports > printed {
            printed = st.reports;
            if let Some((_, r)) = &st.report {
                match serde_json::to_string(r) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("tide-coldmem: report: {e}"),
                }
            }
        }
        if a.reports > 0 && printed >= a.reports {
            return ExitCode::SUCCESS;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "tide-coldmem: {printed} of {} reports within {} s",
                a.reports, a.deadline_s
            );
            return ExitCode::FAILURE;
        }
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(endpoint) = a.connect.clone() {
        return host(&a, endpoint);
    }
    let roots = Roots {
        sysfs: a.sysfs.clone(),
        debugfs: a.debugfs.clone(),
        cgroup: a.cgroup.clone(),
        proc: PathBuf::from("/proc"),
    };
    let offered = probe(&roots, &a.files);
    let backend = match a.backend {
        Choice::Auto => offered.first().copied(),
        Choice::Damon => Some(Backend::Damon),
        Choice::Mglru => Some(Backend::Mglru),
        Choice::Memcg => Some(Backend::Memcg),
        Choice::Files => Some(Backend::Files),
    }
    .filter(|b| offered.contains(b));
    let Some(backend) = backend else {
        eprintln!(
            "tide-coldmem: backend {:?} is not offered by this kernel (offered: {:?})",
            a.backend, offered
        );
        return ExitCode::from(2);
    };
    let guard = GuardSettings {
        max_bytes: a
            .max_bytes_per_period
            .max(GuardSettings::default().min_bytes),
        ..GuardSettings::default()
    };
    let mut r = Reclaimer::new(roots, backend, a.min_age_ms, guard)
        .with_initial_budget(a.initial_bytes)
        .with_period_ms(a.period_ms)
        .with_damon_monitoring(
            a.damon_sample_ms.map(|ms| ms.saturating_mul(1000)),
            a.damon_aggr_ms.map(|ms| ms.saturating_mul(1000)),
            a.damon_max_regions,
        )
        .with_files(a.files.clone());
    let mut channel = match a.channel.as_ref().map(|l| GuestChannel::open(l, &a.sysfs)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("tide-coldmem: channel: {e}");
            return ExitCode::from(2);
        }
    };
    let report = |r: &Reclaimer, seq: u64, st: Option<&Status>| Report {
        seq,
        backend: backend.as_str().into(),
        cold_bytes: st.map_or(0, |s| s.cold_bytes),
        age_ms: st.map_or(0, |s| s.age_ms),
        reclaimed_bytes: st.map_or(0, |s| s.reclaimed_bytes),
        refaults: st.map_or(0, |s| s.refaults),
        psi_some_avg10: st.and_then(|s| s.psi_some_avg10),
        max_bytes_per_period: r.guard.settings.max_bytes,
        min_age_ms: r.min_age_ms,
    };
    // Hello: the settings in force, with no measurements yet; kept and given to a host as it
    // connects, so it can send its target before the first period ends.
    if let Some(ch) = channel.as_mut() {
        ch.send(&report(&r, 0, None));
    }
    let period = Duration::from_millis(a.period_ms.max(100));
    let mut seq = 0u64;
    loop {
        let mut target = None;
        let settle = if a.once {
            Duration::from_millis(200)
        } else {
            period
        };
        // Between reclaim and measurement: take what the host sends, in short steps.
        let until = Instant::now() + settle;
        let status = r.period_in_steps(|| {
            if let Some(t) = channel.as_mut().and_then(GuestChannel::poll) {
                target = Some(t);
            }
            std::thread::sleep(
                Duration::from_millis(200).min(until.saturating_duration_since(Instant::now())),
            );
            Instant::now() < until
        });
        if let Some(t) = &target {
            r.apply_target(t);
        }
        seq += 1;
        if a.json || a.once {
            match serde_json::to_string(&status) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("tide-coldmem: status: {e}"),
            }
        }
        if let Some(ch) = channel.as_mut() {
            ch.send(&report(&r, seq, Some(&status)));
            for e in ch.errors.drain(..) {
                eprintln!("tide-coldmem: channel: {e}");
            }
        }
        if a.once || seq == a.periods {
            return if status.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    }
}
