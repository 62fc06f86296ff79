//! Every emitted CUDA kernel compiles to PTX: the workloads' kernels and those of a few hundred
//! random graphs, through clang's CUDA front end without the CUDA toolkit (`-nocudainc
//! -nocudalib`: the prelude declares what the kernels use). All kernels go into one translation
//! unit, so the check is a single clang process.
//!
//! Skipped (with a printed reason) when clang-19 is missing outside CI; under `CI=true`,
//! `scripts/setup.sh` installs it and a missing clang fails.

mod cuda_common;
use cuda_common::*;
use std::process::Command;

/// Random graphs compiled besides the workloads.
const RANDOM_GRAPHS: usize = 300;

#[test]
fn every_emitted_kernel_compiles_to_ptx() {
    let Some(clang) = clang() else { return };
    let programs = all_programs(RANDOM_GRAPHS);
    let mut src = kiln_codegen::cuda::prelude().to_string();
    let mut names = vec![];
    for (_, p) in &programs {
        src.push_str(&p.kernels_source);
        names.extend(p.kernels().map(|k| k.name.clone()));
    }
    assert!(names.len() > 300, "only {} kernels emitted", names.len());
    let dir = std::env::temp_dir().join(format!("kiln-cuda-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cu = dir.join("all.cu");
    let ptx = dir.join("all.ptx");
    std::fs::write(&cu, &src).unwrap();
    let out = Command::new(&clang)
        .args([
            "-x",
            "cuda",
            "--cuda-gpu-arch=sm_80",
            "--cuda-device-only",
            "--cuda-feature=+ptx70",
            "-nocudainc",
            "-nocudalib",
            "-O3",
            "-ffp-contract=off",
            "-Wall",
            "-Werror",
            // The prelude is a library of static functions; a module uses some of them.
            "-Wno-unused-function",
            "-S",
        ])
        .arg(&cu)
        .arg("-o")
        .arg(&ptx)
        .output()
        .expect("run clang");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "clang failed on {} ({} kernels):\n{stderr}", cu.display(), names.len());
    let text = std::fs::read_to_string(&ptx).unwrap();
    // Every kernel is an entry point, and nothing calls out of the module (no libdevice here:
    // a call to an undefined math function would fail to link at run time).
    for n in &names {
        assert!(text.contains(&format!(".entry {n}(")), "kernel {n} missing from the PTX");
    }
    let entries = text.matches(".entry ").count();
    assert_eq!(entries, names.len());
    assert!(!text.contains(".extern"), "the PTX calls an undefined function");
    println!("compiled {} kernels from {} programs to PTX ({} bytes)", entries, programs.len(), text.len());
    std::fs::remove_dir_all(&dir).ok();
}
