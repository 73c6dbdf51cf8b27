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
//! Each file is read once, hashed (blake3) and fully decoded by [`crate::imageio::decode_rgb8`] (see `imageio` for
//! the format/colour/animation policy and the decode reasons); from that one decode it is measured
//! ([`crate::measure`]: pixel hash, pHash, colour thumbnail, quality scores), so `dedup` and `clean` decode nothing. Bad input never stops the run: it becomes a row with
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
//! | pixel_hash, phash, thumb | str?, u64?, str? | measures for `dedup` (accepted rows; see `crate::measure`) |
//! | sharpness, colorfulness, grayscale, entropy | f64?, f64?, bool?, f64? | quality scores for `clean` |
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
//! ## Partitions
//! With `--partition K/N` (or a job array) a process ingests only its share of the rows: a file or archive entry
//! belongs to the partition of a hash of its identity (source name, path, entry order), since its content hash is
//! not known before it is read; like the content hash, this does not depend on the order a file system lists
//! files in. Every partition lists every source (the listing is the stage's fingerprint), reads and examines only
//! its own directory files, and streams each archive to its end (archive budgets count every entry) but decodes
//! only its own entries. It writes a part manifest and marker (see `crate::stages::parts`) and its own re-run
//! index; the merge is an unpartitioned ingest that finds every row in those indexes, reads no file again, and so
//! writes the very manifest a single process writes.
//!
//! ## Memory
//! Nothing holds every row: each row goes, as it is found, into a sort ([`sink`], [`spill`]) that writes runs of
//! 131,072 rows under `TMPDIR` once past that and merges them back in canonical order for the manifest (keys are
//! assigned as the merged rows stream by) and in origin order for the re-run index. The re-run index is read as a
//! merge join with the listing (sources visited in origin order), one origin's rows at a time. Outcomes of
//! recently seen contents are kept in two bounded generations ([`examine`]). What grows with the collection is the
//! listing (one relative name and stamp per file, about 100 bytes: they are the stage's fingerprint) and one
//! archive's entries while it is read.
//!
//! ## Re-runs
//! A private index, `cache/ingest-index.parquet` (not a manifest: manifests stay byte-identical), remembers each
//! file's outcome keyed by absolute path, size, mtime and ctime (archives: the archive's path, size, mtime and
//! ctime, for all their entries at once) and the limits in force, sorted by origin (hex of the absolute path).
//! Unchanged files are neither read nor decoded again; the summary's `images decoded` and `reused` counts show it. Like make and git, this trusts mtime/ctime: a file
//! rewritten with the same size within the file system's timestamp granularity would be missed (deleting
//! `cache/ingest-index.parquet` makes the next run re-read everything).
mod archives;
mod directories;
mod examine;
mod index;
mod listing;
mod rows;
mod sink;
mod spill;

use crate::cache;
use crate::env::Env;
use crate::imageio::Limits;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::{parts, Plan, Stage};
use crate::workdir::Workdir;
use anyhow::Result;
use examine::Seen;
use index::{limits_tag, Checkpoints, Index};
use listing::{Listing, Listings};
use rows::{publish_rows, Row};
use serde::{Deserialize, Serialize};
use sink::Sink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One entry of `sources:` (or `--source PATH`), resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
    pub already_cropped: bool,
}

/// Bumped when the output for the same inputs changes, so stamps made by older code no longer match.
pub const ALGORITHM: &str = "ingest/3";
/// Archive entries are validated in parallel batches of at most this many bytes / entries.
const BATCH_BYTES: usize = 64 << 20;
const BATCH_ENTRIES: usize = 2048;
/// Directory files are examined in chunks of this many, each saved to a progress file when done
/// (`ANIME_PIPE_INGEST_CHECKPOINT` overrides it: tests kill a run part way through a small source).
fn checkpoint_files() -> usize {
    let set = std::env::var("ANIME_PIPE_INGEST_CHECKPOINT").ok().and_then(|v| v.parse().ok());
    set.filter(|&n: &usize| n > 0).unwrap_or(4096)
}

