//! The host's side of the sandbox VMs' cold-memory daemons (DESIGN.md §8): one
//! [`HostLink`] per sandbox, reports turned into the memory credit the estimator and the
//! planner use, and the planner's "reclaim cold memory" turned into targets.
//!
//! Why only sandboxes: for runc pods the estimator's memory signal is the kubelet's working
//! set, which already leaves inactive page cache out, so crediting the node's cold page cache
//! again would count it twice. A sandbox VM's page cache is guest RAM — anonymous memory of
//! the VMM on the host, inside the pod's working set — so what the guest finds cold and can
//! return (free page reporting) is memory the host does not have yet but can get on demand.
//!
//! The credit is what remains cold (`cold − reclaimed` of the latest report) over the
//! sandboxes whose link is up and whose report is fresh, capped at the HP memory in use: a
//! guest can claim anything, but it cannot free more than the pods hold (the cap is applied in
//! [`Agent::decide`](crate::agent::Agent::decide), which knows HP usage).
//!
//! Sandboxes are named on the command line (`vsock://CID:PORT`, `hvsock://PATH:PORT`,
//! `unix://PATH`) or found by a pattern of hybrid-vsock sockets (Kata runtime-rs:
//! `/run/kata/*/root/kata.hvsock`), looked at again every tick: a new socket gets a link, a
//! vanished one loses its link.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tide_coldmem::channel::{Endpoint, HostLink, LinkState};
use tide_coldmem::proto::Target;

/// How the agent finds and treats sandboxes.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Sandboxes named explicitly.
    pub endpoints: Vec<Endpoint>,
    /// A path pattern of hybrid-vsock sockets (`*` matches within one path component) and
    /// the daemon's port behind each.
    pub discover: Option<(String, u32)>,
    /// Reports older than this are not credited.
    pub stale_after: Duration,
    /// The standing target every daemon is held to (`reclaim_bytes` 0).
    pub target: Target,
}

impl Default for SandboxOptions {
    /// No sandboxes; reports older than a minute are stale; daemons held to 1 GiB per period
    /// and a 30 s age threshold.
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            discover: None,
            stale_after: Duration::from_secs(60),
            target: Target {
                max_bytes_per_period: 1 << 30,
                min_age_ms: 30_000,
                reclaim_bytes: 0,
            },
        }
    }
}

/// One sandbox as this tick sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    /// The endpoint, as text (metrics label).
    pub endpoint: String,
    /// The link is up.
    pub connected: bool,
    /// Connected and the latest report is recent enough to credit.
    pub fresh: bool,
    /// Cold bytes left after the latest period's reclaim (`cold − reclaimed`).
    pub remaining_cold: u64,
}

/// What one link's state means now (pure).
pub fn view(endpoint: &str, st: &LinkState, now: Instant, stale_after: Duration) -> SandboxView {
    let latest = st.report.as_ref().filter(|(_, r)| r.seq > 0);
    let fresh = st.connected
        && latest.is_some_and(|(at, _)| now.saturating_duration_since(*at) <= stale_after);
    SandboxView {
        endpoint: endpoint.to_owned(),
        connected: st.connected,
        fresh,
        remaining_cold: latest.map_or(0, |(_, r)| r.cold_bytes.saturating_sub(r.reclaimed_bytes)),
    }
}

/// Cold bytes the fresh sandboxes can give back (before the HP cap).
pub fn fresh_cold(views: &[SandboxView]) -> u64 {
    views
        .iter()
        .filter(|v| v.fresh)
        .map(|v| v.remaining_cold)
        .fold(0u64, u64::saturating_add)
}

/// Splits `bytes` over sandboxes in proportion to what each has cold, never asking one for
/// more than it has; the shares add up to `min(bytes, Σ cold)` (largest remainders get the
/// odd bytes).
pub fn split_reclaim(bytes: u64, cold: &[u64]) -> Vec<u64> {
    let total: u128 = cold.iter().map(|&c| u128::from(c)).sum();
    if total == 0 {
        return vec![0; cold.len()];
    }
    let want = u128::from(bytes).min(total);
    let mut shares: Vec<(u128, u128)> = cold
        .iter()
        .map(|&c| {
            let exact = want * u128::from(c);
            (exact / total, exact % total)
        })
        .collect();
    let mut left = want - shares.iter().map(|s| s.0).sum::<u128>();
    let mut order: Vec<usize> = (0..cold.len()).collect();
    order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        if shares[i].0 < u128::from(cold[i]) {
            shares[i].0 += 1;
            left -= 1;
        }
    }
    shares
        .into_iter()
        .map(|(s, _)| u64::try_from(s).unwrap_or(u64::MAX))
        .collect()
}

