//! Parameter store and layers: seeded, order-independent initialisation; checkpoints; training and inference
//! graphs from one store; running statistics updated once per batch-norm call.
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::nn::{Binding, Init, Mode, Net, ParamKind, ParamStore};
use onnxgrad::{DType, Graph, Source, Tensor};

fn build_layers(store: &mut ParamStore, order_reversed: bool) -> Result<()> {
    let mut g = Graph::new("layers");
    let x = g.input("x", DType::F32, &[2, 3, 8, 8])?;
    let mut net = Net::new(&mut g, store, Mode::Train, Binding::Inputs);
    if order_reversed {
        net.tensor("extra", &[4], ParamKind::Trainable, Init::Normal { mean: 0.0, std: 1.0 })?;
    }
    net.scoped("d", |n| {
        let h = n.conv2d("conv1", x, 4, 4, 2, 1, false)?;
        n.batch_norm("bn1", h)
    })?;
    if !order_reversed {
        net.tensor("extra", &[4], ParamKind::Trainable, Init::Normal { mean: 0.0, std: 1.0 })?;
    }
    Ok(())
}

#[test]
fn initialisation_is_seeded_and_independent_of_creation_order() -> Result<()> {
    let (mut a, mut b, mut c) = (ParamStore::new(1), ParamStore::new(1), ParamStore::new(2));
    build_layers(&mut a, false)?;
    build_layers(&mut b, true)?;
    build_layers(&mut c, false)?;
    assert_eq!(a.export(), b.export());
    assert_ne!(a.get("d.conv1.weight"), c.get("d.conv1.weight"));
    assert_eq!(
        a.names(),
        ["d.bn1.bias", "d.bn1.running_mean", "d.bn1.running_var", "d.bn1.weight", "d.conv1.weight", "extra"]
    );
    assert_eq!(a.trainable_names(), ["d.bn1.bias", "d.bn1.weight", "d.conv1.weight", "extra"]);
    assert_eq!(a.kind("d.bn1.running_var"), Some(ParamKind::Buffer));
    Ok(())
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn dcgan_initial_distributions() -> Result<()> {
    let mut store = ParamStore::new(3);
    let mut g = Graph::new("init");
    let x = g.input("x", DType::F32, &[2, 64, 4, 4])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    let h = net.conv_transpose2d("up", x, 128, 4, 2, 1, 0, false)?;
    net.batch_norm("bn", h)?;
    // 131072 weights: the sample mean and std of N(0, 0.02) are within 1e-3 of 0 and 0.02 (5 sigma: 2.8e-4).
    let (m, s) = mean_std(&store.get("up.weight").unwrap().data);
    assert!(m.abs() < 1e-3 && (s - 0.02).abs() < 1e-3, "weight mean {m} std {s}");
    let (m, _) = mean_std(&store.get("bn.weight").unwrap().data);
    assert!((m - 1.0).abs() < 0.01, "bn scale mean {m}");
    assert!(store.get("bn.bias").unwrap().data.iter().all(|&v| v == 0.0));
    assert!(store.get("bn.running_mean").unwrap().data.iter().all(|&v| v == 0.0));
    assert!(store.get("bn.running_var").unwrap().data.iter().all(|&v| v == 1.0));
    Ok(())
}

#[test]
fn checkpoint_round_trip_and_shape_checks() -> Result<()> {
    let mut a = ParamStore::new(5);
    build_layers(&mut a, false)?;
    let mut saved = a.export();
    saved.get_mut("extra").unwrap().1 = vec![1.0, 2.0, 3.0, 4.0];
    let mut b = ParamStore::new(999);
    b.import(saved.clone())?;
    build_layers(&mut b, false)?; // finds every tensor, initialises none
    assert_eq!(b.export(), saved);
    assert_eq!(b.kind("d.bn1.running_mean"), Some(ParamKind::Buffer), "the layer claims imported buffers");

    let mut wrong = saved.clone();
    wrong.insert("extra".into(), (vec![2, 2, 1], vec![0.0; 4]));
    assert!(a.import(wrong).is_err(), "shape mismatch with the model");
    let mut bad = saved;
    bad.insert("extra".into(), (vec![4], vec![0.0; 3]));
    assert!(ParamStore::new(0).import(bad).is_err(), "data does not fill the shape");
    assert!(a.set("extra", vec![0.0; 5]).is_err());
    Ok(())
}

#[test]
fn inference_graph_bakes_parameters_and_uses_running_statistics() -> Result<()> {
    let mut store = ParamStore::new(11);
    build_layers(&mut store, false)?;
    store.set("d.bn1.running_mean", vec![0.5, -0.5, 1.0, 0.0])?;
    store.set("d.bn1.running_var", vec![4.0, 1.0, 0.25, 1.0])?;
    let mut g = Graph::new("eval");
    let x = g.input("x", DType::F32, &[2, 3, 8, 8])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Eval, Binding::Constants);
    let y = net.scoped("d", |n| {
        let h = n.conv2d("conv1", x, 4, 4, 2, 1, false)?;
        n.batch_norm("bn1", h)
    })?;
    let dropped = net.dropout("drop", y, 0.5)?;
    assert_eq!(dropped, y, "dropout is the identity in eval mode");
    assert!(net.finish().masks.is_empty());
    g.output(y, "y")?;
    assert_eq!(g.inputs().len(), 1, "only the image is an input");
    let w = g.find("d.conv1.weight").unwrap();
    assert!(matches!(g.value(w).source, Source::Initializer(_)));

    // Reference: the same conv via a plain graph, then (h - mean) / sqrt(var + eps) * scale + bias by hand.
    let xs = Rng::new(12).vec(384, -1.0, 1.0);
    let out = run(&mut session(&g)?, &[("x", &tensor(DType::F32, &[2, 3, 8, 8], &xs))])?;
    let mut r = Graph::new("conv_only");
    let rx = r.input("x", DType::F32, &[2, 3, 8, 8])?;
    let rw = r.constant("w", Tensor::f32(&[4, 3, 4, 4], store.get("d.conv1.weight").unwrap().data.clone())?);
    let h = r.conv(rx, rw, None, &onnxgrad::ConvSpec::new2d(2, 1))?;
    r.output(h, "h")?;
    let h = values(&run(&mut session(&r)?, &[("x", &tensor(DType::F32, &[2, 3, 8, 8], &xs))])?["h"]);
    let (scale, bias) = (&store.get("d.bn1.weight").unwrap().data, &store.get("d.bn1.bias").unwrap().data);
    let (mean, var): ([f64; 4], [f64; 4]) = ([0.5, -0.5, 1.0, 0.0], [4.0, 1.0, 0.25, 1.0]);
    let got = values(&out["y"]);
    for (i, &hv) in h.iter().enumerate() {
        let c = (i / 16) % 4;
        let want = (hv - mean[c]) / (var[c] + 1e-5).sqrt() * scale[c] as f64 + bias[c] as f64;
        assert!((got[i] - want).abs() < 1e-5, "{i}: {} vs {want}", got[i]);
    }
    Ok(())
}

