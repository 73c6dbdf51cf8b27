//! The GAN: models as code, training-step graphs as standard ONNX, and the runner that executes them with ONNX
//! Runtime.
pub mod bench;
pub mod export;
pub mod models;
pub mod runner;
pub mod steps;
