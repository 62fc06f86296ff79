//! `gradcheck` / `gradgradcheck`: compare autograd's Jacobians with central finite differences.

use crate::autograd::{grad, GradOptions};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Tolerances of [`gradcheck`] (PyTorch's defaults).
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// On a mismatch: `true` returns an error naming it, `false` returns `Ok(false)`.
    pub raise_exception: bool,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-3, raise_exception: true }
    }
}

/// Checks the gradients of `f` at `inputs` against finite differences: for every input that
/// requires grad, the numerical Jacobian (central differences, step `eps`) must match the one
/// backward computes within `atol + rtol·|numerical|`. Use f64 inputs.
///
/// ```
/// use kiln_frontend::{autograd::{gradcheck, GradcheckOptions}, DType, Tensor};
/// let x = Tensor::rand(&[3, 4]).to_dtype(DType::F64).requires_grad_(true);
/// let ok = gradcheck(|x| Ok(x[0].sigmoid()), &[x], GradcheckOptions { eps: 1e-3, ..Default::default() });
/// assert!(ok.unwrap());
/// ```
pub fn gradcheck<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> Result<bool>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let out = f(inputs)?;
    let n_out = out.numel();
    let values: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_vec_f64()).collect::<Result<_>>()?;
    for (i, x) in inputs.iter().enumerate() {
        if !x.requires_grad() {
            continue;
        }
        // Numerical Jacobian, one column per element of input i.
        let mut numerical = vec![vec![0.0; x.numel()]; n_out];
        for j in 0..x.numel() {
            let at = |delta: f64| -> Result<Vec<f64>> {
                let moved: Vec<Tensor> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        let mut v = values[k].clone();
                        if k == i {
                            v[j] += delta;
                        }
                        Tensor::from_vec_typed(v, t.shape(), t.dtype())
                    })
                    .collect::<Result<_>>()?;
                let _g = crate::autograd::mode::no_grad();
                f(&moved)?.to_vec_f64()
            };
            let (up, down) = (at(opts.eps)?, at(-opts.eps)?);
            for k in 0..n_out {
                numerical[k][j] = (up[k] - down[k]) / (2.0 * opts.eps);
            }
        }
        // Analytical Jacobian, one row per output element.
        let mut analytical = vec![vec![0.0; x.numel()]; n_out];
        for (k, row) in analytical.iter_mut().enumerate() {
            let mut onehot = vec![0.0; n_out];
            onehot[k] = 1.0;
            let seed = Tensor::from_vec_typed(onehot, out.shape(), out.dtype())?;
            let opts = GradOptions {
                grad_outputs: vec![Some(seed)],
                retain_graph: Some(true),
                allow_unused: true,
                ..Default::default()
            };
            if let Some(g) = grad(&[&out], &[x], opts)?.remove(0) {
                *row = g.to_vec_f64()?;
            }
        }
        for k in 0..n_out {
            for j in 0..x.numel() {
                let (a, n) = (analytical[k][j], numerical[k][j]);
                if (a - n).abs() > opts.atol + opts.rtol * n.abs() || a.is_nan() != n.is_nan() {
                    if !opts.raise_exception {
                        return Ok(false);
                    }
                    return Err(Error::Gradcheck(format!(
                        "Jacobian mismatch for output 0 with respect to input {i},\nnumerical:{}\nanalytical:{}\n(first difference at output element {k}, input element {j}: numerical {n}, analytical {a})",
                        fmt_matrix(&numerical),
                        fmt_matrix(&analytical)
                    )));
                }
            }
        }
    }
    Ok(true)
}

/// Checks second derivatives: [`gradcheck`] of `(inputs, v) ↦ ∂⟨v, f(inputs)⟩/∂inputs` computed
/// with `create_graph`, for a random `v`.
pub fn gradgradcheck<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> Result<bool>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let out = f(inputs)?;
    let v = Tensor::randn(out.shape()).to_dtype(out.dtype()).requires_grad_(true);
    let n = inputs.len();
    let mut all: Vec<Tensor> = inputs.to_vec();
    all.push(v);
    let flags: Vec<bool> = inputs.iter().map(Tensor::requires_grad).collect();
    let first_order = |xs: &[Tensor]| -> Result<Tensor> {
        // gradcheck's numerical pass calls this on plain copies under no_grad: differentiate
        // them anyway (the first-order gradient is the function being checked).
        let _g = crate::autograd::mode::enable_grad();
        let xs: Vec<Tensor> = xs
            .iter()
            .zip(flags.iter().chain([&true]))
            .map(
                |(t, &rg)| if rg && !t.requires_grad() { t.detach().requires_grad_(true) } else { t.clone() },
            )
            .collect();
        let out = f(&xs[..n])?;
        let wrt: Vec<&Tensor> = xs[..n].iter().zip(&flags).filter(|(_, &rg)| rg).map(|(t, _)| t).collect();
        let opts = GradOptions {
            grad_outputs: vec![Some(xs[n].clone())],
            create_graph: true,
            allow_unused: true,
            ..Default::default()
        };
        let gs = grad(&[&out], &wrt, opts)?;
        let flat: Vec<Tensor> = gs
            .into_iter()
            .zip(&wrt)
            .map(|(g, w)| g.unwrap_or_else(|| Tensor::zeros_typed(w.shape(), w.dtype())).reshape(&[-1]))
            .collect::<Result<_>>()?;
        Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
    };
    gradcheck(first_order, &all, opts)
}

fn fmt_matrix(m: &[Vec<f64>]) -> String {
    m.iter()
        .map(|r| format!("[{}]", r.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}
