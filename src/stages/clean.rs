//! `anime-pipe clean`: judge every input item's measures against the thresholds and reject, with reasons, those
//! that would make bad training data. Decodes nothing: the scores were measured from the one decode of each image
//! (`ingest` for source images, `crop` for face crops; see `crate::quality`) and arrive in the input manifest.
//!
//! Input: the accepted rows of the last of upscale, crop and dedup that the plan enables. Output
//! `manifests/clean.parquet`, one row per input item, sorted by (source_index, path):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `key`, `source`, `path`, `object` | str | passed through from the input manifest |
//! | `source_index`, `width`, `height` | u32 | passed through from the input manifest |
//! | `already_cropped` | bool | passed through (null when the input manifest lacks the column) |
//! | `upscaled_object` | str | passed through from upscale.parquet: the upscaled image `pack` uses; null otherwise |
//! | `short_side` | u32 | min(width, height) in pixels |
//! | `aspect` | f64 | max(width, height) / min(width, height) (>= 1) |
//! | `sharpness` | f64 | variance of the Laplacian of the luma, at <= 256 px shorter side |
//! | `colorfulness` | f64 | Hasler–Süsstrunk colourfulness of the full image (0 for grayscale) |
//! | `grayscale` | bool | every pixel has max(R,G,B) - min(R,G,B) <= `quality::GRAYSCALE_TOLERANCE` |
//! | `entropy` | f64 | Shannon entropy, in bits (0..=8), of the 256-bin luma histogram of the full image |
//! | `status` | str | "ok" or "rejected" |
//! | `reason` | str | the first reason in [`REASON_ORDER`] that applies; null when accepted |
//! | `reasons` | str | every reason that applies, comma-separated, in [`REASON_ORDER`]; null when accepted |
//! | `error` | str | always null (kept for manifests' common shape; nothing is decoded here) |
//!
//! Partitioned (`--partition K/N`, a job array): each partition judges the items whose `object` it owns and
//! writes a part manifest (see `crate::stages::parts`); the merge judges all of them at once, which costs nothing
//! (no pixels are read), so the merged manifest is exactly an unpartitioned run's.
//!
//! Every row has all four scores, accepted or not, so thresholds can be tuned from the manifest without
//! re-running. Scores describe `object` (the original image or face crop), never `upscaled_object`: upscaling
//! invents detail, so it must not rescue a blurry or tiny original; size filters likewise judge the original
//! `width`/`height`.
use crate::env::Env;
use crate::manifest::columns::{col, frame};
use crate::manifest::{item_batches, Item, Reason, Upstream};
use crate::manifest::{status_column, Status};
use crate::named::Named;
use crate::quality::Scores;
use crate::report::Summary;
use crate::stages::{parts, Plan, Stage};
use crate::workdir::Workdir;
use anyhow::{Context, Result};
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

/// Bumped when a verdict's definition changes, so stamps made by older code no longer match.
pub const ALGORITHM: &str = "clean/2";

/// Reject reasons, in the order `reason` picks the first of: geometry (from the manifest), then the image scores
/// from most to least severe.
pub const REASON_ORDER: [Reason; 5] =
    [Reason::TooSmall, Reason::BadAspect, Reason::Blurry, Reason::Monochrome, Reason::LowEntropy];

/// Everything clean's output depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub upstream: Upstream,
    pub settings: CleanSettings,
}

impl Inputs {
    pub fn new(plan: &Plan, workdir: &Workdir) -> Result<Self> {
        Ok(Self::from_plan(plan, Stage::Clean.upstream_of(plan, workdir)?))
    }

    /// The inputs under `plan` reading `upstream`.
    pub fn from_plan(plan: &Plan, upstream: Upstream) -> Self {
        Self { upstream, settings: plan.clean }
    }
}

