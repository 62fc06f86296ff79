//! Optimisers against PyTorch: five steps on `loss = Σ coef·(p − target)²` in f64, compared with
//! the parameters PyTorch 2.x computes for the same problem and hyper-parameters.

use kiln_frontend::optim::{Adam, AdamOptions, AdamW, Optimizer, SgdOptions, SGD};
use kiln_frontend::{DType, Tensor};

// Generated with PyTorch 2.15 (float64 default dtype) by:
//
//   coef = torch.tensor([1.0, 3.0, 0.5]); target = torch.tensor([0.3, 0.1, -0.7])
//   p = torch.tensor([1.0, -2.0, 0.5], requires_grad=True); opt = <optimizer>([p])
//   for _ in range(5):
//       opt.zero_grad(); (coef * (p - target) ** 2).sum().backward(); opt.step()
//       print(p.tolist())
//
// with, per constant, the optimizer named in its test below.
const SGD: [[f64; 3]; 5] = [
    [0.86, -0.7399999999999998, 0.38],
    [0.748, -0.2359999999999999, 0.27199999999999996],
    [0.6584, -0.03439999999999994, 0.17479999999999996],
    [0.58672, 0.046240000000000024, 0.08731999999999995],
    [0.529376, 0.07849600000000001, 0.008587999999999959],
];
const SGD_MOMENTUM: [[f64; 3]; 5] = [
    [0.859, -0.7379999999999999, 0.3795],
    [0.6307069, 0.8509842000000002, 0.17355345],
    [0.36514823178999994, 1.87477262622, -0.090574453605],
    [0.11409011527018893, 1.8361176962956018, -0.3830563490168055],
    [-0.07850109145001814, 0.8621721974373524, -0.6744702327618028],
];
const SGD_NESTEROV: [[f64; 3]; 5] = [
    [0.865, -0.8479999999999998, 0.3875],
    [0.707515, 0.08115200000000014, 0.2461375],
    [0.550466665, 0.6030091520000002, 0.09072988750000001],
    [0.4102210573149999, 0.7392439371520001, -0.0667484113625],
    [0.29673199119446486, 0.619521076865152, -0.2171308426776125],
];
const ADAM: [[f64; 3]; 5] = [
    [0.9000000666666222, -1.9000000078124994, 0.400000079999936],
    [0.8007243296152131, -1.8001726765089825, 0.30037565042523234],
    [0.7028624809485746, -1.7006441629128357, 0.20143414918811142],
    [0.6073241428150383, -1.6015482912977812, 0.10353435154707527],
    [0.5153053516350939, -1.5030261150667372, 0.007094940104693456],
];
const ADAM_AMSGRAD: [[f64; 3]; 5] = [
    [0.9500000003571428, -1.9500000000396827, 0.45000000041666666],
    [0.9001307354336203, -1.9000350310264233, 0.4000667614776145],
    [0.850495013393328, -1.850129577485093, 0.350248965356094],
    [0.801208790795238, -1.800308928331543, 0.30059851049878533],
    [0.7524022429411107, -1.7505991368865483, 0.25117055866036525],
];
const ADAMW: [[f64; 3]; 5] = [
    [0.8500000007142856, -1.800000000079365, 0.3750000008333333],
    [0.7088335586702559, -1.6103851103976266, 0.2566866292342291],
    [0.577413661020568, -1.4309212589529667, 0.1450555360400197],
    [0.45705344900237066, -1.2614068121169377, 0.04013068661566002],
    [0.34944901427576297, -1.1016696226627947, -0.05803971586908019],
];

fn param() -> Tensor {
    Tensor::from_vec(vec![1.0f64, -2.0, 0.5], &[3]).unwrap().requires_grad_(true)
}

fn loss(p: &Tensor) -> Tensor {
    let coef = Tensor::from_vec(vec![1.0f64, 3.0, 0.5], &[3]).unwrap();
    let target = Tensor::from_vec(vec![0.3f64, 0.1, -0.7], &[3]).unwrap();
    let d = p - &target;
    (&coef * &d * &d).sum()
}

fn check_trajectory(name: &str, p: &Tensor, opt: &mut dyn Optimizer, expected: &[[f64; 3]; 5]) {
    for (step, want) in expected.iter().enumerate() {
        opt.zero_grad();
        loss(p).backward().unwrap();
        opt.step().unwrap();
        let got = p.to_vec_f64().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "{name}, step {}: got {got:?}, PyTorch {want:?}",
                step + 1
            );
        }
    }
}

#[test]
fn sgd_matches_pytorch() {
    let p = param();
    check_trajectory("SGD(lr=0.1)", &p, &mut SGD::new(vec![p.clone()], 0.1).unwrap(), &SGD);
}

