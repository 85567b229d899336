//! A real Kubernetes node for tests: containerd, runc and the v1.20.2 kubelet, joined to a
//! [`ControlPlane`], with everything they change kept private and removed afterwards.
//!
//! - **Private mount namespace**: containerd starts under `unshare --mount --net`; the kubelet
//!   joins both namespaces (`nsenter --mount --net`), as a node's kubelet shares the node's
//!   network with its `hostNetwork` pods (and can probe the others' addresses). Inside, the node's own directories are bind-mounted
//!   over `/run`, `/var/lib` and `/var/log` (the kubelet v1.20 hard-codes
//!   `/var/lib/kubelet/device-plugins`, `/var/log/pods` and `/var/log/containers`; containerd
//!   keeps network namespaces in `/run/netns`), so nothing appears on the host's file systems.
//! - **Kernel settings**: the kubelet writes `vm/overcommit_memory`, `vm/panic_on_oom`,
//!   `kernel/panic`, `kernel/panic_on_oops`, `kernel/keys/root_maxkeys` and
//!   `kernel/keys/root_maxbytes` at start. Each of those `/proc/sys` files is covered, inside
//!   the namespace, by a bind-mounted regular file holding the host's value, so the writes land
//!   there; [`RealNode::shutdown`] checks that the host's values did not change.
//! - **Network**: containerd has its own network namespace with the Debian CNI bridge
//!   (`containernetworking-plugins`, host-local addresses, a default route through the
//!   bridge); pods get addresses there. The API server (on the host's 127.0.0.1) is reached at
//!   the `kubernetes` Service's address, 10.0.0.1:443, through a relay the test process holds
//!   ([`crate::netns`]): the kubelet, and pods with in-cluster configuration, use it as in a
//!   cluster. `/run` is a shared mount inside the namespace, so pods may mount host paths
//!   below it with `mountPropagation: HostToContainer`.
//! - **cgroups**: the kubelet's `cgroupRoot` is `/tide-node-<pid>-<n>`, a directory this
//!   harness creates in every cgroup v1 hierarchy (`cgroupDriver: cgroupfs`,
//!   `cgroupsPerQOS: true`: pods at `<root>/kubepods/<qos>/pod<uid>/<container id>`).
//!   containerd and its shims run in `<root>/runtime` of the `pids` hierarchy, so every
//!   process the node started is found below the root.
//! - **`oom_score_adj`**: these machines lack `CAP_SYS_RESOURCE`, and runc fails a container
//!   whose spec asks for a negative `oom_score_adj` (the kubelet asks −998 for sandboxes,
//!   −997 for Guaranteed containers). containerd's `restrict_oom_score_adj` (meant for
//!   rootless runs) clamps those to its own value (0) in this node only; the agent under test
//!   runs unchanged.
//! - **Images**: no registry. The harness compiles `tide-burner` (`src/bin/tide-burner.rs`)
//!   statically with `rustc`, packs it as a docker-archive (a tar of `manifest.json`, the
//!   image config and one layer, digests by `sha256sum`) and imports it with
//!   `ctr -n k8s.io images import`. The sandbox ("pause") image is the same binary.
//! - **Cleanup by PID, also on panic**: dropping the node stops the kubelet, kills every
//!   process in its cgroup subtree (containers, then containerd and its shims), removes the
//!   subtree in every hierarchy, deepest first, and its directory (kept with the logs when the
//!   test panics or `TIDE_KEEP_LOGS` is set). The mount namespace, and every mount in it, goes
//!   with its last process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::k8s::{ControlPlane, Credentials, Proc, START_TIMEOUT, free_port, wait_until};

/// The machine-wide kernel settings the kubelet writes at start (`/proc/sys/…`).
pub const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// The sandbox image every pod of the node runs first.
pub const PAUSE_IMAGE: &str = "tide.test/pause:1";
/// The node's address (`--node-ip`), on the loopback of its network namespace.
pub const NODE_IP: &str = "10.89.0.1";

/// The burner image (`tide-burner`, entrypoint `/tide-burner`).
pub const BURNER_IMAGE: &str = "tide.test/burner:1";

