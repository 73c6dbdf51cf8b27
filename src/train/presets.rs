//! Training hyperparameters: named presets reproducing published setups, and their resolution with
//! `pipeline.yaml`'s `train:` section and command-line flags (preset < `train:` < flags; flags are written into
//! the `train:` options by `commands` before `config::resolve`, so both get the same validation and error messages).
//!
//! | preset | arch | size | latent | batch | lr D / G | betas D / G | weight decay | real label | label flip | epochs |
//! |---|---|---|---|---|---|---|---|---|---|---|
//! | `dcgan64` | dcgan64 | 64 | 100 | 128 | 2e-4 / 2e-4 | (0.5, 0.999) both | 0 | 1.0 | 0 | 25 |
//! | `lightning1000` | dcgan64 | 64 | 100 | 128 | 1e-5 / 5e-4 | (0.5, 0.999) both | 0 | 1.0 | 0 | 1000 |
//! | `anime300` | anime300 | 64 | 300 | 128 | 1e-4 / 3e-4 | (0.7, 0.999) both | 0 | 0.9 | 0 | 300 |
//! | `getchu` | dcgan64 | 64 | 100 | 64 | 4e-4 / 4e-4 | (0.5, 0.999) both | 1e-8 (Adam, L2) | 1.0 | 0.05 | 100 |
//! | `dcgan128` | dcgan128 | 128 | 128 | 64 | 2e-4 / 2e-4 | (0.5, 0.999) both | 0 | 1.0 | 0 | 100 |
//! | `demo` | dcgan64, widths 16 | 64 | 64 | 32 | 5e-4 / 5e-4 | (0.5, 0.999) both | 0 | 1.0 | 0 | 60 |
//! | `faces64` | dcgan64 + EMA 0.999 | 64 | 100 | 64 | 2e-4 / 2e-4 | (0.5, 0.999) both | 0 | 1.0 | 0 | 100 |
//!
//! * `dcgan64`: the PyTorch DCGAN example (`examples/dcgan/main.py`, its default 25 epochs), itself Radford et
//!   al. 2015: Adam lr 2e-4, beta1 0.5, batch 128, z of 100.
//! * `lightning1000`: the "Lightning, 1000 epochs" anime-face setup: a slow discriminator (lr 1e-5) against a
//!   fast generator (5e-4).
//! * `anime300`: the "100/200/300 epochs" paper variant: lr G 3e-4 / D 1e-4, beta1 0.7, z of 300, one-sided
//!   label smoothing (real target 0.9), and its own architecture (dense projection, max-pooling discriminator).
//! * `getchu`: the Getchu face-GAN repository: lr 4e-4, batch 64, and `decay=1e-8`. That repository is Keras,
//!   where `Adam(decay=...)` is time-based learning-rate decay, `lr / (1 + decay * t)`, which at 1e-8 changes
//!   the rate by under 0.1% in 10^5 steps; we express it as Adam's L2 weight decay 1e-8 (`optimizer: adam`),
//!   which is equally negligible, and keep its noisy labels as a 5% label-flip probability for D.
//! * `dcgan128`: the 128x128 DCGAN of the GochiUsa face-generation blog: one more up/down-sampling block, z of
//!   128, batch 64.
//! * `demo`: not a published setup: the first run of `anime-pipe sample-data` (a few hundred images), small
//!   enough to train in a few minutes on 2 CPU cores: base widths 16 (ngf = ndf = 16), z of 64, batch 32,
//!   a faster learning rate; a sample grid every 10 epochs, a checkpoint every 30.
//! * `faces64`: not a published setup: `dcgan64` at batch 64 with what measured best of the issue #14 additions
//!   (BENCHMARKS.md, "Better faces for the same compute"): the moving average of G (0.999), which lowered FID by
//!   15-25 on getchu64 and its 3k subset at equal steps. The hinge loss measured level with BCE; DiffAugment,
//!   spectral norm and all together measured worse in those short runs, so they stay options
//!   (`--diffaugment`, `--spectral-norm`, `--loss hinge`). Add `--eval-every` to keep the best checkpoint.
//!
//! Every preset uses Adam's epsilon 1e-8 (PyTorch's default), one D step per G step, horizontal flips and no
//! translation, crop or rotation (turn them on with `train.translate`, `train.crop`, `train.rotate`), seed 1.
use crate::gan::augment::DiffAugment;
use crate::gan::steps::{GanLoss, Optimizer};
use crate::train::loader::Augment;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Preset names, in the order `--help` lists them.
pub const PRESETS: &[&str] = &["dcgan64", "lightning1000", "anime300", "getchu", "dcgan128", "demo", "faces64"];
/// Architectures (see `gan::Arch`).
pub const ARCHES: &[&str] = &["dcgan64", "dcgan128", "anime300"];

