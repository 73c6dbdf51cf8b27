//! The dedup stage end to end: exact bytes, exact pixels across formats, near duplicates after resizes,
//! re-encodes and small crops, the keep policy, the flags, and determinism. Real data from ../shared when present.

use crate::support;
use crate::support::ingest_data;
use crate::support::ingest_data::*;
use crate::support::Ctx;
use anime_pipe::stages::Stage;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, RgbImage};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

fn ingest_and_dedup(ctx: &Ctx) -> Vec<Row> {
    ctx.run(Stage::Ingest).unwrap();
    ctx.run(Stage::Dedup).unwrap();
    rows(ctx.workdir.root(), "dedup")
}

/// key -> (dup_kind, duplicate_of) for every duplicate row.
fn duplicates(rows: &[Row]) -> BTreeMap<String, (String, String)> {
    rows.iter()
        .filter(|r| r.status == "duplicate")
        .map(|r| (r.key.clone(), (r.dup_kind.clone().unwrap(), r.duplicate_of.clone().unwrap())))
        .collect()
}

fn dup(kind: &str, of: &str) -> (String, String) {
    (kind.to_string(), of.to_string())
}

#[test]
fn sample_data_duplicates_are_exactly_the_planted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sample");
    anime_pipe::sample_data::write(&dir, 30, 9).unwrap();
    let yaml = fs::read_to_string(dir.join("pipeline.yaml")).unwrap();
    let ctx = context(&tmp.path().join("work"), &dir, &yaml);
    let rows = ingest_and_dedup(&ctx);
    let expected: BTreeMap<String, (String, String)> = [
        // Same size and source: the smaller path is kept ("copy_of_..." < "face_...").
        ("images/face_0000.png", dup("exact_bytes", "images/copy_of_face_0000.png")),
        // Same bytes in two sources: the lower source_index is kept.
        ("zipped/copies/face_0003.jpg", dup("exact_bytes", "images/face_0003.jpg")),
        ("images/face_0002_reencoded.webp", dup("exact_pixels", "images/face_0002.png")),
        // The larger resolution is kept.
        ("images/face_0001_small.jpg", dup("near", "images/face_0001.jpg")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(duplicates(&rows), expected);
    // One dedup row per accepted ingest row, in the same order.
    let accepted: Vec<String> = ingest_data::rows(ctx.workdir.root(), "ingest")
        .into_iter()
        .filter(|r| r.status == "ok")
        .map(|r| r.key)
        .collect();
    assert_eq!(rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>(), accepted);
    for r in &rows {
        assert_eq!(r.reason, r.dup_kind, "reason mirrors dup_kind");
        assert_eq!(r.hamming.is_some(), r.dup_kind.as_deref() == Some("near"));
    }
}

/// Distinct pictures, and variants of `original.png`: it is the largest, and among same-size variants it has the
/// smallest path, so it is the one kept.
fn variants_folder(root: &Path) -> RgbImage {
    let original = picture(240, 240, 100);
    let put = |name: &str, bytes: Vec<u8>| {
        fs::create_dir_all(root).unwrap();
        fs::write(root.join(name), bytes).unwrap();
    };
    put("original.png", png(&original));
    put("resized_half.png", png(&imageops::resize(&original, 120, 120, FilterType::Triangle)));
    put("resized_odd.jpg", jpeg(&imageops::resize(&original, 157, 157, FilterType::CatmullRom), 92));
    put("requality_q25.jpg", jpeg(&original, 25));
    // Crops of 3% from every side and 2% from one side (pHash tolerates crops of about 3% of a side at the
    // default threshold; 5% moves it by about 10 bits).
    put("crop_3pct.png", png(&imageops::crop_imm(&original, 7, 7, 226, 226).to_image()));
    put("crop_2pct_left.png", png(&imageops::crop_imm(&original, 5, 0, 235, 240).to_image()));
    for seed in 1..=8 {
        put(&format!("other_{seed}.png"), png(&picture(240, 240, seed)));
    }
    original
}

#[test]
fn near_duplicates_survive_resizes_reencodes_and_small_crops() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    variants_folder(&data);
    let ctx = context(&tmp.path().join("work"), tmp.path(), &sources_yaml(&[("v", &data)]));
    let rows = ingest_and_dedup(&ctx);
    let got = duplicates(&rows);
    let expected: BTreeMap<String, (String, String)> =
        ["resized_half.png", "resized_odd.jpg", "requality_q25.jpg", "crop_3pct.png", "crop_2pct_left.png"]
            .iter()
            .map(|v| (format!("v/{v}"), dup("near", "v/original.png")))
            .collect();
    assert_eq!(got, expected);
    let threshold = ctx.plan.dedup.phash_threshold;
    assert!(rows.iter().filter_map(|r| r.hamming).all(|h| h <= threshold));
}

