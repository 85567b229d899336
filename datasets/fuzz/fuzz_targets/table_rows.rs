//! Arbitrary bytes through every row parser (Alibaba 2018 tables, the GPU pod list, Bitbrains
//! rows, Google series): each row is a value within its bounds or a bad row with a line
//! number; a damaged file ends the rows with its damage recorded. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tide_datasets::formats;
use tide_datasets::formats::bounds;
use tide_datasets::rows::Rows;

#[path = "common.rs"]
mod common;

fn drain<T>(rows: Result<Rows<T>, tide_datasets::LoadError>, check: impl Fn(&T)) {
    let Ok(mut rows) = rows else { return };
    let mut last = 0;
    while let Some(item) = rows.next() {
        match item {
            Ok(v) => check(&v),
            Err(e) => {
                assert!(e.line > last && e.line == rows.line());
                last = e.line;
            }
        }
    }
    let mut bad = tide_datasets::BadRows::new(false);
    let _ = bad.finish(&rows);
    let _ = bad.summary();
}

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("rows");
    let p = dir.join("t.csv");
    std::fs::write(&p, common::arrive(data)).expect("write");
    drain(formats::bitbrains(&p), |r| {
        assert!(bounds::UNIX_TIME.contains(&r.time));
        assert!(bounds::MHZ.contains(&r.cpu_usage_mhz));
    });
    drain(formats::alibaba_machine_meta(&p), |r| {
        assert!(bounds::CORES_INT.contains(&r.cpu_num));
    });
    drain(formats::alibaba_machine_usage(&p), |r| {
        assert!(bounds::PERCENT.contains(&r.cpu_util_percent));
    });
    drain(formats::alibaba_container_meta(&p), |_| {});
    drain(formats::alibaba_container_usage(&p), |_| {});
    drain(formats::alibaba_batch_task_2018(&p), |r| {
        assert!(bounds::TRACE_TIME.contains(&r.start_time));
    });
    drain(formats::alibaba_batch_instance_2018(&p), |_| {});
    drain(formats::alibaba_batch_task_2017(&p), |r| {
        assert!(bounds::COUNT.contains(&r.instances));
    });
    drain(formats::alibaba_gpu_pods(&p), |r| {
        assert!(bounds::MILLICORES.contains(&r.cpu_milli));
    });
    drain(formats::google_file(&p), |r| {
        assert!(r.cpu_percent.is_finite());
    });
    let _ = std::fs::remove_dir_all(&dir);
});
