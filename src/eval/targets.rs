//! Which generators one `eval` invocation measures: a run's checkpoints (and its final generator), or one file.
use super::table::progress_key;
use crate::rundir::{checkpoint_step, CheckpointName, RunDir};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// One generator to evaluate.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    /// Path relative to the run directory (or the file name for `--model`).
    pub relative: String,
    pub epoch: Option<u32>,
    pub step: Option<u64>,
    /// "epoch-0005", "final", or the model's file stem; the raw weights of a run with a moving average add
    /// ".raw" ("epoch-0005.raw").
    pub label: String,
    /// In a run that keeps a moving average of G: "ema" for the exported average, "raw" for the trained weights.
    pub weights: Option<String>,
}

/// `--run DIR`: the directory if it exists, else `<runs>/DIR` for a bare name.
pub fn resolve_run_dir(runs: &Path, dir: &Path) -> Result<RunDir> {
    match RunDir::locate(runs, dir) {
        Some(run) => Ok(run),
        None => bail!("--run {}: no such run directory (nor {})", dir.display(), runs.join(dir).display()),
    }
}

/// The generators of a run: `checkpoints/epoch-NNNN.generator.onnx` and `checkpoints/step-NNNNNNNN.generator.onnx`
/// (the latter only without an epoch filter), plus `generator.onnx` as "final" when it differs from every
/// checkpoint's generator (or there is none). A run with a moving average of G has the trained weights beside each
/// (`*.raw.generator.onnx`, `generator.raw.onnx`): both are listed, so every checkpoint compares EMA and raw. `epochs` (non-empty) selects epoch checkpoints; a missing one is an
/// error naming those available. Ordered by training progress (step, then epoch).
///
/// A checkpoint's step is the one its training state records, else the last step of its epoch in
/// `metrics.parquet`.
pub fn run_checkpoints(run: &RunDir, epochs: &[u32]) -> Result<Vec<Checkpoint>> {
    // eval.parquet's epoch column is u32: a larger epoch number is not a checkpoint of ours.
    let found: Vec<(CheckpointName, PathBuf)> = run
        .checkpoint_generators()?
        .into_iter()
        .filter(|(name, _)| !matches!(name, CheckpointName::Epoch(e) if u32::try_from(*e).is_err()))
        .collect();
    let available: Vec<u32> = found.iter().filter_map(|(name, _)| epoch_of(*name)).collect();
    if let Some(missing) = epochs.iter().find(|e| !available.contains(e)) {
        let mut available = available.clone();
        available.sort_unstable();
        bail!(
            "--checkpoints: {} has no checkpoints/epoch-{missing:04}.generator.onnx (available epochs: {available:?})",
            run.root().display()
        );
    }
    let epoch_end_steps = run.epoch_end_steps();
    let mut checkpoints = Vec::new();
    for (name, path) in found {
        let recorded_step = || checkpoint_step(&run.checkpoint_state_path(name));
        let (epoch, step) = match (name, epoch_of(name)) {
            (_, Some(e)) if epochs.is_empty() || epochs.contains(&e) => {
                (Some(e), recorded_step().or_else(|| epoch_end_steps.get(&e).copied()))
            }
            (CheckpointName::Step(s), _) if epochs.is_empty() => (None, Some(s)),
            _ => continue,
        };
        let file = path.file_name().expect("listed file").to_string_lossy().to_string();
        let raw = run.checkpoint_raw_generator_path(name);
        let weights = raw.is_file().then(|| "ema".to_string());
        checkpoints.push(Checkpoint {
            path,
            relative: format!("checkpoints/{file}"),
            epoch,
            step,
            label: name.stem(),
            weights,
        });
        if raw.is_file() {
            let file = raw.file_name().expect("a file").to_string_lossy().to_string();
            let relative = format!("checkpoints/{file}");
            let label = format!("{}.raw", name.stem());
            checkpoints.push(Checkpoint { path: raw, relative, epoch, step, label, weights: Some("raw".into()) });
        }
    }
    checkpoints.sort_by_key(|c| progress_key(c.step, c.epoch, &c.relative));
    if epochs.is_empty() {
        if let Some(last) = distinct_final_generator(run, &checkpoints)? {
            let raw = run.raw_generator_path();
            let has_raw = raw.is_file();
            checkpoints.push(Checkpoint { weights: has_raw.then(|| "ema".into()), ..last });
            if has_raw {
                let (relative, label) = ("generator.raw.onnx".to_string(), "final.raw".to_string());
                checkpoints.push(Checkpoint {
                    path: raw,
                    relative,
                    epoch: None,
                    step: None,
                    label,
                    weights: Some("raw".into()),
                });
            }
        }
    }
    if checkpoints.is_empty() {
        bail!(
            "{} has no generator to evaluate: expected checkpoints/epoch-NNNN.generator.onnx or generator.onnx \
             (is it a run directory written by `anime-pipe train`?)",
            run.root().display()
        );
    }
    Ok(checkpoints)
}

