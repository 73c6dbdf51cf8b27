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
//! 1. `eval.samples` images (`-n`, default 10,000) from seeded latents (`gan::generator`: sample i's latent depends
//!    only on (seed, i), so every checkpoint sees the same latents), in batches of `eval.batch_size` ([`measure`]).
//! 2. Inception pool3 features of each ([`features`]: bilinear resize to 299x299 exactly as PyTorch's
//!    `F.interpolate(mode="bilinear", align_corners=False)`, as pytorch-fid does).
//! 3. Against the reference set — the pack split `eval.split` (default train) at the generator's output size
//!    (`--size` to override), features cached under `cache/fid/` ([`mod@reference`]) —:
//!    - `fid` ([`fid`]: Gaussian fits, trace of the matrix square root from symmetric eigendecompositions in f64);
//!    - `kid_mean`, `kid_std` ([`kid`]: unbiased MMD² with the cubic polynomial kernel over subsets);
//!    - `feature_spread_ratio`, `near_dup_count` ([`collapse`]).
//!
//! FID is biased upwards for small n (it needs >= 2048 samples for a full-rank covariance, and the customary
//! protocol is 10k-50k): compare FIDs only at equal n. KID is unbiased and usable at small n.
//!
//! ## Run directory (written by `anime-pipe train`; layout in `crate::rundir`)
//! Read: the generators ([`targets`]): `checkpoints/epoch-NNNN.generator.onnx` (or, if there are none,
//! `generator.onnx`, labelled "final"), the step of each checkpoint from `checkpoints/epoch-NNNN.safetensors`'
//! metadata (`step`) or else the last step of that epoch in `metrics.parquet`; `config.json` and
//! `metrics.parquet` for the report.
//! Written:
//! - `eval.parquet` ([`table`]): one row per evaluated generator, sorted by epoch (final last); a re-run replaces
//!   the rows of the generators it evaluates and keeps the others. A generator whose row was computed from the same inputs
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
//!   | `reference` | str | reference cache key (see [`mod@reference`]) |
//!   | `reference_count` | u32 | reference images |
//!   | `generator_blake3` | str | blake3 of the .onnx file |
//!   | `eval_key` | str | blake3 of everything the row depends on |
//! - `eval/<label>.png`: the first `eval.grid` samples of each generator (same latents for every checkpoint);
//! - `report.html`: self-contained (see [`report`]).
pub mod collapse;
pub mod features;
pub mod fid;
pub mod kid;
pub mod measure;
pub mod reference;
pub mod report;
pub mod scorer;
pub mod table;
pub mod targets;

use crate::env::Env;
use crate::gan::generator::Generator;
use crate::report::{Reporter, Summary};
use crate::rundir::RunDir;
use crate::runtime::SessionOptions;
use anyhow::Result;
use features::Inception;
use measure::{generate_and_embed, score, Timings};
use reference::Reference;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use table::{merge_rows, read_rows, render_table, write_rows, Row};
use targets::Checkpoint;

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

/// Runs `eval` (see the module docs).
pub fn run(env: &Env, request: &EvalRequest) -> Result<Outcome> {
    let ctx = &Ctx { env, req: request };
    let mut summary = Summary::start("eval");
    let (run_dir, checkpoints) = match &request.target {
        Target::Run { dir, epochs } => {
            let run = targets::resolve_run_dir(&env.workdir.runs_dir(), dir)?;
            let checkpoints = targets::run_checkpoints(&run, epochs)?;
            (Some(run), checkpoints)
        }
        Target::Model(path) => (None, vec![targets::model_checkpoint(path)?]),
    };
    let options = SessionOptions { device: env.device, threads: env.threads, optimize: true };
    let mut work = Work {
        ctx,
        inception: Inception::load(&request.inception, &options)?,
        options,
        dataset_digest: crate::digest::dataset_digest(&env.workdir)?,
        references: BTreeMap::new(),
        reference_embedded: 0,
        generated_embedded: 0,
        timings: Timings::default(),
    };
    let previous = match &run_dir {
        Some(run) => read_rows(&run.eval_table_path())?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for checkpoint in &checkpoints {
        let generator_blake3 = crate::manifest::file_blake3(&checkpoint.path)?;
        let recompute = request.force || request.save_features.is_some();
        match work.reusable_row(&previous, checkpoint, &generator_blake3, run_dir.as_ref()) {
            Some(old) if !recompute => rows.push(old),
            _ => rows.push(work.evaluate(checkpoint, generator_blake3, run_dir.as_ref())?),
        }
    }
    work.summarise(&rows, &mut summary);
    if let Some(run) = &run_dir {
        let all = merge_rows(previous, &rows);
        write_rows(&run.eval_table_path(), &all)?;
        let html = report::build(ctx, run, &all, &work.dataset_digest)?;
        crate::workdir::atomic_write(&run.report_path(), html.as_bytes())?;
        summary.fact("eval table", run.eval_table_path().display()).fact("report", run.report_path().display());
    }
    Ok(Outcome { rows, summary: summary.finish() })
}

/// One invocation's shared state: the Inception network, the reference sets computed so far and the counters.
struct Work<'a> {
    ctx: &'a Ctx<'a>,
    options: SessionOptions,
    inception: Inception,
    dataset_digest: String,
    /// Reference set and its mean pairwise feature distance, per pack size.
    references: BTreeMap<u32, (Reference, f64)>,
    reference_embedded: u64,
    generated_embedded: u64,
    timings: Timings,
}

