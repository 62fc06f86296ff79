//! The deterministic text form of a graph: printed by [`Graph::to_text`] (and `Display`), read
//! back by [`parse`] (and `FromStr`).
//!
//! ```text
//! # z = w * x + b
//! %0 = Input() {name="x"} : f32[3,4]
//! %1 = Input() {name="w", param=true} : f32[4]
//! %2 = Constant() {value=[2.0]} : f32[]
//! %3 = Mul(%0, %1) : f32[3,4]
//! %4 = ReduceSum(%3) {axes=[1], keepdims=false} : f32[3]
//! return %4, %3
//! ```
//!
//! # Grammar
//!
//! The input is read line by line. Blank lines and lines whose first non-blank character is `#`
//! are ignored, and `#` outside a string starts a comment that runs to the end of the line.
//!
//! ```text
//! line   := def | 'return' [id (',' id)*]
//! def    := id '=' OP '(' [id (',' id)*] ')' ['{' [attr (',' attr)*] '}'] ':' type
//! id     := '%' [A-Za-z0-9_]+
//! attr   := NAME '=' value
//! value  := STRING | scalar | '[' [scalar (',' scalar)*] ']'
//! scalar := NUMBER | NAME                       (NAME: true, false, inf, NaN, a dtype)
//! type   := DTYPE '[' [NUMBER (',' NUMBER)*] ']'  (f32[3,4]; a scalar is f32[])
//! ```
//!
//! Exactly one `return` line ends the graph; only comments may follow it. Ids may be any distinct
//! names; each must be defined on an earlier line than its uses. The printer numbers nodes densely
//! in [`Graph::topo_order`] order, so `parse(&g.to_text())?.to_text() == g.to_text()`.
//!
//! Attributes, in the order the printer writes them (the parser accepts any order):
//!
//! | op | attributes |
//! |----|------------|
//! | `Input` | `name` (string), `param` (bool, printed only when true, default false) |
//! | `Constant` | `value`: the elements in row-major order as one flat list |
//! | `Cast` | `to` (a dtype name) |
//! | `ReduceSum`, `ReduceMax`, `ReduceMean` | `axes` (ints), `keepdims` (bool) |
//! | `Reshape`, `Expand` | `shape` (non-negative ints) |
//! | `Transpose` | `perm` (non-negative ints) |
//! | `Slice` | `starts`, `ends`, `axes`, `steps` (ints) |
//! | `Concat` | `axis` (int) |
//!
//! Floats are written in Rust's shortest round-trip form (`{:?}`: `2.0`, `1e-7`, `inf`, `-inf`,
//! `NaN`), so every f32 and f64 value reads back bit for bit — except that NaN signs and
//! payloads are not kept: every NaN reads back as the canonical NaN.
//!
//! The parser checks each declared `: dtype[shape]` against [`Op::infer`]; every error is an
//! [`Error::Parse`] with the 1-based line and column of the offending token.

use crate::dtype::{normalize_axis, DType, Shape};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId};
use crate::literal::Literal;
use crate::op::{BinaryOp, CompareOp, Op, ReduceOp, UnaryOp};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

// ===== printing =================================================================================

impl Graph {
    /// The graph in its text form: one line per node in [`Graph::topo_order`] order, numbered
    /// densely from `%0`, then a `return` line. See the [module docs](crate::text) for the format.
    ///
    /// ```
    /// use kiln_ir::{DType, Graph};
    /// let mut g = Graph::new();
    /// let x = g.input("x", DType::F32, [2, 3]);
    /// let y = g.mul(x, x).unwrap();
    /// g.set_outputs(vec![y]);
    /// assert_eq!(
    ///     g.to_text(),
    ///     "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = Mul(%0, %0) : f32[2,3]\nreturn %1\n"
    /// );
    /// ```
    ///
    /// The printer never fails. A graph that is not valid prints as well as it can: a cyclic
    /// graph prints its nodes in index order after a `# invalid graph: ...` comment, and an output
    /// that is not a node prints as `%!N` (N being its index); such text does not parse.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let order = match self.topo_order() {
            Ok(order) => order,
            Err(e) => {
                let _ = writeln!(out, "# invalid graph: {e}");
                self.node_ids().collect()
            }
        };
        let mut number = vec![usize::MAX; self.node_bound()];
        for (i, &id) in order.iter().enumerate() {
            number[id.index()] = i;
        }
        let name = |id: NodeId| match number.get(id.index()) {
            Some(&n) if n != usize::MAX => format!("%{n}"),
            _ => format!("%!{}", id.index()),
        };
        for (i, &id) in order.iter().enumerate() {
            let node = self.node(id);
            let _ = write!(out, "%{i} = {}(", node.op.name());
            for (k, o) in self.operands(id).into_iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                out.push_str(&name(o));
            }
            out.push(')');
            let attrs = attributes(&node.op);
            if !attrs.is_empty() {
                out.push_str(" {");
                for (k, (key, value)) in attrs.iter().enumerate() {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{key}={value}");
                }
                out.push('}');
            }
            let _ = writeln!(out, " : {}", type_text(node.dtype, &node.shape));
        }
        out.push_str("return");
        for (k, &o) in self.outputs().iter().enumerate() {
            out.push_str(if k == 0 { " " } else { ", " });
            out.push_str(&name(o));
        }
        out.push('\n');
        out
    }
}

