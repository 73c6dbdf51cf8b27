//! The working directory layout and atomic file publication.
//!
//! ```text
//! <workdir>/manifests/<stage>.parquet    one manifest per stage (+ <stage>.stamp.json: inputs fingerprint)
//! <workdir>/cache/objects/ab/cdef...     content-addressed image bytes (blake3 of the bytes)
//! <workdir>/shards/<size>/shard-00000.safetensors
//! <workdir>/locks/<name>.lock            advisory locks: one process at a time per stage (see [`Workdir::lock`])
//! ```
//!
//! ## Several processes, one workdir
//! Every stage holds `locks/<stage>.lock` while it computes its inputs, runs and publishes, so a second process
//! running the same stage waits (saying so) and then finds the work done. The locks are `flock`s held by the
//! process (std's `File::lock`): the kernel releases them when the process dies, so a killed run never leaves a
//! stale lock. On a shared file system (NFS, Lustre) flock is only as good as the file system's support for it;
//! partitioned runs on a cluster do not rely on it (each partition writes only its own files and publishes them by
//! rename within one directory).
use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Workdir {
    root: PathBuf,
}

impl Workdir {
    /// Opens (creating if needed) a working directory; an unwritable one is a hard error.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["manifests", "cache/objects", "shards"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {} (is the workdir writable?)", dir.display()))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }
    pub fn manifest_path(&self, stage: &str) -> PathBuf {
        self.manifests_dir().join(format!("{stage}.parquet"))
    }
    pub fn stamp_path(&self, stage: &str) -> PathBuf {
        self.manifests_dir().join(format!("{stage}.stamp.json"))
    }
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("cache/objects")
    }
    /// `cache/objects/<first 2 hex>/<remaining hex>`.
    pub fn object_path(&self, hash_hex: &str) -> PathBuf {
        let (head, tail) = hash_hex.split_at(2);
        self.objects_dir().join(head).join(tail)
    }
    pub fn shards_dir(&self, size: u32) -> PathBuf {
        self.root.join("shards").join(size.to_string())
    }
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Takes the advisory lock `locks/<name>.lock`, waiting for the process that holds it; `on_wait` is called once,
    /// before waiting, with the lock file's path (to tell the user). Held until the returned guard is dropped or
    /// the process ends.
    pub fn lock(&self, name: &str, on_wait: impl FnOnce(&Path)) -> Result<WorkdirLock> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        fs::create_dir_all(path.parent().expect("locks/ has a parent"))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait(&path);
                file.lock().with_context(|| format!("cannot take the lock {}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot take the lock {}", path.display()))
            }
        }
        Ok(WorkdirLock { _file: file })
    }
}

/// A held workdir lock; dropping it releases the lock.
#[derive(Debug)]
pub struct WorkdirLock {
    _file: fs::File,
}

/// Writes `bytes` to `path` atomically: a uniquely named temp file in the same directory, fsync, rename.
/// A killed process leaves at worst a stray `*.tmp`, never a half-written `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |file| file.write_all(bytes).map_err(Into::into))
}

/// Like [`atomic_write`] but lets the caller stream into the temp file.
/// `.<name>.<pid>.tmp` in `path`'s folder (created if missing): written there, then renamed over `path` (a
/// rename within one folder is atomic, also on the shared file systems the workdir may live on).
pub fn temp_path_beside(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().context("atomic write: the path has no parent folder")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().context("atomic write: the path has no file name")?.to_string_lossy();
    Ok(dir.join(format!(".{name}.{}.tmp", std::process::id())))
}

pub fn atomic_write_with(path: &Path, fill: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    let tmp = temp_path_beside(path)?;
    let result = (|| {
        let mut file = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        fill(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("cannot publish {}", path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.bin")]);
    }

    #[test]
    fn a_second_lock_on_the_same_name_waits_and_another_name_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let held = wd.lock("pack", |_| panic!("nobody holds it yet")).unwrap();
        // Another name is independent.
        let _other = wd.lock("clean", |_| panic!("clean is free")).unwrap();
        // The same name from another open file description (as another process would) must wait.
        let path = dir.path().join("locks/pack.lock");
        let second = fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(matches!(second.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop(held);
        second.try_lock().unwrap();
    }

    #[test]
    fn object_paths_are_split_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let p = wd.object_path("abcdef");
        assert!(p.ends_with("cache/objects/ab/cdef"));
    }
}