/// Everything ingest's output depends on: the sources, the limits, and what the sources hold now.
#[derive(Serialize)]
pub struct Inputs {
    pub sources: Vec<Source>,
    pub limits: Limits,
    pub listing: Listings,
}

impl Inputs {
    /// Lists every source (a folder walk, an archive's header): the listing is part of the fingerprint.
    pub fn new(plan: &Plan, workdir: &Workdir) -> Result<Self> {
        let listing = listing::list_sources(&plan.sources, workdir)?;
        Ok(Self { sources: plan.sources.clone(), limits: plan.limits, listing })
    }
}

/// One ingest run: where it works and what it was asked.
struct Ctx<'a> {
    env: &'a Env,
    inputs: &'a Inputs,
}

impl Ctx<'_> {
    /// Whether this process ingests `row`: every row, or those of its partition (by the row's identity).
    fn owns(&self, row: &Row) -> bool {
        let Some(p) = &self.env.partition else { return true };
        let source = &self.inputs.sources[row.source_index as usize].name;
        let hex = row.path_hex.as_deref().unwrap_or("");
        p.owns(&format!("{source}\0{}\0{hex}\0{}", row.path, row.ordinal))
    }
}

pub fn run(env: &Env, inputs: &Inputs, fingerprint: &str) -> Result<Summary> {
    let mut summary = Summary::start(Stage::Ingest.name());
    let ctx = &Ctx { env, inputs };
    let limits_tag = limits_tag(&inputs.limits);
    let mut index = Index::load(&env.workdir, &limits_tag);
    let stats = Stats::new(&env.workdir, &limits_tag);
    let mut sink = Sink::new(&inputs.sources, &limits_tag);
    for i in inputs.listing.visit_order() {
        let (source, source_index, index) = (&inputs.sources[i], i as u32, &mut index);
        match &inputs.listing.0[i] {
            Listing::Dir(dir) => directories::ingest_dir(ctx, source, source_index, dir, index, &mut sink, &stats)?,
            Listing::Archive(a) => archives::ingest_archive(ctx, source, source_index, a, index, &mut sink, &stats)?,
        }
    }
    drop(index);
    stats.new_objects.store(stats.writer.finish()?, Ordering::Relaxed);
    cache::sync_objects(&env.workdir)?;
    Index::save(&env.workdir, sink.take_index()?, env.partition.as_ref().map(parts::part_name).as_deref())?;
    stats.checkpoints.clear()?;
    let (rows, keys, tally) = sink.into_rows()?;
    let mut publisher = parts::Publisher::start(env, Stage::Ingest, fingerprint)?;
    publish_rows(&mut publisher, &inputs.sources, rows, keys)?;
    let (decoded, reused) = (stats.decoded.load(Ordering::Relaxed), stats.reused.load(Ordering::Relaxed));
    let published = publisher.finish(decoded, reused)?;
    summary.count("sources", inputs.sources.len() as u64);
    tally.summarize(&mut summary);
    summary
        .count("images decoded", decoded)
        .count("reused", reused)
        .count("new objects", stats.new_objects.load(Ordering::Relaxed));
    if let Some(p) = &env.partition {
        summary.fact("partition", p.describe());
    }
    summary.fact("manifest", published.display());
    Ok(summary.finish())
}

struct Stats {
    decoded: AtomicU64,
    reused: AtomicU64,
    new_objects: AtomicU64,
    writer: cache::ObjectWriter,
    /// Recent outcomes by content hash, so repeated bytes are decoded and measured once.
    seen: Mutex<Seen>,
    checkpoints: Checkpoints,
}

/// Background threads storing cache objects: file creation is latency-bound, so more writers than cores pay off.
const OBJECT_WRITERS: usize = 8;

impl Stats {
    fn new(workdir: &Workdir, limits_tag: &str) -> Stats {
        Stats {
            decoded: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            new_objects: AtomicU64::new(0),
            writer: cache::ObjectWriter::new(workdir, OBJECT_WRITERS),
            seen: Mutex::new(Seen::default()),
            checkpoints: Checkpoints::new(workdir, limits_tag),
        }
    }
}