#[test]
fn running_statistics_chain_through_repeated_use() -> Result<()> {
    // The same batch norm applied to two batches in one graph (a discriminator on real, then fake, images):
    // the state output is the running mean after both updates, r = 0.9 (0.9 r0 + 0.1 m1) + 0.1 m2.
    let mut store = ParamStore::new(13);
    let mut g = Graph::new("twice");
    let a = g.input("a", DType::F32, &[4, 2])?;
    let b = g.input("b", DType::F32, &[4, 2])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    let ya = net.batch_norm("bn", a)?;
    let yb = net.batch_norm("bn", b)?;
    let io = net.finish();
    assert_eq!(io.buffers, ["bn.running_mean", "bn.running_var"]);
    assert_eq!(io.param_names, ["bn.weight", "bn.bias"], "shared parameters are bound once");
    let updates = g.state_updates().to_vec();
    assert_eq!(updates.len(), 2);
    g.output(ya, "ya")?;
    g.output(yb, "yb")?;
    for (input, new) in updates {
        let name = format!("{}.new", g.value_name(input));
        g.output(new, &name)?;
    }
    let av = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
    let bv = [-1.0, 0.0, -2.0, 0.0, -3.0, 0.0, -6.0, 4.0];
    let feeds = [
        ("a", tensor(DType::F32, &[4, 2], &av)),
        ("b", tensor(DType::F32, &[4, 2], &bv)),
        ("bn.weight", tensor(DType::F32, &[2], &[1.0, 1.0])),
        ("bn.bias", tensor(DType::F32, &[2], &[0.0, 0.0])),
        ("bn.running_mean", tensor(DType::F32, &[2], &[1.0, 2.0])),
        ("bn.running_var", tensor(DType::F32, &[2], &[1.0, 1.0])),
    ];
    let out = run(&mut session(&g)?, &feeds.iter().map(|(n, t)| (*n, t)).collect::<Vec<_>>())?;
    // Batch means: a = (2.5, 25), b = (-3, 1). Unbiased variances: a = (5/3, 500/3), b = (14/3, 4).
    let rm = values(&out["bn.running_mean.new"]);
    let want_rm = [0.9 * (0.9 * 1.0 + 0.1 * 2.5) + 0.1 * -3.0, 0.9 * (0.9 * 2.0 + 0.1 * 25.0) + 0.1 * 1.0];
    let rv = values(&out["bn.running_var.new"]);
    let want_rv = [0.9 * (0.9 + 0.1 * 5.0 / 3.0) + 0.1 * 14.0 / 3.0, 0.9 * (0.9 + 0.1 * 500.0 / 3.0) + 0.1 * 4.0];
    for k in 0..2 {
        assert!((rm[k] - want_rm[k]).abs() < 1e-5, "running mean {rm:?} vs {want_rm:?}");
        assert!((rv[k] - want_rv[k]).abs() < 1e-4, "running var {rv:?} vs {want_rv:?}");
    }
    // Each batch is normalised with its own statistics: column means of the outputs are 0.
    for y in ["ya", "yb"] {
        let v = values(&out[y]);
        for col in 0..2 {
            let m: f64 = (0..4).map(|r| v[r * 2 + col]).sum::<f64>() / 4.0;
            assert!(m.abs() < 1e-5, "{y} column {col} mean {m}");
        }
    }
    Ok(())
}

#[test]
fn dropout_masks_are_inputs_in_training_mode() -> Result<()> {
    let mut store = ParamStore::new(0);
    let mut g = Graph::new("dropout");
    let x = g.input("x", DType::F32, &[2, 3])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    let y = net.scoped("d", |n| n.dropout("drop1", x, 0.25))?;
    assert_eq!(net.finish().masks, [("d.drop1.mask".to_string(), vec![2, 3])]);
    g.output(y, "y")?;
    let mask = tensor(DType::F32, &[2, 3], &[1.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
    let xv = tensor(DType::F32, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let out = run(&mut session(&g)?, &[("x", &xv), ("d.drop1.mask", &mask)])?;
    let want: Vec<f64> = [1.0, 0.0, 3.0, 4.0, 5.0, 0.0].iter().map(|v| v / 0.75).collect();
    assert!(values(&out["y"]).iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    Ok(())
}
