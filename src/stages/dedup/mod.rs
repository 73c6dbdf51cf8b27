//! `anime-pipe dedup`: marks exact and near duplicates among the accepted ingest rows. Nothing is deleted: every
//! accepted ingest row gets one row in `manifests/dedup.parquet`, and duplicates point at the row kept for them.
//!
//! ## What counts as a duplicate
//! - `exact_bytes`: same blake3 of the file bytes (same cache object).
//! - `exact_pixels`: same decoded RGB8 pixels and size, different bytes (e.g. a PNG and a lossless WebP/BMP of the
//!   same picture). `pixel_hash` = blake3 of `width (u32 LE) ‖ height (u32 LE) ‖ RGB8 rows`.
//! - `near`: 64-bit DCT perceptual hashes within `dedup.phash_threshold` bits (Hamming distance; `--threshold`;
//!   off with `--no-near` / `dedup.near: false`), **confirmed by colour**: the mean absolute difference of the
//!   two images' 4x4 RGB thumbnails must be at most [`crate::imagehash::NEAR_MAX_COLOUR_DIFFERENCE`] (10 of 255). pHash sees only
//!   luma structure, and aligned face crops share it: on the Getchu faces, pHash alone at 6 bits pairs different
//!   characters in the same pose and chains them into groups of hundreds; with the colour check every pair we
//!   inspected was the same picture (retouched, re-encoded or resized).
//!   The pHash: the image reduced to 32x32 RGB (image's triangle filter, in f32; images larger than 128 px on a
//!   side are first reduced to at most 128x128 in 8-bit), luma = 0.299 R + 0.587 G + 0.114 B, 2-D DCT-II, the
//!   top-left 8x8 coefficients compared with their median, bit `63 - (8u + v)` set when coefficient (u, v) is
//!   above it (the construction of Python's `imagehash.phash`). Every hash has 32 bits set, so distances are even
//!   (thresholds 6 and 7 behave alike). The thumbnail is the 8x8-block means of the same 32x32 reduction. Robust
//!   to resizing, re-encoding (JPEG quality) and crops of up to about 3% of a side at the default threshold (a
//!   5% crop moves the hash by about 10 bits); not to flips or large crops.
//! - `near`, crops (`dedup.crops`, on by default with `near`; `--no-crops`): B is a crop of A by up to 10% per side
//!   (any mix of sides, also resized and re-encoded) when B's whole-image pHash is within
//!   [`crate::imagehash::CROP_MAX_HAMMING`] (8) bits of one of A's 16 **window pHashes** (the pHash of A's region
//!   inset by 2% or 8% on each side, all 4 x 4 combinations: every crop of 0..10% per side is within 3% per
//!   edge of one window), **verified on aligned thumbnails**: starting from that window, a coordinate search over
//!   the four edges (1.25% steps) finds the region of A's 16x16 gray thumbnail that best matches B's; there the
//!   12x12 gray resamplings must differ by at most [`crate::imagehash::CROP_MAX_GRAY_DIFFERENCE`] (7 of 255) and the
//!   4x4 colour ones (from the 8x8 RGB thumbnails) by at most [`crate::imagehash::CROP_MAX_COLOUR_DIFFERENCE`]
//!   (12). Without the alignment a 2.5% shift of line art costs as much as another expression of the same sprite.
//!   Measured (BENCHMARKS.md, "Dedup: near duplicates on real faces"): recall >= 95% on JPEG quality 60..95,
//!   resizes to 50..90% and crops of 0..10% per side of real Getchu faces, and their combination, with at most 0.2%
//!   of unrelated faces grouped. The whole-image search is unchanged by it (its `--threshold` governs it alone).