impl fmt::Display for Graph {
    /// Writes [`Graph::to_text`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for Graph {
    type Err = Error;

    /// Same as [`parse`].
    fn from_str(s: &str) -> Result<Graph> {
        parse(s)
    }
}

/// A value type as the text form writes it: `f32[3,4]`, `i64[]`.
pub fn type_text(dtype: DType, shape: &Shape) -> String {
    format!("{}{}", dtype.name(), list_text(shape.dims()))
}

/// The attributes of `op` as `(name, value text)` pairs, in the fixed order the text form uses
/// (see the [module docs](crate::text)); empty for ops without attributes.
pub fn attributes(op: &Op) -> Vec<(&'static str, String)> {
    match op {
        Op::Input { name, param } => {
            let mut v = vec![("name", quote(name))];
            if *param {
                v.push(("param", "true".to_string()));
            }
            v
        }
        Op::Constant(lit) => vec![("value", literal_text(lit))],
        Op::Cast { to } => vec![("to", to.name().to_string())],
        Op::Reduce { axes, keepdims, .. } => {
            vec![("axes", list_text(axes)), ("keepdims", keepdims.to_string())]
        }
        Op::Reshape { shape } | Op::Expand { shape } => vec![("shape", list_text(shape))],
        Op::Transpose { perm } => vec![("perm", list_text(perm))],
        Op::Slice { starts, ends, axes, steps } => vec![
            ("starts", list_text(starts)),
            ("ends", list_text(ends)),
            ("axes", list_text(axes)),
            ("steps", list_text(steps)),
        ],
        Op::Concat { axis } => vec![("axis", axis.to_string())],
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Where | Op::MatMul => Vec::new(),
    }
}

