//! Content-addressed object store: `cache/objects/<2 hex>/<62 hex>` holds bytes whose blake3 is the file name.
//!
//! Ingest stores every accepted file here once, so later stages never re-read (or re-extract) the sources.
//! Objects are immutable and written atomically; storing an object that already exists is a no-op.
use crate::workdir::{atomic_write, Workdir};
use anyhow::{Context, Result};

/// Stores `bytes` and returns their blake3 hex. Atomic (temp + rename); a no-op when the object already exists.
pub fn store_object(workdir: &Workdir, bytes: &[u8]) -> Result<String> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    store_object_with_hash(workdir, &hash, bytes)?;
    Ok(hash)
}

/// Like [`store_object`] when the caller already hashed the bytes (ingest hashes every file once).
pub fn store_object_with_hash(workdir: &Workdir, hash: &str, bytes: &[u8]) -> Result<()> {
    if object_exists(workdir, hash) {
        return Ok(());
    }
    let path = workdir.object_path(hash);
    atomic_write(&path, bytes).with_context(|| format!("cannot store cache object {hash}"))
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

/// Reads an object and checks that its bytes still hash to its name (detects on-disk corruption).
pub fn read_object_verified(workdir: &Workdir, hash: &str) -> Result<Vec<u8>> {
    let bytes = read_object(workdir, hash)?;
    let actual = blake3::hash(&bytes).to_hex();
    if actual.as_str() != hash {
        anyhow::bail!("cache object {hash} is corrupt: its bytes hash to {actual}");
    }
    Ok(bytes)
}
