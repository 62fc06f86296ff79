//! What the pipeline shows of each stage: the files `KILN_DUMP` writes (and
//! [`crate::pipeline::compile_dumped`] returns), and the picture of a fused graph.
//!
//! Every file is named `<graph hash>.<order>-<pass>.<kind>`: the hash (16 hex digits, the
//! structural hash of the graph handed to the pipeline) keeps the files of one graph together,
//! the order makes them sort in pipeline order.
//!
//! | file | what |
//! |---|---|
//! | `H.0-input.{txt,json,dot}` | the graph as handed to the pipeline |
//! | `H.1-simplify.{txt,json,dot}` | after simplification |
//! | `H.2-fusion.schedule.txt` | the kernel schedule (loop nests over buffers) |
//! | `H.2-fusion.json` | which graph nodes each kernel computes, each buffer's node and bytes |
//! | `H.2-fusion.dot` | the simplified graph with each fused kernel drawn as a dashed box |
//! | `H.3-plan.schedule.txt` | the schedule with arena offsets |
//! | `H.3-plan.json` | the partition with arena offsets, and the figures |
//! | `H.3-plan.dot` | the fused graph with each kept buffer's arena offset |
//! | `H.3-plan.report.txt` | the figures: kernels, bytes kept, peak bytes, time per pass |
//! | `H.4-codegen.clif` | the Cranelift IR of every kernel (written by the JIT backend) |
//!
//! Nodes are numbered as in the text form of the same graph (`%k`, the position in
//! [`Graph::topo_order`]), so the three forms of a stage and the partition agree.

use crate::kernel::{Role, Schedule, Step};
use crate::pipeline::Report;
use kiln_ir::{DotCluster, DotStyle, Graph, NodeId, Op};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// One file of a dump.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpFile {
    /// Position of the stage in the pipeline (`0` is the input graph).
    pub order: usize,
    /// The pass the file shows the result of (`input`, `simplify`, `fusion`, `plan`).
    pub pass: &'static str,
    /// What the file holds, which is also how its name ends: `txt`, `json`, `dot`,
    /// `schedule.txt`, `report.txt`.
    pub kind: &'static str,
    /// The contents.
    pub body: String,
}

impl DumpFile {
    /// The file's name for the graph with structural hash `hash`:
    /// `<hash:016x>.<order>-<pass>.<kind>`.
    ///
    /// ```
    /// use kiln_passes::dump::DumpFile;
    /// let f = DumpFile { order: 1, pass: "simplify", kind: "dot", body: String::new() };
    /// assert_eq!(f.file_name(0xabc), "0000000000000abc.1-simplify.dot");
    /// ```
    pub fn file_name(&self, hash: u64) -> String {
        format!("{hash:016x}.{}-{}.{}", self.order, self.pass, self.kind)
    }
}

/// Which nodes of a graph each step of its schedule computes.
struct Partition {
    /// Per node index: the steps whose code evaluates the node (empty for inputs, constants and
    /// dead nodes).
    steps_of: Vec<Vec<usize>>,
    /// Per node index: the buffer holding the node's value, if it has one.
    buffer_of: Vec<Option<usize>>,
}

/// Recovers the partition: a step computes the nodes whose buffers it writes and, walking back
/// through operands without a buffer, every node it inlines. A node inlined into several steps
/// is recomputed by each.
fn partition(g: &Graph, s: &Schedule, sources: &[NodeId]) -> Partition {
    let bound = g.node_bound();
    let mut buffer_of = vec![None; bound];
    for (b, &id) in sources.iter().enumerate() {
        buffer_of[id.index()] = Some(b);
    }
    let mut steps_of: Vec<Vec<usize>> = vec![Vec::new(); bound];
    for (k, step) in s.steps.iter().enumerate() {
        let mut stack: Vec<NodeId> =
            step.writes().into_iter().filter_map(|b| sources.get(b).copied()).collect();
        while let Some(id) = stack.pop() {
            if matches!(g.node(id).op, Op::Input { .. } | Op::Constant(_))
                || steps_of[id.index()].contains(&k)
            {
                continue;
            }
            steps_of[id.index()].push(k);
            stack.extend(g.operands(id).into_iter().filter(|o| buffer_of[o.index()].is_none()));
        }
    }
    Partition { steps_of, buffer_of }
}

fn step_name(step: &Step) -> &str {
    match step {
        Step::Kernel(k) => &k.name,
        Step::MatMul(m) => &m.name,
    }
}

fn step_label(step: &Step) -> String {
    match step {
        Step::Kernel(k) if k.reduce_axes.is_empty() => format!("kernel {} over {:?}", k.name, k.domain),
        Step::Kernel(k) => format!("kernel {} over {:?}, reduce {:?}", k.name, k.domain, k.reduce_axes),
        Step::MatMul(m) => format!("matmul {} (m={} k={} n={})", m.name, m.m, m.k, m.n),
    }
}

