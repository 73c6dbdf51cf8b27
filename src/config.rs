//! `pipeline.yaml`: the on-disk options (`*Options`, every field optional) and their resolution, with command-line
//! overrides, into the settings the stages use (`Settings`). Modelled on ruff's options -> resolved settings split:
//! stages never see an `Option` that has a documented default.
pub use crate::faces::detector::{DetectorParams, Family};
pub use crate::faces::geometry::{Border, CropGeometry};
pub use crate::faces::upscale::{Method as UpscaleMethod, Tiling};
use crate::runtime::Device;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Centre-crop the longer side to a square (default: keeps the face large).
    Crop,
    /// Pad the shorter side with edge-replicated pixels to a square (keeps the whole image).
    Pad,
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
    pub optimizer: Option<crate::gan::steps::Optimizer>,
    pub lr_d: Option<f64>,
    pub lr_g: Option<f64>,
    pub betas_d: Option<[f64; 2]>,
    pub betas_g: Option<[f64; 2]>,
    pub eps: Option<f64>,
    pub weight_decay: Option<f64>,
    pub real_label: Option<f64>,
    pub label_flip: Option<f64>,
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

/// Resolved settings: every value present, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Directory holding the config file; relative source paths resolve against it.
    pub base_dir: PathBuf,
    pub sources: Vec<Source>,
    pub stages: Vec<String>,
    pub limits: Limits,
    pub dedup: DedupSettings,
    pub clean: CleanSettings,
    pub pack: PackSettings,
    pub crop: CropSettings,
    pub upscale: UpscaleSettings,
    pub models: ModelPaths,
    pub eval: EvalSettings,
    /// `train:` resolved against its preset.
    pub train: crate::train::presets::TrainConfig,
    /// Where ONNX graphs run (`device:` / `--device`). Not part of any stage fingerprint: results agree across
    /// devices up to float rounding.
    #[serde(skip)]
    pub device: Device,
    /// The raw file, for sections other modules resolve themselves.
    #[serde(skip)]
    pub file: ConfigFile,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
    pub already_cropped: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Files larger than this are rejected unread (`too_large`).
    pub max_file_bytes: u64,
    /// Images with more pixels than this are rejected before decoding (`decompression_bomb`).
    pub max_pixels: u64,
    /// Total uncompressed bytes read from one archive; past it entries are rejected (`archive_budget_exceeded`).
    pub max_archive_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct DedupSettings {
    pub phash_threshold: u32,
    pub near: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CleanSettings {
    pub min_size: u32,
    pub max_aspect: f64,
    pub min_sharpness: f64,
    pub min_colorfulness: f64,
    pub min_entropy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackSettings {
    pub sizes: Vec<u32>,
    pub fit: Fit,
    pub shard_samples: usize,
    pub val_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CropSettings {
    pub detector: DetectorParams,
    /// Faces scoring at least this are cropped; those between `low_score_floor` and it are `low_score` rows.
    pub score_threshold: f32,
    /// Faces whose box's shorter side (source pixels) is below this are `face_too_small`.
    pub min_face_size: u32,
    /// Per image, the best faces by score; the rest are `too_many_faces`.
    pub max_faces: u32,
    pub geometry: CropGeometry,
    pub pad_color: [u8; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpscaleSettings {
    pub method: UpscaleMethod,
    /// Items whose shorter side is below this are upscaled to it (default: the largest of `pack.sizes`).
    pub target: u32,
    pub tiling: Tiling,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPaths {
    pub face_detector: PathBuf,
    pub waifu2x: PathBuf,
    pub realesrgan: PathBuf,
    pub fid_inception: PathBuf,
}

/// Resolved `eval:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSettings {
    /// Generated samples per checkpoint (10,000 is the usual FID protocol).
    pub samples: usize,
    /// Seed of the latents (and of KID's subsets); the same seed gives every checkpoint the same latents.
    pub seed: u64,
    /// Images per generator / Inception run.
    pub batch_size: usize,
    /// Pack split of the reference images: "train" or "val".
    pub split: String,
    pub kid_subsets: usize,
    pub kid_subset_size: usize,
    /// Use only the first N reference images in pack order (None = all of the split).
    pub max_reference: Option<usize>,
    /// Samples in each report grid.
    pub grid: usize,
}

pub const ALL_STAGES: &[&str] = &["ingest", "dedup", "crop", "upscale", "clean", "pack"];
pub const DEFAULT_STAGES: &[&str] = &["ingest", "dedup", "clean", "pack"];

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

impl Settings {
    /// Resolves a config file (or none: defaults, sources from the command line) into settings.
    pub fn resolve(file: ConfigFile, base_dir: &Path) -> Result<Self> {
        let sources = resolve_sources(&file.sources, base_dir)?;
        let stages = resolve_stages(file.stages.as_deref())?;
        let l = &file.limits;
        let limits = Limits {
            max_file_bytes: l.max_file_bytes.unwrap_or(256 << 20),
            max_pixels: l.max_pixels.unwrap_or(128_000_000),
            max_archive_bytes: l.max_archive_bytes.unwrap_or(64 << 30),
        };
        positive("limits.max_file_bytes", limits.max_file_bytes as f64)?;
        positive("limits.max_pixels", limits.max_pixels as f64)?;
        positive("limits.max_archive_bytes", limits.max_archive_bytes as f64)?;
        let dedup = DedupSettings {
            phash_threshold: file.dedup.phash_threshold.unwrap_or(6),
            near: file.dedup.near.unwrap_or(true),
        };
        if dedup.phash_threshold > 32 {
            bail!(
                "dedup.phash_threshold = {}: expected 0..=32 bits of 64 (6 is a good default)",
                dedup.phash_threshold
            );
        }
        let c = &file.clean;
        let clean = CleanSettings {
            min_size: c.min_size.unwrap_or(64),
            max_aspect: c.max_aspect.unwrap_or(2.5),
            min_sharpness: c.min_sharpness.unwrap_or(0.0),
            min_colorfulness: c.min_colorfulness.unwrap_or(0.0),
            min_entropy: c.min_entropy.unwrap_or(0.0),
        };
        if clean.max_aspect < 1.0 {
            bail!("clean.max_aspect = {}: expected a ratio >= 1.0 (longer side / shorter side)", clean.max_aspect);
        }
        let p = &file.pack;
        let pack = PackSettings {
            sizes: p.sizes.clone().unwrap_or_else(|| vec![64]),
            fit: p.fit.unwrap_or(Fit::Crop),
            shard_samples: p.shard_samples.unwrap_or(4096),
            val_fraction: p.val_fraction.unwrap_or(0.05),
        };
        if pack.sizes.is_empty() || pack.sizes.iter().any(|&s| !(8..=4096).contains(&s)) {
            bail!("pack.sizes = {:?}: expected a non-empty list of sizes in 8..=4096, e.g. [64, 128]", pack.sizes);
        }
        if pack.shard_samples == 0 {
            bail!("pack.shard_samples = 0: expected a positive number of samples per shard (default 4096)");
        }
        if !(0.0..1.0).contains(&pack.val_fraction) {
            bail!("pack.val_fraction = {}: expected a fraction in [0, 1), e.g. 0.05", pack.val_fraction);
        }
        let crop = resolve_crop(&file.crop)?;
        let upscale = resolve_upscale(&file.upscale, &pack)?;
        let models = resolve_models(&file.models, base_dir);
        let train = crate::train::presets::resolve(&file.train)?;
        let eval = resolve_eval(&file.eval)?;
        let device = match &file.device {
            None => Device::Auto,
            Some(d) => d.parse().map_err(|e| anyhow::anyhow!("device = {d:?}: {e}"))?,
        };
        Ok(Self {
            base_dir: base_dir.to_path_buf(),
            sources,
            stages,
            limits,
            dedup,
            clean,
            pack,
            crop,
            upscale,
            models,
            eval,
            train,
            device,
            file,
        })
    }
}

fn resolve_crop(c: &CropOptions) -> Result<CropSettings> {
    let scales = c.scales.clone().unwrap_or_else(|| vec![1.0, 2.0]);
    if scales.is_empty() || scales.iter().any(|&s| !(0.25..=4.0).contains(&s)) {
        bail!("crop.scales = {scales:?}: expected a non-empty list of factors in 0.25..=4, e.g. [1.0, 2.0]");
    }
    let score_threshold = c.score_threshold.unwrap_or(0.5);
    let floor = c.low_score_floor.unwrap_or(0.3_f64.min(score_threshold));
    let nms_iou = c.nms_iou.unwrap_or(0.3);
    fraction("crop.score_threshold", score_threshold)?;
    fraction("crop.low_score_floor", floor)?;
    fraction("crop.nms_iou", nms_iou)?;
    if floor > score_threshold {
        bail!("crop.low_score_floor = {floor}: expected at most crop.score_threshold = {score_threshold}");
    }
    let max_side = c.max_side.unwrap_or(2048);
    if !(64..=16384).contains(&max_side) {
        bail!("crop.max_side = {max_side}: expected 64..=16384 pixels (default 2048)");
    }
    let yolo_input_size = c.yolo_input_size.unwrap_or(640);
    if yolo_input_size < 32 || !yolo_input_size.is_multiple_of(32) {
        bail!("crop.yolo_input_size = {yolo_input_size}: expected a positive multiple of 32 (default 640)");
    }
    let max_faces = c.max_faces.unwrap_or(64);
    if max_faces == 0 {
        bail!("crop.max_faces = 0: expected at least 1 face per image (default 64)");
    }
    let margin = c.margin.unwrap_or(0.5);
    if !(0.0..=4.0).contains(&margin) {
        bail!("crop.margin = {margin}: expected 0..=4 (fraction of the face box added in total; default 0.5)");
    }
    let shift_up = c.shift_up.unwrap_or(0.1);
    if !(-1.0..=1.0).contains(&shift_up) {
        bail!("crop.shift_up = {shift_up}: expected -1..=1 (fraction of the face box height; default 0.1)");
    }
    Ok(CropSettings {
        detector: DetectorParams {
            family: c.detector.unwrap_or_default(),
            scales: scales.iter().map(|&s| s as f32).collect(),
            max_side,
            yolo_input_size,
            candidate_threshold: floor as f32,
            nms_iou: nms_iou as f32,
            top_k: 5000,
        },
        score_threshold: score_threshold as f32,
        min_face_size: c.min_face_size.unwrap_or(32),
        max_faces,
        geometry: CropGeometry {
            margin: margin as f32,
            shift_up: shift_up as f32,
            border: c.border.unwrap_or_default(),
        },
        pad_color: c.pad_color.unwrap_or([255, 255, 255]),
    })
}

fn resolve_upscale(u: &UpscaleOptions, pack: &PackSettings) -> Result<UpscaleSettings> {
    let target = u.target.unwrap_or_else(|| pack.sizes.iter().copied().max().unwrap_or(64));
    if !(8..=4096).contains(&target) {
        bail!("upscale.target = {target}: expected 8..=4096 pixels (default: the largest of pack.sizes)");
    }
    let tiling =
        Tiling { tile: u.tile.unwrap_or(256), overlap: u.tile_overlap.unwrap_or(16), batch: u.tile_batch.unwrap_or(4) };
    if tiling.tile < 32 {
        bail!("upscale.tile = {}: expected at least 32 pixels (default 256)", tiling.tile);
    }
    if tiling.overlap * 2 >= tiling.tile {
        bail!("upscale.tile_overlap = {}: expected less than half of upscale.tile = {}", tiling.overlap, tiling.tile);
    }
    if tiling.batch == 0 {
        bail!("upscale.tile_batch = 0: expected at least 1 tile per model run (default 4)");
    }
    Ok(UpscaleSettings { method: u.method.unwrap_or_default(), target, tiling })
}

fn resolve_eval(e: &EvalOptions) -> Result<EvalSettings> {
    let eval = EvalSettings {
        samples: e.samples.unwrap_or(10_000),
        seed: e.seed.unwrap_or(0),
        batch_size: e.batch_size.unwrap_or(50),
        split: e.split.clone().unwrap_or_else(|| "train".into()),
        kid_subsets: e.kid_subsets.unwrap_or(100),
        kid_subset_size: e.kid_subset_size.unwrap_or(1000),
        max_reference: e.max_reference,
        grid: e.grid.unwrap_or(64),
    };
    if eval.samples < 2 {
        bail!(
            "eval.samples = {}: expected at least 2 generated samples (10000 is the usual FID protocol)",
            eval.samples
        );
    }
    if eval.batch_size == 0 {
        bail!("eval.batch_size = 0: expected at least 1 image per batch (default 50)");
    }
    if !crate::stages::pack::SPLITS.contains(&eval.split.as_str()) {
        bail!("eval.split = {:?}: expected \"train\" or \"val\"", eval.split);
    }
    if eval.kid_subsets == 0 || eval.kid_subset_size < 2 {
        bail!(
            "eval.kid_subsets = {}, eval.kid_subset_size = {}: expected at least 1 subset of at least 2 samples \
             (default 100 subsets of 1000)",
            eval.kid_subsets,
            eval.kid_subset_size
        );
    }
    if eval.max_reference.is_some_and(|n| n < 2) {
        bail!("eval.max_reference: expected at least 2 reference images (or leave it unset for the whole split)");
    }
    if eval.grid > 1024 {
        bail!("eval.grid = {}: expected at most 1024 samples per report grid (default 64)", eval.grid);
    }
    Ok(eval)
}

/// Model paths; the defaults point at the shared models beside the checkout (`../shared/models/`). Existence is
/// checked when a stage loads one, so configs that never use a model need not provide it.
fn resolve_models(m: &ModelsOptions, base_dir: &Path) -> ModelPaths {
    let path = |p: &Option<PathBuf>, default: &str| {
        let p = p.clone().unwrap_or_else(|| PathBuf::from("../shared/models").join(default));
        if p.is_absolute() {
            p
        } else {
            base_dir.join(p)
        }
    };
    ModelPaths {
        face_detector: path(&m.face_detector, "anime_faceboxes.onnx"),
        waifu2x: path(&m.waifu2x, "waifu2x_upconv7_anime_scale2x.onnx"),
        realesrgan: path(&m.realesrgan, "realesr_animevideov3_x4.onnx"),
        fid_inception: path(&m.fid_inception, "fid_inception_v3_pool3.onnx"),
    }
}

fn fraction(key: &str, value: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        bail!("{key} = {value}: expected a value in 0..=1");
    }
    Ok(())
}

fn positive(key: &str, value: f64) -> Result<()> {
    if value <= 0.0 {
        bail!("{key} = {value}: expected a positive number");
    }
    Ok(())
}

fn resolve_sources(options: &[SourceOptions], base_dir: &Path) -> Result<Vec<Source>> {
    let mut seen = std::collections::BTreeSet::new();
    options
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                bail!(
                    "sources[{i}].name = {:?}: expected a non-empty name of letters, digits, '-', '_' or '.'",
                    s.name
                );
            }
            if !seen.insert(s.name.clone()) {
                bail!("sources[{i}].name = {:?}: names must be unique", s.name);
            }
            let path = if s.path.is_absolute() { s.path.clone() } else { base_dir.join(&s.path) };
            Ok(Source { name: s.name.clone(), path, already_cropped: s.already_cropped })
        })
        .collect()
}

fn resolve_stages(stages: Option<&[String]>) -> Result<Vec<String>> {
    let Some(stages) = stages else {
        return Ok(DEFAULT_STAGES.iter().map(|s| s.to_string()).collect());
    };
    for (i, s) in stages.iter().enumerate() {
        if !ALL_STAGES.contains(&s.as_str()) {
            bail!("stages[{i}] = {s:?}: expected one of {}", ALL_STAGES.join(", "));
        }
    }
    // Stages always run in pipeline order, whatever order the user listed them in.
    Ok(ALL_STAGES.iter().filter(|s| stages.iter().any(|x| x == *s)).map(|s| s.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Settings> {
        Settings::resolve(ConfigFile::parse(yaml, Path::new("pipeline.yaml"))?, Path::new("/base"))
    }

    #[test]
    fn empty_config_resolves_to_documented_defaults() {
        let s = resolve("{}").unwrap();
        assert_eq!(s.clean.min_size, 64);
        assert_eq!(s.pack.sizes, vec![64]);
        assert_eq!(s.dedup.phash_threshold, 6);
        assert_eq!(s.stages, DEFAULT_STAGES);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = resolve("clean:\n  min_sise: 3\n").unwrap_err().to_string();
        assert!(err.contains("min_sise"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = resolve("pack:\n  sizes: [2]\n").unwrap_err().to_string();
        assert!(err.contains("pack.sizes"), "{err}");
        let err = resolve("sources:\n - {name: a, path: x}\n - {name: a, path: y}\n").unwrap_err().to_string();
        assert!(err.contains("sources[1].name"), "{err}");
        let err = resolve("stages: [ingest, bake]\n").unwrap_err().to_string();
        assert!(err.contains("stages[1]"), "{err}");
    }

    #[test]
    fn relative_source_paths_resolve_against_the_config_dir() {
        let s = resolve("sources:\n - {name: k, path: data/k.zip, already_cropped: true}\n").unwrap();
        assert_eq!(s.sources[0].path, Path::new("/base/data/k.zip"));
        assert!(s.sources[0].already_cropped);
    }

    #[test]
    fn crop_upscale_and_models_defaults() {
        let s = resolve("pack:\n  sizes: [64, 128]\n").unwrap();
        assert_eq!(s.crop.detector.scales, vec![1.0, 2.0]);
        assert_eq!((s.crop.score_threshold, s.crop.detector.nms_iou, s.crop.detector.max_side), (0.5, 0.3, 2048));
        assert_eq!(s.crop.geometry.border, Border::Clamp);
        assert_eq!(s.upscale.target, 128, "largest pack size");
        assert_eq!(s.upscale.method, UpscaleMethod::Lanczos);
        assert_eq!(s.models.face_detector, Path::new("/base/../shared/models/anime_faceboxes.onnx"));
        assert_eq!(s.device, Device::Auto);
        let s = resolve("crop: {detector: yolo, border: constant, pad_color: [1, 2, 3]}\nupscale: {method: waifu2x}\n")
            .unwrap();
        assert_eq!((s.crop.detector.family, s.crop.pad_color), (Family::Yolo, [1, 2, 3]));
        assert_eq!(s.upscale.method, UpscaleMethod::Waifu2x);
    }

    #[test]
    fn crop_upscale_and_device_errors_name_the_key() {
        for (yaml, key) in [
            ("crop: {scales: []}", "crop.scales"),
            ("crop: {score_threshold: 1.5}", "crop.score_threshold"),
            ("crop: {score_threshold: 0.4, low_score_floor: 0.45}", "crop.low_score_floor"),
            ("crop: {margin: -1}", "crop.margin"),
            ("crop: {max_faces: 0}", "crop.max_faces"),
            ("crop: {yolo_input_size: 100}", "crop.yolo_input_size"),
            ("crop: {bordr: edge}", "bordr"),
            ("crop: {border: wrap}", "wrap"),
            ("upscale: {tile: 64, tile_overlap: 32}", "upscale.tile_overlap"),
            ("upscale: {method: bicubic}", "bicubic"),
            ("upscale: {target: 4}", "upscale.target"),
            ("models: {detector: x.onnx}", "detector"),
            ("device: gpu", "device"),
        ] {
            let err = format!("{:#}", resolve(yaml).unwrap_err());
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn eval_defaults_and_errors() {
        let s = resolve("{}").unwrap();
        assert_eq!((s.eval.samples, s.eval.kid_subsets, s.eval.kid_subset_size), (10_000, 100, 1000));
        assert_eq!((s.eval.split.as_str(), s.eval.max_reference), ("train", None));
        assert_eq!(s.models.fid_inception, Path::new("/base/../shared/models/fid_inception_v3_pool3.onnx"));
        let s = resolve("eval: {samples: 64, split: val}\nmodels: {fid_inception: /m/i.onnx}\n").unwrap();
        assert_eq!((s.eval.samples, s.eval.split.as_str()), (64, "val"));
        assert_eq!(s.models.fid_inception, Path::new("/m/i.onnx"));
        for (yaml, key) in [
            ("eval: {samples: 1}", "eval.samples"),
            ("eval: {split: test}", "eval.split"),
            ("eval: {kid_subset_size: 1}", "eval.kid_subset_size"),
            ("eval: {batch_size: 0}", "eval.batch_size"),
            ("eval: {sampels: 5}", "sampels"),
        ] {
            let err = format!("{:#}", resolve(yaml).unwrap_err());
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn stages_run_in_pipeline_order() {
        let s = resolve("stages: [pack, ingest]\n").unwrap();
        assert_eq!(s.stages, vec!["ingest", "pack"]);
    }
}
