//! Content-addressed object store: `cache/objects/<2 hex>/<62 hex>` holds bytes whose blake3 is the file name.
//!
//! Ingest stores every accepted file here once, so later stages never re-read (or re-extract) the sources.
//! Objects are immutable and written atomically; storing an object that already exists is a no-op.
use crate::workdir::Workdir;
use anyhow::{Context, Result};
use std::fs::{self, File};
use std::sync::atomic::{AtomicU64, Ordering};

/// Stores `bytes` and returns their blake3 hex. Atomic (temp + rename); a no-op when the object already exists.
pub fn store_object(workdir: &Workdir, bytes: &[u8]) -> Result<String> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    store_object_with_hash(workdir, &hash, bytes)?;
    Ok(hash)
}

/// Like [`store_object`] when the caller already hashed the bytes (ingest hashes every file once).
pub fn store_object_with_hash(workdir: &Workdir, hash: &str, bytes: &[u8]) -> Result<()> {
    if store_object_unsynced(workdir, hash, bytes)? {
        let path = workdir.object_path(hash);
        File::open(&path).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", path.display()))?;
    }
    Ok(())
}

/// Stores an object without fsync (bulk writers call [`sync_objects`] once at the end instead of paying one
/// fsync per object). Returns whether a new object was written. Safe to call concurrently for the same hash: each
/// writer uses its own temp file, and the rename of identical bytes is idempotent. An existing object whose size
/// differs from `bytes` (a torn write after a crash) is replaced.
pub fn store_object_unsynced(workdir: &Workdir, hash: &str, bytes: &[u8]) -> Result<bool> {
    anyhow::ensure!(is_hash(hash), "invalid cache object name {hash:?}");
    let path = workdir.object_path(hash);
    if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
        return Ok(false);
    }
    let dir = path.parent().expect("object paths have a parent");
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        &hash[2..],
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // The 256 prefix directories are created on first use (not checked before every write).
    let mut written = fs::write(&tmp, bytes);
    if written.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} (is the workdir writable?)", dir.display()))?;
        written = fs::write(&tmp, bytes);
    }
    let written = written.and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot store cache object {} (is the workdir writable?)", path.display()));
    }
    Ok(true)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A background writer thread; it returns how many new objects it wrote.
type WriterThread = std::thread::JoinHandle<Result<u64>>;
/// (blake3 hex, bytes) waiting to be written.
type QueuedObject = (String, Vec<u8>);

