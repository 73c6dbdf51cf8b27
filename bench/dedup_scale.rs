//! Scale benchmarks for dedup (run by `bench/dedup_scale.sh`, release build):
//!
//! - `near N [Q]`: the near-duplicate search over N 64-bit hashes: `near_pairs` at 6 bits (the whole-image search)
//!   and `near_matches` of 16 window hashes per item (of the first Q items; default all) against them at 8 bits
//!   (the crop search). Hashes are
//!   synthetic: 90% uniform random, 10% copies of an earlier hash with 0..8 bits flipped; each item's windows are
//!   its hash with 2..12 bits flipped (what a window of a real image looks like: a few to a dozen bits off).
//! - `ingest WORKDIR N`: writes a workdir whose `manifests/ingest.parquet` has N accepted rows with real measures
//!   of N generated pictures, so that `anime-pipe dedup` there is the real stage over N items. Each picture is a
//!   2x2 mosaic of quadrants of four random Getchu faces (each quadrant maybe mirrored); 10% are instead a copy
//!   of an earlier picture cropped by 0..10% per side and resized to 50..100%. Measures: `anime_pipe::measure`.
use anime_pipe::imagehash::{near_matches, near_pairs, WINDOWS};
use anime_pipe::manifest::columns::{col, frame};
use anime_pipe::manifest::{measure_columns, publish_stage};
use anime_pipe::workdir::Workdir;
use image::RgbImage;
use rayon::prelude::*;
use std::io::Read;
use std::time::Instant;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `h` with `k` distinct bits flipped, chosen by `seed`.
fn flip(h: u64, k: u32, seed: u64) -> u64 {
    let (mut out, mut s) = (h, seed);
    while (out ^ h).count_ones() < k {
        s = splitmix(s);
        out ^= 1 << (s % 64);
        if (out ^ h).count_ones() > k {
            out ^= 1 << (s % 64);
        }
    }
    out
}

/// `n` hashes; the crop search queries the windows of the first `query_items` of them.
fn near(n: usize, query_items: usize) {
    let hashes: Vec<u64> = (0..n as u64)
        .map(|i| {
            let r = splitmix(i);
            if i > 0 && r.is_multiple_of(10) {
                flip(splitmix(r % i), (r >> 8) as u32 % 9, r)
            } else {
                r
            }
        })
        .collect();
    let t = Instant::now();
    let pairs = near_pairs(&hashes, 6);
    println!("near_pairs: {n} hashes, 6 bits: {} pairs in {:.1} s", pairs.len(), t.elapsed().as_secs_f64());
    drop(pairs);
    let queries: Vec<u64> = (0..query_items.min(n) * WINDOWS)
        .into_par_iter()
        .map(|q| {
            let s = splitmix(q as u64 ^ 0xABCD);
            flip(hashes[q / WINDOWS], 2 + (s % 11) as u32, s)
        })
        .collect();
    let t = Instant::now();
    let matches = near_matches(&hashes, &queries, 8);
    println!(
        "near_matches: {} window queries against {n} hashes, 8 bits: {} matches in {:.1} s",
        queries.len(),
        matches.len(),
        t.elapsed().as_secs_f64()
    );
}

/// The distinct faces of getchu64.zip, decoded.
fn faces(zip_path: &str) -> Vec<RgbImage> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut bytes = Vec::new();
        archive.by_index(i).unwrap().read_to_end(&mut bytes).unwrap();
        if bytes.len() > 100 && seen.insert(blake3::hash(&bytes)) {
            if let Ok(img) = image::load_from_memory(&bytes) {
                out.push(img.to_rgb8());
            }
        }
    }
    out
}

fn mosaic(faces: &[RgbImage], seed: u64) -> RgbImage {
    let mut s = seed;
    let mut next = || {
        s = splitmix(s);
        s
    };
    let picks: Vec<(usize, bool)> = (0..4).map(|_| (next() as usize % faces.len(), next() % 2 == 0)).collect();
    RgbImage::from_fn(64, 64, |x, y| {
        let (f, mirror) = picks[(y as usize / 32) * 2 + x as usize / 32];
        let face = &faces[f];
        let (fx, fy) = (x.min(face.width() - 1), y.min(face.height() - 1));
        *face.get_pixel(if mirror { face.width() - 1 - fx } else { fx }, fy)
    })
}

fn copy_of(img: &RgbImage, seed: u64) -> RgbImage {
    let r = |k: u64, m: u64| splitmix(seed ^ k) % m;
    let (l, rt, t, b) = (r(1, 7) as u32, r(2, 7) as u32, r(3, 7) as u32, r(4, 7) as u32);
    let cropped = image::imageops::crop_imm(img, l, t, 64 - l - rt, 64 - t - b).to_image();
    let percent = 50 + r(5, 51) as u32;
    let side = |v: u32| (v * percent).div_ceil(100);
    image::imageops::resize(
        &cropped,
        side(cropped.width()),
        side(cropped.height()),
        image::imageops::FilterType::Triangle,
    )
}

fn ingest(dir: &str, n: usize) {
    let faces = faces("../shared/data/getchu64.zip");
    eprintln!("{} distinct faces", faces.len());
    let t = Instant::now();
    let measured: Vec<(u32, u32, anime_pipe::measure::Measures)> = (0..n as u64)
        .into_par_iter()
        .map(|i| {
            let img = if i > 0 && splitmix(i ^ 77).is_multiple_of(10) {
                copy_of(&mosaic(&faces, splitmix(i ^ 99) % i), i)
            } else {
                mosaic(&faces, i)
            };
            (img.width(), img.height(), anime_pipe::measure::measure(img))
        })
        .collect();
    eprintln!("measured {n} pictures in {:.1} s", t.elapsed().as_secs_f64());
    std::fs::create_dir_all(format!("{dir}/data")).unwrap();
    std::fs::write(format!("{dir}/pipeline.yaml"), "sources:\n  - {name: gen, path: data}\n").unwrap();
    let workdir = Workdir::open(std::path::Path::new(dir)).unwrap();
    let paths: Vec<String> = (0..n).map(|i| format!("pictures/{i:08}.png")).collect();
    let columns = vec![
        col("key", paths.iter().map(|p| format!("gen/{p}")).collect::<Vec<_>>()),
        col("source", vec!["gen"; n]),
        col("source_index", vec![0u32; n]),
        col("path", paths.clone()),
        col("object", (0..n).map(|i| blake3::hash(&i.to_le_bytes()).to_hex().to_string()).collect::<Vec<_>>()),
        col("width", measured.iter().map(|m| m.0).collect::<Vec<u32>>()),
        col("height", measured.iter().map(|m| m.1).collect::<Vec<u32>>()),
        col("status", vec!["ok"; n]),
    ];
    let mut df =
        frame(n, columns.into_iter().chain(measure_columns(measured.iter().map(|m| Some(&m.2)))).collect()).unwrap();
    publish_stage(&workdir, "ingest", &mut df, "generated").unwrap();
    eprintln!("wrote {dir}/manifests/ingest.parquet ({n} rows)");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("near") => near(args[2].parse().unwrap(), args.get(3).map_or(usize::MAX, |q| q.parse().unwrap())),
        Some("ingest") => ingest(&args[2], args[3].parse().unwrap()),
        _ => eprintln!("usage: dedup_scale near N [QUERY_ITEMS] | dedup_scale ingest WORKDIR N"),
    }
}
