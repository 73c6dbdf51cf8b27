//! Every partitionable stage of the data pipeline (ingest, clean, pack) run as partitions: each partition writes
//! only its part, the merges (explicit or by the next stage) give manifests and shards byte-identical to one
//! process, re-submitted partitions compute nothing, and pack's memo makes a re-run after adding an image resize
//! only that image. On sample-data: a folder and a zip, with planted duplicates and rejects.
use crate::support::ingest_data::count;
use crate::support::Ctx;
use anime_pipe::partition::Partition;
use anime_pipe::report::Summary;
use anime_pipe::stages::{run, Stage};
use std::collections::BTreeMap;
use std::path::Path;

fn sample(dir: &Path) -> Ctx {
    anime_pipe::sample_data::write(&dir.join("sample"), 24, 3).unwrap();
    let yaml = std::fs::read_to_string(dir.join("sample/pipeline.yaml")).unwrap();
    let mut ctx = Ctx::new(&dir.join("work"), &dir.join("sample"), &yaml, 2);
    ctx.plan.pack.shard_samples = 5; // several shards per split
    ctx
}

fn partition(ctx: &Ctx, stage: Stage, index: u32, count: u32) -> Summary {
    let mut env = ctx.env.clone();
    env.partition = Some(Partition { index, count, origin: "test".into() });
    run::run_stage(&env, &ctx.plan, stage).unwrap()
}

