//! An MLP classifier trained from Rust, end to end: three interleaved spirals (a dataset the
//! example makes itself; no straight line separates them), a `Sequential` of `Linear` and
//! `ReLU`, Adam, a progress bar with loss and accuracy, the loss curve as an SVG, and the
//! weights saved to safetensors and loaded into a fresh model that predicts identically.
//!
//! Run: `cargo run --release --example mlp` (`--quick` for short settings, `--out DIR` for
//! where the SVG and the weights go)

#[path = "common/mod.rs"]
mod common;

use common::AnyResult;
use indicatif::{ProgressBar, ProgressStyle};
use kiln::nn::{
    functional::cross_entropy, load_safetensors, save_safetensors, Linear, Module, ReLU, Sequential,
};
use kiln::optim::{Adam, Optimizer};
use kiln::Tensor;
use rand::{Rng, SeedableRng};
use std::path::Path;

pub const CLASSES: usize = 3;

/// Settings of one run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub points_per_class: usize,
    pub hidden: usize,
    pub steps: usize,
    pub lr: f64,
    pub progress: bool,
}

impl Config {
    pub fn full() -> Config {
        Config { points_per_class: 400, hidden: 64, steps: 1000, lr: 0.01, progress: true }
    }

    /// For CI: a debug-built test runs this in a few seconds.
    pub fn quick() -> Config {
        Config { points_per_class: 100, hidden: 32, steps: 200, lr: 0.02, progress: false }
    }
}

/// What a run measured.
pub struct Report {
    pub losses: Vec<f64>,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub steps_per_second: f64,
    /// The reloaded model's test logits equal the trained model's, bit for bit.
    pub reload_identical: bool,
}

/// `n` points per class of `CLASSES` spirals in the plane, features `[n·C, 2]` and labels
/// `[n·C]` (the classic CS231n spiral: radius grows along the arm, angle has noise).
pub fn spirals(n: usize, seed: u64) -> kiln::Result<(Tensor, Tensor)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut xs, mut ys) = (Vec::with_capacity(n * CLASSES * 2), Vec::with_capacity(n * CLASSES));
    for c in 0..CLASSES {
        for i in 0..n {
            let r = i as f64 / n as f64;
            let t = c as f64 * 4.0 + 4.0 * r + rng.random_range(-1.0..1.0) * 0.2;
            xs.extend([r * t.sin(), r * t.cos()]);
            ys.push(c as i64);
        }
    }
    Ok((
        Tensor::from_vec_typed(xs, &[n * CLASSES, 2], kiln::DType::F32)?,
        Tensor::from_vec(ys, &[n * CLASSES])?,
    ))
}

pub fn model(hidden: usize) -> Sequential {
    Sequential::new()
        .append(Linear::new(2, hidden))
        .append(ReLU)
        .append(Linear::new(hidden, hidden))
        .append(ReLU)
        .append(Linear::new(hidden, CLASSES))
}

/// The fraction of rows of `logits` whose largest entry is at the label.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> kiln::Result<f64> {
    let (l, y) = (logits.to_vec_f64()?, labels.to_vec_f64()?);
    let c = logits.shape()[1];
    let hits = l
        .chunks(c)
        .zip(&y)
        .filter(|(row, &y)| {
            let best = row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            best as f64 == y
        })
        .count();
    Ok(hits as f64 / y.len() as f64)
}

