//! `anime-pipe stats [--stage S]`: what each manifest holds, as tables on stdout (or, with `--json`, one JSON
//! object `{"stage": "stats", "manifests": {<stage>: {...}}, "seconds": ...}` instead).
//!
//! Per manifest, from whichever of these columns it has: row count; rows by `status`; rejects by `reason`;
//! histograms of `width`, `height` and the shorter side over [`SIZE_BUCKETS`]; rows by `format`; rows by `source`;
//! for dedup, duplicates by `dup_kind`; for pack, accepted samples and shard files per (size, split).
use crate::env::Env;
use crate::manifest::columns;
use crate::manifest::read_stage;
use crate::manifest::Status;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::Stage;
use anyhow::{bail, Result};
use polars::prelude::DataFrame;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Histogram buckets in pixels: (label, lower bound inclusive); each ends where the next begins.
pub const SIZE_BUCKETS: [(&str, u32); 6] =
    [("<64", 0), ("64-127", 64), ("128-255", 128), ("256-511", 256), ("512-1023", 512), (">=1024", 1024)];

/// Statistics of one manifest. Maps are empty (and omitted from JSON) when the manifest lacks the column.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ManifestStats {
    pub rows: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejects: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizes: Option<SizeHistogram>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub formats: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub duplicates: BTreeMap<String, u64>,
    /// pack only: "<size>/<split>" -> samples and shard files.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pack: BTreeMap<String, PackCell>,
}

/// Counts per [`SIZE_BUCKETS`] bucket, in bucket order, of rows with both dimensions.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SizeHistogram {
    pub buckets: Vec<String>,
    pub width: Vec<u64>,
    pub height: Vec<u64>,
    pub short_side: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PackCell {
    pub size: u32,
    pub split: String,
    pub samples: u64,
    pub shards: u64,
}

pub fn run(env: &Env, stage: Option<&str>) -> Result<Summary> {
    let mut summary = Summary::start("stats");
    let stages = stages_to_report(env, stage)?;
    if stages.is_empty() && !env.reporter.json && !env.reporter.quiet {
        println!("no manifests in {} yet: run `anime-pipe ingest` first", env.workdir.manifests_dir().display());
    }
    let mut all = BTreeMap::new();
    for stage in &stages {
        let stats = manifest_stats(stage, &read_stage(&env.workdir, stage)?)?;
        if !env.reporter.json && !env.reporter.quiet {
            print!("{}", render(stage, &stats));
        }
        summary.count(&format!("{stage} rows"), stats.rows);
        all.insert(stage.clone(), stats);
    }
    summary.count("manifests", stages.len() as u64);
    let summary = summary.finish();
    if env.reporter.json {
        let report = serde_json::json!({ "stage": "stats", "manifests": all, "seconds": summary.seconds });
        println!("{report}");
    }
    Ok(summary)
}

/// The requested stage, or every stage manifest present: pipeline stages in pipeline order, then others by name.
fn stages_to_report(env: &Env, stage: Option<&str>) -> Result<Vec<String>> {
    let present: Vec<String> = crate::digest::manifest_names(&env.workdir)?
        .into_iter()
        .map(|n| n.trim_end_matches(".parquet").to_string())
        .collect();
    if let Some(stage) = stage {
        if !present.iter().any(|p| p == stage) {
            let known = if present.is_empty() { "none yet".to_string() } else { present.join(", ") };
            bail!("--stage {stage}: manifests/{stage}.parquet does not exist (manifests present: {known})");
        }
        return Ok(vec![stage.to_string()]);
    }
    let rank = |s: &String| Stage::ALL.iter().position(|a| a.name() == s).unwrap_or(Stage::ALL.len());
    let mut stages = present;
    stages.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    Ok(stages)
}

/// Gathers the statistics of one manifest from the columns it has.
pub fn manifest_stats(stage: &str, df: &DataFrame) -> Result<ManifestStats> {
    let mut stats = ManifestStats { rows: df.height() as u64, ..Default::default() };
    let tally = |name: &str| -> Result<BTreeMap<String, u64>> {
        if !columns::has(df, name) {
            return Ok(BTreeMap::new());
        }
        Ok(count_values(columns::opt_strings(df, name)?.into_iter().flatten()))
    };
    stats.status = tally("status")?;
    stats.rejects = tally("reason")?;
    stats.formats = tally("format")?;
    stats.sources = tally("source")?;
    if stage == "dedup" {
        stats.duplicates = tally("dup_kind")?;
    }
    if columns::has(df, "width") && columns::has(df, "height") {
        stats.sizes = Some(size_histogram(&columns::opt_u32s(df, "width")?, &columns::opt_u32s(df, "height")?));
    }
    if stage == "pack" {
        stats.pack = pack_cells(df)?;
    }
    Ok(stats)
}

