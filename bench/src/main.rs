//! kiln-bench: the benchmark harness. The workloads (W1–W5) arrive with the benchmark issue; until
//! then this binary says so instead of printing numbers it did not measure.

fn main() {
    eprintln!("kiln-bench: no workloads are implemented yet (see the benchmark issue); nothing was measured");
    std::process::exit(2);
}
