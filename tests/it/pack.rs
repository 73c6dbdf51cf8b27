//! The pack stage: shard layout, sample -> (shard, index) mapping against an independent resize, the split rule,
//! decode failures, byte-identical re-runs for any thread count, stale-shard removal, crash safety, and a Python
//! (safetensors + numpy + PIL) cross-check.

use crate::support;
use crate::support::dataset::*;
use crate::support::Ctx;
use anime_pipe::stages::pack;
use anime_pipe::stages::pack::Fit;
use anime_pipe::stages::Stage;
use image::RgbImage;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

// ---------- an independent Lanczos3 resampler (float weights, separable, Pillow's kernel widening) ----------

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

fn lanczos3(x: f64) -> f64 {
    if x.abs() < 3.0 {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// For each output position: (first input index, normalised weights).
fn weights(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let widen = scale.max(1.0);
    let support = 3.0 * widen;
    (0..out_size)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(in_size);
            let w: Vec<f64> = (lo..hi).map(|i| lanczos3((i as f64 + 0.5 - center) / widen)).collect();
            let total: f64 = w.iter().sum();
            (lo, w.into_iter().map(|v| v / total).collect())
        })
        .collect()
}

/// Resizes a square RGB image to `size`: the vertical pass first, rounded and clamped to 8 bits, then the
/// horizontal pass (the documented order; Lanczos overshoot clipped between passes, as in Pillow). Returns HWC bytes.
fn reference_resize(square: &RgbImage, size: u32) -> Vec<u8> {
    let n = square.width() as usize;
    let out = size as usize;
    let wts = weights(n, out);
    let to_u8 = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    let mut vertical = vec![0u8; out * n * 3]; // out rows x n columns
    for (oy, (lo, w)) in wts.iter().enumerate() {
        for x in 0..n {
            for c in 0..3 {
                let v: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * f64::from(square.get_pixel(x as u32, (lo + k) as u32)[c]))
                    .sum();
                vertical[(oy * n + x) * 3 + c] = to_u8(v);
            }
        }
    }
    let mut result = vec![0u8; out * out * 3];
    for oy in 0..out {
        for (ox, (lo, w)) in wts.iter().enumerate() {
            for c in 0..3 {
                let v: f64 =
                    w.iter().enumerate().map(|(k, wk)| wk * f64::from(vertical[(oy * n + lo + k) * 3 + c])).sum();
                result[(oy * out + ox) * 3 + c] = to_u8(v);
            }
        }
    }
    result
}

/// Square the image per `fit`, by hand: centred crop with offsets rounded down, or edge-replicating pad with the
/// odd extra pixel after.
fn reference_square(image: &RgbImage, fit: Fit) -> RgbImage {
    let (w, h) = image.dimensions();
    match fit {
        Fit::Crop => {
            let s = w.min(h);
            RgbImage::from_fn(s, s, |x, y| *image.get_pixel(x + (w - s) / 2, y + (h - s) / 2))
        }
        Fit::Pad => {
            let s = w.max(h);
            let (l, t) = ((s - w) / 2, (s - h) / 2);
            RgbImage::from_fn(s, s, |x, y| {
                let sx = (x as i64 - l as i64).clamp(0, w as i64 - 1) as u32;
                let sy = (y as i64 - t as i64).clamp(0, h as i64 - 1) as u32;
                *image.get_pixel(sx, sy)
            })
        }
    }
}

// ---------- helpers ----------

/// Smooth-ish test pictures (noise at full resolution would make any resize differences look huge).
fn picture(w: u32, h: u32, seed: u64) -> RgbImage {
    let coarse = noise_rgb(w.div_ceil(6), h.div_ceil(6), seed);
    RgbImage::from_fn(w, h, |x, y| {
        let p = coarse.get_pixel(x / 6, y / 6).0;
        image::Rgb([p[0] / 2 + (x * 3) as u8 / 2, p[1], p[2] / 2 + (y * 5 % 256) as u8 / 2])
    })
}

