//! candle's versions of the workloads (candle-core only, as a candle user would write them;
//! cargo feature `candle`). W4's layer norm is composed from primitives because candle's fused
//! `layer_norm` has no backward; W3's cross-entropy is composed too (log-softmax and a one-hot
//! mask), since candle-core has no loss functions. W5 needs `CANDLE_GRAD_DO_NOT_DETACH=1`
//! (candle detaches gradients by default, which makes second derivatives wrong): the harness sets
//! it for candle's W5 process.

use crate::measure::{Protocol, Res};
use serde_json::Value;
use std::path::Path;

#[cfg(not(feature = "candle"))]
pub fn run(_w: &str, _inputs: &Path, _out: &Path, _p: Protocol, _baseline: Option<u64>) -> Res<Value> {
    Ok(crate::runners::missing(
        "kiln-bench was built without the `candle` feature: cargo run --release -p kiln-bench --features candle -- --peers",
    ))
}

#[cfg(feature = "candle")]
pub fn run(w: &str, inputs: &Path, out: &Path, p: Protocol, baseline: Option<u64>) -> Res<Value> {
    let inp = crate::measure::load_inputs(inputs)?;
    let prepared = imp::prepare(w, &inp)?;
    drop(inp);
    crate::measure::run(prepared, p, out, "candle-core 0.11", baseline)
}

#[cfg(feature = "candle")]
mod imp {
    use crate::measure::{input, Call, Prepared, Res};
    use crate::npy::Array;
    use crate::workloads::*;
    use candle_core::{DType, Device, Tensor, Var, D};
    use std::collections::BTreeMap;

    fn tensor(a: &Array) -> Res<Tensor> {
        Ok(match a {
            Array::F32 { shape, data } => Tensor::from_slice(data, shape.as_slice(), &Device::Cpu)?,
            Array::I64 { shape, data } => Tensor::from_slice(data, shape.as_slice(), &Device::Cpu)?,
        })
    }

    fn to_array(t: &Tensor) -> Res<Array> {
        Ok(Array::f32(t.dims(), t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?))
    }

    fn named(v: Vec<(&str, Tensor)>) -> Vec<(String, Tensor)> {
        v.into_iter().map(|(k, t)| (k.to_string(), t)).collect()
    }

    fn grad_of(g: &candle_core::backprop::GradStore, v: &Var, what: &str) -> Res<Tensor> {
        g.get(v.as_tensor()).cloned().ok_or_else(|| format!("candle: no gradient for {what}").into())
    }

