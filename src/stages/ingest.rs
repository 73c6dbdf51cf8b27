//! `anime-pipe ingest`: every file of every source becomes one row of `manifests/ingest.parquet`; every valid
//! image is stored once in the content-addressed cache, so later stages never read the sources again.
//!
//! Sources (pipeline.yaml `sources:` or `--source PATH`) are directories (walked recursively, following symlinks,
//! with loop detection) or archives: `.zip`, `.tar`, `.tar.gz`/`.tgz`, recognised by content (zip/gzip/ustar
//! magic; the extension is only a fallback for old v7 tars and to call unrecognised bytes a `corrupt_archive`).
//! Archives are read sequentially, never extracted to disk; their entries are validated in parallel batches of at
//! most 64 MiB, so memory stays bounded whatever the archive size. Inside a directory source, the workdir's own
//! `cache/`, `manifests/`, `shards/` and `runs/` are skipped.
//!
//! Each file is read once, hashed (blake3) and fully decoded by [`imageio::inspect`] (see `imageio` for the
//! format/colour/animation policy and the decode reasons). Bad input never stops the run: it becomes a row with
//! `status` "rejected" and a `reason`. Only bad config (a missing source, a source that is neither a directory nor
//! an archive) and an unwritable workdir are errors.
//!
//! ## ingest.parquet (one row per file or archive entry; sorted by source_index, path, path_hex, entry order)
//! | column | type | meaning |
//! |---|---|---|
//! | key | str | `<source>/<path>`; unique: a repeated name (e.g. twice in one zip) gets `#2`, `#3`, ... |
//! | source | str | source name from pipeline.yaml |
//! | source_index | u32 | position of the source in pipeline.yaml |
//! | path | str | '/'-separated path inside the source, lossy UTF-8 (*); "" for a row about an archive itself |
//! | path_hex | str? | the raw name bytes in hex when they are not UTF-8 (null otherwise), so nothing is lost |
//! | already_cropped | bool | the source's `already_cropped` flag |
//! | bytes | u64? | file size (null when it could not be determined) |
//! | blake3 | str? | blake3 hex of the file bytes (null when the file was not read) |
//! | object | str? | cache object holding the bytes (= blake3) for accepted rows, null otherwise |
//! | format | str? | by content: jpeg, png, gif, webp, bmp, tiff, or an unsupported one (avif, heic, svg, psd, ...) |
//! | width, height | u32? | upright image size (accepted rows) |
//! | color | str? | original colour type (rgb8, rgba8, l8, la8, rgb16, rgba16, l16, cmyk8, palette, ...) |
//! | frames | u32? | frames in the file (animations: the first is used) |
//! | status | str | "ok" or "rejected" |
//! | reason | str? | null when ok, else one of the reasons below |
//! | error | str? | human-readable detail for rejected rows |
//!
//! (*) Zip names without the UTF-8 flag are decoded as CP437 (the zip spec's default); `path_hex` keeps the bytes.
//!
//! Reasons: from decoding (`empty_file`, `too_large`, `not_an_image`, `unsupported_format`, `decompression_bomb`,
//! `truncated`, `corrupt`), from the file system (`unreadable`: permission/IO error or broken symlink;
//! `symlink_loop`; `not_a_file`: FIFO, socket, device, or a symlink/link entry inside an archive), from archives
//! (`unsafe_archive_path`: absolute, drive-letter, NUL or `..` entry names, never extracted;
//! `archive_budget_exceeded`: the archive's total uncompressed bytes passed `limits.max_archive_bytes` (a zip
//! lists every entry past the budget; a tar stops there and adds one row for the archive, since a tar can only be
//! listed by decompressing it); `too_large` also applies to entries by declared and by actual size;
//! `corrupt_archive`: the archive (row with path "") cannot be read, or a tar breaks off part way).
//!
//! ## Re-runs
//! A private index, `cache/ingest-index.parquet` (not a manifest: manifests stay byte-identical), remembers each
//! file's outcome keyed by absolute path, size, mtime and ctime (archives: the archive's path, size, mtime and
//! ctime, for all their entries at once) and the limits in force. Unchanged files are neither read nor decoded
//! again; the summary's `decoded` and `reused` counts show it. Like make and git, this trusts mtime/ctime: a file
//! rewritten with the same size within the file system's timestamp granularity would be missed (deleting
//! `cache/ingest-index.parquet` makes the next run re-read everything).
use crate::cache;
use crate::imageio;
use crate::imageio::Limits;
use crate::manifest;
use crate::manifest::columns::{self, col, frame};
use crate::report::Summary;
use crate::stages::Ctx;
use crate::workdir::Workdir;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use polars::prelude::{DataFrame, DataType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One entry of `sources:` (or `--source PATH`), resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
    pub already_cropped: bool,
}

const STAGE: &str = "ingest";
/// Bumped whenever the meaning of an index row changes, so old indexes are ignored rather than misread.
const INDEX_VERSION: &str = "ingest-index/1";
/// Archive entries are validated in parallel batches of at most this many bytes / entries.
const BATCH_BYTES: usize = 64 << 20;
const BATCH_ENTRIES: usize = 2048;

pub fn fingerprint(ctx: &Ctx) -> Result<String> {
    let listings = list_sources(ctx)?;
    Ok(fingerprint_of(ctx, &listings))
}