/// `[a,b,c]` with each element's `Display` form.
fn list_text<T: fmt::Display>(xs: &[T]) -> String {
    let mut s = String::from("[");
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// The elements of a literal as a flat list; floats in their shortest round-trip form.
pub fn literal_text(lit: &Literal) -> String {
    let mut s = String::from("[");
    for i in 0..lit.len() {
        if i > 0 {
            s.push(',');
        }
        let _ = match lit {
            Literal::F32(v) => write!(s, "{:?}", v[i]),
            Literal::F64(v) => write!(s, "{:?}", v[i]),
            Literal::I64(v) => write!(s, "{}", v[i]),
            Literal::Bool(v) => write!(s, "{}", v[i]),
        };
    }
    s.push(']');
    s
}

/// A string literal of the text form: `"` and `\` are escaped, as are `\n`, `\r`, `\t` and every
/// other control character (`\u{7f}`); everything else is written as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ===== limits shared by the readers ============================================================

/// The largest extent or element count the readers accept (2^53). Far beyond any real tensor;
/// it keeps the index arithmetic of shape inference clear of integer overflow.
pub(crate) const MAX_ELEMENTS: usize = 1 << 53;

/// Rejects shapes whose extents or element count exceed [`MAX_ELEMENTS`].
pub(crate) fn check_dims(dims: &[usize]) -> Result<(), String> {
    let mut n: usize = 1;
    for &d in dims {
        if d > MAX_ELEMENTS {
            return Err(format!("extent {d} is larger than the supported maximum 2^53"));
        }
        n = n.saturating_mul(d);
    }
    if n > MAX_ELEMENTS && !dims.contains(&0) {
        return Err(format!("shape {} has more than 2^53 elements", list_text(dims)));
    }
    Ok(())
}

/// Checks the attributes and operand shapes of `op` against the limits of [`Op::infer`]'s
/// arithmetic, so that reading untrusted text or JSON can never overflow: shape attributes and a
/// concatenated extent within [`MAX_ELEMENTS`].
/// Operand shapes are assumed already checked with [`check_dims`].
pub(crate) fn check_op_limits(op: &Op, operands: &[&Shape]) -> Result<(), String> {
    match op {
        Op::Reshape { shape } | Op::Expand { shape } => check_dims(shape),
        Op::Concat { axis } => {
            let Some(first) = operands.first() else { return Ok(()) };
            let Some(ax) = normalize_axis(*axis, first.rank()) else { return Ok(()) };
            let mut total: usize = 0;
            for s in operands {
                total = total.saturating_add(s.dims().get(ax).copied().unwrap_or(0));
            }
            if total > MAX_ELEMENTS {
                return Err(format!(
                    "the concatenated extent {total} is larger than the supported maximum 2^53"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

// ===== lexing ===================================================================================

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `%name` (the name without `%`).
    Id(String),
    /// A name: op, attribute, dtype, `true`, `inf`, `return`.
    Name(String),
    /// `-`? followed by digits/letters/`.`: `3`, `-2.5e-7`, `-inf`.
    Num(String),
    /// A string literal, unescaped.
    Str(String),
    Punct(char),
    /// End of the line.
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Id(s) => format!("'%{s}'"),
            Tok::Name(s) | Tok::Num(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string {}", quote(s)),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::End => "end of line".to_string(),
        }
    }
}

fn perr(line: usize, col: usize, msg: impl Into<String>) -> Error {
    Error::Parse { line, col, msg: msg.into() }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits one line into tokens; the last token is always [`Tok::End`].
fn lex_line(text: &str, line: usize) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let tok = match c {
            '%' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                if i == start {
                    let found = chars.get(i).map_or("end of line".to_string(), |c| format!("'{c}'"));
                    return Err(perr(line, col, format!("expected a node name after '%', found {found}")));
                }
                Tok::Id(chars[start..i].iter().collect())
            }
            '"' => {
                let (s, next) = lex_string(&chars, i, line)?;
                i = next;
                Tok::Str(s)
            }
            '-' | '0'..='9' => {
                let start = i;
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    let exp_sign = (d == '-' || d == '+') && matches!(chars[i - 1], 'e' | 'E');
                    if is_name_char(d) || d == '.' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                if i == start + 1 && c == '-' {
                    return Err(perr(line, col, "expected a number after '-'"));
                }
                Tok::Num(chars[start..i].iter().collect())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                Tok::Name(chars[start..i].iter().collect())
            }
            '=' | '(' | ')' | '{' | '}' | '[' | ']' | ',' | ':' => {
                i += 1;
                Tok::Punct(c)
            }
            c => return Err(perr(line, col, format!("unexpected character {c:?}"))),
        };
        toks.push(Token { tok, col });
    }
    toks.push(Token { tok: Tok::End, col: chars.len() + 1 });
    Ok(toks)
}

/// Reads the string literal starting at `chars[open] == '"'`; returns it and the index after it.
fn lex_string(chars: &[char], open: usize, line: usize) -> Result<(String, usize)> {
    let mut s = String::new();
    let mut i = open + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(perr(line, open + 1, "unterminated string"));
        };
        match c {
            '"' => return Ok((s, i + 1)),
            '\\' => {
                let esc_col = i + 1;
                let Some(&e) = chars.get(i + 1) else {
                    return Err(perr(line, open + 1, "unterminated string"));
                };
                i += 2;
                match e {
                    '"' => s.push('"'),
                    '\\' => s.push('\\'),
                    '\'' => s.push('\''),
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    '0' => s.push('\0'),
                    'u' => {
                        let bad = || perr(line, esc_col, "invalid unicode escape (expected \\u{XXXX})");
                        if chars.get(i) != Some(&'{') {
                            return Err(bad());
                        }
                        let start = i + 1;
                        let mut j = start;
                        while j < chars.len() && chars[j].is_ascii_hexdigit() && j - start < 6 {
                            j += 1;
                        }
                        if j == start || chars.get(j) != Some(&'}') {
                            return Err(bad());
                        }
                        let hex: String = chars[start..j].iter().collect();
                        let ch =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).ok_or_else(bad)?;
                        s.push(ch);
                        i = j + 1;
                    }
                    other => {
                        return Err(perr(line, esc_col, format!("invalid escape '\\{other}' in string")));
                    }
                }
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
}

// ===== parsing ==================================================================================

/// Parses the text form into a graph (see the [module docs](crate::text) for the grammar).
///
/// Each declared `: dtype[shape]` is checked against shape inference. Errors are
/// [`Error::Parse`] with the line and column of the offending token.
///
/// ```
/// let g = kiln_ir::text::parse(
///     "%x = Input() {name=\"x\"} : f32[3]
///      %y = Exp(%x) : f32[3]
///      return %y",
/// )
/// .unwrap();
/// assert_eq!(g.len(), 2);
/// assert_eq!(g.to_text(), "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Exp(%0) : f32[3]\nreturn %1\n");
///
/// let err = kiln_ir::text::parse("%0 = Input() {name=\"x\"} : f32[3]\n%1 = Mull(%0) : f32[3]\nreturn %1")
///     .unwrap_err();
/// assert_eq!(err.to_string(), "2:6: unknown op 'Mull'");
/// ```
pub fn parse(src: &str) -> Result<Graph> {
    let mut p = Parser { g: Graph::new(), defs: HashMap::new() };
    let mut returned: Option<usize> = None;
    let mut last_line = 0;
    for (idx, text) in src.lines().enumerate() {
        let line = idx + 1;
        last_line = line;
        let toks = lex_line(text, line)?;
        if matches!(toks[0].tok, Tok::End) {
            continue;
        }
        if let Some(ret_line) = returned {
            return Err(perr(
                line,
                toks[0].col,
                format!(
                    "expected nothing after the 'return' line (line {ret_line}), found {}",
                    toks[0].describe()
                ),
            ));
        }
        let mut cur = Cursor { toks: &toks, pos: 0, line };
        if matches!(&toks[0].tok, Tok::Name(n) if n == "return") {
            cur.pos = 1;
            p.return_line(&mut cur)?;
            returned = Some(line);
        } else {
            p.def_line(&mut cur)?;
        }
    }
    if returned.is_none() {
        return Err(perr(last_line + 1, 1, "expected a 'return' line at the end of the input"));
    }
    Ok(p.g)
}

struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> &'a Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> &'a Token {
        let t = self.peek();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    fn err(&self, tok: &Token, msg: impl Into<String>) -> Error {
        perr(self.line, tok.col, msg)
    }

    /// Consumes `c` or fails with "expected `c` `context`, found ...".
    fn expect(&mut self, c: char, context: &str) -> Result<&'a Token> {
        let t = self.peek();
        if t.tok == Tok::Punct(c) {
            Ok(self.bump())
        } else {
            Err(self.err(t, format!("expected '{c}' {context}, found {}", t.describe())))
        }
    }
}

/// An attribute as written: `name = value`.
struct Attr<'a> {
    name: String,
    name_tok: &'a Token,
    value: AttrValue<'a>,
}

enum AttrValue<'a> {
    Str(String),
    Scalar(&'a Token),
    List(&'a Token, Vec<&'a Token>),
}

impl AttrValue<'_> {
    fn describe(&self) -> String {
        match self {
            AttrValue::Str(s) => format!("string {}", quote(s)),
            AttrValue::Scalar(t) => t.describe(),
            AttrValue::List(..) => "a list".to_string(),
        }
    }
}

