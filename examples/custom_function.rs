//! A custom autograd function: SiLU (`x · σ(x)`) with a hand-written backward, checked by
//! `gradcheck` (first order) and `gradgradcheck` (second order: the backward is itself made of
//! recorded ops), and a deliberately wrong backward that `gradcheck` catches.
//!
//! Run: `cargo run --release --example custom_function`

use kiln::autograd::{gradcheck, gradgradcheck, Context, Function, FunctionExt, GradcheckOptions};
use kiln::{DType, Tensor};

/// `silu(x) = x · σ(x)`, `silu'(x) = σ(x) · (1 + x · (1 − σ(x)))`.
pub struct SiLU {
    /// Off by a factor in the backward, to show what gradcheck reports.
    pub wrong: bool,
}

impl Function for SiLU {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> kiln::Result<Vec<Tensor>> {
        ctx.save_for_backward(&[&x[0]])?;
        Ok(vec![x[0].mul(&x[0].sigmoid())?])
    }

    fn backward(&self, ctx: &Context, g: &[Tensor]) -> kiln::Result<Vec<Option<Tensor>>> {
        let x = &ctx.saved_tensors()?[0];
        let s = x.sigmoid();
        let mut d = s.mul(&(x.mul(&(1.0 - &s))? + 1.0))?;
        if self.wrong {
            d *= 1.1;
        }
        Ok(vec![Some(g[0].mul(&d)?)])
    }
}

/// What the checks found: gradcheck and gradgradcheck of SiLU, and gradcheck's error for
/// the wrong backward.
pub struct Checks {
    pub grad_fn: String,
    pub gradcheck: bool,
    pub gradgradcheck: bool,
    pub wrong: Result<bool, kiln::Error>,
}

pub fn checks() -> kiln::Result<Checks> {
    let silu = |wrong: bool| move |x: &[Tensor]| Ok(SiLU { wrong }.apply(&[&x[0]])?.remove(0));
    let x = (Tensor::randn(&[3, 4]) * 2.0).to_dtype(DType::F64).requires_grad_(true);
    let y = silu(false)(std::slice::from_ref(&x))?;
    let opts = GradcheckOptions { eps: 1e-6, ..Default::default() };
    Ok(Checks {
        grad_fn: y.grad_fn().expect("x requires grad").name().to_string(),
        gradcheck: gradcheck(silu(false), std::slice::from_ref(&x), opts)?,
        gradgradcheck: gradgradcheck(silu(false), std::slice::from_ref(&x), opts)?,
        wrong: gradcheck(silu(true), std::slice::from_ref(&x), opts),
    })
}

fn main() -> kiln::Result<()> {
    kiln::manual_seed(0);
    let c = checks()?;
    println!("silu(x) has grad_fn=<{}>", c.grad_fn);
    println!("gradcheck(silu, f64 [3, 4]) = {}", c.gradcheck);
    println!("gradgradcheck(silu, f64 [3, 4]) = {}", c.gradgradcheck);
    match c.wrong {
        Ok(ok) => println!("gradcheck with a wrong backward = {ok}"),
        Err(e) => {
            // The error carries both Jacobians; its first and last lines say what differs.
            let msg = e.to_string();
            let lines: Vec<&str> = msg.lines().collect();
            println!("gradcheck with a wrong backward fails: {}", lines[0]);
            if lines.len() > 1 {
                println!("  {}", lines[lines.len() - 1]);
            }
        }
    }
    Ok(())
}
