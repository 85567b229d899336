//! Shared by the trace-loader targets: a private scratch folder per process and the ways a
//! file may arrive (plain, gzip, gzip cut short, gzip with a flipped byte).

use std::io::Write;
use std::path::PathBuf;

/// A scratch folder for this process, emptied for each input (tmpfs when there is one).
pub fn scratch(name: &str) -> PathBuf {
    // scripts/fuzz.sh makes TIDE_FUZZ_SCRATCH and removes it after the run (libFuzzer exits
    // without running destructors, so a folder per process would stay behind).
    let base = std::env::var_os("TIDE_FUZZ_SCRATCH").map_or_else(
        || {
            let shm = std::path::Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        },
        PathBuf::from,
    );
    let dir = base.join(format!("tide-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// The file's bytes as they arrive: the first byte of `data` picks plain (0), gzip (1), gzip
/// cut at a point the second byte chooses (2) or gzip with one byte flipped there (3); the
/// rest is the text.
pub fn arrive(data: &[u8]) -> Vec<u8> {
    let (mode, at, text) = match data {
        [m, a, rest @ ..] => (m % 4, usize::from(*a), rest),
        _ => (0, 0, data),
    };
    if mode == 0 {
        return text.to_vec();
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text).expect("in memory");
    let mut gz = enc.finish().expect("in memory");
    let at = at * gz.len() / 256;
    match mode {
        2 => gz.truncate(at),
        3 if at < gz.len() => gz[at] ^= 0x20,
        _ => {}
    }
    gz
}
