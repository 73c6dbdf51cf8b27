//! The clean stage: each score against hand-derived values, reject reasons and their order, the manifest, and
//! determinism across thread counts.

use crate::support::dataset::*;
use crate::support::Ctx;
use anime_pipe::manifest::Reason;
use anime_pipe::named::Named;
use anime_pipe::quality::{self, Scores};
use anime_pipe::stages::clean::{self, CleanSettings};
use anime_pipe::stages::Stage;
use image::{Rgb, RgbImage};

fn gray_image(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = f(x, y);
        Rgb([v, v, v])
    })
}

fn luma_of(image: &RgbImage) -> Vec<u8> {
    quality::luma(image)
}

// ---------- scores ----------

#[test]
fn luma_of_gray_pixels_is_the_gray_level() {
    let image = gray_image(16, 16, |x, y| (x * 16 + y) as u8);
    let expected: Vec<u8> = image.pixels().map(|p| p.0[0]).collect();
    assert_eq!(luma_of(&image), expected);
}

#[test]
fn entropy_counts_bits_of_equiprobable_levels() {
    let flat = gray_image(10, 10, |_, _| 77);
    assert_eq!(quality::luma_entropy(&luma_of(&flat)), 0.0);
    // Two levels, half the pixels each: exactly 1 bit.
    let two = gray_image(10, 10, |x, _| if x < 5 { 10 } else { 200 });
    assert!((quality::luma_entropy(&luma_of(&two)) - 1.0).abs() < 1e-12);
    // Four levels, a quarter each: 2 bits.
    let four = gray_image(8, 8, |x, _| [0, 60, 120, 250][(x / 2) as usize]);
    assert!((quality::luma_entropy(&luma_of(&four)) - 2.0).abs() < 1e-12);
    // Every level once: the maximum, 8 bits.
    let all = gray_image(16, 16, |x, y| (y * 16 + x) as u8);
    assert!((quality::luma_entropy(&luma_of(&all)) - 8.0).abs() < 1e-12);
    // Unequal: p = 1/4, 3/4 -> 0.25*2 + 0.75*log2(4/3).
    let skewed = gray_image(4, 4, |x, _| if x == 0 { 0 } else { 255 });
    let expected = 0.25 * 2.0 + 0.75 * (4.0f64 / 3.0).log2();
    assert!((quality::luma_entropy(&luma_of(&skewed)) - expected).abs() < 1e-12);
}

#[test]
fn laplacian_variance_of_flat_ramp_checkerboard_and_impulse() {
    let flat = gray_image(9, 7, |_, _| 200);
    assert_eq!(quality::laplacian_variance(&luma_of(&flat), 9, 7), 0.0);
    // A linear ramp has zero second derivative everywhere.
    let ramp = gray_image(20, 6, |x, y| (10 * x + 3 * y) as u8);
    assert_eq!(quality::laplacian_variance(&luma_of(&ramp), 20, 6), 0.0);
    // 1-px 0/255 checkerboard: at every interior pixel the 4 neighbours have the other value, so the Laplacian is
    // 4*255 - 0 = +1020 on black and 0 - 4*255 = -1020 on white; 6x6 interior pixels, half each -> mean 0,
    // variance 1020^2.
    let checker = gray_image(8, 8, |x, y| if (x + y) % 2 == 0 { 0 } else { 255 });
    assert_eq!(quality::laplacian_variance(&luma_of(&checker), 8, 8), 1020.0 * 1020.0);
    // One 255 pixel at the centre of a 5x5 black image: of the 9 interior values the centre is -1020, its 4
    // neighbours +255, the corners 0 -> mean 0, variance (1020^2 + 4*255^2) / 9 = 144500.
    let impulse = gray_image(5, 5, |x, y| if (x, y) == (2, 2) { 255 } else { 0 });
    assert_eq!(quality::laplacian_variance(&luma_of(&impulse), 5, 5), 144_500.0);
    // No interior: defined as 0.
    assert_eq!(quality::laplacian_variance(&[0, 255, 0, 255], 2, 2), 0.0);
}

