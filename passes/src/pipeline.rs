//! The pass pipeline: `verify → simplify → fusion → plan`, timed per pass, with an optional dump
//! of every stage (text, JSON and DOT of the graph after each graph pass, the schedule text after
//! fusion and planning, and the figures) into a directory — `KILN_DUMP=<dir>` or
//! [`PipelineOptions::dump_dir`].
//!
//! Dump files are named `<graph hash>.<pass order>-<pass>.<ext>` so that they sort in pipeline
//! order and the files of one graph stay together.

use crate::error::{Error, Result};
use crate::kernel::{Role, Schedule, Step};
use crate::{fusion, plan, simplify};
use kiln_ir::Graph;
use std::fmt;
use std::path::PathBuf;
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

impl PipelineOptions {
    /// Options from the environment (`KILN_DUMP`).
    pub fn from_env() -> PipelineOptions {
        PipelineOptions { dump_dir: std::env::var_os("KILN_DUMP").map(PathBuf::from) }
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

struct Dumper {
    dir: Option<PathBuf>,
    hash: u64,
    order: usize,
}

impl Dumper {
    fn write(&mut self, pass: &str, files: &[(&str, String)]) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Schedule(format!("KILN_DUMP {}: {e}", dir.display())))?;
        for (ext, body) in files {
            let p = dir.join(format!("{:016x}.{}-{pass}.{ext}", self.hash, self.order));
            std::fs::write(&p, body).map_err(|e| Error::Schedule(format!("writing {}: {e}", p.display())))?;
        }
        self.order += 1;
        Ok(())
    }

    fn graph(&mut self, pass: &str, g: &Graph) -> Result<()> {
        if self.dir.is_none() {
            return Ok(());
        }
        self.write(pass, &[("txt", g.to_text()), ("json", g.to_json()), ("dot", g.to_dot())])
    }
}

/// Runs the standard pipeline on a copy of `g`.
///
/// ```
/// let g = kiln_passes::workloads::w1(1024, true).unwrap();
/// let c = kiln_passes::pipeline::compile(&g, &Default::default()).unwrap();
/// assert_eq!(c.report.kernels, 1);
/// ```
pub fn compile(g: &Graph, opts: &PipelineOptions) -> Result<Compiled> {
    let mut report = Report { graph_hash: g.structural_hash(), nodes_before: g.len(), ..Report::default() };
    let mut dump = Dumper { dir: opts.dump_dir.clone(), hash: report.graph_hash, order: 0 };
    let timed = |name: &'static str, t: Instant, report: &mut Report| {
        report.pass_micros.push((name, t.elapsed().as_secs_f64() * 1e6));
    };
    dump.graph("input", g)?;

    let t = Instant::now();
    g.verify()?;
    timed("verify", t, &mut report);

    let t = Instant::now();
    let mut graph = g.clone();
    simplify(&mut graph)?;
    timed("simplify", t, &mut report);
    report.nodes_after = graph.len();
    dump.graph("simplify", &graph)?;

    let t = Instant::now();
    let mut schedule = fusion::schedule(&graph)?;
    timed("fusion", t, &mut report);
    dump.write("fusion", &[("schedule.txt", schedule.to_string())])?;

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
    dump.write("plan", &[("schedule.txt", schedule.to_string()), ("report.txt", report.to_string())])?;
    Ok(Compiled { graph, schedule, report })
}
