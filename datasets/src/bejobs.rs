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

/// One batch task, before thinning: `count` instances alike.
#[derive(Debug, Clone, Copy)]
struct Task {
    start: u64,
    request: ResourceAmounts,
    secs: f64,
    count: u64,
}

/// Most task-by-repeat steps the thinning walks: a trace whose arrivals span seconds,
/// repeated over a month, would otherwise take hours.
const MAX_WALK: u64 = 200_000_000;
/// Most BE jobs drawn: the replay holds each one.
const MAX_JOBS: usize = 20_000_000;

/// BE jobs from an Alibaba 2017 `batch_task.csv`: every instance of every terminated task is
/// a pod with the task's per-instance CPU (100 = one core) and memory, running for the task's
/// duration (at least one minute) at 80% of its CPU request. Instances are thinned at random
/// (seeded) so the offered CPU is `offered_milli` on average, and the trace's arrival pattern is
/// repeated until `duration_secs` is covered. Malformed rows go to `bad`; a corrupt file
/// gives no tasks, a truncated one the tasks before the cut (both recorded in `bad`). Work
/// and memory are bounded by the tasks and the jobs drawn, not by the instance counts.
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
    let mut tasks: Vec<Task> = Vec::new();
    let mut file_bad = BadRows::new(bad.strict);
    let mut rows = formats::alibaba_batch_task_2017(path)?;
    for item in rows.by_ref() {
        let Some(t) = file_bad.take(item)? else {
            continue;
        };
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
        tasks.push(Task {
            start: u64::try_from(t.create_time.max(0)).unwrap_or(0),
            request,
            secs: ((t.end_time - t.create_time) as f64).max(60.0),
            count: u64::try_from(t.instances).unwrap_or(0),
        });
    }
    if !file_bad.finish(&rows)? {
        file_bad.drop_rows();
        tasks.clear();
    }
    bad.merge(file_bad);
    if tasks.is_empty() {
        let mut reason = String::from("no terminated tasks with instances");
        if !bad.is_clean() {
            reason.push_str(&format!(" ({})", bad.summary()));
        }
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason,
        });
    }
    tasks.sort_by_key(|t| t.start);
    let first = tasks[0].start;
    let span = (tasks[tasks.len() - 1].start - first).max(1);
    let repeats = duration_secs.div_ceil(span);
    if repeats.saturating_mul(tasks.len() as u64) > MAX_WALK {
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "the tasks' arrivals span {span} s: repeating {} tasks over {duration_secs} s \
                 takes {repeats} rounds, more than {MAX_WALK} task draws",
                tasks.len()
            ),
        });
    }
    // CPU work the trace offers per second, and the share of it to keep.
    let work: f64 = tasks
        .iter()
        .map(|t| t.request.cpu.as_f64() * 0.8 * t.secs * t.count as f64)
        .sum();
    let keep = (offered_milli * span as f64 / work).clamp(0.0, 1.0);
    if keep.is_nan() || keep <= 0.0 {
        return Ok(Vec::new());
    }
    let instances: f64 = tasks.iter().map(|t| t.count as f64).sum();
    let expected = keep * instances * repeats as f64;
    if expected > MAX_JOBS as f64 {
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "about {expected:.0} BE jobs at the offered load over {duration_secs} s, more \
                 than {MAX_JOBS}"
            ),
        });
    }
    let mut rng = SplitMix64::new(seed ^ 0x2017);
    // Instances passed over before the next one kept: geometric with parameter `keep`, so
    // the walk costs one draw per job kept rather than one per instance.
    let mut gap = || -> u64 {
        if keep >= 1.0 {
            return 0;
        }
        let u = rng.uniform();
        let g = ((1.0 - u).ln() / (1.0 - keep).ln()).floor();
        if g.is_finite() && g >= 0.0 {
            tide_api::f64_to_u64_saturating(g)
        } else {
            u64::MAX
        }
    };
    let mut jobs = Vec::new();
    let mut skip = gap();
    let mut offset = 0;
    'rounds: while offset < duration_secs {
        for t in &tasks {
            let arrival = offset + (t.start - first);
            if arrival >= duration_secs {
                break 'rounds;
            }
            let mut left = t.count;
            while skip < left {
                left -= skip + 1;
                skip = gap();
                if jobs.len() >= MAX_JOBS {
                    return Err(LoadError::Invalid {
                        path: path.to_owned(),
                        reason: format!(
                            "more than {MAX_JOBS} BE jobs at the offered load over \
                             {duration_secs} s"
                        ),
                    });
                }
                let demand = t.request.cpu.as_f64() * 0.8;
                jobs.push(BeJob {
                    id: jobs.len() as u64,
                    arrival,
                    request: t.request,
                    cpu_demand: tide_api::f64_to_u64_saturating(demand),
                    memory_usage: tide_api::f64_to_u64_saturating(t.request.memory.as_f64() * 0.7),
                    work: demand * t.secs,
                    priority: 0,
                });
            }
            skip -= left;
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

    #[test]
    fn huge_instance_counts_and_tiny_spans_stay_bounded() {
        let dir = std::env::temp_dir().join(format!("tide-bejobs-huge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("batch_task.csv");
        // A flipped digit: 10^12 instances is a bad row, not a 40 TB vector.
        std::fs::write(
            &p,
            "0,600,1,1,1000000000000,Terminated,50,0.01\n0,600,1,2,1000000,Terminated,50,0.01\n1,600,1,3,1000000,Terminated,50,0.01\n",
        )
        .unwrap();
        let mut bad = BadRows::new(false);
        // Arrivals one second apart, repeated over 30 days at a load that keeps every one:
        // refused by the job bound, not run for hours.
        let err = alibaba2017(&p, 1e12, 30 * 86_400, 1, &mut bad).unwrap_err();
        assert_eq!(bad.count, 1);
        assert!(err.to_string().contains("BE jobs"), "{err}");
        // At a modest load the draws cost one per job kept.
        let jobs = alibaba2017(&p, 10_000.0, 86_400, 1, &mut bad).unwrap();
        assert!(!jobs.is_empty() && jobs.len() < 1_000_000, "{}", jobs.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
