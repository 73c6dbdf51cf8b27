//! End to end: a DCGAN-shaped composite checked by finite differences, and small networks trained for a few
//! hundred steps by running their step graphs in ONNX Runtime, state fed back output to input.
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::nn::{Binding, Mode, Net, ParamStore};
use onnxgrad::optim::{build_train_step, AdamOptions};
use onnxgrad::{loss, ConvSpec, DType, Graph, Tensor};
use std::collections::HashMap;

const F32: DType = DType::F32;

#[test]
fn composite_conv_bn_leaky_convt_tanh_bce_gradients() -> Result<()> {
    // conv (k4 s2 p1) -> batch norm (batch statistics) -> leaky relu -> conv transpose (k4 s2 p1) -> tanh -> BCE
    // with logits against fixed targets. f32 (ONNX Runtime has no double Conv); the loss is scaled by the element
    // count (a sum instead of a mean) so gradients are O(1) and the bound 2e-3 on the normalised error is tight.
    let mut rng = Rng::new(21);
    let args = [
        arg("x", &[3, 2, 6, 6], rng.vec(216, -1.0, 1.0)),
        arg("w1", &[4, 2, 4, 4], rng.vec(128, -0.5, 0.5)),
        arg("gamma", &[4], rng.vec(4, 0.5, 1.5)),
        arg("beta", &[4], rng.vec(4, -0.5, 0.5)),
        arg("w2", &[4, 1, 4, 4], rng.vec(64, -0.5, 0.5)),
    ];
    let targets = Rng::new(22).vec(108, 0.0, 1.0);
    check_gradients("composite", F32, &args, F32_TOL, |g, v| {
        let h = g.conv(v[0], v[1], None, &ConvSpec::new2d(2, 1))?;
        let rm = g.constant("rm", Tensor::f32(&[4], vec![0.0; 4])?);
        let rv = g.constant("rv", Tensor::f32(&[4], vec![1.0; 4])?);
        let h = g.batch_norm_train(h, v[2], v[3], rm, rv, 1e-5, 0.1)?.y;
        let h = g.leaky_relu(h, 0.2)?;
        let h = g.conv_transpose(h, v[4], None, &ConvSpec::new2d(2, 1))?;
        let logits = g.tanh(h)?;
        let t = g.constant("targets", tensor(F32, &[3, 1, 6, 6], &targets));
        let l = loss::bce_with_logits(g, logits, t)?;
        g.scale(l, 108.0)
    })?;
    Ok(())
}

#[test]
fn bce_with_logits_matches_its_definition_and_gradient() -> Result<()> {
    // Values against -t log(sigmoid(x)) - (1-t) log(1 - sigmoid(x)), including large |x| where the naive form
    // overflows, and the gradient (sigmoid(x) - t) / n, including at x = 0.
    let xs = [-30.0, -2.0, -0.5, 0.0, 0.0, 0.7, 3.0, 40.0];
    let ts = [0.0, 1.0, 0.9, 0.1, 1.0, 0.0, 0.5, 1.0];
    let mut g = Graph::new("bce");
    let x = g.input("x", DType::F64, &[8])?;
    let t = g.input("t", DType::F64, &[8])?;
    let l = loss::bce_with_logits(&mut g, x, t)?;
    let grads = onnxgrad::gradients(&mut g, l, &[x])?;
    g.output(l, "loss")?;
    g.output(grads.get(x).unwrap(), "dx")?;
    let out = run(&mut session(&g)?, &[("x", &tensor(DType::F64, &[8], &xs)), ("t", &tensor(DType::F64, &[8], &ts))])?;
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    // log(sigmoid(x)) = -log(1 + exp(-x)), computed stably with ln_1p on the branch that does not overflow.
    let log_sig = |x: f64| if x >= 0.0 { -(-x).exp().ln_1p() } else { x - x.exp().ln_1p() };
    let want: f64 = xs.iter().zip(&ts).map(|(&x, &t)| -t * log_sig(x) - (1.0 - t) * log_sig(-x)).sum::<f64>() / 8.0;
    let got = values(&out["loss"])[0];
    assert!((got - want).abs() < 1e-12 * want.abs().max(1.0), "{got} vs {want}");
    let dx = values(&out["dx"]);
    for i in 0..8 {
        let want = (sig(xs[i]) - ts[i]) / 8.0;
        assert!((dx[i] - want).abs() < 1e-15, "dx[{i}] = {} vs {want}", dx[i]);
    }
    Ok(())
}

