//! Bad input: unknown ops, malformed graphs, and damaged files (truncations, bit flips, random
//! bytes) give errors that name the file, the node and the reason — never a panic. Plus a
//! property test: random valid kiln graphs survive export → import unchanged.

mod common;

use common::{cases, MLP};
use kiln_ir::testing::{arb_graph_with_inputs, GraphConfig};
use kiln_ir::Value;
use kiln_onnx::proto::{ModelProto, NodeProto};
use kiln_onnx::{decode_model, encode_model, export_graph, import_bytes, import_model, ImportOptions};
use proptest::prelude::*;

fn mlp() -> ModelProto {
    decode_model(&std::fs::read(MLP).unwrap()).unwrap()
}

fn import(m: &ModelProto) -> kiln_onnx::Result<kiln_onnx::Imported> {
    import_model(m, &ImportOptions::default())
}

#[test]
fn unknown_ops_are_named_with_their_node() {
    let mut m = mlp();
    m.graph.as_mut().unwrap().node[1].op_type = "Conv".into();
    let e = import(&m).unwrap_err();
    assert!(e.to_string().starts_with("node 'act' (Conv): op 'Conv' is not supported"), "{e}");
    assert!(e.is_unsupported());
    let k: kiln_frontend::Error = e.into();
    assert!(matches!(k, kiln_frontend::Error::Unsupported(_)));
}

#[test]
fn file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("kiln-onnx-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(MLP).unwrap();
    let p = dir.join("truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = kiln_onnx::import_file(&p).unwrap_err().to_string();
    assert!(e.contains("truncated.onnx: not a valid ONNX model (protobuf:"), "{e}");
    let e = kiln_onnx::load(dir.join("missing.onnx")).err().unwrap().to_string();
    assert!(e.contains("missing.onnx: cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn malformed_graphs_are_reported() {
    let check = |f: &dyn Fn(&mut ModelProto), want: &str| {
        let mut m = mlp();
        f(&mut m);
        let e = import(&m).unwrap_err().to_string();
        assert!(e.contains(want), "expected '{want}' in: {e}");
    };
    check(
        &|m| m.graph.as_mut().unwrap().node[0].input[0] = "nope".into(),
        "node 'fc1' (Gemm): input 'nope' is not defined before use",
    );
    check(&|m| m.graph.as_mut().unwrap().node.swap(0, 1), "node 'act' (Relu): input 'h' is not defined");
    check(&|m| m.graph.as_mut().unwrap().node[2].input.truncate(1), "node 'fc2' (Gemm): input 1 is required");
    check(
        &|m| m.graph.as_mut().unwrap().initializer[0].raw_data.pop().map(drop).unwrap_or(()),
        "initializer 'W1': raw_data has 95 bytes",
    );
    check(
        &|m| m.graph.as_mut().unwrap().initializer[0].dims = vec![8, 3],
        "node 'fc1' (Gemm): MatMul: mat1 and mat2 shapes cannot be multiplied",
    );
    check(
        &|m| m.graph.as_mut().unwrap().output[0].name = "zzz".into(),
        "output 'zzz': no node or input produces it",
    );
    check(&|m| m.opset_import.clear(), "imports no version of the default ONNX opset");
    check(&|m| m.graph = None, "the model has no graph");
    check(
        &|m| m.graph.as_mut().unwrap().node[3].domain = "com.example".into(),
        "op domain 'com.example' is not supported",
    );
    check(
        &|m| {
            let g = m.graph.as_mut().unwrap();
            g.node.push(NodeProto {
                input: vec!["probs".into()],
                output: vec!["probs".into()],
                op_type: "Relu".into(),
                ..Default::default()
            });
        },
        "value 'probs' is defined twice",
    );
    check(
        &|m| {
            use kiln_onnx::proto::{tensor_shape_proto::dimension::Value as D, type_proto::Value as T};
            let Some(T::TensorType(t)) =
                &mut m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().value
            else {
                panic!()
            };
            t.shape.as_mut().unwrap().dim[0].value = Some(D::DimParam("batch".into()));
        },
        "input 'x': dimension 'batch' is symbolic",
    );
}

#[test]
fn symbolic_dims_take_concrete_shapes() {
    use kiln_onnx::proto::{tensor_shape_proto::dimension::Value as D, type_proto::Value as T};
    let mut m = mlp();
    let g = m.graph.as_mut().unwrap();
    let Some(T::TensorType(t)) = &mut g.input[0].r#type.as_mut().unwrap().value else { panic!() };
    t.shape.as_mut().unwrap().dim[0].value = Some(D::DimParam("batch".into()));
    g.output[0].r#type = None;
    let mut opts = ImportOptions::default();
    opts.shapes.insert("x".into(), vec![7, 3]);
    let imp = import_model(&m, &opts).unwrap();
    assert_eq!(imp.graph.node(imp.graph.outputs()[0]).shape.dims(), &[7, 2]);
}

/// Damaged copies of every committed model: each import returns (Ok or Err) without panicking.
#[test]
fn damaged_models_never_panic() {
    let mut models: Vec<Vec<u8>> =
        cases().iter().map(|c| std::fs::read(c.dir.join("model.onnx")).unwrap()).collect();
    models.push(std::fs::read(MLP).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut err) = (0, 0);
    for bytes in &models {
        let mut variants = Vec::new();
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            variants.push(bytes[..cut].to_vec());
        }
        for _ in 0..24 {
            let mut b = bytes.clone();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() as usize) % b.len();
                b[i] ^= 1 << (rnd() % 8);
            }
            variants.push(b);
        }
        for v in variants {
            match import_bytes(&v, &ImportOptions::default()) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    err += 1
                }
            }
        }
    }
    println!("damaged models: {ok} still imported, {err} rejected with an error, none panicked");
    assert!(err > ok / 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes are rejected or imported, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = import_bytes(&bytes, &ImportOptions::default());
    }

    /// Random valid kiln graphs export to ONNX and import back to the same structure and values.
    #[test]
    fn random_graphs_round_trip((g, lits) in arb_graph_with_inputs(GraphConfig { max_nodes: 12, ..GraphConfig::default() })) {
        let inputs: Vec<Value> = g.inputs().iter().zip(&lits).map(|(&i, l)| Value::from_literal(l, &g.node(i).shape).unwrap()).collect();
        let params: Vec<(String, Value)> = g.inputs().iter().zip(&inputs)
            .filter_map(|(&i, v)| match &g.node(i).op {
                kiln_ir::Op::Input { name, param: true } => Some((name.clone(), v.clone())),
                _ => None,
            })
            .collect();
        let m = export_graph(&g, &params, &Default::default()).unwrap();
        let back = import_bytes(&encode_model(&m), &ImportOptions::default()).unwrap();
        // Inputs come back as model inputs first, then initializers (parameters).
        let mut order: Vec<usize> = (0..inputs.len()).filter(|&k| params.iter().all(|p| Some(p.0.as_str()) != g.input_name(g.inputs()[k]))).collect();
        let rest: Vec<usize> = (0..inputs.len()).filter(|k| !order.contains(k)).collect();
        order.extend(rest);
        let reordered: Vec<Value> = order.iter().map(|&k| inputs[k].clone()).collect();
        let a = kiln_ir::run(&g, &inputs).unwrap();
        let b = kiln_ir::run(&back.graph, &reordered).unwrap();
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(kiln_ir::allclose(x, y, 0.0, 0.0), "{:?} vs {:?}", x, y);
        }
    }
}

