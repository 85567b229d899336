//! Arbitrary bytes as a Bitbrains VM folder (two files split at the first 0xff byte, each plain,
//! gzip, cut or flipped): loading must never panic, hang or allocate beyond what the rows
//! justify, in lenient and strict mode, and a loaded trace's grid matches its rows.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("bitbrains");
    let (a, b) = match data.iter().position(|&c| c == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(dir.join("1.csv.gz"), common::arrive(a)).expect("write");
    std::fs::write(dir.join("2.csv"), common::arrive(b)).expect("write");
    for strict in [false, true] {
        if let Ok(t) = tide_datasets::load_bitbrains(&dir, strict) {
            assert_eq!(t.cpu.ncols(), t.columns.len());
            assert!(t.steps() >= 1);
            let _ = t.bad_rows.summary();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
