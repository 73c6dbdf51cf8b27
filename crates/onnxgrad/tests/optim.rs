//! Adam and AdamW step graphs against a plain-Rust reference (f32, same formula as `torch.optim.Adam`/`AdamW`),
//! over several steps with changing learning rates, fed back state to state.
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::optim::{build_train_step, AdamOptions, StateRole};
use onnxgrad::{DType, Graph, Tensor};
use std::collections::HashMap;

/// One Adam(W) step on one tensor, written out elementwise.
fn reference_step(p: &mut [f32], m: &mut [f32], v: &mut [f32], grad: &[f32], h: Hyper, t: i32, decoupled: bool) {
    let (lr, b1, b2, eps, wd) = (h.lr as f32, h.beta1 as f32, h.beta2 as f32, h.eps as f32, h.weight_decay as f32);
    let step_size = lr / (1.0 - b1.powi(t));
    let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
    for i in 0..p.len() {
        let g = if decoupled { grad[i] } else { grad[i] + wd * p[i] };
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        let denom = v[i].sqrt() / bc2_sqrt + eps;
        let base = if decoupled { p[i] * (1.0 - lr * wd) } else { p[i] };
        p[i] = base - m[i] / denom * step_size;
    }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    values(t).into_iter().map(|x| x as f32).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, floor: f32) {
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= rel * b.abs().max(floor), "{what}[{i}]: graph {a} vs reference {b}");
    }
}

/// loss = sum(p * C) + sum(q * q) / 2, so dL/dp = C and dL/dq = q.
fn check_against_reference(opts: AdamOptions) -> Result<()> {
    let decoupled = opts.decoupled_weight_decay;
    let mut rng = Rng::new(7);
    let c: Vec<f32> = rng.vec(12, -1.0, 1.0).iter().map(|&x| x as f32).collect();
    let mut g = Graph::new("adam_reference");
    let p = g.input("p", DType::F32, &[3, 4])?;
    let q = g.input("q", DType::F32, &[5])?;
    let cv = g.constant("C", Tensor::f32(&[3, 4], c.clone())?);
    let pc = g.mul(p, cv)?;
    let lin = g.sum_all(pc)?;
    let qq = g.mul(q, q)?;
    let sq = g.sum_all(qq)?;
    let half = g.scale(sq, 0.5)?;
    let loss = g.add(lin, half)?;
    let step = build_train_step(&mut g, loss, &[p, q], &opts)?;

    let names: Vec<(&str, StateRole)> = step.state.iter().map(|s| (s.input.as_str(), s.role)).collect();
    assert_eq!(
        names,
        [
            ("p", StateRole::Parameter),
            ("q", StateRole::Parameter),
            ("p.adam_m", StateRole::FirstMoment),
            ("p.adam_v", StateRole::SecondMoment),
            ("q.adam_m", StateRole::FirstMoment),
            ("q.adam_v", StateRole::SecondMoment)
        ]
    );
    assert!(step.state.iter().all(|s| s.output == format!("{}.new", s.input)));

    let p0: Vec<f32> = rng.vec(12, -1.0, 1.0).iter().map(|&x| x as f32).collect();
    let q0: Vec<f32> = rng.vec(5, -2.0, 2.0).iter().map(|&x| x as f32).collect();
    let initial = HashMap::from([
        ("p".to_string(), Tensor::f32(&[3, 4], p0.clone())?),
        ("q".to_string(), Tensor::f32(&[5], q0.clone())?),
    ]);
    let mut runner = StepRunner::new(&g, step, &initial)?;
    let (mut rp, mut rq) = (p0, q0);
    let (mut pm, mut pv, mut qm, mut qv) = (vec![0.0; 12], vec![0.0; 12], vec![0.0; 5], vec![0.0; 5]);
    for (t, lr) in [0.1, 0.05, 0.02, 0.3].into_iter().enumerate() {
        let h = Hyper { lr, beta1: 0.8, beta2: 0.95, eps: 1e-6, weight_decay: 0.1 };
        let expected_loss: f32 =
            rp.iter().zip(&c).map(|(a, b)| a * b).sum::<f32>() + rq.iter().map(|x| x * x).sum::<f32>() / 2.0;
        let loss = runner.run(h, &[])?;
        assert!(
            (loss as f32 - expected_loss).abs() <= 1e-5 * expected_loss.abs().max(1.0),
            "loss {loss} vs {expected_loss}"
        );
        let grad_q = rq.clone();
        reference_step(&mut rp, &mut pm, &mut pv, &c, h, t as i32 + 1, decoupled);
        reference_step(&mut rq, &mut qm, &mut qv, &grad_q, h, t as i32 + 1, decoupled);
        let s = &runner.state;
        assert_close("p", &f32s(&s["p"]), &rp, 2e-6, 1.0);
        assert_close("q", &f32s(&s["q"]), &rq, 2e-6, 1.0);
        assert_close("p.adam_m", &f32s(&s["p.adam_m"]), &pm, 1e-5, 1e-6);
        assert_close("p.adam_v", &f32s(&s["p.adam_v"]), &pv, 1e-5, 1e-6);
        assert_close("q.adam_m", &f32s(&s["q.adam_m"]), &qm, 1e-5, 1e-6);
        assert_close("q.adam_v", &f32s(&s["q.adam_v"]), &qv, 1e-5, 1e-6);
    }
    Ok(())
}

#[test]
fn adam_steps_match_reference() -> Result<()> {
    check_against_reference(AdamOptions::adam())
}

#[test]
fn adamw_steps_match_reference() -> Result<()> {
    check_against_reference(AdamOptions::adamw())
}

