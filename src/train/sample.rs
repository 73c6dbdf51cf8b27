//! Generator inference and `anime-pipe sample`: latents, image grids, latent-space walks, PNG output.
//!
//! **The exported generator** (`runs/<name>/generator.onnx`, `checkpoints/*.generator.onnx`; built by
//! `gan::steps::generator_inference`): input `z` f32 `[n, nz]`, outputs `image` f32 `[n, 3, S, S]` in [-1, 1]
//! and `image_u8` u8 `[n, S, S, 3]` = `floor((x + 1) * 127.5 + 0.5)`. Batch norm runs in evaluation mode, so
//! every image depends on its own latent only; the batch size `n` is static (ONNX shapes here are), and
//! [`Generator::generate`] runs any number of latents in chunks of `n`, zero-padding the last. Other generators
//! work too (a PyTorch export with a float output and `[B, nz, 1, 1]` latents, a dynamic batch): the contract is
//! `eval::generator`'s, so `sample` and `eval` accept the same models.
//!
//! **Latents** ([`latents`]): standard normal f32 drawn in row-major order from `ChaCha8Rng::seed_from_u64(seed)`
//! with `rand_distr::StandardNormal`; `--save-latents` writes them as `.npy` so other tools can reuse them.
//!
//! **Walks** (`--interpolate K`): each row goes from one random latent point to another in K evenly spaced steps,
//! both ends included. Spherical interpolation by default (slerp: `sin((1-t)w)/sin(w) a + sin(t w)/sin(w) b`, w
//! the angle between a and b), because Gaussian latents concentrate near a sphere of radius sqrt(nz) and the
//! straight line between two of them passes through the low-norm interior G never saw; `--lerp` gives the straight
//! line for comparison.
//!
//! **Grids**: cells of S x S in rows, separated and framed by a 2-pixel dark grey border ([`GRID_PAD`]), so a
//! C x R grid is `C (S + 2) + 2` by `R (S + 2) + 2` pixels.
use crate::report::Summary;
use crate::runtime::{Device, SessionOptions};
use crate::workdir::atomic_write;
use anyhow::{anyhow, bail, ensure, Context, Result};
use image::RgbImage;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use std::path::{Path, PathBuf};

/// Border between and around grid cells, in pixels.
pub const GRID_PAD: u32 = 2;
const GRID_BACKGROUND: [u8; 3] = [40, 40, 40];
/// Batch size of the exported generator graphs.
pub const EXPORT_BATCH: usize = 64;

/// A generator model in an ONNX Runtime session: anime-pipe's exports, or any model that `eval` accepts
/// (latents `[B, nz]` or `[B, nz, 1, 1]`, images as `image_u8` or a float NCHW output in [-1, 1], such as a
/// PyTorch export; see `eval::generator`), run in chunks of its batch size.
pub struct Generator {
    model: crate::eval::generator::Generator,
    batch: usize,
    nz: usize,
    size: usize,
}

impl Generator {
    pub fn from_file(path: &Path, options: &SessionOptions) -> Result<Generator> {
        Generator::new(crate::eval::generator::Generator::load(path, options)?)
    }

    pub fn from_bytes(model: &[u8], options: &SessionOptions) -> Result<Generator> {
        Generator::new(crate::eval::generator::Generator::from_bytes(model, options, "generator")?)
    }

    fn new(mut model: crate::eval::generator::Generator) -> Result<Generator> {
        let nz = model.latent_len();
        let batch = model.batch_size(EXPORT_BATCH);
        // A graph with dynamic spatial axes tells its image size only when run.
        let size = match model.declared_side() {
            Some(side) => side as usize,
            None => model.generate(&vec![0.0; nz], 1)?.1 as usize,
        };
        Ok(Generator { model, batch, nz, size })
    }

    pub fn nz(&self) -> usize {
        self.nz
    }

    /// Side of the generated images.
    pub fn size(&self) -> usize {
        self.size
    }

    /// RGB u8 images, `S * S * 3` bytes each, one per latent (`z.len() / nz` latents).
    pub fn generate(&mut self, z: &[f32]) -> Result<Vec<u8>> {
        ensure!(z.len().is_multiple_of(self.nz), "{} latent values are not a multiple of nz = {}", z.len(), self.nz);
        let mut out = Vec::with_capacity(z.len() / self.nz * self.size * self.size * 3);
        for chunk in z.chunks(self.batch * self.nz) {
            let (pixels, side) = self.model.generate(chunk, chunk.len() / self.nz)?;
            ensure!(side as usize == self.size, "the generator's image size changed from {} to {side}", self.size);
            out.extend_from_slice(&pixels);
        }
        Ok(out)
    }
}

/// `count` standard-normal latents of `nz` values (row-major) from `ChaCha8Rng::seed_from_u64(seed)`.
pub fn latents(seed: u64, count: usize, nz: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count * nz).map(|_| rng.sample(StandardNormal)).collect()
}

