//! The pass pipeline: `verify → simplify → fusion → plan`, timed per pass, with an optional dump
//! of every stage (text, JSON and DOT of the graph after each graph pass, the fused graph and the
//! schedule after fusion and planning, and the figures) into a directory — `KILN_DUMP=<dir>`,
//! [`set_dump_dir`] or [`PipelineOptions::dump_dir`] — or into memory ([`compile_dumped`]).
//!
//! Dump files are named `<graph hash>.<pass order>-<pass>.<kind>` so that they sort in pipeline
//! order and the files of one graph stay together; [`crate::dump`] lists them.

use crate::dump::{self, DumpFile};
use crate::error::{Error, Result};
use crate::kernel::{Role, Schedule, Step};
use crate::{fusion, plan, simplify};
use kiln_ir::{DotStyle, Graph, NodeId};
use std::fmt;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Instant;

/// The passes, in order.
pub const PASSES: &[(&str, &str)] = &[
    ("verify", "check the graph's invariants (types, operands, acyclic)"),
    ("simplify", "constant folding, algebraic identities, CSE, dead-code elimination"),
    ("fusion", "partition into fused kernels and matmuls (decides what is kept vs recomputed)"),
    ("plan", "buffer liveness and arena placement (in-place reuse), peak bytes"),
];

#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// Write every stage here (defaults to `KILN_DUMP` when set).
    pub dump_dir: Option<PathBuf>,
}

/// The dump directory set by [`set_dump_dir`] (wins over `KILN_DUMP`).
static DUMP_DIR: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Makes every later compilation of the process (the JIT backend's included) dump its stages into
/// `dir` — the API equivalent of `KILN_DUMP=<dir>`, taking precedence over it; `None` goes back
/// to `KILN_DUMP`.
///
/// ```
/// use kiln_passes::pipeline::{set_dump_dir, PipelineOptions};
/// let dir = std::env::temp_dir().join("kiln-doc-dump");
/// set_dump_dir(Some(dir.clone()));
/// assert_eq!(PipelineOptions::from_env().dump_dir, Some(dir));
/// set_dump_dir(None);
/// ```
pub fn set_dump_dir(dir: Option<PathBuf>) {
    *DUMP_DIR.write().unwrap_or_else(|p| p.into_inner()) = dir;
}

impl PipelineOptions {
    /// Options from the process: the directory of [`set_dump_dir`], else `KILN_DUMP`.
    pub fn from_env() -> PipelineOptions {
        let set = DUMP_DIR.read().unwrap_or_else(|p| p.into_inner()).clone();
        PipelineOptions { dump_dir: set.or_else(|| std::env::var_os("KILN_DUMP").map(PathBuf::from)) }
    }
}

/// Figures of one compilation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub graph_hash: u64,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub kernels: usize,
    pub matmuls: usize,
    /// Bytes of computed buffers if each had its own memory (every realized value kept).
    pub unshared_bytes: usize,
    /// Peak arena bytes after planning.
    pub peak_bytes: usize,
    /// Bytes of intermediate values kept in buffers (computed, not outputs): in a training
    /// step, what the backward keeps from the forward plus the backward's own temporaries —
    /// everything else is recomputed inside kernels.
    pub kept_bytes: usize,
    pub in_place: usize,
    /// (pass, microseconds).
    pub pass_micros: Vec<(&'static str, f64)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {:016x}", self.graph_hash)?;
        writeln!(f, "nodes: {} before, {} after simplify", self.nodes_before, self.nodes_after)?;
        writeln!(f, "steps: {} kernels, {} matmuls", self.kernels, self.matmuls)?;
        writeln!(
            f,
            "memory: {} B unshared, {} B peak arena, {} in place, {} B of intermediates kept",
            self.unshared_bytes, self.peak_bytes, self.in_place, self.kept_bytes
        )?;
        for (p, us) in &self.pass_micros {
            writeln!(f, "pass {p}: {us:.1} µs")?;
        }
        Ok(())
    }
}

/// What the pipeline produces: the simplified graph, its planned schedule and the figures.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub graph: Graph,
    pub schedule: Schedule,
    pub report: Report,
}

/// Collects the dump files of one compilation (only when asked: rendering costs time).
struct Dumper {
    on: bool,
    files: Vec<DumpFile>,
    order: usize,
    style: DotStyle,
}