fn pack_ctx(dir: &Path, items: &[Item], sizes: &[u32], fit: Fit, shard_samples: usize, val: f64) -> Ctx {
    let mut ctx = context(dir);
    ctx.plan.pack.sizes = sizes.to_vec();
    ctx.plan.pack.fit = fit;
    ctx.plan.pack.shard_samples = shard_samples;
    ctx.plan.pack.val_fraction = val;
    publish_clean(&ctx.workdir, items);
    ctx
}

struct Row {
    key: String,
    object: String,
    size: u32,
    split: String,
    shard: Option<String>,
    index: Option<u32>,
    status: String,
    reason: Option<String>,
}

fn pack_rows(ctx: &Ctx) -> Vec<Row> {
    let df = read_stage(&ctx.workdir, "pack");
    let (key, object, split, shard, status, reason) = (
        strs(&df, "key"),
        strs(&df, "object"),
        strs(&df, "split"),
        strs(&df, "shard"),
        strs(&df, "status"),
        strs(&df, "reason"),
    );
    let (size, index) = (u32s(&df, "size"), u32s(&df, "index"));
    (0..df.height())
        .map(|i| Row {
            key: key[i].clone().unwrap(),
            object: object[i].clone().unwrap(),
            size: size[i].unwrap(),
            split: split[i].clone().unwrap(),
            shard: shard[i].clone(),
            index: index[i],
            status: status[i].clone().unwrap(),
            reason: reason[i].clone(),
        })
        .collect()
}

/// The split by the documented rule, computed independently (f64 division; boundary ties have ~2^-50 odds).
fn expected_split(object: &str, val_fraction: f64) -> &'static str {
    let d = blake3::hash(object.as_bytes());
    let u = u64::from_be_bytes(d.as_bytes()[..8].try_into().unwrap());
    if (u as f64) / 18446744073709551616.0 < val_fraction {
        "val"
    } else {
        "train"
    }
}

fn assorted_items() -> Vec<Item> {
    let dims = [(64, 64), (40, 30), (30, 41), (10, 10), (100, 37), (16, 16), (57, 80), (24, 24), (33, 33), (90, 90)];
    dims.iter()
        .enumerate()
        .map(|(i, &(w, h))| Item::image(0, &format!("img{i:02}.png"), &picture(w, h, i as u64)))
        .collect()
}

fn sample_pixels(ctx: &Ctx, shard: &str, index: u32, size: u32) -> Vec<u8> {
    let bytes = std::fs::read(ctx.workdir.root().join(shard)).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor("images").unwrap();
    let sample = (size * size * 3) as usize;
    view.data()[index as usize * sample..(index as usize + 1) * sample].to_vec()
}

// ---------- tests ----------

#[test]
fn shards_have_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let items = assorted_items();
    let ctx = pack_ctx(dir.path(), &items, &[16, 24], Fit::Crop, 4, 0.0);
    let summary = ctx.run(Stage::Pack).unwrap();
    let rows = pack_rows(&ctx);
    assert_eq!(rows.len(), items.len() * 2, "one row per item and size");

    // 10 samples, 4 per shard: 4 + 4 + 2, per size, all train.
    for size in [16u32, 24] {
        let mut by_shard: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.size == size) {
            assert_eq!(r.split, "train");
            by_shard.entry(r.shard.clone().unwrap()).or_default().push(r);
        }
        let names: Vec<&String> = by_shard.keys().collect();
        let expected: Vec<String> = (0..3).map(|i| format!("shards/{size}/train-{i:05}.safetensors")).collect();
        assert_eq!(names, expected.iter().collect::<Vec<_>>());
        for (shard, rows) in &by_shard {
            let bytes = std::fs::read(ctx.workdir.root().join(shard)).unwrap();
            let tensors = SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(tensors.names(), vec!["images"]);
            let view = tensors.tensor("images").unwrap();
            assert_eq!(view.dtype(), Dtype::U8);
            assert_eq!(view.shape(), &[rows.len(), size as usize, size as usize, 3]);
            let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
            let meta = meta.metadata().clone().unwrap();
            assert_eq!(meta["format"], "anime-pipe-shard/1");
            assert_eq!(meta["size"], size.to_string());
            assert_eq!(meta["split"], "train");
            assert_eq!(meta["fit"], "crop");
            assert_eq!(meta["count"], rows.len().to_string());
            let keys: Vec<String> = serde_json::from_str(&meta["keys"]).unwrap();
            let mut in_index_order: Vec<&&Row> = rows.iter().collect();
            in_index_order.sort_by_key(|r| r.index);
            assert_eq!(keys, in_index_order.iter().map(|r| r.key.clone()).collect::<Vec<_>>());
            let indices: Vec<u32> = in_index_order.iter().map(|r| r.index.unwrap()).collect();
            assert_eq!(indices, (0..rows.len() as u32).collect::<Vec<_>>());
            // The header length is a multiple of 8, as the safetensors writer pads it.
            assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
        }
    }
    // Samples are in object order, identically for both sizes.
    let objects = |size| rows.iter().filter(|r| r.size == size).map(|r| r.object.clone()).collect::<Vec<_>>();
    let mut sorted = objects(16);
    sorted.sort();
    assert_eq!(objects(16), sorted);
    assert_eq!(objects(16), objects(24));
    let digest = summary.facts.iter().find(|(k, _)| k == "dataset digest").map(|(_, v)| v.clone());
    assert_eq!(digest, Some(anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap()));
}

