//! `anime-pipe pack`: the accepted clean images, made square and resized to each training size, as safetensors
//! shards plus `manifests/pack.parquet`.
//!
//! ## Samples, split and order
//! Input: the rows of `clean.parquet` with status "ok". Pixels come from `upscaled_object` when clean passed one
//! through from the upscale stage, else from `object`; the split and the order use `object` either way, so turning
//! upscaling on or off never moves an image between splits. Each item goes to the validation split when
//! `u < ceil(val_fraction * 2^64)`, where `u` is the first 8 bytes, read big-endian, of blake3 of the item's
//! `object` string (the 64-char hex, as UTF-8); in Python: `int(blake3(obj.encode()).hexdigest()[:16], 16) / 2**64
//! < val_fraction` (see [`split_of`]). The split therefore depends only on image content: adding or removing other
//! images never moves an image between train and val. Within a split, samples are ordered by (object, key) and fill
//! shards of `pack.shard_samples` samples in that order; every size uses the same order, so index i of
//! `shards/64/train-00003.safetensors` and of `shards/128/train-00003.safetensors` is the same image.
//!
//! ## Pixels
//! Square: `crop` takes the centred square of side min(w, h) (offsets `(w - s) / 2`, `(h - s) / 2`, rounded
//! down, like `PIL.Image.crop` in bench/pipeline_reference.py); `pad` extends the shorter side to max(w, h) by
//! replicating edge pixels (the extra `(s - w) / 2`, rounded down, goes before). Then Lanczos3 convolution
//! (fast_image_resize, a port of Pillow's resampler with the kernel widened by the scale factor, so downscaling
//! is antialiased) to size x size, in sRGB values like Pillow's `Image.LANCZOS`. Lanczos3 rather than an
//! area/box filter because anime line art lives in thin dark strokes: box averaging smears them over neighbouring
//! pixels, Lanczos keeps them crisp at the cost of faint ringing; it is also what the usual Python preprocessing
//! does, so packs match a PIL-based reference closely. Upscaling (images smaller than the size) also uses
//! Lanczos3. An image already at the target size is copied unchanged. The two separable passes run vertical
//! first, each rounded and clamped to 8 bits (on the m x m square, PIL's
//! `.resize((m, size)).resize((size, size))` with LANCZOS is within 2 levels, mean difference < 0.05; see
//! tests/pack.rs). The arithmetic is integer fixed point, so the pixels are identical on every CPU whatever SIMD
//! extensions it has.
//!
//! ## Shards
//! `shards/<size>/<split>-<NNNNN>.safetensors` (NNNNN from 00000), one tensor `images`, dtype U8, shape
//! [N, size, size, 3] (NHWC, RGB), N = shard_samples except in a split's last shard. `__metadata__` (all values
//! strings, as safetensors requires): `format` = "anime-pipe-shard/1", `size`, `split`, `fit`, `count` (N),
//! `layout` = "NHWC RGB uint8", `keys` = JSON array of the N sample keys in index order. The header is written
//! with sorted metadata keys (the safetensors crate's own writer orders `__metadata__` by HashMap iteration, which
//! would break byte-identical output) and padded with spaces to a multiple of 8 bytes, as that crate does; every
//! shard is checked to parse with `safetensors::SafeTensors` in the tests and by `anime-pipe verify`.
//!
//! ## Manifest `pack.parquet`
//! One row per (accepted clean item, size), sorted by (size, split ["train" < "val"], object, key), so accepted
//! rows appear in (shard, index) order:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `key` | str | item key (from clean) |
//! | `object` | str | blake3 of the source image bytes in the cache (decides split and order) |
//! | `upscaled_object` | str | the cache object the pixels were taken from when upscaled; null when `object` was used |
//! | `size` | u32 | output side in pixels |
//! | `split` | str | "train" or "val" |
//! | `shard` | str | shard path relative to the workdir; null when rejected |
//! | `index` | u32 | row of the sample in the shard's `images` tensor; null when rejected |
//! | `shard_blake3` | str | blake3 of the whole shard file, checked by `verify`; null when rejected |
//! | `status` | str | "ok" or "rejected" |
//! | `reason` | str | "decode_failed" when the image could not be decoded; null when ok |
//! | `error` | str | the decoder's message for rejected rows |
//!
//! ## Reuse and partitions
//! Each image's resized pixels (every configured size, or its decode error) are kept in the memo
//! (`crate::memo`, `cache/memo/pack/<key>`), keyed by the pixels' cache object under the sizes, `fit` and decode
//! limits (not the split or shard size, which do not change pixels). A re-run after adding 1% new images decodes
//! and resizes 1% and rewrites the shards from the memo; the summary says `computed` and `reused`.
//! Partitioned (`--partition K/N`, a job array), each partition renders the images whose `object` it owns into the
//! memo and writes a part manifest (the same rows, without shard, index and checksum) and its completion marker;
//! it never touches `shards/` or `pack.parquet`. The merge (`anime-pipe merge pack`, or `run`) is an unpartitioned
//! pack that finds every image in the memo, so its shards and manifest are the very ones a single process writes.
//!
//! ## Crash safety (order of writes)
//! 1. Delete the old `pack.stamp.json`, then the old `pack.parquet`: no manifest ever describes shards that are
//!    being rewritten, and `run` sees pack as not done.
//! 2. Write each shard atomically (temp file, fsync, rename) under its final name.
//! 3. Publish `pack.parquet` (atomic), then its stamp.
//! 4. Only then delete shard files the new manifest does not list (extra shards of a previous run with more
//!    samples, sizes no longer packed) and temp files left by killed runs, so `shards/` mirrors the manifest.
//!
//! Killed in 1-2: there is no pack manifest (consumers and `run` redo pack). Killed in 3: the manifest is either
//! absent or complete. Killed in 4: the manifest and every shard it lists are complete and correct; leftover files
//! are unlisted, excluded from the dataset digest and removed by the next pack.
//!
//! Memory: one shard buffer per size (shard_samples x size^2 x 3 bytes), one batch of rendered samples, and one
//! decoded image per thread.
use crate::cache;
use crate::env::Env;
use crate::imageio::Limits;
use crate::manifest::columns::{col, frame};
use crate::manifest::{item_batches, Reason, Upstream};
use crate::manifest::{status_column, Status};
use crate::memo::{Memo, Record};
use crate::named::Named;
use crate::report::Summary;
use crate::shards::{SHARD_FORMAT, SPLITS};
use crate::stages::{parts, Plan, Stage};
use crate::workdir::{atomic_write_with, Workdir};
use anyhow::{Context, Result};
use fast_image_resize as fir;
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// How non-square images become square (`pack.fit`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Centre-crop the longer side to a square (default: keeps the face large).
    Crop,
    /// Pad the shorter side with edge-replicated pixels to a square (keeps the whole image).
    Pad,
}

