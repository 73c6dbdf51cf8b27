//! Shared helpers for the integration tests (`shared_dir`, `anime_pipe`) and, one submodule per family of tests,
//! their fixtures.
pub mod dataset;
pub mod eval;
pub mod faces;
pub mod ingest_data;
pub mod train;

use std::path::PathBuf;

/// `../shared` beside the checkout, when present. Tests that need it call this: without it they return early
/// (saying so) on a developer machine, and FAIL in CI (`CI=true`), where the shared data must be present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.join("data").is_dir() {
        return Some(dir.canonicalize().unwrap());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("../shared/data is missing, and CI=true requires it (shared data must sit beside the checkout)");
    }
    eprintln!("note: ../shared not found; skipping the parts of this test that need it");
    None
}

/// The built `anime-pipe` binary, for end-to-end tests of the command line.
pub fn anime_pipe() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_anime-pipe"))
}

use anime_pipe::config::ConfigFile;
use anime_pipe::env::Env;
use anime_pipe::report::{Reporter, Summary};
use anime_pipe::runtime::Device;
use anime_pipe::stages::{Plan, Stage};
use anime_pipe::workdir::Workdir;
use polars::prelude::Column;
use std::path::Path;

/// A workdir with a resolved plan: runs stages the way `anime-pipe <stage>` does (inputs from the plan, then run),
/// with tests free to adjust `plan` in between.
pub struct Ctx {
    pub env: Env,
    pub plan: Plan,
    /// = `env.workdir`, for brevity.
    pub workdir: Workdir,
}

impl Ctx {
    /// `yaml` resolved with relative paths against `base`, working in `workdir` with `threads` threads.
    pub fn new(workdir: &Path, base: &Path, yaml: &str, threads: usize) -> Ctx {
        let file = ConfigFile::parse(yaml, Path::new("pipeline.yaml")).unwrap();
        let plan = file.resolve(base).unwrap().plan;
        let workdir = Workdir::open(workdir).unwrap();
        let env = Env {
            workdir: workdir.clone(),
            threads,
            reporter: Reporter { quiet: true, json: false },
            device: Device::Auto,
            partition: None,
        };
        Ctx { env, plan, workdir }
    }

    pub fn run(&self, stage: Stage) -> anyhow::Result<Summary> {
        stage.inputs(&self.plan, &self.workdir)?.run(&self.env)
    }

    pub fn fingerprint(&self, stage: Stage) -> anyhow::Result<String> {
        Ok(stage.inputs(&self.plan, &self.workdir)?.fingerprint())
    }
}

/// The measure columns (`pixel_hash` ... `entropy`) of images given as file bytes, as ingest would write them:
/// null for bytes that do not decode.
pub fn measure_columns(images: &[&[u8]]) -> Vec<Column> {
    let limits = anime_pipe::imageio::Limits::default();
    let measures: Vec<_> = images
        .iter()
        .map(|b| anime_pipe::imageio::decode_rgb8(b, &limits).ok().map(|d| anime_pipe::measure::measure(d.image)))
        .collect();
    anime_pipe::manifest::measure_columns(measures.iter().map(Option::as_ref))
}
