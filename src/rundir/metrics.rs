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
//! | `fid` | f64? | with `train --eval-every`: FID of the exported generator (the moving average when kept) at that step |
//! | `fid_raw` | f64? | the same for the trained weights, when the run keeps a moving average |
//!
//! Losses are fetched from the device only at logged steps, so rows are every `log_every` steps plus the last
//! step of each epoch and of the run (where samples and checkpoints are written, and where the divergence check
//! runs).
use crate::manifest::columns::{self, col, frame};
use crate::manifest::{read_parquet, write_parquet};
use anyhow::{Context, Result};
use polars::prelude::DataType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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
    /// In-training FID of the exported generator at this step (`train --eval-every`), null elsewhere.
    #[serde(default)]
    pub fid: Option<f64>,
    /// The same for the raw (not averaged) weights of a run with a moving average.
    #[serde(default)]
    pub fid_raw: Option<f64>,
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
            col("fid", rows.iter().map(|r| r.fid).collect::<Vec<_>>()),
            col("fid_raw", rows.iter().map(|r| r.fid_raw).collect::<Vec<_>>()),
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
    // Optional columns (files written before in-training evaluation lack them).
    let optional =
        |name: &str| -> Vec<Option<f64>> { columns::opt_f64s(&df, name).unwrap_or_else(|_| vec![None; df.height()]) };
    let (fid, fid_raw) = (optional("fid"), optional("fid_raw"));
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
            fid: fid[i],
            fid_raw: fid_raw[i],
        })
        .collect())
}

/// epoch -> last step of that epoch; needs only the `step` and `epoch` columns, and is empty when unreadable.
pub(super) fn epoch_end_steps(path: &Path) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let Ok(df) = read_parquet(path) else {
        return out;
    };
    let (Ok(steps), Ok(epochs)) = (columns::opt_f64s(&df, "step"), columns::opt_f64s(&df, "epoch")) else {
        return out;
    };
    for (step, epoch) in steps.into_iter().zip(epochs) {
        if let (Some(s), Some(e)) = (step, epoch) {
            let last = out.entry(e as u32).or_insert(s as u64);
            *last = (*last).max(s as u64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
                fid: (i == 2).then_some(123.5),
                fid_raw: None,
            })
            .collect();
        write_metrics(&path, &rows).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), rows);
        assert!(read_metrics(&dir.path().join("none.parquet")).unwrap().is_empty());
        assert_eq!(epoch_end_steps(&path), BTreeMap::from([(1, 30)]));
    }
}