pub fn run(ctx: &Ctx) -> Result<Summary> {
    let mut summary = Summary::start(STAGE);
    let spinner = ctx.env.reporter.spinner("scan");
    let listings = list_sources(ctx)?;
    spinner.finish_and_clear();
    let inputs = fingerprint_of(ctx, &listings);
    let limits_tag = limits_tag(&ctx.plan.limits);
    let index = Index::load(&ctx.env.workdir, &limits_tag);
    let stats = Stats::new(&ctx.env.workdir);
    let mut new_index = Vec::new();
    let mut rows = Vec::new();
    for (i, (source, listing)) in ctx.plan.sources.iter().zip(listings).enumerate() {
        let source_index = i as u32;
        let found = match listing {
            Listing::Dir(dir) => ingest_dir(ctx, source, source_index, dir, &index, &mut new_index, &stats)?,
            Listing::Archive(a) => ingest_archive(ctx, source, source_index, &a, &index, &mut new_index, &stats)?,
        };
        rows.extend(found);
    }
    stats.new_objects.store(stats.writer.finish()?, Ordering::Relaxed);
    cache::sync_objects(&ctx.env.workdir)?;
    for entry in &mut new_index {
        entry.limits.clone_from(&limits_tag);
    }
    Index::save(&ctx.env.workdir, &new_index)?;
    sort_canonically(&mut rows);
    let mut df = manifest_frame(&ctx.plan.sources, &rows)?;
    manifest::publish_stage(&ctx.env.workdir, STAGE, &mut df, &inputs)?;
    summarize(&mut summary, ctx, &rows, &stats);
    Ok(summary.finish())
}

// ---------------------------------------------------------------------------------------------------------------
// Rows

/// What ingest learned about one file.
#[derive(Debug, Clone, Default, PartialEq)]
struct Outcome {
    bytes: Option<u64>,
    blake3: Option<String>,
    format: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    color: Option<String>,
    frames: Option<u32>,
    /// None when accepted.
    reason: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn rejected(reason: &str, error: impl Into<String>) -> Self {
        Self { reason: Some(reason.to_string()), error: Some(error.into()), ..Self::default() }
    }
    fn with_bytes(mut self, bytes: Option<u64>) -> Self {
        self.bytes = bytes;
        self
    }
    fn is_ok(&self) -> bool {
        self.reason.is_none()
    }
}

/// One manifest row before keys are assigned.
#[derive(Debug, Clone)]
struct Row {
    source_index: u32,
    path: String,
    path_hex: Option<String>,
    /// Position inside an archive (0 for directory files): orders entries that share a name.
    ordinal: u32,
    out: Outcome,
}

impl Row {
    fn new(source_index: u32, raw_path: &[u8], ordinal: u32, out: Outcome) -> Self {
        let (path, path_hex) = path_identity(raw_path, None);
        Self { source_index, path, path_hex, ordinal, out }
    }
}

/// Lossy UTF-8 path plus the raw bytes in hex when they are not UTF-8 (`decoded` is a better rendering of
/// non-UTF-8 bytes when the container says how they are encoded, e.g. CP437 zip names).
fn path_identity(raw: &[u8], decoded: Option<String>) -> (String, Option<String>) {
    match std::str::from_utf8(raw) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (decoded.unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned()), Some(hex(raw))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical row order: (source_index, path, path_hex, entry order) — independent of listing order and threads.
fn sort_canonically(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        (a.source_index, &a.path, &a.path_hex, a.ordinal).cmp(&(b.source_index, &b.path, &b.path_hex, b.ordinal))
    });
}

/// `<source>/<path>`, made unique with `#2`, `#3`, ... in canonical order for repeated names (a zip may hold the
/// same entry name twice; distinct non-UTF-8 names may be equal once made lossy). Natural keys are reserved first,
/// so a file really named `a.jpg#2` keeps its key.
fn assign_keys(sources: &[Source], rows: &[Row]) -> Vec<String> {
    let base: Vec<String> =
        rows.iter().map(|r| format!("{}/{}", sources[r.source_index as usize].name, r.path)).collect();
    let mut used = BTreeSet::new();
    let mut keys: Vec<Option<String>> = base.iter().map(|b| used.insert(b.clone()).then(|| b.clone())).collect();
    for (key, base) in keys.iter_mut().zip(&base).filter(|(k, _)| k.is_none()) {
        let mut n = 2;
        while !used.insert(format!("{base}#{n}")) {
            n += 1;
        }
        *key = Some(format!("{base}#{n}"));
    }
    keys.into_iter().map(|k| k.expect("every key assigned")).collect()
}

fn manifest_frame(sources: &[Source], rows: &[Row]) -> Result<DataFrame> {
    let keys = assign_keys(sources, rows);
    let pick = |f: fn(&Row) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let names: Vec<String> = rows.iter().map(|r| sources[r.source_index as usize].name.clone()).collect();
    let cropped: Vec<bool> = rows.iter().map(|r| sources[r.source_index as usize].already_cropped).collect();
    let status: Vec<&str> = rows.iter().map(|r| if r.out.is_ok() { "ok" } else { "rejected" }).collect();
    let object = pick(|r| r.out.blake3.clone().filter(|_| r.out.is_ok()));
    frame(
        rows.len(),
        vec![
            col("key", keys),
            col("source", names),
            col("source_index", rows.iter().map(|r| r.source_index).collect::<Vec<u32>>()),
            col("path", rows.iter().map(|r| r.path.clone()).collect::<Vec<_>>()),
            col("path_hex", pick(|r| r.path_hex.clone())),
            col("already_cropped", cropped),
            col("bytes", rows.iter().map(|r| r.out.bytes).collect::<Vec<Option<u64>>>()),
            col("blake3", pick(|r| r.out.blake3.clone())),
            col("object", object),
            col("format", pick(|r| r.out.format.clone())),
            col("width", rows.iter().map(|r| r.out.width).collect::<Vec<Option<u32>>>()),
            col("height", rows.iter().map(|r| r.out.height).collect::<Vec<Option<u32>>>()),
            col("color", pick(|r| r.out.color.clone())),
            col("frames", rows.iter().map(|r| r.out.frames).collect::<Vec<Option<u32>>>()),
            col("status", status),
            col("reason", pick(|r| r.out.reason.clone())),
            col("error", pick(|r| r.out.error.clone())),
        ],
    )
}

