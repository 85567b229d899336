//! Estimator hot paths: one sampling round over 10,000 series, and one node's estimate.

#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tide_api::{EstimatorSettings, Resource};
use tide_benches::Seq;
use tide_estimator::{
    HistogramOptions, HistoryOptions, HistoryStore, NodeObservation, PodSample, ResourceEstimator,
};

fn warmed_store(series: u64, rounds: u64) -> HistoryStore {
    let mut store = HistoryStore::new(HistoryOptions::new(HistogramOptions::cpu(86_400.0), 3600));
    let mut seq = Seq::new(1);
    for r in 0..rounds {
        for id in 0..series {
            store.add(id, Some(id / 10), r * 10, 200.0 + 800.0 * seq.next_f64());
        }
    }
    store
}

fn update_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("estimator/update-round");
    for series in [1_000u64, 10_000] {
        let mut store = warmed_store(series, 60);
        let mut seq = Seq::new(2);
        let values: Vec<f64> = (0..series)
            .map(|_| 200.0 + 800.0 * seq.next_f64())
            .collect();
        let mut t = 600u64;
        g.bench_with_input(BenchmarkId::from_parameter(series), &series, |b, _| {
            b.iter(|| {
                t += 1;
                for (id, v) in values.iter().enumerate() {
                    store.add(id as u64, Some(id as u64 / 10), t, *v);
                }
                black_box(store.len())
            })
        });
        eprintln!(
            "state: {series} series + {} workloads = {} bytes, {:.0} bytes per series",
            series / 10,
            store.heap_size(),
            store.heap_size() as f64 / series as f64
        );
    }
    g.finish();
}

fn node_estimate(c: &mut Criterion) {
    let settings = EstimatorSettings::default();
    let mut est = ResourceEstimator::new(Resource::Cpu, &settings);
    let mut seq = Seq::new(3);
    let mut pods: Vec<PodSample> = (0..30)
        .map(|i| PodSample {
            id: i,
            workload: Some(i / 3),
            usage: 0.0,
            request: 2_000.0,
        })
        .collect();
    let mut t = 0u64;
    for _ in 0..7_200 {
        t += 10;
        for p in &mut pods {
            p.usage = 300.0 + 600.0 * seq.next_f64();
        }
        est.observe(&NodeObservation {
            time: t,
            capacity: 64_000.0,
            pods: &pods,
            system: 500.0,
        });
    }
    c.bench_function("estimator/node-observe-and-estimate-30-pods", |b| {
        b.iter(|| {
            t += 1;
            let obs = NodeObservation {
                time: t,
                capacity: 64_000.0,
                pods: &pods,
                system: 500.0,
            };
            est.observe(&obs);
            black_box(est.estimate(&obs, t, &settings, 500.0, 0.0))
        })
    });
}

criterion_group!(benches, update_round, node_estimate);
criterion_main!(benches);
