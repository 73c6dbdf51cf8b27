//! Partitioned stage runs: which items a partition works on, and where its rows go.
//!
//! A partition (see `crate::partition`) of a per-item stage computes the results of its own items (kept in the
//! stage's memo, `crate::memo`) and writes a part manifest, `manifests/parts/<stage>/<fingerprint>/part-K-of-N.parquet`,
//! then its completion marker `part-K-of-N.done.json` (written last, atomically: a part without its marker is not
//! done). It writes nothing another partition writes, and never the stage's manifest. `anime-pipe merge STAGE` (or
//! the next stage, on its own) checks that every part of the current fingerprint is done and runs the stage once
//! more without a partition: every item is then read from the memo, so the merged manifest is the very one an
//! unpartitioned run writes.
use crate::env::Env;
use crate::manifest::{publish_written, Item, ManifestWriter};
use crate::named::Named;
use crate::partition::Partition;
use crate::stages::Stage;
use crate::workdir::{atomic_write, Workdir};
use anyhow::Result;
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The items this process works on: all of them, or its partition's (by content hash).
pub fn select<'a>(env: &Env, items: &'a [Item]) -> Vec<&'a Item> {
    match &env.partition {
        Some(p) => items.iter().filter(|it| p.owns(&it.object)).collect(),
        None => items.iter().collect(),
    }
}

/// `manifests/parts/<stage>/<fingerprint>/`.
pub fn parts_dir(workdir: &Workdir, stage: Stage, fingerprint: &str) -> PathBuf {
    workdir.manifests_dir().join("parts").join(stage.name()).join(fingerprint)
}

/// `part-KKKK-of-NNNN`: the name of a partition's files.
pub fn part_name(p: &Partition) -> String {
    format!("part-{:04}-of-{:04}", p.index, p.count)
}

/// What a completion marker records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub index: u32,
    pub count: u32,
    pub origin: String,
    pub rows: usize,
    pub computed: u64,
    pub reused: u64,
}

/// Publishes the stage's rows: the stage manifest (stamped), or this partition's part and then its marker.
/// Returns where they went.
pub fn publish(
    env: &Env,
    stage: Stage,
    df: &mut DataFrame,
    fingerprint: &str,
    computed: u64,
    reused: u64,
) -> Result<PathBuf> {
    let mut publisher = Publisher::start(env, stage, fingerprint)?;
    publisher.push(df.clone())?;
    publisher.finish(computed, reused)
}

/// [`publish`] a batch of rows at a time: the rows go to a temporary file as they come, and appear (stage
/// manifest and stamp, or part and marker) only on [`Publisher::finish`].
pub struct Publisher<'a> {
    env: &'a Env,
    stage: Stage,
    fingerprint: String,
    writer: ManifestWriter,
    target: PathBuf,
}

impl<'a> Publisher<'a> {
    pub fn start(env: &'a Env, stage: Stage, fingerprint: &str) -> Result<Self> {
        let target = match &env.partition {
            None => env.workdir.manifest_path(stage.name()),
            Some(p) => parts_dir(&env.workdir, stage, fingerprint).join(format!("{}.parquet", part_name(p))),
        };
        let writer = ManifestWriter::create(&target)?;
        Ok(Self { env, stage, fingerprint: fingerprint.to_string(), writer, target })
    }

    /// Appends rows, in the manifest's canonical order.
    pub fn push(&mut self, df: DataFrame) -> Result<()> {
        self.writer.push(df)
    }

    pub fn finish(self, computed: u64, reused: u64) -> Result<PathBuf> {
        let Self { env, stage, fingerprint, writer, target } = self;
        let Some(p) = &env.partition else {
            publish_written(&env.workdir, stage.name(), writer, &fingerprint)?;
            return Ok(target);
        };
        let rows = writer.finish()?;
        let marker = Marker { index: p.index, count: p.count, origin: p.origin.clone(), rows, computed, reused };
        let dir = parts_dir(&env.workdir, stage, &fingerprint);
        atomic_write(
            &dir.join(format!("{}.done.json", part_name(p))),
            serde_json::to_string_pretty(&marker)?.as_bytes(),
        )?;
        Ok(target)
    }
}

/// The parts of `stage` under `fingerprint`: None when there are none; else the partition count and the indices
/// whose marker is missing.
pub fn progress(workdir: &Workdir, stage: Stage, fingerprint: &str) -> Result<Option<(u32, Vec<u32>)>> {
    let dir = parts_dir(workdir, stage, fingerprint);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut count = None;
    let mut done = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".done.json") {
            let marker: Marker = serde_json::from_slice(&std::fs::read(&path)?)?;
            if count.is_some_and(|c| c != marker.count) {
                anyhow::bail!("{}: parts of different partition counts; delete the folder and re-run", dir.display());
            }
            count = Some(marker.count);
            done.insert(marker.index);
        }
    }
    Ok(count.map(|n| (n, (0..n).filter(|k| !done.contains(k)).collect())))
}