/// Paths matching `pattern`, where a component may hold one `*` (matching any run of
/// characters within that component). Sorted; unreadable directories match nothing.
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut found = vec![if pattern.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if let Some((pre, post)) = comp.split_once('*') {
                let Ok(dir) = std::fs::read_dir(if base.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base
                }) else {
                    continue;
                };
                for e in dir.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if name.len() >= pre.len() + post.len()
                        && name.starts_with(pre)
                        && name.ends_with(post)
                    {
                        next.push(base.join(&*name));
                    }
                }
            } else {
                let p = base.join(comp);
                if std::fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
            }
        }
        found = next;
    }
    found.sort();
    found
}

/// The links to every sandbox on this node.
#[derive(Debug)]
pub struct Sandboxes {
    opts: SandboxOptions,
    links: BTreeMap<String, Linked>,
}

/// One link and the last of its errors already reported (each distinct error is reported
/// once, not every tick while a sandbox stays unreachable).
#[derive(Debug)]
struct Linked {
    link: HostLink,
    reported: Option<String>,
}

impl Sandboxes {
    /// Links to the sandboxes named in `opts` (and those its pattern finds now).
    pub fn new(opts: SandboxOptions) -> Self {
        let mut s = Self {
            opts,
            links: BTreeMap::new(),
        };
        s.refresh();
        s
    }

    /// Whether any sandbox is configured or may be discovered.
    pub fn is_enabled(&self) -> bool {
        !self.opts.endpoints.is_empty() || self.opts.discover.is_some()
    }

    /// Links new sandboxes, drops links to discovered ones that vanished; returns problems:
    /// a link thread that could not start, and each link's new error while it is down.
    pub fn refresh(&mut self) -> Vec<String> {
        let mut want = self.opts.endpoints.clone();
        if let Some((pattern, port)) = &self.opts.discover {
            want.extend(
                expand(pattern)
                    .into_iter()
                    .map(|path| Endpoint::HybridVsock { path, port: *port }),
            );
        }
        let keys: std::collections::BTreeSet<String> =
            want.iter().map(Endpoint::to_string).collect();
        self.links.retain(|k, _| keys.contains(k));
        let mut errors = Vec::new();
        for e in want {
            let key = e.to_string();
            if self.links.contains_key(&key) {
                continue;
            }
            match HostLink::spawn(e, Some(self.opts.target.clone())) {
                Ok(link) => {
                    self.links.insert(
                        key,
                        Linked {
                            link,
                            reported: None,
                        },
                    );
                }
                Err(err) => errors.push(format!("sandbox {key}: {err}")),
            }
        }
        for (key, l) in &mut self.links {
            let st = l.link.state();
            if st.connected {
                l.reported = None;
            } else if st.last_error.is_some() && st.last_error != l.reported {
                errors.push(format!(
                    "sandbox {key}: {}",
                    st.last_error.as_deref().unwrap_or_default()
                ));
                l.reported = st.last_error;
            }
        }
        errors
    }

    /// Every sandbox as of `now`.
    pub fn views(&self, now: Instant) -> Vec<SandboxView> {
        self.links
            .iter()
            .map(|(k, l)| view(k, &l.link.state(), now, self.opts.stale_after))
            .collect()
    }

