//! The agent's cgroup code on the machine's real cgroup v1 hierarchies. The test makes its own
//! subtree laid out like the kubelet's (`tide-test-<pid>/kubepods/{besteffort,burstable}/
//! pod<uid>/<container id>`) in the cpu, cpuacct, cpuset and memory hierarchies, starts real
//! processes in it, points the agent at it as its cgroup root, checks what the agent wrote, and
//! removes everything it created. Nothing outside that subtree is touched.
//!
//! It needs root and cgroup v1 controllers (the CI machines have both). Elsewhere set
//! `TIDE_SKIP_CGROUP_TESTS=1` to skip it explicitly; it fails rather than passing silently.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

use tide_agent::cgroup::{Driver, Hierarchy, Layout, v1_mounts};
use tide_agent::cpuset::CpuSet;
use tide_agent::executor::{Desired, apply, quota_for};
use tide_agent::oom::oom_score_adj;
use tide_api::{ClassifyRules, KubeQosClass, PodFacts, classify};

use tide_testkit::node::{V1_CONTROLLERS as CONTROLLERS, V1Subtree};
const BE_UID: &str = "0be0be00-0000-4000-8000-000000000001";
const LS_UID: &str = "015015a0-0000-4000-8000-000000000002";

fn class(qos: &str, priority: i32) -> tide_api::Classification {
    let mut f = PodFacts::default();
    f.labels.insert("tide.dev/qos".into(), qos.into());
    f.priority = Some(priority);
    classify(&f, &ClassifyRules::default())
}

