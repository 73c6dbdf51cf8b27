//! Parquet manifests (polars): atomic publication, reading, and the stamp that lets `run` skip up-to-date stages.
//!
//! Publication order matters for crash safety: shards/objects first, then the manifest (temp + rename), then the
//! stamp. A run killed at any point either leaves the previous manifest or a new manifest without a matching stamp,
//! which `run` treats as stale and recomputes.
pub mod columns;
mod item;
mod status;
mod stream;

pub use item::{item_batches, measure_columns, read_items, read_measures, Item, ItemBatches, MEASURE_COLUMNS};
pub use status::{status_column, Reason, Status};
pub use stream::{row_group_ranges, ManifestWriter, RowGroups, ROW_GROUP};

use crate::workdir::{atomic_write, Workdir};
use anyhow::{Context, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::Path;

/// Writes `df` as Parquet at `path`, atomically, in [`ROW_GROUP`]-row groups. Rows must already be in their
/// canonical (deterministic) order.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let mut writer = ManifestWriter::create(path)?;
    writer.push(df.clone())?;
    writer.finish()?;
    Ok(())
}

pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ParquetReader::new(file).finish().map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// Reads a stage's manifest, with a hint naming the stage to run when it is missing.
pub fn read_stage(workdir: &Workdir, stage: &str) -> Result<DataFrame> {
    let path = workdir.manifest_path(stage);
    if !path.exists() {
        anyhow::bail!("{} does not exist: run `anime-pipe {stage}` first (or `anime-pipe run`)", path.display());
    }
    read_parquet(&path)
}

/// A stage's upstream manifest, named by stage and pinned by the blake3 of its bytes: part of the downstream
/// stage's inputs (so its fingerprint changes whenever the upstream's rows do), and checked again when read, so a
/// stage never works on rows other than those its fingerprint describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub stage: String,
    pub blake3: String,
}

impl Upstream {
    /// The current `manifests/<stage>.parquet`; `reader` names the stage that needs it in the error.
    pub fn of(workdir: &Workdir, stage: &str, reader: &str) -> Result<Self> {
        let path = workdir.manifest_path(stage);
        let blake3 = file_blake3(&path).with_context(|| {
            format!("{reader} needs manifests/{stage}.parquet: run `anime-pipe {stage}` first (or `anime-pipe run`)")
        })?;
        Ok(Self { stage: stage.to_string(), blake3 })
    }
}

/// The record, written after a stage's manifest, of what that manifest was computed from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stamp {
    /// blake3 over the stage's inputs (upstream manifest bytes, settings, source fingerprints).
    pub inputs: String,
    /// blake3 of the manifest file this stamp vouches for.
    pub manifest: String,
}

pub fn file_blake3(path: &Path) -> Result<String> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    reader_blake3(file).with_context(|| format!("cannot hash {}", path.display()))
}

/// blake3 hex of everything `reader` yields. Read, not memory-mapped: a mapped manifest's pages would count in the
/// process's resident memory (a million-row manifest is ~700 MB), though the stage itself never holds them.
fn reader_blake3(reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(reader)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Publishes `df` as the stage's manifest, then its stamp.
pub fn publish_stage(workdir: &Workdir, stage: &str, df: &mut DataFrame, inputs: &str) -> Result<()> {
    let mut writer = ManifestWriter::create(&workdir.manifest_path(stage))?;
    writer.push(df.clone())?;
    publish_written(workdir, stage, writer, inputs).map(drop)
}

/// Finishes `writer` (opened on the stage's manifest path) and stamps it; returns its row count.
pub fn publish_written(workdir: &Workdir, stage: &str, writer: ManifestWriter, inputs: &str) -> Result<usize> {
    let rows = writer.finish()?;
    let stamp = Stamp { inputs: inputs.to_string(), manifest: file_blake3(&workdir.manifest_path(stage))? };
    atomic_write(&workdir.stamp_path(stage), serde_json::to_string_pretty(&stamp)?.as_bytes())?;
    Ok(rows)
}

/// True when the stage's manifest exists, is the one its stamp vouches for, and was computed from `inputs`.
pub fn is_up_to_date(workdir: &Workdir, stage: &str, inputs: &str) -> bool {
    let (path, stamp_path) = (workdir.manifest_path(stage), workdir.stamp_path(stage));
    let Ok(text) = std::fs::read_to_string(stamp_path) else {
        return false;
    };
    let Ok(stamp) = serde_json::from_str::<Stamp>(&text) else {
        return false;
    };
    stamp.inputs == inputs && file_blake3(&path).is_ok_and(|h| h == stamp.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_round_trip_is_byte_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let mut df = df!("a" => [1u32, 2, 3], "b" => ["x", "y", "z"]).unwrap();
        let (p1, p2) = (dir.path().join("1.parquet"), dir.path().join("2.parquet"));
        write_parquet(&p1, &mut df).unwrap();
        write_parquet(&p2, &mut df.clone()).unwrap();
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        assert!(read_parquet(&p1).unwrap().equals(&df));
    }

    #[test]
    fn stamp_detects_changed_inputs_and_tampered_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let mut df = df!("a" => [1u32]).unwrap();
        publish_stage(&wd, "ingest", &mut df, "in1").unwrap();
        assert!(is_up_to_date(&wd, "ingest", "in1"));
        assert!(!is_up_to_date(&wd, "ingest", "in2"));
        write_parquet(&wd.manifest_path("ingest"), &mut df!("a" => [2u32]).unwrap()).unwrap();
        assert!(!is_up_to_date(&wd, "ingest", "in1"));
    }
}
