//! Cranelift code generation for one [`LoopKernel`].
//!
//! ## Function shape
//! `fn(slots: *const *mut u8, begin: u64, end: u64) -> u32` processes work units `begin..end`
//! (see `plan`): the unit index is decomposed once into the parallel loop indices, which are then
//! advanced like an odometer. Inside a unit:
//!
//! - **λ not reduced, no reduction** (elementwise kernels): the λ points of the unit's block
//!   are processed in groups of `group` lanes (8: two f32x4 or four f64x2 per value), then 4,
//!   then 1 (the tail).
//! - **λ not reduced, with a reduction** (column reductions): the reduce loops run *outside*
//!   the λ loop over the unit's block, with one accumulator per lane in a stack area (see
//!   `block_outer_lane`), so each step reads whole rows of the block; post-reduce values are
//!   then computed per lane, and phase 2 (post-reduce values stored at every point) runs the
//!   reduce loops again.
//! - **λ reduced** (row reductions): the unit is one output point; phase 1 runs the reduced axes
//!   with λ innermost in groups of lanes accumulating into vector accumulators (plus a scalar
//!   one for the tail), reduced horizontally at the end; phase 2 likewise.
//!
//! ## Values
//! A kernel value in a group of `L` lanes is a list of 128-bit vector *pieces* (Cranelift on
//! x86-64 lowers 128-bit vectors only): f32 → `f32x4`, f64 → `f64x2`, i64 → `i64x2`, bool → a
//! lane mask (all ones / zero), `i32x4` or `i64x2` depending on what produced it, converted on
//! use. `L = 1` (tails, per-output-point values) uses one piece with every lane equal to the value.
//! Ops without an x86-64 vector form (i64 division and power, int↔float casts) run lane by lane
//! on extracted scalars.
//!
//! ## Memory
//! Loads and stores address `slot + (offset + Σ stride·index) · size`. Along λ, a stride of 1 is
//! a vector load/store, 0 a scalar load and splat, anything else per-lane scalar accesses. Every
//! address is inside its buffer because the access was verified over the whole domain and every
//! lane of a group is a point of the domain.
//!
//! ## Run-time errors
//! Integer division by zero and integer powers with a negative exponent are errors in the
//! reference interpreter. Generated code never traps: it divides by 1 instead, and returns a
//! status with [`STATUS_INT_DIV_ZERO`] / [`STATUS_NEG_INT_POW`] set.

use super::jit::{little, mem, Jit};
use super::math::{self, MathCtx, MathFn};
use super::plan::{LoopKernel, ParDim};
use super::{CpuError, Result};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, types::Type, ConstantData, FuncRef, InstBuilder, StackSlotData, StackSlotKind, Value,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_jit::JITModule;
use cranelift_module::Module;
use kiln_ir::{BinaryOp, CompareOp, DType, ReduceOp, UnaryOp};
use kiln_passes::kernel::{Access, KOp, Store};

/// Status bit: an integer division by zero happened.
pub(crate) const STATUS_INT_DIV_ZERO: u32 = 1;
/// Status bit: an integer power had a negative exponent.
pub(crate) const STATUS_NEG_INT_POW: u32 = 2;