/// Spherical interpolation between `a` and `b` at `t` in [0, 1]; linear where they are (anti)parallel.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.sin().abs() < 1e-6 {
        return lerp(a, b, t);
    }
    let t = f64::from(t);
    let (wa, wb) = (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin());
    a.iter().zip(b).map(|(x, y)| (wa * f64::from(*x) + wb * f64::from(*y)) as f32).collect()
}

pub fn lerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + (y - x) * t).collect()
}

/// `rows` walks of `steps` latents each (row-major: row r is walk r), between random endpoints drawn with
/// [`latents`] (`2 * rows` points: row r goes from point 2r to point 2r+1).
pub fn walk_latents(seed: u64, rows: usize, steps: usize, nz: usize, spherical: bool) -> Vec<f32> {
    let ends = latents(seed, 2 * rows, nz);
    let mut out = Vec::with_capacity(rows * steps * nz);
    for r in 0..rows {
        let (a, b) = (&ends[2 * r * nz..(2 * r + 1) * nz], &ends[(2 * r + 1) * nz..(2 * r + 2) * nz]);
        for k in 0..steps {
            let t = if steps == 1 { 0.0 } else { k as f32 / (steps - 1) as f32 };
            out.extend(if spherical { slerp(a, b, t) } else { lerp(a, b, t) });
        }
    }
    out
}

/// Lays out `images` (S x S RGB each, `count` of them) in a grid of `cols` columns, row by row; empty cells
/// stay background.
pub fn grid(images: &[u8], size: usize, cols: usize, rows: usize) -> RgbImage {
    let (s, pad) = (size as u32, GRID_PAD);
    let (w, h) = (cols as u32 * (s + pad) + pad, rows as u32 * (s + pad) + pad);
    let mut out = RgbImage::from_pixel(w, h, image::Rgb(GRID_BACKGROUND));
    let cell = size * size * 3;
    for (i, pixels) in images.chunks_exact(cell).take(cols * rows).enumerate() {
        let (x0, y0) = ((i % cols) as u32 * (s + pad) + pad, (i / cols) as u32 * (s + pad) + pad);
        for (j, rgb) in pixels.chunks_exact(3).enumerate() {
            let (x, y) = (j % size, j / size);
            out.put_pixel(x0 + x as u32, y0 + y as u32, image::Rgb([rgb[0], rgb[1], rgb[2]]));
        }
    }
    out
}

/// Nearest-neighbour enlargement by an integer factor (for viewing small samples).
pub fn enlarge(image: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return image.clone();
    }
    RgbImage::from_fn(image.width() * factor, image.height() * factor, |x, y| *image.get_pixel(x / factor, y / factor))
}

/// PNG bytes of an RGB image.
pub fn png_bytes(image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image
        .write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
        .map_err(|e| anyhow!("cannot encode PNG: {e}"))?;
    Ok(bytes)
}

/// Writes `image` as a PNG, atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    atomic_write(path, &png_bytes(image)?).with_context(|| format!("cannot write {}", path.display()))
}

/// A float32 C-order `.npy` (format 1.0) of shape `shape`.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `COLSxROWS` (e.g. `8x8`).
pub fn parse_grid(text: &str) -> Result<(usize, usize)> {
    let parsed = text.split_once(['x', 'X']).and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?)));
    match parsed {
        Some((c, r)) if c > 0 && r > 0 && c * r <= 100_000 => Ok((c, r)),
        _ => bail!("--grid {text:?}: expected COLSxROWS with positive numbers, e.g. 8x8"),
    }
}

/// What `anime-pipe sample` draws.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub model: PathBuf,
    pub out: PathBuf,
    pub count: Option<usize>,
    /// "COLSxROWS".
    pub grid: Option<String>,
    /// Steps per latent walk.
    pub interpolate: Option<usize>,
    pub rows: usize,
    pub lerp: bool,
    pub seed: u64,
    pub scale: u32,
    pub separate: Option<PathBuf>,
    pub save_latents: Option<PathBuf>,
}

