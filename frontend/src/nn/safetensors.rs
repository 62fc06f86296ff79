//! Weights on disk in the `safetensors` format (what Hugging Face and PyTorch users share):
//! named tensors, little-endian, with a JSON header of names, dtypes and shapes.

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::tensor::Tensor;
use kiln_ir::interp::Value;
use kiln_ir::DType;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Writes named tensors (e.g. `model.named_parameters()`) to a `.safetensors` file. Pending
/// values are computed first; the file is written to a temporary sibling and renamed, so a
/// reader never sees half a file.
///
/// ```
/// use kiln_frontend::nn::{load_safetensors, save_safetensors, Linear, Module};
/// let dir = std::env::temp_dir().join(format!("kiln-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("linear.safetensors");
/// let a = Linear::new(3, 2);
/// save_safetensors(&path, &a.named_parameters()).unwrap();
/// let b = Linear::new(3, 2);
/// load_safetensors(&path, &b.named_parameters()).unwrap();
/// assert_eq!(a.weight.to_vec_f64().unwrap(), b.weight.to_vec_f64().unwrap());
/// // A model of another shape is refused, with every mismatch named.
/// let err = load_safetensors(&path, &Linear::new(4, 2).named_parameters()).unwrap_err();
/// assert!(err.to_string().contains("weight: shape [2, 3] in the file, [2, 4] in the model"), "{err}");
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
pub fn save_safetensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let mut seen = std::collections::HashSet::new();
    let mut encoded = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(Error::Op(format!("save_safetensors: the name {name:?} appears twice")));
        }
        encoded.push((name.clone(), file_dtype(t.dtype()), t.shape().to_vec(), to_bytes(&*t.value()?)));
    }
    let views = encoded
        .iter()
        .map(|(n, d, s, b)| {
            Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).map_err(io_err(path))?))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(io_err(path))
}

/// Reads every tensor of a `.safetensors` file, in the file's order. Supports the dtypes kiln
/// has (F32, F64, I64, BOOL); others are reported by name.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Op(format!("cannot read {}: {e}", path.display())))?;
    let file = SafeTensors::deserialize(&bytes).map_err(io_err(path))?;
    file.iter()
        .map(|(name, view)| {
            let v = from_bytes(view.dtype(), view.shape(), view.data()).ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: tensor {name:?} has dtype {:?}, which kiln does not support (F32, F64, I64, BOOL)",
                    path.display(),
                    view.dtype()
                ))
            })?;
            Ok((name.to_string(), Tensor::from_value(v)))
        })
        .collect()
}

/// Loads a `.safetensors` file into existing tensors (e.g. `model.named_parameters()`), in
/// place, like PyTorch's `load_state_dict(strict=True)`. Names, shapes and dtypes must match
/// exactly; otherwise nothing is changed and the error lists every mismatch (missing,
/// unexpected, shape, dtype). Loading bumps each tensor's version counter, as `copy_` does.
pub fn load_safetensors(path: impl AsRef<Path>, into: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let file = read_safetensors(path)?;
    let mut problems = Vec::new();
    for (name, t) in into {
        match file.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("missing: {name} (the model has it, the file does not)")),
            Some((_, f)) => {
                if f.shape() != t.shape() {
                    problems.push(format!(
                        "{name}: shape {:?} in the file, {:?} in the model",
                        f.shape(),
                        t.shape()
                    ));
                }
                if f.dtype() != t.dtype() {
                    problems.push(format!(
                        "{name}: dtype {} in the file, {} in the model",
                        f.dtype(),
                        t.dtype()
                    ));
                }
            }
        }
    }
    for (name, _) in &file {
        if !into.iter().any(|(n, _)| n == name) {
            problems.push(format!("unexpected: {name} (the file has it, the model does not)"));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Op(format!(
            "Error(s) in loading {}:\n  {}",
            path.display(),
            problems.join("\n  ")
        )));
    }
    for (name, t) in into {
        let (_, f) = file.iter().find(|(n, _)| n == name).expect("checked above");
        t.0.storage.set(Expr::ready((*f.value()?).clone()));
        t.bump_version();
    }
    Ok(())
}

fn io_err(path: &Path) -> impl Fn(safetensors::SafeTensorError) -> Error + '_ {
    move |e| Error::Op(format!("safetensors file {}: {e}", path.display()))
}

fn file_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::F32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::F64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::I64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::Bool(a) => a.iter().map(|&x| x as u8).collect(),
    }
}

fn from_bytes(d: Dtype, shape: &[usize], b: &[u8]) -> Option<Value> {
    fn arr<T>(shape: &[usize], v: Vec<T>) -> Option<ndarray::ArrayD<T>> {
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).ok()
    }
    fn words<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N).map(|c| c.try_into().expect("chunks_exact gives N bytes"))
    }
    Some(match d {
        Dtype::F32 => Value::F32(arr(shape, words(b).map(f32::from_le_bytes).collect())?),
        Dtype::F64 => Value::F64(arr(shape, words(b).map(f64::from_le_bytes).collect())?),
        Dtype::I64 => Value::I64(arr(shape, words(b).map(i64::from_le_bytes).collect())?),
        Dtype::BOOL => Value::Bool(arr(shape, b.iter().map(|&x| x != 0).collect())?),
        _ => return None,
    })
}
