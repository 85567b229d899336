//! `tide-replay`: replays cluster traces through Tide's policies, and evaluates its estimator.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tide_api::{Bytes, MilliCores, Quantity, ResourceAmounts, TideConfig};
use tide_datasets::{PredictOptions, TraceSpec, evaluate};

#[derive(Parser, Debug)]
#[command(
    name = "tide-replay",
    version,
    about = "Replay cluster traces through Tide's estimator and policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
        None => anyhow::bail!(
            "the replay simulator is not built yet; use `tide-replay predict --trace KIND:PATH`"
        ),
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
            if t.bad_rows.count > 0 {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tide-replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
