//! Splitting kernels before code generation: very large elementwise kernels, and reductions
//! that would otherwise run on one thread.
//!
//! **Long kernels.** //! Fusion inlines elementwise chains without bound: a loop that applies `y = y * c` 100 000
//! times becomes one kernel of 100 000 instructions, which Cranelift would take minutes to
//! compile. Before code generation, an elementwise kernel (no reduced axes) with more than
//! [`MAX_INSTRS`] live instructions is cut into a chain of kernels over the same domain, each of
//! at most `MAX_INSTRS` instructions: a value used after its piece is written to a scratch
//! buffer (contiguous over the domain) by the piece that computes it and loaded by the pieces
//! that use it; loads and constants are repeated where needed instead. Only the last piece does
//! the kernel's stores, so every load of the original kernel still happens before any of its
//! stores (the reference semantics).
//!
//! **Reductions in two stages.** Threads split a kernel's outer (non-reduced) points, so a
//! reduction to one or a few values — a loss `sum(y·w)` over a whole activation, with everything
//! that computes `y` fused in — runs on one core. When there are fewer outer points than threads
//! and at least [`TWO_STAGE_MIN_POINTS`] reduced points, the widest reduced axis is cut into
//! `rows × rest` (an exact divisor, so every access stays affine); stage 1 reduces each row into a
//! partial buffer (rows are outer points there, so they are split over threads) and does the
//! stores of values computed at every point; stage 2 reduces the partials with the same op and
//! computes and stores what depends on the reductions. Sums are then added in a different
//! order (within float rounding of the one-stage order); maxima are unchanged.
//!
//! Large **column reductions** (the innermost, contiguous axis kept, an outer one reduced: the
//! `dγ`, `dβ` of a normalisation) are cut the same way although they have outer points enough:
//! in one stage, threads can only split the columns, so each task reads a strip of every row
//! (crossing a page per row, where hardware prefetchers stop); cut into row ranges, each task
//! streams whole consecutive rows (see `plan`'s block choice) into its partials. The arena plan
//! stays valid: the two stages take the original step's place, and partial buffers get their own
//! allocation.

use kiln_passes::kernel::{Access, Buffer, Instr, KOp, Kernel, Role, Schedule, Step, Store};
use std::borrow::Cow;

/// Largest number of instructions of one generated kernel piece.
pub(crate) const MAX_INSTRS: usize = 384;

fn remap(op: &KOp, m: &[usize]) -> KOp {
    match op.clone() {
        KOp::Unary(u, a) => KOp::Unary(u, m[a]),
        KOp::Cast(a) => KOp::Cast(m[a]),
        KOp::Reduce(r, a) => KOp::Reduce(r, m[a]),
        KOp::Binary(b, x, y) => KOp::Binary(b, m[x], m[y]),
        KOp::Compare(c, x, y) => KOp::Compare(c, m[x], m[y]),
        KOp::Where(c, x, y) => KOp::Where(m[c], m[x], m[y]),
        op => op,
    }
}

/// Fewest reduced points per outer point for a two-stage reduction.
pub(crate) const TWO_STAGE_MIN_POINTS: usize = 1 << 15;
/// Most stage-1 rows per outer point (each row keeps at least 16 points).
const TWO_STAGE_MAX_ROWS: usize = 1024;

/// Fewest points of a column reduction (the innermost axis kept, an outer one reduced) cut in
/// two stages, most stage-1 rows, and fewest reduced points per stage-1 row. In one stage,
/// each task reads a strip of every row (a few cache lines per 4 KiB page, which the hardware
/// prefetchers do not follow): a 256×1024 bias gradient ran at 9 GB/s that way and twice as
/// fast in two stages (W3's k27: 0.115 → 0.058 ms).
const COLUMN_MIN_POINTS: usize = 1 << 16;
const COLUMN_MAX_ROWS: usize = 32;
const COLUMN_MIN_ROWS: usize = 64;

