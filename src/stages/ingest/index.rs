//! The private re-run index, `cache/ingest-index.parquet` (not a manifest: manifests stay byte-identical): each
//! file's outcome keyed by absolute path, size, mtime and ctime (archives: the archive's, for all their entries) and
//! the limits in force, so unchanged files are neither read nor decoded again.
use super::listing::{DirFile, FileStamp};
use super::rows::{Outcome, Row};
use crate::cache;
use crate::imageio::Limits;
use crate::manifest::columns::{self, col, frame};
use crate::manifest::{self, measure_columns, read_measures, Reason};
use crate::named::Named;
use crate::workdir::Workdir;
use anyhow::{bail, Result};
use polars::prelude::DataFrame;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

/// Bumped whenever the meaning of an index row changes, so old indexes are ignored rather than misread.
const INDEX_VERSION: &str = "ingest-index/3";

pub(super) fn limits_tag(limits: &Limits) -> String {
    format!("{}/{}/{}", limits.max_file_bytes, limits.max_pixels, limits.max_archive_bytes)
}

#[derive(Debug, Clone)]
pub(super) struct IndexRow {
    /// Hex of the absolute path of the file or archive.
    pub(super) origin: String,
    pub(super) stamp: FileStamp,
    pub(super) limits: String,
    pub(super) ordinal: u32,
    pub(super) path: String,
    pub(super) path_hex: Option<String>,
    pub(super) out: Outcome,
}

impl IndexRow {
    pub(super) fn file(origin: String, f: &DirFile, out: Outcome) -> Self {
        Self { origin, stamp: f.stamp, limits: String::new(), ordinal: 0, path: String::new(), path_hex: None, out }
    }

    pub(super) fn entry(origin: String, stamp: FileStamp, row: &Row) -> Self {
        let (path, path_hex) = (row.path.clone(), row.path_hex.clone());
        Self { origin, stamp, limits: String::new(), ordinal: row.ordinal, path, path_hex, out: row.out.clone() }
    }

    pub(super) fn row(&self, source_index: u32) -> Row {
        let (path, path_hex) = (self.path.clone(), self.path_hex.clone());
        Row { source_index, path, path_hex, ordinal: self.ordinal, out: self.out.clone() }
    }
}

pub(super) struct Index {
    pub(super) by_origin: HashMap<String, Vec<IndexRow>>,
}

pub(super) fn index_path(workdir: &Workdir) -> PathBuf {
    workdir.root().join("cache/ingest-index.parquet")
}

