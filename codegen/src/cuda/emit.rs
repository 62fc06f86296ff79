//! Kernel IR → CUDA C: one `__global__` function per fused kernel, plus its launch configuration.
//!
//! Each kernel is first normalised by the CPU backend's planner (`cpu::plan`: unit axes dropped,
//! contiguous axes merged, operand types checked), so both backends see the same loop nest. Then
//! one of three shapes is emitted (all loops are grid- or block-stride, so any grid size covers
//! every point):
//!
//! - **Elementwise** (no reduced axis): one thread per domain point, `p` running over the
//!   flattened domain in a grid-stride loop; the point's axis indices come from `p` by division
//!   and remainder by constants.
//! - **Block per output** (the innermost axis is reduced: row reductions, reductions over all
//!   axes): a block-stride loop over output points; the block's threads stride over the reduced
//!   points, accumulate privately, and combine with warp shuffles and shared memory
//!   (`kiln_block_*` in the prelude). Then every thread computes the post-reduction values;
//!   thread 0 does the stores made once per output point, and the block strides over the reduced
//!   points again for stores of post-reduction values made at every point (a softmax's
//!   normalised output).
//! - **Thread per output** (the innermost axis is not reduced: column reductions): a grid-stride
//!   loop over output points, each thread reducing serially, so that neighbouring threads read
//!   neighbouring columns. (Fewer than 1024 outputs with at least 1024 points each go block per
//!   output instead, so that the GPU has enough threads.)
//!
//! Values follow the kernel IR's rule: what does not depend on a reduction is computed at every
//! point it is needed (before the reduction), what depends on one after it. f32 sums and means
//! accumulate in f64 like the interpreter; max propagates NaN. Integer division by zero and
//! negative integer powers set a bit in a status word the runtime checks (the interpreter's
//! errors), and never trap.
//!
//! A kernel whose stores are not one-to-one over its points (several points write one element,
//! which the reference resolves by order) runs on a single thread in the reference's order.

use super::prelude::prelude;
use super::{CudaError, Result};
use crate::cpu::plan::{self, LoopKernel};
use kiln_ir::{BinaryOp, CompareOp, DType, ReduceOp, UnaryOp};
use kiln_passes::kernel::{Access, Instr, KOp, Kernel, MatMulStep, Schedule, Step, Store};
use std::fmt::Write;

/// Threads per block of every parallel launch (a multiple of the warp size, ≤ 1024).
pub const BLOCK: u32 = 256;
/// Upper bound on the blocks of a launch (the loops are grid-stride, so fewer always suffice).
pub const MAX_GRID: u64 = 65_535;

/// How a kernel's points are mapped onto threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One thread per domain point (grid-stride loop).
    Elementwise,
    /// One block per output point; threads split the reduced points.
    BlockPerOutput,
    /// One thread per output point, reducing serially.
    ThreadPerOutput,
}

/// Grid and block size of a launch (x dimension only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub grid: u32,
    pub block: u32,
}

/// One emitted kernel: its function name, the buffers it takes (in parameter order), and how to
/// launch it.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaKernel {
    /// The `extern "C"` function name.
    pub name: String,
    /// Kernel IR name (from fusion).
    pub ir_name: String,
    /// Buffer ids, one pointer parameter each, in order.
    pub params: Vec<usize>,
    /// Whether a last `unsigned *status` parameter follows (integer division/power present).
    pub status: bool,
    pub strategy: Strategy,
    pub launch: Launch,
    /// Points of the loop the threads share: domain points (elementwise) or output points.
    pub work: u64,
    /// Points each output point reduces over (1 without reduction).
    pub reduce_count: u64,
}

/// A matrix product as one or more `cublas<S|D>gemmStridedBatched` calls, in cuBLAS's
/// column-major terms: `C = op(A)·op(B)` with `C` (`m × n`) our row-major output transposed,
/// `A` our right operand and `B` our left one.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub ir_name: String,
    pub dtype: DType,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: usize,
    pub lda: usize,
    pub stride_a: i64,
    pub b: usize,
    pub ldb: usize,
    pub stride_b: i64,
    pub c: usize,
    pub ldc: usize,
    pub stride_c: i64,
    /// Matrices per call.
    pub batch: usize,
    /// Element offsets `(a, b, c)` of each call (batch axes that do not collapse into one
    /// stride become several calls).
    pub calls: Vec<(i64, i64, i64)>,
}

/// One step of a CUDA program.
#[derive(Clone, Debug, PartialEq)]
pub enum CudaStep {
    Kernel(CudaKernel),
    Gemm(Gemm),
}

/// A schedule translated to CUDA: one source module (prelude + kernels) and the launches.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaProgram {
    /// The kernels' source, without the prelude.
    pub kernels_source: String,
    pub steps: Vec<CudaStep>,
}

impl CudaProgram {
    /// The whole translation unit NVRTC (or clang) compiles: the prelude, then the kernels.
    pub fn source(&self) -> String {
        format!("{}\n{}", prelude(), self.kernels_source)
    }