/// `s` with its large elementwise kernels split and its narrow reductions done in two stages for
/// `threads` threads (borrowed when nothing needs splitting).
pub(crate) fn split_kernels(s: &Schedule, threads: usize) -> Cow<'_, Schedule> {
    let big =
        |st: &Step| matches!(st, Step::Kernel(k) if k.reduce_axes.is_empty() && k.instrs.len() > MAX_INSTRS);
    let narrow = |st: &Step| matches!(st, Step::Kernel(k) if two_stage_plan(k, threads).is_some());
    if !s.steps.iter().any(|st| big(st) || narrow(st)) {
        return Cow::Borrowed(s);
    }
    let mut out = Schedule { steps: vec![], ..s.clone() };
    for step in &s.steps {
        match step {
            Step::Kernel(k) if big(step) => split_kernel(k, &mut out),
            Step::Kernel(k) => match two_stage_plan(k, threads) {
                Some((axis, rows)) => two_stage(k, axis, rows, &mut out),
                None => out.steps.push(step.clone()),
            },
            other => out.steps.push(other.clone()),
        }
    }
    Cow::Owned(out)
}

/// For a reduction with fewer outer points than `threads` and many reduced points, or a large
/// column reduction: the reduced axis to cut and the number of rows to cut it into.
fn two_stage_plan(k: &Kernel, threads: usize) -> Option<(usize, usize)> {
    if k.reduce_axes.is_empty() || !k.instrs.iter().any(|i| matches!(i.op, KOp::Reduce(..))) {
        return None;
    }
    let outer: usize =
        (0..k.domain.len()).filter(|d| !k.reduce_axes.contains(d)).map(|d| k.domain[d]).product();
    let reduced: usize = k.reduce_axes.iter().map(|&d| k.domain[d]).product();
    let narrow = threads >= 2 && outer < threads && reduced >= TWO_STAGE_MIN_POINTS;
    // (Streaming whole rows pays on one thread too.)
    let column = !k.reduce_axes.contains(&(k.domain.len() - 1))
        && outer.saturating_mul(reduced) >= COLUMN_MIN_POINTS
        && reduced >= 2 * COLUMN_MIN_ROWS;
    if !narrow && !column {
        return None;
    }
    // Values computed after the reductions must not need per-point values (stage 2 has none).
    let (inner, post) = (k.inner_mask(), k.post_reduce_mask());
    let mixes = k.instrs.iter().enumerate().any(|(i, ins)| {
        post[i] && !matches!(ins.op, KOp::Reduce(..)) && ins.op.operands().iter().any(|&a| inner[a])
    });
    if mixes {
        return None;
    }
    let &axis = k.reduce_axes.iter().max_by_key(|&&d| (k.domain[d], std::cmp::Reverse(d)))?;
    let e = k.domain[axis];
    let rows = if narrow {
        (2..=TWO_STAGE_MAX_ROWS.min(e / 16)).rev().find(|r| e % r == 0)?
    } else {
        (2..=COLUMN_MAX_ROWS.min(e / COLUMN_MIN_ROWS)).rev().find(|r| e % r == 0)?
    };
    (rows >= 2 * threads.max(2)).then_some((axis, rows))
}

/// Cuts axis `d` of an access into `(rows, extent / rows)`.
fn cut_access(a: &Access, d: usize, rest: usize) -> Access {
    let mut strides = a.strides.clone();
    let s = strides[d];
    strides[d] = s * rest as i64;
    strides.insert(d + 1, s);
    Access { offset: a.offset, strides }
}

