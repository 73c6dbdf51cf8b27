//! The integration tests, as one test binary (so the suite links polars and ONNX Runtime once, not once per
//! file): one module per area, and `support` with the shared helpers and fixtures.
//!
//! Run one area with a filter, e.g. `cargo test --test it pack::` (or `cargo test --test it -- --list`).

mod support;

mod architecture;

mod clean;
mod crop;
mod dedup;
mod dedup_recall;
mod eval_cli;
mod eval_inception;
mod eval_stats;
mod exported_generator;
mod gan_graphs;
mod gan_runner;
mod ingest;
mod ingest_resume;
mod ingest_spill;
mod lock;
mod locks;
mod models;
mod pack;
mod partitioned_pipeline;
mod partitions;
mod run_train;
mod slurm;
mod stats_verify;
mod streaming;
mod tensorboard;
mod train_run;
mod upscale;
