//! Shape ops: view/reshape, transpose/permute, expand, squeeze/unsqueeze, flatten, cat,
//! narrow/slice and element selection.

use crate::error::{Error, Result};
use crate::ops::record::{apply, apply_composite};
use crate::tensor::Tensor;
use kiln_ir::Op;

/// Resolves a PyTorch-style shape (one `-1` may be inferred) for `numel` elements.
fn infer_shape(shape: &[i64], numel: usize, from: &[usize]) -> Result<Vec<usize>> {
    let invalid =
        || Error::Op(format!("shape '{shape:?}' is invalid for input of size {numel} (shape {from:?})"));
    let mut known = 1usize;
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => infer = Some(i),
            -1 => return Err(Error::Op("only one dimension can be inferred".into())),
            d if d < 0 => return Err(Error::Op(format!("invalid shape dimension {d}"))),
            d => known *= d as usize,
        }
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || numel % known != 0 {
            return Err(invalid());
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(invalid());
    }
    Ok(out)
}

impl Tensor {
    /// The same elements in a new shape (one dim may be `-1`).
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).unwrap();
    /// assert_eq!(x.view(&[2, -1]).unwrap().shape(), &[2, 3]);
    /// assert!(x.view(&[4, -1]).is_err());
    /// ```
    pub fn view(&self, shape: &[i64]) -> Result<Tensor> {
        let s = infer_shape(shape, self.numel(), self.shape())?;
        apply("ViewBackward0", Op::Reshape { shape: s }, &[self])
    }

    /// Same as [`Tensor::view`] (kiln's tensors are always contiguous).
    pub fn reshape(&self, shape: &[i64]) -> Result<Tensor> {
        self.view(shape)
    }

    /// Swaps two dims.
    pub fn transpose(&self, dim0: i64, dim1: i64) -> Result<Tensor> {
        let (a, b) = (self.axis(dim0)?, self.axis(dim1)?);
        let mut perm: Vec<usize> = (0..self.dim()).collect();
        perm.swap(a, b);
        apply("TransposeBackward0", Op::Transpose { perm }, &[self])
    }

    /// Transpose of a matrix (a 0-D or 1-D tensor is returned as is).
    pub fn t(&self) -> Result<Tensor> {
        match self.dim() {
            0 | 1 => Ok(self.clone()),
            2 => apply("TBackward0", Op::Transpose { perm: vec![1, 0] }, &[self]),
            d => Err(Error::Op(format!("t() expects a tensor with <= 2 dimensions, but self is {d}D"))),
        }
    }

    /// Reorders dims: output dim `i` is input dim `dims[i]`.
    pub fn permute(&self, dims: &[i64]) -> Result<Tensor> {
        let perm = dims.iter().map(|&d| self.axis(d)).collect::<Result<Vec<_>>>()?;
        apply("PermuteBackward0", Op::Transpose { perm }, &[self])
    }

    /// Broadcasts to `shape` (`-1` keeps a dim).
    pub fn expand(&self, shape: &[i64]) -> Result<Tensor> {
        let lead = shape.len().checked_sub(self.dim()).ok_or_else(|| {
            Error::Op(format!(
                "expand: the number of sizes provided ({}) must be greater or equal to the number of dimensions in the tensor ({})",
                shape.len(),
                self.dim()
            ))
        })?;
        let mut s = Vec::with_capacity(shape.len());
        for (i, &d) in shape.iter().enumerate() {
            s.push(match d {
                -1 if i >= lead => self.shape()[i - lead],
                d if d >= 0 => d as usize,
                _ => {
                    return Err(Error::Op(format!(
                    "expand: the expanded size {d} is not allowed in a leading, non-existing dimension {i}"
                )))
                }
            });
        }
        apply("ExpandBackward0", Op::Expand { shape: s }, &[self])
    }

    /// Broadcasts to `other`'s shape.
    pub fn expand_as(&self, other: &Tensor) -> Result<Tensor> {
        let s: Vec<i64> = other.shape().iter().map(|&d| d as i64).collect();
        self.expand(&s)
    }

    /// Removes every dim of size 1.
    pub fn squeeze(&self) -> Tensor {
        let s: Vec<usize> = self.shape().iter().copied().filter(|&d| d != 1).collect();
        apply("SqueezeBackward0", Op::Reshape { shape: s }, &[self]).expect("same element count")
    }

    /// Removes dim `dim` if it has size 1.
    pub fn squeeze_dim(&self, dim: i64) -> Result<Tensor> {
        let a = self.axis(dim)?;
        let mut s = self.shape().to_vec();
        if s[a] == 1 {
            s.remove(a);
        }
        apply("SqueezeBackward1", Op::Reshape { shape: s }, &[self])
    }

    /// Inserts a dim of size 1 at `dim` (`-1` appends).
    pub fn unsqueeze(&self, dim: i64) -> Result<Tensor> {
        let a = kiln_ir::normalize_axis(dim, self.dim() + 1).ok_or_else(|| {
            Error::Op(format!(
                "Dimension out of range (expected to be in range of [{}, {}], but got {dim})",
                -(self.dim() as i64) - 1,
                self.dim()
            ))
        })?;
        let mut s = self.shape().to_vec();
        s.insert(a, 1);
        apply("UnsqueezeBackward0", Op::Reshape { shape: s }, &[self])
    }

    /// Merges dims `start..=end` into one.
    pub fn flatten(&self, start: i64, end: i64) -> Result<Tensor> {
        if self.dim() == 0 {
            return self.view(&[1]);
        }
        let (a, b) = (self.axis(start)?, self.axis(end)?);
        if a > b {
            return Err(Error::Op("flatten() has invalid args: start_dim cannot come after end_dim".into()));
        }
        let s = self.shape();
        let mut out: Vec<i64> = s[..a].iter().map(|&d| d as i64).collect();
        out.push(s[a..=b].iter().product::<usize>() as i64);
        out.extend(s[b + 1..].iter().map(|&d| d as i64));
        self.view(&out)
    }

    /// Concatenates along `dim`.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let c = Tensor::cat(&[&Tensor::ones(&[2, 1]), &Tensor::zeros(&[2, 3])], 1).unwrap();
    /// assert_eq!(c.shape(), &[2, 4]);
    /// ```
    pub fn cat(tensors: &[&Tensor], dim: i64) -> Result<Tensor> {
        let first =
            tensors.first().ok_or_else(|| Error::Op("cat(): expected a non-empty list of Tensors".into()))?;
        first.axis(dim)?;
        // Mixed float widths promote to f64, as in PyTorch.
        let wide = tensors.iter().any(|t| t.dtype() == kiln_ir::DType::F64)
            && tensors.iter().all(|t| t.dtype().is_float());
        let promoted: Vec<Tensor> = tensors
            .iter()
            .map(|t| if wide { t.to_dtype(kiln_ir::DType::F64) } else { (*t).clone() })
            .collect();
        apply("CatBackward0", Op::Concat { axis: dim }, &promoted.iter().collect::<Vec<_>>())
    }

    /// `length` elements of `dim` from `start` (PyTorch's `narrow`).
    pub fn narrow(&self, dim: i64, start: i64, length: usize) -> Result<Tensor> {
        let a = self.axis(dim)?;
        let n = self.shape()[a] as i64;
        let s = if start < 0 { start + n } else { start };
        if s < 0 || s + length as i64 > n {
            return Err(Error::Op(format!(
                "start ({start}) + length ({length}) exceeds dimension size ({n})."
            )));
        }
        self.slice(dim, s, s + length as i64, 1)
    }

    /// Elements `start, start+step, ... < end` of `dim` (Python's `x[start:end:step]`).
    pub fn slice(&self, dim: i64, start: i64, end: i64, step: i64) -> Result<Tensor> {
        let a = self.axis(dim)? as i64;
        if step <= 0 {
            return Err(Error::Op("slice step must be positive".into()));
        }
        apply(
            "SliceBackward0",
            Op::Slice { starts: vec![start], ends: vec![end], axes: vec![a], steps: vec![step] },
            &[self],
        )
    }

    /// The sub-tensor at `index` along the leading dims (`x[i]`, `x[i, j]`); negative indices
    /// count from the end. The result is recorded (`SelectBackward0`).
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).unwrap().view(&[2, 3]).unwrap();
    /// assert_eq!(x.get(&[1, -1]).unwrap().item().unwrap(), 5.0);
    /// assert!(x.get(&[2]).is_err());
    /// ```
    pub fn get(&self, index: &[i64]) -> Result<Tensor> {
        if index.len() > self.dim() {
            return Err(Error::Op(format!(
                "too many indices for tensor of dimension {} (got {})",
                self.dim(),
                index.len()
            )));
        }
        let mut starts = Vec::new();
        for (d, &i) in index.iter().enumerate() {
            let n = self.shape()[d] as i64;
            let j = if i < 0 { i + n } else { i };
            if !(0..n).contains(&j) {
                return Err(Error::Op(format!("index {i} is out of bounds for dimension {d} with size {n}")));
            }
            starts.push(j);
        }
        let rest = self.shape()[index.len()..].to_vec();
        apply_composite("SelectBackward0", &[self], |g, x| {
            let k = starts.len();
            let s = g.slice(
                x[0],
                starts.clone(),
                starts.iter().map(|s| s + 1).collect(),
                (0..k as i64).collect(),
                vec![1; k],
            )?;
            g.reshape(s, rest)
        })
    }
}
