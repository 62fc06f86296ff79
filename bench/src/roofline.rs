//! The hand-written C kernel for W1 (`bench/c/w1_roofline.c`), compiled with the machine's C
//! compiler and run in the same session as everything else: the roofline kiln's fused W1 kernel
//! is compared with (the "within 1.5× of a hand-written C kernel"), measured on this
//! machine rather than quoted from another.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Largest relative error of the C kernel's results (libmvec's `expf` under `-ffast-math`).
const MAX_REL_ERR: f64 = 1e-5;

/// Compiles and runs the C kernel on `x_npy` (`reps` timed calls each into reused and fresh
/// buffers, 2 threads) in `dir`. `status: missing` when no C compiler with OpenMP is available.
pub fn c_w1(x_npy: &Path, dir: &Path, reps: usize, threads: usize) -> Value {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/w1_roofline.c");
    let exe = dir.join("w1_roofline");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let flags = ["-O3", "-march=native", "-ffast-math", "-fopenmp"];
    let build = Command::new(&cc).args(flags).arg(&src).arg("-o").arg(&exe).arg("-lm").output();
    match build {
        Err(e) => return json!({"status": "missing", "reason": format!("no C compiler `{cc}`: {e}")}),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            let tail: Vec<&str> = err.lines().take(4).collect();
            return json!({"status": "missing", "reason": format!("`{cc}` failed: {}", tail.join(" | "))});
        }
        Ok(_) => {}
    }
    let run = Command::new(&exe)
        .arg(x_npy)
        .arg(reps.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .output();
    let out = match run {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        Ok(o) => {
            return json!({"status": "error", "reason": format!("exited with {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())})
        }
        Err(e) => return json!({"status": "error", "reason": e.to_string()}),
    };
    let Some(mut rec) = out.lines().rev().find_map(|l| serde_json::from_str::<Value>(l).ok()) else {
        return json!({"status": "error", "reason": format!("no JSON record in {out:?}")});
    };
    let err = rec["max_rel_err"].as_f64().unwrap_or(f64::INFINITY);
    rec["status"] = json!(if err <= MAX_REL_ERR { "ok" } else { "error" });
    if err > MAX_REL_ERR {
        rec["reason"] = json!(format!("wrong results: max relative error {err:.2e} > {MAX_REL_ERR:.0e}"));
    }
    rec["compiler"] = json!(format!("{cc} {}", flags.join(" ")));
    rec
}
