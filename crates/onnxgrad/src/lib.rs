//! onnxgrad: a typed ONNX graph builder with reverse-mode autodiff, losses and in-graph optimisers.
pub mod autodiff;
mod builder;
mod composite;
pub mod error;
pub mod ir;
pub mod ops;
pub mod proto;
pub mod shape;
mod vjp;

pub use autodiff::{gradients, Gradients};
pub use composite::BatchNormTrain;
pub use error::{Error, Result};
pub use ir::{DType, Graph, Node, Scope, Source, Tensor, TensorData, Value, ValueId};
pub use ops::{ConvSpec, GemmSpec, Op, PoolSpec};
pub use proto::{decode_model, IR_VERSION, OPSET};
