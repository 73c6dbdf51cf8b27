//! Finite-difference checks of every operator's gradient rule, run through ONNX Runtime (CPU).
//!
//! Each check builds `f = sum(op(x) * R)` for a fixed random `R`, runs the gradient graph for the analytic
//! gradient and the forward graph at `x ± eps` for the numeric one. Bounds on the normalised error
//! `|a - n| / max(1, |a|, |n|)`: 1e-6 in f64 (step 1e-6); 2e-3 in f32 (step 1e-2), used only for `Conv` and
//! `ConvTranspose`, which ONNX Runtime implements for float32 only.
mod common;
use anyhow::Result;
use common::*;
use onnxgrad::{ConvSpec, DType, GemmSpec, Graph, PoolSpec, Tensor, ValueId};

const F64: DType = DType::F64;
const F32: DType = DType::F32;

fn rand(seed: u64, shape: &[usize]) -> Vec<f64> {
    Rng::new(seed).vec(shape.iter().product(), -1.0, 1.0)
}

fn positive(seed: u64, shape: &[usize]) -> Vec<f64> {
    Rng::new(seed).vec(shape.iter().product(), 0.5, 2.0)
}

fn kinkless(seed: u64, shape: &[usize]) -> Vec<f64> {
    Rng::new(seed).away_from_zero(shape.iter().product(), 0.1, 1.5)
}

type Unary = fn(&mut Graph, ValueId) -> onnxgrad::Result<ValueId>;

fn check_unary(name: &str, data: Vec<f64>, op: Unary) -> Result<()> {
    check_gradients(name, F64, &[arg("x", &[2, 3, 4], data)], F64_TOL, |g, x| op(g, x[0]))?;
    Ok(())
}

#[test]
fn elementwise_unary() -> Result<()> {
    let s = [2, 3, 4];
    check_unary("relu", kinkless(1, &s), |g, x| g.relu(x))?;
    check_unary("leaky_relu", kinkless(2, &s), |g, x| g.leaky_relu(x, 0.2))?;
    check_unary("tanh", rand(3, &s), |g, x| g.tanh(x))?;
    check_unary("sigmoid", rand(4, &s), |g, x| g.sigmoid(x))?;
    check_unary("exp", rand(5, &s), |g, x| g.exp(x))?;
    check_unary("log", positive(6, &s), |g, x| g.log(x))?;
    check_unary("sqrt", positive(7, &s), |g, x| g.sqrt(x))?;
    check_unary("reciprocal", kinkless(8, &s), |g, x| g.reciprocal(x))?;
    check_unary("softplus", rand(9, &s), |g, x| g.softplus(x))?;
    check_unary("abs", kinkless(10, &s), |g, x| g.abs(x))?;
    check_unary("neg", rand(11, &s), |g, x| g.neg(x))?;
    check_unary("identity", rand(12, &s), |g, x| g.identity(x))?;
    Ok(())
}

#[test]
fn cast_passes_gradient_back_in_the_input_dtype() -> Result<()> {
    check_gradients("cast", F32, &[arg("x", &[3, 4], rand(13, &[3, 4]))], F32_TOL, |g, x| {
        let wide = g.cast(x[0], DType::F64)?;
        let t = g.tanh(wide)?;
        g.cast(t, DType::F32)
    })?;
    Ok(())
}

type Binary = fn(&mut Graph, ValueId, ValueId) -> onnxgrad::Result<ValueId>;

/// Both operands are broadcast ([2,1,4] with [3,1] -> [2,3,4]), so both gradients must be reduced back.
fn check_binary(name: &str, a: Vec<f64>, b: Vec<f64>, op: Binary) -> Result<()> {
    let args = [arg("a", &[2, 1, 4], a), arg("b", &[3, 1], b)];
    check_gradients(name, F64, &args, F64_TOL, |g, x| op(g, x[0], x[1]))?;
    Ok(())
}

