//! `tide-replay`: replays cluster traces through Tide's policies, and evaluates its estimator.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tide_api::{Bytes, MilliCores, Quantity, ResourceAmounts, TideConfig};
use tide_datasets::synthetic::{be_jobs_for, idle_cpu_milli};
use tide_datasets::{
    Policy, PredictOptions, ReplayInput, SyntheticSpec, TraceSpec, evaluate, generate, pack_nodes,
    run_replay, sweep,
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
    /// Policies to compare (comma-separated): no-overcommit, static-ratio, koordinator,
    /// tide-request (Tide admitting BE by request), tide (by the real-time water level).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "no-overcommit,static-ratio,koordinator,tide-request,tide"
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
    /// Leave HP page cache and Tide's cold-memory credit and reclaim out of the replay.
    #[arg(long)]
    no_cold_memory: bool,
    /// Keep HP pods where the packing put them (no HP churn, no pre-eviction).
    #[arg(long)]
    no_churn: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run each policy family over its own knob (static ratio, Koordinator's reclaim
    /// threshold, Tide's schedule level and target violation rate) and report the frontier:
    /// reclaim against HP harm.
    Sweep(ReplayArgs),
    /// Measure what makes the HP trace risky to overcommit (peak-to-mean, burst length,
    /// autocorrelation, co-movement on a node, daily cycle) on the replay's packing: a
    /// Markdown table row, or JSON with --format json.
    Stats(ReplayArgs),
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
        /// Sweep: comma-separated targets (e.g. 0.001,0.005,0.01,0.02,0.05); overrides --target.
        #[arg(long, value_delimiter = ',')]
        targets: Vec<f64>,
        /// Sweep: comma-separated horizons (e.g. 5m,15m,1h); overrides --horizon.
        #[arg(long, value_delimiter = ',', value_parser = parse_duration)]
        horizons: Vec<Duration>,
        /// Sweep: where to write the HTML frontier report.
        #[arg(long, default_value = "out/tide-predict.html")]
        report: std::path::PathBuf,
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
        /// Run Tide on all nodes in lockstep, each node's record shrunk toward the fleet's
        /// pooled record (experimental: measured less good than per-node records, see
        /// docs/estimator.md).
        #[arg(long)]
        fleet: bool,
        /// Experiment: also run Tide's selector with these options (`+`-separated, e.g.
        /// `early+safest`, see `SelectOptions::with_spec`) and print its dominance table too.
        #[arg(long)]
        variant: Vec<String>,
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
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--config: reading {}", p.display()))?;
            TideConfig::from_yaml(&text)
                .with_context(|| format!("--config: loading {}", p.display()))
        }
    }
}

/// Nodes of the synthetic cluster, at most.
const MAX_NODES: usize = 100_000;
/// Service-steps of the synthetic cluster, at most (each a sample in memory): nodes × cores
/// per node (a service has at least one) × steps.
const MAX_SYNTHETIC_CELLS: u64 = 1 << 30;
/// Offered BE load, at most (a share of the idle HP CPU).
const MAX_BE_LOAD: f64 = 100.0;
/// Static-ratio multiplier, at most.
const MAX_STATIC_RATIO: f64 = 100.0;
/// Prediction horizon, at most: 30 days.
const MAX_HORIZON: Duration = Duration::from_secs(30 * 86_400);
/// Durations and warm-ups, at most: 10 years.
const MAX_SPAN: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Node capacity from `--node-cpu` and `--node-memory`, each above zero.
fn node_capacity(cpu: &Quantity, memory: &Quantity) -> anyhow::Result<ResourceAmounts> {
    let cpu = MilliCores::from_quantity(cpu).context("--node-cpu")?;
    let memory = Bytes::from_quantity(memory).context("--node-memory")?;
    if cpu.0 == 0 {
        anyhow::bail!("--node-cpu must be above zero");
    }
    if memory.0 == 0 {
        anyhow::bail!("--node-memory must be above zero");
    }
    Ok(ResourceAmounts { cpu, memory })
}

/// `--report`: a file path whose folder exists or can be made, checked before the run.
fn check_report(path: &std::path::Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("--report {}: is a folder, not a file", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--report {}: creating {}", path.display(), dir.display()))?;
    }
    Ok(())
}

