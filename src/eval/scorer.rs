//! FID of one generator at a time against a fixed reference, for scoring during training (`train --eval-every`):
//! the same samples (seeded latents), Inception features and reference cache as `eval`, without the report.
use super::features::{Features, Inception, FEATURE_DIM};
use super::fid::{self, GaussianStats};
use super::reference::{self, ReferenceSpec};
use super::EvalSettings;
use crate::env::Env;
use crate::gan::generator::{Generator, LatentStream};
use crate::runtime::SessionOptions;
use anyhow::Result;
use std::path::Path;

/// The Inception network and the reference statistics, loaded once per training run.
pub struct FidScorer {
    inception: Inception,
    reference: GaussianStats,
    reference_count: usize,
    split: String,
    options: SessionOptions,
    samples: usize,
    seed: u64,
    batch_size: usize,
}

impl FidScorer {
    /// Loads the Inception model and the reference set of the pack at `size` (`settings`' split and
    /// `max_reference`; cached under `cache/fid/` as `eval` caches it), to score `samples` images per generator.
    pub fn open(env: &Env, settings: &EvalSettings, samples: usize, size: u32, inception: &Path) -> Result<FidScorer> {
        let options = SessionOptions { device: env.device, threads: env.threads, optimize: true };
        let mut inception = Inception::load(inception, &options)?;
        let spec = ReferenceSpec {
            dataset_digest: crate::digest::dataset_digest(&env.workdir)?,
            split: settings.split.clone(),
            size,
            inception_blake3: inception.model_blake3.clone(),
            max_reference: settings.max_reference,
        };
        let bar = env.reporter.bar(0, "FID reference");
        let r = reference::load_or_compute(&env.workdir, &spec, &mut inception, settings.batch_size, &bar)?;
        bar.finish_and_clear();
        Ok(FidScorer {
            inception,
            reference_count: r.features.rows,
            reference: r.stats,
            split: settings.split.clone(),
            options,
            samples,
            seed: settings.seed,
            batch_size: settings.batch_size,
        })
    }

    /// FID of `samples` images of the generator (ONNX bytes) from the seeded latents every call shares.
    pub fn fid(&mut self, generator_onnx: &[u8]) -> Result<f64> {
        let mut generator = Generator::from_bytes(generator_onnx, &self.options, "generator")?;
        let batch = generator.batch_size(self.batch_size);
        let mut latents = LatentStream::new(self.seed, generator.latent_len());
        let mut features = Features::empty(FEATURE_DIM);
        let mut done = 0;
        while done < self.samples {
            let count = batch.min(self.samples - done);
            let (pixels, side) = generator.generate(&latents.next_block(count), count)?;
            let embedded = self.inception.embed(&pixels, count, side as usize, side as usize)?;
            features.push_rows(&embedded.data);
            done += count;
        }
        fid::fid(&GaussianStats::of(&features)?, &self.reference)
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// "5000 train images": what the score compares against.
    pub fn reference(&self) -> String {
        format!("{} {} images", self.reference_count, self.split)
    }
}
