//! `anime-pipe upscale`: bring items smaller than the training size up to it, by Lanczos3 or a super-resolution
//! model (see `faces::upscale` for the models, tiling and feathering).
//!
//! Input: the rows with status "ok" of `crop.parquet` when `crop` is among the configured stages, else of
//! `dedup.parquet`. An item whose shorter side is below the target (`upscale.target` / `--target`, default the
//! largest of `pack.sizes`) is decoded and upscaled so its shorter side is exactly the target (aspect kept); the
//! result is PNG-encoded with fixed settings and stored in the cache (`upscaled_object`). Larger items are left
//! alone (`upscale_method` "none"). The original `object`, `width` and `height` are kept: `clean` scores and size-
//! filters the original (upscaling cannot create detail, so `clean.min_size` must judge the real resolution), and
//! `pack` uses `upscaled_object` when present.
//!
//! Items run in parallel (rayon, `-j`); the model is one ONNX Runtime session shared by all threads, tiles of one
//! image batched `upscale.tile_batch` per run.
//!
//! ## upscale.parquet (one row per input item, sorted by source_index, path)
//! | column | type | meaning |
//! |---|---|---|
//! | `key`, `source`, `source_index`, `path` | str, str, u32, str | as in the input manifest |
//! | `already_cropped` | bool? | passed through when the input manifest has it |
//! | `object`, `width`, `height` | str, u32, u32 | the original item (cache object and size) |
//! | `upscaled_object` | str? | cache object of the upscaled PNG; null when not upscaled |
//! | `upscaled_width`, `upscaled_height` | u32? | its size (shorter side = `target`) |
//! | `upscale_method` | str | "none", "lanczos", "waifu2x" or "realesrgan" |
//! | `upscale_factor` | f64 | upscaled shorter side / original shorter side (1.0 when not upscaled) |
//! | `upscale_passes` | u32 | model passes (0 for none and lanczos); a final Lanczos3 step sets the exact size |
//! | `target` | u32 | the target shorter side in force |
//! | `status` | str | "ok", or "rejected" when the item no longer decodes |
//! | `reason` | str? | `decode_failed` or null |
//! | `error` | str? | decoder message |
//! | `pixel_hash` ... `entropy` | | the original's measures, passed through (see `crate::measure`) for `clean` |
use crate::cache;
use crate::env::Env;
use crate::faces::upscale::{upscale_to, Method, SrModel, Tiling};
use crate::imageio::Limits;
use crate::manifest::columns::{col, frame};
use crate::manifest::{measure_columns, read_items, Item, Reason, Upstream};
use crate::manifest::{status_column, Status};
use crate::memo::{Memo, Record};
use crate::named::Named;
use crate::pixels::encode_png;
use crate::report::Summary;
use crate::runtime::SessionOptions;
use crate::stages::{parts, ModelRef, Plan, Stage};
use crate::workdir::Workdir;
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Resolved `upscale:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpscaleSettings {
    pub method: Method,
    /// Items whose shorter side is below this are upscaled to it (default: the largest of `pack.sizes`).
    pub target: u32,
    pub tiling: Tiling,
}

/// Bumped when the upscaling pixels change, so stamps made by older code no longer match.
pub const ALGORITHM: &str = "upscale/2";

/// Everything upscale's output depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub upstream: Upstream,
    pub settings: UpscaleSettings,
    /// Decode limits decide which items are `decode_failed`.
    pub limits: Limits,
    /// The super-resolution model (none for Lanczos).
    pub model: Option<ModelRef>,
}

impl Inputs {
    /// What one item's result depends on besides the item: the memo key.
    pub fn item_key(&self) -> String {
        #[derive(Serialize)]
        struct ItemKey<'a> {
            settings: &'a UpscaleSettings,
            limits: &'a Limits,
            model: &'a Option<ModelRef>,
        }
        let key = ItemKey { settings: &self.settings, limits: &self.limits, model: &self.model };
        crate::stages::fingerprint(Stage::Upscale, ALGORITHM, &key)
    }

    pub fn new(plan: &Plan, workdir: &Workdir) -> Result<Self> {
        Ok(Self::from_plan(plan, Stage::Upscale.upstream_of(plan, workdir)?))
    }

    /// The inputs under `plan` reading `upstream`.
    pub fn from_plan(plan: &Plan, upstream: Upstream) -> Self {
        let models = &plan.models;
        let model = match plan.upscale.method {
            Method::Lanczos => None,
            Method::Waifu2x => Some(ModelRef::of(&models.waifu2x)),
            Method::Realesrgan => Some(ModelRef::of(&models.realesrgan)),
        };
        Self { upstream, settings: plan.upscale.clone(), limits: plan.limits, model }
    }
}

/// What happened to one item.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Outcome {
    upscaled: Option<(String, u32, u32)>,
    method: String,
    factor: f64,
    passes: u32,
    error: Option<String>,
}

impl Outcome {
    fn unchanged() -> Self {
        Outcome { method: "none".into(), factor: 1.0, ..Default::default() }
    }
}

pub fn run(env: &Env, inputs: &Inputs, fingerprint: &str) -> Result<Summary> {
    let mut summary = Summary::start(Stage::Upscale.name());
    let all = read_items(&env.workdir, &inputs.upstream)?;
    let items = parts::select(env, &all);
    let settings = &inputs.settings;
    let needs = |item: &Item| item.width.min(item.height) < settings.target;
    let memo = Memo::open(&env.workdir, Stage::Upscale.name(), &inputs.item_key())?;
    let to_upscale = items.iter().filter(|i| needs(i)).count();
    let to_compute = items.iter().filter(|i| needs(i) && !memo.contains(&i.object)).count();
    let model = match &inputs.model {
        Some(model) if to_compute > 0 => Some(load_model(env, settings.method, model)?),
        _ => None,
    };

    let bar = env.reporter.bar(to_upscale as u64, Stage::Upscale.name());
    let outcomes: Vec<Outcome> = items
        .par_iter()
        .map(|item| {
            if !needs(item) {
                return Ok(Outcome::unchanged());
            }
            let outcome = match memo.get(&item.object)? {
                Some(record) => serde_json::from_slice(&record.payload)
                    .with_context(|| format!("upscale memo entry for {} is unreadable", item.key)),
                None => upscale_item(&env.workdir, item, inputs, model.as_ref()).and_then(|o| remember(&memo, item, o)),
            };
            bar.inc(1);
            outcome
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    memo.finish()?;

    let mut df = manifest(&items, &outcomes, settings.target)?;
    let computed = to_compute as u64;
    let reused = (to_upscale - to_compute) as u64;
    let published = parts::publish(env, Stage::Upscale, &mut df, fingerprint, computed, reused)?;

    let upscaled = outcomes.iter().filter(|o| o.upscaled.is_some()).count() as u64;
    let rejected = outcomes.iter().filter(|o| o.error.is_some()).count() as u64;
    summary
        .count("input items", items.len() as u64)
        .count("upscaled", upscaled)
        .count("already large enough", (items.len() - to_upscale) as u64)
        .count("rejected", rejected)
        .count("computed", computed)
        .count("reused", reused)
        .count("images decoded", computed);
    for _ in 0..rejected {
        summary.reject(Reason::DecodeFailed.name());
    }
    if let Some(p) = &env.partition {
        summary.fact("partition", p.describe());
    }
    summary.fact("input manifest", format!("{}.parquet", inputs.upstream.stage));
    summary.fact("method", settings.method.name()).fact("target", format!("{} px (shorter side)", settings.target));
    if let Some(m) = &model {
        summary.fact("device", format!("{:?}", m.device));
    }
    summary.fact("manifest", published.display());
    Ok(summary.finish())
}

/// Keeps one item's outcome in the memo, keyed by the item's content.
fn remember(memo: &Memo, item: &Item, outcome: Outcome) -> Result<Outcome> {
    let refs = outcome.upscaled.iter().map(|u| u.0.clone()).collect();
    memo.put(Record { object: item.object.clone(), refs, payload: serde_json::to_vec(&outcome)? })?;
    Ok(outcome)
}

fn load_model(env: &Env, method: Method, model: &ModelRef) -> Result<SrModel> {
    let options = SessionOptions { device: env.device, threads: env.threads, optimize: true };
    SrModel::load(&model.path, method, &options)
        .with_context(|| format!("upscale: cannot load the {} model (models.{})", method.name(), method.name()))
}

/// One item brought up to the target: decoded, upscaled, stored in the cache as PNG.
fn upscale_item(workdir: &Workdir, item: &Item, inputs: &Inputs, model: Option<&SrModel>) -> Result<Outcome> {
    let image = match cache::load_rgb8(workdir, &item.object, &inputs.limits)
        .with_context(|| format!("upscale: cannot read the image of {}", item.key))?
    {
        Ok(image) => image,
        Err(e) => return Ok(Outcome { error: Some(e.to_string()), ..Outcome::unchanged() }),
    };
    let settings = &inputs.settings;
    let up = upscale_to(&image, settings.target, model, &settings.tiling)
        .with_context(|| format!("upscale: {} failed on {}", settings.method.name(), item.key))?;
    let object = cache::store_object(workdir, &encode_png(&up.image)?)?;
    let (w, h) = up.image.dimensions();
    Ok(Outcome {
        factor: f64::from(w.min(h)) / f64::from(image.width().min(image.height())),
        upscaled: Some((object, w, h)),
        method: settings.method.name().into(),
        passes: up.passes,
        error: None,
    })
}

fn manifest(items: &[&Item], outcomes: &[Outcome], target: u32) -> Result<polars::prelude::DataFrame> {
    let up = |f: &dyn Fn(&(String, u32, u32)) -> u32| -> Vec<Option<u32>> {
        outcomes.iter().map(|o| o.upscaled.as_ref().map(f)).collect()
    };
    let mut columns = vec![
        col("key", items.iter().map(|i| i.key.clone()).collect::<Vec<_>>()),
        col("source", items.iter().map(|i| i.source.clone()).collect::<Vec<_>>()),
        col("source_index", items.iter().map(|i| i.source_index).collect::<Vec<_>>()),
        col("path", items.iter().map(|i| i.path.clone()).collect::<Vec<_>>()),
    ];
    if items.iter().any(|i| i.already_cropped.is_some()) {
        columns.push(col("already_cropped", items.iter().map(|i| i.already_cropped).collect::<Vec<_>>()));
    }
    columns.extend([
        col("object", items.iter().map(|i| i.object.clone()).collect::<Vec<_>>()),
        col("width", items.iter().map(|i| i.width).collect::<Vec<_>>()),
        col("height", items.iter().map(|i| i.height).collect::<Vec<_>>()),
        col("upscaled_object", outcomes.iter().map(|o| o.upscaled.as_ref().map(|u| u.0.clone())).collect::<Vec<_>>()),
        col("upscaled_width", up(&|u| u.1)),
        col("upscaled_height", up(&|u| u.2)),
        col("upscale_method", outcomes.iter().map(|o| o.method.as_str()).collect::<Vec<_>>()),
        col("upscale_factor", outcomes.iter().map(|o| o.factor).collect::<Vec<_>>()),
        col("upscale_passes", outcomes.iter().map(|o| o.passes).collect::<Vec<_>>()),
        col("target", vec![target; items.len()]),
        status_column(outcomes.iter().map(|o| Status::ok_if(o.error.is_none()))),
        col(
            "reason",
            outcomes.iter().map(|o| o.error.as_ref().map(|_| Reason::DecodeFailed.name())).collect::<Vec<_>>(),
        ),
        col("error", outcomes.iter().map(|o| o.error.clone()).collect::<Vec<_>>()),
    ]);
    columns.extend(measure_columns(items.iter().map(|i| i.measures.as_ref())));
    frame(items.len(), columns)
}
