//! The in-training scorer `train --eval-every` uses: `eval`'s FID behind `train`'s scorer trait (the two layers
//! stay independent; this command layer joins them).
use crate::env::Env;
use crate::eval::scorer::FidScorer;
use crate::eval::EvalSettings;
use crate::train::presets::TrainConfig;
use crate::train::scoring::GeneratorScorer;
use anyhow::{bail, Result};
use std::path::Path;

struct TrainingFid(FidScorer);

impl GeneratorScorer for TrainingFid {
    fn score(&mut self, generator_onnx: &[u8]) -> Result<f64> {
        self.0.fid(generator_onnx)
    }
    fn samples(&self) -> usize {
        self.0.samples()
    }
    fn reference(&self) -> String {
        self.0.reference()
    }
}

/// FID of `train.eval_samples` images against the training pack at `train.image_size` (eval's split and
/// `max_reference`), with the Inception model at `inception`.
pub fn make_scorer(
    env: &Env,
    eval: &EvalSettings,
    inception: &Path,
    config: &TrainConfig,
) -> Result<Box<dyn GeneratorScorer>> {
    if !inception.is_file() {
        bail!(
            "train.eval_every = {} scores generators with the FID Inception model, and there is none at {} \
             (models.fid_inception; `anime-pipe models` says how to fetch it), or set train.eval_every to 0",
            config.eval_every,
            inception.display()
        );
    }
    let scorer = FidScorer::open(env, eval, config.eval_samples, config.image_size, inception)?;
    Ok(Box::new(TrainingFid(scorer)))
}
