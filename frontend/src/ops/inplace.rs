//! In-place ops (`add_`, `zero_`, element assignment, ...) with PyTorch's rules: refused on a
//! leaf that requires grad (outside `no_grad`), they bump the version counter that saved values
//! are checked against, and on a tensor with history they become its new `grad_fn`.

use crate::autograd::mode::is_grad_enabled;
use crate::error::{Error, Result};
use crate::ops::record::apply;
use crate::tensor::{Meta, Storage, Tensor, TensorImpl, Version};
use kiln_ir::{Literal, Op, Shape};
use std::sync::{Arc, Mutex};

impl Tensor {
    /// Replaces this tensor's value by `f(old)` in place.
    fn inplace(&self, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        if !is_grad_enabled() {
            // Nothing is recorded, so nothing can save the old value: the op reads this tensor's
            // current value directly (no tensor for the old value, e.g. per optimiser update).
            self.check_inplace_allowed()?;
            let new = f(self)?;
            return self.set_inplace(new);
        }
        let (grad_fn, output_nr, requires_grad) = {
            let m = self.meta();
            (m.grad_fn.clone(), m.output_nr, m.requires_grad)
        };
        if grad_fn.is_none() && requires_grad && is_grad_enabled() {
            return Err(Error::Autograd(
                "a leaf Variable that requires grad is being used in an in-place operation.".into(),
            ));
        }
        self.check_inplace_allowed()?;
        // The old value with the old history, as the input of the op.
        let old = Tensor(Arc::new(TensorImpl {
            dtype: self.0.dtype,
            shape: self.0.shape.clone(),
            storage: Storage::new(self.expr()),
            version: Version::starting_at(self.version()),
            meta: Mutex::new(Meta { grad_fn, output_nr, ..Meta::default() }),
            inference: self.0.inference,
            is_view: false,
        }));
        let new = f(&old)?;
        self.set_inplace(new)
    }

    /// Makes `new` this tensor's value (an in-place op's result): same shape required, this
    /// tensor's dtype kept, the version bumped, and `new`'s history (if any) becomes this one's.
    fn set_inplace(&self, new: Tensor) -> Result<Tensor> {
        if new.shape() != self.shape() {
            return Err(Error::Op(format!(
                "output with shape {:?} doesn't match the broadcast shape {:?}",
                self.shape(),
                new.shape()
            )));
        }
        let new = new.to_dtype(self.dtype());
        self.0.storage.set(new.expr());
        self.bump_version();
        if let Some(f) = new.meta().grad_fn.clone() {
            let mut m = self.meta();
            m.grad_fn = Some(f);
            m.output_nr = 0;
        }
        Ok(self.clone())
    }

    fn check_inplace_allowed(&self) -> Result<()> {
        if self.0.is_view {
            return Err(Error::Unsupported(
                "in-place operations on views (results of view, reshape, transpose, slice, ...) are not supported by kiln: its views do not alias their base. Apply the operation to the base tensor, or use the out-of-place op.".into(),
            ));
        }
        Ok(())
    }

    /// `self += other` in place.
    pub fn add_(&self, other: &Tensor) -> Result<Tensor> {
        self.inplace(|x| x.add(other))
    }

    /// `self -= other` in place.
    pub fn sub_(&self, other: &Tensor) -> Result<Tensor> {
        self.inplace(|x| x.sub(other))
    }

    /// `self *= other` in place.
    pub fn mul_(&self, other: &Tensor) -> Result<Tensor> {
        self.inplace(|x| x.mul(other))
    }

    /// `self /= other` in place.
    pub fn div_(&self, other: &Tensor) -> Result<Tensor> {
        self.inplace(|x| x.div(other))
    }

    /// Sets every element to 0 in place (e.g. `x.grad().unwrap().zero_()`).
    pub fn zero_(&self) -> Result<Tensor> {
        self.fill_(0.0)
    }

    /// Sets every element to `v` in place.
    pub fn fill_(&self, v: f64) -> Result<Tensor> {
        if !(is_grad_enabled() && self.requires_grad()) {
            // Nothing to record: the new value is just the constant (the old one is not read, so
            // it is neither kept alive nor part of the next graph).
            self.check_inplace_allowed()?;
            self.0.storage.set(self.filled_expr(v));
            self.bump_version();
            return Ok(self.clone());
        }
        // where(true, v, x): the value is v, and x (with its history) gets a zero gradient.
        let yes = Tensor::constant(Literal::Bool(vec![true]), Shape::scalar());
        self.inplace(|x| apply("FillBackward0", Op::Where, &[&yes, &x.scalar_like(v), x]))
    }

