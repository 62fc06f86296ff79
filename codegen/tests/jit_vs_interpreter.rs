//! The JIT backend end to end against the reference interpreter: random graphs of every op
//! family (f32 and f64, broadcasting, size-1 and odd extents, reductions over any axes, matmuls,
//! movement ops) through the whole pipeline and the Cranelift backend, compared with
//! `kiln_ir::interp::run` on the original graph. 1000 cases (more with `KILN_PROPTEST_CASES`).
//!
//! Tolerance: 1e-4 relative + 1e-5 absolute — kernels accumulate f32 sums in f64 like the
//! interpreter, but the vectorised math is a few ULP from libm and chains compound it.

use kiln_codegen::{Backend, Jit};
use kiln_ir::interp::{allclose, run, Value};
use kiln_ir::testing::{arb_graph_with_inputs, GraphConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn cases() -> u32 {
    std::env::var("KILN_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(Config { cases: cases(), rng_seed: RngSeed::Fixed(0x6b696c6e), ..Config::default() })]

    #[test]
    fn jit_matches_the_interpreter((g, inputs) in arb_graph_with_inputs(GraphConfig::default())) {
        let vals: Vec<Value> =
            g.inputs().iter().zip(&inputs).map(|(&i, l)| Value::from_literal(l, &g.node(i).shape).unwrap()).collect();
        let want = run(&g, &vals).unwrap();
        let jit = Jit::default();
        let got = jit.run(&g, &vals).map_err(|e| TestCaseError::fail(format!("{e}\n{}", g.to_text())))?;
        prop_assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            prop_assert!(allclose(a, b, 1e-4, 1e-5), "graph:\n{}\njit {a:?}\ninterp {b:?}", g.to_text());
        }
        // A second run reuses the compiled executable and its workspace.
        let again = jit.run(&g, &vals).unwrap();
        prop_assert_eq!(&again, &got);
        prop_assert_eq!(jit.stats().hits, 1);
    }
}
