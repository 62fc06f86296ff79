//! The CUDA prelude's math is the CPU backend's math: the prelude compiled as host C++ (clang-19,
//! `KILN_HOST`, no contraction) evaluates `exp log tanh sigmoid erf sin cos pow` on dense sweeps,
//! random bit patterns and special values, and must agree with the Cranelift kernels. On a host
//! with FMA (which the CPU backend then uses, as every GPU does) the results must be identical
//! bit for bit (NaNs compare equal); without FMA, within 2 ULP.
//!
//! Skipped (with a printed reason) when clang-19 is missing outside CI.

mod cuda_common;
use cuda_common::{clang, Dice};
use kiln_ir::interp::Value;
use kiln_ir::{BinaryOp, DType, Graph, Literal, Shape, UnaryOp};
use std::process::Command;

const DRIVER: &str = r#"
extern "C" {
typedef struct FILE FILE;
FILE *fopen(const char *, const char *);
unsigned long fread(void *, unsigned long, unsigned long, FILE *);
unsigned long fwrite(const void *, unsigned long, unsigned long, FILE *);
int fclose(FILE *);
int strcmp(const char *, const char *);
long atol(const char *);
void *malloc(unsigned long);
}
template <class T> static T apply(const char *f, T x, T y);
template <> float apply<float>(const char *f, float x, float y) {
  if (!strcmp(f, "exp")) return kiln_exp_f32(x);
  if (!strcmp(f, "log")) return kiln_log_f32(x);
  if (!strcmp(f, "tanh")) return kiln_tanh_f32(x);
  if (!strcmp(f, "sigmoid")) return kiln_sigmoid_f32(x);
  if (!strcmp(f, "erf")) return kiln_erf_f32(x);
  if (!strcmp(f, "sin")) return kiln_sin_f32(x);
  if (!strcmp(f, "cos")) return kiln_cos_f32(x);
  return kiln_pow_f32(x, y);
}
template <> double apply<double>(const char *f, double x, double y) {
  if (!strcmp(f, "exp")) return kiln_exp_f64(x);
  if (!strcmp(f, "log")) return kiln_log_f64(x);
  if (!strcmp(f, "tanh")) return kiln_tanh_f64(x);
  if (!strcmp(f, "sigmoid")) return kiln_sigmoid_f64(x);
  if (!strcmp(f, "erf")) return kiln_erf_f64(x);
  if (!strcmp(f, "sin")) return kiln_sin_f64(x);
  if (!strcmp(f, "cos")) return kiln_cos_f64(x);
  return kiln_pow_f64(x, y);
}
template <class T> static int run(const char *f, long n, const char *in, const char *out) {
  T *x = (T *)malloc(2 * n * sizeof(T));
  FILE *fi = fopen(in, "rb");
  if (!fi || fread(x, sizeof(T), 2 * n, fi) != (unsigned long)(2 * n)) return 1;
  fclose(fi);
  T *r = (T *)malloc(n * sizeof(T));
  for (long i = 0; i < n; ++i) r[i] = apply<T>(f, x[i], x[n + i]);
  FILE *fo = fopen(out, "wb");
  if (!fo || fwrite(r, sizeof(T), n, fo) != (unsigned long)n) return 1;
  fclose(fo);
  return 0;
}
/* argv: function, dtype (f32|f64), n, input file (x then y), output file */
int main(int argc, char **argv) {
  if (argc != 6) return 2;
  long n = atol(argv[3]);
  return strcmp(argv[2], "f32") ? run<double>(argv[1], n, argv[4], argv[5]) : run<float>(argv[1], n, argv[4], argv[5]);
}
"#;

fn inputs_f64(seed: u64, f32: bool) -> Vec<f64> {
    let mut v =
        vec![0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-30, -1e-30];
    if f32 {
        v.extend([f32::MIN_POSITIVE as f64, 1e-45, -1e-45, f32::MAX as f64, 88.7, -103.9, 3.9192, 6433.0]);
    } else {
        v.extend([f64::MIN_POSITIVE, 5e-324, -5e-324, f64::MAX, 709.7, -745.1, 5.9216, 1.6e6]);
    }
    for (lo, hi, n) in [(-10.0, 10.0, 4001), (-120.0, 120.0, 2001), (-1.0, 1.0, 2001), (0.0, 4.0, 1001)] {
        v.extend((0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64));
    }
    let mut d = Dice(seed);
    for _ in 0..8000 {
        let bits = ((d.next() as u64) << 32) | d.next() as u64;
        v.push(if f32 { f32::from_bits(bits as u32) as f64 } else { f64::from_bits(bits) });
    }
    // Moderate random values (the bit patterns are mostly huge or tiny).
    for _ in 0..4000 {
        let u = d.next() as f64 / u32::MAX as f64;
        v.push((u - 0.5) * 60.0);
    }
    v
}

