//! `anime-pipe verify`: checks that what the manifests describe is what is on disk.
//!
//! Problems (any of them makes the command fail with exit status 2, after listing them all):
//! - a stage manifest whose bytes no longer match the checksum its stamp recorded when it was published;
//! - a cache object referenced (`object` or `upscaled_object` column) by the ingest, dedup, crop, upscale, clean
//!   or pack manifest that is missing, or whose bytes no longer hash (blake3) to its name;
//! - a shard listed in pack.parquet that is missing, whose blake3 differs from the `shard_blake3` recorded for it,
//!   whose safetensors header does not parse, or whose `images` tensor is not U8 [N, size, size, 3] with N = the
//!   manifest rows of that shard and indices 0..N, or whose metadata (`count`, `size`, `split`, `keys`) disagrees
//!   with the manifest.
//!
//! Notes (reported, not failures): a manifest without a stamp (its run was interrupted before the stamp), and files
//! under `shards/` the pack manifest does not list (leftovers of an interrupted pack; the next pack removes them).
use crate::env::Env;
use crate::manifest::columns;
use crate::manifest::Status;
use crate::manifest::{file_blake3, read_parquet, Stamp};
use crate::named::Named;
use crate::report::Summary;
use crate::workdir::Workdir;
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Manifests whose object columns name cache objects that must exist.
const OBJECT_STAGES: [&str; 6] = ["ingest", "dedup", "crop", "upscale", "clean", "pack"];
const OBJECT_COLUMNS: [&str; 2] = ["object", "upscaled_object"];

/// What verify found: problems fail the command, notes do not.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Findings {
    pub manifests: u64,
    pub objects: u64,
    pub shards: u64,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

pub fn run(env: &Env) -> Result<Summary> {
    let mut summary = Summary::start("verify");
    let findings = check(&env.workdir)?;
    summary
        .count("manifests checked", findings.manifests)
        .count("objects checked", findings.objects)
        .count("shards checked", findings.shards)
        .count("problems", findings.problems.len() as u64);
    for note in &findings.notes {
        summary.fact("note", note);
    }
    if !findings.problems.is_empty() {
        if env.reporter.json {
            println!("{}", serde_json::json!({ "stage": "verify", "ok": false, "findings": findings }));
        }
        let list: Vec<String> = findings.problems.iter().map(|p| format!("  - {p}")).collect();
        bail!("verify found {} problem(s):\n{}", findings.problems.len(), list.join("\n"));
    }
    summary.fact("result", "ok: every manifest, object and shard matches its checksum");
    Ok(summary.finish())
}

/// Runs every check; Err only when the workdir cannot be read at all.
pub fn check(workdir: &Workdir) -> Result<Findings> {
    let mut findings = Findings::default();
    let names = crate::digest::manifest_names(workdir)?;
    findings.manifests = names.len() as u64;
    for name in &names {
        check_stamp(workdir, name.trim_end_matches(".parquet"), &mut findings);
    }
    let objects = referenced_objects(workdir, &mut findings)?;
    findings.objects = objects.len() as u64;
    let mut problems: Vec<String> = objects.par_iter().filter_map(|o| check_object(workdir, o)).collect();
    findings.problems.append(&mut problems);
    check_shards(workdir, &mut findings)?;
    Ok(findings)
}

fn check_stamp(workdir: &Workdir, stage: &str, findings: &mut Findings) {
    let Ok(text) = std::fs::read_to_string(workdir.stamp_path(stage)) else {
        findings.notes.push(format!("manifests/{stage}.parquet has no stamp (its run did not finish publishing)"));
        return;
    };
    let recorded = match serde_json::from_str::<Stamp>(&text) {
        Ok(stamp) => stamp.manifest,
        Err(e) => return findings.problems.push(format!("manifests/{stage}.stamp.json is not a valid stamp: {e}")),
    };
    match file_blake3(&workdir.manifest_path(stage)) {
        Ok(actual) if actual == recorded => {}
        Ok(actual) => findings.problems.push(format!(
            "manifests/{stage}.parquet was modified after publication: blake3 {actual}, its stamp recorded {recorded}"
        )),
        Err(e) => findings.problems.push(format!("manifests/{stage}.parquet: {e:#}")),
    }
}