impl crate::named::Named for Fit {
    const ALL: &'static [Self] = &[Fit::Crop, Fit::Pad];
    const WHAT: &'static str = "pack.fit";
    fn name(self) -> &'static str {
        match self {
            Fit::Crop => "crop",
            Fit::Pad => "pad",
        }
    }
    fn help(self) -> &'static str {
        match self {
            Fit::Crop => "Centre-crop the longer side to a square (keeps the face large)",
            Fit::Pad => "Pad the shorter side with edge pixels to a square (keeps the whole image)",
        }
    }
}
crate::impl_named_str!(Fit);

/// Resolved `pack:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackSettings {
    pub sizes: Vec<u32>,
    pub fit: Fit,
    pub shard_samples: usize,
    pub val_fraction: f64,
}

pub const STAGE: &str = "pack";
/// Items decoded in parallel before their results are appended, in order, to the shard buffers.
const BATCH: usize = 256;

/// One accepted clean item.
#[derive(Debug, Clone)]
struct Sample {
    key: String,
    object: String,
    upscaled_object: Option<String>,
    split: &'static str,
}

impl Sample {
    /// The cache object the pixels come from.
    fn pixels(&self) -> &str {
        self.upscaled_object.as_deref().unwrap_or(&self.object)
    }
}

/// One pack.parquet row before assembly.
#[derive(Debug, Clone)]
struct PackRow {
    key: String,
    object: String,
    upscaled_object: Option<String>,
    size: u32,
    split: &'static str,
    shard: Option<String>,
    index: Option<u32>,
    shard_blake3: Option<String>,
    error: Option<String>,
}

