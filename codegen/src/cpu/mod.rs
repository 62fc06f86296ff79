//! The Cranelift CPU backend: compiles a kernel [`Schedule`] to native code.
//!
//! ```text
//! Schedule ──verify──▶ plan (per kernel: normalise loops, pick the SIMD axis, hazards)
//!          ──emit────▶ one Cranelift function per kernel (pass)  ──▶ CpuExecutable
//! ```
//!
//! [`compile`] verifies the schedule, plans memory and every step, and JIT-compiles one function
//! per kernel; [`CpuExecutable::run`] binds the inputs (zero-copy when it can, see Memory), runs the
//! steps in order (kernels split over the thread pool, matrix products through `gemm`),
//! and hands the outputs over (again zero-copy when it can).
//!
//! ## Memory
//! - `Role::Computed` buffers live in one arena per workspace when the planner gave them
//!   `arena_offset`s (sized by `arena_bytes`), otherwise in one allocation each. Buffers are kept
//!   across runs, so repeated runs do not fault fresh pages.
//! - Constants are materialised once, at compile time, and shared by all runs.
//! - Every buffer's base pointer for the current run is `Workspace::bases[b]`, and the kernels
//!   see it through their pointer tables; both normally point at the buffer's home.
//! - Zero-copy inputs: an input buffer that no step writes, listed once in `Schedule::inputs`
//!   and living in its own allocation, is *bound* for the run to the caller's memory when the
//!   value is standard-layout and aligned to its element size (bool values are one byte 0/1,
//!   the kernels' representation). Other inputs are copied into their home.
//! - Zero-copy outputs: a `Role::Computed` f32/f64/i64 output, listed once, not an input, with a
//!   writing step, is bound for the run to a fresh `Vec` from [`crate::recycle::take`], which then
//!   becomes the output value. Its arena range (if any) stays unused for the run, so this is done
//!   only when no other buffer's data reaches it through shared memory: every buffer overlapping
//!   it in the arena is not an output, is touched by no step after the output's first writer, and
//!   is not stored by that writer (so the in-place case, an output written over a victim that dies
//!   in the same step, qualifies: the victim's loads already read its own values). The vector is
//!   zeroed first when some step loads the output at or before its first writer; otherwise the
//!   first writer either writes every element or is preceded by the zeroing below, so no
//!   uninitialised element is read or handed out. Bool and other outputs are copied out.
//! - Bindings are undone (bases and tables pointed back at the homes) before a run returns, so a
//!   workspace at rest only holds pointers into its own memory and the executable's constants.
//! - A buffer that no single step writes entirely is zeroed before its first writer (the
//!   reference executor's buffers start at zero), so partial writes read like the reference.
//!
//! ## Concurrency
//! `CpuExecutable` is `Send + Sync`. Its mutable state (buffers and pointer tables) is a
//! *workspace*; the executable keeps a stack of them behind a `Mutex`. A run pops one (or creates
//! one when all are in use by concurrent runs), runs without holding the lock, and pushes it
//! back: concurrent runs never share buffers, and the number of workspaces is the largest number
//! of concurrent runs seen. Kernels and products use the process-wide pool ([`pool`]); a run
//! that finds the pool busy runs its tasks on its own thread.
//!
//! ## Safety
//! Generated code and `gemm` take raw pointers. The invariants that make that sound:
//! 1. the schedule passes `Schedule::verify` (every load and store lies inside its buffer over
//!    the kernel's whole domain; operands of products too) before anything is compiled, and
//!    `plan` re-checks what verify does not (outer stores over the outer domain, dtypes);
//! 2. every buffer is allocated with exactly `numel · size` bytes (arena offsets are checked to
//!    fit `arena_bytes` and to be aligned to the element size);
//! 3. inputs are checked for dtype and element count before they are copied in or bound; a bound
//!    input is only read (no step stores into it, checked when compiling) and outlives the run;
//!    a bound output vector has capacity for `numel` elements and is given its length only after
//!    every step ran without error;
//! 4. a kernel that reads memory it also writes (same buffer or overlapping arena ranges) reads
//!    a snapshot copy unless every such load hits exactly the address its point writes;
//! 5. a kernel is split over threads only when its stores are provably injective and stores to
//!    the same memory are identical or disjoint (otherwise it runs serially, or store by store),
//!    so threads never write the same element.
//!
//! Unsafe code lives in `AlignedBuf` (allocation), `jit` (function pointers), `pool` (lifetime
//! erasure of the task closure), `matmul` (the library call) and the kernel call below.

mod emit;
mod jit;
pub(crate) mod math;
mod matmul;
pub(crate) mod plan;
pub mod pool;
mod split;

use jit::{Code, Jit, KernelFn};
use kiln_ir::interp::Value;
use kiln_ir::{DType, Literal};
use kiln_passes::kernel::{Access, BufferId, KOp, Kernel, Role, Schedule, Step};
use matmul::MatMulPlan;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors of the CPU backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CpuError {
    /// The schedule does not verify.
    #[error("cpu: invalid schedule: {0}")]
    Schedule(String),
    /// The schedule uses something this backend does not compile (an ill-typed op, a matrix
    /// product of integers, ...).
    #[error("cpu: unsupported: {0}")]
    Unsupported(String),
    /// Cranelift failed (a backend bug).
    #[error("cpu: code generation failed: {0}")]
    Jit(String),
    /// `run` was given inputs that do not match the schedule.
    #[error("cpu: {0}")]
    Input(String),
    /// A kernel reported an error while running (integer division by zero, ...).
    #[error("cpu: {0}")]
    Runtime(String),
    /// A broken invariant inside the backend (a bug).
    #[error("cpu: internal error: {0}")]
    Internal(String),
}

impl From<CpuError> for kiln_ir::Error {
    fn from(e: CpuError) -> kiln_ir::Error {
        kiln_ir::Error::Interp(e.to_string())
    }
}

pub type Result<T, E = CpuError> = std::result::Result<T, E>;

/// Wall time of each phase of one run: `"copy in"`, each step by name, `"copy out"`.
pub type Profile = Vec<(String, Duration)>;

/// Compile-time figures of one executable.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    /// Per compiled function: its name and the time to build and compile it.
    pub kernels: Vec<(String, Duration)>,
    /// The whole `compile` call (planning, code generation, finalisation, constants).
    pub total: Duration,
}

// ----- memory -----------------------------------------------------------------------------------

/// A zero-initialised, 64-byte-aligned heap allocation of `len` bytes.
struct AlignedBuf {
    /// 64-byte aligned start of the usable bytes.
    ptr: *mut u8,
    len: usize,
    /// What the allocator returned (`ptr` is `base` rounded up to `ALIGN`).
    base: *mut u8,
}

