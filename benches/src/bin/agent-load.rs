//! The agent's own cost (`make agent-load`): the real `tide-agent` binary runs against a
//! kubelet-like subtree of the machine's real cgroup v1 hierarchies with `--containers`
//! containers (two per pod, half BE, half LS, one `sleep` process each) and the fake API
//! server, at the default 1 s cadence, for `--seconds`. Prints its CPU use (share of one core,
//! after a 10 s warm-up) and resident memory. Needs root and cgroup v1 (as the CI machines
//! have); everything it creates is removed at the end.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tide_benches::arg;
use tide_coldmem::kernel_text;
use tide_testkit::FakeApi;
use tide_testkit::node::V1Subtree;

fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| kernel_text::proc_stat_cpu_ticks(&s))
        .unwrap_or(0)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| kernel_text::kib_field_bytes(&s, key))
        .unwrap_or(0)
        / 1024
}

#[tokio::main]
async fn main() {
    let containers: usize = arg("--containers", 100);
    let seconds: u64 = arg("--seconds", 60);
    let pods = containers.div_ceil(2);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = tide_agent::cgroup::v1_mounts(&mountinfo);
    let root = format!("tide-bench-{}", std::process::id());
    let mut tree = V1Subtree::new(mounts, &root).expect("needs root and cgroup v1 controllers");
    let fake = FakeApi::start().await.unwrap();
    fake.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"},
                      "status": {"allocatable": {"cpu": "2", "memory": "8Gi"}}}),
    );
    for i in 0..pods {
        let be = i % 2 == 0;
        let uid = format!("{i:08x}-0000-4000-8000-000000000000");
        let qos = if be { "besteffort" } else { "burstable" };
        for c in 0..2 {
            let rel = format!("kubepods/{qos}/pod{uid}/{:064x}", i * 2 + c);
            tree.mkdir(&rel).unwrap();
            tree.spawn_in(&rel).unwrap();
        }
        let resources = if be {
            json!({"requests": {"tide.dev/batch-cpu": "100", "tide.dev/batch-memory": "64Mi"}})
        } else {
            json!({"requests": {"cpu": "100m", "memory": "64Mi"}})
        };
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": "bench", "uid": uid},
            "spec": {"nodeName": "bench-node", "containers": [{"name": "a", "resources": resources}, {"name": "b"}]},
            "status": {"phase": "Running"}});
        if be {
            pod["metadata"]["labels"] = json!({"tide.dev/qos": "BE"});
        }
        fake.apply(pod);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("tide-agent");
    let mut agent = Command::new(&exe)
        .args([
            "--node-name=bench-node".to_string(),
            "--cgroup-version=v1".into(),
            "--cgroup-driver=cgroupfs".into(),
            format!("--cgroup-root={root}"),
            format!("--api-server={}", fake.url()),
            format!("--listen=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo build --release -p tide-agent)",
                exe.display()
            )
        });
    let pid = agent.id();
    println!(
        "agent-load: {containers} containers in {pods} pods, 1 s cadence, {seconds} s measured after 10 s warm-up"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (dt, dc) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0);
    let cpu_share = dc as f64 / 100.0 / dt * 100.0;
    println!("tide-agent CPU: {cpu_share:.2}% of one core ({dc} ticks in {dt:.1} s)");
    println!(
        "tide-agent memory: RSS {:.1} MiB, peak {:.1} MiB",
        status_kib(pid, "VmRSS") as f64 / 1024.0,
        status_kib(pid, "VmHWM") as f64 / 1024.0
    );
    let published = fake
        .get(tide_testkit::Kind::NodeEstimate, "", "bench-node")
        .is_some();
    println!(
        "NodeEstimate published: {published}; API requests served: {}",
        fake.requests().len()
    );
    let _ = agent.kill();
    let _ = agent.wait();
    drop(tree);
}