/// The op named on a line, before its attributes are read.
#[derive(Clone, Copy, Debug)]
enum OpKind {
    Input,
    Constant,
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareOp),
    Where,
    Cast,
    Reduce(ReduceOp),
    MatMul,
    Reshape,
    Transpose,
    Expand,
    Slice,
    Concat,
}

impl OpKind {
    fn from_name(name: &str) -> Option<OpKind> {
        let fixed = [
            ("Input", OpKind::Input),
            ("Constant", OpKind::Constant),
            ("Where", OpKind::Where),
            ("Cast", OpKind::Cast),
            ("MatMul", OpKind::MatMul),
            ("Reshape", OpKind::Reshape),
            ("Transpose", OpKind::Transpose),
            ("Expand", OpKind::Expand),
            ("Slice", OpKind::Slice),
            ("Concat", OpKind::Concat),
        ];
        fixed
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| k)
            .or_else(|| UnaryOp::ALL.into_iter().find(|u| u.name() == name).map(OpKind::Unary))
            .or_else(|| BinaryOp::ALL.into_iter().find(|b| b.name() == name).map(OpKind::Binary))
            .or_else(|| CompareOp::ALL.into_iter().find(|c| c.name() == name).map(OpKind::Compare))
            .or_else(|| ReduceOp::ALL.into_iter().find(|r| r.name() == name).map(OpKind::Reduce))
    }

    /// The attribute names this op takes, in printed order.
    fn attr_names(self) -> &'static [&'static str] {
        match self {
            OpKind::Input => &["name", "param"],
            OpKind::Constant => &["value"],
            OpKind::Cast => &["to"],
            OpKind::Reduce(_) => &["axes", "keepdims"],
            OpKind::Reshape | OpKind::Expand => &["shape"],
            OpKind::Transpose => &["perm"],
            OpKind::Slice => &["starts", "ends", "axes", "steps"],
            OpKind::Concat => &["axis"],
            OpKind::Unary(_) | OpKind::Binary(_) | OpKind::Compare(_) | OpKind::Where | OpKind::MatMul => &[],
        }
    }
}

