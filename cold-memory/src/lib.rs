//! `tide-coldmem`: finds and reclaims cold page cache on nodes and inside sandbox VMs
//! (DESIGN.md §8).
//!
//! Not started yet: detection backends (DAMON, MGLRU, memcg statistics), reclaim backends
//! (DAMON `pageout`, `memory.reclaim`, `fadvise`), the refault/PSI guard and the in-VM daemon
//! are the subject of the "Cold memory" issue. The node agent's planner already has the
//! action it will serve (`ReclaimColdMemory`).
