//! Graphviz DOT output: [`Graph::to_dot`] and, with annotations, [`Graph::to_dot_with`].
//!
//! Nodes are named `n0, n1, ...` by their position in the text form (so `n3` is `%3`) and
//! labelled by [`node_label`]: `%3 Mul`, the key attributes, then `f32[3,4]`. Inputs are blue
//! houses, parameters orange houses, constants grey notes, other ops white rounded boxes; each
//! output gets a green `output k` marker. Edges carry the type of the value they move
//! (`f32[3,4]`), prefixed by the operand position when an op has more than one operand
//! (`1: f32[3,4]`). Later passes add meaning through [`DotStyle`]: fill colours per node (the
//! reverse graph in [`REVERSE_FILL`], see [`DotStyle::reverse`]) and clusters (fused kernels,
//! drawn as dashed boxes).

use crate::graph::{Graph, NodeId};
use crate::literal::Literal;
use crate::op::Op;
use crate::text::{attributes, literal_text, type_text};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Annotations for [`Graph::to_dot_with`]. The default draws the plain graph.
#[derive(Clone, Debug, Default)]
pub struct DotStyle {
    /// A title drawn above the graph.
    pub title: Option<String>,
    /// Fill colours (any Graphviz colour) overriding the default for some nodes.
    pub fill: BTreeMap<NodeId, String>,
    /// Extra text appended to some nodes' labels (one more line each).
    pub notes: BTreeMap<NodeId, String>,
    /// Groups of nodes drawn inside a labelled box, in order. A node should be in at most one.
    pub clusters: Vec<DotCluster>,
}

/// A labelled group of nodes, drawn as a Graphviz `subgraph cluster_k`.
#[derive(Clone, Debug, Default)]
pub struct DotCluster {
    /// The box's label.
    pub label: String,
    /// The member nodes.
    pub nodes: Vec<NodeId>,
    /// The box's border colour (Graphviz default when `None`).
    pub color: Option<String>,
}

/// The fill of reverse-graph (autodiff) nodes set by [`DotStyle::reverse`].
pub const REVERSE_FILL: &str = "mistyrose";

impl DotStyle {
    /// Marks `nodes` as the reverse graph: filled with [`REVERSE_FILL`] (forward ops stay white),
    /// with a legend line added to the title.
    ///
    /// ```
    /// use kiln_ir::{DType, DotStyle, Graph};
    /// let mut g = Graph::new();
    /// let x = g.input("x", DType::F32, [3]);
    /// let y = g.neg(x).unwrap();
    /// g.set_outputs(vec![y]);
    /// let dot = g.to_dot_with(&DotStyle::default().reverse([y]));
    /// assert!(dot.contains("n1 [label=\"%1 Neg\\nf32[3]\", shape=box, style=\"rounded,filled\", fillcolor=\"mistyrose\"]"));
    /// ```
    pub fn reverse(mut self, nodes: impl IntoIterator<Item = NodeId>) -> DotStyle {
        for id in nodes {
            self.fill.insert(id, REVERSE_FILL.to_string());
        }
        let legend = "white: forward graph · pink: reverse graph (autodiff)";
        self.title = Some(match self.title.take() {
            Some(t) => format!("{t}\n{legend}"),
            None => legend.to_string(),
        });
        self
    }
}

/// How many constant elements a label shows before it abbreviates to a count.
const MAX_SHOWN_VALUES: usize = 4;

/// The label of node `id` in the DOT form, lines separated by `\n`: `%k Op` (or the input's name),
/// the key attributes, then the result type. `k` is the node's position in `order`.
pub fn node_label(graph: &Graph, id: NodeId, k: usize) -> String {
    let node = graph.node(id);
    let mut lines = Vec::new();
    match &node.op {
        Op::Input { name, param } => {
            lines.push(format!("%{k} {} {name}", if *param { "Param" } else { "Input" }));
        }
        Op::Constant(lit) => {
            lines.push(format!("%{k} Constant"));
            lines.push(if lit.len() <= MAX_SHOWN_VALUES { literal_text(lit) } else { constant_summary(lit) });
        }
        op => {
            lines.push(format!("%{k} {}", op.name()));
            for (key, value) in attributes(op) {
                lines.push(format!("{key}={value}"));
            }
        }
    }
    lines.push(type_text(node.dtype, &node.shape));
    lines.join("\n")
}

fn constant_summary(lit: &Literal) -> String {
    match lit.uniform_value() {
        Some(v) => format!("{} × {v:?}", lit.len()),
        None => format!("<{} values>", lit.len()),
    }
}

