//! Per-item results of the expensive stages (crop, upscale, pack), kept in the cache so that a re-run computes only
//! the items it has no result for: after adding 1% new images, 1% is computed; a run killed at 70% computes the
//! remaining 30%; the partitions of a cluster run fill it and the merge reads it.
//!
//! Layout: `cache/memo/<stage>/<key>/seg-*.bin`, where `key` is the blake3 of everything a per-item result depends
//! on except the item (the stage's settings, decode limits, the model's hash: see each stage's `item_key`), so a
//! changed setting or model starts a new directory and stale results are never reused. Results are appended to a
//! buffer and published in segments of [`SEGMENT_RECORDS`] records (or [`SEGMENT_BYTES`]), each written atomically
//! (temp file + rename): one file per item would cost a file creation per item, which dominates on network file
//! systems; a killed run loses at most one unpublished segment per process. Segment names carry the process id and
//! a sequence number, so partitions writing the same memo never touch each other's files.
//!
//! Segment format (hand-written: a length-prefixed record stream needs no library): `anime-pipe-memo/1\n`, then per
//! record: object (u8 length + bytes), refs count (u32 LE) and each ref (u8 length + bytes: cache objects the result
//! points to, kept by `gc`), payload (u64 LE length + bytes, the stage's own encoding).
use crate::workdir::{atomic_write, Workdir};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MAGIC: &[u8] = b"anime-pipe-memo/1\n";
/// Records per published segment.
pub const SEGMENT_RECORDS: usize = 256;
/// Bytes of payload per published segment, whichever limit comes first.
pub const SEGMENT_BYTES: usize = 64 << 20;

/// One item's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The input item's cache object.
    pub object: String,
    /// Cache objects the result refers to (face crops, upscaled images): `gc` keeps them.
    pub refs: Vec<String>,
    pub payload: Vec<u8>,
}

/// Where a published record's payload lies: only this index is held in memory (payloads are read when asked for),
/// so a memo of millions of items costs about 100 bytes of memory per item, not its payloads.
#[derive(Debug, Clone)]
struct Location {
    segment: usize,
    offset: u64,
    len: u64,
    refs: Vec<String>,
}

/// The memo of one (stage, item key): the results already published, and a buffer of new ones.
pub struct Memo {
    dir: PathBuf,
    segments: Vec<PathBuf>,
    known: HashMap<String, Location>,
    pending: Mutex<Vec<Record>>,
    pending_bytes: AtomicU64,
    sequence: AtomicU64,
    written: AtomicU64,
}

