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
use super::spill::{Sorted, Spill, Spillable};
use crate::cache;
use crate::imageio::Limits;
use crate::manifest::columns::{self, col, frame};
use crate::manifest::{ManifestWriter, RowGroups};
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

/// The index files' rows recorded under the current limits, read in the index's order as ingest asks for one
/// origin after another: a merge join of the listing with the index, so a re-run holds one origin's rows (a
/// file's, or an archive's entries) instead of every file's outcome. Sources are visited in origin order
/// ([`visit_order`]); asking for an origin before the last one (sources that overlap) reads the index again.
pub(super) struct Index {
    paths: Vec<PathBuf>,
    limits: String,
    rows: Option<std::iter::Peekable<Sorted<IndexRow>>>,
    /// The origin asked for last, and its rows (an archive is asked for twice: whole, then entry by entry).
    last: Option<(String, Vec<IndexRow>)>,
}

pub(super) fn index_path(workdir: &Workdir) -> PathBuf {
    workdir.root().join("cache/ingest-index.parquet")
}

/// `cache/ingest-index/`: one index per partition.
fn partitions_dir(workdir: &Workdir) -> PathBuf {
    workdir.root().join("cache/ingest-index")
}

/// Index files merged as they are; past this many (a killed run's progress files) the rest are sorted through a
/// spill, so the merge holds a bounded number of row groups.
const MERGED_FILES: usize = 8;
/// Rows per row group of an index file: what the merge holds of each file at a time (about 8 MB).
const INDEX_GROUP: usize = 8192;

impl Index {
    /// The rows recorded under the same limits, in the whole-run index and every partition's and progress file; a
    /// missing or unreadable index is simply empty (it is only a cache).
    pub(super) fn load(workdir: &Workdir, limits_tag: &str) -> Self {
        let mut paths = vec![index_path(workdir)];
        if let Ok(entries) = fs::read_dir(partitions_dir(workdir)) {
            let mut parts: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            parts.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
            parts.sort();
            paths.extend(parts);
        }
        paths.retain(|p| p.exists());
        Self { paths, limits: limits_tag.to_string(), rows: None, last: None }
    }