fn count_values(values: impl Iterator<Item = String>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
}

/// Index into [`SIZE_BUCKETS`] of a side length.
pub fn bucket(side: u32) -> usize {
    SIZE_BUCKETS.iter().rposition(|&(_, low)| side >= low).expect("first bucket starts at 0")
}

fn size_histogram(widths: &[Option<u32>], heights: &[Option<u32>]) -> SizeHistogram {
    let mut h = SizeHistogram {
        buckets: SIZE_BUCKETS.iter().map(|(label, _)| label.to_string()).collect(),
        width: vec![0; SIZE_BUCKETS.len()],
        height: vec![0; SIZE_BUCKETS.len()],
        short_side: vec![0; SIZE_BUCKETS.len()],
    };
    for (w, ht) in widths.iter().zip(heights) {
        if let (Some(w), Some(ht)) = (*w, *ht) {
            h.width[bucket(w)] += 1;
            h.height[bucket(ht)] += 1;
            h.short_side[bucket(w.min(ht))] += 1;
        }
    }
    h
}

fn pack_cells(df: &DataFrame) -> Result<BTreeMap<String, PackCell>> {
    let (sizes, splits, shards, status) = (
        columns::u32s(df, "size")?,
        columns::strings(df, "split")?,
        columns::opt_strings(df, "shard")?,
        columns::strings(df, "status")?,
    );
    let mut cells: BTreeMap<(u32, String), (u64, BTreeSet<String>)> = BTreeMap::new();
    for i in (0..df.height()).filter(|&i| status[i] == Status::Ok.name()) {
        let cell = cells.entry((sizes[i], splits[i].clone())).or_default();
        cell.0 += 1;
        cell.1.extend(shards[i].clone());
    }
    Ok(cells
        .into_iter()
        .map(|((size, split), (samples, shards))| {
            let cell = PackCell { size, split: split.clone(), samples, shards: shards.len() as u64 };
            (format!("{size}/{split}"), cell)
        })
        .collect())
}

/// Human-readable tables for one manifest.
pub fn render(stage: &str, s: &ManifestStats) -> String {
    let mut out = format!("── {stage}.parquet: {} rows ──\n", s.rows);
    let pairs = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
    out += &table(&["status", "rows"], pairs(&s.status));
    out += &table(&["reject reason", "rows"], pairs(&s.rejects));
    out += &table(&["duplicate kind", "rows"], pairs(&s.duplicates));
    out += &table(&["format", "rows"], pairs(&s.formats));
    out += &table(&["source", "rows"], pairs(&s.sources));
    if let Some(h) = &s.sizes {
        let rows = (0..h.buckets.len())
            .map(|i| {
                vec![h.buckets[i].clone(), h.width[i].to_string(), h.height[i].to_string(), h.short_side[i].to_string()]
            })
            .collect();
        out += &table(&["pixels", "width", "height", "shorter side"], rows);
    }
    let mut cells: Vec<&PackCell> = s.pack.values().collect();
    cells.sort_by(|a, b| (a.size, &a.split).cmp(&(b.size, &b.split))); // numeric, not "128" < "64"
    let pack = cells
        .into_iter()
        .map(|c| vec![c.size.to_string(), c.split.clone(), c.samples.to_string(), c.shards.to_string()])
        .collect();
    out += &table(&["size", "split", "samples", "shards"], pack);
    out
}

/// A plain-text table: numeric columns right-aligned, text columns left-aligned; nothing when there are no rows.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([headers[c].len()]).max().unwrap_or(0))
        .collect();
    // The first column holds labels (a size bucket like "64-127", or a size) even when it looks numeric.
    let numeric: Vec<bool> =
        (0..headers.len()).map(|c| c > 0 && rows.iter().all(|r| r[c].parse::<f64>().is_ok())).collect();
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            text += &if numeric[c] { format!("  {pad}{cell}") } else { format!("  {cell}{pad}") };
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    out += &line(widths.iter().map(|&w| "─".repeat(w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out + "\n"
}
