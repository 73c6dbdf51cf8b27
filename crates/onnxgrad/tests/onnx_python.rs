//! The serialised models pass `onnx.checker.check_model(m, full_check=True)` (which includes strict shape
//! inference against the shapes this crate declares) and run in Python's onnxruntime with the same results as
//! in Rust. Needs python3 with onnx, onnxruntime and numpy: skipped (with a note) when they are missing, except
//! under CI=true, where their absence fails the test.
mod common;
use anyhow::{bail, Context, Result};
use common::*;
use onnxgrad::nn::{Binding, Mode, Net, ParamStore};
use onnxgrad::optim::{build_train_step, AdamOptions};
use onnxgrad::{gradients, loss, ConvSpec, DType, GemmSpec, Graph, PoolSpec, Tensor, ValueId};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Reads the model from stdin, checks it, runs it with inputs `0.5 + 0.4 sin(0.37 i + k)` (input k, element i;
/// i64 inputs are 1) and prints the sum of each output as JSON.
const SCRIPT: &str = r#"
import sys, json
import numpy as np, onnx, onnxruntime as ort
data = sys.stdin.buffer.read()
model = onnx.load_from_string(data)
onnx.checker.check_model(model, full_check=True)
sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
feeds = {}
for k, inp in enumerate(sess.get_inputs()):
    shape = [int(d) for d in inp.shape]
    n = int(np.prod(shape)) if shape else 1
    if inp.type == "tensor(int64)":
        feeds[inp.name] = np.ones(shape, np.int64)
    else:
        dtype = np.float64 if inp.type == "tensor(double)" else np.float32
        v = 0.5 + 0.4 * np.sin(0.37 * np.arange(n) + k)
        feeds[inp.name] = v.reshape(shape).astype(dtype)
outs = sess.run(None, feeds)
print(json.dumps({o.name: float(np.sum(v.astype(np.float64))) for o, v in zip(sess.get_outputs(), outs)}))
"#;

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: python3 with onnx, onnxruntime and numpy is required (pip install onnx onnxruntime numpy)");
    }
    if !ok {
        eprintln!("note: python3 with onnx + onnxruntime + numpy not found; skipping the Python checks");
    }
    ok
}

