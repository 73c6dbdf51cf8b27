//! anime-pipe: staged, reproducible anime-face dataset pipeline and DCGAN trainer.
//!
//! Layers, each importing only the ones below it (checked by `tests/it/architecture.rs`):
//!
//! 1. `cli` (clap definitions) and `commands` (one resolve per command: command line + pipeline.yaml -> request).
//! 2. `config`: pipeline.yaml's options and their resolution into the settings below.
//! 3. The work: `stages` (the pipeline and its stage protocol), `inspect` (stats, verify, contact sheet),
//!    `train`, `eval`, `sample_data`.
//! 4. What the work is built from: `gan` (models, step graphs, runner, exported generators), `faces` (detectors,
//!    crop geometry, super-resolution).
//! 5. Foundations: `env`, `imageio`, `pixels`, `measure`, `imagehash`, `quality`, `cache`, `manifest`, `shards`,
//!    `digest`, `rundir`, `models`, `workdir`, `runtime`, `report`, `named`.
//!
//! The ONNX autodiff engine (`onnxgrad`) and the linear algebra of FID (`anime-linalg`) are separate crates.
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod digest;
pub mod env;
pub mod eval;
pub mod faces;
pub mod gan;
pub mod gc;
pub mod imagehash;
pub mod imageio;
pub mod inspect;
pub mod manifest;
pub mod measure;
pub mod memo;
pub mod models;
pub mod named;
pub mod partition;
pub mod pixels;
pub mod quality;
pub mod report;
pub mod rundir;
pub mod runtime;
pub mod sample_data;
pub mod shards;
pub mod stages;
pub mod train;
pub mod workdir;
