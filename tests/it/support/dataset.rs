//! Builds workdirs for the clean/pack/stats/verify tests without running ingest or dedup: synthetic images are
//! stored with `cache::store_object` and an input manifest with the contract's columns is published directly.
use super::Ctx;
use anime_pipe::manifest::{publish_stage, read_parquet};
use anime_pipe::workdir::Workdir;
use image::{Rgb, RgbImage};
use polars::prelude::*;
use std::path::Path;

/// A context on a fresh workdir with default settings (tests adjust `ctx.plan` directly).
pub fn context(dir: &Path) -> Ctx {
    Ctx::new(dir, dir, "{}", 1)
}

/// Runs `f` on a dedicated rayon pool of `threads` threads.
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

/// Deterministic xorshift noise.
pub struct Noise(u64);
impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u8(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u8
    }
}

pub fn noise_rgb(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut n = Noise::new(seed);
    RgbImage::from_fn(w, h, |_, _| Rgb([n.next_u8(), n.next_u8(), n.next_u8()]))
}

pub fn noise_gray(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut n = Noise::new(seed);
    RgbImage::from_fn(w, h, |_, _| {
        let v = n.next_u8();
        Rgb([v, v, v])
    })
}

pub fn flat(w: u32, h: u32, rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(rgb))
}

pub fn png(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

/// One input item of the fixture manifests.
#[derive(Clone)]
pub struct Item {
    pub source_index: u32,
    pub path: String,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub status: &'static str,
}

impl Item {
    pub fn image(source_index: u32, path: &str, image: &RgbImage) -> Self {
        let (width, height) = image.dimensions();
        Self { source_index, path: path.into(), bytes: png(image), width, height, status: "ok" }
    }
    pub fn source(&self) -> String {
        format!("src{}", self.source_index)
    }
    pub fn key(&self) -> String {
        format!("{}/{}", self.source(), self.path)
    }
    pub fn object(&self) -> String {
        blake3::hash(&self.bytes).to_hex().to_string()
    }
}

/// Stores the items' bytes and publishes dedup.parquet with the contract's columns, rows in the given order (so
/// tests can check that consumers sort).
pub fn publish_dedup(workdir: &Workdir, items: &[Item]) {
    for item in items {
        anime_pipe::cache::store_object(workdir, &item.bytes).unwrap();
    }
    let n = items.len();
    let dup = |i: &Item| if i.status == "duplicate" { Some(i.key()) } else { None };
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("key".into(), items.iter().map(Item::key).collect::<Vec<_>>()),
            Column::new("source".into(), items.iter().map(Item::source).collect::<Vec<_>>()),
            Column::new("source_index".into(), items.iter().map(|i| i.source_index).collect::<Vec<_>>()),
            Column::new("path".into(), items.iter().map(|i| i.path.clone()).collect::<Vec<_>>()),
            Column::new("object".into(), items.iter().map(Item::object).collect::<Vec<_>>()),
            Column::new("width".into(), items.iter().map(|i| i.width).collect::<Vec<_>>()),
            Column::new("height".into(), items.iter().map(|i| i.height).collect::<Vec<_>>()),
            Column::new("status".into(), items.iter().map(|i| i.status).collect::<Vec<_>>()),
            Column::new("reason".into(), items.iter().map(|i| dup(i).map(|_| "duplicate")).collect::<Vec<_>>()),
            Column::new("duplicate_of".into(), items.iter().map(dup).collect::<Vec<_>>()),
            Column::new(
                "dup_kind".into(),
                items.iter().map(|i| dup(i).map(|_| "exact_pixels")).collect::<Vec<Option<&str>>>(),
            ),
            Column::new("hamming".into(), vec![None::<u32>; n]),
        ]
        .into_iter()
        .chain(super::measure_columns(&items.iter().map(|i| i.bytes.as_slice()).collect::<Vec<_>>()))
        .collect(),
    )
    .unwrap();
    publish_stage(workdir, "dedup", &mut df, "fixture").unwrap();
}

/// Stores the items' bytes and publishes a minimal clean.parquet (every item accepted): what pack reads.
pub fn publish_clean(workdir: &Workdir, items: &[Item]) {
    for item in items {
        anime_pipe::cache::store_object(workdir, &item.bytes).unwrap();
    }
    let mut df = DataFrame::new(
        items.len(),
        vec![
            Column::new("key".into(), items.iter().map(Item::key).collect::<Vec<_>>()),
            Column::new("source".into(), items.iter().map(Item::source).collect::<Vec<_>>()),
            Column::new("source_index".into(), items.iter().map(|i| i.source_index).collect::<Vec<_>>()),
            Column::new("path".into(), items.iter().map(|i| i.path.clone()).collect::<Vec<_>>()),
            Column::new("object".into(), items.iter().map(Item::object).collect::<Vec<_>>()),
            Column::new("width".into(), items.iter().map(|i| i.width).collect::<Vec<_>>()),
            Column::new("height".into(), items.iter().map(|i| i.height).collect::<Vec<_>>()),
            Column::new("status".into(), items.iter().map(|i| i.status).collect::<Vec<_>>()),
        ],
    )
    .unwrap();
    publish_stage(workdir, "clean", &mut df, "fixture").unwrap();
}

pub fn read_stage(workdir: &Workdir, stage: &str) -> DataFrame {
    read_parquet(&workdir.manifest_path(stage)).unwrap()
}

pub fn strs(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name).unwrap().str().unwrap().iter().map(|v| v.map(str::to_string)).collect()
}

pub fn u32s(df: &DataFrame, name: &str) -> Vec<Option<u32>> {
    df.column(name).unwrap().u32().unwrap().iter().collect()
}

pub fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().f64().unwrap().iter().collect()
}

/// Every file under `dir` (relative path -> bytes), for byte-for-byte comparisons of two workdirs.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()))
        .collect()
}
