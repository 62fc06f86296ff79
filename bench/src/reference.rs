//! The harness's own oracle: every workload's checked outputs computed in f64 by plain code
//! (hand-derived gradients), from the same f32 inputs. kiln and every peer are compared with it,
//! so a check never rests on a peer alone (and still happens when no peer is installed).

use crate::npy::Array;
use crate::workloads::*;
use ndarray::{Array1, Array2, Axis};
use std::collections::BTreeMap;

pub type Outputs = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

fn f64s(a: &Array) -> Vec<f64> {
    a.to_f64()
}

fn mat(a: &Array) -> Array2<f64> {
    let s = a.shape();
    Array2::from_shape_vec((s[0], s[1]), f64s(a)).expect("2-D input")
}

fn put(o: &mut Outputs, k: &str, shape: &[usize], v: Vec<f64>) {
    o.insert(k.to_string(), (shape.to_vec(), v));
}

/// The reference outputs of `w`, or `None` when it has none (`trace`).
pub fn outputs(w: &str, inp: &BTreeMap<String, Array>) -> Option<Outputs> {
    let mut o = Outputs::new();
    let get = |k: &str| inp.get(k).unwrap_or_else(|| panic!("reference: input {k} missing"));
    match w {
        "W1-fwd" | "W1" => {
            let x = f64s(get("x"));
            let n = x.len();
            put(&mut o, "y", &[n], x.iter().map(|&x| x * x * x.exp()).collect());
            if w == "W1" {
                put(&mut o, "x_grad", &[n], x.iter().map(|&x| (2.0 * x + x * x) * x.exp()).collect());
            }
        }
        "W2" => {
            let (xs, ys) = (f64s(get("xs")), f64s(get("ys")));
            let (mut wv, mut bv) = (f64s(get("w0"))[0], f64s(get("b0"))[0]);
            for s in 0..W2_STEPS {
                let (mut gw, mut gb) = (0.0, 0.0);
                for i in s * W2_BATCH..(s + 1) * W2_BATCH {
                    let err = xs[i] * wv + bv - ys[i];
                    gw += err * xs[i];
                    gb += err;
                }
                wv -= W2_LR * gw;
                bv -= W2_LR * gb;
            }
            put(&mut o, "w", &[1, 1], vec![wv]);
            put(&mut o, "b", &[1, 1], vec![bv]);
        }
        "W3" => w3(&mut o, inp),
        "W4" => w4(&mut o, inp),
        "W5" => {
            let x = f64s(get("x"))[0];
            put(&mut o, "g", &[], vec![3.0 * x * x]);
            put(&mut o, "h", &[], vec![6.0 * x]);
        }
        _ => return None,
    }
    Some(o)
}

fn w3(o: &mut Outputs, inp: &BTreeMap<String, Array>) {
    let get = |k: &str| inp.get(k).unwrap_or_else(|| panic!("reference: input {k} missing"));
    let x = mat(get("X"));
    let labels = get("labels").to_f64();
    let ws: Vec<Array2<f64>> = ["w1", "w2", "w3"].iter().map(|k| mat(get(k))).collect();
    let bs: Vec<Array1<f64>> = ["b1", "b2", "b3"].iter().map(|k| Array1::from(f64s(get(k)))).collect();
    // Forward, keeping the pre-activations.
    let z1 = x.dot(&ws[0].t()) + &bs[0];
    let h1 = z1.mapv(|v| v.max(0.0));
    let z2 = h1.dot(&ws[1].t()) + &bs[1];
    let h2 = z2.mapv(|v| v.max(0.0));
    let logits = h2.dot(&ws[2].t()) + &bs[2];
    let n = logits.nrows();
    let mut dlogits = logits.clone();
    let mut loss = 0.0;
    for (r, mut row) in dlogits.axis_iter_mut(Axis(0)).enumerate() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let z: f64 = row.sum();
        row.mapv_inplace(|v| v / z);
        let t = labels[r] as usize;
        loss -= row[t].ln();
        row[t] -= 1.0;
    }
    loss /= n as f64;
    dlogits /= n as f64;
    let dw3 = dlogits.t().dot(&h2);
    let db3 = dlogits.sum_axis(Axis(0));
    let dz2 = dlogits.dot(&ws[2]) * z2.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    let dw2 = dz2.t().dot(&h1);
    let db2 = dz2.sum_axis(Axis(0));
    let dz1 = dz2.dot(&ws[1]) * z1.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    let dw1 = dz1.t().dot(&x);
    let db1 = dz1.sum_axis(Axis(0));
    put(o, "loss", &[], vec![loss]);
    for (k, m) in [("w1_grad", dw1), ("w2_grad", dw2), ("w3_grad", dw3)] {
        put(o, k, m.shape(), m.iter().copied().collect());
    }
    for (k, v) in [("b1_grad", db1), ("b2_grad", db2), ("b3_grad", db3)] {
        put(o, k, &[v.len()], v.to_vec());
    }
}