    /// The emitted kernels (steps that are not cuBLAS calls).
    pub fn kernels(&self) -> impl Iterator<Item = &CudaKernel> {
        self.steps.iter().filter_map(|s| match s {
            CudaStep::Kernel(k) => Some(k),
            CudaStep::Gemm(_) => None,
        })
    }
}

/// Translates every step of a verified schedule. Kernels with nothing to do (an empty output
/// domain) are left out. `prefix` starts every function name (so several programs can share a
/// module in tests).
///
/// ```
/// use kiln_passes::pipeline::{compile, PipelineOptions};
/// let g = kiln_passes::workloads::layer_norm_gelu(4, 8).unwrap();
/// let s = compile(&g, &PipelineOptions::default()).unwrap().schedule;
/// let p = kiln_codegen::cuda::emit_schedule(&s, "ln").unwrap();
/// assert!(p.kernels().count() >= 1);
/// assert!(p.source().contains("__global__"));
/// ```
pub fn emit_schedule(s: &Schedule, prefix: &str) -> Result<CudaProgram> {
    s.verify().map_err(|e| CudaError::Schedule(e.to_string()))?;
    let mut src = String::new();
    let mut steps = vec![];
    for (si, step) in s.steps.iter().enumerate() {
        match step {
            Step::Kernel(k) => {
                if let Some(ck) = emit_kernel(s, k, &format!("{prefix}_{si}"), &mut src)? {
                    steps.push(CudaStep::Kernel(ck));
                }
            }
            Step::MatMul(mm) => match plan_gemm(mm) {
                Some(g) => steps.push(CudaStep::Gemm(g)),
                None => {
                    let k = matmul_kernel(mm);
                    if let Some(ck) = emit_kernel(s, &k, &format!("{prefix}_{si}"), &mut src)? {
                        steps.push(CudaStep::Kernel(ck));
                    }
                }
            },
        }
    }
    Ok(CudaProgram { kernels_source: src, steps })
}

// ----- matrix products ------------------------------------------------------------------------

/// The matrix product as a reduction kernel over `[batch.., m, n, k]` (for integer products and
/// operands cuBLAS cannot address).
pub fn matmul_kernel(mm: &MatMulStep) -> Kernel {
    let nb = mm.batch.len();
    let mut domain = mm.batch.clone();
    domain.extend([mm.m, mm.n, mm.k]);
    let spread = |acc: &Access, row_axis: usize, col_axis: usize| {
        let mut st = vec![0i64; nb + 3];
        st[..nb].copy_from_slice(&acc.strides[..nb]);
        st[row_axis] = acc.strides[nb];
        st[col_axis] = acc.strides[nb + 1];
        Access { offset: acc.offset, strides: st }
    };
    let a = spread(&mm.a.access, nb, nb + 2);
    let b = spread(&mm.b.access, nb + 2, nb + 1);
    let out = {
        let c = Access::contiguous(&{
            let mut s = mm.batch.clone();
            s.extend([mm.m, mm.n]);
            s
        });
        let mut st = c.strides.clone();
        st.push(0);
        Access { offset: 0, strides: st }
    };
    let dt = mm.dtype;
    Kernel {
        name: format!("{}_as_reduction", mm.name),
        domain,
        reduce_axes: vec![nb + 2],
        instrs: vec![
            Instr { op: KOp::Load { buffer: mm.a.buffer, access: a }, dtype: dt },
            Instr { op: KOp::Load { buffer: mm.b.buffer, access: b }, dtype: dt },
            Instr { op: KOp::Binary(BinaryOp::Mul, 0, 1), dtype: dt },
            Instr { op: KOp::Reduce(ReduceOp::Sum, 2), dtype: dt },
        ],
        stores: vec![Store { buffer: mm.out, value: 3, access: out }],
    }
}

/// `(transposed, ld)` addressing the logical `rows × cols` matrix at `s_r·r + s_c·c` in
/// cuBLAS's column-major convention, if it can.
fn layout(rows: usize, cols: usize, s_r: i64, s_c: i64) -> Option<(bool, usize)> {
    if s_r < 0 || s_c < 0 {
        return None;
    }
    let (s_r, s_c) = (s_r as usize, s_c as usize);
    // Column-major as is: unit row stride, ld = column stride.
    if s_r == 1 || rows == 1 {
        let ld = if cols == 1 { rows.max(1) } else { s_c };
        if ld >= rows.max(1) {
            return Some((false, ld));
        }
    }
    // Transposed: the stored matrix is cols × rows.
    if s_c == 1 || cols == 1 {
        let ld = if rows == 1 { cols.max(1) } else { s_r };
        if ld >= cols.max(1) {
            return Some((true, ld));
        }
    }
    None
}

