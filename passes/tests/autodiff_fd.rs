//! Finite-difference checks of every VJP rule and of the composites, first and second order.
//!
//! For each case the autodiff graph is run in the reference interpreter and compared with central
//! differences in f64 of `L(x) = Σ seed · f(x)` (first order) and of
//! `L2(x) = Σ v · ∇L(x)` (second order, differentiating the reverse graph again).

use kiln_ir::interp::{run, Value};
use kiln_ir::{BinaryOp, CompareOp, DType, Graph, NodeId, ReduceOp, UnaryOp};
use kiln_passes::grad;

type Build = fn(&mut Graph, &[NodeId]) -> kiln_ir::Result<NodeId>;

/// Where random inputs are drawn: away from the points where an op is not differentiable.
#[derive(Clone, Copy)]
enum Dom {
    /// uniform in ±2, but |x| ≥ 0.2 (kinks of abs/relu/sign at 0)
    Any,
    /// uniform in [0.3, 2.5] (log, sqrt, pow base)
    Pos,
    /// as `Any`, but the input is not differentiated (a mask source, a label)
    Fixed,
}

struct Case {
    name: &'static str,
    inputs: &'static [(&'static [usize], Dom)],
    build: Build,
}

const TOL: f64 = 1e-6;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        // splitmix64 → [0, 1)
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn draw(&mut self, d: Dom) -> f64 {
        match d {
            Dom::Pos => 0.3 + 2.2 * self.next(),
            Dom::Any | Dom::Fixed => {
                let m = 0.2 + 1.8 * self.next();
                if self.next() < 0.5 {
                    -m
                } else {
                    m
                }
            }
        }
    }
    fn vec(&mut self, n: usize, d: Dom) -> Vec<f64> {
        (0..n).map(|_| self.draw(d)).collect()
    }
}

fn value(shape: &[usize], data: &[f64]) -> Value {
    Value::from_f64(DType::F64, shape.to_vec(), data).unwrap()
}

/// Builds the forward graph; returns (graph, inputs, output).
fn forward(case: &Case) -> (Graph, Vec<NodeId>, NodeId) {
    let mut g = Graph::new();
    let ins: Vec<NodeId> = case
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (s, _))| g.input(format!("x{i}"), DType::F64, s.to_vec()))
        .collect();
    let y = (case.build)(&mut g, &ins).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    g.set_outputs(vec![y]);
    (g, ins, y)
}

fn wrt_of(case: &Case, ins: &[NodeId]) -> Vec<NodeId> {
    ins.iter().zip(case.inputs).filter(|(_, (_, d))| !matches!(d, Dom::Fixed)).map(|(&i, _)| i).collect()
}

/// A graph computing ∇_wrt Σ seed·f, with the seed as an extra last input. Outputs: the gradients.
fn first_order(case: &Case) -> (Graph, Vec<usize>) {
    let (mut g, ins, y) = forward(case);
    let seed = g.input("seed", DType::F64, g.node(y).shape.clone());
    let wrt = wrt_of(case, &ins);
    let gs = grad(&mut g, &[y], &[seed], &wrt).unwrap();
    let gs: Vec<NodeId> =
        gs.into_iter().map(|d| d.unwrap_or_else(|| panic!("{}: no gradient", case.name))).collect();
    g.set_outputs(gs);
    g.verify().unwrap_or_else(|e| panic!("{}: reverse graph does not verify: {e}", case.name));
    let shape = g.node(y).shape.0.to_vec();
    (g, shape)
}

