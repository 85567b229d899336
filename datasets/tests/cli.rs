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
fn every_flag_bad_value_is_rejected_at_start_naming_the_flag() {
    let dir = TempDir::new("flags");
    let a_dir = dir.path().display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["--policy", "greedy"], "--policy"),
        (&["--policy", ""], "--policy"),
        (&["--node-cpu", "lots"], "--node-cpu"),
        (&["--node-cpu", "0"], "--node-cpu"),
        (&["--node-memory", "0"], "--node-memory"),
        (&["--node-memory=-1Gi"], "--node-memory"),
        (&["--be-load=-1"], "--be-load"),
        (&["--be-load", "1e9"], "--be-load"),
        (&["--be-load", "NaN"], "--be-load"),
        (&["--static-ratio", "0.5"], "--static-ratio"),
        (&["--static-ratio", "inf"], "--static-ratio"),
        (&["--duration", "0s"], "--duration"),
        (&["--duration", "10"], "--duration"),
        (&["--duration", "100000d"], "--duration"),
        (&["--duration", "30s"], "--duration"),
        (&["--nodes", "0"], "--nodes"),
        (&["--nodes", "100000000"], "--nodes"),
        (&["--nodes", "50000", "--node-cpu", "1000"], "--nodes"),
        (&["--seed=-1"], "--seed"),
        (&["--format", "xml"], "--format"),
        (&["--config", "/nonexistent/tide.yaml"], "--config"),
        (&["--report", "/proc/tide-no/r.html"], "--report"),
        (&["--report", &a_dir], "--report"),
        (&["--be-trace", "google:/x"], "--be-trace"),
        (
            &["--be-trace", "alibaba2017:/nonexistent/bt.csv"],
            "--be-trace",
        ),
        (&["--trace", "azure:/x"], "--trace"),
        (&["--trace", "bitbrains:/nonexistent/tide"], "--trace"),
        (
            &["predict", "--trace", "bitbrains:/x", "--target", "2"],
            "--target",
        ),
        (
            &["predict", "--trace", "bitbrains:/x", "--target", "0"],
            "--target",
        ),
        (
            &["predict", "--trace", "bitbrains:/x", "--horizon", "0s"],
            "--horizon",
        ),
        (
            &["predict", "--trace", "bitbrains:/x", "--horizon", "400d"],
            "--horizon",
        ),
        (
            &["predict", "--trace", "bitbrains:/x", "--warmup", "100000d"],
            "--warmup",
        ),
        (
            &["predict", "--trace", "bitbrains:/x", "--node-cpu", "0"],
            "--node-cpu",
        ),
        (
            &["predict", "--trace", "bitbrains:/x", "--seed", "x"],
            "--seed",
        ),
        (&["predict", "--trace", "nope"], "--trace"),
    ];
    for (args, flag) in cases {
        let out = tide_replay(args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(flag) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // Checked before the run: the report's folder is made at start.
    assert!(!dir.path().join("r.html").exists());
}

/// Writes `text` gzip-compressed.
fn gzip(path: &Path, text: &[u8]) {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text).unwrap();
    enc.finish().unwrap();
}

