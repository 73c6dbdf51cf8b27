//! The pipeline's stages and their one protocol.
//!
//! [`Stage`] knows the pipeline order and each stage's upstream. Each stage module (`ingest`, `dedup`, `crop`,
//! `upscale`, `clean`, `pack`) reads its upstream's manifest and publishes its own under `manifests/`. [`Plan`] is
//! what pipeline.yaml resolves to: the enabled stages and every stage's settings. `run` executes a plan, skipping
//! stages whose stamp matches their fingerprint.
pub mod clean;
pub mod crop;
pub mod dedup;
pub mod ingest;
pub mod pack;
pub mod run;
pub mod upscale;

use crate::env::Env;
use crate::imageio::Limits;
use crate::manifest::Upstream;
use crate::models::ModelPaths;
use crate::named::Named;
use crate::report::Summary;
use crate::workdir::Workdir;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// A pipeline stage. The declaration order is the pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Ingest,
    Dedup,
    Crop,
    Upscale,
    Clean,
    Pack,
}

impl Named for Stage {
    const ALL: &'static [Self] = &[Stage::Ingest, Stage::Dedup, Stage::Crop, Stage::Upscale, Stage::Clean, Stage::Pack];
    const WHAT: &'static str = "stage";
    fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Dedup => "dedup",
            Stage::Crop => "crop",
            Stage::Upscale => "upscale",
            Stage::Clean => "clean",
            Stage::Pack => "pack",
        }
    }
}
crate::impl_named_str!(Stage);

impl Stage {
    /// The stages `run` executes when pipeline.yaml lists none: crop and upscale need ONNX models.
    pub const DEFAULT: &'static [Stage] = &[Stage::Ingest, Stage::Dedup, Stage::Clean, Stage::Pack];

    /// The stage whose manifest this one reads, given the enabled stages: crop and upscale are optional, so
    /// upscale reads crop's or dedup's rows and clean the last of upscale, crop and dedup that is enabled.
    pub fn upstream(self, enabled: &[Stage]) -> Option<Stage> {
        let last_enabled =
            |of: &[Stage], fallback: Stage| of.iter().copied().find(|s| enabled.contains(s)).or(Some(fallback));
        match self {
            Stage::Ingest => None,
            Stage::Dedup => Some(Stage::Ingest),
            Stage::Crop => Some(Stage::Dedup),
            Stage::Upscale => last_enabled(&[Stage::Crop], Stage::Dedup),
            Stage::Clean => last_enabled(&[Stage::Upscale, Stage::Crop], Stage::Dedup),
            Stage::Pack => Some(Stage::Clean),
        }
    }
}

/// What pipeline.yaml resolves to for the stages: which run, and every stage's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Enabled stages, in pipeline order.
    pub stages: Vec<Stage>,
    pub sources: Vec<ingest::Source>,
    pub limits: Limits,
    pub dedup: dedup::DedupSettings,
    pub crop: crop::CropSettings,
    pub upscale: upscale::UpscaleSettings,
    pub clean: clean::CleanSettings,
    pub pack: pack::PackSettings,
    pub models: ModelPaths,
}

impl Plan {
    pub fn upstream(&self, stage: Stage) -> Option<Stage> {
        stage.upstream(&self.stages)
    }
}

/// One stage's inputs, built from the plan and the workdir: everything its output depends on. A stage's `run`
/// receives only these and the [`Env`] (which never changes results), so its fingerprint, derived mechanically
/// from the inputs, cannot miss a setting the stage reads.
pub enum Inputs {
    Ingest(ingest::Inputs),
    Dedup(dedup::Inputs),
    Crop(crop::Inputs),
    Upscale(upscale::Inputs),
    Clean(clean::Inputs),
    Pack(pack::Inputs),
}

