//! Vector-Jacobian products: for each operator, the nodes that turn the gradient of its outputs into the gradients
//! of its inputs, written with the same standard operators (a gradient graph is just more nodes).
//!
//! Convolutions follow the formulations verified against ONNX Runtime (shared/README.md), generalised to any
//! kernel, stride, padding and dilation:
//! * `Conv` input gradient: `ConvTranspose(dY, W)` with the forward strides/pads/dilations and
//!   `output_padding = (H + p0 + p1 - d(k-1) - 1) mod s` (the rows the forward stride skipped at the end).
//! * `Conv` weight gradient: `Conv(X^T, dY^T, strides = d, dilations = s, pads = p)`, where `^T` swaps the N and C
//!   axes, cropped to the kernel size (it is `k + floor(r/d)` long when the forward conv dropped `r` trailing rows),
//!   then transposed back.
//! * `ConvTranspose` input gradient: `Conv(dY, W)` with the forward geometry; weight gradient
//!   `Conv(dY^T, X^T, strides = d, dilations = s, pads = p)`, cropped and transposed the same way.
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, ValueId};
use crate::ops::{ConvSpec, GemmSpec, Op};
use crate::shape::{broadcast_axes, reduced};

/// Gradients of `node`'s inputs given its output gradients `dys` (None: that output does not reach the loss).
/// Only inputs with `needs[i]` get a gradient; the others get None.
pub(crate) fn vjp(g: &mut Graph, node: &Node, dys: &[Option<ValueId>], needs: &[bool]) -> Result<Vec<Option<ValueId>>> {
    let Some(dy) = dys[0] else {
        return Ok(vec![None; node.inputs.len()]);
    };
    let x = node.inputs.first().copied().unwrap_or(dy);
    let y = node.outputs[0];
    let want = |i: usize| needs.get(i).copied().unwrap_or(false);
    let one = |dx: ValueId| Ok(vec![Some(dx)]);
    match &node.op {
        Op::Identity => one(dy),
        Op::Neg => one(g.neg(dy)?),
        Op::Abs => {
            let s = g.sign(x)?;
            one(g.mul(dy, s)?)
        }
        Op::Exp => one(g.mul(dy, y)?),
        Op::Log => one(g.div(dy, x)?),
        Op::Sqrt => {
            let two_y = g.scale(y, 2.0)?;
            one(g.div(dy, two_y)?)
        }
        Op::Reciprocal => {
            let y2 = g.mul(y, y)?;
            let t = g.mul(dy, y2)?;
            one(g.neg(t)?)
        }
        Op::Relu => {
            let zero = g.scalar_like(x, 0.0);
            let pos = g.greater(x, zero)?;
            one(g.where_(pos, dy, zero)?)
        }
        Op::LeakyRelu { alpha } => {
            let zero = g.scalar_like(x, 0.0);
            let pos = g.greater(x, zero)?;
            let leak = g.scale(dy, *alpha as f64)?;
            one(g.where_(pos, dy, leak)?)
        }
        Op::Tanh => {
            let y2 = g.mul(y, y)?;
            let one_c = g.scalar_like(y, 1.0);
            let d = g.sub(one_c, y2)?;
            one(g.mul(dy, d)?)
        }
        Op::Sigmoid => {
            let one_c = g.scalar_like(y, 1.0);
            let rest = g.sub(one_c, y)?;
            let d = g.mul(y, rest)?;
            one(g.mul(dy, d)?)
        }
        Op::Softplus => {
            let s = g.sigmoid(x)?;
            one(g.mul(dy, s)?)
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => binary_vjp(g, node, dy, [want(0), want(1)]),
        Op::Where => where_vjp(g, node, dy, [want(1), want(2)]),
        Op::Sum => {
            let inputs = node.inputs.iter().enumerate();
            inputs.map(|(k, &i)| if want(k) { unbroadcast(g, dy, i).map(Some) } else { Ok(None) }).collect()
        }
        Op::MatMul => matmul_vjp(g, node, dy, [want(0), want(1)]),
        Op::Gemm(spec) => gemm_vjp(g, node, dy, *spec, [want(0), want(1), want(2)]),
        Op::Conv(spec) => conv_vjp(g, node, dy, spec, [want(0), want(1), want(2)]),
        Op::ConvTranspose(spec) => conv_transpose_vjp(g, node, dy, spec, [want(0), want(1), want(2)]),
        Op::BatchNormInference { epsilon } => batch_norm_vjp(g, node, dy, *epsilon),
        Op::MaxPool(spec) => {
            let (_, indices) = g.max_pool_with_indices(x, spec)?;
            one(max_pool_vjp(g, x, indices, dy)?)
        }
        Op::MaxPoolWithIndices(_) => one(max_pool_vjp(g, x, node.outputs[1], dy)?),
        Op::Reshape { .. } | Op::Flatten { .. } => {
            let shape = g.shape(x).to_vec();
            one(g.reshape_to(dy, &shape)?)
        }
        Op::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            one(g.transpose(dy, &inverse)?)
        }
        Op::Concat { axis } => concat_vjp(g, node, dy, *axis, needs),
        Op::Slice { axes, starts, ends } => {
            let shape = g.shape(x).to_vec();
            let mut pads = vec![0; 2 * shape.len()];
            for (i, &a) in axes.iter().enumerate() {
                pads[a] = starts[i];
                pads[shape.len() + a] = shape[a] - ends[i];
            }
            one(g.pad(dy, &pads)?)
        }
        Op::Pad { pads } => {
            let shape = g.shape(x).to_vec();
            let axes: Vec<i64> = (0..shape.len() as i64).collect();
            let ends: Vec<usize> = (0..shape.len()).map(|i| pads[i] + shape[i]).collect();
            one(g.slice(dy, &axes, &pads[..shape.len()], &ends)?)
        }
        Op::Expand { .. } => one(unbroadcast(g, dy, x)?),
        Op::DepthToSpace { blocksize: b } => {
            // The inverse permutation (space-to-depth in DCR order) with Reshape/Transpose.
            let [n, c, h, w] = g.shape(dy)[..] else { unreachable!("DepthToSpace output is rank 4") };
            let t = g.reshape_to(dy, &[n, c, h / b, *b, w / b, *b])?;
            let t = g.transpose(t, &[0, 3, 5, 1, 2, 4])?;
            one(g.reshape_to(t, &[n, b * b * c, h / b, w / b])?)
        }
        Op::ReduceSum { axes, keepdims } => one(reduce_vjp(g, x, dy, axes, *keepdims, false)?),
        Op::ReduceMean { axes, keepdims } => one(reduce_vjp(g, x, dy, axes, *keepdims, true)?),
        Op::Cast { .. } if g.dtype(x).is_float() => {
            let to = g.dtype(x);
            one(g.cast(dy, to)?)
        }
        Op::Cast { .. } => Ok(vec![None]),
        Op::StopGradient
        | Op::Sign
        | Op::Not
        | Op::Equal
        | Op::Greater
        | Op::Less
        | Op::ConstantOfShape { .. }
        | Op::ScatterAdd { .. } => Ok(vec![None; node.inputs.len()]),
    }
}

