//! Where the agent's fuzz targets keep scratch files.

use std::path::PathBuf;

/// The folder the targets' scratch folders go in: `TIDE_FUZZ_SCRATCH`, which scripts/fuzz.sh
/// makes and removes after the run (libFuzzer exits without running destructors, so a folder
/// per process would stay behind), else tmpfs when there is one.
pub fn base() -> PathBuf {
    std::env::var_os("TIDE_FUZZ_SCRATCH").map_or_else(
        || {
            let shm = std::path::Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        },
        PathBuf::from,
    )
}
