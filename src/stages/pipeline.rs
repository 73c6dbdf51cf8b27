//! `anime-pipe run`: the stages listed in pipeline.yaml, in pipeline order, skipping up-to-date ones.
use crate::app::Ctx;
use crate::manifest::is_up_to_date;
use crate::report::Summary;
use anyhow::{bail, Result};

pub fn run(ctx: &Ctx, force: bool) -> Result<Summary> {
    let mut summary = Summary::start("run");
    let (mut ran, mut skipped) = (0, 0);
    for stage in ctx.settings.stages.clone() {
        let fingerprint = fingerprint(ctx, &stage)?;
        if !force && is_up_to_date(&ctx.workdir, &stage, &fingerprint) {
            summary.fact(&stage, "up to date (skipped)");
            skipped += 1;
            continue;
        }
        let stage_summary = run_stage(ctx, &stage)?;
        ctx.reporter.emit(&stage_summary);
        summary.fact(&stage, format!("ran in {:.2} s", stage_summary.seconds));
        ran += 1;
    }
    summary.count("stages run", ran).count("stages skipped", skipped);
    summary.fact("dataset digest", crate::digest::dataset_digest(&ctx.workdir)?);
    Ok(summary.finish())
}

fn fingerprint(ctx: &Ctx, stage: &str) -> Result<String> {
    use crate::stages::*;
    match stage {
        "ingest" => ingest::fingerprint(ctx),
        "dedup" => dedup::fingerprint(ctx),
        "crop" => crop::fingerprint(ctx),
        "upscale" => upscale::fingerprint(ctx),
        "clean" => clean::fingerprint(ctx),
        "pack" => pack::fingerprint(ctx),
        other => bail!("stage {other:?} is not available in this build yet"),
    }
}

fn run_stage(ctx: &Ctx, stage: &str) -> Result<Summary> {
    use crate::stages::*;
    match stage {
        "ingest" => ingest::run(ctx),
        "dedup" => dedup::run(ctx),
        "crop" => crop::run(ctx),
        "upscale" => upscale::run(ctx),
        "clean" => clean::run(ctx),
        "pack" => pack::run(ctx),
        other => bail!("stage {other:?} is not available in this build yet"),
    }
}
