//! `anime-pipe train` and `anime-pipe sample`: DCGAN training on ONNX Runtime, and inference with the result.
//!
//! ```text
//! anime-pipe train --preset dcgan64 --epochs 200        # the packed shards of pipeline.yaml's workdir
//! anime-pipe train --resume runs/dcgan64-20261122-111208 # after a crash or Ctrl-C: continues exactly
//! anime-pipe sample --model runs/<name>/generator.onnx -n 64 --grid 8x8 --out samples.png --seed 7
//! anime-pipe sample --model runs/<name>/generator.onnx --interpolate 10 --out walk.png
//! ```
//!
//! * [`presets`] - hyperparameters, the named presets and their resolution (preset < `train:` < flags).
//! * [`loader`] - memory-mapped shards, seeded per-epoch shuffles, augmentation, a prefetching thread.
//! * [`trainer`] - the loop over `gan::runner` (state stays on the execution provider's device between steps),
//!   metrics, samples, checkpoints, Ctrl-C and divergence handling, exact resume.
//! * [`run_config`] - `config.json`, and the architecture and runner configuration derived from the config.
//! * [`checkpoint`] - the checkpoint format (where checkpoints go is `crate::rundir`'s).
//! * [`plots`] - `loss.png`.
//! * [`progress`] - `progress.png`, the first row of each epoch's sample grid.
//! * [`sample`] - `anime-pipe sample` and the sample-grid layout; [`walks`] - its latent-space walks.
//! * [`tensorboard`] - TensorBoard event files (scalars and sample grids) for `tensorboard --logdir runs`.
//! * [`bench_loader`] - `train --bench-loader`: the loader's throughput alone.
//!
//! The run directory's layout and `metrics.parquet` (the contract with `anime-pipe eval`) are `crate::rundir`'s;
//! running exported generators and their latents are `crate::gan::generator`'s.
pub mod bench_loader;
pub mod checkpoint;
pub mod loader;
pub mod plots;
pub mod presets;
pub mod progress;
pub mod run_config;
pub mod sample;
pub mod scoring;
pub mod tensorboard;
pub mod trainer;
pub mod walks;