struct Stats {
    decoded: AtomicU64,
    reused: AtomicU64,
    new_objects: AtomicU64,
    writer: cache::ObjectWriter,
}

/// Background threads storing cache objects: file creation is latency-bound, so more writers than cores pay off.
const OBJECT_WRITERS: usize = 8;

impl Stats {
    fn new(workdir: &Workdir) -> Stats {
        Stats {
            decoded: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            new_objects: AtomicU64::new(0),
            writer: cache::ObjectWriter::new(workdir, OBJECT_WRITERS),
        }
    }
}

fn summarize(summary: &mut Summary, ctx: &Ctx, rows: &[Row], stats: &Stats) {
    let accepted = rows.iter().filter(|r| r.out.is_ok()).count() as u64;
    let unique: BTreeSet<&str> =
        rows.iter().filter(|r| r.out.is_ok()).filter_map(|r| r.out.blake3.as_deref()).collect();
    summary
        .count("sources", ctx.plan.sources.len() as u64)
        .count("files", rows.len() as u64)
        .count("accepted", accepted)
        .count("rejected", rows.len() as u64 - accepted)
        .count("unique images", unique.len() as u64)
        .count("decoded", stats.decoded.load(Ordering::Relaxed))
        .count("reused", stats.reused.load(Ordering::Relaxed))
        .count("new objects", stats.new_objects.load(Ordering::Relaxed));
    for reason in rows.iter().filter_map(|r| r.out.reason.as_deref()) {
        summary.reject(reason);
    }
    summary.fact("manifest", ctx.env.workdir.manifest_path(STAGE).display());
}

// ---------------------------------------------------------------------------------------------------------------
// Examining bytes

/// Hashes and validates one file's bytes; stores accepted ones in the cache. Errors only when the cache cannot be
/// written (the workdir's fault, not the input's).
fn examine(bytes: &[u8], ctx: &Ctx, stats: &Stats) -> Result<Outcome> {
    stats.decoded.fetch_add(1, Ordering::Relaxed);
    let hash = blake3::hash(bytes).to_hex().to_string();
    let size = Some(bytes.len() as u64);
    let out = match imageio::inspect(bytes, &ctx.plan.limits) {
        Ok(info) => {
            stats.writer.store(hash.clone(), bytes.to_vec())?;
            Outcome {
                bytes: size,
                blake3: Some(hash),
                format: Some(info.format.to_string()),
                width: Some(info.width),
                height: Some(info.height),
                color: Some(info.color),
                frames: Some(info.frames),
                reason: None,
                error: None,
            }
        }
        Err(e) => {
            let format = imageio::sniff_format(bytes).or_else(|| imageio::sniff_unsupported(bytes));
            let detail = match looks_like_archive(bytes) {
                true if e.reason == "not_an_image" => {
                    "an archive inside a source is not opened: list it under `sources:` to ingest its entries".into()
                }
                _ => e.detail,
            };
            Outcome {
                bytes: size,
                blake3: Some(hash),
                format: format.map(str::to_string),
                ..Outcome::rejected(e.reason, detail)
            }
        }
    };
    Ok(out)
}

fn looks_like_archive(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(&[0x1F, 0x8B]) || b.get(257..262) == Some(b"ustar")
}

// ---------------------------------------------------------------------------------------------------------------
// Listing sources

enum Listing {
    Dir(DirListing),
    Archive(ArchiveFile),
}

struct DirListing {
    root: PathBuf,
    /// Sorted by `rel`.
    files: Vec<DirFile>,
    /// Symlink loops, unreadable entries, special files: rows already decided at listing time.
    problems: Vec<(Vec<u8>, Outcome)>,
}

struct DirFile {
    rel: Vec<u8>,
    abs: PathBuf,
    stamp: FileStamp,
}

/// What decides whether a file changed since the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let ctime_ns = {
            use std::os::unix::fs::MetadataExt;
            meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec())
        };
        #[cfg(not(unix))]
        let ctime_ns = 0;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_nanos() as i64);
        Self { size: meta.len(), mtime_ns, ctime_ns }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Zip,
    Tar,
    TarGz,
}