    /// Sigmoid in place.
    pub fn sigmoid_(&self) -> Result<Tensor> {
        self.inplace(|x| Ok(x.sigmoid()))
    }

    /// ReLU in place.
    pub fn relu_(&self) -> Result<Tensor> {
        self.inplace(|x| Ok(x.relu()))
    }

    /// `e^x` in place.
    pub fn exp_(&self) -> Result<Tensor> {
        self.inplace(|x| Ok(x.exp()))
    }

    /// Negation in place.
    pub fn neg_(&self) -> Result<Tensor> {
        self.inplace(|x| Ok(x.neg()))
    }

    /// Copies `src` (broadcast) into this tensor.
    pub fn copy_(&self, src: &Tensor) -> Result<Tensor> {
        let s: Vec<i64> = self.shape().iter().map(|&d| d as i64).collect();
        let src = src.expand(&s)?.to_dtype(self.dtype());
        // where(true, src, old): the old value (and its history) gets a zero gradient.
        let yes = Tensor::constant(Literal::Bool(vec![true]), Shape::scalar());
        self.inplace(|x| apply("CopyBackwards", Op::Where, &[&yes, &src, x]))
    }

    /// Element or sub-tensor assignment: `x[index] = v` along the leading dims
    /// (`t.set_(&[0], 1.0)` is PyTorch's `t[0] = 1`). Negative indices count from the end.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let t = Tensor::zeros(&[2, 2]);
    /// t.set_(&[1], 5.0).unwrap();
    /// assert_eq!(t.to_vec_f64().unwrap(), vec![0.0, 0.0, 5.0, 5.0]);
    /// ```
    pub fn set_(&self, index: &[i64], v: f64) -> Result<Tensor> {
        // Validate the index the way `get` does.
        self.get(index)?;
        let strides = Shape::new(self.shape()).strides();
        let mut start = 0usize;
        for (d, &i) in index.iter().enumerate() {
            let n = self.shape()[d] as i64;
            start += (if i < 0 { i + n } else { i }) as usize * strides[d];
        }
        let block: usize = self.shape()[index.len()..].iter().product();
        let mask: Vec<bool> = (0..self.numel()).map(|k| k >= start && k < start + block).collect();
        let mask = Tensor::constant(Literal::Bool(mask), Shape::from(self.shape().to_vec()));
        self.inplace(|x| apply("CopySlices", Op::Where, &[&mask, &x.scalar_like(v), x]))
    }

    /// Fills the entries at `indices` along `dim` with `v`, in place (PyTorch's `index_fill_`;
    /// `x[:, 1:3] = v` is `x.index_fill_(1, &[1, 2], v)`).
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let t = Tensor::zeros(&[2, 3]);
    /// t.index_fill_(1, &[0, -1], 7.0).unwrap();
    /// assert_eq!(t.to_vec_f64().unwrap(), vec![7.0, 0.0, 7.0, 7.0, 0.0, 7.0]);
    /// ```
    pub fn index_fill_(&self, dim: i64, indices: &[i64], v: f64) -> Result<Tensor> {
        let d = self.axis(dim)?;
        let n = self.shape()[d] as i64;
        let mut hit = vec![false; self.shape()[d]];
        for &i in indices {
            let j = if i < 0 { i + n } else { i };
            if !(0..n).contains(&j) {
                return Err(Error::Op(format!("index {i} is out of bounds for dimension {d} with size {n}")));
            }
            hit[j as usize] = true;
        }
        let strides = Shape::new(self.shape()).strides();
        let mask: Vec<bool> = (0..self.numel()).map(|k| hit[(k / strides[d]) % self.shape()[d]]).collect();
        let mask = Tensor::constant(Literal::Bool(mask), Shape::from(self.shape().to_vec()));
        self.inplace(|x| apply("IndexFillBackward0", Op::Where, &[&mask, &x.scalar_like(v), x]))
    }
}
