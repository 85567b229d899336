//! A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler, started on loopback from real binaries.
//!
//! - **Binaries**: `TIDE_K8S_BIN` (a directory holding `kube-apiserver`,
//!   `kube-controller-manager`, `kube-scheduler`) when set, else the v1.20.2 build that
//!   `scripts/build-k8s.sh` caches outside the clone (the script is asked for the directory,
//!   so the cache key lives in one place). etcd is `TIDE_ETCD` or `etcd` on `PATH`.
//! - **Security as in a real cluster**: a CA, a serving certificate for `127.0.0.1`, client
//!   certificates per component (`system:kube-scheduler`, `system:kube-controller-manager`,
//!   an admin in `system:masters`), RBAC authorization and service-account signing keys, all
//!   made with the `openssl` command in the control plane's own directory.
//! - **Bounded and owned**: every port is chosen free on 127.0.0.1, so control planes run
//!   side by side; every start waits at most [`START_TIMEOUT`]; every process is started by
//!   one long-lived spawner thread with `setpriv --pdeathsig KILL`, so it dies with the test
//!   process even when nothing runs `Drop`, and is ended by its PID (SIGTERM, then SIGKILL)
//!   on drop. Logs are kept when the test panics (the directory is printed) or when
//!   `TIDE_KEEP_LOGS` is set.
//!
//! The fake API server in this crate's root stays for what a real server cannot produce on
//! demand: exact wire shapes in unit tests, injected 503s and timeouts, and requests recorded
//! for assertions. Everything an operator would run goes through this control plane.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any component may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a component may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Kubernetes server binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// Directory with kube-apiserver, kube-controller-manager, kube-scheduler (and kubelet).
    pub dir: PathBuf,
    /// The etcd binary.
    pub etcd: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl Binaries {
    /// `TIDE_K8S_BIN`, else the cached build of `scripts/build-k8s.sh`; an error says how to
    /// get the binaries.
    pub fn locate() -> Result<Self, String> {
        let dir = match std::env::var_os("TIDE_K8S_BIN") {
            Some(d) => PathBuf::from(d),
            None => {
                let script = workspace_root().join("scripts/build-k8s.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .arg("--print-dir")
                    .output()
                    .map_err(|e| format!("running {}: {e}", script.display()))?;
                if !out.status.success() {
                    return Err(format!(
                        "no Kubernetes binaries: run `bash scripts/build-k8s.sh` (or `make deps`), \
                         or point TIDE_K8S_BIN at a directory holding kube-apiserver, \
                         kube-controller-manager and kube-scheduler ({})",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
        };
        for c in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            if !dir.join(c).is_file() {
                return Err(format!("{} has no {c}", dir.display()));
            }
        }
        let etcd =
            std::env::var_os("TIDE_ETCD").map_or_else(|| PathBuf::from("etcd"), PathBuf::from);
        Ok(Self { dir, etcd })
    }

    /// The path of one component.
    pub fn component(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What `kube-apiserver --version` prints (`Kubernetes v1.20.2`).
    pub fn version(&self) -> Result<String, String> {
        let out = Command::new(self.component("kube-apiserver"))
            .arg("--version")
            .output()
            .map_err(|e| format!("kube-apiserver --version: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The server's minor version (20 for v1.20.2).
    pub fn minor_version(&self) -> Result<u32, String> {
        let v = self.version()?;
        v.split_whitespace()
            .last()
            .and_then(|s| s.trim_start_matches('v').split('.').nth(1))
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("cannot read a version from {v:?}"))
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from one long-lived thread. `setpriv --pdeathsig` ties a child to the thread
/// that forked it, so that thread must outlive every test.
fn spawn_owned(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("tide-k8s-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok();
        std::sync::Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// A process this harness started, ended by its PID on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `program args` under `setpriv --pdeathsig KILL`, stdout and stderr appended to
    /// `log`.
    pub fn start(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self, String> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| format!("opening {}: {e}", log.display()))
        };
        let mut cmd = Command::new("setpriv");
        cmd.arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?);
        let child = spawn_owned(cmd).map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; waits for the exit.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Certificates and keys made with `openssl` in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory.
    pub dir: PathBuf,
}

impl Pki {
    /// A new CA (P-256, ten years) and service-account key pair in `dir`.
    pub fn new(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=tide-test-ca",
        ]);
        run("openssl", &args, dir)?;
        run(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "sa.key",
            ],
            dir,
        )?;
        run(
            "openssl",
            &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
            dir,
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `<name>.crt`/`<name>.key` for `subject` (`/CN=…/O=…`) with the given extensions
    /// (`extendedKeyUsage=…`, `subjectAltName=…`), signed by the CA.
    pub fn issue(
        &self,
        name: &str,
        subject: &str,
        extensions: &str,
    ) -> Result<(PathBuf, PathBuf), String> {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.join(&ext), extensions).map_err(|e| format!("{ext}: {e}"))?;
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
            &self.dir,
        )?;
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "3650",
                "-extfile",
                &ext,
            ],
            &self.dir,
        )?;
        Ok((self.dir.join(crt), self.dir.join(key)))
    }

    /// A client certificate for `user` in `groups`.
    pub fn client(
        &self,
        name: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<(PathBuf, PathBuf), String> {
        let mut subject = format!("/CN={user}");
        for g in groups {
            let _ = write!(subject, "/O={g}");
        }
        self.issue(name, &subject, "extendedKeyUsage=clientAuth\n")
    }

    /// A serving certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> Result<(PathBuf, PathBuf), String> {
        self.server_for(name, &["IP:127.0.0.1", "DNS:localhost"])
    }

    /// A serving certificate for these subject alternative names (`IP:…`, `DNS:…`).
    pub fn server_for(&self, name: &str, sans: &[&str]) -> Result<(PathBuf, PathBuf), String> {
        self.issue(
            name,
            &format!("/CN={name}"),
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
    }
}

/// The `kubernetes` Service's cluster IP: the first address of `--service-cluster-ip-range`.
pub const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";

/// How a kubeconfig authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A client certificate and key.
    Cert(PathBuf, PathBuf),
    /// A bearer token.
    Token(String),
}

/// Writes a kubeconfig for `server` trusting `ca` with these credentials.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    creds: &Credentials,
) -> Result<(), String> {
    let user = match creds {
        Credentials::Cert(crt, key) => format!(
            "    client-certificate: {}\n    client-key: {}\n",
            crt.display(),
            key.display()
        ),
        Credentials::Token(t) => format!("    token: {t}\n"),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tide-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: tide-test\n    user: u\ncurrent-context: c\n",
        ca = ca.display()
    );
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `target` (absolute) as a path relative to the directory `from` (absolute): kustomize
/// refuses absolute paths in `resources` and `components`.
pub fn relative_path(from: &Path, target: &Path) -> String {
    let up = "../".repeat(from.components().count().saturating_sub(1));
    format!(
        "{up}{}",
        target.strip_prefix("/").unwrap_or(target).display()
    )
}

/// Polls `ready` every 200 ms until it is true; panics naming `what` once `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Blocking `GET http://addr/path` with a short timeout: the status code, if any answer.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Blocking `GET http://addr/path`: the body of a 200 answer.
pub fn http_get_body(addr: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "{addr}{path}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_owned())
}

/// Polls `ready` every 100 ms until it is true or `timeout` passes; fails early when `proc`
/// exits, pointing at its log.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut proc: Option<&mut Proc>,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(p) = proc.as_deref_mut()
            && let Some(status) = p.exited()
        {
            return Err(format!("{what} exited ({status}); log: {}", log.display()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} not ready within {timeout:?}; log: {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the scheduler configuration needs from the control plane.
#[derive(Debug, Clone)]
pub struct SchedulerSlots {
    /// The kube-scheduler's kubeconfig (client certificate `system:kube-scheduler`).
    pub kubeconfig: PathBuf,
    /// Plain-HTTP healthz address to configure (`healthzBindAddress`).
    pub healthz: SocketAddr,
    /// Plain-HTTP metrics address to configure (`metricsBindAddress`).
    pub metrics: SocketAddr,
    /// The server's minor version (20 for v1.20.2): which configuration API to write.
    pub minor: u32,
}

/// Options of a control plane.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra kube-apiserver flags (e.g. `--max-requests-inflight=2`).
    pub apiserver_args: Vec<String>,
}

/// A running control plane. Dropping it stops every process and removes its directory
/// (kept, with the logs, when the test is panicking or `TIDE_KEEP_LOGS` is set).
pub struct ControlPlane {
    /// Where certificates, kubeconfigs, etcd data and logs live.
    pub dir: PathBuf,
    /// The binaries in use.
    pub bins: Binaries,
    /// The PKI.
    pub pki: Pki,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Admin kubeconfig (`system:masters`).
    pub admin_kubeconfig: PathBuf,
    /// The server's minor version.
    pub minor: u32,
    apiserver_args: Vec<String>,
    etcd: Option<Proc>,
    apiserver: Option<Proc>,
    controller_manager: Option<Proc>,
    scheduler: Option<Proc>,
    scheduler_slots: Option<SchedulerSlots>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// How long the directory of a run whose process is gone is kept for its logs.
pub const KEEP_LOGS_OF_DEAD_RUNS: Duration = Duration::from_secs(86_400);

/// Whether `name` is `<prefix><pid>-<n>` for a `pid` with no process: a run of this harness
/// that ended without cleaning up (killed, or kept for its logs after a failure).
pub fn owner_gone(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split_once('-'))
        .filter(|(_, n)| n.parse::<u32>().is_ok())
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Directories of control planes whose test process is gone: their etcd data (tens of MB of
/// tmpfs, i.e. memory) is removed at once, the logs are kept for
/// [`KEEP_LOGS_OF_DEAD_RUNS`] and then removed too. The processes themselves died with the
/// test (`setpriv --pdeathsig`). Returns what was removed, a line each.
pub fn sweep_dead_runs(base: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !owner_gone(&name, "tide-k8s-") {
            continue;
        }
        let dir = e.path();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > KEEP_LOGS_OF_DEAD_RUNS);
        if old {
            if std::fs::remove_dir_all(&dir).is_ok() {
                out.push(format!(
                    "removed {} (owner gone, older than a day)",
                    dir.display()
                ));
            }
        } else if dir.join("etcd").is_dir() && std::fs::remove_dir_all(dir.join("etcd")).is_ok() {
            out.push(format!(
                "removed {}/etcd (owner gone; logs kept for a day)",
                dir.display()
            ));
        }
    }
    out
}

fn runs_base() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

fn fresh_dir() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    // etcd fsyncs every write: tmpfs keeps that off the disk.
    let base = runs_base();
    for line in sweep_dead_runs(&base) {
        eprintln!("control plane: {line}");
    }
    let dir = base.join(format!(
        "tide-k8s-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API server
    /// is ready and the `default` ServiceAccount exists. The scheduler starts separately
    /// ([`ControlPlane::start_scheduler`]) because its configuration names the extender.
    pub fn start(opts: Options) -> Result<Self, String> {
        let bins = Binaries::locate()?;
        let minor = bins.minor_version()?;
        let dir = fresh_dir()?;
        let pki = Pki::new(&dir.join("pki"))?;
        // Also the `kubernetes` Service's names and address, which pods of the real-node
        // harness reach it by (kubelet::RealNode::serve_api_to_pods).
        let (api_crt, api_key) = pki.server_for(
            "apiserver",
            &[
                "IP:127.0.0.1",
                "DNS:localhost",
                &format!("IP:{KUBERNETES_SERVICE_IP}"),
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
            ],
        )?;
        let (admin_crt, admin_key) = pki.client("admin", "admin", &["system:masters"])?;
        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &server,
            &pki.ca(),
            &Credentials::Cert(admin_crt, admin_key),
        )?;

        let mut cp = Self {
            dir: dir.clone(),
            bins,
            pki: pki.clone(),
            server,
            admin_kubeconfig,
            minor,
            apiserver_args: Vec::new(),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            scheduler: None,
            scheduler_slots: None,
        };

        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.join("etcd.log");
        let mut etcd = Proc::start(
            "etcd",
            &cp.bins.etcd,
            &[
                "--name=tide".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=tide={peer}"),
                "--listen-metrics-urls=".into(),
            ],
            &log,
        )?;
        let etcd_addr: SocketAddr = ([127, 0, 0, 1], client_port).into();
        wait_until("etcd", START_TIMEOUT, Some(&mut etcd), &log, || {
            http_get_status(etcd_addr, "/health") == Some(200)
        })?;
        cp.etcd = Some(etcd);

        let p = |f: &str| pki.dir.join(f).display().to_string();
        let mut args = vec![
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--insecure-port=0".into(),
            format!("--etcd-servers={etcd_url}"),
            "--endpoint-reconciler-type=none".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--tls-cert-file={}", api_crt.display()),
            format!("--tls-private-key-file={}", api_key.display()),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--allow-privileged=true".into(),
        ];
        if minor > 23 {
            // Flags removed after v1.20/1.23.
            args.retain(|a| !a.starts_with("--insecure-port"));
        }
        args.extend(opts.apiserver_args);
        cp.apiserver_args = args;
        cp.start_apiserver()?;

        let (kcm_crt, kcm_key) =
            pki.client("controller-manager", "system:kube-controller-manager", &[])?;
        let kcm_kubeconfig = dir.join("controller-manager.kubeconfig");
        write_kubeconfig(
            &kcm_kubeconfig,
            &cp.server,
            &pki.ca(),
            &Credentials::Cert(kcm_crt, kcm_key),
        )?;
        let log = dir.join("kube-controller-manager.log");
        let mut kcm_args = vec![
            format!("--kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=true".into(),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--controllers=*,-nodeipam,-nodelifecycle,-service,-route,-cloud-node-lifecycle".into(),
        ];
        if minor <= 23 {
            kcm_args.push("--port=0".into());
        }
        let kcm = Proc::start(
            "kube-controller-manager",
            &cp.bins.component("kube-controller-manager"),
            &kcm_args,
            &log,
        )?;
        cp.controller_manager = Some(kcm);
        // Pods cannot be created before the namespace's default ServiceAccount exists.
        let admin = cp.admin_kubeconfig.clone();
        let server = cp.server.clone();
        let ca = pki.ca();
        let mut kcm = cp.controller_manager.take();
        let r = wait_until(
            "kube-controller-manager (default ServiceAccount)",
            START_TIMEOUT,
            kcm.as_mut(),
            &log,
            || {
                curl_status(
                    &server,
                    &ca,
                    &admin,
                    "/api/v1/namespaces/default/serviceaccounts/default",
                ) == Some(200)
            },
        );
        cp.controller_manager = kcm;
        r?;
        Ok(cp)
    }

    /// Starts the API server (again) on its port and etcd; returns once it is ready.
    pub fn start_apiserver(&mut self) -> Result<(), String> {
        let log = self.dir.join("kube-apiserver.log");
        let mut api = Proc::start(
            "kube-apiserver",
            &self.bins.component("kube-apiserver"),
            &self.apiserver_args,
            &log,
        )?;
        let (server, ca, admin) = (
            self.server.clone(),
            self.pki.ca(),
            self.admin_kubeconfig.clone(),
        );
        wait_until(
            "kube-apiserver",
            START_TIMEOUT,
            Some(&mut api),
            &log,
            || curl_status(&server, &ca, &admin, "/readyz") == Some(200),
        )?;
        self.apiserver = Some(api);
        Ok(())
    }

    /// Stops the API server (SIGTERM, as a rolling restart does) and starts it again on the
    /// same port and etcd; returns once it is ready.
    pub fn restart_apiserver(&mut self) -> Result<(), String> {
        self.stop_apiserver();
        self.start_apiserver()
    }

    /// Stops the API server (SIGTERM): every client sees it unreachable until
    /// [`ControlPlane::start_apiserver`].
    pub fn stop_apiserver(&mut self) {
        if let Some(mut p) = self.apiserver.take() {
            p.stop();
        }
    }

    /// The shipped install package for this server's version: `deploy/overlays/kube-1.20` up
    /// to 1.20 (policy/v1beta1), `deploy/base` from 1.21 on.
    pub fn package_dir(&self) -> PathBuf {
        let deploy = workspace_root().join("deploy");
        if self.minor <= 20 {
            deploy.join("overlays/kube-1.20")
        } else {
            deploy.join("base")
        }
    }

    /// The objects of the package for this server ([`ControlPlane::package_dir`], rendered by
    /// kustomize) whose kind is one of `kinds`, in kustomize's order (namespaces and CRDs
    /// first). Tests apply the parts they run for real (RBAC, say) from here, so they test
    /// what an operator installs.
    pub fn package_objects(&self, kinds: &[&str]) -> Result<Vec<serde_json::Value>, String> {
        let objects = kustomize_build(&self.package_dir())?;
        let picked: Vec<_> = objects
            .into_iter()
            .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or_default()))
            .collect();
        for k in kinds {
            if !picked.iter().any(|o| o["kind"] == *k) {
                return Err(format!("{} renders no {k}", self.package_dir().display()));
            }
        }
        Ok(picked)
    }

    /// Addresses and credentials to put in a kube-scheduler configuration (made once).
    pub fn scheduler_slots(&mut self) -> Result<SchedulerSlots, String> {
        if let Some(s) = &self.scheduler_slots {
            return Ok(s.clone());
        }
        let (crt, key) = self.pki.client("scheduler", "system:kube-scheduler", &[])?;
        let kubeconfig = self.dir.join("scheduler.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &self.server,
            &self.pki.ca(),
            &Credentials::Cert(crt, key),
        )?;
        let s = SchedulerSlots {
            kubeconfig,
            healthz: ([127, 0, 0, 1], free_port()).into(),
            metrics: ([127, 0, 0, 1], free_port()).into(),
            minor: self.minor,
        };
        self.scheduler_slots = Some(s.clone());
        Ok(s)
    }

    /// Starts kube-scheduler with this configuration (made from [`ControlPlane::scheduler_slots`])
    /// and waits for its healthz. A running scheduler is stopped first.
    pub fn start_scheduler(&mut self, config_yaml: &str) -> Result<(), String> {
        self.stop_scheduler();
        let slots = self.scheduler_slots()?;
        let config = self.dir.join("kube-scheduler-config.yaml");
        std::fs::write(&config, config_yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = self.dir.join("kube-scheduler.log");
        let mut args = vec![
            format!("--config={}", config.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            format!("--authentication-kubeconfig={}", slots.kubeconfig.display()),
            format!("--authorization-kubeconfig={}", slots.kubeconfig.display()),
        ];
        if self.minor <= 22 {
            args.push("--port=0".into());
        }
        let mut p = Proc::start(
            "kube-scheduler",
            &self.bins.component("kube-scheduler"),
            &args,
            &log,
        )?;
        wait_until("kube-scheduler", START_TIMEOUT, Some(&mut p), &log, || {
            http_get_status(slots.healthz, "/healthz") == Some(200)
        })?;
        self.scheduler = Some(p);
        Ok(())
    }

    /// Stops kube-scheduler if it runs.
    pub fn stop_scheduler(&mut self) {
        if let Some(mut p) = self.scheduler.take() {
            p.stop();
        }
    }

    /// kube-scheduler's Prometheus metrics (plain HTTP on its metrics address).
    pub fn scheduler_metrics(&self) -> Result<String, String> {
        let slots = self
            .scheduler_slots
            .as_ref()
            .ok_or("no scheduler configured")?;
        http_get_body(slots.metrics, "/metrics")
    }

    /// A kubeconfig file authenticating with `token` (e.g. a ServiceAccount's).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write_kubeconfig(
            &path,
            &self.server,
            &self.pki.ca(),
            &Credentials::Token(token.to_owned()),
        )?;
        Ok(path)
    }

    /// A file in the control plane's directory (for test-owned logs and configs).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The tail of every component log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            let _ = writeln!(out, "--- {} (last {lines} lines)", log.display());
            for l in tail.iter().rev() {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }
}

/// `GET path` on the API server with the admin credentials, by `curl`: the HTTP status.
/// Blocking and independent of any async runtime, for readiness polls.
fn curl_status(server: &str, ca: &Path, kubeconfig: &Path, path: &str) -> Option<u16> {
    let dir = kubeconfig.parent()?;
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            "--cacert",
        ])
        .arg(ca)
        .arg("--cert")
        .arg(dir.join("pki/admin.crt"))
        .arg("--key")
        .arg(dir.join("pki/admin.key"))
        .arg(format!("{server}{path}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Clients first, the store last.
        self.stop_scheduler();
        for p in [
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .into_iter()
        .flatten()
        {
            drop(p);
        }
        if std::thread::panicking() || std::env::var_os("TIDE_KEEP_LOGS").is_some() {
            eprintln!("control plane logs kept in {}", self.dir.display());
            if std::thread::panicking() {
                eprintln!("{}", self.log_tails(30));
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The REST resource of a manifest's kind: (plural, namespaced).
fn resource_of(kind: &str) -> Option<(&'static str, bool)> {
    Some(match kind {
        "Namespace" => ("namespaces", false),
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "PriorityClass" => ("priorityclasses", false),
        "MutatingWebhookConfiguration" => ("mutatingwebhookconfigurations", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "ConfigMap" => ("configmaps", true),
        "Secret" => ("secrets", true),
        "Service" => ("services", true),
        "Deployment" => ("deployments", true),
        "DaemonSet" => ("daemonsets", true),
        "PodDisruptionBudget" => ("poddisruptionbudgets", true),
        "NetworkPolicy" => ("networkpolicies", true),
        _ => return None,
    })
}

/// The documents of a multi-document YAML text, as JSON values (empty documents skipped).
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut flush = |cur: &mut String| -> Result<(), String> {
        if cur
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            let v: serde_json::Value = serde_saphyr::from_str(cur).map_err(|e| e.to_string())?;
            if !v.is_null() {
                docs.push(v);
            }
        }
        cur.clear();
        Ok(())
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut cur)?;
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    flush(&mut cur)?;
    Ok(docs)
}

/// The objects `kustomize build` renders from the kustomization in `dir` (`deploy/base`, an
/// overlay, or a test's own kustomization naming them), through `scripts/kustomize.sh`: the
/// kustomize `make test` installs (Debian trixie's, cached outside the clone), else one on the
/// machine. An error carries kustomize's message, or says how to get kustomize.
pub fn kustomize_build(dir: &Path) -> Result<Vec<serde_json::Value>, String> {
    let script = workspace_root().join("scripts/kustomize.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "kustomize build {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    yaml_documents(&String::from_utf8_lossy(&out.stdout))
}

/// The API access of one object: its dynamic `Api` and `kind/name` (`kind/namespace/name` when
/// namespaced).
fn object_api(
    client: &kube::Client,
    doc: &serde_json::Value,
) -> Result<(kube::Api<kube::api::DynamicObject>, String, String), String> {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (plural, namespaced) = resource_of(kind)
        .ok_or_else(|| format!("{kind}/{name}: kind not known to the test harness"))?;
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Ok(if namespaced {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        (api, format!("{kind}/{ns}/{name}"), name)
    } else {
        (
            Api::all_with(client.clone(), &ar),
            format!("{kind}/{name}"),
            name,
        )
    })
}

/// Server-side applies every object of `yaml` (field manager `tide-e2e`, forced) and returns
/// `kind/name` (`kind/namespace/name` when namespaced) of each. An object the API server
/// rejects is an error naming it.
pub async fn apply_manifests(client: &kube::Client, yaml: &str) -> Result<Vec<String>, String> {
    apply_objects(client, &yaml_documents(yaml)?).await
}

/// Server-side applies `objects` in order (field manager `tide-e2e`, forced) and returns
/// `kind/name` (`kind/namespace/name` when namespaced) of each. An object the API server
/// rejects is an error naming it.
pub async fn apply_objects(
    client: &kube::Client,
    objects: &[serde_json::Value],
) -> Result<Vec<String>, String> {
    use kube::api::{Patch, PatchParams};
    let mut applied = Vec::new();
    for doc in objects {
        let (api, id, name) = object_api(client, doc)?;
        api.patch(
            &name,
            &PatchParams::apply("tide-e2e").force(),
            &Patch::Apply(doc),
        )
        .await
        .map_err(|e| format!("applying {id}: {e}"))?;
        applied.push(id);
    }
    Ok(applied)
}

/// Reads `object` back from the API server (GET by its API version, kind, namespace and
/// name), as the server serves it.
pub async fn get_object(
    client: &kube::Client,
    object: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let (api, id, name) = object_api(client, object)?;
    let got = api
        .get(&name)
        .await
        .map_err(|e| format!("reading {id} back: {e}"))?;
    serde_json::to_value(got).map_err(|e| format!("{id}: {e}"))
}

/// Deletes `object` (background propagation, as `kubectl delete` does); an object already
/// gone is no error.
pub async fn delete_object(
    client: &kube::Client,
    object: &serde_json::Value,
) -> Result<(), String> {
    let (api, id, name) = object_api(client, object)?;
    match api
        .delete(&name, &kube::api::DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(format!("deleting {id}: {e}")),
    }
}

/// Whether the API server still serves `object` (`false` once a GET answers 404).
pub async fn object_exists(
    client: &kube::Client,
    object: &serde_json::Value,
) -> Result<bool, String> {
    let (api, id, name) = object_api(client, object)?;
    match api.get(&name).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(format!("reading {id}: {e}")),
    }
}

/// A token of ServiceAccount `namespace/name` from the TokenRequest API, valid for an hour.
pub async fn service_account_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let out: TokenRequest = api
        .create_subresource("token", name, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("TokenRequest for {namespace}/{name}: {e}"))?;
    out.status
        .map(|s| s.token)
        .ok_or_else(|| format!("TokenRequest for {namespace}/{name}: no token in the answer"))
}

/// Creates a Node object as a kubelet would leave it: status with capacity and allocatable
/// (`resources`, e.g. `{"cpu": "32", "memory": "128Gi", "pods": "110"}`), a Ready condition,
/// and without the `not-ready` taint a new Node gets (no node lifecycle controller runs here).
pub async fn create_ready_node(
    client: &kube::Client,
    name: &str,
    resources: &serde_json::Value,
) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .map_err(|e| e.to_string())?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .map_err(|e| format!("creating node {name}: {e}"))?;
    let now = jiff::Timestamp::now().to_string();
    let status = serde_json::json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "node created by the test", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| format!("setting node {name} status: {e}"))?;
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"taints": null}})),
        )
        .await
        .map_err(|e| format!("removing node {name} taints: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_runs_lose_their_etcd_at_once_and_their_logs_after_a_day() {
        let base = std::env::temp_dir().join(format!("tide-sweep-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead = base.join(format!("tide-k8s-{}-0", gone.id()));
        let dead_old = base.join(format!("tide-k8s-{}-1", gone.id()));
        let live = base.join(format!("tide-k8s-{}-0", std::process::id()));
        for d in [&dead, &dead_old, &live] {
            std::fs::create_dir_all(d.join("etcd/member")).unwrap();
            std::fs::write(d.join("etcd.log"), "log").unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
        std::fs::File::open(&dead_old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();

        let swept = sweep_dead_runs(&base);
        let state = (
            dead.join("etcd").exists(),
            dead.join("etcd.log").exists(),
            dead_old.exists(),
            live.join("etcd").exists(),
        );
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(state, (false, true, false, true), "{swept:?}");
        assert_eq!(swept.len(), 2, "{swept:?}");
    }
}