#[test]
fn adam_and_adamw_differ_with_weight_decay() -> Result<()> {
    // Guards against both variants silently computing the same update.
    let mut results = Vec::new();
    for opts in [AdamOptions::adam(), AdamOptions::adamw()] {
        let mut g = Graph::new("wd");
        let p = g.input("p", DType::F32, &[2])?;
        let loss = g.sum_all(p)?;
        let step = build_train_step(&mut g, loss, &[p], &opts)?;
        let initial = HashMap::from([("p".to_string(), Tensor::f32(&[2], vec![1.0, -2.0])?)]);
        let mut runner = StepRunner::new(&g, step, &initial)?;
        runner.run(Hyper { lr: 0.1, weight_decay: 0.5, ..Hyper::default() }, &[])?;
        results.push(f32s(&runner.state["p"]));
    }
    // Adam: g = 1 + 0.5 p. At p = 1, g = 1.5 and a first step moves by lr (bias-corrected m / sqrt(v) = 1):
    // 0.9. At p = -2, g = 0: no move. AdamW: g = 1, p (1 - lr wd) - lr = [0.85, -2.0].
    assert_close("adam", &results[0], &[0.9, -2.0], 1e-5, 1.0);
    assert_close("adamw", &results[1], &[0.85, -2.0], 1e-5, 1.0);
    Ok(())
}

#[test]
fn gradients_can_be_output_and_params_must_be_inputs() -> Result<()> {
    let mut g = Graph::new("grads_out");
    let p = g.input("p", DType::F32, &[3])?;
    let sq = g.mul(p, p)?;
    let loss = g.sum_all(sq)?;
    let opts = AdamOptions { output_gradients: true, ..AdamOptions::adam() };
    let step = build_train_step(&mut g, loss, &[p], &opts)?;
    assert_eq!(step.gradients, [("p".to_string(), "p.grad".to_string())]);
    assert!(step.other_inputs.is_empty());
    let model = onnxgrad::decode_model(&g.to_onnx_bytes())?;
    let outputs: Vec<String> = model.graph.unwrap().output.iter().map(|o| o.name.clone()).collect();
    assert_eq!(outputs, ["loss", "p.new", "p.adam_m.new", "p.adam_v.new", "p.grad"]);

    let mut g = Graph::new("not_input");
    let x = g.input("x", DType::F32, &[3])?;
    let p = g.tanh(x)?;
    let loss = g.sum_all(p)?;
    assert!(build_train_step(&mut g, loss, &[p], &AdamOptions::adam()).is_err());
    Ok(())
}

#[test]
fn ema_of_the_parameters_follows_its_formula_over_adam_steps() -> Result<()> {
    use onnxgrad::ema::{append_ema, warmed_up_decay, EMA_DECAY};
    // loss = sum(w * w) / 2 + sum(b): both parameters move every step, and only `w.*` is averaged.
    let mut g = Graph::new("ema");
    let w = g.input("w.weight", DType::F32, &[4])?;
    let b = g.input("b.bias", DType::F32, &[2])?;
    let ww = g.mul(w, w)?;
    let sq = g.sum_all(ww)?;
    let half = g.scale(sq, 0.5)?;
    let sb = g.sum_all(b)?;
    let loss = g.add(half, sb)?;
    let mut step = build_train_step(&mut g, loss, &[w, b], &AdamOptions::adam())?;
    let slots = append_ema(&mut g, &step, "w.")?;
    assert_eq!(slots.iter().map(|s| s.input.as_str()).collect::<Vec<_>>(), ["ema.w.weight"]);
    assert!(slots.iter().all(|s| s.role == StateRole::Average && s.output == "ema.w.weight.new"));
    step.state.extend(slots);
    let w0 = vec![1.0f32, -0.5, 2.0, 0.25];
    let initial = HashMap::from([
        ("w.weight".to_string(), Tensor::f32(&[4], w0.clone())?),
        ("b.bias".to_string(), Tensor::f32(&[2], vec![0.0, 1.0])?),
        ("ema.w.weight".to_string(), Tensor::f32(&[4], w0.clone())?),
    ]);
    let mut runner = StepRunner::new(&g, step, &initial)?;
    let mut ema = w0;
    for t in 1..=5u64 {
        let decay = warmed_up_decay(0.99, t) as f32;
        runner.run(Hyper { lr: 0.1, ..Hyper::default() }, &[(EMA_DECAY, Tensor::f32(&[], vec![decay])?)])?;
        let w_new = f32s(&runner.state["w.weight"]);
        for (e, p) in ema.iter_mut().zip(&w_new) {
            *e = decay * *e + (1.0 - decay) * p;
        }
        assert_close("ema.w.weight", &f32s(&runner.state["ema.w.weight"]), &ema, 1e-6, 1.0);
        // The average lags the parameters: after a move it differs from them.
        assert!(ema.iter().zip(&w_new).any(|(e, p)| (e - p).abs() > 1e-3), "step {t}: average equals the weights");
    }
    Ok(())
}

#[test]
fn ema_needs_parameters_with_the_prefix() -> Result<()> {
    let mut g = Graph::new("ema_none");
    let p = g.input("p", DType::F32, &[2])?;
    let loss = g.sum_all(p)?;
    let step = build_train_step(&mut g, loss, &[p], &AdamOptions::adam())?;
    let err = onnxgrad::ema::append_ema(&mut g, &step, "g.").unwrap_err().to_string();
    assert!(err.contains("no parameters named g.*"), "{err}");
    Ok(())
}
