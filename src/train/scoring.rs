//! Scoring the generator during training (`train --eval-every N`): every N steps and at the end the trainer
//! exports the generator (and, with a moving average, the raw weights too), asks a [`GeneratorScorer`] for its
//! score (lower is better: FID), writes it into `metrics.parquet` and keeps the best-scoring generator as
//! `best.generator.onnx` with `best.json`. The command layer implements the scorer with `eval`'s FID, so training
//! does not depend on evaluation.
use super::presets::TrainConfig;
use anyhow::Result;

/// Scores exported generators.
pub trait GeneratorScorer {
    /// The score of a generator (ONNX bytes as `anime-pipe train` exports them); lower is better.
    fn score(&mut self, generator_onnx: &[u8]) -> Result<f64>;
    /// Generated samples per score.
    fn samples(&self) -> usize;
    /// What the score compares against, in words (for best.json and the summary).
    fn reference(&self) -> String;
}

/// Builds the scorer for the configuration in force (a resumed run's own one), when `train.eval_every` asks.
pub type MakeScorer<'a> = &'a dyn Fn(&TrainConfig) -> Result<Box<dyn GeneratorScorer>>;
