//! The one configuration shared by the extender, the agent and the replay (DESIGN.md §3).
//!
//! Water levels are percentages of a node's allocatable amount. Because the extender and the
//! agent read the same numbers, the extender never admits a BE pod that the agent would
//! evict at once: validation insists that every admission level sits at or below the matching
//! eviction level.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::qos::ClassifyRules;
use crate::units::{Bytes, MilliCores, ResourceAmounts};

/// A configuration that parsed but makes no sense; names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The YAML did not parse or did not match the schema (unknown or mistyped field).
    #[error("config does not parse: {0}")]
    Parse(String),
    /// A field holds a value out of its range or inconsistent with another field.
    #[error("config field {field}: {reason}")]
    Invalid {
        /// Dotted path of the field, as written in YAML (`memory.evictPercent`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Resource names and labels Tide reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceNames {
    /// Pod label carrying the Tide QoS class.
    pub qos_label: String,
    /// Extended resource for BE CPU, in millicores.
    pub batch_cpu: String,
    /// Extended resource for BE memory, in bytes.
    pub batch_memory: String,
    /// Also honour Koordinator's QoS label, batch resources and priority bands.
    pub koordinator_compat: bool,
}

impl Default for ResourceNames {
    fn default() -> Self {
        Self {
            qos_label: "tide.dev/qos".into(),
            batch_cpu: "tide.dev/batch-cpu".into(),
            batch_memory: "tide.dev/batch-memory".into(),
            koordinator_compat: false,
        }
    }
}

impl ResourceNames {
    /// The classification rules these names imply.
    pub fn classify_rules(&self) -> ClassifyRules {
        ClassifyRules {
            qos_label: self.qos_label.clone(),
            batch_resources: vec![self.batch_cpu.clone(), self.batch_memory.clone()],
            koordinator_compat: self.koordinator_compat,
        }
    }
}

/// CPU water levels, in percent of allocatable CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuLevels {
    /// The extender admits BE only while predicted HP peak + BE requests stay at or below this;
    /// it pre-evicts BE before binding an HP pod that would push the prediction above it.
    pub schedule_percent: f64,
    /// The agent suppresses BE (cpuset or CFS quota) so node CPU usage stays at or below this.
    pub suppress_percent: f64,
    /// The agent evicts BE when HP + system usage alone stays above this.
    pub evict_percent: f64,
    /// Eviction stops once usage is back at or below this (hysteresis).
    pub release_percent: f64,
    /// Smallest CPU limit the BE pool is suppressed to while BE pods run, in millicores.
    /// 0 lets suppression stop BE entirely; a small floor avoids priority inversion when a
    /// starved BE task holds a lock an HP task waits for, at the price of that much contention.
    pub be_floor_milli: u64,
}

impl Default for CpuLevels {
    fn default() -> Self {
        Self {
            schedule_percent: 85.0,
            suppress_percent: 90.0,
            evict_percent: 95.0,
            release_percent: 88.0,
            be_floor_milli: 0,
        }
    }
}

/// Memory water levels, in percent of allocatable memory (working set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryLevels {
    /// The extender admits BE only while predicted HP peak + BE requests stay at or below this.
    pub schedule_percent: f64,
    /// The agent starts reclaiming cold page cache above this.
    pub reclaim_percent: f64,
    /// The agent evicts BE pods above this.
    pub evict_percent: f64,
    /// Eviction stops once usage is back at or below this (hysteresis).
    pub release_percent: f64,
    /// Above this, when the API server cannot be reached, BE containers are killed locally.
    pub critical_percent: f64,
}

impl Default for MemoryLevels {
    fn default() -> Self {
        Self {
            schedule_percent: 80.0,
            reclaim_percent: 80.0,
            evict_percent: 90.0,
            release_percent: 85.0,
            critical_percent: 95.0,
        }
    }
}

/// Which predictor the live system uses for the HP peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PredictorKind {
    /// Max of per-pod histogram, node N-sigma and diurnal, with calibrated margin (the default).
    Tide,
    /// Sum of per-pod decaying-histogram percentiles only.
    PodHistogram,
    /// N-sigma on the node aggregate only.
    NSigma,
}