/// The cuBLAS form of a matrix product, or `None` when cuBLAS cannot do it (integer dtype,
/// negative or overlapping strides): then it runs as [`matmul_kernel`].
pub fn plan_gemm(mm: &MatMulStep) -> Option<Gemm> {
    if !matches!(mm.dtype, DType::F32 | DType::F64) || mm.m == 0 || mm.n == 0 || mm.k == 0 {
        return None;
    }
    let nb = mm.batch.len();
    let (sa, sb) = (&mm.a.access.strides, &mm.b.access.strides);
    // cuBLAS A = our b as (n × k): rows stride sb_n, column stride sb_k.
    let (trans_a, lda) = layout(mm.n, mm.k, sb[nb + 1], sb[nb])?;
    // cuBLAS B = our a as (k × m).
    let (trans_b, ldb) = layout(mm.k, mm.m, sa[nb + 1], sa[nb])?;
    // Batch axes (extent > 1) as (extent, stride a, stride b, stride c).
    let cstr = Access::contiguous(&{
        let mut s = mm.batch.clone();
        s.extend([mm.m, mm.n]);
        s
    })
    .strides;
    let axes: Vec<(usize, i64, i64, i64)> =
        (0..nb).filter(|&d| mm.batch[d] > 1).map(|d| (mm.batch[d], sa[d], sb[d], cstr[d])).collect();
    // The longest suffix that collapses into one strided batch.
    let mut inner = axes.len().saturating_sub(1);
    while inner > 0 {
        let (_, a, b, c) = axes[inner - 1];
        let (e1, a1, b1, c1) = axes[inner];
        let e1 = e1 as i64;
        if a == a1 * e1 && b == b1 * e1 && c == c1 * e1 {
            inner -= 1;
        } else {
            break;
        }
    }
    // The collapsed axes step by the innermost one's strides.
    let (batch, stride_a, stride_b, stride_c) = match axes[inner..].last() {
        Some(&(_, a, b, c)) => (axes[inner..].iter().map(|x| x.0).product::<usize>(), a, b, c),
        None => (1, 0, 0, (mm.m * mm.n) as i64),
    };
    if stride_a < 0 || stride_b < 0 {
        return None;
    }
    // One call per point of the outer batch axes.
    let mut calls = vec![(mm.b.access.offset, mm.a.access.offset, 0i64)];
    for &(e, a, b, c) in &axes[..inner] {
        if a < 0 || b < 0 {
            return None;
        }
        calls = calls
            .iter()
            .flat_map(|&(o_a, o_b, o_c)| (0..e as i64).map(move |i| (o_a + i * b, o_b + i * a, o_c + i * c)))
            .collect();
    }
    Some(Gemm {
        ir_name: mm.name.clone(),
        dtype: mm.dtype,
        trans_a,
        trans_b,
        m: mm.n,
        n: mm.m,
        k: mm.k,
        a: mm.b.buffer,
        lda,
        stride_a: stride_b,
        b: mm.a.buffer,
        ldb,
        stride_b: stride_a,
        c: mm.out,
        ldc: mm.n,
        stride_c,
        batch,
        calls,
    })
}

// ----- kernels --------------------------------------------------------------------------------

fn cty(dt: DType) -> &'static str {
    match dt {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I64 => "i64",
        DType::Bool => "bool",
    }
}

/// Element type of a buffer pointer (bool buffers hold bytes 0/1).
fn buf_ty(dt: DType) -> &'static str {
    match dt {
        DType::Bool => "unsigned char",
        d => cty(d),
    }
}

fn sfx(dt: DType) -> &'static str {
    match dt {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I64 => "i64",
        DType::Bool => "bool",
    }
}

/// A constant of dtype `dt` as a C expression (exact: shortest round-trip digits, or bits).
fn const_expr(c: f64, dt: DType) -> String {
    match dt {
        DType::Bool => if c != 0.0 { "true" } else { "false" }.into(),
        DType::I64 => {
            let v = c as i64;
            if v == i64::MIN {
                "(-9223372036854775807LL - 1)".into()
            } else {
                format!("{v}LL")
            }
        }
        DType::F32 => {
            let v = c as f32;
            if v.is_finite() {
                format!("{v:?}f").pipe_neg(v.is_sign_negative())
            } else {
                format!("kiln_from_f32({:#x})", v.to_bits())
            }
        }
        DType::F64 => {
            if c.is_finite() {
                format!("{c:?}").pipe_neg(c.is_sign_negative())
            } else {
                format!("kiln_from_f64({:#x}LL)", c.to_bits() as i64)
            }
        }
    }
}

trait PipeNeg {
    fn pipe_neg(self, neg: bool) -> String;
}
impl PipeNeg for String {
    /// Parenthesises negative literals (so `a - -1` never reads as `a--1`).
    fn pipe_neg(self, neg: bool) -> String {
        if neg {
            format!("({self})")
        } else {
            self
        }
    }
}

/// The accumulator dtype of a reduction (f32 sums accumulate in f64, like the interpreter).
fn acc_dtype(op: ReduceOp, dt: DType) -> DType {
    match (op, dt) {
        (ReduceOp::Sum | ReduceOp::Mean, DType::F32) => DType::F64,
        _ => dt,
    }
}

