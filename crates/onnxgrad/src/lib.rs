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
#![forbid(unsafe_code)]

pub mod autodiff;
mod builder;
mod composite;
pub mod error;
pub mod ir;
pub mod loss;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod proto;
pub mod shape;
mod vjp;

pub use autodiff::{gradients, Gradients};
pub use composite::BatchNormTrain;
pub use error::{Error, Result};
pub use ir::{DType, Graph, Node, Scope, Source, Tensor, TensorData, Value, ValueId};
pub use ops::{ConvSpec, GemmSpec, Op, PoolSpec};
pub use proto::{decode_model, IR_VERSION, OPSET};
