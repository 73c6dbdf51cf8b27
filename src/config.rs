//! `pipeline.yaml`: the on-disk options (`*Options`, every field optional) and their resolution, with command-line
//! overrides, into the settings the stages use (`Settings`). Modelled on ruff's options -> resolved settings split:
//! stages never see an `Option` that has a documented default.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file as written by the user. Unknown keys are errors (a typo must not silently fall back to a default).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub sources: Vec<SourceOptions>,
    #[serde(default)]
    pub stages: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitsOptions,
    #[serde(default)]
    pub dedup: DedupOptions,
    #[serde(default)]
    pub clean: CleanOptions,
    #[serde(default)]
    pub pack: PackOptions,
    /// Sections owned by later stages (crop, upscale, train, eval, models) are kept as raw YAML until their
    /// modules parse them, so this file format can grow without breaking older configs.
    #[serde(default)]
    pub crop: Option<serde_norway::Value>,
    #[serde(default)]
    pub upscale: Option<serde_norway::Value>,
    #[serde(default)]
    pub train: Option<serde_norway::Value>,
    #[serde(default)]
    pub eval: Option<serde_norway::Value>,
    #[serde(default)]
    pub models: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceOptions {
    /// Short name used in manifests (`source` column); must be unique.
    pub name: String,
    /// A directory (scanned recursively) or an archive (.zip, .tar, .tar.gz/.tgz). Relative paths are resolved
    /// against the directory holding pipeline.yaml.
    pub path: PathBuf,
    /// The images are already face crops (e.g. the Kaggle Anime Face Dataset): the crop stage passes them through.
    #[serde(default)]
    pub already_cropped: bool,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOptions {
    pub max_file_bytes: Option<u64>,
    pub max_pixels: Option<u64>,
    pub max_archive_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DedupOptions {
    pub phash_threshold: Option<u32>,
    pub near: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CleanOptions {
    pub min_size: Option<u32>,
    pub max_aspect: Option<f64>,
    pub min_sharpness: Option<f64>,
    pub min_colorfulness: Option<f64>,
    pub min_entropy: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackOptions {
    pub sizes: Option<Vec<u32>>,
    pub fit: Option<Fit>,
    pub shard_samples: Option<usize>,
    pub val_fraction: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Centre-crop the longer side to a square (default: keeps the face large).
    Crop,
    /// Pad the shorter side with edge-replicated pixels to a square (keeps the whole image).
    Pad,
}

/// Resolved settings: every value present, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Directory holding the config file; relative source paths resolve against it.
    pub base_dir: PathBuf,
    pub sources: Vec<Source>,
    pub stages: Vec<String>,
    pub limits: Limits,
    pub dedup: DedupSettings,
    pub clean: CleanSettings,
    pub pack: PackSettings,
    /// The raw file, for sections other modules resolve themselves.
    #[serde(skip)]
    pub file: ConfigFile,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
    pub already_cropped: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Files larger than this are rejected unread (`too_large`).
    pub max_file_bytes: u64,
    /// Images with more pixels than this are rejected before decoding (`decompression_bomb`).
    pub max_pixels: u64,
    /// Total uncompressed bytes read from one archive; past it entries are rejected (`archive_budget_exceeded`).
    pub max_archive_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct DedupSettings {
    pub phash_threshold: u32,
    pub near: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CleanSettings {
    pub min_size: u32,
    pub max_aspect: f64,
    pub min_sharpness: f64,
    pub min_colorfulness: f64,
    pub min_entropy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackSettings {
    pub sizes: Vec<u32>,
    pub fit: Fit,
    pub shard_samples: usize,
    pub val_fraction: f64,
}

pub const ALL_STAGES: &[&str] = &["ingest", "dedup", "crop", "upscale", "clean", "pack"];
pub const DEFAULT_STAGES: &[&str] = &["ingest", "dedup", "clean", "pack"];

impl ConfigFile {
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        serde_norway::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}\n  hint: see the pipeline.yaml reference in README.md; every key is optional except sources[].name and sources[].path",
                origin.display()
            )
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, path)
    }
}

impl Settings {
    /// Resolves a config file (or none: defaults, sources from the command line) into settings.
    pub fn resolve(file: ConfigFile, base_dir: &Path) -> Result<Self> {
        let sources = resolve_sources(&file.sources, base_dir)?;
        let stages = resolve_stages(file.stages.as_deref())?;
        let l = &file.limits;
        let limits = Limits {
            max_file_bytes: l.max_file_bytes.unwrap_or(256 << 20),
            max_pixels: l.max_pixels.unwrap_or(128_000_000),
            max_archive_bytes: l.max_archive_bytes.unwrap_or(64 << 30),
        };
        positive("limits.max_file_bytes", limits.max_file_bytes as f64)?;
        positive("limits.max_pixels", limits.max_pixels as f64)?;
        positive("limits.max_archive_bytes", limits.max_archive_bytes as f64)?;
        let dedup = DedupSettings {
            phash_threshold: file.dedup.phash_threshold.unwrap_or(6),
            near: file.dedup.near.unwrap_or(true),
        };
        if dedup.phash_threshold > 32 {
            bail!(
                "dedup.phash_threshold = {}: expected 0..=32 bits of 64 (6 is a good default)",
                dedup.phash_threshold
            );
        }
        let c = &file.clean;
        let clean = CleanSettings {
            min_size: c.min_size.unwrap_or(64),
            max_aspect: c.max_aspect.unwrap_or(2.5),
            min_sharpness: c.min_sharpness.unwrap_or(0.0),
            min_colorfulness: c.min_colorfulness.unwrap_or(0.0),
            min_entropy: c.min_entropy.unwrap_or(0.0),
        };
        if clean.max_aspect < 1.0 {
            bail!("clean.max_aspect = {}: expected a ratio >= 1.0 (longer side / shorter side)", clean.max_aspect);
        }
        let p = &file.pack;
        let pack = PackSettings {
            sizes: p.sizes.clone().unwrap_or_else(|| vec![64]),
            fit: p.fit.unwrap_or(Fit::Crop),
            shard_samples: p.shard_samples.unwrap_or(4096),
            val_fraction: p.val_fraction.unwrap_or(0.05),
        };
        if pack.sizes.is_empty() || pack.sizes.iter().any(|&s| !(8..=4096).contains(&s)) {
            bail!("pack.sizes = {:?}: expected a non-empty list of sizes in 8..=4096, e.g. [64, 128]", pack.sizes);
        }
        if pack.shard_samples == 0 {
            bail!("pack.shard_samples = 0: expected a positive number of samples per shard (default 4096)");
        }
        if !(0.0..1.0).contains(&pack.val_fraction) {
            bail!("pack.val_fraction = {}: expected a fraction in [0, 1), e.g. 0.05", pack.val_fraction);
        }
        Ok(Self { base_dir: base_dir.to_path_buf(), sources, stages, limits, dedup, clean, pack, file })
    }
}

fn positive(key: &str, value: f64) -> Result<()> {
    if value <= 0.0 {
        bail!("{key} = {value}: expected a positive number");
    }
    Ok(())
}

fn resolve_sources(options: &[SourceOptions], base_dir: &Path) -> Result<Vec<Source>> {
    let mut seen = std::collections::BTreeSet::new();
    options
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                bail!(
                    "sources[{i}].name = {:?}: expected a non-empty name of letters, digits, '-', '_' or '.'",
                    s.name
                );
            }
            if !seen.insert(s.name.clone()) {
                bail!("sources[{i}].name = {:?}: names must be unique", s.name);
            }
            let path = if s.path.is_absolute() { s.path.clone() } else { base_dir.join(&s.path) };
            Ok(Source { name: s.name.clone(), path, already_cropped: s.already_cropped })
        })
        .collect()
}