#[test]
fn sharpness_is_resolution_robust() {
    // The same picture at 256 px and at 1024 px (each pixel a 4x4 block) scores the same, because sharpness is
    // measured after reducing the shorter side to 256 with an area filter (4x4 blocks average back exactly).
    let small = noise_gray(256, 320, 7);
    let big = RgbImage::from_fn(1024, 1280, |x, y| *small.get_pixel(x / 4, y / 4));
    let s_small = quality::sharpness(&luma_of(&small), 256, 320);
    let s_big = quality::sharpness(&luma_of(&big), 1024, 1280);
    assert!(s_small > 1000.0, "noise is sharp: {s_small}");
    assert!((s_small - s_big).abs() <= 1e-6 * s_small, "{s_small} vs {s_big}");
    // Without the reduction the big image would score far lower (most 4x4 block pixels have flat neighbours).
    let full_res = quality::laplacian_variance(&luma_of(&big), 1024, 1280);
    assert!(full_res < s_big / 3.0, "{full_res} vs {s_big}");
    // Images at or under 256 px are measured as they are.
    assert_eq!(s_small, quality::laplacian_variance(&luma_of(&small), 256, 320));
}

#[test]
fn colorfulness_matches_hand_computed_values() {
    assert_eq!(quality::colorfulness(&noise_gray(30, 20, 3)), 0.0);
    // Flat pure red: rg = 255, yb = 127.5 everywhere: no spread, 0.3 * sqrt(255^2 + 127.5^2).
    let red = flat(10, 10, [255, 0, 0]);
    let expected = 0.3 * (255.0f64 * 255.0 + 127.5 * 127.5).sqrt();
    assert!((quality::colorfulness(&red) - expected).abs() < 1e-9);
    // Half red, half green: rg = +-255 (mean 0, std 255), yb = 127.5 (std 0) -> 255 + 0.3 * 127.5 = 293.25.
    let halves = RgbImage::from_fn(10, 10, |x, _| if x < 5 { Rgb([255, 0, 0]) } else { Rgb([0, 255, 0]) });
    assert!((quality::colorfulness(&halves) - 293.25).abs() < 1e-9);
}

#[test]
fn grayscale_allows_the_documented_tolerance_only() {
    let mut image = noise_gray(12, 12, 5);
    assert!(quality::is_grayscale(&image, quality::GRAYSCALE_TOLERANCE));
    image.put_pixel(3, 4, Rgb([100, 100, 100 + quality::GRAYSCALE_TOLERANCE]));
    assert!(quality::is_grayscale(&image, quality::GRAYSCALE_TOLERANCE));
    image.put_pixel(3, 4, Rgb([100, 100 + quality::GRAYSCALE_TOLERANCE + 1, 100]));
    assert!(!quality::is_grayscale(&image, quality::GRAYSCALE_TOLERANCE));
    let scores = quality::score_image(&noise_gray(20, 20, 1));
    assert!(scores.grayscale && scores.colorfulness == 0.0);
}

fn thresholds() -> CleanSettings {
    CleanSettings { min_size: 64, max_aspect: 2.5, min_sharpness: 50.0, min_colorfulness: 10.0, min_entropy: 4.0 }
}

#[test]
fn reasons_are_listed_in_the_documented_order() {
    let good = Scores { sharpness: 100.0, colorfulness: 40.0, grayscale: false, entropy: 7.0 };
    let t = thresholds();
    assert!(clean::rejection_reasons(100, 100, &good, &t).is_empty());
    let bad = Scores { sharpness: 1.0, colorfulness: 2.0, grayscale: false, entropy: 1.0 };
    let names = |r: Vec<Reason>| r.into_iter().map(Reason::name).collect::<Vec<_>>();
    assert_eq!(
        names(clean::rejection_reasons(20, 80, &bad, &t)),
        ["too_small", "bad_aspect", "blurry", "monochrome", "low_entropy"]
    );
    assert_eq!(clean::rejection_reasons(20, 80, &bad, &t), clean::REASON_ORDER.to_vec());
    // A grayscale image is monochrome whenever the filter is on, even above the threshold (JPEG chroma noise).
    let gray = Scores { grayscale: true, ..good };
    assert_eq!(names(clean::rejection_reasons(100, 100, &gray, &t)), ["monochrome"]);
    // Thresholds of 0 are off.
    let off = CleanSettings { min_sharpness: 0.0, min_colorfulness: 0.0, min_entropy: 0.0, ..t };
    assert!(clean::rejection_reasons(100, 100, &Scores { grayscale: true, ..bad }, &off).is_empty());
    // Aspect exactly at the limit passes.
    assert!(clean::rejection_reasons(250, 100, &good, &t).is_empty());
    assert_eq!(names(clean::rejection_reasons(251, 100, &good, &t)), ["bad_aspect"]);
}

