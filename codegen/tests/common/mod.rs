//! Builders for hand-written schedules and the comparison with the reference executor.
#![allow(dead_code)]

use kiln_codegen::cpu;
use kiln_ir::interp::{allclose, Value};
use kiln_ir::{BinaryOp, CompareOp, DType, Literal, ReduceOp, UnaryOp};
use kiln_passes::kernel::{
    execute, Access, Buffer, BufferId, Instr, KOp, Kernel, MatMulStep, MatOperand, Role, Schedule, Step,
    Store,
};

/// A schedule under construction.
#[derive(Default)]
pub struct Sb {
    pub s: Schedule,
}

impl Sb {
    pub fn new() -> Sb {
        Sb::default()
    }

    fn buffer(&mut self, dtype: DType, numel: usize, role: Role) -> BufferId {
        self.s.buffers.push(Buffer { dtype, numel, role, arena_offset: None });
        self.s.buffers.len() - 1
    }

    pub fn input(&mut self, dtype: DType, numel: usize) -> BufferId {
        let k = self.s.inputs.len();
        let b = self.buffer(dtype, numel, Role::Input(k));
        self.s.inputs.push(b);
        b
    }

    pub fn constant(&mut self, lit: Literal) -> BufferId {
        let (dt, n) = (lit.dtype(), lit.len());
        self.buffer(dt, n, Role::Constant(lit))
    }

    pub fn computed(&mut self, dtype: DType, numel: usize) -> BufferId {
        self.buffer(dtype, numel, Role::Computed)
    }

    pub fn kernel(&mut self, k: Kb) -> &mut Self {
        self.s.steps.push(Step::Kernel(k.k));
        self
    }

    pub fn matmul(&mut self, mm: MatMulStep) -> &mut Self {
        self.s.steps.push(Step::MatMul(mm));
        self
    }

    pub fn output(&mut self, b: BufferId, shape: &[usize]) -> &mut Self {
        self.s.outputs.push((b, shape.to_vec()));
        self
    }

    /// Places every computed buffer in an arena, one after the other (aligned to 64 bytes).
    pub fn plan_arena(&mut self) -> &mut Self {
        let mut off = 0;
        for b in &mut self.s.buffers {
            if b.role == Role::Computed {
                b.arena_offset = Some(off);
                off += b.bytes().next_multiple_of(64);
            }
        }
        self.s.arena_bytes = off;
        self
    }
}

pub fn acc(offset: i64, strides: &[i64]) -> Access {
    Access { offset, strides: strides.to_vec() }
}

/// A kernel under construction.
pub struct Kb {
    pub k: Kernel,
}

impl Kb {
    pub fn new(name: &str, domain: &[usize], reduce_axes: &[usize]) -> Kb {
        Kb {
            k: Kernel {
                name: name.into(),
                domain: domain.to_vec(),
                reduce_axes: reduce_axes.to_vec(),
                instrs: vec![],
                stores: vec![],
            },
        }
    }

    fn push(&mut self, op: KOp, dtype: DType) -> usize {
        self.k.instrs.push(Instr { op, dtype });
        self.k.instrs.len() - 1
    }

    fn dt(&self, v: usize) -> DType {
        self.k.instrs[v].dtype
    }

    pub fn load(&mut self, buffer: BufferId, dtype: DType, offset: i64, strides: &[i64]) -> usize {
        self.push(KOp::Load { buffer, access: acc(offset, strides) }, dtype)
    }

    /// Contiguous load of a buffer shaped like the domain.
    pub fn load_c(&mut self, buffer: BufferId, dtype: DType) -> usize {
        let a = Access::contiguous(&self.k.domain);
        self.push(KOp::Load { buffer, access: a }, dtype)
    }

    pub fn c(&mut self, v: f64, dtype: DType) -> usize {
        self.push(KOp::Const(v), dtype)
    }

    pub fn un(&mut self, op: UnaryOp, a: usize) -> usize {
        let dt = self.dt(a);
        self.push(KOp::Unary(op, a), dt)
    }

    pub fn bin(&mut self, op: BinaryOp, a: usize, b: usize) -> usize {
        let dt = self.dt(a);
        self.push(KOp::Binary(op, a, b), dt)
    }

