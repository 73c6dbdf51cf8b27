//! `config.json`: what a run was built from (the resolved training config, the architecture and runner
//! configuration derived from it, the dataset), and that derivation.
use crate::gan::models::Arch;
use crate::gan::runner::{AdamHyper, GanConfig, Labels};
use crate::train::presets::{OptimConfig, TrainConfig};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub format: String,
    pub name: String,
    pub train: TrainConfig,
    /// The architecture as built (family, size, widths, latent size, dropout).
    pub arch: Arch,
    /// The runner's configuration derived from `train` (optimisers, labels, seed).
    pub gan: GanConfig,
    pub dataset: DatasetInfo,
    /// Where the step graphs ran at the latest (re)start: "cpu" or "cuda:N".
    pub device: String,
    pub threads: usize,
    pub anime_pipe_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// See `loader::ShardSet::digest`.
    pub digest: String,
    pub workdir: PathBuf,
    pub image_size: u32,
    pub split: String,
    pub images: usize,
    pub batches_per_epoch: u64,
    pub shards: Vec<String>,
}

pub const RUN_FORMAT: &str = "anime-pipe-run/1";

/// The runner's configuration for a training config.
pub fn gan_config(c: &TrainConfig) -> Result<GanConfig> {
    let hyper = |o: &OptimConfig| AdamHyper {
        lr: o.lr as f32,
        beta1: o.beta1 as f32,
        beta2: o.beta2 as f32,
        eps: o.eps as f32,
        weight_decay: o.weight_decay as f32,
    };
    Ok(GanConfig {
        arch: arch_of(c)?,
        batch: c.batch_size,
        d_optimizer: c.d.optimizer,
        g_optimizer: c.g.optimizer,
        d: hyper(&c.d),
        g: hyper(&c.g),
        labels: Labels { real: c.real_label as f32, fake: 0.0, gen: 1.0, flip: c.label_flip as f32 },
        seed: c.seed,
        ema: c.ema as f32,
        loss: c.loss,
        diffaugment: c.diffaugment,
    })
}

/// The architecture named by `train.arch`, at `train.image_size` with the configured widths and latent size.
pub fn arch_of(c: &TrainConfig) -> Result<Arch> {
    let mut arch: Arch = c.arch.parse()?;
    arch.image_size = c.image_size as usize;
    arch.nz = c.latent;
    arch.ngf = c.g_width;
    arch.ndf = c.d_width;
    arch.spectral_norm = c.spectral_norm;
    arch.validate().with_context(|| format!("train.arch = {} at train.image_size = {}", c.arch, c.image_size))?;
    Ok(arch)
}
