//! Splitting of very large elementwise kernels.
//!
//! Fusion inlines elementwise chains without bound: a loop that applies `y = y * c` 100 000
//! times becomes one kernel of 100 000 instructions, which Cranelift would take minutes to
//! compile. Before code generation, an elementwise kernel (no reduced axes) with more than
//! [`MAX_INSTRS`] live instructions is cut into a chain of kernels over the same domain, each of
//! at most `MAX_INSTRS` instructions: a value used after its piece is written to a scratch
//! buffer (contiguous over the domain) by the piece that computes it and loaded by the pieces
//! that use it; loads and constants are repeated where needed instead. Only the last piece does
//! the kernel's stores, so every load of the original kernel still happens before any of its
//! stores (the reference semantics). Kernels with reductions are left alone.

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

/// `s` with its large elementwise kernels split (borrowed when nothing needs splitting).
pub(crate) fn split_large_kernels(s: &Schedule) -> Cow<'_, Schedule> {
    let big =
        |st: &Step| matches!(st, Step::Kernel(k) if k.reduce_axes.is_empty() && k.instrs.len() > MAX_INSTRS);
    if !s.steps.iter().any(big) {
        return Cow::Borrowed(s);
    }
    let mut out = Schedule { steps: vec![], ..s.clone() };
    for step in &s.steps {
        match step {
            Step::Kernel(k) if big(step) => split_kernel(k, &mut out),
            other => out.steps.push(other.clone()),
        }
    }
    Cow::Owned(out)
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

fn split_kernel(k: &Kernel, out: &mut Schedule) {
    let n = k.instrs.len();
    // Live instructions.
    let mut live = vec![false; n];
    for st in &k.stores {
        live[st.value] = true;
    }
    for i in (0..n).rev() {
        if live[i] {
            for a in k.instrs[i].op.operands() {
                live[a] = true;
            }
        }
    }
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
        let split = split_large_kernels(&s);
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
}