#[test]
fn broadcasting_binary() -> Result<()> {
    check_binary("add", rand(20, &[8]), rand(21, &[3]), |g, a, b| g.add(a, b))?;
    check_binary("sub", rand(22, &[8]), rand(23, &[3]), |g, a, b| g.sub(a, b))?;
    check_binary("mul", rand(24, &[8]), rand(25, &[3]), |g, a, b| g.mul(a, b))?;
    check_binary("div", rand(26, &[8]), kinkless(27, &[3]), |g, a, b| g.div(a, b))?;
    check_binary("pow", positive(28, &[8]), rand(29, &[3]), |g, a, b| g.pow(a, b))?;
    // Same shapes, and a scalar operand.
    let args = [arg("a", &[3, 4], rand(30, &[12])), arg("b", &[3, 4], rand(31, &[12]))];
    check_gradients("mul_same_shape", F64, &args, F64_TOL, |g, x| g.mul(x[0], x[1]))?;
    let args = [arg("a", &[3, 4], rand(32, &[12])), arg("s", &[], vec![0.7])];
    check_gradients("mul_scalar", F64, &args, F64_TOL, |g, x| g.mul(x[0], x[1]))?;
    Ok(())
}

#[test]
fn where_routes_gradient_by_condition() -> Result<()> {
    let args = [arg("a", &[2, 3], rand(40, &[6])), arg("b", &[3], rand(41, &[3]))];
    check_gradients("where", F64, &args, F64_TOL, |g, x| {
        let cond = Tensor::new(&[2, 3], onnxgrad::TensorData::Bool(vec![true, false, true, false, false, true]))?;
        let c = g.constant("cond", cond);
        g.where_(c, x[0], x[1])
    })?;
    Ok(())
}

#[test]
fn variadic_sum() -> Result<()> {
    let args = [arg("a", &[2, 3], rand(42, &[6])), arg("b", &[3], rand(43, &[3])), arg("c", &[2, 1], rand(44, &[2]))];
    check_gradients("sum", F64, &args, F64_TOL, |g, x| g.sum(x))?;
    Ok(())
}

#[test]
fn matmul_plain_and_batched() -> Result<()> {
    let args = [arg("a", &[3, 4], rand(50, &[12])), arg("b", &[4, 5], rand(51, &[20]))];
    check_gradients("matmul_2d", F64, &args, F64_TOL, |g, x| g.matmul(x[0], x[1]))?;
    // Batch axes broadcast: [2,1,3,4] x [3,4,2] -> [2,3,3,2].
    let args = [arg("a", &[2, 1, 3, 4], rand(52, &[24])), arg("b", &[3, 4, 2], rand(53, &[24]))];
    check_gradients("matmul_batched", F64, &args, F64_TOL, |g, x| g.matmul(x[0], x[1]))?;
    Ok(())
}

#[test]
fn gemm_every_transpose_combination() -> Result<()> {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let a_shape = if ta { [4, 3] } else { [3, 4] };
        let b_shape = if tb { [5, 4] } else { [4, 5] };
        let args = [
            arg("a", &a_shape, rand(60, &a_shape)),
            arg("b", &b_shape, rand(61, &b_shape)),
            arg("c", &[5], rand(62, &[5])),
        ];
        let spec = GemmSpec { alpha: 0.7, beta: 1.3, trans_a: ta, trans_b: tb };
        check_gradients(&format!("gemm_ta{ta}_tb{tb}"), F64, &args, F64_TOL, |g, x| {
            g.gemm(x[0], x[1], Some(x[2]), spec)
        })?;
    }
    Ok(())
}

fn conv_case(name: &str, x: [usize; 4], w: [usize; 4], spec: ConvSpec, bias: bool) -> Result<()> {
    let mut args = vec![arg("x", &x, rand(70, &x)), arg("w", &w, rand(71, &w))];
    if bias {
        args.push(arg("b", &[w[0]], rand(72, &[w[0]])));
    }
    check_gradients(name, F32, &args, F32_TOL, |g, v| g.conv(v[0], v[1], v.get(2).copied(), &spec))?;
    Ok(())
}