/// `a^e` for `e >= 0`, wrapping (the interpreter's `int_pow`); 0 for `e < 0` (flagged inline).
extern "C" fn kiln_ipow(a: i64, e: i64) -> i64 {
    if e < 0 {
        return 0;
    }
    let (mut base, mut e, mut acc) = (a, e as u64, 1i64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    acc
}

/// Host functions generated code may call, registered with the JIT.
pub(crate) fn helper_symbols() -> Vec<(&'static str, *const u8)> {
    vec![("kiln_ipow", kiln_ipow as *const u8)]
}

/// A value over a group of lanes: its vector pieces.
#[derive(Clone, Debug)]
enum Rep {
    /// Numbers (f32x4, f64x2 or i64x2 pieces by dtype).
    Num(Vec<Value>),
    /// Bool as i32x4 lane masks.
    M32(Vec<Value>),
    /// Bool as i64x2 lane masks.
    M64(Vec<Value>),
}

#[derive(Clone, Debug)]
struct Val {
    rep: Rep,
    lanes: usize,
}

/// Where code is being emitted: the lanes of a group and the bound loop indices.
#[derive(Clone)]
struct Ctx {
    lanes: usize,
    /// Index of each normalised axis (for λ: of lane 0); `None` where the code does not depend on
    /// the axis (the access strides there are zero by construction).
    idx: Vec<Option<Value>>,
}

fn vty(dt: DType) -> Type {
    match dt {
        DType::F32 => types::F32X4,
        DType::F64 => types::F64X2,
        DType::I64 => types::I64X2,
        DType::Bool => types::I32X4,
    }
}

fn sty(dt: DType) -> Type {
    match dt {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

fn pieces(lanes_per: usize, lanes: usize) -> usize {
    lanes.div_ceil(lanes_per)
}

/// The accumulator dtype of a reduction (f32 sums accumulate in f64, like the interpreter).
fn acc_dtype(op: ReduceOp, dt: DType) -> DType {
    match (op, dt) {
        (ReduceOp::Sum | ReduceOp::Mean, DType::F32) => DType::F64,
        _ => dt,
    }
}

struct Em<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    k: &'a LoopKernel,
    math: MathCtx,
    ipow: FuncRef,
    err: Variable,
    slots: Vec<Value>,
    /// Values needed by this function's stores.
    needed: Vec<bool>,
}

/// Emits the body of `k` into `b` (positioned in the entry block; `params` = slots, begin, end).
pub(crate) fn emit_kernel(
    b: &mut FunctionBuilder,
    module: &mut JITModule,
    params: [Value; 3],
    k: &LoopKernel,
) -> Result<()> {
    let ipow = Jit::import(module, b.func, "kiln_ipow", &[types::I64, types::I64], types::I64)?;
    let math = MathCtx::for_isa(module.isa());
    let [slots_ptr, begin, end] = params;
    let slots = (0..k.slot_dtypes.len())
        .map(|i| b.ins().load(types::I64, mem().with_readonly(), slots_ptr, (8 * i) as i32))
        .collect();
    let err = b.declare_var(types::I32);
    let zero32 = b.ins().iconst(types::I32, 0);
    b.def_var(err, zero32);
    let mut needed = vec![false; k.instrs.len()];
    for s in &k.stores {
        needed[s.value] = true;
    }
    for i in (0..k.instrs.len()).rev() {
        if needed[i] {
            for a in k.instrs[i].op.operands() {
                needed[a] = true;
            }
        }
    }
    let mut em = Em { b, k, math, ipow, err, slots, needed };
    em.units(begin, end)?;
    Ok(())
}

impl Em<'_, '_> {
    // ----- control flow ---------------------------------------------------------------------

    /// The unit loop: decompose `begin`, run units until `end`, return the status.
    fn units(&mut self, begin: Value, end: Value) -> Result<()> {
        let k = self.k;
        let exts: Vec<i64> = k
            .par
            .iter()
            .map(|p| match p {
                ParDim::Axis(d) => k.ext[*d] as i64,
                ParDim::LaneBlocks { count, .. } => *count as i64,
            })
            .collect();
        let exit = self.b.create_block();
        let head = self.b.create_block();
        let it = self.b.declare_var(types::I64);
        self.b.def_var(it, begin);
        // Decompose begin (units are row-major over `par`).
        let mut rest = begin;
        let mut idx_vars = vec![];
        for _ in &exts {
            idx_vars.push(self.b.declare_var(types::I64));
        }
        for p in (0..exts.len()).rev() {
            let e = exts[p];
            let q = self.b.ins().udiv_imm_u(rest, e);
            let r = self.b.ins().urem_imm_u(rest, e);
            self.b.def_var(idx_vars[p], r);
            rest = q;
        }
        let nonempty = self.b.ins().icmp(IntCC::UnsignedLessThan, begin, end);
        self.b.ins().brif(nonempty, head, &[], exit, &[]);

        self.b.switch_to_block(head);
        let mut ctx = Ctx { lanes: 1, idx: vec![None; k.ext.len()] };
        let mut lane_range = None;
        for (p, pd) in k.par.iter().enumerate() {
            let v = self.b.use_var(idx_vars[p]);
            match pd {
                ParDim::Axis(d) => ctx.idx[*d] = Some(v),
                ParDim::LaneBlocks { block, .. } => {
                    let lo = self.b.ins().imul_imm_s(v, *block as i64);
                    let hi0 = self.b.ins().iadd_imm_s(lo, *block as i64);
                    let ext = self.b.ins().iconst(types::I64, k.ext[k.lane] as i64);
                    let hi = self.b.ins().smin(hi0, ext);
                    lane_range = Some((lo, hi, *block));
                }
            }
        }
        if k.lane_reduced() {
            self.unit_lane_reduced(&ctx)?;
        } else {
            let (lo, hi, block) = lane_range.expect("λ not reduced: lane blocks");
            if k.has_reduction() {
                self.block_outer_lane(lo, hi, block, &ctx)?;
            } else {
                self.lane_loops(lo, hi, &ctx, &mut |em, c| em.group_elementwise(c))?;
            }
        }
        // Next unit.
        let cur = self.b.use_var(it);
        let next = self.b.ins().iadd_imm_s(cur, 1);
        self.b.def_var(it, next);
        let done = self.b.ins().icmp(IntCC::Equal, next, end);
        let inc_blocks: Vec<_> = (0..exts.len()).map(|_| self.b.create_block()).collect();
        let first_inc = if exts.is_empty() { head } else { inc_blocks[exts.len() - 1] };
        self.b.ins().brif(done, exit, &[], first_inc, &[]);
        for p in (0..exts.len()).rev() {
            self.b.switch_to_block(inc_blocks[p]);
            let v = self.b.use_var(idx_vars[p]);
            let v1 = self.b.ins().iadd_imm_s(v, 1);
            if p == 0 {
                self.b.def_var(idx_vars[p], v1);
                self.b.ins().jump(head, &[]);
            } else {
                let lt = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, v1, exts[p]);
                let zero = self.b.ins().iconst(types::I64, 0);
                let nv = self.b.ins().select(lt, v1, zero);
                self.b.def_var(idx_vars[p], nv);
                self.b.ins().brif(lt, head, &[], inc_blocks[p - 1], &[]);
            }
        }
        self.b.switch_to_block(exit);
        let status = self.b.use_var(self.err);
        self.b.ins().return_(&[status]);
        Ok(())
    }

    /// `for (j = var; j + step <= limit; j += step) body(j)`; `var` keeps the final `j`.
    fn counted_loop(
        &mut self,
        var: Variable,
        limit: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Self, Value) -> Result<()>,
    ) -> Result<()> {
        let head = self.b.create_block();
        let body_b = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let j = self.b.use_var(var);
        let nxt = self.b.ins().iadd_imm_s(j, step);
        let ok = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, nxt, limit);
        self.b.ins().brif(ok, body_b, &[], exit, &[]);
        self.b.switch_to_block(body_b);
        body(self, j)?;
        let j2 = self.b.ins().iadd_imm_s(j, step);
        self.b.def_var(var, j2);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// λ from `lo` to `hi` in groups of `group`, then 4, then 1 lanes.
    fn lane_loops(
        &mut self,
        lo: Value,
        hi: Value,
        ctx: &Ctx,
        body: &mut dyn FnMut(&mut Self, &Ctx) -> Result<()>,
    ) -> Result<()> {
        let lane = self.k.lane;
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        // Only the steps a range of at most `max_len` points can take (small domains get only
        // the scalar loop: less code to compile), and no tail loops when every range is a
        // multiple of a larger step (they would never run; the code of a kernel with erf and exp
        // is ~40% tail loops).
        let max_len = self.k.lane_range_max();
        let steps = [self.k.group, 4, 1];
        for (i, &l) in steps.iter().enumerate() {
            if l > max_len && l > 1 {
                continue;
            }
            if steps[..i].iter().any(|&big| big <= max_len && self.k.lane_ranges_multiple_of(big)) {
                continue;
            }
            let mut c = ctx.clone();
            c.lanes = l;
            self.counted_loop(var, hi, l as i64, &mut |em, j| {
                c.idx[lane] = Some(j);
                body(em, &c)
            })?;
        }
        Ok(())
    }

    /// Nested loops over `axes` (each from 0 to its extent), then `body`.
    fn axis_loops(
        &mut self,
        axes: &[usize],
        ctx: &Ctx,
        body: &mut dyn FnMut(&mut Self, &Ctx) -> Result<()>,
    ) -> Result<()> {
        match axes.split_first() {
            None => body(self, ctx),
            Some((&d, rest)) => {
                let var = self.b.declare_var(types::I64);
                let zero = self.b.ins().iconst(types::I64, 0);
                self.b.def_var(var, zero);
                let lim = self.b.ins().iconst(types::I64, self.k.ext[d] as i64);
                let mut c = ctx.clone();
                self.counted_loop(var, lim, 1, &mut |em, j| {
                    c.idx[d] = Some(j);
                    em.axis_loops(rest, &c, body)
                })
            }
        }
    }

    fn reduced_axes(&self, except: Option<usize>) -> Vec<usize> {
        (0..self.k.ext.len()).filter(|&d| self.k.red[d] && Some(d) != except).collect()
    }

    // ----- kernel structure -----------------------------------------------------------------

    /// Values computed once per output group before the reduce loops: needed values that vary
    /// neither over the reduced axes nor depend on a reduction.
    fn base_env(&mut self, ctx: &Ctx) -> Result<Vec<Option<Val>>> {
        let k = self.k;
        let mut env = vec![None; k.instrs.len()];
        let want: Vec<usize> =
            (0..k.instrs.len()).filter(|&i| self.needed[i] && !k.inner[i] && !k.post[i]).collect();
        self.eval(&mut env, ctx, &want)?;
        Ok(env)
    }

    /// One group of lanes of an elementwise kernel.
    fn group_elementwise(&mut self, ctx: &Ctx) -> Result<()> {
        let mut env = vec![None; self.k.instrs.len()];
        let stores: Vec<&Store> = self.k.stores.iter().collect();
        self.stores(&mut env, ctx, &stores)
    }

    /// One block of λ points `lo..hi` of a reduction along other axes (column reductions).
    ///
    /// The reduce loops run outside the λ loop, so every step reads `hi - lo` consecutive
    /// elements of a row (whole cache lines and pages, instead of one line per row and column
    /// group); each lane's accumulator lives in a stack area of the block's size (in L1).
    /// 1. Accumulators ← identity. 2. Phase 1: for each reduced point, for each λ group: add
    ///    the group's values, store pre-reduce values. 3. For each λ group: finish the
    ///    reductions, keep the results in a second area, compute post-reduce values and do the
    ///    outer stores. 4. Phase 2 (when a post-reduce value is stored at every point): for each
    ///    reduced point, for each λ group: recompute from the kept results and store.
    fn block_outer_lane(&mut self, lo: Value, hi: Value, block: usize, ctx: &Ctx) -> Result<()> {
        let k = self.k;
        let red_axes = self.reduced_axes(None);
        let reduces = self.reduces();
        // Areas: accumulators (acc dtype) then finished values (dtype), 8 bytes per lane each.
        let area = (block * 8) as u32;
        let size = 2 * area * reduces.len() as u32 + 16;
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 4));
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let lane = k.lane;
        // Address of lane j's element in area `a` (elements of `bytes` bytes).
        let lane_addr = |em: &mut Self, a: usize, bytes: usize, c: &Ctx| -> Value {
            let j = c.idx[lane].expect("λ bound");
            let rel = em.b.ins().isub(j, lo);
            let off = em.b.ins().imul_imm_s(rel, bytes as i64);
            let p = em.b.ins().iadd(base, off);
            em.b.ins().iadd_imm_s(p, (a as u32 * area) as i64)
        };
        let infos: Vec<(ReduceOp, DType, DType)> = reduces
            .iter()
            .map(|&r| {
                let (op, _, dt) = self.reduce_of(r);
                (op, dt, acc_dtype(op, dt))
            })
            .collect();
        // 1. Identity.
        self.lane_loops(lo, hi, ctx, &mut |em, c| {
            for (i, &(op, _, adt)) in infos.iter().enumerate() {
                let id = em.identity(op, adt);
                let n = pieces(vty(adt).lane_count() as usize, c.lanes);
                let v = Val { rep: Rep::Num(vec![id; n]), lanes: c.lanes };
                let addr = lane_addr(em, 2 * i, adt.size_bytes(), c);
                em.area_store(addr, adt, v);
            }
            Ok(())
        })?;
        // 2. Phase 1.
        let pre: Vec<&Store> = k.stores.iter().filter(|s| !k.post[s.value]).collect();
        self.axis_loops(&red_axes, ctx, &mut |em, c| {
            em.lane_loops(lo, hi, c, &mut |em, cl| {
                let mut env = vec![None; k.instrs.len()];
                for (i, &r) in reduces.iter().enumerate() {
                    let (op, dt, adt) = infos[i];
                    let a = match k.instrs[r].op {
                        KOp::Reduce(_, a) => a,
                        _ => unreachable!("a reduce"),
                    };
                    em.eval(&mut env, cl, &[a])?;
                    let v = em.get(&env, a, cl.lanes);
                    let v = em.cast(v, dt, adt);
                    let addr = lane_addr(em, 2 * i, adt.size_bytes(), cl);
                    let acc = em.area_load(addr, adt, cl.lanes);
                    let (Rep::Num(ps), Rep::Num(qs)) = (&acc.rep, &v.rep) else { unreachable!("numbers") };
                    let out = ps.iter().zip(qs).map(|(&p, &q)| em.combine(op, adt, p, q)).collect();
                    em.area_store(addr, adt, Val { rep: Rep::Num(out), lanes: cl.lanes });
                }
                em.stores(&mut env, cl, &pre)
            })
        })?;
        // 3. Finish, outer values and stores.
        let outer: Vec<&Store> = k.stores.iter().filter(|s| k.is_outer_store(s)).collect();
        let want: Vec<usize> =
            (0..k.instrs.len()).filter(|&i| self.needed[i] && k.post[i] && !k.inner[i]).collect();
        self.lane_loops(lo, hi, ctx, &mut |em, c| {
            let mut env = vec![None; k.instrs.len()];
            for (i, &r) in reduces.iter().enumerate() {
                let (_, dt, adt) = infos[i];
                let addr = lane_addr(em, 2 * i, adt.size_bytes(), c);
                let acc = em.area_load(addr, adt, c.lanes);
                let v = em.finish_acc_lanes(r, acc);
                let faddr = lane_addr(em, 2 * i + 1, dt.size_bytes(), c);
                em.area_store(faddr, dt, v.clone());
                env[r] = Some(v);
            }
            em.eval(&mut env, c, &want)?;
            em.stores(&mut env, c, &outer)
        })?;
        // 4. Phase 2.
        let inner_post: Vec<&Store> =
            k.stores.iter().filter(|s| k.post[s.value] && !k.is_outer_store(s)).collect();
        if inner_post.is_empty() {
            return Ok(());
        }
        self.axis_loops(&red_axes, ctx, &mut |em, c| {
            em.lane_loops(lo, hi, c, &mut |em, cl| {
                let mut env = vec![None; k.instrs.len()];
                for (i, &r) in reduces.iter().enumerate() {
                    let dt = infos[i].1;
                    let faddr = lane_addr(em, 2 * i + 1, dt.size_bytes(), cl);
                    env[r] = Some(em.area_load(faddr, dt, cl.lanes));
                }
                em.stores(&mut env, cl, &inner_post)
            })
        })
    }

    /// Loads `lanes` numbers of `dt` from a stack area (lane 0 at `addr`).
    fn area_load(&mut self, addr: Value, dt: DType, lanes: usize) -> Val {
        let ty = vty(dt);
        let ps = if lanes == 1 {
            let x = self.b.ins().load(sty(dt), mem(), addr, 0);
            vec![self.b.ins().splat(ty, x)]
        } else {
            let n = pieces(ty.lane_count() as usize, lanes);
            (0..n).map(|p| self.b.ins().load(ty, mem(), addr, (16 * p) as i32)).collect()
        };
        Val { rep: Rep::Num(ps), lanes }
    }

    /// Stores `v` (numbers of `dt`) to a stack area (lane 0 at `addr`).
    fn area_store(&mut self, addr: Value, dt: DType, v: Val) {
        let Rep::Num(ps) = v.rep else { unreachable!("numbers") };
        if v.lanes == 1 {
            let x = self.b.ins().extractlane(ps[0], 0);
            let _ = dt;
            self.b.ins().store(mem(), x, addr, 0);
        } else {
            for (p, &x) in ps.iter().enumerate() {
                self.b.ins().store(mem(), x, addr, (16 * p) as i32);
            }
        }
    }

    /// One output point of a reduction along λ (row reductions).
    fn unit_lane_reduced(&mut self, ctx1: &Ctx) -> Result<()> {
        let k = self.k;
        let base = self.base_env(ctx1)?;
        let lane = k.lane;
        let red_axes = self.reduced_axes(Some(lane));
        let reduces = self.reduces();
        let vaccs = self.init_accs(&reduces, k.group);
        let saccs = self.init_accs(&reduces, 1);
        let pre: Vec<&Store> = k.stores.iter().filter(|s| !k.post[s.value]).collect();
        let zero = self.b.ins().iconst(types::I64, 0);
        let hi = self.b.ins().iconst(types::I64, k.ext[lane] as i64);
        self.axis_loops(&red_axes, ctx1, &mut |em, c| {
            em.lane_loops(zero, hi, c, &mut |em, cl| {
                let mut env = base.clone();
                let (accs, partial) = if cl.lanes == 1 { (&saccs, false) } else { (&vaccs, true) };
                em.accumulate(&mut env, cl, &reduces, accs, partial)?;
                em.stores(&mut env, cl, &pre)
            })
        })?;
        let mut env = base.clone();
        for (i, r) in reduces.iter().enumerate() {
            let v = self.finish_acc_horizontal(*r, &vaccs[i], &saccs[i]);
            env[*r] = Some(v);
        }
        self.post_phase(env, ctx1, &red_axes, Some((zero, hi)))
    }

    /// After the reductions: outer values and stores at `ctx`, then phase 2 (post-reduce values
    /// that vary over the reduced axes) if anything stores one. `lane_range` is set when λ is
    /// reduced (phase 2 then loops over it in groups).
    fn post_phase(
        &mut self,
        mut env: Vec<Option<Val>>,
        ctx: &Ctx,
        red_axes: &[usize],
        lane_range: Option<(Value, Value)>,
    ) -> Result<()> {
        let k = self.k;
        let outer: Vec<&Store> = k.stores.iter().filter(|s| k.is_outer_store(s)).collect();
        let want: Vec<usize> =
            (0..k.instrs.len()).filter(|&i| self.needed[i] && k.post[i] && !k.inner[i]).collect();
        self.eval(&mut env, ctx, &want)?;
        self.stores(&mut env, ctx, &outer)?;
        let inner_post: Vec<&Store> =
            k.stores.iter().filter(|s| k.post[s.value] && !k.is_outer_store(s)).collect();
        if inner_post.is_empty() {
            return Ok(());
        }
        let env2 = env;
        self.axis_loops(red_axes, ctx, &mut |em, c| match lane_range {
            None => {
                let mut e = env2.clone();
                em.stores(&mut e, c, &inner_post)
            }
            Some((lo, hi)) => em.lane_loops(lo, hi, c, &mut |em, cl| {
                let mut e = env2.clone();
                em.stores(&mut e, cl, &inner_post)
            }),
        })
    }

    /// The needed `Reduce` instructions.
    fn reduces(&self) -> Vec<usize> {
        (0..self.k.instrs.len())
            .filter(|&i| self.needed[i] && matches!(self.k.instrs[i].op, KOp::Reduce(..)))
            .collect()
    }

    fn reduce_of(&self, r: usize) -> (ReduceOp, usize, DType) {
        match self.k.instrs[r].op {
            KOp::Reduce(op, a) => (op, a, self.k.instrs[r].dtype),
            _ => unreachable!("a reduce"),
        }
    }

    /// Accumulator variables for each reduce over `lanes` lanes, set to the identity.
    fn init_accs(&mut self, reduces: &[usize], lanes: usize) -> Vec<Vec<Variable>> {
        reduces
            .iter()
            .map(|&r| {
                let (op, _, dt) = self.reduce_of(r);
                let adt = acc_dtype(op, dt);
                let n = pieces(vty(adt).lane_count() as usize, lanes);
                let init = self.identity(op, adt);
                (0..n)
                    .map(|_| {
                        let v = self.b.declare_var(vty(adt));
                        self.b.def_var(v, init);
                        v
                    })
                    .collect()
            })
            .collect()
    }

    fn identity(&mut self, op: ReduceOp, adt: DType) -> Value {
        let x = match op {
            ReduceOp::Sum | ReduceOp::Mean => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
        };
        match (adt, op) {
            (DType::I64, ReduceOp::Max) => self.splat_i64(i64::MIN),
            _ => self.splat_const(adt, x),
        }
    }

    /// Adds the values of one group (at `ctx`) into the accumulators (`partial`: the group may
    /// cover only the first pieces of a wider accumulator).
    fn accumulate(
        &mut self,
        env: &mut [Option<Val>],
        ctx: &Ctx,
        reduces: &[usize],
        accs: &[Vec<Variable>],
        partial: bool,
    ) -> Result<()> {
        for (i, &r) in reduces.iter().enumerate() {
            let (op, a, dt) = self.reduce_of(r);
            self.eval(env, ctx, &[a])?;
            let v = self.get(env, a, ctx.lanes);
            let adt = acc_dtype(op, dt);
            let v = self.cast(v, dt, adt);
            let Rep::Num(ps) = v.rep else { unreachable!("reductions are numeric") };
            debug_assert!(partial || ps.len() == accs[i].len());
            for (p, &var) in ps.iter().zip(&accs[i]) {
                let acc = self.b.use_var(var);
                let n = self.combine(op, adt, acc, *p);
                self.b.def_var(var, n);
            }
        }
        Ok(())
    }

    /// `acc ⊕ v` for one piece.
    fn combine(&mut self, op: ReduceOp, adt: DType, acc: Value, v: Value) -> Value {
        match (op, adt) {
            (ReduceOp::Sum | ReduceOp::Mean, DType::I64) => self.b.ins().iadd(acc, v),
            (ReduceOp::Sum | ReduceOp::Mean, _) => self.b.ins().fadd(acc, v),
            (ReduceOp::Max, DType::I64) => self.imax(acc, v),
            (ReduceOp::Max, _) => self.fmax_nan(acc, v),
        }
    }

    /// Reduced value per lane (λ not reduced): the accumulators themselves, finished.
    fn finish_acc_lanes(&mut self, r: usize, acc: Val) -> Val {
        let (op, _, dt) = self.reduce_of(r);
        let adt = acc_dtype(op, dt);
        let mut v = acc;
        if op == ReduceOp::Mean {
            let n = self.splat_const(adt, self.k.r_count as f64);
            v = self.map_num(&v, |b, p| b.ins().fdiv(p, n));
        }
        self.cast(v, adt, dt)
    }

    /// Reduced value of one output point (λ reduced): vector accumulators reduced across pieces
    /// and lanes, combined with the tail's scalar accumulator.
    fn finish_acc_horizontal(&mut self, r: usize, vvars: &[Variable], svars: &[Variable]) -> Val {
        let (op, _, dt) = self.reduce_of(r);
        let adt = acc_dtype(op, dt);
        let mut ps: Vec<Value> = vvars.iter().map(|&v| self.b.use_var(v)).collect();
        while ps.len() > 1 {
            let mut next = vec![];
            for pair in ps.chunks(2) {
                next.push(if pair.len() == 2 { self.combine(op, adt, pair[0], pair[1]) } else { pair[0] });
            }
            ps = next;
        }
        let s = self.b.use_var(svars[0]);
        let mut acc = self.b.ins().extractlane(s, 0);
        let lanes = vty(adt).lane_count();
        for l in 0..lanes {
            let x = self.b.ins().extractlane(ps[0], l as u8);
            acc = self.combine_scalar(op, adt, acc, x);
        }
        if op == ReduceOp::Mean {
            let n = self.b.ins().f64const(self.k.r_count as f64);
            acc = self.b.ins().fdiv(acc, n);
        }
        let acc = if adt != dt { self.scalar_cast(acc, adt, dt) } else { acc };
        let p = self.b.ins().splat(vty(dt), acc);
        Val { rep: Rep::Num(vec![p]), lanes: 1 }
    }

    fn combine_scalar(&mut self, op: ReduceOp, adt: DType, acc: Value, v: Value) -> Value {
        match (op, adt) {
            (ReduceOp::Sum | ReduceOp::Mean, DType::I64) => self.b.ins().iadd(acc, v),
            (ReduceOp::Sum | ReduceOp::Mean, _) => self.b.ins().fadd(acc, v),
            (ReduceOp::Max, DType::I64) => self.b.ins().smax(acc, v),
            (ReduceOp::Max, _) => {
                let ge = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, acc, v);
                let m = self.b.ins().select(ge, acc, v);
                let nan = self.b.ins().fcmp(FloatCC::Unordered, acc, acc);
                self.b.ins().select(nan, acc, m)
            }
        }
    }

    fn scalar_cast(&mut self, x: Value, from: DType, to: DType) -> Value {
        match (from, to) {
            (DType::F64, DType::F32) => self.b.ins().fdemote(types::F32, x),
            _ => x,
        }
    }

    // ----- evaluation -----------------------------------------------------------------------

    /// Evaluates `targets` (and whatever they need that `env` lacks) at `ctx`.
    fn eval(&mut self, env: &mut [Option<Val>], ctx: &Ctx, targets: &[usize]) -> Result<()> {
        let mut want = vec![false; env.len()];
        let mut stack: Vec<usize> = targets.iter().copied().filter(|&t| env[t].is_none()).collect();
        while let Some(v) = stack.pop() {
            if want[v] || env[v].is_some() {
                continue;
            }
            want[v] = true;
            if let KOp::Reduce(..) = self.k.instrs[v].op {
                if self.k.has_reduction() {
                    return Err(CpuError::Internal(format!(
                        "kernel {}: reduce %{v} used before it is computed",
                        self.k.name
                    )));
                }
            }
            stack.extend(self.k.instrs[v].op.operands().into_iter().filter(|&a| env[a].is_none()));
        }
        for v in 0..env.len() {
            if !want[v] || env[v].is_some() {
                continue;
            }
            // erf(z) next to exp(−(z·z)) (GELU and its derivative): the exponential first, so
            // that erf can use it (`instr` passes it on). Both are elementwise in z, so the
            // exponential is needed in this same loop body even when these targets don't ask
            // for it yet (a reduction's operand first, a store later).
            if let Some(chain) = self.erf_exp_partner(v) {
                for u in chain {
                    if env[u].is_none() {
                        let val = self.instr(env, ctx, u)?;
                        env[u] = Some(val);
                    }
                }
            }
            let val = self.instr(env, ctx, v)?;
            env[v] = Some(val);
        }
        Ok(())
    }

    /// For `v = Erf(z)`: the instructions `[z·z, −(z·z), exp(−(z·z))]` when the kernel has all
    /// three (same float type), so that erf can take e^(−z²) from the Exp op.
    fn erf_exp_partner(&self, v: usize) -> Option<[usize; 3]> {
        let ins = &self.k.instrs;
        let KOp::Unary(UnaryOp::Erf, z) = ins[v].op else { return None };
        let dt = ins[v].dtype;
        let find = |want: &dyn Fn(&KOp) -> bool| ins.iter().position(|i| i.dtype == dt && want(&i.op));
        let sq = find(&|op| *op == KOp::Binary(BinaryOp::Mul, z, z))?;
        let neg = find(&|op| *op == KOp::Unary(UnaryOp::Neg, sq))?;
        let e = find(&|op| *op == KOp::Unary(UnaryOp::Exp, neg))?;
        Some([sq, neg, e])
    }

    /// The value `v` over `lanes` lanes (broadcasting a once-per-point value).
    fn get(&mut self, env: &[Option<Val>], v: usize, lanes: usize) -> Val {
        let val = env[v].as_ref().expect("evaluated in order").clone();
        if val.lanes == lanes {
            return val;
        }
        debug_assert_eq!(val.lanes, 1);
        let (ps, ty) = match &val.rep {
            Rep::Num(ps) => (ps, vty(self.k.instrs[v].dtype)),
            Rep::M32(ps) => (ps, types::I32X4),
            Rep::M64(ps) => (ps, types::I64X2),
        };
        let x = self.b.ins().extractlane(ps[0], 0);
        let s = self.b.ins().splat(ty, x);
        let out = vec![s; pieces(ty.lane_count() as usize, lanes)];
        let rep = match val.rep {
            Rep::Num(_) => Rep::Num(out),
            Rep::M32(_) => Rep::M32(out),
            Rep::M64(_) => Rep::M64(out),
        };
        Val { rep, lanes }
    }

    fn instr(&mut self, env: &[Option<Val>], ctx: &Ctx, v: usize) -> Result<Val> {
        let ins = &self.k.instrs[v];
        let l = ctx.lanes;
        let dt = ins.dtype;
        Ok(match &ins.op {
            KOp::Load { buffer, access } => self.load(*buffer, dt, access, ctx)?,
            KOp::Const(c) => {
                let p = match dt {
                    DType::Bool => {
                        let m = if *c != 0.0 { -1 } else { 0 };
                        let x = self.b.ins().iconst(types::I32, m);
                        let p = self.b.ins().splat(types::I32X4, x);
                        return Ok(Val { rep: Rep::M32(vec![p; pieces(4, l)]), lanes: l });
                    }
                    DType::I64 => self.splat_i64(*c as i64),
                    _ => self.splat_const(dt, *c),
                };
                Val { rep: Rep::Num(vec![p; pieces(vty(dt).lane_count() as usize, l)]), lanes: l }
            }
            KOp::Unary(UnaryOp::Erf, a)
                if self.erf_exp_partner(v).is_some_and(|[.., e]| env[e].is_some()) =>
            {
                let [.., e] = self.erf_exp_partner(v).expect("checked");
                let x = self.get(env, *a, l);
                let ex = self.get(env, e, l);
                let ty = vty(dt);
                let out = Self::nums(&x)
                    .iter()
                    .zip(Self::nums(&ex))
                    .map(|(&p, &q)| math::emit_erf_with_exp(self.b, p, q, ty, &mut self.math))
                    .collect();
                Val { rep: Rep::Num(out), lanes: l }
            }
            KOp::Unary(op, a) => {
                let x = self.get(env, *a, l);
                self.unary(*op, dt, x)
            }
            // x^c for a constant c in {-1, 0, 1, 2}: exact shortcuts (1/x and x·x are correctly
            // rounded, like the reference's powf; pow(x, 0) = 1 even for NaN).
            KOp::Binary(BinaryOp::Pow, a, c) if dt.is_float() && self.small_exponent(*c).is_some() => {
                let x = self.get(env, *a, l);
                match self.small_exponent(*c).expect("checked") {
                    0 => {
                        let one = self.splat_const(dt, 1.0);
                        self.map_num(&x, |_, _| one)
                    }
                    1 => x,
                    2 => self.zip_num(&x, &x, |e, p, q| e.b.ins().fmul(p, q)),
                    _ => {
                        let one = self.splat_const(dt, 1.0);
                        self.map_num(&x, |b, p| b.ins().fdiv(one, p))
                    }
                }
            }
            KOp::Binary(op, a, c) => {
                let x = self.get(env, *a, l);
                let y = self.get(env, *c, l);
                self.binary(*op, dt, x, y)
            }
            KOp::Compare(op, a, c) => {
                let adt = self.k.instrs[*a].dtype;
                let x = self.get(env, *a, l);
                let y = self.get(env, *c, l);
                self.compare(*op, adt, x, y)
            }
            KOp::Where(c, a, e) => {
                let cv = self.get(env, *c, l);
                let x = self.get(env, *a, l);
                let y = self.get(env, *e, l);
                self.select(dt, cv, x, y)
            }
            KOp::Cast(a) => {
                let from = self.k.instrs[*a].dtype;
                let x = self.get(env, *a, l);
                self.cast(x, from, dt)
            }
            // Only reached when every reduced axis has extent 1: the reduction is the identity.
            KOp::Reduce(_, a) => self.get(env, *a, l),
        })
    }

    /// `Some(c)` when value `v` is a constant exponent with a shortcut (-1, 0, 1 or 2).
    fn small_exponent(&self, v: usize) -> Option<i32> {
        match self.k.instrs[v].op {
            KOp::Const(c) if [-1.0, 0.0, 1.0, 2.0].contains(&c) => Some(c as i32),
            _ => None,
        }
    }

    // ----- memory ---------------------------------------------------------------------------

    /// Element index of lane 0 of `access` at `ctx`, and the stride along λ.
    fn index(&mut self, access: &Access, ctx: &Ctx) -> Result<(Value, i64)> {
        let mut idx: Option<Value> = None;
        for (d, &s) in access.strides.iter().enumerate() {
            if s == 0 {
                continue;
            }
            match ctx.idx[d] {
                Some(i) => {
                    let t = if s == 1 { i } else { self.b.ins().imul_imm_s(i, s) };
                    idx = Some(match idx {
                        Some(x) => self.b.ins().iadd(x, t),
                        None => t,
                    });
                }
                None => {
                    return Err(CpuError::Internal(format!(
                        "kernel {}: an access varies over axis {d}, which is not bound here",
                        self.k.name
                    )))
                }
            }
        }
        let idx = match idx {
            Some(x) if access.offset == 0 => x,
            Some(x) => self.b.ins().iadd_imm_s(x, access.offset),
            None => self.b.ins().iconst(types::I64, access.offset),
        };
        Ok((idx, access.strides[self.k.lane]))
    }

    fn address(&mut self, slot: usize, idx: Value, size: usize) -> Value {
        let off = if size == 1 { idx } else { self.b.ins().ishl_imm_s(idx, size.trailing_zeros() as i64) };
        self.b.ins().iadd(self.slots[slot], off)
    }

    /// `base + delta` bytes (as an immediate offset when it fits).
    fn offset_addr(&mut self, base: Value, delta: i64) -> (Value, i32) {
        match i32::try_from(delta) {
            Ok(d) => (base, d),
            Err(_) => (self.b.ins().iadd_imm_s(base, delta), 0),
        }
    }

    fn load(&mut self, slot: usize, dt: DType, access: &Access, ctx: &Ctx) -> Result<Val> {
        let l = ctx.lanes;
        let (idx, s) = self.index(access, ctx)?;
        let size = dt.size_bytes();
        let addr = self.address(slot, idx, size);
        let f = mem();
        if dt == DType::Bool {
            let ps = if l == 1 || s == 0 {
                let x = self.b.ins().uload8(types::I32, f, addr, 0);
                let p = self.b.ins().splat(types::I32X4, x);
                vec![p; pieces(4, l)]
            } else if s == 1 {
                let bytes = match l {
                    4 => {
                        let x = self.b.ins().load(types::I32, f, addr, 0);
                        let v = self.b.ins().scalar_to_vector(types::I32X4, x);
                        self.b.ins().bitcast(types::I8X16, little(), v)
                    }
                    8 => {
                        let x = self.b.ins().load(types::I64, f, addr, 0);
                        let v = self.b.ins().scalar_to_vector(types::I64X2, x);
                        self.b.ins().bitcast(types::I8X16, little(), v)
                    }
                    16 => self.b.ins().load(types::I8X16, f, addr, 0),
                    _ => unreachable!("lane counts are 1, 4, 8, 16"),
                };
                let lo16 = self.b.ins().uwiden_low(bytes);
                let mut out = vec![self.b.ins().uwiden_low(lo16)];
                if l >= 8 {
                    out.push(self.b.ins().uwiden_high(lo16));
                }
                if l == 16 {
                    let hi16 = self.b.ins().uwiden_high(bytes);
                    out.push(self.b.ins().uwiden_low(hi16));
                    out.push(self.b.ins().uwiden_high(hi16));
                }
                out
            } else {
                let mut lanes = vec![];
                for j in 0..l {
                    let (a, o) = self.offset_addr(addr, j as i64 * s);
                    lanes.push(self.b.ins().uload8(types::I32, f, a, o));
                }
                self.build(types::I32X4, &lanes)
            };
            let zero = self.splat_i32(0);
            let ms = ps.into_iter().map(|p| self.b.ins().icmp(IntCC::NotEqual, p, zero)).collect();
            return Ok(Val { rep: Rep::M32(ms), lanes: l });
        }
        let ty = vty(dt);
        let per = ty.lane_count() as usize;
        let ps = if l == 1 || s == 0 {
            let x = self.b.ins().load(sty(dt), f, addr, 0);
            let p = self.b.ins().splat(ty, x);
            vec![p; pieces(per, l)]
        } else if s == 1 {
            (0..pieces(per, l)).map(|p| self.b.ins().load(ty, f, addr, (16 * p) as i32)).collect()
        } else {
            let mut lanes = vec![];
            for j in 0..l {
                let (a, o) = self.offset_addr(addr, j as i64 * s * size as i64);
                lanes.push(self.b.ins().load(sty(dt), f, a, o));
            }
            self.build(ty, &lanes)
        };
        Ok(Val { rep: Rep::Num(ps), lanes: l })
    }

    /// Vectors of type `ty` holding `lanes` (the last piece's spare lanes repeat lane 0's value).
    fn build(&mut self, ty: Type, lanes: &[Value]) -> Vec<Value> {
        let per = ty.lane_count() as usize;
        let mut out = vec![];
        for chunk in lanes.chunks(per) {
            let mut v = self.b.ins().splat(ty, chunk[0]);
            for (i, &x) in chunk.iter().enumerate().skip(1) {
                v = self.b.ins().insertlane(v, x, i as u8);
            }
            out.push(v);
        }
        out
    }

    fn stores(&mut self, env: &mut [Option<Val>], ctx: &Ctx, stores: &[&Store]) -> Result<()> {
        let vals: Vec<usize> = stores.iter().map(|s| s.value).collect();
        self.eval(env, ctx, &vals)?;
        for s in stores {
            let v = self.get(env, s.value, ctx.lanes);
            let dt = self.k.slot_dtypes[s.buffer];
            self.store(s.buffer, dt, &s.access, ctx, v)?;
        }
        Ok(())
    }

    /// Lane `j` of a value as a scalar (bool: an i32 0/1... mask; callers mask it).
    fn lane_of(&mut self, ps: &[Value], ty: Type, j: usize) -> Value {
        let per = ty.lane_count() as usize;
        self.b.ins().extractlane(ps[j / per], (j % per) as u8)
    }

    fn store(&mut self, slot: usize, dt: DType, access: &Access, ctx: &Ctx, v: Val) -> Result<()> {
        let l = ctx.lanes;
        let (idx, s) = self.index(access, ctx)?;
        let size = dt.size_bytes();
        let addr = self.address(slot, idx, size);
        let f = mem();
        if dt == DType::Bool {
            let ps = self.mask32(&v);
            if l > 1 && s == 1 {
                let one = self.b.ins().iconst(types::I8, 1);
                let ones = self.b.ins().splat(types::I8X16, one);
                match l {
                    4 => {
                        let w = self.b.ins().snarrow(ps[0], ps[0]);
                        let b8 = self.b.ins().snarrow(w, w);
                        let b8 = self.b.ins().band(b8, ones);
                        let x = self.b.ins().bitcast(types::I32X4, little(), b8);
                        let x = self.b.ins().extractlane(x, 0);
                        self.b.ins().store(f, x, addr, 0);
                    }
                    8 => {
                        let w = self.b.ins().snarrow(ps[0], ps[1]);
                        let b8 = self.b.ins().snarrow(w, w);
                        let b8 = self.b.ins().band(b8, ones);
                        let x = self.b.ins().bitcast(types::I64X2, little(), b8);
                        let x = self.b.ins().extractlane(x, 0);
                        self.b.ins().store(f, x, addr, 0);
                    }
                    16 => {
                        let w0 = self.b.ins().snarrow(ps[0], ps[1]);
                        let w1 = self.b.ins().snarrow(ps[2], ps[3]);
                        let b8 = self.b.ins().snarrow(w0, w1);
                        let b8 = self.b.ins().band(b8, ones);
                        self.b.ins().store(f, b8, addr, 0);
                    }
                    _ => unreachable!("lane counts are 1, 4, 8, 16"),
                }
                return Ok(());
            }
            let lanes: Vec<usize> = if l == 1 || s == 0 { vec![l - 1] } else { (0..l).collect() };
            for j in lanes {
                let x = self.lane_of(&ps, types::I32X4, j);
                let x = self.b.ins().band_imm_s(x, 1);
                let off = if s == 0 { 0 } else { j as i64 * s };
                let (a, o) = self.offset_addr(addr, off);
                self.b.ins().istore8(f, x, a, o);
            }
            return Ok(());
        }
        let Rep::Num(ps) = v.rep else { unreachable!("numbers") };
        let ty = vty(dt);
        if l > 1 && s == 1 {
            for (p, &x) in ps.iter().enumerate() {
                self.b.ins().store(f, x, addr, (16 * p) as i32);
            }
            return Ok(());
        }
        // Serially, the last lane of a stride-0 store is the last write.
        let lanes: Vec<usize> = if l == 1 || s == 0 { vec![l - 1] } else { (0..l).collect() };
        for j in lanes {
            let x = self.lane_of(&ps, ty, j);
            let off = if s == 0 { 0 } else { j as i64 * s * size as i64 };
            let (a, o) = self.offset_addr(addr, off);
            self.b.ins().store(f, x, a, o);
        }
        Ok(())
    }

    // ----- constants and small helpers ------------------------------------------------------

    fn splat_const(&mut self, dt: DType, c: f64) -> Value {
        match dt {
            DType::F32 => {
                let x = self.b.ins().f32const(c as f32);
                self.b.ins().splat(types::F32X4, x)
            }
            DType::F64 => {
                let x = self.b.ins().f64const(c);
                self.b.ins().splat(types::F64X2, x)
            }
            DType::I64 => self.splat_i64(c as i64),
            DType::Bool => self.splat_i32(if c != 0.0 { -1 } else { 0 }),
        }
    }

    fn splat_i64(&mut self, c: i64) -> Value {
        let x = self.b.ins().iconst(types::I64, c);
        self.b.ins().splat(types::I64X2, x)
    }

    fn splat_i32(&mut self, c: i32) -> Value {
        let x = self.b.ins().iconst(types::I32, c as i64);
        self.b.ins().splat(types::I32X4, x)
    }

    fn bc(&mut self, ty: Type, v: Value) -> Value {
        if self.b.func.dfg.value_type(v) == ty {
            v
        } else {
            self.b.ins().bitcast(ty, little(), v)
        }
    }

    fn shuffle(&mut self, a: Value, c: Value, bytes: [u8; 16]) -> Value {
        let ta = self.b.func.dfg.value_type(a);
        let a8 = self.bc(types::I8X16, a);
        let c8 = self.bc(types::I8X16, c);
        let imm = self.b.func.dfg.immediates.push(ConstantData::from(&bytes[..]));
        let r = self.b.ins().shuffle(a8, c8, imm);
        self.bc(ta, r)
    }

    fn map_num(&mut self, v: &Val, mut f: impl FnMut(&mut FunctionBuilder, Value) -> Value) -> Val {
        let Rep::Num(ps) = &v.rep else { unreachable!("numbers") };
        let out = ps.iter().map(|&p| f(self.b, p)).collect();
        Val { rep: Rep::Num(out), lanes: v.lanes }
    }

    fn zip_num(&mut self, x: &Val, y: &Val, mut f: impl FnMut(&mut Self, Value, Value) -> Value) -> Val {
        let (Rep::Num(a), Rep::Num(c)) = (&x.rep, &y.rep) else { unreachable!("numbers") };
        let out = a.iter().zip(c).map(|(&p, &q)| f(self, p, q)).collect();
        Val { rep: Rep::Num(out), lanes: x.lanes }
    }

    fn nums(v: &Val) -> &[Value] {
        match &v.rep {
            Rep::Num(ps) => ps,
            _ => unreachable!("numbers"),
        }
    }

    /// NaN-propagating maximum of two float vectors (`fcmp` + `bitselect`).
    fn fmax_nan(&mut self, a: Value, c: Value) -> Value {
        self.fsel_nan(FloatCC::GreaterThanOrEqual, a, c)
    }

    fn fmin_nan(&mut self, a: Value, c: Value) -> Value {
        self.fsel_nan(FloatCC::LessThanOrEqual, a, c)
    }

    /// `a cc c ? a : c`, NaN if either is NaN (the interpreter's `maximum`/`minimum`).
    fn fsel_nan(&mut self, cc: FloatCC, a: Value, c: Value) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        let m = self.b.ins().fcmp(cc, a, c);
        let m = self.bc(ty, m);
        let r = self.b.ins().bitselect(m, a, c);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
        let nan = self.bc(ty, nan);
        self.b.ins().bitselect(nan, a, r)
    }

    fn imax(&mut self, a: Value, c: Value) -> Value {
        let m = self.b.ins().icmp(IntCC::SignedGreaterThan, a, c);
        self.b.ins().bitselect(m, a, c)
    }

    fn imin(&mut self, a: Value, c: Value) -> Value {
        let m = self.b.ins().icmp(IntCC::SignedLessThan, a, c);
        self.b.ins().bitselect(m, a, c)
    }

    /// `f` applied lane by lane to scalars extracted from `args` (pieces of types `tys`); the
    /// result is pieces of `out` type over `lanes` lanes.
    fn lanewise(
        &mut self,
        lanes: usize,
        args: &[(&[Value], Type)],
        out: Type,
        f: &mut dyn FnMut(&mut Self, &[Value]) -> Value,
    ) -> Vec<Value> {
        let mut res = vec![];
        for j in 0..lanes {
            let xs: Vec<Value> = args.iter().map(|(ps, ty)| self.lane_of(ps, *ty, j)).collect();
            res.push(f(self, &xs));
        }
        self.build(out, &res)
    }

    fn or_status(&mut self, cond: Value, bit: u32) {
        let c = self.b.ins().uextend(types::I32, cond);
        let c = if bit == 1 { c } else { self.b.ins().imul_imm_s(c, bit as i64) };
        let e = self.b.use_var(self.err);
        let e = self.b.ins().bor(e, c);
        self.b.def_var(self.err, e);
    }

    // ----- ops ------------------------------------------------------------------------------

    fn math(&mut self, f: MathFn, dt: DType, args: &[&Val]) -> Val {
        let ty = vty(dt);
        let n = Self::nums(args[0]).len();
        let out = (0..n)
            .map(|p| {
                let xs: Vec<Value> = args.iter().map(|a| Self::nums(a)[p]).collect();
                math::emit(self.b, f, &xs, ty, &mut self.math)
            })
            .collect();
        Val { rep: Rep::Num(out), lanes: args[0].lanes }
    }

    fn unary(&mut self, op: UnaryOp, dt: DType, x: Val) -> Val {
        if dt == DType::I64 {
            return match op {
                UnaryOp::Neg => self.map_num(&x, |b, p| b.ins().ineg(p)),
                UnaryOp::Abs => {
                    let z = self.splat_i64(0);
                    self.map_num(&x, |b, p| {
                        let n = b.ins().ineg(p);
                        let m = b.ins().icmp(IntCC::SignedLessThan, p, z);
                        b.ins().bitselect(m, n, p)
                    })
                }
                UnaryOp::Relu => {
                    let z = self.splat_i64(0);
                    self.map_num(&x, |b, p| {
                        let m = b.ins().icmp(IntCC::SignedGreaterThan, p, z);
                        b.ins().bitselect(m, p, z)
                    })
                }
                UnaryOp::Sign => {
                    let z = self.splat_i64(0);
                    self.map_num(&x, |b, p| {
                        let gt = b.ins().icmp(IntCC::SignedGreaterThan, p, z);
                        let lt = b.ins().icmp(IntCC::SignedLessThan, p, z);
                        b.ins().isub(lt, gt)
                    })
                }
                _ => unreachable!("typed by plan::check_types"),
            };
        }
        let ty = vty(dt);
        match op {
            UnaryOp::Neg => self.map_num(&x, |b, p| b.ins().fneg(p)),
            UnaryOp::Abs => self.map_num(&x, |b, p| b.ins().fabs(p)),
            UnaryOp::Sqrt => self.map_num(&x, |b, p| b.ins().sqrt(p)),
            UnaryOp::Reciprocal => {
                let one = self.splat_const(dt, 1.0);
                self.map_num(&x, |b, p| b.ins().fdiv(one, p))
            }
            UnaryOp::Relu => {
                let z = self.splat_const(dt, 0.0);
                let ps = Self::nums(&x).to_vec();
                let out = ps
                    .into_iter()
                    .map(|p| {
                        let m = self.b.ins().fcmp(FloatCC::LessThan, p, z);
                        let m = self.bc(ty, m);
                        self.b.ins().bitselect(m, z, p)
                    })
                    .collect();
                Val { rep: Rep::Num(out), lanes: x.lanes }
            }
            UnaryOp::Sign => {
                let z = self.splat_const(dt, 0.0);
                let one = self.splat_const(dt, 1.0);
                let mone = self.splat_const(dt, -1.0);
                let ps = Self::nums(&x).to_vec();
                let out = ps
                    .into_iter()
                    .map(|p| {
                        let gt = self.b.ins().fcmp(FloatCC::GreaterThan, p, z);
                        let gt = self.bc(ty, gt);
                        let lt = self.b.ins().fcmp(FloatCC::LessThan, p, z);
                        let lt = self.bc(ty, lt);
                        let r = self.b.ins().bitselect(lt, mone, p);
                        self.b.ins().bitselect(gt, one, r)
                    })
                    .collect();
                Val { rep: Rep::Num(out), lanes: x.lanes }
            }
            UnaryOp::Exp => self.math(MathFn::Exp, dt, &[&x]),
            UnaryOp::Log => self.math(MathFn::Log, dt, &[&x]),
            UnaryOp::Tanh => self.math(MathFn::Tanh, dt, &[&x]),
            UnaryOp::Sigmoid => self.math(MathFn::Sigmoid, dt, &[&x]),
            UnaryOp::Erf => self.math(MathFn::Erf, dt, &[&x]),
            UnaryOp::Sin => self.math(MathFn::Sin, dt, &[&x]),
            UnaryOp::Cos => self.math(MathFn::Cos, dt, &[&x]),
        }
    }

    fn binary(&mut self, op: BinaryOp, dt: DType, x: Val, y: Val) -> Val {
        if dt == DType::I64 {
            return match op {
                BinaryOp::Add => self.zip_num(&x, &y, |e, a, c| e.b.ins().iadd(a, c)),
                BinaryOp::Sub => self.zip_num(&x, &y, |e, a, c| e.b.ins().isub(a, c)),
                BinaryOp::Mul => self.zip_num(&x, &y, |e, a, c| e.b.ins().imul(a, c)),
                BinaryOp::Max => self.zip_num(&x, &y, |e, a, c| e.imax(a, c)),
                BinaryOp::Min => self.zip_num(&x, &y, |e, a, c| e.imin(a, c)),
                BinaryOp::Div => {
                    let (a, c) = (Self::nums(&x).to_vec(), Self::nums(&y).to_vec());
                    let out = self.lanewise(
                        x.lanes,
                        &[(&a, types::I64X2), (&c, types::I64X2)],
                        types::I64X2,
                        &mut |e, s| {
                            let (n, d) = (s[0], s[1]);
                            let is0 = e.b.ins().icmp_imm_s(IntCC::Equal, d, 0);
                            e.or_status(is0, STATUS_INT_DIV_ZERO);
                            let ism1 = e.b.ins().icmp_imm_s(IntCC::Equal, d, -1);
                            let special = e.b.ins().bor(is0, ism1);
                            let one = e.b.ins().iconst(types::I64, 1);
                            let safe = e.b.ins().select(special, one, d);
                            let q = e.b.ins().sdiv(n, safe);
                            let neg = e.b.ins().ineg(n);
                            e.b.ins().select(ism1, neg, q)
                        },
                    );
                    Val { rep: Rep::Num(out), lanes: x.lanes }
                }
                BinaryOp::Pow => {
                    let (a, c) = (Self::nums(&x).to_vec(), Self::nums(&y).to_vec());
                    let ipow = self.ipow;
                    let out = self.lanewise(
                        x.lanes,
                        &[(&a, types::I64X2), (&c, types::I64X2)],
                        types::I64X2,
                        &mut |e, s| {
                            let neg = e.b.ins().icmp_imm_s(IntCC::SignedLessThan, s[1], 0);
                            e.or_status(neg, STATUS_NEG_INT_POW);
                            let call = e.b.ins().call(ipow, &[s[0], s[1]]);
                            e.b.inst_results(call)[0]
                        },
                    );
                    Val { rep: Rep::Num(out), lanes: x.lanes }
                }
            };
        }
        match op {
            BinaryOp::Add => self.zip_num(&x, &y, |e, a, c| e.b.ins().fadd(a, c)),
            BinaryOp::Sub => self.zip_num(&x, &y, |e, a, c| e.b.ins().fsub(a, c)),
            BinaryOp::Mul => self.zip_num(&x, &y, |e, a, c| e.b.ins().fmul(a, c)),
            BinaryOp::Div => self.zip_num(&x, &y, |e, a, c| e.b.ins().fdiv(a, c)),
            BinaryOp::Max => self.zip_num(&x, &y, |e, a, c| e.fmax_nan(a, c)),
            BinaryOp::Min => self.zip_num(&x, &y, |e, a, c| e.fmin_nan(a, c)),
            BinaryOp::Pow => self.math(MathFn::Pow, dt, &[&x, &y]),
        }
    }

    fn compare(&mut self, op: CompareOp, dt: DType, x: Val, y: Val) -> Val {
        let l = x.lanes;
        match dt {
            DType::F32 | DType::F64 => {
                let cc = match op {
                    CompareOp::Equal => FloatCC::Equal,
                    CompareOp::Greater => FloatCC::GreaterThan,
                    CompareOp::Less => FloatCC::LessThan,
                };
                let (a, c) = (Self::nums(&x).to_vec(), Self::nums(&y).to_vec());
                let ms = a.iter().zip(&c).map(|(&p, &q)| self.b.ins().fcmp(cc, p, q)).collect();
                let rep = if dt == DType::F32 { Rep::M32(ms) } else { Rep::M64(ms) };
                Val { rep, lanes: l }
            }
            DType::I64 => {
                let cc = match op {
                    CompareOp::Equal => IntCC::Equal,
                    CompareOp::Greater => IntCC::SignedGreaterThan,
                    CompareOp::Less => IntCC::SignedLessThan,
                };
                let (a, c) = (Self::nums(&x).to_vec(), Self::nums(&y).to_vec());
                let ms = a.iter().zip(&c).map(|(&p, &q)| self.b.ins().icmp(cc, p, q)).collect();
                Val { rep: Rep::M64(ms), lanes: l }
            }
            DType::Bool => {
                let a = self.mask32(&x);
                let c = self.mask32(&y);
                let ms = a
                    .iter()
                    .zip(&c)
                    .map(|(&p, &q)| match op {
                        CompareOp::Equal => self.b.ins().icmp(IntCC::Equal, p, q),
                        CompareOp::Greater => self.b.ins().band_not(p, q),
                        CompareOp::Less => self.b.ins().band_not(q, p),
                    })
                    .collect();
                Val { rep: Rep::M32(ms), lanes: l }
            }
        }
    }

    fn select(&mut self, dt: DType, c: Val, x: Val, y: Val) -> Val {
        let l = c.lanes;
        match dt {
            DType::Bool => {
                let m = self.mask32(&c);
                let a = self.mask32(&x);
                let e = self.mask32(&y);
                let out = (0..m.len()).map(|i| self.b.ins().bitselect(m[i], a[i], e[i])).collect();
                Val { rep: Rep::M32(out), lanes: l }
            }
            _ => {
                let ty = vty(dt);
                let m = if ty.lane_count() == 4 { self.mask32(&c) } else { self.mask64(&c) };
                let (a, e) = (Self::nums(&x).to_vec(), Self::nums(&y).to_vec());
                let out = (0..a.len())
                    .map(|i| {
                        let mm = self.bc(ty, m[i]);
                        self.b.ins().bitselect(mm, a[i], e[i])
                    })
                    .collect();
                Val { rep: Rep::Num(out), lanes: l }
            }
        }
    }

    /// A bool value as i32x4 masks.
    fn mask32(&mut self, v: &Val) -> Vec<Value> {
        match &v.rep {
            Rep::M32(ps) => ps.clone(),
            Rep::M64(ps) => {
                let n = pieces(4, v.lanes);
                (0..n)
                    .map(|i| {
                        let a = ps[2 * i];
                        let c = *ps.get(2 * i + 1).unwrap_or(&a);
                        let r =
                            self.shuffle(a, c, [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]);
                        self.bc(types::I32X4, r)
                    })
                    .collect()
            }
            Rep::Num(_) => unreachable!("a bool value"),
        }
    }

    /// A bool value as i64x2 masks.
    fn mask64(&mut self, v: &Val) -> Vec<Value> {
        match &v.rep {
            Rep::M64(ps) => ps.clone(),
            Rep::M32(ps) => {
                let n = pieces(2, v.lanes);
                (0..n)
                    .map(|i| {
                        let p = ps[i / 2];
                        if i % 2 == 0 {
                            self.b.ins().swiden_low(p)
                        } else {
                            self.b.ins().swiden_high(p)
                        }
                    })
                    .collect()
            }
            Rep::Num(_) => unreachable!("a bool value"),
        }
    }

    fn cast(&mut self, x: Val, from: DType, to: DType) -> Val {
        let l = x.lanes;
        if from == to {
            return x;
        }
        let num = |ps: Vec<Value>| Val { rep: Rep::Num(ps), lanes: l };
        match (from, to) {
            (DType::F32, DType::F64) => {
                let ps = Self::nums(&x).to_vec();
                let mut out = vec![];
                for p in ps {
                    out.push(self.b.ins().fvpromote_low(p));
                    let hi = self.shuffle(p, p, [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
                    out.push(self.b.ins().fvpromote_low(hi));
                }
                out.truncate(pieces(2, l));
                num(out)
            }
            (DType::F64, DType::F32) => {
                let ps = Self::nums(&x).to_vec();
                let out = (0..pieces(4, l))
                    .map(|i| {
                        let a = self.b.ins().fvdemote(ps[2 * i]);
                        match ps.get(2 * i + 1) {
                            Some(&c) => {
                                let c = self.b.ins().fvdemote(c);
                                self.shuffle(a, c, [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23])
                            }
                            None => self.shuffle(a, a, [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]),
                        }
                    })
                    .collect();
                num(out)
            }
            (DType::I64, DType::F32 | DType::F64) => {
                let ps = Self::nums(&x).to_vec();
                let st = sty(to);
                let out = self.lanewise(l, &[(&ps, types::I64X2)], vty(to), &mut |e, s| {
                    e.b.ins().fcvt_from_sint(st, s[0])
                });
                num(out)
            }
            (DType::F32 | DType::F64, DType::I64) => {
                let ps = Self::nums(&x).to_vec();
                let out = self.lanewise(l, &[(&ps, vty(from))], types::I64X2, &mut |e, s| {
                    e.b.ins().fcvt_to_sint_sat(types::I64, s[0])
                });
                num(out)
            }
            (_, DType::Bool) => {
                let ps = Self::nums(&x).to_vec();
                let z = self.splat_const(from, 0.0);
                let ms = ps
                    .iter()
                    .map(|&p| {
                        if from == DType::I64 {
                            self.b.ins().icmp(IntCC::NotEqual, p, z)
                        } else {
                            self.b.ins().fcmp(FloatCC::NotEqual, p, z)
                        }
                    })
                    .collect();
                let rep = if from == DType::F32 { Rep::M32(ms) } else { Rep::M64(ms) };
                Val { rep, lanes: l }
            }
            (DType::Bool, _) => {
                let (ms, one) = if to == DType::F32 {
                    (self.mask32(&x), self.splat_i32(1.0f32.to_bits() as i32))
                } else {
                    let bits = if to == DType::F64 { 1.0f64.to_bits() as i64 } else { 1 };
                    (self.mask64(&x), self.splat_i64(bits))
                };
                let ty = vty(to);
                let out = ms
                    .into_iter()
                    .map(|m| {
                        let r = self.b.ins().band(m, one);
                        self.bc(ty, r)
                    })
                    .collect();
                num(out)
            }
            _ => unreachable!("every dtype pair is handled"),
        }
    }
}
