//! Vectorised elementwise math in Cranelift IR: `exp`, `log`, `tanh`, `sigmoid`, `erf`, `sin`,
//! `cos` and `pow` as straight-line polynomial code for `f32x4`, `f64x2`, `f32` and `f64`: no
//! calls, no tables, no branches (comparisons build lane masks that feed `bitselect`; clamps
//! are the `fcmp`+`bitselect` pattern that x86 lowers to one `minps`/`maxps`).
//!
//! The caller ([`emit`]) hands in the operand values and gets the result value back; everything
//! is emitted at the builder's current position. A scalar is computed in lane 0 of the vector
//! code, so a loop's scalar tail agrees bit for bit with its vector body. Whether `fma` is fused
//! depends on [`MathCtx::fma`] ([`MathCtx::for_isa`] sets it when the target has FMA); both
//! settings meet the bounds below, but their last bits may differ.
//!
//! Accuracy, measured by `codegen/tests/math_accuracy.rs` (≈10^6 f32 / 4·10^5 f64 inputs per
//! function: dense sweeps, random bit patterns over all exponents, special values; asserted
//! bounds in brackets). f32 errors are against the exact value (f64 reference); f64 errors are
//! the distance to Rust's `std`/`libm` — the interpreter's functions, themselves within ~0.5–2
//! ULP of exact (glibc's `tanh` is the least accurate: at x = −0.547816 it is 1.98 ULP off where
//! this code is 1.02).
//!
//! | function | algorithm | f32 (fma / no fma) | f64 |
//! |---|---|---|---|
//! | exp | Cody–Waite reduction by ln 2 (the rounding error of r is kept and added back), degree-6/11 minimax for expm1(r), 2^n built in the exponent bits as 2^n1·2^n2 so that subnormal results are rounded once; below the +0 threshold a mask gives 0 (no underflowing multiply: x86 assists) | 0.88 / 0.92 ULP [1] | 1.0 ULP [1] |
//! | log | split at √½ (subnormals pre-scaled by 2^25/2^54), s = f/(2+f), minimax in s², fdlibm summation | 0.81 ULP [1] | 1.0 ULP [1] |
//! | tanh | \|x\| < 0.5: x + x³P(x²); else em/(em+2) with em = expm1(2\|x\|) = 2^k·q + (2^k − 1) from the exp kernel; sign restored | 1.49 ULP [2] | 3.0 ULP [3] |
//! | sigmoid | e = exp(−\|x\|); (x ≥ 0 ? 1 : e)/(1 + e): the interpreter's formula, exact 0/1 limits | 2.2 ULP [2.5] | 2.0 ULP [3] |
//! | erf | \|x\| < 0.9: x + x·(P(x²) − 1); else 1 − e^(−x²)·Q((\|x\| − c)/(\|x\| + c)); 1 from the rounding threshold (3.9192 / 5.9216) on; e^(−x²) shared with an Exp op of −(x·x) in the same kernel ([`emit_erf_with_exp`]) | 1.78 / 1.93 ULP [2] (every f32) | 1.0 ULP [2], abs ≤ 1.2e-16 |
//! | sin, cos | j = round(2\|x\|/π), four-part Cody–Waite with 2Sum-tracked errors (r + rl), minimax sin/cos on [−π/4, π/4] corrected by rl, quadrant by masks | 0.77 / 0.80 ULP [1.5] for \|x\| ≤ 6433 | 1.0 ULP [2] for \|x\| ≤ 2^20 |
//! | pow | f32: in f64 (log, product, exp with shorter polynomials), rounded once; f64: log as a double-double (~2^-62), y·log as an exact product, exp of the double-double; special cases by masks | 0.50 ULP [1] | 1.0 ULP [2] |
//!
//! Special values follow Rust's `std`/libm (the interpreter) exactly: NaN propagates (as the
//! default quiet NaN; payloads are not kept), `exp(+inf) = inf`, `exp(−inf) = 0`, overflow gives
//! `inf`, underflow goes gradually through the subnormals to `+0` (no flush to zero),
//! `log(±0) = −inf`, `log(x < 0) = NaN`, `log(+inf) = inf`, `tanh/erf(±inf) = ±1`,
//! `sigmoid(+inf) = 1` and `sigmoid(−inf) = 0` exactly, the odd functions keep the sign of
//! `−0.0`, `sin/cos(±inf) = NaN`, and `pow` has all the C99 special cases of `powf` (see
//! [`MathFn::Pow`]).
//!
//! `sin`/`cos` argument range: the reduction is error-free for |j| < 2^12 (f32: |x| < 6433) /
//! 2^20 (f64: |x| < 1.6e6) with or without FMA. With FMA the products stay exact beyond, and the
//! bound holds much further (measured: f32 0.77 ULP up to 2^17, ≤ 4.5 ULP up to 2^22 where the
//! f32 rounding of 2/π makes |r| exceed π/4; f64 1.0 ULP up to 2^45). Without FMA the error
//! beyond those limits grows like |x|·2^-24 (f32) / |x|·2^-53 (f64) absolute. For |x| > 2^22·π/2
//! (f32) / 2^51·π/2 (f64) the reduction has no meaning any more and the result is NaN rather
//! than a silently wrong value.
//!
//! Cost per vector call (CLIF instructions emitted / x86-64 AVX2+FMA machine instructions in the
//! loop body of the test kernel, which adds ~5 for load, store and loop): printed by the test.
//!
//! This file is deliberately self-contained (only `cranelift_*` imports, nothing from `crate::`):
//! `codegen/tests/math_accuracy.rs` compiles it directly with `#[path]` to JIT and measure it.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// An elementwise function [`emit`] can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MathFn {
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid `1 / (1 + e^-x)`, computed like the interpreter.
    Sigmoid,
    /// Error function.
    Erf,
    /// Sine (radians).
    Sin,
    /// Cosine (radians).
    Cos,
    /// `x^y` (two arguments) with the special cases of C99 / Rust `powf`: `pow(x, ±0) = 1` and
    /// `pow(1, y) = 1` even for NaN, `pow(-1, ±inf) = 1`, negative finite `x` with non-integer
    /// finite `y` is NaN, negative `x` with integer `y` gives `±|x|^y` (odd `y` keeps the sign,
    /// also for `-0` and `-inf`), `pow(±0, y < 0) = ±inf`, `pow(x, ±inf)` is `0` or `inf` by
    /// whether `|x| < 1`, and NaN elsewhere propagates.
    Pow,
}

impl MathFn {
    /// How many operands the function takes (2 for `Pow`, else 1).
    pub(crate) fn arity(self) -> usize {
        if self == MathFn::Pow {
            2
        } else {
            1
        }
    }
}