fn w4(o: &mut Outputs, inp: &BTreeMap<String, Array>) {
    let get = |k: &str| inp.get(k).unwrap_or_else(|| panic!("reference: input {k} missing"));
    let (x, w) = (f64s(get("x")), f64s(get("w")));
    let (g, b) = (f64s(get("g")), f64s(get("b")));
    let c = g.len();
    let rows = x.len() / c;
    let (mut s, mut gx, mut gg, mut gb) = (0.0, vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    let inv_sqrt2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
    let (mut xhat, mut dxhat) = (vec![0.0; c], vec![0.0; c]);
    for r in 0..rows {
        let xr = &x[r * c..(r + 1) * c];
        let mu = xr.iter().sum::<f64>() / c as f64;
        let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + W4_EPS).sqrt();
        for j in 0..c {
            xhat[j] = (xr[j] - mu) * rstd;
            let z = xhat[j] * g[j] + b[j];
            let cdf = 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
            let wj = w[r * c + j];
            s += z * cdf * wj;
            let dz = wj * (cdf + z * (-0.5 * z * z).exp() * inv_sqrt2pi);
            gb[j] += dz;
            gg[j] += dz * xhat[j];
            dxhat[j] = dz * g[j];
        }
        let m1 = dxhat.iter().sum::<f64>() / c as f64;
        let m2 = dxhat.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for j in 0..c {
            gx[r * c + j] = rstd * (dxhat[j] - m1 - xhat[j] * m2);
        }
    }
    put(o, "s", &[], vec![s]);
    put(o, "x_grad", &[rows, c], gx);
    put(o, "g_grad", &[c], gg);
    put(o, "b_grad", &[c], gb);
}

/// Normalised error `max|a - b| / max|b|` (`inf` on a shape mismatch or a non-finite value).
pub fn normalised_error(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w5_and_w2_are_right() {
        let inp = inputs("W5", Sizes { w1_log2: 4 });
        // d²/dx² x³ = 6x = 18 at x = 3 (WORKLOADS.md and the issue say 54, which is 6x²; the
        // harness checks the mathematically right value).
        assert_eq!(outputs("W5", &inp).unwrap()["h"].1, vec![18.0]);
        let inp = inputs("W2", Sizes { w1_log2: 4 });
        let o = outputs("W2", &inp).unwrap();
        // The seed's regression recovers w ≈ 2, b ≈ 3 within a few tenths after 500 steps.
        assert!((o["w"].1[0] - 2.0).abs() < 0.5 && (o["b"].1[0] - 3.0).abs() < 1.0, "{o:?}");
    }

    #[test]
    fn w4_gradient_matches_finite_difference() {
        // A 2x4 instance of the same code, checked against central differences.
        let mut inp = BTreeMap::new();
        let mut r = crate::rng::Rng::new(9);
        inp.insert("x".to_string(), Array::f32(&[2, 4], r.normal_vec(8)));
        inp.insert("w".to_string(), Array::f32(&[2, 4], r.normal_vec(8)));
        inp.insert("g".to_string(), Array::f32(&[4], r.uniform_vec(4, 0.5, 1.5)));
        inp.insert("b".to_string(), Array::f32(&[4], r.uniform_vec(4, -0.5, 0.5)));
        let base = outputs("W4", &inp).unwrap();
        for (name, grad) in [("x", "x_grad"), ("g", "g_grad"), ("b", "b_grad")] {
            let n = inp[name].to_f64().len();
            for i in 0..n {
                let eps = 1e-2f32;
                let at = |d: f32| {
                    let mut m = inp.clone();
                    if let Array::F32 { data, .. } = m.get_mut(name).unwrap() {
                        data[i] += d;
                    }
                    outputs("W4", &m).unwrap()["s"].1[0]
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
                let an = base[grad].1[i];
                assert!((fd - an).abs() < 1e-3 * (1.0 + an.abs()), "{name}[{i}]: fd {fd} vs {an}");
            }
        }
    }
}