/// Estimator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EstimatorSettings {
    /// How far ahead the HP memory peak is predicted (and any resource without a horizon of
    /// its own). Memory cannot be taken back from BE without evicting it, so its reservation
    /// has to hold for as long as the BE work placed on it runs.
    #[serde(with = "duration_text")]
    pub horizon: Duration,
    /// How far ahead the HP CPU peak is predicted. CPU is taken back from BE by suppression
    /// within one agent tick, so the CPU reservation only has to hold until the next estimate
    /// replaces it: the default is `staleAfter`'s (5 minutes).
    #[serde(with = "duration_text")]
    pub cpu_horizon: Duration,
    /// Share of decisions whose realised peak may exceed the prediction (0 < x < 1).
    pub target_violation_rate: f64,
    /// Half-life of the decaying histograms.
    #[serde(with = "duration_text")]
    pub half_life: Duration,
    /// Length of the recent-sample ring buffer.
    #[serde(with = "duration_text")]
    pub recent_window: Duration,
    /// History younger than this gives no reclaimable capacity.
    #[serde(with = "duration_text")]
    pub min_history: Duration,
    /// An estimate older than this is stale: BE admission stops, HP is never blocked.
    #[serde(with = "duration_text")]
    pub stale_after: Duration,
    /// Extra margin on the predicted peak, in percent of allocatable, per resource.
    pub cpu_margin_percent: f64,
    /// Extra margin on the predicted peak, in percent of allocatable, for memory.
    pub memory_margin_percent: f64,
    /// Which predictor the live system uses.
    pub predictor: PredictorKind,
    /// Adjust the margin online so the realised violation rate tracks the target.
    pub calibrate: bool,
}

impl Default for EstimatorSettings {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(3600),
            cpu_horizon: Duration::from_secs(300),
            target_violation_rate: 0.01,
            half_life: Duration::from_secs(24 * 3600),
            recent_window: Duration::from_secs(3600),
            min_history: Duration::from_secs(3600),
            stale_after: Duration::from_secs(300),
            cpu_margin_percent: 0.0,
            memory_margin_percent: 5.0,
            predictor: PredictorKind::Tide,
            calibrate: true,
        }
    }
}

impl EstimatorSettings {
    /// The horizon `r`'s peak is predicted over: `cpuHorizon` for CPU, `horizon` for memory.
    pub fn horizon_for(&self, r: crate::Resource) -> Duration {
        match r {
            crate::Resource::Cpu => self.cpu_horizon,
            crate::Resource::Memory => self.horizon,
        }
    }

    /// These settings as the estimator of `r` uses them: `horizon` is [`Self::horizon_for`].
    ///
    /// ```
    /// use tide_api::{EstimatorSettings, Resource};
    /// let s = EstimatorSettings::default();
    /// assert_eq!(s.for_resource(Resource::Cpu).horizon.as_secs(), 300);
    /// assert_eq!(s.for_resource(Resource::Memory).horizon.as_secs(), 3600);
    /// ```
    pub fn for_resource(&self, r: crate::Resource) -> Self {
        Self {
            horizon: self.horizon_for(r),
            ..self.clone()
        }
    }
}

/// Capacity kept back for the system (kubelet, runtime, agent) beyond what usage shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemReserve {
    /// CPU kept back.
    pub cpu: MilliCores,
    /// Memory kept back.
    pub memory: Bytes,
}

impl Default for SystemReserve {
    fn default() -> Self {
        Self {
            cpu: MilliCores(500),
            memory: Bytes::GIB,
        }
    }
}

impl SystemReserve {
    /// The reserve as an amount pair.
    pub fn amounts(&self) -> ResourceAmounts {
        ResourceAmounts {
            cpu: self.cpu,
            memory: self.memory,
        }
    }
}

