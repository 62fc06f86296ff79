//! The `kiln` binary end to end: each subcommand's output on the seeds' graphs (insta snapshots),
//! results of `kiln run` against the reference interpreter and the seeds' formulas, the files
//! `KILN_DUMP` writes, and the errors for bad files and arguments (message, place, exit status).

use kiln_cli::npy::{read_value, write_value};
use kiln_ir::interp::Value;
use kiln_ir::{DType, Shape};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `kiln` in the crate's directory (so data paths and messages read `tests/data/...`).
fn kiln_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("KILN_DUMP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the kiln binary runs")
}

/// Stdout of a successful run (which must print nothing on stderr).
fn ok(args: &[&str]) -> String {
    let out = kiln_with(args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kiln {args:?} failed: {stderr}");
    assert!(stderr.is_empty(), "kiln {args:?} wrote to stderr: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `exit <code>` and stderr of a failing run (which must print nothing on stdout, and not panic).
fn fail_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = kiln_with(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "kiln {args:?} should fail");
    assert!(out.stdout.is_empty(), "kiln {args:?} wrote to stdout on failure");
    assert!(!stderr.contains("panicked"), "kiln {args:?} panicked: {stderr}");
    format!("exit {}\n{stderr}", out.status.code().unwrap_or(-1))
}

fn fail(args: &[&str]) -> String {
    fail_with(args, &[])
}

/// Replaces measured times (`12.3 µs`, `"compile_ms": 0.41`) so snapshots stay stable.
fn redact_times(s: &str) -> String {
    s.lines()
        .map(|l| {
            if let Some((head, _)) = l.split_once(": ").filter(|_| l.starts_with("pass ")) {
                format!("{head}: [time]")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    write_value(&p, v).unwrap();
    p
}

fn f32s(shape: &[usize], data: &[f64]) -> Value {
    Value::from_f64(DType::F32, shape.to_vec(), data).unwrap()
}

fn arg(name: &str, p: &Path) -> String {
    format!("{name}={}", p.display())
}

// ----- kiln passes ---------------------------------------------------------------------------

#[test]
fn passes_lists_the_pipeline() {
    insta::assert_snapshot!(ok(&["passes"]));
}

// ----- kiln dump ---------------------------------------------------------------------------

#[test]
fn dump_text_of_every_seed_graph_reads_back() {
    let mut all = String::new();
    for f in ["z_wx_b", "x2ex", "linear_regression", "mlp"] {
        let path = format!("tests/data/{f}.txt");
        let text = ok(&["dump", &path]);
        let back = kiln_ir::parse(&text).unwrap();
        assert_eq!(back.to_text(), text, "{f}: the printed text parses back to itself");
        all.push_str(&format!("== {f}\n{text}"));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn dump_json_and_loading_json() {
    let json = ok(&["dump", "tests/data/z_wx_b.txt", "--format", "json"]);
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/z_wx_b.json"))
            .unwrap();
    assert_eq!(json, committed, "tests/data/z_wx_b.json is what dump --format json writes");
    insta::assert_snapshot!(json);
    // JSON in (by extension, and by content when the name says nothing) gives the same graph.
    let text = ok(&["dump", "tests/data/z_wx_b.txt"]);
    assert_eq!(ok(&["dump", "tests/data/z_wx_b.json"]), text);
    let dir = tmp();
    let unnamed = dir.path().join("graph");
    std::fs::write(&unnamed, &json).unwrap();
    assert_eq!(ok(&["dump", unnamed.to_str().unwrap()]), text);
}

#[test]
fn dump_dot_shows_shapes_and_the_reverse_graph() {
    insta::assert_snapshot!(ok(&["dump", "tests/data/z_wx_b.txt", "--wrt", "w,b", "--format", "dot"]));
}

#[test]
fn dump_after_each_pass_of_the_x2ex_step() {
    let file = "tests/data/x2ex.txt";
    let mut all = String::new();
    for pass in ["verify", "simplify", "fusion", "plan"] {
        let out = ok(&["dump", file, "--wrt", "x", "--after", pass]);
        all.push_str(&format!("== --after {pass}\n{}\n", redact_times(&out)));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn dump_after_fusion_of_the_mlp_step() {
    let args = ["dump", "tests/data/mlp.txt", "--wrt", "w0,b0,w1,b1", "--after", "fusion"];
    let json = ok(&[&args[..], &["--format", "json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kinds: Vec<&str> =
        v["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "matmul").count(), 5, "2 forward + 3 backward matmuls");
    insta::assert_snapshot!("mlp_fusion_json", json);
    insta::assert_snapshot!("mlp_fusion_dot", ok(&[&args[..], &["--format", "dot"]].concat()));
}

#[test]
fn dump_after_plan_reports_the_figures() {
    let out = ok(&[
        "dump",
        "tests/data/linear_regression.txt",
        "--wrt",
        "w,b",
        "--after",
        "plan",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &v["figures"];
    assert_eq!((f["kernels"].as_u64(), f["matmuls"].as_u64()), (Some(3), Some(2)), "{f}");
    assert!(f["peak_bytes"].as_u64().unwrap() > 0 && f["compile_ms"].as_f64().unwrap() > 0.0, "{f}");
    assert!(
        v["buffers"].as_array().unwrap().iter().any(|b| b["arena_offset"].is_u64()),
        "offsets after planning"
    );
}

#[test]
fn svg_through_graphviz_or_a_message_how_to_get_it() {
    let args = ["dump", "tests/data/z_wx_b.txt", "--format", "svg"];
    let has_dot = Command::new("dot").arg("-V").output().is_ok();
    if has_dot {
        let svg = ok(&args);
        assert!(svg.contains("<svg") && svg.contains("%3 Mul"), "{svg}");
    }
    // Without Graphviz on PATH: a clear message, exit 1.
    let empty = tmp();
    insta::assert_snapshot!(fail_with(&args, &[("PATH", empty.path().to_str().unwrap())]));
}

// ----- kiln grad ---------------------------------------------------------------------------

#[test]
fn grad_appends_the_reverse_graph() {
    let out = ok(&["grad", "tests/data/z_wx_b.txt", "--wrt", "w,b"]);
    insta::assert_snapshot!(out);
    // What grad prints is a graph file again.
    let g = kiln_ir::parse(&out).unwrap();
    assert_eq!(g.outputs().len(), 3);
}

#[test]
fn grad_of_the_mlp_is_a_training_step() {
    insta::assert_snapshot!(ok(&["grad", "tests/data/mlp.txt", "--wrt", "w0,b0,w1,b1"]));
}

// ----- kiln run ----------------------------------------------------------------------------

#[test]
fn run_prints_the_outputs() {
    let dir = tmp();
    let x = write(dir.path(), "x.npy", &f32s(&[1], &[1.0]));
    let w = write(dir.path(), "w.npy", &f32s(&[1], &[2.0]));
    let b = write(dir.path(), "b.npy", &f32s(&[1], &[3.0]));
    let args = [
        "run",
        "tests/data/z_wx_b.txt",
        "--input",
        &arg("x", &x),
        "--input",
        &arg("w", &w),
        "--input",
        &arg("b", &b),
    ];
    insta::assert_snapshot!(ok(&args));
}

/// SEEDS 1.6/8.1: z = w*x + b at x = 1: dz/dw = x = 1, dz/db = 1 — through grad, then run.
#[test]
fn run_the_reverse_graph_of_z_wx_b() {
    let dir = tmp();
    let step = dir.path().join("step.txt");
    std::fs::write(&step, ok(&["grad", "tests/data/z_wx_b.txt", "--wrt", "w,b"])).unwrap();
    let x = write(dir.path(), "x.npy", &f32s(&[1], &[1.0]));
    let w = write(dir.path(), "w.npy", &f32s(&[1], &[0.25]));
    let b = write(dir.path(), "b.npy", &f32s(&[1], &[-3.0]));
    let out = dir.path().join("out");
    ok(&[
        "run",
        step.to_str().unwrap(),
        "--input",
        &arg("x", &x),
        "--input",
        &arg("w", &w),
        "--input",
        &arg("b", &b),
        "--output",
        out.to_str().unwrap(),
    ]);
    let read = |k: usize| {
        read_value(&out.join(format!("out{k}.npy")), "out", DType::F32, &Shape::from(vec![1])).unwrap()
    };
    assert_eq!(read(0).to_f64_vec(), vec![-2.75]);
    assert_eq!(read(1).to_f64_vec(), vec![1.0]);
    assert_eq!(read(2).to_f64_vec(), vec![1.0]);
}

/// SEEDS 2.4: the gradient of x²·eˣ is 2x·eˣ + x²·eˣ; the JIT agrees with the formula and with
/// the reference interpreter.
#[test]
fn run_x2ex_gradient_matches_the_formula_and_the_interpreter() {
    let dir = tmp();
    let step = dir.path().join("step.json");
    std::fs::write(&step, ok(&["grad", "tests/data/x2ex.txt", "--wrt", "x", "--format", "json"])).unwrap();
    let xs: Vec<f64> = (0..12).map(|i| -1.5 + 0.27 * i as f64).collect();
    let x = write(dir.path(), "x.npy", &f32s(&[3, 4], &xs));
    let mut results = Vec::new();
    for backend in ["jit", "interp"] {
        let out = dir.path().join(backend);
        ok(&[
            "run",
            step.to_str().unwrap(),
            "--input",
            &arg("x", &x),
            "--output",
            out.to_str().unwrap(),
            "--backend",
            backend,
        ]);
        let dx = read_value(&out.join("out1.npy"), "dx", DType::F32, &Shape::from(vec![3, 4])).unwrap();
        for (got, &x) in dx.to_f64_vec().iter().zip(&xs) {
            let x = x as f32 as f64;
            let want = 2.0 * x * x.exp() + x * x * x.exp();
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{backend}: x={x} got {got} want {want}"
            );
        }
        results.push(dx);
    }
    assert!(kiln_ir::allclose(&results[0], &results[1], 1e-5, 1e-6), "jit vs interpreter");
}

/// The MLP step on the JIT against the reference interpreter.
#[test]
fn run_mlp_step_jit_matches_the_interpreter() {
    let dir = tmp();
    let step = dir.path().join("mlp_step.txt");
    std::fs::write(&step, ok(&["grad", "tests/data/mlp.txt", "--wrt", "w0,b0,w1,b1"])).unwrap();
    let g = kiln_ir::parse(&std::fs::read_to_string(&step).unwrap()).unwrap();
    let mut args: Vec<String> = vec!["run".into(), step.to_str().unwrap().into()];
    for (k, &i) in g.inputs().iter().enumerate() {
        let n = g.node(i);
        let data: Vec<f64> =
            (0..n.shape.numel()).map(|j| ((j * 7 + k * 3) % 11) as f64 / 5.0 - 1.0).collect();
        let name = g.input_name(i).unwrap();
        let p = write(dir.path(), &format!("{name}.npy"), &f32s(n.shape.dims(), &data));
        args.extend(["--input".into(), arg(name, &p)]);
    }
    let mut outs = Vec::new();
    for backend in ["jit", "interp"] {
        let out = dir.path().join(backend);
        let mut a = args.clone();
        a.extend(["--output".into(), out.to_str().unwrap().into(), "--backend".into(), backend.into()]);
        let listing = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(listing.lines().count(), 5, "loss and four gradients: {listing}");
        outs.push(
            g.outputs()
                .iter()
                .enumerate()
                .map(|(k, &o)| {
                    let n = g.node(o);
                    read_value(&out.join(format!("out{k}.npy")), "out", n.dtype, &n.shape).unwrap()
                })
                .collect::<Vec<_>>(),
        );
    }
    for (k, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
        assert!(kiln_ir::allclose(a, b, 1e-5, 1e-6), "output {k}: jit {a:?} vs interpreter {b:?}");
    }
}

/// `KILN_DUMP` set for `kiln run`: every stage of the compiled graph, then the Cranelift IR.
#[test]
fn kiln_dump_env_writes_every_stage() {
    let dir = tmp();
    let x = write(dir.path(), "x.npy", &f32s(&[3, 4], &[0.5; 12]));
    let dump = dir.path().join("dump");
    let out = kiln_with(
        &["run", "tests/data/x2ex.txt", "--input", &arg("x", &x)],
        &[("KILN_DUMP", dump.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&dump).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let hash = names[0].split('.').next().unwrap().to_string();
    assert_eq!(hash.len(), 16);
    assert!(names.iter().all(|n| n.starts_with(&hash)), "one graph: {names:?}");
    let input = std::fs::read_to_string(dump.join(format!("{hash}.0-input.txt"))).unwrap();
    assert_eq!(input, ok(&["dump", "tests/data/x2ex.txt"]), "the dump's input stage is the graph as read");
    let clif = std::fs::read_to_string(dump.join(format!("{hash}.4-codegen.clif"))).unwrap();
    assert!(clif.starts_with("; codegen: 1 kernels in ") && clif.contains("function"), "{clif}");
    insta::assert_snapshot!(names.iter().map(|n| n.replace(&hash, "H")).collect::<Vec<_>>().join("\n"));
}

// ----- errors ------------------------------------------------------------------------------

#[test]
fn errors_for_bad_graph_files_name_the_place() {
    let mut all = String::new();
    for f in [
        "unknown_op.txt",
        "wrong_type.txt",
        "no_return.txt",
        "syntax.json",
        "node.json",
        "model.onnx",
        "binary.bin",
    ] {
        all.push_str(&fail(&["dump", &format!("tests/data/bad/{f}")]));
    }
    all.push_str(&fail(&["dump", "tests/data/missing.txt"]));
    insta::assert_snapshot!(all.replace("(os error 2)", "(os error)"));
}

#[test]
fn errors_for_bad_arguments() {
    let dir = tmp();
    let x64 = write(dir.path(), "x64.npy", &Value::from_f64(DType::F64, [1], &[1.0]).unwrap());
    let x2 = write(dir.path(), "x2.npy", &f32s(&[2], &[1.0, 2.0]));
    let x = write(dir.path(), "x.npy", &f32s(&[1], &[1.0]));
    let file = "tests/data/z_wx_b.txt";
    let cases: Vec<Vec<String>> = vec![
        vec!["grad".into(), file.into(), "--wrt".into(), "q".into()],
        vec!["run".into(), file.into(), "--input".into(), arg("x", &x)],
        vec!["run".into(), file.into(), "--input".into(), arg("nope", &x)],
        vec!["run".into(), file.into(), "--input".into(), arg("x", &x), "--input".into(), arg("x", &x)],
        vec![
            "run".into(),
            file.into(),
            "--input".into(),
            arg("x", &x64),
            "--input".into(),
            arg("w", &x),
            "--input".into(),
            arg("b", &x),
        ],
        vec![
            "run".into(),
            file.into(),
            "--input".into(),
            arg("x", &x2),
            "--input".into(),
            arg("w", &x),
            "--input".into(),
            arg("b", &x),
        ],
    ];
    let mut all = String::new();
    for c in &cases {
        all.push_str(&fail(&c.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    insta::assert_snapshot!(all.replace(&dir.path().display().to_string(), "TMP"));
}

#[test]
fn usage_errors_exit_2() {
    let out = kiln_with(&["grad", "tests/data/z_wx_b.txt"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wrt"));
    let out = kiln_with(&["dump", "tests/data/z_wx_b.txt", "--after", "lowering"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: verify, simplify, fusion, plan"));
}

// ----- ONNX models ---------------------------------------------------------------------------

const ABS: &str = "../onnx/tests/data/node/test_abs";

fn pb(path: &str) -> Value {
    kiln_onnx::tensor::decode_tensor(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap(),
    )
    .unwrap()
    .1
}

#[test]
fn onnx_models_are_dumped_with_their_parameters() {
    insta::assert_snapshot!(ok(&["dump", "../onnx/tests/data/mlp.onnx"]));
}

#[test]
fn onnx_run_with_a_tensorproto_input_gives_the_expected_output() {
    let dir = tmp();
    let model = format!("{ABS}/model.onnx");
    let input = format!("x={ABS}/test_data_set_0/input_0.pb");
    ok(&["run", &model, "--input", &input, "--output", &dir.path().display().to_string()]);
    let got =
        read_value(&dir.path().join("out0.npy"), "out0", DType::F32, &Shape::from(vec![3, 4, 5])).unwrap();
    assert_eq!(got, pb(&format!("{ABS}/test_data_set_0/output_0.pb")));
}

#[test]
fn onnx_grad_evaluates_with_cotangents_and_initializers() {
    // d/dx of sum(|x|·c) with c = |x| is sign(x)·|x| = x.
    let model = format!("{ABS}/model.onnx");
    let x = format!("{ABS}/test_data_set_0/input_0.pb");
    let c = format!("{ABS}/test_data_set_0/output_0.pb");
    let dir = tmp();
    let gx =
        ok(&["grad", &model, "--wrt", "x", "--input", &format!("x={x}"), "--cotangent", &format!("0={c}")]);
    let want = pb(&format!("{ABS}/test_data_set_0/input_0.pb"));
    let printed = kiln_frontend::Tensor::from_ndarray(match &want {
        Value::F32(a) => a,
        _ => unreachable!(),
    })
    .to_string();
    assert_eq!(gx, format!("d/dx f32[3,4,5]\n{printed}\n"));

    // The MLP ends in a softmax: the sum of its outputs is 1 per row whatever b2 is, so the
    // gradient w.r.t. b2 (seeded with ones; W1..b2 from the model's initializers) is zero.
    let x = write(
        dir.path(),
        "x.npy",
        &f32s(&[4, 3], &(0..12).map(|i| i as f64 / 7.0 - 0.8).collect::<Vec<_>>()),
    );
    let out = ok(&["grad", "../onnx/tests/data/mlp.onnx", "--wrt", "b2,W1", "--input", &arg("x", &x)]);
    assert!(out.starts_with("d/db2 f32[2]\n") && out.contains("d/dW1 f32[3,8]\n"), "{out}");
    let b2 = out.lines().nth(1).unwrap();
    let vals: Vec<f64> = b2
        .trim_start_matches("tensor([")
        .trim_end_matches("])")
        .split(',')
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert!(vals.iter().all(|v| v.abs() < 1e-4), "{b2}");

    let xpb = format!("x={ABS}/test_data_set_0/input_0.pb");
    let bad = fail(&["grad", &model, "--wrt", "x", "--input", &xpb, "--cotangent", &format!("y9={c}")]);
    insta::assert_snapshot!(bad.replace(ABS, "ABS"));
}
