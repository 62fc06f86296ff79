//! The CUDA backend's runtime (cargo feature `cuda`): runs a [`Schedule`] on a GPU through
//! `cudarc`.
//!
//! - **Loading.** The driver, NVRTC and cuBLAS are shared libraries loaded at run time
//!   (`dynamic-loading`), so kiln builds without the CUDA toolkit. [`Cuda::new`] first checks that
//!   each library is present and that the device exists, and returns
//!   [`CudaError::Unavailable`] otherwise (cudarc itself panics when asked for a context without
//!   a driver).
//! - **Compiling.** A graph goes through the standard pass pipeline; its schedule is emitted as
//!   one CUDA C module ([`super::emit`]) and compiled by NVRTC for the device's architecture
//!   with `--fmad=false` (the device math needs its multiply-adds exactly as written) and exact
//!   division and square root. Modules are cached by the graph's structural key.
//! - **Running.** Computed buffers live in one device arena laid out exactly as the memory plan
//!   placed them (`Buffer::arena_offset`); inputs are copied to buffers of their own, constants
//!   are uploaded once per compiled module. Steps run in order on one stream: kernels with their
//!   launch configuration, matrix products as `cublas{S,D}gemmStridedBatched`. Outputs are
//!   copied back after one synchronisation; the kernels' status word turns integer division by
//!   zero and negative integer powers into the interpreter's errors.

use super::emit::{emit_schedule, CudaProgram, CudaStep, Gemm};
use super::{CudaError, Result};
use crate::Backend;
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use kiln_ir::interp::Value;
use kiln_ir::{DType, Graph, Literal, Shape};
use kiln_passes::kernel::{Role, Schedule};
use kiln_passes::pipeline::{compile, PipelineOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Whether the CUDA driver library can be loaded on this machine (no device is touched).
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Number of CUDA devices, or why there are none usable.
pub fn device_count() -> Result<usize> {
    if !driver_present() {
        return Err(CudaError::Unavailable("no CUDA driver (libcuda) found on this machine".into()));
    }
    CudaContext::device_count()
        .map(|n| n.max(0) as usize)
        .map_err(|e| CudaError::Unavailable(format!("the CUDA driver reports no device: {e}")))
}

/// One compiled graph: its schedule, the program, the loaded functions and the constants.
struct Compiled {
    schedule: Schedule,
    program: CudaProgram,
    _module: Arc<CudaModule>,
    /// The function of each kernel step (`None` for cuBLAS steps).
    funcs: Vec<Option<CudaFunction>>,
    /// Uploaded constant buffers, by buffer id.
    constants: HashMap<usize, CudaSlice<u8>>,
}

struct State {
    cache: HashMap<u64, Arc<Compiled>>,
}

/// The CUDA backend for one device.
pub struct Cuda {
    ordinal: usize,
    /// `cuda:N`, as `KILN_BACKEND` spells this device.
    name: &'static str,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    arch: String,
    state: Mutex<State>,
}

fn drv<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> CudaError + '_ {
    move |e| CudaError::Driver(format!("{what}: {e}"))
}

