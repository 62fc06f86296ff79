//! kiln-bench: kiln side by side with PyTorch eager, torch.compile, JAX jit and candle on the
//! workloads of `../shared/bench/WORKLOADS.md`, in one run, on the same inputs, checked for
//! correctness before any time counts. See `bench/README.md`.

mod candle_runs;
mod kiln_runs;
mod machine;
mod measure;
mod npy;
mod reference;
mod report;
mod rng;
mod roofline;
mod runners;
mod workloads;

use measure::{Protocol, Res};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use workloads::Sizes;

const USAGE: &str = "\
usage: cargo run --release -p kiln-bench -- [options]

  --workload W      W1-fwd | W1 | W2 | W3 | W4 | W5 | trace (repeatable or comma-separated;
                    default: all)
  --peers           also run PyTorch eager, torch.compile, JAX jit (bench/peers/*.py, with the
                    Python in KILN_PEERS_PY or the venv ../shared/bench/setup-peers.sh makes) and
                    candle (cargo feature `candle`)
  --peer NAME       run only these peers (repeatable; implies --peers): torch_eager,
                    torch_compile, jax_jit, candle
  --reps N          timed repetitions (default 10; --quick: 5)
  --warmup N        warm-up calls after the first one (default 2; --quick: 1)
  --quick           5 repetitions after 1 warm-up call (W1 keeps its size; --w1-log2
                    shrinks it)
  --w1-log2 N       W1 on 2^N elements (default 24)
  --json PATH       write the JSON report there
  --markdown PATH   write the Markdown summary there (bench/RESULTS.md is one)
  --no-triad        skip the memory-bandwidth measurement
  --no-c            with --peers, skip the hand-written C kernel for W1 (bench/c/, built with
                    the machine's `cc` or $CC; reported as missing when there is none)
  --timeout S       seconds allowed per runner and workload (default 900)
  --keep            keep the temporary directory (inputs, outputs, logs)
  --from-json PATH  measure nothing: print (and with --markdown write) the Markdown summary of
                    a JSON report written earlier by --json
";

struct Options {
    workloads: Vec<String>,
    peers: Vec<String>,
    proto: Protocol,
    sizes: Sizes,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    triad: bool,
    c_kernel: bool,
    timeout: Duration,
    keep: bool,
    quick: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        workloads: Vec::new(),
        peers: Vec::new(),
        proto: Protocol { reps: 10, warmup: 2, min_rep_s: 0.02 },
        sizes: Sizes { w1_log2: 24 },
        json: None,
        markdown: None,
        triad: true,
        c_kernel: true,
        timeout: Duration::from_secs(900),
        keep: false,
        quick: false,
    };
    let (mut reps, mut warmup, mut w1, mut all_peers) = (None, None, None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        let number =
            |s: String, name: &str| s.parse::<usize>().map_err(|_| format!("{name}: not a number: {s}"));
        match a.as_str() {
            "--workload" | "-w" => {
                for w in val(a)?.split(',').filter(|s| !s.is_empty()) {
                    let w = w.trim().to_string();
                    if !workloads::ALL.contains(&w.as_str()) {
                        return Err(format!("unknown workload {w}; one of {}", workloads::ALL.join(", ")));
                    }
                    o.workloads.push(w);
                }
            }
            "--peers" => all_peers = true,
            "--peer" => {
                let p = val(a)?;
                if !runners::RUNNERS[1..].contains(&p.as_str()) {
                    return Err(format!("unknown peer {p}; one of {}", runners::RUNNERS[1..].join(", ")));
                }
                o.peers.push(p);
            }
            "--reps" => reps = Some(number(val(a)?, a)?.max(1)),
            "--warmup" => warmup = Some(number(val(a)?, a)?),
            "--w1-log2" => w1 = Some(number(val(a)?, a)?.clamp(4, 28) as u32),
            "--quick" => o.quick = true,
            "--json" => o.json = Some(val(a)?.into()),
            "--markdown" => o.markdown = Some(val(a)?.into()),
            "--no-triad" => o.triad = false,
            "--no-c" => o.c_kernel = false,
            "--timeout" => o.timeout = Duration::from_secs(number(val(a)?, a)? as u64),
            "--keep" => o.keep = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.quick {
        o.proto = Protocol { reps: 5, warmup: 1, min_rep_s: 0.01 };
    }
    o.proto.reps = reps.unwrap_or(o.proto.reps);
    o.proto.warmup = warmup.unwrap_or(o.proto.warmup);
    o.sizes.w1_log2 = w1.unwrap_or(o.sizes.w1_log2);
    if o.workloads.is_empty() {
        o.workloads = workloads::DEFAULT.iter().map(|s| s.to_string()).collect();
    }
    if all_peers && o.peers.is_empty() {
        o.peers = runners::RUNNERS[1..].iter().map(|s| s.to_string()).collect();
    }
    Ok(o)
}

/// Child mode: `--child kiln|candle --workload W --inputs DIR --out DIR --reps N --warmup N
/// --min-rep-s S`; prints one JSON record on stdout.
fn child(args: &[String]) -> Res<Value> {
    let get = |k: &str| -> Res<String> {
        let i = args.iter().position(|a| a == k).ok_or_else(|| format!("child: {k} missing"))?;
        Ok(args.get(i + 1).cloned().ok_or_else(|| format!("child: {k} needs a value"))?)
    };
    let (runner, w) = (get("--child")?, get("--workload")?);
    let proto = Protocol {
        reps: get("--reps")?.parse()?,
        warmup: get("--warmup")?.parse()?,
        min_rep_s: get("--min-rep-s")?.parse()?,
    };
    let baseline = measure::vm_hwm_bytes();
    let (inputs, out) = (PathBuf::from(get("--inputs")?), PathBuf::from(get("--out")?));
    match runner.as_str() {
        "kiln" => {
            let version = format!("kiln {} ({})", env!("CARGO_PKG_VERSION"), kiln::backend_name()?);
            if w == "trace" {
                let mut r = kiln_runs::trace_overhead(3)?;
                r["version"] = json!(version);
                return Ok(r);
            }
            let inp = measure::load_inputs(&inputs)?;
            let prepared = kiln_runs::prepare(&w, &inp)?;
            drop(inp);
            measure::run(prepared, proto, &out, &version, baseline)
        }
        "candle" => candle_runs::run(&w, &inputs, &out, proto, baseline),
        other => Err(format!("child: unknown runner {other}").into()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--child") {
        let record = child(&args).unwrap_or_else(|e| json!({"status": "error", "reason": e.to_string()}));
        println!("{record}");
        std::process::exit(
            if record["status"] == "ok" || record["status"] == "missing" || record["status"] == "unsupported"
            {
                0
            } else {
                1
            },
        );
    }
    if let Some(i) = args.iter().position(|a| a == "--from-json") {
        std::process::exit(match render_saved(&args, i) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kiln-bench: {e}");
                1
            }
        });
    }
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kiln-bench: {e}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    match orchestrate(&opts, &args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kiln-bench: {e}");
            std::process::exit(1);
        }
    }
}

fn orchestrate(o: &Options, args: &[String]) -> Res<i32> {
    let backend = kiln::backend_name().map_err(|e| format!("kiln has no usable backend: {e}"))?;
    println!(
        "kiln-bench: backend `{backend}`, {} threads, {} reps after {} warm-up call(s){}",
        runners::THREADS,
        o.proto.reps,
        o.proto.warmup,
        if o.quick { " (--quick)" } else { "" }
    );
    if backend == "interp" {
        println!("kiln-bench: NOTE kiln runs on its reference interpreter (`interp`): its times are the oracle's, not the compiler's");
    }
    let triad = if o.triad {
        let t = machine::triad(runners::THREADS, 5);
        println!(
            "kiln-bench: STREAM-like triad, {} threads, arrays of {} MiB: {:.1} GB/s",
            runners::THREADS,
            t.1 >> 20,
            t.0
        );
        Some(t)
    } else {
        None
    };
    let mut machine_info = machine::describe(triad, runners::THREADS);
    let dir = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut results = serde_json::Map::new();
    let mut trace = serde_json::Map::new();
    let mut failed = false;
    for w in &o.workloads {
        let wdir = dir.join(w);
        let inputs_dir = wdir.join("inputs");
        std::fs::create_dir_all(&inputs_dir)?;
        let inputs = workloads::inputs(w, o.sizes);
        for (k, a) in &inputs {
            npy::write(&inputs_dir.join(format!("{k}.npy")), a)?;
        }
        let reference = reference::outputs(w, &inputs);
        drop(inputs);
        if w == "W1" && o.c_kernel && !o.peers.is_empty() {
            eprint!("kiln-bench: W1 / hand-written C kernel ...");
            let rec = roofline::c_w1(&inputs_dir.join("x.npy"), &wdir, o.proto.reps.max(5), runners::THREADS);
            eprintln!(" {}", rec["status"].as_str().unwrap_or("?"));
            if rec["status"] == "error" {
                failed = true;
            }
            machine_info["c_w1"] = rec;
        }
        let mut runs = serde_json::Map::new();
        let runners_here: Vec<&str> = std::iter::once("kiln")
            .chain(o.peers.iter().map(String::as_str))
            .filter(|r| w != "trace" || *r == "kiln" || *r == "torch_eager")
            .collect();
        for r in &runners_here {
            eprint!("kiln-bench: {w} / {r} ...");
            let out = wdir.join("out").join(r);
            let job = runners::Job {
                runner: r,
                workload: w,
                inputs: &inputs_dir,
                out: &out,
                proto: o.proto,
                timeout: o.timeout,
                log_dir: &wdir.join("logs"),
            };
            let mut rec = runners::run(&job);
            if report::is_ok(&rec) && w != "trace" {
                let kiln_out = (*r != "kiln")
                    .then(|| wdir.join("out").join("kiln"))
                    .filter(|_| runs.get("kiln").is_some_and(report::is_ok));
                rec["check"] = report::check(w, &out, reference.as_ref(), kiln_out.as_deref());
                if report::check_failed(&rec) {
                    failed = true;
                    eprintln!(
                        "\n\n!!!!! MISMATCH: {r} computed a wrong {w}: {} !!!!!\n",
                        rec["check"]["problems"]
                    );
                }
            }
            if *r == "kiln" && !report::is_ok(&rec) {
                failed = true;
            }
            eprintln!(" {}", rec["status"].as_str().unwrap_or("?"));
            // The four fields every consumer reads are always present (null when not measured).
            for k in ["median_s", "min_s", "compile_s", "peak_bytes"] {
                if rec.get(k).is_none() {
                    rec[k] = Value::Null;
                }
            }
            runs.insert(r.to_string(), rec);
        }
        if w == "trace" {
            for (r, rec) in &runs {
                println!("\n== trace: {} [{r}] {}", workloads::describe(w, o.sizes), trace_line(rec));
            }
            trace = runs;
        } else {
            print!(
                "{}",
                report::workload_table(
                    w,
                    o.sizes,
                    &runs,
                    triad.map(|t| t.0),
                    machine_info["fma_peak_gflops_estimate"].as_f64()
                )
            );
            results.insert(w.clone(), Value::Object(runs));
        }
        if !o.keep {
            let _ = std::fs::remove_dir_all(&wdir);
        }
    }
    let mut report_json = json!({"workloads": results, "machine": machine_info});
    if !trace.is_empty() {
        report_json["trace"] = Value::Object(trace);
    }
    report_json["settings"] = json!({"reps": o.proto.reps, "warmup": o.proto.warmup, "min_rep_s": o.proto.min_rep_s, "w1_log2": o.sizes.w1_log2, "quick": o.quick, "threads": runners::THREADS});
    let features = if cfg!(feature = "candle") { " --features candle" } else { "" };
    let command =
        format!("cargo run --release -p kiln-bench{features} -- {}", args.join(" ")).trim().to_string();
    report_json["settings"]["command"] = json!(command);
    let md = report::markdown(&report_json, o.sizes, &command);
    println!("\n{md}");
    if let Some(p) = &o.json {
        std::fs::write(p, serde_json::to_string_pretty(&report_json)? + "\n")?;
        println!("kiln-bench: JSON written to {}", p.display());
    }
    if let Some(p) = &o.markdown {
        std::fs::write(p, &md)?;
        println!("kiln-bench: Markdown written to {}", p.display());
    }
    if o.keep {
        println!("kiln-bench: inputs, outputs and logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if failed {
        eprintln!("kiln-bench: FAILED: a result was wrong or kiln did not run (see above)");
    }
    Ok(if failed { 1 } else { 0 })
}

/// `--from-json PATH [--markdown OUT]`: the Markdown summary of a saved report.
fn render_saved(args: &[String], i: usize) -> Res<()> {
    let path = args.get(i + 1).ok_or("--from-json needs a path")?;
    let report: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let w1_log2 = report["settings"]["w1_log2"].as_u64().unwrap_or(24) as u32;
    let command = report["settings"]["command"].as_str().map(String::from);
    let md = report::markdown(
        &report,
        Sizes { w1_log2 },
        &command.unwrap_or_else(|| format!("(rendered from {path})")),
    );
    print!("{md}");
    if let Some(j) = args.iter().position(|a| a == "--markdown") {
        std::fs::write(args.get(j + 1).ok_or("--markdown needs a path")?, &md)?;
    }
    Ok(())
}

fn trace_line(r: &Value) -> String {
    if !report::is_ok(r) {
        return format!("{}: {}", r["status"].as_str().unwrap_or("?"), r["reason"].as_str().unwrap_or(""));
    }
    let f = |k: &str| r[k].as_f64().map(|v| format!("{v:.0} ns")).unwrap_or_else(|| "-".into());
    let mut s = format!("per op: no grad {}, with grad {}", f("ns_per_op_no_grad"), f("ns_per_op_grad"));
    if r.get("record_ns_per_op_grad").is_some() {
        s +=
            &format!(" (recording alone: {}, {})", f("record_ns_per_op_no_grad"), f("record_ns_per_op_grad"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_line() {
        let o =
            parse(&args("--workload W1,W5 --workload W2 --peers --reps 12 --quick --json r.json")).unwrap();
        assert_eq!(o.workloads, ["W1", "W5", "W2"]);
        assert_eq!(o.peers, ["torch_eager", "torch_compile", "jax_jit", "candle"]);
        assert_eq!((o.proto.reps, o.proto.warmup, o.sizes.w1_log2), (12, 1, 24));
        let o = parse(&args("--peer jax_jit")).unwrap();
        assert_eq!(o.peers, ["jax_jit"]);
        assert_eq!(o.workloads, workloads::DEFAULT);
        assert!(parse(&args("--workload W9")).is_err());
        assert!(parse(&args("--peer numpy")).is_err());
    }

    /// kiln's side of the small workloads runs through the real protocol and passes the check
    /// (a fast test: W5 and W2 take milliseconds even on the interpreter).
    #[test]
    fn kiln_small_workloads_are_checked_ok() {
        let dir = std::env::temp_dir().join(format!("kiln-bench-test-{}", std::process::id()));
        for w in ["W5", "W2"] {
            let inp = workloads::inputs(w, Sizes { w1_log2: 10 });
            let reference = reference::outputs(w, &inp);
            let out = dir.join(w);
            let proto = Protocol { reps: 1, warmup: 0, min_rep_s: 0.0 };
            let rec = measure::run(kiln_runs::prepare(w, &inp).unwrap(), proto, &out, "test", None).unwrap();
            assert_eq!(rec["status"], "ok");
            let c = report::check(w, &out, reference.as_ref(), None);
            assert_eq!(c["ok"], json!(true), "{w}: {c}");
            // A wrong answer is caught: perturb one output and check again.
            let name = if w == "W5" { "h" } else { "w" };
            let p = out.join(format!("{name}.npy"));
            let mut a = npy::read(&p).unwrap();
            if let npy::Array::F32 { data, .. } = &mut a {
                data[0] *= 1.01;
            }
            npy::write(&p, &a).unwrap();
            assert_eq!(report::check(w, &out, reference.as_ref(), None)["ok"], json!(false));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_peers_are_reported_not_dropped() {
        let runs: serde_json::Map<String, Value> = [
            ("kiln".to_string(), json!({"status": "ok", "median_s": 0.5, "min_s": 0.4, "compile_s": 0.6, "peak_bytes": 1u64 << 20})),
            ("jax_jit".to_string(), json!({"status": "ok", "median_s": 1.0, "min_s": 0.9, "compile_s": 0.1, "peak_bytes": 1u64 << 20})),
            ("candle".to_string(), runners::missing("built without the `candle` feature")),
        ]
        .into_iter()
        .collect();
        let t = report::workload_table("W2", Sizes { w1_log2: 10 }, &runs, None, None);
        assert!(t.contains("candle") && t.contains("missing: built without"), "{t}");
        assert!(t.contains("2.00"), "ratio jax/kiln: {t}");
    }
}
