//! Archive sources (.zip, .tar, .tar.gz): read sequentially, never extracted; entries validated in parallel
//! batches of bounded size; per-entry and per-archive byte budgets against zip bombs; unsafe entry names rejected.
use super::examine::examine;
use super::index::{Index, IndexRow, KnownEntries};
use super::listing::{os_bytes, ArchiveFile, ArchiveKind, FileStamp};
use super::rows::{hex, path_identity, Outcome, Row};
use super::sink::Sink;
use super::{Ctx, Source, Stats, BATCH_BYTES, BATCH_ENTRIES};
use crate::imageio::Limits;
use crate::manifest::Reason;
use anyhow::Result;
use indicatif::ProgressBar;
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::atomic::Ordering;

pub(super) fn ingest_archive(
    ctx: &Ctx<'_>,
    source: &Source,
    source_index: u32,
    archive: &ArchiveFile,
    index: &mut Index,
    sink: &mut Sink<'_>,
    stats: &Stats,
) -> Result<()> {
    let origin = hex(&os_bytes(archive.path.as_os_str()));
    if let Some(found) = index.reuse_archive(&origin, archive.stamp, &ctx.env.workdir) {
        for entry in found.into_iter().filter(|e| ctx.owns(&e.row(source_index))) {
            stats.reused.fetch_add(1, Ordering::Relaxed);
            sink.row(entry.row(source_index))?;
            sink.remember(entry)?;
        }
        return Ok(());
    }
    let kind = match archive.kind {
        Ok(kind) => kind,
        Err((reason, ref detail)) => {
            let row = Row::new(source_index, b"", 0, Outcome::rejected(reason, detail.clone()));
            return if ctx.owns(&row) { sink.row(row) } else { Ok(()) };
        }
    };
    // A zip's entry count is known up front (the bar gets its length in `read_zip`); a tar's is not.
    let bar =
        if kind == ArchiveKind::Zip { ctx.env.reporter.bar(0, "ingest") } else { ctx.env.reporter.spinner("ingest") };
    bar.set_message(format!("{} ({})", source.name, archive.path.display()));
    let known = index.archive_entries(&origin, archive.stamp, &ctx.env.workdir);
    let identity = (origin.clone(), archive.stamp);
    let mut batch = Batch::new(ctx, source_index, stats, bar.clone(), known, identity, sink);
    let opened = File::open(&archive.path);
    match (kind, opened) {
        (_, Err(e)) => batch.archive_row(Reason::Unreadable, format!("cannot open the archive: {e}"))?,
        (ArchiveKind::Zip, Ok(file)) => read_zip(file, &mut batch)?,
        (ArchiveKind::Tar, Ok(file)) => read_tar(BufReader::new(file), &mut batch)?,
        (ArchiveKind::TarGz, Ok(file)) => {
            read_tar(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))), &mut batch)?
        }
    }
    let (total, unreadable) = batch.finish()?;
    bar.finish_and_clear();
    sink.archive_done(origin, archive.stamp, (!unreadable).then_some(total));
    Ok(())
}

/// Archive entries read so far, validated in parallel once enough bytes are buffered; each row goes to the sink
/// once its outcome is known. In a partition, rows of other partitions are counted (the archive's total goes into
/// the re-run index) but neither examined nor kept.
pub(super) struct Batch<'a, 's, 'k> {
    ctx: &'a Ctx<'a>,
    source_index: u32,
    stats: &'a Stats,
    bar: ProgressBar,
    pending: Vec<(Row, Vec<u8>)>,
    pending_bytes: usize,
    sink: &'s mut Sink<'k>,
    /// Rows of the archive, this partition's or not.
    total: u32,
    /// The archive itself could not be opened (its outcome must not be remembered).
    unreadable: bool,
    budget: Budget,
    /// Outcomes of entries examined before (an interrupted or partitioned run): not examined again.
    known: KnownEntries,
    /// The archive's identity in the re-run index.
    origin: (String, FileStamp),
}

impl<'a, 's, 'k> Batch<'a, 's, 'k> {
    fn new(
        ctx: &'a Ctx<'a>,
        source_index: u32,
        stats: &'a Stats,
        bar: ProgressBar,
        known: KnownEntries,
        origin: (String, FileStamp),
        sink: &'s mut Sink<'k>,
    ) -> Self {
        let budget = Budget { limits: ctx.inputs.limits, used: 0 };
        let (pending, pending_bytes, total, unreadable) = (Vec::new(), 0, 0, false);
        Self { ctx, source_index, stats, bar, pending, pending_bytes, sink, total, unreadable, budget, known, origin }
    }

    fn row(&self, path: (String, Option<String>), ordinal: u32, out: Outcome) -> Row {
        Row { source_index: self.source_index, path: path.0, path_hex: path.1, ordinal, out }
    }