//! ## Groups and the keep policy
//! Duplicate relations are merged with union-find into connected components, so relations **chain**: if A~B and
//! B~C then A, B and C form one group even when A and C are further apart than the threshold (their `hamming` to
//! the kept row can then exceed the threshold). Within a group the kept row is the one with the largest
//! resolution (width x height), then the lowest `source_index`, then the smallest `path` (then `key`). Every other
//! row gets `status` "duplicate" and `duplicate_of` = the kept row's key. `dup_kind` says which level of the
//! hierarchy made the row redundant, applying the same ranking at each level: `exact_bytes` when a better-ranked
//! row has the same bytes; otherwise `exact_pixels` when a better-ranked row has the same pixels; otherwise
//! `near`. So the exact_bytes count is always (rows - distinct objects) and the exact_pixels count (distinct
//! objects - distinct pixel hashes), whatever the near-duplicate threshold; `duplicate_of` still names the
//! group's kept row, which for an exact copy of a near duplicate is not itself byte-identical.
//!
//! ## Scale
//! Nothing is decoded: pixel hash, pHash, thumbnails and window hashes were measured by `ingest` (or `crop`) from
//! its one decode of each file and are read from ingest.parquet. The near searches run over distinct pictures (one
//! per pixel hash) with multi-index hashing ([`crate::imagehash::near_pairs`] for whole-image pairs,
//! [`crate::imagehash::near_matches`] for the 16 window hashes of each picture against all whole-image hashes): no
//! quadratic scan. Bytes per item for near search: 8 (pHash) + 48 (thumb) + 576 (window hashes 128, gray
//! thumbnail 256, colour thumbnail 192); the search tables add 12 bytes per hash per block (3..8 blocks) for the
//! indexed whole-image hashes, plus 4 bytes per window query for its order. Measured at 1M items and 10M hashes in
//! BENCHMARKS.md ("Dedup at scale"). A re-run reuses the near pairs of the last one and searches only pairs with a
//! new picture ([`reuse`]): after adding 1%, the search is ~1% of a fresh one, and the groups are the same.
//!
//! ## dedup.parquet (one row per accepted ingest row, in ingest order: source_index, path)
//! | column | type | meaning |
//! |---|---|---|
//! | key, source, source_index, path | str, str, u32, str | as in ingest.parquet |
//! | already_cropped | bool | as in ingest.parquet |
//! | object | str | cache object (blake3 of the bytes) |
//! | width, height | u32 | image size |
//! | status | str | "ok" (kept or unique) or "duplicate" |
//! | reason | str? | null when ok; the dup_kind for duplicates |
//! | duplicate_of | str? | key of the kept row (duplicates only) |
//! | dup_kind | str? | "exact_bytes", "exact_pixels" or "near" (duplicates only) |
//! | hamming | u32? | pHash distance to the kept row (near duplicates only; a crop can be far above the threshold) |
//! | pixel_hash, phash, thumb | str, u64, str | the measures from ingest.parquet (see `crate::measure`) |
//! | window_phashes, gray_thumb, colour_thumb | binary | the crop signature from ingest.parquet (128, 256, 192 bytes) |
//! | sharpness, colorfulness, grayscale, entropy | f64, f64, bool, f64 | quality scores, carried on to `clean` |
mod crops;
mod group;
mod reuse;