/// One network's optimiser settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub optimizer: Optimizer,
}

/// How long to train: whichever of `epochs` and `steps` is reached first (at least one is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Length {
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
}

/// The resolved training configuration (written to the run directory as part of `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub preset: String,
    pub arch: String,
    /// Side of the square training images (the shards of `shards/<image_size>/` are used).
    pub image_size: u32,
    pub latent: usize,
    /// Base channel widths of the generator and the discriminator (DCGAN's ngf / ndf).
    pub g_width: usize,
    pub d_width: usize,
    pub batch_size: usize,
    pub length: Length,
    pub d: OptimConfig,
    pub g: OptimConfig,
    /// D's target for real images (1.0; 0.9 = one-sided label smoothing).
    pub real_label: f64,
    /// Probability that each of D's targets (real and fake) is flipped (noisy labels).
    pub label_flip: f64,
    /// Decay of the moving average of G's weights exported as generator.onnx (0 = none; 0.999 is usual).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ema: f64,
    /// `bce` (DCGAN's) or `hinge`. Left out of config.json when default, as `ema`, so runs keyed before these
    /// options existed keep their keys.
    #[serde(default, skip_serializing_if = "GanLoss::is_bce")]
    pub loss: GanLoss,
    /// DiffAugment policy before D (`color,translation,cutout`; empty = off).
    #[serde(default, skip_serializing_if = "DiffAugment::is_off")]
    pub diffaugment: DiffAugment,
    /// Spectrally normalised D (without batch norm in DCGAN's D).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spectral_norm: bool,
    /// Discriminator steps per generator step.
    pub d_steps: u32,
    pub seed: u64,
    /// Pack split to train on.
    pub split: String,
    pub augment: Augment,
    /// Write a sample grid every this many epochs (and at the end).
    pub sample_every: u64,
    /// Write a checkpoint every this many epochs (and at the end).
    pub checkpoint_every: u64,
    /// Fetch losses from the device, log metrics and refresh the progress bar every this many steps.
    pub log_every: u64,
    /// Score the generator by FID every this many steps and at the end (0 = never); keeps the best.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub eval_every: u64,
    /// Generated samples per in-training FID.
    #[serde(default = "default_eval_samples")]
    pub eval_samples: usize,
    /// Batches the loader assembles ahead of the trainer.
    pub prefetch: usize,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_zero_u64(x: &u64) -> bool {
    *x == 0
}

/// In-training FID samples: a small count (FID is biased upwards below ~2048, so these compare with each other,
/// not with a 10k-sample `eval`), about 100 s of Inception on 2 CPU cores.
pub const DEFAULT_EVAL_SAMPLES: usize = 1000;

fn default_eval_samples() -> usize {
    DEFAULT_EVAL_SAMPLES
}

