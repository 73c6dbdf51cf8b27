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
use crate::manifest::columns::{col, frame};
use crate::manifest::{file_blake3, publish_stage};
use crate::quality::{score_image, Scores};
use crate::report::Summary;
use crate::stages::Ctx;
use crate::stages::{clean_input, clean_input_stage, CleanItem};
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Resolved `clean:`: the thresholds (0 turns a score filter off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CleanSettings {
    pub min_size: u32,
    pub max_aspect: f64,
    pub min_sharpness: f64,
    pub min_colorfulness: f64,
    pub min_entropy: f64,
}

pub const STAGE: &str = "clean";
/// Bumped when a score's definition changes, so stamps made by older code no longer match.
const ALGORITHM: &str = "clean/1";
/// Reject reasons, in the order `reason` picks the first of: unreadable first (nothing else is measurable), then
/// geometry (cheap, from the manifest), then the image scores from most to least severe.
pub const REASON_ORDER: [&str; 6] = ["decode_failed", "too_small", "bad_aspect", "blurry", "monochrome", "low_entropy"];

/// Everything measured for one item.
#[derive(Debug, Clone)]
struct Assessment {
    scores: Option<Scores>,
    error: Option<String>,
    reasons: Vec<&'static str>,
}

pub fn fingerprint(ctx: &Ctx) -> Result<String> {
    let upstream = clean_input_stage(ctx);
    let upstream_hash = file_blake3(&ctx.env.workdir.manifest_path(upstream))
        .with_context(|| format!("clean needs manifests/{upstream}.parquet: run `anime-pipe {upstream}` first"))?;
    let mut hasher = blake3::Hasher::new();
    for part in [
        ALGORITHM.to_string(),
        upstream.to_string(),
        upstream_hash,
        serde_json::to_string(&ctx.plan.clean)?,
        // Decode limits decide which images are `decode_failed`.
        serde_json::to_string(&ctx.plan.limits)?,
    ] {
        hasher.update(part.as_bytes()).update(b"\0");
    }
    Ok(hasher.finalize().to_hex().to_string())
}

pub fn run(ctx: &Ctx) -> Result<Summary> {
    let mut summary = Summary::start(STAGE);
    let fingerprint = fingerprint(ctx)?;
    let input = clean_input(ctx)?;
    let bar = ctx.env.reporter.bar(input.items.len() as u64, STAGE);
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
    publish_stage(&ctx.env.workdir, STAGE, &mut df, &fingerprint)?;

    let accepted = assessments.iter().filter(|a| a.reasons.is_empty()).count();
    summary
        .count("input", input.items.len() as u64)
        .count("accepted", accepted as u64)
        .count("rejected", (input.items.len() - accepted) as u64);
    for reason in assessments.iter().filter_map(|a| a.reasons.first()) {
        summary.reject(reason);
    }
    let c = &ctx.plan.clean;
    summary.fact("input manifest", format!("{}.parquet", input.stage)).fact(
        "thresholds",
        format!(
            "min_size {} max_aspect {} min_sharpness {} min_colorfulness {} min_entropy {}",
            c.min_size, c.max_aspect, c.min_sharpness, c.min_colorfulness, c.min_entropy
        ),
    );
    summary.fact("manifest", ctx.env.workdir.manifest_path(STAGE).display());
    Ok(summary.finish())
}

fn assess(ctx: &Ctx, item: &CleanItem) -> Result<Assessment> {
    let bytes = crate::cache::read_object(&ctx.env.workdir, &item.object)
        .with_context(|| format!("clean: cannot read the image of {}", item.key))?;
    let (scores, error) = match crate::imageio::decode_rgb8(&bytes, &ctx.plan.limits) {
        Ok(decoded) => (Some(score_image(&decoded.image)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let reasons = rejection_reasons(item.width, item.height, scores.as_ref(), &ctx.plan.clean);
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
