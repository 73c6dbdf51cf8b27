//! `pipeline.lock`: what a workdir's data stages produced, one fact per line, so that a pull request shows a
//! changed dataset as a readable diff and `anime-pipe run --locked` can say which stage changed and how.
//!
//! The file is TOML (dotted keys, one section per stage in pipeline order, then the shards), written by
//! [`Lock::render`] and read back by [`Lock::parse`]:
//!
//! ```text
//! # pipeline.lock: written by `anime-pipe lock`, checked by `anime-pipe run --locked`. One fact per line.
//! anime_pipe = "0.1.0"
//! onnxruntime = "1.31.1"
//! dataset_digest = "3f0c…"
//!
//! [clean]
//! inputs = "9a41…"          # the stage's fingerprint: its settings and its upstream manifest (by hash)
//! manifest = "5be2…"        # blake3 of manifests/clean.parquet
//! rows = 183
//! status.ok = 179
//! status.rejected = 4
//! reason.bad_aspect = 1
//! reason.too_small = 3
//!
//! [shards]
//! "shards/64/train-00000.safetensors" = "0d1e…"
//! ```
use crate::digest::{dataset_digest, shard_paths};
use crate::manifest::{columns, file_blake3, read_parquet, Status};
use crate::named::Named;
use crate::stages::{Plan, Stage};
use crate::workdir::Workdir;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The lock file's name, beside pipeline.yaml.
pub const FILE_NAME: &str = "pipeline.lock";
const HEADER: &str =
    "# pipeline.lock: written by `anime-pipe lock`, checked by `anime-pipe run --locked`. One fact per line.";

/// One stage's facts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StageLock {
    /// `Inputs::lock_fingerprint`: settings, upstream manifest hash, model hashes.
    pub inputs: String,
    /// blake3 of `manifests/<stage>.parquet`.
    pub manifest: String,
    pub rows: u64,
    /// Rows per `status`.
    pub status: BTreeMap<String, u64>,
    /// Rows per `reason` (rows that are not ok).
    pub reason: BTreeMap<String, u64>,
}

/// Everything `pipeline.lock` records.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Lock {
    pub anime_pipe: String,
    pub onnxruntime: String,
    pub dataset_digest: String,
    /// In pipeline order.
    pub stages: Vec<(Stage, StageLock)>,
    /// Workdir-relative shard path -> blake3.
    pub shards: BTreeMap<String, String>,
}

impl Lock {
    /// The lock of `workdir` as `plan`'s stages left it (every enabled stage's manifest must exist).
    pub fn of(workdir: &Workdir, plan: &Plan) -> Result<Lock> {
        let mut stages = Vec::new();
        for &stage in &plan.stages {
            let inputs = stage.inputs(plan, workdir)?.lock_fingerprint();
            stages.push((stage, stage_lock(workdir, stage, inputs)?));
        }
        let mut shards = BTreeMap::new();
        for shard in shard_paths(workdir)? {
            shards.insert(shard.clone(), file_blake3(&workdir.root().join(&shard))?);
        }
        Ok(Lock {
            anime_pipe: env!("CARGO_PKG_VERSION").to_string(),
            onnxruntime: crate::runtime::ORT_VERSION.to_string(),
            dataset_digest: dataset_digest(workdir)?,
            stages,
            shards,
        })
    }

    pub fn stage(&self, stage: Stage) -> Option<&StageLock> {
        self.stages.iter().find(|(s, _)| *s == stage).map(|(_, l)| l)
    }

    pub fn render(&self) -> String {
        let mut out = format!("{HEADER}\n");
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let _ = writeln!(out, "anime_pipe = {}", q(&self.anime_pipe));
        let _ = writeln!(out, "onnxruntime = {}", q(&self.onnxruntime));
        let _ = writeln!(out, "dataset_digest = {}", q(&self.dataset_digest));
        for (stage, l) in &self.stages {
            let _ = writeln!(out, "\n[{stage}]");
            let _ = writeln!(out, "inputs = {}", q(&l.inputs));
            let _ = writeln!(out, "manifest = {}", q(&l.manifest));
            let _ = writeln!(out, "rows = {}", l.rows);
            for (s, n) in &l.status {
                let _ = writeln!(out, "status.{s} = {n}");
            }
            for (r, n) in &l.reason {
                let _ = writeln!(out, "reason.{r} = {n}");
            }
        }
        if !self.shards.is_empty() {
            out.push_str("\n[shards]\n");
            for (path, hash) in &self.shards {
                let _ = writeln!(out, "{} = {}", q(path), q(hash));
            }
        }
        out
    }

