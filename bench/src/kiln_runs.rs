//! kiln's side of each workload, written with the public Tensor API as a user would write it.

use crate::measure::{input, Call, Prepared, Res};
use crate::npy::Array;
use crate::workloads::*;
use kiln::autograd::{grad, GradOptions};
use kiln::nn::functional::{cross_entropy, layer_norm, linear};
use kiln::{no_grad, realize, Tensor};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

fn tensor(a: &Array) -> Res<Tensor> {
    Ok(match a {
        Array::F32 { shape, data } => Tensor::from_vec(data.clone(), shape)?,
        Array::I64 { shape, data } => Tensor::from_vec(data.clone(), shape)?,
    })
}

fn to_array(t: &Tensor) -> Res<Array> {
    Ok(Array::f32(t.shape(), t.to_vec_f32()?))
}

fn named(v: Vec<(&str, Tensor)>) -> Vec<(String, Tensor)> {
    v.into_iter().map(|(k, t)| (k.to_string(), t)).collect()
}

fn missing_grad(what: &str) -> crate::measure::Error {
    format!("{what}.grad is None after backward").into()
}

pub fn prepare(w: &str, inp: &BTreeMap<String, Array>) -> Res<Prepared<Tensor>> {
    let call: Call<Tensor> = match w {
        "W1-fwd" => {
            let x = tensor(input(inp, "x")?)?;
            Box::new(move || {
                let y = x.pow(2.0) * x.exp();
                realize(&[&y])?;
                Ok(named(vec![("y", y)]))
            })
        }
        "W1" => {
            let x = tensor(input(inp, "x")?)?.requires_grad_(true);
            Box::new(move || {
                x.set_grad(None)?; // overwritten each call, not accumulated
                let y = x.pow(2.0) * x.exp();
                // backward() finishing computes the gradients and every pending value still held
                // (here y): reading x.grad needs nothing more.
                y.backward_with(Some(&y.ones_like()), false, false)?;
                let g = x.grad().ok_or_else(|| missing_grad("x"))?;
                Ok(named(vec![("y", y.detach()), ("x_grad", g)]))
            })
        }
        "W2" => {
            let (w0, b0) = (input(inp, "w0")?.as_f32()?.to_vec(), input(inp, "b0")?.as_f32()?.to_vec());
            let split = |name: &str| -> Res<Vec<Tensor>> {
                let a = input(inp, name)?.as_f32()?;
                a.chunks(W2_BATCH).map(|c| Ok(Tensor::from_vec(c.to_vec(), &[W2_BATCH, 1])?)).collect()
            };
            let (xs, ys) = (split("xs")?, split("ys")?);
            Box::new(move || {
                let w = Tensor::from_vec(w0.clone(), &[1, 1])?.requires_grad_(true);
                let b = Tensor::from_vec(b0.clone(), &[1, 1])?.requires_grad_(true);
                for (x, y) in xs.iter().zip(&ys) {
                    let err = x.matmul(&w)?.add(&b)?.sub(y)?;
                    let loss = (&err * &err).sum() * 0.5;
                    loss.backward()?;
                    let (gw, gb) = (
                        w.grad().ok_or_else(|| missing_grad("w"))?,
                        b.grad().ok_or_else(|| missing_grad("b"))?,
                    );
                    {
                        let _g = no_grad();
                        w.sub_(&(&gw * W2_LR))?;
                        b.sub_(&(&gb * W2_LR))?;
                    }
                    gw.zero_()?;
                    gb.zero_()?;
                }
                w.item()?;
                b.item()?;
                Ok(named(vec![("w", w.detach()), ("b", b.detach())]))
            })
        }
        "W3" => {
            let xt = tensor(input(inp, "X")?)?;
            let labels = tensor(input(inp, "labels")?)?;
            let names = ["w1", "b1", "w2", "b2", "w3", "b3"];
            let params: Vec<Tensor> =
                names.iter().map(|n| Ok(tensor(input(inp, n)?)?.requires_grad_(true))).collect::<Res<_>>()?;
            Box::new(move || {
                let p = &params;
                let h = linear(&xt, &p[0], Some(&p[1]))?.relu();
                let h = linear(&h, &p[2], Some(&p[3]))?.relu();
                let logits = linear(&h, &p[4], Some(&p[5]))?;
                let loss = cross_entropy(&logits, &labels)?;
                loss.backward()?;
                let grads: Vec<Tensor> = names
                    .iter()
                    .zip(p)
                    .map(|(n, p)| p.grad().ok_or_else(|| missing_grad(n)))
                    .collect::<Res<_>>()?;
                {
                    let _g = no_grad();
                    for (p, g) in p.iter().zip(&grads) {
                        p.sub_(&(g * W3_LR))?;
                    }
                }
                for p in p {
                    p.set_grad(None)?;
                }
                realize(&p.iter().collect::<Vec<_>>())?;
                let mut out = vec![("loss".to_string(), loss.detach())];
                out.extend(names.iter().zip(grads).map(|(n, g)| (format!("{n}_grad"), g)));
                Ok(out)
            })
        }
        "W4" => {
            let x = tensor(input(inp, "x")?)?.requires_grad_(true);
            let g = tensor(input(inp, "g")?)?.requires_grad_(true);
            let b = tensor(input(inp, "b")?)?.requires_grad_(true);
            let wt = tensor(input(inp, "w")?)?;
            Box::new(move || {
                for t in [&x, &g, &b] {
                    t.set_grad(None)?;
                }
                let y = (layer_norm(&x, &[W4_COLS], None, None, W4_EPS)? * &g + &b).gelu();
                let s = (&y * &wt).sum();
                s.backward()?;
                let gx = x.grad().ok_or_else(|| missing_grad("x"))?;
                let gg = g.grad().ok_or_else(|| missing_grad("g"))?;
                let gb = b.grad().ok_or_else(|| missing_grad("b"))?;
                Ok(named(vec![("s", s.detach()), ("x_grad", gx), ("g_grad", gg), ("b_grad", gb)]))
            })
        }
        "W5" => {
            let x = tensor(input(inp, "x")?)?.requires_grad_(true);
            Box::new(move || {
                let opts = GradOptions { create_graph: true, ..Default::default() };
                let g = grad(&[&x.pow(3.0)], &[&x], opts)?.remove(0).ok_or("grad returned None")?;
                let h = grad(&[&g], &[&x], GradOptions::default())?.remove(0).ok_or("grad returned None")?;
                h.item()?; // read h
                Ok(named(vec![("g", g.detach()), ("h", h)]))
            })
        }
        other => return Err(format!("kiln: unknown workload {other}").into()),
    };
    Ok(Prepared { call, convert: to_array })
}