    pub fn prepare(w: &str, inp: &BTreeMap<String, Array>) -> Res<Prepared<Tensor>> {
        let call: Call<Tensor> = match w {
            "W1-fwd" => {
                let x = tensor(input(inp, "x")?)?;
                Box::new(move || Ok(named(vec![("y", x.sqr()?.mul(&x.exp()?)?)])))
            }
            "W1" => {
                let x = Var::from_tensor(&tensor(input(inp, "x")?)?)?;
                Box::new(move || {
                    let y = x.sqr()?.mul(&x.exp()?)?;
                    let g = y.backward()?; // candle seeds every backward with ones_like(y)
                    let gx = grad_of(&g, &x, "x")?;
                    Ok(named(vec![("y", y.detach()), ("x_grad", gx)]))
                })
            }
            "W2" => {
                let (w0, b0) = (tensor(input(inp, "w0")?)?, tensor(input(inp, "b0")?)?);
                let split = |name: &str| -> Res<Vec<Tensor>> {
                    let a = input(inp, name)?.as_f32()?;
                    a.chunks(W2_BATCH)
                        .map(|c| Ok(Tensor::from_slice(c, (W2_BATCH, 1), &Device::Cpu)?))
                        .collect()
                };
                let (xs, ys) = (split("xs")?, split("ys")?);
                Box::new(move || {
                    let w = Var::from_tensor(&w0.copy()?)?;
                    let b = Var::from_tensor(&b0.copy()?)?;
                    for (x, y) in xs.iter().zip(&ys) {
                        let err = x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?.sub(y)?;
                        let loss = err.sqr()?.sum_all()?.affine(0.5, 0.0)?;
                        let g = loss.backward()?;
                        let (gw, gb) = (grad_of(&g, &w, "w")?, grad_of(&g, &b, "b")?);
                        w.set(&w.as_tensor().sub(&gw.affine(W2_LR, 0.0)?)?)?;
                        b.set(&b.as_tensor().sub(&gb.affine(W2_LR, 0.0)?)?)?;
                    }
                    Ok(named(vec![("w", w.as_tensor().detach()), ("b", b.as_tensor().detach())]))
                })
            }
            "W3" => {
                let xt = tensor(input(inp, "X")?)?;
                let labels = input(inp, "labels")?.as_i64()?;
                let n = labels.len();
                let classes = W3_DIMS[3];
                let mut hot = vec![0f32; n * classes];
                for (r, &l) in labels.iter().enumerate() {
                    hot[r * classes + l as usize] = 1.0;
                }
                let onehot = Tensor::from_vec(hot, (n, classes), &Device::Cpu)?;
                let names = ["w1", "b1", "w2", "b2", "w3", "b3"];
                let params: Vec<Var> = names
                    .iter()
                    .map(|k| Ok(Var::from_tensor(&tensor(input(inp, k)?)?)?))
                    .collect::<Res<_>>()?;
                Box::new(move || {
                    let p: Vec<&Tensor> = params.iter().map(Var::as_tensor).collect();
                    let lin = |x: &Tensor, w: &Tensor, b: &Tensor| x.matmul(&w.t()?)?.broadcast_add(b);
                    let h = lin(&xt, p[0], p[1])?.relu()?;
                    let h = lin(&h, p[2], p[3])?.relu()?;
                    let logits = lin(&h, p[4], p[5])?;
                    let m = logits.max_keepdim(D::Minus1)?.detach();
                    let z = logits.broadcast_sub(&m)?;
                    let logp = z.broadcast_sub(&z.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
                    let loss = logp.mul(&onehot)?.sum_all()?.affine(-1.0 / n as f64, 0.0)?;
                    let g = loss.backward()?;
                    let grads: Vec<Tensor> =
                        params.iter().zip(names).map(|(v, k)| grad_of(&g, v, k)).collect::<Res<_>>()?;
                    for (v, gr) in params.iter().zip(&grads) {
                        v.set(&v.as_tensor().sub(&gr.affine(W3_LR, 0.0)?)?)?;
                    }
                    let mut out = vec![("loss".to_string(), loss.detach())];
                    out.extend(names.iter().zip(grads).map(|(k, g)| (format!("{k}_grad"), g)));
                    Ok(out)
                })
            }
            "W4" => {
                let x = Var::from_tensor(&tensor(input(inp, "x")?)?)?;
                let g = Var::from_tensor(&tensor(input(inp, "g")?)?)?;
                let b = Var::from_tensor(&tensor(input(inp, "b")?)?)?;
                let wt = tensor(input(inp, "w")?)?;
                Box::new(move || {
                    let xs = x.as_tensor();
                    let mu = xs.mean_keepdim(D::Minus1)?;
                    let xc = xs.broadcast_sub(&mu)?;
                    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                    let ln = xc.broadcast_div(&var.affine(1.0, W4_EPS)?.sqrt()?)?;
                    let y = ln.broadcast_mul(g.as_tensor())?.broadcast_add(b.as_tensor())?.gelu_erf()?;
                    let s = y.mul(&wt)?.sum_all()?;
                    let gs = s.backward()?;
                    Ok(named(vec![
                        ("s", s.detach()),
                        ("x_grad", grad_of(&gs, &x, "x")?),
                        ("g_grad", grad_of(&gs, &g, "g")?),
                        ("b_grad", grad_of(&gs, &b, "b")?),
                    ]))
                })
            }
            "W5" => {
                let x = Var::from_tensor(&tensor(input(inp, "x")?)?)?;
                Box::new(move || {
                    let y = x.as_tensor().powf(3.0)?;
                    let g = grad_of(&y.backward()?, &x, "x")?;
                    let h = grad_of(&g.backward()?, &x, "x (second order)")?;
                    h.to_scalar::<f32>()?; // read h
                    Ok(named(vec![("g", g.detach()), ("h", h)]))
                })
            }
            other => return Err(format!("candle: unknown workload {other}").into()),
        };
        Ok(Prepared { call, convert: to_array })
    }
}
