//! The pipeline's stages and their one protocol.
//!
//! [`Stage`] knows the pipeline order and each stage's upstream. Each stage module (`ingest`, `dedup`, `crop`,
//! `upscale`, `clean`, `pack`) reads its upstream's manifest and publishes its own under `manifests/`. [`Plan`] is
//! what pipeline.yaml resolves to: the enabled stages and every stage's settings. `run` executes a plan, skipping
//! stages whose stamp matches their fingerprint.
pub mod clean;
pub mod crop;
pub mod dedup;
pub mod ingest;
pub mod pack;
pub mod run;
pub mod upscale;

use crate::env::Env;
use crate::imageio::Limits;
use crate::models::ModelPaths;
use crate::named::Named;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// A pipeline stage. The declaration order is the pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Ingest,
    Dedup,
    Crop,
    Upscale,
    Clean,
    Pack,
}

impl Named for Stage {
    const ALL: &'static [Self] = &[Stage::Ingest, Stage::Dedup, Stage::Crop, Stage::Upscale, Stage::Clean, Stage::Pack];
    const WHAT: &'static str = "stage";
    fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Dedup => "dedup",
            Stage::Crop => "crop",
            Stage::Upscale => "upscale",
            Stage::Clean => "clean",
            Stage::Pack => "pack",
        }
    }
}
crate::impl_named_str!(Stage);

impl Stage {
    /// The stages `run` executes when pipeline.yaml lists none: crop and upscale need ONNX models.
    pub const DEFAULT: &'static [Stage] = &[Stage::Ingest, Stage::Dedup, Stage::Clean, Stage::Pack];

    /// The stage whose manifest this one reads, given the enabled stages: crop and upscale are optional, so
    /// upscale reads crop's or dedup's rows and clean the last of upscale, crop and dedup that is enabled.
    pub fn upstream(self, enabled: &[Stage]) -> Option<Stage> {
        let last_enabled =
            |of: &[Stage], fallback: Stage| of.iter().copied().find(|s| enabled.contains(s)).or(Some(fallback));
        match self {
            Stage::Ingest => None,
            Stage::Dedup => Some(Stage::Ingest),
            Stage::Crop => Some(Stage::Dedup),
            Stage::Upscale => last_enabled(&[Stage::Crop], Stage::Dedup),
            Stage::Clean => last_enabled(&[Stage::Upscale, Stage::Crop], Stage::Dedup),
            Stage::Pack => Some(Stage::Clean),
        }
    }
}

/// What pipeline.yaml resolves to for the stages: which run, and every stage's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Enabled stages, in pipeline order.
    pub stages: Vec<Stage>,
    pub sources: Vec<ingest::Source>,
    pub limits: Limits,
    pub dedup: dedup::DedupSettings,
    pub crop: crop::CropSettings,
    pub upscale: upscale::UpscaleSettings,
    pub clean: clean::CleanSettings,
    pub pack: pack::PackSettings,
    pub models: ModelPaths,
}

impl Plan {
    pub fn upstream(&self, stage: Stage) -> Option<Stage> {
        stage.upstream(&self.stages)
    }
}

/// A stage's view of one command: the plan and where it runs.
pub struct Ctx {
    pub env: Env,
    pub plan: Plan,
}

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

/// The manifest `clean` reads: the last of upscale, crop, dedup enabled in `ctx.plan.stages`. Their manifests
/// carry the same item columns (key, source, source_index, path, object, width, height) and `status` "ok" for usable
/// rows, so nothing else in `clean` changes, and `clean::fingerprint` follows automatically. With crop/upscale, an
/// item is a face crop (or a passthrough image of an `already_cropped` source) and width/height are the crop's
/// original size.
pub fn clean_input_stage(ctx: &Ctx) -> &'static str {
    ctx.plan.upstream(Stage::Clean).expect("clean has an upstream").name()
}

/// The items `clean` scores: the accepted rows of [`clean_input_stage`]'s manifest.
pub fn clean_input(ctx: &Ctx) -> Result<CleanInput> {
    let stage = clean_input_stage(ctx);
    Ok(CleanInput { stage, items: read_items(ctx, stage)? })
}

/// The rows with status "ok" of `stage`'s manifest as items, in canonical order (source_index, path).
pub fn read_items(ctx: &Ctx, stage: &'static str) -> Result<Vec<CleanItem>> {
    let df = crate::manifest::read_stage(&ctx.env.workdir, stage)?;
    let status = crate::manifest::columns::strings(&df, "status")?;
    let (key, source, path, object) = (
        crate::manifest::columns::strings(&df, "key")?,
        crate::manifest::columns::strings(&df, "source")?,
        crate::manifest::columns::strings(&df, "path")?,
        crate::manifest::columns::opt_strings(&df, "object")?,
    );
    let (source_index, width, height) = (
        crate::manifest::columns::u32s(&df, "source_index")?,
        crate::manifest::columns::opt_u32s(&df, "width")?,
        crate::manifest::columns::opt_u32s(&df, "height")?,
    );
    let cropped = if crate::manifest::columns::has(&df, "already_cropped") {
        crate::manifest::columns::opt_bools(&df, "already_cropped")?
    } else {
        vec![None; df.height()]
    };
    let upscaled = if crate::manifest::columns::has(&df, "upscaled_object") {
        crate::manifest::columns::opt_strings(&df, "upscaled_object")?
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
