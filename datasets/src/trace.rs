//! Assembling raw rows into a [`UsageTrace`]: a time × workload matrix of CPU (millicores)
//! and memory (bytes) usage on a fixed step, with each workload's request. Both the estimator
//! evaluation and the replay read this one shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use tide_api::{Resource, ResourceAmounts};
use tide_estimator::PodSample;

use crate::formats;
use crate::rng::SplitMix64;
use crate::rows::{BadRows, LoadError};

/// Whether a trace's columns are workloads (pods, VMs) or whole machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceShape {
    /// Columns are workloads with requests; nodes are formed by packing them.
    Workloads,
    /// Columns are machines; each is one node whose HP usage is the machine's usage.
    Machines,
}

/// One column of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Name in the source (file stem, machine id).
    pub name: String,
    /// Request (workloads) or capacity (machines).
    pub request: ResourceAmounts,
}

/// Usage of many workloads or machines on a common time grid.
#[derive(Debug, Clone)]
pub struct UsageTrace {
    /// Human name of the source.
    pub name: String,
    /// What the columns are.
    pub shape: TraceShape,
    /// Grid step in seconds.
    pub step_secs: u64,
    /// Time of step 0, in the source's clock (seconds).
    pub start_time: i64,
    /// Column metadata.
    pub columns: Vec<Column>,
    /// CPU usage in millicores, `[step, column]`.
    pub cpu: Array2<f32>,
    /// Memory usage in bytes, `[step, column]`.
    pub memory: Array2<f32>,
    /// Malformed rows met while loading.
    pub bad_rows: BadRows,
    /// Number of raw rows read.
    pub rows_read: u64,
}

impl UsageTrace {
    /// Number of time steps.
    pub fn steps(&self) -> usize {
        self.cpu.nrows()
    }

    /// The usage matrix of one resource.
    pub fn usage(&self, r: Resource) -> &Array2<f32> {
        match r {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
        }
    }

    /// Replaces `pods` with the estimator's view of `members` at step `t` for resource `r`.
    #[allow(clippy::cast_precision_loss)]
    pub fn fill_pods(&self, r: Resource, t: usize, members: &[usize], pods: &mut Vec<PodSample>) {
        let m = self.usage(r);
        pods.clear();
        pods.extend(members.iter().map(|&c| PodSample {
            id: c as u64,
            workload: None,
            usage: f64::from(m[[t, c]]),
            request: self.columns[c].request.get(r) as f64,
        }));
    }
}

/// Samples of one column before gridding: (time, cpu millicores, memory bytes).
type Samples = Vec<(i64, f32, f32)>;

/// Puts irregular samples on a grid: the mean of the samples in each step, carried forward
/// over gaps (and backward before the first sample).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn grid(columns: &[Samples], start: i64, step: u64, steps: usize) -> (Array2<f32>, Array2<f32>) {
    let mut cpu = Array2::<f32>::zeros((steps, columns.len()));
    let mut mem = Array2::<f32>::zeros((steps, columns.len()));
    let step_i = i64::try_from(step).unwrap_or(i64::MAX).max(1);
    for (c, samples) in columns.iter().enumerate() {
        let mut sum = vec![(0.0f64, 0.0f64, 0u32); steps];
        for &(t, u, m) in samples {
            let i = ((t - start) / step_i) as usize;
            if i < steps {
                sum[i].0 += f64::from(u);
                sum[i].1 += f64::from(m);
                sum[i].2 += 1;
            }
        }
        let first = sum.iter().position(|s| s.2 > 0);
        let mut last = first.map_or((0.0, 0.0), |i| {
            (
                sum[i].0 / f64::from(sum[i].2),
                sum[i].1 / f64::from(sum[i].2),
            )
        });
        for (i, s) in sum.iter().enumerate() {
            if s.2 > 0 {
                last = (s.0 / f64::from(s.2), s.1 / f64::from(s.2));
            }
            cpu[[i, c]] = last.0 as f32;
            mem[[i, c]] = last.1 as f32;
        }
    }
    (cpu, mem)
}

