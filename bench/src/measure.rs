//! The timing protocol every Rust runner (kiln, candle) follows, mirroring `peers/common.py`:
//! first call (trace + compile + run) timed alone as compile time and its outputs saved for the
//! check; warm-up calls; then `reps` timed repetitions of `inner` calls each (`inner` calibrated so
//! that a repetition lasts at least `min_rep_s`; it is 1 except for microsecond workloads).

use crate::npy::{self, Array};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, Error>;

/// Settings of one measurement (shared by all runners of a run).
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    pub reps: usize,
    pub warmup: usize,
    pub min_rep_s: f64,
}

/// The resident-set high-water mark of this process (`VmHWM` in `/proc/self/status`), in bytes.
pub fn vm_hwm_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// One call of a workload: returns named handles to its (computed) results.
pub type Call<H> = Box<dyn FnMut() -> Res<Vec<(String, H)>>>;

/// A workload prepared by a runner: `call` runs one call and returns handles to the results
/// (already computed); `convert` turns a handle into an array, outside any timed region.
pub struct Prepared<H> {
    pub call: Call<H>,
    pub convert: fn(&H) -> Res<Array>,
}

/// Runs the protocol and returns the runner's JSON record (`status: ok`). `baseline` is VmHWM
/// before the inputs were loaded.
pub fn run<H>(
    mut p: Prepared<H>,
    proto: Protocol,
    out_dir: &Path,
    version: &str,
    baseline: Option<u64>,
) -> Res<Value> {
    let t0 = Instant::now();
    let outs = (p.call)()?;
    let compile_s = t0.elapsed().as_secs_f64();
    std::fs::create_dir_all(out_dir)?;
    let mut names = Vec::new();
    for (name, h) in &outs {
        npy::write(&out_dir.join(format!("{name}.npy")), &(p.convert)(h)?)?;
        names.push(name.clone());
    }
    drop(outs);
    let mut single = f64::INFINITY;
    for _ in 0..proto.warmup.max(1) {
        let t0 = Instant::now();
        drop((p.call)()?);
        single = single.min(t0.elapsed().as_secs_f64());
    }
    let inner = ((proto.min_rep_s / single.max(1e-9)).ceil() as usize).max(1);
    let mut times = Vec::with_capacity(proto.reps);
    for _ in 0..proto.reps {
        let t0 = Instant::now();
        for _ in 0..inner {
            drop((p.call)()?);
        }
        times.push(t0.elapsed().as_secs_f64() / inner as f64);
    }
    Ok(json!({
        "status": "ok",
        "median_s": median(&times),
        "min_s": times.iter().copied().fold(f64::INFINITY, f64::min),
        "compile_s": compile_s,
        "peak_bytes": vm_hwm_bytes(),
        "baseline_bytes": baseline,
        "inner": inner,
        "times_s": times,
        "version": version,
        "outputs": names,
    }))
}

/// Reads the inputs the harness wrote for a workload (`DIR/<name>.npy`).
pub fn load_inputs(dir: &Path) -> Res<std::collections::BTreeMap<String, Array>> {
    let mut m = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "npy") {
            let stem = p.file_stem().unwrap_or_default().to_string_lossy().to_string();
            m.insert(stem, npy::read(&p)?);
        }
    }
    Ok(m)
}

pub fn input<'a>(m: &'a std::collections::BTreeMap<String, Array>, k: &str) -> Res<&'a Array> {
    m.get(k).ok_or_else(|| format!("input {k}.npy is missing").into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
