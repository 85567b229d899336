//! `tide-coldmem`: the cold page cache reclaimer daemon (built statically to run inside a
//! sandbox VM; also usable on a node for one cgroup).
//!
//! `--once` runs one period and prints its status as JSON; otherwise it loops, printing a JSON
//! status line per period (`--json`) and, with `--report PATH`, writing a versioned frame
//! ([`tide_coldmem::proto`]) per period to PATH (a virtio-serial port or a file).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tide_coldmem::daemon::{Backend, Reclaimer, Roots, probe};
use tide_coldmem::guard::GuardSettings;
use tide_coldmem::proto::{Message, Report, encode};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Choice {
    /// The best the kernel offers: DAMON, then MGLRU, then memcg.
    Auto,
    Damon,
    Mglru,
    Memcg,
}

/// Finds and reclaims cold page cache.
#[derive(Debug, Parser)]
#[command(name = "tide-coldmem", version, about)]
struct Args {
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Choice,
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
    /// Write a report frame per period here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let roots = Roots {
        sysfs: a.sysfs.clone(),
        debugfs: a.debugfs.clone(),
        cgroup: a.cgroup.clone(),
        proc: PathBuf::from("/proc"),
    };
    let offered = probe(&roots);
    let backend = match a.backend {
        Choice::Auto => offered.first().copied(),
        Choice::Damon => offered.contains(&Backend::Damon).then_some(Backend::Damon),
        Choice::Mglru => offered.contains(&Backend::Mglru).then_some(Backend::Mglru),
        Choice::Memcg => offered.contains(&Backend::Memcg).then_some(Backend::Memcg),
    };
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
    let mut r =
        Reclaimer::new(roots, backend, a.min_age_ms, guard).with_initial_budget(a.initial_bytes);
    let period = Duration::from_millis(a.period_ms.max(100));
    let mut seq = 0u64;
    loop {
        let status = r.period(|| {
            std::thread::sleep(if a.once {
                Duration::from_millis(200)
            } else {
                period
            })
        });
        seq += 1;
        if a.json || a.once {
            match serde_json::to_string(&status) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("tide-coldmem: status: {e}"),
            }
        }
        if let Some(path) = &a.report {
            let frame = encode(&Message::Report(Report {
                seq,
                backend: backend.as_str().into(),
                cold_bytes: status.cold_bytes,
                age_ms: status.age_ms,
                reclaimed_bytes: status.reclaimed_bytes,
                refaults: status.refaults,
                psi_some_avg10: status.psi_some_avg10,
            }));
            let written = frame.map_err(|e| e.to_string()).and_then(|f| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .and_then(|mut file| file.write_all(&f))
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
            if let Err(e) = written {
                eprintln!("tide-coldmem: report: {e}");
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