struct ArchiveFile {
    path: PathBuf,
    stamp: FileStamp,
    /// The archive kind, or the rejection of the whole archive (unreadable, unrecognised content).
    kind: Result<ArchiveKind, (&'static str, String)>,
}

fn list_sources(ctx: &Ctx) -> Result<Vec<Listing>> {
    if ctx.plan.sources.is_empty() {
        bail!("no sources to ingest: add a `sources:` list to pipeline.yaml, or pass `--source PATH` (repeatable)");
    }
    let skip = workdir_dirs(&ctx.env.workdir);
    ctx.plan.sources.iter().map(|s| list_source(s, &skip)).collect()
}

fn list_source(source: &Source, skip: &[PathBuf]) -> Result<Listing> {
    let meta = fs::metadata(&source.path).with_context(|| {
        format!(
            "source {:?}: cannot read {} (check sources[].path in pipeline.yaml)",
            source.name,
            source.path.display()
        )
    })?;
    if meta.is_dir() {
        return Ok(Listing::Dir(list_dir(&source.path, skip)));
    }
    if !meta.is_file() {
        bail!("source {:?}: {} is neither a directory nor an archive file", source.name, source.path.display());
    }
    let kind = archive_kind(&source.path);
    if let Err(("not_an_archive", _)) = kind {
        bail!(
            "source {:?}: {} is neither a directory nor a .zip/.tar/.tar.gz/.tgz archive",
            source.name,
            source.path.display()
        );
    }
    Ok(Listing::Archive(ArchiveFile { path: source.path.clone(), stamp: FileStamp::of(&meta), kind }))
}

/// By content first; the name only rescues magic-less v7 tars and names a broken archive.
fn archive_kind(path: &Path) -> Result<ArchiveKind, (&'static str, String)> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| ("unreadable", format!("cannot read the archive: {e}")))?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(ArchiveKind::Zip);
    }
    if head.starts_with(&[0x1F, 0x8B]) {
        return Ok(ArchiveKind::TarGz);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Ok(ArchiveKind::Tar);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".tar") && head.len() == 512 {
        return Ok(ArchiveKind::Tar);
    }
    if [".zip", ".tar", ".tgz", ".gz"].iter().any(|ext| name.ends_with(ext)) {
        return Err(("corrupt_archive", "not a zip, tar or gzip archive (unrecognised content)".into()));
    }
    Err(("not_an_archive", String::new()))
}

/// The workdir's own directories, never ingested when a source contains the workdir.
fn workdir_dirs(workdir: &Workdir) -> Vec<PathBuf> {
    ["cache", "manifests", "shards", "runs"].iter().filter_map(|d| workdir.root().join(d).canonicalize().ok()).collect()
}

fn list_dir(root: &Path, skip: &[PathBuf]) -> DirListing {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let walker = walkdir::WalkDir::new(root).follow_links(true).min_depth(1).into_iter().filter_entry(|e| {
        !(e.file_type().is_dir() && !skip.is_empty() && e.path().canonicalize().is_ok_and(|p| skip.contains(&p)))
    });
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) => {
                let rel = rel_bytes(root, e.path());
                if !e.file_type().is_file() {
                    problems
                        .push((rel, Outcome::rejected("not_a_file", "not a regular file (FIFO, socket or device)")));
                    continue;
                }
                match e.metadata() {
                    Ok(meta) => files.push(DirFile { rel, abs: e.path().to_path_buf(), stamp: FileStamp::of(&meta) }),
                    Err(err) => problems.push((rel, Outcome::rejected("unreadable", err.to_string()))),
                }
            }
            Err(err) => {
                let path = err.path().unwrap_or(root);
                let rel = rel_bytes(root, path);
                let out = match err.loop_ancestor() {
                    Some(ancestor) => Outcome::rejected(
                        "symlink_loop",
                        format!(
                            "symlink back to its ancestor {:?}",
                            String::from_utf8_lossy(&rel_bytes(root, ancestor))
                        ),
                    ),
                    None if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
                        && fs::metadata(path).is_err() =>
                    {
                        Outcome::rejected("unreadable", format!("broken symlink: {err}"))
                    }
                    None => Outcome::rejected("unreadable", err.to_string()),
                };
                problems.push((rel, out));
            }
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    DirListing { root: root.to_path_buf(), files, problems }
}

/// The path of `path` inside `root`, '/'-separated, as raw bytes (non-UTF-8 names survive).
fn rel_bytes(root: &Path, path: &Path) -> Vec<u8> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<Vec<u8>> = rel.components().map(|c| os_bytes(c.as_os_str())).collect();
    parts.join(&b'/')
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().as_bytes().to_vec()
}

fn limits_tag(limits: &Limits) -> String {
    format!("{}/{}/{}", limits.max_file_bytes, limits.max_pixels, limits.max_archive_bytes)
}

/// blake3 over the settings that shape the manifest and the state of every source (file listing with sizes and
/// timestamps; archives by size and timestamps), with every field length-prefixed.
fn fingerprint_of(ctx: &Ctx, listings: &[Listing]) -> String {
    let mut h = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"anime-pipe ingest/1");
    field(limits_tag(&ctx.plan.limits).as_bytes());
    for (i, (source, listing)) in ctx.plan.sources.iter().zip(listings).enumerate() {
        field(format!("source {i} {} cropped={}", source.name, source.already_cropped).as_bytes());
        field(&os_bytes(source.path.as_os_str()));
        match listing {
            Listing::Dir(d) => {
                for f in &d.files {
                    field(&f.rel);
                    field(&stamp_bytes(&f.stamp));
                }
                for (rel, out) in &d.problems {
                    field(rel);
                    field(out.reason.as_deref().unwrap_or_default().as_bytes());
                }
            }
            Listing::Archive(a) => {
                field(&stamp_bytes(&a.stamp));
                field(format!("{:?}", a.kind).as_bytes());
            }
        }
    }
    h.finalize().to_hex().to_string()
}

fn stamp_bytes(s: &FileStamp) -> Vec<u8> {
    [s.size.to_le_bytes(), s.mtime_ns.to_le_bytes(), s.ctime_ns.to_le_bytes()].concat()
}

// ---------------------------------------------------------------------------------------------------------------
// Directory sources