    /// Reads what [`Lock::render`] writes; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Lock> {
        let mut lock = Lock::default();
        let mut section: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let at = || format!("{origin}:{}", n + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if name != "shards" {
                    let stage: Stage = name.parse().map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
                    lock.stages.push((stage, StageLock::default()));
                }
                section = Some(name.to_string());
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                bail!("{}: expected `key = value`, found {line:?}", at());
            };
            let (key, value) = (unquote(key), unquote(value));
            let number = || value.parse::<u64>().with_context(|| format!("{}: {key} = {value:?}: not a count", at()));
            match section.as_deref() {
                None => match key.as_str() {
                    "anime_pipe" => lock.anime_pipe = value,
                    "onnxruntime" => lock.onnxruntime = value,
                    "dataset_digest" => lock.dataset_digest = value,
                    other => bail!("{}: unknown key {other:?}", at()),
                },
                Some("shards") => {
                    lock.shards.insert(key, value);
                }
                Some(_) => {
                    let l = &mut lock.stages.last_mut().expect("a stage section is open").1;
                    if let Some(s) = key.strip_prefix("status.") {
                        l.status.insert(s.to_string(), number()?);
                    } else if let Some(r) = key.strip_prefix("reason.") {
                        l.reason.insert(r.to_string(), number()?);
                    } else {
                        match key.as_str() {
                            "inputs" => l.inputs = value,
                            "manifest" => l.manifest = value,
                            "rows" => l.rows = number()?,
                            other => bail!("{}: unknown key {other:?}", at()),
                        }
                    }
                }
            }
        }
        if lock.dataset_digest.is_empty() {
            bail!("{origin}: no dataset_digest: not a pipeline.lock written by `anime-pipe lock`");
        }
        Ok(lock)
    }

    pub fn load(path: &std::path::Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read {}: write it with `anime-pipe lock` (after `anime-pipe run`)", path.display())
        })?;
        Lock::parse(&text, &path.display().to_string())
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => s.to_string(),
    }
}

fn stage_lock(workdir: &Workdir, stage: Stage, inputs: String) -> Result<StageLock> {
    let path = workdir.manifest_path(stage.name());
    let df = read_parquet(&path)?;
    let statuses = columns::strings(&df, "status")?;
    let reasons = columns::opt_strings(&df, "reason")?;
    let mut l = StageLock { inputs, manifest: file_blake3(&path)?, rows: df.height() as u64, ..Default::default() };
    for (status, reason) in statuses.iter().zip(&reasons) {
        *l.status.entry(status.clone()).or_default() += 1;
        if status != Status::Ok.name() {
            *l.reason.entry(reason.clone().unwrap_or_else(|| "none".into())).or_default() += 1;
        }
    }
    Ok(l)
}

/// How one stage differs from the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageChange {
    pub stage: String,
    /// Human-readable, e.g. `12 more rejected (too_small +12)`, `manifest differs`.
    pub changes: Vec<String>,
}

/// Everything that differs between the `locked` and the `actual` state; empty when they match.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockDiff {
    /// Versions and the dataset digest.
    pub general: Vec<String>,
    pub stages: Vec<StageChange>,
    /// Shards added, removed or changed.
    pub shards: Vec<String>,
}

impl LockDiff {
    pub fn is_empty(&self) -> bool {
        self.general.is_empty() && self.stages.is_empty() && self.shards.is_empty()
    }

    /// One line per stage and per other difference.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.general.clone();
        out.extend(self.stages.iter().map(|s| format!("{}: {}", s.stage, s.changes.join("; "))));
        out.extend(self.shards.iter().cloned());
        out
    }
}

/// Compares the lock with what a workdir holds now.
pub fn compare(locked: &Lock, actual: &Lock) -> LockDiff {
    let mut d = LockDiff::default();
    for (what, a, b) in [
        ("anime-pipe version", &locked.anime_pipe, &actual.anime_pipe),
        ("ONNX Runtime version", &locked.onnxruntime, &actual.onnxruntime),
    ] {
        if a != b {
            d.general.push(format!("{what}: {a} in the lock, {b} now"));
        }
    }
    if locked.dataset_digest != actual.dataset_digest {
        d.general.push(format!(
            "dataset digest: {} in the lock, {} now",
            short(&locked.dataset_digest),
            short(&actual.dataset_digest)
        ));
    }
    let mut all: Vec<Stage> = locked.stages.iter().chain(&actual.stages).map(|(s, _)| *s).collect();
    all.sort();
    all.dedup();
    for stage in all {
        let changes = match (locked.stage(stage), actual.stage(stage)) {
            (Some(_), None) => vec!["in the lock but not run now (stages: in pipeline.yaml)".to_string()],
            (None, Some(_)) => vec!["run now but not in the lock".to_string()],
            (Some(a), Some(b)) => {
                let upstream_changed =
                    stage.upstream(&actual.stages.iter().map(|(s, _)| *s).collect::<Vec<_>>()).is_some_and(|up| {
                        stage != Stage::Ingest
                            && locked.stage(up).map(|l| &l.manifest) != actual.stage(up).map(|l| &l.manifest)
                    });
                stage_changes(a, b, upstream_changed)
            }
            (None, None) => unreachable!("listed from the two locks"),
        };
        if !changes.is_empty() {
            d.stages.push(StageChange { stage: stage.name().to_string(), changes });
        }
    }
    let paths: std::collections::BTreeSet<&String> = locked.shards.keys().chain(actual.shards.keys()).collect();
    for path in paths {
        match (locked.shards.get(path), actual.shards.get(path)) {
            (Some(_), None) => d.shards.push(format!("shard {path}: in the lock, not written now")),
            (None, Some(_)) => d.shards.push(format!("shard {path}: new, not in the lock")),
            (Some(a), Some(b)) if a != b => d.shards.push(format!("shard {path}: content differs")),
            _ => {}
        }
    }
    d
}

