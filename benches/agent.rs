//! Agent hot path: one planning tick on a node with 100 BE pods under memory pressure.

#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tide_agent::{BePod, NodeSnapshot, plan};
use tide_api::{Bytes, ClassifyRules, PodFacts, ResourceAmounts, TideConfig, classify};

fn snapshot(pods: usize) -> NodeSnapshot {
    let rules = ClassifyRules::default();
    let be_pods = (0..pods)
        .map(|i| {
            let mut f = PodFacts::default();
            f.labels.insert("tide.dev/qos".into(), "BE".into());
            f.priority = Some((i % 3) as i32);
            BePod {
                uid: format!("pod-{i:04}"),
                class: classify(&f, &rules),
                request: ResourceAmounts::new(500, 1 << 30),
                usage: ResourceAmounts::new(400, (1 << 30) + (((i as u64 * 7919) % 512) << 20)),
            }
        })
        .collect();
    NodeSnapshot {
        now: 1_000,
        allocatable: ResourceAmounts::new(64_000, 256 << 30),
        hp_usage: ResourceAmounts::new(30_000, 150 << 30),
        system_usage: ResourceAmounts::new(1_000, 4 << 30),
        be_pods,
        cold_memory: Bytes(2 << 30),
        last_eviction: None,
        evicting: false,
        api_reachable: true,
    }
}

fn planning(c: &mut Criterion) {
    let cfg = TideConfig::default();
    let s = snapshot(100);
    c.bench_function("agent/plan-100-be-pods", |b| {
        b.iter(|| black_box(plan(&s, &cfg)))
    });
}

criterion_group!(benches, planning);
criterion_main!(benches);