/// Sums `grad` (shaped like a broadcast result) back to the shape of `target`: over the axes `target` was
/// stretched along, then reshaped to drop the leading ones.
pub(crate) fn unbroadcast(g: &mut Graph, grad: ValueId, target: ValueId) -> Result<ValueId> {
    let want = g.shape(target).to_vec();
    if g.shape(grad) == want.as_slice() {
        return Ok(grad);
    }
    let axes: Vec<i64> = broadcast_axes(&want, g.shape(grad)).into_iter().map(|a| a as i64).collect();
    let summed = if axes.is_empty() { grad } else { g.reduce_sum(grad, &axes, true)? };
    if g.shape(summed) == want.as_slice() {
        return Ok(summed);
    }
    g.reshape_to(summed, &want)
}

fn binary_vjp(g: &mut Graph, node: &Node, dy: ValueId, want: [bool; 2]) -> Result<Vec<Option<ValueId>>> {
    let (a, b, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (da, db) = match node.op {
        Op::Add => (dy, dy),
        Op::Sub => (dy, if want[1] { g.neg(dy)? } else { dy }),
        Op::Mul => (if want[0] { g.mul(dy, b)? } else { dy }, if want[1] { g.mul(dy, a)? } else { dy }),
        Op::Div => {
            let da = g.div(dy, b)?;
            let db = if want[1] {
                // d(a/b)/db = -a/b^2 = -y/b
                let t = g.mul(da, y)?;
                g.neg(t)?
            } else {
                dy
            };
            (da, db)
        }
        Op::Pow => {
            let da = if want[0] {
                // d(a^b)/da = b a^(b-1)
                let one = g.scalar_like(b, 1.0);
                let bm1 = g.sub(b, one)?;
                let p = g.pow(a, bm1)?;
                let t = g.mul(b, p)?;
                g.mul(dy, t)?
            } else {
                dy
            };
            let db = if want[1] {
                // d(a^b)/db = a^b ln a
                let ln = g.log(a)?;
                let t = g.mul(y, ln)?;
                g.mul(dy, t)?
            } else {
                dy
            };
            (da, db)
        }
        _ => unreachable!("binary_vjp on {:?}", node.op),
    };
    Ok(vec![
        if want[0] { Some(unbroadcast(g, da, a)?) } else { None },
        if want[1] { Some(unbroadcast(g, db, b)?) } else { None },
    ])
}

fn where_vjp(g: &mut Graph, node: &Node, dy: ValueId, want: [bool; 2]) -> Result<Vec<Option<ValueId>>> {
    let (c, a, b) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    let zero = g.scalar_like(dy, 0.0);
    let da = if want[0] {
        let t = g.where_(c, dy, zero)?;
        Some(unbroadcast(g, t, a)?)
    } else {
        None
    };
    let db = if want[1] {
        let t = g.where_(c, zero, dy)?;
        Some(unbroadcast(g, t, b)?)
    } else {
        None
    };
    Ok(vec![None, da, db])
}

/// Swaps the last two axes.
fn transpose_last2(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    let r = g.shape(x).len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    g.transpose(x, &perm)
}

fn matmul_vjp(g: &mut Graph, node: &Node, dy: ValueId, want: [bool; 2]) -> Result<Vec<Option<ValueId>>> {
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let da = if want[0] {
        let bt = transpose_last2(g, b)?;
        let t = g.matmul(dy, bt)?;
        Some(unbroadcast(g, t, a)?)
    } else {
        None
    };
    let db = if want[1] {
        let at = transpose_last2(g, a)?;
        let t = g.matmul(at, dy)?;
        Some(unbroadcast(g, t, b)?)
    } else {
        None
    };
    Ok(vec![da, db])
}

/// `Y = alpha op(A) op(B) + beta C`. With `A' = op(A)`: `dA' = alpha dY B'^T`, `dB' = alpha A'^T dY`; a
/// transposed operand gets the transpose of that, and each case is one `Gemm` with the right flags.
fn gemm_vjp(g: &mut Graph, node: &Node, dy: ValueId, s: GemmSpec, want: [bool; 3]) -> Result<Vec<Option<ValueId>>> {
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let spec = |trans_a, trans_b| GemmSpec { alpha: s.alpha, beta: 0.0, trans_a, trans_b };
    let da = if want[0] {
        Some(match s.trans_a {
            false => g.gemm(dy, b, None, spec(false, !s.trans_b))?,
            true => g.gemm(b, dy, None, spec(s.trans_b, true))?,
        })
    } else {
        None
    };
    let db = if want[1] {
        Some(match s.trans_b {
            false => g.gemm(a, dy, None, spec(!s.trans_a, false))?,
            true => g.gemm(dy, a, None, spec(true, s.trans_a))?,
        })
    } else {
        None
    };
    let dc = match node.inputs.get(2) {
        Some(&c) if want[2] => {
            let t = g.scale(dy, s.beta as f64)?;
            Some(unbroadcast(g, t, c)?)
        }
        _ => None,
    };
    Ok(vec![da, db, dc])
}

/// `[1, 0, 2, 3, ...]`: swaps the batch and channel axes.
fn swap_nc(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    let mut perm: Vec<usize> = (0..g.shape(x).len()).collect();
    perm.swap(0, 1);
    g.transpose(x, &perm)
}

/// Keeps the first `want[i]` entries of each spatial axis (axes 2..) when `x` is longer.
fn crop_spatial(g: &mut Graph, x: ValueId, want: &[usize]) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let axes: Vec<usize> = (0..want.len()).filter(|&i| shape[i + 2] != want[i]).collect();
    if axes.is_empty() {
        return Ok(x);
    }
    let axis_ids: Vec<i64> = axes.iter().map(|&i| (i + 2) as i64).collect();
    let ends: Vec<usize> = axes.iter().map(|&i| want[i]).collect();
    g.slice(x, &axis_ids, &vec![0; axes.len()], &ends)
}

