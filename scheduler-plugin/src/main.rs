//! `tide-scheduler`: the kube-scheduler extender process. Watches Nodes, Pods and
//! NodeEstimates, serves `filter`, `prioritize` and `bind` over HTTP(S), and stops gracefully
//! on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tide_api::TideConfig;
use tide_api::exit::Failure;
use tide_scheduler::cluster::{self, KubeApi};
use tide_scheduler::server::{DEFAULT_BODY_LIMIT, ExtenderState, public_router, router};
use tide_scheduler::{live, serve};

/// The Tide kube-scheduler extender.
#[derive(Debug, Parser)]
#[command(name = "tide-scheduler", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Address to listen on. Loopback by default; in a pod use `0.0.0.0:8888`.
    #[arg(long, default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    /// Path part of the scheduler's `urlPrefix` (e.g. `/extender`); empty for none.
    #[arg(long, default_value = "", value_parser = tide_scheduler::server::parse_path_prefix)]
    path_prefix: String,
    /// Tide configuration file (YAML, the shared `TideConfig`); built-in defaults without it.
    /// Repeatable: each later file overrides the earlier ones field by field.
    #[arg(long)]
    config: Vec<PathBuf>,
    /// Largest request body accepted, in bytes (a full NodeList of 5,000 nodes is ~50 MB).
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT, value_parser = body_limit)]
    body_limit: usize,
    /// Kubeconfig file. Without it: `KUBECONFIG`, `~/.kube/config`, then in-cluster config.
    #[arg(long, conflicts_with = "api_server")]
    kubeconfig: Option<PathBuf>,
    /// Plain-HTTP API server URL without credentials (for tests and local proxies such as
    /// `kubectl proxy`).
    #[arg(long)]
    api_server: Option<String>,
    /// TLS certificate chain (PEM). Serving is plain HTTP without it. Re-read when it changes.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM). Re-read when it changes.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to: mutual TLS, so only
    /// kube-scheduler (its extender `tlsConfig.certFile`) may call filter, prioritize and bind.
    /// Re-read when it changes.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Also serve the mutating admission webhook (`POST /mutate-pods`, AdmissionReview v1)
    /// on this address, over TLS with `--webhook-tls-cert`/`--webhook-tls-key`. A listener of
    /// its own: the API server calls webhooks over TLS without a client certificate, which the
    /// extender's port (plain HTTP behind a NetworkPolicy, or mutual TLS) would not admit.
    #[arg(long, requires_all = ["webhook_tls_cert", "webhook_tls_key"])]
    webhook_listen: Option<SocketAddr>,
    /// The webhook's serving certificate chain (PEM), for the name in the
    /// MutatingWebhookConfiguration's clientConfig. Re-read when it changes.
    #[arg(long, requires = "webhook_listen")]
    webhook_tls_cert: Option<PathBuf>,
    /// The webhook's private key (PEM). Re-read when it changes.
    #[arg(long, requires = "webhook_listen")]
    webhook_tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address. Without TLS, anyone who reaches the port
    /// can make tide-scheduler evict and bind with its ServiceAccount: only behind a
    /// NetworkPolicy that admits kube-scheduler alone (deploy/base/scheduler/networkpolicy.yaml).
    #[arg(long, conflicts_with = "tls_cert")]
    plain_http: bool,
    /// Timeout of each API call the binder makes (eviction, binding), in milliseconds.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    api_timeout_ms: u64,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`, `off`); `RUST_LOG` overrides it
    /// with per-module directives.
    #[arg(long, default_value = "info", value_parser = tide_kube::logging::parse_level)]
    log_level: String,
    /// Log format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, default_value = "text", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<tide_kube::logging::LogFormat>()))]
    log_format: tide_kube::logging::LogFormat,
    /// Shortest interval between two published cluster snapshots, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    publish_interval_ms: u64,
}

/// `--body-limit`: at least 4 KiB (an extender request with one node), at most 1 GiB.
fn body_limit(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if (4 << 10..=1 << 30).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} bytes: must be between 4096 (4 KiB) and 1073741824 (1 GiB)"
        ))
    }
}