fn cpu(f: &str, dt: DType, x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut g = Graph::new();
    let a = g.input("x", dt, Shape::from(vec![n]));
    let b = g.input("y", dt, Shape::from(vec![n]));
    let op = match f {
        "exp" => Some(UnaryOp::Exp),
        "log" => Some(UnaryOp::Log),
        "tanh" => Some(UnaryOp::Tanh),
        "sigmoid" => Some(UnaryOp::Sigmoid),
        "erf" => Some(UnaryOp::Erf),
        "sin" => Some(UnaryOp::Sin),
        "cos" => Some(UnaryOp::Cos),
        _ => None,
    };
    let r = match op {
        Some(u) => g.unary(u, a).unwrap(),
        None => g.binary(BinaryOp::Pow, a, b).unwrap(),
    };
    g.set_outputs(vec![r]);
    let lit = |v: &[f64]| match dt {
        DType::F32 => Literal::F32(v.iter().map(|&x| x as f32).collect()),
        _ => Literal::F64(v.to_vec()),
    };
    let vals = [lit(x), lit(y)].map(|l| Value::from_literal(&l, &Shape::from(vec![n])).unwrap());
    let out = kiln_codegen::backend_named("jit").unwrap().run(&g, &vals).unwrap();
    match &out[0] {
        Value::F32(a) => a.iter().map(|&v| v as f64).collect(),
        Value::F64(a) => a.iter().copied().collect(),
        _ => unreachable!(),
    }
}

/// Distance in units in the last place (0 for two NaNs).
fn ulps(a: f64, b: f64, f32: bool) -> u64 {
    if a.is_nan() && b.is_nan() {
        return 0;
    }
    if a.is_nan() || b.is_nan() {
        return u64::MAX;
    }
    let ord = |x: f64| -> i128 {
        if f32 {
            let b = (x as f32).to_bits() as i32;
            (if b < 0 { i32::MIN - b } else { b }) as i128
        } else {
            let b = x.to_bits() as i64;
            (if b < 0 { i64::MIN - b } else { b }) as i128
        }
    };
    (ord(a) - ord(b)).unsigned_abs() as u64
}

#[test]
fn device_math_matches_the_cpu_backend() {
    let Some(clang) = clang() else { return };
    let dir = std::env::temp_dir().join(format!("kiln-cuda-math-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("math.cpp");
    let exe = dir.join("math");
    std::fs::write(&src, format!("#define KILN_HOST\n{}\n{DRIVER}", kiln_codegen::cuda::prelude())).unwrap();
    let out = Command::new(&clang)
        .args(["-x", "c++", "-O2", "-ffp-contract=off", "-fno-builtin", "-Wno-unused-function", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-lm")
        .output()
        .expect("run clang");
    assert!(out.status.success(), "clang failed:\n{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(target_arch = "x86_64")]
    let fma = std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let fma = cfg!(target_arch = "aarch64");
    let tol = if fma { 0 } else { 2 };
    let mut report = vec![];
    for (dt, tag) in [(DType::F32, "f32"), (DType::F64, "f64")] {
        let is32 = dt == DType::F32;
        for (fi, f) in ["exp", "log", "tanh", "sigmoid", "erf", "sin", "cos", "pow"].iter().enumerate() {
            let mut x = inputs_f64(17 + fi as u64, is32);
            if is32 {
                x.iter_mut().for_each(|v| *v = *v as f32 as f64);
            }
            let mut y = x.clone();
            let mut d = Dice(99 + fi as u64);
            for i in (1..y.len()).rev() {
                let j = d.next() as usize % (i + 1);
                y.swap(i, j);
            }
            // pow: also small integer exponents and bases near 1.
            if *f == "pow" {
                for (i, v) in y.iter_mut().enumerate().take(3000) {
                    *v = (i % 13) as f64 - 6.0;
                }
            }
            let n = x.len();
            let input = dir.join(format!("{f}_{tag}.in"));
            let output = dir.join(format!("{f}_{tag}.out"));
            let bytes: Vec<u8> = if is32 {
                x.iter().chain(&y).flat_map(|&v| (v as f32).to_le_bytes()).collect()
            } else {
                x.iter().chain(&y).flat_map(|&v| v.to_le_bytes()).collect()
            };
            std::fs::write(&input, bytes).unwrap();
            let st =
                Command::new(&exe).args([f, tag, &n.to_string()]).arg(&input).arg(&output).status().unwrap();
            assert!(st.success(), "host math driver failed for {f} {tag}");
            let raw = std::fs::read(&output).unwrap();
            let dev: Vec<f64> = if is32 {
                raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
            } else {
                raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
            };
            let host = cpu(f, dt, &x, &y);
            let (mut worst, mut differ, mut at) = (0u64, 0usize, 0usize);
            for i in 0..n {
                let u = ulps(dev[i], host[i], is32);
                if u > 0 {
                    differ += 1;
                }
                if u > worst {
                    worst = u;
                    at = i;
                }
            }
            report.push(format!("{f} {tag}: {n} inputs, {differ} differ, max {worst} ULP"));
            assert!(
                worst <= tol,
                "{f} {tag}: device math {} vs CPU backend {} at x = {:e}, y = {:e} ({worst} ULP)",
                dev[at],
                host[at],
                x[at],
                y[at]
            );
        }
    }
    println!("{}", report.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}
