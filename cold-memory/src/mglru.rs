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

/// The oldest-first generations of each lruvec (memcg, node) whose pages are cold: a page left
/// in generation `g` has not been seen accessed since generation `g + 1` was made (aging moves
/// the pages it finds accessed to the youngest generation), so `g` is cold when `g + 1` is at
/// least `min_age_ms` old. The kernel never evicts the two youngest generations, so `g` is also
/// at most `max_gen − 2`. Returns, per lruvec, the youngest cold generation and the file pages
/// in it and all older ones.
pub fn cold_generations(
    gens: &[Generation],
    min_age_ms: u64,
) -> std::collections::BTreeMap<(u64, u32), (u64, u64)> {
    use std::collections::BTreeMap;
    let mut by_lruvec: BTreeMap<(u64, u32), Vec<&Generation>> = BTreeMap::new();
    for g in gens {
        by_lruvec.entry((g.memcg, g.node)).or_default().push(g);
    }
    let mut out = BTreeMap::new();
    for (key, mut list) in by_lruvec {
        list.sort_by_key(|g| g.generation);
        let Some(max) = list.last().map(|g| g.generation) else {
            continue;
        };
        let mut youngest_cold = None;
        let mut pages = 0u64;
        for pair in list.windows(2) {
            let (g, next) = (pair[0], pair[1]);
            if g.generation.saturating_add(2) > max || next.age_ms < min_age_ms {
                break;
            }
            youngest_cold = Some(g.generation);
            pages = pages.saturating_add(g.file_pages);
        }
        if let Some(generation) = youngest_cold {
            out.insert(key, (generation, pages));
        }
    }
    out
}

/// Cold file bytes, per [`cold_generations`], of the memcg at cgroup path `prefix` and every
/// memcg below it (`lru_gen` lists each memcg on its own; a cgroup's cold memory is its
/// subtree's). `/` is the whole node.
pub fn cold_file_bytes(gens: &[Generation], prefix: &str, min_age_ms: u64, page_size: u64) -> u64 {
    let prefix = prefix.trim_end_matches('/');
    let under = |p: &str| {
        prefix.is_empty()
            || p == prefix
            || p.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
    };
    let mut paths = std::collections::BTreeMap::new();
    for g in gens {
        paths.entry(g.memcg).or_insert(g.path.as_str());
    }
    cold_generations(gens, min_age_ms)
        .iter()
        .filter(|((memcg, _), _)| paths.get(memcg).is_some_and(|p| under(p)))
        .map(|(_, (_, pages))| pages.saturating_mul(page_size))
        .fold(0, u64::saturating_add)
}

/// The aging commands that start a new generation for every memcg and node
/// (`+ <memcg> <node> <max_gen> <can_swap> 1`, forcing a full scan). Aging moves pages
/// accessed (through page tables) since the last walk to the new, youngest generation, so what
/// stays behind in the older generations has not been touched since. Page cache read with
/// `read(2)` is not mapped: the kernel protects it at eviction time instead, by how often it
/// was read (its tier), and moves it to a younger generation rather than evicting it.
/// `can_swap` is 1 only when the kernel has swap (anon generations must be able to age too, or
/// they pin the minimum and no generation is added).
pub fn aging_commands(gens: &[Generation], can_swap: bool) -> Vec<String> {
    let mut max: std::collections::BTreeMap<(u64, u32), u64> = std::collections::BTreeMap::new();
    for g in gens {
        let e = max.entry((g.memcg, g.node)).or_insert(g.generation);
        *e = (*e).max(g.generation);
    }
    max.into_iter()
        .map(|((memcg, node), generation)| {
            format!("+ {memcg} {node} {generation} {} 1", u8::from(can_swap))
        })
        .collect()
}

/// The eviction commands (one per memcg and node) that drop the file pages of the cold
/// generations ([`cold_generations`]): `- <memcg> <node> <gen> 0 <nr_to_reclaim>` with
/// swappiness 0 (file pages only), up to `budget_pages` in all.
pub fn evict_commands(gens: &[Generation], min_age_ms: u64, budget_pages: u64) -> Vec<String> {
    let mut left = budget_pages;
    let mut out = Vec::new();
    for ((memcg, node), (generation, pages)) in cold_generations(gens, min_age_ms) {
        if left == 0 {
            break;
        }
        if pages == 0 {
            continue;
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
          1      90000          0       6000
          2      70000          0       8000
          3        500         10        100
";

    #[test]
    fn parses_generations_and_sums_cold_file_pages() {
        let g = parse(SAMPLE);
        assert_eq!(g.len(), 7);
        assert_eq!(g[0].path, "/");
        assert_eq!(g[4].memcg, 37);
        // Idle ≥ 30 s: root gen 4 (gen 5 was made 31 s ago; gen 5 itself is younger: gen 6
        // is only 1.2 s old) and /sandbox gen 1 (gen 2 is 70 s old; gen 2 is among the two
        // youngest, never evicted).
        assert_eq!(cold_file_bytes(&g, "/", 30_000, 4096), 56_000 * 4096);
        assert_eq!(cold_file_bytes(&g, "/sandbox", 30_000, 4096), 6_000 * 4096);
        // Idle ≥ 1 s: root gens 4 and 5 (gen 6 is max − 1: kept).
        assert_eq!(cold_file_bytes(&g, "/", 1_000, 4096), 76_000 * 4096);
        assert_eq!(cold_file_bytes(&g, "/", 1_000_000, 4096), 0);
        assert!(parse("garbage\n1 2\n- 1 0 3 0 5\n").is_empty());
    }

    #[test]
    fn a_cgroups_cold_bytes_are_its_subtrees() {
        let mut text = SAMPLE.to_string();
        text.push_str("memcg    38 /sandbox/pod\n node     0\n  1  90000  0  100\n  2  70000  0  7\n  3  10  0  1\n");
        text.push_str("memcg    39 /sandboxes\n node     0\n  1  90000  0  200\n  2  70000  0  7\n  3  10  0  1\n");
        let g = parse(&text);
        let under = |p: &str| cold_file_bytes(&g, p, 30_000, 1);
        assert_eq!(under("/sandbox"), 6_000 + 100, "itself and /sandbox/pod");
        assert_eq!(under("/sandbox/"), 6_100);
        assert_eq!(under("/sandbox/pod"), 100);
        assert_eq!(
            under("/sandboxes"),
            200,
            "a sibling sharing a prefix is not below"
        );
        assert_eq!(under("/"), 50_000 + 6_000 + 100 + 200, "the whole node");
        assert_eq!(under(""), under("/"));
        assert_eq!(under("/absent"), 0);
    }

    #[test]
    fn aging_starts_a_new_generation_per_memcg_and_node() {
        let g = parse(SAMPLE);
        assert_eq!(
            aging_commands(&g, false),
            vec!["+ 1 0 7 0 1", "+ 37 0 3 0 1"]
        );
        assert_eq!(aging_commands(&g, true)[0], "+ 1 0 7 1 1");
    }

    #[test]
    fn eviction_commands_take_cold_generations_within_budget() {
        let g = parse(SAMPLE);
        assert_eq!(
            evict_commands(&g, 30_000, 1_000_000),
            vec!["- 1 0 4 0 50000", "- 37 0 1 0 6000"]
        );
        assert_eq!(evict_commands(&g, 30_000, 10_000), vec!["- 1 0 4 0 10000"]);
        assert_eq!(evict_commands(&g, 1_000, 1_000_000)[0], "- 1 0 5 0 70000");
        assert!(evict_commands(&g, 1_000_000, 1_000_000).is_empty());
    }
}
