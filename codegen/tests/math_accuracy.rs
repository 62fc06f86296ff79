//! Accuracy of the vectorised math in `src/cpu/math.rs`, JIT-compiled on this machine.
//!
//! For every function and float type: a kernel applying it to arrays is compiled for the vector
//! type (f32x4 / f64x2) with and without fused multiply-add, and for the scalar type; it runs
//! over dense sweeps of the interesting region, random bit patterns across all exponents and
//! special values (±0, ±inf, NaN, subnormals, overflow/underflow thresholds, large arguments).
//! Errors are in ULP of the reference value: for f32 against the f64 function (so the error is
//! against the exact value, up to 2^-29), for f64 against Rust's `std` (glibc, < 1 ULP itself)
//! or `libm` for erf — the same functions the reference interpreter uses. Special inputs must
//! give the reference result exactly (NaN-ness, ±inf, signed zeros). The scalar kernel must
//! agree bit for bit with the vector kernel. `cargo test --test math_accuracy -- --nocapture`
//! prints the measured maxima and the instruction counts per call.
//!
//! `math.rs` is compiled here by path (it is self-contained), so these tests see exactly the
//! code the backend emits without a public test hook.

#[path = "../src/cpu/math.rs"]
#[allow(dead_code)]
mod math;
#[path = "common/math_jit.rs"]
mod math_jit;

use cranelift_codegen::ir::{types, InstBuilder};
use math::MathFn;
use math_jit::Kernel;

// ----- inputs -----------------------------------------------------------------------------------

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

fn sweep(out: &mut Vec<f64>, lo: f64, hi: f64, n: usize) {
    for i in 0..n {
        out.push(lo + (hi - lo) * (i as f64 + 0.5) / n as f64);
    }
}

const SPECIAL_F64: &[f64] = &[
    0.0,
    -0.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    -f64::NAN,
    f64::MIN_POSITIVE,
    -f64::MIN_POSITIVE,
    5e-324,
    -5e-324,
    1e-310,
    -1e-310,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    1.0,
    -1.0,
    0.5,
    2.0,
    -2.0,
    3.0,
    -3.0,
    0.9,
    -0.9,
    709.782712893384,
    709.7827128933841,
    710.0,
    -708.3964185322641,
    -745.1332191019411,
    -745.1332191019412,
    -746.0,
    1e300,
    -1e300,
    1e10,
    1e17,
    3.9192,
    5.9215,
    5.9216,
    20.0,
    -20.0,
    40.0,
];

const SPECIAL_F32: &[f32] = &[
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    -f32::NAN,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1e-45,
    -1e-45,
    1e-40,
    -1e-40,
    f32::MAX,
    f32::MIN,
    f32::EPSILON,
    1.0,
    -1.0,
    0.5,
    2.0,
    -2.0,
    3.0,
    -3.0,
    0.9,
    -0.9,
    88.72283,
    88.72284,
    89.0,
    -87.33654,
    -103.27893,
    -103.97208,
    -103.97209,
    -104.0,
    1e30,
    -1e30,
    8192.0,
    6433.0,
    3.919206,
    3.9192,
    9.01,
    -9.01,
    20.0,
];

/// Random f32 bit patterns (all exponents, both signs, NaNs included) plus uniform samples.
fn random_bits_f32(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| f32::from_bits(rng.next() as u32) as f64).collect()
}

fn random_bits_f64(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| f64::from_bits(rng.next())).collect()
}

// ----- error measurement ------------------------------------------------------------------------

/// ULP of `r` as an f32 value (subnormal spacing below the normal range).
fn ulp32(r: f64) -> f64 {
    let a = r.abs();
    if a < f32::MIN_POSITIVE as f64 {
        return 2f64.powi(-149);
    }
    let e = a.log2().floor() as i32;
    let e = if 2f64.powi(e) > a { e - 1 } else { e };
    2f64.powi(e.clamp(-126, 127) - 23)
}

