//! Hand-written backward rules of composites (training-mode batch norm): finite-difference checks in f64, and the
//! same gradients as differentiating the primitives ([`Graph::set_primitive_backward`]) with fewer nodes.
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::{gradients, DType, Graph, Tensor};

const F64: DType = DType::F64;

fn rand(seed: u64, n: usize) -> Vec<f64> {
    Rng::new(seed).vec(n, -1.0, 1.0)
}

#[test]
fn fused_batch_norm_gradient_matches_finite_differences() -> Result<()> {
    let (x, c) = ([3, 4, 3, 2], 4);
    let args = [arg("x", &x, rand(1, 72)), arg("scale", &[c], rand(2, c)), arg("bias", &[c], rand(3, c))];
    check_gradients("batch_norm_fused", F64, &args, F64_TOL, |g, v| {
        Ok(g.batch_norm_batch_stats(v[0], v[1], v[2], 1e-5)?.0)
    })?;
    // With running statistics (their updates carry no gradient) and a nonlinearity after.
    let args = [arg("x", &[4, 3, 2], rand(4, 24)), arg("scale", &[3], rand(5, 3)), arg("bias", &[3], rand(6, 3))];
    check_gradients("batch_norm_train_fused", F64, &args, F64_TOL, |g, v| {
        let rm = g.constant("rm", Tensor::f64(&[3], vec![0.0; 3])?);
        let rv = g.constant("rv", Tensor::f64(&[3], vec![1.0; 3])?);
        let bn = g.batch_norm_train(v[0], v[1], v[2], rm, rv, 1e-5, 0.1)?;
        g.tanh(bn.y)
    })?;
    Ok(())
}

/// Builds `sum(tanh(bn(x)) * r)` and its gradients, fused or primitive; returns (gradients, node count).
fn grads(primitive: bool) -> Result<(Vec<Vec<f64>>, usize)> {
    let mut g = Graph::new("bn");
    g.set_primitive_backward(primitive);
    let x = g.input("x", F64, &[5, 3, 4, 4])?;
    let s = g.input("s", F64, &[3])?;
    let b = g.input("b", F64, &[3])?;
    let (y, _, _) = g.batch_norm_batch_stats(x, s, b, 1e-5)?;
    let t = g.tanh(y)?;
    let r = g.constant("r", tensor(F64, &[5, 3, 4, 4], &rand(7, 240)));
    let w = g.mul(t, r)?;
    let f = g.sum_all(w)?;
    g.output(f, "f")?;
    let before = g.nodes().len();
    let gr = gradients(&mut g, f, &[x, s, b])?;
    for (name, v) in [("x", x), ("s", s), ("b", b)] {
        g.output(gr.get(v).unwrap(), &format!("{name}.grad"))?;
    }
    let backward_nodes = g.nodes().len() - before;
    let tx = tensor(F64, &[5, 3, 4, 4], &rand(8, 240));
    let ts = tensor(F64, &[3], &rand(9, 3));
    let tb = tensor(F64, &[3], &rand(10, 3));
    let out = run(&mut session(&g)?, &[("x", &tx), ("s", &ts), ("b", &tb)])?;
    Ok((["x", "s", "b"].iter().map(|n| values(&out[&format!("{n}.grad")])).collect(), backward_nodes))
}

#[test]
fn fused_batch_norm_backward_equals_primitive_backward_with_fewer_nodes() -> Result<()> {
    let (fused, n_fused) = grads(false)?;
    let (prim, n_prim) = grads(true)?;
    for (a, b) in fused.iter().zip(&prim) {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-12, "fused vs primitive gradients differ by {worst:e}");
    }
    eprintln!("backward nodes: fused {n_fused}, primitive {n_prim}");
    assert!(n_fused < n_prim, "fused {n_fused} nodes, primitive {n_prim}");
    Ok(())
}
