//! The ingest stage end to end: every kind of bad input becomes a row with its reason, archives are read by
//! content without extracting, re-runs reuse the private index, and manifests are byte-identical across thread
//! counts and file-system creation order. Real data from ../shared when present.

use crate::support;
use crate::support::ingest_data::*;
use anime_pipe::stages::Stage;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A 1x1 PNG whose header claims w x h (CRC fixed, so only the size is wrong).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = png(&picture(1, 1, 0));
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

fn animated_gif(frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        let frames =
            (0..frames).map(|i| image::Frame::new(RgbaImage::from_pixel(8, 8, Rgba([i as u8 * 60, 0, 0, 255]))));
        enc.encode_frames(frames).unwrap();
    }
    out
}

/// Expected reason (None = accepted) per path for [`build_messy_folder`].
fn build_messy_folder(root: &Path) -> BTreeMap<String, Option<&'static str>> {
    let mut expected = BTreeMap::new();
    let mut put = |rel: &str, bytes: &[u8], reason: Option<&'static str>| {
        write(&root.join(rel), bytes);
        expected.insert(rel.to_string(), reason);
    };
    put("good.png", &png(&picture(80, 60, 1)), None);
    put("good.jpg", &jpeg(&picture(70, 90, 2), 90), None);
    put("nested/deep/lossless.webp", &encode(&DynamicImage::ImageRgb8(picture(40, 40, 3)), ImageFormat::WebP), None);
    let gray = DynamicImage::ImageRgb8(picture(50, 50, 4)).into_luma8();
    put("gray.png", &encode(&DynamicImage::ImageLuma8(gray), ImageFormat::Png), None);
    put("anim.gif", &animated_gif(3), None);
    put("empty.jpg", b"", Some("empty_file"));
    let whole = jpeg(&picture(120, 120, 5), 90);
    put("truncated.jpg", &whole[..whole.len() * 2 / 3], Some("truncated"));
    let mut corrupt = png(&picture(64, 64, 6));
    let n = corrupt.len();
    for b in &mut corrupt[60..n - 30] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    put("corrupt.png", &corrupt, Some("corrupt"));
    put("notes.jpg", b"this is a text file\n", Some("not_an_image"));
    put("photo.jpg", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", Some("unsupported_format"));
    put("bomb.png", &png_claiming(100_000, 100_000), Some("decompression_bomb"));
    put("big.png", &vec![0x89u8; 300_000], Some("too_large"));
    // Not representable by `put`: links, a FIFO and a non-UTF-8 name. `unreadable` is exercised by a broken
    // symlink: tests run as root, for whom chmod 000 does not make a file unreadable.
    std::os::unix::fs::symlink("does-not-exist.jpg", root.join("broken_link.jpg")).unwrap();
    expected.insert("broken_link.jpg".into(), Some("unreadable"));
    std::os::unix::fs::symlink("..", root.join("nested/loop")).unwrap();
    expected.insert("nested/loop".into(), Some("symlink_loop"));
    let fifo = std::ffi::CString::new(root.join("fifo.jpg").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    expected.insert("fifo.jpg".into(), Some("not_a_file"));
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    fs::write(root.join(latin1), png(&picture(30, 30, 7))).unwrap();
    expected.insert("caf\u{fffd}.png".into(), None);
    expected
}

const SMALL_FILES: &str = "limits:\n  max_file_bytes: 200000\n";

#[test]
fn every_kind_of_bad_input_is_a_row_with_its_reason() {
    let (src, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = src.path().join("data");
    let expected = build_messy_folder(&data);
    let yaml = sources_yaml(&[("messy", &data)]) + SMALL_FILES;
    let ctx = context(work.path(), src.path(), &yaml);
    let summary = ctx.run(Stage::Ingest).unwrap();
    let rows = rows(work.path(), "ingest");

    let got: BTreeMap<String, Option<&str>> = rows.iter().map(|r| (r.path.clone(), r.reason.as_deref())).collect();
    assert_eq!(got, expected);
    let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "rows are in canonical (path) order");
    for r in &rows {
        assert_eq!(r.key, format!("messy/{}", r.path));
        assert_eq!(r.status, if r.reason.is_none() { "ok" } else { "rejected" });
        assert_eq!(r.object.is_some(), r.reason.is_none(), "{}: object only for accepted rows", r.path);
        if let Some(object) = &r.object {
            assert_eq!(Some(object), r.blake3.as_ref());
            let stored = fs::read(ctx.workdir.object_path(object)).unwrap();
            assert_eq!(blake3::hash(&stored).to_hex().as_str(), object);
        }
    }
    // What the accepted rows say about their images.
    let good = by_path(&rows, "good.png");
    assert_eq!(
        (good.format.as_deref(), good.width, good.height, good.color.as_deref()),
        (Some("png"), Some(80), Some(60), Some("rgb8"))
    );
    assert_eq!(by_path(&rows, "gray.png").color.as_deref(), Some("l8"));
    let gif = by_path(&rows, "anim.gif");
    assert_eq!((gif.frames, gif.color.as_deref()), (Some(3), Some("palette")));
    assert_eq!(by_path(&rows, "nested/deep/lossless.webp").format.as_deref(), Some("webp"));
    // Detected by content: an AVIF named .jpg, and the JPEG signature of the truncated file.
    assert_eq!(by_path(&rows, "photo.jpg").format.as_deref(), Some("avif"));
    assert_eq!(by_path(&rows, "truncated.jpg").format.as_deref(), Some("jpeg"));
    // The non-UTF-8 name keeps its raw bytes.
    let latin1 = by_path(&rows, "caf\u{fffd}.png");
    assert_eq!(latin1.path_hex.as_deref(), Some("636166e92e706e67"));
    assert!(rows.iter().filter(|r| r.path != latin1.path).all(|r| r.path_hex.is_none()));
    // The summary counts what the manifest holds.
    let rejected = expected.values().filter(|r| r.is_some()).count() as u64;
    assert_eq!(count(&summary, "files"), expected.len() as u64);
    assert_eq!(count(&summary, "rejected"), rejected);
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for reason in expected.values().flatten() {
        *by_reason.entry(reason.to_string()).or_default() += 1;
    }
    assert_eq!(summary.rejects, by_reason);
    // Large files are rejected unread.
    assert_eq!(by_path(&rows, "big.png").blake3, None);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn archives_are_read_by_content_and_unsafe_entries_never_extracted() {
    let (src, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = src.path();
    let (a, b) = (png(&picture(64, 64, 10)), jpeg(&picture(64, 64, 11), 85));
    let zeros = vec![0u8; 300_000];
    let deflated = zip::CompressionMethod::Deflated;
    write(
        &d.join("pack.zip"),
        &zip_bytes(
            &[
                ("img/", b""),
                ("img/a.png", &a),
                ("../evil.png", &a),
                ("/abs.png", &a),
                ("./img/b.jpg", &b),
                ("zeros.png", &zeros),
                ("notes.txt", b"hello"),
            ],
            deflated,
        ),
    );
    let tar = tar_bytes(&[
        (b"b.jpg", &b, tar::EntryType::Regular),
        (b"sub/../../up.jpg", &a, tar::EntryType::Regular),
        (b"link.jpg", b"", tar::EntryType::Symlink),
    ]);
    write(&d.join("pack.tar"), &tar);
    write(&d.join("pack.tgz"), &gzip(&tar_bytes(&[(b"c.png", &a, tar::EntryType::Regular)])));
    // A zip under a name that says nothing: recognised by content.
    write(&d.join("photos.bin"), &zip_bytes(&[("x.png", &a)], zip::CompressionMethod::Stored));
    write(&d.join("broken.zip"), b"PK\x03\x04 this is not really a zip archive at all");
    let yaml = sources_yaml(&[
        ("z", &d.join("pack.zip")),
        ("t", &d.join("pack.tar")),
        ("g", &d.join("pack.tgz")),
        ("bin", &d.join("photos.bin")),
        ("broken", &d.join("broken.zip")),
    ]) + SMALL_FILES;
    let ctx = context(work.path(), d, &yaml);
    let summary = ctx.run(Stage::Ingest).unwrap();
    let rows = rows(work.path(), "ingest");
    let got: Vec<(&str, Option<&str>)> = rows.iter().map(|r| (r.key.as_str(), r.reason.as_deref())).collect();
    assert_eq!(
        got,
        vec![
            // Sorted by source, then path ('.' < '/'); "./img/b.jpg" is normalised, the directory entry skipped.
            ("z/../evil.png", Some("unsafe_archive_path")),
            ("z//abs.png", Some("unsafe_archive_path")),
            ("z/img/a.png", None),
            ("z/img/b.jpg", None),
            ("z/notes.txt", Some("not_an_image")),
            ("z/zeros.png", Some("too_large")),
            ("t/b.jpg", None),
            ("t/link.jpg", Some("not_a_file")),
            ("t/sub/../../up.jpg", Some("unsafe_archive_path")),
            ("g/c.png", None),
            ("bin/x.png", None),
            ("broken/", Some("corrupt_archive")),
        ]
    );
    // Nothing was written outside the workdir: the source folder holds exactly what the test wrote.
    let mut names: Vec<String> =
        fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["broken.zip", "pack.tar", "pack.tgz", "pack.zip", "photos.bin"]);
    assert!(!src.path().parent().unwrap().join("evil.png").exists());
    // Accepted entries are in the cache, byte for byte.
    let a_hash = blake3::hash(&a).to_hex().to_string();
    assert_eq!(fs::read(ctx.workdir.object_path(&a_hash)).unwrap(), a);
    assert_eq!(count(&summary, "unique images"), 2);
}

#[test]
fn zip_bombs_and_archive_budgets_are_capped() {
    let (src, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = src.path();
    // Five incompressible ~30 KB entries; a 100 KB budget admits the first three.
    let images: Vec<Vec<u8>> = (0..5).map(|i| noise_png(100, 100, i)).collect();
    let sizes: Vec<usize> = images.iter().map(Vec::len).collect();
    let budget: usize = sizes[..3].iter().sum::<usize>() + sizes[3] / 2;
    let names: Vec<String> = (0..5).map(|i| format!("n{i}.png")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(images.iter().map(Vec::as_slice)).collect();
    write(&d.join("many.zip"), &zip_bytes(&entries, zip::CompressionMethod::Deflated));
    let tar_entries: Vec<(&[u8], &[u8], tar::EntryType)> =
        names.iter().zip(&images).map(|(n, b)| (n.as_bytes(), b.as_slice(), tar::EntryType::Regular)).collect();
    write(&d.join("many.tar.gz"), &gzip(&tar_bytes(&tar_entries)));
    // 50 MB of zeros deflate to ~50 KB: rejected from the declared size, never inflated.
    let bomb = vec![0u8; 50 << 20];
    write(
        &d.join("bomb.zip"),
        &zip_bytes(&[("bomb.png", &bomb), ("ok.png", &images[0])], zip::CompressionMethod::Deflated),
    );
    let yaml =
        sources_yaml(&[("zip", &d.join("many.zip")), ("tgz", &d.join("many.tar.gz")), ("bomb", &d.join("bomb.zip"))])
            + &format!("limits:\n  max_file_bytes: 1000000\n  max_archive_bytes: {budget}\n");
    let ctx = context(work.path(), d, &yaml);
    ctx.run(Stage::Ingest).unwrap();
    let rows = rows(work.path(), "ingest");
    let reasons = |source: &str| -> Vec<(String, Option<String>)> {
        rows.iter().filter(|r| r.source == source).map(|r| (r.path.clone(), r.reason.clone())).collect()
    };
    let over = Some("archive_budget_exceeded".to_string());
    // zip: every entry listed; the two past the budget rejected unread.
    assert_eq!(
        reasons("zip"),
        vec![
            ("n0.png".into(), None),
            ("n1.png".into(), None),
            ("n2.png".into(), None),
            ("n3.png".into(), over.clone()),
            ("n4.png".into(), over.clone())
        ]
    );
    // tar.gz: streamed, so reading stops at the budget with a row for the archive itself.
    assert_eq!(
        reasons("tgz"),
        vec![
            ("".into(), over.clone()),
            ("n0.png".into(), None),
            ("n1.png".into(), None),
            ("n2.png".into(), None),
            ("n3.png".into(), over)
        ]
    );
    assert_eq!(reasons("bomb"), vec![("bomb.png".into(), Some("too_large".into())), ("ok.png".into(), None)]);
}

fn noise_png(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut s = seed + 1;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        image::Rgb([(s >> 33) as u8, (s >> 41) as u8, (s >> 49) as u8])
    });
    png(&img)
}

#[test]
fn a_second_run_reads_nothing_and_changes_are_picked_up() {
    let (src, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = src.path();
    for i in 0..4 {
        write(&d.join(format!("dir/{i}.png")), &png(&picture(48, 48, i)));
    }
    write(&d.join("dir/bad.jpg"), b"not an image");
    let entries = [("z0.png", png(&picture(48, 48, 10))), ("z1.png", png(&picture(48, 48, 11)))];
    let zip = |entries: &[(&str, Vec<u8>)]| {
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        zip_bytes(&refs, zip::CompressionMethod::Stored)
    };
    write(&d.join("pack.zip"), &zip(&entries));
    let yaml = sources_yaml(&[("dir", &d.join("dir")), ("zip", &d.join("pack.zip"))]);
    let ctx = context(work.path(), d, &yaml);
    let manifest = work.path().join("manifests/ingest.parquet");

    let first = ctx.run(Stage::Ingest).unwrap();
    assert_eq!((count(&first, "images decoded"), count(&first, "reused")), (7, 0));
    let bytes = fs::read(&manifest).unwrap();
    let fingerprint = ctx.fingerprint(Stage::Ingest).unwrap();

    let second = ctx.run(Stage::Ingest).unwrap();
    assert_eq!((count(&second, "images decoded"), count(&second, "reused")), (0, 7));
    assert_eq!(fs::read(&manifest).unwrap(), bytes, "the index does not leak into the manifest");
    assert_eq!(ctx.fingerprint(Stage::Ingest).unwrap(), fingerprint);

    // A changed file (other size) is re-read; so is an archive that changed.
    write(&d.join("dir/1.png"), &png(&picture(50, 50, 99)));
    write(&d.join("pack.zip"), &zip(&[entries[0].clone(), entries[1].clone(), ("z2.png", png(&picture(8, 8, 3)))]));
    assert_ne!(ctx.fingerprint(Stage::Ingest).unwrap(), fingerprint);
    let third = ctx.run(Stage::Ingest).unwrap();
    assert_eq!((count(&third, "images decoded"), count(&third, "reused")), (1 + 3, 4));
    assert_eq!(by_path(&rows(work.path(), "ingest"), "1.png").width, Some(50));

    // A cache object that disappeared is re-created from the source.
    let r0 = rows(work.path(), "ingest").into_iter().find(|r| r.path == "0.png").unwrap();
    let object = ctx.workdir.object_path(r0.object.as_deref().unwrap());
    fs::remove_file(&object).unwrap();
    let fourth = ctx.run(Stage::Ingest).unwrap();
    assert_eq!(count(&fourth, "images decoded"), 1);
    assert!(object.is_file());
}

#[test]
fn an_archive_listed_twice_and_an_archive_inside_a_folder() {
    let (src, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = src.path();
    write(&d.join("dir/a.png"), &png(&picture(32, 32, 1)));
    write(
        &d.join("dir/inner.zip"),
        &zip_bytes(&[("b.png", &png(&picture(32, 32, 2)))], zip::CompressionMethod::Stored),
    );
    write(&d.join("pack.zip"), &zip_bytes(&[("x.png", &png(&picture(32, 32, 3)))], zip::CompressionMethod::Stored));
    let yaml = sources_yaml(&[("one", &d.join("dir")), ("two", &d.join("pack.zip")), ("three", &d.join("pack.zip"))]);
    let ctx = context(work.path(), d, &yaml);
    let first = ctx.run(Stage::Ingest).unwrap();
    let manifest = fs::read(work.path().join("manifests/ingest.parquet")).unwrap();
    let second = ctx.run(Stage::Ingest).unwrap();
    assert_eq!(count(&first, "files"), 4);
    assert_eq!((count(&second, "images decoded"), count(&second, "reused")), (0, 4));
    assert_eq!(fs::read(work.path().join("manifests/ingest.parquet")).unwrap(), manifest);
    let rows = rows(work.path(), "ingest");
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["one/a.png", "one/inner.zip", "two/x.png", "three/x.png"]);
    let inner = by_path(&rows, "inner.zip");
    assert_eq!(inner.reason.as_deref(), Some("not_an_image"));
    let error = read_error(work.path(), "one/inner.zip");
    assert!(error.contains("sources:"), "{error}");
}

fn read_error(workdir: &Path, key: &str) -> String {
    let df = anime_pipe::manifest::read_parquet(&workdir.join("manifests/ingest.parquet")).unwrap();
    let keys = anime_pipe::manifest::columns::strings(&df, "key").unwrap();
    let errors = anime_pipe::manifest::columns::opt_strings(&df, "error").unwrap();
    errors[keys.iter().position(|k| k == key).unwrap()].clone().unwrap()
}

/// Creates the same tree under `root`, writing files in the given order.
fn build_tree(root: &Path, order: &[usize]) {
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let name = format!("{}/img_{i:02}.{}", ["a", "b/c", "d"][i % 3], if i % 2 == 0 { "png" } else { "jpg" });
            let bytes = if i % 2 == 0 {
                png(&picture(40 + i as u32, 40, i as u64))
            } else {
                jpeg(&picture(40, 40, i as u64), 90)
            };
            (name, bytes)
        })
        .chain([("d/empty.jpg".to_string(), Vec::new()), ("a/dup.png".to_string(), png(&picture(40, 40, 0)))])
        .collect();
    for &i in order {
        let (name, bytes) = &files[i];
        write(&root.join(name), bytes);
    }
}

#[test]
fn manifests_are_byte_identical_across_threads_and_creation_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("one/data"), tmp.path().join("two/data"));
    let forward: Vec<usize> = (0..14).collect();
    let shuffled: Vec<usize> = vec![13, 5, 0, 9, 12, 2, 7, 11, 1, 6, 3, 10, 4, 8];
    build_tree(&a, &forward);
    build_tree(&b, &shuffled);
    let run = |threads: &str, source: &Path, workdir: &Path| {
        let out = support::anime_pipe()
            .args(["-q", "-j", threads, "--workdir"])
            .arg(workdir)
            .args(["ingest", "--source"])
            .arg(source)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        fs::read(workdir.join("manifests/ingest.parquet")).unwrap()
    };
    let m1 = run("1", &a, &tmp.path().join("w1"));
    let m2 = run("2", &b, &tmp.path().join("w2"));
    assert_eq!(m1, m2);
    assert_eq!(rows(&tmp.path().join("w1"), "ingest").len(), 14);
}

