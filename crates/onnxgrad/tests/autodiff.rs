//! Autodiff behaviour: fan-out accumulation, frozen parameters, stop-gradient, gradients of intermediate values,
//! and the errors for impossible requests. Gradients are compared with closed forms (exact up to f64 rounding)
//! or with finite differences through ONNX Runtime (bound 1e-6 on the normalised error, f64).
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::{gradients, ConvSpec, DType, Graph, Op, Tensor};

const F64: DType = DType::F64;

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * 1f64.max(y.abs()))
}

#[test]
fn fan_out_contributions_are_summed() -> Result<()> {
    // f = sum(x*x + x): df/dx = 2x + 1, from three uses of x.
    let xs = Rng::new(1).vec(6, -1.0, 1.0);
    let mut g = Graph::new("fan_out");
    let x = g.input("x", F64, &[2, 3])?;
    let sq = g.mul(x, x)?;
    let y = g.add(sq, x)?;
    let f = g.sum_all(y)?;
    let grads = gradients(&mut g, f, &[x])?;
    let dx = grads.get(x).unwrap();
    assert_eq!(g.value_name(dx), "x.grad");
    assert_eq!(g.producer(dx).unwrap().op, Op::Sum, "three contributions, one Sum node");
    g.output(dx, "dx")?;
    let out = run(&mut session(&g)?, &[("x", &tensor(F64, &[2, 3], &xs))])?;
    let expected: Vec<f64> = xs.iter().map(|x| 2.0 * x + 1.0).collect();
    assert!(close(&values(&out["dx"]), &expected, 1e-12), "{:?} vs {expected:?}", values(&out["dx"]));
    Ok(())
}

#[test]
fn a_value_feeding_two_branches() -> Result<()> {
    // h = tanh(x) feeds both a sigmoid branch and a product with itself; checked by finite differences.
    let args = [arg("x", &[3, 4], Rng::new(2).vec(12, -1.0, 1.0))];
    check_gradients("two_branches", F64, &args, F64_TOL, |g, v| {
        let h = g.tanh(v[0])?;
        let s = g.sigmoid(h)?;
        let p = g.mul(h, s)?;
        let e = g.exp(h)?;
        g.add(p, e)
    })?;
    Ok(())
}

