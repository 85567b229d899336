//! QoS classes, priority bands, pod classification, and the one victim order.
//!
//! Tide has one total order over pods (DESIGN.md §4): eviction order, OOM-kill order and
//! suppression order are all [`victim_order`]. Lowest priority first, then the pod that uses
//! most over its request.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Tide's QoS classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QosClass {
    /// Latency-sensitive, exclusive whole cores.
    Lse,
    /// Latency-sensitive, reserved cores.
    Lsr,
    /// Latency-sensitive, shared cores.
    Ls,
    /// Best-effort: runs on reclaimed capacity and is the first to give it back.
    Be,
    /// Node and cluster system components.
    System,
}

impl QosClass {
    /// High-priority classes are protected; only `BE` runs on reclaimed capacity.
    pub fn is_high_priority(self) -> bool {
        !matches!(self, QosClass::Be)
    }

    /// Label value spelling (`LSE`, `LSR`, `LS`, `BE`, `SYSTEM`).
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Lse => "LSE",
            QosClass::Lsr => "LSR",
            QosClass::Ls => "LS",
            QosClass::Be => "BE",
            QosClass::System => "SYSTEM",
        }
    }

    /// Rank inside a priority band: larger is more protected (0 = BE … 4 = SYSTEM).
    pub fn protection_rank(self) -> u8 {
        match self {
            QosClass::Be => 0,
            QosClass::Ls => 1,
            QosClass::Lsr => 2,
            QosClass::Lse => 3,
            QosClass::System => 4,
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A QoS label value that names no class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown QoS class {0:?}: expected one of LSE, LSR, LS, BE, SYSTEM")]
pub struct UnknownQosClass(pub String);

impl FromStr for QosClass {
    type Err = UnknownQosClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "LSE" => Ok(QosClass::Lse),
            "LSR" => Ok(QosClass::Lsr),
            "LS" => Ok(QosClass::Ls),
            "BE" => Ok(QosClass::Be),
            "SYSTEM" => Ok(QosClass::System),
            _ => Err(UnknownQosClass(s.to_owned())),
        }
    }
}

/// Coarse priority bands, compatible with Koordinator's ranges.
///
/// | band | PriorityClass values (Koordinator) | default for |
/// |---|---|---|
/// | `Free` | 3000–3999 | — |
/// | `Batch` | 5000–5999 | `BE` |
/// | `Mid` | 7000–7999 | — |
/// | `Prod` | 9000–9999 | `LSE`, `LSR`, `LS` |
/// | `System` | ≥ 2 000 000 000 | `SYSTEM` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorityBand {
    /// Scavenger work, first to go.
    Free,
    /// Ordinary best-effort batch work.
    Batch,
    /// Mid-priority work on reclaimed capacity (Koordinator's `koord-mid`).
    Mid,
    /// Production, latency-sensitive services.
    Prod,
    /// System-critical pods.
    System,
}

/// Kubernetes' own QoS class (from `status.qosClass`, or derived from requests and limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KubeQosClass {
    /// Every container has equal cpu and memory requests and limits.
    Guaranteed,
    /// Some request or limit set, not Guaranteed.
    Burstable,
    /// No cpu or memory request or limit at all.
    BestEffort,
}

/// Kubernetes' system-critical priority threshold (`SystemCriticalPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Label keys and resource names that classification reads. Comes from the shared config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyRules {
    /// Tide's QoS label (default `tide.dev/qos`).
    pub qos_label: String,
    /// Extended resource names that mark a pod as BE (default `tide.dev/batch-cpu`, `tide.dev/batch-memory`).
    pub batch_resources: Vec<String>,
    /// Also read Koordinator's label, bands and resource names.
    pub koordinator_compat: bool,
}

impl Default for ClassifyRules {
    fn default() -> Self {
        Self {
            qos_label: "tide.dev/qos".into(),
            batch_resources: vec!["tide.dev/batch-cpu".into(), "tide.dev/batch-memory".into()],
            koordinator_compat: false,
        }
    }
}

/// Koordinator's QoS label.
pub const KOORDINATOR_QOS_LABEL: &str = "koordinator.sh/qosClass";
/// Koordinator's batch resources.
pub const KOORDINATOR_BATCH_RESOURCES: [&str; 2] =
    ["kubernetes.io/batch-cpu", "kubernetes.io/batch-memory"];

