//! anime-pipe: staged, reproducible anime-face dataset pipeline and DCGAN trainer.
//!
//! Layout: `cli` (argument definitions only) -> `app` (dispatch) -> `stages::*` (one module per stage), over
//! shared pieces: `config` (pipeline.yaml -> resolved settings), `workdir` (paths, atomic writes), `manifest`
//! (Parquet I/O), `cache` (content-addressed objects), `imageio` (safe decoding), `report` (progress + summaries),
//! `runtime` (ONNX Runtime environment). The ONNX autodiff engine is the separate crate `onnxgrad`.
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod contact_sheet;
pub mod digest;
pub mod eval;
pub mod faces;
pub mod gan;
pub mod imageio;
pub mod manifest;
pub mod report;
pub mod runtime;
pub mod sample_data;
pub mod stages;
pub mod train;
pub mod workdir;
