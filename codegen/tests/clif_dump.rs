//! `KILN_DUMP` (an environment variable, so this test has a binary of its own: setting it while
//! other tests compile in parallel would make them dump too).

use kiln_codegen::Jit;

/// `KILN_DUMP` gets the Cranelift IR of every kernel after the pipeline's stages.
#[test]
fn dump_includes_the_clif_of_each_kernel() {
    let dir = std::env::temp_dir().join(format!("kiln-clif-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("KILN_DUMP", &dir);
    let g = kiln_passes::workloads::w1(64, true).unwrap();
    let exe = Jit::compile(&g);
    std::env::remove_var("KILN_DUMP");
    exe.unwrap();
    let clif: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".4-codegen.clif"))
        .collect();
    assert_eq!(clif.len(), 1);
    let text = std::fs::read_to_string(&clif[0]).unwrap();
    assert!(text.contains("; kernel ") && text.contains("function"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
