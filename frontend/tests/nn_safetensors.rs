//! Weights on disk: safetensors round trips (every dtype), loading into a model, and the
//! errors for files that do not match.

use kiln_frontend::nn::{
    load_safetensors, read_safetensors, save_safetensors, LayerNorm, Linear, Module, ReLU, Sequential,
};
use kiln_frontend::{DType, Tensor};
use std::path::PathBuf;

/// A fresh directory under the system temp dir for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-nn-safetensors-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mlp() -> Sequential {
    Sequential::new()
        .append(Linear::new(3, 5))
        .append(ReLU)
        .append(Linear::new(5, 2))
        .append(LayerNorm::new(&[2]))
}

#[test]
fn a_trained_model_round_trips_and_predicts_identically() {
    let dir = scratch("model");
    let a = mlp();
    // Give the parameters pending (lazy) values, as after an optimiser step.
    {
        let _g = kiln_frontend::no_grad();
        for p in a.parameters() {
            p.add_(&(&p * 0.5 + 0.25)).unwrap();
        }
    }
    let path = dir.join("mlp.safetensors");
    save_safetensors(&path, &a.named_parameters()).unwrap();
    let b = mlp();
    let x = Tensor::randn(&[4, 3]);
    assert_ne!(a.forward(&x).unwrap().to_vec_f32().unwrap(), b.forward(&x).unwrap().to_vec_f32().unwrap());
    let before = b.parameters()[0].clone();
    load_safetensors(&path, &b.named_parameters()).unwrap();
    // Loaded in place: the handles an optimiser holds see the new values.
    assert_eq!(before.to_vec_f32().unwrap(), a.parameters()[0].to_vec_f32().unwrap());
    assert_eq!(a.forward(&x).unwrap().to_vec_f32().unwrap(), b.forward(&x).unwrap().to_vec_f32().unwrap());
    assert!(b.parameters().iter().all(|p| p.is_leaf() && p.requires_grad()));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn every_dtype_round_trips_bit_for_bit() {
    let dir = scratch("dtypes");
    let tensors = vec![
        (
            "f32".to_string(),
            Tensor::from_vec(vec![1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE, 1e-45], &[5]).unwrap(),
        ),
        ("f64".to_string(), Tensor::from_vec(vec![std::f64::consts::PI, -1e300, 0.1], &[3, 1]).unwrap()),
        (
            "i64".to_string(),
            Tensor::from_vec(vec![i64::MAX, i64::MIN, 0, 9_007_199_254_740_993], &[2, 2]).unwrap(),
        ),
        ("bool".to_string(), Tensor::from_vec(vec![true, false, true], &[3]).unwrap()),
        ("scalar".to_string(), Tensor::full_typed(&[], 7.0, DType::F64)),
    ];
    let path = dir.join("all.safetensors");
    save_safetensors(&path, &tensors).unwrap();
    let back = read_safetensors(&path).unwrap();
    assert_eq!(back.len(), tensors.len());
    for (name, t) in &tensors {
        let (_, r) = back.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!((r.dtype(), r.shape()), (t.dtype(), t.shape()), "{name}");
        assert_eq!(format!("{r}"), format!("{t}"), "{name}");
    }
    // Integers beyond 2^53 survive loading and saving (the bytes are not passed through f64).
    // `Tensor::from_vec` converts through f64, so the file is written by the safetensors crate.
    let big: Vec<u8> =
        [i64::MAX, i64::MIN, 0, 9_007_199_254_740_993].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![2, 2], &big).unwrap();
    let file_i64 = dir.join("i64.safetensors");
    safetensors::serialize_to_file([("i64", view)], None, &file_i64).unwrap();
    let into = vec![("i64".to_string(), Tensor::zeros_typed(&[2, 2], DType::I64))];
    load_safetensors(&file_i64, &into).unwrap();
    // Printing also goes through f64, so compare the bytes kiln writes back.
    let again = dir.join("again.safetensors");
    save_safetensors(&again, &into).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&file_i64).unwrap());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_file_is_standard_safetensors() {
    // Header: 8-byte little-endian length, then JSON naming dtype, shape and data offsets.
    let dir = scratch("format");
    let path = dir.join("w.safetensors");
    save_safetensors(&path, &[("w".to_string(), Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2]).unwrap())])
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains(r#""w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}"#), "{header}");
    assert_eq!(&bytes[8 + n..], [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn mismatches_are_all_reported_and_nothing_is_loaded() {
    let dir = scratch("mismatch");
    let path = dir.join("m.safetensors");
    let saved = vec![
        ("0.weight".to_string(), Tensor::ones(&[4, 3])),
        ("0.bias".to_string(), Tensor::ones_typed(&[5], DType::F64)),
        ("extra".to_string(), Tensor::ones(&[1])),
    ];
    save_safetensors(&path, &saved).unwrap();
    let model = Sequential::new().append(Linear::new(3, 5)).append(ReLU).append(Linear::new(5, 2));
    let w0 = model.parameters()[0].to_vec_f64().unwrap();
    let err = load_safetensors(&path, &model.named_parameters()).unwrap_err().to_string();
    for want in [
        "0.weight: shape [4, 3] in the file, [5, 3] in the model",
        "0.bias: dtype f64 in the file, f32 in the model",
        "missing: 2.weight",
        "missing: 2.bias",
        "unexpected: extra",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    assert_eq!(model.parameters()[0].to_vec_f64().unwrap(), w0, "a failed load changes nothing");

    let dup = vec![("a".to_string(), Tensor::ones(&[1])), ("a".to_string(), Tensor::ones(&[1]))];
    assert!(save_safetensors(dir.join("d.safetensors"), &dup)
        .unwrap_err()
        .to_string()
        .contains("appears twice"));
    let missing = load_safetensors(dir.join("nope.safetensors"), &[]).unwrap_err().to_string();
    assert!(missing.contains("cannot read") && missing.contains("nope.safetensors"), "{missing}");
    std::fs::write(dir.join("junk.safetensors"), b"not a safetensors file").unwrap();
    assert!(read_safetensors(dir.join("junk.safetensors"))
        .unwrap_err()
        .to_string()
        .contains("junk.safetensors"));
    std::fs::remove_dir_all(dir).ok();
}