#[test]
fn near_search_follows_the_threshold_and_can_be_switched_off() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let original = picture(240, 240, 100);
    fs::write(data.join("original.png"), png(&original)).unwrap();
    fs::write(data.join("cropped.png"), png(&imageops::crop_imm(&original, 7, 0, 233, 240).to_image())).unwrap();
    for seed in 1..=3 {
        fs::write(data.join(format!("other_{seed}.png")), png(&picture(240, 240, seed))).unwrap();
    }
    let mut ctx = context(&tmp.path().join("work"), tmp.path(), &sources_yaml(&[("v", &data)]));
    // The threshold governs the whole-image pHash search; the crop search (window hashes) would find this 3% crop
    // at any threshold, so it is off here (dedup_recall tests it).
    ctx.plan.dedup.crops = false;
    let rows = ingest_and_dedup(&ctx);
    let distance = rows.iter().find(|r| r.key == "v/cropped.png").unwrap().hamming.expect("a near duplicate");
    assert!(distance > 0, "the crop must move the hash for this test to mean anything");
    // A threshold one below the pair's distance leaves it alone; at its distance it is found.
    ctx.plan.dedup.phash_threshold = distance - 1;
    ctx.run(Stage::Dedup).unwrap();
    assert!(duplicates(&rows_of(&ctx)).is_empty());
    ctx.plan.dedup.phash_threshold = distance;
    ctx.run(Stage::Dedup).unwrap();
    assert_eq!(duplicates(&rows_of(&ctx)).keys().collect::<Vec<_>>(), ["v/cropped.png"]);
    // Near search off: nothing here is an exact duplicate.
    ctx.plan.dedup.near = false;
    ctx.plan.dedup.phash_threshold = 32;
    let summary = ctx.run(Stage::Dedup).unwrap();
    assert!(duplicates(&rows_of(&ctx)).is_empty());
    assert_eq!(count(&summary, "duplicates"), 0);
}

#[test]
fn crops_of_several_percent_per_side_are_found_by_the_crop_search_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let original = picture(200, 200, 100);
    fs::write(data.join("original.png"), png(&original)).unwrap();
    // 7% off the left and 6% off the bottom; 8% off top and right, then halved and re-encoded. (Recall over the
    // whole 0..10% range is measured on real faces: dedup_recall.)
    fs::write(data.join("crop_left.png"), png(&imageops::crop_imm(&original, 14, 0, 186, 188).to_image())).unwrap();
    let both = imageops::crop_imm(&original, 0, 16, 184, 184).to_image();
    fs::write(data.join("crop_small.jpg"), jpeg(&imageops::resize(&both, 92, 92, FilterType::Triangle), 70)).unwrap();
    for seed in 1..=6 {
        fs::write(data.join(format!("other_{seed}.png")), png(&picture(200, 200, seed))).unwrap();
    }
    let mut ctx = context(&tmp.path().join("work"), tmp.path(), &sources_yaml(&[("v", &data)]));
    let expected: BTreeMap<String, (String, String)> = ["v/crop_left.png", "v/crop_small.jpg"]
        .iter()
        .map(|k| (k.to_string(), dup("near", "v/original.png")))
        .collect();
    assert_eq!(duplicates(&ingest_and_dedup(&ctx)), expected);
    ctx.plan.dedup.crops = false;
    ctx.run(Stage::Dedup).unwrap();
    assert!(duplicates(&rows_of(&ctx)).is_empty(), "the whole-image pHash alone misses these crops");
}