/// The attributes of one line, taken one by one by name.
struct Attrs<'a> {
    list: Vec<Attr<'a>>,
    op: &'a str,
    op_tok: &'a Token,
    line: usize,
}

impl<'a> Attrs<'a> {
    fn err(&self, tok: &Token, msg: impl Into<String>) -> Error {
        perr(self.line, tok.col, msg)
    }

    fn get(&self, name: &str) -> Option<&Attr<'a>> {
        self.list.iter().find(|a| a.name == name)
    }

    fn require(&self, name: &str) -> Result<&Attr<'a>> {
        self.get(name)
            .ok_or_else(|| self.err(self.op_tok, format!("{}: missing attribute '{name}'", self.op)))
    }

    fn list(&self, name: &str) -> Result<(&Attr<'a>, Vec<&'a Token>)> {
        let a = self.require(name)?;
        match &a.value {
            AttrValue::List(_, items) => Ok((a, items.clone())),
            v => {
                Err(self
                    .err(a.name_tok, format!("attribute '{name}' expects a list, found {}", v.describe())))
            }
        }
    }

    fn ints(&self, name: &str) -> Result<Vec<i64>> {
        let (_, items) = self.list(name)?;
        items.into_iter().map(|t| self.int(t)).collect()
    }

    fn usizes(&self, name: &str) -> Result<Vec<usize>> {
        let (_, items) = self.list(name)?;
        items.into_iter().map(|t| parse_usize(t, self.line)).collect()
    }

    fn int(&self, t: &Token) -> Result<i64> {
        match &t.tok {
            Tok::Num(s) => s.parse::<i64>().map_err(|_| {
                let msg = if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    format!("integer '{s}' is out of range for i64")
                } else {
                    format!("expected an integer, found '{s}'")
                };
                self.err(t, msg)
            }),
            _ => Err(self.err(t, format!("expected an integer, found {}", t.describe()))),
        }
    }

    fn scalar(&self, name: &str) -> Result<&'a Token> {
        let a = self.require(name)?;
        match &a.value {
            AttrValue::Scalar(t) => Ok(t),
            v => Err(self.err(
                a.name_tok,
                format!("attribute '{name}' expects a single value, found {}", v.describe()),
            )),
        }
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        if self.get(name).is_none() {
            return Ok(default);
        }
        let t = self.scalar(name)?;
        match &t.tok {
            Tok::Name(n) if n == "true" => Ok(true),
            Tok::Name(n) if n == "false" => Ok(false),
            _ => {
                Err(self.err(t, format!("attribute '{name}' expects true or false, found {}", t.describe())))
            }
        }
    }

    fn bool(&self, name: &str) -> Result<bool> {
        self.require(name)?;
        self.bool_or(name, false)
    }
}

fn parse_usize(t: &Token, line: usize) -> Result<usize> {
    match &t.tok {
        Tok::Num(s) if s.starts_with('-') => {
            Err(perr(line, t.col, format!("expected a non-negative integer, found '{s}'")))
        }
        Tok::Num(s) => s.parse::<usize>().map_err(|_| {
            let msg = if s.bytes().all(|b| b.is_ascii_digit()) {
                format!("integer '{s}' is too large")
            } else {
                format!("expected a non-negative integer, found '{s}'")
            };
            perr(line, t.col, msg)
        }),
        _ => Err(perr(line, t.col, format!("expected a non-negative integer, found {}", t.describe()))),
    }
}

struct Parser {
    g: Graph,
    /// Name → (node, line of its definition).
    defs: HashMap<String, (NodeId, usize)>,
}