    /// Called every tick with what the planner wants reclaimed (0: nothing): the fresh
    /// sandboxes are asked for `bytes` in their next period, split by what each has cold
    /// (sent even if the same as last tick: each ask is one period's worth); every other link
    /// is held to the standing target. Returns the bytes asked for (0: no fresh sandbox has
    /// cold memory).
    pub fn request_reclaim(&self, bytes: u64, now: Instant) -> u64 {
        let views = self.views(now);
        let fresh: Vec<&SandboxView> = views.iter().filter(|v| v.fresh).collect();
        let cold: Vec<u64> = fresh.iter().map(|v| v.remaining_cold).collect();
        let shares: BTreeMap<&str, u64> = fresh
            .iter()
            .map(|v| v.endpoint.as_str())
            .zip(split_reclaim(bytes, &cold))
            .collect();
        let mut asked = 0u64;
        for (key, Linked { link, .. }) in &self.links {
            match shares.get(key.as_str()) {
                Some(&share) if share > 0 => {
                    link.push_target(Target {
                        reclaim_bytes: share,
                        ..self.opts.target.clone()
                    });
                    asked = asked.saturating_add(share);
                }
                _ => link.set_target(self.opts.target.clone()),
            }
        }
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide_coldmem::proto::Report;

    fn report(seq: u64, cold: u64, reclaimed: u64) -> Report {
        Report {
            seq,
            backend: "mglru".into(),
            cold_bytes: cold,
            age_ms: 30_000,
            reclaimed_bytes: reclaimed,
            refaults: 0,
            psi_some_avg10: Some(0.0),
            max_bytes_per_period: 1 << 30,
            min_age_ms: 30_000,
        }
    }

    #[test]
    fn only_fresh_connected_reports_count() {
        let now = Instant::now();
        let stale = Duration::from_secs(60);
        let st = |connected, age: u64, r: Report| {
            let mut s = LinkState::default();
            s.connected = connected;
            s.report = Some((now.checked_sub(Duration::from_secs(age)).unwrap(), r));
            s.reports = 3;
            s
        };
        let views = vec![
            view("a", &st(true, 5, report(3, 500, 100)), now, stale),
            view("b", &st(true, 90, report(9, 1_000, 0)), now, stale),
            view("c", &st(false, 5, report(2, 1_000, 0)), now, stale),
            // A hello carries no measurement.
            view("d", &st(true, 1, report(0, 0, 0)), now, stale),
            // More reclaimed than was cold at the start: nothing left, not an underflow.
            view("e", &st(true, 1, report(4, 100, 300)), now, stale),
            view("f", &LinkState::default(), now, stale),
        ];
        let fresh: Vec<_> = views.iter().map(|v| v.fresh).collect();
        assert_eq!(fresh, [true, false, false, false, true, false]);
        assert_eq!(views[0].remaining_cold, 400);
        assert_eq!(views[4].remaining_cold, 0);
        assert_eq!(fresh_cold(&views), 400);
    }

    #[test]
    fn reclaim_is_split_by_cold_and_never_over_asks() {
        assert_eq!(split_reclaim(100, &[300, 100]), [75, 25]);
        assert_eq!(split_reclaim(10, &[1, 1, 1]), [1, 1, 1]);
        assert_eq!(split_reclaim(2, &[1, 1, 1]), [1, 1, 0]);
        assert_eq!(split_reclaim(7, &[0, 0]), [0, 0]);
        assert_eq!(split_reclaim(7, &[]), Vec::<u64>::new());
        let s = split_reclaim(1_000_003, &[3 << 30, 1 << 30, 7]);
        assert_eq!(s.iter().sum::<u64>(), 1_000_003);
        assert!(s[0] > 2 * s[1] && s[2] <= 7, "{s:?}");
        // No overflow at the extremes.
        let s = split_reclaim(u64::MAX, &[u64::MAX, u64::MAX]);
        assert_eq!(s, [1 << 63, (1 << 63) - 1]);
    }

    #[test]
    fn patterns_expand_within_components() {
        let dir = std::env::temp_dir().join(format!("tide-sbx-glob-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for id in ["aaa", "bbb", "ccc"] {
            std::fs::create_dir_all(dir.join(id).join("root")).unwrap();
        }
        std::fs::write(dir.join("aaa/root/kata.hvsock"), "").unwrap();
        std::fs::write(dir.join("ccc/root/kata.hvsock"), "").unwrap();
        std::fs::write(dir.join("ccc/root/other.sock"), "").unwrap();
        let p = format!("{}/*/root/kata.hvsock", dir.display());
        assert_eq!(
            expand(&p),
            [
                dir.join("aaa/root/kata.hvsock"),
                dir.join("ccc/root/kata.hvsock")
            ]
        );
        let p = format!("{}/ccc/root/*.sock", dir.display());
        assert_eq!(expand(&p), [dir.join("ccc/root/other.sock")]);
        assert!(expand(&format!("{}/nope/*/x", dir.display())).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
