//! # onnxgrad
//!
//! A small typed ONNX graph IR with reverse-mode autodiff, losses and in-graph optimisers. It emits standard
//! ONNX (opset [`OPSET`], no custom operators, no training extensions), so a whole training step (forward,
//! backward, optimiser update) runs in any stock ONNX Runtime, on any execution provider.
//!
//! * [`Graph`] ([`ir`]): values with static shapes and readable, scoped names; forward operators as methods
//!   ([`Graph::conv`], [`Graph::batch_norm_train`], [`Graph::add`], ...), each checking its operands and
//!   computing its output shape.
//! * [`gradients`] ([`autodiff`]): appends the gradient nodes of a scalar loss, written in the same operators.
//! * [`loss`]: binary cross-entropy with logits, mean squared error.
//! * [`optim`]: Adam/AdamW as graph nodes, with state in/out pairs (`X` -> `X.new`) for a trainer.
//! * [`nn`]: layers with seeded, named parameters in a [`nn::ParamStore`], for training and inference graphs.
//! * [`proto`]: the `ModelProto` encoder ([`Graph::to_onnx_bytes`]) and a decoder.
//!
//! ```
//! use onnxgrad::{loss, nn, optim, DType, Graph};
//!
//! let mut g = Graph::new("tiny_step");
//! let mut store = nn::ParamStore::new(42);
//! let x = g.input("x", DType::F32, &[8, 3])?;
//! let target = g.input("target", DType::F32, &[8, 1])?;
//! let mut net = nn::Net::new(&mut g, &mut store, nn::Mode::Train, nn::Binding::Inputs);
//! let h = net.linear("fc1", x, 16, true)?;
//! let h = net.graph().leaky_relu(h, 0.2)?;
//! let logits = net.linear("fc2", h, 1, true)?;
//! let params = net.finish().params;
//! let l = loss::bce_with_logits(&mut g, logits, target)?;
//! let step = optim::build_train_step(&mut g, l, &params, &optim::AdamOptions::adam())?;
//! assert!(step.state_pairs().contains(&("fc1.weight".to_string(), "fc1.weight.new".to_string())));
//! let onnx: Vec<u8> = g.to_onnx_bytes(); // ready for ort's `commit_from_memory`
//! assert_eq!(onnxgrad::decode_model(&onnx)?.graph.unwrap().output[0].name, "loss");
//! # Ok::<(), onnxgrad::Error>(())
//! ```
//!
//! ## Design notes
//! * **Opset 18, IR version 8.** Reductions take their axes as an input (opset 18), written as `i64`
//!   initializers like Reshape's shape and Slice's bounds. Shapes are static: every value's shape is known when it
//!   is built, which gradient rules need (undoing broadcasting, sizing convolution gradients).
//! * **Gradient rules use standard operators only** (see [`autodiff`] and the rules' module). Convolution
//!   gradients are `ConvTranspose`/`Conv` with swapped batch and channel axes, `output_padding` and a crop where
//!   the forward stride dropped trailing rows; MaxPool's routes each output gradient to its window's winner via
//!   `MaxPool`'s indices and `ScatterElements(reduction="add")`, so ties get the gradient once.
//! * **Training-mode batch norm is built from primitives** ([`Graph::batch_norm_train`]); inference mode is the
//!   `BatchNormalization` operator.
//! * **Dropout takes its mask as a graph input** ([`Graph::dropout`]): ONNX's random operators only have a fixed
//!   `seed` attribute, so per-step masks come from the caller.
//! * **Numerics:** every rule is checked against central differences through ONNX Runtime, in f64 where its CPU
//!   kernels have a double version (all operators here except `Conv` and `ConvTranspose`).
#![forbid(unsafe_code)]

pub mod autodiff;
mod builder;
mod composite;
pub mod ema;
pub mod error;
pub mod ir;
pub mod loss;
pub mod lower;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod proto;
pub mod shape;
pub mod tensor;
mod vjp;

pub use autodiff::{gradients, Gradients};
pub use composite::{BatchNormTrain, SpectralNorm};
pub use error::{Error, Result};
pub use ir::{DType, Graph, Node, Scope, Source, Tensor, TensorData, Value, ValueId};
pub use lower::Formulation;
pub use ops::{ConvSpec, GemmSpec, Op, PoolSpec};
pub use proto::{decode_model, IR_VERSION, OPSET};
