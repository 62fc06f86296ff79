//! Recycled output memory. Writing a fresh 64 MiB buffer costs ~25 ms of page faults on this
//! machine class, more than the arithmetic of a whole W1 step; so large output buffers of
//! dropped tensors come back here (the frontend returns them when their value is freed) and new
//! outputs reuse them. Only big buffers are kept, and only a bounded number of bytes.

use kiln_ir::interp::Value;
use std::sync::Mutex;

/// Buffers smaller than this are left to the allocator (it reuses small blocks itself).
const MIN_BYTES: usize = 1 << 20;
/// At most this many bytes are kept per element type.
const MAX_POOLED_BYTES: usize = 1 << 30;

#[doc(hidden)]
pub struct Pool<T> {
    bufs: Mutex<Vec<Vec<T>>>,
}

impl<T: Copy> Pool<T> {
    const fn new() -> Pool<T> {
        Pool { bufs: Mutex::new(Vec::new()) }
    }

    /// An empty vector with capacity for `n` elements, reusing a pooled one of capacity
    /// `n..=2n` when there is one.
    fn take(&self, n: usize) -> Vec<T> {
        if n * std::mem::size_of::<T>() >= MIN_BYTES {
            let mut bufs = self.bufs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = bufs.iter().position(|b| b.capacity() >= n && b.capacity() <= 2 * n) {
                let mut v = bufs.swap_remove(i);
                v.clear();
                return v;
            }
        }
        Vec::with_capacity(n)
    }

    fn give(&self, v: Vec<T>) {
        let bytes = |v: &Vec<T>| v.capacity() * std::mem::size_of::<T>();
        if bytes(&v) < MIN_BYTES {
            return;
        }
        let mut bufs = self.bufs.lock().unwrap_or_else(|p| p.into_inner());
        bufs.push(v);
        // Drop the oldest beyond the byte budget.
        while bufs.iter().map(bytes).sum::<usize>() > MAX_POOLED_BYTES {
            bufs.remove(0);
        }
    }
}

static F32: Pool<f32> = Pool::new();
static F64: Pool<f64> = Pool::new();
static I64: Pool<i64> = Pool::new();

/// Element types with a recycling pool.
pub trait Recyclable: Copy + 'static {
    #[doc(hidden)]
    fn pool() -> &'static Pool<Self>
    where
        Self: Sized;
}

impl Recyclable for f32 {
    fn pool() -> &'static Pool<f32> {
        &F32
    }
}
impl Recyclable for f64 {
    fn pool() -> &'static Pool<f64> {
        &F64
    }
}
impl Recyclable for i64 {
    fn pool() -> &'static Pool<i64> {
        &I64
    }
}

/// An empty `Vec` with room for `n` elements, recycled when possible.
pub fn take<T: Recyclable>(n: usize) -> Vec<T> {
    T::pool().take(n)
}

/// Whether [`give`] would keep `v` (small values are not pooled: callers may skip the handover).
pub fn wants(v: &Value) -> bool {
    v.numel().saturating_mul(v.dtype().size_bytes()) >= MIN_BYTES && v.dtype() != kiln_ir::DType::Bool
}

/// Returns the memory of a value nobody uses any more.
///
/// ```
/// use kiln_ir::interp::Value;
/// let v = Value::from_f64(kiln_ir::DType::F32, [1 << 20], &vec![0.0; 1 << 20]).unwrap();
/// kiln_codegen::recycle::give(v);
/// assert!(kiln_codegen::recycle::take::<f32>(1 << 20).capacity() >= 1 << 20);
/// ```
pub fn give(v: Value) {
    match v {
        Value::F32(a) => give_array(a, &F32),
        Value::F64(a) => give_array(a, &F64),
        Value::I64(a) => give_array(a, &I64),
        Value::Bool(_) => {}
    }
}

fn give_array<T: Copy>(a: ndarray::ArrayD<T>, pool: &Pool<T>) {
    if a.len() * std::mem::size_of::<T>() < MIN_BYTES || !a.is_standard_layout() {
        return;
    }
    let (v, offset) = a.into_raw_vec_and_offset();
    if offset == Some(0) || offset.is_none() {
        pool.give(v);
    }
}