impl Parser {
    /// Resolves an operand or output token, which must be a defined `%id`.
    fn use_id(&self, cur: &Cursor<'_>, t: &Token, what: &str) -> Result<NodeId> {
        match &t.tok {
            Tok::Id(name) => match self.defs.get(name) {
                Some(&(id, _)) => Ok(id),
                None => Err(cur.err(t, format!("%{name} is used before it is defined"))),
            },
            _ => Err(cur.err(t, format!("expected {what} like '%0', found {}", t.describe()))),
        }
    }

    fn return_line(&mut self, cur: &mut Cursor<'_>) -> Result<()> {
        let mut outputs = Vec::new();
        if !matches!(cur.peek().tok, Tok::End) {
            loop {
                let t = cur.bump();
                outputs.push(self.use_id(cur, t, "an output")?);
                let t = cur.bump();
                match t.tok {
                    Tok::Punct(',') => {}
                    Tok::End => break,
                    _ => {
                        return Err(cur.err(
                            t,
                            format!("expected ',' or end of line after an output, found {}", t.describe()),
                        ))
                    }
                }
            }
        }
        self.g.set_outputs(outputs);
        Ok(())
    }

    fn def_line(&mut self, cur: &mut Cursor<'_>) -> Result<()> {
        let line = cur.line;
        // %id =
        let id_tok = cur.bump();
        let Tok::Id(def_name) = &id_tok.tok else {
            return Err(cur.err(
                id_tok,
                format!(
                    "expected a node definition like '%0 = ...' or 'return', found {}",
                    id_tok.describe()
                ),
            ));
        };
        if let Some(&(_, first)) = self.defs.get(def_name) {
            return Err(cur.err(id_tok, format!("%{def_name} is defined twice (first on line {first})")));
        }
        cur.expect('=', &format!("after %{def_name}"))?;
        // Op(
        let op_tok = cur.bump();
        let Tok::Name(op_name) = &op_tok.tok else {
            return Err(
                cur.err(op_tok, format!("expected an op name after '=', found {}", op_tok.describe()))
            );
        };
        let kind =
            OpKind::from_name(op_name).ok_or_else(|| cur.err(op_tok, format!("unknown op '{op_name}'")))?;
        cur.expect('(', "after the op name")?;
        // operands )
        let mut operands = Vec::new();
        if cur.at_punct(')') {
            cur.bump();
        } else {
            loop {
                let t = cur.bump();
                operands.push(self.use_id(cur, t, "an operand")?);
                let t = cur.bump();
                match t.tok {
                    Tok::Punct(',') => {}
                    Tok::Punct(')') => break,
                    _ => {
                        return Err(cur
                            .err(t, format!("expected ',' or ')' after an operand, found {}", t.describe())))
                    }
                }
            }
        }
        if matches!(kind, OpKind::Input | OpKind::Constant) && !operands.is_empty() {
            return Err(cur.err(op_tok, format!("{op_name} takes no operands, found {}", operands.len())));
        }
        // {attrs}
        let mut list: Vec<Attr<'_>> = Vec::new();
        let had_braces = cur.at_punct('{');
        if had_braces {
            cur.bump();
            if cur.at_punct('}') {
                cur.bump();
            } else {
                loop {
                    let attr = parse_attr(cur)?;
                    if !kind.attr_names().contains(&attr.name.as_str()) {
                        let expected = match kind.attr_names() {
                            [] => format!("{op_name} takes none"),
                            names => format!("expected {}", names.join(", ")),
                        };
                        return Err(cur.err(
                            attr.name_tok,
                            format!("unknown attribute '{}' for {op_name} ({expected})", attr.name),
                        ));
                    }
                    if list.iter().any(|a| a.name == attr.name) {
                        return Err(
                            cur.err(attr.name_tok, format!("attribute '{}' is given twice", attr.name))
                        );
                    }
                    list.push(attr);
                    let t = cur.bump();
                    match t.tok {
                        Tok::Punct(',') => {}
                        Tok::Punct('}') => break,
                        _ => {
                            return Err(cur.err(
                                t,
                                format!("expected ',' or '}}' after an attribute, found {}", t.describe()),
                            ))
                        }
                    }
                }
            }
        }
        // : type
        let colon = cur.peek();
        if colon.tok != Tok::Punct(':') {
            let msg = if had_braces {
                format!("expected ':' before the result type, found {}", colon.describe())
            } else {
                format!("expected '{{' or ':' after the operands, found {}", colon.describe())
            };
            return Err(cur.err(colon, msg));
        }
        cur.bump();
        let (dtype, shape, type_tok) = parse_type(cur)?;
        let end = cur.peek();
        if end.tok != Tok::End {
            return Err(
                cur.err(end, format!("expected end of line after the result type, found {}", end.describe()))
            );
        }

        let attrs = Attrs { list, op: op_name, op_tok, line };
        let declared = type_text(dtype, &shape);
        let id = match kind {
            OpKind::Input => {
                let a = attrs.require("name")?;
                let AttrValue::Str(name) = &a.value else {
                    return Err(cur.err(
                        a.name_tok,
                        format!("attribute 'name' expects a string, found {}", a.value.describe()),
                    ));
                };
                let name = name.clone();
                if attrs.bool_or("param", false)? {
                    self.g.param(name, dtype, shape)
                } else {
                    self.g.input(name, dtype, shape)
                }
            }
            OpKind::Constant => {
                let (a, items) = attrs.list("value")?;
                let lit = parse_literal(dtype, &items, line)?;
                let open = match &a.value {
                    AttrValue::List(open, _) => *open,
                    _ => a.name_tok,
                };
                self.g.constant(lit, shape).map_err(|e| cur.err(open, e.to_string()))?
            }
            _ => {
                let op = build_op(kind, &attrs)?;
                let node_types: Vec<(DType, Shape)> = operands
                    .iter()
                    .map(|&o| {
                        let n = self.g.node(o);
                        (n.dtype, n.shape.clone())
                    })
                    .collect();
                let shapes: Vec<&Shape> = node_types.iter().map(|(_, s)| s).collect();
                let start = cur.toks[0].col;
                check_op_limits(&op, &shapes)
                    .map_err(|m| perr(line, start, format!("{}: {m}", op.name())))?;
                let types: Vec<(DType, &Shape)> = node_types.iter().map(|(d, s)| (*d, s)).collect();
                let (d, s) =
                    op.infer(&types).map_err(|e| perr(line, start, format!("{e} (declared {declared})")))?;
                if d != dtype || s != shape {
                    return Err(cur.err(
                        type_tok,
                        format!(
                            "{}: the operands give {}, but the line declares {declared}",
                            op.name(),
                            type_text(d, &s)
                        ),
                    ));
                }
                self.g.add_typed(Node { op, dtype, shape }, &operands)
            }
        };
        self.defs.insert(def_name.clone(), (id, line));
        Ok(())
    }
}

