//! `Model`: the committed MLP imported, trained with kiln's autograd, exported and re-imported;
//! `Model::forward` (the Tensor API path) against the JIT on every node case.

mod common;

use common::{cases, MLP};
use kiln_codegen::Backend;
use kiln_frontend::{no_grad, Tensor};
use kiln_ir::{allclose, Value};

fn value_of(t: &Tensor) -> Value {
    match t.dtype() {
        kiln_ir::DType::F32 => Value::F32(t.to_ndarray_f32().unwrap()),
        kiln_ir::DType::F64 => Value::F64(t.to_ndarray_f64().unwrap()),
        d => panic!("no float tensor: {d}"),
    }
}

#[test]
fn mlp_imports_trains_exports_and_reimports() {
    let model = kiln_onnx::load(MLP).unwrap();
    assert_eq!(model.input_names(), ["x"]);
    assert_eq!(model.output_names(), ["probs"]);
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["W1", "b1", "W2", "b2"]);

    // Four points, two classes: learn to put probability on the target class.
    let x =
        Tensor::from_vec(vec![1.0f32, 0.5, -0.3, -1.0, 0.2, 0.8, 0.3, -0.7, 1.2, -0.5, -1.1, 0.1], &[4, 3])
            .unwrap();
    let target = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], &[4, 2]).unwrap();
    let loss_of = |m: &kiln_onnx::Model| {
        let p = m.forward(std::slice::from_ref(&x)).unwrap().remove(0);
        // Cross-entropy on the model's probabilities.
        p.log().mul(&target).unwrap().sum().neg() * 0.25
    };
    let mut losses = Vec::new();
    for _ in 0..20 {
        let loss = loss_of(&model);
        losses.push(loss.item().unwrap());
        loss.backward().unwrap();
        let _g = no_grad();
        for p in model.parameters() {
            let g = p.grad().expect("backward reaches every initializer");
            p.sub_(&(g * 0.5)).unwrap();
            p.set_grad(None).unwrap();
        }
    }
    println!("MLP loss over 20 SGD steps: {:.4} → {:.4}", losses[0], losses[19]);
    assert!(losses[19] < 0.5 * losses[0], "the loss did not decrease: {losses:?}");
    assert!(losses.windows(2).filter(|w| w[1] > w[0]).count() <= 2, "{losses:?}");

    // Export the trained model and import it again: same parameters, same outputs.
    let dir = std::env::temp_dir().join(format!("kiln-onnx-mlp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trained.onnx");
    model.save(&path).unwrap();
    let back = kiln_onnx::load(&path).unwrap();
    for ((n1, p1), (n2, p2)) in model.named_parameters().iter().zip(back.named_parameters()) {
        assert_eq!(n1, &n2);
        assert_eq!(p1.to_vec_f32().unwrap(), p2.to_vec_f32().unwrap(), "{n1}");
    }
    let y1 = model.forward(std::slice::from_ref(&x)).unwrap().remove(0);
    let y2 = back.forward(std::slice::from_ref(&x)).unwrap().remove(0);
    assert_eq!(y1.to_vec_f32().unwrap(), y2.to_vec_f32().unwrap());
    // The file is small: four initializers and a handful of nodes.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 4096, "{size} bytes");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn forward_records_like_tensor_code() {
    let model = kiln_onnx::load(MLP).unwrap();
    let x = Tensor::ones(&[4, 3]).requires_grad_(true);
    let y = model.forward(std::slice::from_ref(&x)).unwrap().remove(0);
    assert!(y.grad_fn().is_some());
    y.sum().backward().unwrap();
    // Softmax rows sum to one, so d(sum)/dx is zero up to rounding, but it exists.
    assert_eq!(x.grad().unwrap().shape(), &[4, 3]);
    assert!(model.parameters().iter().all(|p| p.grad().is_some()));
}

#[test]
fn forward_rejects_wrong_inputs() {
    let model = kiln_onnx::load(MLP).unwrap();
    let e = model.forward(&[Tensor::ones(&[2, 3])]).unwrap_err().to_string();
    assert!(e.contains("mlp.onnx") && e.contains("input 'x' expects f32[4, 3]"), "{e}");
    let e = model.forward(&[]).unwrap_err().to_string();
    assert!(e.contains("expects 1 input(s), got 0"), "{e}");
}

/// The Tensor-API replay of every node case agrees with the JIT run of the imported graph.
#[test]
fn model_forward_matches_the_jit_on_node_cases() {
    let (mut same, mut refused) = (0, Vec::new());
    for case in cases() {
        let Ok((imp, inputs)) = case.import() else { continue };
        let params: Vec<Value> = imp.initializers.iter().map(|(_, v)| v.clone()).collect();
        let all: Vec<Value> = inputs.iter().cloned().chain(params).collect();
        let expected = kiln_codegen::jit().run(&imp.graph, &all).unwrap();
        let model = kiln_onnx::Model::new(imp);
        let got =
            match model.forward(&inputs.iter().map(|v| Tensor::from_value(v.clone())).collect::<Vec<_>>()) {
                Ok(v) => v,
                Err(e) => {
                    refused.push(format!("{}: {e}", case.name));
                    continue;
                }
            };
        for (g, e) in got.iter().zip(&expected) {
            let g = match e {
                Value::I64(_) => Value::I64(
                    ndarray::ArrayD::from_shape_vec(
                        g.shape(),
                        g.to_vec_f64().unwrap().iter().map(|&v| v as i64).collect(),
                    )
                    .unwrap(),
                ),
                Value::Bool(_) => Value::Bool(
                    ndarray::ArrayD::from_shape_vec(
                        g.shape(),
                        g.to_vec_f64().unwrap().iter().map(|&v| v != 0.0).collect(),
                    )
                    .unwrap(),
                ),
                _ => value_of(g),
            };
            assert!(allclose(&g, e, 1e-5, 1e-6), "{}: {g:?} vs {e:?}", case.name);
        }
        same += 1;
    }
    println!("Model::forward agrees with the JIT on {same} cases; refused: {refused:#?}");
    // Only negative-step slices are outside the Tensor API.
    assert!(refused.iter().all(|r| r.contains("negative step")), "{refused:#?}");
    assert!(same > 300);
}
