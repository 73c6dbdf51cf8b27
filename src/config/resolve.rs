//! Options -> settings: every default applied, every value checked, errors naming the key and the fix.
use super::*;
use crate::eval::EvalSettings;
use crate::faces::detector::DetectorParams;
use crate::faces::geometry::CropGeometry;
use crate::faces::upscale::Tiling;
use crate::imageio::Limits;
use crate::models::{locate, Lookup, ModelDirs, ModelPaths, Role};
use crate::named::Named;
use crate::runtime::Device;
use crate::stages::clean::CleanSettings;
use crate::stages::crop::CropSettings;
use crate::stages::dedup::DedupSettings;
use crate::stages::ingest::Source;
use crate::stages::pack::{Fit, PackSettings};
use crate::stages::upscale::UpscaleSettings;
use crate::stages::{Plan, Stage};
use crate::train::presets::{self, Length, TrainConfig, ARCHES};
use anyhow::bail;

/// Everything pipeline.yaml resolves to, validated as a whole so that a typo anywhere fails every command.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub plan: Plan,
    pub train: TrainConfig,
    pub eval: EvalSettings,
    /// `device:` (`--device` is written into the options first).
    pub device: Device,
    /// `train` / `eval` listed in `stages:`: what `run` does after the data stages, in this order.
    pub after: Vec<AfterStage>,
}

impl ConfigFile {
    /// Resolves the options against the directory that relative paths in them are relative to.
    pub fn resolve(&self, base_dir: &Path) -> Result<Resolved> {
        let (plan, after) = resolve_plan(self, base_dir)?;
        let train = resolve_train(&self.train)?;
        let eval = resolve_eval(&self.eval, plan.dedup.phash_threshold)?;
        let device = match &self.device {
            None => Device::Auto,
            Some(d) => d.parse().map_err(|e| anyhow::anyhow!("device = {d:?}: {e}"))?,
        };
        Ok(Resolved { plan, train, eval, device, after })
    }
}