pub fn run(env: &Env, inputs: &Inputs, fingerprint: &str) -> Result<Summary> {
    let mut summary = Summary::start(Stage::Clean.name());
    let mut publisher = parts::Publisher::start(env, Stage::Clean, fingerprint)?;
    let (mut judged, mut accepted) = (0, 0);
    // One row group at a time: each verdict needs its own item only, so memory does not grow with the input.
    for batch in item_batches(&env.workdir, &inputs.upstream)? {
        let all = batch?;
        let items = parts::select(env, &all);
        let scores = items.iter().map(|it| scores_of(it)).collect::<Result<Vec<_>>>()?;
        let verdicts: Vec<Vec<Reason>> = items
            .iter()
            .zip(&scores)
            .map(|(it, s)| rejection_reasons(it.width, it.height, s, &inputs.settings))
            .collect();
        publisher.push(manifest(&items, &scores, &verdicts)?)?;
        judged += items.len() as u64;
        accepted += verdicts.iter().filter(|r| r.is_empty()).count() as u64;
        for reason in verdicts.iter().filter_map(|r| r.first()) {
            summary.reject(reason.name());
        }
    }
    let published = publisher.finish(judged, 0)?;
    summary
        .count("input", judged)
        .count("accepted", accepted)
        .count("rejected", judged - accepted)
        .count("images decoded", 0);
    let c = &inputs.settings;
    summary.fact("input manifest", format!("{}.parquet", inputs.upstream.stage)).fact(
        "thresholds",
        format!(
            "min_size {} max_aspect {} min_sharpness {} min_colorfulness {} min_entropy {}",
            c.min_size, c.max_aspect, c.min_sharpness, c.min_colorfulness, c.min_entropy
        ),
    );
    if let Some(p) = &env.partition {
        summary.fact("partition", p.describe());
    }
    summary.fact("manifest", published.display());
    Ok(summary.finish())
}

fn scores_of(item: &Item) -> Result<Scores> {
    item.measures.as_ref().map(|m| m.quality).with_context(|| {
        format!(
            "row {:?} has no quality scores (a manifest from an older version): run `anime-pipe run --force`",
            item.key
        )
    })
}

/// Every reason that applies to one item, in [`REASON_ORDER`]. Score thresholds of 0 are off. `monochrome`
/// applies to images under `min_colorfulness` and, whenever that filter is on, to every `grayscale` image (whose
/// colourfulness may sit just above a small threshold because of JPEG chroma noise).
pub fn rejection_reasons(width: u32, height: u32, s: &Scores, t: &CleanSettings) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if width.min(height) < t.min_size {
        reasons.push(Reason::TooSmall);
    }
    if aspect(width, height) > t.max_aspect {
        reasons.push(Reason::BadAspect);
    }
    if t.min_sharpness > 0.0 && s.sharpness < t.min_sharpness {
        reasons.push(Reason::Blurry);
    }
    if t.min_colorfulness > 0.0 && (s.grayscale || s.colorfulness < t.min_colorfulness) {
        reasons.push(Reason::Monochrome);
    }
    if t.min_entropy > 0.0 && s.entropy < t.min_entropy {
        reasons.push(Reason::LowEntropy);
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

fn manifest(items: &[&Item], scores: &[Scores], verdicts: &[Vec<Reason>]) -> Result<polars::prelude::DataFrame> {
    let pick = |f: fn(&Scores) -> f64| scores.iter().map(f).collect::<Vec<f64>>();
    let names = |r: &[Reason]| r.iter().map(|r| r.name()).collect::<Vec<_>>().join(",");
    let columns = vec![
        col("key", items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>()),
        col("source", items.iter().map(|i| i.source.as_str()).collect::<Vec<_>>()),
        col("source_index", items.iter().map(|i| i.source_index).collect::<Vec<_>>()),
        col("path", items.iter().map(|i| i.path.as_str()).collect::<Vec<_>>()),
        col("object", items.iter().map(|i| i.object.as_str()).collect::<Vec<_>>()),
        col("width", items.iter().map(|i| i.width).collect::<Vec<_>>()),
        col("height", items.iter().map(|i| i.height).collect::<Vec<_>>()),
        col("already_cropped", items.iter().map(|i| i.already_cropped).collect::<Vec<_>>()),
        col("upscaled_object", items.iter().map(|i| i.upscaled_object.as_deref()).collect::<Vec<_>>()),
        col("short_side", items.iter().map(|i| i.width.min(i.height)).collect::<Vec<_>>()),
        col("aspect", items.iter().map(|i| aspect(i.width, i.height)).collect::<Vec<_>>()),
        col("sharpness", pick(|s| s.sharpness)),
        col("colorfulness", pick(|s| s.colorfulness)),
        col("grayscale", scores.iter().map(|s| s.grayscale).collect::<Vec<_>>()),
        col("entropy", pick(|s| s.entropy)),
        status_column(verdicts.iter().map(|r| Status::ok_if(r.is_empty()))),
        col("reason", verdicts.iter().map(|r| r.first().map(|r| r.name())).collect::<Vec<_>>()),
        col("reasons", verdicts.iter().map(|r| (!r.is_empty()).then(|| names(r))).collect::<Vec<_>>()),
        col("error", vec![None::<&str>; items.len()]),
    ];
    frame(items.len(), columns)
}
