//! `anime-pipe clean`: score every input image and reject, with reasons, those that would make bad training data.
//!
//! Input: [`crate::stages::clean_input`] (today the dedup rows with status "ok"). Output `manifests/clean.parquet`,
//! one row per input item, sorted by (source_index, path):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `key`, `source`, `path`, `object` | str | passed through from the input manifest |
//! | `source_index`, `width`, `height` | u32 | passed through from the input manifest |
//! | `already_cropped` | bool | passed through (null when the input manifest lacks the column) |
//! | `upscaled_object` | str | passed through from upscale.parquet: the upscaled image `pack` uses; null otherwise |
//! | `short_side` | u32 | min(width, height) in pixels |
//! | `aspect` | f64 | max(width, height) / min(width, height) (>= 1) |
//! | `sharpness` | f64 | variance of the Laplacian of the luma, at <= 256 px shorter side (see [`sharpness`]) |
//! | `colorfulness` | f64 | Hasler–Süsstrunk colourfulness of the full image (0 for grayscale) |
//! | `grayscale` | bool | every pixel has max(R,G,B) - min(R,G,B) <= [`GRAYSCALE_TOLERANCE`] |
//! | `entropy` | f64 | Shannon entropy, in bits (0..=8), of the 256-bin luma histogram of the full image |
//! | `status` | str | "ok" or "rejected" |
//! | `reason` | str | the first reason in [`REASON_ORDER`] that applies; null when accepted |
//! | `reasons` | str | every reason that applies, comma-separated, in [`REASON_ORDER`]; null when accepted |
//! | `error` | str | the decoder's message for `decode_failed`, else null |
//!
//! The four image scores are null only for `decode_failed` rows (nothing to measure); every other row has all of
//! them, whether accepted or not, so thresholds can be tuned from the manifest without re-running. Scores are
//! measured on `object` (the original image or face crop), never on `upscaled_object`: upscaling invents detail, so
//! it must not rescue a blurry or tiny original; size filters likewise judge the original `width`/`height`.
//!
//! Luma is BT.601 in integers, `(77 R + 150 G + 29 B + 128) >> 8`, which maps gray pixels (R = G = B = v) to v.
//! A cache object that cannot be read (missing file) is an error of the workdir, not of the image: the stage fails
//! and says so (re-run ingest) instead of rejecting the item.
use crate::app::Ctx;
use crate::config::CleanSettings;
use crate::manifest::{file_blake3, publish_stage};
use crate::report::Summary;
use crate::stages::columns::{col, frame};
use crate::stages::{clean_input, clean_input_stage, CleanItem};
use anyhow::{Context, Result};
use fast_image_resize as fir;
use image::RgbImage;
use rayon::prelude::*;

pub const STAGE: &str = "clean";
/// Bumped when a score's definition changes, so stamps made by older code no longer match.
const ALGORITHM: &str = "clean/1";
/// Sharpness is measured with the shorter side reduced to at most this many pixels (see [`sharpness`]).
pub const SHARPNESS_SIDE: u32 = 256;
/// Per-pixel channel spread (max - min) still counted as gray: JPEG chroma rounding moves gray pixels by a few
/// levels.
pub const GRAYSCALE_TOLERANCE: u8 = 8;

/// Reject reasons, in the order `reason` picks the first of: unreadable first (nothing else is measurable), then
/// geometry (cheap, from the manifest), then the image scores from most to least severe.
pub const REASON_ORDER: [&str; 6] = ["decode_failed", "too_small", "bad_aspect", "blurry", "monochrome", "low_entropy"];

/// The image-quality scores of one decoded image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub sharpness: f64,
    pub colorfulness: f64,
    pub grayscale: bool,
    pub entropy: f64,
}

/// Everything measured for one item.
#[derive(Debug, Clone)]
struct Assessment {
    scores: Option<Scores>,
    error: Option<String>,
    reasons: Vec<&'static str>,
}

pub fn fingerprint(ctx: &Ctx) -> Result<String> {
    let upstream = clean_input_stage(ctx);
    let upstream_hash = file_blake3(&ctx.workdir.manifest_path(upstream))
        .with_context(|| format!("clean needs manifests/{upstream}.parquet: run `anime-pipe {upstream}` first"))?;
    let mut hasher = blake3::Hasher::new();
    for part in [
        ALGORITHM.to_string(),
        upstream.to_string(),
        upstream_hash,
        serde_json::to_string(&ctx.settings.clean)?,
        // Decode limits decide which images are `decode_failed`.
        serde_json::to_string(&ctx.settings.limits)?,
    ] {
        hasher.update(part.as_bytes()).update(b"\0");
    }
    Ok(hasher.finalize().to_hex().to_string())
}

