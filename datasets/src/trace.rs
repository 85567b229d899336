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

/// One raw sample of a column before gridding.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Time in the source's clock, seconds.
    time: i64,
    /// CPU, millicores.
    cpu: f32,
    /// Memory, bytes.
    mem: f32,
    /// The source line, for messages.
    line: u64,
}

/// Samples of one column before gridding.
type Samples = Vec<Sample>;

/// A column's samples while it is read, with the bound on how many its time span justifies.
#[derive(Debug, Default)]
struct ColumnSamples {
    samples: Samples,
    min: i64,
    max: i64,
}

/// How many samples one grid step may hold before a column counts as runaway (a looping or
/// duplicated file): real traces have one or two.
const SAMPLES_PER_STEP: usize = 16;
/// Samples a column may hold whatever its span.
const SAMPLES_FREE: usize = 1 << 16;

impl ColumnSamples {
    /// Adds a sample; an error when the column holds far more samples than its time span
    /// has steps, so memory stays bounded by what the input's timestamps justify.
    fn push(&mut self, s: Sample, step: u64, path: &Path) -> Result<(), LoadError> {
        if self.samples.is_empty() {
            (self.min, self.max) = (s.time, s.time);
        }
        self.min = self.min.min(s.time);
        self.max = self.max.max(s.time);
        self.samples.push(s);
        let n = self.samples.len();
        if n.is_multiple_of(SAMPLES_FREE) {
            let span_steps = steps_between(self.min, self.max, step);
            if n > span_steps
                .saturating_mul(SAMPLES_PER_STEP)
                .saturating_add(SAMPLES_FREE)
            {
                return Err(LoadError::Invalid {
                    path: path.to_owned(),
                    reason: format!(
                        "{n} rows for one column within {span_steps} steps of {step} s \
                         (up to line {}): more than {SAMPLES_PER_STEP} per step, a duplicated \
                         or looping file?",
                        s.line
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Grid steps from `start` to `end` inclusive (saturating; 1 when `end <= start`).
fn steps_between(start: i64, end: i64, step: u64) -> usize {
    let span = u64::try_from(i128::from(end) - i128::from(start)).unwrap_or(0);
    usize::try_from(span / step.max(1))
        .unwrap_or(usize::MAX)
        .saturating_add(1)
}

/// Drops the samples of one column whose time is out of line with the rest: further from
/// the column's median time than four times the span its samples fill at one per `step`
/// (at least a week). A flipped digit can pass the range check (a year within the century);
/// it must not size the whole grid. Each one dropped is a bad row.
fn drop_outliers(
    samples: &mut Samples,
    step: u64,
    name: &str,
    path: &Path,
    bad: &mut BadRows,
) -> Result<(), LoadError> {
    if samples.len() < 3 {
        return Ok(());
    }
    let mut times: Vec<i64> = samples.iter().map(|s| s.time).collect();
    let mid = times.len() / 2;
    let median = *times.select_nth_unstable(mid).1;
    let reach = u64::try_from(samples.len())
        .unwrap_or(u64::MAX)
        .saturating_mul(step)
        .saturating_mul(4)
        .max(7 * 86_400);
    let n = samples.len();
    let mut first_err = Ok(());
    samples.retain(|s| {
        if (i128::from(s.time) - i128::from(median)).unsigned_abs() <= u128::from(reach) {
            return true;
        }
        if first_err.is_ok() {
            first_err = bad.record(crate::rows::RowError {
                path: path.to_owned(),
                line: s.line,
                reason: format!(
                    "timestamp {} is out of line with the other {} rows of {name} \
                     (median {median}, more than {reach} s away)",
                    s.time,
                    n - 1
                ),
            });
        }
        false
    });
    first_err
}

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
    let mut sum = vec![(0.0f64, 0.0f64, 0u32); steps];
    for (c, samples) in columns.iter().enumerate() {
        sum.fill((0.0, 0.0, 0));
        for s in samples {
            let Some(i) = s
                .time
                .checked_sub(start)
                .and_then(|d| usize::try_from(d / step_i).ok())
            else {
                continue;
            };
            if i < steps {
                sum[i].0 += f64::from(s.cpu);
                sum[i].1 += f64::from(s.mem);
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

/// One column as read: its metadata, samples, bad rows and damage, and raw rows read.
type Part = (Column, Samples, BadRows, u64);

/// Reads one Bitbrains VM file into a column. A corrupt file gives no samples (its loss is
/// in the returned [`BadRows`]); a truncated one keeps the rows before the cut.
fn bitbrains_file(path: &Path, strict: bool) -> Result<Part, LoadError> {
    const STEP: u64 = 300;
    let mut bad = BadRows::new(strict);
    let mut col = ColumnSamples::default();
    let mut request = ResourceAmounts::ZERO;
    let mut rows = formats::bitbrains(path)?;
    while let Some(item) = rows.next() {
        let line = rows.line();
        let Some(r) = bad.take(item)? else { continue };
        if r.cores <= 0.0 || r.cpu_capacity_mhz <= 0.0 {
            // A powered-off VM: every metric is zero. It uses nothing.
            col.push(
                Sample {
                    time: r.time,
                    cpu: 0.0,
                    mem: 0.0,
                    line,
                },
                STEP,
                path,
            )?;
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
        col.push(
            Sample {
                time: r.time,
                cpu: cpu_milli as f32,
                mem: mem_bytes as f32,
                line,
            },
            STEP,
            path,
        )?;
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .split('.')
        .next()
        .unwrap_or("?")
        .to_owned();
    let mut samples = col.samples;
    if bad.finish(&rows)? {
        drop_outliers(&mut samples, STEP, &name, path, &mut bad)?;
    } else {
        bad.drop_rows();
        samples = Samples::new();
    }
    Ok((Column { name, request }, samples, bad, rows.rows()))
}

/// A truncated file's missing tail, estimated from where the rest of the trace ends: one row
/// per step from its last sample to the trace's last, at the bytes per row it had.
fn estimate_cuts(parts: &mut [Part], step: u64) {
    let Some(end) = parts
        .iter()
        .filter_map(|p| p.1.iter().map(|s| s.time).max())
        .max()
    else {
        return;
    };
    for (_, samples, bad, _) in parts.iter_mut() {
        let last = samples.iter().map(|s| s.time).max();
        for loss in &mut bad.losses {
            if loss.rows_lost.is_some() || loss.rows_kept == 0 {
                continue;
            }
            let Some(last) = last else { continue };
            let rows = steps_between(last, end, step).saturating_sub(1) as u64;
            loss.rows_lost = Some(rows);
            loss.bytes_lost = Some(rows.saturating_mul(loss.bytes_kept / loss.rows_kept));
            loss.estimated = true;
        }
    }
}

/// Loads a Bitbrains GWA-T-12 folder (one file per VM) on its native 300 s grid.
/// Provisioned CPU and memory stand in for the request. Files are read on two threads.
pub fn load_bitbrains(dir: &Path, strict: bool) -> Result<UsageTrace, LoadError> {
    let files = numbered_files(dir)?;
    let half = files.len().div_ceil(2);
    let read = |chunk: &[PathBuf]| -> Result<Vec<Part>, LoadError> {
        chunk.iter().map(|p| bitbrains_file(p, strict)).collect()
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
    estimate_cuts(&mut parts, 300);
    assemble(dir, "bitbrains", TraceShape::Workloads, 300, parts, strict)
}

/// Grid cells a trace may have per sample it holds: more means its timestamps are spread
/// far wider than its rows fill, and the grid would be mostly made up.
const CELLS_PER_SAMPLE: usize = 8;
/// Grid cells any trace may have.
const CELLS_FREE: usize = 1 << 22;

fn assemble(
    path: &Path,
    name: &str,
    shape: TraceShape,
    step: u64,
    parts: Vec<Part>,
    strict: bool,
) -> Result<UsageTrace, LoadError> {
    let mut bad_rows = BadRows::new(strict);
    let mut rows_read = 0;
    let mut columns = Vec::new();
    let mut series = Vec::new();
    for (col, samples, bad, rows) in parts {
        rows_read += rows;
        bad_rows.merge(bad);
        if samples.is_empty() || col.request == ResourceAmounts::ZERO {
            continue;
        }
        columns.push(col);
        series.push(samples);
    }
    let span = |s: &Samples| -> Option<(i64, i64)> {
        Some((
            s.iter().map(|x| x.time).min()?,
            s.iter().map(|x| x.time).max()?,
        ))
    };
    let spans: Vec<(i64, i64)> = series.iter().filter_map(span).collect();
    let start = spans.iter().map(|s| s.0).min();
    let end = spans.iter().map(|s| s.1).max();
    let (Some(start), Some(end)) = (start, end) else {
        let mut reason = String::from("no valid rows");
        if !bad_rows.is_clean() {
            reason.push_str(&format!(" ({})", bad_rows.summary()));
        }
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason,
        });
    };
    let steps = steps_between(start, end, step);
    let samples: usize = series.iter().map(Vec::len).sum();
    let cells = steps.saturating_mul(columns.len());
    if cells > samples.saturating_mul(CELLS_PER_SAMPLE).max(CELLS_FREE) {
        // Name the column whose middle is furthest from the middle of the others.
        let mid = |s: &(i64, i64)| i128::from(s.0) + (i128::from(s.1) - i128::from(s.0)) / 2;
        let mut mids: Vec<i128> = spans.iter().map(mid).collect();
        mids.sort_unstable();
        let centre = mids[mids.len() / 2];
        let far = (0..spans.len())
            .max_by_key(|&i| (mid(&spans[i]) - centre).unsigned_abs())
            .unwrap_or(0);
        return Err(LoadError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "the rows span {steps} steps of {step} s (times {start} to {end}) for only \
                 {samples} samples over {} columns; column {} runs from {} to {}, far from \
                 the others",
                columns.len(),
                columns[far].name,
                spans[far].0,
                spans[far].1
            ),
        });
    }
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
/// on a 60 s grid. `machine_usage` may be the full file or the shared first-100k sample. A
/// corrupt file gives no rows (each is one table: nothing of it can be trusted); a truncated
/// one keeps the rows before the cut.
pub fn load_alibaba_machines(dir: &Path, strict: bool) -> Result<UsageTrace, LoadError> {
    const STEP: u64 = 60;
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
    let mut file_bad = BadRows::new(strict);
    let mut meta = formats::alibaba_machine_meta(&meta_path)?;
    for item in meta.by_ref() {
        let Some(m) = file_bad.take(item)? else {
            continue;
        };
        let cpu = u64::try_from(m.cpu_num.max(0)).unwrap_or(0) * 1000;
        #[allow(clippy::cast_precision_loss)]
        let mem = tide_api::f64_to_u64_saturating(m.mem_size / 100.0 * ALIBABA_MEMORY_100 as f64);
        capacity.insert(m.machine_id, ResourceAmounts::new(cpu, mem));
    }
    rows_read += meta.rows();
    if !file_bad.finish(&meta)? {
        file_bad.drop_rows();
        capacity.clear();
    }
    bad.merge(std::mem::replace(&mut file_bad, BadRows::new(strict)));
    let mut by_machine: BTreeMap<String, ColumnSamples> = BTreeMap::new();
    let mut usage = formats::alibaba_machine_usage(&usage_path)?;
    while let Some(item) = usage.next() {
        let line = usage.line();
        let Some(u) = file_bad.take(item)? else {
            continue;
        };
        let Some(cap) = capacity.get(&u.machine_id) else {
            file_bad.record(crate::rows::RowError {
                path: usage_path.clone(),
                line,
                reason: format!("machine {} not in machine_meta", u.machine_id),
            })?;
            continue;
        };
        #[allow(clippy::cast_possible_truncation)]
        let sample = Sample {
            time: u.time,
            cpu: (u.cpu_util_percent / 100.0 * cap.cpu.as_f64()) as f32,
            mem: (u.mem_util_percent / 100.0 * cap.memory.as_f64()) as f32,
            line,
        };
        by_machine
            .entry(u.machine_id)
            .or_default()
            .push(sample, STEP, &usage_path)?;
    }
    rows_read += usage.rows();
    if !file_bad.finish(&usage)? {
        file_bad.drop_rows();
        by_machine.clear();
    }
    let mut parts = Vec::new();
    for (name, col) in by_machine {
        let mut samples = col.samples;
        drop_outliers(&mut samples, STEP, &name, &usage_path, &mut file_bad)?;
        let request = capacity[&name];
        parts.push((Column { name, request }, samples, BadRows::default(), 0));
    }
    bad.merge(file_bad);
    let mut trace = match assemble(
        dir,
        "alibaba-2018-machines",
        TraceShape::Machines,
        STEP,
        parts,
        strict,
    ) {
        Err(LoadError::Invalid { path, reason }) if !bad.is_clean() => {
            return Err(LoadError::Invalid {
                path,
                reason: format!("{reason} ({})", bad.summary()),
            });
        }
        other => other?,
    };
    trace.bad_rows = bad;
    trace.rows_read = rows_read;
    Ok(trace)
}

/// Largest member of a Google series archive read: the published series are a few KB.
const MAX_SERIES_BYTES: u64 = 64 << 20;

/// Loads the Google-derived day series (`GCD_VMs.tar.gz` or a folder of them): each series is
/// a workload whose request is one core and 1 GiB, usage the published percentages of it.
/// A damaged file in a folder is accounted like a Bitbrains file; a truncated archive keeps
/// the series before the cut, a corrupt one gives nothing (no series in it can be trusted).
pub fn load_google(path: &Path, strict: bool) -> Result<UsageTrace, LoadError> {
    let mut parts = Vec::new();
    let mut rows_read = 0;
    let mut bad = BadRows::new(strict);
    // One series' rows into a column; `false` when the series is corrupt and was dropped.
    let mut push = |rows: &mut crate::rows::Rows<formats::GoogleSample>,
                    bad: &mut BadRows|
     -> Result<bool, LoadError> {
        let mut file_bad = BadRows::new(strict);
        let mut samples = Samples::new();
        while let Some(item) = rows.next() {
            let line = rows.line();
            let Some(s) = file_bad.take(item)? else {
                continue;
            };
            let t = i64::try_from(samples.len()).unwrap_or(i64::MAX) * 300;
            #[allow(clippy::cast_possible_truncation)]
            samples.push(Sample {
                time: t,
                cpu: (s.cpu_percent * 10.0) as f32,
                mem: (s.mem_percent / 100.0 * (1u64 << 30) as f64) as f32,
                line,
            });
        }
        rows_read += rows.rows();
        let kept = file_bad.finish(rows)?;
        if !kept {
            file_bad.drop_rows();
            samples.clear();
        }
        bad.merge(file_bad);
        let name = rows
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        parts.push((
            Column {
                name,
                request: ResourceAmounts::new(1000, 1 << 30),
            },
            samples,
            BadRows::default(),
            0,
        ));
        Ok(kept)
    };
    if path.is_dir() {
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for p in entries {
            push(&mut formats::google_file(&p)?, &mut bad)?;
        }
    } else {
        let src = crate::rows::Source::open(path)?;
        let offset = src.offset_handle();
        let (compressed, file_len) = (src.compressed, src.file_len);
        let mut archive = tar::Archive::new(src.reader);
        let mut series = 0u64;
        // An error reading the archive itself: the series before it are kept unless it is
        // corrupt, in which case none of them can be trusted.
        let mut damage: Option<std::io::Error> = None;
        match archive.entries() {
            Err(e) => damage = Some(e),
            Ok(entries) => {
                for entry in entries {
                    let mut entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            damage = Some(e);
                            break;
                        }
                    };
                    if !entry.header().entry_type().is_file() {
                        continue;
                    }
                    let name = match entry.path() {
                        Ok(p) => p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("?")
                            .to_owned(),
                        Err(e) => {
                            damage = Some(e);
                            break;
                        }
                    };
                    let member = path.join(&name);
                    if entry.size() > MAX_SERIES_BYTES {
                        bad.record(crate::rows::RowError {
                            path: member,
                            line: 0,
                            reason: format!(
                                "archive member of {} bytes: a series is at most {MAX_SERIES_BYTES}",
                                entry.size()
                            ),
                        })?;
                        continue;
                    }
                    let mut text = Vec::new();
                    if let Err(e) = std::io::Read::read_to_end(
                        &mut std::io::Read::take(&mut entry, MAX_SERIES_BYTES),
                        &mut text,
                    ) {
                        damage = Some(e);
                        break;
                    }
                    let mut rows =
                        formats::google_series(Box::new(std::io::Cursor::new(text)), &member);
                    push(&mut rows, &mut bad)?;
                    series += 1;
                }
            }
        }
        if let Some(e) = damage {
            let kind = crate::rows::damage_kind(&e);
            let corrupt = kind == crate::rows::DamageKind::Corrupt;
            let (rows_kept, bytes_kept) = if corrupt { (0, 0) } else { (rows_read, 0) };
            bad.damaged(crate::rows::Loss {
                path: path.to_owned(),
                damage: crate::rows::Damage {
                    kind,
                    cause: e.to_string(),
                    compressed,
                    offset: offset(),
                    file_len: Some(file_len),
                    line: series + 1,
                },
                rows_kept,
                bytes_kept,
                rows_lost: corrupt.then_some(rows_read),
                bytes_lost: None,
                estimated: false,
            })?;
            if corrupt {
                parts.clear();
                bad.drop_rows();
            }
        }
    }
    match assemble(
        path,
        "google-2011-derived",
        TraceShape::Workloads,
        300,
        parts,
        strict,
    ) {
        Err(LoadError::Invalid { path, reason }) if !bad.is_clean() => Err(LoadError::Invalid {
            path,
            reason: format!("{reason} ({})", bad.summary()),
        }),
        Err(e) => Err(e),
        Ok(mut trace) => {
            trace.bad_rows = bad;
            trace.rows_read = rows_read;
            Ok(trace)
        }
    }
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
        let s = |time, cpu, mem| Sample {
            time,
            cpu,
            mem,
            line: 0,
        };
        let cols = vec![
            vec![s(0, 10.0, 1.0), s(100, 20.0, 3.0), s(700, 50.0, 5.0)],
            vec![s(400, 7.0, 7.0)],
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
