//! Replay speed: one policy over a small synthetic cluster (8 nodes, 12 h at 60 s steps), and
//! how it grows with nodes. The default `make replay` is 32 nodes × 3 days × 5 policies.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tide_api::TideConfig;
use tide_datasets::churn::HpChurn;
use tide_datasets::pagecache::PageCacheModel;
use tide_datasets::sim::{Policy, SimSetup, simulate};
use tide_datasets::{SyntheticSpec, generate};

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay/12h");
    g.sample_size(10);
    for nodes in [8usize, 32] {
        let spec = SyntheticSpec {
            nodes,
            duration_secs: 12 * 3600,
            ..SyntheticSpec::default()
        };
        let cluster = generate(&spec);
        let setup = SimSetup {
            trace: &cluster.trace,
            nodes: &cluster.nodes,
            capacity: vec![spec.node_capacity; nodes],
            be_jobs: &cluster.be_jobs,
            config: TideConfig::default(),
            static_ratio: 1.5,
            koordinator_threshold: tide_datasets::replay::KOORDINATOR_THRESHOLD,
            system: tide_datasets::replay::SYSTEM_USAGE,
            page_cache: Some(PageCacheModel::default()),
            churn: Some(HpChurn::default()),
            steps: cluster.trace.steps(),
        };
        for policy in [Policy::StaticRatio, Policy::Tide] {
            g.bench_with_input(BenchmarkId::new(policy.name(), nodes), &nodes, |b, _| {
                b.iter(|| black_box(simulate(&setup, policy, &AtomicU64::new(0))))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