fn ingest_dir(
    ctx: &Ctx,
    source: &Source,
    source_index: u32,
    dir: DirListing,
    index: &Index,
    new_index: &mut Vec<IndexRow>,
    stats: &Stats,
) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> =
        dir.problems.iter().map(|(rel, out)| Row::new(source_index, rel, 0, out.clone())).collect();
    let mut todo = Vec::new();
    for f in &dir.files {
        let origin = hex(&os_bytes(f.abs.as_os_str()));
        match index.reuse_file(&origin, f.stamp, &ctx.env.workdir) {
            Some(out) => {
                stats.reused.fetch_add(1, Ordering::Relaxed);
                new_index.push(IndexRow::file(origin, f, out.clone()));
                rows.push(Row::new(source_index, &f.rel, 0, out));
            }
            None => todo.push((f, origin)),
        }
    }
    let bar = ctx.env.reporter.bar(todo.len() as u64, "ingest");
    bar.set_message(format!("{} ({})", source.name, dir.root.display()));
    let outcomes = todo
        .par_iter()
        .map(|(f, _)| {
            let out = read_and_examine(f, ctx, stats);
            bar.inc(1);
            out
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    for ((f, origin), out) in todo.into_iter().zip(outcomes) {
        if out.reason.as_deref() != Some("unreadable") {
            new_index.push(IndexRow::file(origin, f, out.clone()));
        }
        rows.push(Row::new(source_index, &f.rel, 0, out));
    }
    Ok(rows)
}

fn read_and_examine(f: &DirFile, ctx: &Ctx, stats: &Stats) -> Result<Outcome> {
    let max = ctx.plan.limits.max_file_bytes;
    if f.stamp.size > max {
        let detail = format!("{} bytes > limits.max_file_bytes = {max} (not read)", f.stamp.size);
        return Ok(Outcome::rejected("too_large", detail).with_bytes(Some(f.stamp.size)));
    }
    // Read at most max+1 bytes: the file may have grown since it was listed.
    let mut bytes = Vec::with_capacity(f.stamp.size as usize);
    match File::open(&f.abs).and_then(|file| file.take(max + 1).read_to_end(&mut bytes)) {
        Ok(_) => examine(&bytes, ctx, stats),
        Err(e) => Ok(Outcome::rejected("unreadable", e.to_string()).with_bytes(Some(f.stamp.size))),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Archive sources

fn ingest_archive(
    ctx: &Ctx,
    source: &Source,
    source_index: u32,
    archive: &ArchiveFile,
    index: &Index,
    new_index: &mut Vec<IndexRow>,
    stats: &Stats,
) -> Result<Vec<Row>> {
    let origin = hex(&os_bytes(archive.path.as_os_str()));
    if let Some(found) = index.reuse_archive(&origin, archive.stamp, &ctx.env.workdir) {
        stats.reused.fetch_add(found.len() as u64, Ordering::Relaxed);
        let rows = found.iter().map(|e| e.row(source_index)).collect();
        new_index.extend(found);
        return Ok(rows);
    }
    let kind = match archive.kind {
        Ok(kind) => kind,
        Err((reason, ref detail)) => {
            return Ok(vec![Row::new(source_index, b"", 0, Outcome::rejected(reason, detail.clone()))]);
        }
    };
    // A zip's entry count is known up front (the bar gets its length in `read_zip`); a tar's is not.
    let bar =
        if kind == ArchiveKind::Zip { ctx.env.reporter.bar(0, "ingest") } else { ctx.env.reporter.spinner("ingest") };
    bar.set_message(format!("{} ({})", source.name, archive.path.display()));
    let mut batch = Batch::new(ctx, source_index, stats, bar.clone());
    let opened = File::open(&archive.path);
    match (kind, opened) {
        (_, Err(e)) => batch.archive_row("unreadable", format!("cannot open the archive: {e}")),
        (ArchiveKind::Zip, Ok(file)) => read_zip(file, &mut batch)?,
        (ArchiveKind::Tar, Ok(file)) => read_tar(BufReader::new(file), &mut batch)?,
        (ArchiveKind::TarGz, Ok(file)) => {
            read_tar(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))), &mut batch)?
        }
    }
    let rows = batch.finish()?;
    bar.finish_and_clear();
    let unreadable = rows.iter().any(|r| r.path.is_empty() && r.out.reason.as_deref() == Some("unreadable"));
    if !unreadable {
        new_index.extend(rows.iter().map(|r| IndexRow::entry(origin.clone(), archive.stamp, r)));
    }
    Ok(rows)
}

/// Archive entries read so far, validated in parallel once enough bytes are buffered.
struct Batch<'a> {
    ctx: &'a Ctx,
    source_index: u32,
    stats: &'a Stats,
    bar: ProgressBar,
    pending: Vec<(Row, Vec<u8>)>,
    pending_bytes: usize,
    rows: Vec<Row>,
    budget: Budget,
}

impl<'a> Batch<'a> {
    fn new(ctx: &'a Ctx, source_index: u32, stats: &'a Stats, bar: ProgressBar) -> Self {
        let budget = Budget { limits: ctx.plan.limits, used: 0 };
        Self { ctx, source_index, stats, bar, pending: Vec::new(), pending_bytes: 0, rows: Vec::new(), budget }
    }

    fn row(&self, path: (String, Option<String>), ordinal: u32, out: Outcome) -> Row {
        Row { source_index: self.source_index, path: path.0, path_hex: path.1, ordinal, out }
    }