/// Stores objects on a few background threads. Creating tens of thousands of small files is bound by file-system
/// latency, not CPU; writing behind lets hashing and decoding (on the `-j` workers) overlap with it. Objects are
/// content-addressed, so the order in which writers finish never matters.
pub struct ObjectWriter {
    sender: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<QueuedObject>>>,
    workers: std::sync::Mutex<Vec<WriterThread>>,
    /// Hashes already queued: a duplicate file is written (and counted) once.
    queued: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl ObjectWriter {
    pub fn new(workdir: &Workdir, threads: usize) -> ObjectWriter {
        // Bounded, so a fast reader cannot queue an archive's worth of bytes in memory.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<QueuedObject>(256);
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        let workers = (0..threads.max(1))
            .map(|_| {
                let (receiver, workdir) = (receiver.clone(), workdir.clone());
                std::thread::spawn(move || {
                    let mut written = 0;
                    loop {
                        let next = receiver.lock().expect("writer queue poisoned").recv();
                        let Ok((hash, bytes)) = next else { return Ok(written) };
                        written += u64::from(store_object_unsynced(&workdir, &hash, &bytes)?);
                    }
                })
            })
            .collect();
        ObjectWriter {
            sender: std::sync::Mutex::new(Some(sender)),
            workers: std::sync::Mutex::new(workers),
            queued: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Queues an object; fails only when the writers have stopped on an error (reported by [`Self::finish`]).
    pub fn store(&self, hash: String, bytes: Vec<u8>) -> Result<()> {
        if !self.queued.lock().expect("writer poisoned").insert(hash.clone()) {
            return Ok(());
        }
        let sender = self.sender.lock().expect("writer poisoned").clone();
        match sender.map(|s| s.send((hash, bytes))) {
            Some(Ok(())) => Ok(()),
            // A writer hit an error and the queue closed: report that error rather than a vague one.
            _ => Err(self.finish().err().unwrap_or_else(|| anyhow::anyhow!("cache writers stopped"))),
        }
    }

    /// Waits for every queued object; returns how many new objects were written, or the first write error.
    pub fn finish(&self) -> Result<u64> {
        drop(self.sender.lock().expect("writer poisoned").take());
        let workers = std::mem::take(&mut *self.workers.lock().expect("writer poisoned"));
        let mut written = 0;
        for worker in workers {
            written += worker.join().map_err(|_| anyhow::anyhow!("a cache writer panicked"))??;
        }
        Ok(written)
    }
}

/// Makes every object written by [`store_object_unsynced`] durable: one `syncfs` of the cache's file system on
/// Linux (instead of thousands of fsyncs), a sync of each object directory elsewhere.
pub fn sync_objects(workdir: &Workdir) -> Result<()> {
    let dir = workdir.objects_dir();
    let handle = File::open(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the descriptor, which `handle` keeps open for the duration of the call.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("syncfs on the cache failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        for entry in fs::read_dir(&dir)? {
            for object in fs::read_dir(entry?.path())? {
                File::open(object?.path())?.sync_all()?;
            }
        }
        handle.sync_all()?;
    }
    Ok(())
}

/// Reads an object's bytes. Fails (naming the hash) when it is missing; callers that must trust the bytes use
/// [`read_object_verified`].
pub fn read_object(workdir: &Workdir, hash: &str) -> Result<Vec<u8>> {
    if !is_hash(hash) {
        anyhow::bail!("invalid cache object name {hash:?}: expected 64 lowercase hex digits");
    }
    let path = workdir.object_path(hash);
    std::fs::read(&path)
        .with_context(|| format!("cache object {hash} is missing ({}): re-run `anime-pipe ingest`", path.display()))
}

pub fn object_exists(workdir: &Workdir, hash: &str) -> bool {
    is_hash(hash) && workdir.object_path(hash).is_file()
}

/// A blake3 hex digest: 64 lowercase hex digits (anything else could escape the objects directory).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Decodes an object to RGB8 under `limits`: the outer error is the workdir's (a missing object), the inner one the
/// image's (it no longer decodes under these limits), which stages record as a `decode_failed` row.
pub fn load_rgb8(
    workdir: &Workdir,
    hash: &str,
    limits: &crate::imageio::Limits,
) -> Result<Result<image::RgbImage, crate::imageio::DecodeError>> {
    let bytes = read_object(workdir, hash)?;
    Ok(crate::imageio::decode_rgb8(&bytes, limits).map(|d| d.image))
}

/// Reads an object and checks that its bytes still hash to its name (detects on-disk corruption).
pub fn read_object_verified(workdir: &Workdir, hash: &str) -> Result<Vec<u8>> {
    let bytes = read_object(workdir, hash)?;
    let actual = blake3::hash(&bytes).to_hex();
    if actual.as_str() != hash {
        anyhow::bail!("cache object {hash} is corrupt: its bytes hash to {actual}");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_under_their_blake3_name() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let hash = store_object(&wd, b"pixels").unwrap();
        assert_eq!(hash, blake3::hash(b"pixels").to_hex().as_str());
        assert!(object_exists(&wd, &hash));
        assert_eq!(read_object_verified(&wd, &hash).unwrap(), b"pixels");
        assert!(wd.object_path(&hash).starts_with(wd.objects_dir().join(&hash[..2])));
        // Storing again is a no-op that still succeeds.
        assert_eq!(store_object(&wd, b"pixels").unwrap(), hash);
    }

    #[test]
    fn bad_names_and_corruption_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        assert!(!object_exists(&wd, "../../etc/passwd"));
        assert!(read_object(&wd, "../../etc/passwd").is_err());
        let hash = store_object(&wd, b"abc").unwrap();
        fs::write(wd.object_path(&hash), b"abd").unwrap();
        let err = read_object_verified(&wd, &hash).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        // A torn object (wrong size) is rewritten by the next store.
        fs::write(wd.object_path(&hash), b"a").unwrap();
        store_object(&wd, b"abc").unwrap();
        assert_eq!(read_object(&wd, &hash).unwrap(), b"abc");
    }

    #[test]
    fn concurrent_stores_of_the_same_bytes_leave_one_intact_object() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let bytes = vec![7u8; 1 << 16];
        let hash = blake3::hash(&bytes).to_hex().to_string();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| store_object_unsynced(&wd, &hash, &bytes).unwrap());
            }
        });
        sync_objects(&wd).unwrap();
        assert_eq!(read_object_verified(&wd, &hash).unwrap(), bytes);
        let leftovers = fs::read_dir(wd.object_path(&hash).parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "temp files left behind");
    }
}
