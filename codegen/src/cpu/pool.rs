//! A small fixed thread pool for splitting kernels and matrix products.
//!
//! One process-wide pool with `threads() - 1` workers (the calling thread is the last worker).
//! `threads()` is `std::thread::available_parallelism()`, capped by `KILN_NUM_THREADS`.
//!
//! [`run`] executes `n` tasks and returns when all have finished. Only one job uses the pool at a
//! time: a second caller (another thread running another executable concurrently) does not wait
//! for the pool but runs its tasks itself, inline — so kiln never has more busy threads than
//! cores plus concurrent callers, and never deadlocks on itself.
//!
//! Waiting spins for up to [`SPIN`] before it sleeps, on both sides: a worker that finished a
//! job watches for the next one, and the caller watches its job's completion count. A training
//! step hands the pool a job every few tens of microseconds (each matrix product and large
//! kernel of the step), and waking a thread parked on a futex costs 5–50 µs, more when the
//! machine is busy — paid twice per job without spinning (measured on W3: see `ARCHITECTURE.md`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// Spins until `ready()` or until [`SPIN`] has passed; returns whether `ready()` held.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return ready();
        }
    }
}

/// Threads kiln uses for one kernel: the machine's parallelism, capped by `KILN_NUM_THREADS`.
pub fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let hw = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let cap = std::env::var("KILN_NUM_THREADS").ok().and_then(|s| s.trim().parse::<usize>().ok());
        match cap {
            Some(c) if c >= 1 => hw.min(c),
            _ => hw,
        }
    })
}

/// A job: `n` tasks of a borrowed closure. The closure pointer's lifetime is erased; [`run`]
/// guarantees it outlives every call (it returns only after all `n` tasks completed, and workers
/// call the closure only for task indices below `n`).
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    n: usize,
    next: Arc<AtomicUsize>,
    done: Arc<Done>,
}

// SAFETY: the closure is `Sync` (shared across threads by reference) and outlives the job; see
// `Job`.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

struct Done {
    /// Tasks finished; the caller sleeps on `cv` (under `lock`) once spinning gave up.
    count: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    panicked: std::sync::atomic::AtomicBool,
}

struct Shared {
    /// The current job, if any.
    slot: Mutex<Option<Arc<Job>>>,
    /// Jobs handed out so far. Changed only under `slot`'s lock (so a worker that checks it
    /// there before waiting on `cv` cannot miss a job); read without it by spinning workers.
    generation: AtomicU64,
    cv: Condvar,
}

struct Pool {
    shared: Arc<Shared>,
    /// Held by the thread whose job is in the pool.
    busy: Mutex<()>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let shared =
            Arc::new(Shared { slot: Mutex::new(None), generation: AtomicU64::new(0), cv: Condvar::new() });
        for i in 1..threads() {
            let sh = shared.clone();
            std::thread::Builder::new()
                .name(format!("kiln-worker-{i}"))
                .spawn(move || worker(sh))
                .expect("spawn a kiln worker thread");
        }
        Pool { shared, busy: Mutex::new(()) }
    })
}

fn worker(sh: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        spin_until(|| sh.generation.load(Ordering::Acquire) != seen);
        let job = {
            let mut g = sh.slot.lock().unwrap_or_else(|p| p.into_inner());
            while sh.generation.load(Ordering::Acquire) == seen {
                g = sh.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            seen = sh.generation.load(Ordering::Acquire);
            g.clone()
        };
        if let Some(job) = job {
            work(&job);
        }
    }
}

/// Takes tasks of `job` until none is left.
fn work(job: &Job) {
    loop {
        let i = job.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.n {
            return;
        }
        // SAFETY: `i < n`, so the job is not complete and `run` is still waiting: the closure
        // behind `f` is alive (see `Job`).
        let f = unsafe { &*job.f };
        if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
            job.done.panicked.store(true, Ordering::Relaxed);
        }
        if job.done.count.fetch_add(1, Ordering::AcqRel) + 1 == job.n {
            // Under the lock: a caller that checked the count before this increment is
            // already waiting on `cv` (it checks under the same lock), so it is woken.
            let _g = job.done.lock.lock().unwrap_or_else(|p| p.into_inner());
            job.done.cv.notify_all();
        }
    }
}

/// Runs `f(0..n)` on the pool (the caller takes part) and returns when every task has finished.
/// Runs inline when `n <= 1`, when there is one thread, or when the pool is busy with another
/// caller's job. A panic in a task is re-raised here after all tasks finished.
pub fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
    if n <= 1 || threads() <= 1 {
        (0..n).for_each(f);
        return;
    }
    let p = pool();
    let _busy = match p.busy.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            (0..n).for_each(f);
            return;
        }
    };
    // SAFETY (lifetime erasure): see `Job`; we wait below until all `n` tasks are done.
    let f_static: *const (dyn Fn(usize) + Sync) = unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(f)
    };
    let done = Arc::new(Done {
        count: AtomicUsize::new(0),
        lock: Mutex::new(()),
        cv: Condvar::new(),
        panicked: false.into(),
    });
    let job = Arc::new(Job { f: f_static, n, next: Arc::new(AtomicUsize::new(0)), done: done.clone() });
    {
        let mut g = p.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some(job.clone());
        p.shared.generation.fetch_add(1, Ordering::Release);
        p.shared.cv.notify_all();
    }
    work(&job);
    let finished = || done.count.load(Ordering::Acquire) >= n;
    if !spin_until(finished) {
        let mut g = done.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !finished() {
            g = done.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
    {
        // Drop the pool's reference so that a late worker sees no job.
        *p.shared.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    if done.panicked.load(Ordering::Relaxed) {
        panic!("a kiln worker task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_task_once() {
        let hits: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        run(100, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn workers_take_part() {
        if threads() < 2 {
            return;
        }
        // Another test may hold the pool (then `run` works inline): try a few times.
        let used_two = (0..100).any(|_| {
            let ids = Mutex::new(std::collections::HashSet::new());
            run(8, &|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                ids.lock().unwrap().insert(std::thread::current().id());
            });
            let n = ids.lock().unwrap().len();
            n >= 2
        });
        assert!(used_two);
    }

    #[test]
    fn jobs_after_the_workers_went_to_sleep_still_run() {
        // Gaps longer than the spin make the workers park; tasks longer than the spin make the
        // caller park: both wake-ups must happen.
        for gap in [Duration::ZERO, 2 * SPIN, 5 * SPIN] {
            std::thread::sleep(gap);
            let sum = AtomicUsize::new(0);
            run(4, &|i| {
                std::thread::sleep(2 * SPIN);
                sum.fetch_add(i + 1, Ordering::Relaxed);
            });
            assert_eq!(sum.load(Ordering::Relaxed), 10);
        }
    }

    #[test]
    fn concurrent_callers_do_not_deadlock() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let sum = AtomicUsize::new(0);
                        run(8, &|i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 28);
                    }
                });
            }
        });
    }
}