    pub fn cmp(&mut self, op: CompareOp, a: usize, b: usize) -> usize {
        self.push(KOp::Compare(op, a, b), DType::Bool)
    }

    pub fn wh(&mut self, c: usize, a: usize, b: usize) -> usize {
        let dt = self.dt(a);
        self.push(KOp::Where(c, a, b), dt)
    }

    pub fn cast(&mut self, a: usize, dtype: DType) -> usize {
        self.push(KOp::Cast(a), dtype)
    }

    pub fn reduce(&mut self, op: ReduceOp, a: usize) -> usize {
        let dt = self.dt(a);
        self.push(KOp::Reduce(op, a), dt)
    }

    pub fn store(&mut self, buffer: BufferId, value: usize, offset: i64, strides: &[i64]) -> &mut Self {
        self.k.stores.push(Store { buffer, value, access: acc(offset, strides) });
        self
    }

    /// Contiguous store into a buffer shaped like the domain.
    pub fn store_c(&mut self, buffer: BufferId, value: usize) -> &mut Self {
        let a = Access::contiguous(&self.k.domain);
        self.k.stores.push(Store { buffer, value, access: a });
        self
    }
}

pub fn matmul(
    name: &str,
    dtype: DType,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
    a: (BufferId, Access),
    b: (BufferId, Access),
    out: BufferId,
) -> MatMulStep {
    MatMulStep {
        name: name.into(),
        dtype,
        batch: batch.to_vec(),
        m,
        k,
        n,
        a: MatOperand { buffer: a.0, access: a.1 },
        b: MatOperand { buffer: b.0, access: b.1 },
        out,
    }
}

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Pseudo-random values for a buffer: floats in [-3, 3), i64 in [-9, 9], bools.
pub fn random_value(dtype: DType, numel: usize, seed: u64) -> Value {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let data: Vec<f64> = (0..numel)
        .map(|_| match dtype {
            DType::F32 | DType::F64 => r.uniform(-3.0, 3.0),
            DType::I64 => (r.next() % 19) as f64 - 9.0,
            DType::Bool => (r.next() % 2) as f64,
        })
        .collect();
    Value::from_f64(dtype, [numel], &data).expect("shaped")
}

/// Random inputs for every input buffer of `s`.
pub fn random_inputs(s: &Schedule, seed: u64) -> Vec<Value> {
    s.inputs
        .iter()
        .enumerate()
        .map(|(k, &b)| random_value(s.buffers[b].dtype, s.buffers[b].numel, seed + k as u64))
        .collect()
}

/// Compiles `s`, runs it twice on `inputs` and compares both runs with the reference executor.
pub fn check_with(s: &Schedule, inputs: &[Value], rtol: f64, atol: f64) -> cpu::CpuExecutable {
    let exe = match cpu::compile(s) {
        Ok(e) => e,
        Err(e) => panic!("compile failed: {e}\n{s}"),
    };
    let want = execute(s, inputs).unwrap_or_else(|e| panic!("reference failed: {e}\n{s}"));
    for run in 0..2 {
        let got = exe.run(inputs).unwrap_or_else(|e| panic!("run failed: {e}\n{s}"));
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if !allclose(g, w, rtol, atol) {
                let gv = g.to_f64_vec();
                let wv = w.to_f64_vec();
                let bad: Vec<String> = gv
                    .iter()
                    .zip(&wv)
                    .enumerate()
                    .filter(|(_, (a, b))| {
                        !(a == b || (a.is_nan() && b.is_nan()) || (*a - *b).abs() <= atol + rtol * b.abs())
                    })
                    .take(8)
                    .map(|(j, (a, b))| format!("[{j}] got {a} want {b}"))
                    .collect();
                panic!(
                    "output {i} differs on run {run} (dtype {} / {}, shape {} / {}): {}\n{s}\nCLIF:\n{}",
                    g.dtype(),
                    w.dtype(),
                    g.shape(),
                    w.shape(),
                    bad.join(", "),
                    exe.clif().iter().map(|(n, c)| format!("== {n}\n{c}")).collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    exe
}

/// Like [`check_with`] on random inputs, with tight tolerances (elementwise).
pub fn check(s: &Schedule) -> cpu::CpuExecutable {
    let inputs = random_inputs(s, 7);
    check_with(s, &inputs, 1e-6, 1e-6)
}