/// Shapes from a model are not trusted with memory: a huge ConstantOfShape imports as a
/// broadcast scalar (nothing of its size is allocated), and an absurd Flatten saturates into an
/// error instead of overflowing.
#[test]
fn huge_shapes_allocate_nothing_at_import() {
    use kiln_onnx::proto::{attribute_type, AttributeProto, GraphProto, OperatorSetIdProto, ValueInfoProto};
    let dims = kiln_onnx::tensor::from_value(
        &Value::I64(ndarray::arr1(&[1i64 << 20, 1 << 20, 0, 1 << 40]).into_dyn()),
        "",
    );
    let node = |op: &str, i: &[&str], o: &str, attribute: Vec<AttributeProto>| NodeProto {
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        op_type: op.into(),
        attribute,
        ..Default::default()
    };
    let m = ModelProto {
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: vec![
                node(
                    "Constant",
                    &[],
                    "dims",
                    vec![AttributeProto {
                        name: "value".into(),
                        r#type: attribute_type::TENSOR,
                        t: Some(dims),
                        ..Default::default()
                    }],
                ),
                node("ConstantOfShape", &["dims"], "big", vec![]),
                node(
                    "Flatten",
                    &["big"],
                    "flat",
                    vec![AttributeProto {
                        name: "axis".into(),
                        r#type: attribute_type::INT,
                        i: 2,
                        ..Default::default()
                    }],
                ),
            ],
            output: vec![ValueInfoProto { name: "big".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let imp = import(&m).unwrap();
    assert_eq!(imp.graph.node(imp.graph.outputs()[0]).shape.dims(), &[1 << 20, 1 << 20, 0, 1 << 40]);
    let mut m2 = m.clone();
    m2.graph.as_mut().unwrap().output[0].name = "flat".into();
    // [2^40, 0 · 2^40]: the element count is 0 either way; the import must not overflow.
    let imp = import(&m2).unwrap();
    assert_eq!(imp.graph.node(imp.graph.outputs()[0]).shape.dims(), &[1 << 40, 0]);
}