fn two_stage(k: &Kernel, axis: usize, rows: usize, out: &mut Schedule) {
    let rest = k.domain[axis] / rows;
    // The kernel with `axis` cut in two; `axis` now counts rows, `axis + 1` the rest.
    let mut domain = k.domain.clone();
    domain[axis] = rows;
    domain.insert(axis + 1, rest);
    let cut_op = |op: &KOp| match op {
        KOp::Load { buffer, access } => KOp::Load { buffer: *buffer, access: cut_access(access, axis, rest) },
        op => op.clone(),
    };
    let instrs: Vec<Instr> = k.instrs.iter().map(|i| Instr { op: cut_op(&i.op), dtype: i.dtype }).collect();
    let stores: Vec<Store> = k
        .stores
        .iter()
        .map(|st| Store { buffer: st.buffer, value: st.value, access: cut_access(&st.access, axis, rest) })
        .collect();
    let reduce_axes: Vec<usize> = k
        .reduce_axes
        .iter()
        .flat_map(|&r| if r == axis { vec![r, r + 1] } else { vec![r + (r > axis) as usize] })
        .collect();
    let cut = Kernel {
        name: k.name.clone(),
        domain: domain.clone(),
        reduce_axes: reduce_axes.clone(),
        instrs,
        stores,
    };
    let (inner, post) = (cut.inner_mask(), cut.post_reduce_mask());
    let n = cut.instrs.len();

    // Partial buffers: one value per (outer point, row), contiguous over those axes.
    let rank = domain.len();
    let stage1_red: Vec<usize> = reduce_axes.iter().copied().filter(|&r| r != axis).collect();
    let mut partial = Access { offset: 0, strides: vec![0; rank] };
    let mut step = 1i64;
    for d in (0..rank).rev() {
        if !stage1_red.contains(&d) {
            partial.strides[d] = step;
            step *= domain[d] as i64;
        }
    }
    let partial_numel = step as usize;
    let reduces: Vec<usize> = (0..n).filter(|&i| matches!(cut.instrs[i].op, KOp::Reduce(..))).collect();
    let partial_buf: Vec<usize> = reduces
        .iter()
        .map(|&i| {
            out.buffers.push(Buffer {
                dtype: cut.instrs[i].dtype,
                numel: partial_numel,
                role: Role::Computed,
                arena_offset: None,
            });
            out.buffers.len() - 1
        })
        .collect();

    // Stage 1: everything per point, the per-row reductions, the stores of per-point values.
    let (early, late): (Vec<&Store>, Vec<&Store>) = cut.stores.iter().partition(|st| inner[st.value]);
    let roots = early.iter().map(|st| st.value).chain(reduces.iter().copied());
    let live = live_instrs(&cut.instrs, roots, |_| true);
    let mut map = vec![usize::MAX; n];
    let mut s1: Vec<Instr> = vec![];
    for i in (0..n).filter(|&i| live[i]) {
        s1.push(Instr { op: remap(&cut.instrs[i].op, &map), dtype: cut.instrs[i].dtype });
        map[i] = s1.len() - 1;
    }
    let mut st1: Vec<Store> = early
        .iter()
        .map(|st| Store { buffer: st.buffer, value: map[st.value], access: st.access.clone() })
        .collect();
    st1.extend(reduces.iter().zip(&partial_buf).map(|(&i, &b)| Store {
        buffer: b,
        value: map[i],
        access: partial.clone(),
    }));
    out.steps.push(Step::Kernel(Kernel {
        name: format!("{}.stage1", k.name),
        domain: domain.clone(),
        reduce_axes: stage1_red.clone(),
        instrs: s1,
        stores: st1,
    }));

    // Stage 2: the partials reduced over the rows, then what depends on the reductions. Axes
    // reduced in stage 1 have extent 1 here (values after a reduction do not vary along them).
    // A reduction's operand is stage 1's business: stage 2 loads the partials instead.
    let live = live_instrs(&cut.instrs, late.iter().map(|st| st.value), |i| {
        !matches!(cut.instrs[i].op, KOp::Reduce(..))
    });
    let mut map = vec![usize::MAX; n];
    let mut s2: Vec<Instr> = vec![];
    for i in (0..n).filter(|&i| live[i] && (post[i] || !inner[i])) {
        let ins = &cut.instrs[i];
        if let KOp::Reduce(op, _) = ins.op {
            let b = partial_buf[reduces.iter().position(|&r| r == i).expect("a reduce of the kernel")];
            s2.push(Instr { op: KOp::Load { buffer: b, access: partial.clone() }, dtype: ins.dtype });
            s2.push(Instr { op: KOp::Reduce(op, s2.len() - 1), dtype: ins.dtype });
        } else {
            s2.push(Instr { op: remap(&ins.op, &map), dtype: ins.dtype });
        }
        map[i] = s2.len() - 1;
    }
    if late.is_empty() {
        return;
    }
    let st2 =
        late.iter().map(|st| Store { buffer: st.buffer, value: map[st.value], access: st.access.clone() });
    let mut domain2 = domain;
    stage1_red.iter().for_each(|&d| domain2[d] = 1);
    out.steps.push(Step::Kernel(Kernel {
        name: format!("{}.stage2", k.name),
        domain: domain2,
        reduce_axes: vec![axis],
        instrs: s2,
        stores: st2.collect(),
    }));
}

