//! `TensorProto` ↔ kiln values: element types, dims and the several places ONNX keeps data
//! (`raw_data` little-endian bytes, or the typed `*_data` fields).

use crate::error::{Error, Result};
use crate::proto::{data_type, TensorProto};
use kiln_ir::{DType, Value};

/// The kiln dtype of an ONNX element type, or an error naming the type.
pub fn dtype_of(elem_type: i32) -> Result<DType, String> {
    match elem_type {
        data_type::FLOAT => Ok(DType::F32),
        data_type::DOUBLE => Ok(DType::F64),
        data_type::INT64 => Ok(DType::I64),
        data_type::BOOL => Ok(DType::Bool),
        t => Err(format!(
            "element type {} is not supported (kiln has FLOAT, DOUBLE, INT64 and BOOL)",
            data_type::name(t)
        )),
    }
}

/// The ONNX element type of a kiln dtype.
pub fn elem_type_of(d: DType) -> i32 {
    match d {
        DType::F32 => data_type::FLOAT,
        DType::F64 => data_type::DOUBLE,
        DType::I64 => data_type::INT64,
        DType::Bool => data_type::BOOL,
    }
}

/// Converts ONNX dims (i64, possibly negative or huge in a corrupt file) to a shape, checking
/// that the element count fits in memory terms.
pub fn shape_of(dims: &[i64]) -> Result<Vec<usize>, String> {
    let mut n: usize = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let u = usize::try_from(d).map_err(|_| format!("dimension {d} is negative"))?;
        n = n
            .checked_mul(u)
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| format!("dims {dims:?} describe more elements than can be addressed"))?;
        out.push(u);
    }
    Ok(out)
}

/// Reads a `TensorProto` into a [`Value`]. `what` names it in errors (`initializer 'W'`).
pub fn to_value(t: &TensorProto, what: &str) -> Result<Value> {
    read(t).map_err(|m| Error::at(what, m))
}

fn read(t: &TensorProto) -> Result<Value, String> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err("tensors stored in external data files are not supported".into());
    }
    let dtype = dtype_of(t.data_type)?;
    let shape = shape_of(&t.dims)?;
    let n: usize = shape.iter().product();
    let raw = !t.raw_data.is_empty();
    let count_err = |got: usize| format!("holds {got} elements for dims {:?} ({n} expected)", t.dims);
    // `chunks_exact` below never panics: sizes are checked against `n` first.
    macro_rules! from_raw {
        ($ty:ty, $w:expr) => {{
            if t.raw_data.len() != n * $w {
                return Err(format!(
                    "raw_data has {} bytes for dims {:?} ({} expected)",
                    t.raw_data.len(),
                    t.dims,
                    n * $w
                ));
            }
            t.raw_data
                .chunks_exact($w)
                .map(|c| <$ty>::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect::<Vec<$ty>>()
        }};
    }
    let v = match dtype {
        DType::F32 => {
            let d = if raw { from_raw!(f32, 4) } else { t.float_data.clone() };
            if d.len() != n {
                return Err(count_err(d.len()));
            }
            Value::from_f64(DType::F32, shape, &d.iter().map(|&x| x as f64).collect::<Vec<_>>())
        }
        DType::F64 => {
            let d = if raw { from_raw!(f64, 8) } else { t.double_data.clone() };
            if d.len() != n {
                return Err(count_err(d.len()));
            }
            Value::from_f64(DType::F64, shape, &d)
        }
        DType::I64 => {
            let d = if raw { from_raw!(i64, 8) } else { t.int64_data.clone() };
            if d.len() != n {
                return Err(count_err(d.len()));
            }
            return ndarray::ArrayD::from_shape_vec(shape, d).map(Value::I64).map_err(|e| e.to_string());
        }
        DType::Bool => {
            let d: Vec<bool> = if raw {
                if t.raw_data.len() != n {
                    return Err(count_err(t.raw_data.len()));
                }
                t.raw_data.iter().map(|&b| b != 0).collect()
            } else {
                t.int32_data.iter().map(|&b| b != 0).collect()
            };
            if d.len() != n {
                return Err(count_err(d.len()));
            }
            return ndarray::ArrayD::from_shape_vec(shape, d).map(Value::Bool).map_err(|e| e.to_string());
        }
    };
    v.map_err(|e| e.to_string())
}

/// Writes a value as a `TensorProto` named `name` (data in `raw_data`, as exporters usually do).
pub fn from_value(v: &Value, name: &str) -> TensorProto {
    let mut raw = Vec::with_capacity(v.numel() * v.dtype().size_bytes());
    match v {
        Value::F32(a) => a.iter().for_each(|x| raw.extend_from_slice(&x.to_le_bytes())),
        Value::F64(a) => a.iter().for_each(|x| raw.extend_from_slice(&x.to_le_bytes())),
        Value::I64(a) => a.iter().for_each(|x| raw.extend_from_slice(&x.to_le_bytes())),
        Value::Bool(a) => raw.extend(a.iter().map(|&b| b as u8)),
    }
    TensorProto {
        dims: v.shape().0.iter().map(|&d| d as i64).collect(),
        data_type: elem_type_of(v.dtype()),
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

/// Reads a serialized `TensorProto` (an ONNX test-data `.pb` file).
pub fn decode_tensor(bytes: &[u8]) -> Result<(String, Value)> {
    let t: TensorProto =
        prost::Message::decode(bytes).map_err(|e| Error::model(format!("not a valid TensorProto: {e}")))?;
    let v = to_value(&t, &format!("tensor '{}'", t.name))?;
    Ok((t.name, v))
}
