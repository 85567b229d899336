//! Row types and parsers for each supported trace, per the publishers' official schemas
//! (`../shared/datasets/*/OFFICIAL_*`). Units are kept as published; conversion to
//! millicores and bytes happens when a trace is assembled.

use std::path::Path;

use crate::rows::{Delimiter, LoadError, Rows, field};

/// The physical bounds every parsed value is checked against, where it is parsed: wide
/// enough for any real cluster, narrow enough that a flipped byte or digit is a bad row
/// rather than a sample (a timestamp centuries away would size the whole time grid).
pub mod bounds {
    use std::ops::RangeInclusive;

    /// Unix time of a sample, seconds: 2000-01-01 to 2100-01-01.
    pub const UNIX_TIME: RangeInclusive<i64> = 946_684_800..=4_102_444_800;
    /// Seconds from a trace's start: ±10 years (Alibaba 2017 tasks start before its trace).
    pub const TRACE_TIME: RangeInclusive<i64> = -315_360_000..=315_360_000;
    /// CPU cores of one machine or VM.
    pub const CORES: RangeInclusive<f64> = 0.0..=4096.0;
    /// CPU cores of one machine, as an integer.
    pub const CORES_INT: RangeInclusive<i64> = 0..=4096;
    /// CPU of one machine or VM, MHz, provisioned or used (usage runs above what is
    /// provisioned: Bitbrains has 1.8×): 10,000 cores at 10 GHz.
    pub const MHZ: RangeInclusive<f64> = 0.0..=1.0e8;
    /// Memory of one machine or VM, KB: 64 TiB.
    pub const MEMORY_KB: RangeInclusive<f64> = 0.0..=68_719_476_736.0;
    /// Memory of one pod, MiB: 64 TiB.
    pub const MEMORY_MIB: RangeInclusive<i64> = 0..=67_108_864;
    /// CPU of one pod, millicores: 4096 cores.
    pub const MILLICORES: RangeInclusive<i64> = 0..=4_096_000;
    /// CPU in Alibaba's unit (100 = one core): 4096 cores.
    pub const CENTICORES: RangeInclusive<f64> = 0.0..=409_600.0;
    /// CPU in Alibaba's unit, as an integer.
    pub const CENTICORES_INT: RangeInclusive<i64> = 0..=409_600;
    /// A share of a machine, percent.
    pub const PERCENT: RangeInclusive<f64> = 0.0..=100.0;
    /// A share of a request or reference, percent (usage may exceed what was asked).
    pub const PERCENT_OF_REQUEST: RangeInclusive<f64> = 0.0..=10_000.0;
    /// Alibaba 2018's disk I/O percent, with its abnormal markers −1 and 101.
    pub const DISK_IO_PERCENT: RangeInclusive<f64> = -1.0..=101.0;
    /// Alibaba 2017's memory, normalised to its largest machine.
    pub const UNIT_SHARE: RangeInclusive<f64> = 0.0..=1.0;
    /// Instances of one task, GPUs of one pod: counts.
    pub const COUNT: RangeInclusive<i64> = 0..=1_000_000;
    /// An identifier number.
    pub const ID: RangeInclusive<i64> = 0..=i64::MAX;
}

/// Bitbrains GWA-T-12: one VM's 300 s sample. The first column is Unix epoch **seconds**
/// despite its `[ms]` header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BitbrainsRow {
    /// Unix time, seconds.
    pub time: i64,
    /// Number of virtual cores.
    pub cores: f64,
    /// CPU capacity provisioned, MHz.
    pub cpu_capacity_mhz: f64,
    /// CPU used, MHz.
    pub cpu_usage_mhz: f64,
    /// Memory provisioned, KB.
    pub mem_capacity_kb: f64,
    /// Memory used, KB.
    pub mem_usage_kb: f64,
}

