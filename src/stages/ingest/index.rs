//! The private re-run index, `cache/ingest-index.parquet` (not a manifest: manifests stay byte-identical): each
//! file's outcome keyed by absolute path, size, mtime and ctime (archives: the archive's, for all their entries) and
//! the limits in force, so unchanged files are neither read nor decoded again.
//!
//! A partition writes the outcomes of its own rows to `cache/ingest-index/part-K-of-N.parquet` (nothing another
//! partition writes). Loading reads the whole-run index and every partition's, so the merge (an unpartitioned
//! ingest) reads no file again. Each row records how many rows its origin has in all (`origin_rows`): an archive
//! is reused whole only when the union holds every one of its rows; otherwise it is streamed again and only its
//! entries without an outcome are examined.
//!
//! While a run is under way it saves what it has examined every few thousand files (and after each archive batch)
//! as `cache/ingest-index/progress-<pid>-<start>-<n>.parquet` ([`Checkpoints`]), so a killed ingest re-reads only
//! what it had not finished. A finished whole run replaces all of these files by its index; a finished partition
//! removes its own progress files.
use super::listing::{DirFile, FileStamp};
use super::rows::{outcome_columns, read_outcomes, Outcome, Row};
use super::spill::Spillable;
use crate::cache;
use crate::imageio::Limits;
use crate::manifest::columns::{self, col, frame};
use crate::manifest::{ManifestWriter, RowGroups, ROW_GROUP};
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
    /// Rows of this origin in all partitions together (1 for a directory file).
    pub(super) origin_rows: u32,
    pub(super) out: Outcome,
}

impl IndexRow {
    pub(super) fn file(origin: String, f: &DirFile, out: Outcome) -> Self {
        let (limits, path) = (String::new(), String::new());
        Self { origin, stamp: f.stamp, limits, ordinal: 0, path, path_hex: None, origin_rows: 1, out }
    }

    /// An archive's row; the archive has `origin_rows` rows in all.
    pub(super) fn entry(origin: String, stamp: FileStamp, row: &Row, origin_rows: u32) -> Self {
        let (path, path_hex) = (row.path.clone(), row.path_hex.clone());
        let (limits, ordinal, out) = (String::new(), row.ordinal, row.out.clone());
        Self { origin, stamp, limits, ordinal, path, path_hex, origin_rows, out }
    }

    pub(super) fn row(&self, source_index: u32) -> Row {
        let (path, path_hex) = (self.path.clone(), self.path_hex.clone());
        Row { source_index, path, path_hex, ordinal: self.ordinal, out: self.out.clone() }
    }
}

/// Outcomes of an archive's entries by (ordinal, path, path_hex).
pub(super) type KnownEntries = HashMap<(u32, String, Option<String>), Outcome>;

/// Rows by (origin, stamp): a file's or archive's outcomes as they were when it had that stamp.
pub(super) struct Index {
    by_origin: HashMap<(String, FileStamp), Vec<IndexRow>>,
}

pub(super) fn index_path(workdir: &Workdir) -> PathBuf {
    workdir.root().join("cache/ingest-index.parquet")
}

/// `cache/ingest-index/`: one index per partition.
fn partitions_dir(workdir: &Workdir) -> PathBuf {
    workdir.root().join("cache/ingest-index")
}

impl Index {
    /// Loads the rows recorded under the same limits, from the whole-run index and every partition's; a missing or
    /// unreadable index is simply empty (it is only a cache).
    pub(super) fn load(workdir: &Workdir, limits_tag: &str) -> Self {
        let mut paths = vec![index_path(workdir)];
        if let Ok(entries) = fs::read_dir(partitions_dir(workdir)) {
            let mut parts: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            parts.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
            parts.sort();
            paths.extend(parts);
        }
        paths.retain(|p| p.exists());
        let mut by_origin: HashMap<(String, FileStamp), Vec<IndexRow>> = HashMap::new();
        // The same row may be in the whole-run index and in a partition's (only then is there more than one file).
        let mut seen = (paths.len() > 1).then(std::collections::HashSet::new);
        for path in &paths {
            let rows = index_file_rows(path).unwrap_or_else(|e| {
                tracing::warn!("ignoring the ingest index {}: {e:#}", path.display());
                Vec::new()
            });
            for row in rows.into_iter().filter(|r| r.limits == limits_tag) {
                let identity = || (row.origin.clone(), row.stamp, row.ordinal, row.path.clone(), row.path_hex.clone());
                if seen.as_mut().is_none_or(|seen| seen.insert(identity())) {
                    by_origin.entry((row.origin.clone(), row.stamp)).or_default().push(row);
                }
            }
        }
        Self { by_origin }
    }