fn assert_samples_match_reference(fit: Fit) {
    let dir = tempfile::tempdir().unwrap();
    let items = assorted_items();
    let ctx = pack_ctx(dir.path(), &items, &[16, 24], fit, 3, 0.3);
    ctx.run(Stage::Pack).unwrap();
    let by_key: BTreeMap<String, &Item> = items.iter().map(|i| (i.key(), i)).collect();
    let mut worst = 0u8;
    for row in pack_rows(&ctx) {
        let item = by_key[&row.key];
        let original = image::load_from_memory(&item.bytes).unwrap().to_rgb8();
        let expected = reference_resize(&reference_square(&original, fit), row.size);
        let actual = sample_pixels(&ctx, row.shard.as_ref().unwrap(), row.index.unwrap(), row.size);
        let max_diff = expected.iter().zip(&actual).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let mean_diff =
            expected.iter().zip(&actual).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / expected.len() as f64;
        // Fixed-point (16-bit weights) vs float weights: an intermediate value rounded the other way can move a
        // pixel by a level or two (negative lobes amplify it); rare, so the mean stays tiny.
        assert!(max_diff <= 2 && mean_diff < 0.05, "{} at {}: max {max_diff} mean {mean_diff}", row.key, row.size);
        worst = worst.max(max_diff);
        // An image already at the target size is stored unchanged.
        if original.dimensions() == (row.size, row.size) {
            assert_eq!(actual, original.as_raw().clone(), "{} copied as is", row.key);
        }
    }
    eprintln!("{fit:?}: worst pixel difference vs the float reference: {worst}");
}

#[test]
fn crop_samples_round_trip_to_an_independent_resize() {
    assert_samples_match_reference(Fit::Crop);
}

#[test]
fn pad_samples_round_trip_to_an_independent_resize() {
    assert_samples_match_reference(Fit::Pad);
}

/// Shards must be byte-identical on any machine: the SIMD code paths (AVX2, SSE4.1) must give exactly the pixels
/// of the portable one. They do because fast_image_resize resamples u8 images in integer fixed point.
#[test]
fn resized_pixels_do_not_depend_on_cpu_extensions() {
    for (i, (w, h, size)) in
        [(57u32, 80u32, 16u32), (300, 200, 64), (40, 40, 96), (1000, 999, 128)].into_iter().enumerate()
    {
        let image = picture(w, h, 50 + i as u64);
        for fit in [Fit::Crop, Fit::Pad] {
            let simd = pack::square_resize(&image, size, fit, &mut fast_image_resize::Resizer::new());
            let mut portable = fast_image_resize::Resizer::new();
            // SAFETY: `None` (plain Rust) is supported by every CPU.
            unsafe { portable.set_cpu_extensions(fast_image_resize::CpuExtensions::None) };
            assert_eq!(simd, pack::square_resize(&image, size, fit, &mut portable), "{w}x{h} -> {size} {fit:?}");
        }
    }
}