/// How to run the node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The Node name (`--hostname-override`).
    pub name: String,
    /// The kubelet's `systemReserved` memory, bytes: makes the Node's allocatable memory small
    /// enough for a test to reach the agent's memory levels.
    pub system_reserved_memory: Option<u64>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            name: "tide-node".into(),
            system_reserved_memory: None,
        }
    }
}

/// A running node. See the module documentation.
pub struct RealNode {
    /// The Node name.
    pub name: String,
    /// State, configuration and logs.
    pub dir: PathBuf,
    /// The kubelet's `cgroupRoot` without slashes (`tide-node-<pid>-<n>`).
    pub cgroup_root: String,
    /// containerd's socket.
    pub socket: PathBuf,
    /// The static `tide-burner` binary in the images.
    pub burner: PathBuf,
    hierarchies: BTreeMap<String, PathBuf>,
    host_sysctls: Vec<(String, String)>,
    mount_ns: String,
    kubelet: Option<Proc>,
    containerd: Option<Proc>,
    api_relay: Option<crate::netns::Forward>,
    cleaned: bool,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("cgroup_root", &self.cgroup_root)
            .finish_non_exhaustive()
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join(program).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(program).is_file())
    })
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn mkdirs(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Every cgroup v1 hierarchy: its name (controllers joined by `,`, or `name=…`) → mount point.
pub fn v1_hierarchies() -> Result<BTreeMap<String, PathBuf>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = right.split_whitespace().collect();
        if fields.first() != Some(&"cgroup") {
            continue;
        }
        let Some(point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let name = fields
            .get(2)
            .map(|opts| {
                opts.split(',')
                    .filter(|o| *o != "rw" && *o != "ro" && !o.starts_with("release_agent"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        out.entry(name).or_insert_with(|| PathBuf::from(point));
    }
    if out.is_empty() {
        return Err(
            "no cgroup v1 hierarchy is mounted (the real-node harness needs cgroup v1)".into(),
        );
    }
    Ok(out)
}

/// The cgroup2 mount, if one is mounted beside the v1 hierarchies (hybrid hosts).
fn unified_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// Why a real node cannot start on this machine, or `None` when it can: a message for a
/// test's skip line.
pub fn unavailable(cp: &ControlPlane) -> Option<String> {
    if !cp.bins.component("kubelet").is_file() {
        return Some(format!(
            "no kubelet in {} (scripts/build-k8s.sh builds it; TIDE_K8S_BIN points elsewhere)",
            cp.bins.dir.display()
        ));
    }
    for p in [
        "containerd",
        "runc",
        "ctr",
        "unshare",
        "nsenter",
        "ip",
        "rustc",
        "sha256sum",
    ] {
        if !on_path(p) {
            return Some(format!(
                "{p} is not installed (scripts/test.sh installs containerd, runc, iproute2)"
            ));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").is_file() {
        return Some("no /usr/lib/cni/bridge (Debian containernetworking-plugins)".into());
    }
    None
}

/// Cleans up after nodes whose test process died without dropping them (SIGKILL, an abort, a
/// CI timeout): the kubelet and containerd go with it (`setpriv --pdeathsig`), but the
/// containerd shims and the containers do not, and neither do the node's cgroups and state
/// directory. A node is swept only when its owner (the PID in its name) is gone and its
/// directory exists in this machine's temp dir (so it was made here, not by a sandbox sharing
/// the cgroup tree): every process in its cgroup subtree is killed, the subtree removed in
/// every hierarchy, deepest first, and the directory removed (its mount namespace goes with
/// its last process). Returns what was swept, a line each.
pub fn sweep_orphans() -> Vec<String> {
    let Ok(hierarchies) = v1_hierarchies() else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = hierarchies.values().cloned().collect();
    mounts.extend(unified_mount());
    let mut names = std::collections::BTreeSet::new();
    for m in &mounts {
        for e in std::fs::read_dir(m).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if crate::k8s::owner_gone(&name, "tide-node-")
                && std::env::temp_dir().join(&name).is_dir()
            {
                names.insert(name);
            }
        }
    }
    let mut out = Vec::new();
    // Directories of dead nodes whose cgroups are already gone (kept for their logs after a
    // failure): removed once older than a day.
    for e in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > crate::k8s::KEEP_LOGS_OF_DEAD_RUNS);
        if crate::k8s::owner_gone(&name, "tide-node-")
            && !names.contains(&name)
            && old
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            out.push(format!(
                "removed {} (owner gone, older than a day)",
                e.path().display()
            ));
        }
    }
    for name in names {
        let bases: Vec<PathBuf> = mounts
            .iter()
            .map(|m| m.join(&name))
            .filter(|b| b.exists())
            .collect();
        let pids = |bases: &[PathBuf]| -> Vec<u32> {
            let mut pids: Vec<u32> = bases
                .iter()
                .flat_map(|b| RealNode::subtree(b))
                .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
                .flat_map(|t| {
                    t.lines()
                        .filter_map(|l| l.trim().parse::<u32>().ok())
                        .collect::<Vec<_>>()
                })
                .filter(|&p| p != 0)
                .collect();
            pids.sort_unstable();
            pids.dedup();
            pids
        };
        let killed = pids(&bases);
        kill_until_gone(|| pids(&bases), Duration::from_secs(10));
        let left: Vec<String> = bases
            .iter()
            .filter(|b| !remove_cgroup_tree(b, Duration::from_secs(10)))
            .map(|b| b.display().to_string())
            .collect();
        let dir = std::env::temp_dir().join(&name);
        let dir_removed = std::fs::remove_dir_all(&dir).is_ok();
        out.push(format!(
            "swept {name} (owner gone): {} processes killed, {} of {} cgroups removed{}, {} {}",
            killed.len(),
            bases.len() - left.len(),
            bases.len(),
            if left.is_empty() {
                String::new()
            } else {
                format!(" (left: {})", left.join(", "))
            },
            dir.display(),
            if dir_removed {
                "removed"
            } else {
                "kept (busy)"
            }
        ));
    }
    out
}

/// SIGKILLs whatever `pids` lists until it lists nothing or `timeout` passes; returns the PIDs
/// still listed.
fn kill_until_gone(pids: impl Fn() -> Vec<u32>, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = pids();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        for pid in left {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the cgroup `base` and everything below it, deepest first, retrying for `timeout`
/// (a cgroup whose last process just exited may be busy for a moment); true when it is gone.
fn remove_cgroup_tree(base: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while base.exists() && Instant::now() < deadline {
        for d in RealNode::subtree(base) {
            let _ = std::fs::remove_dir(&d);
        }
        if base.exists() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    !base.exists()
}

fn fresh_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "tide-node-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Compiles `tide-burner` statically into `out` with the workspace's `rustc`.
pub fn build_burner(out: &Path) -> Result<(), String> {
    let root = workspace_root();
    let src = root.join("testkit/src/bin/tide-burner.rs");
    let status = Command::new("rustc")
        .current_dir(&root)
        .args([
            "--edition",
            "2024",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(out)
        .arg(&src)
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    if !status.status.success() {
        return Err(format!(
            "rustc {}: {}",
            src.display(),
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    Ok(())
}

/// Writes a docker-archive image `tag` holding `binary` as `/tide-burner`, entrypoint
/// `entrypoint`, to `tar_path` (work files in `work`).
pub fn write_image(
    work: &Path,
    binary: &Path,
    tag: &str,
    entrypoint: &[&str],
    tar_path: &Path,
) -> Result<(), String> {
    let layer_dir = work.join("layer");
    mkdirs(&layer_dir)?;
    std::fs::copy(binary, layer_dir.join("tide-burner"))
        .map_err(|e| format!("copying {}: {e}", binary.display()))?;
    let layer = work.join("layer.tar");
    sh(
        "tar",
        &[
            "--owner=0",
            "--group=0",
            "-C",
            &layer_dir.display().to_string(),
            "-cf",
            &layer.display().to_string(),
            ".",
        ],
    )?;
    let digest = sh("sha256sum", &[&layer.display().to_string()])?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
    });
    write(&work.join("config.json"), &config.to_string())?;
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}
    ]);
    write(&work.join("manifest.json"), &manifest.to_string())?;
    sh(
        "tar",
        &[
            "-C",
            &work.display().to_string(),
            "-cf",
            &tar_path.display().to_string(),
            "manifest.json",
            "config.json",
            "layer.tar",
        ],
    )?;
    Ok(())
}

/// `GET`/`PATCH` on the API server with the control plane's admin certificate, by `curl`.
fn api(cp: &ControlPlane, method: &str, path: &str, body: Option<&str>) -> Result<String, String> {
    let pki = &cp.pki.dir;
    let mut args = vec![
        "-sS".to_owned(),
        "--fail".into(),
        "--max-time".into(),
        "5".into(),
        "--cacert".into(),
        cp.pki.ca().display().to_string(),
        "--cert".into(),
        pki.join("admin.crt").display().to_string(),
        "--key".into(),
        pki.join("admin.key").display().to_string(),
        "-X".into(),
        method.into(),
    ];
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/merge-patch+json".into(),
            "--data".into(),
            b.into(),
        ]);
    }
    args.push(format!("{}{path}", cp.server));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sh("curl", &refs)
}

impl RealNode {
    /// Starts containerd and the kubelet, imports the pause and burner images, and waits until
    /// the Node is Ready (at most [`START_TIMEOUT`] per step); then removes the `not-ready`
    /// taint the kubelet registered with (no node lifecycle controller runs here).
    pub fn start(cp: &ControlPlane, opts: &NodeOptions) -> Result<Self, String> {
        if let Some(why) = unavailable(cp) {
            return Err(why);
        }
        for swept in sweep_orphans() {
            eprintln!("real node: {swept}");
        }
        let cgroup_root = fresh_name();
        let dir = std::env::temp_dir().join(&cgroup_root);
        let _ = std::fs::remove_dir_all(&dir);
        mkdirs(&dir)?;
        let hierarchies = v1_hierarchies()?;
        let mut node = Self {
            name: opts.name.clone(),
            socket: dir.join("containerd.sock"),
            burner: dir.join("tide-burner"),
            dir,
            cgroup_root,
            hierarchies,
            host_sysctls: Vec::new(),
            mount_ns: String::new(),
            kubelet: None,
            containerd: None,
            api_relay: None,
            cleaned: false,
        };
        // From here on, Drop cleans up whatever was made.
        node.make_cgroups()?;
        node.start_containerd()?;
        build_burner(&node.burner)?;
        node.import(PAUSE_IMAGE, &["/tide-burner", "pause"])?;
        node.import(BURNER_IMAGE, &["/tide-burner"])?;
        node.api_relay = Some(node.relay_api(cp)?);
        node.start_kubelet(cp, opts)?;
        Ok(node)
    }

    fn make_cgroups(&mut self) -> Result<(), String> {
        for mount in self.hierarchies.values() {
            let d = mount.join(&self.cgroup_root);
            mkdirs(&d)?;
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(mount.join(f)) {
                    write(&d.join(f), v.trim())?;
                }
            }
        }
        let pids = self.hierarchy("pids")?;
        mkdirs(&pids.join(&self.cgroup_root).join("runtime"))
    }

    /// The mount point of the hierarchy holding `controller`.
    pub fn hierarchy(&self, controller: &str) -> Result<PathBuf, String> {
        self.hierarchies
            .iter()
            .find(|(name, _)| name.split(',').any(|c| c == controller))
            .map(|(_, p)| p.clone())
            .ok_or_else(|| format!("cgroup v1 controller {controller} is not mounted"))
    }

    /// `<mount of controller>/<cgroup root>/<rel>`.
    pub fn cgroup_path(&self, controller: &str, rel: &str) -> Result<PathBuf, String> {
        let base = self.hierarchy(controller)?.join(&self.cgroup_root);
        Ok(if rel.is_empty() { base } else { base.join(rel) })
    }

    fn start_containerd(&mut self) -> Result<(), String> {
        let d = &self.dir;
        for sub in [
            "run",
            "var-lib",
            "var-log/pods",
            "var-log/containers",
            "cni/net.d",
            "cni/ipam",
            "sysctl",
            "images",
        ] {
            mkdirs(&d.join(sub))?;
        }
        let mut binds = String::new();
        for s in KUBELET_SYSCTLS {
            let host = format!("/proc/sys/{s}");
            let value = std::fs::read_to_string(&host)
                .map_err(|e| format!("reading {host}: {e}"))?
                .trim()
                .to_owned();
            let copy = d.join("sysctl").join(s.replace('/', "."));
            write(&copy, &format!("{value}\n"))?;
            self.host_sysctls.push((s.to_owned(), value));
            binds.push_str(&format!("mount --bind {} {host}\n", copy.display()));
        }
        write(
            &d.join("cni/net.d/10-tide.conflist"),
            &serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "tide-test",
                "plugins": [{
                    "type": "bridge",
                    "bridge": "tide0",
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.88.0.0/24"}]],
                        // A default route through the bridge: pods reach addresses of the
                        // node's namespace beyond the bridge (the `kubernetes` Service's,
                        // RealNode::serve_api_to_pods).
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": d.join("cni/ipam"),
                    },
                }],
            })
            .to_string(),
        )?;
        let config = format!(
            r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#,
            d = d.display()
        );
        write(&d.join("containerd.toml"), &config)?;
        let runtime_procs = self.cgroup_path("pids", "runtime/cgroup.procs")?;
        let script = format!(
            "set -e\necho $$ > {procs}\nmount --bind {d}/run /run\nmount --make-rshared /run\nmount --bind {d}/var-lib /var/lib\nmount --bind {d}/var-log /var/log\n{binds}ip link set lo up\nexec containerd --config {d}/containerd.toml\n",
            procs = runtime_procs.display(),
            d = d.display(),
        );
        let log = d.join("containerd.log");
        let mut p = Proc::start(
            "containerd",
            Path::new("unshare"),
            &[
                "--mount".into(),
                "--net".into(),
                "--propagation".into(),
                "private".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                script,
            ],
            &log,
        )?;
        let sock = self.socket.display().to_string();
        let r = wait_until("containerd", START_TIMEOUT, Some(&mut p), &log, || {
            sh("ctr", &["-a", &sock, "version"]).is_ok()
        });
        let pid = p.pid();
        self.containerd = Some(p);
        r?;
        self.mount_ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .map_err(|e| format!("containerd's mount namespace: {e}"))?
            .display()
            .to_string();
        Ok(())
    }

    /// `ctr -n k8s.io ARGS` against this node's containerd, run in the node's mount
    /// namespace (where containerd's FIFOs are): its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let pid = self
            .containerd
            .as_ref()
            .map(Proc::pid)
            .ok_or("containerd is not running")?;
        let ns = format!("--mount=/proc/{pid}/ns/mnt");
        let sock = self.socket.display().to_string();
        let mut all = vec![
            ns.as_str(),
            "--",
            "ctr",
            "-a",
            sock.as_str(),
            "-n",
            "k8s.io",
        ];
        all.extend_from_slice(args);
        sh("nsenter", &all)
    }

    /// The node's network namespace (containerd's, where the CNI bridge and the
    /// `hostNetwork` pods are): `/proc/<containerd's pid>/ns/net`.
    pub fn netns(&self) -> Result<PathBuf, String> {
        let pid = self
            .containerd
            .as_ref()
            .map(Proc::pid)
            .ok_or("containerd is not running")?;
        Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// Imports an image archive (OCI or docker-archive, e.g. `scripts/build-images.sh`'s) into
    /// the node's containerd, under the name the archive carries.
    pub fn import_archive(&self, archive: &Path) -> Result<(), String> {
        self.ctr(&["images", "import", &archive.display().to_string()])
            .map(|_| ())
    }

    /// Gives the node (its kubelet and pods) the API server at the `kubernetes` Service's
    /// address, the part of kube-proxy in-cluster clients need: [`crate::k8s::KUBERNETES_SERVICE_IP`]
    /// and [`NODE_IP`] go on the loopback of the node's namespace, where a relay on port 443
    /// forwards to the API server on the host's 127.0.0.1 ([`crate::netns::Forward`]; the
    /// host's network is untouched). The kubelet and `hostNetwork` pods reach it directly, the
    /// other pods through the bridge, their default gateway.
    fn relay_api(&self, cp: &ControlPlane) -> Result<crate::netns::Forward, String> {
        let ns = self.netns()?;
        let ip = crate::k8s::KUBERNETES_SERVICE_IP;
        for a in [ip, NODE_IP] {
            sh(
                "nsenter",
                &[
                    &format!("--net={}", ns.display()),
                    "--",
                    "ip",
                    "addr",
                    "add",
                    &format!("{a}/32"),
                    "dev",
                    "lo",
                ],
            )?;
        }
        let api: std::net::SocketAddr = cp
            .server
            .trim_start_matches("https://")
            .parse()
            .map_err(|e| format!("API server address {}: {e}", cp.server))?;
        let listen: std::net::SocketAddr = format!("{ip}:443")
            .parse()
            .map_err(|e| format!("{ip}:443: {e}"))?;
        let listener = crate::netns::in_netns(&ns, || std::net::TcpListener::bind(listen))
            .map_err(|e| format!("listening on {listen} in the node's namespace: {e}"))?;
        crate::netns::Forward::start(listener, crate::netns::Target::Host(api))
            .map_err(|e| format!("relay to the API server: {e}"))
    }

    fn import(&self, tag: &str, entrypoint: &[&str]) -> Result<(), String> {
        let work = self.dir.join("images").join(tag.replace([':', '/'], "_"));
        let tar = work.with_extension("tar");
        write_image(&work, &self.burner, tag, entrypoint, &tar)?;
        self.ctr(&["images", "import", &tar.display().to_string()])
            .map(|_| ())
    }

    fn start_kubelet(&mut self, cp: &ControlPlane, opts: &NodeOptions) -> Result<(), String> {
        let d = self.dir.clone();
        let (crt, key) = cp.pki.client(
            &format!("kubelet-{}", self.name),
            &format!("system:node:{}", self.name),
            &["system:nodes"],
        )?;
        let kubeconfig = d.join("kubelet.kubeconfig");
        // The kubelet lives in the node's network namespace: the API server is the
        // `kubernetes` Service's address there (RealNode::relay_api).
        crate::k8s::write_kubeconfig(
            &kubeconfig,
            &format!("https://{}:443", crate::k8s::KUBERNETES_SERVICE_IP),
            &cp.pki.ca(),
            &Credentials::Cert(crt, key),
        )?;
        let (port, healthz) = (free_port(), free_port());
        let reserved = opts
            .system_reserved_memory
            .map(|m| format!("systemReserved:\n  memory: \"{m}\"\n"))
            .unwrap_or_default();
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /{root}
enforceNodeAllocatable: [pods]
failSwapOn: false
makeIPTablesUtilChains: false
resolvConf: \"\"
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
{reserved}",
            ca = cp.pki.ca().display(),
            root = self.cgroup_root,
        );
        write(&d.join("kubelet.yaml"), &config)?;
        let containerd_pid = self
            .containerd
            .as_ref()
            .map(Proc::pid)
            .ok_or("containerd is not running")?;
        let log = d.join("kubelet.log");
        let mut args = vec![
            format!("--mount=/proc/{containerd_pid}/ns/mnt"),
            format!("--net=/proc/{containerd_pid}/ns/net"),
            "--".into(),
            cp.bins.component("kubelet").display().to_string(),
        ];
        args.extend([
            format!("--config={}", d.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--container-runtime=remote".into(),
            format!(
                "--container-runtime-endpoint=unix://{}",
                self.socket.display()
            ),
            format!("--root-dir={}", d.join("kubelet").display()),
            format!("--cert-dir={}", d.join("kubelet-pki").display()),
            format!("--volume-plugin-dir={}", d.join("volume-plugins").display()),
            format!("--hostname-override={}", self.name),
            format!("--node-ip={NODE_IP}"),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--v=2".into(),
        ]);
        let mut p = Proc::start("kubelet", Path::new("nsenter"), &args, &log)?;
        let path = format!("/api/v1/nodes/{}", self.name);
        let r = wait_until(
            "kubelet (Node Ready)",
            START_TIMEOUT,
            Some(&mut p),
            &log,
            || {
                api(cp, "GET", &path, None)
                    .ok()
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                    .is_some_and(|n| {
                        n["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                    })
            },
        );
        self.kubelet = Some(p);
        r?;
        api(cp, "PATCH", &path, Some(r#"{"spec":{"taints":null}}"#)).map(|_| ())
    }

    /// The kubelet's log so far.
    pub fn kubelet_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kubelet.log")).unwrap_or_default()
    }

    /// What the kubelet wrote into the private copies of [`KUBELET_SYSCTLS`]: (setting,
    /// host value at start, value in the node's namespace now).
    pub fn private_sysctls(&self) -> Vec<(String, String, String)> {
        self.host_sysctls
            .iter()
            .map(|(s, host)| {
                let copy = self.dir.join("sysctl").join(s.replace('/', "."));
                let now = std::fs::read_to_string(copy).unwrap_or_default();
                (s.clone(), host.clone(), now.trim().to_owned())
            })
            .collect()
    }

    /// The host's settings of [`KUBELET_SYSCTLS`] that differ from their values at start:
    /// (setting, before, now).
    pub fn changed_host_sysctls(&self) -> Vec<(String, String, String)> {
        self.host_sysctls
            .iter()
            .filter_map(|(s, before)| {
                let now = std::fs::read_to_string(format!("/proc/sys/{s}"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                (&now != before).then(|| (s.clone(), before.clone(), now))
            })
            .collect()
    }

    /// Every cgroup directory below the root in `hierarchy`'s tree, deepest first.
    fn subtree(base: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![base.to_path_buf()];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            out.push(d);
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        out
    }

    /// PIDs in the node's subtree of the `pids` hierarchy (`under`: relative directory, `""`
    /// for all of it).
    pub fn pids_under(&self, under: &str) -> Vec<u32> {
        let Ok(base) = self.cgroup_path("pids", under) else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for d in Self::subtree(&base) {
            if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids
    }

    fn kill_all_under(&self, under: &str, timeout: Duration) -> bool {
        let left = kill_until_gone(|| self.pids_under(under), timeout);
        if !left.is_empty() {
            eprintln!(
                "{}: processes left in {under:?}: {left:?}",
                self.cgroup_root
            );
        }
        left.is_empty()
    }

    /// PIDs still in the node's mount namespace.
    fn ns_pids(&self) -> Vec<u32> {
        if self.mount_ns.is_empty() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|l| l.display().to_string() == self.mount_ns)
            })
            .collect()
    }

    /// Stops everything and removes what the node made; returns what could not be removed.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        if let Some(mut k) = self.kubelet.take() {
            k.stop();
        }
        if !self.kill_all_under("kubepods", Duration::from_secs(20)) {
            problems.push("container processes survived SIGKILL".into());
        }
        if let Some(mut c) = self.containerd.take() {
            c.stop();
        }
        if !self.kill_all_under("", Duration::from_secs(20)) {
            problems.push("runtime processes survived SIGKILL".into());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ns_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = self.ns_pids();
        if !left.is_empty() {
            problems.push(format!(
                "processes left in the node's mount namespace: {left:?}"
            ));
        }
        let mut bases: Vec<PathBuf> = self
            .hierarchies
            .values()
            .map(|m| m.join(&self.cgroup_root))
            .collect();
        if let Some(u) = unified_mount() {
            bases.push(u.join(&self.cgroup_root));
        }
        for base in bases {
            if !remove_cgroup_tree(&base, Duration::from_secs(10)) {
                problems.push(format!("cgroup {} could not be removed", base.display()));
            }
        }
        problems
    }

    /// Stops the node and removes everything it made, then checks that nothing is left: no
    /// process in its mount namespace or cgroups, no cgroup directory, and the host's
    /// [`KUBELET_SYSCTLS`] as they were. The directory is removed when all is well.
    pub fn shutdown(mut self) -> Result<(), String> {
        let mut problems = self.cleanup();
        for (s, before, now) in self.changed_host_sysctls() {
            problems.push(format!("host /proc/sys/{s} changed: {before} -> {now}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} (logs in {})",
                problems.join("; "),
                self.dir.display()
            ))
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let problems = self.cleanup();
        let keep = std::thread::panicking()
            || std::env::var_os("TIDE_KEEP_LOGS").is_some()
            || !problems.is_empty()
            || !self.changed_host_sysctls().is_empty();
        if keep {
            eprintln!("node {} logs kept in {}", self.name, self.dir.display());
            if !problems.is_empty() {
                eprintln!("node cleanup problems: {problems:?}");
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_gone_reads_the_pid_in_a_run_name() {
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let me = std::process::id();
        assert!(crate::k8s::owner_gone(
            &format!("tide-node-{}-3", gone.id()),
            "tide-node-"
        ));
        assert!(!crate::k8s::owner_gone(
            &format!("tide-node-{me}-3"),
            "tide-node-"
        ));
        assert!(!crate::k8s::owner_gone(
            &format!("tide-k8s-{}-0", gone.id()),
            "tide-node-"
        ));
        assert!(!crate::k8s::owner_gone("tide-node-4242", "tide-node-"));
        assert!(!crate::k8s::owner_gone("tide-node-x-0", "tide-node-"));
        assert!(!crate::k8s::owner_gone("kubepods", "tide-node-"));
    }

    /// A process in a cgroup `name` made in the `pids` and `memory` hierarchies, with the
    /// harness's directory for it, as a node leaves them when its test process is killed.
    fn leftover(name: &str) -> (std::process::Child, Vec<PathBuf>) {
        let h = v1_hierarchies().unwrap();
        let bases: Vec<PathBuf> = ["pids", "memory"]
            .iter()
            .map(|c| h[*c].join(name).join("kubepods/pod1"))
            .collect();
        let child = Command::new("sleep").arg("120").spawn().unwrap();
        for b in &bases {
            std::fs::create_dir_all(b).unwrap();
            std::fs::write(b.join("cgroup.procs"), child.id().to_string()).unwrap();
        }
        std::fs::create_dir_all(std::env::temp_dir().join(name).join("state")).unwrap();
        (child, bases)
    }

    /// Root and cgroup v1 with `pids` and `memory`, as CI has; otherwise the test says why and
    /// returns.
    fn can_make_cgroups() -> bool {
        let root = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
        let h = v1_hierarchies().unwrap_or_default();
        let ok = root && h.contains_key("pids") && h.contains_key("memory");
        if !ok {
            eprintln!("skipped: needs root and cgroup v1 (pids, memory)");
        }
        ok
    }

    #[test]
    fn sweep_removes_what_a_killed_test_left_and_spares_live_owners() {
        if !can_make_cgroups() {
            return;
        }
        // An owner that is gone: a process that has exited.
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let orphan = format!("tide-node-{}-0", gone.id());
        let live = format!("tide-node-{}-9999", std::process::id());
        let (mut orphan_proc, orphan_cgroups) = leftover(&orphan);
        let (mut live_proc, live_cgroups) = leftover(&live);

        let swept = sweep_orphans();
        let line = swept.iter().find(|l| l.contains(&orphan));
        // The orphan's process is killed and reaped here (it is this test's child).
        let status = orphan_proc.wait().unwrap();
        let live_alive = live_proc.try_wait().unwrap().is_none();
        // The node's root in each hierarchy (`<mount>/<name>`), not only the leaf.
        let orphan_left: Vec<_> = orphan_cgroups
            .iter()
            .filter_map(|b| b.parent()?.parent())
            .filter(|root| root.exists())
            .collect();
        let live_kept = live_cgroups.iter().all(|b| b.exists());
        // Clean up the live owner's tree whatever the outcome.
        let _ = live_proc.kill();
        let _ = live_proc.wait();
        for b in &live_cgroups {
            let _ = std::fs::remove_dir(b);
            let _ = std::fs::remove_dir(b.parent().unwrap());
            let _ = std::fs::remove_dir(b.parent().unwrap().parent().unwrap());
        }
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&live));

        let line = line.unwrap_or_else(|| panic!("{orphan} not swept: {swept:?}"));
        assert!(line.contains("1 processes killed"), "{line}");
        assert!(!status.success(), "the orphan's process was killed");
        assert!(orphan_left.is_empty(), "left: {orphan_left:?}");
        assert!(!std::env::temp_dir().join(&orphan).exists());
        assert!(live_alive, "a live owner's process was killed");
        assert!(live_kept, "a live owner's cgroups were removed");
        assert!(swept.iter().all(|l| !l.contains(&live)), "{swept:?}");
    }
}