impl Cuda {
    /// The backend on device `ordinal`, or [`CudaError::Unavailable`] saying what is missing
    /// (driver, NVRTC, cuBLAS, the device).
    pub fn new(ordinal: usize) -> Result<Cuda> {
        let n = device_count()?;
        if ordinal >= n {
            return Err(CudaError::Unavailable(format!(
                "CUDA device {ordinal} does not exist ({n} device{} found)",
                if n == 1 { "" } else { "s" }
            )));
        }
        // SAFETY: only try to open the shared libraries.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(CudaError::Unavailable(
                "NVRTC (libnvrtc) was not found: install the CUDA runtime".into(),
            ));
        }
        if !unsafe { blas_sys::is_culib_present() } {
            return Err(CudaError::Unavailable(
                "cuBLAS (libcublas) was not found: install the CUDA runtime".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(drv("creating the CUDA context"))?;
        let (major, minor) = ctx.compute_capability().map_err(drv("reading the compute capability"))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(drv("creating the cuBLAS handle"))?;
        Ok(Cuda {
            ordinal,
            // One short string per device object (created once per device by `cuda`).
            name: Box::leak(format!("cuda:{ordinal}").into_boxed_str()),
            ctx,
            stream,
            blas,
            arch: format!("compute_{major}{minor}"),
            state: Mutex::new(State { cache: HashMap::new() }),
        })
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Compiled graphs held by the cache.
    pub fn cached(&self) -> usize {
        self.state.lock().map(|s| s.cache.len()).unwrap_or(0)
    }

    /// Compiles and runs a schedule built without the pass pipeline (not cached).
    pub fn run_schedule(&self, schedule: Schedule, inputs: &[Value]) -> Result<Vec<Value>> {
        let c = self.build(schedule)?;
        let refs: Vec<&Value> = inputs.iter().collect();
        self.execute(&c, &refs)
    }

    fn compiled(&self, key: u64, g: &Graph) -> Result<Arc<Compiled>> {
        if let Some(c) = self.state.lock().expect("cuda state").cache.get(&key) {
            return Ok(c.clone());
        }
        let schedule =
            compile(g, &PipelineOptions::default()).map_err(|e| CudaError::Schedule(e.to_string()))?.schedule;
        let c = Arc::new(self.build(schedule)?);
        self.state.lock().expect("cuda state").cache.insert(key, c.clone());
        Ok(c)
    }

    fn build(&self, schedule: Schedule) -> Result<Compiled> {
        let program = emit_schedule(&schedule, "k")?;
        let opts = CompileOptions {
            fmad: Some(false),
            prec_div: Some(true),
            prec_sqrt: Some(true),
            ftz: Some(false),
            options: vec![format!("--gpu-architecture={}", self.arch)],
            name: Some("kiln.cu".into()),
            ..CompileOptions::default()
        };
        let ptx = compile_ptx_with_opts(program.source(), opts)
            .map_err(|e| CudaError::Driver(format!("NVRTC could not compile the kernels: {e}")))?;
        let module = self.ctx.load_module(ptx).map_err(drv("loading the PTX module"))?;
        let funcs = program
            .steps
            .iter()
            .map(|st| match st {
                CudaStep::Kernel(k) => {
                    module.load_function(&k.name).map(Some).map_err(drv("loading a kernel"))
                }
                CudaStep::Gemm(_) => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut constants = HashMap::new();
        for (i, b) in schedule.buffers.iter().enumerate() {
            if let Role::Constant(lit) = &b.role {
                let bytes = literal_bytes(lit);
                let d = self.stream.memcpy_stod(&nonempty(bytes)).map_err(drv("uploading a constant"))?;
                constants.insert(i, d);
            }
        }
        Ok(Compiled { schedule, program, _module: module, funcs, constants })
    }

    /// Runs a compiled graph on `inputs`.
    fn execute(&self, c: &Compiled, inputs: &[&Value]) -> Result<Vec<Value>> {
        let s = &c.schedule;
        if inputs.len() != s.inputs.len() {
            return Err(CudaError::Input(format!(
                "the graph takes {} inputs, got {}",
                s.inputs.len(),
                inputs.len()
            )));
        }
        let st = &self.stream;
        let arena: CudaSlice<u8> =
            st.alloc_zeros(s.arena_bytes.max(1)).map_err(drv("allocating the arena"))?;
        let status: CudaSlice<u32> = st.alloc_zeros(1).map_err(drv("allocating the status word"))?;
        // Buffers outside the arena: inputs, and computed buffers the plan did not place.
        let mut own: HashMap<usize, CudaSlice<u8>> = HashMap::new();
        for (k, v) in inputs.iter().enumerate() {
            let b = s.inputs[k];
            let buf = &s.buffers[b];
            if v.dtype() != buf.dtype || v.shape().numel() != buf.numel {
                return Err(CudaError::Input(format!(
                    "input {k} is {}{:?}, the graph expects {} with {} elements",
                    v.dtype(),
                    v.shape().0,
                    buf.dtype,
                    buf.numel
                )));
            }
            own.insert(b, st.memcpy_stod(&nonempty(value_bytes(v))).map_err(drv("copying an input"))?);
        }
        for (i, b) in s.buffers.iter().enumerate() {
            if matches!(b.role, Role::Computed) && b.arena_offset.is_none() {
                own.insert(i, st.alloc_zeros(b.bytes().max(1)).map_err(drv("allocating a buffer"))?);
            }
        }
        let (arena_ptr, _g) = arena.device_ptr(st);
        let (status_ptr, _gs) = status.device_ptr(st);
        let mut ptrs: Vec<u64> = Vec::with_capacity(s.buffers.len());
        for (i, b) in s.buffers.iter().enumerate() {
            let p = if let Some(d) = own.get(&i).or_else(|| c.constants.get(&i)) {
                d.device_ptr(st).0
            } else {
                arena_ptr + b.arena_offset.unwrap_or(0) as u64
            };
            ptrs.push(p);
        }
        for (si, step) in c.program.steps.iter().enumerate() {
            match step {
                CudaStep::Kernel(k) => {
                    let f = c.funcs[si].as_ref().expect("a kernel step has a function");
                    let mut args: Vec<u64> = k.params.iter().map(|&b| ptrs[b]).collect();
                    if k.status {
                        args.push(status_ptr);
                    }
                    let mut launch = st.launch_builder(f);
                    for a in &args {
                        launch.arg(a);
                    }
                    let cfg = LaunchConfig {
                        grid_dim: (k.launch.grid, 1, 1),
                        block_dim: (k.launch.block, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    // SAFETY: the kernel's parameters are the device pointers of the buffers it
                    // was emitted for (plus the status word), every access of it is inside its
                    // buffer (`Schedule::verify`), and every buffer is allocated at its size.
                    unsafe { launch.launch(cfg) }.map_err(drv("launching a kernel"))?;
                }
                CudaStep::Gemm(gm) => self.gemm(gm, &ptrs)?,
            }
        }
        st.synchronize().map_err(drv("running the kernels"))?;
        let flags = st.memcpy_dtov(&status).map_err(drv("reading the status word"))?[0];
        if flags & 1 != 0 {
            return Err(CudaError::Kernel("integer division by zero".into()));
        }
        if flags & 2 != 0 {
            return Err(CudaError::Kernel("integer power with a negative exponent is not defined".into()));
        }
        let mut outs = vec![];
        for (b, shape) in &s.outputs {
            let buf = &s.buffers[*b];
            let bytes = if buf.numel == 0 {
                vec![]
            } else if let Some(d) = own.get(b).or_else(|| c.constants.get(b)) {
                st.memcpy_dtov(&d.slice(0..buf.bytes())).map_err(drv("copying an output"))?
            } else {
                let off = buf.arena_offset.unwrap_or(0);
                st.memcpy_dtov(&arena.slice(off..off + buf.bytes())).map_err(drv("copying an output"))?
            };
            outs.push(value_from_bytes(buf.dtype, &bytes, shape));
        }
        Ok(outs)
    }

    fn gemm(&self, g: &Gemm, ptrs: &[u64]) -> Result<()> {
        let int = |v: usize, what: &str| {
            i32::try_from(v).map_err(|_| {
                CudaError::Unsupported(format!("{}: {what} = {v} exceeds cuBLAS's 32-bit sizes", g.ir_name))
            })
        };
        let (m, n, k) = (int(g.m, "m")?, int(g.n, "n")?, int(g.k, "k")?);
        let (lda, ldb, ldc) = (int(g.lda, "lda")?, int(g.ldb, "ldb")?, int(g.ldc, "ldc")?);
        let batch = int(g.batch, "batch")?;
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let size = g.dtype.size_bytes() as u64;
        for &(oa, ob, oc) in &g.calls {
            let a = ptrs[g.a] + oa as u64 * size;
            let b = ptrs[g.b] + ob as u64 * size;
            let c = ptrs[g.c] + oc as u64 * size;
            // SAFETY: the operands' extents and strides were verified inside their buffers
            // (`Schedule::verify`), and `plan_gemm` only emits layouts cuBLAS addresses exactly.
            let r = unsafe {
                match g.dtype {
                    DType::F32 => blas::sgemm_strided_batched(
                        *self.blas.handle(),
                        op(g.trans_a),
                        op(g.trans_b),
                        m,
                        n,
                        k,
                        &1.0f32,
                        a as *const f32,
                        lda,
                        g.stride_a,
                        b as *const f32,
                        ldb,
                        g.stride_b,
                        &0.0f32,
                        c as *mut f32,
                        ldc,
                        g.stride_c,
                        batch,
                    ),
                    DType::F64 => blas::dgemm_strided_batched(
                        *self.blas.handle(),
                        op(g.trans_a),
                        op(g.trans_b),
                        m,
                        n,
                        k,
                        &1.0f64,
                        a as *const f64,
                        lda,
                        g.stride_a,
                        b as *const f64,
                        ldb,
                        g.stride_b,
                        &0.0f64,
                        c as *mut f64,
                        ldc,
                        g.stride_c,
                        batch,
                    ),
                    other => {
                        return Err(CudaError::Unsupported(format!(
                            "{}: cuBLAS product of {other}",
                            g.ir_name
                        )))
                    }
                }
            };
            r.map_err(drv("cuBLAS gemm"))?;
        }
        Ok(())
    }
}

/// cudarc allocations must not be empty.
fn nonempty(mut v: Vec<u8>) -> Vec<u8> {
    if v.is_empty() {
        v.push(0);
    }
    v
}

fn literal_bytes(l: &Literal) -> Vec<u8> {
    match l {
        Literal::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Literal::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Literal::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Literal::Bool(v) => v.iter().map(|&b| b as u8).collect(),
    }
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::F32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::F64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::I64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::Bool(a) => a.iter().map(|&b| b as u8).collect(),
    }
}

fn value_from_bytes(dt: DType, bytes: &[u8], shape: &[usize]) -> Value {
    let lit = match dt {
        DType::F32 => Literal::F32(
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect(),
        ),
        DType::F64 => Literal::F64(
            bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect(),
        ),
        DType::I64 => Literal::I64(
            bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect(),
        ),
        DType::Bool => Literal::Bool(bytes.iter().map(|&b| b != 0).collect()),
    };
    Value::from_literal(&lit, &Shape::from(shape.to_vec())).expect("sized by the schedule")
}

impl Backend for Cuda {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self, g: &Graph, inputs: &[Value]) -> kiln_ir::Result<Vec<Value>> {
        let c = self.compiled(g.structural_hash(), g)?;
        let refs: Vec<&Value> = inputs.iter().collect();
        Ok(self.execute(&c, &refs)?)
    }

    fn run_keyed(&self, key: u64, g: &Graph, inputs: &[Arc<Value>]) -> kiln_ir::Result<Vec<Value>> {
        let c = self.compiled(key, g)?;
        let refs: Vec<&Value> = inputs.iter().map(|v| v.as_ref()).collect();
        Ok(self.execute(&c, &refs)?)
    }
}

/// The process-wide backend of device `ordinal` (created on first use; an error is returned
/// again on every call, never a panic).
pub fn cuda(ordinal: usize) -> Result<&'static Cuda> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, &'static Cuda>>> = OnceLock::new();
    let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut m = map.lock().expect("cuda devices");
    if let Some(c) = m.get(&ordinal) {
        return Ok(c);
    }
    // One leaked backend per device, created once: the `Backend` registry hands out statics.
    let c: &'static Cuda = Box::leak(Box::new(Cuda::new(ordinal)?));
    m.insert(ordinal, c);
    Ok(c)
}
