//! Scheduling throughput of a real kube-scheduler with and without the Tide extender, in one
//! run, on the same Node objects (`make k8s-bench`).
//!
//! A real control plane (`tide_testkit::k8s`, v1.20.2 from Debian's source or `TIDE_K8S_BIN`)
//! gets `--nodes` Node objects, each with a fresh NodeEstimate and the batch amounts tide-agent
//! would advertise. Each arm creates the same `--pods` pods (HP and BE mixed) while
//! kube-scheduler is stopped, starts it, and times the bindings seen on a watch:
//! pods/s = (pods − 1) / (last binding − first binding). Latency percentiles come from
//! kube-scheduler's own `scheduler_scheduling_algorithm_duration_seconds` histogram. Both arms use
//! the same raised client QPS/burst (the defaults, 50/100, would dominate both).
//!
//! Where the extender's time goes: how much kube-scheduler's mean time per attempt grew with
//! the extender (its `scheduler_scheduling_algorithm_duration_seconds`, extender calls
//! included; v1.20 has no per-phase histogram that covers extenders), against tide-scheduler's
//! own server-side handling time of the filter and prioritize calls an attempt makes
//! (`tide_scheduler_request_duration_seconds`); the difference is the round trip —
//! kube-scheduler's extender client, HTTP and JSON on both sides. Binds run outside the
//! attempt (kube-scheduler binds asynchronously).
//!
//! `--rounds N` alternates the arms N times (without, with, without, with, …) so a machine
//! whose load drifts during the run biases neither; each round's ratio and the median are
//! printed.
//!
//! Usage: `k8s-throughput --nodes 1000 --pods 2000 [--be-share 0.5] [--qps 1000] [--rounds 1]`

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tide_api::{NodeEstimate, NodeEstimateStatus, TideConfig};
use tide_scheduler::wiring;
use tide_testkit::k8s::{self, ControlPlane, Proc};

struct Args {
    nodes: usize,
    pods: usize,
    be_share: f64,
    qps: u32,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 1_000,
        pods: 2_000,
        be_share: 0.5,
        qps: 1_000,
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--nodes" => {
                a.nodes = value("--nodes")?
                    .parse()
                    .map_err(|e| format!("--nodes: {e}"))?
            }
            "--pods" => {
                a.pods = value("--pods")?
                    .parse()
                    .map_err(|e| format!("--pods: {e}"))?
            }
            "--be-share" => {
                a.be_share = value("--be-share")?
                    .parse()
                    .map_err(|e| format!("--be-share: {e}"))?;
            }
            "--qps" => a.qps = value("--qps")?.parse().map_err(|e| format!("--qps: {e}"))?,
            "--rounds" => {
                a.rounds = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.nodes == 0
        || a.pods < 2
        || !(0.0..=1.0).contains(&a.be_share)
        || a.qps == 0
        || !(1..=20).contains(&a.rounds)
    {
        return Err(
            "--nodes ≥ 1, --pods ≥ 2, --be-share in [0, 1], --qps ≥ 1, --rounds in 1..=20".into(),
        );
    }
    Ok(a)
}

fn status(hp_cpu: u64) -> NodeEstimateStatus {
    serde_json::from_value(json!({
        "observedTime": jiff::Timestamp::now().to_string(),
        "horizonSeconds": 3600,
        "cpu": {"allocatable": 64_000, "predictedPeak": hp_cpu, "margin": 0, "systemReserve": 0,
                "reclaimable": 64_000 - hp_cpu, "hpUsage": hp_cpu / 2, "beUsage": 0},
        "memory": {"allocatable": 256_u64 << 30, "predictedPeak": 64_u64 << 30, "margin": 0,
                "systemReserve": 0, "reclaimable": 192_u64 << 30, "hpUsage": 32_u64 << 30, "beUsage": 0},
        "confidence": {"historySeconds": 86_400, "recentViolationRate": 0.0}
    }))
    .unwrap()
}