fn parse_bitbrains(f: &[&str], line: u64) -> Result<Option<BitbrainsRow>, String> {
    if line == 1 && field::looks_like_header(f) {
        return Ok(None);
    }
    field::at_least(f, 7)?;
    Ok(Some(BitbrainsRow {
        time: field::i64_in(f, 0, "Timestamp", bounds::UNIX_TIME)?,
        cores: field::f64_in(f, 1, "CPU cores", bounds::CORES)?,
        cpu_capacity_mhz: field::f64_in(f, 2, "CPU capacity provisioned [MHZ]", bounds::MHZ)?,
        cpu_usage_mhz: field::f64_in(f, 3, "CPU usage [MHZ]", bounds::MHZ)?,
        mem_capacity_kb: field::f64_in(
            f,
            5,
            "Memory capacity provisioned [KB]",
            bounds::MEMORY_KB,
        )?,
        mem_usage_kb: field::f64_in(f, 6, "Memory usage [KB]", bounds::MEMORY_KB)?,
    }))
}

/// Reads one Bitbrains VM file (`N.csv.gz` or plain).
pub fn bitbrains(path: &Path) -> Result<Rows<BitbrainsRow>, LoadError> {
    Rows::open(path, Delimiter::SemicolonTab, parse_bitbrains)
}

/// Alibaba 2018 `machine_meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineMeta {
    /// Machine id (`m_1932`).
    pub machine_id: String,
    /// Seconds from trace start.
    pub time: i64,
    /// CPU count.
    pub cpu_num: i64,
    /// Normalised memory size, 0–100.
    pub mem_size: f64,
    /// Machine status.
    pub status: String,
}

fn parse_machine_meta(f: &[&str], _line: u64) -> Result<Option<MachineMeta>, String> {
    field::count(f, 7)?;
    Ok(Some(MachineMeta {
        machine_id: field::string(f, 0, "machine_id")?,
        time: field::i64_in(f, 1, "time_stamp", bounds::TRACE_TIME)?,
        cpu_num: field::i64_in(f, 4, "cpu_num", bounds::CORES_INT)?,
        mem_size: field::f64_in(f, 5, "mem_size", bounds::PERCENT)?,
        status: field::string(f, 6, "status")?,
    }))
}

/// Reads Alibaba 2018 `machine_meta.csv`.
pub fn alibaba_machine_meta(path: &Path) -> Result<Rows<MachineMeta>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_machine_meta)
}

/// Alibaba 2018 `machine_usage`: whole-machine utilisation (online and batch together).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineUsage {
    /// Machine id.
    pub machine_id: String,
    /// Seconds from trace start.
    pub time: i64,
    /// CPU utilisation, percent of the machine.
    pub cpu_util_percent: f64,
    /// Memory utilisation, percent of the machine.
    pub mem_util_percent: f64,
    /// Disk I/O percent (−1 or 101 mark abnormal values), if present.
    pub disk_io_percent: Option<f64>,
}

fn parse_machine_usage(f: &[&str], _line: u64) -> Result<Option<MachineUsage>, String> {
    field::count(f, 9)?;
    Ok(Some(MachineUsage {
        machine_id: field::string(f, 0, "machine_id")?,
        time: field::i64_in(f, 1, "time_stamp", bounds::TRACE_TIME)?,
        cpu_util_percent: field::f64_in(f, 2, "cpu_util_percent", bounds::PERCENT)?,
        mem_util_percent: field::f64_in(f, 3, "mem_util_percent", bounds::PERCENT)?,
        disk_io_percent: field::opt_f64_in(f, 8, "disk_io_percent", bounds::DISK_IO_PERCENT)?,
    }))
}

/// Reads Alibaba 2018 `machine_usage.csv`.
pub fn alibaba_machine_usage(path: &Path) -> Result<Rows<MachineUsage>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_machine_usage)
}

/// Alibaba 2018 `container_meta` (online containers).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerMeta {
    /// Container id.
    pub container_id: String,
    /// Host machine.
    pub machine_id: String,
    /// Seconds from trace start.
    pub time: i64,
    /// Application group (deploy unit).
    pub app_du: String,
    /// Status.
    pub status: String,
    /// CPU request, 100 = one core.
    pub cpu_request: i64,
    /// CPU limit, 100 = one core.
    pub cpu_limit: i64,
    /// Normalised memory size, 0–100.
    pub mem_size: f64,
}