#[test]
fn bad_config_and_unwritable_workdir_are_the_only_hard_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = support::anime_pipe()
        .args(["-q", "--workdir"])
        .arg(tmp.path().join("w"))
        .args(["ingest", "--source", "no/such/folder"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no/such/folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = support::anime_pipe()
        .args(["-q", "--workdir"])
        .arg(tmp.path().join("w"))
        .arg("ingest")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sources"), "{}", String::from_utf8_lossy(&out.stderr));

    fs::write(tmp.path().join("file"), b"x").unwrap();
    fs::create_dir(tmp.path().join("src")).unwrap();
    let out = support::anime_pipe()
        .args(["-q", "--workdir"])
        .arg(tmp.path().join("file/w"))
        .args(["ingest", "--source", "src"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sample_data_ingests_with_exactly_the_planted_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sample");
    let out = support::anime_pipe()
        .args(["-q", "sample-data"])
        .arg(&dir)
        .args(["--count", "12", "--seed", "5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = support::anime_pipe().args(["-q", "ingest"]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = rows(&dir, "ingest");
    let rejected: BTreeMap<&str, &str> =
        rows.iter().filter_map(|r| r.reason.as_deref().map(|reason| (r.key.as_str(), reason))).collect();
    let expected: BTreeMap<&str, &str> = [
        ("images/empty.jpg", "empty_file"),
        ("images/notes.jpg", "not_an_image"),
        ("images/truncated.jpg", "truncated"),
        ("zipped/../escape.png", "unsafe_archive_path"),
    ]
    .into();
    assert_eq!(rejected, expected);
    // 12 faces (8 in the folder, 4 in the zip), 12 planted files, the zip's copy and escape entries.
    assert_eq!(rows.len(), 12 + 12 + 2);
    let colour = |key: &str| rows.iter().find(|r| r.key == key).unwrap().color.clone().unwrap();
    assert_eq!(colour("images/grayscale.png"), "l8");
    assert_eq!(colour("images/deep16.png"), "rgb16");
    assert_eq!(colour("images/alpha.png"), "rgba8");
}

#[test]
fn real_getchu_zip_holds_19992_images_of_which_15896_distinct() {
    let Some(shared) = support::shared_dir() else { return };
    let work = tempfile::tempdir().unwrap();
    let yaml = "sources:\n  - {name: getchu, path: data/getchu64.zip, already_cropped: true}\n";
    let ctx = context(work.path(), &shared, yaml);
    let summary = ctx.run(Stage::Ingest).unwrap();
    let rows = rows(work.path(), "ingest");
    assert_eq!(rows.len(), 19_992);
    assert!(rows.iter().all(|r| r.status == "ok" && r.format.as_deref() == Some("jpeg")));
    assert!(rows.iter().all(|r| (r.width, r.height) == (Some(64), Some(64))));
    assert!(rows.iter().all(|r| r.path.starts_with("images/") && r.path.ends_with(".jpg")));
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.blake3.as_deref().unwrap()).collect();
    assert_eq!(distinct.len(), 15_896);
    assert_eq!(count(&summary, "unique images"), 15_896);
}

#[test]
fn real_folders_holoen256_and_illust_are_all_accepted() {
    let Some(shared) = support::shared_dir() else { return };
    let work = tempfile::tempdir().unwrap();
    let yaml = "sources:\n  - {name: holo, path: data/holoen256}\n  - {name: illust, path: data/illust}\n";
    let ctx = context(work.path(), &shared, yaml);
    ctx.run(Stage::Ingest).unwrap();
    let rows = rows(work.path(), "ingest");
    let holo: Vec<&Row> = rows.iter().filter(|r| r.source == "holo").collect();
    assert_eq!(holo.len(), 300);
    assert!(holo.iter().all(|r| r.status == "ok" && (r.width, r.height) == (Some(256), Some(256))));
    let illust: Vec<&Row> = rows.iter().filter(|r| r.source == "illust").collect();
    assert_eq!(illust.len(), 270);
    assert!(illust.iter().all(|r| r.status == "ok"));
    let grid = illust.iter().find(|r| r.path == "demo__grid36.jpg").unwrap();
    assert_eq!((grid.width, grid.height), (Some(3072), Some(3072)));
}