/// Code-generation options for [`emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MathCtx {
    /// Use Cranelift's `fma` (one rounding). Set it only when the target lowers `fma` to a
    /// hardware instruction: without the FMA extension x86-64 Cranelift turns every `fma` into a
    /// libm call. When `false`, multiply-adds are a `fmul` and a `fadd`, and the one place that
    /// needs an exact product (the f64 `pow`) uses Dekker's splitting instead. Both settings meet
    /// the documented bounds.
    pub(crate) fma: bool,
}

impl Default for MathCtx {
    /// FMA when the host has it (x86-64 with the `fma` feature; always on aarch64).
    fn default() -> Self {
        MathCtx { fma: host_has_fma() }
    }
}

impl MathCtx {
    /// Options for a target ISA: fused multiply-add exactly when the ISA lowers `fma` to an
    /// instruction (x86-64 with `has_fma`, aarch64).
    pub(crate) fn for_isa(isa: &dyn cranelift_codegen::isa::TargetIsa) -> Self {
        let arch = isa.triple().architecture.to_string();
        let fma = if arch == "x86_64" {
            isa.isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true))
        } else {
            arch.starts_with("aarch64")
        };
        MathCtx { fma }
    }
}

fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Emits `f(args…)` for values of type `ty` (`F32X4`, `F64X2`, `F32` or `F64`) at the builder's
/// current position and returns the result (same type). `Pow` takes two arguments (`x`, `y`),
/// the others one. Panics on another type or a wrong number of arguments (a caller bug).
///
/// Scalars are computed in lane 0 of the vector code (`scalar_to_vector` … `extractlane 0`):
/// the same instructions, so a loop's scalar tail agrees bit for bit with its vector body, and
/// no branches (scalar `select` would lower to jumps on x86).
pub(crate) fn emit(b: &mut FunctionBuilder, f: MathFn, args: &[Value], ty: Type, ctx: &mut MathCtx) -> Value {
    assert_eq!(args.len(), f.arity(), "math::emit: {f:?} takes {} argument(s)", f.arity());
    let ctx = *ctx;
    match ty {
        types::F32X4 | types::F64X2 => emit_vector(b, f, args, ty, ctx),
        types::F32 if f == MathFn::Pow => {
            // f32 pow is computed in f64 anyway: one F64X2 lane.
            let x = b.ins().fpromote(types::F64, args[0]);
            let y = b.ins().fpromote(types::F64, args[1]);
            let xv = b.ins().scalar_to_vector(types::F64X2, x);
            let yv = b.ins().scalar_to_vector(types::F64X2, y);
            let r = Em::new(b, types::F64X2, ctx).pow(xv, yv, Prec::Low);
            let r = b.ins().extractlane(r, 0);
            b.ins().fdemote(types::F32, r)
        }
        types::F32 | types::F64 => {
            let vty = if ty == types::F32 { types::F32X4 } else { types::F64X2 };
            let vargs: Vec<Value> = args.iter().map(|&a| b.ins().scalar_to_vector(vty, a)).collect();
            let r = emit_vector(b, f, &vargs, vty, ctx);
            b.ins().extractlane(r, 0)
        }
        _ => panic!("math::emit: unsupported type {ty}"),
    }
}

/// `erf(x)` given `e = exp(−(x·x))` as [`emit`] computes it for `MathFn::Exp` on the value
/// `fneg(fmul(x, x))` (same type and [`MathCtx`]): the erfc branch uses `e` instead of computing
/// its own e^(−x²). The result is bit for bit that of `emit(MathFn::Erf, [x])`: where that
/// branch is taken (|x| < `erf_one`, so −x² ≥ −35.1) the Exp op's clamps do nothing and its
/// two-step scaling by 2^n1·2^n2 is exact, like erf's own single 2^n. A kernel that has both
/// (GELU's derivative needs e^(−z²/2) next to erf(z/√2)) computes the exponential once.
pub(crate) fn emit_erf_with_exp(
    b: &mut FunctionBuilder,
    x: Value,
    e: Value,
    ty: Type,
    ctx: &mut MathCtx,
) -> Value {
    let ctx = *ctx;
    match ty {
        types::F32X4 | types::F64X2 => Em::new(b, ty, ctx).erf(x, Some(e)),
        types::F32 | types::F64 => {
            let vty = if ty == types::F32 { types::F32X4 } else { types::F64X2 };
            let xv = b.ins().scalar_to_vector(vty, x);
            let ev = b.ins().scalar_to_vector(vty, e);
            let r = Em::new(b, vty, ctx).erf(xv, Some(ev));
            b.ins().extractlane(r, 0)
        }
        _ => panic!("math::emit_erf_with_exp: unsupported type {ty}"),
    }
}

fn emit_vector(b: &mut FunctionBuilder, f: MathFn, args: &[Value], ty: Type, ctx: MathCtx) -> Value {
    let x = args[0];
    if f == MathFn::Pow && ty == types::F32X4 {
        return pow_f32x4(b, x, args[1], ctx);
    }
    let mut e = Em::new(b, ty, ctx);
    match f {
        MathFn::Exp => e.exp(x, true, Prec::Full),
        MathFn::Log => e.log(x, Prec::Full),
        MathFn::Tanh => e.tanh(x),
        MathFn::Sigmoid => e.sigmoid(x),
        MathFn::Erf => e.erf(x, None),
        MathFn::Sin => e.sincos(x, false),
        MathFn::Cos => e.sincos(x, true),
        MathFn::Pow => e.pow(x, args[1], Prec::Full),
    }
}

/// `pow` for f32 lanes: widen to f64, run the f64 algorithm with the shorter polynomials (and
/// no double-double log), round once back to f32: ≤ 1 ULP without extra-precision tricks.
fn pow_f32x4(b: &mut FunctionBuilder, x: Value, y: Value, ctx: MathCtx) -> Value {
    // Lanes 0,1 and 2,3 as two F64X2.
    let halves = |b: &mut FunctionBuilder, v: Value| {
        let lo = b.ins().fvpromote_low(v);
        let hi32 = shuffle_f32x4(b, v, v, [2, 3, 0, 1]);
        let hi = b.ins().fvpromote_low(hi32);
        (lo, hi)
    };
    let (xl, xh) = halves(b, x);
    let (yl, yh) = halves(b, y);
    let rl = Em::new(b, types::F64X2, ctx).pow(xl, yl, Prec::Low);
    let rh = Em::new(b, types::F64X2, ctx).pow(xh, yh, Prec::Low);
    let dl = b.ins().fvdemote(rl);
    let dh = b.ins().fvdemote(rh);
    shuffle_f32x4(b, dl, dh, [0, 1, 4, 5])
}

/// `shuffle` of two `F32X4` by 32-bit lane indices (0–3 from `a`, 4–7 from `b`).
fn shuffle_f32x4(b: &mut FunctionBuilder, a: Value, c: Value, lanes: [u8; 4]) -> Value {
    let mut bytes = Vec::with_capacity(16);
    for l in lanes {
        for i in 0..4 {
            bytes.push(l * 4 + i);
        }
    }
    let imm = b.func.dfg.immediates.push(ConstantData::from(bytes));
    let a8 = b.ins().bitcast(types::I8X16, little(), a);
    let c8 = b.ins().bitcast(types::I8X16, little(), c);
    let s = b.ins().shuffle(a8, c8, imm);
    b.ins().bitcast(types::F32X4, little(), s)
}