#[test]
fn conv_gradients_for_various_geometries() -> Result<()> {
    conv_case("conv_k3s1p1", [2, 3, 6, 6], [4, 3, 3, 3], ConvSpec::new2d(1, 1), true)?;
    // DCGAN's discriminator geometry, where (H + 2p - k) % s == 0.
    conv_case("conv_k4s2p1_even", [2, 3, 8, 8], [4, 3, 4, 4], ConvSpec::new2d(2, 1), true)?;
    // (H + 2p - k) % s == 1: the input gradient needs output_padding, the weight gradient a crop.
    conv_case("conv_k4s2p1_odd", [2, 3, 7, 7], [4, 3, 4, 4], ConvSpec::new2d(2, 1), false)?;
    conv_case("conv_k3s3p0_rem2", [1, 2, 8, 8], [3, 2, 3, 3], ConvSpec::new2d(3, 0), false)?;
    conv_case("conv_k4s1p0_final", [3, 4, 4, 4], [1, 4, 4, 4], ConvSpec::new2d(1, 0), false)?;
    let asym =
        ConvSpec { strides: vec![2, 1], pads: vec![0, 1, 2, 0], dilations: vec![1, 1], output_padding: vec![0, 0] };
    conv_case("conv_asymmetric", [2, 2, 7, 6], [3, 2, 3, 2], asym, true)?;
    conv_case("conv_dilated", [1, 2, 9, 9], [2, 2, 3, 3], ConvSpec::new2d(2, 1).with_dilation(2), true)?;
    Ok(())
}

#[test]
fn conv_1d() -> Result<()> {
    let args = [arg("x", &[2, 3, 11], rand(73, &[66])), arg("w", &[2, 3, 4], rand(74, &[24]))];
    check_gradients("conv1d_k4s2p1", F32, &args, F32_TOL, |g, v| g.conv(v[0], v[1], None, &ConvSpec::new(1, 2, 1)))?;
    Ok(())
}

fn conv_t_case(name: &str, x: [usize; 4], w: [usize; 4], spec: ConvSpec, bias: bool) -> Result<()> {
    let mut args = vec![arg("x", &x, rand(80, &x)), arg("w", &w, rand(81, &w))];
    if bias {
        args.push(arg("b", &[w[1]], rand(82, &[w[1]])));
    }
    check_gradients(name, F32, &args, F32_TOL, |g, v| g.conv_transpose(v[0], v[1], v.get(2).copied(), &spec))?;
    Ok(())
}

#[test]
fn conv_transpose_gradients_for_various_geometries() -> Result<()> {
    // DCGAN's generator: the first layer (1x1 -> 4x4, s1 p0) and the upsampling layers (k4 s2 p1).
    conv_t_case("convT_k4s1p0_first", [2, 5, 1, 1], [5, 3, 4, 4], ConvSpec::new2d(1, 0), false)?;
    conv_t_case("convT_k4s2p1", [2, 3, 4, 4], [3, 2, 4, 4], ConvSpec::new2d(2, 1), true)?;
    conv_t_case("convT_k3s2p1_op1", [2, 3, 4, 4], [3, 2, 3, 3], ConvSpec::new2d(2, 1).with_output_padding(1), true)?;
    conv_t_case("convT_k3s1p1", [1, 2, 5, 5], [2, 3, 3, 3], ConvSpec::new2d(1, 1), false)?;
    conv_t_case("convT_k2s3p0_op2", [1, 2, 3, 3], [2, 2, 2, 2], ConvSpec::new2d(3, 0).with_output_padding(2), false)?;
    conv_t_case("convT_dilated", [1, 2, 4, 4], [2, 2, 3, 3], ConvSpec::new2d(2, 1).with_dilation(2), true)?;
    Ok(())
}

