//! The JIT backend: the pass pipeline, then the Cranelift CPU compiler, with a compile cache
//! keyed by the graph's structure. A training loop traces the same step every iteration; after the
//! first step every realization is a cache hit that only runs the compiled code.

use crate::cpu::{self, CpuExecutable};
use crate::Backend;
use kiln_ir::interp::Value;
use kiln_ir::Graph;
use kiln_passes::dump::DumpFile;
use kiln_passes::pipeline::{self, PipelineOptions};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counters of the compile cache (process-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Runs of large graphs seen for the first time, interpreted instead of compiled.
    pub interpreted: u64,
    /// Total seconds spent compiling (pipeline + code generation) on misses.
    pub compile_seconds: f64,
    /// Executables held.
    pub entries: usize,
}

impl CacheStats {
    /// Fraction of lookups that were hits.
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// Executables by structural key. Bounded: when full it is cleared (a program that keeps making
/// new shapes recompiles, but memory stays bounded).
const CACHE_LIMIT: usize = 256;

/// Graphs up to this many nodes are compiled the first time they run; larger ones the second.
const EAGER_COMPILE_NODES: usize = 4096;

/// A map by structural key. The keys are hashes already: a cheap hasher, not SipHash, which
/// showed in the profile of tiny cached steps.
type KeyMap<V> = HashMap<u64, V, rustc_hash::FxBuildHasher>;

/// The Cranelift JIT backend (`KILN_BACKEND=jit`, the default).
#[derive(Default)]
pub struct Jit {
    cache: Mutex<KeyMap<Arc<CpuExecutable>>>,
    seen: Mutex<KeyMap<u32>>,
    hits: AtomicU64,
    misses: AtomicU64,
    interpreted: AtomicU64,
    compile_nanos: AtomicU64,
}

impl Jit {
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            interpreted: self.interpreted.load(Ordering::Relaxed),
            compile_seconds: self.compile_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
            entries: self.cache.lock().unwrap_or_else(|p| p.into_inner()).len(),
        }
    }

    /// Compiles `g` (no cache).
    /// With `KILN_DUMP=<dir>` (or `kiln_passes::pipeline::set_dump_dir`), the pipeline's stages and
    /// then the Cranelift IR of every kernel (`<hash>.4-codegen.clif`, headed by the code
    /// generation time) are written there.
    pub fn compile(g: &Graph) -> kiln_ir::Result<CpuExecutable> {
        let opts = PipelineOptions::from_env();
        let compiled = pipeline::compile(g, &opts).map_err(pass_error)?;
        let t = Instant::now();
        let exe = cpu::compile_with(&compiled.schedule, opts.dump_dir.is_some())?;
        if let Some(dir) = &opts.dump_dir {
            let clif = exe.clif();
            let mut text =
                format!("; codegen: {} kernels in {:.3} ms\n", clif.len(), t.elapsed().as_secs_f64() * 1e3);
            for (name, clif) in clif {
                text.push_str(&format!("; kernel {name}\n{clif}\n"));
            }
            let file = DumpFile { order: 4, pass: "codegen", kind: "clif", body: String::new() };
            let path = dir.join(file.file_name(compiled.report.graph_hash));
            std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&path, text))
                .map_err(|e| kiln_ir::Error::Interp(format!("KILN_DUMP: writing {}: {e}", path.display())))?;
        }
        Ok(exe)
    }

    /// The executable for `key`, or `None` when the graph should be interpreted this time: a
    /// large graph is compiled only once it has been seen before (compiling a long unrolled
    /// loop that runs once costs more than interpreting it).
    fn executable(&self, key: u64, g: &Graph) -> kiln_ir::Result<Option<Arc<CpuExecutable>>> {
        if let Some(e) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(e.clone()));
        }
        if g.len() > EAGER_COMPILE_NODES {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= CACHE_LIMIT {
                seen.clear();
            }
            let n = seen.entry(key).or_insert(0);
            *n += 1;
            if *n < 2 {
                self.interpreted.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let exe = Arc::new(Jit::compile(g)?);
        self.compile_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, exe.clone());
        Ok(Some(exe))
    }
}

impl Jit {
    /// Runs the compiled executable for `key`, or interprets `g` while it is not compiled yet.
    fn run_with<V: Borrow<Value>>(&self, key: u64, g: &Graph, inputs: &[V]) -> kiln_ir::Result<Vec<Value>> {
        match self.executable(key, g)? {
            Some(exe) => Ok(exe.run(inputs)?),
            None => kiln_ir::interp::run(g, inputs),
        }
    }
}

fn pass_error(e: kiln_passes::Error) -> kiln_ir::Error {
    match e {
        kiln_passes::Error::Ir(e) => e,
        other => kiln_ir::Error::Interp(other.to_string()),
    }
}

impl Backend for Jit {
    fn name(&self) -> &'static str {
        "jit"
    }

    fn run(&self, g: &Graph, inputs: &[Value]) -> kiln_ir::Result<Vec<Value>> {
        self.run_with(g.structural_hash(), g, inputs)
    }

    fn run_keyed(&self, key: u64, g: &Graph, inputs: &[Arc<Value>]) -> kiln_ir::Result<Vec<Value>> {
        self.run_with(key, g, inputs)
    }
}

static JIT: std::sync::OnceLock<Jit> = std::sync::OnceLock::new();

/// The process-wide JIT backend.
pub fn jit() -> &'static Jit {
    JIT.get_or_init(Jit::default)
}

/// Counters of the process-wide JIT's compile cache.
///
/// ```
/// use kiln_codegen::Backend;
/// let g = kiln_passes::workloads::w1(8, false).unwrap();
/// let x = kiln_ir::interp::Value::from_f64(kiln_ir::DType::F32, [8], &[0.5; 8]).unwrap();
/// kiln_codegen::jit().run(&g, &[x.clone()]).unwrap();
/// kiln_codegen::jit().run(&g, &[x]).unwrap();
/// let s = kiln_codegen::jit_stats();
/// assert_eq!((s.misses, s.hits), (1, 1));
/// assert_eq!(s.hit_rate(), 0.5);
/// ```
pub fn jit_stats() -> CacheStats {
    jit().stats()
}