fn resolve_stages(stages: Option<&[String]>) -> Result<Vec<String>> {
    let Some(stages) = stages else {
        return Ok(DEFAULT_STAGES.iter().map(|s| s.to_string()).collect());
    };
    for (i, s) in stages.iter().enumerate() {
        if !ALL_STAGES.contains(&s.as_str()) {
            bail!("stages[{i}] = {s:?}: expected one of {}", ALL_STAGES.join(", "));
        }
    }
    // Stages always run in pipeline order, whatever order the user listed them in.
    Ok(ALL_STAGES.iter().filter(|s| stages.iter().any(|x| x == *s)).map(|s| s.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Settings> {
        Settings::resolve(ConfigFile::parse(yaml, Path::new("pipeline.yaml"))?, Path::new("/base"))
    }

    #[test]
    fn empty_config_resolves_to_documented_defaults() {
        let s = resolve("{}").unwrap();
        assert_eq!(s.clean.min_size, 64);
        assert_eq!(s.pack.sizes, vec![64]);
        assert_eq!(s.dedup.phash_threshold, 6);
        assert_eq!(s.stages, DEFAULT_STAGES);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = resolve("clean:\n  min_sise: 3\n").unwrap_err().to_string();
        assert!(err.contains("min_sise"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = resolve("pack:\n  sizes: [2]\n").unwrap_err().to_string();
        assert!(err.contains("pack.sizes"), "{err}");
        let err = resolve("sources:\n - {name: a, path: x}\n - {name: a, path: y}\n").unwrap_err().to_string();
        assert!(err.contains("sources[1].name"), "{err}");
        let err = resolve("stages: [ingest, bake]\n").unwrap_err().to_string();
        assert!(err.contains("stages[1]"), "{err}");
    }

    #[test]
    fn relative_source_paths_resolve_against_the_config_dir() {
        let s = resolve("sources:\n - {name: k, path: data/k.zip, already_cropped: true}\n").unwrap();
        assert_eq!(s.sources[0].path, Path::new("/base/data/k.zip"));
        assert!(s.sources[0].already_cropped);
    }

    #[test]
    fn stages_run_in_pipeline_order() {
        let s = resolve("stages: [pack, ingest]\n").unwrap();
        assert_eq!(s.stages, vec!["ingest", "pack"]);
    }
}