#[test]
fn batch_norm_inference_all_inputs() -> Result<()> {
    let args = [
        arg("x", &[3, 2, 2, 2], rand(90, &[24])),
        arg("scale", &[2], rand(91, &[2])),
        arg("bias", &[2], rand(92, &[2])),
        arg("mean", &[2], rand(93, &[2])),
        arg("var", &[2], positive(94, &[2])),
    ];
    check_gradients("batch_norm_inference", F64, &args, F64_TOL, |g, v| {
        g.batch_norm_inference(v[0], v[1], v[2], v[3], v[4], 1e-5)
    })?;
    Ok(())
}

#[test]
fn batch_norm_train_through_batch_statistics() -> Result<()> {
    let args = [
        arg("x", &[4, 3, 2, 2], rand(95, &[48])),
        arg("scale", &[3], positive(96, &[3])),
        arg("bias", &[3], rand(97, &[3])),
    ];
    check_gradients("batch_norm_train", F64, &args, F64_TOL, |g, v| {
        let rm = g.constant("rm", Tensor::f64(&[3], vec![0.0; 3])?);
        let rv = g.constant("rv", Tensor::f64(&[3], vec![1.0; 3])?);
        Ok(g.batch_norm_train(v[0], v[1], v[2], rm, rv, 1e-5, 0.1)?.y)
    })?;
    // Rank 2 (after a linear layer).
    let args = [
        arg("x", &[5, 3], rand(98, &[15])),
        arg("scale", &[3], positive(99, &[3])),
        arg("bias", &[3], rand(100, &[3])),
    ];
    check_gradients("batch_norm_train_2d", F64, &args, F64_TOL, |g, v| {
        let rm = g.constant("rm", Tensor::f64(&[3], vec![0.0; 3])?);
        let rv = g.constant("rv", Tensor::f64(&[3], vec![1.0; 3])?);
        Ok(g.batch_norm_train(v[0], v[1], v[2], rm, rv, 1e-5, 0.1)?.y)
    })?;
    Ok(())
}

/// Distinct values at least 0.01 apart (shuffled), so no window has a tie within ±eps.
fn distinct(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.01 - 0.3).collect();
    for i in (1..n).rev() {
        v.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    v
}

#[test]
fn max_pool_gradients() -> Result<()> {
    let args = [arg("x", &[2, 2, 4, 4], distinct(110, 64))];
    check_gradients("max_pool_k2s2", F64, &args, F64_TOL, |g, v| g.max_pool(v[0], &PoolSpec::new2d(2, 2, 0)))?;
    // Overlapping windows (an element can win several) and padding.
    let args = [arg("x", &[1, 2, 5, 5], distinct(111, 50))];
    check_gradients("max_pool_k3s2p1", F64, &args, F64_TOL, |g, v| g.max_pool(v[0], &PoolSpec::new2d(3, 2, 1)))?;
    Ok(())
}

#[test]
fn max_pool_ties_get_the_gradient_once() -> Result<()> {
    // Every window of the 2x2/2 pooling is all equal: the gradient of each window must land on exactly one
    // element, so the input gradient sums to the output gradient's sum and has one non-zero per window.
    let mut g = Graph::new("max_pool_ties");
    let x = g.input("x", F64, &[1, 1, 4, 4])?;
    let dy_in = g.input("dy", F64, &[1, 1, 2, 2])?;
    let y = g.max_pool(x, &PoolSpec::new2d(2, 2, 0))?;
    let weighted = g.mul(y, dy_in)?;
    let f = g.sum_all(weighted)?;
    let grads = onnxgrad::gradients(&mut g, f, &[x])?;
    g.output(grads.get(x).unwrap(), "dx")?;
    let xs: Vec<f64> = (0..16).map(|i| [1.0, 2.0, 3.0, 4.0][(i / 8) * 2 + (i % 4) / 2]).collect();
    let dy = [0.5, -1.0, 2.0, 3.0];
    let out =
        run(&mut session(&g)?, &[("x", &tensor(F64, &[1, 1, 4, 4], &xs)), ("dy", &tensor(F64, &[1, 1, 2, 2], &dy))])?;
    let dx = values(&out["dx"]);
    for (w, &d) in dy.iter().enumerate() {
        let (wy, wx) = (w / 2, w % 2);
        let window: Vec<f64> = (0..4).map(|k| dx[(wy * 2 + k / 2) * 4 + wx * 2 + k % 2]).collect();
        assert_eq!(window.iter().filter(|&&v| v != 0.0).count(), 1, "window {w}: {window:?}");
        assert_eq!(window.iter().sum::<f64>(), d, "window {w}");
    }
    Ok(())
}