// ----- coefficients ---------------------------------------------------------------------------
//
// Minimax fits made with a Remez exchange in 60-digit arithmetic (mpmath); the comment gives the
// fit's own error before rounding the coefficients to the working precision.

/// expm1(r) ≈ r + r²·P(r) on |r| ≤ 0.3467, relative error 2^-26.2.
pub(crate) const EXP_F32: [f64; 5] =
    [0.4999999701976776, 0.1666654348373413, 0.04166720062494278, 0.0083665382117033, 0.0013882521307095885];
/// As above, relative error 2^-55.6.
pub(crate) const EXP_F64: [f64; 10] = [
    0.5000000000000006,
    0.16666666666666588,
    0.04166666666657657,
    0.008333333333389679,
    0.0013888888931632112,
    0.0001984126971879124,
    2.4801505187450048e-05,
    2.7557407658516595e-06,
    2.762607411680819e-07,
    2.505376817918467e-08,
];
/// As above, relative error 2^-37.5 (the f64 kernel inside the f32 `pow`).
pub(crate) const EXP_F64_LOW: [f64; 7] = [
    0.5000000000105215,
    0.16666666754062853,
    0.041666665953401086,
    0.008333289078062418,
    0.001388898523114633,
    0.0001990489196408841,
    2.4796378918425124e-05,
];
/// log1p(f) = 2s + s·R(s²), R(z) = z·P(z), s = f/(2+f), |s| ≤ 0.17158: abs error of R 2^-27.9.
pub(crate) const LOG_F32: [f64; 3] = [0.666667640209198, 0.3997659385204315, 0.29925912618637085];
/// As above, abs error of R 2^-56.4.
pub(crate) const LOG_F64: [f64; 7] = [
    0.6666666666666677,
    0.3999999999971588,
    0.28571428695945256,
    0.22222201407866682,
    0.18183501014513945,
    0.153139285079026,
    0.14811135783134324,
];
/// As above, abs error of R 2^-42.2 (the f64 kernel inside the f32 `pow`).
pub(crate) const LOG_F64_LOW: [f64; 5] =
    [0.6666666667034485, 0.3999999660978034, 0.28572071743510635, 0.22175793159716797, 0.19609567744104137];
/// Double-double log: log1p(f) = 2s + (2/3)s³ + s⁵·Q(s²), abs error of Q 2^-51.7.
pub(crate) const LOG_DD_TAIL: [f64; 7] = [
    0.4000000000000003,
    0.2857142857133765,
    0.22222222271438943,
    0.18181808199135818,
    0.1538557794282969,
    0.13285863190753996,
    0.12914676168385023,
];
/// tanh(x) ≈ x + x³·P(x²) on |x| ≤ 0.5, relative error 2^-28.4.
pub(crate) const TANH_F32: [f64; 5] = [
    -0.3333333432674408,
    0.13333284854888916,
    -0.053941234946250916,
    0.02149839699268341,
    -0.006965226493775845,
];
/// As above, relative error 2^-58.
pub(crate) const TANH_F64: [f64; 11] = [
    -0.3333333333333333,
    0.13333333333333333,
    -0.05396825396825305,
    0.021869488535820207,
    -0.008863235497528349,
    0.0035921267720335284,
    -0.0014558096151613663,
    0.000589755157380576,
    -0.00023736208601900718,
    9.011607826733658e-05,
    -2.4487720159030118e-05,
];
/// sin(r) ≈ r + r³·S(r²) on |r| ≤ π/4, relative error 2^-26.6.
pub(crate) const SIN_F32: [f64; 3] = [-0.1666666567325592, 0.008332602679729462, -0.00019558124768082052];
/// cos(r) ≈ 1 − r²/2 + r⁴·C(r²), relative error 2^-30.6.
pub(crate) const COS_F32: [f64; 3] = [0.0416666641831398, -0.0013888156972825527, 2.4518110876670107e-05];
/// As above, relative error 2^-65.1.
pub(crate) const SIN_F64: [f64; 7] = [
    -0.16666666666666666,
    0.008333333333333333,
    -0.0001984126984126863,
    2.7557319221722303e-06,
    -2.5052106909240244e-08,
    1.605861726356038e-10,
    -7.590675455660797e-13,
];
/// As above, relative error 2^-70.
pub(crate) const COS_F64: [f64; 7] = [
    0.041666666666666664,
    -0.001388888888888889,
    2.4801587301586627e-05,
    -2.755731922272762e-07,
    2.0876756167309255e-09,
    -1.1470508496841495e-11,
    4.7480833977515197e-14,
];
/// erf(x) ≈ x·P(x²) on |x| ≤ 0.9, relative error 2^-29.1.
pub(crate) const ERF_SMALL_F32: [f64; 7] = [
    1.128379225730896,
    -0.37612637877464294,
    0.11283772438764572,
    -0.026863453909754753,
    0.005210282746702433,
    -0.0008238347363658249,
    8.738764881854877e-05,
];
/// As above, relative error 2^-55.7.
pub(crate) const ERF_SMALL_F64: [f64; 12] = [
    std::f64::consts::FRAC_2_SQRT_PI,
    -0.37612638903183754,
    0.11283791670955123,
    -0.026866170645127415,
    0.005223977625272252,
    -0.0008548326994342177,
    0.00012055330537886435,
    -1.4925535837067171e-05,
    1.6458906714672625e-06,
    -1.631072112463078e-07,
    1.4233465300697112e-08,
    -8.907306459290092e-10,
];
/// erfc(x) ≈ e^(−x²)·Q(t), t = (x − 2.5)/(x + 2.5), on [0.9, 3.92]: abs error 2^-28.6.
pub(crate) const ERFC_F32: [f64; 7] = [
    0.21080636978149414,
    -0.3717368245124817,
    0.25171157717704773,
    -0.12502682209014893,
    0.03997676447033882,
    -0.00402574660256505,
    -0.0032180515117943287,
];
pub(crate) const ERFC_F32_C: f64 = 2.5;
/// erfc(x) ≈ e^(−x²)·Q(t), t = (x − 4)/(x + 4), on [0.9, 5.93]: abs error 2^-54.8.
pub(crate) const ERFC_F64: [f64; 16] = [
    0.13699945762506138,
    -0.25906804876017137,
    0.2187196789182614,
    -0.16425781669737866,
    0.1089631773997437,
    -0.06310781563511546,
    0.03129905646448771,
    -0.012843946212139367,
    0.004060265100522285,
    -0.0007991216087581886,
    -2.1778103979801752e-05,
    7.889644494191736e-05,
    -2.2569461975130432e-05,
    -1.3737884843954198e-06,
    4.137344415278016e-06,
    6.490351808612341e-07,
];
pub(crate) const ERFC_F64_C: f64 = 4.0;

