//! `anime-pipe eval`: FID and KID of generators against the packed training data, with the standard Inception
//! network, across a training run's checkpoints, plus mode-collapse signals, a Parquet table and an HTML report.
//!
//! ```text
//! anime-pipe eval --run runs/<name>                    # every checkpoints/epoch-NNNN.generator.onnx
//! anime-pipe eval --run <name> --checkpoints 100,200   # some epochs (a name alone is looked up in <workdir>/runs)
//! anime-pipe eval --model generator.onnx -n 2000       # one generator, printed only
//! ```
//!
//! ## What is measured, per generator
//! 1. `eval.samples` images (`-n`, default 10,000) from seeded latents ([`generator`]: sample i's latent depends
//!    only on (seed, i), so every checkpoint sees the same latents), in batches of `eval.batch_size`.
//! 2. Inception pool3 features of each ([`features`]: bilinear resize to 299x299 exactly as PyTorch's
//!    `F.interpolate(mode="bilinear", align_corners=False)`, as pytorch-fid does).
//! 3. Against the reference set — the pack split `eval.split` (default train) at the generator's output size
//!    (`--size` to override), features cached under `cache/fid/` ([`reference`]) —:
//!    - `fid` ([`fid`]: Gaussian fits, trace of the matrix square root from symmetric eigendecompositions in f64);
//!    - `kid_mean`, `kid_std` ([`kid`]: unbiased MMD² with the cubic polynomial kernel over subsets);
//!    - `feature_spread_ratio`, `near_dup_count` ([`collapse`]).
//!
//! FID is biased upwards for small n (it needs >= 2048 samples for a full-rank covariance, and the customary
//! protocol is 10k-50k): compare FIDs only at equal n. KID is unbiased and usable at small n.
//!
//! ## Run directory (written by `anime-pipe train`)
//! Read: `checkpoints/epoch-NNNN.generator.onnx` (or, if there are none, `generator.onnx`, labelled "final"),
//! the step of each checkpoint from `checkpoints/epoch-NNNN.safetensors`' metadata (`step`) or else the last
//! step of that epoch in `metrics.parquet`, `config.json` and `metrics.parquet` for the report.
//! Written:
//! - `eval.parquet`: one row per evaluated generator, sorted by epoch (final last); a re-run replaces the rows of
//!   the generators it evaluates and keeps the others. A generator whose row was computed from the same inputs
//!   (generator file, dataset, split, size, Inception model, n, seed, KID settings: the `eval_key` column) is not
//!   recomputed unless `--force`.
//!
//!   | column | type | meaning |
//!   |---|---|---|
//!   | `checkpoint` | str | generator path relative to the run directory |
//!   | `epoch` | u32? | from the file name (null for `generator.onnx`) |
//!   | `step` | u64? | training step of the checkpoint, when known |
//!   | `n` | u32 | generated samples |
//!   | `fid` | f64 | Fréchet Inception Distance |
//!   | `kid_mean`, `kid_std` | f64 | KID: mean and standard deviation over subsets |
//!   | `kid_subsets`, `kid_subset_size` | u32 | as used (shrunk for small n) |
//!   | `feature_spread_ratio` | f64 | mean pairwise feature distance, generated / real |
//!   | `near_dup_count` | u32 | generated samples that are near duplicates of another (pHash) |
//!   | `seconds` | f64 | wall time of this generator's evaluation (generation, Inception, metrics; not the reference) |
//!   | `size` | u32 | generated image side |
//!   | `seed` | u64 | latent seed |
//!   | `reference` | str | reference cache key (see [`reference`]) |
//!   | `reference_count` | u32 | reference images |
//!   | `generator_blake3` | str | blake3 of the .onnx file |
//!   | `eval_key` | str | blake3 of everything the row depends on |
//! - `eval/<label>.png`: the first `eval.grid` samples of each generator (same latents for every checkpoint);
//! - `report.html`: self-contained (see [`report`]).
pub mod collapse;
pub mod features;
pub mod fid;
pub mod generator;
pub mod kid;
pub mod reference;
pub mod report;