fn ulp64(r: f64) -> f64 {
    let e = (r.abs().to_bits() >> 52).max(1);
    if e > 52 {
        f64::from_bits((e - 52) << 52)
    } else {
        f64::from_bits(1 << (e - 1))
    }
}

/// Error of `got` against the reference `r` in ULP of the result type; 0 when `got` equals the
/// reference rounded to that type (including matching infinities, zeros and NaN), infinite for
/// a wrong class (NaN, inf or a zero of the wrong sign where the reference has none).
fn ulp_err(got: f64, r: f64, f32ty: bool) -> f64 {
    let rr = if f32ty { r as f32 as f64 } else { r };
    if got.is_nan() || rr.is_nan() {
        return if got.is_nan() && rr.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if got == rr && got.is_sign_negative() == rr.is_sign_negative() {
        return 0.0;
    }
    if got.is_infinite() || rr.is_infinite() {
        return f64::INFINITY;
    }
    if got == 0.0 && rr == 0.0 {
        return f64::INFINITY; // wrong sign of zero
    }
    let u = if f32ty { ulp32(r) } else { ulp64(r) };
    (got - r).abs() / u
}

#[derive(Default)]
struct Stats {
    max_ulp: f64,
    worst: (f64, f64, f64, f64),
    n: usize,
    max_abs: f64,
}

impl Stats {
    fn add(&mut self, x: f64, y: f64, got: f64, r: f64, f32ty: bool) {
        self.n += 1;
        let e = ulp_err(got, r, f32ty);
        if e > self.max_ulp || (e.is_nan() && !self.max_ulp.is_nan()) {
            self.max_ulp = e;
            self.worst = (x, y, got, r);
        }
        if got.is_finite() && r.is_finite() {
            self.max_abs = self.max_abs.max((got - r).abs());
        }
    }
}

// ----- the driver -------------------------------------------------------------------------------

fn name(f: MathFn) -> &'static str {
    match f {
        MathFn::Exp => "exp",
        MathFn::Log => "log",
        MathFn::Tanh => "tanh",
        MathFn::Sigmoid => "sigmoid",
        MathFn::Erf => "erf",
        MathFn::Sin => "sin",
        MathFn::Cos => "cos",
        MathFn::Pow => "pow",
    }
}