/// Constants that differ between f32 and f64 beyond the polynomials.
pub(crate) struct Consts {
    /// 1.5·2^(p−1): adding it rounds to an integer held in the low mantissa bits.
    pub(crate) shift: f64,
    /// Mantissa bits (23 or 52) and exponent bias.
    pub(crate) mbits: i64,
    pub(crate) bias: i64,
    pub(crate) log2e: f64,
    /// ln 2 = LN2_HI + LN2_LO with LN2_HI short enough that k·LN2_HI is exact.
    pub(crate) ln2_hi: f64,
    pub(crate) ln2_lo: f64,
    /// exp: clamp of the argument (beyond, the result is inf / 0 anyway).
    pub(crate) exp_lo: f64,
    pub(crate) exp_hi: f64,
    /// Smallest normal, scale for subnormal log inputs and its exponent.
    pub(crate) min_normal: f64,
    pub(crate) sub_scale: f64,
    pub(crate) sub_scale_log2: f64,
    /// Bits of √½ and the sign+exponent mask.
    pub(crate) sqrt_half_bits: u64,
    pub(crate) exp_mask: u64,
    pub(crate) sign_mask: u64,
    /// tanh: 2|x| is clamped to this (tanh is ±1 to the last bit long before).
    pub(crate) tanh_max: f64,
    /// π/2 as four parts (the first three short so that j·part is exact for |j| < 2^12 / 2^20).
    pub(crate) pio2: [f64; 4],
    /// Beyond this |x| the sin/cos reduction is meaningless: NaN. (Up to it j ≤ 2^22 / 2^51, so
    /// shift + j is still exact.)
    pub(crate) trig_max: f64,
    pub(crate) erf_small_max: f64,
    /// erf(x) rounds to 1 from here on.
    pub(crate) erf_one: f64,
}

pub(crate) const C32: Consts = Consts {
    shift: 12582912.0, // 1.5·2^23
    mbits: 23,
    bias: 127,
    log2e: std::f64::consts::LOG2_E,
    ln2_hi: 0.693145751953125,     // 0x3f317200, 15 significant bits
    ln2_lo: 1.428606765330187e-06, // 0x35bfbe8e
    exp_lo: -104.0,
    exp_hi: 89.0,
    min_normal: 1.1754943508222875e-38,
    sub_scale: 33554432.0, // 2^25
    sub_scale_log2: 25.0,
    sqrt_half_bits: 0x3f3504f3,
    exp_mask: 0xff80_0000,
    sign_mask: 0x8000_0000,
    tanh_max: 40.0,
    pio2: [1.57080078125, -4.453584551811218e-06, -8.706138032721356e-10, 6.223371969669989e-14],
    trig_max: 6588397.5, // 2^22·π/2 = 6588397.33
    erf_small_max: 0.9,
    erf_one: 3.919206,
};

pub(crate) const C64: Consts = Consts {
    shift: 6755399441055744.0, // 1.5·2^52
    mbits: 52,
    bias: 1023,
    log2e: std::f64::consts::LOG2_E,
    ln2_hi: 0.6931471803691238, // 0x3fe62e42fee00000, 32 significant bits
    ln2_lo: 1.9082149292705877e-10,
    exp_lo: -746.0,
    exp_hi: 710.0,
    min_normal: 2.2250738585072014e-308,
    sub_scale: 18014398509481984.0, // 2^54
    sub_scale_log2: 54.0,
    sqrt_half_bits: 0x3fe6a09e667f3bcd,
    exp_mask: 0xfff0_0000_0000_0000,
    sign_mask: 0x8000_0000_0000_0000,
    tanh_max: 80.0,
    // fdlibm's pio2_1, pio2_2, pio2_3 (33 bits each) and pio2_3t.
    pio2: [1.5707963267341256, 6.077100506303966e-11, 2.0222662487111665e-21, 8.4784276603689e-32],
    trig_max: 3537118876014220.0, // 2^51·π/2
    erf_small_max: 0.9,
    erf_one: 5.921587,
};

/// Polynomial degree set: `Full` for the function itself, `Low` for the f64 kernels inside the
/// f32 `pow` (which need only ~2^-36).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prec {
    Full,
    Low,
}

// ----- the emitter ----------------------------------------------------------------------------

/// A comparison result: a lane mask (`I32X4`/`I64X2`, all ones or all zeros).
#[derive(Clone, Copy)]
struct Mask(Value);

