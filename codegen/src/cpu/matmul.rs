//! Matrix products through the `gemm` crate built with its `x86-v4` feature (AVX-512 kernels,
//! chosen at run time when the CPU has them; AVX2/FMA or SSE otherwise). Strided operands:
//! transposes, broadcast batches and reversed axes need no copies.
//!
//! Library choice, measured on this machine (AVX-512 Xeon, release build, best of 15, both cores
//! busy with other builds at the time, so absolute figures are low): one single-threaded call per
//! half of the product on two threads (kiln's split), GFLOP/s:
//!
//! | f32 product (m×k×n) | matrixmultiply 0.3.11 | gemm 0.19 (`x86-v4`) |
//! |---|---|---|
//! | 256×784×1024, halves of n | 261 | 339 |
//! | 256×1024×1024, halves of n | 284 | 332 |
//! | 1024×256×784, halves of m | 317 | 348 |
//! | 1024×1024×1024, halves of m | 317 | 374 |
//!
//! f64 1024³ on one thread: matrixmultiply 66, gemm 91. (Without `x86-v4`, gemm's AVX2 kernels
//! were slower than matrixmultiply's: 105 vs 148 GFLOP/s f32 on one thread.) Products are split
//! over kiln's own pool (batches, or blocks of rows / columns, one single-threaded call each,
//! `Parallelism::None`): one pool, thread count from `KILN_NUM_THREADS`, never a library spinning
//! threads of its own next to kiln's.

use super::pool;
use kiln_ir::DType;
use kiln_passes::kernel::MatMulStep;

/// Below this many multiply-adds a product runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 18;

/// Below this many multiply-adds per batch a plain loop is used: `gemm` packs both
/// operands into panels first, which dominates tiny products (a 32×1 · 1×1 step of a small
/// regression cost ~2 000 instructions that way).
const SMALL_MACS: usize = 4096;

/// A planned product: element strides of both operands (batch axes, rows, columns).
#[derive(Clone, Debug)]
pub(crate) struct MatMulPlan {
    pub dtype: DType,
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a_offset: i64,
    pub a_strides: Vec<i64>,
    pub b_offset: i64,
    pub b_strides: Vec<i64>,
}

impl MatMulPlan {
    pub(crate) fn new(mm: &MatMulStep) -> MatMulPlan {
        MatMulPlan {
            dtype: mm.dtype,
            batch: mm.batch.clone(),
            m: mm.m,
            k: mm.k,
            n: mm.n,
            a_offset: mm.a.access.offset,
            a_strides: mm.a.access.strides.clone(),
            b_offset: mm.b.access.offset,
            b_strides: mm.b.access.strides.clone(),
        }
    }

    /// Element offsets of batch `i` (row-major over `batch`) in a and b.
    fn batch_offsets(&self, mut i: usize) -> (i64, i64) {
        let (mut oa, mut ob) = (self.a_offset, self.b_offset);
        for d in (0..self.batch.len()).rev() {
            let j = (i % self.batch[d]) as i64;
            i /= self.batch[d];
            oa += j * self.a_strides[d];
            ob += j * self.b_strides[d];
        }
        (oa, ob)
    }

    /// `out = a @ b` over every batch.
    ///
    /// # Safety
    /// `a` and `b` point to buffers of `dtype` in which every element the operand accesses
    /// address (over `batch × m × k` / `batch × k × n`) lies (what `Schedule::verify` checks),
    /// `out` to a buffer of `batch·m·n` elements that overlaps neither, and nothing else accesses
    /// `out` during the call.
    pub(crate) unsafe fn run(&self, a: *const u8, b: *const u8, out: *mut u8) {
        let nb: usize = self.batch.iter().product();
        let (m, n, k) = (self.m, self.n, self.k);
        if nb == 0 || m == 0 || n == 0 {
            return;
        }
        let nd = self.batch.len();
        let (rsa, csa) = (self.a_strides[nd] as isize, self.a_strides[nd + 1] as isize);
        let (rsb, csb) = (self.b_strides[nd] as isize, self.b_strides[nd + 1] as isize);
        let threads = pool::threads();
        let macs = nb * m * n * k.max(1);
        // Tasks: (batch range) or (one batch, block of rows or columns).
        let (tasks, split_rows) = if macs < PAR_MIN_MACS || threads <= 1 {
            (1, true)
        } else if nb >= threads {
            (threads, true)
        } else {
            let per = threads.div_ceil(nb);
            (nb * per, m >= n)
        };
        let (ap, bp, op) = (a as usize, b as usize, out as usize);
        let task = |t: usize| {
            let (batches, block): (std::ops::Range<usize>, Option<(usize, usize)>) = if tasks == 1 {
                (0..nb, None)
            } else if nb >= threads {
                (t * nb / tasks..(t + 1) * nb / tasks, None)
            } else {
                let per = tasks / nb;
                (t / per..t / per + 1, Some((t % per, per)))
            };
            for bi in batches {
                let (oa, ob) = self.batch_offsets(bi);
                let oo = (bi * m * n) as isize;
                let (mut r0, mut r1, mut c0, mut c1) = (0, m, 0, n);
                if let Some((j, per)) = block {
                    if split_rows {
                        (r0, r1) = (j * m / per, (j + 1) * m / per);
                    } else {
                        (c0, c1) = (j * n / per, (j + 1) * n / per);
                    }
                }
                if r0 == r1 || c0 == c1 {
                    continue;
                }
                let a_off = oa as isize + r0 as isize * rsa;
                let b_off = ob as isize + c0 as isize * csb;
                let o_off = oo + (r0 * n + c0) as isize;
                let dims = (r1 - r0, k, c1 - c0);
                let (sa, sb) = ((rsa, csa), (rsb, csb));
                // SAFETY: the sub-block's elements are elements of the full product's operands
                // and output (rows r0..r1, columns c0..c1), in bounds by the caller's contract;
                // tasks write disjoint blocks of `out`.
                unsafe {
                    match self.dtype {
                        DType::F32 => product_block::<f32>(dims, ap, a_off, sa, bp, b_off, sb, op, o_off, n),
                        DType::F64 => product_block::<f64>(dims, ap, a_off, sa, bp, b_off, sb, op, o_off, n),
                        _ => unreachable!("checked when compiling"),
                    }
                }
            }
        };
        pool::run(tasks, &task);
    }
}

