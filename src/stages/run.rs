//! `anime-pipe run`: the stages of the plan, in pipeline order, skipping those whose stamp says their manifest was
//! computed from the same inputs.
use crate::env::Env;
use crate::manifest::is_up_to_date;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::{Plan, Stage};
use crate::workdir::WorkdirLock;
use anyhow::Result;

pub fn run(env: &Env, plan: &Plan, force: bool) -> Result<Summary> {
    let mut summary = Summary::start("run");
    let (mut ran, mut skipped) = (0, 0);
    for &stage in &plan.stages {
        let _lock = lock(env, stage)?;
        // Built only now, under the lock: the upstream manifest it pins may have just been rewritten by the previous
        // stage, and another process may have just finished this one.
        let inputs = stage.inputs(plan, &env.workdir)?;
        if !force && is_up_to_date(&env.workdir, stage.name(), &inputs.fingerprint()) {
            summary.fact(stage.name(), "up to date (skipped)");
            skipped += 1;
            continue;
        }
        let stage_summary = inputs.run(env)?;
        env.reporter.emit(&stage_summary);
        summary.fact(stage.name(), format!("ran in {:.2} s", stage_summary.seconds));
        ran += 1;
    }
    summary.count("stages run", ran).count("stages skipped", skipped);
    summary.fact("dataset digest", crate::digest::dataset_digest(&env.workdir)?);
    Ok(summary.finish())
}

/// One stage, as `anime-pipe <stage>` runs it: under the stage's workdir lock, with its inputs computed once the
/// lock is held.
pub fn run_stage(env: &Env, plan: &Plan, stage: Stage) -> Result<Summary> {
    let _lock = lock(env, stage)?;
    stage.inputs(plan, &env.workdir)?.run(env)
}

/// The stage's workdir lock: a second process running the same stage in the same workdir waits here.
fn lock(env: &Env, stage: Stage) -> Result<WorkdirLock> {
    env.workdir.lock(stage.name(), |path| {
        if !env.reporter.quiet {
            eprintln!(
                "waiting for another process running `{}` in this workdir to finish ({} is locked) ...",
                stage.name(),
                path.display()
            );
        }
    })
}