    /// Counts a row; true when this process keeps it.
    fn keeps(&mut self, row: &Row) -> bool {
        self.total += 1;
        self.bar.inc(1);
        self.ctx.owns(row)
    }

    /// A kept row with its outcome: into the manifest and the re-run index (its row count comes at the end).
    fn found(&mut self, row: Row) -> Result<()> {
        self.sink.remember(IndexRow::entry(self.origin.0.clone(), self.origin.1, &row, 0))?;
        self.sink.row(row)
    }

    fn reject(&mut self, path: (String, Option<String>), ordinal: u32, out: Outcome) -> Result<()> {
        let row = self.row(path, ordinal, out);
        if self.keeps(&row) {
            self.found(row)?;
        }
        Ok(())
    }

    /// A row about the archive itself (path "").
    fn archive_row(&mut self, reason: Reason, detail: String) -> Result<()> {
        self.unreadable |= reason == Reason::Unreadable;
        self.reject((String::new(), None), u32::MAX, Outcome::rejected(reason, detail))
    }

    fn add(&mut self, path: (String, Option<String>), ordinal: u32, data: Vec<u8>) -> Result<()> {
        let mut row = self.row(path, ordinal, Outcome::default());
        if !self.keeps(&row) {
            return Ok(());
        }
        if let Some(out) = self.known.remove(&(row.ordinal, row.path.clone(), row.path_hex.clone())) {
            self.stats.reused.fetch_add(1, Ordering::Relaxed);
            row.out = out;
            return self.found(row);
        }
        self.pending_bytes += data.len();
        self.pending.push((row, data));
        if self.pending_bytes >= BATCH_BYTES || self.pending.len() >= BATCH_ENTRIES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let (ctx, stats) = (self.ctx, self.stats);
        let outcomes =
            self.pending.par_iter().map(|(_, data)| examine(data, ctx, stats)).collect::<Result<Vec<_>>>()?;
        let mut done = Vec::with_capacity(outcomes.len());
        let pending = std::mem::take(&mut self.pending);
        for ((mut row, _), out) in pending.into_iter().zip(outcomes) {
            row.out = out;
            // The archive's row count is not known yet (0): progress rows never make the archive complete.
            done.push(IndexRow::entry(self.origin.0.clone(), self.origin.1, &row, 0));
            self.found(row)?;
        }
        self.pending_bytes = 0;
        self.stats.checkpoints.save(done)
    }

    /// The archive's row count, and whether the archive itself was unreadable.
    fn finish(mut self) -> Result<(u32, bool)> {
        self.flush()?;
        Ok((self.total, self.unreadable))
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
            return self.reject(path, ordinal, Outcome::rejected(reason, detail).with_bytes(Some(declared)));
        }
        match self.budget.read(r, declared) {
            Ok(data) => self.add(path, ordinal, data),
            Err((reason, detail)) => self.reject(path, ordinal, Outcome::rejected(reason, detail)),
        }
    }
}

/// Caps on what one archive may make us read: per entry (`max_file_bytes`) and in total (`max_archive_bytes`),
/// checked against the declared size before reading and against the bytes actually produced while reading (a
/// zip bomb can lie in its headers).
pub(super) struct Budget {
    limits: Limits,
    used: u64,
}

impl Budget {
    fn admit(&self, declared: u64) -> Result<(), (Reason, String)> {
        let l = &self.limits;
        if declared > l.max_file_bytes {
            return Err((
                Reason::TooLarge,
                format!("declares {declared} bytes > limits.max_file_bytes = {}", l.max_file_bytes),
            ));
        }
        if self.used.saturating_add(declared) > l.max_archive_bytes {
            return Err((Reason::ArchiveBudgetExceeded, self.exceeded(declared)));
        }
        Ok(())
    }

    fn exceeded(&self, more: u64) -> String {
        format!(
            "{} bytes already read + {more} > limits.max_archive_bytes = {}",
            self.used, self.limits.max_archive_bytes
        )
    }

    fn read(&mut self, r: &mut impl Read, declared: u64) -> Result<Vec<u8>, (Reason, String)> {
        let l = self.limits;
        let cap = l.max_file_bytes.min(l.max_archive_bytes.saturating_sub(self.used));
        let mut data = Vec::with_capacity(declared.min(cap).min(BATCH_BYTES as u64) as usize);
        let result = r.take(cap.saturating_add(1)).read_to_end(&mut data);
        self.used = self.used.saturating_add(data.len() as u64);
        if let Err(e) = result {
            let reason =
                if e.kind() == std::io::ErrorKind::UnexpectedEof { Reason::Truncated } else { Reason::Corrupt };
            return Err((reason, format!("cannot read the archive entry: {e}")));
        }
        let len = data.len() as u64;
        if len > l.max_file_bytes {
            return Err((
                Reason::TooLarge,
                format!("expands past limits.max_file_bytes = {} (declared {declared})", l.max_file_bytes),
            ));
        }
        if len > cap {
            return Err((Reason::ArchiveBudgetExceeded, self.exceeded(0)));
        }
        Ok(data)
    }
}