    fn reject(&mut self, path: (String, Option<String>), ordinal: u32, out: Outcome) {
        let row = self.row(path, ordinal, out);
        self.rows.push(row);
        self.bar.inc(1);
    }

    /// A row about the archive itself (path "").
    fn archive_row(&mut self, reason: &str, detail: String) {
        self.reject((String::new(), None), u32::MAX, Outcome::rejected(reason, detail));
    }

    fn add(&mut self, path: (String, Option<String>), ordinal: u32, data: Vec<u8>) -> Result<()> {
        self.pending_bytes += data.len();
        let row = self.row(path, ordinal, Outcome::default());
        self.pending.push((row, data));
        if self.pending_bytes >= BATCH_BYTES || self.pending.len() >= BATCH_ENTRIES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let (ctx, stats, bar) = (self.ctx, self.stats, &self.bar);
        let outcomes = self
            .pending
            .par_iter()
            .map(|(_, data)| {
                let out = examine(data, ctx, stats);
                bar.inc(1);
                out
            })
            .collect::<Result<Vec<_>>>()?;
        for ((mut row, _), out) in self.pending.drain(..).zip(outcomes) {
            row.out = out;
            self.rows.push(row);
        }
        self.pending_bytes = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Row>> {
        self.flush()?;
        Ok(self.rows)
    }

    /// Reads one entry under the size caps, queueing it for validation or recording why it was not read.
    fn read_entry(
        &mut self,
        path: (String, Option<String>),
        ordinal: u32,
        declared: u64,
        r: &mut impl Read,
    ) -> Result<()> {
        if let Err((reason, detail)) = self.budget.admit(declared) {
            self.reject(path, ordinal, Outcome::rejected(reason, detail).with_bytes(Some(declared)));
            return Ok(());
        }
        match self.budget.read(r, declared) {
            Ok(data) => self.add(path, ordinal, data),
            Err((reason, detail)) => {
                self.reject(path, ordinal, Outcome::rejected(reason, detail));
                Ok(())
            }
        }
    }
}

/// Caps on what one archive may make us read: per entry (`max_file_bytes`) and in total (`max_archive_bytes`),
/// checked against the declared size before reading and against the bytes actually produced while reading (a
/// zip bomb can lie in its headers).
struct Budget {
    limits: Limits,
    used: u64,
}

impl Budget {
    fn admit(&self, declared: u64) -> Result<(), (&'static str, String)> {
        let l = &self.limits;
        if declared > l.max_file_bytes {
            return Err((
                "too_large",
                format!("declares {declared} bytes > limits.max_file_bytes = {}", l.max_file_bytes),
            ));
        }
        if self.used.saturating_add(declared) > l.max_archive_bytes {
            return Err(("archive_budget_exceeded", self.exceeded(declared)));
        }
        Ok(())
    }

    fn exceeded(&self, more: u64) -> String {
        format!(
            "{} bytes already read + {more} > limits.max_archive_bytes = {}",
            self.used, self.limits.max_archive_bytes
        )
    }

    fn read(&mut self, r: &mut impl Read, declared: u64) -> Result<Vec<u8>, (&'static str, String)> {
        let l = self.limits;
        let cap = l.max_file_bytes.min(l.max_archive_bytes.saturating_sub(self.used));
        let mut data = Vec::with_capacity(declared.min(cap).min(BATCH_BYTES as u64) as usize);
        let result = r.take(cap.saturating_add(1)).read_to_end(&mut data);
        self.used = self.used.saturating_add(data.len() as u64);
        if let Err(e) = result {
            let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof { "truncated" } else { "corrupt" };
            return Err((reason, format!("cannot read the archive entry: {e}")));
        }
        let len = data.len() as u64;
        if len > l.max_file_bytes {
            return Err((
                "too_large",
                format!("expands past limits.max_file_bytes = {} (declared {declared})", l.max_file_bytes),
            ));
        }
        if len > cap {
            return Err(("archive_budget_exceeded", self.exceeded(0)));
        }
        Ok(data)
    }
}

/// Why an archive entry name must never be used as a path, if it must not.
fn unsafe_entry_name(raw: &[u8]) -> Option<&'static str> {
    if raw.contains(&0) {
        return Some("NUL byte in the entry name");
    }
    if raw.starts_with(b"/") || raw.starts_with(b"\\") {
        return Some("absolute entry path");
    }
    if raw.len() >= 2 && raw[0].is_ascii_alphabetic() && raw[1] == b':' {
        return Some("drive-letter entry path");
    }
    if raw.split(|&b| b == b'/' || b == b'\\').any(|c| c == b"..") {
        return Some("'..' in the entry path");
    }
    None
}

/// Entry name as a '/'-separated path without "." or empty components (`./a//b.jpg` -> `a/b.jpg`).
fn normalize_entry_name(raw: &[u8], backslash_is_separator: bool) -> Vec<u8> {
    let is_sep = |b: &u8| *b == b'/' || (backslash_is_separator && *b == b'\\');
    let parts: Vec<&[u8]> = raw.split(is_sep).filter(|c| !c.is_empty() && *c != b".").collect();
    parts.join(&b'/')
}

fn unsafe_row(raw: &[u8], why: &str) -> ((String, Option<String>), Outcome) {
    (path_identity(raw, None), Outcome::rejected("unsafe_archive_path", format!("{why}; not extracted")))
}

