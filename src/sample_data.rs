//! `anime-pipe sample-data DIR --count N --seed S`: a small synthetic dataset to try the pipeline on (README
//! demo, tests), with the problems real scraped collections have, planted on purpose.
//!
//! Written under DIR (same seed and count => the same bytes, on any machine with the same build):
//! - `images/face_NNNN.{png,jpg}`: about two thirds of the N cartoon faces (skin ellipse, hair blob and fringe, two
//!   coloured eyes, mouth; colours, sizes 64..=256 px and positions from a seeded ChaCha8 stream).
//! - `more_faces.zip`: the other faces under `faces/`, a byte-identical copy of `images/face_0003.jpg`
//!   (`copies/face_0003.jpg`) and an entry named `../escape.png` (unsafe path).
//! - planted trouble in `images/`: `copy_of_face_0000.png` (byte-identical copy), `face_0002_reencoded.webp`
//!   (same pixels as face_0002.png, lossless WebP), `face_0001_small.jpg` (resized near-duplicate), `empty.jpg`
//!   (0 bytes), `truncated.jpg` (a JPEG cut in half), `notes.jpg` (text), `tiny.png` (40x40), `banner.png`
//!   (400x64), `blurry.jpg`, `grayscale.png` (8-bit gray), `deep16.png` (16-bit RGB), `alpha.png` (RGBA,
//!   transparent background).
//! - `pipeline.yaml`: the two sources (`images`, `zipped`) with paths relative to DIR, and `stages:` through
//!   `train` (preset `demo`) and `eval`, so that `anime-pipe run` ends with a trained generator.
//!
//! Every trouble image that is not meant as a duplicate is drawn from its own extra face, so it is not a near
//! duplicate of a listed face.
use crate::report::Summary;
use crate::workdir::atomic_write;
use anyhow::{ensure, Context, Result};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};
use std::io::{Cursor, Write};
use std::path::Path;

/// The planted files in `images/` and what each one exercises.
pub const PLANTED: &[(&str, &str)] = &[
    ("copy_of_face_0000.png", "byte-identical copy of face_0000.png"),
    ("face_0002_reencoded.webp", "same pixels as face_0002.png, other format"),
    ("face_0001_small.jpg", "resized near-duplicate of face_0001.jpg"),
    ("empty.jpg", "zero-byte file"),
    ("truncated.jpg", "JPEG cut in half"),
    ("notes.jpg", "text file with an image extension"),
    ("tiny.png", "40x40 image"),
    ("banner.png", "400x64 image (aspect 6.25)"),
    ("blurry.jpg", "heavily blurred face"),
    ("grayscale.png", "8-bit grayscale face"),
    ("deep16.png", "16-bit RGB PNG"),
    ("alpha.png", "RGBA PNG with a transparent background"),
];

pub fn write(dir: &Path, count: usize, seed: u64) -> Result<Summary> {
    ensure!(count >= 4, "--count {count}: at least 4 faces are needed (the planted duplicates copy faces 0..=3)");
    let mut summary = Summary::start("sample-data");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).with_context(|| format!("cannot create {}", images.display()))?;
    let in_folder = count.div_ceil(3) * 2;
    let in_folder = in_folder.min(count);
    let mut gen = Gen::new(seed);
    let faces: Vec<RgbImage> = (0..count).map(|_| gen.face_sized()).collect();
    let mut folder_files = Vec::new();
    for (i, face) in faces.iter().enumerate().take(in_folder) {
        let (name, bytes) = face_file(i, face)?;
        atomic_write(&images.join(&name), &bytes)?;
        folder_files.push((name, bytes));
    }
    let zip_entries = write_zip(dir, &faces, in_folder, &folder_files)?;
    write_planted(&images, &mut gen, &faces, &folder_files)?;
    atomic_write(&dir.join("pipeline.yaml"), pipeline_yaml(count, seed).as_bytes())?;
    summary
        .count("faces", count as u64)
        .count("images/ faces", in_folder as u64)
        .count("more_faces.zip entries", zip_entries as u64)
        .count("planted files", PLANTED.len() as u64);
    for (name, what) in PLANTED {
        summary.fact(&format!("images/{name}"), what);
    }
    summary.fact("more_faces.zip", "copies/face_0003.jpg (exact copy), ../escape.png (unsafe path)");
    summary.fact("config", dir.join("pipeline.yaml").display());
    summary.fact("try", format!("anime-pipe --config {} run", dir.join("pipeline.yaml").display()));
    Ok(summary.finish())
}

/// Even faces as PNG, odd faces as JPEG (quality 90).
fn face_file(i: usize, face: &RgbImage) -> Result<(String, Vec<u8>)> {
    if i.is_multiple_of(2) {
        Ok((format!("face_{i:04}.png"), encode(&DynamicImage::ImageRgb8(face.clone()), ImageFormat::Png)?))
    } else {
        Ok((format!("face_{i:04}.jpg"), jpeg(face, 90)?))
    }
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).with_context(|| format!("cannot encode {format:?}"))?;
    Ok(out.into_inner())
}

