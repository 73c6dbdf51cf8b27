//! `runs/<name>/`: the run directory `anime-pipe train` writes and `anime-pipe eval` reads and adds to. This
//! module is the one owner of its layout: every path inside a run is built here.
//!
//! ```text
//! runs/<name>/
//!   config.json                          resolved config: train hyperparameters, arch, dataset digest, device
//!   metrics.parquet                      one row per logged step (see `MetricRow`), rewritten atomically
//!   loss.png                             loss and D-output curves, redrawn at every metrics flush
//!   samples/epoch-NNNN.png               8x4 grid from a fixed latent batch, every `sample_every` epochs
//!   samples/step-NNNNNNNN.png            ... and where a run stopped inside an epoch (--steps, Ctrl-C)
//!   progress.png                         first row of each sampled epoch's grid, one row per epoch
//!   checkpoints/epoch-NNNN.safetensors   full training state (see `train::checkpoint`), every `checkpoint_every`
//!   checkpoints/step-NNNNNNNN.safetensors  ... or where a run stopped inside an epoch
//!   checkpoints/<same stem>.generator.onnx  the generator inference graph at that checkpoint
//!   checkpoints/<same stem>.raw.generator.onnx  with `train.ema`: the trained (not averaged) weights
//!   generator.onnx                       the latest generator (latent in, RGB out; see `gan::generator`)
//!   generator.raw.onnx                   with `train.ema`: the latest trained (not averaged) weights
//!   best.generator.onnx, best.json       with `train.eval_every`: the best-scoring generator, its step and FID
//!   eval.parquet                         `anime-pipe eval`: one row per evaluated generator
//!   eval/<label>.png                     `anime-pipe eval`: the first samples of each evaluated generator
//!   report.html                          `anime-pipe eval`: the self-contained report
//! ```
//!
//! `<name>` defaults to `<preset>-<YYYYmmdd-HHMMSS>` (UTC; `-2`, `-3`, ... when taken) under
//! `<workdir>/runs/`; `--name` chooses it. NNNN is the 1-based number of complete epochs.
mod best;
mod checkpoints;
mod metrics;