impl Dumper {
    fn stage(&mut self, pass: &'static str, files: Vec<(&'static str, String)>) {
        let order = self.order;
        self.files.extend(files.into_iter().map(|(kind, body)| DumpFile { order, pass, kind, body }));
        self.order += 1;
    }

    fn graph(&mut self, pass: &'static str, g: &Graph) {
        if self.on {
            let dot = g.to_dot_with(&self.style);
            self.stage(pass, vec![("txt", g.to_text()), ("json", g.to_json()), ("dot", dot)]);
        }
    }

    /// The fused graph `g` under schedule `s`: schedule text, partition JSON, clustered DOT, and
    /// after planning the figures (text, and in the JSON).
    fn fused(
        &mut self,
        pass: &'static str,
        g: &Graph,
        s: &Schedule,
        sources: &[NodeId],
        report: Option<&Report>,
    ) {
        if !self.on {
            return;
        }
        let mut json = dump::partition_json(g, s, sources);
        let mut files = vec![("schedule.txt", s.to_string())];
        if let Some(r) = report {
            json["figures"] = dump::report_json(r);
            files.push(("report.txt", r.to_string()));
        }
        files.push(("json", dump::pretty(&json)));
        files.push(("dot", g.to_dot_with(&dump::fused_style(g, s, sources, self.style.clone()))));
        self.stage(pass, files);
    }

    /// Writes the files into `dir`.
    fn write(&self, dir: &std::path::Path, hash: u64) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Schedule(format!("KILN_DUMP {}: {e}", dir.display())))?;
        for f in &self.files {
            let p = dir.join(f.file_name(hash));
            std::fs::write(&p, &f.body)
                .map_err(|e| Error::Schedule(format!("writing {}: {e}", p.display())))?;
        }
        Ok(())
    }
}

/// Runs the standard pipeline on a copy of `g`, dumping every stage into `opts.dump_dir` when set.
///
/// ```
/// let g = kiln_passes::workloads::w1(1024, true).unwrap();
/// let c = kiln_passes::pipeline::compile(&g, &Default::default()).unwrap();
/// assert_eq!(c.report.kernels, 1);
/// ```
pub fn compile(g: &Graph, opts: &PipelineOptions) -> Result<Compiled> {
    let mut dump =
        Dumper { on: opts.dump_dir.is_some(), files: Vec::new(), order: 0, style: DotStyle::default() };
    let compiled = run(g, &mut dump)?;
    if let Some(dir) = &opts.dump_dir {
        dump.write(dir, compiled.report.graph_hash)?;
    }
    Ok(compiled)
}

/// [`compile`] that returns the dump of every stage (the files `KILN_DUMP` writes, named by
/// [`DumpFile::file_name`] with the report's `graph_hash`) instead of writing it. The DOT
/// pictures start from `style` (e.g. [`DotStyle::reverse`] to tell the reverse graph apart).
///
/// ```
/// let g = kiln_passes::workloads::w1(64, true).unwrap();
/// let (c, files) = kiln_passes::pipeline::compile_dumped(&g, &Default::default()).unwrap();
/// let fused = files.iter().find(|f| f.pass == "fusion" && f.kind == "dot").unwrap();
/// assert!(fused.body.contains("subgraph cluster_0"));
/// assert_eq!(c.report.kernels, 1);
/// ```
pub fn compile_dumped(g: &Graph, style: &DotStyle) -> Result<(Compiled, Vec<DumpFile>)> {
    let mut dump = Dumper { on: true, files: Vec::new(), order: 0, style: style.clone() };
    let compiled = run(g, &mut dump)?;
    Ok((compiled, dump.files))
}

fn run(g: &Graph, dump: &mut Dumper) -> Result<Compiled> {
    let mut report = Report { graph_hash: g.structural_hash(), nodes_before: g.len(), ..Report::default() };
    let timed = |name: &'static str, t: Instant, report: &mut Report| {
        report.pass_micros.push((name, t.elapsed().as_secs_f64() * 1e6));
    };
    dump.graph("input", g);

    let t = Instant::now();
    g.verify()?;
    timed("verify", t, &mut report);

    let t = Instant::now();
    let mut graph = g.clone();
    simplify(&mut graph)?;
    timed("simplify", t, &mut report);
    report.nodes_after = graph.len();
    dump.graph("simplify", &graph);

    let t = Instant::now();
    let (mut schedule, sources) = fusion::schedule_with_sources(&graph)?;
    timed("fusion", t, &mut report);
    dump.fused("fusion", &graph, &schedule, &sources, None);

    let t = Instant::now();
    let mp = plan::plan_memory(&mut schedule);
    timed("plan", t, &mut report);
    report.kernels = schedule.steps.iter().filter(|s| matches!(s, Step::Kernel(_))).count();
    report.matmuls = schedule.steps.len() - report.kernels;
    report.unshared_bytes = mp.naive_bytes;
    report.peak_bytes = mp.arena_bytes;
    report.in_place = mp.in_place;
    report.kept_bytes = schedule
        .buffers
        .iter()
        .enumerate()
        .filter(|(i, b)| b.role == Role::Computed && !schedule.outputs.iter().any(|(o, _)| o == i))
        .map(|(_, b)| b.bytes())
        .sum();
    dump.fused("plan", &graph, &schedule, &sources, Some(&report));
    Ok(Compiled { graph, schedule, report })
}
