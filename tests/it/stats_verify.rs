//! stats (numbers and tables, --json through the binary), verify (clean workdir passes; each kind of corruption
//! is reported and fails the command) and the dataset digest (documented encoding, what it covers).

use crate::support;
use crate::support::dataset::*;
use crate::support::Ctx;
use anime_pipe::inspect::{stats, verify};
use anime_pipe::stages::Stage;
use std::path::Path;

/// dedup -> clean -> pack in a tempdir: 6 distinct images (one too small, one wide, one undecodable) plus a
/// duplicate row.
fn pipeline_workdir(dir: &Path) -> Ctx {
    let mut ctx = context(dir);
    ctx.plan.pack.sizes = vec![16, 32];
    ctx.plan.pack.shard_samples = 2;
    ctx.plan.pack.val_fraction = 0.3;
    let mut duplicate = Item::image(1, "dup.png", &noise_rgb(70, 70, 1));
    duplicate.status = "duplicate";
    let items = vec![
        Item::image(0, "a.png", &noise_rgb(70, 70, 1)),
        Item::image(0, "b.png", &noise_rgb(130, 140, 2)),
        Item::image(1, "c.png", &noise_rgb(600, 520, 3)),
        Item::image(1, "tiny.png", &noise_rgb(20, 30, 4)),
        Item::image(1, "wide.png", &noise_rgb(300, 64, 5)),
        Item::image(0, "strip.png", &noise_rgb(80, 20, 6)),
        duplicate,
    ];
    publish_dedup(&ctx.workdir, &items);
    ctx.run(Stage::Clean).unwrap();
    ctx.run(Stage::Pack).unwrap();
    ctx
}

fn problems(ctx: &Ctx) -> Vec<String> {
    verify::check(&ctx.workdir).unwrap().problems
}

fn first_shard(ctx: &Ctx) -> String {
    anime_pipe::digest::shard_paths(&ctx.workdir).unwrap().into_iter().next().unwrap()
}

#[test]
fn verify_passes_on_an_intact_workdir() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let findings = verify::check(&ctx.workdir).unwrap();
    assert!(findings.problems.is_empty(), "{:?}", findings.problems);
    assert!(findings.notes.is_empty(), "{:?}", findings.notes);
    // dedup lists 6 distinct objects (the duplicate shares one); 3 accepted items at 2 sizes fill 2-sample shards.
    assert_eq!(findings.objects, 6);
    assert_eq!(findings.manifests, 3);
    assert!(findings.shards >= 4, "{}", findings.shards);
    assert!(verify::run(&ctx.env).is_ok());
}

#[test]
fn verify_reports_a_corrupted_shard() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let shard = first_shard(&ctx);
    let path = ctx.workdir.root().join(&shard);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40; // one pixel value: the header still parses
    std::fs::write(&path, &bytes).unwrap();
    let found = problems(&ctx);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(&shard) && found[0].contains("checksum mismatch"), "{found:?}");
    let err = format!("{:#}", verify::run(&ctx.env).unwrap_err());
    assert!(err.contains("1 problem") && err.contains(&shard), "{err}");
}

#[test]
fn verify_reports_a_truncated_shard_and_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let shards = anime_pipe::digest::shard_paths(&ctx.workdir).unwrap();
    let truncated = ctx.workdir.root().join(&shards[0]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    std::fs::remove_file(ctx.workdir.root().join(&shards[1])).unwrap();
    let found = problems(&ctx);
    assert!(found.iter().any(|p| p.contains(&shards[0]) && p.contains("not a valid safetensors")), "{found:?}");
    assert!(found.iter().any(|p| p.contains(&shards[1]) && p.contains("cannot read")), "{found:?}");
}