/// One node as tide-agent leaves it: Ready, a fresh NodeEstimate, batch amounts advertised.
async fn make_node(client: &kube::Client, i: usize) -> Result<(), String> {
    let name = format!("node-{i:05}");
    k8s::create_ready_node(
        client,
        &name,
        &json!({"cpu": "64", "memory": "256Gi", "pods": "110"}),
    )
    .await?;
    // HP holds 20–40 of 64 cores: levels differ, so scoring has something to balance.
    let st = status(20_000 + (i as u64 * 7_919) % 20_000);
    let estimates: Api<NodeEstimate> = Api::all(client.clone());
    let obj: NodeEstimate =
        serde_json::from_value(tide_agent::publish::estimate_object(&name)).unwrap();
    estimates
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    estimates
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&tide_agent::publish::estimate_patch(&st)),
        )
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let l = st.batch_admit_limits(&TideConfig::default());
    let patch = tide_agent::publish::node_resources_patch(
        &TideConfig::default().resources,
        l.cpu.0,
        l.memory.0,
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(())
}

fn pod(i: usize, be: bool) -> Pod {
    let spec = if be {
        let r = json!({"tide.dev/batch-cpu": "500", "tide.dev/batch-memory": "1Gi"});
        json!({"name": "w", "image": "busybox", "resources": {"requests": r, "limits": r}})
    } else {
        json!({"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i:05}"), "labels": {"bench": "yes"}},
        "spec": {"automountServiceAccountToken": false, "containers": [spec]}
    }))
    .unwrap()
}

/// Quantile `q` of a Prometheus histogram (cumulative `le` buckets), linear within a bucket.
fn histogram_quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        match buckets.iter_mut().find(|b| b.0 == le) {
            Some(b) => b.1 += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let frac = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    None
}

/// Σ of `{name}_sum` and of `{name}_count` over the series whose labels contain every one of
/// `labels`.
fn sum_count(metrics: &str, name: &str, labels: &[&str]) -> (f64, f64) {
    let mut out = (0.0, 0.0);
    for (suffix, slot) in [("_sum", 0), ("_count", 1)] {
        let prefix = format!("{name}{suffix}");
        for line in metrics.lines().filter(|l| {
            l.starts_with(&prefix)
                && l[prefix.len()..].starts_with(['{', ' '])
                && labels.iter().all(|x| l.contains(x))
        }) {
            let v: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            if slot == 0 {
                out.0 += v;
            } else {
                out.1 += v;
            }
        }
    }
    out
}

/// Mean in milliseconds of a histogram or summary (NaN without observations).
fn mean_ms(metrics: &str, name: &str) -> f64 {
    let (sum, count) = sum_count(metrics, name, &[]);
    if count > 0.0 {
        sum / count * 1e3
    } else {
        f64::NAN
    }
}