/// Loop and publishing intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Intervals {
    /// Agent sampling period.
    #[serde(with = "duration_text")]
    pub sample: Duration,
    /// Shortest time between two publications of the node estimate.
    #[serde(with = "duration_text")]
    pub publish_min: Duration,
    /// Longest time without a publication (re-asserts after kubelet resets).
    #[serde(with = "duration_text")]
    pub publish_max: Duration,
    /// A change smaller than this share of allocatable is not published before `publishMax`.
    pub publish_delta_percent: u8,
    /// Shortest time between two BE evictions on one node.
    #[serde(with = "duration_text")]
    pub eviction_min: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            sample: Duration::from_secs(1),
            publish_min: Duration::from_secs(10),
            publish_max: Duration::from_secs(60),
            publish_delta_percent: 5,
            eviction_min: Duration::from_secs(5),
        }
    }
}

/// How the extender counts the BE pods already on a node when it admits more BE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BeAdmission {
    /// By their requests: BE requests are honoured, never overcommitted.
    Request,
    /// By the real-time water level (the default): the BE usage the node's agent measured,
    /// plus the requests of BE pods whose usage that measurement could not include yet
    /// ([`crate::usage_measured`]). BE requests themselves may then be overcommitted where BE
    /// uses less than it asked; the agent's suppression and eviction remain the safety net.
    #[default]
    RealTime,
}

/// Which pods the admission webhook rewrites as BE, and what it sets on them
/// (`tide_scheduler::webhook`; docs/install.md, "Admission webhook").
///
/// A pod is rewritten when it carries every label of `podSelector` and sits in one of
/// `namespaces` (any namespace when empty) — or, with `resources.koordinatorCompat`, when it
/// carries Koordinator's `koordinator.sh/qosClass: BE`. Every other pod passes untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSettings {
    /// Labels a pod must carry (all of them, exact values) to be rewritten as BE: the opt-in.
    /// Never empty (an empty selector would rewrite every pod).
    pub pod_selector: BTreeMap<String, String>,
    /// Namespaces whose pods may be rewritten; empty: every namespace.
    pub namespaces: Vec<String>,
    /// PriorityClass set on rewritten pods; empty: the pod's own is kept.
    pub priority_class_name: String,
    /// `schedulerName` set on rewritten pods (the Tide scheduler profile's name in the
    /// second-scheduler setup); empty: the pod's own is kept.
    pub scheduler_name: String,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            pod_selector: BTreeMap::from([("tide.dev/batch".to_owned(), "true".to_owned())]),
            namespaces: Vec::new(),
            priority_class_name: String::new(),
            scheduler_name: String::new(),
        }
    }
}

/// The whole shared configuration.
///
/// ```
/// let cfg = tide_api::TideConfig::from_yaml("memory:\n  evictPercent: 92\n").unwrap();
/// assert_eq!(cfg.memory.evict_percent, 92.0);
/// assert_eq!(cfg.cpu.schedule_percent, 85.0); // documented default
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TideConfig {
    /// Resource names and labels.
    pub resources: ResourceNames,
    /// CPU water levels.
    pub cpu: CpuLevels,
    /// Memory water levels.
    pub memory: MemoryLevels,
    /// Estimator settings.
    pub estimator: EstimatorSettings,
    /// System reserve.
    pub reserve: SystemReserve,
    /// Loop intervals.
    pub intervals: Intervals,
    /// How BE already on a node is counted at BE admission and scoring.
    pub be_admission: BeAdmission,
    /// What the admission webhook rewrites.
    pub webhook: WebhookSettings,
}

fn percent(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && (0.0..=100.0).contains(&v) && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            reason: format!("{v} is not a percentage in (0, 100]"),
        })
    }
}

fn at_most(
    field: &'static str,
    v: f64,
    other: &'static str,
    limit: f64,
) -> Result<(), ConfigError> {
    if v <= limit {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            reason: format!("{v} must not exceed {other} ({limit})"),
        })
    }
}

fn below(field: &'static str, v: f64, other: &'static str, limit: f64) -> Result<(), ConfigError> {
    if v < limit {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            reason: format!("{v} must be below {other} ({limit})"),
        })
    }
}

fn positive(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::Invalid {
            field,
            reason: "must be longer than zero".into(),
        })
    } else {
        Ok(())
    }
}

