//! The machine's description and its memory bandwidth (a STREAM-like triad on 2 threads).

use serde_json::{json, Value};
use std::time::Instant;

fn cpuinfo_field(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

fn meminfo_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let l = s.lines().find(|l| l.starts_with(key))?;
    Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The largest cache size in bytes that sysfs reports for CPU 0 (the last-level cache).
pub fn last_level_cache_bytes() -> Option<u64> {
    let mut best = None;
    for i in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
        let Ok(s) = std::fs::read_to_string(p) else { continue };
        let s = s.trim();
        let (num, mult) = match s.strip_suffix('K') {
            Some(n) => (n, 1024),
            None => match s.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (s, 1),
            },
        };
        if let Ok(n) = num.parse::<u64>() {
            best = best.max(Some(n * mult));
        }
    }
    best
}

/// STREAM's triad `a[i] = b[i] + s·c[i]` on f64 arrays split over `threads` threads (each thread
/// first-touches its own part), best of `reps`; bytes counted as STREAM does (3 × 8 per element,
/// no write-allocate traffic). Returns (GB/s, bytes per array).
pub fn triad(threads: usize, reps: usize) -> (f64, usize) {
    // Arrays >> cache: all three together at least 4x the last-level cache, at least 128 MiB each.
    let llc = last_level_cache_bytes().unwrap_or(64 << 20) as usize;
    let per_array = (4 * llc / 3).max(128 << 20);
    let n = per_array / 8;
    let chunk = n.div_ceil(threads);
    let mut a: Vec<Vec<f64>> = Vec::new();
    let mut b: Vec<Vec<f64>> = Vec::new();
    let mut c: Vec<Vec<f64>> = Vec::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let len = chunk.min(n - (t * chunk).min(n));
                s.spawn(move || (vec![0.0f64; len], vec![1.0f64; len], vec![2.0f64; len]))
            })
            .collect();
        for h in hs {
            let (x, y, z) = h.join().expect("triad init");
            a.push(x);
            b.push(y);
            c.push(z);
        }
    });
    let scalar = 3.0;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for ((a, b), c) in a.iter_mut().zip(&b).zip(&c) {
                s.spawn(move || {
                    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + scalar * c;
                    }
                });
            }
        });
        best = best.min(t0.elapsed().as_secs_f64());
    }
    assert!(a.iter().all(|p| p.first().is_none_or(|&v| v == 7.0)), "triad computed a wrong value");
    ((3 * 8 * n) as f64 / best / 1e9, n * 8)
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(cmd).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The `machine` object of the JSON report.
pub fn describe(triad_gbps: Option<(f64, usize)>, threads: usize) -> Value {
    let flags = cpuinfo_field("flags").unwrap_or_default();
    let simd: Vec<&str> = ["sse4_2", "avx", "avx2", "fma", "avx512f"]
        .into_iter()
        .filter(|f| flags.split(' ').any(|x| x == *f))
        .collect();
    let (bw, bytes) = match triad_gbps {
        Some((g, b)) => (Some(g), Some(b)),
        None => (None, None),
    };
    // WORKLOADS.md's FMA peak: threads × 2 FMA pipes × f32 lanes × 2 flops × clock, with the
    // clock /proc/cpuinfo reports (a VM's nominal figure: an estimate, not a measurement).
    let lanes = if simd.contains(&"avx512f") {
        16.0
    } else if simd.contains(&"avx2") {
        8.0
    } else {
        4.0
    };
    let mhz = cpuinfo_field("cpu MHz").and_then(|s| s.parse::<f64>().ok());
    let fma_peak = mhz.map(|m| threads as f64 * 2.0 * lanes * 2.0 * m / 1e3);
    json!({
        "cpu": cpuinfo_field("model name"),
        "cpu_mhz": mhz,
        "fma_peak_gflops_estimate": fma_peak,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "threads_used": threads,
        "simd": simd,
        "memory_bytes": meminfo_bytes("MemTotal:"),
        "last_level_cache_bytes": last_level_cache_bytes(),
        "triad_gbps": bw,
        "triad_array_bytes": bytes,
        "backend": kiln::backend_name().map(str::to_string).unwrap_or_else(|e| format!("unavailable: {e}")),
        "kiln_version": env!("CARGO_PKG_VERSION"),
        "kiln_commit": command_line("git", &["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"]),
        "date_utc": command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "kernel": command_line("uname", &["-r"]),
        "load_average": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
    })
}
