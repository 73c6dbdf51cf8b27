//! The operator set: one [`Op`] variant per ONNX operator this crate emits, with its attributes, and how it maps to
//! an ONNX `op_type` and attribute list (opset [`crate::OPSET`]).
//!
//! Operands that ONNX takes as inputs rather than attributes (Reshape's shape, the reductions' axes, Slice's
//! starts/ends, Pad's pads) are stored both here (for shape inference and gradients) and as `i64` initializer
//! inputs of the node (for ONNX).
use crate::tensor::{DType, Tensor};

/// Geometry of a convolution or transposed convolution over `n` spatial axes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSpec {
    /// One per spatial axis.
    pub strides: Vec<usize>,
    /// ONNX order: all begins, then all ends (`[top, left, bottom, right]` in 2-D).
    pub pads: Vec<usize>,
    /// One per spatial axis.
    pub dilations: Vec<usize>,
    /// ConvTranspose only: extra rows/columns at the end of the output, each smaller than the stride.
    pub output_padding: Vec<usize>,
}

impl ConvSpec {
    /// A 2-D convolution with the same stride and padding on both axes, dilation 1.
    pub fn new2d(stride: usize, pad: usize) -> ConvSpec {
        ConvSpec::new(2, stride, pad)
    }

    /// An `n`-D convolution with the same stride and padding on every axis, dilation 1.
    pub fn new(n: usize, stride: usize, pad: usize) -> ConvSpec {
        ConvSpec { strides: vec![stride; n], pads: vec![pad; 2 * n], dilations: vec![1; n], output_padding: vec![0; n] }
    }

    /// Same, with `output_padding` on every axis (ConvTranspose).
    pub fn with_output_padding(mut self, output_padding: usize) -> ConvSpec {
        self.output_padding = vec![output_padding; self.strides.len()];
        self
    }

    /// Same, with dilation `d` on every axis.
    pub fn with_dilation(mut self, d: usize) -> ConvSpec {
        self.dilations = vec![d; self.strides.len()];
        self
    }

    /// Number of spatial axes.
    pub fn rank(&self) -> usize {
        self.strides.len()
    }

    pub(crate) fn pad_begin(&self, axis: usize) -> usize {
        self.pads[axis]
    }

    pub(crate) fn pad_end(&self, axis: usize) -> usize {
        self.pads[self.rank() + axis]
    }
}

/// Geometry of a max pooling window over `n` spatial axes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    /// ONNX order: all begins, then all ends. Padding never wins the max.
    pub pads: Vec<usize>,
}

impl PoolSpec {
    /// A 2-D `k x k` window with the same stride and padding on both axes.
    pub fn new2d(kernel: usize, stride: usize, pad: usize) -> PoolSpec {
        PoolSpec { kernel: vec![kernel; 2], strides: vec![stride; 2], pads: vec![pad; 4] }
    }
}

/// Gemm's flags: `Y = alpha * op(A) * op(B) + beta * C`, `op` transposing when asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmSpec {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for GemmSpec {
    fn default() -> Self {
        GemmSpec { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false }
    }
}

/// An operator with its attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    // Elementwise, one input.
    Identity,
    /// Serialised as `Identity`; autodiff sends no gradient through it.
    StopGradient,
    Neg,
    Abs,
    Sign,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    Sigmoid,
    Softplus,
    Not,
    // Elementwise with numpy broadcasting.
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Equal,
    Greater,
    Less,
    Where,
    /// Variadic elementwise sum (used to accumulate gradients).
    Sum,
    // Linear algebra and convolutions.
    MatMul,
    Gemm(GemmSpec),
    Conv(ConvSpec),
    ConvTranspose(ConvSpec),
    /// `BatchNormalization` in inference mode (given mean and variance); training mode is built from primitives.
    BatchNormInference {
        epsilon: f32,
    },
    MaxPool(PoolSpec),
    /// `MaxPool` with its second output, the flat indices of the maxima (used by MaxPool's gradient).
    MaxPoolWithIndices(PoolSpec),
    // Shape and data movement.
    Reshape {
        shape: Vec<usize>,
    },
    Flatten {
        axis: usize,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    /// Step-1 slice: `x[starts[i]..ends[i]]` along `axes[i]`.
    Slice {
        axes: Vec<usize>,
        starts: Vec<usize>,
        ends: Vec<usize>,
    },
    /// Zero padding, ONNX order (begins then ends, one pair per axis).
    Pad {
        pads: Vec<usize>,
    },
    Expand {
        shape: Vec<usize>,
    },
    /// `DepthToSpace` in "DCR" order: `[N, b*b*C, H, W]` -> `[N, C, H*b, W*b]`, input channel `(i*b + j)*C + c`
    /// going to output pixel `(h*b + i, w*b + j)` of channel `c`.
    DepthToSpace {
        blocksize: usize,
    },
    ReduceSum {
        axes: Vec<usize>,
        keepdims: bool,
    },
    ReduceMean {
        axes: Vec<usize>,
        keepdims: bool,
    },
    Cast {
        to: DType,
    },
    /// A tensor of `shape` filled with the scalar `value`.
    ConstantOfShape {
        shape: Vec<usize>,
        value: Tensor,
    },
    /// `ScatterElements(data, indices, updates, reduction="add")` along `axis`.
    ScatterAdd {
        axis: usize,
    },
}