use crate::env::Env;
use crate::manifest::columns::{self, col, frame};
use crate::report::{Reporter, Summary};
use crate::runtime::SessionOptions;
use anyhow::{bail, Context, Result};
use features::{Features, Inception, FEATURE_DIM};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const EVAL_PARQUET: &str = "eval.parquet";
pub const REPORT_HTML: &str = "report.html";
/// Bumped when the meaning of an eval.parquet row changes, so older rows are recomputed.
const ALGORITHM: &str = "eval/1";

/// Resolved `eval:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// pHash distance at which two generated samples count as near duplicates (`dedup.phash_threshold`).
    pub near_threshold: u32,
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub enum Target {
    /// A run directory, optionally restricted to some epochs.
    Run { dir: PathBuf, epochs: Vec<u32> },
    /// One generator file.
    Model(PathBuf),
}

#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub target: Target,
    /// Reference pack size (default: the generator's output size).
    pub size: Option<u32>,
    pub force: bool,
    /// Also write each generator's features to `<dir>/<label>.safetensors` (tensor `features`), for
    /// bench/fid_reference.py; every generator is then recomputed.
    pub save_features: Option<PathBuf>,
    pub settings: EvalSettings,
    /// The FID Inception model (`models.fid_inception`).
    pub inception: PathBuf,
}

/// One evaluation in progress: where it runs and what was asked.
pub(crate) struct Ctx<'a> {
    pub env: &'a Env,
    pub req: &'a EvalRequest,
}

/// One generator to evaluate.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    /// Path relative to the run directory (or the file name for `--model`).
    pub relative: String,
    pub epoch: Option<u32>,
    pub step: Option<u64>,
    /// "epoch-0005", "final", or the model's file stem.
    pub label: String,
}

/// One row of eval.parquet.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub checkpoint: String,
    pub label: String,
    pub epoch: Option<u32>,
    pub step: Option<u64>,
    pub n: u32,
    pub fid: f64,
    pub kid_mean: f64,
    pub kid_std: f64,
    pub kid_subsets: u32,
    pub kid_subset_size: u32,
    pub feature_spread_ratio: f64,
    pub near_dup_count: u32,
    pub seconds: f64,
    pub size: u32,
    pub seed: u64,
    pub reference: String,
    pub reference_count: u32,
    pub generator_blake3: String,
    pub eval_key: String,
    /// Reused from a previous eval.parquet rather than computed now (not stored).
    #[serde(skip)]
    pub reused: bool,
}

/// What `eval` produced: the rows of this invocation (in checkpoint order) and the summary.
pub struct Outcome {
    pub rows: Vec<Row>,
    pub summary: Summary,
}

impl Outcome {
    /// A per-generator table then the summary on stdout, or one JSON object (`--json`: the summary's fields plus
    /// `rows`).
    pub fn emit(&self, reporter: &Reporter) {
        if reporter.json {
            let mut value = serde_json::to_value(&self.summary).expect("summary serialises");
            value["rows"] = serde_json::to_value(&self.rows).expect("rows serialise");
            println!("{value}");
        } else if !reporter.quiet {
            print!("{}", render_table(&self.rows));
            print!("{}", self.summary.render_table());
        }
    }
}

