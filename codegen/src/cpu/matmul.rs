//! Matrix products through `matrixmultiply` (strided operands: transposes, broadcast batches and
//! reversed axes need no copies).
//!
//! Library choice, measured on this machine (1024³ row-major, best of 8, release build;
//! `gemm` 0.19 with `Parallelism::Rayon(n)` vs `matrixmultiply` 0.3.11 with its `threading`
//! feature and `MATMUL_NUM_THREADS=n`). Two runs, the first on a quiet machine (load ≈ 2), the
//! second while other jobs loaded both cores (load ≈ 6), in GFLOP/s:
//!
//! | | f32, 1 thread | f32, 2 threads | f64, 1 thread | f64, 2 threads |
//! |---|---|---|---|---|
//! | gemm | 105 / 88 | 210 / 86 | 47 / 36 | 95 / 36 |
//! | matrixmultiply | 148 / 124 | 256 / 98 | 59 / 45 | 111 / 47 |
//! | matrixmultiply, one single-threaded call per half of M (kiln's split; loaded) | 116 | 116 | 46 | 42 |
//!
//! (Under load the second core is busy with other work, so 2 threads gain nothing there.)
//!
//! `matrixmultiply` is faster in every cell. Its own threading is configured only by the
//! `MATMUL_NUM_THREADS` environment variable and a separate thread pool, so kiln builds it without
//! the `threading` feature and splits products over its own pool instead (batches, or blocks of
//! rows / columns, one single-threaded call each): one pool, thread count from
//! `KILN_NUM_THREADS`, never a library spinning threads of its own next to kiln's.

use super::pool;
use kiln_ir::DType;
use kiln_passes::kernel::MatMulStep;

/// Below this many multiply-adds a product runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 18;

/// Below this many multiply-adds per batch a plain loop is used: `matrixmultiply` packs both
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

/// The float types products are computed in, with their `matrixmultiply` kernel.
trait Float: Copy + Default + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> {
    /// `c = a @ b` through `matrixmultiply` (same contract as [`small_gemm`]).
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        dims: (usize, usize, usize),
        a: *const Self,
        sa: (isize, isize),
        b: *const Self,
        sb: (isize, isize),
        c: *mut Self,
        rsc: isize,
    );
}

impl Float for f32 {
    unsafe fn gemm(
        (m, k, n): (usize, usize, usize),
        a: *const f32,
        (rsa, csa): (isize, isize),
        b: *const f32,
        (rsb, csb): (isize, isize),
        c: *mut f32,
        rsc: isize,
    ) {
        // SAFETY: the caller's contract is matrixmultiply's.
        unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, 1) }
    }
}

impl Float for f64 {
    unsafe fn gemm(
        (m, k, n): (usize, usize, usize),
        a: *const f64,
        (rsa, csa): (isize, isize),
        b: *const f64,
        (rsb, csb): (isize, isize),
        c: *mut f64,
        rsc: isize,
    ) {
        // SAFETY: the caller's contract is matrixmultiply's.
        unsafe { matrixmultiply::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, 1) }
    }
}

/// One block of a product: operands and output at element offsets of the buffers at `a`, `b`,
/// `c` (addresses), tiny blocks as a plain loop, others through `matrixmultiply`.
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
        unsafe { T::gemm(dims, a, sa, b, sb, c, rsc as isize) }
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
