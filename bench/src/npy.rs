//! Minimal `.npy` (format 1.0, little-endian, C order) for the arrays the harness exchanges with
//! the peers: `<f4`, `<f8` (read only, converted to f32) and `<i8`.

use std::io::{Read, Write};
use std::path::Path;

/// An array read from or written to `.npy`.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl Array {
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Array {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "npy: shape and data disagree");
        Array::F32 { shape: shape.to_vec(), data }
    }

    pub fn i64(shape: &[usize], data: Vec<i64>) -> Array {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "npy: shape and data disagree");
        Array::I64 { shape: shape.to_vec(), data }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Array::F32 { shape, .. } | Array::I64 { shape, .. } => shape,
        }
    }

    /// The elements as f64 (for comparisons).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Array::F32 { data, .. } => data.iter().map(|&v| v as f64).collect(),
            Array::I64 { data, .. } => data.iter().map(|&v| v as f64).collect(),
        }
    }

    pub fn as_f32(&self) -> Result<&[f32], String> {
        match self {
            Array::F32 { data, .. } => Ok(data),
            Array::I64 { .. } => Err("expected a float32 array, got int64".into()),
        }
    }

    #[cfg_attr(not(feature = "candle"), allow(dead_code))] // candle builds its one-hot from it
    pub fn as_i64(&self) -> Result<&[i64], String> {
        match self {
            Array::I64 { data, .. } => Ok(data),
            Array::F32 { .. } => Err("expected an int64 array, got float32".into()),
        }
    }
}

pub fn write(path: &Path, a: &Array) -> std::io::Result<()> {
    let (descr, shape) = match a {
        Array::F32 { shape, .. } => ("<f4", shape),
        Array::I64 { shape, .. } => ("<i8", shape),
    };
    let dims = match shape.len() {
        0 => String::new(),
        1 => format!("{},", shape[0]),
        _ => shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&bytes)?;
    match a {
        Array::F32 { data, .. } => data.iter().try_for_each(|v| f.write_all(&v.to_le_bytes()))?,
        Array::I64 { data, .. } => data.iter().try_for_each(|v| f.write_all(&v.to_le_bytes()))?,
    }
    f.flush()
}

pub fn read(path: &Path) -> Result<Array, String> {
    let err = |m: String| format!("{}: {m}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| err(e.to_string()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("not an .npy file".into()));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("truncated header".into()));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err(format!("unsupported .npy version {v}"))),
    };
    let header =
        std::str::from_utf8(bytes.get(hstart..hstart + hlen).ok_or_else(|| err("truncated".into()))?)
            .map_err(|e| err(e.to_string()))?;
    let field = |key: &str| -> Result<&str, String> {
        let i = header.find(key).ok_or_else(|| err(format!("header has no {key}")))?;
        Ok(header[i + key.len()..].trim_start_matches([':', ' ']))
    };
    let descr = field("'descr'")?;
    let descr = descr.trim_start_matches('\'').split('\'').next().unwrap_or("");
    if field("'fortran_order'")?.starts_with("True") {
        return Err(err("Fortran order is not supported".into()));
    }
    let shape_txt = field("'shape'")?;
    let shape_txt = &shape_txt[1..shape_txt.find(')').ok_or_else(|| err("bad shape".into()))?];
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| err(format!("bad dim {s}"))))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[hstart + hlen..];
    let need = |size: usize| {
        if body.len() < n * size {
            Err(err(format!("expected {} bytes of data, found {}", n * size, body.len())))
        } else {
            Ok(())
        }
    };
    match descr {
        "<f4" => {
            need(4)?;
            let data =
                body.chunks_exact(4).take(n).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            Ok(Array::F32 { shape, data })
        }
        "<f8" => {
            need(8)?;
            let data = body
                .chunks_exact(8)
                .take(n)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect();
            Ok(Array::F32 { shape, data })
        }
        "<i8" => {
            need(8)?;
            let data =
                body.chunks_exact(8).take(n).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            Ok(Array::I64 { shape, data })
        }
        // Booleans/ints of other widths do not occur among the workloads' inputs and outputs.
        d => Err(err(format!("unsupported dtype {d}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("kiln-bench-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for a in [
            Array::f32(&[], vec![3.0]),
            Array::f32(&[5], vec![1.0, -2.0, 3.5, 0.0, 1e-8]),
            Array::f32(&[2, 3], (0..6).map(|i| i as f32).collect()),
            Array::i64(&[4], vec![0, 9, -1, 3]),
        ] {
            let p = dir.join("a.npy");
            write(&p, &a).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            assert_eq!(read(&p).unwrap(), a);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