#[test]
fn split_follows_the_hash_rule_and_honours_val_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Item> =
        (0..400).map(|i| Item::image(0, &format!("s{i:03}.png"), &noise_rgb(8, 8, 1000 + i))).collect();
    let ctx = pack_ctx(dir.path(), &items, &[8], Fit::Crop, 1000, 0.25);
    ctx.run(Stage::Pack).unwrap();
    let rows = pack_rows(&ctx);
    for r in &rows {
        assert_eq!(r.split, expected_split(&r.object, 0.25), "{}", r.key);
        assert_eq!(pack::split_of(&r.object, 0.25), r.split);
    }
    // Binomial(400, 0.25): mean 100, sd 8.7; +-4.5 sd.
    let val = rows.iter().filter(|r| r.split == "val").count();
    assert!((61..=139).contains(&val), "{val} of 400 in val");
    // Within each split, index order is object order.
    for split in ["train", "val"] {
        let objects: Vec<&String> = rows.iter().filter(|r| r.split == split).map(|r| &r.object).collect();
        assert!(objects.windows(2).all(|w| w[0] < w[1]), "{split} sorted by object");
        let indices: Vec<u32> = rows.iter().filter(|r| r.split == split).map(|r| r.index.unwrap()).collect();
        assert_eq!(indices, (0..objects.len() as u32).collect::<Vec<_>>());
    }
    // Fraction 0 puts nothing in val.
    assert_eq!(pack::split_of(&rows[0].object, 0.0), "train");
}

#[test]
fn undecodable_images_become_rejected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = assorted_items();
    items.truncate(3);
    let broken = Item {
        source_index: 0,
        path: "broken.jpg".into(),
        bytes: vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3],
        width: 50,
        height: 50,
        status: "ok",
    };
    items.push(broken.clone());
    let ctx = pack_ctx(dir.path(), &items, &[16, 24], Fit::Crop, 100, 0.0);
    let summary = ctx.run(Stage::Pack).unwrap();
    let rows = pack_rows(&ctx);
    let rejected: Vec<&Row> = rows.iter().filter(|r| r.key == broken.key()).collect();
    assert_eq!(rejected.len(), 2, "one rejected row per size");
    for r in rejected {
        assert_eq!(
            (r.status.as_str(), r.reason.as_deref(), &r.shard, r.index),
            ("rejected", Some("decode_failed"), &None, None)
        );
    }
    let ok = rows.iter().filter(|r| r.status == "ok").count();
    assert_eq!(ok, 6);
    // The good samples fill indices 0..3 with no gap.
    let mut indices: Vec<u32> = rows.iter().filter(|r| r.size == 16).filter_map(|r| r.index).collect();
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2]);
    assert_eq!(summary.rejects.get("decode_failed"), Some(&1));
}

