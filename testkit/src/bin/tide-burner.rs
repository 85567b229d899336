//! `tide-burner`: the workload of the real-node tests, packed into container images by
//! `tide_testkit::kubelet` (built statically there, so an image is this one file).
//!
//! - `tide-burner pause`: sleeps for ever (the pod sandbox image).
//! - `tide-burner run [--cpu MILLI] [--mem MIB] [--ctl DIR] [--secs N]`: burns `MILLI` millicores of CPU
//!   (duty cycles of 100 ms on `ceil(MILLI / 1000)` threads) and holds `MIB` MiB of anonymous
//!   memory, every page touched. With `--ctl DIR` the files `DIR/cpu` and `DIR/mem`, when
//!   present, override both and are read again every 100 ms, so a test changes the load of a
//!   running container by writing a file. With `--secs N` it exits (status 0) after `N`
//!   seconds, as a batch job's task does.
//! - `tide-burner sleep`: does nothing, for ever (a process started in a running container).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_millis(100);
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn read_number(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One burning thread: `share` of every period busy, in thousandths.
fn burn(share: &AtomicU64) {
    loop {
        let busy = PERIOD.mul_f64(share.load(Ordering::Relaxed).min(1000) as f64 / 1000.0);
        let start = Instant::now();
        let mut x: u64 = 1;
        while start.elapsed() < busy {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        if let Some(rest) = PERIOD.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

fn hold(mem: &mut Vec<u8>, mib: usize) {
    let want = mib * MIB;
    if mem.len() == want {
        return;
    }
    *mem = Vec::new();
    let mut v = vec![0u8; want];
    for i in (0..want).step_by(PAGE) {
        v[i] = 1;
    }
    *mem = v;
}

fn run(mut cpu: u64, mut mem_mib: u64, ctl: Option<PathBuf>, secs: Option<u64>) -> ! {
    let end = secs.map(|s| Instant::now() + Duration::from_secs(s));
    const THREADS: usize = 4;
    let shares: Vec<Arc<AtomicU64>> = (0..THREADS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for s in &shares {
        let s = Arc::clone(s);
        std::thread::spawn(move || burn(&s));
    }
    let mut mem = Vec::new();
    loop {
        if end.is_some_and(|e| Instant::now() >= e) {
            std::process::exit(0);
        }
        if let Some(dir) = &ctl {
            cpu = read_number(&dir.join("cpu")).unwrap_or(cpu);
            mem_mib = read_number(&dir.join("mem")).unwrap_or(mem_mib);
        }
        let cpu = cpu.min(1000 * THREADS as u64);
        let threads = cpu.div_ceil(1000).max(1);
        for (i, s) in shares.iter().enumerate() {
            let share = if (i as u64) < threads {
                cpu / threads
            } else {
                0
            };
            s.store(share, Ordering::Relaxed);
        }
        hold(&mut mem, usize::try_from(mem_mib).unwrap_or(0));
        std::thread::sleep(PERIOD);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pause" | "sleep") => sleep_forever(),
        Some("run") => {
            let (mut cpu, mut mem, mut ctl, mut secs) = (0, 0, None, None);
            let mut it = args[1..].iter();
            while let Some(flag) = it.next() {
                let value = it.next().cloned().unwrap_or_default();
                match flag.as_str() {
                    "--cpu" => cpu = value.parse().unwrap_or(0),
                    "--mem" => mem = value.parse().unwrap_or(0),
                    "--ctl" => ctl = Some(PathBuf::from(value)),
                    "--secs" => secs = value.parse().ok(),
                    other => {
                        eprintln!("tide-burner: unknown flag {other}");
                        std::process::exit(2);
                    }
                }
            }
            run(cpu, mem, ctl, secs);
        }
        _ => {
            eprintln!(
                "usage: tide-burner pause | sleep | run [--cpu MILLI] [--mem MIB] [--ctl DIR] [--secs N]"
            );
            std::process::exit(2);
        }
    }
}
