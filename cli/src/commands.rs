//! The subcommands. Each returns what it prints on stdout, so that `main` only prints and sets
//! the exit status.

use crate::error::{Error, Result};
use crate::load::{load_graph, load_model, Loaded};
use crate::{npy, render};
use kiln_ir::{DotStyle, Graph, NodeId};
use kiln_passes::pipeline::{self, PASSES};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How a graph is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// kiln's IR text form (after `fusion`/`plan`: the kernel schedule).
    Text,
    /// kiln's JSON form (after `fusion`/`plan`: the partition into kernels).
    Json,
    /// Graphviz DOT (after `fusion`/`plan`: fused kernels drawn as boxes).
    Dot,
    /// SVG drawn from the DOT by Graphviz's `dot`.
    Svg,
}

/// The pipeline stage to show (see `kiln passes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pass {
    Verify,
    Simplify,
    Fusion,
    Plan,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Verify => "verify",
            Pass::Simplify => "simplify",
            Pass::Fusion => "fusion",
            Pass::Plan => "plan",
        }
    }
}

/// A graph with its reverse graph appended ([`append_reverse`]).
#[derive(Clone, Debug)]
pub struct Reversed {
    /// The graph; its outputs are the original outputs followed by one gradient per `wrt` name.
    pub graph: Graph,
    /// The nodes autodiff added (they follow every forward node in the text form).
    pub reverse: Vec<NodeId>,
    /// How many outputs the graph had before.
    pub forward_outputs: usize,
}

/// Appends the reverse graph of `g`: the gradient of the sum of its float outputs (each seeded
/// with ones, like `y.backward(ones_like(y))`) with respect to the inputs named in `wrt`, which
/// become extra outputs in that order.
///
/// ```
/// let g = kiln_ir::parse(
///     "%x = Input() {name=\"x\"} : f32[3]\n%y = Mul(%x, %x) : f32[3]\nreturn %y",
/// ).unwrap();
/// let r = kiln_cli::append_reverse(g, &["x".to_string()]).unwrap();
/// assert_eq!(r.graph.outputs().len(), 2);
/// assert_eq!(r.forward_outputs, 1);
/// ```
pub fn append_reverse(g: Graph, wrt: &[String]) -> Result<Reversed> {
    append_reverse_seeded(g, wrt, |g, _, o| Ok(kiln_passes::ones_like(g, o)))
}

/// [`append_reverse`] with the gradient flowing into float output `k` (node `o`) made by
/// `seed(graph, k, o)` instead of ones.
pub fn append_reverse_seeded(
    mut g: Graph,
    wrt: &[String],
    mut seed: impl FnMut(&mut Graph, usize, NodeId) -> Result<NodeId>,
) -> Result<Reversed> {
    let bound = g.node_bound();
    let mut wrt_ids = Vec::with_capacity(wrt.len());
    for name in wrt {
        let id = g.input_named(name).ok_or_else(|| {
            let names: Vec<&str> = g.inputs().iter().filter_map(|&i| g.input_name(i)).collect();
            Error::Usage(format!(
                "--wrt: the graph has no input named '{name}' (its inputs: {})",
                names.join(", ")
            ))
        })?;
        wrt_ids.push(id);
    }
    let outputs = g.outputs().to_vec();
    let float_outputs: Vec<(usize, NodeId)> =
        outputs.iter().copied().enumerate().filter(|&(_, o)| g.node(o).dtype.is_float()).collect();
    if float_outputs.is_empty() {
        return Err(Error::Usage("the graph has no float output to differentiate".into()));
    }
    let seeds = float_outputs.iter().map(|&(k, o)| seed(&mut g, k, o)).collect::<Result<Vec<_>>>()?;
    let float_outputs: Vec<NodeId> = float_outputs.into_iter().map(|(_, o)| o).collect();
    let grads = kiln_passes::grad(&mut g, &float_outputs, &seeds, &wrt_ids)?;
    let mut new_outputs = outputs.clone();
    for (name, d) in wrt.iter().zip(grads) {
        new_outputs.push(d.ok_or_else(|| {
            Error::Usage(format!("--wrt: '{name}' does not reach any float output, so it has no gradient"))
        })?);
    }
    g.set_outputs(new_outputs);
    let reverse = g.node_ids().filter(|id| id.index() >= bound).collect();
    Ok(Reversed { graph: g, reverse, forward_outputs: outputs.len() })
}

