//! `anime-pipe crop`: find faces in every accepted, non-duplicate image and cut them out as square crops.
//!
//! Input: the rows of `dedup.parquet` with status "ok". Images of `already_cropped` sources are passed through
//! unchanged (one `passthrough` row each). Every other image is decoded (from the cache, via `imageio`) and run
//! through the face detector (`crop.detector`, model `models.face_detector`; see `faces::detector` for the pre- and
//! post-processing, scales and the `crop.max_side` cap). Detections are ranked (score descending, then position)
//! and classified in that order:
//!
//! 1. score < `crop.score_threshold` -> `low_score` (only candidates >= `crop.low_score_floor` are reported; lower
//!    ones are detector noise);
//! 2. shorter box side < `crop.min_face_size` source pixels -> `face_too_small`;
//! 3. the first `crop.max_faces` remaining faces are cropped (status "ok"); the rest -> `too_many_faces`.
//!
//! An image with no candidate at all gets one row with reason `no_face`; an image that no longer decodes gets one
//! row with reason `decode_failed`. So every input image has at least one row, and every face found has one.
//!
//! Crop squares follow `faces::geometry` (`crop.margin`, `crop.shift_up`, `crop.border`, `crop.pad_color`). Crops
//! keep the source resolution (no resizing here: `clean --min-size` therefore applies to the crop's real size, and
//! `pack` resizes). Each crop is PNG-encoded with fixed settings (`pixels::encode_png`) and stored in the cache, so
//! re-runs produce byte-identical objects and manifests. Each crop is measured (hashes, quality scores) from the
//! pixels in hand, so `clean` never decodes it.
//!
//! Work: images are decoded, resized and normalised in parallel (rayon, `-j`); the detector is one ONNX Runtime
//! session shared by all threads (one run at a time, each using `-j` intra-op threads). FaceBoxes has a fixed batch
//! of 1 and images differ in size, so runs are not batched.
//!
//! ## crop.parquet (sorted by source_index, path)
//! | column | type | meaning |
//! |---|---|---|
//! | `key` | str | face rows: `<parent key>#faceNNN` (NNN = `face_index`, 3+ digits); other rows: the parent key |
//! | `source`, `source_index` | str, u32 | as in dedup.parquet |
//! | `path` | str | face rows: `<parent path>#faceNNN`; other rows: the parent path |
//! | `kind` | str | "face" (a detection), "passthrough" (already-cropped source), "image" (no_face / decode_failed) |
//! | `already_cropped` | bool | the source's flag |
//! | `parent_key`, `parent_object` | str, str | the dedup row the row comes from, and its cache object |
//! | `parent_width`, `parent_height` | u32, u32 | size of the parent image |
//! | `face_index` | u32? | rank of the detection in its image (0 = best score), face rows only |
//! | `box_x0`, `box_y0`, `box_x1`, `box_y1` | f32? | detected face box in parent pixels (may extend slightly past the edges) |
//! | `score` | f32? | detector confidence (0..1) |
//! | `scale` | f32? | detector scale whose candidate survived NMS (1.0 = the `max_side`-capped image) |
//! | `crop_x0`, `crop_y0` | i64? | top-left corner of the crop square in parent pixels (negative when padded) |
//! | `crop_size` | u32? | side of the crop square in parent pixels (face rows, also rejected ones) |
//! | `padded` | bool? | the square extends past the image and was padded (`border: edge/constant`) |
//! | `object` | str? | cache object of the crop PNG (ok face rows) or the parent object (passthrough); null when rejected |
//! | `width`, `height` | u32? | size of `object` in pixels (crop_size for faces); null when rejected |
//! | `status` | str | "ok" or "rejected" |
//! | `reason` | str? | null when ok; `no_face`, `low_score`, `face_too_small`, `too_many_faces`, `decode_failed` |
//! | `error` | str? | decoder message for `decode_failed` |
//! | `pixel_hash` ... `entropy` | | measures of `object` (ok rows; see `crate::measure`): a face crop is measured
//! from the pixels just cut, a passthrough row carries its parent's |
use crate::cache;
use crate::env::Env;
use crate::faces::detector::{Detector, DetectorParams};
use crate::faces::geometry::{crop_rect, extract_crop, CropGeometry, CropRect};
use crate::faces::nms::Detection;
use crate::imageio::Limits;
use crate::manifest::columns::{col, frame};
use crate::manifest::{measure_columns, read_items, Item, Reason, Upstream};
use crate::manifest::{status_column, Status};
use crate::measure::{measure, Measures};
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
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Resolved `crop:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropSettings {
    pub detector: DetectorParams,
    /// Faces scoring at least this are cropped; those between `low_score_floor` and it are `low_score` rows.
    pub score_threshold: f32,
    /// Faces whose box's shorter side (source pixels) is below this are `face_too_small`.
    pub min_face_size: u32,
    /// Per image, the best faces by score; the rest are `too_many_faces`.
    pub max_faces: u32,
    pub geometry: CropGeometry,
    pub pad_color: [u8; 3],
}

/// Bumped when detection, geometry or encoding change, so stamps made by older code no longer match.
pub const ALGORITHM: &str = "crop/3";

/// Everything crop's output depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub upstream: Upstream,
    pub settings: CropSettings,
    /// Decode limits decide which images are `decode_failed`.
    pub limits: Limits,
    pub detector: ModelRef,
    /// Each source's `already_cropped` flag in the current config (it wins over the manifest's: the flag only
    /// steers this stage).
    pub already_cropped: BTreeMap<String, bool>,
}

/// What a crop.parquet row is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A detection (cropped, or rejected with a reason).
    #[default]
    Face,
    /// An image of an `already_cropped` source, passed through.
    Passthrough,
    /// An image with no usable detection (`no_face`, `decode_failed`).
    Image,
}

impl Named for RowKind {
    const ALL: &'static [Self] = &[RowKind::Face, RowKind::Passthrough, RowKind::Image];
    const WHAT: &'static str = "crop kind";
    fn name(self) -> &'static str {
        match self {
            RowKind::Face => "face",
            RowKind::Passthrough => "passthrough",
            RowKind::Image => "image",
        }
    }
}

impl Inputs {
    /// What one image's result depends on besides the image: the memo key.
    pub fn item_key(&self) -> String {
        #[derive(Serialize)]
        struct ItemKey<'a> {
            settings: &'a CropSettings,
            limits: &'a Limits,
            detector: &'a ModelRef,
        }
        let key = ItemKey { settings: &self.settings, limits: &self.limits, detector: &self.detector };
        crate::stages::fingerprint(Stage::Crop, ALGORITHM, &key)
    }

    pub fn new(plan: &Plan, workdir: &Workdir) -> Result<Self> {
        Ok(Self::from_plan(plan, Stage::Crop.upstream_of(plan, workdir)?))
    }

    /// The inputs under `plan` reading `upstream`.
    pub fn from_plan(plan: &Plan, upstream: Upstream) -> Self {
        Self {
            upstream,
            settings: plan.crop.clone(),
            limits: plan.limits,
            detector: ModelRef::of(&plan.models.face_detector),
            already_cropped: plan.sources.iter().map(|s| (s.name.clone(), s.already_cropped)).collect(),
        }
    }

    fn passes_through(&self, item: &Item) -> bool {
        self.already_cropped.get(&item.source).copied().or(item.already_cropped).unwrap_or(false)
    }
}

/// One crop.parquet row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CropRow {
    pub key: String,
    pub path: String,
    pub kind: RowKind,
    pub already_cropped: bool,
    pub face: Option<(u32, Detection)>,
    pub rect: Option<CropRect>,
    pub padded: Option<bool>,
    pub object: Option<String>,
    pub size: Option<(u32, u32)>,
    pub reason: Option<Reason>,
    pub error: Option<String>,
    pub measures: Option<Measures>,
}

pub fn run(env: &Env, inputs: &Inputs, fingerprint: &str) -> Result<Summary> {
    let mut summary = Summary::start(Stage::Crop.name());
    let all = read_items(&env.workdir, &inputs.upstream)?;
    let parents = parts::select(env, &all);
    let memo = Memo::open(&env.workdir, Stage::Crop.name(), &inputs.item_key())?;
    let to_detect = parents.iter().filter(|p| !inputs.passes_through(p)).count();
    let to_compute = parents.iter().filter(|p| !inputs.passes_through(p) && !memo.contains(&p.object)).count();
    let detector = if to_compute > 0 { Some(load_detector(env, inputs)?) } else { None };

    let bar = env.reporter.bar(parents.len() as u64, Stage::Crop.name());
    let computed = AtomicU64::new(0);
    let per_parent: Vec<Vec<CropRow>> = parents
        .par_iter()
        .map(|parent| {
            let rows = if inputs.passes_through(parent) {
                Ok(vec![passthrough(parent)])
            } else if memo.contains(&parent.object) {
                memo.get(&parent.object).and_then(|record| rows_from_memo(parent, &record.expect("contained")))
            } else {
                computed.fetch_add(1, Ordering::Relaxed);
                let detector = detector.as_ref().expect("loaded when anything is computed");
                crop_item(&env.workdir, inputs, detector, parent).and_then(|rows| remember(&memo, parent, rows))
            };
            bar.inc(1);
            rows
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    memo.finish()?;

    let mut rows: Vec<(&Item, CropRow)> =
        parents.iter().zip(per_parent).flat_map(|(p, rows)| rows.into_iter().map(move |r| (*p, r))).collect();
    rows.sort_by(|(pa, a), (pb, b)| (pa.source_index, &a.path).cmp(&(pb.source_index, &b.path)));
    let mut df = manifest(&rows)?;
    let computed = computed.into_inner();
    let reused = (to_detect as u64).saturating_sub(computed);
    let published = parts::publish(env, Stage::Crop, &mut df, fingerprint, computed, reused)?;

    summarise(&mut summary, &parents, &rows, to_detect);
    summary.count("computed", computed).count("reused", reused).count("images decoded", computed);
    if let Some(p) = &env.partition {
        summary.fact("partition", p.describe());
    }
    if let Some(d) = &detector {
        let p = d.params();
        summary.fact("detector", format!("{:?} {}", p.family, inputs.detector.path.display()));
        summary.fact("device", format!("{:?}", d.device));
        summary.fact("scales", format!("{:?} (max_side {})", p.scales, p.max_side));
    }
    summary.fact("manifest", published.display());
    Ok(summary.finish())
}

/// Keeps one image's rows in the memo, keyed by its content: the rows' keys and paths are stored relative to the
/// image's (only the `#faceNNN` suffix), so the same picture under another name reuses them.
fn remember(memo: &Memo, parent: &Item, rows: Vec<CropRow>) -> Result<Vec<CropRow>> {
    let relative: Vec<CropRow> = rows
        .iter()
        .cloned()
        .map(|mut r| {
            r.key = r.key[parent.key.len()..].to_string();
            r.path = r.path[parent.path.len()..].to_string();
            r
        })
        .collect();
    let refs = rows.iter().filter_map(|r| r.object.clone()).collect();
    memo.put(Record { object: parent.object.clone(), refs, payload: serde_json::to_vec(&relative)? })?;
    Ok(rows)
}