/// Output sums computed by Python's checker + onnxruntime.
fn python_sums(g: &Graph) -> Result<HashMap<String, f64>> {
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting python3")?;
    child.stdin.take().unwrap().write_all(&g.to_onnx_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{}: python failed:\n{}", g.name(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    // A flat {"name": number, ...} object: parsed by hand to keep serde out of the dev-dependencies.
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(", \"")
        .map(|kv| {
            let (k, v) = kv.rsplit_once(": ").context("json")?;
            Ok((k.trim_matches('"').to_string(), v.parse::<f64>()?))
        })
        .collect()
}

/// The same feeds as the Python script, run in Rust.
fn rust_sums(g: &Graph) -> Result<HashMap<String, f64>> {
    let feeds: Vec<(String, Tensor)> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let shape = g.shape(v).to_vec();
            let n: usize = shape.iter().product();
            let t = match g.dtype(v) {
                DType::I64 => Tensor::i64(&shape, vec![1; n]).unwrap(),
                dt => tensor(
                    dt,
                    &shape,
                    &(0..n).map(|i| 0.5 + 0.4 * (0.37 * i as f64 + k as f64).sin()).collect::<Vec<_>>(),
                ),
            };
            (g.value_name(v).to_string(), t)
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Ok(run(&mut session(g)?, &refs)?.into_iter().map(|(n, t)| (n, values(&t).iter().sum())).collect())
}

fn check_in_python(g: &Graph) -> Result<()> {
    let py = python_sums(g)?;
    let rs = rust_sums(g)?;
    assert_eq!(py.len(), g.outputs().len(), "{}: every output reported", g.name());
    for (name, r) in &rs {
        let p = py[name];
        assert!((p - r).abs() <= 1e-4 * r.abs().max(1.0), "{}: output {name}: python {p} vs rust {r}", g.name());
    }
    eprintln!("{}: onnx.checker (full_check) passed; {} outputs agree with Python onnxruntime", g.name(), rs.len());
    Ok(())
}

/// Every forward operator, a loss, and gradients with respect to every float input (so every gradient rule's
/// operators, including MaxPool indices, ScatterElements, ConstantOfShape and Sum, appear too).
fn kitchen_sink() -> Result<Graph> {
    let mut g = Graph::new("kitchen_sink");
    let f = DType::F32;
    let x = g.input("x", f, &[2, 3, 6, 6])?;
    let w = g.input("w", f, &[4, 3, 3, 3])?;
    let b = g.input("b", f, &[4])?;
    let s = g.input("bn.scale", f, &[4])?;
    let bb = g.input("bn.bias", f, &[4])?;
    let mean = g.input("bn.mean", f, &[4])?;
    let var = g.input("bn.var", f, &[4])?;
    let wt = g.input("wt", f, &[4, 2, 3, 3])?;
    let wg = g.input("wg", f, &[32, 5])?;
    let bg = g.input("bg", f, &[5])?;
    let wm = g.input("wm", f, &[5, 3])?;
    let targets = g.input("targets", f, &[2, 5])?;
    let params = [x, w, b, s, bb, mean, var, wt, wg, bg, wm];

    let c = g.conv(x, w, Some(b), &ConvSpec::new2d(2, 1))?;
    let bn = g.batch_norm_inference(c, s, bb, mean, var, 1e-5)?;
    let r = g.relu(bn)?;
    let t = g.tanh(r)?;
    let lk = g.leaky_relu(c, 0.2)?;
    let sg = g.sigmoid(lk)?;
    let rm = g.constant("rm", Tensor::f32(&[4], vec![0.0; 4])?);
    let rv = g.constant("rv", Tensor::f32(&[4], vec![1.0; 4])?);
    let bt = g.batch_norm_train(c, s, bb, rm, rv, 1e-5, 0.1)?;
    let mp = g.max_pool(bt.y, &PoolSpec::new2d(2, 1, 0))?;
    let ct = g.conv_transpose(mp, wt, None, &ConvSpec::new2d(2, 1).with_output_padding(1))?;
    let fl = g.flatten(ct, 1)?;
    let gm = g.gemm(fl, wg, Some(bg), GemmSpec { alpha: 0.5, ..GemmSpec::default() })?;
    let mm = g.matmul(gm, wm)?;
    let e = g.exp(mm)?;
    let a = g.abs(mm)?;
    let a = g.add_scalar(a, 0.5)?;
    let lg = g.log(a)?;
    let sq = g.sqrt(a)?;
    let two = g.scalar(f, 2.0);
    let pw = g.pow(sq, two)?;
    let sp = g.softplus(mm)?;
    let dv = g.div(sp, sq)?;
    let ng = g.neg(lg)?;
    let rc = g.reciprocal(pw)?;
    let zero = g.scalar(f, 0.0);
    let neg = g.less(mm, zero)?;
    let cond = g.not(neg)?;
    let wh = g.where_(cond, e, dv)?;
    let wh = g.sum(&[wh, ng, rc])?;
    let tr = g.transpose(wh, &[1, 0])?;
    let rs = g.reshape(tr, &[6])?;
    let sl = g.slice(rs, &[0], &[1], &[5])?;
    let pd = g.pad(sl, &[1, 2])?;
    let cc = g.concat(&[pd, pd], 0)?;
    let zeros = g.constant("zeros", Tensor::f32(&[14], vec![0.0; 14])?);
    let l_mse = loss::mse(&mut g, cc, zeros)?;
    let tm = g.reduce_mean(t, &[2, 3], true)?;
    let te = g.expand(tm, &[2, 4, 3, 3])?;
    let l_t = g.reduce_sum(te, &[], false)?;
    let wide = g.cast(sg, DType::F64)?;
    let ws = g.sum_all(wide)?;
    let l_sg = g.cast(ws, f)?;
    let mask = g.constant("mask", Tensor::f32(&[2, 4, 3, 3], (0..72).map(|i| (i % 3 != 0) as u8 as f32).collect())?);
    let dr = g.dropout(sg, mask, 0.3)?;
    let l_dr = g.mean_all(dr)?;
    let same = g.equal(gm, gm)?;
    let gm2 = g.where_(same, gm, zero)?;
    let l_bce = loss::bce_with_logits(&mut g, gm2, targets)?;
    let total = g.sum(&[l_mse, l_t, l_sg, l_dr, l_bce])?;
    let total = g.stop_gradient(total)?;
    g.output(total, "total")?;
    let parts = g.sum(&[l_mse, l_t, l_sg, l_dr, l_bce])?;
    let grads = gradients(&mut g, parts, &params)?;
    for p in params {
        let grad = grads.get(p).context("every input influences the loss")?;
        let name = format!("{}.grad", g.value_name(p));
        g.output(grad, &name)?;
    }
    g.output(bt.running_mean, "running_mean.new")?;
    Ok(g)
}

/// A DCGAN-shaped generator step: G(z) scored by a frozen D in training mode, BCE against "real", AdamW.
fn generator_step() -> Result<Graph> {
    let (mut gs, mut ds) = (ParamStore::new(1), ParamStore::new(2));
    let mut g = Graph::new("g_step");
    let z = g.input("z", DType::F32, &[4, 8, 1, 1])?;
    let labels = g.input("labels", DType::F32, &[4])?;
    let mut gen = Net::new(&mut g, &mut gs, Mode::Train, Binding::Inputs);
    let fake = gen.scoped("g", |n| {
        let h = n.conv_transpose2d("up1", z, 16, 4, 1, 0, 0, false)?;
        let h = n.batch_norm("bn1", h)?;
        let h = n.graph().relu(h)?;
        let h = n.conv_transpose2d("up2", h, 3, 4, 2, 1, 0, false)?;
        n.graph().tanh(h)
    })?;
    let g_params = gen.finish().params;
    let mut disc = Net::new(&mut g, &mut ds, Mode::Train, Binding::Inputs);
    let logits = disc.scoped("d", |n| {
        let h = n.conv2d("conv1", fake, 8, 4, 2, 1, false)?;
        let h = n.graph().leaky_relu(h, 0.2)?;
        let h = n.conv2d("conv2", h, 16, 4, 2, 1, false)?;
        let h = n.batch_norm("bn2", h)?;
        let h = n.graph().leaky_relu(h, 0.2)?;
        let h = n.dropout("drop", h, 0.2)?;
        n.conv2d("conv3", h, 1, 2, 1, 0, false)
    })?;
    disc.finish();
    let logits = g.reshape(logits, &[4])?;
    let l = loss::bce_with_logits(&mut g, logits, labels)?;
    build_train_step(&mut g, l, &g_params, &AdamOptions { output_gradients: true, ..AdamOptions::adamw() })?;
    Ok(g)
}

/// A self-contained inference model: parameters as initializers, batch norm from running statistics.
fn inference_model() -> Result<Graph> {
    let mut store = ParamStore::new(3);
    let mut g = Graph::new("generator_eval");
    let z = g.input("z", DType::F32, &[2, 8, 1, 1])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Eval, Binding::Constants);
    let y = net.scoped("g", |n| {
        let h = n.conv_transpose2d("up1", z, 16, 4, 1, 0, 0, true)?;
        let h = n.batch_norm("bn1", h)?;
        let h = n.graph().relu(h)?;
        let h = n.conv_transpose2d("up2", h, 3, 4, 2, 1, 0, true)?;
        n.graph().tanh(h)
    })?;
    g.output(y, "images")?;
    Ok(g)
}

