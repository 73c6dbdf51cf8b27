//! `anime-pipe gc`: removes what no current manifest or memo needs, and says how many bytes that freed.
//!
//! Kept: every cache object a stage manifest names (`object`, `upscaled_object`, `parent_object`), every object
//! a current memo record refers to (face crops, upscaled images), and the memos of the plan's current settings
//! (dedup's near pairs, crop, upscale, and pack's resized pixels).
//! Removed: other cache objects (re-ingesting recreates any that a source still holds), memos of settings no longer
//! in use, and the part manifests of partitioned runs that have since been merged or superseded. It holds every
//! stage's workdir lock meanwhile, so no stage runs beside it.
use crate::env::Env;
use crate::manifest::columns;
use crate::memo;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::{crop, dedup, pack, upscale, Plan, Stage};
use crate::workdir::WorkdirLock;
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::Path;

/// What gc found; with `dry_run` nothing is deleted.
pub fn run(env: &Env, plan: &Plan, dry_run: bool) -> Result<Summary> {
    let mut summary = Summary::start("gc");
    let _locks = lock_every_stage(env)?;
    let current_memos = current_memo_keys(env, plan);
    let mut keep = referenced_by_manifests(env)?;
    let (mut freed, mut memos_removed) = (0u64, 0u64);
    for (stage, key, dir) in memo::directories(&env.workdir)? {
        if current_memos.contains(&(stage.clone(), key.clone())) {
            keep.extend(memo_refs(&dir)?);
        } else {
            freed += remove(&dir, dry_run)?;
            memos_removed += 1;
        }
    }
    let (objects, object_bytes) = remove_unreferenced_objects(env, &keep, dry_run)?;
    freed += object_bytes;
    let parts = env.workdir.manifests_dir().join("parts");
    let parts_bytes = if parts.is_dir() && merged_everything(env, plan) { remove(&parts, dry_run)? } else { 0 };
    freed += parts_bytes;
    summary
        .count("objects kept", keep.len() as u64)
        .count("objects removed", objects)
        .count("memos removed", memos_removed)
        .count("bytes freed", freed);
    summary.fact("mode", if dry_run { "dry run (nothing deleted)" } else { "deleted" });
    summary.fact("freed", format!("{:.1} MB", freed as f64 / 1e6));
    Ok(summary.finish())
}

fn lock_every_stage(env: &Env) -> Result<Vec<WorkdirLock>> {
    Stage::ALL
        .iter()
        .map(|s| {
            env.workdir
                .lock(s.name(), |path| eprintln!("gc: waiting for a running stage ({} is locked) ...", path.display()))
        })
        .collect()
}

/// (stage, key) of the memos the current plan would read. A stage whose inputs cannot be built now (its upstream
/// manifest missing) keeps no memo: its results are stale or never used.
fn current_memo_keys(env: &Env, plan: &Plan) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    if let Ok(inputs) = dedup::Inputs::new(plan, &env.workdir) {
        keys.insert((Stage::Dedup.name().to_string(), inputs.pairs_key()));
    }
    if let Ok(inputs) = crop::Inputs::new(plan, &env.workdir) {
        keys.insert((Stage::Crop.name().to_string(), inputs.item_key()));
    }
    if let Ok(inputs) = upscale::Inputs::new(plan, &env.workdir) {
        keys.insert((Stage::Upscale.name().to_string(), inputs.item_key()));
    }
    if let Ok(inputs) = pack::Inputs::new(plan, &env.workdir) {
        keys.insert((Stage::Pack.name().to_string(), inputs.item_key()));
    }
    keys
}

fn referenced_by_manifests(env: &Env) -> Result<BTreeSet<String>> {
    let mut keep = BTreeSet::new();
    for name in crate::digest::manifest_names(&env.workdir)? {
        let path = env.workdir.manifests_dir().join(&name);
        let wanted = ["object", "upscaled_object", "parent_object"];
        // Only the object columns, a row group at a time.
        for group in crate::manifest::RowGroups::open(&path)?.with_columns(&wanted) {
            let group = group?;
            for column in wanted.iter().filter(|c| columns::has(&group, c)) {
                keep.extend(columns::opt_strings(&group, column)?.into_iter().flatten());
            }
        }
    }
    Ok(keep)
}

fn memo_refs(dir: &Path) -> Result<Vec<String>> {
    let mut refs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "bin") {
            refs.extend(memo::segment_refs(&path)?);
        }
    }
    Ok(refs)
}

fn remove_unreferenced_objects(env: &Env, keep: &BTreeSet<String>, dry_run: bool) -> Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    let root = env.workdir.objects_dir();
    for prefix in std::fs::read_dir(&root)? {
        let prefix = prefix?;
        if !prefix.file_type()?.is_dir() {
            continue;
        }
        for object in std::fs::read_dir(prefix.path())? {
            let object = object?;
            let hash = format!("{}{}", prefix.file_name().to_string_lossy(), object.file_name().to_string_lossy());
            if !keep.contains(&hash) {
                bytes += object.metadata()?.len();
                count += 1;
                if !dry_run {
                    std::fs::remove_file(object.path())?;
                }
            }
        }
    }
    Ok((count, bytes))
}

/// True when every partitioned stage's manifest is current, so no part is waiting to be merged.
fn merged_everything(env: &Env, plan: &Plan) -> bool {
    crate::stages::run::PARTITIONED.iter().all(|&stage| {
        !plan.stages.contains(&stage)
            || stage
                .inputs(plan, &env.workdir)
                .is_ok_and(|i| crate::manifest::is_up_to_date(&env.workdir, stage.name(), &i.fingerprint()))
    })
}

/// Bytes under `path`, then removes it (unless a dry run).
fn remove(path: &Path, dry_run: bool) -> Result<u64> {
    let bytes = size_of(path)?;
    if !dry_run {
        std::fs::remove_dir_all(path)?;
    }
    Ok(bytes)
}

fn size_of(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += size_of(&entry?.path())?;
    }
    Ok(total)
}