fn parse_container_meta(f: &[&str], _line: u64) -> Result<Option<ContainerMeta>, String> {
    field::count(f, 8)?;
    Ok(Some(ContainerMeta {
        container_id: field::string(f, 0, "container_id")?,
        machine_id: field::string(f, 1, "machine_id")?,
        time: field::i64_in(f, 2, "time_stamp", bounds::TRACE_TIME)?,
        app_du: field::string(f, 3, "app_du")?,
        status: field::string(f, 4, "status")?,
        cpu_request: field::i64_in(f, 5, "cpu_request", bounds::CENTICORES_INT)?,
        cpu_limit: field::i64_in(f, 6, "cpu_limit", bounds::CENTICORES_INT)?,
        mem_size: field::f64_in(f, 7, "mem_size", bounds::PERCENT)?,
    }))
}

/// Reads Alibaba 2018 `container_meta.csv`.
pub fn alibaba_container_meta(path: &Path) -> Result<Rows<ContainerMeta>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_container_meta)
}

/// Alibaba 2018 `container_usage`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    /// Container id.
    pub container_id: String,
    /// Host machine.
    pub machine_id: String,
    /// Seconds from trace start.
    pub time: i64,
    /// CPU utilisation, percent of the request.
    pub cpu_util_percent: f64,
    /// Memory utilisation, percent of the request.
    pub mem_util_percent: f64,
}

fn parse_container_usage(f: &[&str], _line: u64) -> Result<Option<ContainerUsage>, String> {
    field::count(f, 11)?;
    Ok(Some(ContainerUsage {
        container_id: field::string(f, 0, "container_id")?,
        machine_id: field::string(f, 1, "machine_id")?,
        time: field::i64_in(f, 2, "time_stamp", bounds::TRACE_TIME)?,
        cpu_util_percent: field::f64_in(f, 3, "cpu_util_percent", bounds::PERCENT_OF_REQUEST)?,
        mem_util_percent: field::f64_in(f, 4, "mem_util_percent", bounds::PERCENT_OF_REQUEST)?,
    }))
}

/// Reads Alibaba 2018 `container_usage.csv`.
pub fn alibaba_container_usage(path: &Path) -> Result<Rows<ContainerUsage>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_container_usage)
}

/// Alibaba 2018 `batch_task`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTask2018 {
    /// Task name (unique within the job; encodes the DAG).
    pub task_name: String,
    /// Number of instances.
    pub instance_num: i64,
    /// Job name.
    pub job_name: String,
    /// Status.
    pub status: String,
    /// Start, seconds from trace start.
    pub start_time: i64,
    /// End, seconds from trace start.
    pub end_time: i64,
    /// CPU per instance, 100 = one core (may be absent).
    pub plan_cpu: Option<f64>,
    /// Normalised memory per instance, 0–100 (may be absent).
    pub plan_mem: Option<f64>,
}

fn parse_batch_task_2018(f: &[&str], _line: u64) -> Result<Option<BatchTask2018>, String> {
    field::count(f, 9)?;
    Ok(Some(BatchTask2018 {
        task_name: field::string(f, 0, "task_name")?,
        instance_num: field::i64_in(f, 1, "instance_num", bounds::COUNT)?,
        job_name: field::string(f, 2, "job_name")?,
        status: field::string(f, 4, "status")?,
        start_time: field::i64_in(f, 5, "start_time", bounds::TRACE_TIME)?,
        end_time: field::i64_in(f, 6, "end_time", bounds::TRACE_TIME)?,
        plan_cpu: field::opt_f64_in(f, 7, "plan_cpu", bounds::CENTICORES)?,
        plan_mem: field::opt_f64_in(f, 8, "plan_mem", bounds::PERCENT)?,
    }))
}

/// Reads Alibaba 2018 `batch_task.csv`.
pub fn alibaba_batch_task_2018(path: &Path) -> Result<Rows<BatchTask2018>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_batch_task_2018)
}

