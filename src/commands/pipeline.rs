//! `anime-pipe run`, `lock` and `diff` at the command layer: the data stages (`stages::run`), then `train` and
//! `eval` when pipeline.yaml lists them (orchestrated here: `stages` knows nothing of training), then, with
//! `--locked`, the comparison with pipeline.lock.
//!
//! **Re-runs do not retrain.** `train` trains into `runs/<preset>-<key>/`, the key being the first 10 hex digits
//! of blake3(resolved `train:` config as JSON ‖ dataset digest). When that directory holds a finished run (its
//! latest checkpoint reached the configured length), `run` says so and skips training; an interrupted one
//! (Ctrl-C) is resumed; a changed `train:` section or dataset gives another key, so a new run. Delete the
//! directory to retrain it.
use super::Interrupted;
use crate::config::resolve::Resolved;
use crate::config::AfterStage;
use crate::env::Env;
use crate::eval::{EvalRequest, Target};
use crate::inspect::diff::{self, StageDiff};
use crate::inspect::lock::{self, Lock, LockDiff};
use crate::manifest::{is_up_to_date, read_parquet};
use crate::named::Named;
use crate::report::Summary;
use crate::rundir::RunDir;
use crate::stages::Stage;
use crate::train::trainer::{self, DebugOptions, RunChoice, StopReason, TrainRequest};
use crate::workdir::{atomic_write, Workdir};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The workdir differs from pipeline.lock (`run --locked`), or the two sides of `diff` differ: exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("differs")]
pub struct Differs;

/// `run`'s flags.
pub struct RunFlags {
    pub force: bool,
    pub locked: bool,
}

/// `anime-pipe run`. `lock_path` is pipeline.lock beside pipeline.yaml.
pub fn run(env: &Env, resolved: &Resolved, flags: RunFlags, lock_path: &Path) -> Result<()> {
    let RunFlags { force, locked } = flags;
    // A missing lock is an error before any work, not after an hour of training.
    let expected = if locked { Some(Lock::load(lock_path)?) } else { None };
    let summary = crate::stages::run::run(env, &resolved.plan, force)?;
    env.reporter.emit(&summary);
    let mut run_dir = None;
    for step in &resolved.after {
        match step {
            AfterStage::Train => run_dir = Some(train(env, resolved)?),
            AfterStage::Eval => eval(env, resolved, run_dir.as_deref())?,
        }
    }
    if let Some(dir) = &run_dir {
        env.reporter.emit(&next_steps(dir));
    }
    if let Some(expected) = expected {
        let actual = Lock::of(&env.workdir, &resolved.plan)?;
        let differences = lock::compare(&expected, &actual);
        let mut s = Summary::start("locked");
        if differences.is_empty() {
            s.fact("pipeline.lock", format!("{}: identical", lock_path.display()));
            env.reporter.emit(&s.finish());
            return Ok(());
        }
        report_lock_differences(&differences, lock_path, env.workdir.root(), &mut s);
        env.reporter.emit(&s.finish());
        return Err(Differs.into());
    }
    Ok(())
}

fn report_lock_differences(d: &LockDiff, lock_path: &Path, workdir: &Path, s: &mut Summary) {
    eprintln!("error: the workdir differs from {}:", lock_path.display());
    for line in d.lines() {
        eprintln!("  {line}");
        s.fact("differs", line);
    }
    let stage = d.stages.first().map(|c| c.stage.as_str()).unwrap_or("clean");
    eprintln!(
        "the rows: anime-pipe diff BASELINE {} --stage {stage}   (BASELINE: a workdir built from the locked state, \
         e.g. CI's cache from the main branch)\n\
         the counts: anime-pipe --workdir {} stats --stage {stage}\n\
         accept the change: anime-pipe lock, and commit pipeline.lock",
        workdir.display(),
        workdir.display()
    );
}

