"""Shared protocol of kiln's Python peers (driven by `cargo run -p kiln-bench -- --peers`).

Each peer script runs ONE workload in a fresh process:

    PY bench/peers/<peer>.py --workload W1 --inputs DIR/inputs/W1 --out DIR/out/<peer>/W1 \
        --reps 10 --warmup 2 [--min-rep-s 0.02]

It loads the inputs the harness wrote (.npy, float32 / int64), runs the workload once (the first
call: trace + compile + run, reported as compile_s), writes that call's outputs as .npy files into
--out (the harness compares them with kiln's), warms up, times --reps repetitions and prints one
JSON object on its last stdout line:

    {"status": "ok", "median_s", "min_s", "compile_s", "peak_bytes", "baseline_bytes",
     "inner", "times_s", "version", "outputs": [...]}

or {"status": "missing" | "unsupported" | "error", "reason": "..."}.

Times are per call. A repetition runs `inner` calls back to back (calibrated during warm-up so
that one repetition lasts at least --min-rep-s; 1 for every workload but the microsecond ones)
and is divided by `inner`. peak_bytes is VmHWM (the resident-set high-water mark of this process,
from /proc/self/status) at the end; baseline_bytes is VmHWM after the framework was imported and
before any input was loaded.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

np = None  # numpy, imported by run_peer (reported as missing when absent)


def vm_hwm_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-rep-s", type=float, default=0.02)
    return p.parse_args()


def emit(obj):
    sys.stdout.flush()
    print(json.dumps(obj), flush=True)


def load_inputs(path):
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".npy"):
            out[name[:-4]] = np.load(os.path.join(path, name))
    return out


def run_peer(import_framework, build):
    """`import_framework()` imports and configures the framework and returns its version string
    (raising ImportError when it is not installed). `build(workload, inputs)` returns
    `(call, to_numpy)`: `call()` runs one call of the workload and returns a dict name -> array
    (already computed: the peer blocks until its results are ready); `to_numpy(v)` converts one
    of them. It raises `Unsupported` for a workload the peer cannot run."""
    global np
    args = parse_args()
    try:
        import numpy

        np = numpy
        version = import_framework()
    except ImportError as e:
        emit({"status": "missing", "reason": f"{type(e).__name__}: {e}"})
        return
    baseline = vm_hwm_bytes()
    try:
        inputs = load_inputs(args.inputs)
        call, to_numpy = build(args.workload, inputs)
        t0 = time.perf_counter()
        outs = call()
        compile_s = time.perf_counter() - t0
        os.makedirs(args.out, exist_ok=True)
        for name, v in outs.items():
            np.save(os.path.join(args.out, name + ".npy"), np.asarray(to_numpy(v)))
        names = sorted(outs)
        del outs
        single = []
        for _ in range(max(args.warmup, 1)):
            t0 = time.perf_counter()
            call()
            single.append(time.perf_counter() - t0)
        inner = max(1, math.ceil(args.min_rep_s / max(min(single), 1e-9)))
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for _ in range(inner):
                call()
            times.append((time.perf_counter() - t0) / inner)
    except Unsupported as e:
        emit({"status": "unsupported", "reason": str(e), "version": version})
        return
    except Exception as e:  # reported, never dropped
        tb = traceback.format_exc().strip().splitlines()
        emit({"status": "error", "reason": f"{type(e).__name__}: {str(e)[:400]}", "traceback": tb[-6:],
              "version": version})
        return
    emit({
        "status": "ok",
        "median_s": statistics.median(times),
        "min_s": min(times),
        "compile_s": compile_s,
        "peak_bytes": vm_hwm_bytes(),
        "baseline_bytes": baseline,
        "inner": inner,
        "times_s": times,
        "version": version,
        "outputs": names,
    })


class Unsupported(Exception):
    pass


W2_STEPS = 500
W2_LR = 0.005
W3_LR = 0.01
W4_EPS = 1e-5