impl PackRow {
    /// The row of `sample` at `size`, not yet placed in a shard (`error` when it could not be decoded).
    fn unplaced(sample: &Sample, size: u32, error: Option<String>) -> Self {
        PackRow {
            key: sample.key.clone(),
            object: sample.object.clone(),
            upscaled_object: sample.upscaled_object.clone(),
            size,
            split: sample.split,
            shard: None,
            index: None,
            shard_blake3: None,
            error,
        }
    }
}

/// The samples of one (size, split) shard being filled.
struct ShardBuffer {
    size: u32,
    pixels: Vec<u8>,
    keys: Vec<String>,
    /// Positions in the row list of the samples in this buffer, in index order.
    rows: Vec<usize>,
}

/// Bumped when the pixels or the shard layout change, so stamps made by older code no longer match.
pub const ALGORITHM: &str = "pack/2";

/// Everything pack's output depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub upstream: Upstream,
    pub settings: PackSettings,
    /// Decode limits decide which images are `decode_failed`.
    pub limits: Limits,
}

impl Inputs {
    pub fn new(plan: &Plan, workdir: &Workdir) -> Result<Self> {
        Ok(Self::from_plan(plan, Stage::Pack.upstream_of(plan, workdir)?))
    }

    /// The inputs under `plan` reading `upstream`.
    pub fn from_plan(plan: &Plan, upstream: Upstream) -> Self {
        Self { upstream, settings: plan.pack.clone(), limits: plan.limits }
    }

    /// What one image's resized pixels depend on besides the image: the memo key.
    pub fn item_key(&self) -> String {
        #[derive(Serialize)]
        struct ItemKey<'a> {
            sizes: Vec<u32>,
            fit: Fit,
            limits: &'a Limits,
        }
        let key = ItemKey { sizes: sizes(&self.settings), fit: self.settings.fit, limits: &self.limits };
        crate::stages::fingerprint(Stage::Pack, ALGORITHM, &key)
    }
}

/// Renders samples through the memo: a sample whose pixels object has a result is read back, others are decoded,
/// resized and remembered.
struct Renderer<'a> {
    env: &'a Env,
    inputs: &'a Inputs,
    memo: Memo,
    sizes: Vec<u32>,
    computed: AtomicU64,
    reused: AtomicU64,
}

/// One sample at every configured size, or why it could not be decoded.
type Rendered = Result<Vec<Vec<u8>>, String>;

impl<'a> Renderer<'a> {
    fn open(env: &'a Env, inputs: &'a Inputs) -> Result<Self> {
        let memo = Memo::open(&env.workdir, STAGE, &inputs.item_key())?;
        let (computed, reused) = (AtomicU64::new(0), AtomicU64::new(0));
        Ok(Self { env, inputs, memo, sizes: sizes(&inputs.settings), computed, reused })
    }

    fn get(&self, sample: &Sample, resizer: &mut fir::Resizer) -> Result<Rendered> {
        if let Some(record) = self.memo.get(sample.pixels())? {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return decode_rendered(&record.payload, &self.sizes)
                .with_context(|| format!("pack memo entry for {} is unreadable (delete cache/memo/pack)", sample.key));
        }
        self.computed.fetch_add(1, Ordering::Relaxed);
        let rendered = render(self.env, self.inputs, sample, resizer)?;
        let payload = encode_rendered(&rendered);
        self.memo.put(Record { object: sample.pixels().to_string(), refs: Vec::new(), payload })?;
        Ok(rendered)
    }

    /// Renders a batch in parallel, in order.
    fn batch(&self, samples: &[&Sample], bar: &indicatif::ProgressBar) -> Result<Vec<Rendered>> {
        samples
            .par_iter()
            .map_init(fir::Resizer::new, |resizer, sample| {
                let result = self.get(sample, resizer);
                bar.inc(1);
                result
            })
            .collect()
    }