/// Escapes a label for a DOT double-quoted string; `\n` becomes a centred line break.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

impl Graph {
    /// The graph in Graphviz DOT (`dot -Tsvg`), deterministic. See the [module docs](crate::dot).
    ///
    /// ```
    /// use kiln_ir::{DType, Graph};
    /// let mut g = Graph::new();
    /// let x = g.input("x", DType::F32, [3]);
    /// let y = g.mul(x, x).unwrap();
    /// g.set_outputs(vec![y]);
    /// let dot = g.to_dot();
    /// assert!(dot.starts_with("digraph kiln {"));
    /// assert!(dot.contains("n0 -> n1 [label=\"1: f32[3]\"]"));
    /// ```
    pub fn to_dot(&self) -> String {
        self.to_dot_with(&DotStyle::default())
    }

    /// [`Graph::to_dot`] with annotations: colours, notes and clusters from `style`.
    pub fn to_dot_with(&self, style: &DotStyle) -> String {
        let order = self.topo_order().unwrap_or_else(|_| self.node_ids().collect());
        let mut pos = vec![usize::MAX; self.node_bound()];
        for (k, &id) in order.iter().enumerate() {
            pos[id.index()] = k;
        }
        let name = |id: NodeId| format!("n{}", pos.get(id.index()).copied().unwrap_or(usize::MAX));
        let mut out = String::from("digraph kiln {\n");
        out.push_str("  rankdir=TB;\n");
        out.push_str("  graph [fontname=\"Helvetica\", fontsize=11];\n");
        out.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n");
        out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
        if let Some(title) = &style.title {
            let _ = writeln!(out, "  label=\"{}\";\n  labelloc=t;", escape(title));
        }
        let clustered: BTreeMap<NodeId, usize> = style
            .clusters
            .iter()
            .enumerate()
            .flat_map(|(c, cl)| cl.nodes.iter().map(move |&n| (n, c)))
            .collect();
        let node_line = |id: NodeId, k: usize| {
            let node = self.node(id);
            let (shape, fill) = match &node.op {
                Op::Input { param: false, .. } => ("invhouse", "lightblue"),
                Op::Input { param: true, .. } => ("invhouse", "orange"),
                Op::Constant(_) => ("note", "lightgrey"),
                _ => ("box", "white"),
            };
            let fill = style.fill.get(&id).map_or(fill, |s| s.as_str());
            let mut label = node_label(self, id, k);
            if let Some(note) = style.notes.get(&id) {
                label.push('\n');
                label.push_str(note);
            }
            let rounded = if shape == "box" { "rounded,filled" } else { "filled" };
            format!(
                "n{k} [label=\"{}\", shape={shape}, style=\"{rounded}\", fillcolor=\"{}\"];\n",
                escape(&label),
                escape(fill)
            )
        };
        for (k, &id) in order.iter().enumerate() {
            if !clustered.contains_key(&id) {
                out.push_str("  ");
                out.push_str(&node_line(id, k));
            }
        }
        for (c, cluster) in style.clusters.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_{c} {{");
            let _ = writeln!(out, "    label=\"{}\";", escape(&cluster.label));
            out.push_str("    style=\"rounded,dashed\";\n");
            if let Some(color) = &cluster.color {
                let _ = writeln!(out, "    color=\"{}\";", escape(color));
            }
            for (k, &id) in order.iter().enumerate() {
                if clustered.get(&id) == Some(&c) {
                    out.push_str("    ");
                    out.push_str(&node_line(id, k));
                }
            }
            out.push_str("  }\n");
        }
        for &id in &order {
            let operands = self.operands(id);
            let many = operands.len() > 1;
            for (slot, o) in operands.into_iter().enumerate() {
                let ty = self.try_node(o).map(|n| type_text(n.dtype, &n.shape)).unwrap_or_default();
                let label = if many { format!("{slot}: {ty}") } else { ty };
                let _ = writeln!(out, "  {} -> {} [label=\"{}\"];", name(o), name(id), escape(&label));
            }
        }
        for (k, &o) in self.outputs().iter().enumerate() {
            let _ = writeln!(
                out,
                "  out{k} [label=\"output {k}\", shape=house, style=filled, fillcolor=\"palegreen\"];"
            );
            if self.contains(o) {
                let _ = writeln!(out, "  {} -> out{k} [style=dashed];", name(o));
            }
        }
        out.push_str("}\n");
        out
    }
}