// SAFETY: `AlignedBuf` uniquely owns its allocation; moving it between threads is fine, and
// shared access only reads through `as_ptr`.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    const ALIGN: usize = 64;
    /// Allocated with the allocator's natural alignment and rounded up by hand: with this
    /// alignment `alloc_zeroed` is `calloc`, which hands out fresh zero pages without touching
    /// them (an over-aligned request is allocated and then memset, touching every page twice).
    const BASE_ALIGN: usize = 16;

    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len + Self::ALIGN, Self::BASE_ALIGN)
            .expect("buffer size overflows")
    }

    fn zeroed(len: usize) -> AlignedBuf {
        if len == 0 {
            // Dangling but aligned for every element type; never dereferenced.
            let p = std::ptr::without_provenance_mut(Self::ALIGN);
            return AlignedBuf { ptr: p, len: 0, base: p };
        }
        let layout = Self::layout(len);
        // SAFETY: the layout has a nonzero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        if base.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: at most ALIGN - 1 bytes past `base`, and `len` more bytes remain after it.
        let ptr = unsafe { base.add(base.align_offset(Self::ALIGN)) };
        AlignedBuf { ptr, len, base }
    }

    fn from_bytes(bytes: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(bytes.len());
        b.bytes_mut().copy_from_slice(bytes);
        b
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is valid for `len` bytes (or dangling with len 0) and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `base` was allocated in `zeroed` with this layout.
            unsafe { std::alloc::dealloc(self.base, Self::layout(self.len)) };
        }
    }
}

/// Little-endian bytes of a literal as a buffer stores them (bool: one byte 0/1).
fn literal_bytes(l: &Literal) -> Vec<u8> {
    match l {
        Literal::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Literal::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Literal::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Literal::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
    }
}

/// Where a buffer lives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Home {
    /// Shared constant `i` of the executable (read-only).
    Const(usize),
    /// Byte offset in the workspace arena.
    Arena(usize),
    /// Allocation `i` of the workspace (inputs, unplanned buffers, written constants).
    Own(usize),
}

/// One kernel function and how to launch it.
struct Pass {
    f: KernelFn,
    units: u64,
    unit_work: u64,
    parallel: bool,
    /// Index of this pass's pointer table in the workspace.
    table: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Buf(BufferId),
    /// A snapshot copy (index into `Launch::snapshots`).
    Snap(usize),
}

enum Work {
    Kernel(Vec<Pass>),
    MatMul { plan: MatMulPlan, a: Slot, b: Slot, out: BufferId },
}

struct Launch {
    name: String,
    /// Buffers zeroed before this step (first written here, not entirely).
    zero: Vec<BufferId>,
    /// Buffers copied before this step, and the workspace scratch index of each copy.
    snapshots: Vec<(BufferId, usize)>,
    work: Work,
}

/// Per-run mutable state: buffers and the kernels' pointer tables.
struct Workspace {
    arena: AlignedBuf,
    own: Vec<AlignedBuf>,
    scratch: Vec<AlignedBuf>,
    /// Per buffer: its base pointer for the current run (its home unless bound).
    bases: Vec<*mut u8>,
    /// Per pass: the slot pointers handed to the kernel function.
    tables: Vec<Vec<*mut u8>>,
}

// SAFETY: a workspace owns its allocations; the raw pointers in `bases` and `tables` point into
// them (or into the executable's constants, which outlive every workspace) and move with them.
// During a run some point at the caller's inputs or the run's output vectors; the run undoes
// that before it returns, and a workspace is used by one run at a time.
unsafe impl Send for Workspace {}

/// A compiled schedule. See the module docs for memory, threading and safety.
pub struct CpuExecutable {
    buffers: Vec<(DType, usize)>,
    homes: Vec<Home>,
    inputs: Vec<BufferId>,
    outputs: Vec<(BufferId, Vec<usize>)>,
    /// Per input position: whether the value may be bound in place (see the module docs).
    zc_inputs: Vec<bool>,
    /// Per output position: `Some(zero first)` when the buffer is written into the output vector.
    zc_outputs: Vec<Option<bool>>,
    /// Per buffer that may be bound: the `(table, slot)` positions holding its pointer.
    sites: Vec<Vec<(usize, usize)>>,
    /// Constant buffers written by some step: refilled from the literal at the start of each run.
    refill: Vec<(BufferId, Vec<u8>)>,
    consts: Vec<AlignedBuf>,
    arena_bytes: usize,
    own_sizes: Vec<usize>,
    scratch_sizes: Vec<usize>,
    /// Per pass table: the slots it holds, and which launch's snapshots it refers to.
    table_slots: Vec<(Vec<Slot>, usize)>,
    launches: Vec<Launch>,
    workspaces: Mutex<Vec<Workspace>>,
    clif: Vec<(String, String)>,
    disasm: Vec<(String, String)>,
    stats: CompileStats,
    /// Last field: dropped after `launches` (which hold pointers into it).
    _code: Code,
}

/// Elements of a kernel's work below which it is not split over threads.
const GRAIN: u64 = 32 * 1024;

// ----- compile ----------------------------------------------------------------------------------

/// Byte range `[lo, hi)` touched by an access over `shape` in memory starting at `base`.
fn byte_range(base: usize, a: &Access, shape: &[usize], size: usize) -> Option<(usize, usize)> {
    let (lo, hi) = a.range(shape)?;
    Some((base + lo as usize * size, base + (hi as usize + 1) * size))
}

struct MemMap<'a> {
    s: &'a Schedule,
    homes: &'a [Home],
}