pub use best::{read_best, Best};
pub use checkpoints::{checkpoint_step, read_checkpoint_metadata, CheckpointName};
pub use metrics::{read_metrics, write_metrics, MetricRow};

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Paths inside one run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn at(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// Where a new run `<runs>/<name>` will go; an existing directory is an error (it would mix two runs).
    /// Nothing is created until [`RunDir::create_dirs`], so a run that fails to start leaves nothing behind.
    pub fn new_run(runs: &Path, name: &str) -> Result<RunDir> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("--name {name:?}: expected a plain directory name");
        }
        let root = runs.join(name);
        if root.exists() {
            bail!(
                "{} already exists: continue it with `--resume {}`, or pick another --name",
                root.display(),
                root.display()
            );
        }
        Ok(RunDir { root })
    }

    /// Creates the directory and its `samples/` and `checkpoints/`.
    pub fn create_dirs(&self) -> Result<()> {
        for sub in [self.samples_dir(), self.checkpoints_dir()] {
            std::fs::create_dir_all(&sub).with_context(|| format!("cannot create {}", sub.display()))?;
        }
        Ok(())
    }

    /// An existing run directory (for `--resume`).
    pub fn open(root: &Path) -> Result<RunDir> {
        let dir = RunDir { root: root.to_path_buf() };
        if !dir.config_path().is_file() {
            bail!("--resume {}: no config.json there (not a run directory made by `anime-pipe train`)", root.display());
        }
        Ok(dir)
    }

    /// `given` if it is a directory, else `<runs>/<given>` when `given` is a bare name of one there.
    pub fn locate(runs: &Path, given: &Path) -> Option<RunDir> {
        if given.is_dir() {
            return Some(RunDir::at(given));
        }
        let under_runs = runs.join(given);
        (given.components().count() == 1 && under_runs.is_dir()).then(|| RunDir::at(under_runs))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn name(&self) -> String {
        self.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.parquet")
    }
    pub fn loss_plot_path(&self) -> PathBuf {
        self.root.join("loss.png")
    }
    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// `samples/epoch-NNNN.png`.
    pub fn sample_path(&self, epoch: u64) -> PathBuf {
        self.samples_dir().join(format!("epoch-{epoch:04}.png"))
    }
    /// `samples/step-NNNNNNNN.png`: the grid of a run that stopped inside an epoch.
    pub fn step_sample_path(&self, step: u64) -> PathBuf {
        self.samples_dir().join(format!("step-{step:08}.png"))
    }
    pub fn progress_path(&self) -> PathBuf {
        self.root.join("progress.png")
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `checkpoints/<stem>.safetensors`: the training state.
    pub fn checkpoint_state_path(&self, name: CheckpointName) -> PathBuf {
        self.checkpoints_dir().join(format!("{}.safetensors", name.stem()))
    }
    /// `checkpoints/<stem>.generator.onnx`: the generator at that checkpoint.
    pub fn checkpoint_generator_path(&self, name: CheckpointName) -> PathBuf {
        self.checkpoints_dir().join(format!("{}{}", name.stem(), checkpoints::GENERATOR_SUFFIX))
    }
    /// The trained (not averaged) weights of a checkpoint, written beside it when the run keeps a moving average.
    pub fn checkpoint_raw_generator_path(&self, name: CheckpointName) -> PathBuf {
        self.checkpoints_dir().join(format!("{}.raw{}", name.stem(), checkpoints::GENERATOR_SUFFIX))
    }
    pub fn generator_path(&self) -> PathBuf {
        self.root.join("generator.onnx")
    }
    /// The latest trained (not averaged) weights, when the run keeps a moving average.
    pub fn raw_generator_path(&self) -> PathBuf {
        self.root.join("generator.raw.onnx")
    }
    /// `best.generator.onnx`: the generator that scored lowest during training (`train --eval-every`).
    pub fn best_generator_path(&self) -> PathBuf {
        self.root.join("best.generator.onnx")
    }
    /// `best.json`: its step, score and weights ([`Best`]).
    pub fn best_path(&self) -> PathBuf {
        self.root.join("best.json")
    }
    pub fn eval_table_path(&self) -> PathBuf {
        self.root.join("eval.parquet")
    }
    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.html")
    }
    /// `eval/<label>.png`.
    pub fn eval_grid_path(&self, label: &str) -> PathBuf {
        self.root.join("eval").join(format!("{label}.png"))
    }

    /// `samples/epoch-NNNN.png` files by epoch, oldest first (none when there is no `samples/`).
    pub fn epoch_samples(&self) -> Result<Vec<(u64, PathBuf)>> {
        let Ok(entries) = std::fs::read_dir(self.samples_dir()) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let epoch = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|name| name.strip_prefix("epoch-")?.strip_suffix(".png")?.parse::<u64>().ok());
            if let Some(epoch) = epoch {
                found.push((epoch, path));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The training-state files `checkpoints/*.safetensors` (hidden temporary files excluded), unordered.
    pub fn checkpoint_states(&self) -> Result<Vec<PathBuf>> {
        checkpoints::states(&self.checkpoints_dir())
    }

    /// The checkpoint generators `checkpoints/{epoch,step}-N.generator.onnx` and their names, unordered.
    pub fn checkpoint_generators(&self) -> Result<Vec<(CheckpointName, PathBuf)>> {
        checkpoints::generators(&self.checkpoints_dir())
    }

    /// epoch -> last step of that epoch in `metrics.parquet` (empty when there is none or it is unreadable).
    pub fn epoch_end_steps(&self) -> BTreeMap<u32, u64> {
        metrics::epoch_end_steps(&self.metrics_path())
    }
}

/// `<preset>-<YYYYmmdd-HHMMSS>` in UTC, with `-2`, `-3`, ... appended while that name is taken under `runs`.
pub fn default_name(runs: &Path, preset: &str, unix_seconds: u64) -> String {
    let base = format!("{preset}-{}", utc_stamp(unix_seconds));
    let mut name = base.clone();
    let mut n = 2;
    while runs.join(&name).exists() {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// `YYYYmmdd-HHMMSS` of a Unix time, UTC (Howard Hinnant's days-to-civil algorithm; no time-zone database).
pub fn utc_stamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC (a leap day) = 951827696 (date -u -d @951827696).
        assert_eq!(utc_stamp(951_827_696), "20000229-123456");
        // 2026-11-22 11:12:08 UTC = 1795345928.
        assert_eq!(utc_stamp(1_795_345_928), "20261122-111208");
    }

    #[test]
    fn default_names_avoid_existing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let first = default_name(dir.path(), "dcgan64", 0);
        assert_eq!(first, "dcgan64-19700101-000000");
        std::fs::create_dir(dir.path().join(&first)).unwrap();
        assert_eq!(default_name(dir.path(), "dcgan64", 0), "dcgan64-19700101-000000-2");
        let err = RunDir::new_run(dir.path(), &first).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
    }

    #[test]
    fn paths_follow_the_layout() {
        let run = RunDir::at("r");
        assert_eq!(run.sample_path(7), Path::new("r/samples/epoch-0007.png"));
        assert_eq!(run.step_sample_path(42), Path::new("r/samples/step-00000042.png"));
        assert_eq!(
            run.checkpoint_state_path(CheckpointName::Epoch(3)),
            Path::new("r/checkpoints/epoch-0003.safetensors")
        );
        assert_eq!(
            run.checkpoint_generator_path(CheckpointName::Step(12)),
            Path::new("r/checkpoints/step-00000012.generator.onnx")
        );
        assert_eq!(run.eval_grid_path("final"), Path::new("r/eval/final.png"));
    }

    #[test]
    fn epoch_samples_list_epoch_grids_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        assert!(run.epoch_samples().unwrap().is_empty());
        run.create_dirs().unwrap();
        for name in ["epoch-0010.png", "epoch-0002.png", "step-00000005.png", "epoch-x.png"] {
            std::fs::write(run.samples_dir().join(name), b"").unwrap();
        }
        let epochs: Vec<u64> = run.epoch_samples().unwrap().into_iter().map(|(e, _)| e).collect();
        assert_eq!(epochs, vec![2, 10]);
    }
}
