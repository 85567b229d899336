//! The agent's deploy files agree with the binary: DaemonSet flags are flags the agent takes,
//! and every metric the Grafana dashboard queries is one the agent exports.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

fn deploy(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn daemonset_flags_exist() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_tide-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let ds = deploy("base/agent/daemonset.yaml");
    let flags: Vec<&str> = ds
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| f.split('=').next().unwrap())
        .collect();
    assert!(flags.len() >= 8, "{flags:?}");
    for f in flags {
        assert!(
            help.contains(&format!("--{f}")),
            "DaemonSet passes --{f}, which tide-agent does not take"
        );
    }
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&deploy("components/monitoring/grafana-dashboard.json")).unwrap();
    let metrics = tide_agent::metrics::AgentMetrics::new().unwrap();
    // Touch every labelled family so it renders.
    metrics
        .actions
        .with_label_values(&["evict", "memory-pressure", "evicted"])
        .inc();
    metrics.usage.with_label_values(&["hp", "cpu"]).set(1.0);
    metrics
        .estimate
        .with_label_values(&["reclaimable", "cpu"])
        .set(1.0);
    metrics
        .oom_score_adj
        .with_label_values(&["ns/p", "BE"])
        .set(1.0);
    metrics.errors.with_label_values(&["collect"]).inc();
    metrics.throttled.with_label_values(&["be"]).set(1.0);
    metrics.pressure.with_label_values(&["cpu"]).set(1.0);
    metrics
        .sandbox_cold
        .with_label_values(&["unix:///s"])
        .set(1.0);
    metrics.sandboxes.with_label_values(&["fresh"]).set(1);
    let exported: BTreeSet<String> = metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let mut used = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("tide_agent_") {
                    used.insert(word.to_owned());
                }
            }
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    for m in &used {
        assert!(
            exported.contains(m),
            "dashboard queries {m}, which the agent does not export: {exported:?}"
        );
    }
}

/// Exit statuses (`tide_api::exit`): 2 for a usage mistake, 3 for an environment the agent
/// cannot work in, each with a message naming the flag.
#[test]
fn bad_start_up_input_exits_with_the_documented_status() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tide-agent"))
            .args(args)
            .env_remove("NODE_NAME")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--node-name"), "{err}");
    for (flag, value) in [
        ("--api-timeout-ms", "0"),
        ("--sandbox-stale-s", "0"),
        ("--listen", "nowhere"),
        ("--cpu-suppression", "freeze"),
    ] {
        let (code, err) = run(&["--node-name=n1", &format!("{flag}={value}")]);
        assert_eq!(code, Some(2), "{flag}={value}: {err}");
        assert!(err.contains(flag), "{flag}={value}: {err}");
    }
    let (code, err) = run(&[
        "--node-name=n1",
        "--cgroup-root=/tide-no-such-root",
        "--api-server=http://127.0.0.1:9",
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--cgroup-root"), "{err}");
    let (code, err) = run(&["--node-name=n1", "--config=/nonexistent/tide.yaml"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("/nonexistent/tide.yaml"), "{err}");
}
