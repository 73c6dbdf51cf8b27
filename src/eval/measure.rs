//! Measuring one generator: its samples, embedded batch by batch, then scored against the reference set.
use super::features::{Features, Inception, FEATURE_DIM};
use super::reference::Reference;
use super::table::Row;
use super::targets::Checkpoint;
use super::{collapse, fid, kid, Ctx, EvalSettings};
use crate::gan::generator::{Generator, LatentStream};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// Where the time went, over all generators (reported in the summary; the benchmark figures come from here).
#[derive(Debug, Default)]
pub(crate) struct Timings {
    pub generate: Duration,
    pub phash: Duration,
    pub reference: Duration,
    pub fid: Duration,
    pub kid: Duration,
    pub spread: Duration,
}

/// The features, hashes and grid of one generator's samples.
pub(crate) struct Sample {
    pub count: usize,
    pub side: u32,
    pub features: Features,
    pub phashes: Vec<u64>,
    /// The first `eval.grid` images, packed RGB8.
    pub grid: Vec<u8>,
}

/// Generates `eval.samples` images batch by batch, embedding each batch right away (only features, hashes and
/// the grid images are kept, so memory does not grow with n beyond the features).
pub(crate) fn generate_and_embed(
    ctx: &Ctx<'_>,
    checkpoint: &Checkpoint,
    generator: &mut Generator,
    inception: &mut Inception,
    settings: &EvalSettings,
    timings: &mut Timings,
) -> Result<Sample> {
    let batch = generator.batch_size(settings.batch_size);
    let mut latents = LatentStream::new(settings.seed, generator.latent_len());
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

/// FID, KID, feature spread and near duplicates of one generator's sample against the reference set (`seconds`,
/// `generator_blake3` and `eval_key` are left for the caller).
pub(crate) fn score(
    checkpoint: &Checkpoint,
    sample: &Sample,
    reference: &Reference,
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
        weights: checkpoint.weights.clone(),
        reused: false,
    })
}
