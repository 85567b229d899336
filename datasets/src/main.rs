//! `tide-replay`: replays cluster traces through Tide's policies, and evaluates its estimator.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tide_api::{Bytes, MilliCores, Quantity, ResourceAmounts, TideConfig};
use tide_datasets::synthetic::{be_jobs_for, idle_cpu_milli};
use tide_datasets::{
    Policy, PredictOptions, ReplayInput, SyntheticSpec, TraceSpec, evaluate, generate, pack_nodes,
    run_replay,
};

#[derive(Parser, Debug)]
#[command(
    name = "tide-replay",
    version,
    about = "Replay cluster traces through Tide's estimator and policies",
    long_about = "Replays a cluster through Tide and the baselines side by side and reports what overcommit gains and costs.\n\
                  With no arguments it replays the built-in synthetic cluster (seeded, deterministic).",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    replay: ReplayArgs,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// Real HP trace as KIND:PATH (bitbrains, alibaba2018, google); default: the synthetic cluster.
    #[arg(long)]
    trace: Option<TraceSpec>,
    /// Seed of the synthetic cluster, BE jobs and packing.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Simulated time (synthetic cluster), or a cut of the trace.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Nodes of the synthetic cluster.
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Node allocatable CPU (Kubernetes quantity).
    #[arg(long, default_value = "32")]
    node_cpu: Quantity,
    /// Node allocatable memory (Kubernetes quantity).
    #[arg(long, default_value = "128Gi")]
    node_memory: Quantity,
    /// BE job stream from a real batch trace, as KIND:PATH (alibaba2017: a batch_task.csv);
    /// default: the synthetic job mix.
    #[arg(long)]
    be_trace: Option<String>,
    /// Offered BE CPU as a share of the idle HP CPU.
    #[arg(long, default_value_t = 1.2)]
    be_load: f64,
    /// Policies to compare (comma-separated): no-overcommit, static-ratio, koordinator, tide.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "no-overcommit,static-ratio,koordinator,tide"
    )]
    policy: Vec<String>,
    /// Allocatable multiplier of the static-ratio policy.
    #[arg(long, default_value_t = 1.5)]
    static_ratio: f64,
    /// Shared configuration file; defaults when absent.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Where to write the HTML report with plots.
    #[arg(long, default_value = "out/tide-replay.html")]
    report: std::path::PathBuf,
    /// Stop at the first malformed trace row.
    #[arg(long)]
    strict: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score every estimator predictor and baseline on a real trace.
    Predict {
        /// Trace as KIND:PATH (bitbrains, alibaba2018, google).
        #[arg(long)]
        trace: TraceSpec,
        /// Prediction horizon (e.g. 1h, 30m).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        horizon: Duration,
        /// Target violation rate.
        #[arg(long, default_value_t = 0.01)]
        target: f64,
        /// Node CPU used to pack workloads (Kubernetes quantity).
        #[arg(long, default_value = "64")]
        node_cpu: Quantity,
        /// Node memory used to pack workloads (Kubernetes quantity).
        #[arg(long, default_value = "256Gi")]
        node_memory: Quantity,
        /// Packing seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// History-only period at the start, not scored.
        #[arg(long, default_value = "1d", value_parser = parse_duration)]
        warmup: Duration,
        /// Shared configuration file (estimator settings); defaults when absent.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Stop at the first malformed row instead of counting and skipping.
        #[arg(long)]
        strict: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tide_api::duration_text::parse(s)
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<TideConfig> {
    match path {
        None => Ok(TideConfig::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            TideConfig::from_yaml(&text).with_context(|| format!("loading {}", p.display()))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => replay(cli.replay),
        Some(Command::Predict {
            trace,
            horizon,
            target,
            node_cpu,
            node_memory,
            seed,
            warmup,
            config,
            strict,
            format,
        }) => {
            let mut cfg = load_config(config.as_deref())?;
            cfg.estimator.horizon = horizon;
            cfg.estimator.target_violation_rate = target;
            cfg.validate().context("flags")?;
            let node_capacity = ResourceAmounts {
                cpu: MilliCores::from_quantity(&node_cpu).context("--node-cpu")?,
                memory: Bytes::from_quantity(&node_memory).context("--node-memory")?,
            };
            let t = trace.load(strict).context("loading the trace")?;
            if !t.bad_rows.is_clean() {
                eprintln!("warning: {}", t.bad_rows.summary());
            }
            let report = evaluate(
                &t,
                &PredictOptions {
                    settings: cfg.estimator,
                    node_capacity,
                    seed,
                    warmup_secs: warmup.as_secs(),
                },
            );
            match format {
                Format::Table => print!("{}", report.table()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
    }
}

fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let cfg = load_config(a.config.as_deref())?;
    let capacity = ResourceAmounts {
        cpu: MilliCores::from_quantity(&a.node_cpu).context("--node-cpu")?,
        memory: Bytes::from_quantity(&a.node_memory).context("--node-memory")?,
    };
    if capacity.cpu.0 == 0 || capacity.memory.0 == 0 {
        anyhow::bail!("--node-cpu and --node-memory must be above zero");
    }
    if !(a.be_load.is_finite() && a.be_load >= 0.0) {
        anyhow::bail!("--be-load must be a number >= 0");
    }
    if !(a.static_ratio.is_finite() && a.static_ratio >= 1.0) {
        anyhow::bail!("--static-ratio must be a number >= 1");
    }
    let policies = a
        .policy
        .iter()
        .map(|p| {
            Policy::parse(p).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown policy {p:?}: no-overcommit, static-ratio, koordinator, tide"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = std::time::Instant::now();
    let (source, trace, nodes, jobs) = match &a.trace {
        None => {
            let mut spec = SyntheticSpec {
                nodes: a.nodes,
                seed: a.seed,
                node_capacity: capacity,
                be_load: a.be_load,
                ..SyntheticSpec::default()
            };
            if let Some(d) = a.duration {
                spec.duration_secs = d.as_secs();
            }
            if spec.nodes == 0 || spec.duration_secs < spec.step_secs {
                anyhow::bail!("--nodes must be above zero and --duration at least one step");
            }
            let c = generate(&spec);
            (c.trace.name.clone(), c.trace, c.nodes, c.be_jobs)
        }
        Some(spec) => {
            let t = spec.load(a.strict).context("loading the trace")?;
            if !t.bad_rows.is_clean() {
                eprintln!("warning: {}", t.bad_rows.summary());
            }
            let nodes = pack_nodes(&t, capacity, a.seed);
            let jobs = be_jobs_for(&t, &nodes, capacity, a.be_load, a.seed);
            (format!("{} ({} rows)", t.name, t.rows_read), t, nodes, jobs)
        }
    };
    let (jobs, source) = match &a.be_trace {
        None => (jobs, source),
        Some(spec) => {
            let path = spec
                .strip_prefix("alibaba2017:")
                .ok_or_else(|| anyhow::anyhow!("--be-trace {spec:?}: expected alibaba2017:PATH"))?;
            let mut bad = tide_datasets::BadRows::new(a.strict);
            let offered = a.be_load * idle_cpu_milli(&trace, &nodes, capacity);
            let duration = trace.steps() as u64 * trace.step_secs;
            let jobs = tide_datasets::bejobs::alibaba2017(
                std::path::Path::new(path),
                offered,
                duration,
                a.seed,
                &mut bad,
            )
            .context("loading the BE trace")?;
            if !bad.is_clean() {
                eprintln!("warning: {}", bad.summary());
            }
            (
                jobs,
                format!("{source}, BE jobs from alibaba-2017 batch tasks"),
            )
        }
    };
    let steps = a
        .duration
        .map(|d| usize::try_from(d.as_secs() / trace.step_secs.max(1)).unwrap_or(usize::MAX));
    let report = run_replay(&ReplayInput {
        source,
        trace: &trace,
        nodes: &nodes,
        node_capacity: capacity,
        be_jobs: &jobs,
        config: cfg,
        policies,
        static_ratio: a.static_ratio,
        steps,
        load_secs: started.elapsed().as_secs_f64(),
        progress: true,
    });
    if let Some(dir) = a.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.report, report.html())
        .with_context(|| format!("writing {}", a.report.display()))?;
    match a.format {
        Format::Table => {
            print!("{}", report.table());
            println!("report with plots: {}", a.report.display());
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tide-replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