#[test]
fn sgd_momentum_dampening_weight_decay_match_pytorch() {
    let p = param();
    let opts = SgdOptions { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 0.01, nesterov: false };
    let mut opt = SGD::with_options(vec![p.clone()], opts).unwrap();
    check_trajectory("SGD(momentum=0.9, dampening=0.1, weight_decay=0.01)", &p, &mut opt, &SGD_MOMENTUM);
}

#[test]
fn sgd_nesterov_matches_pytorch() {
    let p = param();
    let opts =
        SgdOptions { lr: 0.05, momentum: 0.8, weight_decay: 0.1, nesterov: true, ..Default::default() };
    let mut opt = SGD::with_options(vec![p.clone()], opts).unwrap();
    check_trajectory("SGD(nesterov)", &p, &mut opt, &SGD_NESTEROV);
}

#[test]
fn adam_with_weight_decay_matches_pytorch() {
    let p = param();
    let opts = AdamOptions { lr: 0.1, betas: (0.8, 0.9), eps: 1e-6, weight_decay: 0.1, amsgrad: false };
    let mut opt = Adam::with_options(vec![p.clone()], opts).unwrap();
    check_trajectory("Adam(lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)", &p, &mut opt, &ADAM);
    assert_eq!(opt.step_count(0), Some(5));
}

#[test]
fn adam_amsgrad_matches_pytorch() {
    let p = param();
    let opts = AdamOptions { lr: 0.05, amsgrad: true, ..Default::default() };
    let mut opt = Adam::with_options(vec![p.clone()], opts).unwrap();
    check_trajectory("Adam(lr=0.05, amsgrad=True)", &p, &mut opt, &ADAM_AMSGRAD);
}

#[test]
fn adamw_matches_pytorch() {
    let p = param();
    let opts = AdamOptions { lr: 0.1, weight_decay: 0.5, ..Default::default() };
    let mut opt = AdamW::with_options(vec![p.clone()], opts).unwrap();
    check_trajectory("AdamW(lr=0.1, weight_decay=0.5)", &p, &mut opt, &ADAMW);
}

#[test]
fn momentum_buffer_is_not_aliased_to_the_gradient() {
    // Zeroing the gradient in place (the pre-2.0 idiom) must not reach the momentum buffer.
    let p = param();
    let opts = SgdOptions { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 0.01, nesterov: false };
    let mut opt = SGD::with_options(vec![p.clone()], opts).unwrap();
    for want in SGD_MOMENTUM.iter().take(3) {
        if let Some(g) = p.grad() {
            g.zero_().unwrap();
        }
        loss(&p).backward().unwrap();
        opt.step().unwrap();
        let got = p.to_vec_f64().unwrap();
        assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12), "{got:?} vs {want:?}");
    }
}

#[test]
fn zero_grad_sets_to_none_and_parameters_without_grad_are_skipped() {
    let (p, q) = (param(), param());
    let mut opt = SGD::new(vec![p.clone(), q.clone()], 0.1).unwrap();
    loss(&p).backward().unwrap();
    opt.step().unwrap();
    assert_eq!(q.to_vec_f64().unwrap(), vec![1.0, -2.0, 0.5], "q had no gradient");
    assert_eq!(p.to_vec_f64().unwrap(), SGD[0].to_vec());
    opt.zero_grad();
    assert!(p.grad().is_none() && q.grad().is_none());
    assert!(p.is_leaf() && p.requires_grad(), "a step keeps parameters trainable leaves");
}

#[test]
fn set_lr_changes_the_next_step() {
    let p = Tensor::full_typed(&[1], 1.0, DType::F64).requires_grad_(true);
    let mut opt = SGD::new(vec![p.clone()], 0.1).unwrap();
    for lr in [0.1, 0.01] {
        opt.set_lr(lr);
        assert_eq!(opt.lr(), lr);
        opt.zero_grad();
        (&p * 1.0).sum().backward().unwrap(); // gradient 1
        opt.step().unwrap();
    }
    assert!((p.item().unwrap() - (1.0 - 0.1 - 0.01)).abs() < 1e-15);
}

#[test]
fn bad_hyper_parameters_are_refused_with_pytorchs_words() {
    let e = |r: kiln_frontend::Result<SGD>| r.err().expect("refused").to_string();
    assert_eq!(e(SGD::new(vec![param()], -1.0)), "Invalid learning rate: -1");
    let nesterov = SgdOptions { nesterov: true, ..Default::default() };
    assert!(e(SGD::with_options(vec![param()], nesterov)).contains("Nesterov momentum requires a momentum"));
    assert!(e(SGD::new(vec![], 0.1)).contains("empty parameter list"));
    let non_leaf = &param() * 2.0;
    assert!(e(SGD::new(vec![non_leaf], 0.1)).contains("can't optimize a non-leaf Tensor"));
    let bad_beta = AdamOptions { betas: (1.0, 0.999), ..Default::default() };
    let err = Adam::with_options(vec![param()], bad_beta).err().unwrap().to_string();
    assert_eq!(err, "Invalid beta parameter at index 0: 1");
}