fn rows_of(ctx: &Ctx) -> Vec<Row> {
    rows(ctx.workdir.root(), "dedup")
}

#[test]
fn same_pixels_in_other_formats_are_exact_pixel_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let img = DynamicImage::ImageRgb8(picture(90, 70, 7));
    for (name, format) in [
        ("a.png", ImageFormat::Png),
        ("b.bmp", ImageFormat::Bmp),
        ("c.webp", ImageFormat::WebP),
        ("d.tiff", ImageFormat::Tiff),
    ] {
        fs::write(data.join(name), encode(&img, format)).unwrap();
    }
    fs::copy(data.join("b.bmp"), data.join("e_copy.bmp")).unwrap();
    // A different picture of the same size stays.
    fs::write(data.join("f_other.png"), png(&picture(90, 70, 8))).unwrap();
    let ctx = context(&tmp.path().join("work"), tmp.path(), &sources_yaml(&[("s", &data)]));
    let rows = ingest_and_dedup(&ctx);
    let expected: BTreeMap<String, (String, String)> = [
        ("s/b.bmp", dup("exact_pixels", "s/a.png")),
        ("s/c.webp", dup("exact_pixels", "s/a.png")),
        ("s/d.tiff", dup("exact_pixels", "s/a.png")),
        ("s/e_copy.bmp", dup("exact_bytes", "s/a.png")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(duplicates(&rows), expected);
    let pixel_hashes: BTreeSet<_> = rows.iter().map(|r| by_key_pixel_hash(ctx.workdir.root(), &r.key)).collect();
    assert_eq!(pixel_hashes.len(), 2);
}

fn by_key_pixel_hash(workdir: &Path, key: &str) -> String {
    let df = anime_pipe::manifest::read_parquet(&workdir.join("manifests/dedup.parquet")).unwrap();
    let keys = anime_pipe::manifest::columns::strings(&df, "key").unwrap();
    let hashes = anime_pipe::manifest::columns::strings(&df, "pixel_hash").unwrap();
    hashes[keys.iter().position(|k| k == key).unwrap()].clone()
}

#[test]
fn lowered_limits_reject_at_ingest_and_dedup_never_decodes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("big.png"), png(&picture(100, 100, 1))).unwrap();
    fs::write(data.join("small.png"), png(&picture(20, 20, 2))).unwrap();
    let mut ctx = context(&tmp.path().join("work"), tmp.path(), &sources_yaml(&[("s", &data)]));
    ctx.run(Stage::Ingest).unwrap();
    let before = ctx.fingerprint(Stage::Ingest).unwrap();
    // Lowered after ingest: the 100x100 image is now over the pixel cap. Limits are ingest's inputs (images are
    // decoded there, once), so ingest is out of date, and re-running it rejects the file (its index is per limits).
    ctx.plan.limits.max_pixels = 50 * 50;
    assert_ne!(ctx.fingerprint(Stage::Ingest).unwrap(), before);
    let ingest = ctx.run(Stage::Ingest).unwrap();
    assert_eq!(ingest.rejects.get("decompression_bomb"), Some(&1));
    let summary = ctx.run(Stage::Dedup).unwrap();
    let rows = rows_of(&ctx);
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.key.as_str(), r.status.as_str())).collect();
    assert_eq!(got, vec![("s/small.png", "ok")]);
    assert_eq!(count(&summary, "images decoded"), 0);
}

#[test]
fn cli_flags_and_thread_counts_give_identical_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sample");
    anime_pipe::sample_data::write(&dir, 12, 2).unwrap();
    let cli = |args: &[&str]| {
        let out = support::anime_pipe().arg("-q").args(args).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let manifest = || fs::read(dir.join("manifests/dedup.parquet")).unwrap();
    cli(&["ingest"]);
    cli(&["-j", "1", "dedup"]);
    let one = manifest();
    cli(&["-j", "2", "dedup"]);
    assert_eq!(manifest(), one);
    cli(&["dedup", "--no-near"]);
    let kinds: Vec<String> = rows(&dir, "dedup").into_iter().filter_map(|r| r.dup_kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "near").count(), 0);
    assert_eq!(kinds.len(), 3, "the two byte copies and the re-encoded copy remain: {kinds:?}");
    cli(&["dedup", "--threshold", "6"]);
    assert_eq!(manifest(), one, "--threshold 6 is the default");
}