impl TideConfig {
    /// Parses YAML (unknown fields are errors), fills documented defaults, and validates.
    pub fn from_yaml(text: &str) -> Result<TideConfig, ConfigError> {
        let cfg: TideConfig = if text.trim().is_empty() {
            TideConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads one or more configuration files, each later file overriding the earlier ones field
    /// by field, and validates the result. Mappings merge key by key, recursively; any other
    /// value (a number, a string, a list) replaces the earlier one whole. Each file alone must
    /// parse (an unknown or mistyped field is an error naming that file); the ranges and the
    /// ordering of levels are checked on the merged configuration. No file: the defaults.
    ///
    /// This is how an overlay changes a few settings without a second copy of the shipped
    /// file: the second-scheduler component adds a file that only sets
    /// `webhook.schedulerName` (deploy/components/second-scheduler).
    pub fn load(paths: &[std::path::PathBuf]) -> Result<TideConfig, String> {
        let mut layers = Vec::with_capacity(paths.len());
        for p in paths {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            layers.push((p.display().to_string(), text));
        }
        Self::from_yaml_layers(layers.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// [`TideConfig::load`] on texts: `(name, YAML)` pairs, the name used in errors.
    pub fn from_yaml_layers<'a>(
        layers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TideConfig, String> {
        let mut merged = serde_json::Value::Object(Default::default());
        let mut names = Vec::new();
        for (name, text) in layers {
            if text.trim().is_empty() {
                names.push(name);
                continue;
            }
            // Alone first, for errors that name the file and the field.
            serde_saphyr::from_str::<TideConfig>(text)
                .map_err(|e| format!("{name}: {}", ConfigError::Parse(e.to_string())))?;
            let layer: serde_json::Value = serde_saphyr::from_str(text)
                .map_err(|e| format!("{name}: {}", ConfigError::Parse(e.to_string())))?;
            merge(&mut merged, layer);
            names.push(name);
        }
        let cfg: TideConfig = serde_json::from_value(merged).map_err(|e| {
            format!(
                "{}: {}",
                names.join(" + "),
                ConfigError::Parse(e.to_string())
            )
        })?;
        cfg.validate().map_err(|e| match names.as_slice() {
            [] => e.to_string(),
            _ => format!("{}: {e}", names.join(" + ")),
        })?;
        Ok(cfg)
    }

    /// The configuration as YAML (every field, defaults included).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Checks ranges and the ordering of water levels; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cpu;
        percent("cpu.schedulePercent", c.schedule_percent)?;
        percent("cpu.suppressPercent", c.suppress_percent)?;
        percent("cpu.evictPercent", c.evict_percent)?;
        percent("cpu.releasePercent", c.release_percent)?;
        at_most(
            "cpu.schedulePercent",
            c.schedule_percent,
            "cpu.evictPercent",
            c.evict_percent,
        )?;
        at_most(
            "cpu.suppressPercent",
            c.suppress_percent,
            "cpu.evictPercent",
            c.evict_percent,
        )?;
        below(
            "cpu.releasePercent",
            c.release_percent,
            "cpu.evictPercent",
            c.evict_percent,
        )?;

        let m = &self.memory;
        percent("memory.schedulePercent", m.schedule_percent)?;
        percent("memory.reclaimPercent", m.reclaim_percent)?;
        percent("memory.evictPercent", m.evict_percent)?;
        percent("memory.releasePercent", m.release_percent)?;
        percent("memory.criticalPercent", m.critical_percent)?;
        at_most(
            "memory.schedulePercent",
            m.schedule_percent,
            "memory.evictPercent",
            m.evict_percent,
        )?;
        at_most(
            "memory.reclaimPercent",
            m.reclaim_percent,
            "memory.evictPercent",
            m.evict_percent,
        )?;
        below(
            "memory.releasePercent",
            m.release_percent,
            "memory.evictPercent",
            m.evict_percent,
        )?;
        below(
            "memory.evictPercent",
            m.evict_percent,
            "memory.criticalPercent",
            m.critical_percent,
        )?;

        let e = &self.estimator;
        if !(e.target_violation_rate > 0.0 && e.target_violation_rate < 1.0) {
            return Err(ConfigError::Invalid {
                field: "estimator.targetViolationRate",
                reason: format!("{} is not a rate in (0, 1)", e.target_violation_rate),
            });
        }
        for (field, v) in [
            ("estimator.cpuMarginPercent", e.cpu_margin_percent),
            ("estimator.memoryMarginPercent", e.memory_margin_percent),
        ] {
            if !(v.is_finite() && (0.0..100.0).contains(&v)) {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("{v} is not a percentage in [0, 100)"),
                });
            }
        }
        positive("estimator.horizon", e.horizon)?;
        positive("estimator.cpuHorizon", e.cpu_horizon)?;
        positive("estimator.halfLife", e.half_life)?;
        positive("estimator.recentWindow", e.recent_window)?;
        positive("estimator.staleAfter", e.stale_after)?;

        let i = &self.intervals;
        positive("intervals.sample", i.sample)?;
        positive("intervals.publishMin", i.publish_min)?;
        if i.publish_max < i.publish_min {
            return Err(ConfigError::Invalid {
                field: "intervals.publishMax",
                reason: format!(
                    "{} is shorter than intervals.publishMin ({})",
                    duration_text::format(i.publish_max),
                    duration_text::format(i.publish_min)
                ),
            });
        }
        if i.publish_delta_percent > 100 {
            return Err(ConfigError::Invalid {
                field: "intervals.publishDeltaPercent",
                reason: format!("{} is not a percentage", i.publish_delta_percent),
            });
        }
        if e.stale_after <= i.publish_max {
            return Err(ConfigError::Invalid {
                field: "estimator.staleAfter",
                reason: format!(
                    "{} must be longer than intervals.publishMax ({}) or every estimate goes stale between publications",
                    duration_text::format(e.stale_after),
                    duration_text::format(i.publish_max)
                ),
            });
        }
        for (field, name) in [
            ("resources.qosLabel", &self.resources.qos_label),
            ("resources.batchCpu", &self.resources.batch_cpu),
            ("resources.batchMemory", &self.resources.batch_memory),
        ] {
            if !is_qualified_name(name) {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("{name:?} is not a qualified name such as tide.dev/batch-cpu"),
                });
            }
        }
        if self.resources.batch_cpu == self.resources.batch_memory {
            return Err(ConfigError::Invalid {
                field: "resources.batchMemory",
                reason: "must differ from resources.batchCpu".into(),
            });
        }
        self.webhook.validate()
    }
}