fn jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(img)?;
    Ok(out)
}

fn write_zip(dir: &Path, faces: &[RgbImage], first: usize, folder: &[(String, Vec<u8>)]) -> Result<usize> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut entries = 0;
    let mut add = |zip: &mut zip::ZipWriter<Cursor<Vec<u8>>>, name: &str, bytes: &[u8]| -> Result<()> {
        zip.start_file(name, options)?;
        zip.write_all(bytes)?;
        entries += 1;
        Ok(())
    };
    for (i, face) in faces.iter().enumerate().skip(first) {
        let (name, bytes) = face_file(i, face)?;
        add(&mut zip, &format!("faces/{name}"), &bytes)?;
    }
    let (name, bytes) = &folder[3];
    add(&mut zip, &format!("copies/{name}"), bytes)?;
    add(&mut zip, "../escape.png", &folder[0].1)?;
    let bytes = zip.finish()?.into_inner();
    atomic_write(&dir.join("more_faces.zip"), &bytes)?;
    Ok(entries)
}

fn write_planted(images: &Path, gen: &mut Gen, faces: &[RgbImage], folder: &[(String, Vec<u8>)]) -> Result<()> {
    let put = |name: &str, bytes: &[u8]| atomic_write(&images.join(name), bytes);
    put("copy_of_face_0000.png", &folder[0].1)?;
    put("face_0002_reencoded.webp", &encode(&DynamicImage::ImageRgb8(faces[2].clone()), ImageFormat::WebP)?)?;
    let f1 = &faces[1];
    let small =
        image::imageops::resize(f1, f1.width() * 3 / 4, f1.height() * 3 / 4, image::imageops::FilterType::Triangle);
    put("face_0001_small.jpg", &jpeg(&small, 90)?)?;
    put("empty.jpg", b"")?;
    let whole = jpeg(&gen.face(160, 160), 90)?;
    put("truncated.jpg", &whole[..whole.len() / 2])?;
    put("notes.jpg", b"These are not pixels. Scrapers save error pages and notes under image names.\n")?;
    put("tiny.png", &encode(&DynamicImage::ImageRgb8(gen.face(40, 40)), ImageFormat::Png)?)?;
    put("banner.png", &encode(&DynamicImage::ImageRgb8(gen.face(400, 64)), ImageFormat::Png)?)?;
    let blurry = image::imageops::blur(&gen.face(160, 160), 4.0);
    put("blurry.jpg", &jpeg(&blurry, 90)?)?;
    let gray = DynamicImage::ImageRgb8(gen.face(128, 128)).into_luma8();
    put("grayscale.png", &encode(&DynamicImage::ImageLuma8(gray), ImageFormat::Png)?)?;
    let deep = DynamicImage::ImageRgb8(gen.face(96, 96)).into_rgb16();
    put("deep16.png", &encode(&DynamicImage::ImageRgb16(deep), ImageFormat::Png)?)?;
    put("alpha.png", &encode(&DynamicImage::ImageRgba8(gen.face_on_transparent(112)), ImageFormat::Png)?)?;
    Ok(())
}

fn pipeline_yaml(count: usize, seed: u64) -> String {
    format!(
        "# Written by `anime-pipe sample-data --count {count} --seed {seed}`: synthetic faces with planted problems.\n\
         # Source paths are relative to this file. See README.md for every key.\n\
         sources:\n  - name: images\n    path: images\n  - name: zipped\n    path: more_faces.zip\n\
         # The data stages, then training (`run` skips it when this config already trained on this dataset) and\n\
         # FID/KID (skipped, saying so, without models.fid_inception).\n\
         stages: [ingest, dedup, clean, pack, train, eval]\n\
         train:\n  preset: demo   # small: a few minutes on 2 CPU cores (see train::presets)\n\
         eval:\n  samples: 256   # FID/KID on few samples: a demo, not a benchmark\n  kid_subsets: 10\n  kid_subset_size: 100\n"
    )
}