/// `train` in `stages:`: trains unless the same config already finished on the same dataset. Returns the run.
fn train(env: &Env, resolved: &Resolved) -> Result<PathBuf> {
    let dir = run_dir_for(env, resolved)?;
    let run_dir = RunDir::at(&dir);
    let choice = if dir.exists() {
        if trainer::is_finished(&run_dir)? {
            let mut s = Summary::start("train");
            s.fact("up to date (skipped)", format!("{} finished with this config and dataset", dir.display()));
            s.fact("retrain", format!("delete {} and run again", dir.display()));
            env.reporter.emit(&s.finish());
            return Ok(dir);
        }
        RunChoice::Resume { dir: dir.clone(), overrides: Default::default() }
    } else {
        RunChoice::New { name: Some(run_dir.name()) }
    };
    let request = TrainRequest {
        workdir: env.workdir.clone(),
        config: resolved.train.clone(),
        run: choice,
        device: env.device,
        threads: env.threads,
        reporter: env.reporter,
        debug: DebugOptions::default(),
    };
    let make = |c: &crate::train::presets::TrainConfig| {
        super::training_fid::make_scorer(env, &resolved.eval, &resolved.plan.models.fid_inception, c)
    };
    let outcome = trainer::train(&request, Some(&make))?;
    env.reporter.emit(&outcome.summary());
    if outcome.stop == StopReason::Interrupted {
        return Err(Interrupted.into());
    }
    Ok(dir)
}

/// `runs/<preset>-<key>`: the key hashes the resolved training config and the dataset digest.
fn run_dir_for(env: &Env, resolved: &Resolved) -> Result<PathBuf> {
    let digest = crate::digest::dataset_digest(&env.workdir)?;
    let mut h = blake3::Hasher::new();
    h.update(b"anime-pipe run/train/1\n").update(&serde_json::to_vec(&resolved.train)?).update(digest.as_bytes());
    let key = h.finalize().to_hex();
    Ok(env.workdir.runs_dir().join(format!("{}-{}", resolved.train.preset, &key[..10])))
}

/// `eval` in `stages:`: the run just trained (or, without `train`, the run of this config and dataset).
fn eval(env: &Env, resolved: &Resolved, trained: Option<&Path>) -> Result<()> {
    let inception = &resolved.plan.models.fid_inception;
    if !inception.is_file() {
        let mut s = Summary::start("eval");
        s.fact(
            "skipped",
            format!(
                "no Inception model at {} (models.fid_inception; see README.md, Evaluating generators)",
                inception.display()
            ),
        );
        env.reporter.emit(&s.finish());
        return Ok(());
    }
    let dir = match trained {
        Some(dir) => dir.to_path_buf(),
        None => {
            let dir = run_dir_for(env, resolved)?;
            if !dir.is_dir() {
                bail!("stages: eval needs a training run of this config: list train before eval in stages:");
            }
            dir
        }
    };
    let request = EvalRequest {
        target: Target::Run { dir, epochs: Vec::new() },
        size: None,
        force: false,
        save_features: None,
        settings: resolved.eval.clone(),
        inception: inception.clone(),
    };
    crate::eval::run(env, &request)?.emit(&env.reporter);
    Ok(())
}

/// Where the newcomer's eyes should go after a run that trained.
fn next_steps(dir: &Path) -> Summary {
    let run = RunDir::at(dir);
    let mut s = Summary::start("trained");
    let mut grids: Vec<PathBuf> = std::fs::read_dir(run.samples_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .collect()
        })
        .unwrap_or_default();
    grids.sort();
    if let Some(grid) = grids.last() {
        s.fact("sample grid", grid.display());
    }
    s.fact("generator", run.generator_path().display());
    s.fact("try", format!("anime-pipe sample --model {} -n 64 --out samples.png", run.generator_path().display()));
    s.finish()
}

/// `anime-pipe lock`: pipeline.lock from a workdir whose stages are up to date with pipeline.yaml.
pub fn write_lock(env: &Env, resolved: &Resolved, lock_path: &Path) -> Result<()> {
    for &stage in &resolved.plan.stages {
        if !env.workdir.manifest_path(stage.name()).exists() {
            bail!("manifests/{stage}.parquet does not exist: run `anime-pipe run` first, then `anime-pipe lock`");
        }
        let inputs = stage.inputs(&resolved.plan, &env.workdir)?;
        if !is_up_to_date(&env.workdir, stage.name(), &inputs.fingerprint()) {
            bail!(
                "{stage} is not up to date with pipeline.yaml (its inputs changed since it ran): run `anime-pipe run` \
                 first, then `anime-pipe lock`"
            );
        }
    }
    let lock = Lock::of(&env.workdir, &resolved.plan)?;
    atomic_write(lock_path, lock.render().as_bytes())?;
    let mut s = Summary::start("lock");
    s.count("stages", lock.stages.len() as u64).count("shards", lock.shards.len() as u64);
    s.fact("dataset digest", &lock.dataset_digest);
    s.fact("written", lock_path.display());
    env.reporter.emit(&s.finish());
    Ok(())
}