impl WebhookSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.pod_selector.is_empty() {
            return Err(ConfigError::Invalid {
                field: "webhook.podSelector",
                reason:
                    "must name at least one label: an empty selector would rewrite every pod as BE"
                        .into(),
            });
        }
        for (k, v) in &self.pod_selector {
            if !is_label_key(k) {
                return Err(ConfigError::Invalid {
                    field: "webhook.podSelector",
                    reason: format!("{k:?} is not a label key such as tide.dev/batch"),
                });
            }
            if !(v.is_empty() || is_dns_label_like(v, 63)) {
                return Err(ConfigError::Invalid {
                    field: "webhook.podSelector",
                    reason: format!("{v:?} (label {k}) is not a label value"),
                });
            }
        }
        for ns in &self.namespaces {
            if !is_dns1123(ns, 63, false) {
                return Err(ConfigError::Invalid {
                    field: "webhook.namespaces",
                    reason: format!("{ns:?} is not a namespace name"),
                });
            }
        }
        for (field, name) in [
            ("webhook.priorityClassName", &self.priority_class_name),
            ("webhook.schedulerName", &self.scheduler_name),
        ] {
            if !name.is_empty() && !is_dns1123(name, 253, true) {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!(
                        "{name:?} is not an object name (lower case, digits, '-', '.')"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `prefix/name` with a DNS-like prefix and a name of letters, digits, `-`, `_`, `.`.
fn is_qualified_name(s: &str) -> bool {
    let Some((prefix, name)) = s.split_once('/') else {
        return false;
    };
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && part.as_bytes()[0].is_ascii_alphanumeric()
            && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
    };
    prefix.contains('.') && ok(prefix) && ok(name) && name.len() <= 63
}

/// Letters, digits, `-`, `_`, `.`, beginning and ending alphanumeric, at most `max` long.
fn is_dns_label_like(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A DNS-1123 label (lower-case letters, digits, `-`; alphanumeric at both ends), or with
/// `dots` a DNS-1123 subdomain (such labels joined by `.`), at most `max` long.
fn is_dns1123(s: &str, max: usize, dots: bool) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= max
        && if dots {
            s.split('.').all(label)
        } else {
            label(s)
        }
}

/// A label key: `name` or `prefix/name`.
fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        None => is_dns_label_like(s, 63),
        Some(_) => is_qualified_name(s),
    }
}

