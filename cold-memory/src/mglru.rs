//! Multi-gen LRU (MGLRU): cold file pages by generation age, from the kernel's `lru_gen`
//! debugfs file, and eviction of old generations through the same file.
//!
//! Format (Documentation/admin-guide/mm/multigen_lru.rst):
//!
//! ```text
//! memcg  <id> <path>
//!  node  <nid>
//!         <gen> <age_in_ms> <nr_anon_pages> <nr_file_pages>
//! ```

/// One generation of one memcg on one NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// memcg id.
    pub memcg: u64,
    /// memcg path (`/` for the root).
    pub path: String,
    /// NUMA node.
    pub node: u32,
    /// Generation number.
    pub generation: u64,
    /// Age, ms.
    pub age_ms: u64,
    /// Anonymous pages.
    pub anon_pages: u64,
    /// File pages.
    pub file_pages: u64,
}

/// Parses `lru_gen`; lines it does not recognise are skipped (the kernel may add columns).
pub fn parse(text: &str) -> Vec<Generation> {
    let mut out = Vec::new();
    let (mut memcg, mut path, mut node) = (None::<u64>, String::new(), None::<u32>);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["memcg", id, rest @ ..] => {
                memcg = id.parse().ok();
                path = rest.first().map_or_else(String::new, |p| (*p).to_owned());
                node = None;
            }
            ["node", nid, ..] => node = nid.parse().ok(),
            [generation, age, anon, file, ..] => {
                let nums = (generation.parse(), age.parse(), anon.parse(), file.parse());
                if let (
                    Some(m),
                    Some(n),
                    (Ok(generation), Ok(age_ms), Ok(anon_pages), Ok(file_pages)),
                ) = (memcg, node, nums)
                {
                    out.push(Generation {
                        memcg: m,
                        path: path.clone(),
                        node: n,
                        generation,
                        age_ms,
                        anon_pages,
                        file_pages,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Cold file bytes of the memcg at `path` (all memcgs when `None`): file pages in generations
/// at least `min_age_ms` old.
pub fn cold_file_bytes(
    gens: &[Generation],
    path: Option<&str>,
    min_age_ms: u64,
    page_size: u64,
) -> u64 {
    gens.iter()
        .filter(|g| path.is_none_or(|p| g.path == p) && g.age_ms >= min_age_ms)
        .map(|g| g.file_pages.saturating_mul(page_size))
        .fold(0, u64::saturating_add)
}

/// The aging commands that start a new generation for every memcg and node
/// (`+ <memcg> <node> <max_gen> 1 1`: age anon too — otherwise the anon generations pin
/// `min_seq` and the kernel cannot add a generation — and force a full scan). Aging moves pages
/// accessed since the last walk to the new, youngest generation, so what stays behind in the
/// older generations has not been touched since.
pub fn aging_commands(gens: &[Generation]) -> Vec<String> {
    let mut max: std::collections::BTreeMap<(u64, u32), u64> = std::collections::BTreeMap::new();
    for g in gens {
        let e = max.entry((g.memcg, g.node)).or_insert(g.generation);
        *e = (*e).max(g.generation);
    }
    max.into_iter()
        .map(|((memcg, node), generation)| format!("+ {memcg} {node} {generation} 1 1"))
        .collect()
}

/// The eviction commands (one per memcg and node) that drop file pages of generations at least
/// `min_age_ms` old: `- <memcg> <node> <gen> 0 <nr_to_reclaim>` with swappiness 0 (file pages
/// only), up to `budget_pages` in all, oldest first. The kernel never evicts its two youngest
/// generations, so `<gen>` is capped at `max_gen − 2`.
pub fn evict_commands(gens: &[Generation], min_age_ms: u64, budget_pages: u64) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut max_seq: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    for g in gens {
        let e = max_seq.entry((g.memcg, g.node)).or_insert(g.generation);
        *e = (*e).max(g.generation);
    }
    let mut by_target: BTreeMap<(u64, u32), (u64, u64)> = BTreeMap::new();
    for g in gens
        .iter()
        .filter(|g| g.age_ms >= min_age_ms && g.file_pages > 0)
    {
        let Some(cap) = max_seq[&(g.memcg, g.node)].checked_sub(2) else {
            continue;
        };
        if g.generation > cap {
            continue;
        }
        let e = by_target
            .entry((g.memcg, g.node))
            .or_insert((g.generation, 0));
        e.0 = e.0.max(g.generation);
        e.1 = e.1.saturating_add(g.file_pages);
    }
    let mut left = budget_pages;
    let mut out = Vec::new();
    for ((memcg, node), (generation, pages)) in by_target {
        if left == 0 {
            break;
        }
        let n = pages.min(left);
        left -= n;
        out.push(format!("- {memcg} {node} {generation} 0 {n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
memcg     1 /
 node     0
          4      91023       1200      50000
          5      31000        300      20000
          6       1200        900       3000
          7        100       4000        500
memcg    37 /sandbox
 node     0
          2      70000          0       8000
          3        500         10        100
";

    #[test]
    fn parses_generations_and_sums_cold_file_pages() {
        let g = parse(SAMPLE);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0].path, "/");
        assert_eq!(g[4].memcg, 37);
        // ≥ 30 s old: root gens 4, 5 (70,000 pages) + sandbox gen 2 (8,000).
        assert_eq!(cold_file_bytes(&g, None, 30_000, 4096), 78_000 * 4096);
        assert_eq!(
            cold_file_bytes(&g, Some("/sandbox"), 30_000, 4096),
            8_000 * 4096
        );
        assert_eq!(cold_file_bytes(&g, None, 1_000_000, 4096), 0);
        assert!(parse("garbage\n1 2\n").is_empty());
    }

    #[test]
    fn aging_starts_a_new_generation_per_memcg_and_node() {
        let g = parse(SAMPLE);
        assert_eq!(aging_commands(&g), vec!["+ 1 0 7 1 1", "+ 37 0 3 1 1"]);
    }

    #[test]
    fn eviction_commands_take_old_generations_within_budget() {
        let g = parse(SAMPLE);
        assert_eq!(
            evict_commands(&g, 30_000, 1_000_000),
            // Root: max gen 7, so gens up to 5 may go (4 and 5 are old enough). /sandbox: max
            // gen 3, so gen 2 is among the two youngest the kernel never evicts: kept.
            vec!["- 1 0 5 0 70000"]
        );
        assert_eq!(evict_commands(&g, 30_000, 10_000), vec!["- 1 0 5 0 10000"]);
    }
}