/// `--be-trace`: `alibaba2017:PATH` with an existing file.
fn be_trace_path(spec: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = spec
        .strip_prefix("alibaba2017:")
        .ok_or_else(|| anyhow::anyhow!("--be-trace {spec:?}: expected alibaba2017:PATH"))?;
    let path = std::path::PathBuf::from(path);
    if !path.is_file() {
        anyhow::bail!("--be-trace {spec:?}: {} is not a file", path.display());
    }
    Ok(path)
}

/// A duration flag within `(0, max]`.
fn check_duration(flag: &str, d: Duration, max: Duration) -> anyhow::Result<()> {
    if d.is_zero() || d > max {
        anyhow::bail!(
            "{flag} must be above zero and at most {} days",
            max.as_secs() / 86_400
        );
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => replay(cli.replay, false),
        Some(Command::Sweep(args)) => replay(args, true),
        Some(Command::Stats(args)) => stats(args),
        Some(Command::Predict {
            trace,
            horizon,
            target,
            targets,
            horizons,
            report,
            node_cpu,
            node_memory,
            seed,
            warmup,
            config,
            fleet,
            variant,
            strict,
            format,
        }) => {
            let mut cfg = load_config(config.as_deref())?;
            if !(target > 0.0 && target < 1.0) {
                anyhow::bail!("--target must be a rate above 0 and below 1, not {target}");
            }
            check_duration("--horizon", horizon, MAX_HORIZON)?;
            if warmup > MAX_SPAN {
                anyhow::bail!(
                    "--warmup must be at most {} days",
                    MAX_SPAN.as_secs() / 86_400
                );
            }
            cfg.estimator.horizon = horizon;
            cfg.estimator.target_violation_rate = target;
            cfg.validate()
                .context("--horizon and --target with the configuration")?;
            let node_capacity = node_capacity(&node_cpu, &node_memory)?;
            let t = trace.load(strict).context("--trace: loading the trace")?;
            if !t.bad_rows.is_clean() {
                eprintln!("warning: {}", t.bad_rows.summary());
            }
            let span = t.steps() as u64 * t.step_secs;
            if warmup.as_secs() + horizon.as_secs() >= span {
                anyhow::bail!(
                    "--warmup ({} s) and --horizon ({} s) leave nothing to score in a trace of {span} s",
                    warmup.as_secs(),
                    horizon.as_secs()
                );
            }
            tide_datasets::predict::check_variants(&cfg.estimator, &variant)
                .map_err(anyhow::Error::msg)?;
            let opts = PredictOptions {
                settings: cfg.estimator,
                node_capacity,
                seed,
                warmup_secs: warmup.as_secs(),
                fleet,
                variants: variant.clone(),
            };
            if !targets.is_empty() || !horizons.is_empty() {
                let targets = if targets.is_empty() {
                    vec![target]
                } else {
                    targets
                };
                let horizons = if horizons.is_empty() {
                    vec![horizon]
                } else {
                    horizons
                };
                if let Some(bad) = targets.iter().find(|a| !(**a > 0.0 && **a < 1.0)) {
                    anyhow::bail!("--targets: {bad} is not a rate in (0, 1)");
                }
                let sw = sweep(&t, &opts, &targets, &horizons, |r| {
                    eprintln!(
                        "horizon {} s, target {}: done in {:.1} s",
                        r.horizon_secs, r.target_violation_rate, r.elapsed_secs
                    );
                });
                if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                std::fs::write(&report, sw.html())
                    .with_context(|| format!("writing {}", report.display()))?;
                match format {
                    Format::Table => {
                        for r in &sw.runs {
                            println!("{}", r.table());
                        }
                        print!("{}", sw.table());
                        for v in &variant {
                            print!("\n{}", sw.as_variant(v).table());
                        }
                        eprintln!("report: {}", report.display());
                    }
                    Format::Json => println!("{}", serde_json::to_string_pretty(&sw)?),
                }
                return Ok(());
            }
            let report = evaluate(&t, &opts);
            match format {
                Format::Table => print!("{}", report.table()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
    }
}

fn stats(a: ReplayArgs) -> anyhow::Result<()> {
    let capacity = node_capacity(&a.node_cpu, &a.node_memory)?;
    let (trace, nodes) = match &a.trace {
        None => {
            let mut spec = SyntheticSpec {
                nodes: a.nodes,
                seed: a.seed,
                node_capacity: capacity,
                ..SyntheticSpec::default()
            };
            if let Some(d) = a.duration {
                spec.duration_secs = d.as_secs();
            }
            let c = generate(&spec);
            (c.trace, c.nodes)
        }
        Some(spec) => {
            let t = spec.load(a.strict).context("--trace: loading the trace")?;
            if !t.bad_rows.is_clean() {
                eprintln!("warning: {}", t.bad_rows.summary());
            }
            let nodes = pack_nodes(&t, capacity, a.seed);
            (t, nodes)
        }
    };
    let s = tide_datasets::stats::trace_stats(&trace, &nodes);
    match a.format {
        Format::Table => print!("{}", tide_datasets::stats::markdown(&[s])),
        Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
    }
    Ok(())
}

fn replay(a: ReplayArgs, sweep: bool) -> anyhow::Result<()> {
    // Every flag is checked before anything is loaded or run.
    let cfg = load_config(a.config.as_deref())?;
    let capacity = node_capacity(&a.node_cpu, &a.node_memory)?;
    if !(a.be_load.is_finite() && (0.0..=MAX_BE_LOAD).contains(&a.be_load)) {
        anyhow::bail!("--be-load must be a number from 0 to {MAX_BE_LOAD}");
    }
    if !(a.static_ratio.is_finite() && (1.0..=MAX_STATIC_RATIO).contains(&a.static_ratio)) {
        anyhow::bail!("--static-ratio must be a number from 1 to {MAX_STATIC_RATIO}");
    }
    if let Some(d) = a.duration {
        check_duration("--duration", d, MAX_SPAN)?;
    }
    if a.trace.is_none() {
        if a.nodes == 0 || a.nodes > MAX_NODES {
            anyhow::bail!("--nodes must be from 1 to {MAX_NODES}");
        }
        let spec = SyntheticSpec::default();
        let secs = a.duration.map_or(spec.duration_secs, |d| d.as_secs());
        if secs < spec.step_secs {
            anyhow::bail!(
                "--duration must be at least one step ({} s)",
                spec.step_secs
            );
        }
        let cells = (a.nodes as u64)
            .saturating_mul(capacity.cpu.0.div_ceil(1000))
            .saturating_mul(secs / spec.step_secs);
        if cells > MAX_SYNTHETIC_CELLS {
            anyhow::bail!(
                "--nodes, --node-cpu and --duration ask for {cells} service-steps, more than \
                 {MAX_SYNTHETIC_CELLS}: ask for fewer or smaller nodes or a shorter duration"
            );
        }
    }
    if a.policy.is_empty() {
        anyhow::bail!("--policy: name at least one policy");
    }
    let policies = a
        .policy
        .iter()
        .map(|p| {
            Policy::parse(p).ok_or_else(|| {
                anyhow::anyhow!(
                    "--policy: unknown policy {p:?}: no-overcommit, static-ratio, koordinator, tide-request, tide"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let be_trace = a.be_trace.as_deref().map(be_trace_path).transpose()?;
    check_report(&a.report)?;
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
            let c = generate(&spec);
            (c.trace.name.clone(), c.trace, c.nodes, c.be_jobs)
        }
        Some(spec) => {
            let t = spec.load(a.strict).context("--trace: loading the trace")?;
            if !t.bad_rows.is_clean() {
                eprintln!("warning: {}", t.bad_rows.summary());
            }
            if let Some(d) = a.duration
                && d.as_secs() < t.step_secs
            {
                anyhow::bail!(
                    "--duration must be at least one step of the trace ({} s)",
                    t.step_secs
                );
            }
            let nodes = pack_nodes(&t, capacity, a.seed);
            let jobs = be_jobs_for(&t, &nodes, capacity, a.be_load, a.seed);
            (format!("{} ({} rows)", t.name, t.rows_read), t, nodes, jobs)
        }
    };
    let (jobs, source) = match &be_trace {
        None => (jobs, source),
        Some(path) => {
            let mut bad = tide_datasets::BadRows::new(a.strict);
            let offered = a.be_load * idle_cpu_milli(&trace, &nodes, capacity);
            let duration = trace.steps() as u64 * trace.step_secs;
            let jobs =
                tide_datasets::bejobs::alibaba2017(path, offered, duration, a.seed, &mut bad)
                    .context("--be-trace: loading the BE trace")?;
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
    let input = ReplayInput {
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
        page_cache: (!a.no_cold_memory).then(tide_datasets::pagecache::PageCacheModel::default),
        churn: (!a.no_churn).then(|| tide_datasets::churn::HpChurn {
            seed: a.seed,
            ..tide_datasets::churn::HpChurn::default()
        }),
    };
    let report = if sweep {
        tide_datasets::replay::sweep(&input)
    } else {
        run_replay(&input)
    };
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