fn identity(op: ReduceOp, adt: DType) -> String {
    match (op, adt) {
        (ReduceOp::Max, DType::I64) => "(-9223372036854775807LL - 1)".into(),
        (ReduceOp::Max, d) => const_expr(f64::NEG_INFINITY, d),
        (_, d) => const_expr(0.0, d),
    }
}

fn combine(op: ReduceOp, adt: DType, acc: &str, v: &str) -> String {
    match (op, adt) {
        (ReduceOp::Max, d) => format!("kiln_max_{}({acc}, {v})", sfx(d)),
        (_, DType::I64) => format!("kiln_add_i64({acc}, {v})"),
        _ => format!("{acc} + {v}"),
    }
}

/// C expression of a cast of `x` from `from` to `to`.
fn cast_expr(x: &str, from: DType, to: DType) -> String {
    match (from, to) {
        _ if from == to => x.to_string(),
        (DType::F32 | DType::F64, DType::I64) => format!("kiln_f2i((double){x})"),
        (_, DType::Bool) => format!("({x} != 0)"),
        (DType::Bool, t) => format!("({x} ? ({}) 1 : ({}) 0)", cty(t), cty(t)),
        (_, t) => format!("({}){x}", cty(t)),
    }
}

/// Emission context of one kernel.
struct Em<'a> {
    lk: &'a LoopKernel,
    s: &'a Schedule,
    idx_ty: &'static str,
    needed: Vec<bool>,
}

/// Where a store happens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// At every point of the reduce loop (values not depending on a reduction).
    Pre,
    /// Once per output point.
    Outer,
    /// At every point, after the reduction.
    InnerPost,
    /// Never (a value independent of the reduced axes, stored per point of an empty reduction).
    Skip,
}

impl Em<'_> {
    fn axis(d: usize) -> String {
        format!("i{d}")
    }

    /// The element index of `a` (axis variables `i{d}`).
    fn index(&self, a: &Access) -> String {
        let mut terms = vec![];
        for (d, &s) in a.strides.iter().enumerate() {
            if s == 0 || self.lk.ext[d] == 1 {
                continue;
            }
            terms.push(if s == 1 { Self::axis(d) } else { format!("{s} * {}", Self::axis(d)) });
        }
        if a.offset != 0 || terms.is_empty() {
            terms.insert(0, a.offset.to_string());
        }
        terms.join(" + ")
    }

    /// Lines binding `i{d}` for those of `axes` (outermost first) that `body` mentions, from the
    /// flat index `flat`.
    fn decompose(&self, out: &mut String, ind: &str, flat: &str, axes: &[usize], body: &str) {
        let t = self.idx_ty;
        let used: Vec<bool> = axes.iter().map(|&d| mentions(body, &Self::axis(d))).collect();
        let Some(first) = used.iter().position(|&u| u) else { return };
        if axes.len() == 1 {
            let _ = writeln!(out, "{ind}const {t} {} = {flat};", Self::axis(axes[0]));
            return;
        }
        let tmp = format!("{flat}_r");
        let _ = writeln!(out, "{ind}{t} {tmp} = {flat};");
        for (j, &d) in axes.iter().enumerate().rev() {
            if j < first {
                break;
            }
            let e = self.lk.ext[d];
            if j == 0 {
                let _ = writeln!(out, "{ind}const {t} {} = {tmp};", Self::axis(d));
            } else {
                if used[j] {
                    let _ = writeln!(out, "{ind}const {t} {} = {tmp} % {e};", Self::axis(d));
                }
                if j > first {
                    let _ = writeln!(out, "{ind}{tmp} /= {e};");
                }
            }
        }
    }

    /// Emits definitions of `targets` and what they need that is not in `names` yet.
    fn values(
        &self,
        out: &mut String,
        ind: &str,
        names: &mut [Option<String>],
        targets: &[usize],
    ) -> Result<()> {
        let n = self.lk.instrs.len();
        let mut want = vec![false; n];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(v) = stack.pop() {
            if want[v] || names[v].is_some() {
                continue;
            }
            want[v] = true;
            stack.extend(self.lk.instrs[v].op.operands());
        }
        for v in 0..n {
            if !want[v] {
                continue;
            }
            let e = self.expr(names, v)?;
            let _ = writeln!(out, "{ind}const {} v{v} = {e};", cty(self.lk.instrs[v].dtype));
            names[v] = Some(format!("v{v}"));
        }
        Ok(())
    }

    fn expr(&self, names: &[Option<String>], v: usize) -> Result<String> {
        let ins = &self.lk.instrs[v];
        let dt = ins.dtype;
        let arg = |a: usize| -> Result<String> {
            names[a].clone().ok_or_else(|| {
                CudaError::Internal(format!("kernel {}: %{a} used before it is computed", self.lk.name))
            })
        };
        let dt_of = |a: usize| self.lk.instrs[a].dtype;
        Ok(match &ins.op {
            KOp::Load { buffer, access } => {
                let e = format!("b{buffer}[{}]", self.index(access));
                if dt == DType::Bool {
                    format!("({e} != 0)")
                } else {
                    e
                }
            }
            KOp::Const(c) => const_expr(*c, dt),
            KOp::Unary(op, a) => unary(*op, dt, &arg(*a)?).ok_or_else(|| {
                CudaError::Unsupported(format!(
                    "kernel {}: {} is not defined for {dt}",
                    self.lk.name,
                    op.name()
                ))
            })?,
            KOp::Binary(BinaryOp::Pow, a, c) if dt.is_float() && small_exponent(self.lk, *c).is_some() => {
                // x^c for c in {-1, 0, 1, 2}: the CPU backend's exact shortcuts.
                let x = arg(*a)?;
                let t = cty(dt);
                match small_exponent(self.lk, *c).expect("checked") {
                    0 => format!("({t})1.0"),
                    1 => x,
                    2 => format!("{x} * {x}"),
                    _ => format!("({t})1.0 / {x}"),
                }
            }
            KOp::Binary(op, a, c) => binary(*op, dt, &arg(*a)?, &arg(*c)?),
            KOp::Compare(op, a, c) => compare(*op, dt_of(*a), &arg(*a)?, &arg(*c)?),
            KOp::Where(c, a, e) => format!("{} ? {} : {}", arg(*c)?, arg(*a)?, arg(*e)?),
            KOp::Cast(a) => cast_expr(&arg(*a)?, dt_of(*a), dt),
            // Reached only when every reduced axis has extent 1: the reduction is the identity.
            KOp::Reduce(_, a) => arg(*a)?,
        })
    }

    fn store_line(&self, st: &Store, names: &[Option<String>]) -> Result<String> {
        let v = names[st.value].clone().ok_or_else(|| {
            CudaError::Internal(format!("kernel {}: store of an uncomputed value", self.lk.name))
        })?;
        let dt = self.s.buffers[st.buffer].dtype;
        let v = if dt == DType::Bool { format!("(unsigned char)({v})") } else { v };
        Ok(format!("b{}[{}] = {v};", st.buffer, self.index(&st.access)))
    }
}