pub fn run(ctx: &Ctx) -> Result<Summary> {
    let mut summary = Summary::start(STAGE);
    let fingerprint = fingerprint(ctx)?;
    let input = clean_input(ctx)?;
    let bar = ctx.reporter.bar(input.items.len() as u64, STAGE);
    let assessments: Vec<Assessment> = input
        .items
        .par_iter()
        .map(|item| {
            let assessment = assess(ctx, item);
            bar.inc(1);
            assessment
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();

    let mut df = manifest(&input.items, &assessments)?;
    publish_stage(&ctx.workdir, STAGE, &mut df, &fingerprint)?;

    let accepted = assessments.iter().filter(|a| a.reasons.is_empty()).count();
    summary
        .count("input", input.items.len() as u64)
        .count("accepted", accepted as u64)
        .count("rejected", (input.items.len() - accepted) as u64);
    for reason in assessments.iter().filter_map(|a| a.reasons.first()) {
        summary.reject(reason);
    }
    let c = &ctx.settings.clean;
    summary.fact("input manifest", format!("{}.parquet", input.stage)).fact(
        "thresholds",
        format!(
            "min_size {} max_aspect {} min_sharpness {} min_colorfulness {} min_entropy {}",
            c.min_size, c.max_aspect, c.min_sharpness, c.min_colorfulness, c.min_entropy
        ),
    );
    summary.fact("manifest", ctx.workdir.manifest_path(STAGE).display());
    Ok(summary.finish())
}

fn assess(ctx: &Ctx, item: &CleanItem) -> Result<Assessment> {
    let bytes = crate::cache::read_object(&ctx.workdir, &item.object)
        .with_context(|| format!("clean: cannot read the image of {}", item.key))?;
    let (scores, error) = match crate::imageio::decode_rgb8(&bytes, &ctx.settings.limits) {
        Ok(decoded) => (Some(score_image(&decoded.image)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let reasons = rejection_reasons(item.width, item.height, scores.as_ref(), &ctx.settings.clean);
    Ok(Assessment { scores, error, reasons })
}

/// Every reason that applies, in [`REASON_ORDER`]. `scores` is None when the image could not be decoded.
/// Score thresholds of 0 are off. `monochrome` applies to images under `min_colorfulness` and, whenever that
/// filter is on, to every `grayscale` image (whose colourfulness may sit just above a small threshold because of
/// JPEG chroma noise).
pub fn rejection_reasons(width: u32, height: u32, scores: Option<&Scores>, t: &CleanSettings) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if scores.is_none() {
        reasons.push("decode_failed");
    }
    if width.min(height) < t.min_size {
        reasons.push("too_small");
    }
    if aspect(width, height) > t.max_aspect {
        reasons.push("bad_aspect");
    }
    if let Some(s) = scores {
        if t.min_sharpness > 0.0 && s.sharpness < t.min_sharpness {
            reasons.push("blurry");
        }
        if t.min_colorfulness > 0.0 && (s.grayscale || s.colorfulness < t.min_colorfulness) {
            reasons.push("monochrome");
        }
        if t.min_entropy > 0.0 && s.entropy < t.min_entropy {
            reasons.push("low_entropy");
        }
    }
    reasons
}

/// Longer side / shorter side; a degenerate 0-pixel side counts as infinitely elongated.
pub fn aspect(width: u32, height: u32) -> f64 {
    let (short, long) = (width.min(height), width.max(height));
    if short == 0 {
        f64::INFINITY
    } else {
        f64::from(long) / f64::from(short)
    }
}

fn manifest(items: &[CleanItem], assessments: &[Assessment]) -> Result<polars::prelude::DataFrame> {
    let pick = |f: &dyn Fn(&Scores) -> f64| -> Vec<Option<f64>> {
        assessments.iter().map(|a| a.scores.as_ref().map(f)).collect()
    };
    let mut columns = vec![
        col("key", items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>()),
        col("source", items.iter().map(|i| i.source.as_str()).collect::<Vec<_>>()),
        col("source_index", items.iter().map(|i| i.source_index).collect::<Vec<_>>()),
        col("path", items.iter().map(|i| i.path.as_str()).collect::<Vec<_>>()),
        col("object", items.iter().map(|i| i.object.as_str()).collect::<Vec<_>>()),
        col("width", items.iter().map(|i| i.width).collect::<Vec<_>>()),
        col("height", items.iter().map(|i| i.height).collect::<Vec<_>>()),
    ];
    columns.push(col("already_cropped", items.iter().map(|i| i.already_cropped).collect::<Vec<_>>()));
    columns.push(col("upscaled_object", items.iter().map(|i| i.upscaled_object.as_deref()).collect::<Vec<_>>()));
    let reasons_text: Vec<Option<String>> =
        assessments.iter().map(|a| (!a.reasons.is_empty()).then(|| a.reasons.join(","))).collect();
    columns.extend([
        col("short_side", items.iter().map(|i| i.width.min(i.height)).collect::<Vec<_>>()),
        col("aspect", items.iter().map(|i| aspect(i.width, i.height)).collect::<Vec<_>>()),
        col("sharpness", pick(&|s| s.sharpness)),
        col("colorfulness", pick(&|s| s.colorfulness)),
        col("grayscale", assessments.iter().map(|a| a.scores.map(|s| s.grayscale)).collect::<Vec<_>>()),
        col("entropy", pick(&|s| s.entropy)),
        col(
            "status",
            assessments.iter().map(|a| if a.reasons.is_empty() { "ok" } else { "rejected" }).collect::<Vec<_>>(),
        ),
        col("reason", assessments.iter().map(|a| a.reasons.first().copied()).collect::<Vec<_>>()),
        col("reasons", reasons_text),
        col("error", assessments.iter().map(|a| a.error.clone()).collect::<Vec<_>>()),
    ]);
    frame(items.len(), columns)
}

/// All scores of one image: one pass over the full-resolution pixels, then sharpness on the (reduced) luma.
pub fn score_image(image: &RgbImage) -> Scores {
    let (w, h) = image.dimensions();
    let stats = pixel_stats(image);
    Scores {
        sharpness: sharpness(&stats.luma, w, h),
        colorfulness: stats.colorfulness(),
        grayscale: stats.max_spread <= GRAYSCALE_TOLERANCE,
        entropy: entropy_of(&stats.histogram),
    }
}

/// What the full-resolution scores need, gathered in a single pass over the pixels (decoding dominates the
/// stage; this keeps scoring to one read of the image).
pub struct PixelStats {
    /// BT.601 luma in integer arithmetic, `(77 R + 150 G + 29 B + 128) >> 8`; exact for gray pixels.
    pub luma: Vec<u8>,
    pub histogram: [u64; 256],
    /// Largest max(R,G,B) - min(R,G,B) over all pixels.
    pub max_spread: u8,
    /// Sums of rg = R - G and of yb2 = R + G - 2B (yb doubled, to stay in integers) and of their squares.
    sums: [i64; 4],
}

pub fn pixel_stats(image: &RgbImage) -> PixelStats {
    let raw = image.as_raw();
    let n = raw.len() / 3;
    let mut luma = Vec::with_capacity(n);
    let mut histogram = [0u64; 256];
    let (mut max_spread, mut sums) = (0u8, [0i64; 4]);
    // Index loop rather than iterator adapters: this runs on every pixel, also in unoptimised (debug) builds.
    for i in 0..n {
        let (r, g, b) = (raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]);
        let y = ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8;
        luma.push(y);
        histogram[usize::from(y)] += 1;
        max_spread = max_spread.max(r.max(g).max(b) - r.min(g).min(b));
        let rg = i64::from(r) - i64::from(g);
        let yb2 = i64::from(r) + i64::from(g) - 2 * i64::from(b);
        sums[0] += rg;
        sums[1] += rg * rg;
        sums[2] += yb2;
        sums[3] += yb2 * yb2;
    }
    PixelStats { luma, histogram, max_spread, sums }
}

impl PixelStats {
    /// Hasler & Süsstrunk (2003) colourfulness: with rg = R - G and yb = (R + G)/2 - B over all pixels,
    /// `sqrt(var(rg) + var(yb)) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`. 0 for gray images; about 15 is "slightly
    /// colourful", 33 "moderately", 59 "quite", 82+ "highly" in the paper's scale. Computed on the full image.
    pub fn colorfulness(&self) -> f64 {
        let n = self.luma.len() as i64;
        if n == 0 {
            return 0.0;
        }
        let [rg, rg_sq, yb2, yb2_sq] = self.sums;
        let var_rg = exact_variance(rg, rg_sq, n);
        let var_yb = exact_variance(yb2, yb2_sq, n) / 4.0;
        let (mean_rg, mean_yb) = (rg as f64 / n as f64, yb2 as f64 / (2 * n) as f64);
        (var_rg + var_yb).sqrt() + 0.3 * (mean_rg * mean_rg + mean_yb * mean_yb).sqrt()
    }
}

/// BT.601 luma of every pixel (see [`PixelStats::luma`]).
pub fn luma(image: &RgbImage) -> Vec<u8> {
    pixel_stats(image).luma
}

/// See [`PixelStats::colorfulness`].
pub fn colorfulness(image: &RgbImage) -> f64 {
    pixel_stats(image).colorfulness()
}

/// True when every pixel's channels differ by at most `tolerance` levels.
pub fn is_grayscale(image: &RgbImage, tolerance: u8) -> bool {
    pixel_stats(image).max_spread <= tolerance
}

/// Sharpness: variance of the Laplacian of the luma, made comparable across resolutions by first reducing images
/// whose shorter side exceeds [`SHARPNESS_SIDE`] to exactly that shorter side (area/box filter: it averages, adding
/// no ringing that would fake detail). The same picture at 256 px and at 1024 px therefore scores the same, and the
/// score describes detail at a scale close to the training sizes. Smaller images are measured as they are
/// (upsampling them would itself blur). Luma is 0..=255, so a 1-pixel 0/255 checkerboard scores 1020^2.
pub fn sharpness(luma: &[u8], width: u32, height: u32) -> f64 {
    let short = width.min(height);
    if short <= SHARPNESS_SIDE {
        return laplacian_variance(luma, width, height);
    }
    let scale = f64::from(SHARPNESS_SIDE) / f64::from(short);
    let (w, h) = if width <= height {
        (SHARPNESS_SIDE, ((f64::from(height) * scale).round() as u32).max(1))
    } else {
        (((f64::from(width) * scale).round() as u32).max(1), SHARPNESS_SIDE)
    };
    let small = downscale_area(luma, width, height, w, h);
    laplacian_variance(&small, w, h)
}

fn downscale_area(luma: &[u8], width: u32, height: u32, w: u32, h: u32) -> Vec<u8> {
    let src = fir::images::ImageRef::new(width, height, luma, fir::PixelType::U8).expect("buffer matches dimensions");
    let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8);
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box));
    fir::Resizer::new().resize(&src, &mut dst, &options).expect("same pixel type, non-empty sizes");
    dst.into_vec()
}