/// Durations written as text: `500ms`, `30s`, `5m`, `1h30m`, `2d`.
pub mod duration_text {
    use std::time::Duration;

    /// Parses `1h30m`, `90s`, `250ms`, `2d`. A bare number is an error (the unit is required).
    pub fn parse(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err(format!("invalid duration {s:?}: empty"));
        }
        let mut total: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("invalid duration {s:?}: expected a number"));
            }
            let (num, tail) = rest.split_at(digits);
            let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, tail) = tail.split_at(unit_len);
            let ms: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => {
                    return Err(format!(
                        "invalid duration {s:?}: missing unit (ms, s, m, h, d)"
                    ));
                }
                _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
            };
            let n: u128 = num
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
            total = n
                .checked_mul(ms)
                .and_then(|v| total.checked_add(v))
                .filter(|v| *v <= u128::from(u64::MAX))
                .ok_or_else(|| format!("invalid duration {s:?}: too long"))?;
            rest = tail;
        }
        Ok(Duration::from_millis(
            u64::try_from(total).unwrap_or(u64::MAX),
        ))
    }

    /// Formats with the largest exact units (`1h30m`, `250ms`, `0s`).
    pub fn format(d: Duration) -> String {
        let mut ms = d.as_millis();
        if ms == 0 {
            return "0s".into();
        }
        let mut out = String::new();
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                out.push_str(&format!("{}{unit}", ms / size));
                ms %= size;
            }
        }
        out
    }

    /// serde `serialize_with`.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// serde `deserialize_with`.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Merges `over` into `base`: mappings key by key, recursively; anything else replaces.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_gives_documented_defaults() {
        let cfg = TideConfig::from_yaml("").unwrap();
        assert_eq!(cfg, TideConfig::default());
        assert_eq!(cfg.estimator.horizon, Duration::from_secs(3600));
        assert_eq!(cfg.resources.batch_cpu, "tide.dev/batch-cpu");
    }

    #[test]
    fn yaml_round_trips() {
        let cfg = TideConfig::default();
        let text = cfg.to_yaml();
        assert!(text.contains("horizon: 1h"), "{text}");
        assert_eq!(TideConfig::from_yaml(&text).unwrap(), cfg);
    }

    #[test]
    fn later_layers_override_field_by_field() {
        let base = TideConfig::default().to_yaml();
        let cfg = TideConfig::from_yaml_layers([
            ("base.yaml", base.as_str()),
            (
                "over.yaml",
                "webhook:\n  schedulerName: tide-scheduler\ncpu:\n  schedulePercent: 80\n",
            ),
        ])
        .unwrap();
        let mut want = TideConfig::default();
        want.webhook.scheduler_name = "tide-scheduler".into();
        want.cpu.schedule_percent = 80.0;
        assert_eq!(cfg, want);
        // The same as one file with both edits.
        assert_eq!(TideConfig::from_yaml(&cfg.to_yaml()).unwrap(), cfg);
        // No layer: the defaults; an empty layer changes nothing.
        assert_eq!(
            TideConfig::from_yaml_layers([]).unwrap(),
            TideConfig::default()
        );
        assert_eq!(
            TideConfig::from_yaml_layers([("a", base.as_str()), ("b", "  \n")]).unwrap(),
            TideConfig::default()
        );
    }

    #[test]
    fn layer_errors_name_the_file_and_the_merged_result_is_validated() {
        let err = TideConfig::from_yaml_layers([
            ("base.yaml", ""),
            ("over.yaml", "webhook:\n  schedulerNam: x\n"),
        ])
        .unwrap_err();
        assert!(
            err.starts_with("over.yaml: ") && err.contains("schedulerNam"),
            "{err}"
        );
        // Each layer alone is fine; together the schedule level passes the eviction level.
        let err = TideConfig::from_yaml_layers([
            ("a.yaml", "cpu:\n  schedulePercent: 99\n"),
            (
                "b.yaml",
                "cpu:\n  evictPercent: 90\n  suppressPercent: 90\n  releasePercent: 80\n",
            ),
        ])
        .unwrap_err();
        assert!(
            err.starts_with("a.yaml + b.yaml: config field cpu."),
            "{err}"
        );
        let err =
            TideConfig::load(&[std::path::PathBuf::from("/nonexistent/tide.yaml")]).unwrap_err();
        assert!(err.contains("/nonexistent/tide.yaml"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = TideConfig::from_yaml("memory:\n  evictPercnt: 90\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
        assert!(err.to_string().contains("evictPercnt"), "{err}");
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let cases = [
            ("memory:\n  evictPercent: 97\n", "memory.evictPercent"),
            ("memory:\n  schedulePercent: 93\n", "memory.schedulePercent"),
            ("cpu:\n  suppressPercent: 120\n", "cpu.suppressPercent"),
            ("cpu:\n  releasePercent: 96\n", "cpu.releasePercent"),
            (
                "estimator:\n  targetViolationRate: 1.5\n",
                "estimator.targetViolationRate",
            ),
            ("estimator:\n  horizon: 0s\n", "estimator.horizon"),
            ("estimator:\n  staleAfter: 30s\n", "estimator.staleAfter"),
            ("intervals:\n  publishMax: 5s\n", "intervals.publishMax"),
            ("resources:\n  batchCpu: batch-cpu\n", "resources.batchCpu"),
            ("webhook:\n  podSelector: {}\n", "webhook.podSelector"),
            (
                "webhook:\n  podSelector:\n    'a b': x\n",
                "webhook.podSelector",
            ),
            ("webhook:\n  namespaces: [Batch]\n", "webhook.namespaces"),
            ("webhook:\n  namespaces: [a_b]\n", "webhook.namespaces"),
            ("webhook:\n  namespaces: [a.b]\n", "webhook.namespaces"),
            (
                "webhook:\n  priorityClassName: 'tide batch'\n",
                "webhook.priorityClassName",
            ),
            ("webhook:\n  schedulerName: -x\n", "webhook.schedulerName"),
            ("webhook:\n  schedulerName: a..b\n", "webhook.schedulerName"),
        ];
        for (yaml, field) in cases {
            match TideConfig::from_yaml(yaml) {
                Err(ConfigError::Invalid { field: f, reason }) => {
                    assert_eq!(f, field, "{yaml}: {reason}")
                }
                other => panic!("{yaml}: expected error on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn webhook_settings_accept_kubernetes_names() {
        let cfg = TideConfig::from_yaml(
            "webhook:\n  podSelector:\n    team: ml\n    example.com/batch-job: ''\n  namespaces: [batch, ml-2]\n  priorityClassName: tide.batch-1\n  schedulerName: tide-scheduler\n",
        )
        .unwrap();
        assert_eq!(cfg.webhook.pod_selector.len(), 2);
        assert_eq!(cfg.webhook.namespaces, ["batch", "ml-2"]);
    }

    #[test]
    fn bad_duration_is_a_parse_error_with_the_text() {
        let err = TideConfig::from_yaml("estimator:\n  horizon: 1 hour\n").unwrap_err();
        assert!(err.to_string().contains("1 hour"), "{err}");
        let err = TideConfig::from_yaml("estimator:\n  horizon: 60\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
    }

    #[test]
    fn durations_parse_and_format() {
        use duration_text::{format, parse};
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        for bad in ["", "5", "5x", "h", "99999999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