impl MemMap<'_> {
    /// A key for the memory a buffer starts at: (arena?, offset or id).
    fn base(&self, b: BufferId) -> (u8, usize) {
        match self.homes[b] {
            Home::Arena(o) => (0, o),
            Home::Own(i) => (1, i),
            Home::Const(i) => (2, i),
        }
    }

    fn extent(&self, b: BufferId) -> (u8, usize, usize) {
        let (k, o) = self.base(b);
        match self.homes[b] {
            Home::Arena(o) => (0, o, o + self.s.buffers[b].bytes()),
            _ => (k, o, o + 1),
        }
    }

    /// Whether two buffers may share memory.
    fn alias(&self, a: BufferId, b: BufferId) -> bool {
        let (ka, la, ha) = self.extent(a);
        let (kb, lb, hb) = self.extent(b);
        ka == kb && la < hb && lb < ha
    }

    /// Whether two accesses (buffer, access, shape) never touch the same byte: different
    /// memory, disjoint byte ranges, or the same lattice of elements shifted by an offset the
    /// lattice cannot reach (the pieces of a concatenation).
    fn disjoint(
        &self,
        (b1, a1, s1): (BufferId, &Access, &[usize]),
        (b2, a2, s2): (BufferId, &Access, &[usize]),
    ) -> bool {
        if !self.alias(b1, b2) {
            return true;
        }
        let (Some((_, l1, h1)), Some((_, l2, h2))) = (self.touched(b1, a1, s1), self.touched(b2, a2, s2))
        else {
            return true; // an empty access
        };
        if h1 <= l2 || h2 <= l1 {
            return true;
        }
        let size = self.s.buffers[b1].dtype.size_bytes();
        if size != self.s.buffers[b2].dtype.size_bytes() || a1.strides != a2.strides || s1 != s2 {
            return false;
        }
        let base = |b: BufferId| match self.homes[b] {
            Home::Arena(o) => o as i64,
            _ => 0,
        };
        let db = base(b2) - base(b1);
        if db % size as i64 != 0 {
            return false;
        }
        let delta = a2.offset - a1.offset + db / size as i64;
        !lattice_reaches(delta, &a1.strides, s1)
    }

    /// Absolute byte range an access touches over `shape` (in its memory space).
    fn touched(&self, b: BufferId, a: &Access, shape: &[usize]) -> Option<(u8, usize, usize)> {
        let (k, o) = self.base(b);
        let base = if k == 0 { o } else { 0 };
        let size = self.s.buffers[b].dtype.size_bytes();
        byte_range(base, a, shape, size).map(|(lo, hi)| (k, lo, hi))
    }
}

/// Whether `delta = Σ strides[d]·k[d]` for some integers `|k[d]| < shape[d]` (so that two
/// accesses with these strides and offsets `delta` apart share an element). Conservative: a
/// search that runs too long answers yes.
fn lattice_reaches(delta: i64, strides: &[i64], shape: &[usize]) -> bool {
    let mut axes: Vec<(i64, i64)> = strides
        .iter()
        .zip(shape)
        .filter(|(&st, &e)| st != 0 && e > 1)
        .map(|(&st, &e)| (st.abs(), e as i64 - 1))
        .collect();
    axes.sort_unstable_by(|a, b| b.cmp(a));
    // span[i]: the largest |Σ| the axes after i can add.
    let mut span = vec![0i64; axes.len() + 1];
    for i in (0..axes.len()).rev() {
        span[i] = span[i + 1].saturating_add(axes[i].0.saturating_mul(axes[i].1));
    }
    fn go(r: i64, i: usize, axes: &[(i64, i64)], span: &[i64], budget: &mut u32) -> bool {
        if *budget == 0 {
            return true;
        }
        *budget -= 1;
        if i == axes.len() {
            return r == 0;
        }
        if r.abs() > span[i] {
            return false;
        }
        let (s, m) = axes[i];
        // k with |r - k·s| <= span[i + 1].
        let lo = ((r - span[i + 1]) as f64 / s as f64).ceil() as i64;
        let hi = ((r + span[i + 1]) as f64 / s as f64).floor() as i64;
        (lo.max(-m)..=hi.min(m)).any(|k| go(r - k * s, i + 1, axes, span, budget))
    }
    let mut budget = 10_000;
    go(delta, 0, &axes, &span, &mut budget)
}

/// The domain a store writes over: the outer domain for values computed once per outer point.
fn store_shape(k: &Kernel, value: usize) -> Vec<usize> {
    let inner = k.inner_mask();
    let post = k.post_reduce_mask();
    if post[value] && !inner[value] {
        k.domain.iter().enumerate().map(|(d, &e)| if k.reduce_axes.contains(&d) { 1 } else { e }).collect()
    } else {
        k.domain.clone()
    }
}

/// Compiles `schedule` for this CPU, keeping each kernel's CLIF text ([`CpuExecutable::clif`]).
pub fn compile(schedule: &Schedule) -> Result<CpuExecutable> {
    compile_with(schedule, true)
}

