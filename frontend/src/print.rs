//! `Display`/`Debug` for tensors, in PyTorch's format (`torch._tensor_str`, default print
//! options: precision 4, threshold 1000 elements, 3 edge items, line width 80).

use crate::tensor::Tensor;
use kiln_ir::DType;
use std::fmt;

const PRECISION: usize = 4;
const THRESHOLD: usize = 1000;
const EDGE: usize = 3;
const LINEWIDTH: usize = 80;

/// How every element of one tensor is printed (PyTorch's `_Formatter`).
struct Formatter {
    dtype: DType,
    int_mode: bool,
    sci_mode: bool,
    width: usize,
}

fn sci(v: f64) -> String {
    if !v.is_finite() {
        return nonfinite(v);
    }
    // Rust writes `5.12e1`; Python writes `5.1200e+01`.
    let s = format!("{v:.PRECISION$e}");
    let (mant, exp) = s.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("integer exponent");
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn nonfinite(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

fn fixed(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        nonfinite(v)
    }
}

impl Formatter {
    fn new(dtype: DType, shown: &[f64]) -> Formatter {
        let mut f = Formatter { dtype, int_mode: true, sci_mode: false, width: 1 };
        if !dtype.is_float() {
            f.width = shown.iter().map(|&v| f.raw(v).len()).max().unwrap_or(1);
            return f;
        }
        let finite: Vec<f64> = shown.iter().copied().filter(|v| v.is_finite() && *v != 0.0).collect();
        if finite.is_empty() {
            return f;
        }
        let abs = finite.iter().map(|v| v.abs());
        let (min, max) = (abs.clone().fold(f64::INFINITY, f64::min), abs.fold(0.0, f64::max));
        f.int_mode = finite.iter().all(|v| v.ceil() == *v);
        let widths = |g: &dyn Fn(f64) -> usize| finite.iter().map(|&v| g(v)).max().unwrap_or(1);
        if f.int_mode {
            if max / min > 1000.0 || max > 1.0e8 {
                f.sci_mode = true;
                f.width = widths(&|v| sci(v).len());
            } else {
                f.width = widths(&|v| fixed(v, 0).len() + 1);
            }
        } else if max / min > 1000.0 || max > 1.0e8 || min < 1.0e-4 {
            f.sci_mode = true;
            f.width = widths(&|v| sci(v).len());
        } else {
            f.width = widths(&|v| fixed(v, PRECISION).len());
        }
        f
    }

    fn raw(&self, v: f64) -> String {
        match self.dtype {
            DType::Bool => if v != 0.0 { "True" } else { "False" }.into(),
            DType::I64 => format!("{}", v as i64),
            _ if self.sci_mode => sci(v),
            _ if self.int_mode => {
                let s = fixed(v, 0);
                if v.is_finite() {
                    s + "."
                } else {
                    s
                }
            }
            _ => fixed(v, PRECISION),
        }
    }

    fn format(&self, v: f64) -> String {
        format!("{:>w$}", self.raw(v), w = self.width)
    }
}

/// The elements that will be shown (all, or the edges of each dim when summarising).
fn shown(data: &[f64], shape: &[usize], summarize: bool, out: &mut Vec<f64>) {
    match shape.len() {
        0 => out.extend_from_slice(&data[..1]),
        _ => {
            let n = shape[0];
            let inner: usize = shape[1..].iter().product();
            let rows: Vec<usize> = if summarize && n > 2 * EDGE {
                (0..EDGE).chain(n - EDGE..n).collect()
            } else {
                (0..n).collect()
            };
            for i in rows {
                shown(&data[i * inner..(i + 1) * inner], &shape[1..], summarize, out);
            }
        }
    }
}

fn vector_str(data: &[f64], indent: usize, summarize: bool, f: &Formatter) -> String {
    let per_line = ((LINEWIDTH.saturating_sub(indent)) / (f.width + 2)).max(1);
    let items: Vec<String> = if summarize && data.len() > 2 * EDGE {
        let n = data.len();
        let mut v: Vec<String> = data[..EDGE].iter().map(|&x| f.format(x)).collect();
        v.push(" ...".into());
        v.extend(data[n - EDGE..].iter().map(|&x| f.format(x)));
        v
    } else {
        data.iter().map(|&x| f.format(x)).collect()
    };
    let lines: Vec<String> = items.chunks(per_line).map(|c| c.join(", ")).collect();
    format!("[{}]", lines.join(&format!(",\n{}", " ".repeat(indent + 1))))
}

fn tensor_str(data: &[f64], shape: &[usize], indent: usize, summarize: bool, f: &Formatter) -> String {
    match shape.len() {
        0 => f.format(data[0]),
        1 => vector_str(data, indent, summarize, f),
        dim => {
            let n = shape[0];
            let inner: usize = shape[1..].iter().product();
            let sub = |i: usize| {
                tensor_str(&data[i * inner..(i + 1) * inner], &shape[1..], indent + 1, summarize, f)
            };
            let slices: Vec<String> = if summarize && n > 2 * EDGE {
                (0..EDGE).map(sub).chain(["...".to_string()]).chain((n - EDGE..n).map(sub)).collect()
            } else {
                (0..n).map(sub).collect()
            };
            let sep = format!(",{}{}", "\n".repeat(dim - 1), " ".repeat(indent + 1));
            format!("[{}]", slices.join(&sep))
        }
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "kiln.float32",
        DType::F64 => "kiln.float64",
        DType::I64 => "kiln.int64",
        DType::Bool => "kiln.bool",
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = "tensor(";
        let indent = prefix.len();
        let data = match self.to_vec_f64() {
            Ok(d) => d,
            Err(e) => return write!(out, "tensor(<not computable: {e}>)"),
        };
        let shape = self.shape();
        let mut suffixes = Vec::new();
        let body = if data.is_empty() {
            if shape != [0] {
                suffixes.push(format!(
                    "size=({})",
                    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                        + if shape.len() == 1 { "," } else { "" }
                ));
            }
            "[]".to_string()
        } else {
            let summarize = data.len() > THRESHOLD;
            let mut vis = Vec::new();
            shown(&data, shape, summarize, &mut vis);
            let f = Formatter::new(self.dtype(), &vis);
            tensor_str(&data, shape, indent, summarize, &f)
        };
        // PyTorch names non-default dtypes, and every dtype but the default float for empties.
        if !matches!(self.dtype(), DType::F32 | DType::I64 | DType::Bool)
            || (data.is_empty() && self.dtype() != DType::F32)
        {
            suffixes.push(format!("dtype={}", dtype_name(self.dtype())));
        }
        if let Some(g) = self.grad_fn() {
            suffixes.push(format!("grad_fn=<{}>", g.name()));
        } else if self.requires_grad() {
            suffixes.push("requires_grad=True".into());
        }
        let mut s = format!("{prefix}{body}");
        let mut last_line = s.len() - s.rfind('\n').map_or(0, |i| i + 1) + 1;
        for suf in suffixes {
            if last_line + suf.len() + 2 > LINEWIDTH {
                s += &format!(",\n{}{suf}", " ".repeat(indent));
                last_line = indent + suf.len();
            } else {
                s += &format!(", {suf}");
                last_line += suf.len() + 2;
            }
        }
        s.push(')');
        out.write_str(&s)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn prints_like_pytorch() {
        let x = Tensor::ones(&[2, 2]).requires_grad_(true);
        assert_eq!(x.to_string(), "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)");
        let v = Tensor::from_vec(vec![51.2f32, 512.0, 0.0512], &[3]).unwrap();
        assert_eq!(v.to_string(), "tensor([5.1200e+01, 5.1200e+02, 5.1200e-02])");
        let m = Tensor::from_vec(vec![0.7311f32, -1.5], &[2]).unwrap();
        assert_eq!(m.to_string(), "tensor([ 0.7311, -1.5000])");
        assert_eq!(Tensor::zeros(&[0]).to_string(), "tensor([])");
        assert_eq!(Tensor::zeros(&[2, 0]).to_string(), "tensor([], size=(2, 0))");
        let i = Tensor::from_vec(vec![1i64, -20], &[2]).unwrap();
        assert_eq!(i.to_string(), "tensor([  1, -20])");
        let d = Tensor::from_vec(vec![1.5f64], &[]).unwrap();
        assert_eq!(d.to_string(), "tensor(1.5000, dtype=kiln.float64)");
        let nan = Tensor::from_vec(vec![f32::NAN, 1.0, f32::INFINITY], &[3]).unwrap();
        assert_eq!(nan.to_string(), "tensor([nan, 1., inf])");
    }

    #[test]
    fn summarises_large_tensors() {
        let t = Tensor::arange(1000.0, 2001.0, 1.0).unwrap();
        assert_eq!(t.to_string(), "tensor([1000., 1001., 1002.,  ..., 1998., 1999., 2000.])");
        // max/min > 1000 switches to scientific notation, wrapping at 80 columns (as PyTorch does).
        let t = Tensor::arange(0.0, 2000.0, 1.0).unwrap();
        assert_eq!(
            t.to_string(),
            "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n        1.9990e+03])"
        );
        let m = Tensor::zeros(&[100, 100]);
        let s = m.to_string();
        assert!(
            s.starts_with("tensor([[0., 0., 0.,  ..., 0., 0., 0.],\n        [0., 0., 0.,  ..., 0., 0., 0.],"),
            "{s}"
        );
        assert!(s.contains("        ...,\n"), "{s}");
    }
}