/// Alibaba 2018 `batch_instance`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInstance2018 {
    /// Instance name.
    pub instance_name: String,
    /// Task name.
    pub task_name: String,
    /// Job name.
    pub job_name: String,
    /// Status.
    pub status: String,
    /// Start, seconds from trace start.
    pub start_time: i64,
    /// End, seconds from trace start.
    pub end_time: i64,
    /// Host machine (may be empty for instances that never ran).
    pub machine_id: Option<String>,
    /// Average CPU used, 100 = one core.
    pub cpu_avg: Option<f64>,
    /// Maximum CPU used, 100 = one core.
    pub cpu_max: Option<f64>,
    /// Average normalised memory.
    pub mem_avg: Option<f64>,
    /// Maximum normalised memory.
    pub mem_max: Option<f64>,
}

fn parse_batch_instance_2018(f: &[&str], _line: u64) -> Result<Option<BatchInstance2018>, String> {
    field::count(f, 14)?;
    Ok(Some(BatchInstance2018 {
        instance_name: field::string(f, 0, "instance_name")?,
        task_name: field::string(f, 1, "task_name")?,
        job_name: field::string(f, 2, "job_name")?,
        status: field::string(f, 4, "status")?,
        start_time: field::i64_in(f, 5, "start_time", bounds::TRACE_TIME)?,
        end_time: field::i64_in(f, 6, "end_time", bounds::TRACE_TIME)?,
        machine_id: f
            .get(7)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        cpu_avg: field::opt_f64_in(f, 10, "cpu_avg", bounds::CENTICORES)?,
        cpu_max: field::opt_f64_in(f, 11, "cpu_max", bounds::CENTICORES)?,
        mem_avg: field::opt_f64_in(f, 12, "mem_avg", bounds::PERCENT)?,
        mem_max: field::opt_f64_in(f, 13, "mem_max", bounds::PERCENT)?,
    }))
}

/// Reads Alibaba 2018 `batch_instance.csv`.
pub fn alibaba_batch_instance_2018(path: &Path) -> Result<Rows<BatchInstance2018>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_batch_instance_2018)
}

/// Alibaba 2017 `batch_task` (with or without the header row the copier added).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTask2017 {
    /// Creation time, seconds from trace start.
    pub create_time: i64,
    /// End time, seconds from trace start.
    pub end_time: i64,
    /// Job id.
    pub job_id: i64,
    /// Task id.
    pub task_id: i64,
    /// Number of instances.
    pub instances: i64,
    /// Status.
    pub status: String,
    /// CPUs requested per instance, 100 = one core.
    pub cpu_per_instance: f64,
    /// Normalised memory requested per instance.
    pub mem_per_instance: f64,
}

fn parse_batch_task_2017(f: &[&str], line: u64) -> Result<Option<BatchTask2017>, String> {
    if line == 1 && field::looks_like_header(f) {
        return Ok(None);
    }
    field::count(f, 8)?;
    Ok(Some(BatchTask2017 {
        create_time: field::i64_in(f, 0, "task_create_time", bounds::TRACE_TIME)?,
        end_time: field::i64_in(f, 1, "task_end_time", bounds::TRACE_TIME)?,
        job_id: field::i64_in(f, 2, "job_id", bounds::ID)?,
        task_id: field::i64_in(f, 3, "task_id", bounds::ID)?,
        instances: field::i64_in(f, 4, "number_of_instances", bounds::COUNT)?,
        status: field::string(f, 5, "status")?,
        cpu_per_instance: field::f64_in(
            f,
            6,
            "number_of_cpus_requested_per_instance_in_the_task",
            bounds::CENTICORES,
        )?,
        mem_per_instance: field::f64_in(
            f,
            7,
            "normalized_memory_requested_per_instance_in_the_task",
            bounds::UNIT_SHARE,
        )?,
    }))
}

/// Reads Alibaba 2017 `batch_task.csv`.
pub fn alibaba_batch_task_2017(path: &Path) -> Result<Rows<BatchTask2017>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_batch_task_2017)
}