/// The weight gradient of a convolution as a convolution: `input` and `kernel` are the N/C-swapped operands; the
/// forward dilation becomes the stride and the forward stride the dilation.
fn weight_grad(
    g: &mut Graph,
    input: ValueId,
    kernel: ValueId,
    fwd: &ConvSpec,
    kernel_size: &[usize],
) -> Result<ValueId> {
    let spec = ConvSpec {
        strides: fwd.dilations.clone(),
        pads: fwd.pads.clone(),
        dilations: fwd.strides.clone(),
        output_padding: vec![0; fwd.rank()],
    };
    let it = swap_nc(g, input)?;
    let kt = swap_nc(g, kernel)?;
    let z = g.conv(it, kt, None, &spec)?;
    let z = crop_spatial(g, z, kernel_size)?;
    swap_nc(g, z)
}

fn bias_grad(g: &mut Graph, dy: ValueId) -> Result<ValueId> {
    let axes: Vec<i64> = (0..g.shape(dy).len() as i64).filter(|&a| a != 1).collect();
    g.reduce_sum(dy, &axes, false)
}

fn conv_vjp(g: &mut Graph, node: &Node, dy: ValueId, spec: &ConvSpec, want: [bool; 3]) -> Result<Vec<Option<ValueId>>> {
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let (sx, sw) = (g.shape(x).to_vec(), g.shape(w).to_vec());
    let dx = if want[0] {
        let output_padding = (0..spec.rank())
            .map(|i| {
                let span = spec.dilations[i] * (sw[i + 2] - 1) + 1;
                (sx[i + 2] + spec.pad_begin(i) + spec.pad_end(i) - span) % spec.strides[i]
            })
            .collect();
        let t_spec = ConvSpec { output_padding, ..spec.clone() };
        Some(g.conv_transpose(dy, w, None, &t_spec)?)
    } else {
        None
    };
    let dw = if want[1] { Some(weight_grad(g, x, dy, spec, &sw[2..])?) } else { None };
    let db = if want[2] && node.inputs.len() > 2 { Some(bias_grad(g, dy)?) } else { None };
    Ok(vec![dx, dw, db])
}