fn resolve_plan(file: &ConfigFile, base_dir: &Path) -> Result<(Plan, Vec<AfterStage>)> {
    let sources = resolve_sources(&file.sources, base_dir)?;
    let (stages, after) = resolve_stages(file.stages.as_deref())?;
    let l = &file.limits;
    let defaults = Limits::default();
    let limits = Limits {
        max_file_bytes: l.max_file_bytes.unwrap_or(defaults.max_file_bytes),
        max_pixels: l.max_pixels.unwrap_or(defaults.max_pixels),
        max_archive_bytes: l.max_archive_bytes.unwrap_or(defaults.max_archive_bytes),
    };
    positive("limits.max_file_bytes", limits.max_file_bytes as f64)?;
    positive("limits.max_pixels", limits.max_pixels as f64)?;
    positive("limits.max_archive_bytes", limits.max_archive_bytes as f64)?;
    let dedup = DedupSettings {
        phash_threshold: file.dedup.phash_threshold.unwrap_or(6),
        near: file.dedup.near.unwrap_or(true),
        crops: file.dedup.crops.unwrap_or(true),
    };
    if dedup.phash_threshold > 32 {
        bail!("dedup.phash_threshold = {}: expected 0..=32 bits of 64 (6 is a good default)", dedup.phash_threshold);
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
    Ok((Plan { stages, sources, limits, dedup, crop, upscale, clean, pack, models }, after))
}

/// Preset, then every key set in `train:` (with flags already merged in), validated with the key named.
pub fn resolve_train(o: &TrainOptions) -> Result<TrainConfig> {
    let mut c = presets::preset(o.preset.as_deref().unwrap_or("dcgan64"))?;
    if let Some(arch) = &o.arch {
        let parsed: crate::gan::models::Arch = arch
            .parse()
            .map_err(|_| anyhow::anyhow!("train.arch = {arch:?}: expected one of {}", ARCHES.join(", ")))?;
        c.arch = arch.clone();
        // The architecture's own size unless train.image_size says otherwise.
        c.image_size = parsed.image_size as u32;
    }
    set(&mut c.image_size, o.image_size);
    set(&mut c.latent, o.latent);
    set(&mut c.g_width, o.g_width);
    set(&mut c.d_width, o.d_width);
    set(&mut c.batch_size, o.batch_size);
    if o.epochs.is_some() || o.steps.is_some() {
        c.length = Length { epochs: o.epochs, steps: o.steps };
    }
    for (opt, lr, betas) in [(&mut c.d, o.lr_d, o.betas_d), (&mut c.g, o.lr_g, o.betas_g)] {
        set(&mut opt.lr, lr);
        if let Some([b1, b2]) = betas {
            (opt.beta1, opt.beta2) = (b1, b2);
        }
        set(&mut opt.eps, o.eps);
        set(&mut opt.weight_decay, o.weight_decay);
        set(&mut opt.optimizer, o.optimizer);
    }
    set(&mut c.real_label, o.real_label);
    set(&mut c.label_flip, o.label_flip);
    set(&mut c.ema, o.ema);
    set(&mut c.loss, o.loss);
    set(&mut c.diffaugment, o.diffaugment);
    set(&mut c.spectral_norm, o.spectral_norm);
    set(&mut c.d_steps, o.d_steps);
    set(&mut c.seed, o.seed);
    set(&mut c.split, o.split.clone());
    set(&mut c.augment.flip, o.flip);
    set(&mut c.augment.translate, o.translate);
    set(&mut c.augment.crop, o.crop);
    set(&mut c.augment.rotate, o.rotate);
    set(&mut c.sample_every, o.sample_every);
    set(&mut c.checkpoint_every, o.checkpoint_every);
    set(&mut c.log_every, o.log_every);
    set(&mut c.eval_every, o.eval_every);
    set(&mut c.eval_samples, o.eval_samples);
    set(&mut c.prefetch, o.prefetch);
    presets::validate(&c)?;
    Ok(c)
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *target = v;
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

fn resolve_eval(e: &EvalOptions, near_threshold: u32) -> Result<EvalSettings> {
    let eval = EvalSettings {
        samples: e.samples.unwrap_or(10_000),
        seed: e.seed.unwrap_or(0),
        batch_size: e.batch_size.unwrap_or(50),
        split: e.split.clone().unwrap_or_else(|| "train".into()),
        kid_subsets: e.kid_subsets.unwrap_or(100),
        kid_subset_size: e.kid_subset_size.unwrap_or(1000),
        max_reference: e.max_reference,
        grid: e.grid.unwrap_or(64),
        near_threshold,
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
    if !crate::shards::is_split(&eval.split) {
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

/// Model paths, each looked up in the documented order (`models::locate`: the config's path, then
/// `$ANIME_PIPE_MODELS`, the per-user model directory, `../shared/models` beside the config). Existence is checked
/// when a stage loads one, so configs that never use a model need not provide it.
fn resolve_models(m: &ModelsOptions, base_dir: &Path) -> ModelPaths {
    let [face_detector, waifu2x, realesrgan, fid_inception] = model_lookups(m, base_dir).map(|(_, lookup)| lookup.path);
    ModelPaths { face_detector, waifu2x, realesrgan, fid_inception }
}

/// The lookup of every model of `models:` (for `anime-pipe models`), in `Role::ALL` order.
pub fn model_lookups(m: &ModelsOptions, base_dir: &Path) -> [(Role, Lookup); 4] {
    let dirs = ModelDirs::from_env(base_dir);
    Role::ALL.map(|role| {
        let configured = match role {
            Role::FaceDetector => &m.face_detector,
            Role::Waifu2x => &m.waifu2x,
            Role::Realesrgan => &m.realesrgan,
            Role::FidInception => &m.fid_inception,
        };
        let configured = configured.as_ref().map(|p| if p.is_absolute() { p.clone() } else { base_dir.join(p) });
        (role, locate(configured.as_deref(), role.default_file(), &dirs))
    })
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

/// The data stages (in pipeline order) and the steps after them (`train`, then `eval`).
fn resolve_stages(stages: Option<&[String]>) -> Result<(Vec<Stage>, Vec<AfterStage>)> {
    let Some(stages) = stages else {
        return Ok((Stage::DEFAULT.to_vec(), Vec::new()));
    };
    let (mut parsed, mut after) = (Vec::with_capacity(stages.len()), Vec::new());
    for (i, s) in stages.iter().enumerate() {
        if let Ok(step) = s.parse::<AfterStage>() {
            after.push(step);
            continue;
        }
        let names: Vec<&str> = Stage::names().into_iter().chain(AfterStage::names()).collect();
        parsed.push(
            s.parse::<Stage>()
                .map_err(|_| anyhow::anyhow!("stages[{i}] = {s:?}: expected one of {}", names.join(", ")))?,
        );
    }
    // Stages always run in pipeline order, whatever order the user listed them in.
    let stages = Stage::ALL.iter().copied().filter(|s| parsed.contains(s)).collect();
    Ok((stages, AfterStage::ALL.iter().copied().filter(|s| after.contains(s)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faces::detector::Family;
    use crate::faces::geometry::Border;
    use crate::faces::upscale::Method as UpscaleMethod;
    use crate::gan::steps::Optimizer;

    fn resolve(yaml: &str) -> Result<Resolved> {
        ConfigFile::parse(yaml, Path::new("pipeline.yaml"))?.resolve(Path::new("/base"))
    }

    #[test]
    fn empty_config_resolves_to_documented_defaults() {
        let s = resolve("{}").unwrap();
        assert_eq!(s.plan.clean.min_size, 64);
        assert_eq!(s.plan.pack.sizes, vec![64]);
        assert_eq!(s.plan.dedup.phash_threshold, 6);
        assert_eq!(s.plan.stages, Stage::DEFAULT);
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
        assert_eq!(s.plan.sources[0].path, Path::new("/base/data/k.zip"));
        assert!(s.plan.sources[0].already_cropped);
    }

    #[test]
    fn crop_upscale_and_models_defaults() {
        let s = resolve("pack:\n  sizes: [64, 128]\n").unwrap();
        assert_eq!(s.plan.crop.detector.scales, vec![1.0, 2.0]);
        assert_eq!(
            (s.plan.crop.score_threshold, s.plan.crop.detector.nms_iou, s.plan.crop.detector.max_side),
            (0.5, 0.3, 2048)
        );
        assert_eq!(s.plan.crop.geometry.border, Border::Clamp);
        assert_eq!(s.plan.upscale.target, 128, "largest pack size");
        assert_eq!(s.plan.upscale.method, UpscaleMethod::Lanczos);
        // Unset: looked up by file name; without $ANIME_PIPE_MODELS or a per-user copy, ../shared/models.
        let default = |file: &str| crate::models::locate(None, file, &ModelDirs::from_env(Path::new("/base"))).path;
        assert_eq!(s.plan.models.face_detector, default("anime_faceboxes.onnx"));
        assert!(s.plan.models.face_detector.ends_with("anime_faceboxes.onnx"));
        assert_eq!(s.device, Device::Auto);
        let s = resolve("crop: {detector: yolo, border: constant, pad_color: [1, 2, 3]}\nupscale: {method: waifu2x}\n")
            .unwrap();
        assert_eq!((s.plan.crop.detector.family, s.plan.crop.pad_color), (Family::Yolo, [1, 2, 3]));
        assert_eq!(s.plan.upscale.method, UpscaleMethod::Waifu2x);
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
        let dirs = ModelDirs::from_env(Path::new("/base"));
        assert_eq!(s.plan.models.fid_inception, locate(None, "fid_inception_v3_pool3.onnx", &dirs).path);
        let s = resolve("eval: {samples: 64, split: val}\nmodels: {fid_inception: /m/i.onnx}\n").unwrap();
        assert_eq!((s.eval.samples, s.eval.split.as_str()), (64, "val"));
        assert_eq!(s.plan.models.fid_inception, Path::new("/m/i.onnx"));
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
        assert_eq!(s.plan.stages, vec![Stage::Ingest, Stage::Pack]);
        assert!(s.after.is_empty());
        let s = resolve("stages: [eval, ingest, train, pack]\n").unwrap();
        assert_eq!(s.plan.stages, vec![Stage::Ingest, Stage::Pack]);
        assert_eq!(s.after, vec![AfterStage::Train, AfterStage::Eval]);
        let err = resolve("stages: [ingest, trian]\n").unwrap_err().to_string();
        assert!(err.contains("stages[1]") && err.contains("train, eval"), "{err}");
    }

    #[test]
    fn the_train_section_resolves_and_rejects_unknown_keys() {
        let s =
            resolve("train:\n  preset: getchu\n  lr_g: 0.001\n  betas_d: [0.6, 0.99]\n  optimizer: adamw\n").unwrap();
        let t = &s.train;
        assert_eq!((t.preset.as_str(), t.batch_size, t.g.lr, t.d.lr), ("getchu", 64, 1e-3, 4e-4));
        assert_eq!((t.d.beta1, t.d.beta2, t.g.beta1, t.d.optimizer), (0.6, 0.99, 0.5, Optimizer::Adamw));
        let err = format!("{:#}", resolve("train:\n  lr: 0.1\n").unwrap_err());
        assert!(err.contains("lr"), "{err}");
        let err = resolve("train: {real_label: 2}").unwrap_err();
        assert!(err.to_string().contains("train.real_label"), "{err}");
        // The documented pipeline.yaml of the checkout resolves to its preset.
        let doc = ConfigFile::parse(include_str!("../../pipeline.yaml"), Path::new("pipeline.yaml")).unwrap();
        assert_eq!(resolve_train(&doc.train).unwrap(), presets::preset("dcgan64").unwrap());
    }

    #[test]
    fn train_options_override_the_preset_and_errors_name_the_key() {
        let o =
            TrainOptions { preset: Some("anime300".into()), lr_g: Some(1e-3), steps: Some(7), ..Default::default() };
        let c = resolve_train(&o).unwrap();
        assert_eq!((c.g.lr, c.d.lr, c.length), (1e-3, 1e-4, Length { epochs: None, steps: Some(7) }));
        for (o, key) in [
            (TrainOptions { preset: Some("wgan".into()), ..Default::default() }, "train.preset"),
            (TrainOptions { image_size: Some(48), ..Default::default() }, "train.image_size"),
            (TrainOptions { betas_d: Some([0.5, 1.5]), ..Default::default() }, "train.betas_d"),
            (TrainOptions { lr_g: Some(-1.0), ..Default::default() }, "train.lr_g"),
            (TrainOptions { label_flip: Some(0.7), ..Default::default() }, "train.label_flip"),
            (TrainOptions { ema: Some(1.0), ..Default::default() }, "train.ema"),
            (
                TrainOptions { loss: Some(GanLoss::Hinge), label_flip: Some(0.1), ..Default::default() },
                "train.label_flip",
            ),
            (TrainOptions { epochs: Some(0), ..Default::default() }, "train.epochs"),
            (TrainOptions { arch: Some("resnet".into()), ..Default::default() }, "train.arch"),
            (TrainOptions { crop: Some(0.8), ..Default::default() }, "train.crop"),
            (TrainOptions { rotate: Some(-5.0), ..Default::default() }, "train.rotate"),
        ] {
            let err = resolve_train(&o).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