fn eval(g: &Graph, vals: &[Vec<f64>], shapes: &[Vec<usize>]) -> Vec<Vec<f64>> {
    let inputs: Vec<Value> = vals.iter().zip(shapes).map(|(v, s)| value(s, v)).collect();
    run(g, &inputs).unwrap().iter().map(|v| v.to_f64_vec()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compares analytic gradients with central differences of `f` over the differentiated inputs.
fn compare(
    name: &str,
    order: &str,
    case: &Case,
    vals: &[Vec<f64>],
    analytic: &[Vec<f64>],
    f: &dyn Fn(&[Vec<f64>]) -> f64,
) -> f64 {
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    let mut k = 0;
    for (i, (_, d)) in case.inputs.iter().enumerate() {
        if matches!(d, Dom::Fixed) {
            continue;
        }
        for j in 0..vals[i].len() {
            let mut p = vals.to_vec();
            p[i][j] += eps;
            let up = f(&p);
            p[i][j] -= 2.0 * eps;
            let down = f(&p);
            let fd = (up - down) / (2.0 * eps);
            let a = analytic[k][j];
            let err = (a - fd).abs() / (1.0 + fd.abs());
            assert!(err < TOL, "{name} ({order} order): d/dx{i}[{j}] autodiff {a} vs finite difference {fd}");
            worst = worst.max(err);
        }
        k += 1;
    }
    worst
}

fn check(case: &Case, seed: u64) -> (f64, f64) {
    let mut rng = Rng(seed);
    let shapes: Vec<Vec<usize>> = case.inputs.iter().map(|(s, _)| s.to_vec()).collect();
    let vals: Vec<Vec<f64>> = case.inputs.iter().map(|(s, d)| rng.vec(s.iter().product(), *d)).collect();
    let (fwd, _, _) = forward(case);
    let (g1, yshape) = first_order(case);
    let seed_v = rng.vec(yshape.iter().product(), Dom::Any);

    // First order.
    let mut with_seed = vals.clone();
    with_seed.push(seed_v.clone());
    let mut shapes1 = shapes.clone();
    shapes1.push(yshape.clone());
    let analytic = eval(&g1, &with_seed, &shapes1);
    let loss = |x: &[Vec<f64>]| dot(&eval(&fwd, x, &shapes)[0], &seed_v);
    let e1 = compare(case.name, "first", case, &vals, &analytic, &loss);

    // Second order: differentiate Σ v·∇L again, through the reverse graph.
    let mut g2 = g1.clone();
    let outs = g2.outputs().to_vec();
    let vs: Vec<NodeId> = outs
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            let s = g2.node(o).shape.clone();
            g2.input(format!("v{k}"), DType::F64, s)
        })
        .collect();
    let ins: Vec<NodeId> = g2.inputs()[..case.inputs.len()].to_vec();
    let wrt = wrt_of(case, &ins);
    let second = grad(&mut g2, &outs, &vs, &wrt).unwrap();
    // A gradient can be identically zero as a function of x (e.g. of a linear op): then autodiff
    // rightly finds no path, and the finite difference must be zero too.
    let zero_outs: Vec<NodeId> =
        second.iter().zip(&wrt).map(|(d, &w)| d.unwrap_or_else(|| zeros_like(&mut g2, w))).collect();
    g2.set_outputs(zero_outs);
    g2.verify().unwrap_or_else(|e| panic!("{}: second-order graph does not verify: {e}", case.name));
    let v_vals: Vec<Vec<f64>> = analytic.iter().map(|a| rng.vec(a.len(), Dom::Any)).collect();
    let mut in2 = with_seed.clone();
    in2.extend(v_vals.iter().cloned());
    let mut shapes2 = shapes1.clone();
    shapes2.extend(outs.iter().map(|&o| g1.node(o).shape.0.to_vec()));
    let analytic2 = eval(&g2, &in2, &shapes2);
    let loss2 = |x: &[Vec<f64>]| {
        let mut xin = x.to_vec();
        xin.push(seed_v.clone());
        let d = eval(&g1, &xin, &shapes1);
        d.iter().zip(&v_vals).map(|(a, b)| dot(a, b)).sum()
    };
    let e2 = compare(case.name, "second", case, &vals, &analytic2, &loss2);
    (e1, e2)
}

fn zeros_like(g: &mut Graph, like: NodeId) -> NodeId {
    let s = g.node(like).shape.0.to_vec();
    let z = g.scalar(DType::F64, 0.0);
    if s.is_empty() {
        z
    } else {
        g.expand(z, s).unwrap()
    }
}

macro_rules! cases {
    ($($name:literal, [$(($shape:expr, $dom:ident)),*], $build:expr;)*) => {
        &[$(Case { name: $name, inputs: &[$(($shape, Dom::$dom)),*], build: $build }),*]
    };
}

const M: &[usize] = &[3, 4];
const SCALAR: &[usize] = &[];

/// Runs every case, asserting each; returns the largest first- and second-order errors seen.
fn check_all(cases: &[Case], seed: u64) -> (f64, f64) {
    let mut worst = (0.0f64, 0.0f64);
    for (i, c) in cases.iter().enumerate() {
        let (e1, e2) = check(c, seed + i as u64);
        worst = (worst.0.max(e1), worst.1.max(e2));
    }
    eprintln!("largest relative error: first order {:.2e}, second order {:.2e}", worst.0, worst.1);
    worst
}

