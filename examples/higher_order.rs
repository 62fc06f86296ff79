//! Higher-order derivatives: differentiate a gradient again (`create_graph`), up to third
//! order, printed the way PyTorch prints them, and checked against the closed forms.
//!
//! Run: `cargo run --release --example higher_order`

use kiln::autograd::{grad, GradOptions};
use kiln::Tensor;

/// One derivative: what it is, kiln's tensor, the exact value.
pub struct Row {
    pub what: &'static str,
    pub value: Tensor,
    pub exact: f64,
}

/// `d/dx` of `y`, recorded so that it can be differentiated again.
fn d(y: &Tensor, x: &Tensor) -> kiln::Result<Tensor> {
    let opts = GradOptions { create_graph: true, ..Default::default() };
    Ok(grad(&[y], &[x], opts)?.remove(0).expect("y depends on x"))
}

/// The derivatives of `x³` at 5 (SEEDS 4.4 goes to second order) and of `tanh` at 0.5 up to
/// third order.
pub fn derivatives() -> kiln::Result<Vec<Row>> {
    let x = Tensor::full_typed(&[], 5.0, kiln::DType::F64).requires_grad_(true);
    let y = x.pow(3.0);
    let (d1, d2, d3) = {
        let d1 = d(&y, &x)?;
        let d2 = d(&d1, &x)?;
        let d3 = d(&d2, &x)?;
        (d1, d2, d3)
    };
    let t = Tensor::full_typed(&[], 0.5, kiln::DType::F64).requires_grad_(true);
    let th = t.tanh();
    let (t1, t2, t3) = {
        let t1 = d(&th, &t)?;
        let t2 = d(&t1, &t)?;
        let t3 = d(&t2, &t)?;
        (t1, t2, t3)
    };
    let c = 0.5f64.tanh();
    Ok(vec![
        Row { what: "d/dx x³ at 5 = 3x²", value: d1, exact: 75.0 },
        Row { what: "d²/dx² x³ at 5 = 6x", value: d2, exact: 30.0 },
        Row { what: "d³/dx³ x³ at 5 = 6", value: d3, exact: 6.0 },
        Row { what: "d/dx tanh at 0.5 = 1 - tanh²", value: t1, exact: 1.0 - c * c },
        Row { what: "d²/dx² tanh = -2 tanh (1 - tanh²)", value: t2, exact: -2.0 * c * (1.0 - c * c) },
        Row {
            what: "d³/dx³ tanh = -2 (1 - tanh²)(1 - 3 tanh²)",
            value: t3,
            exact: -2.0 * (1.0 - c * c) * (1.0 - 3.0 * c * c),
        },
    ])
}

fn main() -> kiln::Result<()> {
    for r in derivatives()? {
        let got = r.value.item()?;
        println!("{:<44} {}   exact {:.6}  (|diff| {:.1e})", r.what, r.value, r.exact, (got - r.exact).abs());
    }
    Ok(())
}
