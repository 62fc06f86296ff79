//! Launching runners, each workload in a fresh child process (so that its VmHWM is its own):
//! kiln and candle are this binary in child mode, the Python peers are `bench/peers/*.py` run
//! with the peers' Python. Every child prints one JSON record on its last stdout line.

use crate::measure::Protocol;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every runner, in report order.
pub const RUNNERS: &[&str] = &["kiln", "torch_eager", "torch_compile", "jax_jit", "candle"];
pub const PYTHON_PEERS: &[&str] = &["torch_eager", "torch_compile", "jax_jit"];

/// Threads every runner is limited to (WORKLOADS.md).
pub const THREADS: usize = 2;

pub fn missing(reason: impl Into<String>) -> Value {
    json!({"status": "missing", "reason": reason.into()})
}

/// The Python that has the peers: `KILN_PEERS_PY`, else the venv `setup-peers.sh` creates.
pub fn peers_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("KILN_PEERS_PY") {
        let p = PathBuf::from(p);
        return if p.exists() { Ok(p) } else { Err(format!("KILN_PEERS_PY={} does not exist", p.display())) };
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let p = cache.join("kiln-peers/bin/python");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "no Python with the peers: {} does not exist; run `bash ../shared/bench/setup-peers.sh` or set KILN_PEERS_PY",
            p.display()
        ))
    }
}

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// Environment for every child: 2 threads for every threading runtime.
fn thread_env(cmd: &mut Command) {
    let t = THREADS.to_string();
    for k in [
        "KILN_NUM_THREADS",
        "RAYON_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
    ] {
        cmd.env(k, &t);
    }
}

pub struct Job<'a> {
    pub runner: &'a str,
    pub workload: &'a str,
    pub inputs: &'a Path,
    pub out: &'a Path,
    pub proto: Protocol,
    pub timeout: Duration,
    pub log_dir: &'a Path,
}

/// Runs one (runner, workload) in a fresh process and returns its JSON record (never fails:
/// problems become `status: missing | unsupported | error` records).
pub fn run(job: &Job) -> Value {
    let mut cmd = if PYTHON_PEERS.contains(&job.runner) {
        let py = match peers_python() {
            Ok(p) => p,
            Err(e) => return missing(e),
        };
        let mut c = Command::new(py);
        c.arg(peers_dir().join(format!("{}.py", job.runner)));
        // The machine sets these for old OpenBLAS builds; they slow a current numpy/torch
        // (BASELINES.md), so they are unset for the peers' processes only.
        c.env_remove("OPENBLAS_CORETYPE").env_remove("OPENBLAS_L2_SIZE");
        c.env(
            "XLA_FLAGS",
            format!("--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}"),
        );
        c.env("TF_CPP_MIN_LOG_LEVEL", "2").env("PYTHONDONTWRITEBYTECODE", "1");
        c
    } else {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return json!({"status": "error", "reason": format!("current_exe: {e}")}),
        };
        let mut c = Command::new(exe);
        c.args(["--child", job.runner]);
        if job.runner == "candle" && job.workload == "W5" {
            // candle detaches gradients unless told not to; without this its f'' is wrong.
            c.env("CANDLE_GRAD_DO_NOT_DETACH", "1");
        }
        c
    };
    thread_env(&mut cmd);
    cmd.arg("--workload").arg(job.workload);
    cmd.arg("--inputs").arg(job.inputs).arg("--out").arg(job.out);
    cmd.arg("--reps").arg(job.proto.reps.to_string());
    cmd.arg("--warmup").arg(job.proto.warmup.to_string());
    cmd.arg("--min-rep-s").arg(job.proto.min_rep_s.to_string());
    let _ = std::fs::create_dir_all(job.log_dir);
    let stdout_path = job.log_dir.join(format!("{}.{}.stdout", job.runner, job.workload));
    let stderr_path = job.log_dir.join(format!("{}.{}.stderr", job.runner, job.workload));
    let files =
        std::fs::File::create(&stdout_path).and_then(|o| Ok((o, std::fs::File::create(&stderr_path)?)));
    let (o, e) = match files {
        Ok(f) => f,
        Err(e) => return json!({"status": "error", "reason": format!("log files: {e}")}),
    };
    cmd.stdin(Stdio::null()).stdout(o).stderr(e);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return json!({"status": "error", "reason": format!("could not start {:?}: {e}", cmd.get_program())})
        }
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if start.elapsed() > job.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {:.0} s (--timeout)", job.timeout.as_secs_f64()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(e.to_string()),
        }
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let tail = |s: &str| {
        s.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    let record = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object));
    let mut rec = match (status, record) {
        (Ok(s), Some(r)) if s.success() => r,
        (Ok(s), Some(mut r)) => {
            r["status"] = json!("error");
            r["reason"] = json!(format!("exited with {s}; {}", tail(&stderr)));
            r
        }
        (Ok(s), None) => {
            json!({"status": "error", "reason": format!("exited with {s} without a record; stderr: {}", tail(&stderr))})
        }
        (Err(e), _) => json!({"status": "error", "reason": e}),
    };
    // Other processes on the machine skew times: record how busy it was when this child ended.
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        rec["load_average_1m"] = json!(l.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()));
    }
    rec
}