#[test]
fn verify_checks_shard_shapes_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    // Drop one accepted row from pack.parquet: its shard now holds one sample more than the manifest lists.
    let df = read_stage(&ctx.workdir, "pack");
    let shard = strs(&df, "shard");
    let drop_row = (0..df.height()).find(|&i| shard[i].is_some() && u32s(&df, "index")[i] == Some(1)).unwrap();
    let keep: Vec<bool> = (0..df.height()).map(|i| i != drop_row).collect();
    let mask =
        <polars::prelude::BooleanChunked as polars::prelude::NewChunkedArray<_, _>>::from_slice("keep".into(), &keep);
    let mut smaller = df.filter(&mask).unwrap();
    anime_pipe::manifest::write_parquet(&ctx.workdir.manifest_path("pack"), &mut smaller).unwrap();
    let found = problems(&ctx);
    let name = shard[drop_row].clone().unwrap();
    assert!(found.iter().any(|p| p.contains("pack.parquet was modified after publication")), "{found:?}");
    assert!(found.iter().any(|p| p.contains(&name) && p.contains("shape")), "{found:?}");
    assert!(found.iter().any(|p| p.contains(&name) && p.contains("metadata `count`")), "{found:?}");
}

#[test]
fn verify_reports_corrupt_and_missing_cache_objects() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let df = read_stage(&ctx.workdir, "clean");
    let objects: Vec<String> = strs(&df, "object").into_iter().flatten().collect();
    std::fs::write(ctx.workdir.object_path(&objects[0]), b"bit rot").unwrap();
    std::fs::remove_file(ctx.workdir.object_path(&objects[1])).unwrap();
    let found = problems(&ctx);
    assert!(found.iter().any(|p| p.contains(&objects[0]) && p.contains("corrupt")), "{found:?}");
    assert!(found.iter().any(|p| p.contains(&objects[1]) && p.contains("missing")), "{found:?}");
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn verify_binary_exits_non_zero_and_lists_problems() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let ok = support::anime_pipe()
        .current_dir(dir.path())
        .args(["-q", "--workdir"])
        .arg(dir.path())
        .arg("verify")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let shard = first_shard(&ctx);
    std::fs::write(ctx.workdir.root().join(&shard), b"garbage").unwrap();
    let bad = support::anime_pipe()
        .current_dir(dir.path())
        .args(["--workdir"])
        .arg(dir.path())
        .arg("verify")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("verify found") && stderr.contains(&shard), "{stderr}");
}

#[test]
fn verify_notes_unlisted_shard_files_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    std::fs::write(dir.path().join("shards/16/train-00042.safetensors"), b"stale").unwrap();
    let findings = verify::check(&ctx.workdir).unwrap();
    assert!(findings.problems.is_empty(), "{:?}", findings.problems);
    assert!(findings.notes.iter().any(|n| n.contains("shards/16/train-00042.safetensors")), "{:?}", findings.notes);
}

#[test]
fn stats_counts_match_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let clean_stats = stats::manifest_stats("clean", &read_stage(&ctx.workdir, "clean")).unwrap();
    assert_eq!(clean_stats.rows, 6);
    assert_eq!(clean_stats.status.get("ok"), Some(&3));
    assert_eq!(clean_stats.status.get("rejected"), Some(&3));
    let rejects: Vec<(&str, u64)> = clean_stats.rejects.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(rejects, vec![("bad_aspect", 1), ("too_small", 2)]);
    let sources: Vec<(&str, u64)> = clean_stats.sources.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(sources, vec![("src0", 3), ("src1", 3)]);
    // Dimensions: 70x70, 130x140, 600x520, 20x30, 300x64, 80x20.
    let sizes = clean_stats.sizes.unwrap();
    assert_eq!(sizes.buckets, vec!["<64", "64-127", "128-255", "256-511", "512-1023", ">=1024"]);
    assert_eq!(sizes.width, vec![1, 2, 1, 1, 1, 0]);
    assert_eq!(sizes.height, vec![2, 2, 1, 0, 1, 0]);
    assert_eq!(sizes.short_side, vec![2, 2, 1, 0, 1, 0]);

    let dedup_stats = stats::manifest_stats("dedup", &read_stage(&ctx.workdir, "dedup")).unwrap();
    assert_eq!(dedup_stats.duplicates.get("exact_pixels"), Some(&1));
    assert_eq!(dedup_stats.status.get("duplicate"), Some(&1));

    let pack_stats = stats::manifest_stats("pack", &read_stage(&ctx.workdir, "pack")).unwrap();
    assert_eq!(pack_stats.rows, 6, "3 accepted items x 2 sizes");
    let total: u64 = pack_stats.pack.values().filter(|c| c.size == 16).map(|c| c.samples).sum();
    assert_eq!(total, 3);
    for cell in pack_stats.pack.values() {
        assert_eq!(cell.shards, cell.samples.div_ceil(2), "2 samples per shard: {cell:?}");
    }
}

