//! Spectral normalisation: its gradient by finite differences, its power iteration against matrices whose largest
//! singular value is known, and how a `Net` carries its vector (one iteration per weight value, one update).
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::nn::{Binding, Mode, Net, ParamStore};
use onnxgrad::{DType, Graph, Tensor};

/// The top left singular vector of the `[rows, cols]` matrix `w` by 500 power iterations in f64 (plain Rust).
fn top_left_singular_vector(w: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut u = vec![1.0; rows];
    for _ in 0..500 {
        let v: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| w[i * cols + j] * u[i]).sum()).collect();
        let wv: Vec<f64> = (0..rows).map(|i| (0..cols).map(|j| w[i * cols + j] * v[j]).sum()).collect();
        let norm = wv.iter().map(|x| x * x).sum::<f64>().sqrt();
        u = wv.iter().map(|x| x / norm).collect();
    }
    u
}

#[test]
fn spectral_norm_gradient_matches_finite_differences_at_the_power_iterations_fixed_point() -> Result<()> {
    // The gradient treats u and v as constants (as PyTorch does); it is the derivative of w / sigma(w) exactly when
    // u is the top singular vector, where sigma = u^T W v is stationary in u and v. So the check starts there.
    let mut rng = Rng::new(5);
    let (rows, cols) = (4, 2 * 3 * 3);
    let w = rng.vec(rows * cols, -1.0, 1.0);
    let u = top_left_singular_vector(&w, rows, cols);
    check_gradients("spectral_norm", DType::F64, &[arg("w", &[rows, 2, 3, 3], w)], F64_TOL, |g, v| {
        let u = g.constant("u", tensor(DType::F64, &[rows], &u));
        Ok(g.spectral_norm(v[0], u)?.weight)
    })?;
    Ok(())
}