/// `anime-pipe sample`.
pub fn run(args: &SampleRequest, device: Device, threads: usize) -> Result<Summary> {
    let mut summary = Summary::start("sample");
    let options = SessionOptions { device, threads, optimize: true };
    let mut generator = Generator::from_file(&args.model, &options)?;
    let nz = generator.nz();
    let (z, cols, rows, what) = match args.interpolate {
        Some(k) => {
            if !(2..=1000).contains(&k) || !(1..=1000).contains(&args.rows) {
                bail!("--interpolate {k} --rows {}: expected 2..=1000 steps and 1..=1000 rows", args.rows);
            }
            let walk = walk_latents(args.seed, args.rows, k, nz, !args.lerp);
            (walk, k, args.rows, if args.lerp { "lerp walks" } else { "slerp walks" })
        }
        None => {
            let grid = args.grid.as_deref().map(parse_grid).transpose()?;
            let n = args.count.or(grid.map(|(c, r)| c * r)).unwrap_or(64);
            if n == 0 || n > 100_000 {
                bail!("-n {n}: expected 1..=100000 images");
            }
            let (cols, rows) = grid.unwrap_or_else(|| {
                let cols = (n as f64).sqrt().ceil() as usize;
                (cols, n.div_ceil(cols))
            });
            if cols * rows < n {
                bail!("--grid {cols}x{rows} has {} cells, fewer than -n {n}", cols * rows);
            }
            (latents(args.seed, n, nz), cols, rows, "images")
        }
    };
    let count = z.len() / nz;
    let images = generator.generate(&z)?;
    let grid = enlarge(&grid(&images, generator.size(), cols, rows), args.scale);
    write_png(&args.out, &grid)?;
    if let Some(dir) = &args.separate {
        std::fs::create_dir_all(dir)?;
        let cell = generator.size() * generator.size() * 3;
        for (i, pixels) in images.chunks_exact(cell).enumerate() {
            let s = generator.size() as u32;
            let image = image::RgbImage::from_raw(s, s, pixels.to_vec()).expect("cell size");
            write_png(&dir.join(format!("{i:05}.png")), &enlarge(&image, args.scale))?;
        }
    }
    if let Some(path) = &args.save_latents {
        crate::workdir::atomic_write(path, &npy_bytes(&[count, nz], &z))?;
    }
    summary.count(what, count as u64);
    summary
        .fact("grid", format!("{cols}x{rows} of {0}x{0}", generator.size()))
        .fact("latent size", nz)
        .fact("seed", args.seed)
        .fact("out", args.out.display());
    Ok(summary.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slerp_keeps_the_norm_of_equal_norm_endpoints_and_hits_both_ends() {
        let a = [3.0f32, 0.0, 0.0];
        let b = [0.0f32, 3.0, 0.0];
        assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
        let end = slerp(&a, &b, 1.0);
        assert!(end.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{end:?}");
        let mid = slerp(&a, &b, 0.5);
        let norm = mid.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 3.0).abs() < 1e-5, "slerp midpoint norm {norm}");
        // The straight line's midpoint is shorter: 3 / sqrt(2).
        let l = lerp(&a, &b, 0.5);
        assert!((l.iter().map(|x| x * x).sum::<f32>().sqrt() - 3.0 / 2f32.sqrt()).abs() < 1e-5);
    }

    #[test]
    fn walks_start_and_end_at_the_drawn_points() {
        let (rows, steps, nz) = (3, 5, 4);
        let ends = latents(7, 2 * rows, nz);
        let walk = walk_latents(7, rows, steps, nz, true);
        assert_eq!(walk.len(), rows * steps * nz);
        for r in 0..rows {
            let first = &walk[(r * steps) * nz..(r * steps + 1) * nz];
            let last = &walk[(r * steps + steps - 1) * nz..(r * steps + steps) * nz];
            assert_eq!(first, &ends[2 * r * nz..(2 * r + 1) * nz]);
            assert!(last.iter().zip(&ends[(2 * r + 1) * nz..]).all(|(x, y)| (x - y).abs() < 1e-5));
        }
    }

    #[test]
    fn latents_look_standard_normal() {
        let z = latents(1, 1000, 10);
        let mean = z.iter().sum::<f32>() / z.len() as f32;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / z.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
        assert_eq!(latents(1, 3, 2), latents(1, 3, 2));
        assert_ne!(latents(1, 3, 2), latents(2, 3, 2));
    }

    #[test]
    fn grid_places_cells_row_by_row_with_borders() {
        let size = 2;
        let images: Vec<u8> = (0..3u8).flat_map(|i| vec![i * 100; size * size * 3]).collect();
        let g = grid(&images, size, 2, 2);
        assert_eq!(g.dimensions(), (2 * (2 + GRID_PAD) + GRID_PAD, 2 * (2 + GRID_PAD) + GRID_PAD));
        assert_eq!(g.get_pixel(GRID_PAD, GRID_PAD).0, [0, 0, 0]);
        assert_eq!(g.get_pixel(GRID_PAD + 2 + GRID_PAD, GRID_PAD).0, [100; 3]);
        assert_eq!(g.get_pixel(GRID_PAD, GRID_PAD + 2 + GRID_PAD + 1).0, [200; 3]);
        assert_eq!(g.get_pixel(0, 0).0, GRID_BACKGROUND);
        assert_eq!(g.get_pixel(GRID_PAD + 2 + GRID_PAD, GRID_PAD + 2 + GRID_PAD).0, GRID_BACKGROUND, "empty cell");
    }

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let bytes = npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'), "{header}");
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert_eq!(&bytes[10 + header_len..10 + header_len + 4], &1.0f32.to_le_bytes());
    }

    #[test]
    fn grid_specs_parse() {
        assert_eq!(parse_grid("8x4").unwrap(), (8, 4));
        assert!(parse_grid("8").is_err() && parse_grid("0x3").is_err());
    }
}
