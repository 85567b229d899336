//! `tide-agent`: the node QoS agent (DaemonSet). Watches this node's pods, samples cgroups and
//! procfs every `intervals.sample`, estimates, suppresses and evicts BE work, pins cores, sets
//! `oom_score_adj`, publishes the NodeEstimate and the batch resources, and serves `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tide_agent::agent::{Agent, NodeSetup, Suppression};
use tide_agent::cgroup::{Driver, Hierarchy, Layout, v1_mounts, v2_mount};
use tide_agent::runtime::{Runtime, RuntimeOptions, router, run};
use tide_agent::sandbox::{SandboxOptions, Sandboxes};
use tide_agent::topology::Topology;
use tide_api::exit::Failure;
use tide_api::{ResourceAmounts, TideConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CgroupVersion {
    /// Detect from /proc/self/mountinfo (v2 when cgroup2 is mounted at the cgroup root).
    Auto,
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CpuSuppression {
    Cpuset,
    CfsQuota,
}

/// The Tide node QoS agent.
#[derive(Debug, Parser)]
#[command(name = "tide-agent", version, about)]
struct Args {
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Tide configuration file (YAML, the shared `TideConfig`); built-in defaults without it.
    /// Repeatable: each later file overrides the earlier ones field by field.
    #[arg(long)]
    config: Vec<PathBuf>,
    /// The kubelet's cgroupRoot.
    #[arg(long, default_value = "/")]
    cgroup_root: String,
    /// The kubelet's cgroupDriver.
    #[arg(long, value_enum, default_value = "systemd")]
    cgroup_driver: CgroupDriver,
    /// cgroup version.
    #[arg(long, value_enum, default_value = "auto")]
    cgroup_version: CgroupVersion,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`, `off`); `RUST_LOG` overrides it
    /// with per-module directives.
    #[arg(long, default_value = "info", value_parser = tide_kube::logging::parse_level)]
    log_level: String,
    /// Log format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, default_value = "text", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<tide_kube::logging::LogFormat>()))]
    log_format: tide_kube::logging::LogFormat,
    /// Where /proc is (the host's, mounted into the pod).
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
    /// Where the CPU topology is.
    #[arg(long, default_value = "/sys/devices/system/cpu")]
    sysfs_cpu: PathBuf,
    /// Logical CPUs kept for the system (never pinned, never BE).
    #[arg(long, default_value_t = 1)]
    system_cpus: usize,
    /// How BE CPU is suppressed.
    #[arg(long, value_enum, default_value = "cpuset")]
    cpu_suppression: CpuSuppression,
    /// Estimator checkpoint file (on a hostPath, so a restart keeps history).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// `/metrics` and `/healthz` address.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Kubeconfig (else KUBECONFIG or in-cluster).
    #[arg(long, conflicts_with = "api_server")]
    kubeconfig: Option<PathBuf>,
    /// Plain-HTTP API server URL without credentials (tests, `kubectl proxy`).
    #[arg(long)]
    api_server: Option<String>,
    /// Timeout of each API call, ms.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    api_timeout_ms: u64,
    /// A sandbox VM's cold-memory daemon (`vsock://CID:PORT`, `hvsock://PATH:PORT`,
    /// `unix://PATH`); repeatable. Its cold memory is credited as reclaimable.
    #[arg(long = "sandbox")]
    sandboxes: Vec<tide_coldmem::channel::Endpoint>,
    /// Find sandboxes by their hybrid-vsock sockets, e.g. `/run/kata/*/root/kata.hvsock`
    /// (`*` within one path component), looked at again every tick.
    #[arg(long)]
    sandbox_hvsock: Option<String>,
    /// The daemon's vsock port inside each discovered sandbox.
    #[arg(long, default_value_t = 2048)]
    sandbox_port: u32,
    /// Sandbox reports older than this are not credited, s.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    sandbox_stale_s: u64,
    /// The age threshold sandbox daemons are held to, ms.
    #[arg(long, default_value_t = 30_000)]
    sandbox_min_age_ms: u64,
    /// The most bytes per period sandbox daemons may reclaim.
    #[arg(long, default_value_t = 1 << 30)]
    sandbox_max_bytes: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = tide_kube::logging::init(&args.log_level, args.log_format) {
        eprintln!("tide-agent: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(status = e.code(), "{e}");
            ExitCode::from(e.code())
        }
    }
}

fn layout(args: &Args) -> Result<Layout, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let v1 = v1_mounts(&mountinfo);
    let v2 = v2_mount(&mountinfo);
    let hierarchy = match args.cgroup_version {
        CgroupVersion::V1 => Hierarchy::V1(v1),
        CgroupVersion::V2 => Hierarchy::V2(v2.ok_or("no cgroup2 mount found")?),
        CgroupVersion::Auto if v1.contains_key("memory") => Hierarchy::V1(v1),
        CgroupVersion::Auto => {
            Hierarchy::V2(v2.ok_or("neither cgroup v1 controllers nor cgroup2 are mounted")?)
        }
    };
    Ok(Layout {
        hierarchy,
        driver: match args.cgroup_driver {
            CgroupDriver::Cgroupfs => Driver::Cgroupfs,
            CgroupDriver::Systemd => Driver::Systemd,
        },
        root: args.cgroup_root.trim_matches('/').to_owned(),
    })
}

/// Exit statuses: `tide_api::exit` (1 runtime, 2 usage, 3 configuration or environment).
async fn start(args: Args) -> Result<(), Failure> {
    let config = TideConfig::load(&args.config).map_err(Failure::Config)?;
    let topology = Topology::read(&args.sysfs_cpu).map_err(Failure::config)?;
    let totals = tide_agent::procfs::read_totals(&args.proc_root).map_err(Failure::Config)?;
    let machine_memory = std::fs::read_to_string(args.proc_root.join("meminfo"))
        .ok()
        .and_then(|m| tide_agent::procfs::meminfo_bytes(&m, "MemTotal"))
        .unwrap_or(totals.memory_used);
    let cpus = u64::try_from(topology.all_cpus().len()).unwrap_or(0);
    let layout = layout(&args).map_err(Failure::Config)?;
    // A root that is not there would leave the node unprotected while looking healthy.
    layout
        .pods_dir()
        .map_err(|e| Failure::Config(format!("--cgroup-root {:?}: {e}", args.cgroup_root)))?;
    let setup = NodeSetup {
        node_name: args.node_name.clone(),
        layout,
        proc_root: args.proc_root.clone(),
        topology,
        system_cpus: args.system_cpus,
        suppression: match args.cpu_suppression {
            CpuSuppression::Cpuset => Suppression::Cpuset,
            CpuSuppression::CfsQuota => Suppression::CfsQuota,
        },
        // The machine's size until the Node object tells allocatable.
        allocatable: ResourceAmounts::new(cpus * 1000, machine_memory),
    };
    let interval = config.intervals.sample;
    let mut agent = Agent::new(setup, config);
    if let Some(cp) = &args.checkpoint {
        match agent.restore(cp) {
            Ok(true) => tracing::info!(
                checkpoint = %cp.display(),
                "restored estimator history"
            ),
            Ok(false) => tracing::info!(
                checkpoint = %cp.display(),
                "no checkpoint, starting fresh"
            ),
            // A bad checkpoint must not keep the node unprotected: start fresh, say why.
            Err(e) => tracing::warn!(error = %e, "checkpoint not used; starting fresh"),
        }
    }
    let client = match &args.api_server {
        Some(url) => tide_kube::connect_url(url).map_err(Failure::Usage)?,
        None => tide_kube::connect(args.kubeconfig.as_deref())
            .await
            .map_err(Failure::Config)?,
    };
    let opts = RuntimeOptions {
        api_timeout: Duration::from_millis(args.api_timeout_ms),
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: 60,
    };
    let sandboxes = Sandboxes::new(SandboxOptions {
        endpoints: args.sandboxes.clone(),
        discover: args
            .sandbox_hvsock
            .clone()
            .map(|pattern| (pattern, args.sandbox_port)),
        stale_after: Duration::from_secs(args.sandbox_stale_s),
        target: tide_coldmem::proto::Target {
            max_bytes_per_period: args.sandbox_max_bytes,
            min_age_ms: args.sandbox_min_age_ms,
            reclaim_bytes: 0,
        },
    });
    let rt = Arc::new(
        Runtime::new(agent, client, opts)
            .map_err(|e| Failure::Runtime(format!("metrics: {e}")))?
            .with_sandboxes(sandboxes),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::Runtime(format!("listening on {}: {e}", args.listen)))?;
    let watch = tokio::spawn(Arc::clone(&rt).watch_pods());
    let app = router(Arc::clone(&rt));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    tracing::info!(
        node = %args.node_name,
        interval = ?interval,
        metrics = %args.listen,
        "running"
    );
    run(Arc::clone(&rt), interval, shutdown()).await;
    let released = rt.release().await;
    for e in &released.errors {
        tracing::warn!("{e}");
    }
    tracing::info!(
        cgroup_writes = released.writes,
        batch_resources = if released.published {
            "withdrawn"
        } else {
            "NOT withdrawn"
        },
        "released the node"
    );
    if let Some(cp) = &args.checkpoint
        && let Err(e) = rt
            .agent
            .lock()
            .map_err(|_| "poisoned".to_owned())
            .and_then(|a| a.checkpoint(cp))
    {
        tracing::warn!(error = %e, "final checkpoint");
    }
    watch.abort();
    server.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