fn rows_from_memo(parent: &Item, record: &Record) -> Result<Vec<CropRow>> {
    let relative: Vec<CropRow> = serde_json::from_slice(&record.payload)
        .with_context(|| format!("crop memo entry for {} is unreadable (delete cache/memo/crop)", parent.key))?;
    Ok(relative
        .into_iter()
        .map(|mut r| {
            r.key = format!("{}{}", parent.key, r.key);
            r.path = format!("{}{}", parent.path, r.path);
            r
        })
        .collect())
}

fn load_detector(env: &Env, inputs: &Inputs) -> Result<Detector> {
    let options = SessionOptions { device: env.device, threads: env.threads, optimize: true };
    let path = &inputs.detector.path;
    Detector::load(path, inputs.settings.detector.clone(), &options).with_context(|| {
        format!(
            "crop: cannot load the face detector (models.face_detector = {}; `anime-pipe models` checks it, \
             `anime-pipe models fetch face_detector --from URL_OR_DIR` gets the pinned one)",
            path.display()
        )
    })
}

fn summarise(summary: &mut Summary, parents: &[&Item], rows: &[(&Item, CropRow)], to_detect: usize) {
    let count = |f: &dyn Fn(&CropRow) -> bool| rows.iter().filter(|(_, r)| f(r)).count() as u64;
    let with_faces: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|(_, r)| r.kind == RowKind::Face && r.reason.is_none())
        .map(|(p, _)| p.key.as_str())
        .collect();
    summary
        .count("input images", parents.len() as u64)
        .count("passthrough", (parents.len() - to_detect) as u64)
        .count("images searched", to_detect as u64)
        .count("images with faces", with_faces.len() as u64)
        .count("faces found", count(&|r| r.kind == RowKind::Face))
        .count("crops", count(&|r| r.kind == RowKind::Face && r.reason.is_none()));
    for (_, r) in rows {
        if let Some(reason) = r.reason {
            summary.reject(reason.name());
        }
    }
}

