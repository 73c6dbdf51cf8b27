//! The crop stage on real illustrations (../shared), its rejects and passthrough rows, determinism, the YOLO decoder
//! against a hand-made ONNX graph with planted boxes, and `anime-pipe run` end to end with a contact sheet.

use crate::support;
use crate::support::faces::*;
use crate::support::shared_dir;
use anime_pipe::faces::detector::{Detector, DetectorParams, Family};
use anime_pipe::faces::geometry::BoxF;
use anime_pipe::runtime::{Device, SessionOptions};
use anime_pipe::stages::Stage;
use image::RgbImage;

fn illust(name: &str) -> Option<std::path::PathBuf> {
    shared_dir().map(|d| d.join("data/illust").join(name))
}

/// Accepted face rows of crop.parquet: (box, crop x0, crop y0, crop size, object).
fn accepted_faces(df: &polars::prelude::DataFrame) -> Vec<(BoxF, i64, i64, u32, String)> {
    let (kind, status, object) = (strs(df, "kind"), strs(df, "status"), strs(df, "object"));
    let b: Vec<Vec<Option<f64>>> = ["box_x0", "box_y0", "box_x1", "box_y1"].iter().map(|c| f64s(df, c)).collect();
    let (cx, cy, cs) = (i64s(df, "crop_x0"), i64s(df, "crop_y0"), u32s(df, "crop_size"));
    (0..df.height())
        .filter(|&r| kind[r].as_deref() == Some("face") && status[r].as_deref() == Some("ok"))
        .map(|r| {
            let v = |c: usize| b[c][r].unwrap() as f32;
            (
                BoxF::new(v(0), v(1), v(2), v(3)),
                cx[r].unwrap(),
                cy[r].unwrap(),
                cs[r].unwrap(),
                object[r].clone().unwrap(),
            )
        })
        .collect()
}

#[test]
fn grid36_finds_a_face_in_nearly_every_cell_and_crops_real_pixels() {
    let Some(path) = illust("demo__grid36.jpg") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path(), "{}", 2);
    publish_dedup(&mut ctx, &[Input::file("illust", &path)], &[]);
    ctx.run(Stage::Crop).unwrap();
    let df = read_stage(&ctx.workdir, "crop");
    let faces = accepted_faces(&df);
    assert!(faces.len() >= 34, "found {} faces", faces.len());
    // The picture is a 6x6 grid of 512 px cells with one main face each (README: plus 2 real small faces).
    assert!(faces.len() <= 40, "found {} faces: false positives?", faces.len());
    let mut cells = std::collections::BTreeSet::new();
    for (b, ..) in &faces {
        let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
        cells.insert(((cx / 512.0) as u32, (cy / 512.0) as u32));
    }
    assert!(cells.len() >= 34, "faces in {} distinct grid cells", cells.len());

    // Default border policy is clamp: every crop is the plain sub-image at its crop box, stored as PNG.
    let source = image::open(&path).unwrap().to_rgb8();
    for (_, x0, y0, size, object) in faces.iter().take(6) {
        let crop = object_image(&ctx.workdir, object);
        assert_eq!(crop.dimensions(), (*size, *size));
        let expected = image::imageops::crop_imm(&source, *x0 as u32, *y0 as u32, *size, *size).to_image();
        // Same decoder for both (image crate JPEG), so pixels agree exactly.
        assert!(crop == expected, "crop at ({x0}, {y0}) size {size} differs from the source pixels");
    }
}

#[test]
fn touhou_banner_small_faces_need_the_2x_scale() {
    let Some(path) = illust("demo__touhou_banner.jpg") else { return };
    let count = |yaml: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(dir.path(), yaml, 2);
        publish_dedup(&mut ctx, &[Input::file("illust", &path)], &[]);
        ctx.run(Stage::Crop).unwrap();
        let df = read_stage(&ctx.workdir, "crop");
        let scales: Vec<f64> = accepted_faces(&df)
            .iter()
            .map(|f| {
                let row = strs(&df, "object").iter().position(|o| o.as_deref() == Some(f.4.as_str())).unwrap();
                f64s(&df, "scale")[row].unwrap()
            })
            .collect();
        scales
    };
    let native = count("crop: {scales: [1.0]}");
    let both = count("crop: {scales: [1.0, 2.0]}");
    assert!(both.len() >= 6, "found {} of 7 faces with scales [1, 2]", both.len());
    assert!(both.len() <= 8, "found {} faces on a banner with 7", both.len());
    assert!(native.len() < both.len(), "native {} vs 2x {}", native.len(), both.len());
    assert!(both.iter().filter(|&&s| s == 2.0).count() >= 5, "the small faces come from the 2x pass: {both:?}");
}