/// Population variance of the 4-neighbour Laplacian `N + S + E + W - 4 C` over the interior pixels (no border
/// padding, so borders cannot invent edges). 0 for images without an interior (a side under 3 px).
pub fn laplacian_variance(luma: &[u8], width: u32, height: u32) -> f64 {
    let (w, h) = (width as usize, height as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq) = (0i64, 0i64);
    for y in 1..h - 1 {
        let (up, row, down) = (&luma[(y - 1) * w..y * w], &luma[y * w..(y + 1) * w], &luma[(y + 1) * w..(y + 2) * w]);
        for x in 1..w - 1 {
            let l = i64::from(up[x]) + i64::from(down[x]) + i64::from(row[x - 1]) + i64::from(row[x + 1])
                - 4 * i64::from(row[x]);
            sum += l;
            sum_sq += l * l;
        }
    }
    exact_variance(sum, sum_sq, ((w - 2) * (h - 2)) as i64)
}

/// Population variance from integer sums, exact until the final division (and so order-independent).
fn exact_variance(sum: i64, sum_sq: i64, n: i64) -> f64 {
    let (sum, sum_sq, n) = (i128::from(sum), i128::from(sum_sq), i128::from(n));
    ((n * sum_sq - sum * sum) as f64) / ((n * n) as f64)
}

/// Shannon entropy (bits) of the 256-bin histogram of `luma`: 0 for a flat image, 1 for two equally common
/// levels, 8 at most.
pub fn luma_entropy(luma: &[u8]) -> f64 {
    let mut histogram = [0u64; 256];
    for &v in luma {
        histogram[usize::from(v)] += 1;
    }
    entropy_of(&histogram)
}

fn entropy_of(histogram: &[u64; 256]) -> f64 {
    let n: u64 = histogram.iter().sum();
    // p log2(1/p) rather than -p log2(p): a single level then sums to +0.0, not -0.0.
    histogram.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n as f64).map(|p| p * (1.0 / p).log2()).sum()
}