#[test]
fn upscaled_objects_supply_the_pixels_but_not_the_split() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let ctx = pack_ctx(dir.path(), &[], &[32], Fit::Crop, 100, 0.5);
    let small = picture(20, 20, 1);
    let upscaled = picture(40, 40, 2); // deliberately different content, to see which one was packed
    let (small_obj, big_obj) = (
        anime_pipe::cache::store_object(&ctx.workdir, &png(&small)).unwrap(),
        anime_pipe::cache::store_object(&ctx.workdir, &png(&upscaled)).unwrap(),
    );
    let plain = picture(30, 30, 3);
    let plain_obj = anime_pipe::cache::store_object(&ctx.workdir, &png(&plain)).unwrap();
    let mut df = DataFrame::new(
        2,
        vec![
            Column::new("key".into(), ["s/small.png", "s/plain.png"]),
            Column::new("source".into(), ["s", "s"]),
            Column::new("source_index".into(), [0u32, 0]),
            Column::new("path".into(), ["small.png", "plain.png"]),
            Column::new("object".into(), [small_obj.as_str(), plain_obj.as_str()]),
            Column::new("width".into(), [30u32, 30]),
            Column::new("height".into(), [30u32, 30]),
            Column::new("upscaled_object".into(), [Some(big_obj.as_str()), None]),
            Column::new("status".into(), ["ok", "ok"]),
        ],
    )
    .unwrap();
    anime_pipe::manifest::publish_stage(&ctx.workdir, "clean", &mut df, "fixture").unwrap();
    ctx.run(Stage::Pack).unwrap();
    let manifest = read_stage(&ctx.workdir, "pack");
    assert_eq!(strs(&manifest, "upscaled_object").iter().flatten().collect::<Vec<_>>(), vec![&big_obj]);
    for row in pack_rows(&ctx) {
        let (source, object) = if row.key == "s/small.png" { (&upscaled, &small_obj) } else { (&plain, &plain_obj) };
        assert_eq!(&row.object, object);
        assert_eq!(row.split, expected_split(object, 0.5), "split by the original object");
        let expected = reference_resize(&reference_square(source, Fit::Crop), 32);
        let actual = sample_pixels(&ctx, row.shard.as_ref().unwrap(), row.index.unwrap(), 32);
        let max_diff = expected.iter().zip(&actual).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(max_diff <= 2, "{}: pixels from the wrong object (max diff {max_diff})", row.key);
    }
    assert!(anime_pipe::inspect::verify::check(&ctx.workdir).unwrap().problems.is_empty());
    std::fs::remove_file(ctx.workdir.object_path(&big_obj)).unwrap();
    let problems = anime_pipe::inspect::verify::check(&ctx.workdir).unwrap().problems;
    assert!(problems.iter().any(|p| p.contains(&big_obj) && p.contains("missing")), "{problems:?}");
}

#[test]
fn reruns_are_byte_identical_for_any_thread_count_and_remove_stale_shards() {
    let dir = tempfile::tempdir().unwrap();
    let items = assorted_items();
    let mut ctx = pack_ctx(dir.path(), &items, &[16, 24], Fit::Crop, 2, 0.3);
    with_threads(2, || ctx.run(Stage::Pack)).unwrap();
    let first = files_under(&dir.path().join("shards"));
    let first_manifest = std::fs::read(ctx.workdir.manifest_path("pack")).unwrap();
    let first_digest = anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap();
    with_threads(1, || ctx.run(Stage::Pack)).unwrap();
    assert_eq!(files_under(&dir.path().join("shards")), first);
    assert_eq!(std::fs::read(ctx.workdir.manifest_path("pack")).unwrap(), first_manifest);
    assert_eq!(anime_pipe::digest::dataset_digest(&ctx.workdir).unwrap(), first_digest);

    // Leftovers of an interrupted run and a foreign file.
    let planted_tmp = dir.path().join("shards/16/.train-00000.safetensors.999.tmp");
    std::fs::write(&planted_tmp, b"partial").unwrap();
    let foreign = dir.path().join("shards/16/README.txt");
    std::fs::write(&foreign, b"not ours").unwrap();

    // Fewer, larger shards and one size fewer: everything the new manifest does not list goes.
    ctx.plan.pack.shard_samples = 100;
    ctx.plan.pack.sizes = vec![16];
    ctx.run(Stage::Pack).unwrap();
    let listed: std::collections::BTreeSet<String> = pack_rows(&ctx).into_iter().filter_map(|r| r.shard).collect();
    let on_disk: std::collections::BTreeSet<String> = files_under(&dir.path().join("shards"))
        .into_keys()
        .map(|p| format!("shards/{p}"))
        .filter(|p| p.ends_with(".safetensors") || p.ends_with(".tmp"))
        .collect();
    assert_eq!(on_disk, listed);
    assert_eq!(listed.len(), 2, "train-00000 and val-00000");
    assert!(foreign.exists(), "files pack did not write are left alone");
    assert!(!dir.path().join("shards/24").exists(), "the size no longer packed is gone");
}