#[test]
fn shape_ops() -> Result<()> {
    let x24 = || vec![arg("x", &[2, 3, 4], rand(120, &[24]))];
    check_gradients("reshape", F64, &x24(), F64_TOL, |g, v| {
        let r = g.reshape(v[0], &[4, -1])?;
        g.tanh(r)
    })?;
    check_gradients("flatten", F64, &x24(), F64_TOL, |g, v| {
        let r = g.flatten(v[0], 1)?;
        g.tanh(r)
    })?;
    check_gradients("transpose", F64, &x24(), F64_TOL, |g, v| g.transpose(v[0], &[2, 0, 1]))?;
    check_gradients("slice", F64, &x24(), F64_TOL, |g, v| g.slice(v[0], &[1, -1], &[1, 1], &[3, 3]))?;
    check_gradients("pad", F64, &x24(), F64_TOL, |g, v| g.pad(v[0], &[0, 1, 2, 1, 0, 1]))?;
    let args = [arg("x", &[3, 1], rand(121, &[3]))];
    check_gradients("expand", F64, &args, F64_TOL, |g, v| g.expand(v[0], &[2, 3, 4]))?;
    let args = [
        arg("a", &[2, 1, 4], rand(122, &[8])),
        arg("b", &[2, 3, 4], rand(123, &[24])),
        arg("c", &[2, 2, 4], rand(124, &[16])),
    ];
    check_gradients("concat", F64, &args, F64_TOL, |g, v| g.concat(v, 1))?;
    Ok(())
}

#[test]
fn reductions() -> Result<()> {
    let x = || vec![arg("x", &[2, 3, 4], rand(130, &[24]))];
    check_gradients("reduce_sum_keep", F64, &x(), F64_TOL, |g, v| g.reduce_sum(v[0], &[0, 2], true))?;
    check_gradients("reduce_sum_drop", F64, &x(), F64_TOL, |g, v| g.reduce_sum(v[0], &[1], false))?;
    check_gradients("reduce_mean_keep", F64, &x(), F64_TOL, |g, v| g.reduce_mean(v[0], &[-1], true))?;
    check_gradients("reduce_mean_drop", F64, &x(), F64_TOL, |g, v| g.reduce_mean(v[0], &[0, 1], false))?;
    check_gradients("mean_all", F64, &x(), F64_TOL, |g, v| {
        let t = g.tanh(v[0])?;
        g.mean_all(t)
    })?;
    Ok(())
}

#[test]
fn dropout_scales_kept_elements() -> Result<()> {
    let args = [arg("x", &[2, 5], rand(140, &[10]))];
    check_gradients("dropout", F64, &args, F64_TOL, |g, v| {
        let mask = g.constant("mask", Tensor::f64(&[2, 5], vec![1., 0., 1., 1., 0., 0., 1., 1., 0., 1.])?);
        g.dropout(v[0], mask, 0.4)
    })?;
    Ok(())
}

#[test]
fn depth_to_space_gradient() -> Result<()> {
    // DepthToSpace has double kernels in ONNX Runtime: f64 check of its reshape/transpose gradient rule.
    let args = [arg("x", &[2, 8, 2, 3], rand(90, &[2, 8, 2, 3]))];
    check_gradients("depth_to_space", F64, &args, F64_TOL, |g, x| g.depth_to_space(x[0], 2))?;
    Ok(())
}
