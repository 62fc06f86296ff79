//! Fuzzes the ONNX importer: any bytes must give a model or an error, never a panic (and an
//! imported graph must be valid). Run from onnx/: `cargo +nightly fuzz run import fuzz/corpus/import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = kiln_onnx::import_bytes(data, &Default::default()) {
        assert!(m.graph.verify().is_ok());
        // Whatever imports also exports.
        let _ = kiln_onnx::export_graph(&m.graph, &m.initializers, &Default::default());
    }
});