    /// Publishes the memo's last results; returns (computed, reused).
    fn finish(&self) -> Result<(u64, u64)> {
        self.memo.finish()?;
        Ok((self.computed.load(Ordering::Relaxed), self.reused.load(Ordering::Relaxed)))
    }
}

/// Memo payload: `0` then the pixels of every size in ascending order, or `1` then the decode error (UTF-8).
fn encode_rendered(rendered: &Rendered) -> Vec<u8> {
    match rendered {
        Ok(images) => std::iter::once(0u8).chain(images.iter().flatten().copied()).collect(),
        Err(error) => std::iter::once(1u8).chain(error.bytes()).collect(),
    }
}

fn decode_rendered(payload: &[u8], sizes: &[u32]) -> Result<Rendered> {
    match payload.split_first() {
        Some((0, mut pixels)) => {
            let mut images = Vec::with_capacity(sizes.len());
            for &size in sizes {
                let len = (size * size * 3) as usize;
                anyhow::ensure!(pixels.len() >= len, "payload too short for {size}x{size}");
                let (image, rest) = pixels.split_at(len);
                images.push(image.to_vec());
                pixels = rest;
            }
            anyhow::ensure!(pixels.is_empty(), "payload longer than its sizes");
            Ok(Ok(images))
        }
        Some((1, error)) => Ok(Err(String::from_utf8_lossy(error).into_owned())),
        _ => anyhow::bail!("unknown payload tag"),
    }
}

pub fn run(env: &Env, inputs: &Inputs, fingerprint: &str) -> Result<Summary> {
    let mut summary = Summary::start(STAGE);
    let all = accepted_samples(env, inputs)?;
    let renderer = Renderer::open(env, inputs)?;
    if let Some(p) = &env.partition {
        let mine: Vec<&Sample> = all.iter().filter(|s| p.owns(&s.object)).collect();
        return render_partition(env, &renderer, &mine, fingerprint, summary);
    }
    let samples: Vec<&Sample> = all.iter().collect();
    invalidate_previous(&env.workdir)?;

    let bar = env.reporter.bar(samples.len() as u64, STAGE);
    let mut rows = Vec::new();
    for split in SPLITS {
        let in_split: Vec<&Sample> = samples.iter().copied().filter(|s| s.split == split).collect();
        pack_split(env, inputs, &renderer, split, &in_split, &mut rows, &bar)?;
    }
    bar.finish_and_clear();
    let (computed, reused) = renderer.finish()?;
    rows.sort_by_key(|r| (r.size, SPLITS.iter().position(|s| *s == r.split)));

    let mut df = manifest(&rows)?;
    parts::publish(env, Stage::Pack, &mut df, fingerprint, computed, reused)?;
    let shards: BTreeSet<String> = rows.iter().filter_map(|r| r.shard.clone()).collect();
    let removed = remove_unlisted_shards(&env.workdir, &shards)?;

    let sizes = &sizes(&inputs.settings);
    let rejected = rows.iter().filter(|r| r.shard.is_none()).count() / sizes.len();
    summary
        .count("input items", samples.len() as u64)
        .count("packed", (samples.len() - rejected) as u64)
        .count("rejected", rejected as u64)
        .count("computed", computed)
        .count("reused", reused)
        .count("images decoded", computed);
    for _ in 0..rejected {
        summary.reject(Reason::DecodeFailed.name());
    }
    for split in SPLITS {
        let n = rows.iter().filter(|r| r.split == split && r.shard.is_some() && r.size == sizes[0]).count();
        summary.count(&format!("{split} samples"), n as u64);
    }
    summary.count("shards written", shards.len() as u64).count("stale files removed", removed as u64);
    let sizes_text: Vec<String> = sizes.iter().map(|s| format!("{s}x{s}")).collect();
    summary.fact("sizes", sizes_text.join(", ")).fact("manifest", env.workdir.manifest_path(STAGE).display());
    summary.fact("dataset digest", crate::digest::dataset_digest(&env.workdir)?);
    Ok(summary.finish())
}