/// Fixed-width table of the rows (KID shown x 10^3, as usually reported).
pub fn render_table(rows: &[Row]) -> String {
    let header = ["generator", "epoch", "step", "n", "FID", "KID x1e3", "spread", "near-dups", "time"];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        lines.push(vec![
            r.label.clone(),
            r.epoch.map_or("-".into(), |e| e.to_string()),
            r.step.map_or("-".into(), |s| s.to_string()),
            r.n.to_string(),
            format!("{:.2}", r.fid),
            format!("{:.2} ± {:.2}", r.kid_mean * 1e3, r.kid_std * 1e3),
            format!("{:.3}", r.feature_spread_ratio),
            r.near_dup_count.to_string(),
            if r.reused { "cached".into() } else { format!("{:.1} s", r.seconds) },
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| if c == 0 { format!("{v:<w$}") } else { format!("{v:>w$}") })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs `eval` (see the module docs).
pub fn run(env: &Env, request: &EvalRequest) -> Result<Outcome> {
    let ctx = &Ctx { env, req: request };
    let mut summary = Summary::start("eval");
    let settings = &ctx.req.settings;
    let (run_dir, checkpoints) = match &request.target {
        Target::Run { dir, epochs } => {
            let dir = resolve_run_dir(ctx, dir)?;
            let checkpoints = run_checkpoints(&dir, epochs)?;
            (Some(dir), checkpoints)
        }
        Target::Model(path) => (None, vec![model_checkpoint(path)?]),
    };
    let options = SessionOptions { device: ctx.env.device, threads: ctx.env.threads, optimize: true };
    let mut inception = Inception::load(&ctx.req.inception, &options)?;
    let dataset_digest = crate::digest::dataset_digest(&ctx.env.workdir)?;
    let previous = match &run_dir {
        Some(dir) => read_rows(&dir.join(EVAL_PARQUET))?,
        None => Vec::new(),
    };

    // Reference set and its mean pairwise feature distance, per pack size.
    let mut references: BTreeMap<u32, (reference::Reference, f64)> = BTreeMap::new();
    let mut reference_embedded = 0u64;
    let mut generated_embedded = 0u64;
    let inception_blake3 = inception.model_blake3.clone();
    let mut timings = Timings::default();
    let mut rows = Vec::new();
    for checkpoint in &checkpoints {
        let generator_blake3 = crate::manifest::file_blake3(&checkpoint.path)?;
        let key_of =
            |size: u32| eval_key(&generator_blake3, &dataset_digest, &inception_blake3, settings, request.size, size);
        let reusable = previous.iter().find(|r| {
            r.generator_blake3 == generator_blake3
                && r.eval_key == key_of(r.size)
                && run_dir.as_ref().is_some_and(|d| grid_path(d, &r.label).exists())
        });
        if let (Some(old), false) = (reusable, request.force || request.save_features.is_some()) {
            rows.push(Row {
                checkpoint: checkpoint.relative.clone(),
                label: checkpoint.label.clone(),
                epoch: checkpoint.epoch,
                step: checkpoint.step,
                reused: true,
                ..old.clone()
            });
            continue;
        }
        let started = Instant::now();
        let mut generator = generator::Generator::load(&checkpoint.path, &options)?;
        if let Some(side) = generator.declared_side() {
            // Fail before minutes of sampling when there is nothing to compare against.
            let size = request.size.unwrap_or(side);
            if !references.contains_key(&size) {
                reference::reference_items(&ctx.env.workdir, size, &settings.split)?;
            }
        }
        let sample = generate_and_embed(ctx, checkpoint, &mut generator, &mut inception, settings, &mut timings)?;
        generated_embedded += sample.features.rows as u64;
        let ref_size = request.size.unwrap_or(sample.side);
        let mut reference_time = std::time::Duration::ZERO;
        if let std::collections::btree_map::Entry::Vacant(slot) = references.entry(ref_size) {
            let reference_started = Instant::now();
            let spec = reference::ReferenceSpec {
                dataset_digest: dataset_digest.clone(),
                split: settings.split.clone(),
                size: ref_size,
                inception_blake3: inception_blake3.clone(),
                max_reference: settings.max_reference,
            };
            let bar = ctx.env.reporter.bar(0, "reals");
            let before = inception.images_embedded();
            let r = reference::load_or_compute(&ctx.env.workdir, &spec, &mut inception, settings.batch_size, &bar)?;
            bar.finish_and_clear();
            reference_embedded += inception.images_embedded() - before;
            let spread = collapse::mean_pairwise_distance(&r.features, settings.seed);
            slot.insert((r, spread));
            reference_time = reference_started.elapsed();
            timings.reference += reference_time;
        }
        let (reference, real_spread) = &references[&ref_size];
        let row = Row {
            generator_blake3: generator_blake3.clone(),
            eval_key: key_of(sample.side),
            ..score(checkpoint, &sample, reference, *real_spread, ctx, &mut timings)?
        };
        if let Some(dir) = &request.save_features {
            reference::write_features(&dir.join(format!("{}.safetensors", checkpoint.label)), &sample.features)?;
        }
        if let Some(dir) = &run_dir {
            let png = report::grid_png(&sample.grid, sample.side, settings.grid.min(sample.count))?;
            crate::workdir::atomic_write(&grid_path(dir, &checkpoint.label), &png)?;
        }
        // The generator's own cost: the one-off reference computation is not charged to it.
        rows.push(Row { seconds: (started.elapsed() - reference_time).as_secs_f64(), ..row });
    }

    summary
        .count("generators evaluated", rows.iter().filter(|r| !r.reused).count() as u64)
        .count("generators reused from eval.parquet", rows.iter().filter(|r| r.reused).count() as u64)
        .count("generated images embedded", generated_embedded)
        .count("reference images embedded", reference_embedded);
    for (r, _) in references.values() {
        let how = if r.cached { "cached" } else { "computed" };
        summary.fact(
            &format!("reference {}x{}", r.spec.size, r.spec.size),
            format!(
                "{} {} images, {how}: {}",
                r.features.rows,
                r.spec.split,
                r.spec.cache_path(&ctx.env.workdir).display()
            ),
        );
    }
    let seconds = |d: std::time::Duration| format!("{:.1} s", d.as_secs_f64());
    summary
        .fact("time: generators", seconds(timings.generate))
        .fact("time: resize to 299 (all images)", seconds(inception.resize_time))
        .fact("time: Inception network (all images)", seconds(inception.network_time))
        .fact("time: reference (read + embed + stats)", seconds(timings.reference))
        .fact("time: FID / KID / spread / pHash", {
            let t = [timings.fid, timings.kid, timings.spread, timings.phash];
            t.map(|d| format!("{:.2}", d.as_secs_f64())).join(" / ") + " s"
        });
    summary.fact("dataset digest", &dataset_digest).fact("inception", ctx.req.inception.display());
    if let Some(dir) = &run_dir {
        let all = merge_rows(previous, &rows);
        write_rows(&dir.join(EVAL_PARQUET), &all)?;
        let html = report::build(ctx, dir, &all, &dataset_digest)?;
        crate::workdir::atomic_write(&dir.join(REPORT_HTML), html.as_bytes())?;
        summary.fact("eval table", dir.join(EVAL_PARQUET).display()).fact("report", dir.join(REPORT_HTML).display());
    }
    Ok(Outcome { rows, summary: summary.finish() })
}

/// Where the time went, over all generators (reported in the summary; the benchmark figures come from here).
#[derive(Debug, Default)]
struct Timings {
    generate: std::time::Duration,
    phash: std::time::Duration,
    reference: std::time::Duration,
    fid: std::time::Duration,
    kid: std::time::Duration,
    spread: std::time::Duration,
}

/// The features, hashes and grid of one generator's samples.
struct Sample {
    count: usize,
    side: u32,
    features: Features,
    phashes: Vec<u64>,
    /// The first `eval.grid` images, packed RGB8.
    grid: Vec<u8>,
}

/// Generates `eval.samples` images batch by batch, embedding each batch right away (only features, hashes and
/// the grid images are kept, so memory does not grow with n beyond the features).
fn generate_and_embed(
    ctx: &Ctx<'_>,
    checkpoint: &Checkpoint,
    generator: &mut generator::Generator,
    inception: &mut Inception,
    settings: &EvalSettings,
    timings: &mut Timings,
) -> Result<Sample> {
    let batch = generator.batch_size(settings.batch_size);
    let mut latents = generator::LatentStream::new(settings.seed, generator.latent_len());
    let n = settings.samples;
    let bar = ctx.env.reporter.bar(n as u64, &checkpoint.label);
    let mut sample =
        Sample { count: 0, side: 0, features: Features::empty(FEATURE_DIM), phashes: Vec::new(), grid: Vec::new() };
    while sample.count < n {
        let count = batch.min(n - sample.count);
        let z = latents.next_block(count);
        let started = Instant::now();
        let (pixels, side) = generator.generate(&z, count)?;
        timings.generate += started.elapsed();
        if sample.side != 0 && side != sample.side {
            bail!("{}: output size changed between batches ({} then {side})", checkpoint.path.display(), sample.side);
        }
        sample.side = side;
        let image_len = (side * side * 3) as usize;
        let features = inception.embed(&pixels, count, side as usize, side as usize)?;
        sample.features.push_rows(&features.data);
        let started = Instant::now();
        sample.phashes.extend(collapse::phashes(&pixels, side));
        timings.phash += started.elapsed();
        let grid_missing = settings.grid.saturating_sub(sample.count).min(count);
        sample.grid.extend_from_slice(&pixels[..grid_missing * image_len]);
        sample.count += count;
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    Ok(sample)
}

fn score(
    checkpoint: &Checkpoint,
    sample: &Sample,
    reference: &reference::Reference,
    real_spread: f64,
    ctx: &Ctx<'_>,
    timings: &mut Timings,
) -> Result<Row> {
    let settings = &ctx.req.settings;
    let started = Instant::now();
    let stats = fid::GaussianStats::of(&sample.features)?;
    let fid = fid::fid(&stats, &reference.stats)?;
    let kid_started = Instant::now();
    timings.fid += kid_started - started;
    let kid_options =
        kid::KidOptions { subsets: settings.kid_subsets, subset_size: settings.kid_subset_size, seed: settings.seed };
    let kid = kid::kid(&sample.features, &reference.features, &kid_options)?;
    let spread_started = Instant::now();
    timings.kid += spread_started - kid_started;
    let spread = collapse::mean_pairwise_distance(&sample.features, settings.seed) / real_spread;
    timings.spread += spread_started.elapsed();
    let near = collapse::near_duplicate_count(&sample.phashes, ctx.req.settings.near_threshold);
    Ok(Row {
        checkpoint: checkpoint.relative.clone(),
        label: checkpoint.label.clone(),
        epoch: checkpoint.epoch,
        step: checkpoint.step,
        n: sample.count as u32,
        fid,
        kid_mean: kid.mean,
        kid_std: kid.std,
        kid_subsets: kid.subsets as u32,
        kid_subset_size: kid.subset_size as u32,
        feature_spread_ratio: spread,
        near_dup_count: near as u32,
        seconds: 0.0,
        size: sample.side,
        seed: settings.seed,
        reference: reference.key.clone(),
        reference_count: reference.features.rows as u32,
        generator_blake3: String::new(),
        eval_key: String::new(),
        reused: false,
    })
}

/// blake3 of everything a row depends on (see the module docs).
fn eval_key(
    generator_blake3: &str,
    dataset_digest: &str,
    inception_blake3: &str,
    settings: &EvalSettings,
    size_override: Option<u32>,
    generated_size: u32,
) -> String {
    let text = format!(
        "{ALGORITHM}\ngenerator={generator_blake3}\ndigest={dataset_digest}\ninception={inception_blake3}\n\
         split={}\nsize={}\nmax_reference={:?}\nn={}\nseed={}\nkid={}x{}\n",
        settings.split,
        size_override.unwrap_or(generated_size),
        settings.max_reference,
        settings.samples,
        settings.seed,
        settings.kid_subsets,
        settings.kid_subset_size,
    );
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// `--run DIR`: the directory if it exists, else `<workdir>/runs/DIR` for a bare name.
fn resolve_run_dir(ctx: &Ctx<'_>, dir: &Path) -> Result<PathBuf> {
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let under_runs = ctx.env.workdir.runs_dir().join(dir);
    if dir.components().count() == 1 && under_runs.is_dir() {
        return Ok(under_runs);
    }
    bail!("--run {}: no such run directory (nor {})", dir.display(), under_runs.display())
}

/// What a checkpoint file name says: `epoch-0005.generator.onnx` (end of epoch 5) or
/// `step-00001234.generator.onnx` (a run stopped inside an epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointName {
    Epoch(u32),
    Step(u64),
}

fn parse_checkpoint_name(name: &str) -> Option<CheckpointName> {
    let stem = name.strip_suffix(".generator.onnx")?;
    fn number(digits: &str) -> Option<&str> {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
    }
    if let Some(digits) = stem.strip_prefix("epoch-").and_then(number) {
        return digits.parse().ok().map(CheckpointName::Epoch);
    }
    stem.strip_prefix("step-").and_then(number).and_then(|d| d.parse().ok()).map(CheckpointName::Step)
}

/// The generators of a run: `checkpoints/epoch-NNNN.generator.onnx` and `checkpoints/step-NNNNNNNN.generator.onnx`
/// (the latter only without an epoch filter), plus `generator.onnx` as "final" when it differs from every
/// checkpoint's generator (or there is none). `epochs` (non-empty) selects epoch checkpoints; a missing one is an
/// error naming those available. Ordered by training progress (step, then epoch).
pub fn run_checkpoints(dir: &Path, epochs: &[u32]) -> Result<Vec<Checkpoint>> {
    let mut found: Vec<(CheckpointName, PathBuf)> = Vec::new();
    let checkpoints_dir = dir.join("checkpoints");
    if checkpoints_dir.is_dir() {
        for entry in std::fs::read_dir(&checkpoints_dir)? {
            let path = entry?.path();
            if let Some(name) = path.file_name().and_then(|n| parse_checkpoint_name(&n.to_string_lossy())) {
                found.push((name, path));
            }
        }
    }
    let available: Vec<u32> = found
        .iter()
        .filter_map(|(n, _)| match n {
            CheckpointName::Epoch(e) => Some(*e),
            CheckpointName::Step(_) => None,
        })
        .collect();
    if let Some(missing) = epochs.iter().find(|e| !available.contains(e)) {
        let mut available = available.clone();
        available.sort_unstable();
        bail!(
            "--checkpoints: {} has no checkpoints/epoch-{missing:04}.generator.onnx (available epochs: {available:?})",
            dir.display()
        );
    }
    let metrics = read_epoch_steps(&dir.join("metrics.parquet"));
    let mut checkpoints = Vec::new();
    for (name, path) in found {
        let file = path.file_name().expect("listed file").to_string_lossy().to_string();
        let label = file.trim_end_matches(".generator.onnx").to_string();
        let recorded_step = checkpoint_step(&path.with_file_name(format!("{label}.safetensors")));
        let (epoch, step) = match name {
            CheckpointName::Epoch(e) if epochs.is_empty() || epochs.contains(&e) => {
                (Some(e), recorded_step.or_else(|| metrics.get(&e).copied()))
            }
            CheckpointName::Step(s) if epochs.is_empty() => (None, Some(s)),
            _ => continue,
        };
        checkpoints.push(Checkpoint { path, relative: format!("checkpoints/{file}"), epoch, step, label });
    }
    checkpoints.sort_by_key(|c| progress_key(c.step, c.epoch, &c.relative));
    let last = dir.join("generator.onnx");
    if epochs.is_empty() && last.is_file() {
        let hash = crate::manifest::file_blake3(&last)?;
        let mut same = false;
        for c in &checkpoints {
            same |= crate::manifest::file_blake3(&c.path)? == hash;
        }
        if !same {
            checkpoints.push(Checkpoint {
                path: last,
                relative: "generator.onnx".into(),
                epoch: None,
                step: None,
                label: "final".into(),
            });
        }
    }
    if checkpoints.is_empty() {
        bail!(
            "{} has no generator to evaluate: expected checkpoints/epoch-NNNN.generator.onnx or generator.onnx \
             (is it a run directory written by `anime-pipe train`?)",
            dir.display()
        );
    }
    Ok(checkpoints)
}

fn model_checkpoint(path: &Path) -> Result<Checkpoint> {
    if !path.is_file() {
        bail!("--model {}: no such file", path.display());
    }
    let label = path.file_stem().map_or("generator".into(), |s| s.to_string_lossy().to_string());
    Ok(Checkpoint { path: path.to_path_buf(), relative: path.display().to_string(), epoch: None, step: None, label })
}

/// The `step` recorded in a checkpoint's safetensors metadata, if any.
fn checkpoint_step(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    value.get("__metadata__")?.get("step")?.as_str()?.parse().ok()
}

/// epoch -> last step of that epoch in metrics.parquet (empty when unreadable).
fn read_epoch_steps(path: &Path) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let Ok(df) = crate::manifest::read_parquet(path) else {
        return out;
    };
    let (Ok(steps), Ok(epochs)) = (columns::opt_f64s(&df, "step"), columns::opt_f64s(&df, "epoch")) else {
        return out;
    };
    for (step, epoch) in steps.into_iter().zip(epochs) {
        if let (Some(s), Some(e)) = (step, epoch) {
            let entry = out.entry(e as u32).or_insert(s as u64);
            *entry = (*entry).max(s as u64);
        }
    }
    out
}

pub fn grid_path(run_dir: &Path, label: &str) -> PathBuf {
    run_dir.join("eval").join(format!("{label}.png"))
}

/// Rows of a previous eval.parquet (empty when there is none or it cannot be read: it is only a cache).
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    match try_read_rows(path) {
        Ok(rows) => Ok(rows),
        Err(e) => {
            tracing::warn!("ignoring {}: {e:#}", path.display());
            Ok(Vec::new())
        }
    }
}

fn try_read_rows(path: &Path) -> Result<Vec<Row>> {
    let df = crate::manifest::read_parquet(path)?;
    let s = |name| columns::strings(&df, name);
    let f = |name| -> Result<Vec<f64>> {
        columns::opt_f64s(&df, name)?.into_iter().map(|v| v.context("null value")).collect()
    };
    let u = |name| columns::u32s(&df, name);
    let (checkpoint, reference, generator, key) =
        (s("checkpoint")?, s("reference")?, s("generator_blake3")?, s("eval_key")?);
    let (epoch, step) = (columns::opt_u32s(&df, "epoch")?, columns::opt_f64s(&df, "step")?);
    let (fid, kid_mean, kid_std, spread, seconds) =
        (f("fid")?, f("kid_mean")?, f("kid_std")?, f("feature_spread_ratio")?, f("seconds")?);
    let (n, near, size, subsets, subset_size, ref_count) =
        (u("n")?, u("near_dup_count")?, u("size")?, u("kid_subsets")?, u("kid_subset_size")?, u("reference_count")?);
    let seed = f("seed")?;
    Ok((0..df.height())
        .map(|i| Row {
            label: label_of(&checkpoint[i], epoch[i]),
            checkpoint: checkpoint[i].clone(),
            epoch: epoch[i],
            step: step[i].map(|v| v as u64),
            n: n[i],
            fid: fid[i],
            kid_mean: kid_mean[i],
            kid_std: kid_std[i],
            kid_subsets: subsets[i],
            kid_subset_size: subset_size[i],
            feature_spread_ratio: spread[i],
            near_dup_count: near[i],
            seconds: seconds[i],
            size: size[i],
            seed: seed[i] as u64,
            reference: reference[i].clone(),
            reference_count: ref_count[i],
            generator_blake3: generator[i].clone(),
            eval_key: key[i].clone(),
            reused: false,
        })
        .collect())
}

fn label_of(checkpoint: &str, epoch: Option<u32>) -> String {
    match epoch {
        Some(e) => format!("epoch-{e:04}"),
        None if checkpoint == "generator.onnx" => "final".into(),
        None => Path::new(checkpoint).file_stem().map_or("generator".into(), |s| s.to_string_lossy().to_string()),
    }
}

/// Training-progress order: by step, then epoch (unknown last), then path.
fn progress_key(step: Option<u64>, epoch: Option<u32>, path: &str) -> (u64, u32, String) {
    (step.unwrap_or(u64::MAX), epoch.unwrap_or(u32::MAX), path.to_string())
}

/// Previous rows of generators not evaluated now, plus the new rows, in training-progress order.
fn merge_rows(previous: Vec<Row>, new: &[Row]) -> Vec<Row> {
    let mut all: Vec<Row> =
        previous.into_iter().filter(|p| !new.iter().any(|r| r.checkpoint == p.checkpoint)).collect();
    all.extend(new.iter().cloned());
    all.sort_by_key(|r| progress_key(r.step, r.epoch, &r.checkpoint));
    all
}

pub fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let mut df = frame(
        rows.len(),
        vec![
            col("checkpoint", rows.iter().map(|r| r.checkpoint.as_str()).collect::<Vec<_>>()),
            col("epoch", rows.iter().map(|r| r.epoch).collect::<Vec<_>>()),
            col("step", rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            col("n", rows.iter().map(|r| r.n).collect::<Vec<_>>()),
            col("fid", rows.iter().map(|r| r.fid).collect::<Vec<_>>()),
            col("kid_mean", rows.iter().map(|r| r.kid_mean).collect::<Vec<_>>()),
            col("kid_std", rows.iter().map(|r| r.kid_std).collect::<Vec<_>>()),
            col("kid_subsets", rows.iter().map(|r| r.kid_subsets).collect::<Vec<_>>()),
            col("kid_subset_size", rows.iter().map(|r| r.kid_subset_size).collect::<Vec<_>>()),
            col("feature_spread_ratio", rows.iter().map(|r| r.feature_spread_ratio).collect::<Vec<_>>()),
            col("near_dup_count", rows.iter().map(|r| r.near_dup_count).collect::<Vec<_>>()),
            col("seconds", rows.iter().map(|r| r.seconds).collect::<Vec<_>>()),
            col("size", rows.iter().map(|r| r.size).collect::<Vec<_>>()),
            col("seed", rows.iter().map(|r| r.seed).collect::<Vec<_>>()),
            col("reference", rows.iter().map(|r| r.reference.as_str()).collect::<Vec<_>>()),
            col("reference_count", rows.iter().map(|r| r.reference_count).collect::<Vec<_>>()),
            col("generator_blake3", rows.iter().map(|r| r.generator_blake3.as_str()).collect::<Vec<_>>()),
            col("eval_key", rows.iter().map(|r| r.eval_key.as_str()).collect::<Vec<_>>()),
        ],
    )?;
    crate::manifest::write_parquet(path, &mut df)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_parse_to_epochs_and_steps() {
        use CheckpointName::*;
        assert_eq!(parse_checkpoint_name("epoch-0005.generator.onnx"), Some(Epoch(5)));
        assert_eq!(parse_checkpoint_name("epoch-12345.generator.onnx"), Some(Epoch(12345)));
        assert_eq!(parse_checkpoint_name("step-00001234.generator.onnx"), Some(Step(1234)));
        assert_eq!(parse_checkpoint_name("epoch-0005.safetensors"), None);
        assert_eq!(parse_checkpoint_name("epoch-.generator.onnx"), None);
        assert_eq!(parse_checkpoint_name("epoch-x1.generator.onnx"), None);
    }

    #[test]
    fn missing_epoch_lists_the_available_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        for e in [5, 10] {
            std::fs::write(dir.path().join(format!("checkpoints/epoch-{e:04}.generator.onnx")), b"x").unwrap();
        }
        std::fs::write(dir.path().join("checkpoints/step-00000123.generator.onnx"), b"y").unwrap();
        std::fs::write(dir.path().join("generator.onnx"), b"y").unwrap();
        let all = run_checkpoints(dir.path(), &[]).unwrap();
        let got: Vec<(&str, Option<u32>, Option<u64>)> =
            all.iter().map(|c| (c.label.as_str(), c.epoch, c.step)).collect();
        // No metadata or metrics: epoch checkpoints have no step and sort after the step checkpoint; generator.onnx
        // equals step-00000123's bytes, so it is not listed again.
        assert_eq!(
            got,
            vec![("step-00000123", None, Some(123)), ("epoch-0005", Some(5), None), ("epoch-0010", Some(10), None)]
        );
        std::fs::write(dir.path().join("generator.onnx"), b"z").unwrap();
        assert_eq!(run_checkpoints(dir.path(), &[]).unwrap().last().unwrap().label, "final");
        let only = run_checkpoints(dir.path(), &[10]).unwrap();
        assert_eq!(only.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), vec!["epoch-0010"]);
        let err = run_checkpoints(dir.path(), &[7]).unwrap_err().to_string();
        assert!(err.contains("epoch-0007") && err.contains("[5, 10]"), "{err}");
    }

    #[test]
    fn merge_keeps_other_checkpoints_and_orders_by_epoch() {
        let row = |checkpoint: &str, epoch: Option<u32>, fid: f64| Row {
            checkpoint: checkpoint.into(),
            label: label_of(checkpoint, epoch),
            epoch,
            step: None,
            n: 10,
            fid,
            kid_mean: 0.0,
            kid_std: 0.0,
            kid_subsets: 1,
            kid_subset_size: 10,
            feature_spread_ratio: 1.0,
            near_dup_count: 0,
            seconds: 0.0,
            size: 64,
            seed: 0,
            reference: "r".into(),
            reference_count: 2,
            generator_blake3: "g".into(),
            eval_key: "k".into(),
            reused: false,
        };
        let previous = vec![row("generator.onnx", None, 1.0), row("a", Some(10), 2.0), row("b", Some(5), 3.0)];
        let merged = merge_rows(previous, &[row("a", Some(10), 9.0)]);
        let got: Vec<(Option<u32>, f64)> = merged.iter().map(|r| (r.epoch, r.fid)).collect();
        assert_eq!(got, vec![(Some(5), 3.0), (Some(10), 9.0), (None, 1.0)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVAL_PARQUET);
        write_rows(&path, &merged).unwrap();
        assert_eq!(read_rows(&path).unwrap(), merged);
    }
}