/// Distinct non-null object names of the object-bearing manifests present, sorted.
fn referenced_objects(workdir: &Workdir, findings: &mut Findings) -> Result<BTreeSet<String>> {
    let mut objects = BTreeSet::new();
    for stage in OBJECT_STAGES {
        let path = workdir.manifest_path(stage);
        if !path.exists() {
            continue;
        }
        let df = match read_parquet(&path) {
            Ok(df) => df,
            Err(e) => {
                findings.problems.push(format!("{e:#}"));
                continue;
            }
        };
        for column in OBJECT_COLUMNS.into_iter().filter(|c| columns::has(&df, c)) {
            objects.extend(columns::opt_strings(&df, column)?.into_iter().flatten());
        }
    }
    Ok(objects)
}

fn check_object(workdir: &Workdir, object: &str) -> Option<String> {
    if !crate::cache::is_hash(object) {
        return Some(format!("object {object:?} is not a blake3 hex name"));
    }
    let path = workdir.object_path(object);
    if !path.is_file() {
        return Some(format!("object {object} is missing ({})", path.display()));
    }
    match file_blake3(&path) {
        Ok(actual) if actual == object => None,
        Ok(actual) => Some(format!("object {object} is corrupt: its bytes hash to {actual}")),
        Err(e) => Some(format!("object {object}: {e:#}")),
    }
}

/// The manifest's view of one shard file.
#[derive(Debug, Default)]
struct ShardEntry {
    sizes: BTreeSet<u32>,
    splits: BTreeSet<String>,
    checksums: BTreeSet<String>,
    /// index -> key
    samples: BTreeMap<u32, String>,
    duplicate_indices: Vec<u32>,
}

fn check_shards(workdir: &Workdir, findings: &mut Findings) -> Result<()> {
    let path = workdir.manifest_path("pack");
    if !path.exists() {
        return Ok(());
    }
    let df = match read_parquet(&path) {
        Ok(df) => df,
        Err(_) => return Ok(()), // already reported by referenced_objects
    };
    let mut shards: BTreeMap<String, ShardEntry> = BTreeMap::new();
    let (keys, sizes, splits, status) = (
        columns::strings(&df, "key")?,
        columns::u32s(&df, "size")?,
        columns::strings(&df, "split")?,
        columns::strings(&df, "status")?,
    );
    let (shard_col, index, checksum) = (
        columns::opt_strings(&df, "shard")?,
        columns::opt_u32s(&df, "index")?,
        columns::opt_strings(&df, "shard_blake3")?,
    );
    for row in (0..df.height()).filter(|&r| status[r] == Status::Ok.name()) {
        let (Some(shard), Some(index)) = (&shard_col[row], index[row]) else {
            findings.problems.push(format!("pack.parquet row {row} ({}): status ok without shard/index", keys[row]));
            continue;
        };
        let entry = shards.entry(shard.clone()).or_default();
        entry.sizes.insert(sizes[row]);
        entry.splits.insert(splits[row].clone());
        entry.checksums.extend(checksum[row].clone());
        if entry.samples.insert(index, keys[row].clone()).is_some() {
            entry.duplicate_indices.push(index);
        }
    }
    findings.shards = shards.len() as u64;
    let mut problems: Vec<String> =
        shards.par_iter().flat_map(|(shard, entry)| check_shard(workdir, shard, entry)).collect();
    findings.problems.append(&mut problems);
    findings.notes.extend(unlisted_shard_files(workdir, &shards.keys().cloned().collect())?);
    Ok(())
}