fn read_zip(file: File, batch: &mut Batch) -> Result<()> {
    let mut zip = match zip::ZipArchive::new(BufReader::new(file)) {
        Ok(zip) => zip,
        Err(e) => {
            batch.archive_row("corrupt_archive", format!("cannot read the zip directory: {e}"));
            return Ok(());
        }
    };
    batch.bar.set_length(zip.len() as u64);
    let names: Vec<Vec<u8>> = zip.file_names_raw().map(<[u8]>::to_vec).collect();
    for (i, raw) in names.iter().enumerate() {
        let ordinal = i as u32;
        if let Some(why) = unsafe_entry_name(raw) {
            let (path, out) = unsafe_row(raw, why);
            batch.reject(path, ordinal, out);
            continue;
        }
        let normalized = normalize_entry_name(raw, true);
        let mut entry = match zip.by_index(i) {
            Ok(entry) => entry,
            Err(e) => {
                // Encrypted entries and compression methods this build does not read are unreadable, not corrupt.
                let msg = e.to_string().to_ascii_lowercase();
                let unreadable = ["password", "not supported", "unsupported"].iter().any(|m| msg.contains(m));
                let reason = if unreadable { "unreadable" } else { "corrupt" };
                batch.reject(path_identity(&normalized, None), ordinal, Outcome::rejected(reason, e.to_string()));
                continue;
            }
        };
        if entry.is_dir() || normalized.is_empty() {
            batch.bar.inc(1);
            continue;
        }
        // Names without the UTF-8 flag are CP437 by the zip spec; the zip crate decodes them.
        let decoded = entry.name().ok().map(|n| normalize_entry_name(n.as_bytes(), true));
        let path = path_identity(&normalized, decoded.map(|d| String::from_utf8_lossy(&d).into_owned()));
        if entry.is_symlink() {
            batch.reject(path, ordinal, Outcome::rejected("not_a_file", "symlink entry (not followed)"));
            continue;
        }
        let declared = entry.size();
        batch.read_entry(path, ordinal, declared, &mut entry)?;
    }
    Ok(())
}

fn read_tar(reader: impl Read, batch: &mut Batch) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            batch.archive_row("corrupt_archive", format!("cannot read the tar: {e}"));
            return Ok(());
        }
    };
    for (i, entry) in entries.enumerate() {
        let ordinal = i as u32;
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                batch.archive_row("corrupt_archive", format!("the tar breaks off after {i} entries: {e}"));
                break;
            }
        };
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if let Some(why) = unsafe_entry_name(&raw) {
            let (path, out) = unsafe_row(&raw, why);
            batch.reject(path, ordinal, out);
            continue;
        }
        let normalized = normalize_entry_name(&raw, false);
        if normalized.is_empty() {
            continue;
        }
        let path = path_identity(&normalized, None);
        if !(kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse()) {
            batch.reject(path, ordinal, Outcome::rejected("not_a_file", format!("tar entry of type {kind:?}")));
            continue;
        }
        let declared = entry.size();
        // A tar can only be listed by streaming through it: once the budget is spent, stop.
        if batch.budget.used.saturating_add(declared) > batch.budget.limits.max_archive_bytes {
            let detail = batch.budget.exceeded(declared);
            batch.reject(path, ordinal, Outcome::rejected("archive_budget_exceeded", detail.clone()));
            batch
                .archive_row("archive_budget_exceeded", format!("stopped reading: {detail}; later entries not listed"));
            break;
        }
        if declared > batch.budget.limits.max_file_bytes {
            // Skipped entries still stream through the decompressor: they count against the budget.
            batch.budget.used += declared;
        }
        batch.read_entry(path, ordinal, declared, &mut entry)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The private re-run index

#[derive(Debug, Clone)]
struct IndexRow {
    /// Hex of the absolute path of the file or archive.
    origin: String,
    stamp: FileStamp,
    limits: String,
    ordinal: u32,
    path: String,
    path_hex: Option<String>,
    out: Outcome,
}

impl IndexRow {
    fn file(origin: String, f: &DirFile, out: Outcome) -> Self {
        Self { origin, stamp: f.stamp, limits: String::new(), ordinal: 0, path: String::new(), path_hex: None, out }
    }

    fn entry(origin: String, stamp: FileStamp, row: &Row) -> Self {
        let (path, path_hex) = (row.path.clone(), row.path_hex.clone());
        Self { origin, stamp, limits: String::new(), ordinal: row.ordinal, path, path_hex, out: row.out.clone() }
    }

    fn row(&self, source_index: u32) -> Row {
        let (path, path_hex) = (self.path.clone(), self.path_hex.clone());
        Row { source_index, path, path_hex, ordinal: self.ordinal, out: self.out.clone() }
    }
}

struct Index {
    by_origin: HashMap<String, Vec<IndexRow>>,
}

fn index_path(workdir: &Workdir) -> PathBuf {
    workdir.root().join("cache/ingest-index.parquet")
}

impl Index {
    /// Loads the rows recorded under the same limits; a missing or unreadable index is simply empty (it is only a
    /// cache).
    fn load(workdir: &Workdir, limits_tag: &str) -> Self {
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

    fn reuse_file(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Outcome> {
        let row = self.by_origin.get(origin)?.first()?;
        (row.stamp == stamp && object_intact(workdir, &row.out)).then(|| row.out.clone())
    }

    fn reuse_archive(&self, origin: &str, stamp: FileStamp, workdir: &Workdir) -> Option<Vec<IndexRow>> {
        let rows = self.by_origin.get(origin)?;
        let fresh = rows.iter().all(|r| r.stamp == stamp && object_intact(workdir, &r.out));
        fresh.then(|| rows.clone())
    }

    fn save(workdir: &Workdir, rows: &[IndexRow]) -> Result<()> {
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
                col("reason", strs(|r| r.out.reason.clone())),
                col("error", strs(|r| r.out.error.clone())),
            ],
        )?;
        manifest::write_parquet(&index_path(workdir), &mut df)
    }
}

