//! kube-scheduler's scan of every node for a BE pod, made cheap for the replay.
//!
//! The shipped scheduler configuration scores every feasible node (`percentageOfNodesToScore:
//! 100`), so the extender's answer for a BE pod is the feasible node with the highest
//! [`score`](tide_scheduler::score), ties to the lowest index
//! ([`choose_by_room`](tide_scheduler::choose_by_room)). Scanning every node for every pod makes
//! a replay quadratic in cluster size: a cluster twice as large places twice as many pods per
//! step, each over twice as many nodes. [`BePlacer`] gives the same answer from a tree over the
//! nodes that keeps, per subtree, the largest room and the lowest predicted levels, and skips
//! subtrees that can hold neither the pod nor a better answer.
//! `placer_agrees_with_the_full_scan` checks the answers are identical.

use tide_api::{Resource, ResourceAmounts};
use tide_scheduler::{MAX_SCORE, NodeView};

/// What the nodes below one tree slot can offer, summed up so a whole subtree can be skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    /// Whether any node below has room at all.
    open: bool,
    /// The largest room below, per resource (CPU millicores, memory bytes).
    room: [u64; 2],
    /// The smallest HP reservation + BE requests below, per resource.
    base: [u64; 2],
    /// The largest allocatable below, per resource.
    alloc: [u64; 2],
}

impl Summary {
    const CLOSED: Summary = Summary {
        open: false,
        room: [0; 2],
        base: [u64::MAX; 2],
        alloc: [0; 2],
    };

    fn join(a: &Summary, b: &Summary) -> Summary {
        Summary {
            open: a.open || b.open,
            room: [a.room[0].max(b.room[0]), a.room[1].max(b.room[1])],
            base: [a.base[0].min(b.base[0]), a.base[1].min(b.base[1])],
            alloc: [a.alloc[0].max(b.alloc[0]), a.alloc[1].max(b.alloc[1])],
        }
    }

    fn holds(&self, request: ResourceAmounts) -> bool {
        self.open && request.cpu.0 <= self.room[0] && request.memory.0 <= self.room[1]
    }

    /// A score the pod cannot beat on any node below: its predicted level on a node is at
    /// least (smallest base + request) / largest allocatable, per resource, and the score
    /// falls with the higher level ([`score`](tide_scheduler::score)). A little slack keeps
    /// floating-point rounding from ever putting a real score above it.
    #[allow(clippy::cast_precision_loss)]
    fn score_bound(&self, request: ResourceAmounts) -> i64 {
        let level = |r: usize, req: u64| {
            if self.alloc[r] == 0 {
                f64::INFINITY
            } else {
                self.base[r].saturating_add(req) as f64 / self.alloc[r] as f64
            }
        };
        let high = level(0, request.cpu.0).max(level(1, request.memory.0));
        if !high.is_finite() {
            return 0;
        }
        #[allow(clippy::cast_possible_truncation)]
        let bound = ((1.0 - high + 1e-6).clamp(0.0, 1.0) * MAX_SCORE as f64).round() as i64;
        bound.clamp(0, MAX_SCORE)
    }
}

/// The nodes of a cluster as BE placement sees them: each node's room
/// ([`be_room`](tide_scheduler::be_room)) and predicted levels, in a tree over node indices.
#[derive(Debug, Clone)]
pub struct BePlacer {
    /// Leaves: a power of two at least the node count.
    leaves: usize,
    /// Per tree slot (root 1, children 2i and 2i + 1): what the nodes below offer.
    slots: Vec<Summary>,
}

impl BePlacer {
    /// A placer for `nodes` nodes, none with room yet.
    pub fn new(nodes: usize) -> Self {
        let leaves = nodes.max(1).next_power_of_two();
        Self {
            leaves,
            slots: vec![Summary::CLOSED; 2 * leaves],
        }
    }

    /// Sets node `i`'s room and view without updating the tree above it: call
    /// [`BePlacer::rebuild`] after setting every node (one pass, instead of one per node).
    pub fn set_leaf(&mut self, i: usize, room: Option<ResourceAmounts>, node: &NodeView) {
        self.slots[self.leaves + i] = match (room, node.estimate) {
            (Some(room), Some(est)) => {
                let base = |r: Resource| {
                    est.hp_reserved
                        .get(r)
                        .saturating_add(node.be_requested.get(r))
                };
                Summary {
                    open: true,
                    room: [room.cpu.0, room.memory.0],
                    base: [base(Resource::Cpu), base(Resource::Memory)],
                    alloc: [node.allocatable.cpu.0, node.allocatable.memory.0],
                }
            }
            _ => Summary::CLOSED,
        };
    }

    /// Recomputes every subtree from the leaves.
    pub fn rebuild(&mut self) {
        for s in (1..self.leaves).rev() {
            self.pull(s);
        }
    }

    /// Sets node `i` and updates the subtrees above it.
    pub fn update(&mut self, i: usize, room: Option<ResourceAmounts>, node: &NodeView) {
        self.set_leaf(i, room, node);
        let mut s = (self.leaves + i) / 2;
        while s >= 1 {
            self.pull(s);
            s /= 2;
        }
    }

    fn pull(&mut self, s: usize) {
        self.slots[s] = Summary::join(&self.slots[2 * s], &self.slots[2 * s + 1]);
    }