/// The class the model predicts over the plane (shaded) and the held-out points (dots).
pub fn plot_decisions(net: &Sequential, x: &Tensor, y: &Tensor, path: &Path) -> AnyResult<()> {
    use plotters::prelude::*;
    const GRID: usize = 60;
    let (lo, hi) = (-1.1, 1.1);
    let at = |i: usize| lo + (hi - lo) * (i as f64 + 0.5) / GRID as f64;
    let cells: Vec<f64> = (0..GRID * GRID).flat_map(|k| [at(k % GRID), at(k / GRID)]).collect();
    let logits = {
        let _g = kiln::no_grad();
        net.forward(&Tensor::from_vec_typed(cells, &[GRID * GRID, 2], kiln::DType::F32)?)?.to_vec_f64()?
    };
    let argmax = |row: &[f64]| row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
    let colours = [RGBColor(230, 80, 60), RGBColor(60, 120, 220), RGBColor(60, 170, 90)];
    let root = SVGBackend::new(path, (520, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("predicted class; dots: held-out points", ("sans-serif", 16))
        .margin(10)
        .build_cartesian_2d(lo..hi, lo..hi)
        .map_err(|e| e.to_string())?;
    let step = (hi - lo) / GRID as f64;
    chart
        .draw_series(logits.chunks(CLASSES).enumerate().map(|(k, row)| {
            let (cx, cy) = (at(k % GRID), at(k / GRID));
            let c = colours[argmax(row)].mix(0.25).filled();
            Rectangle::new([(cx - step / 2.0, cy - step / 2.0), (cx + step / 2.0, cy + step / 2.0)], c)
        }))
        .map_err(|e| e.to_string())?;
    let (xs, ys) = (x.to_vec_f64()?, y.to_vec_f64()?);
    chart
        .draw_series(
            xs.chunks(2).zip(&ys).map(|(p, &c)| Circle::new((p[0], p[1]), 2, colours[c as usize].filled())),
        )
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Trains, writes `mlp_loss.svg`, `mlp_decisions.svg` and `mlp.safetensors` into `out`, reloads
/// and compares.
pub fn run(cfg: Config, out: &Path) -> AnyResult<Report> {
    kiln::manual_seed(0);
    let (x, y) = spirals(cfg.points_per_class, 1)?;
    let (x_test, y_test) = spirals(cfg.points_per_class / 2, 2)?;
    let net = model(cfg.hidden);
    let mut opt = Adam::new(net.parameters(), cfg.lr)?;

    let bar = if cfg.progress { ProgressBar::new(cfg.steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:36.cyan/blue} {pos:>4}/{len} {msg}  [{elapsed}]")?);
    let mut losses = Vec::with_capacity(cfg.steps);
    let start = std::time::Instant::now();
    for step in 0..cfg.steps {
        opt.zero_grad();
        let logits = net.forward(&x)?;
        let loss = cross_entropy(&logits, &y)?;
        loss.backward()?;
        opt.step()?;
        losses.push(loss.item()?);
        if step % 20 == 0 || step + 1 == cfg.steps {
            bar.set_message(format!(
                "loss {:.4}  train acc {:5.1}%",
                losses[step],
                100.0 * accuracy(&logits, &y)?
            ));
        }
        bar.inc(1);
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish();

    let train_accuracy = accuracy(&net.forward(&x)?, &y)?;
    let test_logits = {
        let _g = kiln::no_grad();
        net.forward(&x_test)?
    };
    let test_accuracy = accuracy(&test_logits, &y_test)?;

    common::plot_loss(&out.join("mlp_loss.svg"), &losses)?;
    plot_decisions(&net, &x_test, &y_test, &out.join("mlp_decisions.svg"))?;
    let weights = out.join("mlp.safetensors");
    save_safetensors(&weights, &net.named_parameters())?;
    kiln::manual_seed(99); // a differently initialised model...
    let fresh = model(cfg.hidden);
    load_safetensors(&weights, &fresh.named_parameters())?; // ...takes the trained weights
    let reloaded = {
        let _g = kiln::no_grad();
        fresh.forward(&x_test)?
    };
    let reload_identical = reloaded.to_vec_f32()? == test_logits.to_vec_f32()?;

    Ok(Report {
        losses,
        train_accuracy,
        test_accuracy,
        steps_per_second: cfg.steps as f64 / seconds,
        reload_identical,
    })
}

fn main() -> AnyResult<()> {
    let cfg = if common::quick() { Config::quick() } else { Config::full() };
    let out = common::out_dir()?;
    println!(
        "three spirals, {} points per class; MLP 2-{h}-{h}-{CLASSES} with ReLU; Adam lr {}; {} full-batch steps",
        cfg.points_per_class,
        cfg.lr,
        cfg.steps,
        h = cfg.hidden
    );
    let r = run(cfg, &out)?;
    println!("final loss {:.4}", r.losses.last().copied().unwrap_or(f64::NAN));
    println!("accuracy: train {:.1}%, test {:.1}%", 100.0 * r.train_accuracy, 100.0 * r.test_accuracy);
    println!("{:.0} training steps/s (forward + backward + Adam update)", r.steps_per_second);
    let c = kiln::jit_stats();
    println!(
        "compile cache: {} hits / {} misses ({:.1}% hits), {:.0} ms compiling",
        c.hits,
        c.misses,
        100.0 * c.hit_rate(),
        c.compile_seconds * 1e3
    );
    println!("loss curve: {}", out.join("mlp_loss.svg").display());
    println!("decision regions: {}", out.join("mlp_decisions.svg").display());
    println!(
        "weights: {} (reloaded into a fresh model: {} predictions)",
        out.join("mlp.safetensors").display(),
        if r.reload_identical { "identical" } else { "DIFFERENT" }
    );
    if !r.reload_identical {
        return Err("the reloaded model predicts differently".into());
    }
    Ok(())
}