/// The drawing parameters come from a ChaCha8 stream through `next_u64` only (no distribution code whose
/// algorithm could change between `rand` versions), so a seed always means the same faces.
struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn size(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.rng.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    /// A colour with the given saturation/value ranges and a random hue.
    fn colour(&mut self, sat: (f64, f64), val: (f64, f64)) -> [f64; 3] {
        let (h, s, v) = (self.unit() * 6.0, self.range(sat.0, sat.1), self.range(val.0, val.1));
        let f = h - h.floor();
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let rgb = match h as u32 {
            0 => [v, t, p],
            1 => [q, v, p],
            2 => [p, v, t],
            3 => [p, q, v],
            4 => [t, p, v],
            _ => [v, p, q],
        };
        rgb.map(|c| c * 255.0)
    }

    fn face_sized(&mut self) -> RgbImage {
        let side = self.size(64, 256);
        self.face(side, side)
    }

    fn face(&mut self, w: u32, h: u32) -> RgbImage {
        let spec = self.face_spec();
        let background = self.colour((0.1, 0.5), (0.6, 1.0));
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = ((x as f64 + 0.5) / w as f64, (y as f64 + 0.5) / h as f64);
            let c = spec.shade(fx, fy, w.min(h) as f64, background).0;
            Rgb(c.map(|v| v.round().clamp(0.0, 255.0) as u8))
        })
    }

    /// A face whose background is fully transparent (alpha = coverage of the drawing).
    fn face_on_transparent(&mut self, side: u32) -> image::RgbaImage {
        let spec = self.face_spec();
        image::RgbaImage::from_fn(side, side, |x, y| {
            let (fx, fy) = ((x as f64 + 0.5) / side as f64, (y as f64 + 0.5) / side as f64);
            let (c, coverage) = spec.shade(fx, fy, side as f64, [0.0; 3]);
            // Un-premultiply: `shade` blended over black.
            let a = coverage.max(1e-6);
            let rgb = c.map(|v| (v / a).round().clamp(0.0, 255.0) as u8);
            image::Rgba([rgb[0], rgb[1], rgb[2], (coverage * 255.0).round() as u8])
        })
    }

    fn face_spec(&mut self) -> FaceSpec {
        let cx = self.range(0.42, 0.58);
        let cy = self.range(0.5, 0.62);
        let (rx, ry) = (self.range(0.24, 0.32), self.range(0.28, 0.36));
        let eye_dx = self.range(0.09, 0.13);
        let eye_y = cy - self.range(0.0, 0.06);
        let (eye_rx, eye_ry) = (self.range(0.045, 0.065), self.range(0.06, 0.09));
        FaceSpec {
            hair: Ellipse { cx, cy: cy - ry * 0.35, rx: rx * self.range(1.25, 1.5), ry: ry * self.range(1.1, 1.35) },
            skin: Ellipse { cx, cy, rx, ry },
            fringe: Ellipse { cx, cy: cy - ry * 0.85, rx: rx * 1.05, ry: ry * self.range(0.35, 0.5) },
            eyes: [
                Ellipse { cx: cx - eye_dx, cy: eye_y, rx: eye_rx, ry: eye_ry },
                Ellipse { cx: cx + eye_dx, cy: eye_y, rx: eye_rx, ry: eye_ry },
            ],
            mouth: Ellipse {
                cx,
                cy: cy + ry * self.range(0.45, 0.6),
                rx: self.range(0.03, 0.07),
                ry: self.range(0.012, 0.03),
            },
            hair_colour: self.colour((0.3, 1.0), (0.25, 0.95)),
            skin_colour: [self.range(235.0, 255.0), self.range(200.0, 225.0), self.range(175.0, 205.0)],
            eye_colour: self.colour((0.6, 1.0), (0.4, 0.9)),
            mouth_colour: [self.range(170.0, 220.0), self.range(50.0, 90.0), self.range(60.0, 100.0)],
        }
    }
}

struct Ellipse {
    cx: f64,
    cy: f64,
    rx: f64,
    ry: f64,
}

impl Ellipse {
    /// Coverage in [0, 1] of the pixel at (x, y) (unit coordinates), antialiased over about one pixel.
    fn coverage(&self, x: f64, y: f64, pixels: f64) -> f64 {
        let d = (((x - self.cx) / self.rx).powi(2) + ((y - self.cy) / self.ry).powi(2)).sqrt();
        let edge_px = (d - 1.0) * self.rx.min(self.ry) * pixels;
        (0.5 - edge_px).clamp(0.0, 1.0)
    }
}

struct FaceSpec {
    hair: Ellipse,
    skin: Ellipse,
    fringe: Ellipse,
    eyes: [Ellipse; 2],
    mouth: Ellipse,
    hair_colour: [f64; 3],
    skin_colour: [f64; 3],
    eye_colour: [f64; 3],
    mouth_colour: [f64; 3],
}