    /// The node a BE pod requesting `request` goes to: among nodes whose room holds it, the
    /// highest `score_of(node)`, ties to the lowest index — `choose_by_room`'s answer.
    /// `score_of` must be the extender's score for this pod.
    pub fn choose(
        &self,
        request: ResourceAmounts,
        mut score_of: impl FnMut(usize) -> i64,
    ) -> Option<usize> {
        let mut best: Option<(usize, i64)> = None;
        // Depth first in index order: a node found later wins only with a strictly higher
        // score, so a subtree whose bound is not above the best so far is skipped.
        let mut stack = vec![1usize];
        while let Some(s) = stack.pop() {
            let slot = &self.slots[s];
            if !slot.holds(request) {
                continue;
            }
            if let Some((_, b)) = best
                && (b >= MAX_SCORE || slot.score_bound(request) <= b)
            {
                continue;
            }
            if s >= self.leaves {
                let i = s - self.leaves;
                let score = score_of(i);
                if best.is_none_or(|(_, b)| score > b) {
                    best = Some((i, score));
                }
            } else {
                // Right pushed first so the left (lower indices) is visited first.
                stack.push(2 * s + 1);
                stack.push(2 * s);
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;
    use tide_api::TideConfig;
    use tide_scheduler::{EstimateView, PodView, be_room, choose_by_room, score};

    fn node(rng: &mut SplitMix64) -> NodeView {
        let alloc = ResourceAmounts::new(32_000, 128 << 30);
        let frac = |rng: &mut SplitMix64, hi: f64, of: u64| (rng.range(0.0, hi) * of as f64) as u64;
        NodeView {
            allocatable: alloc,
            // Now and then a node without an estimate or with a stale one.
            estimate: (rng.uniform() > 0.05).then(|| EstimateView {
                observed_at: if rng.uniform() > 0.05 { 1_000 } else { 0 },
                reclaimable: ResourceAmounts::new(
                    frac(rng, 0.7, alloc.cpu.0),
                    frac(rng, 0.7, alloc.memory.0),
                ),
                hp_reserved: ResourceAmounts::new(
                    frac(rng, 0.8, alloc.cpu.0),
                    frac(rng, 0.8, alloc.memory.0),
                ),
            }),
            be_requested: ResourceAmounts::new(
                frac(rng, 0.3, alloc.cpu.0),
                frac(rng, 0.3, alloc.memory.0),
            ),
            hp_requested: ResourceAmounts::new(24_000, 96 << 30),
        }
    }

    #[test]
    fn placer_agrees_with_the_full_scan() {
        let cfg = TideConfig::default();
        let now = 1_010;
        let mut placed = 0;
        for (seed, n) in [(1u64, 1usize), (2, 7), (3, 64), (4, 300), (5, 1000)] {
            let mut rng = SplitMix64::new(seed);
            let mut nodes: Vec<NodeView> = (0..n).map(|_| node(&mut rng)).collect();
            let mut placer = BePlacer::new(n);
            let mut rooms: Vec<_> = nodes.iter().map(|v| be_room(v, &cfg, now)).collect();
            for (i, v) in nodes.iter().enumerate() {
                placer.set_leaf(i, rooms[i], v);
            }
            placer.rebuild();
            // Place pods one after another, as a replay step does, until most miss.
            let mut misses = 0;
            while misses < 50 {
                let cores = [250u64, 500, 1_000, 2_000, 4_000][(rng.below(5)) as usize];
                let pod = PodView {
                    request: ResourceAmounts::new(
                        cores,
                        (cores * (rng.range(1.0, 6.0) as u64)) << 20,
                    ),
                    high_priority: false,
                };
                let want = choose_by_room(
                    &pod,
                    nodes
                        .iter()
                        .zip(&rooms)
                        .enumerate()
                        .map(|(i, (v, &r))| (i, v, r)),
                );
                let got = placer.choose(pod.request, |i| score(&pod, &nodes[i]));
                assert_eq!(got, want, "seed {seed}, {n} nodes, pod {pod:?}");
                match got {
                    Some(i) => {
                        placed += 1;
                        nodes[i].be_requested = nodes[i].be_requested.saturating_add(pod.request);
                        rooms[i] = be_room(&nodes[i], &cfg, now);
                        placer.update(i, rooms[i], &nodes[i]);
                    }
                    None => misses += 1,
                }
            }
        }
        assert!(placed > 500, "{placed} pods placed");
    }

    #[test]
    fn the_bound_is_never_below_a_real_score() {
        let mut rng = SplitMix64::new(9);
        let mut tight = 0;
        for _ in 0..20_000 {
            let v = node(&mut rng);
            let pod = PodView {
                request: ResourceAmounts::new(rng.below(8_000), rng.below(32 << 30)),
                high_priority: false,
            };
            let mut one = BePlacer::new(1);
            // Open whatever the room, to test the bound alone.
            one.set_leaf(0, Some(ResourceAmounts::new(u64::MAX, u64::MAX)), &v);
            if v.estimate.is_none() {
                assert_eq!(one.slots[1], Summary::CLOSED);
                continue;
            }
            let (real, bound) = (score(&pod, &v), one.slots[1].score_bound(pod.request));
            assert!(real <= bound, "{v:?} {pod:?}: {real} > {bound}");
            tight += usize::from(real == bound);
        }
        // On one node the bound is the score itself (but for the slack).
        assert!(tight > 18_000, "{tight}");
    }
}
