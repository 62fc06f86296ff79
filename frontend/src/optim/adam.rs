//! Adam and AdamW.

use super::{check, check_params, scalar_input, Optimizer};
use crate::autograd::mode::no_grad;
use crate::error::Result;
use crate::tensor::Tensor;

/// Hyper-parameters of [`Adam`] and [`AdamW`] (PyTorch's keyword arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
}

impl Default for AdamOptions {
    /// Adam's defaults (`AdamW::new` uses weight decay 0.01, its own default).
    fn default() -> Self {
        AdamOptions { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false }
    }
}

/// PyTorch's `torch.optim.Adam`. With gradient `g` of parameter `p`, at step `t` (from 1):
///
/// ```text
/// g ← g + weight_decay · p                        (Adam; AdamW instead: p ← p · (1 − lr · weight_decay))
/// m ← β₁ · m + (1 − β₁) · g
/// v ← β₂ · v + (1 − β₂) · g²
/// v̂ ← max(v̂, v)                                   (amsgrad; then v̂ replaces v below)
/// p ← p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// ```
/// use kiln_frontend::optim::{Adam, Optimizer};
/// use kiln_frontend::Tensor;
/// let p = Tensor::full(&[1], 1.0).requires_grad_(true);
/// let mut opt = Adam::new(vec![p.clone()], 0.1).unwrap();
/// (&p * &p).sum().backward().unwrap();
/// opt.step().unwrap();   // the first Adam step moves by lr·sign(g) (up to ε)
/// assert!((p.item().unwrap() - 0.9).abs() < 1e-6);
/// ```
pub struct Adam {
    params: Vec<Tensor>,
    opts: AdamOptions,
    decoupled_weight_decay: bool,
    state: Vec<State>,
}

struct State {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

impl Adam {
    /// Adam with learning rate `lr` and the other defaults.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Result<Adam> {
        Adam::with_options(params, AdamOptions { lr, ..Default::default() })
    }

    pub fn with_options(params: Vec<Tensor>, opts: AdamOptions) -> Result<Adam> {
        Adam::build(params, opts, false)
    }

    fn build(params: Vec<Tensor>, opts: AdamOptions, decoupled_weight_decay: bool) -> Result<Adam> {
        check_params(&params)?;
        check(opts.lr >= 0.0, "learning rate", opts.lr)?;
        check(opts.eps >= 0.0, "epsilon value", opts.eps)?;
        check((0.0..1.0).contains(&opts.betas.0), "beta parameter at index 0", opts.betas.0)?;
        check((0.0..1.0).contains(&opts.betas.1), "beta parameter at index 1", opts.betas.1)?;
        check(opts.weight_decay >= 0.0, "weight_decay value", opts.weight_decay)?;
        // The state starts as computed zeros, so the first step's graph has the same structure
        // as every later one.
        let state = params
            .iter()
            .map(|p| State {
                step: 0,
                exp_avg: Tensor::zeros_typed(p.shape(), p.dtype()),
                exp_avg_sq: Tensor::zeros_typed(p.shape(), p.dtype()),
                max_exp_avg_sq: opts.amsgrad.then(|| Tensor::zeros_typed(p.shape(), p.dtype())),
            })
            .collect();
        Ok(Adam { params, opts, decoupled_weight_decay, state })
    }

    pub fn options(&self) -> &AdamOptions {
        &self.opts
    }

    /// The number of steps taken for parameter `i` (PyTorch's `state[p]['step']`).
    pub fn step_count(&self, i: usize) -> Option<u64> {
        self.state.get(i).map(|s| s.step)
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let _g = no_grad();
        let o = self.opts;
        let (b1, b2) = o.betas;
        let mut updated = Vec::new();
        for (p, s) in self.params.iter().zip(&mut self.state) {
            let Some(mut g) = p.grad() else { continue };
            s.step += 1;
            let t = s.step as i32;
            let dt = p.dtype();
            let mut decay = None;
            if o.weight_decay != 0.0 {
                if self.decoupled_weight_decay {
                    decay = Some(p.mul(&scalar_input(o.lr * o.weight_decay, dt))?);
                } else {
                    g = g.add(&(p * o.weight_decay))?;
                }
            }
            s.exp_avg = (&s.exp_avg * b1).add(&(&g * (1.0 - b1)))?;
            s.exp_avg_sq = (&s.exp_avg_sq * b2).add(&(g.mul(&g)? * (1.0 - b2)))?;
            let second = match &mut s.max_exp_avg_sq {
                Some(vmax) => {
                    *vmax = vmax.maximum(&s.exp_avg_sq)?;
                    updated.push(vmax.clone());
                    vmax.clone()
                }
                None => s.exp_avg_sq.clone(),
            };
            let bias_correction1 = 1.0 - b1.powi(t);
            let bias_correction2 = 1.0 - b2.powi(t);
            let step_size = scalar_input(o.lr / bias_correction1, dt);
            let inv_bc2_sqrt = scalar_input(1.0 / bias_correction2.sqrt(), dt);
            let denom = second.sqrt().mul(&inv_bc2_sqrt)? + o.eps;
            let mut delta = s.exp_avg.div(&denom)?.mul(&step_size)?;
            if let Some(d) = decay {
                delta = delta.add(&d)?;
            }
            p.sub_(&delta)?;
            updated.extend([p.clone(), s.exp_avg.clone(), s.exp_avg_sq.clone()]);
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

/// PyTorch's `torch.optim.AdamW`: Adam with decoupled weight decay
/// (`p ← p · (1 − lr · weight_decay)` before the Adam update, default weight decay 0.01).
///
/// ```
/// use kiln_frontend::optim::{AdamW, Optimizer};
/// use kiln_frontend::Tensor;
/// let p = Tensor::full(&[1], 1.0).requires_grad_(true);
/// let mut opt = AdamW::new(vec![p.clone()], 0.1).unwrap();
/// (&p * &p).sum().backward().unwrap();
/// opt.step().unwrap();   // 1 · (1 − 0.1 · 0.01) − 0.1
/// assert!((p.item().unwrap() - 0.899).abs() < 1e-6);
/// ```
pub struct AdamW(Adam);

impl AdamW {
    /// AdamW with learning rate `lr` and weight decay 0.01 (PyTorch's defaults).
    pub fn new(params: Vec<Tensor>, lr: f64) -> Result<AdamW> {
        AdamW::with_options(params, AdamOptions { lr, weight_decay: 1e-2, ..Default::default() })
    }

    pub fn with_options(params: Vec<Tensor>, opts: AdamOptions) -> Result<AdamW> {
        Ok(AdamW(Adam::build(params, opts, true)?))
    }

    pub fn options(&self) -> &AdamOptions {
        &self.0.opts
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) -> Result<()> {
        self.0.step()
    }
    fn params(&self) -> &[Tensor] {
        self.0.params()
    }
    fn lr(&self) -> f64 {
        self.0.lr()
    }
    fn set_lr(&mut self, lr: f64) {
        self.0.set_lr(lr)
    }
}