/// [`compile`], keeping the CLIF text only if `keep_clif` (rendering it is about a quarter of the
/// instructions code generation takes, so the compile cache asks for it only while dumping).
pub fn compile_with(schedule: &Schedule, keep_clif: bool) -> Result<CpuExecutable> {
    let t0 = Instant::now();
    schedule.verify().map_err(|e| CpuError::Schedule(e.to_string()))?;
    let split = split::split_kernels(schedule, pool::threads());
    if let std::borrow::Cow::Owned(sp) = &split {
        sp.verify().map_err(|e| CpuError::Internal(format!("splitting a large kernel: {e}")))?;
    }
    let s: &Schedule = &split;
    for (k, &b) in s.inputs.iter().enumerate() {
        if b >= s.buffers.len() {
            return Err(CpuError::Schedule(format!("input {k} names buffer {b}, which does not exist")));
        }
    }
    for (b, shape) in &s.outputs {
        if *b >= s.buffers.len() || s.buffers[*b].numel != shape.iter().product::<usize>() {
            return Err(CpuError::Schedule(format!(
                "output buffer {b} does not exist or does not have {} elements",
                shape.iter().product::<usize>()
            )));
        }
    }

    // Which buffers are written, and by which step first.
    let mut written = vec![false; s.buffers.len()];
    for step in &s.steps {
        match step {
            Step::Kernel(k) => k.stores.iter().for_each(|st| written[st.buffer] = true),
            Step::MatMul(mm) => written[mm.out] = true,
        }
    }

    // Homes.
    let mut homes = Vec::with_capacity(s.buffers.len());
    let mut consts = vec![];
    let mut refill = vec![];
    let mut own_sizes = vec![];
    for (i, b) in s.buffers.iter().enumerate() {
        let size = b.dtype.size_bytes();
        let home = match (&b.role, b.arena_offset) {
            (Role::Constant(lit), _) => {
                if lit.len() != b.numel || lit.dtype() != b.dtype {
                    return Err(CpuError::Schedule(format!(
                        "constant buffer {i} holds {} {} values but is declared {}[{}]",
                        lit.len(),
                        lit.dtype(),
                        b.dtype,
                        b.numel
                    )));
                }
                if written[i] {
                    refill.push((i, literal_bytes(lit)));
                    own_sizes.push(b.bytes());
                    Home::Own(own_sizes.len() - 1)
                } else {
                    consts.push(AlignedBuf::from_bytes(&literal_bytes(lit)));
                    Home::Const(consts.len() - 1)
                }
            }
            (Role::Computed, Some(off)) => {
                if off % size != 0 || off.checked_add(b.bytes()).is_none_or(|end| end > s.arena_bytes) {
                    return Err(CpuError::Schedule(format!(
                        "buffer {i} at arena offset {off} ({} bytes) does not fit an arena of {} bytes aligned to {size}",
                        b.bytes(),
                        s.arena_bytes
                    )));
                }
                Home::Arena(off)
            }
            _ => {
                own_sizes.push(b.bytes());
                Home::Own(own_sizes.len() - 1)
            }
        };
        homes.push(home);
    }
    let uses_arena = homes.iter().any(|h| matches!(h, Home::Arena(_)));
    let arena_bytes = if uses_arena { s.arena_bytes } else { 0 };
    let mm = MemMap { s, homes: &homes };

    // Zeroing: before the first writer, unless one store (or product) covers the buffer.
    let mut first_writer: Vec<Option<usize>> = vec![None; s.buffers.len()];
    let mut covered = vec![false; s.buffers.len()];
    for (si, step) in s.steps.iter().enumerate() {
        let mut here: Vec<(BufferId, bool)> = vec![];
        match step {
            Step::Kernel(k) => {
                for st in &k.stores {
                    let shape = store_shape(k, st.value);
                    let red: Vec<bool> = (0..shape.len()).map(|_| false).collect();
                    let n: usize = shape.iter().product();
                    let full =
                        n == s.buffers[st.buffer].numel && plan::injective(&st.access.strides, &shape, &red);
                    here.push((st.buffer, full));
                }
            }
            Step::MatMul(m) => here.push((m.out, true)),
        }
        for (b, full) in here {
            if first_writer[b].is_none() {
                first_writer[b] = Some(si);
            }
            if first_writer[b] == Some(si) && full {
                covered[b] = true;
            }
        }
    }
    let mut zero_at: Vec<Vec<BufferId>> = vec![vec![]; s.steps.len()];
    let mut zero_start = vec![];
    for b in 0..s.buffers.len() {
        let fed = s.inputs.contains(&b) || matches!(s.buffers[b].role, Role::Constant(_));
        if fed || covered[b] {
            continue;
        }
        match first_writer[b] {
            Some(si) => zero_at[si].push(b),
            None => zero_start.push(b),
        }
    }

    // Zero-copy bindings (see the module docs).
    let nb = s.buffers.len();
    let mut first_load: Vec<Option<usize>> = vec![None; nb];
    let mut last_touch: Vec<Option<usize>> = vec![None; nb];
    let mut stored_at: Vec<Vec<BufferId>> = vec![vec![]; s.steps.len()];
    for (si, step) in s.steps.iter().enumerate() {
        let (loads, stores) = (step.reads(), step.writes());
        for &b in &loads {
            first_load[b].get_or_insert(si);
        }
        for &b in loads.iter().chain(&stores) {
            last_touch[b] = Some(si);
        }
        stored_at[si] = stores;
    }
    let once = |list: &mut dyn Iterator<Item = BufferId>, b: BufferId| list.filter(|&x| x == b).count() == 1;
    let output_ids: Vec<BufferId> = s.outputs.iter().map(|o| o.0).collect();
    let zc_inputs: Vec<bool> = s
        .inputs
        .iter()
        .map(|&b| {
            !written[b]
                && matches!(homes[b], Home::Own(_))
                && !matches!(s.buffers[b].role, Role::Constant(_))
                && once(&mut s.inputs.iter().copied(), b)
        })
        .collect();
    let zc_outputs: Vec<Option<bool>> = s
        .outputs
        .iter()
        .map(|&(b, _)| {
            let t = first_writer[b]?;
            let ok = s.buffers[b].role == Role::Computed
                && s.buffers[b].dtype != DType::Bool
                && !s.inputs.contains(&b)
                && once(&mut output_ids.iter().copied(), b)
                && (0..nb).all(|y| {
                    y == b
                        || !mm.alias(y, b)
                        || (!output_ids.contains(&y)
                            && last_touch[y].is_none_or(|l| l <= t)
                            && !stored_at[t].contains(&y))
                });
            ok.then_some(first_load[b].is_some_and(|l| l <= t))
        })
        .collect();

    // Plan and compile every step.
    let mut jit = Jit::new(keep_clif)?;
    let mut launches = vec![];
    let mut scratch_sizes: Vec<usize> = vec![];
    let mut table_slots: Vec<(Vec<Slot>, usize)> = vec![];
    let mut pending: Vec<(usize, usize, cranelift_module::FuncId, String)> = vec![]; // (launch, pass, id, name)
    let mut clif = vec![];
    let mut disasm = vec![];
    let mut kstats = vec![];
    let mut pass_meta: Vec<Vec<(u64, u64, bool, usize)>> = vec![];
    for (si, step) in s.steps.iter().enumerate() {
        let li = launches.len();
        match step {
            Step::Kernel(k) => {
                plan::check_types(k)?;
                check_outer_stores(s, k)?;
                let stores_of: Vec<usize> = (0..k.stores.len()).collect();
                // Stores: injective (parallel) and pairwise identical-or-disjoint (one pass).
                let inner = k.inner_mask();
                let post = k.post_reduce_mask();
                let mut parallel = true;
                for st in &k.stores {
                    let outer = post[st.value] && !inner[st.value];
                    let skip: Vec<bool> =
                        (0..k.domain.len()).map(|d| outer && k.reduce_axes.contains(&d)).collect();
                    if !plan::injective(&st.access.strides, &k.domain, &skip) {
                        parallel = false;
                    }
                }
                let mut one_pass = true;
                for (i, a) in k.stores.iter().enumerate() {
                    for c in &k.stores[i + 1..] {
                        if !mm.alias(a.buffer, c.buffer) {
                            continue;
                        }
                        let identical = mm.base(a.buffer) == mm.base(c.buffer)
                            && s.buffers[a.buffer].dtype == s.buffers[c.buffer].dtype
                            && a.access == c.access;
                        let disjoint = mm.disjoint(
                            (a.buffer, &a.access, &store_shape(k, a.value)),
                            (c.buffer, &c.access, &store_shape(k, c.value)),
                        );
                        if !identical && !disjoint {
                            one_pass = false;
                        }
                    }
                }
                // Hazards: loads of memory this kernel writes.
                let no_reduce = k.reduce_axes.is_empty();
                let mut snap_of: Vec<Option<usize>> = vec![None; s.buffers.len()];
                let mut snapshots = vec![];
                for ins in &k.instrs {
                    let KOp::Load { buffer, access } = &ins.op else { continue };
                    let b = *buffer;
                    let mut hazard = false;
                    for st in &k.stores {
                        if !mm.alias(b, st.buffer) {
                            continue;
                        }
                        // Each point reads the element it writes, before writing it: safe in one
                        // pass without reductions (a later pass or phase would read the new value).
                        let same_addr = mm.base(b) == mm.base(st.buffer)
                            && s.buffers[b].dtype.size_bytes() == s.buffers[st.buffer].dtype.size_bytes()
                            && *access == st.access
                            && no_reduce
                            && one_pass
                            && plan::injective(&st.access.strides, &k.domain, &vec![false; k.domain.len()]);
                        let disjoint = mm.disjoint(
                            (b, access, &k.domain),
                            (st.buffer, &st.access, &store_shape(k, st.value)),
                        );
                        if !same_addr && !disjoint {
                            hazard = true;
                        }
                    }
                    if hazard && snap_of[b].is_none() {
                        scratch_sizes.push(s.buffers[b].bytes());
                        snap_of[b] = Some(snapshots.len());
                        snapshots.push((b, scratch_sizes.len() - 1));
                    }
                }
                let groups: Vec<Vec<usize>> = if one_pass {
                    vec![stores_of.clone()]
                } else {
                    stores_of.iter().map(|&j| vec![j]).collect()
                };
                // Slots: every buffer the kernel touches (loads through snapshots when needed).
                let mut slots: Vec<Slot> = vec![];
                let slot_index = |sl: Slot, slots: &mut Vec<Slot>| -> usize {
                    match slots.iter().position(|&x| x == sl) {
                        Some(i) => i,
                        None => {
                            slots.push(sl);
                            slots.len() - 1
                        }
                    }
                };
                let mut load_slot = vec![usize::MAX; k.instrs.len()];
                for (i, ins) in k.instrs.iter().enumerate() {
                    if let KOp::Load { buffer, .. } = &ins.op {
                        let sl = match snap_of[*buffer] {
                            Some(j) => Slot::Snap(j),
                            None => Slot::Buf(*buffer),
                        };
                        load_slot[i] = slot_index(sl, &mut slots);
                    }
                }
                let store_slot: Vec<usize> =
                    k.stores.iter().map(|st| slot_index(Slot::Buf(st.buffer), &mut slots)).collect();
                let slot_dtypes: Vec<DType> = slots
                    .iter()
                    .map(|sl| match sl {
                        Slot::Buf(b) => s.buffers[*b].dtype,
                        Slot::Snap(j) => s.buffers[snapshots[*j].0].dtype,
                    })
                    .collect();
                let mut metas = vec![];
                for (gi, g) in groups.iter().enumerate() {
                    let name = if groups.len() == 1 { k.name.clone() } else { format!("{}#{gi}", k.name) };
                    let lk = plan::plan_kernel(
                        k,
                        name.clone(),
                        &|i| load_slot[i],
                        &|j| store_slot[j],
                        slot_dtypes.clone(),
                        g,
                    )?;
                    let Some(lk) = lk else { continue };
                    let fname = format!("k{si}_{gi}");
                    let def = jit.define_kernel(&fname, |b, module, params| {
                        emit::emit_kernel(b, module, params, &lk)
                    })?;
                    if let Some(text) = def.clif {
                        clif.push((name.clone(), text));
                    }
                    table_slots.push((slots.clone(), li));
                    pending.push((li, metas.len(), def.id, name));
                    metas.push((lk.units, lk.unit_work, parallel, table_slots.len() - 1));
                }
                pass_meta.push(metas);
                launches.push(Launch {
                    name: k.name.clone(),
                    zero: zero_at[si].clone(),
                    snapshots,
                    work: Work::Kernel(vec![]),
                });
            }
            Step::MatMul(m) => {
                if !m.dtype.is_float() {
                    return Err(CpuError::Unsupported(format!("{}: MatMul of {} values", m.name, m.dtype)));
                }
                for (what, b) in [("a", m.a.buffer), ("b", m.b.buffer), ("out", m.out)] {
                    if s.buffers[b].dtype != m.dtype {
                        return Err(CpuError::Schedule(format!(
                            "{}: operand {what} is not {}",
                            m.name, m.dtype
                        )));
                    }
                }
                let mut snapshots = vec![];
                let mut slot = |b: BufferId| {
                    if mm.alias(b, m.out) {
                        if let Some(j) = snapshots.iter().position(|&(x, _)| x == b) {
                            return Slot::Snap(j);
                        }
                        scratch_sizes.push(s.buffers[b].bytes());
                        snapshots.push((b, scratch_sizes.len() - 1));
                        Slot::Snap(snapshots.len() - 1)
                    } else {
                        Slot::Buf(b)
                    }
                };
                let (a, b) = (slot(m.a.buffer), slot(m.b.buffer));
                pass_meta.push(vec![]);
                launches.push(Launch {
                    name: m.name.clone(),
                    zero: zero_at[si].clone(),
                    snapshots,
                    work: Work::MatMul { plan: MatMulPlan::new(m), a, b, out: m.out },
                });
            }
        }
    }
    let ids: Vec<_> = pending.iter().map(|p| p.2).collect();
    let (code, fns) = jit.finish(&ids)?;
    for ((li, pi, _, name), c) in pending.iter().zip(fns) {
        if let Some(d) = c.disasm {
            disasm.push((name.clone(), d));
        }
        kstats.push((name.clone(), c.compile_time));
        let f = c.f;
        let (units, unit_work, parallel, table) = pass_meta[*li][*pi];
        if let Work::Kernel(passes) = &mut launches[*li].work {
            passes.push(Pass { f, units, unit_work, parallel, table });
        }
    }
    if !zero_start.is_empty() {
        launches.insert(
            0,
            Launch { name: "zero".into(), zero: zero_start, snapshots: vec![], work: Work::Kernel(vec![]) },
        );
        for t in &mut table_slots {
            t.1 += 1;
        }
    }
    let mut sites: Vec<Vec<(usize, usize)>> = vec![vec![]; nb];
    let bindable = |b: BufferId| {
        s.inputs.iter().zip(&zc_inputs).any(|(&x, &z)| x == b && z)
            || s.outputs.iter().zip(&zc_outputs).any(|(x, z)| x.0 == b && z.is_some())
    };
    for (ti, (slots, _)) in table_slots.iter().enumerate() {
        for (i, sl) in slots.iter().enumerate() {
            if let Slot::Buf(b) = *sl {
                if bindable(b) {
                    sites[b].push((ti, i));
                }
            }
        }
    }
    Ok(CpuExecutable {
        buffers: s.buffers.iter().map(|b| (b.dtype, b.numel)).collect(),
        homes,
        inputs: s.inputs.clone(),
        outputs: s.outputs.clone(),
        zc_inputs,
        zc_outputs,
        sites,
        refill,
        consts,
        arena_bytes,
        own_sizes,
        scratch_sizes,
        table_slots,
        launches,
        workspaces: Mutex::new(vec![]),
        clif,
        disasm,
        stats: CompileStats { kernels: kstats, total: t0.elapsed() },
        _code: code,
    })
}

