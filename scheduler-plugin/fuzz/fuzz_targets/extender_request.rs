//! Arbitrary bytes as an extender request: decoding, filter, prioritize and encoding must
//! never panic, whatever the scheduler (or anything else) sends. The request's pod also goes
//! through the watch index (apply, bind assumption, victims, delete), as a watched pod would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tide_api::{ResourceAmounts, TideConfig};
use tide_scheduler::extender::{self, NodeMap};
use tide_scheduler::snapshot::ClusterIndex;
use tide_scheduler::wire::ExtenderArgs;
use tide_scheduler::{ClusterSnapshot, EstimateView, NodeView};

fn snapshot() -> ClusterSnapshot {
    let mut nodes = NodeMap::default();
    for (i, reclaim) in [0u64, 1_000, 16_000, u64::MAX].into_iter().enumerate() {
        nodes.insert(
            format!("node-{i}"),
            NodeView {
                allocatable: ResourceAmounts::new(32_000, 128 << 30),
                estimate: (i != 0).then_some(EstimateView {
                    observed_at: 1_000 * i as u64,
                    reclaimable: ResourceAmounts::new(reclaim, reclaim.saturating_mul(1 << 20)),
                    hp_reserved: ResourceAmounts::new(8_000, u64::MAX),
                }),
                be_requested: ResourceAmounts::new(reclaim / 2, 0),
                hp_requested: ResourceAmounts::new(u64::MAX, 0),
            },
        );
    }
    ClusterSnapshot { nodes, generation: 0 }
}

fuzz_target!(|data: &[u8]| {
    let Ok(args) = serde_json::from_slice::<ExtenderArgs>(data) else {
        return;
    };
    let snap = snapshot();
    let cfg = TideConfig::default();
    let mut index = ClusterIndex::new(&cfg);
    index.apply_pod(&args.pod);
    if let Some(uid) = args.pod.metadata.uid.as_deref() {
        index.assume_bound(uid, "node-1");
        let _ = index.be_pods_on("node-1");
        let _ = index.snapshot();
    }
    index.delete_pod(&args.pod);
    assert_eq!(index.pod_count(), 0);
    if let Ok(out) = extender::filter(&args, &snap, &Default::default(), &cfg, 3_000) {
        let _ = serde_json::to_vec(&out.result);
    }
    if let Ok(out) = extender::prioritize(&args, &snap, &Default::default(), &cfg) {
        let _ = serde_json::to_vec(&out);
    }
});
