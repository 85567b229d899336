//! The `tide-coldmem` binary on a fake cgroup: `--once` prints the period's JSON status and
//! writes a report frame the host side can decode; a backend the kernel lacks is refused.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use tide_coldmem::proto::{Decoder, Message};

#[test]
fn once_prints_status_and_writes_a_frame() {
    let dir = std::env::temp_dir().join(format!("tide-coldmem-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cg = dir.join("cgroup");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(cg.join("memory.stat"), "anon 0\nfile 104857600\nactive_file 0\ninactive_file 104857600\nworkingset_refault_file 0\n").unwrap();
    std::fs::write(cg.join("memory.reclaim"), "").unwrap();
    let report = dir.join("report.bin");
    let out = Command::new(env!("CARGO_BIN_EXE_tide-coldmem"))
        .args(["--once", "--backend", "memcg", "--initial-bytes", "4194304"])
        .arg("--cgroup")
        .arg(&cg)
        .arg("--sysfs")
        .arg(dir.join("sys"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["backend"], "memcg");
    assert_eq!(status["coldBytes"], 104_857_600);
    assert_eq!(status["requestedBytes"], 4 << 20);
    assert_eq!(
        std::fs::read_to_string(cg.join("memory.reclaim")).unwrap(),
        (4u64 << 20).to_string()
    );
    let mut d = Decoder::default();
    d.push(&std::fs::read(&report).unwrap());
    match d.next_message().unwrap() {
        Some(Message::Report(r)) => {
            assert_eq!(r.seq, 1);
            assert_eq!(r.cold_bytes, 104_857_600);
        }
        other => panic!("{other:?}"),
    }

    let out = Command::new(env!("CARGO_BIN_EXE_tide-coldmem"))
        .args(["--once", "--backend", "damon"])
        .arg("--sysfs")
        .arg(dir.join("sys"))
        .arg("--cgroup")
        .arg(&cg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not offered"));
    std::fs::remove_dir_all(&dir).unwrap();
}