/// An accepted row can be reused only while its cache object is still there, whole.
fn object_intact(workdir: &Workdir, out: &Outcome) -> bool {
    if !out.is_ok() {
        return true;
    }
    let (Some(hash), Some(bytes)) = (&out.blake3, out.bytes) else {
        return false;
    };
    cache::is_hash(hash) && fs::metadata(workdir.object_path(hash)).is_ok_and(|m| m.len() == bytes)
}

fn index_rows(df: &DataFrame) -> Result<Vec<IndexRow>> {
    let version = columns::strings(df, "version")?;
    if version.iter().any(|v| v != INDEX_VERSION) {
        bail!("written by another version");
    }
    let (origin, limits, path) =
        (columns::strings(df, "origin")?, columns::strings(df, "limits")?, columns::strings(df, "path")?);
    let (size, mtime, ctime) = (u64s(df, "size")?, i64s(df, "mtime_ns")?, i64s(df, "ctime_ns")?);
    let ordinal = columns::u32s(df, "ordinal")?;
    let path_hex = columns::opt_strings(df, "path_hex")?;
    let bytes = opt_u64s(df, "bytes")?;
    let (blake3, format, color) =
        (columns::opt_strings(df, "blake3")?, columns::opt_strings(df, "format")?, columns::opt_strings(df, "color")?);
    let (width, height, frames) =
        (columns::opt_u32s(df, "width")?, columns::opt_u32s(df, "height")?, columns::opt_u32s(df, "frames")?);
    let (reason, error) = (columns::opt_strings(df, "reason")?, columns::opt_strings(df, "error")?);
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
                reason: reason[i].clone(),
                error: error[i].clone(),
            },
        })
        .collect())
}

fn opt_u64s(df: &DataFrame, name: &str) -> Result<Vec<Option<u64>>> {
    let c = df.column(name)?.cast(&DataType::UInt64)?;
    Ok(c.u64()?.iter().collect())
}

fn u64s(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    opt_u64s(df, name)?.into_iter().map(|v| v.with_context(|| format!("null in {name}"))).collect()
}

fn i64s(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let c = df.column(name)?.cast(&DataType::Int64)?;
    c.i64()?.iter().map(|v| v.with_context(|| format!("null in {name}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_entry_names_are_recognised() {
        for bad in
            [&b"../x.jpg"[..], b"a/../../x.jpg", b"/etc/passwd", b"\\win\\x.jpg", b"C:\\x.jpg", b"a\\..\\x", b"a\0b"]
        {
            assert!(unsafe_entry_name(bad).is_some(), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [&b"a/b.jpg"[..], b"..a/b..jpg", b"./images/x.png", b"x"] {
            assert!(unsafe_entry_name(good).is_none(), "{:?}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn entry_names_are_normalised() {
        assert_eq!(normalize_entry_name(b"./a//b/./c.jpg", false), b"a/b/c.jpg");
        assert_eq!(normalize_entry_name(b"a\\b.jpg", true), b"a/b.jpg");
        assert_eq!(normalize_entry_name(b"a\\b.jpg", false), b"a\\b.jpg");
        assert!(normalize_entry_name(b"./", false).is_empty());
    }

    #[test]
    fn non_utf8_paths_keep_their_bytes_in_hex() {
        assert_eq!(path_identity(b"ok/\xc3\xa9.jpg", None), ("ok/é.jpg".to_string(), None));
        let (path, hex) = path_identity(b"bad\xff.jpg", None);
        assert_eq!(path, "bad\u{fffd}.jpg");
        assert_eq!(hex.as_deref(), Some("626164ff2e6a7067"));
    }

    #[test]
    fn repeated_names_get_unique_keys_in_canonical_order() {
        let sources = vec![Source { name: "s".into(), path: "/x".into(), already_cropped: false }];
        let mut rows: Vec<Row> = [(3u32, "a.jpg"), (1, "a.jpg"), (0, "b.jpg"), (2, "a.jpg#2")]
            .iter()
            .map(|&(ord, p)| Row::new(0, p.as_bytes(), ord, Outcome::default()))
            .collect();
        sort_canonically(&mut rows);
        let keys = assign_keys(&sources, &rows);
        assert_eq!(keys, vec!["s/a.jpg", "s/a.jpg#3", "s/a.jpg#2", "s/b.jpg"]);
        let unique: BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
    }

    #[test]
    fn budget_checks_declared_and_actual_sizes() {
        let limits = Limits { max_file_bytes: 10, max_pixels: 1, max_archive_bytes: 25 };
        let mut b = Budget { limits, used: 0 };
        assert_eq!(b.admit(11).unwrap_err().0, "too_large");
        // A header that lies (declares 5, delivers 50) is caught while reading.
        assert_eq!(b.read(&mut &[0u8; 50][..], 5).unwrap_err().0, "too_large");
        assert_eq!(b.used, 11, "bytes actually read count against the budget");
        assert_eq!(b.read(&mut &[0u8; 10][..], 10).unwrap().len(), 10);
        assert_eq!(b.admit(5).unwrap_err().0, "archive_budget_exceeded");
        assert_eq!(b.read(&mut &[0u8; 8][..], 1).unwrap_err().0, "archive_budget_exceeded");
    }
}
