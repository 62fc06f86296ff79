//! Checking outputs, the tables (terminal and Markdown) and the JSON report.

use crate::npy;
use crate::reference::{normalised_error, Outputs};
use crate::runners::RUNNERS;
use crate::workloads::{self, Sizes};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// Compares a runner's saved outputs (`dir/<name>.npy`) with the reference and, for peers, with
/// kiln's. Returns the `check` object: `{"ok", "vs_reference", "vs_kiln", "problems"}`.
pub fn check(workload: &str, dir: &Path, reference: Option<&Outputs>, kiln_dir: Option<&Path>) -> Value {
    let tol = workloads::tolerance(workload);
    let mut problems = Vec::new();
    let (mut vs_ref, mut vs_kiln) = (None::<f64>, None::<f64>);
    let load = |d: &Path, k: &str| npy::read(&d.join(format!("{k}.npy")));
    if let Some(refs) = reference {
        for (k, (shape, want)) in refs {
            match load(dir, k) {
                Ok(a) if a.shape() != shape.as_slice() => {
                    problems.push(format!("{k}: shape {:?}, expected {shape:?}", a.shape()));
                    vs_ref = Some(f64::INFINITY);
                }
                Ok(a) => {
                    let e = normalised_error(&a.to_f64(), want);
                    if e.partial_cmp(&tol) != Some(std::cmp::Ordering::Less) {
                        problems.push(format!("{k}: error {e:.2e} vs the f64 reference exceeds {tol:.0e}"));
                    }
                    vs_ref = Some(vs_ref.unwrap_or(0.0).max(e));
                }
                Err(e) => {
                    problems.push(format!("{k}: {e}"));
                    vs_ref = Some(f64::INFINITY);
                }
            }
        }
    }
    if let Some(kd) = kiln_dir {
        let names = reference.map(|r| r.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        for k in names {
            if let (Ok(a), Ok(b)) = (load(dir, &k), load(kd, &k)) {
                let e = normalised_error(&a.to_f64(), &b.to_f64());
                vs_kiln = Some(vs_kiln.unwrap_or(0.0).max(e));
                if e.partial_cmp(&(2.0 * tol)) != Some(std::cmp::Ordering::Less) {
                    problems.push(format!("{k}: differs from kiln's by {e:.2e}"));
                }
            }
        }
    }
    let fin = |v: Option<f64>| v.map(|e| if e.is_finite() { json!(e) } else { json!("inf") });
    json!({"ok": problems.is_empty(), "tolerance": tol, "vs_reference": fin(vs_ref), "vs_kiln": fin(vs_kiln), "problems": problems})
}

pub fn is_ok(r: &Value) -> bool {
    r["status"] == "ok"
}

pub fn check_failed(r: &Value) -> bool {
    is_ok(r) && r["check"]["ok"] == json!(false)
}

/// `1.23 s`, `45.6 ms`, `7.8 µs`.
pub fn fmt_time(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{:.0} ns", s * 1e9)
    }
}

fn fmt_bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{} MiB", (b + (1 << 19)) >> 20),
        None => "-".into(),
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The ratio peer/kiln of median times (`> 1`: kiln is faster), or why there is none.
pub fn ratio(kiln: &Value, peer: &Value) -> String {
    if !is_ok(kiln) || !is_ok(peer) {
        return "-".into();
    }
    if check_failed(kiln) {
        return "WRONG(kiln)".into();
    }
    if check_failed(peer) {
        return "WRONG(peer)".into();
    }
    format!("{:.2}", num(&peer["median_s"]) / num(&kiln["median_s"]))
}

fn check_cell(r: &Value) -> String {
    let c = &r["check"];
    if c.is_null() {
        return String::new();
    }
    let err = |k: &str| match &c[k] {
        Value::Null => None,
        v if v.is_string() => Some(format!("{k} inf")),
        v => Some(format!("{k} {:.0e}", num(v))),
    };
    let parts: Vec<String> = [err("vs_reference"), err("vs_kiln")].into_iter().flatten().collect();
    format!("{} ({})", if c["ok"] == json!(true) { "ok" } else { "MISMATCH" }, parts.join(", "))
        .replace("vs_", "")
}

fn status_text(r: &Value) -> String {
    let reason = r["reason"].as_str().unwrap_or("").replace('\n', " ");
    let reason: String = reason.chars().take(160).collect();
    format!("{}: {reason}", r["status"].as_str().unwrap_or("?"))
}