use crate::env::Env;
use crate::manifest::columns::{col, frame};
use crate::manifest::{measure_columns, publish_written, read_items, row_group_ranges, Item, ManifestWriter, Upstream};
use crate::manifest::{status_column, Status};
use crate::measure::Measures;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::{Plan, Stage};
use crate::workdir::Workdir;
use anyhow::{Context, Result};
use group::{group_with, Near, Verdict};
use reuse::Reuse;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Resolved `dedup:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DedupSettings {
    /// Near duplicates: at most this many differing bits of 64.
    pub phash_threshold: u32,
    /// Look for near duplicates at all (exact ones always).
    pub near: bool,
    /// With `near`: also look for crops (window pHashes verified on aligned thumbnails).
    pub crops: bool,
}

/// Bumped when the output for the same inputs changes, so stamps made by older code no longer match.
pub const ALGORITHM: &str = "dedup/4";

/// Everything dedup's output depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub upstream: Upstream,
    pub settings: DedupSettings,
}

impl Inputs {
    pub fn new(plan: &Plan, workdir: &Workdir) -> Result<Self> {
        Ok(Self::from_plan(plan, Stage::Dedup.upstream_of(plan, workdir)?))
    }

    /// The inputs under `plan` reading `upstream`.
    pub fn from_plan(plan: &Plan, upstream: Upstream) -> Self {
        Self { upstream, settings: plan.dedup }
    }

    /// What the near pairs of two pictures depend on besides the pictures: the settings and how ingest measured
    /// them (the pair memo's key; see [`reuse`]).
    pub fn pairs_key(&self) -> String {
        #[derive(Serialize)]
        struct PairsKey<'a> {
            settings: &'a DedupSettings,
            measures: &'a str,
        }
        let key = PairsKey { settings: &self.settings, measures: crate::stages::ingest::ALGORITHM };
        crate::stages::fingerprint(Stage::Dedup, ALGORITHM, &key)
    }
}

pub fn run(env: &Env, inputs: &Inputs, fingerprint: &str) -> Result<Summary> {
    let mut summary = Summary::start(Stage::Dedup.name());
    let items = read_items(&env.workdir, &inputs.upstream)?;
    let measures = measures_of(&items)?;
    let d = inputs.settings;
    let near = d.near.then_some(Near { threshold: d.phash_threshold, crops: d.crops });
    let (verdicts, reuse) = match near {
        Some(near) => group_reusing_pairs(env, inputs, &items, &measures, near)?,
        None => (group_with(&items, &measures, None::<fn(&[&Measures]) -> Vec<(u32, u32)>>), None),
    };
    publish(env, &items, &measures, &verdicts, fingerprint)?;
    summarize(&mut summary, env, inputs, &items, &verdicts);
    if let Some(reuse) = reuse {
        summary
            .count("pictures reused", reuse.pictures_reused)
            .count("pictures searched", reuse.pictures_searched)
            .count("near pairs reused", reuse.pairs_reused);
    }
    Ok(summary.finish())
}

/// Groups with the near search reusing the pair memo of the last run, and keeps the new memo (written before the
/// manifest, atomically: a run killed between the two finds a memo that is exact for its pictures).
fn group_reusing_pairs(
    env: &Env,
    inputs: &Inputs,
    items: &[Item],
    measures: &[&Measures],
    near: Near,
) -> Result<(Vec<Verdict>, Option<Reuse>)> {
    let path = reuse::memo_path(&env.workdir, &inputs.pairs_key());
    let previous = reuse::load(&path)?;
    let mut outcome = None;
    let verdicts = group_with(
        items,
        measures,
        Some(|pictures: &[&Measures]| {
            let (pairs, memo, reuse) = reuse::near_pairs_reusing(pictures, near, previous.as_ref());
            outcome = Some((memo, reuse));
            pairs
        }),
    );
    let Some((memo, reuse)) = outcome else { return Ok((verdicts, None)) };
    if previous.as_ref() != Some(&memo) {
        reuse::save(&path, &memo)?;
    }
    Ok((verdicts, Some(reuse)))
}

/// Every accepted ingest row carries its measures; a manifest written before they existed must be re-made.
fn measures_of(items: &[Item]) -> Result<Vec<&Measures>> {
    items
        .iter()
        .map(|it| {
            it.measures.as_ref().with_context(|| {
                format!(
                    "ingest.parquet row {:?} has no measures (an older manifest): run `anime-pipe ingest` again",
                    it.key
                )
            })
        })
        .collect()
}

/// Writes the manifest a row group at a time, so that no second copy of every row is held as a frame.
fn publish(env: &Env, items: &[Item], measures: &[&Measures], verdicts: &[Verdict], fingerprint: &str) -> Result<()> {
    let mut writer = ManifestWriter::create(&env.workdir.manifest_path(Stage::Dedup.name()))?;
    for rows in row_group_ranges(items.len()) {
        writer.push(manifest_frame(items, measures, verdicts, rows)?)?;
    }
    publish_written(&env.workdir, Stage::Dedup.name(), writer, fingerprint).map(drop)
}

/// The manifest's `rows` (a duplicate names its kept item, which may be in any row).
fn manifest_frame(
    items: &[Item],
    measures: &[&Measures],
    verdicts: &[Verdict],
    rows: std::ops::Range<usize>,
) -> Result<polars::prelude::DataFrame> {
    let duplicate = |i: usize| match &verdicts[i] {
        Verdict::Duplicate { of, kind, hamming } => Some((*of, *kind, *hamming)),
        Verdict::Ok => None,
    };
    let status = rows.clone().map(|i| if duplicate(i).is_some() { Status::Duplicate } else { Status::Ok });
    let kind: Vec<Option<&str>> = rows.clone().map(|i| duplicate(i).map(|d| d.1.name())).collect();
    let part = &items[rows.clone()];
    let strs = |f: fn(&Item) -> &str| part.iter().map(f).collect::<Vec<_>>();
    let mut columns = vec![
        col("key", strs(|it| &it.key)),
        col("source", strs(|it| &it.source)),
        col("source_index", part.iter().map(|it| it.source_index).collect::<Vec<u32>>()),
        col("path", strs(|it| &it.path)),
        col("already_cropped", part.iter().map(|it| it.already_cropped).collect::<Vec<Option<bool>>>()),
        col("object", strs(|it| &it.object)),
        col("width", part.iter().map(|it| it.width).collect::<Vec<u32>>()),
        col("height", part.iter().map(|it| it.height).collect::<Vec<u32>>()),
        status_column(status),
        col("reason", kind.clone()),
        col("duplicate_of", rows.clone().map(|i| duplicate(i).map(|d| items[d.0].key.as_str())).collect::<Vec<_>>()),
        col("dup_kind", kind),
        col("hamming", rows.clone().map(|i| duplicate(i).and_then(|d| d.2)).collect::<Vec<Option<u32>>>()),
    ];
    columns.extend(measure_columns(measures[rows.clone()].iter().map(|m| Some(*m))));
    frame(rows.len(), columns)
}

fn summarize(summary: &mut Summary, env: &Env, inputs: &Inputs, items: &[Item], verdicts: &[Verdict]) {
    let mut groups: HashMap<usize, u32> = HashMap::new();
    for v in verdicts {
        if let Verdict::Duplicate { of, kind, .. } = v {
            *groups.entry(*of).or_default() += 1;
            summary.reject(kind.name());
        }
    }
    let duplicates: u32 = groups.values().sum();
    summary
        .count("items", items.len() as u64)
        .count("kept", (items.len() - duplicates as usize) as u64)
        .count("duplicates", u64::from(duplicates))
        .count("duplicate groups", groups.len() as u64)
        .count("images decoded", 0);
    let d = inputs.settings;
    summary.fact(
        "near duplicates",
        if d.near {
            let crops = if d.crops {
                format!(
                    "; crops: window pHash within {} bits, aligned gray <= {}, colour <= {}",
                    crate::imagehash::CROP_MAX_HAMMING,
                    crate::imagehash::CROP_MAX_GRAY_DIFFERENCE,
                    crate::imagehash::CROP_MAX_COLOUR_DIFFERENCE
                )
            } else {
                String::new()
            };
            format!(
                "pHash within {} bits, colour difference <= {}{crops}",
                d.phash_threshold,
                crate::imagehash::NEAR_MAX_COLOUR_DIFFERENCE
            )
        } else {
            "off".into()
        },
    );
    summary.fact("manifest", env.workdir.manifest_path(Stage::Dedup.name()).display());
}
