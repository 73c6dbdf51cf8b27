//! One module per pipeline stage. Each stage exposes
//! `fingerprint(ctx) -> String` (blake3 over everything its output depends on: upstream manifests, its settings,
//! source state) and `run(ctx) -> Summary` (which publishes its manifest via `manifest::publish_stage` with that
//! fingerprint). `pipeline` runs the configured stages, skipping those whose stamp matches their fingerprint.
pub mod clean;
pub mod columns;
pub mod crop;
pub mod dedup;
pub mod ingest;
pub mod pack;
pub mod pipeline;
pub mod stats;
pub mod upscale;
pub mod verify;

use crate::app::Ctx;
use anyhow::Result;

/// One image item entering `clean`.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanItem {
    pub key: String,
    pub source: String,
    pub source_index: u32,
    pub path: String,
    pub object: String,
    pub width: u32,
    pub height: u32,
    /// Passed through when the upstream manifest has the column.
    pub already_cropped: Option<bool>,
    /// The upscaled version of `object` (upscale.parquet only; null when the item was large enough). `width` and
    /// `height` stay those of `object`, the original: upscaling cannot create detail, so size filters judge the
    /// original; `pack` should use this object when present.
    pub upscaled_object: Option<String>,
}

/// What `clean` scores: the stage whose manifest it reads, and that manifest's accepted items in canonical order
/// (source_index, path).
#[derive(Debug, Clone)]
pub struct CleanInput {
    pub stage: &'static str,
    pub items: Vec<CleanItem>,
}

/// The manifest `clean` reads: the last of upscale, crop, dedup enabled in `ctx.settings.stages`. Their manifests
/// carry the same item columns (key, source, source_index, path, object, width, height) and `status` "ok" for usable
/// rows, so nothing else in `clean` changes, and `clean::fingerprint` follows automatically. With crop/upscale, an
/// item is a face crop (or a passthrough image of an `already_cropped` source) and width/height are the crop's
/// original size.
pub fn clean_input_stage(ctx: &Ctx) -> &'static str {
    let enabled = |stage: &str| ctx.settings.stages.iter().any(|s| s == stage);
    if enabled("upscale") {
        "upscale"
    } else if enabled("crop") {
        "crop"
    } else {
        "dedup"
    }
}

/// The items `clean` scores: the accepted rows of [`clean_input_stage`]'s manifest.
pub fn clean_input(ctx: &Ctx) -> Result<CleanInput> {
    let stage = clean_input_stage(ctx);
    Ok(CleanInput { stage, items: read_items(ctx, stage)? })
}

/// The rows with status "ok" of `stage`'s manifest as items, in canonical order (source_index, path).
pub fn read_items(ctx: &Ctx, stage: &'static str) -> Result<Vec<CleanItem>> {
    let df = crate::manifest::read_stage(&ctx.workdir, stage)?;
    let status = columns::strings(&df, "status")?;
    let (key, source, path, object) = (
        columns::strings(&df, "key")?,
        columns::strings(&df, "source")?,
        columns::strings(&df, "path")?,
        columns::opt_strings(&df, "object")?,
    );
    let (source_index, width, height) =
        (columns::u32s(&df, "source_index")?, columns::opt_u32s(&df, "width")?, columns::opt_u32s(&df, "height")?);
    let cropped = if columns::has(&df, "already_cropped") {
        columns::opt_bools(&df, "already_cropped")?
    } else {
        vec![None; df.height()]
    };
    let upscaled = if columns::has(&df, "upscaled_object") {
        columns::opt_strings(&df, "upscaled_object")?
    } else {
        vec![None; df.height()]
    };
    let mut items = Vec::new();
    for row in (0..df.height()).filter(|&r| status[r] == "ok") {
        let missing = |what: &str| anyhow::anyhow!("{stage}.parquet row {:?}: status \"ok\" but no {what}", key[row]);
        items.push(CleanItem {
            key: key[row].clone(),
            source: source[row].clone(),
            source_index: source_index[row],
            path: path[row].clone(),
            object: object[row].clone().ok_or_else(|| missing("object"))?,
            width: width[row].ok_or_else(|| missing("width"))?,
            height: height[row].ok_or_else(|| missing("height"))?,
            already_cropped: cropped[row],
            upscaled_object: upscaled[row].clone(),
        });
    }
    items.sort_by(|a, b| (a.source_index, &a.path).cmp(&(b.source_index, &b.path)));
    Ok(items)
}