// ---------- the stage ----------

/// (item, expected status/reason/reasons) for the stage tests. Paths are chosen so that input order, path order
/// and canonical (source_index, path) order all differ.
fn fixture_items() -> Vec<(Item, Option<&'static str>)> {
    let smooth = RgbImage::from_fn(96, 96, |x, y| Rgb([(2 * x) as u8, (2 * y) as u8, 128]));
    let two_colour =
        RgbImage::from_fn(96, 96, |x, y| if (x + y) % 2 == 0 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let mut duplicate = Item::image(0, "z/duplicate.png", &noise_rgb(96, 96, 99));
    duplicate.status = "duplicate";
    vec![
        (Item::image(1, "a/good.png", &noise_rgb(96, 96, 1)), None),
        (Item::image(0, "d/tiny.png", &noise_rgb(32, 32, 2)), Some("too_small")),
        (Item::image(0, "c/wide.png", &noise_rgb(300, 100, 3)), Some("bad_aspect")),
        (Item::image(0, "b/blurry.png", &smooth), Some("blurry")),
        (Item::image(1, "b/gray.png", &noise_gray(96, 96, 4)), Some("monochrome")),
        (Item::image(0, "a/two_colour.png", &two_colour), Some("low_entropy")),
        (Item::image(0, "f/multi.png", &flat(32, 32, [90, 90, 90])), Some("too_small,blurry,monochrome,low_entropy")),
        (duplicate, None),
    ]
}

fn clean_workdir(dir: &std::path::Path) -> Ctx {
    let mut ctx = context(dir);
    ctx.plan.clean = thresholds();
    let items: Vec<Item> = fixture_items().into_iter().map(|(i, _)| i).collect();
    publish_dedup(&ctx.workdir, &items);
    ctx
}

#[test]
fn clean_scores_every_row_and_records_every_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = clean_workdir(dir.path());
    let summary = ctx.run(Stage::Clean).unwrap();
    let df = read_stage(&ctx.workdir, "clean");

    let mut expected: Vec<(Item, Option<&str>)> =
        fixture_items().into_iter().filter(|(i, _)| i.status == "ok").collect();
    expected.sort_by(|a, b| (a.0.source_index, &a.0.path).cmp(&(b.0.source_index, &b.0.path)));
    let keys: Vec<String> = expected.iter().map(|(i, _)| i.key()).collect();
    assert_eq!(strs(&df, "key").into_iter().flatten().collect::<Vec<_>>(), keys, "canonical order, no duplicates");

    let (status, reason, reasons) = (strs(&df, "status"), strs(&df, "reason"), strs(&df, "reasons"));
    for (row, (item, want)) in expected.iter().enumerate() {
        let want_reasons = want.map(str::to_string);
        let want_first = want.map(|w| w.split(',').next().unwrap().to_string());
        assert_eq!(reasons[row], want_reasons, "{}", item.key());
        assert_eq!(reason[row], want_first, "{}", item.key());
        assert_eq!(status[row].as_deref(), Some(if want.is_none() { "ok" } else { "rejected" }), "{}", item.key());
    }

    // Scores on every row, equal to measuring the decoded image; clean itself decoded nothing.
    for name in ["sharpness", "colorfulness", "entropy"] {
        assert!(f64s(&df, name).iter().all(Option::is_some), "{name}");
    }
    let sharpness = f64s(&df, "sharpness");
    for (row, (item, _)) in expected.iter().enumerate() {
        let decoded = image::load_from_memory(&item.bytes).unwrap().to_rgb8();
        assert_eq!(sharpness[row], Some(quality::score_image(&decoded).sharpness), "{}", item.key());
    }
    assert!(strs(&df, "error").iter().all(Option::is_none));
    let short = u32s(&df, "short_side");
    let tiny = keys.iter().position(|k| k.ends_with("tiny.png")).unwrap();
    assert_eq!(short[tiny], Some(32));
    let aspect = f64s(&df, "aspect");
    assert_eq!(aspect[keys.iter().position(|k| k.ends_with("wide.png")).unwrap()], Some(3.0));

    // Summary: counts and first reasons.
    let count = |what: &str| summary.counts.iter().find(|(k, _)| k == what).map(|(_, v)| *v);
    assert_eq!(count("input"), Some(7));
    assert_eq!(count("accepted"), Some(1));
    assert_eq!(count("rejected"), Some(6));
    assert_eq!(count("images decoded"), Some(0), "clean reads the measures, it decodes nothing");
    assert_eq!(summary.rejects.get("too_small"), Some(&2));
    assert_eq!(summary.rejects.values().sum::<u64>(), 6);
    assert!(anime_pipe::manifest::is_up_to_date(&ctx.workdir, "clean", &ctx.fingerprint(Stage::Clean).unwrap()));
}