/// What classification needs to know about a pod. Built from a Kubernetes Pod at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.priority` (the resolved PriorityClass value), if set.
    pub priority: Option<i32>,
    /// Kubernetes QoS class.
    pub kube_qos: Option<KubeQosClass>,
    /// Names of every resource any container requests or limits.
    pub resource_names: Vec<String>,
}

/// Where a classification came from, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassSource {
    /// Tide's QoS label.
    TideLabel,
    /// Koordinator's QoS label (compat mode).
    KoordinatorLabel,
    /// The pod requests batch resources.
    BatchResources,
    /// A system-critical PriorityClass.
    SystemPriority,
    /// A Koordinator priority band (compat mode).
    KoordinatorPriority,
    /// Kubernetes' QoS class.
    KubeQos,
}

/// The result of classifying a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Classification {
    /// Tide QoS class.
    pub qos: QosClass,
    /// Priority band.
    pub band: PriorityBand,
    /// PriorityClass value (0 when the pod has none).
    pub priority: i32,
    /// Which rule decided.
    pub source: ClassSource,
    /// A QoS label was present but named no class and was ignored.
    pub ignored_bad_label: bool,
}

/// The Koordinator band a priority value falls in, if any.
pub fn koordinator_band(priority: i32) -> Option<PriorityBand> {
    match priority {
        3000..=3999 => Some(PriorityBand::Free),
        5000..=5999 => Some(PriorityBand::Batch),
        7000..=7999 => Some(PriorityBand::Mid),
        9000..=9999 => Some(PriorityBand::Prod),
        p if p >= SYSTEM_CRITICAL_PRIORITY => Some(PriorityBand::System),
        _ => None,
    }
}

fn default_band(qos: QosClass) -> PriorityBand {
    match qos {
        QosClass::Be => PriorityBand::Batch,
        QosClass::System => PriorityBand::System,
        QosClass::Lse | QosClass::Lsr | QosClass::Ls => PriorityBand::Prod,
    }
}

/// Classifies a pod. Rules, first match wins:
///
/// 1. Tide's QoS label (`tide.dev/qos`), then in compat mode Koordinator's `koordinator.sh/qosClass`;
/// 2. a system-critical PriorityClass (≥ 2 000 000 000) → `SYSTEM`;
/// 3. batch extended resources (Tide's, and Koordinator's in compat mode) → `BE`;
/// 4. in compat mode, a Koordinator band: `koord-batch`/`koord-free`/`koord-mid` → `BE`, `koord-prod` → `LS`;
/// 5. Kubernetes QoS: `BestEffort` → `BE`, `Guaranteed`/`Burstable`/unknown → `LS`.
///
/// The band is the Koordinator band of the priority value when it has one, else the class's
/// default band. A label naming no class is ignored (and flagged), never fatal.
///
/// ```
/// use tide_api::{classify, ClassifyRules, PodFacts, QosClass};
/// let mut pod = PodFacts::default();
/// pod.labels.insert("tide.dev/qos".into(), "LSR".into());
/// assert_eq!(classify(&pod, &ClassifyRules::default()).qos, QosClass::Lsr);
/// ```
pub fn classify(pod: &PodFacts, rules: &ClassifyRules) -> Classification {
    let priority = pod.priority.unwrap_or(0);
    let mut ignored_bad_label = false;
    let mut decided: Option<(QosClass, ClassSource)> = None;

    let mut labels = vec![(rules.qos_label.as_str(), ClassSource::TideLabel)];
    if rules.koordinator_compat {
        labels.push((KOORDINATOR_QOS_LABEL, ClassSource::KoordinatorLabel));
    }
    for (key, source) in labels {
        if let Some(v) = pod.labels.get(key) {
            match v.parse::<QosClass>() {
                Ok(q) => {
                    decided = Some((q, source));
                    break;
                }
                // Koordinator also has "NONE" meaning "not set".
                Err(_) if v.eq_ignore_ascii_case("none") => {}
                Err(_) => ignored_bad_label = true,
            }
        }
    }

    let asks_batch = |names: &[&str]| {
        pod.resource_names
            .iter()
            .any(|r| names.contains(&r.as_str()))
    };
    let tide_batch: Vec<&str> = rules.batch_resources.iter().map(String::as_str).collect();

    let decided = decided.unwrap_or_else(|| {
        if priority >= SYSTEM_CRITICAL_PRIORITY {
            (QosClass::System, ClassSource::SystemPriority)
        } else if asks_batch(&tide_batch)
            || (rules.koordinator_compat && asks_batch(&KOORDINATOR_BATCH_RESOURCES))
        {
            (QosClass::Be, ClassSource::BatchResources)
        } else if let Some(band) = koordinator_band(priority).filter(|_| rules.koordinator_compat) {
            let q = match band {
                PriorityBand::Free | PriorityBand::Batch | PriorityBand::Mid => QosClass::Be,
                PriorityBand::Prod => QosClass::Ls,
                PriorityBand::System => QosClass::System,
            };
            (q, ClassSource::KoordinatorPriority)
        } else {
            match pod.kube_qos {
                Some(KubeQosClass::BestEffort) => (QosClass::Be, ClassSource::KubeQos),
                _ => (QosClass::Ls, ClassSource::KubeQos),
            }
        }
    });
    let (qos, source) = decided;
    let band = koordinator_band(priority).unwrap_or_else(|| default_band(qos));
    Classification {
        qos,
        band,
        priority,
        source,
        ignored_bad_label,
    }
}