const UNARY: &[Case] = cases![
    "neg", [(M, Any)], |g, x| g.unary(UnaryOp::Neg, x[0]);
    "abs", [(M, Any)], |g, x| g.unary(UnaryOp::Abs, x[0]);
    "exp", [(M, Any)], |g, x| g.unary(UnaryOp::Exp, x[0]);
    "log", [(M, Pos)], |g, x| g.unary(UnaryOp::Log, x[0]);
    "sqrt", [(M, Pos)], |g, x| g.unary(UnaryOp::Sqrt, x[0]);
    "reciprocal", [(M, Any)], |g, x| g.unary(UnaryOp::Reciprocal, x[0]);
    "tanh", [(M, Any)], |g, x| g.unary(UnaryOp::Tanh, x[0]);
    "sigmoid", [(M, Any)], |g, x| g.unary(UnaryOp::Sigmoid, x[0]);
    "relu", [(M, Any)], |g, x| g.unary(UnaryOp::Relu, x[0]);
    "erf", [(M, Any)], |g, x| g.unary(UnaryOp::Erf, x[0]);
    "sin", [(M, Any)], |g, x| g.unary(UnaryOp::Sin, x[0]);
    "cos", [(M, Any)], |g, x| g.unary(UnaryOp::Cos, x[0]);
    // sign's gradient is zero; times x the check is not trivial: d(x·sign x)/dx = sign x
    "sign", [(M, Any)], |g, x| { let s = g.unary(UnaryOp::Sign, x[0])?; g.mul(s, x[0]) };
];

#[test]
fn unary_rules_match_finite_differences() {
    check_all(UNARY, 100);
}

const COL: &[usize] = &[3, 1];
const ROW: &[usize] = &[4];

/// Each binary op three ways: same shapes, broadcast both sides, scalar against a matrix.
macro_rules! binary_cases {
    ($($name:literal, $op:ident, $da:ident, $db:ident;)*) => {
        &[$(
            Case { name: concat!($name, " same"), inputs: &[(M, Dom::$da), (M, Dom::$db)],
                   build: |g, x| g.binary(BinaryOp::$op, x[0], x[1]) },
            Case { name: concat!($name, " [3,1]x[4]"), inputs: &[(COL, Dom::$da), (ROW, Dom::$db)],
                   build: |g, x| g.binary(BinaryOp::$op, x[0], x[1]) },
            Case { name: concat!($name, " []x[3,4]"), inputs: &[(SCALAR, Dom::$da), (M, Dom::$db)],
                   build: |g, x| g.binary(BinaryOp::$op, x[0], x[1]) },
        )*]
    };
}

const BINARY: &[Case] = binary_cases![
    "add", Add, Any, Any;
    "sub", Sub, Any, Any;
    "mul", Mul, Any, Any;
    "div", Div, Any, Any;
    "pow", Pow, Pos, Any;
    "max", Max, Any, Any;
    "min", Min, Any, Any;
];

#[test]
fn binary_rules_match_finite_differences_with_broadcasting() {
    check_all(BINARY, 200);
}

const T3: &[usize] = &[2, 3, 4];

