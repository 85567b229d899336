//! The files backend on this machine's real kernel, on files this test makes (nothing else is
//! touched): a cold file (cached, its times set three days back) loses its page cache to
//! `posix_fadvise(DONTNEED)`; a hot one (just written) keeps it. Residency is checked with
//! util-linux `fincore` as well as with `cachestat(2)`.

#![allow(clippy::unwrap_used)]

use std::fs::{File, FileTimes};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use tide_coldmem::files;

const MIB: u64 = 1 << 20;

fn make(path: &Path, mib: u64) {
    let mut f = File::create(path).unwrap();
    let block: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    // Clean pages: DONTNEED drops them at once (dirty ones would be written back first).
    f.sync_all().unwrap();
}

fn cached(path: &Path) -> u64 {
    files::cachestat(&File::open(path).unwrap())
        .unwrap()
        .nr_cache
        * 4096
}

/// Resident bytes by `fincore` (util-linux), if installed. It maps the file: an access.
fn fincore(path: &Path) -> Option<u64> {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn cold_files_lose_their_cache_and_hot_ones_keep_it() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cold")).unwrap();
    let (cold, hot) = (dir.join("cold/shard.bin"), dir.join("hot.log"));
    make(&cold, 16);
    make(&hot, 8);
    if !files::supported(&cold) {
        eprintln!("cachestat(2) is not available on this kernel: the files backend is not offered");
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    // Cache the cold file by reading it, then date it three days back (read and write): on a
    // relatime mount that proves two days idle.
    let mut buf = Vec::new();
    File::open(&cold).unwrap().read_to_end(&mut buf).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3 * 24 * 3600);
    File::options()
        .write(true)
        .open(&cold)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(old).set_modified(old))
        .unwrap();
    assert!(
        cached(&cold) >= 15 * MIB,
        "cold file cached: {}",
        cached(&cold)
    );
    assert!(cached(&hot) >= 7 * MIB, "hot file cached: {}", cached(&hot));
    // (No fincore here: it maps the file, and mapping a file is an access that sets atime.)

    let out = Command::new(env!("CARGO_BIN_EXE_tide-coldmem"))
        .args(["--backend", "files", "--once", "--min-age-ms", "3600000"])
        .args(["--initial-bytes", "1073741824", "--cgroup", "/nonexistent"])
        .arg("--files")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["backend"], "files");
    // Cold: the 16 MiB file only (the hot one was written just now).
    let cold_found = status["coldBytes"].as_u64().unwrap();
    assert!((15 * MIB..=16 * MIB).contains(&cold_found), "{status}");
    let reclaimed = status["reclaimedBytes"].as_u64().unwrap();
    assert!(reclaimed >= 15 * MIB, "{status}");
    assert!(
        cached(&cold) < MIB,
        "cold file still cached: {}",
        cached(&cold)
    );
    assert!(
        cached(&hot) >= 7 * MIB,
        "hot file lost its cache: {}",
        cached(&hot)
    );
    if let Some(res) = fincore(&cold) {
        assert!(res < MIB, "fincore: cold file still resident: {res}");
    }
    if let Some(res) = fincore(&hot) {
        assert!(res >= 7 * MIB, "fincore: hot file not resident: {res}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
