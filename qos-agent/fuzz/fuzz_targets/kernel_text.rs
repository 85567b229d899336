//! Arbitrary text through every parser of kernel files the agent reads: `/proc/stat`,
//! `/proc/meminfo`, `/proc/<pid>/stat`, mountinfo (cgroup v1 and v2 mounts, a directory's
//! cgroup path), flat-keyed files, PSI, CPU lists, pod and container directory names. Never a
//! panic; parsed values within their physical bounds; CPU lists print back to themselves.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tide_agent::cgroup::{self, Driver};
use tide_agent::cpuset::CpuSet;
use tide_agent::procfs;
use tide_coldmem::kernel_text;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let _ = procfs::cpu_busy_ns(text);
    let _ = procfs::meminfo_bytes(text, "MemTotal");
    let _ = procfs::meminfo_bytes(text, "MemAvailable");
    let _ = kernel_text::proc_stat_cpu_ticks(text);
    for key in [
        "inactive_file",
        "usage_usec",
        "nr_throttled",
        "throttled_usec",
    ] {
        let _ = cgroup::keyed(text, key);
    }
    if let Some(p) = cgroup::psi_some_avg10(text) {
        assert!((0.0..=100.0).contains(&p), "PSI avg10 {p}");
    }
    let _ = cgroup::v1_mounts(text);
    let _ = cgroup::v2_mount(text);
    for m in kernel_text::mounts(text) {
        let _ = m.has_option("noatime");
    }
    let _ = kernel_text::cgroup2_path(text, Path::new("/sys/fs/cgroup/kubepods/pod1"));
    for line in text.lines().take(64) {
        for driver in [Driver::Cgroupfs, Driver::Systemd] {
            if let Some(uid) = cgroup::pod_uid(line, driver) {
                assert!(!uid.is_empty());
            }
            let _ = cgroup::container_id(line, driver);
        }
    }
    if let Ok(set) = text.parse::<CpuSet>() {
        let back: CpuSet = set.to_string().parse().expect("a printed CPU list parses");
        assert_eq!(back, set);
    }
});