/// What a piece needs to bring values of other pieces in.
struct Cx<'a> {
    k: &'a Kernel,
    piece_of: &'a [usize],
    scratch: &'a [Option<usize>],
    contiguous: &'a Access,
}

impl Cx<'_> {
    /// Value `v` in piece `p`: its own instruction repeated (loads, constants) or a load of its
    /// scratch buffer; `local` maps original values to the piece's.
    fn bring(&self, v: usize, p: usize, local: &mut [usize], instrs: &mut Vec<Instr>) -> usize {
        if local[v] != usize::MAX {
            return local[v];
        }
        let ins = &self.k.instrs[v];
        let op = match (&ins.op, self.scratch[v]) {
            (KOp::Load { .. } | KOp::Const(_), _) => ins.op.clone(),
            (_, Some(b)) if self.piece_of[v] < p => KOp::Load { buffer: b, access: self.contiguous.clone() },
            _ => unreachable!("a value of an earlier piece without a scratch buffer"),
        };
        instrs.push(Instr { op, dtype: ins.dtype });
        local[v] = instrs.len() - 1;
        local[v]
    }
}

/// The instructions `roots` depend on (themselves included); the operands of an instruction
/// are followed only where `follow(instruction)` holds.
fn live_instrs(
    instrs: &[Instr],
    roots: impl Iterator<Item = usize>,
    follow: impl Fn(usize) -> bool,
) -> Vec<bool> {
    let mut live = vec![false; instrs.len()];
    roots.for_each(|r| live[r] = true);
    for i in (0..instrs.len()).rev() {
        if live[i] && follow(i) {
            instrs[i].op.operands().into_iter().for_each(|a| live[a] = true);
        }
    }
    live
}

