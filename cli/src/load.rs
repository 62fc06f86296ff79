//! Reading a graph file: the one entry point [`load_graph`], dispatching on the file's format.

use crate::error::{Error, Result};
use kiln_ir::json::GraphJson;
use kiln_ir::Graph;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::path::Path;

/// The formats a graph file can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// kiln's IR text form (`kiln_ir::text`).
    Text,
    /// kiln's JSON form (`kiln_ir::json`).
    Json,
    /// An ONNX model (`kiln_onnx`): initializers become parameter inputs with their values.
    Onnx,
}

impl GraphFormat {
    /// The format of `path`: `.json` is JSON and `.onnx` ONNX; any other file is JSON when its
    /// first non-blank character is `{`, IR text otherwise.
    ///
    /// ```
    /// use kiln_cli::GraphFormat;
    /// use std::path::Path;
    /// assert_eq!(GraphFormat::detect(Path::new("g.json"), b""), GraphFormat::Json);
    /// assert_eq!(GraphFormat::detect(Path::new("g"), b"  {\"nodes\": []}"), GraphFormat::Json);
    /// assert_eq!(GraphFormat::detect(Path::new("g.kiln"), b"%0 = Input()"), GraphFormat::Text);
    /// assert_eq!(GraphFormat::detect(Path::new("model.onnx"), b"\x08\x07"), GraphFormat::Onnx);
    /// ```
    pub fn detect(path: &Path, bytes: &[u8]) -> GraphFormat {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => GraphFormat::Json,
            Some("onnx") => GraphFormat::Onnx,
            _ if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => GraphFormat::Json,
            _ => GraphFormat::Text,
        }
    }
}

/// Reads the graph in `path`, whatever its format ([`GraphFormat::detect`]); every command that
/// takes a FILE goes through here. Errors name the file and, for a malformed one, the line and
/// column and what was expected there.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("g.txt");
/// std::fs::write(&path, "%x = Input() {name=\"x\"} : f32[3]\n%y = Exp(%x) : f32[2]\nreturn %y\n").unwrap();
/// let err = kiln_cli::load_graph(&path).unwrap_err().to_string();
/// assert!(err.ends_with("g.txt:2:16: Exp: the operands give f32[3], but the line declares f32[2]"), "{err}");
/// ```
pub fn load_graph(path: &Path) -> Result<Graph> {
    load_model(path).map(|m| m.graph)
}

/// A graph file as read: the graph, the values its parameters come with (an ONNX model's
/// initializers; none for kiln IR text or JSON) and the names of its outputs, when it has them.
pub struct Loaded {
    pub graph: Graph,
    pub params: Vec<(String, kiln_ir::interp::Value)>,
    pub output_names: Vec<String>,
}

/// Like [`load_graph`], with the parameter values and output names an ONNX model carries.
pub fn load_model(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let format = GraphFormat::detect(path, &bytes);
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
            let (line, col) = line_col(prefix, valid);
            Error::At {
                path: path.display().to_string(),
                line,
                col,
                msg: "expected UTF-8 text (kiln IR text or JSON); this file is binary".into(),
            }
        })
    };
    let graph = match format {
        GraphFormat::Text => from_text(path, &text(bytes)?)?,
        GraphFormat::Json => from_json(path, &text(bytes)?)?,
        GraphFormat::Onnx => {
            // The importer's errors already name the file, the node and the reason.
            let m = kiln_onnx::import_bytes(&bytes, &Default::default()).map_err(|e| {
                let msg = match e.location {
                    Some(loc) => format!("{loc}: {}", e.reason),
                    None => e.reason,
                };
                Error::file(path, msg)
            })?;
            return Ok(Loaded { graph: m.graph, params: m.initializers, output_names: m.output_names });
        }
    };
    Ok(Loaded { graph, params: Vec::new(), output_names: Vec::new() })
}

fn from_text(path: &Path, src: &str) -> Result<Graph> {
    kiln_ir::parse(src).map_err(|e| match e {
        kiln_ir::Error::Parse { line, col, msg } => {
            Error::At { path: path.display().to_string(), line, col, msg }
        }
        other => Error::file(path, other.to_string()),
    })
}

/// The parts of a JSON graph whose position in the file an error can point at.
#[derive(Deserialize)]
struct Spans<'a> {
    #[serde(borrow, default)]
    version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    nodes: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    inputs: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    outputs: Vec<&'a RawValue>,
}

fn from_json(path: &Path, src: &str) -> Result<Graph> {
    let at =
        |line: usize, col: usize, msg: String| Error::At { path: path.display().to_string(), line, col, msg };
    let doc: GraphJson = serde_json::from_str(src).map_err(|e| {
        let msg = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        at(e.line(), e.column(), msg.strip_suffix(&suffix).unwrap_or(&msg).to_string())
    })?;
    Graph::from_json_value(&doc).map_err(|e| {
        let msg = match e {
            kiln_ir::Error::Json(m) => m,
            other => other.to_string(),
        };
        // Point at the element the message names ("node 3 ...", "inputs[1] ...", "outputs[0] ...").
        let spans: Option<Spans> = serde_json::from_str(src).ok();
        let offset = spans.as_ref().and_then(|s| {
            let indexed = |prefix: &str, list: &[&RawValue]| -> Option<usize> {
                let rest = msg.strip_prefix(prefix)?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                list.get(digits.parse::<usize>().ok()?).map(|r| offset_in(src, r))
            };
            indexed("node ", &s.nodes)
                .or_else(|| indexed("inputs[", &s.inputs))
                .or_else(|| indexed("outputs[", &s.outputs))
                .or_else(|| {
                    msg.starts_with("unsupported version").then(|| s.version.map(|v| offset_in(src, v)))?
                })
        });
        let (line, col) = line_col(src, offset.unwrap_or(0));
        at(line, col, msg)
    })
}

/// Byte offset of a borrowed raw JSON value inside the source it was read from.
fn offset_in(src: &str, raw: &RawValue) -> usize {
    (raw.get().as_ptr() as usize).saturating_sub(src.as_ptr() as usize).min(src.len())
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let before = &src[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