fn sigmoid_ref(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The reference in f64 (std / libm; the interpreter's functions).
fn reference(f: MathFn, x: f64, y: f64) -> f64 {
    match f {
        MathFn::Exp => x.exp(),
        MathFn::Log => x.ln(),
        MathFn::Tanh => x.tanh(),
        MathFn::Sigmoid => sigmoid_ref(x),
        MathFn::Erf => libm::erf(x),
        MathFn::Sin => x.sin(),
        MathFn::Cos => x.cos(),
        MathFn::Pow => x.powf(y),
    }
}

/// The interpreter's own f32 function (for the exact special-value checks in f32).
fn interp_f32(f: MathFn, x: f32, y: f32) -> f32 {
    match f {
        MathFn::Exp => x.exp(),
        MathFn::Log => x.ln(),
        MathFn::Tanh => x.tanh(),
        MathFn::Sigmoid => sigmoid_ref(x as f64) as f32,
        MathFn::Erf => libm::erff(x),
        MathFn::Sin => x.sin(),
        MathFn::Cos => x.cos(),
        MathFn::Pow => x.powf(y),
    }
}

/// Runs `f` over (xs, ys) in `f32` or `f64` with vector kernels (FMA on/off) and the scalar
/// kernel; checks scalar == vector bitwise; returns stats per FMA setting.
struct Run {
    stats: [Stats; 2],
    outs: [Vec<f64>; 2],
}

fn run(f: MathFn, f32ty: bool, xs: &[f64], ys: &[f64]) -> Run {
    let (vty, sty) = if f32ty { (types::F32X4, types::F32) } else { (types::F64X2, types::F64) };
    let mut stats = [Stats::default(), Stats::default()];
    let mut outs = [Vec::new(), Vec::new()];
    let refs: Vec<f64> = if f32ty {
        xs.iter().zip(ys).map(|(&x, &y)| reference(f, x as f32 as f64, y as f32 as f64)).collect()
    } else {
        xs.iter().zip(ys).map(|(&x, &y)| reference(f, x, y)).collect()
    };
    for (m, fma) in [true, false].into_iter().enumerate() {
        let kv = Kernel::new(f, vty, fma);
        let ks = Kernel::new(f, sty, fma);
        let gv: Vec<f64> = if f32ty {
            let a: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
            let b: Vec<f32> = ys.iter().map(|&y| y as f32).collect();
            let v = kv.run_f32(&a, &b);
            let s = ks.run_f32(&a, &b);
            for i in 0..a.len() {
                let same = v[i].to_bits() == s[i].to_bits() || (v[i].is_nan() && s[i].is_nan());
                assert!(
                    same,
                    "{} f32 fma={fma}: vector {} != scalar {} at x={:e} y={:e}",
                    name(f),
                    v[i],
                    s[i],
                    a[i],
                    b[i]
                );
            }
            v.iter().map(|&g| g as f64).collect()
        } else {
            let v = kv.run_f64(xs, ys);
            let s = ks.run_f64(xs, ys);
            for i in 0..xs.len() {
                let same = v[i].to_bits() == s[i].to_bits() || (v[i].is_nan() && s[i].is_nan());
                assert!(
                    same,
                    "{} f64 fma={fma}: vector {} != scalar {} at x={:e} y={:e}",
                    name(f),
                    v[i],
                    s[i],
                    xs[i],
                    ys[i]
                );
            }
            v
        };
        for i in 0..xs.len() {
            let (x, y) = if f32ty { (xs[i] as f32 as f64, ys[i] as f32 as f64) } else { (xs[i], ys[i]) };
            stats[m].add(x, y, gv[i], refs[i], f32ty);
        }
        if fma {
            eprintln!(
                "  {:8} {}: {} CLIF insts per {} call, {} per scalar call; kernel loop body {} machine insts (vector)",
                name(f),
                if f32ty { "f32" } else { "f64" },
                kv.clif_insts,
                vty,
                ks.clif_insts,
                body_insts(&kv.vcode)
            );
        }
        outs[m] = gv;
    }
    Run { stats, outs }
}

/// Machine instructions in the largest block of the VCode listing (the loop body).
fn body_insts(vcode: &str) -> usize {
    let mut best = 0;
    let mut cur = 0;
    for l in vcode.lines() {
        let t = l.trim();
        if t.ends_with(':') {
            best = best.max(cur);
            cur = 0;
        } else if !t.is_empty() && !t.starts_with(';') {
            cur += 1;
        }
    }
    best.max(cur)
}

fn report(f: MathFn, f32ty: bool, what: &str, r: &Run) {
    for (m, fma) in ["fma", "no-fma"].iter().enumerate() {
        let s = &r.stats[m];
        eprintln!(
            "{:8} {} {:14} {:6}: {:8} samples, max error {:.3} ULP (at x={:e} y={:e}: got {:e}, ref {:e}), max abs {:.3e}",
            name(f),
            if f32ty { "f32" } else { "f64" },
            what,
            fma,
            s.n,
            s.max_ulp,
            s.worst.0,
            s.worst.1,
            s.worst.2,
            s.worst.3,
            s.max_abs
        );
    }
}

fn assert_bound(f: MathFn, f32ty: bool, what: &str, r: &Run, bound: f64) {
    report(f, f32ty, what, r);
    for (m, fma) in ["fma", "no-fma"].iter().enumerate() {
        let s = &r.stats[m];
        assert!(
            s.max_ulp <= bound,
            "{} {} {what} ({fma}): max error {} ULP > {bound} at x={:e} y={:e}: got {:e}, ref {:e}",
            name(f),
            if f32ty { "f32" } else { "f64" },
            s.max_ulp,
            s.worst.0,
            s.worst.1,
            s.worst.2,
            s.worst.3
        );
    }
}

/// Special inputs must give exactly the interpreter's result when that is NaN, ±inf or a zero
/// (signed), and be within `bound` otherwise.
fn check_specials(f: MathFn, f32ty: bool, xs: &[f64], ys: &[f64], bound: f64) {
    let r = run(f, f32ty, xs, ys);
    for m in 0..2 {
        for i in 0..xs.len() {
            let got = r.outs[m][i];
            let want = if f32ty {
                interp_f32(f, xs[i] as f32, ys[i] as f32) as f64
            } else {
                reference(f, xs[i], ys[i])
            };
            let special = |v: f64| v == 0.0 || !v.is_finite();
            let exact =
                want.is_nan() || want.is_infinite() || special(xs[i]) || (f == MathFn::Pow && special(ys[i]));
            if exact {
                let ok = (got.is_nan() && want.is_nan()) || got.to_bits() == want.to_bits();
                assert!(
                    ok,
                    "{} special x={:e} y={:e}: got {:e}, want {:e}",
                    name(f),
                    xs[i],
                    ys[i],
                    got,
                    want
                );
            } else {
                let e = ulp_err(got, want, f32ty);
                assert!(
                    e <= bound,
                    "{} special x={:e} y={:e}: got {:e}, want {:e} ({e} ULP)",
                    name(f),
                    xs[i],
                    ys[i],
                    got,
                    want
                );
            }
        }
    }
}

fn specials(f32ty: bool) -> Vec<f64> {
    if f32ty {
        SPECIAL_F32.iter().map(|&x| x as f64).collect()
    } else {
        SPECIAL_F64.to_vec()
    }
}

/// The standard unary test: `dense` = (lo, hi, n) sweeps, plus random bit patterns, plus random
/// uniform samples in `uni`, plus specials; asserts `bound` ULP.
fn unary(f: MathFn, f32ty: bool, dense: &[(f64, f64, usize)], nbits: usize, bound: f64) {
    let mut xs = Vec::new();
    for &(lo, hi, n) in dense {
        sweep(&mut xs, lo, hi, n);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (f as u64) << 8 ^ f32ty as u64);
    xs.extend(if f32ty { random_bits_f32(&mut rng, nbits) } else { random_bits_f64(&mut rng, nbits) });
    let ys = vec![0.0; xs.len()];
    let r = run(f, f32ty, &xs, &ys);
    assert_bound(f, f32ty, "sweep+bits", &r, bound);
    let sp = specials(f32ty);
    let ys = vec![0.0; sp.len()];
    check_specials(f, f32ty, &sp, &ys, bound);
}

// ----- the tests --------------------------------------------------------------------------------

const N32: usize = 400_000;
const N64: usize = 150_000;

#[test]
fn exp_f32() {
    unary(
        MathFn::Exp,
        true,
        &[(-104.0, 89.0, N32), (-1.0, 1.0, N32 / 4), (-104.0, -87.0, N32 / 4)],
        N32,
        1.0,
    );
}

#[test]
fn exp_f64() {
    unary(
        MathFn::Exp,
        false,
        &[(-746.0, 710.0, N64), (-1.0, 1.0, N64 / 4), (-746.0, -707.0, N64 / 4)],
        N64,
        1.0,
    );
}

#[test]
fn log_f32() {
    unary(MathFn::Log, true, &[(0.0, 4.0, N32), (0.5, 2.0, N32 / 2), (0.99, 1.01, N32 / 4)], N32, 1.0);
}

#[test]
fn log_f64() {
    unary(MathFn::Log, false, &[(0.0, 4.0, N64), (0.5, 2.0, N64 / 2), (0.99, 1.01, N64 / 4)], N64, 1.0);
}

#[test]
fn tanh_f32() {
    unary(MathFn::Tanh, true, &[(-10.0, 10.0, N32), (-0.6, 0.6, N32 / 2), (-1e-3, 1e-3, N32 / 8)], N32, 2.0);
}

#[test]
fn tanh_f64() {
    unary(MathFn::Tanh, false, &[(-20.0, 20.0, N64), (-0.6, 0.6, N64 / 2), (-1e-3, 1e-3, N64 / 8)], N64, 3.0);
}

#[test]
fn sigmoid_f32() {
    unary(MathFn::Sigmoid, true, &[(-110.0, 30.0, N32), (-5.0, 5.0, N32 / 2)], N32, 2.5);
}

#[test]
fn sigmoid_f64() {
    unary(MathFn::Sigmoid, false, &[(-750.0, 40.0, N64), (-5.0, 5.0, N64 / 2)], N64, 3.0);
}

#[test]
fn erf_f32() {
    unary(
        MathFn::Erf,
        true,
        &[(-5.0, 5.0, N32), (-1.0, 1.0, N32 / 2), (0.85, 0.95, N32 / 8)],
        N32,
        ERF_F32_BOUND,
    );
}

const ERF_F32_BOUND: f64 = 2.0;

/// `emit_erf_with_exp` (erf taking e^(−x²) from the Exp op, as a kernel with both does) gives
/// the bits of `emit(Erf)`, for every type, with and without FMA.
#[test]
fn erf_with_shared_exp_is_erf() {
    for (f32ty, vty, sty) in [(true, types::F32X4, types::F32), (false, types::F64X2, types::F64)] {
        let mut xs = Vec::new();
        sweep(&mut xs, -7.0, 7.0, 200_000);
        let mut rng = Rng(0x5eed);
        xs.extend(if f32ty {
            random_bits_f32(&mut rng, 100_000)
        } else {
            random_bits_f64(&mut rng, 100_000)
        });
        xs.extend(specials(f32ty));
        for ty in [vty, sty] {
            for fma in [true, false] {
                let plain = Kernel::new(MathFn::Erf, ty, fma);
                let shared = Kernel::with_body("erf_shared", ty, fma, 1, &|b, a, ctx| {
                    let sq = b.ins().fmul(a[0], a[0]);
                    let n = b.ins().fneg(sq);
                    let e = math::emit(b, MathFn::Exp, &[n], ty, ctx);
                    math::emit_erf_with_exp(b, a[0], e, ty, ctx)
                });
                // (bits, is NaN) per input: NaNs need not agree in payload.
                let res: Vec<((u64, bool), (u64, bool))> = if f32ty {
                    let a: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
                    let z = vec![0.0; a.len()];
                    let key = |v: f32| (v.to_bits() as u64, v.is_nan());
                    let p = plain.run_f32(&a, &z).into_iter().map(key);
                    p.zip(shared.run_f32(&a, &z).into_iter().map(key)).collect()
                } else {
                    let z = vec![0.0; xs.len()];
                    let key = |v: f64| (v.to_bits(), v.is_nan());
                    let p = plain.run_f64(&xs, &z).into_iter().map(key);
                    p.zip(shared.run_f64(&xs, &z).into_iter().map(key)).collect()
                };
                for (i, (p, s)) in res.iter().enumerate() {
                    let same = p.0 == s.0 || (p.1 && s.1);
                    assert!(
                        same,
                        "erf {ty} fma={fma} at x={:e}: plain {:#x}, shared exp {:#x}",
                        xs[i], p.0, s.0
                    );
                }
            }
        }
    }
}

/// Every non-negative f32 below 4 (erf is odd, exactly ±1 beyond, NaN/inf are in the specials):
/// ~1.08·10^9 inputs, a few seconds per run. `cargo test --release --test math_accuracy --
/// --ignored erf_f32_exhaustive --nocapture`.
#[test]
#[ignore]
fn erf_f32_exhaustive() {
    let end = 4.0f32.to_bits();
    let mut stats = [Stats::default(), Stats::default()];
    for (m, fma) in [true, false].into_iter().enumerate() {
        let k = Kernel::new(MathFn::Erf, types::F32X4, fma);
        let chunk = 1u32 << 22;
        let mut lo = 0u32;
        while lo < end {
            let hi = (lo + chunk).min(end);
            let xs: Vec<f32> = (lo..hi).map(f32::from_bits).collect();
            let got = k.run_f32(&xs, &vec![0.0; xs.len()]);
            for (x, g) in xs.iter().zip(got) {
                stats[m].add(*x as f64, 0.0, g as f64, libm::erf(*x as f64), true);
            }
            lo = hi;
        }
    }
    assert_bound(MathFn::Erf, true, "all [0, 4)", &Run { stats, outs: [vec![], vec![]] }, ERF_F32_BOUND);
}

/// sin/cos: the accuracy range, the inputs closest to multiples of π/2 inside it, and the
/// behaviour beyond.
fn trig(f: MathFn, f32ty: bool) {
    let (acc_max, n) = if f32ty { (6433.0, N32) } else { (1048576.0, N64) };
    let mut xs = Vec::new();
    sweep(&mut xs, -10.0, 10.0, n);
    sweep(&mut xs, -acc_max, acc_max, n);
    let mut rng = Rng(0x1234_5678 ^ f32ty as u64);
    // Hardest cases: the representable neighbours of k·π/2.
    let kmax = (acc_max / std::f64::consts::FRAC_PI_2) as u64;
    for i in 0..if f32ty { kmax } else { 20000 } {
        let k = if f32ty { i + 1 } else { 1 + rng.next() % kmax };
        let c = k as f64 * std::f64::consts::FRAC_PI_2;
        if f32ty {
            let c = c as f32;
            for d in -2i32..=2 {
                xs.push(f32::from_bits((c.to_bits() as i32 + d) as u32) as f64);
            }
        } else {
            for d in -2i64..=2 {
                xs.push(f64::from_bits((c.to_bits() as i64 + d) as u64));
            }
        }
    }
    // Random bit patterns inside the accuracy range.
    let bits: Vec<f64> = if f32ty { random_bits_f32(&mut rng, n) } else { random_bits_f64(&mut rng, n) };
    xs.extend(bits.into_iter().filter(|x| x.abs() <= acc_max));
    let ys = vec![0.0; xs.len()];
    let r = run(f, f32ty, &xs, &ys);
    assert_bound(f, f32ty, "|x|<=acc range", &r, if f32ty { 1.5 } else { 2.0 });

    // Beyond: with FMA the f32 reduction stays exact much further (asserted up to 2^17);
    // without FMA the products j·C are no longer exact and the error grows (reported). From 2^22
    // (f32) / 2^51 (f64) on: NaN.
    if f32ty {
        let mut xs = Vec::new();
        sweep(&mut xs, 6433.0, 131072.0, N32 / 4);
        let k0 = (6433.0 / std::f64::consts::FRAC_PI_2) as u64;
        for _ in 0..N32 / 8 {
            let k = k0 + rng.next() % (83443 - k0);
            let c = (k as f64 * std::f64::consts::FRAC_PI_2) as f32;
            for d in -1i32..=1 {
                xs.push(f32::from_bits((c.to_bits() as i32 + d) as u32) as f64);
            }
        }
        let ys = vec![0.0; xs.len()];
        let r = run(f, f32ty, &xs, &ys);
        report(f, f32ty, "6433..2^17", &r);
        assert!(r.stats[0].max_ulp <= 2.0, "{} f32 with FMA up to 2^17: {} ULP", name(f), r.stats[0].max_ulp);
        let mut xs = Vec::new();
        sweep(&mut xs, 131072.0, 4194304.0, N32 / 4);
        let ys = vec![0.0; xs.len()];
        let r = run(f, f32ty, &xs, &ys);
        report(f, f32ty, "2^17..2^22", &r);
    }
    let big: Vec<f64> = if f32ty { vec![6588398.0, -1e7, 1e30, -3e38] } else { vec![3.6e15, -1e16, 1e300] };
    let ys = vec![0.0; big.len()];
    let r = run(f, f32ty, &big, &ys);
    for m in 0..2 {
        assert!(r.outs[m].iter().all(|v| v.is_nan()), "{} beyond the range: {:?}", name(f), r.outs[m]);
    }
    if !f32ty {
        let mut xs = Vec::new();
        for _ in 0..N64 / 2 {
            xs.push(rng.range(20.0, 45.0).exp2());
        }
        let ys = vec![0.0; xs.len()];
        let r = run(f, f32ty, &xs, &ys);
        report(f, f32ty, "2^20..2^45", &r);
        assert!(r.stats[0].max_ulp <= 2.0, "{} f64 with FMA up to 2^45: {} ULP", name(f), r.stats[0].max_ulp);
    }
    let sp: Vec<f64> = specials(f32ty).into_iter().filter(|x| x.is_nan() || x.abs() <= acc_max).collect();
    let ys = vec![0.0; sp.len()];
    check_specials(f, f32ty, &sp, &ys, 2.0);
}

#[test]
fn sin_f32() {
    trig(MathFn::Sin, true);
}

#[test]
fn sin_f64() {
    trig(MathFn::Sin, false);
}

#[test]
fn cos_f32() {
    trig(MathFn::Cos, true);
}

#[test]
fn cos_f64() {
    trig(MathFn::Cos, false);
}

/// pow: random (x, y) over the range where the result is finite and non-zero, the whole bit
/// range, negative bases with integer exponents, and every pair of special values.
fn pow(f32ty: bool, bound: f64) {
    let mut rng = Rng(0x5151_7777 ^ f32ty as u64);
    let n = if f32ty { N32 } else { N64 };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let lmax = if f32ty { 88.0 } else { 709.0 };
    for _ in 0..n {
        // log|result| spread over the whole range.
        let x = (rng.range(-20.0, 20.0)).exp2();
        let t = rng.range(-lmax, lmax);
        let y = t / x.ln();
        xs.push(x);
        ys.push(y);
    }
    for _ in 0..n / 2 {
        xs.push(rng.range(0.0, 4.0));
        ys.push(rng.range(-30.0, 30.0));
    }
    for _ in 0..n / 4 {
        // Negative bases with integer exponents.
        xs.push(-rng.range(0.0, 3.0));
        ys.push((rng.range(-40.0, 40.0)).round());
    }
    for _ in 0..n / 4 {
        // Near 1 with large exponents (where log must be accurate).
        xs.push(1.0 + rng.range(-1e-3, 1e-3));
        ys.push(rng.range(-1e5, 1e5));
    }
    let (bx, by) = if f32ty {
        (random_bits_f32(&mut rng, n / 2), random_bits_f32(&mut rng, n / 2))
    } else {
        (random_bits_f64(&mut rng, n / 2), random_bits_f64(&mut rng, n / 2))
    };
    xs.extend(bx);
    ys.extend(by);
    let r = run(MathFn::Pow, f32ty, &xs, &ys);
    assert_bound(MathFn::Pow, f32ty, "random", &r, bound);

    // Every pair of special values, plus some ordinary ones, exactly as Rust's powf.
    let mut sp = specials(f32ty);
    sp.extend([0.25, -0.25, 0.5, -0.5, 1.5, -1.5, 4.0, -4.0, 7.0, -7.0, 1e9, -1e9, 2.5, -2.5]);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for &a in &sp {
        for &b in &sp {
            xs.push(a);
            ys.push(b);
        }
    }
    check_specials(MathFn::Pow, f32ty, &xs, &ys, bound);
}

#[test]
fn pow_f32() {
    pow(true, 1.0);
}

#[test]
fn pow_f64() {
    pow(false, 2.0);
}

/// `cargo test --test math_accuracy dump_vcode -- --ignored --nocapture` shows the machine code.
#[test]
#[ignore]
fn dump_vcode() {
    for f in [MathFn::Exp, MathFn::Log] {
        for ty in [types::F32X4, types::F32] {
            let k = Kernel::new(f, ty, true);
            eprintln!("==== {f:?} {ty}\n{}", k.vcode);
        }
    }
}
