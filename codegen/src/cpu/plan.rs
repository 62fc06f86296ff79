//! Loop planning: turns a verified [`Kernel`] into a [`LoopKernel`], the normalised loop nest
//! that `emit` compiles.
//!
//! 1. **Typing.** Every instruction's operand dtypes are checked (the schedule verifier checks
//!    loads and stores; the op rules are the interpreter's), so codegen never meets an op it
//!    cannot type.
//! 2. **Normalisation.** Size-1 axes are dropped and adjacent axes of the same kind (both reduced
//!    or both not) are merged when every access allows it (`stride[d] == stride[d+1]·ext[d+1]`),
//!    so a contiguous `[N, D]` elementwise kernel becomes one axis of `N·D` and W1's 2^24 domain
//!    stays one axis. A kernel with no axis left gets one axis of extent 1.
//! 3. **Lane axis.** One axis, λ, is vectorised: the one along which the most executed
//!    accesses are contiguous (an access counts once per point it is executed at; stores count
//!    double; ties go to the innermost). Every value is then computed for a group of consecutive
//!    λ points at once. When λ is reduced, reductions use vector accumulators and a horizontal
//!    reduction at the end (row reductions); when it is not, each lane is its own output point
//!    and accumulates independently (column reductions: the reduce loops run outside a block of
//!    λ, accumulators live on the stack, so each step reads whole rows of the block).
//! 4. **Work units.** The non-reduced axes (λ counted in blocks when it is not reduced) form the
//!    parallel space; a kernel function processes a range of its flattened units, so the
//!    executable can split the range over threads.

use super::{CpuError, Result};
use kiln_ir::{DType, ReduceOp};
use kiln_passes::kernel::{Access, Instr, KOp, Kernel, Store};

/// How the parallel unit space is built, outermost first.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ParDim {
    /// A whole (non-reduced, non-lane) axis of the normalised domain.
    Axis(usize),
    /// The lane axis λ in blocks of `block` points (`count` blocks; the last may be partial).
    LaneBlocks { block: usize, count: usize },
}

/// A kernel ready for code generation. Loads and stores name *slots* (indices into the pointer
/// table the kernel function receives), not buffers.
#[derive(Clone, Debug)]
pub(crate) struct LoopKernel {
    pub name: String,
    /// Extents of the normalised domain.
    pub ext: Vec<usize>,
    /// Whether each normalised axis is reduced.
    pub red: Vec<bool>,
    /// The vectorised axis λ.
    pub lane: usize,
    /// Lanes per main-loop step (a multiple of 4).
    pub group: usize,
    pub instrs: Vec<Instr>,
    pub stores: Vec<Store>,
    /// Dtype of each slot's elements.
    pub slot_dtypes: Vec<DType>,
    pub par: Vec<ParDim>,
    /// Number of work units (product of the `par` extents).
    pub units: u64,
    /// Domain points per unit (for the thread-splitting grain).
    pub unit_work: u64,
    /// Number of points over the reduced axes (1 when there are none).
    pub r_count: usize,
    /// The original kernel had `Reduce` instructions (they are identities when every reduced
    /// axis has extent 1).
    pub inner: Vec<bool>,
    pub post: Vec<bool>,
}

impl LoopKernel {
    pub(crate) fn lane_reduced(&self) -> bool {
        self.red[self.lane]
    }

    /// The most λ points one lane loop covers (the block, or the whole λ axis when reduced).
    pub(crate) fn lane_range_max(&self) -> usize {
        self.par
            .iter()
            .find_map(|p| match p {
                ParDim::LaneBlocks { block, .. } => Some(*block),
                ParDim::Axis(_) => None,
            })
            .unwrap_or(self.ext[self.lane])
    }

    /// Whether every λ range a lane loop covers has a length that is a multiple of `m` (every
    /// block, the last one included, or the whole λ axis).
    pub(crate) fn lane_ranges_multiple_of(&self, m: usize) -> bool {
        let block = self.lane_range_max();
        block % m == 0 && self.ext[self.lane] % m == 0
    }

