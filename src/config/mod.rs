//! `pipeline.yaml` as the user wrote it: the options (`*Options`, every field optional). [`resolve`] turns them,
//! with the command line's overrides already written in, into the settings each module uses (ruff's options ->
//! settings split: the modules never see an `Option` that has a documented default). Only `commands` uses this
//! module; nothing below it knows about pipeline.yaml.
pub mod resolve;

use crate::faces::detector::Family;
use crate::faces::geometry::Border;
use crate::faces::upscale::Method as UpscaleMethod;
use crate::gan::augment::DiffAugment;
use crate::gan::steps::{GanLoss, Optimizer};
use crate::named::Named;
use crate::stages::pack::Fit;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `run` may do after the data stages, when `stages:` lists it: not a stage of the protocol (`stages` knows
/// nothing of training), orchestrated by `commands` once the data stages are up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AfterStage {
    /// Train on the packed shards (`train:`), unless the same config already trained on the same dataset.
    Train,
    /// FID/KID of the trained run's checkpoints (`eval:`); skipped, saying so, without the Inception model.
    Eval,
}

impl Named for AfterStage {
    const ALL: &'static [Self] = &[AfterStage::Train, AfterStage::Eval];
    const WHAT: &'static str = "stage";
    fn name(self) -> &'static str {
        match self {
            AfterStage::Train => "train",
            AfterStage::Eval => "eval",
        }
    }
}
crate::impl_named_str!(AfterStage);

/// The file as written by the user. Unknown keys are errors (a typo must not silently fall back to a default).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub sources: Vec<SourceOptions>,
    #[serde(default)]
    pub stages: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitsOptions,
    #[serde(default)]
    pub dedup: DedupOptions,
    #[serde(default)]
    pub clean: CleanOptions,
    #[serde(default)]
    pub pack: PackOptions,
    #[serde(default)]
    pub crop: CropOptions,
    #[serde(default)]
    pub upscale: UpscaleOptions,
    #[serde(default)]
    pub train: TrainOptions,
    #[serde(default)]
    pub eval: EvalOptions,
    #[serde(default)]
    pub models: ModelsOptions,
    /// Where ONNX graphs run: auto, cpu, cuda or cuda:N (`--device` overrides).
    #[serde(default)]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceOptions {
    /// Short name used in manifests (`source` column); must be unique.
    pub name: String,
    /// A directory (scanned recursively) or an archive (.zip, .tar, .tar.gz/.tgz). Relative paths are resolved
    /// against the directory holding pipeline.yaml.
    pub path: PathBuf,
    /// The images are already face crops (e.g. the Kaggle Anime Face Dataset): the crop stage passes them through.
    #[serde(default)]
    pub already_cropped: bool,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOptions {
    pub max_file_bytes: Option<u64>,
    pub max_pixels: Option<u64>,
    pub max_archive_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DedupOptions {
    pub phash_threshold: Option<u32>,
    pub near: Option<bool>,
    pub crops: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CleanOptions {
    pub min_size: Option<u32>,
    pub max_aspect: Option<f64>,
    pub min_sharpness: Option<f64>,
    pub min_colorfulness: Option<f64>,
    pub min_entropy: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackOptions {
    pub sizes: Option<Vec<u32>>,
    pub fit: Option<Fit>,
    pub shard_samples: Option<usize>,
    pub val_fraction: Option<f64>,
}

/// `crop:` face detection and cropping (see `stages::crop` and `faces::detector` for the exact semantics).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CropOptions {
    pub detector: Option<Family>,
    pub scales: Option<Vec<f64>>,
    pub max_side: Option<u32>,
    pub yolo_input_size: Option<u32>,
    pub score_threshold: Option<f64>,
    pub low_score_floor: Option<f64>,
    pub nms_iou: Option<f64>,
    pub min_face_size: Option<u32>,
    pub max_faces: Option<u32>,
    pub margin: Option<f64>,
    pub shift_up: Option<f64>,
    pub border: Option<Border>,
    pub pad_color: Option<[u8; 3]>,
}

/// `upscale:` super-resolution of items smaller than the training size (see `stages::upscale`).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpscaleOptions {
    pub method: Option<UpscaleMethod>,
    pub target: Option<u32>,
    pub tile: Option<u32>,
    pub tile_overlap: Option<u32>,
    pub tile_batch: Option<usize>,
}

/// `train:` DCGAN training hyperparameters; unset keys come from the preset (see `train::presets` for the
/// presets and the meaning of every key; `anime-pipe train --help` lists the matching flags).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    pub preset: Option<String>,
    pub arch: Option<String>,
    pub image_size: Option<u32>,
    pub latent: Option<usize>,
    pub g_width: Option<usize>,
    pub d_width: Option<usize>,
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    pub batch_size: Option<usize>,
    /// `adam` (L2 weight decay) or `adamw` (decoupled).
    pub optimizer: Option<Optimizer>,
    pub lr_d: Option<f64>,
    pub lr_g: Option<f64>,
    pub betas_d: Option<[f64; 2]>,
    pub betas_g: Option<[f64; 2]>,
    pub eps: Option<f64>,
    pub weight_decay: Option<f64>,
    pub real_label: Option<f64>,
    pub label_flip: Option<f64>,
    /// Decay of the moving average of G's weights (0 = none).
    pub ema: Option<f64>,
    /// `bce` or `hinge`.
    pub loss: Option<GanLoss>,
    /// DiffAugment policy (`color,translation,cutout`).
    pub diffaugment: Option<DiffAugment>,
    /// Spectral normalisation of D's weights.
    pub spectral_norm: Option<bool>,
    pub d_steps: Option<u32>,
    pub seed: Option<u64>,
    pub split: Option<String>,
    pub flip: Option<bool>,
    pub translate: Option<u32>,
    pub crop: Option<f64>,
    pub rotate: Option<f64>,
    pub sample_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub log_every: Option<u64>,
    /// In-training FID every N steps (0 = off).
    pub eval_every: Option<u64>,
    /// Samples per in-training FID.
    pub eval_samples: Option<usize>,
    pub prefetch: Option<usize>,
}

/// `eval:` FID/KID evaluation of generators (see `eval` for the method and defaults).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalOptions {
    pub samples: Option<usize>,
    pub seed: Option<u64>,
    pub batch_size: Option<usize>,
    pub split: Option<String>,
    pub kid_subsets: Option<usize>,
    pub kid_subset_size: Option<usize>,
    pub max_reference: Option<usize>,
    pub grid: Option<usize>,
}

/// `models:` ONNX model files; relative paths resolve against the config file's directory.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsOptions {
    pub face_detector: Option<PathBuf>,
    pub waifu2x: Option<PathBuf>,
    pub realesrgan: Option<PathBuf>,
    pub fid_inception: Option<PathBuf>,
}

impl ConfigFile {
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        serde_norway::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}\n  hint: see the pipeline.yaml reference in README.md; every key is optional except sources[].name and sources[].path",
                origin.display()
            )
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, path)
    }
}
