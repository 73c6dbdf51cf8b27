//! Per-item reuse and partitioned runs of crop: results come back from the memo (a re-run computes nothing, a new
//! image computes one), partitions write parts and markers, merge refuses while a part is missing (naming it) and
//! then writes the very manifest an unpartitioned run writes.
use crate::support::faces::*;
use crate::support::{shared_dir, Ctx};
use anime_pipe::partition::Partition;
use anime_pipe::report::Summary;
use anime_pipe::stages::{run, Stage};
use std::path::PathBuf;

const IMAGES: [&str; 4] = [
    "ao7108__Emilia__Emilia_11.jpg",
    "ao7108__Emilia__Emilia_12.jpg",
    "ao7108__Emilia__Emilia_2.jpg",
    "demo__touhou_banner.jpg",
];

fn illust() -> Option<Vec<PathBuf>> {
    shared_dir().map(|d| IMAGES.iter().map(|n| d.join("data/illust").join(n)).collect())
}

fn count(summary: &Summary, what: &str) -> u64 {
    summary.counts.iter().find(|(k, _)| k == what).map(|(_, v)| *v).unwrap_or_else(|| panic!("no count {what}"))
}

fn workdir_with(dir: &std::path::Path, files: &[PathBuf]) -> Ctx {
    let mut ctx = context(dir, "{}", 2);
    let inputs: Vec<Input> = files.iter().map(|f| Input::file("illust", f)).collect();
    publish_dedup(&mut ctx, &inputs, &[]);
    ctx
}

fn in_partition(ctx: &Ctx, index: u32, count: u32) -> anyhow::Result<Summary> {
    let mut env = ctx.env.clone();
    env.partition = Some(Partition { index, count, origin: "test".into() });
    run::run_stage(&env, &ctx.plan, Stage::Crop)
}

#[test]
fn crop_reruns_compute_only_images_without_a_result() {
    let Some(files) = illust() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = workdir_with(dir.path(), &files[..3]);
    let first = run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    assert_eq!((count(&first, "computed"), count(&first, "reused")), (3, 0));
    let manifest = std::fs::read(ctx.workdir.manifest_path("crop")).unwrap();
    let again = run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    assert_eq!((count(&again, "computed"), count(&again, "reused"), count(&again, "images decoded")), (0, 3, 0));
    assert!(std::fs::read(ctx.workdir.manifest_path("crop")).unwrap() == manifest, "same manifest from the memo");
    // One new image: one computed.
    let ctx = workdir_with(dir.path(), &files);
    let more = run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    assert_eq!((count(&more, "computed"), count(&more, "reused")), (1, 3));
    // A changed setting is a new memo: nothing stale is reused.
    let mut ctx = ctx;
    ctx.plan.crop.geometry.margin = 0.3;
    let changed = run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    assert_eq!(count(&changed, "computed"), 4);
}

#[test]
fn partitions_merge_into_the_unpartitioned_manifest() {
    let Some(files) = illust() else { return };
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = workdir_with(whole_dir.path(), &files);
    run::run_stage(&whole.env, &whole.plan, Stage::Crop).unwrap();
    let expected = std::fs::read(whole.workdir.manifest_path("crop")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ctx = workdir_with(dir.path(), &files);
    let mut computed = 0;
    for k in [0, 2] {
        let s = in_partition(&ctx, k, 3).unwrap();
        computed += count(&s, "computed");
        assert!(s.facts.iter().any(|(k, v)| k == "partition" && v.contains("/3")));
    }
    assert!(!ctx.workdir.manifest_path("crop").exists(), "a partition never writes the stage manifest");
    let err = format!("{:#}", run::merge(&ctx.env, &ctx.plan, Stage::Crop).unwrap_err());
    assert!(err.contains("1 of 3 partitions") && err.contains("--partition 1/3"), "{err}");
    // The next stage cannot start on an incomplete crop either, and says why.
    let mut downstream = ctx.plan.clone();
    downstream.stages = vec![Stage::Ingest, Stage::Dedup, Stage::Crop, Stage::Clean];
    let err = format!("{:#}", run::run_stage(&ctx.env, &downstream, Stage::Clean).unwrap_err());
    assert!(err.contains("clean needs crop") && err.contains(": 1."), "{err}");
    computed += count(&in_partition(&ctx, 1, 3).unwrap(), "computed");
    assert_eq!(computed, files.len() as u64, "each image computed by exactly one partition");
    // Complete: the next stage merges by itself, from the memo, into the unpartitioned manifest.
    run::run_stage(&ctx.env, &downstream, Stage::Clean).unwrap();
    assert!(std::fs::read(ctx.workdir.manifest_path("crop")).unwrap() == expected, "the unpartitioned manifest");
    // An explicit merge now finds it merged (as the other partitions of an array do when they get the lock).
    let merged = run::merge(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    assert!(merged.facts.iter().any(|(k, v)| k == "crop" && v.contains("already merged")), "{merged:?}");
    assert!(std::fs::read(ctx.workdir.manifest_path("crop")).unwrap() == expected, "the unpartitioned manifest");
    // Re-submitting a finished partition finishes at once: everything is in the memo.
    assert_eq!(count(&in_partition(&ctx, 0, 3).unwrap(), "computed"), 0);
}

#[test]
fn dedup_cannot_be_partitioned() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "{}", 1);
    let mut env = ctx.env.clone();
    env.partition = Some(Partition { index: 0, count: 2, origin: "--partition".into() });
    let err = format!("{:#}", run::run_stage(&env, &ctx.plan, Stage::Dedup).unwrap_err());
    assert!(err.contains("dedup runs as one process") && err.contains("0/2 (--partition)"), "{err}");
}

#[test]
fn gc_frees_what_no_manifest_or_current_memo_needs() {
    let Some(files) = illust() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = workdir_with(dir.path(), &files[..2]);
    run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    let old_crops = crate::support::faces::strs(&crate::support::faces::read_stage(&ctx.workdir, "crop"), "object");
    // Other settings: new crops, a new memo; the old crops and memo are no longer needed.
    ctx.plan.crop.geometry.margin = 0.3;
    run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    let dry = anime_pipe::gc::run(&ctx.env, &ctx.plan, true).unwrap();
    assert!(count(&dry, "bytes freed") > 0 && count(&dry, "memos removed") == 1);
    assert!(ctx.workdir.root().join("cache/memo/crop").read_dir().unwrap().count() == 2, "a dry run deletes nothing");
    let gc = anime_pipe::gc::run(&ctx.env, &ctx.plan, false).unwrap();
    assert_eq!(count(&gc, "bytes freed"), count(&dry, "bytes freed"));
    assert!(count(&gc, "objects removed") > 0);
    let gone = old_crops.iter().flatten().filter(|o| !ctx.workdir.object_path(o).exists()).count();
    assert!(gone > 0, "old face crops are removed");
    // What remains is consistent and still complete: verify passes, and crop finds every result in its memo.
    assert!(anime_pipe::inspect::verify::check(&ctx.workdir).unwrap().problems.is_empty());
    let again = run::run_stage(&ctx.env, &ctx.plan, Stage::Crop).unwrap();
    assert_eq!(count(&again, "computed"), 0);
    assert_eq!(count(&anime_pipe::gc::run(&ctx.env, &ctx.plan, false).unwrap(), "bytes freed"), 0);
}