/// Whether this process may set `oom_score_adj` to `value` on a child it started: lowering
/// needs CAP_SYS_RESOURCE (the DaemonSet grants it; this sandbox drops it), and a value below
/// the inherited `oom_score_adj_min` is refused too. Probed on a throwaway `sleep`.
fn may_set_oom_score(value: i32) -> bool {
    let mut probe = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let ok = fs::write(
        format!("/proc/{}/oom_score_adj", probe.id()),
        value.to_string(),
    )
    .is_ok();
    let _ = probe.kill();
    let _ = probe.wait();
    ok
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn cpusets_quota_and_oom_scores_on_real_v1_cgroups() {
    if std::env::var_os("TIDE_SKIP_CGROUP_TESTS").is_some() {
        eprintln!("skipped: TIDE_SKIP_CGROUP_TESTS is set");
        return;
    }
    let mounts = v1_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    for c in CONTROLLERS {
        assert!(
            mounts.contains_key(c),
            "cgroup v1 controller {c} is not mounted (set TIDE_SKIP_CGROUP_TESTS=1 to skip)"
        );
    }
    let root = format!("tide-test-{}", std::process::id());
    let mut t = V1Subtree::new(mounts.clone(), &root).unwrap();
    // Paths below are relative to the hierarchy roots (the agent's view, with `root` as the
    // kubelet's cgroupRoot); the subtree takes them relative to its own root.
    let inner = |rel: &str| rel.strip_prefix(&format!("{root}/")).unwrap().to_owned();
    let abs = |c: &str, rel: &str| mounts[c].join(rel);
    let layout = Layout {
        hierarchy: Hierarchy::V1(mounts.clone()),
        driver: Driver::Cgroupfs,
        root: root.clone(),
    };
    let be_qos = layout.qos_dir(KubeQosClass::BestEffort);
    let be_pod = layout.pod_dir(KubeQosClass::BestEffort, BE_UID);
    let be_ctr = format!("{be_pod}/{}", "b".repeat(64));
    let ls_pod = layout.pod_dir(KubeQosClass::Burstable, LS_UID);
    let ls_ctr = format!("{ls_pod}/{}", "c".repeat(64));
    t.mkdir(&inner(&be_ctr)).unwrap();
    t.mkdir(&inner(&ls_ctr)).unwrap();
    let be_pid = t.spawn_in(&inner(&be_ctr)).unwrap();
    let ls_pid = t.spawn_in(&inner(&ls_ctr)).unwrap();

    // Discovery finds both pods, their QoS level and containers.
    let pods = layout.discover().unwrap();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let be = pods.iter().find(|p| p.uid == BE_UID).unwrap();
    assert_eq!(be.kube_qos, KubeQosClass::BestEffort);
    assert_eq!(be.containers, vec![("b".repeat(64), be_ctr.clone())]);
    // Usage is readable from the real files, and the process's CPU time shows up.
    let mut u = layout.usage(&be_ctr).unwrap();
    for _ in 0..200 {
        if u.cpu_ns > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        u = layout.usage(&be_ctr).unwrap();
    }
    assert!(u.cpu_ns > 0, "{u:?}");
    assert_eq!(layout.pids(&be_ctr).unwrap(), vec![be_pid]);

    let all: CpuSet = read(abs("cpuset", &root).join("cpuset.cpus"))
        .parse()
        .unwrap();
    let last: CpuSet = all.iter().last().into_iter().collect();
    let be_adj = oom_score_adj(&class("BE", 0));
    let ls_adj = oom_score_adj(&class("LS", 10_000));
    let desired = |be_cpus: &CpuSet, be_quota: Option<u64>| Desired {
        cpusets: vec![
            (be_ctr.clone(), be_cpus.clone()),
            (be_qos.clone(), be_cpus.clone()),
            (be_pod.clone(), be_cpus.clone()),
            (ls_ctr.clone(), all.clone()),
        ],
        quotas: vec![(be_qos.clone(), be_quota)],
        oom: vec![(be_ctr.clone(), be_adj), (ls_ctr.clone(), ls_adj)],
    };

    // Where the environment refuses a value (see may_set_oom_score), the agent must report
    // exactly that write and still do the rest.
    let can_raise = may_set_oom_score(be_adj);
    let can_lower = may_set_oom_score(ls_adj);
    if !(can_raise && can_lower) {
        eprintln!(
            "note: this environment refuses oom_score_adj {be_adj}: {}, {ls_adj}: {}",
            !can_raise, !can_lower
        );
    }
    let expected_errors = usize::from(!can_raise) + usize::from(!can_lower);

    // Suppress BE to the last CPU and half a core.
    let applied = apply(
        &layout,
        &desired(&last, Some(quota_for(500))),
        "/proc".as_ref(),
    );
    assert_eq!(
        applied.errors.len(),
        expected_errors,
        "{:?}",
        applied.errors
    );
    if !can_lower {
        assert!(
            applied
                .errors
                .iter()
                .any(|e| e.contains(&format!("/proc/{ls_pid}/oom_score_adj"))
                    && e.contains("Permission denied")),
            "{:?}",
            applied.errors
        );
    }
    for rel in [&be_qos, &be_pod, &be_ctr] {
        assert_eq!(
            read(abs("cpuset", rel).join("cpuset.cpus")),
            last.to_string()
        );
    }
    assert_eq!(
        read(abs("cpuset", &ls_ctr).join("cpuset.cpus")),
        all.to_string()
    );
    assert_eq!(read(abs("cpu", &be_qos).join("cpu.cfs_quota_us")), "50000");
    assert_eq!(
        read(abs("cpu", &be_qos).join("cpu.cfs_period_us")),
        "100000"
    );
    if can_raise {
        assert_eq!(
            read(format!("/proc/{be_pid}/oom_score_adj").into()),
            be_adj.to_string()
        );
    }
    if can_lower {
        assert_eq!(
            read(format!("/proc/{ls_pid}/oom_score_adj").into()),
            ls_adj.to_string()
        );
    }
    assert!(be_adj > 500 && ls_adj < -500);
    // The kernel agrees: the BE process is the one it would kill first.
    let score = |pid: u32| {
        read(format!("/proc/{pid}/oom_score").into())
            .parse::<i64>()
            .unwrap()
    };
    if can_raise {
        assert!(score(be_pid) > score(ls_pid));
    }

    // Again: converged, no writes at all.
    let again = apply(
        &layout,
        &desired(&last, Some(quota_for(500))),
        "/proc".as_ref(),
    );
    assert_eq!(
        (again.writes, again.errors.len()),
        (0, expected_errors),
        "{again:?}"
    );

    // Release: BE back on every CPU, no quota. Parents widen before children.
    let applied = apply(&layout, &desired(&all, None), "/proc".as_ref());
    assert_eq!(
        applied.errors.len(),
        expected_errors,
        "{:?}",
        applied.errors
    );
    assert_eq!(
        read(abs("cpuset", &be_ctr).join("cpuset.cpus")),
        all.to_string()
    );
    assert_eq!(read(abs("cpu", &be_qos).join("cpu.cfs_quota_us")), "-1");

    // A new process in the BE container gets its value on the next pass.
    let newcomer = t.spawn_in(&inner(&be_ctr)).unwrap();
    let applied = apply(&layout, &desired(&all, None), "/proc".as_ref());
    if can_raise {
        assert_eq!(applied.writes, 1, "{applied:?}");
        assert_eq!(
            read(format!("/proc/{newcomer}/oom_score_adj").into()),
            be_adj.to_string()
        );
    } else {
        // Refused for the newcomer too: reported, one more error than before.
        assert_eq!(applied.errors.len(), expected_errors + 1, "{applied:?}");
    }

    // The start-up race: a BE pod the plan does not name (the API has not reported it yet)
    // holds every CPU below the besteffort level. Narrowing the level alone is refused by the
    // kernel (EBUSY); the executor narrows what is below to fit, then the level.
    if all.len() > 1 {
        let stray_pod = layout.pod_dir(
            KubeQosClass::BestEffort,
            "5a5a5a5a-0000-4000-8000-000000000003",
        );
        let stray_ctr = format!("{stray_pod}/{}", "d".repeat(64));
        t.mkdir(&inner(&stray_ctr)).unwrap();
        for rel in [&stray_pod, &stray_ctr] {
            assert_eq!(
                read(abs("cpuset", rel).join("cpuset.cpus")),
                all.to_string()
            );
        }
        let level_only = Desired {
            cpusets: vec![(be_qos.clone(), last.clone())],
            ..Desired::default()
        };
        let applied = apply(&layout, &level_only, "/proc".as_ref());
        assert!(applied.errors.is_empty(), "{applied:?}");
        for rel in [&be_qos, &stray_pod, &stray_ctr, &be_pod, &be_ctr] {
            assert_eq!(
                read(abs("cpuset", rel).join("cpuset.cpus")),
                last.to_string(),
                "{rel}"
            );
        }
        let applied = apply(&layout, &desired(&all, None), "/proc".as_ref());
        assert_eq!(applied.errors.len(), expected_errors, "{applied:?}");
    }

    // A cgroup that vanished: an error naming it, the rest still applied.
    let mut broken = desired(&all, None);
    broken
        .cpusets
        .push((format!("{root}/kubepods/gone"), all.clone()));
    let applied = apply(&layout, &broken, "/proc".as_ref());
    assert_eq!(applied.errors.len(), 1 + expected_errors);
    assert!(
        applied.errors.iter().any(|e| e.contains("kubepods/gone")),
        "{:?}",
        applied.errors
    );

    drop(t);
    for c in CONTROLLERS {
        assert!(
            !layout.path(c, &root).unwrap().exists(),
            "{c} subtree left behind"
        );
    }
}
