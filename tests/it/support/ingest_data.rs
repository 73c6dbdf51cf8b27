//! Helpers shared by the ingest and dedup integration tests: contexts from a pipeline.yaml text, typed manifest
//! rows, image encoders and synthetic faces.
use super::Ctx;
use anime_pipe::manifest::columns;
use anime_pipe::manifest::read_parquet;
use anime_pipe::report::Summary;
use image::{DynamicImage, ImageFormat, RgbImage};
use std::io::Write;
use std::path::Path;

/// A context whose config is `yaml`, with relative paths resolved against `base`, working in `workdir`.
pub fn context(workdir: &Path, base: &Path, yaml: &str) -> Ctx {
    Ctx::new(workdir, base, yaml, 2)
}

/// A `sources:` block with one source per (name, path).
pub fn sources_yaml(sources: &[(&str, &Path)]) -> String {
    let mut yaml = String::from("sources:\n");
    for (name, path) in sources {
        yaml.push_str(&format!("  - name: {name}\n    path: {:?}\n", path.to_str().unwrap()));
    }
    yaml
}

pub fn count(summary: &Summary, what: &str) -> u64 {
    summary.counts.iter().find(|(k, _)| k == what).unwrap_or_else(|| panic!("no count {what:?}")).1
}

/// One manifest row, with the columns these tests look at (absent columns read as None).
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub key: String,
    pub source: String,
    pub path: String,
    pub path_hex: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub format: Option<String>,
    pub color: Option<String>,
    pub frames: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub blake3: Option<String>,
    pub object: Option<String>,
    pub duplicate_of: Option<String>,
    pub dup_kind: Option<String>,
    pub hamming: Option<u32>,
}

pub fn rows(workdir: &Path, stage: &str) -> Vec<Row> {
    let df = read_parquet(&workdir.join(format!("manifests/{stage}.parquet"))).unwrap();
    let s = |name: &str| {
        if columns::has(&df, name) {
            columns::opt_strings(&df, name).unwrap()
        } else {
            vec![None; df.height()]
        }
    };
    let u = |name: &str| {
        if columns::has(&df, name) {
            columns::opt_u32s(&df, name).unwrap()
        } else {
            vec![None; df.height()]
        }
    };
    let (key, source, path, path_hex, status, reason) =
        (s("key"), s("source"), s("path"), s("path_hex"), s("status"), s("reason"));
    let (format, color, blake3, object, duplicate_of, dup_kind) =
        (s("format"), s("color"), s("blake3"), s("object"), s("duplicate_of"), s("dup_kind"));
    let (frames, width, height, hamming) = (u("frames"), u("width"), u("height"), u("hamming"));
    (0..df.height())
        .map(|i| Row {
            key: key[i].clone().unwrap(),
            source: source[i].clone().unwrap(),
            path: path[i].clone().unwrap(),
            path_hex: path_hex[i].clone(),
            status: status[i].clone().unwrap(),
            reason: reason[i].clone(),
            format: format[i].clone(),
            color: color[i].clone(),
            frames: frames[i],
            width: width[i],
            height: height[i],
            blake3: blake3[i].clone(),
            object: object[i].clone(),
            duplicate_of: duplicate_of[i].clone(),
            dup_kind: dup_kind[i].clone(),
            hamming: hamming[i],
        })
        .collect()
}

pub fn by_path<'a>(rows: &'a [Row], path: &str) -> &'a Row {
    rows.iter().find(|r| r.path == path).unwrap_or_else(|| panic!("no row with path {path:?}"))
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub fn png(img: &RgbImage) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(img.clone()), ImageFormat::Png)
}

pub fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(img).unwrap();
    out
}

/// A smooth synthetic picture that differs per `seed` in colours and layout (ellipses over a gradient).
pub fn picture(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let bg = [next() * 255.0, next() * 255.0, next() * 255.0];
    let blobs: Vec<(f64, f64, f64, [f64; 3])> = (0..5)
        .map(|_| (next(), next(), 0.1 + next() * 0.3, [next() * 255.0, next() * 255.0, next() * 255.0]))
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
        let mut c = [bg[0] * (1.0 - fy * 0.5), bg[1] * (0.5 + fx * 0.5), bg[2]];
        for (cx, cy, r, col) in &blobs {
            let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt();
            let a = ((r - d) * 40.0).clamp(0.0, 1.0);
            for i in 0..3 {
                c[i] = c[i] * (1.0 - a) + col[i] * a;
            }
        }
        image::Rgb(c.map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}

/// A zip of (name, bytes) entries; a name ending in '/' is a directory entry.
pub fn zip_bytes(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        if name.ends_with('/') {
            zip.add_directory(name.trim_end_matches('/'), options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A tar with raw entry names (the tar crate's path setters refuse `..`, which is the point here).
pub fn tar_bytes(entries: &[(&[u8], &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes, kind) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(bytes.len() as u64);
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            header.set_link_name("a.png").unwrap();
        }
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}