#[test]
fn real_getchu_has_exactly_4096_byte_identical_copies() {
    let Some(shared) = support::shared_dir() else { return };
    let work = tempfile::tempdir().unwrap();
    let yaml = "sources:\n  - {name: getchu, path: data/getchu64.zip, already_cropped: true}\n";
    let mut ctx = context(work.path(), &shared, yaml);
    ctx.run(Stage::Ingest).unwrap();
    ctx.plan.dedup.near = false;
    let summary = ctx.run(Stage::Dedup).unwrap();
    let rows = rows(work.path(), "dedup");
    assert_eq!(rows.len(), 19_992);
    let dups: Vec<&Row> = rows.iter().filter(|r| r.status == "duplicate").collect();
    assert_eq!(dups.len(), 4_096);
    assert!(dups.iter().all(|r| r.dup_kind.as_deref() == Some("exact_bytes")));
    assert_eq!(summary.rejects.get("exact_bytes"), Some(&4_096));
    // Keep policy on identical 64x64 files of one source: the smallest path of each group of copies is kept.
    let mut groups: HashMap<&str, Vec<&Row>> = HashMap::new();
    for r in &rows {
        groups.entry(r.object.as_deref().unwrap()).or_default().push(r);
    }
    for members in groups.values() {
        let kept = members.iter().min_by_key(|r| &r.path).unwrap();
        assert_eq!(kept.status, "ok");
        assert!(members.iter().filter(|r| r.key != kept.key).all(|r| r.duplicate_of.as_deref() == Some(&kept.key)));
    }
    // With the near search on, the byte copies are still counted as exact_bytes (the hierarchy of dup_kind).
    ctx.plan.dedup.near = true;
    let summary = ctx.run(Stage::Dedup).unwrap();
    assert_eq!(summary.rejects.get("exact_bytes"), Some(&4_096));
}