/// Every file the dataset is made of: manifests (not stamps) and shards, by workdir-relative path.
fn outputs(ctx: &Ctx) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in ["manifests", "shards"] {
        for entry in walkdir::WalkDir::new(ctx.workdir.root().join(dir)).into_iter().map(|e| e.unwrap()) {
            let rel = entry.path().strip_prefix(ctx.workdir.root()).unwrap().to_string_lossy().to_string();
            let kept = rel.ends_with(".safetensors") || (rel.ends_with(".parquet") && !rel.contains("/parts/"));
            if entry.file_type().is_file() && kept {
                out.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

fn manifest(ctx: &Ctx, stage: &str) -> Option<Vec<u8>> {
    std::fs::read(ctx.workdir.manifest_path(stage)).ok()
}

#[test]
fn ingest_clean_and_pack_partitions_merge_into_the_single_process_dataset() {
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = sample(whole_dir.path());
    let files = count(&run::run_stage(&whole.env, &whole.plan, Stage::Ingest).unwrap(), "files");
    for stage in [Stage::Dedup, Stage::Clean, Stage::Pack] {
        run::run_stage(&whole.env, &whole.plan, stage).unwrap();
    }
    let expected = outputs(&whole);
    assert!(expected.keys().filter(|k| k.ends_with(".safetensors")).count() >= 4, "{:?}", expected.keys());

    let dir = tempfile::tempdir().unwrap();
    let ctx = sample(dir.path());
    // Ingest in 3 partitions: every file is ingested by exactly one of them, and none writes ingest.parquet.
    let rows: u64 = (0..3).map(|k| count(&partition(&ctx, Stage::Ingest, k, 3), "files")).sum();
    assert_eq!(rows, files, "each file in exactly one partition");
    assert!(manifest(&ctx, "ingest").is_none(), "a partition never writes the stage manifest");
    // The merge reads no file again: every outcome is in the partitions' re-run indexes.
    let merged = run::merge(&ctx.env, &ctx.plan, Stage::Ingest).unwrap();
    assert_eq!((count(&merged, "images decoded"), count(&merged, "reused")), (0, files));
    assert_eq!(manifest(&ctx, "ingest"), manifest(&whole, "ingest"), "merged ingest = single process");
    run::run_stage(&ctx.env, &ctx.plan, Stage::Dedup).unwrap();
    // Clean in 2 partitions; pack's partitions merge clean by themselves first.
    for k in 0..2 {
        partition(&ctx, Stage::Clean, k, 2);
    }
    assert!(manifest(&ctx, "clean").is_none());
    let computed: u64 = (0..4).map(|k| count(&partition(&ctx, Stage::Pack, k, 4), "computed")).sum();
    assert_eq!(manifest(&ctx, "clean"), manifest(&whole, "clean"), "clean merged by pack's first partition");
    assert!(manifest(&ctx, "pack").is_none() && !ctx.workdir.root().join("shards/64").exists(), "no shards yet");
    // Pack's merge writes the shards from the memo: nothing is decoded again.
    let merged = run::merge(&ctx.env, &ctx.plan, Stage::Pack).unwrap();
    assert_eq!((count(&merged, "computed"), count(&merged, "reused")), (0, computed));
    assert_eq!(outputs(&ctx), expected, "manifests and shards byte-identical to one process");
    assert_eq!(
        anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap(),
        anime_pipe::digest::dataset_digest(&whole.workdir).unwrap()
    );
    // Re-submitting finished partitions finishes at once.
    assert_eq!(count(&partition(&ctx, Stage::Pack, 1, 4), "computed"), 0);
    assert_eq!(count(&partition(&ctx, Stage::Ingest, 2, 3), "images decoded"), 0);
}

#[test]
fn a_merge_waits_for_every_ingest_partition_and_names_the_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = sample(dir.path());
    partition(&ctx, Stage::Ingest, 0, 3);
    partition(&ctx, Stage::Ingest, 2, 3);
    let err = format!("{:#}", run::merge(&ctx.env, &ctx.plan, Stage::Ingest).unwrap_err());
    assert!(err.contains("1 of 3 partitions") && err.contains("--partition 1/3"), "{err}");
    let err = format!("{:#}", run::run_stage(&ctx.env, &ctx.plan, Stage::Dedup).unwrap_err());
    assert!(err.contains("dedup needs ingest"), "{err}");
    // A whole ingest meanwhile reuses what the two partitions did, and reads only the third partition's files.
    let whole = ctx.run(Stage::Ingest).unwrap();
    assert!(count(&whole, "reused") > 0 && count(&whole, "reused") < count(&whole, "files"), "{whole:?}");
}

#[test]
fn pack_reruns_resize_only_new_images() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = sample(dir.path());
    for stage in [Stage::Ingest, Stage::Dedup, Stage::Clean] {
        run::run_stage(&ctx.env, &ctx.plan, stage).unwrap();
    }
    let first = run::run_stage(&ctx.env, &ctx.plan, Stage::Pack).unwrap();
    let packed = count(&first, "packed");
    assert_eq!((count(&first, "computed"), count(&first, "reused")), (packed, 0));
    // One new picture: a face of another sample set.
    anime_pipe::sample_data::write(&dir.path().join("other"), 8, 99).unwrap();
    let new_face = dir.path().join("other/images/face_0005.jpg");
    std::fs::copy(new_face, dir.path().join("sample/images/new_face.jpg")).unwrap();
    for stage in [Stage::Ingest, Stage::Dedup, Stage::Clean] {
        run::run_stage(&ctx.env, &ctx.plan, stage).unwrap();
    }
    let again = run::run_stage(&ctx.env, &ctx.plan, Stage::Pack).unwrap();
    assert_eq!(count(&again, "packed"), packed + 1);
    assert_eq!((count(&again, "computed"), count(&again, "reused")), (1, packed));
    // The same dataset as a fresh workdir gives.
    let mut fresh = Ctx::new(&dir.path().join("fresh"), &dir.path().join("sample"), "{}", 1);
    fresh.plan = ctx.plan.clone();
    for stage in [Stage::Ingest, Stage::Dedup, Stage::Clean, Stage::Pack] {
        run::run_stage(&fresh.env, &fresh.plan, stage).unwrap();
    }
    assert_eq!(outputs(&fresh), outputs(&ctx));
}