/// A partition of pack: renders the images it owns into the memo and writes their rows as a part (no shards).
fn render_partition(
    env: &Env,
    renderer: &Renderer<'_>,
    samples: &[&Sample],
    fingerprint: &str,
    mut summary: Summary,
) -> Result<Summary> {
    let bar = env.reporter.bar(samples.len() as u64, STAGE);
    let mut rows = Vec::new();
    for batch in samples.chunks(BATCH) {
        for (sample, rendered) in batch.iter().zip(renderer.batch(batch, &bar)?) {
            let error = rendered.err();
            rows.extend(renderer.sizes.iter().map(|&size| PackRow::unplaced(sample, size, error.clone())));
        }
    }
    bar.finish_and_clear();
    let (computed, reused) = renderer.finish()?;
    rows.sort_by(|a, b| {
        let order = |r: &PackRow| (r.size, SPLITS.iter().position(|s| *s == r.split), r.object.clone(), r.key.clone());
        order(a).cmp(&order(b))
    });
    let mut df = manifest(&rows)?;
    let part = parts::publish(env, Stage::Pack, &mut df, fingerprint, computed, reused)?;
    let partition = env.partition.as_ref().expect("a partition run");
    summary
        .count("input items", samples.len() as u64)
        .count("computed", computed)
        .count("reused", reused)
        .count("images decoded", computed)
        .fact("partition", partition.describe())
        .fact("manifest", part.display());
    Ok(summary.finish())
}

/// The configured sizes, ascending, each once (`--size 64 --size 64` packs 64 once).
fn sizes(settings: &PackSettings) -> Vec<u32> {
    let unique: BTreeSet<u32> = settings.sizes.iter().copied().collect();
    unique.into_iter().collect()
}

/// Accepted clean rows with their split, in canonical order: (split, object, key).
fn accepted_samples(env: &Env, inputs: &Inputs) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    // A row group of items at a time: a sample keeps only the three names pack needs.
    for batch in item_batches(&env.workdir, &inputs.upstream)? {
        samples.extend(batch?.into_iter().map(|item| Sample {
            split: split_of(&item.object, inputs.settings.val_fraction),
            key: item.key,
            object: item.object,
            upscaled_object: item.upscaled_object,
        }));
    }
    samples.sort_by(|a, b| (a.split, &a.object, &a.key).cmp(&(b.split, &b.object, &b.key)));
    Ok(samples)
}

/// "val" when the first 8 bytes of blake3(object hex string), big-endian, are below `val_fraction * 2^64`.
/// Exact: `val_fraction * 2^64` is exact in f64 and its ceiling is an integer, so no rounding enters the test.
pub fn split_of(object: &str, val_fraction: f64) -> &'static str {
    let digest = blake3::hash(object.as_bytes());
    let u = u64::from_be_bytes(digest.as_bytes()[..8].try_into().expect("blake3 has 32 bytes"));
    let threshold = (val_fraction * 2f64.powi(64)).ceil() as u128;
    if u128::from(u) < threshold {
        "val"
    } else {
        "train"
    }
}