#[test]
fn repeated_power_iterations_converge_to_the_known_largest_singular_value() -> Result<()> {
    // [[0, 5, 0], [2, 0, 0], [0, 0, 1], [0, 0, 0]]: singular values 5, 2, 1 (a permuted diagonal). Each iteration
    // shrinks the error by (2/5)^2, so 20 fed-back iterations from an arbitrary u are exact to f32 precision.
    let w = [0.0, 5.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    let mut g = Graph::new("power_iteration");
    let wv = g.input("w", DType::F32, &[4, 3])?;
    let uv = g.input("u", DType::F32, &[4])?;
    let sn = g.spectral_norm(wv, uv)?;
    g.output(sn.sigma, "sigma")?;
    g.output(sn.u, "u_next")?;
    g.output(sn.weight, "normalised")?;
    let mut session = session(&g)?;
    let w = tensor(DType::F32, &[4, 3], &w);
    let mut u = tensor(DType::F32, &[4], &[0.3, 0.2, -0.4, 0.7]);
    let mut sigmas = Vec::new();
    let mut last = Default::default();
    for _ in 0..20 {
        let out = run(&mut session, &[("w", &w), ("u", &u)])?;
        sigmas.push(values(&out["sigma"])[0]);
        u = out["u_next"].clone();
        last = out;
    }
    assert!(sigmas[0] < 4.9, "one iteration from an arbitrary u underestimates: {}", sigmas[0]);
    assert!(sigmas.windows(2).all(|p| p[1] >= p[0] - 1e-5), "the estimate never decreases: {sigmas:?}");
    assert!((sigmas[19] - 5.0).abs() < 1e-4, "sigma {} after 20 iterations", sigmas[19]);
    // The normalised weight has largest singular value 1: here, the 5 becomes 1 and the 2 becomes 0.4.
    let normalised = values(&last["normalised"]);
    assert!((normalised[1] - 1.0).abs() < 1e-4 && (normalised[3] - 0.4).abs() < 1e-4, "{normalised:?}");
    // u converges to the left singular vector of 5, e_0, up to sign.
    let u = values(&u);
    assert!((u[0].abs() - 1.0).abs() < 1e-4, "{u:?}");
    Ok(())
}

fn spectral_conv(net: &mut Net, x: onnxgrad::ValueId) -> onnxgrad::Result<onnxgrad::ValueId> {
    net.scoped("d", |n| n.conv2d("conv1", x, 3, 3, 1, 1, false))
}

#[test]
fn a_net_runs_one_power_iteration_per_weight_and_registers_one_update() -> Result<()> {
    let mut store = ParamStore::new(1);
    let mut g = Graph::new("sn_net");
    let x = g.input("x", DType::F32, &[2, 2, 5, 5])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    net.set_spectral_norm(true);
    let a = spectral_conv(&mut net, x)?;
    let b = spectral_conv(&mut net, x)?;
    let io = net.finish();
    assert_eq!(io.buffers, ["d.conv1.weight_u"], "the vector is carried state");
    assert_eq!(io.param_names, ["d.conv1.weight"], "the vector is not trained");
    assert_eq!(g.state_updates().len(), 1);
    let u = g.find("d.conv1.weight_u").expect("a graph input");
    assert_eq!(g.shape(u), [3], "one entry per output channel");
    // Two applications share the normalised weight, so their outputs are the same value's consumers.
    let count = |g: &Graph, op: &str| g.nodes().iter().filter(|n| n.op.onnx_type() == op).count();
    assert_eq!(count(&g, "Div"), 3, "one normalisation: v, u' and w / sigma");
    g.output(a, "a")?;
    g.output(b, "b")?;
    for (input, new) in g.state_updates().to_vec() {
        let name = format!("{}.new", g.value_name(input));
        g.output(new, &name)?;
    }

    // Read-only (another graph owns the vector): the same normalisation, no update.
    let mut store2 = store.clone();
    let mut h = Graph::new("sn_frozen");
    let x = h.input("x", DType::F32, &[2, 2, 5, 5])?;
    let mut net = Net::new(&mut h, &mut store2, Mode::Train, Binding::Inputs);
    net.set_spectral_norm(true);
    net.set_power_iteration_updates(false);
    spectral_conv(&mut net, x)?;
    assert!(net.finish().buffers.is_empty());
    assert!(h.state_updates().is_empty());

    // Without spectral norm the layer has no vector at all.
    let mut plain = Graph::new("plain");
    let x = plain.input("x", DType::F32, &[2, 2, 5, 5])?;
    let mut store3 = ParamStore::new(1);
    let mut net = Net::new(&mut plain, &mut store3, Mode::Train, Binding::Inputs);
    spectral_conv(&mut net, x)?;
    assert!(plain.find("d.conv1.weight_u").is_none() && store3.get("d.conv1.weight_u").is_none());

    // The normalised kernel has spectral norm ~1 after its vector converges: feed the update back.
    let mut s = session(&g)?;
    let xv = tensor(DType::F32, &[2, 2, 5, 5], &Rng::new(3).vec(100, -1.0, 1.0));
    let w = store.get("d.conv1.weight").unwrap();
    let wt = Tensor::f32(&w.shape, w.data.clone())?;
    let mut uv = Tensor::f32(&[3], store.get("d.conv1.weight_u").unwrap().data.clone())?;
    let mut outputs = Default::default();
    for _ in 0..30 {
        let out = run(&mut s, &[("x", &xv), ("d.conv1.weight", &wt), ("d.conv1.weight_u", &uv)])?;
        uv = out["d.conv1.weight_u.new"].clone();
        outputs = out;
    }
    let (a, b) = (values(&outputs["a"]), values(&outputs["b"]));
    assert_eq!(a, b);
    let wd: Vec<f64> = w.data.iter().map(|&x| x as f64).collect();
    let top = top_left_singular_vector(&wd, 3, 18);
    let u: Vec<f64> = values(&uv);
    let dot: f64 = u.iter().zip(&top).map(|(a, b)| a * b).sum();
    assert!((dot.abs() - 1.0).abs() < 1e-3, "u {u:?} vs the top singular vector {top:?}");
    Ok(())
}