    /// The rows of `origin` (every stamp), reading on from where the last call stopped.
    fn rows_of(&mut self, origin: &str) -> &[IndexRow] {
        if self.last.as_ref().is_some_and(|(last, _)| last.as_str() == origin) {
            return &self.last.as_ref().expect("checked").1;
        }
        if self.rows.is_none() || self.last.as_ref().is_some_and(|(last, _)| last.as_str() > origin) {
            self.rows = Some(merged(&self.paths).peekable());
        }
        let rows = self.rows.as_mut().expect("opened above");
        let mut found: Vec<IndexRow> = Vec::new();
        let mut identities = std::collections::HashSet::new();
        loop {
            let row = match rows.peek() {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!("the ingest index stops being read here: {e:#}");
                    self.rows = Some(Sorted::empty().peekable());
                    break;
                }
                Some(Ok(row)) if row.origin.as_str() > origin => break,
                Some(Ok(_)) => rows.next().expect("peeked").expect("peeked Ok"),
            };
            // The same row may be in the whole-run index and in a partition's: the first file's is kept.
            let identity = (row.stamp, row.ordinal, row.path.clone(), row.path_hex.clone());
            if row.origin == origin && row.limits == self.limits && identities.insert(identity) {
                found.push(row);
            }
        }
        &self.last.insert((origin.to_string(), found)).1
    }

    /// The rows of `origin` as it was with `stamp`.
    fn stamped(&mut self, origin: &str, stamp: FileStamp) -> Vec<&IndexRow> {
        self.rows_of(origin).iter().filter(|r| r.stamp == stamp).collect()
    }

    pub(super) fn reuse_file(&mut self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Outcome> {
        let row = *self.stamped(origin, stamp).first()?;
        object_intact(workdir, &row.out).then(|| row.out.clone())
    }

    /// The outcomes known for entries of the archive as it is now (by ordinal and path), whose objects are intact:
    /// entries an interrupted or partitioned run already examined.
    pub(super) fn archive_entries(&mut self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> KnownEntries {
        self.stamped(origin, stamp)
            .into_iter()
            .filter(|r| object_intact(workdir, &r.out))
            .map(|r| ((r.ordinal, r.path.clone(), r.path_hex.clone()), r.out.clone()))
            .collect()
    }

    /// Every row of the archive as it was with this stamp, when the index holds all of them, in entry order.
    pub(super) fn reuse_archive(&mut self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Vec<IndexRow>> {
        let rows = self.stamped(origin, stamp);
        let complete = !rows.is_empty() && rows.iter().all(|r| r.origin_rows as usize == rows.len());
        let fresh = rows.iter().all(|r| object_intact(workdir, &r.out));
        // In the index's order, which is entry order within one origin.
        (complete && fresh).then(|| rows.into_iter().cloned().collect())
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
    let mut writer = ManifestWriter::with_row_group(path, INDEX_GROUP)?;
    let mut group: Vec<IndexRow> = Vec::with_capacity(INDEX_GROUP);
    let (mut last, mut pushed) = (None, false);
    for row in rows {
        let row = row?;
        let identity = Some((row.origin.clone(), row.ordinal, row.path.clone(), row.path_hex.clone()));
        if identity == last {
            continue;
        }
        last = identity;
        group.push(row);
        if group.len() == INDEX_GROUP {
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

/// Every row of the index files, in the index's order. Files that are in order (checked on their key columns
/// first, which is cheap beside their measures) are merged as they are, up to [`MERGED_FILES`]; the others, and
/// files of older versions that wrote in listing order, are sorted through a spill. Unreadable files are skipped.
fn merged(paths: &[PathBuf]) -> Sorted<IndexRow> {
    let mut direct = Vec::new();
    let mut spill = Spill::new("ingest-old-index");
    for path in paths {
        let result = match in_index_order(path) {
            Ok(true) if direct.len() < MERGED_FILES => {
                direct.push(path.clone());
                Ok(())
            }
            Ok(_) => spill_file(path, &mut spill),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!("ignoring the ingest index {}: {e:#}", path.display());
        }
    }
    spill.sorted_with(&direct).unwrap_or_else(|e| {
        tracing::warn!("ignoring the ingest index: {e:#}");
        Sorted::empty()
    })
}

/// Whether the file's rows are in the index's order (and of this version).
fn in_index_order(path: &std::path::Path) -> Result<bool> {
    let mut previous: Option<(String, u32, String, Option<String>)> = None;
    for group in RowGroups::open(path)?.with_columns(&["version", "origin", "ordinal", "path", "path_hex"]) {
        let group = group?;
        if columns::strings(&group, "version")?.iter().any(|v| v != INDEX_VERSION) {
            bail!("written by another version");
        }
        let (origin, ordinal) = (columns::strings(&group, "origin")?, columns::u32s(&group, "ordinal")?);
        let (path, path_hex) = (columns::strings(&group, "path")?, columns::opt_strings(&group, "path_hex")?);
        for key in origin.into_iter().zip(ordinal).zip(path).zip(path_hex).map(|(((o, n), p), h)| (o, n, p, h)) {
            if previous.as_ref().is_some_and(|p| *p > key) {
                return Ok(false);
            }
            previous = Some(key);
        }
    }
    Ok(true)
}

fn spill_file(path: &std::path::Path, spill: &mut Spill<IndexRow>) -> Result<()> {
    for group in RowGroups::open(path)? {
        for row in index_rows(&group?)? {
            spill.push(row)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Reason;

    const STAMP: FileStamp = FileStamp { size: 1, mtime_ns: 2, ctime_ns: 3 };

    /// A rejected row (its reuse needs no cache object) whose error names the file it was written to.
    fn entry(origin: &str, ordinal: u32, origin_rows: u32, file: &str) -> IndexRow {
        let (path, limits, out) = (format!("e{ordinal}"), "L".to_string(), Outcome::rejected(Reason::NotAnImage, file));
        IndexRow { origin: origin.into(), stamp: STAMP, limits, ordinal, path, path_hex: None, origin_rows, out }
    }

    #[test]
    fn the_index_is_read_as_a_merge_join_in_whatever_order_origins_are_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let workdir = Workdir::open(dir.path()).unwrap();
        let rows = |rows: Vec<IndexRow>| rows.into_iter().map(Ok);
        let whole = vec![entry("a", 0, 2, "whole"), entry("a", 1, 2, "whole"), entry("c", 0, 1, "whole")];
        write_index(&index_path(&workdir), rows(whole)).unwrap();
        let parts = partitions_dir(&workdir);
        fs::create_dir_all(&parts).unwrap();
        // A partition's index repeats c (the whole run's row is kept) and adds d.
        let part = vec![entry("c", 0, 1, "part"), entry("d", 0, 1, "part")];
        write_index(&parts.join("part-0000-of-0002.parquet"), rows(part)).unwrap();
        // Out of the index's order, as older versions wrote progress files: sorted through a spill. Its g was
        // recorded under other limits.
        let mut old = ManifestWriter::create(&parts.join("progress-1-2-000000.parquet")).unwrap();
        let other_limits = IndexRow { limits: "M".into(), ..entry("g", 0, 1, "old") };
        old.push(index_frame(&[entry("f", 0, 1, "old"), entry("b", 0, 1, "old"), other_limits]).unwrap()).unwrap();
        old.finish().unwrap();

        let mut index = Index::load(&workdir, "L");
        let mut file = |origin: &str| index.reuse_file(origin, STAMP, &workdir).and_then(|o| o.error);
        let ascending: Vec<Option<String>> = ["a", "b", "bb", "c", "d", "f", "g"].map(&mut file).into();
        let expected = [Some("whole"), Some("old"), None, Some("whole"), Some("part"), Some("old"), None];
        assert_eq!(ascending, expected.map(|e| e.map(String::from)));
        // Asked again, and backwards (sources that overlap): read again from the start.
        assert_eq!(file("b").as_deref(), Some("old"));
        assert_eq!(file("a").as_deref(), Some("whole"));
        let archive = index.reuse_archive("a", STAMP, &workdir).expect("both rows of a: complete");
        assert_eq!(archive.iter().map(|r| r.ordinal).collect::<Vec<_>>(), [0, 1]);
        let changed = FileStamp { size: 9, ..STAMP };
        assert!(index.reuse_file("c", changed, &workdir).is_none(), "another stamp: changed since");
    }
}