fn numbered_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.ends_with(".csv") || name.ends_with(".csv.gz")) {
            continue;
        }
        let stem = name.split('.').next().unwrap_or("");
        files.push((stem.parse().unwrap_or(u64::MAX), path));
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::Invalid {
            path: dir.to_owned(),
            reason: "no .csv or .csv.gz files".into(),
        });
    }
    Ok(files.into_iter().map(|f| f.1).collect())
}

/// Loads a Bitbrains GWA-T-12 folder (one file per VM) on its native 300 s grid.
/// Provisioned CPU and memory stand in for the request. Files are read on two threads.
pub fn load_bitbrains(dir: &Path, strict: bool) -> Result<UsageTrace, LoadError> {
    let files = numbered_files(dir)?;
    let half = files.len().div_ceil(2);
    let read = |chunk: &[PathBuf]| -> Result<Vec<(Column, Samples, BadRows, u64)>, LoadError> {
        let mut out = Vec::new();
        for path in chunk {
            let mut bad = BadRows::new(strict);
            let mut samples = Samples::new();
            let mut request = ResourceAmounts::ZERO;
            let mut rows = 0u64;
            for item in formats::bitbrains(path)? {
                rows += 1;
                let Some(r) = bad.take(item)? else { continue };
                if r.cores <= 0.0 || r.cpu_capacity_mhz <= 0.0 {
                    // A powered-off VM: every metric is zero. It uses nothing.
                    samples.push((r.time, 0.0, 0.0));
                    continue;
                }
                let mhz_per_core = r.cpu_capacity_mhz / r.cores;
                let cpu_milli = (r.cpu_usage_mhz / mhz_per_core * 1000.0).max(0.0);
                let mem_bytes = (r.mem_usage_kb * 1024.0).max(0.0);
                // The request is the largest provisioned size the VM had.
                request = ResourceAmounts::new(
                    request
                        .cpu
                        .0
                        .max(tide_api::f64_to_u64_saturating(r.cores * 1000.0)),
                    request
                        .memory
                        .0
                        .max(tide_api::f64_to_u64_saturating(r.mem_capacity_kb * 1024.0)),
                );
                #[allow(clippy::cast_possible_truncation)]
                samples.push((r.time, cpu_milli as f32, mem_bytes as f32));
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .split('.')
                .next()
                .unwrap_or("?")
                .to_owned();
            out.push((Column { name, request }, samples, bad, rows));
        }
        Ok(out)
    };
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| read(&files[half..]));
        let a = read(&files[..half]);
        (a, h.join())
    });
    let b = b.map_err(|_| LoadError::Invalid {
        path: dir.to_owned(),
        reason: "loader thread panicked".into(),
    })?;
    let mut parts = a?;
    parts.extend(b?);
    assemble(dir, "bitbrains", TraceShape::Workloads, 300, parts, strict)
}

fn assemble(
    path: &Path,
    name: &str,
    shape: TraceShape,
    step: u64,
    parts: Vec<(Column, Samples, BadRows, u64)>,
    strict: bool,
) -> Result<UsageTrace, LoadError> {
    let mut bad_rows = BadRows::new(strict);
    let mut rows_read = 0;
    let mut columns = Vec::new();
    let mut series = Vec::new();
    for (col, samples, bad, rows) in parts {
        rows_read += rows;
        bad_rows.count += bad.count;
        for e in bad.examples {
            if bad_rows.examples.len() < BadRows::KEEP {
                bad_rows.examples.push(e);
            }
        }
        if samples.is_empty() || col.request == ResourceAmounts::ZERO {
            continue;
        }
        columns.push(col);
        series.push(samples);
    }
    let start = series
        .iter()
        .filter_map(|s| s.iter().map(|x| x.0).min())
        .min();
    let end = series
        .iter()
        .filter_map(|s| s.iter().map(|x| x.0).max())
        .max();
    let (Some(start), Some(end)) = (start, end) else {
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason: "no valid rows".into(),
        });
    };
    let step_i = i64::try_from(step).unwrap_or(1);
    let steps = usize::try_from((end - start) / step_i + 1).unwrap_or(0);
    let (cpu, memory) = grid(&series, start, step, steps);
    Ok(UsageTrace {
        name: name.into(),
        shape,
        step_secs: step,
        start_time: start,
        columns,
        cpu,
        memory,
        bad_rows,
        rows_read,
    })
}

