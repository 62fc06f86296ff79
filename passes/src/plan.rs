//! `plan`: memory for a schedule. Every computed buffer lives from the step that first writes it
//! to the last step that reads it (graph outputs to the end); buffers are placed in one arena,
//! reusing the space of dead ones (first fit), and written in place over an input that dies in
//! the same elementwise kernel when the two are accessed identically.
//!
//! What is *kept* for the backward at all was decided by fusion: only realized values (matmul
//! and reduction results, broadcast intermediates, outputs) have buffers; cheap elementwise
//! values are recomputed inside the kernels that need them.

use crate::kernel::{BufferId, KOp, Role, Schedule, Step};

/// Arena placement granularity (a cache line; also keeps every buffer SIMD-aligned).
pub const ALIGN: usize = 64;

/// What [`plan_memory`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Peak bytes of the arena.
    pub arena_bytes: usize,
    /// Bytes if every computed buffer had its own memory (what an eager runtime holds when it
    /// keeps every intermediate).
    pub naive_bytes: usize,
    /// Buffers written in place over a dying input.
    pub in_place: usize,
}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Assigns arena offsets to every `Computed` buffer of `s` and sets `s.arena_bytes`.
pub fn plan_memory(s: &mut Schedule) -> MemoryPlan {
    let n = s.buffers.len();
    let end = s.steps.len();
    let mut first_write = vec![usize::MAX; n];
    let mut last_use = vec![0usize; n];
    for (t, step) in s.steps.iter().enumerate() {
        let (reads, writes) = (step.reads(), step.writes());
        for w in writes {
            first_write[w] = first_write[w].min(t);
            last_use[w] = last_use[w].max(t);
        }
        for r in reads {
            last_use[r] = last_use[r].max(t);
        }
    }
    for (b, _) in &s.outputs {
        last_use[*b] = end;
    }

    let mut plan = MemoryPlan::default();
    // Free space as sorted, coalesced (offset, len) intervals below `top`.
    let mut free: Vec<(usize, usize)> = Vec::new();
    let mut top = 0usize;
    let mut slot: Vec<Option<(usize, usize)>> = vec![None; n];
    for t in 0..end {
        let born: Vec<BufferId> =
            (0..n).filter(|&b| first_write[b] == t && s.buffers[b].role == Role::Computed).collect();
        for b in born {
            let size = round_up(s.buffers[b].bytes().max(1));
            plan.naive_bytes += s.buffers[b].bytes();
            if let Some(victim) = in_place_victim(s, t, b, &last_use, &slot) {
                let taken = slot[victim].take();
                s.buffers[victim].arena_offset = taken.map(|(off, _)| off);
                slot[b] = taken;
                plan.in_place += 1;
                continue;
            }
            let place = match free.iter().position(|&(_, len)| len >= size) {
                Some(i) => {
                    let (off, len) = free[i];
                    if len == size {
                        free.remove(i);
                    } else {
                        free[i] = (off + size, len - size);
                    }
                    off
                }
                None => {
                    top += size;
                    top - size
                }
            };
            slot[b] = Some((place, size));
            plan.arena_bytes = plan.arena_bytes.max(place + size);
        }
        // Buffers whose last use was this step die now.
        for b in 0..n {
            if last_use[b] == t && first_write[b] <= t {
                if let Some((off, len)) = slot[b] {
                    s.buffers[b].arena_offset = Some(off);
                    release(&mut free, off, len);
                    slot[b] = None;
                }
            }
        }
    }
    for (b, sl) in slot.iter().enumerate() {
        if let Some((off, _)) = sl {
            s.buffers[b].arena_offset = Some(*off);
        }
    }
    s.arena_bytes = plan.arena_bytes;
    plan
}

/// A buffer that dies at step `t` and that `b` (written at `t`) can overwrite: same size, read
/// by the elementwise kernel exactly where `b` is stored, not an output.
fn in_place_victim(
    s: &Schedule,
    t: usize,
    b: BufferId,
    last_use: &[usize],
    slot: &[Option<(usize, usize)>],
) -> Option<BufferId> {
    let Step::Kernel(k) = &s.steps[t] else { return None };
    if !k.reduce_axes.is_empty() {
        return None;
    }
    let store = k.stores.iter().find(|st| st.buffer == b)?;
    let outputs: Vec<BufferId> = s.outputs.iter().map(|(o, _)| *o).collect();
    k.instrs.iter().find_map(|i| match &i.op {
        KOp::Load { buffer, access }
            if *access == store.access
                && last_use[*buffer] == t
                && slot[*buffer].is_some()
                && s.buffers[*buffer].bytes() == s.buffers[b].bytes()
                && !outputs.contains(buffer)
                // Every load of the victim in this kernel must be the identical access.
                && k.instrs.iter().all(|j| match &j.op {
                    KOp::Load { buffer: bb, access: aa } => bb != buffer || aa == access,
                    _ => true,
                }) =>
        {
            Some(*buffer)
        }
        _ => None,
    })
}

fn release(free: &mut Vec<(usize, usize)>, off: usize, len: usize) {
    let i = free.partition_point(|&(o, _)| o < off);
    free.insert(i, (off, len));
    // Coalesce with neighbours.
    if i + 1 < free.len() && free[i].0 + free[i].1 == free[i + 1].0 {
        free[i].1 += free[i + 1].1;
        free.remove(i + 1);
    }
    if i > 0 && free[i - 1].0 + free[i - 1].1 == free[i].0 {
        free[i - 1].1 += free[i].1;
        free.remove(i);
    }
}

/// Live range (first writing step, last using step) of every buffer, as the planner sees them.
pub fn live_ranges(s: &Schedule) -> Vec<Option<(usize, usize)>> {
    let n = s.buffers.len();
    let mut r: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut touch = |b: BufferId, t: usize, write: bool| {
        r[b] = match r[b] {
            None if write => Some((t, t)),
            None => None,
            Some((a, z)) => Some((a.min(t), z.max(t))),
        };
    };
    for (t, step) in s.steps.iter().enumerate() {
        for b in step.writes() {
            touch(b, t, true);
        }
        for b in step.reads() {
            touch(b, t, false);
        }
    }
    for (b, _) in &s.outputs {
        if let Some((a, _)) = r[*b] {
            r[*b] = Some((a, s.steps.len()));
        }
    }
    r
}