fn parse_attr<'a>(cur: &mut Cursor<'a>) -> Result<Attr<'a>> {
    let name_tok = cur.bump();
    let Tok::Name(name) = &name_tok.tok else {
        return Err(cur.err(name_tok, format!("expected an attribute name, found {}", name_tok.describe())));
    };
    cur.expect('=', &format!("after attribute name '{name}'"))?;
    let t = cur.bump();
    let value = match &t.tok {
        Tok::Str(s) => AttrValue::Str(s.clone()),
        Tok::Num(_) | Tok::Name(_) => AttrValue::Scalar(t),
        Tok::Punct('[') => {
            let mut items = Vec::new();
            if cur.at_punct(']') {
                cur.bump();
            } else {
                loop {
                    let item = cur.bump();
                    if !matches!(item.tok, Tok::Num(_) | Tok::Name(_)) {
                        return Err(
                            cur.err(item, format!("expected a list element, found {}", item.describe()))
                        );
                    }
                    items.push(item);
                    let sep = cur.bump();
                    match sep.tok {
                        Tok::Punct(',') => {}
                        Tok::Punct(']') => break,
                        _ => {
                            return Err(cur.err(
                                sep,
                                format!("expected ',' or ']' in a list, found {}", sep.describe()),
                            ))
                        }
                    }
                }
            }
            AttrValue::List(t, items)
        }
        _ => {
            return Err(cur.err(t, format!("expected a value for attribute '{name}', found {}", t.describe())))
        }
    };
    Ok(Attr { name: name.clone(), name_tok, value })
}