/// The preset called `name`, before any override.
pub fn preset(name: &str) -> Result<TrainConfig> {
    let adam = |lr: f64, beta1: f64| OptimConfig {
        lr,
        beta1,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        optimizer: Optimizer::Adam,
    };
    let base = TrainConfig {
        preset: name.to_string(),
        arch: "dcgan64".into(),
        image_size: 64,
        latent: 100,
        g_width: 64,
        d_width: 64,
        batch_size: 128,
        length: Length { epochs: Some(25), steps: None },
        d: adam(2e-4, 0.5),
        g: adam(2e-4, 0.5),
        real_label: 1.0,
        label_flip: 0.0,
        ema: 0.0,
        loss: GanLoss::Bce,
        diffaugment: DiffAugment::default(),
        spectral_norm: false,
        d_steps: 1,
        seed: 1,
        split: "train".into(),
        augment: Augment { flip: true, translate: 0, crop: 0.0, rotate: 0.0 },
        sample_every: 1,
        checkpoint_every: 5,
        log_every: 10,
        eval_every: 0,
        eval_samples: DEFAULT_EVAL_SAMPLES,
        prefetch: 4,
    };
    Ok(match name {
        "dcgan64" => base,
        "lightning1000" => TrainConfig {
            d: adam(1e-5, 0.5),
            g: adam(5e-4, 0.5),
            length: Length { epochs: Some(1000), steps: None },
            checkpoint_every: 50,
            ..base
        },
        "anime300" => TrainConfig {
            arch: "anime300".into(),
            latent: 300,
            d: adam(1e-4, 0.7),
            g: adam(3e-4, 0.7),
            real_label: 0.9,
            length: Length { epochs: Some(300), steps: None },
            checkpoint_every: 25,
            ..base
        },
        "getchu" => {
            let opt = OptimConfig { weight_decay: 1e-8, ..adam(4e-4, 0.5) };
            TrainConfig {
                batch_size: 64,
                d: opt,
                g: opt,
                label_flip: 0.05,
                length: Length { epochs: Some(100), steps: None },
                checkpoint_every: 10,
                ..base
            }
        }
        "dcgan128" => TrainConfig {
            arch: "dcgan128".into(),
            image_size: 128,
            latent: 128,
            batch_size: 64,
            length: Length { epochs: Some(100), steps: None },
            checkpoint_every: 10,
            ..base
        },
        "demo" => TrainConfig {
            latent: 64,
            g_width: 16,
            d_width: 16,
            batch_size: 32,
            d: adam(5e-4, 0.5),
            g: adam(5e-4, 0.5),
            length: Length { epochs: Some(60), steps: None },
            sample_every: 10,
            checkpoint_every: 30,
            log_every: 5,
            ..base
        },
        "faces64" => TrainConfig {
            batch_size: 64,
            ema: 0.999,
            length: Length { epochs: Some(100), steps: None },
            checkpoint_every: 10,
            ..base
        },
        other => bail!("train.preset = {other:?}: expected one of {}", PRESETS.join(", ")),
    })
}

