//! Alternative formulations ([`Graph::lowered`]): the lowered graph computes the same values as the graph as
//! built, and gradients through it pass the same finite-difference checks as the plain operators (f32: ONNX
//! Runtime's `Conv`/`ConvTranspose` have no double kernels).
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::ops::Op;
use onnxgrad::{ConvSpec, DType, Formulation, Graph};

const F32: DType = DType::F32;

fn rand(seed: u64, shape: &[usize]) -> Vec<f64> {
    Rng::new(seed).vec(shape.iter().product(), -1.0, 1.0)
}

fn count(g: &Graph, onnx_type: &str) -> usize {
    g.nodes().iter().filter(|n| n.op.onnx_type() == onnx_type).count()
}

/// `ConvTranspose(x, w[, b])` as built and lowered to sub-pixel form: same output within f32 rounding (the phase
/// convolutions sum the same products in another order), and the lowered graph has no ConvTranspose left.
fn same_output(name: &str, x: [usize; 4], w: [usize; 4], spec: ConvSpec, bias: bool) -> Result<()> {
    let mut g = Graph::new(name);
    let xv = g.input("x", F32, &x)?;
    let wv = g.input("w", F32, &w)?;
    let bv = if bias { Some(g.input("b", F32, &[w[1]])?) } else { None };
    let y = g.conv_transpose(xv, wv, bv, &spec)?;
    g.output(y, "y")?;
    let low = g.lowered(&Formulation::subpixel())?;
    assert_eq!(count(&low, "ConvTranspose"), 0, "{name}: lowered");
    assert_eq!(count(&low, "Conv"), spec.strides.iter().product::<usize>(), "{name}: one Conv per phase");
    let tx = tensor(F32, &x, &rand(1, &x));
    let tw = tensor(F32, &w, &rand(2, &w));
    let tb = tensor(F32, &[w[1]], &rand(3, &[w[1]]));
    let mut feeds = vec![("x", &tx), ("w", &tw)];
    if bias {
        feeds.push(("b", &tb));
    }
    let want = values(&run(&mut session(&g)?, &feeds)?["y"]);
    let got = values(&run(&mut session(&low)?, &feeds)?["y"]);
    assert_eq!(want.len(), got.len());
    let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "{name}: max |native - subpixel| = {worst:e}");
    eprintln!("{name}: max |native - subpixel| {worst:.1e}");
    Ok(())
}

#[test]
fn subpixel_conv_transpose_equals_conv_transpose() -> Result<()> {
    same_output("k4s2p1", [2, 3, 4, 4], [3, 5, 4, 4], ConvSpec::new2d(2, 1), false)?;
    same_output("k4s2p1_bias_rect", [1, 4, 3, 5], [4, 2, 4, 4], ConvSpec::new2d(2, 1), true)?;
    // k6 s3 with pads (1, 2): 6 - 1 - 2 = 3, three phases per axis.
    let k6 = ConvSpec { pads: vec![1, 1, 2, 2], ..ConvSpec::new2d(3, 0) };
    same_output("k6s3p12", [2, 2, 3, 3], [2, 3, 6, 6], k6, true)?;
    // k2 s2 p0 (one tap per phase), k3 s2 p1 with output_padding 1.
    same_output("k2s2p0", [2, 3, 4, 4], [3, 2, 2, 2], ConvSpec::new2d(2, 0), false)?;
    let op1 = ConvSpec::new2d(2, 1).with_output_padding(1);
    let mut g = Graph::new("k3s2p1op1");
    let x = g.input("x", F32, &[1, 2, 4, 4])?;
    let w = g.input("w", F32, &[2, 2, 3, 3])?;
    let y = g.conv_transpose(x, w, None, &op1)?;
    g.output(y, "y")?;
    // k = 3 is not a multiple of the stride: left as it is.
    assert_eq!(count(&g.lowered(&Formulation::subpixel())?, "ConvTranspose"), 1);
    Ok(())
}

#[test]
fn subpixel_respects_the_map_size_limit_and_keeps_names() -> Result<()> {
    let mut g = Graph::new("limit");
    let small = g.input("small", F32, &[1, 2, 4, 4])?;
    let big = g.input("big", F32, &[1, 2, 16, 16])?;
    let w = g.input("w", F32, &[2, 2, 4, 4])?;
    let a = g.conv_transpose(small, w, None, &ConvSpec::new2d(2, 1))?;
    let b = g.conv_transpose(big, w, None, &ConvSpec::new2d(2, 1))?;
    g.output(a, "a")?;
    g.output(b, "b")?;
    let low = g.lowered(&Formulation::subpixel_up_to(64))?;
    assert_eq!(count(&low, "ConvTranspose"), 1, "only the 4x4 input is lowered");
    let names = |g: &Graph| g.outputs().iter().map(|&v| g.value_name(v).to_string()).collect::<Vec<_>>();
    assert_eq!(names(&low), names(&g));
    assert_eq!(low.inputs().len(), g.inputs().len());
    assert!(low.nodes().iter().any(|n| n.name.contains(".subpixel.") && matches!(n.op, Op::Conv(_))));
    // Native: an identical copy.
    assert_eq!(g.lowered(&Formulation::native())?.nodes(), g.nodes());
    Ok(())
}

/// The gradients of a ConvTranspose layer (sub-pixel forward) and of a strided Conv layer (whose input gradient
/// is a ConvTranspose, so sub-pixel in the backward pass) against finite differences.
#[test]
fn gradients_through_subpixel_form_match_finite_differences() -> Result<()> {
    let sub = Formulation::subpixel();
    let (x, w) = ([2, 3, 4, 4], [3, 2, 4, 4]);
    let args = [arg("x", &x, rand(10, &x)), arg("w", &w, rand(11, &w)), arg("b", &[2], rand(12, &[2]))];
    check_gradients_with("subpixel_convT_k4s2p1", F32, &args, F32_TOL, &sub, |g, v| {
        g.conv_transpose(v[0], v[1], Some(v[2]), &ConvSpec::new2d(2, 1))
    })?;
    let (x, w) = ([2, 3, 8, 8], [4, 3, 4, 4]);
    let args = [arg("x", &x, rand(13, &x)), arg("w", &w, rand(14, &w))];
    check_gradients_with("subpixel_conv_k4s2p1_input_grad", F32, &args, F32_TOL, &sub, |g, v| {
        g.conv(v[0], v[1], None, &ConvSpec::new2d(2, 1))
    })?;
    let k6 = ConvSpec { pads: vec![1, 1, 2, 2], ..ConvSpec::new2d(3, 0) };
    let (x, w) = ([1, 2, 3, 3], [2, 2, 6, 6]);
    let args = [arg("x", &x, rand(15, &x)), arg("w", &w, rand(16, &w))];
    check_gradients_with("subpixel_convT_k6s3", F32, &args, F32_TOL, &sub, |g, v| {
        g.conv_transpose(v[0], v[1], None, &k6)
    })?;
    Ok(())
}
