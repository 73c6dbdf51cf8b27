//! The dataset digest: one blake3 hash that identifies everything a workdir's pipeline produced, so two runs (other
//! machines, other `-j`, other file-system order) can be compared with one string.
//!
//! Covered, in this order:
//! 1. every stage manifest `manifests/<stage>.parquet` (`<stage>` made of `a-z`, `0-9`, `_`, not starting with
//!    `_`), sorted by file name. Stamps (`*.stamp.json`) are excluded: they record inputs (which include absolute
//!    source state), not outputs. So is any other file there (private indexes, temp files).
//! 2. every shard listed in `manifests/pack.parquet` (`shard` column), sorted by its workdir-relative path. Files
//!    under `shards/` that the manifest does not list are not part of the dataset (`pack` deletes them; `verify`
//!    reports them).
//!
//! Encoding (reproducible with any blake3 implementation): `"anime-pipe-digest/1\n"`, then per file the kind
//! (`"manifest\n"` or `"shard\n"`), its name (manifest file name, or relative shard path with '/'), `"\n"`, its
//! length as u64 little-endian, and its bytes. The digest is the lowercase hex of the result.
use crate::manifest::columns;
use crate::workdir::Workdir;
use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

const DOMAIN: &[u8] = b"anime-pipe-digest/1\n";

pub fn dataset_digest(workdir: &Workdir) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(DOMAIN);
    for name in manifest_names(workdir)? {
        add_file(&mut hasher, "manifest", &name, &workdir.manifests_dir().join(&name))?;
    }
    for shard in shard_paths(workdir)? {
        add_file(&mut hasher, "shard", &shard, &workdir.root().join(&shard))?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// File names of the stage manifests, sorted.
pub fn manifest_names(workdir: &Workdir) -> Result<Vec<String>> {
    let dir = workdir.manifests_dir();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if name.strip_suffix(".parquet").is_some_and(is_stage_name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn is_stage_name(stem: &str) -> bool {
    !stem.is_empty()
        && !stem.starts_with('_')
        && stem.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Distinct workdir-relative shard paths listed in pack.parquet, sorted; empty when there is no pack manifest.
pub fn shard_paths(workdir: &Workdir) -> Result<Vec<String>> {
    let path = workdir.manifest_path("pack");
    if !path.exists() {
        return Ok(Vec::new());
    }
    // One column, a row group at a time: pack.parquet has a row per image and size.
    let mut shards = std::collections::BTreeSet::new();
    for group in crate::manifest::RowGroups::open(&path)?.with_columns(&["shard"]) {
        shards.extend(columns::opt_strings(&group?, "shard")?.into_iter().flatten());
    }
    Ok(shards.into_iter().collect())
}

fn add_file(hasher: &mut blake3::Hasher, kind: &str, name: &str, path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("dataset digest: cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    hasher.update(kind.as_bytes()).update(b"\n").update(name.as_bytes()).update(b"\n").update(&len.to_le_bytes());
    hasher.update_reader(file).with_context(|| format!("dataset digest: cannot read {}", path.display()))?;
    Ok(())
}