#[test]
fn a_failed_run_leaves_no_manifest_describing_rewritten_shards() {
    let dir = tempfile::tempdir().unwrap();
    let items = assorted_items();
    let ctx = pack_ctx(dir.path(), &items, &[16, 24], Fit::Crop, 4, 0.0);
    ctx.run(Stage::Pack).unwrap();
    assert!(ctx.workdir.manifest_path("pack").exists());
    // Make the second size's shard directory unwritable (a file in its place): the run fails after it has
    // rewritten shards/16/... .
    std::fs::remove_dir_all(dir.path().join("shards/24")).unwrap();
    std::fs::write(dir.path().join("shards/24"), b"in the way").unwrap();
    assert!(ctx.run(Stage::Pack).is_err());
    assert!(!ctx.workdir.manifest_path("pack").exists(), "old manifest removed before shards were rewritten");
    assert!(!ctx.workdir.stamp_path("pack").exists());
    // The next successful run restores everything.
    std::fs::remove_file(dir.path().join("shards/24")).unwrap();
    ctx.run(Stage::Pack).unwrap();
    assert!(anime_pipe::inspect::verify::check(&ctx.workdir).unwrap().problems.is_empty());
}

/// Loads every shard with Python's safetensors + numpy and compares each sample with PIL's own centre-crop +
/// Lanczos resize of the original image. Skipped locally when the packages are missing; CI installs them.
#[test]
fn python_safetensors_numpy_and_pil_agree() {
    let probe = std::process::Command::new("python3").args(["-c", "import safetensors, numpy, PIL"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "python3 with safetensors, numpy and pillow is required in CI (pip install -r requirements-dev.txt)"
            );
        }
        eprintln!("note: python3 with safetensors/numpy/PIL not available; skipping the Python cross-check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let items = assorted_items();
    let ctx = pack_ctx(dir.path(), &items, &[16, 24], Fit::Crop, 3, 0.3);
    ctx.run(Stage::Pack).unwrap();
    let originals = dir.path().join("originals");
    std::fs::create_dir(&originals).unwrap();
    let mut lines = Vec::new();
    for row in pack_rows(&ctx) {
        let item = items.iter().find(|i| i.key() == row.key).unwrap();
        let png = originals.join(format!("{}.png", row.object));
        std::fs::write(&png, &item.bytes).unwrap();
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}",
            row.shard.unwrap(),
            row.index.unwrap(),
            row.size,
            png.display(),
            row.key
        ));
    }
    let listing = dir.path().join("samples.tsv");
    std::fs::write(&listing, lines.join("\n")).unwrap();
    let script = r#"
import json, sys
import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file
root, listing = sys.argv[1], sys.argv[2]
rows = [l.split("\t") for l in open(listing).read().splitlines()]
shards = {}
for shard, index, size, png, key in rows:
    if shard not in shards:
        arr = load_file(f"{root}/{shard}")["images"]
        with safe_open(f"{root}/{shard}", framework="numpy") as f:
            meta = f.metadata()
        n = int(meta["count"])
        assert arr.dtype == np.uint8, arr.dtype
        assert arr.shape == (n, int(size), int(size), 3), arr.shape
        shards[shard] = (arr, json.loads(meta["keys"]))
    arr, keys = shards[shard]
    i, s = int(index), int(size)
    assert keys[i] == key, (keys[i], key)
    im = Image.open(png).convert("RGB")
    w, h = im.size
    m = min(w, h)
    im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m))
    # Vertical pass, then horizontal, each rounded to 8 bits by PIL: the order pack documents.
    ref = np.asarray(im.resize((m, s), Image.LANCZOS).resize((s, s), Image.LANCZOS), dtype=np.int16)
    diff = np.abs(arr[i].astype(np.int16) - ref)
    assert diff.max() <= 2 and diff.mean() < 0.05, (key, s, int(diff.max()), float(diff.mean()))
print(f"ok {len(rows)} samples in {len(shards)} shards")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &dir.path().display().to_string(), &listing.display().to_string()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python check failed:\n{text}");
    assert!(text.contains("ok 20 samples"), "{text}");
}