#[test]
fn frozen_parameters_pass_gradient_through_but_get_none() -> Result<()> {
    // A "generator" parameter a scales z into x; a frozen "discriminator" conv weight w consumes x.
    let mut g = Graph::new("frozen");
    let a = g.input("g.a", DType::F32, &[1])?;
    let z = g.input("z", DType::F32, &[2, 3, 5, 5])?;
    let w = g.input("d.w", DType::F32, &[4, 3, 3, 3])?;
    let x = g.mul(z, a)?;
    let y = g.conv(x, w, None, &ConvSpec::new2d(1, 1))?;
    let f = g.sum_all(y)?;
    let convs_before = g.nodes().iter().filter(|n| matches!(n.op, Op::Conv(_))).count();
    let grads = gradients(&mut g, f, &[a])?;
    assert!(grads.get(w).is_none());
    let convs_after = g.nodes().iter().filter(|n| matches!(n.op, Op::Conv(_))).count();
    assert_eq!(convs_before, convs_after, "no weight-gradient convolution is emitted for the frozen weight");
    assert!(g.find("d.w.grad").is_none());
    let da = grads.get(a).unwrap();
    g.output(da, "da")?;

    // df/da = sum over (n, m, oy, ox) of sum_{c,i,j} w[m,c,i,j] z[n, c, oy+i-1, ox+j-1]: brute force.
    let mut rng = Rng::new(3);
    let zs = rng.vec(150, -1.0, 1.0);
    let ws = rng.vec(108, -1.0, 1.0);
    let mut expected = 0.0;
    for n in 0..2 {
        for m in 0..4 {
            for oy in 0..5i64 {
                for ox in 0..5i64 {
                    for c in 0..3 {
                        for i in 0..3i64 {
                            for j in 0..3i64 {
                                let (iy, ix) = (oy + i - 1, ox + j - 1);
                                if (0..5).contains(&iy) && (0..5).contains(&ix) {
                                    let zi = ((n * 3 + c) * 5 + iy as usize) * 5 + ix as usize;
                                    let wi = ((m * 3 + c) * 3 + i as usize) * 3 + j as usize;
                                    expected += ws[wi] * zs[zi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let feeds = [
        ("g.a", tensor(DType::F32, &[1], &[0.7])),
        ("z", tensor(DType::F32, &[2, 3, 5, 5], &zs)),
        ("d.w", tensor(DType::F32, &[4, 3, 3, 3], &ws)),
    ];
    let out = run(&mut session(&g)?, &feeds.iter().map(|(n, t)| (*n, t)).collect::<Vec<_>>())?;
    let got = values(&out["da"])[0];
    assert!((got - expected).abs() <= 1e-4 * expected.abs().max(1.0), "{got} vs {expected}");
    Ok(())
}

#[test]
fn stop_gradient_blocks_one_path() -> Result<()> {
    // f = sum(x * stop(x)): df/dx = x (the stopped factor counts as a constant), not 2x.
    let xs = Rng::new(4).vec(5, -1.0, 1.0);
    let mut g = Graph::new("stop_gradient");
    let x = g.input("x", F64, &[5])?;
    let c = g.stop_gradient(x)?;
    let p = g.mul(x, c)?;
    let f = g.sum_all(p)?;
    let grads = gradients(&mut g, f, &[x])?;
    g.output(grads.get(x).unwrap(), "dx")?;
    let out = run(&mut session(&g)?, &[("x", &tensor(F64, &[5], &xs))])?;
    assert!(close(&values(&out["dx"]), &xs, 1e-12));
    Ok(())
}

#[test]
fn gradient_of_an_intermediate_value() -> Result<()> {
    // f = sum(tanh(h)), h = 3x: df/dh = 1 - tanh(h)^2, and df/dx = 3 (1 - tanh(h)^2) alongside.
    let xs = Rng::new(5).vec(4, -1.0, 1.0);
    let mut g = Graph::new("intermediate");
    let x = g.input("x", F64, &[4])?;
    let h = g.scale(x, 3.0)?;
    let t = g.tanh(h)?;
    let f = g.sum_all(t)?;
    let grads = gradients(&mut g, f, &[h, x])?;
    g.output(grads.get(h).unwrap(), "dh")?;
    g.output(grads.get(x).unwrap(), "dx")?;
    let out = run(&mut session(&g)?, &[("x", &tensor(F64, &[4], &xs))])?;
    let dh: Vec<f64> = xs.iter().map(|x| 1.0 - (3.0 * x).tanh().powi(2)).collect();
    let dx: Vec<f64> = dh.iter().map(|d| 3.0 * d).collect();
    assert!(close(&values(&out["dh"]), &dh, 1e-12));
    assert!(close(&values(&out["dx"]), &dx, 1e-12));
    Ok(())
}

#[test]
fn unrelated_values_get_no_gradient_and_bad_requests_are_errors() -> Result<()> {
    let mut g = Graph::new("errors");
    let x = g.input("x", F64, &[3])?;
    let unused = g.input("unused", F64, &[3])?;
    let y = g.tanh(x)?;
    let f = g.sum_all(y)?;
    let grads = gradients(&mut g, f, &[x, unused])?;
    assert!(grads.get(unused).is_none());
    assert_eq!(grads.iter().count(), 1);
    // A non-scalar loss, and a non-float value to differentiate.
    assert!(matches!(gradients(&mut g, y, &[x]), Err(onnxgrad::Error::Autodiff(_))));
    let i = g.input("i", DType::I64, &[3])?;
    assert!(matches!(gradients(&mut g, f, &[i]), Err(onnxgrad::Error::Autodiff(_))));
    Ok(())
}

#[test]
fn comparisons_end_gradient_paths() -> Result<()> {
    // where(x > 0, x, 0) is ReLU: the condition's comparison contributes nothing, the selected branch does.
    let xs = vec![0.5, -0.3, 1.2, -2.0];
    let mut g = Graph::new("where_relu");
    let x = g.input("x", F64, &[4])?;
    let zero = g.scalar(F64, 0.0);
    let pos = g.greater(x, zero)?;
    let zeros = g.constant("zeros", Tensor::f64(&[4], vec![0.0; 4])?);
    let r = g.where_(pos, x, zeros)?;
    let f = g.sum_all(r)?;
    let grads = gradients(&mut g, f, &[x])?;
    g.output(grads.get(x).unwrap(), "dx")?;
    let out = run(&mut session(&g)?, &[("x", &tensor(F64, &[4], &xs))])?;
    assert_eq!(values(&out["dx"]), vec![1.0, 0.0, 1.0, 0.0]);
    Ok(())
}

#[test]
fn the_finite_difference_check_can_fail() {
    // At x = 0 ReLU's rule gives 0 while the central difference sees slope 1/2: the harness must report it,
    // which shows the gradient checks in these tests are not vacuous.
    let args = [arg("x", &[4], vec![0.0; 4])];
    let result = check_gradients("relu_at_kink", F64, &args, F64_TOL, |g, v| g.relu(v[0]));
    let message = result.expect_err("a wrong gradient must be caught").to_string();
    assert!(message.contains("normalised error"), "{message}");
}