/// `kiln dump`: the graph in `file` (with the reverse graph for `wrt` appended, if any) as read,
/// or after pass `after`, in `format`.
pub fn dump(file: &Path, after: Option<Pass>, format: Format, wrt: &[String]) -> Result<String> {
    let g = load_graph(file)?;
    let (g, style) = if wrt.is_empty() {
        (g, DotStyle::default())
    } else {
        let r = append_reverse(g, wrt)?;
        (r.graph, DotStyle::default().reverse(r.reverse))
    };
    g.verify()?;
    let pass = match after {
        None | Some(Pass::Verify) => return graph_output(&g, format, &style, g.to_text()),
        Some(p) => p.name(),
    };
    let (_, files) = pipeline::compile_dumped(&g, &style)?;
    let pick = |kind: &str| {
        files
            .iter()
            .find(|f| f.pass == pass && f.kind == kind)
            .map(|f| f.body.clone())
            .ok_or_else(|| Error::Usage(format!("the pipeline wrote no {kind} after {pass}")))
    };
    let graph_pass = matches!(after, Some(Pass::Simplify));
    match format {
        Format::Text if graph_pass => pick("txt"),
        Format::Text => {
            let mut out = pick("schedule.txt")?;
            if let Ok(report) = pick("report.txt") {
                out.push_str(&report);
            }
            Ok(out)
        }
        Format::Json => pick("json"),
        Format::Dot => pick("dot"),
        Format::Svg => render::svg(&pick("dot")?),
    }
}

/// The graph itself in `format`; `text` is its text form (with any comments the caller adds).
fn graph_output(g: &Graph, format: Format, style: &DotStyle, text: String) -> Result<String> {
    match format {
        Format::Text => Ok(text),
        Format::Json => Ok(g.to_json() + "\n"),
        Format::Dot => Ok(g.to_dot_with(style)),
        Format::Svg => render::svg(&g.to_dot_with(style)),
    }
}

/// `kiln grad`: the graph in `file` with its reverse graph appended (see [`append_reverse`]).
/// The text form marks where the reverse graph starts and which outputs are gradients.
pub fn grad(file: &Path, wrt: &[String], format: Format) -> Result<String> {
    let r = append_reverse(load_graph(file)?, wrt)?;
    r.graph.verify()?;
    let g = &r.graph;
    let first_reverse = g.len() - r.reverse.len();
    let mut text = String::new();
    let n = g.outputs().len();
    let list = |r: std::ops::Range<usize>| r.map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
    let of = match r.forward_outputs {
        1 => "output 0".to_string(),
        k => format!("the sum of outputs {}", list(0..k)),
    };
    let _ = writeln!(
        text,
        "# kiln grad: outputs {} are the gradients of {of} w.r.t. {}",
        list(r.forward_outputs..n),
        wrt.join(", ")
    );
    for line in g.to_text().lines() {
        if line.starts_with(&format!("%{first_reverse} ")) {
            text.push_str("# reverse graph (appended by autodiff)\n");
        }
        text.push_str(line);
        text.push('\n');
    }
    graph_output(g, format, &DotStyle::default().reverse(r.reverse.clone()), text)
}

/// `kiln run`: evaluates the graph in `file` on `backend` (`jit` or `interp`) with the named
/// `.npy` inputs; writes `out<k>.npy` into `output` or prints the outputs.
pub fn run(
    file: &Path,
    inputs: &[(String, PathBuf)],
    output: Option<&Path>,
    backend: &str,
) -> Result<String> {
    let loaded = load_model(file)?;
    let g = &loaded.graph;
    g.verify()?;
    let values = input_values(&loaded, inputs, &[])?;
    let backend = kiln_codegen::backend_named(backend).map_err(Error::Usage)?;
    let outs = backend.run(g, &values)?;
    let mut text = String::new();
    match output {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
            for (k, v) in outs.iter().enumerate() {
                let path = dir.join(format!("out{k}.npy"));
                npy::write_value(&path, v)?;
                let _ = writeln!(
                    text,
                    "out{k} {} -> {}",
                    kiln_ir::text::type_text(v.dtype(), &v.shape()),
                    path.display()
                );
            }
        }
        None => {
            for (k, v) in outs.iter().enumerate() {
                text.push_str(&labelled(&format!("out{k}"), v));
            }
        }
    }
    Ok(text)
}