fn check_shard(workdir: &Workdir, shard: &str, entry: &ShardEntry) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(format!("shard {shard}: {text}"));
    if shard.split('/').any(|part| part == ".." || part.is_empty()) || !shard.starts_with("shards/") {
        problem("not a path under shards/".into());
        return problems;
    }
    let (size, split, recorded) = match (single(&entry.sizes), single(&entry.splits), single(&entry.checksums)) {
        (Some(size), Some(split), Some(recorded)) => (*size, split.clone(), recorded.clone()),
        _ => {
            problem(format!(
                "manifest rows disagree or lack values: sizes {:?}, splits {:?}, checksums {:?}",
                entry.sizes, entry.splits, entry.checksums
            ));
            return problems;
        }
    };
    for index in &entry.duplicate_indices {
        problem(format!("index {index} is listed more than once"));
    }
    let n = entry.samples.len();
    if entry.samples.keys().copied().ne(0..n as u32) {
        problem(format!("manifest indices are not exactly 0..{n}"));
    }
    let bytes = match std::fs::read(workdir.root().join(shard)) {
        Ok(bytes) => bytes,
        Err(e) => {
            problem(format!("cannot read: {e}"));
            return problems;
        }
    };
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if actual != recorded {
        problem(format!("checksum mismatch: file hashes to {actual}, pack.parquet recorded {recorded}"));
    }
    let keys: Vec<&String> = entry.samples.values().collect();
    for text in check_shard_header(&bytes, size, &split, &keys) {
        problem(text);
    }
    problems
}

fn single<T>(set: &BTreeSet<T>) -> Option<&T> {
    (set.len() == 1).then(|| set.iter().next()).flatten()
}

/// Header checks of one shard against the manifest: tensor, dtype, shape, metadata.
pub fn check_shard_header(bytes: &[u8], size: u32, split: &str, keys: &[&String]) -> Vec<String> {
    use safetensors::{Dtype, SafeTensors};
    let n = keys.len();
    let tensors = match SafeTensors::deserialize(bytes) {
        Ok(t) => t,
        Err(e) => return vec![format!("not a valid safetensors file: {e}")],
    };
    let mut problems = Vec::new();
    match tensors.tensor(crate::shards::TENSOR_NAME) {
        Err(e) => problems.push(format!("no `images` tensor: {e}")),
        Ok(view) => {
            if view.dtype() != Dtype::U8 {
                problems.push(format!("images dtype is {:?}, expected U8", view.dtype()));
            }
            let expected = [n, size as usize, size as usize, 3];
            if view.shape() != expected {
                problems.push(format!("images shape is {:?}, expected {expected:?} from pack.parquet", view.shape()));
            }
        }
    }
    let metadata = match SafeTensors::read_metadata(bytes) {
        Ok((_, m)) => m.metadata().clone().unwrap_or_default(),
        Err(e) => return vec![format!("unreadable metadata: {e}")],
    };
    let expected = [
        ("format", crate::shards::SHARD_FORMAT.to_string()),
        ("count", n.to_string()),
        ("size", size.to_string()),
        ("split", split.to_string()),
        ("keys", serde_json::to_string(keys).unwrap_or_default()),
    ];
    for (name, value) in expected {
        if metadata.get(name) != Some(&value) {
            problems.push(format!("metadata `{name}` disagrees with pack.parquet"));
        }
    }
    problems
}

/// Files under shards/<size>/ that the manifest does not list.
fn unlisted_shard_files(workdir: &Workdir, listed: &BTreeSet<String>) -> Result<Vec<String>> {
    let root = workdir.root().join("shards");
    let mut notes = Vec::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(workdir.root())?.to_string_lossy().replace('\\', "/");
        if !listed.contains(&relative) {
            notes.push(format!("{relative} is not listed in pack.parquet (leftover; the next pack removes it)"));
        }
    }
    Ok(notes)
}