    pub(crate) fn has_reduction(&self) -> bool {
        self.red.iter().any(|&r| r)
    }

    /// Stores done once per outer point: of post-reduce values, to addresses that do not vary
    /// over the reduced axes. (A post-reduce store whose address varies over a reduced axis —
    /// possible when the value varies only over a reduced axis of extent 1, which normalisation
    /// dropped — is done at every point of phase 2 instead, like the reference does.)
    pub(crate) fn is_outer_store(&self, s: &Store) -> bool {
        self.post[s.value] && (0..self.ext.len()).all(|d| !self.red[d] || s.access.strides[d] == 0)
    }
}

/// Element offsets of an access whose strides index the normalised domain.
fn collapse_access(a: &Access, keep: &[Vec<usize>]) -> Access {
    // `keep[k]` lists the original axes merged into normalised axis k (outermost first); the
    // merged stride is the innermost one's.
    Access {
        offset: a.offset,
        strides: keep.iter().map(|axes| a.strides[*axes.last().expect("non-empty")]).collect(),
    }
}

/// Checks operand dtypes of every instruction (the interpreter's rules).
pub(crate) fn check_types(k: &Kernel) -> Result<()> {
    let bad = |i: usize, m: String| Err(CpuError::Unsupported(format!("kernel {}: %{i} {m}", k.name)));
    for (i, ins) in k.instrs.iter().enumerate() {
        let dt = |v: usize| k.instrs[v].dtype;
        let t = ins.dtype;
        match &ins.op {
            KOp::Load { .. } | KOp::Const(_) => {}
            KOp::Unary(u, a) => {
                if dt(*a) != t {
                    return bad(i, format!("{} changes dtype {} to {t}", u.name(), dt(*a)));
                }
                let ok = match t {
                    DType::F32 | DType::F64 => true,
                    DType::I64 => u.accepts_int(),
                    DType::Bool => false,
                };
                if !ok {
                    return bad(i, format!("{} is not defined for {t}", u.name()));
                }
            }
            KOp::Binary(op, a, b) => {
                if dt(*a) != t || dt(*b) != t || t == DType::Bool {
                    return bad(i, format!("{} is not defined for {}, {} -> {t}", op.name(), dt(*a), dt(*b)));
                }
            }
            KOp::Compare(c, a, b) => {
                if dt(*a) != dt(*b) || t != DType::Bool {
                    return bad(i, format!("{} is not defined for {}, {} -> {t}", c.name(), dt(*a), dt(*b)));
                }
            }
            KOp::Where(c, a, b) => {
                if dt(*c) != DType::Bool || dt(*a) != t || dt(*b) != t {
                    return bad(i, "Where needs a bool condition and branches of its dtype".into());
                }
            }
            KOp::Cast(_) => {}
            KOp::Reduce(op, a) => {
                let ok = dt(*a) == t
                    && match op {
                        ReduceOp::Sum => t != DType::Bool,
                        ReduceOp::Max => t != DType::Bool,
                        ReduceOp::Mean => t.is_float(),
                    };
                if !ok {
                    return bad(i, format!("{} is not defined for {}", op.name(), dt(*a)));
                }
                if k.reduce_axes.is_empty() {
                    return bad(i, "reduces but the kernel has no reduced axes".into());
                }
            }
        }
    }
    Ok(())
}

/// Whether an access visits distinct elements at distinct points of `ext` (a sufficient test:
/// sorted by |stride|, each stride exceeds the span of all smaller ones). Axes of extent ≤ 1 do
/// not matter; `skip` marks axes to ignore (reduced axes for outer stores).
pub(crate) fn injective(strides: &[i64], ext: &[usize], skip: &[bool]) -> bool {
    let mut axes: Vec<(u64, u64)> = strides
        .iter()
        .zip(ext)
        .zip(skip)
        .filter(|((_, &e), &s)| e > 1 && !s)
        .map(|((&st, &e), _)| (st.unsigned_abs(), e as u64))
        .collect();
    axes.sort_unstable();
    let mut span: u64 = 0;
    for (s, e) in axes {
        if s == 0 || s <= span {
            return false;
        }
        span = span.saturating_add(s.saturating_mul(e - 1));
    }
    true
}