/// Emits for one vector type (`F32X4` or `F64X2`); every method appends instructions at the
/// builder's position.
struct Em<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    /// Float vector type and the integer vector type of the same shape.
    ty: Type,
    ity: Type,
    f64: bool,
    fma: bool,
    k: &'static Consts,
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl<'a, 'f> Em<'a, 'f> {
    fn new(b: &'a mut FunctionBuilder<'f>, ty: Type, ctx: MathCtx) -> Self {
        let f64 = ty.lane_type() == types::F64;
        let ity = match ty {
            types::F32X4 => types::I32X4,
            types::F64X2 => types::I64X2,
            _ => unreachable!("emit hands vectors only"),
        };
        Em { b, ty, ity, f64, fma: ctx.fma, k: if f64 { &C64 } else { &C32 } }
    }

    // --- constants ---

    /// A vector constant of type `ty` with every lane's bits equal to `bits` (from the constant
    /// pool: one load).
    fn splat_bits(&mut self, ty: Type, bits: u64) -> Value {
        let mut bytes = Vec::with_capacity(16);
        for _ in 0..ty.lane_count() {
            if ty.lane_bits() == 64 {
                bytes.extend_from_slice(&bits.to_le_bytes());
            } else {
                bytes.extend_from_slice(&(bits as u32).to_le_bytes());
            }
        }
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(ty, c)
    }
    /// Float constant (rounded to the lane type).
    fn c(&mut self, v: f64) -> Value {
        let bits = if self.f64 { v.to_bits() } else { (v as f32).to_bits() as u64 };
        self.splat_bits(self.ty, bits)
    }
    /// Float constant from the lane's raw bits.
    fn cbits(&mut self, bits: u64) -> Value {
        self.splat_bits(self.ty, bits)
    }
    /// Integer constant of the matching integer type.
    fn ci(&mut self, v: i64) -> Value {
        self.splat_bits(self.ity, v as u64)
    }

    // --- arithmetic ---

    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    fn abs(&mut self, a: Value) -> Value {
        self.b.ins().fabs(a)
    }
    fn neg(&mut self, a: Value) -> Value {
        self.b.ins().fneg(a)
    }
    fn addc(&mut self, a: Value, c: f64) -> Value {
        let c = self.c(c);
        self.add(a, c)
    }
    fn mulc(&mut self, a: Value, c: f64) -> Value {
        let c = self.c(c);
        self.mul(a, c)
    }
    /// a·b + c, fused when the context allows it (an optimisation only: no caller relies on
    /// the single rounding; those that need an exact product use [`Em::two_prod_err`]).
    fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }
    /// a·b + c with a constant `b`.
    fn fmac(&mut self, a: Value, b: f64, c: Value) -> Value {
        let b = self.c(b);
        self.fma(a, b, c)
    }
    /// Σ cs[i]·x^i by Horner's rule.
    fn horner(&mut self, x: Value, cs: &[f64]) -> Value {
        let mut acc = self.c(cs[cs.len() - 1]);
        for &ci in cs[..cs.len() - 1].iter().rev() {
            let ci = self.c(ci);
            acc = self.fma(acc, x, ci);
        }
        acc
    }
    /// The exact rounding error a·b − p of the product p = fl(a·b): one `fma` when fused
    /// multiply-add is available, else Dekker's splitting (valid for |a|, |b| < 2^996; beyond,
    /// NaN, which the caller discards).
    fn two_prod_err(&mut self, a: Value, b: Value, p: Value) -> Value {
        if self.fma {
            let np = self.neg(p);
            return self.b.ins().fma(a, b, np);
        }
        let split = if self.f64 { 134217729.0 } else { 4097.0 };
        let (ah, al) = self.split(a, split);
        let (bh, bl) = self.split(b, split);
        let t = self.mul(ah, bh);
        let t = self.sub(t, p);
        let u = self.mul(ah, bl);
        let t = self.add(t, u);
        let u = self.mul(al, bh);
        let t = self.add(t, u);
        let u = self.mul(al, bl);
        self.add(t, u)
    }
    /// Knuth's 2Sum: s = fl(a + b) and the exact error a + b − s, for any magnitudes.
    fn two_sum(&mut self, a: Value, b: Value) -> (Value, Value) {
        let s = self.add(a, b);
        let bb = self.sub(s, a);
        let t = self.sub(s, bb);
        let t = self.sub(a, t);
        let u = self.sub(b, bb);
        (s, self.add(t, u))
    }
    fn split(&mut self, a: Value, factor: f64) -> (Value, Value) {
        let t = self.mulc(a, factor);
        let d = self.sub(t, a);
        let hi = self.sub(t, d);
        let lo = self.sub(a, hi);
        (hi, lo)
    }

    // --- bits ---

    fn bits_to_int(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(self.ity, little(), v)
    }
    fn bits_to_float(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(self.ty, little(), v)
    }
    fn iaddc(&mut self, a: Value, c: i64) -> Value {
        let c = self.ci(c);
        self.b.ins().iadd(a, c)
    }
    fn isub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().isub(a, b)
    }
    fn iandc(&mut self, a: Value, c: i64) -> Value {
        let c = self.ci(c);
        self.b.ins().band(a, c)
    }
    /// Float `a & bits` (sign and magnitude masking without leaving the float unit).
    fn fandc(&mut self, a: Value, bits: u64) -> Value {
        let c = self.cbits(bits);
        self.b.ins().band(a, c)
    }
    fn for_(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bor(a, b)
    }
    fn fxor(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bxor(a, b)
    }
    /// The sign bit of `x` (as a float with every other bit clear).
    fn sign_of(&mut self, x: Value) -> Value {
        let m = self.k.sign_mask;
        self.fandc(x, m)
    }
    /// 2^n for the integer n held in the low mantissa bits of `z` (= shift + n), when
    /// n + bias ∈ [1, 2·bias]: the bits of `shift` above the exponent field fall off the shift.
    fn pow2_from_shifted(&mut self, z: Value) -> Value {
        let zi = self.bits_to_int(z);
        let e = self.iaddc(zi, self.k.bias);
        let e = self.b.ins().ishl_imm_u(e, self.k.mbits);
        self.bits_to_float(e)
    }

    // --- comparisons and selects ---

    fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Mask {
        Mask(self.b.ins().fcmp(cc, a, b))
    }
    fn cmpc(&mut self, cc: FloatCC, a: Value, c: f64) -> Mask {
        let c = self.c(c);
        self.cmp(cc, a, c)
    }
    fn and_m(&mut self, a: Mask, b: Mask) -> Mask {
        Mask(self.b.ins().band(a.0, b.0))
    }
    fn or_m(&mut self, a: Mask, b: Mask) -> Mask {
        Mask(self.b.ins().bor(a.0, b.0))
    }
    /// m ? t : f, lane by lane.
    fn sel(&mut self, m: Mask, t: Value, f: Value) -> Value {
        let mf = self.b.ins().bitcast(self.ty, little(), m.0);
        self.b.ins().bitselect(mf, t, f)
    }
    fn selc(&mut self, m: Mask, t: f64, f: Value) -> Value {
        let t = self.c(t);
        self.sel(m, t, f)
    }
    /// m ? v : +0.0 (one `and`).
    fn sel_or_zero(&mut self, m: Mask, v: Value) -> Value {
        let mf = self.b.ins().bitcast(self.ty, little(), m.0);
        self.b.ins().band(mf, v)
    }
    /// min(v, hi) that keeps NaN (one `minps`/`minpd` on x86 vectors).
    fn clamp_hi(&mut self, v: Value, hi: f64) -> Value {
        let h = self.c(hi);
        let m = self.cmp(FloatCC::LessThan, h, v);
        self.sel(m, h, v)
    }

    // --- exp ---

    fn exp_coeffs(&self, prec: Prec) -> &'static [f64] {
        match (self.f64, prec) {
            (false, _) => &EXP_F32,
            (true, Prec::Full) => &EXP_F64,
            (true, Prec::Low) => &EXP_F64_LOW,
        }
    }

    /// x = n·ln2 + r + d, |r| ≤ ln2/2 (Cody–Waite: n·LN2_HI and x − n·LN2_HI are exact; d is
    /// the rounding error of r = (x − n·LN2_HI) − n·LN2_LO, so r + d carries ~2p bits). Returns
    /// (n as float, shift + n, r, d).
    fn exp_reduce(&mut self, x: Value) -> (Value, Value, Value, Value) {
        let shift = self.c(self.k.shift);
        let z = self.fmac(x, self.k.log2e, shift);
        let kf = self.sub(z, shift);
        let rh = self.fmac(kf, -self.k.ln2_hi, x);
        let rl = self.mulc(kf, -self.k.ln2_lo);
        let r = self.add(rh, rl);
        let t = self.sub(r, rh);
        let d = self.sub(rl, t);
        (kf, z, r, d)
    }

    /// expm1(r + d) for |r| ≤ 0.3467, |d| ≤ ulp(r): r + (r²·P(r) + d).
    fn expm1_poly(&mut self, r: Value, d: Value, prec: Prec) -> Value {
        let r2 = self.mul(r, r);
        let p = self.horner(r, self.exp_coeffs(prec));
        let u = self.fma(r2, p, d);
        self.add(r, u)
    }

    /// (1 + q)·2^n for any n the clamp allows, as (1 + q)·2^n1·2^n2 with n1 = round(n/2): both
    /// factors are normal, the first product exact, so a subnormal result is rounded once.
    fn exp_scale(&mut self, kf: Value, z: Value, q: Value) -> Value {
        let p = self.addc(q, 1.0);
        let shift = self.c(self.k.shift);
        let z1 = self.fmac(kf, 0.5, shift);
        let s1 = self.pow2_from_shifted(z1);
        let zi = self.bits_to_int(z);
        let z1i = self.bits_to_int(z1);
        let n2 = self.isub(zi, z1i);
        let e2 = self.iaddc(n2, self.k.bias);
        let e2 = self.b.ins().ishl_imm_u(e2, self.k.mbits);
        let s2 = self.bits_to_float(e2);
        let p = self.mul(p, s1);
        self.mul(p, s2)
    }

    /// e^x. `clamp_hi = false` when the caller knows x ≤ 0 (or NaN).
    fn exp(&mut self, x: Value, clamp_hi: bool, prec: Prec) -> Value {
        let x = if clamp_hi { self.clamp_hi(x, self.k.exp_hi) } else { x };
        let (keep, x) = self.exp_underflow_guard(x);
        let (kf, z, r, d) = self.exp_reduce(x);
        let q = self.expm1_poly(r, d, prec);
        let e = self.exp_scale(kf, z, q);
        self.sel_or_zero(keep, e)
    }

    /// Lanes below `exp_lo` (where e^x rounds to +0) compute e^0 instead and are set to +0 by
    /// the caller with the returned mask (kept lanes: x ≥ exp_lo or NaN). Scaling them down
    /// arithmetically would underflow, and on x86 every vector operation that produces a
    /// subnormal or underflows takes a microcode assist (~100+ cycles): a softmax over rows with
    /// masked (very negative) logits ran 10× slower that way. Results are bitwise unchanged.
    fn exp_underflow_guard(&mut self, x: Value) -> (Mask, Value) {
        let keep = self.cmpc(FloatCC::UnorderedOrGreaterThanOrEqual, x, self.k.exp_lo);
        let x = self.sel_or_zero(keep, x);
        (keep, x)
    }

    /// e^(hi + lo) for a double-double argument (|lo| ≤ ulp(hi)); `lo` is added to the reduced
    /// argument.
    fn exp_dd(&mut self, hi: Value, lo: Option<Value>, prec: Prec) -> Value {
        let x = self.clamp_hi(hi, self.k.exp_hi);
        let (keep, x) = self.exp_underflow_guard(x);
        let (kf, z, r, d) = self.exp_reduce(x);
        let (r, d) = match lo {
            // |lo| can reach ulp(hi) ≫ ulp(r): renormalise r + (d + lo) so that the new d is
            // below ulp(r) again, as `expm1_poly` assumes.
            Some(lo) => {
                let d = self.add(d, lo);
                let r2 = self.add(r, d);
                let t = self.sub(r2, r);
                (r2, self.sub(d, t))
            }
            None => (r, d),
        };
        let q = self.expm1_poly(r, d, prec);
        let e = self.exp_scale(kf, z, q);
        self.sel_or_zero(keep, e)
    }

    // --- log ---

    /// Splits x > 0 (finite, possibly subnormal) as 2^k·(1 + f) with 1 + f ∈ [√½, √2).
    /// Returns (k as float, f); f = (1 + f) − 1 is exact. Other inputs give garbage that the
    /// callers replace.
    fn log_split(&mut self, x: Value) -> (Value, Value) {
        let k = self.k;
        let sub = self.cmpc(FloatCC::LessThan, x, k.min_normal);
        let xs = self.mulc(x, k.sub_scale);
        let xs = self.sel(sub, xs, x);
        let kadj = self.c(-k.sub_scale_log2);
        let kadj = self.sel_or_zero(sub, kadj);
        let ix = self.bits_to_int(xs);
        let c = self.ci(k.sqrt_half_bits as i64);
        let tmp = self.isub(ix, c);
        // k = tmp >> mbits (arithmetic), converted to float without an int→float instruction:
        // (tmp + B·2^mbits) >>> mbits = k + B ∈ [0, 2^(bits − mbits)), or'ed into the mantissa
        // of 2^mbits.
        let width = if self.f64 { 12 } else { 9 };
        let big = 1i64 << (width - 1);
        let u = self.iaddc(tmp, big << k.mbits);
        let u = self.b.ins().ushr_imm_u(u, k.mbits);
        let two_m =
            if self.f64 { (2f64).powi(52).to_bits() as i64 } else { (2f32).powi(23).to_bits() as i64 };
        let two_m = self.ci(two_m);
        let u = self.b.ins().bor(u, two_m);
        let kf = self.bits_to_float(u);
        let off = self.c((2f64).powi(k.mbits as i32) + big as f64);
        let kf = self.sub(kf, off);
        let kf = self.add(kf, kadj);
        let hi = self.iandc(tmp, k.exp_mask as i64);
        let iz = self.isub(ix, hi);
        let z = self.bits_to_float(iz);
        let f = self.addc(z, -1.0);
        (kf, f)
    }

    /// ln x with the special cases: +inf → +inf, ±0 → −inf, x < 0 or NaN → NaN.
    fn log(&mut self, x: Value, prec: Prec) -> Value {
        let (kf, f) = self.log_split(x);
        let two = self.addc(f, 2.0);
        let s = self.div(f, two);
        let zz = self.mul(s, s);
        let cs: &[f64] = match (self.f64, prec) {
            (false, _) => &LOG_F32,
            (true, Prec::Full) => &LOG_F64,
            (true, Prec::Low) => &LOG_F64_LOW,
        };
        let p = self.horner(zz, cs);
        let r = self.mul(zz, p);
        // fdlibm: k·ln2_hi − ((hfsq − (s·(hfsq + R) + k·ln2_lo)) − f), hfsq = f²/2.
        let hf = self.mulc(f, 0.5);
        let hfsq = self.mul(hf, f);
        let klo = self.mulc(kf, self.k.ln2_lo);
        let hr = self.add(hfsq, r);
        let t = self.fma(s, hr, klo);
        let u = self.sub(hfsq, t);
        let u = self.sub(u, f);
        let khi = self.mulc(kf, self.k.ln2_hi);
        let res = self.sub(khi, u);
        self.log_special(x, res)
    }

    fn log_special(&mut self, x: Value, res: Value) -> Value {
        let m = self.cmpc(FloatCC::Equal, x, f64::INFINITY);
        let res = self.selc(m, f64::INFINITY, res);
        let m = self.cmpc(FloatCC::Equal, x, 0.0);
        let res = self.selc(m, f64::NEG_INFINITY, res);
        let m = self.cmpc(FloatCC::UnorderedOrLessThan, x, 0.0);
        self.selc(m, f64::NAN, res)
    }

    /// ln x as a double-double (hi, lo) with relative error ~2^-62 (f64 only), special cases
    /// in `hi` like [`Em::log`].
    fn log_dd(&mut self, x: Value) -> (Value, Value) {
        let (kf, f) = self.log_split(x);
        // s = f/(2 + f) as s_h + s_l.
        let dh = self.addc(f, 2.0);
        let two = self.c(2.0);
        let dl = self.sub(two, dh);
        let dl = self.add(dl, f);
        let sh = self.div(f, dh);
        let p = self.mul(sh, dh);
        let pe = self.two_prod_err(sh, dh, p);
        let e = self.sub(f, p);
        let e = self.sub(e, pe);
        let nsh = self.neg(sh);
        let e = self.fma(nsh, dl, e);
        let sl = self.div(e, dh);
        // (2/3)s³ as T_h + T_l.
        let s2h = self.mul(sh, sh);
        let s2l = self.two_prod_err(sh, sh, s2h);
        let s3h = self.mul(s2h, sh);
        let s3l = self.two_prod_err(s2h, sh, s3h);
        let t = self.mul(s2l, sh);
        let s3l = self.add(s3l, t);
        let t = self.mulc(s2h, 3.0);
        let s3l = self.fma(t, sl, s3l);
        let c23h = 2.0 / 3.0;
        let c23l = 3.700743415417188e-17; // 2/3 − c23h
        let th = self.mulc(s3h, c23h);
        let c = self.c(c23h);
        let tl = self.two_prod_err(s3h, c, th);
        let t = self.mulc(s3l, c23h);
        let tl = self.add(tl, t);
        let tl = self.fmac(s3h, c23l, tl);
        // s⁵·Q(s²) in plain precision.
        let q = self.horner(s2h, &LOG_DD_TAIL);
        let s5 = self.mul(s3h, s2h);
        let v = self.mul(s5, q);
        // 2s + T + V.
        let h2 = self.mulc(sh, 2.0);
        let l2 = self.mulc(sl, 2.0);
        let hi = self.add(h2, th);
        let t = self.sub(hi, h2);
        let lo = self.sub(th, t);
        let lo = self.add(lo, l2);
        let lo = self.add(lo, tl);
        let lo = self.add(lo, v);
        // + k·ln2 (|k·ln2_hi| ≥ 0.69 > |hi| unless k = 0: fast two-sum).
        let a = self.mulc(kf, self.k.ln2_hi);
        let bl = self.mulc(kf, self.k.ln2_lo);
        let h = self.add(a, hi);
        let t = self.sub(h, a);
        let e = self.sub(hi, t);
        let lo = self.add(lo, bl);
        let lo = self.add(e, lo);
        let rh = self.add(h, lo);
        let t = self.sub(rh, h);
        let rl = self.sub(lo, t);
        let rh = self.log_special(x, rh);
        (rh, rl)
    }

    // --- tanh, sigmoid ---

    /// tanh: |x| < 0.5: x + x³·P(x²); else em/(em + 2) with em = expm1(2|x|) = 2^k·q + (2^k − 1)
    /// (2|x| clamped where tanh is 1 to the last bit); sign of x restored.
    fn tanh(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let y = self.mulc(ax, 2.0);
        let y = self.clamp_hi(y, self.k.tanh_max);
        let (_, z, r, d) = self.exp_reduce(y);
        let q = self.expm1_poly(r, d, Prec::Full);
        let s = self.pow2_from_shifted(z);
        let sm1 = self.addc(s, -1.0);
        let em = self.fma(s, q, sm1);
        let den = self.addc(em, 2.0);
        let big = self.div(em, den);
        let cs: &[f64] = if self.f64 { &TANH_F64 } else { &TANH_F32 };
        let x2 = self.mul(ax, ax);
        let p = self.horner(x2, cs);
        let x3 = self.mul(x2, ax);
        let small = self.fma(x3, p, ax);
        let m = self.cmpc(FloatCC::LessThan, ax, 0.5);
        let t = self.sel(m, small, big);
        let sg = self.sign_of(x);
        self.for_(t, sg)
    }

    /// The interpreter's formula: x ≥ 0 ? 1/(1 + e^−x) : e^x/(1 + e^x), with e = e^−|x|.
    fn sigmoid(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let nx = self.neg(ax);
        let e = self.exp(nx, false, Prec::Full);
        let d = self.addc(e, 1.0);
        let pos = self.cmpc(FloatCC::GreaterThanOrEqual, x, 0.0);
        let num = self.selc(pos, 1.0, e);
        self.div(num, d)
    }

    // --- erf ---

    /// erf; `exp_neg_x2`: e^(−x²) computed by the caller exactly as the Exp op would (see
    /// [`emit_erf_with_exp`]), else computed here.
    fn erf(&mut self, x: Value, exp_neg_x2: Option<Value>) -> Value {
        let (small, big, cc): (&[f64], &[f64], f64) = if self.f64 {
            (&ERF_SMALL_F64, &ERFC_F64, ERFC_F64_C)
        } else {
            (&ERF_SMALL_F32, &ERFC_F32, ERFC_F32_C)
        };
        let ax = self.abs(x);
        // x·x, not |x|·|x| (the same value): the same instruction as the caller's z·z when erf
        // sits next to exp(−z²), which Cranelift then computes once.
        let x2 = self.mul(x, x);
        // |x| < 0.9: x + x·(P(x²) − 1), P(0) − 1 ≈ 0.128, so the one rounding that matters is
        // the last.
        let mut cs = [0.0; 12];
        cs[..small.len()].copy_from_slice(small);
        cs[0] -= 1.0;
        let p = self.horner(x2, &cs[..small.len()]);
        let ps = self.fma(ax, p, ax);
        // 0.9 ≤ |x| < erf_one: 1 − e^(−x²)·Q(t), t = (|x| − c)/(|x| + c). Lanes outside the
        // range compute garbage that the selects drop.
        let num = self.addc(ax, -cc);
        let den = self.addc(ax, cc);
        let t = self.div(num, den);
        let q = self.horner(t, big);
        let e = match exp_neg_x2 {
            Some(e) => e,
            None => {
                let nx2 = self.neg(x2);
                let (_, z, r, d) = self.exp_reduce(nx2);
                let em1 = self.expm1_poly(r, d, Prec::Full);
                let e = self.addc(em1, 1.0);
                let s = self.pow2_from_shifted(z); // −x² ≥ −35.1: 2^n is normal
                self.mul(e, s)
            }
        };
        let erfc = self.mul(e, q);
        let one = self.c(1.0);
        let pl = self.sub(one, erfc);
        let m = self.cmpc(FloatCC::LessThan, ax, self.k.erf_small_max);
        let r = self.sel(m, ps, pl);
        let m = self.cmpc(FloatCC::GreaterThanOrEqual, ax, self.k.erf_one);
        let r = self.selc(m, 1.0, r);
        let sg = self.sign_of(x);
        self.for_(r, sg)
    }

    // --- sin, cos ---

    /// sin or cos of |x| by quadrant: j = round(2|x|/π), r + rl = |x| − j·π/2 (four-part
    /// Cody–Waite with the rounding errors of the two big steps kept in rl), polynomial for
    /// sin(r + rl) or cos(r + rl) by the parity of j (+1 for cos), sign from bit 1 of j (and
    /// from x for sin).
    fn sincos(&mut self, x: Value, cos: bool) -> Value {
        let (sc, cc): (&[f64], &[f64]) = if self.f64 { (&SIN_F64, &COS_F64) } else { (&SIN_F32, &COS_F32) };
        let [c1, c2, c3, c4] = self.k.pio2;
        let ax = self.abs(x);
        let shift = self.c(self.k.shift);
        let z = self.fmac(ax, std::f64::consts::FRAC_2_PI, shift);
        let jf = self.sub(z, shift);
        // r1 = |x| − j·C1 is exact (j·C1 exact for |j| < 2^12 / 2^20, with FMA for any j), so
        // are the products j·C2, j·C3 in that range (with FMA their rounding errors are added
        // beyond it); the two subtractions keep their rounding errors (2Sum), so r + rl is
        // |x| − j·π/2 to ~2^-24 of the last term even when r is tiny.
        let r1 = self.fmac(jf, -c1, ax);
        let p2 = self.mulc(jf, -c2);
        let (r2, mut lo) = self.two_sum(r1, p2);
        let p3 = self.mulc(jf, -c3);
        let (r3, e3) = self.two_sum(r2, p3);
        if self.fma {
            for (c, p) in [(c2, p2), (c3, p3)] {
                let mc = self.c(-c);
                let pe = self.two_prod_err(jf, mc, p);
                lo = self.add(lo, pe);
            }
        }
        let lo = self.fmac(jf, -c4, lo);
        let lo = self.add(lo, e3);
        let r = self.add(r3, lo);
        let t = self.sub(r, r3);
        let rl = self.sub(lo, t);
        // w = 1 − r²/2 and its rounding error we.
        let zz = self.mul(r, r);
        let hz = self.mulc(zz, 0.5);
        let one = self.c(1.0);
        let w = self.sub(one, hz);
        let t = self.sub(one, w);
        let we = self.sub(t, hz);
        // sin(r + rl) ≈ r + (r³·S(r²) + rl·(1 − r²/2)).
        let ps = self.horner(zz, sc);
        let r3 = self.mul(r, zz);
        let rlw = self.mul(rl, w);
        let u = self.fma(r3, ps, rlw);
        let ps = self.add(r, u);
        // cos(r + rl) ≈ w + ((we − r·rl) + r⁴·C(r²)).
        let pc = self.horner(zz, cc);
        let z4 = self.mul(zz, zz);
        let nrl = self.neg(rl);
        let v = self.fma(r, nrl, we);
        let v = self.fma(z4, pc, v);
        let pc = self.add(w, v);
        let mut j = self.bits_to_int(z);
        if cos {
            j = self.iaddc(j, 1);
        }
        let odd = self.iandc(j, 1);
        let zero = self.ci(0);
        let odd = Mask(self.b.ins().icmp(IntCC::NotEqual, odd, zero));
        let res = self.sel(odd, pc, ps);
        let sg = self.iandc(j, 2);
        let bits = if self.f64 { 64 } else { 32 };
        let sg = self.b.ins().ishl_imm_u(sg, bits - 2);
        let mut sg = self.bits_to_float(sg);
        if !cos {
            let sx = self.sign_of(x);
            sg = self.fxor(sg, sx);
        }
        let res = self.fxor(res, sg);
        let big = self.cmpc(FloatCC::GreaterThan, ax, self.k.trig_max);
        self.selc(big, f64::NAN, res)
    }

    // --- pow ---

    /// x^y with the C99 special cases; for f64 lanes only (f32 goes through [`pow_f32x4`]).
    fn pow(&mut self, x: Value, y: Value, prec: Prec) -> Value {
        let ax = self.abs(x);
        let core = if prec == Prec::Full {
            let (lh, ll) = self.log_dd(ax);
            let ph = self.mul(y, lh);
            let pl = self.two_prod_err(y, lh, ph);
            let t = self.mul(y, ll);
            let pl = self.add(pl, t);
            // Where the high part over/underflows anyway (or is NaN) the low part is meaningless
            // (possibly NaN or huge): drop it.
            let aph = self.abs(ph);
            let mut ok = self.cmpc(FloatCC::LessThanOrEqual, aph, -self.k.exp_lo);
            if !self.fma {
                // Dekker's split overflows for |y| > 2^996 (then only x = ±1 gives a finite
                // exponent, and there the low part is 0).
                let apl = self.abs(pl);
                let fin = self.cmpc(FloatCC::LessThanOrEqual, apl, 1.0);
                ok = self.and_m(ok, fin);
            }
            let pl = self.sel_or_zero(ok, pl);
            self.exp_dd(ph, Some(pl), prec)
        } else {
            let l = self.log(ax, prec);
            let p = self.mul(y, l);
            self.exp_dd(p, None, prec)
        };
        // Sign: negative x (including −0, −inf) with odd integer y.
        let ty = self.b.ins().trunc(y);
        let yint = self.cmp(FloatCC::Equal, ty, y);
        let yh = self.mulc(y, 0.5);
        let tyh = self.b.ins().trunc(yh);
        let half_frac = self.cmp(FloatCC::NotEqual, tyh, yh);
        let yodd = self.and_m(yint, half_frac);
        let sx = self.sign_of(x);
        let sg = self.sel_or_zero(yodd, sx);
        let res = self.for_(core, sg);
        // Negative finite x with non-integer y: NaN.
        let neg = self.cmpc(FloatCC::LessThan, x, 0.0);
        let fin = self.cmpc(FloatCC::GreaterThan, x, f64::NEG_INFINITY);
        let nonint = self.cmp(FloatCC::NotEqual, ty, y);
        let bad = self.and_m(neg, fin);
        let bad = self.and_m(bad, nonint);
        let res = self.selc(bad, f64::NAN, res);
        // 1 for x = 1, (x = −1, y = ±inf) and y = ±0, whatever the other operand.
        let x1 = self.cmpc(FloatCC::Equal, x, 1.0);
        let xm1 = self.cmpc(FloatCC::Equal, x, -1.0);
        let ay = self.abs(y);
        let yinf = self.cmpc(FloatCC::Equal, ay, f64::INFINITY);
        let m = self.and_m(xm1, yinf);
        let one = self.or_m(x1, m);
        let y0 = self.cmpc(FloatCC::Equal, y, 0.0);
        let one = self.or_m(one, y0);
        self.selc(one, 1.0, res)
    }
}