impl Index {
    /// Loads the rows recorded under the same limits; a missing or unreadable index is simply empty (it is only a
    /// cache).
    pub(super) fn load(workdir: &Workdir, limits_tag: &str) -> Self {
        let path = index_path(workdir);
        let rows = if path.exists() {
            manifest::read_parquet(&path).and_then(|df| index_rows(&df)).unwrap_or_else(|e| {
                tracing::warn!("ignoring the ingest index {}: {e:#}", path.display());
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let mut by_origin: HashMap<String, Vec<IndexRow>> = HashMap::new();
        for row in rows.into_iter().filter(|r| r.limits == limits_tag) {
            by_origin.entry(row.origin.clone()).or_default().push(row);
        }
        Self { by_origin }
    }

    pub(super) fn reuse_file(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Outcome> {
        let row = self.by_origin.get(origin)?.first()?;
        (row.stamp == stamp && object_intact(workdir, &row.out)).then(|| row.out.clone())
    }

    pub(super) fn reuse_archive(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Vec<IndexRow>> {
        let rows = self.by_origin.get(origin)?;
        let fresh = rows.iter().all(|r| r.stamp == stamp && object_intact(workdir, &r.out));
        fresh.then(|| rows.clone())
    }

    pub(super) fn save(workdir: &Workdir, rows: &[IndexRow]) -> Result<()> {
        // Two sources naming the same folder or archive would record it twice.
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&IndexRow> =
            rows.iter().filter(|r| seen.insert((&r.origin, r.ordinal, &r.path, &r.path_hex))).collect();
        let strs = |f: fn(&IndexRow) -> Option<String>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let mut df = frame(
            rows.len(),
            vec![
                col("version", vec![INDEX_VERSION; rows.len()]),
                col("origin", strs(|r| Some(r.origin.clone()))),
                col("size", rows.iter().map(|r| r.stamp.size).collect::<Vec<u64>>()),
                col("mtime_ns", rows.iter().map(|r| r.stamp.mtime_ns).collect::<Vec<i64>>()),
                col("ctime_ns", rows.iter().map(|r| r.stamp.ctime_ns).collect::<Vec<i64>>()),
                col("limits", strs(|r| Some(r.limits.clone()))),
                col("ordinal", rows.iter().map(|r| r.ordinal).collect::<Vec<u32>>()),
                col("path", strs(|r| Some(r.path.clone()))),
                col("path_hex", strs(|r| r.path_hex.clone())),
                col("bytes", rows.iter().map(|r| r.out.bytes).collect::<Vec<Option<u64>>>()),
                col("blake3", strs(|r| r.out.blake3.clone())),
                col("format", strs(|r| r.out.format.clone())),
                col("width", rows.iter().map(|r| r.out.width).collect::<Vec<Option<u32>>>()),
                col("height", rows.iter().map(|r| r.out.height).collect::<Vec<Option<u32>>>()),
                col("color", strs(|r| r.out.color.clone())),
                col("frames", rows.iter().map(|r| r.out.frames).collect::<Vec<Option<u32>>>()),
                col("reason", rows.iter().map(|r| r.out.reason.map(|r| r.name())).collect::<Vec<_>>()),
                col("error", strs(|r| r.out.error.clone())),
            ]
            .into_iter()
            .chain(measure_columns(rows.iter().map(|r| r.out.measures.as_ref())))
            .collect(),
        )?;
        manifest::write_parquet(&index_path(workdir), &mut df)
    }
}

/// An accepted row can be reused only while its cache object is still there, whole.
pub(super) fn object_intact(workdir: &Workdir, out: &Outcome) -> bool {
    if !out.is_ok() {
        return true;
    }
    let (Some(hash), Some(bytes)) = (&out.blake3, out.bytes) else {
        return false;
    };
    cache::is_hash(hash) && fs::metadata(workdir.object_path(hash)).is_ok_and(|m| m.len() == bytes)
}

pub(super) fn index_rows(df: &DataFrame) -> Result<Vec<IndexRow>> {
    let version = columns::strings(df, "version")?;
    if version.iter().any(|v| v != INDEX_VERSION) {
        bail!("written by another version");
    }
    let (origin, limits, path) =
        (columns::strings(df, "origin")?, columns::strings(df, "limits")?, columns::strings(df, "path")?);
    let (size, mtime, ctime) =
        (columns::u64s(df, "size")?, columns::i64s(df, "mtime_ns")?, columns::i64s(df, "ctime_ns")?);
    let ordinal = columns::u32s(df, "ordinal")?;
    let path_hex = columns::opt_strings(df, "path_hex")?;
    let bytes = columns::opt_u64s(df, "bytes")?;
    let (blake3, format, color) =
        (columns::opt_strings(df, "blake3")?, columns::opt_strings(df, "format")?, columns::opt_strings(df, "color")?);
    let (width, height, frames) =
        (columns::opt_u32s(df, "width")?, columns::opt_u32s(df, "height")?, columns::opt_u32s(df, "frames")?);
    let (reason, error) = (columns::opt_strings(df, "reason")?, columns::opt_strings(df, "error")?);
    let reason = reason
        .into_iter()
        .map(|r| r.map(|r| r.parse::<Reason>().map_err(anyhow::Error::msg)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let measures = read_measures(df)?;
    Ok((0..df.height())
        .map(|i| IndexRow {
            origin: origin[i].clone(),
            stamp: FileStamp { size: size[i], mtime_ns: mtime[i], ctime_ns: ctime[i] },
            limits: limits[i].clone(),
            ordinal: ordinal[i],
            path: path[i].clone(),
            path_hex: path_hex[i].clone(),
            out: Outcome {
                bytes: bytes[i],
                blake3: blake3[i].clone(),
                format: format[i].clone(),
                width: width[i],
                height: height[i],
                color: color[i].clone(),
                frames: frames[i],
                reason: reason[i],
                measures: measures[i].clone(),
                error: error[i].clone(),
            },
        })
        .collect())
}