/// Outer stores (values computed once per outer point) must lie inside their buffer over the
/// outer domain — `Schedule::verify` checks stores over the full domain, which misses them when
/// a reduced axis has extent 0.
fn check_outer_stores(s: &Schedule, k: &Kernel) -> Result<()> {
    for st in &k.stores {
        let shape = store_shape(k, st.value);
        if let Some((lo, hi)) = st.access.range(&shape) {
            if lo < 0 || hi as usize >= s.buffers[st.buffer].numel {
                return Err(CpuError::Schedule(format!(
                    "{}: store to buffer {} is out of range",
                    k.name, st.buffer
                )));
            }
        }
    }
    Ok(())
}

// ----- run --------------------------------------------------------------------------------------

impl CpuExecutable {
    /// The CLIF text of every compiled kernel function, as `(kernel name, CLIF)`, in launch order
    /// (empty when compiled by [`compile_with`] without it).
    pub fn clif(&self) -> Vec<(String, String)> {
        self.clif.clone()
    }

    /// The machine code of every kernel function (empty unless the environment variable
    /// `KILN_CPU_DISASM` was set when compiling).
    pub fn disasm(&self) -> Vec<(String, String)> {
        self.disasm.clone()
    }

    /// Compile times.
    pub fn stats(&self) -> &CompileStats {
        &self.stats
    }

