//! BE job streams from real batch traces: Alibaba 2017 `batch_task`, each task instance a
//! BE pod, thinned to the load the simulated cluster is offered.

use std::path::Path;

use tide_api::ResourceAmounts;

use crate::formats;
use crate::rng::SplitMix64;
use crate::rows::{BadRows, LoadError};
use crate::sim::BeJob;

/// Alibaba 2017 normalises memory to [0, 1] of its largest machine; this is the size assumed for 1.
pub const ALIBABA_2017_MEMORY_1: f64 = 512.0 * (1u64 << 30) as f64;

/// One batch task instance, before thinning.
#[derive(Debug, Clone, Copy)]
struct Instance {
    start: u64,
    request: ResourceAmounts,
    secs: f64,
}

/// BE jobs from an Alibaba 2017 `batch_task.csv`: every instance of every terminated task is
/// a pod with the task's per-instance CPU (100 = one core) and memory, running for the task's
/// duration (at least one minute) at 80% of its CPU request. Instances are thinned at random
/// (seeded) so the offered CPU is `offered_milli` on average, and the trace's arrival pattern is
/// repeated until `duration_secs` is covered. Malformed rows go to `bad`.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn alibaba2017(
    path: &Path,
    offered_milli: f64,
    duration_secs: u64,
    seed: u64,
    bad: &mut BadRows,
) -> Result<Vec<BeJob>, LoadError> {
    let mut instances: Vec<Instance> = Vec::new();
    for item in formats::alibaba_batch_task_2017(path)? {
        let Some(t) = bad.take(item)? else { continue };
        if t.status != "Terminated"
            || t.end_time <= t.create_time
            || t.instances <= 0
            || t.cpu_per_instance <= 0.0
        {
            continue;
        }
        let request = ResourceAmounts::new(
            tide_api::f64_to_u64_saturating(t.cpu_per_instance * 10.0),
            tide_api::f64_to_u64_saturating(t.mem_per_instance * ALIBABA_2017_MEMORY_1)
                .max(64 << 20),
        );
        let one = Instance {
            start: u64::try_from(t.create_time.max(0)).unwrap_or(0),
            request,
            secs: ((t.end_time - t.create_time) as f64).max(60.0),
        };
        instances.extend(std::iter::repeat_n(
            one,
            usize::try_from(t.instances).unwrap_or(0),
        ));
    }
    if instances.is_empty() {
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason: "no terminated tasks with instances".into(),
        });
    }
    instances.sort_by_key(|i| i.start);
    let first = instances[0].start;
    let span = (instances[instances.len() - 1].start - first).max(1);
    // CPU work the trace offers per second, and the share of it to keep.
    let work: f64 = instances
        .iter()
        .map(|i| i.request.cpu.as_f64() * 0.8 * i.secs)
        .sum();
    let keep = (offered_milli * span as f64 / work).clamp(0.0, 1.0);
    let mut rng = SplitMix64::new(seed ^ 0x2017);
    let mut jobs = Vec::new();
    let mut id = 0;
    let mut offset = 0;
    while offset < duration_secs && keep > 0.0 {
        for i in &instances {
            let arrival = offset + (i.start - first);
            if arrival >= duration_secs {
                break;
            }
            if rng.uniform() >= keep {
                continue;
            }
            let demand = i.request.cpu.as_f64() * 0.8;
            jobs.push(BeJob {
                id,
                arrival,
                request: i.request,
                cpu_demand: tide_api::f64_to_u64_saturating(demand),
                memory_usage: tide_api::f64_to_u64_saturating(i.request.memory.as_f64() * 0.7),
                work: demand * i.secs,
                priority: 0,
            });
            id += 1;
        }
        offset += span;
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_become_pods_thinned_to_the_offered_load() {
        let dir = std::env::temp_dir().join(format!("tide-bejobs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("batch_task.csv");
        // Two tasks: 100 instances of 0.5 core for 600 s at t=0, 100 of 1 core for 1200 s at
        // t=3600; one failed task (ignored) and one corrupt row (counted).
        std::fs::write(
            &p,
            "task_create_time,task_end_time,job_id,task_id,number_of_instances,status,cpu,mem\n\
             0,600,1,1,100,Terminated,50,0.01\n\
             3600,4800,1,2,100,Terminated,100,0.02\n\
             10,20,2,1,5,Failed,50,0.01\n\
             oops,1,1,1,1,Terminated,1,1\n",
        )
        .unwrap();
        let mut bad = BadRows::new(false);
        // Trace work: 100·400·600 + 100·800·1200 = 120,000,000 m·s over a 3600 s span = 33,333 m.
        // Offering 16,667 m keeps about half. Over 7200 s the pattern runs twice; the second
        // copy of the t=3600 task would land at 7200, past the end: 300 instances, ~150 kept.
        let jobs = alibaba2017(&p, 16_667.0, 7200, 1, &mut bad).unwrap();
        assert_eq!(bad.count, 1);
        assert!((120..=180).contains(&jobs.len()), "{}", jobs.len());
        assert!(jobs.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        assert!(
            jobs.iter().any(|j| j.arrival >= 3600),
            "the pattern repeats"
        );
        let big = jobs.iter().find(|j| j.request.cpu.0 == 1000).unwrap();
        assert_eq!(big.work, 800.0 * 1200.0);
        assert!(big.request.memory.0 > 10 << 30);
        let mut strict = BadRows::new(true);
        assert!(alibaba2017(&p, 1.0, 60, 1, &mut strict).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