#[test]
fn every_image_gets_rows_with_reasons_and_cropped_sources_pass_through() {
    let Some(banner) = illust("demo__touhou_banner.jpg") else { return };
    let dir = tempfile::tempdir().unwrap();
    // Faces of the banner are ~100-170 px: min_face_size 140 rejects some, max_faces 2 caps the rest.
    let mut ctx = context(dir.path(), "crop: {min_face_size: 140, max_faces: 2}", 2);
    let flat = png(&RgbImage::from_pixel(300, 200, image::Rgb([200, 180, 160])));
    let face_crop = png(&RgbImage::from_pixel(64, 64, image::Rgb([10, 20, 30])));
    let mut broken = std::fs::read(&banner).unwrap();
    broken.truncate(broken.len() / 3);
    let inputs = [
        Input::file("illust", &banner),
        Input::new("illust", "flat.png", flat),
        Input { width: 1280, height: 720, ..Input::new("illust", "broken.jpg", broken) },
        Input::new("faces", "f1.png", face_crop.clone()),
        Input { status: "duplicate", ..Input::new("faces", "f2.png", face_crop) },
    ];
    publish_dedup(&mut ctx, &inputs, &["faces"]);
    let summary = ctx.run(Stage::Crop).unwrap();
    let df = read_stage(&ctx.workdir, "crop");
    let (key, kind, status, reason) = (strs(&df, "key"), strs(&df, "kind"), strs(&df, "status"), strs(&df, "reason"));
    let row_of = |k: &str| key.iter().position(|x| x.as_deref() == Some(k)).unwrap_or_else(|| panic!("no row {k}"));

    let flat_row = row_of("illust/flat.png");
    assert_eq!((kind[flat_row].as_deref(), reason[flat_row].as_deref()), (Some("image"), Some("no_face")));
    let broken_row = row_of("illust/broken.jpg");
    assert_eq!(reason[broken_row].as_deref(), Some("decode_failed"));
    assert!(strs(&df, "error")[broken_row].is_some());
    let pass = row_of("faces/f1.png");
    assert_eq!((kind[pass].as_deref(), status[pass].as_deref()), (Some("passthrough"), Some("ok")));
    assert_eq!(strs(&df, "object")[pass], Some(inputs[3].object()));
    assert_eq!((u32s(&df, "width")[pass], u32s(&df, "height")[pass]), (Some(64), Some(64)));
    assert!(!key.iter().any(|k| k.as_deref() == Some("faces/f2.png")), "duplicates are not items");

    // The banner's faces: ranked rows #face000.., at most 2 accepted, the rest rejected by size or count.
    let banner_rows: Vec<usize> = (0..df.height()).filter(|&r| key[r].as_deref().unwrap().contains("#face")).collect();
    assert!(banner_rows.len() >= 6);
    let scores = f64s(&df, "score");
    let sizes: Vec<f64> = banner_rows
        .iter()
        .map(|&r| {
            let (w, h) = (
                f64s(&df, "box_x1")[r].unwrap() - f64s(&df, "box_x0")[r].unwrap(),
                f64s(&df, "box_y1")[r].unwrap() - f64s(&df, "box_y0")[r].unwrap(),
            );
            w.min(h)
        })
        .collect();
    let mut accepted = 0;
    for (i, &r) in banner_rows.iter().enumerate() {
        assert_eq!(key[r].as_deref().unwrap(), format!("illust/demo__touhou_banner.jpg#face{i:03}"));
        assert_eq!(u32s(&df, "face_index")[r], Some(i as u32));
        let want = if scores[r].unwrap() < 0.5 {
            Some("low_score")
        } else if sizes[i] < 140.0 {
            Some("face_too_small")
        } else if accepted >= 2 {
            Some("too_many_faces")
        } else {
            accepted += 1;
            None
        };
        assert_eq!(reason[r].as_deref(), want, "row {r}: score {:?} size {}", scores[r], sizes[i]);
        assert_eq!(strs(&df, "object")[r].is_some(), want.is_none());
    }
    assert!(accepted >= 1);
    assert!(reason.iter().any(|r| r.as_deref() == Some("face_too_small")));
    // Rows sorted by (source_index, path); the summary counts rejects by reason.
    let order: Vec<(u32, String)> =
        u32s(&df, "source_index").into_iter().zip(strs(&df, "path")).map(|(i, p)| (i.unwrap(), p.unwrap())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert_eq!(summary.rejects.get("no_face"), Some(&1));
    assert_eq!(summary.rejects.get("decode_failed"), Some(&1));
}

#[test]
fn crop_manifest_and_objects_are_identical_across_thread_counts() {
    let Some(banner) = illust("demo__touhou_banner.jpg") else { return };
    let Some(other) = illust("ao7108__Emilia__Emilia_11.jpg") else { return };
    let run = |threads: usize, border: &str| {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!("crop: {{border: {border}}}");
        let mut ctx = context(dir.path(), &yaml, threads);
        publish_dedup(&mut ctx, &[Input::file("illust", &other), Input::file("illust", &banner)], &[]);
        with_threads(threads, || ctx.run(Stage::Crop).unwrap());
        let bytes = std::fs::read(ctx.workdir.manifest_path("crop")).unwrap();
        (bytes, dir)
    };
    let (one, _d1) = run(1, "edge");
    let (two, _d2) = run(2, "edge");
    assert!(one == two, "crop.parquet differs between -j1 and -j2");
    let (clamped, _d3) = run(2, "clamp");
    assert!(one != clamped, "the border policy must change the manifest");
}

// ---- YOLO decoder against a hand-made ONNX graph ------------------------------------------------------------

/// Minimal protobuf writer for the few ModelProto fields a constant-output graph needs.
mod proto {
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn int(out: &mut Vec<u8>, field: u64, v: i64) {
        varint(field << 3, out);
        varint(v as u64, out);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint((field << 3) | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    /// ValueInfoProto of a float tensor with fixed dims.
    pub fn value_info(name: &str, dims: &[i64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for &d in dims {
            let mut dim = Vec::new();
            int(&mut dim, 1, d);
            bytes(&mut shape, 1, &dim);
        }
        let mut tensor_type = Vec::new();
        int(&mut tensor_type, 1, 1); // FLOAT
        bytes(&mut tensor_type, 2, &shape);
        let mut type_proto = Vec::new();
        bytes(&mut type_proto, 1, &tensor_type);
        let mut vi = Vec::new();
        bytes(&mut vi, 1, name.as_bytes());
        bytes(&mut vi, 2, &type_proto);
        vi
    }
    /// `output = Identity(W)` with W a float initializer; input `images` [1, 3, size, size] declared but unused.
    pub fn constant_model(size: i64, dims: &[i64], values: &[f32]) -> Vec<u8> {
        let mut tensor = Vec::new();
        for &d in dims {
            int(&mut tensor, 1, d);
        }
        int(&mut tensor, 2, 1); // FLOAT
        bytes(&mut tensor, 8, b"W");
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes(&mut tensor, 9, &raw);
        let mut node = Vec::new();
        bytes(&mut node, 1, b"W");
        bytes(&mut node, 2, b"output0");
        bytes(&mut node, 3, b"identity");
        bytes(&mut node, 4, b"Identity");
        let mut graph = Vec::new();
        bytes(&mut graph, 1, &node);
        bytes(&mut graph, 2, b"planted_yolo");
        bytes(&mut graph, 5, &tensor);
        bytes(&mut graph, 11, &value_info("images", &[1, 3, size, size]));
        bytes(&mut graph, 12, &value_info("output0", dims));
        let mut opset = Vec::new();
        bytes(&mut opset, 1, b"");
        int(&mut opset, 2, 13);
        let mut model = Vec::new();
        int(&mut model, 1, 8); // ir_version
        bytes(&mut model, 2, b"anime-pipe-test");
        bytes(&mut model, 7, &graph);
        bytes(&mut model, 8, &opset);
        model
    }
}

/// A YOLO-style model (one class) whose output `[1, 5, N]` holds the given (cx, cy, w, h, score) columns.
fn planted_yolo(dir: &std::path::Path, size: i64, boxes: &[[f32; 5]]) -> std::path::PathBuf {
    let n = boxes.len() + 3; // plus empty anchors
    let mut values = vec![0f32; 5 * n];
    for (k, b) in boxes.iter().enumerate() {
        for c in 0..5 {
            values[c * n + k] = b[c];
        }
    }
    let path = dir.join("planted.onnx");
    std::fs::write(&path, proto::constant_model(size, &[1, 5, n as i64], &values)).unwrap();
    path
}

fn yolo_params(scales: Vec<f32>) -> DetectorParams {
    DetectorParams {
        family: Family::Yolo,
        scales,
        max_side: 2048,
        yolo_input_size: 640,
        candidate_threshold: 0.3,
        nms_iou: 0.3,
        top_k: 100,
    }
}

fn cpu() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: 1, optimize: true }
}

fn assert_close(got: &BoxF, want: &BoxF) {
    let d = [got.x0 - want.x0, got.y0 - want.y0, got.x1 - want.x1, got.y1 - want.y1];
    assert!(d.iter().all(|v| v.abs() < 1e-3), "{got:?} vs {want:?}");
}

#[test]
fn yolo_boxes_planted_in_a_graph_come_back_in_source_pixels() {
    let dir = tempfile::tempdir().unwrap();
    // 320 x 160 image in a 640 letterbox: ratio 2, no horizontal pad, 160 px bands above and below.
    // Source boxes A = (10, 20, 50, 60) and B = (200, 40, 300, 150) become (20, 200, 100, 280) and
    // (400, 240, 600, 460); as (cx, cy, w, h): (60, 240, 80, 80) and (500, 350, 200, 220).
    let model = planted_yolo(
        dir.path(),
        640,
        &[
            [500.0, 350.0, 200.0, 220.0, 0.8],
            [62.0, 241.0, 80.0, 80.0, 0.7], // near-duplicate of A: suppressed by NMS
            [60.0, 240.0, 80.0, 80.0, 0.9],
            [300.0, 300.0, 50.0, 50.0, 0.1], // below the candidate threshold
        ],
    );
    let detector = Detector::load(&model, yolo_params(vec![1.0]), &cpu()).unwrap();
    let found = detector.detect(&RgbImage::new(320, 160)).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].score, found[1].score), (0.9, 0.8));
    assert_close(&found[0].bbox, &BoxF::new(10.0, 20.0, 50.0, 60.0));
    assert_close(&found[1].bbox, &BoxF::new(200.0, 40.0, 300.0, 150.0));
}

