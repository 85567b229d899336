//! `tide-coldmem`: finds and reclaims cold page cache on nodes and inside sandbox VMs
//! (DESIGN.md §8).
//!
//! Built so far (pure or file-level, tested against captured formats and fake trees):
//! - detection: [`mglru`] (generation ages from `lru_gen`), [`damon`] (paddr monitoring with
//!   anonymous pages filtered out, `stat` scheme), [`memcg`] (`inactive_file`, the universal
//!   fallback);
//! - reclaim: MGLRU eviction commands, DAMON `pageout` with a quota, cgroup v2
//!   `memory.reclaim`;
//! - the refault/PSI [`guard`] that sizes each period's reclaim;
//! - the guest ↔ host message format ([`proto`]).
//!
//! Not built yet: the probing daemon loop and binary, `fadvise` per file, the vsock transport,
//! the host side in the agent, and the VM test (see the "Cold memory" issue).

pub mod channel;
pub mod daemon;
pub mod damon;
pub mod files;
pub mod guard;
pub mod kernel_text;
pub mod memcg;
pub mod mglru;
pub mod proto;
