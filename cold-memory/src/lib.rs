//! `tide-coldmem`: finds and reclaims cold page cache on nodes and inside sandbox VMs
//! (DESIGN.md §8).
//!
//! - detection and reclaim backends: [`damon`] (paddr monitoring with anonymous pages
//!   filtered out, `pageout` with a quota), [`mglru`] (generation ages from `lru_gen`, eviction
//!   of cold generations, aging), [`memcg`] (`inactive_file`, cgroup v2 `memory.reclaim`: the
//!   universal fallback), [`files`] (`cachestat(2)` and the mount's atime rule, per-file
//!   `posix_fadvise(DONTNEED)`);
//! - the refault/PSI [`guard`] that sizes each period's reclaim;
//! - the loop ([`daemon`]): probe, detect, reclaim within the budget, measure, adjust;
//! - guest ↔ host: the frame format ([`proto`]) and its transports ([`channel`]: vsock,
//!   hybrid vsock, virtio-serial, Unix sockets; the guest's end and the host's `HostLink`,
//!   which the agent uses);
//! - [`kernel_text`]: kernel text-file parsers shared with the agent.
//!
//! The `tide-coldmem` binary is the daemon (built statically for sandbox VMs) and, with
//! `--connect`, the host's end. See docs/cold-memory.md for the design and measured figures.

pub mod channel;
pub mod daemon;
pub mod damon;
pub mod files;
pub mod guard;
pub mod kernel_text;
pub mod memcg;
pub mod mglru;
pub mod proto;