/// The terminal table of one workload.
pub fn workload_table(
    w: &str,
    sizes: Sizes,
    runs: &serde_json::Map<String, Value>,
    triad_gbps: Option<f64>,
    fma_peak: Option<f64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n== {w}: {}", workloads::describe(w, sizes));
    let traffic = workloads::min_traffic_bytes(w, sizes);
    let _ = writeln!(
        s,
        "{:<14} {:>10} {:>10} {:>11} {:>9} {:>10}  check",
        "runner", "median", "min", "first call", "peak RSS", "peer/kiln"
    );
    let kiln = runs.get("kiln").cloned().unwrap_or(Value::Null);
    for name in RUNNERS {
        let Some(r) = runs.get(*name) else { continue };
        if !is_ok(r) {
            let _ = writeln!(s, "{name:<14} {}", status_text(r));
            continue;
        }
        let rat = if *name == "kiln" { String::new() } else { ratio(&kiln, r) };
        let mut line = format!(
            "{name:<14} {:>10} {:>10} {:>11} {:>9} {:>10}  {}",
            fmt_time(num(&r["median_s"])),
            fmt_time(num(&r["min_s"])),
            fmt_time(num(&r["compile_s"])),
            fmt_bytes(r["peak_bytes"].as_u64()),
            rat,
            check_cell(r)
        );
        if let Some(bytes) = traffic {
            let gbps = bytes / num(&r["median_s"]) / 1e9;
            let _ = write!(line, "  [{gbps:.2} GB/s");
            if let Some(t) = triad_gbps {
                let _ = write!(line, " = {:.1}% of triad", 100.0 * gbps / t);
            }
            line.push(']');
        }
        if let Some(flops) = workloads::matmul_flops(w) {
            let _ = write!(line, "  [{:.1} GFLOP/s", flops / num(&r["median_s"]) / 1e9);
            if let Some(p) = fma_peak {
                let _ = write!(line, " = {:.1}% of FMA peak", 100.0 * flops / num(&r["median_s"]) / 1e9 / p);
            }
            line.push(']');
        }
        let _ = writeln!(s, "{line}");
    }
    s
}

/// The Markdown summary: one row per workload, kiln's median and each peer's with its ratio.
/// The hand-written C kernel's W1 line (`roofline.rs`), with kiln's W1 median as a multiple of it.
fn c_kernel_line(c: &Value, kiln: &Value) -> Option<String> {
    if c.is_null() {
        return None;
    }
    if c["status"] != "ok" {
        return Some(format!(
            "- hand-written C kernel for W1: {} ({})",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or("")
        ));
    }
    let ms = |k: &str| c[k].as_f64().unwrap_or(f64::NAN) * 1e3;
    let mut line = format!(
        "- hand-written C kernel for W1 fwd+bwd (`bench/c/w1_roofline.c`, `{}`, 2 threads): **{:.1} ms** median ({:.1} min) into reused buffers, {:.1} ms into fresh ones",
        c["compiler"].as_str().unwrap_or("cc"),
        ms("reused_median_s"),
        ms("reused_min_s"),
        ms("fresh_median_s"),
    );
    if let (Some(k), Some(r)) = (kiln["median_s"].as_f64(), c["reused_median_s"].as_f64()) {
        let _ = write!(line, "; kiln's W1 median is {:.2}× it", k / r);
    }
    Some(line)
}

