//! Extender hot path: filter and score one pod against 5,000 nodes.

#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tide_api::{ResourceAmounts, TideConfig};
use tide_benches::Seq;
use tide_scheduler::{EstimateView, NodeView, PodView, choose, filter, score};

fn nodes(n: usize) -> Vec<NodeView> {
    let mut seq = Seq::new(5);
    (0..n)
        .map(|_| {
            let hp = (8_000.0 + 40_000.0 * seq.next_f64()) as u64;
            NodeView {
                allocatable: ResourceAmounts::new(64_000, 256 << 30),
                estimate: Some(EstimateView {
                    observed_at: 100,
                    reclaimable: ResourceAmounts::new(
                        64_000 - hp - 2_000,
                        (200u64 << 30) - (hp << 20),
                    ),
                    hp_reserved: ResourceAmounts::new(hp, hp << 22),
                }),
                be_requested: ResourceAmounts::new((4_000.0 * seq.next_f64()) as u64, 8 << 30),
                hp_requested: ResourceAmounts::new(56_000, 200 << 30),
            }
        })
        .collect()
}

fn filter_and_score(c: &mut Criterion) {
    let cfg = TideConfig::default();
    let all = nodes(5_000);
    let pod = PodView {
        request: ResourceAmounts::new(2_000, 4 << 30),
        high_priority: false,
    };
    c.bench_function("scheduler/filter-5000-nodes", |b| {
        b.iter(|| {
            black_box(
                all.iter()
                    .filter(|n| filter(&pod, n, &cfg, 110).is_ok())
                    .count(),
            )
        })
    });
    c.bench_function("scheduler/score-5000-nodes", |b| {
        b.iter(|| black_box(all.iter().map(|n| score(&pod, n)).sum::<i64>()))
    });
    c.bench_function("scheduler/choose-5000-nodes", |b| {
        b.iter(|| black_box(choose(&pod, all.iter().enumerate(), &cfg, 110)))
    });
}

criterion_group!(benches, filter_and_score);
criterion_main!(benches);