/// What the victim order needs to know about a pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VictimKey {
    /// Classification of the pod.
    pub class: Classification,
    /// Current usage minus request of the ordered resource, in its base unit (may be negative).
    pub usage_over_request: i128,
}

/// The one total order (DESIGN.md §4): `Less` means `a` is evicted, OOM-killed and suppressed
/// before `b`. Lowest band first, then lowest PriorityClass value, then least protected QoS
/// class, then the pod using most over its request. Callers break remaining ties by pod UID so
/// the order is total and stable.
pub fn victim_order(a: &VictimKey, b: &VictimKey) -> Ordering {
    a.class
        .band
        .cmp(&b.class.band)
        .then(a.class.priority.cmp(&b.class.priority))
        .then(
            a.class
                .qos
                .protection_rank()
                .cmp(&b.class.qos.protection_rank()),
        )
        .then(b.usage_over_request.cmp(&a.usage_over_request))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(
        labels: &[(&str, &str)],
        priority: Option<i32>,
        kube: Option<KubeQosClass>,
        res: &[&str],
    ) -> PodFacts {
        PodFacts {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            priority,
            kube_qos: kube,
            resource_names: res.iter().map(|s| (*s).into()).collect(),
        }
    }

    #[test]
    fn classification_table() {
        use KubeQosClass::*;
        let tide = ClassifyRules::default();
        let koord = ClassifyRules {
            koordinator_compat: true,
            ..ClassifyRules::default()
        };
        struct Case {
            name: &'static str,
            pod: PodFacts,
            rules: ClassifyRules,
            qos: QosClass,
            band: PriorityBand,
            source: ClassSource,
        }
        let cases = vec![
            Case {
                name: "tide label wins",
                pod: pod(
                    &[("tide.dev/qos", "LSE")],
                    Some(5500),
                    Some(Burstable),
                    &["tide.dev/batch-cpu"],
                ),
                rules: tide.clone(),
                qos: QosClass::Lse,
                band: PriorityBand::Batch,
                source: ClassSource::TideLabel,
            },
            Case {
                name: "label is case-insensitive",
                pod: pod(&[("tide.dev/qos", "be")], None, Some(Guaranteed), &[]),
                rules: tide.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Batch,
                source: ClassSource::TideLabel,
            },
            Case {
                name: "system priority",
                pod: pod(&[], Some(2_000_001_000), Some(Burstable), &[]),
                rules: tide.clone(),
                qos: QosClass::System,
                band: PriorityBand::System,
                source: ClassSource::SystemPriority,
            },
            Case {
                name: "batch resources",
                pod: pod(&[], None, Some(BestEffort), &["tide.dev/batch-memory"]),
                rules: tide.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Batch,
                source: ClassSource::BatchResources,
            },
            Case {
                name: "guaranteed is LS",
                pod: pod(&[], None, Some(Guaranteed), &["cpu", "memory"]),
                rules: tide.clone(),
                qos: QosClass::Ls,
                band: PriorityBand::Prod,
                source: ClassSource::KubeQos,
            },
            Case {
                name: "besteffort is BE",
                pod: pod(&[], None, Some(BestEffort), &[]),
                rules: tide.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Batch,
                source: ClassSource::KubeQos,
            },
            Case {
                name: "unknown kube qos is LS (protect by default)",
                pod: pod(&[], None, None, &[]),
                rules: tide.clone(),
                qos: QosClass::Ls,
                band: PriorityBand::Prod,
                source: ClassSource::KubeQos,
            },
            Case {
                name: "koordinator label ignored without compat",
                pod: pod(
                    &[("koordinator.sh/qosClass", "BE")],
                    None,
                    Some(Burstable),
                    &[],
                ),
                rules: tide.clone(),
                qos: QosClass::Ls,
                band: PriorityBand::Prod,
                source: ClassSource::KubeQos,
            },
            Case {
                name: "koordinator label in compat",
                pod: pod(
                    &[("koordinator.sh/qosClass", "LSR")],
                    Some(9100),
                    Some(Guaranteed),
                    &[],
                ),
                rules: koord.clone(),
                qos: QosClass::Lsr,
                band: PriorityBand::Prod,
                source: ClassSource::KoordinatorLabel,
            },
            Case {
                name: "koordinator batch resource",
                pod: pod(
                    &[],
                    Some(5000),
                    Some(BestEffort),
                    &["kubernetes.io/batch-cpu"],
                ),
                rules: koord.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Batch,
                source: ClassSource::BatchResources,
            },
            Case {
                name: "koord-mid band is BE",
                pod: pod(&[], Some(7000), Some(Burstable), &[]),
                rules: koord.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Mid,
                source: ClassSource::KoordinatorPriority,
            },
            Case {
                name: "koord-free band",
                pod: pod(&[], Some(3500), Some(Burstable), &[]),
                rules: koord.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Free,
                source: ClassSource::KoordinatorPriority,
            },
            Case {
                name: "koord-prod band is LS",
                pod: pod(&[], Some(9999), Some(BestEffort), &[]),
                rules: koord.clone(),
                qos: QosClass::Ls,
                band: PriorityBand::Prod,
                source: ClassSource::KoordinatorPriority,
            },
            Case {
                name: "koordinator NONE falls through",
                pod: pod(
                    &[("koordinator.sh/qosClass", "NONE")],
                    None,
                    Some(BestEffort),
                    &[],
                ),
                rules: koord.clone(),
                qos: QosClass::Be,
                band: PriorityBand::Batch,
                source: ClassSource::KubeQos,
            },
        ];
        for c in cases {
            let got = classify(&c.pod, &c.rules);
            assert_eq!(
                (got.qos, got.band, got.source),
                (c.qos, c.band, c.source),
                "{}",
                c.name
            );
            assert!(!got.ignored_bad_label, "{}", c.name);
        }
    }

    #[test]
    fn bad_label_is_flagged_and_ignored() {
        let p = pod(
            &[("tide.dev/qos", "GOLD")],
            None,
            Some(KubeQosClass::BestEffort),
            &[],
        );
        let got = classify(&p, &ClassifyRules::default());
        assert_eq!(got.qos, QosClass::Be);
        assert!(got.ignored_bad_label);
        assert!(
            "GOLD"
                .parse::<QosClass>()
                .unwrap_err()
                .to_string()
                .contains("\"GOLD\"")
        );
    }

    #[test]
    fn victim_order_is_priority_then_overuse() {
        let rules = ClassifyRules::default();
        let key = |labels: &[(&str, &str)], prio: i32, over: i128| VictimKey {
            class: classify(
                &pod(labels, Some(prio), Some(KubeQosClass::Burstable), &[]),
                &rules,
            ),
            usage_over_request: over,
        };
        let be_low = key(&[("tide.dev/qos", "BE")], 0, 10);
        let be_low_big = key(&[("tide.dev/qos", "BE")], 0, 500);
        let be_high = key(&[("tide.dev/qos", "BE")], 100, 10_000);
        let ls = key(&[("tide.dev/qos", "LS")], 0, 99_999);
        let lse = key(&[("tide.dev/qos", "LSE")], 0, 99_999);
        let system = key(&[], SYSTEM_CRITICAL_PRIORITY, 99_999);
        let mut all = vec![system, lse, ls, be_high, be_low, be_low_big];
        all.sort_by(victim_order);
        assert_eq!(all, vec![be_low_big, be_low, be_high, ls, lse, system]);
    }
}