/// `dtype[d0,d1,...]`; returns the dtype token for error positions.
fn parse_type<'a>(cur: &mut Cursor<'a>) -> Result<(DType, Shape, &'a Token)> {
    let t = cur.bump();
    let dtype = match &t.tok {
        Tok::Name(n) => DType::from_name(n)
            .ok_or_else(|| cur.err(t, format!("unknown dtype '{n}' (expected f32, f64, i64 or bool)")))?,
        _ => return Err(cur.err(t, format!("expected a result type like f32[3,4], found {}", t.describe()))),
    };
    cur.expect('[', "after the dtype (a scalar is written f32[])")?;
    let mut dims = Vec::new();
    if cur.at_punct(']') {
        cur.bump();
    } else {
        loop {
            let d = cur.bump();
            dims.push(parse_usize(d, cur.line)?);
            let sep = cur.bump();
            match sep.tok {
                Tok::Punct(',') => {}
                Tok::Punct(']') => break,
                _ => {
                    return Err(
                        cur.err(sep, format!("expected ',' or ']' in a shape, found {}", sep.describe()))
                    )
                }
            }
        }
    }
    check_dims(&dims).map_err(|m| cur.err(t, m))?;
    Ok((dtype, Shape::from(dims), t))
}

fn parse_literal(dtype: DType, items: &[&Token], line: usize) -> Result<Literal> {
    let text = |t: &Token| match &t.tok {
        Tok::Num(s) | Tok::Name(s) => s.clone(),
        _ => String::new(),
    };
    let bad = |t: &Token| {
        perr(line, t.col, format!("expected {} {dtype} value, found {}", article(dtype), t.describe()))
    };
    let is_float_word = |s: &str| {
        let l = s.trim_start_matches(['-', '+']).to_ascii_lowercase();
        l == "inf" || l == "infinity" || l == "nan"
    };
    let float_ok = |t: &Token| match &t.tok {
        Tok::Num(_) => true,
        Tok::Name(s) => is_float_word(s),
        _ => false,
    };
    Ok(match dtype {
        DType::F32 => Literal::F32(
            items
                .iter()
                .map(|t| if float_ok(t) { text(t).parse::<f32>().map_err(|_| bad(t)) } else { Err(bad(t)) })
                .collect::<Result<_>>()?,
        ),
        DType::F64 => Literal::F64(
            items
                .iter()
                .map(|t| if float_ok(t) { text(t).parse::<f64>().map_err(|_| bad(t)) } else { Err(bad(t)) })
                .collect::<Result<_>>()?,
        ),
        DType::I64 => Literal::I64(
            items
                .iter()
                .map(|t| match &t.tok {
                    Tok::Num(s) => s.parse::<i64>().map_err(|_| bad(t)),
                    _ => Err(bad(t)),
                })
                .collect::<Result<_>>()?,
        ),
        DType::Bool => Literal::Bool(
            items
                .iter()
                .map(|t| match &t.tok {
                    Tok::Name(s) if s == "true" => Ok(true),
                    Tok::Name(s) if s == "false" => Ok(false),
                    _ => Err(bad(t)),
                })
                .collect::<Result<_>>()?,
        ),
    })
}

fn article(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::F64 | DType::I64 => "an",
        DType::Bool => "a",
    }
}

fn build_op(kind: OpKind, a: &Attrs<'_>) -> Result<Op> {
    Ok(match kind {
        OpKind::Unary(u) => Op::Unary(u),
        OpKind::Binary(b) => Op::Binary(b),
        OpKind::Compare(c) => Op::Compare(c),
        OpKind::Where => Op::Where,
        OpKind::MatMul => Op::MatMul,
        OpKind::Cast => {
            let t = a.scalar("to")?;
            let to = match &t.tok {
                Tok::Name(n) => DType::from_name(n),
                _ => None,
            };
            let to = to.ok_or_else(|| {
                a.err(
                    t,
                    format!("attribute 'to' expects a dtype (f32, f64, i64 or bool), found {}", t.describe()),
                )
            })?;
            Op::Cast { to }
        }
        OpKind::Reduce(op) => Op::Reduce { op, axes: a.ints("axes")?, keepdims: a.bool("keepdims")? },
        OpKind::Reshape => Op::Reshape { shape: a.usizes("shape")? },
        OpKind::Expand => Op::Expand { shape: a.usizes("shape")? },
        OpKind::Transpose => Op::Transpose { perm: a.usizes("perm")? },
        OpKind::Slice => Op::Slice {
            starts: a.ints("starts")?,
            ends: a.ints("ends")?,
            axes: a.ints("axes")?,
            steps: a.ints("steps")?,
        },
        OpKind::Concat => {
            let t = a.scalar("axis")?;
            Op::Concat { axis: a.int(t)? }
        }
        // Input and Constant are built by the caller, which knows their declared type.
        OpKind::Input | OpKind::Constant => {
            return Err(a.err(a.op_tok, format!("{} cannot be built from attributes alone", a.op)))
        }
    })
}