/// The value of every input of the loaded graph, in input order: from `--input NAME=PATH`
/// (`.npy`, or an ONNX `TensorProto` `.pb`), else `extra` (cotangents), else the value the
/// parameter came with (an ONNX initializer).
fn input_values(
    loaded: &Loaded,
    inputs: &[(String, PathBuf)],
    extra: &[(String, kiln_ir::interp::Value)],
) -> Result<Vec<kiln_ir::interp::Value>> {
    let g = &loaded.graph;
    let names: Vec<&str> = g.inputs().iter().map(|&i| g.input_name(i).unwrap_or("?")).collect();
    for (k, (name, _)) in inputs.iter().enumerate() {
        if !names.contains(&name.as_str()) {
            return Err(Error::Usage(format!(
                "--input {name}: the graph has no input named '{name}' (its inputs: {})",
                names.join(", ")
            )));
        }
        if inputs[..k].iter().any(|(n, _)| n == name) {
            return Err(Error::Usage(format!("--input {name} is given twice")));
        }
    }
    let given = |n: &str| inputs.iter().any(|(m, _)| m == n) || extra.iter().any(|(m, _)| m == n);
    let default = |n: &str| loaded.params.iter().find(|(m, _)| m == n).map(|(_, v)| v.clone());
    let missing: Vec<String> = g
        .inputs()
        .iter()
        .zip(&names)
        .filter(|(_, n)| !given(n) && default(n).is_none())
        .map(|(&i, n)| format!("{n} ({})", kiln_ir::text::type_text(g.node(i).dtype, &g.node(i).shape)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!("missing --input NAME=PATH.npy for: {}", missing.join(", "))));
    }
    g.inputs()
        .iter()
        .zip(&names)
        .map(|(&i, name)| {
            let node = g.node(i);
            if let Some((_, path)) = inputs.iter().find(|(n, _)| n == name) {
                return read_input(path, name, node.dtype, &node.shape);
            }
            if let Some((_, v)) = extra.iter().find(|(n, _)| n == name) {
                return Ok(v.clone());
            }
            Ok(default(name).expect("checked above"))
        })
        .collect()
}

/// Reads an input value: an ONNX `TensorProto` (`.pb`, as in ONNX's test data) or `.npy`.
fn read_input(
    path: &Path,
    name: &str,
    dtype: kiln_ir::DType,
    shape: &kiln_ir::Shape,
) -> Result<kiln_ir::interp::Value> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pb")) {
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        let (_, v) = kiln_onnx::tensor::decode_tensor(&bytes).map_err(|e| Error::file(path, e.reason))?;
        if v.dtype() != dtype || v.shape() != *shape {
            return Err(Error::file(
                path,
                format!(
                    "holds a {}, but input '{name}' is {}",
                    kiln_ir::text::type_text(v.dtype(), &v.shape()),
                    kiln_ir::text::type_text(dtype, shape)
                ),
            ));
        }
        return Ok(v);
    }
    npy::read_value(path, name, dtype, shape)
}