fn stage_changes(a: &StageLock, b: &StageLock, upstream_changed: bool) -> Vec<String> {
    let mut changes = Vec::new();
    if a.rows != b.rows {
        changes.push(more_or_fewer(b.rows as i64 - a.rows as i64, "rows"));
    }
    let keys = |x: &BTreeMap<String, u64>, y: &BTreeMap<String, u64>| {
        let mut k: Vec<String> = x.keys().chain(y.keys()).cloned().collect();
        k.sort();
        k.dedup();
        k
    };
    let delta = |m: &BTreeMap<String, u64>, m2: &BTreeMap<String, u64>, k: &str| {
        m2.get(k).copied().unwrap_or(0) as i64 - m.get(k).copied().unwrap_or(0) as i64
    };
    let reasons: Vec<String> = keys(&a.reason, &b.reason)
        .into_iter()
        .filter_map(|r| {
            let n = delta(&a.reason, &b.reason, &r);
            (n != 0).then(|| format!("{r} {n:+}"))
        })
        .collect();
    let mut reasons_told = false;
    for s in keys(&a.status, &b.status) {
        let n = delta(&a.status, &b.status, &s);
        if n == 0 {
            continue;
        }
        let mut line = more_or_fewer(n, &s);
        if s != Status::Ok.name() && !reasons.is_empty() && !reasons_told {
            line.push_str(&format!(": {}", reasons.join(", ")));
            reasons_told = true;
        }
        changes.push(line);
    }
    if !reasons_told && !reasons.is_empty() {
        changes.push(format!("reasons: {}", reasons.join(", ")));
    }
    if a.inputs != b.inputs {
        changes.push(if upstream_changed {
            "inputs differ (its upstream manifest changed)".to_string()
        } else {
            "settings differ (its section of pipeline.yaml, or a model it uses)".to_string()
        });
    }
    if a.manifest != b.manifest {
        changes.push("manifest differs".to_string());
    }
    changes
}

fn more_or_fewer(n: i64, what: &str) -> String {
    if n > 0 {
        format!("{n} more {what}")
    } else {
        format!("{} fewer {what}", -n)
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let mut clean = StageLock { inputs: "i".into(), manifest: "m".into(), rows: 10, ..Default::default() };
        clean.status.insert("ok".into(), 8);
        clean.status.insert("rejected".into(), 2);
        clean.reason.insert("too_small".into(), 2);
        let mut shards = BTreeMap::new();
        shards.insert("shards/64/train-00000.safetensors".into(), "h".into());
        Lock {
            anime_pipe: "0.1.0".into(),
            onnxruntime: "1.31.1".into(),
            dataset_digest: "d".repeat(64),
            stages: vec![(Stage::Clean, clean)],
            shards,
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let lock = sample();
        let text = lock.render();
        assert!(text.contains("\n[clean]\n") && text.contains("\nstatus.rejected = 2\n"), "{text}");
        assert_eq!(Lock::parse(&text, "pipeline.lock").unwrap(), lock);
        assert!(compare(&lock, &lock).is_empty());
    }

    #[test]
    fn changes_are_named_per_stage() {
        let (a, mut b) = (sample(), sample());
        let clean = &mut b.stages[0].1;
        clean.rows = 22;
        *clean.status.get_mut("rejected").unwrap() = 14;
        *clean.reason.get_mut("too_small").unwrap() = 14;
        clean.inputs = "j".into();
        clean.manifest = "n".into();
        let d = compare(&a, &b);
        assert_eq!(
            d.stages[0].changes,
            [
                "12 more rows",
                "12 more rejected: too_small +12",
                "settings differ (its section of pipeline.yaml, or a model it uses)",
                "manifest differs"
            ]
        );
    }
}
