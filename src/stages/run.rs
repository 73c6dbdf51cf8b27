//! `anime-pipe run`: the stages listed in pipeline.yaml, in pipeline order, skipping up-to-date ones.
use crate::manifest::is_up_to_date;
use crate::named::Named;
use crate::report::Summary;
use crate::stages::{Ctx, Stage};
use anyhow::Result;

pub fn run(ctx: &Ctx, force: bool) -> Result<Summary> {
    let mut summary = Summary::start("run");
    let (mut ran, mut skipped) = (0, 0);
    for &stage in &ctx.plan.stages {
        let fingerprint = fingerprint(ctx, stage)?;
        if !force && is_up_to_date(&ctx.env.workdir, stage.name(), &fingerprint) {
            summary.fact(stage.name(), "up to date (skipped)");
            skipped += 1;
            continue;
        }
        let stage_summary = run_stage(ctx, stage)?;
        ctx.env.reporter.emit(&stage_summary);
        summary.fact(stage.name(), format!("ran in {:.2} s", stage_summary.seconds));
        ran += 1;
    }
    summary.count("stages run", ran).count("stages skipped", skipped);
    summary.fact("dataset digest", crate::digest::dataset_digest(&ctx.env.workdir)?);
    Ok(summary.finish())
}

pub fn fingerprint(ctx: &Ctx, stage: Stage) -> Result<String> {
    use crate::stages::*;
    match stage {
        Stage::Ingest => ingest::fingerprint(ctx),
        Stage::Dedup => dedup::fingerprint(ctx),
        Stage::Crop => crop::fingerprint(ctx),
        Stage::Upscale => upscale::fingerprint(ctx),
        Stage::Clean => clean::fingerprint(ctx),
        Stage::Pack => pack::fingerprint(ctx),
    }
}

pub fn run_stage(ctx: &Ctx, stage: Stage) -> Result<Summary> {
    use crate::stages::*;
    match stage {
        Stage::Ingest => ingest::run(ctx),
        Stage::Dedup => dedup::run(ctx),
        Stage::Crop => crop::run(ctx),
        Stage::Upscale => upscale::run(ctx),
        Stage::Clean => clean::run(ctx),
        Stage::Pack => pack::run(ctx),
    }
}