/// Crash-safety step 1: no old manifest may describe shards that are about to be overwritten.
fn invalidate_previous(workdir: &Workdir) -> Result<()> {
    for path in [workdir.stamp_path(STAGE), workdir.manifest_path(STAGE)] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Decodes and resizes one split's samples in parallel batches and appends them, in canonical order, to shards.
fn pack_split(
    env: &Env,
    inputs: &Inputs,
    renderer: &Renderer<'_>,
    split: &'static str,
    samples: &[&Sample],
    rows: &mut Vec<PackRow>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let settings = &inputs.settings;
    let sizes = sizes(settings);
    let mut buffers: Vec<ShardBuffer> = sizes
        .iter()
        .map(|&size| ShardBuffer { size, pixels: Vec::new(), keys: Vec::new(), rows: Vec::new() })
        .collect();
    let mut shard_number = 0;
    for batch in samples.chunks(BATCH) {
        for (sample, result) in batch.iter().zip(renderer.batch(batch, bar)?) {
            let row = |size, error| PackRow::unplaced(sample, size, error);
            match result {
                Ok(images) => {
                    for (buffer, pixels) in buffers.iter_mut().zip(images) {
                        buffer.pixels.extend_from_slice(&pixels);
                        buffer.keys.push(sample.key.clone());
                        buffer.rows.push(rows.len());
                        rows.push(row(buffer.size, None));
                    }
                    if buffers[0].keys.len() == settings.shard_samples {
                        flush(env, inputs, split, shard_number, &mut buffers, rows)?;
                        shard_number += 1;
                    }
                }
                Err(error) => rows.extend(sizes.iter().map(|&size| row(size, Some(error.clone())))),
            }
        }
    }
    if !buffers[0].keys.is_empty() {
        flush(env, inputs, split, shard_number, &mut buffers, rows)?;
    }
    Ok(())
}

/// The per-item function of this stage: the sample at every configured size, or the decode error. A missing
/// cache object is a hard error.
fn render(
    env: &Env,
    inputs: &Inputs,
    sample: &Sample,
    resizer: &mut fir::Resizer,
) -> Result<Result<Vec<Vec<u8>>, String>> {
    let image = match cache::load_rgb8(&env.workdir, sample.pixels(), &inputs.limits)
        .with_context(|| format!("pack: cannot read the image of {}", sample.key))?
    {
        Ok(image) => image,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let fit = inputs.settings.fit;
    Ok(Ok(sizes(&inputs.settings).into_iter().map(|size| square_resize(&image, size, fit, resizer)).collect()))
}

/// Makes `image` square per `fit` and resizes it to size x size; returns packed RGB bytes (row-major).
pub fn square_resize(image: &RgbImage, size: u32, fit: Fit, resizer: &mut fir::Resizer) -> Vec<u8> {
    // Crop by copying rather than with fast_image_resize's crop box: the box lets the kernel read pixels beyond
    // the square's edges, and the documented (and PIL-reference) semantics are "crop, then resize".
    let square = match fit {
        Fit::Crop => center_crop(image),
        Fit::Pad => pad_to_square(image),
    };
    let src = fir::images::ImageRef::new(square.width(), square.height(), square.as_raw(), fir::PixelType::U8x3)
        .expect("RgbImage buffer matches its dimensions");
    let mut dst = fir::images::Image::new(size, size, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    resizer.resize(&src, &mut dst, &options).expect("same pixel type, non-empty sizes");
    dst.into_vec()
}

/// The centred square of side min(w, h); offsets rounded down.
pub fn center_crop(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let side = w.min(h);
    image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side).to_image()
}

/// Extends the shorter side to the longer by replicating edge pixels; the odd extra pixel goes after.
pub fn pad_to_square(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let side = w.max(h);
    let (left, top) = ((side - w) / 2, (side - h) / 2);
    RgbImage::from_fn(side, side, |x, y| {
        let sx = x.saturating_sub(left).min(w - 1);
        let sy = y.saturating_sub(top).min(h - 1);
        *image.get_pixel(sx, sy)
    })
}

/// Writes the current buffers as shard `shard_number` of `split` (one file per size) and records shard, index and
/// checksum in their rows.
fn flush(
    env: &Env,
    inputs: &Inputs,
    split: &'static str,
    shard_number: usize,
    buffers: &mut [ShardBuffer],
    rows: &mut [PackRow],
) -> Result<()> {
    for buffer in buffers.iter_mut() {
        let relative = format!("shards/{}/{split}-{shard_number:05}.safetensors", buffer.size);
        let header = shard_header(buffer.size, split, inputs.settings.fit, &buffer.keys)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header).update(&buffer.pixels);
        let checksum = hasher.finalize().to_hex().to_string();
        atomic_write_with(&env.workdir.root().join(&relative), |file| {
            file.write_all(&header)?;
            file.write_all(&buffer.pixels)?;
            Ok(())
        })?;
        for (index, &row) in buffer.rows.iter().enumerate() {
            rows[row].shard = Some(relative.clone());
            rows[row].index = Some(index as u32);
            rows[row].shard_blake3 = Some(checksum.clone());
        }
        buffer.pixels.clear();
        buffer.keys.clear();
        buffer.rows.clear();
    }
    Ok(())
}

#[derive(Serialize)]
struct Header<'a> {
    #[serde(rename = "__metadata__")]
    metadata: BTreeMap<&'static str, String>,
    #[serde(rename = "images")]
    images: TensorInfo<'a>,
}