/// `kiln grad` with values: the gradients of the outputs (each seeded with its `--cotangent`, or
/// ones) w.r.t. the inputs in `wrt`, evaluated on `backend` at the given inputs (parameters of
/// an ONNX model default to their initializers). A cotangent is named by output position or
/// (ONNX) output name.
pub fn grad_values(
    file: &Path,
    wrt: &[String],
    inputs: &[(String, PathBuf)],
    cotangents: &[(String, PathBuf)],
    backend: &str,
) -> Result<String> {
    let Loaded { graph: g, params, output_names } = load_model(file)?;
    let outputs = g.outputs().to_vec();
    let position = |key: &str| -> Result<usize> {
        key.parse::<usize>()
            .ok()
            .filter(|&k| k < outputs.len())
            .or_else(|| output_names.iter().position(|n| n == key))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--cotangent {key}: no such output (give its position 0..{} or its name{})",
                    outputs.len(),
                    if output_names.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", output_names.join(", "))
                    }
                ))
            })
    };
    let mut seeds_given: Vec<Option<&PathBuf>> = vec![None; outputs.len()];
    for (key, path) in cotangents {
        let k = position(key)?;
        if seeds_given[k].replace(path).is_some() {
            return Err(Error::Usage(format!("--cotangent for output {k} is given twice")));
        }
    }
    for (k, path) in seeds_given.iter().enumerate() {
        if path.is_some() && !g.node(outputs[k]).dtype.is_float() {
            return Err(Error::Usage(format!("--cotangent: output {k} is not a float value")));
        }
    }
    let mut extra = vec![];
    let r = append_reverse_seeded(g, wrt, |g, k, o| match seeds_given[k] {
        Some(path) => {
            let (dtype, shape) = (g.node(o).dtype, g.node(o).shape.clone());
            let name = format!("cotangent{k}");
            extra.push((name.clone(), read_input(path, &name, dtype, &shape)?));
            Ok(g.input(name, dtype, shape))
        }
        None => Ok(kiln_passes::ones_like(g, o)),
    })?;
    // Only the gradients are evaluated.
    let mut g = r.graph;
    let grads = g.outputs()[r.forward_outputs..].to_vec();
    g.set_outputs(grads);
    g.verify()?;
    let evaluated = Loaded { graph: g, params, output_names: vec![] };
    let values = input_values(&evaluated, inputs, &extra)?;
    let backend = kiln_codegen::backend_named(backend).map_err(Error::Usage)?;
    let grads = backend.run(&evaluated.graph, &values)?;
    Ok(wrt.iter().zip(&grads).map(|(name, v)| labelled(&format!("d/d{name}"), v)).collect())
}

/// `label type` on one line, then the value as PyTorch prints it.
fn labelled(label: &str, v: &kiln_ir::interp::Value) -> String {
    format!("{label} {}\n{}\n", kiln_ir::text::type_text(v.dtype(), &v.shape()), tensor_text(v))
}

/// PyTorch's printing of a value (kiln's `Tensor` display).
fn tensor_text(v: &kiln_ir::interp::Value) -> String {
    use kiln_frontend::Tensor;
    use kiln_ir::interp::Value;
    let t = match v {
        Value::F32(a) => Tensor::from_ndarray(a),
        Value::F64(a) => Tensor::from_ndarray(a),
        Value::I64(a) => Tensor::from_ndarray(a),
        Value::Bool(a) => Tensor::from_ndarray(a),
    };
    t.to_string()
}

/// `kiln passes`: the pipeline in order, and what `KILN_DUMP` writes for each stage.
pub fn passes() -> String {
    let mut out =
        String::from("kiln's pipeline, in order (`kiln dump FILE --after PASS` shows a graph after one):\n");
    let width = PASSES.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    for (k, (name, what)) in PASSES.iter().enumerate() {
        let _ = writeln!(out, "  {}. {name:<width$}  {what}", k + 1);
    }
    out.push_str(
        "\nKILN_DUMP=<dir> writes every graph kiln compiles, named <graph hash>.<order>-<stage>.<kind>:\n",
    );
    let stages = [
        ("0-input.{txt,json,dot}", "the graph handed to the pipeline"),
        ("1-simplify.{txt,json,dot}", "after simplify"),
        ("2-fusion.{schedule.txt,json,dot}", "the fused kernels (DOT: one dashed box per kernel)"),
        ("3-plan.{schedule.txt,report.txt,json,dot}", "arena offsets, and the figures"),
        ("4-codegen.clif", "the Cranelift IR of every kernel (JIT backend)"),
    ];
    let width = stages.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    for (file, what) in stages {
        let _ = writeln!(out, "  {file:<width$}  {what}");
    }
    out
}
