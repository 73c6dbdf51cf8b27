//! `eval.parquet`: one row per evaluated generator (columns in the module docs of `eval`), its reading, merging
//! and writing, and its text form on the terminal.
use crate::manifest::columns::{self, col, frame};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// One row of eval.parquet.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub checkpoint: String,
    pub label: String,
    pub epoch: Option<u32>,
    pub step: Option<u64>,
    pub n: u32,
    pub fid: f64,
    pub kid_mean: f64,
    pub kid_std: f64,
    pub kid_subsets: u32,
    pub kid_subset_size: u32,
    pub feature_spread_ratio: f64,
    pub near_dup_count: u32,
    pub seconds: f64,
    pub size: u32,
    pub seed: u64,
    pub reference: String,
    pub reference_count: u32,
    pub generator_blake3: String,
    pub eval_key: String,
    /// "ema" or "raw" in a run that keeps a moving average of G (see `targets::Checkpoint::weights`).
    pub weights: Option<String>,
    /// Reused from a previous eval.parquet rather than computed now (not stored).
    #[serde(skip)]
    pub reused: bool,
}

/// Fixed-width table of the rows (KID shown x 10^3, as usually reported).
pub fn render_table(rows: &[Row]) -> String {
    let header = ["generator", "epoch", "step", "n", "FID", "KID x1e3", "spread", "near-dups", "time"];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        lines.push(vec![
            r.label.clone(),
            r.epoch.map_or("-".into(), |e| e.to_string()),
            r.step.map_or("-".into(), |s| s.to_string()),
            r.n.to_string(),
            format!("{:.2}", r.fid),
            format!("{:.2} ± {:.2}", r.kid_mean * 1e3, r.kid_std * 1e3),
            format!("{:.3}", r.feature_spread_ratio),
            r.near_dup_count.to_string(),
            if r.reused { "cached".into() } else { format!("{:.1} s", r.seconds) },
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| if c == 0 { format!("{v:<w$}") } else { format!("{v:>w$}") })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Rows of a previous eval.parquet (empty when there is none or it cannot be read: it is only a cache).
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    match try_read_rows(path) {
        Ok(rows) => Ok(rows),
        Err(e) => {
            tracing::warn!("ignoring {}: {e:#}", path.display());
            Ok(Vec::new())
        }
    }
}

fn try_read_rows(path: &Path) -> Result<Vec<Row>> {
    let df = crate::manifest::read_parquet(path)?;
    let s = |name| columns::strings(&df, name);
    let f = |name| -> Result<Vec<f64>> {
        columns::opt_f64s(&df, name)?.into_iter().map(|v| v.context("null value")).collect()
    };
    let u = |name| columns::u32s(&df, name);
    let (checkpoint, reference, generator, key) =
        (s("checkpoint")?, s("reference")?, s("generator_blake3")?, s("eval_key")?);
    let (epoch, step) = (columns::opt_u32s(&df, "epoch")?, columns::opt_f64s(&df, "step")?);
    let (fid, kid_mean, kid_std, spread, seconds) =
        (f("fid")?, f("kid_mean")?, f("kid_std")?, f("feature_spread_ratio")?, f("seconds")?);
    let (n, near, size, subsets, subset_size, ref_count) =
        (u("n")?, u("near_dup_count")?, u("size")?, u("kid_subsets")?, u("kid_subset_size")?, u("reference_count")?);
    let seed = f("seed")?;
    // Files written before EMA runs were told apart have no weights column.
    let weights = columns::opt_strings(&df, "weights").unwrap_or_else(|_| vec![None; df.height()]);
    Ok((0..df.height())
        .map(|i| Row {
            label: label_of(&checkpoint[i], epoch[i], weights[i].as_deref()),
            checkpoint: checkpoint[i].clone(),
            epoch: epoch[i],
            step: step[i].map(|v| v as u64),
            n: n[i],
            fid: fid[i],
            kid_mean: kid_mean[i],
            kid_std: kid_std[i],
            kid_subsets: subsets[i],
            kid_subset_size: subset_size[i],
            feature_spread_ratio: spread[i],
            near_dup_count: near[i],
            seconds: seconds[i],
            size: size[i],
            seed: seed[i] as u64,
            reference: reference[i].clone(),
            reference_count: ref_count[i],
            generator_blake3: generator[i].clone(),
            eval_key: key[i].clone(),
            weights: weights[i].clone(),
            reused: false,
        })
        .collect())
}

fn label_of(checkpoint: &str, epoch: Option<u32>, weights: Option<&str>) -> String {
    let raw = if weights == Some("raw") { ".raw" } else { "" };
    match epoch {
        Some(e) => format!("epoch-{e:04}{raw}"),
        None if checkpoint == "generator.onnx" || checkpoint == "generator.raw.onnx" => format!("final{raw}"),
        None => {
            let name =
                Path::new(checkpoint).file_name().map_or("generator".into(), |s| s.to_string_lossy().to_string());
            name.strip_suffix(".generator.onnx").or(name.strip_suffix(".onnx")).unwrap_or(&name).to_string()
        }
    }
}

/// Training-progress order: by step, then epoch (unknown last), then path.
pub(crate) fn progress_key(step: Option<u64>, epoch: Option<u32>, path: &str) -> (u64, u32, String) {
    (step.unwrap_or(u64::MAX), epoch.unwrap_or(u32::MAX), path.to_string())
}

/// Previous rows of generators not evaluated now, plus the new rows, in training-progress order.
pub(crate) fn merge_rows(previous: Vec<Row>, new: &[Row]) -> Vec<Row> {
    let mut all: Vec<Row> =
        previous.into_iter().filter(|p| !new.iter().any(|r| r.checkpoint == p.checkpoint)).collect();
    all.extend(new.iter().cloned());
    all.sort_by_key(|r| progress_key(r.step, r.epoch, &r.checkpoint));
    all
}

pub fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let mut df = frame(
        rows.len(),
        vec![
            col("checkpoint", rows.iter().map(|r| r.checkpoint.as_str()).collect::<Vec<_>>()),
            col("epoch", rows.iter().map(|r| r.epoch).collect::<Vec<_>>()),
            col("step", rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            col("n", rows.iter().map(|r| r.n).collect::<Vec<_>>()),
            col("fid", rows.iter().map(|r| r.fid).collect::<Vec<_>>()),
            col("kid_mean", rows.iter().map(|r| r.kid_mean).collect::<Vec<_>>()),
            col("kid_std", rows.iter().map(|r| r.kid_std).collect::<Vec<_>>()),
            col("kid_subsets", rows.iter().map(|r| r.kid_subsets).collect::<Vec<_>>()),
            col("kid_subset_size", rows.iter().map(|r| r.kid_subset_size).collect::<Vec<_>>()),
            col("feature_spread_ratio", rows.iter().map(|r| r.feature_spread_ratio).collect::<Vec<_>>()),
            col("near_dup_count", rows.iter().map(|r| r.near_dup_count).collect::<Vec<_>>()),
            col("seconds", rows.iter().map(|r| r.seconds).collect::<Vec<_>>()),
            col("size", rows.iter().map(|r| r.size).collect::<Vec<_>>()),
            col("seed", rows.iter().map(|r| r.seed).collect::<Vec<_>>()),
            col("reference", rows.iter().map(|r| r.reference.as_str()).collect::<Vec<_>>()),
            col("reference_count", rows.iter().map(|r| r.reference_count).collect::<Vec<_>>()),
            col("generator_blake3", rows.iter().map(|r| r.generator_blake3.as_str()).collect::<Vec<_>>()),
            col("eval_key", rows.iter().map(|r| r.eval_key.as_str()).collect::<Vec<_>>()),
            col("weights", rows.iter().map(|r| r.weights.as_deref()).collect::<Vec<_>>()),
        ],
    )?;
    crate::manifest::write_parquet(path, &mut df)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_checkpoints_and_orders_by_epoch() {
        let row = |checkpoint: &str, epoch: Option<u32>, fid: f64| Row {
            checkpoint: checkpoint.into(),
            label: label_of(checkpoint, epoch, None),
            epoch,
            step: None,
            n: 10,
            fid,
            kid_mean: 0.0,
            kid_std: 0.0,
            kid_subsets: 1,
            kid_subset_size: 10,
            feature_spread_ratio: 1.0,
            near_dup_count: 0,
            seconds: 0.0,
            size: 64,
            seed: 0,
            reference: "r".into(),
            reference_count: 2,
            generator_blake3: "g".into(),
            eval_key: "k".into(),
            weights: None,
            reused: false,
        };
        let previous = vec![row("generator.onnx", None, 1.0), row("a", Some(10), 2.0), row("b", Some(5), 3.0)];
        let merged = merge_rows(previous, &[row("a", Some(10), 9.0)]);
        let got: Vec<(Option<u32>, f64)> = merged.iter().map(|r| (r.epoch, r.fid)).collect();
        assert_eq!(got, vec![(Some(5), 3.0), (Some(10), 9.0), (None, 1.0)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.parquet");
        write_rows(&path, &merged).unwrap();
        assert_eq!(read_rows(&path).unwrap(), merged);
    }
}
