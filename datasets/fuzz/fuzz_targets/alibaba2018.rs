//! Arbitrary bytes as an Alibaba 2018 folder (`machine_meta.csv` and `machine_usage.csv`,
//! split at the first 0xff byte; the usage file plain, gzip, cut or flipped): loading must never
//! panic, hang or allocate beyond what the rows justify.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("alibaba2018");
    let (meta, usage) = match data.iter().position(|&c| c == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"m_1,0,1,a,96,100,USING\n"[..], data),
    };
    std::fs::write(dir.join("machine_meta.csv"), meta).expect("write");
    std::fs::write(dir.join("machine_usage.csv"), common::arrive(usage)).expect("write");
    for strict in [false, true] {
        if let Ok(t) = tide_datasets::load_alibaba_machines(&dir, strict) {
            assert_eq!(t.memory.ncols(), t.columns.len());
            let _ = t.bad_rows.summary();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