/// Checks every value, naming the `train:` key (and so the flag) in the message.
pub fn validate(c: &TrainConfig) -> Result<()> {
    if !(8..=1024).contains(&c.image_size) || !c.image_size.is_power_of_two() {
        bail!(
            "train.image_size = {}: expected a power of two in 8..=1024 (the size the shards were packed at)",
            c.image_size
        );
    }
    if !(1..=4096).contains(&c.latent) {
        bail!("train.latent = {}: expected 1..=4096 latent dimensions", c.latent);
    }
    for (key, w) in [("train.g_width", c.g_width), ("train.d_width", c.d_width)] {
        if !(1..=1024).contains(&w) {
            bail!("{key} = {w}: expected 1..=1024 base channels (64 in DCGAN)");
        }
    }
    if !(1..=65536).contains(&c.batch_size) {
        bail!("train.batch_size = {}: expected 1..=65536", c.batch_size);
    }
    match c.length {
        Length { epochs: None, steps: None } => bail!("train.epochs / train.steps: set at least one"),
        Length { epochs: Some(0), .. } => bail!("train.epochs = 0: expected at least 1 epoch"),
        Length { steps: Some(0), .. } => bail!("train.steps = 0: expected at least 1 step"),
        _ => {}
    }
    for (net, o) in [("d", &c.d), ("g", &c.g)] {
        if !(o.lr > 0.0 && o.lr < 1.0e3) {
            bail!("train.lr_{net} = {}: expected a positive learning rate", o.lr);
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            bail!("train.betas_{net} = [{}, {}]: expected two values in [0, 1)", o.beta1, o.beta2);
        }
        if !(o.eps > 0.0 && o.eps < 1.0) {
            bail!("train.eps = {}: expected a small positive number (1e-8)", o.eps);
        }
        if !(0.0..1.0).contains(&o.weight_decay) {
            bail!("train.weight_decay = {}: expected a value in [0, 1)", o.weight_decay);
        }
    }
    if !(0.5..=1.0).contains(&c.real_label) {
        bail!("train.real_label = {}: expected 0.5..=1 (1 = no smoothing, 0.9 = one-sided smoothing)", c.real_label);
    }
    if !(0.0..0.5).contains(&c.label_flip) {
        bail!("train.label_flip = {}: expected a probability in [0, 0.5)", c.label_flip);
    }
    if c.loss == GanLoss::Hinge && (c.real_label != 1.0 || c.label_flip != 0.0) {
        let key = if c.real_label != 1.0 { "train.real_label" } else { "train.label_flip" };
        bail!("{key}: label smoothing and flips are BCE targets; with train.loss = hinge leave real_label at 1 and label_flip at 0");
    }
    if !(0.0..1.0).contains(&c.ema) {
        bail!("train.ema = {}: expected a decay in [0, 1): 0 = off, 0.999 = the usual average of G's weights", c.ema);
    }
    if !(1..=100).contains(&c.d_steps) {
        bail!("train.d_steps = {}: expected 1..=100 discriminator steps per generator step", c.d_steps);
    }
    if !crate::shards::is_split(&c.split) {
        bail!("train.split = {:?}: expected train or val", c.split);
    }
    if c.augment.translate * 4 > c.image_size {
        bail!(
            "train.translate = {}: expected at most a quarter of train.image_size = {}",
            c.augment.translate,
            c.image_size
        );
    }
    if !(0.0..=0.5).contains(&c.augment.crop) {
        bail!("train.crop = {}: expected a fraction of the side in [0, 0.5] (0.1 = crops of 90-100%)", c.augment.crop);
    }
    if !(0.0..=45.0).contains(&c.augment.rotate) {
        bail!("train.rotate = {}: expected degrees in [0, 45] (small rotations: 5-10)", c.augment.rotate);
    }
    for (key, v) in [
        ("train.sample_every", c.sample_every),
        ("train.checkpoint_every", c.checkpoint_every),
        ("train.log_every", c.log_every),
    ] {
        if v == 0 {
            bail!("{key} = 0: expected at least 1");
        }
    }
    if c.eval_every > 0 && c.eval_samples < 2 {
        bail!("train.eval_samples = {}: FID needs at least 2 samples (1000 is the default)", c.eval_samples);
    }
    if !(1..=256).contains(&c.prefetch) {
        bail!("train.prefetch = {}: expected 1..=256 batches", c.prefetch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_carry_the_published_hyperparameters() {
        let p = preset("dcgan64").unwrap();
        assert_eq!((p.d.lr, p.g.lr, p.d.beta1, p.batch_size, p.latent), (2e-4, 2e-4, 0.5, 128, 100));
        let p = preset("lightning1000").unwrap();
        assert_eq!((p.g.lr, p.d.lr, p.g.beta2, p.batch_size, p.latent), (5e-4, 1e-5, 0.999, 128, 100));
        let p = preset("anime300").unwrap();
        assert_eq!((p.g.lr, p.d.lr, p.d.beta1, p.latent, p.real_label), (3e-4, 1e-4, 0.7, 300, 0.9));
        assert_eq!(p.arch, "anime300");
        let p = preset("getchu").unwrap();
        assert_eq!((p.d.lr, p.batch_size, p.d.weight_decay, p.d.optimizer), (4e-4, 64, 1e-8, Optimizer::Adam));
        assert!(p.label_flip > 0.0);
        let p = preset("dcgan128").unwrap();
        assert_eq!((p.image_size, p.latent, p.arch.as_str()), (128, 128, "dcgan128"));
        let p = preset("demo").unwrap();
        assert_eq!((p.g_width, p.d_width, p.batch_size, p.length.epochs), (16, 16, 32, Some(60)));
        for name in PRESETS {
            validate(&preset(name).unwrap()).unwrap();
        }
    }
}