#[test]
fn yolo_unmapping_handles_fractional_ratio_and_padding() {
    let dir = tempfile::tempdir().unwrap();
    // 300 x 200 into 640: ratio 640/300, resized 640 x 427 (426.67 rounded), pad (640 - 427) / 2 = 106.5 ->
    // 106 above (ultralytics rounds d - 0.1). Source box (30, 40, 90, 120).
    let r = 640.0f32 / 300.0;
    let (x0, y0, x1, y1) = (30.0 * r, 40.0 * r + 106.0, 90.0 * r, 120.0 * r + 106.0);
    let model = planted_yolo(dir.path(), 640, &[[(x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0, 0.95]]);
    let detector = Detector::load(&model, yolo_params(vec![1.0]), &cpu()).unwrap();
    let found = detector.detect(&RgbImage::new(300, 200)).unwrap();
    assert_eq!(found.len(), 1);
    assert_close(&found[0].bbox, &BoxF::new(30.0, 40.0, 90.0, 120.0));
    // A fixed-size model cannot run at other scales: the error names the key.
    let err = Detector::load(&model, yolo_params(vec![1.0, 2.0]), &cpu()).err().unwrap().to_string();
    assert!(err.contains("crop.scales"), "{err}");
}

// ---- end to end ---------------------------------------------------------------------------------------------

/// Links `names` from `from` into a new folder `to` (the shared data is never copied).
fn link_subset(from: &std::path::Path, names: &[&str], to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in names {
        std::os::unix::fs::symlink(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn run_end_to_end_produces_crops_upscales_packs_and_a_contact_sheet() {
    let Some(shared) = shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let illust = ["demo__touhou_banner.jpg", "ao7108__Emilia__Emilia_11.jpg", "ao7108__Gojo_Satoru__Gojo_Satoru_2.jpg"];
    link_subset(&shared.join("data/illust"), &illust, &dir.path().join("illust"));
    let mut faces: Vec<String> = std::fs::read_dir(shared.join("data/holoen256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    faces.sort();
    let faces: Vec<&str> = faces.iter().take(3).map(String::as_str).collect();
    link_subset(&shared.join("data/holoen256"), &faces, &dir.path().join("faces"));
    let yaml = format!(
        "sources:\n  - {{name: illust, path: illust}}\n  - {{name: faces, path: faces, already_cropped: true}}\n\
         stages: [ingest, dedup, crop, upscale, clean, pack]\npack: {{sizes: [64, 256]}}\n\
         upscale: {{method: waifu2x}}\nmodels: {{face_detector: {m}/anime_faceboxes.onnx, waifu2x: \
         {m}/waifu2x_upconv7_anime_scale2x.onnx}}\n",
        m = shared.join("models").display()
    );
    std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
    let run = || support::anime_pipe().current_dir(dir.path()).args(["--json", "-j", "2", "run"]).output().unwrap();
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let sheet = dir.path().join("sheet.png");
    let out =
        support::anime_pipe().current_dir(dir.path()).args(["stats", "--contact-sheet"]).arg(&sheet).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let workdir = anime_pipe::workdir::Workdir::open(dir.path()).unwrap();
    let crops = read_stage(&workdir, "crop");
    let found = accepted_faces(&crops);
    // 7 faces on the banner (README) and at least one on each single-character illustration.
    assert!(found.len() >= 8, "{} face crops", found.len());
    let kinds = strs(&crops, "kind");
    assert_eq!(kinds.iter().filter(|k| k.as_deref() == Some("passthrough")).count(), 3);
    // upscale: one row per usable crop row; crops under 256 px were upscaled by waifu2x to exactly 256.
    let upscale = read_stage(&workdir, "upscale");
    let ok_crops = strs(&crops, "status").iter().filter(|s| s.as_deref() == Some("ok")).count();
    assert_eq!(upscale.height(), ok_crops);
    let (method, width, up_w) =
        (strs(&upscale, "upscale_method"), u32s(&upscale, "width"), u32s(&upscale, "upscaled_width"));
    let up_h = u32s(&upscale, "upscaled_height");
    for r in 0..upscale.height() {
        let small = width[r].unwrap() < 256;
        assert_eq!(method[r].as_deref(), Some(if small { "waifu2x" } else { "none" }), "row {r}");
        if small {
            assert_eq!(up_w[r].unwrap().min(up_h[r].unwrap()), 256);
        }
    }
    assert!(method.iter().any(|m| m.as_deref() == Some("waifu2x")), "the banner's ~120 px faces need upscaling");
    // clean reads upscale.parquet; pack packs every accepted item at both sizes.
    let clean = read_stage(&workdir, "clean");
    assert_eq!(strs(&clean, "key"), strs(&upscale, "key"));
    let accepted = strs(&clean, "status").iter().filter(|s| s.as_deref() == Some("ok")).count();
    assert!(accepted >= 8);
    let pack = read_stage(&workdir, "pack");
    assert_eq!(strs(&pack, "status").iter().filter(|s| s.as_deref() == Some("ok")).count(), 2 * accepted);
    // The contact sheet shows every face crop in 96 px cells.
    let sheet = image::open(&sheet).unwrap();
    let cols = (found.len() as u32).min(anime_pipe::inspect::contact_sheet::COLUMNS);
    let rows = (found.len() as u32).div_ceil(cols);
    assert_eq!((sheet.width(), sheet.height()), (cols * 96 + (cols + 1) * 2, rows * 96 + (rows + 1) * 2));

    // A second run finds everything up to date and changes nothing.
    let manifests = std::fs::read(workdir.manifest_path("crop")).unwrap();
    let second = run();
    assert!(second.status.success());
    let text = String::from_utf8_lossy(&second.stdout);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["counts"][0], serde_json::json!(["stages run", 0]), "{text}");
    assert_eq!(std::fs::read(workdir.manifest_path("crop")).unwrap(), manifests);
}

/// All 270 illustrations: ~10 min in a debug build on 2 cores (the resizer's generic code is compiled without
/// optimisation there), about a minute in release: `cargo test --release --test it crop:: -- --ignored`.
#[test]
#[ignore = "slow in debug builds; run with --release -- --ignored"]
fn run_over_all_of_illust() {
    let Some(shared) = shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "sources:\n  - {{name: illust, path: {}}}\nstages: [ingest, dedup, crop, upscale, clean, pack]\n\
         pack: {{sizes: [64, 128]}}\nmodels: {{face_detector: {}}}\n",
        shared.join("data/illust").display(),
        shared.join("models/anime_faceboxes.onnx").display()
    );
    std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
    assert!(support::anime_pipe().current_dir(dir.path()).args(["-q", "run"]).status().unwrap().success());
    let sheet = dir.path().join("sheet.png");
    let mut stats = support::anime_pipe();
    stats.current_dir(dir.path()).args(["-q", "stats", "--contact-sheet"]).arg(&sheet);
    assert!(stats.status().unwrap().success());
    let workdir = anime_pipe::workdir::Workdir::open(dir.path()).unwrap();
    let crops = read_stage(&workdir, "crop");
    // 251 unique illustrations, most with one main character; grid36 and the group pictures add ~80 faces.
    let faces = accepted_faces(&crops).len();
    assert!(faces >= 250, "{faces} face crops");
    let images: std::collections::BTreeSet<Option<String>> = strs(&crops, "parent_key").into_iter().collect();
    assert_eq!(images.len(), 251, "every unique image has a row");
    assert!(image::open(&sheet).is_ok());
}
