//! The `tide-coldmem` binary on a fake cgroup: `--once` prints the period's JSON status; the
//! daemon serves its host over a Unix socket while the same binary in `--connect` mode plays
//! the host (hello and reports arrive, the host's target is taken); bad input is refused.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fake_cgroup(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tide-coldmem-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cg = dir.join("cgroup");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(cg.join("memory.stat"), "anon 0\nfile 104857600\nactive_file 0\ninactive_file 104857600\nworkingset_refault_file 0\n").unwrap();
    std::fs::write(cg.join("memory.reclaim"), "").unwrap();
    (dir, cg)
}

fn daemon(dir: &Path, cg: &Path, backend: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tide-coldmem"));
    c.args(["--backend", backend, "--initial-bytes", "4194304"])
        .arg("--cgroup")
        .arg(cg)
        .arg("--sysfs")
        .arg(dir.join("sys"));
    c
}

#[test]
fn once_prints_status() {
    let (dir, cg) = fake_cgroup("once");
    let out = daemon(&dir, &cg, "memcg").arg("--once").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["backend"], "memcg");
    assert_eq!(status["coldBytes"], 104_857_600);
    assert_eq!(status["requestedBytes"], 4 << 20);
    assert_eq!(
        std::fs::read_to_string(cg.join("memory.reclaim")).unwrap(),
        (4u64 << 20).to_string()
    );

    let out = daemon(&dir, &cg, "damon").arg("--once").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not offered"));
    let out = daemon(&dir, &cg, "memcg")
        .args(["--once", "--channel", "vsock:x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number"));
    let out = Command::new(env!("CARGO_BIN_EXE_tide-coldmem"))
        .args(["--connect", "tcp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scheme"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn daemon_reports_to_its_host_and_takes_the_target() {
    let (dir, cg) = fake_cgroup("channel");
    let sock = dir.join("coldmem.sock");
    // The daemon: three 1 s periods, serving the host on a Unix socket.
    let guest = daemon(&dir, &cg, "memcg")
        .args(["--periods", "3", "--period-ms", "1000", "--json"])
        .arg("--channel")
        .arg(format!("unix:{}", sock.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !sock.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The host: hello + 3 reports; it asks for 200 MiB within a 256 MiB cap.
    let host = Command::new(env!("CARGO_BIN_EXE_tide-coldmem"))
        .arg("--connect")
        .arg(format!("unix://{}", sock.display()))
        .args([
            "--reports",
            "4",
            "--target-max-bytes",
            "268435456",
            "--target-reclaim-bytes",
            "209715200",
            "--min-age-ms",
            "1000",
            "--deadline-s",
            "60",
        ])
        .output()
        .unwrap();
    let guest = guest.wait_with_output().unwrap();
    assert!(
        guest.status.success(),
        "{}",
        String::from_utf8_lossy(&guest.stderr)
    );
    assert!(
        host.status.success(),
        "{}",
        String::from_utf8_lossy(&host.stderr)
    );
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&host.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 4, "{reports:?}");
    // The host connected during the first period and was given the hello at once.
    assert_eq!(reports[0]["seq"], 0, "hello first: {reports:?}");
    assert_eq!(reports[0]["maxBytesPerPeriod"], 1u64 << 30);
    assert_eq!(reports[1]["coldBytes"], 104_857_600);
    // The target holds from the period after it arrived.
    assert_eq!(reports[3]["maxBytesPerPeriod"], 256u64 << 20);
    assert_eq!(reports[3]["minAgeMs"], 1000);
    let statuses: Vec<serde_json::Value> = String::from_utf8_lossy(&guest.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(statuses.len(), 3);
    assert_eq!(statuses[0]["requestedBytes"], 4 << 20);
    // The guard alone would ask 36 MiB next; the host's 200 MiB request raises the budget,
    // and what is requested is capped at what is cold (100 MiB).
    assert_eq!(statuses[0]["nextBudget"], 36 << 20);
    assert!(
        statuses[1..]
            .iter()
            .any(|s| s["requestedBytes"] == 100 << 20),
        "the host's reclaim request raises the budget: {statuses:?}"
    );
    assert!(!sock.exists(), "the daemon removes its socket");
    std::fs::remove_dir_all(&dir).unwrap();
}