fn split_kernel(k: &Kernel, out: &mut Schedule) {
    let n = k.instrs.len();
    let live = live_instrs(&k.instrs, k.stores.iter().map(|st| st.value), |_| true);
    let order: Vec<usize> = (0..n).filter(|&i| live[i]).collect();
    let pieces: Vec<&[usize]> = order.chunks(MAX_INSTRS).collect();
    let mut piece_of = vec![usize::MAX; n];
    for (p, ids) in pieces.iter().enumerate() {
        for &i in ids.iter() {
            piece_of[i] = p;
        }
    }
    let cheap = |i: usize| matches!(k.instrs[i].op, KOp::Load { .. } | KOp::Const(_));
    // Values needed after their piece (stores count as uses in the last piece).
    let last = pieces.len() - 1;
    let mut scratch: Vec<Option<usize>> = vec![None; n];
    let mut need_later = vec![false; n];
    for &i in &order {
        for a in k.instrs[i].op.operands() {
            if piece_of[a] < piece_of[i] && !cheap(a) {
                need_later[a] = true;
            }
        }
    }
    for st in &k.stores {
        if piece_of[st.value] < last && !cheap(st.value) {
            need_later[st.value] = true;
        }
    }
    let numel: usize = k.domain.iter().product();
    let contiguous = Access::contiguous(&k.domain);
    for &i in &order {
        if need_later[i] {
            out.buffers.push(Buffer {
                dtype: k.instrs[i].dtype,
                numel,
                role: Role::Computed,
                arena_offset: None,
            });
            scratch[i] = Some(out.buffers.len() - 1);
        }
    }
    for (p, ids) in pieces.iter().enumerate() {
        let mut instrs: Vec<Instr> = vec![];
        let mut local = vec![usize::MAX; n];
        let cx = Cx { k, piece_of: &piece_of, scratch: &scratch, contiguous: &contiguous };
        for &i in ids.iter() {
            for a in k.instrs[i].op.operands() {
                if piece_of[a] != p {
                    cx.bring(a, p, &mut local, &mut instrs);
                }
            }
            let op = remap(&k.instrs[i].op, &local);
            instrs.push(Instr { op, dtype: k.instrs[i].dtype });
            local[i] = instrs.len() - 1;
        }
        let mut stores: Vec<Store> = ids
            .iter()
            .filter_map(|&i| {
                scratch[i].map(|b| Store { buffer: b, value: local[i], access: contiguous.clone() })
            })
            .collect();
        if p == last {
            for st in &k.stores {
                let v = cx.bring(st.value, p, &mut local, &mut instrs);
                stores.push(Store { buffer: st.buffer, value: v, access: st.access.clone() });
            }
        }
        out.steps.push(Step::Kernel(Kernel {
            name: format!("{}.{p}", k.name),
            domain: k.domain.clone(),
            reduce_axes: vec![],
            instrs,
            stores,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{BinaryOp, DType, Literal, UnaryOp};
    use kiln_passes::kernel::execute;

    #[test]
    fn a_long_chain_becomes_pieces_that_compute_the_same() {
        let n = 5;
        let mut instrs =
            vec![Instr { op: KOp::Load { buffer: 0, access: Access::contiguous(&[n]) }, dtype: DType::F64 }];
        instrs.push(Instr { op: KOp::Const(1.0001), dtype: DType::F64 });
        let mut y = 0;
        for i in 0..1000 {
            let op = if i % 7 == 0 { KOp::Unary(UnaryOp::Neg, y) } else { KOp::Binary(BinaryOp::Mul, y, 1) };
            instrs.push(Instr { op, dtype: DType::F64 });
            y = instrs.len() - 1;
        }
        // A second use of an early value at the end.
        instrs.push(Instr { op: KOp::Binary(BinaryOp::Add, y, 5), dtype: DType::F64 });
        let last = instrs.len() - 1;
        let k = Kernel {
            name: "chain".into(),
            domain: vec![n],
            reduce_axes: vec![],
            instrs,
            stores: vec![Store { buffer: 1, value: last, access: Access::contiguous(&[n]) }],
        };
        let s = Schedule {
            buffers: vec![
                Buffer { dtype: DType::F64, numel: n, role: Role::Input(0), arena_offset: None },
                Buffer { dtype: DType::F64, numel: n, role: Role::Computed, arena_offset: None },
            ],
            steps: vec![Step::Kernel(k)],
            inputs: vec![0],
            outputs: vec![(1, vec![n])],
            arena_bytes: 0,
        };
        let split = split_kernels(&s, 2);
        split.verify().unwrap();
        assert!(split.steps.len() >= 3);
        for st in &split.steps {
            let Step::Kernel(k) = st else { panic!() };
            assert!(k.instrs.len() <= MAX_INSTRS + 8, "{}", k.instrs.len());
        }
        let x =
            kiln_ir::interp::Value::from_literal(&Literal::F64(vec![1.0, -2.0, 3.0, 0.5, 7.0]), &[n].into())
                .unwrap();
        let a = execute(&s, std::slice::from_ref(&x)).unwrap();
        let b = execute(&split, &[x]).unwrap();
        assert_eq!(a, b);
    }

    fn f64_input(n: usize, k: usize) -> kiln_ir::interp::Value {
        // Small integers: every sum is exact in f64, whatever the order.
        let v: Vec<f64> = (0..n).map(|i| ((i * 7 + k) % 11) as f64 - 5.0).collect();
        kiln_ir::interp::Value::from_literal(&Literal::F64(v), &[n].into()).unwrap()
    }

    fn buf(numel: usize, role: Role) -> Buffer {
        Buffer { dtype: DType::F64, numel, role, arena_offset: None }
    }

    /// `[a, b]` input x, `[b]` input w: stores x·w at every point, sum(x·w)/2 and max(x) (reduced
    /// over `reduce`), each plus an outer load of w[0].
    fn narrow_reduction(a: usize, b: usize, reduce: Vec<usize>) -> Schedule {
        let x = Access::contiguous(&[a, b]);
        let w = Access { offset: 0, strides: vec![0, 1] };
        let w0 = Access { offset: 0, strides: vec![0, 0] };
        let outer: Vec<usize> = (0..2).filter(|d| !reduce.contains(d)).map(|d| [a, b][d]).collect();
        let out_n: usize = outer.iter().product();
        let mut out_acc = Access { offset: 0, strides: vec![0, 0] };
        if outer.len() == 1 {
            let d = (0..2).find(|d| !reduce.contains(d)).unwrap();
            out_acc.strides[d] = 1;
        }
        use KOp::*;
        let i = |op| Instr { op, dtype: DType::F64 };
        let instrs = vec![
            i(Load { buffer: 0, access: x.clone() }), // 0
            i(Load { buffer: 1, access: w }),         // 1
            i(Binary(BinaryOp::Mul, 0, 1)),           // 2
            i(Reduce(kiln_ir::ReduceOp::Sum, 2)),     // 3
            i(Const(0.5)),                            // 4
            i(Binary(BinaryOp::Mul, 3, 4)),           // 5
            i(Load { buffer: 1, access: w0 }),        // 6
            i(Binary(BinaryOp::Add, 5, 6)),           // 7
            i(Reduce(kiln_ir::ReduceOp::Max, 0)),     // 8
            i(Binary(BinaryOp::Add, 8, 6)),           // 9
        ];
        let k = Kernel {
            name: "loss".into(),
            domain: vec![a, b],
            reduce_axes: reduce,
            instrs,
            stores: vec![
                Store { buffer: 2, value: 2, access: x },
                Store { buffer: 3, value: 7, access: out_acc.clone() },
                Store { buffer: 4, value: 9, access: out_acc },
            ],
        };
        Schedule {
            buffers: vec![
                buf(a * b, Role::Input(0)),
                buf(b, Role::Input(1)),
                buf(a * b, Role::Computed),
                buf(out_n, Role::Computed),
                buf(out_n, Role::Computed),
            ],
            steps: vec![Step::Kernel(k)],
            inputs: vec![0, 1],
            outputs: vec![(2, vec![a, b]), (3, outer.clone()), (4, outer)],
            arena_bytes: 0,
        }
    }

    #[test]
    fn narrow_reductions_run_in_two_stages_that_compute_the_same() {
        let cases = [
            (300, 512, vec![0, 1], 2),
            (1, 1 << 16, vec![1], 2),
            (1 << 15, 1, vec![0], 2),
            (2, 40_000, vec![1], 4),
            // Column reductions: cut into row ranges although the columns would do, on one
            // thread too.
            (4096, 256, vec![0], 2),
            (4096, 256, vec![0], 1),
            // An MLP's bias gradient (batch 256, 1024 features).
            (256, 1024, vec![0], 2),
        ];
        for (a, b, reduce, threads) in cases {
            let s = narrow_reduction(a, b, reduce.clone());
            s.verify().unwrap();
            let split = split_kernels(&s, threads);
            split.verify().unwrap();
            let names: Vec<&str> = split
                .steps
                .iter()
                .map(|st| match st {
                    Step::Kernel(k) => k.name.as_str(),
                    Step::MatMul(_) => "matmul",
                })
                .collect();
            assert_eq!(names, ["loss.stage1", "loss.stage2"], "{a}×{b} over {reduce:?}");
            let Step::Kernel(k1) = &split.steps[0] else { unreachable!() };
            let rows: usize =
                (0..k1.domain.len()).filter(|d| !k1.reduce_axes.contains(d)).map(|d| k1.domain[d]).product();
            assert!(rows >= 4, "stage 1 has {rows} parallel rows");
            let inputs = [f64_input(a * b, 1), f64_input(b, 2)];
            assert_eq!(
                execute(&s, &inputs).unwrap(),
                execute(&split, &inputs).unwrap(),
                "{a}×{b} over {reduce:?}"
            );
        }
    }

    #[test]
    fn wide_or_small_reductions_stay_in_one_stage() {
        // Enough outer points for the threads, too few reduced points, one thread, a prime extent.
        for (a, b, reduce, threads) in [
            (64, 4096, vec![1], 2),
            (1, 1000, vec![1], 2),
            (300, 512, vec![0, 1], 1),
            (1, 65_537, vec![1], 2),
            (64, 128, vec![0], 2),
        ] {
            let s = narrow_reduction(a, b, reduce);
            assert!(matches!(split_kernels(&s, threads), Cow::Borrowed(_)), "{a}×{b}");
        }
    }
}
