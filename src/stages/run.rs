//! `anime-pipe run`: the stages of the plan, in pipeline order, skipping those whose stamp says their manifest was
//! computed from the same inputs.
use crate::env::Env;
use crate::manifest::is_up_to_date;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::parts;
use crate::stages::{Plan, Stage};
use crate::workdir::WorkdirLock;
use anyhow::{bail, Result};

pub fn run(env: &Env, plan: &Plan, force: bool) -> Result<Summary> {
    if let Some(p) = &env.partition {
        bail!(
            "`run` executes whole stages, but partition {} is set: on a cluster, submit each stage as a job array \
             (`dedup` as a single job) chained with --dependency=afterok (see docs/cluster.md), or unset the \
             partition",
            p.describe()
        );
    }
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

/// The stages whose items can be split over partitions (`--partition K/N`, job arrays): all but dedup, which needs
/// every hash at once (and is cheap).
pub const PARTITIONED: &[Stage] = &[Stage::Ingest, Stage::Crop, Stage::Upscale, Stage::Clean, Stage::Pack];

/// One stage, as `anime-pipe <stage>` runs it: under the stage's workdir lock, with its inputs computed once the
/// lock is held. A partitioned upstream is merged first (when all its parts are done), also by a partition: the
/// partitions of an array that start at once take turns at the upstream's lock, and all but the first find it
/// merged.
pub fn run_stage(env: &Env, plan: &Plan, stage: Stage) -> Result<Summary> {
    if let Some(p) = &env.partition {
        if !PARTITIONED.contains(&stage) {
            bail!(
                "{stage} runs as one process (partition {} is set): only {} can be partitioned",
                p.describe(),
                PARTITIONED.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    merge_upstream(env, plan, stage)?;
    let _lock = lock(env, stage)?;
    stage.inputs(plan, &env.workdir)?.run(env)
}

/// `anime-pipe merge STAGE`: when every part of the stage's current inputs is done, the stage's manifest from the
/// parts' results (byte-identical to an unpartitioned run); else an error naming the missing partitions.
pub fn merge(env: &Env, plan: &Plan, stage: Stage) -> Result<Summary> {
    let whole = Env { partition: None, ..env.clone() };
    let _lock = lock(&whole, stage)?;
    let inputs = stage.inputs(plan, &env.workdir)?;
    let fingerprint = inputs.fingerprint();
    if is_up_to_date(&env.workdir, stage.name(), &fingerprint) {
        // Another process merged it while this one waited for the lock.
        let mut summary = Summary::start("merge");
        summary.fact(stage.name(), "up to date (already merged)");
        return Ok(summary.finish());
    }
    match parts::progress(&env.workdir, stage, &fingerprint)? {
        None => bail!(
            "no parts of `{stage}` for its current inputs in {}: run `anime-pipe --partition K/N {stage}` (or a job \
             array) first",
            parts::parts_dir(&env.workdir, stage, &fingerprint).display()
        ),
        Some((count, missing)) if !missing.is_empty() => bail!("{}", missing_parts_message(stage, count, &missing)),
        Some(_) => inputs.run(&whole),
    }
}

/// Merges the upstream of `stage` first when it was run in partitions, all done, and its manifest is not current.
fn merge_upstream(env: &Env, plan: &Plan, stage: Stage) -> Result<()> {
    let Some(upstream) = plan.upstream(stage).filter(|u| PARTITIONED.contains(u)) else {
        return Ok(());
    };
    let Ok(inputs) = upstream.inputs(plan, &env.workdir) else {
        return Ok(()); // its own upstream is missing: the stage's run says what to run
    };
    let fingerprint = inputs.fingerprint();
    if is_up_to_date(&env.workdir, upstream.name(), &fingerprint) {
        return Ok(());
    }
    match parts::progress(&env.workdir, upstream, &fingerprint)? {
        None => Ok(()),
        Some((count, missing)) if !missing.is_empty() => {
            bail!(
                "{stage} needs {upstream}, which ran in partitions: {}",
                missing_parts_message(upstream, count, &missing)
            )
        }
        Some(_) => {
            let summary = merge(env, plan, upstream)?;
            env.reporter.emit(&summary);
            Ok(())
        }
    }
}

fn missing_parts_message(stage: Stage, count: u32, missing: &[u32]) -> String {
    let list: Vec<String> = missing.iter().map(u32::to_string).collect();
    format!(
        "{} of {count} partitions of `{stage}` are not done: {}. Re-run only those, e.g. `anime-pipe --partition \
         {}/{count} {stage}` or `sbatch --array={} --wrap 'anime-pipe --partitions {count} {stage}'`; completed \
         partitions are kept",
        missing.len(),
        list.join(", "),
        missing[0],
        list.join(",")
    )
}

/// The stage's workdir lock: a second process running the same stage (or the same partition of it) in the same
/// workdir waits here; different partitions run at once.
fn lock(env: &Env, stage: Stage) -> Result<WorkdirLock> {
    let name = match &env.partition {
        Some(p) => format!("{}.part-{}-of-{}", stage.name(), p.index, p.count),
        None => stage.name().to_string(),
    };
    env.workdir.lock(&name, |path| {
        if !env.reporter.quiet {
            eprintln!(
                "waiting for another process running `{}` in this workdir to finish ({} is locked) ...",
                stage.name(),
                path.display()
            );
        }
    })
}