impl Stage {
    /// This stage's inputs under `plan`: its settings, its upstream manifest (pinned by hash), models by hash.
    pub fn inputs(self, plan: &Plan, workdir: &Workdir) -> Result<Inputs> {
        Ok(match self {
            Stage::Ingest => Inputs::Ingest(ingest::Inputs::new(plan, workdir)?),
            Stage::Dedup => Inputs::Dedup(dedup::Inputs::new(plan, workdir)?),
            Stage::Crop => Inputs::Crop(crop::Inputs::new(plan, workdir)?),
            Stage::Upscale => Inputs::Upscale(upscale::Inputs::new(plan, workdir)?),
            Stage::Clean => Inputs::Clean(clean::Inputs::new(plan, workdir)?),
            Stage::Pack => Inputs::Pack(pack::Inputs::new(plan, workdir)?),
        })
    }

    /// The manifest this stage reads, pinned by its current hash.
    fn upstream_of(self, plan: &Plan, workdir: &Workdir) -> Result<Upstream> {
        let upstream = plan.upstream(self).expect("only ingest has no upstream, and it reads sources");
        Upstream::of(workdir, upstream.name(), self.name())
    }
}

impl Inputs {
    pub fn stage(&self) -> Stage {
        match self {
            Inputs::Ingest(_) => Stage::Ingest,
            Inputs::Dedup(_) => Stage::Dedup,
            Inputs::Crop(_) => Stage::Crop,
            Inputs::Upscale(_) => Stage::Upscale,
            Inputs::Clean(_) => Stage::Clean,
            Inputs::Pack(_) => Stage::Pack,
        }
    }

    /// blake3 over the stage, its algorithm version and its serialised inputs.
    pub fn fingerprint(&self) -> String {
        match self {
            Inputs::Ingest(i) => fingerprint(Stage::Ingest, ingest::ALGORITHM, i),
            Inputs::Dedup(i) => fingerprint(Stage::Dedup, dedup::ALGORITHM, i),
            Inputs::Crop(i) => fingerprint(Stage::Crop, crop::ALGORITHM, i),
            Inputs::Upscale(i) => fingerprint(Stage::Upscale, upscale::ALGORITHM, i),
            Inputs::Clean(i) => fingerprint(Stage::Clean, clean::ALGORITHM, i),
            Inputs::Pack(i) => fingerprint(Stage::Pack, pack::ALGORITHM, i),
        }
    }

    /// Runs the stage and publishes its manifest, stamped with [`Inputs::fingerprint`].
    pub fn run(&self, env: &Env) -> Result<Summary> {
        let fingerprint = self.fingerprint();
        let before = crate::imageio::decode_count();
        let mut summary = match self {
            Inputs::Ingest(i) => ingest::run(env, i, &fingerprint),
            Inputs::Dedup(i) => dedup::run(env, i, &fingerprint),
            Inputs::Crop(i) => crop::run(env, i, &fingerprint),
            Inputs::Upscale(i) => upscale::run(env, i, &fingerprint),
            Inputs::Clean(i) => clean::run(env, i, &fingerprint),
            Inputs::Pack(i) => pack::run(env, i, &fingerprint),
        }?;
        summary.count("images decoded", crate::imageio::decode_count() - before);
        Ok(summary)
    }
}

/// The fingerprint of serialisable inputs: a stage's algorithm version (bumped when its output for the same inputs
/// changes) and every input, in serde's field order.
pub fn fingerprint(stage: Stage, algorithm: &str, inputs: &impl Serialize) -> String {
    let json = serde_json::to_vec(inputs).expect("stage inputs serialise");
    let mut hasher = blake3::Hasher::new();
    for part in [b"anime-pipe stage/2".as_slice(), stage.name().as_bytes(), algorithm.as_bytes(), &json] {
        hasher.update(&(part.len() as u64).to_le_bytes()).update(part);
    }
    hasher.finalize().to_hex().to_string()
}

/// A model file as a stage input: its content hash is part of the fingerprint, its path is not (moving a model
/// changes no result; replacing it does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    #[serde(skip)]
    pub path: std::path::PathBuf,
    /// None when the file cannot be read: a stage that needs the model then says so, one that does not (nothing to
    /// detect or upscale) runs without it.
    pub blake3: Option<String>,
}

impl ModelRef {
    pub fn of(path: &std::path::Path) -> Self {
        Self { path: path.to_path_buf(), blake3: crate::manifest::file_blake3(path).ok() }
    }
}