impl Memo {
    /// Opens (and reads) the memo of `stage` under `key`.
    pub fn open(workdir: &Workdir, stage: &str, key: &str) -> Result<Memo> {
        let dir = workdir.root().join("cache/memo").join(stage).join(key);
        let mut known = HashMap::new();
        let mut segments = Vec::new();
        if dir.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "bin"))
                .collect();
            names.sort();
            for (segment, path) in names.into_iter().enumerate() {
                for (object, location) in index_segment(&path, segment)? {
                    known.insert(object, location);
                }
                segments.push(path);
            }
        }
        Ok(Memo {
            dir,
            segments,
            known,
            pending: Mutex::new(Vec::new()),
            pending_bytes: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            written: AtomicU64::new(0),
        })
    }

    /// True when a result for `object` is published.
    pub fn contains(&self, object: &str) -> bool {
        self.known.contains_key(object)
    }

    /// The published result for `object`, if any (its payload read from its segment now).
    pub fn get(&self, object: &str) -> Result<Option<Record>> {
        let Some(at) = self.known.get(object) else { return Ok(None) };
        use std::io::{Read, Seek, SeekFrom};
        let path = &self.segments[at.segment];
        let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        file.seek(SeekFrom::Start(at.offset))?;
        let mut payload = vec![0u8; at.len as usize];
        file.read_exact(&mut payload).with_context(|| format!("{} is truncated (delete it)", path.display()))?;
        Ok(Some(Record { object: object.to_string(), refs: at.refs.clone(), payload }))
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Adds a new result; publishes a segment when the buffer is full.
    pub fn put(&self, record: Record) -> Result<()> {
        let bytes = record.payload.len() as u64;
        let full = {
            let mut pending = self.pending.lock().expect("no panics while held");
            pending.push(record);
            pending.len() >= SEGMENT_RECORDS
                || self.pending_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes >= SEGMENT_BYTES as u64
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Publishes whatever is buffered; returns how many records this memo wrote in all.
    pub fn finish(&self) -> Result<u64> {
        self.flush()?;
        Ok(self.written.load(Ordering::Relaxed))
    }

    fn flush(&self) -> Result<()> {
        let records = std::mem::take(&mut *self.pending.lock().expect("no panics while held"));
        self.pending_bytes.store(0, Ordering::Relaxed);
        if records.is_empty() {
            return Ok(());
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("seg-{}-{:08}-{:020}.bin", std::process::id(), sequence, now_nanos());
        atomic_write(&self.dir.join(name), &encode(&records))?;
        self.written.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let short = |out: &mut Vec<u8>, s: &str| {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    };
    for r in records {
        short(&mut out, &r.object);
        out.extend_from_slice(&(r.refs.len() as u32).to_le_bytes());
        for reference in &r.refs {
            short(&mut out, reference);
        }
        out.extend_from_slice(&(r.payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&r.payload);
    }
    out
}

/// The records of a segment without their payloads: object -> where its payload lies. Payloads are skipped with
/// seeks, so opening a memo of millions of results (pack keeps whole resized images) reads only the record headers.
fn index_segment(path: &Path, segment: usize) -> Result<Vec<(String, Location)>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = file.metadata()?.len();
    scan(std::io::BufReader::with_capacity(64 << 10, file), size)
        .map(|headers| {
            headers
                .into_iter()
                .map(|h| (h.object, Location { segment, offset: h.offset, len: h.len, refs: h.refs }))
                .collect()
        })
        .with_context(|| format!("{} is not a readable memo segment (delete it to recompute)", path.display()))
}

/// The cache objects every record of a segment refers to (`gc` keeps them), without reading payloads.
pub fn segment_refs(path: &Path) -> Result<Vec<String>> {
    Ok(index_segment(path, 0)?.into_iter().flat_map(|(_, at)| at.refs).collect())
}

/// One record's header: what it is about, what it refers to, and where its payload lies.
struct Header {
    object: String,
    refs: Vec<String>,
    offset: u64,
    len: u64,
}

/// Reads the record headers of a segment of `size` bytes, seeking over the payloads.
fn scan(mut r: impl std::io::BufRead + std::io::Seek, size: u64) -> Result<Vec<Header>> {
    use std::io::Read;
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic).context("truncated")?;
    if magic != MAGIC {
        bail!("wrong header");
    }
    let short = |r: &mut dyn Read| -> Result<String> {
        let mut len = [0u8; 1];
        r.read_exact(&mut len).context("truncated")?;
        let mut text = vec![0u8; len[0] as usize];
        r.read_exact(&mut text).context("truncated")?;
        Ok(String::from_utf8(text)?)
    };
    let mut at = MAGIC.len() as u64;
    let mut headers = Vec::new();
    while at < size {
        let object = short(&mut r)?;
        let mut count = [0u8; 4];
        r.read_exact(&mut count).context("truncated")?;
        let refs = (0..u32::from_le_bytes(count)).map(|_| short(&mut r)).collect::<Result<Vec<_>>>()?;
        let mut len = [0u8; 8];
        r.read_exact(&mut len).context("truncated")?;
        let len = u64::from_le_bytes(len);
        let offset = r.stream_position()?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            bail!("truncated");
        }
        r.seek_relative(len as i64)?;
        at = offset + len;
        headers.push(Header { object, refs, offset, len });
    }
    Ok(headers)
}

/// The memo directories of every stage: `cache/memo/<stage>/<key>`.
pub fn directories(workdir: &Workdir) -> Result<Vec<(String, String, PathBuf)>> {
    let root = workdir.root().join("cache/memo");
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    for stage in std::fs::read_dir(&root)? {
        let stage = stage?;
        for key in std::fs::read_dir(stage.path())? {
            let key = key?;
            let (s, k) =
                (stage.file_name().to_string_lossy().to_string(), key.file_name().to_string_lossy().to_string());
            out.push((s, k, key.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        Record { object: format!("{i:064x}"), refs: vec![format!("{:064x}", i + 1000)], payload: vec![i as u8; i % 7] }
    }

    #[test]
    fn records_round_trip_through_segments_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let memo = Memo::open(&wd, "crop", "k1").unwrap();
        assert!(memo.is_empty());
        for i in 0..(SEGMENT_RECORDS + 10) {
            memo.put(record(i)).unwrap();
        }
        // One full segment is already published before finish: a killed run keeps it.
        assert_eq!(Memo::open(&wd, "crop", "k1").unwrap().len(), SEGMENT_RECORDS);
        assert_eq!(memo.finish().unwrap(), (SEGMENT_RECORDS + 10) as u64);
        let again = Memo::open(&wd, "crop", "k1").unwrap();
        assert_eq!(again.len(), SEGMENT_RECORDS + 10);
        assert_eq!(again.get(&record(3).object).unwrap(), Some(record(3)));
        assert_eq!(again.get(&record(SEGMENT_RECORDS + 9).object).unwrap(), Some(record(SEGMENT_RECORDS + 9)));
        assert_eq!(again.get("unknown").unwrap(), None);
        // Another key is another memo.
        assert!(Memo::open(&wd, "crop", "k2").unwrap().is_empty());
    }

    #[test]
    fn a_damaged_segment_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let memo = Memo::open(&wd, "pack", "k").unwrap();
        memo.put(record(5)).unwrap();
        memo.finish().unwrap();
        let seg = std::fs::read_dir(dir.path().join("cache/memo/pack/k")).unwrap().next().unwrap().unwrap().path();
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[..bytes.len() - 2]).unwrap();
        let err = format!("{:#}", Memo::open(&wd, "pack", "k").err().unwrap());
        assert!(err.contains("seg-") && err.contains("delete it"), "{err}");
    }
}
