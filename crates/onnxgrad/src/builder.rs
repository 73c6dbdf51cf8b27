//! Forward operators: one method on [`Graph`] per operator, each checking its operands and computing the static
//! output shape. Values are named after the current scope and the operator (`d.conv2.conv`).
use crate::error::{invalid, Result};
use crate::ir::{DType, Graph, Tensor, ValueId};
use crate::ops::{ConvSpec, GemmSpec, Op, PoolSpec};
use crate::shape::{broadcast, conv_out, conv_transpose_out, normalize_axes, normalize_axis, reduced};

impl Graph {
    /// Adds a single-output node named after the op.
    fn node1(&mut self, op: Op, inputs: Vec<ValueId>, dtype: DType, shape: Vec<usize>) -> ValueId {
        let base = op.short_name();
        self.add_node(&base, op, inputs, vec![(dtype, shape)])[0]
    }

    fn require_float(&self, op: &str, x: ValueId) -> Result<()> {
        if !self.dtype(x).is_float() {
            return Err(invalid(
                op,
                format!("{:?} is {:?}, a float type is needed", self.value_name(x), self.dtype(x)),
            ));
        }
        Ok(())
    }

    fn require_same_dtype(&self, op: &str, a: ValueId, b: ValueId) -> Result<()> {
        if self.dtype(a) != self.dtype(b) {
            return Err(invalid(
                op,
                format!(
                    "{:?} is {:?} but {:?} is {:?}",
                    self.value_name(a),
                    self.dtype(a),
                    self.value_name(b),
                    self.dtype(b)
                ),
            ));
        }
        Ok(())
    }

    fn require_rank(&self, op: &str, x: ValueId, rank: usize) -> Result<()> {
        if self.shape(x).len() != rank {
            return Err(invalid(
                op,
                format!("{:?} has shape {:?}, rank {rank} expected", self.value_name(x), self.shape(x)),
            ));
        }
        Ok(())
    }

    fn float_unary(&mut self, op: Op, x: ValueId) -> Result<ValueId> {
        self.require_float(op.onnx_type(), x)?;
        let (dtype, shape) = (self.dtype(x), self.shape(x).to_vec());
        Ok(self.node1(op, vec![x], dtype, shape))
    }