#[test]
fn corrupt_and_truncated_gzip_are_counted_as_losses_or_stop_a_strict_run() {
    let dir = TempDir::new("damaged");
    bitbrains(dir.path(), 4, 3, false);
    for vm in 1..=4 {
        let plain = dir.path().join(format!("{vm}.csv"));
        gzip(
            &dir.path().join(format!("{vm}.csv.gz")),
            &std::fs::read(&plain).unwrap(),
        );
        std::fs::remove_file(plain).unwrap();
    }
    // 2.csv.gz: a few flipped bytes in the compressed body; 3.csv.gz: cut in half.
    let p2 = dir.path().join("2.csv.gz");
    let mut b = std::fs::read(&p2).unwrap();
    for k in [b.len() / 3, b.len() / 2, 2 * b.len() / 3] {
        b[k] ^= 0x55;
    }
    std::fs::write(&p2, b).unwrap();
    let p3 = dir.path().join("3.csv.gz");
    let b = std::fs::read(&p3).unwrap();
    std::fs::write(&p3, &b[..b.len() / 2]).unwrap();

    let spec = format!("bitbrains:{}", dir.path().display());
    let args = [
        "predict",
        "--trace",
        &spec,
        "--node-cpu",
        "16",
        "--node-memory",
        "64Gi",
        "--format",
        "json",
    ];
    let lenient = tide_replay(&args);
    let err = text(&lenient.stderr);
    assert!(lenient.status.success(), "{err}");
    assert!(err.contains("2 damaged files"), "{err}");
    // 3 days at 300 s: 864 rows per VM. The corrupt file's rows are all dropped; the cut
    // one keeps what came before the cut, and its missing tail is estimated.
    let v: serde_json::Value = serde_json::from_slice(&lenient.stdout).unwrap();
    assert_eq!(v["workloads"], 3, "the corrupt VM is left out");
    assert!(
        err.contains("2.csv.gz: corrupt gzip stream at byte"),
        "{err}"
    );
    let lost: u64 = err
        .split(" damaged files, ")
        .nth(1)
        .and_then(|r| r.split(" rows").next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        lost > 300,
        "the corrupt file's rows and the cut's tail: {err}"
    );

    // Each damage on its own, as the first one the summary names.
    std::fs::remove_file(&p2).unwrap();
    let cut = tide_replay(&args);
    let err = text(&cut.stderr);
    assert!(cut.status.success(), "{err}");
    assert!(
        err.contains("3.csv.gz: truncated gzip stream at byte"),
        "{err}"
    );
    assert!(err.contains("rows before it kept"), "{err}");
    let kept_and_lost = err
        .split(": ~")
        .nth(1)
        .and_then(|r| r.split(" rows").next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(
        (300..=600).contains(&kept_and_lost),
        "about half of 864 rows estimated lost: {err}"
    );

    let strict = tide_replay(&[&args[..], &["--strict"]].concat());
    assert!(!strict.status.success());
    let err = text(&strict.stderr);
    assert!(err.contains("3.csv.gz: truncated gzip stream"), "{err}");
}

#[test]
fn absurd_timestamps_are_bad_rows_not_allocations() {
    let dir = TempDir::new("absurd");
    bitbrains(dir.path(), 3, 3, false);
    let p = dir.path().join("2.csv");
    let mut s = std::fs::read_to_string(&p).unwrap();
    // Outside any plausible time (the 15 PB allocation), and within the century but 70 years
    // from the rest of the file.
    s.push_str("99999999999999;\t4;\t10400.0;\t300;\t0;\t16777216.0;\t4000000;\t0;\t0;\t0;\t0\n");
    s.push_str("3600000000;\t4;\t10400.0;\t300;\t0;\t16777216.0;\t4000000;\t0;\t0;\t0;\t0\n");
    std::fs::write(&p, s).unwrap();
    let spec = format!("bitbrains:{}", dir.path().display());
    let out = tide_replay(&["predict", "--trace", &spec, "--format", "json"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 bad rows skipped"), "{err}");
    assert!(
        err.contains("column Timestamp: 99999999999999 is outside"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"], 864, "the grid spans the good rows only");
    let strict = tide_replay(&["predict", "--trace", &spec, "--strict"]);
    assert!(!strict.status.success());
    assert!(
        text(&strict.stderr).contains("2.csv:866:"),
        "{}",
        text(&strict.stderr)
    );
    // An in-range timestamp out of line is named too.
    std::fs::write(
        &p,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("99999999999999;", "1372629600;"),
    )
    .unwrap();
    let out = tide_replay(&["predict", "--trace", &spec, "--strict"]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("3600000000 is out of line"),
        "{err}"
    );
}

#[test]
fn warmup_and_horizon_longer_than_the_trace_are_an_error() {
    let dir = TempDir::new("short");
    bitbrains(dir.path(), 2, 1, false);
    let spec = format!("bitbrains:{}", dir.path().display());
    let out = tide_replay(&["predict", "--trace", &spec, "--warmup", "2d"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("--warmup"), "{err}");
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