/// An attribute value, before protobuf encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    String(String),
    Tensor(Tensor),
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

impl Op {
    /// The ONNX `op_type`.
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Op::Identity | Op::StopGradient => "Identity",
            Op::Neg => "Neg",
            Op::Abs => "Abs",
            Op::Sign => "Sign",
            Op::Exp => "Exp",
            Op::Log => "Log",
            Op::Sqrt => "Sqrt",
            Op::Reciprocal => "Reciprocal",
            Op::Relu => "Relu",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Tanh => "Tanh",
            Op::Sigmoid => "Sigmoid",
            Op::Softplus => "Softplus",
            Op::Not => "Not",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Pow => "Pow",
            Op::Equal => "Equal",
            Op::Greater => "Greater",
            Op::Less => "Less",
            Op::Where => "Where",
            Op::Sum => "Sum",
            Op::MatMul => "MatMul",
            Op::Gemm(_) => "Gemm",
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::BatchNormInference { .. } => "BatchNormalization",
            Op::MaxPool(_) | Op::MaxPoolWithIndices(_) => "MaxPool",
            Op::Reshape { .. } => "Reshape",
            Op::Flatten { .. } => "Flatten",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Pad { .. } => "Pad",
            Op::Expand { .. } => "Expand",
            Op::DepthToSpace { .. } => "DepthToSpace",
            Op::ReduceSum { .. } => "ReduceSum",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Cast { .. } => "Cast",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::ScatterAdd { .. } => "ScatterElements",
        }
    }

    /// The ONNX attributes, by name.
    pub fn attributes(&self) -> Vec<(&'static str, Attr)> {
        match self {
            Op::LeakyRelu { alpha } => vec![("alpha", Attr::Float(*alpha))],
            Op::Gemm(s) => vec![
                ("alpha", Attr::Float(s.alpha)),
                ("beta", Attr::Float(s.beta)),
                ("transA", Attr::Int(s.trans_a as i64)),
                ("transB", Attr::Int(s.trans_b as i64)),
            ],
            Op::Conv(s) => vec![
                ("strides", ints(&s.strides)),
                ("pads", ints(&s.pads)),
                ("dilations", ints(&s.dilations)),
                ("group", Attr::Int(1)),
            ],
            Op::ConvTranspose(s) => vec![
                ("strides", ints(&s.strides)),
                ("pads", ints(&s.pads)),
                ("dilations", ints(&s.dilations)),
                ("output_padding", ints(&s.output_padding)),
                ("group", Attr::Int(1)),
            ],
            Op::BatchNormInference { epsilon } => vec![("epsilon", Attr::Float(*epsilon))],
            Op::MaxPool(p) | Op::MaxPoolWithIndices(p) => vec![
                ("kernel_shape", ints(&p.kernel)),
                ("strides", ints(&p.strides)),
                ("pads", ints(&p.pads)),
                ("storage_order", Attr::Int(0)),
            ],
            Op::Flatten { axis } => vec![("axis", Attr::Int(*axis as i64))],
            Op::DepthToSpace { blocksize } => {
                vec![("blocksize", Attr::Int(*blocksize as i64)), ("mode", Attr::String("DCR".into()))]
            }
            Op::Transpose { perm } => vec![("perm", ints(perm))],
            Op::Concat { axis } => vec![("axis", Attr::Int(*axis as i64))],
            Op::Pad { .. } => vec![("mode", Attr::String("constant".into()))],
            Op::ReduceSum { keepdims, .. } | Op::ReduceMean { keepdims, .. } => {
                vec![("keepdims", Attr::Int(*keepdims as i64))]
            }
            Op::Cast { to } => vec![("to", Attr::Int(to.onnx_code() as i64))],
            Op::ConstantOfShape { value, .. } => vec![("value", Attr::Tensor(value.clone()))],
            Op::ScatterAdd { axis } => {
                vec![("axis", Attr::Int(*axis as i64)), ("reduction", Attr::String("add".into()))]
            }
            _ => vec![],
        }
    }

    /// Whether gradients can flow from this op's outputs to its inputs at all. Comparisons, `Sign`, `Not`,
    /// `StopGradient` and constants have none.
    pub fn is_differentiable(&self) -> bool {
        !matches!(
            self,
            Op::StopGradient
                | Op::Sign
                | Op::Not
                | Op::Equal
                | Op::Greater
                | Op::Less
                | Op::ConstantOfShape { .. }
                | Op::ScatterAdd { .. }
        )
    }

    /// A short lower-case name for value names (`conv`, `relu`, ...).
    pub fn short_name(&self) -> String {
        let t = match self {
            Op::StopGradient => "stop_gradient",
            Op::BatchNormInference { .. } => "batch_norm",
            Op::ConvTranspose(_) => "conv_transpose",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::DepthToSpace { .. } => "depth_to_space",
            Op::ConstantOfShape { .. } => "fill",
            other => other.onnx_type(),
        };
        let mut out = String::new();
        for (i, c) in t.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
}
