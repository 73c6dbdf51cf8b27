//! `best.json` beside `best.generator.onnx`: the generator that scored lowest during training (`train
//! --eval-every`), written by the trainer and read by `eval`'s report and by a resumed run.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The best in-training score so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: u64,
    /// FID of `samples` generated images against the reference (lower is better).
    pub fid: f64,
    /// Which weights `best.generator.onnx` carries: `ema` (the moving average), `raw` (the trained weights of a
    /// run with an average) or `trained` (a run without one).
    pub weights: String,
    pub samples: usize,
    /// What the score is measured against, in words.
    pub reference: String,
}

/// The record in `path`, or None when there is none yet.
pub fn read_best(path: &Path) -> Result<Option<Best>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
