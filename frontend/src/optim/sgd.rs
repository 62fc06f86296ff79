//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

use super::{check, check_params, scalar_input, snapshot, Optimizer};
use crate::autograd::mode::no_grad;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Hyper-parameters of [`SGD`] (PyTorch's keyword arguments and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdOptions {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// PyTorch's `torch.optim.SGD`. With gradient `g` of parameter `p`, each step does
///
/// ```text
/// g ← g + weight_decay · p                      (if weight_decay ≠ 0)
/// b ← g  (first step),  momentum · b + (1 − dampening) · g  (later)   (if momentum ≠ 0)
/// g ← g + momentum · b  (nesterov)   or   g ← b
/// p ← p − lr · g
/// ```
///
/// ```
/// use kiln_frontend::optim::{Optimizer, SgdOptions, SGD};
/// use kiln_frontend::Tensor;
/// let p = Tensor::full(&[1], 1.0).requires_grad_(true);
/// let mut opt = SGD::with_options(vec![p.clone()], SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap();
/// (&p * &p).sum().backward().unwrap();   // g = 2
/// opt.step().unwrap();                   // b = 2, p = 1 - 0.2
/// assert!((p.item().unwrap() - 0.8).abs() < 1e-6);
/// ```
pub struct SGD {
    params: Vec<Tensor>,
    opts: SgdOptions,
    momentum_buffers: Vec<Option<Tensor>>,
}

impl SGD {
    /// Plain SGD with learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Result<SGD> {
        SGD::with_options(params, SgdOptions { lr, ..Default::default() })
    }

    pub fn with_options(params: Vec<Tensor>, opts: SgdOptions) -> Result<SGD> {
        check_params(&params)?;
        check(opts.lr >= 0.0, "learning rate", opts.lr)?;
        check(opts.momentum >= 0.0, "momentum value", opts.momentum)?;
        check(opts.weight_decay >= 0.0, "weight_decay value", opts.weight_decay)?;
        if opts.nesterov && (opts.momentum <= 0.0 || opts.dampening != 0.0) {
            return Err(Error::Op("Nesterov momentum requires a momentum and zero dampening".into()));
        }
        let n = params.len();
        Ok(SGD { params, opts, momentum_buffers: vec![None; n] })
    }

    pub fn options(&self) -> &SgdOptions {
        &self.opts
    }
}

impl Optimizer for SGD {
    fn step(&mut self) -> Result<()> {
        let _g = no_grad();
        let o = self.opts;
        let mut updated = Vec::new();
        for (p, buf) in self.params.iter().zip(&mut self.momentum_buffers) {
            let Some(grad) = p.grad() else { continue };
            let mut d = grad;
            if o.weight_decay != 0.0 {
                d = d.add(&(p * o.weight_decay))?;
            }
            if o.momentum != 0.0 {
                let b = match buf.take() {
                    None => snapshot(&d),
                    Some(b) => (b * o.momentum).add(&(&d * (1.0 - o.dampening)))?,
                };
                d = if o.nesterov { d.add(&(&b * o.momentum))? } else { b.clone() };
                updated.push(b.clone());
                *buf = Some(b);
            }
            p.sub_(&d.mul(&scalar_input(o.lr, p.dtype()))?)?;
            updated.push(p.clone());
        }
        crate::realize(&updated)
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }

    fn lr(&self) -> f64 {
        self.opts.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.opts.lr = lr;
    }
}