/// `base` plus the fused kernels of `s` (a schedule of `g` from
/// [`crate::fusion::schedule_with_sources`], which gave `sources`): one dashed cluster per step
/// holding the nodes only that step computes, a note on nodes recomputed by several steps, and
/// a note on each value kept in a buffer (its bytes, and its arena offset once planned).
///
/// ```
/// use kiln_passes::{dump::fused_style, fusion::schedule_with_sources};
/// let g = kiln_passes::workloads::w1(64, true).unwrap();
/// let (s, sources) = schedule_with_sources(&g).unwrap();
/// let dot = g.to_dot_with(&fused_style(&g, &s, &sources, Default::default()));
/// assert!(dot.contains("subgraph cluster_0"));
/// ```
pub fn fused_style(g: &Graph, s: &Schedule, sources: &[NodeId], base: DotStyle) -> DotStyle {
    let p = partition(g, s, sources);
    let mut style = base;
    let mut clusters: Vec<DotCluster> = s
        .steps
        .iter()
        .map(|st| DotCluster { label: step_label(st), nodes: Vec::new(), color: Some("steelblue".into()) })
        .collect();
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
    for &id in &order {
        let steps = &p.steps_of[id.index()];
        match steps.as_slice() {
            [] => {}
            [k] => clusters[*k].nodes.push(id),
            many => {
                let names: Vec<&str> = many.iter().map(|&k| step_name(&s.steps[k])).collect();
                style.notes.insert(id, format!("recomputed in {}", names.join(", ")));
            }
        }
        if let Some(b) = p.buffer_of[id.index()] {
            let buf = &s.buffers[b];
            if buf.role == Role::Computed {
                let at = buf.arena_offset.map(|o| format!(" @{o}")).unwrap_or_default();
                let note = format!("kept: b{b}, {} B{at}", buf.bytes());
                style
                    .notes
                    .entry(id)
                    .and_modify(|n| {
                        n.push('\n');
                        n.push_str(&note)
                    })
                    .or_insert(note);
            }
        }
    }
    clusters.retain(|c| !c.nodes.is_empty());
    style.clusters.extend(clusters);
    let legend =
        "dashed boxes: the kernels fusion made; \"kept\" values have buffers, the rest is recomputed";
    style.title = Some(match style.title.take() {
        Some(t) => format!("{t}\n{legend}"),
        None => legend.to_string(),
    });
    style
}

/// The partition as JSON: for each step its name, kind and the graph nodes it computes (`%k`
/// numbers of the text form), for each buffer the node it holds, its role and bytes (and arena
/// offset once planned).
pub fn partition_json(g: &Graph, s: &Schedule, sources: &[NodeId]) -> Json {
    let p = partition(g, s, sources);
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
    let mut number = BTreeMap::new();
    for (k, id) in order.iter().enumerate() {
        number.insert(id.index(), k);
    }
    let num = |id: NodeId| number.get(&id.index()).copied();
    let steps: Vec<Json> = s
        .steps
        .iter()
        .enumerate()
        .map(|(k, st)| {
            let nodes: Vec<usize> = order
                .iter()
                .filter(|id| p.steps_of[id.index()].contains(&k))
                .filter_map(|&id| num(id))
                .collect();
            let mut j = json!({
                "name": step_name(st),
                "nodes": nodes,
                "reads": st.reads().into_iter().collect::<std::collections::BTreeSet<_>>(),
                "writes": st.writes(),
            });
            match st {
                Step::Kernel(kr) => {
                    j["kind"] = json!("kernel");
                    j["domain"] = json!(kr.domain);
                    j["reduce_axes"] = json!(kr.reduce_axes);
                }
                Step::MatMul(m) => {
                    j["kind"] = json!("matmul");
                    j["batch"] = json!(m.batch);
                    j["mkn"] = json!([m.m, m.k, m.n]);
                }
            }
            j
        })
        .collect();
    let buffers: Vec<Json> = s
        .buffers
        .iter()
        .zip(sources)
        .map(|(b, &id)| {
            let role = match &b.role {
                Role::Input(k) => format!("input {k}"),
                Role::Constant(_) => "constant".into(),
                Role::Computed => "computed".into(),
            };
            json!({
                "node": num(id),
                "dtype": b.dtype.to_string(),
                "numel": b.numel,
                "bytes": b.bytes(),
                "role": role,
                "arena_offset": b.arena_offset,
            })
        })
        .collect();
    json!({ "steps": steps, "buffers": buffers, "outputs": s.outputs.iter().map(|(b, _)| b).collect::<Vec<_>>() })
}

/// The figures of a compilation as JSON (what `H.3-plan.json` holds under `figures`).
pub fn report_json(r: &Report) -> Json {
    let passes: BTreeMap<&str, f64> = r.pass_micros.iter().map(|&(p, us)| (p, us / 1000.0)).collect();
    json!({
        "graph_hash": format!("{:016x}", r.graph_hash),
        "nodes_before": r.nodes_before,
        "nodes_after": r.nodes_after,
        "kernels": r.kernels,
        "matmuls": r.matmuls,
        "kept_bytes": r.kept_bytes,
        "unshared_bytes": r.unshared_bytes,
        "peak_bytes": r.peak_bytes,
        "in_place": r.in_place,
        "compile_ms": r.pass_micros.iter().map(|(_, us)| us).sum::<f64>() / 1000.0,
        "pass_ms": passes,
    })
}

/// Pretty JSON text (serializing a `serde_json::Value` cannot fail).
pub(crate) fn pretty(j: &Json) -> String {
    serde_json::to_string_pretty(j).unwrap_or_default() + "\n"
}