#[derive(Serialize)]
struct TensorInfo<'a> {
    dtype: &'a str,
    shape: [usize; 4],
    data_offsets: [usize; 2],
}

/// The safetensors prefix of a shard of `keys.len()` samples: 8-byte little-endian header length, then the JSON
/// header padded with spaces to a multiple of 8. The pixel bytes follow it directly.
pub fn shard_header(size: u32, split: &str, fit: Fit, keys: &[String]) -> Result<Vec<u8>> {
    let n = keys.len();
    let side = size as usize;
    let metadata = BTreeMap::from([
        ("format", SHARD_FORMAT.to_string()),
        ("size", size.to_string()),
        ("split", split.to_string()),
        ("fit", fit_name(fit).to_string()),
        ("count", n.to_string()),
        ("layout", "NHWC RGB uint8".to_string()),
        ("keys", serde_json::to_string(keys)?),
    ]);
    let images = TensorInfo { dtype: "U8", shape: [n, side, side, 3], data_offsets: [0, n * side * side * 3] };
    let mut json = serde_json::to_vec(&Header { metadata, images })?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut header = (json.len() as u64).to_le_bytes().to_vec();
    header.extend_from_slice(&json);
    Ok(header)
}

pub fn fit_name(fit: Fit) -> &'static str {
    match fit {
        Fit::Crop => "crop",
        Fit::Pad => "pad",
    }
}

fn manifest(rows: &[PackRow]) -> Result<polars::prelude::DataFrame> {
    frame(
        rows.len(),
        vec![
            col("key", rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>()),
            col("object", rows.iter().map(|r| r.object.as_str()).collect::<Vec<_>>()),
            col("upscaled_object", rows.iter().map(|r| r.upscaled_object.as_deref()).collect::<Vec<_>>()),
            col("size", rows.iter().map(|r| r.size).collect::<Vec<_>>()),
            col("split", rows.iter().map(|r| r.split).collect::<Vec<_>>()),
            col("shard", rows.iter().map(|r| r.shard.as_deref()).collect::<Vec<_>>()),
            col("index", rows.iter().map(|r| r.index).collect::<Vec<_>>()),
            col("shard_blake3", rows.iter().map(|r| r.shard_blake3.as_deref()).collect::<Vec<_>>()),
            status_column(rows.iter().map(|r| Status::ok_if(r.error.is_none()))),
            col("reason", rows.iter().map(|r| r.error.is_some().then_some("decode_failed")).collect::<Vec<_>>()),
            col("error", rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>()),
        ],
    )
}

/// Is `name` a shard file name pack writes (`train-00000.safetensors`) or a temp file of an interrupted write?
fn is_pack_file(name: &str) -> bool {
    let shard = SPLITS.iter().any(|split| {
        name.strip_prefix(split)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(".safetensors"))
            .is_some_and(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()))
    });
    let temp = name.starts_with('.') && name.ends_with(".tmp") && name.contains(".safetensors.");
    shard || temp
}

/// Crash-safety step 4: deletes pack's files under `shards/<size>/` that `listed` does not contain, and size
/// directories left empty. Other files are left alone. Returns how many files were removed.
fn remove_unlisted_shards(workdir: &Workdir, listed: &BTreeSet<String>) -> Result<usize> {
    let root = workdir.root().join("shards");
    let mut removed = 0;
    for dir in std::fs::read_dir(&root).with_context(|| format!("cannot list {}", root.display()))? {
        let dir = dir?;
        let size = dir.file_name().to_string_lossy().to_string();
        if !dir.file_type()?.is_dir() || !size.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let name = file?.file_name().to_string_lossy().to_string();
            if is_pack_file(&name) && !listed.contains(&format!("shards/{size}/{name}")) {
                let path = dir.path().join(&name);
                std::fs::remove_file(&path).with_context(|| format!("cannot remove stale {}", path.display()))?;
                removed += 1;
            }
        }
        // Only succeeds when empty, which is the point.
        let _ = std::fs::remove_dir(dir.path());
    }
    Ok(removed)
}