    fn new_workspace(&self) -> Workspace {
        let mut ws = Workspace {
            arena: AlignedBuf::zeroed(self.arena_bytes),
            own: self.own_sizes.iter().map(|&n| AlignedBuf::zeroed(n)).collect(),
            scratch: self.scratch_sizes.iter().map(|&n| AlignedBuf::zeroed(n)).collect(),
            bases: vec![],
            tables: vec![],
        };
        ws.bases = (0..self.buffers.len()).map(|b| self.home_ptr(&ws, b)).collect();
        let tables = self
            .table_slots
            .iter()
            .map(|(slots, li)| {
                slots
                    .iter()
                    .map(|sl| match sl {
                        Slot::Buf(b) => ws.bases[*b],
                        Slot::Snap(j) => ws.scratch[self.launches[*li].snapshots[*j].1].as_ptr(),
                    })
                    .collect()
            })
            .collect();
        ws.tables = tables;
        ws
    }

    /// Base pointer of buffer `b` for the current run in `ws`.
    fn ptr(&self, ws: &Workspace, b: BufferId) -> *mut u8 {
        ws.bases[b]
    }

    /// Points buffer `b` (one with `sites`) at `p` for the current run, or back at its home.
    fn bind(&self, ws: &mut Workspace, b: BufferId, p: Option<*mut u8>) {
        let p = p.unwrap_or_else(|| self.home_ptr(ws, b));
        ws.bases[b] = p;
        for &(t, i) in &self.sites[b] {
            ws.tables[t][i] = p;
        }
    }

    /// Base pointer of buffer `b`'s home in `ws`.
    fn home_ptr(&self, ws: &Workspace, b: BufferId) -> *mut u8 {
        match self.homes[b] {
            Home::Const(i) => self.consts[i].as_ptr(),
            // SAFETY: `o + bytes <= arena_bytes` was checked when compiling.
            Home::Arena(o) => unsafe { ws.arena.as_ptr().add(o) },
            Home::Own(i) => ws.own[i].as_ptr(),
        }
    }

    fn bytes_of(&self, b: BufferId) -> usize {
        self.buffers[b].1 * self.buffers[b].0.size_bytes()
    }