#[test]
fn clean_output_is_identical_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = clean_workdir(dir.path());
    with_threads(1, || ctx.run(Stage::Clean)).unwrap();
    let one = std::fs::read(ctx.workdir.manifest_path("clean")).unwrap();
    with_threads(2, || ctx.run(Stage::Clean)).unwrap();
    let two = std::fs::read(ctx.workdir.manifest_path("clean")).unwrap();
    assert_eq!(one, two);
}

#[test]
fn fingerprint_follows_settings_and_upstream_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = clean_workdir(dir.path());
    let base = ctx.fingerprint(Stage::Clean).unwrap();
    assert_eq!(base, ctx.fingerprint(Stage::Clean).unwrap());
    ctx.plan.clean.min_entropy = 3.0;
    let changed_setting = ctx.fingerprint(Stage::Clean).unwrap();
    assert_ne!(base, changed_setting);
    publish_dedup(&ctx.workdir, &[Item::image(0, "only.png", &noise_rgb(70, 70, 1))]);
    assert_ne!(changed_setting, ctx.fingerprint(Stage::Clean).unwrap());
}

#[test]
fn clean_without_dedup_manifest_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let err = format!("{:#}", ctx.run(Stage::Clean).unwrap_err());
    assert!(err.contains("anime-pipe dedup"), "{err}");
}

#[test]
fn the_input_items_are_the_ok_rows_in_canonical_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = clean_workdir(dir.path());
    let upstream = anime_pipe::manifest::Upstream::of(&ctx.workdir, "dedup", "clean").unwrap();
    let items = anime_pipe::manifest::read_items(&ctx.workdir, &upstream).unwrap();
    assert_eq!(items.len(), 7);
    assert!(items.windows(2).all(|w| (w[0].source_index, &w[0].path) < (w[1].source_index, &w[1].path)));
    assert!(items.iter().all(|i| !i.path.contains("duplicate") && i.measures.is_some()));
}

#[test]
fn an_input_manifest_without_measures_is_refused_with_the_fix() {
    // A dedup.parquet from before the measures existed (or hand-made without them): clean cannot judge its rows
    // without decoding, which it never does, so it says how to rebuild the manifests.
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let item = Item::image(0, "a.png", &noise_rgb(70, 70, 1));
    publish_dedup(&ctx.workdir, &[item]);
    let df = read_stage(&ctx.workdir, "dedup").drop("sharpness").unwrap();
    let mut df = df;
    anime_pipe::manifest::publish_stage(&ctx.workdir, "dedup", &mut df, "fixture").unwrap();
    let err = format!("{:#}", ctx.run(Stage::Clean).unwrap_err());
    assert!(err.contains("src0/a.png") && err.contains("anime-pipe run --force"), "{err}");
}