/// Alibaba normalises memory to 0–100; this is the absolute size assumed for 100. The
/// estimator's metrics are ratios, so the choice does not change them.
pub const ALIBABA_MEMORY_100: u64 = 512 << 30;

/// Loads Alibaba 2018 `machine_meta` + `machine_usage` from a folder: one column per machine
/// on a 60 s grid. `machine_usage` may be the full file or the shared first-100k sample.
pub fn load_alibaba_machines(dir: &Path, strict: bool) -> Result<UsageTrace, LoadError> {
    let meta_path = dir.join("machine_meta.csv");
    let usage_path = [
        "machine_usage.csv",
        "machine_usage_first100k.csv",
        "machine_usage.csv.gz",
    ]
    .iter()
    .map(|n| dir.join(n))
    .find(|p| p.exists())
    .ok_or_else(|| LoadError::Invalid {
        path: dir.to_owned(),
        reason: "no machine_usage.csv".into(),
    })?;
    let mut bad = BadRows::new(strict);
    let mut capacity: BTreeMap<String, ResourceAmounts> = BTreeMap::new();
    let mut rows_read = 0;
    for item in formats::alibaba_machine_meta(&meta_path)? {
        rows_read += 1;
        let Some(m) = bad.take(item)? else { continue };
        let cpu = u64::try_from(m.cpu_num.max(0)).unwrap_or(0) * 1000;
        #[allow(clippy::cast_precision_loss)]
        let mem = tide_api::f64_to_u64_saturating(m.mem_size / 100.0 * ALIBABA_MEMORY_100 as f64);
        capacity.insert(m.machine_id, ResourceAmounts::new(cpu, mem));
    }
    let mut by_machine: BTreeMap<String, Samples> = BTreeMap::new();
    for item in formats::alibaba_machine_usage(&usage_path)? {
        rows_read += 1;
        let Some(u) = bad.take(item)? else { continue };
        let Some(cap) = capacity.get(&u.machine_id) else {
            bad.record(crate::rows::RowError {
                path: usage_path.clone(),
                line: rows_read,
                reason: format!("machine {} not in machine_meta", u.machine_id),
            })?;
            continue;
        };
        #[allow(clippy::cast_possible_truncation)]
        by_machine.entry(u.machine_id).or_default().push((
            u.time,
            (u.cpu_util_percent / 100.0 * cap.cpu.as_f64()) as f32,
            (u.mem_util_percent / 100.0 * cap.memory.as_f64()) as f32,
        ));
    }
    let parts = by_machine
        .into_iter()
        .map(|(name, samples)| {
            let request = capacity[&name];
            (Column { name, request }, samples, BadRows::default(), 0)
        })
        .collect();
    let mut trace = assemble(
        dir,
        "alibaba-2018-machines",
        TraceShape::Machines,
        60,
        parts,
        strict,
    )?;
    trace.bad_rows = bad;
    trace.rows_read = rows_read;
    Ok(trace)
}