#[test]
fn real_illust_byte_copies() {
    let Some(shared) = support::shared_dir() else { return };
    let work = tempfile::tempdir().unwrap();
    let ctx = context(work.path(), &shared, "sources:\n  - {name: illust, path: data/illust}\n");
    let rows = ingest_and_dedup(&ctx);
    let exact: BTreeMap<String, (String, String)> =
        duplicates(&rows).into_iter().filter(|(_, (kind, _))| kind == "exact_bytes").collect();
    // shared/README.md mentions one duplicate pair; the folder actually holds three byte-identical pairs (checked
    // with b2sum): the two demo__ files are copies of their originals, plus one Gojo_Satoru pair.
    let expected: BTreeMap<String, (String, String)> = [
        (
            "illust/ao7108__Gojo_Satoru__Gojo_Satoru_61.jpg",
            dup("exact_bytes", "illust/ao7108__Gojo_Satoru__Gojo_Satoru_21.jpg"),
        ),
        ("illust/demo__touhou_banner.jpg", dup("exact_bytes", "illust/cheese-roll__assets_touhou-cannonball.jpg")),
        ("illust/hysts__assets_input.jpg", dup("exact_bytes", "illust/demo__grid36.jpg")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(exact, expected);
}

/// key, status, duplicate_of, dup_kind, hamming of one dedup row: what grouping decided.
type Decision = (String, String, Option<String>, Option<String>, Option<u32>);

fn verdicts(ctx: &Ctx) -> Vec<Decision> {
    rows_of(ctx).into_iter().map(|r| (r.key, r.status, r.duplicate_of, r.dup_kind, r.hamming)).collect()
}

/// Two batches whose near pairs cross between them in every direction: a new re-encode of an old picture, a new
/// crop of an old original, an old crop whose original is new, and new pictures alike only among themselves.
fn two_batches(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (first, second) = (root.join("first"), root.join("second"));
    let (a, b, c) = (picture(200, 200, 100), picture(200, 200, 101), picture(200, 200, 102));
    let put = |dir: &Path, name: &str, bytes: Vec<u8>| {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };
    put(&first, "a.png", png(&a));
    put(&first, "b_crop.png", png(&imageops::crop_imm(&b, 14, 0, 186, 188).to_image()));
    for seed in 1..=4 {
        put(&first, &format!("other_{seed}.png"), png(&picture(200, 200, seed)));
    }
    put(&second, "other_1_q70.jpg", jpeg(&picture(200, 200, 1), 70));
    put(&second, "a_crop.png", png(&imageops::crop_imm(&a, 0, 16, 184, 184).to_image()));
    put(&second, "b.png", png(&b));
    put(&second, "c.png", png(&c));
    put(&second, "c_half.png", png(&imageops::resize(&c, 100, 100, FilterType::Triangle)));
    put(&second, "other_9.png", png(&picture(200, 200, 9)));
    (first, second)
}

#[test]
fn dedup_after_adding_pictures_searches_only_the_new_ones_and_groups_as_a_fresh_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = two_batches(&tmp.path().join("data"));
    let both = sources_yaml(&[("first", &first), ("second", &second)]);
    let fresh = context(&tmp.path().join("fresh"), tmp.path(), &both);
    let expected = {
        ingest_and_dedup(&fresh);
        verdicts(&fresh)
    };
    // The planted pairs, so that equality below means something: 4 duplicates in 3 groups.
    let planted: BTreeMap<String, (String, String)> = [
        ("second/other_1_q70.jpg", "first/other_1.png"),
        ("second/a_crop.png", "first/a.png"),
        ("first/b_crop.png", "second/b.png"),
        ("second/c_half.png", "second/c.png"),
    ]
    .into_iter()
    .map(|(k, of)| (k.to_string(), dup("near", of)))
    .collect();
    assert_eq!(duplicates(&rows_of(&fresh)), planted);

    let work = tmp.path().join("grown");
    let grown_first = context(&work, tmp.path(), &sources_yaml(&[("first", &first)]));
    let summary = {
        ingest_and_dedup(&grown_first);
        grown_first.run(Stage::Dedup).unwrap()
    };
    assert_eq!((count(&summary, "pictures reused"), count(&summary, "pictures searched")), (6, 0));
    let grown = context(&work, tmp.path(), &both);
    grown.run(Stage::Ingest).unwrap();
    let summary = grown.run(Stage::Dedup).unwrap();
    assert_eq!(count(&summary, "pictures reused"), 6);
    assert_eq!(count(&summary, "pictures searched"), 6);
    assert_eq!(verdicts(&grown), expected);

    // Removing the first batch and adding it back: its pictures' pairs with the second batch are searched again
    // (the memo holds only what the last run searched), and the result is again the fresh one.
    let only_second = context(&work, tmp.path(), &sources_yaml(&[("second", &second)]));
    only_second.run(Stage::Ingest).unwrap();
    let summary = only_second.run(Stage::Dedup).unwrap();
    assert_eq!((count(&summary, "pictures reused"), count(&summary, "pictures searched")), (6, 0));
    let alone = duplicates(&rows_of(&only_second));
    assert_eq!(alone.get("second/c_half.png"), Some(&dup("near", "second/c.png")));
    assert!(!alone.contains_key("second/b.png"));
    grown.run(Stage::Ingest).unwrap();
    let summary = grown.run(Stage::Dedup).unwrap();
    assert_eq!((count(&summary, "pictures reused"), count(&summary, "pictures searched")), (6, 6));
    assert_eq!(verdicts(&grown), expected);
    let manifest = |ctx: &Ctx| fs::read(ctx.workdir.manifest_path("dedup")).unwrap();
    assert_eq!(manifest(&grown), manifest(&fresh), "byte-identical to the fresh run's manifest");
}