#[test]
fn size_buckets_have_the_documented_boundaries() {
    let cases = [(0, 0), (63, 0), (64, 1), (127, 1), (128, 2), (255, 2), (256, 3), (511, 3), (512, 4), (1023, 4)];
    for (side, bucket) in cases {
        assert_eq!(stats::bucket(side), bucket, "{side}");
    }
    assert_eq!(stats::bucket(1024), 5);
    assert_eq!(stats::bucket(u32::MAX), 5);
}

#[test]
fn stats_binary_prints_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    pipeline_workdir(dir.path());
    let text = support::anime_pipe()
        .current_dir(dir.path())
        .args(["--workdir"])
        .arg(dir.path())
        .arg("stats")
        .output()
        .unwrap();
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    for needle in ["dedup.parquet: 7 rows", "clean.parquet: 6 rows", "reject reason", "shorter side", "shards"] {
        assert!(stdout.contains(needle), "{needle:?} missing in:\n{stdout}");
    }
    assert!(stdout.find("dedup.parquet").unwrap() < stdout.find("clean.parquet").unwrap(), "pipeline order");

    let json = support::anime_pipe()
        .current_dir(dir.path())
        .args(["--json", "--workdir"])
        .arg(dir.path())
        .args(["stats"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("stdout is exactly one JSON object");
    assert_eq!(value["manifests"]["clean"]["rows"], 6);
    assert_eq!(value["manifests"]["clean"]["rejects"]["too_small"], 2);
    assert_eq!(value["manifests"]["dedup"]["duplicates"]["exact_pixels"], 1);

    let one = support::anime_pipe()
        .current_dir(dir.path())
        .args(["--json", "--workdir"])
        .arg(dir.path())
        .args(["stats", "--stage", "pack"])
        .output();
    let value: serde_json::Value = serde_json::from_slice(&one.unwrap().stdout).unwrap();
    assert_eq!(value["manifests"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["pack"]);

    let missing = support::anime_pipe()
        .current_dir(dir.path())
        .args(["--workdir"])
        .arg(dir.path())
        .args(["stats", "--stage", "crop"])
        .output();
    let missing = missing.unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("crop.parquet does not exist"));
}

/// The digest, recomputed from its documented encoding.
fn documented_digest(root: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"anime-pipe-digest/1\n");
    let mut manifests: Vec<String> = std::fs::read_dir(root.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    manifests.sort();
    let add = |h: &mut blake3::Hasher, kind: &str, name: &str, bytes: Vec<u8>| {
        h.update(format!("{kind}\n{name}\n").as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    };
    for m in &manifests {
        add(&mut h, "manifest", m, std::fs::read(root.join("manifests").join(m)).unwrap());
    }
    let pack = read_parquet_file(&root.join("manifests/pack.parquet"));
    let mut shards: Vec<String> = strs(&pack, "shard").into_iter().flatten().collect();
    shards.sort();
    shards.dedup();
    for s in &shards {
        add(&mut h, "shard", s, std::fs::read(root.join(s)).unwrap());
    }
    h.finalize().to_hex().to_string()
}

fn read_parquet_file(path: &Path) -> polars::prelude::DataFrame {
    anime_pipe::manifest::read_parquet(path).unwrap()
}

#[test]
fn digest_follows_its_documented_encoding_and_covers_the_dataset_only() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = pipeline_workdir(dir.path());
    let digest = anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap();
    assert_eq!(digest, documented_digest(dir.path()));
    // Not covered: stamps, files pack does not list, cache objects.
    std::fs::write(ctx.workdir.stamp_path("clean"), b"{}").unwrap();
    std::fs::write(dir.path().join("shards/16/train-00099.safetensors"), b"x").unwrap();
    std::fs::write(dir.path().join("manifests/.scratch.parquet"), b"x").unwrap();
    assert_eq!(anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap(), digest);
    // Covered: every byte of every listed shard.
    let shard = ctx.workdir.root().join(first_shard(&ctx));
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    assert_ne!(anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap(), digest);
}