fn conv_transpose_vjp(
    g: &mut Graph,
    node: &Node,
    dy: ValueId,
    spec: &ConvSpec,
    want: [bool; 3],
) -> Result<Vec<Option<ValueId>>> {
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let (sx, sw) = (g.shape(x).to_vec(), g.shape(w).to_vec());
    let dx = if want[0] {
        let c_spec = ConvSpec { output_padding: vec![0; spec.rank()], ..spec.clone() };
        let t = g.conv(dy, w, None, &c_spec)?;
        Some(crop_spatial(g, t, &sx[2..])?)
    } else {
        None
    };
    let dw = if want[1] { Some(weight_grad(g, dy, x, spec, &sw[2..])?) } else { None };
    let db = if want[2] && node.inputs.len() > 2 { Some(bias_grad(g, dy)?) } else { None };
    Ok(vec![dx, dw, db])
}

/// Inference-mode batch norm `y = (x - mean) * inv * scale + bias` with `inv = 1/sqrt(var + eps)`, all
/// per channel: every input gets its gradient (mean and var too, should they be computed values).
fn batch_norm_vjp(g: &mut Graph, node: &Node, dy: ValueId, epsilon: f32) -> Result<Vec<Option<ValueId>>> {
    let [x, scale, _bias, mean, var] = node.inputs[..] else {
        return Err(Error::Autodiff("BatchNormalization needs 5 inputs".into()));
    };
    let shape = g.shape(x).to_vec();
    let mut per_channel = vec![1; shape.len()];
    per_channel[1] = shape[1];
    let axes: Vec<i64> = (0..shape.len() as i64).filter(|&a| a != 1).collect();
    let ve = g.add_scalar(var, epsilon as f64)?;
    let sd = g.sqrt(ve)?;
    let inv = g.reciprocal(sd)?;
    let gain = g.mul(scale, inv)?;
    let gain_b = g.reshape_to(gain, &per_channel)?;
    let dx = g.mul(dy, gain_b)?;
    let mean_b = g.reshape_to(mean, &per_channel)?;
    let xc = g.sub(x, mean_b)?;
    let dy_xc = g.mul(dy, xc)?;
    let sum_dy_xc = g.reduce_sum(dy_xc, &axes, false)?;
    let dscale = g.mul(sum_dy_xc, inv)?;
    let dbias = g.reduce_sum(dy, &axes, false)?;
    let t = g.mul(dbias, gain)?;
    let dmean = g.neg(t)?;
    // d inv / d var = -inv^3 / 2
    let inv2 = g.mul(inv, inv)?;
    let inv3 = g.mul(inv2, inv)?;
    let t = g.mul(sum_dy_xc, scale)?;
    let t = g.mul(t, inv3)?;
    let dvar = g.scale(t, -0.5)?;
    Ok(vec![Some(dx), Some(dscale), Some(dbias), Some(dmean), Some(dvar)])
}