/// Loads the Google-derived day series (`GCD_VMs.tar.gz` or a folder of them): each series is
/// a workload whose request is one core and 1 GiB, usage the published percentages of it.
pub fn load_google(path: &Path, strict: bool) -> Result<UsageTrace, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut parts = Vec::new();
    let mut push = |name: String,
                    reader: Box<dyn std::io::BufRead + Send>,
                    bad: &mut BadRows|
     -> Result<u64, LoadError> {
        let mut samples = Samples::new();
        let mut rows = 0u64;
        for item in formats::google_series(reader, Path::new(&name)) {
            rows += 1;
            let Some(s) = bad.take(item)? else { continue };
            let t = i64::try_from(samples.len()).unwrap_or(0) * 300;
            #[allow(clippy::cast_possible_truncation)]
            samples.push((
                t,
                (s.cpu_percent * 10.0) as f32,
                (s.mem_percent / 100.0 * (1u64 << 30) as f64) as f32,
            ));
        }
        parts.push((
            Column {
                name,
                request: ResourceAmounts::new(1000, 1 << 30),
            },
            samples,
            BadRows::default(),
            rows,
        ));
        Ok(rows)
    };
    let mut bad = BadRows::new(strict);
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_owned();
            push(name, crate::rows::open_text(&p)?, &mut bad)?;
        }
    } else {
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(path).map_err(io)?,
        ));
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(io)?
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_owned();
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut text).map_err(io)?;
            push(name, Box::new(std::io::Cursor::new(text)), &mut bad)?;
        }
    }
    let mut trace = assemble(
        path,
        "google-2011-derived",
        TraceShape::Workloads,
        300,
        parts,
        strict,
    )?;
    trace.bad_rows = bad;
    Ok(trace)
}

/// Packs workloads into nodes of `capacity`: seeded shuffle, then first fit by request on
/// both resources. A workload larger than a node gets a node of its own. Machine traces are
/// returned one column per node. The result lists column indices per node.
pub fn pack_nodes(trace: &UsageTrace, capacity: ResourceAmounts, seed: u64) -> Vec<Vec<usize>> {
    if trace.shape == TraceShape::Machines {
        return (0..trace.columns.len()).map(|c| vec![c]).collect();
    }
    let mut order: Vec<usize> = (0..trace.columns.len()).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut nodes: Vec<(ResourceAmounts, Vec<usize>)> = Vec::new();
    for c in order {
        let req = trace.columns[c].request;
        let slot = nodes
            .iter_mut()
            .find(|(used, _)| used.saturating_add(req).fits_in(&capacity));
        match slot {
            Some((used, members)) => {
                *used = used.saturating_add(req);
                members.push(c);
            }
            None => nodes.push((req, vec![c])),
        }
    }
    nodes.into_iter().map(|n| n.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_means_and_carries_forward() {
        let cols = vec![
            vec![(0, 10.0, 1.0), (100, 20.0, 3.0), (700, 50.0, 5.0)],
            vec![(400, 7.0, 7.0)],
        ];
        let (cpu, mem) = grid(&cols, 0, 300, 3);
        assert_eq!(cpu.column(0).to_vec(), vec![15.0, 15.0, 50.0]);
        assert_eq!(mem.column(0).to_vec(), vec![2.0, 2.0, 5.0]);
        // Before its first sample a column takes that sample's value.
        assert_eq!(cpu.column(1).to_vec(), vec![7.0, 7.0, 7.0]);
    }

    #[test]
    fn packing_is_seeded_first_fit() {
        let mut trace = UsageTrace {
            name: "t".into(),
            shape: TraceShape::Workloads,
            step_secs: 300,
            start_time: 0,
            columns: (0..10)
                .map(|i| Column {
                    name: i.to_string(),
                    request: ResourceAmounts::new(3000, 1 << 30),
                })
                .collect(),
            cpu: Array2::zeros((1, 10)),
            memory: Array2::zeros((1, 10)),
            bad_rows: BadRows::default(),
            rows_read: 0,
        };
        let cap = ResourceAmounts::new(8000, 64 << 30);
        let a = pack_nodes(&trace, cap, 1);
        assert_eq!(a, pack_nodes(&trace, cap, 1), "deterministic");
        assert_eq!(a.len(), 5, "two 3-core workloads per 8-core node");
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(a, pack_nodes(&trace, cap, 2), "another seed, another order");
        trace.shape = TraceShape::Machines;
        assert_eq!(pack_nodes(&trace, cap, 1).len(), 10);
    }
}