/// Tracing overhead: `TRACE_OPS` chained scalar multiplies, realized (`item()`) every
/// `TRACE_EVERY`, with and without grad. Reports ns per op for recording alone and for the
/// whole loop (recording + realizations); best of `reps`.
pub fn trace_overhead(reps: usize) -> Res<Value> {
    let mut out = serde_json::Map::new();
    for rg in [false, true] {
        let (mut best_total, mut best_record) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..reps.max(1) {
            let x = Tensor::from_vec(vec![1.0f32], &[])?.requires_grad_(rg);
            let mut y = x.clone();
            let mut record = 0.0;
            let t_all = Instant::now();
            for _ in 0..TRACE_OPS / TRACE_EVERY {
                let t0 = Instant::now();
                for _ in 0..TRACE_EVERY {
                    y = &y * 1.0000001;
                }
                record += t0.elapsed().as_secs_f64();
                y.item()?;
            }
            let total = t_all.elapsed().as_secs_f64();
            drop(y);
            best_total = best_total.min(total);
            best_record = best_record.min(record);
        }
        let tag = if rg { "grad" } else { "no_grad" };
        out.insert(format!("ns_per_op_{tag}"), json!(best_total / TRACE_OPS as f64 * 1e9));
        out.insert(format!("record_ns_per_op_{tag}"), json!(best_record / TRACE_OPS as f64 * 1e9));
    }
    out.insert("status".into(), json!("ok"));
    Ok(Value::Object(out))
}