/// Normalises `k` (see the module docs). `slot_of_load(i)` / `slot_of_store(j)` give the slot of
/// load instruction `i` / store `j`; `slot_dtypes` the slot element types; `stores` selects which
/// stores this function performs (all of them unless the kernel is split into passes).
pub(crate) fn plan_kernel(
    k: &Kernel,
    name: String,
    slot_of_load: &dyn Fn(usize) -> usize,
    slot_of_store: &dyn Fn(usize) -> usize,
    slot_dtypes: Vec<DType>,
    stores: &[usize],
) -> Result<Option<LoopKernel>> {
    let rank = k.domain.len();
    let is_red: Vec<bool> = (0..rank).map(|d| k.reduce_axes.contains(&d)).collect();
    let outer_empty = (0..rank).any(|d| !is_red[d] && k.domain[d] == 0);
    if outer_empty {
        return Ok(None); // no output point: nothing to do
    }
    let r_count: usize = (0..rank).filter(|&d| is_red[d]).map(|d| k.domain[d]).product();
    let has_max = k.instrs.iter().any(|i| matches!(i.op, KOp::Reduce(ReduceOp::Max, _)));
    if r_count == 0 && has_max {
        return Err(CpuError::Unsupported(format!(
            "kernel {}: ReduceMax over an empty axis has no identity",
            k.name
        )));
    }

    // All accesses (loads then stores), in original axes.
    let load_ids: Vec<usize> = k
        .instrs
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.op, KOp::Load { .. }))
        .map(|(i, _)| i)
        .collect();
    let accesses: Vec<&Access> = load_ids
        .iter()
        .map(|&i| match &k.instrs[i].op {
            KOp::Load { access, .. } => access,
            _ => unreachable!(),
        })
        .chain(stores.iter().map(|&j| &k.stores[j].access))
        .collect();

    // Axes to keep: drop extent-1 axes; a zero-extent reduced axis stays (as the only reduced
    // axis, so the reduce loops run zero times).
    let mut kept: Vec<usize> = if r_count == 0 {
        let zero = (0..rank).find(|&d| is_red[d] && k.domain[d] == 0).expect("a zero reduced axis");
        (0..rank).filter(|&d| (!is_red[d] && k.domain[d] > 1) || d == zero).collect()
    } else {
        (0..rank).filter(|&d| k.domain[d] > 1).collect()
    };
    // Merge adjacent kept axes of the same kind when every access allows it.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for d in kept.drain(..) {
        if let Some(last) = groups.last_mut() {
            let p = *last.last().expect("non-empty");
            let ext_d = k.domain[d] as i64;
            let mergeable = is_red[p] == is_red[d]
                && k.domain[d] != 0
                && accesses.iter().all(|a| a.strides[p] == a.strides[d] * ext_d);
            if mergeable {
                last.push(d);
                continue;
            }
        }
        groups.push(vec![d]);
    }
    let (ext, red, keep): (Vec<usize>, Vec<bool>, Vec<Vec<usize>>) = if groups.is_empty() {
        (vec![1], vec![false], vec![])
    } else {
        let ext = groups.iter().map(|g| g.iter().map(|&d| k.domain[d]).product()).collect();
        let red = groups.iter().map(|g| is_red[g[0]]).collect();
        (ext, red, groups)
    };
    let norm = |a: &Access| -> Access {
        if keep.is_empty() {
            Access { offset: a.offset, strides: vec![0] }
        } else {
            collapse_access(a, &keep)
        }
    };

    let instrs: Vec<Instr> = k
        .instrs
        .iter()
        .enumerate()
        .map(|(i, ins)| match &ins.op {
            KOp::Load { access, .. } => {
                Instr { op: KOp::Load { buffer: slot_of_load(i), access: norm(access) }, dtype: ins.dtype }
            }
            _ => ins.clone(),
        })
        .collect();
    let new_stores: Vec<Store> = stores
        .iter()
        .map(|&j| {
            let s = &k.stores[j];
            Store { buffer: slot_of_store(j), value: s.value, access: norm(&s.access) }
        })
        .collect();

    // Lane axis: the axis along which the most executed accesses are contiguous. An access is
    // executed about once per point of the axes it varies over plus the non-reduced ones (a
    // load that does not vary over the reduced axes is loaded once per output point); stores
    // count double. Ties go to the innermost axis.
    let n = ext.len();
    let weight = |a: &Access| -> u128 {
        (0..n).filter(|&d| !red[d] || a.strides[d] != 0).map(|d| ext[d] as u128).product()
    };
    let score = |d: usize| -> u128 {
        let l: u128 = instrs
            .iter()
            .filter_map(|i| match &i.op {
                KOp::Load { access, .. } if access.strides[d].abs() == 1 => Some(weight(access)),
                _ => None,
            })
            .sum();
        let s: u128 =
            new_stores.iter().filter(|s| s.access.strides[d].abs() == 1).map(|s| 2 * weight(&s.access)).sum();
        l + s
    };
    let lane = (0..n).max_by_key(|&d| (score(d), d)).expect("at least one axis");

    let wide = instrs.iter().any(|i| matches!(i.dtype, DType::F64 | DType::I64));
    let group = if !red[lane] && red.iter().any(|&r| r) && !wide { 16 } else { 8 };

    // Parallel units.
    let r_count_n: usize = (0..n).filter(|&d| red[d]).map(|d| ext[d]).product();
    let mut par: Vec<ParDim> = (0..n).filter(|&d| !red[d] && d != lane).map(ParDim::Axis).collect();
    let mut unit_work = r_count_n.max(1) as u64;
    if !red[lane] {
        // Elementwise: blocks of ~8 K points. With a reduction, a block is the λ range whose
        // accumulators live on the stack while the reduce loops run (see `emit`): at most 512
        // lanes (8 KiB per reduction), at least 64, and a quarter of λ so that several units
        // exist to split. When the other axes give units enough (≥ 4: stage 1 of a column reduction
        // cut by `split`), a block is the whole λ up to 32 KiB of stack: each step then reads
        // whole rows, consecutive in memory.
        let others: usize = par.iter().map(|p| if let ParDim::Axis(d) = p { ext[*d] } else { 1 }).product();
        let reduces = instrs.iter().filter(|i| matches!(i.op, KOp::Reduce(..))).count().max(1);
        let want = if !red.iter().any(|&r| r) {
            8192
        } else if others >= 4 && ext[lane] * 16 * reduces <= 32 * 1024 {
            ext[lane]
        } else {
            ext[lane].div_ceil(4).clamp(64, 512).next_multiple_of(group)
        };
        let block = want.min(ext[lane]);
        par.push(ParDim::LaneBlocks { block, count: ext[lane].div_ceil(block) });
        unit_work *= block as u64;
    }
    let units: u64 = par
        .iter()
        .map(|p| match p {
            ParDim::Axis(d) => ext[*d] as u64,
            ParDim::LaneBlocks { count, .. } => *count as u64,
        })
        .product();

    let kk = Kernel {
        name: k.name.clone(),
        domain: ext.clone(),
        reduce_axes: (0..n).filter(|&d| red[d]).collect(),
        instrs: instrs.clone(),
        stores: new_stores.clone(),
    };
    let inner = kk.inner_mask();
    let post = k.post_reduce_mask();
    Ok(Some(LoopKernel {
        name,
        ext,
        red,
        lane,
        group,
        instrs,
        stores: new_stores,
        slot_dtypes,
        par,
        units,
        unit_work,
        r_count: r_count_n.max(usize::from(r_count != 0)),
        inner,
        post,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injectivity() {
        assert!(injective(&[4, 1], &[3, 4], &[false, false]));
        assert!(!injective(&[3, 1], &[3, 4], &[false, false]));
        assert!(!injective(&[0, 1], &[3, 4], &[false, false]));
        assert!(injective(&[0, 1], &[3, 4], &[true, false]));
        assert!(injective(&[1, -3], &[3, 4], &[false, false]));
        assert!(injective(&[7, 0], &[3, 1], &[false, false]));
    }
}
