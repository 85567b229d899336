//! Arbitrary bytes as the Google-derived series: as an archive (`GCD_VMs.tar.gz`: the bytes
//! as a tar stream, gzip, cut or flipped) and as a folder holding one series file. Loading
//! must never panic, hang or allocate beyond what the input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("google");
    let archive = dir.join("GCD_VMs.tar.gz");
    std::fs::write(&archive, common::arrive(data)).expect("write");
    let folder = dir.join("series");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("vm_1"), common::arrive(data)).expect("write");
    for strict in [false, true] {
        for path in [&archive, &folder] {
            if let Ok(t) = tide_datasets::load_google(path, strict) {
                assert_eq!(t.cpu.ncols(), t.columns.len());
                let _ = t.bad_rows.summary();
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