/// Alibaba GPU 2023 (openb) pod list: requests and LS/BE QoS.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuPod {
    /// Pod name.
    pub name: String,
    /// CPU request, millicores.
    pub cpu_milli: i64,
    /// Memory request, MiB.
    pub memory_mib: i64,
    /// GPUs.
    pub num_gpu: i64,
    /// QoS: `LS`, `BE`, `Burstable`, `Guaranteed`.
    pub qos: String,
    /// Creation, seconds from trace start.
    pub creation_time: i64,
    /// Deletion, seconds from trace start (absent: still running at the end).
    pub deletion_time: Option<i64>,
}

fn parse_gpu_pod(f: &[&str], line: u64) -> Result<Option<GpuPod>, String> {
    if line == 1 && f.first().is_some_and(|s| s.trim() == "name") {
        return Ok(None);
    }
    field::at_least(f, 10)?;
    Ok(Some(GpuPod {
        name: field::string(f, 0, "name")?,
        cpu_milli: field::i64_in(f, 1, "cpu_milli", bounds::MILLICORES)?,
        memory_mib: field::i64_in(f, 2, "memory_mib", bounds::MEMORY_MIB)?,
        num_gpu: field::i64_in(f, 3, "num_gpu", bounds::COUNT)?,
        qos: field::string(f, 6, "qos")?,
        creation_time: field::i64_in(f, 8, "creation_time", bounds::TRACE_TIME)?,
        deletion_time: field::opt_i64_in(f, 9, "deletion_time", bounds::TRACE_TIME)?,
    }))
}

/// Reads `openb_pod_list_*.csv`.
pub fn alibaba_gpu_pods(path: &Path) -> Result<Rows<GpuPod>, LoadError> {
    Rows::open(path, Delimiter::Comma, parse_gpu_pod)
}

/// One 5-minute sample of a Google-derived day series: CPU% and memory%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoogleSample {
    /// CPU utilisation, percent.
    pub cpu_percent: f64,
    /// Memory utilisation, percent.
    pub mem_percent: f64,
}

fn parse_google(f: &[&str], _line: u64) -> Result<Option<GoogleSample>, String> {
    field::count(f, 2)?;
    Ok(Some(GoogleSample {
        cpu_percent: field::f64_in(f, 0, "cpu", bounds::PERCENT_OF_REQUEST)?,
        mem_percent: field::f64_in(f, 1, "memory", bounds::PERCENT_OF_REQUEST)?,
    }))
}

/// Reads one Google-derived series file (plain or gzip).
pub fn google_file(path: &Path) -> Result<Rows<GoogleSample>, LoadError> {
    Rows::open(path, Delimiter::Whitespace, parse_google)
}