    pub fn relu(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Relu, x)
    }

    /// `x` where positive, `alpha * x` elsewhere.
    pub fn leaky_relu(&mut self, x: ValueId, alpha: f32) -> Result<ValueId> {
        self.float_unary(Op::LeakyRelu { alpha }, x)
    }

    pub fn tanh(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Tanh, x)
    }

    pub fn sigmoid(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Sigmoid, x)
    }

    pub fn exp(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Exp, x)
    }

    pub fn log(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Log, x)
    }

    pub fn sqrt(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Sqrt, x)
    }

    pub fn reciprocal(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Reciprocal, x)
    }

    /// `log(1 + exp(x))` (ONNX Runtime's CPU kernel is float32-only).
    pub fn softplus(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Softplus, x)
    }

    pub fn abs(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Abs, x)
    }

    pub fn neg(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Neg, x)
    }

    /// -1, 0 or 1 (no gradient).
    pub fn sign(&mut self, x: ValueId) -> Result<ValueId> {
        self.float_unary(Op::Sign, x)
    }

    pub fn identity(&mut self, x: ValueId) -> Result<ValueId> {
        let (dtype, shape) = (self.dtype(x), self.shape(x).to_vec());
        Ok(self.node1(Op::Identity, vec![x], dtype, shape))
    }

    /// `x` unchanged, with no gradient flowing back through it (`detach`).
    pub fn stop_gradient(&mut self, x: ValueId) -> Result<ValueId> {
        let (dtype, shape) = (self.dtype(x), self.shape(x).to_vec());
        Ok(self.node1(Op::StopGradient, vec![x], dtype, shape))
    }

    /// Logical not of a bool tensor.
    pub fn not(&mut self, x: ValueId) -> Result<ValueId> {
        if self.dtype(x) != DType::Bool {
            return Err(invalid("Not", "a bool input is needed"));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.node1(Op::Not, vec![x], DType::Bool, shape))
    }

    fn broadcasting(&mut self, op: Op, a: ValueId, b: ValueId) -> Result<ValueId> {
        let name = op.onnx_type();
        self.require_same_dtype(name, a, b)?;
        let shape = broadcast(name, self.shape(a), self.shape(b))?;
        let dtype = match op {
            Op::Equal | Op::Greater | Op::Less => DType::Bool,
            _ => {
                self.require_float(name, a)?;
                self.dtype(a)
            }
        };
        Ok(self.node1(op, vec![a, b], dtype, shape))
    }

    pub fn add(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Add, a, b)
    }

    pub fn sub(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Sub, a, b)
    }

    pub fn mul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Mul, a, b)
    }

    pub fn div(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Div, a, b)
    }

    /// `a ^ b` elementwise (same dtype).
    pub fn pow(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Pow, a, b)
    }

    pub fn equal(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Equal, a, b)
    }

    pub fn greater(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Greater, a, b)
    }

    pub fn less(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.broadcasting(Op::Less, a, b)
    }

    /// `x * c` for a scalar constant `c`.
    pub fn scale(&mut self, x: ValueId, c: f64) -> Result<ValueId> {
        let c = self.scalar_like(x, c);
        self.mul(x, c)
    }

    /// `x + c` for a scalar constant `c`.
    pub fn add_scalar(&mut self, x: ValueId, c: f64) -> Result<ValueId> {
        let c = self.scalar_like(x, c);
        self.add(x, c)
    }

    /// `cond ? a : b` elementwise, broadcasting all three.
    pub fn where_(&mut self, cond: ValueId, a: ValueId, b: ValueId) -> Result<ValueId> {
        if self.dtype(cond) != DType::Bool {
            return Err(invalid("Where", "the condition must be bool"));
        }
        self.require_same_dtype("Where", a, b)?;
        let ab = broadcast("Where", self.shape(a), self.shape(b))?;
        let shape = broadcast("Where", self.shape(cond), &ab)?;
        let dtype = self.dtype(a);
        Ok(self.node1(Op::Where, vec![cond, a, b], dtype, shape))
    }

    /// Elementwise sum of one or more tensors of the same dtype, broadcasting.
    pub fn sum(&mut self, xs: &[ValueId]) -> Result<ValueId> {
        let (&first, rest) = xs.split_first().ok_or_else(|| invalid("Sum", "needs at least one input"))?;
        let mut shape = self.shape(first).to_vec();
        for &x in rest {
            self.require_same_dtype("Sum", first, x)?;
            shape = broadcast("Sum", &shape, self.shape(x))?;
        }
        let dtype = self.dtype(first);
        Ok(self.node1(Op::Sum, xs.to_vec(), dtype, shape))
    }

    /// Batched matrix product of rank >= 2 tensors (`[..., m, k] x [..., k, n]`, batch axes broadcast).
    pub fn matmul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.require_same_dtype("MatMul", a, b)?;
        self.require_float("MatMul", a)?;
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        if sa.len() < 2 || sb.len() < 2 {
            return Err(invalid("MatMul", format!("shapes {sa:?} x {sb:?}: both operands need rank >= 2")));
        }
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(invalid("MatMul", format!("shapes {sa:?} x {sb:?}: inner dimensions differ")));
        }
        let mut shape = broadcast("MatMul", &sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
        shape.extend([m, n]);
        let dtype = self.dtype(a);
        Ok(self.node1(Op::MatMul, vec![a, b], dtype, shape))
    }

    /// `alpha * op(a) op(b) + beta * c` for matrices; `c` (optional) broadcasts to the `[M, N]` result.
    pub fn gemm(&mut self, a: ValueId, b: ValueId, c: Option<ValueId>, spec: GemmSpec) -> Result<ValueId> {
        self.require_same_dtype("Gemm", a, b)?;
        self.require_float("Gemm", a)?;
        self.require_rank("Gemm", a, 2)?;
        self.require_rank("Gemm", b, 2)?;
        let (sa, sb) = (self.shape(a), self.shape(b));
        let (m, k) = if spec.trans_a { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
        let (k2, n) = if spec.trans_b { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
        if k != k2 {
            return Err(invalid(
                "Gemm",
                format!("shapes {sa:?} x {sb:?} (transposed {spec:?}): inner dimensions differ"),
            ));
        }
        let mut inputs = vec![a, b];
        if let Some(c) = c {
            self.require_same_dtype("Gemm", a, c)?;
            if broadcast("Gemm", self.shape(c), &[m, n])? != [m, n] {
                return Err(invalid("Gemm", format!("C {:?} does not broadcast to [{m}, {n}]", self.shape(c))));
            }
            inputs.push(c);
        }
        let dtype = self.dtype(a);
        Ok(self.node1(Op::Gemm(spec), inputs, dtype, vec![m, n]))
    }

    fn check_conv_operands(&self, op: &str, x: ValueId, w: ValueId, spec: &ConvSpec) -> Result<()> {
        self.require_same_dtype(op, x, w)?;
        self.require_float(op, x)?;
        let n = spec.rank();
        let (sx, sw) = (self.shape(x), self.shape(w));
        let lens_ok = spec.pads.len() == 2 * n && spec.dilations.len() == n && spec.output_padding.len() == n;
        if sx.len() != n + 2 || sw.len() != n + 2 || !lens_ok {
            return Err(invalid(op, format!("input {sx:?}, weight {sw:?} and spec {spec:?} disagree on the rank")));
        }
        if spec.strides.contains(&0) || spec.dilations.contains(&0) {
            return Err(invalid(op, "strides and dilations must be positive"));
        }
        Ok(())
    }

    fn check_bias(&self, op: &str, x: ValueId, bias: Option<ValueId>, channels: usize) -> Result<()> {
        if let Some(b) = bias {
            self.require_same_dtype(op, x, b)?;
            if self.shape(b) != [channels] {
                return Err(invalid(op, format!("bias {:?} should have shape [{channels}]", self.shape(b))));
            }
        }
        Ok(())
    }

    /// N-d convolution (`group = 1`): `x [N, C, *in]`, `w [M, C, *k]`, optional `bias [M]` -> `[N, M, *out]`.
    pub fn conv(&mut self, x: ValueId, w: ValueId, bias: Option<ValueId>, spec: &ConvSpec) -> Result<ValueId> {
        self.check_conv_operands("Conv", x, w, spec)?;
        let (sx, sw) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if sx[1] != sw[1] {
            return Err(invalid(
                "Conv",
                format!("input {sx:?} has {} channels, weight {sw:?} expects {}", sx[1], sw[1]),
            ));
        }
        if spec.output_padding.iter().any(|&p| p != 0) {
            return Err(invalid("Conv", "output_padding is for ConvTranspose"));
        }
        self.check_bias("Conv", x, bias, sw[0])?;
        let mut shape = vec![sx[0], sw[0]];
        for i in 0..spec.rank() {
            let pads = (spec.pad_begin(i), spec.pad_end(i));
            let len = conv_out(sx[i + 2], sw[i + 2], spec.strides[i], pads, spec.dilations[i]);
            shape.push(len.ok_or_else(|| invalid("Conv", format!("input {sx:?} is smaller than kernel {sw:?}")))?);
        }
        let inputs = [x, w].into_iter().chain(bias).collect();
        let dtype = self.dtype(x);
        Ok(self.node1(Op::Conv(spec.clone()), inputs, dtype, shape))
    }

    /// N-d transposed convolution (`group = 1`): `x [N, C, *in]`, `w [C, M, *k]`, optional `bias [M]`.
    pub fn conv_transpose(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        spec: &ConvSpec,
    ) -> Result<ValueId> {
        self.check_conv_operands("ConvTranspose", x, w, spec)?;
        let (sx, sw) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if sx[1] != sw[0] {
            return Err(invalid(
                "ConvTranspose",
                format!("input {sx:?} has {} channels, weight {sw:?} expects {}", sx[1], sw[0]),
            ));
        }
        let too_big = (0..spec.rank()).any(|i| spec.output_padding[i] >= spec.strides[i].max(spec.dilations[i]));
        if too_big {
            return Err(invalid("ConvTranspose", "output_padding must be smaller than the stride or the dilation"));
        }
        self.check_bias("ConvTranspose", x, bias, sw[1])?;
        let mut shape = vec![sx[0], sw[1]];
        for i in 0..spec.rank() {
            let pads = (spec.pad_begin(i), spec.pad_end(i));
            let len = conv_transpose_out(
                sx[i + 2],
                sw[i + 2],
                spec.strides[i],
                pads,
                spec.dilations[i],
                spec.output_padding[i],
            );
            shape.push(len.ok_or_else(|| invalid("ConvTranspose", format!("pads {:?} leave no output", spec.pads)))?);
        }
        let inputs = [x, w].into_iter().chain(bias).collect();
        let dtype = self.dtype(x);
        Ok(self.node1(Op::ConvTranspose(spec.clone()), inputs, dtype, shape))
    }

    /// `BatchNormalization` in inference mode: `(x - mean) / sqrt(var + eps) * scale + bias` per channel (axis 1).
    /// For training mode (batch statistics) see [`Graph::batch_norm_train`].
    pub fn batch_norm_inference(
        &mut self,
        x: ValueId,
        scale: ValueId,
        bias: ValueId,
        mean: ValueId,
        var: ValueId,
        epsilon: f32,
    ) -> Result<ValueId> {
        self.require_float("BatchNormalization", x)?;
        let shape = self.shape(x).to_vec();
        if shape.len() < 2 {
            return Err(invalid("BatchNormalization", format!("input {shape:?} needs a channel axis")));
        }
        for p in [scale, bias, mean, var] {
            self.require_same_dtype("BatchNormalization", x, p)?;
            if self.shape(p) != [shape[1]] {
                return Err(invalid(
                    "BatchNormalization",
                    format!("{:?} should have shape [{}]", self.value_name(p), shape[1]),
                ));
            }
        }
        let dtype = self.dtype(x);
        Ok(self.node1(Op::BatchNormInference { epsilon }, vec![x, scale, bias, mean, var], dtype, shape))
    }

    fn pool_shape(&self, x: ValueId, spec: &PoolSpec) -> Result<Vec<usize>> {
        self.require_float("MaxPool", x)?;
        let sx = self.shape(x);
        let n = spec.kernel.len();
        if sx.len() != n + 2 || spec.strides.len() != n || spec.pads.len() != 2 * n || spec.strides.contains(&0) {
            return Err(invalid("MaxPool", format!("input {sx:?} and {spec:?} disagree")));
        }
        let mut shape = sx[..2].to_vec();
        for i in 0..n {
            if spec.pads[i] >= spec.kernel[i] || spec.pads[n + i] >= spec.kernel[i] {
                return Err(invalid("MaxPool", "pads must be smaller than the kernel"));
            }
            let len = conv_out(sx[i + 2], spec.kernel[i], spec.strides[i], (spec.pads[i], spec.pads[n + i]), 1);
            shape.push(len.ok_or_else(|| invalid("MaxPool", format!("input {sx:?} is smaller than the window")))?);
        }
        Ok(shape)
    }

    /// Max pooling (floor mode); padding never wins.
    pub fn max_pool(&mut self, x: ValueId, spec: &PoolSpec) -> Result<ValueId> {
        let shape = self.pool_shape(x, spec)?;
        let dtype = self.dtype(x);
        Ok(self.node1(Op::MaxPool(spec.clone()), vec![x], dtype, shape))
    }

    /// Max pooling plus the flat (over the whole input tensor) `i64` index of each maximum.
    pub fn max_pool_with_indices(&mut self, x: ValueId, spec: &PoolSpec) -> Result<(ValueId, ValueId)> {
        let shape = self.pool_shape(x, spec)?;
        let outs = vec![(self.dtype(x), shape.clone()), (DType::I64, shape)];
        let ids = self.add_node("max_pool", Op::MaxPoolWithIndices(spec.clone()), vec![x], outs);
        Ok((ids[0], ids[1]))
    }

    /// Reshape to `shape`; one entry may be -1 (inferred from the element count).
    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        let numel: usize = self.shape(x).iter().product();
        let bad = || invalid("Reshape", format!("cannot reshape {:?} to {shape:?}", self.shape(x)));
        let holes = shape.iter().filter(|&&d| d == -1).count();
        if holes > 1 || shape.iter().any(|&d| d < -1) {
            return Err(bad());
        }
        let known: usize = shape.iter().filter(|&&d| d != -1).map(|&d| d as usize).product();
        let hole = match (holes, known) {
            (0, _) => 1,
            (_, 0) => return Err(bad()),
            _ if numel.is_multiple_of(known) => numel / known,
            _ => return Err(bad()),
        };
        let resolved: Vec<usize> = shape.iter().map(|&d| if d == -1 { hole } else { d as usize }).collect();
        self.reshape_to(x, &resolved)
    }

    /// Reshape to a fully specified shape.
    pub(crate) fn reshape_to(&mut self, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        if shape.iter().product::<usize>() != self.shape(x).iter().product::<usize>() {
            return Err(invalid("Reshape", format!("cannot reshape {:?} to {shape:?}", self.shape(x))));
        }
        let c = self.i64_constant("shape", &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        let dtype = self.dtype(x);
        Ok(self.node1(Op::Reshape { shape: shape.to_vec() }, vec![x, c], dtype, shape.to_vec()))
    }

    /// Collapses axes `[0, axis)` and `[axis, rank)` into a matrix.
    pub fn flatten(&mut self, x: ValueId, axis: usize) -> Result<ValueId> {
        let s = self.shape(x).to_vec();
        if axis > s.len() {
            return Err(invalid("Flatten", format!("axis {axis} is out of range for {s:?}")));
        }
        let shape = vec![s[..axis].iter().product(), s[axis..].iter().product()];
        let dtype = self.dtype(x);
        Ok(self.node1(Op::Flatten { axis }, vec![x], dtype, shape))
    }

    /// Permutes axes: output axis `i` is input axis `perm[i]`.
    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        let s = self.shape(x).to_vec();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..s.len()).collect::<Vec<_>>() {
            return Err(invalid("Transpose", format!("{perm:?} is not a permutation of the axes of {s:?}")));
        }
        let shape = perm.iter().map(|&p| s[p]).collect();
        let dtype = self.dtype(x);
        Ok(self.node1(Op::Transpose { perm: perm.to_vec() }, vec![x], dtype, shape))
    }

    /// Joins tensors along `axis`; every other axis must agree.
    pub fn concat(&mut self, xs: &[ValueId], axis: i64) -> Result<ValueId> {
        let (&first, rest) = xs.split_first().ok_or_else(|| invalid("Concat", "needs at least one input"))?;
        let mut shape = self.shape(first).to_vec();
        let axis = normalize_axis("Concat", axis, shape.len())?;
        for &x in rest {
            self.require_same_dtype("Concat", first, x)?;
            let s = self.shape(x);
            let agree = s.len() == shape.len() && (0..s.len()).all(|i| i == axis || s[i] == shape[i]);
            if !agree {
                return Err(invalid("Concat", format!("{s:?} does not fit {shape:?} along axis {axis}")));
            }
            shape[axis] += s[axis];
        }
        let dtype = self.dtype(first);
        Ok(self.node1(Op::Concat { axis }, xs.to_vec(), dtype, shape))
    }

    /// `x[starts[i]..ends[i]]` along each of `axes` (step 1, bounds within the axis).
    pub fn slice(&mut self, x: ValueId, axes: &[i64], starts: &[usize], ends: &[usize]) -> Result<ValueId> {
        let mut shape = self.shape(x).to_vec();
        let axes = axes.iter().map(|&a| normalize_axis("Slice", a, shape.len())).collect::<Result<Vec<_>>>()?;
        if starts.len() != axes.len() || ends.len() != axes.len() {
            return Err(invalid("Slice", "axes, starts and ends need the same length"));
        }
        for (i, &a) in axes.iter().enumerate() {
            if starts[i] >= ends[i] || ends[i] > shape[a] {
                return Err(invalid(
                    "Slice",
                    format!("{}..{} is not inside axis {a} of {shape:?}", starts[i], ends[i]),
                ));
            }
            shape[a] = ends[i] - starts[i];
        }
        let as_i64 = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let c_starts = self.i64_constant("starts", &as_i64(starts));
        let c_ends = self.i64_constant("ends", &as_i64(ends));
        let c_axes = self.i64_constant("axes", &as_i64(&axes));
        let op = Op::Slice { axes, starts: starts.to_vec(), ends: ends.to_vec() };
        let dtype = self.dtype(x);
        Ok(self.node1(op, vec![x, c_starts, c_ends, c_axes], dtype, shape))
    }

    /// `DepthToSpace` ("DCR"): `x [N, b*b*C, H, W]` -> `[N, C, H*b, W*b]` (see [`Op::DepthToSpace`]).
    pub fn depth_to_space(&mut self, x: ValueId, blocksize: usize) -> Result<ValueId> {
        self.require_rank("DepthToSpace", x, 4)?;
        let s = self.shape(x).to_vec();
        let b2 = blocksize * blocksize;
        if blocksize == 0 || !s[1].is_multiple_of(b2) {
            return Err(invalid("DepthToSpace", format!("{s:?}: channels are not a multiple of {b2}")));
        }
        let shape = vec![s[0], s[1] / b2, s[2] * blocksize, s[3] * blocksize];
        let dtype = self.dtype(x);
        Ok(self.node1(Op::DepthToSpace { blocksize }, vec![x], dtype, shape))
    }

    /// Zero padding; `pads` holds all begins then all ends (ONNX order).
    pub fn pad(&mut self, x: ValueId, pads: &[usize]) -> Result<ValueId> {
        let s = self.shape(x).to_vec();
        if pads.len() != 2 * s.len() {
            return Err(invalid("Pad", format!("{} pads for rank {}", pads.len(), s.len())));
        }
        let shape = (0..s.len()).map(|i| s[i] + pads[i] + pads[s.len() + i]).collect();
        let c = self.i64_constant("pads", &pads.iter().map(|&p| p as i64).collect::<Vec<_>>());
        let dtype = self.dtype(x);
        Ok(self.node1(Op::Pad { pads: pads.to_vec() }, vec![x, c], dtype, shape))
    }

    /// Broadcasts `x` to `shape` (numpy rules).
    pub fn expand(&mut self, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        let out = broadcast("Expand", self.shape(x), shape)?;
        let c = self.i64_constant("shape", &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        let dtype = self.dtype(x);
        Ok(self.node1(Op::Expand { shape: shape.to_vec() }, vec![x, c], dtype, out))
    }

    fn reduce(&mut self, mean: bool, x: ValueId, axes: &[i64], keepdims: bool) -> Result<ValueId> {
        let name = if mean { "ReduceMean" } else { "ReduceSum" };
        self.require_float(name, x)?;
        let axes = normalize_axes(name, axes, self.shape(x).len())?;
        let shape = reduced(self.shape(x), &axes, keepdims);
        let c = self.i64_constant("axes", &axes.iter().map(|&a| a as i64).collect::<Vec<_>>());
        let op = if mean { Op::ReduceMean { axes, keepdims } } else { Op::ReduceSum { axes, keepdims } };
        let dtype = self.dtype(x);
        Ok(self.node1(op, vec![x, c], dtype, shape))
    }

    /// Sum over `axes` (empty: every axis).
    pub fn reduce_sum(&mut self, x: ValueId, axes: &[i64], keepdims: bool) -> Result<ValueId> {
        self.reduce(false, x, axes, keepdims)
    }

    /// Mean over `axes` (empty: every axis).
    pub fn reduce_mean(&mut self, x: ValueId, axes: &[i64], keepdims: bool) -> Result<ValueId> {
        self.reduce(true, x, axes, keepdims)
    }

    /// Sum of every element, as a scalar.
    pub fn sum_all(&mut self, x: ValueId) -> Result<ValueId> {
        self.reduce_sum(x, &[], false)
    }

    /// Mean of every element, as a scalar.
    pub fn mean_all(&mut self, x: ValueId) -> Result<ValueId> {
        self.reduce_mean(x, &[], false)
    }

    /// Converts to `to` (a no-op node when the dtype is already `to`).
    pub fn cast(&mut self, x: ValueId, to: DType) -> Result<ValueId> {
        let shape = self.shape(x).to_vec();
        Ok(self.node1(Op::Cast { to }, vec![x], to, shape))
    }

    /// A tensor of `shape` filled with `value`, computed at run time (`ConstantOfShape`): large constant tensors
    /// stay out of the model file.
    pub fn fill(&mut self, dtype: DType, shape: &[usize], value: f64) -> Result<ValueId> {
        let c = self.i64_constant("shape", &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        let op = Op::ConstantOfShape { shape: shape.to_vec(), value: Tensor::full(dtype, &[1], value) };
        Ok(self.node1(op, vec![c], dtype, shape.to_vec()))
    }

    /// `data` with `updates[i]` added at `indices[i]` along `axis` (`ScatterElements`, reduction "add").
    pub fn scatter_add(&mut self, data: ValueId, indices: ValueId, updates: ValueId, axis: usize) -> Result<ValueId> {
        self.require_same_dtype("ScatterElements", data, updates)?;
        if self.dtype(indices) != DType::I64 || self.shape(indices) != self.shape(updates) {
            return Err(invalid("ScatterElements", "indices must be i64 and shaped like the updates"));
        }
        let (dtype, shape) = (self.dtype(data), self.shape(data).to_vec());
        Ok(self.node1(Op::ScatterAdd { axis }, vec![data, indices, updates], dtype, shape))
    }
}
