//! Arbitrary bytes as an Alibaba 2017 `batch_task.csv` (plain, gzip, cut or flipped) turned
//! into BE jobs over a day: must never panic, hang or draw unbounded jobs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tide_datasets::BadRows;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("batch");
    let path = dir.join("batch_task.csv");
    std::fs::write(&path, common::arrive(data)).expect("write");
    for strict in [false, true] {
        let mut bad = BadRows::new(strict);
        if let Ok(jobs) = tide_datasets::bejobs::alibaba2017(&path, 50_000.0, 86_400, 7, &mut bad) {
            assert!(jobs.windows(2).all(|w| w[0].arrival <= w[1].arrival));
            assert!(jobs.iter().all(|j| j.arrival < 86_400));
        }
        let _ = bad.summary();
    }
    let _ = std::fs::remove_dir_all(&dir);
});