#[test]
fn hinge_losses_match_their_definitions_and_finite_differences() -> Result<()> {
    // D: mean(relu(1 - x)) on real logits, mean(relu(1 + x)) on generated ones; G: -mean(x). Values and exact
    // gradients in f64 (points away from the kinks at +-1), and central differences on random logits.
    let xs = [-3.0, -0.5, 0.2, 0.9, 1.5, 4.0];
    let mut g = Graph::new("hinge");
    let x = g.input("x", DType::F64, &[6])?;
    let real = loss::hinge(&mut g, x, true)?;
    let fake = loss::hinge(&mut g, x, false)?;
    let gen = loss::negated_mean(&mut g, x)?;
    for (l, name) in [(real, "real"), (fake, "fake"), (gen, "gen")] {
        let grads = onnxgrad::gradients(&mut g, l, &[x])?;
        g.output(l, name)?;
        g.output(grads.get(x).unwrap(), &format!("d{name}"))?;
    }
    let out = run(&mut session(&g)?, &[("x", &tensor(DType::F64, &[6], &xs))])?;
    let n = xs.len() as f64;
    type Scalar = fn(f64) -> f64;
    let cases: [(&str, Scalar, Scalar); 3] = [
        ("real", |x| (1.0 - x).max(0.0), |x| if x < 1.0 { -1.0 } else { 0.0 }),
        ("fake", |x| (1.0 + x).max(0.0), |x| if x > -1.0 { 1.0 } else { 0.0 }),
        ("gen", |x| -x, |_| -1.0),
    ];
    for (name, value, slope) in cases {
        let want: f64 = xs.iter().map(|&x| value(x)).sum::<f64>() / n;
        let got = values(&out[name])[0];
        assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
        let dx = values(&out[&format!("d{name}")]);
        for (i, &x) in xs.iter().enumerate() {
            assert!((dx[i] - slope(x) / n).abs() < 1e-15, "{name}: dx[{i}] = {} vs {}", dx[i], slope(x) / n);
        }
    }
    let args = [arg("x", &[2, 5], Rng::new(31).vec(10, -2.5, 2.5))];
    for real in [true, false] {
        check_gradients("hinge", DType::F64, &args, F64_TOL, |g, v| loss::hinge(g, v[0], real))?;
    }
    check_gradients("negated_mean", DType::F64, &args, F64_TOL, |g, v| loss::negated_mean(g, v[0]))?;
    Ok(())
}

fn f32_tensor(shape: &[usize], data: &[f64]) -> Tensor {
    tensor(F32, shape, data)
}

/// The initial values of a step's parameters and buffers, from the store.
fn initial_state(store: &ParamStore) -> HashMap<String, Tensor> {
    store.export().into_iter().map(|(n, (s, d))| (n, Tensor::f32(&s, d).unwrap())).collect()
}

/// Writes a step runner's parameters and buffers back into the store.
fn write_back(store: &mut ParamStore, runner: &StepRunner) -> Result<()> {
    for name in store.names() {
        if let Some(t) = runner.state.get(&name) {
            store.set(&name, values(t).into_iter().map(|v| v as f32).collect())?;
        }
    }
    Ok(())
}

/// 2-16-16-1 classifier with batch norm on the quadrant problem (label = x0 * x1 > 0, not linearly separable).
fn mlp(net: &mut Net, x: onnxgrad::ValueId) -> onnxgrad::Result<onnxgrad::ValueId> {
    let h = net.linear("fc1", x, 16, true)?;
    let h = net.batch_norm("bn1", h)?;
    let h = net.graph().leaky_relu(h, 0.2)?;
    let h = net.linear("fc2", h, 16, true)?;
    let h = net.graph().leaky_relu(h, 0.2)?;
    net.linear("fc3", h, 1, true)
}

