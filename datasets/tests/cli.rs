//! The `tide-replay` binary: bad input gets a clear error, good input a well-formed report.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tide_replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tide-replay"))
        .args(args)
        .output()
        .expect("run tide-replay")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temp folder removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tide-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n";

/// A small Bitbrains folder: `vms` VMs over `days` days at 300 s, one corrupt row in 1.csv if asked.
fn bitbrains(dir: &Path, vms: usize, days: usize, corrupt: bool) {
    for vm in 1..=vms {
        let mut s = String::from(HEADER);
        for i in 0..days * 288 {
            let t = 1_372_629_600 + i * 300;
            let hour = (i % 288) / 12;
            let usage = 300.0
                + if (9..18).contains(&hour) { 900.0 } else { 0.0 }
                + (vm * 37 + i * 13) as f64 % 200.0;
            s.push_str(&format!(
                "{t};\t4;\t10400.0;\t{usage};\t0;\t16777216.0;\t{};\t0;\t0;\t0;\t0\n",
                4_000_000 + (i % 50) * 1000
            ));
            if corrupt && vm == 1 && i == 1 {
                s.push_str("1372630200;\t4;\tgarbage;\t1;\t0;\t1;\t1;\t0;\t0;\t0;\t0\n");
            }
        }
        std::fs::write(dir.join(format!("{vm}.csv")), s).unwrap();
    }
}

#[test]
fn unknown_trace_kind_is_a_clear_error() {
    let out = tide_replay(&["--trace", "azure:/x"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unknown kind \"azure\""), "{err}");
}

#[test]
fn missing_trace_folder_names_the_path() {
    let out = tide_replay(&["predict", "--trace", "bitbrains:/nonexistent/tide-trace"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/tide-trace"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn corrupt_rows_are_counted_or_stop_the_run_with_file_and_line() {
    let dir = TempDir::new("corrupt");
    bitbrains(dir.path(), 3, 3, true);
    let spec = format!("bitbrains:{}", dir.path().display());
    let lenient = tide_replay(&[
        "predict",
        "--trace",
        &spec,
        "--node-cpu",
        "16",
        "--node-memory",
        "64Gi",
    ]);
    assert!(lenient.status.success(), "{}", text(&lenient.stderr));
    let err = text(&lenient.stderr);
    assert!(
        err.contains("1 bad rows skipped; first:")
            && err.contains("1.csv:4: column CPU capacity provisioned [MHZ]"),
        "{err}"
    );
    assert!(text(&lenient.stdout).contains("tide-n-sigma"));

    let strict = tide_replay(&["predict", "--trace", &spec, "--strict"]);
    assert!(!strict.status.success());
    let err = text(&strict.stderr);
    assert!(err.contains("1.csv:4:"), "{err}");
}

#[test]
fn predict_json_has_every_predictor_and_resource() {
    let dir = TempDir::new("json");
    bitbrains(dir.path(), 4, 3, false);
    let spec = format!("bitbrains:{}", dir.path().display());
    let out = tide_replay(&[
        "predict",
        "--trace",
        &spec,
        "--format",
        "json",
        "--node-cpu",
        "16",
        "--node-memory",
        "64Gi",
        "--horizon",
        "30m",
        "--target",
        "0.05",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["horizon_secs"], 1800);
    assert_eq!(v["target_violation_rate"], 0.05);
    let results = v["results"].as_array().unwrap();
    for name in [
        "oracle",
        "tide",
        "tide-pod-histogram",
        "tide-n-sigma",
        "tide-diurnal",
        "pod-histogram",
        "n-sigma",
        "koordinator",
        "borg",
        "no-overcommit",
    ] {
        for res in ["cpu", "memory"] {
            let r = results
                .iter()
                .find(|r| r["predictor"] == name && r["resource"] == res)
                .unwrap_or_else(|| panic!("{name}/{res}"));
            for key in ["violation_rate", "severity", "reclaim_ratio"] {
                assert!(r[key].is_number(), "{name}/{res}/{key}");
            }
        }
    }
}

#[test]
fn default_replay_prints_every_policy_and_writes_the_report() {
    let dir = TempDir::new("replay");
    let report = dir.path().join("r.html");
    let report_arg = report.display().to_string();
    let out = tide_replay(&[
        "--nodes",
        "3",
        "--duration",
        "4h",
        "--format",
        "json",
        "--report",
        &report_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "no-overcommit",
            "static-ratio",
            "koordinator",
            "tide-request",
            "tide"
        ]
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<svg") && html.contains("tide"),
        "report has plots"
    );
    // Not a terminal: no progress bar on stderr.
    assert!(!text(&out.stderr).contains('['), "{}", text(&out.stderr));
}

#[test]
fn bad_flags_are_rejected() {
    for args in [
        &["--policy", "greedy"][..],
        &["--node-cpu", "lots"][..],
        &["--be-load", "-1"][..],
        &["--duration", "0s"][..],
        &["predict", "--trace", "bitbrains:/x", "--target", "2"][..],
    ] {
        let out = tide_replay(args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            !err.is_empty() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn be_jobs_from_a_real_batch_trace() {
    let dir = TempDir::new("betrace");
    let tasks = dir.path().join("batch_task.csv");
    let mut s = String::from(
        "task_create_time,task_end_time,job_id,task_id,number_of_instances,status,cpu,mem\n",
    );
    for i in 0..200 {
        s.push_str(&format!(
            "{},{},{i},1,{},Terminated,50,0.004\n",
            i * 60,
            i * 60 + 900,
            1 + i % 7
        ));
    }
    s.push_str("1,2,3,4,5,Terminated,,0.1\n");
    std::fs::write(&tasks, s).unwrap();
    let spec = format!("alibaba2017:{}", tasks.display());
    let report = dir.path().join("r.html").display().to_string();
    let out = tide_replay(&[
        "--nodes",
        "2",
        "--duration",
        "3h",
        "--be-trace",
        &spec,
        "--format",
        "json",
        "--report",
        &report,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("1 bad rows skipped"),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["source"].as_str().unwrap().contains("alibaba-2017"));
    assert!(v["be_jobs"].as_u64().unwrap() > 0);
    let bad = tide_replay(&["--be-trace", "google:/x"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("expected alibaba2017:PATH"),
        "{}",
        text(&bad.stderr)
    );
}
