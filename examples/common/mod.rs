//! Shared by the examples (and by `tests/examples.rs`, which runs them with quick settings):
//! where outputs go, the quick switch, and the plots.

#![allow(dead_code)] // each example uses a different part

use plotters::prelude::*;
use std::error::Error;
use std::path::{Path, PathBuf};

pub type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Quick settings (a few seconds, for CI) when `KILN_EXAMPLE_QUICK=1` or `--quick` is given.
pub fn quick() -> bool {
    std::env::var("KILN_EXAMPLE_QUICK").is_ok_and(|v| v != "0") || std::env::args().any(|a| a == "--quick")
}

/// Where examples write their files: `--out DIR`, else `KILN_EXAMPLE_OUT`, else
/// `target/kiln-examples` in the workspace. Created if missing.
pub fn out_dir() -> AnyResult<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    let dir = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).ok_or("--out needs a directory")?),
        None => match std::env::var_os("KILN_EXAMPLE_OUT") {
            Some(d) => PathBuf::from(d),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("kiln-examples"),
        },
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Draws a loss curve (log scale) on `area`.
pub fn draw_loss<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    losses: &[f64],
) -> AnyResult<()>
where
    DB::ErrorType: 'static,
{
    let positive: Vec<f64> = losses.iter().copied().filter(|l| *l > 0.0 && l.is_finite()).collect();
    let lo = positive.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) * 0.8;
    let hi = positive.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption("training loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..losses.len().max(1) as f64, (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            losses.iter().enumerate().filter(|(_, l)| **l > 0.0).map(|(i, &l)| (i as f64, l)),
            &BLUE,
        ))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// An SVG with just the loss curve.
pub fn plot_loss(path: &Path, losses: &[f64]) -> AnyResult<()> {
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    draw_loss(&root, losses)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