/// `diff`'s request.
pub struct DiffRequest {
    pub a: PathBuf,
    pub b: PathBuf,
    pub stage: Option<Stage>,
    pub tolerance: f64,
}

/// One side of `diff`.
enum Side {
    Manifest(PathBuf),
    Workdir(PathBuf),
    Lock(PathBuf),
}

fn side(path: &Path) -> Result<Side> {
    if path.is_file() {
        return Ok(if path.extension().is_some_and(|e| e == "parquet") {
            Side::Manifest(path.to_path_buf())
        } else {
            Side::Lock(path.to_path_buf())
        });
    }
    if path.join("manifests").is_dir() {
        return Ok(Side::Workdir(path.to_path_buf()));
    }
    if path.is_dir() && path.file_name().is_some_and(|n| n == "manifests") {
        return Ok(Side::Workdir(path.parent().unwrap_or(Path::new(".")).to_path_buf()));
    }
    bail!("{}: expected a manifest (.parquet), a workdir (with manifests/) or a pipeline.lock", path.display())
}

/// `anime-pipe diff A B`. `resolved` gives the current pipeline.yaml, needed only to compute the lock of a workdir.
pub fn diff(request: DiffRequest, env_json: bool, resolved: impl Fn() -> Result<Resolved>) -> Result<()> {
    let DiffRequest { a, b, stage, tolerance } = request;
    let lock_of = |side: &Side| -> Result<Lock> {
        match side {
            Side::Lock(p) => Lock::load(p),
            Side::Workdir(w) => Lock::of(&Workdir::open(w)?, &resolved()?.plan),
            Side::Manifest(p) => bail!("{}: a manifest compares with a manifest or a workdir, not a lock", p.display()),
        }
    };
    let (sa, sb) = (side(&a)?, side(&b)?);
    let rows: Vec<StageDiff> = match (&sa, &sb) {
        (Side::Lock(_), _) | (_, Side::Lock(_)) => {
            let d = lock::compare(&lock_of(&sa)?, &lock_of(&sb)?);
            if env_json {
                println!("{}", serde_json::json!({ "kind": "lock", "identical": d.is_empty(), "differences": d }));
            } else if d.is_empty() {
                println!("no differences");
            } else {
                d.lines().iter().for_each(|l| println!("{l}"));
            }
            return if d.is_empty() { Ok(()) } else { Err(Differs.into()) };
        }
        (Side::Workdir(wa), Side::Workdir(wb)) => {
            diff::workdirs(&Workdir::open(wa)?, &Workdir::open(wb)?, stage, tolerance)?
        }
        (Side::Manifest(pa), Side::Manifest(pb)) => {
            vec![diff::manifests(&stage_of(pa, stage), &read_parquet(pa)?, &read_parquet(pb)?, tolerance)?]
        }
        (Side::Manifest(p), Side::Workdir(w)) => {
            let name = stage_of(p, stage);
            vec![diff::manifests(
                &name,
                &read_parquet(p)?,
                &read_parquet(&w.join("manifests").join(format!("{name}.parquet")))?,
                tolerance,
            )?]
        }
        (Side::Workdir(w), Side::Manifest(p)) => {
            let name = stage_of(p, stage);
            vec![diff::manifests(
                &name,
                &read_parquet(&w.join("manifests").join(format!("{name}.parquet")))?,
                &read_parquet(p)?,
                tolerance,
            )?]
        }
    };
    let identical = rows.iter().all(StageDiff::is_empty);
    if env_json {
        println!("{}", serde_json::json!({ "kind": "rows", "identical": identical, "stages": rows }));
    } else {
        print!("{}", diff::render(&rows));
    }
    if identical {
        Ok(())
    } else {
        Err(Differs.into())
    }
}

/// The stage a manifest file belongs to: `--stage`, else its file stem.
fn stage_of(path: &Path, stage: Option<Stage>) -> String {
    match stage {
        Some(s) => s.name().to_string(),
        None => path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(),
    }
}
