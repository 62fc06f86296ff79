//! The seed's linear regression (SEEDS 10.1) with kiln's Tensor API, written as in PyTorch:
//! data `y = 2x + 3 + N(0, 1)`, loss `0.5·Σ(x@w + b − y)²`, 500 SGD steps with lr 0.005.
//! Prints w and b and writes the loss curve and the fitted line as an SVG.
//!
//! Run: `cargo run --release --example linear_regression` (`--out DIR` for the SVG's folder)

#[path = "common/mod.rs"]
mod common;

use common::AnyResult;
use kiln::{no_grad, Tensor};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// What a run found.
pub struct Fit {
    pub w: f64,
    pub b: f64,
    pub losses: Vec<f64>,
    /// The last batch, for the plot.
    pub data: Vec<(f64, f64)>,
}

/// Trains the seed's model for `steps` steps (SEEDS 10.1 takes 500), printing progress if
/// `verbose`.
pub fn train(steps: usize, verbose: bool) -> kiln::Result<Fit> {
    kiln::manual_seed(0);
    let (batch, lr) = (32, 0.005);
    let mut w = Tensor::rand(&[1, 1]).requires_grad_(true);
    let mut b = Tensor::zeros(&[1, 1]).requires_grad_(true);
    let mut losses = Vec::with_capacity(steps);
    let mut data = Vec::new();
    for step in 0..steps {
        let x = Tensor::rand(&[batch, 1]) * 5.0;
        let y = &x * 2.0 + 3.0 + Tensor::randn(&[batch, 1]);
        let err = x.matmul(&w)?.add(&b)?.sub(&y)?;
        let loss = (&err * &err).sum() * 0.5;
        loss.backward()?;
        {
            let _g = no_grad();
            w -= &(w.grad().expect("w has a gradient") * lr);
            b -= &(b.grad().expect("b has a gradient") * lr);
        }
        w.grad().expect("w has a gradient").zero_()?;
        b.grad().expect("b has a gradient").zero_()?;
        losses.push(loss.item()?);
        if verbose && (step % 100 == 0 || step == steps - 1) {
            println!("step {step:>3}  loss {:>9.3}  w {:.4}  b {:.4}", losses[step], w.item()?, b.item()?);
        }
        if step == steps - 1 {
            data = x.to_vec_f64()?.into_iter().zip(y.to_vec_f64()?).collect();
        }
    }
    if verbose {
        println!("w = {w}\nb = {b}");
    }
    Ok(Fit { w: w.item()?, b: b.item()?, losses, data })
}

/// The loss curve (left) and the last batch with the fitted and the true line (right).
pub fn plot(fit: &Fit, path: &Path) -> AnyResult<()> {
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(550);
    common::draw_loss(&left, &fit.losses)?;
    let mut chart = ChartBuilder::on(&right)
        .caption(format!("fit: y = {:.3}x + {:.3}", fit.w, fit.b), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..5.0, -2f64..17.0)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("x").y_desc("y").draw().map_err(|e| e.to_string())?;
    chart
        .draw_series(fit.data.iter().map(|&(x, y)| Circle::new((x, y), 3, BLACK.mix(0.6).filled())))
        .map_err(|e| e.to_string())?
        .label("last batch")
        .legend(|(x, y)| Circle::new((x, y), 3, BLACK.filled()));
    chart
        .draw_series(LineSeries::new([(0.0, 3.0), (5.0, 13.0)], GREEN.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("true: 2x + 3")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN));
    chart
        .draw_series(LineSeries::new([(0.0, fit.b), (5.0, 5.0 * fit.w + fit.b)], RED.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("fitted")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Trains, plots into `out`, and returns the fit and the SVG's path.
pub fn run(steps: usize, verbose: bool, out: &Path) -> AnyResult<(Fit, PathBuf)> {
    let start = std::time::Instant::now();
    let fit = train(steps, verbose)?;
    let per_step = start.elapsed() / steps.max(1) as u32;
    let svg = out.join("linear_regression.svg");
    plot(&fit, &svg)?;
    if verbose {
        println!("fitted: w = {:.3} (true 2), b = {:.3} (true 3); {per_step:?} per step", fit.w, fit.b);
        let c = kiln::jit_stats();
        println!(
            "backend {}: compile cache {} hits / {} misses ({:.1}% hits), {:.1} ms compiling",
            kiln::backend_name()?,
            c.hits,
            c.misses,
            100.0 * c.hit_rate(),
            c.compile_seconds * 1e3
        );
        println!("loss curve and fitted line: {}", svg.display());
    }
    Ok((fit, svg))
}

fn main() -> AnyResult<()> {
    // The seed's 500 steps take well under a second; quick mode changes nothing here.
    run(500, true, &common::out_dir()?)?;
    Ok(())
}