fn passthrough(parent: &Item) -> CropRow {
    CropRow {
        key: parent.key.clone(),
        path: parent.path.clone(),
        kind: RowKind::Passthrough,
        already_cropped: true,
        object: Some(parent.object.clone()),
        size: Some((parent.width, parent.height)),
        measures: parent.measures.clone(),
        ..Default::default()
    }
}

fn image_row(parent: &Item, reason: Reason, error: Option<String>) -> CropRow {
    CropRow {
        key: parent.key.clone(),
        path: parent.path.clone(),
        kind: RowKind::Image,
        reason: Some(reason),
        error,
        ..Default::default()
    }
}

/// Detects, classifies, crops and measures the faces of one image: the per-item function of this stage. A missing
/// cache object is a workdir error (the stage fails); an image that does not decode is a `decode_failed` row.
fn crop_item(workdir: &Workdir, inputs: &Inputs, detector: &Detector, parent: &Item) -> Result<Vec<CropRow>> {
    let image = match cache::load_rgb8(workdir, &parent.object, &inputs.limits)
        .with_context(|| format!("crop: cannot read the image of {}", parent.key))?
    {
        Ok(image) => image,
        Err(e) => return Ok(vec![image_row(parent, Reason::DecodeFailed, Some(e.to_string()))]),
    };
    let detections =
        detector.detect(&image).with_context(|| format!("crop: face detection failed on {}", parent.key))?;
    if detections.is_empty() {
        return Ok(vec![image_row(parent, Reason::NoFace, None)]);
    }
    let c = &inputs.settings;
    let verdicts = classify(&detections, c);
    let (w, h) = image.dimensions();
    let mut rows = Vec::with_capacity(detections.len());
    for (index, (detection, reason)) in detections.iter().zip(verdicts).enumerate() {
        let rect = crop_rect(&detection.bbox, w, h, &c.geometry);
        let suffix = format!("#face{index:03}");
        let mut row = CropRow {
            key: format!("{}{suffix}", parent.key),
            path: format!("{}{suffix}", parent.path),
            kind: RowKind::Face,
            face: Some((index as u32, *detection)),
            rect: Some(rect),
            padded: Some(rect.leaves(w, h)),
            reason,
            ..Default::default()
        };
        if reason.is_none() {
            let crop = extract_crop(&image, &rect, c.geometry.border, c.pad_color);
            row.object = Some(cache::store_object(workdir, &encode_png(&crop)?)?);
            row.size = Some((rect.size, rect.size));
            row.measures = Some(measure(crop));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The verdict for each detection (in rank order): None to crop it, else the reason it is rejected.
pub fn classify(detections: &[Detection], settings: &CropSettings) -> Vec<Option<Reason>> {
    let mut accepted = 0;
    detections
        .iter()
        .map(|d| {
            if d.score < settings.score_threshold {
                Some(Reason::LowScore)
            } else if d.bbox.width().min(d.bbox.height()) < settings.min_face_size as f32 {
                Some(Reason::FaceTooSmall)
            } else if accepted >= settings.max_faces {
                Some(Reason::TooManyFaces)
            } else {
                accepted += 1;
                None
            }
        })
        .collect()
}

fn manifest(rows: &[(&Item, CropRow)]) -> Result<polars::prelude::DataFrame> {
    let n = rows.len();
    let face = |f: &dyn Fn(&Detection) -> f32| -> Vec<Option<f32>> {
        rows.iter().map(|(_, r)| r.face.as_ref().map(|(_, d)| f(d))).collect()
    };
    let parent_str =
        |f: &dyn Fn(&Item) -> &str| -> Vec<String> { rows.iter().map(|(p, _)| f(p).to_string()).collect() };
    let mut columns = vec![
        col("key", rows.iter().map(|(_, r)| r.key.clone()).collect::<Vec<_>>()),
        col("source", parent_str(&|p| &p.source)),
        col("source_index", rows.iter().map(|(p, _)| p.source_index).collect::<Vec<_>>()),
        col("path", rows.iter().map(|(_, r)| r.path.clone()).collect::<Vec<_>>()),
        col("kind", rows.iter().map(|(_, r)| r.kind.name()).collect::<Vec<_>>()),
        col("already_cropped", rows.iter().map(|(_, r)| r.already_cropped).collect::<Vec<_>>()),
        col("parent_key", parent_str(&|p| &p.key)),
        col("parent_object", parent_str(&|p| &p.object)),
        col("parent_width", rows.iter().map(|(p, _)| p.width).collect::<Vec<_>>()),
        col("parent_height", rows.iter().map(|(p, _)| p.height).collect::<Vec<_>>()),
        col("face_index", rows.iter().map(|(_, r)| r.face.as_ref().map(|(i, _)| *i)).collect::<Vec<_>>()),
        col("box_x0", face(&|d| d.bbox.x0)),
        col("box_y0", face(&|d| d.bbox.y0)),
        col("box_x1", face(&|d| d.bbox.x1)),
        col("box_y1", face(&|d| d.bbox.y1)),
        col("score", face(&|d| d.score)),
        col("scale", face(&|d| d.scale)),
        col("crop_x0", rows.iter().map(|(_, r)| r.rect.map(|c| c.x0)).collect::<Vec<_>>()),
        col("crop_y0", rows.iter().map(|(_, r)| r.rect.map(|c| c.y0)).collect::<Vec<_>>()),
        col("crop_size", rows.iter().map(|(_, r)| r.rect.map(|c| c.size)).collect::<Vec<_>>()),
        col("padded", rows.iter().map(|(_, r)| r.padded).collect::<Vec<_>>()),
        col("object", rows.iter().map(|(_, r)| r.object.clone()).collect::<Vec<_>>()),
        col("width", rows.iter().map(|(_, r)| r.size.map(|s| s.0)).collect::<Vec<_>>()),
        col("height", rows.iter().map(|(_, r)| r.size.map(|s| s.1)).collect::<Vec<_>>()),
        status_column(rows.iter().map(|(_, r)| Status::ok_if(r.reason.is_none()))),
        col("reason", rows.iter().map(|(_, r)| r.reason.map(|r| r.name())).collect::<Vec<_>>()),
        col("error", rows.iter().map(|(_, r)| r.error.clone()).collect::<Vec<_>>()),
    ];
    columns.extend(measure_columns(rows.iter().map(|(_, r)| r.measures.as_ref())));
    frame(n, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::faces::geometry::BoxF;

    fn det(side: f32, score: f32) -> Detection {
        Detection { bbox: BoxF::new(0.0, 0.0, side, side), score, scale: 1.0 }
    }

    #[test]
    fn classify_checks_score_then_size_then_count() {
        let yaml = "crop: {score_threshold: 0.5, min_face_size: 40, max_faces: 2}\n";
        let settings = ConfigFile::parse(yaml, "p.yaml".as_ref()).unwrap().resolve("/".as_ref()).unwrap().plan;
        let detections = [det(100.0, 0.99), det(30.0, 0.98), det(80.0, 0.9), det(60.0, 0.8), det(20.0, 0.4)];
        assert_eq!(
            classify(&detections, &settings.crop),
            vec![None, Some(Reason::FaceTooSmall), None, Some(Reason::TooManyFaces), Some(Reason::LowScore)]
        );
    }
}