/// Routes each output gradient to the input element that won its window, by scattering (with addition, so
/// overlapping windows that pick the same element add up) into zeros at MaxPool's flat indices. MaxPool picks
/// one index per window, so tied maxima get the gradient once, not once per tied element.
fn max_pool_vjp(g: &mut Graph, x: ValueId, indices: ValueId, dy: ValueId) -> Result<ValueId> {
    let x_shape = g.shape(x).to_vec();
    let n_out: usize = g.shape(dy).iter().product();
    let zeros = g.fill(g.dtype(dy), &[x_shape.iter().product()], 0.0)?;
    let flat_idx = g.reshape_to(indices, &[n_out])?;
    let flat_dy = g.reshape_to(dy, &[n_out])?;
    let scattered = g.scatter_add(zeros, flat_idx, flat_dy, 0)?;
    g.reshape_to(scattered, &x_shape)
}

/// Slices the output gradient back into one piece per input.
fn concat_vjp(g: &mut Graph, node: &Node, dy: ValueId, axis: usize, needs: &[bool]) -> Result<Vec<Option<ValueId>>> {
    let mut offset = 0;
    let mut out = Vec::with_capacity(node.inputs.len());
    for (i, &x) in node.inputs.iter().enumerate() {
        let len = g.shape(x)[axis];
        out.push(if needs[i] { Some(g.slice(dy, &[axis as i64], &[offset], &[offset + len])?) } else { None });
        offset += len;
    }
    Ok(out)
}

/// Spreads the gradient of a reduction back over the reduced axes (divided by their size for a mean).
fn reduce_vjp(g: &mut Graph, x: ValueId, dy: ValueId, axes: &[usize], keepdims: bool, mean: bool) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let kept = if keepdims { dy } else { g.reshape_to(dy, &reduced(&shape, axes, true))? };
    let spread = g.expand(kept, &shape)?;
    if !mean {
        return Ok(spread);
    }
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    g.scale(spread, 1.0 / count as f64)
}