/// Why an archive entry name must never be used as a path, if it must not.
pub(super) fn unsafe_entry_name(raw: &[u8]) -> Option<&'static str> {
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
pub(super) fn normalize_entry_name(raw: &[u8], backslash_is_separator: bool) -> Vec<u8> {
    let is_sep = |b: &u8| *b == b'/' || (backslash_is_separator && *b == b'\\');
    let parts: Vec<&[u8]> = raw.split(is_sep).filter(|c| !c.is_empty() && *c != b".").collect();
    parts.join(&b'/')
}

pub(super) fn unsafe_row(raw: &[u8], why: &str) -> ((String, Option<String>), Outcome) {
    (path_identity(raw, None), Outcome::rejected(Reason::UnsafeArchivePath, format!("{why}; not extracted")))
}

pub(super) fn read_zip(file: File, batch: &mut Batch) -> Result<()> {
    let mut zip = match zip::ZipArchive::new(BufReader::new(file)) {
        Ok(zip) => zip,
        Err(e) => {
            batch.archive_row(Reason::CorruptArchive, format!("cannot read the zip directory: {e}"))?;
            return Ok(());
        }
    };
    batch.bar.set_length(zip.len() as u64);
    let names: Vec<Vec<u8>> = zip.file_names_raw().map(<[u8]>::to_vec).collect();
    for (i, raw) in names.iter().enumerate() {
        let ordinal = i as u32;
        if let Some(why) = unsafe_entry_name(raw) {
            let (path, out) = unsafe_row(raw, why);
            batch.reject(path, ordinal, out)?;
            continue;
        }
        let normalized = normalize_entry_name(raw, true);
        let mut entry = match zip.by_index(i) {
            Ok(entry) => entry,
            Err(e) => {
                // Encrypted entries and compression methods this build does not read are unreadable, not corrupt.
                let msg = e.to_string().to_ascii_lowercase();
                let unreadable = ["password", "not supported", "unsupported"].iter().any(|m| msg.contains(m));
                let reason = if unreadable { Reason::Unreadable } else { Reason::Corrupt };
                batch.reject(path_identity(&normalized, None), ordinal, Outcome::rejected(reason, e.to_string()))?;
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
            batch.reject(path, ordinal, Outcome::rejected(Reason::NotAFile, "symlink entry (not followed)"))?;
            continue;
        }
        let declared = entry.size();
        batch.read_entry(path, ordinal, declared, &mut entry)?;
    }
    Ok(())
}

pub(super) fn read_tar(reader: impl Read, batch: &mut Batch) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            batch.archive_row(Reason::CorruptArchive, format!("cannot read the tar: {e}"))?;
            return Ok(());
        }
    };
    for (i, entry) in entries.enumerate() {
        let ordinal = i as u32;
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                batch.archive_row(Reason::CorruptArchive, format!("the tar breaks off after {i} entries: {e}"))?;
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
            batch.reject(path, ordinal, out)?;
            continue;
        }
        let normalized = normalize_entry_name(&raw, false);
        if normalized.is_empty() {
            continue;
        }
        let path = path_identity(&normalized, None);
        if !(kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse()) {
            batch.reject(path, ordinal, Outcome::rejected(Reason::NotAFile, format!("tar entry of type {kind:?}")))?;
            continue;
        }
        let declared = entry.size();
        // A tar can only be listed by streaming through it: once the budget is spent, stop.
        if batch.budget.used.saturating_add(declared) > batch.budget.limits.max_archive_bytes {
            let detail = batch.budget.exceeded(declared);
            batch.reject(path, ordinal, Outcome::rejected(Reason::ArchiveBudgetExceeded, detail.clone()))?;
            batch.archive_row(
                Reason::ArchiveBudgetExceeded,
                format!("stopped reading: {detail}; later entries not listed"),
            )?;
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
    fn budget_checks_declared_and_actual_sizes() {
        let limits = Limits { max_file_bytes: 10, max_pixels: 1, max_archive_bytes: 25 };
        let mut b = Budget { limits, used: 0 };
        assert_eq!(b.admit(11).unwrap_err().0, Reason::TooLarge);
        // A header that lies (declares 5, delivers 50) is caught while reading.
        assert_eq!(b.read(&mut &[0u8; 50][..], 5).unwrap_err().0, Reason::TooLarge);
        assert_eq!(b.used, 11, "bytes actually read count against the budget");
        assert_eq!(b.read(&mut &[0u8; 10][..], 10).unwrap().len(), 10);
        assert_eq!(b.admit(5).unwrap_err().0, Reason::ArchiveBudgetExceeded);
        assert_eq!(b.read(&mut &[0u8; 8][..], 1).unwrap_err().0, Reason::ArchiveBudgetExceeded);
    }
}