/// Parses one Google-derived series from any reader (`name` is used in messages).
pub fn google_series(reader: Box<dyn std::io::BufRead + Send>, name: &Path) -> Rows<GoogleSample> {
    Rows::from_reader(reader, name, Delimiter::Whitespace, parse_google)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tide-formats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bitbrains_rows() {
        let p = write(
            "1.csv",
            "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n\
             1372629804;\t2;\t5851.9989;\t87.7799835;\t1.5;\t8218624.0;\t1034592.8;\t160.8;\t21.7;\t0.26;\t1.46\n\
             1372630104;\t2;\t5851.9989;\tNaN;\t0.5;\t8218624.0;\t458575.4;\t0.0;\t2.3;\t0.2;\t1.0\n",
        );
        let rows: Vec<_> = bitbrains(&p).unwrap().collect();
        assert_eq!(rows.len(), 2);
        let r = rows[0].as_ref().unwrap();
        assert_eq!((r.time, r.cores), (1_372_629_804, 2.0));
        assert!((r.mem_usage_kb - 1_034_592.8).abs() < 1e-6);
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("CPU usage"), "{}", e.reason);
    }

    #[test]
    fn alibaba_2018_tables() {
        let p = write(
            "machine_meta.csv",
            "m_1,0,219,17,96,100,USING\nm_2,x,1,1,96,100,USING\n",
        );
        let rows: Vec<_> = alibaba_machine_meta(&p).unwrap().collect();
        assert_eq!(rows[0].as_ref().unwrap().cpu_num, 96);
        assert!(rows[1].as_ref().unwrap_err().reason.contains("time_stamp"));

        let p = write(
            "machine_usage.csv",
            "m_1932,386640,41,92,,,43.04,33.08,5\nm_1932,386650,141,92,,,1,1,5\nm_1932,1,2\n",
        );
        let rows: Vec<_> = alibaba_machine_usage(&p).unwrap().collect();
        let r = rows[0].as_ref().unwrap();
        assert_eq!(
            (
                r.time,
                r.cpu_util_percent,
                r.mem_util_percent,
                r.disk_io_percent
            ),
            (386_640, 41.0, 92.0, Some(5.0))
        );
        assert!(
            rows[1]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("outside [0, 100]")
        );
        assert!(
            rows[2]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("expected 9 fields")
        );

        let p = write(
            "container_meta.csv",
            "c_1,m_2556,0,app_5052,started,400,400,1.56\n",
        );
        let r = alibaba_container_meta(&p).unwrap().next().unwrap().unwrap();
        assert_eq!((r.cpu_request, r.app_du.as_str()), (400, "app_5052"));

        let p = write(
            "container_usage.csv",
            "c_10,m_1932,386640,14,35,,,,1.23,2.3,4\n",
        );
        let r = alibaba_container_usage(&p)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!((r.cpu_util_percent, r.mem_util_percent), (14.0, 35.0));

        let p = write(
            "batch_task.csv",
            "task_LTg0MTUwNTA5Mjg4MDkwNjIzMA==,1,j_1,1,Terminated,157213,157322,100,0.39\nM1,10,j_2,1,Terminated,1,2,,\n",
        );
        let rows: Vec<_> = alibaba_batch_task_2018(&p)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!((rows[0].plan_cpu, rows[1].plan_cpu), (Some(100.0), None));

        let p = write(
            "batch_instance.csv",
            "ins_1,M1,j_1,1,Terminated,100,200,m_7,1,1,50.5,80,0.2,0.3\nins_2,M1,j_1,1,Waiting,0,0,,1,1,,,,\n",
        );
        let rows: Vec<_> = alibaba_batch_instance_2018(&p)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows[0].machine_id.as_deref(), Some("m_7"));
        assert_eq!((rows[1].machine_id.clone(), rows[1].cpu_max), (None, None));
    }

    #[test]
    fn alibaba_2017_with_and_without_header() {
        let body = "6459,6524,3,4,15740,Terminated,50,0.007956928\n";
        let with = write(
            "bt_h.csv",
            &format!(
                "task_create_time, task_end_time, job_id, task_id,number_of_instances, status, number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task\n{body}"
            ),
        );
        let without = write("bt.csv", body);
        for p in [with, without] {
            let rows: Vec<_> = alibaba_batch_task_2017(&p).unwrap().collect();
            assert_eq!(rows.len(), 1, "{}", p.display());
            assert_eq!(rows[0].as_ref().unwrap().instances, 15_740);
        }
    }

    #[test]
    fn gpu_pods() {
        let p = write(
            "pods.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\nopenb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0\nopenb-pod-0001,6000,12288,0,0,,BE,Pending,5,,\n",
        );
        let rows: Vec<_> = alibaba_gpu_pods(&p).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].qos.as_str(), rows[0].deletion_time),
            ("LS", Some(12_537_496))
        );
        assert_eq!((rows[1].qos.as_str(), rows[1].deletion_time), ("BE", None));
    }

    #[test]
    fn google_series_rows() {
        let text = "12 30\n 14   31 \nbad row here\n";
        let rows: Vec<_> = google_series(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            Path::new("vm_1"),
        )
        .collect();
        assert_eq!(
            rows[0],
            Ok(GoogleSample {
                cpu_percent: 12.0,
                mem_percent: 30.0
            })
        );
        assert_eq!(
            rows[1],
            Ok(GoogleSample {
                cpu_percent: 14.0,
                mem_percent: 31.0
            })
        );
        assert!(
            rows[2]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("expected 2 fields")
        );
    }
}