const STRUCTURAL: &[Case] = cases![
    "pow by constant 3", [(M, Any)], |g, x| { let c = g.scalar(DType::F64, 3.0); g.pow(x[0], c) };
    "where", [(M, Fixed), (M, Any), (ROW, Any)], |g, x| {
        let z = g.scalar(DType::F64, 0.0);
        let c = g.compare(CompareOp::Greater, x[0], z)?;
        g.where_(c, x[1], x[2])
    };
    "compare feeds nothing back", [(M, Any)], |g, x| {
        let z = g.scalar(DType::F64, 0.0);
        let c = g.compare(CompareOp::Less, x[0], z)?;
        let cf = g.cast(c, DType::F64)?;
        g.mul(cf, x[0])
    };
    "cast f64 to f64", [(M, Any)], |g, x| g.cast(x[0], DType::F64);
    "reduce sum axis 1", [(T3, Any)], |g, x| g.reduce(ReduceOp::Sum, x[0], vec![1], false);
    "reduce sum all keepdims", [(T3, Any)], |g, x| g.reduce(ReduceOp::Sum, x[0], vec![], true);
    "reduce mean axes -1,0", [(T3, Any)], |g, x| g.reduce(ReduceOp::Mean, x[0], vec![-1, 0], false);
    "reduce mean keepdims", [(T3, Any)], |g, x| g.reduce(ReduceOp::Mean, x[0], vec![2], true);
    "reduce max axis -1", [(T3, Any)], |g, x| g.reduce(ReduceOp::Max, x[0], vec![-1], false);
    "reduce max all", [(T3, Any)], |g, x| g.reduce(ReduceOp::Max, x[0], vec![], false);
    "matmul 2d", [(&[2, 3], Any), (&[3, 4], Any)], |g, x| g.matmul(x[0], x[1]);
    "matmul vec-mat", [(&[3], Any), (&[3, 4], Any)], |g, x| g.matmul(x[0], x[1]);
    "matmul mat-vec", [(&[2, 3], Any), (&[3], Any)], |g, x| g.matmul(x[0], x[1]);
    "matmul vec-vec", [(&[3], Any), (&[3], Any)], |g, x| g.matmul(x[0], x[1]);
    "matmul batched", [(&[2, 2, 3], Any), (&[3, 4], Any)], |g, x| g.matmul(x[0], x[1]);
    "matmul broadcast batch", [(&[2, 1, 2, 3], Any), (&[3, 3, 2], Any)], |g, x| g.matmul(x[0], x[1]);
    "reshape", [(T3, Any)], |g, x| g.reshape(x[0], vec![4, 6]);
    "transpose 3d", [(T3, Any)], |g, x| g.transpose(x[0], vec![2, 0, 1]);
    "expand", [(COL, Any)], |g, x| g.expand(x[0], vec![2, 3, 4]);
    "slice step 1", [(T3, Any)], |g, x| g.slice(x[0], vec![1], vec![3], vec![-1], vec![1]);
    "slice step 2 clamped", [(&[7, 3], Any)], |g, x| g.slice(x[0], vec![1], vec![100], vec![0], vec![2]);
    "slice negative step", [(&[7, 3], Any)], |g, x| g.slice(x[0], vec![-2], vec![0], vec![0], vec![-3]);
    "slice two axes", [(T3, Any)], |g, x| g.slice(x[0], vec![0, -1], vec![1, 0], vec![0, 2], vec![1, -2]);
    "concat three at -1", [(&[2, 1], Any), (&[2, 3], Any), (&[2, 2], Any)], |g, x| g.concat(&[x[0], x[1], x[2]], -1);
];

#[test]
fn structural_rules_match_finite_differences() {
    check_all(STRUCTURAL, 300);
}

const COMPOSITE: &[Case] = cases![
    "x^2 * exp(x)", [(M, Any)], |g, x| {
        let two = g.scalar(DType::F64, 2.0);
        let sq = g.pow(x[0], two)?;
        let e = g.unary(UnaryOp::Exp, x[0])?;
        g.mul(sq, e)
    };
    "w*x + b", [(&[1], Any), (&[1], Any), (&[1], Any)], |g, x| {
        let y = g.mul(x[1], x[0])?;
        g.add_(y, x[2])
    };
    "linear + softmax cross-entropy", [(&[4, 5], Any), (&[5, 3], Any), (&[3], Any), (&[4, 3], Fixed)], |g, x| {
        let h = g.matmul(x[0], x[1])?;
        let logits = g.add_(h, x[2])?;
        let z = g.scalar(DType::F64, 0.0);
        let onehot = g.compare(CompareOp::Greater, x[3], z)?;
        let t = g.cast(onehot, DType::F64)?;
        g.softmax_cross_entropy(logits, t)
    };
    "softmax", [(M, Any)], |g, x| g.softmax(x[0], -1);
    "layer norm + gelu", [(&[3, 5], Any), (&[5], Any), (&[5], Any)], |g, x| {
        let n = g.layer_norm(x[0], 1e-5)?;
        let s = g.mul(n, x[1])?;
        let t = g.add_(s, x[2])?;
        g.gelu(t)
    };
    "mse", [(&[6], Any), (&[6], Any)], |g, x| g.mse(x[0], x[1]);
];

#[test]
fn composites_match_finite_differences_to_second_order() {
    check_all(COMPOSITE, 400);
}
