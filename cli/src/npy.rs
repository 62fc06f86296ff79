//! `.npy` files in and out of [`Value`]s, through `ndarray-npy`.

use crate::error::{Error, Result};
use kiln_ir::interp::Value;
use kiln_ir::{DType, Shape};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

/// Reads `path` as an array of `dtype` and `shape` (what the graph input `name` declares).
///
/// ```
/// use kiln_ir::{interp::Value, DType, Shape};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("x.npy");
/// let x = Value::from_f64(DType::F32, [2], &[1.0, 2.0]).unwrap();
/// kiln_cli::npy::write_value(&path, &x).unwrap();
/// assert_eq!(kiln_cli::npy::read_value(&path, "x", DType::F32, &Shape::from(vec![2])).unwrap(), x);
/// let err = kiln_cli::npy::read_value(&path, "x", DType::F32, &Shape::from(vec![3])).unwrap_err();
/// assert!(err.to_string().ends_with("x.npy: holds an array of shape [2], but input 'x' is f32[3]"));
/// ```
pub fn read_value(path: &Path, name: &str, dtype: DType, shape: &Shape) -> Result<Value> {
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let reader = BufReader::new(file);
    let why = |e: ReadNpyError| {
        let msg = match e {
            ReadNpyError::WrongDescriptor(desc) => {
                format!(
                    "holds elements of type {desc}, but input '{name}' is {dtype} (expected {})",
                    descr(dtype)
                )
            }
            other => format!("not a readable .npy file: {other}"),
        };
        Error::file(path, msg)
    };
    let value = match dtype {
        DType::F32 => Value::F32(ArrayD::<f32>::read_npy(reader).map_err(why)?),
        DType::F64 => Value::F64(ArrayD::<f64>::read_npy(reader).map_err(why)?),
        DType::I64 => Value::I64(ArrayD::<i64>::read_npy(reader).map_err(why)?),
        DType::Bool => Value::Bool(ArrayD::<bool>::read_npy(reader).map_err(why)?),
    };
    if value.shape() != *shape {
        return Err(Error::file(
            path,
            format!(
                "holds an array of shape {:?}, but input '{name}' is {}",
                value.shape().dims(),
                kiln_ir::text::type_text(dtype, shape)
            ),
        ));
    }
    Ok(value)
}

/// Writes `value` to `path` as `.npy` (little-endian, C order).
pub fn write_value(path: &Path, value: &Value) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
    let w = BufWriter::new(file);
    let done = match value {
        Value::F32(a) => a.write_npy(w),
        Value::F64(a) => a.write_npy(w),
        Value::I64(a) => a.write_npy(w),
        Value::Bool(a) => a.write_npy(w),
    };
    done.map_err(|e| Error::file(path, format!("cannot write: {e}")))
}

/// numpy's name of a dtype (`descr` in the `.npy` header).
fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    }
}
