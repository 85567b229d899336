//! Extender hot path: filter and score one pod against 5,000 nodes.

#![allow(
    clippy::unwrap_used,
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
use tide_scheduler::wire::ExtenderArgs;
use tide_scheduler::{
    ClusterSnapshot, EstimateView, NodeView, PodView, choose, extender, filter, score,
};

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

/// The whole server-side path of one request: decode the scheduler's JSON (a pod and 5,000
/// node names), decide, encode the response.
fn server_side_requests(c: &mut Criterion) {
    let cfg = TideConfig::default();
    let views = nodes(5_000);
    let snapshot = ClusterSnapshot {
        nodes: views
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("node-{i:05}"), v))
            .collect(),
        generation: 0,
    };
    let pending = tide_scheduler::snapshot::Pending::new();
    let mut names: Vec<String> = snapshot.nodes.keys().cloned().collect();
    names.sort();
    let body = serde_json::to_vec(&serde_json::json!({
        "Pod": {
            "metadata": {"name": "job-1", "namespace": "batch", "uid": "0d7f2c1e-5a7b-4d0c-9b8e-2f1a3c4d5e6f", "labels": {"app": "etl"}},
            "spec": {"priority": 0, "containers": [{"name": "w", "image": "busybox",
                "resources": {"requests": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"},
                              "limits": {"tide.dev/batch-cpu": "2000", "tide.dev/batch-memory": "4Gi"}}}]},
            "status": {"phase": "Pending"}
        },
        "Nodes": null,
        "NodeNames": names,
    }))
    .unwrap();
    c.bench_function(
        "scheduler/http-filter-5000-names-decode-decide-encode",
        |b| {
            b.iter(|| {
                let args: ExtenderArgs = serde_json::from_slice(&body).unwrap();
                let out = extender::filter(&args, &snapshot, &pending, &cfg, 110).unwrap();
                black_box(serde_json::to_vec(&out.result).unwrap())
            })
        },
    );
    c.bench_function(
        "scheduler/http-prioritize-5000-names-decode-decide-encode",
        |b| {
            b.iter(|| {
                let args: ExtenderArgs = serde_json::from_slice(&body).unwrap();
                let out = extender::prioritize(&args, &snapshot, &pending, &cfg).unwrap();
                black_box(serde_json::to_vec(&out).unwrap())
            })
        },
    );
}

criterion_group!(benches, filter_and_score, server_side_requests);
criterion_main!(benches);