/// Whether `body` uses the identifier `name`.
fn mentions(body: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    body.match_indices(name).any(|(i, _)| {
        let before = body[..i].chars().next_back();
        let after = body[i + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn small_exponent(lk: &LoopKernel, v: usize) -> Option<i32> {
    match lk.instrs[v].op {
        KOp::Const(c) if [-1.0, 0.0, 1.0, 2.0].contains(&c) => Some(c as i32),
        _ => None,
    }
}

/// `None` for an op the dtype does not have (the planner's type check rejects those first).
fn unary(op: UnaryOp, dt: DType, x: &str) -> Option<String> {
    if dt == DType::I64 {
        return match op {
            UnaryOp::Neg => Some(format!("(i64)(0ull - (u64){x})")),
            UnaryOp::Abs => Some(format!("({x} < 0 ? (i64)(0ull - (u64){x}) : {x})")),
            UnaryOp::Relu => Some(format!("({x} > 0 ? {x} : 0LL)")),
            UnaryOp::Sign => Some(format!("(i64)(({x} > 0) - ({x} < 0))")),
            _ => None,
        };
    }
    if dt == DType::Bool {
        return None;
    }
    let s = sfx(dt);
    let t = cty(dt);
    Some(match op {
        UnaryOp::Neg => format!("-{x}"),
        UnaryOp::Abs => format!("kiln_abs_{s}({x})"),
        UnaryOp::Sqrt => format!("kiln_sqrt_{s}({x})"),
        UnaryOp::Reciprocal => format!("({t})1.0 / {x}"),
        UnaryOp::Relu => format!("({x} < ({t})0.0 ? ({t})0.0 : {x})"),
        UnaryOp::Sign => format!("({x} > ({t})0.0 ? ({t})1.0 : ({x} < ({t})0.0 ? ({t})-1.0 : {x}))"),
        UnaryOp::Exp => format!("kiln_exp_{s}({x})"),
        UnaryOp::Log => format!("kiln_log_{s}({x})"),
        UnaryOp::Tanh => format!("kiln_tanh_{s}({x})"),
        UnaryOp::Sigmoid => format!("kiln_sigmoid_{s}({x})"),
        UnaryOp::Erf => format!("kiln_erf_{s}({x})"),
        UnaryOp::Sin => format!("kiln_sin_{s}({x})"),
        UnaryOp::Cos => format!("kiln_cos_{s}({x})"),
    })
}

fn binary(op: BinaryOp, dt: DType, a: &str, b: &str) -> String {
    if dt == DType::I64 {
        return match op {
            BinaryOp::Add => format!("(i64)((u64){a} + (u64){b})"),
            BinaryOp::Sub => format!("(i64)((u64){a} - (u64){b})"),
            BinaryOp::Mul => format!("(i64)((u64){a} * (u64){b})"),
            BinaryOp::Div => format!("kiln_div_i64({a}, {b}, status)"),
            BinaryOp::Pow => format!("kiln_pow_i64({a}, {b}, status)"),
            BinaryOp::Max => format!("kiln_max_i64({a}, {b})"),
            BinaryOp::Min => format!("kiln_min_i64({a}, {b})"),
        };
    }
    let s = sfx(dt);
    match op {
        BinaryOp::Add => format!("{a} + {b}"),
        BinaryOp::Sub => format!("{a} - {b}"),
        BinaryOp::Mul => format!("{a} * {b}"),
        BinaryOp::Div => format!("{a} / {b}"),
        BinaryOp::Pow => format!("kiln_pow_{s}({a}, {b})"),
        BinaryOp::Max => format!("kiln_max_{s}({a}, {b})"),
        BinaryOp::Min => format!("kiln_min_{s}({a}, {b})"),
    }
}

fn compare(op: CompareOp, dt: DType, a: &str, b: &str) -> String {
    match (dt, op) {
        (DType::Bool, CompareOp::Greater) => format!("({a} && !{b})"),
        (DType::Bool, CompareOp::Less) => format!("(!{a} && {b})"),
        (_, CompareOp::Equal) => format!("({a} == {b})"),
        (_, CompareOp::Greater) => format!("({a} > {b})"),
        (_, CompareOp::Less) => format!("({a} < {b})"),
    }
}

/// A C identifier from a kernel name.
fn ident(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn grid_for(work: u64, per_block: u64) -> u32 {
    work.div_ceil(per_block).clamp(1, MAX_GRID) as u32
}

/// Emits one kernel into `src`; `None` when it has nothing to do.
fn emit_kernel(s: &Schedule, k: &Kernel, tag: &str, src: &mut String) -> Result<Option<CudaKernel>> {
    plan::check_types(k).map_err(|e| CudaError::Unsupported(e.to_string()))?;
    let slot_dtypes: Vec<DType> = s.buffers.iter().map(|b| b.dtype).collect();
    let load_buf = |i: usize| match &k.instrs[i].op {
        KOp::Load { buffer, .. } => *buffer,
        _ => unreachable!("a load"),
    };
    let all_stores: Vec<usize> = (0..k.stores.len()).collect();
    // The tag (program prefix and step index) makes the name unique; the IR name, cut to a
    // readable length, says what the kernel does.
    let ir: String = ident(&k.name).chars().take(48).collect();
    let name = format!("kiln_{}_{ir}", ident(tag));
    let lk = plan::plan_kernel(k, name.clone(), &load_buf, &|j| k.stores[j].buffer, slot_dtypes, &all_stores)
        .map_err(|e| CudaError::Unsupported(e.to_string()))?;
    let Some(lk) = lk else { return Ok(None) };
    let n = lk.instrs.len();
    let rank = lk.ext.len();
    let red_axes: Vec<usize> = (0..rank).filter(|&d| lk.red[d]).collect();
    let out_axes: Vec<usize> = (0..rank).filter(|&d| !lk.red[d]).collect();
    let has_red = !red_axes.is_empty();

    let mut needed = vec![false; n];
    for st in &lk.stores {
        needed[st.value] = true;
    }
    for i in (0..n).rev() {
        if needed[i] {
            for a in lk.instrs[i].op.operands() {
                needed[a] = true;
            }
        }
    }
    // Index type: 32-bit when every index fits.
    let total: u128 = lk.ext.iter().map(|&e| e as u128).product();
    let span = s.buffers.iter().map(|b| b.numel as u128).max().unwrap_or(0);
    let idx_ty = if total < (1 << 31) && span < (1 << 31) { "int" } else { "i64" };
    let em = Em { lk: &lk, s, idx_ty, needed };

    let r_count: u64 = red_axes.iter().map(|&d| lk.ext[d] as u64).product();
    let outer_count: u64 = out_axes.iter().map(|&d| lk.ext[d] as u64).product();
    let kinds: Vec<StoreKind> = lk
        .stores
        .iter()
        .map(|st| {
            let v = st.value;
            let flat_over_red = red_axes.iter().all(|&d| st.access.strides[d] == 0);
            if has_red && !lk.inner[v] && flat_over_red {
                if lk.post[v] || r_count > 0 {
                    StoreKind::Outer
                } else {
                    StoreKind::Skip
                }
            } else if lk.post[v] && has_red {
                StoreKind::InnerPost
            } else {
                StoreKind::Pre
            }
        })
        .collect();
    // Stores must be one-to-one over the points that perform them, else run serially.
    let serial = lk.stores.iter().zip(&kinds).any(|(st, kind)| {
        let skip: Vec<bool> = (0..rank).map(|d| *kind == StoreKind::Outer && lk.red[d]).collect();
        !plan::injective(&st.access.strides, &lk.ext, &skip)
    });
    // Row reductions (the innermost axis reduced) share a block per output; column reductions
    // keep neighbouring threads on neighbouring columns, unless there are too few outputs to
    // occupy the GPU for the length of their reductions.
    let few_long = outer_count < 1024 && r_count >= 1024;
    let strategy = if !has_red {
        Strategy::Elementwise
    } else if !serial && r_count >= 32 && (lk.red[rank - 1] || few_long) {
        Strategy::BlockPerOutput
    } else {
        Strategy::ThreadPerOutput
    };

    // Parameters.
    let mut params: Vec<usize> = lk
        .instrs
        .iter()
        .filter_map(|i| if let KOp::Load { buffer, .. } = i.op { Some(buffer) } else { None })
        .chain(lk.stores.iter().map(|st| st.buffer))
        .collect();
    params.sort_unstable();
    params.dedup();
    let status = lk.instrs.iter().enumerate().any(|(i, ins)| {
        em.needed[i]
            && ins.dtype == DType::I64
            && matches!(ins.op, KOp::Binary(BinaryOp::Div | BinaryOp::Pow, ..))
    });
    let written: Vec<usize> = lk.stores.iter().map(|st| st.buffer).collect();
    // Read-only buffers are `__restrict__` unless the arena places them over a written one
    // (in-place reuse).
    let arena = |b: usize| {
        let buf = &s.buffers[b];
        buf.arena_offset.map(|o| (o, o + buf.bytes()))
    };
    let overlaps_written = |b: usize| {
        arena(b).is_some_and(|(lo, hi)| {
            written.iter().any(|&w| arena(w).is_some_and(|(wl, wh)| lo < wh && wl < hi))
        })
    };
    let mut plist: Vec<String> = params
        .iter()
        .map(|&b| {
            let t = buf_ty(s.buffers[b].dtype);
            if written.contains(&b) {
                format!("{t} *b{b}")
            } else if overlaps_written(b) {
                format!("const {t} *b{b}")
            } else {
                format!("const {t} *__restrict__ b{b}")
            }
        })
        .collect();
    if status {
        plist.push("unsigned *status".into());
    }
    let block = if serial { 1 } else { BLOCK };
    let (work, launch) = match strategy {
        Strategy::Elementwise => (total as u64, Launch { grid: grid_for(total as u64, block as u64), block }),
        Strategy::BlockPerOutput => (outer_count, Launch { grid: grid_for(outer_count, 1), block }),
        Strategy::ThreadPerOutput => {
            (outer_count, Launch { grid: grid_for(outer_count, block as u64), block })
        }
    };
    let launch = if serial { Launch { grid: 1, block: 1 } } else { launch };

    // Source.
    let t = idx_ty;
    let _ = writeln!(src, "// {} over {:?}{}: {:?}", k.name, k.domain, red_note(k), strategy);
    let _ = writeln!(
        src,
        "extern \"C\" __global__ void __launch_bounds__({block}) {name}({}) {{",
        plist.join(", ")
    );
    let mut names: Vec<Option<String>> = vec![None; n];
    let stores_of = |kind: StoreKind| -> Vec<&Store> {
        lk.stores.iter().zip(&kinds).filter(|(_, k)| **k == kind).map(|(s, _)| s).collect()
    };
    let value_targets = |sts: &[&Store]| -> Vec<usize> { sts.iter().map(|s| s.value).collect() };
    match strategy {
        Strategy::Elementwise => {
            let _ = writeln!(
                src,
                "  for ({t} p = ({t})KILN_CTAID * ({t})KILN_NTID + ({t})KILN_TID; p < {total}; p += ({t})KILN_NCTAID * ({t})KILN_NTID) {{"
            );
            let axes: Vec<usize> = (0..rank).filter(|&d| lk.ext[d] > 1).collect();
            let sts: Vec<&Store> = lk.stores.iter().collect();
            let mut body = String::new();
            em.values(&mut body, "    ", &mut names, &value_targets(&sts))?;
            for st in sts {
                let _ = writeln!(body, "    {}", em.store_line(st, &names)?);
            }
            em.decompose(src, "    ", "p", &axes, &body);
            src.push_str(&body);
            src.push_str("  }\n");
        }
        Strategy::BlockPerOutput | Strategy::ThreadPerOutput => {
            let block_mode = strategy == Strategy::BlockPerOutput;
            let reduces: Vec<usize> =
                (0..n).filter(|&i| em.needed[i] && matches!(lk.instrs[i].op, KOp::Reduce(..))).collect();
            let info = |r: usize| -> (ReduceOp, usize, DType, DType) {
                match lk.instrs[r].op {
                    KOp::Reduce(op, a) => {
                        let dt = lk.instrs[r].dtype;
                        (op, a, dt, acc_dtype(op, dt))
                    }
                    _ => unreachable!("a reduce"),
                }
            };
            if block_mode {
                for &r in &reduces {
                    let (_, _, _, adt) = info(r);
                    let _ = writeln!(src, "  __shared__ {} sm{r}[32];", cty(adt));
                }
                let _ = writeln!(src, "  for ({t} o = KILN_CTAID; o < {outer_count}; o += KILN_NCTAID) {{");
            } else {
                let _ = writeln!(
                    src,
                    "  for ({t} o = ({t})KILN_CTAID * ({t})KILN_NTID + ({t})KILN_TID; o < {outer_count}; o += ({t})KILN_NCTAID * ({t})KILN_NTID) {{"
                );
            }
            let ind = "    ";
            let outer_axes: Vec<usize> = out_axes.iter().copied().filter(|&d| lk.ext[d] > 1).collect();
            let red_loop_axes: Vec<usize> = red_axes.iter().copied().filter(|&d| lk.ext[d] > 1).collect();
            // A loop over the reduced points around `inner`.
            let red_loop = |body: &mut String, inner: &str| {
                if block_mode {
                    let _ = writeln!(body, "{ind}for ({t} r = KILN_TID; r < {r_count}; r += KILN_NTID) {{");
                } else {
                    let _ = writeln!(body, "{ind}for ({t} r = 0; r < {r_count}; ++r) {{");
                }
                em.decompose(body, "      ", "r", &red_loop_axes, inner);
                body.push_str(inner);
                let _ = writeln!(body, "{ind}}}");
            };
            let mut body = String::new();
            // Phase 1: accumulate, and the stores of values before the reduction.
            for &r in &reduces {
                let (op, _, _, adt) = info(r);
                let _ = writeln!(body, "{ind}{} acc{r} = {};", cty(adt), identity(op, adt));
            }
            let pre = stores_of(StoreKind::Pre);
            if !reduces.is_empty() || !pre.is_empty() {
                let mut inner = String::new();
                let mut inner_names = names.clone();
                let mut targets: Vec<usize> = reduces.iter().map(|&r| info(r).1).collect();
                targets.extend(value_targets(&pre));
                em.values(&mut inner, "      ", &mut inner_names, &targets)?;
                for &r in &reduces {
                    let (op, a, dt, adt) = info(r);
                    let x = cast_expr(inner_names[a].as_deref().expect("computed"), dt, adt);
                    let _ = writeln!(inner, "      acc{r} = {};", combine(op, adt, &format!("acc{r}"), &x));
                }
                for st in &pre {
                    let _ = writeln!(inner, "      {}", em.store_line(st, &inner_names)?);
                }
                red_loop(&mut body, &inner);
            }
            // The reductions' results.
            for &r in &reduces {
                let (op, _, dt, adt) = info(r);
                let mut acc = format!("acc{r}");
                if block_mode {
                    let kind = if op == ReduceOp::Max { "max" } else { "sum" };
                    let _ = writeln!(body, "{ind}{acc} = kiln_block_{kind}_{}({acc}, sm{r});", sfx(adt));
                }
                if op == ReduceOp::Mean {
                    acc = format!("{acc} / ({}){}", cty(adt), r_count);
                }
                let _ = writeln!(
                    body,
                    "{ind}const {} v{r} = {};",
                    cty(dt),
                    cast_expr(&format!("({acc})"), adt, dt)
                );
                names[r] = Some(format!("v{r}"));
            }
            // Once per output point.
            let outer = stores_of(StoreKind::Outer);
            if !outer.is_empty() {
                em.values(&mut body, ind, &mut names, &value_targets(&outer))?;
                if block_mode {
                    let _ = writeln!(body, "{ind}if (KILN_TID == 0) {{");
                    for st in &outer {
                        let _ = writeln!(body, "{ind}  {}", em.store_line(st, &names)?);
                    }
                    let _ = writeln!(body, "{ind}}}");
                } else {
                    for st in &outer {
                        let _ = writeln!(body, "{ind}{}", em.store_line(st, &names)?);
                    }
                }
            }
            // Phase 2: values after the reduction stored at every point.
            let post = stores_of(StoreKind::InnerPost);
            if !post.is_empty() {
                let mut inner = String::new();
                let mut inner_names = names.clone();
                em.values(&mut inner, "      ", &mut inner_names, &value_targets(&post))?;
                for st in &post {
                    let _ = writeln!(inner, "      {}", em.store_line(st, &inner_names)?);
                }
                red_loop(&mut body, &inner);
            }
            em.decompose(src, ind, "o", &outer_axes, &body);
            src.push_str(&body);
            src.push_str("  }\n");
        }
    }
    src.push_str("}\n\n");
    Ok(Some(CudaKernel {
        name,
        ir_name: k.name.clone(),
        params,
        status,
        strategy,
        launch,
        work,
        reduce_count: r_count.max(1),
    }))
}

fn red_note(k: &Kernel) -> String {
    if k.reduce_axes.is_empty() {
        String::new()
    } else {
        format!(" reduce {:?}", k.reduce_axes)
    }
}
