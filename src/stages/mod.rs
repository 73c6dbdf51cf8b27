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
pub mod parts;
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

    /// The fingerprint `pipeline.lock` records: [`Inputs::fingerprint`], except for ingest, whose inputs include
    /// where the sources are and their files' timestamps (they decide what to re-read on this machine, and differ
    /// on every checkout). Ingest's lock fingerprint covers what is portable: each source's name and
    /// `already_cropped` flag, and the decode limits; its manifest checksum covers the content. Downstream stages
    /// pin their upstream manifest by hash, so their fingerprints are portable as they are.
    pub fn lock_fingerprint(&self) -> String {
        match self {
            Inputs::Ingest(i) => {
                let sources: Vec<(&str, bool)> =
                    i.sources.iter().map(|s| (s.name.as_str(), s.already_cropped)).collect();
                fingerprint(Stage::Ingest, ingest::ALGORITHM, &("lock", sources, i.limits))
            }
            other => other.fingerprint(),
        }
    }

    /// Runs the stage and publishes its manifest, stamped with [`Inputs::fingerprint`].
    pub fn run(&self, env: &Env) -> Result<Summary> {
        let fingerprint = self.fingerprint();
        match self {
            Inputs::Ingest(i) => ingest::run(env, i, &fingerprint),
            Inputs::Dedup(i) => dedup::run(env, i, &fingerprint),
            Inputs::Crop(i) => crop::run(env, i, &fingerprint),
            Inputs::Upscale(i) => upscale::run(env, i, &fingerprint),
            Inputs::Clean(i) => clean::run(env, i, &fingerprint),
            Inputs::Pack(i) => pack::run(env, i, &fingerprint),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// Which plan sections each stage's output depends on (besides its upstream manifest). Model paths are not
    /// listed: models enter by content hash (tested below), so moving a model file changes nothing.
    const READS: &[(Stage, &[&str])] = &[
        (Stage::Ingest, &["sources", "limits"]),
        (Stage::Dedup, &["dedup"]),
        (Stage::Crop, &["crop", "limits", "sources"]),
        (Stage::Upscale, &["upscale", "limits"]),
        (Stage::Clean, &["clean"]),
        (Stage::Pack, &["pack", "limits"]),
    ];

    fn base_plan(source: &std::path::Path) -> Plan {
        let yaml = format!(
            "sources: [{{name: s, path: {}}}]\nstages: [ingest, dedup, crop, upscale, clean, pack]\n",
            source.display()
        );
        let file = crate::config::ConfigFile::parse(&yaml, "pipeline.yaml".as_ref()).unwrap();
        file.resolve("/base".as_ref()).unwrap().plan
    }

    /// Every stage's fingerprint under `plan`, or None when the plan cannot be listed (a perturbed source path).
    fn fingerprints(plan: &Plan, workdir: &Workdir) -> Option<BTreeMap<Stage, String>> {
        let upstream = Upstream { stage: "upstream".into(), blake3: "0".repeat(64) };
        let mut out = BTreeMap::new();
        out.insert(Stage::Ingest, Inputs::Ingest(ingest::Inputs::new(plan, workdir).ok()?).fingerprint());
        out.insert(Stage::Dedup, Inputs::Dedup(dedup::Inputs::from_plan(plan, upstream.clone())).fingerprint());
        out.insert(Stage::Crop, Inputs::Crop(crop::Inputs::from_plan(plan, upstream.clone())).fingerprint());
        out.insert(Stage::Upscale, Inputs::Upscale(upscale::Inputs::from_plan(plan, upstream.clone())).fingerprint());
        out.insert(Stage::Clean, Inputs::Clean(clean::Inputs::from_plan(plan, upstream.clone())).fingerprint());
        out.insert(Stage::Pack, Inputs::Pack(pack::Inputs::from_plan(plan, upstream)).fingerprint());
        Some(out)
    }

    /// Paths (JSON pointers) of every scalar in `v`.
    fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => map.iter().for_each(|(k, v)| leaves(v, format!("{path}/{k}"), out)),
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| leaves(v, format!("{path}/{i}"), out)),
            _ => out.push(path),
        }
    }

    /// Another value of the same kind that still deserialises into a plan.
    fn perturbed(plan: &Value, pointer: &str) -> Option<Plan> {
        let old = plan.pointer(pointer)?.clone();
        let candidates: Vec<Value> = match &old {
            Value::Bool(b) => vec![Value::Bool(!b)],
            Value::Number(n) if n.is_u64() => vec![Value::from(n.as_u64()? + 1)],
            Value::Number(n) => vec![Value::from(n.as_f64()? * 0.5 + 0.125)],
            Value::String(_) => ["yolo", "edge", "constant", "pad", "waifu2x", "realesrgan", "other"]
                .iter()
                .map(|s| Value::from(*s))
                .filter(|c| *c != old)
                .collect(),
            _ => vec![],
        };
        candidates.into_iter().find_map(|c| {
            let mut changed = plan.clone();
            *changed.pointer_mut(pointer)? = c;
            serde_json::from_value(changed).ok()
        })
    }

    #[test]
    fn every_setting_a_stage_reads_changes_its_fingerprint_and_no_other_setting_does() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("a.png"), b"not really a png").unwrap();
        let workdir = Workdir::open(dir.path().join("work")).unwrap();
        let plan = base_plan(&source);
        let base = fingerprints(&plan, &workdir).unwrap();
        let json = serde_json::to_value(&plan).unwrap();
        let mut paths = Vec::new();
        leaves(&json, String::new(), &mut paths);
        let mut checked = 0;
        for pointer in paths.iter().filter(|p| !p.starts_with("/stages") && !p.starts_with("/models")) {
            let Some(changed_plan) = perturbed(&json, pointer) else { continue };
            let Some(changed) = fingerprints(&changed_plan, &workdir) else { continue };
            let section = pointer.split('/').nth(1).unwrap();
            for (stage, reads) in READS {
                let differs = base[stage] != changed[stage];
                assert_eq!(differs, reads.contains(&section), "{stage}: changing {pointer} (section {section})");
            }
            checked += 1;
        }
        // Every section's scalars were exercised (sources, limits, dedup, crop, upscale, clean, pack).
        assert!(checked >= 30, "only {checked} settings perturbed");
    }

    #[test]
    fn a_replaced_model_changes_the_fingerprint_and_a_moved_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"), dir.path().join("c.onnx"));
        std::fs::write(&a, b"model one").unwrap();
        std::fs::write(&b, b"model one").unwrap();
        std::fs::write(&c, b"model two").unwrap();
        let mut plan = base_plan(dir.path());
        let upstream = Upstream { stage: "dedup".into(), blake3: "1".repeat(64) };
        let with = |plan: &Plan| Inputs::Crop(crop::Inputs::from_plan(plan, upstream.clone())).fingerprint();
        plan.models.face_detector = a;
        let first = with(&plan);
        plan.models.face_detector = b;
        assert_eq!(with(&plan), first, "same bytes elsewhere");
        plan.models.face_detector = c;
        assert_ne!(with(&plan), first, "other bytes");
    }

    #[test]
    fn upstreams_follow_the_enabled_stages() {
        use Stage::*;
        assert_eq!(Clean.upstream(&[Ingest, Dedup, Clean, Pack]), Some(Dedup));
        assert_eq!(Clean.upstream(&[Ingest, Dedup, Crop, Clean, Pack]), Some(Crop));
        assert_eq!(Clean.upstream(Stage::ALL), Some(Upscale));
        assert_eq!(Upscale.upstream(&[Dedup, Upscale]), Some(Dedup));
        assert_eq!(Upscale.upstream(&[Crop, Upscale]), Some(Crop));
        assert_eq!(Ingest.upstream(Stage::ALL), None);
        assert_eq!(Pack.upstream(&[]), Some(Clean));
    }
}