/// The float types products are computed in (f32 and f64: `gemm` dispatches on the type).
trait Float: Copy + Default + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> + 'static {
    const ONE: Self;
}
impl Float for f32 {
    const ONE: f32 = 1.0;
}
impl Float for f64 {
    const ONE: f64 = 1.0;
}

/// `c = a @ b` through `gemm` on the calling thread (same contract as [`small_gemm`]).
unsafe fn gemm_block<T: Float>(
    (m, k, n): (usize, usize, usize),
    a: *const T,
    (rsa, csa): (isize, isize),
    b: *const T,
    (rsb, csb): (isize, isize),
    c: *mut T,
    rsc: isize,
) {
    // gemm computes `dst = alpha·dst + beta·lhs·rhs`; with `read_dst = false` dst is only written.
    let (zero, one) = (T::default(), T::ONE);
    // SAFETY: the caller's contract (valid strided operands, `c` writable over m×n, no overlap).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            rsc,
            false,
            a,
            csa,
            rsa,
            b,
            csb,
            rsb,
            zero,
            one,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// One block of a product: operands and output at element offsets of the buffers at `a`, `b`,
/// `c` (addresses), tiny blocks as a plain loop, others through `gemm`.
///
/// # Safety
/// As [`small_gemm`], for the offset pointers.
#[allow(clippy::too_many_arguments)]
unsafe fn product_block<T: Float>(
    dims: (usize, usize, usize),
    a: usize,
    a_off: isize,
    sa: (isize, isize),
    b: usize,
    b_off: isize,
    sb: (isize, isize),
    c: usize,
    c_off: isize,
    rsc: usize,
) {
    let (m, k, n) = dims;
    // SAFETY: the offsets stay inside the buffers by the caller's contract.
    let (a, b, c) = unsafe {
        ((a as *const T).offset(a_off), (b as *const T).offset(b_off), (c as *mut T).offset(c_off))
    };
    if m * n * k <= SMALL_MACS {
        // SAFETY: forwarded contract.
        unsafe { small_gemm(dims, a, sa, b, sb, c, rsc as isize) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { gemm_block(dims, a, sa, b, sb, c, rsc as isize) }
    }
}

/// `c = a @ b` for an `m × k` by `k × n` product with element strides, as a plain loop.
///
/// # Safety
/// Every `a[i·rsa + p·csa]`, `b[p·rsb + j·csb]` (i < m, p < k, j < n) is readable and every
/// `c[i·rsc + j]` writable, and `c` overlaps neither operand.
unsafe fn small_gemm<T: Float>(
    (m, k, n): (usize, usize, usize),
    a: *const T,
    (rsa, csa): (isize, isize),
    b: *const T,
    (rsb, csb): (isize, isize),
    c: *mut T,
    rsc: isize,
) {
    for i in 0..m as isize {
        for j in 0..n as isize {
            let mut acc = T::default();
            for p in 0..k as isize {
                // SAFETY: in bounds by the function's contract.
                acc = acc + unsafe { *a.offset(i * rsa + p * csa) * *b.offset(p * rsb + j * csb) };
            }
            // SAFETY: as above.
            unsafe { *c.offset(i * rsc + j) = acc };
        }
    }
}
