//! The agent's host side of the sandbox cold-memory daemons, end to end: a guest end (the
//! daemon's own `GuestChannel`, on a Unix socket standing in for the VM's port) reports cold
//! memory; the live runtime credits it in the published NodeEstimate (capped at HP memory),
//! shows it in metrics, asks the guest to reclaim when memory passes the reclaim level, and
//! stops crediting a sandbox whose link went away.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{GIB_KIB, live_node};
use tide_agent::sandbox::{SandboxOptions, Sandboxes};
use tide_coldmem::channel::{Endpoint, GuestChannel, Listen};
use tide_coldmem::proto::{Report, Target};
use tide_testkit::Kind;
use tide_testkit::node::proc_files;

const GIB: u64 = 1 << 30;

/// The guest: reports `cold`/`reclaimed` every 50 ms, keeps every target it gets.
struct Guest {
    cold: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<Target>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Guest {
    fn start(listen: Listen) -> Self {
        let cold = Arc::new(AtomicU64::new(3 * GIB));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut ch = GuestChannel::open(&listen, std::path::Path::new("/nonexistent")).unwrap();
        let (c, t, s) = (cold.clone(), targets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = 0;
            while !s.load(Ordering::Relaxed) {
                if let Some(target) = ch.poll() {
                    t.lock().unwrap().push(target);
                }
                seq += 1;
                ch.send(&Report {
                    seq,
                    backend: "mglru".into(),
                    cold_bytes: c.load(Ordering::Relaxed),
                    age_ms: 30_000,
                    reclaimed_bytes: GIB,
                    refaults: 0,
                    psi_some_avg10: Some(0.0),
                    max_bytes_per_period: GIB,
                    min_age_ms: 30_000,
                });
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            cold,
            targets,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_cold_memory_is_credited_and_reclaimed_on_demand() {
    let (root, _dir, fake, rt) = live_node("sbx").await;
    let sock = root.join("sandbox.sock");
    let mut guest = Guest::start(Listen::Unix(sock.clone()));
    let endpoint = Endpoint::Unix(sock.clone());
    let label = endpoint.to_string();
    *rt.sandboxes.lock().unwrap() = Sandboxes::new(SandboxOptions {
        endpoints: vec![endpoint],
        ..SandboxOptions::default()
    });
    until("the standing target", || {
        guest.targets.lock().unwrap().first()
            == Some(&Target {
                max_bytes_per_period: GIB,
                min_age_ms: 30_000,
                reclaim_bytes: 0,
            })
    })
    .await;
    until("a fresh report", || {
        rt.sandboxes.lock().unwrap().views(Instant::now())[0].fresh
    })
    .await;

    // 3 GiB cold, 1 GiB of it reclaimed this period: 2 GiB credited.
    let t0 = 1_800_000_000_000;
    let r = rt.tick(t0).await;
    assert!(r.published && r.errors.is_empty(), "{r:?}");
    let ne = fake.get(Kind::NodeEstimate, "", "n1").unwrap();
    assert_eq!(ne["status"]["memory"]["coldCredit"], 2 * GIB, "{ne}");
    assert_eq!(ne["status"]["cpu"]["coldCredit"].as_u64().unwrap_or(0), 0);
    let m = rt.metrics.render();
    assert_eq!(
        metric(
            &m,
            &format!("tide_agent_sandbox_cold_bytes{{sandbox=\"{label}\"}}")
        ),
        Some((2 * GIB) as f64),
        "{m}"
    );
    assert_eq!(
        metric(&m, "tide_agent_sandboxes{state=\"fresh\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "tide_agent_estimate{kind=\"cold_credit\",resource=\"memory\"}"
        ),
        Some((2 * GIB) as f64)
    );

    // A guest claiming 100 GiB is credited no more than the HP memory in use.
    guest.cold.store(100 * GIB, Ordering::Relaxed);
    until("the 100 GiB report", || {
        rt.sandboxes.lock().unwrap().views(Instant::now())[0].remaining_cold == 99 * GIB
    })
    .await;
    rt.tick(t0 + 1_000).await;
    let m = rt.metrics.render();
    let hp = metric(&m, "tide_agent_usage{class=\"hp\",resource=\"memory\"}").unwrap();
    assert!(hp > 0.0 && hp < (99 * GIB) as f64, "{m}");
    assert_eq!(
        metric(
            &m,
            "tide_agent_estimate{kind=\"cold_credit\",resource=\"memory\"}"
        ),
        Some(hp),
        "{m}"
    );

    // Memory passes the reclaim level (27 of 32 GiB > 80%): the guest is asked to reclaim
    // what the planner wants dropped, and no pod is evicted for it.
    guest.cold.store(3 * GIB, Ordering::Relaxed);
    until("the 3 GiB report", || {
        rt.sandboxes.lock().unwrap().views(Instant::now())[0].remaining_cold == 2 * GIB
    })
    .await;
    proc_files(&root.join("proc"), 0, 32 * GIB_KIB, 27 * GIB_KIB).unwrap();
    let before = guest.targets.lock().unwrap().len();
    let r = rt.tick(t0 + 2_000).await;
    assert!(r.evictions.is_empty(), "{r:?}");
    until("the reclaim ask", || {
        guest.targets.lock().unwrap().len() > before
    })
    .await;
    let ask = guest.targets.lock().unwrap().last().unwrap().reclaim_bytes;
    // Down to 80% of 32 GiB = 25.6 GiB from 27 GiB: 1.4 GiB, within the 2 GiB cold.
    let want = 27 * GIB - (32 * GIB) * 4 / 5;
    assert!(ask.abs_diff(want) < (1 << 20), "asked {ask}, want {want}");
    let m = rt.metrics.render();
    assert!(
        m.contains("tide_agent_actions_total{action=\"reclaim-cold-memory\",outcome=\"requested\",reason=\"memory-reclaim\"} 1"),
        "{m}"
    );
    // Below the level again: the standing target (no ask) is restored.
    proc_files(&root.join("proc"), 0, 32 * GIB_KIB, 16 * GIB_KIB).unwrap();
    rt.tick(t0 + 3_000).await;
    until("the standing target again", || {
        guest.targets.lock().unwrap().last().unwrap().reclaim_bytes == 0
    })
    .await;

    // The guest goes away: its link drops, nothing is credited, the node is unaffected.
    guest.stop();
    drop(guest);
    until("the link to drop", || {
        !rt.sandboxes.lock().unwrap().views(Instant::now())[0].connected
    })
    .await;
    // Its error is reported (once per distinct error, not every tick).
    let r = rt.tick(t0 + 4_000).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.starts_with(&format!("sandbox {label}: "))),
        "{:?}",
        r.errors
    );
    let m = rt.metrics.render();
    assert_eq!(
        metric(
            &m,
            "tide_agent_estimate{kind=\"cold_credit\",resource=\"memory\"}"
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "tide_agent_sandboxes{state=\"fresh\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "tide_agent_sandboxes{state=\"linked\"}"),
        Some(1.0)
    );
    assert!(!m.contains("tide_agent_sandbox_cold_bytes{"), "{m}");
}
