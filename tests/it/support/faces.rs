//! Workdirs for the crop/upscale tests: images stored in the cache and a dedup.parquet with the contract's columns
//! published directly (no ingest/dedup run), plus small readers for manifest columns.
use super::Ctx;
use anime_pipe::manifest::{publish_stage, read_parquet};
use anime_pipe::stages::ingest::Source;
use anime_pipe::workdir::Workdir;
use polars::prelude::*;
use std::path::Path;

/// A context on a fresh workdir with the settings of `yaml` (relative paths resolve against the checkout, so the
/// default model paths find ../shared/models).
pub fn context(dir: &Path, yaml: &str, threads: usize) -> Ctx {
    Ctx::new(dir, Path::new(env!("CARGO_MANIFEST_DIR")), yaml, threads)
}

/// An image file entering the fixture dedup manifest.
pub struct Input {
    pub source: &'static str,
    pub path: String,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub status: &'static str,
}

impl Input {
    pub fn new(source: &'static str, path: &str, bytes: Vec<u8>) -> Self {
        let (width, height) = image::load_from_memory(&bytes).map(|i| (i.width(), i.height())).unwrap_or((1, 1));
        Self { source, path: path.into(), bytes, width, height, status: "ok" }
    }
    pub fn file(source: &'static str, path: &Path) -> Self {
        Self::new(source, &path.file_name().unwrap().to_string_lossy(), std::fs::read(path).unwrap())
    }
    pub fn key(&self) -> String {
        format!("{}/{}", self.source, self.path)
    }
    pub fn object(&self) -> String {
        blake3::hash(&self.bytes).to_hex().to_string()
    }
}

/// Registers the sources (in order of first appearance) in the settings, stores the bytes and publishes
/// dedup.parquet. `cropped` names the sources that are `already_cropped`.
pub fn publish_dedup(ctx: &mut Ctx, inputs: &[Input], cropped: &[&str]) {
    let mut names: Vec<&str> = Vec::new();
    for i in inputs {
        if !names.contains(&i.source) {
            names.push(i.source);
        }
    }
    ctx.plan.sources = names
        .iter()
        .map(|n| Source { name: n.to_string(), path: "/nowhere".into(), already_cropped: cropped.contains(n) })
        .collect();
    for i in inputs {
        anime_pipe::cache::store_object(&ctx.workdir, &i.bytes).unwrap();
    }
    let index = |i: &Input| names.iter().position(|n| *n == i.source).unwrap() as u32;
    let mut df = DataFrame::new(
        inputs.len(),
        vec![
            Column::new("key".into(), inputs.iter().map(Input::key).collect::<Vec<_>>()),
            Column::new("source".into(), inputs.iter().map(|i| i.source).collect::<Vec<_>>()),
            Column::new("source_index".into(), inputs.iter().map(index).collect::<Vec<_>>()),
            Column::new("path".into(), inputs.iter().map(|i| i.path.clone()).collect::<Vec<_>>()),
            Column::new("object".into(), inputs.iter().map(Input::object).collect::<Vec<_>>()),
            Column::new("width".into(), inputs.iter().map(|i| i.width).collect::<Vec<_>>()),
            Column::new("height".into(), inputs.iter().map(|i| i.height).collect::<Vec<_>>()),
            Column::new("status".into(), inputs.iter().map(|i| i.status).collect::<Vec<_>>()),
        ]
        .into_iter()
        .chain(super::measure_columns(&inputs.iter().map(|i| i.bytes.as_slice()).collect::<Vec<_>>()))
        .collect(),
    )
    .unwrap();
    publish_stage(&ctx.workdir, "dedup", &mut df, "fixture").unwrap();
}

pub fn read_stage(workdir: &Workdir, stage: &str) -> DataFrame {
    read_parquet(&workdir.manifest_path(stage)).unwrap()
}

pub fn strs(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

pub fn u32s(df: &DataFrame, name: &str) -> Vec<Option<u32>> {
    df.column(name).unwrap().cast(&DataType::UInt32).unwrap().u32().unwrap().iter().collect()
}

pub fn i64s(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    df.column(name).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().iter().collect()
}

pub fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect()
}

/// Decodes a cache object.
pub fn object_image(workdir: &Workdir, object: &str) -> image::RgbImage {
    image::load_from_memory(&anime_pipe::cache::read_object(workdir, object).unwrap()).unwrap().to_rgb8()
}

pub fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

/// Runs `f` on a dedicated rayon pool of `threads` threads.
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}