#[test]
fn mlp_learns_a_nonlinear_boundary_and_eval_graph_agrees() -> Result<()> {
    let n = 64;
    let mut rng = Rng::new(31);
    let xs = rng.away_from_zero(2 * n, 0.1, 1.0);
    let labels: Vec<f64> = (0..n).map(|i| if xs[2 * i] * xs[2 * i + 1] > 0.0 { 1.0 } else { 0.0 }).collect();

    let mut store = ParamStore::new(7);
    let mut g = Graph::new("mlp_step");
    let x = g.input("x", F32, &[n, 2])?;
    let t = g.input("t", F32, &[n, 1])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    let logits = mlp(&mut net, x)?;
    let params = net.finish().params;
    let l = loss::bce_with_logits(&mut g, logits, t)?;
    let step = build_train_step(&mut g, l, &params, &AdamOptions::adam())?;
    assert_eq!(step.state.iter().filter(|s| s.role == onnxgrad::optim::StateRole::Buffer).count(), 2);
    let others: Vec<&str> = step.other_inputs.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(others, ["x", "t"]);
    let mut runner = StepRunner::new(&g, step, &initial_state(&store))?;
    let data = [("x", f32_tensor(&[n, 2], &xs)), ("t", f32_tensor(&[n, 1], &labels))];
    let h = Hyper { lr: 0.02, ..Hyper::default() };
    let first = runner.run(h, &data)?;
    let mut last = first;
    for _ in 1..300 {
        last = runner.run(h, &data)?;
    }
    eprintln!("mlp: loss {first:.4} -> {last:.4}");
    assert!(first > 0.5, "an untrained classifier is near chance: {first}");
    assert!(last < 0.1 * first, "loss {first} -> {last}");

    // The same store in evaluation mode (running statistics, parameters baked in) classifies the points.
    write_back(&mut store, &runner)?;
    let mut eval = Graph::new("mlp_eval");
    let ex = eval.input("x", F32, &[n, 2])?;
    let mut net = Net::new(&mut eval, &mut store, Mode::Eval, Binding::Constants);
    let logits = mlp(&mut net, ex)?;
    eval.output(logits, "logits")?;
    assert_eq!(eval.inputs().len(), 1);
    let out = run(&mut session(&eval)?, &[("x", &data[0].1)])?;
    let correct = values(&out["logits"]).iter().zip(&labels).filter(|(z, y)| (**z > 0.0) == (**y == 1.0)).count();
    assert!(correct >= 60, "{correct}/64 correct in eval mode");
    Ok(())
}

#[test]
fn tiny_generator_fits_fixed_images() -> Result<()> {
    // DCGAN generator layout at toy size: z [8,4,1,1] -> convT k4 s1 p0 -> BN -> ReLU -> convT k4 s2 p1 -> tanh,
    // producing 8x8 images, trained with MSE to reproduce 8 fixed images (one per latent vector).
    let n = 8;
    let mut rng = Rng::new(41);
    let z = rng.vec(n * 4, -1.0, 1.0);
    let images: Vec<f64> = (0..n * 64)
        .map(|i| {
            let (k, y, x) = (i / 64, (i / 8) % 8, i % 8);
            0.8 * ((x as f64 * 0.7 + k as f64).sin() * (y as f64 * 0.5 - k as f64 * 0.3).cos())
        })
        .collect();
    let mut store = ParamStore::new(9);
    let mut g = Graph::new("gen_step");
    let zi = g.input("z", F32, &[n, 4, 1, 1])?;
    let target = g.input("images", F32, &[n, 1, 8, 8])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    let out = net.scoped("g", |net| {
        let h = net.conv_transpose2d("up1", zi, 16, 4, 1, 0, 0, false)?;
        let h = net.batch_norm("bn1", h)?;
        let h = net.graph().relu(h)?;
        let h = net.conv_transpose2d("up2", h, 1, 4, 2, 1, 0, false)?;
        net.graph().tanh(h)
    })?;
    let io = net.finish();
    assert_eq!(io.param_names, ["g.up1.weight", "g.bn1.weight", "g.bn1.bias", "g.up2.weight"]);
    let l = loss::mse(&mut g, out, target)?;
    let step = build_train_step(&mut g, l, &io.params, &AdamOptions::adamw())?;
    let mut runner = StepRunner::new(&g, step, &initial_state(&store))?;
    let data = [("z", f32_tensor(&[n, 4, 1, 1], &z)), ("images", f32_tensor(&[n, 1, 8, 8], &images))];
    let h = Hyper { lr: 0.01, beta1: 0.5, weight_decay: 1e-4, ..Hyper::default() };
    let first = runner.run(h, &data)?;
    let mut last = first;
    for _ in 1..400 {
        last = runner.run(h, &data)?;
    }
    eprintln!("generator: loss {first:.4} -> {last:.4}");
    assert!(last < 0.1 * first, "loss {first} -> {last}");
    // The running statistics moved away from their initial 0 / 1.
    assert!(values(&runner.state["g.bn1.running_mean"]).iter().any(|v| v.abs() > 1e-3));
    Ok(())
}