/// Other things the binary does besides serving.
#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Print the kube-scheduler configuration that wires Tide in, for kube-scheduler 1.N
    /// (the shipped deploy/base/scheduler/kube-scheduler-config.yaml, adapted for older versions).
    RenderSchedulerConfig {
        /// The cluster's Kubernetes minor version (30 for v1.30.x).
        #[arg(long, value_parser = clap::value_parser!(u32).range(19..))]
        kube_minor: u32,
        /// Every extender's urlPrefix (default: the shipped in-cluster Service address).
        #[arg(long)]
        extender_url: Option<String>,
        /// kube-scheduler's kubeconfig (default: the kubeadm path).
        #[arg(long)]
        scheduler_kubeconfig: Option<String>,
        /// For Tide's own kube-scheduler next to the extender (the second-scheduler profile,
        /// deploy/components/second-scheduler): profile `tide-scheduler`, in-cluster
        /// connection, leader election on the Lease tide-system/tide-kube-scheduler, extenders
        /// on http://127.0.0.1:8888/extender.
        #[arg(long, conflicts_with = "scheduler_kubeconfig")]
        second_scheduler: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Cmd::RenderSchedulerConfig {
        kube_minor,
        extender_url,
        scheduler_kubeconfig,
        second_scheduler,
    }) = &args.command
    {
        let r = tide_scheduler::wiring::Render {
            minor: *kube_minor,
            extender_url: extender_url.clone(),
            kubeconfig: scheduler_kubeconfig.clone(),
            second: second_scheduler.then(tide_scheduler::wiring::SecondScheduler::default),
            ..Default::default()
        };
        return match tide_scheduler::wiring::render(tide_scheduler::wiring::SHIPPED, &r) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tide-scheduler: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = tide_kube::logging::init(&args.log_level, args.log_format) {
        eprintln!("tide-scheduler: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(status = e.code(), "{e}");
            ExitCode::from(e.code())
        }
    }
}

/// Exit statuses: `tide_api::exit` (1 runtime, 2 usage, 3 configuration).
async fn run(args: Args) -> Result<(), Failure> {
    let config = TideConfig::load(&args.config).map_err(Failure::Config)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            serve::ReloadingTls::new(serve::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
            })
            .map_err(Failure::Config)?,
        ),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.plain_http {
        return Err(Failure::Usage(format!(
            "--listen {}: plain HTTP on a non-loopback address lets anyone who reaches it \
             evict and bind; give --tls-cert/--tls-key (and --tls-client-ca for mutual TLS), \
             or --plain-http behind a NetworkPolicy",
            args.listen
        )));
    }
    if let Some(t) = &tls {
        tokio::spawn(t.clone().watch(Duration::from_secs(10)));
    }
    let webhook_tls = match (&args.webhook_tls_cert, &args.webhook_tls_key) {
        (Some(cert), Some(key)) => {
            let t = serve::ReloadingTls::new(serve::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            })
            .map_err(|e| Failure::Config(format!("webhook: {e}")))?;
            tokio::spawn(t.clone().watch(Duration::from_secs(10)));
            Some(t)
        }
        _ => None,
    };
    let client = match &args.api_server {
        Some(url) => cluster::connect_url(url).map_err(Failure::Usage)?,
        None => cluster::connect(args.kubeconfig.as_deref())
            .await
            .map_err(Failure::Config)?,
    };
    let api = KubeApi::new(client.clone(), Duration::from_millis(args.api_timeout_ms));
    let state = Arc::new(
        ExtenderState::new(config)
            .map_err(|e| Failure::Runtime(format!("registering metrics: {e}")))?
            .with_api(Arc::new(api)),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::Runtime(format!("listening on {}: {e}", args.listen)))?;
    tracing::info!(
        listen = %args.listen,
        path_prefix = %args.path_prefix,
        transport = match (&tls, &args.tls_client_ca) {
            (None, _) => "HTTP",
            (Some(_), None) => "HTTPS",
            (Some(_), Some(_)) => "HTTPS (mutual TLS)",
        },
        "serving"
    );
    let webhook_listener = match args.webhook_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Failure::Runtime(format!("webhook: listening on {addr}: {e}")))?,
        ),
        None => None,
    };
    let watchers = tokio::spawn(live::run(
        client,
        Arc::clone(&state),
        Duration::from_millis(args.publish_interval_ms.max(1)),
    ));
    let app = router(Arc::clone(&state), &args.path_prefix, args.body_limit);
    let public = public_router(Arc::clone(&state));
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let webhook = match (webhook_listener, webhook_tls, args.webhook_listen) {
        (Some(l), Some(t), Some(addr)) => {
            tracing::info!(
                listen = %addr,
                path = tide_scheduler::webhook::PATH,
                "serving the admission webhook (HTTPS)"
            );
            Some(tokio::spawn(serve::serve(
                l,
                tide_scheduler::webhook::router(Arc::clone(&state)),
                Some(t),
                stopped(stop_rx.clone()),
            )))
        }
        _ => None,
    };
    serve::serve_with_public(listener, app, public, tls, stopped(stop_rx)).await;
    if let Some(w) = webhook {
        let _ = w.await;
    }
    watchers.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