    /// Runs the schedule on `inputs` (in `Schedule::inputs` order; each must have the buffer's
    /// dtype and element count, any shape and layout) and returns the outputs (in
    /// `Schedule::outputs` order, shaped as declared).
    pub fn run<V: std::borrow::Borrow<Value>>(&self, inputs: &[V]) -> Result<Vec<Value>> {
        if inputs.len() != self.inputs.len() {
            return Err(CpuError::Input(format!(
                "the schedule takes {} input(s), got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for (k, (v, &b)) in inputs.iter().zip(&self.inputs).enumerate() {
            let v: &Value = v.borrow();
            let (dt, n) = self.buffers[b];
            if v.dtype() != dt || v.numel() != n {
                return Err(CpuError::Input(format!(
                    "input {k} must be {dt} with {n} elements, got {}{}",
                    v.dtype(),
                    v.shape()
                )));
            }
        }
        let mut ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| self.new_workspace());
        let res = self.run_in(&mut ws, inputs, None);
        self.workspaces.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
        res
    }

    /// Like [`CpuExecutable::run`], and also returns the wall time of each phase: `"copy in"`,
    /// every step by name, `"copy out"`.
    pub fn run_profiled<V: std::borrow::Borrow<Value>>(&self, inputs: &[V]) -> Result<(Vec<Value>, Profile)> {
        let mut prof = vec![];
        let mut ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| self.new_workspace());
        let res = self.run_in(&mut ws, inputs, Some(&mut prof));
        self.workspaces.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
        res.map(|v| (v, prof))
    }

    fn run_in<V: std::borrow::Borrow<Value>>(
        &self,
        ws: &mut Workspace,
        inputs: &[V],
        mut prof: Option<&mut Profile>,
    ) -> Result<Vec<Value>> {
        if inputs.len() != self.inputs.len() {
            return Err(CpuError::Input(format!(
                "the schedule takes {} input(s), got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        // The clock is read only when profiling (tiny graphs run in about a microsecond).
        let mut t = prof.is_some().then(Instant::now);
        let mut lap = |name: &str, prof: &mut Option<&mut Profile>| {
            if let (Some(p), Some(t0)) = (prof.as_deref_mut(), t) {
                p.push((name.to_string(), t0.elapsed()));
                t = Some(Instant::now());
            }
        };
        // Bindings of this run, undone before returning.
        let mut bound: SmallVec<[BufferId; 16]> = SmallVec::new();
        for (k, (v, &b)) in inputs.iter().zip(&self.inputs).enumerate() {
            let v: &Value = v.borrow();
            match borrowed_ptr(v).filter(|_| self.zc_inputs[k]) {
                Some(p) => {
                    // The value has the buffer's dtype and element count (checked in `run`), is
                    // contiguous and aligned, borrowed for the whole run, and never written.
                    self.bind(ws, b, Some(p));
                    bound.push(b);
                }
                None => {
                    let dst = self.ptr(ws, b);
                    // SAFETY: `dst` points to a buffer of `numel · size` bytes (invariant 2) and
                    // the value has that dtype and element count (checked in `run`).
                    unsafe { copy_in(v, dst) };
                }
            }
        }
        let mut out_vecs: SmallVec<[Option<OutVec>; 8]> = SmallVec::with_capacity(self.outputs.len());
        for (&(b, _), zc) in self.outputs.iter().zip(&self.zc_outputs) {
            let Some(zero) = *zc else {
                out_vecs.push(None);
                continue;
            };
            let (dt, n) = self.buffers[b];
            let Some(mut v) = OutVec::take(dt, n) else {
                out_vecs.push(None);
                continue;
            };
            let p = v.as_mut_ptr();
            if zero {
                // SAFETY: the vector has capacity for `n` elements of `dt`.
                unsafe { std::ptr::write_bytes(p, 0, self.bytes_of(b)) };
            }
            self.bind(ws, b, Some(p));
            bound.push(b);
            out_vecs.push(Some(v));
        }
        for (b, bytes) in &self.refill {
            let dst = self.ptr(ws, *b);
            // SAFETY: the buffer has exactly `bytes.len()` bytes (checked against the literal).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        }
        lap("copy in", &mut prof);
        let mut status = 0u32;
        let mut first_error: Option<String> = None;
        for (li, l) in self.launches.iter().enumerate() {
            // Snapshots first: zeroing a buffer may clear memory that a loaded buffer shares.
            for &(b, j) in &l.snapshots {
                let n = self.bytes_of(b);
                // SAFETY: scratch `j` was sized for buffer `b`; they are distinct allocations.
                unsafe { std::ptr::copy_nonoverlapping(self.ptr(ws, b), ws.scratch[j].as_ptr(), n) };
            }
            for &b in &l.zero {
                // SAFETY: the buffer has `bytes_of(b)` bytes.
                unsafe { std::ptr::write_bytes(self.ptr(ws, b), 0, self.bytes_of(b)) };
            }
            match &l.work {
                Work::Kernel(passes) => {
                    for p in passes {
                        let st = run_pass(p, &ws.tables[p.table]);
                        if st != 0 && first_error.is_none() {
                            first_error = Some(l.name.clone());
                        }
                        status |= st;
                    }
                }
                Work::MatMul { plan, a, b, out } => {
                    let ptr_of = |sl: &Slot| match sl {
                        Slot::Buf(x) => self.ptr(ws, *x),
                        Slot::Snap(j) => ws.scratch[l.snapshots[*j].1].as_ptr(),
                    };
                    // SAFETY: operands verified in bounds (invariant 1), `out` sized
                    // `batch·m·n` (verify) and not aliasing an operand (aliased operands read a
                    // snapshot), no other access during the call.
                    unsafe { plan.run(ptr_of(a), ptr_of(b), self.ptr(ws, *out)) };
                }
            }
            let _ = li;
            lap(&l.name, &mut prof);
        }
        let out = if status != 0 {
            let what = if status & emit::STATUS_INT_DIV_ZERO != 0 {
                "integer division by zero"
            } else {
                "integer power with a negative exponent is not defined"
            };
            Err(CpuError::Runtime(format!("kernel {}: {what}", first_error.unwrap_or_default())))
        } else {
            self.outputs
                .iter()
                .zip(out_vecs)
                .map(|((b, shape), v)| match v {
                    // SAFETY: every step ran; the first writer of the buffer wrote all `numel`
                    // elements, or the vector was zeroed before (see the module docs).
                    Some(v) => unsafe { v.into_value(self.buffers[*b].1, shape) },
                    // SAFETY: the buffer holds `numel` initialised elements of its dtype (bound
                    // inputs are still borrowed here).
                    None => unsafe {
                        copy_out(self.ptr(ws, *b), self.buffers[*b].0, self.buffers[*b].1, shape)
                    },
                })
                .collect()
        };
        for b in bound {
            self.bind(ws, b, None);
        }
        lap("copy out", &mut prof);
        out
    }
}

/// Calls a kernel function over all its units, split over the pool when it is large enough.
fn run_pass(p: &Pass, table: &[*mut u8]) -> u32 {
    let total = p.units.saturating_mul(p.unit_work);
    // Up to 4 tasks per thread (of at least GRAIN points each), taken dynamically: a thread
    // that is descheduled or slow does not hold up the others.
    let tasks = if p.parallel && pool::threads() > 1 {
        (total / GRAIN).clamp(1, 4 * pool::threads() as u64).min(p.units)
    } else {
        1
    };
    let status = AtomicU32::new(0);
    let tp = table.as_ptr() as usize;
    let f = p.f;
    let units = p.units;
    let call = |t: usize| {
        let t = t as u64;
        let (b, e) = (t * units / tasks, (t + 1) * units / tasks);
        // SAFETY: `table` holds one valid pointer per slot of this kernel (buffers sized from the
        // schedule); the kernel touches only verified in-bounds elements of units `b..e`, and
        // concurrent tasks write disjoint elements (stores are injective when `parallel`).
        let st = unsafe { f(tp as *const *mut u8, b, e) };
        status.fetch_or(st, Ordering::Relaxed);
    };
    if tasks <= 1 {
        call(0);
    } else {
        pool::run(tasks as usize, &call);
    }
    status.load(Ordering::Relaxed)
}

/// Byte count above which copies in and out are split over the pool (page faults of fresh
/// output memory then happen on every core).
const PAR_COPY_BYTES: usize = 1 << 20;

/// `memcpy` of `bytes` bytes, split over the pool when large.
///
/// # Safety
/// `src` valid for reads and `dst` for writes of `bytes` bytes; the ranges do not overlap.
unsafe fn par_copy(src: *const u8, dst: *mut u8, bytes: usize) {
    if bytes < PAR_COPY_BYTES || pool::threads() <= 1 {
        // SAFETY: caller contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, bytes) };
        return;
    }
    let tasks = pool::threads().min(bytes / (PAR_COPY_BYTES / 2));
    let (s, d) = (src as usize, dst as usize);
    pool::run(tasks, &|t| {
        let (lo, hi) = (t * bytes / tasks, (t + 1) * bytes / tasks);
        // SAFETY: a sub-range of the caller's ranges; tasks write disjoint parts.
        unsafe { std::ptr::copy_nonoverlapping((s + lo) as *const u8, (d + lo) as *mut u8, hi - lo) };
    });
}

/// The memory of a standard-layout value, when it is aligned to its element size (what a
/// buffer's pointer must be). Bool values are bytes 0/1, as the kernels store them.
fn borrowed_ptr(v: &Value) -> Option<*mut u8> {
    let (p, align) = match v {
        Value::F32(a) => (a.as_slice()?.as_ptr() as *mut u8, std::mem::align_of::<f32>()),
        Value::F64(a) => (a.as_slice()?.as_ptr() as *mut u8, std::mem::align_of::<f64>()),
        Value::I64(a) => (a.as_slice()?.as_ptr() as *mut u8, std::mem::align_of::<i64>()),
        Value::Bool(a) => (a.as_slice()?.as_ptr() as *mut u8, std::mem::align_of::<bool>()),
    };
    ((p as usize) % align == 0).then_some(p)
}

/// An output vector the steps write into directly.
enum OutVec {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

impl OutVec {
    /// An empty vector with capacity for `n` elements of `dt` (`None` for bool).
    fn take(dt: DType, n: usize) -> Option<OutVec> {
        Some(match dt {
            DType::F32 => OutVec::F32(crate::recycle::take(n)),
            DType::F64 => OutVec::F64(crate::recycle::take(n)),
            DType::I64 => OutVec::I64(crate::recycle::take(n)),
            DType::Bool => return None,
        })
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            OutVec::F32(v) => v.as_mut_ptr() as *mut u8,
            OutVec::F64(v) => v.as_mut_ptr() as *mut u8,
            OutVec::I64(v) => v.as_mut_ptr() as *mut u8,
        }
    }

    /// The value of `shape` holding the first `n` elements.
    ///
    /// # Safety
    /// The first `n` elements must have been initialised (the capacity is at least `n`).
    unsafe fn into_value(self, n: usize, shape: &[usize]) -> Result<Value> {
        if shape.iter().try_fold(1usize, |p, &d| p.checked_mul(d)) != Some(n) {
            return Err(CpuError::Internal(format!("output shape {shape:?} does not hold {n} elements")));
        }
        let sh = ndarray::IxDyn(shape);
        // ndarray's checked constructor costs more than the rest of a tiny output's handling.
        macro_rules! fin {
            ($v:expr, $c:path) => {{
                let mut v = $v;
                // SAFETY: caller contract; `take(n)` gave capacity for `n`.
                unsafe { v.set_len(n) };
                // SAFETY: `n` elements in row-major order and a shape of `n` elements (checked
                // above), standard strides.
                $c(unsafe { ndarray::ArrayD::from_shape_vec_unchecked(sh, v) })
            }};
        }
        Ok(match self {
            OutVec::F32(v) => fin!(v, Value::F32),
            OutVec::F64(v) => fin!(v, Value::F64),
            OutVec::I64(v) => fin!(v, Value::I64),
        })
    }
}

/// Copies a value's elements (row-major, any layout) to `dst`.
///
/// # Safety
/// `dst` must be valid for `v.numel()` elements of `v`'s dtype.
unsafe fn copy_in(v: &Value, dst: *mut u8) {
    macro_rules! cp {
        ($a:expr, $t:ty) => {{
            let d = dst as *mut $t;
            match $a.as_slice() {
                // SAFETY: caller contract.
                Some(s) => unsafe { par_copy(s.as_ptr() as *const u8, dst, std::mem::size_of_val(s)) },
                None => {
                    for (i, x) in $a.iter().enumerate() {
                        // SAFETY: caller contract (i < numel).
                        unsafe { d.add(i).write(*x) };
                    }
                }
            }
        }};
    }
    match v {
        Value::F32(a) => cp!(a, f32),
        Value::F64(a) => cp!(a, f64),
        Value::I64(a) => cp!(a, i64),
        Value::Bool(a) => {
            for (i, x) in a.iter().enumerate() {
                // SAFETY: caller contract.
                unsafe { dst.add(i).write(u8::from(*x)) };
            }
        }
    }
}

/// A new vector of the `n` elements at `src`.
///
/// # Safety
/// `src` must be valid for reads of `n` initialised, aligned elements of `T`.
unsafe fn vec_from<T: crate::recycle::Recyclable>(src: *const T, n: usize) -> Vec<T> {
    // Recycled memory when there is some: no page faults for outputs of repeated steps.
    let mut v: Vec<T> = crate::recycle::take(n);
    // SAFETY: the capacity holds `n` elements; `par_copy` initialises all of them.
    unsafe {
        par_copy(src as *const u8, v.as_mut_ptr() as *mut u8, n * std::mem::size_of::<T>());
        v.set_len(n);
    }
    v
}

/// A value of `shape` from `n` elements of `dt` at `src`.
///
/// # Safety
/// `src` must be valid for reads of `n` initialised elements of `dt` (bool bytes 0 or 1).
unsafe fn copy_out(src: *const u8, dt: DType, n: usize, shape: &[usize]) -> Result<Value> {
    let sh = ndarray::IxDyn(shape);
    let err = |e: ndarray::ShapeError| CpuError::Internal(format!("output shape {shape:?}: {e}"));
    // SAFETY (all arms): caller contract; buffers are aligned to 64 bytes or their element size.
    Ok(match dt {
        DType::F32 => Value::F32(
            ndarray::ArrayD::from_shape_vec(sh, unsafe { vec_from(src as *const f32, n) }).map_err(err)?,
        ),
        DType::F64 => Value::F64(
            ndarray::ArrayD::from_shape_vec(sh, unsafe { vec_from(src as *const f64, n) }).map_err(err)?,
        ),
        DType::I64 => Value::I64(
            ndarray::ArrayD::from_shape_vec(sh, unsafe { vec_from(src as *const i64, n) }).map_err(err)?,
        ),
        DType::Bool => Value::Bool(
            ndarray::ArrayD::from_shape_vec(
                sh,
                unsafe { std::slice::from_raw_parts(src, n) }.iter().map(|&x| x != 0).collect(),
            )
            .map_err(err)?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::lattice_reaches;

    #[test]
    fn lattice_offsets() {
        // Concat pieces: [.., 2] blocks at offsets 0, 2, 4 of rows of 6.
        assert!(!lattice_reaches(2, &[24, 12, 6, 1], &[1, 2, 2, 2]));
        assert!(!lattice_reaches(4, &[24, 12, 6, 1], &[1, 2, 2, 2]));
        assert!(lattice_reaches(6, &[24, 12, 6, 1], &[1, 2, 2, 2]));
        assert!(lattice_reaches(-5, &[24, 12, 6, 1], &[1, 2, 2, 2]));
        assert!(lattice_reaches(1, &[1], &[5]));
        assert!(!lattice_reaches(5, &[1], &[5]));
        assert!(lattice_reaches(0, &[3, -1], &[4, 4]));
        assert!(!lattice_reaches(3, &[7, 2], &[3, 1]));
    }
}