impl Work<'_> {
    fn eval_key(&self, generator_blake3: &str, generated_size: u32) -> String {
        let req = self.ctx.req;
        let inception = &self.inception.model_blake3;
        eval_key(generator_blake3, &self.dataset_digest, inception, &req.settings, req.size, generated_size)
    }

    /// A previous row computed from the same inputs, when its grid is still there (to rebuild the report).
    fn reusable_row(
        &self,
        previous: &[Row],
        checkpoint: &Checkpoint,
        generator_blake3: &str,
        run_dir: Option<&RunDir>,
    ) -> Option<Row> {
        let old = previous.iter().find(|r| {
            r.generator_blake3 == generator_blake3
                && r.eval_key == self.eval_key(generator_blake3, r.size)
                && run_dir.is_some_and(|run| run.eval_grid_path(&r.label).exists())
        })?;
        Some(Row {
            checkpoint: checkpoint.relative.clone(),
            label: checkpoint.label.clone(),
            epoch: checkpoint.epoch,
            step: checkpoint.step,
            weights: checkpoint.weights.clone(),
            reused: true,
            ..old.clone()
        })
    }

    /// Samples, embeds and scores one generator; writes its grid (and features when asked).
    fn evaluate(&mut self, checkpoint: &Checkpoint, generator_blake3: String, run_dir: Option<&RunDir>) -> Result<Row> {
        let (ctx, settings) = (self.ctx, &self.ctx.req.settings);
        let started = Instant::now();
        let mut generator = Generator::load(&checkpoint.path, &self.options)?;
        if let Some(side) = generator.declared_side() {
            // Fail before minutes of sampling when there is nothing to compare against.
            let size = ctx.req.size.unwrap_or(side);
            if !self.references.contains_key(&size) {
                reference::reference_items(&ctx.env.workdir, size, &settings.split)?;
            }
        }
        let sample =
            generate_and_embed(ctx, checkpoint, &mut generator, &mut self.inception, settings, &mut self.timings)?;
        self.generated_embedded += sample.features.rows as u64;
        let ref_size = ctx.req.size.unwrap_or(sample.side);
        let reference_time = self.ensure_reference(ref_size)?;
        let (reference, real_spread) = &self.references[&ref_size];
        let row = Row {
            eval_key: self.eval_key(&generator_blake3, sample.side),
            generator_blake3,
            ..score(checkpoint, &sample, reference, *real_spread, ctx, &mut self.timings)?
        };
        if let Some(dir) = &ctx.req.save_features {
            reference::write_features(&dir.join(format!("{}.safetensors", checkpoint.label)), &sample.features)?;
        }
        if let Some(run) = run_dir {
            let png = report::grid_png(&sample.grid, sample.side, settings.grid.min(sample.count))?;
            crate::workdir::atomic_write(&run.eval_grid_path(&checkpoint.label), &png)?;
        }
        // The generator's own cost: the one-off reference computation is not charged to it.
        Ok(Row { seconds: (started.elapsed() - reference_time).as_secs_f64(), ..row })
    }

    /// Loads or computes the reference set at `size` unless already there; the time it took.
    fn ensure_reference(&mut self, size: u32) -> Result<Duration> {
        if self.references.contains_key(&size) {
            return Ok(Duration::ZERO);
        }
        let (ctx, settings) = (self.ctx, &self.ctx.req.settings);
        let started = Instant::now();
        let spec = reference::ReferenceSpec {
            dataset_digest: self.dataset_digest.clone(),
            split: settings.split.clone(),
            size,
            inception_blake3: self.inception.model_blake3.clone(),
            max_reference: settings.max_reference,
        };
        let bar = ctx.env.reporter.bar(0, "reals");
        let before = self.inception.images_embedded();
        let r = reference::load_or_compute(&ctx.env.workdir, &spec, &mut self.inception, settings.batch_size, &bar)?;
        bar.finish_and_clear();
        self.reference_embedded += self.inception.images_embedded() - before;
        let spread = collapse::mean_pairwise_distance(&r.features, settings.seed);
        self.references.insert(size, (r, spread));
        let took = started.elapsed();
        self.timings.reference += took;
        Ok(took)
    }

    /// Counts, references and where the time went.
    fn summarise(&self, rows: &[Row], summary: &mut Summary) {
        summary
            .count("generators evaluated", rows.iter().filter(|r| !r.reused).count() as u64)
            .count("generators reused from eval.parquet", rows.iter().filter(|r| r.reused).count() as u64)
            .count("generated images embedded", self.generated_embedded)
            .count("reference images embedded", self.reference_embedded);
        for (r, _) in self.references.values() {
            let how = if r.cached { "cached" } else { "computed" };
            summary.fact(
                &format!("reference {}x{}", r.spec.size, r.spec.size),
                format!(
                    "{} {} images, {how}: {}",
                    r.features.rows,
                    r.spec.split,
                    r.spec.cache_path(&self.ctx.env.workdir).display()
                ),
            );
        }
        let seconds = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let t = &self.timings;
        summary
            .fact("time: generators", seconds(t.generate))
            .fact("time: resize to 299 (all images)", seconds(self.inception.resize_time))
            .fact("time: Inception network (all images)", seconds(self.inception.network_time))
            .fact("time: reference (read + embed + stats)", seconds(t.reference))
            .fact("time: FID / KID / spread / pHash", {
                let t = [t.fid, t.kid, t.spread, t.phash];
                t.map(|d| format!("{:.2}", d.as_secs_f64())).join(" / ") + " s"
            });
        summary.fact("dataset digest", &self.dataset_digest).fact("inception", self.ctx.req.inception.display());
    }
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
