//! The agent's cgroup v2 code on the machine's real cgroup v2 hierarchy, as far as it goes
//! here: this host's unified hierarchy has no cpu/memory controllers, so it exposes the core
//! files only (`cgroup.procs`, `cgroup.kill`, base `cpu.stat`, PSI). The test makes a subtree
//! with the kubelet's systemd layout, starts a real process in a container scope, and checks
//! discovery, the PID list, the real `cpu.stat` and PSI files, and the local kill through
//! `cgroup.kill`; then removes everything. Memory and CPU-controller files are covered by the
//! fixture trees (`tide_testkit::node::cgroup_v2`) in the unit and runtime tests.
//!
//! Needs root and a cgroup2 mount; `TIDE_SKIP_CGROUP_TESTS=1` skips it explicitly.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tide_agent::cgroup::{Driver, Hierarchy, Layout, keyed, psi_some_avg10, v2_mount};
use tide_api::KubeQosClass;

const UID: &str = "0be0be00-0000-4000-8000-0000000000a2";

struct Tree {
    dirs: Vec<PathBuf>,
    child: Option<std::process::Child>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn discovery_pids_psi_and_cgroup_kill_on_real_v2() {
    if std::env::var_os("TIDE_SKIP_CGROUP_TESTS").is_some() {
        eprintln!("skipped: TIDE_SKIP_CGROUP_TESTS is set");
        return;
    }
    let mount = v2_mount(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
        .expect("no cgroup2 mount (set TIDE_SKIP_CGROUP_TESTS=1 to skip)");
    let root = format!("tide-test-v2-{}", std::process::id());
    let layout = Layout {
        hierarchy: Hierarchy::V2(mount.clone()),
        driver: Driver::Systemd,
        root: root.clone(),
    };
    let pod = layout.pod_dir(KubeQosClass::BestEffort, UID);
    let ctr = format!("{pod}/cri-containerd-{}.scope", "e".repeat(64));
    let mut tree = Tree {
        dirs: Vec::new(),
        child: None,
    };
    let mut path = mount.clone();
    for part in ctr.split('/') {
        path = path.join(part);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        tree.dirs.push(path.clone());
    }
    let child = Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 300",
        ])
        .spawn()
        .unwrap();
    let pid = child.id();
    tree.child = Some(child);
    std::fs::write(mount.join(&ctr).join("cgroup.procs"), pid.to_string()).unwrap();

    let pods = layout.discover().unwrap();
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].uid, UID);
    assert_eq!(pods[0].kube_qos, KubeQosClass::BestEffort);
    assert_eq!(pods[0].containers, vec![("e".repeat(64), ctr.clone())]);
    assert_eq!(layout.pids(&ctr).unwrap(), vec![pid]);

    // The real files parse: CPU time accrues to the container and the pod; PSI reads.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cpu_usec = |rel: &str| {
        keyed(
            &std::fs::read_to_string(mount.join(rel).join("cpu.stat")).unwrap(),
            "usage_usec",
        )
        .unwrap()
    };
    while cpu_usec(&ctr) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cpu_usec(&ctr) > 0);
    assert!(cpu_usec(&pod) >= cpu_usec(&ctr));
    let psi = std::fs::read_to_string(mount.join(&pod).join("cpu.pressure")).unwrap();
    assert!(psi_some_avg10(&psi).is_some(), "{psi}");

    // Local kill of the whole pod through cgroup.kill.
    std::fs::write(mount.join(&pod).join("cgroup.kill"), "1").unwrap();
    let mut child = tree.child.take().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    drop(tree);
    assert!(!mount.join(&root).exists(), "subtree left behind");
}