impl FaceSpec {
    /// Colour at (x, y) painted over `background`, and the total coverage of the drawing there.
    fn shade(&self, x: f64, y: f64, pixels: f64, background: [f64; 3]) -> ([f64; 3], f64) {
        let mut c = background;
        let mut covered = 0.0f64;
        let mut paint = |shape: &Ellipse, colour: [f64; 3]| {
            let a = shape.coverage(x, y, pixels);
            for i in 0..3 {
                c[i] = c[i] * (1.0 - a) + colour[i] * a;
            }
            covered = covered + a - covered * a;
        };
        paint(&self.hair, self.hair_colour);
        paint(&self.skin, self.skin_colour);
        // The fringe only over the top half of the face.
        if y < self.skin.cy {
            paint(&self.fringe, self.hair_colour);
        }
        for eye in &self.eyes {
            paint(eye, [250.0, 250.0, 250.0]);
            let iris = Ellipse { cx: eye.cx, cy: eye.cy + eye.ry * 0.15, rx: eye.rx * 0.75, ry: eye.ry * 0.75 };
            paint(&iris, self.eye_colour);
            let glint =
                Ellipse { cx: eye.cx - eye.rx * 0.3, cy: eye.cy - eye.ry * 0.3, rx: eye.rx * 0.22, ry: eye.rx * 0.22 };
            paint(&glint, [255.0, 255.0, 255.0]);
        }
        paint(&self.mouth, self.mouth_colour);
        (c, covered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().to_string();
                (rel, std::fs::read(e.path()).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_faces() {
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(a.path(), 6, 7).unwrap();
        write(b.path(), 6, 7).unwrap();
        write(c.path(), 6, 8).unwrap();
        let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
        assert_eq!(fa, fb);
        let names: Vec<&String> = fa.iter().map(|f| &f.0).collect();
        assert_eq!(names, fc.iter().map(|f| &f.0).collect::<Vec<_>>());
        let face = |f: &[(String, Vec<u8>)]| f.iter().find(|x| x.0 == "images/face_0000.png").unwrap().1.clone();
        assert_ne!(face(&fa), face(&fc));
    }

    #[test]
    fn layout_and_planted_files_are_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let summary = write(dir.path(), 9, 1).unwrap();
        let d = dir.path();
        // 9 faces: ceil(9/3)*2 = 6 in the folder, 3 in the zip.
        for i in 0..6 {
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            assert!(d.join(format!("images/face_{i:04}.{ext}")).is_file(), "face {i}");
        }
        assert!(!d.join("images/face_0006.png").exists());
        for (name, _) in PLANTED {
            assert!(d.join("images").join(name).is_file(), "{name}");
        }
        assert_eq!(
            std::fs::read(d.join("images/copy_of_face_0000.png")).unwrap(),
            std::fs::read(d.join("images/face_0000.png")).unwrap()
        );
        assert_eq!(std::fs::metadata(d.join("images/empty.jpg")).unwrap().len(), 0);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(d.join("more_faces.zip")).unwrap()).unwrap();
        let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        assert_eq!(
            names,
            [
                "faces/face_0006.png",
                "faces/face_0007.jpg",
                "faces/face_0008.png",
                "copies/face_0003.jpg",
                "../escape.png"
            ]
        );
        let mut copy = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name("copies/face_0003.jpg").unwrap(), &mut copy).unwrap();
        assert_eq!(copy, std::fs::read(d.join("images/face_0003.jpg")).unwrap());
        let yaml = std::fs::read_to_string(d.join("pipeline.yaml")).unwrap();
        let config = crate::config::ConfigFile::parse(&yaml, Path::new("pipeline.yaml")).unwrap();
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[1].path, Path::new("more_faces.zip"));
        let resolved = config.resolve(d).unwrap();
        assert_eq!(resolved.train.preset, "demo");
        assert_eq!(resolved.after, [crate::config::AfterStage::Train, crate::config::AfterStage::Eval]);
        assert!(summary.counts.contains(&("faces".to_string(), 9)));
    }

    #[test]
    fn trouble_images_have_the_advertised_properties() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 4, 3).unwrap();
        let img = |name: &str| image::open(dir.path().join("images").join(name)).unwrap();
        assert_eq!(img("tiny.png").width(), 40);
        assert_eq!((img("banner.png").width(), img("banner.png").height()), (400, 64));
        assert_eq!(img("grayscale.png").color(), image::ColorType::L8);
        assert_eq!(img("deep16.png").color(), image::ColorType::Rgb16);
        let alpha = img("alpha.png").into_rgba8();
        assert_eq!(alpha.get_pixel(0, 0)[3], 0, "corner is transparent");
        assert_eq!(alpha.get_pixel(56, 60)[3], 255, "centre is opaque");
        assert_eq!(img("face_0002_reencoded.webp").into_rgb8(), img("face_0002.png").into_rgb8());
        for side in [64u32, 256] {
            let mut g = Gen::new(1);
            let f = g.face(side, side);
            assert_eq!(f.dimensions(), (side, side));
        }
        let sizes: Vec<u32> = {
            let mut g = Gen::new(5);
            (0..50).map(|_| g.face_sized().width()).collect()
        };
        assert!(sizes.iter().all(|s| (64..=256).contains(s)));
    }
}
