//! The working directory layout and atomic file publication.
//!
//! ```text
//! <workdir>/manifests/<stage>.parquet    one manifest per stage (+ <stage>.stamp.json: inputs fingerprint)
//! <workdir>/cache/objects/ab/cdef...     content-addressed image bytes (blake3 of the bytes)
//! <workdir>/shards/<size>/shard-00000.safetensors
//! <workdir>/models/                      ONNX models referenced by pipeline.yaml
//! ```
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
}

/// Writes `bytes` to `path` atomically: a uniquely named temp file in the same directory, fsync, rename.
/// A killed process leaves at worst a stray `*.tmp`, never a half-written `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |file| file.write_all(bytes).map_err(Into::into))
}

/// Like [`atomic_write`] but lets the caller stream into the temp file.
pub fn atomic_write_with(path: &Path, fill: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    let dir = path.parent().context("atomic_write: path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().context("atomic_write: path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
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
    fn object_paths_are_split_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Workdir::open(dir.path()).unwrap();
        let p = wd.object_path("abcdef");
        assert!(p.ends_with("cache/objects/ab/cdef"));
    }
}
