//! Replay speed: one policy over a small synthetic cluster (8 nodes, 12 h at 60 s steps), and
//! how it grows with nodes. The default `make replay` is 32 nodes × 3 days × 5 policies.
//! `replay/placement`: placing a stream of BE pods on 1,000 and 5,000 nodes, through the
//! replay's `BePlacer` and through the full scan it replaces (`choose`, `choose_by_room`), on
//! the same nodes in one run.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tide_api::{ResourceAmounts, TideConfig};
use tide_datasets::churn::HpChurn;
use tide_datasets::pagecache::PageCacheModel;
use tide_datasets::placer::BePlacer;
use tide_datasets::sim::{Policy, SimSetup, simulate};
use tide_datasets::{SplitMix64, SyntheticSpec, generate};
use tide_scheduler::{EstimateView, NodeView, PodView, be_room, choose, choose_by_room, score};

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

/// Nodes half full of HP reservations and BE, with varied room (seeded).
fn cluster(n: usize) -> Vec<NodeView> {
    let mut rng = SplitMix64::new(n as u64);
    let alloc = ResourceAmounts::new(32_000, 128 << 30);
    let frac = |rng: &mut SplitMix64, lo: f64, hi: f64, of: u64| {
        tide_api::f64_to_u64_saturating(rng.range(lo, hi) * of as f64)
    };
    (0..n)
        .map(|_| NodeView {
            allocatable: alloc,
            estimate: Some(EstimateView {
                observed_at: 1_000,
                reclaimable: ResourceAmounts::new(
                    frac(&mut rng, 0.3, 0.7, alloc.cpu.0),
                    frac(&mut rng, 0.3, 0.7, alloc.memory.0),
                ),
                hp_reserved: ResourceAmounts::new(
                    frac(&mut rng, 0.2, 0.5, alloc.cpu.0),
                    frac(&mut rng, 0.2, 0.5, alloc.memory.0),
                ),
            }),
            be_requested: ResourceAmounts::new(
                frac(&mut rng, 0.0, 0.3, alloc.cpu.0),
                frac(&mut rng, 0.0, 0.3, alloc.memory.0),
            ),
            hp_requested: ResourceAmounts::new(24_000, 96 << 30),
        })
        .collect()
}

/// Places 200 BE pods one after another (each bind updates its node), as a replay step does.
fn placement(c: &mut Criterion) {
    let cfg = TideConfig::default();
    let now = 1_010;
    let pods: Vec<PodView> = (0..200u64)
        .map(|i| PodView {
            request: ResourceAmounts::new(250 << (i % 4), (1u64 << 30) << (i % 3)),
            high_priority: false,
        })
        .collect();
    let bind = |nodes: &mut [NodeView], i: usize, pod: &PodView| {
        nodes[i].be_requested = nodes[i].be_requested.saturating_add(pod.request);
    };
    let mut g = c.benchmark_group("replay/placement");
    g.sample_size(10);
    for n in [1_000usize, 5_000] {
        let start = cluster(n);
        g.bench_with_input(BenchmarkId::new("placer", n), &n, |b, _| {
            b.iter(|| {
                let mut nodes = start.clone();
                let mut placer = BePlacer::new(n);
                for (i, v) in nodes.iter().enumerate() {
                    placer.set_leaf(i, be_room(v, &cfg, now), v);
                }
                placer.rebuild();
                for pod in &pods {
                    if let Some(i) = placer.choose(pod.request, |i| score(pod, &nodes[i])) {
                        bind(&mut nodes, i, pod);
                        placer.update(i, be_room(&nodes[i], &cfg, now), &nodes[i]);
                    }
                }
                black_box(nodes)
            })
        });
        g.bench_with_input(BenchmarkId::new("scan-by-room", n), &n, |b, _| {
            b.iter(|| {
                let mut nodes = start.clone();
                let mut rooms: Vec<_> = nodes.iter().map(|v| be_room(v, &cfg, now)).collect();
                for pod in &pods {
                    let candidates = nodes
                        .iter()
                        .zip(&rooms)
                        .enumerate()
                        .map(|(i, (v, &r))| (i, v, r));
                    if let Some(i) = choose_by_room(pod, candidates) {
                        bind(&mut nodes, i, pod);
                        rooms[i] = be_room(&nodes[i], &cfg, now);
                    }
                }
                black_box(nodes)
            })
        });
        g.bench_with_input(BenchmarkId::new("scan-filter", n), &n, |b, _| {
            b.iter(|| {
                let mut nodes = start.clone();
                for pod in &pods {
                    if let Some(i) = choose(pod, nodes.iter().enumerate(), &cfg, now) {
                        bind(&mut nodes, i, pod);
                    }
                }
                black_box(nodes)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, replay, placement);
criterion_main!(benches);