/// The command line end to end: sample-data -> ingest -> dedup -> clean -> pack, once with -j1 and once with -j2 in
/// two workdirs: identical digests and byte-identical manifests and shards; verify passes; `run` then skips every
/// stage and reports the same digest.
#[test]
fn binary_pipeline_is_byte_identical_for_any_thread_count() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let status = support::anime_pipe().args(["-q", "sample-data"]).arg(&data).args(["--count", "40"]).status().unwrap();
    assert!(status.success());
    let config = data.join("pipeline.yaml");
    // The data stages only: the sample config's `train` and `eval` are tested in run_train.rs.
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace(", train, eval]", "]")).unwrap();
    let anime_pipe = |workdir: &Path, args: &[&str]| {
        let out = support::anime_pipe()
            .current_dir(root.path())
            .arg("--config")
            .arg(&config)
            .arg("--workdir")
            .arg(workdir)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let digest_of = |json: &str| -> String {
        let summary: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
        let facts = summary["facts"].as_array().unwrap();
        let fact = facts.iter().find(|f| f[0] == "dataset digest").expect("summary has the dataset digest");
        fact[1].as_str().unwrap().to_string()
    };
    let mut digests = Vec::new();
    for threads in ["1", "2"] {
        let workdir = root.path().join(format!("work-j{threads}"));
        for stage in ["ingest", "dedup", "clean"] {
            anime_pipe(&workdir, &["-q", "-j", threads, stage]);
        }
        let pack_args = ["--json", "-j", threads, "pack", "--size", "32", "--size", "48", "--shard-samples", "16"];
        digests.push(digest_of(&anime_pipe(&workdir, &[&pack_args[..], &["--val-fraction", "0.2"]].concat())));
        assert_eq!(digests.last().unwrap(), &anime_pipe::digest::dataset_digest(&workdir_of(&workdir)).unwrap());
        anime_pipe(&workdir, &["-q", "verify"]);
    }
    assert_eq!(digests[0], digests[1], "dataset digest differs between -j1 and -j2");
    let (one, two) = (root.path().join("work-j1"), root.path().join("work-j2"));
    for dir in ["manifests", "shards"] {
        let files = |w: &Path| -> BTreeMap<String, Vec<u8>> {
            files_under(&w.join(dir)).into_iter().filter(|(name, _)| !name.ends_with(".stamp.json")).collect()
        };
        let (a, b) = (files(&one), files(&two));
        assert!(!a.is_empty());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{dir}: same files");
        for (name, bytes) in &a {
            assert!(bytes == &b[name], "{dir}/{name} differs between -j1 and -j2");
        }
    }
    // The shards hold every accepted clean item once per size, 16 per shard at most.
    let ctx = context(&one);
    let pack_df = read_stage(&ctx.workdir, "pack");
    let clean_df = read_stage(&ctx.workdir, "clean");
    let accepted = strs(&clean_df, "status").iter().filter(|s| s.as_deref() == Some("ok")).count();
    assert!(accepted > 30, "{accepted}");
    assert_eq!(pack_df.height(), accepted * 2);
    // `run` skips the up-to-date stages (pack re-runs: the config's pack settings differ from the flags used
    // above) and reports the digest of what is then on disk.
    let run = anime_pipe(&one, &["--json", "run"]);
    let summary: serde_json::Value = serde_json::from_str(run.lines().last().unwrap()).unwrap();
    let facts: BTreeMap<String, String> = serde_json::from_value(summary["facts"].clone())
        .map(|pairs: Vec<(String, String)>| pairs.into_iter().collect())
        .unwrap();
    for stage in ["ingest", "dedup", "clean"] {
        assert_eq!(facts[stage], "up to date (skipped)", "{stage}");
    }
    assert!(facts["pack"].starts_with("ran in"), "{}", facts["pack"]);
    assert_eq!(digest_of(&run), anime_pipe::digest::dataset_digest(&workdir_of(&one)).unwrap());
}

fn workdir_of(path: &Path) -> anime_pipe::workdir::Workdir {
    anime_pipe::workdir::Workdir::open(path).unwrap()
}
