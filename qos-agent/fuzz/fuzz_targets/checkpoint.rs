//! Arbitrary bytes as the agent's checkpoint file: raw (first byte 0), or a valid checkpoint
//! with bytes overwritten where the input says (any other first byte), so the decoder sees
//! both garbage and nearly-right JSON. Restoring gives the state or an error and leaves the
//! state untouched; a restored state then takes observations, estimates and checkpoints
//! again, as the agent's next ticks would. Never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;
use tide_agent::agent::{Agent, NodeSetup, Suppression};
use tide_agent::cgroup::{Driver, Hierarchy, Layout};
use tide_agent::topology::{Topology, write_fake_sysfs};
use tide_api::{ResourceAmounts, TideConfig};
use tide_estimator::{NodeObservation, PodSample};

fn scratch() -> PathBuf {
    let base = scratch::base();
    let dir = base.join(format!("tide-fuzz-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

fn setup() -> NodeSetup {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    let topology = TOPOLOGY.get_or_init(|| {
        let sys = scratch().join("sys-cpu");
        write_fake_sysfs(&sys, 4, 2, 1).expect("fake sysfs");
        Topology::read(&sys).expect("fake topology")
    });
    NodeSetup {
        node_name: "n1".into(),
        layout: Layout {
            hierarchy: Hierarchy::V2(PathBuf::from("/nonexistent")),
            driver: Driver::Systemd,
            root: String::new(),
        },
        proc_root: PathBuf::from("/nonexistent"),
        topology: topology.clone(),
        system_cpus: 2,
        suppression: Suppression::CfsQuota,
        allocatable: ResourceAmounts::new(8_000, 32 << 30),
    }
}

fn observe(agent: &mut Agent, from: u64, n: u64) {
    for i in 0..n {
        let t = from.saturating_add(i * 60);
        let pods = [PodSample {
            id: 1,
            workload: None,
            usage: 1_000.0 + (i % 7) as f64 * 100.0,
            request: 4_000.0,
        }];
        let obs = NodeObservation {
            time: t,
            capacity: 8_000.0,
            pods: &pods,
            system: 200.0,
        };
        agent.cpu.observe(&obs);
        agent.memory.observe(&obs);
        let _ = agent
            .cpu
            .estimate(&obs, t, &agent.config.estimator, 100.0, 0.0);
        let _ = agent
            .memory
            .estimate(&obs, t, &agent.config.estimator, 100.0, 0.0);
    }
}

/// A checkpoint of two hours of history.
fn valid() -> &'static [u8] {
    static VALID: OnceLock<Vec<u8>> = OnceLock::new();
    VALID.get_or_init(|| {
        let mut agent = Agent::new(setup(), TideConfig::default());
        observe(&mut agent, 1_700_000_000, 120);
        let path = scratch().join("valid.json");
        agent.checkpoint(&path).expect("checkpoint");
        std::fs::read(&path).expect("read")
    })
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        None => return,
        Some((0, rest)) => rest.to_vec(),
        Some((_, edits)) => {
            // (offset: u16 BE, byte) triples overwrite the valid checkpoint.
            let mut b = valid().to_vec();
            for e in edits.chunks_exact(3) {
                let at = usize::from(u16::from_be_bytes([e[0], e[1]])) % b.len();
                b[at] = e[2];
            }
            b
        }
    };
    let path = scratch().join("checkpoint.json");
    std::fs::write(&path, &bytes).expect("write");
    let mut agent = Agent::new(setup(), TideConfig::default());
    let before = (agent.cpu.clone(), agent.memory.clone());
    match agent.restore(&path) {
        Ok(true) => {
            observe(&mut agent, 1_700_010_000, 5);
            agent.checkpoint(&path).expect("checkpoint again");
            let mut again = Agent::new(setup(), TideConfig::default());
            assert_eq!(
                again.restore(&path),
                Ok(true),
                "a written checkpoint reads back"
            );
        }
        Ok(false) => unreachable!("the file exists"),
        Err(_) => assert_eq!((agent.cpu.clone(), agent.memory.clone()), before),
    }
});
