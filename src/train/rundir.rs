//! The run directory, shared with `anime-pipe eval`:
//!
//! ```text
//! runs/<name>/
//!   config.json                          resolved config: train hyperparameters, arch, dataset digest, device
//!   metrics.parquet                      one row per logged step (schema below), rewritten atomically
//!   loss.png                             loss and D-output curves, redrawn at every metrics flush
//!   samples/epoch-NNNN.png               8x4 grid from a fixed latent batch, every `sample_every` epochs
//!   progress.png                         first row of each sampled epoch's grid, one row per epoch
//!   checkpoints/epoch-NNNN.safetensors   full training state (see `checkpoint`), every `checkpoint_every`
//!   checkpoints/step-NNNNNNNN.safetensors  ... or where a run stopped inside an epoch (--steps, Ctrl-C)
//!   checkpoints/<same stem>.generator.onnx  the generator inference graph at that checkpoint
//!   generator.onnx                       the latest generator (latent in, RGB out; see `sample`)
//! ```
//!
//! `<name>` defaults to `<preset>-<YYYYmmdd-HHMMSS>` (UTC; `-2`, `-3`, ... when taken) under
//! `<workdir>/runs/`; `--name` chooses it. NNNN is the 1-based number of complete epochs.
//!
//! `metrics.parquet`, sorted by step:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `step` | u64 | iterations done (1-based: the row describes the step that made it `step`) |
//! | `epoch` | u32 | 1-based epoch the step belongs to |
//! | `loss_d` | f64 | D's loss at that step: BCE on real + BCE on fake (PyTorch example convention) |
//! | `loss_g` | f64 | G's loss at that step (non-saturating: BCE of D(G(z)) against "real") |
//! | `d_x` | f64 | mean D(x) on the real batch, D's output after the sigmoid |
//! | `d_gz` | f64 | mean D(G(z)) on the fake batch of the D step |
//! | `lr_d`, `lr_g` | f64 | learning rates in force |
//! | `images_per_s` | f64 | real images through D per second since the previous row (wall clock) |
//!
//! Losses are fetched from the device only at logged steps, so rows are every `log_every` steps plus the last
//! step of each epoch and of the run (where samples and checkpoints are written, and where the divergence check
//! runs).
use crate::manifest::columns::{col, frame};
use crate::manifest::{read_parquet, write_parquet};
use anyhow::{bail, Context, Result};
use polars::prelude::DataType;
use serde::{Deserialize, Serialize};
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
    pub fn progress_path(&self) -> PathBuf {
        self.root.join("progress.png")
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn generator_path(&self) -> PathBuf {
        self.root.join("generator.onnx")
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

/// One `metrics.parquet` row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub step: u64,
    pub epoch: u32,
    pub loss_d: f64,
    pub loss_g: f64,
    pub d_x: f64,
    pub d_gz: f64,
    pub lr_d: f64,
    pub lr_g: f64,
    pub images_per_s: f64,
}

/// Writes every row (sorted by step) to `path`, atomically.
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<()> {
    let f = |get: fn(&MetricRow) -> f64| col_f64(rows, get);
    let mut df = frame(
        rows.len(),
        vec![
            col("step", rows.iter().map(|r| r.step).collect::<Vec<u64>>()),
            col("epoch", rows.iter().map(|r| r.epoch).collect::<Vec<u32>>()),
            col("loss_d", f(|r| r.loss_d)),
            col("loss_g", f(|r| r.loss_g)),
            col("d_x", f(|r| r.d_x)),
            col("d_gz", f(|r| r.d_gz)),
            col("lr_d", f(|r| r.lr_d)),
            col("lr_g", f(|r| r.lr_g)),
            col("images_per_s", f(|r| r.images_per_s)),
        ],
    )?;
    write_parquet(path, &mut df)
}

fn col_f64(rows: &[MetricRow], get: fn(&MetricRow) -> f64) -> Vec<f64> {
    rows.iter().map(get).collect()
}

/// The rows of an existing `metrics.parquet` (empty when there is none).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let df = read_parquet(path)?;
    let column = |name: &str, dtype: DataType| {
        df.column(name)
            .with_context(|| format!("{}: no column {name}", path.display()))?
            .cast(&dtype)
            .map_err(anyhow::Error::from)
    };
    let steps: Vec<u64> = column("step", DataType::UInt64)?.u64()?.iter().map(|v| v.unwrap_or(0)).collect();
    let epochs: Vec<u32> = column("epoch", DataType::UInt32)?.u32()?.iter().map(|v| v.unwrap_or(0)).collect();
    let mut floats = Vec::new();
    for name in ["loss_d", "loss_g", "d_x", "d_gz", "lr_d", "lr_g", "images_per_s"] {
        let values: Vec<f64> = column(name, DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        floats.push(values);
    }
    Ok((0..df.height())
        .map(|i| MetricRow {
            step: steps[i],
            epoch: epochs[i],
            loss_d: floats[0][i],
            loss_g: floats[1][i],
            d_x: floats[2][i],
            d_gz: floats[3][i],
            lr_d: floats[4][i],
            lr_g: floats[5][i],
            images_per_s: floats[6][i],
        })
        .collect())
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
    fn metrics_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let rows: Vec<MetricRow> = (1..=3)
            .map(|i| MetricRow {
                step: i * 10,
                epoch: 1,
                loss_d: 1.0 / i as f64,
                loss_g: 2.0,
                d_x: 0.6,
                d_gz: 0.3,
                lr_d: 2e-4,
                lr_g: 2e-4,
                images_per_s: 100.0,
            })
            .collect();
        write_metrics(&path, &rows).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), rows);
        assert!(read_metrics(&dir.path().join("none.parquet")).unwrap().is_empty());
    }
}