struct ArmResult {
    pods_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Mean time per scheduling attempt (kube-scheduler's view).
    mean_ms: f64,
    /// From kube-scheduler's start to the first binding.
    first_bind: Duration,
    /// Per extender verb: calls per pod and mean server-side handling time (ms).
    extender: Vec<(&'static str, f64, f64)>,
    wall: Duration,
}

async fn run_arm(
    cp: &mut ControlPlane,
    admin: &kube::Client,
    config: &str,
    args: &Args,
    extender_metrics: &dyn Fn() -> String,
) -> Result<ArmResult, String> {
    let before = extender_metrics();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    // Pods first, scheduler second: the scheduler starts with the whole queue.
    stream::iter(0..args.pods)
        .map(|i| {
            let pods = pods.clone();
            let be = (i as f64 + 0.5) / args.pods as f64 <= args.be_share;
            async move {
                pods.create(&PostParams::default(), &pod(i, be))
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let mut bound: HashMap<String, Instant> = HashMap::new();
    let watch = watcher::watcher(pods.clone(), watcher::Config::default().labels("bench=yes"));
    let mut watch = std::pin::pin!(watch);
    let started = Instant::now();
    tokio::task::block_in_place(|| cp.start_scheduler(config))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while bound.len() < args.pods {
        let ev = tokio::time::timeout_at(deadline.into(), watch.next())
            .await
            .map_err(|_| {
                format!(
                    "only {} of {} pods bound in 10 minutes",
                    bound.len(),
                    args.pods
                )
            })?;
        let Some(Ok(ev)) = ev else { continue };
        let objs: Vec<Pod> = match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => vec![p],
            _ => Vec::new(),
        };
        for p in objs {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                bound
                    .entry(p.metadata.name.unwrap_or_default())
                    .or_insert_with(Instant::now);
            }
        }
    }
    let wall = started.elapsed();
    let first = bound.values().min().copied().unwrap();
    let last = bound.values().max().copied().unwrap();
    let secs = (last - first).as_secs_f64().max(1e-3);
    let metrics = cp.scheduler_metrics()?;
    let dump = std::env::temp_dir().join(format!(
        "k8s-throughput-scheduler-metrics-{}.txt",
        std::process::id()
    ));
    let _ = std::fs::write(&dump, &metrics);
    eprintln!("kube-scheduler metrics of this arm: {}", dump.display());
    // Per scheduling attempt: filter and score, the extender's calls included (v1.20 has no
    // e2e histogram; pod_scheduling_duration would count the queue wait of pods created
    // before the scheduler started).
    let h = "scheduler_scheduling_algorithm_duration_seconds";
    let q = |x| histogram_quantile(&metrics, h, x).map_or(f64::NAN, |s| s * 1e3);
    let after = extender_metrics();
    let extender = ["filter", "prioritize", "bind"]
        .into_iter()
        .map(|verb| {
            let label = format!("verb=\"{verb}\"");
            let name = "tide_scheduler_request_duration_seconds";
            let (s1, c1) = sum_count(&after, name, &[&label]);
            let (s0, c0) = sum_count(&before, name, &[&label]);
            let calls = c1 - c0;
            let mean = if calls > 0.0 {
                (s1 - s0) / calls * 1e3
            } else {
                f64::NAN
            };
            (verb, calls / args.pods as f64, mean)
        })
        .collect();
    let result = ArmResult {
        pods_per_sec: (args.pods - 1) as f64 / secs,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        mean_ms: mean_ms(&metrics, h),
        first_bind: first - started,
        extender,
        wall,
    };
    cp.stop_scheduler();
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("bench=yes"),
    )
    .await
    .map_err(|e| e.to_string())?;
    let cleared = Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&ListParams::default().labels("bench=yes"))
        .await
        .map_err(|e| e.to_string())?
        .items
        .is_empty()
    {
        if Instant::now() > cleared {
            return Err("pods not deleted within 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(result)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("k8s-throughput: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("k8s-throughput: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let extender_bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("tide-scheduler");
    if !extender_bin.is_file() {
        return Err(format!(
            "{} not built (cargo build --release -p tide-scheduler)",
            extender_bin.display()
        ));
    }
    let mut cp = tokio::task::block_in_place(|| ControlPlane::start(k8s::Options::default()))?;
    let admin = tide_kube::connect(Some(&cp.admin_kubeconfig)).await?;
    // The install package rendered for this server; tide-scheduler runs from here, not from
    // its Deployment.
    let shipped = cp.package_objects(&[
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ])?;
    k8s::apply_objects(&admin, &shipped).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the CRD becomes served
    let t = Instant::now();
    stream::iter(0..args.nodes)
        .map(|i| {
            let admin = admin.clone();
            async move { make_node(&admin, i).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!("{} nodes with estimates in {:.1?}", args.nodes, t.elapsed());

    // tide-scheduler with its ServiceAccount; estimates stay fresh for the whole run.
    let token = k8s::service_account_token(&admin, "tide-system", "tide-scheduler").await?;
    let kubeconfig = cp.token_kubeconfig("tide-scheduler", &token)?;
    let tide_config = cp.path("tide-config.yaml");
    std::fs::write(&tide_config, "estimator:\n  staleAfter: 1h\n").map_err(|e| e.to_string())?;
    let port = k8s::free_port();
    let log = cp.path("tide-scheduler.log");
    let mut extender = Proc::start(
        "tide-scheduler",
        &extender_bin,
        &[
            format!("--listen=127.0.0.1:{port}"),
            "--path-prefix=/extender".into(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--config={}", tide_config.display()),
        ],
        &log,
    )?;
    let addr = ([127, 0, 0, 1], port).into();
    k8s::wait_until(
        "tide-scheduler",
        Duration::from_secs(60),
        Some(&mut extender),
        &log,
        || k8s::http_get_status(addr, "/readyz") == Some(200),
    )?;

    let slots = cp.scheduler_slots()?;
    let render = |url: Option<String>| {
        wiring::render(
            wiring::SHIPPED,
            &wiring::Render {
                minor: slots.minor,
                kubeconfig: Some(slots.kubeconfig.display().to_string()),
                extender_url: url,
                healthz: Some(slots.healthz),
                metrics: Some(slots.metrics),
                client_qps: Some((f64::from(args.qps), args.qps * 2)),
                tls: None,
                second: None,
            },
        )
    };
    let with = render(Some(format!("http://127.0.0.1:{port}/extender")))?;
    let mut without: Value = serde_json::from_str(&render(None)?).map_err(|e| e.to_string())?;
    without.as_object_mut().map(|o| o.remove("extenders"));
    let without = without.to_string();

    let metrics_of = move || k8s::http_get_body(addr, "/metrics").unwrap_or_default();
    let mut rows = Vec::new();
    for round in 0..args.rounds {
        let a = run_arm(&mut cp, &admin, &without, &args, &metrics_of).await?;
        let b = run_arm(&mut cp, &admin, &with, &args, &metrics_of).await?;
        eprintln!(
            "round {}: {:.1} → {:.1} pods/s (ratio {:.3})",
            round + 1,
            a.pods_per_sec,
            b.pods_per_sec,
            b.pods_per_sec / a.pods_per_sec
        );
        rows.push((a, b));
    }
    let rss = rss_mib(extender.pid()).unwrap_or(f64::NAN);
    println!(
        "| nodes | pods | BE share | round | arm | pods/s | p50 ms | p99 ms | mean ms | first bind s | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (round, (a, b)) in rows.iter().enumerate() {
        for (name, r) in [("without extender", a), ("with Tide extender", b)] {
            println!(
                "| {} | {} | {:.2} | {} | {name} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} |",
                args.nodes,
                args.pods,
                args.be_share,
                round + 1,
                r.pods_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.mean_ms,
                r.first_bind.as_secs_f64(),
                r.wall.as_secs_f64()
            );
        }
    }
    let mut ratios: Vec<f64> = rows
        .iter()
        .map(|(a, b)| b.pods_per_sec / a.pods_per_sec)
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput ratio (with / without), per round: {}; median {:.3}",
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        ratios[ratios.len() / 2]
    );
    // Where the extender's time goes, from the last round: how much an attempt grew with the
    // extender (kube-scheduler's view) against what tide-scheduler spent serving it.
    if let Some((a, b)) = rows.last() {
        let mut in_attempt = 0.0;
        for (verb, per_pod, server_ms) in &b.extender {
            if *per_pod > 0.0 {
                println!(
                    "extender {verb}: {per_pod:.2} calls per pod, {server_ms:.3} ms server-side each"
                );
                if *verb != "bind" {
                    in_attempt += per_pod * server_ms;
                }
            }
        }
        let grew = b.mean_ms - a.mean_ms;
        println!(
            "per attempt the extender added {grew:.2} ms: {in_attempt:.2} ms serving filter and prioritize, {:.2} ms round trip (kube-scheduler's extender client, HTTP, JSON)",
            grew - in_attempt
        );
    }
    println!(
        "tide-scheduler RSS {:.0} MiB with {} nodes",
        rss, args.nodes
    );
    Ok(())
}
