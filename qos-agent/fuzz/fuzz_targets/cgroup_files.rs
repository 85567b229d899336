//! Arbitrary bytes as the files the agent reads from a cgroup v2 tree, `/proc` and sysfs
//! (split at NUL bytes: memory.stat, cpu.stat, memory.current, memory.pressure, cgroup.procs,
//! /proc/stat, /proc/meminfo, the online CPU list, a CPU's siblings): reading usage, PIDs,
//! node totals and the topology must give a value or an error naming the file, never a
//! panic, and `write_if_changed` compares without panicking.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;
use tide_agent::cgroup::{self, Driver, Hierarchy, Layout};
use tide_agent::procfs;
use tide_agent::topology::Topology;

fn scratch() -> PathBuf {
    let base = scratch::base();
    let dir = base.join(format!("tide-fuzz-cgroup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

fuzz_target!(|data: &[u8]| {
    let root = scratch();
    let mut parts = data.split(|&b| b == 0);
    let mut next = || parts.next().unwrap_or(&[]);
    let cg = root.join("cgroup");
    let pod = cg.join("kubepods.slice/kubepods-pod1.slice");
    std::fs::create_dir_all(&pod).expect("mkdir");
    for f in [
        "memory.stat",
        "cpu.stat",
        "memory.current",
        "memory.pressure",
        "cgroup.procs",
    ] {
        std::fs::write(pod.join(f), next()).expect("write");
    }
    let proc_root = root.join("proc");
    std::fs::create_dir_all(&proc_root).expect("mkdir");
    std::fs::write(proc_root.join("stat"), next()).expect("write");
    std::fs::write(proc_root.join("meminfo"), next()).expect("write");
    let sys = root.join("cpu");
    std::fs::create_dir_all(sys.join("cpu0/topology")).expect("mkdir");
    std::fs::write(sys.join("online"), next()).expect("write");
    std::fs::write(sys.join("cpu0/topology/thread_siblings_list"), next()).expect("write");

    let layout = Layout {
        hierarchy: Hierarchy::V2(cg.clone()),
        driver: Driver::Systemd,
        root: String::new(),
    };
    let rel = "kubepods.slice/kubepods-pod1.slice";
    if let Ok(u) = layout.usage(rel) {
        let _ = u.working_set();
    }
    let _ = layout.pids(rel);
    let _ = layout.discover();
    let _ = procfs::read_totals(&proc_root);
    if let Ok(t) = Topology::read(&sys) {
        let _ = t.all_cpus();
        let _ = t.threads_per_core();
    }
    let _ = cgroup::write_if_changed(&pod.join("cgroup.procs"), "0-3");
    let _ = std::fs::remove_dir_all(&root);
});