pub fn markdown(report: &Value, sizes: Sizes, command: &str) -> String {
    let m = &report["machine"];
    let mut s = String::new();
    let _ = writeln!(s, "## Run of {}\n", m["date_utc"].as_str().unwrap_or("?"));
    let _ = writeln!(s, "- command: `{command}`");
    let _ = writeln!(
        s,
        "- machine: {} ({} cores, {} threads used, {}), {} GiB RAM, last-level cache {}, load average at start {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["threads_used"],
        m["simd"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("/")).unwrap_or_default(),
        m["memory_bytes"].as_u64().map(|b| b >> 30).unwrap_or(0),
        fmt_bytes(m["last_level_cache_bytes"].as_u64()),
        m["load_average"].as_str().unwrap_or("?"),
    );
    match m["triad_gbps"].as_f64() {
        Some(g) => {
            let _ = writeln!(
                s,
                "- STREAM-like triad, {} threads: **{g:.1} GB/s** (arrays of {})",
                m["threads_used"],
                fmt_bytes(m["triad_array_bytes"].as_u64())
            );
        }
        None => {
            let _ = writeln!(s, "- STREAM-like triad: not measured (--no-triad)");
        }
    }
    if let Some(line) = c_kernel_line(&m["c_w1"], &report["workloads"]["W1"]["kiln"]) {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "- kiln {} (commit {}), backend **`{}`**\n",
        m["kiln_version"].as_str().unwrap_or("?"),
        m["kiln_commit"].as_str().unwrap_or("?"),
        m["backend"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "Per call: median / min over the timed repetitions (first call = trace + compile + run, in parentheses); each peer's `×` is peer median / kiln median (> 1: kiln faster).\n");
    let _ = writeln!(
        s,
        "| workload | kiln | torch eager | torch.compile | JAX jit | candle | kiln peak RSS | check |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let empty = serde_json::Map::new();
    let all = report["workloads"].as_object().unwrap_or(&empty);
    for w in workloads::ALL {
        let Some(runs) = all.get(*w) else { continue };
        let runs = runs.as_object().unwrap_or(&empty);
        let kiln = runs.get("kiln").cloned().unwrap_or(Value::Null);
        let cell = |name: &str| -> String {
            let Some(r) = runs.get(name) else { return "not run".into() };
            if !is_ok(r) {
                return r["status"].as_str().unwrap_or("?").to_string();
            }
            let base = format!(
                "{} / {} ({})",
                fmt_time(num(&r["median_s"])),
                fmt_time(num(&r["min_s"])),
                fmt_time(num(&r["compile_s"]))
            );
            if name == "kiln" {
                let mut b = base;
                if let (Some(bytes), Some(t)) =
                    (workloads::min_traffic_bytes(w, sizes), m["triad_gbps"].as_f64())
                {
                    let gbps = bytes / num(&r["median_s"]) / 1e9;
                    let _ = write!(b, "; {gbps:.2} GB/s = {:.1}% of triad", 100.0 * gbps / t);
                }
                if let Some(flops) = workloads::matmul_flops(w) {
                    let gf = flops / num(&r["median_s"]) / 1e9;
                    let _ = write!(b, "; {gf:.1} GFLOP/s");
                    if let Some(p) = m["fma_peak_gflops_estimate"].as_f64() {
                        let _ = write!(b, " = {:.1}% of FMA peak", 100.0 * gf / p);
                    }
                }
                b
            } else {
                format!("{base}, ×{}", ratio(&kiln, r))
            }
        };
        let checks: Vec<String> = RUNNERS
            .iter()
            .filter_map(|n| runs.get(*n).filter(|r| is_ok(r)).map(|r| (n, r)))
            .filter(|(_, r)| !r["check"].is_null())
            .map(|(n, r)| format!("{n} {}", if r["check"]["ok"] == json!(true) { "ok" } else { "MISMATCH" }))
            .collect();
        let _ = writeln!(
            s,
            "| {w} | {} | {} | {} | {} | {} | {} | {} |",
            cell("kiln"),
            cell("torch_eager"),
            cell("torch_compile"),
            cell("jax_jit"),
            cell("candle"),
            runs.get("kiln").map(|r| fmt_bytes(r["peak_bytes"].as_u64())).unwrap_or_default(),
            checks.join(", ")
        );
    }
    if let Some(t) = report.get("trace").and_then(Value::as_object) {
        let _ = writeln!(
            s,
            "\nTracing overhead ({} chained scalar multiplies, realized every {}), ns per op:\n",
            workloads::TRACE_OPS,
            workloads::TRACE_EVERY
        );
        let _ = writeln!(
            s,
            "| runner | no grad | with grad | recording only, no grad | recording only, with grad |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (name, r) in t {
            if !is_ok(r) {
                let _ = writeln!(s, "| {name} | {} | | | |", r["status"].as_str().unwrap_or("?"));
                continue;
            }
            let f = |k: &str| r[k].as_f64().map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                f("ns_per_op_no_grad"),
                f("ns_per_op_grad"),
                f("record_ns_per_op_no_grad"),
                f("record_ns_per_op_grad")
            );
        }
    }
    // One line per (runner, what happened), listing the workloads it happened on.
    let mut notes: Vec<(String, Vec<String>)> = Vec::new();
    for w in workloads::ALL {
        let Some(runs) = all.get(*w).and_then(Value::as_object) else { continue };
        for (n, r) in runs {
            let what = if !is_ok(r) {
                format!("{n}: {}", status_text(r))
            } else if check_failed(r) {
                format!("{n}: MISMATCH: {}", r["check"]["problems"])
            } else {
                continue;
            };
            match notes.iter_mut().find(|(k, _)| *k == what) {
                Some((_, ws)) => ws.push(w.to_string()),
                None => notes.push((what, vec![w.to_string()])),
            }
        }
    }
    let notes: Vec<String> =
        notes.into_iter().map(|(what, ws)| format!("- {} — {what}", ws.join(", "))).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNot measured or not right:\n\n{}", notes.join("\n"));
    }
    s
}

#[cfg(test)]
mod c_kernel_tests {
    use super::c_kernel_line;
    use serde_json::json;

    #[test]
    fn the_c_kernel_line_states_kilns_multiple_or_why_it_is_missing() {
        let c = json!({"status": "ok", "compiler": "cc -O3", "reused_median_s": 0.008, "reused_min_s": 0.0075, "fresh_median_s": 0.034});
        let line = c_kernel_line(&c, &json!({"median_s": 0.012})).unwrap();
        assert!(line.contains("**8.0 ms** median (7.5 min)"), "{line}");
        assert!(line.contains("34.0 ms into fresh ones; kiln's W1 median is 1.50× it"), "{line}");
        let missing = json!({"status": "missing", "reason": "no C compiler `cc`"});
        let line = c_kernel_line(&missing, &json!(null)).unwrap();
        assert_eq!(line, "- hand-written C kernel for W1: missing (no C compiler `cc`)");
        assert!(c_kernel_line(&json!(null), &json!(null)).is_none());
    }
}