fn epoch_of(name: CheckpointName) -> Option<u32> {
    match name {
        CheckpointName::Epoch(e) => u32::try_from(e).ok(),
        CheckpointName::Step(_) => None,
    }
}

/// `generator.onnx` as "final", unless its bytes are those of a listed checkpoint (it usually is the last one).
fn distinct_final_generator(run: &RunDir, checkpoints: &[Checkpoint]) -> Result<Option<Checkpoint>> {
    let last = run.generator_path();
    if !last.is_file() {
        return Ok(None);
    }
    let hash = crate::manifest::file_blake3(&last)?;
    let mut same = false;
    for c in checkpoints {
        same |= crate::manifest::file_blake3(&c.path)? == hash;
    }
    Ok((!same).then(|| Checkpoint {
        path: last,
        relative: "generator.onnx".into(),
        epoch: None,
        step: None,
        label: "final".into(),
        weights: None,
    }))
}

/// `--model FILE`.
pub fn model_checkpoint(path: &Path) -> Result<Checkpoint> {
    if !path.is_file() {
        bail!("--model {}: no such file", path.display());
    }
    let label = path.file_stem().map_or("generator".into(), |s| s.to_string_lossy().to_string());
    Ok(Checkpoint {
        path: path.to_path_buf(),
        relative: path.display().to_string(),
        epoch: None,
        step: None,
        label,
        weights: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_epoch_lists_the_available_ones() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        std::fs::create_dir_all(run.checkpoints_dir()).unwrap();
        for e in [5, 10] {
            std::fs::write(run.checkpoint_generator_path(CheckpointName::Epoch(e)), b"x").unwrap();
        }
        std::fs::write(run.checkpoint_generator_path(CheckpointName::Step(123)), b"y").unwrap();
        std::fs::write(run.generator_path(), b"y").unwrap();
        let all = run_checkpoints(&run, &[]).unwrap();
        let got: Vec<(&str, Option<u32>, Option<u64>)> =
            all.iter().map(|c| (c.label.as_str(), c.epoch, c.step)).collect();
        // No metadata or metrics: epoch checkpoints have no step and sort after the step checkpoint; generator.onnx
        // equals step-00000123's bytes, so it is not listed again.
        assert_eq!(
            got,
            vec![("step-00000123", None, Some(123)), ("epoch-0005", Some(5), None), ("epoch-0010", Some(10), None)]
        );
        std::fs::write(run.generator_path(), b"z").unwrap();
        assert_eq!(run_checkpoints(&run, &[]).unwrap().last().unwrap().label, "final");
        let only = run_checkpoints(&run, &[10]).unwrap();
        assert_eq!(only.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), vec!["epoch-0010"]);
        let err = run_checkpoints(&run, &[7]).unwrap_err().to_string();
        assert!(err.contains("epoch-0007") && err.contains("[5, 10]"), "{err}");
    }
}