    pub(super) fn reuse_file(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Outcome> {
        let row = self.by_origin.get(&(origin.to_string(), stamp))?.first()?;
        object_intact(workdir, &row.out).then(|| row.out.clone())
    }

    /// The outcomes known for entries of the archive as it is now (by ordinal and path), whose objects are intact:
    /// entries an interrupted or partitioned run already examined.
    pub(super) fn archive_entries(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> KnownEntries {
        let rows = self.by_origin.get(&(origin.to_string(), stamp)).map(Vec::as_slice).unwrap_or_default();
        rows.iter()
            .filter(|r| object_intact(workdir, &r.out))
            .map(|r| ((r.ordinal, r.path.clone(), r.path_hex.clone()), r.out.clone()))
            .collect()
    }

    /// Every row of the archive as it was with this stamp, when the index holds all of them, in entry order.
    pub(super) fn reuse_archive(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Vec<IndexRow>> {
        let rows = self.by_origin.get(&(origin.to_string(), stamp))?;
        let complete = rows.iter().all(|r| r.origin_rows as usize == rows.len());
        let fresh = rows.iter().all(|r| object_intact(workdir, &r.out));
        let mut rows = rows.clone();
        rows.sort_by(|a, b| (a.ordinal, &a.path, &a.path_hex).cmp(&(b.ordinal, &b.path, &b.path_hex)));
        (complete && fresh).then_some(rows)
    }

    /// Saves the index of a whole run (and drops the partitions' indexes, which it covers), or of one partition.
    pub(super) fn save(
        workdir: &Workdir,
        rows: impl Iterator<Item = Result<IndexRow>>,
        partition: Option<&str>,
    ) -> Result<()> {
        match partition {
            Some(name) => write_index(&partitions_dir(workdir).join(format!("{name}.parquet")), rows),
            None => {
                write_index(&index_path(workdir), rows)?;
                match fs::remove_dir_all(partitions_dir(workdir)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// The progress files of one run: outcomes saved as they are found, so a killed run loses little.
pub(super) struct Checkpoints {
    dir: PathBuf,
    prefix: String,
    limits: String,
    next: std::sync::atomic::AtomicU64,
}

impl Checkpoints {
    pub(super) fn new(workdir: &Workdir, limits_tag: &str) -> Self {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let prefix = format!("progress-{}-{started}-", std::process::id());
        let next = std::sync::atomic::AtomicU64::new(0);
        Self { dir: partitions_dir(workdir), prefix, limits: limits_tag.to_string(), next }
    }

    /// Saves outcomes found since the last call (atomically, as a new file).
    pub(super) fn save(&self, rows: Vec<IndexRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<IndexRow> = rows.into_iter().map(|r| IndexRow { limits: self.limits.clone(), ..r }).collect();
        rows.sort_by(Spillable::order);
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        write_index(&self.dir.join(format!("{}{n:06}.parquet", self.prefix)), rows.into_iter().map(Ok))
    }

    /// Removes this run's progress files (its final index covers them).
    pub(super) fn clear(&self) -> Result<()> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Ok(()) };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&self.prefix) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Writes index rows (in the index's order) a row group at a time. Two sources naming the same folder or archive
/// record it twice: the repeats, adjacent in that order, are written once.
fn write_index(path: &std::path::Path, rows: impl Iterator<Item = Result<IndexRow>>) -> Result<()> {
    let mut writer = ManifestWriter::create(path)?;
    let mut group: Vec<IndexRow> = Vec::with_capacity(ROW_GROUP);
    let (mut last, mut pushed) = (None, false);
    for row in rows {
        let row = row?;
        let identity = Some((row.origin.clone(), row.ordinal, row.path.clone(), row.path_hex.clone()));
        if identity == last {
            continue;
        }
        last = identity;
        group.push(row);
        if group.len() == ROW_GROUP {
            writer.push(index_frame(&group)?)?;
            group.clear();
            pushed = true;
        }
    }
    if !group.is_empty() || !pushed {
        writer.push(index_frame(&group)?)?;
    }
    writer.finish().map(drop)
}

/// The rows of one index file, a row group at a time.
fn index_file_rows(path: &std::path::Path) -> Result<Vec<IndexRow>> {
    let mut rows = Vec::new();
    for group in RowGroups::open(path)? {
        rows.extend(index_rows(&group?)?);
    }
    Ok(rows)
}

fn index_frame(rows: &[IndexRow]) -> Result<DataFrame> {
    let strs = |f: fn(&IndexRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let head = vec![
        col("version", vec![INDEX_VERSION; rows.len()]),
        col("origin", strs(|r| Some(r.origin.clone()))),
        col("size", rows.iter().map(|r| r.stamp.size).collect::<Vec<u64>>()),
        col("mtime_ns", rows.iter().map(|r| r.stamp.mtime_ns).collect::<Vec<i64>>()),
        col("ctime_ns", rows.iter().map(|r| r.stamp.ctime_ns).collect::<Vec<i64>>()),
        col("limits", strs(|r| Some(r.limits.clone()))),
        col("ordinal", rows.iter().map(|r| r.ordinal).collect::<Vec<u32>>()),
        col("path", strs(|r| Some(r.path.clone()))),
        col("path_hex", strs(|r| r.path_hex.clone())),
        col("origin_rows", rows.iter().map(|r| r.origin_rows).collect::<Vec<u32>>()),
    ];
    frame(rows.len(), head.into_iter().chain(outcome_columns(rows.iter().map(|r| &r.out))).collect())
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
    let (ordinal, origin_rows) = (columns::u32s(df, "ordinal")?, columns::u32s(df, "origin_rows")?);
    let path_hex = columns::opt_strings(df, "path_hex")?;
    let outcomes = read_outcomes(df)?;
    Ok(outcomes
        .into_iter()
        .enumerate()
        .map(|(i, out)| IndexRow {
            origin: origin[i].clone(),
            stamp: FileStamp { size: size[i], mtime_ns: mtime[i], ctime_ns: ctime[i] },
            limits: limits[i].clone(),
            ordinal: ordinal[i],
            path: path[i].clone(),
            path_hex: path_hex[i].clone(),
            origin_rows: origin_rows[i],
            out,
        })
        .collect())
}

/// Index rows spill to disk in the index's own order: by origin, then entry.
impl Spillable for IndexRow {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        (&self.origin, self.ordinal, &self.path, &self.path_hex).cmp(&(
            &other.origin,
            other.ordinal,
            &other.path,
            &other.path_hex,
        ))
    }
    fn to_frame(rows: &[Self]) -> Result<DataFrame> {
        index_frame(rows)
    }
    fn from_frame(df: &DataFrame) -> Result<Vec<Self>> {
        index_rows(df)
    }
}