#[test]
fn models_pass_onnx_checker_and_run_in_python_onnxruntime() -> Result<()> {
    if !python_ready() {
        return Ok(());
    }
    check_in_python(&kitchen_sink()?)?;
    check_in_python(&generator_step()?)?;
    check_in_python(&inference_model()?)?;
    Ok(())
}

#[test]
fn model_proto_round_trip() -> Result<()> {
    let g = inference_model()?;
    let m = onnxgrad::decode_model(&g.to_onnx_bytes())?;
    assert_eq!(m.ir_version, onnxgrad::IR_VERSION);
    assert_eq!((m.opset_import[0].domain.as_str(), m.opset_import[0].version), ("", onnxgrad::OPSET));
    assert_eq!(m.producer_name, "onnxgrad");
    let graph = m.graph.unwrap();
    assert_eq!(graph.name, "generator_eval");
    assert_eq!(graph.input.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["z"]);
    assert_eq!(graph.output[0].name, "images");
    let dims: Vec<i64> = graph.output[0]
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().filter_map(|d| d.dim_value).collect())
        .unwrap();
    assert_eq!(dims, [2, 3, 8, 8]);
    let w = graph.initializer.iter().find(|t| t.name == "g.up1.weight").unwrap();
    let decoded = onnxgrad::proto::tensor_from_proto(w)?;
    let original = g.find("g.up1.weight").map(|v| g.value(v).source.clone()).unwrap();
    assert_eq!(onnxgrad::Source::Initializer(decoded), original);
    assert!(graph.node.iter().any(|n| n.op_type == "BatchNormalization" && n.name.starts_with("g.bn1")));
    Ok(())
}

/// Scalars in a graph input list: rank-0 inputs must keep an (empty) shape, not lose it.
#[test]
fn scalar_inputs_have_rank_zero_shapes() -> Result<()> {
    let mut g = Graph::new("scalar");
    let s: ValueId = g.input("s", DType::F32, &[])?;
    let y = g.scale(s, 2.0)?;
    g.output(y, "y")?;
    let m = onnxgrad::decode_model(&g.to_onnx_bytes())?;
    let ty = m.graph.unwrap().input[0].r#type.clone().unwrap().tensor_type.unwrap();
    assert!(ty.shape.is_some_and(|s| s.dim.is_empty()));
    let out = run(&mut session(&g)?, &[("s", &tensor(DType::F32, &[], &[1.5]))])?;
    assert_eq!(values(&out["y"]), [3.0]);
    Ok(())
}
